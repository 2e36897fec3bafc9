//! `serve` on Cosmos DB: the SDK's in-memory emulator served over HTTP by
//! `orderflow dev cosmos-emulator`, reached by the unmodified SDK in `serve`
//! through `CosmosDBConnection` — the real wire protocol on one machine. With
//! `CosmosDBConnection` set in the environment, the same tests run against
//! that account instead.

mod support;

use std::process::{Child, Command, Stdio};

use serde_json::json;
use support::{word_of_first_line, Server, BIN};
use tempfile::TempDir;

/// The account the tests use: the one configured, or a dev emulator.
struct Account {
    connection: String,
    emulator: Option<Child>,
}

impl Account {
    fn start() -> Account {
        if let Ok(connection) = std::env::var("CosmosDBConnection") {
            return Account { connection, emulator: None };
        }
        let mut emulator = Command::new(BIN)
            .args(["dev", "cosmos-emulator", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the dev emulator");
        // Built without --all-features, the binary has no emulator and says so.
        let connection =
            word_of_first_line(&mut emulator, |word| word.strip_prefix("CosmosDBConnection=").map(String::from));
        Account { connection, emulator: Some(emulator) }
    }

    /// `serve` on this account, with a database of the test's own.
    fn serve(&self, data_dir: &std::path::Path, database: &str) -> Server {
        self.serve_with(data_dir, database, &[])
    }

    fn serve_with(&self, data_dir: &std::path::Path, database: &str, more: &[(&str, &str)]) -> Server {
        let settings = [("CosmosDBConnection", self.connection.as_str()), ("CosmosDatabase", database)];
        let init = Command::new(BIN).arg("init").envs(settings).output().expect("orderflow init");
        assert!(init.status.success(), "init: {}", String::from_utf8_lossy(&init.stderr));
        Server::start_with(data_dir, &[&settings[..], more].concat())
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        if let Some(emulator) = &mut self.emulator {
            let _ = emulator.kill();
            let _ = emulator.wait();
        }
    }
}

fn database() -> String {
    format!("orderflow-test-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn an_order_goes_from_placed_to_delivered_on_cosmos_db() {
    let account = Account::start();
    let dir = TempDir::new().expect("temp dir");
    let server = account.serve(&dir.path().join("data"), &database());
    support::lifecycle::place_to_delivered(&server).await;
    support::lifecycle::every_event_is_on_the_orders_topic(&server, "o-1").await;
}

#[tokio::test]
async fn idempotency_and_restarts_hold_on_cosmos_db() {
    let account = Account::start();
    let dir = TempDir::new().expect("temp dir");
    let data = dir.path().join("data");
    let database = database();
    let server = account.serve(&data, &database);
    server.restock("SKU-A", 10).await;
    let key = [("idempotency-key", "place-cosmos")];
    let body = json!({"orderId": "c-1", "customerId": "c", "currency": "EUR", "lines": [{"sku": "SKU-A", "quantity": 1, "unitPriceMinor": 5}]});
    let first = server.send(reqwest::Method::POST, "/api/orders", Some(body.clone()), &key).await;
    let again = server.send(reqwest::Method::POST, "/api/orders", Some(body), &key).await;
    assert_eq!((first.status.as_u16(), &first.body), (201, &again.body));
    server.post_empty("/api/orders/c-1/confirm").await;
    server.crash();

    // The consumers resume from their checkpoints in the leases container.
    let server = account.serve(&data, &database);
    server.order_status("c-1", "Reserved").await;
    assert_eq!(server.history("c-1").await.len(), 4, "Placed, Confirmed, LineReserved, Reserved");
    server.eventually("/api/inventory/SKU-A", |s| s["reserved"] == 1 && s["version"] == 2).await;
    server.post("/api/inventory/X/restock", json!({"quantity": 0})).await.assert_problem(400, "malformed-request");
}

#[tokio::test]
async fn an_idempotency_key_means_one_request_whatever_else_happens_on_cosmos_db() {
    let account = Account::start();
    let dir = TempDir::new().expect("temp dir");
    let server = account.serve(&dir.path().join("data"), &database());
    support::lifecycle::keys_mean_one_request_whatever_else_happens(&server).await;
}

#[tokio::test]
async fn reads_naming_their_writes_version_are_never_stale_or_missing_on_cosmos_db() {
    let account = Account::start();
    let dir = TempDir::new().expect("temp dir");
    let server = account.serve(&dir.path().join("data"), &database());
    support::lifecycle::reads_follow_their_writes(&server).await;
}

#[tokio::test]
async fn two_servers_share_one_account_and_the_survivor_takes_over() {
    let account = Account::start();
    let dir = TempDir::new().expect("temp dir");
    let database = database();
    let short_leases = [("CosmosLeaseSeconds", "2")];
    let first = account.serve_with(&dir.path().join("first"), &database, &short_leases);
    let second = account.serve_with(&dir.path().join("second"), &database, &short_leases);
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

#[tokio::test]
async fn two_servers_pass_each_deadline_once_between_them() {
    let account = Account::start();
    let dir = TempDir::new().expect("temp dir");
    let database = database();
    let short = [("OrderflowPaymentDeadline", "2s")];
    let first = account.serve_with(&dir.path().join("first"), &database, &short);
    let second = account.serve_with(&dir.path().join("second"), &database, &short);
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

#[tokio::test]
async fn two_archivers_racing_on_one_account_move_closed_orders_and_reads_stay_the_same() {
    let account = Account::start();
    let dir = TempDir::new().expect("temp dir");
    let database = database();
    let server = account.serve(&dir.path().join("serve"), &database);
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
    let archive = || {
        Command::new(BIN)
            .args(["archive", "--closed-before", "0s", "--quiet"])
            .envs([("CosmosDBConnection", account.connection.as_str()), ("CosmosDatabase", database.as_str())])
            .current_dir(dir.path())
            .output()
            .expect("orderflow archive")
    };
    let (one, two) = std::thread::scope(|scope| {
        let one = scope.spawn(archive);
        let two = archive();
        (one.join().expect("first archiver"), two)
    });
    for run in [&one, &two] {
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    }
    let again = String::from_utf8_lossy(&archive().stdout).into_owned();
    // Opt-in on Cosmos DB: `serve` never archives unless told to.
    let shown = Command::new(BIN)
        .args(["config", "show"])
        .env("CosmosDBConnection", &account.connection)
        .current_dir(dir.path())
        .output()
        .expect("orderflow config show");
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
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

/// What a managed-identity endpoint (App Service's `IDENTITY_ENDPOINT`) was
/// asked: the resource and the `X-IDENTITY-HEADER` of each request.
type Asked = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A managed-identity endpoint on loopback, as App Service and Functions
/// give one: `GET ?resource=...&api-version=2019-08-01` with the
/// `X-IDENTITY-HEADER`, answered with a bearer token.
async fn identity_endpoint() -> (String, Asked) {
    let asked: Asked = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let seen = asked.clone();
    let app = axum::Router::new().fallback(
        move |query: axum::extract::Query<std::collections::HashMap<String, String>>,
              headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                let header = headers.get("x-identity-header").and_then(|v| v.to_str().ok()).unwrap_or_default();
                let resource = query.get("resource").cloned().unwrap_or_default();
                seen.lock().expect("lock").push((resource.clone(), header.to_string()));
                let expires = (std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                axum::Json(json!({
                    "access_token": "a-token-from-the-identity-endpoint", "expires_on": expires.to_string(),
                    "resource": resource, "token_type": "Bearer", "client_id": "00000000-0000-0000-0000-000000000000"
                }))
            }
        },
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}/msi/token"), asked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_based_connection_gets_its_token_from_the_managed_identity() {
    let account = Account::start();
    let Some(endpoint) = account.connection.split(';').find_map(|part| part.strip_prefix("AccountEndpoint=")) else {
        panic!("no endpoint in {}", account.connection);
    };
    let (identity_endpoint, asked) = identity_endpoint().await;
    let database = database();
    let settings = [
        ("CosmosDBConnection__accountEndpoint", endpoint),
        ("CosmosDBConnection__credential", "managedidentity"),
        ("CosmosDatabase", database.as_str()),
        ("IDENTITY_ENDPOINT", identity_endpoint.as_str()),
        ("IDENTITY_HEADER", "the-platform-header"),
    ];
    let dir = TempDir::new().expect("temp dir");
    let run = |args: &[&str]| {
        Command::new(BIN).args(args).env_remove("CosmosDBConnection").envs(settings).current_dir(dir.path()).output()
    };
    let init = run(&["init"]).expect("orderflow init");
    assert!(init.status.success(), "init: {}", String::from_utf8_lossy(&init.stderr));
    let shown = String::from_utf8_lossy(&run(&["config", "show"]).expect("config show").stdout).into_owned();
    assert!(shown.contains("managed identity (system-assigned)"), "config show says which auth: {shown}");
    assert!(!shown.contains("AccountKey"), "{shown}");

    let server = Server::start_with(&dir.path().join("data"), &settings);
    assert_eq!(server.place("mi-1", &[("SKU-I", 1, 5)]).await.status, 201);
    server.order_status("mi-1", "Placed").await;
    let asked = asked.lock().expect("lock").clone();
    assert!(!asked.is_empty(), "the token came from the managed-identity endpoint");
    assert!(
        asked
            .iter()
            .all(|(resource, header)| resource == "https://cosmos.azure.com" && header == "the-platform-header"),
        "{asked:?}"
    );
}

const KEY: &str = "c2VjcmV0LWtleS1uZXZlci1wcmludGVk";

/// `orderflow init` against `endpoint`, which must fail: its stderr.
fn failed_init(endpoint: &str) -> String {
    let dir = TempDir::new().expect("temp dir");
    let connection = format!("AccountEndpoint={endpoint};AccountKey={KEY};");
    let output = Command::new(BIN).arg("init").env("CosmosDBConnection", connection).current_dir(dir.path()).output();
    let output = output.expect("orderflow init");
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).trim().to_string()
}

/// A wrong endpoint or key: one line that names the setting, never the key.
#[tokio::test]
async fn a_wrong_endpoint_or_key_is_one_clear_line() {
    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port");
    let unreachable = failed_init(&format!("http://{closed}/"));
    // An account that refuses every key.
    let refusing = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = refusing.local_addr().expect("address");
    let app = axum::Router::new().fallback(|| async {
        (axum::http::StatusCode::UNAUTHORIZED, axum::Json(json!({"code": "Unauthorized", "message": "bad signature"})))
    });
    tokio::spawn(async move { axum::serve(refusing, app).await });
    let refused = tokio::task::spawn_blocking(move || failed_init(&format!("http://{address}/"))).await.expect("init");

    assert!(refused.contains("refused the account key"), "{refused}");
    for message in [&unreachable, &refused] {
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(message.contains("CosmosDBConnection"), "{message}");
        assert!(!message.contains(KEY), "{message}");
    }
}

/// `orderflow cost` runs its workload on the account and prices it: each
/// order's 11 commands (5 of them with a key from outside), 13 downstream
/// messages, and a month for each profile of the template.
#[test]
fn cost_measures_an_order_and_prices_the_profiles() {
    let account = Account::start();
    let database = database();
    let settings = [("CosmosDBConnection", account.connection.as_str()), ("RUST_LOG", "warn")];
    let output = Command::new(BIN)
        .args(["cost", "--orders", "3", "--json", "--database", &database])
        .envs(settings)
        .output()
        .expect("orderflow cost");
    assert!(output.status.success(), "cost: {}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON document");
    let per_order = &report["measured"]["perOrder"];
    assert_eq!(per_order["append-batch"]["requests"], 11.0, "{per_order}");
    assert_eq!(per_order["claim-key"]["requests"], 5.0, "{per_order}");
    assert_eq!(report["measured"]["messagesOut"], 13.0, "{report}");
    assert!(report["measured"]["ruPerOrder"].as_f64().is_some_and(|ru| ru > 0.0), "{report}");
    let profiles: Vec<&str> =
        report["profiles"].as_array().into_iter().flatten().filter_map(|p| p["profile"].as_str()).collect();
    assert_eq!(profiles, ["small", "medium", "large"]);
    for profile in report["profiles"].as_array().into_iter().flatten() {
        assert!(profile["total"].as_f64().is_some_and(|total| total > 0.0), "{profile}");
    }
}
