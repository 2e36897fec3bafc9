//! Every store port in memory, for deterministic tests of the pipeline
//! steps: it passes the conformance suite like the real adapters, and lets a
//! test do what is hard to provoke on a real store — split a feed range,
//! make appends lose to a (pretend) concurrent writer, let time pass for
//! key retention (`tokio::time`, so that paused-time tests decide it).
//!
//! The change feed is one global sequence; a stream belongs to a range of a
//! 32-bit hash space, and a range reads the events of its streams after a
//! sequence number. A range that splits leaves positions valid for its parts
//! (as Cosmos DB's LSNs are).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::feed_ranges::{refine, Bounds};
use crate::ports::*;

/// The hash space the feed's ranges split: `[0, SPACE)`.
const SPACE: u64 = 1 << 32;

pub struct MemoryStore {
    state: Mutex<State>,
    head: watch::Sender<u64>,
    key_retention: Duration,
}

#[derive(Default)]
struct State {
    streams: HashMap<String, Stream>,
    /// Every event in commit order: the change feed (sequence = position + 1).
    log: Vec<EventRecord>,
    ranges: Vec<Bounds<u64>>,
    claims: HashMap<String, (KeyClaim, Instant)>,
    leases: HashMap<(String, String), Versioned<Lease>>,
    lease_writes: u64,
    snapshots: HashMap<String, Snapshot>,
    /// How far each stream's events were archived (the read model's note).
    archived_through: HashMap<String, u64>,
    refusals: BTreeMap<String, RefusedReaction>,
    parked: BTreeMap<(String, String), Versioned<ParkedStream>>,
    timers: BTreeMap<(String, String), Timer>,
    messages: Vec<Message>,
    /// Appends to these streams lose to a pretend concurrent writer this
    /// many more times.
    conflicts: HashMap<String, u32>,
    /// Lease writes fail as if the store could not be reached.
    lease_writes_fail: bool,
}

#[derive(Default)]
struct Stream {
    tip: Option<Tip>,
    /// Its events in the hot store, and those moved to the archive.
    events: Vec<EventRecord>,
    archived: Vec<EventRecord>,
    records: HashMap<String, (IdempotencyRecord, Instant)>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new(DEFAULT_KEY_RETENTION)
    }
}

impl MemoryStore {
    /// An empty store whose feed has four ranges, keeping idempotency
    /// records and key claims for `key_retention`.
    pub fn new(key_retention: Duration) -> MemoryStore {
        let quarter = SPACE / 4;
        let state = State { ranges: (0..4).map(|i| (i * quarter, (i + 1) * quarter)).collect(), ..State::default() };
        MemoryStore { state: Mutex::new(state), head: watch::channel(0).0, key_retention }
    }

    pub fn stores(self: &Arc<Self>) -> Stores {
        Stores::of(self.clone())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next `times` appends to `stream_id` find that another writer
    /// moved the stream first (and nothing changes).
    pub fn conflict_next_appends(&self, stream_id: &str, times: u32) {
        self.state().conflicts.insert(stream_id.to_string(), times);
    }

    /// Makes every lease write fail (the store cannot be reached) or work again.
    pub fn fail_lease_writes(&self, fail: bool) {
        self.state().lease_writes_fail = fail;
    }

    /// Splits the feed range `range` in two halves; its positions stay valid.
    pub fn split(&self, range: &str) -> Result<(String, String), StoreError> {
        let (min, max) = bounds(range)?;
        let mut state = self.state();
        let at = state.ranges.iter().position(|r| *r == (min, max));
        let Some(at) = at else { return Err(StoreError::Corrupt(format!("no physical range {range}"))) };
        let middle = min + (max - min) / 2;
        state.ranges.splice(at..=at, [(min, middle), (middle, max)]);
        Ok((label(&min, &middle), label(&middle, &max)))
    }

    /// The feed's physical ranges now.
    pub fn physical_ranges(&self) -> Vec<String> {
        self.state().ranges.iter().map(|(min, max)| label(min, max)).collect()
    }

    /// The physical range a stream's events are in.
    pub fn range_of(&self, stream_id: &str) -> String {
        let hash = hash(stream_id);
        let state = self.state();
        let (min, max) =
            state.ranges.iter().find(|(min, max)| (*min..*max).contains(&hash)).copied().unwrap_or_default();
        label(&min, &max)
    }

    /// Every event of a stream.
    pub fn events_of(&self, stream_id: &str) -> Vec<EventRecord> {
        self.state().streams.get(stream_id).map(|s| s.events.clone()).unwrap_or_default()
    }

    /// Every message sent through the store as a [`MessageProducer`].
    pub fn messages(&self) -> Vec<Message> {
        self.state().messages.clone()
    }

    fn fresh(&self, at: &Instant) -> bool {
        at.elapsed() < self.key_retention
    }
}

fn hash(stream_id: &str) -> u64 {
    // FNV-1a: stable across runs and platforms.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in stream_id.bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    u64::from(hash)
}

fn label(min: &u64, max: &u64) -> String {
    format!("{min:09x}-{max:09x}")
}

fn bounds(range: &str) -> Result<Bounds<u64>, StoreError> {
    let parse = |hex: &str| u64::from_str_radix(hex, 16).ok();
    match range.split_once('-').map(|(min, max)| (parse(min), parse(max))) {
        Some((Some(min), Some(max))) if min < max => Ok((min, max)),
        _ => Err(StoreError::Corrupt(format!("not a feed range: {range:?}"))),
    }
}

fn position(continuation: Option<&str>) -> Result<u64, StoreError> {
    continuation
        .map_or(Ok(0), |text| text.parse().map_err(|_| StoreError::Corrupt(format!("not a position: {text:?}"))))
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn load(&self, stream_id: &str, idempotency_key: Option<&str>) -> Result<Loaded, StoreError> {
        let state = self.state();
        let stream = state.streams.get(stream_id);
        let prior = idempotency_key
            .and_then(|key| stream?.records.get(key))
            .filter(|(_, at)| self.fresh(at))
            .map(|(record, _)| record.clone());
        Ok(Loaded { tip: stream.and_then(|s| s.tip.clone()), prior })
    }

    async fn append(&self, append: Append) -> Result<AppendOutcome, StoreError> {
        let mut state = self.state();
        let stream = state.streams.entry(append.stream_id.clone()).or_default();
        for record in &append.idempotency {
            if let Some((prior, _)) = stream.records.get(&record.key).filter(|(_, at)| self.fresh(at)) {
                return Ok(AppendOutcome::Duplicate(prior.clone()));
            }
        }
        let actual = stream.tip.as_ref().map_or(0, |tip| tip.version);
        let losing = state.conflicts.get_mut(&append.stream_id).filter(|times| **times > 0);
        if let Some(times) = losing {
            *times -= 1;
            return Ok(AppendOutcome::WrongVersion { actual });
        }
        if actual != append.expected_version {
            return Ok(AppendOutcome::WrongVersion { actual });
        }
        let stream = state.streams.entry(append.stream_id.clone()).or_default();
        for (i, event) in append.events.iter().enumerate() {
            if event.index != actual + i as u64 || event.stream_id != append.stream_id {
                return Err(StoreError::Corrupt(format!("event {} does not follow {}", event.index, append.stream_id)));
            }
        }
        let version = actual + append.events.len() as u64;
        stream.tip = Some(Tip { version, state: append.state });
        stream.events.extend(append.events.iter().cloned());
        for record in append.idempotency {
            stream.records.insert(record.key.clone(), (record, Instant::now()));
        }
        state.log.extend(append.events);
        let head = state.log.len() as u64;
        drop(state);
        self.head.send_replace(head);
        Ok(AppendOutcome::Appended { version })
    }

    async fn read_stream(&self, stream_id: &str, from_index: u64, max: usize) -> Result<Vec<EventRecord>, StoreError> {
        let state = self.state();
        let Some(stream) = state.streams.get(stream_id) else {
            return Ok(Vec::new());
        };
        Ok(crate::archive::merge(stream.archived.clone(), stream.events.clone(), from_index, max))
    }

    async fn claim(&self, claim: &KeyClaim) -> Result<Option<KeyClaim>, StoreError> {
        let mut state = self.state();
        if let Some((earlier, _)) = state.claims.get(&claim.key).filter(|(_, at)| self.fresh(at)) {
            return Ok(Some(earlier.clone()));
        }
        state.claims.insert(claim.key.clone(), (claim.clone(), Instant::now()));
        Ok(None)
    }

    async fn stream_ids(&self, after: Option<&str>, max: usize) -> Result<StreamIds, StoreError> {
        let state = self.state();
        let mut ids: Vec<String> = state
            .streams
            .iter()
            .filter(|(id, stream)| stream.tip.is_some() && after.is_none_or(|after| id.as_str() > after))
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids.truncate(max);
        Ok(StreamIds::in_id_order(ids, max))
    }
}

impl MemoryStore {
    /// [`Archive::archivable`]'s read models, unsorted, with their time.
    fn candidates(&self, before: DateTime<Utc>, closed: ClosedWhen) -> Vec<(ArchiveCandidate, DateTime<Utc>)> {
        let state = self.state();
        state
            .snapshots
            .values()
            .filter(|s| s.customer_id.is_some() && s.updated_at < before)
            .filter(|s| s.state.get(closed.field).and_then(|v| v.as_str()).is_some_and(|v| closed.values.contains(&v)))
            .filter(|s| state.archived_through.get(&s.stream_id).copied().unwrap_or(0) < s.version.saturating_sub(1))
            .map(|s| (ArchiveCandidate { stream_id: s.stream_id.clone(), version: s.version }, s.updated_at))
            .collect()
    }
}

/// The change feed keeps archived events: its positions are places in the log.
#[async_trait]
impl Archive for MemoryStore {
    async fn archivable(
        &self,
        before: DateTime<Utc>,
        closed: ClosedWhen,
        limit: usize,
    ) -> Result<Vec<ArchiveCandidate>, StoreError> {
        let mut found = self.candidates(before, closed);
        found.sort_by_key(|(_, updated_at)| *updated_at);
        Ok(found.into_iter().take(limit).map(|(candidate, _)| candidate).collect())
    }

    async fn count_archivable(&self, before: DateTime<Utc>, closed: ClosedWhen) -> Result<u64, StoreError> {
        Ok(self.candidates(before, closed).len() as u64)
    }

    async fn archive(&self, streams: &[(String, u64)]) -> Result<Vec<u64>, StoreError> {
        let mut state = self.state();
        let mut moved = Vec::new();
        for (stream_id, through) in streams {
            let Some(stream) = state.streams.get_mut(stream_id) else {
                moved.push(0);
                continue;
            };
            let (archived, hot): (Vec<_>, Vec<_>) = stream.events.drain(..).partition(|e| e.index < *through);
            moved.push(archived.len() as u64);
            stream.archived.extend(archived);
            stream.events = hot;
            state.archived_through.insert(stream_id.clone(), *through);
        }
        Ok(moved)
    }
}

#[async_trait]
impl ChangeFeed for MemoryStore {
    async fn layout(&self, held: &[FeedPosition]) -> Result<Vec<PlannedRange>, StoreError> {
        let held = held.iter().map(|p| Ok((bounds(&p.range)?, p.clone()))).collect::<Result<Vec<_>, StoreError>>()?;
        Ok(refine(&self.state().ranges, &held, label))
    }

    async fn start(&self, range: &str, from: StartFrom) -> Result<String, StoreError> {
        let (min, max) = bounds(range)?;
        let state = self.state();
        let in_range = |e: &&EventRecord| (min..max).contains(&hash(&e.stream_id));
        let after = match from {
            StartFrom::Beginning => 0,
            StartFrom::Now if !state.log.iter().any(|e| in_range(&e)) => 0,
            StartFrom::Now => state.log.len(),
            StartFrom::Time(time) => state.log.iter().take_while(|e| e.time < time).count(),
        };
        Ok(after.to_string())
    }

    async fn read(&self, range: &str, continuation: Option<&str>, max: usize) -> Result<FeedPage, StoreError> {
        let (min, max_hash) = bounds(range)?;
        let after = position(continuation)?;
        let state = self.state();
        let mut events = Vec::new();
        let mut last = after;
        for (i, event) in state.log.iter().enumerate().skip(after as usize) {
            if events.len() >= max {
                break;
            }
            if (min..max_hash).contains(&hash(&event.stream_id)) {
                events.push(event.clone());
                last = i as u64 + 1;
            }
        }
        Ok(FeedPage { moved: !events.is_empty(), events, continuation: Some(last.to_string()) })
    }

    async fn wait_for_changes(&self, positions: &[FeedPosition], timeout: Duration) {
        let mut head = self.head.subscribe();
        let after = positions.iter().filter_map(|p| position(p.continuation.as_deref()).ok()).min().unwrap_or(0);
        if *head.borrow_and_update() > after {
            return;
        }
        let _ = tokio::time::timeout(timeout, head.changed()).await;
    }
}

#[async_trait]
impl LeaseStore for MemoryStore {
    async fn leases(&self, consumer: &str) -> Result<Vec<Versioned<Lease>>, StoreError> {
        let state = self.state();
        let mut leases: Vec<_> = state.leases.values().filter(|l| l.value.consumer == consumer).cloned().collect();
        leases.sort_by(|a, b| a.value.range.cmp(&b.value.range));
        Ok(leases)
    }

    async fn lease(&self, consumer: &str, range: &str) -> Result<Option<Versioned<Lease>>, StoreError> {
        Ok(self.state().leases.get(&(consumer.to_string(), range.to_string())).cloned())
    }

    async fn put(&self, lease: &Lease, version: Option<&str>) -> Result<Option<String>, StoreError> {
        let mut state = self.state();
        if state.lease_writes_fail {
            return Err(StoreError::Unavailable("lease writes fail (test)".into()));
        }
        let id = (lease.consumer.clone(), lease.range.clone());
        if state.leases.get(&id).map(|l| l.version.as_str()) != version {
            return Ok(None);
        }
        state.lease_writes += 1;
        let version = state.lease_writes.to_string();
        state.leases.insert(id, Versioned { value: lease.clone(), version: version.clone() });
        Ok(Some(version))
    }

    async fn delete(&self, consumer: &str, range: &str, version: Option<&str>) -> Result<bool, StoreError> {
        let mut state = self.state();
        if state.lease_writes_fail {
            return Err(StoreError::Unavailable("lease writes fail (test)".into()));
        }
        let id = (consumer.to_string(), range.to_string());
        match state.leases.get(&id) {
            Some(stored) if version.is_none_or(|v| v == stored.version) => {
                state.leases.remove(&id);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn heartbeat(&self, instance: &str) -> Result<(), StoreError> {
        let lease = Lease::heartbeat(instance);
        let mut state = self.state();
        state.lease_writes += 1;
        let version = state.lease_writes.to_string();
        state.leases.insert((HEARTBEAT.into(), instance.into()), Versioned { value: lease, version });
        Ok(())
    }
}

#[async_trait]
impl SnapshotStore for MemoryStore {
    async fn get_many(&self, stream_ids: &[String]) -> Result<HashMap<String, Snapshot>, StoreError> {
        let state = self.state();
        Ok(stream_ids.iter().filter_map(|id| state.snapshots.get(id).map(|s| (id.clone(), s.clone()))).collect())
    }

    async fn put(&self, snapshots: Vec<Snapshot>) -> Result<(), StoreError> {
        let mut state = self.state();
        for snapshot in snapshots {
            if state.snapshots.get(&snapshot.stream_id).is_none_or(|stored| stored.version < snapshot.version) {
                state.snapshots.insert(snapshot.stream_id.clone(), snapshot);
            }
        }
        Ok(())
    }

    async fn by_customer(&self, customer_id: &str, limit: usize) -> Result<Vec<Snapshot>, StoreError> {
        let state = self.state();
        let mut found: Vec<_> =
            state.snapshots.values().filter(|s| s.customer_id.as_deref() == Some(customer_id)).cloned().collect();
        found.sort_by_key(|s| std::cmp::Reverse(s.updated_at));
        found.truncate(limit);
        Ok(found)
    }

    async fn recent_orders(&self, limit: usize) -> Result<Vec<Snapshot>, StoreError> {
        let state = self.state();
        let mut found: Vec<_> = state.snapshots.values().filter(|s| s.customer_id.is_some()).cloned().collect();
        found.sort_by_key(|s| std::cmp::Reverse(s.updated_at));
        found.truncate(limit);
        Ok(found)
    }
}

#[async_trait]
impl Refusals for MemoryStore {
    async fn record(&self, refusal: &RefusedReaction) -> Result<(), StoreError> {
        self.state().refusals.entry(refusal.id.clone()).or_insert_with(|| refusal.clone());
        Ok(())
    }

    async fn latest(&self, limit: usize) -> Result<(Vec<RefusedReaction>, u64), StoreError> {
        let state = self.state();
        let mut all: Vec<_> = state.refusals.values().cloned().collect();
        all.sort_by_key(|r| std::cmp::Reverse(r.time));
        let count = all.len() as u64;
        all.truncate(limit);
        Ok((all, count))
    }
}

#[async_trait]
impl Parking for MemoryStore {
    async fn parked(&self, consumer: Option<&str>) -> Result<Vec<Versioned<ParkedStream>>, StoreError> {
        let state = self.state();
        Ok(state.parked.values().filter(|p| consumer.is_none_or(|c| p.value.consumer == c)).cloned().collect())
    }

    async fn put_parked(&self, parked: &ParkedStream, version: Option<&str>) -> Result<Option<String>, StoreError> {
        let mut state = self.state();
        let id = (parked.consumer.clone(), parked.stream_id.clone());
        if state.parked.get(&id).map(|p| p.version.as_str()) != version {
            return Ok(None);
        }
        state.lease_writes += 1;
        let version = state.lease_writes.to_string();
        state.parked.insert(id, Versioned { value: parked.clone(), version: version.clone() });
        Ok(Some(version))
    }

    async fn unpark(&self, consumer: &str, stream_id: &str, version: &str) -> Result<bool, StoreError> {
        let mut state = self.state();
        let id = (consumer.to_string(), stream_id.to_string());
        if state.parked.get(&id).is_some_and(|p| p.version == version) {
            state.parked.remove(&id);
            return Ok(true);
        }
        Ok(false)
    }
}

#[async_trait]
impl Timers for MemoryStore {
    async fn schedule(&self, timers: Vec<Timer>) -> Result<(), StoreError> {
        let mut state = self.state();
        for timer in timers {
            state.timers.entry((timer.stream_id.clone(), timer.name.clone())).or_insert(timer);
        }
        Ok(())
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Timer>, StoreError> {
        let (mut due, _) = self.pending(usize::MAX).await?;
        due.retain(|timer| timer.due_at <= now);
        due.truncate(limit);
        Ok(due)
    }

    async fn complete(&self, stream_id: &str, name: &str) -> Result<(), StoreError> {
        self.state().timers.remove(&(stream_id.to_string(), name.to_string()));
        Ok(())
    }

    async fn pending(&self, limit: usize) -> Result<(Vec<Timer>, u64), StoreError> {
        let mut all: Vec<Timer> = self.state().timers.values().cloned().collect();
        all.sort_by_key(|timer| timer.due_at);
        let count = all.len() as u64;
        all.truncate(limit);
        Ok((all, count))
    }
}

#[async_trait]
impl MessageProducer for MemoryStore {
    async fn send(&self, messages: Vec<Message>) -> Result<(), StoreError> {
        self.state().messages.extend(messages);
        Ok(())
    }
}
