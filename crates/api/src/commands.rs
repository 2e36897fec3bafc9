//! The command routes: each turns a request into one domain command, runs it
//! through the command processor and answers with the stream's new version.

use axum::body::Bytes;
use axum::extract::{FromRequest, OriginalUri, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use orderflow_domain::inventory::InventoryCommand;
use orderflow_domain::limits::{MAX_REFERENCE, MAX_TEXT};
use orderflow_domain::order::{OrderCommand, OrderLine};
use orderflow_domain::Command;
use orderflow_pipeline::processor::{Envelope, Receipt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::declared::{CommandHeaders, CommandRefusals, Refusals};
use crate::problem::Problem;
use crate::request::{body_bytes, checked_id, envelope, etag, idempotency_key, optional_json, required_json, Caller};
use crate::request::{Ids, LinePath, OrderPath, SkuPath};
use crate::App;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceOrder {
    /// Chosen by the caller, or derived from the Idempotency-Key, or new.
    order_id: Option<String>,
    /// Not blank, no control characters.
    customer_id: String,
    /// ISO 4217, such as `EUR`.
    currency: String,
    /// One per SKU.
    lines: Vec<Line>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Line {
    sku: String,
    quantity: u32,
    /// Price of one unit in the currency's minor unit (cents).
    unit_price_minor: u64,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelOrder {
    reason: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Restock {
    /// Units received.
    quantity: u64,
}

/// A command on an order was applied (or was a no-op).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderAccepted {
    order_id: String,
    /// The order stream's version after the command (also the ETag).
    version: u64,
    /// The order's status after the command.
    status: Option<String>,
}

/// A restock was applied.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkuAccepted {
    sku: String,
    version: u64,
}

impl Line {
    fn into_domain(self) -> Result<OrderLine, Problem> {
        checked_id("sku", &self.sku)?;
        Ok(OrderLine { sku: self.sku, quantity: self.quantity, unit_price_minor: self.unit_price_minor })
    }
}

/// What every command route starts with: the body (within the size limit)
/// and the command's envelope from the headers.
pub struct CommandRequest {
    body: Bytes,
    envelope: Envelope,
    headers: HeaderMap,
    caller: Caller,
}

impl<S: Send + Sync> FromRequest<S> for CommandRequest {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let method = request.method().clone();
        let path = match request.extensions().get::<OriginalUri>() {
            Some(original) => original.path().to_string(),
            None => request.uri().path().to_string(),
        };
        let headers = request.headers().clone();
        let caller = request.extensions().get::<Caller>().cloned().unwrap_or_default();
        let body = body_bytes(Bytes::from_request(request, state).await)?;
        let envelope = envelope(&headers, &caller, &method, &path, &body)?;
        Ok(CommandRequest { body, envelope, headers, caller })
    }
}

async fn run(app: &App, command: Command, envelope: &Envelope) -> Result<Receipt, Problem> {
    Ok(app.processor.execute(&command, envelope).await?)
}

fn order_answer(status: StatusCode, order_id: String, receipt: Receipt) -> Response {
    let body = OrderAccepted { order_id, version: receipt.version, status: receipt.status };
    (status, [(header::ETAG, etag(receipt.version))], Json(body)).into_response()
}

/// Place an order.
#[utoipa::path(
    post, path = "/api/orders", tag = "orders",
    params(CommandHeaders),
    request_body(content = PlaceOrder, content_type = "application/json"),
    responses(
        (status = 201, description = "Placed (or placed before, with the same Idempotency-Key)", body = OrderAccepted,
            headers(("ETag" = String), ("Location" = String))),
        CommandRefusals, Refusals,
    ),
)]
pub async fn place_order(State(app): State<App>, request: CommandRequest) -> Result<Response, Problem> {
    let place: PlaceOrder = required_json(&request.headers, &request.body)?;
    // Without an id, a retry with the same Idempotency-Key must reach the same
    // order: derive the id from the key (and its caller's API key, so that
    // two callers' keys of the same text name two orders).
    let order_id = match (place.order_id, idempotency_key(&request.headers)?) {
        (Some(id), _) => id,
        (None, Some(key)) => {
            let name = if request.caller.0.is_empty() { key } else { format!("{}/{key}", request.caller.0) };
            Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()).to_string()
        }
        (None, None) => Uuid::new_v4().to_string(),
    };
    checked_id("orderId", &order_id)?;
    if place.customer_id.len() > MAX_REFERENCE || place.customer_id.chars().any(char::is_control) {
        return Err(Problem::bad_request(format!(
            "customerId must be at most {MAX_REFERENCE} characters, without control characters"
        )));
    }
    let lines = place.lines.into_iter().map(Line::into_domain).collect::<Result<Vec<_>, _>>()?;
    let command = OrderCommand::Place { customer_id: place.customer_id, currency: place.currency, lines };
    let receipt = run(&app, Command::Order { order_id: order_id.clone(), command }, &request.envelope).await?;
    let location = format!("/api/orders/{order_id}").parse();
    let mut response = order_answer(StatusCode::CREATED, order_id, receipt);
    if let Ok(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Runs a command on an existing order and answers 200 with its version.
async fn order_command(
    app: &App,
    order_id: String,
    request: &CommandRequest,
    command: OrderCommand,
) -> Result<Response, Problem> {
    let receipt = run(app, Command::Order { order_id: order_id.clone(), command }, &request.envelope).await?;
    Ok(order_answer(StatusCode::OK, order_id, receipt))
}

/// Add a line to a placed order.
#[utoipa::path(
    post, path = "/api/orders/{order_id}/lines", tag = "orders",
    params(OrderPath, CommandHeaders),
    request_body(content = Line, content_type = "application/json"),
    responses(
        (status = 200, description = "Applied (or a no-op)", body = OrderAccepted, headers(("ETag" = String))),
        CommandRefusals, Refusals,
    ),
)]
pub async fn add_line(
    State(app): State<App>,
    Ids(OrderPath { order_id }): Ids<OrderPath>,
    request: CommandRequest,
) -> Result<Response, Problem> {
    checked_id("orderId", &order_id)?;
    let line = required_json::<Line>(&request.headers, &request.body)?.into_domain()?;
    order_command(&app, order_id, &request, OrderCommand::AddLine { line }).await
}

/// Remove a line from a placed order.
#[utoipa::path(
    delete, path = "/api/orders/{order_id}/lines/{sku}", tag = "orders",
    params(LinePath, CommandHeaders),
    responses(
        (status = 200, description = "Applied (or a no-op)", body = OrderAccepted, headers(("ETag" = String))),
        CommandRefusals, Refusals,
    ),
)]
pub async fn remove_line(
    State(app): State<App>,
    Ids(LinePath { order_id, sku }): Ids<LinePath>,
    request: CommandRequest,
) -> Result<Response, Problem> {
    checked_id("orderId", &order_id)?;
    checked_id("sku", &sku)?;
    order_command(&app, order_id, &request, OrderCommand::RemoveLine { sku }).await
}

/// Confirm an order: fulfillment reserves its stock.
#[utoipa::path(
    post, path = "/api/orders/{order_id}/confirm", tag = "orders",
    params(OrderPath, CommandHeaders),
    responses(
        (status = 200, description = "Applied (or a no-op)", body = OrderAccepted, headers(("ETag" = String))),
        CommandRefusals, Refusals,
    ),
)]
pub async fn confirm(
    State(app): State<App>,
    Ids(OrderPath { order_id }): Ids<OrderPath>,
    request: CommandRequest,
) -> Result<Response, Problem> {
    checked_id("orderId", &order_id)?;
    order_command(&app, order_id, &request, OrderCommand::Confirm).await
}

/// Cancel an order that has not shipped: its reservations are released.
#[utoipa::path(
    post, path = "/api/orders/{order_id}/cancel", tag = "orders",
    params(OrderPath, CommandHeaders),
    request_body(content = Option<CancelOrder>, content_type = "application/json"),
    responses(
        (status = 200, description = "Applied (or a no-op)", body = OrderAccepted, headers(("ETag" = String))),
        CommandRefusals, Refusals,
    ),
)]
pub async fn cancel(
    State(app): State<App>,
    Ids(OrderPath { order_id }): Ids<OrderPath>,
    request: CommandRequest,
) -> Result<Response, Problem> {
    checked_id("orderId", &order_id)?;
    let cancel: CancelOrder = optional_json(&request.headers, &request.body)?.unwrap_or_default();
    if cancel.reason.as_ref().is_some_and(|r| r.len() > MAX_TEXT) {
        return Err(Problem::bad_request(format!("reason must be at most {MAX_TEXT} characters")));
    }
    order_command(&app, order_id, &request, OrderCommand::Cancel { reason: cancel.reason }).await
}

/// Add stock of a SKU.
#[utoipa::path(
    post, path = "/api/inventory/{sku}/restock", tag = "inventory",
    params(SkuPath, CommandHeaders),
    request_body(content = Restock, content_type = "application/json"),
    responses(
        (status = 200, description = "Applied", body = SkuAccepted, headers(("ETag" = String))),
        CommandRefusals, Refusals,
    ),
)]
pub async fn restock(
    State(app): State<App>,
    Ids(SkuPath { sku }): Ids<SkuPath>,
    request: CommandRequest,
) -> Result<Response, Problem> {
    checked_id("sku", &sku)?;
    let restock: Restock = required_json(&request.headers, &request.body)?;
    let command =
        Command::Inventory { sku: sku.clone(), command: InventoryCommand::Restock { quantity: restock.quantity } };
    let receipt = run(&app, command, &request.envelope).await?;
    let body = SkuAccepted { sku, version: receipt.version };
    Ok((StatusCode::OK, [(header::ETAG, etag(receipt.version))], Json(body)).into_response())
}
