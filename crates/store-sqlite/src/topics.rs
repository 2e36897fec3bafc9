//! The embedded topic log: Kafka-shaped records (key, headers, value) with a
//! per-topic offset, for when no broker is configured. Like a Kafka topic it
//! keeps records for a time and up to a size ([`trim`]); offsets go on
//! from the newest record, which is always kept.

use async_trait::async_trait;
use base64::Engine as _;
use chrono::Utc;
use orderflow_pipeline::ports::{Message, MessageProducer, OnTopic, TopicReader};
use orderflow_pipeline::StoreError;
use rusqlite::params;
use rusqlite::{Connection, OptionalExtension};

use crate::columns::timestamp;
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
        // Encoded here: the writer thread, which every write waits for, only writes.
        let headers: Vec<String> = messages.iter().map(|message| encode_headers(&message.headers)).collect();
        self.write(move |conn| {
            let now = timestamp(Utc::now());
            let mut next_offset = conn
                .prepare_cached("SELECT COALESCE(MAX(offset) + 1, 0) FROM topic_messages WHERE topic = ?1")
                .map_err(unavailable)?;
            let mut insert = conn
                .prepare_cached(
                    "INSERT INTO topic_messages (topic, offset, key, headers, value, timestamp)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(unavailable)?;
            for (message, headers) in messages.iter().zip(&headers) {
                let offset: u64 = next_offset.query_row([&message.topic], |row| row.get(0)).map_err(unavailable)?;
                insert
                    .execute(params![message.topic, offset, message.key, headers, message.value, now])
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

/// The embedded log has one partition per topic: partition 0.
#[async_trait]
impl TopicReader for SqliteStore {
    async fn latest(&self, topic: &str, per_partition: usize) -> Result<Vec<OnTopic>, StoreError> {
        let from = self.topic_len(topic).await?.saturating_sub(per_partition as u64);
        let records = self.read_topic(topic, from, per_partition).await?;
        Ok(records.into_iter().map(on_topic).collect())
    }

    async fn at(&self, topic: &str, partition: i32, offset: i64) -> Result<Option<OnTopic>, StoreError> {
        let Ok(offset) = u64::try_from(offset) else { return Ok(None) };
        if partition != 0 {
            return Ok(None);
        }
        let record = self.read_topic(topic, offset, 1).await?.into_iter().next();
        Ok(record.filter(|record| record.offset == offset).map(on_topic))
    }
}

fn on_topic(record: TopicRecord) -> OnTopic {
    OnTopic { partition: 0, offset: record.offset as i64, message: record.message }
}

/// Records deleted per topic and reason in one upkeep at most: the writer
/// waits for the upkeep, so each one stays short; the rest goes next time.
const TRIM_BATCH: i64 = 20_000;

/// Deletes the records of every topic older than `max_age` or beyond the
/// newest `max_records`, the oldest first, never the newest record of a
/// topic (it carries the next offset). Index lookups only: the topics are
/// found by skipping through the primary key, the oldest records by it too.
pub(crate) fn trim(conn: &Connection, max_age: std::time::Duration, max_records: u64) -> rusqlite::Result<()> {
    let age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
    let cutoff = Utc::now().checked_sub_signed(age).map(timestamp);
    let mut topic = String::new();
    loop {
        let next = conn
            .prepare_cached("SELECT topic FROM topic_messages WHERE topic > ?1 ORDER BY topic LIMIT 1")?
            .query_row([&topic], |row| row.get::<_, String>(0))
            .optional()?;
        let Some(name) = next else { return Ok(()) };
        let newest: i64 = conn
            .prepare_cached("SELECT MAX(offset) FROM topic_messages WHERE topic = ?1")?
            .query_row([&name], |row| row.get(0))?;
        // Beyond the size: everything before the newest `max_records`.
        let keep_from = newest.saturating_sub(i64::try_from(max_records).unwrap_or(i64::MAX)).saturating_add(1);
        let oversized = conn
            .prepare_cached(
                "DELETE FROM topic_messages WHERE topic = ?1 AND offset IN
                    (SELECT offset FROM topic_messages WHERE topic = ?1 AND offset < MIN(?2, ?3) ORDER BY offset LIMIT ?4)",
            )?
            .execute(params![name, keep_from, newest, TRIM_BATCH])?;
        // Too old: from the oldest on, while older than the cutoff.
        let expired = match &cutoff {
            Some(cutoff) => conn
                .prepare_cached(
                    "DELETE FROM topic_messages WHERE topic = ?1 AND offset IN
                        (SELECT offset FROM topic_messages WHERE topic = ?1 AND offset < ?2 ORDER BY offset LIMIT ?3)
                     AND timestamp < ?4",
                )?
                .execute(params![name, newest, TRIM_BATCH, cutoff])?,
            None => 0,
        };
        if oversized + expired > 0 {
            tracing::debug!(topic = name, oversized, expired, "topic records past the retention deleted");
        }
        topic = name;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::SqliteStore;

    fn message(topic: &str, n: usize) -> Message {
        Message { topic: topic.into(), key: Some(format!("k{n}")), headers: vec![], value: n.to_string().into_bytes() }
    }

    async fn offsets(store: &SqliteStore, topic: &str) -> Vec<u64> {
        store.read_topic(topic, 0, 1_000).await.expect("read").into_iter().map(|r| r.offset).collect()
    }

    /// Runs `work` on a connection of its own to the store's file.
    fn on_the_file(store: &SqliteStore, work: impl FnOnce(&Connection)) {
        let conn = Connection::open(store.path()).expect("open");
        conn.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
        work(&conn);
    }

    #[tokio::test]
    async fn old_records_and_those_beyond_the_size_go_and_nothing_newer() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let store = SqliteStore::open(dir.path()).expect("store");
        store.send((0..10).map(|n| message("a", n)).collect()).await.expect("send a");
        store.send((0..3).map(|n| message("b", n)).collect()).await.expect("send b");
        // The first four records of `a` are a week old.
        on_the_file(&store, |conn| {
            conn.execute(
                "UPDATE topic_messages SET timestamp = '2000-01-01T00:00:00.000000Z' WHERE topic = 'a' AND offset < 4",
                [],
            )
            .expect("age them");
        });
        let day = Duration::from_secs(24 * 3600);
        on_the_file(&store, |conn| trim(conn, day, 1_000).expect("trim by age"));
        assert_eq!(offsets(&store, "a").await, (4..10).collect::<Vec<_>>(), "only the old ones went");
        assert_eq!(offsets(&store, "b").await, [0, 1, 2], "another topic keeps its own");

        on_the_file(&store, |conn| trim(conn, day, 3).expect("trim by size"));
        assert_eq!(offsets(&store, "a").await, [7, 8, 9], "the newest three");
        assert_eq!(offsets(&store, "b").await, [0, 1, 2]);

        // All of it old: the newest record stays, and offsets go on from it.
        on_the_file(&store, |conn| {
            conn.execute("UPDATE topic_messages SET timestamp = '2000-01-01T00:00:00.000000Z'", []).expect("age all");
            trim(conn, day, 1_000).expect("trim");
        });
        assert_eq!(offsets(&store, "a").await, [9]);
        store.send(vec![message("a", 10)]).await.expect("send again");
        assert_eq!(offsets(&store, "a").await, [9, 10]);
        assert_eq!(store.topic_len("a").await.expect("len"), 11, "offsets never start over");
    }
}
