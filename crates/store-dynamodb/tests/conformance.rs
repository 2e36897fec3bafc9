//! The store-conformance suite's event-store checks on DynamoDB, against
//! `moto` in server mode (`ORDERFLOW_TEST_DYNAMODB`, which `scripts/test`
//! starts); each test on tables of its own.

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::{Credentials, SharedCredentialsProvider};
use orderflow_pipeline::conformance::UnderTest;
use orderflow_pipeline::conformance_tests;
use orderflow_pipeline::ports::Stores;
use orderflow_store_dynamodb::{init, DynamoStore};

fn config() -> SdkConfig {
    let endpoint = std::env::var("ORDERFLOW_TEST_DYNAMODB")
        .expect("ORDERFLOW_TEST_DYNAMODB is not set: run the tests with scripts/test, which starts moto");
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new("test", "test", None, None, "tests")))
        .build()
}

async fn dynamodb() -> UnderTest {
    let prefix = format!("t{}-", uuid::Uuid::new_v4().simple());
    let dynamo = Arc::new(DynamoStore::new(&config(), &prefix, Duration::from_secs(3600)));
    let created = init(dynamo.client(), &prefix).await.expect("init");
    assert_eq!(created.len(), 8, "{created:?}");
    assert!(init(dynamo.client(), &prefix).await.expect("init again").is_empty(), "init is idempotent");
    let stores = Stores::of(dynamo);
    UnderTest { stores, keep_alive: Box::new(()) }
}

conformance_tests!(dynamodb());

/// Parking has no check in the shared suite yet: the same rules as leases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_streams_are_written_only_over_the_version_last_read() {
    use orderflow_pipeline::ports::ParkedStream;
    let stores = dynamodb().await.stores;
    let parked = |consumer: &str, held_through: u64| ParkedStream {
        consumer: consumer.into(),
        stream_id: "Order-1".into(),
        from_index: 3,
        event_id: uuid::Uuid::new_v4(),
        event_type: "Placed".into(),
        reason: "unreadable".into(),
        parked_at: chrono::Utc::now(),
        held_through,
        retries: 0,
        retried_at: None,
    };
    let parking = &stores.parking;
    let v1 = parking.put_parked(&parked("fulfillment", 3), None).await.expect("park").expect("parked");
    assert_eq!(parking.put_parked(&parked("fulfillment", 4), None).await.expect("park again"), None, "it exists");
    let v2 = parking.put_parked(&parked("fulfillment", 5), Some(&v1)).await.expect("hold").expect("held");
    assert_eq!(parking.put_parked(&parked("fulfillment", 6), Some(&v1)).await.expect("hold"), None, "v1 is gone");
    parking.put_parked(&parked("project-snapshots", 3), None).await.expect("park").expect("parked");
    let ours = parking.parked(Some("fulfillment")).await.expect("list");
    assert_eq!(ours.iter().map(|p| (p.value.held_through, p.version.as_str())).collect::<Vec<_>>(), [(5, v2.as_str())]);
    assert_eq!(parking.parked(None).await.expect("list all").len(), 2);
    assert!(!parking.unpark("fulfillment", "Order-1", &v1).await.expect("unpark"), "not at that version");
    assert!(parking.unpark("fulfillment", "Order-1", &v2).await.expect("unpark"));
    assert!(parking.parked(Some("fulfillment")).await.expect("list").is_empty());
}
