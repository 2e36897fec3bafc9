//! `project-snapshots`: keeps the read model of every stream — its kind's
//! [`View`] — in the snapshot store. Order-safe and idempotent: a snapshot
//! carries the version it reflects, events it already contains are skipped,
//! a gap is filled from the event store, and an older snapshot never
//! replaces a newer one. A stored view of a shape this build no longer reads
//! is built again from the stream's first event.

use std::sync::Arc;

use async_trait::async_trait;
use orderflow_domain::inventory::Inventory;
use orderflow_domain::order::Order;
use orderflow_domain::{Aggregate, Recorded, View};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{group_in_order, Consumer};
use crate::ports::{EventRecord, EventStore, Snapshot, SnapshotStore, StartFrom, StoreError};
use crate::streams::{decode_event, Category};

pub struct Projector {
    events: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
}

impl Projector {
    pub fn new(events: Arc<dyn EventStore>, snapshots: Arc<dyn SnapshotStore>) -> Self {
        Projector { events, snapshots }
    }
}

#[async_trait]
impl Consumer for Projector {
    fn name(&self) -> &'static str {
        "project-snapshots"
    }

    /// Read models are rebuilt from all history: projecting an event twice
    /// changes nothing, and reaches nothing outside the store.
    fn start(&self) -> StartFrom {
        StartFrom::Beginning
    }

    async fn handle(&self, events: &[EventRecord]) -> Result<(), StoreError> {
        let by_stream = group_in_order(events.iter(), |event| event.stream_id.clone());
        let ids: Vec<String> = by_stream.iter().map(|(id, _)| id.clone()).collect();
        let mut current = self.snapshots.get_many(&ids).await?;
        let mut updated = Vec::with_capacity(by_stream.len());
        for (stream_id, mut events) in by_stream {
            let mut snapshot = current.remove(&stream_id);
            events.sort_by_key(|e| e.index);
            loop {
                let version = snapshot.as_ref().map_or(0, |s| s.version);
                let Some(first) = events.iter().find(|e| e.index >= version) else { break };
                // Events this batch does not have (another feed range, or a
                // snapshot that fell behind): read them from the event store.
                let missing = if first.index > version {
                    self.events.read_stream(&stream_id, version, (first.index - version) as usize).await?
                } else {
                    Vec::new()
                };
                let all: Vec<&EventRecord> =
                    missing.iter().chain(events.iter().copied().filter(|e| e.index >= version)).collect();
                match project(snapshot, &all)? {
                    Projected::Snapshot(next) => {
                        updated.extend(next);
                        break;
                    }
                    Projected::Outdated => snapshot = None,
                }
            }
        }
        self.snapshots.put(updated).await
    }
}

/// What applying events to a stored read model gives.
#[derive(Debug)]
pub enum Projected {
    /// The read model after the events (as it was when there were none).
    Snapshot(Option<Snapshot>),
    /// The stored view is of a shape this build no longer reads: build it
    /// again from the stream's first event.
    Outdated,
}

/// Applies `events` (contiguous, starting at the snapshot's version) to a
/// snapshot's view.
pub fn project(snapshot: Option<Snapshot>, events: &[&EventRecord]) -> Result<Projected, StoreError> {
    let Some(last) = events.last() else { return Ok(Projected::Snapshot(snapshot)) };
    let stream_id = last.stream_id.clone();
    let version = snapshot.as_ref().map_or(0, |s| s.version);
    let expected: Vec<u64> = (version..version + events.len() as u64).collect();
    if events.iter().map(|e| e.index).ne(expected) {
        return Err(StoreError::Corrupt(format!("events of {stream_id} are not contiguous from version {version}")));
    }
    let stored = snapshot.map(|s| s.state);
    let (view, customer_id) = match Category::of(&stream_id) {
        Some((Category::Order, _)) => {
            let Some(view) = fold::<Order>(stored, events)? else { return Ok(Projected::Outdated) };
            let customer_id = Some(view.customer_id.clone());
            (encode_view(&view)?, customer_id)
        }
        Some((Category::Inventory, _)) => {
            let Some(view) = fold::<Inventory>(stored, events)? else { return Ok(Projected::Outdated) };
            (encode_view(&view)?, None)
        }
        None => return Err(StoreError::Corrupt(format!("unknown stream category in {stream_id}"))),
    };
    let updated_at = last.time;
    Ok(Projected::Snapshot(Some(Snapshot { stream_id, version: last.index + 1, updated_at, customer_id, state: view })))
}

/// The stored view with the events applied; `None` when the stored one is
/// of an older shape.
fn fold<A: Aggregate>(stored: Option<Value>, events: &[&EventRecord]) -> Result<Option<A::View>, StoreError> {
    let mut view = match stored {
        None | Some(Value::Null) => A::View::default(),
        Some(stored) => match A::View::deserialize(stored) {
            Ok(view) => view,
            Err(error) => {
                tracing::info!(category = A::CATEGORY, %error, "a stored view of an older shape: built again");
                return Ok(None);
            }
        },
    };
    for event in events {
        view.update(&decode_event::<A>(event)?, Recorded { index: event.index, time: event.time });
    }
    Ok(Some(view))
}

fn encode_view(view: &impl Serialize) -> Result<Value, StoreError> {
    serde_json::to_value(view).map_err(|e| StoreError::Corrupt(format!("view not serializable: {e}")))
}
