//! The store-conformance suite: what every adapter of the ports must do, as
//! checks that each adapter's tests run against a fresh store (see
//! [`conformance_tests!`](crate::conformance_tests)). Each check uses its own
//! stream ids, so checks may share a store.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use crate::ports::*;

/// A store under test, and whatever must live as long as it (a temporary
/// directory, an emulator).
pub struct UnderTest {
    pub stores: Stores,
    pub keep_alive: Box<dyn std::any::Any + Send + Sync>,
}

fn stream() -> String {
    format!("Order-{}", Uuid::new_v4())
}

fn event(stream_id: &str, index: u64) -> EventRecord {
    EventRecord {
        event_id: Uuid::new_v4(),
        stream_id: stream_id.to_string(),
        index,
        event_type: "LineRemoved".into(),
        data: json!({"sku": format!("S{index}")}),
        time: Utc::now(),
        correlation_id: "corr".into(),
        causation_id: "cause".into(),
        message_id: format!("m-{index}"),
    }
}

fn append(stream_id: &str, expected_version: u64, count: u64, key: Option<&str>) -> Append {
    Append {
        stream_id: stream_id.to_string(),
        expected_version,
        events: (expected_version..expected_version + count).map(|i| event(stream_id, i)).collect(),
        state: json!({"version": expected_version + count}),
        idempotency: key.map(|key| IdempotencyRecord {
            key: key.to_string(),
            fingerprint: format!("fp-{key}"),
            receipt: json!({"version": expected_version + count}),
        }),
    }
}

async fn appended(stores: &Stores, append: Append) -> u64 {
    match stores.events.append(append).await.expect("append") {
        AppendOutcome::Appended { version } => version,
        other => panic!("expected Appended, got {other:?}"),
    }
}

pub async fn append_then_load(stores: &Stores) {
    let id = stream();
    let empty = stores.events.load(&id, None).await.expect("load");
    assert!(empty.tip.is_none() && empty.prior.is_none(), "a new stream has no tip");
    assert_eq!(appended(stores, append(&id, 0, 2, None)).await, 2);
    assert_eq!(appended(stores, append(&id, 2, 1, None)).await, 3);
    let tip = stores.events.load(&id, None).await.expect("load").tip.expect("a tip");
    assert_eq!((tip.version, tip.state), (3, json!({"version": 3})));
    let events = stores.events.read_stream(&id, 0, 100).await.expect("read");
    assert_eq!(events.iter().map(|e| e.index).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(events[1].data, json!({"sku": "S1"}));
    assert_eq!(stores.events.read_stream(&id, 1, 1).await.expect("read")[0].index, 1);
    assert!(stores.events.read_stream(&id, 3, 10).await.expect("read").is_empty());
    // Any index a caller can name is an answer, not an error.
    assert!(stores.events.read_stream(&id, u64::MAX, 10).await.expect("read past any index").is_empty());
}

pub async fn a_stale_version_changes_nothing(stores: &Stores) {
    let id = stream();
    appended(stores, append(&id, 0, 2, None)).await;
    match stores.events.append(append(&id, 1, 1, None)).await.expect("append") {
        AppendOutcome::WrongVersion { actual } => assert_eq!(actual, 2),
        other => panic!("expected WrongVersion, got {other:?}"),
    }
    assert_eq!(stores.events.read_stream(&id, 0, 100).await.expect("read").len(), 2);
    assert_eq!(stores.events.load(&id, None).await.expect("load").tip.map(|t| t.version), Some(2));
}

pub async fn concurrent_appends_have_one_winner(stores: &Stores) {
    let id = stream();
    let attempts = (0..8).map(|_| stores.events.append(append(&id, 0, 1, None)));
    let outcomes = futures::future::join_all(attempts).await;
    let won = outcomes.iter().filter(|o| matches!(o, Ok(AppendOutcome::Appended { .. }))).count();
    assert_eq!(won, 1, "{outcomes:?}");
    assert_eq!(stores.events.read_stream(&id, 0, 100).await.expect("read").len(), 1);
}

pub async fn an_idempotency_key_is_remembered(stores: &Stores) {
    let id = stream();
    appended(stores, append(&id, 0, 1, Some("k1"))).await;
    let loaded = stores.events.load(&id, Some("k1")).await.expect("load");
    let prior = loaded.prior.expect("the key is known");
    assert_eq!((prior.fingerprint.as_str(), &prior.receipt), ("fp-k1", &json!({"version": 1})));
    assert!(stores.events.load(&id, Some("k2")).await.expect("load").prior.is_none());
    // The same key again, even at the right version, appends nothing.
    match stores.events.append(append(&id, 1, 1, Some("k1"))).await.expect("append") {
        AppendOutcome::Duplicate(record) => assert_eq!(record.key, "k1"),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    assert_eq!(stores.events.read_stream(&id, 0, 100).await.expect("read").len(), 1);
}

/// Reads the whole feed from `from` (following continuations until a page
/// comes back empty on every range); returns the events and where it ended.
async fn drain(
    stores: &Stores,
    from: &HashMap<String, Option<String>>,
) -> (Vec<EventRecord>, HashMap<String, Option<String>>) {
    let mut positions = from.clone();
    let mut events = Vec::new();
    for range in stores.feed.ranges().await.expect("ranges") {
        let mut at = positions.get(&range).cloned().flatten();
        loop {
            let page = stores.feed.read(&range, at.as_deref(), 50).await.expect("read feed");
            assert!(page.events.is_empty() || page.moved, "a page with events moves the continuation");
            let done = page.events.is_empty() && !page.moved;
            events.extend(page.events);
            at = page.continuation.or(at);
            if done {
                break;
            }
        }
        positions.insert(range, at);
    }
    (events, positions)
}

pub async fn the_change_feed_has_every_event_in_stream_order(stores: &Stores) {
    let (a, b) = (stream(), stream());
    let (_, start) = drain(stores, &HashMap::new()).await;
    appended(stores, append(&a, 0, 2, None)).await;
    appended(stores, append(&b, 0, 1, None)).await;
    appended(stores, append(&a, 2, 1, None)).await;
    let (events, after) = drain(stores, &start).await;
    let of = |id: &str| events.iter().filter(|e| e.stream_id == id).map(|e| e.index).collect::<Vec<_>>();
    assert_eq!(of(&a), [0, 1, 2]);
    assert_eq!(of(&b), [0]);
    // Resuming from where the read ended gives only what came after.
    appended(stores, append(&b, 1, 1, None)).await;
    let (more, _) = drain(stores, &after).await;
    assert_eq!(more.iter().map(|e| (e.stream_id.clone(), e.index)).collect::<Vec<_>>(), [(b.clone(), 1)]);
}

pub async fn waiting_for_changes_returns_when_there_are_some(stores: &Stores) {
    let (_, at) = drain(stores, &HashMap::new()).await;
    let positions: Vec<FeedPosition> =
        at.into_iter().map(|(range, continuation)| FeedPosition { range, continuation }).collect();
    let id = stream();
    let writer = {
        let stores = stores.clone();
        let id = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            appended(&stores, append(&id, 0, 1, None)).await;
        })
    };
    // Bounded, not timed: it must return, and the event must then be readable.
    stores.feed.wait_for_changes(&positions, Duration::from_secs(30)).await;
    writer.await.expect("writer");
    let from = positions.into_iter().map(|p| (p.range, p.continuation)).collect();
    let (events, _) = drain(stores, &from).await;
    assert!(events.iter().any(|e| e.stream_id == id));
}

pub async fn checkpoints_are_kept_per_consumer_and_range(stores: &Stores) {
    let consumer = format!("consumer-{}", Uuid::new_v4());
    assert_eq!(stores.checkpoints.load(&consumer, "r1").await.expect("load"), None);
    stores.checkpoints.save(&consumer, "r1", "me", "10").await.expect("save");
    stores.checkpoints.save(&consumer, "r2", "me", "20").await.expect("save");
    stores.checkpoints.save(&consumer, "r1", "me", "11").await.expect("save");
    assert_eq!(stores.checkpoints.load(&consumer, "r1").await.expect("load").as_deref(), Some("11"));
    assert_eq!(stores.checkpoints.load(&consumer, "r2").await.expect("load").as_deref(), Some("20"));
    assert_eq!(stores.checkpoints.load("someone-else", "r1").await.expect("load"), None);
    stores.checkpoints.forget(&consumer, "r1").await.expect("forget");
    stores.checkpoints.forget(&consumer, "never-saved").await.expect("forget what is not there");
    assert_eq!(stores.checkpoints.load(&consumer, "r1").await.expect("load"), None);
    assert_eq!(stores.checkpoints.load(&consumer, "r2").await.expect("load").as_deref(), Some("20"));
}

pub async fn snapshots_never_go_back(stores: &Stores) {
    let id = stream();
    let customer = format!("customer-{}", Uuid::new_v4());
    let snapshot = |version: u64| Snapshot {
        stream_id: id.clone(),
        version,
        updated_at: Utc::now(),
        customer_id: Some(customer.clone()),
        state: json!({"v": version}),
    };
    stores.snapshots.put(vec![snapshot(3)]).await.expect("put");
    stores.snapshots.put(vec![snapshot(2)]).await.expect("put an older one");
    stores.snapshots.put(vec![snapshot(3)]).await.expect("put the same again");
    assert_eq!(stores.snapshots.get(&id).await.expect("get").map(|s| s.state), Some(json!({"v": 3})));
    stores.snapshots.put(vec![snapshot(5)]).await.expect("put a newer one");
    assert_eq!(stores.snapshots.get(&id).await.expect("get").map(|s| s.version), Some(5));
    let listed = stores.snapshots.by_customer(&customer, 10).await.expect("list");
    assert_eq!(listed.iter().map(|s| s.version).collect::<Vec<_>>(), [5]);
    let recent = stores.snapshots.recent_orders(1_000).await.expect("recent orders");
    assert!(recent.iter().any(|s| s.stream_id == id && s.version == 5));
    assert!(recent.windows(2).all(|pair| pair[0].updated_at >= pair[1].updated_at), "newest first");
    let many = stores.snapshots.get_many(&[id.clone(), stream()]).await.expect("get many");
    assert_eq!(many.len(), 1);
}

/// Generates one `#[tokio::test]` per conformance check; `$stores` is an
/// async expression giving a fresh [`UnderTest`].
#[macro_export]
macro_rules! conformance_tests {
    ($stores:expr) => {
        $crate::conformance_tests!(@each $stores;
            append_then_load,
            a_stale_version_changes_nothing,
            concurrent_appends_have_one_winner,
            an_idempotency_key_is_remembered,
            the_change_feed_has_every_event_in_stream_order,
            waiting_for_changes_returns_when_there_are_some,
            checkpoints_are_kept_per_consumer_and_range,
            snapshots_never_go_back
        );
    };
    (@each $stores:expr; $($check:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let under_test: $crate::conformance::UnderTest = $stores.await;
                $crate::conformance::$check(&under_test.stores).await;
            }
        )+
    };
}
