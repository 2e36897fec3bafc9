//! `orderflow functions`: the Azure Functions custom handler. The Functions
//! host starts it (host.json `customHandler`), passes the port in
//! `FUNCTIONS_CUSTOMHANDLER_PORT` and every app setting in the environment,
//! and sends it invocations; the triggers (Kafka, the Cosmos DB change feed)
//! and their checkpoints are the host's, so no feed loop runs here. It
//! listens before it connects to the store (see `starting`).

use std::sync::Arc;

use anyhow::Context;
use backon::BackoffBuilder;
use orderflow_functions::Steps;
use tokio::net::TcpListener;
use tokio::sync::{watch, OnceCell};

use crate::config::Config;
use crate::pipeline::Pipeline;
use crate::serve::shutdown_signal;

/// The variables through which the host gives the port (the second is the
/// older name, still set).
const PORT_VARIABLES: [&str; 2] = ["FUNCTIONS_CUSTOMHANDLER_PORT", "FUNCTIONS_HTTPWORKER_PORT"];

/// How long an invocation waits for the store to be connected.
const CONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

pub async fn run(config: Config) -> anyhow::Result<()> {
    let port = PORT_VARIABLES.iter().find_map(|name| std::env::var(name).ok()).with_context(|| {
        format!("{} is not set: the Azure Functions host starts this command and sets it", PORT_VARIABLES[0])
    })?;
    let port: u16 = port.trim().parse().with_context(|| format!("{}: {port:?} is not a port", PORT_VARIABLES[0]))?;
    // Listen first: the host times out an app that is slow to start.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.with_context(|| format!("cannot listen on {port}"))?;
    println!("orderflow custom handler on http://127.0.0.1:{port}");
    let (ready, connected) = tokio::sync::watch::channel(None);
    let opened = Arc::new(OnceCell::new());
    tokio::spawn(connect(Arc::new(config), ready, opened.clone()));
    axum::serve(listener, orderflow_functions::starting(connected, CONNECT_WAIT))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the handler's HTTP server failed")?;
    if let Some(pipeline) = opened.get() {
        pipeline.flush().await;
    }
    Ok(())
}

/// Opens the pipeline (retrying while the store cannot be reached) and hands
/// the handler's router over once it is there.
async fn connect(config: Arc<Config>, ready: watch::Sender<Option<axum::Router>>, opened: Arc<OnceCell<Pipeline>>) {
    let mut delays = orderflow_pipeline::consumers::backoff().build();
    let pipeline = loop {
        match Pipeline::open(&config).await {
            Ok(pipeline) => break pipeline,
            Err(error) => {
                let delay = delays.next().unwrap_or(std::time::Duration::from_secs(10));
                tracing::warn!(error = format!("{error:#}"), ?delay, "cannot open the store yet; trying again");
                tokio::time::sleep(delay).await;
            }
        }
    };
    let steps = Steps {
        processor: pipeline.processor.clone(),
        events: pipeline.stores.events.clone(),
        snapshots: pipeline.stores.snapshots.clone(),
        refusals: pipeline.stores.refusals.clone(),
        parking: pipeline.stores.parking.clone(),
        deadlines: pipeline.deadlines.clone(),
        time_driven: Arc::new(pipeline.time_driven()),
    };
    let api = orderflow_api::router(pipeline.app(&config), &config.api);
    tracing::info!(store = pipeline.store_name, "connected; taking invocations");
    ready.send_replace(Some(orderflow_functions::router(steps, api)));
    let _ = opened.set(pipeline);
}
