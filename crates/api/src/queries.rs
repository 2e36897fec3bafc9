//! The query routes. Order and inventory views come from the snapshot store
//! (eventually consistent: each says which version it reflects, also as its
//! ETag); an order's history comes from the event store.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use orderflow_domain::inventory::SkuState;
use orderflow_domain::order::{OrderLine, OrderState, Payment, Shipment};
use orderflow_pipeline::ports::Snapshot;
use orderflow_pipeline::streams::{order_stream, sku_stream, Category};
use orderflow_pipeline::StoreError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::problem::Problem;
use crate::request::{checked_id, etag, parse_etag};
use crate::App;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    order_id: String,
    customer_id: String,
    status: &'static str,
    currency: String,
    lines: Vec<OrderLine>,
    total_minor: u64,
    version: u64,
    updated_at: DateTime<Utc>,
    payment: Option<Payment>,
    payment_failure: Option<String>,
    shipment: Option<Shipment>,
    backordered_sku: Option<String>,
    cancel_reason: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderSummary {
    order_id: String,
    status: &'static str,
    currency: String,
    total_minor: u64,
    version: u64,
    updated_at: DateTime<Utc>,
}

fn snapshot_state<T: DeserializeOwned>(snapshot: &Snapshot) -> Result<T, Problem> {
    serde_json::from_value(snapshot.state.clone())
        .map_err(|e| Problem::from(StoreError::Corrupt(format!("snapshot of {}: {e}", snapshot.stream_id))))
}

/// A JSON answer with the version as ETag, or 304 when the client has it.
fn versioned<T: Serialize>(request: &HeaderMap, version: u64, body: T) -> Response {
    let not_modified = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == "*" || parse_etag(tag) == Some(version)));
    if not_modified {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag(version))]).into_response();
    }
    (StatusCode::OK, [(header::ETAG, etag(version))], Json(body)).into_response()
}

pub async fn get_order(
    State(app): State<App>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    checked_id("orderId", &order_id)?;
    let snapshot =
        app.snapshots.get(&order_stream(&order_id)).await?.ok_or_else(|| Problem::not_found("no such order"))?;
    let state = snapshot_state::<OrderState>(&snapshot)?;
    let view = OrderView {
        order_id,
        customer_id: state.customer_id.clone(),
        status: state.status.as_str(),
        total_minor: state.total_minor(),
        currency: state.currency,
        lines: state.lines,
        version: snapshot.version,
        updated_at: snapshot.updated_at,
        payment: state.payment,
        payment_failure: state.payment_failure,
        shipment: state.shipment,
        backordered_sku: state.backordered_sku,
        cancel_reason: state.cancel_reason,
    };
    Ok(versioned(&headers, snapshot.version, view))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HistoryQuery {
    #[serde(default)]
    from: u64,
    limit: Option<usize>,
}

pub async fn order_events(
    State(app): State<App>,
    Path(order_id): Path<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    checked_id("orderId", &order_id)?;
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(1000).clamp(1, 10_000);
    let stream_id = order_stream(&order_id);
    let events = app.events.read_stream(&stream_id, query.from, limit).await?;
    if events.is_empty() && query.from == 0 {
        return Err(Problem::not_found("no such order"));
    }
    let body: Vec<_> = events
        .iter()
        .map(|e| json!({"eventId": e.event_id, "type": e.event_type, "index": e.index, "time": e.time, "data": e.data}))
        .collect();
    Ok(Json(body).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<usize>,
}

pub async fn customer_orders(
    State(app): State<App>,
    Path(customer_id): Path<String>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    if customer_id.is_empty() || customer_id.len() > 128 {
        return Err(Problem::bad_request("customerId must be 1 to 128 characters"));
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let snapshots = app.snapshots.by_customer(&customer_id, limit).await?;
    let summaries = snapshots
        .iter()
        .map(|snapshot| {
            let state = snapshot_state::<OrderState>(snapshot)?;
            Ok(OrderSummary {
                order_id: Category::of(&snapshot.stream_id).map(|(_, id)| id.to_string()).unwrap_or_default(),
                status: state.status.as_str(),
                total_minor: state.total_minor(),
                currency: state.currency,
                version: snapshot.version,
                updated_at: snapshot.updated_at,
            })
        })
        .collect::<Result<Vec<_>, Problem>>()?;
    Ok(Json(json!({"customerId": customer_id, "orders": summaries})).into_response())
}

pub async fn get_inventory(
    State(app): State<App>,
    Path(sku): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    checked_id("sku", &sku)?;
    let snapshot = app.snapshots.get(&sku_stream(&sku)).await?.ok_or_else(|| Problem::not_found("no such SKU"))?;
    let state: SkuState = snapshot_state(&snapshot)?;
    let body = json!({
        "sku": sku,
        "onHand": state.on_hand,
        "reserved": state.reserved,
        "available": state.available(),
        "version": snapshot.version,
        "updatedAt": snapshot.updated_at,
    });
    Ok(versioned(&headers, snapshot.version, body))
}

pub async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}
