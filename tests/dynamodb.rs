//! `serve` on DynamoDB: moto in server mode (`ORDERFLOW_TEST_DYNAMODB`,
//! which `scripts/test` starts), reached by the unmodified AWS SDK in
//! `serve` through the standard chain (`AWS_ENDPOINT_URL`, `AWS_REGION`, the
//! credentials) and `DynamoDBTablePrefix` — tables of each test's own.

mod support;

use serde_json::json;
use support::shared_store::{self, moto as store};
use tempfile::TempDir;

#[tokio::test]
async fn an_order_goes_from_placed_to_delivered_on_dynamodb() {
    let dir = TempDir::new().expect("temp dir");
    let store = store();
    let server = store.serve(&dir.path().join("data"));
    support::lifecycle::place_to_delivered(&server).await;
    support::lifecycle::every_event_is_on_the_orders_topic(&server, "o-1").await;
    // `init` again creates nothing, and says where the tables are.
    let init = store.run(dir.path(), &["init"]);
    let said = String::from_utf8_lossy(&init.stdout);
    assert!(said.contains("ready at http://127.0.0.1") && said.contains("created 0 of them"), "{said}");
}

#[tokio::test]
async fn idempotency_and_restarts_hold_on_dynamodb() {
    let dir = TempDir::new().expect("temp dir");
    shared_store::idempotency_and_restarts_hold(&store(), dir.path()).await;
}

#[tokio::test]
async fn an_idempotency_key_means_one_request_whatever_else_happens_on_dynamodb() {
    let dir = TempDir::new().expect("temp dir");
    let server = store().serve(&dir.path().join("data"));
    support::lifecycle::keys_mean_one_request_whatever_else_happens(&server).await;
}

#[tokio::test]
async fn reads_naming_their_writes_version_are_never_stale_or_missing_on_dynamodb() {
    let dir = TempDir::new().expect("temp dir");
    let server = store().serve(&dir.path().join("data"));
    support::lifecycle::reads_follow_their_writes(&server).await;
}

#[tokio::test]
async fn two_servers_share_the_tables_and_the_survivor_takes_over() {
    let dir = TempDir::new().expect("temp dir");
    shared_store::two_servers_share_the_store_and_the_survivor_takes_over(&store(), dir.path()).await;
}

#[tokio::test]
async fn two_servers_pass_each_deadline_once_between_them_on_dynamodb() {
    let dir = TempDir::new().expect("temp dir");
    shared_store::two_servers_pass_each_deadline_once_between_them(&store(), dir.path()).await;
}

#[tokio::test]
async fn two_archivers_racing_move_closed_orders_and_reads_stay_the_same_on_dynamodb() {
    let dir = TempDir::new().expect("temp dir");
    shared_store::two_archivers_racing_move_closed_orders_and_reads_stay_the_same(&store(), dir.path()).await;
}

/// A DynamoDB Stream keeps 24 hours: history older than that is in the
/// table only. Here the stream is switched off and on, which gives the table
/// a new stream holding none of what came before — as a day later.
#[tokio::test]
async fn replay_rebuilds_read_models_and_topics_of_history_the_stream_no_longer_holds() {
    use aws_sdk_dynamodb::types::{StreamSpecification, StreamViewType};
    let dir = TempDir::new().expect("temp dir");
    let data = dir.path().join("data");
    let store = store();
    let server = store.serve(&data);
    server.restock("SKU-H", 5).await;
    server.place("o-h", &[("SKU-H", 2, 100)]).await;
    server.post_empty("/api/orders/o-h/confirm").await;
    server.eventually("/api/customers/c-1/orders", |list| list["orders"][0]["status"] == "Reserved").await;
    let of_order =
        |records: Vec<serde_json::Value>| records.into_iter().filter(|r| r["subject"] == "Order-o-h").count();
    support::until(|| of_order(support::topic(&data, "orderflow.orders")), |n| *n == 4).await;
    server.stop();

    let dynamodb = aws_sdk_dynamodb::Client::new(&store.aws_config());
    let table = |name: &str| format!("{}{name}", store.setting("DynamoDBTablePrefix"));
    for enabled in [false, true] {
        let spec = StreamSpecification::builder().stream_enabled(enabled);
        let spec = if enabled { spec.stream_view_type(StreamViewType::NewImage) } else { spec };
        let spec = spec.build().expect("a stream specification");
        dynamodb.update_table().table_name(table("events")).stream_specification(spec).send().await.expect("stream");
    }
    // The read models are lost.
    let snapshots = || async {
        let scan = dynamodb.scan().table_name(table("snapshots")).send().await.expect("scan");
        scan.items().iter().filter_map(|item| item.get("p")?.as_s().ok().cloned()).collect::<Vec<_>>()
    };
    for stream_id in snapshots().await {
        let key = aws_sdk_dynamodb::types::AttributeValue::S(stream_id);
        dynamodb.delete_item().table_name(table("snapshots")).key("p", key).send().await.expect("delete");
    }
    assert!(snapshots().await.is_empty());

    let dir_arg = data.to_string_lossy().to_string();
    let replay = |args: &[&str]| {
        let output = store.run(dir.path(), &[&["replay"], args, &["--quiet", "--data-dir", &dir_arg]].concat());
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let rebuilt = replay(&["snapshots"]);
    assert!(rebuilt.starts_with("replayed 6 events"), "Restocked, 4 order events, StockReserved: {rebuilt}");
    let mut rebuilt = snapshots().await;
    rebuilt.sort();
    assert_eq!(rebuilt, ["Order-o-h", "Sku-SKU-H"]);
    let republished = replay(&["topics", "--from", "2000-01-01T00:00:00Z"]);
    assert!(republished.starts_with("republished 6 events"), "{republished}");
    assert_eq!(of_order(support::topic(&data, "orderflow.orders")), 8, "each order event once more");

    let server = support::Server::start_with(&data, &store.env());
    let list = server.eventually("/api/customers/c-1/orders", |list| list["orders"][0].is_object()).await;
    assert_eq!((&list["orders"][0]["orderId"], &list["orders"][0]["status"]), (&json!("o-h"), &json!("Reserved")));
    let sku = server.get("/api/inventory/SKU-H").await.body;
    assert_eq!((&sku["onHand"], &sku["reserved"]), (&json!(5), &json!(2)));
}

#[test]
fn serve_without_its_tables_says_to_run_init() {
    let dir = TempDir::new().expect("temp dir");
    let store = store();
    let output = store.run(dir.path(), &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("DynamoDBTablePrefix; run `orderflow init` first"), "{said}");
}
