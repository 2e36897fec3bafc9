//! Reading a topic from outside any consumer group (for `orderflow topics
//! read` and tests): every partition, from the beginning or the end, up to
//! what the topic held when reading started, or on and on with `follow`;
//! and the [`TopicReader`] port (the console's dead letters).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use orderflow_pipeline::ports::{Message, OnTopic, TopicReader};
use orderflow_pipeline::StoreError;
use rdkafka::config::FromClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::{Message as _, Offset, TopicPartitionList};

use crate::admin::{partitions, AdminError};
use crate::config::KafkaConfig;

/// A record read back, with where it was.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub message: Message,
}

pub struct ReadOptions {
    pub from_beginning: bool,
    pub follow: bool,
    pub count: Option<u64>,
}

/// Calls `sink` for each record until the topic is read (or `count` records
/// were, or `sink` returns false).
pub async fn read_topic(
    config: &KafkaConfig,
    logical_topic: &str,
    options: ReadOptions,
    mut sink: impl FnMut(Record) -> bool,
) -> Result<(), AdminError> {
    let topic = config.topic(logical_topic);
    let error = |e: rdkafka::error::KafkaError| AdminError::from(e.to_string());
    let consumer: StreamConsumer = reading_consumer(config)?;
    let start = if options.from_beginning { Offset::Beginning } else { Offset::End };
    let mut assignment = TopicPartitionList::new();
    // What is left to read in each partition, when not following.
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    for partition in partitions(config, &topic)? {
        assignment.add_partition_offset(&topic, partition, start).map_err(error)?;
        let (low, high) = consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10)).map_err(error)?;
        if options.from_beginning && high > low {
            remaining.insert(partition, high);
        }
    }
    consumer.assign(&assignment).map_err(error)?;
    let mut read = 0u64;
    loop {
        if options.count.is_some_and(|count| read >= count) || (!options.follow && remaining.is_empty()) {
            return Ok(());
        }
        let message = match tokio::time::timeout(Duration::from_secs(10), consumer.recv()).await {
            Ok(Ok(message)) => message,
            Ok(Err(e)) => return Err(error(e)),
            Err(_) if options.follow => continue,
            Err(_) => return Err(AdminError::from(format!("{topic}: no record within 10 s while reading"))),
        };
        let (partition, offset) = (message.partition(), message.offset());
        if remaining.get(&partition).is_some_and(|high| offset + 1 >= *high) {
            remaining.remove(&partition);
        }
        let record = Record { partition, offset, message: record(&topic, &message) };
        read += 1;
        if !sink(record) {
            return Ok(());
        }
    }
}

/// A consumer of no group's offsets: it reads what it is assigned.
fn reading_consumer<C: FromClientConfig>(config: &KafkaConfig) -> Result<C, AdminError> {
    config
        .client_config()
        .map_err(|e| AdminError::from(e.to_string()))?
        .set("group.id", format!("orderflow-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| AdminError::from(e.to_string()))
}

/// The [`TopicReader`] port over Kafka: each read assigns the partitions it
/// needs to a consumer of its own (no group offsets committed) and reads up
/// to what they held when it started.
pub struct KafkaTopicReader {
    config: KafkaConfig,
}

impl KafkaTopicReader {
    pub fn new(config: KafkaConfig) -> Self {
        KafkaTopicReader { config }
    }

    /// librdkafka's calls block: they run off the async workers.
    async fn read(&self, topic: &str, wanted: Wanted) -> Result<Vec<OnTopic>, StoreError> {
        let (config, topic) = (self.config.clone(), topic.to_string());
        tokio::task::spawn_blocking(move || read_ranges(&config, &topic, wanted))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }
}

#[async_trait]
impl TopicReader for KafkaTopicReader {
    async fn latest(&self, topic: &str, per_partition: usize) -> Result<Vec<OnTopic>, StoreError> {
        self.read(topic, Wanted::Latest(per_partition as i64)).await
    }

    async fn at(&self, topic: &str, partition: i32, offset: i64) -> Result<Option<OnTopic>, StoreError> {
        Ok(self.read(topic, Wanted::At(partition, offset)).await?.into_iter().next())
    }
}

#[derive(Clone, Copy)]
enum Wanted {
    /// The newest records of every partition.
    Latest(i64),
    /// One record.
    At(i32, i64),
}

fn read_ranges(config: &KafkaConfig, logical_topic: &str, wanted: Wanted) -> Result<Vec<OnTopic>, AdminError> {
    let topic = config.topic(logical_topic);
    let error = |e: rdkafka::error::KafkaError| AdminError::from(format!("{topic}: {e}"));
    let consumer: BaseConsumer = reading_consumer(config)?;
    // Partition → the offset after the last record to read.
    let mut ends: HashMap<i32, i64> = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    let partitions = match wanted {
        Wanted::Latest(_) => partitions(config, &topic)?,
        Wanted::At(partition, _) => vec![partition],
    };
    for partition in partitions {
        let (low, high) = match consumer.fetch_watermarks(&topic, partition, WAIT) {
            Ok(marks) => marks,
            Err(e) if matches!(wanted, Wanted::At(..)) => {
                tracing::debug!(partition, error = %e, "no such partition");
                return Ok(Vec::new());
            }
            Err(e) => return Err(error(e)),
        };
        let (start, end) = match wanted {
            Wanted::Latest(count) => ((high - count).max(low), high),
            Wanted::At(_, offset) if offset >= low && offset < high => (offset, offset + 1),
            Wanted::At(..) => continue,
        };
        if end > start {
            assignment.add_partition_offset(&topic, partition, Offset::Offset(start)).map_err(error)?;
            ends.insert(partition, end);
        }
    }
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&assignment).map_err(error)?;
    let deadline = std::time::Instant::now() + WAIT;
    let mut read = Vec::new();
    while !ends.is_empty() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let message = match consumer.poll(left) {
            Some(message) => message.map_err(error)?,
            None => return Err(AdminError::from(format!("{topic}: the records were not read within {WAIT:?}"))),
        };
        let (partition, offset) = (message.partition(), message.offset());
        let Some(end) = ends.get(&partition).copied() else { continue };
        if offset + 1 >= end {
            ends.remove(&partition);
        }
        if offset < end {
            let record = record(logical_topic, &message);
            read.push(OnTopic { partition, offset, message: record });
        }
    }
    Ok(read)
}

const WAIT: Duration = Duration::from_secs(10);

/// A Kafka record as the pipeline's [`Message`].
fn record(topic: &str, message: &impl rdkafka::Message) -> Message {
    let headers = message
        .headers()
        .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec).unwrap_or_default())).collect())
        .unwrap_or_default();
    Message {
        topic: topic.to_string(),
        key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        headers,
        value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
    }
}
