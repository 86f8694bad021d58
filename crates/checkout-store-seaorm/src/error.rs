//! Driver errors translated into what the ports promise their callers.
//!
//! One classification ([`classify`]) decides what a database error means —
//! a unique key taken, a missing parent row, a transient condition worth
//! retrying (busy, locked, deadlock, serialization failure, pool timeout,
//! lost connection) or anything else — and small adapters turn that into
//! each port's variants. No driver type leaves the crate.

use checkout_ports::{IdempotencyError, InventoryError, RepositoryError};
use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// Why the store could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names a database this store does not support.
    #[error("unsupported database URL scheme `{0}` (expected sqlite: or postgres:)")]
    UnsupportedUrl(String),
    /// The database could not be reached or opened.
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    /// A migration failed; the schema is as the last successful one left it.
    #[error("migration failed: {0}")]
    Migrate(#[source] DbErr),
}

impl StoreError {
    pub(crate) fn connect(e: DbErr) -> Self {
        StoreError::Connect(e.to_string())
    }
}

/// What a database error means to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A unique or primary key is already taken.
    Unique(String),
    /// A referenced row does not exist.
    ForeignKey(String),
    /// Worth retrying later: the database is busy, locked, unreachable, or
    /// gave up on a transaction (deadlock, serialization failure).
    Transient(String),
    /// Anything else.
    Other(String),
}

/// PostgreSQL SQLSTATE classes and codes that mean "try again later".
fn transient_sqlstate(code: &str) -> bool {
    matches!(
        code,
        "40001" // serialization_failure
            | "40P01" // deadlock_detected
            | "55P03" // lock_not_available
            | "57014" // query_canceled (statement timeout)
            | "57P01" // admin_shutdown
            | "57P02" // crash_shutdown
            | "57P03" // cannot_connect_now
    ) || code.starts_with("08") // connection exceptions
        || code.starts_with("53") // insufficient resources (too many connections, …)
}

/// SQLite primary result codes that mean "try again later" (extended codes
/// keep the primary code in their low byte).
fn transient_sqlite(code: &str) -> bool {
    const SQLITE_BUSY: i64 = 5;
    const SQLITE_LOCKED: i64 = 6;
    code.parse::<i64>()
        .map(|c| matches!(c & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
        .unwrap_or(false)
}

/// The code the database gave an error: PostgreSQL's SQLSTATE, SQLite's
/// (extended) result code.
pub(crate) fn db_code(e: &DbErr) -> Option<String> {
    match e {
        DbErr::Exec(RuntimeErr::SqlxError(inner)) | DbErr::Query(RuntimeErr::SqlxError(inner)) => {
            match inner.as_ref() {
                sea_orm::sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
                _ => None,
            }
        }
        _ => None,
    }
}

pub(crate) fn classify(e: &DbErr) -> Failure {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(m)) => return Failure::Unique(m),
        Some(SqlErr::ForeignKeyConstraintViolation(m)) => return Failure::ForeignKey(m),
        _ => {}
    }
    let text = e.to_string();
    match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Failure::Transient(text),
        DbErr::Exec(RuntimeErr::SqlxError(inner)) | DbErr::Query(RuntimeErr::SqlxError(inner)) => {
            use sea_orm::sqlx::Error as X;
            match inner.as_ref() {
                X::Database(_) => {
                    let code = db_code(e).unwrap_or_default();
                    if transient_sqlstate(&code) || transient_sqlite(&code) {
                        Failure::Transient(text)
                    } else {
                        Failure::Other(text)
                    }
                }
                X::PoolTimedOut | X::PoolClosed | X::Io(_) | X::Tls(_) | X::WorkerCrashed => {
                    Failure::Transient(text)
                }
                _ => Failure::Other(text),
            }
        }
        _ => Failure::Other(text),
    }
}

pub(crate) fn repo_err(e: DbErr) -> RepositoryError {
    match classify(&e) {
        Failure::Unique(m) => RepositoryError::Duplicate(m),
        Failure::Transient(m) => RepositoryError::Unavailable(m),
        Failure::ForeignKey(m) | Failure::Other(m) => RepositoryError::Unexpected(m),
    }
}

pub(crate) fn inventory_err(e: DbErr) -> InventoryError {
    match classify(&e) {
        Failure::Transient(m) => InventoryError::ServiceUnavailable(m),
        Failure::Unique(m) | Failure::ForeignKey(m) | Failure::Other(m) => {
            InventoryError::Unexpected(m)
        }
    }
}

pub(crate) fn idempotency_err(e: DbErr) -> IdempotencyError {
    match classify(&e) {
        Failure::Transient(m) => IdempotencyError::Unavailable(m),
        Failure::Unique(m) | Failure::ForeignKey(m) | Failure::Other(m) => {
            IdempotencyError::Unexpected(m)
        }
    }
}

/// `map_err` shorthands for the ports' error types.
pub(crate) trait DbResultExt<T> {
    fn repo(self) -> Result<T, RepositoryError>;
    fn inv(self) -> Result<T, InventoryError>;
    fn idem(self) -> Result<T, IdempotencyError>;
}

impl<T> DbResultExt<T> for Result<T, DbErr> {
    fn repo(self) -> Result<T, RepositoryError> {
        self.map_err(repo_err)
    }
    fn inv(self) -> Result<T, InventoryError> {
        self.map_err(inventory_err)
    }
    fn idem(self) -> Result<T, IdempotencyError> {
        self.map_err(idempotency_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes() {
        assert!(transient_sqlstate("40001"));
        assert!(transient_sqlstate("40P01"));
        assert!(transient_sqlstate("08006"));
        assert!(!transient_sqlstate("23505"));
        assert!(transient_sqlite("5"));
        assert!(transient_sqlite("517")); // SQLITE_BUSY_SNAPSHOT
        assert!(transient_sqlite("262")); // SQLITE_LOCKED_SHAREDCACHE
        assert!(!transient_sqlite("2067")); // SQLITE_CONSTRAINT_UNIQUE
    }

    #[test]
    fn pool_timeouts_are_transient() {
        let e = DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::Timeout);
        assert!(matches!(classify(&e), Failure::Transient(_)));
        assert!(matches!(repo_err(e), RepositoryError::Unavailable(_)));
    }
}
