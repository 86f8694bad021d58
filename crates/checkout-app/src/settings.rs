//! Tunables of the use cases and workers, with the blueprint's defaults.

use std::time::Duration;

/// How long things may take before the checkout acts on its own.
#[derive(Debug, Clone)]
pub struct CheckoutSettings {
    /// How long a reservation holds stock (default 15 minutes).
    pub reservation_ttl: Duration,
    /// How long the pipeline waits for the provider before answering 202 and
    /// leaving the order to the reconciler (default 30 s).
    pub payment_timeout: Duration,
    /// How many times a use case reloads and retries after losing a
    /// concurrent update.
    pub conflict_retries: u32,
}

impl Default for CheckoutSettings {
    fn default() -> Self {
        Self {
            reservation_ttl: Duration::from_secs(15 * 60),
            payment_timeout: Duration::from_secs(30),
            conflict_retries: 3,
        }
    }
}
