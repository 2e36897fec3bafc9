//! CloudEvents 1.0 over the Kafka protocol binding, mapped by hand over the
//! SDK's event type: binary content mode (`ce_*` headers, JSON value) out;
//! binary or structured (`application/cloudevents+json`) in.

use base64::Engine as _;
use cloudevents::event::{Data, ExtensionValue};
use cloudevents::{Event, EventBuilder, EventBuilderV10};
use serde_json::{json, Map, Value};

use crate::ports::{EventRecord, Message};
use crate::streams::{current_data, Category};

const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// The downstream CloudEvent of a committed event (DESIGN §6): `id` = eventId,
/// `type` = `orderflow.{category}.{name in lower case}`, `subject` = stream id,
/// extension `streamindex`, `data` in the type's current shape and
/// `dataschema` = `urn:orderflow:schema:{category}.{name in lower case}:v{version}`.
pub fn downstream_event(record: &EventRecord) -> Result<(String, Event), String> {
    let Some((category, _)) = Category::of(&record.stream_id) else {
        return Err(format!("no topic for stream {}", record.stream_id));
    };
    let kind = category.kind();
    let (version, data) = current_data(record).map_err(|e| e.to_string())?;
    let name = format!("{}.{}", kind.name, record.event_type.to_lowercase());
    let mut builder = EventBuilderV10::new()
        .id(record.event_id.to_string())
        .source(kind.source)
        .ty(format!("orderflow.{name}"))
        .subject(record.stream_id.clone())
        .time(record.time)
        .extension("streamindex", record.index as i64)
        .extension("correlationid", record.correlation_id.clone())
        .extension("causationid", record.causation_id.clone());
    // The order's trace goes on with the downstream consumers.
    if let Some(traceparent) = crate::trace::traceparent(&record.correlation_id, &record.event_id) {
        builder = builder.extension("traceparent", traceparent);
    }
    let event = builder
        .data_with_schema("application/json", format!("urn:orderflow:schema:{name}:v{version}"), data)
        .build()
        .map_err(|e| e.to_string())?;
    Ok((kind.topic.name.to_string(), event))
}

/// A CloudEvent as a Kafka record in binary content mode.
pub fn to_message(topic: &str, key: Option<String>, event: &Event) -> Message {
    let mut headers = Vec::new();
    for (name, value) in event.iter_attributes() {
        if name == "datacontenttype" {
            headers.push(("content-type".to_string(), value.to_string().into_bytes()));
        } else {
            headers.push((format!("ce_{name}"), value.to_string().into_bytes()));
        }
    }
    for (name, value) in event.iter_extensions() {
        headers.push((format!("ce_{name}"), value.to_string().into_bytes()));
    }
    let value = match event.data() {
        Some(Data::Json(json)) => json.to_string().into_bytes(),
        Some(Data::String(text)) => text.clone().into_bytes(),
        Some(Data::Binary(bytes)) => bytes.clone(),
        None => Vec::new(),
    };
    Message { topic: topic.to_string(), key, headers, value }
}

/// A Kafka record (binary or structured content mode) as a CloudEvent.
pub fn from_message(headers: &[(String, Vec<u8>)], value: &[u8]) -> Result<Event, String> {
    let header = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice());
    let content_type = header("content-type").map(String::from_utf8_lossy).unwrap_or_default();
    if content_type.starts_with(STRUCTURED_CONTENT_TYPE)
        || (header("ce_specversion").is_none() && looks_structured(value))
    {
        return serde_json::from_slice::<Event>(value).map_err(|e| format!("not a structured CloudEvent: {e}"));
    }
    let mut attributes = Map::new();
    for (name, raw) in headers {
        let Some(attribute) = name.strip_prefix("ce_") else { continue };
        let text = std::str::from_utf8(raw).map_err(|_| format!("header {name} is not UTF-8"))?;
        attributes.insert(attribute.to_ascii_lowercase(), Value::String(text.to_string()));
    }
    if attributes.is_empty() {
        return Err("no ce_* headers and not a structured CloudEvent".into());
    }
    if !content_type.is_empty() {
        attributes.insert("datacontenttype".into(), Value::String(content_type.to_string()));
    }
    if !value.is_empty() {
        match serde_json::from_slice::<Value>(value) {
            Ok(data) if content_type.is_empty() || content_type.contains("json") => {
                attributes.insert("data".into(), data);
            }
            _ => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(value);
                attributes.insert("data_base64".into(), Value::String(encoded));
            }
        }
    }
    serde_json::from_value::<Event>(Value::Object(attributes))
        .map_err(|e| format!("invalid CloudEvent attributes: {e}"))
}

fn looks_structured(value: &[u8]) -> bool {
    serde_json::from_slice::<Value>(value).is_ok_and(|v| v.get("specversion").is_some())
}

/// The event's data as JSON, whatever form it came in.
pub fn data_json(event: &Event) -> Result<Value, String> {
    match event.data() {
        Some(Data::Json(value)) => Ok(value.clone()),
        Some(Data::String(text)) => serde_json::from_str(text).map_err(|e| format!("data is not JSON: {e}")),
        Some(Data::Binary(bytes)) => serde_json::from_slice(bytes).map_err(|e| format!("data is not JSON: {e}")),
        None => Err("the event has no data".into()),
    }
}

/// An extension attribute as text, if present.
pub fn extension_text(event: &Event, name: &str) -> Option<String> {
    event.extension(name).map(|value| match value {
        ExtensionValue::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// Structured JSON of a CloudEvent, as `orderflow topics read` prints it.
pub fn to_structured_json(event: &Event) -> Value {
    serde_json::to_value(event).unwrap_or_else(|e| json!({"error": e.to_string()}))
}
