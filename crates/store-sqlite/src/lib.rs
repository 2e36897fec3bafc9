//! The embedded store: every port of the pipeline on one SQLite file.
//!
//! - events, with a global gap-free sequence (`seq`) that is the change feed;
//! - tips (version + folded state per stream) and idempotency records;
//! - idempotency records and key claims, kept for the key retention;
//! - snapshots (read models), change-feed leases, refused reactions, timers
//!   (deadlines by due time), and an embedded topic log;
//! - beside it, `archive.db`: the events of orders closed long ago
//!   ([`archive`]).
//!
//! WAL mode with `synchronous=FULL`: a write is on disk before it is
//! acknowledged. All writes go through one writer thread that group-commits
//! ([`writer`]); a thread of its own copies the WAL into the database
//! ([`checkpoints`]); reads use a small pool of connections.

mod archive;
mod checkpoints;
mod columns;
mod events;
mod leases;
mod read_models;
mod schema;
mod timers;
mod topics;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use orderflow_pipeline::ports::DEFAULT_KEY_RETENTION;
use orderflow_pipeline::StoreError;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::watch;

pub use archive::ARCHIVE_FILE;
pub use topics::TopicRecord;
use writer::{unavailable, Housekeeping, Writer};

/// The file name of the store inside the data directory.
pub const DB_FILE: &str = "orderflow.db";

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Writer,
    readers: r2d2::Pool<SqliteConnectionManager>,
    /// Copies the WAL into the database while it is open.
    _checkpointer: checkpoints::Checkpointer,
    /// The archive, for archiving (readers attach it).
    archive: std::sync::Mutex<Connection>,
    /// The highest event sequence number committed: change-feed consumers
    /// wait on it.
    head: watch::Receiver<u64>,
    /// How long idempotency records and key claims count.
    key_retention: Duration,
}

/// How often the writer deletes what outlived its retention.
const UPKEEP_EVERY: Duration = Duration::from_secs(10);

/// How long the embedded store keeps what it may forget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Idempotency records and key claims (older ones are ignored, then
    /// deleted).
    pub keys: Duration,
    /// Records of the embedded topic log (downstream messages and dead
    /// letters) older than this are deleted ...
    pub topic_age: Duration,
    /// ... and so are those beyond the newest this many of each topic.
    pub topic_records: u64,
}

/// Setting `OrderflowTopicRetention`: as Kafka's default `retention.ms`.
pub const DEFAULT_TOPIC_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Setting `OrderflowTopicRetentionRecords`: about 1 GB of downstream events.
pub const DEFAULT_TOPIC_RECORDS: u64 = 1_000_000;

impl Default for Retention {
    fn default() -> Self {
        Retention { keys: DEFAULT_KEY_RETENTION, topic_age: DEFAULT_TOPIC_AGE, topic_records: DEFAULT_TOPIC_RECORDS }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, with the default
    /// retention.
    pub fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(data_dir, Retention::default())
    }

    /// Opens the store, keeping what it may forget for `retention`.
    pub fn open_with(data_dir: &Path, retention: Retention) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", data_dir.display())))?;
        let path = data_dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        schema::prepare(&conn).map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        let head: u64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| row.get(0)).map_err(unavailable)?;
        let archive_path = archive::path(data_dir);
        let archive = archive::open(&archive_path).map_err(StoreError::Unavailable)?;
        let attach = archive_path.to_string_lossy().into_owned();
        let manager = SqliteConnectionManager::file(&path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI)
            .with_init(move |c| {
                c.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = ON;")?;
                c.execute(&format!("ATTACH DATABASE ?1 AS {}", archive::ATTACHED), [&attach]).map(drop)
            });
        let readers = r2d2::Pool::builder()
            .max_size(8)
            .min_idle(Some(1))
            .build(manager)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
        let (head_tx, head) = watch::channel(head);
        let upkeep = Housekeeping {
            every: UPKEEP_EVERY,
            work: Box::new(move |conn| {
                events::expire_keys(conn, retention.keys)?;
                leases::expire_heartbeats(conn)?;
                topics::trim(conn, retention.topic_age, retention.topic_records)
            }),
        };
        let (_checkpointer, restart_due) =
            checkpoints::Checkpointer::start(&path, &conn, checkpoints::EVERY).map_err(StoreError::Unavailable)?;
        let writer = Writer::start(conn, head_tx, upkeep, restart_due)
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        let archive = std::sync::Mutex::new(archive);
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                writer,
                _checkpointer,
                readers,
                archive,
                head,
                key_retention: retention.keys,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs a read on a pooled connection, off the async threads.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.readers.get().map_err(|e| StoreError::Unavailable(e.to_string()))?;
            work(&conn).map_err(unavailable)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
    }

    /// Runs `work` in the writer's next group (more than once if another
    /// write of the group fails: it must only touch the database).
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.writer.write(work).await
    }
}
