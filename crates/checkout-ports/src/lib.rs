//! The ports of the checkout: the traits its use cases are written against.
//!
//! Adapters (SeaORM store, payment providers, inventory clients, event sinks)
//! implement them; `checkout-app` uses nothing else. Every port is
//! `Send + Sync`, every operation returns an error enum whose variants say
//! what the caller may conclude, plus one `Unexpected` for everything else.
//! With the `mocks` feature each trait has a `mockall` mock (`MockX`).

pub mod clock;
pub mod events;
pub mod idempotency;
pub mod inventory;
pub mod ledger;
pub mod payments;
pub mod repository;
pub mod webhooks;

pub use clock::{Clock, IdGenerator, SystemClock, UuidGenerator};
pub use events::{EventSink, OutboxKey, OutboxRecord, OutboxStats, OutboxStore, SinkError};
pub use idempotency::{IdempotencyBegin, IdempotencyError, IdempotencyStore, StoredResponse};
pub use inventory::{
    InventoryError, InventoryPort, Reservation, ReservationLine, ReservationRequest, ReserveLine,
    StockAdmin, StockItem,
};
pub use ledger::{CatalogRead, LedgerError, OrderStockLedger, StockEffect};
pub use payments::{
    CreateIntent, PaymentError, PaymentIntent, PaymentProvider, ProviderRefund, RefundStatus,
};
pub use repository::{
    NewRefund, OrderPage, OrderQuery, OrderRepository, Refund, RefundRecordStatus, RepositoryError,
};
pub use webhooks::{ProviderEvent, WebhookError, WebhookVerifier};

#[cfg(feature = "mocks")]
pub use clock::{MockClock, MockIdGenerator};
#[cfg(feature = "mocks")]
pub use events::{MockEventSink, MockOutboxStore};
#[cfg(feature = "mocks")]
pub use idempotency::MockIdempotencyStore;
#[cfg(feature = "mocks")]
pub use inventory::{MockInventoryPort, MockStockAdmin};
#[cfg(feature = "mocks")]
pub use ledger::MockOrderStockLedger;
#[cfg(feature = "mocks")]
pub use payments::MockPaymentProvider;
#[cfg(feature = "mocks")]
pub use repository::MockOrderRepository;
#[cfg(feature = "mocks")]
pub use webhooks::MockWebhookVerifier;
