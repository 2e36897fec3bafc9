//! Topics: created explicitly (brokers here do not auto-create), idempotently.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use orderflow_pipeline::topics;

use crate::config::KafkaConfig;

#[derive(Debug, thiserror::Error)]
#[error("kafka: {0}")]
pub struct AdminError(String);

impl From<String> for AdminError {
    fn from(message: String) -> Self {
        AdminError(message)
    }
}

/// Creates the physical topics of every topic orderflow reads or writes
/// ([`topics::ALL`]) that does not exist yet; returns the ones it created.
pub async fn create_topics(config: &KafkaConfig) -> Result<Vec<String>, AdminError> {
    let client_config = config.client_config().map_err(|e| AdminError(e.to_string()))?;
    let admin: AdminClient<DefaultClientContext> = client_config.create().map_err(|e| AdminError(e.to_string()))?;
    let names: Vec<String> = topics::ALL.iter().map(|topic| config.topic(topic.name)).collect();
    let topics: Vec<NewTopic> =
        names.iter().map(|name| NewTopic::new(name, config.partitions, TopicReplication::Fixed(1))).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&topics, &options).await.map_err(|e| AdminError(e.to_string()))?;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(AdminError(format!("cannot create topic {name}: {code}"))),
        }
    }
    Ok(created)
}

/// The partitions of a topic, from the cluster's metadata.
pub fn partitions(config: &KafkaConfig, topic: &str) -> Result<Vec<i32>, AdminError> {
    let consumer: BaseConsumer = config
        .client_config()
        .map_err(|e| AdminError(e.to_string()))?
        .create()
        .map_err(|e| AdminError(e.to_string()))?;
    let metadata =
        consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(|e| AdminError(e.to_string()))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(AdminError(format!("topic {topic} does not exist")));
    }
    Ok(partitions)
}
