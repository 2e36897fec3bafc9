//! orderflow's HTTP API (DESIGN §5) as one axum router, shared by every host:
//! the local runner serves it, the Functions host forwards requests to it,
//! and Lambda runs it behind API Gateway.

mod commands;
mod declared;
mod events;
mod openapi;
mod problem;
mod queries;
mod request;
mod schemas;

use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{BoxError, Router};
use orderflow_pipeline::ingest::Ingestor;
use orderflow_pipeline::ports::{EventStore, SnapshotStore};
use orderflow_pipeline::processor::CommandProcessor;
use orderflow_pipeline::trace;
use sha2::{Digest, Sha256};
use tower::ServiceBuilder;

pub use openapi::ApiDoc;
pub use problem::Problem;

#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Requests handled at once; more are refused with 503 and Retry-After.
    pub max_in_flight: usize,
    /// How long a request may take before it is answered 504.
    pub request_timeout: Duration,
    /// When not empty, every `/api` request needs one of these keys in
    /// `X-API-Key` or `Authorization: Bearer` (401 otherwise).
    pub api_keys: Vec<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 256 * 1024,
            max_in_flight: 1024,
            request_timeout: Duration::from_secs(30),
            api_keys: Vec::new(),
        }
    }
}

/// What the routes need: the pipeline steps and the read side.
#[derive(Clone)]
pub struct App {
    pub processor: Arc<CommandProcessor>,
    pub ingestor: Arc<Ingestor>,
    pub events: Arc<dyn EventStore>,
    pub snapshots: Arc<dyn SnapshotStore>,
    keys: ApiKeys,
}

impl App {
    pub fn new(
        processor: Arc<CommandProcessor>,
        ingestor: Arc<Ingestor>,
        snapshots: Arc<dyn SnapshotStore>,
        api_keys: &[String],
    ) -> Self {
        let events = processor.store().clone();
        App { processor, ingestor, events, snapshots, keys: ApiKeys::new(api_keys) }
    }
}

/// The API keys a server takes (`OrderflowApiKeys`), kept as digests: none
/// means every request is let in.
#[derive(Clone, Default)]
pub struct ApiKeys {
    digests: Arc<Vec<[u8; 32]>>,
}

impl ApiKeys {
    pub fn new(keys: &[String]) -> Self {
        ApiKeys { digests: Arc::new(keys.iter().map(|key| digest(key)).collect()) }
    }

    /// Whether a key is needed at all.
    pub fn required(&self) -> bool {
        !self.digests.is_empty()
    }

    /// Who presents `key` (a digest of it), if it is one of the keys.
    /// Digests of equal length: comparing them leaks nothing about the keys.
    pub fn caller(&self, key: &str) -> Option<String> {
        let given = digest(key);
        self.digests.contains(&given).then(|| given.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The key a request presents: `X-API-Key`, or `Authorization: Bearer`.
    pub fn presented(headers: &HeaderMap) -> Option<&str> {
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .or_else(|| headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()?.strip_prefix("Bearer ")))
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

pub fn router(app: App, config: &ApiConfig) -> Router {
    let api = Router::new()
        .route("/orders", post(commands::place_order))
        .route("/orders/{order_id}", get(queries::get_order))
        .route("/orders/{order_id}/events", get(queries::order_events))
        .route("/orders/{order_id}/lines", post(commands::add_line))
        .route("/orders/{order_id}/lines/{sku}", delete(commands::remove_line))
        .route("/orders/{order_id}/confirm", post(commands::confirm))
        .route("/orders/{order_id}/cancel", post(commands::cancel))
        .route("/customers/{customer_id}/orders", get(queries::customer_orders))
        .route("/inventory/{sku}", get(queries::get_inventory))
        .route("/inventory/{sku}/events", get(queries::sku_events))
        .route("/inventory/{sku}/restock", post(commands::restock))
        .route("/events", post(events::post_events))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_api_key))
        // Added after the key check: the document is public.
        .route("/openapi.json", get(openapi::document));
    Router::new()
        .route("/health", get(queries::health))
        .nest("/api", api)
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "this route does not take that method")
        })
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .load_shed()
                // One limit for the whole router: `Router::layer` gives each
                // route its own copy of a layer's service.
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(config.max_in_flight))
                .timeout(config.request_timeout),
        )
        .layer(middleware::from_fn(measure))
        .with_state(app)
}

/// Counts every answer by route and status (load-shed 503s included) and
/// times it.
async fn measure(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_string();
    let method = request.method().to_string();
    let trace = request.headers().get("traceparent").and_then(|v| v.to_str().ok()).and_then(trace::trace_id);
    let span = tracing::info_span!("http", method, route, trace = trace.unwrap_or_default());
    let started = std::time::Instant::now();
    let response = tracing::Instrument::instrument(next.run(request), span).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("orderflow_http_request_seconds", "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("orderflow_http_requests_total", "method" => method, "route" => route, "status" => status)
        .increment(1);
    response
}

async fn overloaded(error: BoxError) -> Problem {
    if error.is::<tower::timeout::error::Elapsed>() {
        // The command may still be applied after this answer: no "retry"
        // (a retry with the same Idempotency-Key is safe, and tells).
        return Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "the request took too long and may still take effect; send it again with the same Idempotency-Key, \
             or read the resource, to learn its outcome",
        );
    }
    Problem { status: StatusCode::SERVICE_UNAVAILABLE, ..Problem::unavailable("too many requests in flight; retry") }
}

async fn require_api_key(State(app): State<App>, mut request: Request, next: Next) -> Response {
    if !app.keys.required() {
        return next.run(request).await;
    }
    let presented = ApiKeys::presented(request.headers()).map(|key| app.keys.caller(key));
    match presented {
        Some(Some(caller)) => {
            // Each key's Idempotency-Keys are its own.
            request.extensions_mut().insert(request::Caller(caller));
            next.run(request).await
        }
        Some(None) => Problem::unauthorized("the API key is not valid").into_response(),
        None => Problem::unauthorized("an API key is required (X-API-Key)").into_response(),
    }
}
