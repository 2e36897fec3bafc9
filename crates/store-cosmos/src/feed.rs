//! The change feed of the `events` container, per feed range, in
//! LatestVersion mode. Documents that are not events (tips, idempotency
//! records) are skipped; within a range the feed keeps each stream's events
//! in order.
//!
//! A range is named by its effective-partition-key bounds, `{min}-{max}`.
//! The ranges a consumer reads are the physical partitions refined by the
//! ranges it already holds ([`refine`]): after a split each part goes on
//! from its parent's continuation token, which the SDK accepts for a part of
//! the range it was taken in (it reads the part from the parent's position);
//! after a merge the former ranges keep being read, each as a part of the
//! merged partition.

use std::time::Duration;

use async_trait::async_trait;
use azure_data_cosmos::feed::FeedRange;
use azure_data_cosmos::options::{ChangeFeedOptions, ChangeFeedStartFrom, ReadFeedRangesOptions};
use azure_data_cosmos::FeedScope;
use azure_data_cosmos_driver::models::{ContinuationToken, EffectivePartitionKey};
use futures::StreamExt;
use orderflow_pipeline::feed_ranges::refine;
use orderflow_pipeline::ports::{ChangeFeed, FeedPage, FeedPosition, PlannedRange, StartFrom};
use orderflow_pipeline::StoreError;
use serde_json::Value;

use crate::events::events_of_documents;
use crate::{page_size, unavailable, CosmosStore};

/// How often an idle consumer asks the feed again.
const POLL_DELAY: Duration = Duration::from_millis(250);

type Epk = EffectivePartitionKey;

fn label(min: &Epk, max: &Epk) -> String {
    format!("{min}-{max}")
}

fn bounds(range: &str) -> Result<(Epk, Epk), StoreError> {
    let parse = |hex: &str| Epk::try_from(hex).ok();
    match range.split_once('-').map(|(min, max)| (parse(min), parse(max))) {
        Some((Some(min), Some(max))) if min < max => Ok((min, max)),
        _ => Err(StoreError::Corrupt(format!("not a feed range: {range:?}"))),
    }
}

fn feed_range(range: &str) -> Result<FeedRange, StoreError> {
    let (min, max) = bounds(range)?;
    FeedRange::new(min, max).map_err(|e| StoreError::Corrupt(format!("feed range {range}: {e}")))
}

impl CosmosStore {
    /// One page of `range` from `start` (or the continuation), and the
    /// continuation after it.
    async fn page(
        &self,
        range: &str,
        start: ChangeFeedStartFrom,
        continuation: Option<&str>,
        max: usize,
    ) -> Result<(Vec<Value>, String), StoreError> {
        let mut options = ChangeFeedOptions::default().with_max_item_count(page_size(max));
        if let Some(token) = continuation {
            options = options.with_continuation_token(ContinuationToken::from_string(token.to_string()));
        }
        let scope = FeedScope::Range(feed_range(range)?);
        let mut pages =
            self.inner.events.query_change_feed::<Value>(scope, start, Some(options)).await.map_err(unavailable)?;
        // One request answers one page; an empty page (304) means nothing
        // new in this range right now.
        let mut documents = Vec::new();
        if let Some(page) = pages.next().await {
            let page = page.map_err(unavailable)?;
            self.inner.units.record_response("change-feed-page", page.headers());
            documents.extend(page.items().iter().filter_map(|item| item.current().cloned()));
        }
        let token = pages.to_continuation_token().map_err(unavailable)?;
        Ok((documents, token.as_str().to_string()))
    }

    /// A continuation that starts `range` as `start` says, without reading:
    /// a fixed point (the beginning, a time) needs no request.
    async fn unread(&self, range: &str, start: ChangeFeedStartFrom) -> Result<String, StoreError> {
        let scope = FeedScope::Range(feed_range(range)?);
        let pages = self.inner.events.query_change_feed::<Value>(scope, start, None).await.map_err(unavailable)?;
        Ok(pages.to_continuation_token().map_err(unavailable)?.as_str().to_string())
    }
}

#[async_trait]
impl ChangeFeed for CosmosStore {
    async fn layout(&self, held: &[FeedPosition]) -> Result<Vec<PlannedRange>, StoreError> {
        // Fresh from the service: a split must show here, not in a cache.
        let options = ReadFeedRangesOptions::default().with_force_refresh(true);
        let physical = self.inner.events.read_feed_ranges(Some(options)).await.map_err(unavailable)?;
        let physical: Vec<(Epk, Epk)> =
            physical.iter().map(|r| (r.min_inclusive().clone(), r.max_exclusive().clone())).collect();
        let held = held.iter().map(|p| Ok((bounds(&p.range)?, p.clone()))).collect::<Result<Vec<_>, StoreError>>()?;
        Ok(refine(&physical, &held, label))
    }

    async fn start(&self, range: &str, from: StartFrom) -> Result<String, StoreError> {
        match from {
            StartFrom::Beginning => self.unread(range, ChangeFeedStartFrom::Beginning).await,
            StartFrom::Time(time) => {
                let nanos = time.timestamp_nanos_opt().unwrap_or_default();
                let time = azure_core::time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
                    .map_err(|e| StoreError::Corrupt(format!("start time {time}: {e}")))?;
                self.unread(range, ChangeFeedStartFrom::PointInTime(time)).await
            }
            StartFrom::Now => {
                // "Now" is pinned by reading once from it (the service answers
                // with the range's current end); on a range that holds nothing
                // yet it is the beginning, so that a new feed loses nothing.
                let (history, _) = self.page(range, ChangeFeedStartFrom::Beginning, None, 1).await?;
                if history.is_empty() {
                    return self.unread(range, ChangeFeedStartFrom::Beginning).await;
                }
                let (_, now) = self.page(range, ChangeFeedStartFrom::Now, None, 1).await?;
                Ok(now)
            }
        }
    }

    async fn read(&self, range: &str, continuation: Option<&str>, max: usize) -> Result<FeedPage, StoreError> {
        let (documents, token) = self.page(range, ChangeFeedStartFrom::Beginning, continuation, max).await?;
        let moved = !documents.is_empty();
        let events = events_of_documents(documents).map_err(|e| StoreError::Corrupt(format!("change feed: {e}")))?;
        Ok(FeedPage { events, continuation: Some(token), moved })
    }

    async fn wait_for_changes(&self, _positions: &[FeedPosition], timeout: Duration) {
        tokio::time::sleep(timeout.min(POLL_DELAY)).await;
    }
}
