//! `orderflow serve`: every pipeline step in one process, playing the part of
//! the Functions host — the HTTP routes, a change-feed loop with durable
//! checkpoints (leases, on Cosmos DB) for each consumer, the deadlines step
//! every second, and (with Kafka) the ingestion consumer — on the embedded store or on Cosmos DB, with the
//! operator endpoints beside the API (status page, metrics, health).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use orderflow_api::{router, ApiKeys};
use orderflow_pipeline::consumers::{FeedHealth, FeedRunner};
use orderflow_pipeline::ports::StartFrom;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::ops::{Access, Ops};
use crate::pipeline::Pipeline;

pub async fn serve(options: Config) -> anyhow::Result<()> {
    // Also with Cosmos DB and Kafka: the data directory names this process
    // in the change-feed leases, so two must not share it.
    let _lock = lock_data_dir(&options.data_dir)?;
    let pipeline = Pipeline::open(&options).await?;
    let listener = TcpListener::bind(options.listen).await.with_context(|| {
        format!("cannot listen on {} (is another server using it? pick another with --listen)", options.listen)
    })?;
    let address = listener.local_addr().context("cannot read the listening address")?;

    let kafka_consumer = match &options.kafka {
        Some(kafka) => {
            let created = orderflow_kafka::create_topics(kafka)
                .await
                .context("cannot prepare the Kafka topics (KafkaBrokerList)")?;
            if !created.is_empty() {
                tracing::info!(?created, "created Kafka topics");
            }
            Some(orderflow_kafka::ingest::consumer(kafka, &options.instance)?)
        }
        None => None,
    };
    let metrics = crate::ops::install_metrics()?;
    let feeds = FeedHealth::default();
    let stores = &pipeline.stores;
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    for consumer in pipeline.consumers() {
        let owner = format!("{}@{}", consumer.name(), options.instance);
        // Consumers with effects beyond the store start where the setting says.
        let start = if consumer.start() == StartFrom::Now { options.feed_start } else { consumer.start() };
        let mut runner =
            FeedRunner::new(stores, consumer).with_owner(&owner).with_start(start).with_health(feeds.clone());
        if let Some(ttl) = options.lease_ttl() {
            runner = runner.with_lease_ttl(ttl);
        }
        // Before any request is taken: a range first started "now" must not
        // miss an event committed meanwhile.
        runner
            .prepare()
            .await
            .context("cannot take the change-feed leases (after an upgrade, run `orderflow init` once)")?;
        tasks.push(tokio::spawn(runner.run(stopped.clone())));
    }
    let every_second = Duration::from_secs(1);
    tasks.push(tokio::spawn(orderflow_pipeline::deadlines::run(
        pipeline.pass_deadlines(),
        every_second,
        stopped.clone(),
    )));
    if let Some(closed_after) = pipeline.archive_closed_after {
        tasks.push(tokio::spawn(orderflow_pipeline::archive::run(
            pipeline.archive_closed(),
            closed_after,
            stopped.clone(),
        )));
    }
    if let Some(consumer) = kafka_consumer {
        tasks.push(tokio::spawn(orderflow_kafka::ingest::run(consumer, pipeline.ingestor.clone(), stopped.clone())));
    }

    // The first line on stdout says where to reach the server (tests read it).
    println!("orderflow serving http://{address} (store {})", pipeline.store_name);
    tracing::info!(%address, "ready");
    let ops = Ops {
        metrics,
        events: stores.events.clone(),
        snapshots: stores.snapshots.clone(),
        ingestor: pipeline.ingestor.clone(),
        refusals: stores.refusals.clone(),
        parking: stores.parking.clone(),
        leases: stores.leases.clone(),
        timers: stores.timers.clone(),
        consumers: pipeline.consumers(),
        feeds,
        instance: options.instance.clone(),
        store_kind: pipeline.store_kind,
        topics: pipeline.topics.clone(),
        access: Arc::new(Access::new(ApiKeys::new(&options.api.api_keys), options.metrics_public)),
        series: Arc::default(),
    };
    let ops = Arc::new(ops);
    tokio::spawn(crate::ops::series::run(ops.metrics.clone(), ops.series.clone()));
    let routes = router(pipeline.app(&options), &options.api)
        .merge(crate::ops::router(ops))
        .layer(axum::middleware::from_fn(crate::telemetry::request_span));
    // Client addresses, for throttling wrong keys at the console.
    let service = routes.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service).with_graceful_shutdown(shutdown_signal()).await.context("the HTTP server failed")?;

    tracing::info!("HTTP requests finished; stopping consumers");
    let _ = stop.send(true);
    let stopping = futures::future::join_all(tasks);
    if tokio::time::timeout(Duration::from_secs(30), stopping).await.is_err() {
        tracing::warn!("not every consumer stopped within 30 s; each resumes from its checkpoint");
    }
    pipeline.flush().await;
    tracing::info!("stopped");
    Ok(())
}

/// One `serve` per data directory: a second one would run every consumer
/// twice. The lock goes with the process, also when it crashes.
fn lock_data_dir(data_dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot use data dir {}", data_dir.display()))?;
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
pub async fn shutdown_signal() {
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
