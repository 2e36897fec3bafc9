//! Cosmos DB passes the store-conformance suite, on the SDK's in-memory
//! emulator (one per test).

use std::sync::Arc;

use orderflow_pipeline::conformance::UnderTest;
use orderflow_pipeline::ports::Stores;
use orderflow_store_cosmos::{emulator, init, CosmosStore};

async fn fresh() -> UnderTest {
    let client = emulator::client().await.expect("an emulator");
    init(&client, "orderflow").await.expect("init");
    let store = Arc::new(CosmosStore::connect(&client, "orderflow").await.expect("connect"));
    UnderTest { stores: Stores::of(store), keep_alive: Box::new(client) }
}

orderflow_pipeline::conformance_tests!(fresh());
