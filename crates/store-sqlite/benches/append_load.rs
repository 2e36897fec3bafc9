//! The embedded store's append (durable: fsynced before it returns) and
//! load (one tip), one at a time and many at once (group commit).
//!
//! `cargo bench -p orderflow-store-sqlite`

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion};
use orderflow_pipeline::ports::{Append, EventRecord, EventStore};
use orderflow_store_sqlite::SqliteStore;
use serde_json::json;
use uuid::Uuid;

fn append_to(stream: &str, version: u64) -> Append {
    let event = EventRecord {
        event_id: Uuid::new_v4(),
        stream_id: stream.to_string(),
        index: version,
        event_type: "Restocked".into(),
        schema_version: 1,
        data: json!({"quantity": 1}),
        time: Utc::now(),
        correlation_id: "bench".into(),
        causation_id: "bench".into(),
        message_id: Uuid::new_v4().to_string(),
    };
    Append {
        stream_id: stream.to_string(),
        expected_version: version,
        events: vec![event],
        state: json!({"onHand": version + 1}),
        idempotency: Vec::new(),
    }
}

fn store(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let dir = tempfile::TempDir::new().expect("a temp dir");
    let store = SqliteStore::open(dir.path()).expect("the store");

    let version = AtomicU64::new(0);
    c.bench_function("sqlite/append 1 event, alone", |b| {
        b.iter(|| {
            let v = version.fetch_add(1, Ordering::Relaxed);
            runtime.block_on(store.append(append_to("Sku-ONE", v))).expect("append")
        })
    });

    let round = AtomicU64::new(0);
    c.bench_function("sqlite/append 1 event to each of 64 streams at once", |b| {
        b.iter(|| {
            let v = round.fetch_add(1, Ordering::Relaxed);
            let appends = (0..64).map(|i| store.append(append_to(&format!("Sku-MANY{i}"), v)));
            runtime.block_on(futures::future::join_all(appends))
        })
    });

    c.bench_function("sqlite/load a tip", |b| b.iter(|| runtime.block_on(store.load("Sku-ONE", None)).expect("load")));
}

criterion_group!(benches, store);
criterion_main!(benches);
