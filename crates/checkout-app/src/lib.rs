//! The checkout's use cases, written against the ports only.
//!
//! - [`OrderProcessor`]: the order pipeline (place → validate → reserve → pay
//!   → confirm) and the changes staff make afterwards (cancel, fulfil,
//!   complete, refund), plus payment settlement for the reconciler and
//!   webhooks.
//! - [`workers`]: reservation sweeper, payment reconciler, confirm retrier,
//!   outbox relay and purger, each restart-safe and multi-instance-safe.
//! - [`sinks::LogSink`]: the embedded default's event sink.
//!
//! A platform team embeds this crate with `checkout-domain`,
//! `checkout-ports` and its own adapters.

pub mod error;
pub mod metrics;
pub mod processor;
pub mod settings;
pub mod sinks;
pub mod workers;

pub use error::AppError;
pub use processor::{OrderProcessor, PlacedOrder, WebhookOutcome};
pub use settings::CheckoutSettings;
