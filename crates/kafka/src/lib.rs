//! orderflow's Kafka adapter (`rdkafka`): the ingestion consumer of the
//! back-end topics, the downstream producer behind the `MessageProducer`
//! port, topic creation, and a topic reader.
//!
//! Messages are CloudEvents over the Kafka protocol binding, mapped in
//! `orderflow_pipeline::cloudevents`. Logical topic names (`payments`,
//! `orderflow.orders`, ...) map to physical ones through `KafkaConfig`.

pub mod admin;
pub mod config;
pub mod ingest;
pub mod producer;
pub mod reader;

pub use admin::{create_topics, AdminError};
pub use config::{ConfigError, KafkaConfig};
pub use producer::KafkaProducer;
