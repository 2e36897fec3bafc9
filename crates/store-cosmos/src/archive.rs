//! The archive on the `archive` container: one document per archived piece
//! of a stream (`id` = its first and last index), in the stream's partition
//! key, its events deflated together; nothing indexed, since it is only
//! ever read a whole partition at a time.
//!
//! Archiving writes the piece (an upsert: a piece is the same whoever
//! writes it), then deletes the events from `events` — deletes never reach
//! the change feed, so no consumer sees anything of it — and notes
//! `archivedThrough` on the read model (a conditional replace; the
//! projector's next write of the read model drops the note, and with it the
//! stream comes up again as a candidate for what it took since).

use std::borrow::Cow;

use async_trait::async_trait;
use azure_data_cosmos::models::TransactionalBatch;
use azure_data_cosmos::options::{ItemWriteOptions, Precondition};
use azure_data_cosmos::{FeedScope, Query};
use base64::Engine;
use chrono::{DateTime, Utc};
use futures::{stream, StreamExt, TryStreamExt};
use orderflow_pipeline::archive::{pack, unpack};
use orderflow_pipeline::ports::{Archive, ArchiveCandidate, ClosedWhen, EventRecord};
use orderflow_pipeline::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::events::{event_doc_id, event_of_document};
use crate::{status, unavailable, CosmosStore};

/// Streams archived at the same time.
const CONCURRENCY: usize = 16;

/// Deletes per transactional batch (the service's limit).
const BATCH: usize = 100;

/// Events per archived piece: well inside a document's 2 MB.
const PIECE: usize = 500;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PieceDoc {
    id: String,
    stream_id: String,
    first: u64,
    last: u64,
    /// The events, JSON deflated, in base64.
    events: String,
}

/// What the query for candidates reads of a read model.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CandidateDoc {
    id: String,
    version: u64,
    updated_at: DateTime<Utc>,
}

impl CosmosStore {
    /// The archived events of a stream (all of them: the pieces of one
    /// stream are few).
    pub(crate) async fn archived_events(&self, stream_id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let scope = FeedScope::partition(stream_id.to_string());
        let query = Query::from("SELECT * FROM c");
        let pieces: Vec<PieceDoc> = self.query_all("query-archive", &self.inner.archive, query, scope).await?;
        let mut events = Vec::new();
        for piece in pieces {
            let packed = base64::engine::general_purpose::STANDARD
                .decode(&piece.events)
                .map_err(|e| StoreError::Corrupt(format!("archived piece {} of {stream_id}: {e}", piece.id)))?;
            events.extend(unpack(&packed)?);
        }
        Ok(events)
    }

    /// Archives one stream's events below `through`; how many left `events`.
    async fn archive_stream(&self, stream_id: &str, through: u64) -> Result<u64, StoreError> {
        let query = Query::from("SELECT * FROM c WHERE c.streamId = @stream AND c.index < @through")
            .with_parameter("@stream", stream_id)
            .and_then(|q| q.with_parameter("@through", through))
            .map_err(|e| StoreError::Corrupt(format!("query: {e}")))?;
        let scope = FeedScope::partition(stream_id.to_string());
        let docs: Vec<Value> = self.query_all("query-stream", &self.inner.events, query, scope).await?;
        let mut events = Vec::with_capacity(docs.len());
        for doc in docs {
            events.extend(event_of_document(doc).map_err(|e| StoreError::Corrupt(format!("event document: {e}")))?);
        }
        events.sort_by_key(|e| e.index);
        for piece in events.chunks(PIECE) {
            let (Some(first), Some(last)) = (piece.first(), piece.last()) else { continue };
            let doc = PieceDoc {
                id: format!("{}-{}", event_doc_id(first.index), event_doc_id(last.index)),
                stream_id: stream_id.to_string(),
                first: first.index,
                last: last.index,
                events: base64::engine::general_purpose::STANDARD.encode(pack(piece)?),
            };
            let written = self.inner.archive.upsert_item(stream_id.to_string(), &doc.id, &doc, None).await;
            self.inner.units.record_response("write-archive", written.map_err(unavailable)?.headers());
        }
        let ids: Vec<String> = events.iter().map(|e| event_doc_id(e.index)).collect();
        for ids in ids.chunks(BATCH) {
            self.delete_events(stream_id, ids).await?;
        }
        self.note_archived(stream_id, through).await?;
        Ok(events.len() as u64)
    }

    /// Deletes event documents in one batch, or one by one when another
    /// archiver deleted some of them first (the batch then fails whole).
    async fn delete_events(&self, stream_id: &str, ids: &[String]) -> Result<(), StoreError> {
        let batch = ids.iter().fold(TransactionalBatch::new(stream_id.to_string()), |batch, id| {
            batch.delete_item(Cow::Owned(id.clone()), None)
        });
        let response = self.inner.events.execute_transactional_batch(batch, None).await.map_err(unavailable)?;
        let results = response.into_model().map_err(|e| StoreError::Unavailable(format!("batch answer: {e}")))?;
        self.inner.units.record("archive-delete", results.results().iter().filter_map(|r| r.request_charge()).sum());
        if results.results().iter().all(|r| (200..300).contains(&r.status_code())) {
            return Ok(());
        }
        for id in ids {
            match self.inner.events.delete_item(stream_id.to_string(), id, None).await {
                Ok(response) => self.inner.units.record_response("archive-delete", response.headers()),
                Err(error) if status(&error) == 404 => {}
                Err(error) => return Err(unavailable(error)),
            }
        }
        Ok(())
    }

    /// Notes on the read model that its stream is archived through
    /// `through`; left for the next run when the projector wrote it meanwhile.
    async fn note_archived(&self, stream_id: &str, through: u64) -> Result<(), StoreError> {
        let read = match self.inner.snapshots.read_item(stream_id.to_string(), stream_id, None).await {
            Ok(read) => read,
            Err(error) if status(&error) == 404 => return Ok(()),
            Err(error) => return Err(unavailable(error)),
        };
        self.inner.units.record_response("read-snapshot", read.headers());
        let etag = read.headers().etag().cloned();
        let mut doc: Value = read.into_model().map_err(|e| StoreError::Corrupt(format!("snapshot: {e}")))?;
        if doc.get("archivedThrough").and_then(Value::as_u64).is_some_and(|noted| noted >= through) {
            return Ok(());
        }
        doc["archivedThrough"] = through.into();
        let options = etag.map(|etag| ItemWriteOptions::default().with_precondition(Precondition::IfMatch(etag)));
        match self.inner.snapshots.replace_item(stream_id.to_string(), stream_id, &doc, options).await {
            Ok(response) => self.inner.units.record_response("note-archived", response.headers()),
            Err(error) if matches!(status(&error), 404 | 412) => {}
            Err(error) => return Err(unavailable(error)),
        }
        Ok(())
    }
}

/// The query for read models to archive, selecting `select`.
fn candidates(select: &str, before: DateTime<Utc>, closed: ClosedWhen) -> Result<Query, StoreError> {
    let names: Vec<String> = (0..closed.values.len()).map(|i| format!("@closed{i}")).collect();
    let text = format!(
        "SELECT {select} FROM c WHERE IS_STRING(c.customerId) AND c.updatedAt < @before \
         AND c.state.{field} IN ({names}) \
         AND (NOT IS_DEFINED(c.archivedThrough) OR c.archivedThrough < c.version - 1)",
        field = closed.field,
        names = names.join(", ")
    );
    let mut query = Query::from(text).with_parameter("@before", before);
    for (name, value) in names.iter().zip(closed.values) {
        query = query.and_then(|q| q.with_parameter(name.as_str(), *value));
    }
    query.map_err(|e| StoreError::Corrupt(format!("query: {e}")))
}

#[async_trait]
impl Archive for CosmosStore {
    /// A cross-partition query of ids and versions (`/updatedAt/?`,
    /// `/archivedThrough/?` and the closed field are indexed), `TOP limit`
    /// of whichever partitions the SDK reads first, sorted here (the SDK
    /// runs no cross-partition ORDER BY).
    async fn archivable(
        &self,
        before: DateTime<Utc>,
        closed: ClosedWhen,
        limit: usize,
    ) -> Result<Vec<ArchiveCandidate>, StoreError> {
        let query = candidates(&format!("TOP {limit} c.id, c.version, c.updatedAt"), before, closed)?;
        let mut found: Vec<CandidateDoc> =
            self.query_all("query-archivable", &self.inner.snapshots, query, FeedScope::full_container()).await?;
        found.sort_by_key(|f| f.updated_at);
        Ok(found.into_iter().take(limit).map(|f| ArchiveCandidate { stream_id: f.id, version: f.version }).collect())
    }

    /// A one per read model, counted here (the SDK runs no cross-partition
    /// aggregate).
    async fn count_archivable(&self, before: DateTime<Utc>, closed: ClosedWhen) -> Result<u64, StoreError> {
        let query = candidates("VALUE 1", before, closed)?;
        let ones: Vec<u8> =
            self.query_all("query-archivable", &self.inner.snapshots, query, FeedScope::full_container()).await?;
        Ok(ones.len() as u64)
    }

    async fn archive(&self, streams: &[(String, u64)]) -> Result<Vec<u64>, StoreError> {
        stream::iter(streams.to_vec())
            .map(|(stream_id, through)| async move { self.archive_stream(&stream_id, through).await })
            .buffered(CONCURRENCY)
            .try_collect()
            .await
    }
}
