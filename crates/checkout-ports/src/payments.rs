//! Payment providers (mock, Stripe) behind one port: the seed's four
//! operations — create an intent, confirm it, refund, read its status.

use async_trait::async_trait;
use checkout_domain::{CustomerId, Money, OrderId, PaymentMethod, PaymentStatus};
use serde_json::Value;

/// What to charge.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateIntent {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    /// The order total; providers convert it to their minor units.
    pub amount: Money,
    /// Derived from the order and attempt; repeating a create with the same
    /// key returns the same intent and never charges twice.
    pub idempotency_key: String,
    pub description: String,
}

/// A payment intent as the provider sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentIntent {
    pub intent_id: String,
    pub status: PaymentStatus,
    /// The charge id once money moved.
    pub transaction_id: Option<String>,
    /// For the client to finish a customer action (3-D Secure).
    pub client_secret: Option<String>,
    /// What the customer must do (`redirect_to_url`, `use_stripe_sdk`, …).
    pub next_action: Option<Value>,
    /// The decline or failure, when `status` is `Failed`.
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
}

/// Where a refund stands at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundStatus {
    Succeeded,
    /// Accepted, money not yet back (some payment methods).
    Pending,
    Failed,
}

/// A refund as the provider recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderRefund {
    pub refund_id: String,
    pub status: RefundStatus,
}

/// Why a payment call failed — and what the caller may conclude.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PaymentError {
    /// The card was declined: definite, nothing charged. `code` is the
    /// provider's decline code (`card_declined`, `insufficient_funds`…).
    #[error("card declined ({code}): {message}")]
    Declined { code: String, message: String },
    /// The provider refused the request (invalid request, processing error,
    /// an amount it cannot take): definite, nothing charged.
    #[error("payment provider error ({code}): {message}")]
    Rejected { code: String, message: String },
    /// No answer in time, a transport error or a 5xx: the outcome is
    /// unknown and must be settled later by asking for the status — never
    /// guessed.
    #[error("payment outcome unknown: {0}")]
    Unknown(String),
    /// The provider does not know the intent (or refund).
    #[error("payment intent not found")]
    NotFound,
}

/// A payment provider.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// Short name recorded on the order (`mock`, `stripe`).
    fn name(&self) -> &str;

    /// Creates a payment intent for the amount (idempotent by key).
    async fn create_intent(&self, request: &CreateIntent) -> Result<PaymentIntent, PaymentError>;

    /// Confirms the intent with the customer's payment method. `Ok` carries
    /// `Succeeded`, `RequiresAction` or `Processing`; a decline is
    /// `Err(Declined)`. `idempotency_key` is the attempt's key.
    async fn confirm(
        &self,
        intent_id: &str,
        method: &PaymentMethod,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, PaymentError>;

    /// The intent's current status (the reconciler and webhooks rely on it).
    async fn status(&self, intent_id: &str) -> Result<PaymentIntent, PaymentError>;

    /// Refunds `amount` of the intent's captured money (idempotent by key).
    async fn refund(
        &self,
        intent_id: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<ProviderRefund, PaymentError>;
}
