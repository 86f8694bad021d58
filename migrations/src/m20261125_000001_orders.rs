//! Orders, their lines, their audit trail and the transactional outbox.
//!
//! These four tables are written together: every change of an order writes
//! its row (compare-and-set on `version`), its audit entry and its events in
//! ONE transaction. The constraints below are the last line of defence for
//! what must never happen, whatever a bug in the service does.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    // One row per order, holding every scalar of the domain's OrderSnapshot.
    // The lines live in `order_items`; everything else an order knows is
    // here, so loading an order is one row plus its lines.
    r#"CREATE TABLE orders (
        -- UUIDv7: ids sort by creation time, so "newest first" is a scan of
        -- the primary key backwards and the list cursor is simply an id.
        id {uuid} NOT NULL PRIMARY KEY,
        customer_id TEXT NOT NULL,
        -- The eleven states of the state machine, nothing else: a typo in a
        -- hand-written UPDATE must fail, not strand an order in a state no
        -- worker looks at.
        state TEXT NOT NULL CHECK (state IN ('pending', 'validating', 'reserved',
            'processing_payment', 'paid', 'fulfilling', 'completed', 'cancelled',
            'refunded', 'payment_failed', 'inventory_failed')),
        -- ISO 4217 code; every money column of the row is counted in it.
        currency TEXT NOT NULL CHECK (length(currency) = 3),
        -- Decimal text ("0.08"): exact, and never used in arithmetic by SQL.
        tax_rate TEXT NOT NULL,
        -- Money as integer minor units of `currency`. Never negative: the
        -- domain cannot produce a negative amount, so one here is corruption.
        shipping_minor BIGINT NOT NULL CHECK (shipping_minor >= 0),
        refunded_minor BIGINT NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
        -- The priced totals, NULL until the order is priced from the catalog.
        -- The domain recomputes them on load; they are kept for reporting
        -- and for operators reading the table.
        subtotal_minor BIGINT CHECK (subtotal_minor >= 0),
        tax_minor BIGINT CHECK (tax_minor >= 0),
        total_minor BIGINT CHECK (total_minor >= 0),
        -- The stock reservation held for the order (all three or none).
        reservation_id {uuid},
        reservation_expires_at BIGINT,
        reservation_status TEXT CHECK (reservation_status IN
            ('active', 'confirmed', 'confirm_pending', 'released')),
        -- The current payment attempt (the history is in payment_attempts).
        payment_provider TEXT,
        payment_attempt BIGINT CHECK (payment_attempt >= 1),
        payment_idempotency_key TEXT,
        payment_intent_id TEXT,
        payment_transaction_id TEXT,
        payment_status TEXT CHECK (payment_status IN ('pending', 'requires_action',
            'processing', 'succeeded', 'failed', 'canceled', 'unknown')),
        payment_client_secret TEXT,
        payment_next_action TEXT,
        payment_failure_code TEXT,
        payment_failure_message TEXT,
        -- Addresses as JSON documents (NULL when not given).
        shipping_address TEXT,
        billing_address TEXT,
        -- Bumped by every change; saves are `UPDATE ... WHERE version = ?`,
        -- so a stale writer updates nothing and is told so.
        version BIGINT NOT NULL CHECK (version >= 1),
        -- The sequence of the last event raised; the next event is +1.
        event_sequence BIGINT NOT NULL CHECK (event_sequence >= 0),
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        -- (Table constraints come last: SQLite accepts them nowhere else.)
        -- A refund can never give back more than was charged.
        CHECK (total_minor IS NULL OR refunded_minor <= total_minor),
        -- A reservation is an id, an expiry and a status, or nothing.
        CHECK ((reservation_id IS NULL) = (reservation_status IS NULL)
            AND (reservation_id IS NULL) = (reservation_expires_at IS NULL)),
        -- A payment always has a provider, an attempt, a key and a status.
        CHECK ((payment_provider IS NULL) = (payment_status IS NULL)
            AND (payment_provider IS NULL) = (payment_attempt IS NULL)
            AND (payment_provider IS NULL) = (payment_idempotency_key IS NULL))
    )"#,
    // GET /orders?customer_id=…: one customer's orders, newest first.
    "CREATE INDEX orders_customer_id ON orders (customer_id, id)",
    // The payment reconciler and confirm retrier: orders in a state, oldest
    // change first (find_stale).
    "CREATE INDEX orders_state_updated ON orders (state, updated_at)",
    // The reservation sweeper: active reservations past their expiry.
    "CREATE INDEX orders_reservation ON orders (reservation_status, reservation_expires_at)",
    // Webhooks and the reconciler find an order by its provider intent id.
    "CREATE INDEX orders_payment_intent ON orders (payment_intent_id)",
    // The books of an order, written once when the order is created.
    r#"CREATE TABLE order_items (
        -- An item without its order is meaningless.
        order_id {uuid} NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
        -- Keeps the client's line order stable across loads.
        line_no BIGINT NOT NULL CHECK (line_no >= 1),
        book_id TEXT NOT NULL,
        -- The domain allows 1..=1000 copies of a book per line.
        quantity BIGINT NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
        -- The catalog's unit price (minor units of the order's currency),
        -- NULL until priced; the price the client saw, if it sent one.
        unit_price_minor BIGINT CHECK (unit_price_minor >= 0),
        expected_unit_price_minor BIGINT CHECK (expected_unit_price_minor >= 0),
        PRIMARY KEY (order_id, line_no)
    )"#,
    // The audit trail: one entry per change, oldest first by `id`.
    r#"CREATE TABLE audit_log (
        -- Monotonic: entries of one order are written by version-checked
        -- transactions, one after the other, so `id` order is change order.
        id {serial},
        order_id {uuid} NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
        -- NULL only for the entry that records the creation.
        previous_state TEXT,
        new_state TEXT NOT NULL,
        reason TEXT NOT NULL,
        metadata TEXT NOT NULL,
        actor TEXT,
        at BIGINT NOT NULL
    )"#,
    // GET /orders/{id}/audit.
    "CREATE INDEX audit_log_order ON audit_log (order_id, id)",
    // The transactional outbox: events written with the change that raised
    // them, published afterwards by the relay. (Keyed by order and sequence
    // instead of by id since m20261203_000005_outbox_key.)
    r#"CREATE TABLE outbox (
        -- Derived from (order, sequence) by the domain: a re-published event
        -- keeps its id, so consumers can de-duplicate.
        id {uuid} NOT NULL PRIMARY KEY,
        order_id {uuid} NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
        sequence BIGINT NOT NULL CHECK (sequence >= 1),
        event_type TEXT NOT NULL,
        -- The whole envelope, exactly what consumers receive.
        payload TEXT NOT NULL,
        occurred_at BIGINT NOT NULL,
        -- NULL until the relay published it.
        published_at BIGINT,
        -- Failed publish attempts and the last error, for operators.
        attempts BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        last_error TEXT,
        -- Set aside for good (a poison event): no longer blocks its order.
        parked_at BIGINT,
        -- A relay's lease: no other relay takes the event before this.
        claimed_until BIGINT,
        -- Retry back-off after a failure.
        next_attempt_at BIGINT,
        -- One event per (order, sequence). Two writers that both loaded the
        -- same version would raise the same sequence numbers; the version
        -- check already stops the second, and this makes interleaved or
        -- duplicated event streams impossible even if it did not.
        UNIQUE (order_id, sequence)
    )"#,
    // What the relay scans: only unpublished, unparked events, in
    // per-order sequence order. Partial, so it stays as small as the
    // backlog however large the table grows.
    "CREATE INDEX outbox_unpublished ON outbox (order_id, sequence) \
        WHERE published_at IS NULL AND parked_at IS NULL",
    // Purging published events by age.
    "CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL",
];

const DOWN: &[&str] = &[
    "DROP TABLE outbox",
    "DROP TABLE audit_log",
    "DROP TABLE order_items",
    "DROP TABLE orders",
];

sql_migration!();
