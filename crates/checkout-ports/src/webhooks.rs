//! Provider webhooks: verifying a delivery and reading what it is about.
//!
//! The HTTP edge hands the raw body and signature header to a verifier; the
//! order is then settled from the payment's *current* status at the
//! provider, never from the event's content, so a late or out-of-order
//! delivery cannot move an order backwards.

use time::OffsetDateTime;

/// A verified provider event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    /// The provider's event id (unique per event, repeated on redelivery).
    pub event_id: String,
    /// `payment_intent.succeeded`, `charge.refunded`, …
    pub event_type: String,
    /// The payment intent the event concerns, when it concerns one.
    pub intent_id: Option<String>,
}

/// Why a delivery was refused; every variant means "400, nothing changes".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("missing signature header")]
    MissingSignature,
    #[error("signature does not match")]
    InvalidSignature,
    #[error("signature timestamp outside the tolerance")]
    StaleTimestamp,
    #[error("malformed event: {0}")]
    Malformed(String),
}

/// Checks a webhook delivery's signature and parses the event.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait WebhookVerifier: Send + Sync {
    /// The provider these webhooks come from (`stripe`).
    fn provider(&self) -> &str;

    /// `signature` is the signature header's value, empty when the header
    /// was missing.
    fn verify(
        &self,
        payload: &[u8],
        signature: &str,
        now: OffsetDateTime,
    ) -> Result<ProviderEvent, WebhookError>;
}
