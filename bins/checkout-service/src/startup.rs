//! Wiring: configuration → adapters → use cases → HTTP server and workers.
//! The only place that knows every crate.

use std::net::{SocketAddr, TcpListener};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use checkout_app::workers::{
    OutboxRelay, PaymentReconciler, Purger, RelaySettings, ReservationConfirmer,
    ReservationSweeper, run_until_cancelled,
};
use checkout_app::{CheckoutSettings, OrderProcessor, sinks::LogSink};
use checkout_domain::{BookId, Currency, Money};
use checkout_http::{AppState, HealthCheck, HttpSettings, ServerSettings};
use checkout_payments_mock::{MockOptions, MockPaymentProvider};
use checkout_ports::{
    Clock, EventSink, IdGenerator, InventoryPort, PaymentProvider, StockAdmin, SystemClock,
    UuidGenerator,
};
use checkout_store_seaorm::{SeaOrmStore, StoreOptions};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rust_decimal::Decimal;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Settings;
use crate::demo_catalog;

/// Parts a test may replace (a fixed clock, a fake provider).
#[derive(Default)]
pub struct Overrides {
    pub clock: Option<Arc<dyn Clock>>,
    pub payments: Option<Arc<dyn PaymentProvider>>,
}

impl std::fmt::Debug for Overrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overrides")
            .field("clock", &self.clock.is_some())
            .field("payments", &self.payments.is_some())
            .finish()
    }
}

/// The background workers of one service instance; tests drive them by hand.
#[derive(Debug, Clone)]
pub struct Workers {
    pub sweeper: ReservationSweeper,
    pub reconciler: PaymentReconciler,
    pub confirmer: ReservationConfirmer,
    pub relay: Arc<OutboxRelay>,
    pub purger: Arc<Purger>,
}

/// A built service: bound, not yet serving until awaited.
pub struct Application {
    address: SocketAddr,
    server: actix_web::dev::Server,
    /// Requests being served, for the drain on shutdown.
    in_flight: InFlight,
    /// The admin server (`/metrics`, `/health/*`), when it has its own
    /// address, and that address as bound.
    admin: Option<(actix_web::dev::Server, SocketAddr)>,
    drain_timeout: Duration,
    workers: Workers,
    store: SeaOrmStore,
    processor: OrderProcessor,
    tasks: Vec<JoinHandle<()>>,
    token: CancellationToken,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("address", &self.address)
            .finish()
    }
}

struct StoreHealth(SeaOrmStore);

#[async_trait]
impl HealthCheck for StoreHealth {
    async fn ready(&self) -> bool {
        self.0.ping().await
    }
}

/// The Prometheus recorder, installed once per process.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
                .and_then(|b| b.install_recorder())
                .map_err(|e| warn!(error = %e, "metrics recorder not installed"))
                .ok()
        })
        .clone()
}

/// How often the metrics recorder folds the histogram samples recorded
/// since into their buckets.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// Folds the histograms' raw samples into their buckets every
/// [`METRICS_UPKEEP`] until `token` is cancelled.
///
/// The recorder keeps every sample recorded between two renders of
/// `/metrics` (its crate leaves the upkeep to whoever installs it with
/// `install_recorder`). Without a scraper, or with a slow one, that was
/// memory growing with the orders taken: 50 → 66 MB over 550,000 orders
/// on SQLite (docs/performance.md).
async fn metrics_upkeep(handle: PrometheusHandle, token: CancellationToken) {
    let mut every = tokio::time::interval(METRICS_UPKEEP);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = token.cancelled() => break,
            _ = every.tick() => handle.run_upkeep(),
        }
    }
}

/// Connects to the database and applies the migrations.
pub async fn connect_store(settings: &Settings) -> anyhow::Result<SeaOrmStore> {
    let options = StoreOptions {
        max_connections: settings.database.connections(),
        log_statements: settings.database.log_statements,
        ..StoreOptions::default()
    };
    let store = SeaOrmStore::connect(settings.database.url.expose(), options)
        .await
        .context("database.url: cannot open the database")?;
    store.migrate().await.context("applying migrations")?;
    Ok(store)
}

async fn seed_demo_catalog(stock: &dyn StockAdmin) -> anyhow::Result<()> {
    if !stock
        .list_stock()
        .await
        .context("reading the stock")?
        .is_empty()
    {
        return Ok(());
    }
    for (id, title, price, copies) in demo_catalog::BOOKS {
        let price = Money::new(Decimal::from_str(price)?, Currency::USD)?;
        stock
            .upsert_stock(&BookId::parse(*id)?, title, price, *copies)
            .await
            .context("seeding the demo catalog")?;
    }
    info!(
        books = demo_catalog::BOOKS.len(),
        "seeded the demo catalog into the empty local stock"
    );
    Ok(())
}

/// HTTP worker threads when `server.workers` is 0: one per core, but one
/// core fewer beside SQLite's writer thread. Every order waits for that one
/// thread, and an HTTP worker on every core preempts it: on 2 cores one
/// worker took about a tenth more orders at 4 and 16 clients than two, and
/// as many at 64 (docs/performance.md). On PostgreSQL, whose writers are
/// the server's processes, the two did the same.
fn default_http_workers(cores: usize, writer_thread: bool) -> usize {
    if writer_thread {
        cores.saturating_sub(1).max(1)
    } else {
        cores.max(1)
    }
}

impl Application {
    /// Builds the whole service from `settings`.
    pub async fn build(settings: Settings, overrides: Overrides) -> anyhow::Result<Application> {
        let store = connect_store(&settings).await?;
        let clock: Arc<dyn Clock> = overrides.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let ids: Arc<dyn IdGenerator> = Arc::new(UuidGenerator);

        let (inventory, stock): (Arc<dyn InventoryPort>, Option<Arc<dyn StockAdmin>>) =
            match settings.inventory.mode.as_str() {
                "local" => {
                    let local = Arc::new(store.clone());
                    if settings.inventory.seed_demo_catalog {
                        seed_demo_catalog(local.as_ref()).await?;
                    }
                    (local.clone(), Some(local))
                }
                _ => {
                    let client =
                        checkout_inventory_http::HttpInventory::new(settings.inventory_http()?)
                            .context("inventory.http")?
                            .with_clock(clock.clone());
                    (Arc::new(client), None)
                }
            };
        let payments: Arc<dyn PaymentProvider> = match overrides.payments {
            Some(p) => p,
            None => match settings.payments.provider.as_str() {
                "mock" => Arc::new(MockPaymentProvider::new(MockOptions {
                    delay: Duration::from_millis(settings.payments.mock_delay_ms),
                    retained_intents: settings.payments.mock_retained_intents,
                    ..MockOptions::default()
                })),
                _ => {
                    let stripe = &settings.payments.stripe;
                    let config = checkout_payments_stripe::StripeConfig::new(
                        stripe.secret_key.expose(),
                        stripe.webhook_secret.expose(),
                    )
                    .with_api_base(stripe.api_base.clone())
                    .with_timeout(Duration::from_secs(stripe.timeout_secs));
                    Arc::new(
                        checkout_payments_stripe::StripeProvider::new(&config)
                            .context("payments.stripe")?,
                    )
                }
            },
        };
        let webhooks: Option<Arc<dyn checkout_ports::WebhookVerifier>> =
            (settings.payments.provider == "stripe").then(|| {
                Arc::new(checkout_payments_stripe::StripeWebhookVerifier::new(
                    settings.payments.stripe.webhook_secret.expose(),
                )) as Arc<dyn checkout_ports::WebhookVerifier>
            });
        let sink: Arc<dyn EventSink> = match settings.events.sink.as_str() {
            "kafka" => Arc::new(
                checkout_events_kafka::KafkaSink::new(settings.kafka()?).context("events.kafka")?,
            ),
            _ => Arc::new(LogSink),
        };

        let checkout = CheckoutSettings {
            reservation_ttl: Duration::from_secs(settings.checkout.reservation_ttl_secs),
            payment_timeout: Duration::from_secs(settings.checkout.payment_timeout_secs),
            ..CheckoutSettings::default()
        };
        let mut processor = OrderProcessor::new(
            Arc::new(store.clone()),
            inventory.clone(),
            payments,
            clock.clone(),
            ids,
            checkout,
        );
        if settings.inventory.mode == "local" {
            // Orders and stock share the database: one commit per step.
            processor = processor.with_stock_ledger(Arc::new(store.clone()));
        }
        let outbox = Arc::new(store.clone());
        let w = &settings.workers;
        let workers = Workers {
            sweeper: ReservationSweeper::new(processor.clone(), 100),
            reconciler: PaymentReconciler::new(processor.clone(), 100),
            confirmer: ReservationConfirmer::new(processor.clone(), 100),
            relay: Arc::new(OutboxRelay::new(
                outbox.clone(),
                sink,
                clock.clone(),
                RelaySettings {
                    batch: w.relay_batch,
                    max_attempts: w.relay_max_attempts,
                    ..RelaySettings::default()
                },
            )),
            purger: Arc::new(Purger::new(
                Arc::new(store.clone()),
                outbox,
                clock.clone(),
                Duration::from_secs(settings.checkout.idempotency_retention_hours * 3600),
                Duration::from_secs(w.outbox_retention_hours * 3600),
            )),
        };

        let state = AppState {
            processor: processor.clone(),
            idempotency: Arc::new(store.clone()),
            stock,
            webhooks,
            health: Arc::new(StoreHealth(store.clone())),
            metrics: metrics_handle(),
            clock,
            settings: HttpSettings {
                body_limit: settings.server.body_limit_bytes,
                auth: Arc::new(checkout_http::Authenticator::new(&settings.auth).context("auth")?),
                metrics_on_api: settings.server.admin_addr.is_empty(),
                ..HttpSettings::default()
            },
        };
        let listener = TcpListener::bind(&settings.server.addr)
            .with_context(|| format!("server.addr: cannot bind {}", settings.server.addr))?;
        let address = listener.local_addr()?;
        // Refuses `auth.mode = "disabled"` off loopback (and logs it on).
        state
            .settings
            .check_for(address)
            .context("auth.mode / server.addr")?;
        let server_settings = ServerSettings {
            workers: if settings.server.workers == 0 {
                default_http_workers(ServerSettings::default().workers, store.has_writer_thread())
            } else {
                settings.server.workers
            },
            shutdown_timeout: Duration::from_secs(settings.server.shutdown_timeout_secs),
            ..ServerSettings::default()
        };
        let admin = if settings.server.admin_addr.is_empty() {
            None
        } else {
            let admin_listener =
                TcpListener::bind(&settings.server.admin_addr).with_context(|| {
                    format!(
                        "server.admin_addr: cannot bind {}",
                        settings.server.admin_addr
                    )
                })?;
            let admin_address = admin_listener.local_addr()?;
            info!(address = %admin_address, "admin endpoints (metrics, health) listening");
            Some((
                checkout_http::serve_admin(admin_listener, state.clone(), &server_settings)?,
                admin_address,
            ))
        };
        let in_flight = InFlight::default();
        let data = actix_web::web::Data::new(state);
        let counted = in_flight.clone();
        let server = actix_web::HttpServer::new(move || {
            let counted = counted.clone();
            checkout_http::server::app(data.clone()).wrap(actix_web::middleware::from_fn(
                move |req, next| {
                    let counted = counted.clone();
                    async move { counted.track(req, next).await }
                },
            ))
        })
        .workers(server_settings.workers)
        .shutdown_timeout(server_settings.shutdown_timeout.as_secs())
        .client_request_timeout(server_settings.client_request_timeout)
        .disable_signals()
        .listen(listener)?
        .run();
        let token = CancellationToken::new();
        let mut tasks = if settings.workers.enabled {
            spawn_workers(&workers, &settings, &token)
        } else {
            Vec::new()
        };
        if let Some(metrics) = metrics_handle() {
            tasks.push(tokio::spawn(metrics_upkeep(metrics, token.clone())));
        }
        info!(%address, provider = %settings.payments.provider, inventory = %settings.inventory.mode, events = %settings.events.sink, "checkout service listening");
        Ok(Application {
            address,
            server,
            in_flight,
            admin,
            drain_timeout: server_settings.shutdown_timeout,
            workers,
            store,
            processor,
            tasks,
            token,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Where the admin endpoints listen, when they have an address of
    /// their own (`server.admin_addr`; port 0 picks a free one).
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(_, address)| *address)
    }

    pub fn workers(&self) -> &Workers {
        &self.workers
    }

    pub fn store(&self) -> &SeaOrmStore {
        &self.store
    }

    pub fn processor(&self) -> &OrderProcessor {
        &self.processor
    }

    /// Serves until `shutdown` resolves, then stops accepting, finishes the
    /// requests in flight and the workers' current batches.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        let admin = self.admin.map(|(a, _)| {
            let h = a.handle();
            (h, tokio::spawn(a))
        });
        shutdown.await;
        info!(
            in_flight = self.in_flight.count(),
            "shutting down: draining in-flight requests and worker batches"
        );
        // Stop accepting, let every request in flight finish, then stop the
        // server. (actix's own graceful stop can drop a connection in flight
        // when its accept thread exits before the worker reads the stop.)
        handle.pause().await;
        if tokio::time::timeout(self.drain_timeout, self.in_flight.drained())
            .await
            .is_err()
        {
            warn!(
                in_flight = self.in_flight.count(),
                "requests still in flight after the shutdown timeout; stopping anyway"
            );
        }
        // The workers finish their batches before the server stops: pooled
        // PostgreSQL connections opened while serving belong to the HTTP
        // workers' runtimes, which end with the server, and a batch caught
        // on one of them would fail half-done.
        self.token.cancel();
        for task in self.tasks {
            if let Err(e) = task.await {
                warn!(error = %e, "a worker ended abnormally");
            }
        }
        handle.stop(true).await;
        server.await.context("server task")?.context("server")?;
        if let Some((h, task)) = admin {
            h.stop(true).await;
            task.await
                .context("admin server task")?
                .context("admin server")?;
        }
        info!("shut down cleanly");
        Ok(())
    }
}

/// Counts the requests being served so shutdown can wait for them.
#[derive(Debug, Clone, Default)]
struct InFlight {
    count: Arc<std::sync::atomic::AtomicUsize>,
    idle: Arc<tokio::sync::Notify>,
}

impl InFlight {
    async fn track<B: actix_web::body::MessageBody>(
        &self,
        req: actix_web::dev::ServiceRequest,
        next: actix_web::middleware::Next<B>,
    ) -> Result<actix_web::dev::ServiceResponse<B>, actix_web::Error> {
        use std::sync::atomic::Ordering;
        self.count.fetch_add(1, Ordering::SeqCst);
        let res = next.call(req).await;
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
        res
    }

    fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once no request is in flight.
    async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count() == 0 {
                return;
            }
            // Re-check now and then in case a wake-up raced the count.
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }
}

fn spawn_workers(
    workers: &Workers,
    settings: &Settings,
    token: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let w = &settings.workers;
    let ms = Duration::from_millis;
    let mut tasks = Vec::new();
    let sweeper = workers.sweeper.clone();
    tasks.push(tokio::spawn(run_until_cancelled(
        "sweeper",
        ms(w.sweep_interval_ms),
        token.clone(),
        move || {
            let s = sweeper.clone();
            async move { s.run_once().await }
        },
    )));
    let reconciler = workers.reconciler.clone();
    tasks.push(tokio::spawn(run_until_cancelled(
        "reconciler",
        ms(w.reconcile_interval_ms),
        token.clone(),
        move || {
            let r = reconciler.clone();
            async move { r.run_once().await }
        },
    )));
    let confirmer = workers.confirmer.clone();
    tasks.push(tokio::spawn(run_until_cancelled(
        "confirmer",
        ms(w.confirm_interval_ms),
        token.clone(),
        move || {
            let c = confirmer.clone();
            async move { c.run_once().await }
        },
    )));
    let relay = workers.relay.clone();
    let relay_token = token.clone();
    let relay_idle = ms(w.relay_interval_ms);
    tasks.push(tokio::spawn(async move {
        relay.run_paced(relay_idle, relay_token).await;
    }));
    let purger = workers.purger.clone();
    tasks.push(tokio::spawn(run_until_cancelled(
        "purger",
        Duration::from_secs(w.purge_interval_secs),
        token.clone(),
        move || {
            let p = purger.clone();
            async move { p.run_once().await }
        },
    )));
    tasks
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{METRICS_UPKEEP, default_http_workers, metrics_upkeep};
    use metrics_exporter_prometheus::PrometheusBuilder;
    use tokio_util::sync::CancellationToken;

    #[tokio::test(start_paused = true)]
    async fn the_metrics_upkeep_keeps_every_sample_and_stops_when_cancelled() {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[0.01, 0.1, 1.0])
            .unwrap()
            .build_recorder();
        let handle = recorder.handle();
        let token = CancellationToken::new();
        let upkeep = tokio::spawn(metrics_upkeep(handle.clone(), token.clone()));
        metrics::with_local_recorder(&recorder, || {
            for i in 0..1_000 {
                metrics::histogram!("t_request_duration_seconds").record(f64::from(i % 3) * 0.05);
            }
        });
        // A few rounds of upkeep fold the samples into the buckets…
        tokio::time::sleep(METRICS_UPKEEP * 3).await;
        // …and the next render still counts every one of them.
        let text = handle.render();
        assert!(
            text.contains("t_request_duration_seconds_count 1000"),
            "{text}"
        );
        assert!(
            text.contains("t_request_duration_seconds_bucket{le=\"0.01\"} 334"),
            "{text}"
        );
        token.cancel();
        tokio::time::timeout(METRICS_UPKEEP, upkeep)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn sqlite_writer_thread_keeps_a_core_of_its_own() {
        assert_eq!(default_http_workers(2, true), 1);
        assert_eq!(default_http_workers(8, true), 7);
        // One core: the writer shares it, but the server still needs a worker.
        assert_eq!(default_http_workers(1, true), 1);
        assert_eq!(default_http_workers(2, false), 2);
        assert_eq!(default_http_workers(0, false), 1);
    }
}
