//! How the inventory client is configured: [`HttpInventoryConfig`], its
//! documented defaults and its validation.
//!
//! The binary deserializes it from its configuration layers (file, then
//! `CHECKOUT__…` environment variables); every field is optional and unknown
//! fields are refused, so a misspelt key stops the service at start-up
//! instead of being silently ignored. Durations are written as `"250ms"`,
//! `"2s"`, `"1m"` or a whole number of milliseconds, the same format the
//! other adapters use.

use std::fmt;
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Deserializer};

/// Settings of the HTTP inventory client.
///
/// The defaults suit an inventory service on the same network: a call gives
/// up (as `ServiceUnavailable`, which cancels the order) within
/// [`total_timeout`](Self::total_timeout) no matter how many retries are
/// left, so a checkout request never hangs on a sick dependency.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpInventoryConfig {
    /// Where the inventory service lives, `http://` or `https://`, with an
    /// optional path prefix (`https://inventory.internal/api/v1`) that every
    /// endpoint path is appended to. Default `http://localhost:8090`, which
    /// only suits local development.
    pub base_url: String,
    /// Longest wait for a TCP (and TLS) connection to be established. Kept
    /// short: an unreachable host should be retried (or fail) quickly rather
    /// than eat the whole call budget. Default 1 s.
    #[serde(deserialize_with = "deserialize_duration")]
    pub connect_timeout: Duration,
    /// Longest wait for one attempt — connecting, sending, and reading the
    /// whole answer. An attempt past it is abandoned and retried. Default 2 s.
    #[serde(deserialize_with = "deserialize_duration")]
    pub request_timeout: Duration,
    /// How many times a failed attempt (transport error, timeout, 5xx, 429,
    /// 408) is repeated; `3` means at most four attempts. Safe because every
    /// call is idempotent by reservation id. Default 3.
    pub max_retries: u32,
    /// Bound on one port call, retries and backoff included: when the next
    /// attempt could not start before it, the call gives up. Default 5 s.
    #[serde(deserialize_with = "deserialize_duration")]
    pub total_timeout: Duration,
    /// First retry delay; each further retry doubles it, up to
    /// [`backoff_max`](Self::backoff_max), and the delay is jittered (a
    /// random point in its upper half) so that many checkouts failing at
    /// once do not retry in lockstep. Default 100 ms.
    #[serde(deserialize_with = "deserialize_duration")]
    pub backoff_base: Duration,
    /// Cap on one retry delay before jitter. A `Retry-After` from the
    /// service overrides it (when it fits in the total budget). Default 1 s.
    #[serde(deserialize_with = "deserialize_duration")]
    pub backoff_max: Duration,
    /// The circuit breaker that makes calls fail fast while the service is
    /// down.
    pub breaker: BreakerConfig,
    /// Most idle keep-alive connections kept per host for reuse. Default 32.
    pub pool_max_idle_per_host: usize,
    /// How long an idle pooled connection is kept before it is closed.
    /// Default 60 s.
    #[serde(deserialize_with = "deserialize_duration")]
    pub pool_idle_timeout: Duration,
    /// Sent as `Authorization: Bearer <token>` when set. Never printed:
    /// `Debug` shows `<redacted>`. Default none.
    pub bearer_token: Option<BearerToken>,
}

/// When the circuit breaker opens and how long it stays open.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failed attempts (transport errors, timeouts, 5xx, 429 —
    /// never a 4xx business answer such as "insufficient inventory") after
    /// which the breaker opens. Default 5.
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before letting one probe
    /// through. Default 10 s.
    #[serde(deserialize_with = "deserialize_duration")]
    pub open_duration: Duration,
}

impl HttpInventoryConfig {
    pub const DEFAULT_BASE_URL: &'static str = "http://localhost:8090";
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
    pub const DEFAULT_MAX_RETRIES: u32 = 3;
    pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(100);
    pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(1);
    pub const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 32;
    pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

    /// The defaults with another base URL: the usual way to build a
    /// configuration in code.
    pub fn with_base_url(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            ..Self::default()
        }
    }

    /// Checks every setting and returns the parsed base URL, naming the first
    /// bad key in the error so that a broken configuration stops the service
    /// at start-up instead of failing every order later.
    pub fn validate(&self) -> Result<Url, ConfigError> {
        let base = Url::parse(self.base_url.trim())
            .map_err(|e| ConfigError::invalid("base_url", format!("not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ConfigError::invalid(
                "base_url",
                "must be an http:// or https:// URL",
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(ConfigError::invalid(
                "base_url",
                "must not carry a query or a fragment",
            ));
        }
        for (key, value) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("total_timeout", self.total_timeout),
            ("breaker.open_duration", self.breaker.open_duration),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(key, "must be longer than zero"));
            }
        }
        if self.backoff_base > self.backoff_max {
            return Err(ConfigError::invalid(
                "backoff_base",
                "must not be longer than backoff_max",
            ));
        }
        if self.breaker.failure_threshold == 0 {
            return Err(ConfigError::invalid(
                "breaker.failure_threshold",
                "must be at least 1",
            ));
        }
        if let Some(token) = &self.bearer_token {
            let t = token.expose();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::invalid(
                    "bearer_token",
                    "must be non-empty visible ASCII (no spaces or control characters)",
                ));
            }
        }
        Ok(base)
    }
}

impl Default for HttpInventoryConfig {
    fn default() -> Self {
        Self {
            base_url: Self::DEFAULT_BASE_URL.to_owned(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            max_retries: Self::DEFAULT_MAX_RETRIES,
            total_timeout: Self::DEFAULT_TOTAL_TIMEOUT,
            backoff_base: Self::DEFAULT_BACKOFF_BASE,
            backoff_max: Self::DEFAULT_BACKOFF_MAX,
            breaker: BreakerConfig::default(),
            pool_max_idle_per_host: Self::DEFAULT_POOL_MAX_IDLE_PER_HOST,
            pool_idle_timeout: Self::DEFAULT_POOL_IDLE_TIMEOUT,
            bearer_token: None,
        }
    }
}

impl fmt::Debug for HttpInventoryConfig {
    /// Every field, the token only as `<redacted>` (through [`BearerToken`]),
    /// so the configuration can be logged at start-up.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpInventoryConfig")
            .field("base_url", &self.base_url)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("total_timeout", &self.total_timeout)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .field("breaker", &self.breaker)
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("bearer_token", &self.bearer_token)
            .finish()
    }
}

impl BreakerConfig {
    pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;
    pub const DEFAULT_OPEN_DURATION: Duration = Duration::from_secs(10);
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: Self::DEFAULT_FAILURE_THRESHOLD,
            open_duration: Self::DEFAULT_OPEN_DURATION,
        }
    }
}

/// A credential for the inventory service. Its `Debug` never shows the
/// value, so neither a logged configuration nor a panic message leaks it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct BearerToken(String);

impl BearerToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A setting the client cannot work with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A setting breaks its rules; `key` names it (`base_url`,
    /// `breaker.failure_threshold`). The reason never contains the token.
    #[error("invalid inventory client setting `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
    /// The HTTP client (TLS roots, connection pool) could not be built.
    #[error("could not build the inventory HTTP client")]
    Client(#[source] reqwest::Error),
}

impl ConfigError {
    fn invalid(key: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key,
            reason: reason.into(),
        }
    }
}

/// Reads `"2s"`, `"250ms"`, `"1m"`, `"2000"` or `2000` (milliseconds).
fn deserialize_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Millis(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
        Raw::Text(text) => parse_duration(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration such as \"2s\", \"250ms\", \"1m\" or a number of milliseconds"
            ))
        }),
    }
}

fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    match unit.trim() {
        "" | "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" | "min" => n.checked_mul(60).map(Duration::from_secs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = HttpInventoryConfig::default();
        assert_eq!(c.base_url, "http://localhost:8090");
        assert_eq!(c.connect_timeout, Duration::from_secs(1));
        assert_eq!(c.request_timeout, Duration::from_secs(2));
        assert_eq!(c.max_retries, 3);
        assert_eq!(c.total_timeout, Duration::from_secs(5));
        assert_eq!(c.backoff_base, Duration::from_millis(100));
        assert_eq!(c.backoff_max, Duration::from_secs(1));
        assert_eq!(c.breaker.failure_threshold, 5);
        assert_eq!(c.breaker.open_duration, Duration::from_secs(10));
        assert_eq!(c.pool_max_idle_per_host, 32);
        assert_eq!(c.pool_idle_timeout, Duration::from_secs(60));
        assert!(c.bearer_token.is_none());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn deserializes_partial_settings_with_durations_in_several_forms() {
        let c: HttpInventoryConfig = serde_json::from_value(serde_json::json!({
            "base_url": "https://inventory.internal/api/v1",
            "connect_timeout": "250ms",
            "request_timeout": 1500,
            "total_timeout": "4s",
            "breaker": {"open_duration": "1m"},
            "bearer_token": "s3cret"
        }))
        .unwrap();
        assert_eq!(c.connect_timeout, Duration::from_millis(250));
        assert_eq!(c.request_timeout, Duration::from_millis(1500));
        assert_eq!(c.total_timeout, Duration::from_secs(4));
        assert_eq!(c.breaker.open_duration, Duration::from_secs(60));
        assert_eq!(c.breaker.failure_threshold, 5);
        assert_eq!(c.max_retries, 3);
        assert_eq!(
            c.bearer_token.as_ref().map(BearerToken::expose),
            Some("s3cret")
        );
        assert!(c.validate().is_ok());
    }

    #[test]
    fn refuses_unknown_keys_and_bad_durations() {
        assert!(
            serde_json::from_value::<HttpInventoryConfig>(serde_json::json!({"base_uri": "x"}))
                .is_err()
        );
        assert!(
            serde_json::from_value::<HttpInventoryConfig>(
                serde_json::json!({"request_timeout": "soon"})
            )
            .is_err()
        );
    }

    #[test]
    fn debug_never_shows_the_token() {
        let c = HttpInventoryConfig {
            bearer_token: Some(BearerToken::new("s3cret-token")),
            ..HttpInventoryConfig::default()
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret-token"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn validation_names_the_bad_key() {
        let key = |c: HttpInventoryConfig| match c.validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid setting, got {other:?}"),
        };
        assert_eq!(
            key(HttpInventoryConfig::with_base_url("ftp://x")),
            "base_url"
        );
        assert_eq!(
            key(HttpInventoryConfig::with_base_url("not a url")),
            "base_url"
        );
        assert_eq!(
            key(HttpInventoryConfig::with_base_url("http://x/?a=b")),
            "base_url"
        );
        assert_eq!(
            key(HttpInventoryConfig {
                request_timeout: Duration::ZERO,
                ..Default::default()
            }),
            "request_timeout"
        );
        assert_eq!(
            key(HttpInventoryConfig {
                backoff_base: Duration::from_secs(5),
                ..Default::default()
            }),
            "backoff_base"
        );
        assert_eq!(
            key(HttpInventoryConfig {
                breaker: BreakerConfig {
                    failure_threshold: 0,
                    ..Default::default()
                },
                ..Default::default()
            }),
            "breaker.failure_threshold"
        );
        assert_eq!(
            key(HttpInventoryConfig {
                bearer_token: Some(BearerToken::new("has space")),
                ..Default::default()
            }),
            "bearer_token"
        );
    }
}
