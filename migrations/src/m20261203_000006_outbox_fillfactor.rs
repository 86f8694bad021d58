//! PostgreSQL keeps half of every outbox page free for the relay's updates.
//!
//! The relay writes each event twice after inserting it: it leases it
//! (`claimed_until`) and then marks it published. PostgreSQL writes every
//! update as a new row version; when the version fits on the row's own page
//! and no indexed column changes, it is a HOT update — no new index entries,
//! and a WAL record holding only the bytes that changed. Inserts packed the
//! outbox's pages full, so by the time the relay leased an event its page
//! had no room: every lease put a copy of the whole event on another page,
//! with a new entry in both the key and the unpublished index. With half of
//! each page left free, the lease is a HOT update and the published mark
//! (which changes the partial indexes' predicate, so it cannot be HOT) lands
//! on the same page. The WAL an order writes fell by a fifth (15.8 → 12.3 KB
//! at 16 clients, docs/performance.md). The outbox holds only events not yet
//! purged, so the space this costs is bounded by the retention.
//!
//! Pages written before this keep their packing; only new ones use the
//! setting. SQLite has no such setting and rewrites a row in place.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_on_postgres(manager, &["ALTER TABLE outbox SET (fillfactor = 50)"]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_on_postgres(manager, &["ALTER TABLE outbox RESET (fillfactor)"]).await
    }
}
