//! The reservation sweeps' indexes hold only the reservations still open.
//!
//! Both sweeps look for open reservations only: the stock's expiry sweep
//! for `active` reservations past their expiry, the orders' sweeps for
//! orders whose reservation is `active` (expired) or `confirm_pending`
//! (paid, confirm to retry). Their indexes held every reservation ever
//! made, so each order's reservation wrote each index twice — an entry
//! when it was taken and a move from `active` to `confirmed` when the
//! order was paid — at a page of its own for each status. Indexing only
//! the open ones leaves an index the size of the reservations in flight:
//! taking a reservation adds an entry, settling it removes one, and the
//! orders of one group commit share that small index's last page. On
//! SQLite the two indexes' pages in the WAL fell from 1.39 to 0.85 a
//! commit each (docs/performance.md); on PostgreSQL a settled
//! reservation's row versions no longer get entries at all.
//!
//! A partial index serves a query whose condition implies the index's, so
//! the sweeps name the statuses they want as literals, never as bound
//! values (which neither database can prove anything about when it
//! plans). The orders' predicate is written as an `OR`: SQLite proves
//! `x = 'a'` implies `x = 'a' OR x = 'b'`, not that it implies an `IN`.
//!
//! On PostgreSQL the new indexes are built inside the migration's
//! transaction, which holds writes to `orders` and `reservations` back for
//! a scan of each. An operator with large tables can build them first with
//! `CREATE INDEX CONCURRENTLY` under the same names and definitions: the
//! migration creates them only if they are not there.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "DROP INDEX IF EXISTS reservations_status_expiry",
    // The stock's expiry sweep: active reservations by expiry.
    "CREATE INDEX IF NOT EXISTS reservations_active_expiry ON reservations (expires_at) \
     WHERE status = 'active'",
    "DROP INDEX IF EXISTS orders_reservation",
    // The orders' reservation sweeps: expired active reservations, and
    // confirmations left to retry.
    "CREATE INDEX IF NOT EXISTS orders_open_reservation ON orders (reservation_status, reservation_expires_at) \
     WHERE reservation_status = 'active' OR reservation_status = 'confirm_pending'",
];

const DOWN: &[&str] = &[
    "DROP INDEX orders_open_reservation",
    "CREATE INDEX orders_reservation ON orders (reservation_status, reservation_expires_at)",
    "DROP INDEX reservations_active_expiry",
    "CREATE INDEX reservations_status_expiry ON reservations (status, expires_at)",
];

sql_migration!();
