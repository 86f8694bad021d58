//! SQLite: a group of ledger writes run on one thread, start to finish.
//!
//! The SQLite driver under SeaORM runs each connection on a thread of its
//! own and hands every call (BEGIN, a batch, COMMIT) across to it and the
//! answer back: two thread wake-ups per call. Measured on the project's
//! 2-core machine, those wake-ups, not SQLite, were most of the cost of a
//! write (docs/performance.md). This thread holds its own connection to the
//! same file and runs a whole group — BEGIN, every statement, the check,
//! COMMIT or ROLLBACK — in one go, with statements prepared once and
//! cached: one hand-off in, one out, per group.
//!
//! It runs only what `SeaOrmStore::group_batch` built — the same SQL the
//! SeaORM path runs — and only while the group's task holds the SeaORM
//! writer connection (`SeaOrmStore::writer` is a pool of one), so the two
//! connections never write at the same time and the single-writer rule
//! holds. Anything it can't run as is (a value of a type it doesn't bind,
//! an error, a failed check) is rolled back and the writes go the SeaORM
//! way, one by one, which also gives each failure its precise error.

use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags};
use sea_orm::Value;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::inventory::{GroupCheck, MarkedRow};

/// Prepared statements kept: the ledger's statement shapes (by number of
/// books and lines) with room to spare.
const STATEMENT_CACHE: usize = 256;

/// What happened to a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every write went through and is committed.
    Committed,
    /// Nothing was committed: the writes must run on their own.
    RolledBack,
}

struct Task {
    statements: Vec<(String, Vec<Value>)>,
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
    /// Opens the connection and starts the thread. `None` (with a warning)
    /// when the file can't be opened: the SeaORM path then does it all.
    pub(crate) fn start(conn: LedgerConnection) -> Option<SqliteLedger> {
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
                for task in queue {
                    let outcome = run_group(&db, &task.statements, &task.check);
                    let _ = task.reply.send(outcome);
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

    /// Runs `statements` as one transaction and commits it when the rows
    /// they return pass `check`. The caller must hold the SeaORM writer.
    pub(crate) async fn run(
        &self,
        statements: Vec<(String, Vec<Value>)>,
        check: GroupCheck,
    ) -> Outcome {
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

fn run_group(db: &Connection, statements: &[(String, Vec<Value>)], check: &GroupCheck) -> Outcome {
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
fn run_statements(
    db: &Connection,
    statements: &[(String, Vec<Value>)],
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
