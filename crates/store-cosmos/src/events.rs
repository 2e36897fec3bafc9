//! The event store on the `events` container, and key claims on
//! `idempotency`.
//!
//! A stream's partition holds its event documents (`id` = the index,
//! zero-padded), its
//! tip (`kind: "tip"`: version and folded state) and one small document per
//! keyed command that changed it (`kind: "key"`: the answer, with a TTL of
//! the key retention), created in the same transactional batch as the
//! events — so a key is remembered exactly as long as the retention says,
//! however many other commands the stream takes meanwhile.

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::http::Etag;
use azure_data_cosmos::models::TransactionalBatch;
use azure_data_cosmos::options::{BatchReplaceOptions, ItemReadOptions, ItemWriteOptions, Precondition, QueryOptions};
use azure_data_cosmos::{FeedScope, Query};
use azure_data_cosmos_driver::models::ContinuationToken;
use futures::StreamExt;
use orderflow_pipeline::ports::{
    Append, AppendOutcome, EventRecord, EventStore, IdempotencyRecord, KeyClaim, Loaded, StreamIds, Tip,
    MAX_APPEND_ITEMS,
};
use orderflow_pipeline::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{page_size, status, unavailable, CosmosStore};

/// The tip document: the stream's version and its folded state. `kind` tells
/// it apart from events on the change feed.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TipDoc {
    pub id: String,
    pub stream_id: String,
    pub kind: String,
    pub version: u64,
    pub state: Value,
}

pub const TIP_ID: &str = "tip";
pub const TIP_KIND: &str = "tip";
const KEY_KIND: &str = "key";

/// What a keyed command answered, in its stream's partition.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyDoc {
    id: String,
    stream_id: String,
    kind: String,
    fingerprint: String,
    receipt: Value,
    /// Unix seconds; older than the retention means gone, even before the
    /// service's TTL deletes it.
    created_at: i64,
    /// Seconds until Cosmos DB deletes it.
    ttl: u32,
}

fn key_doc_id(key: &str) -> String {
    format!("key-{key}")
}

/// Which request a key that may name any stream was first used for.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimDoc {
    id: String,
    fingerprint: String,
    stream_id: String,
    created_at: i64,
    ttl: u32,
}

/// An event document: the record plus its `id` (the index, so that a second
/// writer of the same index fails with 409).
#[derive(Serialize, Deserialize)]
pub struct EventDoc {
    pub id: String,
    #[serde(flatten)]
    pub record: EventRecord,
}

impl EventDoc {
    pub fn of(record: &EventRecord) -> EventDoc {
        EventDoc { id: event_doc_id(record.index), record: record.clone() }
    }
}

/// The `id` of an event document: its index, zero-padded so that ids sort
/// as indexes do. The events of one command share one change-feed position
/// (LSN), and the order among them is not the service's promise (the SDK's
/// emulator orders them by id, as text: "10" before "9").
pub(crate) fn event_doc_id(index: u64) -> String {
    format!("{index:020}")
}

/// The event a document of `events` holds; `None` for the other documents
/// of a stream's partition (its tip, its idempotency records), which
/// change-feed consumers skip.
pub fn event_of_document(document: Value) -> Result<Option<EventRecord>, String> {
    if document.get("kind").is_some() {
        return Ok(None);
    }
    serde_json::from_value::<EventDoc>(document).map(|doc| Some(doc.record)).map_err(|e| e.to_string())
}

/// The events among change-feed documents, each stream's in index order:
/// a page of the feed (or a trigger's batch) may hold one command's events
/// in any order, since they share a change-feed position. Streams keep the
/// places they had in the page.
pub fn events_of_documents(documents: Vec<Value>) -> Result<Vec<EventRecord>, String> {
    let mut events = Vec::with_capacity(documents.len());
    for (position, document) in documents.into_iter().enumerate() {
        events.extend(event_of_document(document).map_err(|e| format!("document {position} is not an event: {e}"))?);
    }
    let places: Vec<String> = events.iter().map(|e| e.stream_id.clone()).collect();
    let mut by_stream: std::collections::HashMap<String, Vec<EventRecord>> = std::collections::HashMap::new();
    for event in events {
        by_stream.entry(event.stream_id.clone()).or_default().push(event);
    }
    for stream in by_stream.values_mut() {
        // Popped from the end: the highest index last.
        stream.sort_by_key(|e| std::cmp::Reverse(e.index));
    }
    Ok(places.iter().filter_map(|stream_id| by_stream.get_mut(stream_id).and_then(Vec::pop)).collect())
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

    /// Unix seconds before which records and claims no longer count.
    fn key_cutoff(&self) -> i64 {
        chrono::Utc::now().timestamp() - self.inner.key_retention.as_secs() as i64
    }

    fn key_ttl(&self) -> u32 {
        u32::try_from(self.inner.key_retention.as_secs()).unwrap_or(u32::MAX).max(1)
    }

    /// A stream's record of `key` and its ETag, fresh or past the retention.
    async fn read_key(&self, stream_id: &str, key: &str) -> Result<Option<(KeyDoc, Option<Etag>)>, StoreError> {
        match self.inner.events.read_item(stream_id.to_string(), &key_doc_id(key), None).await {
            Ok(response) => {
                self.inner.units.record_response("read-key", response.headers());
                let etag = response.headers().etag().cloned();
                let doc: KeyDoc = response.into_model().map_err(|e| StoreError::Corrupt(format!("key record: {e}")))?;
                Ok(Some((doc, etag)))
            }
            Err(error) if status(&error) == 404 => {
                self.inner.units.record("read-key", 1.0);
                Ok(None)
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    /// The stream's record of `key`, if younger than the retention.
    async fn fresh_key(&self, stream_id: &str, key: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let cutoff = self.key_cutoff();
        Ok(self
            .read_key(stream_id, key)
            .await?
            .map(|(doc, _)| doc)
            .filter(|doc| doc.created_at >= cutoff)
            .map(|doc| IdempotencyRecord { key: key.to_string(), fingerprint: doc.fingerprint, receipt: doc.receipt }))
    }
}

/// How a batch's key record goes in: created, or replacing one past the
/// retention that the service has not deleted yet.
enum KeyWrite {
    Create,
    ReplaceExpired(Option<Etag>),
}

#[async_trait]
impl EventStore for CosmosStore {
    async fn load(&self, stream_id: &str, idempotency_key: Option<&str>) -> Result<Loaded, StoreError> {
        let (tip, prior) = match idempotency_key {
            Some(key) => futures::try_join!(self.read_tip(stream_id), self.fresh_key(stream_id, key))?,
            None => (self.read_tip(stream_id).await?, None),
        };
        Ok(Loaded { tip: tip.map(|t| Tip { version: t.doc.version, state: t.doc.state.clone() }), prior })
    }

    async fn append(&self, append: Append) -> Result<AppendOutcome, StoreError> {
        if append.items() > MAX_APPEND_ITEMS {
            return Err(StoreError::Refused(format!(
                "{} events and {} keys in one append: a transactional batch takes at most {MAX_APPEND_ITEMS} items",
                append.events.len(),
                append.idempotency.len()
            )));
        }
        // The tip the events were decided on: the cached one if it is at that
        // version (the batch's If-Match checks it is still current), else read.
        let cached = self.inner.tips.tips.get(&append.stream_id).filter(|t| t.doc.version == append.expected_version);
        let current = match cached {
            Some(tip) => Some(tip),
            None => self.read_tip(&append.stream_id).await?,
        };
        let actual = current.as_ref().map_or(0, |t| t.doc.version);
        if actual != append.expected_version {
            return Ok(AppendOutcome::WrongVersion { actual });
        }
        let version = append.expected_version + append.events.len() as u64;
        let tip = TipDoc {
            id: TIP_ID.into(),
            stream_id: append.stream_id.clone(),
            kind: TIP_KIND.into(),
            version,
            state: append.state,
        };
        let keys: Vec<KeyDoc> = append
            .idempotency
            .iter()
            .map(|record| KeyDoc {
                id: key_doc_id(&record.key),
                stream_id: append.stream_id.clone(),
                kind: KEY_KIND.into(),
                fingerprint: record.fingerprint.clone(),
                receipt: record.receipt.clone(),
                created_at: chrono::Utc::now().timestamp(),
                ttl: self.key_ttl(),
            })
            .collect();
        let mut key_writes: Vec<KeyWrite> = keys.iter().map(|_| KeyWrite::Create).collect();
        loop {
            let corrupt = |e: azure_data_cosmos::CosmosError| StoreError::Corrupt(format!("batch: {e}"));
            let mut batch = TransactionalBatch::new(append.stream_id.clone());
            // The keys first: a repeat is told by its 409 before anything else.
            for (key, write) in keys.iter().zip(&key_writes) {
                batch = match write {
                    KeyWrite::Create => batch.create_item(key).map_err(corrupt)?,
                    KeyWrite::ReplaceExpired(etag) => {
                        let options = etag
                            .clone()
                            .map(|e| BatchReplaceOptions::default().with_precondition(Precondition::IfMatch(e)));
                        batch.replace_item(key.id.clone(), key, options).map_err(corrupt)?
                    }
                };
            }
            for record in &append.events {
                batch = batch.create_item(EventDoc::of(record)).map_err(corrupt)?;
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
            // Nothing of the batch was stored; the first failure says why
            // (the others answer 424).
            let failed = statuses.iter().position(|s| !(200..300).contains(s) && *s != 424);
            match failed {
                Some(i) if i < keys.len() => {
                    let record = &append.idempotency[i];
                    match self.read_key(&append.stream_id, &record.key).await? {
                        Some((earlier, _)) if earlier.created_at >= self.key_cutoff() => {
                            return Ok(AppendOutcome::Duplicate(IdempotencyRecord {
                                key: record.key.clone(),
                                fingerprint: earlier.fingerprint,
                                receipt: earlier.receipt,
                            }));
                        }
                        Some((_, etag)) => key_writes[i] = KeyWrite::ReplaceExpired(etag),
                        None => key_writes[i] = KeyWrite::Create,
                    }
                }
                Some(i) if matches!(statuses[i], 409 | 412) => {
                    // Another writer moved the stream first.
                    let actual = self.read_tip(&tip.stream_id).await?.map_or(0, |t| t.doc.version);
                    return Ok(AppendOutcome::WrongVersion { actual });
                }
                _ => return Err(StoreError::Unavailable(format!("batch refused: statuses {statuses:?}"))),
            }
        }
    }

    async fn read_stream(&self, stream_id: &str, from_index: u64, max: usize) -> Result<Vec<EventRecord>, StoreError> {
        let query = Query::from("SELECT * FROM c WHERE c.streamId = @stream AND c.index >= @from")
            .with_parameter("@stream", stream_id)
            .and_then(|q| q.with_parameter("@from", from_index))
            .map_err(|e| StoreError::Corrupt(format!("query: {e}")))?;
        let scope = FeedScope::partition(stream_id.to_string());
        let docs: Vec<Value> = self.query_all("query-stream", &self.inner.events, query, scope).await?;
        let mut events = Vec::with_capacity(docs.len());
        for doc in docs {
            if let Some(event) =
                event_of_document(doc).map_err(|e| StoreError::Corrupt(format!("event document: {e}")))?
            {
                events.push(event);
            }
        }
        events.sort_by_key(|e| e.index);
        // Only a stream whose first event here is not the one asked for
        // may have been archived.
        if events.first().is_some_and(|first| first.index == from_index) {
            events.truncate(max);
            return Ok(events);
        }
        let archived = self.archived_events(stream_id).await?;
        Ok(orderflow_pipeline::archive::merge(archived, events, from_index, max))
    }

    /// A cross-partition query of the tips, a page at a time; the position
    /// is the query's continuation token.
    async fn stream_ids(&self, after: Option<&str>, max: usize) -> Result<StreamIds, StoreError> {
        let query = Query::from("SELECT VALUE c.streamId FROM c WHERE c.id = @tip")
            .with_parameter("@tip", TIP_ID)
            .map_err(|e| StoreError::Corrupt(format!("query: {e}")))?;
        let mut options = QueryOptions::default().with_max_item_count(page_size(max));
        if let Some(token) = after {
            options = options.with_continuation_token(ContinuationToken::from_string(token.to_string()));
        }
        let mut pages = self
            .inner
            .events
            .query_items::<String>(query, FeedScope::full_container(), Some(options))
            .await
            .map_err(unavailable)?
            .into_pages();
        // Pages of some partitions may be empty: go on to one with ids.
        while let Some(page) = pages.next().await {
            let page = page.map_err(unavailable)?;
            self.inner.units.record_response("query-tips", page.headers());
            let ids = page.into_items();
            if !ids.is_empty() {
                let next = pages.to_continuation_token().map_err(unavailable)?.as_str().to_string();
                return Ok(StreamIds { ids, next: Some(next) });
            }
        }
        Ok(StreamIds::default())
    }

    async fn claim(&self, claim: &KeyClaim) -> Result<Option<KeyClaim>, StoreError> {
        let container = &self.inner.idempotency;
        let doc = ClaimDoc {
            id: claim.key.clone(),
            fingerprint: claim.fingerprint.clone(),
            stream_id: claim.stream_id.clone(),
            created_at: chrono::Utc::now().timestamp(),
            ttl: self.key_ttl(),
        };
        let id = doc.id.clone();
        let mut expired: Option<Option<Etag>> = None;
        loop {
            let written = match &expired {
                None => container.create_item(id.clone(), id.as_str(), &doc, None).await,
                Some(etag) => {
                    let options =
                        etag.clone().map(|e| ItemWriteOptions::default().with_precondition(Precondition::IfMatch(e)));
                    container.replace_item(id.clone(), id.as_str(), &doc, options).await
                }
            };
            match written {
                Ok(response) => {
                    self.inner.units.record_response("claim-key", response.headers());
                    return Ok(None);
                }
                Err(error) if matches!(status(&error), 409 | 412 | 404) => {}
                Err(error) => return Err(unavailable(error)),
            }
            // Claimed before: by a request within the retention, or past it.
            match container.read_item(id.clone(), id.as_str(), None).await {
                Ok(response) => {
                    self.inner.units.record_response("read-claim", response.headers());
                    let etag = response.headers().etag().cloned();
                    let earlier: ClaimDoc =
                        response.into_model().map_err(|e| StoreError::Corrupt(format!("key claim: {e}")))?;
                    if earlier.created_at >= self.key_cutoff() {
                        let ClaimDoc { fingerprint, stream_id, .. } = earlier;
                        return Ok(Some(KeyClaim { key: id, fingerprint, stream_id }));
                    }
                    expired = Some(etag);
                }
                Err(error) if status(&error) == 404 => expired = None,
                Err(error) => return Err(unavailable(error)),
            }
        }
    }
}
