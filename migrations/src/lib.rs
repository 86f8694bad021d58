//! The checkout's database schema, one sea-orm migration per change.
//!
//! The binary applies them at start-up (`checkout-service migrate`, or
//! `SeaOrmStore::migrate`); every migration has an `up` and a `down`, so the
//! schema can be rolled back step by step.
//!
//! The same migrations serve SQLite (the embedded default) and PostgreSQL.
//! They are written as SQL rather than through the query builder so that
//! every constraint can be read — and its reason stated — right where it is
//! declared. The few types the two databases spell differently are written
//! as placeholders and rendered per backend by [`render`]:
//!
//! | placeholder | PostgreSQL | SQLite |
//! |---|---|---|
//! | `{uuid}` | `UUID` (16 bytes, native) | `BLOB` (the 16 bytes the driver binds a UUID as) |
//! | `{bytes}` | `BYTEA` | `BLOB` |
//! | `{serial}` | `BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY` | `INTEGER PRIMARY KEY` (the rowid) |
//!
//! Conventions shared by every table (and relied on by the store):
//! - instants are `BIGINT` microseconds since the Unix epoch, UTC. One
//!   representation that both databases compare, index and order the same
//!   way, exact to PostgreSQL's own precision, with none of the pitfalls of
//!   comparing timestamps stored as text in SQLite;
//! - money is `BIGINT` minor units next to the ISO 4217 code it is counted
//!   in (never a float, never a decimal whose scale could drift);
//! - JSON is `TEXT`: the store reads and writes whole documents and never
//!   queries inside them;
//! - enumerations are `TEXT` with a `CHECK` listing the allowed values, so a
//!   bug or a hand-written `UPDATE` cannot invent a state. On PostgreSQL the
//!   one-column rules of the tables an order writes are domains since
//!   `m20261203_000007_column_domains` (same rules, checked at a fraction of
//!   the cost).

pub use sea_orm_migration::prelude::*;

/// Implements `MigrationTrait` for the module's `Migration` as its `UP`
/// statements up and its `DOWN` statements down, each rendered for the
/// connection's backend ([`render`]): the shape of every migration that
/// is SQL alone.
macro_rules! sql_migration {
    () => {
        #[async_trait::async_trait]
        impl MigrationTrait for Migration {
            async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                crate::run(manager, UP).await
            }

            async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                crate::run(manager, DOWN).await
            }
        }
    };
}

mod m20261125_000001_orders;
mod m20261125_000002_payments;
mod m20261125_000003_idempotency;
mod m20261125_000004_local_stock;
mod m20261203_000005_outbox_key;
mod m20261203_000006_outbox_fillfactor;
mod m20261203_000007_column_domains;
mod m20261203_000008_refused_write;
mod m20261203_000009_relay_lease;
mod m20261206_000010_open_reservation_indexes;

/// Applies and rolls back the checkout schema.
#[derive(Debug, Clone, Copy, Default)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_orders::Migration),
            Box::new(m20261125_000002_payments::Migration),
            Box::new(m20261125_000003_idempotency::Migration),
            Box::new(m20261125_000004_local_stock::Migration),
            Box::new(m20261203_000005_outbox_key::Migration),
            Box::new(m20261203_000006_outbox_fillfactor::Migration),
            Box::new(m20261203_000007_column_domains::Migration),
            Box::new(m20261203_000008_refused_write::Migration),
            Box::new(m20261203_000009_relay_lease::Migration),
            Box::new(m20261206_000010_open_reservation_indexes::Migration),
        ]
    }
}

/// Renders a statement's type placeholders for `backend` (see the module
/// documentation).
pub fn render(backend: sea_orm::DbBackend, sql: &str) -> String {
    let (uuid, bytes, serial) = match backend {
        sea_orm::DbBackend::Postgres => (
            "UUID",
            "BYTEA",
            "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        ),
        _ => ("BLOB", "BLOB", "INTEGER PRIMARY KEY"),
    };
    sql.replace("{uuid}", uuid)
        .replace("{bytes}", bytes)
        .replace("{serial}", serial)
}

/// Runs `statements` in order on PostgreSQL; nothing on SQLite (for a
/// change only PostgreSQL needs).
async fn run_on_postgres(
    manager: &SchemaManager<'_>,
    statements: &[impl AsRef<str>],
) -> Result<(), DbErr> {
    match manager.get_database_backend() {
        sea_orm::DbBackend::Postgres => run(manager, statements).await,
        _ => Ok(()),
    }
}

/// Runs `statements` in order, each rendered for the connection's backend.
async fn run(manager: &SchemaManager<'_>, statements: &[impl AsRef<str>]) -> Result<(), DbErr> {
    let backend = manager.get_database_backend();
    let conn = manager.get_connection();
    for sql in statements {
        conn.execute_unprepared(&render(backend, sql.as_ref()))
            .await?;
    }
    Ok(())
}
