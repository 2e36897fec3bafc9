//! What operators reach on `serve` besides the API: Prometheus metrics at
//! `/metrics`, liveness at `/health/live`, readiness at `/health/ready`, the
//! change-feed consumers at `/health/pipeline`, and
//! the console for people at `/` with its live charts ([`series`]), an
//! order's journey, a SKU's reservations, the dead letters and parked streams
//! and what can be done about them ([`actions`]), behind a key when keys are
//! configured ([`access`]).

mod access;
mod actions;
mod dead_letters;
mod health;
mod journey;
pub mod series;
mod sku;
mod state;
mod status;

use std::sync::Arc;
use std::time::Duration;

use axum::middleware;
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::json;

pub use access::Access;
pub use state::Ops;

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

pub fn router(ops: Arc<Ops>) -> Router {
    let console = Router::new()
        .route("/", get(status::page))
        .route("/status.json", get(status::status))
        .route("/series.json", get(series::samples).with_state(ops.series.clone()))
        .route("/journey.json", get(journey::journey))
        .route("/sku.json", get(sku::sku))
        .route("/deadletters.json", get(dead_letters::dead_letters))
        .route("/parked/retry", post(actions::retry_parked))
        .route("/deadletters/reingest", post(actions::reingest))
        .route_layer(middleware::from_fn_with_state(ops.access.clone(), access::require_operator));
    let metrics = Router::new()
        .route("/metrics", get(health::metrics))
        .route_layer(middleware::from_fn_with_state(ops.access.clone(), access::require_metrics_access));
    let sign_in = Router::new()
        .route("/login", get(access::login_page).post(access::login))
        .route("/logout", post(access::logout))
        .with_state(ops.access.clone());
    Router::new()
        .route("/health/live", get(|| async { Json(json!({"status": "alive"})) }))
        .route("/health/ready", get(health::ready))
        .route("/health/pipeline", get(health::pipeline))
        .merge(sign_in)
        .merge(console)
        .merge(metrics)
        .with_state(ops)
}
