//! Every branch of the order pipeline against mockall ports: the exact
//! sequence of states written, the reservation calls and the events.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use checkout_app::{AppError, CheckoutSettings, OrderProcessor, PlacedOrder};
use checkout_domain::*;
use checkout_ports::*;
use rust_decimal::Decimal;
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

const T0: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

fn order_id() -> OrderId {
    OrderId::from_uuid(Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001))
}
fn reservation_id() -> ReservationId {
    ReservationId::from_uuid(Uuid::from_u128(2))
}
fn usd(s: &str) -> Money {
    Money::new(Decimal::from_str(s).unwrap(), Currency::USD).unwrap()
}
fn book() -> BookId {
    BookId::parse("bk-0001").unwrap()
}

fn draft(unit_price: Option<&str>) -> CartDraft {
    CartDraft {
        customer_id: Some("cust-42".into()),
        items: vec![CartItemDraft {
            book_id: Some("bk-0001".into()),
            quantity: Some(2),
            unit_price: unit_price.map(|p| Decimal::from_str(p).unwrap()),
        }],
        tax_rate: Some(Decimal::from_str("0.08").unwrap()),
        shipping_cost: Some(Decimal::from_str("4.99").unwrap()),
        payment_method_token: Some("pm_card_visa".into()),
        ..Default::default()
    }
}

/// What the repository was asked to write: (operation, changes).
type Writes = Arc<Mutex<Vec<(&'static str, Vec<OrderChange>)>>>;

struct Harness {
    repo: MockOrderRepository,
    inventory: MockInventoryPort,
    payments: MockPaymentProvider,
    writes: Writes,
    settings: CheckoutSettings,
}

impl Harness {
    /// Ports with no expectations but the provider's name.
    fn bare() -> Self {
        let mut payments = MockPaymentProvider::new();
        payments.expect_name().return_const("mock".to_owned());
        Self {
            repo: MockOrderRepository::new(),
            inventory: MockInventoryPort::new(),
            payments,
            writes: Arc::default(),
            settings: CheckoutSettings::default(),
        }
    }

    /// Ports whose repository records every create.
    fn new() -> Self {
        let mut h = Self::bare();
        let w = h.writes.clone();
        h.repo.expect_create().returning(move |_, changes| {
            w.lock().unwrap().push(("create", changes.to_vec()));
            Ok(())
        });
        h
    }

    fn saves_ok(mut self) -> Self {
        let w = self.writes.clone();
        self.repo.expect_save().returning(move |_, _, changes| {
            w.lock().unwrap().push(("save", changes.to_vec()));
            Ok(())
        });
        self
    }

    fn reserves_at(mut self, price: &str) -> Self {
        let price = usd(price);
        self.inventory
            .expect_reserve()
            .times(1)
            .returning(move |req| {
                assert_eq!(req.order_id, order_id());
                assert_eq!(req.expires_at, T0 + Duration::from_secs(15 * 60));
                Ok(Reservation {
                    id: req.reservation_id,
                    expires_at: req.expires_at,
                    lines: req
                        .lines
                        .iter()
                        .map(|l| ReservationLine {
                            book_id: l.book_id.clone(),
                            quantity: l.quantity,
                            unit_price: price,
                        })
                        .collect(),
                })
            });
        self
    }

    fn creates_intent(mut self) -> Self {
        self.payments
            .expect_create_intent()
            .times(1)
            .returning(|req| {
                assert_eq!(req.amount, usd("31.99"));
                assert_eq!(req.idempotency_key, Payment::idempotency_key(order_id(), 1));
                Ok(intent("pi_1", PaymentStatus::Pending))
            });
        self
    }

    fn processor(self) -> (OrderProcessor, Writes) {
        let payments: Arc<dyn PaymentProvider> = Arc::new(self.payments);
        Self::processor_with(
            self.repo,
            self.inventory,
            payments,
            self.settings,
            self.writes,
        )
    }

    fn processor_with(
        repo: MockOrderRepository,
        inventory: MockInventoryPort,
        payments: Arc<dyn PaymentProvider>,
        settings: CheckoutSettings,
        writes: Writes,
    ) -> (OrderProcessor, Writes) {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(T0);
        let mut ids = MockIdGenerator::new();
        ids.expect_order_id().returning(order_id);
        ids.expect_reservation_id().returning(reservation_id);
        ids.expect_refund_id()
            .returning(|| RefundId::from_uuid(Uuid::from_u128(3)));
        let p = OrderProcessor::new(
            Arc::new(repo),
            Arc::new(inventory),
            payments,
            Arc::new(clock),
            Arc::new(ids),
            settings,
        );
        (p, writes)
    }
}

fn intent(id: &str, status: PaymentStatus) -> PaymentIntent {
    PaymentIntent {
        intent_id: id.into(),
        status,
        transaction_id: (status == PaymentStatus::Succeeded).then(|| "ch_1".to_owned()),
        client_secret: None,
        next_action: None,
        failure_code: None,
        failure_message: None,
    }
}

/// The states written, per write: e.g. `[["pending", "validating"], ["paid"]]`.
fn states(writes: &Writes) -> Vec<(&'static str, Vec<&'static str>)> {
    writes
        .lock()
        .unwrap()
        .iter()
        .map(|(op, ch)| (*op, ch.iter().map(|c| c.audit.new_state.as_str()).collect()))
        .collect()
}

fn event_types(writes: &Writes) -> Vec<&'static str> {
    writes
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, ch)| {
            ch.iter()
                .flat_map(|c| c.events.iter().map(|e| e.event_type()))
        })
        .collect()
}

#[tokio::test]
async fn success_reserves_pays_confirms_and_announces() {
    let mut h = Harness::new()
        .saves_ok()
        .reserves_at("12.50")
        .creates_intent();
    h.payments
        .expect_confirm()
        .times(1)
        .returning(|id, method, key| {
            assert_eq!(id, "pi_1");
            assert_eq!(method.token(), "pm_card_visa");
            assert_eq!(key, Payment::idempotency_key(order_id(), 1));
            Ok(intent("pi_1", PaymentStatus::Succeeded))
        });
    h.inventory
        .expect_confirm()
        .withf(|id| *id == reservation_id())
        .times(1)
        .returning(|_| Ok(()));
    h.inventory.expect_release().never();
    let (p, writes) = h.processor();
    let placed = p
        .place_order_from_draft(draft(Some("12.50")), None)
        .await
        .unwrap();
    let PlacedOrder::Paid(order) = placed else {
        panic!("expected paid, got {placed:?}")
    };
    assert_eq!(order.state(), OrderState::Paid);
    assert_eq!(
        order.reservation().unwrap().status,
        ReservationStatus::Confirmed
    );
    assert_eq!(
        order.payment().unwrap().transaction_id.as_deref(),
        Some("ch_1")
    );
    assert_eq!(
        states(&writes),
        vec![
            (
                "create",
                vec!["pending", "validating", "reserved", "processing_payment"]
            ),
            ("save", vec!["paid"])
        ]
    );
    let events = event_types(&writes);
    assert_eq!(
        events
            .iter()
            .filter(|e| **e == "order.state_changed")
            .count(),
        5
    );
    assert_eq!(events.last(), Some(&"order.completed"));
}

#[tokio::test]
async fn an_invalid_cart_touches_no_port() {
    let (p, writes) = Harness::new().processor();
    let mut d = draft(None);
    d.items.clear();
    let err = p.place_order_from_draft(d, None).await.unwrap_err();
    let AppError::Validation(v) = err else {
        panic!("expected validation error")
    };
    assert_eq!(v.errors[0].field, "items");
    assert!(writes.lock().unwrap().is_empty());
}

#[tokio::test]
async fn insufficient_stock_lands_in_inventory_failed() {
    let mut h = Harness::new();
    h.inventory.expect_reserve().times(1).returning(|_| {
        Err(InventoryError::Unavailable(vec![UnavailableItem {
            book_id: book(),
            requested: 2,
            available: 1,
        }]))
    });
    h.payments.expect_create_intent().never();
    let (p, writes) = h.processor();
    let placed = p.place_order_from_draft(draft(None), None).await.unwrap();
    let PlacedOrder::InventoryUnavailable { order, items } = placed else {
        panic!("{placed:?}")
    };
    assert_eq!(order.state(), OrderState::InventoryFailed);
    assert_eq!(items[0].available, 1);
    assert_eq!(
        states(&writes),
        vec![("create", vec!["pending", "validating", "inventory_failed"])]
    );
    assert!(event_types(&writes).contains(&"order.inventory_unavailable"));
}

#[tokio::test]
async fn an_unknown_book_lands_in_inventory_failed() {
    let mut h = Harness::new();
    h.inventory.expect_reserve().returning(|_| {
        Err(InventoryError::Pricing(PricingProblem::UnknownBooks(vec![
            book(),
        ])))
    });
    let (p, writes) = h.processor();
    let placed = p.place_order_from_draft(draft(None), None).await.unwrap();
    let PlacedOrder::InventoryRejected { problem, .. } = placed else {
        panic!("{placed:?}")
    };
    assert_eq!(problem.code(), "unknown_book");
    assert_eq!(
        states(&writes),
        vec![("create", vec!["pending", "validating", "inventory_failed"])]
    );
}

#[tokio::test]
async fn a_price_mismatch_releases_what_was_reserved() {
    // The inventory did not check the client's price; the domain does.
    let mut h = Harness::new().reserves_at("12.50");
    h.inventory
        .expect_release()
        .withf(|id| *id == reservation_id())
        .times(1)
        .returning(|_| Ok(()));
    h.payments.expect_create_intent().never();
    let (p, writes) = h.processor();
    let placed = p
        .place_order_from_draft(draft(Some("10.00")), None)
        .await
        .unwrap();
    let PlacedOrder::InventoryRejected { problem, order } = placed else {
        panic!("{placed:?}")
    };
    assert_eq!(problem.code(), "price_mismatch");
    assert_eq!(order.state(), OrderState::InventoryFailed);
    assert_eq!(
        states(&writes),
        vec![("create", vec!["pending", "validating", "inventory_failed"])]
    );
}

#[tokio::test]
async fn a_decline_fails_the_payment_and_releases() {
    let mut h = Harness::new()
        .saves_ok()
        .reserves_at("12.50")
        .creates_intent();
    h.payments.expect_confirm().returning(|_, _, _| {
        Err(PaymentError::Declined {
            code: "insufficient_funds".into(),
            message: "Your card has insufficient funds.".into(),
        })
    });
    h.inventory
        .expect_release()
        .withf(|id| *id == reservation_id())
        .times(1)
        .returning(|_| Ok(()));
    h.inventory.expect_confirm().never();
    let (p, writes) = h.processor();
    let placed = p.place_order_from_draft(draft(None), None).await.unwrap();
    let PlacedOrder::Declined { order, code, .. } = placed else {
        panic!("{placed:?}")
    };
    assert_eq!(code, "insufficient_funds");
    assert_eq!(order.state(), OrderState::PaymentFailed);
    assert_eq!(
        order.reservation().unwrap().status,
        ReservationStatus::Released
    );
    assert_eq!(states(&writes)[1], ("save", vec!["payment_failed"]));
    assert!(event_types(&writes).contains(&"order.payment_failed"));
}

#[tokio::test]
async fn a_provider_error_at_creation_cancels_by_way_of_payment_failed() {
    let mut h = Harness::new().saves_ok().reserves_at("12.50");
    h.payments.expect_create_intent().returning(|_| {
        Err(PaymentError::Rejected {
            code: "processing_error".into(),
            message: "boom".into(),
        })
    });
    h.payments.expect_confirm().never();
    h.inventory.expect_release().times(1).returning(|_| Ok(()));
    let (p, writes) = h.processor();
    let placed = p.place_order_from_draft(draft(None), None).await.unwrap();
    let PlacedOrder::PaymentProviderError { order, .. } = placed else {
        panic!("{placed:?}")
    };
    assert_eq!(order.state(), OrderState::Cancelled);
    assert_eq!(
        states(&writes)[1],
        ("save", vec!["payment_failed", "cancelled"])
    );
}

#[tokio::test]
async fn a_provider_error_at_confirmation_cancels_by_way_of_payment_failed() {
    let mut h = Harness::new()
        .saves_ok()
        .reserves_at("12.50")
        .creates_intent();
    h.payments.expect_confirm().returning(|_, _, _| {
        Err(PaymentError::Rejected {
            code: "processing_error".into(),
            message: "boom".into(),
        })
    });
    h.inventory.expect_release().times(1).returning(|_| Ok(()));
    let (p, writes) = h.processor();
    let placed = p.place_order_from_draft(draft(None), None).await.unwrap();
    assert!(
        matches!(placed, PlacedOrder::PaymentProviderError { .. }),
        "{placed:?}"
    );
    assert_eq!(
        states(&writes)[1],
        ("save", vec!["payment_failed", "cancelled"])
    );
    assert!(event_types(&writes).contains(&"order.cancelled"));
}

/// A provider whose confirm never answers within any timeout.
struct HangingProvider;

#[async_trait::async_trait]
impl PaymentProvider for HangingProvider {
    fn name(&self) -> &str {
        "mock"
    }
    async fn create_intent(&self, _: &CreateIntent) -> Result<PaymentIntent, PaymentError> {
        Ok(intent("pi_1", PaymentStatus::Pending))
    }
    async fn confirm(
        &self,
        _: &str,
        _: &PaymentMethod,
        _: &str,
    ) -> Result<PaymentIntent, PaymentError> {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(intent("pi_1", PaymentStatus::Succeeded))
    }
    async fn status(&self, _: &str) -> Result<PaymentIntent, PaymentError> {
        Ok(intent("pi_1", PaymentStatus::Processing))
    }
    async fn refund(&self, _: &str, _: Money, _: &str) -> Result<ProviderRefund, PaymentError> {
        Err(PaymentError::NotFound)
    }
}

#[tokio::test(start_paused = true)]
async fn a_payment_past_the_timeout_is_left_to_the_reconciler() {
    // Paused time: the 30 s payment timeout elapses without a real wait.
    let mut h = Harness::new().saves_ok().reserves_at("12.50");
    h.inventory.expect_release().never();
    h.inventory.expect_confirm().never();
    let (p, writes) = Harness::processor_with(
        h.repo,
        h.inventory,
        Arc::new(HangingProvider),
        h.settings,
        h.writes,
    );
    let placed = p.place_order_from_draft(draft(None), None).await.unwrap();
    let PlacedOrder::PaymentPending(order) = placed else {
        panic!("{placed:?}")
    };
    assert_eq!(order.state(), OrderState::ProcessingPayment);
    assert_eq!(order.payment().unwrap().status, PaymentStatus::Unknown);
    assert_eq!(order.payment().unwrap().intent_id.as_deref(), Some("pi_1"));
    assert_eq!(states(&writes)[1], ("save", vec![]));
}

#[tokio::test]
async fn an_inventory_service_error_cancels() {
    let mut h = Harness::new();
    h.inventory.expect_reserve().returning(|_| {
        Err(InventoryError::ServiceUnavailable(
            "connection refused".into(),
        ))
    });
    h.inventory
        .expect_release()
        .withf(|id| *id == reservation_id())
        .times(1)
        .returning(|_| Ok(()));
    let (p, writes) = h.processor();
    let placed = p.place_order_from_draft(draft(None), None).await.unwrap();
    let PlacedOrder::InventoryServiceUnavailable { order, .. } = placed else {
        panic!("{placed:?}")
    };
    assert_eq!(order.state(), OrderState::Cancelled);
    assert_eq!(
        states(&writes),
        vec![("create", vec!["pending", "validating", "cancelled"])]
    );
}

#[tokio::test]
async fn a_stale_version_answers_with_what_the_winner_wrote() {
    let mut h = Harness::bare().reserves_at("12.50").creates_intent();
    h.payments
        .expect_confirm()
        .returning(|_, _, _| Ok(intent("pi_1", PaymentStatus::Succeeded)));
    h.inventory.expect_confirm().times(1).returning(|_| Ok(()));
    // A webhook settled the order first: our save loses.
    h.repo
        .expect_save()
        .times(1)
        .returning(|o, _, _| Err(RepositoryError::Conflict(o.id())));
    let winner: Arc<Mutex<Option<Order>>> = Arc::default();
    let w = winner.clone();
    let mut h2 = h;
    let w2 = w.clone();
    h2.repo.expect_create().returning(move |o, _| {
        // Build what the winner will have saved: the same order, paid.
        let mut paid = o.clone();
        paid.transition(OrderState::Paid, TransitionContext::new("webhook", T0))
            .unwrap();
        *w2.lock().unwrap() = Some(paid);
        Ok(())
    });
    h2.repo
        .expect_get()
        .returning(move |_| Ok(w.lock().unwrap().clone().unwrap()));
    let (p, _) = h2.processor();
    let placed = p.place_order_from_draft(draft(None), None).await.unwrap();
    assert!(matches!(placed, PlacedOrder::Paid(_)), "{placed:?}");
    assert_eq!(
        winner.lock().unwrap().as_ref().unwrap().state(),
        OrderState::Paid
    );
}
