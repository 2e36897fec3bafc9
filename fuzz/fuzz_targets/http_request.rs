//! Any request to the HTTP API, answered by the real router over an embedded
//! store: never a panic, never a 5xx, every refusal a problem+json.
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use orderflow_api::{router, ApiConfig, App};
use orderflow_pipeline::ingest::Ingestor;
use orderflow_pipeline::ports::Stores;
use orderflow_pipeline::processor::CommandProcessor;
use orderflow_store_sqlite::SqliteStore;
use tower::ServiceExt;

const METHODS: [Method; 4] = [Method::GET, Method::POST, Method::DELETE, Method::PUT];
/// Paths the routes know, so that inputs reach the handlers; `{}` takes an id.
const PATHS: [&str; 12] = [
    "/api/orders",
    "/api/orders/{}",
    "/api/orders/{}/events",
    "/api/orders/{}/lines",
    "/api/orders/{}/lines/{}",
    "/api/orders/{}/confirm",
    "/api/orders/{}/cancel",
    "/api/customers/{}/orders",
    "/api/inventory/{}",
    "/api/inventory/{}/restock",
    "/api/events",
    "/health",
];

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    path: u8,
    ids: Vec<String>,
    query: Option<String>,
    headers: Vec<(String, String)>,
    json_content_type: bool,
    body: Vec<u8>,
}

struct Server {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        // In memory when the machine has /dev/shm: every command is a durable commit.
        let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).expect("temp dir");
        let store = Arc::new(SqliteStore::open(dir.path()).expect("store"));
        let stores = Stores::of(store.clone());
        let processor = Arc::new(CommandProcessor::new(stores.events.clone()));
        let ingestor = Arc::new(Ingestor::new(processor.clone(), store));
        let app = App::new(processor, ingestor, stores.snapshots, &[]);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        Server { runtime, router: router(app, &ApiConfig::default()), _dir: dir }
    })
}

fn build(input: &Input) -> Option<Request<Body>> {
    let mut ids = input.ids.iter().map(|id| encode(id));
    let mut path = String::new();
    for (i, part) in PATHS[usize::from(input.path) % PATHS.len()].split("{}").enumerate() {
        if i > 0 {
            path.push_str(&ids.next().unwrap_or_default());
        }
        path.push_str(part);
    }
    if let Some(query) = &input.query {
        path = format!("{path}?{}", encode(query));
    }
    let mut request = Request::builder().method(METHODS[usize::from(input.method) % METHODS.len()].clone()).uri(path);
    if input.json_content_type {
        request = request.header("content-type", "application/json");
    }
    for (name, value) in &input.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    request.body(Body::from(input.body.clone())).ok()
}

/// Percent-encodes what a URI cannot hold, as an HTTP client would.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'=' | b'&' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fuzz_target!(|input: Input| {
    // Requests an HTTP server would not let through (bad header names, say)
    // never reach the router.
    let Some(request) = build(&input) else { return };
    let server = server();
    let response = server.runtime.block_on(server.router.clone().oneshot(request)).expect("infallible");
    let status = response.status();
    assert!(!status.is_server_error(), "{status} for {input:?}");
    if status.is_client_error() {
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok());
        assert_eq!(content_type, Some("application/problem+json"), "{status} for {input:?}");
    }
});
