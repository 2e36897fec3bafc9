//! Kafka records as the Functions Kafka extension shapes them: the trigger's
//! `KafkaEventData` (`dataType: string`; header values in base64) in, and
//! the elements of a `kafka` output binding out.

use base64::Engine as _;
use orderflow_pipeline::ingest::Received;
use orderflow_pipeline::ports::Message;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::invocation::decode_json;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KafkaEventData {
    key: Option<Value>,
    offset: i64,
    partition: i32,
    topic: String,
    value: Option<String>,
    #[serde(default)]
    headers: Vec<KafkaHeader>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KafkaHeader {
    key: String,
    value: Option<String>,
}

/// The records of a `cardinality: many` trigger value (an array, possibly
/// string-encoded, of possibly string-encoded `KafkaEventData`), or of a
/// single one. An element that is not a record is kept, as text, so that it
/// can be dead-lettered: nothing the host delivered is dropped.
pub fn decode_records(value: &Value) -> Vec<Received> {
    let elements = match decode_json(value, |v| v.is_array() || v.is_object()) {
        Some(Value::Array(elements)) => elements,
        Some(single) => vec![single],
        None => vec![value.clone()],
    };
    elements.iter().map(decode_record).collect()
}

fn decode_record(element: &Value) -> Received {
    let data =
        decode_json(element, Value::is_object).ok_or_else(|| "not a Kafka record".to_string()).and_then(|object| {
            serde_json::from_value::<KafkaEventData>(object).map_err(|e| format!("not a Kafka record: {e}"))
        });
    match data {
        Ok(data) => {
            let headers: Vec<(String, Vec<u8>)> =
                data.headers.into_iter().map(|h| (h.key, header_bytes(h.value.as_deref()))).collect();
            let payload = data.value.unwrap_or_default().into_bytes();
            let key = data.key.and_then(|key| match key {
                Value::String(text) => Some(text),
                Value::Null => None,
                other => Some(other.to_string()),
            });
            Received::kafka((data.topic, data.partition, data.offset), key, headers, payload)
        }
        Err(reason) => {
            let text = match element {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            Received::unreadable(text.into_bytes(), reason)
        }
    }
}

/// Header values come base64-encoded; one that is not is taken as it is.
fn header_bytes(value: Option<&str>) -> Vec<u8> {
    let value = value.unwrap_or_default();
    base64::engine::general_purpose::STANDARD.decode(value).unwrap_or_else(|_| value.as_bytes().to_vec())
}

/// A message as an element of a `kafka` output binding: shaped as
/// `KafkaEventData` so that the extension sets its key and headers (header
/// values as plain text).
pub fn output_element(message: &Message) -> Value {
    let headers: Vec<Value> = message
        .headers
        .iter()
        .map(|(name, value)| json!({"Key": name, "Value": String::from_utf8_lossy(value)}))
        .collect();
    json!({
        "Key": message.key,
        "Value": String::from_utf8_lossy(&message.value),
        "Headers": headers,
        "Topic": message.topic,
        "Partition": -1,
        "Offset": -1,
        // .NET's DateTime reads at most 7 fractional digits: milliseconds.
        "Timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
}
