# BookVerse Checkout — developer tasks. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Run the service on the embedded default (SQLite, mock payments, local stock).
run *ARGS:
    cargo run --release -p checkout-service -- serve {{ARGS}}

# Run the whole test suite (PostgreSQL tests too when TEST_DATABASE_URL is set).
test:
    cargo test --workspace

# rustfmt check and clippy with warnings as errors.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Format the code.
fmt:
    cargo fmt --all

# Load benchmark against SQLite (and PostgreSQL when BENCH_DATABASE_URL or TEST_DATABASE_URL is set).
bench:
    bash scripts/bench.sh

# Licences, bans, advisories and sources (needs cargo-deny).
deny:
    cargo deny check

# The full CI gate, as CI runs it.
ci:
    bash .ci/run
