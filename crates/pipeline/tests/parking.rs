//! Poison parked per stream, deterministically, on the in-memory store: an
//! event a consumer cannot handle for good parks its stream (the stream's
//! later events wait, in order), every other stream goes on, a failure that
//! may pass is retried instead, and a retry gets the held-back events
//! through — losing none to the consumer that holds the range meanwhile.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orderflow_pipeline::consumers::{retry, Consumer, FeedRunner, Parked, Retried, Step};
use orderflow_pipeline::memory::MemoryStore;
use orderflow_pipeline::ports::*;
use serde_json::{json, Value};

/// Handles events, failing for good on those that say `poison` (until
/// cured), for a while on those that say `flaky`, and panicking on `bug`.
#[derive(Default)]
struct Picky {
    seen: Mutex<Vec<(String, u64)>>,
    cured: AtomicBool,
    flaky_failures: AtomicU32,
}

impl Picky {
    fn seen(&self) -> Vec<(String, u64)> {
        self.seen.lock().expect("lock").clone()
    }

    fn of(&self, stream: &str) -> Vec<u64> {
        self.seen().into_iter().filter(|(s, _)| s == stream).map(|(_, i)| i).collect()
    }
}

#[async_trait]
impl Consumer for Picky {
    fn name(&self) -> &'static str {
        "picky"
    }

    async fn handle(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        for event in events {
            if event.data["poison"] == true && !self.cured.load(Ordering::SeqCst) {
                return Err(StoreError::Corrupt(format!("cannot read event {} of {}", event.index, event.stream_id)));
            }
            if event.data["flaky"] == true && self.flaky_failures.fetch_add(1, Ordering::SeqCst) < 2 {
                return Err(StoreError::Unavailable("the store is away for a moment".into()));
            }
            if event.data["bug"] == true && !self.cured.load(Ordering::SeqCst) {
                panic!("a bug in the consumer");
            }
        }
        self.seen.lock().expect("lock").extend(events.iter().map(|e| (e.stream_id.clone(), e.index)));
        Ok(())
    }

    fn start(&self) -> StartFrom {
        StartFrom::Beginning
    }
}

async fn append(store: &MemoryStore, stream_id: &str, data: Value) {
    let version = store.load(stream_id, None).await.expect("load").tip.map_or(0, |t| t.version);
    let event = EventRecord {
        event_id: uuid::Uuid::new_v4(),
        stream_id: stream_id.into(),
        index: version,
        event_type: "Happened".into(),
        schema_version: 1,
        data,
        time: chrono::Utc::now(),
        correlation_id: "c".into(),
        causation_id: "c".into(),
        message_id: "m".into(),
    };
    let append = Append {
        stream_id: stream_id.into(),
        expected_version: version,
        events: vec![event],
        state: json!({}),
        idempotency: Vec::new(),
    };
    assert!(matches!(store.append(append).await.expect("append"), AppendOutcome::Appended { .. }));
}

async fn catch_up(runner: &mut FeedRunner) {
    while runner.step().await.expect("step") == Step::Progressed {}
}

async fn parked(store: &MemoryStore) -> Vec<ParkedStream> {
    store.parked(Some("picky")).await.expect("parked").into_iter().map(|p| p.value).collect()
}

#[tokio::test]
async fn a_poison_event_parks_its_stream_and_every_other_stream_goes_on() {
    let store = Arc::new(MemoryStore::default());
    for (stream, data) in [
        ("Order-a", json!({})),
        ("Order-b", json!({})),
        ("Order-a", json!({"poison": true})),
        ("Order-b", json!({})),
        ("Order-a", json!({})),
    ] {
        append(&store, stream, data).await;
    }
    let picky = Arc::new(Picky::default());
    let mut runner = FeedRunner::new(&store.stores(), picky.clone());
    catch_up(&mut runner).await;
    assert_eq!(picky.of("Order-b"), [0, 1], "the other stream went on");
    assert_eq!(picky.of("Order-a"), [0], "the poison and what follows it wait");
    let park = &parked(&store).await[0];
    assert_eq!((park.stream_id.as_str(), park.from_index, park.held_through), ("Order-a", 1, 2));
    assert!(park.reason.contains("cannot read event 1"), "{}", park.reason);

    // More of the parked stream waits too; more of the others goes through.
    append(&store, "Order-a", json!({})).await;
    append(&store, "Order-b", json!({})).await;
    catch_up(&mut runner).await;
    assert_eq!((picky.of("Order-a"), picky.of("Order-b")), (vec![0], vec![0, 1, 2]));
    assert_eq!(parked(&store).await[0].held_through, 3);

    // A retry that fails again leaves it parked, with the new reason.
    let current = store.parked(Some("picky")).await.expect("parked").remove(0);
    let again = retry(picky.as_ref(), store.as_ref(), store.as_ref(), current).await.expect("retry");
    assert!(matches!(again, Retried::StillParked { events: 0, .. }), "{again:?}");
    assert_eq!(parked(&store).await[0].retries, 1);

    // Once cured, a retry gets every held-back event through, in order.
    picky.cured.store(true, Ordering::SeqCst);
    let current = store.parked(Some("picky")).await.expect("parked").remove(0);
    let through = retry(picky.as_ref(), store.as_ref(), store.as_ref(), current).await.expect("retry");
    assert_eq!(through, Retried::Unparked { events: 3 });
    assert!(parked(&store).await.is_empty());
    assert_eq!(picky.of("Order-a"), [0, 1, 2, 3]);
    // And the stream is the consumer's again.
    append(&store, "Order-a", json!({})).await;
    catch_up(&mut runner).await;
    assert_eq!(picky.of("Order-a"), [0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn a_failure_that_may_pass_is_retried_not_parked() {
    let store = Arc::new(MemoryStore::default());
    append(&store, "Order-a", json!({"flaky": true})).await;
    let picky = Arc::new(Picky::default());
    let mut runner = FeedRunner::new(&store.stores(), picky.clone());
    assert!(runner.step().await.is_err(), "the batch fails and will be handled again");
    assert!(runner.step().await.is_err());
    catch_up(&mut runner).await;
    assert_eq!(picky.of("Order-a"), [0]);
    assert!(parked(&store).await.is_empty());
}

#[tokio::test]
async fn a_consumer_that_panics_parks_the_stream_and_lives_on() {
    let store = Arc::new(MemoryStore::default());
    append(&store, "Order-a", json!({"bug": true})).await;
    append(&store, "Order-b", json!({})).await;
    let picky = Arc::new(Picky::default());
    let mut runner = FeedRunner::new(&store.stores(), picky.clone());
    catch_up(&mut runner).await;
    assert_eq!(picky.of("Order-b"), [0]);
    let park = &parked(&store).await[0];
    assert!(park.reason.contains("a bug in the consumer"), "{}", park.reason);
}

#[tokio::test]
async fn a_retry_loses_nothing_the_consumer_held_back_while_it_ran() {
    let store = Arc::new(MemoryStore::default());
    append(&store, "Order-a", json!({"poison": true})).await;
    let picky = Arc::new(Picky::default());
    let holding = Parked::new(picky.clone(), store.clone());
    holding.refresh().await.expect("refresh");
    let first = store.read_stream("Order-a", 0, 10).await.expect("read");
    holding.handle(&first).await.expect("parks");
    let seen_by_retry = store.parked(Some("picky")).await.expect("parked").remove(0);

    // The retry starts from what it read; meanwhile the holding consumer
    // holds back a new event (and records it over the retry's version).
    picky.cured.store(true, Ordering::SeqCst);
    append(&store, "Order-a", json!({})).await;
    let second = store.read_stream("Order-a", 1, 10).await.expect("read");
    holding.handle(&second).await.expect("held back");
    assert_eq!(picky.of("Order-a"), Vec::<u64>::new());
    let through = retry(picky.as_ref(), store.as_ref(), store.as_ref(), seen_by_retry).await.expect("retry");
    assert_eq!(through, Retried::Unparked { events: 2 });
    assert_eq!(picky.of("Order-a"), [0, 1], "both, in order");
}
