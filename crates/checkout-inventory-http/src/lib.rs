//! The checkout's [`InventoryPort`](checkout_ports::InventoryPort) over an
//! external inventory service's HTTP API (`docs/inventory-api.md`).
//!
//! ```no_run
//! # use checkout_inventory_http::{HttpInventory, HttpInventoryConfig};
//! # fn build() -> Result<HttpInventory, checkout_inventory_http::ConfigError> {
//! let inventory = HttpInventory::new(HttpInventoryConfig::with_base_url(
//!     "https://inventory.internal/api/v1",
//! ))?;
//! # Ok(inventory) }
//! ```
//!
//! Modules:
//! - [`config`]: [`HttpInventoryConfig`] — base URL, timeouts, retries,
//!   backoff, breaker, pool, token — with its defaults and validation.
//! - `client`: [`HttpInventory`] and the translation of the service's
//!   answers into [`InventoryError`](checkout_ports::InventoryError)
//!   variants (business refusals vs. an unavailable service).
//! - `transport`: one call on the wire — per-attempt timeout, retries with
//!   jittered backoff and `Retry-After`, the bound on the whole call.
//! - `breaker`: the circuit breaker that fails calls fast while the service
//!   is down ([`BreakerState`]).
//! - `backoff`: retry delays and `Retry-After` parsing.
//! - `wire`: the JSON of the inventory API and its strict conversion to the
//!   domain's types.

mod backoff;
mod breaker;
mod client;
pub mod config;
mod transport;
mod wire;

pub use breaker::BreakerState;
pub use client::HttpInventory;
pub use config::{BearerToken, BreakerConfig, ConfigError, HttpInventoryConfig};
