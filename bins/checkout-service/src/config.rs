//! Configuration in layers: built-in defaults, then an optional file
//! (`--config FILE`, TOML), then environment variables
//! `CHECKOUT__<SECTION>__<KEY>` (e.g. `CHECKOUT__SERVER__ADDR`). Validated
//! at start-up with errors that name the key; secrets never printed.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// A secret string: usable, serialisable for layering, never printed.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "<unset>"
        } else {
            "<redacted>"
        })
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub payments: PaymentsConfig,
    pub inventory: InventoryConfig,
    pub events: EventsConfig,
    pub checkout: CheckoutConfig,
    pub workers: WorkersConfig,
    pub log: LogConfig,
    /// Who may call the API: `mode = "disabled"` (local use, loopback only)
    /// or `"jwt"` with an HS256 secret, a PEM public key or a JWKS file; see
    /// docs/security.md.
    #[serde(default)]
    pub auth: checkout_http::AuthConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port (the bound address is
    /// logged).
    pub addr: String,
    /// HTTP worker threads; 0 = one per core, one fewer beside SQLite's
    /// writer thread.
    pub workers: usize,
    /// Largest request body, in bytes.
    pub body_limit_bytes: usize,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_timeout_secs: u64,
    /// A separate address for `/metrics` and `/health/*` (then `/metrics`
    /// is no longer served on the API address). Empty: none.
    #[serde(default)]
    pub admin_addr: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://FILE` (embedded default) or `postgres://…`.
    pub url: Secret,
    /// PostgreSQL pool size (default 16); on SQLite, the read connections
    /// (default 4: writes go through its single writer, and every read
    /// connection keeps a page cache of its own).
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// Log every SQL statement at debug level (target `sqlx::query`); for
    /// diagnosis only, it is noisy and slow.
    #[serde(default)]
    pub log_statements: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsConfig {
    /// `mock` or `stripe`.
    pub provider: String,
    /// Simulated latency of the mock provider, in milliseconds (0 = none).
    pub mock_delay_ms: u64,
    /// How many intents the mock provider remembers (the oldest are
    /// forgotten): its memory, about 3.5 KB an intent.
    #[serde(default = "default_mock_retained_intents")]
    pub mock_retained_intents: usize,
    pub stripe: StripeSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeSettings {
    pub secret_key: Secret,
    pub webhook_secret: Secret,
    pub api_base: String,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryConfig {
    /// `local` (SQL stock in the service's database) or `http`.
    pub mode: String,
    /// Seed a demo catalog into an empty local stock.
    pub seed_demo_catalog: bool,
    /// The external inventory service's client settings (`mode = "http"`):
    /// `base_url`, `connect_timeout`, `request_timeout`, `max_retries`,
    /// `total_timeout`, `breaker.*`, `bearer_token` — see
    /// `checkout_inventory_http::HttpInventoryConfig`.
    #[serde(default)]
    pub http: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// `log` (embedded default) or `kafka`.
    pub sink: String,
    /// Kafka settings (`sink = "kafka"`): `brokers`, `topic`, `client_id`,
    /// `source`, `message_timeout`, `extra.*` (librdkafka passthrough) — see
    /// `checkout_events_kafka::KafkaConfig`.
    #[serde(default)]
    pub kafka: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutConfig {
    pub reservation_ttl_secs: u64,
    pub payment_timeout_secs: u64,
    /// How long idempotency keys (and their responses) are kept.
    pub idempotency_retention_hours: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersConfig {
    /// Run the background workers in this process.
    pub enabled: bool,
    pub sweep_interval_ms: u64,
    pub reconcile_interval_ms: u64,
    pub confirm_interval_ms: u64,
    /// The outbox relay's longest pause: after a pass that found nothing,
    /// or when a batch takes longer than this to gather. Under load the
    /// relay paces itself to the rate events arrive at, a batch a pass
    /// (`OutboxRelay::run_paced`).
    pub relay_interval_ms: u64,
    pub relay_batch: u32,
    pub relay_max_attempts: u32,
    pub purge_interval_secs: u64,
    pub outbox_retention_hours: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `auto` (pretty on a terminal, JSON otherwise), `json` or `pretty`.
    pub format: String,
    /// A tracing filter (`info`, `checkout=debug,info`); `RUST_LOG` wins.
    pub level: String,
}

fn default_mock_retained_intents() -> usize {
    checkout_payments_mock::DEFAULT_RETAINED_INTENTS
}

impl DatabaseConfig {
    /// The pool size to use: the configured one, or the database's default.
    pub fn connections(&self) -> u32 {
        let sqlite = self.url.expose().starts_with("sqlite:");
        self.max_connections.unwrap_or(if sqlite { 4 } else { 16 })
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: ServerConfig {
                addr: "127.0.0.1:8080".into(),
                workers: 0,
                body_limit_bytes: 64 * 1024,
                shutdown_timeout_secs: 30,
                admin_addr: String::new(),
            },
            database: DatabaseConfig {
                url: "sqlite://./checkout.db".into(),
                max_connections: None,
                log_statements: false,
            },
            payments: PaymentsConfig {
                provider: "mock".into(),
                mock_delay_ms: 0,
                mock_retained_intents: default_mock_retained_intents(),
                stripe: StripeSettings {
                    secret_key: Secret::default(),
                    webhook_secret: Secret::default(),
                    api_base: "https://api.stripe.com".into(),
                    timeout_secs: 20,
                },
            },
            inventory: InventoryConfig {
                mode: "local".into(),
                seed_demo_catalog: true,
                http: None,
            },
            events: EventsConfig {
                sink: "log".into(),
                kafka: None,
            },
            checkout: CheckoutConfig {
                reservation_ttl_secs: 15 * 60,
                payment_timeout_secs: 30,
                idempotency_retention_hours: 48,
            },
            workers: WorkersConfig {
                enabled: true,
                sweep_interval_ms: 5_000,
                reconcile_interval_ms: 5_000,
                confirm_interval_ms: 10_000,
                relay_interval_ms: 250,
                relay_batch: 200,
                relay_max_attempts: 10,
                purge_interval_secs: 3_600,
                outbox_retention_hours: 24 * 7,
            },
            log: LogConfig {
                format: "auto".into(),
                level: "info".into(),
            },
            auth: checkout_http::AuthConfig::default(),
        }
    }
}

impl Settings {
    /// Defaults, then `file`, then the environment; then validated.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Settings> {
        let mut builder = config::Config::builder().add_source(
            config::Config::try_from(&Settings::default()).context("built-in defaults")?,
        );
        if let Some(path) = file {
            if !path.exists() {
                bail!("configuration file {} does not exist", path.display());
            }
            builder = builder.add_source(config::File::from(path));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("CHECKOUT")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        let settings: Settings = builder
            .build()
            .and_then(|c| c.try_deserialize())
            .context("invalid configuration (keys are SECTION.KEY in the file, CHECKOUT__SECTION__KEY in the environment)")?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values the types can't, naming the offending key.
    pub fn validate(&self) -> anyhow::Result<()> {
        let key = |k: &str| format!("{k} (CHECKOUT__{})", k.to_uppercase().replace('.', "__"));
        if !self.server.admin_addr.is_empty() {
            self.server
                .admin_addr
                .parse::<SocketAddr>()
                .with_context(|| {
                    format!(
                        "{}: `{}` is not a socket address",
                        key("server.admin_addr"),
                        self.server.admin_addr
                    )
                })?;
        }
        self.server.addr.parse::<SocketAddr>().with_context(|| {
            format!(
                "{}: `{}` is not a socket address like 127.0.0.1:8080",
                key("server.addr"),
                self.server.addr
            )
        })?;
        let url = self.database.url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            bail!(
                "{}: must start with sqlite: or postgres://",
                key("database.url")
            );
        }
        if self.database.max_connections == Some(0) {
            bail!("{}: must be at least 1", key("database.max_connections"));
        }
        if self.payments.mock_retained_intents == 0 {
            bail!(
                "{}: must be at least 1",
                key("payments.mock_retained_intents")
            );
        }
        if self.server.body_limit_bytes < 1024 {
            bail!("{}: must be at least 1024", key("server.body_limit_bytes"));
        }
        match self.payments.provider.as_str() {
            "mock" => {}
            "stripe" => {
                if self.payments.stripe.secret_key.is_empty() {
                    bail!(
                        "{}: required when payments.provider is stripe",
                        key("payments.stripe.secret_key")
                    );
                }
                if self.payments.stripe.webhook_secret.is_empty() {
                    bail!(
                        "{}: required when payments.provider is stripe",
                        key("payments.stripe.webhook_secret")
                    );
                }
            }
            other => bail!(
                "{}: `{other}` is not one of mock, stripe",
                key("payments.provider")
            ),
        }
        match self.inventory.mode.as_str() {
            "local" => {}
            "http" => {
                let cfg = self
                    .inventory_http()
                    .with_context(|| key("inventory.http"))?;
                checkout_inventory_http::HttpInventory::new(cfg)
                    .with_context(|| key("inventory.http"))?;
            }
            other => bail!(
                "{}: `{other}` is not one of local, http",
                key("inventory.mode")
            ),
        }
        match self.events.sink.as_str() {
            "log" => {}
            "kafka" => {
                self.kafka()
                    .with_context(|| key("events.kafka"))?
                    .validate()
                    .with_context(|| key("events.kafka"))?;
            }
            other => bail!("{}: `{other}` is not one of log, kafka", key("events.sink")),
        }
        checkout_http::Authenticator::new(&self.auth).with_context(|| key("auth"))?;
        if !matches!(self.log.format.as_str(), "auto" | "json" | "pretty") {
            bail!("{}: must be auto, json or pretty", key("log.format"));
        }
        if self.checkout.payment_timeout_secs == 0
            || self.checkout.reservation_ttl_secs <= self.checkout.payment_timeout_secs
        {
            bail!(
                "{}: must be longer than the payment timeout",
                key("checkout.reservation_ttl_secs")
            );
        }
        Ok(())
    }
}

impl Settings {
    /// The HTTP inventory client's settings (defaults for missing keys).
    pub fn inventory_http(&self) -> anyhow::Result<checkout_inventory_http::HttpInventoryConfig> {
        let raw = self
            .inventory
            .http
            .clone()
            .unwrap_or_else(|| serde_json::json!({}));
        Ok(serde_json::from_value(raw)?)
    }

    /// The Kafka sink's settings (defaults for missing keys).
    pub fn kafka(&self) -> anyhow::Result<checkout_events_kafka::KafkaConfig> {
        let raw = self
            .events
            .kafka
            .clone()
            .unwrap_or_else(|| serde_json::json!({}));
        Ok(serde_json::from_value(raw)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_embedded() {
        let s = Settings::default();
        s.validate().unwrap();
        assert_eq!(s.server.addr, "127.0.0.1:8080");
        assert_eq!(s.payments.provider, "mock");
        assert_eq!(s.inventory.mode, "local");
        assert_eq!(s.events.sink, "log");
    }

    #[test]
    fn connections_default_by_database_and_can_be_set() {
        let mut s = Settings::default();
        assert_eq!(s.database.connections(), 4);
        s.database.url = "postgres://db/checkout".into();
        assert_eq!(s.database.connections(), 16);
        s.database.max_connections = Some(7);
        assert_eq!(s.database.connections(), 7);
        s.database.max_connections = Some(0);
        let e = format!("{:#}", s.validate().unwrap_err());
        assert!(e.contains("database.max_connections"), "{e}");
    }

    #[test]
    fn the_mock_remembers_at_least_one_intent() {
        let mut s = Settings::default();
        assert_eq!(
            s.payments.mock_retained_intents,
            checkout_payments_mock::DEFAULT_RETAINED_INTENTS
        );
        s.payments.mock_retained_intents = 0;
        let e = format!("{:#}", s.validate().unwrap_err());
        assert!(e.contains("payments.mock_retained_intents"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let mut s = Settings::default();
        s.server.addr = "nowhere".into();
        let e = format!("{:#}", s.validate().unwrap_err());
        assert!(
            e.contains("server.addr") && e.contains("CHECKOUT__SERVER__ADDR"),
            "{e}"
        );
        let mut s = Settings::default();
        s.payments.provider = "stripe".into();
        let e = format!("{:#}", s.validate().unwrap_err());
        assert!(e.contains("payments.stripe.secret_key"), "{e}");
    }

    #[test]
    fn secrets_are_not_printed() {
        let mut s = Settings::default();
        s.payments.stripe.secret_key = "sk_test_123".into();
        s.database.url = "postgres://user:hunter2@db/checkout".into();
        let printed = format!("{s:?}");
        assert!(
            !printed.contains("sk_test_123") && !printed.contains("hunter2"),
            "{printed}"
        );
    }
}
