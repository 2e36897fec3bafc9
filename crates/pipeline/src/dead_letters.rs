//! Dead letters: a message that cannot be applied, written to
//! `orderflow.deadletter` as a CloudEvent `orderflow.deadletter` whose data
//! holds the reason, the origin, the headers and the payload as it arrived —
//! bounded, so that no message can make its dead letter too large to
//! publish (and block its partition):
//!
//! - the payload is stored once, as text when it is printable UTF-8, else as
//!   base64 (`payloadEncoding`), with its size and SHA-256 digest; beyond
//!   [`MAX_PAYLOAD`] bytes only a prefix is kept (`truncated`);
//! - at most [`MAX_HEADERS`] headers of at most [`MAX_HEADER`] bytes each, a
//!   reason and a key of bounded length;
//! - its `id` is a digest of what the message says (CloudEvent attributes,
//!   whatever the transport spells them `ce-id` or `ce_id`, its content type
//!   and payload), so the same bad message sent again — over HTTP or Kafka,
//!   at any offset — has the same dead letter id.
//!
//! An operator reads them back ([`Listed`], the console) and sends one
//! through ingestion again, as it was or corrected ([`redelivery`]).

use base64::Engine as _;
use cloudevents::{AttributesReader, AttributesWriter, EventBuilder, EventBuilderV10};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::cloudevents::{data_json, from_message, to_message};
use crate::delivery::{Delivery, Origin, Received};
use crate::ports::{Message, OnTopic};
use crate::processor::fingerprint;
use crate::topics::DEADLETTER;

/// The CloudEvent type of a dead letter.
pub const DEAD_LETTER_TYPE: &str = "orderflow.deadletter";

/// The most bytes of a payload a dead letter keeps.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// The most headers a dead letter keeps, and bytes of each value.
pub const MAX_HEADERS: usize = 64;
pub const MAX_HEADER: usize = 1024;
/// The most characters of a reason or a message key.
const MAX_REASON: usize = 1000;
const MAX_KEY: usize = 256;

/// The dead letter of a delivery: `kind` names why (`IngestError::kind`),
/// `reason` says it for people.
pub fn dead_letter(delivery: &Delivery, kind: &str, reason: &str) -> Result<Message, String> {
    let headers: Map<String, Value> = delivery
        .headers
        .iter()
        .take(MAX_HEADERS)
        .map(|(name, value)| (prefix(name, MAX_REASON), bytes(value, MAX_HEADER).0))
        .collect();
    let (payload, encoding) = bytes(&delivery.payload, MAX_PAYLOAD);
    let mut data = json!({
        "kind": kind,
        "reason": prefix(reason, MAX_REASON),
        "origin": serde_json::to_value(&delivery.origin).map_err(|e| e.to_string())?,
        "key": delivery.key.as_deref().map(|key| prefix(key, MAX_KEY)),
        "headers": headers,
        "payload": payload,
        "payloadEncoding": encoding,
    });
    describe_payload(&mut data, delivery);
    message(delivery, data)
}

/// A dead letter reduced to what cannot be too large: for when the full one
/// was refused by the topic for good. The payload is described, not kept.
pub fn reduced(delivery: &Delivery, kind: &str, reason: &str) -> Result<Message, String> {
    let mut data = json!({
        "kind": kind,
        "reason": prefix(reason, MAX_REASON),
        "origin": serde_json::to_value(&delivery.origin).map_err(|e| e.to_string())?,
        "reduced": true,
    });
    describe_payload(&mut data, delivery);
    message(delivery, data)
}

fn describe_payload(data: &mut Value, delivery: &Delivery) {
    let digest = fingerprint(&[&delivery.payload]);
    data["payloadBytes"] = json!(delivery.payload.len());
    data["payloadSha256"] = json!(digest);
    data["truncated"] = json!(delivery.payload.len() > MAX_PAYLOAD);
}

fn message(delivery: &Delivery, data: Value) -> Result<Message, String> {
    let event = EventBuilderV10::new()
        .id(identity(delivery))
        .source("/orderflow/ingest")
        .ty(DEAD_LETTER_TYPE)
        .time(chrono::Utc::now())
        .data("application/json", data)
        .build()
        .map_err(|e| e.to_string())?;
    let key = delivery.key.as_deref().map(|key| prefix(key, MAX_KEY));
    Ok(to_message(DEADLETTER.name, key, &event))
}

/// What the message says, whatever carried it: its CloudEvent attribute
/// headers (`ce-id` and `ce_id` alike, in any case and order), content type
/// and payload.
fn identity(delivery: &Delivery) -> String {
    let mut attributes: Vec<(String, &[u8])> = delivery
        .headers
        .iter()
        .filter_map(|(name, value)| {
            let name = name.to_ascii_lowercase();
            let attribute = match name.strip_prefix("ce-").or_else(|| name.strip_prefix("ce_")) {
                Some(attribute) => attribute.to_string(),
                None if name == "content-type" => name,
                None => return None,
            };
            Some((attribute, value.as_slice()))
        })
        .collect();
    attributes.sort();
    let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * attributes.len() + 1);
    for (name, value) in &attributes {
        parts.push(name.as_bytes());
        parts.push(value);
    }
    parts.push(&delivery.payload);
    fingerprint(&parts)
}

/// Bytes as JSON: printable UTF-8 as text, anything else as base64; at most
/// `max` bytes of them (text cut at a character boundary).
fn bytes(raw: &[u8], max: usize) -> (Value, &'static str) {
    let kept = &raw[..raw.len().min(max)];
    match std::str::from_utf8(kept) {
        Ok(text) if printable(text) => (Value::String(text.to_string()), "text"),
        Err(error)
            if error.error_len().is_none() && printable(&String::from_utf8_lossy(&kept[..error.valid_up_to()])) =>
        {
            // Cut inside a character: keep the whole characters before it.
            let text = String::from_utf8_lossy(&kept[..error.valid_up_to()]).into_owned();
            (Value::String(text), "text")
        }
        _ => (Value::String(base64::engine::general_purpose::STANDARD.encode(kept)), "base64"),
    }
}

/// Text that JSON keeps at about its size: no control characters but
/// white space (each of which would be escaped to six bytes).
fn printable(text: &str) -> bool {
    text.chars().all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
}

fn prefix(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// The most characters of a payload a listing shows.
pub const PREVIEW: usize = 2000;

/// A dead letter as an operator sees it in a list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    pub partition: i32,
    pub offset: i64,
    pub id: String,
    pub time: Option<String>,
    pub kind: String,
    pub reason: String,
    pub origin: Value,
    pub key: Option<String>,
    /// The payload's first [`PREVIEW`] characters (as text, or base64).
    pub preview: String,
    pub payload_encoding: Option<String>,
    pub payload_bytes: u64,
    /// Whether the dead letter holds the whole payload, so that it can be
    /// sent again as it is (else only a corrected payload can be).
    pub whole: bool,
}

/// What an operator reads of a dead letter on its topic.
pub fn listed(letter: &OnTopic) -> Result<Listed, String> {
    let (event, data) = read(letter)?;
    let text = |name: &str| data.get(name).and_then(Value::as_str).map(str::to_string);
    let payload = text("payload").unwrap_or_default();
    Ok(Listed {
        partition: letter.partition,
        offset: letter.offset,
        id: event.id().to_string(),
        time: event.time().map(|time| time.to_rfc3339()),
        kind: text("kind").unwrap_or_default(),
        reason: text("reason").unwrap_or_default(),
        origin: data.get("origin").cloned().unwrap_or(Value::Null),
        key: text("key"),
        preview: prefix(&payload, PREVIEW),
        payload_encoding: text("payloadEncoding"),
        payload_bytes: data.get("payloadBytes").and_then(Value::as_u64).unwrap_or_default(),
        whole: whole_payload(&data).is_ok(),
    })
}

/// A dead letter as a message to ingest again: its headers and key, its
/// payload or the one an operator corrected, and a new id derived from the
/// dead letter and that payload — so that sending the same correction twice
/// applies it once, and a different one is a new message.
pub fn redelivery(letter: &OnTopic, corrected: Option<&str>) -> Result<Received, String> {
    let (dead, data) = read(letter)?;
    let payload = match corrected {
        Some(payload) => payload.as_bytes().to_vec(),
        None => whole_payload(&data)?,
    };
    let id = format!("reingested-{}", &fingerprint(&[dead.id().as_bytes(), &payload])[..32]);
    // Kept as text (CloudEvent attributes are); the HTTP binding's `ce-`
    // spelled as the Kafka binding's `ce_`, which both ingestion paths read.
    let mut headers: Vec<(String, Vec<u8>)> = data
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, value)| {
            let name = match name.to_ascii_lowercase().strip_prefix("ce-") {
                Some(attribute) => format!("ce_{attribute}"),
                None => name.clone(),
            };
            (name, value.as_str().unwrap_or_default().as_bytes().to_vec())
        })
        .collect();
    for (name, value) in &mut headers {
        if name.eq_ignore_ascii_case("ce_id") {
            *value = id.as_bytes().to_vec();
        }
    }
    let event = from_message(&headers, &payload).map(|mut event| {
        event.set_id(id.clone());
        event
    });
    let key = data.get("key").and_then(Value::as_str).map(str::to_string);
    let origin = Origin::Console { dead_letter: dead.id().to_string() };
    Ok(Received { delivery: Delivery { origin, key, headers, payload }, event })
}

fn read(letter: &OnTopic) -> Result<(cloudevents::Event, Value), String> {
    let event = from_message(&letter.message.headers, &letter.message.value)?;
    if event.ty() != DEAD_LETTER_TYPE {
        return Err(format!("not a dead letter but {}", event.ty()));
    }
    let data = data_json(&event)?;
    Ok((event, data))
}

/// The payload as it arrived, when the dead letter kept all of it.
fn whole_payload(data: &Value) -> Result<Vec<u8>, String> {
    let partial = data.get("truncated").and_then(Value::as_bool).unwrap_or(false)
        || data.get("reduced").and_then(Value::as_bool).unwrap_or(false);
    let payload = data.get("payload").and_then(Value::as_str).filter(|_| !partial);
    let Some(payload) = payload else {
        return Err("the dead letter kept only part of the payload: send a corrected one".into());
    };
    match data.get("payloadEncoding").and_then(Value::as_str) {
        Some("base64") => base64::engine::general_purpose::STANDARD.decode(payload).map_err(|e| e.to_string()),
        _ => Ok(payload.as_bytes().to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(headers: &[(&str, &[u8])], payload: &[u8], origin: Origin) -> Delivery {
        Delivery {
            origin,
            key: None,
            headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect(),
            payload: payload.to_vec(),
        }
    }

    fn data(message: &Message) -> Value {
        serde_json::from_slice(&message.value).expect("JSON")
    }

    fn id(message: &Message) -> String {
        let header = message.headers.iter().find(|(name, _)| name == "ce_id").expect("an id");
        String::from_utf8_lossy(&header.1).into_owned()
    }

    #[test]
    fn the_payload_is_kept_once_as_text_or_base64() {
        let text = dead_letter(
            &delivery(&[], b"not json", Origin::Http { request_id: "r".into() }),
            "unknown-type",
            "no such type",
        )
        .unwrap();
        assert_eq!(
            (data(&text)["payload"].clone(), data(&text)["payloadEncoding"].clone()),
            (json!("not json"), json!("text"))
        );
        let control: Vec<u8> = vec![1; 1000];
        let binary = dead_letter(
            &delivery(&[], &control, Origin::Http { request_id: "r".into() }),
            "unknown-type",
            "no such type",
        )
        .unwrap();
        assert_eq!(data(&binary)["payloadEncoding"], "base64");
        assert!(binary.value.len() < 2 * control.len(), "{} bytes for {}", binary.value.len(), control.len());
    }

    #[test]
    fn an_oversized_message_is_kept_as_a_prefix_with_its_size_and_digest() {
        let huge = vec![b'x'; 1024 * 1024];
        let headers: Vec<(String, Vec<u8>)> = (0..1000).map(|i| (format!("h{i}"), vec![b'y'; 4096])).collect();
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        let message = dead_letter(
            &delivery(&headers, &huge, Origin::Http { request_id: "r".into() }),
            "unknown-type",
            "no such type",
        )
        .unwrap();
        let data = data(&message);
        assert_eq!((data["truncated"].clone(), data["payloadBytes"].clone()), (json!(true), json!(huge.len())));
        assert_eq!(data["payloadSha256"], fingerprint(&[&huge]));
        assert!(message.value.len() < MAX_PAYLOAD + MAX_HEADERS * MAX_HEADER + 4096, "{}", message.value.len());
        let reduced = reduced(
            &delivery(&headers, &huge, Origin::Http { request_id: "r".into() }),
            "unknown-type",
            "no such type",
        )
        .unwrap();
        assert!(reduced.value.len() < 2048);
    }

    #[test]
    fn the_same_message_has_the_same_id_whatever_carried_it() {
        let over_http = delivery(
            &[("ce-id", b"1"), ("ce-type", b"x.y"), ("content-type", b"application/json")],
            b"{}",
            Origin::Http { request_id: "a".into() },
        );
        let again = Delivery { origin: Origin::Http { request_id: "b".into() }, ..over_http.clone() };
        let over_kafka = delivery(
            &[("Content-Type", b"application/json"), ("ce_type", b"x.y"), ("ce_id", b"1")],
            b"{}",
            Origin::Kafka { topic: "t".into(), partition: 3, offset: 42 },
        );
        let ids: Vec<String> = [over_http, again, over_kafka]
            .iter()
            .map(|d| id(&dead_letter(d, "unknown-type", "no such type").unwrap()))
            .collect();
        assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
        let other = delivery(&[("ce-id", b"2")], b"{}", Origin::Http { request_id: "a".into() });
        assert_ne!(id(&dead_letter(&other, "unknown-type", "no such type").unwrap()), ids[0]);
    }
}
