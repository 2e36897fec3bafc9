//! The narrow ports every pipeline step is written against. An adapter (the
//! embedded SQLite store, Cosmos DB, the in-memory store of the tests, Kafka)
//! implements them; the steps never know which one they talk to.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// A failure of the infrastructure behind a port. Steps retry it (it is
/// transient, or a bug that blocks until fixed); it is never a reason to drop
/// a message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("unreadable data in store: {0}")]
    Corrupt(String),
    /// The store or topic will never take this write as it is (a message
    /// too large for a topic): retrying it unchanged cannot help.
    #[error("refused for good: {0}")]
    Refused(String),
}

impl StoreError {
    /// Whether trying again, unchanged, cannot help: data that does not
    /// read, a write refused for what it is. (An unavailable store may come
    /// back.)
    pub fn is_permanent(&self) -> bool {
        matches!(self, StoreError::Corrupt(_) | StoreError::Refused(_))
    }
}

/// How long idempotency records and key claims are kept unless configured
/// otherwise (setting `OrderflowIdempotencyRetention`): a message delivered
/// again within this window has no second effect, whatever else happened on
/// its stream meanwhile.
pub const DEFAULT_KEY_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// One event as the event store keeps it (and as `GET /api/orders/{id}/events`
/// and the change feed show it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    pub event_id: Uuid,
    pub stream_id: String,
    /// 0-based position in its stream.
    pub index: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The version of its type's shape `data` was written in (events stored
    /// before versions existed are version 1); reads bring it up to the
    /// current one (`orderflow_domain::contract`).
    #[serde(default = "first_schema_version")]
    pub schema_version: u32,
    pub data: Value,
    pub time: DateTime<Utc>,
    pub correlation_id: String,
    pub causation_id: String,
    /// The message (HTTP request, ingested CloudEvent, reaction) that caused it.
    pub message_id: String,
}

fn first_schema_version() -> u32 {
    1
}

/// The head of a stream: its version (the number of events in it) and the
/// state folded up to that version.
#[derive(Debug, Clone, PartialEq)]
pub struct Tip {
    pub version: u64,
    pub state: Value,
}

/// What the store remembers of a command that carried an idempotency key, in
/// the stream it changed, so that its retry answers the same without
/// deciding again. Kept for the store's key retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub key: String,
    /// A digest of the command's content: the same key with other content is refused.
    pub fingerprint: String,
    pub receipt: Value,
}

/// A key that may name any stream (an HTTP `Idempotency-Key`, a CloudEvent
/// `source` + `id`), bound to what its first use said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyClaim {
    pub key: String,
    pub fingerprint: String,
    /// The stream its first use targeted.
    pub stream_id: String,
}

pub struct Loaded {
    pub tip: Option<Tip>,
    /// The earlier command with the idempotency key asked about, if any.
    pub prior: Option<IdempotencyRecord>,
}

/// The most items one append writes — its events, its idempotency records
/// and the tip: a transaction holds at most 100 on Cosmos DB (a
/// transactional batch) and on DynamoDB (`TransactWriteItems`).
pub const MAX_APPEND_ITEMS: usize = 100;

pub struct Append {
    pub stream_id: String,
    /// The version the events were decided on; the append fails if the stream moved.
    pub expected_version: u64,
    pub events: Vec<EventRecord>,
    /// The state after the events: the new tip.
    pub state: Value,
    /// A record for each keyed command the events answer: one, or several
    /// when commands to the stream were decided in a row. If any of their
    /// keys is recorded already, nothing is written.
    pub idempotency: Vec<IdempotencyRecord>,
}

impl Append {
    /// What it writes, counted as [`MAX_APPEND_ITEMS`] counts.
    pub fn items(&self) -> usize {
        self.events.len() + self.idempotency.len() + 1
    }
}

#[derive(Debug)]
pub enum AppendOutcome {
    Appended {
        version: u64,
    },
    /// Another writer moved the stream first: decide again on the new state.
    WrongVersion {
        actual: u64,
    },
    /// A command with one of the append's idempotency keys was appended
    /// first: its record.
    Duplicate(IdempotencyRecord),
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// The stream's tip (one point read) and, with a key, whether a command
    /// with that key changed the stream within the key retention.
    async fn load(&self, stream_id: &str, idempotency_key: Option<&str>) -> Result<Loaded, StoreError>;
    /// Atomically appends the events, replaces the tip and records the
    /// idempotency records, or changes nothing. Durable when it returns
    /// `Appended`.
    async fn append(&self, append: Append) -> Result<AppendOutcome, StoreError>;
    /// Events of one stream from `from_index` on, in order, at most `max`
    /// (those moved to the [`Archive`] included).
    async fn read_stream(&self, stream_id: &str, from_index: u64, max: usize) -> Result<Vec<EventRecord>, StoreError>;
    /// Binds `claim.key` to `claim` for the key retention, unless a claim
    /// younger than that holds it: then that earlier claim. Durable when it
    /// returns.
    async fn claim(&self, claim: &KeyClaim) -> Result<Option<KeyClaim>, StoreError>;
    /// The ids of streams with events, a page at a time: at most `max` after
    /// the position `after` (`None`: from the first), in the store's own
    /// order. Every stream that existed when the listing began is listed
    /// once; the walk over all history, whatever the change feed still holds.
    async fn stream_ids(&self, after: Option<&str>, max: usize) -> Result<StreamIds, StoreError>;
}

/// A page of stream ids and where the listing goes on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamIds {
    pub ids: Vec<String>,
    /// The position after this page; `None` when every stream was listed.
    pub next: Option<String>,
}

impl StreamIds {
    /// A page of at most `max` ids listed in id order, where the last id is
    /// the position after it: a full page may have more after it.
    pub fn in_id_order(ids: Vec<String>, max: usize) -> StreamIds {
        let next = if ids.len() < max { None } else { ids.last().cloned() };
        StreamIds { ids, next }
    }
}

/// A page of the change feed: events in per-stream order, and where to go on.
pub struct FeedPage {
    pub events: Vec<EventRecord>,
    /// Where the next read starts; `None` when nothing was ever read.
    pub continuation: Option<String>,
    /// True when the read went past documents, even if none of them was an
    /// event (a Cosmos DB page can hold only tips): the continuation must be
    /// saved, or the consumer would read the same page forever.
    pub moved: bool,
}

/// How far a consumer has read one range.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedPosition {
    pub range: String,
    pub continuation: Option<String>,
}

/// A range to read, as [`ChangeFeed::layout`] plans it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRange {
    pub range: String,
    /// Where reading goes on: the held position of this range, or of the
    /// range it split from; `None` for a range no held position covers.
    pub continuation: Option<String>,
    /// The held range this one is a part of, when it split from it.
    pub split_from: Option<String>,
}

/// Where a consumer starts a feed range it has never read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// Every event the range ever held.
    Beginning,
    /// Only events committed from now on — or the beginning, when the range
    /// holds nothing yet, so that a new feed loses nothing.
    Now,
    /// Events committed at or after this time.
    Time(DateTime<Utc>),
}

/// Every committed event, in per-stream order, split into ranges that can be
/// read independently. Positions are opaque continuation strings.
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// The ranges to read, given the positions a consumer holds already
    /// (in ranges that may since have split or merged): each range with the
    /// position it goes on from. A range that none of `held` covers comes
    /// back with no position; a range that split comes back as its parts,
    /// each going on from the position of the range it split from. Ranges
    /// only ever get finer, so no position moves back.
    async fn layout(&self, held: &[FeedPosition]) -> Result<Vec<PlannedRange>, StoreError>;
    /// A position in `range` from which reading gives what `from` asks for.
    async fn start(&self, range: &str, from: StartFrom) -> Result<String, StoreError>;
    async fn read(&self, range: &str, continuation: Option<&str>, max: usize) -> Result<FeedPage, StoreError>;
    /// Returns when a range may have events after the given continuation
    /// (at once if it already has), or after `timeout`.
    async fn wait_for_changes(&self, positions: &[FeedPosition], timeout: Duration);
    /// How long the feed keeps an event, when less than the store keeps it
    /// (`None`: the feed holds every event the store holds). Older history
    /// is reached through [`EventStore::stream_ids`].
    fn retention(&self) -> Option<Duration> {
        None
    }
}

/// One consumer's lease on one feed range: how far it got, which process
/// handles the range, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub consumer: String,
    pub range: String,
    /// Where reading goes on; `None` for a range never started.
    pub continuation: Option<String>,
    pub owner: Option<String>,
    pub expires_at: DateTime<Utc>,
    /// A live process with fewer ranges than its share asked for this one;
    /// the owner hands it over between two batches.
    pub requested_by: Option<String>,
}

impl Lease {
    /// `instance`'s heartbeat, as [`LeaseStore::heartbeat`] keeps it.
    pub fn heartbeat(instance: &str) -> Lease {
        Lease {
            consumer: HEARTBEAT.into(),
            range: instance.into(),
            continuation: None,
            owner: Some(instance.into()),
            expires_at: Utc::now() + HEARTBEAT_RETENTION,
            requested_by: None,
        }
    }
}

/// A stored value and the version a conditional write of it must name.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: String,
}

/// Leases, stored: every write is conditional on the version last read, so
/// of two processes writing one lease exactly one succeeds. What the leases
/// mean (who takes which range when) is `consumers::leases`, written once.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Every lease of `consumer`.
    async fn leases(&self, consumer: &str) -> Result<Vec<Versioned<Lease>>, StoreError>;
    /// One lease, if it exists.
    async fn lease(&self, consumer: &str, range: &str) -> Result<Option<Versioned<Lease>>, StoreError>;
    /// Writes `lease` if the stored one is still at `version` (`None`: if
    /// there is none yet). The new version, or `None` when another writer
    /// came first and nothing was written.
    async fn put(&self, lease: &Lease, version: Option<&str>) -> Result<Option<String>, StoreError>;
    /// Deletes a lease if it is still at `version` (any version when
    /// `None`); false when it was not there or had moved on.
    async fn delete(&self, consumer: &str, range: &str, version: Option<&str>) -> Result<bool, StoreError>;
    /// Writes `instance`'s heartbeat (the readiness probe's proof that the
    /// store takes a write), unconditionally. Kept as the lease of consumer
    /// [`HEARTBEAT`], range `instance`, until [`HEARTBEAT_RETENTION`] after
    /// the last one: instances that are gone leave nothing behind for good.
    async fn heartbeat(&self, instance: &str) -> Result<(), StoreError>;
}

/// The consumer name of heartbeats among the leases.
pub const HEARTBEAT: &str = "heartbeat";

/// How long the heartbeat of an instance that stopped is kept.
pub const HEARTBEAT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A reaction the fulfillment policy derived from an event and its target
/// stream refused: kept for operators (`orderflow refused list`, the status
/// page), never retried by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedReaction {
    /// The reaction's idempotency key: recording it twice keeps one.
    pub id: String,
    pub time: DateTime<Utc>,
    /// The event it reacted to.
    pub event_id: Uuid,
    pub event_stream_id: String,
    pub event_index: u64,
    pub event_type: String,
    /// The command, and the stream that refused it.
    pub command: String,
    pub target_stream_id: String,
    /// The refusal's stable code (`invalid-status`) and its message.
    pub code: String,
    pub reason: String,
}

#[async_trait]
pub trait Refusals: Send + Sync {
    /// Records a refusal, durably; the same id again changes nothing.
    async fn record(&self, refusal: &RefusedReaction) -> Result<(), StoreError>;
    /// The latest refusals, newest first, and how many there are in all.
    async fn latest(&self, limit: usize) -> Result<(Vec<RefusedReaction>, u64), StoreError>;
}

/// A stream one change-feed consumer could not handle: the event it stopped
/// at and why. That event and every later one of the stream wait (in order)
/// until `orderflow parked retry` gets them through; the consumer goes on
/// with every other stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParkedStream {
    pub consumer: String,
    pub stream_id: String,
    /// The first event not handled.
    pub from_index: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub reason: String,
    pub parked_at: DateTime<Utc>,
    /// The highest index of the stream held back so far.
    pub held_through: u64,
    /// Retries that failed, and the last one's time.
    pub retries: u32,
    pub retried_at: Option<DateTime<Utc>>,
}

/// Parked streams, stored: every write is conditional on the version last
/// read (the consumer holding events back and a retry meet here).
#[async_trait]
pub trait Parking: Send + Sync {
    /// The streams parked for `consumer`, or for every consumer.
    async fn parked(&self, consumer: Option<&str>) -> Result<Vec<Versioned<ParkedStream>>, StoreError>;
    /// Writes it if the stored one is still at `version` (`None`: if there
    /// is none). The new version, or `None` when another writer came first.
    async fn put_parked(&self, parked: &ParkedStream, version: Option<&str>) -> Result<Option<String>, StoreError>;
    /// Deletes it if it is still at `version`; false when it moved on or is gone.
    async fn unpark(&self, consumer: &str, stream_id: &str, version: &str) -> Result<bool, StoreError>;
}

/// The read model of one stream, and the version of the stream it reflects.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub stream_id: String,
    pub version: u64,
    pub updated_at: DateTime<Utc>,
    /// Set for orders, so that a customer's orders can be listed.
    pub customer_id: Option<String>,
    pub state: Value,
}

#[async_trait]
pub trait SnapshotStore: Send + Sync {
    async fn get_many(&self, stream_ids: &[String]) -> Result<HashMap<String, Snapshot>, StoreError>;
    /// Writes each snapshot unless the store holds the same or a newer version.
    async fn put(&self, snapshots: Vec<Snapshot>) -> Result<(), StoreError>;
    /// The snapshots of one customer's orders, newest first.
    async fn by_customer(&self, customer_id: &str, limit: usize) -> Result<Vec<Snapshot>, StoreError>;
    /// The orders updated last, newest first (for the status page).
    async fn recent_orders(&self, limit: usize) -> Result<Vec<Snapshot>, StoreError>;

    async fn get(&self, stream_id: &str) -> Result<Option<Snapshot>, StoreError> {
        Ok(self.get_many(&[stream_id.to_string()]).await?.remove(stream_id))
    }
}

/// A deadline of one stream, stored with its due time until it has passed
/// and been handled (`orderflow deadlines list` shows them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timer {
    pub stream_id: String,
    /// Unique within the stream (`payment-1`): scheduling it again keeps one.
    pub name: String,
    pub due_at: DateTime<Utc>,
    /// What passes: the domain's deadline, as JSON.
    pub deadline: Value,
    /// The event that started it, and its trace.
    pub caused_by: Uuid,
    pub correlation_id: String,
}

/// Durable timers. Handling one is idempotent (the stream decides what a
/// passed deadline still means), so two processes that fire the same timer
/// have one effect between them.
#[async_trait]
pub trait Timers: Send + Sync {
    /// Stores timers, durably; one already stored under the same stream and
    /// name stays as it is.
    async fn schedule(&self, timers: Vec<Timer>) -> Result<(), StoreError>;
    /// Timers due at `now` or before, the earliest first, at most `limit`.
    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Timer>, StoreError>;
    /// Forgets a handled timer (nothing happens when it is gone already).
    async fn complete(&self, stream_id: &str, name: &str) -> Result<(), StoreError>;
    /// The stored timers, the earliest first, at most `limit`, and how many
    /// are stored in all.
    async fn pending(&self, limit: usize) -> Result<(Vec<Timer>, u64), StoreError>;
}

/// An order whose events may move to the archive: its read model was last
/// changed before the cut-off, and says the order is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveCandidate {
    pub stream_id: String,
    /// The version of the read model (the stream's, unless it lags).
    pub version: u64,
}

/// Which read models are of closed streams: those whose state's `field` is
/// one of `values` (the domain says which, see `OrderStatus::CLOSED`).
#[derive(Debug, Clone, Copy)]
pub struct ClosedWhen {
    pub field: &'static str,
    pub values: &'static [&'static str],
}

/// The archive beside the hot store. A stream's events before its last can
/// move there; [`EventStore::read_stream`] reads them from there as if they
/// had never moved, and the tip, the read model and the last event stay hot
/// (so commands, reads, customer lists and a replay of the feed work as
/// before).
#[async_trait]
pub trait Archive: Send + Sync {
    /// Read models last changed before `before` that `closed` matches and
    /// whose events before their last are not all archived yet, at most
    /// `limit`, the oldest first among those read (a store may take any
    /// `limit` of them: which ones go first does not matter).
    async fn archivable(
        &self,
        before: DateTime<Utc>,
        closed: ClosedWhen,
        limit: usize,
    ) -> Result<Vec<ArchiveCandidate>, StoreError>;
    /// How many read models [`Archive::archivable`] would list with no limit.
    async fn count_archivable(&self, before: DateTime<Utc>, closed: ClosedWhen) -> Result<u64, StoreError>;
    /// Moves each stream's events with an index below `through` from the
    /// hot store into the archive, durably copied before they are deleted,
    /// and notes it on the read model. Idempotent, and safe beside appends
    /// and beside another archiver. Returns how many events of each stream
    /// left the hot store.
    async fn archive(&self, streams: &[(String, u64)]) -> Result<Vec<u64>, StoreError>;
}

/// The store ports of one backing store (the embedded store, Cosmos DB, or
/// the in-memory store of the tests).
#[derive(Clone)]
pub struct Stores {
    pub events: Arc<dyn EventStore>,
    pub feed: Arc<dyn ChangeFeed>,
    pub leases: Arc<dyn LeaseStore>,
    pub snapshots: Arc<dyn SnapshotStore>,
    pub refusals: Arc<dyn Refusals>,
    pub parking: Arc<dyn Parking>,
    pub timers: Arc<dyn Timers>,
    pub archive: Arc<dyn Archive>,
}

impl Stores {
    /// All the ports from one adapter that implements them all.
    pub fn of<S>(store: Arc<S>) -> Stores
    where
        S: EventStore + ChangeFeed + LeaseStore + SnapshotStore + Refusals + Parking + Timers + Archive + 'static,
    {
        Stores {
            events: store.clone(),
            feed: store.clone(),
            leases: store.clone(),
            snapshots: store.clone(),
            refusals: store.clone(),
            parking: store.clone(),
            timers: store.clone(),
            archive: store,
        }
    }
}

/// A record on a topic, shaped as Kafka carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub key: Option<String>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub value: Vec<u8>,
}

#[async_trait]
pub trait MessageProducer: Send + Sync {
    /// Returns once every message is durably on its topic, each topic in the
    /// order given.
    async fn send(&self, messages: Vec<Message>) -> Result<(), StoreError>;
}

/// A message where it lies on its topic.
#[derive(Debug, Clone, PartialEq)]
pub struct OnTopic {
    pub partition: i32,
    pub offset: i64,
    pub message: Message,
}

/// Reading back what is on a topic, outside any consumer: the console's dead
/// letters.
#[async_trait]
pub trait TopicReader: Send + Sync {
    /// The newest messages of a topic: at most `per_partition` from each of
    /// its partitions.
    async fn latest(&self, topic: &str, per_partition: usize) -> Result<Vec<OnTopic>, StoreError>;

    /// The message at a place, if the topic still holds it.
    async fn at(&self, topic: &str, partition: i32, offset: i64) -> Result<Option<OnTopic>, StoreError>;
}
