//! Restarts and crashes: nothing acknowledged is lost, no event is duplicated,
//! and every consumer resumes from its checkpoint.

mod support;

use std::collections::HashSet;
use std::process::Command;

use serde_json::{json, Value};
use support::{cli, topic, until, Server};
use tempfile::TempDir;

#[tokio::test]
async fn a_clean_stop_finishes_its_work_and_a_restart_resumes_it() {
    let dir = TempDir::new().expect("temp dir");
    let data = dir.path().join("data");
    let server = Server::start(&data);
    server.restock("SKU-A", 100).await;
    for i in 0..10 {
        assert_eq!(server.place(&format!("o-{i}"), &[("SKU-A", 1, 10)]).await.status, 201);
        assert_eq!(server.post_empty(&format!("/api/orders/o-{i}/confirm")).await.status, 200);
    }
    let status = server.stop();
    assert!(status.success(), "serve exits 0 on SIGTERM: {status:?}");

    let server = Server::start(&data);
    for i in 0..10 {
        server.order_status(&format!("o-{i}"), "Reserved").await;
    }
    server.eventually("/api/inventory/SKU-A", |s| s["reserved"] == 10).await;
}

#[tokio::test]
async fn a_crash_loses_no_acknowledged_command_and_duplicates_no_event() {
    let dir = TempDir::new().expect("temp dir");
    let data = dir.path().join("data");
    let server = Server::start(&data);
    server.restock("SKU-A", 1000).await;
    // Acknowledged commands, then SIGKILL while consumers are still at work.
    let mut acknowledged = Vec::new();
    for i in 0..40 {
        let order_id = format!("c-{i}");
        if server.place(&order_id, &[("SKU-A", 2, 10)]).await.status == 201
            && server.post_empty(&format!("/api/orders/{order_id}/confirm")).await.status == 200
        {
            acknowledged.push(order_id);
        }
    }
    assert_eq!(acknowledged.len(), 40);
    server.crash();

    let server = Server::start(&data);
    let mut events_in_store = 0;
    for order_id in &acknowledged {
        let order = server.order_status(order_id, "Reserved").await;
        let history = server.history(order_id).await;
        assert_eq!(order["version"].as_u64(), Some(history.len() as u64), "the snapshot is the fold of the stream");
        let indexes: Vec<u64> = history.iter().filter_map(|e| e["index"].as_u64()).collect();
        assert_eq!(indexes, (0..history.len() as u64).collect::<Vec<_>>());
        events_in_store += history.len();
    }
    let sku = server.eventually("/api/inventory/SKU-A", |s| s["reserved"] == 80).await;
    // One reservation per order, however often fulfillment saw the confirmation.
    assert_eq!(sku["version"], 41);

    // Every event is on the downstream topic at least once, in per-stream order.
    let records =
        until(|| topic(&data, "orderflow.orders"), |records: &Vec<Value>| unique_ids(records) == events_in_store).await;
    let mut last_index: std::collections::HashMap<String, i64> = Default::default();
    for record in &records {
        let subject = record["subject"].as_str().unwrap_or_default().to_string();
        let index: i64 = record["streamindex"].as_str().and_then(|i| i.parse().ok()).unwrap_or(-1);
        let last = last_index.entry(subject).or_insert(-1);
        assert!(index <= *last + 1, "per-stream order holds, with repeats only of what came before");
        *last = (*last).max(index);
    }
}

fn unique_ids(records: &[Value]) -> usize {
    records.iter().filter_map(|r| r["id"].as_str()).collect::<HashSet<_>>().len()
}

#[tokio::test]
async fn topics_read_prints_cloudevents_as_json_lines() {
    let dir = TempDir::new().expect("temp dir");
    let data = dir.path().join("data");
    let server = Server::start(&data);
    server.restock("SKU-A", 5).await;
    until(|| topic(&data, "orderflow.inventory"), |records: &Vec<Value>| records.len() == 1).await;
    let data_arg = data.to_string_lossy().to_string();
    let line = cli(&["topics", "read", "orderflow.inventory", "--data-dir", &data_arg, "--count", "1"], dir.path());
    let event: Value = serde_json::from_str(line.trim()).expect("one JSON line");
    assert_eq!(event["type"], "orderflow.inventory.restocked");
    assert_eq!(event["subject"], "Sku-SKU-A");
    assert_eq!(event["data"], json!({"quantity": 5}));
    assert_eq!(event["streamindex"], "0");
    assert!(cli(&["topics", "read", "no.such.topic", "--data-dir", &data_arg], dir.path()).is_empty());
}

#[tokio::test]
async fn a_stream_a_step_cannot_handle_is_parked_and_nothing_else_waits() {
    let dir = TempDir::new().expect("temp dir");
    let data = dir.path().join("data");
    let server = support::Server::start(&data);
    // An event this version cannot read (written by a newer one, say),
    // straight into the store.
    support::write_unreadable_event(&data, "Order-future");

    // Every other stream goes on.
    server.restock("SKU-P", 5).await;
    server.place("o-p", &[("SKU-P", 1, 100)]).await;
    server.post_empty("/api/orders/o-p/confirm").await;
    server.order_status("o-p", "Reserved").await;
    let list = || cli(&["parked", "list", "--json", "--data-dir", &data.to_string_lossy()], dir.path());
    let parked = until(list, |out| out.lines().count() == 2).await;
    let consumers: Vec<Value> = parked.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    let mut names: Vec<&str> = consumers.iter().filter_map(|p| p["consumer"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["fulfillment", "project-snapshots"], "publishing needs not read it");
    assert!(consumers.iter().all(|p| p["streamId"] == "Order-future" && p["fromIndex"] == 0));

    // The API stays ready; the pipeline says what waits.
    assert_eq!(server.get("/health/ready").await.status, 200);
    let pipeline = server.get("/health/pipeline").await;
    assert_eq!(pipeline.status, 503, "{pipeline:?}");
    assert!(pipeline.body.to_string().contains("parked"), "{pipeline:?}");

    // A retry that cannot get through says so, and leaves it parked.
    let retry = Command::new(support::BIN)
        .args(["parked", "retry", "Order-future", "--data-dir", &data.to_string_lossy()])
        .current_dir(dir.path())
        .output()
        .expect("orderflow parked retry");
    assert!(!retry.status.success());
    assert!(String::from_utf8_lossy(&retry.stdout).contains("still parked"), "{retry:?}");
    let again: Vec<Value> = list().lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert!(again.iter().all(|p| p["retries"] == 1), "{again:?}");
}

#[test]
fn the_cli_explains_itself_and_fails_clearly() {
    let dir = TempDir::new().expect("temp dir");
    let help = cli(&["--help"], dir.path());
    assert!(help.contains("serve") && help.contains("topics"), "{help}");
    let serve_help = cli(&["serve", "--help"], dir.path());
    assert!(serve_help.contains("--data-dir") && serve_help.contains("--listen"), "{serve_help}");

    let run = |args: &[&str]| {
        std::process::Command::new(support::BIN).args(args).current_dir(dir.path()).output().expect("run orderflow")
    };
    let bad_flag = run(&["serve", "--bogus"]);
    assert!(!bad_flag.status.success());
    assert!(String::from_utf8_lossy(&bad_flag.stderr).contains("--bogus"));

    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "not a directory").expect("write");
    let unwritable = run(&["serve", "--listen", "127.0.0.1:0", "--data-dir", &blocker.join("sub").to_string_lossy()]);
    let message = String::from_utf8_lossy(&unwritable.stderr);
    assert!(!unwritable.status.success());
    assert!(message.lines().last().is_some_and(|l| l.starts_with("error: cannot use data dir")), "{message}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let data = dir.path().join("data").to_string_lossy().to_string();
    let in_use = run(&["serve", "--listen", &address, "--data-dir", &data]);
    let message = String::from_utf8_lossy(&in_use.stderr);
    assert!(!in_use.status.success());
    assert!(message.contains(&format!("cannot listen on {address}")), "{message}");
}

#[test]
fn one_data_dir_serves_one_process() {
    let dir = TempDir::new().expect("temp dir");
    let data = dir.path().join("data");
    let _first = Server::start(&data);
    let second = std::process::Command::new(support::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", &data.to_string_lossy()])
        .output()
        .expect("run orderflow");
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("another orderflow serve is using data dir"));
}

#[test]
fn settings_come_from_local_settings_json() {
    let dir = TempDir::new().expect("temp dir");
    std::fs::write(
        dir.path().join("local.settings.json"),
        json!({"IsEncrypted": false, "Values": {"OrderflowListen": "not-an-address"}}).to_string(),
    )
    .expect("write settings");
    let output =
        std::process::Command::new(support::BIN).arg("serve").current_dir(dir.path()).output().expect("run orderflow");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("\"not-an-address\""));
}

#[test]
fn config_show_tells_each_value_and_its_source_without_secrets() {
    let dir = TempDir::new().expect("temp dir");
    let values =
        json!({"OrderflowListen": "127.0.0.1:9000", "KafkaBrokerList": "broker:9092", "KafkaPassword": "file-secret"});
    std::fs::write(dir.path().join("local.settings.json"), json!({"Values": values}).to_string()).expect("write");
    let output = std::process::Command::new(support::BIN)
        .args(["config", "show", "--data-dir", "elsewhere"])
        .env("CosmosDBConnection", "AccountEndpoint=https://acct.documents.azure.com/;AccountKey=ZW52LXNlY3JldA==;")
        .env("OrderflowApiKeys", "api-secret")
        .current_dir(dir.path())
        .output()
        .expect("run orderflow");
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let row = |setting: &str| shown.lines().find(|l| l.starts_with(setting)).unwrap_or_default().to_string();
    assert!(row("OrderflowDataDir").contains("elsewhere") && row("OrderflowDataDir").ends_with("flag"), "{shown}");
    assert!(
        row("OrderflowListen").contains("127.0.0.1:9000") && row("OrderflowListen").ends_with("local.settings.json")
    );
    assert!(
        row("CosmosDBConnection").contains("acct.documents.azure.com")
            && row("CosmosDBConnection").ends_with("environment")
    );
    assert!(row("CosmosDatabase").ends_with("default"));
    for secret in ["ZW52LXNlY3JldA==", "file-secret", "api-secret"] {
        assert!(!shown.contains(secret), "{secret} shown: {shown}");
    }
}

#[tokio::test]
async fn replay_rebuilds_deleted_snapshots_while_serve_runs() {
    let dir = TempDir::new().expect("temp dir");
    let data = dir.path().join("data");
    let server = support::Server::start(&data);
    server.restock("SKU-R", 5).await;
    server.place("o-r", &[("SKU-R", 2, 100)]).await;
    server.post_empty("/api/orders/o-r/confirm").await;
    let before = server.order_status("o-r", "Reserved").await;
    server.eventually("/api/inventory/SKU-R", |s| s["reserved"] == 2).await;

    // An operator deletes the read models (here: straight in the database).
    let db = rusqlite::Connection::open(data.join("orderflow.db")).expect("open the store");
    db.busy_timeout(std::time::Duration::from_secs(5)).expect("busy timeout");
    assert_eq!(db.execute("DELETE FROM snapshots", []).expect("delete"), 2);
    // Reads still answer, from the event store, while the read models are gone.
    assert_eq!(server.get("/api/orders/o-r").await.body, before, "read from its stream");
    let stored = || -> i64 { db.query_row("SELECT count(*) FROM snapshots", [], |r| r.get(0)).expect("count") };
    assert_eq!(stored(), 0, "reads do not write read models");

    let out = cli(&["replay", "snapshots", "--quiet", "--data-dir", &data.to_string_lossy()], dir.path());
    assert!(out.contains("replayed"), "{out}");
    assert_eq!(stored(), 2, "both read models rebuilt");
    assert_eq!(server.get("/api/orders/o-r").await.body, before, "rebuilt as it was");
    let sku = server.get("/api/inventory/SKU-R").await.body;
    assert_eq!((&sku["onHand"], &sku["reserved"]), (&json!(5), &json!(2)));
    // A second replay starts from the beginning again and changes nothing.
    cli(&["replay", "snapshots", "--quiet", "--data-dir", &data.to_string_lossy()], dir.path());
    assert_eq!(server.get("/api/orders/o-r").await.body, before);

    // Republishing: the events since a time go to their topics once more.
    let of_order = |records: Vec<Value>| records.into_iter().filter(|r| r["subject"] == "Order-o-r").count();
    until(|| of_order(topic(&data, "orderflow.orders")), |n| *n == 4).await;
    let data_dir = data.to_string_lossy().to_string();
    let later = "2999-01-01T00:00:00Z";
    let none = cli(&["replay", "topics", "--from", later, "--quiet", "--data-dir", &data_dir], dir.path());
    assert!(none.contains("republished 0 events"), "{none}");
    let all =
        cli(&["replay", "topics", "--from", "2000-01-01T00:00:00Z", "--quiet", "--data-dir", &data_dir], dir.path());
    assert!(all.starts_with("republished 6 events"), "Restocked, 4 order events, StockReserved: {all}");
    assert_eq!(of_order(topic(&data, "orderflow.orders")), 8, "each order event once more");
}

#[test]
fn the_load_generator_drives_serve_closed_and_open_loop() {
    let dir = TempDir::new().expect("temp dir");
    let server = Server::start(&dir.path().join("data"));
    let target = server.base.clone();
    let run = |extra: &[&str]| -> Value {
        let mut args = vec!["load", "--target", &target, "--duration", "2s", "--concurrency", "4", "--json"];
        args.extend_from_slice(extra);
        serde_json::from_str(cli(&args, dir.path()).trim()).expect("one JSON summary")
    };
    for summary in [run(&["--workload", "lifecycle", "--skus", "5"]), run(&["--rate", "50"])] {
        assert_eq!(summary["errors"], json!({}), "{summary}");
        assert!(summary["requests"].as_u64() > Some(0), "{summary}");
        assert!(summary["latencyMs"]["p99"].as_f64().is_some(), "{summary}");
    }
    let open_loop = run(&["--rate", "50"]);
    assert_eq!(open_loop["targetRate"], 50);
    assert!(open_loop["operations"]["place"].as_u64() > Some(0), "{open_loop}");
}
