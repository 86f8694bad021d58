//! The adapter's configuration: keys, where Stripe lives, how long to wait.
//!
//! The secret key moves money and the webhook secret forges events, so
//! neither ever reaches a log: `Debug` prints them redacted.

use std::fmt;
use std::time::Duration;

/// Stripe's production API.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

/// How long one Stripe call may take before its outcome is declared unknown.
/// Stripe answers in well under a second normally; 15 s leaves room for a
/// slow 3-D Secure lookup while staying inside the checkout's 30 s payment
/// timeout for a create plus a confirm.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Configuration of [`crate::StripeProvider`] and
/// [`crate::StripeWebhookVerifier`].
#[derive(Clone, PartialEq, Eq)]
pub struct StripeConfig {
    /// The secret API key (`sk_live_…`, `sk_test_…` or a restricted `rk_…`).
    pub secret_key: String,
    /// The endpoint's signing secret (`whsec_…`) for webhook verification.
    pub webhook_secret: String,
    /// Base URL of the API, without `/v1`: Stripe's by default, a fake
    /// (wiremock, stripe-mock) in tests.
    pub api_base: String,
    /// Per-call timeout; past it the outcome is `PaymentError::Unknown`.
    pub timeout: Duration,
}

impl StripeConfig {
    /// A configuration for Stripe's production API with the default timeout.
    pub fn new(secret_key: impl Into<String>, webhook_secret: impl Into<String>) -> Self {
        Self {
            secret_key: secret_key.into(),
            webhook_secret: webhook_secret.into(),
            api_base: DEFAULT_API_BASE.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same configuration pointed at another API base (a test double).
    pub fn with_api_base(mut self, api_base: impl Into<String>) -> Self {
        self.api_base = api_base.into();
        self
    }

    /// The same configuration with another per-call timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeConfig")
            .field("secret_key", &redact(&self.secret_key))
            .field("webhook_secret", &redact(&self.webhook_secret))
            .field("api_base", &self.api_base)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Keeps the key's kind (`sk_live`, `sk_test`, `whsec`) visible, which is
/// what someone debugging a configuration needs, and nothing of the secret.
fn redact(secret: &str) -> String {
    if secret.is_empty() {
        return "<empty>".to_owned();
    }
    let kind: String = ["sk_live_", "sk_test_", "rk_live_", "rk_test_", "whsec_"]
        .iter()
        .find(|p| secret.starts_with(**p))
        .map(|p| (*p).to_owned())
        .unwrap_or_default();
    format!("{kind}<redacted>")
}

/// Why a configuration cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StripeConfigError {
    #[error("stripe secret_key is empty")]
    MissingSecretKey,
    #[error("stripe secret_key must be visible ASCII without spaces")]
    InvalidSecretKey,
    #[error("stripe api_base `{0}` is not an http(s) URL")]
    InvalidApiBase(String),
    #[error("stripe timeout must be greater than zero")]
    ZeroTimeout,
}

impl StripeConfig {
    /// Checks the fields the provider needs (the webhook secret is checked
    /// by the verifier, which is the only one to use it).
    pub fn validate(&self) -> Result<(), StripeConfigError> {
        if self.secret_key.is_empty() {
            return Err(StripeConfigError::MissingSecretKey);
        }
        if !self.secret_key.chars().all(|c| c.is_ascii_graphic()) {
            return Err(StripeConfigError::InvalidSecretKey);
        }
        let base = self.api_base.trim();
        let rest = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("http://"));
        if !matches!(rest, Some(host) if !host.is_empty() && !host.contains(char::is_whitespace)) {
            return Err(StripeConfigError::InvalidApiBase(self.api_base.clone()));
        }
        if self.timeout.is_zero() {
            return Err(StripeConfigError::ZeroTimeout);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secrets() {
        let config = StripeConfig::new("sk_test_51Hsecretvalue", "whsec_alsosecret");
        let printed = format!("{config:?}");
        assert!(!printed.contains("51Hsecretvalue"), "{printed}");
        assert!(!printed.contains("alsosecret"), "{printed}");
        assert!(printed.contains("sk_test_<redacted>"), "{printed}");
        assert!(printed.contains("whsec_<redacted>"), "{printed}");
        assert!(printed.contains("https://api.stripe.com"), "{printed}");
        let odd = StripeConfig::new("plainsecret", "");
        let printed = format!("{odd:?}");
        assert!(!printed.contains("plainsecret"), "{printed}");
    }

    #[test]
    fn defaults_and_validation() {
        let config = StripeConfig::new("sk_test_x", "whsec_y");
        assert_eq!(config.api_base, DEFAULT_API_BASE);
        assert_eq!(config.timeout, DEFAULT_TIMEOUT);
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(
            StripeConfig::new("", "w").validate(),
            Err(StripeConfigError::MissingSecretKey)
        );
        assert_eq!(
            StripeConfig::new("sk test", "w").validate(),
            Err(StripeConfigError::InvalidSecretKey)
        );
        assert!(matches!(
            config.clone().with_api_base("ftp://x").validate(),
            Err(StripeConfigError::InvalidApiBase(_))
        ));
        assert_eq!(
            config.with_timeout(Duration::ZERO).validate(),
            Err(StripeConfigError::ZeroTimeout)
        );
    }
}
