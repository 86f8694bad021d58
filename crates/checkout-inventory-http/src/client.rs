//! [`HttpInventory`]: the [`InventoryPort`] over the inventory service's
//! HTTP API, and the translation of its answers into the port's variants.
//!
//! The translation is what the rest of the checkout relies on:
//! - a refusal the service *meant* — `insufficient_inventory`,
//!   `unknown_book`, `price_mismatch`, `currency_mismatch`,
//!   `reservation_not_found`, `reservation_gone` — becomes the matching
//!   business variant (`Unavailable`, `Pricing`, `NotFound`,
//!   `ReservationGone`), which the API answers with 409 and the order moves
//!   to `inventory_failed`;
//! - a service that cannot be reached or keeps failing becomes
//!   `ServiceUnavailable` (503 at the API, order cancelled, reservation
//!   released by id to be safe);
//! - anything else — an unreadable answer, an undocumented status — becomes
//!   `Unexpected`, with the status and the service's code in the message.
//!
//! A refusal is recognised by its `code`, not by its status alone: a 404
//! without `code` comes from a wrong base URL or a proxy, not from the
//! inventory, and must not be read as "unknown book".

use std::sync::Arc;

use async_trait::async_trait;
use checkout_domain::{PricingProblem, ReservationId};
use checkout_ports::{
    Clock, InventoryError, InventoryPort, Reservation, ReservationRequest, SystemClock,
};
use time::OffsetDateTime;
use tracing::Instrument;

use crate::breaker::{BreakerState, CircuitBreaker};
use crate::config::{ConfigError, HttpInventoryConfig};
use crate::transport::{Answer, Transport};
use crate::wire::{self, ErrorBody, ExtendBody, Malformed, ReserveBody};

/// The inventory service, reached over HTTP.
///
/// Cheap to clone; clones share the connection pool and the circuit breaker,
/// so build one per process and hand clones around.
#[derive(Clone)]
pub struct HttpInventory {
    transport: Transport,
    breaker: Arc<CircuitBreaker>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for HttpInventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpInventory")
            .field("transport", &self.transport)
            .field("breaker", &self.breaker.state())
            .finish_non_exhaustive()
    }
}

impl HttpInventory {
    /// Validates `config` and builds the client (connection pool included;
    /// nothing is sent until the first call).
    pub fn new(config: HttpInventoryConfig) -> Result<Self, ConfigError> {
        let base = config.validate()?;
        let breaker = Arc::new(CircuitBreaker::new(config.breaker.clone()));
        let transport = Transport::new(&config, base, Arc::clone(&breaker))?;
        Ok(Self {
            transport,
            breaker,
            clock: Arc::new(SystemClock),
        })
    }

    /// Uses `clock` to turn a request's `expires_at` into the time-to-live
    /// the service takes — the same clock the checkout computed `expires_at`
    /// with, so a fixed clock in tests gives a fixed TTL. Default: the
    /// system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The circuit breaker's state, for health checks and metrics.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    fn ttl_seconds(&self, expires_at: OffsetDateTime) -> u32 {
        wire::ttl_seconds(expires_at, self.clock.now())
    }
}

#[async_trait]
impl InventoryPort for HttpInventory {
    async fn reserve(&self, request: &ReservationRequest) -> Result<Reservation, InventoryError> {
        let span = tracing::info_span!(
            "inventory.reserve",
            order_id = %request.order_id,
            reservation_id = %request.reservation_id,
            lines = request.lines.len(),
        );
        async {
            let ttl = self.ttl_seconds(request.expires_at);
            let body = to_json(&ReserveBody::new(request, ttl))?;
            let url = self.transport.url(&["reservations"])?;
            let answer = self.transport.post(url, body).await?;
            if answer.status.is_success() {
                let reservation = wire::reservation(&answer.body, request)
                    .map_err(|e| malformed("reserve", &answer, &e))?;
                tracing::info!(expires_at = %reservation.expires_at, "stock reserved");
                return Ok(reservation);
            }
            let refusal = refusal(&answer);
            let error = match refusal.code.as_deref() {
                Some("insufficient_inventory") => {
                    refusal.unavailable_items().map(InventoryError::Unavailable)
                }
                Some("unknown_book") => refusal
                    .unknown_books()
                    .map(|b| InventoryError::Pricing(PricingProblem::UnknownBooks(b))),
                Some("price_mismatch") => refusal
                    .price_mismatches()
                    .map(|m| InventoryError::Pricing(PricingProblem::PriceMismatch(m))),
                Some("currency_mismatch") => refusal.catalog_currency().map(|catalog| {
                    InventoryError::Pricing(PricingProblem::CurrencyMismatch {
                        catalog,
                        order: request.currency,
                    })
                }),
                Some("reservation_gone") => {
                    Ok(InventoryError::ReservationGone(request.reservation_id))
                }
                _ => return Err(unexpected("reserve", &answer, &refusal)),
            };
            let error = error.map_err(|e| malformed("reserve", &answer, &e))?;
            tracing::info!(error = %error, "reserve refused");
            Err(error)
        }
        .instrument(span)
        .await
    }

    async fn confirm(&self, id: ReservationId) -> Result<(), InventoryError> {
        let span = tracing::info_span!("inventory.confirm", reservation_id = %id);
        async {
            let answer = self.post_action(id, "confirm", b"{}".to_vec()).await?;
            if answer.status.is_success() {
                tracing::info!("reservation confirmed");
                return Ok(());
            }
            let refusal = refusal(&answer);
            match refusal.code.as_deref() {
                Some("reservation_gone") => Err(InventoryError::ReservationGone(id)),
                Some("reservation_not_found") => Err(InventoryError::NotFound),
                _ => Err(unexpected("confirm", &answer, &refusal)),
            }
        }
        .instrument(span)
        .await
    }

    async fn release(&self, id: ReservationId) -> Result<(), InventoryError> {
        let span = tracing::info_span!("inventory.release", reservation_id = %id);
        async {
            let answer = self.post_action(id, "release", b"{}".to_vec()).await?;
            if answer.status.is_success() {
                tracing::info!("reservation released");
                return Ok(());
            }
            let refusal = refusal(&answer);
            match refusal.code.as_deref() {
                // The port's contract: releasing an unknown or already
                // released reservation is a no-op.
                Some("reservation_not_found" | "reservation_gone") => {
                    tracing::debug!("nothing to release");
                    Ok(())
                }
                _ => Err(unexpected("release", &answer, &refusal)),
            }
        }
        .instrument(span)
        .await
    }

    async fn extend(
        &self,
        id: ReservationId,
        expires_at: OffsetDateTime,
    ) -> Result<(), InventoryError> {
        let span = tracing::info_span!("inventory.extend", reservation_id = %id);
        async {
            let body = to_json(&ExtendBody {
                ttl_seconds: self.ttl_seconds(expires_at),
            })?;
            let answer = self.post_action(id, "extend", body).await?;
            if answer.status.is_success() {
                tracing::info!(%expires_at, "reservation extended");
                return Ok(());
            }
            let refusal = refusal(&answer);
            match refusal.code.as_deref() {
                Some("reservation_gone") => Err(InventoryError::ReservationGone(id)),
                Some("reservation_not_found") => Err(InventoryError::NotFound),
                _ => Err(unexpected("extend", &answer, &refusal)),
            }
        }
        .instrument(span)
        .await
    }

    /// Always `Ok(0)`: the inventory service expires its own reservations
    /// at their `expires_at` (it owns the stock and the clock the TTL runs
    /// on), so there is nothing for the checkout's sweeper to release here.
    /// Orders whose reservation expired are still handled by the sweeper
    /// from the checkout's database, which releases them by id.
    async fn release_expired(
        &self,
        _now: OffsetDateTime,
        _limit: u32,
    ) -> Result<u64, InventoryError> {
        Ok(0)
    }
}

impl HttpInventory {
    /// `POST /reservations/{id}/{action}`.
    async fn post_action(
        &self,
        id: ReservationId,
        action: &str,
        body: Vec<u8>,
    ) -> Result<Answer, InventoryError> {
        let id = id.to_string();
        let url = self.transport.url(&["reservations", &id, action])?;
        self.transport.post(url, body).await
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, InventoryError> {
    serde_json::to_vec(value)
        .map_err(|e| InventoryError::Unexpected(format!("could not encode the request: {e}")))
}

/// The body of a non-2xx final answer. A 3xx is never a refusal the
/// service meant (redirects are not followed), so its body is not read.
fn refusal(answer: &Answer) -> ErrorBody {
    if answer.status.is_client_error() {
        ErrorBody::parse(&answer.body)
    } else {
        ErrorBody::default()
    }
}

/// A status or code this client does not know: the message carries what
/// the service said, so the log shows it (the body itself is not echoed: it
/// may be a large HTML page).
fn unexpected(operation: &str, answer: &Answer, refusal: &ErrorBody) -> InventoryError {
    let mut text = format!(
        "the inventory service answered {operation} with {}",
        answer.status
    );
    if let Some(code) = &refusal.code {
        text.push_str(&format!(" ({code})"));
    }
    if let Some(message) = &refusal.message {
        text.push_str(&format!(": {message}"));
    }
    if matches!(answer.status.as_u16(), 401 | 403) {
        text.push_str(" — check the inventory client's bearer_token");
    }
    tracing::warn!(status = answer.status.as_u16(), "{text}");
    InventoryError::Unexpected(text)
}

fn malformed(operation: &str, answer: &Answer, error: &Malformed) -> InventoryError {
    let text = format!(
        "unusable answer {} from the inventory service to {operation}: {error}",
        answer.status
    );
    tracing::warn!(status = answer.status.as_u16(), "{text}");
    InventoryError::Unexpected(text)
}
