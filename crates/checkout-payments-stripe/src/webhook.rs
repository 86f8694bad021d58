//! Stripe webhook signatures: verifying a delivery and signing one.
//!
//! Stripe signs each delivery with the endpoint's secret: the
//! `Stripe-Signature` header is `t=<unix seconds>,v1=<hex>[,v1=<hex>…]`,
//! where each `v1` is HMAC-SHA256 over `"{t}.{raw body}"` (several `v1` while
//! a secret is being rolled; `v0` and unknown schemes are ignored). A
//! delivery is accepted when one `v1` matches — compared in constant time —
//! and `t` is within the tolerance of now (300 s by default), which bounds
//! replays.
//!
//! Verification is a pure function with `now` passed in, so stale and future
//! timestamps are testable without a clock. What the event *means* is not
//! trusted beyond naming the intent: the checkout settles the order from the
//! intent's current status at Stripe (see the `WebhookVerifier` port).

use std::fmt;
use std::time::Duration;

use checkout_ports::{ProviderEvent, WebhookError, WebhookVerifier};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// Stripe's own libraries' default tolerance between `t` and now.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

type HmacSha256 = Hmac<Sha256>;

/// SHA-256's block size: HMAC keys are padded (or first hashed) to it.
const BLOCK: usize = 64;

/// A verified Stripe event, as much of it as the checkout needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// `evt_…`; the same on every redelivery, so it de-duplicates.
    pub id: String,
    /// `payment_intent.succeeded`, `charge.refunded`, …
    pub event_type: String,
    /// The payment intent concerned: the object's id for `payment_intent.*`
    /// events, the object's `payment_intent` for charges and refunds.
    pub intent_id: Option<String>,
    /// When Stripe created the event (not when it was delivered).
    pub created: OffsetDateTime,
}

impl From<WebhookEvent> for ProviderEvent {
    fn from(event: WebhookEvent) -> Self {
        ProviderEvent {
            event_id: event.id,
            event_type: event.event_type,
            intent_id: event.intent_id,
        }
    }
}

/// Verifies a delivery's signature header against `secret` and parses the
/// event. `signature_header` is the `Stripe-Signature` value, empty when the
/// header was missing.
pub fn verify_webhook(
    payload: &[u8],
    signature_header: &str,
    secret: &str,
    now: OffsetDateTime,
    tolerance: Duration,
) -> Result<WebhookEvent, WebhookError> {
    if signature_header.trim().is_empty() {
        return Err(WebhookError::MissingSignature);
    }
    let (timestamp, signatures) = parse_header(signature_header)?;
    let mac = signed_mac(secret, timestamp, payload);
    let matched = signatures
        .iter()
        .filter_map(|s| hex::decode(s).ok())
        // `verify_slice` compares in constant time.
        .any(|candidate| mac.clone().verify_slice(&candidate).is_ok());
    if !matched {
        return Err(WebhookError::InvalidSignature);
    }
    let age = now.unix_timestamp().abs_diff(timestamp);
    if age > tolerance.as_secs() {
        return Err(WebhookError::StaleTimestamp);
    }
    parse_event(payload)
}

/// The `Stripe-Signature` value Stripe would send for `payload` at
/// `timestamp`: for tests, here and in the crates that receive webhooks.
pub fn sign_webhook(payload: &[u8], secret: &str, timestamp: OffsetDateTime) -> String {
    let t = timestamp.unix_timestamp();
    let signature = signed_mac(secret, t, payload).finalize().into_bytes();
    format!("t={t},v1={}", hex::encode(signature))
}

/// `t` and every `v1` of the header; a header without both is a bad
/// signature, not a missing one.
fn parse_header(header: &str) -> Result<(i64, Vec<&str>), WebhookError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" if timestamp.is_none() => timestamp = value.trim().parse::<i64>().ok(),
            "v1" => signatures.push(value.trim()),
            _ => {}
        }
    }
    match timestamp {
        Some(t) if !signatures.is_empty() => Ok((t, signatures)),
        _ => Err(WebhookError::InvalidSignature),
    }
}

/// HMAC-SHA256 keyed with `secret`, fed `"{t}.{payload}"`.
fn signed_mac(secret: &str, timestamp: i64, payload: &[u8]) -> HmacSha256 {
    let mut mac = hmac_sha256(secret.as_bytes());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// HMAC-SHA256 with the key brought to the block size the way RFC 2104
/// does it (a longer key is hashed first, then zero-padded), which makes
/// construction infallible: no `Result` to unwrap for a key length that
/// cannot be wrong. The RFC 4231 vectors in the tests pin it.
fn hmac_sha256(key: &[u8]) -> HmacSha256 {
    let mut block = [0_u8; BLOCK];
    if key.len() > BLOCK {
        let digest = Sha256::digest(key);
        block[..digest.len()].copy_from_slice(&digest);
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    <HmacSha256 as Mac>::new(&block.into())
}

#[derive(Deserialize)]
struct RawEvent {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    created: i64,
    data: RawData,
}

#[derive(Deserialize)]
struct RawData {
    object: Value,
}

fn parse_event(payload: &[u8]) -> Result<WebhookEvent, WebhookError> {
    let raw: RawEvent =
        serde_json::from_slice(payload).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    let created = OffsetDateTime::from_unix_timestamp(raw.created)
        .map_err(|e| WebhookError::Malformed(format!("created: {e}")))?;
    let intent_id = intent_of(&raw.event_type, &raw.data.object);
    Ok(WebhookEvent {
        id: raw.id,
        event_type: raw.event_type,
        intent_id,
        created,
    })
}

fn intent_of(event_type: &str, object: &Value) -> Option<String> {
    if event_type.starts_with("payment_intent.") {
        return object.get("id").and_then(Value::as_str).map(str::to_owned);
    }
    // Charges, refunds and disputes name their intent, as an id or, when
    // expanded, as an object.
    match object.get("payment_intent")? {
        Value::String(id) => Some(id.clone()),
        Value::Object(intent) => intent.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// The [`WebhookVerifier`] port over [`verify_webhook`], for the HTTP edge.
#[derive(Clone)]
pub struct StripeWebhookVerifier {
    secret: String,
    tolerance: Duration,
}

impl StripeWebhookVerifier {
    /// A verifier for the endpoint secret `whsec_…`, with Stripe's 300 s
    /// tolerance.
    pub fn new(secret: impl Into<String>) -> Self {
        Self {
            secret: secret.into(),
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// The same verifier with another tolerance.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }
}

impl fmt::Debug for StripeWebhookVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeWebhookVerifier")
            .field("secret", &"<redacted>")
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

impl WebhookVerifier for StripeWebhookVerifier {
    fn provider(&self) -> &str {
        "stripe"
    }

    fn verify(
        &self,
        payload: &[u8],
        signature: &str,
        now: OffsetDateTime,
    ) -> Result<ProviderEvent, WebhookError> {
        verify_webhook(payload, signature, &self.secret, now, self.tolerance).map(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test cases 1 (short key), 2 (short key, short data) and 6
    /// (131-byte key, hashed first): the block-key construction is HMAC.
    #[test]
    fn hmac_matches_rfc_4231() {
        let cases: [(&[u8], &[u8], &str); 3] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
        ];
        for (key, data, expected) in cases {
            let mut mac = hmac_sha256(key);
            mac.update(data);
            assert_eq!(hex::encode(mac.finalize().into_bytes()), expected);
        }
    }

    /// The header matches one computed independently (Python's `hmac`
    /// over `"1700000000." + body`), so the scheme is Stripe's, not merely
    /// self-consistent.
    #[test]
    fn signature_matches_an_independent_computation() {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(
            sign_webhook(br#"{"id":"evt_1"}"#, "whsec_test_secret", at),
            "t=1700000000,v1=248a374f50f943a28b0f6ab50faf9a7e7e29b710fa26df9fb1618b9bf8ea9c9a"
        );
    }

    #[test]
    fn header_parsing_ignores_other_schemes_and_spaces() {
        let (t, v1) = parse_header("t=12, v0=aa ,v1=bb,v1=cc,x=1").unwrap();
        assert_eq!(t, 12);
        assert_eq!(v1, vec!["bb", "cc"]);
        assert_eq!(parse_header("v1=bb"), Err(WebhookError::InvalidSignature));
        assert_eq!(
            parse_header("t=12,v0=aa"),
            Err(WebhookError::InvalidSignature)
        );
        assert_eq!(
            parse_header("t=soon,v1=aa"),
            Err(WebhookError::InvalidSignature)
        );
    }

    #[test]
    fn intent_ids_per_event_kind() {
        let pi = serde_json::json!({"id": "pi_1", "object": "payment_intent"});
        assert_eq!(
            intent_of("payment_intent.succeeded", &pi).as_deref(),
            Some("pi_1")
        );
        let charge = serde_json::json!({"id": "ch_1", "payment_intent": "pi_2"});
        assert_eq!(
            intent_of("charge.refunded", &charge).as_deref(),
            Some("pi_2")
        );
        let expanded = serde_json::json!({"id": "re_1", "payment_intent": {"id": "pi_3"}});
        assert_eq!(
            intent_of("refund.updated", &expanded).as_deref(),
            Some("pi_3")
        );
        let plan = serde_json::json!({"id": "price_1"});
        assert_eq!(intent_of("plan.created", &plan), None);
    }
}
