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
