//! RFC 9457 problem details: every error the API answers is one of these.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use orderflow_domain::values::InvalidValue;
use orderflow_domain::Rejection;
use orderflow_pipeline::processor::CommandError;
use orderflow_pipeline::StoreError;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    /// A stable slug; the problem's `type` is `urn:orderflow:problem:{code}`.
    pub code: &'static str,
    pub detail: String,
    pub extra: Map<String, Value>,
    pub retry_after_secs: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Problem { status, code, detail: detail.into(), extra: Map::new(), retry_after_secs: None }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, "malformed-request", detail)
    }

    /// 401: a key is needed and was missing or wrong.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Problem { retry_after_secs: Some(1), ..Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail) }
    }

    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(name.to_string(), value.into());
        self
    }
}

/// A value from outside that breaks its rule (`orderflow_domain::values`).
impl From<InvalidValue> for Problem {
    fn from(invalid: InvalidValue) -> Self {
        Problem::bad_request(invalid.to_string())
    }
}

impl From<Rejection> for Problem {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::NotFound { message } => Problem::not_found(message),
            Rejection::Rule { rule, message } => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, rule.code(), message),
        }
    }
}

impl From<StoreError> for Problem {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(_) => {
                tracing::warn!(%error, "store unavailable");
                Problem::unavailable("the store is unavailable; retry shortly")
            }
            StoreError::Corrupt(_) | StoreError::Refused(_) => {
                tracing::error!(%error, "unreadable data in the store");
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the server could not read its own data")
            }
        }
    }
}

impl From<CommandError> for Problem {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::Rejected(rejection) => rejection.into(),
            CommandError::PreconditionFailed { expected, actual } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "version-mismatch",
                format!("If-Match asked for version {expected} but the stream is at version {actual}"),
            )
            .with("currentVersion", actual),
            CommandError::KeyReused => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "this Idempotency-Key was already used with a different request",
            ),
            CommandError::Contention(attempts) => Problem {
                retry_after_secs: Some(1),
                ..Problem::new(
                    StatusCode::CONFLICT,
                    "concurrent-writes",
                    format!("the resource changed under {attempts} attempts in a row; retry"),
                )
            },
            CommandError::Store(error) => error.into(),
        }
    }
}

/// The body of every error answer (`application/problem+json`).
#[derive(Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemBody {
    /// `urn:orderflow:problem:{code}`.
    #[serde(rename = "type")]
    kind: String,
    /// The HTTP status's reason phrase.
    title: &'static str,
    status: u16,
    /// A stable slug naming the problem, such as `version-mismatch`.
    code: &'static str,
    /// What went wrong, for people.
    detail: String,
    /// Problem-specific members, such as `currentVersion` on 412.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    extra: Map<String, Value>,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemBody {
            kind: format!("urn:orderflow:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            code: self.code,
            detail: self.detail,
            extra: self.extra,
        };
        let body = serde_json::to_string(&body).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
