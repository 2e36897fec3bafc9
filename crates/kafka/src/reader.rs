//! Reading a topic from outside any consumer group (for `orderflow topics
//! read` and tests): every partition, from the beginning or the end, up to
//! what the topic held when reading started, or on and on with `follow`.

use std::collections::HashMap;
use std::time::Duration;

use orderflow_pipeline::ports::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
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
    let consumer: StreamConsumer = config
        .client_config()
        .map_err(|e| AdminError::from(e.to_string()))?
        .set("group.id", format!("orderflow-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()
        .map_err(error)?;
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
        let headers = message
            .headers()
            .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec).unwrap_or_default())).collect())
            .unwrap_or_default();
        let record = Record {
            partition,
            offset,
            message: Message {
                topic: topic.clone(),
                key: message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                headers,
                value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            },
        };
        read += 1;
        if !sink(record) {
            return Ok(());
        }
    }
}
