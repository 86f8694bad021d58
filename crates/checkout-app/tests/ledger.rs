//! The pipeline's fast path (order store and stock in one database) over the
//! in-memory store: the same outcomes as the two-port path, with the stock
//! effects committed together with the order.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use checkout_app::{CheckoutSettings, OrderProcessor, PlacedOrder};
use checkout_domain::*;
use checkout_ports::*;
use checkout_store_memory::MemoryStore;
use rust_decimal::Decimal;

/// Pays everything except totals of 150.99, which it declines.
struct Provider;

#[async_trait]
impl PaymentProvider for Provider {
    fn name(&self) -> &str {
        "test"
    }
    async fn create_intent(&self, r: &CreateIntent) -> Result<PaymentIntent, PaymentError> {
        let decline = r.amount.to_string() == "150.99";
        Ok(intent(
            if decline { "pi_decline" } else { "pi_ok" },
            PaymentStatus::Pending,
        ))
    }
    async fn confirm(
        &self,
        id: &str,
        _: &PaymentMethod,
        _: &str,
    ) -> Result<PaymentIntent, PaymentError> {
        if id == "pi_decline" {
            return Err(PaymentError::Declined {
                code: "card_declined".into(),
                message: "declined".into(),
            });
        }
        Ok(intent(id, PaymentStatus::Succeeded))
    }
    async fn status(&self, id: &str) -> Result<PaymentIntent, PaymentError> {
        Ok(intent(id, PaymentStatus::Succeeded))
    }
    async fn refund(&self, _: &str, _: Money, _: &str) -> Result<ProviderRefund, PaymentError> {
        Err(PaymentError::NotFound)
    }
}

fn intent(id: &str, status: PaymentStatus) -> PaymentIntent {
    PaymentIntent {
        intent_id: id.into(),
        status,
        transaction_id: None,
        client_secret: None,
        next_action: None,
        failure_code: None,
        failure_message: None,
    }
}

async fn setup() -> (OrderProcessor, MemoryStore) {
    let store = MemoryStore::new();
    for (id, price, n) in [("bk-1", "12.50", 5), ("bk-2", "150.99", 5)] {
        store
            .upsert_stock(
                &BookId::parse(id).unwrap(),
                "t",
                Money::new(Decimal::from_str(price).unwrap(), Currency::USD).unwrap(),
                n,
            )
            .await
            .unwrap();
    }
    (processor(&store, Arc::new(store.clone())), store)
}

/// A processor on the fast path over `store`, with `inventory` as its
/// separate inventory port.
fn processor(store: &MemoryStore, inventory: Arc<dyn InventoryPort>) -> OrderProcessor {
    OrderProcessor::new(
        Arc::new(store.clone()),
        inventory,
        Arc::new(Provider),
        Arc::new(SystemClock),
        Arc::new(UuidGenerator),
        CheckoutSettings::default(),
    )
    .with_stock_ledger(Arc::new(store.clone()))
}

fn cart(book: &str, qty: i64, price: Option<&str>) -> CartDraft {
    CartDraft {
        customer_id: Some("cust-1".into()),
        items: vec![CartItemDraft {
            book_id: Some(book.into()),
            quantity: Some(qty),
            unit_price: price.map(|p| Decimal::from_str(p).unwrap()),
        }],
        payment_method_token: Some("pm".into()),
        ..Default::default()
    }
}

async fn stock(store: &MemoryStore, book: &str) -> (u32, u32) {
    let s = store
        .get_stock(&BookId::parse(book).unwrap())
        .await
        .unwrap();
    (s.available, s.reserved)
}

#[tokio::test]
async fn paid_with_the_stock_sold() {
    let (p, store) = setup().await;
    let placed = p
        .place_order_from_draft(cart("bk-1", 2, Some("12.50")), None)
        .await
        .unwrap();
    let PlacedOrder::Paid(order) = placed else {
        panic!("{placed:?}")
    };
    assert_eq!(
        order.reservation().unwrap().status,
        ReservationStatus::Confirmed
    );
    assert_eq!(stock(&store, "bk-1").await, (3, 0));
    let trail: Vec<_> = store
        .audit_trail(order.id())
        .await
        .unwrap()
        .iter()
        .map(|e| e.new_state)
        .collect();
    assert_eq!(
        trail,
        [
            OrderState::Pending,
            OrderState::Validating,
            OrderState::Reserved,
            OrderState::ProcessingPayment,
            OrderState::Paid
        ]
    );
    assert_eq!(
        store.get(order.id()).await.unwrap().version(),
        order.version()
    );
}

#[tokio::test]
async fn short_stock_reserves_nothing() {
    let (p, store) = setup().await;
    let placed = p
        .place_order_from_draft(cart("bk-1", 6, None), None)
        .await
        .unwrap();
    let PlacedOrder::InventoryUnavailable { order, items } = placed else {
        panic!("{placed:?}")
    };
    assert_eq!(items[0].available, 5);
    assert_eq!(
        store.get(order.id()).await.unwrap().state(),
        OrderState::InventoryFailed
    );
    assert_eq!(stock(&store, "bk-1").await, (5, 0));
}

#[tokio::test]
async fn unknown_books_and_wrong_prices_are_refused() {
    let (p, store) = setup().await;
    let placed = p
        .place_order_from_draft(cart("bk-9", 1, None), None)
        .await
        .unwrap();
    assert!(
        matches!(placed, PlacedOrder::InventoryRejected { ref problem, .. } if problem.code() == "unknown_book"),
        "{placed:?}"
    );
    let placed = p
        .place_order_from_draft(cart("bk-1", 1, Some("10.00")), None)
        .await
        .unwrap();
    assert!(
        matches!(placed, PlacedOrder::InventoryRejected { ref problem, .. } if problem.code() == "price_mismatch"),
        "{placed:?}"
    );
    assert_eq!(stock(&store, "bk-1").await, (5, 0));
}

/// With the ledger, neither a paid order nor a declined one goes through
/// the separate inventory port: reservation, confirmation and release all
/// commit with the order (a mock with no expectations fails on any call).
#[tokio::test]
async fn with_the_ledger_the_inventory_port_is_never_called() {
    let (_, store) = setup().await;
    let p = processor(&store, Arc::new(MockInventoryPort::new()));
    let paid = p
        .place_order_from_draft(cart("bk-1", 2, Some("12.50")), None)
        .await
        .unwrap();
    let PlacedOrder::Paid(order) = paid else {
        panic!("{paid:?}")
    };
    assert_eq!(
        store
            .get(order.id())
            .await
            .unwrap()
            .reservation()
            .unwrap()
            .status,
        ReservationStatus::Confirmed
    );
    assert_eq!(stock(&store, "bk-1").await, (3, 0));
    let declined = p
        .place_order_from_draft(cart("bk-2", 1, None), None)
        .await
        .unwrap();
    assert!(
        matches!(declined, PlacedOrder::Declined { .. }),
        "{declined:?}"
    );
    assert_eq!(stock(&store, "bk-2").await, (5, 0));
}

#[tokio::test]
async fn a_decline_releases_in_the_same_commit() {
    let (p, store) = setup().await;
    let placed = p
        .place_order_from_draft(cart("bk-2", 1, None), None)
        .await
        .unwrap();
    let PlacedOrder::Declined { order, .. } = placed else {
        panic!("{placed:?}")
    };
    assert_eq!(
        store.get(order.id()).await.unwrap().state(),
        OrderState::PaymentFailed
    );
    assert_eq!(stock(&store, "bk-2").await, (5, 0));
}

#[tokio::test]
async fn concurrent_orders_never_oversell() {
    let (p, store) = setup().await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move {
                p.place_order_from_draft(cart("bk-1", 1, None), None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut paid = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), PlacedOrder::Paid(_)) {
            paid += 1;
        }
    }
    assert_eq!(paid, 5);
    assert_eq!(stock(&store, "bk-1").await, (0, 0));
}

/// The store's ledger, with a memory of the catalog that remembers `stale`
/// whatever the catalog says now, and the reads the pipeline asked for.
struct StaleMemory {
    store: MemoryStore,
    stale: Vec<(BookId, Money)>,
    reads: std::sync::Mutex<Vec<CatalogRead>>,
}

#[async_trait]
impl OrderStockLedger for StaleMemory {
    async fn catalog_prices(
        &self,
        books: &[BookId],
        read: CatalogRead,
    ) -> Result<Vec<(BookId, Money)>, InventoryError> {
        self.reads.lock().unwrap().push(read);
        match read {
            CatalogRead::Cached => Ok(self.stale.clone()),
            CatalogRead::Fresh => self.store.catalog_prices(books, read).await,
        }
    }
    async fn create_with_reservation(
        &self,
        order: &Order,
        changes: &[OrderChange],
        reservation: &ReservationRequest,
        prices: &[(BookId, Money)],
    ) -> Result<(), LedgerError> {
        self.store
            .create_with_reservation(order, changes, reservation, prices)
            .await
    }
    async fn save_with_stock(
        &self,
        order: &Order,
        expected_version: u64,
        changes: &[OrderChange],
        effect: StockEffect,
    ) -> Result<(), LedgerError> {
        self.store
            .save_with_stock(order, expected_version, changes, effect)
            .await
    }
}

/// A processor whose first quotes say bk-1 costs 10.00 (the catalog: 12.50).
async fn with_stale_memory() -> (OrderProcessor, MemoryStore, Arc<StaleMemory>) {
    let (_, store) = setup().await;
    let ledger = Arc::new(StaleMemory {
        store: store.clone(),
        stale: vec![(
            BookId::parse("bk-1").unwrap(),
            Money::new(Decimal::from_str("10.00").unwrap(), Currency::USD).unwrap(),
        )],
        reads: Default::default(),
    });
    let p = processor(&store, Arc::new(store.clone())).with_stock_ledger(ledger.clone());
    (p, store, ledger)
}

#[tokio::test]
async fn a_stale_remembered_price_is_requoted_never_charged() {
    // Refused by the reservation (the client sent no price).
    let (p, store, ledger) = with_stale_memory().await;
    let placed = p
        .place_order_from_draft(cart("bk-1", 1, None), None)
        .await
        .unwrap();
    let PlacedOrder::Paid(order) = placed else {
        panic!("{placed:?}")
    };
    assert_eq!(order.totals().unwrap().subtotal.to_string(), "12.50");
    assert_eq!(
        *ledger.reads.lock().unwrap(),
        [CatalogRead::Cached, CatalogRead::Fresh]
    );
    assert_eq!(stock(&store, "bk-1").await, (4, 0));

    // Refused by the pricing (the client saw the catalog's price).
    let (p, _, ledger) = with_stale_memory().await;
    let placed = p
        .place_order_from_draft(cart("bk-1", 1, Some("12.50")), None)
        .await
        .unwrap();
    assert!(matches!(placed, PlacedOrder::Paid(_)), "{placed:?}");
    assert_eq!(
        *ledger.reads.lock().unwrap(),
        [CatalogRead::Cached, CatalogRead::Fresh]
    );
}

#[tokio::test]
async fn a_price_the_catalog_refuses_is_refused_after_one_fresh_quote() {
    let (p, store, ledger) = with_stale_memory().await;
    let placed = p
        .place_order_from_draft(cart("bk-1", 1, Some("10.00")), None)
        .await
        .unwrap();
    assert!(
        matches!(placed, PlacedOrder::InventoryRejected { ref problem, .. } if problem.code() == "price_mismatch"),
        "{placed:?}"
    );
    assert_eq!(
        *ledger.reads.lock().unwrap(),
        [CatalogRead::Cached, CatalogRead::Fresh]
    );
    assert_eq!(stock(&store, "bk-1").await, (5, 0));
}
