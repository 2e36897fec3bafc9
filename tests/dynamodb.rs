//! `serve` on DynamoDB: moto in server mode (`ORDERFLOW_TEST_DYNAMODB`,
//! which `scripts/test` starts), reached by the unmodified AWS SDK in
//! `serve` through the standard chain (`AWS_ENDPOINT_URL`, `AWS_REGION`, the
//! credentials) and `DynamoDBTablePrefix` — tables of each test's own.

mod support;

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

#[test]
fn serve_without_its_tables_says_to_run_init() {
    let dir = TempDir::new().expect("temp dir");
    let store = store();
    let output = store.run(dir.path(), &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("DynamoDBTablePrefix; run `orderflow init` first"), "{said}");
}
