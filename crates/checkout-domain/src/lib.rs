//! The BookVerse checkout domain: pure types and rules, no I/O.
//!
//! - [`state`]: the order state machine (eleven states, the blueprint's table).
//! - [`order`]: the [`Order`] aggregate, whose state changes only through
//!   [`Order::transition`], returning the audit entry and domain events.
//! - [`currency`] and [`money`]: ISO 4217 currencies and amounts that are
//!   always whole minor units.
//! - [`pricing`]: line totals, tax (half-up), shipping and total.
//! - [`cart`]: the checked request, with field-path validation errors.
//! - [`events`]: the domain events and their envelope.
//! - [`values`]: validated ids and quantities.
//!
//! The crate depends on no async runtime, ORM or web framework; a test over
//! `cargo metadata` keeps it that way.

pub mod cart;
pub mod currency;
pub mod error;
pub mod events;
pub mod money;
pub mod order;
pub mod pricing;
pub mod state;
pub mod values;

pub use cart::{
    Address, AddressDraft, Cart, CartDraft, CartItem, CartItemDraft, FieldError, PaymentMethod,
    ValidationErrors,
};
pub use currency::Currency;
pub use error::DomainError;
pub use events::{DomainEvent, EventEnvelope, EventItem, UnavailableItem};
pub use money::Money;
pub use order::{
    AuditEntry, Order, OrderChange, OrderLine, OrderSnapshot, Payment, PaymentStatus,
    PriceMismatch, PricingProblem, ReservationRef, ReservationStatus, TransitionContext,
    TransitionDetail,
};
pub use pricing::Totals;
pub use state::OrderState;
pub use values::{
    BookId, CustomerId, EventId, IdempotencyKey, OrderId, Quantity, RefundId, ReservationId,
    TaxRate,
};
