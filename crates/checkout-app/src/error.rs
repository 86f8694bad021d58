//! What a use case can fail with, for the HTTP edge to map once.

use checkout_domain::{DomainError, Money, OrderId, OrderState, ValidationErrors};
use checkout_ports::{InventoryError, PaymentError, RepositoryError};

/// Why a use case did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is invalid; nothing was changed.
    #[error(transparent)]
    Validation(#[from] ValidationErrors),
    /// No such order (or refund).
    #[error("order not found")]
    NotFound,
    /// The state machine forbids the change; nothing was changed.
    #[error("transition from {from} to {to} is not allowed")]
    InvalidTransition { from: OrderState, to: OrderState },
    /// A refund asks for more than is left; nothing was changed.
    #[error("refund exceeds what is left to refund ({remaining})")]
    RefundExceedsPayment { remaining: Money },
    /// The order kept changing under us; the caller may retry.
    #[error("order {0} is being changed concurrently")]
    Conflict(OrderId),
    /// The payment provider refused a refund.
    #[error("payment provider error: {0}")]
    PaymentProvider(PaymentError),
    /// The refund reached the provider but its outcome is unknown; it stays
    /// pending (holding its amount) and is safe to retry with the same key.
    #[error("refund outcome unknown: {0}")]
    RefundOutcomeUnknown(String),
    /// The database (or another dependency) is unavailable right now.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupt data; the message is for the log, not the client.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<RepositoryError> for AppError {
    fn from(e: RepositoryError) -> Self {
        match e {
            RepositoryError::NotFound => AppError::NotFound,
            RepositoryError::Conflict(id) => AppError::Conflict(id),
            RepositoryError::RefundExceedsPayment { remaining } => {
                AppError::RefundExceedsPayment { remaining }
            }
            RepositoryError::Unavailable(m) => AppError::Unavailable(m),
            RepositoryError::Duplicate(m) | RepositoryError::Unexpected(m) => AppError::Internal(m),
        }
    }
}

impl From<DomainError> for AppError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::InvalidTransition { from, to } => AppError::InvalidTransition { from, to },
            other => AppError::Internal(other.to_string()),
        }
    }
}

impl From<InventoryError> for AppError {
    fn from(e: InventoryError) -> Self {
        match e {
            InventoryError::NotFound => AppError::NotFound,
            InventoryError::ServiceUnavailable(m) => AppError::Unavailable(m),
            other => AppError::Internal(other.to_string()),
        }
    }
}
