//! Scenarios shared by the tests of every store.

use serde_json::json;

use super::{topic, until, Server};

/// DESIGN §4's happy path over HTTP only: stock, order, confirmation,
/// payment and shipment as CloudEvents, delivery.
pub async fn place_to_delivered(server: &Server) {
    assert_eq!(server.restock("SKU-A", 10).await.status, 200);
    assert_eq!(server.restock("SKU-B", 1).await.status, 200);

    let placed = server.place("o-1", &[("SKU-A", 2, 1250), ("SKU-B", 1, 500)]).await;
    assert_eq!(placed.status, 201);
    assert_eq!(placed.header("location"), Some("/api/orders/o-1"));
    assert_eq!(placed.body, json!({"orderId": "o-1", "version": 1, "status": "Placed"}));

    let confirmed = server.post_empty("/api/orders/o-1/confirm").await;
    assert_eq!((confirmed.status.as_u16(), &confirmed.body["status"]), (200, &json!("Confirmed")));
    let reserved = server.order_status("o-1", "Reserved").await;
    assert_eq!(reserved["totalMinor"], 3000);
    let sku_a = server.eventually("/api/inventory/SKU-A", |s| s["reserved"] == 2).await;
    assert_eq!((sku_a["onHand"].as_u64(), sku_a["available"].as_u64()), (Some(10), Some(8)));
    let open = &sku_a["openReservations"];
    assert_eq!(
        (&open[0]["orderId"], &open[0]["quantity"], open.as_array().map(Vec::len)),
        (&json!("o-1"), &json!(2), Some(1))
    );

    let paid = server
        .event(
            "pay-1",
            "payment.authorized",
            json!({"orderId": "o-1", "paymentId": "p-1", "amountMinor": 3000, "currency": "EUR"}),
        )
        .await;
    assert_eq!(paid.status, 202, "{paid:?}");
    assert_eq!(paid.body["receipt"]["status"], "ReadyToShip");
    let dispatched = json!({"orderId": "o-1", "shipmentId": "s-1", "carrier": "DHL", "trackingNumber": "T-1"});
    assert_eq!(server.event("ship-1", "shipment.dispatched", dispatched).await.status, 202);
    assert_eq!(
        server.event("del-1", "shipment.delivered", json!({"orderId": "o-1", "shipmentId": "s-1"})).await.status,
        202
    );

    let delivered = server.order_status("o-1", "Delivered").await;
    assert_eq!(delivered["shipment"]["trackingNumber"], "T-1");
    // The shipped stock left the warehouse.
    let sku_a = server.eventually("/api/inventory/SKU-A", |s| s["onHand"] == 8).await;
    assert_eq!((sku_a["reserved"].as_u64(), sku_a["available"].as_u64()), (Some(0), Some(8)));
    assert_eq!(sku_a["openReservations"], json!([]), "shipped: no longer open");

    let history = server.history("o-1").await;
    let types: Vec<&str> = history.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        types,
        [
            "Placed",
            "Confirmed",
            "LineReserved",
            "LineReserved",
            "Reserved",
            "PaymentAuthorized",
            "ReadyToShip",
            "Shipped",
            "Delivered"
        ]
    );
    assert!(history.iter().enumerate().all(|(i, e)| e["index"] == i));
}

/// Every event of the order is on `orderflow.orders` (the embedded topic
/// log), once, in order, with the CloudEvents attributes of DESIGN §6.
pub async fn every_event_is_on_the_orders_topic(server: &Server, order_id: &str) {
    let history = server.history(order_id).await;
    let subject = format!("Order-{order_id}");
    let on_topic = until(
        || topic(&server.data_dir, "orderflow.orders").into_iter().filter(|e| e["subject"] == subject).collect(),
        |records: &Vec<serde_json::Value>| records.len() >= history.len(),
    )
    .await;
    assert_eq!(on_topic.len(), history.len());
    for (event, record) in history.iter().zip(&on_topic) {
        assert_eq!(record["id"], event["eventId"]);
        assert_eq!(record["source"], "/orderflow/orders");
        assert_eq!(record["specversion"], "1.0");
        assert_eq!(record["streamindex"], event["index"].to_string());
        let expected_type = format!("orderflow.order.{}", event["type"].as_str().unwrap_or_default().to_lowercase());
        assert_eq!(record["type"], expected_type);
        assert_eq!(record["data"], event["data"]);
    }
    let inventory = topic(&server.data_dir, "orderflow.inventory");
    assert!(inventory.iter().any(|e| e["type"] == "orderflow.inventory.stockreserved" && e["subject"] == "Sku-SKU-A"));
}

/// DESIGN §5's idempotency as clients rely on it: a key means one request
/// for the whole retention, however many commands its stream takes
/// meanwhile, and whatever stream a reuse of it names.
pub async fn keys_mean_one_request_whatever_else_happens(server: &Server) {
    let restock = |sku: &str, key: &str, quantity: u64| {
        let path = format!("/api/inventory/{sku}/restock");
        let key = key.to_string();
        async move {
            server
                .send(reqwest::Method::POST, &path, Some(json!({"quantity": quantity})), &[("idempotency-key", &key)])
                .await
        }
    };
    let first = restock("SKU-K", "restock-k", 10).await;
    assert_eq!(first.status, 200, "{first:?}");
    // More keyed commands than any "recent keys" window would hold.
    for i in 0..150 {
        assert_eq!(restock("SKU-K", &format!("other-{i}"), 1).await.status, 200);
    }
    let retried = restock("SKU-K", "restock-k", 10).await;
    assert_eq!((retried.status, &retried.body), (first.status, &first.body), "answered as the first time");
    server.eventually("/api/inventory/SKU-K", |s| s["version"] == 151).await;
    let stock = server.get("/api/inventory/SKU-K").await;
    assert_eq!(stock.body["onHand"], 160, "applied once: {:?}", stock.body);

    // The same key on another resource, or with another body, is refused.
    restock("SKU-L", "restock-k", 10).await.assert_problem(422, "idempotency-key-reused");
    assert_eq!(server.get("/api/inventory/SKU-L/events").await.status, 404, "nothing happened there");
    let order = |id: &str| json!({"orderId": id, "customerId": "c", "currency": "EUR", "lines": [{"sku": "SKU-K", "quantity": 1, "unitPriceMinor": 5}]});
    let key = [("idempotency-key", "place-k")];
    assert_eq!(server.send(reqwest::Method::POST, "/api/orders", Some(order("k-1")), &key).await.status, 201);
    let another = server.send(reqwest::Method::POST, "/api/orders", Some(order("k-2")), &key).await;
    another.assert_problem(422, "idempotency-key-reused");
    assert_eq!(server.get("/api/orders/k-2/events").await.status, 404, "no second order");

    // A CloudEvent id reused by its source for other data is a conflicting duplicate.
    let received = server.event("stock-k", "stock.received", json!({"sku": "SKU-M", "quantity": 3})).await;
    assert_eq!(received.body["outcome"], "applied", "{received:?}");
    let reused = server.event("stock-k", "stock.received", json!({"sku": "SKU-N", "quantity": 3})).await;
    reused.assert_problem(422, "conflicting-duplicate");
    assert_eq!(server.get("/api/inventory/SKU-N/events").await.status, 404);
}

/// Read-your-writes: a read naming the version its command answered
/// (`?minVersion=`) answers that version or a newer one, and a read of a
/// stream that exists never answers 404 — many clients at once, each
/// reading right after its own writes while the projector runs behind.
pub async fn reads_follow_their_writes(server: &Server) {
    const CLIENTS: usize = 16;
    const ROUNDS: usize = 6;
    let base = server.url("");
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let base = base.clone();
        clients.spawn(async move {
            let http = reqwest::Client::new();
            let send = |request: reqwest::RequestBuilder| async move {
                let answer = request.send().await.expect("an answer");
                let status = answer.status().as_u16();
                (status, answer.json::<serde_json::Value>().await.unwrap_or_default())
            };
            for round in 0..ROUNDS {
                let order_id = format!("ryw-{client}-{round}");
                let place = json!({"orderId": order_id, "customerId": "c-ryw", "currency": "EUR",
                    "lines": [{"sku": "SKU-RYW", "quantity": 1, "unitPriceMinor": 100}]});
                let (status, placed) = send(http.post(format!("{base}/api/orders")).json(&place)).await;
                assert_eq!(status, 201, "{placed}");
                let (status, read) = send(http.get(format!("{base}/api/orders/{order_id}"))).await;
                assert_eq!(status, 200, "an order just placed is found: {read}");

                let (status, confirmed) = send(http.post(format!("{base}/api/orders/{order_id}/confirm"))).await;
                assert_eq!(status, 200, "{confirmed}");
                let version = confirmed["version"].as_u64().expect("a version");
                let url = format!("{base}/api/orders/{order_id}?minVersion={version}");
                let (status, read) = send(http.get(url)).await;
                assert_eq!(status, 200, "{read}");
                assert!(read["version"].as_u64() >= Some(version), "stale read of {order_id}: {read}");
                assert_ne!(read["status"], "Placed", "the confirmation is seen: {read}");

                let restock = json!({"quantity": 1});
                let (status, restocked) =
                    send(http.post(format!("{base}/api/inventory/SKU-RYW/restock")).json(&restock)).await;
                assert_eq!(status, 200, "{restocked}");
                let version = restocked["version"].as_u64().expect("a version");
                let url = format!("{base}/api/inventory/SKU-RYW?minVersion={version}");
                let (status, read) = send(http.get(url)).await;
                assert_eq!(status, 200, "{read}");
                assert!(read["version"].as_u64() >= Some(version), "stale read of the SKU: {read}");
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.expect("a client's reads all followed its writes");
    }
    // A version the stream never reached, and a stream that does not exist.
    server.get("/api/orders/ryw-0-0?minVersion=1000").await.assert_problem(412, "version-not-reached");
    server.get("/api/orders/ryw-none?minVersion=1").await.assert_problem(404, "not-found");
    server.get("/api/orders/ryw-0-0?minVersion=soon").await.assert_problem(400, "malformed-request");
}
