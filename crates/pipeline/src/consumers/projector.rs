//! `project-snapshots`: keeps the read model of every stream in the snapshot
//! store. Order-safe and idempotent: a snapshot carries the version it
//! reflects, events it already contains are skipped, a gap is filled from the
//! event store, and an older snapshot never replaces a newer one.

use std::sync::Arc;

use async_trait::async_trait;
use orderflow_domain::inventory::Inventory;
use orderflow_domain::order::Order;
use orderflow_domain::Aggregate;

use super::{group_in_order, Consumer};
use crate::ports::{EventRecord, EventStore, Snapshot, SnapshotStore, StartFrom, StoreError};
use crate::streams::{decode_event, decode_state, encode_state, Category};

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
            let snapshot = current.remove(&stream_id);
            let version = snapshot.as_ref().map_or(0, |s| s.version);
            events.sort_by_key(|e| e.index);
            events.retain(|e| e.index >= version);
            let Some(first) = events.first() else { continue };
            // Events this batch does not have (another feed range, or a
            // snapshot that fell behind): read them from the event store.
            let missing = if first.index > version {
                self.events.read_stream(&stream_id, version, (first.index - version) as usize).await?
            } else {
                Vec::new()
            };
            let all: Vec<&EventRecord> = missing.iter().chain(events.iter().copied()).collect();
            if let Some(next) = project(snapshot, &all)? {
                updated.push(next);
            }
        }
        self.snapshots.put(updated).await
    }
}

/// Applies `events` (contiguous, starting at the snapshot's version) to a
/// snapshot. `None` when there is nothing to apply.
pub fn project(snapshot: Option<Snapshot>, events: &[&EventRecord]) -> Result<Option<Snapshot>, StoreError> {
    let Some(last) = events.last() else { return Ok(snapshot) };
    let stream_id = last.stream_id.clone();
    let version = snapshot.as_ref().map_or(0, |s| s.version);
    let expected: Vec<u64> = (version..version + events.len() as u64).collect();
    if events.iter().map(|e| e.index).ne(expected) {
        return Err(StoreError::Corrupt(format!("events of {stream_id} are not contiguous from version {version}")));
    }
    let state = snapshot.map(|s| s.state);
    let (state, customer_id) = match Category::of(&stream_id) {
        Some((Category::Order, _)) => {
            let state = fold::<Order>(state.as_ref(), events)?;
            let customer_id = Some(state.customer_id.clone());
            (encode_state::<Order>(&state)?, customer_id)
        }
        Some((Category::Sku, _)) => (encode_state::<Inventory>(&fold::<Inventory>(state.as_ref(), events)?)?, None),
        None => return Err(StoreError::Corrupt(format!("unknown stream category in {stream_id}"))),
    };
    Ok(Some(Snapshot { stream_id, version: last.index + 1, updated_at: last.time, customer_id, state }))
}

fn fold<A: Aggregate>(state: Option<&serde_json::Value>, events: &[&EventRecord]) -> Result<A::State, StoreError> {
    let mut state = decode_state::<A>(state)?;
    for event in events {
        state = A::evolve(state, &decode_event::<A>(event)?);
    }
    Ok(state)
}
