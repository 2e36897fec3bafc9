//! The query routes. Order and inventory views (each stream kind's `View`)
//! come from the snapshot store (eventually consistent: each says which
//! version it reflects, also as its ETag); an order's history comes from the
//! event store.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use orderflow_domain::inventory::Inventory;
use orderflow_domain::order::{Order, OrderLine, OrderState, Payment, Shipment};
use orderflow_domain::Aggregate;
use orderflow_pipeline::ports::Snapshot;
use orderflow_pipeline::reads::{self, Current, Read};
use orderflow_pipeline::streams::{current_data, order_stream, sku_stream, Category};
use orderflow_pipeline::StoreError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use crate::declared::{QueryRefusals, ReadHeaders, Refusals};
use crate::problem::Problem;
use crate::problem::ProblemBody;
use crate::request::{etag, parse_etag, CustomerPath, Ids, OrderPath, SkuPath};
use crate::App;

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    order_id: String,
    customer_id: String,
    status: &'static str,
    currency: String,
    lines: Vec<LineView>,
    total_minor: u64,
    version: u64,
    updated_at: DateTime<Utc>,
    payment: Option<PaymentView>,
    payment_failure: Option<String>,
    shipment: Option<ShipmentView>,
    backordered_sku: Option<String>,
    cancel_reason: Option<String>,
    /// A deadline passed with the order still backordered, or shipped but
    /// not delivered (an overdue notice was published).
    overdue: bool,
}

/// One line of an order.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineView {
    sku: String,
    quantity: u32,
    /// Price of one unit in the currency's minor unit (cents).
    unit_price_minor: u64,
}

impl From<OrderLine> for LineView {
    fn from(line: OrderLine) -> Self {
        LineView { sku: line.sku, quantity: line.quantity, unit_price_minor: line.unit_price_minor }
    }
}

/// The payment authorized for an order.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentView {
    payment_id: String,
    amount_minor: u64,
}

impl From<Payment> for PaymentView {
    fn from(payment: Payment) -> Self {
        PaymentView { payment_id: payment.payment_id, amount_minor: payment.amount_minor }
    }
}

/// How an order was shipped.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentView {
    shipment_id: String,
    carrier: String,
    tracking_number: String,
}

impl From<Shipment> for ShipmentView {
    fn from(shipment: Shipment) -> Self {
        ShipmentView {
            shipment_id: shipment.shipment_id,
            carrier: shipment.carrier,
            tracking_number: shipment.tracking_number,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderSummary {
    order_id: String,
    status: &'static str,
    currency: String,
    total_minor: u64,
    version: u64,
    updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerOrders {
    customer_id: String,
    /// Newest first.
    orders: Vec<OrderSummary>,
}

/// One event of a stream's history.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEvent {
    event_id: String,
    #[serde(rename = "type")]
    event_type: String,
    /// The version of the type's shape `data` is in: always the current one
    /// (older stored shapes are brought up to it), unless a newer orderflow
    /// wrote it.
    schema_version: u32,
    /// Position in the stream, from 0.
    index: u64,
    time: DateTime<Utc>,
    data: Value,
    /// The message that caused it: `http:{Idempotency-Key}`, a CloudEvent's
    /// `{source}#{id}`, a reaction's `{eventId}/{n}`, or a request id.
    message_id: String,
    /// The trace (or caller's correlation id) it belongs to.
    correlation_id: String,
    /// The request, message or event that caused it.
    causation_id: String,
}

/// A stream's events from `query.from` on, as the history routes answer.
async fn history(app: &App, stream_id: &str, query: HistoryQuery, what: &str) -> Result<Response, Problem> {
    let limit = query.limit.unwrap_or(1000).clamp(1, 10_000);
    let events = app.events.read_stream(stream_id, query.from, limit).await?;
    if events.is_empty() && query.from == 0 {
        return Err(Problem::not_found(format!("no such {what}")));
    }
    let body = events
        .into_iter()
        .map(|e| {
            let (schema_version, data) = current_data(&e)?;
            Ok(HistoryEvent {
                event_id: e.event_id.to_string(),
                event_type: e.event_type,
                schema_version,
                index: e.index,
                time: e.time,
                data,
                message_id: e.message_id,
                correlation_id: e.correlation_id,
                causation_id: e.causation_id,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Json(body).into_response())
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryView {
    sku: String,
    on_hand: u64,
    reserved: u64,
    available: u64,
    /// The reservations that are open, oldest first (at most 1,000).
    open_reservations: Vec<ReservationView>,
    /// Open reservations beyond those listed.
    unlisted_reservations: u64,
    version: u64,
    updated_at: DateTime<Utc>,
}

/// Stock held for an order until it ships or is released.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReservationView {
    order_id: String,
    /// The order's reservation attempt (a new one after a backorder).
    attempt: u32,
    quantity: u32,
    /// When it was made.
    since: DateTime<Utc>,
}

/// Read-your-writes: the version a command answered (its `version`, also
/// its ETag).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadQuery {
    /// Answer this version of the stream or a newer one (the `version` a
    /// command answered): the read then sees that command, whatever the
    /// read model's lag. 412 if the stream never reaches it.
    min_version: Option<u64>,
}

/// The stream's read model, at the version the reader asks for or newer;
/// a stream that exists is found even before its first projection.
async fn current<A: Aggregate>(
    app: &App,
    stream_id: &str,
    query: Result<Query<ReadQuery>, axum::extract::rejection::QueryRejection>,
    what: &str,
) -> Result<Read<A::View>, Problem> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    let at_least = query.min_version.unwrap_or(0);
    match reads::current::<A>(app.events.as_ref(), app.snapshots.as_ref(), stream_id, at_least).await? {
        Current::Found(read) => Ok(read),
        Current::Missing => Err(Problem::not_found(format!("no such {what}"))),
        Current::NotReached { version } => Err(Problem::new(
            StatusCode::PRECONDITION_FAILED,
            "version-not-reached",
            format!("the {what} is at version {version}, not {at_least}"),
        )),
    }
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

/// An order: its read model, at `minVersion` or newer when given.
#[utoipa::path(
    get, path = "/api/orders/{order_id}", tag = "orders",
    params(OrderPath, ReadQuery, ReadHeaders),
    responses(
        (status = 200, body = OrderView, headers(("ETag" = String))),
        (status = 304, description = "Not modified since the version in If-None-Match"),
        (status = 412, description = "The stream has not reached `minVersion`", body = ProblemBody, content_type = "application/problem+json"),
        QueryRefusals, Refusals,
    ),
)]
pub async fn get_order(
    State(app): State<App>,
    Ids(OrderPath { order_id }): Ids<OrderPath>,
    query: Result<Query<ReadQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let Read { view: state, version, updated_at } =
        current::<Order>(&app, &order_stream(&order_id), query, "order").await?;
    let view = OrderView {
        order_id: order_id.into(),
        customer_id: state.customer_id.clone(),
        status: state.status.as_str(),
        total_minor: state.total_minor(),
        currency: state.currency,
        lines: state.lines.into_iter().map(LineView::from).collect(),
        version,
        updated_at,
        payment: state.payment.map(PaymentView::from),
        payment_failure: state.payment_failure,
        shipment: state.shipment.map(ShipmentView::from),
        backordered_sku: state.backordered_sku,
        cancel_reason: state.cancel_reason,
        overdue: state.overdue,
    };
    Ok(versioned(&headers, version, view))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HistoryQuery {
    /// The first event's index.
    #[serde(default)]
    from: u64,
    /// At most this many events (1 to 10,000; 1,000 by default).
    limit: Option<usize>,
}

/// An order's events, oldest first, from the event store.
#[utoipa::path(
    get, path = "/api/orders/{order_id}/events", tag = "orders",
    params(OrderPath, HistoryQuery),
    responses((status = 200, body = Vec<HistoryEvent>), QueryRefusals, Refusals),
)]
pub async fn order_events(
    State(app): State<App>,
    Ids(OrderPath { order_id }): Ids<OrderPath>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    history(&app, &order_stream(&order_id), query, "order").await
}

/// A SKU's events (restocks, reservations, releases, shipments), oldest
/// first, from the event store.
#[utoipa::path(
    get, path = "/api/inventory/{sku}/events", tag = "inventory",
    params(SkuPath, HistoryQuery),
    responses((status = 200, body = Vec<HistoryEvent>), QueryRefusals, Refusals),
)]
pub async fn sku_events(
    State(app): State<App>,
    Ids(SkuPath { sku }): Ids<SkuPath>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
    history(&app, &sku_stream(&sku), query, "SKU").await
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    /// At most this many orders (1 to 1,000; 100 by default).
    limit: Option<usize>,
}

/// A customer's orders, newest first.
#[utoipa::path(
    get, path = "/api/customers/{customer_id}/orders", tag = "orders",
    params(CustomerPath, ListQuery),
    responses((status = 200, body = CustomerOrders), QueryRefusals, Refusals),
)]
pub async fn customer_orders(
    State(app): State<App>,
    Ids(CustomerPath { customer_id }): Ids<CustomerPath>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(query) = query.map_err(|e| Problem::bad_request(e.body_text()))?;
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
    Ok(Json(CustomerOrders { customer_id: customer_id.into(), orders: summaries }).into_response())
}

/// A SKU's stock: its read model, at `minVersion` or newer when given.
#[utoipa::path(
    get, path = "/api/inventory/{sku}", tag = "inventory",
    params(SkuPath, ReadQuery, ReadHeaders),
    responses(
        (status = 200, body = InventoryView, headers(("ETag" = String))),
        (status = 304, description = "Not modified since the version in If-None-Match"),
        (status = 412, description = "The stream has not reached `minVersion`", body = ProblemBody, content_type = "application/problem+json"),
        QueryRefusals, Refusals,
    ),
)]
pub async fn get_inventory(
    State(app): State<App>,
    Ids(SkuPath { sku }): Ids<SkuPath>,
    query: Result<Query<ReadQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let Read { view, version, updated_at } = current::<Inventory>(&app, &sku_stream(&sku), query, "SKU").await?;
    let body = InventoryView {
        sku: sku.into(),
        on_hand: view.on_hand,
        reserved: view.reserved,
        available: view.available(),
        unlisted_reservations: view.unlisted,
        open_reservations: view
            .open_reservations
            .into_iter()
            .map(|r| ReservationView { order_id: r.order_id, attempt: r.attempt, quantity: r.quantity, since: r.since })
            .collect(),
        version,
        updated_at,
    };
    Ok(versioned(&headers, version, body))
}

pub async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}
