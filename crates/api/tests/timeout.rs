//! A command that takes longer than the request timeout is answered 504
//! `timeout` — without `Retry-After`, since it may still take effect.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use orderflow_api::{router, ApiConfig, App};
use orderflow_pipeline::ingest::Ingestor;
use orderflow_pipeline::memory::MemoryStore;
use orderflow_pipeline::ports::*;
use orderflow_pipeline::processor::CommandProcessor;
use tower::ServiceExt;

/// An event store whose appends take a long time (a store under strain).
struct Slow(Arc<MemoryStore>);

#[async_trait]
impl EventStore for Slow {
    async fn load(&self, stream_id: &str, key: Option<&str>) -> Result<Loaded, StoreError> {
        self.0.load(stream_id, key).await
    }

    async fn append(&self, append: Append) -> Result<AppendOutcome, StoreError> {
        tokio::time::sleep(Duration::from_secs(60)).await;
        self.0.append(append).await
    }

    async fn read_stream(&self, stream_id: &str, from: u64, max: usize) -> Result<Vec<EventRecord>, StoreError> {
        self.0.read_stream(stream_id, from, max).await
    }

    async fn claim(&self, claim: &KeyClaim) -> Result<Option<KeyClaim>, StoreError> {
        self.0.claim(claim).await
    }

    async fn stream_ids(&self, after: Option<&str>, max: usize) -> Result<StreamIds, StoreError> {
        self.0.stream_ids(after, max).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_command_past_the_request_timeout_is_answered_504_without_retry_after() {
    let store = Arc::new(MemoryStore::default());
    let processor = Arc::new(CommandProcessor::new(Arc::new(Slow(store.clone()))));
    let ingestor = Arc::new(Ingestor::new(processor.clone(), store.clone()));
    let app = App::new(processor, ingestor, store, &[]);
    let config = ApiConfig { request_timeout: Duration::from_secs(2), ..ApiConfig::default() };
    let request = Request::post("/api/inventory/SKU-1/restock")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"quantity": 1}"#))
        .expect("a request");
    let answer = router(app, &config).oneshot(request).await.expect("an answer");
    assert_eq!(answer.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(answer.headers().get("retry-after").is_none());
    let body = axum::body::to_bytes(answer.into_body(), 4096).await.expect("a body");
    let problem: serde_json::Value = serde_json::from_slice(&body).expect("problem+json");
    assert_eq!(problem["code"], "timeout");
}
