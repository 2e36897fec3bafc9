//! A message as it arrived at a door (HTTP, a Kafka consumer, a Functions
//! trigger, a Lambda event source, the console): its origin, key, headers and
//! bytes, kept whole so that ingestion can apply it or dead-letter it as it
//! was, and its CloudEvent if it has one.

use cloudevents::Event;
use serde::{Deserialize, Serialize};

use crate::cloudevents::from_message;

/// Where an ingested message came from; recorded in dead letters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "camelCase")]
pub enum Origin {
    #[serde(rename_all = "camelCase")]
    Http { request_id: String },
    #[serde(rename_all = "camelCase")]
    Kafka { topic: String, partition: i32, offset: i64 },
    /// Sent again by an operator from a dead letter.
    #[serde(rename_all = "camelCase")]
    Console { dead_letter: String },
}

/// One message as it arrived: what a dead letter must preserve.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub origin: Origin,
    pub key: Option<String>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub payload: Vec<u8>,
}

/// A message as a host received it: the delivery, and its CloudEvent or why
/// it has none.
#[derive(Debug, Clone)]
pub struct Received {
    pub delivery: Delivery,
    pub event: Result<Event, String>,
}

impl Received {
    /// A Kafka record, however the host got it (a consumer, a trigger, an
    /// event source): kept whole, and read as a CloudEvent in binary or
    /// structured content mode.
    pub fn kafka(
        origin: (String, i32, i64),
        key: Option<String>,
        headers: Vec<(String, Vec<u8>)>,
        payload: Vec<u8>,
    ) -> Received {
        let (topic, partition, offset) = origin;
        let event = from_message(&headers, &payload);
        Received {
            delivery: Delivery { origin: Origin::Kafka { topic, partition, offset }, key, headers, payload },
            event,
        }
    }

    /// Bytes a host got that are not even a message: kept whole, so that they
    /// are dead-lettered rather than lost.
    pub fn unreadable(payload: Vec<u8>, reason: String) -> Received {
        let origin = Origin::Kafka { topic: "unknown".into(), partition: -1, offset: -1 };
        Received { delivery: Delivery { origin, key: None, headers: Vec::new(), payload }, event: Err(reason) }
    }
}

impl Delivery {
    /// Messages with the same key are applied in order; other keys side by side.
    pub(crate) fn ordering_key(&self) -> (String, i32) {
        match &self.origin {
            Origin::Kafka { topic, partition, .. } => (topic.clone(), *partition),
            Origin::Http { request_id } => (request_id.clone(), -1),
            Origin::Console { dead_letter } => (dead_letter.clone(), -1),
        }
    }
}
