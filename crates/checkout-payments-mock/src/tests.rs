//! The mock provider's behaviour through the port: amount rules end to end,
//! idempotency, refunds, special tokens and the simulated delay.

use std::str::FromStr;

use checkout_domain::{Currency, CustomerId};
use rust_decimal::Decimal;

use super::*;

fn money(amount: &str, currency: &str) -> Money {
    Money::new(
        Decimal::from_str(amount).unwrap(),
        Currency::parse(currency).unwrap(),
    )
    .unwrap()
}

fn request(amount: &str, currency: &str, key: &str) -> CreateIntent {
    CreateIntent {
        order_id: OrderId::from_uuid(Uuid::now_v7()),
        customer_id: CustomerId::parse("cust-42").unwrap(),
        amount: money(amount, currency),
        idempotency_key: key.to_owned(),
        description: "BookVerse order".into(),
    }
}

fn card(token: &str) -> PaymentMethod {
    PaymentMethod::new("card", token).unwrap()
}

/// How a whole create + confirm with `pm_card_visa` ended.
#[derive(Debug, PartialEq)]
enum Ended {
    CreateRejected(String),
    Succeeded,
    Declined(String),
    ConfirmRejected(String),
}

async fn pay(provider: &MockPaymentProvider, amount: &str, currency: &str) -> Ended {
    let intent = match provider
        .create_intent(&request(
            amount,
            currency,
            &format!("k-{amount}-{currency}"),
        ))
        .await
    {
        Ok(intent) => intent,
        Err(PaymentError::Rejected { code, .. }) => return Ended::CreateRejected(code),
        Err(other) => unreachable!("unexpected create error {other:?}"),
    };
    assert_eq!(intent.status, PaymentStatus::Pending);
    match provider
        .confirm(&intent.intent_id, &card("pm_card_visa"), "k-confirm")
        .await
    {
        Ok(confirmed) => {
            assert_eq!(confirmed.status, PaymentStatus::Succeeded);
            assert!(confirmed.transaction_id.is_some());
            Ended::Succeeded
        }
        Err(PaymentError::Declined { code, .. }) => Ended::Declined(code),
        Err(PaymentError::Rejected { code, .. }) => Ended::ConfirmRejected(code),
        Err(other) => unreachable!("unexpected confirm error {other:?}"),
    }
}

#[tokio::test]
async fn amount_rules_through_the_port() {
    use Ended::*;
    let provider = MockPaymentProvider::new(MockOptions::default());
    let table = [
        ("31.99", "USD", Succeeded),
        ("99.99", "USD", Succeeded),
        ("100.00", "USD", Succeeded),
        ("100.01", "USD", Succeeded),
        ("100.13", "USD", CreateRejected("processing_error".into())),
        ("0.13", "USD", CreateRejected("processing_error".into())),
        ("131.99", "USD", Declined("card_declined".into())),
        ("200.00", "USD", ConfirmRejected("processing_error".into())),
        ("99", "JPY", Succeeded),
        ("100", "JPY", Succeeded),
        ("1500", "JPY", ConfirmRejected("processing_error".into())),
        ("1.500", "KWD", Succeeded),
        ("100.130", "KWD", CreateRejected("processing_error".into())),
        ("131.990", "KWD", Declined("card_declined".into())),
        ("131.999", "KWD", Succeeded),
        ("200.000", "KWD", ConfirmRejected("processing_error".into())),
    ];
    for (amount, currency, expected) in table {
        assert_eq!(
            pay(&provider, amount, currency).await,
            expected,
            "{amount} {currency}"
        );
    }
}

#[tokio::test]
async fn a_failed_confirm_leaves_the_intent_failed_with_its_code() {
    let provider = MockPaymentProvider::new(MockOptions::default());
    let intent = provider
        .create_intent(&request("131.99", "USD", "k1"))
        .await
        .unwrap();
    let err = provider
        .confirm(&intent.intent_id, &card("pm_card_visa"), "k1")
        .await
        .unwrap_err();
    assert!(matches!(err, PaymentError::Declined { ref code, .. } if code == "card_declined"));
    let status = provider.status(&intent.intent_id).await.unwrap();
    assert_eq!(status.status, PaymentStatus::Failed);
    assert_eq!(status.failure_code.as_deref(), Some("card_declined"));
    assert!(status.transaction_id.is_none());
}

#[tokio::test]
async fn create_is_idempotent_by_key() {
    let provider = MockPaymentProvider::new(MockOptions::default());
    let first = request("42.00", "USD", "order-1-attempt-1");
    let a = provider.create_intent(&first).await.unwrap();
    let b = provider.create_intent(&first).await.unwrap();
    assert_eq!(a, b);

    let other_key = CreateIntent {
        idempotency_key: "order-1-attempt-2".into(),
        ..first.clone()
    };
    let c = provider.create_intent(&other_key).await.unwrap();
    assert_ne!(a.intent_id, c.intent_id);

    let reused = CreateIntent {
        amount: money("43.00", "USD"),
        ..first
    };
    let err = provider.create_intent(&reused).await.unwrap_err();
    assert!(matches!(err, PaymentError::Rejected { ref code, .. } if code == "idempotency_error"));
}

#[tokio::test]
async fn confirm_is_idempotent_by_key() {
    let provider = MockPaymentProvider::new(MockOptions::default());
    let intent = provider
        .create_intent(&request("42.00", "USD", "k"))
        .await
        .unwrap();
    let a = provider
        .confirm(&intent.intent_id, &card("pm_card_visa"), "k")
        .await
        .unwrap();
    let b = provider
        .confirm(&intent.intent_id, &card("pm_card_visa"), "k")
        .await
        .unwrap();
    assert_eq!(a, b, "a retried confirm replays, never charges twice");
    // A new attempt on a succeeded intent is refused, as Stripe does.
    let err = provider
        .confirm(&intent.intent_id, &card("pm_card_visa"), "k2")
        .await
        .unwrap_err();
    assert!(
        matches!(err, PaymentError::Rejected { ref code, .. } if code == "payment_intent_unexpected_state")
    );
}

#[tokio::test]
async fn unknown_intents_are_not_found() {
    let provider = MockPaymentProvider::new(MockOptions::default());
    assert_eq!(
        provider.status("pi_nope").await.unwrap_err(),
        PaymentError::NotFound
    );
    assert_eq!(
        provider
            .confirm("pi_nope", &card("pm_card_visa"), "k")
            .await
            .unwrap_err(),
        PaymentError::NotFound
    );
    assert_eq!(
        provider
            .refund("pi_nope", money("1.00", "USD"), "r")
            .await
            .unwrap_err(),
        PaymentError::NotFound
    );
    assert_eq!(
        provider.complete_action("pi_nope").unwrap_err(),
        PaymentError::NotFound
    );
}

async fn paid(provider: &MockPaymentProvider, amount: &str) -> String {
    let intent = provider
        .create_intent(&request(amount, "USD", &format!("create-{amount}")))
        .await
        .unwrap();
    provider
        .confirm(&intent.intent_id, &card("pm_card_visa"), "confirm")
        .await
        .unwrap();
    intent.intent_id
}

#[tokio::test]
async fn refunds_partial_then_the_rest_and_never_more_than_captured() {
    let provider = MockPaymentProvider::new(MockOptions::default());
    let id = paid(&provider, "50.00").await;

    let r1 = provider
        .refund(&id, money("20.00", "USD"), "refund-1")
        .await
        .unwrap();
    assert_eq!(r1.status, RefundStatus::Succeeded);
    // Same key: the same refund, nothing refunded twice.
    let again = provider
        .refund(&id, money("20.00", "USD"), "refund-1")
        .await
        .unwrap();
    assert_eq!(r1, again);

    let too_much = provider
        .refund(&id, money("30.01", "USD"), "refund-2")
        .await
        .unwrap_err();
    assert!(
        matches!(too_much, PaymentError::Rejected { ref code, .. } if code == "amount_too_large")
    );

    let r2 = provider
        .refund(&id, money("30.00", "USD"), "refund-3")
        .await
        .unwrap();
    assert_ne!(r1.refund_id, r2.refund_id);

    let after_full = provider
        .refund(&id, money("0.01", "USD"), "refund-4")
        .await
        .unwrap_err();
    assert!(
        matches!(after_full, PaymentError::Rejected { ref code, .. } if code == "charge_already_refunded")
    );

    let reused = provider
        .refund(&id, money("5.00", "USD"), "refund-1")
        .await
        .unwrap_err();
    assert!(
        matches!(reused, PaymentError::Rejected { ref code, .. } if code == "idempotency_error")
    );
}

#[tokio::test]
async fn refunds_need_a_succeeded_payment_in_its_currency() {
    let provider = MockPaymentProvider::new(MockOptions::default());
    let unpaid = provider
        .create_intent(&request("50.00", "USD", "c"))
        .await
        .unwrap();
    let err = provider
        .refund(&unpaid.intent_id, money("1.00", "USD"), "r")
        .await
        .unwrap_err();
    assert!(
        matches!(err, PaymentError::Rejected { ref code, .. } if code == "payment_intent_unexpected_state")
    );

    let id = paid(&provider, "50.00").await;
    let err = provider
        .refund(&id, money("1.00", "EUR"), "r-eur")
        .await
        .unwrap_err();
    assert!(matches!(err, PaymentError::Rejected { ref code, .. } if code == "invalid_request"));
    let err = provider
        .refund(&id, money("0.00", "USD"), "r-zero")
        .await
        .unwrap_err();
    assert!(matches!(err, PaymentError::Rejected { ref code, .. } if code == "amount_too_small"));
}

#[tokio::test]
async fn three_d_secure_requires_action_until_completed() {
    let provider = MockPaymentProvider::new(MockOptions::default());
    let intent = provider
        .create_intent(&request("42.00", "USD", "k"))
        .await
        .unwrap();
    let confirmed = provider
        .confirm(&intent.intent_id, &card(THREE_D_SECURE_TOKEN), "k")
        .await
        .unwrap();
    assert_eq!(confirmed.status, PaymentStatus::RequiresAction);
    assert!(confirmed.client_secret.is_some());
    let next = confirmed.next_action.clone().unwrap();
    assert_eq!(next["type"], "redirect_to_url");
    assert_eq!(
        provider.status(&intent.intent_id).await.unwrap().status,
        PaymentStatus::RequiresAction
    );

    let done = provider.complete_action(&intent.intent_id).unwrap();
    assert_eq!(done.status, PaymentStatus::Succeeded);
    assert!(done.next_action.is_none());
    let status = provider.status(&intent.intent_id).await.unwrap();
    assert_eq!(status.status, PaymentStatus::Succeeded);
    assert!(status.transaction_id.is_some());

    // Only a waiting intent can be completed.
    assert!(matches!(
        provider.complete_action(&intent.intent_id),
        Err(PaymentError::Rejected { .. })
    ));
}

#[tokio::test]
async fn three_d_secure_can_fail() {
    let provider = MockPaymentProvider::new(MockOptions::default());
    let intent = provider
        .create_intent(&request("42.00", "USD", "k"))
        .await
        .unwrap();
    provider
        .confirm(&intent.intent_id, &card(THREE_D_SECURE_TOKEN), "k")
        .await
        .unwrap();
    let failed = provider.fail_action(&intent.intent_id).unwrap();
    assert_eq!(failed.status, PaymentStatus::Failed);
    assert_eq!(
        failed.failure_code.as_deref(),
        Some("payment_intent_authentication_failure")
    );
}

#[tokio::test]
async fn the_three_d_secure_token_is_configurable() {
    let provider = MockPaymentProvider::new(MockOptions {
        three_d_secure_tokens: vec!["pm_card_custom3ds".into()],
        ..MockOptions::default()
    });
    let a = provider
        .create_intent(&request("42.00", "USD", "a"))
        .await
        .unwrap();
    let confirmed = provider
        .confirm(&a.intent_id, &card("pm_card_custom3ds"), "a")
        .await
        .unwrap();
    assert_eq!(confirmed.status, PaymentStatus::RequiresAction);
    // The default token is no longer special.
    let b = provider
        .create_intent(&request("42.00", "USD", "b"))
        .await
        .unwrap();
    let confirmed = provider
        .confirm(&b.intent_id, &card(THREE_D_SECURE_TOKEN), "b")
        .await
        .unwrap();
    assert_eq!(confirmed.status, PaymentStatus::Succeeded);
}

#[tokio::test]
async fn the_timeout_token_loses_the_answer_but_the_payment_went_through() {
    let provider = MockPaymentProvider::new(MockOptions::default());
    let intent = provider
        .create_intent(&request("42.00", "USD", "k"))
        .await
        .unwrap();
    let err = provider
        .confirm(&intent.intent_id, &card(TIMEOUT_TOKEN), "k")
        .await
        .unwrap_err();
    assert!(matches!(err, PaymentError::Unknown(_)));
    let status = provider.status(&intent.intent_id).await.unwrap();
    assert_eq!(status.status, PaymentStatus::Succeeded);
    assert!(status.transaction_id.is_some());
    // Retrying the same attempt replays what really happened.
    let retried = provider
        .confirm(&intent.intent_id, &card(TIMEOUT_TOKEN), "k")
        .await
        .unwrap();
    assert_eq!(retried, status);
}

#[tokio::test]
async fn decline_tokens_decline_whatever_the_amount() {
    let provider = MockPaymentProvider::new(MockOptions::default());
    for (token, code) in [
        (DECLINED_TOKEN, "card_declined"),
        (INSUFFICIENT_FUNDS_TOKEN, "insufficient_funds"),
    ] {
        let intent = provider
            .create_intent(&request("10.00", "USD", token))
            .await
            .unwrap();
        let err = provider
            .confirm(&intent.intent_id, &card(token), "k")
            .await
            .unwrap_err();
        assert!(
            matches!(err, PaymentError::Declined { code: ref c, .. } if c == code),
            "{token}: {err:?}"
        );
        // A declined intent can be confirmed again with another card.
        let retried = provider
            .confirm(&intent.intent_id, &card("pm_card_visa"), "k2")
            .await
            .unwrap();
        assert_eq!(retried.status, PaymentStatus::Succeeded);
    }
}

#[tokio::test]
async fn the_same_confirm_key_with_another_card_is_refused() {
    let provider = MockPaymentProvider::new(MockOptions::default());
    let intent = provider
        .create_intent(&request("10.00", "USD", "k"))
        .await
        .unwrap();
    provider
        .confirm(&intent.intent_id, &card(DECLINED_TOKEN), "k")
        .await
        .unwrap_err();
    let err = provider
        .confirm(&intent.intent_id, &card("pm_card_visa"), "k")
        .await
        .unwrap_err();
    assert!(matches!(err, PaymentError::Rejected { ref code, .. } if code == "idempotency_error"));
}

#[tokio::test(start_paused = true)]
async fn the_delay_is_simulated_on_tokio_time() {
    let provider = MockPaymentProvider::new(MockOptions {
        delay: Duration::from_secs(5),
        ..MockOptions::default()
    });
    let start = tokio::time::Instant::now();
    provider
        .create_intent(&request("10.00", "USD", "k"))
        .await
        .unwrap();
    // Paused time: the clock advanced by exactly the delay, no real waiting.
    assert_eq!(start.elapsed(), Duration::from_secs(5));

    // A caller's timeout shorter than the delay fires first.
    let slow = tokio::time::timeout(Duration::from_secs(1), provider.status("pi_x")).await;
    assert!(slow.is_err());
}

#[tokio::test(start_paused = true)]
async fn no_delay_by_default() {
    let provider = MockPaymentProvider::new(MockOptions::default());
    let start = tokio::time::Instant::now();
    provider
        .create_intent(&request("10.00", "USD", "k"))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[test]
fn the_provider_is_named_mock() {
    assert_eq!(MockPaymentProvider::default().name(), "mock");
}

#[tokio::test]
async fn only_the_most_recent_intents_are_remembered_with_their_keys() {
    let provider = MockPaymentProvider::new(MockOptions {
        retained_intents: 2,
        ..MockOptions::default()
    });
    let mut ids = Vec::new();
    for key in ["k1", "k2", "k3"] {
        let intent = provider
            .create_intent(&request("42.00", "USD", key))
            .await
            .unwrap();
        provider
            .confirm(
                &intent.intent_id,
                &card("pm_card_visa"),
                &format!("c-{key}"),
            )
            .await
            .unwrap();
        provider
            .refund(&intent.intent_id, money("1.00", "USD"), &format!("r-{key}"))
            .await
            .unwrap();
        ids.push(intent.intent_id);
    }
    // The oldest is forgotten, as an expired intent would be.
    assert_eq!(
        provider.status(&ids[0]).await.unwrap_err(),
        PaymentError::NotFound
    );
    for id in &ids[1..] {
        assert_eq!(
            provider.status(id).await.unwrap().status,
            PaymentStatus::Succeeded
        );
    }
    {
        let state = provider.lock();
        assert_eq!(
            (
                state.intents.len(),
                state.creates.len(),
                state.confirms.len(),
                state.refunds.len(),
                state.created.len()
            ),
            (2, 2, 2, 2, 2)
        );
    }
    // Its create key starts afresh.
    let again = provider
        .create_intent(&request("42.00", "USD", "k1"))
        .await
        .unwrap();
    assert_ne!(again.intent_id, ids[0]);
    assert_eq!(
        provider.status(&ids[1]).await.unwrap_err(),
        PaymentError::NotFound
    );
}
