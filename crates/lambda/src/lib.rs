//! orderflow on AWS Lambda (DESIGN §7), over the same pipeline steps as the
//! other hosts: the HTTP API behind API Gateway / function URLs through
//! `lambda_http`, ingestion from an MSK or self-managed Kafka event source
//! through `lambda_runtime`, the change-feed steps on the events table's
//! DynamoDB Stream ([`streams`]), and the deadlines step on an EventBridge
//! schedule.
//!
//! A record that cannot be applied is dead-lettered (the batch succeeds and
//! reports it); a partition the store fails on is reported in Lambda's
//! partial-batch format, from its first record, and only it is delivered
//! again — its records then recognised one by one as duplicates.

mod streams;

pub use streams::{decode_stream_event, handle_stream, run_stream, Batch};

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use lambda_runtime::{service_fn, LambdaEvent};
use orderflow_pipeline::ingest::{Ingested, Ingestor, Origin, Received};
use orderflow_pipeline::time_driven::{Ran, TimeDriven};
use orderflow_pipeline::StoreError;
use serde::Deserialize;
use serde_json::{json, Value};

pub type Error = lambda_runtime::Error;

/// Serves the HTTP API (an axum router) to the Lambda runtime until it stops.
pub async fn run_http(api: axum::Router) -> Result<(), Error> {
    lambda_runtime::run(Unpanicking(lambda_http::Adapter::from(api))).await
}

type HttpAdapter = lambda_http::Adapter<'static, axum::response::Response, axum::Router>;

/// lambda_http panics turning an event whose host or path make no valid URI
/// into a request (found by fuzzing: `"host": "x.execute-api.us-wes}-2..."`);
/// the runtime would report that as an invocation error, a 502. Such an
/// event is a bad request: answered 400 as a problem.
struct Unpanicking(HttpAdapter);

impl tower::Service<LambdaEvent<lambda_http::request::LambdaRequest>> for Unpanicking {
    type Response = <HttpAdapter as tower::Service<LambdaEvent<lambda_http::request::LambdaRequest>>>::Response;
    type Error = std::convert::Infallible;
    type Future = lambda_http::TransformResponse<'static, axum::response::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, event: LambdaEvent<lambda_http::request::LambdaRequest>) -> Self::Future {
        let origin = event.payload.request_origin();
        let adapter = &mut self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| adapter.call(event))) {
            Ok(answer) => answer,
            Err(_) => {
                let problem = orderflow_api::Problem::bad_request("the request's host or path is not a valid URI");
                let answer = async move { Ok(axum::response::IntoResponse::into_response(problem)) };
                lambda_http::TransformResponse::Request(origin, Box::pin(answer))
            }
        }
    }
}

/// Applies Kafka event-source batches until the runtime stops.
pub async fn run_kafka(ingestor: Arc<Ingestor>) -> Result<(), Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let ingestor = ingestor.clone();
        async move { Ok::<Value, Error>(handle_kafka(&ingestor, &event.payload).await) }
    }))
    .await
}

/// Runs the time-driven step on every invocation (an EventBridge schedule's
/// `Scheduled Event`; the event itself says nothing the step needs) until
/// the runtime stops.
pub async fn run_deadlines(step: Arc<TimeDriven>) -> Result<(), Error> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let step = step.clone();
        async move { handle_deadlines(&step, budget(event.context.deadline)).await.map_err(Error::from) }
    }))
    .await
}

/// The time-driven step for at most `budget`: passes the deadlines due now,
/// then archives closed orders; the answer counts both.
pub async fn handle_deadlines(step: &TimeDriven, budget: Duration) -> Result<Value, StoreError> {
    let Ran { passed, archived } = step.run(chrono::Utc::now(), budget).await?;
    Ok(json!({
        "passed": passed.handled,
        "acted": passed.acted,
        "leftForLater": passed.failed,
        "archivedOrders": archived.orders,
        "archivedEvents": archived.events,
    }))
}

/// The time an invocation may take, from its deadline (milliseconds since
/// the epoch), less a margin to answer in: a deadline passed twice changes
/// nothing, but one whose invocation timed out is reported as failed.
fn budget(deadline_ms: u64) -> Duration {
    let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or_default();
    Duration::from_millis(deadline_ms.saturating_sub(now_ms)).saturating_sub(Duration::from_secs(2))
}

/// One batch, partition by partition (each in order, side by side): every
/// record applied or dead-lettered. The answer counts them, names the
/// dead-lettered ones, and lists in Lambda's partial-batch format the
/// partitions the store failed on, from their first record — Lambda retries
/// those and checkpoints the rest (`ReportBatchItemFailures` on the event
/// source mapping; without it, any failure retries the whole batch).
pub async fn handle_kafka(ingestor: &Ingestor, event: &Value) -> Value {
    let partitions = decode_partitions(event);
    let ingested =
        futures::future::join_all(partitions.iter().map(|partition| ingestor.ingest_batch(&partition.records))).await;
    let mut applied = 0;
    let mut duplicates = 0;
    let mut dead_lettered = Vec::new();
    let mut failures = Vec::new();
    for (partition, outcomes) in partitions.iter().zip(ingested) {
        let outcomes = match outcomes {
            Ok(outcomes) => outcomes,
            Err(error) => {
                tracing::warn!(partition = partition.key, %error, "partition not applied; Lambda retries it");
                failures
                    .push(json!({"itemIdentifier": {"partition": partition.key, "offset": partition.first_offset}}));
                continue;
            }
        };
        for (received, outcome) in partition.records.iter().zip(&outcomes) {
            match outcome {
                Ingested::Applied { .. } => applied += 1,
                Ingested::Duplicate { .. } => duplicates += 1,
                Ingested::DeadLettered { kind, reason } => dead_lettered.push(json!({
                    "itemIdentifier": item_identifier(&received.delivery.origin),
                    "kind": kind,
                    "reason": reason,
                })),
            }
        }
    }
    json!({"applied": applied, "duplicates": duplicates, "deadLettered": dead_lettered, "batchItemFailures": failures})
}

fn item_identifier(origin: &Origin) -> String {
    match origin {
        Origin::Kafka { topic, partition, offset } => format!("{topic}-{partition}@{offset}"),
        Origin::Http { request_id } => request_id.clone(),
        Origin::Console { dead_letter } => dead_letter.clone(),
    }
}

/// One `topic-partition` of a Kafka event: its records in order, and the
/// offset of the first (where Lambda goes on from when it is retried).
pub struct Partition {
    pub key: String,
    pub first_offset: i64,
    pub records: Vec<Received>,
}

/// The records of an MSK / self-managed Kafka event (`records` keyed by
/// `topic-partition`; key and value in base64; header values as byte
/// arrays), by partition. A record that cannot be read is kept as its JSON
/// text, to be dead-lettered.
pub fn decode_partitions(event: &Value) -> Vec<Partition> {
    let Some(partitions) = event.get("records").and_then(Value::as_object) else {
        let records = vec![unreadable(event, "no `records` in the Kafka event".into())];
        return vec![Partition { key: String::new(), first_offset: 0, records }];
    };
    partitions
        .iter()
        .map(|(key, records)| {
            let (first_offset, records) = match records.as_array() {
                Some(records) => {
                    let first = records.first().and_then(|r| r.get("offset")).and_then(Value::as_i64);
                    (first.unwrap_or_default(), records.iter().map(decode_record).collect())
                }
                None => (0, vec![unreadable(records, "`records` holds a non-array".into())]),
            };
            Partition { key: key.clone(), first_offset, records }
        })
        .collect()
}

/// Every record of a Kafka event, partition after partition.
pub fn decode_event(event: &Value) -> Vec<Received> {
    decode_partitions(event).into_iter().flat_map(|partition| partition.records).collect()
}

/// What orderflow reads of an event-source record. Not aws_lambda_events'
/// `KafkaRecord`: its `timestamp` decoder panics on a fraction (found by
/// fuzzing), and a panic would fail, and so retry, the batch forever.
#[derive(Deserialize)]
struct KafkaRecord {
    topic: Option<String>,
    #[serde(default)]
    partition: i64,
    #[serde(default)]
    offset: i64,
    key: Option<String>,
    value: Option<String>,
    /// Header values as Java's signed bytes, as the event source writes them.
    #[serde(default)]
    headers: Vec<std::collections::BTreeMap<String, Vec<i8>>>,
}

fn decode_record(record: &Value) -> Received {
    let parsed = match serde_json::from_value::<KafkaRecord>(record.clone()) {
        Ok(parsed) => parsed,
        Err(error) => return unreadable(record, format!("not a Kafka record: {error}")),
    };
    let base64 = base64::engine::general_purpose::STANDARD;
    let payload = match parsed.value.as_deref().map(|value| base64.decode(value)).transpose() {
        Ok(payload) => payload.unwrap_or_default(),
        Err(error) => return unreadable(record, format!("the value is not base64: {error}")),
    };
    let key = parsed.key.as_deref().and_then(|key| base64.decode(key).ok());
    let headers: Vec<(String, Vec<u8>)> = parsed
        .headers
        .iter()
        .flat_map(|header| header.iter())
        .map(|(name, bytes)| (name.clone(), bytes.iter().map(|b| *b as u8).collect()))
        .collect();
    let origin = (parsed.topic.unwrap_or_default(), i32::try_from(parsed.partition).unwrap_or(-1), parsed.offset);
    let key = key.map(|key| String::from_utf8_lossy(&key).into_owned());
    Received::kafka(origin, key, headers, payload)
}

fn unreadable(value: &Value, reason: String) -> Received {
    Received::unreadable(value.to_string().into_bytes(), reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_event_source_fixture() {
        let fixture = include_str!("../tests/fixtures/lambda-kafka-event.json");
        let event: Value = serde_json::from_str(fixture).expect("the fixture is JSON");
        let batch = decode_event(&event);
        assert_eq!(batch.len(), 1);
        let delivery = &batch[0].delivery;
        assert_eq!(delivery.origin, Origin::Kafka { topic: "AWSKafkaTopic".into(), partition: 0, offset: 0 });
        assert_eq!(delivery.key.as_deref(), Some("8d5596b4-1813-4238-b24b-6dad8e3d1c0c"));
        assert_eq!(delivery.payload, b"8d5596b4-1813-4238-b24b-6dad8e3d1c0c");
        assert_eq!(delivery.headers, [("headerKey".to_string(), b"headerValue".to_vec())]);
        // Not a CloudEvent: it is dead-lettered, not dropped.
        assert!(batch[0].event.is_err());
    }

    #[test]
    fn a_record_with_an_odd_timestamp_is_still_read() {
        let fixture = include_str!("../tests/fixtures/lambda-kafka-event.json");
        let mut event: Value = serde_json::from_str(fixture).expect("the fixture is JSON");
        if let Some(record) = event.pointer_mut("/records/AWSKafkaTopic-0/0") {
            record["timestamp"] = json!(15950.57497);
        }
        assert_eq!(decode_event(&event)[0].delivery.key.as_deref(), Some("8d5596b4-1813-4238-b24b-6dad8e3d1c0c"));
    }

    #[test]
    fn keeps_what_it_cannot_read() {
        let event = json!({"records": {"t-0": [{"topic": "t", "partition": 0}], "t-1": "x"}});
        let batch = decode_event(&event);
        assert_eq!(batch.len(), 2);
        assert!(batch.iter().all(|received| received.event.is_err()));
        assert_eq!(decode_event(&json!([])).len(), 1);
    }

    /// A store that cannot append to one SKU's stream.
    struct DownFor(orderflow_pipeline::memory::MemoryStore, &'static str);

    #[async_trait::async_trait]
    impl orderflow_pipeline::ports::EventStore for DownFor {
        async fn load(
            &self,
            stream_id: &str,
            key: Option<&str>,
        ) -> Result<orderflow_pipeline::ports::Loaded, StoreError> {
            self.0.load(stream_id, key).await
        }

        async fn append(
            &self,
            append: orderflow_pipeline::ports::Append,
        ) -> Result<orderflow_pipeline::ports::AppendOutcome, StoreError> {
            if append.stream_id == self.1 {
                return Err(StoreError::Unavailable("down".into()));
            }
            self.0.append(append).await
        }

        async fn read_stream(
            &self,
            stream_id: &str,
            from: u64,
            max: usize,
        ) -> Result<Vec<orderflow_pipeline::ports::EventRecord>, StoreError> {
            self.0.read_stream(stream_id, from, max).await
        }

        async fn claim(
            &self,
            claim: &orderflow_pipeline::ports::KeyClaim,
        ) -> Result<Option<orderflow_pipeline::ports::KeyClaim>, StoreError> {
            self.0.claim(claim).await
        }

        async fn stream_ids(
            &self,
            after: Option<&str>,
            max: usize,
        ) -> Result<orderflow_pipeline::ports::StreamIds, StoreError> {
            self.0.stream_ids(after, max).await
        }
    }

    fn stock_record(offset: i64, id: &str, sku: &str) -> Value {
        let base64 = base64::engine::general_purpose::STANDARD;
        let bytes = |text: &str| -> Vec<i8> { text.bytes().map(|b| b as i8).collect() };
        json!({
            "topic": "stock", "partition": 0, "offset": offset, "timestamp": 1595035749700_i64,
            "value": base64.encode(json!({"sku": sku, "quantity": 2}).to_string()),
            "headers": [
                {"ce_specversion": bytes("1.0")}, {"ce_id": bytes(id)}, {"ce_source": bytes("/warehouse")},
                {"ce_type": bytes("stock.received")}, {"content-type": bytes("application/json")},
            ],
        })
    }

    #[tokio::test]
    async fn a_partition_the_store_fails_on_is_reported_from_its_first_record() {
        use orderflow_pipeline::memory::MemoryStore;
        let store = Arc::new(DownFor(MemoryStore::default(), "Sku-SKU-DOWN"));
        let processor = Arc::new(orderflow_pipeline::processor::CommandProcessor::new(store));
        let ingestor = Ingestor::new(processor, Arc::new(MemoryStore::default()));
        let event = json!({"records": {
            "stock-0": [stock_record(7, "up-1", "SKU-UP"), stock_record(8, "up-2", "SKU-UP")],
            "stock-1": [stock_record(3, "down-1", "SKU-DOWN"), stock_record(4, "up-3", "SKU-UP")],
        }});
        let answer = handle_kafka(&ingestor, &event).await;
        assert_eq!(answer["applied"], 2, "the healthy partition is applied: {answer}");
        assert_eq!(answer["batchItemFailures"], json!([{"itemIdentifier": {"partition": "stock-1", "offset": 3}}]));
        // Delivered again, the applied records are duplicates.
        let again = handle_kafka(&ingestor, &event).await;
        assert_eq!((&again["applied"], &again["duplicates"]), (&json!(0), &json!(2)), "{again}");
    }
}
