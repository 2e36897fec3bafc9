//! The single writer: one thread owns the write connection and commits the
//! jobs that queue up while the previous commit is being synced, all in one
//! transaction (group commit). Each job runs in its own savepoint, so a job
//! that fails leaves no trace while the others in its group still commit.
//! A job's caller hears back only after the commit is on disk. A job that
//! panics fails alone; a savepoint statement that fails fails the group.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use orderflow_pipeline::StoreError;
use rusqlite::Connection;
use tokio::sync::{oneshot, watch};

/// Jobs taken into one transaction at most.
const MAX_GROUP: usize = 512;

/// A job runs in the group's transaction and leaves its completion, and
/// whether the transaction is still sound (its savepoint statements worked).
type Job = Box<dyn FnOnce(&Connection) -> (Completion, bool) + Send>;
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
        let (job, answer) = job(work);
        self.jobs.send(job).map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        answer.await.map_err(|_| StoreError::Unavailable("the store could not run the write".into()))?
    }
}

/// `work` as a job of the writer, and where its outcome is told.
fn job<T, F>(work: F) -> (Job, oneshot::Receiver<Result<T, StoreError>>)
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    let job: Job = Box::new(move |conn| {
        let (result, sound) = in_savepoint(conn, work);
        let complete: Completion = Box::new(move |commit| {
            let outcome = match (result, commit) {
                (Err(error), _) => Err(error),
                (Ok(_), Err(error)) => Err(StoreError::Unavailable(format!("commit failed: {error}"))),
                (Ok(value), Ok(())) => Ok(value),
            };
            let _ = reply.send(outcome);
        });
        (complete, sound)
    });
    (job, answer)
}

/// Runs a statement through the statement cache (these run for every job).
fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs `work` in a savepoint: undone alone if it fails (or panics: a bug,
/// which must not take the writer down). False beside the result when a
/// savepoint statement itself failed: the transaction's state is unknown
/// then, and the whole group must be rolled back.
fn in_savepoint<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> (Result<T, StoreError>, bool) {
    if let Err(error) = execute(conn, "SAVEPOINT job") {
        return (Err(unavailable(error)), false);
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(conn))).unwrap_or_else(|_| {
        tracing::error!("a write failed unexpectedly (it panicked); its group goes on without it");
        Err(StoreError::Unavailable("the write failed unexpectedly".into()))
    });
    if result.is_err() {
        if let Err(error) = execute(conn, "ROLLBACK TO job") {
            return (Err(unavailable(error)), false);
        }
    }
    match execute(conn, "RELEASE job") {
        Ok(()) => (result, true),
        Err(error) => (Err(unavailable(error)), false),
    }
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
        metrics::histogram!("orderflow_store_group_jobs").record(group.len() as f64);
        if let Err(error) = execute(&conn, "BEGIN IMMEDIATE") {
            // Dropping the jobs tells their callers the write did not happen.
            tracing::error!(%error, jobs = group.len(), "cannot begin a write transaction");
            continue;
        }
        let mut sound = true;
        let completions: Vec<Completion> = group
            .into_iter()
            .map(|job| {
                let (completion, job_sound) = job(&conn);
                sound &= job_sound;
                completion
            })
            .collect();
        // Committing after a savepoint statement failed could keep writes
        // whose callers were told they failed: all or nothing, then.
        let commit = if sound {
            execute(&conn, "COMMIT").map_err(|e| e.to_string())
        } else {
            Err("a savepoint could not be rolled back or released: the whole group was rolled back".to_string())
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(value: i64) -> impl FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static {
        move |conn| conn.execute("INSERT INTO t VALUES (?1)", [value]).map(|_| ()).map_err(unavailable)
    }

    /// Runs `jobs` as one group (the writer takes every queued job into one
    /// transaction) on a fresh database; the values committed.
    fn one_group(jobs: Vec<Job>) -> Vec<i64> {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let path = dir.path().join("writer.db");
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch("CREATE TABLE t (v INTEGER); CREATE TABLE events (seq INTEGER PRIMARY KEY);")
            .expect("tables");
        let (sender, queue) = mpsc::channel();
        for job in jobs {
            sender.send(job).expect("queued");
        }
        drop(sender);
        let (head, _) = watch::channel(0);
        let upkeep = Housekeeping { every: Duration::from_secs(3600), work: Box::new(|_| Ok(())) };
        run(conn, queue, head, upkeep);
        let conn = Connection::open(&path).expect("open again");
        let mut statement = conn.prepare("SELECT v FROM t ORDER BY v").expect("select");
        let values = statement.query_map([], |row| row.get(0)).expect("rows").collect::<Result<_, _>>();
        values.expect("values")
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone_and_the_group_commits() {
        let (first, first_done) = job(insert(1));
        let (panics, panicked) = job(|_: &Connection| -> Result<(), StoreError> { panic!("a bug") });
        let (last, last_done) = job(insert(3));
        assert_eq!(one_group(vec![first, panics, last]), [1, 3]);
        assert!(first_done.await.expect("told").is_ok());
        assert!(panicked.await.expect("told").is_err());
        assert!(last_done.await.expect("told").is_ok());
    }

    #[tokio::test]
    async fn a_failed_savepoint_statement_rolls_back_and_fails_the_whole_group() {
        let (first, first_done) = job(insert(1));
        // Releases the job's savepoint itself: the writer's own RELEASE fails.
        let (breaks, broken) = job(|conn: &Connection| execute(conn, "RELEASE job").map_err(unavailable));
        let (last, last_done) = job(insert(3));
        assert!(one_group(vec![first, breaks, last]).is_empty(), "nothing of the group was kept");
        for done in [first_done, broken, last_done] {
            assert!(done.await.expect("told").is_err(), "every caller hears the group failed");
        }
    }
}
