//! The embedded topic log: Kafka-shaped records (key, headers, value) with a
//! per-topic offset, for when no broker is configured.

use async_trait::async_trait;
use base64::Engine as _;
use chrono::{SecondsFormat, Utc};
use orderflow_pipeline::ports::{Message, MessageProducer};
use orderflow_pipeline::StoreError;
use rusqlite::params;

use crate::writer::unavailable;
use crate::SqliteStore;

/// A record read back from a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicRecord {
    pub offset: u64,
    pub timestamp: String,
    pub message: Message,
}

fn encode_headers(headers: &[(String, Vec<u8>)]) -> String {
    let engine = base64::engine::general_purpose::STANDARD;
    let pairs: Vec<(&str, String)> =
        headers.iter().map(|(name, value)| (name.as_str(), engine.encode(value))).collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into())
}

fn decode_headers(text: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(format!("topic record headers: {e}"));
    let pairs: Vec<(String, String)> = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
    let engine = base64::engine::general_purpose::STANDARD;
    pairs
        .into_iter()
        .map(|(name, value)| Ok((name, engine.decode(value).map_err(|e| corrupt(e.to_string()))?)))
        .collect()
}

#[async_trait]
impl MessageProducer for SqliteStore {
    async fn send(&self, messages: Vec<Message>) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        self.write(move |conn| {
            let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
            let mut next_offset = conn
                .prepare_cached("SELECT COALESCE(MAX(offset) + 1, 0) FROM topic_messages WHERE topic = ?1")
                .map_err(unavailable)?;
            let mut insert = conn
                .prepare_cached(
                    "INSERT INTO topic_messages (topic, offset, key, headers, value, timestamp)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(unavailable)?;
            for message in messages {
                let offset: u64 = next_offset.query_row([&message.topic], |row| row.get(0)).map_err(unavailable)?;
                insert
                    .execute(params![
                        message.topic,
                        offset,
                        message.key,
                        encode_headers(&message.headers),
                        message.value,
                        now
                    ])
                    .map_err(unavailable)?;
            }
            Ok(())
        })
        .await
    }
}

impl SqliteStore {
    /// Records of `topic` from `from_offset` on, at most `max`.
    pub async fn read_topic(&self, topic: &str, from_offset: u64, max: usize) -> Result<Vec<TopicRecord>, StoreError> {
        let topic = topic.to_string();
        let rows = self
            .read(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT offset, key, headers, value, timestamp FROM topic_messages
                     WHERE topic = ?1 AND offset >= ?2 ORDER BY offset LIMIT ?3",
                )?;
                let rows = statement.query_map(params![topic, from_offset, max as i64], |row| {
                    Ok((
                        row.get::<_, u64>(0)?,
                        row.get::<_, Option<String>>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, Vec<u8>>(3)?,
                        row.get::<_, String>(4)?,
                    ))
                })?;
                Ok((topic, rows.collect::<Result<Vec<_>, _>>()?))
            })
            .await?;
        let (topic, rows) = rows;
        rows.into_iter()
            .map(|(offset, key, headers, value, timestamp)| {
                let message = Message { topic: topic.clone(), key, headers: decode_headers(&headers)?, value };
                Ok(TopicRecord { offset, timestamp, message })
            })
            .collect()
    }

    /// The number of records on `topic`.
    pub async fn topic_len(&self, topic: &str) -> Result<u64, StoreError> {
        let topic = topic.to_string();
        self.read(move |conn| {
            conn.query_row("SELECT COALESCE(MAX(offset) + 1, 0) FROM topic_messages WHERE topic = ?1", [topic], |row| {
                row.get(0)
            })
        })
        .await
    }
}
