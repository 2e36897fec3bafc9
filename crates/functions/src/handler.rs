//! The custom handler's HTTP server: the host's readiness probe, one route per
//! non-HTTP function, and the forwarded HTTP API (`orders-api`).
//!
//! A function answers 200 only once its batch's effect is durable (appended,
//! written, or handed back as outputs that the host writes before it commits
//! the trigger); otherwise 500, and the host retries the batch under the
//! function's retry policy. Every step is idempotent, so a retry is safe.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use orderflow_pipeline::consumers::{Consumer, Fulfillment, Parked, Projector, Publisher};
use orderflow_pipeline::deadlines::DeadlineTimers;
use orderflow_pipeline::ingest::{Ingested, Ingestor, Received};
use orderflow_pipeline::ports::{EventStore, Message, MessageProducer, Parking, Refusals, SnapshotStore, StoreError};
use orderflow_pipeline::processor::CommandProcessor;
use orderflow_pipeline::time_driven::{Ran, TimeDriven};
use orderflow_pipeline::topics::{self, Topic};
use serde_json::{json, Value};

use crate::documents::decode_events;
use crate::invocation::{InvocationRequest, InvocationResponse};
use crate::kafka_data::{decode_records, output_element};

/// The Kafka-triggered function of an ingestion topic: a Kafka trigger reads
/// one topic, so there is one per ingestion topic (`ingest-payments`), all
/// handled alike.
pub fn ingest_function(topic: &Topic) -> String {
    format!("ingest-{}", topic.name)
}

/// Binding names, as `functions/*/function.json` declare them.
pub const KAFKA_TRIGGER: &str = "events";
pub const COSMOS_TRIGGER: &str = "documents";

/// What the functions work with: the same pipeline steps as `serve`.
pub struct Steps {
    pub processor: Arc<CommandProcessor>,
    pub events: Arc<dyn EventStore>,
    pub snapshots: Arc<dyn SnapshotStore>,
    pub refusals: Arc<dyn Refusals>,
    pub parking: Arc<dyn Parking>,
    pub deadlines: DeadlineTimers,
    pub time_driven: Arc<TimeDriven>,
}

/// The handler: `api` is the HTTP API router, served at `/api/...` for the
/// forwarded requests of `orders-api`.
pub fn router(steps: Steps, api: Router) -> Router {
    let mut router = Router::new()
        // The host waits for any answer here before it sends invocations.
        .route("/", get(|| async { "orderflow custom handler" }));
    for topic in topics::INGESTION {
        router = router.route(&format!("/{}", ingest_function(topic)), post(ingest));
    }
    router
        .route("/publish-events", post(publish_events))
        .route("/project-snapshots", post(project_snapshots))
        .route("/fulfillment", post(fulfillment))
        .route("/deadlines", post(deadlines))
        .with_state(Arc::new(steps))
        .merge(api)
}

/// `ingest-*` (kafkaTrigger, many): applies each record, partitions in order;
/// bad records go to the `deadletter` output.
async fn ingest(State(steps): State<Arc<Steps>>, body: Bytes) -> Response {
    let outbox = Arc::new(Outbox::default());
    let ingestor = Ingestor::new(steps.processor.clone(), outbox.clone());
    let batch = match InvocationRequest::parse(&body) {
        Ok(request) => match request.data.get(KAFKA_TRIGGER) {
            Some(value) => decode_records(value),
            None => return failed("ingest-*", &format!("no `{KAFKA_TRIGGER}` binding in the invocation")),
        },
        // Not even an envelope: kept whole, as one dead letter.
        Err(reason) => vec![Received::unreadable(body.to_vec(), reason)],
    };
    match ingestor.ingest_batch(&batch).await {
        Ok(outcomes) => {
            let summary = summarize(&outcomes);
            succeeded(&outbox, vec![format!("ingested: {summary}")])
        }
        Err(error) => failed("ingest-*", &error.to_string()),
    }
}

/// `publish-events` (cosmosDBTrigger): the batch's events as CloudEvents on
/// the `orders` and `inventory` outputs.
async fn publish_events(State(steps): State<Arc<Steps>>, body: Bytes) -> Response {
    let outbox = Arc::new(Outbox::default());
    consume(&steps, Arc::new(Publisher::new(outbox.clone())), &body, &outbox).await
}

/// `project-snapshots` (cosmosDBTrigger): the read models.
async fn project_snapshots(State(steps): State<Arc<Steps>>, body: Bytes) -> Response {
    let projector = Arc::new(Projector::new(steps.events.clone(), steps.snapshots.clone()));
    consume(&steps, projector, &body, &Outbox::default()).await
}

/// `fulfillment` (cosmosDBTrigger): the process manager's reactions.
async fn fulfillment(State(steps): State<Arc<Steps>>, body: Bytes) -> Response {
    let fulfillment =
        Arc::new(Fulfillment::new(steps.processor.clone(), steps.refusals.clone(), steps.deadlines.clone()));
    consume(&steps, fulfillment, &body, &Outbox::default()).await
}

/// How long one `deadlines` invocation works at most: less than the
/// schedule's minute, so that the next run finds the rest.
const DEADLINES_BUDGET: std::time::Duration = std::time::Duration::from_secs(50);

/// `deadlines` (timerTrigger): the time-driven step — passes the deadlines
/// that are due, then archives orders closed long enough ago. The host's
/// schedule monitor runs it on one instance at a time; running it twice
/// would change nothing anyway.
async fn deadlines(State(steps): State<Arc<Steps>>) -> Response {
    match steps.time_driven.run(chrono::Utc::now(), DEADLINES_BUDGET).await {
        Ok(Ran { passed, archived }) => {
            let summary = format!(
                "deadlines: {} passed ({} changed their order), {} left for the next run; \
                 archive: {} closed order(s), {} event(s) moved",
                passed.handled, passed.acted, passed.failed, archived.orders, archived.events
            );
            succeeded(&Outbox::default(), vec![summary])
        }
        Err(error) => failed("deadlines", &error.to_string()),
    }
}

/// Runs a change-feed consumer over the trigger's documents, its poison
/// streams parked (their events held back, every other stream handled), so
/// that one bad event never makes the host retry the batch forever.
async fn consume(steps: &Steps, consumer: Arc<dyn Consumer>, body: &[u8], outbox: &Outbox) -> Response {
    let name = consumer.name();
    let request = InvocationRequest::parse(body);
    let events = request.as_ref().map_err(Clone::clone).and_then(|request| match request.data.get(COSMOS_TRIGGER) {
        Some(documents) => decode_events(documents),
        None => Err(format!("no `{COSMOS_TRIGGER}` binding in the invocation")),
    });
    // Documents of our own store that cannot be read are a bug to fix, not
    // input to skip: the batch is retried until it is handled.
    let events = match events {
        Ok(events) => events,
        Err(reason) => return failed(name, &reason),
    };
    let retry = request.map_or(0, |request| request.retry_count());
    let attempt = if retry > 0 { format!(" (retry {retry})") } else { String::new() };
    if events.is_empty() {
        return succeeded(outbox, vec![format!("{name}: no events{attempt}")]);
    }
    // The trigger's leases move ranges between instances: read the parked
    // streams before each batch.
    let parked = Parked::new(consumer, steps.parking.clone());
    if let Err(error) = parked.refresh().await {
        return failed(name, &error.to_string());
    }
    match parked.handle(&events).await {
        Ok(()) => succeeded(outbox, vec![format!("{name}: {} events{attempt}", events.len())]),
        Err(error) => failed(name, &error.to_string()),
    }
}

fn succeeded(outbox: &Outbox, logs: Vec<String>) -> Response {
    let mut response = InvocationResponse { logs, ..InvocationResponse::default() };
    let messages = outbox.taken();
    for topic in topics::ALL {
        let Some(binding) = topic.output_binding else { continue };
        let elements: Vec<Value> = messages.iter().filter(|m| m.topic == topic.name).map(output_element).collect();
        if !elements.is_empty() {
            response.outputs.insert(binding.to_string(), Value::Array(elements));
        }
    }
    (StatusCode::OK, Json(response)).into_response()
}

/// Non-2xx: the host fails the invocation and retries it per its policy.
fn failed(function: &str, reason: &str) -> Response {
    tracing::warn!(function, reason, "invocation failed; the host retries it");
    (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({"error": reason}))).into_response()
}

fn summarize(outcomes: &[Ingested]) -> String {
    let count = |f: fn(&Ingested) -> bool| outcomes.iter().filter(|o| f(o)).count();
    format!(
        "{} applied, {} duplicates, {} dead-lettered",
        count(|o| matches!(o, Ingested::Applied { .. })),
        count(|o| matches!(o, Ingested::Duplicate { .. })),
        count(|o| matches!(o, Ingested::DeadLettered { .. })),
    )
}

/// Messages handed back as output bindings instead of produced: the host
/// writes them when the invocation succeeds.
#[derive(Default)]
struct Outbox(Mutex<Vec<Message>>);

impl Outbox {
    fn taken(&self) -> Vec<Message> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

#[async_trait]
impl MessageProducer for Outbox {
    async fn send(&self, messages: Vec<Message>) -> Result<(), StoreError> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(messages);
        Ok(())
    }
}
