//! Kafka adapter of the outbox relay: [`KafkaSink`] publishes the checkout's
//! domain events to a Kafka topic.
//!
//! The relay in `checkout-app` claims events from the outbox and hands them
//! to an [`EventSink`](checkout_ports::EventSink); this crate is the sink a
//! production deployment uses (the embedded default logs them instead). The
//! wire contract — envelope, event types, headers, guarantees — is
//! `docs/events.md`, and a test here keeps its examples true.
//!
//! - [`config`]: [`KafkaConfig`], its defaults, validation and the librdkafka
//!   properties it becomes; secrets stay out of `Debug`.
//! - [`sink`]: [`KafkaSink`], the idempotent producer behind the port.
//! - [`cloudevents`]: the CloudEvents Kafka binding (binary mode) headers.
//! - [`errors`]: which librdkafka errors mean "retry later" and which "never".
//!
//! librdkafka is compiled from its bundled source (see the workspace
//! `Cargo.toml` for the build features and the system packages they need).

pub mod cloudevents;
pub mod config;
pub mod errors;
pub mod sink;

pub use config::{ConfigError, KafkaConfig};
pub use sink::KafkaSink;
