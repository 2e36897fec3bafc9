//! The embedded store passes the store-conformance suite.

use std::sync::Arc;

use orderflow_pipeline::conformance::UnderTest;
use orderflow_pipeline::ports::Stores;
use orderflow_store_sqlite::SqliteStore;

/// A fresh store in a temporary directory that lives as long as the test.
async fn fresh() -> UnderTest {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let store = Arc::new(SqliteStore::open(dir.path()).expect("open the store"));
    UnderTest { stores: Stores::of(store), keep_alive: Box::new(dir) }
}

orderflow_pipeline::conformance_tests!(fresh());
