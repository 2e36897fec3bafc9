//! Archival: the events of orders closed before a cut-off move out of the
//! hot store into its archive ([`Archive`]), compressed, where
//! [`EventStore::read_stream`] still finds them. Each order keeps its tip,
//! its read model and its last event hot: commands on it are decided as
//! before, `GET /api/orders/{id}` and a customer's list answer from the read
//! model, and a replay of the change feed meets every order again (the
//! projector reads the rest of the stream, archive included).
//!
//! `orderflow archive --closed-before` runs [`ArchiveClosed`] once; with
//! `OrderflowArchiveClosedAfter` set, every host's time-driven step runs it
//! on a schedule.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{stream, StreamExt};
use orderflow_domain::order::{OrderState, OrderStatus};

use crate::ports::{Archive, ArchiveCandidate, ClosedWhen, EventRecord, EventStore};
use crate::StoreError;

/// Which read models are of closed orders.
pub const CLOSED_ORDERS: ClosedWhen = ClosedWhen { field: "status", values: &OrderStatus::CLOSED_NAMES };

/// Candidates taken per round.
pub const ROUND: usize = 500;

/// Tips read at the same time to check that a candidate is closed.
const CONCURRENCY: usize = 16;

/// Events compressed together, as the archive stores them: JSON, deflated.
pub fn pack(events: &[EventRecord]) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(events).map_err(|e| StoreError::Corrupt(format!("events to archive: {e}")))?;
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(&json)
        .and_then(|()| encoder.finish())
        .map_err(|e| StoreError::Unavailable(format!("compressing events: {e}")))
}

/// The events [`pack`] compressed.
pub fn unpack(packed: &[u8]) -> Result<Vec<EventRecord>, StoreError> {
    let mut json = Vec::new();
    flate2::read::DeflateDecoder::new(packed)
        .read_to_end(&mut json)
        .map_err(|e| StoreError::Corrupt(format!("archived events: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| StoreError::Corrupt(format!("archived events: {e}")))
}

/// One stream's events from `from_index` on, at most `max`, each once, from
/// its archived and its hot events (which overlap while an archiver is
/// between copying and deleting, or when two archived the same stream).
pub fn merge(archived: Vec<EventRecord>, hot: Vec<EventRecord>, from_index: u64, max: usize) -> Vec<EventRecord> {
    let mut events: Vec<EventRecord> = archived.into_iter().chain(hot).filter(|e| e.index >= from_index).collect();
    events.sort_by_key(|e| e.index);
    events.dedup_by_key(|e| e.index);
    events.truncate(max);
    events
}

/// What archiving did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Archived {
    /// Orders whose events before their last are now in the archive.
    pub orders: u64,
    /// Events that left the hot store.
    pub events: u64,
    /// Candidates left alone: their read model said closed, their stream
    /// does not (it lags, or the order took a command since).
    pub still_open: u64,
    /// Candidates there were when the run started (0 for a round).
    pub candidates: u64,
}

/// The step: archives the orders closed before a cut-off.
pub struct ArchiveClosed {
    events: Arc<dyn EventStore>,
    archive: Arc<dyn Archive>,
}

impl ArchiveClosed {
    pub fn new(events: Arc<dyn EventStore>, archive: Arc<dyn Archive>) -> Self {
        ArchiveClosed { events, archive }
    }

    /// Archives up to [`ROUND`] orders closed before `before`.
    pub async fn round(&self, before: DateTime<Utc>) -> Result<Archived, StoreError> {
        let candidates = self.archive.archivable(before, CLOSED_ORDERS, ROUND).await?;
        let checked: Vec<Result<Option<(String, u64)>, StoreError>> = stream::iter(candidates)
            .map(|candidate| self.closed(candidate))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        let mut archived = Archived::default();
        let mut streams = Vec::with_capacity(checked.len());
        for checked in checked {
            match checked? {
                Some(stream) => streams.push(stream),
                None => archived.still_open += 1,
            }
        }
        let moved = self.archive.archive(&streams).await?;
        archived.orders = moved.iter().filter(|events| **events > 0).count() as u64;
        archived.events = moved.iter().sum();
        metrics::counter!("orderflow_archived_events_total").increment(archived.events);
        Ok(archived)
    }

    /// Runs rounds until one archives nothing (no candidate left, only
    /// open ones, or only events a change-feed consumer has yet to read),
    /// or `budget` is spent; `progress` hears of each round.
    pub async fn run(
        &self,
        before: DateTime<Utc>,
        budget: Duration,
        mut progress: impl FnMut(&Archived),
    ) -> Result<Archived, StoreError> {
        let started = tokio::time::Instant::now();
        let candidates = self.archive.count_archivable(before, CLOSED_ORDERS).await?;
        let mut total = Archived { candidates, ..Archived::default() };
        progress(&total);
        loop {
            let round = self.round(before).await?;
            total.orders += round.orders;
            total.events += round.events;
            total.still_open = round.still_open;
            progress(&total);
            if round.orders == 0 || started.elapsed() >= budget {
                return Ok(total);
            }
        }
    }

    /// The candidate's stream and how far to archive it, if its tip says
    /// it is closed: everything but its last event (a read model that lags
    /// archives less).
    async fn closed(&self, candidate: ArchiveCandidate) -> Result<Option<(String, u64)>, StoreError> {
        let Some(tip) = self.events.load(&candidate.stream_id, None).await?.tip else {
            return Ok(None);
        };
        // A state this version cannot read is not archived: it stays hot,
        // as everything did before archival.
        let closed = serde_json::from_value::<OrderState>(tip.state).is_ok_and(|state| state.status.is_closed());
        let through = candidate.version.min(tip.version).saturating_sub(1);
        Ok((closed && through > 0).then_some((candidate.stream_id, through)))
    }
}

/// How often `serve` looks for orders to archive, and for how long at most
/// each time (a backlog is worked off over several runs, beside commands).
pub const EVERY: Duration = Duration::from_secs(60);
pub const BUDGET: Duration = Duration::from_secs(20);

/// Archives what closed more than `closed_after` ago, every [`EVERY`],
/// until `stop` turns true (how `serve` runs it).
pub async fn run(step: ArchiveClosed, closed_after: chrono::Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
    tracing::info!(closed_after = %closed_after, "archival step started");
    while !*stop.borrow() {
        match step.run(Utc::now() - closed_after, BUDGET, |_| {}).await {
            Ok(archived) if archived.orders > 0 => {
                tracing::info!(orders = archived.orders, events = archived.events, "archived closed orders")
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot archive closed orders now; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.changed() => {}
        }
    }
    tracing::info!("archival step stopped");
}
