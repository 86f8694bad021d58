//! The outbox is keyed by (order, sequence) instead of by event id.
//!
//! An event's id is a UUIDv5 of its order and sequence (docs/events.md): a
//! hash, so an index on it puts every new event on a random leaf, and each
//! commit wrote one such page per event, five per order: dropping it cut
//! what an order writes on SQLite by a quarter to a third, and its WAL on
//! PostgreSQL by 7 % (docs/performance.md). The order's
//! id is a UUIDv7, so (order, sequence) grows at the right edge, keeps an
//! order's events together, and is already unique. The id stays a column —
//! it is what consumers de-duplicate on — and, being derived from the key,
//! is unique with it. The relay addresses events by the key.
//!
//! SQLite cannot change a table's primary key, so there the table is
//! rebuilt; the migration runs in one transaction on both backends, so a
//! crash leaves the old table or the new one, never neither.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The outbox's columns, in the order both table versions declare them.
const COLUMNS: &str = "id, order_id, sequence, event_type, payload, occurred_at, published_at, \
     attempts, last_error, parked_at, claimed_until, next_attempt_at";

/// The outbox table, named `{name}`, with the key constraint on `id`
/// (`{id_key}`) and on `(order_id, sequence)` (`{order_key}`) left open:
/// `""` and `PRIMARY KEY` after this migration, `PRIMARY KEY` and `UNIQUE`
/// before it. The first migration gives each column's reason.
const TABLE: &str = r#"CREATE TABLE {name} (
        id {uuid} NOT NULL {id_key},
        order_id {uuid} NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
        sequence BIGINT NOT NULL CHECK (sequence >= 1),
        event_type TEXT NOT NULL,
        payload TEXT NOT NULL,
        occurred_at BIGINT NOT NULL,
        published_at BIGINT,
        attempts BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        last_error TEXT,
        parked_at BIGINT,
        claimed_until BIGINT,
        next_attempt_at BIGINT,
        {order_key} (order_id, sequence)
    )"#;

/// The relay's and the purge's indexes, which the rebuild drops with the
/// old table.
const INDEXES: &[&str] = &[
    "CREATE INDEX outbox_unpublished ON outbox (order_id, sequence) \
        WHERE published_at IS NULL AND parked_at IS NULL",
    "CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL",
];

/// SQLite: copies the outbox into a table declared with the wanted keys and
/// puts it in the old one's place.
fn sqlite_rebuild(id_key: &str, order_key: &str) -> Vec<String> {
    let table = TABLE
        .replace("{name}", "outbox_rebuilt")
        .replace("{id_key}", id_key)
        .replace("{order_key}", order_key);
    let mut statements = vec![
        table,
        format!("INSERT INTO outbox_rebuilt ({COLUMNS}) SELECT {COLUMNS} FROM outbox"),
        "DROP TABLE outbox".to_owned(),
        "ALTER TABLE outbox_rebuilt RENAME TO outbox".to_owned(),
    ];
    statements.extend(INDEXES.iter().map(|s| (*s).to_owned()));
    statements
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// SQLite's rebuild must be all or nothing (PostgreSQL migrations run in
    /// a transaction anyway).
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let statements = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => vec![
                // The default names of the first migration's constraints.
                "ALTER TABLE outbox DROP CONSTRAINT outbox_pkey, \
                 DROP CONSTRAINT outbox_order_id_sequence_key, \
                 ADD CONSTRAINT outbox_pkey PRIMARY KEY (order_id, sequence)"
                    .to_owned(),
            ],
            _ => sqlite_rebuild("", "PRIMARY KEY"),
        };
        crate::run(manager, &statements).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let statements = match manager.get_database_backend() {
            sea_orm::DbBackend::Postgres => vec![
                "ALTER TABLE outbox DROP CONSTRAINT outbox_pkey, \
                 ADD CONSTRAINT outbox_pkey PRIMARY KEY (id), \
                 ADD CONSTRAINT outbox_order_id_sequence_key UNIQUE (order_id, sequence)"
                    .to_owned(),
            ],
            _ => sqlite_rebuild("PRIMARY KEY", "UNIQUE"),
        };
        crate::run(manager, &statements).await
    }
}
