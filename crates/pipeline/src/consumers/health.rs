//! How each change-feed consumer is doing, for readiness probes and the
//! status page: failing since when and why, and how far behind it runs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ports::StoreError;

#[derive(Clone, Default)]
pub struct FeedHealth(Arc<Mutex<BTreeMap<&'static str, ConsumerHealth>>>);

#[derive(Clone, Debug, Default)]
pub struct ConsumerHealth {
    /// Since the first failure of the batch it is stuck on, if it is.
    pub failing_since: Option<Instant>,
    pub last_error: Option<String>,
    /// Age of the newest event it handled last (zero when it caught up).
    pub lag: Duration,
    /// Events handled since the process started.
    pub handled: u64,
    /// Streams it has parked (as last read).
    pub parked: usize,
}

impl FeedHealth {
    fn update(&self, consumer: &'static str, change: impl FnOnce(&mut ConsumerHealth)) {
        let mut consumers = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        change(consumers.entry(consumer).or_default());
    }

    pub fn failed(&self, consumer: &'static str, error: &StoreError) {
        self.update(consumer, |health| {
            health.failing_since.get_or_insert_with(Instant::now);
            health.last_error = Some(error.to_string());
        });
    }

    pub fn succeeded(&self, consumer: &'static str) {
        self.update(consumer, |health| {
            health.failing_since = None;
            health.last_error = None;
        });
    }

    /// It handled `events` (none when idle), the newest `lag` old.
    pub fn progressed(&self, consumer: &'static str, events: usize, lag: Duration) {
        self.update(consumer, |health| {
            health.lag = lag;
            health.handled += events as u64;
        });
    }

    /// It has `count` parked streams.
    pub fn parked(&self, consumer: &'static str, count: usize) {
        metrics::gauge!("orderflow_parked_streams", "consumer" => consumer).set(count as f64);
        self.update(consumer, |health| health.parked = count);
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, ConsumerHealth> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Why the pipeline is not ready: consumers stuck on a failing batch, or
    /// behind, for longer than `threshold`.
    pub fn problems(&self, threshold: Duration) -> Vec<String> {
        let mut problems = Vec::new();
        for (consumer, health) in self.snapshot() {
            if let Some(since) = health.failing_since.filter(|since| since.elapsed() > threshold) {
                let error = health.last_error.unwrap_or_default();
                problems.push(format!("{consumer} has failed for {} s: {error}", since.elapsed().as_secs()));
            } else if health.lag > threshold {
                problems.push(format!("{consumer} is {} s behind", health.lag.as_secs()));
            }
            if health.parked > 0 {
                problems.push(format!("{consumer} has {} parked stream(s): orderflow parked list", health.parked));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_failing_or_behind_too_long_is_a_problem_until_it_recovers() {
        let health = FeedHealth::default();
        health.failed("publish-events", &StoreError::Unavailable("kafka: broker down".into()));
        health.progressed("project-snapshots", 10, Duration::from_secs(90));
        health.progressed("fulfillment", 5, Duration::from_secs(1));
        assert_eq!(health.problems(Duration::from_secs(60)), ["project-snapshots is 90 s behind"]);
        let problems = health.problems(Duration::ZERO);
        assert!(problems.iter().any(|p| p.starts_with("publish-events has failed") && p.ends_with("broker down")));
        health.succeeded("publish-events");
        health.progressed("project-snapshots", 0, Duration::ZERO);
        health.progressed("fulfillment", 2, Duration::ZERO);
        assert!(health.problems(Duration::ZERO).is_empty());
        assert_eq!(health.snapshot()["fulfillment"].handled, 7);
    }
}
