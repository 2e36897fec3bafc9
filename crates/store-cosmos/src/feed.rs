//! The change feed of the `events` container, per feed range (physical
//! partition), in LatestVersion mode. Tip documents are skipped; within a
//! range the feed keeps each stream's events in order.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use azure_data_cosmos::feed::FeedRange;
use azure_data_cosmos::options::{ChangeFeedOptions, ChangeFeedStartFrom, MaxItemCountHint};
use azure_data_cosmos::FeedScope;
use azure_data_cosmos_driver::models::ContinuationToken;
use futures::StreamExt;
use orderflow_pipeline::ports::{ChangeFeed, FeedPage, FeedPosition};
use orderflow_pipeline::StoreError;
use serde_json::Value;

use crate::events::{EventDoc, TIP_KIND};
use crate::{unavailable, CosmosStore};

/// How often an idle consumer asks the feed again.
const POLL_DELAY: Duration = Duration::from_millis(250);

/// Feed ranges by their label (`{min}-{max}` of the range's hash space).
#[derive(Default)]
pub struct Ranges {
    known: Mutex<HashMap<String, FeedRange>>,
}

fn label(range: &FeedRange) -> String {
    format!("{}-{}", range.min_inclusive(), range.max_exclusive())
}

impl CosmosStore {
    fn range(&self, label: &str) -> Option<FeedRange> {
        self.inner.ranges.known.lock().unwrap_or_else(|p| p.into_inner()).get(label).cloned()
    }
}

#[async_trait]
impl ChangeFeed for CosmosStore {
    async fn ranges(&self) -> Result<Vec<String>, StoreError> {
        let ranges = self.inner.events.read_feed_ranges(None).await.map_err(unavailable)?;
        let mut known = self.inner.ranges.known.lock().unwrap_or_else(|p| p.into_inner());
        Ok(ranges
            .into_iter()
            .map(|range| {
                let label = label(&range);
                known.insert(label.clone(), range);
                label
            })
            .collect())
    }

    async fn read(&self, range: &str, continuation: Option<&str>, max: usize) -> Result<FeedPage, StoreError> {
        if self.range(range).is_none() {
            self.ranges().await?;
        }
        let Some(feed_range) = self.range(range) else {
            return Err(StoreError::Corrupt(format!("no feed range {range} (the container was split?)")));
        };
        let limit =
            NonZeroU32::new(max.clamp(1, 1000) as u32).map_or(MaxItemCountHint::ServerDecides, MaxItemCountHint::Limit);
        let mut options = ChangeFeedOptions::default().with_max_item_count(limit);
        if let Some(token) = continuation {
            options = options.with_continuation_token(ContinuationToken::from_string(token.to_string()));
        }
        let mut pages = self
            .inner
            .events
            .query_change_feed::<Value>(FeedScope::Range(feed_range), ChangeFeedStartFrom::Beginning, Some(options))
            .await
            .map_err(unavailable)?;
        // One request answers one page; an empty page means nothing new in
        // this range right now.
        let mut events = Vec::new();
        let mut moved = false;
        if let Some(page) = pages.next().await {
            let page = page.map_err(unavailable)?;
            moved = !page.items().is_empty();
            self.inner.units.record_response("change-feed-page", page.headers());
            for item in page.items() {
                let Some(doc) = item.current() else { continue };
                if doc.get("kind").and_then(Value::as_str) == Some(TIP_KIND) {
                    continue;
                }
                let doc: EventDoc = serde_json::from_value(doc.clone())
                    .map_err(|e| StoreError::Corrupt(format!("event document on the feed: {e}")))?;
                events.push(doc.record);
            }
        }
        let token = pages.to_continuation_token().map_err(unavailable)?;
        Ok(FeedPage { events, continuation: Some(token.as_str().to_string()), moved })
    }

    async fn wait_for_changes(&self, _positions: &[FeedPosition], timeout: Duration) {
        tokio::time::sleep(timeout.min(POLL_DELAY)).await;
    }
}
