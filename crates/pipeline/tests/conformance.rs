//! The in-memory store passes the store-conformance suite, like the real
//! adapters: the tests that use it test the pipeline, not a toy.

use std::sync::Arc;

use orderflow_pipeline::conformance::UnderTest;
use orderflow_pipeline::memory::MemoryStore;

async fn fresh() -> UnderTest {
    let store = Arc::new(MemoryStore::default());
    UnderTest { stores: store.stores(), keep_alive: Box::new(()) }
}

orderflow_pipeline::conformance_tests!(fresh());
