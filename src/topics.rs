//! `orderflow topics`: read a topic's CloudEvents as JSON lines (Kafka when
//! configured, else the embedded topic log), produce CloudEvents to Kafka,
//! and create Kafka topics.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use orderflow_kafka::KafkaProducer;
use orderflow_pipeline::cloudevents::{from_message, to_message, to_structured_json};
use orderflow_pipeline::ports::{Message, MessageProducer};
use orderflow_store_sqlite::SqliteStore;
use serde_json::json;

use crate::config::Config;

pub struct ReadOptions {
    pub topic: String,
    /// Start at the first record even when following (the default otherwise).
    pub from_beginning: bool,
    pub count: Option<u64>,
    pub follow: bool,
}

pub async fn read(config: &Config, options: ReadOptions) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let mut failed = None;
    // Prints one record; false once stdout is gone (`| head`) or broken.
    let mut print = |message: &Message| match writeln!(out, "{}", render(message)).and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => false,
        Err(error) => {
            failed = Some(error);
            false
        }
    };
    let from_beginning = options.from_beginning || !options.follow;
    if let Some(kafka) = &config.kafka {
        let read_options =
            orderflow_kafka::reader::ReadOptions { from_beginning, follow: options.follow, count: options.count };
        orderflow_kafka::reader::read_topic(kafka, &options.topic, read_options, |record| print(&record.message))
            .await?;
    } else {
        read_embedded(config, &options, from_beginning, &mut print).await?;
    }
    match failed {
        Some(error) => Err(anyhow::Error::new(error).context("cannot write to stdout")),
        None => Ok(()),
    }
}

async fn read_embedded(
    config: &Config,
    options: &ReadOptions,
    from_beginning: bool,
    print: &mut impl FnMut(&Message) -> bool,
) -> anyhow::Result<()> {
    let path = config.data_dir.join(orderflow_store_sqlite::DB_FILE);
    if !path.exists() {
        anyhow::bail!("no store at {} (start `orderflow serve` first, or pass --data-dir)", path.display());
    }
    let store =
        SqliteStore::open(&config.data_dir).with_context(|| format!("cannot open {}", config.data_dir.display()))?;
    let mut offset = if from_beginning { 0 } else { store.topic_len(&options.topic).await? };
    let mut printed = 0u64;
    loop {
        let records = store.read_topic(&options.topic, offset, 500).await?;
        for record in &records {
            if options.count.is_some_and(|count| printed >= count) || !print(&record.message) {
                return Ok(());
            }
            printed += 1;
            offset = record.offset + 1;
        }
        if records.is_empty() {
            if !options.follow || options.count.is_some_and(|count| printed >= count) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The record as a structured CloudEvent, or as a raw record if it is not one.
fn render(message: &Message) -> String {
    match from_message(&message.headers, &message.value) {
        Ok(event) => to_structured_json(&event).to_string(),
        Err(reason) => json!({
            "key": message.key,
            "notCloudEvent": reason,
            "valueBase64": base64::engine::general_purpose::STANDARD.encode(&message.value),
        })
        .to_string(),
    }
}

/// Lines are sent in batches of this many, each acknowledged before the next.
const PRODUCE_BATCH: usize = 500;

pub async fn produce(config: &Config, topic: &str) -> anyhow::Result<()> {
    let Some(kafka) = &config.kafka else {
        anyhow::bail!("KafkaBrokerList is not set: without Kafka, send events with POST /api/events");
    };
    let producer = KafkaProducer::new(kafka)?;
    let mut produced = 0usize;
    let mut lines = std::io::stdin().lines().enumerate();
    loop {
        let mut batch = Vec::with_capacity(PRODUCE_BATCH);
        let mut ended = false;
        while batch.len() < PRODUCE_BATCH {
            let Some((number, line)) = lines.next() else {
                ended = true;
                break;
            };
            let line = line.context("cannot read standard input")?;
            if line.trim().is_empty() {
                continue;
            }
            let event: cloudevents::Event = serde_json::from_str(&line)
                .with_context(|| format!("line {}: not a structured CloudEvent", number + 1))?;
            let key = cloudevents::AttributesReader::subject(&event).map(String::from);
            batch.push(to_message(topic, key, &event));
        }
        let count = batch.len();
        if count > 0 {
            producer.send(batch).await.with_context(|| {
                format!("Kafka did not acknowledge a batch after {produced} events were (KafkaBrokerList)")
            })?;
            produced += count;
        }
        if ended {
            println!("produced {produced} events to {}", kafka.topic(topic));
            return Ok(());
        }
    }
}

pub async fn create(config: &Config) -> anyhow::Result<()> {
    let Some(kafka) = &config.kafka else {
        anyhow::bail!("KafkaBrokerList is not set: the embedded topic log needs no topics created");
    };
    let created = orderflow_kafka::create_topics(kafka).await?;
    for topic in orderflow_pipeline::topics::ALL {
        let name = kafka.topic(topic.name);
        let state = if created.contains(&name) { "created" } else { "exists" };
        println!("{name}\t{state}");
    }
    Ok(())
}
