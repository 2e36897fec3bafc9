//! orderflow's pipeline: the stateless steps of DESIGN §1, written once
//! against the narrow ports in [`ports`].
//!
//! - [`processor`]: load state, decide, append (optimistic, idempotent).
//! - [`ingest`]: CloudEvents from back-end systems → commands, or dead letters
//!   ([`dead_letters`]); each message as it arrived is a [`delivery`].
//! - [`consumers`]: the change-feed consumers (`project-snapshots`,
//!   `publish-events`, `fulfillment`) and the loop that drives them.
//! - [`streams`]: the kinds of stream, their ids and how their events are stored.
//! - [`topics`]: every Kafka topic, with its setting.
//! - [`cloudevents`]: the CloudEvents Kafka binding of downstream messages.
//! - [`reads`]: a stream's read model, at least at the version a reader wrote.
//! - [`archive`]: orders closed long ago move their events to the archive.
//! - [`deadlines`]: timers that order events start, and the time-driven step
//!   that passes them when due.
//! - [`time_driven`]: both, as a scheduled host runs them.
//! - `memory` (feature `memory`): every store port in memory, for tests.

pub mod archive;
pub mod cloudevents;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod consumers;
pub mod dead_letters;
pub mod deadlines;
pub mod delivery;
pub mod feed_ranges;
pub mod ingest;
#[cfg(any(test, feature = "memory"))]
pub mod memory;
pub mod ports;
pub mod processor;
pub mod reads;
pub mod streams;
pub mod time_driven;
pub mod topics;
pub mod trace;

pub use ports::StoreError;
