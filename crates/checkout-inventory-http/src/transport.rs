//! One port call on the wire: pooled connections, a timeout per attempt,
//! retries with jittered backoff and `Retry-After`, a bound on the whole
//! call, and the circuit breaker.
//!
//! Retrying is safe for every call because the inventory API is idempotent
//! by reservation id (the id is in the body of a reserve and in the path of
//! everything else), so a request repeated after a lost answer finds the
//! first one's outcome instead of acting twice. What is retried: transport
//! errors (refused, reset, DNS), attempts past `request_timeout`, 5xx, 429,
//! 408 and `409 request_in_progress`. Everything else — 2xx and the 4xx
//! business answers — is final and handed back to the caller to interpret.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use checkout_ports::InventoryError;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{StatusCode, Url};
use tokio::time::Instant;

use crate::backoff::{backoff_delay, retry_after};
use crate::breaker::CircuitBreaker;
use crate::config::HttpInventoryConfig;
use crate::wire::ErrorBody;

/// Larger answers are refused: the inventory API's answers are a few
/// kilobytes, and a runaway body must not exhaust the checkout's memory.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The refusal code a service answers when the same reservation id is
/// still being worked on by an earlier attempt; retried like a 503.
const IN_PROGRESS: &str = "request_in_progress";

/// A final answer: a 2xx or a non-retryable 4xx (or an unexpected 3xx).
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

/// Why one attempt did not produce a final answer. Its text ends up in the
/// `ServiceUnavailable` message when the call gives up.
#[derive(Debug, thiserror::Error)]
enum AttemptFailure {
    #[error("could not reach the inventory service: {0}")]
    Transport(String),
    #[error("no answer from the inventory service within {} ms", .0.as_millis())]
    TimedOut(Duration),
    #[error("the inventory service answered {status}")]
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
}

impl AttemptFailure {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            AttemptFailure::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What one attempt produced.
enum Attempt {
    /// Hand it to the caller.
    Final(Answer),
    /// The service is alive but asked to come back (`request_in_progress`).
    Busy(AttemptFailure),
    /// The service looks unwell (5xx, 429, 408, transport, timeout).
    Failed(AttemptFailure),
    /// An answer that cannot be used, and retrying would not change it.
    Unusable(String),
}

/// The HTTP side of the client, shared by the four operations.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    http: reqwest::Client,
    base: Url,
    auth: Option<HeaderValue>,
    breaker: Arc<CircuitBreaker>,
    request_timeout: Duration,
    total_timeout: Duration,
    max_retries: u32,
    backoff_base: Duration,
    backoff_max: Duration,
}

impl Transport {
    pub(crate) fn new(
        config: &HttpInventoryConfig,
        base: Url,
        breaker: Arc<CircuitBreaker>,
    ) -> Result<Self, crate::ConfigError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .pool_idle_timeout(config.pool_idle_timeout)
            .tcp_nodelay(true)
            // A redirect from an API is a misconfiguration; following it
            // would turn a POST into a GET and hide the problem.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "bookverse-checkout-inventory/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(crate::ConfigError::Client)?;
        let auth = match &config.bearer_token {
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| crate::ConfigError::Invalid {
                        key: "bearer_token",
                        reason: "is not a valid header value".into(),
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        Ok(Self {
            http,
            base,
            auth,
            breaker,
            request_timeout: config.request_timeout,
            total_timeout: config.total_timeout,
            max_retries: config.max_retries,
            backoff_base: config.backoff_base,
            backoff_max: config.backoff_max,
        })
    }

    /// The base URL with `segments` appended (each one percent-encoded), so
    /// a base with a path prefix keeps it.
    pub(crate) fn url(&self, segments: &[&str]) -> Result<Url, InventoryError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| {
                InventoryError::Unexpected(format!("base URL {} cannot take a path", self.base))
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// POSTs `body` to `url` until a final answer, the retries run out, the
    /// total time is up or the breaker refuses. Giving up is
    /// `ServiceUnavailable`; an answer that cannot be read is `Unexpected`.
    pub(crate) async fn post(&self, url: Url, body: Vec<u8>) -> Result<Answer, InventoryError> {
        let deadline = Instant::now() + self.total_timeout;
        let mut retry: u32 = 0;
        let mut last: Option<AttemptFailure> = None;
        loop {
            let permit = match self.breaker.admit() {
                Ok(permit) => permit,
                Err(rejected) => {
                    let why = match &last {
                        Some(failure) => {
                            let why = format!("{failure}; the circuit breaker is now open");
                            tracing::warn!(attempts = retry, "inventory call failed: {why}");
                            why
                        }
                        None => {
                            // Failing fast is the breaker's point: the
                            // opening was logged once, each refusal is not.
                            tracing::debug!("inventory circuit breaker open; failing fast");
                            format!(
                                "circuit breaker open after repeated failures; failing fast for another {} ms",
                                rejected.retry_in.as_millis()
                            )
                        }
                    };
                    return Err(InventoryError::ServiceUnavailable(why));
                }
            };
            let per_attempt = self
                .request_timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            let attempt =
                match tokio::time::timeout(per_attempt, self.attempt(url.clone(), body.clone()))
                    .await
                {
                    Ok(attempt) => attempt,
                    Err(_elapsed) => Attempt::Failed(AttemptFailure::TimedOut(per_attempt)),
                };
            let failure = match attempt {
                Attempt::Final(answer) => {
                    permit.success();
                    return Ok(answer);
                }
                Attempt::Unusable(why) => {
                    permit.success();
                    return Err(InventoryError::Unexpected(why));
                }
                Attempt::Busy(failure) => {
                    permit.success();
                    failure
                }
                Attempt::Failed(failure) => {
                    permit.failure();
                    failure
                }
            };
            let attempts = retry + 1;
            if retry >= self.max_retries {
                tracing::warn!(attempts, error = %failure, "inventory call failed; no retries left");
                return Err(InventoryError::ServiceUnavailable(format!(
                    "{failure} (gave up after {attempts} attempts)"
                )));
            }
            let backoff = backoff_delay(self.backoff_base, self.backoff_max, retry);
            let delay = failure.retry_after().map_or(backoff, |ra| ra.max(backoff));
            if Instant::now() + delay >= deadline {
                tracing::warn!(attempts, error = %failure, "inventory call failed; out of time for another attempt");
                let asked = match failure.retry_after() {
                    Some(ra) if ra >= backoff => {
                        format!(", and Retry-After asks for {} s", ra.as_secs())
                    }
                    _ => String::new(),
                };
                return Err(InventoryError::ServiceUnavailable(format!(
                    "{failure} (gave up after {attempts} attempts: the {} ms budget is spent{asked})",
                    self.total_timeout.as_millis()
                )));
            }
            tracing::debug!(
                attempts,
                error = %failure,
                delay_ms = delay.as_millis() as u64,
                "inventory call failed; retrying"
            );
            last = Some(failure);
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    async fn attempt(&self, url: Url, body: Vec<u8>) -> Attempt {
        let mut request = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(body);
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Attempt::Failed(AttemptFailure::Transport(error_chain(&e))),
        };
        let status = response.status();
        let retry_after = retry_after(response.headers(), SystemTime::now());
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY_BYTES {
                        return Attempt::Unusable(format!(
                            "the inventory service answered {status} with a body over {MAX_BODY_BYTES} bytes"
                        ));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Attempt::Failed(AttemptFailure::Transport(error_chain(&e))),
            }
        }
        let failure = AttemptFailure::Status {
            status,
            retry_after,
        };
        if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            Attempt::Failed(failure)
        } else if status == StatusCode::CONFLICT
            && ErrorBody::parse(&body).code.as_deref() == Some(IN_PROGRESS)
        {
            Attempt::Busy(failure)
        } else {
            Attempt::Final(Answer { status, body })
        }
    }
}

/// An error with its causes (`error sending request: connection refused`):
/// reqwest's own message alone rarely says what went wrong.
fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
