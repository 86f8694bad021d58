//! Webhook verification over Stripe's example event, signed the way Stripe
//! signs it: valid deliveries, forged or tampered ones, missing headers,
//! replays outside the tolerance, and rolled secrets (several `v1`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod common;

use std::time::Duration;

use checkout_payments_stripe::{
    DEFAULT_TOLERANCE, StripeWebhookVerifier, WebhookEvent, sign_webhook, verify_webhook,
};
use checkout_ports::{ProviderEvent, WebhookError, WebhookVerifier};
use common::{fixture, patched, payment_intent};
use serde_json::json;
use time::OffsetDateTime;
use time::macros::datetime;

const SECRET: &str = "whsec_test_secret";
const SENT_AT: OffsetDateTime = datetime!(2026-11-25 10:00:00 UTC);

fn intent_succeeded() -> Vec<u8> {
    let event = patched(
        fixture("event"),
        json!({
            "id": "evt_3TestSucceeded",
            "type": "payment_intent.succeeded",
            "created": SENT_AT.unix_timestamp() - 2,
            "data": {"object": payment_intent(json!({"status": "succeeded"}))},
        }),
    );
    serde_json::to_vec(&event).unwrap()
}

fn charge_refunded() -> Vec<u8> {
    let charge = patched(
        fixture("charge"),
        json!({"payment_intent": "pi_3TestIntent", "refunded": true, "amount_refunded": 100}),
    );
    let event = patched(
        fixture("event"),
        json!({"id": "evt_3TestRefunded", "type": "charge.refunded", "data": {"object": charge}}),
    );
    serde_json::to_vec(&event).unwrap()
}

fn verify(payload: &[u8], header: &str, now: OffsetDateTime) -> Result<WebhookEvent, WebhookError> {
    verify_webhook(payload, header, SECRET, now, DEFAULT_TOLERANCE)
}

#[test]
fn a_signed_payment_intent_event_verifies_and_names_its_intent() {
    let payload = intent_succeeded();
    let header = sign_webhook(&payload, SECRET, SENT_AT);
    assert!(header.starts_with(&format!("t={},v1=", SENT_AT.unix_timestamp())));
    let event = verify(&payload, &header, SENT_AT + Duration::from_secs(3)).unwrap();
    assert_eq!(
        event,
        WebhookEvent {
            id: "evt_3TestSucceeded".into(),
            event_type: "payment_intent.succeeded".into(),
            intent_id: Some("pi_3TestIntent".into()),
            created: SENT_AT - Duration::from_secs(2),
        }
    );
}

#[test]
fn a_charge_refunded_event_names_the_charges_intent() {
    let payload = charge_refunded();
    let header = sign_webhook(&payload, SECRET, SENT_AT);
    let event = verify(&payload, &header, SENT_AT).unwrap();
    assert_eq!(event.event_type, "charge.refunded");
    assert_eq!(event.intent_id.as_deref(), Some("pi_3TestIntent"));
    assert_eq!(event.created.unix_timestamp(), 1234567890);
}

#[test]
fn stripes_example_event_verifies_and_concerns_no_intent() {
    let payload = serde_json::to_vec(&fixture("event")).unwrap();
    let header = sign_webhook(&payload, SECRET, SENT_AT);
    let event = verify(&payload, &header, SENT_AT).unwrap();
    assert_eq!(event.event_type, "plan.created");
    assert_eq!(event.intent_id, None);
}

#[test]
fn a_signature_with_another_secret_is_refused() {
    let payload = intent_succeeded();
    let header = sign_webhook(&payload, "whsec_someone_else", SENT_AT);
    assert_eq!(
        verify(&payload, &header, SENT_AT),
        Err(WebhookError::InvalidSignature)
    );
}

#[test]
fn a_tampered_payload_is_refused() {
    let payload = intent_succeeded();
    let header = sign_webhook(&payload, SECRET, SENT_AT);
    let mut tampered = payload.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    assert_eq!(
        verify(&tampered, &header, SENT_AT),
        Err(WebhookError::InvalidSignature)
    );
}

#[test]
fn a_moved_timestamp_breaks_the_signature() {
    // Replaying an old signature with a fresh `t` does not verify: `t` is
    // part of what is signed.
    let payload = intent_succeeded();
    let header = sign_webhook(&payload, SECRET, SENT_AT);
    let v1 = header.split_once(",v1=").unwrap().1;
    let later = SENT_AT + Duration::from_secs(3600);
    let forged = format!("t={},v1={v1}", later.unix_timestamp());
    assert_eq!(
        verify(&payload, &forged, later),
        Err(WebhookError::InvalidSignature)
    );
}

#[test]
fn a_missing_header_is_missing_a_garbled_one_invalid() {
    let payload = intent_succeeded();
    assert_eq!(
        verify(&payload, "", SENT_AT),
        Err(WebhookError::MissingSignature)
    );
    assert_eq!(
        verify(&payload, "   ", SENT_AT),
        Err(WebhookError::MissingSignature)
    );
    for garbled in ["garbage", "t=123", "v1=abcd", "t=x,v1=abcd", "t=123,v1=zz"] {
        assert_eq!(
            verify(&payload, garbled, SENT_AT),
            Err(WebhookError::InvalidSignature),
            "{garbled}"
        );
    }
}

#[test]
fn timestamps_outside_the_tolerance_are_stale() {
    let payload = intent_succeeded();
    let header = sign_webhook(&payload, SECRET, SENT_AT);
    let edge = SENT_AT + DEFAULT_TOLERANCE;
    assert!(
        verify(&payload, &header, edge).is_ok(),
        "300 s is still fine"
    );
    assert_eq!(
        verify(&payload, &header, edge + Duration::from_secs(1)),
        Err(WebhookError::StaleTimestamp)
    );
    // A timestamp far in the future (a skewed or forged clock) too.
    assert_eq!(
        verify(&payload, &header, SENT_AT - Duration::from_secs(301)),
        Err(WebhookError::StaleTimestamp)
    );
    // The tolerance is the caller's to choose.
    assert!(
        verify_webhook(
            &payload,
            &header,
            SECRET,
            SENT_AT + Duration::from_secs(3600),
            Duration::from_secs(7200)
        )
        .is_ok()
    );
}

#[test]
fn any_matching_v1_among_several_is_enough() {
    // While a secret is rolled Stripe signs with both; other schemes are
    // ignored.
    let payload = intent_succeeded();
    let good = sign_webhook(&payload, SECRET, SENT_AT);
    let good_v1 = good.split_once(",v1=").unwrap().1;
    let old = sign_webhook(&payload, "whsec_old_secret", SENT_AT);
    let old_v1 = old.split_once(",v1=").unwrap().1;
    let t = SENT_AT.unix_timestamp();
    let header = format!("t={t},v1={old_v1},v1={good_v1},v0=deadbeef");
    assert!(verify(&payload, &header, SENT_AT).is_ok());
    let header = format!("t={t},v0={good_v1},v1={old_v1}");
    assert_eq!(
        verify(&payload, &header, SENT_AT),
        Err(WebhookError::InvalidSignature),
        "a v0 is never accepted in place of a v1"
    );
}

#[test]
fn a_signed_but_unreadable_event_is_malformed() {
    let payload = br#"{"id": "evt_1", "type": "payment_intent.succeeded"}"#;
    let header = sign_webhook(payload, SECRET, SENT_AT);
    assert!(matches!(
        verify(payload, &header, SENT_AT),
        Err(WebhookError::Malformed(_))
    ));
}

#[test]
fn the_port_verifier_checks_and_converts() {
    let verifier = StripeWebhookVerifier::new(SECRET);
    assert_eq!(verifier.provider(), "stripe");
    assert!(!format!("{verifier:?}").contains(SECRET));
    let payload = intent_succeeded();
    let header = sign_webhook(&payload, SECRET, SENT_AT);
    assert_eq!(
        verifier.verify(&payload, &header, SENT_AT).unwrap(),
        ProviderEvent {
            event_id: "evt_3TestSucceeded".into(),
            event_type: "payment_intent.succeeded".into(),
            intent_id: Some("pi_3TestIntent".into()),
        }
    );
    assert_eq!(
        verifier.verify(&payload, "", SENT_AT),
        Err(WebhookError::MissingSignature)
    );
    let strict = StripeWebhookVerifier::new(SECRET).with_tolerance(Duration::from_secs(1));
    assert_eq!(
        strict.verify(&payload, &header, SENT_AT + Duration::from_secs(2)),
        Err(WebhookError::StaleTimestamp)
    );
}
