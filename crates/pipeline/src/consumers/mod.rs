//! Change-feed consumers and the loop that drives them.
//!
//! Each consumer handles batches of events in per-stream order; the runner
//! saves its checkpoint only after a batch was handled, so delivery is at
//! least once and every consumer is idempotent.

mod fulfillment;
mod projector;
mod publisher;

pub use fulfillment::Fulfillment;
pub use projector::{project, Projector};
pub use publisher::Publisher;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use tokio::sync::watch;

use crate::ports::{ChangeFeed, Checkpoints, EventRecord, FeedPosition, StoreError};

#[async_trait]
pub trait Consumer: Send + Sync {
    /// The consumer's name, also the key of its checkpoints (`project-snapshots`).
    fn name(&self) -> &'static str;
    /// Handles a batch; an error means "try the same batch again later".
    async fn handle(&self, events: &[EventRecord]) -> Result<(), StoreError>;
}

pub struct FeedRunner {
    pub feed: Arc<dyn ChangeFeed>,
    pub checkpoints: Arc<dyn Checkpoints>,
    pub consumer: Arc<dyn Consumer>,
    pub batch_size: usize,
    /// How long to wait for news when the feed has none (a change notification
    /// usually comes sooner).
    pub idle_wait: Duration,
}

impl FeedRunner {
    pub fn new(feed: Arc<dyn ChangeFeed>, checkpoints: Arc<dyn Checkpoints>, consumer: Arc<dyn Consumer>) -> Self {
        FeedRunner { feed, checkpoints, consumer, batch_size: 500, idle_wait: Duration::from_secs(1) }
    }

    /// Runs until `stop` turns true; a batch in hand is finished first.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let name = self.consumer.name();
        tracing::info!(consumer = name, "change-feed consumer started");
        while !*stop.borrow() {
            let progressed = (|| self.step()).retry(backoff()).notify(
                |error, delay| tracing::warn!(consumer = name, %error, ?delay, "change-feed batch failed, retrying"),
            );
            let progressed = tokio::select! {
                result = progressed => result,
                _ = stop.changed() => break,
            };
            if let Ok(Idle(positions)) = progressed {
                tokio::select! {
                    _ = self.feed.wait_for_changes(&positions, self.idle_wait) => {}
                    _ = stop.changed() => {}
                }
            }
        }
        tracing::info!(consumer = name, "change-feed consumer stopped");
    }

    /// Reads and handles one batch from every range. `Idle` with the
    /// positions reached when no range had anything new.
    pub async fn step(&self) -> Result<Step, StoreError> {
        let name = self.consumer.name();
        let mut positions = Vec::new();
        let mut progressed = false;
        for range in self.feed.ranges().await? {
            let from = self.checkpoints.load(name, &range).await?;
            let page = self.feed.read(&range, from.as_deref(), self.batch_size).await?;
            if !page.events.is_empty() {
                self.consumer.handle(&page.events).await?;
            }
            if page.moved {
                if let Some(continuation) = &page.continuation {
                    self.checkpoints.save(name, &range, continuation).await?;
                }
                progressed = true;
            }
            positions.push(FeedPosition { range, continuation: page.continuation.or(from) });
        }
        Ok(if progressed { Step::Progressed } else { Idle(positions) })
    }
}

#[derive(Debug, PartialEq)]
pub enum Step {
    Progressed,
    Idle(Vec<FeedPosition>),
}
use Step::Idle;

/// Groups items by key, keeping the order of first appearance of each key
/// and the order of items within a group.
fn group_in_order<T, K: Eq + std::hash::Hash + Clone>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
) -> Vec<(K, Vec<T>)> {
    let mut groups: Vec<(K, Vec<T>)> = Vec::new();
    let mut slots: std::collections::HashMap<K, usize> = std::collections::HashMap::new();
    for item in items {
        let k = key(&item);
        let slot = *slots.entry(k.clone()).or_insert_with(|| {
            groups.push((k, Vec::new()));
            groups.len() - 1
        });
        groups[slot].1.push(item);
    }
    groups
}

/// Growing pauses between retries, for as long as it takes: used where a
/// batch or message must never be skipped.
pub fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
}
