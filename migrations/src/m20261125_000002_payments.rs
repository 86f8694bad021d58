//! Payment attempts, refunds and the webhook inbox.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    // Every payment attempt of an order, mirrored from the order's current
    // payment (upserted in the same transaction as each order write), so the
    // history survives a new attempt replacing the order's payment columns.
    r#"CREATE TABLE payment_attempts (
        order_id {uuid} NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
        attempt BIGINT NOT NULL CHECK (attempt >= 1),
        provider TEXT NOT NULL,
        -- Derived from (order, attempt): the provider charges at most once
        -- per key, and one key never serves two attempts.
        idempotency_key TEXT NOT NULL UNIQUE,
        intent_id TEXT,
        transaction_id TEXT,
        status TEXT NOT NULL CHECK (status IN ('pending', 'requires_action',
            'processing', 'succeeded', 'failed', 'canceled', 'unknown')),
        failure_code TEXT,
        failure_message TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (order_id, attempt)
    )"#,
    // Refunds, recorded as pending before the provider is called.
    r#"CREATE TABLE refunds (
        -- Chosen by the checkout; the provider's idempotency key derives
        -- from it, so a retried refund call can never refund twice.
        id {uuid} NOT NULL PRIMARY KEY,
        order_id {uuid} NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
        -- A refund of nothing is a bug.
        amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
        currency TEXT NOT NULL CHECK (length(currency) = 3),
        -- Pending and succeeded refunds count against the captured amount;
        -- failed ones do not. That sum plus a new refund may never exceed
        -- the captured amount: enforced by the refund insert itself
        -- (INSERT ... SELECT ... WHERE sum + amount <= captured, one
        -- statement, with the order row locked first on PostgreSQL).
        status TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
        provider_refund_id TEXT,
        reason TEXT,
        failure_reason TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )"#,
    // The sum of an order's live refunds, read inside the refund insert.
    "CREATE INDEX refunds_order ON refunds (order_id, status)",
    // Provider webhook deliveries already acted on.
    r#"CREATE TABLE webhook_inbox (
        provider TEXT NOT NULL,
        event_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        received_at BIGINT NOT NULL,
        -- One row per provider event: a redelivery inserts nothing, so it is
        -- acted on once however often the provider retries.
        PRIMARY KEY (provider, event_id)
    )"#,
];

const DOWN: &[&str] = &[
    "DROP TABLE webhook_inbox",
    "DROP TABLE refunds",
    "DROP TABLE payment_attempts",
];

sql_migration!();
