//! Snapshots (read models) on SQLite.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::DateTime;
use orderflow_pipeline::ports::{Snapshot, SnapshotStore};
use orderflow_pipeline::StoreError;
use rusqlite::{params, OptionalExtension, Row};

use crate::columns::{parse_json, timestamp};
use crate::writer::unavailable;
use crate::SqliteStore;

type SnapshotRow = (String, u64, String, Option<String>, String);

fn snapshot_row(row: &Row) -> rusqlite::Result<SnapshotRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
}

fn to_snapshot((stream_id, version, updated_at, customer_id, state): SnapshotRow) -> Result<Snapshot, StoreError> {
    Ok(Snapshot {
        updated_at: DateTime::parse_from_rfc3339(&updated_at)
            .map_err(|e| StoreError::Corrupt(format!("snapshot time {updated_at}: {e}")))?
            .to_utc(),
        state: parse_json(&state)?,
        stream_id,
        version,
        customer_id,
    })
}

#[async_trait]
impl SnapshotStore for SqliteStore {
    async fn get_many(&self, stream_ids: &[String]) -> Result<HashMap<String, Snapshot>, StoreError> {
        let stream_ids = stream_ids.to_vec();
        let rows = self
            .read(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT stream_id, version, updated_at, customer_id, state FROM snapshots WHERE stream_id = ?1",
                )?;
                let mut rows = Vec::with_capacity(stream_ids.len());
                for stream_id in &stream_ids {
                    if let Some(row) = statement.query_row([stream_id], snapshot_row).optional()? {
                        rows.push(row);
                    }
                }
                Ok(rows)
            })
            .await?;
        rows.into_iter().map(|row| to_snapshot(row).map(|s| (s.stream_id.clone(), s))).collect()
    }

    async fn put(&self, snapshots: Vec<Snapshot>) -> Result<(), StoreError> {
        if snapshots.is_empty() {
            return Ok(());
        }
        // Encoded here: the writer thread, which every write waits for, only writes.
        let rows: Vec<_> = snapshots
            .into_iter()
            .map(|s| (s.stream_id, s.version, timestamp(s.updated_at), s.customer_id, s.state.to_string()))
            .collect();
        self.write(move |conn| {
            let mut upsert = conn
                .prepare_cached(
                    "INSERT INTO snapshots (stream_id, version, updated_at, customer_id, state)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (stream_id) DO UPDATE SET
                        version = excluded.version, updated_at = excluded.updated_at,
                        customer_id = excluded.customer_id, state = excluded.state
                     WHERE excluded.version > snapshots.version",
                )
                .map_err(unavailable)?;
            for (stream_id, version, updated_at, customer_id, state) in &rows {
                upsert.execute(params![stream_id, version, updated_at, customer_id, state]).map_err(unavailable)?;
            }
            Ok(())
        })
        .await
    }

    async fn recent_orders(&self, limit: usize) -> Result<Vec<Snapshot>, StoreError> {
        let rows = self
            .read(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT stream_id, version, updated_at, customer_id, state FROM snapshots
                     WHERE customer_id IS NOT NULL ORDER BY updated_at DESC LIMIT ?1",
                )?;
                let rows = statement.query_map(params![limit as i64], snapshot_row)?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        rows.into_iter().map(to_snapshot).collect()
    }

    async fn by_customer(&self, customer_id: &str, limit: usize) -> Result<Vec<Snapshot>, StoreError> {
        let customer_id = customer_id.to_string();
        let rows = self
            .read(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT stream_id, version, updated_at, customer_id, state FROM snapshots
                     WHERE customer_id = ?1 ORDER BY updated_at DESC LIMIT ?2",
                )?;
                let rows = statement.query_map(params![customer_id, limit as i64], snapshot_row)?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        rows.into_iter().map(to_snapshot).collect()
    }
}
