//! What every handler can reach.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use checkout_app::OrderProcessor;
use checkout_ports::{Clock, IdempotencyStore, StockAdmin, WebhookVerifier};
use metrics_exporter_prometheus::PrometheusHandle;

/// Answers the readiness probe: can the service do its work right now?
#[async_trait]
pub trait HealthCheck: Send + Sync {
    async fn ready(&self) -> bool;
}

/// Limits and timeouts of the HTTP edge.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes (413 beyond).
    pub body_limit: usize,
    /// An idempotency key whose request has been in flight this long is
    /// treated as abandoned (its holder died) and may be taken over.
    pub idempotency_in_flight_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit: 64 * 1024,
            idempotency_in_flight_timeout: Duration::from_secs(120),
        }
    }
}

/// Shared state of the HTTP API.
#[derive(Clone)]
pub struct AppState {
    pub processor: OrderProcessor,
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// The local stock, when the service runs with it (embedded mode).
    pub stock: Option<Arc<dyn StockAdmin>>,
    /// Stripe webhook verification, when Stripe is configured.
    pub webhooks: Option<Arc<dyn WebhookVerifier>>,
    pub health: Arc<dyn HealthCheck>,
    /// Renders `/metrics`; `None` when no recorder is installed.
    pub metrics: Option<PrometheusHandle>,
    pub clock: Arc<dyn Clock>,
    pub settings: HttpSettings,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("processor", &self.processor)
            .field("local_stock", &self.stock.is_some())
            .field("webhooks", &self.webhooks.is_some())
            .field("settings", &self.settings)
            .finish()
    }
}
