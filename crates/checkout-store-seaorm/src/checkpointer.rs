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
//! [`Restart::frames`] the thread also restarts it: a `RESTART` checkpoint
//! lets the next writer start the WAL from the beginning.
//!
//! A restart stops every write while it runs: it holds the writer lock to
//! copy the frames the passive pass could not see and to fsync the WAL and
//! the database file. Copying and fsyncing what the last 50 ms had written
//! was most of that hold, so the thread first catches up without the lock
//! (passive passes until one finds little new) and restarts only then,
//! with a few frames left. The restart also fsyncs the database file, and
//! that fsync writes every page the passive passes copied since the last
//! restart (a passive pass fsyncs the file only when it copies the whole
//! WAL, which a busy writer never lets it): so the thread fsyncs the file
//! itself first, through a descriptor of its own and without any lock,
//! and lets one more passive pass copy what came meanwhile. Together they
//! halved the hold again, to about 3 ms at the median. And it takes the
//! store's write gate before the restart, so the restart waits for the
//! write in progress to end instead of failing against it: with SQLite's
//! own lock and no busy timeout it found a writer mid-transaction most of
//! the time, did a passive pass instead, and the WAL grew to several times
//! its bound between the restarts that got through (docs/perf/history.md).

use std::fs::File;
use std::sync::{Mutex, PoisonError, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use tracing::{debug, warn};

use crate::WriteGate;

/// How often the thread looks at the WAL.
const INTERVAL: Duration = Duration::from_millis(50);

/// When and how the thread restarts the WAL.
#[derive(Debug, Clone, Copy)]
struct Restart {
    /// WAL pages (frames) past which the WAL is restarted.
    frames: i64,
    /// The restart waits until a passive pass found at most this many new
    /// frames since the pass before: what is left for the restart to copy
    /// and fsync under the lock.
    tail: i64,
    /// Passive passes at most before the restart, however much each
    /// found: a writer faster than the passes must not postpone the
    /// restart for ever.
    catch_up_passes: u32,
}

impl Restart {
    /// 16 MiB of WAL with SQLite's 4 KiB pages. A tail of 256 frames:
    /// measured on the project's machine at 80 % of its peak, restarts held
    /// writes back 5 ms at the median against 9–10 ms when they copied
    /// whatever the last 50 ms had written (docs/performance.md).
    const DEFAULT: Restart = Restart {
        frames: 4_096,
        tail: 256,
        catch_up_passes: 4,
    };
}

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
    ///
    /// `gate` is the store's write gate: the thread holds it while it
    /// restarts the WAL.
    pub(crate) fn start(path: &str, gate: WriteGate) -> Result<Checkpointer, String> {
        let db = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| e.to_string())?;
        // Never wait for a lock: a busy round is simply tried again.
        db.busy_timeout(Duration::ZERO).map_err(|e| e.to_string())?;
        let file = database_file(path)
            .inspect_err(|e| {
                warn!(error = %e, "the WAL restarts fsync the database file under their lock");
            })
            .ok();
        let (alive, stopped) = std_mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                // Until every handle is gone (the store is closing).
                while let Err(std_mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL)
                {
                    round(&db, file, &gate, Restart::DEFAULT);
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

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// The WAL was copied back (as far as readers allowed); no restart due.
    Copied,
    /// A restart was due: the passive passes it took to catch up, and what
    /// the `RESTART` answered (busy: a reader still in the WAL kept it from
    /// starting over; the next round tries again).
    Restarted { passes: u32, restart: Checkpoint },
    /// A checkpoint failed (SQLITE_BUSY from another checkpoint, or a
    /// passing I/O error); the next round tries again, and the WAL keeps
    /// everything meanwhile.
    Failed,
}

/// One round: copy back what the WAL holds; restart it when it has grown.
/// `file` is the database file, fsynced before a restart (without it the
/// restart fsyncs everything under its lock).
fn round(db: &Connection, file: Option<&File>, gate: &WriteGate, policy: Restart) -> Round {
    let Some(mut last) = passive(db) else {
        return Round::Failed;
    };
    if last.frames < policy.frames {
        return Round::Copied;
    }
    let mut passes = 1;
    while passes < policy.catch_up_passes {
        let Some(next) = passive(db) else {
            return Round::Failed;
        };
        passes += 1;
        // Less than before when a writer started the WAL over in between:
        // nothing left either way.
        let new = next.frames - last.frames;
        last = next;
        if new <= policy.tail {
            break;
        }
    }
    if let Some(file) = file {
        // What the passes copied reaches the disk now, while writes go on,
        // instead of inside the restart's fsync; the pass after it copies
        // what was written meanwhile. A failed fsync is only logged: Linux
        // reports a writeback error to every descriptor open when it
        // happened, so the restart's own fsync still sees it and fails.
        if let Err(e) = file.sync_data() {
            warn!(error = %e, "database file fsync before the WAL restart failed");
        }
        if passive(db).is_none() {
            return Round::Failed;
        }
        passes += 1;
    }
    // No write is in progress while the gate is held, so the restart gets
    // the writer lock at once; the writes that come meanwhile wait for it.
    let _writes_held = gate.enter_blocking();
    let held_from = Instant::now();
    match checkpoint(db, "RESTART") {
        Ok(restart) => {
            debug!(
                frames = last.frames,
                passes,
                busy = restart.busy,
                held_us = held_from.elapsed().as_micros(),
                "WAL restart"
            );
            Round::Restarted { passes, restart }
        }
        Err(e) => {
            debug!(error = %e, "WAL restart skipped");
            Round::Failed
        }
    }
}

/// A passive pass; `None` (logged) when it failed: SQLITE_BUSY from
/// another checkpoint or a passing I/O error, which the next round tries
/// again while the WAL keeps everything.
fn passive(db: &Connection) -> Option<Checkpoint> {
    checkpoint(db, "PASSIVE")
        .inspect_err(|e| warn!(error = %e, "WAL checkpoint failed"))
        .ok()
}

/// The database file at `path`, opened once for the life of the process
/// so that the checkpoint thread can fsync it.
///
/// The descriptor is never closed, on purpose. Closing any descriptor of a
/// file drops every POSIX lock the process holds on that file, and SQLite
/// holds its locks on the database file through descriptors of its own:
/// closing this one while any connection of the process were open would
/// let another process (an operator's `sqlite3`, a backup) believe the
/// database unused and take it over. SQLite keeps descriptors open until
/// its locks are gone for the same reason. One descriptor per database
/// file, shared by every store the process opens on it.
fn database_file(path: &str) -> std::io::Result<&'static File> {
    static OPENED: Mutex<Vec<((u64, u64), &'static File)>> = Mutex::new(Vec::new());
    let key = file_identity(&std::fs::metadata(path)?)?;
    let mut opened = OPENED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, file)) = opened.iter().find(|(k, _)| *k == key) {
        return Ok(file);
    }
    let file: &'static File = Box::leak(Box::new(File::open(path)?));
    // Keyed by what was opened: the path may name another file by now.
    opened.push((file_identity(&file.metadata()?)?, file));
    Ok(file)
}

/// A file's device and inode: the same for every path to it.
#[cfg(unix)]
fn file_identity(meta: &std::fs::Metadata) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Ok((meta.dev(), meta.ino()))
}

/// Elsewhere there is no such identity at hand (nor POSIX locks to keep):
/// the restarts fsync the file under their lock, as SQLite does.
#[cfg(not(unix))]
fn file_identity(_: &std::fs::Metadata) -> std::io::Result<(u64, u64)> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "no file identity on this platform",
    ))
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

    fn insert(writer: &Connection, rows: usize) {
        for _ in 0..rows {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                .unwrap();
        }
    }

    fn checkpoint_connection(path: &str) -> Connection {
        let db = Connection::open(path).unwrap();
        db.busy_timeout(Duration::ZERO).unwrap();
        db
    }

    #[test]
    fn a_passive_checkpoint_copies_the_wal_back() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = wal_db(&dir);
        insert(&writer, 50);
        let c = checkpoint(&checkpoint_connection(&path), "PASSIVE").unwrap();
        assert!(!c.busy);
        assert!(c.frames >= 50, "{c:?}");
        assert_eq!(c.copied, c.frames);
    }

    #[test]
    fn a_restart_that_would_wait_for_a_writer_gives_up_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = wal_db(&dir);
        insert(&writer, 1);
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        let db = checkpoint_connection(&path);
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

    /// A round on a WAL of 20 frames, first with a bound above it, then
    /// with one below: the passes the restart took. Checks that the first
    /// round only copied and that after the restart the next write starts
    /// the WAL from its first frame.
    fn restart_past_the_bound(fsync_the_file: bool) -> u32 {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = wal_db(&dir);
        insert(&writer, 20);
        let db = checkpoint_connection(&path);
        let file = fsync_the_file.then(|| database_file(&path).unwrap());
        let gate = WriteGate::closed();
        let bound = |frames| Restart {
            frames,
            tail: 0,
            catch_up_passes: 4,
        };
        assert_eq!(round(&db, file, &gate, bound(1_000)), Round::Copied);
        let passes = match round(&db, file, &gate, bound(10)) {
            Round::Restarted { passes, restart } => {
                assert!(!restart.busy, "{restart:?}");
                passes
            }
            other => panic!("{other:?}"),
        };
        insert(&writer, 1);
        let after = checkpoint(&db, "PASSIVE").unwrap();
        assert!(after.frames < 20, "{after:?}");
        passes
    }

    #[test]
    fn a_round_restarts_the_wal_only_past_its_bound_after_catching_up() {
        // Nothing writes between the passes: the second finds nothing new
        // and the restart follows it.
        assert_eq!(restart_past_the_bound(false), 2);
    }

    #[cfg(unix)]
    #[test]
    fn a_restart_after_fsyncing_the_file_runs_one_more_pass_first() {
        // Two passes to catch up, the one after the fsync, the restart.
        assert_eq!(restart_past_the_bound(true), 3);
    }

    #[cfg(unix)]
    #[test]
    fn a_database_file_is_opened_once_for_every_store_on_it() {
        let (dir, other_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (path, _writer) = wal_db(&dir);
        let (other_path, _other_writer) = wal_db(&other_dir);
        let file = database_file(&path).unwrap();
        assert!(std::ptr::eq(file, database_file(&path).unwrap()));
        // Keyed by the file, not by how its path is spelt.
        let respelt = dir.path().join(".").join("c.db");
        assert!(std::ptr::eq(
            file,
            database_file(&respelt.to_string_lossy()).unwrap()
        ));
        assert!(!std::ptr::eq(file, database_file(&other_path).unwrap()));
        assert!(database_file(&dir.path().join("none.db").to_string_lossy()).is_err());
    }

    #[test]
    fn a_restart_waits_for_the_write_in_progress_instead_of_giving_up() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = wal_db(&dir);
        insert(&writer, 20);
        let gate = WriteGate::closed();
        // A write in progress: its connection holds the gate and SQLite's
        // writer lock, as the ledger thread does during a group.
        let held = gate.enter_blocking();
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        insert(&writer, 1);
        let (done, rounds) = std_mpsc::channel();
        let checkpointing = {
            let (path, gate) = (path.clone(), gate.clone());
            std::thread::spawn(move || {
                let db = checkpoint_connection(&path);
                let policy = Restart {
                    frames: 10,
                    tail: 0,
                    catch_up_passes: 2,
                };
                done.send(round(&db, None, &gate, policy)).unwrap();
            })
        };
        // Without the gate the restart would have answered busy at once.
        assert!(rounds.recv_timeout(Duration::from_millis(200)).is_err());
        writer.execute_batch("COMMIT").unwrap();
        drop(held);
        match rounds.recv_timeout(Duration::from_secs(30)).unwrap() {
            Round::Restarted { restart, .. } => assert!(!restart.busy, "{restart:?}"),
            other => panic!("{other:?}"),
        }
        checkpointing.join().unwrap();
        insert(&writer, 1);
        let after = checkpoint(&checkpoint_connection(&path), "PASSIVE").unwrap();
        assert!(after.frames < 20, "{after:?}");
    }

    #[test]
    fn the_thread_ends_with_its_handles_and_leaves_the_wal_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer) = wal_db(&dir);
        let checkpointer = Checkpointer::start(&path, WriteGate::closed()).unwrap();
        insert(&writer, 200);
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
