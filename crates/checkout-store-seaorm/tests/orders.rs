//! The order repository, refunds, the webhook inbox, the idempotency store,
//! the outbox and the migrations, on SQLite and (when configured)
//! PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod support;

use std::sync::Arc;

use checkout_domain::{
    DomainEvent, EventEnvelope, IdempotencyKey, Order, OrderChange, OrderState, RefundId,
    ReservationStatus,
};
use checkout_migrations::{Migrator, MigratorTrait};
use checkout_ports::{
    IdempotencyBegin, IdempotencyStore, NewRefund, OrderQuery, OrderRepository, OutboxKey,
    OutboxRecord, OutboxStore, RefundRecordStatus, RepositoryError, StoredResponse,
};
use sea_orm::ConnectionTrait;
use support::{TestDb, assert_same_order, ctx, full_order, order_id, placed, secs, stock, t0, usd};
use uuid::Uuid;

/// Creates a placed order and returns it.
async fn create_placed(db: &TestDb, seq: u64, customer: &str) -> Order {
    let (order, change) = placed(order_id(seq), customer, &[("bk-1", 1)]);
    db.store.create(&order, &[change]).await.unwrap();
    order
}

/// Moves `order` to `to`, saving over its current version.
async fn advance(db: &TestDb, order: &mut Order, to: OrderState) -> OrderChange {
    let expected = order.version();
    let change = order.transition(to, ctx("step", t0() + secs(1))).unwrap();
    db.store
        .save(order, expected, std::slice::from_ref(&change))
        .await
        .unwrap();
    change
}

both!(create_and_get_round_trip_every_field, |db| {
    let order = full_order(order_id(1), OrderState::Paid);
    let creation = OrderChange {
        audit: checkout_domain::AuditEntry {
            order_id: order.id(),
            previous_state: None,
            new_state: OrderState::Paid,
            reason: "imported".into(),
            metadata: serde_json::json!({"source": "test", "n": 1}),
            actor: Some("admin".into()),
            at: t0(),
        },
        events: vec![],
    };
    db.store
        .create(&order, std::slice::from_ref(&creation))
        .await
        .unwrap();
    let back = db.store.get(order.id()).await.unwrap();
    assert_same_order(&order, &back);
    assert!(back.totals().is_some());
    assert_eq!(
        db.store.audit_trail(order.id()).await.unwrap(),
        vec![creation.audit]
    );
    // The payment is mirrored into payment_attempts.
    assert_eq!(db.count("payment_attempts").await, 1);
    assert_eq!(db.scalar("SELECT attempt FROM payment_attempts").await, 2,);
    // Found by its payment intent.
    let intent = order.payment().unwrap().intent_id.clone().unwrap();
    assert_eq!(
        db.store.find_by_payment_intent(&intent).await.unwrap().id(),
        order.id()
    );
    assert!(matches!(
        db.store.find_by_payment_intent("pi_nope").await,
        Err(RepositoryError::NotFound)
    ));
    // The same id again is a duplicate, and writes nothing.
    assert!(matches!(
        db.store.create(&order, &[]).await,
        Err(RepositoryError::Duplicate(_))
    ));
    assert!(matches!(
        db.store.get(order_id(99)).await,
        Err(RepositoryError::NotFound)
    ));
});

both!(stale_save_is_a_conflict_and_writes_nothing, |db| {
    let mut order = create_placed(&db, 1, "cust-1").await;
    let stale = order.clone();
    advance(&db, &mut order, OrderState::Validating).await;
    let audit_before = db.store.audit_trail(order.id()).await.unwrap().len();
    let outbox_before = db.count("outbox").await;

    let mut loser = stale;
    let expected = loser.version();
    let change = loser
        .transition(OrderState::Cancelled, ctx("late", t0()))
        .unwrap();
    let err = db
        .store
        .save(&loser, expected, &[change])
        .await
        .unwrap_err();
    assert!(matches!(err, RepositoryError::Conflict(id) if id == order.id()));

    let stored = db.store.get(order.id()).await.unwrap();
    assert_eq!(stored.state(), OrderState::Validating);
    assert_eq!(stored.version(), order.version());
    assert_eq!(
        db.store.audit_trail(order.id()).await.unwrap().len(),
        audit_before
    );
    assert_eq!(db.count("outbox").await, outbox_before);

    // Saving an order that was never created is NotFound.
    let (ghost, change) = placed(order_id(50), "cust-1", &[("bk-1", 1)]);
    assert!(matches!(
        db.store.save(&ghost, ghost.version(), &[change]).await,
        Err(RepositoryError::NotFound)
    ));
});

both!(a_failed_outbox_insert_rolls_back_the_whole_save, |db| {
    let mut order = create_placed(&db, 1, "cust-1").await;
    advance(&db, &mut order, OrderState::Validating).await;
    let audit_before = db.store.audit_trail(order.id()).await.unwrap().len();

    let expected = order.version();
    let mut next = order.clone();
    let mut change = next
        .transition(OrderState::Cancelled, ctx("cancel", t0()))
        .unwrap();
    // An event reusing sequence 1, which the creation already wrote.
    change.events.push(EventEnvelope::new(
        order.id(),
        1,
        t0(),
        DomainEvent::OrderStateChanged {
            from: None,
            to: OrderState::Cancelled,
            reason: "dup".into(),
        },
    ));
    let err = db.store.save(&next, expected, &[change]).await.unwrap_err();
    assert!(matches!(err, RepositoryError::Duplicate(_)), "{err:?}");

    let stored = db.store.get(order.id()).await.unwrap();
    assert_eq!(stored.state(), OrderState::Validating);
    assert_eq!(stored.version(), expected);
    assert_eq!(
        db.store.audit_trail(order.id()).await.unwrap().len(),
        audit_before
    );
    // And the store still works afterwards (nothing left half-open).
    advance(&db, &mut order, OrderState::Cancelled).await;
});

both!(listing_is_newest_first_with_cursor_and_filters, |db| {
    let mut ids = Vec::new();
    for seq in 1..=7u64 {
        let customer = if seq % 2 == 0 {
            "cust-even"
        } else {
            "cust-odd"
        };
        let mut order = create_placed(&db, seq, customer).await;
        if seq >= 6 {
            advance(&db, &mut order, OrderState::Validating).await;
        }
        ids.push(order.id());
    }
    let newest_first: Vec<_> = ids.iter().rev().copied().collect();

    let page1 = db
        .store
        .list(&OrderQuery {
            limit: 3,
            ..OrderQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page1.orders.iter().map(Order::id).collect::<Vec<_>>(),
        newest_first[..3]
    );
    assert_eq!(page1.next, Some(newest_first[2]));
    // Lines come with the page.
    assert_eq!(page1.orders[0].lines().len(), 1);
    let page2 = db
        .store
        .list(&OrderQuery {
            limit: 3,
            before: page1.next,
            ..OrderQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page2.orders.iter().map(Order::id).collect::<Vec<_>>(),
        newest_first[3..6]
    );
    let page3 = db
        .store
        .list(&OrderQuery {
            limit: 3,
            before: page2.next,
            ..OrderQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page3.orders.iter().map(Order::id).collect::<Vec<_>>(),
        newest_first[6..]
    );
    assert_eq!(page3.next, None);

    let even = db
        .store
        .list(&OrderQuery {
            customer_id: Some(checkout_domain::CustomerId::parse("cust-even").unwrap()),
            limit: 50,
            ..OrderQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(even.orders.len(), 3);
    assert!(
        even.orders
            .iter()
            .all(|o| o.customer_id().as_str() == "cust-even")
    );
    assert_eq!(even.next, None);

    let validating = db
        .store
        .list(&OrderQuery {
            state: Some(OrderState::Validating),
            limit: 50,
            ..OrderQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        validating.orders.iter().map(Order::id).collect::<Vec<_>>(),
        vec![ids[6], ids[5]]
    );
    let odd_validating = db
        .store
        .list(&OrderQuery {
            customer_id: Some(checkout_domain::CustomerId::parse("cust-odd").unwrap()),
            state: Some(OrderState::Validating),
            limit: 50,
            before: None,
        })
        .await
        .unwrap();
    assert_eq!(
        odd_validating
            .orders
            .iter()
            .map(Order::id)
            .collect::<Vec<_>>(),
        vec![ids[6]]
    );
});

both!(audit_trail_is_oldest_first, |db| {
    let (mut order, created) = placed(order_id(1), "cust-1", &[("bk-1", 1)]);
    let validating = order
        .transition(OrderState::Validating, ctx("validate", t0()))
        .unwrap();
    db.store
        .create(&order, &[created.clone(), validating.clone()])
        .await
        .unwrap();
    let cancelled = advance(&db, &mut order, OrderState::Cancelled).await;
    let trail = db.store.audit_trail(order.id()).await.unwrap();
    assert_eq!(
        trail,
        vec![created.audit, validating.audit, cancelled.audit]
    );
    assert_eq!(trail[0].previous_state, None);
    assert_eq!(db.count("outbox").await, 4);
    assert!(matches!(
        db.store.audit_trail(order_id(77)).await,
        Err(RepositoryError::NotFound)
    ));
});

// A save never changes the customer (it is not assigned, so that SQLite
// leaves the customer index alone): one for another customer than the
// stored one is refused like a stale one and changes nothing.
both!(a_save_for_another_customer_is_refused, |db| {
    let stored = create_placed(&db, 1, "cust-1").await;
    let (mut other, _) = placed(stored.id(), "cust-2", &[("bk-1", 1)]);
    assert_eq!(other.version(), stored.version());
    let expected = other.version();
    let change = other
        .transition(OrderState::Validating, ctx("step", t0() + secs(1)))
        .unwrap();
    let refused = db
        .store
        .save(&other, expected, std::slice::from_ref(&change))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, RepositoryError::Conflict(id) if id == stored.id()),
        "{refused:?}"
    );
    let got = db.store.get(stored.id()).await.unwrap();
    assert_same_order(&got, &stored);
    assert_eq!(db.count("audit_log").await, 1);
});

both!(two_concurrent_saves_from_one_version_one_wins, |db| {
    for seq in 1..=10u64 {
        let order = create_placed(&db, seq, "cust-1").await;
        let expected = order.version();
        let mut a = order.clone();
        let mut b = order.clone();
        let ca = a
            .transition(OrderState::Validating, ctx("a", t0()))
            .unwrap();
        let cb = b.transition(OrderState::Cancelled, ctx("b", t0())).unwrap();
        let (s1, s2) = (db.store.clone(), db.store.clone());
        let (ra, rb) = tokio::join!(
            tokio::spawn(async move { s1.save(&a, expected, &[ca]).await }),
            tokio::spawn(async move { s2.save(&b, expected, &[cb]).await }),
        );
        let results = [ra.unwrap(), rb.unwrap()];
        let wins = results.iter().filter(|r| r.is_ok()).count();
        let conflicts = results
            .iter()
            .filter(|r| matches!(r, Err(RepositoryError::Conflict(_))))
            .count();
        assert_eq!((wins, conflicts), (1, 1), "{results:?}");
        assert_eq!(db.store.audit_trail(order.id()).await.unwrap().len(), 2);
    }
});

both!(many_concurrent_writers_never_fail_busy, |db| {
    // 64 callers creating and saving at once: the single SQLite writer
    // queues them instead of answering SQLITE_BUSY.
    let mut tasks = Vec::new();
    for seq in 1..=64u64 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            let (mut order, change) =
                placed(order_id(seq), "cust-busy", &[("bk-1", 1), ("bk-2", 2)]);
            store.create(&order, &[change]).await?;
            let expected = order.version();
            let change = order
                .transition(OrderState::Validating, ctx("v", t0()))
                .unwrap();
            store.save(&order, expected, &[change]).await?;
            store.get(order.id()).await.map(|_| ())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(db.count("orders").await, 64);
    assert_eq!(db.count("audit_log").await, 128);
});

both!(worker_queries, |db| {
    // Stale processing_payment orders, oldest change first.
    let mut a = full_order(order_id(1), OrderState::ProcessingPayment);
    db.store.create(&a, &[]).await.unwrap();
    let b = full_order(order_id(2), OrderState::ProcessingPayment);
    db.store.create(&b, &[]).await.unwrap();
    let stale = db
        .store
        .find_stale(OrderState::ProcessingPayment, t0() + secs(60), 10)
        .await
        .unwrap();
    assert_eq!(stale.len(), 2);
    assert!(
        db.store
            .find_stale(OrderState::ProcessingPayment, t0(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        db.store
            .find_stale(OrderState::ProcessingPayment, t0() + secs(60), 1)
            .await
            .unwrap()
            .len(),
        1
    );

    // Expired active reservations, only in the given states.
    let expected = a.version();
    a.set_reservation_status(ReservationStatus::Active, t0() + secs(10));
    db.store.save(&a, expected, &[]).await.unwrap();
    let expiry = a.reservation().unwrap().expires_at;
    let expired = db
        .store
        .find_expired_reservations(&[OrderState::ProcessingPayment], expiry + secs(1), 10)
        .await
        .unwrap();
    assert_eq!(
        expired.iter().map(Order::id).collect::<Vec<_>>(),
        vec![a.id()]
    );
    assert!(
        db.store
            .find_expired_reservations(&[OrderState::ProcessingPayment], expiry, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        db.store
            .find_expired_reservations(&[OrderState::Reserved], expiry + secs(1), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Paid orders whose confirmation is pending.
    let mut c = full_order(order_id(3), OrderState::Paid);
    db.store.create(&c, &[]).await.unwrap();
    assert!(
        db.store
            .find_unconfirmed_reservations(10)
            .await
            .unwrap()
            .is_empty()
    );
    let expected = c.version();
    c.set_reservation_status(ReservationStatus::ConfirmPending, t0() + secs(10));
    db.store.save(&c, expected, &[]).await.unwrap();
    let pending = db.store.find_unconfirmed_reservations(10).await.unwrap();
    assert_eq!(
        pending.iter().map(Order::id).collect::<Vec<_>>(),
        vec![c.id()]
    );
});

both!(webhook_events_are_recorded_once, |db| {
    assert!(
        db.store
            .record_webhook_event("stripe", "evt_1", "payment_intent.succeeded", t0())
            .await
            .unwrap()
    );
    assert!(
        !db.store
            .record_webhook_event("stripe", "evt_1", "payment_intent.succeeded", t0())
            .await
            .unwrap()
    );
    assert!(
        db.store
            .record_webhook_event("other", "evt_1", "x", t0())
            .await
            .unwrap()
    );
    assert_eq!(db.count("webhook_inbox").await, 2);
});

both!(refunds_never_exceed_the_captured_amount, |db| {
    let order = full_order(order_id(1), OrderState::Paid);
    db.store.create(&order, &[]).await.unwrap();
    let captured = usd("100.00");
    // 25 concurrent refunds of 10.00 against 100.00: exactly 10 fit.
    let mut tasks = Vec::new();
    for _ in 0..25 {
        let store = db.store.clone();
        let refund = NewRefund {
            id: RefundId::from_uuid(Uuid::now_v7()),
            order_id: order.id(),
            amount: usd("10.00"),
            reason: Some("damaged".into()),
            created_at: t0(),
        };
        tasks.push(tokio::spawn(async move {
            (refund.id, store.begin_refund(&refund, captured).await)
        }));
    }
    let mut ok = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (id, Ok(())) => ok.push(id),
            (_, Err(RepositoryError::RefundExceedsPayment { remaining })) => {
                assert!(remaining < usd("10.00"))
            }
            (_, Err(e)) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok.len(), 10);
    assert_eq!(
        db.scalar("SELECT CAST(SUM(amount_minor) AS BIGINT) FROM refunds")
            .await,
        10_000
    );

    // A failed refund no longer counts.
    db.store
        .fail_refund(ok[0], "provider said no")
        .await
        .unwrap();
    assert_eq!(
        db.store.get_refund(ok[0]).await.unwrap().status,
        RefundRecordStatus::Failed
    );
    let again = NewRefund {
        id: RefundId::from_uuid(Uuid::now_v7()),
        order_id: order.id(),
        amount: usd("10.01"),
        reason: None,
        created_at: t0(),
    };
    match db.store.begin_refund(&again, captured).await {
        Err(RepositoryError::RefundExceedsPayment { remaining }) => {
            assert_eq!(remaining, usd("10.00"))
        }
        other => panic!("{other:?}"),
    }

    // Completing a refund saves the order's change in the same transaction.
    let mut paid = db.store.get(order.id()).await.unwrap();
    let expected = paid.version();
    let change = paid
        .record_refund(ok[1], usd("10.00"), ctx("refund", t0() + secs(9)))
        .unwrap();
    let done = db
        .store
        .complete_refund(
            ok[1],
            "re_1",
            &paid,
            expected,
            std::slice::from_ref(&change),
        )
        .await
        .unwrap();
    assert_eq!(done.status, RefundRecordStatus::Succeeded);
    assert_eq!(done.provider_refund_id.as_deref(), Some("re_1"));
    assert_eq!(done.amount, usd("10.00"));
    assert_eq!(
        db.store.get(order.id()).await.unwrap().refunded_amount(),
        paid.refunded_amount()
    );
    // A stale completion writes nothing, not even the refund's status.
    let err = db
        .store
        .complete_refund(ok[2], "re_2", &paid, expected, &[change])
        .await
        .unwrap_err();
    assert!(matches!(err, RepositoryError::Conflict(_)));
    assert_eq!(
        db.store.get_refund(ok[2]).await.unwrap().status,
        RefundRecordStatus::Pending
    );

    assert!(matches!(
        db.store
            .get_refund(RefundId::from_uuid(Uuid::now_v7()))
            .await,
        Err(RepositoryError::NotFound)
    ));
    assert!(matches!(
        db.store
            .fail_refund(RefundId::from_uuid(Uuid::now_v7()), "x")
            .await,
        Err(RepositoryError::NotFound)
    ));
    let orphan = NewRefund {
        order_id: order_id(404),
        ..again
    };
    assert!(matches!(
        db.store.begin_refund(&orphan, captured).await,
        Err(RepositoryError::NotFound)
    ));
});

both!(idempotency_key_states, |db| {
    let key = IdempotencyKey::parse("key-1").unwrap();
    let later = t0() + secs(30);
    assert_eq!(
        db.store
            .begin("cust-1", &key, "fp-a", t0(), t0() - secs(60))
            .await
            .unwrap(),
        IdempotencyBegin::Started
    );
    assert_eq!(
        db.store
            .begin("cust-1", &key, "fp-a", later, t0() - secs(60))
            .await
            .unwrap(),
        IdempotencyBegin::InFlight
    );
    assert_eq!(
        db.store
            .begin("cust-1", &key, "fp-b", later, t0() - secs(60))
            .await
            .unwrap(),
        IdempotencyBegin::Mismatch
    );
    // Another scope is another key.
    assert_eq!(
        db.store
            .begin("cust-2", &key, "fp-b", t0(), t0())
            .await
            .unwrap(),
        IdempotencyBegin::Started
    );

    let response = StoredResponse {
        status: 201,
        headers: vec![
            ("Location".into(), "/orders/1".into()),
            ("Content-Type".into(), "application/json".into()),
        ],
        body: b"{\"id\":1}".to_vec(),
    };
    db.store.complete("cust-1", &key, &response).await.unwrap();
    assert_eq!(
        db.store
            .begin("cust-1", &key, "fp-a", later, later)
            .await
            .unwrap(),
        IdempotencyBegin::Replay(response)
    );
    // Abandon leaves a completed key alone…
    db.store.abandon("cust-1", &key).await.unwrap();
    assert!(matches!(
        db.store
            .begin("cust-1", &key, "fp-a", later, later)
            .await
            .unwrap(),
        IdempotencyBegin::Replay(_)
    ));
    // …and frees an in-flight one.
    db.store.abandon("cust-2", &key).await.unwrap();
    assert_eq!(
        db.store
            .begin("cust-2", &key, "fp-c", later, t0())
            .await
            .unwrap(),
        IdempotencyBegin::Started
    );

    // A stale in-flight claim is taken over, once.
    let stale_key = IdempotencyKey::parse("key-2").unwrap();
    assert_eq!(
        db.store
            .begin("cust-1", &stale_key, "fp", t0(), t0() - secs(60))
            .await
            .unwrap(),
        IdempotencyBegin::Started
    );
    let stale_before = t0() + secs(1);
    let (s1, s2) = (db.store.clone(), db.store.clone());
    let (k1, k2) = (stale_key.clone(), stale_key.clone());
    let (r1, r2) = tokio::join!(
        tokio::spawn(async move {
            s1.begin("cust-1", &k1, "fp", later, stale_before)
                .await
                .unwrap()
        }),
        tokio::spawn(async move {
            s2.begin("cust-1", &k2, "fp", later, stale_before)
                .await
                .unwrap()
        }),
    );
    let mut outcomes = vec![r1.unwrap(), r2.unwrap()];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(
        outcomes,
        vec![IdempotencyBegin::InFlight, IdempotencyBegin::Started]
    );

    // Purge by age.
    assert_eq!(db.store.purge(t0() + secs(1)).await.unwrap(), 2);
    assert_eq!(db.count("idempotency_keys").await, 1);
});

/// Creates an order and moves it through `n` more transitions, so it has
/// `n + 1` state events (plus specific ones).
async fn order_with_events(db: &TestDb, seq: u64) -> Order {
    let mut order = create_placed(db, seq, "cust-outbox").await;
    advance(db, &mut order, OrderState::Validating).await;
    advance(db, &mut order, OrderState::Cancelled).await;
    order
}

both!(a_mark_publishes_exactly_the_events_it_names, |db| {
    let a = order_with_events(&db, 1).await; // events 1..4
    let b = order_with_events(&db, 2).await;
    let now = t0() + secs(100);
    assert_eq!(db.store.claim_batch(100, now, 30).await.unwrap().len(), 8);
    let key = |order: &Order, sequence| OutboxKey {
        order_id: order.id(),
        sequence,
    };
    // Runs with gaps, named in no order: a's 1, 2 and 4, b's 2 and 3.
    let marked = [key(&a, 4), key(&b, 3), key(&a, 1), key(&b, 2), key(&a, 2)];
    db.store.mark_published(&marked, now).await.unwrap();
    assert_eq!(db.store.stats(now).await.unwrap().pending, 3);
    // Once the claim's lease is over, what is left comes again.
    let mut left: Vec<_> = db
        .store
        .claim_batch(100, now + secs(31), 30)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.order_id, r.sequence))
        .collect();
    left.sort_unstable();
    let mut expected = vec![(a.id(), 3), (b.id(), 1), (b.id(), 4)];
    expected.sort_unstable();
    assert_eq!(left, expected);
});

both!(
    outbox_claims_in_order_and_respects_leases_retries_and_parking,
    |db| {
        let a = order_with_events(&db, 1).await; // events 1, 2, 3 (+ order.cancelled 4)
        let b = order_with_events(&db, 2).await;
        let per_order = db.count("outbox").await / 2;
        assert_eq!(per_order, 4);
        let now = t0() + secs(100);

        let stats = db.store.stats(now).await.unwrap();
        assert_eq!((stats.pending, stats.parked), (8, 0));
        assert!(stats.oldest_pending_seconds >= 99.0);

        // The first three: a's events 1..3, in order.
        let batch = db.store.claim_batch(3, now, 30).await.unwrap();
        let got: Vec<_> = batch.iter().map(|r| (r.order_id, r.sequence)).collect();
        assert_eq!(got, vec![(a.id(), 1), (a.id(), 2), (a.id(), 3)]);
        assert!(batch[0].payload["type"] == "order.state_changed");
        // a's 4th event waits behind the claimed ones; b is free.
        let batch2 = db.store.claim_batch(10, now, 30).await.unwrap();
        assert!(batch2.iter().all(|r| r.order_id == b.id()));
        assert_eq!(
            batch2.iter().map(|r| r.sequence).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert!(db.store.claim_batch(10, now, 30).await.unwrap().is_empty());

        // Publish a's first two; the third fails and is retried later.
        db.store
            .mark_published(&[batch[0].key(), batch[1].key()], now)
            .await
            .unwrap();
        db.store
            .record_failure(batch[2].key(), "broker down", false, now + secs(60))
            .await
            .unwrap();
        // Not before its retry time, and a's 4th stays behind it.
        assert!(
            db.store
                .claim_batch(10, now + secs(1), 30)
                .await
                .unwrap()
                .iter()
                .all(|r| r.order_id != a.id())
        );
        let retry = db.store.claim_batch(10, now + secs(61), 30).await.unwrap();
        let got: Vec<_> = retry
            .iter()
            .filter(|r| r.order_id == a.id())
            .map(|r| (r.sequence, r.attempts))
            .collect();
        assert_eq!(got, vec![(3, 1), (4, 0)]);

        // Parking the 3rd lets the 4th through alone once its lease is over.
        db.store
            .record_failure(retry[0].key(), "poison", true, now + secs(61))
            .await
            .unwrap();
        let after_park = db.store.claim_batch(10, now + secs(200), 30).await.unwrap();
        let a_events: Vec<_> = after_park
            .iter()
            .filter(|r| r.order_id == a.id())
            .map(|r| r.sequence)
            .collect();
        assert_eq!(a_events, vec![4]);
        let stats = db.store.stats(now + secs(200)).await.unwrap();
        assert_eq!(stats.parked, 1);
        assert_eq!(stats.pending, 5);

        // Everything published, then purged by age.
        let ids: Vec<_> = after_park.iter().map(OutboxRecord::key).collect();
        db.store
            .mark_published(&ids, now + secs(200))
            .await
            .unwrap();
        assert_eq!(db.store.stats(now + secs(200)).await.unwrap().pending, 0);
        assert_eq!(
            db.store
                .stats(now + secs(200))
                .await
                .unwrap()
                .oldest_pending_seconds,
            0.0
        );
        assert_eq!(db.store.purge_published(now + secs(1)).await.unwrap(), 2);
        assert_eq!(db.store.purge_published(now + secs(201)).await.unwrap(), 5);
        assert_eq!(db.count("outbox").await, 1); // the parked one stays
        assert!(matches!(
            db.store
                .record_failure(
                    OutboxKey {
                        order_id: a.id(),
                        sequence: 99,
                    },
                    "x",
                    false,
                    now
                )
                .await,
            Err(RepositoryError::NotFound)
        ));
    }
);

// A claimed event is the event as stored: id, type, payload and time. On
// SQLite a claim reads its whole batch as one JSON array, so this also
// covers a payload that needs escaping there (quotes, backslashes, control
// characters and text beyond ASCII).
both!(claimed_events_are_the_stored_events, |db| {
    let backend = db.raw.get_database_backend();
    let a = order_with_events(&db, 1).await;
    let b = order_with_events(&db, 2).await;
    let note = "quote \" backslash \\ tab \t ü 📚";
    let payload = serde_json::json!({"type": "order.state_changed", "note": note});
    // `$n` placeholders: both drivers take them.
    let update = sea_orm::Statement::from_sql_and_values(
        backend,
        "UPDATE outbox SET payload = $1 WHERE order_id = $2 AND sequence = 2",
        [payload.to_string().into(), a.id().as_uuid().into()],
    );
    assert_eq!(db.raw.execute_raw(update).await.unwrap().rows_affected(), 1);

    let claimed = db
        .store
        .claim_batch(100, t0() + secs(100), 30)
        .await
        .unwrap();
    let stored = db
        .raw
        .query_all_raw(sea_orm::Statement::from_string(
            backend,
            "SELECT order_id, sequence, id, event_type, payload, occurred_at, attempts \
             FROM outbox ORDER BY order_id, sequence",
        ))
        .await
        .unwrap();
    assert_eq!(claimed.len(), stored.len());
    for (record, row) in claimed.iter().zip(&stored) {
        let order_id: Uuid = row.try_get_by_index(0).unwrap();
        let sequence: i64 = row.try_get_by_index(1).unwrap();
        let id: Uuid = row.try_get_by_index(2).unwrap();
        let event_type: String = row.try_get_by_index(3).unwrap();
        let stored_payload: String = row.try_get_by_index(4).unwrap();
        let occurred_at: i64 = row.try_get_by_index(5).unwrap();
        let attempts: i64 = row.try_get_by_index(6).unwrap();
        assert_eq!(
            (record.order_id.as_uuid(), i64::from(record.sequence)),
            (order_id, sequence)
        );
        assert_eq!(record.id.as_uuid(), id);
        assert_eq!(record.event_type, event_type);
        assert_eq!(
            record.payload,
            serde_json::from_str::<serde_json::Value>(&stored_payload).unwrap()
        );
        assert_eq!(
            i64::try_from(record.occurred_at.unix_timestamp_nanos() / 1_000).unwrap(),
            occurred_at
        );
        assert_eq!(i64::from(record.attempts), attempts);
    }
    let escaped = claimed
        .iter()
        .find(|r| r.order_id == a.id() && r.sequence == 2)
        .unwrap();
    assert_eq!(escaped.payload["note"], note);
    assert!(claimed.iter().any(|r| r.order_id == b.id()));
});

both!(concurrent_claimers_never_share_an_event_or_an_order, |db| {
    for seq in 1..=20u64 {
        order_with_events(&db, seq).await;
    }
    let store = Arc::new(db.store.clone());
    let now = t0() + secs(100);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.claim_batch(7, now, 60).await.unwrap()
        }));
    }
    let mut seen_events = std::collections::HashSet::new();
    let mut owner = std::collections::HashMap::new();
    for (i, t) in tasks.into_iter().enumerate() {
        for r in t.await.unwrap() {
            assert!(seen_events.insert(r.id), "event claimed twice");
            let o = owner.entry(r.order_id).or_insert(i);
            assert_eq!(*o, i, "two claimers hold events of one order");
        }
    }
    assert!(!seen_events.is_empty());
});

both!(migrations_go_up_down_and_up_again, |db| {
    let conn = sea_orm::Database::connect(db.url.as_str()).await.unwrap();
    // Already up (the store migrated): up again is a no-op.
    Migrator::up(&conn, None).await.unwrap();
    let listing = match db.backend() {
        checkout_store_seaorm::Backend::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'seaql_migrations'"
        }
        checkout_store_seaorm::Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> 'seaql_migrations'"
        }
    };
    assert_eq!(db.scalar(listing).await, 12);
    Migrator::down(&conn, None).await.unwrap();
    assert_eq!(db.scalar(listing).await, 0);
    Migrator::up(&conn, None).await.unwrap();
    assert_eq!(db.scalar(listing).await, 12);
    conn.close().await.unwrap();
    // The schema works after the round trip.
    create_placed(&db, 1, "cust-1").await;
});

/// How many indexes are named `name`.
async fn indexes_named(db: &TestDb, name: &str) -> i64 {
    let sql = match db.backend() {
        checkout_store_seaorm::Backend::Sqlite => {
            format!("SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index' AND name = '{name}'")
        }
        checkout_store_seaorm::Backend::Postgres => {
            format!("SELECT COUNT(*) FROM pg_indexes WHERE indexname = '{name}'")
        }
    };
    db.scalar(&sql).await
}

both!(
    open_reservation_indexes_may_be_built_before_their_migration,
    |db| {
        let conn = sea_orm::Database::connect(db.url.as_str()).await.unwrap();
        // Back to just before the indexes' migration.
        let migrations = Migrator::migrations();
        let at = migrations
            .iter()
            .position(|m| m.name() == "m20261206_000010_open_reservation_indexes")
            .unwrap();
        let steps = u32::try_from(migrations.len() - at).unwrap();
        Migrator::down(&conn, Some(steps)).await.unwrap();
        assert_eq!(indexes_named(&db, "orders_reservation").await, 1);
        assert_eq!(indexes_named(&db, "orders_open_reservation").await, 0);
        // An operator builds one of the new indexes first, without blocking
        // writes (CONCURRENTLY: PostgreSQL only, and outside a transaction).
        let concurrently = match db.backend() {
            checkout_store_seaorm::Backend::Sqlite => "",
            checkout_store_seaorm::Backend::Postgres => "CONCURRENTLY",
        };
        db.raw
            .execute_unprepared(&format!(
                "CREATE INDEX {concurrently} orders_open_reservation ON orders \
             (reservation_status, reservation_expires_at) \
             WHERE reservation_status = 'active' OR reservation_status = 'confirm_pending'"
            ))
            .await
            .unwrap();
        // The migration then makes only what is missing.
        Migrator::up(&conn, None).await.unwrap();
        conn.close().await.unwrap();
        for (name, count) in [
            ("orders_reservation", 0),
            ("orders_open_reservation", 1),
            ("reservations_status_expiry", 0),
            ("reservations_active_expiry", 1),
        ] {
            assert_eq!(indexes_named(&db, name).await, count, "{name}");
        }
    }
);

/// How many of `columns` make up the outbox's primary key.
async fn outbox_key_columns(db: &TestDb, columns: &str) -> i64 {
    let sql = match db.backend() {
        checkout_store_seaorm::Backend::Sqlite => format!(
            "SELECT COUNT(*) FROM pragma_table_info('outbox') WHERE pk > 0 AND name IN ({columns})"
        ),
        checkout_store_seaorm::Backend::Postgres => format!(
            "SELECT COUNT(*) FROM pg_index i JOIN pg_attribute a \
             ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = 'outbox'::regclass AND i.indisprimary AND a.attname IN ({columns})"
        ),
    };
    db.scalar(&sql).await
}

both!(outbox_key_migration_keeps_every_event, |db| {
    let first = create_placed(&db, 1, "cust-1").await;
    let events = db.count("outbox").await;
    assert!(events > 0);
    assert_eq!(outbox_key_columns(&db, "'order_id', 'sequence'").await, 2);
    assert_eq!(outbox_key_columns(&db, "'id'").await, 0);
    let conn = sea_orm::Database::connect(db.url.as_str()).await.unwrap();

    // Back to the id as the key (undoing the later migrations first), and
    // forward again: nothing is lost.
    let from_the_key = u32::try_from(Migrator::migrations().len() - 4).unwrap();
    Migrator::down(&conn, Some(from_the_key)).await.unwrap();
    assert_eq!(outbox_key_columns(&db, "'id'").await, 1);
    assert_eq!(db.count("outbox").await, events);
    Migrator::up(&conn, None).await.unwrap();
    conn.close().await.unwrap();
    assert_eq!(outbox_key_columns(&db, "'order_id', 'sequence'").await, 2);
    assert_eq!(outbox_key_columns(&db, "'id'").await, 0);
    assert_eq!(db.count("outbox").await, events);

    // The events from before, and new ones, are relayed as usual; a second
    // event of one order at the same sequence is still refused.
    let second = create_placed(&db, 2, "cust-2").await;
    let batch = db.store.claim_batch(100, t0(), 30).await.unwrap();
    assert_eq!(
        batch.iter().filter(|r| r.order_id == first.id()).count() as i64,
        events
    );
    assert!(batch.iter().any(|r| r.order_id == second.id()));
    let keys: Vec<_> = batch.iter().map(OutboxRecord::key).collect();
    db.store.mark_published(&keys, t0()).await.unwrap();
    assert_eq!(db.store.stats(t0()).await.unwrap().pending, 0);
    let duplicate = db
        .raw
        .execute_unprepared(
            "INSERT INTO outbox (id, order_id, sequence, event_type, payload, occurred_at) \
             SELECT id, order_id, sequence, event_type, payload, occurred_at FROM outbox \
             WHERE sequence = 1",
        )
        .await;
    let refused = duplicate.expect_err("a second event at the same sequence");
    assert!(
        refused.to_string().to_lowercase().contains("unique"),
        "{refused}"
    );
});

/// Each event's row version in the outbox, by (order, sequence).
async fn event_versions(db: &TestDb) -> std::collections::BTreeMap<(Uuid, i64), String> {
    let rows = db
        .raw
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT order_id, sequence, ctid::text || '/' || xmin::text FROM outbox",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            let key = (
                r.try_get_by_index(0).unwrap(),
                r.try_get_by_index(1).unwrap(),
            );
            (key, r.try_get_by_index(2).unwrap())
        })
        .collect()
}

/// Handing events out writes none of them: each keeps its row version
/// (place and creating transaction) until it is marked published. Every
/// event was written twice after its insert while each had a lease of its
/// own.
#[tokio::test]
async fn postgres_hands_events_out_without_writing_them() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    for seq in 1..=50 {
        create_placed(&db, seq, "cust-pages").await;
    }
    let before = event_versions(&db).await;
    let claimed = db.store.claim_batch(1000, t0(), 30).await.unwrap();
    assert_eq!(claimed.len(), before.len());
    assert_eq!(event_versions(&db).await, before);
    db.finish().await;
}

both!(one_relay_instance_at_a_time_works_the_outbox, |db| {
    use checkout_store_seaorm::{SeaOrmStore, StoreOptions};
    let a = order_with_events(&db, 1).await;
    let other = SeaOrmStore::connect(&db.url, StoreOptions::default())
        .await
        .unwrap();
    let now = t0() + secs(100);

    // The first to find work takes the outbox's lease for 30 s…
    let first = db.store.claim_batch(10, now, 30).await.unwrap();
    assert_eq!(first.len(), 4);
    assert!(first.iter().all(|r| r.order_id == a.id()));
    // …and the other instance gets nothing while it holds, nor does this
    // store hand the same events out twice.
    assert!(
        other
            .claim_batch(10, now + secs(5), 30)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        db.store
            .claim_batch(10, now + secs(5), 30)
            .await
            .unwrap()
            .is_empty()
    );
    // Working on, the holder renews it once half has run.
    db.store
        .mark_published(&[first[0].key(), first[1].key()], now + secs(20))
        .await
        .unwrap();
    let b = order_with_events(&db, 2).await;
    let renewed = db.store.claim_batch(10, now + secs(20), 30).await.unwrap();
    assert!(renewed.iter().all(|r| r.order_id == b.id()), "{renewed:?}");
    assert!(
        other
            .claim_batch(10, now + secs(45), 30)
            .await
            .unwrap()
            .is_empty()
    );

    // A holder that stops renewing loses the outbox when its lease lapses:
    // the other instance then gets what was never published.
    let taken_over = other.claim_batch(10, now + secs(51), 30).await.unwrap();
    let mut keys: Vec<(Uuid, u32)> = taken_over
        .iter()
        .map(|r| (r.order_id.as_uuid(), r.sequence))
        .collect();
    keys.sort();
    let mut expected: Vec<(Uuid, u32)> = [(a.id(), 3), (a.id(), 4)]
        .into_iter()
        .chain((1..=4).map(|s| (b.id(), s)))
        .map(|(o, s)| (o.as_uuid(), s))
        .collect();
    expected.sort();
    assert_eq!(keys, expected);
    assert!(
        db.store
            .claim_batch(10, now + secs(52), 30)
            .await
            .unwrap()
            .is_empty()
    );
    other.close().await.unwrap();
});

#[tokio::test]
async fn in_memory_sqlite_and_bad_urls() {
    use checkout_store_seaorm::{SeaOrmStore, StoreError, StoreOptions};
    let store = SeaOrmStore::connect("sqlite::memory:", StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    assert!(store.ping().await);
    let (order, change) = placed(order_id(1), "cust-mem", &[("bk-1", 1)]);
    store.create(&order, &[change]).await.unwrap();
    assert_eq!(store.get(order.id()).await.unwrap().id(), order.id());
    // A file URL with `mode=rwc`, as the binary's default configuration
    // may spell it: created when missing, then read through the read pool.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/new.db?mode=rwc", dir.path().display());
    let file = SeaOrmStore::connect(&url, StoreOptions::default())
        .await
        .unwrap();
    file.migrate().await.unwrap();
    let (order, change) = placed(order_id(2), "cust-file", &[("bk-1", 1)]);
    file.create(&order, &[change]).await.unwrap();
    assert_eq!(file.get(order.id()).await.unwrap().id(), order.id());
    assert!(file.ping().await);
    file.close().await.unwrap();
    assert!(matches!(
        SeaOrmStore::connect("mysql://localhost/db", StoreOptions::default()).await,
        Err(StoreError::UnsupportedUrl(s)) if s == "mysql"
    ));
}

#[tokio::test]
async fn postgres_migrations_are_serialised_between_instances() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    // Two instances migrating an empty database at once.
    Migrator::down(&db.raw, None).await.unwrap();
    let a = checkout_store_seaorm::SeaOrmStore::connect(&db.url, Default::default())
        .await
        .unwrap();
    let b = checkout_store_seaorm::SeaOrmStore::connect(&db.url, Default::default())
        .await
        .unwrap();
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.unwrap();
    rb.unwrap();
    assert_eq!(
        db.count("seaql_migrations").await,
        Migrator::migrations().len() as i64
    );
    db.finish().await;
}

// The database itself refuses values the domain never writes, on both
// backends (table CHECK constraints on SQLite; on PostgreSQL, since
// m20261203_000007_column_domains, domains for the one-column rules): an
// invented state, a negative amount, a version of 0, a line of 1,001
// copies, a negative price, a two-letter currency. Valid values pass.
both!(the_database_refuses_what_the_domain_never_writes, |db| {
    let order = create_placed(&db, 1, "cust-1").await;
    stock(&db, "bk-9", "12.50", 3).await;
    for bad in [
        "UPDATE orders SET state = 'lost'",
        "UPDATE orders SET shipping_minor = -1",
        "UPDATE orders SET version = 0",
        "UPDATE order_items SET quantity = 1001",
        "UPDATE stock SET price_minor = -5",
        "UPDATE stock SET currency = 'US'",
    ] {
        let err = db.raw.execute_unprepared(bad).await.unwrap_err();
        assert!(
            err.to_string().to_lowercase().contains("check constraint"),
            "{bad}: {err}"
        );
    }
    for good in [
        "UPDATE orders SET shipping_minor = 0",
        "UPDATE order_items SET quantity = 1000",
        "UPDATE stock SET price_minor = 0, currency = 'EUR'",
    ] {
        db.raw.execute_unprepared(good).await.unwrap();
    }
    assert_eq!(
        db.store.get(order.id()).await.unwrap().state(),
        order.state()
    );
});
