//! The pipeline as the configuration asks for it: the store (embedded,
//! Cosmos DB or DynamoDB), the topics (Kafka or the embedded topic log) and the steps over
//! them. Every host starts here: `serve`, the Functions handler and Lambda.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use orderflow_api::App;
use orderflow_kafka::reader::KafkaTopicReader;
use orderflow_kafka::KafkaProducer;
use orderflow_pipeline::archive::ArchiveClosed;
use orderflow_pipeline::consumers::{Consumer, Fulfillment, Projector, Publisher};
use orderflow_pipeline::deadlines::{DeadlineTimers, PassDeadlines};
use orderflow_pipeline::ingest::Ingestor;
use orderflow_pipeline::ports::{MessageProducer, Stores, TopicReader};
use orderflow_pipeline::processor::CommandProcessor;
use orderflow_pipeline::time_driven::TimeDriven;
use orderflow_store_cosmos::CosmosStore;
use orderflow_store_dynamodb::DynamoStore;
use orderflow_store_sqlite::{Retention, SqliteStore};

use crate::config::{Config, CosmosConfig, DynamoConfig};

pub struct Pipeline {
    pub stores: Stores,
    /// Where downstream messages and dead letters go.
    pub producer: Arc<dyn MessageProducer>,
    /// The same topics, read back.
    pub topics: Arc<dyn TopicReader>,
    pub processor: Arc<CommandProcessor>,
    pub ingestor: Arc<Ingestor>,
    /// Where deadlines are kept, and which ones orders get.
    pub deadlines: DeadlineTimers,
    /// How long after closing an order is archived (`None`: never on a
    /// schedule).
    pub archive_closed_after: Option<chrono::Duration>,
    /// The Kafka producer, when topics are on Kafka (to flush at the end).
    pub kafka: Option<Arc<KafkaProducer>>,
    /// What the store is, for people (with its place: for the command line).
    pub store_name: String,
    /// Which kind of store, without its place (for pages).
    pub store_kind: &'static str,
}

impl Pipeline {
    pub async fn open(config: &Config) -> anyhow::Result<Pipeline> {
        // With a cloud store and Kafka both configured, nothing is kept
        // locally (a serverless host's file system may well be read-only).
        let in_the_cloud = config.cosmos.is_some() || config.dynamodb.is_some();
        let embedded = if !in_the_cloud || config.kafka.is_none() {
            let dir = &config.data_dir;
            let retention = Retention {
                keys: config.key_retention,
                topic_age: config.topic_retention,
                topic_records: config.topic_records,
            };
            let store = SqliteStore::open_with(dir, retention);
            Some(Arc::new(store.with_context(|| format!("cannot use data dir {}", dir.display()))?))
        } else {
            None
        };
        let (stores, store_name, store_kind) = match (&config.cosmos, &config.dynamodb, &embedded) {
            (Some(cosmos), _, _) => (
                Stores::of(Arc::new(connect_cosmos(cosmos, config.key_retention).await?)),
                format!("Cosmos DB {} database {}", cosmos.account.endpoint(), cosmos.database),
                "Cosmos DB",
            ),
            (None, Some(dynamodb), _) => {
                let store = connect_dynamodb(dynamodb, config.key_retention).await?;
                let name = format!("DynamoDB tables {}* at {}", dynamodb.table_prefix, store.endpoint());
                (Stores::of(Arc::new(store)), name, "DynamoDB")
            }
            (None, None, Some(store)) => (Stores::of(store.clone()), store.path().display().to_string(), "embedded"),
            (None, None, None) => {
                anyhow::bail!("no store: set CosmosDBConnection, DynamoDBTablePrefix or OrderflowDataDir")
            }
        };
        type Topics = (Arc<dyn MessageProducer>, Arc<dyn TopicReader>);
        let ((producer, topics), kafka): (Topics, _) = match (&config.kafka, &embedded) {
            (Some(kafka), _) => {
                let producer = Arc::new(KafkaProducer::new(kafka)?);
                ((producer.clone(), Arc::new(KafkaTopicReader::new(kafka.clone()))), Some(producer))
            }
            (None, Some(store)) => ((store.clone(), store.clone()), None),
            (None, None) => anyhow::bail!("no topics: set KafkaBrokerList or OrderflowDataDir"),
        };
        let processor = Arc::new(CommandProcessor::new(stores.events.clone()));
        let ingestor = Arc::new(Ingestor::new(processor.clone(), producer.clone()));
        let deadlines = DeadlineTimers { timers: stores.timers.clone(), policy: config.deadlines.clone() };
        let archive_closed_after = config.archive_closed_after.map(chrono::Duration::from_std).transpose()?;
        Ok(Pipeline {
            stores,
            producer,
            topics,
            processor,
            ingestor,
            deadlines,
            archive_closed_after,
            kafka,
            store_name,
            store_kind,
        })
    }

    /// The change-feed consumers (DESIGN §1), by name.
    pub fn consumers(&self) -> [Arc<dyn Consumer>; 3] {
        let stores = &self.stores;
        [
            Arc::new(Projector::new(stores.events.clone(), stores.snapshots.clone())),
            Arc::new(Publisher::new(self.producer.clone())),
            Arc::new(Fulfillment::new(self.processor.clone(), stores.refusals.clone(), self.deadlines.clone())),
        ]
    }

    /// The time-driven step (DESIGN §1): passes the deadlines that are due.
    pub fn pass_deadlines(&self) -> PassDeadlines {
        PassDeadlines::new(self.processor.clone(), self.stores.timers.clone())
    }

    /// Archival of closed orders (DESIGN §1's time-driven step).
    pub fn archive_closed(&self) -> ArchiveClosed {
        ArchiveClosed::new(self.stores.events.clone(), self.stores.archive.clone())
    }

    /// The time-driven step as a scheduled host runs it: deadlines, then
    /// archival when it is on.
    pub fn time_driven(&self) -> TimeDriven {
        let archive = self.archive_closed_after.map(|after| (self.archive_closed(), after));
        TimeDriven { deadlines: self.pass_deadlines(), archive }
    }

    /// The HTTP API's state.
    pub fn app(&self, config: &Config) -> App {
        App::new(self.processor.clone(), self.ingestor.clone(), self.stores.snapshots.clone(), &config.api.api_keys)
    }

    /// Waits (bounded) until the messages produced so far are on Kafka.
    pub async fn flush(&self) {
        if let Some(kafka) = &self.kafka {
            kafka.flush(std::time::Duration::from_secs(10)).await;
        }
    }
}

/// The Cosmos DB store, with a hint when its containers are missing.
pub async fn connect_cosmos(cosmos: &CosmosConfig, key_retention: Duration) -> anyhow::Result<CosmosStore> {
    let client = orderflow_store_cosmos::client(&cosmos.account, &cosmos.region).await?;
    CosmosStore::connect_with(&client, &cosmos.database, key_retention).await.with_context(|| {
        format!("cannot open database {} (CosmosDBConnection; run `orderflow init` first)", cosmos.database)
    })
}

/// The DynamoDB store, with a hint when its tables are missing.
pub async fn connect_dynamodb(dynamodb: &DynamoConfig, key_retention: Duration) -> anyhow::Result<DynamoStore> {
    DynamoStore::connect(&dynamodb.table_prefix, key_retention).await.with_context(|| {
        format!("cannot open the tables {}* (DynamoDBTablePrefix; run `orderflow init` first)", dynamodb.table_prefix)
    })
}
