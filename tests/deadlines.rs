//! Deadlines as a shop lives them, over HTTP on the embedded store: an
//! unpaid order gives its stock back when its payment deadline passes (also
//! across a restart), a paid one is kept, and a shipment not delivered in
//! time is flagged overdue downstream.

mod support;

use serde_json::json;
use support::{cli, topic, Server};
use tempfile::TempDir;

const SHORT_DEADLINES: [(&str, &str); 2] = [("OrderflowPaymentDeadline", "3s"), ("OrderflowDeliveryDeadline", "3s")];

async fn reserved(server: &Server, order_id: &str) {
    server.place(order_id, &[("SKU-D", 2, 500)]).await;
    assert_eq!(server.post_empty(&format!("/api/orders/{order_id}/confirm")).await.status, 200);
    server.order_status(order_id, "Reserved").await;
}

#[tokio::test]
async fn an_unpaid_order_gives_its_stock_back_when_its_payment_deadline_passes_even_across_a_restart() {
    let dir = TempDir::new().expect("temp dir");
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &SHORT_DEADLINES);
    server.restock("SKU-D", 10).await;
    reserved(&server, "unpaid").await;
    reserved(&server, "paid").await;
    let pay = json!({"orderId": "paid", "paymentId": "p-1", "amountMinor": 1000, "currency": "EUR"});
    assert_eq!(server.event("pay-1", "payment.authorized", pay).await.status, 202);
    server.eventually("/api/inventory/SKU-D", |s| s["reserved"] == 4).await;
    // Stopped before the deadline passes: the timers are in the store.
    assert!(server.stop().success());

    let server = Server::start_with(&data, &SHORT_DEADLINES);
    let cancelled = server.order_status("unpaid", "Cancelled").await;
    assert_eq!(cancelled["cancelReason"], "payment-timeout");
    server.eventually("/api/inventory/SKU-D", |s| s["reserved"] == 2 && s["available"] == 8).await;
    // Paid in time: kept, and shipping starts its delivery deadline.
    assert_eq!(server.get("/api/orders/paid").await.body["status"], "ReadyToShip");
    let dispatched = json!({"orderId": "paid", "shipmentId": "s-1", "carrier": "DHL", "trackingNumber": "T-1"});
    assert_eq!(server.event("ship-1", "shipment.dispatched", dispatched).await.status, 202);
    let overdue = server.eventually("/api/orders/paid", |o| o["overdue"] == true).await;
    assert_eq!(overdue["status"], "Shipped", "a notice does not move the order");
    let types: Vec<String> = server.history("paid").await.iter().map(|e| e["type"].to_string()).collect();
    assert_eq!(types.iter().filter(|t| t.contains("DeliveryOverdue")).count(), 1, "{types:?}");
    let downstream = topic(&data, "orderflow.orders");
    assert!(downstream.iter().any(|m| m["type"] == "orderflow.order.deliveryoverdue" && m["subject"] == "Order-paid"));
    // Nothing is left waiting.
    let listed = cli(&["deadlines", "list", "--data-dir", &data.to_string_lossy()], dir.path());
    assert_eq!(listed, "", "every deadline passed: {listed}");
}

#[tokio::test]
async fn deadlines_wait_in_the_store_and_operators_can_list_and_pass_them() {
    let dir = TempDir::new().expect("temp dir");
    let data = dir.path().join("data");
    let data_dir = data.to_string_lossy().to_string();
    // The default payment deadline: 30 minutes.
    let server = Server::start(&data);
    server.restock("SKU-D", 10).await;
    reserved(&server, "waiting").await;
    let listed = support::until(
        || cli(&["deadlines", "list", "--data-dir", &data_dir], dir.path()),
        |listed| !listed.is_empty(),
    )
    .await;
    assert!(listed.contains("payment-1 of Order-waiting (not due yet)"), "{listed}");
    let json_line = cli(&["deadlines", "list", "--json", "--data-dir", &data_dir], dir.path());
    let timer: serde_json::Value = serde_json::from_str(json_line.trim()).expect("one JSON line");
    assert_eq!(timer["deadline"], json!({"kind": "payment", "attempt": 1}));
    let passed = cli(&["deadlines", "pass", "--data-dir", &data_dir], dir.path());
    assert!(passed.starts_with("passed 0 deadline(s)"), "not due yet: {passed}");
    assert_eq!(server.get("/api/orders/waiting").await.body["status"], "Reserved");
    let shown = cli(&["config", "show", "--data-dir", &data_dir], dir.path());
    assert!(shown.contains("OrderflowPaymentDeadline") && shown.contains("30m"), "{shown}");
    let retention_settings = [
        "OrderflowIdempotencyRetention",
        "OrderflowTopicRetention",
        "OrderflowTopicRetentionRecords",
        "OrderflowArchiveClosedAfter",
    ];
    for retention in retention_settings {
        assert!(shown.contains(retention), "config show lists {retention}: {shown}");
    }
    let archival = shown.lines().find(|line| line.contains("OrderflowArchiveClosedAfter")).unwrap_or_default();
    assert!(archival.contains("90d"), "archival is on by default on the embedded store: {archival}");
}

#[test]
fn bad_deadline_and_retention_settings_are_each_named_at_start() {
    let dir = TempDir::new().expect("temp dir");
    let output = std::process::Command::new(support::BIN)
        .args(["serve", "--data-dir", &dir.path().join("data").to_string_lossy()])
        .env("OrderflowPaymentDeadline", "soon")
        .env("OrderflowDeliveryDeadline", "1000y")
        .env("OrderflowBackorderAction", "shout")
        .env("OrderflowTopicRetentionRecords", "0")
        .env("OrderflowArchiveClosedAfter", "0s")
        .output()
        .expect("run orderflow");
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    for setting in [
        "OrderflowPaymentDeadline",
        "OrderflowDeliveryDeadline",
        "OrderflowBackorderAction",
        "OrderflowTopicRetentionRecords",
        "OrderflowArchiveClosedAfter",
    ] {
        assert!(said.contains(setting), "{setting} named: {said}");
    }
}
