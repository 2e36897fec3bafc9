//! The headers and answers several routes share, declared once for the
//! OpenAPI document ([`crate::openapi`]) and the handlers' annotations.

use utoipa::{IntoParams, IntoResponses, ToSchema};

use crate::problem::ProblemBody;

/// The headers that shape a command.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // read by hand in `request.rs`; declared here for the document
pub struct CommandHeaders {
    /// Makes the command safe to retry: the same key with the same request
    /// answers what the first one did, for the idempotency retention (7 days
    /// by default), however many other commands came meanwhile. The same key
    /// with another method, path or body is refused (422), whatever resource
    /// it names. Keys are scoped per API key (visible ASCII characters).
    #[param(rename = "Idempotency-Key", required = false)]
    idempotency_key: String,
    /// Runs the command only if the stream is at this version (an ETag, such as `"3"`); 412 otherwise.
    #[param(rename = "If-Match", required = false, pattern = r#"^\s*(\*|(W/)?"?[0-9]{1,19}"?)\s*$"#)]
    if_match: String,
    /// The caller's correlation id, kept on every event the command causes.
    #[param(rename = "X-Correlation-Id", required = false)]
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
    /// A business rule refused the command (`code` says which: one of
    /// `RejectionCode`), or an Idempotency-Key was reused for another
    /// request. Nothing changed.
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
    /// Unique per `source`: a redelivery with the same pair is recognised.
    id: String,
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
