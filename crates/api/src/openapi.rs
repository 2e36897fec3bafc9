//! The API's OpenAPI 3.1 document, generated from the route handlers'
//! annotations and the request/answer types, served at `/api/openapi.json`.
//! The answers every route shares (problems, headers) are declared here once.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi, ToSchema};

use crate::problem::ProblemBody;
use crate::{commands, events, queries};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "orderflow",
        description = "Event-sourced order processing: commands change orders and stock; \
            queries read snapshots, which follow the commands within milliseconds (each names the \
            version it reflects, also as its ETag). Errors are RFC 9457 problem details.",
    ),
    paths(
        commands::place_order,
        commands::add_line,
        commands::remove_line,
        commands::confirm,
        commands::cancel,
        commands::restock,
        queries::get_order,
        queries::order_events,
        queries::customer_orders,
        queries::get_inventory,
        queries::sku_events,
        events::post_events,
    ),
    components(schemas(ProblemBody)),
    modifiers(&ApiKeys),
    security((), ("api_key" = [])),
)]
pub struct ApiDoc;

/// `X-API-Key`, required when the server is configured with keys.
struct ApiKeys;

impl Modify for ApiKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-API-Key",
            "Needed when the server has keys (OrderflowApiKeys); `Authorization: Bearer <key>` works too.",
        )));
        components.add_security_scheme("api_key", scheme);
    }
}

pub async fn document() -> Response {
    let body = ApiDoc::openapi().to_json().unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The headers that shape a command.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // read by hand in `request.rs`; declared here for the document
pub struct CommandHeaders {
    /// Makes the command safe to retry: the same key with the same request
    /// answers what the first one did, for the idempotency retention (7 days
    /// by default), however many other commands came meanwhile. The same key
    /// with another method, path or body is refused (422), whatever resource
    /// it names. Keys are scoped per API key (1 to 255 visible ASCII characters).
    #[param(
        rename = "Idempotency-Key",
        required = false,
        min_length = 1,
        max_length = 255,
        pattern = r"^[\x21-\x7E]+$"
    )]
    idempotency_key: String,
    /// Runs the command only if the stream is at this version (an ETag, such as `"3"`); 412 otherwise.
    #[param(rename = "If-Match", required = false, pattern = r#"^\s*(\*|(W/)?"?[0-9]{1,19}"?)\s*$"#)]
    if_match: String,
    /// The caller's correlation id, kept on every event the command causes.
    #[param(
        rename = "X-Correlation-Id",
        required = false,
        min_length = 1,
        max_length = 128,
        pattern = r"^[\x21-\x7E]+$"
    )]
    x_correlation_id: String,
    /// W3C trace context: the command joins the caller's trace.
    #[param(required = false)]
    traceparent: String,
}

/// The header that makes a read conditional.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // read by hand in `queries.rs`; declared here for the document
pub struct ReadHeaders {
    /// 304 when the resource is still at this version (an ETag, such as `"3"`).
    #[param(rename = "If-None-Match", required = false)]
    if_none_match: String,
}

/// The answers of every `/api` route when the request is refused before it
/// is looked at.
#[derive(IntoResponses)]
#[allow(dead_code)] // a description of `Problem`'s answers, never built
pub enum Refusals {
    /// An API key is needed and was missing or wrong.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthorized(ProblemBody),
    /// Too many requests in flight, or the store is unavailable: retry after `Retry-After`.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(ProblemBody),
    /// The request took too long (30 s) and may still take effect: send it
    /// again with the same Idempotency-Key, or read the resource, to learn
    /// its outcome.
    #[response(status = 504, content_type = "application/problem+json")]
    Timeout(ProblemBody),
}

/// The answers of a command that was not applied.
#[derive(IntoResponses)]
#[allow(dead_code)] // a description of `Problem`'s answers, never built
pub enum CommandRefusals {
    /// Malformed: not JSON, wrong types, unknown fields, bad ids or headers.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemBody),
    /// No such order (or the route does not exist).
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemBody),
    /// The stream changed under repeated attempts; retry.
    #[response(status = 409, content_type = "application/problem+json")]
    Contention(ProblemBody),
    /// `If-Match` named another version; `currentVersion` says which is current.
    #[response(status = 412, content_type = "application/problem+json")]
    VersionMismatch(ProblemBody),
    /// The body is larger than the server takes.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(ProblemBody),
    /// The body is not labelled JSON.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(ProblemBody),
    /// A business rule refused the command (`code` says which), or an
    /// Idempotency-Key was reused for another request. Nothing changed.
    #[response(status = 422, content_type = "application/problem+json")]
    Rejected(ProblemBody),
}

/// The answers of `POST /api/events` when an event was not applied. The
/// event is on the dead-letter topic then (`deadLettered: true`).
#[derive(IntoResponses)]
#[allow(dead_code)] // a description of `Problem`'s answers, never built
pub enum EventRefusals {
    /// Not a CloudEvent, or its data does not fit its type.
    #[response(status = 400, content_type = "application/problem+json")]
    Undecodable(ProblemBody),
    /// The body, or the batch, is too large.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(ProblemBody),
    /// A readable event that cannot be applied (unknown type, a rule refused it).
    #[response(status = 422, content_type = "application/problem+json")]
    Rejected(ProblemBody),
}

/// A CloudEvent in structured mode (CloudEvents 1.0, JSON format).
#[derive(ToSchema)]
#[allow(dead_code)] // parsed by the cloudevents crate; declared here for the document
pub struct StructuredEvent {
    #[schema(pattern = r"^(1\.0|0\.3)$")]
    specversion: String,
    /// Unique per `source`: a redelivery with the same pair is recognised
    /// (at most `MAX_EVENT_ID` characters).
    #[schema(min_length = 1, max_length = 256)]
    id: String,
    /// At most `MAX_SOURCE` characters.
    #[schema(min_length = 1, max_length = 512)]
    source: String,
    /// Such as `payments.authorized`, `warehouse.shipped`, `stock.received` (DESIGN §6).
    #[serde(rename = "type")]
    #[schema(min_length = 1)]
    kind: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    time: String,
    #[serde(default)]
    datacontenttype: String,
    data: Option<serde_json::Value>,
}

/// CloudEvents binary mode: the attributes as headers, the data as the body.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // read by the cloudevents crate; declared here for the document
pub struct BinaryEventHeaders {
    #[param(rename = "ce-specversion", required = false)]
    ce_specversion: String,
    #[param(rename = "ce-id", required = false)]
    ce_id: String,
    #[param(rename = "ce-source", required = false)]
    ce_source: String,
    #[param(rename = "ce-type", required = false)]
    ce_type: String,
}

/// The answers of a query that found nothing or was malformed.
#[derive(IntoResponses)]
#[allow(dead_code)] // a description of `Problem`'s answers, never built
pub enum QueryRefusals {
    /// Malformed id or query string.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(ProblemBody),
    /// Nothing by that id.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(ProblemBody),
}
