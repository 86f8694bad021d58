//! The local stock of the embedded mode: books, reservations and their lines.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    r#"CREATE TABLE stock (
        book_id TEXT NOT NULL PRIMARY KEY,
        title TEXT NOT NULL,
        -- The catalog price, in minor units of `currency`; orders are priced
        -- from here, never from the client.
        price_minor BIGINT NOT NULL CHECK (price_minor >= 0),
        currency TEXT NOT NULL CHECK (length(currency) = 3),
        -- Copies that can be sold, and copies held by active reservations.
        available BIGINT NOT NULL,
        reserved BIGINT NOT NULL DEFAULT 0,
        updated_at BIGINT NOT NULL,
        -- Stock is never negative. Reservations are conditional updates
        -- (`... WHERE available >= q`) and never read-then-write, but should
        -- any code path get that wrong, the database refuses the oversell.
        CHECK (available >= 0 AND reserved >= 0)
    )"#,
    r#"CREATE TABLE reservations (
        -- Chosen by the checkout, so every stock call can be retried: a
        -- repeated reserve finds this row and returns it as it is.
        id {uuid} NOT NULL PRIMARY KEY,
        -- No foreign key: with an external order store, or when the order
        -- write fails after reserving, the reservation exists before (or
        -- without) its order; the sweeper releases such orphans on expiry.
        order_id {uuid} NOT NULL,
        currency TEXT NOT NULL CHECK (length(currency) = 3),
        -- active → confirmed (sold) or released (given back), never back:
        -- transitions are compare-and-set on this column, which is what
        -- makes confirm, release and the expiry sweep happen once.
        status TEXT NOT NULL CHECK (status IN ('active', 'confirmed', 'released')),
        expires_at BIGINT NOT NULL,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )"#,
    // The expiry sweep: active reservations by expiry.
    "CREATE INDEX reservations_status_expiry ON reservations (status, expires_at)",
    r#"CREATE TABLE reservation_items (
        reservation_id {uuid} NOT NULL REFERENCES reservations (id) ON DELETE CASCADE,
        line_no BIGINT NOT NULL CHECK (line_no >= 1),
        -- Only books the stock knows can be reserved.
        book_id TEXT NOT NULL REFERENCES stock (book_id),
        quantity BIGINT NOT NULL CHECK (quantity >= 1),
        -- The catalog price at the time of the reservation.
        unit_price_minor BIGINT NOT NULL CHECK (unit_price_minor >= 0),
        PRIMARY KEY (reservation_id, line_no)
    )"#,
];

const DOWN: &[&str] = &[
    "DROP TABLE reservation_items",
    "DROP TABLE reservations",
    "DROP TABLE stock",
];

sql_migration!();
