//! The in-memory order store keeps the repository port's contract as the
//! SQL store does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use checkout_domain::{
    Cart, CartDraft, CartItemDraft, Order, OrderId, OrderState, TransitionContext,
};
use checkout_ports::{OrderRepository, RepositoryError};
use checkout_store_memory::MemoryStore;
use time::OffsetDateTime;

fn placed(id: OrderId, customer: &str) -> Order {
    let cart = Cart::parse(CartDraft {
        customer_id: Some(customer.into()),
        currency: Some("USD".into()),
        items: vec![CartItemDraft {
            book_id: Some("bk-1".into()),
            quantity: Some(1),
            unit_price: None,
        }],
        payment_method_type: Some("card".into()),
        payment_method_token: Some("pm_card_visa".into()),
        ..CartDraft::default()
    })
    .unwrap();
    Order::place(id, &cart, OffsetDateTime::UNIX_EPOCH, None).0
}

/// An order never changes customer: a save for another customer than the
/// stored one is refused like a stale one and changes nothing.
#[tokio::test]
async fn a_save_for_another_customer_is_refused() {
    let store = MemoryStore::default();
    let id = OrderId::parse("0190e4c2-0000-7000-8000-000000000001").unwrap();
    let stored = placed(id, "cust-1");
    store.create(&stored, &[]).await.unwrap();

    let mut other = placed(id, "cust-2");
    let expected = other.version();
    let change = other
        .transition(
            OrderState::Validating,
            TransitionContext::new("step", OffsetDateTime::UNIX_EPOCH),
        )
        .unwrap();
    let refused = store
        .save(&other, expected, std::slice::from_ref(&change))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, RepositoryError::Conflict(c) if c == id),
        "{refused:?}"
    );
    let got = store.get(id).await.unwrap();
    assert_eq!(got.customer_id().as_str(), "cust-1");
    assert_eq!(got.state(), stored.state());
    assert_eq!(got.version(), stored.version());
}
