//! The command routes: each turns a request into one domain command, runs it
//! through the command processor and answers with the stream's new version.

use axum::body::Bytes;
use axum::extract::{FromRequest, OriginalUri, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use orderflow_domain::inventory::InventoryCommand;
use orderflow_domain::order::{NewLine, OrderCommand};
use orderflow_domain::values::{Currency, CustomerId, OrderId, Quantity, Reason, Sku, StockQuantity, UnitPrice};
use orderflow_domain::Command;
use orderflow_pipeline::processor::{Envelope, Receipt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::declared::{CommandHeaders, CommandRefusals, Refusals};
use crate::problem::Problem;
use crate::request::{body_bytes, envelope, etag, idempotency_key, optional_json, required_json, Caller};
use crate::request::{Ids, LinePath, OrderPath, SkuPath};
use crate::App;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceOrder {
    /// Chosen by the caller, or derived from the Idempotency-Key, or new.
    #[schema(value_type = Option<String>)]
    order_id: Option<OrderId>,
    /// Not blank, no control characters.
    #[schema(value_type = String)]
    customer_id: CustomerId,
    /// ISO 4217, such as `EUR`.
    #[schema(value_type = String)]
    currency: Currency,
    /// One per SKU.
    lines: Vec<Line>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Line {
    #[schema(value_type = String)]
    sku: Sku,
    #[schema(value_type = u32)]
    quantity: Quantity,
    /// Price of one unit in the currency's minor unit (cents).
    #[schema(value_type = u64)]
    unit_price_minor: UnitPrice,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelOrder {
    #[schema(value_type = Option<String>)]
    reason: Option<Reason>,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Restock {
    /// Units received.
    #[schema(value_type = u64)]
    quantity: StockQuantity,
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

impl From<Line> for NewLine {
    fn from(line: Line) -> NewLine {
        NewLine { sku: line.sku, quantity: line.quantity, unit_price_minor: line.unit_price_minor }
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

fn order_answer(status: StatusCode, order_id: OrderId, receipt: Receipt) -> Response {
    let body = OrderAccepted { order_id: order_id.into(), version: receipt.version, status: receipt.status };
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
            OrderId::try_from(Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()).to_string())?
        }
        (None, None) => OrderId::try_from(Uuid::new_v4().to_string())?,
    };
    let lines = place.lines.into_iter().map(NewLine::from).collect();
    let command = OrderCommand::Place { customer_id: place.customer_id, currency: place.currency, lines };
    let receipt = run(&app, Command::Order { order_id: order_id.to_string(), command }, &request.envelope).await?;
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
    order_id: OrderId,
    request: &CommandRequest,
    command: OrderCommand,
) -> Result<Response, Problem> {
    let receipt = run(app, Command::Order { order_id: order_id.to_string(), command }, &request.envelope).await?;
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
    let line = required_json::<Line>(&request.headers, &request.body)?.into();
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
    let cancel: CancelOrder = optional_json(&request.headers, &request.body)?.unwrap_or_default();
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
    let restock: Restock = required_json(&request.headers, &request.body)?;
    let command =
        Command::Inventory { sku: sku.to_string(), command: InventoryCommand::Restock { quantity: restock.quantity } };
    let receipt = run(&app, command, &request.envelope).await?;
    let body = SkuAccepted { sku: sku.into(), version: receipt.version };
    Ok((StatusCode::OK, [(header::ETAG, etag(receipt.version))], Json(body)).into_response())
}
