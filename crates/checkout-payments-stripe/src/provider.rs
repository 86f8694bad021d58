//! The [`PaymentProvider`] port over Stripe PaymentIntents and Refunds.
//!
//! Flow: `create_intent` creates an unconfirmed PaymentIntent (automatic
//! capture, automatic payment methods without redirects, so a server-side
//! confirm needs no `return_url`); `confirm` confirms it with the customer's
//! payment-method token; `status` retrieves it; `refund` refunds part or all
//! of it. Every POST carries an `Idempotency-Key` derived from the key the
//! checkout gives (`{key}-create`, `{key}-confirm`, `{key}-refund`), so a
//! retried call replays Stripe's first answer instead of charging again.
//!
//! Answers are translated once, here, into the port's contract:
//!
//! | Stripe says | port |
//! |---|---|
//! | `succeeded` | `Succeeded`, `latest_charge` as the transaction id |
//! | `requires_action` | `RequiresAction` with `next_action` and the client secret |
//! | `processing`, `requires_capture` | `Processing` |
//! | `requires_payment_method` with a `last_payment_error` | confirm: `Err(Declined)`; status: `Failed` with the error's code |
//! | `requires_payment_method` / `requires_confirmation` otherwise | status: `Pending`; confirm: `Err(Rejected)` (confirm did not take) |
//! | `canceled` | `Canceled` |
//! | HTTP 402 or an error of type `card_error` | `Err(Declined { code: decline_code or code })` |
//! | HTTP 404 | `Err(NotFound)` |
//! | HTTP 409 (same key still in flight) | `Err(Unknown)` — the first request's outcome is not known yet |
//! | other 4xx | `Err(Rejected { code })` |
//! | 5xx, timeout, transport error, unreadable body | `Err(Unknown)` — settle later with `status` |

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use checkout_domain::{Money, PaymentMethod, PaymentStatus};
use checkout_ports::{
    CreateIntent, PaymentError, PaymentIntent, PaymentProvider, ProviderRefund, RefundStatus,
};
use serde_json::Value;
use sha2::{Digest, Sha256};
use stripe::{
    ApiErrors, ApiErrorsType, Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError,
    StripeRequest,
};
use stripe_core::payment_intent::{
    ConfirmPaymentIntent, CreatePaymentIntent, CreatePaymentIntentAutomaticPaymentMethods,
    CreatePaymentIntentAutomaticPaymentMethodsAllowRedirects, RetrievePaymentIntent,
};
use stripe_core::refund::CreateRefund;
use stripe_shared::{PaymentIntentStatus, Refund};
use tracing::{debug, warn};

use crate::amount::to_stripe_amount;
use crate::config::{StripeConfig, StripeConfigError};

/// The Stripe payment provider.
#[derive(Clone)]
pub struct StripeProvider {
    client: Client,
    api_base: String,
}

impl fmt::Debug for StripeProvider {
    /// The client holds the secret key; only where it points is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeProvider")
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

impl StripeProvider {
    /// A provider for `config` (validated first; nothing is sent yet).
    pub fn new(config: &StripeConfig) -> Result<Self, StripeConfigError> {
        config.validate()?;
        let api_base = config.api_base.trim().trim_end_matches('/').to_owned();
        let client = ClientBuilder::new(config.secret_key.clone())
            // async-stripe appends `v1/…` to the base, which must end in `/`.
            .url(format!("{api_base}/"))
            .timeout(config.timeout)
            // One attempt per call: the checkout owns retries (with the same
            // idempotency key) and the payment timeout.
            .request_strategy(RequestStrategy::Once)
            .app_info(
                "bookverse-checkout",
                Some(env!("CARGO_PKG_VERSION").into()),
                None,
            )
            .build()
            .map_err(|e| match e {
                StripeError::ConfigError(_) => StripeConfigError::InvalidApiBase(api_base.clone()),
                _ => StripeConfigError::InvalidSecretKey,
            })?;
        Ok(Self { client, api_base })
    }
}

#[async_trait]
impl PaymentProvider for StripeProvider {
    fn name(&self) -> &str {
        "stripe"
    }

    async fn create_intent(&self, request: &CreateIntent) -> Result<PaymentIntent, PaymentError> {
        let amount = to_stripe_amount(&request.amount).map_err(|e| PaymentError::Rejected {
            code: "amount_not_supported".into(),
            message: e.to_string(),
        })?;
        let metadata = HashMap::from([
            ("order_id".to_owned(), request.order_id.to_string()),
            ("customer_id".to_owned(), request.customer_id.to_string()),
        ]);
        let mut automatic = CreatePaymentIntentAutomaticPaymentMethods::new(true);
        automatic.allow_redirects =
            Some(CreatePaymentIntentAutomaticPaymentMethodsAllowRedirects::Never);
        let key = idempotency_key(&request.idempotency_key, "create")?;
        debug!(order_id = %request.order_id, amount = amount.amount, currency = %amount.currency, "creating a Stripe PaymentIntent");
        let currency = amount
            .currency
            .parse::<stripe_types::Currency>()
            .unwrap_or_else(|never| match never {});
        let created = CreatePaymentIntent::new(amount.amount, currency)
            .description(request.description.clone())
            .metadata(metadata)
            .automatic_payment_methods(automatic)
            .customize()
            .request_strategy(RequestStrategy::Idempotent(key))
            .send(&self.client)
            .await
            .map_err(|e| map_error("create", e))?;
        Ok(to_port_intent(&created))
    }

    async fn confirm(
        &self,
        intent_id: &str,
        method: &PaymentMethod,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, PaymentError> {
        let key = self::idempotency_key(idempotency_key, "confirm")?;
        let confirmed = ConfirmPaymentIntent::new(intent_id)
            .payment_method(method.token())
            .customize()
            .request_strategy(RequestStrategy::Idempotent(key))
            .send(&self.client)
            .await
            .map_err(|e| map_error("confirm", e))?;
        let intent = to_port_intent(&confirmed);
        match confirmed.status {
            PaymentIntentStatus::Succeeded
            | PaymentIntentStatus::RequiresAction
            | PaymentIntentStatus::Processing
            | PaymentIntentStatus::RequiresCapture
            | PaymentIntentStatus::Canceled => Ok(intent),
            PaymentIntentStatus::RequiresPaymentMethod => match confirmed.last_payment_error {
                Some(error) => Err(decline_or_reject(&error)),
                None => Err(PaymentError::Rejected {
                    code: "requires_payment_method".into(),
                    message: format!("Stripe left {intent_id} waiting for a payment method"),
                }),
            },
            PaymentIntentStatus::RequiresConfirmation => Err(PaymentError::Rejected {
                code: "requires_confirmation".into(),
                message: format!("Stripe left {intent_id} unconfirmed"),
            }),
            // A status this adapter does not know: the money may or may not
            // have moved, so the reconciler must look again.
            other => Err(PaymentError::Unknown(format!(
                "Stripe answered status `{}` for {intent_id}",
                other.as_str()
            ))),
        }
    }

    async fn status(&self, intent_id: &str) -> Result<PaymentIntent, PaymentError> {
        let intent = RetrievePaymentIntent::new(intent_id)
            .customize()
            .send(&self.client)
            .await
            .map_err(|e| map_error("retrieve", e))?;
        Ok(to_port_intent(&intent))
    }

    async fn refund(
        &self,
        intent_id: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<ProviderRefund, PaymentError> {
        let stripe_amount = to_stripe_amount(&amount).map_err(|e| PaymentError::Rejected {
            code: "amount_not_supported".into(),
            message: e.to_string(),
        })?;
        let key = self::idempotency_key(idempotency_key, "refund")?;
        let refund = CreateRefund::new()
            .payment_intent(intent_id)
            .amount(stripe_amount.amount)
            .customize()
            .request_strategy(RequestStrategy::Idempotent(key))
            .send(&self.client)
            .await
            .map_err(|e| map_error("refund", e))?;
        Ok(to_port_refund(&refund))
    }
}

/// Stripe's key limit.
const MAX_KEY_LEN: usize = 255;

/// The per-operation idempotency key: `{key}-{operation}`, stable for every
/// retry of the same attempt because it depends on nothing else. A key that
/// would pass Stripe's 255-character limit is replaced by its SHA-256, which
/// is just as stable.
fn idempotency_key(key: &str, operation: &str) -> Result<IdempotencyKey, PaymentError> {
    let mut derived = format!("{key}-{operation}");
    if derived.len() > MAX_KEY_LEN {
        derived = format!(
            "{}-{operation}",
            hex::encode(Sha256::digest(key.as_bytes()))
        );
    }
    IdempotencyKey::new(derived).map_err(|e| PaymentError::Rejected {
        code: "invalid_idempotency_key".into(),
        message: e.to_string(),
    })
}

/// The port's view of a Stripe PaymentIntent.
fn to_port_intent(intent: &stripe_shared::PaymentIntent) -> PaymentIntent {
    let status = match &intent.status {
        PaymentIntentStatus::Succeeded => PaymentStatus::Succeeded,
        PaymentIntentStatus::RequiresAction => PaymentStatus::RequiresAction,
        PaymentIntentStatus::Processing | PaymentIntentStatus::RequiresCapture => {
            PaymentStatus::Processing
        }
        PaymentIntentStatus::Canceled => PaymentStatus::Canceled,
        PaymentIntentStatus::RequiresPaymentMethod if intent.last_payment_error.is_some() => {
            PaymentStatus::Failed
        }
        PaymentIntentStatus::RequiresPaymentMethod | PaymentIntentStatus::RequiresConfirmation => {
            PaymentStatus::Pending
        }
        // `Unknown(..)` and statuses added after this adapter was written.
        _ => PaymentStatus::Unknown,
    };
    let transaction_id = (status == PaymentStatus::Succeeded)
        .then(|| intent.latest_charge.as_ref().map(|c| c.id().to_string()))
        .flatten();
    let (failure_code, failure_message) = match (&intent.last_payment_error, status) {
        (Some(error), PaymentStatus::Failed | PaymentStatus::Canceled) => {
            (Some(error_code(error)), error.message.clone())
        }
        _ => (None, None),
    };
    PaymentIntent {
        intent_id: intent.id.to_string(),
        status,
        transaction_id,
        client_secret: intent.client_secret.clone(),
        next_action: intent.next_action.as_ref().and_then(|action| {
            serde_json::to_value(action)
                .map(without_nulls)
                .map_err(|e| warn!(error = %e, "could not render Stripe's next_action"))
                .ok()
        }),
        failure_code,
        failure_message,
    }
}

/// Stripe's typed `next_action` serialises every absent field as `null`;
/// the client only needs the ones that are there.
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

fn to_port_refund(refund: &Refund) -> ProviderRefund {
    let status = match refund.status.as_deref() {
        Some("succeeded") => RefundStatus::Succeeded,
        Some("failed" | "canceled") => RefundStatus::Failed,
        // `pending`, `requires_action`, or a status added later: not done yet.
        _ => RefundStatus::Pending,
    };
    ProviderRefund {
        refund_id: refund.id.to_string(),
        status,
    }
}

/// The code the checkout records for a failed payment: the issuer's decline
/// code when there is one (`insufficient_funds`), else Stripe's error code.
fn error_code(error: &ApiErrors) -> String {
    error
        .decline_code
        .clone()
        .or_else(|| error.code.as_ref().map(|c| c.as_str().to_owned()))
        .unwrap_or_else(|| error.type_.as_str().to_owned())
}

fn error_message(error: &ApiErrors) -> String {
    error
        .message
        .clone()
        .unwrap_or_else(|| format!("Stripe {}", error.type_.as_str()))
}

/// A payment error Stripe reported on the intent: card errors are declines,
/// anything else a definite refusal.
fn decline_or_reject(error: &ApiErrors) -> PaymentError {
    if matches!(error.type_, ApiErrorsType::CardError) {
        PaymentError::Declined {
            code: error_code(error),
            message: error_message(error),
        }
    } else {
        PaymentError::Rejected {
            code: error_code(error),
            message: error_message(error),
        }
    }
}

/// Translates a failed call (see the module docs for the table).
fn map_error(operation: &str, error: StripeError) -> PaymentError {
    let mapped = match error {
        StripeError::Stripe(api, status) => match status {
            402 => declined(&api),
            404 => PaymentError::NotFound,
            409 => PaymentError::Unknown(format!(
                "Stripe {operation}: a request with the same idempotency key is in flight ({})",
                error_message(&api)
            )),
            400..=499 if matches!(api.type_, ApiErrorsType::CardError) => declined(&api),
            400..=499 => PaymentError::Rejected {
                code: error_code(&api),
                message: error_message(&api),
            },
            _ => PaymentError::Unknown(format!(
                "Stripe {operation} answered {status}: {}",
                error_message(&api)
            )),
        },
        StripeError::Timeout => PaymentError::Unknown(format!("Stripe {operation} timed out")),
        StripeError::ClientError(e) => {
            PaymentError::Unknown(format!("Stripe {operation} failed in transport: {e}"))
        }
        StripeError::JSONDeserialize(e) => PaymentError::Unknown(format!(
            "Stripe {operation} answered an unreadable body: {e}"
        )),
        // Raised before anything is sent (a header that cannot be built).
        StripeError::ConfigError(e) => PaymentError::Rejected {
            code: "configuration_error".into(),
            message: e,
        },
    };
    if matches!(mapped, PaymentError::Unknown(_)) {
        warn!(operation, error = %mapped, "Stripe outcome unknown");
    }
    mapped
}

/// A 402 ("request failed") on a payment is Stripe's card-error answer: a
/// decline, whatever the body's type says.
fn declined(error: &ApiErrors) -> PaymentError {
    PaymentError::Declined {
        code: error_code(error),
        message: error_message(error),
    }
}
