//! Read models: what queries read of a stream, kept up to date event by
//! event (as cqrs-es's `View`). A view is shaped for the queries it serves,
//! not for deciding: a SKU decides on two counters, while its view lists the
//! reservations that are open, by order, with their age.
//!
//! A view's shape may change between builds: a stored view that no longer
//! reads as the current shape is built again from its stream's events (the
//! projector does it), so a view has no versions, unlike events.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Where and when an event was recorded: what a view may keep of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// Its 0-based position in its stream.
    pub index: u64,
    pub time: DateTime<Utc>,
}

pub trait View: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    type Event;

    fn update(&mut self, event: &Self::Event, recorded: Recorded);
}
