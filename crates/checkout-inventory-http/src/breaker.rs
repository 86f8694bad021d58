//! The circuit breaker: while the inventory service keeps failing, calls fail
//! at once instead of each waiting out its timeouts and retries.
//!
//! Without it, a dead inventory service would hold every checkout request
//! for the whole call budget (five seconds by default) and pile up
//! connections; with it, orders are cancelled with "inventory service
//! unavailable" immediately, and the service gets room to recover.
//!
//! States:
//! - **closed** — attempts go through; `failure_threshold` consecutive failed
//!   attempts open the breaker. Any answer that shows the service is alive
//!   (a 2xx, a 4xx business answer) resets the count.
//! - **open** — every attempt is refused until `open_duration` has passed.
//! - **half-open** — one attempt (the probe) goes through, the others are
//!   refused; the probe's success closes the breaker, its failure opens it
//!   again for another `open_duration`. A probe abandoned without an outcome
//!   (its call was cancelled) lets the next attempt probe instead.
//!
//! Time is `tokio::time::Instant`, so tests drive it with
//! `tokio::time::pause()` / `advance()`.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::BreakerConfig;

/// What the breaker is doing, for logs, metrics and health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls fail fast.
    Open,
    /// One probe call is (or may be) in flight; others fail fast.
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// A circuit breaker shared by every call of one client.
#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

/// Permission for one attempt; report its outcome with
/// [`Permit::success`] or [`Permit::failure`]. Dropping it unreported is
/// neutral (a cancelled call says nothing about the service).
#[derive(Debug)]
#[must_use = "report the attempt's outcome"]
pub(crate) struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    reported: bool,
}

/// The breaker refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejected {
    /// Roughly how long until a probe will be let through (zero while
    /// another probe is in flight).
    pub retry_in: Duration,
}

impl CircuitBreaker {
    pub(crate) fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// The state as of now (an open breaker whose time is up shows as
    /// half-open).
    pub(crate) fn state(&self) -> BreakerState {
        match &*self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() < *until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to make one attempt.
    pub(crate) fn admit(&self) -> Result<Permit<'_>, Rejected> {
        let mut state = self.lock();
        let now = Instant::now();
        let probe = match &*state {
            State::Closed { .. } => false,
            State::Open { until } if now < *until => {
                return Err(Rejected {
                    retry_in: *until - now,
                });
            }
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                tracing::info!("inventory circuit breaker half-open: letting one probe through");
                true
            }
            State::HalfOpen { probing: true } => {
                return Err(Rejected {
                    retry_in: Duration::ZERO,
                });
            }
        };
        Ok(Permit {
            breaker: self,
            probe,
            reported: false,
        })
    }

    fn on_success(&self, probe: bool) {
        let mut state = self.lock();
        match &mut *state {
            State::Closed { failures } => *failures = 0,
            State::HalfOpen { .. } if probe => {
                *state = State::Closed { failures: 0 };
                tracing::info!("inventory circuit breaker closed: the probe succeeded");
            }
            // A late answer to an attempt admitted before the breaker opened
            // says nothing about the service now.
            State::HalfOpen { .. } | State::Open { .. } => {}
        }
    }

    fn on_failure(&self, probe: bool) {
        let mut state = self.lock();
        let until = Instant::now() + self.config.open_duration;
        match &mut *state {
            State::Closed { failures } => {
                *failures = failures.saturating_add(1);
                if *failures >= self.config.failure_threshold {
                    tracing::warn!(
                        failures = *failures,
                        open_for_ms = self.config.open_duration.as_millis() as u64,
                        "inventory circuit breaker opened: calls fail fast"
                    );
                    *state = State::Open { until };
                }
            }
            State::HalfOpen { .. } if probe => {
                tracing::warn!(
                    open_for_ms = self.config.open_duration.as_millis() as u64,
                    "inventory circuit breaker re-opened: the probe failed"
                );
                *state = State::Open { until };
            }
            State::HalfOpen { .. } | State::Open { .. } => {}
        }
    }

    fn on_abandoned(&self, probe: bool) {
        if !probe {
            return;
        }
        let mut state = self.lock();
        if let State::HalfOpen { probing } = &mut *state {
            *probing = false;
        }
    }

    /// The state is a few plain values that every update leaves consistent,
    /// so a panic elsewhere while holding the lock cannot corrupt it: a
    /// poisoned lock is simply taken over.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Permit<'_> {
    /// The service answered (2xx or a 4xx it meant).
    pub(crate) fn success(mut self) {
        self.reported = true;
        self.breaker.on_success(self.probe);
    }

    /// The attempt failed in a way that says the service is unwell
    /// (transport error, timeout, 5xx, 429).
    pub(crate) fn failure(mut self) {
        self.reported = true;
        self.breaker.on_failure(self.probe);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker.on_abandoned(self.probe);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: threshold,
            open_duration: Duration::from_secs(10),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_only() {
        let b = breaker(3);
        b.admit().unwrap().failure();
        b.admit().unwrap().failure();
        // A success in between resets the count.
        b.admit().unwrap().success();
        b.admit().unwrap().failure();
        b.admit().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Closed);
        b.admit().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open);
        let rejected = b.admit().unwrap_err();
        assert_eq!(rejected.retry_in, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_lets_exactly_one_probe_through_and_closes_on_success() {
        let b = breaker(1);
        b.admit().unwrap().failure();
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(b.admit().is_err());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.admit().unwrap();
        assert_eq!(b.admit().unwrap_err().retry_in, Duration::ZERO);
        probe.success();
        assert_eq!(b.state(), BreakerState::Closed);
        b.admit().unwrap().success();
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_for_another_period() {
        let b = breaker(1);
        b.admit().unwrap().failure();
        tokio::time::advance(Duration::from_secs(10)).await;
        b.admit().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(b.admit().is_err());
        tokio::time::advance(Duration::from_secs(5)).await;
        b.admit().unwrap().success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_lets_the_next_attempt_probe() {
        let b = breaker(1);
        b.admit().unwrap().failure();
        tokio::time::advance(Duration::from_secs(10)).await;
        drop(b.admit().unwrap());
        let probe = b.admit().unwrap();
        probe.success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn late_outcomes_of_earlier_attempts_do_not_move_an_open_breaker() {
        let b = breaker(1);
        let slow = b.admit().unwrap();
        b.admit().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open);
        slow.success();
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = b.admit().unwrap();
        let also_late = b.admit();
        assert!(also_late.is_err());
        probe.failure();
        assert_eq!(b.state(), BreakerState::Open);
    }
}
