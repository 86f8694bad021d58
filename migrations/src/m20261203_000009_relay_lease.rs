//! One relay at a time works an outbox, by a lease on a row of its own;
//! the events themselves are no longer leased one by one.
//!
//! Until this migration every relay pass wrote each event it took twice
//! after its insert: a lease (`claimed_until`, so that concurrent relays
//! split the backlog) and then the published mark. The lease was a fifth
//! to a third of the relay's cost, and the relay an eighth of SQLite's
//! throughput (docs/perf/history.md). Now a relay instance holds the
//! outbox's lease in `relay_leases` — taken when it lapses, renewed when
//! half of it has run, one small write every quarter of a minute while
//! there is work — and hands out events without writing them; within a
//! process the store keeps the events in flight in memory. Another
//! instance takes over when the lease lapses, as it took over an event's
//! lease before, so a relay that dies still loses nothing.
//!
//! `claimed_until` goes: nothing reads it any more.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run(
            manager,
            &[
                // `holder` identifies a store (a process); `held_until` is
                // microseconds since the Unix epoch, as every instant here.
                "CREATE TABLE relay_leases (
                    name TEXT PRIMARY KEY,
                    holder {uuid} NOT NULL,
                    held_until BIGINT NOT NULL
                )",
                "ALTER TABLE outbox DROP COLUMN claimed_until",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run(
            manager,
            &[
                "ALTER TABLE outbox ADD COLUMN claimed_until BIGINT",
                "DROP TABLE relay_leases",
            ],
        )
        .await
    }
}
