//! Idempotency keys: a repeated request replays the first response.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    r#"CREATE TABLE idempotency_keys (
        -- Keys are scoped (per customer), so two customers choosing the same
        -- key never see each other's responses.
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        -- A hash of the request: the same key with another body is refused.
        fingerprint TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('in_flight', 'completed')),
        -- The response to replay, once completed.
        response_status BIGINT CHECK (response_status BETWEEN 100 AND 599),
        response_headers TEXT,
        response_body {bytes},
        created_at BIGINT NOT NULL,
        -- When the current holder claimed the key; an in-flight claim older
        -- than the service's stale limit is taken over (its holder died).
        locked_at BIGINT NOT NULL,
        -- A completed key always has a response to replay.
        CHECK (status = 'in_flight' OR response_status IS NOT NULL),
        -- One claim per key: the insert-or-ignore that begins a request is
        -- what makes two concurrent requests with one key run once.
        PRIMARY KEY (scope, key)
    )"#,
    // Purging keys past their retention.
    "CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at)",
];

const DOWN: &[&str] = &["DROP TABLE idempotency_keys"];

sql_migration!();
