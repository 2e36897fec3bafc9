//! Change-feed consumers and the loop that drives them.
//!
//! Each consumer handles batches of events in per-stream order; the runner
//! saves its position only after a batch was handled, so delivery is at
//! least once and every consumer is idempotent. Which process handles which
//! range is decided by leases ([`leases`]).

mod fulfillment;
mod health;
mod leases;
mod parking;
mod projector;
mod publisher;

pub use fulfillment::Fulfillment;
pub use health::FeedHealth;
pub use leases::Clock;
pub use parking::{retry, Parked, Retried};
pub use projector::{project, Projected, Projector};
pub use publisher::Publisher;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::ports::{ChangeFeed, EventRecord, FeedPosition, StartFrom, StoreError, Stores};
use leases::Leases;

#[async_trait]
pub trait Consumer: Send + Sync {
    /// The consumer's name, also the key of its leases (`project-snapshots`).
    fn name(&self) -> &'static str;
    /// Handles a batch; an error means "try the same batch again later".
    async fn handle(&self, events: &[EventRecord]) -> Result<(), StoreError>;
    /// Where it starts a range it never read. A consumer whose effects
    /// reach beyond the store (messages, reactions) starts from now: running
    /// old history through it again would do those effects again once their
    /// idempotency records have expired.
    fn start(&self) -> StartFrom {
        StartFrom::Now
    }
}

/// Drives one consumer over the feed ranges it holds leases on: read from
/// the lease's position, handle, save the position (at least once, and the
/// consumers are idempotent). All lease writes happen on this one task.
pub struct FeedRunner {
    feed: Arc<dyn ChangeFeed>,
    /// The consumer, its poison streams parked.
    consumer: Arc<Parked>,
    leases: Leases,
    pub batch_size: usize,
    /// How long to wait for news when the feed has none (a change notification
    /// usually comes sooner).
    pub idle_wait: Duration,
    /// Where the runner reports how it is doing (readiness, status).
    health: FeedHealth,
}

impl FeedRunner {
    /// A runner named after its consumer plus a random suffix; `serve`
    /// names it after the process instead ([`FeedRunner::with_owner`]).
    pub fn new(stores: &Stores, consumer: Arc<dyn Consumer>) -> Self {
        let owner = format!("{}-{}", consumer.name(), uuid::Uuid::new_v4());
        let feed = stores.feed.clone();
        let mut lease_manager = Leases::new(stores.leases.clone(), feed.clone(), consumer.name(), &owner);
        lease_manager.set_start(consumer.start());
        FeedRunner {
            feed,
            consumer: Arc::new(Parked::new(consumer, stores.parking.clone())),
            leases: lease_manager,
            batch_size: 500,
            idle_wait: Duration::from_secs(1),
            health: FeedHealth::default(),
        }
    }

    /// This runner in the leases: one name per consumer and process, stable
    /// across restarts, so that a restarted process picks up its own leases
    /// at once instead of waiting for them to expire.
    pub fn with_owner(mut self, owner: &str) -> Self {
        self.leases.set_owner(owner);
        self
    }

    /// How long a lease lasts unless renewed: another process sharing the
    /// feed takes the range over when this one stops renewing.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.leases.set_ttl(ttl);
        self
    }

    /// Where a range never read starts (the consumer's own choice otherwise).
    pub fn with_start(mut self, start: StartFrom) -> Self {
        self.leases.set_start(start);
        self
    }

    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.leases.set_clock(clock);
        self
    }

    pub fn with_health(mut self, health: FeedHealth) -> Self {
        self.health = health;
        self
    }

    /// Takes the leases this process should hold, creating those of ranges
    /// never read with their start positions. `serve` does this before it
    /// takes requests, so that "start from now" cannot miss an event.
    pub async fn prepare(&mut self) -> Result<(), StoreError> {
        self.balance().await
    }

    /// Takes the ranges to hold, then reads which streams are parked (a
    /// range taken over holds back what its former owner parked).
    async fn balance(&mut self) -> Result<(), StoreError> {
        self.leases.balance().await?;
        self.consumer.refresh().await?;
        self.health.parked(self.consumer.name(), self.consumer.parked_count());
        Ok(())
    }

    /// Runs until `stop` turns true, finishing the batch in hand first;
    /// then lets go of its leases.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let name = self.consumer.name();
        tracing::info!(consumer = name, owner = self.leases.owner(), "change-feed consumer started");
        let mut delays = backoff().build();
        while !*stop.borrow() {
            let wait = match self.step().await {
                Ok(step) => {
                    delays = backoff().build();
                    self.health.succeeded(name);
                    match step {
                        Step::Progressed => continue,
                        Idle(positions) => {
                            self.report(0, Duration::ZERO);
                            let until_renewal = self.leases.renewal_due().saturating_duration_since(Instant::now());
                            let wait = self.idle_wait.min(until_renewal.max(Duration::from_millis(10)));
                            tokio::select! {
                                _ = self.feed.wait_for_changes(&positions, wait) => {}
                                _ = stop.changed() => {}
                            }
                            continue;
                        }
                    }
                }
                Err(error) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(10));
                    tracing::warn!(consumer = name, %error, ?delay, "change-feed batch failed, retrying");
                    metrics::counter!("orderflow_feed_batch_failures_total", "consumer" => name).increment(1);
                    self.health.failed(name, &error);
                    delay
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
        self.leases.release().await;
        tracing::info!(consumer = name, "change-feed consumer stopped");
    }

    /// Reads and handles one batch from every range this runner holds.
    /// `Idle` with the positions reached when no range had anything new.
    pub async fn step(&mut self) -> Result<Step, StoreError> {
        if self.leases.balance_due() {
            self.balance().await?;
        } else if Instant::now() >= self.leases.renewal_due() {
            self.leases.renew().await?;
        }
        let mut positions = Vec::new();
        let mut progressed = false;
        for range in self.leases.ranges() {
            let from = match self.leases.position(&range) {
                Some(Some(continuation)) => continuation,
                Some(None) => {
                    let continuation = self.feed.start(&range, self.leases.start()).await?;
                    if !self.leases.save(&range, &continuation).await? {
                        continue;
                    }
                    continuation
                }
                None => continue,
            };
            let page = self.feed.read(&range, Some(&from), self.batch_size).await?;
            if let Some(newest) = page.events.last() {
                // How old the newest handled event is: how far behind the consumer runs.
                let lag = (chrono::Utc::now() - newest.time).to_std().unwrap_or_default();
                if !self.handle_while_held(&range, &page.events).await? {
                    continue;
                }
                self.report(page.events.len(), lag);
                self.health.parked(self.consumer.name(), self.consumer.parked_count());
            }
            if page.moved {
                if let Some(continuation) = &page.continuation {
                    // Handled here and perhaps there too: at least once, and the consumers are idempotent.
                    if !self.leases.save(&range, continuation).await? {
                        continue;
                    }
                }
                progressed = true;
            }
            positions.push(FeedPosition { range, continuation: page.continuation.or(Some(from)) });
        }
        Ok(if progressed { Step::Progressed } else { Idle(positions) })
    }

    /// Handles a batch of `range`, renewing the leases meanwhile. False when
    /// the range was lost before the batch was done: then this process
    /// stopped touching it (dropping the work) before its lease could expire.
    async fn handle_while_held(&mut self, range: &str, events: &[EventRecord]) -> Result<bool, StoreError> {
        let consumer = self.consumer.clone();
        let span = tracing::info_span!("feed batch", consumer = consumer.name(), range, events = events.len());
        let work = tracing::Instrument::instrument(consumer.handle(events), span);
        tokio::pin!(work);
        loop {
            let Some(deadline) = self.leases.deadline(range) else { return Ok(false) };
            let renewal = self.leases.renewal_due();
            tokio::select! {
                handled = &mut work => return handled.map(|()| true),
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(consumer = consumer.name(), range, "lease not renewed in time: leaving the batch to the next owner");
                    self.leases.abandon(range);
                    return Ok(false);
                }
                _ = tokio::time::sleep_until(renewal) => {
                    if let Err(error) = self.leases.renew().await {
                        tracing::warn!(consumer = consumer.name(), %error, "cannot renew leases, retrying");
                    }
                }
            }
        }
    }

    /// Progress, to the metrics and to the health report.
    fn report(&self, events: usize, lag: Duration) {
        let name = self.consumer.name();
        metrics::counter!("orderflow_feed_events_total", "consumer" => name).increment(events as u64);
        if events > 0 {
            metrics::histogram!("orderflow_feed_batch_events", "consumer" => name).record(events as f64);
        }
        metrics::gauge!("orderflow_feed_lag_seconds", "consumer" => name).set(lag.as_secs_f64());
        self.health.progressed(name, events, lag);
    }

    /// Deletes the consumer's leases (a finished replay starts over next time).
    pub async fn forget(&mut self) -> Result<(), StoreError> {
        self.leases.forget().await
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
