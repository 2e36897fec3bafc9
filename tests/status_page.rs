//! The status page, as a person sees it: loaded in headless Chromium
//! (Debian's `chromium`), its script run, the rendered page read back; and
//! used, with the mouse and the keyboard ([`browser`]).

#[path = "support/browser.rs"]
mod browser;
mod support;

use std::process::Command;

use reqwest::Method;
use serde_json::json;
use support::Server;
use tempfile::TempDir;

use browser::{in_browser, Browser, CHROMIUM};

/// The page at `url` after its scripts ran for a few (virtual) seconds.
fn rendered(url: &str, profile: &std::path::Path) -> String {
    chromium(url, profile, &["--dump-dom"])
}

/// A picture of the page at `url`, `width` × `height`, into `target/screenshots/`
/// (look at them: the tests cannot tell whether a chart reads well).
fn screenshot(url: &str, profile: &std::path::Path, name: &str, (width, height): (u32, u32)) -> std::path::PathBuf {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&folder).expect("screenshots folder");
    let path = folder.join(name);
    let shot = format!("--screenshot={}", path.display());
    let size = format!("--window-size={width},{height}");
    chromium(url, profile, &[&shot, &size, "--hide-scrollbars"]);
    path
}

fn chromium(url: &str, profile: &std::path::Path, what: &[&str]) -> String {
    let output = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=4000",
        ])
        .args(what)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .output()
        .unwrap_or_else(|e| panic!("{CHROMIUM} must be installed (apt-get install chromium; scripts/test does): {e}"));
    assert!(output.status.success(), "chromium: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn the_status_page_shows_steps_orders_dead_letters_and_deadlines() {
    let dir = TempDir::new().expect("temp dir");
    let server = Server::start(&dir.path().join("data"));
    server.restock("SKU-S", 5).await;
    server.place("o-s1", &[("SKU-S", 2, 100)]).await;
    server.post_empty("/api/orders/o-s1/confirm").await;
    server.place("o-s2", &[("SKU-S", 1, 100)]).await;
    server.event("bad-1", "order.exploded", json!({})).await;
    server.order_status("o-s1", "Reserved").await;
    server.order_status("o-s2", "Placed").await;

    let url = server.url("/");
    let profile = dir.path().join("chromium");
    let page = in_browser(move || rendered(&url, &profile)).await;

    let row = |id: &str| -> String {
        let start = page.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no {id} in the page:\n{page}"));
        let end = page[start..].find("</tr>").map_or(page.len(), |end| start + end);
        page[start..end].to_string()
    };
    for step in ["project-snapshots", "publish-events", "fulfillment"] {
        let step_row = row(&format!("step-{step}"));
        assert!(step_row.contains(">ok<"), "{step_row}");
    }
    assert!(row("order-o-s1").contains(">Reserved<"), "{}", row("order-o-s1"));
    assert!(row("order-o-s2").contains(">Placed<"));
    assert!(page.contains("<span id=\"dead-letters\">1</span>"), "{page}");
    // o-s1's payment deadline (30 minutes) is not due: none waits.
    let due = page.find("id=\"deadlines-due\"").map(|at| &page[at..(at + 40).min(page.len())]);
    assert!(due.is_some_and(|due| due.contains(">0<")), "{due:?}");
}

#[tokio::test]
async fn the_charts_draw_the_last_minutes_on_a_desk_and_on_a_phone() {
    let dir = TempDir::new().expect("temp dir");
    let server = Server::start(&dir.path().join("data"));
    // A few seconds of orders: placed, confirmed (reservations follow), placed
    // again (refused: it exists).
    server.restock("SKU-C", 1_000_000).await;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(4);
    let mut n = 0;
    while std::time::Instant::now() < until {
        n += 1;
        server.place(&format!("c-{n}"), &[("SKU-C", 1, 100)]).await;
        server.post_empty(&format!("/api/orders/c-{n}/confirm")).await;
        server.place(&format!("c-{n}"), &[("SKU-C", 1, 100)]).await.assert_problem(422, "order-exists");
    }
    server.order_status(&format!("c-{n}"), "Reserved").await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    let url = server.url("/");
    let profile = dir.path().join("chromium");
    let render = (url.clone(), profile.clone());
    let page = in_browser(move || rendered(&render.0, &render.1)).await;
    for line in ["appended", "rejected", "p50", "p99", "fulfillment", "project-snapshots", "publish-events"] {
        assert!(page.contains(&format!("data-line=\"{line}\"")), "no {line} line in the charts:\n{page}");
    }
    let legend = page.find("id=\"legend-commands\"").map(|at| &page[at..(at + 200).min(page.len())]);
    assert!(legend.is_some_and(|legend| legend.contains("appended (")), "{legend:?}");
    let shots = in_browser(move || {
        [
            screenshot(&url, &profile, "console-desk.png", (1280, 1400)),
            screenshot(&url, &profile, "console-phone.png", (390, 1400)),
        ]
    })
    .await;
    for shot in shots {
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(size > 10_000, "{} is {size} bytes", shot.display());
        println!("screenshot: {}", shot.display());
    }
}

#[tokio::test]
async fn an_orders_journey_is_one_search_away() {
    let dir = TempDir::new().expect("temp dir");
    let server = Server::start(&dir.path().join("data"));
    support::lifecycle::place_to_delivered(&server).await;
    let url = server.url("/?order=o-1");
    let profile = dir.path().join("chromium");
    let render = (url.clone(), profile.clone());
    let page = in_browser(move || rendered(&render.0, &render.1)).await;
    let types = ["Placed", "Confirmed", "LineReserved", "LineReserved", "Reserved", "PaymentAuthorized", "ReadyToShip"];
    for (index, event_type) in types.iter().chain(&["Shipped", "Delivered"]).enumerate() {
        let at = page.find(&format!("id=\"event-{index}\"")).unwrap_or_else(|| panic!("no event {index}:\n{page}"));
        assert!(page[at..].starts_with(&format!("id=\"event-{index}\"><strong>#{index} {event_type}</strong>")));
    }
    assert!(
        page.contains(
            r#"→ Reserve on <a href="/?sku=SKU-A">Sku-SKU-A</a>; Reserve on <a href="/?sku=SKU-B">Sku-SKU-B</a>"#
        ),
        "{page}"
    );
    assert!(page.contains("published to orderflow.orders as orderflow.order.delivered"));
    assert!(
        page.contains(
            r#"<div class="produced">⇒ Sku-SKU-A #1 StockReserved {"attempt":1,"orderId":"o-1","quantity":2}</div>"#
        ),
        "{page}"
    );
    let shot = in_browser(move || screenshot(&url, &profile, "console-journey.png", (1280, 2200))).await;
    println!("screenshot: {}", shot.display());
}

#[tokio::test]
async fn an_operator_signs_in_sends_a_dead_letter_again_and_follows_an_order_to_its_sku() {
    let dir = TempDir::new().expect("temp dir");
    let server = Server::start_with(&dir.path().join("data"), &[("OrderflowApiKeys", "k-1")]);
    let key = [("x-api-key", "k-1")];
    let restock = server.send(Method::POST, "/api/inventory/SKU-A/restock", Some(json!({"quantity": 5})), &key).await;
    assert_eq!(restock.status, 200);
    let order = json!({"orderId": "o-1", "customerId": "c-1", "currency": "EUR",
        "lines": [{"sku": "SKU-A", "quantity": 2, "unitPriceMinor": 1250}]});
    assert_eq!(server.send(Method::POST, "/api/orders", Some(order), &key).await.status, 201);
    assert_eq!(server.send(Method::POST, "/api/orders/o-1/confirm", None, &key).await.status, 200);
    support::until_async(
        || server.send(Method::GET, "/api/orders/o-1", None, &key),
        |o| o.body["status"] == "Reserved",
    )
    .await;
    // The console shows the SKU's read model, which the projector may write
    // after the order's.
    support::until_async(|| server.send(Method::GET, "/api/inventory/SKU-A", None, &key), |s| s.body["reserved"] == 2)
        .await;
    let payment = |amount: u64| {
        json!({"orderId": "o-1", "paymentId": "p-1", "amountMinor": amount, "currency": "EUR"}).to_string()
    };
    let headers = [
        ("x-api-key", "k-1"),
        ("ce-specversion", "1.0"),
        ("ce-id", "pay-1"),
        ("ce-source", "/payments"),
        ("ce-type", "payment.authorized"),
        ("content-type", "application/json"),
    ];
    // A payment of the wrong amount: refused, dead-lettered.
    assert_eq!(server.post_raw("/api/events", payment(9999), &headers).await.status, 422);

    let url = server.url("/");
    let profile = dir.path().join("chromium");
    let shots = in_browser(move || {
        let mut browser = Browser::launch(&profile, (1280, 1600));
        browser.open(&url);
        assert_eq!(browser.eval("location.pathname"), json!("/login"), "no session: the login form");
        browser.type_into("#key", "k-1");
        browser.click("button[type=submit]");
        browser.wait_for(
            "location.pathname === '/' && document.querySelectorAll('#steps tr').length === 3",
            "the console",
        );

        // The dead letter, with its reason; corrected and sent again.
        let row = "#dead tr[id^=dead-]";
        browser.wait_for(&format!("document.querySelectorAll('{row}').length === 1"), "the dead letter");
        let listed = browser.text(row);
        assert!(
            listed.contains("rejected") && listed.contains("amount") && listed.contains("HTTP request"),
            "{listed}"
        );
        browser.click(&format!("{row} button"));
        assert!(browser.text("#reingest-title").contains("amount"));
        browser.type_into("#reingest-payload", &payment(2500));
        let corrected = browser.screenshot("console-reingest.png");
        browser.click("#reingest-corrected");
        let result = browser.wait_for(
            "document.getElementById('reingest-result').innerText.includes('applied')
            && document.getElementById('reingest-result').innerText",
            "the re-ingestion's answer",
        );
        assert_eq!(result, json!("applied: Order-o-1 at version 6"));

        // The order's journey, then the SKU one of its reactions went to.
        browser.type_into("#find-id", "o-1");
        browser.click("#find button");
        browser.wait_for("document.querySelectorAll('#journey-events li').length === 6", "the journey");
        assert!(browser.text("#event-4").starts_with("#4 PaymentAuthorized"), "{}", browser.text("#event-4"));
        browser.click("#event-1 a[href='/?sku=SKU-A']");
        let reservation =
            browser.wait_for("document.querySelector('#reservations tbody tr a')?.closest('tr').innerText", "the SKU");
        let cells: Vec<String> =
            reservation.as_str().unwrap_or_default().split('\t').map(|cell| cell.trim().to_string()).collect();
        assert_eq!((cells[0].as_str(), cells[1].as_str(), cells[2].as_str()), ("o-1", "1", "2"), "{cells:?}");
        assert!(browser.text("#sku").contains("SKU-A: 5 on hand, 2 reserved, 3 available"), "{}", browser.text("#sku"));
        [corrected, browser.screenshot("console-sku.png")]
    })
    .await;
    for shot in shots {
        println!("screenshot: {}", shot.display());
    }
}
