//! Test support: a fresh, migrated database per test on each backend, and
//! builders for orders and stock.
//!
//! SQLite always runs (a new file in a temp directory per test);
//! PostgreSQL runs when `TEST_DATABASE_URL` names a server, with a database
//! of its own per test (`CREATE DATABASE t_<uuid>`, dropped afterwards), so
//! tests run in parallel on both.

#![allow(dead_code)]

use std::str::FromStr;
use std::sync::Once;

use checkout_domain::{
    Address, AddressDraft, BookId, Cart, CartDraft, CartItemDraft, Currency, CustomerId, Money,
    Order, OrderChange, OrderId, OrderLine, OrderSnapshot, OrderState, Payment, PaymentStatus,
    Quantity, ReservationId, ReservationRef, ReservationStatus, TaxRate, TransitionContext,
    ValidationErrors,
};
use checkout_store_seaorm::{Backend, SeaOrmStore, StoreOptions};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use time::OffsetDateTime;
use uuid::Uuid;

/// Runs a test body against SQLite and (when configured) PostgreSQL:
/// `both!(name, |db| { … })` makes `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both {
    ($name:ident, |$db:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let $db = support::TestDb::sqlite().await;
                $body
                $db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let Some($db) = support::TestDb::postgres().await else {
                    return;
                };
                $body
                $db.finish().await;
            }
        }
    };
}

/// A migrated database of its own, and the store over it.
pub struct TestDb {
    pub store: SeaOrmStore,
    pub url: String,
    /// A separate connection for assertions on the tables themselves.
    pub raw: DatabaseConnection,
    _dir: Option<tempfile::TempDir>,
    /// (server URL, database name) to drop at the end.
    pg: Option<(String, String)>,
}

/// The PostgreSQL server to test against; says once when there is none.
pub fn postgres_url() -> Option<String> {
    static ONCE: Once = Once::new();
    let url = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        ONCE.call_once(|| {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("skipping PostgreSQL tests: TEST_DATABASE_URL is not set");
            }
        });
    }
    url
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/checkout.db", dir.path().display());
        Self::open(url, Some(dir), None).await
    }

    pub async fn postgres() -> Option<TestDb> {
        let url = postgres_url()?;
        let server = url.rsplit_once('/').map(|(s, _)| s.to_owned()).unwrap();
        let name = format!("t_{}", Uuid::new_v4().simple());
        let admin = Database::connect(format!("{server}/postgres"))
            .await
            .unwrap();
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        admin.close().await.unwrap();
        Some(Self::open(format!("{server}/{name}"), None, Some((server, name))).await)
    }

    async fn open(
        url: String,
        dir: Option<tempfile::TempDir>,
        pg: Option<(String, String)>,
    ) -> TestDb {
        let store = SeaOrmStore::connect(&url, StoreOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let raw = Database::connect(url.as_str()).await.unwrap();
        TestDb {
            store,
            url,
            raw,
            _dir: dir,
            pg,
        }
    }

    pub fn backend(&self) -> Backend {
        self.store.backend()
    }

    fn db_backend(&self) -> DbBackend {
        match self.backend() {
            Backend::Sqlite => DbBackend::Sqlite,
            Backend::Postgres => DbBackend::Postgres,
        }
    }

    /// A single integer from `sql`.
    pub async fn scalar(&self, sql: &str) -> i64 {
        let row = self
            .raw
            .query_one_raw(Statement::from_string(self.db_backend(), sql.to_owned()))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.scalar(&format!("SELECT COUNT(*) FROM {table}")).await
    }

    /// Closes the connections and drops the PostgreSQL database.
    pub async fn finish(self) {
        let _ = self.raw.close().await;
        let _ = self.store.close().await;
        if let Some((server, name)) = self.pg {
            if let Ok(admin) = Database::connect(format!("{server}/postgres")).await {
                let _ = admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
                let _ = admin.close().await;
            }
        }
    }
}

pub fn usd(s: &str) -> Money {
    Money::new(Decimal::from_str(s).unwrap(), Currency::USD).unwrap()
}

pub fn book(s: &str) -> BookId {
    BookId::parse(s).unwrap()
}

/// A fixed instant (whole microseconds, as the store keeps them).
pub fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(1_764_000_000_123_456_000).unwrap()
}

pub fn secs(n: i64) -> time::Duration {
    time::Duration::seconds(n)
}

fn address(line1: &str) -> Address {
    let mut errors = ValidationErrors::default();
    Address::parse(
        AddressDraft {
            line1: Some(line1.into()),
            line2: Some("Flat 2".into()),
            city: Some("Springfield".into()),
            region: Some("IL".into()),
            postal_code: Some("12345".into()),
            country: Some("US".into()),
        },
        "shipping_address",
        &mut errors,
    )
    .unwrap()
}

/// Order ids that sort in creation order: `seq` 1, 2, 3 … are newer and newer.
pub fn order_id(seq: u64) -> OrderId {
    let base = Uuid::now_v7().as_u128() & !0xffff_ffff_u128;
    OrderId::from_uuid(Uuid::from_u128(base | u128::from(seq)))
}

/// A new order as the pipeline places it (`pending`, one audit entry, one
/// event), for `customer`, with the given books and quantities.
pub fn placed(id: OrderId, customer: &str, items: &[(&str, i64)]) -> (Order, OrderChange) {
    let cart = Cart::parse(CartDraft {
        customer_id: Some(customer.into()),
        currency: Some("USD".into()),
        items: items
            .iter()
            .map(|(b, q)| CartItemDraft {
                book_id: Some((*b).into()),
                quantity: Some(*q),
                unit_price: None,
            })
            .collect(),
        tax_rate: Some(Decimal::from_str("0.08").unwrap()),
        shipping_cost: Some(Decimal::from_str("4.99").unwrap()),
        shipping_address: None,
        billing_address: None,
        payment_method_type: Some("card".into()),
        payment_method_token: Some("pm_card_visa".into()),
        payment_method_missing: false,
    })
    .unwrap();
    Order::place(id, &cart, t0(), Some("tester".into()))
}

/// What the fast path's first commit writes (`create_with_reservation`):
/// an order placed, validated, priced from `prices`, holding a fresh active
/// reservation of its items, and `reserved` — with every change on the
/// way and the reservation request.
pub fn reserved_order(
    id: OrderId,
    customer: &str,
    items: &[(&str, i64)],
    prices: &[(BookId, Money)],
) -> (Order, Vec<OrderChange>, checkout_ports::ReservationRequest) {
    let (mut order, created) = placed(id, customer, items);
    let mut changes = vec![created];
    changes.push(
        order
            .transition(
                OrderState::Validating,
                ctx("Starting order validation", t0()),
            )
            .unwrap(),
    );
    order.apply_catalog_prices(prices).unwrap();
    let req = checkout_ports::ReservationRequest {
        reservation_id: ReservationId::from_uuid(Uuid::now_v7()),
        order_id: order.id(),
        currency: Currency::USD,
        lines: items
            .iter()
            .map(|(b, q)| checkout_ports::ReserveLine {
                book_id: book(b),
                quantity: Quantity::new(*q).unwrap(),
                expected_unit_price: None,
            })
            .collect(),
        expires_at: t0() + secs(900),
    };
    order.attach_reservation(
        ReservationRef {
            id: req.reservation_id,
            expires_at: req.expires_at,
            status: ReservationStatus::Active,
        },
        t0(),
    );
    changes.push(
        order
            .transition(OrderState::Reserved, ctx("Inventory reserved", t0()))
            .unwrap(),
    );
    (order, changes, req)
}

pub fn ctx(reason: &str, at: OffsetDateTime) -> TransitionContext {
    TransitionContext::new(reason, at)
}

/// An order with every field set: priced, reserved, paid by a payment that
/// needed a customer action, addresses, part refunded.
pub fn full_order(id: OrderId, state: OrderState) -> Order {
    Order::restore(OrderSnapshot {
        id,
        customer_id: CustomerId::parse("cust-full").unwrap(),
        state,
        currency: Currency::USD,
        lines: vec![
            OrderLine {
                book_id: book("bk-1"),
                quantity: Quantity::new(2).unwrap(),
                unit_price: Some(usd("12.50")),
                expected_unit_price: Some(usd("12.50")),
            },
            OrderLine {
                book_id: book("bk-2"),
                quantity: Quantity::new(1).unwrap(),
                unit_price: Some(usd("75.00")),
                expected_unit_price: None,
            },
        ],
        tax_rate: TaxRate::new(Decimal::from_str("0.08").unwrap()).unwrap(),
        shipping_cost: usd("4.99"),
        refunded_amount: usd("1.50"),
        reservation: Some(ReservationRef {
            id: ReservationId::from_uuid(Uuid::now_v7()),
            expires_at: t0() + secs(900),
            status: ReservationStatus::Confirmed,
        }),
        payment: Some(Payment {
            provider: "mock".into(),
            attempt: 2,
            idempotency_key: Payment::idempotency_key(id, 2),
            intent_id: Some(format!("pi_{}", id.as_uuid().simple())),
            transaction_id: Some("ch_1".into()),
            status: PaymentStatus::Succeeded,
            client_secret: Some("secret_1".into()),
            next_action: Some(
                serde_json::json!({"type": "redirect_to_url", "url": "https://bank.example/3ds"}),
            ),
            failure_code: Some("authentication_required".into()),
            failure_message: Some("first attempt needed 3-D Secure".into()),
        }),
        shipping_address: Some(address("1 Main St")),
        billing_address: Some(address("2 Side St")),
        version: 7,
        event_sequence: 3,
        created_at: t0(),
        updated_at: t0() + secs(5),
    })
}

/// Asserts two orders agree on every stored field.
pub fn assert_same_order(a: &Order, b: &Order) {
    let (x, y) = (a.snapshot(), b.snapshot());
    assert_eq!(x.id, y.id);
    assert_eq!(x.customer_id, y.customer_id);
    assert_eq!(x.state, y.state);
    assert_eq!(x.currency, y.currency);
    assert_eq!(x.lines, y.lines);
    assert_eq!(x.tax_rate, y.tax_rate);
    assert_eq!(x.shipping_cost, y.shipping_cost);
    assert_eq!(x.refunded_amount, y.refunded_amount);
    assert_eq!(x.reservation, y.reservation);
    assert_eq!(x.payment, y.payment);
    assert_eq!(x.shipping_address, y.shipping_address);
    assert_eq!(x.billing_address, y.billing_address);
    assert_eq!(x.version, y.version);
    assert_eq!(x.event_sequence, y.event_sequence);
    assert_eq!(x.created_at, y.created_at);
    assert_eq!(x.updated_at, y.updated_at);
    assert_eq!(a.totals(), b.totals());
}

/// Stocks `book` with `available` copies at `price` USD.
pub async fn stock(db: &TestDb, id: &str, price: &str, available: u32) {
    use checkout_ports::StockAdmin;
    db.store
        .upsert_stock(&book(id), &format!("Title of {id}"), usd(price), available)
        .await
        .unwrap();
}
