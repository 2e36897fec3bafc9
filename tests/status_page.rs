//! The status page, as a person sees it: loaded in headless Chromium
//! (Debian's `chromium`), its script run, the rendered page read back.

mod support;

use std::process::Command;

use serde_json::json;
use support::Server;
use tempfile::TempDir;

const CHROMIUM: &str = "/usr/bin/chromium";

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
    let page = tokio::task::spawn_blocking(move || rendered(&url, &profile)).await.expect("chromium ran");

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
    let page = tokio::task::spawn_blocking(move || rendered(&render.0, &render.1)).await.expect("chromium ran");
    for line in ["appended", "rejected", "p50", "p99", "fulfillment", "project-snapshots", "publish-events"] {
        assert!(page.contains(&format!("data-line=\"{line}\"")), "no {line} line in the charts:\n{page}");
    }
    let legend = page.find("id=\"legend-commands\"").map(|at| &page[at..(at + 200).min(page.len())]);
    assert!(legend.is_some_and(|legend| legend.contains("appended (")), "{legend:?}");
    let shots = tokio::task::spawn_blocking(move || {
        [
            screenshot(&url, &profile, "console-desk.png", (1280, 1400)),
            screenshot(&url, &profile, "console-phone.png", (390, 1400)),
        ]
    })
    .await
    .expect("chromium ran");
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
    let page = tokio::task::spawn_blocking(move || rendered(&render.0, &render.1)).await.expect("chromium ran");
    let types = ["Placed", "Confirmed", "LineReserved", "LineReserved", "Reserved", "PaymentAuthorized", "ReadyToShip"];
    for (index, event_type) in types.iter().chain(&["Shipped", "Delivered"]).enumerate() {
        let at = page.find(&format!("id=\"event-{index}\"")).unwrap_or_else(|| panic!("no event {index}:\n{page}"));
        assert!(page[at..].starts_with(&format!("id=\"event-{index}\"><strong>#{index} {event_type}</strong>")));
    }
    assert!(page.contains("→ Reserve on Sku-SKU-A; Reserve on Sku-SKU-B"), "{page}");
    assert!(page.contains("published to orderflow.orders as orderflow.order.delivered"));
    let shot = tokio::task::spawn_blocking(move || screenshot(&url, &profile, "console-journey.png", (1280, 2200)))
        .await
        .expect("chromium ran");
    println!("screenshot: {}", shot.display());
}
