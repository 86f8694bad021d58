//! The order pipeline and the use cases that change an order afterwards.
//!
//! The pipeline (the seed's `OrderProcessor`): create (pending) → validating →
//! reserve (reserved, or inventory_failed) → processing_payment → paid with
//! the reservation confirmed, or payment_failed with it released. Every
//! failure path releases what it holds and lands in a clear state; an
//! unknown payment outcome stays in processing_payment for the reconciler.
//!
//! Commits per successful order: the order is written once with everything up
//! to processing_payment (those transitions have no outside call between
//! them) and once more when paid; the stock reservation and its confirmation
//! are the inventory's own.

use std::sync::Arc;

use checkout_domain::{
    AuditEntry, Cart, CartDraft, DomainError, Money, Order, OrderChange, OrderId, OrderState,
    Payment, PaymentMethod, PaymentStatus, PricingProblem, ReservationId, ReservationRef,
    ReservationStatus, TransitionContext, TransitionDetail, UnavailableItem,
};
use checkout_ports::{
    CatalogRead, Clock, CreateIntent, IdGenerator, InventoryError, InventoryPort, LedgerError,
    NewRefund, OrderPage, OrderQuery, OrderRepository, OrderStockLedger, PaymentError,
    PaymentIntent, PaymentProvider, Refund, RepositoryError, ReservationRequest, ReserveLine,
    StockEffect,
};
use rust_decimal::Decimal;
use serde_json::json;
use time::OffsetDateTime;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::error::AppError;
use crate::metrics as m;
use crate::settings::CheckoutSettings;

/// How a placed order ended, for the API to answer.
#[derive(Debug, Clone)]
pub enum PlacedOrder {
    /// Paid; the reservation is confirmed (or being confirmed).
    Paid(Order),
    /// The customer must act (3-D Secure); the order waits in
    /// processing_payment with the provider's `next_action`.
    ActionRequired(Order),
    /// The provider has not settled the payment (timeout, 5xx, processing);
    /// the reconciler will.
    PaymentPending(Order),
    /// The card was declined; the order is payment_failed, stock released.
    Declined {
        order: Order,
        code: String,
        message: String,
    },
    /// Not enough stock; the order is inventory_failed.
    InventoryUnavailable {
        order: Order,
        items: Vec<UnavailableItem>,
    },
    /// Unknown book, price or currency mismatch; the order is inventory_failed.
    InventoryRejected {
        order: Order,
        problem: PricingProblem,
    },
    /// The provider failed definitely; the order went payment_failed →
    /// cancelled, stock released.
    PaymentProviderError {
        order: Order,
        code: String,
        message: String,
    },
    /// The inventory service could not be reached; the order is cancelled.
    InventoryServiceUnavailable { order: Order, message: String },
}

impl PlacedOrder {
    pub fn order(&self) -> &Order {
        match self {
            PlacedOrder::Paid(o)
            | PlacedOrder::ActionRequired(o)
            | PlacedOrder::PaymentPending(o) => o,
            PlacedOrder::Declined { order, .. }
            | PlacedOrder::InventoryUnavailable { order, .. }
            | PlacedOrder::InventoryRejected { order, .. }
            | PlacedOrder::PaymentProviderError { order, .. }
            | PlacedOrder::InventoryServiceUnavailable { order, .. } => order,
        }
    }

    /// A short label for metrics and logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            PlacedOrder::Paid(_) => "paid",
            PlacedOrder::ActionRequired(_) => "action_required",
            PlacedOrder::PaymentPending(_) => "payment_pending",
            PlacedOrder::Declined { .. } => "declined",
            PlacedOrder::InventoryUnavailable { .. } => "insufficient_inventory",
            PlacedOrder::InventoryRejected { .. } => "inventory_rejected",
            PlacedOrder::PaymentProviderError { .. } => "payment_provider_error",
            PlacedOrder::InventoryServiceUnavailable { .. } => "inventory_service_unavailable",
        }
    }
}

/// The checkout's use cases, over the ports only.
#[derive(Clone)]
pub struct OrderProcessor {
    repo: Arc<dyn OrderRepository>,
    inventory: Arc<dyn InventoryPort>,
    payments: Arc<dyn PaymentProvider>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGenerator>,
    settings: CheckoutSettings,
    /// Set when the order store also keeps the stock: stock effects then
    /// commit with the order change (see `checkout_ports::ledger`).
    ledger: Option<Arc<dyn OrderStockLedger>>,
}

impl std::fmt::Debug for OrderProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderProcessor")
            .field("provider", &self.payments.name())
            .field("settings", &self.settings)
            .finish()
    }
}

fn ctx(reason: impl Into<String>, at: OffsetDateTime, actor: &Option<String>) -> TransitionContext {
    TransitionContext::new(reason, at).actor(actor.clone())
}

impl OrderProcessor {
    pub fn new(
        repo: Arc<dyn OrderRepository>,
        inventory: Arc<dyn InventoryPort>,
        payments: Arc<dyn PaymentProvider>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGenerator>,
        settings: CheckoutSettings,
    ) -> Self {
        Self {
            repo,
            inventory,
            payments,
            clock,
            ids,
            settings,
            ledger: None,
        }
    }

    /// Commits stock effects in the order's own transactions (the order
    /// store and the stock share a database).
    pub fn with_stock_ledger(mut self, ledger: Arc<dyn OrderStockLedger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    pub fn settings(&self) -> &CheckoutSettings {
        &self.settings
    }

    pub(crate) fn repo(&self) -> &Arc<dyn OrderRepository> {
        &self.repo
    }

    pub(crate) fn inventory(&self) -> &Arc<dyn InventoryPort> {
        &self.inventory
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Checks a raw cart, then places it. An invalid cart touches no port.
    pub async fn place_order_from_draft(
        &self,
        draft: CartDraft,
        actor: Option<String>,
    ) -> Result<PlacedOrder, AppError> {
        let cart = Cart::parse(draft)?;
        self.place_order(&cart, actor).await
    }

    /// Runs the whole pipeline for a checked cart.
    pub async fn place_order(
        &self,
        cart: &Cart,
        actor: Option<String>,
    ) -> Result<PlacedOrder, AppError> {
        let id = self.ids.order_id();
        let span = info_span!("place_order", order_id = %id, customer_id = %cart.customer_id());
        // Boxed: the pipeline's state machine (every path, each holding an
        // order and a provider call) is large, and callers keep it inside
        // their own futures.
        let result = Box::pin(self.run_pipeline(id, cart, actor).instrument(span)).await;
        if let Ok(placed) = &result {
            m::order_outcome(placed.outcome());
        }
        result
    }

    async fn run_pipeline(
        &self,
        id: OrderId,
        cart: &Cart,
        actor: Option<String>,
    ) -> Result<PlacedOrder, AppError> {
        let now = self.clock.now();
        let (mut order, created) = Order::place(id, cart, now, actor.clone());
        let mut changes = vec![created];
        changes.push(order.transition(
            OrderState::Validating,
            ctx("Starting order validation", now, &actor),
        )?);

        let reservation_id = self.ids.reservation_id();
        let request = ReservationRequest {
            reservation_id,
            order_id: id,
            currency: cart.currency(),
            lines: cart
                .items()
                .iter()
                .map(|i| ReserveLine {
                    book_id: i.book_id().clone(),
                    quantity: i.quantity(),
                    expected_unit_price: i.expected_unit_price(),
                })
                .collect(),
            expires_at: now + self.settings.reservation_ttl,
        };
        if let Some(ledger) = self.ledger.clone() {
            return self
                .run_ledger_pipeline(ledger.as_ref(), order, changes, request, cart, &actor, now)
                .await;
        }
        let reservation = match self.inventory.reserve(&request).await {
            Ok(r) => r,
            Err(InventoryError::Unavailable(items)) => {
                return self
                    .insufficient_inventory(order, changes, items, &actor, now)
                    .await;
            }
            Err(InventoryError::Pricing(problem)) => {
                return self
                    .reject_pricing(order, changes, problem, &actor, now)
                    .await;
            }
            Err(e) => {
                // The reserve's outcome is unknown: release by id to be safe
                // (a no-op when nothing was reserved).
                warn!(error = %e, "inventory unavailable; cancelling order");
                self.release_quietly(reservation_id).await;
                let message = e.to_string();
                changes.push(
                    order.transition(
                        OrderState::Cancelled,
                        ctx("Inventory service unavailable", now, &actor)
                            .metadata(json!({ "error": message })),
                    )?,
                );
                self.create(&order, &changes).await?;
                return Ok(PlacedOrder::InventoryServiceUnavailable { order, message });
            }
        };

        let prices: Vec<_> = reservation
            .lines
            .iter()
            .map(|l| (l.book_id.clone(), l.unit_price))
            .collect();
        if let Err(problem) = order.apply_catalog_prices(&prices) {
            self.release_quietly(reservation.id).await;
            return self
                .reject_pricing(order, changes, problem, &actor, now)
                .await;
        }
        self.reserved_and_paying(
            &mut order,
            &mut changes,
            (reservation.id, reservation.expires_at),
            &actor,
            now,
        )?;
        if let Err(e) = self.create(&order, &changes).await {
            self.release_quietly(reservation.id).await;
            return Err(e);
        }
        self.pay(order, cart.payment_method(), &actor).await
    }

    /// The pipeline when stock and orders share a transaction: price from
    /// the catalog, then reserve and write the order in one commit.
    ///
    /// The first quote may come from the store's memory; when the prices
    /// or the reservation refuse it, the order is priced once more from the
    /// catalog itself (`CatalogRead`), so a stale memory costs a round trip,
    /// never an order the catalog would take.
    #[allow(clippy::too_many_arguments)]
    async fn run_ledger_pipeline(
        &self,
        ledger: &dyn OrderStockLedger,
        order: Order,
        changes: Vec<OrderChange>,
        request: ReservationRequest,
        cart: &Cart,
        actor: &Option<String>,
        now: OffsetDateTime,
    ) -> Result<PlacedOrder, AppError> {
        let books: Vec<_> = request.lines.iter().map(|l| l.book_id.clone()).collect();
        let mut read = CatalogRead::Cached;
        loop {
            let prices = match ledger.catalog_prices(&books, read).await {
                Ok(p) => p,
                Err(e) => {
                    return self
                        .inventory_outage(order, changes, e.to_string(), actor, now)
                        .await;
                }
            };
            let (mut priced, mut priced_changes) = (order.clone(), changes.clone());
            let refusal = match priced.apply_catalog_prices(&prices) {
                Err(problem) => problem,
                Ok(()) => {
                    self.reserved_and_paying(
                        &mut priced,
                        &mut priced_changes,
                        (request.reservation_id, request.expires_at),
                        actor,
                        now,
                    )?;
                    match ledger
                        .create_with_reservation(&priced, &priced_changes, &request, &prices)
                        .await
                    {
                        Ok(()) => {
                            m::changes_saved(&priced_changes);
                            return self.pay(priced, cart.payment_method(), actor).await;
                        }
                        Err(LedgerError::Inventory(InventoryError::Pricing(problem))) => problem,
                        Err(LedgerError::Inventory(InventoryError::Unavailable(items))) => {
                            return self
                                .insufficient_inventory(order, changes, items, actor, now)
                                .await;
                        }
                        Err(LedgerError::Inventory(other)) => {
                            return self
                                .inventory_outage(order, changes, other.to_string(), actor, now)
                                .await;
                        }
                        Err(LedgerError::Repository(e)) => return Err(e.into()),
                    }
                }
            };
            if read == CatalogRead::Cached {
                debug!(
                    code = refusal.code(),
                    "quote refused; pricing from the catalog itself"
                );
                read = CatalogRead::Fresh;
                continue;
            }
            return self
                .reject_pricing(order, changes, refusal, actor, now)
                .await;
        }
    }

    /// A priced order's next steps: its reservation attached, then
    /// `reserved` and `processing_payment`.
    fn reserved_and_paying(
        &self,
        order: &mut Order,
        changes: &mut Vec<OrderChange>,
        (reservation_id, expires_at): (ReservationId, OffsetDateTime),
        actor: &Option<String>,
        now: OffsetDateTime,
    ) -> Result<(), AppError> {
        order.attach_reservation(
            ReservationRef {
                id: reservation_id,
                expires_at,
                status: ReservationStatus::Active,
            },
            now,
        );
        changes.push(
            order.transition(
                OrderState::Reserved,
                ctx("Inventory reserved", now, actor)
                    .metadata(json!({ "reservation_id": reservation_id })),
            )?,
        );
        order.set_payment(Payment::begin(self.payments.name(), order.id(), 1), now);
        changes.push(order.transition(
            OrderState::ProcessingPayment,
            ctx("Initiating payment", now, actor),
        )?);
        Ok(())
    }

    /// Not enough stock: inventory_failed with the short lines.
    async fn insufficient_inventory(
        &self,
        mut order: Order,
        mut changes: Vec<OrderChange>,
        items: Vec<UnavailableItem>,
        actor: &Option<String>,
        now: OffsetDateTime,
    ) -> Result<PlacedOrder, AppError> {
        let detail = TransitionDetail::InventoryFailure {
            code: "insufficient_inventory".into(),
            message: "some books are not available in the requested quantity".into(),
            unavailable_items: items.clone(),
        };
        changes.push(
            order.transition(
                OrderState::InventoryFailed,
                ctx("Insufficient inventory", now, actor)
                    .detail(detail)
                    .metadata(json!({ "unavailable_items": items })),
            )?,
        );
        self.create(&order, &changes).await?;
        Ok(PlacedOrder::InventoryUnavailable { order, items })
    }

    async fn inventory_outage(
        &self,
        mut order: Order,
        mut changes: Vec<OrderChange>,
        message: String,
        actor: &Option<String>,
        now: OffsetDateTime,
    ) -> Result<PlacedOrder, AppError> {
        warn!(error = %message, "inventory unavailable; cancelling order");
        changes.push(order.transition(
            OrderState::Cancelled,
            ctx("Inventory service unavailable", now, actor).metadata(json!({ "error": message })),
        )?);
        self.create(&order, &changes).await?;
        Ok(PlacedOrder::InventoryServiceUnavailable { order, message })
    }

    async fn reject_pricing(
        &self,
        mut order: Order,
        mut changes: Vec<OrderChange>,
        problem: PricingProblem,
        actor: &Option<String>,
        now: OffsetDateTime,
    ) -> Result<PlacedOrder, AppError> {
        let detail = TransitionDetail::InventoryFailure {
            code: problem.code().into(),
            message: problem.to_string(),
            unavailable_items: vec![],
        };
        changes.push(
            order.transition(
                OrderState::InventoryFailed,
                ctx(problem.to_string(), now, actor)
                    .detail(detail)
                    .metadata(json!({ "code": problem.code() })),
            )?,
        );
        self.create(&order, &changes).await?;
        Ok(PlacedOrder::InventoryRejected { order, problem })
    }

    async fn create(&self, order: &Order, changes: &[OrderChange]) -> Result<(), AppError> {
        self.repo.create(order, changes).await?;
        m::changes_saved(changes);
        Ok(())
    }

    async fn save(
        &self,
        order: &Order,
        expected: u64,
        changes: &[OrderChange],
    ) -> Result<(), RepositoryError> {
        self.repo.save(order, expected, changes).await?;
        m::changes_saved(changes);
        Ok(())
    }

    /// Charges the order (processing_payment) within the payment timeout.
    async fn pay(
        &self,
        order: Order,
        method: &PaymentMethod,
        actor: &Option<String>,
    ) -> Result<PlacedOrder, AppError> {
        let deadline = Instant::now() + self.settings.payment_timeout;
        let expected = order.version();
        let Some(mut payment) = order.payment().cloned() else {
            return Err(AppError::Internal(
                "order in processing_payment without a payment".into(),
            ));
        };
        let request = intent_request(&order, &payment)?;
        let created =
            tokio::time::timeout_at(deadline, self.payments.create_intent(&request)).await;
        let intent = match created {
            Ok(Ok(intent)) => intent,
            Ok(Err(e)) => return self.payment_error(order, expected, payment, e, actor).await,
            Err(_) => {
                return self
                    .payment_unknown(
                        order,
                        expected,
                        payment,
                        "payment provider timed out".into(),
                    )
                    .await;
            }
        };
        payment.intent_id = Some(intent.intent_id.clone());
        let confirmed = tokio::time::timeout_at(
            deadline,
            self.payments
                .confirm(&intent.intent_id, method, &payment.idempotency_key),
        )
        .await;
        match confirmed {
            Ok(Ok(intent)) => {
                self.apply_intent(order, expected, payment, intent, actor)
                    .await
            }
            Ok(Err(e)) => self.payment_error(order, expected, payment, e, actor).await,
            Err(_) => {
                self.payment_unknown(
                    order,
                    expected,
                    payment,
                    "payment provider timed out".into(),
                )
                .await
            }
        }
    }

    /// Acts on an intent's status (from confirm, the reconciler or a webhook).
    async fn apply_intent(
        &self,
        mut order: Order,
        expected: u64,
        mut payment: Payment,
        intent: PaymentIntent,
        actor: &Option<String>,
    ) -> Result<PlacedOrder, AppError> {
        payment.intent_id = Some(intent.intent_id.clone());
        payment.status = intent.status;
        if intent.transaction_id.is_some() {
            payment.transaction_id = intent.transaction_id.clone();
        }
        if intent.client_secret.is_some() {
            payment.client_secret = intent.client_secret.clone();
        }
        payment.next_action = intent.next_action.clone();
        match intent.status {
            PaymentStatus::Succeeded => self.mark_paid(order, expected, payment, actor).await,
            PaymentStatus::Failed | PaymentStatus::Canceled => {
                let code = intent
                    .failure_code
                    .unwrap_or_else(|| "payment_failed".into());
                let message = intent
                    .failure_message
                    .unwrap_or_else(|| format!("payment {}", intent.status.as_str()));
                self.fail_payment(order, expected, payment, code, message, false, actor)
                    .await
            }
            PaymentStatus::RequiresAction => {
                order.set_payment(payment, self.now());
                self.save_or_current(order, expected, &[])
                    .await
                    .map(|o| outcome_of(o, PlacedOrder::ActionRequired))
            }
            PaymentStatus::Processing | PaymentStatus::Pending | PaymentStatus::Unknown => {
                order.set_payment(payment, self.now());
                self.save_or_current(order, expected, &[])
                    .await
                    .map(|o| outcome_of(o, PlacedOrder::PaymentPending))
            }
        }
    }

    async fn payment_error(
        &self,
        order: Order,
        expected: u64,
        payment: Payment,
        error: PaymentError,
        actor: &Option<String>,
    ) -> Result<PlacedOrder, AppError> {
        match error {
            PaymentError::Declined { code, message } => {
                self.fail_payment(order, expected, payment, code, message, false, actor)
                    .await
            }
            PaymentError::Rejected { code, message } => {
                self.fail_payment(order, expected, payment, code, message, true, actor)
                    .await
            }
            PaymentError::NotFound => {
                let (code, message) = (
                    "payment_intent_not_found".to_owned(),
                    "the provider does not know the payment".to_owned(),
                );
                self.fail_payment(order, expected, payment, code, message, true, actor)
                    .await
            }
            PaymentError::Unknown(message) => {
                self.payment_unknown(order, expected, payment, message)
                    .await
            }
        }
    }

    /// Leaves the order in processing_payment, recording that the outcome is
    /// unknown; the reconciler settles it by asking the provider.
    async fn payment_unknown(
        &self,
        mut order: Order,
        expected: u64,
        mut payment: Payment,
        message: String,
    ) -> Result<PlacedOrder, AppError> {
        warn!(order_id = %order.id(), %message, "payment outcome unknown; leaving it to the reconciler");
        payment.status = PaymentStatus::Unknown;
        payment.failure_message = Some(message);
        order.set_payment(payment, self.now());
        self.save_or_current(order, expected, &[])
            .await
            .map(|o| outcome_of(o, PlacedOrder::PaymentPending))
    }

    /// Payment succeeded: confirm the reservation and record paid — in one
    /// commit when the stock shares the order's database (the ledger),
    /// otherwise confirm first, then save.
    async fn mark_paid(
        &self,
        order: Order,
        expected: u64,
        mut payment: Payment,
        actor: &Option<String>,
    ) -> Result<PlacedOrder, AppError> {
        payment.status = PaymentStatus::Succeeded;
        let to_confirm = order
            .reservation()
            .filter(|r| {
                r.status == ReservationStatus::Active
                    || r.status == ReservationStatus::ConfirmPending
            })
            .map(|r| r.id);
        let reservation_status = match (self.ledger.as_ref(), to_confirm) {
            (Some(ledger), Some(id)) => {
                let (paid, change) = self.paid(
                    order.clone(),
                    payment.clone(),
                    ReservationStatus::Confirmed,
                    actor,
                )?;
                match ledger
                    .save_with_stock(
                        &paid,
                        expected,
                        std::slice::from_ref(&change),
                        StockEffect::Confirm(id),
                    )
                    .await
                {
                    Ok(()) => {
                        m::changes_saved(std::slice::from_ref(&change));
                        info!(order_id = %paid.id(), "order paid");
                        return Ok(outcome_of(paid, PlacedOrder::Paid));
                    }
                    Err(LedgerError::Repository(RepositoryError::Conflict(order_id))) => {
                        // Someone else (a webhook, the reconciler) settled
                        // the order first; nothing of ours was written.
                        let current = self.current_after_conflict(order_id).await?;
                        return Ok(outcome_of(current, PlacedOrder::Paid));
                    }
                    Err(LedgerError::Repository(e)) => return Err(e.into()),
                    // Nothing was written: record paid without the stock
                    // effect, as the two-port path does.
                    Err(LedgerError::Inventory(e)) => self.confirm_failed(&order, e),
                }
            }
            (None, Some(id)) => match self.inventory.confirm(id).await {
                Ok(()) => ReservationStatus::Confirmed,
                Err(e) => self.confirm_failed(&order, e),
            },
            (_, None) => order
                .reservation()
                .map_or(ReservationStatus::Released, |r| r.status),
        };
        let (paid, change) = self.paid(order, payment, reservation_status, actor)?;
        info!(order_id = %paid.id(), "order paid");
        self.save_or_current(paid, expected, &[change])
            .await
            .map(|o| outcome_of(o, PlacedOrder::Paid))
    }

    /// What a paid order's reservation becomes when confirming it failed:
    /// released when it was gone already (stock needs a manual check),
    /// otherwise left for the confirm worker to retry.
    fn confirm_failed(&self, order: &Order, e: InventoryError) -> ReservationStatus {
        match e {
            InventoryError::ReservationGone(id) => {
                tracing::error!(order_id = %order.id(), reservation_id = %id, "paid order's reservation was already released; stock needs a manual check");
                m::reservation_confirm_failure("gone");
                ReservationStatus::Released
            }
            e => {
                warn!(order_id = %order.id(), error = %e, "confirming the reservation failed; the confirm worker will retry");
                m::reservation_confirm_failure("retry");
                ReservationStatus::ConfirmPending
            }
        }
    }

    /// `order` moved to paid with `payment` and its reservation in
    /// `reservation_status`.
    fn paid(
        &self,
        mut order: Order,
        payment: Payment,
        reservation_status: ReservationStatus,
        actor: &Option<String>,
    ) -> Result<(Order, OrderChange), AppError> {
        let now = self.now();
        order.set_reservation_status(reservation_status, now);
        let transaction = payment.transaction_id.clone();
        order.set_payment(payment, now);
        let change = order.transition(
            OrderState::Paid,
            ctx("Payment confirmed", now, actor).metadata(json!({ "transaction_id": transaction })),
        )?;
        Ok((order, change))
    }

    /// Payment failed: payment_failed (→ cancelled when the provider itself
    /// failed), and the reservation released.
    #[allow(clippy::too_many_arguments)]
    async fn fail_payment(
        &self,
        mut order: Order,
        expected: u64,
        mut payment: Payment,
        code: String,
        message: String,
        provider_error: bool,
        actor: &Option<String>,
    ) -> Result<PlacedOrder, AppError> {
        let now = self.now();
        payment.status = PaymentStatus::Failed;
        payment.failure_code = Some(code.clone());
        payment.failure_message = Some(message.clone());
        order.set_payment(payment, now);
        let reservation = order.reservation().copied();
        let to_release = reservation
            .filter(|r| r.status == ReservationStatus::Active)
            .map(|r| r.id);
        if to_release.is_some() {
            order.set_reservation_status(ReservationStatus::Released, now);
        }
        let mut changes = vec![
            order.transition(
                OrderState::PaymentFailed,
                ctx(
                    if provider_error {
                        "Payment provider error"
                    } else {
                        "Payment declined"
                    },
                    now,
                    actor,
                )
                .detail(TransitionDetail::PaymentFailure {
                    code: code.clone(),
                    message: message.clone(),
                })
                .metadata(json!({ "code": code, "message": message })),
            )?,
        ];
        if provider_error {
            changes.push(
                order.transition(
                    OrderState::Cancelled,
                    ctx("Cancelled after payment provider error", now, actor)
                        .metadata(json!({ "code": code })),
                )?,
            );
        }
        let saved = match (self.ledger.as_ref(), to_release) {
            (Some(ledger), Some(rid)) => match ledger
                .save_with_stock(&order, expected, &changes, StockEffect::Release(rid))
                .await
            {
                Ok(()) => {
                    m::changes_saved(&changes);
                    order
                }
                Err(LedgerError::Repository(RepositoryError::Conflict(id))) => {
                    self.current_after_conflict(id).await?
                }
                Err(LedgerError::Repository(e)) => return Err(e.into()),
                Err(LedgerError::Inventory(e)) => {
                    warn!(order_id = %order.id(), error = %e, "releasing with the failure failed; the reservation will expire");
                    self.save_or_current(order, expected, &changes).await?
                }
            },
            _ => {
                let saved = self.save_or_current(order, expected, &changes).await?;
                if saved.state() == OrderState::PaymentFailed
                    || saved.state() == OrderState::Cancelled
                {
                    if let Some(id) = to_release {
                        self.release_quietly(id).await;
                    }
                }
                saved
            }
        };
        Ok(
            if saved.state() == OrderState::PaymentFailed || saved.state() == OrderState::Cancelled
            {
                if provider_error {
                    PlacedOrder::PaymentProviderError {
                        order: saved,
                        code,
                        message,
                    }
                } else {
                    PlacedOrder::Declined {
                        order: saved,
                        code,
                        message,
                    }
                }
            } else {
                outcome_of(saved, PlacedOrder::PaymentPending)
            },
        )
    }

    /// Saves over `expected`; if someone else (a webhook, the reconciler)
    /// moved the order first, returns the order as they left it instead.
    async fn save_or_current(
        &self,
        order: Order,
        expected: u64,
        changes: &[OrderChange],
    ) -> Result<Order, AppError> {
        match self.save(&order, expected, changes).await {
            Ok(()) => Ok(order),
            Err(RepositoryError::Conflict(id)) => self.current_after_conflict(id).await,
            Err(e) => Err(e.into()),
        }
    }

    /// The order as another writer left it, after our save lost the
    /// compare-and-set to theirs (nothing of ours was written).
    async fn current_after_conflict(&self, id: OrderId) -> Result<Order, AppError> {
        info!(order_id = %id, "order changed concurrently; answering with its current state");
        Ok(self.repo.get(id).await?)
    }

    pub(crate) async fn release_quietly(&self, id: checkout_domain::ReservationId) {
        if let Err(e) = self.inventory.release(id).await {
            warn!(reservation_id = %id, error = %e, "releasing the reservation failed; it will expire");
        }
    }

    /// Settles an order left in processing_payment by asking the provider for
    /// the payment's current status (reconciler and webhooks). An order in
    /// any other state is returned unchanged, so a late or repeated
    /// notification changes nothing.
    pub async fn settle_payment(&self, id: OrderId) -> Result<Order, AppError> {
        let span = info_span!("settle_payment", order_id = %id);
        async move {
            let mut order = self.repo.get(id).await?;
            if order.state() != OrderState::ProcessingPayment {
                return Ok(order);
            }
            let expected = order.version();
            let Some(payment) = order.payment().cloned() else {
                return Err(AppError::Internal(
                    "order in processing_payment without a payment".into(),
                ));
            };
            let intent_id = match &payment.intent_id {
                Some(id) => id.clone(),
                None => {
                    // The create call's answer was lost: repeating it with the
                    // same idempotency key returns the same intent.
                    let request = intent_request(&order, &payment)?;
                    match self.payments.create_intent(&request).await {
                        Ok(intent) => intent.intent_id,
                        Err(PaymentError::Unknown(m)) => return Err(AppError::Unavailable(m)),
                        Err(e) => {
                            let placed = self
                                .payment_error(order, expected, payment, e, &None)
                                .await?;
                            return Ok(placed.order().clone());
                        }
                    }
                }
            };
            let placed = match self.payments.status(&intent_id).await {
                Ok(intent) => {
                    if matches!(
                        intent.status,
                        PaymentStatus::RequiresAction
                            | PaymentStatus::Processing
                            | PaymentStatus::Pending
                            | PaymentStatus::Unknown
                    ) {
                        // Still settling: keep the stock held while we wait.
                        self.keep_reservation_alive(&mut order).await;
                    }
                    self.apply_intent(order, expected, payment, intent, &None)
                        .await?
                }
                Err(PaymentError::Unknown(m)) => return Err(AppError::Unavailable(m)),
                Err(e) => {
                    self.payment_error(order, expected, payment, e, &None)
                        .await?
                }
            };
            Ok(placed.order().clone())
        }
        .instrument(span)
        .await
    }

    async fn keep_reservation_alive(&self, order: &mut Order) {
        let now = self.now();
        let Some(r) = order.reservation().copied() else {
            return;
        };
        if r.status != ReservationStatus::Active {
            return;
        }
        let ttl = self.settings.reservation_ttl;
        if r.expires_at - now > ttl / 3 {
            return;
        }
        let new_expiry = now + ttl;
        match self.inventory.extend(r.id, new_expiry).await {
            Ok(()) => order.extend_reservation(new_expiry, now),
            Err(e) => warn!(order_id = %order.id(), error = %e, "extending the reservation failed"),
        }
    }

    /// Finds the order paying with `intent_id` and settles it (webhooks).
    pub async fn settle_payment_intent(&self, intent_id: &str) -> Result<Order, AppError> {
        let order = self.repo.find_by_payment_intent(intent_id).await?;
        self.settle_payment(order.id()).await
    }

    /// Runs `change` on a fresh copy of the order, saving over the version it
    /// read; on a concurrent update, reloads and tries again.
    async fn change_order<F>(
        &self,
        id: OrderId,
        mut change: F,
    ) -> Result<(Order, Vec<OrderChange>), AppError>
    where
        F: FnMut(&mut Order) -> Result<Vec<OrderChange>, AppError>,
    {
        let mut attempts = 0;
        loop {
            let mut order = self.repo.get(id).await?;
            let expected = order.version();
            let changes = change(&mut order)?;
            match self.save(&order, expected, &changes).await {
                Ok(()) => return Ok((order, changes)),
                Err(RepositoryError::Conflict(_)) if attempts < self.settings.conflict_retries => {
                    attempts += 1
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Cancels an order. Cancelling one in fulfilling refunds what was paid
    /// first; an active reservation is released.
    pub async fn cancel(
        &self,
        id: OrderId,
        reason: String,
        actor: Option<String>,
    ) -> Result<Order, AppError> {
        let span = info_span!("cancel_order", order_id = %id);
        async move {
            let current = self.repo.get(id).await?;
            if !current.state().can_transition_to(OrderState::Cancelled) {
                return Err(AppError::InvalidTransition {
                    from: current.state(),
                    to: OrderState::Cancelled,
                });
            }
            if current.state() == OrderState::Fulfilling && !current.refundable()?.is_zero() {
                self.refund(
                    id,
                    None,
                    Some(format!("Order cancelled: {reason}")),
                    actor.clone(),
                    true,
                )
                .await?;
            }
            let now = self.now();
            let mut released = None;
            let (order, _) = self
                .change_order(id, |order| {
                    released = order
                        .reservation()
                        .filter(|r| r.status == ReservationStatus::Active)
                        .map(|r| r.id);
                    if released.is_some() {
                        order.set_reservation_status(ReservationStatus::Released, now);
                    }
                    Ok(vec![order.transition(
                        OrderState::Cancelled,
                        ctx(reason.clone(), now, &actor),
                    )?])
                })
                .await?;
            if let Some(r) = released {
                self.release_quietly(r).await;
            }
            Ok(order)
        }
        .instrument(span)
        .await
    }

    /// paid → fulfilling.
    pub async fn fulfil(&self, id: OrderId, actor: Option<String>) -> Result<Order, AppError> {
        self.simple_transition(id, OrderState::Fulfilling, "Fulfilment started", actor)
            .await
    }

    /// fulfilling → completed (shipped).
    pub async fn complete(&self, id: OrderId, actor: Option<String>) -> Result<Order, AppError> {
        self.simple_transition(id, OrderState::Completed, "Order shipped", actor)
            .await
    }

    async fn simple_transition(
        &self,
        id: OrderId,
        to: OrderState,
        reason: &str,
        actor: Option<String>,
    ) -> Result<Order, AppError> {
        let span = info_span!("transition_order", order_id = %id, to = %to);
        async move {
            let now = self.now();
            let (order, _) = self
                .change_order(id, |order| {
                    Ok(vec![order.transition(to, ctx(reason, now, &actor))?])
                })
                .await?;
            Ok(order)
        }
        .instrument(span)
        .await
    }

    /// Refunds `amount` (default: all that is left) of a paid or completed
    /// order. The refund is recorded before the provider is called (so
    /// concurrent refunds can never exceed the captured amount) and completed
    /// after; the provider's idempotency key is derived from the refund id.
    pub async fn refund(
        &self,
        id: OrderId,
        amount: Option<Decimal>,
        reason: Option<String>,
        actor: Option<String>,
        for_cancellation: bool,
    ) -> Result<(Refund, Order), AppError> {
        let span = info_span!("refund_order", order_id = %id);
        async move {
            let order = self.repo.get(id).await?;
            let allowed = matches!(order.state(), OrderState::Paid | OrderState::Completed)
                || (for_cancellation && order.state() == OrderState::Fulfilling);
            if !allowed {
                return Err(AppError::InvalidTransition { from: order.state(), to: OrderState::Refunded });
            }
            let remaining = order.refundable()?;
            let amount = match amount {
                None => remaining,
                Some(a) => Money::new(a, order.currency()).map_err(|e| {
                    AppError::Validation(checkout_domain::ValidationErrors::single("amount", e.to_string()))
                })?,
            };
            if amount.is_zero() {
                return Err(AppError::Validation(checkout_domain::ValidationErrors::single("amount", "must be greater than 0")));
            }
            if amount > remaining {
                return Err(AppError::RefundExceedsPayment { remaining });
            }
            let intent_id = order
                .payment()
                .and_then(|p| p.intent_id.clone())
                .ok_or_else(|| AppError::Internal("paid order without a payment intent".into()))?;
            let captured = order.totals().map(|t| t.total_amount).ok_or(DomainError::NotPriced)?;
            let refund_id = self.ids.refund_id();
            let new_refund = NewRefund { id: refund_id, order_id: id, amount, reason: reason.clone(), created_at: self.now() };
            self.repo.begin_refund(&new_refund, captured).await?;
            let key = format!("checkout-refund-{refund_id}");
            let mut answer = self.payments.refund(&intent_id, amount, &key).await;
            if matches!(answer, Err(PaymentError::Unknown(_))) {
                // Same key: the provider refunds at most once.
                answer = self.payments.refund(&intent_id, amount, &key).await;
            }
            let provider_refund = match answer {
                Ok(r) => r,
                Err(PaymentError::Unknown(m)) => return Err(AppError::RefundOutcomeUnknown(m)),
                Err(e) => {
                    if let Err(fail) = self.repo.fail_refund(refund_id, &e.to_string()).await {
                        warn!(%refund_id, error = %fail, "recording the failed refund failed");
                    }
                    return Err(AppError::PaymentProvider(e));
                }
            };
            let now = self.now();
            let reason_text = reason.unwrap_or_else(|| "Refund".into());
            let mut attempts = 0;
            loop {
                let mut order = self.repo.get(id).await?;
                let expected = order.version();
                let change = order.record_refund(
                    refund_id,
                    amount,
                    ctx(reason_text.clone(), now, &actor)
                        .metadata(json!({ "refund_id": refund_id, "amount": amount.to_string(), "provider_refund_id": provider_refund.refund_id })),
                )?;
                match self.repo.complete_refund(refund_id, &provider_refund.refund_id, &order, expected, std::slice::from_ref(&change)).await {
                    Ok(refund) => {
                        m::changes_saved(std::slice::from_ref(&change));
                        return Ok((refund, order));
                    }
                    Err(RepositoryError::Conflict(_)) if attempts < self.settings.conflict_retries => attempts += 1,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        .instrument(span)
        .await
    }

    pub async fn get(&self, id: OrderId) -> Result<Order, AppError> {
        Ok(self.repo.get(id).await?)
    }

    pub async fn list(&self, query: &OrderQuery) -> Result<OrderPage, AppError> {
        Ok(self.repo.list(query).await?)
    }

    pub async fn audit_trail(&self, id: OrderId) -> Result<Vec<AuditEntry>, AppError> {
        Ok(self.repo.audit_trail(id).await?)
    }
}

/// What to ask the provider for: the order's total, under the attempt's
/// idempotency key (so asking again returns the same intent).
fn intent_request(order: &Order, payment: &Payment) -> Result<CreateIntent, AppError> {
    let total = order
        .totals()
        .map(|t| t.total_amount)
        .ok_or(DomainError::NotPriced)?;
    Ok(CreateIntent {
        order_id: order.id(),
        customer_id: order.customer_id().clone(),
        amount: total,
        idempotency_key: payment.idempotency_key.clone(),
        description: format!("BookVerse order {}", order.id()),
    })
}

/// Maps an order someone else may have moved to the matching outcome.
fn outcome_of(order: Order, expected: fn(Order) -> PlacedOrder) -> PlacedOrder {
    let failure = || {
        order
            .payment()
            .map(|p| {
                (
                    p.failure_code.clone().unwrap_or_default(),
                    p.failure_message.clone().unwrap_or_default(),
                )
            })
            .unwrap_or_default()
    };
    match order.state() {
        OrderState::Paid | OrderState::Fulfilling | OrderState::Completed => {
            PlacedOrder::Paid(order)
        }
        OrderState::PaymentFailed => {
            let (code, message) = failure();
            PlacedOrder::Declined {
                order,
                code,
                message,
            }
        }
        OrderState::Cancelled => {
            let (code, message) = failure();
            PlacedOrder::PaymentProviderError {
                order,
                code,
                message,
            }
        }
        _ => expected(order),
    }
}

impl OrderProcessor {
    /// Retries confirming the reservation of a paid order whose first
    /// confirmation failed (the confirm worker). Returns whether it is now
    /// confirmed.
    pub async fn retry_reservation_confirm(&self, id: OrderId) -> Result<bool, AppError> {
        let order = self.repo.get(id).await?;
        let Some(r) = order
            .reservation()
            .copied()
            .filter(|r| r.status == ReservationStatus::ConfirmPending)
        else {
            return Ok(true);
        };
        let status = match self.inventory.confirm(r.id).await {
            Ok(()) => ReservationStatus::Confirmed,
            Err(InventoryError::ReservationGone(_)) => {
                tracing::error!(order_id = %id, reservation_id = %r.id, "paid order's reservation was released before it could be confirmed; stock needs a manual check");
                m::reservation_confirm_failure("gone");
                ReservationStatus::Released
            }
            Err(e) => {
                warn!(order_id = %id, error = %e, "confirming the reservation failed again");
                return Ok(false);
            }
        };
        let now = self.now();
        self.change_order(id, |order| {
            order.set_reservation_status(status, now);
            Ok(vec![])
        })
        .await?;
        Ok(status == ReservationStatus::Confirmed)
    }
}

/// What a provider webhook delivery led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// First delivery of this event; the order (if any) was settled.
    Processed,
    /// A redelivery: recorded before, nothing changed twice.
    Duplicate,
    /// An event type the checkout does not act on (acknowledged).
    Ignored,
}

impl OrderProcessor {
    /// Acts on a verified provider event. The order is settled from the
    /// payment's current status at the provider — never from the event — so
    /// duplicates and out-of-order deliveries can't move an order backwards.
    /// The event is recorded in the inbox after it was acted on, so a
    /// delivery that failed half-way is processed again when the provider
    /// retries it.
    pub async fn handle_payment_event(
        &self,
        provider: &str,
        event: &checkout_ports::ProviderEvent,
    ) -> Result<WebhookOutcome, AppError> {
        let acts = matches!(
            event.event_type.as_str(),
            "payment_intent.succeeded"
                | "payment_intent.payment_failed"
                | "payment_intent.canceled"
                | "payment_intent.processing"
                | "payment_intent.requires_action"
                | "charge.refunded"
        );
        if acts {
            if let Some(intent_id) = &event.intent_id {
                match self.settle_payment_intent(intent_id).await {
                    Ok(order) => {
                        info!(order_id = %order.id(), event_type = %event.event_type, state = %order.state(), "webhook settled order")
                    }
                    Err(AppError::NotFound) => info!(
                        intent_id,
                        "webhook for a payment the checkout does not know"
                    ),
                    Err(e) => return Err(e),
                }
            }
        }
        let first = self
            .repo
            .record_webhook_event(provider, &event.event_id, &event.event_type, self.now())
            .await?;
        Ok(match (first, acts) {
            (false, _) => WebhookOutcome::Duplicate,
            (true, true) => WebhookOutcome::Processed,
            (true, false) => WebhookOutcome::Ignored,
        })
    }
}
