//! Reads of one stream's read model that see the reader's own writes.
//!
//! The snapshot store follows the event store by the projector's delay. A
//! read that names the version its command answered gets at least that
//! version: when the snapshot is older, or not there yet, the events after it
//! are read from the event store and projected exactly as `project-snapshots`
//! will project them. So a stream that exists is never "not found" because
//! its projection has not run yet, whoever asks.

use std::time::Duration;

use chrono::{DateTime, Utc};
use orderflow_domain::Aggregate;
use serde::Deserialize;

use crate::consumers::{project, Projected};
use crate::ports::{EventRecord, EventStore, Snapshot, SnapshotStore, StoreError};

/// What a read of a stream's current state finds.
#[derive(Debug)]
pub enum Current<V> {
    /// The read model, at the version asked for or newer.
    Found(Read<V>),
    /// No such stream.
    Missing,
    /// The stream exists but has not reached the version asked for (a
    /// version no command of it answered, or one another replica has not
    /// seen yet after the waits below).
    NotReached { version: u64 },
}

/// A stream's view at a version.
#[derive(Debug)]
pub struct Read<V> {
    pub view: V,
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

/// Events read from the store per request while catching up.
const PAGE: usize = 1_000;

/// How long a read waits, in turn, for a version that is not there yet. A
/// version a command answered is durable, but a replica other than the one
/// that took the write may see it a moment later.
const WAITS: [Duration; 4] =
    [Duration::from_millis(10), Duration::from_millis(50), Duration::from_millis(200), Duration::from_millis(500)];

/// The view of `stream_id` (a stream of kind `A`) at version `at_least` or
/// newer (0: any). A stored view of an older shape is built again from the
/// stream's events.
pub async fn current<A: Aggregate>(
    events: &dyn EventStore,
    snapshots: &dyn SnapshotStore,
    stream_id: &str,
    at_least: u64,
) -> Result<Current<A::View>, StoreError> {
    let mut snapshot = snapshots.get(stream_id).await?;
    let mut waits = WAITS.iter();
    loop {
        match &snapshot {
            Some(found) if found.version >= at_least => break,
            _ => snapshot = catch_up(events, stream_id, snapshot).await?,
        }
        match &snapshot {
            Some(found) if found.version >= at_least => break,
            // Not there at all and no version asked for: nothing to wait for.
            None if at_least == 0 => return Ok(Current::Missing),
            _ => match waits.next() {
                Some(wait) => tokio::time::sleep(*wait).await,
                None => {
                    return Ok(snapshot.map_or(Current::Missing, |s| Current::NotReached { version: s.version }));
                }
            },
        }
    }
    let Some(found) = snapshot else { return Ok(Current::Missing) };
    let found = match A::View::deserialize(&found.state) {
        Ok(view) => return Ok(Current::Found(Read { view, version: found.version, updated_at: found.updated_at })),
        Err(_) => catch_up(events, stream_id, None).await?.unwrap_or(found),
    };
    let view = A::View::deserialize(&found.state)
        .map_err(|e| StoreError::Corrupt(format!("the view of {stream_id} does not read: {e}")))?;
    Ok(Current::Found(Read { view, version: found.version, updated_at: found.updated_at }))
}

/// The snapshot with every event the store holds after it applied.
async fn catch_up(
    events: &dyn EventStore,
    stream_id: &str,
    mut snapshot: Option<Snapshot>,
) -> Result<Option<Snapshot>, StoreError> {
    loop {
        let from = snapshot.as_ref().map_or(0, |s| s.version);
        let page = events.read_stream(stream_id, from, PAGE).await?;
        let records: Vec<&EventRecord> = page.iter().collect();
        snapshot = match project(snapshot, &records)? {
            Projected::Snapshot(projected) => projected,
            // Of an older shape: from the stream's first event.
            Projected::Outdated => {
                snapshot = None;
                continue;
            }
        };
        if page.len() < PAGE {
            return Ok(snapshot);
        }
    }
}
