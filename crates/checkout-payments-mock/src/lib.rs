//! The mock payment provider: the seed's exact amount rules behind the
//! [`PaymentProvider`] port, so the checkout runs end to end without a real
//! payment service (the embedded default, demos, and other crates' tests).
//!
//! It behaves like a small, truthful payment service rather than a stub:
//!
//! - intents and refunds live in memory, so [`PaymentProvider::status`] and
//!   [`PaymentProvider::refund`] answer from what really happened (an unknown
//!   intent is `NotFound`, refunding more than was captured is `Rejected`);
//!   only the most recent [`MockOptions::retained_intents`] intents are
//!   remembered, with their idempotency keys and refunds, so that a
//!   long-running service on the mock does not grow without bound (an
//!   intent forgotten is `NotFound`, as an expired one would be);
//! - idempotency keys are honoured the way Stripe honours them: repeating a
//!   create, confirm or refund with the same key replays the first answer
//!   and never charges or refunds twice; the same key with different
//!   parameters is `Rejected` (`idempotency_error`);
//! - the outcome of a payment follows the seed's amount rules
//!   ([`rules::amount_outcome`]), unless the payment-method token asks for a
//!   special scenario (see [`MockOptions`]);
//! - a simulated delay (off by default) uses `tokio::time::sleep`, so tests
//!   with paused time stay instant.
//!
//! # Special payment-method tokens
//!
//! Checked at confirm, before the amount rules 2–5 (rule 1 fails the create,
//! before any token is seen):
//!
//! | token (default) | confirm answers | afterwards |
//! |---|---|---|
//! | `pm_card_threeDSecure2Required` | `Ok`, `RequiresAction` with `next_action` (`redirect_to_url`) and a client secret | [`MockPaymentProvider::complete_action`] makes it `Succeeded`, [`MockPaymentProvider::fail_action`] makes it `Failed` (`payment_intent_authentication_failure`) |
//! | `pm_card_timeout` | `Err(Unknown)` — the answer was "lost" | the payment did go through: `status` reads `Succeeded`, and a confirm retried with the same key replays the success |
//! | `pm_card_chargeDeclined` | `Err(Declined { code: "card_declined" })` whatever the amount | `status` reads `Failed` |
//! | `pm_card_chargeDeclinedInsufficientFunds` | `Err(Declined { code: "insufficient_funds" })` | `status` reads `Failed` |
//!
//! Any other token (`pm_card_visa`, …) follows the amount rules.

pub mod rules;

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use checkout_domain::{Money, OrderId, PaymentMethod, PaymentStatus};
use checkout_ports::{
    CreateIntent, PaymentError, PaymentIntent, PaymentProvider, ProviderRefund, RefundStatus,
};
use serde_json::json;
use uuid::Uuid;

pub use rules::{AmountOutcome, amount_outcome};

/// The token that makes confirm ask for 3-D Secure (Stripe's test token of
/// the same name does the same in test mode).
pub const THREE_D_SECURE_TOKEN: &str = "pm_card_threeDSecure2Required";
/// The token whose confirm answer is lost (`PaymentError::Unknown`) although
/// the payment succeeded: the reconciler's case.
pub const TIMEOUT_TOKEN: &str = "pm_card_timeout";
/// The token that declines with `card_declined` whatever the amount.
pub const DECLINED_TOKEN: &str = "pm_card_chargeDeclined";
/// The token that declines with `insufficient_funds` whatever the amount.
pub const INSUFFICIENT_FUNDS_TOKEN: &str = "pm_card_chargeDeclinedInsufficientFunds";

/// How the mock behaves beyond the amount rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockOptions {
    /// Simulated latency of every provider call; zero (the default) means
    /// none. Uses `tokio::time::sleep`, so paused-time tests don't wait.
    pub delay: Duration,
    /// Tokens whose confirm needs customer action (3-D Secure).
    pub three_d_secure_tokens: Vec<String>,
    /// Tokens whose confirm succeeds at the "provider" but answers
    /// `PaymentError::Unknown`, as a timed-out call would.
    pub timeout_tokens: Vec<String>,
    /// How many intents are remembered (at least one): creating one more
    /// forgets the oldest, with its idempotency keys and refunds. About
    /// 3.5 KB each (measured: 10,000 intents were 35 MB of the service's
    /// RSS). A forgotten intent is `NotFound`, which fails its
    /// order if it was still unsettled: keep this above the payments made
    /// within the payment timeout when lost answers (`pm_card_timeout`)
    /// must be reconciled under load.
    pub retained_intents: usize,
}

/// Intents remembered by default: far more than are ever in flight, and
/// about 7 MB.
pub const DEFAULT_RETAINED_INTENTS: usize = 2_000;

impl Default for MockOptions {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            three_d_secure_tokens: vec![THREE_D_SECURE_TOKEN.to_owned()],
            timeout_tokens: vec![TIMEOUT_TOKEN.to_owned()],
            retained_intents: DEFAULT_RETAINED_INTENTS,
        }
    }
}

/// An intent as the mock keeps it.
#[derive(Debug, Clone)]
struct StoredIntent {
    intent: PaymentIntent,
    order_id: OrderId,
    amount: Money,
    refunded: Money,
    /// The keys its create, confirms and refunds were asked with, forgotten
    /// with it.
    create_key: String,
    confirm_keys: Vec<String>,
    refund_keys: Vec<String>,
}

/// What a create was asked, to tell a replay from a reused key.
#[derive(Debug, Clone, PartialEq)]
struct CreateFingerprint {
    order_id: OrderId,
    amount: Money,
}

#[derive(Debug, Default)]
struct State {
    intents: HashMap<String, StoredIntent>,
    /// Create key → (what was asked, the answer given).
    creates: HashMap<String, (CreateFingerprint, PaymentIntent)>,
    /// (intent, confirm key) → (token, the true answer). A lost answer
    /// (timeout token) is stored as what really happened, so a retry sees it.
    confirms: HashMap<(String, String), (String, Result<PaymentIntent, PaymentError>)>,
    /// Refund key → (intent, amount, the answer given).
    refunds: HashMap<String, (String, Money, ProviderRefund)>,
    /// Intent ids, oldest first (what to forget first).
    created: VecDeque<String>,
}

impl State {
    /// Forgets the oldest intents, with their keys and refunds, until at
    /// most `keep` are left.
    fn forget_beyond(&mut self, keep: usize) {
        while self.created.len() > keep.max(1) {
            let Some(id) = self.created.pop_front() else {
                return;
            };
            let Some(stored) = self.intents.remove(&id) else {
                continue;
            };
            self.creates.remove(&stored.create_key);
            for key in stored.confirm_keys {
                self.confirms.remove(&(id.clone(), key));
            }
            for key in &stored.refund_keys {
                self.refunds.remove(key);
            }
        }
    }
}

/// The in-memory mock provider (see the crate docs for its rules and tokens).
#[derive(Debug, Default)]
pub struct MockPaymentProvider {
    options: MockOptions,
    state: Mutex<State>,
}

/// What confirm decided for a token and amount.
enum ConfirmOutcome {
    Succeed,
    RequireAction,
    LoseAnswer,
    Decline { code: &'static str, message: String },
    ProcessingError(String),
}

impl MockPaymentProvider {
    /// A mock with the given options (`MockOptions::default()`: no delay,
    /// the default special tokens).
    pub fn new(options: MockOptions) -> Self {
        Self {
            options,
            state: Mutex::new(State::default()),
        }
    }

    /// Finishes a customer action (3-D Secure) successfully, as the customer
    /// passing the challenge would: the intent becomes `Succeeded` with a
    /// transaction id. Only an intent in `RequiresAction` can be completed.
    pub fn complete_action(&self, intent_id: &str) -> Result<PaymentIntent, PaymentError> {
        self.finish_action(intent_id, true)
    }

    /// Fails a customer action (the customer failed or abandoned 3-D
    /// Secure): the intent becomes `Failed` with Stripe's code
    /// `payment_intent_authentication_failure`.
    pub fn fail_action(&self, intent_id: &str) -> Result<PaymentIntent, PaymentError> {
        self.finish_action(intent_id, false)
    }

    fn finish_action(&self, intent_id: &str, passed: bool) -> Result<PaymentIntent, PaymentError> {
        let mut state = self.lock();
        let stored = state
            .intents
            .get_mut(intent_id)
            .ok_or(PaymentError::NotFound)?;
        if stored.intent.status != PaymentStatus::RequiresAction {
            return Err(unexpected_state(&stored.intent));
        }
        let intent = &mut stored.intent;
        intent.next_action = None;
        if passed {
            intent.status = PaymentStatus::Succeeded;
            intent.transaction_id = Some(new_id("ch_mock"));
        } else {
            intent.status = PaymentStatus::Failed;
            intent.failure_code = Some("payment_intent_authentication_failure".into());
            intent.failure_message = Some(
                "The provided payment method has failed authentication (mock 3-D Secure).".into(),
            );
        }
        Ok(intent.clone())
    }

    /// The state lock; a panic elsewhere while holding it cannot leave the
    /// maps half-written (every update is a single insert or field write),
    /// so a poisoned lock is still safe to use.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn simulate_latency(&self) {
        if !self.options.delay.is_zero() {
            tokio::time::sleep(self.options.delay).await;
        }
    }

    fn decide(&self, token: &str, amount: &Money) -> ConfirmOutcome {
        if self.options.timeout_tokens.iter().any(|t| t == token) {
            return ConfirmOutcome::LoseAnswer;
        }
        if self
            .options
            .three_d_secure_tokens
            .iter()
            .any(|t| t == token)
        {
            return ConfirmOutcome::RequireAction;
        }
        match token {
            DECLINED_TOKEN => {
                return ConfirmOutcome::Decline {
                    code: "card_declined",
                    message: "Your card was declined.".into(),
                };
            }
            INSUFFICIENT_FUNDS_TOKEN => {
                return ConfirmOutcome::Decline {
                    code: "insufficient_funds",
                    message: "Your card has insufficient funds.".into(),
                };
            }
            _ => {}
        }
        match amount_outcome(amount) {
            AmountOutcome::Succeeds => ConfirmOutcome::Succeed,
            AmountOutcome::Declined => ConfirmOutcome::Decline {
                code: "card_declined",
                message: format!("Your card was declined (mock rule: {amount} ends in .99)."),
            },
            AmountOutcome::ProcessingError => ConfirmOutcome::ProcessingError(format!(
                "An error occurred while processing the payment (mock rule: {amount} is a \
                 whole amount above 100)."
            )),
            // Unreachable in practice (such an intent is never created), but
            // answered the way create would have.
            AmountOutcome::CreateFails => ConfirmOutcome::ProcessingError(format!(
                "An error occurred while processing the payment (mock rule: {amount} ends in .13)."
            )),
        }
    }
}

#[async_trait]
impl PaymentProvider for MockPaymentProvider {
    fn name(&self) -> &str {
        "mock"
    }

    async fn create_intent(&self, request: &CreateIntent) -> Result<PaymentIntent, PaymentError> {
        self.simulate_latency().await;
        let fingerprint = CreateFingerprint {
            order_id: request.order_id,
            amount: request.amount,
        };
        let mut state = self.lock();
        if let Some((asked, answer)) = state.creates.get(&request.idempotency_key) {
            return if *asked == fingerprint {
                Ok(answer.clone())
            } else {
                Err(idempotency_error(&request.idempotency_key))
            };
        }
        if amount_outcome(&request.amount) == AmountOutcome::CreateFails {
            return Err(PaymentError::Rejected {
                code: "processing_error".into(),
                message: format!(
                    "An error occurred while creating the payment (mock rule: {} ends in .13).",
                    request.amount
                ),
            });
        }
        let intent_id = new_id("pi_mock");
        let intent = PaymentIntent {
            client_secret: Some(format!("{intent_id}_secret_{}", Uuid::new_v4().simple())),
            intent_id: intent_id.clone(),
            status: PaymentStatus::Pending,
            transaction_id: None,
            next_action: None,
            failure_code: None,
            failure_message: None,
        };
        state.intents.insert(
            intent_id.clone(),
            StoredIntent {
                intent: intent.clone(),
                order_id: request.order_id,
                amount: request.amount,
                refunded: Money::zero(request.amount.currency()),
                create_key: request.idempotency_key.clone(),
                confirm_keys: Vec::new(),
                refund_keys: Vec::new(),
            },
        );
        state.creates.insert(
            request.idempotency_key.clone(),
            (fingerprint, intent.clone()),
        );
        state.created.push_back(intent_id);
        state.forget_beyond(self.options.retained_intents);
        Ok(intent)
    }

    async fn confirm(
        &self,
        intent_id: &str,
        method: &PaymentMethod,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, PaymentError> {
        self.simulate_latency().await;
        let mut state = self.lock();
        let replay_key = (intent_id.to_owned(), idempotency_key.to_owned());
        if let Some((token, answer)) = state.confirms.get(&replay_key) {
            return if token == method.token() {
                answer.clone()
            } else {
                Err(idempotency_error(idempotency_key))
            };
        }
        let stored = state
            .intents
            .get_mut(intent_id)
            .ok_or(PaymentError::NotFound)?;
        // Like Stripe: an intent can be (re)confirmed until it succeeds, is
        // processing or is canceled.
        if matches!(
            stored.intent.status,
            PaymentStatus::Succeeded | PaymentStatus::Processing | PaymentStatus::Canceled
        ) {
            return Err(unexpected_state(&stored.intent));
        }
        let outcome = self.decide(method.token(), &stored.amount);
        stored.confirm_keys.push(idempotency_key.to_owned());
        let intent = &mut stored.intent;
        intent.next_action = None;
        intent.failure_code = None;
        intent.failure_message = None;
        let (truth, answer) = match outcome {
            ConfirmOutcome::Succeed | ConfirmOutcome::LoseAnswer => {
                intent.status = PaymentStatus::Succeeded;
                intent.transaction_id = Some(new_id("ch_mock"));
                let truth = Ok(intent.clone());
                let answer = if matches!(outcome, ConfirmOutcome::LoseAnswer) {
                    Err(PaymentError::Unknown(format!(
                        "simulated timeout confirming {intent_id} (mock token {TIMEOUT_TOKEN})"
                    )))
                } else {
                    truth.clone()
                };
                (truth, answer)
            }
            ConfirmOutcome::RequireAction => {
                intent.status = PaymentStatus::RequiresAction;
                intent.next_action = Some(json!({
                    "type": "redirect_to_url",
                    "redirect_to_url": {
                        "url": format!("https://payments.mock.invalid/3ds/{intent_id}"),
                        "return_url": null,
                    },
                }));
                let truth = Ok(intent.clone());
                (truth.clone(), truth)
            }
            ConfirmOutcome::Decline { code, message } => {
                intent.status = PaymentStatus::Failed;
                intent.failure_code = Some(code.to_owned());
                intent.failure_message = Some(message.clone());
                let truth = Err(PaymentError::Declined {
                    code: code.to_owned(),
                    message,
                });
                (truth.clone(), truth)
            }
            ConfirmOutcome::ProcessingError(message) => {
                intent.status = PaymentStatus::Failed;
                intent.failure_code = Some("processing_error".into());
                intent.failure_message = Some(message.clone());
                let truth = Err(PaymentError::Rejected {
                    code: "processing_error".into(),
                    message,
                });
                (truth.clone(), truth)
            }
        };
        state
            .confirms
            .insert(replay_key, (method.token().to_owned(), truth));
        answer
    }

    async fn status(&self, intent_id: &str) -> Result<PaymentIntent, PaymentError> {
        self.simulate_latency().await;
        self.lock()
            .intents
            .get(intent_id)
            .map(|stored| stored.intent.clone())
            .ok_or(PaymentError::NotFound)
    }

    async fn refund(
        &self,
        intent_id: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<ProviderRefund, PaymentError> {
        self.simulate_latency().await;
        let mut state = self.lock();
        if let Some((refunded_intent, refunded_amount, answer)) = state.refunds.get(idempotency_key)
        {
            return if refunded_intent == intent_id && *refunded_amount == amount {
                Ok(answer.clone())
            } else {
                Err(idempotency_error(idempotency_key))
            };
        }
        let stored = state
            .intents
            .get_mut(intent_id)
            .ok_or(PaymentError::NotFound)?;
        if stored.intent.status != PaymentStatus::Succeeded {
            return Err(unexpected_state(&stored.intent));
        }
        let remaining = stored
            .amount
            .checked_sub(&stored.refunded)
            .map_err(|e| invalid_request(e.to_string()))?;
        if amount.currency() != stored.amount.currency() {
            return Err(invalid_request(format!(
                "refund currency {} differs from the payment's {} (order {})",
                amount.currency(),
                stored.amount.currency(),
                stored.order_id
            )));
        }
        if amount.is_zero() {
            return Err(PaymentError::Rejected {
                code: "amount_too_small".into(),
                message: "A refund must be greater than zero.".into(),
            });
        }
        if remaining.is_zero() {
            return Err(PaymentError::Rejected {
                code: "charge_already_refunded".into(),
                message: format!("Payment {intent_id} has already been fully refunded."),
            });
        }
        if amount > remaining {
            return Err(PaymentError::Rejected {
                code: "amount_too_large".into(),
                message: format!(
                    "Refund amount ({amount}) is greater than the unrefunded amount on the \
                     payment ({remaining})."
                ),
            });
        }
        stored.refunded = stored
            .refunded
            .checked_add(&amount)
            .map_err(|e| invalid_request(e.to_string()))?;
        stored.refund_keys.push(idempotency_key.to_owned());
        let refund = ProviderRefund {
            refund_id: new_id("re_mock"),
            status: RefundStatus::Succeeded,
        };
        state.refunds.insert(
            idempotency_key.to_owned(),
            (intent_id.to_owned(), amount, refund.clone()),
        );
        Ok(refund)
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::new_v4().simple())
}

fn idempotency_error(key: &str) -> PaymentError {
    PaymentError::Rejected {
        code: "idempotency_error".into(),
        message: format!(
            "Keys for idempotent requests can only be used with the same parameters they were \
             first used with (key {key})."
        ),
    }
}

fn unexpected_state(intent: &PaymentIntent) -> PaymentError {
    PaymentError::Rejected {
        code: "payment_intent_unexpected_state".into(),
        message: format!(
            "Payment {} is {}; the operation is not allowed in that state.",
            intent.intent_id,
            intent.status.as_str()
        ),
    }
}

fn invalid_request(message: String) -> PaymentError {
    PaymentError::Rejected {
        code: "invalid_request".into(),
        message,
    }
}

#[cfg(test)]
mod tests;
