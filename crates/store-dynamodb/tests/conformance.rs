//! The store-conformance suite's event-store checks on DynamoDB, against
//! `moto` in server mode (`ORDERFLOW_TEST_DYNAMODB`, which `scripts/test`
//! starts); each test on tables of its own: the checks of the ports the
//! adapter has so far (events, leases, refusals), the others from the
//! in-memory store until it has them.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::Client;
use orderflow_pipeline::conformance::UnderTest;
use orderflow_pipeline::conformance_tests;
use orderflow_pipeline::memory::MemoryStore;
use orderflow_pipeline::ports::Stores;
use orderflow_store_dynamodb::{init, DynamoStore};

fn client() -> Client {
    let endpoint = std::env::var("ORDERFLOW_TEST_DYNAMODB")
        .expect("ORDERFLOW_TEST_DYNAMODB is not set: run the tests with scripts/test, which starts moto");
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .build();
    Client::from_conf(config)
}

async fn dynamodb() -> UnderTest {
    let client = client();
    let prefix = format!("t{}-", uuid::Uuid::new_v4().simple());
    let created = init(&client, &prefix).await.expect("init");
    assert_eq!(created.len(), 4, "{created:?}");
    assert!(init(&client, &prefix).await.expect("init again").is_empty(), "init is idempotent");
    let mut stores = Stores::of(Arc::new(MemoryStore::default()));
    let dynamo = Arc::new(DynamoStore::new(client, &prefix, Duration::from_secs(3600)));
    (stores.events, stores.leases, stores.refusals) = (dynamo.clone(), dynamo.clone(), dynamo);
    UnderTest { stores, keep_alive: Box::new(()) }
}

conformance_tests!(event_store: dynamodb());
conformance_tests!(@each dynamodb(); leases_are_written_only_over_the_version_last_read, heartbeats_are_written_over_and_kept_for_a_while, a_refusal_is_recorded_once);
