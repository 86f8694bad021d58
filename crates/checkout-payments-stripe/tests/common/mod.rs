//! Shared test helpers: Stripe's own example objects (`fixtures3.json` in
//! `shared/fixtures/stripe`, beside the repository) patched per case.

#![allow(dead_code)]

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

/// `<repo>/../shared/fixtures/stripe/fixtures3.json`, as the CI clone lays
/// it out.
const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/stripe/fixtures3.json"
);

fn resources() -> &'static Map<String, Value> {
    static RESOURCES: OnceLock<Map<String, Value>> = OnceLock::new();
    RESOURCES.get_or_init(|| {
        let text = std::fs::read_to_string(FIXTURES)
            .unwrap_or_else(|e| panic!("reading Stripe fixtures at {FIXTURES}: {e}"));
        let all: Value = serde_json::from_str(&text).unwrap();
        all["resources"].as_object().unwrap().clone()
    })
}

/// Stripe's example `resource` (`payment_intent`, `refund`, `charge`,
/// `event`, …) exactly as published.
pub fn fixture(resource: &str) -> Value {
    resources()
        .get(resource)
        .unwrap_or_else(|| panic!("no `{resource}` in fixtures3.json"))
        .clone()
}

/// `base` with the top-level fields of `patch` replaced.
pub fn patched(mut base: Value, patch: Value) -> Value {
    let (Some(target), Value::Object(fields)) = (base.as_object_mut(), patch) else {
        panic!("patching needs two objects");
    };
    for (k, v) in fields {
        target.insert(k, v);
    }
    base
}

/// Stripe's example PaymentIntent turned into a plausible one for a case:
/// the example carries a sample `last_payment_error` and `next_action` on
/// every intent, which a real fresh intent would not have.
pub fn payment_intent(patch: Value) -> Value {
    let base = patched(
        fixture("payment_intent"),
        json!({
            "id": "pi_3TestIntent",
            "client_secret": "pi_3TestIntent_secret_abc",
            "canceled_at": null,
            "last_payment_error": null,
            "next_action": null,
            "status": "requires_payment_method",
        }),
    );
    patched(base, patch)
}

/// Stripe's error body (`{"error": {...}}`).
pub fn stripe_error(error: Value) -> Value {
    json!({ "error": error })
}
