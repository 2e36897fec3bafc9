//! The change feed: the `events` table's DynamoDB Stream (new images), one
//! feed range per shard lineage ([`lineage`](crate::lineage)). Records that
//! are not events (a stream's tip, at `i = -1`; removals) are skipped.
//!
//! A stream holds 24 hours of records: a consumer starting from the
//! beginning reads what the stream still holds, not the table's whole
//! history. "Now" and a time are the shard's start with the events from
//! before that time skipped (by the time the event was recorded), so a
//! start reads at most 24 hours once.
//!
//! Each shard takes about five `GetRecords` a second: an idle consumer asks
//! once a second ([`POLL_DELAY`]), and the iterator each read ends at is kept
//! for the next read (it lives 15 minutes), so a read is one request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodbstreams::operation::get_records::GetRecordsError;
use aws_sdk_dynamodbstreams::operation::get_shard_iterator::GetShardIteratorError;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use orderflow_pipeline::ports::{ChangeFeed, EventRecord, FeedPage, FeedPosition, PlannedRange, StartFrom};
use orderflow_pipeline::StoreError;

use crate::lineage::{plan, At, Family, Position, Shard};
use crate::{unavailable, DynamoStore, TIP};

/// How often an idle consumer asks a shard again.
const POLL_DELAY: Duration = Duration::from_secs(1);
/// How long a DynamoDB Stream keeps a record (the service's fixed 24 hours).
const STREAM_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a kept iterator is used (DynamoDB honours one for 15 minutes).
const ITERATOR_LIFE: Duration = Duration::from_secs(10 * 60);
/// Kept iterators at most (one per range and consumer is what is needed).
const KEPT_ITERATORS: usize = 1000;

/// Iterators where reads ended, by the position they read on from.
#[derive(Default)]
pub(crate) struct Iterators(Mutex<HashMap<String, (String, Instant)>>);

impl Iterators {
    /// The iterator kept for `position`, which is then no longer kept.
    fn take(&self, position: &str) -> Option<String> {
        let (iterator, at) = self.0.lock().ok()?.remove(position)?;
        (at.elapsed() < ITERATOR_LIFE).then_some(iterator)
    }

    fn keep(&self, position: String, iterator: String) {
        if let Ok(mut kept) = self.0.lock() {
            if kept.len() >= KEPT_ITERATORS {
                kept.retain(|_, (_, at)| at.elapsed() < ITERATOR_LIFE);
                if kept.len() >= KEPT_ITERATORS {
                    kept.clear();
                }
            }
            kept.insert(position, (iterator, Instant::now()));
        }
    }
}

/// The event an image of the events table holds, if it is one (a tip is
/// not): from its sort key `i` (a number, as text) and its record `e`.
pub fn event_of_image(sort_key: Option<&str>, record: Option<&str>) -> Result<Option<EventRecord>, StoreError> {
    if sort_key.and_then(|i| i.parse::<i64>().ok()) == Some(TIP) {
        return Ok(None);
    }
    let Some(record) = record else { return Ok(None) };
    serde_json::from_str(record).map(Some).map_err(|e| StoreError::Corrupt(format!("change feed: an event item: {e}")))
}

impl DynamoStore {
    /// The events table's stream, asked once.
    pub(crate) async fn stream_arn(&self) -> Result<String, StoreError> {
        if let Some(arn) = self.inner.stream_arn.get() {
            return Ok(arn.clone());
        }
        let table = self.client.describe_table().table_name(&self.tables.events).send().await.map_err(unavailable)?;
        let arn = table.table.and_then(|t| t.latest_stream_arn).ok_or_else(|| {
            StoreError::Unavailable(format!("the table {} has no stream: run `orderflow init`", self.tables.events))
        })?;
        Ok(self.inner.stream_arn.get_or_init(|| arn).clone())
    }

    /// Every shard the stream holds, page after page.
    async fn shards(&self) -> Result<Vec<Shard>, StoreError> {
        let arn = self.stream_arn().await?;
        let mut shards = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let described = self
                .streams
                .describe_stream()
                .stream_arn(&arn)
                .set_exclusive_start_shard_id(after.take())
                .send()
                .await
                .map_err(unavailable)?;
            let Some(description) = described.stream_description else { return Ok(shards) };
            shards.extend(description.shards().iter().filter_map(|shard| {
                Some(Shard { id: shard.shard_id()?.to_string(), parent: shard.parent_shard_id().map(String::from) })
            }));
            match description.last_evaluated_shard_id {
                Some(last) => after = Some(last),
                None => return Ok(shards),
            }
        }
    }

    /// An iterator reading `position`'s shard from where it says.
    async fn iterator(&self, position: &Position) -> Result<Option<String>, StoreError> {
        let arn = self.stream_arn().await?;
        let request = self.streams.get_shard_iterator().stream_arn(&arn).shard_id(&position.shard);
        let request = match &position.at {
            At::After { sequence, .. } => {
                request.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).sequence_number(sequence)
            }
            At::Start { .. } | At::End => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        match request.send().await {
            Ok(answer) => Ok(answer.shard_iterator),
            Err(error) => match error.into_service_error() {
                // The records after the position were trimmed (a consumer
                // stopped for more than 24 hours): go on from what is left.
                GetShardIteratorError::TrimmedDataAccessException(_) if matches!(position.at, At::After { .. }) => {
                    tracing::warn!(shard = position.shard, "records after a feed position were trimmed away");
                    let start = Position::start(&position.shard, position.since());
                    Box::pin(self.iterator(&start)).await
                }
                other => Err(unavailable(other)),
            },
        }
    }

    /// Where a range goes on once its shard is read to the end: in its only
    /// child, or (several children, or none yet) at the end, for
    /// [`ChangeFeed::layout`] to plan.
    async fn after_end(&self, shard: &str) -> Result<Position, StoreError> {
        let shards = self.shards().await?;
        let family = Family::of(&shards);
        Ok(match family.children(shard) {
            [only] => Position::start(only, None),
            _ => Position { shard: shard.to_string(), at: At::End },
        })
    }
}

#[async_trait]
impl ChangeFeed for DynamoStore {
    async fn layout(&self, held: &[FeedPosition]) -> Result<Vec<PlannedRange>, StoreError> {
        plan(&self.shards().await?, held)
    }

    async fn start(&self, range: &str, from: StartFrom) -> Result<String, StoreError> {
        let since = match from {
            StartFrom::Beginning => None,
            StartFrom::Now => Some(chrono::Utc::now().timestamp_millis()),
            StartFrom::Time(time) => Some(time.timestamp_millis()),
        };
        Ok(Position::start(range, since).to_string())
    }

    async fn read(&self, range: &str, continuation: Option<&str>, max: usize) -> Result<FeedPage, StoreError> {
        let position = Position::parse(range, continuation)?;
        let here = position.to_string();
        let unmoved = || FeedPage { events: Vec::new(), continuation: continuation.map(String::from), moved: false };
        if position.at == At::End {
            let next = self.after_end(&position.shard).await?;
            if next == position {
                return Ok(unmoved());
            }
            return Ok(FeedPage { events: Vec::new(), continuation: Some(next.to_string()), moved: true });
        }
        let iterator = match self.inner.iterators.take(&here) {
            Some(kept) => kept,
            None => match self.iterator(&position).await? {
                Some(iterator) => iterator,
                None => return Ok(unmoved()),
            },
        };
        let limit = i32::try_from(max.clamp(1, 1000)).unwrap_or(1000);
        let answer = match self.streams.get_records().shard_iterator(&iterator).limit(limit).send().await {
            Ok(answer) => answer,
            Err(error) => {
                return match error.into_service_error() {
                    // A kept iterator that aged out: the next read asks anew.
                    GetRecordsError::ExpiredIteratorException(_) => Ok(unmoved()),
                    other => Err(unavailable(other)),
                };
            }
        };
        let since = position.since();
        let mut events = Vec::new();
        let mut last = None;
        for record in answer.records() {
            let Some(change) = record.dynamodb() else { continue };
            last = change.sequence_number().or(last);
            let Some(image) = change.new_image() else { continue };
            let text = |name: &str| image.get(name).and_then(|value| value.as_s().ok()).map(String::as_str);
            let number = |name: &str| image.get(name).and_then(|value| value.as_n().ok()).map(String::as_str);
            if let Some(event) = event_of_image(number("i"), text("e"))? {
                if since.is_none_or(|millis| event.time.timestamp_millis() >= millis) {
                    events.push(event);
                }
            }
        }
        // Events from before `since` are skipped until one after it is read.
        let since = since.filter(|_| events.is_empty());
        let next = match (last, answer.next_shard_iterator()) {
            (Some(sequence), _) => {
                Position { shard: position.shard.clone(), at: At::After { sequence: sequence.to_string(), since } }
            }
            (None, Some(_)) => position.clone(),
            // Closed, and read to its end.
            (None, None) => self.after_end(&position.shard).await?,
        };
        let continuation = next.to_string();
        if let Some(iterator) = answer.next_shard_iterator() {
            self.inner.iterators.keep(continuation.clone(), iterator.to_string());
        }
        let moved = next != position;
        Ok(FeedPage { events, continuation: Some(continuation), moved })
    }

    async fn wait_for_changes(&self, _positions: &[FeedPosition], timeout: Duration) {
        tokio::time::sleep(timeout.min(POLL_DELAY)).await;
    }

    fn retention(&self) -> Option<Duration> {
        Some(STREAM_RETENTION)
    }
}
