//! The SeaORM adapter: orders, audit trail, outbox, refunds, idempotency keys
//! and the local stock, on SQLite (the embedded default) or PostgreSQL.
//!
//! [`SeaOrmStore`] implements every storage port of `checkout-ports`:
//! [`OrderRepository`](checkout_ports::OrderRepository),
//! [`InventoryPort`](checkout_ports::InventoryPort) and
//! [`StockAdmin`](checkout_ports::StockAdmin) over the local stock tables,
//! [`OrderStockLedger`](checkout_ports::OrderStockLedger) (stock and order in
//! one transaction), [`IdempotencyStore`](checkout_ports::IdempotencyStore)
//! and [`OutboxStore`](checkout_ports::OutboxStore).
//!
//! How it is built:
//! - One set of SQL serves both databases: `$n` placeholders (SQLite
//!   accepts them too), instants as integer microseconds, money as integer
//!   minor units, ids as UUIDs bound natively (see `checkout-migrations`).
//!   PostgreSQL-only clauses (`FOR UPDATE`, `SKIP LOCKED`) are added where
//!   several service instances must not do the same work twice.
//! - The SeaORM entities are private (`entity`); rows are converted to and
//!   from domain types explicitly (`convert`), and driver errors are
//!   translated into the ports' error variants (`error`).
//! - SQLite has a single writer. On a file, the hot path's writes (the
//!   ledger pair and every single-statement write) go to the ledger thread,
//!   which groups concurrent ones into one transaction (`sqlite_ledger`);
//!   the rest go through SeaORM's writer, a pool of one connection with
//!   transactions begun `IMMEDIATE`. A write gate keeps the two from
//!   writing at once, so concurrent callers queue in the process instead of
//!   failing with `SQLITE_BUSY`. Reads use a separate pool of read-only
//!   connections, which WAL lets run alongside the writer.
//! - The hot path (`create`, `save`, and the `OrderStockLedger` pair that
//!   carries a whole order in two commits) writes with multi-row inserts,
//!   no read before the write, and compare-and-set updates whose
//!   `RETURNING` row says they applied. On SQLite each transaction's
//!   statements go to the database thread as ONE call (see `sql::Batch`):
//!   BEGIN, one call, COMMIT.

mod catalog;
mod checkpointer;
mod convert;
mod entity;
mod error;
mod idempotency;
mod inventory;
mod orders;
mod outbox;
mod sql;
mod sqlite_ledger;
mod wal_batch;

use std::time::Duration;

use checkout_migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use tracing::{debug, info, warn};

pub use error::StoreError;

/// SQLite page cache of the connections off the hot write path (SeaORM's
/// writer, which now only takes what the ledger thread hands back, and the
/// read connections), in KiB: the embedded catalog and the pending outbox
/// fit, and every connection keeps a cache of its own (SQLite's default is
/// 2 MiB each). The ledger thread keeps the default.
const SIDE_CACHE_KIB: &str = "-512";

/// SQLite: the size the WAL file is truncated back to when a writer starts
/// it over (`journal_size_limit`); without it the file stays as large as
/// the longest burst made it.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// The PostgreSQL advisory lock key held while migrating (an arbitrary
/// constant: "checkout" in ASCII, folded into an `i64`).
const MIGRATION_LOCK: i64 = 0x636865_636b6f7574;

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How to connect. `Default` suits the embedded SQLite file and a small
/// PostgreSQL deployment alike.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    /// PostgreSQL: the pool size. SQLite: the number of read-only
    /// connections (writes always go through one connection, SQLite's single
    /// writer).
    pub max_connections: u32,
    /// How long a caller waits for a pooled connection before the store
    /// answers `Unavailable`. With SQLite this bounds the queue behind the
    /// single writer, so it is generous.
    pub acquire_timeout: Duration,
    /// How long to establish a new connection.
    pub connect_timeout: Duration,
    /// SQLite: how long a statement waits on a lock held by another process
    /// (a `migrate` run, a backup) before failing with `SQLITE_BUSY`.
    pub sqlite_busy_timeout: Duration,
    /// SQLite: `synchronous=FULL` instead of `NORMAL`. NORMAL in WAL mode is
    /// durable across process crashes and loses at most the last
    /// transactions on a power loss; FULL syncs every commit.
    pub sqlite_synchronous_full: bool,
    /// Log every SQL statement at debug level (noisy).
    pub log_statements: bool,
    /// SQLite files: let concurrent orders' ledger writes share a
    /// transaction on the ledger thread (group commit, see the
    /// `sqlite_ledger` module). Off, each write is its own SeaORM
    /// transaction. PostgreSQL always runs them as concurrent transactions
    /// on the pool, whose commits the server already flushes together.
    pub group_commit: bool,
    /// SQLite files: checkpoint the WAL on a thread of its own instead of
    /// inside the commit that fills it (see the `checkpointer` module).
    /// The thread fsyncs the database file through a read-only descriptor
    /// that stays open until the process exits, one per database file:
    /// closing it would drop SQLite's locks on the file.
    pub sqlite_background_checkpoint: bool,
    /// SQLite files: the ledger thread writes a commit's WAL frames in a
    /// few system calls instead of two a frame (see the `wal_batch`
    /// module). Only the number of calls changes, not what is in the file
    /// when a commit returns.
    pub sqlite_wal_batching: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            sqlite_busy_timeout: Duration::from_secs(5),
            sqlite_synchronous_full: false,
            log_statements: false,
            group_commit: true,
            sqlite_background_checkpoint: true,
            sqlite_wal_batching: true,
        }
    }
}

/// The file a `sqlite:` URL names (`sqlite://a.db`, `sqlite:///abs/a.db`,
/// `sqlite:a.db`, each with optional `?options`), as SeaORM's driver reads
/// it.
fn sqlite_file_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty()).then(|| path.to_owned())
}

/// The SeaORM store. Cheap to clone: clones share the connection pools.
#[derive(Debug, Clone)]
pub struct SeaOrmStore {
    /// Every write (and every read inside a write transaction).
    writer: DatabaseConnection,
    /// Plain reads. With PostgreSQL the same pool as `writer`.
    reader: DatabaseConnection,
    backend: Backend,
    /// SQLite file databases with group commit: the thread that runs each
    /// group on a connection of its own (`sqlite_ledger`).
    sqlite_ledger: Option<sqlite_ledger::SqliteLedger>,
    /// SQLite files: the thread that checkpoints the WAL
    /// (`sqlite_background_checkpoint`).
    checkpointer: Option<checkpointer::Checkpointer>,
    /// Keeps the SeaORM writer and the SQLite ledger thread from writing
    /// at the same time.
    gate: WriteGate,
    /// The outbox relay's lease and its events in flight (`outbox`).
    relay: outbox::RelayLease,
    /// The catalog's prices as last read or written, for quotes
    /// (`catalog`).
    prices: catalog::PriceMemory,
}

/// SQLite has one writer at a time. The store writes through two
/// connections to a file database — SeaORM's writer and the ledger
/// thread's (`sqlite_ledger`) — and, rather than let them collide in
/// SQLite's busy handler (which sleeps), each takes this gate around its
/// writes. The checkpoint thread (`checkpointer`) takes it too while it
/// restarts the WAL, which needs the writer lock. Elsewhere (PostgreSQL,
/// an in-memory SQLite database) the gate is open and costs nothing.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteGate(Option<std::sync::Arc<tokio::sync::Mutex<()>>>);

impl WriteGate {
    fn closed() -> Self {
        Self(Some(std::sync::Arc::default()))
    }

    /// Waits for the gate (async side).
    async fn enter(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.0 {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        }
    }

    /// Waits for the gate from a thread outside the async runtime (the
    /// ledger thread).
    pub(crate) fn enter_blocking(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        self.0.as_ref().map(|lock| lock.blocking_lock())
    }
}

/// A write transaction holding the write gate until it commits, rolls
/// back or is dropped.
#[derive(Debug)]
pub(crate) struct WriteTxn {
    txn: DatabaseTransaction,
    _gate: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::ops::Deref for WriteTxn {
    type Target = DatabaseTransaction;
    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

impl WriteTxn {
    pub(crate) async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }

    pub(crate) async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}

impl SeaOrmStore {
    /// Opens the database at `url` (`sqlite://./checkout.db`,
    /// `sqlite::memory:`, `postgres://user@host/db`). A SQLite file is
    /// created when missing and put in WAL mode. The schema is not touched:
    /// call [`SeaOrmStore::migrate`].
    pub async fn connect(url: &str, options: StoreOptions) -> Result<SeaOrmStore, StoreError> {
        if url.starts_with("sqlite:") {
            Self::connect_sqlite(url, &options).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut opts = ConnectOptions::new(url);
            opts.max_connections(options.max_connections.max(1))
                .min_connections(0)
                .acquire_timeout(options.acquire_timeout)
                .connect_timeout(options.connect_timeout)
                .sqlx_logging(options.log_statements);
            let pool = Database::connect(opts).await.map_err(StoreError::connect)?;
            info!(
                backend = "postgres",
                max_connections = options.max_connections,
                "store connected"
            );
            Ok(SeaOrmStore {
                writer: pool.clone(),
                reader: pool,
                backend: Backend::Postgres,
                sqlite_ledger: None,
                checkpointer: None,
                gate: WriteGate::default(),
                relay: outbox::RelayLease::default(),
                prices: catalog::PriceMemory::default(),
            })
        } else {
            Err(StoreError::UnsupportedUrl(
                url.split(':').next().unwrap_or_default().to_owned(),
            ))
        }
    }

    async fn connect_sqlite(url: &str, options: &StoreOptions) -> Result<SeaOrmStore, StoreError> {
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let busy = options.sqlite_busy_timeout;
        let sync = if options.sqlite_synchronous_full {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        };
        // The single writer: one connection that never idles out, so the
        // pool never has to reopen it (and an in-memory database lives as
        // long as the store).
        let mut w = ConnectOptions::new(url);
        w.max_connections(1)
            .min_connections(1)
            // A local file needs no liveness probe, and on the single
            // writer every probe would queue behind (and delay) writes.
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(options.acquire_timeout)
            .connect_timeout(options.connect_timeout)
            .sqlx_logging(options.log_statements)
            .map_sqlx_sqlite_opts(move |o| {
                let o = o
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(sync)
                    .busy_timeout(busy)
                    .foreign_keys(true);
                // An in-memory database lives in its cache: left alone.
                if memory {
                    o
                } else {
                    o.pragma("cache_size", SIDE_CACHE_KIB)
                        .pragma("journal_size_limit", WAL_SIZE_LIMIT_BYTES.to_string())
                }
            });
        let writer = Database::connect(w).await.map_err(StoreError::connect)?;
        let reader = if memory {
            // Every connection to `:memory:` is a database of its own: read
            // through the writer.
            writer.clone()
        } else {
            let mut r = ConnectOptions::new(url);
            r.max_connections(options.max_connections.max(1))
                .min_connections(0)
                .test_before_acquire(false)
                .acquire_timeout(options.acquire_timeout)
                .connect_timeout(options.connect_timeout)
                .sqlx_logging(options.log_statements)
                .map_sqlx_sqlite_opts(move |o| {
                    // Read-only, and never creating (an invalid pairing
                    // for SQLite, which a `mode=rwc` URL would ask for).
                    o.read_only(true)
                        .create_if_missing(false)
                        .busy_timeout(busy)
                        .foreign_keys(true)
                        .pragma("cache_size", SIDE_CACHE_KIB)
                });
            Database::connect(r).await.map_err(StoreError::connect)?
        };
        info!(
            backend = "sqlite",
            readers = options.max_connections,
            "store connected"
        );
        let file = (!memory).then(|| sqlite_file_path(url)).flatten();
        let gate = WriteGate::closed();
        let checkpointer = match &file {
            Some(path) if options.sqlite_background_checkpoint => {
                match checkpointer::Checkpointer::start(path, gate.clone()) {
                    Ok(c) => {
                        // The writer (a pool of one that never reopens)
                        // leaves checkpoints to the thread from now on.
                        writer
                            .execute_unprepared("PRAGMA wal_autocheckpoint = 0")
                            .await
                            .map_err(StoreError::connect)?;
                        Some(c)
                    }
                    Err(e) => {
                        warn!(error = %e, "WAL checkpoint thread not started; SQLite checkpoints in the commits");
                        None
                    }
                }
            }
            _ => None,
        };
        let mut store = SeaOrmStore {
            writer,
            reader,
            backend: Backend::Sqlite,
            sqlite_ledger: None,
            checkpointer: None,
            gate: WriteGate::default(),
            relay: outbox::RelayLease::default(),
            prices: catalog::PriceMemory::default(),
        };
        if let (true, Some(path)) = (options.group_commit, file) {
            store.sqlite_ledger = sqlite_ledger::SqliteLedger::start(
                sqlite_ledger::LedgerConnection {
                    path,
                    synchronous_full: options.sqlite_synchronous_full,
                    busy_timeout: busy,
                    autocheckpoint: checkpointer.is_none(),
                    wal_batching: options.sqlite_wal_batching,
                },
                gate.clone(),
            );
        }
        // Closed once a second connection writes: the ledger thread, or the
        // checkpoint thread's WAL restarts.
        if store.sqlite_ledger.is_some() || checkpointer.is_some() {
            store.gate = gate;
        }
        store.checkpointer = checkpointer;
        Ok(store)
    }

    /// Applies every pending migration.
    ///
    /// On PostgreSQL the migrations run in one transaction holding an
    /// advisory lock: when several instances start at once, the first
    /// migrates and the others wait, then find nothing left to do; and as
    /// PostgreSQL's DDL is transactional, a failed migration leaves nothing
    /// half-applied. SQLite's single writer connection serialises them
    /// already.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Postgres => {
                let txn = self.writer.begin().await.map_err(StoreError::Migrate)?;
                txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
                    .await
                    .map_err(StoreError::Migrate)?;
                Migrator::up(&txn, None)
                    .await
                    .map_err(StoreError::Migrate)?;
                txn.commit().await.map_err(StoreError::Migrate)?;
            }
            Backend::Sqlite => {
                Migrator::up(&self.writer, None)
                    .await
                    .map_err(StoreError::Migrate)?;
            }
        }
        debug!("migrations applied");
        Ok(())
    }

    /// Readiness: `true` when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        let ok = self.reader.execute_unprepared("SELECT 1").await.is_ok();
        if !ok {
            debug!("store ping failed");
        }
        ok
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the ledger writes run on a thread of their own (SQLite file
    /// databases with group commit): the single writer that every order
    /// waits for, so a thread the host should leave a core to.
    pub fn has_writer_thread(&self) -> bool {
        self.sqlite_ledger.is_some()
    }

    /// Closes the pools (waits for connections in use to be returned).
    pub async fn close(self) -> Result<(), StoreError> {
        let same = self.backend == Backend::Postgres;
        self.writer.close().await.map_err(StoreError::connect)?;
        if !same {
            // A shared in-memory reader is the writer, already closed.
            let _ = self.reader.close().await;
        }
        Ok(())
    }

    fn db_backend(&self) -> DbBackend {
        match self.backend {
            Backend::Sqlite => DbBackend::Sqlite,
            Backend::Postgres => DbBackend::Postgres,
        }
    }

    /// Starts a write transaction. On SQLite it is `BEGIN IMMEDIATE`: the
    /// write lock is taken up front, so a transaction that reads before it
    /// writes can never fail to upgrade its lock (another process holding
    /// the database waits in `busy_timeout` instead). It holds the write
    /// gate (see [`WriteGate`]) until it ends.
    async fn begin_write(&self) -> Result<WriteTxn, DbErr> {
        let gate = self.gate.enter().await;
        let mode = (self.backend == Backend::Sqlite).then_some(SqliteTransactionMode::Immediate);
        let txn = self
            .writer
            .begin_with_options(TransactionOptions {
                sqlite_transaction_mode: mode,
                ..TransactionOptions::default()
            })
            .await?;
        Ok(WriteTxn { txn, _gate: gate })
    }

    /// Runs one writing statement on its own and returns how many rows it
    /// changed. On a SQLite file with group commit it rides the ledger
    /// thread's next group (sharing its commit with the orders' writes
    /// instead of holding the writer for a commit of its own); otherwise,
    /// or when it failed there, it runs on the SeaORM writer inside the
    /// write gate, which also gives a failure its precise error.
    async fn exec_write(&self, statement: sea_orm::Statement) -> Result<u64, DbErr> {
        if let Some(changed) = self.on_ledger_thread(vec![statement.clone()]).await {
            return Ok(changed);
        }
        self.exec_on_writer(statement).await
    }

    /// Runs one writing statement on the SeaORM writer inside the write
    /// gate: [`Self::exec_write`]'s way when the ledger thread is absent or
    /// has already refused the write.
    async fn exec_on_writer(&self, statement: sea_orm::Statement) -> Result<u64, DbErr> {
        let _gate = self.gate.enter().await;
        Ok(self.writer.execute_raw(statement).await?.rows_affected())
    }

    /// Runs writing statements, all or none, in the SQLite ledger thread's
    /// next group. The rows they changed once committed; `None` when there
    /// is no ledger thread or nothing was committed (the caller then writes
    /// the SeaORM way).
    async fn on_ledger_thread(&self, statements: Vec<sea_orm::Statement>) -> Option<u64> {
        let ledger = self.sqlite_ledger.as_ref()?;
        let statements = statements
            .into_iter()
            .map(|statement| {
                (
                    statement.sql,
                    statement.values.map(|v| v.0).unwrap_or_default(),
                )
            })
            .collect();
        match ledger
            .submit(statements, sqlite_ledger::Expect::Plain)
            .await
        {
            sqlite_ledger::Outcome::Committed(changed) => Some(changed),
            sqlite_ledger::Outcome::RolledBack => None,
        }
    }

    fn is_postgres(&self) -> bool {
        self.backend == Backend::Postgres
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_file_path;

    #[test]
    fn the_file_of_a_sqlite_url() {
        assert_eq!(
            sqlite_file_path("sqlite://./checkout.db").as_deref(),
            Some("./checkout.db")
        );
        assert_eq!(
            sqlite_file_path("sqlite:///tmp/a.db?mode=rwc").as_deref(),
            Some("/tmp/a.db")
        );
        assert_eq!(sqlite_file_path("sqlite:a.db").as_deref(), Some("a.db"));
        assert_eq!(sqlite_file_path("sqlite://?mode=memory"), None);
        assert_eq!(sqlite_file_path("postgres://x/y"), None);
    }
}

/// Plan checks for the statements whose PostgreSQL plans decide how the
/// service scales: each runs on a fresh, migrated database that has no
/// statistics yet, as a new deployment does, so the planner works from its
/// defaults. They check the shape of a plan, never its speed.
#[cfg(test)]
pub(crate) mod plan_check {
    use sea_orm::{ConnectionTrait, Database, DbBackend, Statement, TransactionTrait, Value};
    use uuid::Uuid;

    use super::{SeaOrmStore, StoreOptions};

    /// One node of a plan: on which table and index, how it joins and
    /// where it hangs (`SubPlan`, `Inner`, …).
    #[derive(Debug, Default)]
    pub(crate) struct PlanNode {
        pub(crate) node_type: Option<String>,
        pub(crate) relation: Option<String>,
        pub(crate) index: Option<String>,
        /// What an index is searched for; `None` on a node that reads a
        /// whole index.
        pub(crate) index_cond: Option<String>,
        pub(crate) join_type: Option<String>,
        pub(crate) parent: Option<String>,
    }

    fn collect(node: &serde_json::Value, out: &mut Vec<PlanNode>) {
        let text = |k: &str| node[k].as_str().map(str::to_owned);
        out.push(PlanNode {
            node_type: text("Node Type"),
            relation: text("Relation Name"),
            index: text("Index Name"),
            index_cond: text("Index Cond"),
            join_type: text("Join Type"),
            parent: text("Parent Relationship"),
        });
        for child in node["Plans"].as_array().into_iter().flatten() {
            collect(child, out);
        }
    }

    fn explain(sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("EXPLAIN (FORMAT JSON) {sql}"),
            values,
        )
    }

    fn nodes(row: sea_orm::QueryResult) -> (Vec<PlanNode>, String) {
        let plan = row.try_get_by_index::<serde_json::Value>(0).unwrap();
        let mut nodes = Vec::new();
        collect(&plan[0]["Plan"], &mut nodes);
        (nodes, plan.to_string())
    }

    /// A migrated SQLite database in a directory of the test's own.
    pub(crate) struct FreshSqlite {
        pub(crate) store: SeaOrmStore,
        _dir: tempfile::TempDir,
    }

    impl FreshSqlite {
        pub(crate) async fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/plan.db?mode=rwc", dir.path().display());
            let store = SeaOrmStore::connect(&url, StoreOptions::default())
                .await
                .unwrap();
            store.migrate().await.unwrap();
            Self { store, _dir: dir }
        }

        /// The steps of SQLite's plan for `statement` (`EXPLAIN QUERY
        /// PLAN`'s details: `SEARCH t USING INDEX i (…)`, `SCAN t`, …).
        pub(crate) async fn plan(&self, statement: &Statement) -> Vec<String> {
            let rows = self
                .store
                .reader
                .query_all_raw(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    format!("EXPLAIN QUERY PLAN {}", statement.sql),
                    statement.values.clone().map(|v| v.0).unwrap_or_default(),
                ))
                .await
                .unwrap();
            rows.iter()
                .map(|r| r.try_get_by_index::<String>(3).unwrap())
                .collect()
        }

        pub(crate) async fn finish(self) {
            self.store.close().await.unwrap();
        }
    }

    /// A migrated PostgreSQL database of the test's own.
    pub(crate) struct FreshPostgres {
        pub(crate) store: SeaOrmStore,
        server: String,
        name: String,
    }

    impl FreshPostgres {
        /// `None`, with a note saying why, when `TEST_DATABASE_URL` is unset.
        pub(crate) async fn new() -> Option<Self> {
            let Some(url) = std::env::var("TEST_DATABASE_URL")
                .ok()
                .filter(|u| !u.is_empty())
            else {
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("skipping PostgreSQL plan check: TEST_DATABASE_URL is not set");
                }
                return None;
            };
            let server = url.rsplit_once('/').map(|(s, _)| s.to_owned()).unwrap();
            let name = format!("t_{}", Uuid::new_v4().simple());
            let admin = Database::connect(format!("{server}/postgres"))
                .await
                .unwrap();
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            admin.close().await.unwrap();
            let store = SeaOrmStore::connect(&format!("{server}/{name}"), StoreOptions::default())
                .await
                .unwrap();
            store.migrate().await.unwrap();
            Some(Self {
                store,
                server,
                name,
            })
        }

        /// The database's URL, for a store of the test's own on it.
        pub(crate) fn url(&self) -> String {
            format!("{}/{}", self.server, self.name)
        }

        /// Every node of the plan PostgreSQL makes for `sql` with
        /// `values`, and the whole plan as text for failure messages.
        pub(crate) async fn plan(&self, sql: &str, values: Vec<Value>) -> (Vec<PlanNode>, String) {
            let row = self
                .store
                .reader
                .query_one_raw(explain(sql, values))
                .await
                .unwrap()
                .unwrap();
            nodes(row)
        }

        /// Asserts that `index` can serve `statement`: it is in the plan
        /// made with sequential scans priced out (`enable_seqscan = off`),
        /// whatever the table's size.
        pub(crate) async fn assert_can_use_index(&self, statement: &Statement, index: &str) {
            let values = statement.values.clone().map(|v| v.0).unwrap_or_default();
            let txn = self.store.reader.begin().await.unwrap();
            txn.execute_unprepared("SET LOCAL enable_seqscan = off")
                .await
                .unwrap();
            let row = txn
                .query_one_raw(explain(&statement.sql, values))
                .await
                .unwrap()
                .unwrap();
            txn.rollback().await.unwrap();
            let (nodes, plan) = nodes(row);
            assert!(
                nodes.iter().any(|n| n.index.as_deref() == Some(index)),
                "{plan}"
            );
        }

        pub(crate) async fn finish(self) {
            self.store.close().await.unwrap();
            let admin = Database::connect(format!("{}/postgres", self.server))
                .await
                .unwrap();
            admin
                .execute_unprepared(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await
                .unwrap();
            admin.close().await.unwrap();
        }
    }
}
