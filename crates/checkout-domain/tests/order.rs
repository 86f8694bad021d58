//! The order aggregate: transitions, audit entries, events, pricing, refunds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::str::FromStr;

use checkout_domain::*;
use proptest::prelude::*;
use rust_decimal::Decimal;
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

const T0: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

fn cart(price: Option<&str>) -> Cart {
    Cart::parse(CartDraft {
        customer_id: Some("cust-42".into()),
        items: vec![CartItemDraft {
            book_id: Some("bk-0001".into()),
            quantity: Some(2),
            unit_price: price.map(|p| Decimal::from_str(p).unwrap()),
        }],
        tax_rate: Some(Decimal::from_str("0.08").unwrap()),
        shipping_cost: Some(Decimal::from_str("4.99").unwrap()),
        payment_method_token: Some("pm_card_visa".into()),
        ..Default::default()
    })
    .unwrap()
}

fn usd(s: &str) -> Money {
    Money::new(Decimal::from_str(s).unwrap(), Currency::USD).unwrap()
}

fn book() -> BookId {
    BookId::parse("bk-0001").unwrap()
}

fn ctx(reason: &str) -> TransitionContext {
    TransitionContext::new(reason, T0)
}

fn paid_order() -> Order {
    let (mut o, _) = Order::place(OrderId::from_uuid(Uuid::now_v7()), &cart(None), T0, None);
    o.transition(OrderState::Validating, ctx("validate"))
        .unwrap();
    o.apply_catalog_prices(&[(book(), usd("12.50"))]).unwrap();
    o.transition(OrderState::Reserved, ctx("reserved")).unwrap();
    o.transition(OrderState::ProcessingPayment, ctx("pay"))
        .unwrap();
    o.transition(OrderState::Paid, ctx("paid")).unwrap();
    o
}

#[test]
fn placing_records_the_creation() {
    let (order, change) = Order::place(
        OrderId::from_uuid(Uuid::now_v7()),
        &cart(None),
        T0,
        Some("cust-42".into()),
    );
    assert_eq!(order.state(), OrderState::Pending);
    assert_eq!(change.audit.previous_state, None);
    assert_eq!(change.audit.new_state, OrderState::Pending);
    assert_eq!(change.audit.actor.as_deref(), Some("cust-42"));
    assert_eq!(change.events.len(), 1);
    assert_eq!(change.events[0].sequence, 1);
    assert_eq!(change.events[0].event_type(), "order.state_changed");
}

#[test]
fn paying_raises_state_changed_and_completed_with_the_seed_payload() {
    let (mut o, _) = Order::place(
        OrderId::from_uuid(Uuid::now_v7()),
        &cart(Some("12.50")),
        T0,
        None,
    );
    o.transition(OrderState::Validating, ctx("v")).unwrap();
    o.apply_catalog_prices(&[(book(), usd("12.50"))]).unwrap();
    assert_eq!(o.totals().unwrap().total_amount.to_string(), "31.99");
    o.transition(OrderState::Reserved, ctx("r")).unwrap();
    o.transition(OrderState::ProcessingPayment, ctx("p"))
        .unwrap();
    let change = o
        .transition(OrderState::Paid, ctx("Payment confirmed"))
        .unwrap();
    assert_eq!(
        change.audit.previous_state,
        Some(OrderState::ProcessingPayment)
    );
    let types: Vec<_> = change.events.iter().map(|e| e.event_type()).collect();
    assert_eq!(types, ["order.state_changed", "order.completed"]);
    let json = change.events[1].to_json();
    assert_eq!(json["data"]["total_amount"], "31.99");
    assert_eq!(json["data"]["customer_id"], "cust-42");
    assert_eq!(json["data"]["items"][0]["unit_price"], "12.50");
    assert_eq!(json["sequence"], 6);
    // The text an outbox stores is the same document.
    for event in &change.events {
        let text = event.to_json_text().unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            event.to_json()
        );
    }
    // Sequences are consecutive and ids unique.
    assert_eq!(change.events[0].sequence + 1, change.events[1].sequence);
    assert_ne!(change.events[0].id, change.events[1].id);
}

#[test]
fn an_illegal_transition_names_both_states_and_changes_nothing() {
    let (mut o, _) = Order::place(OrderId::from_uuid(Uuid::now_v7()), &cart(None), T0, None);
    let v = o.version();
    let err = o.transition(OrderState::Paid, ctx("skip")).unwrap_err();
    assert_eq!(
        err,
        DomainError::InvalidTransition {
            from: OrderState::Pending,
            to: OrderState::Paid
        }
    );
    assert!(err.to_string().contains("pending") && err.to_string().contains("paid"));
    assert_eq!(o.version(), v);
    assert_eq!(o.state(), OrderState::Pending);
}

#[test]
fn client_prices_must_equal_the_catalog() {
    let (mut o, _) = Order::place(
        OrderId::from_uuid(Uuid::now_v7()),
        &cart(Some("10.00")),
        T0,
        None,
    );
    let err = o
        .apply_catalog_prices(&[(book(), usd("12.50"))])
        .unwrap_err();
    assert_eq!(err.code(), "price_mismatch");
    assert!(o.totals().is_none());
    let err = o.apply_catalog_prices(&[]).unwrap_err();
    assert_eq!(err.code(), "unknown_book");
    let eur = Money::new(Decimal::from(10), Currency::parse("EUR").unwrap()).unwrap();
    assert_eq!(
        o.apply_catalog_prices(&[(book(), eur)]).unwrap_err().code(),
        "currency_mismatch"
    );
}

#[test]
fn partial_then_full_refund() {
    let mut o = paid_order();
    let r1 = RefundId::from_uuid(Uuid::now_v7());
    let change = o.record_refund(r1, usd("5.00"), ctx("partial")).unwrap();
    assert_eq!(o.state(), OrderState::Paid);
    assert_eq!(o.refunded_amount().to_string(), "5.00");
    assert_eq!(change.audit.new_state, OrderState::Paid);
    assert_eq!(change.events[0].event_type(), "order.refunded");
    let too_much = o.record_refund(r1, usd("30.00"), ctx("x")).unwrap_err();
    assert!(matches!(too_much, DomainError::RefundExceedsPayment { .. }));
    let change = o.record_refund(r1, usd("26.99"), ctx("rest")).unwrap();
    assert_eq!(o.state(), OrderState::Refunded);
    let types: Vec<_> = change.events.iter().map(|e| e.event_type()).collect();
    assert_eq!(types, ["order.state_changed", "order.refunded"]);
    assert_eq!(change.events[1].to_json()["data"]["fully_refunded"], true);
}

#[derive(Debug, Clone)]
enum Command {
    Transition(OrderState),
    Price,
    Refund(i64),
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        4 => proptest::sample::select(OrderState::ALL.to_vec()).prop_map(Command::Transition),
        1 => Just(Command::Price),
        1 => (1i64..4000).prop_map(Command::Refund),
    ]
}

proptest! {
    /// Whatever is asked of an order, every state change it makes is in the
    /// table, and the audit trail and event sequence stay consistent.
    #[test]
    fn no_command_sequence_leaves_the_table(commands in proptest::collection::vec(command(), 0..40)) {
        let (mut o, first) = Order::place(OrderId::from_uuid(Uuid::now_v7()), &cart(None), T0, None);
        let mut trail = vec![first.audit];
        let mut last_seq = first.events.last().unwrap().sequence;
        for c in commands {
            let before = o.state();
            let version = o.version();
            let result = match c {
                Command::Transition(to) => o.transition(to, ctx("t")).map(Some),
                Command::Price => o.apply_catalog_prices(&[(book(), usd("12.50"))]).map(|_| None).map_err(|_| DomainError::NotPriced),
                Command::Refund(cents) => o.record_refund(RefundId::from_uuid(Uuid::now_v7()), Money::from_minor_units(cents, Currency::USD).unwrap(), ctx("r")).map(Some),
            };
            match result {
                Ok(Some(change)) => {
                    prop_assert!(o.version() > version);
                    if change.audit.previous_state != Some(change.audit.new_state) {
                        prop_assert!(before.can_transition_to(o.state()), "{before} -> {}", o.state());
                    }
                    prop_assert_eq!(change.audit.previous_state, Some(before));
                    prop_assert_eq!(change.audit.new_state, o.state());
                    for e in &change.events {
                        prop_assert_eq!(e.sequence, last_seq + 1);
                        last_seq = e.sequence;
                    }
                    trail.push(change.audit);
                }
                Ok(None) => {}
                Err(_) => prop_assert_eq!(o.state(), before),
            }
        }
        for w in trail.windows(2) {
            prop_assert_eq!(w[1].previous_state, Some(w[0].new_state));
        }
        prop_assert!(o.refunded_amount() <= o.totals().map(|t| t.total_amount).unwrap_or(Money::zero(Currency::USD)));
    }
}
