//! SQLite: the ledger writes of concurrent orders, grouped into one
//! transaction on one thread, start to finish.
//!
//! The SQLite driver under SeaORM runs each connection on a thread of its
//! own and hands every call (BEGIN, a batch, COMMIT) across to it and the
//! answer back: two thread wake-ups per call, and on the project's 2-core
//! virtual machine those wake-ups, not SQLite, were most of the cost of a
//! write (docs/performance.md). Requests instead send their ledger writes
//! (`create_with_reservation`, `save_with_stock`) — already turned into SQL
//! by `SeaOrmStore::group_batch`, the same SQL the SeaORM path runs —
//! straight to this thread. It takes every write waiting, runs them as one
//! transaction (BEGIN, every statement, the check, COMMIT) on its own
//! connection with statements prepared once and cached, and answers each
//! request directly: one hand-off in and one out per write, one commit per
//! group.
//!
//! Nothing is weaker for it: a request is answered only after the
//! transaction holding its write has committed. When a grouped write would
//! fail (a short book, a changed price, a lost compare-and-set, an error),
//! the group is rolled back and each write runs again on its own; one that
//! still fails is rolled back and answered [`Outcome::RolledBack`], and the
//! request runs it the SeaORM way, which gives the failure its precise
//! error. Grouping is only ever an optimisation of the all-succeed case.
//!
//! The thread writes only inside the store's write gate
//! (`crate::WriteGate`), which the SeaORM writer takes too, so the two
//! connections never write at the same time.

use std::cell::Cell;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags};
use sea_orm::Value;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::WriteGate;
use crate::inventory::{GroupCheck, MarkedRow};

/// Prepared statements kept: the ledger's statement shapes (by number of
/// books and lines) with room to spare.
const STATEMENT_CACHE: usize = 256;

/// Plain writes with at most this many values (one row's worth) have
/// their statements cached. Longer ones are mostly `IN (…)` lists of any
/// length (the relay's claims and marks): cached, every length would be a
/// prepared statement of its own, which filled the cache and the ledger
/// thread's heap with programs run once.
const CACHED_PLAIN_VALUES: usize = 8;

/// Most writes in one group: keeps a transaction and the rework after a
/// failed group bounded.
const MAX_GROUP: usize = 64;

/// How long the ledger thread sleeps between two looks at a write lock
/// another connection holds (the checkpoint thread's WAL restart).
const LOCK_POLL: Duration = Duration::from_micros(100);

thread_local! {
    /// The ledger thread's lock wait: since when it waits (set at its
    /// first look) and for how long it may (`busy_timeout`, set when the
    /// thread installs [`wait_for_lock`]; no wait on any other thread).
    static LOCK_WAIT: Cell<(Instant, Duration)> = Cell::new((Instant::now(), Duration::ZERO));
}

/// The ledger connection's busy handler: looks again every [`LOCK_POLL`]
/// until the lock is free or the thread's busy timeout has run out.
///
/// SQLite's own (`busy_timeout`) sleeps 1, 2, 5, 10, 15, 20, 25… ms in
/// turn, so a lock held for 3 ms cost the writer 8 ms, and every order in
/// flight waited out the overshoot with it (docs/performance.md). The lock
/// it met was the WAL restart's, several times a second under load; the
/// restarts now take the store's write gate, so the thread waits for them
/// there. What it still meets here is a lock taken outside the gate:
/// another process writing the file, or the checkpoint thread's last
/// checkpoint as the store closes.
fn wait_for_lock(looks: i32) -> bool {
    LOCK_WAIT.with(|wait| {
        let now = Instant::now();
        let (since, limit) = wait.get();
        let since = if looks == 0 { now } else { since };
        wait.set((since, limit));
        if now.duration_since(since) >= limit {
            return false;
        }
        std::thread::sleep(LOCK_POLL);
        true
    })
}

/// A write's statements, each with its values (`$n` numbered per
/// statement).
pub(crate) type Statements = Vec<(String, Vec<Value>)>;

/// What a write must show for it to have gone through.
#[derive(Debug)]
pub(crate) enum Expect {
    /// A ledger write: the marked rows its gates return (see
    /// [`GroupCheck`]).
    Ledger(GroupCheck),
    /// A plain write: it goes through when its statements do, whatever
    /// number of rows they change.
    Plain,
}

/// What happened to a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The write went through and is committed; it changed this many rows.
    Committed(u64),
    /// Nothing of it was committed: it must run the SeaORM way.
    RolledBack,
}

/// One request's write: its statements and what they must show.
struct Task {
    statements: Statements,
    expect: Expect,
    reply: oneshot::Sender<Answer>,
}

/// What the thread sends back: the outcome, and the write's statements
/// for the request to free. Freeing them was 2 % of the ledger thread's
/// time, and every order queues for that thread; the requests run on the
/// other threads.
struct Answer {
    outcome: Outcome,
    statements: Statements,
}

impl Task {
    /// Answers the request. A request that is gone (its future dropped)
    /// leaves the statements to be freed here.
    fn answer(self, outcome: Outcome) {
        let _ = self.reply.send(Answer {
            outcome,
            statements: self.statements,
        });
    }

    /// Whether its statements are of the few shapes worth keeping prepared.
    fn cached(&self) -> bool {
        match self.expect {
            Expect::Ledger(_) => true,
            Expect::Plain => self
                .statements
                .iter()
                .all(|(_, values)| values.len() <= CACHED_PLAIN_VALUES),
        }
    }
}

/// The handle to the ledger thread. Cheap to clone; the thread ends when
/// every handle is gone.
#[derive(Debug, Clone)]
pub(crate) struct SqliteLedger {
    tasks: std_mpsc::Sender<Task>,
}

/// How to open the thread's connection: the pragmas the SeaORM writer
/// uses.
#[derive(Debug, Clone)]
pub(crate) struct LedgerConnection {
    pub(crate) path: String,
    pub(crate) synchronous_full: bool,
    pub(crate) busy_timeout: Duration,
    /// Whether this connection checkpoints the WAL itself (off when the
    /// checkpoint thread does it).
    pub(crate) autocheckpoint: bool,
    /// Whether it writes its WAL through `wal_batch`'s VFS.
    pub(crate) wal_batching: bool,
}

impl SqliteLedger {
    /// Opens the connection and starts the thread, which writes only inside
    /// `gate`. `None` (with a warning) when the file can't be opened: the
    /// SeaORM path then does it all.
    pub(crate) fn start(conn: LedgerConnection, gate: WriteGate) -> Option<SqliteLedger> {
        let db = match open(&conn) {
            Ok(db) => db,
            Err(e) => {
                warn!(error = %e, path = %conn.path, "SQLite ledger thread not started; writes go through SeaORM");
                return None;
            }
        };
        let (tasks, queue) = std_mpsc::channel::<Task>();
        let busy_timeout = conn.busy_timeout;
        let spawned = std::thread::Builder::new()
            .name("sqlite-ledger".into())
            .spawn(move || {
                // The connection was opened with SQLite's own busy handler
                // (its set-up ran on the caller's thread); from here on it
                // waits with ours, whose limit lives on this thread.
                LOCK_WAIT.with(|wait| wait.set((Instant::now(), busy_timeout)));
                if let Err(e) = db.busy_handler(Some(wait_for_lock)) {
                    warn!(error = %e, "SQLite ledger keeps SQLite's busy handler");
                    let _ = db.busy_timeout(busy_timeout);
                }
                while let Ok(first) = queue.recv() {
                    // The group is gathered once the gate is ours, so the
                    // writes that queued while the SeaORM writer held it
                    // join this group instead of waiting for the next.
                    let _gate = gate.enter_blocking();
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match queue.try_recv() {
                            Ok(task) => group.push(task),
                            Err(_) => break,
                        }
                    }
                    run_tasks(&db, group);
                }
                debug!("SQLite ledger thread stopped");
            });
        match spawned {
            Ok(_) => Some(SqliteLedger { tasks }),
            Err(e) => {
                warn!(error = %e, "SQLite ledger thread not started; writes go through SeaORM");
                None
            }
        }
    }

    /// Runs `statements` in the next group and answers once the group's
    /// transaction has committed (or the write was rolled back).
    pub(crate) async fn submit(&self, statements: Statements, expect: Expect) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let task = Task {
            statements: statements
                .into_iter()
                .map(|(text, values)| (numbered_placeholders(&text), values))
                .collect(),
            expect,
            reply,
        };
        if self.tasks.send(task).is_err() {
            return Outcome::RolledBack;
        }
        match answer.await {
            Ok(Answer {
                outcome,
                statements,
            }) => {
                drop(statements);
                outcome
            }
            Err(_) => Outcome::RolledBack,
        }
    }
}

/// Runs a group as one transaction; if that does not go through, each of
/// its writes on its own.
fn run_tasks(db: &Connection, group: Vec<Task>) {
    tracing::trace!(writes = group.len(), "ledger group");
    if group.len() > 1 {
        if let Some(changed) = run_group(db, &group) {
            for (task, n) in group.into_iter().zip(changed) {
                task.answer(Outcome::Committed(n));
            }
            return;
        }
        debug!(
            writes = group.len(),
            "a grouped write failed; running each on its own"
        );
    }
    for task in group {
        let outcome = match run_group(db, std::slice::from_ref(&task)) {
            Some(changed) => Outcome::Committed(changed.first().copied().unwrap_or(0)),
            None => Outcome::RolledBack,
        };
        task.answer(outcome);
    }
}

fn open(conn: &LedgerConnection) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    // A commit's WAL frames in a few writes (`wal_batch`); without it, the
    // same bytes two calls a frame.
    let batching = conn.wal_batching
        && crate::wal_batch::register()
            .map_err(|rc| warn!(rc, "SQLite ledger writes its WAL through the default VFS"))
            .is_ok();
    let db = if batching {
        Connection::open_with_flags_and_vfs(&conn.path, flags, crate::wal_batch::NAME)?
    } else {
        Connection::open_with_flags(&conn.path, flags)?
    };
    db.busy_timeout(conn.busy_timeout)?;
    db.execute_batch(if conn.synchronous_full {
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
    } else {
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
    })?;
    // The writer that starts the WAL over truncates a file grown past this
    // (a burst the checkpoints could not keep up with) back to it.
    db.execute_batch(&format!(
        "PRAGMA journal_size_limit = {};",
        crate::WAL_SIZE_LIMIT_BYTES
    ))?;
    if !conn.autocheckpoint {
        db.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
    }
    db.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(db)
}

/// Runs `tasks` as one transaction and commits it when every task shows
/// what it must; returns the rows each task changed, or `None` when the
/// transaction was rolled back.
fn run_group(db: &Connection, tasks: &[Task]) -> Option<Vec<u64>> {
    if let Err(e) = db.execute_batch("BEGIN IMMEDIATE") {
        debug!(error = %e, "SQLite ledger group could not begin");
        return None;
    }
    let changed = match run_checked(db, tasks) {
        Ok(changed) => Some(changed),
        Err(why) => {
            debug!(why, "SQLite ledger group not committed");
            None
        }
    };
    if changed.is_some() {
        match db.execute_batch("COMMIT") {
            Ok(()) => return changed,
            // A COMMIT that failed left the transaction open (busy) or
            // rolled it back; the ROLLBACK below settles it either way.
            Err(e) => warn!(error = %e, "SQLite ledger group commit failed"),
        }
    }
    if let Err(e) = db.execute_batch("ROLLBACK") {
        warn!(error = %e, "SQLite ledger group rollback failed");
    }
    None
}

/// Runs every task's statements inside the open transaction and checks
/// what each must show; the rows each changed, or why the group can't
/// commit.
fn run_checked(db: &Connection, tasks: &[Task]) -> Result<Vec<u64>, String> {
    let mut check = GroupCheck::default();
    let mut marked = Vec::new();
    let mut changed = Vec::with_capacity(tasks.len());
    for task in tasks {
        let before = db.total_changes();
        let rows = run_statements(db, task.statements.iter(), task.cached())?;
        let n = db.total_changes().saturating_sub(before);
        match &task.expect {
            Expect::Ledger(c) => {
                check.add(c);
                marked.extend(rows);
            }
            Expect::Plain => {}
        }
        changed.push(n);
    }
    if check.passed(marked.iter()) {
        Ok(changed)
    } else {
        Err("a ledger gate did not pass".to_owned())
    }
}

/// `text` with its `$n` placeholders spelt `?n`, outside `'…'` literals and
/// `"…"` names (the only quoting the store's SQL uses).
///
/// SQLite gives `?n` the index `n`, so the ledger thread binds value `n`
/// at index `n` without asking the statement for names. A `$n` is a
/// *named* parameter to SQLite: preparing looks every new name up in the
/// names seen so far and binding looks each index's name up again, both
/// by walking a list — quadratic in the number of parameters. The relay's
/// claims and marks carry two per event, up to 400, and those look-ups
/// were about half of what relaying cost the ledger thread
/// (docs/perf/history.md). Done here, on the requesting task, not on the
/// ledger thread.
fn numbered_placeholders(text: &str) -> String {
    // From one `$`, quote or closing quote to the next, copying the text
    // between them whole: the three are ASCII, and no byte of a multi-byte
    // character is, so each is a character boundary. (Char by char, this
    // was the largest Rust cost of a request on the HTTP worker, 2 % of the
    // service's CPU: the statements are long column lists.)
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut quote: Option<u8> = None;
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        let next = match quote {
            Some(q) => memchr::memchr(q, &bytes[at..]),
            None => memchr::memchr3(b'$', b'\'', b'"', &bytes[at..]),
        };
        let Some(found) = next.map(|n| at + n) else {
            break;
        };
        let b = bytes[found];
        match quote {
            // A doubled quote inside a literal reads as the quote twice,
            // leaving and re-entering it, which keeps the state right.
            Some(_) => quote = None,
            None if b == b'$' => {
                if bytes.get(found + 1).is_some_and(u8::is_ascii_digit) {
                    out.push_str(&text[copied..found]);
                    out.push('?');
                    copied = found + 1;
                }
            }
            None => quote = Some(b),
        }
        at = found + 1;
    }
    out.push_str(&text[copied..]);
    out
}

/// Runs each statement, binding value `n` at the index of its `?n` (see
/// [`numbered_placeholders`]), and returns the rows that carry a marker
/// (see `sql::markers`).
fn run_statements<'s>(
    db: &Connection,
    statements: impl Iterator<Item = &'s (String, Vec<Value>)>,
    cached: bool,
) -> Result<Vec<MarkedRow>, String> {
    let mut marked = Vec::new();
    for (text, values) in statements {
        let (mut kept, mut once);
        let stmt: &mut rusqlite::Statement<'_> = if cached {
            kept = db.prepare_cached(text).map_err(|e| e.to_string())?;
            &mut kept
        } else {
            once = db.prepare(text).map_err(|e| e.to_string())?;
            &mut once
        };
        for i in 1..=stmt.parameter_count() {
            let value = values
                .get(i - 1)
                .ok_or_else(|| format!("parameter {i} of `{text}` has no value"))?;
            let value = sql_value(value).ok_or_else(|| format!("unsupported value {value:?}"))?;
            stmt.raw_bind_parameter(i, value)
                .map_err(|e| e.to_string())?;
        }
        let columns = stmt.column_count();
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next().map_err(|e| e.to_string())? {
            if columns == 0 {
                continue;
            }
            let marker: i64 = row.get(0).map_err(|e| e.to_string())?;
            let book: Option<String> = if columns > 1 { row.get(1).ok() } else { None };
            let price: Option<i64> = if columns > 2 { row.get(2).ok() } else { None };
            marked.push(MarkedRow {
                marker,
                book,
                price,
            });
        }
    }
    Ok(marked)
}

/// A SeaORM value as SQLite stores it through SeaORM's driver (UUIDs as
/// 16-byte blobs, booleans as 0/1), borrowing text and blobs rather than
/// copying them; `None` for a type the store's statements never bind.
fn sql_value(value: &Value) -> Option<ToSqlOutput<'_>> {
    let null = ToSqlOutput::Owned(SqlValue::Null);
    let int = |i: i64| ToSqlOutput::Owned(SqlValue::Integer(i));
    Some(match value {
        Value::Bool(v) => v.map_or(null, |b| int(i64::from(b))),
        Value::Int(v) => v.map_or(null, |i| int(i64::from(i))),
        Value::BigInt(v) => v.map_or(null, int),
        Value::String(v) => v.as_deref().map_or(null, |s| {
            ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))
        }),
        Value::Bytes(v) => v
            .as_deref()
            .map_or(null, |b| ToSqlOutput::Borrowed(ValueRef::Blob(b))),
        Value::Uuid(v) => v.as_ref().map_or(null, |u| {
            ToSqlOutput::Borrowed(ValueRef::Blob(u.as_bytes()))
        }),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The workspace builds SQLite without memory statistics
    /// (`.cargo/config.toml`): each allocation would otherwise take a
    /// process-wide mutex.
    #[test]
    fn sqlite_is_built_without_memory_statistics() {
        let db = Connection::open_in_memory().unwrap();
        let options: Vec<String> = db
            .prepare("PRAGMA compile_options")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
    }

    #[test]
    fn values_are_stored_as_the_seaorm_driver_stores_them() {
        let id = uuid::Uuid::from_u128(7);
        let uuid = Value::Uuid(Some(id));
        assert_eq!(
            sql_value(&uuid),
            Some(ToSqlOutput::Borrowed(ValueRef::Blob(id.as_bytes())))
        );
        assert_eq!(
            sql_value(&Value::Bool(Some(true))),
            Some(ToSqlOutput::Owned(SqlValue::Integer(1)))
        );
        assert_eq!(
            sql_value(&Value::BigInt(None)),
            Some(ToSqlOutput::Owned(SqlValue::Null))
        );
        let text = Value::String(Some("x".into()));
        assert_eq!(
            sql_value(&text),
            Some(ToSqlOutput::Borrowed(ValueRef::Text(b"x")))
        );
        let bytes = Value::Bytes(Some(vec![1, 2]));
        assert_eq!(
            sql_value(&bytes),
            Some(ToSqlOutput::Borrowed(ValueRef::Blob(&[1, 2])))
        );
        assert!(sql_value(&Value::Double(Some(1.5))).is_none());
    }

    /// A plain write that fails (here a `NOT NULL` column set to null) is
    /// rolled back on its own; the writes beside it commit. The gate
    /// is held while all four are sent, so the thread (which gathers its
    /// group once it has the gate) takes them as one group: the failing
    /// group is rolled back and each write run alone.
    #[tokio::test]
    async fn a_failing_write_commits_nothing_and_the_rest_commit() {
        let gate = WriteGate::closed();
        let (_dir, path, ledger) = ledger_on_a_table(Duration::from_secs(1), gate.clone());
        let held = gate.enter().await;
        let write = |sql: &str, id: i64| {
            ledger.submit(
                vec![(sql.to_owned(), vec![Value::BigInt(Some(id))])],
                Expect::Plain,
            )
        };
        let (a, b, c, d, ()) = tokio::join!(
            // In order: every write is sent before the gate opens.
            biased;
            bump(&ledger, 1),
            write("UPDATE t SET n = NULL WHERE id = $1", 2),
            bump(&ledger, 1),
            bump(&ledger, 3),
            async move {
                drop(held);
            }
        );
        assert_eq!(a, Outcome::Committed(1));
        assert_eq!(b, Outcome::RolledBack);
        assert_eq!(c, Outcome::Committed(1));
        assert_eq!(d, Outcome::Committed(0));
        assert_eq!(counts(&path), vec![2, 0]);
    }

    /// A ledger thread on a fresh file whose table `t` has rows 1 and 2,
    /// both with `n` = 0.
    fn ledger_on_a_table(
        busy_timeout: Duration,
        gate: WriteGate,
    ) -> (tempfile::TempDir, String, SqliteLedger) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db").to_string_lossy().into_owned();
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "PRAGMA journal_mode = WAL; \
                 CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL); \
                 INSERT INTO t VALUES (1, 0), (2, 0);",
            )
            .unwrap();
        let connection = LedgerConnection {
            path: path.clone(),
            synchronous_full: false,
            busy_timeout,
            autocheckpoint: true,
            wal_batching: true,
        };
        let ledger = SqliteLedger::start(connection, gate).unwrap();
        (dir, path, ledger)
    }

    /// Each row's `n`, by id.
    fn counts(path: &str) -> Vec<i64> {
        Connection::open(path)
            .unwrap()
            .prepare("SELECT n FROM t ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Adds one to row `id`'s `n`.
    fn bump(ledger: &SqliteLedger, id: i64) -> impl Future<Output = Outcome> + '_ {
        ledger.submit(
            vec![(
                "UPDATE t SET n = n + 1 WHERE id = $1".to_owned(),
                vec![Value::BigInt(Some(id))],
            )],
            Expect::Plain,
        )
    }

    /// Another connection holding the write lock (as the checkpoint
    /// thread's WAL restart does) makes a ledger write wait, not fail.
    #[tokio::test]
    async fn a_write_waits_for_a_lock_held_elsewhere() {
        let (_dir, path, ledger) = ledger_on_a_table(Duration::from_secs(5), WriteGate::default());
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let write = tokio::spawn({
            let ledger = ledger.clone();
            async move { bump(&ledger, 1).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!write.is_finished(), "the write did not wait for the lock");
        holder.execute_batch("COMMIT").unwrap();
        assert_eq!(write.await.unwrap(), Outcome::Committed(1));
        assert_eq!(counts(&path), vec![1, 0]);
    }

    /// ... and gives up, writing nothing, once its busy timeout has run
    /// out.
    #[tokio::test]
    async fn a_write_gives_up_on_a_lock_held_past_its_busy_timeout() {
        let (_dir, path, ledger) =
            ledger_on_a_table(Duration::from_millis(20), WriteGate::default());
        let holder = Connection::open(&path).unwrap();
        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        assert_eq!(bump(&ledger, 1).await, Outcome::RolledBack);
        holder.execute_batch("COMMIT").unwrap();
        assert_eq!(counts(&path), vec![0, 0]);
        assert_eq!(bump(&ledger, 1).await, Outcome::Committed(1));
    }

    #[test]
    fn placeholders_are_numbered_outside_literals_and_names() {
        assert_eq!(
            numbered_placeholders(
                "UPDATE t SET a = $2, b = '$1 it''s $3', \"$4\" = $10 WHERE c = $2 AND d = $"
            ),
            "UPDATE t SET a = ?2, b = '$1 it''s $3', \"$4\" = ?10 WHERE c = ?2 AND d = $"
        );
        // Characters of several bytes, inside and outside quotes.
        assert_eq!(
            numbered_placeholders("SELECT 'café $1', $1, \"ñ\" = $2, ü$3"),
            "SELECT 'café $1', ?1, \"ñ\" = ?2, ü?3"
        );
    }

    /// Value `n` goes where `$n` is, whether a placeholder comes before a
    /// lower-numbered one, appears twice, or is one of hundreds.
    #[test]
    fn each_value_is_bound_where_its_number_stands() {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch("CREATE TABLE t (a INTEGER, b TEXT, c INTEGER)")
            .unwrap();
        let text = numbered_placeholders(
            "INSERT INTO t (a, b, c) VALUES ($2, $1, $2); INSERT INTO t SELECT $3, 'x$1', 0",
        );
        let values = vec![
            Value::String(Some("one".into())),
            Value::BigInt(Some(2)),
            Value::BigInt(Some(3)),
        ];
        let texts: Vec<(String, Vec<Value>)> = text
            .split("; ")
            .map(|t| (t.to_owned(), values.clone()))
            .collect();
        run_statements(&db, texts.iter(), false).unwrap();
        let rows: Vec<(i64, String, i64)> = db
            .prepare("SELECT a, b, c FROM t ORDER BY a")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![(2, "one".to_owned(), 2), (3, "x$1".to_owned(), 0)]
        );
        // Four hundred placeholders, the last two matching the rows.
        let list: Vec<String> = (1..=400).map(|n| format!("${n}")).collect();
        let update = format!("UPDATE t SET c = c + 1 WHERE a IN ({})", list.join(", "));
        let many: Vec<Value> = (-396..=2i64)
            .chain([3])
            .map(|n| Value::BigInt(Some(n)))
            .collect();
        let changed = [(numbered_placeholders(&update), many)];
        run_statements(&db, changed.iter(), false).unwrap();
        let c: i64 = db
            .query_row("SELECT SUM(c) FROM t", [], |r| r.get(0))
            .unwrap();
        // a = 2: c 2 → 3; a = 3: c 0 → 1.
        assert_eq!(c, 4);
    }
}
