//! The Cosmos DB trigger's value: the JSON text of the array of changed
//! documents of `events` (event documents, tips and idempotency records,
//! with the service's `_rid`, `_etag`, `_ts`, `_lsn`). Which of them are
//! events, and how they read, is the Cosmos DB store's to say.

use orderflow_pipeline::ports::EventRecord;
use orderflow_store_cosmos::events_of_documents;
use serde_json::Value;

use crate::invocation::decode_json;

/// The events of a change-feed batch, each stream's in index order (one
/// command's events share a change-feed position, and may come in any
/// order); tips and idempotency records are skipped. A document that is none of them is an error: the batch is
/// retried, never half-handled.
pub fn decode_events(value: &Value) -> Result<Vec<EventRecord>, String> {
    let Some(Value::Array(documents)) = decode_json(value, Value::is_array) else {
        return Err("the trigger value is not an array of documents".into());
    };
    let documents = documents
        .into_iter()
        .enumerate()
        .map(|(position, document)| {
            decode_json(&document, Value::is_object).ok_or_else(|| format!("document {position} is not a JSON object"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    events_of_documents(documents)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(stream: &str, index: u64) -> Value {
        json!({
            "id": index.to_string(), "streamId": stream, "index": index,
            "eventId": "6f1e9f3e-0000-4000-8000-000000000000", "type": "Placed", "data": {},
            "time": "2026-11-25T10:00:00Z", "correlationId": "c", "causationId": "c", "messageId": "m",
            "_rid": "x", "_etag": "\"0\"", "_ts": 1, "_lsn": 7
        })
    }

    #[test]
    fn skips_tips_and_keys_and_keeps_the_order() {
        let tip = json!({"id": "tip", "streamId": "Order-a", "kind": "tip", "version": 2, "state": {}});
        let key = json!({"id": "key-h.1", "streamId": "Order-a", "kind": "key", "fingerprint": "f", "receipt": {}});
        let batch = Value::String(json!([event("Order-a", 0), tip, key, event("Order-a", 1)]).to_string());
        let events = decode_events(&batch).expect("decodes");
        assert_eq!(events.iter().map(|e| e.index).collect::<Vec<_>>(), [0, 1]);
        // One command's events share a position: whatever order they come in.
        let batch = json!([event("Order-a", 10), event("Order-b", 0), event("Order-a", 9)]);
        let events = decode_events(&batch).expect("decodes");
        let order: Vec<_> = events.iter().map(|e| (e.stream_id.as_str(), e.index)).collect();
        assert_eq!(order, [("Order-a", 9), ("Order-b", 0), ("Order-a", 10)]);
    }

    #[test]
    fn refuses_what_is_not_a_batch_of_events() {
        assert!(decode_events(&json!("nope")).is_err());
        assert!(decode_events(&json!([{"id": "x"}])).is_err());
        assert_eq!(decode_events(&json!("[]")).map(|e| e.len()), Ok(0));
    }
}
