//! What an operator can do from the console, each as `orderflow` would do
//! it from the command line, and each recorded (a log line and
//! `orderflow_console_actions_total` by action and outcome). They take a JSON
//! body, so that a form on another site cannot post them (and the session
//! cookie is `SameSite=Strict`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use orderflow_api::Problem;
use orderflow_pipeline::consumers::{retry, Retried};
use serde::Deserialize;
use serde_json::json;

use super::state::Ops;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParkedStream {
    consumer: String,
    stream_id: String,
}

/// `POST /parked/retry`: as `orderflow parked retry STREAM --consumer NAME`.
pub async fn retry_parked(State(ops): State<Arc<Ops>>, Json(asked): Json<ParkedStream>) -> Response {
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
            record("parked-retry", "failed", &asked);
            return Problem::from(error).into_response();
        }
    };
    record("parked-retry", name, &asked);
    Json(answer).into_response()
}

fn record(action: &'static str, outcome: &'static str, on: &ParkedStream) {
    tracing::info!(action, outcome, consumer = on.consumer, stream_id = on.stream_id, "console action");
    metrics::counter!("orderflow_console_actions_total", "action" => action, "outcome" => outcome).increment(1);
}
