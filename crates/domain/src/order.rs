//! An order: its lines, its status and the rules that move it along.
//!
//! ```text
//! Placed ─confirm─▶ Confirmed ─all lines reserved─▶ Reserved ─┐
//!   ▲                  │                                       ├─ paid ─▶ ReadyToShip ─▶ Shipped ─▶ Delivered
//!   │ (lines change    └─a line cannot be reserved─▶ Backordered ─confirm again─▶ Confirmed
//!   │  only here)
//! any status before Shipped ─cancel─▶ Cancelled (reserved stock is released)
//! ```
//!
//! Payment may be authorized at any point before shipment; the order becomes
//! `ReadyToShip` once it is both reserved and paid, whichever came last.
//! Every confirmation starts a new reservation *attempt*; a reservation that
//! arrives for an attempt that is no longer current (the order was cancelled
//! or backordered meanwhile) is declined, and the fulfillment policy gives
//! that stock back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::contract::EventContract;
use crate::values::{
    Carrier, Currency, CustomerId, InvalidValue, PaymentId, Quantity, Reason, ShipmentId, Sku, TrackingNumber,
    UnitPrice,
};
use crate::{Aggregate, Recorded, Rejection, Rule, View};

pub const MAX_LINES: usize = 100;
pub use crate::limits::{MAX_QUANTITY, MAX_UNIT_PRICE_MINOR};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, strum::VariantArray)]
pub enum OrderStatus {
    /// No order yet: the stream is empty.
    #[default]
    New,
    Placed,
    Confirmed,
    Reserved,
    Backordered,
    ReadyToShip,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: &'static [OrderStatus] = <OrderStatus as strum::VariantArray>::VARIANTS;
    /// The statuses an order never leaves: its stream is closed, and may be
    /// archived once old enough.
    pub const CLOSED: [OrderStatus; 2] = [OrderStatus::Delivered, OrderStatus::Cancelled];
    /// [`Self::CLOSED`] as the read model spells them.
    pub const CLOSED_NAMES: [&'static str; 2] = [Self::CLOSED[0].as_str(), Self::CLOSED[1].as_str()];

    pub const fn as_str(self) -> &'static str {
        match self {
            OrderStatus::New => "New",
            OrderStatus::Placed => "Placed",
            OrderStatus::Confirmed => "Confirmed",
            OrderStatus::Reserved => "Reserved",
            OrderStatus::Backordered => "Backordered",
            OrderStatus::ReadyToShip => "ReadyToShip",
            OrderStatus::Shipped => "Shipped",
            OrderStatus::Delivered => "Delivered",
            OrderStatus::Cancelled => "Cancelled",
        }
    }

    pub fn is_closed(self) -> bool {
        Self::CLOSED.contains(&self)
    }

    fn is_shipped(self) -> bool {
        matches!(self, OrderStatus::Shipped | OrderStatus::Delivered)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    pub sku: String,
    pub quantity: u32,
    pub unit_price_minor: u64,
}

/// What a passed backorder deadline does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BackorderAction {
    Cancel,
    Notify,
}

/// A deadline of one order. Stored with its due time until it passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Deadline {
    Payment { attempt: u32 },
    Backorder { attempt: u32, action: BackorderAction },
    Delivery { shipment_id: String },
}

impl Deadline {
    /// Unique among the deadlines of one order: the same event always
    /// schedules the same name, so scheduling again keeps one deadline.
    pub fn name(&self) -> String {
        match self {
            Deadline::Payment { attempt } => format!("payment-{attempt}"),
            Deadline::Backorder { attempt, .. } => format!("backorder-{attempt}"),
            Deadline::Delivery { shipment_id } => format!("delivery-{shipment_id}"),
        }
    }
}

/// A line as a command asks for it: each value checked at the door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLine {
    pub sku: Sku,
    pub quantity: Quantity,
    pub unit_price_minor: UnitPrice,
}

impl NewLine {
    /// A line from plain values, each checked by its type.
    pub fn new(sku: &str, quantity: u32, unit_price_minor: u64) -> Result<NewLine, InvalidValue> {
        Ok(NewLine {
            sku: Sku::try_from(sku)?,
            quantity: Quantity::try_from(quantity)?,
            unit_price_minor: UnitPrice::try_from(unit_price_minor)?,
        })
    }
}

impl From<&NewLine> for OrderLine {
    fn from(line: &NewLine) -> OrderLine {
        OrderLine {
            sku: line.sku.to_string(),
            quantity: line.quantity.get(),
            unit_price_minor: line.unit_price_minor.get(),
        }
    }
}

impl OrderLine {
    pub fn total_minor(&self) -> u64 {
        u64::from(self.quantity).saturating_mul(self.unit_price_minor)
    }
}

/// A SKU and a quantity: what a reservation or a release is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LineQuantity {
    pub sku: String,
    pub quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub payment_id: String,
    pub amount_minor: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shipment {
    pub shipment_id: String,
    pub carrier: String,
    pub tracking_number: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OrderState {
    pub status: OrderStatus,
    pub customer_id: String,
    pub currency: String,
    pub lines: Vec<OrderLine>,
    /// The current reservation attempt (1 after the first confirmation).
    pub attempt: u32,
    /// SKUs reserved in the current attempt, with their quantities.
    pub reserved: BTreeMap<String, u32>,
    pub payment: Option<Payment>,
    /// The last payment failure, while no payment is authorized.
    pub payment_failure: Option<String>,
    /// The payment that failed last: the same failure again is a repeat.
    pub failed_payment_id: Option<String>,
    pub shipment: Option<Shipment>,
    /// The SKU that could not be reserved, while `Backordered`.
    pub backordered_sku: Option<String>,
    pub cancel_reason: Option<String>,
    /// An overdue notice was given (backorder or delivery) since the last
    /// confirmation: a deadline gives one.
    pub overdue: bool,
}

impl OrderState {
    pub fn total_minor(&self) -> u64 {
        self.lines.iter().fold(0u64, |sum, line| sum.saturating_add(line.total_minor()))
    }

    fn line(&self, sku: &str) -> Option<&OrderLine> {
        self.lines.iter().find(|line| line.sku == sku)
    }

    fn reserved_lines(&self) -> Vec<LineQuantity> {
        self.reserved.iter().map(|(sku, &quantity)| LineQuantity { sku: sku.clone(), quantity }).collect()
    }

    fn line_quantities(&self) -> Vec<LineQuantity> {
        self.lines.iter().map(|line| LineQuantity { sku: line.sku.clone(), quantity: line.quantity }).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    Place {
        customer_id: CustomerId,
        currency: Currency,
        lines: Vec<NewLine>,
    },
    AddLine {
        line: NewLine,
    },
    RemoveLine {
        sku: Sku,
    },
    Confirm,
    Cancel {
        reason: Option<Reason>,
    },
    /// From fulfillment: the SKU's stream reserved stock for this order.
    RecordReservation {
        sku: String,
        attempt: u32,
        quantity: u32,
    },
    /// From fulfillment: the SKU's stream could not reserve stock.
    RecordReservationFailure {
        sku: String,
        attempt: u32,
    },
    AuthorizePayment {
        payment_id: PaymentId,
        amount_minor: u64,
        currency: Currency,
    },
    FailPayment {
        payment_id: PaymentId,
        reason: Reason,
    },
    Ship {
        shipment_id: ShipmentId,
        carrier: Carrier,
        tracking_number: TrackingNumber,
    },
    Deliver {
        shipment_id: ShipmentId,
    },
    /// From the deadlines step: `deadline` has passed.
    PassDeadline {
        deadline: Deadline,
    },
}

impl OrderCommand {
    /// The command's name, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            OrderCommand::Place { .. } => "Place",
            OrderCommand::AddLine { .. } => "AddLine",
            OrderCommand::RemoveLine { .. } => "RemoveLine",
            OrderCommand::Confirm => "Confirm",
            OrderCommand::Cancel { .. } => "Cancel",
            OrderCommand::RecordReservation { .. } => "RecordReservation",
            OrderCommand::RecordReservationFailure { .. } => "RecordReservationFailure",
            OrderCommand::AuthorizePayment { .. } => "AuthorizePayment",
            OrderCommand::FailPayment { .. } => "FailPayment",
            OrderCommand::Ship { .. } => "Ship",
            OrderCommand::Deliver { .. } => "Deliver",
            OrderCommand::PassDeadline { .. } => "PassDeadline",
        }
    }
}

/// The storage contract of this stream kind (see [`crate::contract`]): never
/// change a variant's shape without a new version in its `Aggregate::EVENTS`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(strum::VariantNames))]
#[serde(tag = "type", content = "data", rename_all_fields = "camelCase")]
pub enum OrderEvent {
    Placed {
        customer_id: String,
        currency: String,
        lines: Vec<OrderLine>,
    },
    LineAdded {
        line: OrderLine,
    },
    LineRemoved {
        sku: String,
    },
    Confirmed {
        attempt: u32,
        lines: Vec<LineQuantity>,
    },
    LineReserved {
        attempt: u32,
        sku: String,
        quantity: u32,
    },
    Reserved {
        attempt: u32,
    },
    /// `release` lists the lines reserved so far in this attempt.
    Backordered {
        attempt: u32,
        sku: String,
        release: Vec<LineQuantity>,
    },
    /// A reservation for an attempt that is no longer current: give it back.
    ReservationDeclined {
        attempt: u32,
        sku: String,
        quantity: u32,
    },
    PaymentAuthorized {
        payment_id: String,
        amount_minor: u64,
        currency: String,
    },
    PaymentFailed {
        payment_id: String,
        reason: String,
    },
    ReadyToShip {},
    Shipped {
        shipment_id: String,
        carrier: String,
        tracking_number: String,
        attempt: u32,
        lines: Vec<LineQuantity>,
    },
    Delivered {
        shipment_id: String,
    },
    Cancelled {
        reason: Option<String>,
        attempt: u32,
        release: Vec<LineQuantity>,
    },
    /// Still backordered when the backorder deadline passed (its action:
    /// notify).
    BackorderOverdue {
        attempt: u32,
        sku: String,
    },
    /// Shipped, and not delivered when the delivery deadline passed.
    DeliveryOverdue {
        shipment_id: String,
    },
}

pub struct Order;

impl Aggregate for Order {
    const CATEGORY: &'static str = "Order";
    type State = OrderState;
    type Command = OrderCommand;
    type Event = OrderEvent;
    /// No event type has changed its shape yet: every one is at version 1.
    const EVENTS: EventContract = EventContract { upcasts: &[] };
    /// An order's queries (the order, a customer's orders) read what it
    /// decides on.
    type View = OrderState;

    fn decide(state: &OrderState, command: &OrderCommand) -> Result<Vec<OrderEvent>, Rejection> {
        decide(state, command)
    }

    fn evolve(state: OrderState, event: &OrderEvent) -> OrderState {
        evolve(state, event)
    }

    fn status(state: &OrderState) -> Option<&'static str> {
        Some(state.status.as_str())
    }
}

pub fn decide(state: &OrderState, command: &OrderCommand) -> Result<Vec<OrderEvent>, Rejection> {
    use OrderCommand as C;
    use OrderStatus as S;
    if state.status == S::New && !matches!(command, C::Place { .. }) {
        return Err(Rejection::not_found("no such order"));
    }
    match command {
        C::Place { customer_id, currency, lines } => {
            if state.status != S::New {
                return Err(Rejection::rule(Rule::OrderExists, "an order with this id already exists"));
            }
            place(customer_id, currency, lines)
        }
        C::AddLine { line } => add_line(state, line),
        C::RemoveLine { sku } => {
            ensure_lines_editable(state)?;
            if state.line(sku.as_str()).is_none() {
                return Err(Rejection::rule(Rule::NoSuchLine, format!("the order has no line for SKU {sku}")));
            }
            Ok(vec![OrderEvent::LineRemoved { sku: sku.to_string() }])
        }
        C::Confirm => match state.status {
            S::Placed | S::Backordered if state.lines.is_empty() => {
                Err(Rejection::rule(Rule::NoLines, "an order without lines cannot be confirmed"))
            }
            S::Placed | S::Backordered => {
                Ok(vec![OrderEvent::Confirmed { attempt: state.attempt + 1, lines: state.line_quantities() }])
            }
            S::Confirmed | S::Reserved | S::ReadyToShip => Ok(vec![]),
            status => Err(not_in_status("confirmed", status)),
        },
        C::Cancel { reason } => match state.status {
            S::Cancelled => Ok(vec![]),
            status if status.is_shipped() => Err(not_in_status("cancelled", status)),
            _ => Ok(vec![OrderEvent::Cancelled {
                reason: reason.as_ref().map(Reason::to_string),
                attempt: state.attempt,
                release: state.reserved_lines(),
            }]),
        },
        C::RecordReservation { sku, attempt, quantity } => Ok(record_reservation(state, sku, *attempt, *quantity)),
        C::RecordReservationFailure { sku, attempt } => {
            if *attempt != state.attempt || state.status != S::Confirmed {
                // Stale or repeated news: nothing was reserved for it, nothing to do.
                return Ok(vec![]);
            }
            Ok(vec![OrderEvent::Backordered { attempt: *attempt, sku: sku.clone(), release: state.reserved_lines() }])
        }
        C::AuthorizePayment { payment_id, amount_minor, currency } => {
            authorize_payment(state, payment_id, *amount_minor, currency)
        }
        C::FailPayment { payment_id, reason } => fail_payment(state, payment_id, reason),
        C::Ship { shipment_id, carrier, tracking_number } => match state.status {
            S::ReadyToShip => Ok(vec![OrderEvent::Shipped {
                shipment_id: shipment_id.to_string(),
                carrier: carrier.to_string(),
                tracking_number: tracking_number.to_string(),
                attempt: state.attempt,
                lines: state.reserved_lines(),
            }]),
            S::Shipped | S::Delivered if is_current_shipment(state, shipment_id.as_str()) => Ok(vec![]),
            status => Err(not_in_status("shipped", status)),
        },
        C::Deliver { shipment_id } => match state.status {
            S::Shipped | S::Delivered if !is_current_shipment(state, shipment_id.as_str()) => {
                Err(Rejection::rule(Rule::UnknownShipment, format!("the order was not shipped as {shipment_id}")))
            }
            S::Shipped => Ok(vec![OrderEvent::Delivered { shipment_id: shipment_id.to_string() }]),
            S::Delivered => Ok(vec![]),
            status => Err(not_in_status("delivered", status)),
        },
        C::PassDeadline { deadline } => Ok(pass_deadline(state, deadline)),
    }
}

/// What a passed deadline does: only what is still relevant, once.
fn pass_deadline(state: &OrderState, deadline: &Deadline) -> Vec<OrderEvent> {
    let current = |attempt: &u32| *attempt == state.attempt;
    let cancel = |reason: &str| {
        vec![OrderEvent::Cancelled {
            reason: Some(reason.to_string()),
            attempt: state.attempt,
            release: state.reserved_lines(),
        }]
    };
    match deadline {
        // An order with nothing to pay is never cancelled for not paying.
        Deadline::Payment { attempt }
            if current(attempt) && state.status == OrderStatus::Reserved && state.total_minor() > 0 =>
        {
            cancel("payment-timeout")
        }
        Deadline::Backorder { attempt, action } if current(attempt) && state.status == OrderStatus::Backordered => {
            match action {
                BackorderAction::Cancel => cancel("backorder-timeout"),
                BackorderAction::Notify if state.overdue => vec![],
                BackorderAction::Notify => vec![OrderEvent::BackorderOverdue {
                    attempt: *attempt,
                    sku: state.backordered_sku.clone().unwrap_or_default(),
                }],
            }
        }
        Deadline::Delivery { shipment_id }
            if state.status == OrderStatus::Shipped && is_current_shipment(state, shipment_id) && !state.overdue =>
        {
            vec![OrderEvent::DeliveryOverdue { shipment_id: shipment_id.clone() }]
        }
        _ => vec![],
    }
}

fn record_reservation(state: &OrderState, sku: &str, attempt: u32, quantity: u32) -> Vec<OrderEvent> {
    let decline = || vec![OrderEvent::ReservationDeclined { attempt, sku: sku.to_string(), quantity }];
    if attempt == state.attempt && state.reserved.contains_key(sku) {
        return vec![]; // already recorded
    }
    let wanted = state.line(sku).map(|line| line.quantity);
    if attempt != state.attempt || state.status != OrderStatus::Confirmed || wanted != Some(quantity) {
        return decline();
    }
    let mut events = vec![OrderEvent::LineReserved { attempt, sku: sku.to_string(), quantity }];
    let all_reserved = state.lines.iter().all(|line| line.sku == sku || state.reserved.contains_key(&line.sku));
    if all_reserved {
        events.push(OrderEvent::Reserved { attempt });
        if state.payment.is_some() {
            events.push(OrderEvent::ReadyToShip {});
        }
    }
    events
}

fn is_current_shipment(state: &OrderState, shipment_id: &str) -> bool {
    state.shipment.as_ref().is_some_and(|shipment| shipment.shipment_id == shipment_id)
}

fn ensure_lines_editable(state: &OrderState) -> Result<(), Rejection> {
    if state.status != OrderStatus::Placed {
        return Err(Rejection::rule(
            Rule::OrderNotPlaced,
            format!("lines can change only while the order is Placed (it is {})", state.status.as_str()),
        ));
    }
    if state.payment.is_some() {
        return Err(Rejection::rule(Rule::AlreadyPaid, "lines cannot change once a payment is authorized"));
    }
    Ok(())
}

fn not_in_status(action: &str, status: OrderStatus) -> Rejection {
    Rejection::rule(Rule::InvalidStatus, format!("an order that is {} cannot be {action}", status.as_str()))
}

/// A new order: its values were checked at the door; what is left are the
/// rules about the lines together.
fn place(customer_id: &CustomerId, currency: &Currency, lines: &[NewLine]) -> Result<Vec<OrderEvent>, Rejection> {
    if lines.is_empty() {
        return Err(Rejection::rule(Rule::NoLines, "an order needs at least one line"));
    }
    if lines.len() > MAX_LINES {
        return Err(Rejection::rule(Rule::TooManyLines, format!("an order has at most {MAX_LINES} lines")));
    }
    for (i, line) in lines.iter().enumerate() {
        if lines[..i].iter().any(|earlier| earlier.sku == line.sku) {
            return Err(Rejection::rule(Rule::DuplicateSku, format!("SKU {} appears on more than one line", line.sku)));
        }
    }
    Ok(vec![OrderEvent::Placed {
        customer_id: customer_id.to_string(),
        currency: currency.to_string(),
        lines: lines.iter().map(OrderLine::from).collect(),
    }])
}

fn add_line(state: &OrderState, line: &NewLine) -> Result<Vec<OrderEvent>, Rejection> {
    ensure_lines_editable(state)?;
    if state.line(line.sku.as_str()).is_some() {
        return Err(Rejection::rule(Rule::DuplicateSku, format!("the order already has a line for SKU {}", line.sku)));
    }
    if state.lines.len() >= MAX_LINES {
        return Err(Rejection::rule(Rule::TooManyLines, format!("an order has at most {MAX_LINES} lines")));
    }
    Ok(vec![OrderEvent::LineAdded { line: line.into() }])
}

/// The same payment again is a no-op; another one, or one that does not
/// match the order, is refused.
fn authorize_payment(
    state: &OrderState,
    payment_id: &PaymentId,
    amount_minor: u64,
    currency: &Currency,
) -> Result<Vec<OrderEvent>, Rejection> {
    use OrderStatus as S;
    if let Some(payment) = &state.payment {
        return if payment_id == payment.payment_id.as_str() {
            Ok(vec![])
        } else {
            Err(Rejection::rule(Rule::AlreadyPaid, "the order already has an authorized payment"))
        };
    }
    match state.status {
        S::Cancelled => return Err(not_in_status("paid", S::Cancelled)),
        status if status.is_shipped() => return Err(not_in_status("paid", status)),
        _ => {}
    }
    // An order whose lines were all removed has nothing to pay for.
    if state.lines.is_empty() {
        return Err(Rejection::rule(Rule::NoLines, "an order without lines cannot be paid"));
    }
    if amount_minor == 0 {
        return Err(Rejection::rule(Rule::InvalidAmount, "a payment must be of more than 0"));
    }
    if currency != state.currency.as_str() {
        return Err(Rejection::rule(
            Rule::CurrencyMismatch,
            format!("payment is in {currency} but the order is in {}", state.currency),
        ));
    }
    if amount_minor != state.total_minor() {
        return Err(Rejection::rule(
            Rule::AmountMismatch,
            format!("payment of {amount_minor} does not match the order total of {}", state.total_minor()),
        ));
    }
    let mut events = vec![OrderEvent::PaymentAuthorized {
        payment_id: payment_id.to_string(),
        amount_minor,
        currency: currency.to_string(),
    }];
    if state.status == S::Reserved {
        events.push(OrderEvent::ReadyToShip {});
    }
    Ok(events)
}

/// The same failure again is a no-op.
fn fail_payment(state: &OrderState, payment_id: &PaymentId, reason: &Reason) -> Result<Vec<OrderEvent>, Rejection> {
    if state.failed_payment_id.as_deref() == Some(payment_id.as_str()) {
        return Ok(vec![]);
    }
    if state.payment.is_some() {
        return Err(Rejection::rule(Rule::AlreadyPaid, "the order already has an authorized payment"));
    }
    match state.status {
        OrderStatus::Cancelled => Err(not_in_status("paid", OrderStatus::Cancelled)),
        _ => Ok(vec![OrderEvent::PaymentFailed { payment_id: payment_id.to_string(), reason: reason.to_string() }]),
    }
}

impl View for OrderState {
    type Event = OrderEvent;

    fn update(&mut self, event: &OrderEvent, _: Recorded) {
        *self = evolve(std::mem::take(self), event);
    }
}

pub fn evolve(mut state: OrderState, event: &OrderEvent) -> OrderState {
    use OrderEvent as E;
    match event {
        E::Placed { customer_id, currency, lines } => {
            state.status = OrderStatus::Placed;
            state.customer_id = customer_id.clone();
            state.currency = currency.clone();
            state.lines = lines.clone();
        }
        E::LineAdded { line } => state.lines.push(line.clone()),
        E::LineRemoved { sku } => state.lines.retain(|line| &line.sku != sku),
        E::Confirmed { attempt, .. } => {
            state.status = OrderStatus::Confirmed;
            state.attempt = *attempt;
            state.reserved.clear();
            state.backordered_sku = None;
            state.overdue = false;
        }
        E::LineReserved { sku, quantity, .. } => {
            state.reserved.insert(sku.clone(), *quantity);
        }
        E::Reserved { .. } => state.status = OrderStatus::Reserved,
        E::Backordered { sku, .. } => {
            state.status = OrderStatus::Backordered;
            state.backordered_sku = Some(sku.clone());
            state.reserved.clear();
        }
        E::ReservationDeclined { .. } => {}
        E::PaymentAuthorized { payment_id, amount_minor, .. } => {
            state.payment = Some(Payment { payment_id: payment_id.clone(), amount_minor: *amount_minor });
            state.payment_failure = None;
            state.failed_payment_id = None;
        }
        E::PaymentFailed { payment_id, reason } => {
            state.payment_failure = Some(reason.clone());
            state.failed_payment_id = Some(payment_id.clone());
        }
        E::ReadyToShip {} => state.status = OrderStatus::ReadyToShip,
        E::Shipped { shipment_id, carrier, tracking_number, .. } => {
            state.status = OrderStatus::Shipped;
            state.shipment = Some(Shipment {
                shipment_id: shipment_id.clone(),
                carrier: carrier.clone(),
                tracking_number: tracking_number.clone(),
            });
        }
        E::Delivered { .. } => state.status = OrderStatus::Delivered,
        E::Cancelled { reason, .. } => {
            state.status = OrderStatus::Cancelled;
            state.cancel_reason = reason.clone();
            state.reserved.clear();
        }
        E::BackorderOverdue { .. } | E::DeliveryOverdue { .. } => state.overdue = true,
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderCommand as C;
    use OrderEvent as E;

    /// A value checked as a door would check it (`String`s pass as they are).
    fn v<T: TryFrom<&'static str, Error: std::fmt::Debug>>(text: &'static str) -> T {
        T::try_from(text).expect("a valid value")
    }

    fn line(sku: &str, quantity: u32, price: u64) -> NewLine {
        NewLine::new(sku, quantity, price).expect("a valid line")
    }

    fn place() -> OrderCommand {
        C::Place { customer_id: v("c1"), currency: v("EUR"), lines: vec![line("A", 2, 500), line("B", 1, 250)] }
    }

    /// Runs commands from an empty stream, panicking on a rejection.
    fn given(commands: &[OrderCommand]) -> OrderState {
        commands.iter().fold(OrderState::default(), |state, command| {
            let events = decide(&state, command).unwrap_or_else(|r| panic!("{command:?} rejected: {r}"));
            Order::fold(state, &events)
        })
    }

    fn reserve(sku: &str, attempt: u32, quantity: u32) -> OrderCommand {
        C::RecordReservation { sku: sku.into(), attempt, quantity }
    }

    fn pay(amount: u64) -> OrderCommand {
        C::AuthorizePayment { payment_id: v("p1"), amount_minor: amount, currency: v("EUR") }
    }

    fn ship() -> OrderCommand {
        C::Ship { shipment_id: v("s1"), carrier: v("DHL"), tracking_number: v("T1") }
    }

    fn reserved_and_paid() -> Vec<OrderCommand> {
        vec![place(), C::Confirm, reserve("A", 1, 2), reserve("B", 1, 1), pay(1250)]
    }

    fn rejected_code(state: &OrderState, command: &OrderCommand) -> &'static str {
        match decide(state, command) {
            Err(rejection) => rejection.code(),
            Ok(events) => panic!("{command:?} was accepted: {events:?}"),
        }
    }

    #[test]
    fn placing_records_lines_and_total() {
        let state = given(&[place()]);
        assert_eq!(state.status, OrderStatus::Placed);
        assert_eq!(state.total_minor(), 1250);
        assert_eq!(rejected_code(&state, &place()), "order-exists");
    }

    #[test]
    fn placing_checks_the_lines_together() {
        // Each value was checked at the door (`values`): what is left is the lines as a whole.
        let empty = OrderState::default();
        let with = |lines: Vec<NewLine>| C::Place { customer_id: v("c"), currency: v("EUR"), lines };
        assert_eq!(rejected_code(&empty, &with(vec![])), "no-lines");
        assert_eq!(rejected_code(&empty, &with(vec![line("A", 1, 1), line("A", 2, 1)])), "duplicate-sku");
        let too_many = (0..=MAX_LINES).map(|i| line(&format!("S{i}"), 1, 1)).collect();
        assert_eq!(rejected_code(&empty, &with(too_many)), "too-many-lines");
    }

    #[test]
    fn commands_on_an_unknown_order_are_not_found() {
        let empty = OrderState::default();
        for command in [C::Confirm, C::Cancel { reason: None }, pay(1), C::RemoveLine { sku: v("A") }] {
            assert_eq!(rejected_code(&empty, &command), "not-found");
        }
    }

    #[test]
    fn lines_change_only_while_placed_and_unpaid() {
        let placed = given(&[place()]);
        let added = given(&[place(), C::AddLine { line: line("C", 3, 100) }]);
        assert_eq!(added.total_minor(), 1550);
        let removed = given(&[place(), C::RemoveLine { sku: v("A") }]);
        assert_eq!(removed.lines.len(), 1);
        assert_eq!(rejected_code(&placed, &C::AddLine { line: line("A", 1, 1) }), "duplicate-sku");
        assert_eq!(rejected_code(&placed, &C::RemoveLine { sku: v("Z") }), "no-such-line");
        let confirmed = given(&[place(), C::Confirm]);
        assert_eq!(rejected_code(&confirmed, &C::AddLine { line: line("C", 1, 1) }), "order-not-placed");
        assert_eq!(rejected_code(&confirmed, &C::RemoveLine { sku: v("A") }), "order-not-placed");
        let paid = given(&[place(), pay(1250)]);
        assert_eq!(rejected_code(&paid, &C::AddLine { line: line("C", 1, 1) }), "already-paid");
    }

    #[test]
    fn confirming_starts_a_reservation_attempt_for_every_line() {
        let placed = given(&[place()]);
        let events = decide(&placed, &C::Confirm).unwrap();
        assert_eq!(
            events,
            vec![E::Confirmed {
                attempt: 1,
                lines: vec![LineQuantity { sku: v("A"), quantity: 2 }, LineQuantity { sku: v("B"), quantity: 1 }]
            }]
        );
        let confirmed = Order::fold(placed, &events);
        assert_eq!(decide(&confirmed, &C::Confirm).unwrap(), vec![], "confirming twice is a no-op");
        let emptied = given(&[place(), C::RemoveLine { sku: v("A") }, C::RemoveLine { sku: v("B") }]);
        assert_eq!(rejected_code(&emptied, &C::Confirm), "no-lines");
    }

    #[test]
    fn all_lines_reserved_makes_the_order_reserved() {
        let state = given(&[place(), C::Confirm, reserve("A", 1, 2)]);
        assert_eq!(state.status, OrderStatus::Confirmed);
        assert_eq!(decide(&state, &reserve("A", 1, 2)).unwrap(), vec![], "a repeated reservation is a no-op");
        let state = given(&[place(), C::Confirm, reserve("A", 1, 2), reserve("B", 1, 1)]);
        assert_eq!(state.status, OrderStatus::Reserved);
    }

    #[test]
    fn payment_and_reservation_in_either_order_lead_to_ready_to_ship() {
        let reserved_then_paid = given(&reserved_and_paid());
        assert_eq!(reserved_then_paid.status, OrderStatus::ReadyToShip);
        let paid_then_reserved = given(&[place(), pay(1250), C::Confirm, reserve("B", 1, 1), reserve("A", 1, 2)]);
        assert_eq!(paid_then_reserved.status, OrderStatus::ReadyToShip);
        let paid_before_confirmation = given(&[place(), pay(1250)]);
        assert_eq!(paid_before_confirmation.status, OrderStatus::Placed);
    }

    #[test]
    fn payments_are_checked_against_the_order() {
        let placed = given(&[place()]);
        assert_eq!(rejected_code(&placed, &pay(1000)), "amount-mismatch");
        let usd = C::AuthorizePayment { payment_id: v("p1"), amount_minor: 1250, currency: v("USD") };
        assert_eq!(rejected_code(&placed, &usd), "currency-mismatch");
        let paid = given(&[place(), pay(1250)]);
        assert_eq!(decide(&paid, &pay(1250)).unwrap(), vec![], "the same payment twice is a no-op");
        let other = C::AuthorizePayment { payment_id: v("p2"), amount_minor: 1250, currency: v("EUR") };
        assert_eq!(rejected_code(&paid, &other), "already-paid");
        let failed = C::FailPayment { payment_id: v("p2"), reason: v("declined") };
        assert_eq!(rejected_code(&paid, &failed), "already-paid");
        let cancelled = given(&[place(), C::Cancel { reason: None }]);
        assert_eq!(rejected_code(&cancelled, &pay(1250)), "invalid-status");
        let emptied = given(&[place(), C::RemoveLine { sku: v("A") }, C::RemoveLine { sku: v("B") }]);
        assert_eq!(rejected_code(&emptied, &pay(0)), "no-lines");
        let free = C::Place { customer_id: v("c"), currency: v("EUR"), lines: vec![line("A", 1, 0)] };
        assert_eq!(rejected_code(&given(&[free]), &pay(0)), "invalid-amount");
    }

    #[test]
    fn a_failed_payment_is_recorded_and_a_later_one_can_succeed() {
        let failed = given(&[place(), C::FailPayment { payment_id: v("p0"), reason: v("declined") }]);
        assert_eq!(failed.payment_failure.as_deref(), Some("declined"));
        assert_eq!(failed.status, OrderStatus::Placed);
        let paid = Order::fold(failed.clone(), &decide(&failed, &pay(1250)).unwrap());
        assert!(paid.payment.is_some());
        assert_eq!(paid.payment_failure, None);
    }

    #[test]
    fn a_failed_reservation_backorders_and_releases_what_was_reserved() {
        let state = given(&[place(), C::Confirm, reserve("A", 1, 2)]);
        let events = decide(&state, &C::RecordReservationFailure { sku: v("B"), attempt: 1 }).unwrap();
        assert_eq!(
            events,
            vec![E::Backordered { attempt: 1, sku: v("B"), release: vec![LineQuantity { sku: v("A"), quantity: 2 }] }]
        );
        let backordered = Order::fold(state, &events);
        assert_eq!(backordered.status, OrderStatus::Backordered);
        assert!(backordered.reserved.is_empty());
        // A reservation that arrives after the backorder is handed back.
        assert_eq!(
            decide(&backordered, &reserve("A", 1, 2)).unwrap(),
            vec![E::ReservationDeclined { attempt: 1, sku: v("A"), quantity: 2 }]
        );
        // A second failure for the same attempt changes nothing.
        let again = C::RecordReservationFailure { sku: v("A"), attempt: 1 };
        assert_eq!(decide(&backordered, &again).unwrap(), vec![]);
    }

    #[test]
    fn a_backordered_order_can_be_confirmed_again_as_a_new_attempt() {
        let backordered =
            given(&[place(), C::Confirm, C::RecordReservationFailure { sku: v("B"), attempt: 1 }, C::Confirm]);
        assert_eq!(backordered.status, OrderStatus::Confirmed);
        assert_eq!(backordered.attempt, 2);
        assert_eq!(
            decide(&backordered, &reserve("A", 1, 2)).unwrap(),
            vec![E::ReservationDeclined { attempt: 1, sku: v("A"), quantity: 2 }],
            "a reservation of the first attempt is declined"
        );
        let reserved = given(&[
            place(),
            C::Confirm,
            C::RecordReservationFailure { sku: v("B"), attempt: 1 },
            C::Confirm,
            reserve("A", 2, 2),
            reserve("B", 2, 1),
        ]);
        assert_eq!(reserved.status, OrderStatus::Reserved);
    }

    #[test]
    fn cancelling_releases_reserved_stock_and_is_idempotent() {
        let state = given(&[place(), C::Confirm, reserve("A", 1, 2)]);
        let events = decide(&state, &C::Cancel { reason: Some(v("changed mind")) }).unwrap();
        assert_eq!(
            events,
            vec![E::Cancelled {
                reason: Some(v("changed mind")),
                attempt: 1,
                release: vec![LineQuantity { sku: v("A"), quantity: 2 }]
            }]
        );
        let cancelled = Order::fold(state, &events);
        assert_eq!(cancelled.status, OrderStatus::Cancelled);
        assert_eq!(decide(&cancelled, &C::Cancel { reason: None }).unwrap(), vec![]);
        assert_eq!(rejected_code(&cancelled, &C::Confirm), "invalid-status");
        // The reservation of the other line, arriving late, is handed back.
        assert_eq!(
            decide(&cancelled, &reserve("B", 1, 1)).unwrap(),
            vec![E::ReservationDeclined { attempt: 1, sku: v("B"), quantity: 1 }]
        );
    }

    #[test]
    fn shipping_and_delivery() {
        let ready = given(&reserved_and_paid());
        let shipped_events = decide(&ready, &ship()).unwrap();
        assert!(matches!(&shipped_events[..], [E::Shipped { attempt: 1, lines, .. }] if lines.len() == 2));
        let shipped = Order::fold(ready, &shipped_events);
        assert_eq!(shipped.status, OrderStatus::Shipped);
        assert_eq!(decide(&shipped, &ship()).unwrap(), vec![], "the same dispatch twice is a no-op");
        assert_eq!(rejected_code(&shipped, &C::Cancel { reason: None }), "invalid-status");
        assert_eq!(rejected_code(&shipped, &C::Deliver { shipment_id: v("other") }), "unknown-shipment");
        let delivered = given(&[reserved_and_paid(), vec![ship(), C::Deliver { shipment_id: v("s1") }]].concat());
        assert_eq!(delivered.status, OrderStatus::Delivered);
        assert_eq!(decide(&delivered, &C::Deliver { shipment_id: v("s1") }).unwrap(), vec![]);
    }

    #[test]
    fn shipping_needs_an_order_that_is_ready() {
        for state in [given(&[place()]), given(&[place(), C::Confirm]), given(&[place(), pay(1250)])] {
            assert_eq!(rejected_code(&state, &ship()), "invalid-status");
            assert_eq!(rejected_code(&state, &C::Deliver { shipment_id: v("s1") }), "invalid-status");
        }
    }

    #[test]
    fn events_serialize_with_type_and_camel_case_data() {
        let event =
            E::Placed { customer_id: v("c"), currency: v("EUR"), lines: vec![OrderLine::from(&line("A", 1, 5))] };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "Placed");
        assert_eq!(json["data"]["customerId"], "c");
        assert_eq!(json["data"]["lines"][0]["unitPriceMinor"], 5);
        let ready = serde_json::to_value(E::ReadyToShip {}).unwrap();
        assert_eq!(serde_json::from_value::<OrderEvent>(ready).unwrap(), E::ReadyToShip {});
    }
}
