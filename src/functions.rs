//! `orderflow functions`: the Azure Functions custom handler. The Functions
//! host starts it (host.json `customHandler`), passes the port in
//! `FUNCTIONS_CUSTOMHANDLER_PORT` and every app setting in the environment,
//! and sends it invocations; the triggers (Kafka, the Cosmos DB change feed)
//! and their checkpoints are the host's, so no feed loop runs here.

use anyhow::Context;
use orderflow_functions::Steps;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::pipeline::Pipeline;
use crate::serve::shutdown_signal;

/// The variables through which the host gives the port (the second is the
/// older name, still set).
const PORT_VARIABLES: [&str; 2] = ["FUNCTIONS_CUSTOMHANDLER_PORT", "FUNCTIONS_HTTPWORKER_PORT"];

pub async fn run(config: Config) -> anyhow::Result<()> {
    let port = PORT_VARIABLES.iter().find_map(|name| std::env::var(name).ok()).with_context(|| {
        format!("{} is not set: the Azure Functions host starts this command and sets it", PORT_VARIABLES[0])
    })?;
    let port: u16 = port.trim().parse().with_context(|| format!("{}: {port:?} is not a port", PORT_VARIABLES[0]))?;
    let pipeline = Pipeline::open(&config).await?;
    let steps = Steps {
        processor: pipeline.processor.clone(),
        events: pipeline.stores.events.clone(),
        snapshots: pipeline.stores.snapshots.clone(),
        refusals: pipeline.stores.refusals.clone(),
        parking: pipeline.stores.parking.clone(),
    };
    let api = orderflow_api::router(pipeline.app(&config), &config.api);
    let listener = TcpListener::bind(("127.0.0.1", port)).await.with_context(|| format!("cannot listen on {port}"))?;
    println!("orderflow custom handler on http://127.0.0.1:{port} (store {})", pipeline.store_name);
    axum::serve(listener, orderflow_functions::router(steps, api))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the handler's HTTP server failed")?;
    pipeline.flush().await;
    Ok(())
}
