//! Errors of the pure domain.

use crate::state::OrderState;

/// Why a domain value or operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The currency code is not an ISO 4217 code the checkout supports.
    #[error("unknown currency `{0}`")]
    UnknownCurrency(String),
    /// A money amount has more decimals than the currency's minor unit allows.
    #[error("{amount} is not a whole number of {currency} minor units ({exponent} decimals)")]
    SubMinorUnit {
        amount: String,
        currency: String,
        exponent: u8,
    },
    /// A money amount is below zero.
    #[error("amount must not be negative")]
    NegativeAmount,
    /// A money amount is beyond what the checkout handles.
    #[error("amount is too large")]
    AmountTooLarge,
    /// Two amounts in different currencies were combined.
    #[error("currency mismatch: {left} vs {right}")]
    CurrencyMismatch { left: String, right: String },
    /// A value failed its own rules (the message says which).
    #[error("{0}")]
    Invalid(String),
    /// The state machine forbids this transition.
    #[error("transition from {from} to {to} is not allowed")]
    InvalidTransition { from: OrderState, to: OrderState },
    /// An operation needs the order priced and it is not.
    #[error("order has not been priced")]
    NotPriced,
    /// A refund asks for more than is left of the captured amount.
    #[error("refund of {requested} exceeds the {remaining} left to refund")]
    RefundExceedsPayment {
        requested: String,
        remaining: String,
    },
}
