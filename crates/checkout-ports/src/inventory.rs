//! Stock: reserving the books of an order, confirming the sale, releasing.
//!
//! Every call is idempotent by reservation id (the checkout chooses the id),
//! so any call can be retried after a timeout without reserving twice.

use async_trait::async_trait;
use checkout_domain::{
    BookId, Currency, Money, OrderId, PricingProblem, Quantity, ReservationId, UnavailableItem,
};
use time::OffsetDateTime;

/// One book to reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveLine {
    pub book_id: BookId,
    pub quantity: Quantity,
    /// The price the client saw; an adapter that can check it before
    /// reserving refuses a mismatch with `Pricing(PriceMismatch)`.
    pub expected_unit_price: Option<Money>,
}

/// A request to hold stock for an order until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRequest {
    pub reservation_id: ReservationId,
    pub order_id: OrderId,
    /// The order's currency; catalog prices must be in it.
    pub currency: Currency,
    pub lines: Vec<ReserveLine>,
    pub expires_at: OffsetDateTime,
}

/// A reserved book with the catalog's unit price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationLine {
    pub book_id: BookId,
    pub quantity: Quantity,
    pub unit_price: Money,
}

/// Stock held for an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: ReservationId,
    pub expires_at: OffsetDateTime,
    pub lines: Vec<ReservationLine>,
}

/// What went wrong with a stock call.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// Some books lack stock: nothing was reserved. A business outcome
    /// (409 at the API), not a failure of the service.
    #[error("insufficient inventory")]
    Unavailable(Vec<UnavailableItem>),
    /// Unknown books, client prices that differ from the catalog, or a
    /// catalog currency other than the order's: nothing was reserved.
    #[error("{0}")]
    Pricing(PricingProblem),
    /// No reservation (or stock item) with that id.
    #[error("not found")]
    NotFound,
    /// The reservation can no longer be confirmed (it expired and was
    /// released).
    #[error("reservation {0} is no longer held")]
    ReservationGone(ReservationId),
    /// The inventory service (or stock database) cannot be reached or keeps
    /// failing: the outcome of a reserve is unknown, so the caller releases
    /// by id to be safe.
    #[error("inventory service unavailable: {0}")]
    ServiceUnavailable(String),
    /// Anything else.
    #[error("unexpected inventory error: {0}")]
    Unexpected(String),
}

/// The inventory the checkout reserves from.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait InventoryPort: Send + Sync {
    /// Reserves every line or none. Repeating a reserve with the same
    /// reservation id returns the existing reservation.
    async fn reserve(&self, request: &ReservationRequest) -> Result<Reservation, InventoryError>;

    /// Turns the reservation into a sale. Confirming a confirmed reservation
    /// is a no-op; a released one is `ReservationGone`.
    async fn confirm(&self, id: ReservationId) -> Result<(), InventoryError>;

    /// Gives the reserved units back. Releasing a released (or unknown)
    /// reservation is a no-op; a confirmed one is left confirmed.
    async fn release(&self, id: ReservationId) -> Result<(), InventoryError>;

    /// Moves the expiry of an active reservation (a payment still settling).
    async fn extend(
        &self,
        id: ReservationId,
        expires_at: OffsetDateTime,
    ) -> Result<(), InventoryError>;

    /// Releases active reservations that expired before `now` (at most
    /// `limit`), returning how many. Adapters whose inventory expires its own
    /// reservations return 0.
    async fn release_expired(&self, now: OffsetDateTime, limit: u32)
    -> Result<u64, InventoryError>;
}

/// A book in the local stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockItem {
    pub book_id: BookId,
    pub title: String,
    pub price: Money,
    pub available: u32,
    pub reserved: u32,
}

/// Managing the local stock (embedded mode's `/inventory` endpoints).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait StockAdmin: Send + Sync {
    /// Creates or replaces a book's title, price and available count (the
    /// reserved count is kept).
    async fn upsert_stock(
        &self,
        book_id: &BookId,
        title: &str,
        price: Money,
        available: u32,
    ) -> Result<StockItem, InventoryError>;
    /// `NotFound` for an unknown book.
    async fn get_stock(&self, book_id: &BookId) -> Result<StockItem, InventoryError>;
    async fn list_stock(&self) -> Result<Vec<StockItem>, InventoryError>;
}

impl From<UnavailableItem> for InventoryError {
    fn from(item: UnavailableItem) -> Self {
        InventoryError::Unavailable(vec![item])
    }
}
