//! The schema, as SQL for each backend. Types are chosen so that one set of
//! queries serves both: ids as text (UUIDv7 text sorts by creation time),
//! money as BIGINT minor units next to its currency, instants as BIGINT
//! microseconds since the Unix epoch (UTC; compared and indexed as
//! integers), JSON as text.
//!
//! The database itself guards what must never happen:
//! - stock never negative (`CHECK (available >= 0 AND reserved >= 0)`);
//! - one outbox event per (order, sequence) (`UNIQUE`), so a stale writer
//!   can't interleave events;
//! - one webhook event per provider event id (`PRIMARY KEY`);
//! - refunds never above the captured amount: enforced by the refund insert
//!   itself (`INSERT … SELECT … WHERE sum + amount <= captured`), one
//!   statement, with the order row locked first on PostgreSQL.

/// `(name, up, down)` per migration, applied in order.
pub const MIGRATIONS: &[(&str, &str, &str)] = &[("m20261125_000001_checkout_schema", UP_1, DOWN_1)];

const UP_1: &str = r#"
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    state TEXT NOT NULL,
    currency TEXT NOT NULL,
    tax_rate TEXT NOT NULL,
    shipping_minor BIGINT NOT NULL CHECK (shipping_minor >= 0),
    refunded_minor BIGINT NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    reservation_id TEXT,
    reservation_expires_at BIGINT,
    reservation_status TEXT,
    payment_provider TEXT,
    payment_attempt BIGINT,
    payment_idempotency_key TEXT,
    payment_intent_id TEXT,
    payment_transaction_id TEXT,
    payment_status TEXT,
    payment_client_secret TEXT,
    payment_next_action TEXT,
    payment_failure_code TEXT,
    payment_failure_message TEXT,
    shipping_address TEXT,
    billing_address TEXT,
    version BIGINT NOT NULL,
    event_sequence BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX orders_customer ON orders (customer_id, id);
CREATE INDEX orders_state ON orders (state, updated_at);
CREATE INDEX orders_reservation ON orders (reservation_status, reservation_expires_at);
CREATE INDEX orders_intent ON orders (payment_intent_id);

CREATE TABLE order_items (
    order_id TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line BIGINT NOT NULL,
    book_id TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_minor BIGINT,
    expected_unit_price_minor BIGINT,
    PRIMARY KEY (order_id, line)
);

CREATE TABLE audit_log (
    id BIGSERIAL_OR_AUTO,
    order_id TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    previous_state TEXT,
    new_state TEXT NOT NULL,
    reason TEXT NOT NULL,
    metadata TEXT NOT NULL,
    actor TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX audit_log_order ON audit_log (order_id, id);

CREATE TABLE outbox_events (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    published_at BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    parked_at BIGINT,
    claimed_until BIGINT,
    next_attempt_at BIGINT,
    UNIQUE (order_id, sequence)
);
CREATE INDEX outbox_unpublished ON outbox_events (published_at, parked_at, occurred_at);

CREATE TABLE payment_attempts (
    order_id TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    attempt BIGINT NOT NULL,
    provider TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    intent_id TEXT,
    transaction_id TEXT,
    status TEXT NOT NULL,
    failure_code TEXT,
    failure_message TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (order_id, attempt)
);

CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    status TEXT NOT NULL,
    provider_refund_id TEXT,
    reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX refunds_order ON refunds (order_id);

CREATE TABLE webhook_inbox (
    provider TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (provider, event_id)
);

CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    response_status BIGINT,
    response_headers TEXT,
    response_body BYTEA_OR_BLOB,
    created_at BIGINT NOT NULL,
    locked_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_created ON idempotency_keys (created_at);

CREATE TABLE stock (
    book_id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    price_minor BIGINT NOT NULL CHECK (price_minor >= 0),
    currency TEXT NOT NULL,
    available BIGINT NOT NULL CHECK (available >= 0),
    reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    updated_at BIGINT NOT NULL
);

CREATE TABLE reservations (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    status TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX reservations_expiry ON reservations (status, expires_at);

CREATE TABLE reservation_items (
    reservation_id TEXT NOT NULL REFERENCES reservations (id) ON DELETE CASCADE,
    book_id TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_minor BIGINT NOT NULL,
    PRIMARY KEY (reservation_id, book_id)
);
"#;

const DOWN_1: &str = r#"
DROP TABLE reservation_items;
DROP TABLE reservations;
DROP TABLE stock;
DROP TABLE idempotency_keys;
DROP TABLE webhook_inbox;
DROP TABLE refunds;
DROP TABLE payment_attempts;
DROP TABLE outbox_events;
DROP TABLE audit_log;
DROP TABLE order_items;
DROP TABLE orders;
"#;

/// The SQL of a migration for a backend.
pub fn for_backend(sql: &str, postgres: bool) -> String {
    if postgres {
        sql.replace("BIGSERIAL_OR_AUTO", "BIGSERIAL PRIMARY KEY")
            .replace("BYTEA_OR_BLOB", "BYTEA")
    } else {
        sql.replace("BIGSERIAL_OR_AUTO", "INTEGER PRIMARY KEY AUTOINCREMENT")
            .replace("BYTEA_OR_BLOB", "BLOB")
    }
}
