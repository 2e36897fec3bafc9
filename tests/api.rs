//! The HTTP API end to end: the real server on a random port over a real
//! SQLite file, as a customer app or back-end system would use it.

mod support;

use reqwest::Method;
use serde_json::json;
use support::{topic, Server};
use tempfile::TempDir;

fn server() -> (TempDir, Server) {
    let dir = TempDir::new().expect("temp dir");
    let server = Server::start(&dir.path().join("data"));
    (dir, server)
}

#[tokio::test]
async fn an_order_goes_from_placed_to_delivered() {
    let (_dir, server) = server();
    support::lifecycle::place_to_delivered(&server).await;
    // Every event reaches the downstream topic with its CloudEvents attributes.
    support::lifecycle::every_event_is_on_the_orders_topic(&server, "o-1").await;
}

#[tokio::test]
async fn a_missing_line_backorders_the_order_until_it_is_confirmed_again() {
    let (_dir, server) = server();
    server.restock("SKU-A", 5).await;
    server.place("o-2", &[("SKU-A", 2, 100), ("SKU-B", 1, 100)]).await;
    server.post_empty("/api/orders/o-2/confirm").await;
    let backordered = server.order_status("o-2", "Backordered").await;
    assert_eq!(backordered["backorderedSku"], "SKU-B");
    // The line that could be reserved was released again.
    server.eventually("/api/inventory/SKU-A", |s| s["reserved"] == 0 && s["version"] == 3).await;

    // A restock alone leaves the order as it is ...
    server.restock("SKU-B", 1).await;
    server.eventually("/api/inventory/SKU-B", |s| s["onHand"] == 1).await;
    assert_eq!(server.get("/api/orders/o-2").await.body["status"], "Backordered");
    // ... confirming it again reserves both lines.
    assert_eq!(server.post_empty("/api/orders/o-2/confirm").await.status, 200);
    server.order_status("o-2", "Reserved").await;
    server.eventually("/api/inventory/SKU-B", |s| s["available"] == 0).await;
}

#[tokio::test]
async fn cancelling_releases_reserved_stock() {
    let (_dir, server) = server();
    server.restock("SKU-A", 3).await;
    server.place("o-3", &[("SKU-A", 3, 100)]).await;
    server.post_empty("/api/orders/o-3/confirm").await;
    server.order_status("o-3", "Reserved").await;
    server.eventually("/api/inventory/SKU-A", |s| s["available"] == 0).await;
    let cancelled = server.post("/api/orders/o-3/cancel", json!({"reason": "changed my mind"})).await;
    assert_eq!(cancelled.body["status"], "Cancelled");
    let order = server.order_status("o-3", "Cancelled").await;
    assert_eq!(order["cancelReason"], "changed my mind");
    server.eventually("/api/inventory/SKU-A", |s| s["available"] == 3 && s["reserved"] == 0).await;
    // A payment for a cancelled order is refused and recorded, not applied.
    let late = server
        .event(
            "pay-late",
            "payment.authorized",
            json!({"orderId": "o-3", "paymentId": "p", "amountMinor": 300, "currency": "EUR"}),
        )
        .await;
    late.assert_problem(422, "rejected");
    assert_eq!(late.body["deadLettered"], true);
    let dead = topic(&server.data_dir, "orderflow.deadletter");
    assert!(dead.iter().any(|d| d["data"]["kind"] == "rejected"));
}

#[tokio::test]
async fn business_rules_are_answered_with_422_and_change_nothing() {
    let (_dir, server) = server();
    server.place("o-4", &[("SKU-A", 1, 100)]).await;
    server.place("o-4", &[("SKU-A", 1, 100)]).await.assert_problem(422, "order-exists");
    server
        .post("/api/orders/o-4/lines", json!({"sku": "SKU-A", "quantity": 1, "unitPriceMinor": 1}))
        .await
        .assert_problem(422, "duplicate-sku");
    server.send(Method::DELETE, "/api/orders/o-4/lines/SKU-Z", None, &[]).await.assert_problem(422, "no-such-line");
    let empty = json!({"customerId": "c", "currency": "EUR", "lines": []});
    server.post("/api/orders", empty).await.assert_problem(422, "no-lines");
    let zero =
        json!({"customerId": "c", "currency": "EUR", "lines": [{"sku": "A", "quantity": 0, "unitPriceMinor": 1}]});
    // A value that breaks its type's rule is malformed, whatever the state.
    let malformed = server.post("/api/orders", zero).await;
    malformed.assert_problem(400, "malformed-request");
    assert!(
        malformed.body["detail"].as_str().is_some_and(|d| d.contains("quantity must be between 1")),
        "{malformed:?}"
    );
    let currency =
        json!({"customerId": "c", "currency": "euro", "lines": [{"sku": "A", "quantity": 1, "unitPriceMinor": 1}]});
    server.post("/api/orders", currency).await.assert_problem(400, "malformed-request");

    server.post_empty("/api/orders/o-4/confirm").await;
    server
        .post("/api/orders/o-4/lines", json!({"sku": "SKU-B", "quantity": 1, "unitPriceMinor": 1}))
        .await
        .assert_problem(422, "order-not-placed");
    server.send(Method::DELETE, "/api/orders/o-4/lines/SKU-A", None, &[]).await.assert_problem(422, "order-not-placed");
    server
        .event(
            "pay-x",
            "payment.authorized",
            json!({"orderId": "o-4", "paymentId": "p", "amountMinor": 99, "currency": "EUR"}),
        )
        .await
        .assert_problem(422, "rejected");
    server.post("/api/inventory/SKU-A/restock", json!({"quantity": 0})).await.assert_problem(400, "malformed-request");

    // Only what was accepted was recorded (with no stock, fulfillment
    // backorders the confirmed order).
    server.order_status("o-4", "Backordered").await;
    let types: Vec<_> = server.history("o-4").await.iter().map(|e| e["type"].clone()).collect();
    assert_eq!(types, [json!("Placed"), json!("Confirmed"), json!("Backordered")]);

    // An order whose lines were all removed cannot be paid, not even 0.
    server.place("o-4e", &[("SKU-A", 1, 100)]).await;
    server.send(Method::DELETE, "/api/orders/o-4e/lines/SKU-A", None, &[]).await;
    let nothing = json!({"orderId": "o-4e", "paymentId": "p", "amountMinor": 0, "currency": "EUR"});
    let refused = server.event("pay-0", "payment.authorized", nothing).await;
    refused.assert_problem(422, "rejected");
    assert!(refused.body["detail"].as_str().is_some_and(|d| d.contains("no-lines")), "{refused:?}");
}

#[tokio::test]
async fn unknown_orders_and_routes_are_404() {
    let (_dir, server) = server();
    server.get("/api/orders/nope").await.assert_problem(404, "not-found");
    server.get("/api/orders/nope/events").await.assert_problem(404, "not-found");
    server.get("/api/inventory/nope").await.assert_problem(404, "not-found");
    server.post_empty("/api/orders/nope/confirm").await.assert_problem(404, "not-found");
    server.post_empty("/api/orders/nope/cancel").await.assert_problem(404, "not-found");
    server.get("/api/nothing-here").await.assert_problem(404, "not-found");
    server.send(Method::PUT, "/api/orders/x", None, &[]).await.assert_problem(405, "method-not-allowed");
    assert_eq!(server.get("/health").await.status, 200);
    let none = server.get("/api/customers/nobody/orders").await;
    assert_eq!(none.body, json!({"customerId": "nobody", "orders": []}));
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_has_no_effect() {
    let (_dir, server) = server();
    let json_type = [("content-type", "application/json")];
    server.post_raw("/api/orders", "{\"customerId\": ", &json_type).await.assert_problem(400, "malformed-request");
    let wrong_type =
        json!({"customerId": "c", "currency": "EUR", "lines": [{"sku": "A", "quantity": "two", "unitPriceMinor": 1}]});
    server.post("/api/orders", wrong_type).await.assert_problem(400, "malformed-request");
    let negative =
        json!({"customerId": "c", "currency": "EUR", "lines": [{"sku": "A", "quantity": -1, "unitPriceMinor": 1}]});
    server.post("/api/orders", negative).await.assert_problem(400, "malformed-request");
    let unknown_field = json!({"customerId": "c", "currency": "EUR", "lines": [], "discount": 5});
    server.post("/api/orders", unknown_field).await.assert_problem(400, "malformed-request");
    // A struct's fields as an array is not an object (serde alone would take it).
    server.post("/api/inventory/SKU-A/restock", json!([5])).await.assert_problem(400, "malformed-request");
    server.post("/api/orders/o/cancel", json!([null])).await.assert_problem(400, "malformed-request");
    let bad_id = json!({"orderId": "a/b", "customerId": "c", "currency": "EUR", "lines": [{"sku": "A", "quantity": 1, "unitPriceMinor": 1}]});
    server.post("/api/orders", bad_id).await.assert_problem(400, "malformed-request");
    server.post_empty("/api/orders").await.assert_problem(400, "malformed-request");
    let text = [("content-type", "text/plain")];
    server.post_raw("/api/orders", "{}", &text).await.assert_problem(415, "unsupported-media-type");
    let huge = format!("{{\"customerId\": \"{}\"}}", "x".repeat(300 * 1024));
    server.post_raw("/api/orders", huge, &json_type).await.assert_problem(413, "too-large");
    server.post("/api/inventory/SKU-A/restock", json!({"quantity": -3})).await.assert_problem(400, "malformed-request");
    server
        .send(Method::POST, "/api/orders/o/confirm", None, &[("if-match", "yesterday")])
        .await
        .assert_problem(400, "malformed-request");
    server
        .send(Method::POST, "/api/orders/o/confirm", None, &[("idempotency-key", "")])
        .await
        .assert_problem(400, "malformed-request");
    server.get("/api/orders/o/events?limit=lots").await.assert_problem(400, "malformed-request");

    // Ingestion: garbage, unknown type, missing and mistyped fields.
    server.post_raw("/api/events", "garbage", &json_type).await.assert_problem(400, "undecodable");
    server.event("e-1", "order.exploded", json!({})).await.assert_problem(422, "unknown-type");
    server.event("e-2", "stock.received", json!({"sku": "A"})).await.assert_problem(400, "invalid-data");
    server
        .event("e-3", "stock.received", json!({"sku": "A", "quantity": "many"}))
        .await
        .assert_problem(400, "invalid-data");
    let batch = [("content-type", "application/cloudevents-batch+json")];
    server.post_raw("/api/events", "{\"not\": \"an array\"}", &batch).await.assert_problem(400, "undecodable");
    // Outside text is bounded: a field too long never reaches an event.
    let long = json!({"orderId": "o", "shipmentId": "s", "carrier": "x".repeat(129), "trackingNumber": "T"});
    server.event("e-4", "shipment.dispatched", long).await.assert_problem(400, "invalid-data");
    // The same bad message again: the same dead letter id.
    server.post_raw("/api/events", "garbage", &json_type).await.assert_problem(400, "undecodable");

    // Nothing reached the event store; every bad message is kept as a dead letter.
    assert_eq!(server.get("/api/inventory/A").await.status, 404);
    let dead = topic(&server.data_dir, "orderflow.deadletter");
    let kinds: Vec<_> = dead.iter().map(|d| d["data"]["kind"].as_str().unwrap_or_default().to_string()).collect();
    let expected =
        ["undecodable", "unknown-type", "invalid-data", "invalid-data", "undecodable", "invalid-data", "undecodable"];
    assert_eq!(kinds, expected);
    assert_eq!(dead[0]["data"]["payload"], "garbage");
    assert_eq!(dead[0]["id"], dead[6]["id"], "one bad message, one dead letter id");
    assert_eq!(dead[1]["data"]["headers"]["ce-type"], "order.exploded");
    let too_long = dead[5]["data"]["reason"].as_str().unwrap_or_default();
    assert!(too_long.contains("carrier must be 1 to 128 characters"), "names the field and its rule: {too_long}");
    assert_eq!(topic(&server.data_dir, "orderflow.orders").len(), 0);
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_returns_the_first_answer() {
    let (_dir, server) = server();
    let body =
        json!({"customerId": "c-9", "currency": "EUR", "lines": [{"sku": "A", "quantity": 1, "unitPriceMinor": 5}]});
    let key = [("idempotency-key", "place-1")];
    let first = server.send(Method::POST, "/api/orders", Some(body.clone()), &key).await;
    let again = server.send(Method::POST, "/api/orders", Some(body.clone()), &key).await;
    assert_eq!(first.status, 201);
    assert_eq!((again.status, &again.body), (first.status, &first.body), "same key, same body, same answer");
    let order_id = first.body["orderId"].as_str().unwrap_or_default().to_string();
    let other =
        json!({"customerId": "c-9", "currency": "USD", "lines": [{"sku": "A", "quantity": 1, "unitPriceMinor": 5}]});
    server.send(Method::POST, "/api/orders", Some(other), &key).await.assert_problem(422, "idempotency-key-reused");

    let add = json!({"sku": "B", "quantity": 2, "unitPriceMinor": 7});
    let add_key = [("idempotency-key", "add-b")];
    let path = format!("/api/orders/{order_id}/lines");
    let added = server.send(Method::POST, &path, Some(add.clone()), &add_key).await;
    let added_again = server.send(Method::POST, &path, Some(add), &add_key).await;
    assert_eq!((added.status.as_u16(), &added.body), (200, &added_again.body));
    assert_eq!(server.history(&order_id).await.len(), 2, "the retries appended nothing");
    let orders = server.eventually("/api/customers/c-9/orders", |o| o["orders"][0]["version"] == 2).await;
    assert_eq!(orders["orders"].as_array().map(Vec::len), Some(1));

    // The same CloudEvent delivered twice is applied once.
    let received = json!({"sku": "A", "quantity": 4});
    assert_eq!(server.event("stock-1", "stock.received", received.clone()).await.body["outcome"], "applied");
    assert_eq!(server.event("stock-1", "stock.received", received).await.body["outcome"], "duplicate");
    server.eventually("/api/inventory/A", |s| s["onHand"] == 4 && s["version"] == 1).await;
}

#[tokio::test]
async fn an_idempotency_key_means_one_request_whatever_else_happens() {
    let (_dir, server) = server();
    support::lifecycle::keys_mean_one_request_whatever_else_happens(&server).await;
}

#[tokio::test]
async fn reads_naming_their_writes_version_are_never_stale_or_missing() {
    let (_dir, server) = server();
    support::lifecycle::reads_follow_their_writes(&server).await;
}

#[tokio::test]
async fn if_match_makes_a_command_conditional_and_reads_carry_etags() {
    let (_dir, server) = server();
    server.place("o-5", &[("A", 1, 5)]).await;
    let stale = [("if-match", "\"7\"")];
    let refused = server.send(Method::POST, "/api/orders/o-5/confirm", None, &stale).await;
    refused.assert_problem(412, "version-mismatch");
    assert_eq!(refused.body["currentVersion"], 1);
    let current = [("if-match", "\"1\"")];
    assert_eq!(server.send(Method::POST, "/api/orders/o-5/confirm", None, &current).await.status, 200);

    // No stock for A: confirmation ends in Backordered, at version 3.
    let order = server.order_status("o-5", "Backordered").await;
    assert_eq!(order["version"], 3);
    let read = server.get("/api/orders/o-5").await;
    assert_eq!(read.header("etag"), Some("\"3\""));
    let cached = server.send(Method::GET, "/api/orders/o-5", None, &[("if-none-match", "\"3\"")]).await;
    assert_eq!(cached.status, 304);
    let changed = server.send(Method::GET, "/api/orders/o-5", None, &[("if-none-match", "\"2\"")]).await;
    assert_eq!(changed.status, 200);
}

#[tokio::test]
async fn concurrent_writers_on_one_stream_lose_no_update() {
    let (_dir, server) = server();
    server.place("o-6", &[("SKU-0", 1, 1)]).await;
    let writers = 32;
    let adds = (1..=writers).map(|i| {
        let server = &server;
        async move {
            let line = json!({"sku": format!("SKU-{i}"), "quantity": 1, "unitPriceMinor": 1});
            server.post("/api/orders/o-6/lines", line).await
        }
    });
    let restocks = (0..writers).map(|_| server.restock("HOT", 1));
    let (adds, restocks) = futures::join!(futures::future::join_all(adds), futures::future::join_all(restocks));
    assert!(adds.iter().chain(&restocks).all(|a| a.status == 200), "{adds:?}");
    let mut versions: Vec<u64> = adds.iter().filter_map(|a| a.body["version"].as_u64()).collect();
    versions.sort_unstable();
    assert_eq!(versions, (2..=writers as u64 + 1).collect::<Vec<_>>(), "every write got its own version");
    let order = server.eventually("/api/orders/o-6", |o| o["version"] == writers + 1).await;
    assert_eq!(order["lines"].as_array().map(Vec::len), Some(writers as usize + 1));
    server.eventually("/api/inventory/HOT", |s| s["onHand"] == writers && s["version"] == writers).await;
}

#[tokio::test]
async fn api_keys_when_configured_are_required() {
    let dir = TempDir::new().expect("temp dir");
    let server = Server::start_with(&dir.path().join("data"), &[("OrderflowApiKeys", "k-1,k-2")]);
    server.get("/api/orders/x").await.assert_problem(401, "unauthorized");
    server
        .send(Method::GET, "/api/orders/x", None, &[("x-api-key", "wrong")])
        .await
        .assert_problem(401, "unauthorized");
    server.send(Method::GET, "/api/orders/x", None, &[("x-api-key", "k-2")]).await.assert_problem(404, "not-found");
    let bearer = [("authorization", "Bearer k-1")];
    server.send(Method::GET, "/api/orders/x", None, &bearer).await.assert_problem(404, "not-found");
    assert_eq!(server.get("/health").await.status, 200, "health needs no key");

    // Each API key's Idempotency-Keys are its own.
    let server = &server;
    let restock = |api_key: &'static str| {
        let headers = [("x-api-key", api_key), ("idempotency-key", "restock-1")];
        async move { server.send(Method::POST, "/api/inventory/S/restock", Some(json!({"quantity": 2})), &headers).await }
    };
    assert_eq!(restock("k-1").await.body["version"], 1);
    assert_eq!(restock("k-2").await.body["version"], 2, "another caller's key of the same text");
    assert_eq!(restock("k-1").await.body["version"], 1, "the first caller's retry");
    let place = |api_key: &'static str| {
        let headers = [("x-api-key", api_key), ("idempotency-key", "order-1")];
        let order =
            json!({"customerId": "c", "currency": "EUR", "lines": [{"sku": "S", "quantity": 1, "unitPriceMinor": 5}]});
        async move { server.send(Method::POST, "/api/orders", Some(order), &headers).await }
    };
    let (mine, theirs) = (place("k-1").await, place("k-2").await);
    assert_eq!((mine.status.as_u16(), theirs.status.as_u16()), (201, 201), "{theirs:?}");
    assert_ne!(mine.body["orderId"], theirs.body["orderId"], "two callers' orders");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_needs_no_key() {
    let dir = TempDir::new().expect("temp dir");
    let server = Server::start_with(&dir.path().join("data"), &[("OrderflowApiKeys", "k-1")]);
    let document = server.get("/api/openapi.json").await;
    assert_eq!(document.status, 200, "{document:?}");
    let operations: Vec<String> = document.body["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            item.as_object().into_iter().flatten().map(move |(method, _)| format!("{method} {path}"))
        })
        .collect();
    let routes = [
        "post /api/orders",
        "get /api/orders/{order_id}",
        "get /api/orders/{order_id}/events",
        "post /api/orders/{order_id}/lines",
        "delete /api/orders/{order_id}/lines/{sku}",
        "post /api/orders/{order_id}/confirm",
        "post /api/orders/{order_id}/cancel",
        "get /api/customers/{customer_id}/orders",
        "get /api/inventory/{sku}",
        "get /api/inventory/{sku}/events",
        "post /api/inventory/{sku}/restock",
        "post /api/events",
    ];
    for route in routes {
        assert!(operations.contains(&route.to_string()), "{route} missing from {operations:?}");
    }
    assert_eq!(operations.len(), routes.len(), "{operations:?}");
    // Refusals are documented as problems, and the key as a security scheme.
    let place = &document.body["paths"]["/api/orders"]["post"]["responses"];
    assert_eq!(place["422"]["content"]["application/problem+json"]["schema"]["$ref"], "#/components/schemas/Problem");
    assert_eq!(document.body["components"]["securitySchemes"]["api_key"]["name"], "X-API-Key");
    // Every business rule's code is listed, as the domain names them.
    let codes = &document.body["components"]["schemas"]["RejectionCode"]["enum"];
    assert_eq!(codes, &json!(orderflow_domain::Rule::codes()));
    for code in ["order-not-placed", "insufficient-stock", "duplicate-sku"] {
        assert!(codes.as_array().is_some_and(|c| c.contains(&json!(code))), "{code} in {codes}");
    }
}

#[tokio::test]
async fn metrics_and_health_tell_operators_what_happened() {
    let (_dir, server) = server();
    server.restock("SKU-M", 3).await;
    server.place("o-m", &[("SKU-M", 1, 100)]).await;
    server.post_empty("/api/orders/o-m/confirm").await;
    server.order_status("o-m", "Reserved").await;
    // Less on hand than is reserved: refused.
    let shrink = json!({"sku": "SKU-M", "delta": -3, "reason": "count"});
    server.event("adjust-1", "stock.adjusted", shrink).await.assert_problem(422, "rejected");

    assert_eq!(server.get("/health/live").await.status, 200);
    let ready = server.get("/health/ready").await;
    assert_eq!((ready.status.as_u16(), &ready.body["status"]), (200, &json!("ready")), "{ready:?}");
    let pipeline = server.get("/health/pipeline").await;
    assert_eq!((pipeline.status.as_u16(), &pipeline.body["status"]), (200, &json!("ok")), "{pipeline:?}");

    let metrics = server.client.get(server.url("/metrics")).send().await.expect("metrics");
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.expect("text");
    for expected in [
        r#"orderflow_commands_total{command="Place",outcome="appended"} 1"#,
        r#"orderflow_commands_total{command="Adjust",outcome="rejected"} 1"#,
        r#"orderflow_commands_total{command="Reserve",outcome="appended"} 1"#,
        r#"orderflow_http_requests_total{method="POST",route="/api/orders",status="201"} 1"#,
        r#"orderflow_http_requests_total{method="POST",route="/api/events",status="422"} 1"#,
        r#"orderflow_feed_events_total{consumer="project-snapshots"}"#,
        r#"orderflow_feed_lag_seconds{consumer="fulfillment"}"#,
        "orderflow_append_seconds_bucket",
        // The embedded store's writer: where every write waits.
        "orderflow_store_jobs_seconds_bucket",
        "orderflow_store_commit_seconds_bucket",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
}

#[tokio::test]
async fn one_trace_follows_an_order_from_the_request_to_the_downstream_messages() {
    let (_dir, server) = server();
    server.restock("SKU-T", 5).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = format!("00-{trace}-00f067aa0ba902b7-01");
    let traced = [("traceparent", parent.as_str())];
    let order = json!({"orderId": "o-t", "customerId": "c", "currency": "EUR", "lines": [{"sku": "SKU-T", "quantity": 1, "unitPriceMinor": 10}]});
    assert_eq!(server.send(Method::POST, "/api/orders", Some(order), &traced).await.status, 201);
    assert_eq!(server.send(Method::POST, "/api/orders/o-t/confirm", None, &traced).await.status, 200);
    server.order_status("o-t", "Reserved").await;

    // Fulfillment's reactions (LineReserved, Reserved) carry the trace on.
    let downstream = |topic_name: &str, subject: &str| {
        topic(&server.data_dir, topic_name).into_iter().filter(|e| e["subject"] == subject).collect::<Vec<_>>()
    };
    let orders = support::until(|| downstream("orderflow.orders", "Order-o-t"), |records| records.len() == 4).await;
    let reserved = downstream("orderflow.inventory", "Sku-SKU-T");
    for record in orders.iter().chain(reserved.iter().filter(|e| e["type"] == "orderflow.inventory.stockreserved")) {
        assert_eq!(record["correlationid"], trace, "{record}");
        let traceparent = record["traceparent"].as_str().unwrap_or_default();
        assert!(traceparent.starts_with(&format!("00-{trace}-")), "{record}");
    }
    // Without a traceparent a request starts a trace of its own.
    server.place("o-u", &[("SKU-T", 1, 10)]).await;
    let untraced = support::until(|| downstream("orderflow.orders", "Order-o-u"), |records| !records.is_empty()).await;
    let correlation = untraced[0]["correlationid"].as_str().unwrap_or_default().to_string();
    assert!(correlation.len() == 32 && correlation != trace, "{correlation}");
}

/// An OTLP/HTTP collector: what `serve` exports, body by body.
async fn collector() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let bodies = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| async move {
            bodies.lock().expect("lock").push(body.to_vec());
            ""
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), received)
}

#[tokio::test]
async fn spans_are_exported_over_otlp_in_the_callers_trace() {
    let (endpoint, received) = collector().await;
    let dir = TempDir::new().expect("temp dir");
    let settings = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let server = Server::start_with(&dir.path().join("data"), &settings);
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let parent = format!("00-{trace}-b7ad6b7169203331-01");
    let restock = json!({"quantity": 3});
    let answer =
        server.send(Method::POST, "/api/inventory/SKU-O/restock", Some(restock), &[("traceparent", &parent)]).await;
    assert_eq!(answer.status, 200);
    // The trace id travels as its 16 bytes in the protobuf export.
    let trace_bytes: Vec<u8> = (0..16).map(|i| u8::from_str_radix(&trace[2 * i..2 * i + 2], 16).unwrap_or(0)).collect();
    let exported = || received.lock().expect("lock").iter().any(|body| body.windows(16).any(|w| w == trace_bytes));
    support::until(exported, |found| *found).await;
    let spans = received.lock().expect("lock").concat();
    for name in [&b"request"[..], b"command", b"append"] {
        assert!(spans.windows(name.len()).any(|w| w == name), "no {} span", String::from_utf8_lossy(name));
    }
}
