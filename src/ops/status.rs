//! The status page `serve` shows at `/`: each pipeline step with its
//! throughput and lag, recent orders and their statuses, the dead-letter
//! count, the reactions refused by their target and the deadlines due — a
//! static page that polls `/status.json` every second.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use orderflow_pipeline::deadlines::ROUND;
use orderflow_pipeline::ports::Snapshot;
use orderflow_pipeline::streams::Category;

use super::state::Ops;

pub async fn page() -> Html<&'static str> {
    Html(include_str!("status.html"))
}

/// An order in a list: its id, status, version and last change.
pub fn order_summary(snapshot: &Snapshot) -> Value {
    json!({
        "orderId": Category::of(&snapshot.stream_id).map_or(snapshot.stream_id.as_str(), |(_, id)| id),
        "status": snapshot.state["status"],
        "version": snapshot.version,
        "updatedAt": snapshot.updated_at,
    })
}

pub async fn status(State(ops): State<Arc<Ops>>) -> Response {
    let consumers: Vec<Value> = ops
        .feeds
        .snapshot()
        .into_iter()
        .map(|(name, health)| {
            json!({
                "name": name,
                "handled": health.handled,
                "lagSeconds": health.lag.as_secs_f64(),
                "failingForSeconds": health.failing_since.map(|since| since.elapsed().as_secs()),
                "lastError": health.last_error,
                "parked": health.parked,
            })
        })
        .collect();
    let orders = match ops.snapshots.recent_orders(20).await {
        Ok(snapshots) => snapshots.iter().map(order_summary).collect(),
        Err(error) => vec![json!({"error": error.to_string()})],
    };
    let parked = match ops.parking.parked(None).await {
        Ok(parked) => json!(parked.into_iter().take(50).map(|p| p.value).collect::<Vec<_>>()),
        Err(error) => json!({"error": error.to_string()}),
    };
    let refused = match ops.refusals.latest(10).await {
        Ok((latest, count)) => json!({"count": count, "latest": latest}),
        Err(error) => json!({"error": error.to_string()}),
    };
    // Only the due ones (an indexed query): every timer would be a scan.
    let now = chrono::Utc::now();
    let deadlines = match ops.timers.due(now, ROUND).await {
        Ok(due) => json!({
            "due": due.len(),
            "oldestDueSeconds": due.first().map(|timer| (now - timer.due_at).as_seconds_f64()),
        }),
        Err(error) => json!({"error": error.to_string()}),
    };
    Json(json!({
        "store": ops.store_kind,
        "deadlines": deadlines,
        "consumers": consumers,
        "deadLettered": ops.ingestor.dead_lettered(),
        "refusedReactions": refused,
        "parkedStreams": parked,
        "recentOrders": orders,
    }))
    .into_response()
}
