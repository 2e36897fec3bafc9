//! The single writer: one thread owns the write connection and commits the
//! jobs that queue up while the previous commit is being synced, all in one
//! transaction (group commit). Each job runs in its own savepoint, so a job
//! that fails leaves no trace while the others in its group still commit.
//! A job's caller hears back only after the commit is on disk.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use orderflow_pipeline::StoreError;
use rusqlite::Connection;
use tokio::sync::{oneshot, watch};

/// Jobs taken into one transaction at most.
const MAX_GROUP: usize = 512;

type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;
/// Called with the outcome of the commit that included the job.
type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;

pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

/// Upkeep the writer does by itself every so often, in a transaction of its
/// own between two groups (deleting what outlived its retention).
pub struct Housekeeping {
    pub every: Duration,
    pub work: Upkeep,
}

pub type Upkeep = Box<dyn FnMut(&Connection) -> rusqlite::Result<()> + Send>;

impl Writer {
    /// Starts the writer thread. `head` receives the highest event sequence
    /// number after every commit.
    pub fn start(conn: Connection, head: watch::Sender<u64>, housekeeping: Housekeeping) -> std::io::Result<Writer> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new().name("sqlite-writer".into()).spawn(move || run(conn, queue, head, housekeeping))?;
        Ok(Writer { jobs })
    }

    /// Runs `work` in the next group transaction; returns once it is durable.
    pub async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = in_savepoint(conn, work);
            Box::new(move |commit| {
                let outcome = match (result, commit) {
                    (Err(error), _) => Err(error),
                    (Ok(_), Err(error)) => Err(StoreError::Unavailable(format!("commit failed: {error}"))),
                    (Ok(value), Ok(())) => Ok(value),
                };
                let _ = reply.send(outcome);
            })
        });
        self.jobs.send(job).map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        answer.await.map_err(|_| StoreError::Unavailable("the store could not run the write".into()))?
    }
}

/// Runs a statement through the statement cache (these run for every job).
fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn in_savepoint<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    execute(conn, "SAVEPOINT job").map_err(unavailable)?;
    let result = work(conn);
    if result.is_err() {
        execute(conn, "ROLLBACK TO job").map_err(unavailable)?;
    }
    execute(conn, "RELEASE job").map_err(unavailable)?;
    result
}

fn run(conn: Connection, queue: mpsc::Receiver<Job>, head: watch::Sender<u64>, mut housekeeping: Housekeeping) {
    let mut upkeep_due = Instant::now() + housekeeping.every;
    loop {
        if Instant::now() >= upkeep_due {
            upkeep_due = Instant::now() + housekeeping.every;
            let done = execute(&conn, "BEGIN IMMEDIATE")
                .and_then(|()| (housekeeping.work)(&conn))
                .and_then(|()| execute(&conn, "COMMIT"));
            if let Err(error) = done {
                let _ = execute(&conn, "ROLLBACK");
                tracing::warn!(%error, "store upkeep failed; trying again later");
            }
        }
        let first = match queue.recv_timeout(upkeep_due.saturating_duration_since(Instant::now())) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        if let Err(error) = execute(&conn, "BEGIN IMMEDIATE") {
            // Dropping the jobs tells their callers the write did not happen.
            tracing::error!(%error, jobs = group.len(), "cannot begin a write transaction");
            continue;
        }
        let completions: Vec<Completion> = group.into_iter().map(|job| job(&conn)).collect();
        let commit = execute(&conn, "COMMIT").map_err(|e| e.to_string());
        if commit.is_err() {
            let _ = execute(&conn, "ROLLBACK");
        }
        for complete in completions {
            complete(commit.clone());
        }
        let newest = conn.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM events");
        match newest.and_then(|mut s| s.query_row([], |row| row.get::<_, u64>(0))) {
            Ok(seq) => head.send_if_modified(|old| std::mem::replace(old, seq) != seq),
            Err(error) => {
                tracing::error!(%error, "cannot read the feed's head");
                false
            }
        };
    }
    tracing::debug!("sqlite writer stopped");
}

pub fn unavailable(error: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(error.to_string())
}
