//! The narrow ports every pipeline step is written against. An adapter (the
//! embedded SQLite store, Cosmos DB, Kafka) implements them; the steps never
//! know which one they talk to.

use std::collections::HashMap;
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
    /// Another process took over the lease of a change-feed range: this one
    /// leaves the range to it (see [`Checkpoints::acquire`]).
    #[error("lease lost: {0}")]
    LeaseLost(String),
}

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
    pub data: Value,
    pub time: DateTime<Utc>,
    pub correlation_id: String,
    pub causation_id: String,
    /// The message (HTTP request, ingested CloudEvent, reaction) that caused it.
    pub message_id: String,
}

/// The head of a stream: its version (the number of events in it) and the
/// state folded up to that version.
#[derive(Debug, Clone, PartialEq)]
pub struct Tip {
    pub version: u64,
    pub state: Value,
}

/// What the store remembers of a command that carried an idempotency key, so
/// that its retry answers the same without deciding again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub key: String,
    /// A digest of the command's content: the same key with other content is refused.
    pub fingerprint: String,
    pub receipt: Value,
}

pub struct Loaded {
    pub tip: Option<Tip>,
    /// The earlier command with the idempotency key asked about, if any.
    pub prior: Option<IdempotencyRecord>,
}

pub struct Append {
    pub stream_id: String,
    /// The version the events were decided on; the append fails if the stream moved.
    pub expected_version: u64,
    pub events: Vec<EventRecord>,
    /// The state after the events: the new tip.
    pub state: Value,
    pub idempotency: Option<IdempotencyRecord>,
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
    /// A command with the same idempotency key was appended first.
    Duplicate(IdempotencyRecord),
}

#[async_trait]
pub trait EventStore: Send + Sync {
    /// The stream's tip (one point read) and, with a key, whether it was seen.
    async fn load(&self, stream_id: &str, idempotency_key: Option<&str>) -> Result<Loaded, StoreError>;
    /// Atomically appends the events and replaces the tip, or changes nothing.
    /// Durable when it returns `Appended`.
    async fn append(&self, append: Append) -> Result<AppendOutcome, StoreError>;
    /// Events of one stream from `from_index` on, in order, at most `max`.
    async fn read_stream(&self, stream_id: &str, from_index: u64, max: usize) -> Result<Vec<EventRecord>, StoreError>;
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

/// Every committed event, in per-stream order, split into ranges that can be
/// read independently. Positions are opaque continuation strings.
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    async fn ranges(&self) -> Result<Vec<String>, StoreError>;
    async fn read(&self, range: &str, continuation: Option<&str>, max: usize) -> Result<FeedPage, StoreError>;
    /// Returns when a range may have events after the given continuation
    /// (at once if it already has), or after `timeout`.
    async fn wait_for_changes(&self, positions: &[FeedPosition], timeout: Duration);
}

/// Durable positions in the change feed, per consumer and range, held under
/// leases so that several processes can share the ranges of one feed.
#[async_trait]
pub trait Checkpoints: Send + Sync {
    async fn load(&self, consumer: &str, range: &str) -> Result<Option<String>, StoreError>;
    /// Saves how far `owner` got; [`StoreError::LeaseLost`] when another
    /// owner holds the range now (its position is kept).
    async fn save(&self, consumer: &str, range: &str, owner: &str, continuation: &str) -> Result<(), StoreError>;
    /// Drops the consumer's position in `range`: it starts from the beginning
    /// next time (a finished replay does this).
    async fn forget(&self, consumer: &str, range: &str) -> Result<(), StoreError>;
    /// The ranges `owner` processes until it asks again (well within `ttl`):
    /// renews the leases it holds, takes expired and unowned ones, and takes
    /// one from a busier owner when the live owners' shares are uneven. A
    /// store that only one process can open gives every range.
    async fn acquire(
        &self,
        _consumer: &str,
        _owner: &str,
        ranges: &[String],
        _ttl: Duration,
    ) -> Result<Vec<String>, StoreError> {
        Ok(ranges.to_vec())
    }
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

/// The store ports of one backing store (the embedded store or Cosmos DB).
#[derive(Clone)]
pub struct Stores {
    pub events: std::sync::Arc<dyn EventStore>,
    pub feed: std::sync::Arc<dyn ChangeFeed>,
    pub checkpoints: std::sync::Arc<dyn Checkpoints>,
    pub snapshots: std::sync::Arc<dyn SnapshotStore>,
}

impl Stores {
    /// All four ports from one adapter that implements them all.
    pub fn of<S: EventStore + ChangeFeed + Checkpoints + SnapshotStore + 'static>(store: std::sync::Arc<S>) -> Stores {
        Stores { events: store.clone(), feed: store.clone(), checkpoints: store.clone(), snapshots: store }
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
