//! Reading requests: JSON bodies, path ids, and the headers that shape a
//! command (`Idempotency-Key`, `If-Match`, `X-Correlation-Id`).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use orderflow_domain::limits::MAX_CORRELATION_ID;
use orderflow_domain::values::{CustomerId, OrderId, Sku};
use orderflow_pipeline::processor::{fingerprint, Envelope, IdempotencyKey};
use orderflow_pipeline::trace;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::problem::Problem;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const CORRELATION_ID: &str = "x-correlation-id";
pub const TRACEPARENT: &str = "traceparent";

/// The raw body, or the problem of reading it (413 when over the limit).
pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Problem> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", "the request body is too large")
        } else {
            Problem::bad_request(format!("cannot read the request body: {rejection}"))
        }
    })
}

fn is_json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| v == "application/json" || (v.starts_with("application/") && v.ends_with("+json")))
}

/// Parses a JSON body. An empty body is `None` (for commands whose body is
/// optional); anything else must be labelled JSON (415) and parse (400).
pub fn optional_json<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<Option<T>, Problem> {
    if body.is_empty() {
        return Ok(None);
    }
    if !is_json_content_type(headers) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "the body must be JSON, sent with Content-Type: application/json",
        ));
    }
    // Serde would also read a struct from an array of its fields' values.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(Problem::bad_request("the body must be a JSON object"));
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        let what = if e.is_data() { "the JSON does not fit" } else { "the body is not valid JSON" };
        Problem::bad_request(format!("{what}: {e}"))
    })
}

pub fn required_json<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T, Problem> {
    optional_json(headers, body)?.ok_or_else(|| Problem::bad_request("a JSON body is required"))
}

/// The ids in a request's path (`Ids<OrderPath>`, ...); a path that cannot
/// be read (not UTF-8, say) is a 400 problem like any other.
pub struct Ids<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Ids<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(ids)) => Ok(Ids(ids)),
            Err(rejection) => Err(Problem::bad_request(rejection.body_text())),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct OrderPath {
    /// The order's id.
    #[param(value_type = String)]
    pub order_id: OrderId,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SkuPath {
    /// The SKU.
    #[param(value_type = String)]
    pub sku: Sku,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct LinePath {
    /// The order's id.
    #[param(value_type = String)]
    pub order_id: OrderId,
    /// The line's SKU.
    #[param(value_type = String)]
    pub sku: Sku,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CustomerPath {
    /// The customer's id.
    #[param(value_type = String)]
    pub customer_id: CustomerId,
}

/// Who sent a request, for scoping its `Idempotency-Key`: a digest of the
/// API key it presented (empty when no keys are configured).
#[derive(Clone, Debug, Default)]
pub struct Caller(pub String);

/// The envelope of a command sent over HTTP.
pub fn envelope(
    headers: &HeaderMap,
    caller: &Caller,
    method: &Method,
    path: &str,
    body: &Bytes,
) -> Result<Envelope, Problem> {
    let request_id = Uuid::new_v4().to_string();
    let key = idempotency_key(headers)?;
    let mut envelope = match &key {
        Some(key) => {
            let fingerprint = fingerprint(&[method.as_str().as_bytes(), path.as_bytes(), body]);
            Envelope::idempotent(format!("http:{key}"), IdempotencyKey::http(&caller.0, key, fingerprint))
        }
        None => Envelope { message_id: request_id.clone(), ..Envelope::new() },
    };
    envelope.causation_id = request_id.clone();
    // The request's trace (W3C traceparent) is the command's correlation; a
    // caller's own X-Correlation-Id otherwise; else the request starts a trace.
    let trace = headers.get(TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(trace::trace_id);
    let correlation = match headers.get(CORRELATION_ID).map(|v| v.to_str()) {
        None => None,
        Some(Ok(id)) if is_token(id, MAX_CORRELATION_ID) => Some(id.to_string()),
        Some(_) => {
            let detail = format!("X-Correlation-Id must be 1 to {MAX_CORRELATION_ID} visible ASCII characters");
            return Err(Problem::bad_request(detail));
        }
    };
    envelope.correlation_id = trace.or(correlation).unwrap_or_else(trace::new_trace_id);
    envelope.expected_version = if_match_version(headers)?;
    Ok(envelope)
}

pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    match headers.get(IDEMPOTENCY_KEY) {
        None => Ok(None),
        Some(value) => match value.to_str() {
            Ok(key) if is_token(key, MAX_IDEMPOTENCY_KEY) => Ok(Some(key.to_string())),
            _ => Err(Problem::bad_request(format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
            ))),
        },
    }
}

/// The longest `Idempotency-Key` taken.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// What [`is_token`] takes, as a regular expression.
pub const TOKEN_PATTERN: &str = r"^[\x21-\x7E]+$";

fn is_token(text: &str, max: usize) -> bool {
    !text.is_empty() && text.len() <= max && text.bytes().all(|b| b.is_ascii_graphic())
}

/// `If-Match: "3"` (or `3`, `W/"3"`) makes a command conditional on version 3.
/// `*` asks only that the resource exists, which every command on it checks.
fn if_match_version(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    parse_etag(text)
        .map(Some)
        .ok_or_else(|| Problem::bad_request("If-Match must be a version as given in an ETag, such as \"3\""))
}

/// The version in an entity tag: `"3"`, `W/"3"` or `3`.
pub fn parse_etag(text: &str) -> Option<u64> {
    let text = text.trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    text.trim_matches('"').parse().ok()
}

pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}
