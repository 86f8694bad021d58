//! The store against real databases: SQLite always; PostgreSQL too when
//! `TEST_DATABASE_URL` is set, each test in its own fresh database.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // test code

use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use checkout_domain::*;
use checkout_ports::*;
use checkout_store_sql::{SqlStore, StoreOptions};
use rust_decimal::Decimal;
use time::OffsetDateTime;
use uuid::Uuid;

/// A fresh, migrated store; drops its PostgreSQL database when dropped.
struct Db {
    store: SqlStore,
    _dir: tempfile::TempDir,
    pg: Option<(String, String)>,
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some((server, name)) = self.pg.take() {
            let _ = std::process::Command::new("psql")
                .arg(format!("{server}/postgres"))
                .arg("-qc")
                .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .status();
        }
    }
}

fn pg_url() -> Option<String> {
    static ONCE: Once = Once::new();
    let url = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        ONCE.call_once(|| {
            eprintln!("skipping PostgreSQL store tests: TEST_DATABASE_URL is not set")
        });
    }
    url
}

async fn databases() -> Vec<Db> {
    let mut v = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/store.db", dir.path().display());
    let store = SqlStore::connect(&url, StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    v.push(Db {
        store,
        _dir: dir,
        pg: None,
    });
    if let Some(url) = pg_url() {
        let server = url.rsplit_once('/').unwrap().0.to_owned();
        let name = format!("s_{}", Uuid::new_v4().simple());
        let ok = std::process::Command::new("psql")
            .arg(format!("{server}/postgres"))
            .arg("-qc")
            .arg(format!("CREATE DATABASE {name}"))
            .status()
            .unwrap();
        assert!(ok.success());
        let store = SqlStore::connect(
            &format!("{server}/{name}"),
            StoreOptions {
                max_connections: 20,
                ..StoreOptions::default()
            },
        )
        .await
        .unwrap();
        store.migrate().await.unwrap();
        v.push(Db {
            store,
            _dir: tempfile::tempdir().unwrap(),
            pg: Some((server, name)),
        });
    }
    v
}

fn usd(s: &str) -> Money {
    Money::new(Decimal::from_str(s).unwrap(), Currency::USD).unwrap()
}

fn book(id: &str) -> BookId {
    BookId::parse(id).unwrap()
}

fn now() -> OffsetDateTime {
    // Microsecond precision, as stored.
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000).unwrap()
}

/// A priced order in processing_payment with its changes, not yet stored.
fn priced_order(customer: &str) -> (Order, Vec<OrderChange>) {
    let at = now();
    let cart = Cart::parse(CartDraft {
        customer_id: Some(customer.into()),
        items: vec![
            CartItemDraft {
                book_id: Some("bk-1".into()),
                quantity: Some(2),
                unit_price: Some(Decimal::from_str("12.50").unwrap()),
            },
            CartItemDraft {
                book_id: Some("bk-2".into()),
                quantity: Some(1),
                unit_price: None,
            },
        ],
        tax_rate: Some(Decimal::from_str("0.08").unwrap()),
        shipping_cost: Some(Decimal::from_str("4.99").unwrap()),
        shipping_address: Some(AddressDraft {
            line1: Some("1 Main St".into()),
            city: Some("Springfield".into()),
            postal_code: Some("12345".into()),
            country: Some("US".into()),
            ..Default::default()
        }),
        payment_method_token: Some("pm".into()),
        ..Default::default()
    })
    .unwrap();
    let (mut o, created) = Order::place(
        OrderId::from_uuid(Uuid::now_v7()),
        &cart,
        at,
        Some(customer.into()),
    );
    let mut changes = vec![
        created,
        o.transition(OrderState::Validating, TransitionContext::new("v", at))
            .unwrap(),
    ];
    o.apply_catalog_prices(&[(book("bk-1"), usd("12.50")), (book("bk-2"), usd("8.00"))])
        .unwrap();
    o.attach_reservation(
        ReservationRef {
            id: ReservationId::from_uuid(Uuid::now_v7()),
            expires_at: at + Duration::from_secs(900),
            status: ReservationStatus::Active,
        },
        at,
    );
    changes.push(
        o.transition(
            OrderState::Reserved,
            TransitionContext::new("r", at).metadata(serde_json::json!({"k": 1})),
        )
        .unwrap(),
    );
    let mut p = Payment::begin("mock", o.id(), 1);
    p.intent_id = Some(format!("pi_{}", o.id()));
    p.next_action = Some(serde_json::json!({"type": "redirect_to_url"}));
    o.set_payment(p, at);
    changes.push(
        o.transition(
            OrderState::ProcessingPayment,
            TransitionContext::new("p", at),
        )
        .unwrap(),
    );
    (o, changes)
}

fn same(a: &Order, b: &Order) {
    assert_eq!(format!("{:?}", a.snapshot()), format!("{:?}", b.snapshot()));
    assert_eq!(a.totals(), b.totals());
}

#[tokio::test]
async fn an_order_round_trips_with_its_audit_trail_and_events() {
    for db in databases().await {
        let s = &db.store;
        let (o, changes) = priced_order("cust-1");
        s.create(&o, &changes).await.unwrap();
        let back = s.get(o.id()).await.unwrap();
        same(&o, &back);
        assert_eq!(back.totals().unwrap().total_amount.to_string(), "40.63");
        let trail = s.audit_trail(o.id()).await.unwrap();
        assert_eq!(
            trail.iter().map(|e| e.new_state).collect::<Vec<_>>(),
            [
                OrderState::Pending,
                OrderState::Validating,
                OrderState::Reserved,
                OrderState::ProcessingPayment
            ]
        );
        assert_eq!(trail[2].metadata, serde_json::json!({"k": 1}));
        assert_eq!(s.stats(now()).await.unwrap().pending, 4);
        assert_eq!(
            s.find_by_payment_intent(&format!("pi_{}", o.id()))
                .await
                .unwrap()
                .id(),
            o.id()
        );
        assert!(matches!(
            s.get(OrderId::from_uuid(Uuid::now_v7())).await,
            Err(RepositoryError::NotFound)
        ));
        assert!(matches!(
            s.create(&o, &changes).await,
            Err(RepositoryError::Duplicate(_))
        ));
    }
}

#[tokio::test]
async fn a_stale_version_is_refused_and_writes_nothing() {
    for db in databases().await {
        let s = &db.store;
        let (mut o, changes) = priced_order("cust-1");
        s.create(&o, &changes).await.unwrap();
        let loaded = o.version();
        let mut other = o.clone();
        let c1 = o
            .transition(OrderState::Paid, TransitionContext::new("paid", now()))
            .unwrap();
        s.save(&o, loaded, &[c1]).await.unwrap();
        let c2 = other
            .transition(
                OrderState::PaymentFailed,
                TransitionContext::new("late", now()),
            )
            .unwrap();
        assert!(matches!(
            s.save(&other, loaded, &[c2]).await,
            Err(RepositoryError::Conflict(_))
        ));
        assert_eq!(s.get(o.id()).await.unwrap().state(), OrderState::Paid);
        assert_eq!(s.audit_trail(o.id()).await.unwrap().len(), 5);
    }
}

#[tokio::test]
async fn a_failing_outbox_insert_leaves_neither_the_change_nor_its_audit() {
    for db in databases().await {
        let s = &db.store;
        let (mut o, changes) = priced_order("cust-1");
        s.create(&o, &changes).await.unwrap();
        let loaded = o.version();
        let mut change = o
            .transition(OrderState::Paid, TransitionContext::new("paid", now()))
            .unwrap();
        // Re-use an existing sequence: the outbox's unique key refuses it.
        change.events[0] = EventEnvelope::new(o.id(), 1, now(), change.events[0].event.clone());
        assert!(matches!(
            s.save(&o, loaded, &[change]).await,
            Err(RepositoryError::Duplicate(_))
        ));
        let back = s.get(o.id()).await.unwrap();
        assert_eq!(back.state(), OrderState::ProcessingPayment);
        assert_eq!(back.version(), loaded);
        assert_eq!(s.audit_trail(o.id()).await.unwrap().len(), 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_saves_from_one_version_one_wins() {
    for db in databases().await {
        let s = db.store.clone();
        let (o, changes) = priced_order("cust-1");
        s.create(&o, &changes).await.unwrap();
        let mut tasks = Vec::new();
        for to in [OrderState::Paid, OrderState::PaymentFailed] {
            let (s, mut o) = (s.clone(), o.clone());
            tasks.push(tokio::spawn(async move {
                let v = o.version();
                let c = o
                    .transition(to, TransitionContext::new("race", now()))
                    .unwrap();
                s.save(&o, v, &[c]).await
            }));
        }
        let results: Vec<_> = futures::future::join_all(tasks)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(RepositoryError::Conflict(_))))
        );
        assert_eq!(s.audit_trail(o.id()).await.unwrap().len(), 5);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_reservations_of_ten_units() {
    for db in databases().await {
        let s = db.store.clone();
        s.upsert_stock(&book("bk-hot"), "Hot", usd("10.00"), 10)
            .await
            .unwrap();
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move {
                    let req = ReservationRequest {
                        reservation_id: ReservationId::from_uuid(Uuid::now_v7()),
                        order_id: OrderId::from_uuid(Uuid::now_v7()),
                        currency: Currency::USD,
                        lines: vec![ReserveLine {
                            book_id: book("bk-hot"),
                            quantity: Quantity::new(1).unwrap(),
                            expected_unit_price: None,
                        }],
                        expires_at: now() + Duration::from_secs(900),
                    };
                    s.reserve(&req).await
                })
            })
            .collect();
        let results: Vec<_> = futures::future::join_all(tasks)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            ok,
            10,
            "{:?}",
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .map(|e| e.to_string())
                .collect::<std::collections::BTreeSet<_>>()
        );
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|e| matches!(e, InventoryError::Unavailable(_)))
        );
        let item = s.get_stock(&book("bk-hot")).await.unwrap();
        assert_eq!((item.available, item.reserved), (0, 10));
    }
}

#[tokio::test]
async fn reservations_are_all_or_nothing_idempotent_and_checked() {
    for db in databases().await {
        let s = &db.store;
        s.upsert_stock(&book("bk-1"), "One", usd("12.50"), 5)
            .await
            .unwrap();
        s.upsert_stock(&book("bk-2"), "Two", usd("8.00"), 1)
            .await
            .unwrap();
        let line = |b: &str, q: i64, p: Option<&str>| ReserveLine {
            book_id: book(b),
            quantity: Quantity::new(q).unwrap(),
            expected_unit_price: p.map(usd),
        };
        let req = |lines| ReservationRequest {
            reservation_id: ReservationId::from_uuid(Uuid::now_v7()),
            order_id: OrderId::from_uuid(Uuid::now_v7()),
            currency: Currency::USD,
            lines,
            expires_at: now() + Duration::from_secs(900),
        };
        // Short on one line: nothing held on the other.
        let short = s
            .reserve(&req(vec![line("bk-1", 2, None), line("bk-2", 3, None)]))
            .await
            .unwrap_err();
        let InventoryError::Unavailable(items) = short else {
            panic!("{short:?}")
        };
        assert_eq!((items.len(), items[0].available), (1, 1));
        assert_eq!(s.get_stock(&book("bk-1")).await.unwrap().available, 5);
        assert!(matches!(
            s.reserve(&req(vec![line("bk-9", 1, None)])).await,
            Err(InventoryError::Pricing(PricingProblem::UnknownBooks(_)))
        ));
        assert!(matches!(
            s.reserve(&req(vec![line("bk-1", 1, Some("9.99"))])).await,
            Err(InventoryError::Pricing(PricingProblem::PriceMismatch(_)))
        ));
        // Idempotent by id.
        let r = req(vec![line("bk-1", 2, Some("12.50"))]);
        let first = s.reserve(&r).await.unwrap();
        let again = s.reserve(&r).await.unwrap();
        assert_eq!(first, again);
        assert_eq!(first.lines[0].unit_price, usd("12.50"));
        assert_eq!(s.get_stock(&book("bk-1")).await.unwrap().available, 3);
        // Confirm, confirm again, release after confirm: the sale stands.
        s.confirm(r.reservation_id).await.unwrap();
        s.confirm(r.reservation_id).await.unwrap();
        s.release(r.reservation_id).await.unwrap();
        let item = s.get_stock(&book("bk-1")).await.unwrap();
        assert_eq!((item.available, item.reserved), (3, 0));
        // Release gives back; confirming a released one is gone.
        let r2 = req(vec![line("bk-1", 1, None)]);
        s.reserve(&r2).await.unwrap();
        s.release(r2.reservation_id).await.unwrap();
        s.release(r2.reservation_id).await.unwrap();
        assert!(matches!(
            s.confirm(r2.reservation_id).await,
            Err(InventoryError::ReservationGone(_))
        ));
        assert!(matches!(
            s.confirm(ReservationId::from_uuid(Uuid::now_v7())).await,
            Err(InventoryError::NotFound)
        ));
        assert_eq!(s.get_stock(&book("bk-1")).await.unwrap().available, 3);
        // Expiry, extension.
        let r3 = req(vec![line("bk-1", 1, None)]);
        s.reserve(&r3).await.unwrap();
        s.extend(r3.reservation_id, now() + Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(
            s.release_expired(now() + Duration::from_secs(1800), 10)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            s.release_expired(now() + Duration::from_secs(7200), 10)
                .await
                .unwrap(),
            1
        );
        assert_eq!(s.get_stock(&book("bk-1")).await.unwrap().available, 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refunds_never_exceed_the_captured_amount() {
    for db in databases().await {
        let s = db.store.clone();
        let (o, changes) = priced_order("cust-1");
        s.create(&o, &changes).await.unwrap();
        let captured = o.totals().unwrap().total_amount; // 40.63
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let s = s.clone();
                let refund = NewRefund {
                    id: RefundId::from_uuid(Uuid::now_v7()),
                    order_id: o.id(),
                    amount: usd("10.00"),
                    reason: None,
                    created_at: now(),
                };
                tokio::spawn(async move { s.begin_refund(&refund, captured).await })
            })
            .collect();
        let results: Vec<_> = futures::future::join_all(tasks)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            4,
            "{results:?}"
        );
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|e| matches!(e, RepositoryError::RefundExceedsPayment { .. })),
            "{results:?}"
        );
    }
}

#[tokio::test]
async fn listing_newest_first_with_filters_and_cursor() {
    for db in databases().await {
        let s = &db.store;
        let mut ids = Vec::new();
        for c in ["a", "b", "a", "a", "b"] {
            let (o, ch) = priced_order(&format!("cust-{c}"));
            s.create(&o, &ch).await.unwrap();
            ids.push((c, o.id()));
        }
        let a: Vec<OrderId> = ids
            .iter()
            .rev()
            .filter(|(c, _)| *c == "a")
            .map(|(_, id)| *id)
            .collect();
        let q = OrderQuery {
            customer_id: Some(CustomerId::parse("cust-a").unwrap()),
            state: None,
            limit: 2,
            before: None,
        };
        let page = s.list(&q).await.unwrap();
        assert_eq!(
            page.orders.iter().map(|o| o.id()).collect::<Vec<_>>(),
            a[..2]
        );
        let page2 = s
            .list(&OrderQuery {
                before: page.next,
                ..q.clone()
            })
            .await
            .unwrap();
        assert_eq!(
            page2.orders.iter().map(|o| o.id()).collect::<Vec<_>>(),
            a[2..]
        );
        let by_state = s
            .list(&OrderQuery {
                state: Some(OrderState::Paid),
                limit: 10,
                ..OrderQuery::default()
            })
            .await
            .unwrap();
        assert!(by_state.orders.is_empty());
    }
}

#[tokio::test]
async fn idempotency_keys() {
    for db in databases().await {
        let s = &db.store;
        let key = IdempotencyKey::parse("k-1").unwrap();
        let t = now();
        assert_eq!(
            s.begin("c1", &key, "fp", t, t).await.unwrap(),
            IdempotencyBegin::Started
        );
        assert_eq!(
            s.begin("c1", &key, "fp", t, t - Duration::from_secs(60))
                .await
                .unwrap(),
            IdempotencyBegin::InFlight
        );
        assert_eq!(
            s.begin("c1", &key, "other", t, t).await.unwrap(),
            IdempotencyBegin::Mismatch
        );
        assert_eq!(
            s.begin("c2", &key, "other", t, t).await.unwrap(),
            IdempotencyBegin::Started,
            "scopes are separate"
        );
        let stored = StoredResponse {
            status: 201,
            headers: vec![("location".into(), "/orders/x".into())],
            body: b"{}".to_vec(),
        };
        s.complete("c1", &key, &stored).await.unwrap();
        assert_eq!(
            s.begin("c1", &key, "fp", t, t).await.unwrap(),
            IdempotencyBegin::Replay(stored)
        );
        // A holder that died is taken over after the timeout.
        assert_eq!(
            s.begin(
                "c2",
                &key,
                "other",
                t + Duration::from_secs(300),
                t + Duration::from_secs(120)
            )
            .await
            .unwrap(),
            IdempotencyBegin::Started
        );
        s.abandon("c2", &key).await.unwrap();
        assert_eq!(
            s.begin("c2", &key, "new", t, t).await.unwrap(),
            IdempotencyBegin::Started
        );
        assert_eq!(s.purge(t + Duration::from_secs(1)).await.unwrap(), 2);
    }
}

#[tokio::test]
async fn outbox_claims_in_order_and_two_claimers_never_share() {
    for db in databases().await {
        let s = &db.store;
        for _ in 0..3 {
            let (o, ch) = priced_order("cust-1");
            s.create(&o, &ch).await.unwrap();
        }
        let t = now();
        let first = s.claim_batch(5, t, 30).await.unwrap();
        let second = s.claim_batch(100, t, 30).await.unwrap();
        assert_eq!(first.len(), 5);
        let first_ids: std::collections::HashSet<_> = first.iter().map(|r| r.id).collect();
        assert!(
            second.iter().all(|r| !first_ids.contains(&r.id)),
            "a claimed event is not claimed twice"
        );
        // An order whose earlier event is leased elsewhere is held back.
        for r in &second {
            if let Some(earlier) = first.iter().find(|f| f.order_id == r.order_id) {
                assert!(earlier.sequence < r.sequence);
                panic!(
                    "event {} of order {} claimed while {} is leased",
                    r.sequence, r.order_id, earlier.sequence
                );
            }
        }
        s.mark_published(&first.iter().map(|r| r.id).collect::<Vec<_>>(), t)
            .await
            .unwrap();
        s.record_failure(
            second[0].id,
            "broker down",
            false,
            t + Duration::from_secs(10),
        )
        .await
        .unwrap();
        let parked = s.claim_batch(100, t, 30).await.unwrap();
        assert!(parked.iter().all(|r| r.id != second[0].id));
        s.record_failure(second[0].id, "poison", true, t)
            .await
            .unwrap();
        let stats = s.stats(t).await.unwrap();
        assert_eq!(stats.parked, 1);
        assert_eq!(
            s.purge_published(t + Duration::from_secs(1)).await.unwrap(),
            5
        );
    }
}

#[tokio::test]
async fn migrations_go_down_to_empty_and_up_again() {
    for db in databases().await {
        let s = &db.store;
        s.migrate_down_all().await.unwrap();
        assert!(s.get(OrderId::from_uuid(Uuid::now_v7())).await.is_err());
        s.migrate().await.unwrap();
        let (o, ch) = priced_order("cust-1");
        s.create(&o, &ch).await.unwrap();
        assert_eq!(s.get(o.id()).await.unwrap().id(), o.id());
    }
}
