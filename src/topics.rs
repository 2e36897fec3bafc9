//! `orderflow topics read TOPIC`: print a topic's CloudEvents as JSON lines.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use orderflow_pipeline::cloudevents::{from_message, to_structured_json};
use orderflow_store_sqlite::{SqliteStore, TopicRecord};
use serde_json::json;

pub struct ReadOptions {
    pub data_dir: PathBuf,
    pub topic: String,
    /// Start at the first record even when following (the default otherwise).
    pub from_beginning: bool,
    pub count: Option<u64>,
    pub follow: bool,
}

pub async fn read(options: ReadOptions) -> anyhow::Result<()> {
    let path = options.data_dir.join(orderflow_store_sqlite::DB_FILE);
    if !path.exists() {
        anyhow::bail!("no store at {} (start `orderflow serve` first, or pass --data-dir)", path.display());
    }
    let store =
        SqliteStore::open(&options.data_dir).with_context(|| format!("cannot open {}", options.data_dir.display()))?;
    let mut offset = if options.follow && !options.from_beginning { store.topic_len(&options.topic).await? } else { 0 };
    let mut printed = 0u64;
    let mut out = std::io::stdout().lock();
    loop {
        let records = store.read_topic(&options.topic, offset, 500).await?;
        for record in &records {
            if options.count.is_some_and(|count| printed >= count) {
                return Ok(());
            }
            if let Err(error) = writeln!(out, "{}", render(record)) {
                return output_ended(error);
            }
            printed += 1;
            offset = record.offset + 1;
        }
        if let Err(error) = out.flush() {
            return output_ended(error);
        }
        if records.is_empty() {
            if !options.follow || options.count.is_some_and(|count| printed >= count) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A reader that went away (`| head`) ends the output quietly.
fn output_ended(error: std::io::Error) -> anyhow::Result<()> {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(anyhow::Error::new(error).context("cannot write to stdout"))
    }
}

/// The record as a structured CloudEvent, or as a raw record if it is not one.
fn render(record: &TopicRecord) -> String {
    let message = &record.message;
    match from_message(&message.headers, &message.value) {
        Ok(event) => to_structured_json(&event).to_string(),
        Err(reason) => json!({
            "offset": record.offset,
            "key": message.key,
            "notCloudEvent": reason,
            "valueBase64": base64::engine::general_purpose::STANDARD.encode(&message.value),
        })
        .to_string(),
    }
}
