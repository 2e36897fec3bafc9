//! Stream naming (`Order-{orderId}`, `Sku-{sku}`) and the translation between
//! stored event records and domain events.

use orderflow_domain::contract::Upcasted;
use orderflow_domain::inventory::Inventory;
use orderflow_domain::order::Order;
use orderflow_domain::{Aggregate, Command, Event};
use serde::Deserialize as _;
use serde_json::{json, Value};

use crate::ports::EventRecord;
use crate::topics::{self, Topic};
use crate::StoreError;

pub fn order_stream(order_id: &str) -> String {
    Category::Order.stream(order_id)
}

pub fn sku_stream(sku: &str) -> String {
    Category::Inventory.stream(sku)
}

/// The kind of stream a stream id names. Every `match` on it is exhaustive:
/// a third kind shows the compiler every place that must know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Order,
    /// One stream per SKU (`Sku-{sku}`): the inventory kind.
    Inventory,
}

/// What the pipeline says of one kind of stream, said once.
pub struct StreamKind {
    /// The prefix of its stream ids: the aggregate's `CATEGORY` (`Order-{orderId}`).
    pub prefix: &'static str,
    /// Its name in downstream CloudEvent types and schemas (`orderflow.order.placed`).
    pub name: &'static str,
    /// The topic its events are published to.
    pub topic: &'static Topic,
    /// The `source` of its downstream CloudEvents.
    pub source: &'static str,
}

const ORDERS: StreamKind =
    StreamKind { prefix: Order::CATEGORY, name: "order", topic: &topics::ORDERS, source: "/orderflow/orders" };
const INVENTORY: StreamKind = StreamKind {
    prefix: Inventory::CATEGORY,
    name: "inventory",
    topic: &topics::INVENTORY,
    source: "/orderflow/inventory",
};

impl Category {
    pub const ALL: [Category; 2] = [Category::Order, Category::Inventory];

    pub const fn kind(self) -> &'static StreamKind {
        match self {
            Category::Order => &ORDERS,
            Category::Inventory => &INVENTORY,
        }
    }

    /// Splits `Order-42` into (`Order`, `42`).
    pub fn of(stream_id: &str) -> Option<(Category, &str)> {
        let (prefix, id) = stream_id.split_once('-')?;
        Category::ALL.into_iter().find(|c| c.kind().prefix == prefix).map(|c| (c, id))
    }

    /// The id of this kind's stream of `id`.
    pub fn stream(self, id: &str) -> String {
        format!("{}-{id}", self.kind().prefix)
    }
}

pub fn target_stream(command: &Command) -> String {
    match command {
        Command::Order { order_id, .. } => order_stream(order_id),
        Command::Inventory { sku, .. } => sku_stream(sku),
    }
}

/// A domain event as it is stored: its `type`, the version of that type's
/// shape, and its `data`.
pub fn encode_event<A: Aggregate>(event: &A::Event) -> Result<(String, u32, Value), StoreError> {
    let value = serde_json::to_value(event).map_err(|e| StoreError::Corrupt(format!("event not serializable: {e}")))?;
    let event_type = value.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
    let data = value.get("data").cloned().unwrap_or_else(|| json!({}));
    let version = A::EVENTS.version(&event_type);
    Ok((event_type, version, data))
}

/// The record's data in the current shape of its type, with that shape's
/// version; data of a version newer than this build knows stays as it is.
pub fn current_data(record: &EventRecord) -> Result<(u32, Value), StoreError> {
    match Category::of(&record.stream_id) {
        Some((Category::Order, _)) => current::<Order>(record),
        Some((Category::Inventory, _)) => current::<Inventory>(record),
        None => Ok((record.schema_version, record.data.clone())),
    }
}

fn current<A: Aggregate>(record: &EventRecord) -> Result<(u32, Value), StoreError> {
    Ok(match upcast::<A>(record)? {
        Upcasted::Current(data) => (A::EVENTS.version(&record.event_type), data),
        Upcasted::Newer { version, .. } => (version, record.data.clone()),
    })
}

fn upcast<A: Aggregate>(record: &EventRecord) -> Result<Upcasted, StoreError> {
    A::EVENTS
        .upcast(&record.event_type, record.schema_version, record.data.clone())
        .map_err(|e| StoreError::Corrupt(format!("event {} of {}: {e}", record.index, record.stream_id)))
}

/// The domain event a record holds, brought up to its type's current shape.
pub fn decode_event<A: Aggregate>(record: &EventRecord) -> Result<A::Event, StoreError> {
    let corrupt = |e: String| {
        StoreError::Corrupt(format!("event {} of {} ({}): {e}", record.index, record.stream_id, record.event_type))
    };
    let data = match upcast::<A>(record)? {
        Upcasted::Current(data) => data,
        Upcasted::Newer { version, known } => {
            return Err(corrupt(format!(
                "written at version {version} by a newer orderflow; this one reads up to version {known}"
            )))
        }
    };
    serde_json::from_value(json!({"type": record.event_type, "data": data})).map_err(|e| corrupt(e.to_string()))
}

/// The domain event a record holds, with the stream it belongs to.
pub fn domain_event(record: &EventRecord) -> Result<Event, StoreError> {
    match Category::of(&record.stream_id) {
        Some((Category::Order, order_id)) => {
            Ok(Event::Order { order_id: order_id.to_string(), event: decode_event::<Order>(record)? })
        }
        Some((Category::Inventory, sku)) => {
            Ok(Event::Inventory { sku: sku.to_string(), event: decode_event::<Inventory>(record)? })
        }
        None => Err(StoreError::Corrupt(format!("unknown stream category in {}", record.stream_id))),
    }
}

pub fn decode_state<A: Aggregate>(state: Option<&Value>) -> Result<A::State, StoreError> {
    match state {
        None | Some(Value::Null) => Ok(A::State::default()),
        Some(value) => A::State::deserialize(value)
            .map_err(|e| StoreError::Corrupt(format!("unreadable {} state: {e}", A::CATEGORY))),
    }
}

pub fn encode_state<A: Aggregate>(state: &A::State) -> Result<Value, StoreError> {
    serde_json::to_value(state).map_err(|e| StoreError::Corrupt(format!("state not serializable: {e}")))
}

#[cfg(test)]
mod tests {
    use orderflow_domain::inventory::InventoryEvent;

    use super::*;

    #[test]
    fn categories() {
        assert_eq!(Category::of("Order-a-b"), Some((Category::Order, "a-b")));
        assert_eq!(Category::of("Sku-X"), Some((Category::Inventory, "X")));
        assert_eq!(Category::of("Other-X"), None);
    }

    fn stored(stream_id: &str, event_type: &str, schema_version: u32, data: Value) -> EventRecord {
        EventRecord {
            event_id: uuid::Uuid::new_v4(),
            stream_id: stream_id.into(),
            index: 0,
            event_type: event_type.into(),
            schema_version,
            data,
            time: chrono::Utc::now(),
            correlation_id: "c".into(),
            causation_id: "c".into(),
            message_id: "m".into(),
        }
    }

    #[test]
    fn events_are_written_and_read_at_their_shapes_version() {
        let event = InventoryEvent::Restocked { quantity: 3 };
        let (event_type, version, data) = encode_event::<Inventory>(&event).expect("encodes");
        assert_eq!((event_type.as_str(), version, &data), ("Restocked", 1, &json!({"quantity": 3})));
        let record = stored("Sku-A", "Restocked", 1, data.clone());
        assert_eq!(decode_event::<Inventory>(&record).expect("decodes"), event);
        assert_eq!(current_data(&record).expect("current"), (1, data));
    }

    #[test]
    fn a_shape_from_a_newer_build_is_shown_as_it_is_and_never_misread() {
        let newer = stored("Sku-A", "Restocked", 2, json!({"units": 3}));
        let refused = decode_event::<Inventory>(&newer).expect_err("a shape this build does not know");
        assert!(refused.to_string().contains("version 2 by a newer orderflow"), "{refused}");
        assert_eq!(current_data(&newer).expect("as stored"), (2, json!({"units": 3})));
        assert!(domain_event(&newer).is_err());
    }
}
