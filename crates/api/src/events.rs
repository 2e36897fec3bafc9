//! `POST /api/events`: the HTTP twin of the Kafka ingestion topics. One
//! CloudEvent (binary or structured content mode) or a batch
//! (`application/cloudevents-batch+json`), with the same mapping,
//! idempotency (`source` + `id`) and dead-lettering as Kafka ingestion.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cloudevents::{AttributesReader, Event};
use orderflow_pipeline::ingest::{Delivery, IngestError, Ingested, Origin};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::declared::{BinaryEventHeaders, EventRefusals, Refusals, StructuredEvent};
use crate::problem::Problem;
use crate::request::body_bytes;
use crate::App;

const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";
pub const MAX_BATCH: usize = 1000;

/// The answer to `POST /api/events`: one outcome, or one per event of a batch.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum EventsAnswer {
    One(Outcome),
    Batch { results: Vec<BatchResult> },
}

/// What became of one event.
#[derive(Serialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum Outcome {
    /// The command ran (or was a no-op); durable.
    Applied { receipt: Receipt },
    /// The same event was applied before; nothing new happened.
    Duplicate { receipt: Receipt },
    /// Written to the dead-letter topic instead.
    #[serde(rename_all = "camelCase")]
    DeadLettered { kind: &'static str, reason: String },
}

/// The stream an applied event changed.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// `Order-{orderId}` or `Sku-{sku}`.
    stream_id: String,
    /// The stream's version after the command.
    version: u64,
    /// The order's status after it (none for a SKU).
    status: Option<String>,
    /// How many events the command appended (0 for a no-op).
    appended: usize,
}

impl From<Ingested> for Outcome {
    fn from(ingested: Ingested) -> Self {
        let receipt = |r: orderflow_pipeline::processor::Receipt| Receipt {
            stream_id: r.stream_id,
            version: r.version,
            status: r.status,
            appended: r.appended,
        };
        match ingested {
            Ingested::Applied { receipt: r } => Outcome::Applied { receipt: receipt(r) },
            Ingested::Duplicate { receipt: r } => Outcome::Duplicate { receipt: receipt(r) },
            Ingested::DeadLettered { kind, reason } => Outcome::DeadLettered { kind, reason },
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BatchResult {
    /// The event's `id`, as sent.
    id: Value,
    result: Outcome,
}

/// Send back-end events (payments, shipments, stock) as CloudEvents.
#[utoipa::path(
    post, path = "/api/events", tag = "events",
    params(BinaryEventHeaders),
    request_body(content(
        (StructuredEvent = "application/cloudevents+json"),
        // Items are structured events; one that is not is dead-lettered on its own.
        (Vec<Value> = "application/cloudevents-batch+json"),
        (Value = "application/json"),
    ), description = "Structured mode, a batch, or binary mode (the data as the body, attributes in ce-* headers)"),
    responses(
        (status = 202, description = "Applied, or recognised as a duplicate (for a batch: each event's outcome)",
            body = EventsAnswer),
        EventRefusals, Refusals,
    ),
)]
pub async fn post_events(
    State(app): State<App>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body = body_bytes(body)?;
    let delivery = Delivery {
        origin: Origin::Http { request_id: Uuid::new_v4().to_string() },
        key: None,
        // Only what describes the event: never credentials or other headers.
        headers: headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("ce-") || *name == header::CONTENT_TYPE)
            .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
            .collect(),
        payload: body.to_vec(),
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.to_ascii_lowercase().starts_with(BATCH_CONTENT_TYPE) {
        return ingest_batch(&app, delivery).await;
    }
    let event = cloudevents::binding::http::to_event(&headers, body.to_vec()).map_err(|e| match e {
        cloudevents::message::Error::WrongEncoding {} => "expected binary mode (ce-* headers) or structured mode \
            (Content-Type: application/cloudevents+json)"
            .to_string(),
        other => other.to_string(),
    });
    let id = event.as_ref().map(|e| e.id().to_string()).ok();
    match app.ingestor.ingest(&delivery, event).await? {
        Ingested::DeadLettered { kind, reason } => Err(dead_letter_problem(kind, reason, id)),
        accepted => Ok((StatusCode::ACCEPTED, Json(EventsAnswer::One(accepted.into()))).into_response()),
    }
}

async fn ingest_batch(app: &App, delivery: Delivery) -> Result<Response, Problem> {
    let items = match serde_json::from_slice::<Value>(&delivery.payload) {
        Ok(Value::Array(items)) if items.len() <= MAX_BATCH => items,
        Ok(Value::Array(_)) => {
            let detail = format!("a batch holds at most {MAX_BATCH} events; split it");
            return Err(Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", detail));
        }
        Ok(_) | Err(_) => {
            let error = IngestError::Undecodable("a CloudEvents batch must be a JSON array of events".into());
            app.ingestor.dead_letter(&delivery, &error).await?;
            return Err(dead_letter_problem(error.kind(), error.to_string(), None));
        }
    };
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let id = item.get("id").cloned().unwrap_or(Value::Null);
        let one = Delivery { payload: item.to_string().into_bytes(), ..delivery.clone() };
        let event = serde_json::from_value::<Event>(item).map_err(|e| format!("not a structured CloudEvent: {e}"));
        let outcome = app.ingestor.ingest(&one, event).await?;
        results.push(BatchResult { id, result: outcome.into() });
    }
    Ok((StatusCode::ACCEPTED, Json(EventsAnswer::Batch { results })).into_response())
}

/// A dead-lettered single event: 400 when it cannot be read, 422 when it
/// reads but cannot be applied.
fn dead_letter_problem(kind: &'static str, reason: String, id: Option<String>) -> Problem {
    let status = match kind {
        "undecodable" | "invalid-data" => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    Problem::new(status, kind, reason).with("deadLettered", true).with("id", id)
}
