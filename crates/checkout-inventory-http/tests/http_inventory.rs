//! `HttpInventory` against a wiremock inventory service: the documented
//! answers, the failures it must survive (5xx, 429, slow, malformed,
//! refused connections), the idempotency of its retries and the circuit
//! breaker. Assertions are on behaviour — the error variant, the requests the
//! service received — never on how long something took.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use checkout_domain::{
    BookId, Currency, Money, OrderId, PricingProblem, Quantity, ReservationId, UnavailableItem,
};
use checkout_inventory_http::{
    BearerToken, BreakerConfig, BreakerState, HttpInventory, HttpInventoryConfig,
};
use checkout_ports::{Clock, InventoryError, InventoryPort, ReservationRequest, ReserveLine};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const T0: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);
const RESERVATION: &str = "0193a000-0000-7000-8000-0000000000aa";
const ORDER: &str = "0193a000-0000-7000-8000-0000000000bb";

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        T0
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Short timeouts so failure tests stay fast; a breaker that never opens
/// unless a test asks for one.
fn config(base_url: String) -> HttpInventoryConfig {
    HttpInventoryConfig {
        base_url,
        connect_timeout: ms(200),
        request_timeout: ms(300),
        max_retries: 2,
        total_timeout: ms(1_500),
        backoff_base: ms(5),
        backoff_max: ms(20),
        breaker: BreakerConfig {
            failure_threshold: 100,
            open_duration: Duration::from_secs(60),
        },
        ..HttpInventoryConfig::default()
    }
}

fn client(config: HttpInventoryConfig) -> HttpInventory {
    HttpInventory::new(config)
        .unwrap()
        .with_clock(Arc::new(FixedClock))
}

fn reservation_id() -> ReservationId {
    ReservationId::parse(RESERVATION).unwrap()
}

fn usd(s: &str) -> Money {
    Money::new(Decimal::from_str(s).unwrap(), Currency::USD).unwrap()
}

fn request() -> ReservationRequest {
    ReservationRequest {
        reservation_id: reservation_id(),
        order_id: OrderId::parse(ORDER).unwrap(),
        currency: Currency::USD,
        lines: vec![
            ReserveLine {
                book_id: BookId::parse("bk-0001").unwrap(),
                quantity: Quantity::new(2).unwrap(),
                expected_unit_price: Some(usd("12.50")),
            },
            ReserveLine {
                book_id: BookId::parse("bk-0002").unwrap(),
                quantity: Quantity::new(1).unwrap(),
                expected_unit_price: None,
            },
        ],
        expires_at: T0 + Duration::from_secs(15 * 60),
    }
}

/// The reserve body the contract prescribes for [`request`].
fn reserve_body() -> Value {
    json!({
        "reservation_id": RESERVATION,
        "order_id": ORDER,
        "currency": "USD",
        "ttl_seconds": 900,
        "items": [
            {"book_id": "bk-0001", "quantity": 2, "expected_unit_price": "12.50"},
            {"book_id": "bk-0002", "quantity": 1}
        ]
    })
}

fn reserved() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "reservation_id": RESERVATION,
        "status": "active",
        "expires_at": "2026-11-25T10:15:00Z",
        "items": [
            {"book_id": "bk-0001", "quantity": 2, "unit_price": "12.50", "currency": "USD"},
            {"book_id": "bk-0002", "quantity": 1, "unit_price": "8.00", "currency": "USD"}
        ]
    }))
}

fn action_path(action: &str) -> String {
    format!("/reservations/{RESERVATION}/{action}")
}

async fn received(server: &MockServer) -> Vec<wiremock::Request> {
    server.received_requests().await.unwrap_or_default()
}

// ---- reserve: the documented answers ------------------------------------

#[tokio::test]
async fn reserve_sends_the_contract_body_and_converts_the_reservation() {
    let server = MockServer::start().await;
    // A base URL with a path prefix keeps it.
    Mock::given(method("POST"))
        .and(path("/api/v1/reservations"))
        .and(header("authorization", "Bearer inv-token"))
        .and(header("content-type", "application/json"))
        .and(body_json(reserve_body()))
        .respond_with(reserved())
        .expect(1)
        .mount(&server)
        .await;
    let inventory = client(HttpInventoryConfig {
        bearer_token: Some(BearerToken::new("inv-token")),
        ..config(format!("{}/api/v1/", server.uri()))
    });

    let reservation = inventory.reserve(&request()).await.unwrap();

    assert_eq!(reservation.id, reservation_id());
    assert_eq!(reservation.expires_at, datetime!(2026-11-25 10:15 UTC));
    let prices: Vec<_> = reservation
        .lines
        .iter()
        .map(|l| {
            (
                l.book_id.as_str().to_owned(),
                l.quantity.get(),
                l.unit_price,
            )
        })
        .collect();
    assert_eq!(
        prices,
        vec![
            ("bk-0001".to_owned(), 2, usd("12.50")),
            ("bk-0002".to_owned(), 1, usd("8")),
        ]
    );
    assert_eq!(inventory.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn insufficient_stock_is_the_unavailable_business_outcome_and_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/reservations"))
        .respond_with(ResponseTemplate::new(409).set_body_json(json!({
            "code": "insufficient_inventory",
            "message": "some books are not available in the requested quantity",
            "unavailable_items": [{"book_id": "bk-0001", "requested": 2, "available": 1}]
        })))
        .expect(1)
        .mount(&server)
        .await;

    let err = client(config(server.uri()))
        .reserve(&request())
        .await
        .unwrap_err();

    match err {
        InventoryError::Unavailable(items) => assert_eq!(
            items,
            vec![UnavailableItem {
                book_id: BookId::parse("bk-0001").unwrap(),
                requested: 2,
                available: 1
            }]
        ),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_book_is_a_pricing_problem() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/reservations"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "code": "unknown_book",
            "message": "no such book",
            "book_ids": ["bk-0002"]
        })))
        .expect(1)
        .mount(&server)
        .await;

    let err = client(config(server.uri()))
        .reserve(&request())
        .await
        .unwrap_err();

    match err {
        InventoryError::Pricing(PricingProblem::UnknownBooks(books)) => {
            assert_eq!(books, vec![BookId::parse("bk-0002").unwrap()]);
        }
        other => panic!("expected Pricing(UnknownBooks), got {other:?}"),
    }
}

#[tokio::test]
async fn a_404_without_the_contract_code_is_not_read_as_an_unknown_book() {
    // A wrong base URL or a proxy answers 404 too; that must not fail the
    // order as "unknown book".
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_string("<html>Not Found</html>"))
        .expect(1)
        .mount(&server)
        .await;

    let err = client(config(server.uri()))
        .reserve(&request())
        .await
        .unwrap_err();

    assert!(matches!(err, InventoryError::Unexpected(_)), "{err:?}");
}

#[tokio::test]
async fn price_and_currency_mismatches_are_pricing_problems() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/reservations"))
        .respond_with(ResponseTemplate::new(409).set_body_json(json!({
            "code": "price_mismatch",
            "mismatches": [{"book_id": "bk-0001", "expected_unit_price": "12.50",
                            "unit_price": "13.00", "currency": "USD"}]
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/reservations"))
        .respond_with(ResponseTemplate::new(409).set_body_json(json!({
            "code": "currency_mismatch",
            "catalog_currency": "EUR",
            "order_currency": "USD"
        })))
        .mount(&server)
        .await;
    let inventory = client(config(server.uri()));

    match inventory.reserve(&request()).await.unwrap_err() {
        InventoryError::Pricing(PricingProblem::PriceMismatch(m)) => {
            assert_eq!(m.len(), 1);
            assert_eq!(m[0].book_id.as_str(), "bk-0001");
            assert_eq!(m[0].expected, usd("12.50"));
            assert_eq!(m[0].catalog, usd("13"));
        }
        other => panic!("expected Pricing(PriceMismatch), got {other:?}"),
    }
    match inventory.reserve(&request()).await.unwrap_err() {
        InventoryError::Pricing(PricingProblem::CurrencyMismatch { catalog, order }) => {
            assert_eq!(catalog, Currency::parse("EUR").unwrap());
            assert_eq!(order, Currency::USD);
        }
        other => panic!("expected Pricing(CurrencyMismatch), got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_json_is_unexpected_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/reservations"))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("content-type", "application/json")
                .set_body_string(r#"{"reservation_id": "0193a000-"#),
        )
        .expect(1)
        .mount(&server)
        .await;

    let err = client(config(server.uri()))
        .reserve(&request())
        .await
        .unwrap_err();

    assert!(matches!(err, InventoryError::Unexpected(_)), "{err:?}");
}

#[tokio::test]
async fn a_price_finer_than_the_minor_unit_is_refused() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/reservations"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "reservation_id": RESERVATION,
            "expires_at": "2026-11-25T10:15:00Z",
            "items": [
                {"book_id": "bk-0001", "quantity": 2, "unit_price": "12.499", "currency": "USD"},
                {"book_id": "bk-0002", "quantity": 1, "unit_price": "8.00", "currency": "USD"}
            ]
        })))
        .mount(&server)
        .await;

    let err = client(config(server.uri()))
        .reserve(&request())
        .await
        .unwrap_err();

    assert!(matches!(err, InventoryError::Unexpected(_)), "{err:?}");
}

// ---- retries ---------------------------------------------------------------

#[tokio::test]
async fn a_5xx_is_retried_with_the_same_reservation_id_until_it_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/reservations"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/reservations"))
        .respond_with(ResponseTemplate::new(500).set_body_string("oops"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/reservations"))
        .respond_with(reserved())
        .mount(&server)
        .await;

    let reservation = client(config(server.uri()))
        .reserve(&request())
        .await
        .unwrap();

    assert_eq!(reservation.id, reservation_id());
    let requests = received(&server).await;
    assert_eq!(requests.len(), 3);
    for r in &requests {
        // Every attempt is the same request: same reservation id, same
        // lines, same TTL — which is what makes the retry safe.
        assert_eq!(r.body_json::<Value>().unwrap(), reserve_body());
    }
}

#[tokio::test]
async fn a_failing_service_is_given_up_on_after_max_retries_as_service_unavailable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;

    let err = client(config(server.uri()))
        .reserve(&request())
        .await
        .unwrap_err();

    assert!(
        matches!(err, InventoryError::ServiceUnavailable(_)),
        "{err:?}"
    );
    assert_eq!(received(&server).await.len(), 3, "1 attempt + 2 retries");
}

#[tokio::test]
async fn confirm_retries_hit_the_same_reservation() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(action_path("confirm")))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(action_path("confirm")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "reservation_id": RESERVATION, "status": "confirmed"
        })))
        .mount(&server)
        .await;

    client(config(server.uri()))
        .confirm(reservation_id())
        .await
        .unwrap();

    let paths: Vec<_> = received(&server)
        .await
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(paths, vec![action_path("confirm"), action_path("confirm")]);
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(reserved())
        .mount(&server)
        .await;

    client(config(server.uri()))
        .reserve(&request())
        .await
        .unwrap();

    assert_eq!(received(&server).await.len(), 2);
}

#[tokio::test]
async fn a_retry_after_beyond_the_call_budget_is_honoured_by_giving_up_not_by_retrying_early() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .mount(&server)
        .await;

    let err = client(config(server.uri()))
        .reserve(&request())
        .await
        .unwrap_err();

    assert!(
        matches!(&err, InventoryError::ServiceUnavailable(m) if m.contains("Retry-After")),
        "{err:?}"
    );
    // The backoff alone (5–20 ms) would have allowed two more attempts.
    assert_eq!(received(&server).await.len(), 1);
}

#[tokio::test]
async fn a_slow_answer_past_the_request_timeout_is_abandoned_and_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(reserved().set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;

    let err = client(HttpInventoryConfig {
        request_timeout: ms(50),
        max_retries: 1,
        ..config(server.uri())
    })
    .reserve(&request())
    .await
    .unwrap_err();

    assert!(
        matches!(err, InventoryError::ServiceUnavailable(_)),
        "{err:?}"
    );
    let requests = received(&server).await;
    assert_eq!(requests.len(), 2);
    assert!(
        requests
            .iter()
            .all(|r| r.body_json::<Value>().unwrap() == reserve_body())
    );
}

#[tokio::test]
async fn the_whole_call_is_bounded_by_the_total_timeout_whatever_the_retry_count() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;

    let err = client(HttpInventoryConfig {
        max_retries: 10_000,
        total_timeout: ms(150),
        backoff_base: ms(10),
        backoff_max: ms(20),
        ..config(server.uri())
    })
    .reserve(&request())
    .await
    .unwrap_err();

    assert!(
        matches!(err, InventoryError::ServiceUnavailable(_)),
        "{err:?}"
    );
    let attempts = received(&server).await.len();
    assert!((1..100).contains(&attempts), "{attempts} attempts");
}

#[tokio::test]
async fn a_refused_connection_is_service_unavailable() {
    // Bind a port, then free it: nothing listens there any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);

    let err = client(config(format!("http://{addr}")))
        .reserve(&request())
        .await
        .unwrap_err();

    assert!(
        matches!(err, InventoryError::ServiceUnavailable(_)),
        "{err:?}"
    );
}

// ---- confirm / release / extend ----------------------------------------------

#[tokio::test]
async fn confirm_maps_gone_and_not_found() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(action_path("confirm")))
        .respond_with(ResponseTemplate::new(410).set_body_json(json!({
            "code": "reservation_gone", "message": "expired at 2026-11-25T10:15:00Z"
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(action_path("confirm")))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(json!({"code": "reservation_not_found"})),
        )
        .mount(&server)
        .await;
    let inventory = client(config(server.uri()));

    let gone = inventory.confirm(reservation_id()).await.unwrap_err();
    assert!(
        matches!(gone, InventoryError::ReservationGone(id) if id == reservation_id()),
        "{gone:?}"
    );
    let missing = inventory.confirm(reservation_id()).await.unwrap_err();
    assert!(matches!(missing, InventoryError::NotFound), "{missing:?}");
}

#[tokio::test]
async fn releasing_an_unknown_reservation_is_a_no_op() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(action_path("release")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "reservation_id": RESERVATION, "status": "released"
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(action_path("release")))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(json!({"code": "reservation_not_found"})),
        )
        .mount(&server)
        .await;
    let inventory = client(config(server.uri()));

    inventory.release(reservation_id()).await.unwrap();
    inventory.release(reservation_id()).await.unwrap();
    assert_eq!(received(&server).await.len(), 2);
}

#[tokio::test]
async fn extend_sends_the_new_time_to_live_and_maps_gone() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(action_path("extend")))
        .and(body_json(json!({"ttl_seconds": 600})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "reservation_id": RESERVATION, "status": "active",
            "expires_at": "2026-11-25T10:10:00Z"
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(action_path("extend")))
        .respond_with(ResponseTemplate::new(410).set_body_json(json!({"code": "reservation_gone"})))
        .mount(&server)
        .await;
    let inventory = client(config(server.uri()));

    inventory
        .extend(reservation_id(), T0 + Duration::from_secs(600))
        .await
        .unwrap();
    let gone = inventory
        .extend(reservation_id(), T0 + Duration::from_secs(600))
        .await
        .unwrap_err();
    assert!(
        matches!(gone, InventoryError::ReservationGone(_)),
        "{gone:?}"
    );
}

#[tokio::test]
async fn release_expired_is_left_to_the_service() {
    let server = MockServer::start().await;
    let released = client(config(server.uri()))
        .release_expired(T0, 100)
        .await
        .unwrap();
    assert_eq!(released, 0);
    assert!(received(&server).await.is_empty());
}

#[tokio::test]
async fn a_request_in_progress_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(409).set_body_json(json!({"code": "request_in_progress"})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(reserved())
        .mount(&server)
        .await;

    client(config(server.uri()))
        .reserve(&request())
        .await
        .unwrap();
    assert_eq!(received(&server).await.len(), 2);
}

// ---- circuit breaker ---------------------------------------------------------

fn breaker_config(base_url: String) -> HttpInventoryConfig {
    HttpInventoryConfig {
        max_retries: 0,
        breaker: BreakerConfig {
            failure_threshold: 3,
            open_duration: Duration::from_secs(30),
        },
        ..config(base_url)
    }
}

/// Moves the tokio clock past the breaker's open duration without waiting:
/// paused only while no request is in flight, since a paused clock would
/// also fire the timeouts of requests waiting on the network.
async fn let_open_duration_pass() {
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(31)).await;
    tokio::time::resume();
}

#[tokio::test]
async fn the_breaker_opens_after_consecutive_failures_and_then_fails_fast() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let inventory = client(breaker_config(server.uri()));

    for _ in 0..3 {
        let err = inventory.confirm(reservation_id()).await.unwrap_err();
        assert!(
            matches!(err, InventoryError::ServiceUnavailable(_)),
            "{err:?}"
        );
    }
    assert_eq!(inventory.breaker_state(), BreakerState::Open);
    assert_eq!(received(&server).await.len(), 3);

    // Open: calls fail without reaching the service.
    for _ in 0..5 {
        let err = inventory.reserve(&request()).await.unwrap_err();
        assert!(
            matches!(&err, InventoryError::ServiceUnavailable(m) if m.contains("circuit breaker")),
            "{err:?}"
        );
    }
    assert_eq!(received(&server).await.len(), 3);
}

#[tokio::test]
async fn the_breaker_closes_after_a_successful_probe() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(3)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(action_path("confirm")))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let inventory = client(breaker_config(server.uri()));
    for _ in 0..3 {
        assert!(inventory.confirm(reservation_id()).await.is_err());
    }
    assert_eq!(inventory.breaker_state(), BreakerState::Open);

    let_open_duration_pass().await;
    assert_eq!(inventory.breaker_state(), BreakerState::HalfOpen);
    inventory.confirm(reservation_id()).await.unwrap();

    assert_eq!(inventory.breaker_state(), BreakerState::Closed);
    inventory.confirm(reservation_id()).await.unwrap();
    assert_eq!(received(&server).await.len(), 5);
}

#[tokio::test]
async fn a_failed_probe_opens_the_breaker_again() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let inventory = client(breaker_config(server.uri()));
    for _ in 0..3 {
        assert!(inventory.confirm(reservation_id()).await.is_err());
    }

    let_open_duration_pass().await;
    assert!(inventory.confirm(reservation_id()).await.is_err());
    assert_eq!(inventory.breaker_state(), BreakerState::Open);
    assert!(inventory.confirm(reservation_id()).await.is_err());

    assert_eq!(received(&server).await.len(), 4, "3 failures + 1 probe");
}

#[tokio::test]
async fn business_refusals_do_not_count_as_failures() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(409).set_body_json(json!({
            "code": "insufficient_inventory",
            "unavailable_items": [{"book_id": "bk-0001", "requested": 2, "available": 0}]
        })))
        .mount(&server)
        .await;
    let inventory = client(breaker_config(server.uri()));

    for _ in 0..10 {
        assert!(matches!(
            inventory.reserve(&request()).await,
            Err(InventoryError::Unavailable(_))
        ));
    }
    assert_eq!(inventory.breaker_state(), BreakerState::Closed);
    assert_eq!(received(&server).await.len(), 10);
}

#[tokio::test]
async fn the_token_never_shows_in_debug_output() {
    let inventory = client(HttpInventoryConfig {
        bearer_token: Some(BearerToken::new("inv-secret-token")),
        ..config("http://127.0.0.1:9".to_owned())
    });
    let shown = format!("{inventory:?}");
    assert!(!shown.contains("inv-secret-token"), "{shown}");
}
