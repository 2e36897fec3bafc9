//! The single writer: one thread owns the write connection and commits the
//! jobs that queue up while the previous commit is being synced, all in one
//! transaction (group commit). A job that fails (or panics: a bug) must leave
//! no trace while the others still commit: the group's transaction is then
//! rolled back and the group run again without it. Jobs can run again
//! because they only read and write the database; failures are rare, so the
//! common case pays nothing for them (a savepoint per job copied every page
//! it touched into a statement journal). A job's caller hears back only
//! after the commit is on disk.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use orderflow_pipeline::StoreError;
use rusqlite::Connection;
use tokio::sync::{oneshot, watch};

use crate::checkpoints::{self, RestartDue};

/// Jobs taken into one transaction at most.
const MAX_GROUP: usize = 512;

/// A write, and where its outcome is told.
trait Job: Send {
    /// Runs the write in the group's transaction; false when it failed.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Tells the caller: its result, unless the commit failed.
    fn complete(self: Box<Self>, commit: Result<(), String>);
}

struct Write<T, F> {
    work: F,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Write<T, F>
where
    T: Send,
    F: FnMut(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.work)(conn))).unwrap_or_else(|_| {
                tracing::error!("a write failed unexpectedly (it panicked); its group goes on without it");
                Err(StoreError::Unavailable("the write failed unexpectedly".into()))
            });
        let ran = result.is_ok();
        self.result = Some(result);
        ran
    }

    fn complete(self: Box<Self>, commit: Result<(), String>) {
        let outcome = match (self.result, commit) {
            (None, _) => Err(StoreError::Unavailable("the write was not run".into())),
            (Some(Err(error)), _) => Err(error),
            (Some(Ok(_)), Err(error)) => Err(StoreError::Unavailable(format!("commit failed: {error}"))),
            (Some(Ok(value)), Ok(())) => Ok(value),
        };
        let _ = self.reply.send(outcome);
    }
}

pub struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
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
    /// number after every commit; between groups the writer starts the WAL
    /// over when `restart` says it was copied.
    pub fn start(
        conn: Connection,
        head: watch::Sender<u64>,
        housekeeping: Housekeeping,
        restart: RestartDue,
    ) -> std::io::Result<Writer> {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, queue, head, housekeeping, restart))?;
        Ok(Writer { jobs })
    }

    /// Runs `work` in the next group transaction — more than once if another
    /// write of its group fails — and returns once it is durable.
    pub async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (job, answer) = job(work);
        self.jobs.send(job).map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        answer.await.map_err(|_| StoreError::Unavailable("the store could not run the write".into()))?
    }
}

/// `work` as a job of the writer, and where its outcome is told.
fn job<T, F>(work: F) -> (Box<dyn Job>, oneshot::Receiver<Result<T, StoreError>>)
where
    T: Send + 'static,
    F: FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    (Box::new(Write { work, result: None, reply }), answer)
}

/// Runs a statement through the statement cache.
fn execute(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs `group` in one transaction and commits it. A job that fails is
/// moved to `failed`, the transaction rolled back and the rest run again.
/// The writer's time is what every write waits for: how long the jobs ran
/// and how long the commit took (writing the WAL and its fsync) are
/// measured apart.
fn commit_group(
    conn: &Connection,
    group: &mut Vec<Box<dyn Job>>,
    failed: &mut Vec<Box<dyn Job>>,
) -> Result<(), String> {
    loop {
        execute(conn, "BEGIN IMMEDIATE").map_err(|e| format!("cannot begin a write transaction: {e}"))?;
        let started = Instant::now();
        let Some(failing) = group.iter_mut().position(|job| !job.run(conn)) else {
            let ran = Instant::now();
            metrics::histogram!("orderflow_store_jobs_seconds").record((ran - started).as_secs_f64());
            let commit = execute(conn, "COMMIT").map_err(|e| e.to_string());
            metrics::histogram!("orderflow_store_commit_seconds").record(ran.elapsed().as_secs_f64());
            return commit;
        };
        failed.push(group.remove(failing));
        // Undoes what the failed job, and those before it, wrote; the others
        // then run again from the state before the group.
        execute(conn, "ROLLBACK").map_err(|e| format!("a failed write could not be rolled back: {e}"))?;
    }
}

fn run(
    conn: Connection,
    queue: mpsc::Receiver<Box<dyn Job>>,
    head: watch::Sender<u64>,
    mut housekeeping: Housekeeping,
    restart: RestartDue,
) {
    let mut upkeep_due = Instant::now() + housekeeping.every;
    loop {
        checkpoints::restart_if_due(&conn, &restart);
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
        let mut failed = Vec::new();
        let commit = commit_group(&conn, &mut group, &mut failed);
        if let Err(error) = &commit {
            // Every caller hears the write did not happen.
            let _ = execute(&conn, "ROLLBACK");
            tracing::error!(%error, jobs = group.len(), "a write transaction failed");
        }
        for job in group.into_iter().chain(failed) {
            job.complete(commit.clone());
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

    fn insert(value: i64) -> impl FnMut(&Connection) -> Result<(), StoreError> + Send + 'static {
        move |conn| conn.execute("INSERT INTO t VALUES (?1)", [value]).map(|_| ()).map_err(unavailable)
    }

    /// Runs `jobs` as one group (the writer takes every queued job into one
    /// transaction) on a fresh database; the values committed.
    fn one_group(jobs: Vec<Box<dyn Job>>) -> Vec<i64> {
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
        run(conn, queue, head, upkeep, RestartDue::default());
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
    async fn a_job_that_fails_after_writing_leaves_no_trace_and_the_others_commit_once() {
        let (first, first_done) = job(insert(1));
        let (fails, failed) = job(|conn: &Connection| -> Result<(), StoreError> {
            insert(2)(conn)?;
            Err(StoreError::Corrupt("found something wrong after writing".into()))
        });
        let (last, last_done) = job(insert(3));
        assert_eq!(one_group(vec![first, fails, last]), [1, 3], "the first ran twice, kept once");
        assert!(first_done.await.expect("told").is_ok());
        assert!(matches!(failed.await.expect("told"), Err(StoreError::Corrupt(_))));
        assert!(last_done.await.expect("told").is_ok());
    }

    #[tokio::test]
    async fn a_failed_rollback_fails_the_whole_group() {
        let (first, first_done) = job(insert(1));
        // Ends the group's transaction itself, then fails: the writer's own
        // ROLLBACK fails.
        let (breaks, broken) = job(|conn: &Connection| -> Result<(), StoreError> {
            execute(conn, "COMMIT").map_err(unavailable)?;
            Err(StoreError::Corrupt("broken".into()))
        });
        let (last, last_done) = job(insert(3));
        one_group(vec![first, breaks, last]);
        for done in [first_done, broken, last_done] {
            assert!(done.await.expect("told").is_err(), "every caller hears the group failed");
        }
    }
}
