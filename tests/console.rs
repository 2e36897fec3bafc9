//! The operator console of `serve` (`/`, `/status.json`), as an operator's
//! browser and scripts reach it: open without keys; with keys, behind a key
//! or a session from the login form, `/health/*` public, `/metrics` as its
//! setting says.

mod support;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{redirect, Client, StatusCode};
use serde_json::Value;
use support::{until_async, Server};
use tempfile::TempDir;

/// A browser that does not follow redirects, to see where it is sent.
fn browser() -> Client {
    Client::builder().redirect(redirect::Policy::none()).build().expect("client")
}

async fn login(server: &Server, key: &str) -> reqwest::Response {
    browser()
        .post(server.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={key}"))
        .send()
        .await
        .expect("login")
}

async fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = browser().get(server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.expect("get")
}

#[tokio::test]
async fn without_keys_the_console_is_open() {
    let dir = TempDir::new().expect("temp dir");
    let server = Server::start(&dir.path().join("data"));
    assert_eq!(get(&server, "/", &[]).await.status(), StatusCode::OK);
    let status: Value = get(&server, "/status.json", &[]).await.json().await.expect("json");
    assert_eq!(status["store"], "embedded");
    let login = get(&server, "/login", &[]).await;
    assert_eq!(
        (login.status(), login.headers().get(LOCATION).map(|v| v.as_bytes())),
        (StatusCode::SEE_OTHER, Some(&b"/"[..]))
    );
}

#[tokio::test]
async fn with_keys_every_view_needs_a_key_or_a_session() {
    let dir = TempDir::new().expect("temp dir");
    let server = Server::start_with(&dir.path().join("data"), &[("OrderflowApiKeys", "k-1,k-2")]);

    // A browser without a session is sent to the login form; JSON is refused.
    let page = get(&server, "/", &[]).await;
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(page.headers().get(LOCATION).and_then(|v| v.to_str().ok()), Some("/login"));
    let refused = get(&server, "/status.json", &[]).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let form = get(&server, "/login", &[]).await;
    assert_eq!(form.status(), StatusCode::OK);
    assert!(form.text().await.expect("page").contains(r#"<form method="post" action="/login">"#));

    // A wrong key opens nothing.
    let wrong = login(&server, "k-3").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    assert!(wrong.text().await.expect("page").contains("That key is not valid."));

    // A right one opens a session the browser keeps to itself.
    let signed_in = login(&server, "k-2").await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let cookie = signed_in.headers().get(SET_COOKIE).and_then(|v| v.to_str().ok()).expect("a session cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.split("; ").any(|a| a == attribute), "{attribute} in {cookie}");
    }
    let session = cookie.split(';').next().expect("name=value").to_string();
    assert_eq!(get(&server, "/", &[(COOKIE.as_str(), &session)]).await.status(), StatusCode::OK);
    let status = get(&server, "/status.json", &[(COOKIE.as_str(), &session)]).await;
    assert_eq!(status.status(), StatusCode::OK);
    let text = status.text().await.expect("json");
    let data_dir = dir.path().to_string_lossy().into_owned();
    assert!(!text.contains(&data_dir), "no paths on any page: {text}");
    let forged = format!("{}x", session);
    assert_eq!(get(&server, "/status.json", &[(COOKIE.as_str(), &forged)]).await.status(), StatusCode::UNAUTHORIZED);

    // Scripts present the key itself.
    assert_eq!(get(&server, "/status.json", &[("x-api-key", "k-1")]).await.status(), StatusCode::OK);
    assert_eq!(get(&server, "/status.json", &[("authorization", "Bearer k-2")]).await.status(), StatusCode::OK);

    // Signing out ends the session.
    let out = browser().post(server.url("/logout")).header(COOKIE, &session).send().await.expect("logout");
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(get(&server, "/status.json", &[(COOKIE.as_str(), &session)]).await.status(), StatusCode::UNAUTHORIZED);

    // Health stays public, and metrics by default.
    for path in ["/health/live", "/health/ready", "/health/pipeline", "/metrics"] {
        assert_eq!(get(&server, path, &[]).await.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn metrics_can_need_a_key_too() {
    let dir = TempDir::new().expect("temp dir");
    let settings = [("OrderflowApiKeys", "k-1"), ("OrderflowMetricsPublic", "false")];
    let server = Server::start_with(&dir.path().join("data"), &settings);
    assert_eq!(get(&server, "/metrics", &[]).await.status(), StatusCode::UNAUTHORIZED);
    let scraped = get(&server, "/metrics", &[("authorization", "Bearer k-1")]).await;
    assert_eq!(scraped.status(), StatusCode::OK);
    assert_eq!(get(&server, "/health/ready", &[]).await.status(), StatusCode::OK);
}

/// Commands for a while, so that several seconds of the series have some.
async fn some_load(server: &Server, seconds: u64) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while std::time::Instant::now() < until {
        assert_eq!(server.restock("SKU-C", 1).await.status, 200);
    }
}

#[tokio::test]
async fn the_charts_follow_the_figures_second_by_second() {
    let dir = TempDir::new().expect("temp dir");
    let server = Server::start(&dir.path().join("data"));
    some_load(&server, 3).await;
    let series = |server: &Server| {
        let url = server.url("/series.json");
        async move { reqwest::get(url).await.expect("get").json::<Value>().await.expect("json") }
    };
    let busy = until_async(
        || series(&server),
        |series| {
            series["samples"].as_array().is_some_and(|samples| {
                samples.iter().any(|s| s["commands"]["appended"].as_f64().is_some_and(|rate| rate > 0.0))
            })
        },
    )
    .await;
    let samples = busy["samples"].as_array().cloned().unwrap_or_default();
    let counted = samples.iter().find(|s| s["commands"]["appended"].as_f64().is_some_and(|rate| rate > 0.0));
    let counted = counted.expect("a second with commands");
    assert!(counted["p50Ms"].as_f64().is_some_and(|ms| ms > 0.0), "{counted}");
    assert!(counted["p99Ms"].as_f64() >= counted["p50Ms"].as_f64(), "{counted}");
    assert!(counted["lagSeconds"].as_object().is_some_and(|lag| lag.contains_key("fulfillment")), "{counted}");
    // A second later there is one more sample: the charts move.
    let later =
        until_async(|| series(&server), |later| later["samples"].as_array().map(Vec::len) > Some(samples.len())).await;
    assert_eq!(later["everySeconds"], 1);
}

#[tokio::test]
async fn an_orders_journey_shows_every_event_what_it_caused_and_where_it_went() {
    let dir = TempDir::new().expect("temp dir");
    let server = Server::start(&dir.path().join("data"));
    support::lifecycle::place_to_delivered(&server).await;
    let journey = |query: &str| {
        let url = server.url(&format!("/journey.json?{query}"));
        async move { reqwest::get(url).await.expect("get") }
    };
    let answer = journey("order=o-1").await;
    assert_eq!(answer.status(), StatusCode::OK);
    let journey_of_o1: Value = answer.json().await.expect("json");
    let events = journey_of_o1["events"].as_array().cloned().unwrap_or_default();
    let history = server.history("o-1").await;
    assert_eq!(events.len(), history.len());
    for (event, stored) in events.iter().zip(&history) {
        assert_eq!((&event["type"], &event["eventId"]), (&stored["type"], &stored["eventId"]));
        let downstream = &event["downstream"];
        assert_eq!(downstream["topic"], "orderflow.orders");
        let lower = stored["type"].as_str().unwrap_or_default().to_lowercase();
        assert_eq!(downstream["type"], format!("orderflow.order.{lower}"));
        assert_eq!(downstream["id"], stored["eventId"]);
    }
    let confirmed = events.iter().find(|e| e["type"] == "Confirmed").expect("confirmed");
    let reactions: Vec<String> = confirmed["reactions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| format!("{} on {}", r["command"].as_str().unwrap_or(""), r["stream"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(reactions, ["Reserve on Sku-SKU-A", "Reserve on Sku-SKU-B"]);
    let shipped = events.iter().find(|e| e["type"] == "Shipped").expect("shipped");
    assert_eq!(shipped["reactions"].as_array().map(Vec::len), Some(2), "both SKUs ship: {shipped}");
    // What the reactions did on the SKUs, found by their causation id.
    let produced = |event: &Value| -> Vec<String> {
        event["produced"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{} {}", p["stream"].as_str().unwrap_or(""), p["type"].as_str().unwrap_or("")))
            .collect()
    };
    assert_eq!(produced(confirmed), ["Sku-SKU-A StockReserved", "Sku-SKU-B StockReserved"], "{confirmed}");
    assert_eq!(produced(shipped), ["Sku-SKU-A StockShipped", "Sku-SKU-B StockShipped"], "{shipped}");
    assert_eq!(confirmed["produced"][0]["data"]["quantity"], 2);
    let placed = events.iter().find(|e| e["type"] == "Placed").expect("placed");
    assert!(produced(placed).is_empty(), "{placed}");
    assert_eq!(journey_of_o1["readModel"]["state"]["status"], "Delivered");
    let traces = journey_of_o1["traceIds"].as_array().cloned().unwrap_or_default();
    assert!(!traces.is_empty() && traces.iter().all(|t| t.as_str().is_some_and(|t| t.len() == 32)), "{traces:?}");

    let customer_id = journey_of_o1["readModel"]["state"]["customerId"].as_str().unwrap_or_default().to_string();
    let orders: Value = journey(&format!("customer={customer_id}")).await.json().await.expect("json");
    assert!(orders["orders"].as_array().is_some_and(|o| o.iter().any(|o| o["orderId"] == "o-1")), "{orders}");
    assert_eq!(journey("order=nope").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(journey("order=a%20b").await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(journey("").await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_parked_stream_is_retried_from_the_console_once_fixed() {
    let dir = TempDir::new().expect("temp dir");
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &[("OrderflowApiKeys", "k-1")]);
    // An event this build cannot read, straight into the store: two steps park its stream.
    let db = support::write_unreadable_event(&data, "Order-later");
    let key = [("x-api-key", "k-1")];
    let status = || async { get(&server, "/status.json", &key).await.json::<Value>().await.expect("json") };
    let parked = until_async(status, |s| s["parkedStreams"].as_array().map(Vec::len) == Some(2)).await;
    let steps: Vec<&str> =
        parked["parkedStreams"].as_array().into_iter().flatten().filter_map(|p| p["consumer"].as_str()).collect();
    assert!(steps.contains(&"project-snapshots") && steps.contains(&"fulfillment"), "{parked}");

    let retry = |consumer: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let url = server.url("/parked/retry");
        async move {
            let mut request =
                browser().post(url).json(&serde_json::json!({"consumer": consumer, "streamId": "Order-later"}));
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.send().await.expect("post")
        }
    };
    assert_eq!(retry("fulfillment", &[]).await.status(), StatusCode::UNAUTHORIZED, "actions need the key");
    let still: Value = retry("fulfillment", &[("x-api-key", "k-1")]).await.json().await.expect("json");
    assert_eq!(still["outcome"], "still-parked", "{still}");
    assert!(still["reason"].as_str().is_some_and(|r| r.contains("FromTheFuture")), "{still}");

    // Fixed (here by hand: the event becomes one this build reads), each step gets it through.
    db.execute(
        "UPDATE events SET type = 'Placed', data = ?1 WHERE stream_id = 'Order-later'",
        [r#"{"customerId":"c-9","currency":"EUR","lines":[]}"#],
    )
    .expect("fix");
    for step in ["project-snapshots", "fulfillment"] {
        let unparked: Value = retry(step, &[("x-api-key", "k-1")]).await.json().await.expect("json");
        assert_eq!(
            (&unparked["outcome"], &unparked["events"]),
            (&serde_json::json!("unparked"), &serde_json::json!(1)),
            "{step}: {unparked}"
        );
    }
    let after = status().await;
    assert_eq!(after["parkedStreams"], serde_json::json!([]), "{after}");
    let order = get(&server, "/api/orders/later", &key).await;
    assert_eq!(order.status(), StatusCode::OK, "the read model caught up");
    let unknown = retry("fulfillment", &[("x-api-key", "k-1")]).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND, "nothing parked any more");
}

async fn post_json(server: &Server, path: &str, body: Value, key: Option<&str>) -> reqwest::Response {
    let mut request = browser().post(server.url(path)).json(&body);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    request.send().await.expect("post")
}

#[tokio::test]
async fn dead_letters_are_listed_with_their_reason_and_can_be_sent_again_corrected() {
    let dir = TempDir::new().expect("temp dir");
    let server = Server::start_with(&dir.path().join("data"), &[("OrderflowApiKeys", "k-1")]);
    let key = [("x-api-key", "k-1")];
    let send = |path: &str, body: Value| {
        let request = browser().post(server.url(path)).header("x-api-key", "k-1").json(&body);
        async move { request.send().await.expect("post") }
    };
    assert!(send("/api/inventory/SKU-A/restock", serde_json::json!({"quantity": 5})).await.status().is_success());
    let order = serde_json::json!({"orderId": "o-1", "customerId": "c-1", "currency": "EUR",
        "lines": [{"sku": "SKU-A", "quantity": 1, "unitPriceMinor": 1250}]});
    assert_eq!(send("/api/orders", order).await.status(), StatusCode::CREATED);
    assert!(send("/api/orders/o-1/confirm", serde_json::json!({})).await.status().is_success());
    until_async(
        || async { get(&server, "/api/orders/o-1", &key).await.json::<Value>().await.expect("json") },
        |order| order["status"] == "Reserved",
    )
    .await;

    // A payment of the wrong amount, and bytes that are no CloudEvent at all.
    let payment = |amount: u64| {
        serde_json::json!({"orderId": "o-1", "paymentId": "p-1", "amountMinor": amount, "currency": "EUR"}).to_string()
    };
    let wrong = browser()
        .post(server.url("/api/events"))
        .header("x-api-key", "k-1")
        .header("ce-specversion", "1.0")
        .header("ce-id", "pay-1")
        .header("ce-source", "/payments")
        .header("ce-type", "payment.authorized")
        .header("content-type", "application/json")
        .body(payment(9999))
        .send()
        .await
        .expect("post");
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let garbage = browser()
        .post(server.url("/api/events"))
        .header("x-api-key", "k-1")
        .header("content-type", "application/json")
        .body("{\"no\": \"cloudevent\"}")
        .send()
        .await
        .expect("post");
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);

    assert_eq!(get(&server, "/deadletters.json", &[]).await.status(), StatusCode::UNAUTHORIZED);
    let listed = |query: &'static str| {
        let request = browser().get(server.url(&format!("/deadletters.json{query}"))).header("x-api-key", "k-1");
        async move { request.send().await.expect("get").json::<Value>().await.expect("json") }
    };
    let all = until_async(|| listed(""), |l| l["deadLetters"].as_array().map(Vec::len) == Some(2)).await;
    assert_eq!((all["kinds"]["rejected"].as_u64(), all["kinds"]["undecodable"].as_u64()), (Some(1), Some(1)), "{all}");
    let rejected = listed("?kind=rejected").await;
    let letters = rejected["deadLetters"].as_array().cloned().unwrap_or_default();
    assert_eq!(letters.len(), 1, "{rejected}");
    let letter = &letters[0];
    assert!(letter["reason"].as_str().is_some_and(|r| r.contains("amount")), "{letter}");
    assert_eq!((&letter["origin"]["via"], &letter["whole"]), (&serde_json::json!("http"), &serde_json::json!(true)));
    assert!(letter["preview"].as_str().is_some_and(|p| p.contains("9999")), "{letter}");
    assert!(letter["time"].is_string());
    let at = serde_json::json!({"partition": letter["partition"], "offset": letter["offset"]});

    // Sent again as it was: dead-lettered again, for the same reason, and listed as from the console.
    assert_eq!(post_json(&server, "/deadletters/reingest", at.clone(), None).await.status(), StatusCode::UNAUTHORIZED);
    let again: Value =
        post_json(&server, "/deadletters/reingest", at.clone(), Some("k-1")).await.json().await.expect("json");
    assert_eq!(again["outcome"], "deadLettered", "{again}");
    let relisted =
        until_async(|| listed("?kind=rejected"), |l| l["deadLetters"].as_array().map(Vec::len) == Some(2)).await;
    assert_eq!(relisted["deadLetters"][0]["origin"]["via"], "console", "{relisted}");
    assert_eq!(relisted["deadLetters"][0]["origin"]["deadLetter"], letter["id"]);

    // Corrected: applied, once however often it is sent.
    let mut corrected = at.clone();
    corrected["payload"] = Value::String(payment(1250));
    let applied: Value =
        post_json(&server, "/deadletters/reingest", corrected.clone(), Some("k-1")).await.json().await.expect("json");
    assert_eq!(
        (&applied["outcome"], &applied["receipt"]["status"]),
        (&serde_json::json!("applied"), &serde_json::json!("ReadyToShip")),
        "{applied}"
    );
    let twice: Value =
        post_json(&server, "/deadletters/reingest", corrected, Some("k-1")).await.json().await.expect("json");
    assert_eq!(twice["outcome"], "duplicate", "{twice}");
    let history: Value = get(&server, "/api/orders/o-1/events", &key).await.json().await.expect("json");
    let authorized = history.as_array().into_iter().flatten().filter(|e| e["type"] == "PaymentAuthorized");
    assert_eq!(authorized.count(), 1, "{history}");

    let gone =
        post_json(&server, "/deadletters/reingest", serde_json::json!({"partition": 0, "offset": 999}), Some("k-1"))
            .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let bad = post_json(&server, "/deadletters/reingest", serde_json::json!({"offset": "x"}), Some("k-1")).await;
    assert!(bad.status().is_client_error(), "{}", bad.status());
}

#[tokio::test]
async fn wrong_keys_from_one_address_are_stopped_for_a_while() {
    let dir = TempDir::new().expect("temp dir");
    let server = Server::start_with(&dir.path().join("data"), &[("OrderflowApiKeys", "k-1")]);
    for _ in 0..10 {
        assert_eq!(get(&server, "/status.json", &[("x-api-key", "guess")]).await.status(), StatusCode::UNAUTHORIZED);
    }
    let stopped = get(&server, "/status.json", &[("x-api-key", "k-1")]).await;
    assert_eq!(stopped.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(stopped.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("60"));
    assert_eq!(login(&server, "k-1").await.status(), StatusCode::TOO_MANY_REQUESTS);
    // Health and the API's own keys are not the console's.
    assert_eq!(get(&server, "/health/live", &[]).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_skus_open_reservations_are_listed_by_order_with_their_age() {
    let dir = TempDir::new().expect("temp dir");
    let server = Server::start(&dir.path().join("data"));
    assert_eq!(server.restock("SKU-A", 10).await.status, 200);
    for order in ["o-1", "o-2"] {
        assert_eq!(server.place(order, &[("SKU-A", 2, 100)]).await.status, 201);
        assert_eq!(server.post_empty(&format!("/api/orders/{order}/confirm")).await.status, 200);
    }
    server.order_status("o-2", "Reserved").await;
    assert_eq!(server.post_empty("/api/orders/o-1/cancel").await.status, 200);
    let sku = |query: &'static str| {
        let url = server.url(&format!("/sku.json?{query}"));
        async move { reqwest::get(url).await.expect("get") }
    };
    let view = until_async(
        || async { sku("sku=SKU-A").await.json::<Value>().await.expect("json") },
        |view| view["reserved"] == 2,
    )
    .await;
    let open: Vec<(&str, u64)> = view["openReservations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (r["orderId"].as_str().unwrap_or(""), r["quantity"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(open, [("o-2", 2)], "{view}");
    assert!(view["openReservations"][0]["ageSeconds"].as_i64().is_some_and(|age| age >= 0), "{view}");
    assert_eq!((view["onHand"].as_u64(), view["available"].as_u64()), (Some(10), Some(8)));
    assert_eq!(sku("sku=NOPE").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(sku("sku=a%20b").await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(sku("").await.status(), StatusCode::BAD_REQUEST);
}
