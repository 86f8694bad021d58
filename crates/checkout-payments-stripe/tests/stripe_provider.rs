//! The Stripe adapter against a wiremock Stripe that answers with Stripe's
//! own example objects, patched per case: what the adapter sends (form
//! fields, amounts per currency, idempotency keys) and how it reads every
//! kind of answer (success, customer action, decline, 4xx, 5xx, timeout,
//! unreadable body).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod common;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use checkout_domain::{Currency, CustomerId, Money, OrderId, PaymentMethod, PaymentStatus};
use checkout_payments_stripe::{StripeConfig, StripeProvider};
use checkout_ports::{CreateIntent, PaymentError, PaymentProvider, RefundStatus};
use common::{fixture, patched, payment_intent, stripe_error};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SECRET: &str = "sk_test_4eC39HqLyjWDarjtT1zdp7dc";
const ORDER: &str = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

struct Stripe {
    server: MockServer,
    provider: StripeProvider,
}

async fn stripe() -> Stripe {
    stripe_with_timeout(Duration::from_secs(5)).await
}

async fn stripe_with_timeout(timeout: Duration) -> Stripe {
    let server = MockServer::start().await;
    let config = StripeConfig::new(SECRET, "whsec_test")
        .with_api_base(server.uri())
        .with_timeout(timeout);
    let provider = StripeProvider::new(&config).unwrap();
    Stripe { server, provider }
}

impl Stripe {
    /// Answers `verb path` with `status` and a JSON body.
    async fn answer(&self, verb: &str, at: &str, status: u16, body: Value) {
        Mock::given(method(verb))
            .and(path(at))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&self.server)
            .await;
    }

    async fn requests(&self) -> Vec<Request> {
        self.server.received_requests().await.unwrap()
    }

    async fn only_request(&self) -> Request {
        let mut all = self.requests().await;
        assert_eq!(all.len(), 1, "expected exactly one call to Stripe");
        all.remove(0)
    }
}

fn money(amount: &str, code: &str) -> Money {
    Money::new(
        Decimal::from_str(amount).unwrap(),
        Currency::parse(code).unwrap(),
    )
    .unwrap()
}

fn create_request(amount: &str, code: &str) -> CreateIntent {
    CreateIntent {
        order_id: OrderId::parse(ORDER).unwrap(),
        customer_id: CustomerId::parse("cust-42").unwrap(),
        amount: money(amount, code),
        idempotency_key: format!("checkout-{ORDER}-1"),
        description: format!("BookVerse order {ORDER}"),
    }
}

fn card(token: &str) -> PaymentMethod {
    PaymentMethod::new("card", token).unwrap()
}

/// The form-encoded body as a map (`metadata[order_id]` → value).
fn form(request: &Request) -> HashMap<String, String> {
    form_urlencoded::parse(&request.body).into_owned().collect()
}

fn header<'a>(request: &'a Request, name: &str) -> &'a str {
    request
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

// ---------------------------------------------------------------- create

#[tokio::test]
async fn create_sends_minor_units_currency_metadata_and_the_create_key() {
    let cases = [
        ("31.99", "USD", "3199", "usd"),
        ("1500", "JPY", "1500", "jpy"),
        ("1.500", "KWD", "1500", "kwd"),
        ("5", "ISK", "500", "isk"),
    ];
    for (amount, code, minor, lower) in cases {
        let stripe = stripe().await;
        stripe
            .answer(
                "POST",
                "/v1/payment_intents",
                200,
                payment_intent(json!({"amount": minor.parse::<i64>().unwrap(), "currency": lower})),
            )
            .await;

        let intent = stripe
            .provider
            .create_intent(&create_request(amount, code))
            .await
            .unwrap();
        assert_eq!(intent.intent_id, "pi_3TestIntent");
        assert_eq!(intent.status, PaymentStatus::Pending);
        assert_eq!(
            intent.client_secret.as_deref(),
            Some("pi_3TestIntent_secret_abc")
        );

        let sent = stripe.only_request().await;
        let fields = form(&sent);
        assert_eq!(fields["amount"], minor, "{amount} {code}");
        assert_eq!(fields["currency"], lower);
        assert_eq!(fields["metadata[order_id]"], ORDER);
        assert_eq!(fields["metadata[customer_id]"], "cust-42");
        assert_eq!(fields["description"], format!("BookVerse order {ORDER}"));
        assert_eq!(fields["automatic_payment_methods[enabled]"], "true");
        assert_eq!(
            fields["automatic_payment_methods[allow_redirects]"],
            "never"
        );
        assert!(!fields.contains_key("confirm"), "created unconfirmed");
        assert_eq!(
            header(&sent, "idempotency-key"),
            format!("checkout-{ORDER}-1-create")
        );
        assert_eq!(header(&sent, "authorization"), format!("Bearer {SECRET}"));
        assert_eq!(
            header(&sent, "content-type"),
            "application/x-www-form-urlencoded"
        );
    }
}

#[tokio::test]
async fn amounts_stripe_would_refuse_never_leave_the_adapter() {
    let stripe = stripe().await;
    for (amount, code) in [("1.234", "KWD"), ("0.005", "BHD"), ("12.50", "MGA")] {
        let err = stripe
            .provider
            .create_intent(&create_request(amount, code))
            .await
            .unwrap_err();
        assert!(
            matches!(err, PaymentError::Rejected { ref code, .. } if code == "amount_not_supported"),
            "{amount} {code}: {err:?}"
        );
    }
    let err = stripe
        .provider
        .refund("pi_3TestIntent", money("1.235", "KWD"), "r1")
        .await
        .unwrap_err();
    assert!(matches!(err, PaymentError::Rejected { .. }));
    assert!(stripe.requests().await.is_empty(), "nothing was sent");
}

#[tokio::test]
async fn a_retried_create_sends_the_same_key() {
    let stripe = stripe().await;
    stripe
        .answer(
            "POST",
            "/v1/payment_intents",
            200,
            payment_intent(json!({})),
        )
        .await;
    let request = create_request("10.00", "USD");
    stripe.provider.create_intent(&request).await.unwrap();
    stripe.provider.create_intent(&request).await.unwrap();
    let keys: Vec<String> = stripe
        .requests()
        .await
        .iter()
        .map(|r| header(r, "idempotency-key").to_owned())
        .collect();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1]);
}

#[tokio::test]
async fn a_key_too_long_for_stripe_is_hashed_stably() {
    let stripe = stripe().await;
    stripe
        .answer(
            "POST",
            "/v1/payment_intents",
            200,
            payment_intent(json!({})),
        )
        .await;
    let mut request = create_request("10.00", "USD");
    request.idempotency_key = "k".repeat(255);
    stripe.provider.create_intent(&request).await.unwrap();
    stripe.provider.create_intent(&request).await.unwrap();
    let sent = stripe.requests().await;
    let first = header(&sent[0], "idempotency-key");
    assert!(first.len() <= 255 && first.ends_with("-create"), "{first}");
    assert_eq!(first, header(&sent[1], "idempotency-key"));
}

// ---------------------------------------------------------------- confirm

const CONFIRM: &str = "/v1/payment_intents/pi_3TestIntent/confirm";

#[tokio::test]
async fn confirm_success_carries_the_charge() {
    let stripe = stripe().await;
    stripe
        .answer(
            "POST",
            CONFIRM,
            200,
            payment_intent(json!({
                "status": "succeeded",
                "amount_received": 1099,
                "latest_charge": "ch_3TestCharge",
                "payment_method": "pm_1TestCard",
            })),
        )
        .await;

    let intent = stripe
        .provider
        .confirm("pi_3TestIntent", &card("pm_card_visa"), "attempt-1")
        .await
        .unwrap();
    assert_eq!(intent.status, PaymentStatus::Succeeded);
    assert_eq!(intent.transaction_id.as_deref(), Some("ch_3TestCharge"));
    assert_eq!(intent.failure_code, None);

    let sent = stripe.only_request().await;
    assert_eq!(form(&sent)["payment_method"], "pm_card_visa");
    assert_eq!(header(&sent, "idempotency-key"), "attempt-1-confirm");
}

#[tokio::test]
async fn confirm_requiring_3ds_returns_the_next_action_and_client_secret() {
    let stripe = stripe().await;
    stripe
        .answer(
            "POST",
            CONFIRM,
            200,
            payment_intent(json!({
                "status": "requires_action",
                "next_action": {
                    "type": "redirect_to_url",
                    "redirect_to_url": {
                        "url": "https://hooks.stripe.com/3d_secure_2/hosted?merchant=acct_1",
                        "return_url": "https://shop.example/return"
                    }
                },
            })),
        )
        .await;
    let intent = stripe
        .provider
        .confirm(
            "pi_3TestIntent",
            &card("pm_card_threeDSecure2Required"),
            "a",
        )
        .await
        .unwrap();
    assert_eq!(intent.status, PaymentStatus::RequiresAction);
    assert_eq!(
        intent.client_secret.as_deref(),
        Some("pi_3TestIntent_secret_abc")
    );
    let next = intent.next_action.unwrap();
    assert_eq!(next["type"], "redirect_to_url");
    assert_eq!(
        next["redirect_to_url"]["url"],
        "https://hooks.stripe.com/3d_secure_2/hosted?merchant=acct_1"
    );
    assert!(
        next.get("alipay_handle_redirect").is_none(),
        "no nulls: {next}"
    );
}

#[tokio::test]
async fn confirm_with_stripe_sdk_action_keeps_its_payload() {
    let stripe = stripe().await;
    stripe
        .answer(
            "POST",
            CONFIRM,
            200,
            payment_intent(json!({
                "status": "requires_action",
                "next_action": {
                    "type": "use_stripe_sdk",
                    "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": "https://hooks.stripe.com/x"}
                },
            })),
        )
        .await;
    let intent = stripe
        .provider
        .confirm("pi_3TestIntent", &card("pm_card_visa"), "a")
        .await
        .unwrap();
    let next = intent.next_action.unwrap();
    assert_eq!(next["type"], "use_stripe_sdk");
    assert_eq!(next["use_stripe_sdk"]["type"], "three_d_secure_redirect");
}

#[tokio::test]
async fn confirm_processing_is_processing() {
    let stripe = stripe().await;
    stripe
        .answer(
            "POST",
            CONFIRM,
            200,
            payment_intent(json!({"status": "processing"})),
        )
        .await;
    let intent = stripe
        .provider
        .confirm("pi_3TestIntent", &card("pm_card_visa"), "a")
        .await
        .unwrap();
    assert_eq!(intent.status, PaymentStatus::Processing);
}

/// Stripe's 402 for a declined card: a `card_error`, with the intent back in
/// `requires_payment_method` inside the error.
fn card_error(code: &str, decline_code: Option<&str>, message: &str) -> Value {
    let error = json!({
        "type": "card_error",
        "code": code,
        "decline_code": decline_code,
        "message": message,
        "doc_url": format!("https://stripe.com/docs/error-codes/{code}"),
        "request_log_url": "https://dashboard.stripe.com/test/logs/req_1",
    });
    stripe_error(patched(
        error.clone(),
        json!({
            "payment_intent": payment_intent(json!({
                "status": "requires_payment_method",
                "last_payment_error": error,
            })),
        }),
    ))
}

#[tokio::test]
async fn a_card_decline_is_declined_with_the_decline_code() {
    let stripe = stripe().await;
    stripe
        .answer(
            "POST",
            CONFIRM,
            402,
            card_error(
                "card_declined",
                Some("insufficient_funds"),
                "Your card has insufficient funds.",
            ),
        )
        .await;
    let err = stripe
        .provider
        .confirm(
            "pi_3TestIntent",
            &card("pm_card_visa_chargeDeclinedInsufficientFunds"),
            "a",
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        PaymentError::Declined {
            code: "insufficient_funds".into(),
            message: "Your card has insufficient funds.".into(),
        }
    );
}

#[tokio::test]
async fn a_decline_without_decline_code_uses_the_error_code() {
    let stripe = stripe().await;
    stripe
        .answer(
            "POST",
            CONFIRM,
            402,
            card_error("expired_card", None, "Your card has expired."),
        )
        .await;
    let err = stripe
        .provider
        .confirm(
            "pi_3TestIntent",
            &card("pm_card_chargeDeclinedExpiredCard"),
            "a",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, PaymentError::Declined { ref code, .. } if code == "expired_card"));
}

#[tokio::test]
async fn a_200_back_in_requires_payment_method_is_a_decline() {
    let stripe = stripe().await;
    stripe
        .answer(
            "POST",
            CONFIRM,
            200,
            payment_intent(json!({
                "status": "requires_payment_method",
                "last_payment_error": {
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": "generic_decline",
                    "message": "Your card was declined."
                },
            })),
        )
        .await;
    let err = stripe
        .provider
        .confirm("pi_3TestIntent", &card("pm_card_visa"), "a")
        .await
        .unwrap_err();
    assert!(matches!(err, PaymentError::Declined { ref code, .. } if code == "generic_decline"));
}

#[tokio::test]
async fn a_400_is_a_definite_rejection() {
    let stripe = stripe().await;
    stripe
        .answer(
            "POST",
            CONFIRM,
            400,
            stripe_error(json!({
                "type": "invalid_request_error",
                "code": "payment_intent_unexpected_state",
                "message": "This PaymentIntent's payment_method could not be updated because it has a status of succeeded.",
            })),
        )
        .await;
    let err = stripe
        .provider
        .confirm("pi_3TestIntent", &card("pm_card_visa"), "a")
        .await
        .unwrap_err();
    assert!(
        matches!(err, PaymentError::Rejected { ref code, .. } if code == "payment_intent_unexpected_state"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_409_idempotency_conflict_leaves_the_outcome_unknown() {
    let stripe = stripe().await;
    stripe
        .answer(
            "POST",
            CONFIRM,
            409,
            stripe_error(json!({
                "type": "idempotency_error",
                "message": "There is currently another in-progress request using this Idempotent Key.",
            })),
        )
        .await;
    let err = stripe
        .provider
        .confirm("pi_3TestIntent", &card("pm_card_visa"), "a")
        .await
        .unwrap_err();
    assert!(matches!(err, PaymentError::Unknown(_)), "{err:?}");
}

#[tokio::test]
async fn a_500_leaves_the_outcome_unknown() {
    let stripe = stripe().await;
    stripe
        .answer(
            "POST",
            CONFIRM,
            500,
            stripe_error(
                json!({"type": "api_error", "message": "Something went wrong on Stripe's end."}),
            ),
        )
        .await;
    let err = stripe
        .provider
        .confirm("pi_3TestIntent", &card("pm_card_visa"), "a")
        .await
        .unwrap_err();
    assert!(matches!(err, PaymentError::Unknown(_)), "{err:?}");
}

#[tokio::test]
async fn a_502_from_a_proxy_leaves_the_outcome_unknown() {
    let stripe = stripe().await;
    Mock::given(method("POST"))
        .and(path(CONFIRM))
        .respond_with(
            ResponseTemplate::new(502).set_body_raw("<html>Bad Gateway</html>", "text/html"),
        )
        .mount(&stripe.server)
        .await;
    let err = stripe
        .provider
        .confirm("pi_3TestIntent", &card("pm_card_visa"), "a")
        .await
        .unwrap_err();
    assert!(matches!(err, PaymentError::Unknown(_)), "{err:?}");
}

#[tokio::test]
async fn a_timeout_leaves_the_outcome_unknown() {
    let stripe = stripe_with_timeout(Duration::from_millis(200)).await;
    Mock::given(method("POST"))
        .and(path(CONFIRM))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(payment_intent(json!({"status": "succeeded"})))
                .set_delay(Duration::from_secs(10)),
        )
        .mount(&stripe.server)
        .await;
    let err = stripe
        .provider
        .confirm("pi_3TestIntent", &card("pm_card_visa"), "a")
        .await
        .unwrap_err();
    assert!(
        matches!(err, PaymentError::Unknown(ref m) if m.contains("timed out")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unreachable_stripe_leaves_the_outcome_unknown() {
    // Nothing listens on the discard port of the loopback interface.
    let config = StripeConfig::new(SECRET, "whsec_test").with_api_base("http://127.0.0.1:9");
    let provider = StripeProvider::new(&config).unwrap();
    let err = provider.status("pi_3TestIntent").await.unwrap_err();
    assert!(matches!(err, PaymentError::Unknown(_)), "{err:?}");
}

#[tokio::test]
async fn a_malformed_body_leaves_the_outcome_unknown() {
    let stripe = stripe().await;
    Mock::given(method("POST"))
        .and(path(CONFIRM))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("{\"id\": \"pi_3Test", "application/json"),
        )
        .mount(&stripe.server)
        .await;
    let err = stripe
        .provider
        .confirm("pi_3TestIntent", &card("pm_card_visa"), "a")
        .await
        .unwrap_err();
    assert!(matches!(err, PaymentError::Unknown(_)), "{err:?}");

    // Valid JSON that is not a PaymentIntent (no status, no amount).
    let other = stripe_with_timeout(Duration::from_secs(5)).await;
    other
        .answer(
            "POST",
            CONFIRM,
            200,
            json!({"id": "pi_3TestIntent", "object": "payment_intent"}),
        )
        .await;
    let err = other
        .provider
        .confirm("pi_3TestIntent", &card("pm_card_visa"), "a")
        .await
        .unwrap_err();
    assert!(matches!(err, PaymentError::Unknown(_)), "{err:?}");
}

// ---------------------------------------------------------------- status

#[tokio::test]
async fn status_reads_every_stripe_status() {
    let cases = [
        ("succeeded", None, PaymentStatus::Succeeded),
        ("requires_action", None, PaymentStatus::RequiresAction),
        ("processing", None, PaymentStatus::Processing),
        ("requires_capture", None, PaymentStatus::Processing),
        ("canceled", None, PaymentStatus::Canceled),
        ("requires_confirmation", None, PaymentStatus::Pending),
        ("requires_payment_method", None, PaymentStatus::Pending),
        (
            "requires_payment_method",
            Some(
                json!({"type": "card_error", "code": "card_declined", "decline_code": "stolen_card", "message": "Your card was declined."}),
            ),
            PaymentStatus::Failed,
        ),
    ];
    for (status, error, expected) in cases {
        let stripe = stripe().await;
        stripe
            .answer(
                "GET",
                "/v1/payment_intents/pi_3TestIntent",
                200,
                payment_intent(json!({
                    "status": status,
                    "last_payment_error": error,
                    "latest_charge": "ch_3TestCharge",
                })),
            )
            .await;
        let intent = stripe.provider.status("pi_3TestIntent").await.unwrap();
        assert_eq!(intent.status, expected, "{status}");
        if expected == PaymentStatus::Failed {
            assert_eq!(intent.failure_code.as_deref(), Some("stolen_card"));
            assert_eq!(
                intent.failure_message.as_deref(),
                Some("Your card was declined.")
            );
        }
        let charge_expected = (expected == PaymentStatus::Succeeded).then_some("ch_3TestCharge");
        assert_eq!(
            intent.transaction_id.as_deref(),
            charge_expected,
            "{status}"
        );
        let sent = stripe.only_request().await;
        assert!(
            sent.headers.get("idempotency-key").is_none(),
            "GETs carry no key"
        );
    }
}

#[tokio::test]
async fn status_of_an_unknown_intent_is_not_found() {
    let stripe = stripe().await;
    stripe
        .answer(
            "GET",
            "/v1/payment_intents/pi_missing",
            404,
            stripe_error(json!({
                "type": "invalid_request_error",
                "code": "resource_missing",
                "param": "intent",
                "message": "No such payment_intent: 'pi_missing'",
            })),
        )
        .await;
    assert_eq!(
        stripe.provider.status("pi_missing").await.unwrap_err(),
        PaymentError::NotFound
    );
}

// ---------------------------------------------------------------- refunds

fn refund(patch: Value) -> Value {
    patched(
        fixture("refund"),
        patched(
            json!({"id": "re_3TestRefund", "payment_intent": "pi_3TestIntent"}),
            patch,
        ),
    )
}

#[tokio::test]
async fn partial_refund_sends_minor_units_and_the_refund_key() {
    let stripe = stripe().await;
    stripe
        .answer(
            "POST",
            "/v1/refunds",
            200,
            refund(json!({"amount": 500, "status": "succeeded"})),
        )
        .await;
    let refunded = stripe
        .provider
        .refund("pi_3TestIntent", money("5.00", "USD"), "checkout-refund-1")
        .await
        .unwrap();
    assert_eq!(refunded.refund_id, "re_3TestRefund");
    assert_eq!(refunded.status, RefundStatus::Succeeded);

    let sent = stripe.only_request().await;
    let fields = form(&sent);
    assert_eq!(fields["payment_intent"], "pi_3TestIntent");
    assert_eq!(fields["amount"], "500");
    assert_eq!(header(&sent, "idempotency-key"), "checkout-refund-1-refund");
}

#[tokio::test]
async fn full_refund_in_kwd_and_jpy_and_pending_refunds() {
    for (amount, code, minor, status, expected) in [
        ("1.500", "KWD", "1500", "pending", RefundStatus::Pending),
        ("1500", "JPY", "1500", "succeeded", RefundStatus::Succeeded),
        ("31.99", "USD", "3199", "failed", RefundStatus::Failed),
    ] {
        let stripe = stripe().await;
        stripe
            .answer(
                "POST",
                "/v1/refunds",
                200,
                refund(json!({
                    "amount": minor.parse::<i64>().unwrap(),
                    "currency": code.to_lowercase(),
                    "status": status,
                })),
            )
            .await;
        let refunded = stripe
            .provider
            .refund("pi_3TestIntent", money(amount, code), "k")
            .await
            .unwrap();
        assert_eq!(refunded.status, expected, "{amount} {code}");
        assert_eq!(form(&stripe.only_request().await)["amount"], minor);
    }
}

#[tokio::test]
async fn refunding_more_than_captured_is_rejected() {
    let stripe = stripe().await;
    stripe
        .answer(
            "POST",
            "/v1/refunds",
            400,
            stripe_error(json!({
                "type": "invalid_request_error",
                "code": "amount_too_large",
                "param": "amount",
                "message": "Refund amount ($50.00) is greater than unrefunded amount on charge ($31.99)",
            })),
        )
        .await;
    let err = stripe
        .provider
        .refund("pi_3TestIntent", money("50.00", "USD"), "k")
        .await
        .unwrap_err();
    assert!(
        matches!(err, PaymentError::Rejected { ref code, .. } if code == "amount_too_large"),
        "{err:?}"
    );
}

// ---------------------------------------------------------------- misc

#[tokio::test]
async fn stripes_example_intent_parses_as_published() {
    // The fixture exactly as Stripe publishes it, sample fields and all.
    let stripe = stripe().await;
    stripe
        .answer(
            "GET",
            "/v1/payment_intents/pi_1PgafyB7WZ01zgkWSjxsAJo3",
            200,
            fixture("payment_intent"),
        )
        .await;
    let intent = stripe
        .provider
        .status("pi_1PgafyB7WZ01zgkWSjxsAJo3")
        .await
        .unwrap();
    assert_eq!(intent.intent_id, "pi_1PgafyB7WZ01zgkWSjxsAJo3");
    // Its sample `last_payment_error` makes it a failed attempt.
    assert_eq!(intent.status, PaymentStatus::Failed);
    assert_eq!(intent.failure_code.as_deref(), Some("idempotency_error"));
}

#[test]
fn the_provider_is_named_stripe_and_hides_its_key() {
    let config = StripeConfig::new(SECRET, "whsec_test");
    let provider = StripeProvider::new(&config).unwrap();
    assert_eq!(provider.name(), "stripe");
    let printed = format!("{provider:?} {config:?}");
    assert!(!printed.contains("4eC39HqLyjWDarjtT1zdp7dc"), "{printed}");
}

#[test]
fn an_invalid_configuration_is_refused_up_front() {
    assert!(StripeProvider::new(&StripeConfig::new("", "w")).is_err());
    assert!(
        StripeProvider::new(&StripeConfig::new("sk_test_x", "w").with_api_base("not a url"))
            .is_err()
    );
}
