//! Exactly-once effects, deterministically, on the in-memory store: keys
//! remembered in time rather than in count, keys that mean one request
//! whatever stream they name, reactions that are never lost, and feed ranges
//! that change hands, split, or start on a feed with history. Time is
//! tokio's paused clock, so leases expire when a test says so.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cloudevents::{EventBuilder, EventBuilderV10};
use orderflow_domain::deadlines::DeadlinePolicy;
use orderflow_domain::inventory::InventoryCommand;
use orderflow_domain::order::{NewLine, OrderCommand};
use orderflow_domain::Command;
use orderflow_pipeline::conformance::{append_one, Recorder};
use orderflow_pipeline::consumers::{Clock, Consumer, FeedRunner, Fulfillment, Projector, Step};
use orderflow_pipeline::deadlines::DeadlineTimers;
use orderflow_pipeline::ingest::{Delivery, Ingested, Ingestor, Origin};
use orderflow_pipeline::memory::MemoryStore;
use orderflow_pipeline::ports::*;
use orderflow_pipeline::processor::{CommandError, CommandProcessor, Envelope, IdempotencyKey};
use serde_json::json;
use tokio::time::Instant;

/// A value as a door would check it (`String`s pass as they are).
fn v<T: TryFrom<String, Error: std::fmt::Debug>>(text: impl Into<String>) -> T {
    T::try_from(text.into()).expect("a valid value")
}

fn units(quantity: u64) -> orderflow_domain::values::StockQuantity {
    quantity.try_into().expect("a quantity")
}

fn processor(store: &Arc<MemoryStore>) -> Arc<CommandProcessor> {
    Arc::new(CommandProcessor::new(store.clone()))
}

fn restock(sku: &str, quantity: u64) -> Command {
    Command::Inventory { sku: sku.into(), command: InventoryCommand::Restock { quantity: units(quantity) } }
}

fn keyed(key: &str, fingerprint: &str) -> Envelope {
    Envelope::idempotent(format!("http:{key}"), IdempotencyKey::http("", key, fingerprint.to_string()))
}

fn restocked(store: &MemoryStore, sku: &str) -> u64 {
    store
        .events_of(&format!("Sku-{sku}"))
        .iter()
        .filter(|e| e.event_type == "Restocked")
        .map(|e| e.data["quantity"].as_u64().unwrap_or_default())
        .sum()
}

/// A wall clock that moves with tokio's (paused) clock.
fn tokio_clock() -> Clock {
    let (base, start) = (Utc::now(), Instant::now());
    Arc::new(move || base + (Instant::now() - start))
}

#[tokio::test]
async fn a_key_retried_after_a_thousand_other_commands_has_no_second_effect() {
    let store = Arc::new(MemoryStore::default());
    let processor = processor(&store);
    let first = processor.execute(&restock("A", 10), &keyed("K", "restock 10")).await.expect("restock");
    for i in 0..1_000 {
        processor.execute(&restock("A", 1), &keyed(&format!("other-{i}"), "restock 1")).await.expect("restock");
    }
    let retried = processor.execute(&restock("A", 10), &keyed("K", "restock 10")).await.expect("retry");
    assert!(retried.duplicate, "recognised as the same request");
    assert_eq!(retried.version, first.version, "answered as the first time");
    assert_eq!(restocked(&store, "A"), 1_010);
}

#[tokio::test(start_paused = true)]
async fn keys_are_kept_for_the_retention_and_no_longer() {
    let store = Arc::new(MemoryStore::new(Duration::from_secs(3600)));
    let processor = processor(&store);
    processor.execute(&restock("A", 10), &keyed("K", "restock 10")).await.expect("restock");
    tokio::time::advance(Duration::from_secs(3599)).await;
    assert!(processor.execute(&restock("A", 10), &keyed("K", "restock 10")).await.expect("retry").duplicate);
    tokio::time::advance(Duration::from_secs(2)).await;
    let later = processor.execute(&restock("A", 10), &keyed("K", "restock 10")).await.expect("much later");
    assert!(!later.duplicate, "past the retention the key is new again");
}

#[tokio::test]
async fn an_http_key_means_one_request_whatever_stream_it_names() {
    let store = Arc::new(MemoryStore::default());
    let processor = processor(&store);
    processor.execute(&restock("A", 10), &keyed("K", "POST /api/inventory/A/restock 10")).await.expect("first");
    let elsewhere = processor.execute(&restock("B", 10), &keyed("K", "POST /api/inventory/B/restock 10")).await;
    assert!(matches!(elsewhere, Err(CommandError::KeyReused)), "{elsewhere:?}");
    assert_eq!(restocked(&store, "B"), 0, "nothing happened on the other stream");
    // Another caller's key of the same text is another key.
    let theirs = Envelope::idempotent(
        "http:K",
        IdempotencyKey::http("their-api-key-digest", "K", "POST /api/inventory/B/restock 10".into()),
    );
    processor.execute(&restock("B", 10), &theirs).await.expect("another caller's K");
    assert_eq!(restocked(&store, "B"), 10);
}

fn stock_received(source: &str, id: &str, sku: &str, quantity: u64) -> cloudevents::Event {
    EventBuilderV10::new()
        .id(id)
        .source(source)
        .ty("stock.received")
        .data("application/json", json!({"sku": sku, "quantity": quantity}))
        .build()
        .expect("an event")
}

fn delivery() -> Delivery {
    Delivery { origin: Origin::Http { request_id: "r".into() }, key: None, headers: vec![], payload: vec![] }
}

#[tokio::test]
async fn a_cloudevent_id_reused_with_other_data_is_a_conflicting_duplicate_on_any_stream() {
    let store = Arc::new(MemoryStore::default());
    let ingestor = Ingestor::new(processor(&store), store.clone());
    let first = ingestor.ingest(&delivery(), Ok(stock_received("/stock", "e-1", "A", 5))).await.expect("ingest");
    assert!(matches!(first, Ingested::Applied { .. }), "{first:?}");
    let again = ingestor.ingest(&delivery(), Ok(stock_received("/stock", "e-1", "A", 5))).await.expect("ingest");
    assert!(matches!(again, Ingested::Duplicate { .. }), "{again:?}");
    let other = ingestor.ingest(&delivery(), Ok(stock_received("/stock", "e-1", "B", 7))).await.expect("ingest");
    assert!(matches!(other, Ingested::DeadLettered { kind: "conflicting-duplicate", .. }), "{other:?}");
    assert_eq!((restocked(&store, "A"), restocked(&store, "B")), (5, 0));
    // `#` in a source or id cannot make two messages one.
    ingestor.ingest(&delivery(), Ok(stock_received("/a#b", "c", "C", 1))).await.expect("ingest");
    let look_alike = ingestor.ingest(&delivery(), Ok(stock_received("/a", "b#c", "C", 1))).await.expect("ingest");
    assert!(matches!(look_alike, Ingested::Applied { .. }), "{look_alike:?}");
    assert_eq!(restocked(&store, "C"), 2);
}

async fn place_and_confirm(processor: &CommandProcessor, order_id: &str, sku: &str) {
    let line = NewLine::new(sku, 2, 100).expect("a line");
    let place = OrderCommand::Place { customer_id: v("c"), currency: v("EUR"), lines: vec![line] };
    for command in [place, OrderCommand::Confirm] {
        let command = Command::Order { order_id: order_id.into(), command };
        processor.execute(&command, &Envelope::new()).await.expect("order command");
    }
}

/// Fulfillment over the in-memory store, with the default deadlines.
fn fulfillment_of(processor: &Arc<CommandProcessor>, store: &Arc<MemoryStore>) -> Fulfillment {
    let deadlines = DeadlineTimers { timers: store.clone(), policy: DeadlinePolicy::default() };
    Fulfillment::new(processor.clone(), store.clone(), deadlines)
}

/// Runs `runner` until a pass over its ranges finds nothing new.
async fn catch_up(runner: &mut FeedRunner) {
    while runner.step().await.expect("step") == Step::Progressed {}
}

#[tokio::test]
async fn a_reaction_that_loses_to_contention_fails_the_batch_and_lands_when_retried() {
    let store = Arc::new(MemoryStore::default());
    let processor = processor(&store);
    processor.execute(&restock("A", 5), &Envelope::new()).await.expect("restock");
    place_and_confirm(&processor, "o1", "A").await;
    let fulfillment = Arc::new(fulfillment_of(&processor, &store));
    let mut runner = FeedRunner::new(&store.stores(), fulfillment).with_start(StartFrom::Beginning);
    // Every attempt to reserve loses to a pretend concurrent writer.
    store.conflict_next_appends("Sku-A", 100);
    let failed = runner.step().await;
    assert!(failed.is_err(), "the batch fails rather than dropping the reaction");
    store.conflict_next_appends("Sku-A", 0);
    catch_up(&mut runner).await;
    let reserved: Vec<_> = store.events_of("Sku-A").into_iter().filter(|e| e.event_type == "StockReserved").collect();
    assert_eq!(reserved.len(), 1, "reserved once");
    let order: Vec<_> = store.events_of("Order-o1").into_iter().map(|e| e.event_type).collect();
    assert_eq!(order, ["Placed", "Confirmed", "LineReserved", "Reserved"]);
}

#[tokio::test]
async fn a_reaction_its_target_refuses_is_recorded_once() {
    let store = Arc::new(MemoryStore::default());
    let processor = processor(&store);
    processor.execute(&restock("A", 5), &Envelope::new()).await.expect("restock");
    // A reservation for an order that does not exist: recording it on the
    // order is refused.
    let reserve = InventoryCommand::Reserve { order_id: "ghost".into(), attempt: 1, quantity: 1 };
    processor
        .execute(&Command::Inventory { sku: "A".into(), command: reserve }, &Envelope::new())
        .await
        .expect("reserve");
    let fulfillment = Arc::new(fulfillment_of(&processor, &store));
    let mut runner = FeedRunner::new(&store.stores(), fulfillment).with_start(StartFrom::Beginning);
    catch_up(&mut runner).await;
    let (refused, count) = store.latest(10).await.expect("refusals");
    assert_eq!(count, 1, "{refused:?}");
    let refusal = &refused[0];
    assert_eq!((refusal.event_type.as_str(), refusal.event_stream_id.as_str()), ("StockReserved", "Sku-A"));
    assert_eq!((refusal.command.as_str(), refusal.target_stream_id.as_str()), ("RecordReservation", "Order-ghost"));
    assert_eq!(refusal.code, "not-found");
    // Handling the event again records nothing new.
    let event = store.events_of("Sku-A").into_iter().find(|e| e.event_type == "StockReserved").expect("reserved");
    fulfillment_of(&processor, &store).handle(&[event]).await.expect("again");
    assert_eq!(store.latest(10).await.expect("refusals").1, 1);
}

#[tokio::test]
async fn a_consumer_with_side_effects_starts_from_now_on_a_feed_with_history() {
    let store = Arc::new(MemoryStore::default());
    for i in 0..20 {
        append_one(&*store, &format!("Sku-{i}")).await;
    }
    let fresh = Arc::new(Recorder::new(StartFrom::Now));
    let mut runner = FeedRunner::new(&store.stores(), fresh.clone());
    runner.prepare().await.expect("prepare");
    catch_up(&mut runner).await;
    assert!(fresh.seen().is_empty(), "history is not handled again: {:?}", fresh.seen());
    append_one(&*store, "Sku-3").await;
    catch_up(&mut runner).await;
    assert_eq!(fresh.seen(), [("Sku-3".to_string(), 1)], "what comes after is");
    // A read model is built from all of history.
    let projector = Projector::new(store.clone(), store.clone());
    assert_eq!(projector.start(), StartFrom::Beginning);
}

#[tokio::test(start_paused = true)]
async fn a_range_that_splits_goes_on_as_its_parts_without_replaying_or_skipping() {
    let store = Arc::new(MemoryStore::default());
    let streams: Vec<String> = (0..40).map(|i| format!("Sku-{i}")).collect();
    for stream in &streams {
        append_one(&*store, stream).await;
    }
    let recorder = Arc::new(Recorder::new(StartFrom::Beginning));
    let mut runner = FeedRunner::new(&store.stores(), recorder.clone());
    catch_up(&mut runner).await;
    assert_eq!(recorder.seen().len(), 40);

    let busiest = store.range_of(&streams[0]);
    let (left, right) = store.split(&busiest).expect("split");
    for stream in &streams {
        append_one(&*store, stream).await;
    }
    // The next look at the ranges (a quarter TTL on) sees the split.
    tokio::time::advance(Duration::from_secs(30)).await;
    catch_up(&mut runner).await;
    let seen = recorder.seen();
    for stream in &streams {
        let indexes: Vec<u64> = seen.iter().filter(|(s, _)| s == stream).map(|(_, i)| *i).collect();
        assert_eq!(indexes, [0, 1], "{stream}: each event once, in order");
    }
    let leases = store.leases("recorder").await.expect("leases");
    let ranges: Vec<&str> = leases.iter().map(|l| l.value.range.as_str()).collect();
    assert!(ranges.contains(&left.as_str()) && ranges.contains(&right.as_str()), "{ranges:?}");
    assert!(!ranges.contains(&busiest.as_str()), "the split range's lease is retired: {ranges:?}");
}

fn lease_of(leases: &[Versioned<Lease>], range: &str) -> Lease {
    leases.iter().find(|l| l.value.range == range).map(|l| l.value.clone()).expect("a lease")
}

#[tokio::test(start_paused = true)]
async fn a_process_that_loses_its_lease_mid_batch_stops_before_another_may_take_it() {
    let store = Arc::new(MemoryStore::default());
    append_one(&*store, "Sku-1").await;
    let range = store.range_of("Sku-1");
    let ttl = Duration::from_secs(8);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let holder = Arc::new(Recorder::gated(StartFrom::Beginning, gate.clone()));
    let clock = tokio_clock();
    let mut runner =
        FeedRunner::new(&store.stores(), holder.clone()).with_owner("A").with_lease_ttl(ttl).with_clock(clock.clone());
    runner.prepare().await.expect("prepare");
    let before = lease_of(&store.leases("recorder").await.expect("leases"), &range);
    assert_eq!(before.owner.as_deref(), Some("A"));

    // Another process takes the range (as it may once the lease expired,
    // say after this one was paused) while the batch is in hand.
    let taker = {
        let store = store.clone();
        let range = range.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let stored = store.lease("recorder", &range).await.expect("read").expect("a lease");
            let taken = Lease { owner: Some("B".into()), ..stored.value };
            LeaseStore::put(&*store, &taken, Some(&stored.version)).await.expect("put").expect("taken");
        })
    };
    let began = Instant::now();
    let stepped = runner.step().await.expect("step");
    taker.await.expect("taker");
    let cancelled = holder.dropped_at().expect("the batch in hand was dropped");
    assert!(holder.seen().is_empty(), "nothing was handled");
    // It let go at its first renewal after the take-over: a quarter TTL in.
    assert_eq!(cancelled.duration_since(began), ttl / 4);
    assert!(matches!(stepped, Step::Idle(_)));
    let after = lease_of(&store.leases("recorder").await.expect("leases"), &range);
    assert_eq!((after.owner.as_deref(), &after.continuation), (Some("B"), &before.continuation), "position untouched");
    gate.add_permits(1);
}

#[tokio::test(start_paused = true)]
async fn a_process_that_cannot_renew_stops_a_quarter_ttl_before_its_lease_expires() {
    let store = Arc::new(MemoryStore::default());
    append_one(&*store, "Sku-1").await;
    let ttl = Duration::from_secs(8);
    let holder = Arc::new(Recorder::gated(StartFrom::Beginning, Arc::new(tokio::sync::Semaphore::new(0))));
    let clock = tokio_clock();
    let mut runner = FeedRunner::new(&store.stores(), holder.clone()).with_lease_ttl(ttl).with_clock(clock.clone());
    runner.prepare().await.expect("prepare");
    let range = store.range_of("Sku-1");
    let expires_at = lease_of(&store.leases("recorder").await.expect("leases"), &range).expires_at;
    store.fail_lease_writes(true);
    runner.step().await.expect("step");
    let cancelled = holder.dropped_at().expect("the batch was dropped");
    let since = chrono::Duration::from_std(Instant::now().duration_since(cancelled)).expect("a duration");
    let stopped_at: DateTime<Utc> = clock() - since;
    assert!(stopped_at <= expires_at - ttl / 4, "stopped at {stopped_at}, the lease expires at {expires_at}");
}

#[tokio::test(start_paused = true)]
async fn a_process_that_joins_is_handed_ranges_between_batches_never_in_one() {
    let store = Arc::new(MemoryStore::default());
    for i in 0..40 {
        append_one(&*store, &format!("Sku-{i}")).await;
    }
    let ttl = Duration::from_secs(8);
    let clock = tokio_clock();
    let runner = |owner: &str, recorder: Arc<Recorder>| {
        FeedRunner::new(&store.stores(), recorder).with_owner(owner).with_lease_ttl(ttl).with_clock(clock.clone())
    };
    let (a_seen, b_seen) =
        (Arc::new(Recorder::new(StartFrom::Beginning)), Arc::new(Recorder::new(StartFrom::Beginning)));
    let mut a = runner("A", a_seen.clone());
    catch_up(&mut a).await;
    let owners = |leases: &[Versioned<Lease>], owner: &str| {
        leases.iter().filter(|l| l.value.owner.as_deref() == Some(owner)).count()
    };
    assert_eq!(owners(&store.leases("recorder").await.expect("leases"), "A"), 4);

    let mut b = runner("B", b_seen.clone());
    for _ in 0..6 {
        tokio::time::advance(ttl / 4).await;
        b.step().await.expect("b steps");
        a.step().await.expect("a steps");
    }
    let leases = store.leases("recorder").await.expect("leases");
    assert_eq!((owners(&leases, "A"), owners(&leases, "B")), (2, 2), "even shares");
    // Handed over, not taken: B read no event twice that A had handled.
    for i in 0..40 {
        append_one(&*store, &format!("Sku-{i}")).await;
    }
    catch_up(&mut a).await;
    catch_up(&mut b).await;
    let mut all: Vec<_> = a_seen.seen().into_iter().chain(b_seen.seen()).collect();
    all.sort();
    let expected: Vec<_> = (0..40)
        .flat_map(|i| [(format!("Sku-{i}"), 0), (format!("Sku-{i}"), 1)])
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(all, expected, "every event handled exactly once between them");
}

/// A consumer that says when a batch is in hand, then waits to be let go.
struct Slow {
    started: tokio::sync::mpsc::UnboundedSender<()>,
    go: Arc<tokio::sync::Semaphore>,
    handled: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Consumer for Slow {
    fn name(&self) -> &'static str {
        "slow"
    }

    async fn handle(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        let _ = self.started.send(());
        let _pass = self.go.acquire().await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        self.handled.fetch_add(events.len(), std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    fn start(&self) -> StartFrom {
        StartFrom::Beginning
    }
}

#[tokio::test]
async fn a_clean_stop_finishes_the_batch_in_hand_and_saves_its_position() {
    let store = Arc::new(MemoryStore::default());
    append_one(&*store, "Sku-1").await;
    let (started, mut in_hand) = tokio::sync::mpsc::unbounded_channel();
    let go = Arc::new(tokio::sync::Semaphore::new(0));
    let slow = Arc::new(Slow { started, go: go.clone(), handled: Default::default() });
    let runner = FeedRunner::new(&store.stores(), slow.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(runner.run(stopped));
    in_hand.recv().await.expect("a batch in hand");
    stop.send(true).expect("stop");
    go.add_permits(1);
    running.await.expect("the runner stops");
    assert_eq!(slow.handled.load(std::sync::atomic::Ordering::SeqCst), 1, "the batch in hand was finished");
    let leases = store.leases("slow").await.expect("leases");
    let range = store.range_of("Sku-1");
    let lease = leases.iter().find(|l| l.value.range == range).expect("its lease");
    assert_eq!(lease.value.continuation.as_deref(), Some("1"), "and its position saved");
    assert_eq!(lease.value.owner, None, "the lease let go for the next owner");
}
