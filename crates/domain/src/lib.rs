//! orderflow's domain, as pure functions in the style of Equinox aggregates.
//!
//! Two kinds of stream hold the business state: an **order** (`order`) and the
//! stock of one **SKU** (`inventory`). Each has
//! - `decide(state, command) -> Result<Vec<Event>, Rejection>`: what happens,
//! - `evolve(state, event) -> state`: how a recorded event changes the state,
//!
//! and the **fulfillment** policy (`fulfillment::react`) turns an event of one
//! stream into the commands other streams must receive; the **deadlines**
//! policy (`deadlines::schedule`) says which deadline an event starts. What
//! queries read of a stream is its [`View`], kept up to date by `update`,
//! shaped for those queries rather than for deciding. Nothing
//! here does I/O, reads the clock, or knows how events are stored or
//! transported.

pub mod contract;
pub mod deadlines;
pub mod fulfillment;
#[cfg(test)]
mod golden;
pub mod inventory;
pub mod limits;
pub mod order;
mod rejection;
pub mod values;
pub mod views;

pub use fulfillment::{react, Command, Event};
pub use rejection::{Rejection, Rule};
pub use views::{Recorded, View};

use contract::EventContract;
use serde::{de::DeserializeOwned, Serialize};

/// One kind of stream: its state, commands and events, and the two functions
/// that give them meaning. The pipeline is written once against this trait.
pub trait Aggregate {
    /// The prefix of this kind's stream ids (`Order-{orderId}`, `Sku-{sku}`).
    const CATEGORY: &'static str;
    type State: Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static;
    type Command: Send + Sync;
    /// Serialized adjacently tagged: `{"type": "Placed", "data": {...}}`.
    type Event: Clone + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The versions of the events' shapes and how older ones come up (see [`contract`]).
    const EVENTS: EventContract;
    /// What queries read of a stream of this kind (its read model).
    type View: View<Event = Self::Event>;

    fn decide(state: &Self::State, command: &Self::Command) -> Result<Vec<Self::Event>, Rejection>;
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;
    /// A one-word summary of the state for command answers (`"Placed"`), if any.
    fn status(state: &Self::State) -> Option<&'static str>;

    fn fold<'a>(state: Self::State, events: impl IntoIterator<Item = &'a Self::Event>) -> Self::State {
        events.into_iter().fold(state, Self::evolve)
    }
}
