//! SQLite: WAL checkpoints on a thread of their own.
//!
//! By default SQLite checkpoints inside the COMMIT that pushes the WAL past
//! 1,000 pages: the committing connection copies the pages back into the
//! database file and fsyncs it while every other write waits behind it. On
//! the project's machine that stall was the largest single source of tail
//! latency under load (docs/performance.md). Here the writers are told not
//! to checkpoint (`wal_autocheckpoint = 0`) and this thread does it instead,
//! with its own connection, concurrently with the writes (`PASSIVE` takes no
//! lock a writer needs).
//!
//! Durability does not change: a commit is as durable as before (WAL,
//! `synchronous` as configured); only who copies the WAL back, and when,
//! does. A passive checkpoint that never catches up with a busy writer
//! would let the WAL grow without bound, so once it passes
//! [`RESTART_FRAMES`] the thread also tries a `RESTART` checkpoint, which
//! lets the next writer start the WAL from the beginning; it waits for no
//! lock (busy timeout 0) and simply tries again on the next round.

use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use tracing::{debug, warn};

/// How often the thread looks at the WAL.
const INTERVAL: Duration = Duration::from_millis(50);

/// WAL pages (frames) past which the thread also tries to restart the WAL:
/// 16 MiB with SQLite's 4 KiB pages.
const RESTART_FRAMES: i64 = 4_096;

/// The handle that keeps the checkpoint thread running; the thread does a
/// last checkpoint and ends when every clone is dropped.
#[derive(Debug, Clone)]
pub(crate) struct Checkpointer {
    _alive: std_mpsc::Sender<()>,
}

/// What `PRAGMA wal_checkpoint` answers: whether it was blocked, the WAL's
/// frames, and the frames now copied back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checkpoint {
    busy: bool,
    frames: i64,
    copied: i64,
}

impl Checkpointer {
    /// Opens a connection to `path` and starts the thread. The caller turns
    /// automatic checkpoints off on its writers only when this succeeded.
    pub(crate) fn start(path: &str) -> Result<Checkpointer, String> {
        let db = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| e.to_string())?;
        // Never wait for a lock: a busy round is simply tried again.
        db.busy_timeout(Duration::ZERO).map_err(|e| e.to_string())?;
        let (alive, stopped) = std_mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                // Until every handle is gone (the store is closing).
                while let Err(std_mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL)
                {
                    round(&db);
                }
                if let Err(e) = checkpoint(&db, "TRUNCATE") {
                    debug!(error = %e, "last WAL checkpoint skipped");
                }
                debug!("SQLite checkpoint thread stopped");
            })
            .map_err(|e| e.to_string())?;
        Ok(Checkpointer { _alive: alive })
    }
}

/// One round: copy back what the WAL holds; restart it when it has grown.
fn round(db: &Connection) {
    match checkpoint(db, "PASSIVE") {
        Ok(c) if c.frames >= RESTART_FRAMES => match checkpoint(db, "RESTART") {
            Ok(r) if !r.busy => debug!(frames = c.frames, "WAL restarted"),
            Ok(_) => debug!(frames = c.frames, "WAL restart busy; trying again"),
            Err(e) => debug!(error = %e, "WAL restart skipped"),
        },
        Ok(_) => {}
        // SQLITE_BUSY (another checkpoint running) or a passing I/O error:
        // the next round tries again; the WAL keeps everything meanwhile.
        Err(e) => warn!(error = %e, "WAL checkpoint failed"),
    }
}

fn checkpoint(db: &Connection, mode: &str) -> rusqlite::Result<Checkpoint> {
    db.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        Ok(Checkpoint {
            busy: row.get::<_, i64>(0)? != 0,
            frames: row.get(1)?,
            copied: row.get(2)?,
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn wal_db(dir: &tempfile::TempDir) -> (String, Connection) {
        let path = dir.path().join("c.db").to_string_lossy().into_owned();
        let db = Connection::open(&path).unwrap();
        db.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; \
             CREATE TABLE t (x BLOB)",
        )
        .unwrap();
        (path, db)
    }

    #[test]
    fn a_passive_checkpoint_copies_the_wal_back() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = wal_db(&dir);
        for _ in 0..50 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                .unwrap();
        }
        let db = Connection::open(&path).unwrap();
        let c = checkpoint(&db, "PASSIVE").unwrap();
        assert!(!c.busy);
        assert!(c.frames >= 50, "{c:?}");
        assert_eq!(c.copied, c.frames);
    }

    #[test]
    fn a_restart_that_would_wait_for_a_writer_gives_up_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = wal_db(&dir);
        writer
            .execute("INSERT INTO t VALUES (zeroblob(4000))", [])
            .unwrap();
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        let db = Connection::open(&path).unwrap();
        db.busy_timeout(Duration::ZERO).unwrap();
        // The writer holds the write lock: RESTART can't finish, and says so
        // (busy) or fails with SQLITE_BUSY, without waiting.
        match checkpoint(&db, "RESTART") {
            Ok(c) => assert!(c.busy, "{c:?}"),
            Err(e) => assert_eq!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy)
            ),
        }
        writer.execute_batch("COMMIT").unwrap();
        assert!(!checkpoint(&db, "RESTART").unwrap().busy);
    }

    #[test]
    fn the_thread_ends_with_its_handles_and_leaves_the_wal_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = wal_db(&dir);
        let checkpointer = Checkpointer::start(&path).unwrap();
        for _ in 0..200 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                .unwrap();
        }
        drop(checkpointer);
        // The thread's last act is a TRUNCATE checkpoint: poll for it.
        let wal = dir.path().join("c.db-wal");
        let mut left = u64::MAX;
        for _ in 0..200 {
            left = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
            if left == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(left, 0, "the WAL was not checkpointed and truncated");
        let n: i64 = writer
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 200);
    }
}
