//! The embedded default's fast path: when the stock lives in the same
//! database as the orders, a stock effect (reserve, confirm, release) can
//! commit in the same transaction as the order change that goes with it.
//!
//! That halves the commits of a successful order (one for the order with its
//! reservation, one for payment with its confirmation) without weakening
//! anything: each transaction is still all-or-nothing, and the reservation
//! is still a conditional update that can never oversell.

use async_trait::async_trait;
use checkout_domain::{BookId, Money, Order, OrderChange, ReservationId};

use crate::inventory::{InventoryError, ReservationRequest};
use crate::repository::RepositoryError;

/// What a stock-and-order transaction may fail with.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The stock refused the reservation (short, unknown book, price or
    /// currency changed): nothing was written, the order included.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// The order write failed: nothing was written, the stock included.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// What to do to the stock in the same transaction as an order save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockEffect {
    /// Turn the reservation into a sale.
    Confirm(ReservationId),
    /// Give the reserved units back.
    Release(ReservationId),
}

/// Where a quote of catalog prices may come from.
///
/// A store may keep the prices it has read or written in memory, so that an
/// order's quote costs no round trip. That is safe for charging: the
/// reservation takes each book only at the quoted price, so a stale price is
/// refused, never charged. But a stale quote would then refuse an order the
/// catalog would take, so the pipeline quotes once more, `Fresh`, when a
/// quote it got `Cached` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogRead {
    /// From the store's memory where it has every book asked for.
    Cached,
    /// From the catalog itself; the store's memory takes what it read.
    Fresh,
}

/// An order store that also keeps the stock.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait OrderStockLedger: Send + Sync {
    /// The catalog's unit prices of `books` (unknown books are absent). A
    /// plain read, current or — with `CatalogRead::Cached` — as the store
    /// last saw it: the reservation re-checks each price.
    async fn catalog_prices(
        &self,
        books: &[BookId],
        read: CatalogRead,
    ) -> Result<Vec<(BookId, Money)>, InventoryError>;

    /// In one transaction: reserves `reservation` (all lines or none, each
    /// only at the price in `prices` — a price changed since is
    /// `Pricing(PriceMismatch)`), then creates `order` with `changes`.
    async fn create_with_reservation(
        &self,
        order: &Order,
        changes: &[OrderChange],
        reservation: &ReservationRequest,
        prices: &[(BookId, Money)],
    ) -> Result<(), LedgerError>;

    /// In one transaction: applies `effect` to the stock (idempotently, as
    /// `InventoryPort::confirm`/`release`), then saves `order` over
    /// `expected_version` with `changes`.
    async fn save_with_stock(
        &self,
        order: &Order,
        expected_version: u64,
        changes: &[OrderChange],
        effect: StockEffect,
    ) -> Result<(), LedgerError>;
}
