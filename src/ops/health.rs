//! `/metrics`, `/health/ready` and `/health/pipeline`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::state::Ops;

/// A consumer failing, or behind, for longer than this is a pipeline problem.
const STUCK_AFTER: Duration = Duration::from_secs(30);
/// How long the store may take to answer the readiness probe.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn metrics(State(ops): State<Arc<Ops>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], ops.metrics.render()).into_response()
}

/// Ready to take requests when the store answers a read and takes a write
/// within 2 s (the write is this instance's heartbeat). How the change-feed
/// consumers are doing is said beside it, and does not make the API unready:
/// `/health/pipeline` answers for them.
pub async fn ready(State(ops): State<Arc<Ops>>) -> Response {
    let probe = async {
        ops.events.load("Readiness-probe", None).await?;
        ops.leases.heartbeat(&ops.instance).await
    };
    let reasons: Vec<String> = match tokio::time::timeout(STORE_PROBE_TIMEOUT, probe).await {
        Ok(Ok(())) => Vec::new(),
        Ok(Err(error)) => vec![format!("the store does not take reads and writes: {error}")],
        Err(_) => vec![format!("the store did not answer within {} s", STORE_PROBE_TIMEOUT.as_secs())],
    };
    let pipeline = ops.feeds.problems(STUCK_AFTER);
    if reasons.is_empty() {
        Json(json!({"status": "ready", "pipeline": pipeline})).into_response()
    } else {
        let body = json!({"status": "not-ready", "reasons": reasons, "pipeline": pipeline});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// The change-feed consumers: 503 with the reasons while one has been
/// failing, or lagging, for over 30 s.
pub async fn pipeline(State(ops): State<Arc<Ops>>) -> Response {
    let problems = ops.feeds.problems(STUCK_AFTER);
    if problems.is_empty() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "behind", "reasons": problems}))).into_response()
    }
}
