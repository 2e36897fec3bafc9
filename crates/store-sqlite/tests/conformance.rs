//! The embedded store passes the store-conformance suite.

use std::sync::Arc;

use orderflow_pipeline::conformance::Stores;
use orderflow_store_sqlite::SqliteStore;

/// A fresh store in a temporary directory that lives as long as the test.
async fn fresh() -> Stores {
    let dir = tempfile::TempDir::new().expect("temp dir");
    let store = Arc::new(SqliteStore::open(dir.path()).expect("open the store"));
    Stores {
        events: store.clone(),
        feed: store.clone(),
        checkpoints: store.clone(),
        snapshots: store,
        keep_alive: Some(Arc::new(dir)),
    }
}

orderflow_pipeline::conformance_tests!(fresh());
