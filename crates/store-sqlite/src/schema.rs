//! The tables of the embedded store, and the settings that make it durable.

use rusqlite::Connection;

const VERSION: i64 = 1;

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
    UNIQUE (stream_id, idx)
);
CREATE TABLE IF NOT EXISTS tips (
    stream_id TEXT PRIMARY KEY,
    version   INTEGER NOT NULL,           -- number of events in the stream
    state     TEXT    NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency (
    stream_id   TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    receipt     TEXT NOT NULL,
    PRIMARY KEY (stream_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    stream_id   TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    updated_at  TEXT    NOT NULL,
    customer_id TEXT,
    state       TEXT    NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS snapshots_by_customer ON snapshots (customer_id, updated_at) WHERE customer_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS snapshots_of_orders ON snapshots (updated_at) WHERE customer_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS checkpoints (
    consumer     TEXT NOT NULL,
    range        TEXT NOT NULL,
    continuation TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (consumer, range)
) WITHOUT ROWID;
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

/// Sets the durability pragmas and creates the tables of this version.
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
    conn.execute_batch(TABLES)?;
    if version != VERSION {
        conn.pragma_update(None, "user_version", VERSION)?;
    }
    Ok(Ok(()))
}
