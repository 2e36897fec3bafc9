//! Ingestion: CloudEvents from back-end systems (Kafka topics, or
//! `POST /api/events`) mapped to commands and executed, idempotent by the
//! CloudEvents `source` + `id`. A message that cannot be decoded, mapped or
//! applied is written to `orderflow.deadletter` with its original bytes,
//! headers, origin and the reason (bounded: [`dead_letters`]): never blocked
//! on, never silently dropped.

use std::sync::Arc;

use cloudevents::{AttributesReader, Event};
use orderflow_domain::inventory::InventoryCommand;
use orderflow_domain::limits::{check_length, MAX_CORRELATION_ID, MAX_EVENT_ID, MAX_SOURCE, MAX_TRACEPARENT};
use orderflow_domain::order::OrderCommand;
use orderflow_domain::values::{
    Carrier, Currency, OrderId, PaymentId, Reason, ShipmentId, Sku, StockDelta, StockQuantity, TrackingNumber,
};
use orderflow_domain::Command;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cloudevents::{data_json, extension_text};
use crate::dead_letters;
pub use crate::delivery::{Delivery, Origin, Received};
use crate::ports::{MessageProducer, StoreError};
use crate::processor::{fingerprint, CommandError, CommandProcessor, Envelope, IdempotencyKey, Receipt};

/// The CloudEvents types orderflow ingests (DESIGN §6). Each one's data and
/// command are in [`map_data`], whose `match` has an arm for every type: a
/// type added here and not there does not compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestedType {
    PaymentAuthorized,
    PaymentFailed,
    ShipmentDispatched,
    ShipmentDelivered,
    StockReceived,
    StockAdjusted,
}

impl IngestedType {
    pub const ALL: [IngestedType; 6] = [
        IngestedType::PaymentAuthorized,
        IngestedType::PaymentFailed,
        IngestedType::ShipmentDispatched,
        IngestedType::ShipmentDelivered,
        IngestedType::StockReceived,
        IngestedType::StockAdjusted,
    ];

    /// The CloudEvents `type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            IngestedType::PaymentAuthorized => "payment.authorized",
            IngestedType::PaymentFailed => "payment.failed",
            IngestedType::ShipmentDispatched => "shipment.dispatched",
            IngestedType::ShipmentDelivered => "shipment.delivered",
            IngestedType::StockReceived => "stock.received",
            IngestedType::StockAdjusted => "stock.adjusted",
        }
    }

    pub fn of(event_type: &str) -> Option<IngestedType> {
        IngestedType::ALL.into_iter().find(|known| known.as_str() == event_type)
    }
}

/// [`IngestedType::ALL`] as their CloudEvents types.
pub const INGESTED_TYPES: [&str; 6] = {
    let all = IngestedType::ALL;
    [all[0].as_str(), all[1].as_str(), all[2].as_str(), all[3].as_str(), all[4].as_str(), all[5].as_str()]
};

/// Why a message could not be applied; the `kind` names it in dead letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    #[error("not a CloudEvent: {0}")]
    Undecodable(String),
    #[error("unknown event type {0:?}; expected one of {types}", types = INGESTED_TYPES.join(", "))]
    UnknownType(String),
    #[error("invalid data for {event_type}: {reason}")]
    InvalidData { event_type: String, reason: String },
    #[error("refused: {0}")]
    Rejected(String),
    #[error("the id {0:?} was already used by this source for a different event")]
    ConflictingDuplicate(String),
}

impl IngestError {
    pub fn kind(&self) -> &'static str {
        match self {
            IngestError::Undecodable(_) => "undecodable",
            IngestError::UnknownType(_) => "unknown-type",
            IngestError::InvalidData { .. } => "invalid-data",
            IngestError::Rejected(_) => "rejected",
            IngestError::ConflictingDuplicate(_) => "conflicting-duplicate",
        }
    }
}

// What each ingested type's data holds: read through the domain's value
// types, so that a value breaking its rule is invalid data, with the rule.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentAuthorized {
    order_id: OrderId,
    payment_id: PaymentId,
    amount_minor: u64,
    currency: Currency,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PaymentFailed {
    order_id: OrderId,
    payment_id: PaymentId,
    reason: Reason,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ShipmentDispatched {
    order_id: OrderId,
    shipment_id: ShipmentId,
    carrier: Carrier,
    tracking_number: TrackingNumber,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ShipmentDelivered {
    order_id: OrderId,
    shipment_id: ShipmentId,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StockReceived {
    sku: Sku,
    quantity: StockQuantity,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StockAdjusted {
    sku: Sku,
    delta: StockDelta,
    reason: Reason,
}

/// The command an ingested CloudEvent stands for.
pub fn command_for(event: &Event) -> Result<Command, IngestError> {
    let event_type = event.ty();
    let Some(known) = IngestedType::of(event_type) else {
        return Err(IngestError::UnknownType(event_type.to_string()));
    };
    let invalid = |reason: String| IngestError::InvalidData { event_type: event_type.to_string(), reason };
    bounded_attributes(event).map_err(invalid)?;
    data_json(event).and_then(|data| map_data(known, data)).map_err(invalid)
}

/// The attributes that reach events and messages are bounded (see
/// `orderflow_domain::limits`).
fn bounded_attributes(event: &Event) -> Result<(), String> {
    check_length("id", event.id(), MAX_EVENT_ID)?;
    check_length("source", event.source(), MAX_SOURCE)?;
    for (name, max) in [("correlationid", MAX_CORRELATION_ID), ("traceparent", MAX_TRACEPARENT)] {
        if let Some(value) = extension_text(event, name) {
            check_length(name, &value, max)?;
        }
    }
    Ok(())
}

fn map_data(event_type: IngestedType, data: Value) -> Result<Command, String> {
    let order = |order_id: OrderId, command| Command::Order { order_id: order_id.into(), command };
    let inventory = |sku: Sku, command| Command::Inventory { sku: sku.into(), command };
    Ok(match event_type {
        IngestedType::PaymentAuthorized => {
            let d: PaymentAuthorized = parse(data)?;
            let (payment_id, amount_minor, currency) = (d.payment_id, d.amount_minor, d.currency);
            order(d.order_id, OrderCommand::AuthorizePayment { payment_id, amount_minor, currency })
        }
        IngestedType::PaymentFailed => {
            let d: PaymentFailed = parse(data)?;
            order(d.order_id, OrderCommand::FailPayment { payment_id: d.payment_id, reason: d.reason })
        }
        IngestedType::ShipmentDispatched => {
            let d: ShipmentDispatched = parse(data)?;
            let (shipment_id, carrier, tracking_number) = (d.shipment_id, d.carrier, d.tracking_number);
            order(d.order_id, OrderCommand::Ship { shipment_id, carrier, tracking_number })
        }
        IngestedType::ShipmentDelivered => {
            let d: ShipmentDelivered = parse(data)?;
            order(d.order_id, OrderCommand::Deliver { shipment_id: d.shipment_id })
        }
        IngestedType::StockReceived => {
            let d: StockReceived = parse(data)?;
            inventory(d.sku, InventoryCommand::Restock { quantity: d.quantity })
        }
        IngestedType::StockAdjusted => {
            let d: StockAdjusted = parse(data)?;
            inventory(d.sku, InventoryCommand::Adjust { delta: d.delta, reason: d.reason })
        }
    })
}

fn parse<T: DeserializeOwned>(data: Value) -> Result<T, String> {
    serde_json::from_value(data).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum Ingested {
    /// The command ran (or was a no-op); durable.
    Applied { receipt: Receipt },
    /// The same message was applied before; nothing new happened.
    Duplicate { receipt: Receipt },
    /// Written to the dead-letter topic instead.
    #[serde(rename_all = "camelCase")]
    DeadLettered { kind: &'static str, reason: String },
}

impl Ingested {
    /// Its name, for metrics and records.
    pub fn outcome(&self) -> &'static str {
        match self {
            Ingested::Applied { .. } => "applied",
            Ingested::Duplicate { .. } => "duplicate",
            Ingested::DeadLettered { .. } => "dead-lettered",
        }
    }
}

pub struct Ingestor {
    processor: Arc<CommandProcessor>,
    producer: Arc<dyn MessageProducer>,
    /// Messages dead-lettered by this process (the status page shows it).
    dead_lettered: std::sync::atomic::AtomicU64,
}

impl Ingestor {
    pub fn new(processor: Arc<CommandProcessor>, producer: Arc<dyn MessageProducer>) -> Self {
        Ingestor { processor, producer, dead_lettered: Default::default() }
    }

    /// Applies one message, or dead-letters it. `Err` only when the store or
    /// the dead-letter topic is unavailable: the caller must retry then.
    pub async fn ingest(&self, delivery: &Delivery, event: Result<Event, String>) -> Result<Ingested, StoreError> {
        let ingested = match self.apply(event).await {
            Ok(ingested) => ingested,
            Err(IngestFailure::Store(error)) => return Err(error),
            Err(IngestFailure::Refused(error)) => {
                self.dead_letter(delivery, &error).await?;
                Ingested::DeadLettered { kind: error.kind(), reason: error.to_string() }
            }
        };
        metrics::counter!("orderflow_ingested_total", "outcome" => ingested.outcome()).increment(1);
        Ok(ingested)
    }

    /// Applies a batch as a serverless trigger delivers it: each partition's
    /// messages in order, partitions side by side. `Err` means "deliver the
    /// batch again": what was applied is then recognised as a duplicate.
    pub async fn ingest_batch(&self, batch: &[Received]) -> Result<Vec<Ingested>, StoreError> {
        let partitions = crate::consumers::group_in_order(batch.iter().enumerate(), |(_, r)| r.delivery.ordering_key());
        let applied = partitions.into_iter().map(|(_, messages)| async move {
            let mut outcomes = Vec::with_capacity(messages.len());
            for (position, received) in messages {
                outcomes.push((position, self.ingest(&received.delivery, received.event.clone()).await?));
            }
            Ok::<_, StoreError>(outcomes)
        });
        let mut outcomes: Vec<_> = futures::future::try_join_all(applied).await?.into_iter().flatten().collect();
        outcomes.sort_by_key(|(position, _)| *position);
        Ok(outcomes.into_iter().map(|(_, ingested)| ingested).collect())
    }

    async fn apply(&self, event: Result<Event, String>) -> Result<Ingested, IngestFailure> {
        let event = event.map_err(IngestError::Undecodable)?;
        let command = command_for(&event)?;
        let data = data_json(&event).unwrap_or_default();
        let key = IdempotencyKey::cloud_event(
            event.source(),
            event.id(),
            fingerprint(&[event.ty().as_bytes(), data.to_string().as_bytes()]),
        );
        // For people: the key itself is a digest, since `#` may occur in both.
        let mut envelope = Envelope::idempotent(format!("{}#{}", event.source(), event.id()), key);
        // The sender's correlation, else its trace (CloudEvents' distributed
        // tracing extension), else the message starts a trace of its own.
        let traced = extension_text(&event, "traceparent").and_then(|parent| crate::trace::trace_id(&parent));
        envelope.correlation_id =
            extension_text(&event, "correlationid").or(traced).unwrap_or_else(crate::trace::new_trace_id);
        match self.processor.execute(&command, &envelope).await {
            Ok(receipt) if receipt.duplicate => Ok(Ingested::Duplicate { receipt }),
            Ok(receipt) => Ok(Ingested::Applied { receipt }),
            Err(CommandError::Rejected(rejection)) => Err(IngestError::Rejected(rejection.to_string()).into()),
            Err(CommandError::KeyReused) => Err(IngestError::ConflictingDuplicate(event.id().to_string()).into()),
            Err(CommandError::Store(error)) => Err(IngestFailure::Store(error)),
            Err(error @ (CommandError::PreconditionFailed { .. } | CommandError::Contention(_))) => {
                Err(IngestFailure::Store(StoreError::Unavailable(error.to_string())))
            }
        }
    }

    /// Messages this process has dead-lettered since it started.
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Writes the message as it arrived to `orderflow.deadletter`.
    pub async fn dead_letter(&self, delivery: &Delivery, error: &IngestError) -> Result<(), StoreError> {
        let message =
            dead_letters::dead_letter(delivery, error.kind(), &error.to_string()).map_err(StoreError::Corrupt)?;
        tracing::warn!(kind = error.kind(), reason = %error, origin = ?delivery.origin, "message dead-lettered");
        metrics::counter!("orderflow_dead_letters_total", "kind" => error.kind()).increment(1);
        match self.producer.send(vec![message]).await {
            Ok(()) => {}
            // The topic will never take it (too large for it, say): what
            // cannot be too large goes instead, rather than a retry forever.
            Err(StoreError::Refused(reason)) => {
                tracing::warn!(reason, "dead letter refused by its topic; writing it reduced");
                let reduced =
                    dead_letters::reduced(delivery, error.kind(), &error.to_string()).map_err(StoreError::Corrupt)?;
                self.producer.send(vec![reduced]).await?;
            }
            Err(error) => return Err(error),
        }
        self.dead_lettered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

enum IngestFailure {
    Refused(IngestError),
    Store(StoreError),
}

impl From<IngestError> for IngestFailure {
    fn from(error: IngestError) -> Self {
        IngestFailure::Refused(error)
    }
}

#[cfg(test)]
mod tests {
    use cloudevents::{EventBuilder, EventBuilderV10};
    use serde_json::json;

    use super::*;

    fn event(ty: &str, data: Value) -> Event {
        EventBuilderV10::new().id("1").source("/test").ty(ty).data("application/json", data).build().unwrap()
    }

    #[test]
    fn maps_every_ingested_type() {
        let cases = [
            ("payment.authorized", json!({"orderId":"o1","paymentId":"p","amountMinor":10,"currency":"EUR"})),
            ("payment.failed", json!({"orderId":"o1","paymentId":"p","reason":"declined"})),
            ("shipment.dispatched", json!({"orderId":"o1","shipmentId":"s","carrier":"DHL","trackingNumber":"T"})),
            ("shipment.delivered", json!({"orderId":"o1","shipmentId":"s"})),
            ("stock.received", json!({"sku":"A","quantity":5})),
            ("stock.adjusted", json!({"sku":"A","delta":-2,"reason":"count"})),
        ];
        for (ty, data) in cases {
            assert!(command_for(&event(ty, data)).is_ok(), "{ty}");
        }
    }

    #[test]
    fn refuses_unknown_types_and_bad_data() {
        assert_eq!(command_for(&event("order.exploded", json!({}))).unwrap_err().kind(), "unknown-type");
        let bad = [
            ("stock.received", json!({"sku":"A"})),
            ("stock.received", json!({"sku":"A","quantity":"five"})),
            ("stock.received", json!({"sku":"A","quantity":-5})),
            ("stock.received", json!({"sku":"a b","quantity":5})),
            ("payment.authorized", json!([1, 2])),
            ("stock.adjusted", json!({"sku":"A","delta":-2,"reason": "x".repeat(1001)})),
            (
                "shipment.dispatched",
                json!({"orderId":"o1","shipmentId":"s","carrier":"x".repeat(129),"trackingNumber":"T"}),
            ),
        ];
        for (ty, data) in bad {
            assert_eq!(command_for(&event(ty, data.clone())).unwrap_err().kind(), "invalid-data", "{data}");
        }
        let data = json!({"sku":"A","quantity":5});
        let long_id = EventBuilderV10::new()
            .id("i".repeat(257))
            .source("/s")
            .ty("stock.received")
            .data("application/json", data.clone())
            .build()
            .unwrap();
        let long_source = EventBuilderV10::new()
            .id("1")
            .source("s".repeat(513))
            .ty("stock.received")
            .data("application/json", data.clone())
            .build()
            .unwrap();
        let long_correlation = EventBuilderV10::new()
            .id("1")
            .source("/s")
            .ty("stock.received")
            .extension("correlationid", "c".repeat(129))
            .data("application/json", data)
            .build()
            .unwrap();
        for event in [long_id, long_source, long_correlation] {
            assert_eq!(command_for(&event).unwrap_err().kind(), "invalid-data", "{event}");
        }
    }

    /// A topic that takes only small messages.
    #[derive(Default)]
    struct SmallTopic(std::sync::Mutex<Vec<crate::ports::Message>>);

    #[async_trait::async_trait]
    impl MessageProducer for SmallTopic {
        async fn send(&self, messages: Vec<crate::ports::Message>) -> Result<(), StoreError> {
            if messages.iter().any(|m| m.value.len() > 2048) {
                return Err(StoreError::Refused("message too large".into()));
            }
            self.0.lock().expect("lock").extend(messages);
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_dead_letter_its_topic_refuses_goes_reduced_instead_of_blocking() {
        let store = Arc::new(crate::memory::MemoryStore::default());
        let topic = Arc::new(SmallTopic::default());
        let ingestor = Ingestor::new(Arc::new(CommandProcessor::new(store)), topic.clone());
        let delivery = Delivery {
            origin: Origin::Http { request_id: "r".into() },
            key: None,
            headers: vec![],
            payload: vec![b'x'; 50_000],
        };
        let outcome = ingestor.ingest(&delivery, Err("not a CloudEvent".into())).await.expect("dead-lettered");
        assert!(matches!(outcome, Ingested::DeadLettered { kind: "undecodable", .. }), "{outcome:?}");
        let written = topic.0.lock().expect("lock").clone();
        assert_eq!(written.len(), 1);
        let data: Value = serde_json::from_slice(&written[0].value).expect("JSON");
        assert_eq!((&data["reduced"], &data["payloadBytes"]), (&json!(true), &json!(50_000)));
    }
}
