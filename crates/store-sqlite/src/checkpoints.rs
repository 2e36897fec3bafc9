//! Checkpoints off the writer's path. Left to itself, SQLite checkpoints in
//! the committing thread every ~1,000 WAL pages: it copies each page into
//! the database file and syncs it — a quarter of the writer's time, with a
//! page that changes in every group copied again every few commits. Here a
//! thread of its own copies the WAL into the database every two seconds
//! (each page once, however often it changed meanwhile), and the writer only
//! starts the WAL over between two groups: a RESTART checkpoint that copies
//! the little written since and does not wait for readers (if one still
//! reads the old WAL, the next copy tries again).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// How often the checkpointer copies the WAL into the database: the WAL
/// holds about this much of the writes (at 3,000 commands/s on the bench,
/// ~85,000 pages, 350 MB). Each copy ends with the writer's restart, a pause
/// of some milliseconds: once a second, they were a tail the p99 felt.
pub const EVERY: Duration = Duration::from_secs(2);

/// Set by the checkpointer once the WAL is copied: the writer may start it
/// over.
#[derive(Clone, Default)]
pub struct RestartDue(Arc<AtomicBool>);

/// The checkpointer thread; it stops when this is dropped.
pub struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Takes checkpoints off `writer` (its automatic checkpoints stop) and
    /// starts the thread that copies the WAL of the database at `path`
    /// every `every`.
    pub fn start(path: &Path, writer: &Connection, every: Duration) -> Result<(Checkpointer, RestartDue), String> {
        writer.pragma_update(None, "wal_autocheckpoint", 0).map_err(|e| e.to_string())?;
        let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let (stop, stopped) = mpsc::channel();
        let due = RestartDue::default();
        let restart = due.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpointer".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    copy(&conn, &restart);
                }
            })
            .map_err(|e| format!("cannot start the checkpointer thread: {e}"))?;
        Ok((Checkpointer { _stop: stop }, due))
    }
}

/// The writer's restart copies what was written during the checkpointer's
/// last pass, and syncs it while every write waits: passes go on until one
/// had about this little to copy (some milliseconds of writes).
const LITTLE: i64 = 512;
/// Passes in one copy at most (each takes what was written during the one
/// before, so they shrink fast unless writes outrun copying).
const PASSES: usize = 8;

/// Copies the WAL into the database, pass after pass until the last one had
/// little to do, so the writer's restart has little left.
fn copy(conn: &Connection, restart: &RestartDue) {
    let mut copied_before = 0;
    for _ in 0..PASSES {
        match checkpoint(conn, "PASSIVE", "checkpointer") {
            Ok(Pages { in_wal, copied }) => {
                metrics::gauge!("orderflow_store_wal_pages").set(in_wal as f64);
                let little = copied - copied_before < LITTLE;
                copied_before = copied;
                if little {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "the WAL could not be copied into the store; trying again later");
                return;
            }
        }
    }
    restart.0.store(true, Ordering::Release);
}

/// Between two groups, on the writer's connection: starts the WAL over if
/// the checkpointer copied it since the last time, without waiting for
/// readers or another checkpoint.
pub fn restart_if_due(writer: &Connection, due: &RestartDue) {
    if !due.0.swap(false, Ordering::AcqRel) {
        return;
    }
    let restarted = (|| {
        let waits: i64 = writer.pragma_query_value(None, "busy_timeout", |row| row.get(0))?;
        writer.pragma_update(None, "busy_timeout", 0)?;
        let done = checkpoint(writer, "RESTART", "writer");
        writer.pragma_update(None, "busy_timeout", waits)?;
        done.map(drop)
    })();
    if let Err(error) = restarted {
        tracing::warn!(%error, "the WAL could not be started over; trying again after the next copy");
    }
}

/// What a checkpoint found: pages in the WAL, and copied into the database
/// since the WAL started over.
struct Pages {
    in_wal: i64,
    copied: i64,
}

/// Runs a checkpoint in `mode`, timed under `by`.
fn checkpoint(conn: &Connection, mode: &str, by: &'static str) -> rusqlite::Result<Pages> {
    let started = Instant::now();
    // (busy, pages in the WAL, pages copied); busy only means "not all yet".
    let pages = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok(Pages { in_wal: row.get(1)?, copied: row.get(2)? })
    })?;
    metrics::histogram!("orderflow_store_checkpoint_seconds", "by" => by).record(started.elapsed().as_secs_f64());
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages written to the WAL since it last started over: the frames after
    /// its header that carry the header's salt (read from the file, since
    /// asking SQLite would checkpoint).
    fn wal_pages(path: &Path) -> usize {
        let wal = std::fs::read(path.with_extension("db-wal")).expect("the WAL");
        let page_size = u32::from_be_bytes(wal[8..12].try_into().expect("header")) as usize;
        wal[32..]
            .chunks(24 + page_size)
            .take_while(|frame| frame.len() == 24 + page_size && frame[8..16] == wal[16..24])
            .count()
    }

    #[test]
    fn the_wal_starts_over_once_copied_and_nothing_written_is_lost() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let path = dir.path().join("store.db");
        let writer = Connection::open(&path).expect("open");
        writer.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v TEXT);").expect("table");
        let (_checkpointer, due) = Checkpointer::start(&path, &writer, Duration::from_secs(3600)).expect("start");
        let write = |v: i64| writer.execute("INSERT INTO t VALUES (?1)", [format!("{v:0>2000}")]).expect("insert");
        for v in 0..200 {
            write(v);
        }
        let grown = wal_pages(&path);
        assert!(grown >= 200, "the writer no longer checkpoints by itself: {grown} pages");

        restart_if_due(&writer, &due);
        write(200);
        assert!(wal_pages(&path) >= grown, "not started over before the checkpointer copied it");

        let conn = Connection::open(&path).expect("open");
        copy(&conn, &due);
        restart_if_due(&writer, &due);
        write(201);
        let after = wal_pages(&path);
        assert!(after < 10, "the WAL started over: {after} pages (was {grown})");

        let rows: i64 = conn.query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0)).expect("count");
        assert_eq!(rows, 202);
    }
}
