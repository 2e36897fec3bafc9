//! Archival as an operator uses it, over HTTP on the embedded store: orders
//! delivered or cancelled move their events out of the hot store while
//! `serve` takes a load beside it, and every read of them answers the same
//! before and after; an open order is left alone; a second run finds
//! nothing left to do.
//!
//! `ORDERFLOW_ARCHIVE_TEST_ORDERS` sets how many closed orders (default
//! 200, to keep the test command short; the run is 10,000).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use futures::{stream, StreamExt};
use serde_json::{json, Value};
use support::{cli, Server};
use tempfile::TempDir;

fn orders() -> usize {
    std::env::var("ORDERFLOW_ARCHIVE_TEST_ORDERS").ok().and_then(|n| n.parse().ok()).unwrap_or(200)
}

/// An order taken to `Delivered` (odd `n`) or `Cancelled` after its stock
/// was reserved (even `n`).
async fn closed_order(server: &Server, n: usize) {
    let id = format!("a-{n}");
    assert_eq!(server.place(&id, &[("SKU-X", 1, 100), ("SKU-Y", 2, 50)]).await.status, 201);
    assert_eq!(server.post_empty(&format!("/api/orders/{id}/confirm")).await.status, 200);
    server.order_status(&id, "Reserved").await;
    if n.is_multiple_of(2) {
        assert_eq!(
            server.post(&format!("/api/orders/{id}/cancel"), json!({"reason": "changed mind"})).await.status,
            200
        );
        server.order_status(&id, "Cancelled").await;
        return;
    }
    let paid = json!({"orderId": id, "paymentId": format!("p-{n}"), "amountMinor": 200, "currency": "EUR"});
    assert_eq!(server.event(&format!("pay-{n}"), "payment.authorized", paid).await.status, 202);
    let shipped = json!({"orderId": id, "shipmentId": format!("s-{n}"), "carrier": "DHL", "trackingNumber": "T"});
    assert_eq!(server.event(&format!("ship-{n}"), "shipment.dispatched", shipped).await.status, 202);
    let delivered = json!({"orderId": id, "shipmentId": format!("s-{n}")});
    assert_eq!(server.event(&format!("del-{n}"), "shipment.delivered", delivered).await.status, 202);
    server.order_status(&id, "Delivered").await;
}

/// Everything a client can read of the orders: each one, its history, and
/// the customer's list.
async fn reads(server: &Server, ids: &[String]) -> Vec<Value> {
    let each = stream::iter(ids)
        .map(|id| async move {
            let order = server.get(&format!("/api/orders/{id}")).await;
            let events = server.get(&format!("/api/orders/{id}/events")).await;
            assert_eq!((order.status.as_u16(), events.status.as_u16()), (200, 200), "{id}");
            json!({"order": order.body, "events": events.body})
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await;
    let listed = server.get("/api/customers/c-1/orders?limit=1000").await;
    assert_eq!(listed.status, 200);
    each.into_iter().chain([listed.body]).collect()
}

fn count_of(data: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(data.join("orderflow.db")).expect("open the store");
    conn.busy_timeout(std::time::Duration::from_secs(5)).expect("busy timeout");
    conn.query_row(sql, [], |row| row.get(0)).expect("count")
}

/// Events of the test's orders in the hot store.
fn hot_events(data: &Path) -> i64 {
    count_of(data, "SELECT COUNT(*) FROM events WHERE stream_id LIKE 'Order-a-%' OR stream_id = 'Order-open-1'")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_orders_move_to_the_archive_while_load_runs_and_read_the_same() {
    let dir = TempDir::new().expect("temp dir");
    let data = dir.path().join("data");
    let data_dir = data.to_string_lossy().to_string();
    let server = Server::start(&data);
    let count = orders();
    assert_eq!(server.restock("SKU-X", count as u64 + 10).await.status, 200);
    assert_eq!(server.restock("SKU-Y", 2 * count as u64 + 10).await.status, 200);
    stream::iter(0..count).for_each_concurrent(32, |n| closed_order(&server, n)).await;
    assert_eq!(server.place("open-1", &[("SKU-X", 1, 100)]).await.status, 201);
    let mut ids: Vec<String> = (0..count).map(|n| format!("a-{n}")).collect();
    ids.push("open-1".into());
    // Every reaction is in: the stock of the cancelled orders is back.
    let delivered = (count / 2) as u64;
    server
        .eventually("/api/inventory/SKU-X", |s| s["reserved"] == 0 && s["onHand"] == count as u64 + 10 - delivered)
        .await;
    // ... and every read model (reads of an order answer from its stream
    // when its read model lags; archival goes by the read models).
    let closed = "SELECT COUNT(*) FROM snapshots WHERE stream_id LIKE 'Order-a-%'
                  AND json_extract(state, '$.status') IN ('Cancelled', 'Delivered')";
    support::until(|| count_of(&data, closed), |projected| *projected == count as i64).await;
    let before = reads(&server, &ids).await;
    let hot_before = hot_events(&data);
    // ... and every change-feed consumer has read them (archival leaves
    // alone what one has not).
    let read_by_all = "SELECT (SELECT MIN(CAST(continuation AS INTEGER)) FROM leases WHERE range = 'all')
        >= (SELECT MAX(seq) FROM events WHERE stream_id LIKE 'Order-a-%')";
    support::until(|| count_of(&data, read_by_all), |read| *read == 1).await;

    // A load of new orders runs meanwhile (and stays hot: they are open).
    let mut load = Command::new(support::BIN)
        .args(["load", "--target", &server.url(""), "--workload", "place", "-d", "5s", "-c", "4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the load");
    let archived = cli(&["archive", "--closed-before", "0s", "--quiet", "--data-dir", &data_dir], dir.path());
    assert!(archived.starts_with(&format!("archived {count} order(s) closed before")), "{archived}");
    assert!(load.wait().expect("the load").success());

    assert_eq!(reads(&server, &ids).await, before, "every read answers the same");
    // Each closed order keeps its last event hot; the open one keeps all.
    let open_events = before[count]["events"].as_array().map_or(0, Vec::len) as i64;
    assert_eq!(hot_events(&data), count as i64 + open_events);
    let moved: i64 = before[..count].iter().map(|r| r["events"].as_array().map_or(0, Vec::len) as i64 - 1).sum();
    assert!(moved >= 4 * count as i64, "at least Placed, Confirmed and the reservations: {moved}");
    assert_eq!(hot_before - hot_events(&data), moved);
    assert!(archived.contains(&format!("{moved} event(s) moved")), "{archived}");

    let again = cli(&["archive", "--closed-before", "0s", "--quiet", "--data-dir", &data_dir], dir.path());
    assert!(again.starts_with("archived 0 order(s)"), "nothing left to archive: {again}");
    // A closed order still takes commands as before (and refuses them the same).
    server.post_empty("/api/orders/a-0/confirm").await.assert_problem(422, "invalid-status");
    // The snapshots are rebuilt from the streams, hot and archived events alike.
    cli(&["replay", "snapshots", "--quiet", "--data-dir", &data_dir], dir.path());
    assert_eq!(reads(&server, &ids).await, before);
}
