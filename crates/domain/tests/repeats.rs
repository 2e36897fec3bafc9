//! The rule every `decide` of an order keeps (architecture.md, "Repeats are
//! no-ops"): a command that was accepted, sent again to the state it
//! produced, records nothing more — it is answered as a no-op or refused.
//! Checked over states reached by random sequences of commands, as Equinox's
//! `verifyIdempotency`.
//!
//! The one exception is named: a reservation that is declined (its attempt
//! is no longer current, or the order no longer waits for it) is declined
//! each time it comes — the order keeps no memory of old attempts, to stay
//! bounded — and the pipeline's idempotency key on each reaction makes it
//! reach the order once.

use orderflow_domain::deadlines::{BackorderAction, Deadline};
use orderflow_domain::order::{decide, evolve, NewLine, OrderCommand, OrderEvent, OrderState, OrderStatus};
use proptest::prelude::*;

/// A command, with what depends on the state (the amount due, the quantity
/// ordered, the current attempt) filled in from the state it is sent to:
/// random sequences then reach reserved, paid and shipped orders, not only
/// refusals.
#[derive(Debug, Clone)]
enum Step {
    /// The next step of the happy path from the current state (place,
    /// confirm, reserve a line, pay, ship, deliver), so that random
    /// sequences get far along it.
    Advance,
    Place {
        currency: &'static str,
        skus: Vec<&'static str>,
    },
    AddLine {
        sku: &'static str,
        quantity: u32,
    },
    RemoveLine {
        sku: &'static str,
    },
    Confirm,
    Cancel,
    Reserve {
        sku: &'static str,
        stale: bool,
        quantity_off: bool,
    },
    FailReservation {
        sku: &'static str,
    },
    PayTotal {
        payment_id: &'static str,
    },
    PayOther {
        payment_id: &'static str,
        amount_minor: u64,
    },
    FailPayment {
        payment_id: &'static str,
    },
    Ship {
        shipment_id: &'static str,
    },
    Deliver {
        shipment_id: &'static str,
    },
    PaymentDeadline,
    BackorderDeadline {
        cancel: bool,
    },
    DeliveryDeadline {
        shipment_id: &'static str,
    },
}

const SKUS: [&str; 3] = ["A", "B", "C"];
const IDS: [&str; 2] = ["x1", "x2"];

fn step() -> impl Strategy<Value = Step> {
    let sku = || proptest::sample::select(&SKUS[..]);
    let id = || proptest::sample::select(&IDS[..]);
    prop_oneof![
        20 => Just(Step::Advance),
        1 => (proptest::sample::select(&["EUR", "USD"][..]), proptest::sample::subsequence(&SKUS[..], 0..=3))
            .prop_map(|(currency, skus)| Step::Place { currency, skus }),
        1 => (sku(), 1..3u32).prop_map(|(sku, quantity)| Step::AddLine { sku, quantity }),
        1 => sku().prop_map(|sku| Step::RemoveLine { sku }),
        1 => Just(Step::Confirm),
        1 => Just(Step::Cancel),
        1 => (sku(), proptest::bool::weighted(0.2), proptest::bool::weighted(0.1))
            .prop_map(|(sku, stale, quantity_off)| Step::Reserve { sku, stale, quantity_off }),
        1 => sku().prop_map(|sku| Step::FailReservation { sku }),
        1 => id().prop_map(|payment_id| Step::PayTotal { payment_id }),
        1 => (id(), 0..500u64).prop_map(|(payment_id, amount_minor)| Step::PayOther { payment_id, amount_minor }),
        1 => id().prop_map(|payment_id| Step::FailPayment { payment_id }),
        1 => id().prop_map(|shipment_id| Step::Ship { shipment_id }),
        1 => id().prop_map(|shipment_id| Step::Deliver { shipment_id }),
        1 => Just(Step::PaymentDeadline),
        1 => any::<bool>().prop_map(|cancel| Step::BackorderDeadline { cancel }),
        1 => id().prop_map(|shipment_id| Step::DeliveryDeadline { shipment_id }),
    ]
}

fn line(sku: &str, quantity: u32) -> NewLine {
    NewLine::new(sku, quantity, 100).expect("a valid line")
}

/// A value as a door would check it (`String`s pass as they are).
fn v<T: TryFrom<String, Error: std::fmt::Debug>>(text: impl Into<String>) -> T {
    T::try_from(text.into()).expect("a valid value")
}

fn command(step: &Step, state: &OrderState) -> OrderCommand {
    let ordered = |sku: &str| state.lines.iter().find(|l| l.sku == sku).map_or(1, |l| l.quantity);
    match step.clone() {
        Step::Advance => advance(state),
        Step::Place { currency, skus } => OrderCommand::Place {
            customer_id: v("c-1"),
            currency: v(currency),
            lines: skus.iter().map(|sku| line(sku, 1)).collect(),
        },
        Step::AddLine { sku, quantity } => OrderCommand::AddLine { line: line(sku, quantity) },
        Step::RemoveLine { sku } => OrderCommand::RemoveLine { sku: v(sku) },
        Step::Confirm => OrderCommand::Confirm,
        Step::Cancel => OrderCommand::Cancel { reason: Some(v("changed my mind")) },
        Step::Reserve { sku, stale, quantity_off } => OrderCommand::RecordReservation {
            sku: v(sku),
            attempt: if stale { state.attempt.saturating_sub(1) } else { state.attempt },
            quantity: ordered(sku) + u32::from(quantity_off),
        },
        Step::FailReservation { sku } => OrderCommand::RecordReservationFailure { sku: v(sku), attempt: state.attempt },
        Step::PayTotal { payment_id } => OrderCommand::AuthorizePayment {
            payment_id: v(payment_id),
            amount_minor: state.total_minor(),
            // No order yet has no currency: any will do, the order is not found.
            currency: v(if state.currency.is_empty() { "EUR".to_string() } else { state.currency.clone() }),
        },
        Step::PayOther { payment_id, amount_minor } => {
            OrderCommand::AuthorizePayment { payment_id: v(payment_id), amount_minor, currency: v("EUR") }
        }
        Step::FailPayment { payment_id } => {
            OrderCommand::FailPayment { payment_id: v(payment_id), reason: v("declined") }
        }
        Step::Ship { shipment_id } => {
            OrderCommand::Ship { shipment_id: v(shipment_id), carrier: v("DHL"), tracking_number: v("T-1") }
        }
        Step::Deliver { shipment_id } => OrderCommand::Deliver { shipment_id: v(shipment_id) },
        Step::PaymentDeadline => OrderCommand::PassDeadline { deadline: Deadline::Payment { attempt: state.attempt } },
        Step::BackorderDeadline { cancel } => OrderCommand::PassDeadline {
            deadline: Deadline::Backorder {
                attempt: state.attempt,
                action: if cancel { BackorderAction::Cancel } else { BackorderAction::Notify },
            },
        },
        Step::DeliveryDeadline { shipment_id } => {
            OrderCommand::PassDeadline { deadline: Deadline::Delivery { shipment_id: v(shipment_id) } }
        }
    }
}

fn advance(state: &OrderState) -> OrderCommand {
    let unreserved = state.lines.iter().find(|l| !state.reserved.contains_key(&l.sku));
    match (state.status, unreserved) {
        (OrderStatus::New, _) => command(&Step::Place { currency: "EUR", skus: SKUS.to_vec() }, state),
        (OrderStatus::Confirmed, Some(line)) => {
            OrderCommand::RecordReservation { sku: line.sku.clone(), attempt: state.attempt, quantity: line.quantity }
        }
        (OrderStatus::Reserved, _) => command(&Step::PayTotal { payment_id: "x1" }, state),
        (OrderStatus::ReadyToShip, _) => command(&Step::Ship { shipment_id: "x1" }, state),
        (OrderStatus::Shipped | OrderStatus::Delivered, _) => command(&Step::Deliver { shipment_id: "x1" }, state),
        _ => OrderCommand::Confirm,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn an_accepted_command_sent_again_records_nothing(steps in proptest::collection::vec(step(), 1..40)) {
        let mut state = OrderState::default();
        let mut reached = Vec::new();
        for step in &steps {
            let command = command(step, &state);
            let Ok(events) = decide(&state, &command) else { continue };
            if events.is_empty() {
                continue;
            }
            let after = events.iter().fold(state.clone(), evolve);
            let declined = matches!(events[..], [OrderEvent::ReservationDeclined { .. }]);
            if !declined {
                let again = decide(&after, &command);
                prop_assert!(
                    again.as_ref().map_or(true, Vec::is_empty),
                    "{command:?} again after {reached:?} recorded {again:?}"
                );
            }
            reached.push(command.name());
            state = after;
        }
    }
}
