//! Deadlines: what an order calls for when time passes without news.
//!
//! | event | deadline started | when it passes, if still relevant |
//! |---|---|---|
//! | order `Reserved` | payment (default 30 min) | still unpaid in that attempt: `Cancelled` with reason `payment-timeout` (the reserved stock is released by the usual reactions) |
//! | order `Backordered` | backorder (off unless set) | still backordered in that attempt: `Cancelled` with reason `backorder-timeout`, or a `BackorderOverdue` notice |
//! | order `Shipped` | delivery (off unless set) | still not delivered: a `DeliveryOverdue` notice |
//!
//! [`schedule`] says which deadline an event starts and how far away it is;
//! the order decides what a passed deadline means ([`crate::order`],
//! `PassDeadline`), so a deadline that is no longer relevant (paid in time,
//! confirmed again, delivered) does nothing, and passing one twice does
//! what passing it once did. Nothing here knows the time of day: the
//! pipeline stores each deadline with its due time and fires it when due.

use std::time::Duration;

use crate::order::OrderEvent;
// The deadlines are the order's to decide on (its `PassDeadline`): their
// types live with its commands.
pub use crate::order::{BackorderAction, Deadline};

/// Which deadlines orders get, and how long each is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlinePolicy {
    /// From reservation to payment; `None`: orders wait for payment forever.
    pub payment: Option<Duration>,
    /// From backorder to what `BackorderAction` says.
    pub backorder: Option<(Duration, BackorderAction)>,
    /// From shipment to the overdue notice.
    pub delivery: Option<Duration>,
}

impl Default for DeadlinePolicy {
    /// Unpaid orders give their stock back after 30 minutes; backorders and
    /// deliveries have no deadline unless one is set.
    fn default() -> Self {
        DeadlinePolicy { payment: Some(Duration::from_secs(30 * 60)), backorder: None, delivery: None }
    }
}

/// The deadline `event` starts, and in how long it passes.
pub fn schedule(event: &OrderEvent, policy: &DeadlinePolicy) -> Option<(Deadline, Duration)> {
    match event {
        OrderEvent::Reserved { attempt } => {
            policy.payment.map(|after| (Deadline::Payment { attempt: *attempt }, after))
        }
        OrderEvent::Backordered { attempt, .. } => {
            policy.backorder.map(|(after, action)| (Deadline::Backorder { attempt: *attempt, action }, after))
        }
        OrderEvent::Shipped { shipment_id, .. } => {
            policy.delivery.map(|after| (Deadline::Delivery { shipment_id: shipment_id.clone() }, after))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::{decide, evolve, OrderCommand, OrderState, OrderStatus, Payment};

    const MINUTE: Duration = Duration::from_secs(60);

    fn every_deadline() -> DeadlinePolicy {
        DeadlinePolicy {
            payment: Some(30 * MINUTE),
            backorder: Some((7 * 24 * 60 * MINUTE, BackorderAction::Cancel)),
            delivery: Some(14 * 24 * 60 * MINUTE),
        }
    }

    fn shipped(shipment_id: &str) -> OrderEvent {
        OrderEvent::Shipped {
            shipment_id: shipment_id.into(),
            carrier: "DHL".into(),
            tracking_number: "T1".into(),
            attempt: 1,
            lines: vec![],
        }
    }

    /// An order in `status`, in attempt 1, with one reserved line.
    fn order(status: OrderStatus) -> OrderState {
        let line = crate::order::OrderLine { sku: "SKU-1".into(), quantity: 2, unit_price_minor: 500 };
        let mut state = OrderState {
            status,
            attempt: 1,
            customer_id: "c".into(),
            currency: "EUR".into(),
            lines: vec![line],
            ..Default::default()
        };
        state.reserved.insert("SKU-1".into(), 2);
        if status == OrderStatus::Shipped {
            state.shipment = Some(crate::order::Shipment {
                shipment_id: "s-1".into(),
                carrier: "DHL".into(),
                tracking_number: "T1".into(),
            });
        }
        state
    }

    fn pass(state: &OrderState, deadline: Deadline) -> Vec<OrderEvent> {
        decide(state, &OrderCommand::PassDeadline { deadline }).expect("a deadline is never refused")
    }

    #[test]
    fn reservation_starts_the_payment_deadline_and_shipment_the_delivery_one() {
        let policy = every_deadline();
        assert_eq!(
            schedule(&OrderEvent::Reserved { attempt: 2 }, &policy),
            Some((Deadline::Payment { attempt: 2 }, 30 * MINUTE))
        );
        let backordered = OrderEvent::Backordered { attempt: 1, sku: "SKU-1".into(), release: vec![] };
        assert!(matches!(schedule(&backordered, &policy), Some((Deadline::Backorder { attempt: 1, .. }, _))));
        assert!(matches!(schedule(&shipped("s-1"), &policy), Some((Deadline::Delivery { .. }, _))));
        assert_eq!(schedule(&OrderEvent::Delivered { shipment_id: "s-1".into() }, &policy), None);
        assert_eq!(schedule(&OrderEvent::Reserved { attempt: 1 }, &DeadlinePolicy { payment: None, ..policy }), None);
        assert_eq!(schedule(&shipped("s-1"), &DeadlinePolicy::default()), None, "no delivery deadline by default");
    }

    #[test]
    fn an_unpaid_reserved_order_is_cancelled_and_its_stock_released() {
        let events = pass(&order(OrderStatus::Reserved), Deadline::Payment { attempt: 1 });
        let [OrderEvent::Cancelled { reason, attempt: 1, release }] = events.as_slice() else {
            panic!("cancelled: {events:?}")
        };
        assert_eq!(reason.as_deref(), Some("payment-timeout"));
        assert_eq!(release.len(), 1, "the reserved line is given back");
    }

    #[test]
    fn a_deadline_no_longer_relevant_does_nothing() {
        let mut paid = order(OrderStatus::ReadyToShip);
        paid.payment = Some(Payment { payment_id: "p".into(), amount_minor: 1 });
        assert_eq!(pass(&paid, Deadline::Payment { attempt: 1 }), vec![], "paid in time");
        let mut again = order(OrderStatus::Reserved);
        again.attempt = 2;
        assert_eq!(pass(&again, Deadline::Payment { attempt: 1 }), vec![], "an earlier attempt's deadline");
        assert_eq!(pass(&order(OrderStatus::Cancelled), Deadline::Payment { attempt: 1 }), vec![]);
        let mut free = order(OrderStatus::Reserved);
        free.lines[0].unit_price_minor = 0;
        assert_eq!(pass(&free, Deadline::Payment { attempt: 1 }), vec![], "nothing to pay: never cancelled for it");
        let backorder = Deadline::Backorder { attempt: 1, action: BackorderAction::Cancel };
        assert_eq!(pass(&order(OrderStatus::Confirmed), backorder), vec![], "confirmed again meanwhile");
        let delivered = order(OrderStatus::Delivered);
        assert_eq!(pass(&delivered, Deadline::Delivery { shipment_id: "s-1".into() }), vec![]);
    }

    #[test]
    fn overdue_notices_are_given_once() {
        let shipped = order(OrderStatus::Shipped);
        let deadline = Deadline::Delivery { shipment_id: "s-1".into() };
        let events = pass(&shipped, deadline.clone());
        assert_eq!(events, vec![OrderEvent::DeliveryOverdue { shipment_id: "s-1".into() }]);
        let noticed = events.iter().fold(shipped, evolve);
        assert_eq!(noticed.status, OrderStatus::Shipped, "a notice does not move the order");
        assert_eq!(pass(&noticed, deadline), vec![], "passed twice: one notice");

        let mut backordered = order(OrderStatus::Backordered);
        backordered.backordered_sku = Some("SKU-1".into());
        let notify = Deadline::Backorder { attempt: 1, action: BackorderAction::Notify };
        let events = pass(&backordered, notify.clone());
        assert_eq!(events, vec![OrderEvent::BackorderOverdue { attempt: 1, sku: "SKU-1".into() }]);
        assert_eq!(pass(&events.iter().fold(backordered.clone(), evolve), notify), vec![]);
        let cancel = Deadline::Backorder { attempt: 1, action: BackorderAction::Cancel };
        assert!(matches!(pass(&backordered, cancel).as_slice(), [OrderEvent::Cancelled { .. }]));
    }

    #[test]
    fn every_event_a_deadline_causes_is_a_deadline_that_then_does_nothing() {
        // Passing a deadline, then passing it again, is one effect: the
        // rule the pipeline relies on when a deadline fires twice.
        let cases = [
            (order(OrderStatus::Reserved), Deadline::Payment { attempt: 1 }),
            (order(OrderStatus::Shipped), Deadline::Delivery { shipment_id: "s-1".into() }),
            (order(OrderStatus::Backordered), Deadline::Backorder { attempt: 1, action: BackorderAction::Notify }),
            (order(OrderStatus::Backordered), Deadline::Backorder { attempt: 1, action: BackorderAction::Cancel }),
        ];
        for (state, deadline) in cases {
            let first = pass(&state, deadline.clone());
            assert!(!first.is_empty(), "{deadline:?} acts once");
            let after = first.iter().fold(state, evolve);
            assert_eq!(pass(&after, deadline.clone()), vec![], "{deadline:?} acts only once");
        }
    }
}
