//! The fulfillment process manager's policy: which commands an event calls for.
//!
//! | event | commands |
//! |---|---|
//! | order `Confirmed` | `Reserve` on the SKU of every line |
//! | SKU `StockReserved` / `ReservationRejected` | `RecordReservation` / `RecordReservationFailure` on the order |
//! | order `Backordered`, `Cancelled` | `Release` of every line reserved in that attempt |
//! | order `ReservationDeclined` | `Release` of that SKU's reservation |
//! | order `Shipped` | `Ship` on the SKU of every line (the stock leaves) |
//!
//! Each reaction carries what its target needs to decide (a release or a
//! shipment names its quantity, which the order recorded), so the SKU's
//! state stays two counters. Repeats: orders treat a repeated reaction as a
//! no-op; SKUs count on the pipeline, which applies each reaction once (its
//! idempotency key is the event and the reaction's number).

use crate::inventory::{InventoryCommand, InventoryEvent};
use crate::order::{LineQuantity, OrderCommand, OrderEvent};

/// A command addressed to one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Order { order_id: String, command: OrderCommand },
    Inventory { sku: String, command: InventoryCommand },
}

impl Command {
    /// The command's name, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Order { command, .. } => command.name(),
            Command::Inventory { command, .. } => command.name(),
        }
    }
}

/// An event together with the stream it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Order { order_id: String, event: OrderEvent },
    Inventory { sku: String, event: InventoryEvent },
}

pub fn react(event: &Event) -> Vec<Command> {
    match event {
        Event::Order { order_id, event } => react_to_order(order_id, event),
        Event::Inventory { sku, event } => react_to_inventory(sku, event),
    }
}

fn react_to_order(order_id: &str, event: &OrderEvent) -> Vec<Command> {
    let for_each_line = |lines: &[LineQuantity], make: &dyn Fn(&LineQuantity) -> InventoryCommand| {
        lines.iter().map(|line| Command::Inventory { sku: line.sku.clone(), command: make(line) }).collect()
    };
    let order_id = order_id.to_string();
    match event {
        OrderEvent::Confirmed { attempt, lines } => for_each_line(lines, &|line| InventoryCommand::Reserve {
            order_id: order_id.clone(),
            attempt: *attempt,
            quantity: line.quantity,
        }),
        OrderEvent::Backordered { attempt, release, .. } | OrderEvent::Cancelled { attempt, release, .. } => {
            for_each_line(release, &|line| InventoryCommand::Release {
                order_id: order_id.clone(),
                attempt: *attempt,
                quantity: line.quantity,
            })
        }
        OrderEvent::ReservationDeclined { attempt, sku, quantity } => vec![Command::Inventory {
            sku: sku.clone(),
            command: InventoryCommand::Release { order_id, attempt: *attempt, quantity: *quantity },
        }],
        OrderEvent::Shipped { attempt, lines, .. } => for_each_line(lines, &|line| InventoryCommand::Ship {
            order_id: order_id.clone(),
            attempt: *attempt,
            quantity: line.quantity,
        }),
        _ => vec![],
    }
}

fn react_to_inventory(sku: &str, event: &InventoryEvent) -> Vec<Command> {
    let sku = sku.to_string();
    match event {
        InventoryEvent::StockReserved { order_id, attempt, quantity } => vec![Command::Order {
            order_id: order_id.clone(),
            command: OrderCommand::RecordReservation { sku, attempt: *attempt, quantity: *quantity },
        }],
        InventoryEvent::ReservationRejected { order_id, attempt, .. } => vec![Command::Order {
            order_id: order_id.clone(),
            command: OrderCommand::RecordReservationFailure { sku, attempt: *attempt },
        }],
        _ => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{self, SkuState};
    use crate::order::{self, NewLine, OrderState, OrderStatus};
    use crate::values::StockQuantity;
    use crate::Aggregate;
    use std::collections::{BTreeMap, VecDeque};

    /// A value checked as a door would check it.
    fn v<T: TryFrom<&'static str, Error: std::fmt::Debug>>(text: &'static str) -> T {
        T::try_from(text).expect("a valid value")
    }

    /// A tiny in-memory world that runs commands and reactions to completion,
    /// to check that the policy and the aggregates fit together.
    #[derive(Default)]
    struct World {
        orders: BTreeMap<String, OrderState>,
        skus: BTreeMap<String, SkuState>,
    }

    impl World {
        fn run(&mut self, command: Command) {
            let mut queue = VecDeque::from([command]);
            while let Some(command) = queue.pop_front() {
                let events = match command {
                    Command::Order { order_id, command } => {
                        let state = self.orders.entry(order_id.clone()).or_default();
                        let events = order::decide(state, &command).unwrap();
                        *state = order::Order::fold(state.clone(), &events);
                        events.into_iter().map(|event| Event::Order { order_id: order_id.clone(), event }).collect()
                    }
                    Command::Inventory { sku, command } => {
                        let state = self.skus.entry(sku.clone()).or_default();
                        let events = inventory::decide(state, &command).unwrap();
                        *state = inventory::Inventory::fold(state.clone(), &events);
                        events.into_iter().map(|event| Event::Inventory { sku: sku.clone(), event }).collect()
                    }
                };
                let events: Vec<Event> = events;
                queue.extend(events.iter().flat_map(react));
            }
        }

        fn order(&mut self, order_id: &str, command: OrderCommand) {
            self.run(Command::Order { order_id: order_id.into(), command });
        }

        fn restock(&mut self, sku: &str, quantity: u64) {
            let quantity = StockQuantity::try_from(quantity).expect("a quantity");
            self.run(Command::Inventory { sku: sku.into(), command: InventoryCommand::Restock { quantity } });
        }

        fn stock(&self, sku: &str) -> (u64, u64) {
            self.skus.get(sku).map(|s| (s.on_hand, s.reserved)).unwrap_or_default()
        }

        fn status(&self, order_id: &str) -> OrderStatus {
            self.orders[order_id].status
        }
    }

    fn place(lines: &[(&str, u32)]) -> OrderCommand {
        OrderCommand::Place {
            customer_id: v("c"),
            currency: v("EUR"),
            lines: lines.iter().map(|(sku, q)| NewLine::new(sku, *q, 100).expect("a line")).collect(),
        }
    }

    #[test]
    fn confirmation_reserves_every_line() {
        let mut world = World::default();
        world.restock("A", 5);
        world.restock("B", 5);
        world.order("o1", place(&[("A", 2), ("B", 3)]));
        world.order("o1", OrderCommand::Confirm);
        assert_eq!(world.status("o1"), OrderStatus::Reserved);
        assert_eq!(world.stock("A"), (5, 2));
        assert_eq!(world.stock("B"), (5, 3));
    }

    #[test]
    fn one_missing_line_backorders_and_releases_the_others() {
        let mut world = World::default();
        world.restock("A", 5);
        world.order("o1", place(&[("A", 2), ("B", 1)]));
        world.order("o1", OrderCommand::Confirm);
        assert_eq!(world.status("o1"), OrderStatus::Backordered);
        assert_eq!(world.stock("A"), (5, 0), "the line that was reserved is released");
        // A restock does not change the backordered order by itself ...
        world.restock("B", 1);
        assert_eq!(world.status("o1"), OrderStatus::Backordered);
        // ... confirming it again does.
        world.order("o1", OrderCommand::Confirm);
        assert_eq!(world.status("o1"), OrderStatus::Reserved);
        assert_eq!((world.stock("A"), world.stock("B")), ((5, 2), (1, 1)));
    }

    #[test]
    fn cancellation_releases_and_shipment_takes_stock() {
        let mut world = World::default();
        world.restock("A", 5);
        world.order("o1", place(&[("A", 2)]));
        world.order("o1", OrderCommand::Confirm);
        world.order("o1", OrderCommand::Cancel { reason: None });
        assert_eq!(world.stock("A"), (5, 0));

        world.order("o2", place(&[("A", 3)]));
        world.order("o2", OrderCommand::Confirm);
        world.order("o2", OrderCommand::AuthorizePayment { payment_id: v("p"), amount_minor: 300, currency: v("EUR") });
        assert_eq!(world.status("o2"), OrderStatus::ReadyToShip);
        world.order("o2", OrderCommand::Ship { shipment_id: v("s"), carrier: v("UPS"), tracking_number: v("1") });
        assert_eq!(world.stock("A"), (2, 0));
    }

    #[test]
    fn reactions_carry_the_attempt() {
        let event = Event::Order {
            order_id: "o1".into(),
            event: OrderEvent::Cancelled {
                reason: None,
                attempt: 2,
                release: vec![LineQuantity { sku: "A".into(), quantity: 1 }],
            },
        };
        assert_eq!(
            react(&event),
            vec![Command::Inventory {
                sku: "A".into(),
                command: InventoryCommand::Release { order_id: "o1".into(), attempt: 2, quantity: 1 }
            }]
        );
        let placed = Event::Order { order_id: "o1".into(), event: OrderEvent::ReadyToShip {} };
        assert!(react(&placed).is_empty());
    }
}
