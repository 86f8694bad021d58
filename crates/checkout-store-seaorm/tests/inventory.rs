//! The local stock: reservations, confirmation, release, expiry, stock
//! administration and the order-and-stock ledger, on SQLite and (when
//! configured) PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod support;

use checkout_domain::{
    Currency, Money, OrderState, PricingProblem, Quantity, ReservationId, ReservationStatus,
};
use checkout_ports::{
    CatalogRead, InventoryError, InventoryPort, LedgerError, OrderRepository, OrderStockLedger,
    RepositoryError, ReservationRequest, ReserveLine, StockAdmin, StockEffect,
};
use sea_orm::ConnectionTrait;
use support::{TestDb, book, ctx, order_id, reserved_order, secs, stock, t0, usd};
use uuid::Uuid;

fn line(b: &str, q: i64, expected: Option<&str>) -> ReserveLine {
    ReserveLine {
        book_id: book(b),
        quantity: Quantity::new(q).unwrap(),
        expected_unit_price: expected.map(usd),
    }
}

fn request(lines: Vec<ReserveLine>, expires_in: i64) -> ReservationRequest {
    ReservationRequest {
        reservation_id: ReservationId::from_uuid(Uuid::now_v7()),
        order_id: order_id(1),
        currency: Currency::USD,
        lines,
        expires_at: t0() + secs(expires_in),
    }
}

async fn counts(db: &TestDb, b: &str) -> (u32, u32) {
    let item = db.store.get_stock(&book(b)).await.unwrap();
    (item.available, item.reserved)
}

both!(concurrent_reservations_never_oversell, |db| {
    stock(&db, "bk-hot", "9.99", 10).await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .reserve(&request(vec![line("bk-hot", 1, None)], 900))
                .await
        }));
    }
    let (mut ok, mut short) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(InventoryError::Unavailable(items)) => {
                assert_eq!(items.len(), 1);
                assert_eq!(items[0].requested, 1);
                assert_eq!(items[0].available, 0);
                short += 1;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, short), (10, 190));
    assert_eq!(counts(&db, "bk-hot").await, (0, 10));
    assert_eq!(db.count("reservations").await, 10);
});

both!(
    reserve_is_idempotent_and_refuses_bad_prices_and_short_stock,
    |db| {
        stock(&db, "bk-1", "12.50", 5).await;
        stock(&db, "bk-2", "20.00", 1).await;
        stock(&db, "bk-3", "7.00", 5).await;
        let eur = Currency::parse("EUR").unwrap();
        db.store
            .upsert_stock(
                &book("bk-eur"),
                "Euro book",
                Money::from_minor_units(1000, eur).unwrap(),
                5,
            )
            .await
            .unwrap();

        let req = request(
            vec![line("bk-1", 2, Some("12.50")), line("bk-2", 1, None)],
            900,
        );
        let first = db.store.reserve(&req).await.unwrap();
        assert_eq!(first.id, req.reservation_id);
        assert_eq!(first.expires_at, req.expires_at);
        assert_eq!(
            first
                .lines
                .iter()
                .map(|l| (
                    l.book_id.as_str().to_owned(),
                    l.quantity.get(),
                    l.unit_price
                ))
                .collect::<Vec<_>>(),
            vec![
                ("bk-1".to_owned(), 2, usd("12.50")),
                ("bk-2".to_owned(), 1, usd("20.00"))
            ]
        );
        assert_eq!(counts(&db, "bk-1").await, (3, 2));
        // Repeating it returns the same reservation and takes nothing more.
        let again = db.store.reserve(&req).await.unwrap();
        assert_eq!(again, first);
        assert_eq!(counts(&db, "bk-1").await, (3, 2));
        assert_eq!(counts(&db, "bk-2").await, (0, 1));

        // Unknown books: nothing reserved.
        let err = db
            .store
            .reserve(&request(
                vec![line("bk-1", 1, None), line("bk-x", 1, None)],
                900,
            ))
            .await
            .unwrap_err();
        assert!(
            matches!(err, InventoryError::Pricing(PricingProblem::UnknownBooks(ref b)) if b == &vec![book("bk-x")]),
            "{err:?}"
        );
        // A catalog price in another currency than the order's.
        let err = db
            .store
            .reserve(&request(vec![line("bk-eur", 1, None)], 900))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                InventoryError::Pricing(PricingProblem::CurrencyMismatch { .. })
            ),
            "{err:?}"
        );
        // The client saw another price.
        let err = db
            .store
            .reserve(&request(
                vec![
                    line("bk-1", 1, Some("12.00")),
                    line("bk-3", 1, Some("7.00")),
                ],
                900,
            ))
            .await
            .unwrap_err();
        match err {
            InventoryError::Pricing(PricingProblem::PriceMismatch(m)) => {
                assert_eq!(m.len(), 1);
                assert_eq!(
                    (m[0].book_id.as_str(), m[0].expected, m[0].catalog),
                    ("bk-1", usd("12.00"), usd("12.50"))
                );
            }
            other => panic!("{other:?}"),
        }
        // Short stock: every short line with what was asked and what is left;
        // the line that could be served is given back.
        let err = db
            .store
            .reserve(&request(
                vec![
                    line("bk-1", 2, None),
                    line("bk-2", 2, None),
                    line("bk-3", 10, None),
                ],
                900,
            ))
            .await
            .unwrap_err();
        match err {
            InventoryError::Unavailable(items) => {
                let got: Vec<_> = items
                    .iter()
                    .map(|i| (i.book_id.as_str().to_owned(), i.requested, i.available))
                    .collect();
                assert_eq!(
                    got,
                    vec![("bk-2".to_owned(), 2, 0), ("bk-3".to_owned(), 10, 5)]
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(counts(&db, "bk-1").await, (3, 2));
        assert_eq!(counts(&db, "bk-3").await, (5, 0));
        assert_eq!(db.count("reservations").await, 1);
        assert_eq!(db.count("reservation_items").await, 2);
    }
);

both!(confirm_release_and_extend, |db| {
    stock(&db, "bk-1", "10.00", 10).await;
    let r1 = db
        .store
        .reserve(&request(vec![line("bk-1", 3, None)], 900))
        .await
        .unwrap();
    db.store.confirm(r1.id).await.unwrap();
    assert_eq!(counts(&db, "bk-1").await, (7, 0));
    db.store.confirm(r1.id).await.unwrap(); // again: a no-op
    db.store.release(r1.id).await.unwrap(); // confirmed stays confirmed
    db.store.extend(r1.id, t0() + secs(5000)).await.unwrap();
    assert_eq!(counts(&db, "bk-1").await, (7, 0));

    let r2 = db
        .store
        .reserve(&request(vec![line("bk-1", 2, None)], 900))
        .await
        .unwrap();
    assert_eq!(counts(&db, "bk-1").await, (5, 2));
    db.store.extend(r2.id, t0() + secs(5000)).await.unwrap();
    assert_eq!(
        db.store
            .release_expired(t0() + secs(1000), 10)
            .await
            .unwrap(),
        0,
        "extended"
    );
    db.store.release(r2.id).await.unwrap();
    assert_eq!(counts(&db, "bk-1").await, (7, 0));
    db.store.release(r2.id).await.unwrap(); // again: a no-op
    assert_eq!(counts(&db, "bk-1").await, (7, 0));
    assert!(
        matches!(db.store.confirm(r2.id).await, Err(InventoryError::ReservationGone(id)) if id == r2.id)
    );
    assert!(matches!(
        db.store.extend(r2.id, t0()).await,
        Err(InventoryError::ReservationGone(_))
    ));

    let unknown = ReservationId::from_uuid(Uuid::now_v7());
    assert!(matches!(
        db.store.confirm(unknown).await,
        Err(InventoryError::NotFound)
    ));
    assert!(matches!(
        db.store.extend(unknown, t0()).await,
        Err(InventoryError::NotFound)
    ));
    db.store.release(unknown).await.unwrap();
});

both!(expired_reservations_are_released_once, |db| {
    stock(&db, "bk-1", "10.00", 100).await;
    let soon = db
        .store
        .reserve(&request(vec![line("bk-1", 1, None)], 10))
        .await
        .unwrap();
    db.store
        .reserve(&request(vec![line("bk-1", 2, None)], 20))
        .await
        .unwrap();
    db.store
        .reserve(&request(vec![line("bk-1", 4, None)], 1000))
        .await
        .unwrap();
    assert_eq!(counts(&db, "bk-1").await, (93, 7));
    assert_eq!(
        db.store.release_expired(t0() + secs(10), 10).await.unwrap(),
        0,
        "not yet"
    );
    assert_eq!(
        db.store.release_expired(t0() + secs(30), 1).await.unwrap(),
        1,
        "limit"
    );
    assert_eq!(
        db.store.release_expired(t0() + secs(30), 10).await.unwrap(),
        1
    );
    assert_eq!(
        db.store.release_expired(t0() + secs(30), 10).await.unwrap(),
        0
    );
    assert_eq!(counts(&db, "bk-1").await, (96, 4));
    assert!(matches!(
        db.store.confirm(soon.id).await,
        Err(InventoryError::ReservationGone(_))
    ));

    // Several sweepers at once release each reservation exactly once.
    for _ in 0..30 {
        db.store
            .reserve(&request(vec![line("bk-1", 1, None)], 10))
            .await
            .unwrap();
    }
    assert_eq!(counts(&db, "bk-1").await, (66, 34));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            loop {
                let k = store.release_expired(t0() + secs(60), 4).await.unwrap();
                if k == 0 {
                    return n;
                }
                n += k;
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 30);
    assert_eq!(counts(&db, "bk-1").await, (96, 4));
});

both!(stock_administration, |db| {
    let item = db
        .store
        .upsert_stock(&book("bk-b"), "B", usd("3.50"), 4)
        .await
        .unwrap();
    assert_eq!(
        (
            item.title.as_str(),
            item.price,
            item.available,
            item.reserved
        ),
        ("B", usd("3.50"), 4, 0)
    );
    stock(&db, "bk-a", "1.00", 1).await;
    db.store
        .reserve(&request(vec![line("bk-b", 3, None)], 900))
        .await
        .unwrap();
    // Replacing keeps what is reserved.
    let item = db
        .store
        .upsert_stock(&book("bk-b"), "B, 2nd ed.", usd("4.00"), 10)
        .await
        .unwrap();
    assert_eq!(
        (
            item.title.as_str(),
            item.price,
            item.available,
            item.reserved
        ),
        ("B, 2nd ed.", usd("4.00"), 10, 3)
    );
    assert_eq!(db.store.get_stock(&book("bk-b")).await.unwrap(), item);
    let all = db.store.list_stock().await.unwrap();
    assert_eq!(
        all.iter().map(|i| i.book_id.as_str()).collect::<Vec<_>>(),
        vec!["bk-a", "bk-b"]
    );
    assert!(matches!(
        db.store.get_stock(&book("bk-none")).await,
        Err(InventoryError::NotFound)
    ));
    assert!(
        db.store
            .catalog_prices(&[book("bk-a"), book("bk-none")], CatalogRead::Cached)
            .await
            .unwrap()
            == vec![(book("bk-a"), usd("1.00"))]
    );
});

both!(ledger_commits_order_and_stock_together, |db| {
    stock(&db, "bk-1", "12.50", 5).await;
    stock(&db, "bk-2", "20.00", 1).await;
    let books = [book("bk-1"), book("bk-2")];
    let prices = db
        .store
        .catalog_prices(&books, CatalogRead::Fresh)
        .await
        .unwrap();

    // A priced, reserved order written with its reservation in one commit.
    let new_order = |seq: u64, items: &[(&str, i64)]| {
        reserved_order(order_id(seq), "cust-ledger", items, &prices)
    };
    let (order, changes, req) = new_order(1, &[("bk-1", 2)]);
    db.store
        .create_with_reservation(&order, &changes, &req, &prices)
        .await
        .unwrap();
    assert_eq!(counts(&db, "bk-1").await, (3, 2));
    assert_eq!(
        db.store.get(order.id()).await.unwrap().state(),
        OrderState::Reserved
    );

    // Short stock: neither the order nor any stock is written.
    let (short, changes, req) = new_order(2, &[("bk-1", 1), ("bk-2", 2)]);
    let err = db
        .store
        .create_with_reservation(&short, &changes, &req, &prices)
        .await
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::Inventory(InventoryError::Unavailable(_))),
        "{err:?}"
    );
    assert!(matches!(
        db.store.get(short.id()).await,
        Err(RepositoryError::NotFound)
    ));
    assert_eq!(counts(&db, "bk-1").await, (3, 2));

    // The price changed after it was quoted: refused, nothing written.
    let (late, changes, req) = new_order(3, &[("bk-2", 1)]);
    stock(&db, "bk-2", "21.00", 1).await;
    let err = db
        .store
        .create_with_reservation(&late, &changes, &req, &prices)
        .await
        .unwrap_err();
    match err {
        LedgerError::Inventory(InventoryError::Pricing(PricingProblem::PriceMismatch(m))) => {
            assert_eq!((m[0].expected, m[0].catalog), (usd("20.00"), usd("21.00")));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        db.store.get(late.id()).await,
        Err(RepositoryError::NotFound)
    ));
    assert_eq!(counts(&db, "bk-2").await, (1, 0));
    assert_eq!(db.count("reservations").await, 1);

    // Paid with the confirmation in the same commit; a stale save touches
    // no stock.
    let mut paid = db.store.get(order.id()).await.unwrap();
    let stale = paid.clone();
    let expected = paid.version();
    let mut c = vec![
        paid.transition(OrderState::ProcessingPayment, ctx("p", t0()))
            .unwrap(),
    ];
    c.push(
        paid.transition(OrderState::Paid, ctx("paid", t0()))
            .unwrap(),
    );
    paid.set_reservation_status(ReservationStatus::Confirmed, t0());
    db.store
        .save_with_stock(&paid, expected, &c, StockEffect::Confirm(req_id(&paid)))
        .await
        .unwrap();
    assert_eq!(counts(&db, "bk-1").await, (3, 0));
    let mut stale = stale;
    let c = vec![
        stale
            .transition(OrderState::Cancelled, ctx("c", t0()))
            .unwrap(),
    ];
    let err = db
        .store
        .save_with_stock(&stale, expected, &c, StockEffect::Release(req_id(&stale)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::Repository(RepositoryError::Conflict(_))),
        "{err:?}"
    );
    assert_eq!(counts(&db, "bk-1").await, (3, 0));
    assert_eq!(
        db.store.get(order.id()).await.unwrap().state(),
        OrderState::Paid
    );

    // A release with the save gives the units back.
    let (o2, changes, req2) = new_order(4, &[("bk-1", 3)]);
    db.store
        .create_with_reservation(&o2, &changes, &req2, &prices)
        .await
        .unwrap();
    assert_eq!(counts(&db, "bk-1").await, (0, 3));
    let mut o2 = db.store.get(o2.id()).await.unwrap();
    let expected = o2.version();
    let c = vec![
        o2.transition(OrderState::Cancelled, ctx("c", t0()))
            .unwrap(),
    ];
    db.store
        .save_with_stock(&o2, expected, &c, StockEffect::Release(req2.reservation_id))
        .await
        .unwrap();
    assert_eq!(counts(&db, "bk-1").await, (3, 0));

    // Confirming a released reservation writes nothing, the order included;
    // confirming a confirmed one saves the order and leaves the stock be.
    let (o3, changes, req3) = new_order(5, &[("bk-1", 1)]);
    db.store
        .create_with_reservation(&o3, &changes, &req3, &prices)
        .await
        .unwrap();
    db.store.release(req3.reservation_id).await.unwrap();
    let mut o3 = db.store.get(o3.id()).await.unwrap();
    let expected = o3.version();
    let audit_before = db.store.audit_trail(o3.id()).await.unwrap().len();
    let c = vec![
        o3.transition(OrderState::ProcessingPayment, ctx("p", t0()))
            .unwrap(),
    ];
    let err = db
        .store
        .save_with_stock(&o3, expected, &c, StockEffect::Confirm(req3.reservation_id))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::Inventory(InventoryError::ReservationGone(_))
        ),
        "{err:?}"
    );
    assert_eq!(db.store.get(o3.id()).await.unwrap().version(), expected);
    assert_eq!(
        db.store.audit_trail(o3.id()).await.unwrap().len(),
        audit_before
    );
    assert_eq!(counts(&db, "bk-1").await, (3, 0));
    let mut paid = db.store.get(order.id()).await.unwrap();
    let expected = paid.version();
    let c = vec![
        paid.transition(OrderState::Fulfilling, ctx("f", t0()))
            .unwrap(),
    ];
    db.store
        .save_with_stock(&paid, expected, &c, StockEffect::Confirm(req_id(&paid)))
        .await
        .unwrap();
    assert_eq!(
        db.store.get(order.id()).await.unwrap().state(),
        OrderState::Fulfilling
    );
    assert_eq!(counts(&db, "bk-1").await, (3, 0));
    let unknown = ReservationId::from_uuid(Uuid::now_v7());
    let mut f = db.store.get(order.id()).await.unwrap();
    let expected = f.version();
    let c = vec![f.transition(OrderState::Completed, ctx("c", t0())).unwrap()];
    let err = db
        .store
        .save_with_stock(&f, expected, &c, StockEffect::Confirm(unknown))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::Inventory(InventoryError::NotFound)),
        "{err:?}"
    );
    db.store
        .save_with_stock(&f, expected, &c, StockEffect::Release(unknown))
        .await
        .unwrap();
});

// A quote may come from the store's memory of the catalog; a price changed
// behind the store's back (another instance, an operator's SQL) is then
// refused by the reservation, never charged, and a fresh quote replaces it.
both!(
    a_remembered_price_changed_elsewhere_is_refused_then_requoted,
    |db| {
        stock(&db, "bk-1", "12.50", 5).await;
        let books = [book("bk-1")];
        let remembered = db
            .store
            .catalog_prices(&books, CatalogRead::Cached)
            .await
            .unwrap();
        assert_eq!(remembered, vec![(book("bk-1"), usd("12.50"))]);

        db.raw
            .execute_unprepared("UPDATE stock SET price_minor = 1300 WHERE book_id = 'bk-1'")
            .await
            .unwrap();
        let stale = db
            .store
            .catalog_prices(&books, CatalogRead::Cached)
            .await
            .unwrap();
        assert_eq!(stale, remembered, "a cached quote costs no read");
        let (order, changes, req) =
            reserved_order(order_id(1), "cust-memo", &[("bk-1", 1)], &stale);
        let err = db
            .store
            .create_with_reservation(&order, &changes, &req, &stale)
            .await
            .unwrap_err();
        match err {
            LedgerError::Inventory(InventoryError::Pricing(PricingProblem::PriceMismatch(m))) => {
                assert_eq!((m[0].expected, m[0].catalog), (usd("12.50"), usd("13.00")));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(counts(&db, "bk-1").await, (5, 0));
        assert_eq!(db.count("orders").await, 0);

        let fresh = db
            .store
            .catalog_prices(&books, CatalogRead::Fresh)
            .await
            .unwrap();
        assert_eq!(fresh, vec![(book("bk-1"), usd("13.00"))]);
        assert_eq!(
            db.store
                .catalog_prices(&books, CatalogRead::Cached)
                .await
                .unwrap(),
            fresh,
            "the fresh read is remembered"
        );
        let (order, changes, req) =
            reserved_order(order_id(2), "cust-memo", &[("bk-1", 1)], &fresh);
        db.store
            .create_with_reservation(&order, &changes, &req, &fresh)
            .await
            .unwrap();
        assert_eq!(counts(&db, "bk-1").await, (4, 1));

        // A price this store writes is remembered as written.
        stock(&db, "bk-1", "11.00", 4).await;
        assert_eq!(
            db.store
                .catalog_prices(&books, CatalogRead::Cached)
                .await
                .unwrap(),
            vec![(book("bk-1"), usd("11.00"))]
        );
    }
);

both!(concurrent_ledger_saves_move_stock_once, |db| {
    stock(&db, "bk-1", "12.50", 100).await;
    let prices = db
        .store
        .catalog_prices(&[book("bk-1")], CatalogRead::Fresh)
        .await
        .unwrap();
    for seq in 1..=10u64 {
        let (mut order, mut changes, req) =
            reserved_order(order_id(seq), "cust-race", &[("bk-1", 2)], &prices);
        changes.push(
            order
                .transition(OrderState::ProcessingPayment, ctx("p", t0()))
                .unwrap(),
        );
        db.store
            .create_with_reservation(&order, &changes, &req, &prices)
            .await
            .unwrap();
        // A payment success and a cancellation race from the same version.
        let expected = order.version();
        let (mut a, mut b) = (order.clone(), order.clone());
        let ca = vec![a.transition(OrderState::Paid, ctx("paid", t0())).unwrap()];
        let cb = vec![
            b.transition(OrderState::PaymentFailed, ctx("declined", t0()))
                .unwrap(),
            b.transition(OrderState::Cancelled, ctx("cancel", t0()))
                .unwrap(),
        ];
        let (s1, s2) = (db.store.clone(), db.store.clone());
        let rid = req.reservation_id;
        let (ra, rb) = tokio::join!(
            tokio::spawn(async move {
                s1.save_with_stock(&a, expected, &ca, StockEffect::Confirm(rid))
                    .await
            }),
            tokio::spawn(async move {
                s2.save_with_stock(&b, expected, &cb, StockEffect::Release(rid))
                    .await
            }),
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert_eq!(
            u8::from(ra.is_ok()) + u8::from(rb.is_ok()),
            1,
            "{ra:?} {rb:?}"
        );
        let loser = if ra.is_ok() { rb } else { ra };
        assert!(
            matches!(
                loser,
                Err(LedgerError::Repository(RepositoryError::Conflict(_)))
            ),
            "{loser:?}"
        );
    }
    // Every order's two units were either sold or given back, once.
    let (available, reserved) = counts(&db, "bk-1").await;
    assert_eq!(reserved, 0);
    let sold = db
        .scalar("SELECT COUNT(*) FROM reservations WHERE status = 'confirmed'")
        .await;
    let released = db
        .scalar("SELECT COUNT(*) FROM reservations WHERE status = 'released'")
        .await;
    assert_eq!(sold + released, 10);
    assert_eq!(i64::from(available), 100 - 2 * sold);
});

fn req_id(order: &checkout_domain::Order) -> ReservationId {
    order.reservation().unwrap().id
}

// Many orders at once for a book that only some can have: concurrent
// ledger writes share transactions (group commit), and a group in which
// one write can't go through must still commit every other one, and
// nothing of the one that failed.
both!(
    concurrent_ledger_orders_never_oversell_and_lose_none,
    |db| {
        stock(&db, "bk-hot", "9.99", 10).await;
        stock(&db, "bk-cold", "5.00", 1_000).await;
        let prices = db
            .store
            .catalog_prices(&[book("bk-hot"), book("bk-cold")], CatalogRead::Fresh)
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for seq in 0..60u64 {
            let store = db.store.clone();
            let prices = prices.clone();
            tasks.push(tokio::spawn(async move {
                // Every third order wants the hot book; the rest always fit.
                let wanted = if seq % 3 == 0 { "bk-hot" } else { "bk-cold" };
                let (order, changes, req) =
                    reserved_order(order_id(1_000 + seq), "cust-rush", &[(wanted, 1)], &prices);
                let outcome = store
                    .create_with_reservation(&order, &changes, &req, &prices)
                    .await;
                (wanted, order.id(), outcome)
            }));
        }
        let (mut hot, mut cold, mut short) = (0, 0, 0);
        for t in tasks {
            let (wanted, id, outcome) = t.await.unwrap();
            match outcome {
                Ok(()) => {
                    assert_eq!(
                        db.store.get(id).await.unwrap().state(),
                        OrderState::Reserved
                    );
                    if wanted == "bk-hot" {
                        hot += 1;
                    } else {
                        cold += 1;
                    }
                }
                Err(LedgerError::Inventory(InventoryError::Unavailable(items))) => {
                    assert_eq!(wanted, "bk-hot");
                    assert_eq!(items[0].book_id, book("bk-hot"));
                    assert!(matches!(
                        db.store.get(id).await,
                        Err(RepositoryError::NotFound)
                    ));
                    short += 1;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!((hot, cold, short), (10, 40, 10));
        assert_eq!(counts(&db, "bk-hot").await, (0, 10));
        assert_eq!(counts(&db, "bk-cold").await, (960, 40));
        assert_eq!(
            db.scalar("SELECT COUNT(*) FROM orders WHERE customer_id = 'cust-rush'")
                .await,
            50
        );
    }
);

// Orders that share books, each listing them in another order, reserve at
// once: every one succeeds and the stock adds up. On PostgreSQL a
// reservation takes all its books in one statement, which must lock their
// rows in book order whatever the cart's order; otherwise two such orders
// deadlock and one of them fails.
both!(
    concurrent_orders_sharing_books_in_any_order_all_reserve,
    |db| {
        let books = ["bk-a", "bk-b", "bk-c"];
        for b in books {
            stock(&db, b, "4.00", 1_000).await;
        }
        let catalog: Vec<_> = books.iter().map(|b| book(b)).collect();
        let prices = db
            .store
            .catalog_prices(&catalog, CatalogRead::Fresh)
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for seq in 0..48u64 {
            let store = db.store.clone();
            let prices = prices.clone();
            tasks.push(tokio::spawn(async move {
                let mut lines = vec![("bk-a", 1), ("bk-b", 2), ("bk-c", 1)];
                lines.rotate_left((seq % 3) as usize);
                if seq % 2 == 1 {
                    lines.reverse();
                }
                let (order, changes, req) =
                    reserved_order(order_id(2_000 + seq), "cust-share", &lines, &prices);
                store
                    .create_with_reservation(&order, &changes, &req, &prices)
                    .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(counts(&db, "bk-a").await, (952, 48));
        assert_eq!(counts(&db, "bk-b").await, (904, 96));
        assert_eq!(counts(&db, "bk-c").await, (952, 48));
    }
);
