//! Scenarios for a store that many servers share (Cosmos DB, DynamoDB):
//! each test of such a store runs them against a place of its own in it.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;

use super::{Server, BIN};

/// A store in the cloud (or its stand-in on this machine): the settings that
/// point a process at a place of its own in it.
pub struct SharedStore {
    pub settings: Vec<(String, String)>,
    /// The setting for how long a change-feed lease lasts unrenewed.
    pub lease_setting: &'static str,
}

/// Tables of the test's own on the moto the test script started
/// (`ORDERFLOW_TEST_DYNAMODB`), reached through the AWS SDK's standard chain.
pub fn moto() -> SharedStore {
    let endpoint = std::env::var("ORDERFLOW_TEST_DYNAMODB")
        .expect("ORDERFLOW_TEST_DYNAMODB is not set: run the tests with scripts/test, which starts moto");
    let prefix = format!("t{}-", uuid::Uuid::new_v4().simple());
    let settings = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("DynamoDBTablePrefix", prefix.as_str()),
    ];
    SharedStore {
        settings: settings.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect(),
        lease_setting: "DynamoDBLeaseSeconds",
    }
}

impl SharedStore {
    /// The settings, to hand a process.
    pub fn env(&self) -> Vec<(&str, &str)> {
        self.settings.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect()
    }

    /// `orderflow` with this store's settings, in `dir`.
    pub fn command(&self, dir: &Path) -> Command {
        let mut command = Command::new(BIN);
        command.current_dir(dir).envs(self.settings.iter().map(|(name, value)| (name, value)));
        command
    }

    /// `orderflow init`, then `serve` on this store.
    pub fn serve(&self, data_dir: &Path) -> Server {
        self.serve_with(data_dir, &[])
    }

    pub fn serve_with(&self, data_dir: &Path, more: &[(&str, &str)]) -> Server {
        let init = self.command(data_dir.parent().unwrap_or(data_dir)).arg("init").output().expect("orderflow init");
        assert!(init.status.success(), "init: {}", String::from_utf8_lossy(&init.stderr));
        Server::start_with(data_dir, &[&self.env()[..], more].concat())
    }

    pub fn run(&self, dir: &Path, args: &[&str]) -> Output {
        self.command(dir).args(args).output().expect("run orderflow")
    }

    /// One of the settings ("" when not set).
    pub fn setting(&self, name: &str) -> String {
        self.settings.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default()
    }

    /// The AWS SDK's configuration for moto where this store is, to look
    /// into its tables and streams as an operator would.
    pub fn aws_config(&self) -> aws_config::SdkConfig {
        use aws_config::{BehaviorVersion, Region};
        use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
        aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(self.setting("AWS_ENDPOINT_URL"))
            .region(Region::new(self.setting("AWS_REGION")))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new("test", "test", None, None, "tests")))
            .build()
    }
}

pub async fn idempotency_and_restarts_hold(store: &SharedStore, dir: &Path) {
    let data = dir.join("data");
    let server = store.serve(&data);
    server.restock("SKU-A", 10).await;
    let key = [("idempotency-key", "place-once")];
    let body = json!({"orderId": "c-1", "customerId": "c", "currency": "EUR", "lines": [{"sku": "SKU-A", "quantity": 1, "unitPriceMinor": 5}]});
    let first = server.send(reqwest::Method::POST, "/api/orders", Some(body.clone()), &key).await;
    let again = server.send(reqwest::Method::POST, "/api/orders", Some(body), &key).await;
    assert_eq!((first.status.as_u16(), &first.body), (201, &again.body));
    server.post_empty("/api/orders/c-1/confirm").await;
    server.crash();

    // The consumers resume from their checkpoints in the store's leases.
    let server = store.serve(&data);
    server.order_status("c-1", "Reserved").await;
    assert_eq!(server.history("c-1").await.len(), 4, "Placed, Confirmed, LineReserved, Reserved");
    server.eventually("/api/inventory/SKU-A", |s| s["reserved"] == 1 && s["version"] == 2).await;
    server.post("/api/inventory/X/restock", json!({"quantity": 0})).await.assert_problem(400, "malformed-request");
}

pub async fn two_servers_share_the_store_and_the_survivor_takes_over(store: &SharedStore, dir: &Path) {
    let short_leases = [(store.lease_setting, "2")];
    let first = store.serve_with(&dir.join("first"), &short_leases);
    let second = store.serve_with(&dir.join("second"), &short_leases);
    first.restock("SKU-S", 100).await;

    // Orders through either server are projected and fulfilled, whichever
    // of them holds the feed range of each stream.
    let orders: Vec<String> = (0..24).map(|i| format!("shared-{i}")).collect();
    for (i, order) in orders[..8].iter().enumerate() {
        let server = if i % 2 == 0 { &first } else { &second };
        server.place(order, &[("SKU-S", 1, 5)]).await;
        server.post_empty(&format!("/api/orders/{order}/confirm")).await;
    }
    for order in &orders[..8] {
        second.order_status(order, "Reserved").await;
    }

    // The first dies; once its leases expire the second holds every range.
    first.crash();
    for order in &orders[8..] {
        second.place(order, &[("SKU-S", 1, 5)]).await;
        second.post_empty(&format!("/api/orders/{order}/confirm")).await;
    }
    for order in &orders {
        let snapshot = second.order_status(order, "Reserved").await;
        // Placed, Confirmed, LineReserved, Reserved: each event projected once.
        assert_eq!(snapshot["version"], 4, "{order}: {snapshot}");
    }
    second.eventually("/api/inventory/SKU-S", |s| s["reserved"] == 24 && s["version"] == 25).await;
}

pub async fn two_servers_pass_each_deadline_once_between_them(store: &SharedStore, dir: &Path) {
    let short = [("OrderflowPaymentDeadline", "2s")];
    let first = store.serve_with(&dir.join("first"), &short);
    let second = store.serve_with(&dir.join("second"), &short);
    first.restock("SKU-T", 100).await;
    // Unpaid orders through either server: both pass due deadlines every
    // second, racing for each one.
    let orders: Vec<String> = (0..10).map(|i| format!("unpaid-{i}")).collect();
    for (i, order) in orders.iter().enumerate() {
        let server = if i % 2 == 0 { &first } else { &second };
        server.place(order, &[("SKU-T", 3, 5)]).await;
        server.post_empty(&format!("/api/orders/{order}/confirm")).await;
    }
    for order in &orders {
        let cancelled = second.order_status(order, "Cancelled").await;
        assert_eq!(cancelled["cancelReason"], "payment-timeout", "{order}");
        let types: Vec<String> = first.history(order).await.iter().map(|e| e["type"].to_string()).collect();
        assert_eq!(types.iter().filter(|t| t.contains("Cancelled")).count(), 1, "{order}: {types:?}");
    }
    // Restocked, then per order one reservation and one release.
    first.eventually("/api/inventory/SKU-T", |s| s["reserved"] == 0 && s["version"] == 21).await;
}

pub async fn two_archivers_racing_move_closed_orders_and_reads_stay_the_same(store: &SharedStore, dir: &Path) {
    let server = store.serve(&dir.join("serve"));
    server.restock("SKU-R", 100).await;
    server.restock("SKU-Q", 100).await;
    let orders: Vec<String> = (0..12).map(|i| format!("closed-{i}")).collect();
    for order in &orders {
        server.place(order, &[("SKU-R", 2, 5), ("SKU-Q", 1, 5)]).await;
        server.post_empty(&format!("/api/orders/{order}/confirm")).await;
        server.order_status(order, "Reserved").await;
        server.post_empty(&format!("/api/orders/{order}/cancel")).await;
    }
    // Every reaction is in: the stock is back.
    server.eventually("/api/inventory/SKU-Q", |s| s["reserved"] == 0 && s["version"] == 25).await;
    server.place("open-r", &[("SKU-R", 1, 5)]).await;
    let mut reads = Vec::new();
    for order in orders.iter().chain([&"open-r".to_string()]) {
        let status = if order == "open-r" { "Placed" } else { "Cancelled" };
        reads.push((server.order_status(order, status).await, server.history(order).await));
    }
    // The read models are all there (reads of an order answer from its
    // stream when its read model lags; archival goes by the read models).
    let listed = server
        .eventually("/api/customers/c-1/orders", |list| {
            let statuses = list["orders"].as_array().into_iter().flatten().map(|o| o["status"].as_str());
            statuses.filter(|s| matches!(s, Some("Cancelled" | "Placed"))).count() == 13
        })
        .await;

    // Two operators (or a CLI beside a scheduled host) archive at once.
    let archive = || store.run(dir, &["archive", "--closed-before", "0s", "--quiet"]);
    let (one, two) = std::thread::scope(|scope| {
        let one = scope.spawn(archive);
        let two = archive();
        (one.join().expect("first archiver"), two)
    });
    for run in [&one, &two] {
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    }
    let again = String::from_utf8_lossy(&archive().stdout).into_owned();
    // Opt-in in the cloud: `serve` never archives unless told to.
    let shown = String::from_utf8_lossy(&store.run(dir, &["config", "show"]).stdout).into_owned();
    let archival = shown.lines().find(|line| line.contains("OrderflowArchiveClosedAfter")).unwrap_or_default();
    assert!(archival.contains("off"), "{shown}");
    assert!(again.starts_with("archived 0 order(s)"), "everything was archived: {again}");
    for (order, (snapshot, history)) in orders.iter().chain([&"open-r".to_string()]).zip(&reads) {
        assert_eq!(&server.get(&format!("/api/orders/{order}")).await.body, snapshot, "{order}");
        assert_eq!(&server.history(order).await, history, "{order}");
    }
    assert_eq!(server.get("/api/customers/c-1/orders").await.body, listed);
    // Archived orders still refuse what a cancelled order refuses.
    server.post_empty("/api/orders/closed-0/confirm").await.assert_problem(422, "invalid-status");
}
