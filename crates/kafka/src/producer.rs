//! The downstream producer: an idempotent producer (`acks=all`), so a retry
//! inside librdkafka never duplicates or reorders a partition's records.

use std::time::Duration;

use async_trait::async_trait;
use orderflow_pipeline::ports::{Message, MessageProducer};
use orderflow_pipeline::StoreError;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::config::{ConfigError, KafkaConfig};

pub struct KafkaProducer {
    producer: FutureProducer,
    config: KafkaConfig,
}

impl KafkaProducer {
    pub fn new(config: &KafkaConfig) -> Result<Self, ConfigError> {
        let producer = config
            .client_config()?
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("delivery.timeout.ms", "30000")
            .create()
            .map_err(|e| ConfigError { setting: "KafkaBrokerList", problem: e.to_string() })?;
        Ok(KafkaProducer { producer, config: config.clone() })
    }

    /// Waits (at most `timeout`, off the async threads) for every message
    /// still queued, before shutting down. Whatever is not delivered then is
    /// published again from the checkpoint after the restart.
    pub async fn flush(&self, timeout: Duration) {
        let producer = self.producer.clone();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout));
        match tokio::time::timeout(timeout + Duration::from_secs(1), flushed).await {
            Ok(Ok(Ok(()))) => {}
            _ => tracing::warn!("not every Kafka message was delivered before shutdown"),
        }
    }
}

/// A produce error: for good when the record itself is what the broker
/// refuses (its size, its form), else something to retry.
fn unavailable(error: KafkaError) -> StoreError {
    use RDKafkaErrorCode::*;
    match error.rdkafka_error_code() {
        Some(MessageSizeTooLarge | InvalidMessageSize | InvalidMessage | MessageBatchTooLarge | InvalidRecord) => {
            StoreError::Refused(format!("kafka: {error}"))
        }
        _ => StoreError::Unavailable(format!("kafka: {error}")),
    }
}

#[async_trait]
impl MessageProducer for KafkaProducer {
    async fn send(&self, messages: Vec<Message>) -> Result<(), StoreError> {
        // Enqueue in order (that is what keeps per-key order), then wait for
        // every delivery report.
        let mut pending: Vec<DeliveryFuture> = Vec::with_capacity(messages.len());
        for message in &messages {
            let topic = self.config.topic(&message.topic);
            let headers =
                message.headers.iter().fold(OwnedHeaders::new_with_capacity(message.headers.len()), |h, (k, v)| {
                    h.insert(Header { key: k, value: Some(v) })
                });
            loop {
                let mut record = FutureRecord::to(&topic).payload(&message.value).headers(headers.clone());
                if let Some(key) = &message.key {
                    record = record.key(key);
                }
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // Back-pressure: wait for what is in flight, then retry.
                        wait_all(std::mem::take(&mut pending)).await?;
                    }
                    Err((error, _)) => return Err(unavailable(error)),
                }
            }
        }
        wait_all(pending).await
    }
}

async fn wait_all(pending: Vec<DeliveryFuture>) -> Result<(), StoreError> {
    for delivery in futures::future::join_all(pending).await {
        match delivery {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => return Err(unavailable(error)),
            Err(_) => return Err(StoreError::Unavailable("kafka: the producer was dropped".into())),
        }
    }
    Ok(())
}
