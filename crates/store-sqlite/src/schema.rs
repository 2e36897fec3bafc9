//! The tables of the embedded store, the settings that make it durable, and
//! the migrations from the schemas earlier versions wrote.

use rusqlite::Connection;

const VERSION: i64 = 4;

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq            INTEGER PRIMARY KEY,   -- the change feed: global, gap-free
    stream_id      TEXT    NOT NULL,
    idx            INTEGER NOT NULL,      -- position in the stream, from 0
    event_id       TEXT    NOT NULL,
    type           TEXT    NOT NULL,
    data           TEXT    NOT NULL,
    time           TEXT    NOT NULL,
    correlation_id TEXT    NOT NULL,
    causation_id   TEXT    NOT NULL,
    message_id     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL DEFAULT 1, -- of the type's shape (contract.rs)
    UNIQUE (stream_id, idx)
);
CREATE TABLE IF NOT EXISTS tips (
    stream_id TEXT PRIMARY KEY,
    version   INTEGER NOT NULL,           -- number of events in the stream
    state     TEXT    NOT NULL
) WITHOUT ROWID;
-- What a keyed command answered, in the stream it changed (kept for the key retention).
CREATE TABLE IF NOT EXISTS idempotency (
    stream_id   TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    receipt     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,         -- Unix seconds (with microseconds: columns::key_age_now)
    PRIMARY KEY (stream_id, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_by_age ON idempotency (created_at);
-- Which request a key that may name any stream was first used for.
CREATE TABLE IF NOT EXISTS key_claims (
    key         TEXT    PRIMARY KEY,
    fingerprint TEXT    NOT NULL,
    stream_id   TEXT    NOT NULL,
    created_at  INTEGER NOT NULL          -- Unix seconds (with microseconds: columns::key_age_now)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS key_claims_by_age ON key_claims (created_at);
CREATE TABLE IF NOT EXISTS snapshots (
    stream_id   TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    updated_at  TEXT    NOT NULL,
    customer_id TEXT,
    state       TEXT    NOT NULL,
    archived_through INTEGER              -- events below this index are in the archive
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS snapshots_by_customer ON snapshots (customer_id, updated_at) WHERE customer_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS snapshots_of_orders ON snapshots (updated_at) WHERE customer_id IS NOT NULL;
-- Orders with events to archive (all but the last of each).
CREATE INDEX IF NOT EXISTS snapshots_to_archive ON snapshots (updated_at)
    WHERE customer_id IS NOT NULL AND COALESCE(archived_through, 0) < version - 1;
-- Change-feed leases: how far each consumer read each range, who reads it, until when.
CREATE TABLE IF NOT EXISTS leases (
    consumer     TEXT NOT NULL,
    range        TEXT NOT NULL,
    continuation TEXT,
    owner        TEXT,
    expires_at   TEXT NOT NULL,
    requested_by TEXT,
    version      TEXT NOT NULL,           -- changes with every write
    PRIMARY KEY (consumer, range)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS refused_reactions (
    id       TEXT PRIMARY KEY,
    time     TEXT NOT NULL,
    refusal  TEXT NOT NULL                -- JSON
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refused_reactions_by_time ON refused_reactions (time);
-- Streams a consumer could not handle, and how far their events wait.
CREATE TABLE IF NOT EXISTS parked_streams (
    consumer  TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    parked    TEXT NOT NULL,              -- JSON
    version   TEXT NOT NULL,              -- changes with every write
    PRIMARY KEY (consumer, stream_id)
) WITHOUT ROWID;
-- Deadlines of streams, until they have passed and been handled.
CREATE TABLE IF NOT EXISTS timers (
    stream_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    due_at    TEXT NOT NULL,              -- RFC 3339, microseconds, UTC: sorts as time
    timer     TEXT NOT NULL,              -- JSON
    PRIMARY KEY (stream_id, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS timers_by_due ON timers (due_at);
CREATE TABLE IF NOT EXISTS topic_messages (
    topic     TEXT    NOT NULL,
    offset    INTEGER NOT NULL,
    key       TEXT,
    headers   TEXT    NOT NULL,           -- JSON [[name, base64 value], ...]
    value     BLOB    NOT NULL,
    timestamp TEXT    NOT NULL,
    PRIMARY KEY (topic, offset)
) WITHOUT ROWID;
";

/// Schema 1 → 2: idempotency records get their age (those written before
/// count from the upgrade, so they last a whole retention), checkpoints
/// become leases.
fn from_1(conn: &Connection) -> rusqlite::Result<()> {
    let now = chrono::Utc::now().timestamp();
    conn.execute_batch(&format!(
        "ALTER TABLE idempotency ADD COLUMN created_at INTEGER NOT NULL DEFAULT {now};
         CREATE TABLE IF NOT EXISTS leases (
             consumer TEXT NOT NULL, range TEXT NOT NULL, continuation TEXT, owner TEXT,
             expires_at TEXT NOT NULL, requested_by TEXT, version TEXT NOT NULL,
             PRIMARY KEY (consumer, range)
         ) WITHOUT ROWID;
         INSERT INTO leases (consumer, range, continuation, expires_at, version)
             SELECT consumer, range, continuation, '1970-01-01T00:00:00.000000Z', 'migrated' FROM checkpoints;
         DROP TABLE checkpoints;"
    ))
}

/// Schema 2 → 3: read models note how far their stream is archived.
fn from_2(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("ALTER TABLE snapshots ADD COLUMN archived_through INTEGER")
}

/// Schema 3 → 4: events carry the version of their type's shape; all
/// stored before are version 1.
fn from_3(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("ALTER TABLE events ADD COLUMN schema_version INTEGER NOT NULL DEFAULT 1")
}

/// Sets the durability pragmas and creates (or migrates to) the tables of
/// this version.
pub fn prepare(conn: &Connection) -> Result<(), String> {
    prepare_tables(conn).map_err(|e| e.to_string())?.map_err(|newer| {
        format!("the store was written by a newer orderflow (schema {newer}, this build knows {VERSION})")
    })
}

/// `Ok(Err(version))` when the file has a newer schema than this build.
fn prepare_tables(conn: &Connection) -> rusqlite::Result<Result<(), i64>> {
    // WAL + synchronous=FULL: every commit is fsynced before it returns.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > VERSION {
        return Ok(Err(version));
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let migrated = (|| {
        if version == 1 {
            from_1(conn)?;
        }
        if (1..=2).contains(&version) {
            from_2(conn)?;
        }
        if (1..=3).contains(&version) {
            from_3(conn)?;
        }
        conn.execute_batch(TABLES)?;
        conn.pragma_update(None, "user_version", VERSION)
    })();
    match migrated {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(error);
        }
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_of_schema_1_keeps_its_events_keys_positions_and_read_models() {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(
            "CREATE TABLE idempotency (stream_id TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,
                 receipt TEXT NOT NULL, PRIMARY KEY (stream_id, key)) WITHOUT ROWID;
             CREATE TABLE checkpoints (consumer TEXT NOT NULL, range TEXT NOT NULL, continuation TEXT NOT NULL,
                 updated_at TEXT NOT NULL, PRIMARY KEY (consumer, range)) WITHOUT ROWID;
             CREATE TABLE snapshots (stream_id TEXT PRIMARY KEY, version INTEGER NOT NULL, updated_at TEXT NOT NULL,
                 customer_id TEXT, state TEXT NOT NULL) WITHOUT ROWID;
             CREATE TABLE events (seq INTEGER PRIMARY KEY, stream_id TEXT NOT NULL, idx INTEGER NOT NULL,
                 event_id TEXT NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, time TEXT NOT NULL,
                 correlation_id TEXT NOT NULL, causation_id TEXT NOT NULL, message_id TEXT NOT NULL,
                 UNIQUE (stream_id, idx));
             INSERT INTO events VALUES (1, 'Order-1', 0, 'e', 'Placed', '{}', 't', 'c', 'c', 'm');
             INSERT INTO snapshots VALUES ('Order-1', 3, '2026-01-01T00:00:00Z', 'c', '{}');
             INSERT INTO idempotency VALUES ('Sku-A', 'k', 'fp', '{}');
             INSERT INTO checkpoints VALUES ('fulfillment', 'all', '42', '2026-01-01T00:00:00Z');
             PRAGMA user_version = 1;",
        )
        .expect("schema 1");
        prepare(&conn).expect("migrate");
        let age: i64 = conn.query_row("SELECT created_at FROM idempotency", [], |r| r.get(0)).expect("record");
        assert!(age > 1_700_000_000, "dated from the upgrade: {age}");
        let position: String = conn
            .query_row("SELECT continuation FROM leases WHERE consumer = 'fulfillment'", [], |r| r.get(0))
            .expect("lease");
        assert_eq!(position, "42");
        let archived: Option<i64> =
            conn.query_row("SELECT archived_through FROM snapshots", [], |r| r.get(0)).expect("read model");
        assert_eq!(archived, None, "read models not archived yet");
        let shape: i64 = conn.query_row("SELECT schema_version FROM events", [], |r| r.get(0)).expect("event");
        assert_eq!(shape, 1, "events stored before versions are version 1");
        prepare(&conn).expect("a second open changes nothing");
    }
}
