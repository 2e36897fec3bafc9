//! What an operator can do from the console, each as `orderflow` would do
//! it from the command line, and each recorded with who did it (a log line
//! and `orderflow_console_actions_total` by action and outcome). They take a
//! JSON body, so that a form on another site cannot post them (and the
//! session cookie is `SameSite=Strict`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use orderflow_api::Problem;
use orderflow_pipeline::consumers::{retry, Retried};
use orderflow_pipeline::dead_letters::redelivery;
use orderflow_pipeline::topics::DEADLETTER;
use serde::Deserialize;
use serde_json::json;

use super::access::Operator;
use super::state::Ops;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParkedStream {
    consumer: String,
    stream_id: String,
}

/// `POST /parked/retry`: as `orderflow parked retry STREAM --consumer NAME`.
pub async fn retry_parked(
    State(ops): State<Arc<Ops>>,
    Extension(operator): Extension<Operator>,
    Json(asked): Json<ParkedStream>,
) -> Response {
    let on = format!("{} of {}", asked.stream_id, asked.consumer);
    let Some(step) = ops.consumers.iter().find(|c| c.name() == asked.consumer) else {
        return Problem::not_found(format!("no consumer {}", asked.consumer)).into_response();
    };
    let parked = match ops.parking.parked(Some(&asked.consumer)).await {
        Ok(parked) => parked.into_iter().find(|p| p.value.stream_id == asked.stream_id),
        Err(error) => return Problem::from(error).into_response(),
    };
    let Some(parked) = parked else {
        return Problem::not_found(format!("{} has not parked {}", asked.consumer, asked.stream_id)).into_response();
    };
    let outcome = retry(step.as_ref(), ops.events.as_ref(), ops.parking.as_ref(), parked).await;
    let (name, answer) = match outcome {
        Ok(Retried::Unparked { events }) => ("unparked", json!({"outcome": "unparked", "events": events})),
        Ok(Retried::StillParked { events, reason }) => {
            ("still-parked", json!({"outcome": "still-parked", "events": events, "reason": reason}))
        }
        Err(error) => {
            record("parked-retry", "failed", &operator, &on);
            return Problem::from(error).into_response();
        }
    };
    record("parked-retry", name, &operator, &on);
    Json(answer).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLetter {
    partition: i32,
    offset: i64,
    /// The payload to send instead of the one that was dead-lettered.
    payload: Option<String>,
}

/// `POST /deadletters/reingest`: sends a dead letter (its payload, or the
/// one given) through ingestion again with a new id; answers what ingestion
/// did with it — applied, a duplicate of an earlier re-ingestion, or
/// dead-lettered again with the reason.
pub async fn reingest(
    State(ops): State<Arc<Ops>>,
    Extension(operator): Extension<Operator>,
    Json(asked): Json<DeadLetter>,
) -> Response {
    let on = format!("dead letter {}@{}", asked.partition, asked.offset);
    let letter = match ops.topics.at(DEADLETTER.name, asked.partition, asked.offset).await {
        Ok(Some(letter)) => letter,
        Ok(None) => return Problem::not_found(format!("the dead-letter topic no longer holds {on}")).into_response(),
        Err(error) => return Problem::from(error).into_response(),
    };
    let received = match redelivery(&letter, asked.payload.as_deref()) {
        Ok(received) => received,
        Err(reason) => {
            record("reingest", "refused", &operator, &on);
            return Problem::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, "not-reingestable", reason)
                .into_response();
        }
    };
    let ingested = match ops.ingestor.ingest(&received.delivery, received.event).await {
        Ok(ingested) => ingested,
        Err(error) => {
            record("reingest", "failed", &operator, &on);
            return Problem::from(error).into_response();
        }
    };
    record("reingest", ingested.outcome(), &operator, &on);
    Json(ingested).into_response()
}

fn record(action: &'static str, outcome: &'static str, operator: &Operator, on: &str) {
    tracing::info!(action, outcome, operator = operator.0, on, "console action");
    metrics::counter!("orderflow_console_actions_total", "action" => action, "outcome" => outcome).increment(1);
}
