//! Durable timers on SQLite: one row per deadline, indexed by due time.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orderflow_pipeline::ports::{Timer, Timers};
use orderflow_pipeline::StoreError;
use rusqlite::params;

use crate::columns::{parse_json, timestamp};
use crate::writer::unavailable;
use crate::SqliteStore;

#[async_trait]
impl Timers for SqliteStore {
    async fn schedule(&self, timers: Vec<Timer>) -> Result<(), StoreError> {
        if timers.is_empty() {
            return Ok(());
        }
        let rows = timers
            .iter()
            .map(|timer| {
                let json = serde_json::to_string(timer).map_err(|e| StoreError::Corrupt(format!("timer: {e}")))?;
                Ok((timer.stream_id.clone(), timer.name.clone(), timestamp(timer.due_at), json))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write(move |conn| {
            let mut insert = conn
                .prepare_cached(
                    "INSERT INTO timers (stream_id, name, due_at, timer) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
                )
                .map_err(unavailable)?;
            for (stream_id, name, due_at, json) in &rows {
                insert.execute(params![stream_id, name, due_at, json]).map_err(unavailable)?;
            }
            Ok(())
        })
        .await
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Timer>, StoreError> {
        let now = timestamp(now);
        let rows = self
            .read(move |conn| {
                let mut statement =
                    conn.prepare_cached("SELECT timer FROM timers WHERE due_at <= ?1 ORDER BY due_at LIMIT ?2")?;
                let rows = statement.query_map(params![now, limit as i64], |row| row.get::<_, String>(0))?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        rows.iter().map(|text| parse_timer(text)).collect()
    }

    async fn complete(&self, stream_id: &str, name: &str) -> Result<(), StoreError> {
        let (stream_id, name) = (stream_id.to_string(), name.to_string());
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM timers WHERE stream_id = ?1 AND name = ?2")
                .and_then(|mut s| s.execute(params![stream_id, name]))
                .map_err(unavailable)?;
            Ok(())
        })
        .await
    }

    async fn pending(&self, limit: usize) -> Result<(Vec<Timer>, u64), StoreError> {
        let (rows, count) = self
            .read(move |conn| {
                let mut statement = conn.prepare_cached("SELECT timer FROM timers ORDER BY due_at LIMIT ?1")?;
                let rows = statement.query_map([limit as i64], |row| row.get::<_, String>(0))?;
                let rows = rows.collect::<Result<Vec<_>, _>>()?;
                let count: u64 = conn.query_row("SELECT COUNT(*) FROM timers", [], |row| row.get(0))?;
                Ok((rows, count))
            })
            .await?;
        Ok((rows.iter().map(|text| parse_timer(text)).collect::<Result<_, _>>()?, count))
    }
}

fn parse_timer(text: &str) -> Result<Timer, StoreError> {
    serde_json::from_value(parse_json(text)?).map_err(|e| StoreError::Corrupt(format!("timer: {e}")))
}
