//! The `Order` aggregate.
//!
//! An order's state changes only through [`Order::transition`], which checks
//! the state machine and returns what the change produced — the audit entry
//! and the domain events — so that the repository can write the order, its
//! audit trail and its outbox events in one transaction. Every change bumps
//! `version`; a repository saves an order only over the version it loaded.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::cart::{Address, Cart};
use crate::currency::Currency;
use crate::error::DomainError;
use crate::events::{DomainEvent, EventEnvelope, EventItem, UnavailableItem};
use crate::money::Money;
use crate::pricing::{self, Totals};
use crate::state::OrderState;
use crate::values::{BookId, CustomerId, OrderId, Quantity, RefundId, ReservationId, TaxRate};

/// One book of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub book_id: BookId,
    pub quantity: Quantity,
    /// The catalog's unit price, once the order has been priced.
    pub unit_price: Option<Money>,
    /// The unit price the client saw, if it sent one (checked, never charged).
    pub expected_unit_price: Option<Money>,
}

impl OrderLine {
    /// Unit price × quantity, once priced.
    pub fn line_total(&self) -> Option<Money> {
        self.unit_price
            .and_then(|p| p.times(self.quantity.get()).ok())
    }
}

/// Where a stock reservation stands, as far as the order knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Held for the order until `expires_at`.
    Active,
    /// Converted into a sale.
    Confirmed,
    /// The order is paid but confirming failed; a worker retries until it
    /// succeeds.
    ConfirmPending,
    /// Given back to stock.
    Released,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Active => "active",
            ReservationStatus::Confirmed => "confirmed",
            ReservationStatus::ConfirmPending => "confirm_pending",
            ReservationStatus::Released => "released",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        Ok(match s {
            "active" => Self::Active,
            "confirmed" => Self::Confirmed,
            "confirm_pending" => Self::ConfirmPending,
            "released" => Self::Released,
            other => {
                return Err(DomainError::Invalid(format!(
                    "unknown reservation status `{other}`"
                )));
            }
        })
    }
}

/// The stock reservation held for an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservationRef {
    pub id: ReservationId,
    pub expires_at: OffsetDateTime,
    pub status: ReservationStatus,
}

/// Where a payment stands at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Recorded, not yet sent to the provider (or its answer is not in).
    Pending,
    /// The customer must act (3-D Secure).
    RequiresAction,
    /// The provider is still working on it.
    Processing,
    Succeeded,
    Failed,
    Canceled,
    /// The provider did not answer in time or answered 5xx: the outcome is
    /// unknown until the reconciler asks.
    Unknown,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::RequiresAction => "requires_action",
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Result<Self, DomainError> {
        Ok(match s {
            "pending" => Self::Pending,
            "requires_action" => Self::RequiresAction,
            "processing" => Self::Processing,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "canceled" => Self::Canceled,
            "unknown" => Self::Unknown,
            other => {
                return Err(DomainError::Invalid(format!(
                    "unknown payment status `{other}`"
                )));
            }
        })
    }
}

/// The order's payment at its provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    /// Provider name (`mock`, `stripe`).
    pub provider: String,
    /// 1 for the first attempt; a new attempt gets a new idempotency key.
    pub attempt: u32,
    /// Derived from the order and attempt (see [`Payment::idempotency_key`]).
    pub idempotency_key: String,
    pub intent_id: Option<String>,
    pub transaction_id: Option<String>,
    pub status: PaymentStatus,
    /// Handed to the client when the customer must act (3-D Secure).
    pub client_secret: Option<String>,
    pub next_action: Option<Value>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
}

impl Payment {
    /// The provider idempotency key of an order's payment attempt: derived
    /// from the order and the attempt, never from the clock, so a retry of
    /// the same attempt can never charge twice.
    pub fn idempotency_key(order_id: OrderId, attempt: u32) -> String {
        format!("checkout-{order_id}-payment-{attempt}")
    }

    /// A fresh attempt, recorded before the provider is called.
    pub fn begin(provider: impl Into<String>, order_id: OrderId, attempt: u32) -> Self {
        Self {
            provider: provider.into(),
            attempt,
            idempotency_key: Self::idempotency_key(order_id, attempt),
            intent_id: None,
            transaction_id: None,
            status: PaymentStatus::Pending,
            client_secret: None,
            next_action: None,
            failure_code: None,
            failure_message: None,
        }
    }
}

/// Extra facts a transition's events carry.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum TransitionDetail {
    #[default]
    None,
    /// Why a payment failed (→ `order.payment_failed`).
    PaymentFailure { code: String, message: String },
    /// Why inventory failed (→ `order.inventory_unavailable`).
    InventoryFailure {
        code: String,
        message: String,
        unavailable_items: Vec<UnavailableItem>,
    },
    /// The refund that completed the refunding (→ `order.refunded`).
    Refund { refund_id: RefundId, amount: Money },
}

/// Who, when and why, for one state change.
#[derive(Debug, Clone)]
pub struct TransitionContext {
    pub reason: String,
    pub actor: Option<String>,
    pub at: OffsetDateTime,
    pub metadata: Value,
    pub detail: TransitionDetail,
}

impl TransitionContext {
    pub fn new(reason: impl Into<String>, at: OffsetDateTime) -> Self {
        Self {
            reason: reason.into(),
            actor: None,
            at,
            metadata: Value::Object(Default::default()),
            detail: TransitionDetail::None,
        }
    }

    pub fn actor(mut self, actor: Option<String>) -> Self {
        self.actor = actor;
        self
    }

    pub fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }

    pub fn detail(mut self, detail: TransitionDetail) -> Self {
        self.detail = detail;
        self
    }
}

/// One line of an order's audit trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub order_id: OrderId,
    /// `None` for the entry that records the creation.
    pub previous_state: Option<OrderState>,
    pub new_state: OrderState,
    pub reason: String,
    pub metadata: Value,
    pub actor: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// What one change of an order produced: written atomically with the order.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderChange {
    pub audit: AuditEntry,
    pub events: Vec<EventEnvelope>,
}

/// Everything stored about an order, for adapters that rebuild one from
/// storage. The domain trusts a snapshot: only persist snapshots of orders
/// the domain built.
#[derive(Debug, Clone)]
pub struct OrderSnapshot {
    pub id: OrderId,
    pub customer_id: CustomerId,
    pub state: OrderState,
    pub currency: Currency,
    pub lines: Vec<OrderLine>,
    pub tax_rate: TaxRate,
    pub shipping_cost: Money,
    pub refunded_amount: Money,
    pub reservation: Option<ReservationRef>,
    pub payment: Option<Payment>,
    pub shipping_address: Option<Address>,
    pub billing_address: Option<Address>,
    pub version: u64,
    pub event_sequence: u32,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// An order: a cart turned into something the checkout is responsible for.
#[derive(Debug, Clone)]
pub struct Order {
    s: OrderSnapshot,
    totals: Option<Totals>,
}

impl Order {
    /// Creates an order from a checked cart, in `pending`, with the creation
    /// on its audit trail.
    pub fn place(
        id: OrderId,
        cart: &Cart,
        at: OffsetDateTime,
        actor: Option<String>,
    ) -> (Order, OrderChange) {
        let lines = cart
            .items()
            .iter()
            .map(|i| OrderLine {
                book_id: i.book_id().clone(),
                quantity: i.quantity(),
                unit_price: None,
                expected_unit_price: i.expected_unit_price(),
            })
            .collect();
        let mut order = Order {
            s: OrderSnapshot {
                id,
                customer_id: cart.customer_id().clone(),
                state: OrderState::Pending,
                currency: cart.currency(),
                lines,
                tax_rate: cart.tax_rate(),
                shipping_cost: cart.shipping_cost(),
                refunded_amount: Money::zero(cart.currency()),
                reservation: None,
                payment: None,
                shipping_address: cart.shipping_address().cloned(),
                billing_address: cart.billing_address().cloned(),
                version: 1,
                event_sequence: 0,
                created_at: at,
                updated_at: at,
            },
            totals: None,
        };
        let ctx = TransitionContext::new("Order created", at).actor(actor);
        let event = DomainEvent::OrderStateChanged {
            from: None,
            to: OrderState::Pending,
            reason: ctx.reason.clone(),
        };
        let events = vec![order.raise(at, event)];
        let audit = order.audit(None, &ctx);
        (order, OrderChange { audit, events })
    }

    /// Rebuilds an order from storage.
    pub fn restore(snapshot: OrderSnapshot) -> Order {
        let mut order = Order {
            s: snapshot,
            totals: None,
        };
        order.totals = order.compute_totals();
        order
    }

    /// The one way an order changes state: checks the transition table and
    /// returns the audit entry and events the change produced.
    pub fn transition(
        &mut self,
        to: OrderState,
        ctx: TransitionContext,
    ) -> Result<OrderChange, DomainError> {
        let from = self.s.state;
        if !from.can_transition_to(to) {
            return Err(DomainError::InvalidTransition { from, to });
        }
        if to == OrderState::Paid && self.totals.is_none() {
            return Err(DomainError::NotPriced);
        }
        self.s.state = to;
        self.touch(ctx.at);
        let mut events = vec![self.raise(
            ctx.at,
            DomainEvent::OrderStateChanged {
                from: Some(from),
                to,
                reason: ctx.reason.clone(),
            },
        )];
        if let Some(specific) = self.specific_event(from, to, &ctx) {
            events.push(self.raise(ctx.at, specific));
        }
        Ok(OrderChange {
            audit: self.audit(Some(from), &ctx),
            events,
        })
    }

    fn specific_event(
        &self,
        from: OrderState,
        to: OrderState,
        ctx: &TransitionContext,
    ) -> Option<DomainEvent> {
        Some(match to {
            OrderState::Paid => DomainEvent::OrderCompleted {
                customer_id: self.s.customer_id.clone(),
                currency: self.s.currency,
                total_amount: self.totals?.total_amount,
                items: self
                    .s
                    .lines
                    .iter()
                    .filter_map(|l| {
                        Some(EventItem {
                            book_id: l.book_id.clone(),
                            quantity: l.quantity.get(),
                            unit_price: l.unit_price?,
                        })
                    })
                    .collect(),
            },
            OrderState::PaymentFailed => {
                let (code, message) = match &ctx.detail {
                    TransitionDetail::PaymentFailure { code, message } => {
                        (code.clone(), message.clone())
                    }
                    _ => ("payment_failed".to_owned(), ctx.reason.clone()),
                };
                DomainEvent::PaymentFailed { code, message }
            }
            OrderState::InventoryFailed => match &ctx.detail {
                TransitionDetail::InventoryFailure {
                    code,
                    message,
                    unavailable_items,
                } => DomainEvent::InventoryUnavailable {
                    code: code.clone(),
                    message: message.clone(),
                    unavailable_items: unavailable_items.clone(),
                },
                _ => DomainEvent::InventoryUnavailable {
                    code: "inventory_unavailable".into(),
                    message: ctx.reason.clone(),
                    unavailable_items: vec![],
                },
            },
            OrderState::Cancelled => DomainEvent::OrderCancelled {
                previous_state: from,
                reason: ctx.reason.clone(),
            },
            OrderState::Refunded => match &ctx.detail {
                TransitionDetail::Refund { refund_id, amount } => DomainEvent::OrderRefunded {
                    refund_id: *refund_id,
                    amount: *amount,
                    refunded_total: self.s.refunded_amount,
                    fully_refunded: true,
                },
                _ => return None,
            },
            _ => return None,
        })
    }

    /// Sets the catalog's unit prices (from the inventory's reservation) and
    /// prices the order. Refuses a price in another currency or one that
    /// differs from what the client said it saw.
    pub fn apply_catalog_prices(
        &mut self,
        prices: &[(BookId, Money)],
    ) -> Result<(), PricingProblem> {
        let mut mismatches = Vec::new();
        let mut priced = Vec::with_capacity(self.s.lines.len());
        for line in &self.s.lines {
            let Some((_, price)) = prices.iter().find(|(b, _)| *b == line.book_id) else {
                return Err(PricingProblem::UnknownBooks(vec![line.book_id.clone()]));
            };
            if price.currency() != self.s.currency {
                return Err(PricingProblem::CurrencyMismatch {
                    catalog: price.currency(),
                    order: self.s.currency,
                });
            }
            if let Some(expected) = line.expected_unit_price {
                if expected != *price {
                    mismatches.push(PriceMismatch {
                        book_id: line.book_id.clone(),
                        expected,
                        catalog: *price,
                    });
                }
            }
            priced.push(*price);
        }
        if !mismatches.is_empty() {
            return Err(PricingProblem::PriceMismatch(mismatches));
        }
        for (line, price) in self.s.lines.iter_mut().zip(priced) {
            line.unit_price = Some(price);
        }
        self.totals = self.compute_totals();
        if self.totals.is_none() {
            return Err(PricingProblem::Overflow);
        }
        self.s.version += 1;
        Ok(())
    }

    /// Records the reservation held for this order.
    pub fn attach_reservation(&mut self, reservation: ReservationRef, at: OffsetDateTime) {
        self.s.reservation = Some(reservation);
        self.touch(at);
    }

    /// Records a change of the reservation's status.
    pub fn set_reservation_status(&mut self, status: ReservationStatus, at: OffsetDateTime) {
        if let Some(r) = &mut self.s.reservation {
            r.status = status;
            self.touch(at);
        }
    }

    /// Moves the reservation's expiry (kept alive while a payment settles).
    pub fn extend_reservation(&mut self, expires_at: OffsetDateTime, at: OffsetDateTime) {
        if let Some(r) = &mut self.s.reservation {
            r.expires_at = expires_at;
            self.touch(at);
        }
    }

    /// Records what the provider said about the payment.
    pub fn set_payment(&mut self, payment: Payment, at: OffsetDateTime) {
        self.s.payment = Some(payment);
        self.touch(at);
    }

    /// What is left to refund: the total less what was already refunded.
    pub fn refundable(&self) -> Result<Money, DomainError> {
        let total = self.totals.ok_or(DomainError::NotPriced)?.total_amount;
        total.checked_sub(&self.s.refunded_amount)
    }

    /// Records a completed refund. A refund of everything that is left moves
    /// the order to `refunded`; a partial one only raises `refunded_amount`
    /// (still on the audit trail, with the order's state unchanged).
    pub fn record_refund(
        &mut self,
        refund_id: RefundId,
        amount: Money,
        ctx: TransitionContext,
    ) -> Result<OrderChange, DomainError> {
        if !matches!(
            self.s.state,
            OrderState::Paid | OrderState::Completed | OrderState::Fulfilling
        ) {
            return Err(DomainError::InvalidTransition {
                from: self.s.state,
                to: OrderState::Refunded,
            });
        }
        let left = self.refundable()?;
        if amount > left || amount.currency() != left.currency() {
            return Err(DomainError::RefundExceedsPayment {
                requested: amount.to_string(),
                remaining: left.to_string(),
            });
        }
        self.s.refunded_amount = self.s.refunded_amount.checked_add(&amount)?;
        let fully = self.refundable()?.is_zero();
        if fully && self.s.state != OrderState::Fulfilling {
            return self.transition(
                OrderState::Refunded,
                ctx.detail(TransitionDetail::Refund { refund_id, amount }),
            );
        }
        self.touch(ctx.at);
        let event = DomainEvent::OrderRefunded {
            refund_id,
            amount,
            refunded_total: self.s.refunded_amount,
            fully_refunded: fully,
        };
        let events = vec![self.raise(ctx.at, event)];
        let audit = AuditEntry {
            order_id: self.s.id,
            previous_state: Some(self.s.state),
            new_state: self.s.state,
            reason: ctx.reason,
            metadata: ctx.metadata,
            actor: ctx.actor,
            at: ctx.at,
        };
        Ok(OrderChange { audit, events })
    }

    fn compute_totals(&self) -> Option<Totals> {
        let prices: Option<Vec<(Money, Quantity)>> = self
            .s
            .lines
            .iter()
            .map(|l| l.unit_price.map(|p| (p, l.quantity)))
            .collect();
        let prices = prices?;
        pricing::price(
            prices.iter().map(|(m, q)| (m, *q)),
            self.s.tax_rate,
            self.s.shipping_cost,
        )
        .ok()
    }

    fn touch(&mut self, at: OffsetDateTime) {
        self.s.version += 1;
        self.s.updated_at = at;
    }

    fn raise(&mut self, at: OffsetDateTime, event: DomainEvent) -> EventEnvelope {
        self.s.event_sequence += 1;
        EventEnvelope::new(self.s.id, self.s.event_sequence, at, event)
    }

    fn audit(&self, previous_state: Option<OrderState>, ctx: &TransitionContext) -> AuditEntry {
        AuditEntry {
            order_id: self.s.id,
            previous_state,
            new_state: self.s.state,
            reason: ctx.reason.clone(),
            metadata: ctx.metadata.clone(),
            actor: ctx.actor.clone(),
            at: ctx.at,
        }
    }

    pub fn id(&self) -> OrderId {
        self.s.id
    }
    pub fn customer_id(&self) -> &CustomerId {
        &self.s.customer_id
    }
    pub fn state(&self) -> OrderState {
        self.s.state
    }
    pub fn currency(&self) -> Currency {
        self.s.currency
    }
    pub fn lines(&self) -> &[OrderLine] {
        &self.s.lines
    }
    pub fn tax_rate(&self) -> TaxRate {
        self.s.tax_rate
    }
    pub fn shipping_cost(&self) -> Money {
        self.s.shipping_cost
    }
    /// The order's money, once priced from the catalog.
    pub fn totals(&self) -> Option<&Totals> {
        self.totals.as_ref()
    }
    pub fn refunded_amount(&self) -> Money {
        self.s.refunded_amount
    }
    pub fn reservation(&self) -> Option<&ReservationRef> {
        self.s.reservation.as_ref()
    }
    pub fn payment(&self) -> Option<&Payment> {
        self.s.payment.as_ref()
    }
    pub fn shipping_address(&self) -> Option<&Address> {
        self.s.shipping_address.as_ref()
    }
    pub fn billing_address(&self) -> Option<&Address> {
        self.s.billing_address.as_ref()
    }
    /// Bumped by every change; the repository saves only over the version it
    /// loaded.
    pub fn version(&self) -> u64 {
        self.s.version
    }
    /// Sequence number of the last event raised.
    pub fn event_sequence(&self) -> u32 {
        self.s.event_sequence
    }
    pub fn created_at(&self) -> OffsetDateTime {
        self.s.created_at
    }
    pub fn updated_at(&self) -> OffsetDateTime {
        self.s.updated_at
    }
    /// Everything stored about the order.
    pub fn snapshot(&self) -> &OrderSnapshot {
        &self.s
    }
}

/// A client price that differs from the catalog's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceMismatch {
    pub book_id: BookId,
    pub expected: Money,
    pub catalog: Money,
}

/// Why an order could not be priced from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingProblem {
    #[error("unknown book(s): {}", .0.iter().map(|b| b.as_str()).collect::<Vec<_>>().join(", "))]
    UnknownBooks(Vec<BookId>),
    #[error("price differs from the catalog for {}", .0.iter().map(|m| format!("{} (sent {}, catalog {})", m.book_id, m.expected, m.catalog)).collect::<Vec<_>>().join(", "))]
    PriceMismatch(Vec<PriceMismatch>),
    #[error("catalog currency {catalog} differs from order currency {order}")]
    CurrencyMismatch { catalog: Currency, order: Currency },
    #[error("order total is too large")]
    Overflow,
}

impl PricingProblem {
    /// Machine-readable code, as the API reports it.
    pub fn code(&self) -> &'static str {
        match self {
            PricingProblem::UnknownBooks(_) => "unknown_book",
            PricingProblem::PriceMismatch(_) => "price_mismatch",
            PricingProblem::CurrencyMismatch { .. } => "currency_mismatch",
            PricingProblem::Overflow => "amount_too_large",
        }
    }
}
