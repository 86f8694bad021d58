//! Where orders, their audit trails, their outbox events and their refunds
//! are kept.

use async_trait::async_trait;
use checkout_domain::{
    AuditEntry, CustomerId, Money, Order, OrderChange, OrderId, OrderState, RefundId,
};
use time::OffsetDateTime;

/// What went wrong talking to the order store.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// No order (or refund) with that id.
    #[error("not found")]
    NotFound,
    /// The order changed since it was loaded (its version is no longer the
    /// expected one): nothing was written. Reload and decide again.
    #[error("order {0} was changed concurrently")]
    Conflict(OrderId),
    /// A row with the same unique key already exists (an order id, an
    /// outbox sequence): nothing was written.
    #[error("duplicate: {0}")]
    Duplicate(String),
    /// A refund would take the refunded total above the captured amount;
    /// nothing was written. `remaining` is what is left to refund.
    #[error("refund exceeds what is left to refund ({remaining})")]
    RefundExceedsPayment { remaining: Money },
    /// The database is unreachable, busy past its timeout or the pool is
    /// exhausted: the operation may succeed if retried later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Anything else (a bug, corrupt data, a driver error we don't classify).
    #[error("unexpected store error: {0}")]
    Unexpected(String),
}

/// A filter for listing orders.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderQuery {
    pub customer_id: Option<CustomerId>,
    pub state: Option<OrderState>,
    /// At most this many (1..=200).
    pub limit: u32,
    /// Only orders older than this one (the cursor of the previous page).
    pub before: Option<OrderId>,
}

/// One page of a listing, newest first.
#[derive(Debug, Clone)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    /// The last order's id when there may be more.
    pub next: Option<OrderId>,
}

/// A refund about to be sent to the provider.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRefund {
    pub id: RefundId,
    pub order_id: OrderId,
    pub amount: Money,
    pub reason: Option<String>,
    pub created_at: OffsetDateTime,
}

/// Where a refund stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundRecordStatus {
    /// Recorded, provider call not (yet) answered.
    Pending,
    Succeeded,
    Failed,
}

impl RefundRecordStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// A stored refund.
#[derive(Debug, Clone, PartialEq)]
pub struct Refund {
    pub id: RefundId,
    pub order_id: OrderId,
    pub amount: Money,
    pub status: RefundRecordStatus,
    pub provider_refund_id: Option<String>,
    pub reason: Option<String>,
    pub created_at: OffsetDateTime,
}

/// The order store.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait OrderRepository: Send + Sync {
    /// Inserts a new order with the changes that brought it where it is
    /// (its creation first), in one transaction. `Duplicate` if the id
    /// exists.
    async fn create(&self, order: &Order, changes: &[OrderChange]) -> Result<(), RepositoryError>;

    /// Saves an order over `expected_version` together with `changes` (audit
    /// entries, outbox events), in one transaction. `Conflict` — and nothing
    /// written — when the stored version is not `expected_version`, or the
    /// stored order belongs to another customer (an order never changes
    /// customer).
    async fn save(
        &self,
        order: &Order,
        expected_version: u64,
        changes: &[OrderChange],
    ) -> Result<(), RepositoryError>;

    /// The order, or `NotFound`.
    async fn get(&self, id: OrderId) -> Result<Order, RepositoryError>;

    /// Orders matching `query`, newest first.
    async fn list(&self, query: &OrderQuery) -> Result<OrderPage, RepositoryError>;

    /// The audit trail, oldest first (`NotFound` for an unknown order).
    async fn audit_trail(&self, id: OrderId) -> Result<Vec<AuditEntry>, RepositoryError>;

    /// Orders in `state` last changed before `updated_before`, oldest first.
    /// Used by the payment reconciler and the confirm retrier.
    async fn find_stale(
        &self,
        state: OrderState,
        updated_before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Order>, RepositoryError>;

    /// Orders whose reservation expired before `now` and is still active, in
    /// any of `states`.
    async fn find_expired_reservations(
        &self,
        states: &[OrderState],
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Order>, RepositoryError>;

    /// Paid-or-later orders whose reservation still needs confirming.
    async fn find_unconfirmed_reservations(
        &self,
        limit: u32,
    ) -> Result<Vec<Order>, RepositoryError>;

    /// Records a refund as pending, in one transaction with the order row
    /// locked, only if pending and succeeded refunds plus this one stay within
    /// `captured`. `RefundExceedsPayment` (nothing written) otherwise.
    async fn begin_refund(
        &self,
        refund: &NewRefund,
        captured: Money,
    ) -> Result<(), RepositoryError>;

    /// Marks a refund succeeded and saves the order's change (see `save`), in
    /// one transaction.
    async fn complete_refund(
        &self,
        refund_id: RefundId,
        provider_refund_id: &str,
        order: &Order,
        expected_version: u64,
        changes: &[OrderChange],
    ) -> Result<Refund, RepositoryError>;

    /// Marks a pending refund failed, so its amount counts no more.
    async fn fail_refund(&self, refund_id: RefundId, reason: &str) -> Result<(), RepositoryError>;

    /// A refund by id.
    async fn get_refund(&self, refund_id: RefundId) -> Result<Refund, RepositoryError>;

    /// The order whose current payment has this provider intent id.
    async fn find_by_payment_intent(&self, intent_id: &str) -> Result<Order, RepositoryError>;

    /// Records a provider webhook event in the inbox. `true` the first time
    /// an event id is seen, `false` for a duplicate delivery (nothing
    /// written), so a delivery is acted on once.
    async fn record_webhook_event(
        &self,
        provider: &str,
        event_id: &str,
        event_type: &str,
        received_at: OffsetDateTime,
    ) -> Result<bool, RepositoryError>;
}
