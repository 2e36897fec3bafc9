//! `orderflow serve`: every pipeline step in one process, playing the part of
//! the Functions host — the HTTP routes, and a change-feed loop with durable
//! checkpoints for each consumer — on the embedded store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use orderflow_api::{router, ApiConfig, App};
use orderflow_pipeline::consumers::{Consumer, FeedRunner, Fulfillment, Projector, Publisher};
use orderflow_pipeline::ingest::Ingestor;
use orderflow_pipeline::processor::CommandProcessor;
use orderflow_store_sqlite::SqliteStore;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub api: ApiConfig,
}

pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let data_dir = &options.data_dir;
    let store = SqliteStore::open(data_dir).with_context(|| format!("cannot use data dir {}", data_dir.display()))?;
    let _lock = lock_data_dir(data_dir)?;
    let listener = TcpListener::bind(options.listen).await.with_context(|| {
        format!("cannot listen on {} (is another server using it? pick another with --listen)", options.listen)
    })?;
    let address = listener.local_addr().context("cannot read the listening address")?;

    let store = Arc::new(store);
    let processor = Arc::new(CommandProcessor::new(store.clone()));
    let ingestor = Arc::new(Ingestor::new(processor.clone(), store.clone()));
    let app = App::new(processor.clone(), ingestor, store.clone(), &options.api.api_keys);

    let (stop, stopped) = watch::channel(false);
    let consumers: [Arc<dyn Consumer>; 3] = [
        Arc::new(Projector::new(store.clone(), store.clone())),
        Arc::new(Publisher::new(store.clone())),
        Arc::new(Fulfillment::new(processor)),
    ];
    let runners: Vec<_> = consumers
        .into_iter()
        .map(|consumer| tokio::spawn(FeedRunner::new(store.clone(), store.clone(), consumer).run(stopped.clone())))
        .collect();

    // The first line on stdout says where to reach the server (tests read it).
    println!("orderflow serving http://{address} (store {})", store.path().display());
    tracing::info!(%address, "ready");
    axum::serve(listener, router(app, &options.api))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the HTTP server failed")?;

    tracing::info!("HTTP requests finished; stopping change-feed consumers");
    let _ = stop.send(true);
    for runner in runners {
        if tokio::time::timeout(Duration::from_secs(30), runner).await.is_err() {
            tracing::warn!("a change-feed consumer did not stop within 30 s; it resumes from its checkpoint");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// One `serve` per data directory: a second one would run every consumer
/// twice. The lock goes with the process, also when it crashes.
fn lock_data_dir(data_dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join("serve.lock");
    let file = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            anyhow::bail!("another orderflow serve is using data dir {}", data_dir.display())
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; stop with Ctrl-C");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: finishing requests in flight");
}
