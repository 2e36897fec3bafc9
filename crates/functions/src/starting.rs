//! The handler while it starts. The Functions host gives an app a bounded
//! time to start (30 s on Flex Consumption) and sends nothing before the
//! handler answers `GET /`; reaching the store can take longer (a cold
//! account, a token to fetch). So the handler listens and answers the probe
//! at once, connects in the background, and holds every other request until
//! it is connected — answering 503 (retried by the host) if that takes too
//! long.

use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;
use tower::ServiceExt;

/// The handler's router that serves `ready`'s router once it is there.
pub fn starting(ready: watch::Receiver<Option<Router>>, wait: Duration) -> Router {
    Router::new()
        // The host's readiness probe: the process listens, that is all it asks.
        .route("/", get(|| async { "orderflow custom handler" }))
        .fallback(move |request: Request| forward(ready.clone(), wait, request))
}

async fn forward(mut ready: watch::Receiver<Option<Router>>, wait: Duration, request: Request) -> Response {
    let router = match tokio::time::timeout(wait, ready.wait_for(Option::is_some)).await {
        Ok(Ok(router)) => router.clone(),
        _ => {
            let detail = "the handler is still connecting to its store; the host retries";
            return (StatusCode::SERVICE_UNAVAILABLE, detail).into_response();
        }
    };
    match router {
        Some(router) => router.oneshot(request).await.unwrap_or_else(|never| match never {}),
        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}
