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
            "--dump-dom",
        ])
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
