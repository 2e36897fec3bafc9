//! Stream naming (`Order-{orderId}`, `Sku-{sku}`) and the translation between
//! stored event records and domain events.

use orderflow_domain::inventory::{Inventory, InventoryEvent};
use orderflow_domain::limits::MAX_ID;
use orderflow_domain::order::{Order, OrderEvent};
use orderflow_domain::{Aggregate, Command, Event};
use serde::de::DeserializeOwned;
use serde::{Deserialize as _, Serialize};
use serde_json::{json, Value};

use crate::ports::EventRecord;
use crate::StoreError;

/// Order ids and SKUs: 1 to 64 characters of letters, digits and `-_.:`.
/// They become stream ids, document ids, message keys and URL segments.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

pub fn order_stream(order_id: &str) -> String {
    format!("{}-{order_id}", Order::CATEGORY)
}

pub fn sku_stream(sku: &str) -> String {
    format!("{}-{sku}", Inventory::CATEGORY)
}

/// The kind of stream a stream id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Order,
    Sku,
}

impl Category {
    /// Splits `Order-42` into (`Order`, `42`).
    pub fn of(stream_id: &str) -> Option<(Category, &str)> {
        let (prefix, id) = stream_id.split_once('-')?;
        match prefix {
            p if p == Order::CATEGORY => Some((Category::Order, id)),
            p if p == Inventory::CATEGORY => Some((Category::Sku, id)),
            _ => None,
        }
    }
}

pub fn target_stream(command: &Command) -> String {
    match command {
        Command::Order { order_id, .. } => order_stream(order_id),
        Command::Inventory { sku, .. } => sku_stream(sku),
    }
}

/// Splits a serialized domain event into its `type` and `data`.
pub fn encode_event<E: Serialize>(event: &E) -> Result<(String, Value), StoreError> {
    let value = serde_json::to_value(event).map_err(|e| StoreError::Corrupt(format!("event not serializable: {e}")))?;
    let event_type = value.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
    let data = value.get("data").cloned().unwrap_or_else(|| json!({}));
    Ok((event_type, data))
}

pub fn decode_event<E: DeserializeOwned>(record: &EventRecord) -> Result<E, StoreError> {
    serde_json::from_value(json!({"type": record.event_type, "data": record.data})).map_err(|e| {
        StoreError::Corrupt(format!("event {} of {} ({}): {e}", record.index, record.stream_id, record.event_type))
    })
}

/// The domain event a record holds, with the stream it belongs to.
pub fn domain_event(record: &EventRecord) -> Result<Event, StoreError> {
    match Category::of(&record.stream_id) {
        Some((Category::Order, order_id)) => {
            Ok(Event::Order { order_id: order_id.to_string(), event: decode_event::<OrderEvent>(record)? })
        }
        Some((Category::Sku, sku)) => {
            Ok(Event::Inventory { sku: sku.to_string(), event: decode_event::<InventoryEvent>(record)? })
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
    use super::*;

    #[test]
    fn ids() {
        assert!(is_valid_id("order-1_A.b:c"));
        for bad in ["", "a b", "a/b", "ü", &"x".repeat(65)] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
        assert_eq!(Category::of("Order-a-b"), Some((Category::Order, "a-b")));
        assert_eq!(Category::of("Sku-X"), Some((Category::Sku, "X")));
        assert_eq!(Category::of("Other-X"), None);
    }
}
