//! The checkout's SQL store on SQLite (the embedded default) or PostgreSQL:
//! orders with their items, audit trail, outbox, payment attempts, refunds,
//! webhook inbox, idempotency keys and the local stock with its
//! reservations — every storage port of `checkout-ports`, plus the
//! `OrderStockLedger` fast path.
//!
//! SeaORM provides the connections, transactions and migrations; the
//! queries are hand-written SQL (one text for both backends, `?`
//! placeholders rewritten for PostgreSQL) because the hot path wants
//! multi-row inserts and conditional updates that an entity API would spread
//! over more round trips. No driver type leaves this crate: rows are
//! converted to domain types here and driver errors to the ports' variants.

mod convert;
mod error;
mod idempotency;
mod migrator;
mod orders;
mod outbox;
mod schema;
mod stock;

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr,
    ExecResult, QueryResult, Statement, Value,
};
use sea_orm_migration::MigratorTrait;

pub use error::StoreError;
pub use migrator::Migrator;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// PostgreSQL pool size. SQLite always uses one connection: it has one
    /// writer, and a single connection never meets `SQLITE_BUSY`.
    pub max_connections: u32,
    /// How long SQLite waits on a lock held by another process.
    pub busy_timeout: Duration,
    /// How long a caller waits for a pooled connection.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            busy_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// The store. Cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct SqlStore {
    db: DatabaseConnection,
    pg: bool,
}

impl SqlStore {
    /// Opens `url` (`sqlite://FILE` — created if missing — or
    /// `postgres://…`). SQLite runs in WAL mode with `synchronous=NORMAL`
    /// (durable across process crashes; a power loss may drop the last
    /// commits but never corrupts), foreign keys on and a busy timeout.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<SqlStore, StoreError> {
        let pg = url.starts_with("postgres");
        let url = if !pg && !url.contains("mode=") {
            format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
        } else {
            url.to_owned()
        };
        let mut opts = ConnectOptions::new(url);
        opts.sqlx_logging(false)
            .acquire_timeout(options.acquire_timeout);
        if pg {
            opts.max_connections(options.max_connections)
                .min_connections(1);
        } else {
            let busy = options.busy_timeout;
            opts.max_connections(1)
                .min_connections(1)
                .map_sqlx_sqlite_opts(move |o| {
                    o.journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal)
                        .foreign_keys(true)
                        .busy_timeout(busy)
                        .create_if_missing(true)
                });
        }
        let db = Database::connect(opts)
            .await
            .map_err(|e| StoreError::Connect(e.to_string()))?;
        Ok(SqlStore { db, pg })
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        Migrator::up(&self.db, None)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))
    }

    /// Reverts every migration (tests, tooling).
    pub async fn migrate_down_all(&self) -> Result<(), StoreError> {
        Migrator::down(&self.db, None)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> bool {
        self.db.ping().await.is_ok()
    }

    /// `true` on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.pg
    }

    fn backend(&self) -> DatabaseBackend {
        if self.pg {
            DatabaseBackend::Postgres
        } else {
            DatabaseBackend::Sqlite
        }
    }

    /// Rewrites `?` placeholders as `$1, $2, …` for PostgreSQL.
    fn sql(&self, q: &str) -> String {
        if !self.pg {
            return q.to_owned();
        }
        let mut out = String::with_capacity(q.len() + 16);
        let mut n = 0;
        for c in q.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    }

    fn stmt(&self, q: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(self.backend(), self.sql(q), values)
    }

    async fn exec(
        &self,
        c: &impl ConnectionTrait,
        q: &str,
        values: Vec<Value>,
    ) -> Result<ExecResult, DbErr> {
        c.execute_raw(self.stmt(q, values)).await
    }

    async fn all(
        &self,
        c: &impl ConnectionTrait,
        q: &str,
        values: Vec<Value>,
    ) -> Result<Vec<QueryResult>, DbErr> {
        c.query_all_raw(self.stmt(q, values)).await
    }

    async fn one(
        &self,
        c: &impl ConnectionTrait,
        q: &str,
        values: Vec<Value>,
    ) -> Result<Option<QueryResult>, DbErr> {
        c.query_one_raw(self.stmt(q, values)).await
    }
}

/// `?, ?, ?` for `n` values.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `(?, ?), (?, ?)` for `rows` rows of `cols` values.
fn rows_placeholders(rows: usize, cols: usize) -> String {
    let one = format!("({})", placeholders(cols));
    vec![one; rows].join(", ")
}
