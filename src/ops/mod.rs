//! What operators reach on `serve` besides the API: Prometheus metrics at
//! `/metrics`, liveness at `/health/live`, readiness at `/health/ready`, the
//! change-feed consumers at `/health/pipeline`, and
//! the status page for people at `/`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use orderflow_pipeline::consumers::FeedHealth;
use orderflow_pipeline::ingest::Ingestor;
use orderflow_pipeline::ports::{EventStore, LeaseStore, Parking, Refusals, SnapshotStore, Timers};
use serde_json::json;

/// A consumer failing, or behind, for longer than this is a pipeline problem.
const STUCK_AFTER: Duration = Duration::from_secs(30);
/// How long the store may take to answer the readiness probe.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Ops {
    pub metrics: PrometheusHandle,
    pub events: Arc<dyn EventStore>,
    pub snapshots: Arc<dyn SnapshotStore>,
    pub ingestor: Arc<Ingestor>,
    pub refusals: Arc<dyn Refusals>,
    pub parking: Arc<dyn Parking>,
    pub leases: Arc<dyn LeaseStore>,
    pub timers: Arc<dyn Timers>,
    pub feeds: FeedHealth,
    /// This process, as the leases name it.
    pub instance: String,
    pub store_name: String,
}

/// Records every `metrics::` call of the process from now on; histograms
/// (`*_seconds`) get Prometheus buckets from 1 ms to 5 s.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)?
        .install_recorder()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

pub fn router(ops: Ops) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(|| async { Json(json!({"status": "alive"})) }))
        .route("/health/ready", get(ready))
        .route("/health/pipeline", get(pipeline))
        .route("/", get(crate::status::page))
        .route("/status.json", get(crate::status::status))
        .with_state(Arc::new(ops))
}

async fn metrics(State(ops): State<Arc<Ops>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], ops.metrics.render()).into_response()
}

/// Ready to take requests when the store answers a read and takes a write
/// within 2 s (the write is this instance's heartbeat). How the change-feed
/// consumers are doing is said beside it, and does not make the API unready:
/// `/health/pipeline` answers for them.
async fn ready(State(ops): State<Arc<Ops>>) -> Response {
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
async fn pipeline(State(ops): State<Arc<Ops>>) -> Response {
    let problems = ops.feeds.problems(STUCK_AFTER);
    if problems.is_empty() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "behind", "reasons": problems}))).into_response()
    }
}
