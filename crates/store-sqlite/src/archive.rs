//! The archive of the embedded store: `archive.db` beside `orderflow.db`,
//! one row per archived piece of a stream (its events deflated together).
//!
//! Archiving copies a stream's events into the archive and commits (its own
//! connection, fsynced), then deletes them from the hot store through the
//! writer — never an event a change-feed consumer has not read yet, so no
//! consumer misses one. Two commits in that order: a crash in between
//! leaves the events in both places, which reads merge, and the next run
//! deletes them. The readers attach the archive, so `read_stream` finds
//! archived events in the same read.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orderflow_pipeline::archive::{pack, unpack};
use orderflow_pipeline::ports::{Archive, ArchiveCandidate, ClosedWhen, EventRecord};
use orderflow_pipeline::StoreError;
use rusqlite::{params, params_from_iter, Connection};

use crate::columns::timestamp;
use crate::events::{event_row, EVENT_COLUMNS, RANGE};
use crate::writer::unavailable;
use crate::SqliteStore;

/// The file name of the archive inside the data directory.
pub const ARCHIVE_FILE: &str = "archive.db";

/// The schema name readers attach the archive under.
pub(crate) const ATTACHED: &str = "archive";

// A rowid table: pieces are a kilobyte or more, which a table b-tree keeps
// on its pages whole and in the order written (WITHOUT ROWID would spill
// each past ~1 KB to an overflow page of its own, and split pages in key
// order: three times the bytes).
const TABLES: &str = "
CREATE TABLE IF NOT EXISTS chunks (
    stream_id   TEXT    NOT NULL,
    first_idx   INTEGER NOT NULL,
    last_idx    INTEGER NOT NULL,
    events      BLOB    NOT NULL,         -- the events, JSON deflated
    archived_at TEXT    NOT NULL,
    UNIQUE (stream_id, first_idx, last_idx)
);
";

pub(crate) fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(ARCHIVE_FILE)
}

/// Opens (creating if needed) the archive for writing: durable before a
/// write returns, as the store is.
pub(crate) fn open(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
        .and_then(|()| conn.execute_batch(TABLES))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(conn)
}

/// The archived events of a stream from `from_index` on (a reader's
/// connection, with the archive attached).
pub(crate) fn archived_events(
    conn: &Connection,
    stream_id: &str,
    from_index: i64,
) -> rusqlite::Result<Result<Vec<EventRecord>, StoreError>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT events FROM {ATTACHED}.chunks WHERE stream_id = ?1 AND last_idx >= ?2 ORDER BY first_idx"
    ))?;
    let packed = statement.query_map(params![stream_id, from_index], |row| row.get::<_, Vec<u8>>(0))?;
    let mut events = Vec::new();
    for chunk in packed {
        match unpack(&chunk?) {
            Ok(unpacked) => events.extend(unpacked),
            Err(error) => return Ok(Err(error)),
        }
    }
    Ok(Ok(events))
}

#[async_trait]
impl Archive for SqliteStore {
    async fn archivable(
        &self,
        before: DateTime<Utc>,
        closed: ClosedWhen,
        limit: usize,
    ) -> Result<Vec<ArchiveCandidate>, StoreError> {
        let (filter, arguments) = candidates(before, closed);
        self.read(move |conn| {
            // The partial index `snapshots_to_archive` holds exactly the
            // order read models not archived up to their last event, oldest
            // first: a round reads the first `limit` closed ones.
            let sql = format!("SELECT stream_id, version {filter} ORDER BY updated_at LIMIT {limit}");
            let mut statement = conn.prepare_cached(&sql)?;
            let found = statement.query_map(params_from_iter(arguments), |row| {
                Ok(ArchiveCandidate { stream_id: row.get(0)?, version: row.get(1)? })
            })?;
            found.collect()
        })
        .await
    }

    async fn count_archivable(&self, before: DateTime<Utc>, closed: ClosedWhen) -> Result<u64, StoreError> {
        let (filter, arguments) = candidates(before, closed);
        self.read(move |conn| {
            conn.prepare_cached(&format!("SELECT COUNT(*) {filter}"))?
                .query_row(params_from_iter(arguments), |row| row.get(0))
        })
        .await
    }

    async fn archive(&self, streams: &[(String, u64)]) -> Result<Vec<u64>, StoreError> {
        let streams = streams.to_vec();
        let copied = streams.clone();
        let hot = self
            .read(move |conn| {
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE stream_id = ?1 AND idx < ?2 ORDER BY idx"
                ))?;
                copied
                    .iter()
                    .map(|(stream_id, through)| {
                        statement.query_map(params![stream_id, through], event_row)?.collect::<Result<Vec<_>, _>>()
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let mut chunks = Vec::new();
        for rows in hot {
            let events = rows.into_iter().map(|(_, record)| record).collect::<Result<Vec<_>, _>>()?;
            if let (Some(first), Some(last)) = (events.first(), events.last()) {
                chunks.push((first.stream_id.clone(), first.index, last.index, pack(&events)?));
            }
        }
        self.copy_to_archive(chunks).await?;
        self.write(move |conn| delete_archived(conn, &streams).map_err(unavailable)).await
    }
}

/// The `FROM ... WHERE` of the read models to archive, and its arguments.
fn candidates(before: DateTime<Utc>, closed: ClosedWhen) -> (String, Vec<String>) {
    let marks = vec!["?"; closed.values.len()].join(", ");
    let filter = format!(
        "FROM snapshots WHERE customer_id IS NOT NULL AND COALESCE(archived_through, 0) < version - 1
           AND updated_at < ? AND json_extract(state, ?) IN ({marks})"
    );
    let mut arguments = vec![timestamp(before), format!("$.{}", closed.field)];
    arguments.extend(closed.values.iter().map(|value| value.to_string()));
    (filter, arguments)
}

impl SqliteStore {
    /// Writes archived pieces in one durable transaction; a piece stored
    /// before (an earlier run that stopped halfway) is kept as it is.
    async fn copy_to_archive(&self, chunks: Vec<(String, u64, u64, Vec<u8>)>) -> Result<(), StoreError> {
        if chunks.is_empty() {
            return Ok(());
        }
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.archive.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let transaction = conn.transaction()?;
            {
                let mut insert = transaction.prepare_cached(
                    "INSERT OR IGNORE INTO chunks (stream_id, first_idx, last_idx, events, archived_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                let now = timestamp(Utc::now());
                for (stream_id, first, last, events) in &chunks {
                    insert.execute(params![stream_id, first, last, events, now])?;
                }
            }
            transaction.commit()
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("archive task failed: {e}")))?
        .map_err(unavailable)
    }
}

/// Deletes the streams' events below `through` that every change-feed
/// consumer has read, and notes on each read model whose events below
/// `through` are all gone that it is archived that far.
fn delete_archived(conn: &Connection, streams: &[(String, u64)]) -> rusqlite::Result<Vec<u64>> {
    // No consumer ever read the feed: nothing to wait for (one that starts
    // later from the beginning meets each stream's last event, still hot).
    let read_by_all: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(MIN(COALESCE(CAST(continuation AS INTEGER), 0)), 9223372036854775807)
             FROM leases WHERE range = ?1",
        )?
        .query_row([RANGE], |row| row.get(0))?;
    let mut deleted = Vec::with_capacity(streams.len());
    for (stream_id, through) in streams {
        let gone = conn
            .prepare_cached("DELETE FROM events WHERE stream_id = ?1 AND idx < ?2 AND seq <= ?3")?
            .execute(params![stream_id, through, read_by_all])?;
        deleted.push(gone as u64);
        let left: bool = conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM events WHERE stream_id = ?1 AND idx < ?2)")?
            .query_row(params![stream_id, through], |row| row.get(0))?;
        if !left {
            conn.prepare_cached(
                "UPDATE snapshots SET archived_through = ?2
                 WHERE stream_id = ?1 AND COALESCE(archived_through, 0) < ?2",
            )?
            .execute(params![stream_id, through])?;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use orderflow_pipeline::ports::{Append, EventStore, Lease, LeaseStore};
    use serde_json::json;

    use super::*;

    async fn stream_of(store: &SqliteStore, stream_id: &str, count: u64) {
        let events = (0..count)
            .map(|index| EventRecord {
                event_id: uuid::Uuid::new_v4(),
                stream_id: stream_id.into(),
                index,
                event_type: "Placed".into(),
                schema_version: 1,
                data: json!({"n": index}),
                time: Utc::now(),
                correlation_id: "c".into(),
                causation_id: "c".into(),
                message_id: format!("m{index}"),
            })
            .collect();
        let append = Append {
            stream_id: stream_id.into(),
            expected_version: 0,
            events,
            state: json!({}),
            idempotency: Vec::new(),
        };
        store.append(append).await.expect("append");
    }

    fn count(path: &Path, sql: &str) -> i64 {
        Connection::open(path).expect("open").query_row(sql, [], |row| row.get(0)).expect("count")
    }

    #[tokio::test]
    async fn events_leave_the_hot_file_for_the_archive_once_every_consumer_read_them() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let store = SqliteStore::open(dir.path()).expect("store");
        stream_of(&store, "Order-a", 4).await;
        stream_of(&store, "Order-b", 4).await;
        // One consumer has read up to `Order-a`'s events (seq 1..=4) only.
        let lease = Lease {
            consumer: "publish-events".into(),
            range: RANGE.into(),
            continuation: Some("4".into()),
            owner: None,
            expires_at: Utc::now(),
            requested_by: None,
        };
        store.put(&lease, None).await.expect("lease");
        let moved = store.archive(&[("Order-a".into(), 3), ("Order-b".into(), 3)]).await.expect("archive");
        assert_eq!(moved, [3, 0], "Order-b's events wait for the consumer");
        let hot =
            |stream: &str| count(store.path(), &format!("SELECT COUNT(*) FROM events WHERE stream_id = '{stream}'"));
        assert_eq!((hot("Order-a"), hot("Order-b")), (1, 4));
        let archive = path(dir.path());
        assert_eq!(count(&archive, "SELECT COUNT(*) FROM chunks"), 2, "both copied, Order-b's again next time");
        assert_eq!(store.read_stream("Order-b", 0, 10).await.expect("read").len(), 4, "each event once");

        let lease = store.lease("publish-events", RANGE).await.expect("read").expect("lease");
        store.put(&Lease { continuation: Some("8".into()), ..lease.value }, Some(&lease.version)).await.expect("on");
        assert_eq!(store.archive(&[("Order-b".into(), 3)]).await.expect("archive"), [3]);
        assert_eq!(hot("Order-b"), 1);
        let read = store.read_stream("Order-b", 0, 10).await.expect("read");
        assert_eq!(read.iter().map(|e| e.index).collect::<Vec<_>>(), [0, 1, 2, 3]);
    }
}
