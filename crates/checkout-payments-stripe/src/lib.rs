//! Stripe behind the checkout's ports: PaymentIntents for
//! [`PaymentProvider`](checkout_ports::PaymentProvider) and signed webhooks
//! for [`WebhookVerifier`](checkout_ports::WebhookVerifier).
//!
//! - [`StripeProvider`] (built from a [`StripeConfig`]) creates, confirms,
//!   reads and refunds PaymentIntents through `async-stripe`, translating
//!   every answer into the port's contract — a decline is `Declined`, a
//!   definite refusal `Rejected`, and anything that leaves the outcome open
//!   (timeout, 5xx, unreadable answer) `Unknown`, never a guess.
//! - [`amount`] converts domain money into Stripe's `amount`, with Stripe's
//!   own currency table (zero-decimal, three-decimal, ISK/UGX/HUF/TWD).
//! - [`webhook`] verifies (and, for tests, signs) `Stripe-Signature` headers.
//!
//! The flows, status mapping and currency rules are written up in
//! `docs/payments.md`.

pub mod amount;
pub mod config;
pub mod provider;
pub mod webhook;

pub use amount::{AmountError, StripeAmount, to_stripe_amount};
pub use config::{DEFAULT_API_BASE, DEFAULT_TIMEOUT, StripeConfig, StripeConfigError};
pub use provider::StripeProvider;
pub use webhook::{
    DEFAULT_TOLERANCE, StripeWebhookVerifier, WebhookEvent, sign_webhook, verify_webhook,
};
