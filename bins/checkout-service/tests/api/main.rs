//! The real service, started on port 0 against its own fresh database per
//! test: SQLite always, PostgreSQL too when `TEST_DATABASE_URL` is set.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // a failed unwrap is a failed test; skips are printed

mod helpers;
mod inventory_http;
mod kafka_relay;
mod orders;
mod workers;
