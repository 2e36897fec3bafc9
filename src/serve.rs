//! `orderflow serve`: every pipeline step in one process, playing the part of
//! the Functions host — the HTTP routes, a change-feed loop with durable
//! checkpoints for each consumer, and (with Kafka) the ingestion consumer —
//! on the embedded store.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use orderflow_api::{router, App};
use orderflow_pipeline::consumers::{Consumer, FeedRunner, Fulfillment, Projector, Publisher};
use orderflow_pipeline::ingest::Ingestor;
use orderflow_pipeline::ports::{MessageProducer, Stores};
use orderflow_pipeline::processor::CommandProcessor;
use orderflow_store_cosmos::CosmosStore;
use orderflow_store_sqlite::SqliteStore;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, CosmosConfig};

pub async fn serve(options: Config) -> anyhow::Result<()> {
    let data_dir = &options.data_dir;
    let store = SqliteStore::open(data_dir).with_context(|| format!("cannot use data dir {}", data_dir.display()))?;
    let _lock = lock_data_dir(data_dir)?;
    let listener = TcpListener::bind(options.listen).await.with_context(|| {
        format!("cannot listen on {} (is another server using it? pick another with --listen)", options.listen)
    })?;
    let address = listener.local_addr().context("cannot read the listening address")?;

    let store = Arc::new(store);
    let stores = match &options.cosmos {
        Some(cosmos) => Stores::of(Arc::new(connect_cosmos(cosmos).await?)),
        None => Stores::of(store.clone()),
    };
    // Topics: Kafka when configured, else the embedded topic log.
    let (producer, kafka): (Arc<dyn MessageProducer>, _) = match &options.kafka {
        Some(kafka) => {
            let created = orderflow_kafka::create_topics(kafka, &orderflow_kafka::TOPICS)
                .await
                .context("cannot prepare the Kafka topics (KafkaBrokerList)")?;
            if !created.is_empty() {
                tracing::info!(?created, "created Kafka topics");
            }
            let producer = Arc::new(orderflow_kafka::KafkaProducer::new(kafka)?);
            let consumer = orderflow_kafka::ingest::consumer(kafka)?;
            (producer.clone() as Arc<dyn MessageProducer>, Some((producer, consumer)))
        }
        None => (store.clone(), None),
    };
    let processor = Arc::new(CommandProcessor::new(stores.events.clone()));
    let ingestor = Arc::new(Ingestor::new(processor.clone(), producer.clone()));
    let app = App::new(processor.clone(), ingestor.clone(), stores.snapshots.clone(), &options.api.api_keys);

    let (stop, stopped) = watch::channel(false);
    let consumers: [Arc<dyn Consumer>; 3] = [
        Arc::new(Projector::new(stores.events.clone(), stores.snapshots.clone())),
        Arc::new(Publisher::new(producer)),
        Arc::new(Fulfillment::new(processor)),
    ];
    let mut tasks: Vec<_> = consumers
        .into_iter()
        .map(|consumer| {
            let runner = FeedRunner::new(stores.feed.clone(), stores.checkpoints.clone(), consumer);
            tokio::spawn(runner.run(stopped.clone()))
        })
        .collect();
    let kafka_producer = kafka.map(|(producer, consumer)| {
        tasks.push(tokio::spawn(orderflow_kafka::ingest::run(consumer, ingestor, stopped.clone())));
        producer
    });

    // The first line on stdout says where to reach the server (tests read it).
    let store_name = match &options.cosmos {
        Some(cosmos) => format!("Cosmos DB {} database {}", cosmos.connection.endpoint, cosmos.database),
        None => store.path().display().to_string(),
    };
    println!("orderflow serving http://{address} (store {store_name})");
    tracing::info!(%address, "ready");
    axum::serve(listener, router(app, &options.api))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the HTTP server failed")?;

    tracing::info!("HTTP requests finished; stopping consumers");
    let _ = stop.send(true);
    let stopping = futures::future::join_all(tasks);
    if tokio::time::timeout(Duration::from_secs(30), stopping).await.is_err() {
        tracing::warn!("not every consumer stopped within 30 s; each resumes from its checkpoint");
    }
    if let Some(producer) = kafka_producer {
        producer.flush(Duration::from_secs(10)).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The Cosmos DB store, with a hint when its containers are missing.
pub async fn connect_cosmos(cosmos: &CosmosConfig) -> anyhow::Result<CosmosStore> {
    let client = orderflow_store_cosmos::client(&cosmos.connection, &cosmos.region).await?;
    CosmosStore::connect(&client, &cosmos.database).await.with_context(|| {
        format!("cannot open database {} (CosmosDBConnection; run `orderflow init` first)", cosmos.database)
    })
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
