//! The command routes: each turns a request into one domain command, runs it
//! through the command processor and answers with the stream's new version.

use axum::body::Bytes;
use axum::extract::{FromRequest, OriginalUri, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use orderflow_domain::inventory::InventoryCommand;
use orderflow_domain::order::{OrderCommand, OrderLine};
use orderflow_domain::Command;
use orderflow_pipeline::processor::{Envelope, Receipt};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::problem::Problem;
use crate::request::{body_bytes, checked_id, envelope, etag, idempotency_key, optional_json, required_json};
use crate::App;

const MAX_TEXT: usize = 1000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlaceOrder {
    order_id: Option<String>,
    customer_id: String,
    currency: String,
    lines: Vec<Line>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Line {
    sku: String,
    quantity: u32,
    unit_price_minor: u64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelOrder {
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Restock {
    quantity: u64,
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
        let body = body_bytes(Bytes::from_request(request, state).await)?;
        let envelope = envelope(&headers, &method, &path, &body)?;
        Ok(CommandRequest { body, envelope, headers })
    }
}

async fn run(app: &App, command: Command, envelope: &Envelope) -> Result<Receipt, Problem> {
    Ok(app.processor.execute(&command, envelope).await?)
}

fn order_answer(status: StatusCode, order_id: &str, receipt: &Receipt) -> Response {
    let body = json!({"orderId": order_id, "version": receipt.version, "status": receipt.status});
    (status, [(header::ETAG, etag(receipt.version))], Json(body)).into_response()
}

pub async fn place_order(State(app): State<App>, request: CommandRequest) -> Result<Response, Problem> {
    let place: PlaceOrder = required_json(&request.headers, &request.body)?;
    // Without an id, a retry with the same Idempotency-Key must reach the same
    // order: derive the id from the key.
    let order_id = match (place.order_id, idempotency_key(&request.headers)?) {
        (Some(id), _) => id,
        (None, Some(key)) => Uuid::new_v5(&Uuid::NAMESPACE_OID, key.as_bytes()).to_string(),
        (None, None) => Uuid::new_v4().to_string(),
    };
    checked_id("orderId", &order_id)?;
    if place.customer_id.len() > 128 || place.customer_id.chars().any(char::is_control) {
        return Err(Problem::bad_request("customerId must be at most 128 characters, without control characters"));
    }
    let lines = place.lines.into_iter().map(Line::into_domain).collect::<Result<Vec<_>, _>>()?;
    let command = OrderCommand::Place { customer_id: place.customer_id, currency: place.currency, lines };
    let receipt = run(&app, Command::Order { order_id: order_id.clone(), command }, &request.envelope).await?;
    let mut response = order_answer(StatusCode::CREATED, &order_id, &receipt);
    if let Ok(location) = format!("/api/orders/{order_id}").parse() {
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
    Ok(order_answer(StatusCode::OK, &order_id, &receipt))
}

pub async fn add_line(
    State(app): State<App>,
    Path(order_id): Path<String>,
    request: CommandRequest,
) -> Result<Response, Problem> {
    checked_id("orderId", &order_id)?;
    let line = required_json::<Line>(&request.headers, &request.body)?.into_domain()?;
    order_command(&app, order_id, &request, OrderCommand::AddLine { line }).await
}

pub async fn remove_line(
    State(app): State<App>,
    Path((order_id, sku)): Path<(String, String)>,
    request: CommandRequest,
) -> Result<Response, Problem> {
    checked_id("orderId", &order_id)?;
    checked_id("sku", &sku)?;
    order_command(&app, order_id, &request, OrderCommand::RemoveLine { sku }).await
}

pub async fn confirm(
    State(app): State<App>,
    Path(order_id): Path<String>,
    request: CommandRequest,
) -> Result<Response, Problem> {
    checked_id("orderId", &order_id)?;
    order_command(&app, order_id, &request, OrderCommand::Confirm).await
}

pub async fn cancel(
    State(app): State<App>,
    Path(order_id): Path<String>,
    request: CommandRequest,
) -> Result<Response, Problem> {
    checked_id("orderId", &order_id)?;
    let cancel: CancelOrder = optional_json(&request.headers, &request.body)?.unwrap_or_default();
    if cancel.reason.as_ref().is_some_and(|r| r.len() > MAX_TEXT) {
        return Err(Problem::bad_request(format!("reason must be at most {MAX_TEXT} characters")));
    }
    order_command(&app, order_id, &request, OrderCommand::Cancel { reason: cancel.reason }).await
}

pub async fn restock(
    State(app): State<App>,
    Path(sku): Path<String>,
    request: CommandRequest,
) -> Result<Response, Problem> {
    checked_id("sku", &sku)?;
    let restock: Restock = required_json(&request.headers, &request.body)?;
    let command =
        Command::Inventory { sku: sku.clone(), command: InventoryCommand::Restock { quantity: restock.quantity } };
    let receipt = run(&app, command, &request.envelope).await?;
    let body = json!({"sku": sku, "version": receipt.version});
    Ok((StatusCode::OK, [(header::ETAG, etag(receipt.version))], Json(body)).into_response())
}
