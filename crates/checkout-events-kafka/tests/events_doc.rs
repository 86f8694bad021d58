//! Keeps `docs/events.md` true: every JSON example in it must be exactly an
//! envelope that the domain produces, and every event type must have one.
//!
//! The events are raised the way the service raises them — an `Order` placed
//! from a cart and moved through its transitions — with fixed ids and clocks,
//! so the examples are stable. When the domain's events change, this test
//! fails and prints every envelope, ready to paste into the doc.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::str::FromStr;

use checkout_domain::{
    BookId, Cart, CartDraft, CartItemDraft, Currency, EventEnvelope, Money, Order, OrderChange,
    OrderId, OrderState, RefundId, TransitionContext, TransitionDetail, UnavailableItem,
};
use rust_decimal::Decimal;
use serde_json::Value;
use time::{Duration, OffsetDateTime, macros::datetime};

const DOC: &str = include_str!("../../../docs/events.md");

const EVENT_TYPES: [&str; 6] = [
    "order.state_changed",
    "order.completed",
    "order.payment_failed",
    "order.inventory_unavailable",
    "order.cancelled",
    "order.refunded",
];

fn usd(amount: &str) -> Money {
    Money::new(Decimal::from_str(amount).unwrap(), Currency::USD).unwrap()
}

fn cart() -> Cart {
    Cart::parse(CartDraft {
        customer_id: Some("cus-1042".into()),
        currency: Some("USD".into()),
        items: vec![
            CartItemDraft {
                book_id: Some("bk-0001".into()),
                quantity: Some(2),
                unit_price: None,
            },
            CartItemDraft {
                book_id: Some("bk-0042".into()),
                quantity: Some(1),
                unit_price: None,
            },
        ],
        tax_rate: Some(Decimal::from_str("0.08").unwrap()),
        shipping_cost: Some(Decimal::from_str("4.99").unwrap()),
        payment_method_token: Some("pm_card_visa".into()),
        ..CartDraft::default()
    })
    .unwrap()
}

/// A clock that ticks one second per step.
struct Steps(OffsetDateTime);

impl Steps {
    fn next(&mut self) -> OffsetDateTime {
        self.0 += Duration::seconds(1);
        self.0
    }
}

fn step(
    order: &mut Order,
    events: &mut Vec<EventEnvelope>,
    to: OrderState,
    reason: &str,
    at: OffsetDateTime,
    detail: TransitionDetail,
) {
    let OrderChange { events: raised, .. } = order
        .transition(to, TransitionContext::new(reason, at).detail(detail))
        .unwrap();
    events.extend(raised);
}

fn place(id: &str, at: OffsetDateTime, events: &mut Vec<EventEnvelope>) -> Order {
    let (order, change) = Order::place(
        OrderId::parse(id).unwrap(),
        &cart(),
        at,
        Some("customer".into()),
    );
    events.extend(change.events);
    order
}

fn reserve_and_price(order: &mut Order, events: &mut Vec<EventEnvelope>, clock: &mut Steps) {
    use OrderState::*;
    use TransitionDetail::None as Plain;
    step(
        order,
        events,
        Validating,
        "Validating order",
        clock.next(),
        Plain,
    );
    order
        .apply_catalog_prices(&[
            (BookId::parse("bk-0001").unwrap(), usd("12.50")),
            (BookId::parse("bk-0042").unwrap(), usd("8.99")),
        ])
        .unwrap();
    step(
        order,
        events,
        Reserved,
        "Inventory reserved",
        clock.next(),
        Plain,
    );
    step(
        order,
        events,
        ProcessingPayment,
        "Charging customer",
        clock.next(),
        Plain,
    );
}

/// Every envelope of three orders: one paid and refunded in two steps, one
/// whose payment was declined, one whose books were out of stock and that was
/// then cancelled.
fn envelopes() -> Vec<EventEnvelope> {
    use OrderState::*;
    use TransitionDetail::None as Plain;
    let mut events = Vec::new();

    let mut clock = Steps(datetime!(2026-03-14 09:26:53 UTC));
    let mut paid = place("01953a4e-7c3b-7d2a-9f10-4b6c1e2d3a40", clock.0, &mut events);
    reserve_and_price(&mut paid, &mut events, &mut clock);
    step(
        &mut paid,
        &mut events,
        Paid,
        "Payment succeeded",
        clock.next(),
        Plain,
    );
    let refund = |n: u128| {
        RefundId::from_uuid(uuid::Uuid::from_u128(
            0x0195_3b10_0000_7000_8000_0000_0000_0000 + n,
        ))
    };
    let change = paid
        .record_refund(
            refund(1),
            usd("12.50"),
            TransitionContext::new("Damaged copy", clock.next()),
        )
        .unwrap();
    events.extend(change.events);
    let rest = paid.refundable().unwrap();
    let change = paid
        .record_refund(
            refund(2),
            rest,
            TransitionContext::new("Customer returned the order", clock.next()),
        )
        .unwrap();
    events.extend(change.events);

    let mut clock = Steps(datetime!(2026-03-14 10:02:11 UTC));
    let mut declined = place("01953a71-0a52-7b8e-8c3d-2f9e6a1b4c50", clock.0, &mut events);
    reserve_and_price(&mut declined, &mut events, &mut clock);
    step(
        &mut declined,
        &mut events,
        PaymentFailed,
        "Payment declined",
        clock.next(),
        TransitionDetail::PaymentFailure {
            code: "card_declined".into(),
            message: "Your card was declined.".into(),
        },
    );

    let mut clock = Steps(datetime!(2026-03-14 11:15:40 UTC));
    let mut out_of_stock = place("01953ab4-5e21-7f6a-b4d2-7c8e9f0a1b60", clock.0, &mut events);
    step(
        &mut out_of_stock,
        &mut events,
        Validating,
        "Validating order",
        clock.next(),
        Plain,
    );
    step(
        &mut out_of_stock,
        &mut events,
        InventoryFailed,
        "Insufficient stock",
        clock.next(),
        TransitionDetail::InventoryFailure {
            code: "insufficient_stock".into(),
            message: "Not enough copies of bk-0001".into(),
            unavailable_items: vec![UnavailableItem {
                book_id: BookId::parse("bk-0001").unwrap(),
                requested: 2,
                available: 1,
            }],
        },
    );
    step(
        &mut out_of_stock,
        &mut events,
        Cancelled,
        "Customer abandoned the order",
        clock.next(),
        Plain,
    );

    events
}

/// The ```json blocks of the doc, parsed.
fn doc_examples() -> Vec<Value> {
    let mut examples = Vec::new();
    let mut current: Option<String> = None;
    for line in DOC.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```json") => current = Some(String::new()),
            (Some(block), l) if l.starts_with("```") => {
                examples.push(serde_json::from_str(block).unwrap_or_else(|e| {
                    panic!("a JSON example in docs/events.md is not valid JSON: {e}\n{block}")
                }));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(
        current.is_none(),
        "docs/events.md has an unclosed ```json block"
    );
    examples
}

fn all_envelopes_pretty(envelopes: &[Value]) -> String {
    envelopes
        .iter()
        .map(|e| serde_json::to_string_pretty(e).unwrap())
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[test]
fn every_json_example_in_the_doc_is_an_envelope_the_domain_produces() {
    let produced: Vec<Value> = envelopes().iter().map(EventEnvelope::to_json).collect();
    let examples = doc_examples();
    assert!(
        !examples.is_empty(),
        "docs/events.md has no ```json example"
    );
    for example in &examples {
        let id = example
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("<no id>");
        let twin = produced.iter().find(|p| p.get("id") == example.get("id"));
        assert!(
            twin == Some(example),
            "the example with id {id} in docs/events.md differs from what the domain produces.\n\
             Expected one of these envelopes:\n{}",
            all_envelopes_pretty(&produced)
        );
    }
}

#[test]
fn the_doc_has_an_example_of_every_event_type() {
    let documented: BTreeSet<String> = doc_examples()
        .iter()
        .filter_map(|e| e.get("type").and_then(Value::as_str).map(str::to_owned))
        .collect();
    for t in EVENT_TYPES {
        assert!(
            documented.contains(t),
            "docs/events.md has no example of {t}"
        );
    }
    // And the domain raises every type the doc lists (the scenario is
    // complete).
    let raised: BTreeSet<&str> = envelopes().iter().map(EventEnvelope::event_type).collect();
    assert_eq!(raised, EVENT_TYPES.into_iter().collect());
}

#[test]
fn envelope_shape_is_the_documented_one() {
    for envelope in envelopes() {
        let json = envelope.to_json();
        let keys: BTreeSet<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["id", "type", "order_id", "sequence", "occurred_at", "data"]),
        );
        // The id is derived from order id + sequence: re-raising keeps it.
        let again = EventEnvelope::new(
            envelope.order_id,
            envelope.sequence,
            envelope.occurred_at,
            envelope.event.clone(),
        );
        assert_eq!(again.id, envelope.id);
        // RFC 3339, UTC.
        assert!(json["occurred_at"].as_str().unwrap().ends_with('Z'));
    }
}

#[test]
fn sequences_count_up_per_order() {
    let events = envelopes();
    let orders: BTreeSet<OrderId> = events.iter().map(|e| e.order_id).collect();
    for order in orders {
        let seqs: Vec<u32> = events
            .iter()
            .filter(|e| e.order_id == order)
            .map(|e| e.sequence)
            .collect();
        assert_eq!(seqs, (1..=seqs.len() as u32).collect::<Vec<_>>());
    }
}
