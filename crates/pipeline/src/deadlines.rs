//! Deadlines in the pipeline: the timers order events start, and the
//! time-driven step that passes them when they are due.
//!
//! Scheduling is part of `fulfillment` (the process manager sees every
//! event): the domain's [`schedule`] says which deadline an event starts, and
//! the timer is stored with the event's time plus the deadline's length,
//! under a name unique in its stream, so a redelivered event keeps one timer.
//!
//! [`PassDeadlines`] is the one time-driven step, run by `serve` every
//! second, by the Functions app's timer trigger and by a scheduled Lambda: it
//! sends `PassDeadline` to the order of each due timer, then forgets the
//! timer. At least once: a timer is forgotten only after its command was
//! applied, and the order decides what a passed deadline still means, so a
//! timer fired twice (a crash between the two, two processes at the same
//! moment) has one effect.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use orderflow_domain::deadlines::{schedule, Deadline, DeadlinePolicy};
use orderflow_domain::order::{Order, OrderCommand};
use orderflow_domain::Command;
use tokio::sync::watch;

use crate::ports::{EventRecord, StoreError, Timer, Timers};
use crate::processor::{CommandError, CommandProcessor, Envelope};
use crate::streams::{decode_event, Category};

/// Where deadlines are stored, and which ones orders get.
#[derive(Clone)]
pub struct DeadlineTimers {
    pub timers: Arc<dyn Timers>,
    pub policy: DeadlinePolicy,
}

impl DeadlineTimers {
    /// Stores the timers that the order events among `events` start.
    pub async fn schedule(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        let mut timers = Vec::new();
        for record in events {
            if !matches!(Category::of(&record.stream_id), Some((Category::Order, _))) {
                continue;
            }
            let Some((deadline, after)) = schedule(&decode_event::<Order>(record)?, &self.policy) else {
                continue;
            };
            let after = chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
            timers.push(Timer {
                stream_id: record.stream_id.clone(),
                name: deadline.name(),
                due_at: record.time.checked_add_signed(after).unwrap_or(DateTime::<Utc>::MAX_UTC),
                deadline: serde_json::to_value(&deadline)
                    .map_err(|e| StoreError::Corrupt(format!("deadline not serializable: {e}")))?,
                caused_by: record.event_id,
                correlation_id: record.correlation_id.clone(),
            });
        }
        self.timers.schedule(timers).await
    }
}

/// The time-driven step: passes the deadlines that are due.
pub struct PassDeadlines {
    processor: Arc<CommandProcessor>,
    timers: Arc<dyn Timers>,
}

/// Timers handled per round at most; a round that handled this many is
/// followed at once by the next.
pub const ROUND: usize = 200;

/// Timers passed at the same time within a round (each is a command on its
/// own order, then a delete).
const CONCURRENCY: usize = 32;

/// How far a timer that cannot be read is put off: kept (and listed) for
/// an operator, out of the way of the timers behind it.
const PUT_OFF: chrono::Duration = chrono::Duration::hours(1);

/// What one round, or a run of rounds, did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Passed {
    /// Due timers handled (and forgotten).
    pub handled: usize,
    /// Of those, the ones whose order changed (the others were no longer
    /// relevant: paid in time, delivered, cancelled).
    pub acted: usize,
    /// Due timers left for later: their order could not take the command
    /// yet (contention, an unreachable store), or they cannot be read.
    pub failed: usize,
}

impl PassDeadlines {
    pub fn new(processor: Arc<CommandProcessor>, timers: Arc<dyn Timers>) -> Self {
        PassDeadlines { processor, timers }
    }

    /// Passes up to [`ROUND`] timers due at `now`, the earliest first.
    pub async fn round(&self, now: DateTime<Utc>) -> Result<Passed, StoreError> {
        let due = self.timers.due(now, ROUND).await?;
        metrics::gauge!("orderflow_deadlines_due").set(due.len() as f64);
        let oldest = due.first().map_or(0.0, |timer| (now - timer.due_at).as_seconds_f64());
        metrics::gauge!("orderflow_deadlines_oldest_due_seconds").set(oldest);
        let outcomes: Vec<Result<Option<bool>, StoreError>> =
            stream::iter(due).map(|timer| self.handle(timer, now)).buffer_unordered(CONCURRENCY).collect().await;
        let mut passed = Passed::default();
        for outcome in outcomes {
            match outcome? {
                Some(acted) => {
                    passed.handled += 1;
                    passed.acted += usize::from(acted);
                }
                None => passed.failed += 1,
            }
        }
        Ok(passed)
    }

    /// Runs rounds of the timers due at `now` while they find a full
    /// round's worth, for at most `budget` (a scheduled invocation's share
    /// of its schedule).
    pub async fn pass_due(&self, now: DateTime<Utc>, budget: std::time::Duration) -> Result<Passed, StoreError> {
        let started = tokio::time::Instant::now();
        let mut total = Passed::default();
        loop {
            let passed = self.round(now).await?;
            total.handled += passed.handled;
            total.acted += passed.acted;
            total.failed += passed.failed;
            if passed.handled < ROUND || started.elapsed() >= budget {
                return Ok(total);
            }
        }
    }

    /// Passes one timer and forgets it: `Some(acted)`, or `None` when it
    /// stays for later.
    async fn handle(&self, timer: Timer, now: DateTime<Utc>) -> Result<Option<bool>, StoreError> {
        match self.pass(&timer).await {
            Ok(acted) => {
                self.timers.complete(&timer.stream_id, &timer.name).await?;
                let kind = if acted { "acted" } else { "no longer relevant" };
                metrics::counter!("orderflow_deadlines_passed_total", "outcome" => kind).increment(1);
                Ok(Some(acted))
            }
            Err(error) if error.is_permanent() => {
                tracing::error!(stream = timer.stream_id, timer = timer.name, %error, "deadline cannot be passed; put off");
                self.timers.complete(&timer.stream_id, &timer.name).await?;
                self.timers.schedule(vec![Timer { due_at: now + PUT_OFF, ..timer }]).await?;
                Ok(None)
            }
            Err(error) => {
                tracing::warn!(stream = timer.stream_id, timer = timer.name, %error, "deadline not passed yet; retrying later");
                Ok(None)
            }
        }
    }

    /// Sends the timer's order its deadline. True when the order changed.
    async fn pass(&self, timer: &Timer) -> Result<bool, StoreError> {
        let unreadable = |why: String| {
            // A timer this version cannot read is kept (never dropped
            // silently) and shown by `orderflow deadlines list`.
            StoreError::Corrupt(format!("timer {} of {}: {why}", timer.name, timer.stream_id))
        };
        let Some((Category::Order, order_id)) = Category::of(&timer.stream_id) else {
            return Err(unreadable("not an order's stream".into()));
        };
        let deadline: Deadline =
            serde_json::from_value(timer.deadline.clone()).map_err(|e| unreadable(e.to_string()))?;
        let command =
            Command::Order { order_id: order_id.to_string(), command: OrderCommand::PassDeadline { deadline } };
        let mut envelope = Envelope::new();
        envelope.message_id = format!("deadline/{}/{}", timer.stream_id, timer.name);
        envelope.correlation_id = timer.correlation_id.clone();
        envelope.causation_id = timer.caused_by.to_string();
        match self.processor.execute(&command, &envelope).await {
            Ok(receipt) => Ok(receipt.appended > 0),
            Err(CommandError::Store(error)) => Err(error),
            // The order decides every deadline without refusing; one that
            // is gone (no such order) has nothing left to do.
            Err(CommandError::Rejected(_)) => Ok(false),
            Err(error) => Err(StoreError::Unavailable(error.to_string())),
        }
    }
}

/// Runs the step every `every` until `stop` turns true (how `serve` runs
/// it); full rounds follow each other at once for up to `every`.
pub async fn run(step: PassDeadlines, every: std::time::Duration, mut stop: watch::Receiver<bool>) {
    tracing::info!("deadlines step started");
    while !*stop.borrow() {
        match step.pass_due(Utc::now(), every).await {
            // More may be due already: go on at once.
            Ok(passed) if passed.handled >= ROUND => continue,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot pass the due deadlines; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
    }
    tracing::info!("deadlines step stopped");
}

/// How many timers are stored, how many are due, and since when the oldest
/// due one waits: for metrics, the status page and `orderflow deadlines list`.
#[derive(Debug, Clone, PartialEq)]
pub struct Backlog {
    pub pending: u64,
    pub overdue: usize,
    pub oldest_overdue: Option<DateTime<Utc>>,
}

pub async fn backlog(timers: &dyn Timers, now: DateTime<Utc>) -> Result<Backlog, StoreError> {
    let (_, pending) = timers.pending(0).await?;
    let due = timers.due(now, ROUND).await?;
    Ok(Backlog { pending, overdue: due.len(), oldest_overdue: due.first().map(|timer| timer.due_at) })
}
