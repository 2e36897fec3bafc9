//! The change-feed steps (`publish-events`, `project-snapshots`,
//! `fulfillment`) on a DynamoDB Streams event source mapping over the
//! events table, each shard's records in order. One function may run
//! several steps on each batch: AWS advises at most two readers per stream
//! shard (a third one's polls are throttled), so the template runs
//! `publish-events` (which waits on Kafka) on one mapping and the two steps
//! that only write the store on another.
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

/// Applies DynamoDB Streams batches with `steps` until the runtime stops.
pub async fn run_stream(steps: Arc<[Parked]>) -> Result<(), Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let steps = steps.clone();
        async move { Ok::<Value, Error>(handle_stream(&steps, &event.payload).await) }
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

/// One batch through every one of `steps` (side by side): the partial-batch
/// answer, naming the record to go on from when not all were done. A batch
/// one step failed is retried for all of them; the others find what they
/// did already done.
pub async fn handle_stream(steps: &[Parked], event: &Value) -> Value {
    let batch = decode_stream_event(event);
    let handled = futures::future::join_all(steps.iter().map(|step| async {
        // The mapping's shards move between invocations: read the parked
        // streams before each batch.
        step.refresh().await?;
        step.handle(&batch.events).await
    }))
    .await;
    let mut failed = false;
    for (step, handled) in steps.iter().zip(handled) {
        if let Err(error) = handled {
            tracing::warn!(step = step.name(), %error, "batch failed; retried from its first record");
            failed = true;
        }
    }
    let retry_from = match (failed, batch.unreadable) {
        (true, _) => batch.first,
        (false, Some((sequence, reason))) => {
            tracing::error!(sequence, reason, "a record that is not an event; retried, then sent on");
            Some(sequence)
        }
        (false, None) => None,
    };
    let failures: Vec<Value> = retry_from.into_iter().map(|sequence| json!({"itemIdentifier": sequence})).collect();
    json!({"batchItemFailures": failures})
}

#[cfg(test)]
mod tests {
    use super::*;
    use orderflow_pipeline::memory::MemoryStore;
    use orderflow_pipeline::StoreError;
    use std::sync::Mutex;

    /// A step that notes the events it is handed, and fails when told to.
    struct Step {
        name: &'static str,
        fails: bool,
        seen: Mutex<Vec<u64>>,
    }

    #[async_trait::async_trait]
    impl Consumer for Step {
        fn name(&self) -> &'static str {
            self.name
        }

        async fn handle(&self, events: &[EventRecord]) -> Result<(), StoreError> {
            self.seen
                .lock()
                .map_err(|_| StoreError::Unavailable("poisoned".into()))?
                .extend(events.iter().map(|e| e.index));
            if self.fails {
                return Err(StoreError::Unavailable("down".into()));
            }
            Ok(())
        }
    }

    fn record(sequence: &str, index: u64) -> Value {
        let event = json!({
            "eventId": "8d5596b4-1813-4238-b24b-6dad8e3d1c0c", "streamId": "Order-o1", "index": index,
            "type": "Placed", "data": {}, "time": "2026-12-01T08:00:00Z",
            "correlationId": "c", "causationId": "c", "messageId": "m",
        });
        json!({"dynamodb": {"SequenceNumber": sequence, "NewImage": {
            "i": {"N": index.to_string()}, "e": {"S": event.to_string()},
        }}})
    }

    #[tokio::test]
    async fn steps_sharing_a_mapping_each_take_the_batch_and_one_failing_retries_it_for_both() {
        let step = |name, fails| Arc::new(Step { name, fails, seen: Mutex::default() });
        let (projector, fulfillment) = (step("project-snapshots", false), step("fulfillment", true));
        let parking: Arc<MemoryStore> = Arc::default();
        let steps =
            [Parked::new(projector.clone(), parking.clone()), Parked::new(fulfillment.clone(), parking.clone())];
        let event = json!({"Records": [record("100", 0), record("200", 1)]});

        let answer = handle_stream(&steps, &event).await;
        assert_eq!(answer, json!({"batchItemFailures": [{"itemIdentifier": "100"}]}), "retried from its first record");
        let seen = |step: &Step| step.seen.lock().map(|seen| seen.clone()).unwrap_or_default();
        assert_eq!((seen(&projector), seen(&fulfillment)), (vec![0, 1], vec![0, 1]), "both were handed the batch");

        let healthy = [Parked::new(projector.clone(), parking)];
        assert_eq!(handle_stream(&healthy, &event).await, json!({"batchItemFailures": []}));
    }
}
