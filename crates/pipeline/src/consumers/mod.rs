//! Change-feed consumers and the loop that drives them.
//!
//! Each consumer handles batches of events in per-stream order; the runner
//! saves its checkpoint only after a batch was handled, so delivery is at
//! least once and every consumer is idempotent.

mod fulfillment;
mod health;
mod projector;
mod publisher;

pub use fulfillment::Fulfillment;
pub use health::FeedHealth;
pub use projector::{project, Projector};
pub use publisher::Publisher;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// How long a lease on a range lasts unless renewed: another process
    /// sharing the feed takes the range over when this one stops renewing.
    pub lease_ttl: Duration,
    /// Where the runner reports how it is doing (readiness, status).
    pub health: FeedHealth,
    /// This runner in the leases: one name per consumer and process. Stable
    /// across restarts (see `serve`), a restarted process picks up its own
    /// leases at once instead of waiting for them to expire.
    pub owner: String,
    leases: Mutex<Leases>,
}

/// The ranges this runner holds, and when it last renewed them.
#[derive(Default)]
struct Leases {
    ranges: Vec<String>,
    renewed: Option<Instant>,
}

impl FeedRunner {
    pub fn new(feed: Arc<dyn ChangeFeed>, checkpoints: Arc<dyn Checkpoints>, consumer: Arc<dyn Consumer>) -> Self {
        let owner = format!("{}-{}", consumer.name(), uuid::Uuid::new_v4());
        FeedRunner {
            feed,
            checkpoints,
            consumer,
            batch_size: 500,
            idle_wait: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(30),
            health: FeedHealth::default(),
            owner,
            leases: Mutex::default(),
        }
    }

    /// Runs until `stop` turns true; a batch in hand is finished first.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let name = self.consumer.name();
        tracing::info!(consumer = name, owner = self.owner, "change-feed consumer started");
        while !*stop.borrow() {
            let progressed = (|| self.step()).retry(backoff()).notify(|error, delay| {
                tracing::warn!(consumer = name, %error, ?delay, "change-feed batch failed, retrying");
                metrics::counter!("orderflow_feed_batch_failures_total", "consumer" => name).increment(1);
                self.health.failed(name, error);
            });
            let progressed = tokio::select! {
                result = progressed => result,
                _ = stop.changed() => break,
            };
            if progressed.is_ok() {
                self.health.succeeded(name);
            }
            if let Ok(Idle(positions)) = progressed {
                self.report(0, Duration::ZERO);
                tokio::select! {
                    _ = self.feed.wait_for_changes(&positions, self.idle_wait) => {}
                    _ = stop.changed() => {}
                }
            }
        }
        tracing::info!(consumer = name, "change-feed consumer stopped");
    }

    /// Reads and handles one batch from every range this runner holds.
    /// `Idle` with the positions reached when no range had anything new.
    pub async fn step(&self) -> Result<Step, StoreError> {
        let name = self.consumer.name();
        let mut positions = Vec::new();
        let mut progressed = false;
        for range in self.held_ranges().await? {
            let from = self.checkpoints.load(name, &range).await?;
            let page = self.feed.read(&range, from.as_deref(), self.batch_size).await?;
            if let Some(newest) = page.events.last() {
                let span = tracing::info_span!("feed batch", consumer = name, range, events = page.events.len());
                tracing::Instrument::instrument(self.consumer.handle(&page.events), span).await?;
                // How old the newest handled event is: how far behind the consumer runs.
                let lag = (chrono::Utc::now() - newest.time).to_std().unwrap_or_default();
                self.report(page.events.len(), lag);
            }
            if page.moved {
                if let Some(continuation) = &page.continuation {
                    match self.checkpoints.save(name, &range, &self.owner, continuation).await {
                        Ok(()) => {}
                        // Handled here and there: at least once, and the consumers are idempotent.
                        Err(StoreError::LeaseLost(reason)) => {
                            tracing::info!(consumer = name, range, reason, "range taken over by another process");
                            self.leases().ranges.retain(|held| *held != range);
                            continue;
                        }
                        Err(error) => return Err(error),
                    }
                }
                progressed = true;
            }
            positions.push(FeedPosition { range, continuation: page.continuation.or(from) });
        }
        Ok(if progressed { Step::Progressed } else { Idle(positions) })
    }

    /// Progress, to the metrics and to the health report.
    fn report(&self, events: usize, lag: Duration) {
        let name = self.consumer.name();
        metrics::counter!("orderflow_feed_events_total", "consumer" => name).increment(events as u64);
        metrics::gauge!("orderflow_feed_lag_seconds", "consumer" => name).set(lag.as_secs_f64());
        self.health.progressed(name, events, lag);
    }

    /// The ranges held, renewing the leases a few times per TTL.
    async fn held_ranges(&self) -> Result<Vec<String>, StoreError> {
        let due = self.leases().renewed.is_none_or(|at| at.elapsed() >= self.lease_ttl / 4);
        if due {
            let name = self.consumer.name();
            let all = self.feed.ranges().await?;
            let held = self.checkpoints.acquire(name, &self.owner, &all, self.lease_ttl).await?;
            let mut leases = self.leases();
            if leases.ranges != held {
                tracing::info!(consumer = name, ranges = ?held, of = all.len(), "change-feed ranges held");
            }
            *leases = Leases { ranges: held, renewed: Some(Instant::now()) };
        }
        Ok(self.leases().ranges.clone())
    }

    fn leases(&self) -> std::sync::MutexGuard<'_, Leases> {
        // The lock guards plain data that no panic leaves half-written.
        self.leases.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
pub(crate) fn group_in_order<T, K: Eq + std::hash::Hash + Clone>(
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
