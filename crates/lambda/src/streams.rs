//! The change-feed steps (`publish-events`, `project-snapshots`,
//! `fulfillment`) on a DynamoDB Streams event source mapping over the
//! events table, each shard's records in order.
//!
//! The mapping is set up with `ReportBatchItemFailures`: the answer names
//! the first record not done, and Lambda retries from there (the records
//! before it are checkpointed). A stream whose events a step cannot handle
//! is parked (its later events held back, every other stream handled), as
//! the other hosts do; a record that is not an event the store wrote (it
//! cannot be read) is reported, retried, and after the mapping's retries
//! sent to its on-failure destination; a store that cannot be reached fails
//! the batch from its first record. A retried record is handled again, which
//! every step's effects allow.

use std::sync::Arc;

use lambda_runtime::{service_fn, LambdaEvent};
use orderflow_pipeline::consumers::{Consumer, Parked};
use orderflow_pipeline::ports::EventRecord;
use orderflow_store_dynamodb::event_of_image;
use serde_json::{json, Value};

use crate::Error;

/// Applies DynamoDB Streams batches with `step` until the runtime stops.
pub async fn run_stream(step: Arc<Parked>) -> Result<(), Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let step = step.clone();
        async move { Ok::<Value, Error>(handle_stream(&step, &event.payload).await) }
    }))
    .await
}

/// The events of a batch up to the first record that cannot be read (with
/// its sequence number and why).
pub struct Batch {
    pub events: Vec<EventRecord>,
    pub unreadable: Option<(String, String)>,
    /// The first record's sequence number.
    pub first: Option<String>,
}

/// Reads a DynamoDB Streams event (`Records`, each with `dynamodb`'s
/// `NewImage` and `SequenceNumber`): tips and removals are not events.
pub fn decode_stream_event(event: &Value) -> Batch {
    let records = event.get("Records").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let sequence =
        |record: &Value| record.pointer("/dynamodb/SequenceNumber").and_then(Value::as_str).map(String::from);
    let mut batch = Batch { events: Vec::new(), unreadable: None, first: records.iter().find_map(sequence) };
    for record in records {
        let Some(sequence) = sequence(record) else { continue };
        let image = record.pointer("/dynamodb/NewImage");
        let attribute = |name: &str, kind: &str| image.and_then(|i| i.get(name)?.get(kind)?.as_str());
        match event_of_image(attribute("i", "N"), attribute("e", "S")) {
            Ok(Some(event)) => batch.events.push(event),
            Ok(None) => {}
            Err(error) => {
                batch.unreadable = Some((sequence, error.to_string()));
                break;
            }
        }
    }
    batch
}

/// One batch through `step`: the partial-batch answer, naming the record to
/// go on from when not all were done.
pub async fn handle_stream(step: &Parked, event: &Value) -> Value {
    let batch = decode_stream_event(event);
    let name = step.name();
    // The mapping's shards move between invocations: read the parked
    // streams before each batch.
    let handled = match step.refresh().await {
        Ok(()) => step.handle(&batch.events).await,
        Err(error) => Err(error),
    };
    let retry_from = match (handled, batch.unreadable) {
        (Err(error), _) => {
            tracing::warn!(step = name, %error, "batch failed; retried from its first record");
            batch.first
        }
        (Ok(()), Some((sequence, reason))) => {
            tracing::error!(step = name, sequence, reason, "a record that is not an event; retried, then sent on");
            Some(sequence)
        }
        (Ok(()), None) => None,
    };
    let failures: Vec<Value> = retry_from.into_iter().map(|sequence| json!({"itemIdentifier": sequence})).collect();
    json!({"batchItemFailures": failures})
}
