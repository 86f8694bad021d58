//! PostgreSQL: `checkout_refuse_write()`, which a one-statement write calls
//! to undo itself when one of its gates did not pass.
//!
//! The store writes an order and its stock in ONE statement on PostgreSQL
//! (its parts joined by `WITH`), and since this migration runs that
//! statement on its own, without `BEGIN` and `COMMIT`: a statement is a
//! transaction of its own, and the two round trips were a tenth of the
//! machine's CPU an order (docs/performance.md). Without the transaction
//! around it, nothing may stay written when a gate — a stock take, the
//! order's compare-and-set, the reservation's switch — finds its row
//! missing. The statement's last part therefore calls this function
//! exactly then, and the error it raises (SQLSTATE `CKR01`) rolls the whole
//! statement back; the store then runs the write in a transaction, which
//! says precisely why. `VOLATILE`, so the planner never calls it early.
//!
//! SQLite keeps its transactions (its writes ride the ledger thread's
//! groups), so there is nothing to do there.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_on_postgres(
            manager,
            &["CREATE FUNCTION checkout_refuse_write() RETURNS BIGINT \
               LANGUAGE plpgsql VOLATILE AS $$ BEGIN \
               RAISE EXCEPTION 'a gate of a one-statement write did not pass' \
               USING ERRCODE = 'CKR01'; END $$"],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_on_postgres(manager, &["DROP FUNCTION checkout_refuse_write()"]).await
    }
}
