//! Background workers: the reservation sweeper, the payment reconciler, the
//! reservation-confirm retrier, the outbox relay and the purger.
//!
//! Each reads its work from the database on every pass (never from memory),
//! so a restart loses nothing, and each is safe to run in several service
//! instances at once: order changes are compare-and-set on the order's
//! version (the loser of a race reloads and finds nothing left to do) and the
//! outbox is claimed with a lease. `run_until_cancelled` (and the relay's
//! own loop, [`OutboxRelay::run_paced`]) finishes the batch in hand before
//! it stops.

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use checkout_domain::{OrderId, OrderState};
use checkout_ports::{Clock, EventSink, IdempotencyStore, OutboxRecord, OutboxStore, SinkError};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::error::AppError;
use crate::metrics as m;
use crate::processor::OrderProcessor;

/// The actor recorded on the audit trail for changes made by workers.
pub const SYSTEM_ACTOR: &str = "system";

/// Runs `pass` every `interval` until `token` is cancelled. A pass that found
/// a full batch runs again at once (draining a backlog); an error is logged
/// and counted, and the loop goes on.
pub async fn run_until_cancelled<F, Fut>(
    name: &'static str,
    interval: Duration,
    token: CancellationToken,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, AppError>>,
{
    run_with_pauses(name, interval, token, move || {
        let more = pass();
        async move {
            Ok(if more.await? {
                Duration::ZERO
            } else {
                interval
            })
        }
    })
    .await;
}

/// Runs `pass` until `token` is cancelled, waiting after each pass for as
/// long as the pass asks (zero: again at once, after letting other tasks
/// run). A failed pass is logged and counted, and followed by `idle`.
async fn run_with_pauses<F, Fut>(
    name: &'static str,
    idle: Duration,
    token: CancellationToken,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Duration, AppError>>,
{
    loop {
        let pause = match pass().await {
            Ok(pause) => pause,
            Err(e) => {
                warn!(worker = name, error = %e, "worker pass failed");
                m::worker_error(name);
                idle
            }
        };
        if token.is_cancelled() {
            break;
        }
        if pause.is_zero() {
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = token.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    debug!(worker = name, "worker stopped");
}

/// Cancels orders whose reservation expired while still `reserved`, and
/// releases orphaned expired reservations in the inventory.
#[derive(Debug, Clone)]
pub struct ReservationSweeper {
    processor: OrderProcessor,
    batch: u32,
}

impl ReservationSweeper {
    pub fn new(processor: OrderProcessor, batch: u32) -> Self {
        Self { processor, batch }
    }

    /// One pass; `true` when a full batch was found (there may be more).
    pub async fn run_once(&self) -> Result<bool, AppError> {
        let now = self.processor.now();
        let orders = self
            .processor
            .repo()
            .find_expired_reservations(&[OrderState::Reserved], now, self.batch)
            .await?;
        let found = orders.len();
        for order in orders {
            let id = order.id();
            match self
                .processor
                .cancel(id, "Reservation expired".into(), Some(SYSTEM_ACTOR.into()))
                .await
            {
                Ok(_) | Err(AppError::InvalidTransition { .. }) => m::worker_items("sweeper", 1),
                Err(e) => warn!(order_id = %id, error = %e, "cancelling an expired order failed"),
            }
        }
        let released = self
            .processor
            .inventory()
            .release_expired(now, self.batch)
            .await?;
        m::worker_items("sweeper_orphans", released);
        Ok(found as u32 >= self.batch || released >= u64::from(self.batch))
    }
}

/// Settles orders stuck in `processing_payment` past the payment timeout by
/// asking the provider for the payment's status.
#[derive(Debug, Clone)]
pub struct PaymentReconciler {
    processor: OrderProcessor,
    batch: u32,
}

impl PaymentReconciler {
    pub fn new(processor: OrderProcessor, batch: u32) -> Self {
        Self { processor, batch }
    }

    pub async fn run_once(&self) -> Result<bool, AppError> {
        let cutoff = self.processor.now() - self.processor.settings().payment_timeout;
        let orders = self
            .processor
            .repo()
            .find_stale(OrderState::ProcessingPayment, cutoff, self.batch)
            .await?;
        for order in orders {
            let id = order.id();
            match self.processor.settle_payment(id).await {
                Ok(o) => {
                    if o.state() != OrderState::ProcessingPayment {
                        m::worker_items("reconciler", 1);
                    }
                }
                Err(e) => {
                    warn!(order_id = %id, error = %e, "reconciling the payment failed; will retry")
                }
            }
        }
        // Orders still waiting on their customer stay stale, so draining a
        // full batch at once would spin on them: one batch per interval.
        Ok(false)
    }
}

/// Confirms reservations of paid orders whose confirmation failed, until
/// each is confirmed: a paid order's stock is never given back.
#[derive(Debug, Clone)]
pub struct ReservationConfirmer {
    processor: OrderProcessor,
    batch: u32,
}

impl ReservationConfirmer {
    pub fn new(processor: OrderProcessor, batch: u32) -> Self {
        Self { processor, batch }
    }

    pub async fn run_once(&self) -> Result<bool, AppError> {
        let orders = self
            .processor
            .repo()
            .find_unconfirmed_reservations(self.batch)
            .await?;
        for order in orders {
            match self.processor.retry_reservation_confirm(order.id()).await {
                Ok(true) => m::worker_items("confirmer", 1),
                Ok(false) => {}
                Err(e) => {
                    warn!(order_id = %order.id(), error = %e, "retrying a reservation confirm failed")
                }
            }
        }
        Ok(false)
    }
}

/// Outbox relay settings.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub batch: u32,
    /// How long a claimed batch is ours before another relay may take it
    /// (with the SQL store: how long the outbox is this instance's).
    pub lease_seconds: u32,
    /// Failed attempts after which an event is parked (dead-lettered).
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch: 200,
            lease_seconds: 30,
            max_attempts: 10,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
        }
    }
}

/// Publishes outbox events to a sink, in per-order order, at least once.
pub struct OutboxRelay {
    outbox: Arc<dyn OutboxStore>,
    sink: Arc<dyn EventSink>,
    clock: Arc<dyn Clock>,
    settings: RelaySettings,
}

impl std::fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("sink", &self.sink.name())
            .field("settings", &self.settings)
            .finish()
    }
}

impl OutboxRelay {
    pub fn new(
        outbox: Arc<dyn OutboxStore>,
        sink: Arc<dyn EventSink>,
        clock: Arc<dyn Clock>,
        settings: RelaySettings,
    ) -> Self {
        Self {
            outbox,
            sink,
            clock,
            settings,
        }
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.min(20));
        self.settings
            .backoff_base
            .saturating_mul(factor)
            .min(self.settings.backoff_max)
    }

    /// Claims a batch and publishes it in waves: the first pending event of
    /// every order, then the second, … An order whose event failed drops out
    /// of the later waves, so no consumer ever sees an order's events out of
    /// sequence. Returns `true` when the batch was full.
    pub async fn run_once(&self) -> Result<bool, AppError> {
        Ok(self.pass().await?.more)
    }

    /// Relays until `token` is cancelled, each pass timed to find about a
    /// full batch: after a pass that found `n` events in the time since the
    /// one before, the next starts when a batch should be waiting at that
    /// rate, at most `idle` later (also the pause after an empty pass, or a
    /// failed one). A full batch is followed at once.
    ///
    /// Why not a fixed interval: the events that pile up during a fixed
    /// sleep are relayed in one burst of back-to-back batches (claims,
    /// parses, the published marks), and on the service's two cores that
    /// burst took the request path's CPU: at 3,000 orders/s, a 250 ms
    /// sleep left about 4,500 events for each burst, and the order's p99
    /// was twice what it was with the same work spread out
    /// (docs/performance.md).
    pub async fn run_paced(&self, idle: Duration, token: CancellationToken) {
        let mut previous = Instant::now();
        run_with_pauses("relay", idle, token, || {
            let started = Instant::now();
            let window = started.saturating_duration_since(previous);
            previous = started;
            async move {
                let pass = self.pass().await?;
                Ok(pass.pause(self.settings.batch, window, started.elapsed(), idle))
            }
        })
        .await;
    }

    /// One pass: claims, publishes and marks; what it found.
    async fn pass(&self) -> Result<RelayPass, AppError> {
        let now = self.clock.now();
        let batch = self
            .outbox
            .claim_batch(self.settings.batch, now, self.settings.lease_seconds)
            .await?;
        let claimed = batch.len();
        let full = claimed as u32 >= self.settings.batch;
        if batch.is_empty() {
            self.report_lag().await;
            return Ok(RelayPass {
                claimed,
                more: false,
            });
        }
        let mut queues: Vec<(OrderId, VecDeque<OutboxRecord>)> = Vec::new();
        for record in batch {
            match queues.iter_mut().find(|(o, _)| *o == record.order_id) {
                Some((_, q)) => q.push_back(record),
                None => queues.push((record.order_id, VecDeque::from([record]))),
            }
        }
        for (_, q) in &mut queues {
            q.make_contiguous().sort_by_key(|r| r.sequence);
        }
        let mut failed: HashSet<OrderId> = HashSet::new();
        let mut published = Vec::new();
        loop {
            let wave: Vec<OutboxRecord> = queues
                .iter_mut()
                .filter(|(o, _)| !failed.contains(o))
                .filter_map(|(_, q)| q.pop_front())
                .collect();
            if wave.is_empty() {
                break;
            }
            let results = self.sink.publish(&wave).await;
            for (i, record) in wave.into_iter().enumerate() {
                let result = results.get(i).cloned().unwrap_or_else(|| {
                    Err(SinkError::Unavailable("sink returned no result".into()))
                });
                match result {
                    Ok(()) => published.push(record.key()),
                    Err(e) => {
                        failed.insert(record.order_id);
                        let attempts = record.attempts + 1;
                        let park = matches!(e, SinkError::Rejected(_))
                            || attempts >= self.settings.max_attempts;
                        let retry_at = now + self.backoff(record.attempts);
                        warn!(event_id = %record.id, order_id = %record.order_id, attempts, park, error = %e, "publishing an event failed");
                        metrics::counter!(m::OUTBOX_FAILED, "sink" => self.sink.name().to_owned())
                            .increment(1);
                        if park {
                            metrics::counter!(m::OUTBOX_PARKED).increment(1);
                        }
                        self.outbox
                            .record_failure(record.key(), &e.to_string(), park, retry_at)
                            .await?;
                    }
                }
            }
        }
        if !published.is_empty() {
            self.outbox
                .mark_published(&published, self.clock.now())
                .await?;
            metrics::counter!(m::OUTBOX_PUBLISHED, "sink" => self.sink.name().to_owned())
                .increment(published.len() as u64);
        }
        Ok(RelayPass {
            claimed,
            more: full && failed.is_empty(),
        })
    }

    async fn report_lag(&self) {
        match self.outbox.stats(self.clock.now()).await {
            Ok(stats) => {
                metrics::gauge!(m::OUTBOX_PENDING).set(stats.pending as f64);
                metrics::gauge!(m::OUTBOX_PARKED_NOW).set(stats.parked as f64);
                metrics::gauge!(m::OUTBOX_LAG).set(stats.oldest_pending_seconds);
            }
            Err(e) => warn!(error = %e, "reading outbox stats failed"),
        }
    }
}

/// What one relay pass found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RelayPass {
    /// Events claimed.
    claimed: usize,
    /// A full batch, all published: more may be waiting.
    more: bool,
}

impl RelayPass {
    /// How long to wait before the next pass, given `batch`, the time
    /// since the previous pass started (`window`, in which what this pass
    /// claimed arrived), the time this pass took (`took`) and the longest
    /// pause (`idle`): until about a batch should be waiting again.
    fn pause(self, batch: u32, window: Duration, took: Duration, idle: Duration) -> Duration {
        if self.more {
            return Duration::ZERO;
        }
        if self.claimed == 0 {
            return idle;
        }
        // At the rate this pass saw, a batch arrives in window × batch ÷
        // claimed; `took` of it has already gone by.
        let fill = window.mul_f64(f64::from(batch) / self.claimed as f64);
        fill.saturating_sub(took).min(idle)
    }
}

/// Deletes what the checkout no longer needs: idempotency keys past their
/// retention and published outbox events past theirs.
pub struct Purger {
    idempotency: Arc<dyn IdempotencyStore>,
    outbox: Arc<dyn OutboxStore>,
    clock: Arc<dyn Clock>,
    idempotency_retention: Duration,
    outbox_retention: Duration,
}

impl std::fmt::Debug for Purger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Purger")
            .field("idempotency_retention", &self.idempotency_retention)
            .field("outbox_retention", &self.outbox_retention)
            .finish()
    }
}

impl Purger {
    pub fn new(
        idempotency: Arc<dyn IdempotencyStore>,
        outbox: Arc<dyn OutboxStore>,
        clock: Arc<dyn Clock>,
        idempotency_retention: Duration,
        outbox_retention: Duration,
    ) -> Self {
        Self {
            idempotency,
            outbox,
            clock,
            idempotency_retention,
            outbox_retention,
        }
    }

    pub async fn run_once(&self) -> Result<bool, AppError> {
        let now = self.clock.now();
        let keys = self
            .idempotency
            .purge(now - self.idempotency_retention)
            .await
            .map_err(|e| AppError::Unavailable(e.to_string()))?;
        let events = self
            .outbox
            .purge_published(now - self.outbox_retention)
            .await?;
        m::worker_items("purged_idempotency_keys", keys);
        m::worker_items("purged_outbox_events", events);
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const IDLE: Duration = Duration::from_millis(250);

    fn pass(claimed: usize, more: bool) -> RelayPass {
        RelayPass { claimed, more }
    }

    #[test]
    fn a_full_batch_is_followed_at_once() {
        assert_eq!(
            pass(200, true).pause(200, 10 * MS, 3 * MS, IDLE),
            Duration::ZERO
        );
    }

    #[test]
    fn an_empty_pass_waits_the_longest_pause() {
        assert_eq!(pass(0, false).pause(200, 10 * MS, MS, IDLE), IDLE);
    }

    #[test]
    fn the_next_pass_comes_when_a_batch_should_be_waiting() {
        // 50 events in 10 ms: 200 arrive in 40 ms, 2 of them already spent.
        assert_eq!(pass(50, false).pause(200, 10 * MS, 2 * MS, IDLE), 38 * MS);
        // A batch nearly full: the same pace again, less what the pass took.
        assert_eq!(pass(190, false).pause(200, 19 * MS, 4 * MS, IDLE), 16 * MS);
        // A pass that took longer than the batch takes to gather: at once.
        assert_eq!(
            pass(100, false).pause(200, 5 * MS, 12 * MS, IDLE),
            Duration::ZERO
        );
    }

    #[test]
    fn a_trickle_waits_no_longer_than_the_longest_pause() {
        assert_eq!(pass(1, false).pause(200, 100 * MS, MS, IDLE), IDLE);
    }

    #[test]
    fn a_full_batch_with_a_failure_is_paced_like_any_other() {
        // Not `more` (an order's event failed), 200 claimed in 20 ms.
        assert_eq!(pass(200, false).pause(200, 20 * MS, 5 * MS, IDLE), 15 * MS);
    }
}
