//! `serve` on Cosmos DB: the SDK's in-memory emulator served over HTTP by
//! `orderflow dev cosmos-emulator`, reached by the unmodified SDK in `serve`
//! through `CosmosDBConnection` — the real wire protocol on one machine. With
//! `CosmosDBConnection` set in the environment, the same tests run against
//! that account instead.

mod support;

use std::process::{Child, Command, Stdio};

use serde_json::json;
use support::shared_store::SharedStore;
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

    /// This account, with a database of the test's own.
    fn store(&self) -> SharedStore {
        let database = format!("orderflow-test-{}", uuid::Uuid::new_v4().simple());
        SharedStore {
            settings: vec![("CosmosDBConnection".into(), self.connection.clone()), ("CosmosDatabase".into(), database)],
            lease_setting: "CosmosLeaseSeconds",
        }
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
    let server = account.store().serve(&dir.path().join("data"));
    support::lifecycle::place_to_delivered(&server).await;
    support::lifecycle::every_event_is_on_the_orders_topic(&server, "o-1").await;
}

#[tokio::test]
async fn idempotency_and_restarts_hold_on_cosmos_db() {
    let account = Account::start();
    let dir = TempDir::new().expect("temp dir");
    support::shared_store::idempotency_and_restarts_hold(&account.store(), dir.path()).await;
}

#[tokio::test]
async fn an_idempotency_key_means_one_request_whatever_else_happens_on_cosmos_db() {
    let account = Account::start();
    let dir = TempDir::new().expect("temp dir");
    let server = account.store().serve(&dir.path().join("data"));
    support::lifecycle::keys_mean_one_request_whatever_else_happens(&server).await;
}

#[tokio::test]
async fn reads_naming_their_writes_version_are_never_stale_or_missing_on_cosmos_db() {
    let account = Account::start();
    let dir = TempDir::new().expect("temp dir");
    let server = account.store().serve(&dir.path().join("data"));
    support::lifecycle::reads_follow_their_writes(&server).await;
}

#[tokio::test]
async fn two_servers_share_one_account_and_the_survivor_takes_over() {
    let account = Account::start();
    let dir = TempDir::new().expect("temp dir");
    support::shared_store::two_servers_share_the_store_and_the_survivor_takes_over(&account.store(), dir.path()).await;
}

#[tokio::test]
async fn two_servers_pass_each_deadline_once_between_them() {
    let account = Account::start();
    let dir = TempDir::new().expect("temp dir");
    support::shared_store::two_servers_pass_each_deadline_once_between_them(&account.store(), dir.path()).await;
}

#[tokio::test]
async fn two_archivers_racing_on_one_account_move_closed_orders_and_reads_stay_the_same() {
    let account = Account::start();
    let dir = TempDir::new().expect("temp dir");
    support::shared_store::two_archivers_racing_move_closed_orders_and_reads_stay_the_same(
        &account.store(),
        dir.path(),
    )
    .await;
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
    // 11 commands, at most one append each: reactions to one stream that
    // reach fulfillment in one batch share one (how many do is timing).
    let appends = per_order["append-batch"]["requests"].as_f64().unwrap_or_default();
    assert!((5.0..=11.0).contains(&appends), "{per_order}");
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
