//! The domain's hot paths: checking a cart, pricing it, a state transition
//! and minor-unit conversion.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark set-up

use std::hint::black_box;
use std::str::FromStr;

use checkout_domain::*;
use criterion::{Criterion, criterion_group, criterion_main};
use rust_decimal::Decimal;
use time::OffsetDateTime;
use uuid::Uuid;

fn draft() -> CartDraft {
    CartDraft {
        customer_id: Some("cust-42".into()),
        items: (1..=3)
            .map(|i| CartItemDraft {
                book_id: Some(format!("bk-000{i}")),
                quantity: Some(2),
                unit_price: Some(Decimal::from_str("12.50").unwrap()),
            })
            .collect(),
        tax_rate: Some(Decimal::from_str("0.08").unwrap()),
        shipping_cost: Some(Decimal::from_str("4.99").unwrap()),
        payment_method_token: Some("pm_card_visa".into()),
        ..Default::default()
    }
}

fn benches(c: &mut Criterion) {
    c.bench_function("cart_parse_3_lines", |b| {
        b.iter(|| Cart::parse(black_box(draft())).unwrap())
    });

    let price = Money::new(Decimal::from_str("12.50").unwrap(), Currency::USD).unwrap();
    let qty = Quantity::new(2).unwrap();
    let rate = TaxRate::new(Decimal::from_str("0.08").unwrap()).unwrap();
    let ship = Money::new(Decimal::from_str("4.99").unwrap(), Currency::USD).unwrap();
    c.bench_function("price_3_lines", |b| {
        b.iter(|| {
            pricing::price(
                [(&price, qty), (&price, qty), (&price, qty)],
                black_box(rate),
                black_box(ship),
            )
            .unwrap()
        })
    });

    let cart = Cart::parse(draft()).unwrap();
    let now = OffsetDateTime::now_utc();
    c.bench_function("place_and_transition_to_validating", |b| {
        b.iter(|| {
            let (mut o, _) = Order::place(
                OrderId::from_uuid(Uuid::now_v7()),
                black_box(&cart),
                now,
                None,
            );
            o.transition(OrderState::Validating, TransitionContext::new("v", now))
                .unwrap()
        })
    });

    let kwd = Currency::parse("KWD").unwrap();
    let m = Money::new(Decimal::from_str("123.456").unwrap(), kwd).unwrap();
    c.bench_function("money_to_minor_units", |b| {
        b.iter(|| black_box(m).to_minor_units())
    });
    c.bench_function("money_from_minor_units", |b| {
        b.iter(|| Money::from_minor_units(black_box(123_456), kwd).unwrap())
    });
}

criterion_group!(domain, benches);
criterion_main!(domain);
