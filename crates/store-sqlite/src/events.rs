//! The event store and its change feed on SQLite.

use std::time::Duration;

use async_trait::async_trait;
use orderflow_pipeline::ports::{
    Append, AppendOutcome, ChangeFeed, EventRecord, EventStore, FeedPage, FeedPosition, IdempotencyRecord, KeyClaim,
    Loaded, PlannedRange, StartFrom, StreamIds, Tip,
};
use orderflow_pipeline::StoreError;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::columns::{key_age_now, parse_json, timestamp};
use crate::writer::unavailable;
use crate::{archive, SqliteStore};

/// The embedded store's feed is one range: the global sequence.
pub(crate) const RANGE: &str = "all";

pub(crate) const EVENT_COLUMNS: &str =
    "seq, stream_id, idx, event_id, type, data, time, correlation_id, causation_id, message_id, schema_version";

#[async_trait]
impl EventStore for SqliteStore {
    async fn load(&self, stream_id: &str, idempotency_key: Option<&str>) -> Result<Loaded, StoreError> {
        let stream_id = stream_id.to_string();
        let key = idempotency_key.map(str::to_string);
        let cutoff = self.key_cutoff();
        let (tip, prior) = self
            .read(move |conn| {
                let tip = conn
                    .query_row("SELECT version, state FROM tips WHERE stream_id = ?1", [&stream_id], |row| {
                        Ok((row.get::<_, u64>(0)?, row.get::<_, String>(1)?))
                    })
                    .optional()?;
                let prior = match key {
                    Some(key) => find_idempotency(conn, &stream_id, &key, cutoff)?,
                    None => None,
                };
                Ok((tip, prior))
            })
            .await?;
        let tip = match tip {
            Some((version, state)) => Some(Tip { version, state: parse_json(&state)? }),
            None => None,
        };
        let prior = prior.map(|(key, fingerprint, receipt)| -> Result<_, StoreError> {
            Ok(IdempotencyRecord { key, fingerprint, receipt: parse_json(&receipt)? })
        });
        Ok(Loaded { tip, prior: prior.transpose()? })
    }

    async fn append(&self, append: Append) -> Result<AppendOutcome, StoreError> {
        let cutoff = self.key_cutoff();
        let append = EncodedAppend::of(append)?;
        self.write(move |conn| append_events(conn, &append, cutoff)).await
    }

    async fn read_stream(&self, stream_id: &str, from_index: u64, max: usize) -> Result<Vec<EventRecord>, StoreError> {
        let stream_id = stream_id.to_string();
        // SQLite integers are signed; no stream reaches i64::MAX.
        let from = i64::try_from(from_index).unwrap_or(i64::MAX);
        let (hot, archived) = self
            .read(move |conn| {
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ?1 AND idx >= ?2 ORDER BY idx LIMIT ?3"
                ))?;
                let hot = statement.query_map(params![stream_id, from, max as i64], event_row)?;
                let hot = hot.collect::<Result<Vec<_>, _>>()?;
                // Only a stream whose first hot event is not the one asked
                // for may have been archived.
                let whole =
                    hot.first().and_then(|(_, first)| first.as_ref().ok()).is_some_and(|e| e.index == from_index);
                let archived = if whole { None } else { Some(archive::archived_events(conn, &stream_id, from)?) };
                Ok((hot, archived))
            })
            .await?;
        let hot = hot.into_iter().map(|(_, record)| record).collect::<Result<Vec<_>, _>>()?;
        match archived {
            None => Ok(hot),
            Some(archived) => Ok(orderflow_pipeline::archive::merge(archived?, hot, from_index, max)),
        }
    }

    async fn claim(&self, claim: &KeyClaim) -> Result<Option<KeyClaim>, StoreError> {
        let claim = claim.clone();
        let cutoff = self.key_cutoff();
        self.write(move |conn| {
            let earlier = conn
                .prepare_cached("SELECT fingerprint, stream_id FROM key_claims WHERE key = ?1 AND created_at >= ?2")
                .and_then(|mut s| {
                    s.query_row(params![claim.key, cutoff], |row| Ok((row.get(0)?, row.get(1)?))).optional()
                })
                .map_err(unavailable)?;
            if let Some((fingerprint, stream_id)) = earlier {
                return Ok(Some(KeyClaim { key: claim.key.clone(), fingerprint, stream_id }));
            }
            conn.prepare_cached(
                "INSERT INTO key_claims (key, fingerprint, stream_id, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint,
                    stream_id = excluded.stream_id, created_at = excluded.created_at",
            )
            .and_then(|mut s| s.execute(params![claim.key, claim.fingerprint, claim.stream_id, key_age_now()]))
            .map_err(unavailable)?;
            Ok(None)
        })
        .await
    }

    async fn stream_ids(&self, after: Option<&str>, max: usize) -> Result<StreamIds, StoreError> {
        let after = after.unwrap_or_default().to_string();
        let ids = self
            .read(move |conn| {
                let mut statement =
                    conn.prepare_cached("SELECT stream_id FROM tips WHERE stream_id > ?1 ORDER BY stream_id LIMIT ?2")?;
                let ids = statement.query_map(params![after, max as i64], |row| row.get(0))?;
                ids.collect::<Result<Vec<String>, _>>()
            })
            .await?;
        Ok(StreamIds::in_id_order(ids, max))
    }
}

type IdempotencyRow = (String, String, String);

/// A stream's record of `key`, unless older than `cutoff` (Unix seconds).
fn find_idempotency(
    conn: &Connection,
    stream_id: &str,
    key: &str,
    cutoff: i64,
) -> rusqlite::Result<Option<IdempotencyRow>> {
    conn.prepare_cached(
        "SELECT key, fingerprint, receipt FROM idempotency WHERE stream_id = ?1 AND key = ?2 AND created_at >= ?3",
    )?
    .query_row(params![stream_id, key, cutoff], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
    .optional()
}

impl SqliteStore {
    /// Records and claims written before this (Unix seconds) no longer count.
    fn key_cutoff(&self) -> i64 {
        chrono::Utc::now().timestamp() - self.inner.key_retention.as_secs() as i64
    }
}

/// Deletes idempotency records and key claims past the retention, a chunk
/// at a time (the writer runs this between groups).
pub(crate) fn expire_keys(conn: &Connection, retention: std::time::Duration) -> rusqlite::Result<()> {
    let cutoff = chrono::Utc::now().timestamp() - retention.as_secs() as i64;
    let expired = conn
        .prepare_cached(
            "DELETE FROM idempotency WHERE (stream_id, key) IN
                (SELECT stream_id, key FROM idempotency WHERE created_at < ?1 LIMIT 20000)",
        )?
        .execute([cutoff])?;
    let unclaimed = conn
        .prepare_cached(
            "DELETE FROM key_claims WHERE key IN (SELECT key FROM key_claims WHERE created_at < ?1 LIMIT 20000)",
        )?
        .execute([cutoff])?;
    if expired + unclaimed > 0 {
        tracing::debug!(expired, unclaimed, "idempotency records past the retention deleted");
    }
    Ok(())
}

/// An append with its columns already as text: encoded on the caller's
/// thread, so that the writer thread, which every write waits for, only
/// writes.
struct EncodedAppend {
    stream_id: String,
    expected_version: u64,
    events: Vec<EncodedEvent>,
    state: String,
    /// Key, fingerprint and receipt of each idempotency record.
    idempotency: Vec<(String, String, String)>,
}

struct EncodedEvent {
    index: u64,
    event_id: String,
    event_type: String,
    data: String,
    time: String,
    correlation_id: String,
    causation_id: String,
    message_id: String,
    schema_version: u32,
}

impl EncodedAppend {
    fn of(append: Append) -> Result<EncodedAppend, StoreError> {
        let mut events = Vec::with_capacity(append.events.len());
        for (i, event) in append.events.into_iter().enumerate() {
            let index = append.expected_version + i as u64;
            if event.index != index || event.stream_id != append.stream_id {
                return Err(StoreError::Corrupt(format!("event {} does not follow {}", event.index, append.stream_id)));
            }
            events.push(EncodedEvent {
                index,
                event_id: event.event_id.to_string(),
                event_type: event.event_type,
                data: event.data.to_string(),
                time: timestamp(event.time),
                correlation_id: event.correlation_id,
                causation_id: event.causation_id,
                message_id: event.message_id,
                schema_version: event.schema_version,
            });
        }
        Ok(EncodedAppend {
            stream_id: append.stream_id,
            expected_version: append.expected_version,
            events,
            state: append.state.to_string(),
            idempotency: append
                .idempotency
                .into_iter()
                .map(|record| (record.key, record.fingerprint, record.receipt.to_string()))
                .collect(),
        })
    }
}

fn append_events(conn: &Connection, append: &EncodedAppend, cutoff: i64) -> Result<AppendOutcome, StoreError> {
    for (key, _, _) in &append.idempotency {
        if let Some((key, fingerprint, receipt)) =
            find_idempotency(conn, &append.stream_id, key, cutoff).map_err(unavailable)?
        {
            return Ok(AppendOutcome::Duplicate(IdempotencyRecord {
                key,
                fingerprint,
                receipt: parse_json(&receipt)?,
            }));
        }
    }
    let actual: u64 = conn
        .prepare_cached("SELECT version FROM tips WHERE stream_id = ?1")
        .and_then(|mut s| s.query_row([&append.stream_id], |row| row.get(0)).optional())
        .map_err(unavailable)?
        .unwrap_or(0);
    if actual != append.expected_version {
        return Ok(AppendOutcome::WrongVersion { actual });
    }
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO events (stream_id, idx, event_id, type, data, time, correlation_id, causation_id, message_id,
                schema_version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(unavailable)?;
    for event in &append.events {
        insert
            .execute(params![
                append.stream_id,
                event.index,
                event.event_id,
                event.event_type,
                event.data,
                event.time,
                event.correlation_id,
                event.causation_id,
                event.message_id,
                event.schema_version,
            ])
            .map_err(unavailable)?;
    }
    let version = append.expected_version + append.events.len() as u64;
    conn.prepare_cached(
        "INSERT INTO tips (stream_id, version, state) VALUES (?1, ?2, ?3)
         ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, state = excluded.state",
    )
    .and_then(|mut s| s.execute(params![append.stream_id, version, append.state]))
    .map_err(unavailable)?;
    // Replaces a record of the same key past the retention, if any.
    let mut record_key = conn
        .prepare_cached(
            "INSERT INTO idempotency (stream_id, key, fingerprint, receipt, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (stream_id, key) DO UPDATE SET fingerprint = excluded.fingerprint,
                receipt = excluded.receipt, created_at = excluded.created_at",
        )
        .map_err(unavailable)?;
    let now = key_age_now();
    for (key, fingerprint, receipt) in &append.idempotency {
        record_key.execute(params![append.stream_id, key, fingerprint, receipt, now]).map_err(unavailable)?;
    }
    Ok(AppendOutcome::Appended { version })
}

/// A row of `events` as (seq, record); a value that does not parse becomes a
/// conversion error rather than a panic.
pub(crate) fn event_row(row: &Row) -> rusqlite::Result<(u64, Result<EventRecord, StoreError>)> {
    let seq: u64 = row.get(0)?;
    let event_id: String = row.get(3)?;
    let data: String = row.get(5)?;
    let time: String = row.get(6)?;
    let record = (|| {
        Ok(EventRecord {
            stream_id: row.get(1).map_err(unavailable)?,
            index: row.get(2).map_err(unavailable)?,
            event_id: event_id.parse().map_err(|e| StoreError::Corrupt(format!("event id {event_id}: {e}")))?,
            event_type: row.get(4).map_err(unavailable)?,
            data: parse_json(&data)?,
            time: chrono::DateTime::parse_from_rfc3339(&time)
                .map_err(|e| StoreError::Corrupt(format!("event time {time}: {e}")))?
                .to_utc(),
            correlation_id: row.get(7).map_err(unavailable)?,
            causation_id: row.get(8).map_err(unavailable)?,
            message_id: row.get(9).map_err(unavailable)?,
            schema_version: row.get(10).map_err(unavailable)?,
        })
    })();
    Ok((seq, record))
}

#[async_trait]
impl ChangeFeed for SqliteStore {
    async fn layout(&self, held: &[FeedPosition]) -> Result<Vec<PlannedRange>, StoreError> {
        let continuation = held.iter().find(|p| p.range == RANGE).and_then(|p| p.continuation.clone());
        Ok(vec![PlannedRange { range: RANGE.to_string(), continuation, split_from: None }])
    }

    async fn start(&self, _range: &str, from: StartFrom) -> Result<String, StoreError> {
        let after: u64 = match from {
            StartFrom::Beginning => 0,
            // The head; 0 (the beginning) on an empty feed.
            StartFrom::Now => *self.inner.head.borrow(),
            StartFrom::Time(time) => {
                let time = timestamp(time);
                self.read(move |conn| {
                    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events WHERE time < ?1", [time], |row| row.get(0))
                })
                .await?
            }
        };
        Ok(after.to_string())
    }

    async fn read(&self, _range: &str, continuation: Option<&str>, max: usize) -> Result<FeedPage, StoreError> {
        let after = parse_position(continuation)?;
        let rows = self
            .read(move |conn| {
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
                ))?;
                let rows = statement.query_map(params![after, max as i64], event_row)?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let last = rows.last().map(|(seq, _)| *seq);
        let events = rows.into_iter().map(|(_, record)| record).collect::<Result<Vec<_>, _>>()?;
        let continuation = last.map(|seq| seq.to_string()).or_else(|| continuation.map(str::to_string));
        Ok(FeedPage { moved: !events.is_empty(), events, continuation })
    }

    async fn wait_for_changes(&self, positions: &[FeedPosition], timeout: Duration) {
        let mut head = self.inner.head.clone();
        let after = positions.iter().filter_map(|p| parse_position(p.continuation.as_deref()).ok()).min().unwrap_or(0);
        if *head.borrow_and_update() > after {
            return;
        }
        let _ = tokio::time::timeout(timeout, head.changed()).await;
    }
}

fn parse_position(continuation: Option<&str>) -> Result<u64, StoreError> {
    match continuation {
        None => Ok(0),
        Some(text) => text.parse().map_err(|_| StoreError::Corrupt(format!("not a feed position: {text:?}"))),
    }
}
