//! The checkout's HTTP API (actix-web): routes, DTOs, problem+json errors,
//! idempotency keys, metrics and the OpenAPI document.
//!
//! Handlers decode requests into domain types at the edge, call one use case
//! of `checkout-app` and encode the result; errors become RFC 9457 problems
//! in one place ([`problem`]). The contract is `shared/API.md`; `GET
//! /openapi.json` describes the same thing, generated from this code.

pub mod dto;
pub mod idempotency;
pub mod openapi;
pub mod problem;
pub mod reply;
pub mod routes;
pub mod server;
pub mod state;

pub use server::{ServerSettings, serve};
pub use state::{AppState, HealthCheck, HttpSettings};
