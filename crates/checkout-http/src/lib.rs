//! The checkout's HTTP API (actix-web): routes, DTOs, problem+json errors,
//! idempotency keys, metrics and the OpenAPI document.
//!
//! Handlers decode requests into domain types at the edge, call one use case
//! of `checkout-app` and encode the result; errors become RFC 9457 problems
//! in one place ([`problem`]). The contract is `shared/API.md`; `GET
//! /openapi.json` describes the same thing, generated from this code.
//!
//! Who may call what is [`auth`]'s business (bearer JWT, roles, and the
//! `disabled` mode for local use); the edge's limits (body, headers, JSON
//! depth, request timeout, CORS) are [`HttpSettings`], enforced in
//! [`server`]. `docs/security.md` describes both.

pub mod auth;
pub mod dto;
pub mod idempotency;
pub mod openapi;
pub mod problem;
pub mod reply;
pub mod routes;
pub mod server;
pub mod state;

pub use auth::{
    AuthConfig, AuthConfigError, AuthError, AuthMode, Authenticator, Caller, DEFAULT_TOKEN_TTL,
    Principal, Role, SecretString, mint_hs256,
};
pub use server::{ServerSettings, serve, serve_admin};
pub use state::{AppState, EdgeConfigError, HealthCheck, HttpSettings};
