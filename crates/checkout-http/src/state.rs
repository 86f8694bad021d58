//! What every handler can reach.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use checkout_app::OrderProcessor;
use checkout_ports::{Clock, IdempotencyStore, StockAdmin, WebhookVerifier};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::auth::{AuthConfigError, Authenticator};

/// Answers the readiness probe: can the service do its work right now?
#[async_trait]
pub trait HealthCheck: Send + Sync {
    async fn ready(&self) -> bool;
}

/// Limits, timeouts and security policy of the HTTP edge.
///
/// Built by the binary with `..HttpSettings::default()`, so adding a knob
/// never breaks it; the defaults are the safe local ones.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes (413 beyond).
    pub body_limit: usize,
    /// An idempotency key whose request has been in flight this long is
    /// treated as abandoned (its holder died) and may be taken over.
    pub idempotency_in_flight_timeout: Duration,
    /// Who may call the API (bearer JWT, or disabled for local use).
    pub auth: Arc<Authenticator>,
    /// Deepest nesting of arrays and objects accepted in a JSON body (400
    /// beyond): our bodies are 4 levels deep, and deep nesting is only ever
    /// an attempt to exhaust the parser.
    pub max_json_depth: usize,
    /// Most request headers accepted (431 beyond).
    pub max_headers: usize,
    /// Largest total size of the request headers, names and values, in
    /// bytes (431 beyond). Leaves room for a large identity-provider token.
    pub max_header_bytes: usize,
    /// A request (body upload included) that takes longer is answered 503
    /// and its work dropped, as if the process had stopped: the sweeper and
    /// the reconciler settle what it left. Must exceed the payment timeout,
    /// or orders would routinely be cut off mid-payment.
    pub request_timeout: Duration,
    /// Browser origins allowed to call the API cross-origin (exact
    /// `scheme://host[:port]`). Empty (the default) = CORS off: no CORS
    /// headers, so browsers keep other sites out.
    pub cors_allowed_origins: Vec<String>,
    /// Serve `/metrics` on the API's address. Turn it off when the binary
    /// serves metrics on a separate admin address ([`crate::serve_admin`]).
    pub metrics_on_api: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit: 64 * 1024,
            idempotency_in_flight_timeout: Duration::from_secs(120),
            auth: Arc::new(Authenticator::disabled()),
            max_json_depth: 32,
            max_headers: 64,
            max_header_bytes: 16 * 1024,
            request_timeout: Duration::from_secs(60),
            cors_allowed_origins: Vec::new(),
            metrics_on_api: true,
        }
    }
}

/// Why the HTTP edge refuses to start with these settings on this address.
#[derive(Debug, thiserror::Error)]
pub enum EdgeConfigError {
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error("{0}")]
    CorsOrigin(String),
}

impl HttpSettings {
    /// The start-up checks of the edge: authentication may be disabled
    /// only on a loopback address (a warning is logged when it is), and
    /// every CORS origin must be an exact origin. [`crate::serve`] runs them;
    /// a binary that builds its own `HttpServer` around [`crate::server::app`]
    /// must call this with the bound address before serving.
    pub fn check_for(&self, address: SocketAddr) -> Result<(), EdgeConfigError> {
        self.auth.check_bind(address)?;
        for origin in &self.cors_allowed_origins {
            crate::server::check_cors_origin(origin).map_err(EdgeConfigError::CorsOrigin)?;
        }
        Ok(())
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
