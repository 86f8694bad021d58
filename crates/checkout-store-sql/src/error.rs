//! Driver errors, translated into the ports' variants.

use checkout_ports::{IdempotencyError, InventoryError, RepositoryError};
use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// Opening or migrating the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("migration failed: {0}")]
    Migrate(String),
}

/// What kind of failure a driver error is.
pub(crate) enum Kind {
    Unique(String),
    /// Busy, locked, serialization failure, deadlock, pool exhausted, I/O:
    /// worth retrying later.
    Transient(String),
    Other(String),
}

pub(crate) fn classify(e: &DbErr) -> Kind {
    if let Some(SqlErr::UniqueConstraintViolation(m)) = e.sql_err() {
        return Kind::Unique(m);
    }
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    let transient = matches!(e, DbErr::ConnectionAcquire(_) | DbErr::Conn(_))
        || matches!(
            e,
            DbErr::Exec(RuntimeErr::SqlxError(_)) | DbErr::Query(RuntimeErr::SqlxError(_))
        ) && [
            "database is locked",
            "busy",
            "40001",
            "40p01",
            "could not serialize",
            "deadlock",
            "pool timed out",
            "connection",
            "broken pipe",
        ]
        .iter()
        .any(|needle| lower.contains(needle));
    if transient {
        Kind::Transient(text)
    } else {
        Kind::Other(text)
    }
}

pub(crate) fn repo(e: DbErr) -> RepositoryError {
    match classify(&e) {
        Kind::Unique(m) => RepositoryError::Duplicate(m),
        Kind::Transient(m) => RepositoryError::Unavailable(m),
        Kind::Other(m) => RepositoryError::Unexpected(m),
    }
}

pub(crate) fn inventory(e: DbErr) -> InventoryError {
    match classify(&e) {
        Kind::Transient(m) => InventoryError::ServiceUnavailable(m),
        Kind::Unique(m) | Kind::Other(m) => InventoryError::Unexpected(m),
    }
}

pub(crate) fn idempotency(e: DbErr) -> IdempotencyError {
    match classify(&e) {
        Kind::Transient(m) => IdempotencyError::Unavailable(m),
        Kind::Unique(m) | Kind::Other(m) => IdempotencyError::Unexpected(m),
    }
}
