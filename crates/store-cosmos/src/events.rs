//! The event store on the `events` container.

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::http::Etag;
use azure_data_cosmos::models::TransactionalBatch;
use azure_data_cosmos::options::{BatchReplaceOptions, ItemReadOptions, Precondition};
use azure_data_cosmos::{FeedScope, Query};
use orderflow_pipeline::ports::{Append, AppendOutcome, EventRecord, EventStore, IdempotencyRecord, Loaded, Tip};
use orderflow_pipeline::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{status, unavailable, CosmosStore};

/// Idempotency keys kept in a tip: a redelivery older than the last this
/// many commands on the stream is no longer recognised.
pub const KEYS_IN_TIP: usize = 100;

/// The tip document: the stream's version, its folded state and its recent
/// idempotency records. `kind` tells it apart from events on the change feed.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TipDoc {
    pub id: String,
    pub stream_id: String,
    pub kind: String,
    pub version: u64,
    pub state: Value,
    #[serde(default)]
    pub keys: Vec<IdempotencyRecord>,
}

pub const TIP_ID: &str = "tip";
pub const TIP_KIND: &str = "tip";

/// An event document: the record plus its `id` (the index, so that a second
/// writer of the same index fails with 409).
#[derive(Serialize, Deserialize)]
pub struct EventDoc {
    pub id: String,
    #[serde(flatten)]
    pub record: EventRecord,
}

/// A tip as last seen, with its ETag.
pub struct CachedTip {
    pub doc: TipDoc,
    pub etag: Option<Etag>,
}

/// Tips this process read or wrote, for `If-None-Match` reads and for the
/// `If-Match` of the next append.
pub struct TipCache {
    tips: quick_cache::sync::Cache<String, Arc<CachedTip>>,
}

impl TipCache {
    pub fn new(capacity: usize) -> Self {
        TipCache { tips: quick_cache::sync::Cache::new(capacity) }
    }
}

impl CosmosStore {
    /// The stream's tip: a point read, 304 (cheap) when the cached ETag
    /// still matches. `None` for a stream with no events.
    async fn read_tip(&self, stream_id: &str) -> Result<Option<Arc<CachedTip>>, StoreError> {
        let cached = self.inner.tips.tips.get(stream_id);
        let options = cached
            .as_ref()
            .and_then(|c| c.etag.clone())
            .map(|etag| ItemReadOptions::default().with_precondition(Precondition::IfNoneMatch(etag)));
        let read = self.inner.events.read_item(stream_id.to_string(), TIP_ID, options).await;
        match &read {
            Ok(response) => self.inner.units.record_response("read-tip", response.headers()),
            Err(_) => self.inner.units.record("read-tip", 1.0),
        }
        match read {
            Ok(response) if u16::from(response.status().status_code()) == 304 => Ok(cached),
            Ok(response) => {
                let etag = response.headers().etag().cloned();
                let doc: TipDoc = response.into_model().map_err(|e| StoreError::Corrupt(format!("tip: {e}")))?;
                let tip = Arc::new(CachedTip { doc, etag });
                self.inner.tips.tips.insert(stream_id.to_string(), tip.clone());
                Ok(Some(tip))
            }
            Err(error) if status(&error) == 304 => Ok(cached),
            Err(error) if status(&error) == 404 => {
                self.inner.tips.tips.remove(stream_id);
                Ok(None)
            }
            Err(error) => Err(unavailable(error)),
        }
    }
}

#[async_trait]
impl EventStore for CosmosStore {
    async fn load(&self, stream_id: &str, idempotency_key: Option<&str>) -> Result<Loaded, StoreError> {
        let tip = self.read_tip(stream_id).await?;
        let prior = idempotency_key
            .and_then(|key| tip.as_ref().and_then(|t| t.doc.keys.iter().find(|k| k.key == key).cloned()));
        Ok(Loaded { tip: tip.map(|t| Tip { version: t.doc.version, state: t.doc.state.clone() }), prior })
    }

    async fn append(&self, append: Append) -> Result<AppendOutcome, StoreError> {
        // The tip the events were decided on: the cached one if it is at that
        // version (the batch's If-Match checks it is still current), else read.
        let cached = self.inner.tips.tips.get(&append.stream_id).filter(|t| t.doc.version == append.expected_version);
        let current = match cached {
            Some(tip) => Some(tip),
            None => self.read_tip(&append.stream_id).await?,
        };
        let actual = current.as_ref().map_or(0, |t| t.doc.version);
        if let Some(record) = &append.idempotency {
            if let Some(prior) = current.as_ref().and_then(|t| t.doc.keys.iter().find(|k| k.key == record.key)) {
                return Ok(AppendOutcome::Duplicate(prior.clone()));
            }
        }
        if actual != append.expected_version {
            return Ok(AppendOutcome::WrongVersion { actual });
        }
        if append.events.len() + 1 > 100 {
            return Err(StoreError::Corrupt(format!("{} events exceed one batch", append.events.len())));
        }
        let version = append.expected_version + append.events.len() as u64;
        let mut keys = current.as_ref().map(|t| t.doc.keys.clone()).unwrap_or_default();
        keys.extend(append.idempotency.clone());
        if keys.len() > KEYS_IN_TIP {
            keys.drain(..keys.len() - KEYS_IN_TIP);
        }
        let tip = TipDoc {
            id: TIP_ID.into(),
            stream_id: append.stream_id.clone(),
            kind: TIP_KIND.into(),
            version,
            state: append.state,
            keys,
        };
        let corrupt = |e: azure_data_cosmos::CosmosError| StoreError::Corrupt(format!("batch: {e}"));
        let mut batch = TransactionalBatch::new(append.stream_id.clone());
        for record in append.events {
            batch = batch.create_item(EventDoc { id: record.index.to_string(), record }).map_err(corrupt)?;
        }
        batch = match current.as_ref() {
            None => batch.create_item(&tip).map_err(corrupt)?,
            Some(current) => {
                let options = current
                    .etag
                    .clone()
                    .map(|etag| BatchReplaceOptions::default().with_precondition(Precondition::IfMatch(etag)));
                batch.replace_item(TIP_ID, &tip, options).map_err(corrupt)?
            }
        };
        let response = self.inner.events.execute_transactional_batch(batch, None).await.map_err(unavailable)?;
        let results = response.into_model().map_err(|e| StoreError::Unavailable(format!("batch answer: {e}")))?;
        let units = results.results().iter().filter_map(|r| r.request_charge()).sum();
        self.inner.units.record("append-batch", units);
        let statuses: Vec<u16> = results.results().iter().map(|r| r.status_code()).collect();
        if statuses.iter().all(|s| (200..300).contains(s)) {
            let etag = results.results().last().and_then(|r| r.etag()).map(Etag::from);
            self.inner.tips.tips.insert(tip.stream_id.clone(), Arc::new(CachedTip { doc: tip, etag }));
            return Ok(AppendOutcome::Appended { version });
        }
        self.inner.tips.tips.remove(&tip.stream_id);
        if statuses.iter().any(|s| *s == 409 || *s == 412) {
            // Another writer moved the stream first; nothing of this batch was stored.
            let actual = self.read_tip(&tip.stream_id).await?.map_or(0, |t| t.doc.version);
            return Ok(AppendOutcome::WrongVersion { actual });
        }
        Err(StoreError::Unavailable(format!("batch refused: statuses {statuses:?}")))
    }

    async fn read_stream(&self, stream_id: &str, from_index: u64, max: usize) -> Result<Vec<EventRecord>, StoreError> {
        let query = Query::from("SELECT * FROM c WHERE c.streamId = @stream AND c.index >= @from")
            .with_parameter("@stream", stream_id)
            .and_then(|q| q.with_parameter("@from", from_index))
            .map_err(|e| StoreError::Corrupt(format!("query: {e}")))?;
        let scope = FeedScope::partition(stream_id.to_string());
        let docs: Vec<Value> = self.query_all("query-stream", &self.inner.events, query, scope).await?;
        let mut events = docs
            .into_iter()
            .filter(|doc| doc.get("kind").is_none())
            .map(|doc| serde_json::from_value::<EventDoc>(doc).map(|d| d.record))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Corrupt(format!("event document: {e}")))?;
        events.sort_by_key(|e| e.index);
        events.truncate(max);
        Ok(events)
    }
}
