//! The stock of one SKU: `onHand`, `reserved`, and `available = onHand - reserved`.
//!
//! Stock is reserved per order and per reservation attempt, all or nothing for
//! the quantity asked. A reservation ends either released (the order was
//! cancelled or backordered: the stock is available again) or shipped (the
//! stock leaves the warehouse: `onHand` and `reserved` both go down).
//!
//! The state is two counters, whatever the number of open reservations: a
//! hot SKU with a hundred thousand open orders decides as fast as an idle
//! one. Which reservations are open is the orders' to know (each order
//! records what it reserved, and its release and shipment name the
//! quantities), and each reaction reaches the SKU once (the pipeline keeps
//! its idempotency key). A release or shipment of more than is reserved is
//! refused rather than counted.
//!
//! A restock only adds stock. It does not touch orders that were backordered
//! for want of it: those stay `Backordered` until someone confirms them again
//! (which starts a new reservation attempt) or cancels them. Handing freshly
//! received stock to waiting orders silently would take the decision of which
//! order goes first away from the people who run the shop.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contract::EventContract;
use crate::values::{Reason, StockDelta, StockQuantity};
use crate::{Aggregate, Recorded, Rejection, Rule, View};

pub use crate::limits::MAX_STOCK_CHANGE;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SkuState {
    pub on_hand: u64,
    pub reserved: u64,
}

impl SkuState {
    pub fn available(&self) -> u64 {
        self.on_hand.saturating_sub(self.reserved)
    }
}

/// What people read of a SKU: its counters and the reservations that are
/// open, oldest first, with when each was made. At most
/// [`MAX_LISTED_RESERVATIONS`] are listed (a view must stay one small
/// document however hot the SKU); the rest are counted (`unlisted`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkuView {
    pub on_hand: u64,
    pub reserved: u64,
    /// No `default`: a view stored before reservations were listed does not
    /// read, and is built again from the stream.
    pub open_reservations: Vec<OpenReservation>,
    pub unlisted: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenReservation {
    pub order_id: String,
    pub attempt: u32,
    pub quantity: u32,
    pub since: DateTime<Utc>,
}

pub const MAX_LISTED_RESERVATIONS: usize = 1000;

impl SkuView {
    pub fn available(&self) -> u64 {
        self.on_hand.saturating_sub(self.reserved)
    }

    fn close(&mut self, order_id: &str, attempt: u32) {
        match self.open_reservations.iter().position(|r| r.order_id == order_id && r.attempt == attempt) {
            Some(position) => drop(self.open_reservations.remove(position)),
            None => self.unlisted = self.unlisted.saturating_sub(1),
        }
    }
}

impl View for SkuView {
    type Event = InventoryEvent;

    fn update(&mut self, event: &InventoryEvent, recorded: Recorded) {
        use InventoryEvent as E;
        let counters = evolve(SkuState { on_hand: self.on_hand, reserved: self.reserved }, event);
        (self.on_hand, self.reserved) = (counters.on_hand, counters.reserved);
        match event {
            E::StockReserved { order_id, attempt, quantity } => {
                if self.open_reservations.len() < MAX_LISTED_RESERVATIONS {
                    let (order_id, attempt, quantity) = (order_id.clone(), *attempt, *quantity);
                    self.open_reservations.push(OpenReservation { order_id, attempt, quantity, since: recorded.time });
                } else {
                    self.unlisted += 1;
                }
            }
            E::StockReleased { order_id, attempt, .. } | E::StockShipped { order_id, attempt, .. } => {
                self.close(order_id, *attempt)
            }
            E::Restocked { .. } | E::Adjusted { .. } | E::ReservationRejected { .. } => {}
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryCommand {
    Restock {
        quantity: StockQuantity,
    },
    Adjust {
        delta: StockDelta,
        reason: Reason,
    },
    Reserve {
        order_id: String,
        attempt: u32,
        quantity: u32,
    },
    /// Gives back what an order's attempt reserved.
    Release {
        order_id: String,
        attempt: u32,
        quantity: u32,
    },
    /// The reserved stock left with a shipment.
    Ship {
        order_id: String,
        attempt: u32,
        quantity: u32,
    },
}

impl InventoryCommand {
    /// The command's name, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            InventoryCommand::Restock { .. } => "Restock",
            InventoryCommand::Adjust { .. } => "Adjust",
            InventoryCommand::Reserve { .. } => "Reserve",
            InventoryCommand::Release { .. } => "Release",
            InventoryCommand::Ship { .. } => "Ship",
        }
    }
}

/// The storage contract of this stream kind (see [`crate::contract`]): never
/// change a variant's shape without a new version in its `Aggregate::EVENTS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(strum::VariantNames))]
#[serde(tag = "type", content = "data", rename_all_fields = "camelCase")]
pub enum InventoryEvent {
    Restocked { quantity: u64 },
    Adjusted { delta: i64, reason: String },
    StockReserved { order_id: String, attempt: u32, quantity: u32 },
    ReservationRejected { order_id: String, attempt: u32, quantity: u32, available: u64 },
    StockReleased { order_id: String, attempt: u32, quantity: u32 },
    StockShipped { order_id: String, attempt: u32, quantity: u32 },
}

pub struct Inventory;

impl Aggregate for Inventory {
    const CATEGORY: &'static str = "Sku";
    type State = SkuState;
    type Command = InventoryCommand;
    type Event = InventoryEvent;
    /// No event type has changed its shape yet: every one is at version 1.
    const EVENTS: EventContract = EventContract { upcasts: &[] };
    type View = SkuView;

    fn decide(state: &SkuState, command: &InventoryCommand) -> Result<Vec<InventoryEvent>, Rejection> {
        decide(state, command)
    }

    fn evolve(state: SkuState, event: &InventoryEvent) -> SkuState {
        evolve(state, event)
    }

    fn status(_: &SkuState) -> Option<&'static str> {
        None
    }
}

pub fn decide(state: &SkuState, command: &InventoryCommand) -> Result<Vec<InventoryEvent>, Rejection> {
    use InventoryCommand as C;
    use InventoryEvent as E;
    match command {
        C::Restock { quantity } => Ok(vec![E::Restocked { quantity: quantity.get() }]),
        C::Adjust { delta, reason } => {
            let on_hand = state.on_hand.checked_add_signed(delta.get());
            if on_hand.is_none_or(|on_hand| on_hand < state.reserved) {
                return Err(Rejection::rule(
                    Rule::InsufficientStock,
                    format!(
                        "an adjustment of {} would leave less on hand than the {} reserved",
                        delta.get(),
                        state.reserved
                    ),
                ));
            }
            Ok(vec![E::Adjusted { delta: delta.get(), reason: reason.to_string() }])
        }
        C::Reserve { order_id, attempt, quantity } => {
            let (order_id, attempt, quantity) = (order_id.clone(), *attempt, *quantity);
            if u64::from(quantity) <= state.available() && quantity > 0 {
                Ok(vec![E::StockReserved { order_id, attempt, quantity }])
            } else {
                Ok(vec![E::ReservationRejected { order_id, attempt, quantity, available: state.available() }])
            }
        }
        C::Release { order_id, attempt, quantity } => {
            ensure_reserved(state, *quantity, "released")?;
            Ok(vec![E::StockReleased { order_id: order_id.clone(), attempt: *attempt, quantity: *quantity }])
        }
        C::Ship { order_id, attempt, quantity } => {
            ensure_reserved(state, *quantity, "shipped")?;
            Ok(vec![E::StockShipped { order_id: order_id.clone(), attempt: *attempt, quantity: *quantity }])
        }
    }
}

/// A release or shipment takes back only what is reserved (and on hand).
fn ensure_reserved(state: &SkuState, quantity: u32, action: &str) -> Result<(), Rejection> {
    let quantity = u64::from(quantity);
    if quantity > state.reserved || quantity > state.on_hand {
        return Err(Rejection::rule(
            Rule::NotReserved,
            format!("{quantity} cannot be {action}: {} are reserved, {} on hand", state.reserved, state.on_hand),
        ));
    }
    Ok(())
}

pub fn evolve(mut state: SkuState, event: &InventoryEvent) -> SkuState {
    use InventoryEvent as E;
    match event {
        E::Restocked { quantity } => state.on_hand = state.on_hand.saturating_add(*quantity),
        E::Adjusted { delta, .. } => state.on_hand = state.on_hand.saturating_add_signed(*delta),
        E::StockReserved { quantity, .. } => state.reserved = state.reserved.saturating_add(u64::from(*quantity)),
        E::ReservationRejected { .. } => {}
        E::StockReleased { quantity, .. } => state.reserved = state.reserved.saturating_sub(u64::from(*quantity)),
        E::StockShipped { quantity, .. } => {
            state.reserved = state.reserved.saturating_sub(u64::from(*quantity));
            state.on_hand = state.on_hand.saturating_sub(u64::from(*quantity));
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use InventoryCommand as C;
    use InventoryEvent as E;

    /// A value checked as a door would check it (`String`s pass as they are).
    fn v<T: TryFrom<&'static str, Error: std::fmt::Debug>>(text: &'static str) -> T {
        T::try_from(text).expect("a valid value")
    }

    fn restock(quantity: u64) -> InventoryCommand {
        C::Restock { quantity: StockQuantity::try_from(quantity).expect("a quantity") }
    }

    fn given(commands: &[InventoryCommand]) -> SkuState {
        commands.iter().fold(SkuState::default(), |state, command| {
            let events = decide(&state, command).unwrap_or_else(|r| panic!("{command:?} rejected: {r}"));
            Inventory::fold(state, &events)
        })
    }

    fn reserve(order: &str, quantity: u32) -> InventoryCommand {
        C::Reserve { order_id: order.into(), attempt: 1, quantity }
    }

    #[test]
    fn restock_adds_to_on_hand() {
        let state = given(&[restock(10), restock(5)]);
        assert_eq!((state.on_hand, state.reserved, state.available()), (15, 0, 15));
    }

    #[test]
    fn reservations_are_all_or_nothing() {
        let state = given(&[restock(3), reserve("o1", 2)]);
        assert_eq!((state.on_hand, state.reserved, state.available()), (3, 2, 1));
        assert_eq!(
            decide(&state, &reserve("o2", 2)).unwrap(),
            vec![E::ReservationRejected { order_id: v("o2"), attempt: 1, quantity: 2, available: 1 }]
        );
        let unknown_sku = SkuState::default();
        assert!(matches!(&decide(&unknown_sku, &reserve("o1", 1)).unwrap()[..], [E::ReservationRejected { .. }]));
    }

    #[test]
    fn release_returns_stock_and_never_more_than_is_reserved() {
        let release = |quantity| C::Release { order_id: v("o1"), attempt: 1, quantity };
        let released = given(&[restock(3), reserve("o1", 2), release(2)]);
        assert_eq!((released.on_hand, released.reserved, released.available()), (3, 0, 3));
        assert_eq!(decide(&released, &release(2)).unwrap_err().code(), "not-reserved");
    }

    #[test]
    fn shipping_takes_reserved_stock_off_hand() {
        let ship = |quantity| C::Ship { order_id: v("o1"), attempt: 1, quantity };
        let state = given(&[restock(3), reserve("o1", 2), ship(2)]);
        assert_eq!((state.on_hand, state.reserved, state.available()), (1, 0, 1));
        assert_eq!(decide(&state, &ship(2)).unwrap_err().code(), "not-reserved");
    }

    #[test]
    fn the_state_stays_two_counters_however_many_reservations_are_open() {
        let restocked = given(&[restock(1_000_000)]);
        let state = (0..100_000).fold(restocked, |state, i| {
            let events = decide(&state, &reserve(&format!("order-{i}"), 1)).unwrap();
            Inventory::fold(state, &events)
        });
        assert_eq!(state.reserved, 100_000);
        assert_eq!(state, SkuState { on_hand: 1_000_000, reserved: 100_000 });
    }

    #[test]
    fn adjustments_cannot_undercut_reservations() {
        let state = given(&[restock(5), reserve("o1", 3)]);
        let shrink = |delta| C::Adjust { delta: StockDelta::try_from(delta).expect("a delta"), reason: v("count") };
        assert_eq!(decide(&state, &shrink(-3)).unwrap_err().code(), "insufficient-stock");
        assert!(StockDelta::try_from(i64::MIN).is_err() && StockDelta::try_from(0).is_err(), "never reach decide");
        let adjusted = Inventory::fold(state.clone(), &decide(&state, &shrink(-2)).unwrap());
        assert_eq!((adjusted.on_hand, adjusted.available()), (3, 0));
    }

    fn viewed(events: &[InventoryEvent]) -> SkuView {
        let start = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
        events.iter().enumerate().fold(SkuView::default(), |mut view, (index, event)| {
            let time = start + chrono::Duration::minutes(index as i64);
            view.update(event, Recorded { index: index as u64, time });
            view
        })
    }

    #[test]
    fn the_view_lists_open_reservations_by_order_with_their_age() {
        let reserved = |order: &str, attempt| E::StockReserved { order_id: order.into(), attempt, quantity: 2 };
        let view = viewed(&[
            E::Restocked { quantity: 10 },
            reserved("o1", 1),
            reserved("o2", 1),
            E::StockReleased { order_id: v("o1"), attempt: 1, quantity: 2 },
            reserved("o1", 2),
            reserved("o3", 1),
            E::StockShipped { order_id: v("o3"), attempt: 1, quantity: 2 },
            E::ReservationRejected { order_id: v("o4"), attempt: 1, quantity: 99, available: 6 },
        ]);
        let open: Vec<(&str, u32, i64)> = view
            .open_reservations
            .iter()
            .map(|r| (r.order_id.as_str(), r.attempt, r.since.timestamp() - 1_700_000_000))
            .collect();
        assert_eq!(open, [("o2", 1, 120), ("o1", 2, 240)]);
        assert_eq!((view.on_hand, view.reserved, view.available(), view.unlisted), (8, 4, 4, 0));
    }

    #[test]
    fn the_view_counts_what_it_cannot_list_and_keeps_its_counters_exact() {
        let count = MAX_LISTED_RESERVATIONS as u32 + 5;
        let mut events = vec![E::Restocked { quantity: 1_000_000 }];
        events.extend((0..count).map(|i| E::StockReserved { order_id: format!("o{i}"), attempt: 1, quantity: 1 }));
        // The first listed one and an unlisted one end.
        events.push(E::StockReleased { order_id: v("o0"), attempt: 1, quantity: 1 });
        events.push(E::StockShipped { order_id: format!("o{}", count - 1), attempt: 1, quantity: 1 });
        let view = viewed(&events);
        assert_eq!(view.open_reservations.len(), MAX_LISTED_RESERVATIONS - 1);
        assert_eq!(view.unlisted, 4);
        assert_eq!(view.open_reservations.len() as u64 + view.unlisted, u64::from(count) - 2);
        assert_eq!((view.on_hand, view.reserved), (1_000_000 - 1, u64::from(count) - 2));
    }

    #[test]
    fn a_view_stored_before_reservations_were_listed_does_not_read() {
        let old = serde_json::json!({"onHand": 3, "reserved": 1});
        assert!(serde_json::from_value::<SkuView>(old).is_err());
    }
}
