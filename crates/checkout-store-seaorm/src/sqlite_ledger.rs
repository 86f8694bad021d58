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

use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags};
use sea_orm::Value;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::WriteGate;
use crate::inventory::{GroupCheck, MarkedRow};

/// Prepared statements kept: the ledger's statement shapes (by number of
/// books and lines) with room to spare.
const STATEMENT_CACHE: usize = 256;

/// Most writes in one group: keeps a transaction and the rework after a
/// failed group bounded.
const MAX_GROUP: usize = 64;

/// A write's statements, each with its values (`$n` numbered per
/// statement).
pub(crate) type Statements = Vec<(String, Vec<Value>)>;

/// What happened to a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The write went through and is committed.
    Committed,
    /// Nothing of it was committed: it must run the SeaORM way.
    RolledBack,
}

/// One request's write: its statements and what their rows must show.
struct Task {
    statements: Statements,
    check: GroupCheck,
    reply: oneshot::Sender<Outcome>,
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
        let spawned = std::thread::Builder::new()
            .name("sqlite-ledger".into())
            .spawn(move || {
                while let Ok(first) = queue.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match queue.try_recv() {
                            Ok(task) => group.push(task),
                            Err(_) => break,
                        }
                    }
                    let _gate = gate.enter_blocking();
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
    pub(crate) async fn submit(&self, statements: Statements, check: GroupCheck) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let task = Task {
            statements,
            check,
            reply,
        };
        if self.tasks.send(task).is_err() {
            return Outcome::RolledBack;
        }
        answer.await.unwrap_or(Outcome::RolledBack)
    }
}

/// Runs a group as one transaction; if that does not go through, each of
/// its writes on its own.
fn run_tasks(db: &Connection, group: Vec<Task>) {
    tracing::trace!(writes = group.len(), "ledger group");
    if group.len() > 1 {
        let mut check = GroupCheck::default();
        for task in &group {
            check.add(&task.check);
        }
        let statements = group.iter().flat_map(|t| t.statements.iter());
        if run_group(db, statements, &check) == Outcome::Committed {
            for task in group {
                let _ = task.reply.send(Outcome::Committed);
            }
            return;
        }
        debug!(
            writes = group.len(),
            "a grouped write failed; running each on its own"
        );
    }
    for task in group {
        let outcome = run_group(db, task.statements.iter(), &task.check);
        let _ = task.reply.send(outcome);
    }
}

fn open(conn: &LedgerConnection) -> rusqlite::Result<Connection> {
    let db = Connection::open_with_flags(
        &conn.path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    db.busy_timeout(conn.busy_timeout)?;
    db.execute_batch(if conn.synchronous_full {
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
    } else {
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
    })?;
    if !conn.autocheckpoint {
        db.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
    }
    db.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(db)
}

fn run_group<'s>(
    db: &Connection,
    statements: impl Iterator<Item = &'s (String, Vec<Value>)>,
    check: &GroupCheck,
) -> Outcome {
    if let Err(e) = db.execute_batch("BEGIN IMMEDIATE") {
        debug!(error = %e, "SQLite ledger group could not begin");
        return Outcome::RolledBack;
    }
    let passed = match run_statements(db, statements) {
        Ok(rows) => check.passed(rows.iter()),
        Err(e) => {
            debug!(error = %e, "SQLite ledger group failed");
            false
        }
    };
    if passed {
        match db.execute_batch("COMMIT") {
            Ok(()) => return Outcome::Committed,
            // A COMMIT that failed left the transaction open (busy) or
            // rolled it back; the ROLLBACK below settles it either way.
            Err(e) => warn!(error = %e, "SQLite ledger group commit failed"),
        }
    }
    if let Err(e) = db.execute_batch("ROLLBACK") {
        warn!(error = %e, "SQLite ledger group rollback failed");
    }
    Outcome::RolledBack
}

/// Runs each statement, binding the `$n` it names, and returns the rows
/// that carry a marker (see `sql::markers`).
fn run_statements<'s>(
    db: &Connection,
    statements: impl Iterator<Item = &'s (String, Vec<Value>)>,
) -> Result<Vec<MarkedRow>, String> {
    let mut marked = Vec::new();
    for (text, values) in statements {
        let mut stmt = db.prepare_cached(text).map_err(|e| e.to_string())?;
        for i in 1..=stmt.parameter_count() {
            let value = stmt
                .parameter_name(i)
                .and_then(|name| name.strip_prefix('$'))
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| values.get(n.checked_sub(1)?))
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
/// 16-byte blobs, booleans as 0/1); `None` for a type the ledger's
/// statements never bind.
fn sql_value(value: &Value) -> Option<SqlValue> {
    Some(match value {
        Value::Bool(v) => v.map_or(SqlValue::Null, |b| SqlValue::Integer(i64::from(b))),
        Value::Int(v) => v.map_or(SqlValue::Null, |i| SqlValue::Integer(i64::from(i))),
        Value::BigInt(v) => v.map_or(SqlValue::Null, SqlValue::Integer),
        Value::String(v) => v.clone().map_or(SqlValue::Null, SqlValue::Text),
        Value::Uuid(v) => v.map_or(SqlValue::Null, |u| SqlValue::Blob(u.as_bytes().to_vec())),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_stored_as_the_seaorm_driver_stores_them() {
        let id = uuid::Uuid::from_u128(7);
        assert_eq!(
            sql_value(&Value::Uuid(Some(id))),
            Some(SqlValue::Blob(id.as_bytes().to_vec()))
        );
        assert_eq!(
            sql_value(&Value::Bool(Some(true))),
            Some(SqlValue::Integer(1))
        );
        assert_eq!(sql_value(&Value::BigInt(None)), Some(SqlValue::Null));
        assert_eq!(
            sql_value(&Value::String(Some("x".into()))),
            Some(SqlValue::Text("x".into()))
        );
        assert_eq!(sql_value(&Value::Double(Some(1.5))), None);
    }
}
