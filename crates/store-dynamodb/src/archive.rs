//! The archive: table `{prefix}archive`, partition `p` (the stream id), sort
//! key `f` (a piece's first index), with its last index `l` and its events
//! deflated together (`z`, binary) — pieces well under an item's 400 KB.
//!
//! Archiving writes the pieces (a piece is the same whoever writes it), then
//! deletes the events from `events` — their removals reach the stream as
//! records with no new image, which the change feed skips — and notes on the
//! read model the version the stream was archived at (`a`, one more than
//! the last index moved). Candidates are the orders of the `recent` index
//! last changed before the cut-off whose note is missing or older than their
//! version (`a < n`); the projector's next write of the read model drops the
//! note, and the stream comes up again for what it took since.

use async_trait::async_trait;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{DeleteRequest, WriteRequest};
use chrono::{DateTime, Utc};
use futures::{stream, StreamExt, TryStreamExt};
use orderflow_pipeline::archive::{pack, unpack};
use orderflow_pipeline::ports::{Archive, ArchiveCandidate, ClosedWhen, EventRecord};
use orderflow_pipeline::StoreError;
use serde_json::Value;

use crate::snapshots::{sortable, ORDERS, RECENT};
use crate::{conditional, json_of, n, number, s, unavailable, DynamoStore, Item, Partition};

/// Streams archived at the same time.
const CONCURRENCY: usize = 16;
/// Deletes per `BatchWriteItem` (the service's limit).
const BATCH: usize = 25;
/// Packed bytes in one piece at most, well inside an item's 400 KB.
const PIECE_BYTES: usize = 300_000;

impl DynamoStore {
    /// The archived events of a stream (all of them: the pieces of one
    /// stream are few).
    pub(crate) async fn archived_events(&self, stream_id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let partition = Partition { table: &self.tables.archive, index: None, key: "p", value: stream_id };
        let mut events = Vec::new();
        for piece in self.all_of(&partition).await? {
            let packed = piece.get("z").and_then(|z| z.as_b().ok());
            let packed = packed.ok_or_else(|| StoreError::Corrupt(format!("an archived piece of {stream_id}")))?;
            events.extend(unpack(packed.as_ref())?);
        }
        Ok(events)
    }

    /// Read models of orders last changed before `before` that `closed`
    /// matches and that are not archived through their last event, the
    /// oldest first, at most `limit`.
    async fn candidates(
        &self,
        before: DateTime<Utc>,
        closed: ClosedWhen,
        limit: usize,
    ) -> Result<Vec<ArchiveCandidate>, StoreError> {
        let orders = Partition { table: &self.tables.snapshots, index: Some(RECENT), key: "g", value: ORDERS };
        let mut found = Vec::new();
        let mut start = None;
        while found.len() < limit {
            let page = self
                .query(&orders, Some("u < :before"))
                .expression_attribute_values(":before", s(&sortable(before)))
                .filter_expression("attribute_not_exists(a) OR a < n")
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items() {
                if is_closed(item, closed)? {
                    let stream_id = item.get("p").and_then(|p| p.as_s().ok()).cloned().unwrap_or_default();
                    found.push(ArchiveCandidate { stream_id, version: number(item, "n")? });
                }
            }
            match page.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => break,
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    /// Archives one stream's events below `through`; how many left `events`.
    async fn archive_stream(&self, stream_id: &str, through: u64) -> Result<u64, StoreError> {
        let events = self.read_hot(stream_id, 0, through).await?;
        for (first, last, packed) in pieces(&events)? {
            self.client
                .put_item()
                .table_name(&self.tables.archive)
                .item("p", s(stream_id))
                .item("f", n(first))
                .item("l", n(last))
                .item("z", aws_sdk_dynamodb::types::AttributeValue::B(Blob::new(packed)))
                .send()
                .await
                .map_err(unavailable)?;
        }
        for chunk in events.chunks(BATCH) {
            let mut deletes: Vec<WriteRequest> = chunk
                .iter()
                .map(|event| {
                    let delete = DeleteRequest::builder().key("p", s(stream_id)).key("i", n(event.index));
                    Ok(WriteRequest::builder().delete_request(delete.build().map_err(crate::invalid)?).build())
                })
                .collect::<Result<_, StoreError>>()?;
            // Deletes the service did not get to (throttling) are sent again.
            while !deletes.is_empty() {
                let answer = self
                    .client
                    .batch_write_item()
                    .request_items(&self.tables.events, deletes)
                    .send()
                    .await
                    .map_err(unavailable)?;
                deletes =
                    answer.unprocessed_items.and_then(|mut left| left.remove(&self.tables.events)).unwrap_or_default();
            }
        }
        // Noted unless the read model is gone or already says as much.
        let noted = self
            .client
            .update_item()
            .table_name(&self.tables.snapshots)
            .key("p", s(stream_id))
            .update_expression("SET a = :a")
            .condition_expression("attribute_exists(p) AND (attribute_not_exists(a) OR a < :a)")
            .expression_attribute_values(":a", n(through + 1))
            .send()
            .await;
        conditional(noted)?;
        Ok(events.len() as u64)
    }
}

/// Whether a read model's state says its stream is closed.
fn is_closed(item: &Item, closed: ClosedWhen) -> Result<bool, StoreError> {
    let state: Value = json_of(item, "j", "a read model")?;
    Ok(state.get(closed.field).and_then(Value::as_str).is_some_and(|value| closed.values.contains(&value)))
}

/// Events packed in pieces of at most [`PIECE_BYTES`] (a piece over it is
/// halved until it fits), each with its first and last index.
fn pieces(events: &[EventRecord]) -> Result<Vec<(u64, u64, Vec<u8>)>, StoreError> {
    let (Some(first), Some(last)) = (events.first(), events.last()) else { return Ok(Vec::new()) };
    let packed = pack(events)?;
    if packed.len() <= PIECE_BYTES || events.len() == 1 {
        return Ok(vec![(first.index, last.index, packed)]);
    }
    let (older, newer) = events.split_at(events.len() / 2);
    let mut both = pieces(older)?;
    both.extend(pieces(newer)?);
    Ok(both)
}

#[async_trait]
impl Archive for DynamoStore {
    async fn archivable(
        &self,
        before: DateTime<Utc>,
        closed: ClosedWhen,
        limit: usize,
    ) -> Result<Vec<ArchiveCandidate>, StoreError> {
        self.candidates(before, closed, limit).await
    }

    async fn count_archivable(&self, before: DateTime<Utc>, closed: ClosedWhen) -> Result<u64, StoreError> {
        Ok(self.candidates(before, closed, usize::MAX).await?.len() as u64)
    }

    async fn archive(&self, streams: &[(String, u64)]) -> Result<Vec<u64>, StoreError> {
        stream::iter(streams.to_vec())
            .map(|(stream_id, through)| async move { self.archive_stream(&stream_id, through).await })
            .buffered(CONCURRENCY)
            .try_collect()
            .await
    }
}
