//! The SDK's in-memory Cosmos DB (feature `emulator`, never in production
//! builds): a client over it, for tests and local development.

use std::sync::Arc;

use azure_core::credentials::Secret;
use azure_data_cosmos::options::Region;
use azure_data_cosmos::{AccountReference, CosmosClient, CosmosRuntimeBuilder, RoutingStrategy};
use azure_data_cosmos_driver::fault_injection::FaultInjectionRule;
use azure_data_cosmos_driver::in_memory_emulator::{InMemoryEmulatorHttpClient, VirtualAccountConfig, VirtualRegion};
use orderflow_pipeline::StoreError;

/// The address the emulator pretends to be.
pub const ENDPOINT: &str = "https://eastus.emulator.local";

/// A client of a fresh, empty in-memory account. Each call is independent.
pub async fn client() -> Result<CosmosClient, StoreError> {
    client_with_faults(Vec::new()).await
}

/// Like [`client`], with the SDK's fault injection: each rule answers
/// matching requests as it says (429, 503, delays...) until its hit limit.
pub async fn client_with_faults(rules: Vec<Arc<FaultInjectionRule>>) -> Result<CosmosClient, StoreError> {
    Ok(account(rules).await?.0)
}

/// A fresh in-memory account: a client, and the account itself, whose
/// physical partitions a test can split ([`Account::split`]).
pub async fn account_with_client() -> Result<(CosmosClient, Account), StoreError> {
    account(Vec::new()).await
}

/// The in-memory account behind a client.
pub struct Account(Arc<InMemoryEmulatorHttpClient>);

impl Account {
    /// Splits physical partition `partition` (0 to 3 in a new container) of
    /// a container in two, as Cosmos DB does when a partition grows.
    pub async fn split(&self, database: &str, container: &str, partition: u32) {
        let store = self.0.store();
        store.split_partition(database, container, partition, std::time::Duration::ZERO);
        store.drain_pending_control_plane().await;
    }
}

async fn account(rules: Vec<Arc<FaultInjectionRule>>) -> Result<(CosmosClient, Account), StoreError> {
    let fail = |e: &dyn std::fmt::Display| StoreError::Unavailable(format!("emulator: {e}"));
    let url = ENDPOINT.parse().map_err(|e| fail(&e))?;
    let config = VirtualAccountConfig::new(vec![VirtualRegion::new("East US", url)]).map_err(|e| fail(&e))?;
    let emulator = Arc::new(InMemoryEmulatorHttpClient::new(config));
    let handle = Account(emulator.clone());
    let builder =
        if rules.is_empty() { emulator.runtime_builder() } else { emulator.runtime_builder_with_fault_rules(rules) };
    let runtime = CosmosRuntimeBuilder::from(builder).build().await.map_err(|e| fail(&e))?;
    let account = AccountReference::with_authentication_key(
        ENDPOINT.parse().map_err(|e| fail(&e))?,
        // Any base64 key: the emulator checks none.
        Secret::new("ZW11bGF0b3I="),
    );
    let client = CosmosClient::builder()
        .with_runtime(runtime)
        .build(account, RoutingStrategy::ProximityTo(Region::EAST_US))
        .await
        .map_err(|e| fail(&e))?;
    Ok((client, handle))
}

/// Serves a fresh in-memory account over HTTP on `listener`, so that the
/// unmodified SDK in another process (`orderflow serve` with
/// `CosmosDBConnection=AccountEndpoint=http://127.0.0.1:PORT/;AccountKey=...`)
/// talks the real Cosmos DB wire protocol to it. Data lives in memory only.
pub async fn serve(listener: tokio::net::TcpListener) -> Result<(), StoreError> {
    let fail = |e: &dyn std::fmt::Display| StoreError::Unavailable(format!("emulator: {e}"));
    let address = listener.local_addr().map_err(|e| fail(&e))?;
    let base = format!("http://{address}/");
    let config = VirtualAccountConfig::new(vec![VirtualRegion::new("East US", base.parse().map_err(|e| fail(&e))?)])
        .map_err(|e| fail(&e))?;
    let emulator = Arc::new(InMemoryEmulatorHttpClient::new(config));
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let emulator = emulator.clone();
        let base = base.clone();
        async move { forward(&emulator, &base, request).await }
    });
    axum::serve(listener, app).await.map_err(|e| fail(&e))
}

/// One HTTP request through the emulator, answered as it answers.
async fn forward(
    emulator: &InMemoryEmulatorHttpClient,
    base: &str,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let bad_gateway = |e: &dyn std::fmt::Display| (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(url) = format!("{}{}", base.trim_end_matches('/'), path).parse() else {
        return bad_gateway(&"unparseable URL");
    };
    let Ok(method) = parts.method.as_str().parse::<azure_core::http::Method>() else {
        return bad_gateway(&"unsupported method");
    };
    let mut outgoing = azure_core::http::Request::new(url, method);
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            outgoing.insert_header(name.as_str().to_string(), value.to_string());
        }
    }
    match axum::body::to_bytes(body, 64 * 1024 * 1024).await {
        Ok(bytes) => outgoing.set_body(bytes),
        Err(e) => return bad_gateway(&e),
    }
    let response = match emulator.execute_request(&outgoing).await {
        Ok(response) => response,
        Err(e) => return bad_gateway(&e),
    };
    let (status, headers, body) = response.deconstruct();
    let body = match body.collect().await {
        Ok(body) => body,
        Err(e) => return bad_gateway(&e),
    };
    let mut answer = axum::response::Response::new(axum::body::Body::from(body));
    *answer.status_mut() =
        axum::http::StatusCode::from_u16(u16::from(status)).unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
    for (name, value) in headers.iter() {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_str().as_bytes()),
            axum::http::HeaderValue::from_str(value.as_str()),
        ) {
            answer.headers_mut().append(name, value);
        }
    }
    answer
}
