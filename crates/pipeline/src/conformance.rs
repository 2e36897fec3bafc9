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
        schema_version: (index % 3) as u32 + 1,
        data: json!({"sku": format!("S{index}")}),
        time: Utc::now(),
        correlation_id: "corr".into(),
        causation_id: "cause".into(),
        message_id: format!("m-{index}"),
    }
}

fn append(stream_id: &str, expected_version: u64, count: u64, key: Option<&str>) -> Append {
    append_keyed(stream_id, expected_version, count, key.as_slice())
}

/// `count` events answering a command for each of `keys`.
fn append_keyed(stream_id: &str, expected_version: u64, count: u64, keys: &[&str]) -> Append {
    Append {
        stream_id: stream_id.to_string(),
        expected_version,
        events: (expected_version..expected_version + count).map(|i| event(stream_id, i)).collect(),
        state: json!({"version": expected_version + count}),
        idempotency: keys
            .iter()
            .map(|key| IdempotencyRecord {
                key: key.to_string(),
                fingerprint: format!("fp-{key}"),
                receipt: json!({"version": expected_version + count, "key": key}),
            })
            .collect(),
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
    let shapes: Vec<u32> = events.iter().map(|e| e.schema_version).collect();
    assert_eq!(shapes, [1, 2, 3], "each event keeps the version of its shape");
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
    assert_eq!((prior.fingerprint.as_str(), &prior.receipt), ("fp-k1", &json!({"version": 1, "key": "k1"})));
    assert!(stores.events.load(&id, Some("k2")).await.expect("load").prior.is_none());
    // The same key again, even at the right version, appends nothing.
    match stores.events.append(append(&id, 1, 1, Some("k1"))).await.expect("append") {
        AppendOutcome::Duplicate(record) => assert_eq!(record.key, "k1"),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    assert_eq!(stores.events.read_stream(&id, 0, 100).await.expect("read").len(), 1);
}

/// Commands decided in a row on one stream go in one append with a record
/// each: all are remembered, and an append naming any of them again (in
/// another company) changes nothing.
pub async fn an_append_remembers_each_of_its_keys(stores: &Stores) {
    let id = stream();
    appended(stores, append_keyed(&id, 0, 2, &["r1", "r2", "r3"])).await;
    for key in ["r1", "r2", "r3"] {
        let prior = stores.events.load(&id, Some(key)).await.expect("load").prior;
        assert_eq!(prior.map(|p| p.receipt), Some(json!({"version": 2, "key": key})), "{key}");
    }
    match stores.events.append(append_keyed(&id, 2, 1, &["r4", "r2"])).await.expect("append") {
        AppendOutcome::Duplicate(record) => assert_eq!(record.key, "r2"),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    assert!(stores.events.load(&id, Some("r4")).await.expect("load").prior.is_none(), "r4 was not recorded");
    assert_eq!(stores.events.read_stream(&id, 0, 100).await.expect("read").len(), 2);
    assert_eq!(appended(stores, append_keyed(&id, 2, 1, &["r4", "r5"])).await, 3);
}

pub async fn an_idempotency_key_outlives_many_other_commands(stores: &Stores) {
    let id = stream();
    appended(stores, append(&id, 0, 1, Some("first"))).await;
    for version in 1..=OTHER_COMMANDS {
        appended(stores, append(&id, version, 1, Some(&format!("other-{version}")))).await;
    }
    assert!(stores.events.load(&id, Some("first")).await.expect("load").prior.is_some(), "the key is still known");
    match stores.events.append(append(&id, OTHER_COMMANDS + 1, 1, Some("first"))).await.expect("append") {
        AppendOutcome::Duplicate(record) => assert_eq!(record.key, "first"),
        other => panic!("expected Duplicate, got {other:?}"),
    }
}

/// More keyed commands than any "recent keys" window would hold.
const OTHER_COMMANDS: u64 = 250;

pub async fn a_key_claim_binds_its_first_use(stores: &Stores) {
    let key = format!("h.{}", Uuid::new_v4().simple());
    let claim = |fingerprint: &str, stream_id: &str| KeyClaim {
        key: key.clone(),
        fingerprint: fingerprint.to_string(),
        stream_id: stream_id.to_string(),
    };
    assert_eq!(stores.events.claim(&claim("fp-1", "Order-a")).await.expect("claim"), None, "first use");
    let earlier = Some(claim("fp-1", "Order-a"));
    assert_eq!(stores.events.claim(&claim("fp-2", "Sku-b")).await.expect("claim"), earlier, "another use");
    assert_eq!(stores.events.claim(&claim("fp-1", "Order-a")).await.expect("claim"), earlier, "the same use again");
    let other = KeyClaim { key: format!("{key}-other"), ..claim("fp-2", "Sku-b") };
    assert_eq!(stores.events.claim(&other).await.expect("claim"), None, "keys are claimed one by one");
}

/// Every range of the feed with no position held.
async fn fresh_positions(stores: &Stores) -> HashMap<String, Option<String>> {
    let planned = stores.feed.layout(&[]).await.expect("layout");
    planned.into_iter().map(|p| (p.range, p.continuation)).collect()
}

/// Reads the whole feed from `from` (following continuations until a page
/// comes back empty on every range); returns the events and where it ended.
async fn drain(
    stores: &Stores,
    from: &HashMap<String, Option<String>>,
) -> (Vec<EventRecord>, HashMap<String, Option<String>>) {
    let mut positions = from.clone();
    let mut events = Vec::new();
    for (range, start) in from {
        let mut at = start.clone();
        loop {
            let page = stores.feed.read(range, at.as_deref(), 50).await.expect("read feed");
            assert!(page.events.is_empty() || page.moved, "a page with events moves the continuation");
            let done = page.events.is_empty() && !page.moved;
            events.extend(page.events);
            at = page.continuation.or(at);
            if done {
                break;
            }
        }
        positions.insert(range.clone(), at);
    }
    (events, positions)
}

pub async fn every_stream_is_listed_once_page_by_page(stores: &Stores) {
    let mine: Vec<String> = (0..5).map(|_| stream()).collect();
    for (i, id) in mine.iter().enumerate() {
        appended(stores, append(id, 0, 1 + i as u64 % 2, Some("k"))).await;
    }
    let (mut listed, mut after, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let page = stores.events.stream_ids(after.as_deref(), 2).await.expect("list");
        assert!(page.ids.len() <= 2, "at most the page size: {page:?}");
        listed.extend(page.ids);
        pages += 1;
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert!(pages >= 3, "five streams in pages of two: {pages} pages");
    let counted = listed.iter().fold(HashMap::<&str, usize>::new(), |mut counts, id| {
        *counts.entry(id).or_default() += 1;
        counts
    });
    assert!(counted.values().all(|&n| n == 1), "each stream once: {listed:?}");
    assert!(mine.iter().all(|id| counted.contains_key(id.as_str())), "every stream of mine listed: {listed:?}");
}

pub async fn the_change_feed_has_every_event_in_stream_order(stores: &Stores) {
    let (a, b) = (stream(), stream());
    let (_, start) = drain(stores, &fresh_positions(stores).await).await;
    appended(stores, append(&a, 0, 2, None)).await;
    appended(stores, append(&b, 0, 1, None)).await;
    // One command's events share a feed position: still in order (9 before 10).
    appended(stores, append(&a, 2, 10, None)).await;
    let (events, after) = drain(stores, &start).await;
    let of = |id: &str| events.iter().filter(|e| e.stream_id == id).map(|e| e.index).collect::<Vec<_>>();
    assert_eq!(of(&a), (0..12).collect::<Vec<_>>());
    assert_eq!(of(&b), [0]);
    assert!(events.iter().all(|e| e.schema_version == (e.index % 3) as u32 + 1), "each keeps its shape's version");
    // Resuming from where the read ended gives only what came after.
    appended(stores, append(&b, 1, 1, None)).await;
    let (more, _) = drain(stores, &after).await;
    assert_eq!(more.iter().map(|e| (e.stream_id.clone(), e.index)).collect::<Vec<_>>(), [(b.clone(), 1)]);
}

pub async fn the_layout_covers_every_range_once_and_keeps_positions(stores: &Stores) {
    let fresh = stores.feed.layout(&[]).await.expect("layout");
    assert!(!fresh.is_empty());
    assert!(fresh.iter().all(|p| p.continuation.is_none() && p.split_from.is_none()), "{fresh:?}");
    let names: std::collections::BTreeSet<_> = fresh.iter().map(|p| p.range.clone()).collect();
    assert_eq!(names.len(), fresh.len(), "each range once");
    appended(stores, append(&stream(), 0, 1, None)).await;
    let (_, reached) = drain(stores, &fresh_positions(stores).await).await;
    let held: Vec<FeedPosition> =
        reached.iter().map(|(range, at)| FeedPosition { range: range.clone(), continuation: at.clone() }).collect();
    let again = stores.feed.layout(&held).await.expect("layout");
    for planned in again {
        assert_eq!(Some(&planned.continuation), reached.get(&planned.range), "{}", planned.range);
        assert_eq!(planned.split_from, None);
    }
}

pub async fn starting_now_skips_history_and_loses_nothing_new(stores: &Stores) {
    let start_all = |from: StartFrom| async move {
        let mut positions = HashMap::new();
        for planned in stores.feed.layout(&[]).await.expect("layout") {
            let at = stores.feed.start(&planned.range, from).await.expect("start");
            positions.insert(planned.range, Some(at));
        }
        positions
    };
    // On a feed that holds nothing, "now" is the beginning: nothing is lost.
    let (a, b) = (stream(), stream());
    let before_anything = start_all(StartFrom::Now).await;
    appended(stores, append(&a, 0, 2, None)).await;
    let (events, _) = drain(stores, &before_anything).await;
    assert_eq!(events.iter().filter(|e| e.stream_id == a).count(), 2, "events after 'now' are read");
    // With history, "now" skips it and reads what comes next.
    let now = start_all(StartFrom::Now).await;
    appended(stores, append(&b, 0, 1, None)).await;
    appended(stores, append(&a, 2, 1, None)).await;
    let (events, _) = drain(stores, &now).await;
    let read: Vec<(String, u64)> = events.iter().map(|e| (e.stream_id.clone(), e.index)).collect();
    assert!(read.contains(&(b.clone(), 0)) && read.contains(&(a.clone(), 2)), "{read:?}");
    assert!(!read.contains(&(a.clone(), 0)), "history before 'now' is not read again: {read:?}");
    let (everything, _) = drain(stores, &start_all(StartFrom::Beginning).await).await;
    assert_eq!(everything.iter().filter(|e| e.stream_id == a).count(), 3, "the beginning has it all");
}

pub async fn waiting_for_changes_returns_when_there_are_some(stores: &Stores) {
    let (_, at) = drain(stores, &fresh_positions(stores).await).await;
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

pub async fn leases_are_written_only_over_the_version_last_read(stores: &Stores) {
    let consumer = format!("consumer-{}", Uuid::new_v4());
    let lease = |continuation: &str| Lease {
        consumer: consumer.clone(),
        range: "r1".into(),
        continuation: Some(continuation.into()),
        owner: Some("me".into()),
        expires_at: Utc::now(),
        requested_by: None,
    };
    let leases = &stores.leases;
    let v1 = leases.put(&lease("10"), None).await.expect("create").expect("created");
    assert_eq!(leases.put(&lease("x"), None).await.expect("create again"), None, "it exists");
    let v2 = leases.put(&lease("11"), Some(&v1)).await.expect("replace").expect("replaced");
    assert_eq!(leases.put(&lease("y"), Some(&v1)).await.expect("replace"), None, "v1 is gone");
    let stored = leases.lease(&consumer, "r1").await.expect("read").expect("stored");
    assert_eq!((stored.value.continuation.as_deref(), stored.version.as_str()), (Some("11"), v2.as_str()));
    let other = Lease { range: "r2".into(), ..lease("20") };
    leases.put(&other, None).await.expect("create").expect("created");
    let someone_else = Lease { consumer: format!("{consumer}-not"), ..lease("30") };
    leases.put(&someone_else, None).await.expect("create").expect("created");
    let all = leases.leases(&consumer).await.expect("list");
    let mut ranges: Vec<_> = all.iter().map(|l| l.value.range.as_str()).collect();
    ranges.sort();
    assert_eq!(ranges, ["r1", "r2"], "one consumer's leases");
    assert!(!leases.delete(&consumer, "r1", Some(&v1)).await.expect("delete"), "not at that version");
    assert!(leases.delete(&consumer, "r1", Some(&v2)).await.expect("delete"));
    assert!(!leases.delete(&consumer, "r1", None).await.expect("delete"), "gone already");
    assert!(leases.delete(&consumer, "r2", None).await.expect("delete"), "any version");
    assert_eq!(leases.lease(&consumer, "r1").await.expect("read"), None);
}

pub async fn a_refusal_is_recorded_once(stores: &Stores) {
    let refusal = |id: &str, seconds: i64| RefusedReaction {
        id: id.to_string(),
        time: Utc::now() + chrono::Duration::seconds(seconds),
        event_id: Uuid::new_v4(),
        event_stream_id: "Order-1".into(),
        event_index: 3,
        event_type: "Shipped".into(),
        command: "Ship".into(),
        target_stream_id: "Sku-A".into(),
        code: "invalid-status".into(),
        reason: "no".into(),
    };
    stores.refusals.record(&refusal("r.a.0", 0)).await.expect("record");
    stores.refusals.record(&refusal("r.a.0", 5)).await.expect("record again");
    stores.refusals.record(&refusal("r.b.0", 1)).await.expect("record");
    let (latest, count) = stores.refusals.latest(10).await.expect("latest");
    assert_eq!(count, 2);
    assert_eq!(latest.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["r.b.0", "r.a.0"], "newest first");
    assert_eq!(latest[1].event_type, "Shipped");
    assert_eq!(stores.refusals.latest(1).await.expect("latest").0.len(), 1);
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

/// Appends one event to a stream at its current version: what tests of the
/// change feed need, whatever the event says.
pub async fn timers_are_due_in_order_kept_once_and_completed(stores: &Stores) {
    let stream_id = stream();
    let now = Utc::now();
    let timer = |name: &str, seconds: i64| Timer {
        stream_id: stream_id.clone(),
        name: name.into(),
        due_at: now + chrono::Duration::seconds(seconds),
        deadline: json!({"kind": name}),
        caused_by: Uuid::new_v4(),
        correlation_id: "corr".into(),
    };
    let timers = &stores.timers;
    timers.schedule(vec![timer("later", 60), timer("second", -10), timer("first", -20)]).await.expect("schedule");
    // Scheduled again (a redelivered event): the first one stays.
    timers.schedule(vec![timer("first", 3600)]).await.expect("schedule again");
    let ours = |found: Vec<Timer>| -> Vec<String> {
        found.into_iter().filter(|t| t.stream_id == stream_id).map(|t| t.name).collect()
    };
    assert_eq!(ours(timers.due(now, 100).await.expect("due")), ["first", "second"], "due ones, earliest first");
    let (pending, count) = timers.pending(100).await.expect("pending");
    assert_eq!(ours(pending), ["first", "second", "later"]);
    assert!(count >= 3, "{count}");
    timers.complete(&stream_id, "first").await.expect("complete");
    timers.complete(&stream_id, "first").await.expect("complete again: nothing to do");
    assert_eq!(ours(timers.due(now, 100).await.expect("due")), ["second"]);
    let stored = timers.due(now, 100).await.expect("due").into_iter().find(|t| t.stream_id == stream_id);
    assert_eq!(stored.map(|t| (t.deadline, t.due_at)), Some((json!({"kind": "second"}), timer("second", -10).due_at)));
}

pub async fn heartbeats_are_written_over_and_kept_for_a_while(stores: &Stores) {
    let instance = format!("instance-{}", Uuid::new_v4());
    stores.leases.heartbeat(&instance).await.expect("heartbeat");
    let first = stores.leases.lease(HEARTBEAT, &instance).await.expect("read").expect("written");
    stores.leases.heartbeat(&instance).await.expect("heartbeat again: no condition to fail");
    let second = stores.leases.lease(HEARTBEAT, &instance).await.expect("read").expect("written");
    assert_ne!(first.version, second.version, "written again");
    let kept = second.value.expires_at - Utc::now();
    assert!(kept > chrono::Duration::days(6), "kept for the heartbeat retention: {kept}");
    assert!(stores.leases.leases("project-snapshots").await.expect("leases").iter().all(|l| l.value.range != instance));
}

pub async fn closed_streams_move_to_the_archive_and_read_the_same(stores: &Stores) {
    const CLOSED: ClosedWhen = ClosedWhen { field: "status", values: &["Delivered", "Cancelled"] };
    let (closed, older, open, recent) = (stream(), stream(), stream(), stream());
    let long_ago = Utc::now() - chrono::Duration::hours(2);
    let read_model = |id: &str, status: &str, updated_at| Snapshot {
        stream_id: id.to_string(),
        version: 5,
        updated_at,
        customer_id: Some("customer".into()),
        state: json!({"status": status}),
    };
    for id in [&closed, &older, &open, &recent] {
        appended(stores, append(id, 0, 5, None)).await;
    }
    let puts = vec![
        read_model(&closed, "Delivered", long_ago),
        read_model(&older, "Cancelled", long_ago - chrono::Duration::hours(1)),
        read_model(&open, "Reserved", long_ago),
        read_model(&recent, "Cancelled", Utc::now()),
    ];
    stores.snapshots.put(puts).await.expect("read models");
    let before = Utc::now() - chrono::Duration::hours(1);
    let candidates = stores.archive.archivable(before, CLOSED, 10).await.expect("archivable");
    let candidate = |id: &str| ArchiveCandidate { stream_id: id.to_string(), version: 5 };
    assert_eq!(candidates, [candidate(&older), candidate(&closed)], "the oldest first");
    let one = stores.archive.archivable(before, CLOSED, 1).await.expect("archivable");
    assert!(one == [candidate(&older)] || one == [candidate(&closed)], "one of them: {one:?}");
    assert_eq!(stores.archive.count_archivable(before, CLOSED).await.expect("count"), 2);
    assert_eq!(stores.archive.archive(&[(older.clone(), 4)]).await.expect("archive"), [4]);

    let history = stores.events.read_stream(&closed, 0, 100).await.expect("read");
    assert_eq!(stores.archive.archive(&[(closed.clone(), 4)]).await.expect("archive"), [4], "all but the last");
    assert_eq!(stores.events.read_stream(&closed, 0, 100).await.expect("read"), history, "reads the same");
    assert_eq!(stores.events.read_stream(&closed, 2, 2).await.expect("read"), history[2..4]);
    assert_eq!(stores.events.read_stream(&closed, 4, 9).await.expect("read"), history[4..]);
    assert!(stores.events.read_stream(&closed, 5, 9).await.expect("read").is_empty());
    assert_eq!(stores.archive.archivable(before, CLOSED, 10).await.expect("archivable"), []);
    assert_eq!(stores.archive.count_archivable(before, CLOSED).await.expect("count"), 0);
    assert_eq!(stores.archive.archive(&[(closed.clone(), 4)]).await.expect("again"), [0], "nothing left to move");
    assert_eq!(stores.events.read_stream(&closed, 0, 100).await.expect("read"), history);

    // The stream goes on as before: its tip and last event stayed hot.
    assert_eq!(stores.events.load(&closed, None).await.expect("load").tip.map(|t| t.version), Some(5));
    assert_eq!(appended(stores, append(&closed, 5, 1, None)).await, 6);
    let longer = stores.events.read_stream(&closed, 0, 100).await.expect("read");
    assert_eq!(longer.iter().map(|e| e.index).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5]);
    assert_eq!(longer[..5], history);
}

pub async fn append_one(events: &dyn EventStore, stream_id: &str) {
    let version = events.load(stream_id, None).await.expect("load").tip.map_or(0, |t| t.version);
    let append = Append {
        stream_id: stream_id.into(),
        expected_version: version,
        events: vec![event(stream_id, version)],
        state: json!({}),
        idempotency: Vec::new(),
    };
    assert!(matches!(events.append(append).await.expect("append"), AppendOutcome::Appended { .. }));
}

/// A change-feed consumer for tests of the feed runner: it remembers what it
/// handled, in order; with a gate, each batch waits for a permit (to hold a
/// batch in hand while time passes), and a batch dropped unfinished is noted.
pub struct Recorder {
    start: StartFrom,
    seen: std::sync::Mutex<Vec<(String, u64)>>,
    gate: Option<std::sync::Arc<tokio::sync::Semaphore>>,
    dropped: std::sync::Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
}

impl Recorder {
    pub fn new(start: StartFrom) -> Recorder {
        Recorder { start, seen: Default::default(), gate: None, dropped: Default::default() }
    }

    /// A recorder whose batches wait for a permit of `gate`.
    pub fn gated(start: StartFrom, gate: std::sync::Arc<tokio::sync::Semaphore>) -> Recorder {
        Recorder { gate: Some(gate), ..Recorder::new(start) }
    }

    /// (stream, index) of every event handled, in the order handled.
    pub fn seen(&self) -> Vec<(String, u64)> {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// When a batch in hand was dropped unfinished, if one was.
    pub fn dropped_at(&self) -> Option<tokio::time::Instant> {
        *self.dropped.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Notes the moment a batch in hand is dropped unfinished.
struct Unfinished(std::sync::Arc<std::sync::Mutex<Option<tokio::time::Instant>>>, bool);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.1 {
            *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tokio::time::Instant::now());
        }
    }
}

#[async_trait::async_trait]
impl crate::consumers::Consumer for Recorder {
    fn name(&self) -> &'static str {
        "recorder"
    }

    async fn handle(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        let mut unfinished = Unfinished(self.dropped.clone(), false);
        if let Some(gate) = &self.gate {
            let _pass = gate.acquire().await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        }
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.extend(events.iter().map(|e| (e.stream_id.clone(), e.index)));
        unfinished.1 = true;
        Ok(())
    }

    fn start(&self) -> StartFrom {
        self.start
    }
}

/// Generates one `#[tokio::test]` per conformance check; `$stores` is an
/// async expression giving a fresh [`UnderTest`].
#[macro_export]
macro_rules! conformance_tests {
    // The event store's part, for an adapter whose other ports are not there yet.
    (event_store: $stores:expr) => {
        $crate::conformance_tests!(@each $stores;
            append_then_load,
            a_stale_version_changes_nothing,
            concurrent_appends_have_one_winner,
            an_idempotency_key_is_remembered,
            an_append_remembers_each_of_its_keys,
            an_idempotency_key_outlives_many_other_commands,
            a_key_claim_binds_its_first_use,
            every_stream_is_listed_once_page_by_page
        );
    };
    ($stores:expr) => {
        $crate::conformance_tests!(event_store: $stores);
        $crate::conformance_tests!(@each $stores;
            the_change_feed_has_every_event_in_stream_order,
            the_layout_covers_every_range_once_and_keeps_positions,
            starting_now_skips_history_and_loses_nothing_new,
            waiting_for_changes_returns_when_there_are_some,
            leases_are_written_only_over_the_version_last_read,
            a_refusal_is_recorded_once,
            snapshots_never_go_back,
            timers_are_due_in_order_kept_once_and_completed,
            heartbeats_are_written_over_and_kept_for_a_while,
            closed_streams_move_to_the_archive_and_read_the_same
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
