//! The background workers with a controlled clock, and graceful shutdown.

use std::time::Duration;

use checkout_domain::{
    BookId, Cart, CartDraft, CartItemDraft, Currency, Order, OrderId, OrderState, Quantity,
    ReservationId, ReservationRef, ReservationStatus, TransitionContext,
};
use checkout_ports::{Clock, InventoryPort, OrderRepository, ReservationRequest, ReserveLine};

use crate::helpers::{TestApp, backends, contract_order};

/// SIGTERM to the real binary while an order is mid-payment: the order
/// completes, new connections are refused, the process exits 0.
#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_checkout-service"))
        .arg("serve")
        .env("CHECKOUT__SERVER__ADDR", format!("127.0.0.1:{port}"))
        .env(
            "CHECKOUT__DATABASE__URL",
            format!("sqlite://{}/checkout.db", dir.path().display()),
        )
        .env("CHECKOUT__PAYMENTS__MOCK_DELAY_MS", "400")
        .env("CHECKOUT__LOG__LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..500 {
        if client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ready, "the service never became ready");
    let in_flight = {
        let (client, url) = (client.clone(), format!("{base}/orders"));
        tokio::spawn(async move { client.post(url).json(&contract_order()).send().await })
    };
    // Signal only once the order is written and its payment under way: the
    // request is then certainly in flight.
    loop {
        let list: serde_json::Value = client
            .get(format!("{base}/orders"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !list["orders"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let res = in_flight.await.unwrap().unwrap();
    assert_eq!(res.status().as_u16(), 201, "the in-flight order completed");
    let status = child.wait().await.unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        reqwest::Client::new()
            .get(format!("{base}/health/live"))
            .send()
            .await
            .is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn the_reconciler_settles_a_payment_whose_outcome_was_unknown() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await.serve();
        let (s, order) = app.place("bk-0001", 1, "pm_card_timeout").await;
        assert_eq!(
            (s, order["state"].as_str()),
            (202, Some("processing_payment")),
            "{order}"
        );
        let id = order["id"].as_str().unwrap();
        assert_eq!(
            app.stock("bk-0001").await,
            (39, 1),
            "still held while unresolved"
        );
        // Not yet past the payment timeout: nothing happens.
        app.workers.reconciler.run_once().await.unwrap();
        assert_eq!(app.order(id).await["state"], "processing_payment");
        app.clock.advance(Duration::from_secs(31));
        app.workers.reconciler.run_once().await.unwrap();
        let settled = app.order(id).await;
        assert_eq!(settled["state"], "paid", "{settled}");
        assert_eq!(app.stock("bk-0001").await, (39, 0));
        assert_eq!(
            app.audit_states(id).await,
            [
                "pending",
                "validating",
                "reserved",
                "processing_payment",
                "paid"
            ]
        );
    }
}

#[tokio::test]
async fn three_d_secure_answers_202_with_next_action() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await.serve();
        let (s, order) = app
            .place("bk-0001", 1, "pm_card_threeDSecure2Required")
            .await;
        assert_eq!(s, 202, "{order}");
        assert_eq!(order["state"], "processing_payment");
        assert!(order["next_action"].is_object(), "{order}");
        assert!(order["client_secret"].is_string(), "{order}");
    }
}

#[tokio::test]
async fn the_sweeper_releases_expired_reservations() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await.serve();
        // An order still waiting on its customer keeps its stock alive
        // through the reconciler…
        let (s, order) = app
            .place("bk-0002", 2, "pm_card_threeDSecure2Required")
            .await;
        assert_eq!(s, 202);
        let id = order["id"].as_str().unwrap();
        for _ in 0..4 {
            app.clock.advance(Duration::from_secs(5 * 60));
            app.workers.reconciler.run_once().await.unwrap();
            app.workers.sweeper.run_once().await.unwrap();
        }
        assert_eq!(app.order(id).await["state"], "processing_payment");
        assert_eq!(
            app.stock("bk-0002").await,
            (23, 2),
            "20 minutes on, still held"
        );
        // …while a reservation nobody keeps alive (its order never got
        // written: a crash between reserving and saving) expires.
        let now = app.clock.now();
        let request = ReservationRequest {
            reservation_id: ReservationId::from_uuid(uuid::Uuid::now_v7()),
            order_id: OrderId::from_uuid(uuid::Uuid::now_v7()),
            currency: Currency::USD,
            lines: vec![ReserveLine {
                book_id: BookId::parse("bk-0003").unwrap(),
                quantity: Quantity::new(4).unwrap(),
                expected_unit_price: None,
            }],
            expires_at: now + Duration::from_secs(15 * 60),
        };
        InventoryPort::reserve(&app.store, &request).await.unwrap();
        assert_eq!(app.stock("bk-0003").await, (16, 4));
        app.clock.advance(Duration::from_secs(14 * 60));
        app.workers.sweeper.run_once().await.unwrap();
        assert_eq!(app.stock("bk-0003").await, (16, 4), "not expired yet");
        app.clock.advance(Duration::from_secs(2 * 60));
        app.workers.sweeper.run_once().await.unwrap();
        assert_eq!(app.stock("bk-0003").await, (20, 0), "expired and released");

        // An order left in `reserved` past its reservation is cancelled.
        let cart = Cart::parse(CartDraft {
            customer_id: Some("cust-9".into()),
            items: vec![CartItemDraft {
                book_id: Some("bk-0004".into()),
                quantity: Some(1),
                unit_price: None,
            }],
            payment_method_token: Some("pm_card_visa".into()),
            ..Default::default()
        })
        .unwrap();
        let now = app.clock.now();
        let rid = ReservationId::from_uuid(uuid::Uuid::now_v7());
        let (mut order, created) =
            Order::place(OrderId::from_uuid(uuid::Uuid::now_v7()), &cart, now, None);
        let request = ReservationRequest {
            reservation_id: rid,
            order_id: order.id(),
            currency: Currency::USD,
            lines: vec![ReserveLine {
                book_id: BookId::parse("bk-0004").unwrap(),
                quantity: Quantity::new(1).unwrap(),
                expected_unit_price: None,
            }],
            expires_at: now + Duration::from_secs(15 * 60),
        };
        let held = InventoryPort::reserve(&app.store, &request).await.unwrap();
        let mut changes = vec![
            created,
            order
                .transition(OrderState::Validating, TransitionContext::new("v", now))
                .unwrap(),
        ];
        order
            .apply_catalog_prices(&[(BookId::parse("bk-0004").unwrap(), held.lines[0].unit_price)])
            .unwrap();
        order.attach_reservation(
            ReservationRef {
                id: rid,
                expires_at: held.expires_at,
                status: ReservationStatus::Active,
            },
            now,
        );
        changes.push(
            order
                .transition(OrderState::Reserved, TransitionContext::new("r", now))
                .unwrap(),
        );
        OrderRepository::create(&app.store, &order, &changes)
            .await
            .unwrap();
        assert_eq!(app.stock("bk-0004").await, (29, 1));
        app.clock.advance(Duration::from_secs(16 * 60));
        app.workers.sweeper.run_once().await.unwrap();
        let swept = app.order(&order.id().to_string()).await;
        assert_eq!(swept["state"], "cancelled", "{swept}");
        assert_eq!(app.stock("bk-0004").await, (30, 0));
        let (_, audit) = app.get(&format!("/orders/{}/audit", order.id())).await;
        assert_eq!(
            audit["entries"].as_array().unwrap().last().unwrap()["reason"],
            "Reservation expired"
        );
    }
}
