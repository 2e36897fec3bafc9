//! The ingestion consumer: CloudEvents from the back-end topics into
//! commands. Partitions are processed in parallel, each in order, by a task
//! of its own; an offset is stored for commit only after the message's effect
//! is durable (applied, or dead-lettered), so delivery is at least once and
//! idempotency (CloudEvents `source` + `id`) makes the effect exactly once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use orderflow_pipeline::consumers::backoff;
use orderflow_pipeline::ingest::{Ingested, Ingestor, Received};
use orderflow_pipeline::topics;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::Message as _;
use rdkafka::{ClientContext, Statistics};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::{ConfigError, KafkaConfig};

/// Messages queued per partition before the consumer stops fetching: a slow
/// store slows consumption instead of filling memory.
const QUEUE_PER_PARTITION: usize = 256;

/// The ingestion consumer's context: reports librdkafka's statistics as the
/// `orderflow_kafka_consumer_lag` gauge (messages behind, per partition).
pub struct LagReporter;

impl ClientContext for LagReporter {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in statistics.topics {
            for (partition, stats) in stats.partitions {
                // librdkafka lists partition -1 (unassigned) and -1 lags (unknown yet).
                if partition >= 0 && stats.consumer_lag >= 0 {
                    let labels = [("topic", topic.clone()), ("partition", partition.to_string())];
                    metrics::gauge!("orderflow_kafka_consumer_lag", &labels).set(stats.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for LagReporter {}

pub type IngestConsumer = StreamConsumer<LagReporter>;

/// The ingestion consumer of `instance` (a name that stays the same across
/// restarts of one deployment): a static group member, so that a process that
/// restarts after a crash gets its partitions back at once, instead of after
/// the session timeout the group waits for a member that left unannounced.
pub fn consumer(config: &KafkaConfig, instance: &str) -> Result<IngestConsumer, ConfigError> {
    let consumer: IngestConsumer = config
        .client_config()?
        .set("statistics.interval.ms", "5000")
        .set("group.id", &config.consumer_group)
        .set("group.instance.id", static_member_id(instance))
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "500")
        // Offsets are stored by hand, after each message's effect is durable.
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("queued.max.messages.kbytes", "16384")
        .create_with_context(LagReporter)
        .map_err(|e| ConfigError { setting: "KafkaBrokerList", problem: e.to_string() })?;
    let topics: Vec<String> = topics::INGESTION.iter().map(|t| config.topic(t.name)).collect();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|e| ConfigError { setting: "KafkaBrokerList", problem: e.to_string() })?;
    Ok(consumer)
}

/// Kafka takes letters, digits and `._-` in a member id (at most 249).
fn static_member_id(instance: &str) -> String {
    let id: String = instance
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    id.chars().take(249).collect()
}

/// Consumes until `stop` turns true, then commits what was stored.
pub async fn run(consumer: IngestConsumer, ingestor: Arc<Ingestor>, mut stop: watch::Receiver<bool>) {
    let consumer = Arc::new(consumer);
    let mut partitions: HashMap<(String, i32), mpsc::Sender<OwnedMessage>> = HashMap::new();
    let mut workers = JoinSet::new();
    tracing::info!("kafka ingestion started");
    loop {
        let received = tokio::select! {
            _ = stop.changed() => break,
            received = consumer.recv() => received.map(|m| m.detach()),
        };
        let message = match received {
            Ok(message) => message,
            Err(error) => {
                // The broker went away or the group is rebalancing: librdkafka
                // reconnects by itself; nothing was taken, nothing is lost.
                tracing::warn!(%error, "kafka consumer error");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let key = (message.topic().to_string(), message.partition());
        let queue = partitions.entry(key).or_insert_with(|| {
            let (queue, messages) = mpsc::channel(QUEUE_PER_PARTITION);
            workers.spawn(work_partition(consumer.clone(), ingestor.clone(), messages, stop.clone()));
            queue
        });
        tokio::select! {
            _ = stop.changed() => break,
            sent = queue.send(message) => if sent.is_err() { break },
        }
    }
    drop(partitions);
    while workers.join_next().await.is_some() {}
    // Committing and leaving the group block on the broker: off the async
    // threads, and bounded, since the broker may be gone.
    let close = tokio::task::spawn_blocking(move || {
        if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(%error, "no offsets committed at shutdown");
        }
        drop(consumer);
    });
    if tokio::time::timeout(Duration::from_secs(10), close).await.is_err() {
        tracing::warn!("the Kafka consumer did not close within 10 s; uncommitted messages will be redelivered");
    }
    tracing::info!("kafka ingestion stopped");
}

/// Applies one partition's messages in order.
async fn work_partition(
    consumer: Arc<IngestConsumer>,
    ingestor: Arc<Ingestor>,
    mut messages: mpsc::Receiver<OwnedMessage>,
    stop: watch::Receiver<bool>,
) {
    while let Some(message) = messages.recv().await {
        if *stop.borrow() {
            return; // not stored: redelivered after the restart
        }
        let Received { delivery, event } = received(&message);
        let ingest = || ingestor.ingest(&delivery, event.clone());
        let mut stopped = stop.clone();
        let outcome = tokio::select! {
            outcome = ingest.retry(backoff()).notify(|error, delay| {
                tracing::warn!(%error, ?delay, origin = ?delivery.origin, "cannot apply a message yet, retrying")
            }) => outcome,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        match outcome {
            Ok(Ingested::DeadLettered { kind, .. }) => tracing::debug!(kind, "message dead-lettered"),
            Ok(_) => {}
            Err(_) => return,
        }
        if let Err(error) = consumer.store_offset(message.topic(), message.partition(), message.offset()) {
            // The partition moved to another consumer, which redelivers it.
            tracing::debug!(%error, "offset not stored");
        }
    }
}

fn received(message: &OwnedMessage) -> Received {
    let headers = message
        .headers()
        .map(|headers| {
            headers.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec).unwrap_or_default())).collect()
        })
        .unwrap_or_default();
    Received::kafka(
        (message.topic().to_string(), message.partition(), message.offset()),
        message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        headers,
        message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
    )
}
