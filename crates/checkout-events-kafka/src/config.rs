//! How the Kafka sink is configured: [`KafkaConfig`], its defaults, its
//! validation and its translation into librdkafka properties.
//!
//! The sink owns the settings that its delivery guarantee rests on
//! (idempotence, `acks=all`, the delivery timeout, the partitioner); anything
//! else librdkafka understands — SASL, TLS, compression, batching — passes
//! through [`KafkaConfig::extra`] untouched. Secrets in `extra` never reach a
//! `Debug` string or an error message.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::{Deserialize, Deserializer};

/// librdkafka properties the sink sets itself. Overriding one through
/// `extra` would silently break the at-least-once, per-order delivery the
/// sink promises (`acks=1` loses acknowledged events on a leader change,
/// `enable.idempotence=false` lets retries reorder or duplicate inside a
/// partition), so such an override is refused at start-up instead.
pub const RESERVED_KEYS: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "client.id",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "partitioner",
    "transactional.id",
];

/// Parts of a librdkafka property name that mark its value as a secret
/// (`sasl.password`, `ssl.key.password`, `sasl.oauthbearer.client.secret`,
/// `ssl.key.pem`, `sasl.oauthbearer.config`, …).
const SECRET_MARKERS: &[&str] = &[
    "password",
    "secret",
    "token",
    "key.pem",
    "oauthbearer.config",
    "jaas",
];

/// Whether the value of librdkafka property `key` must be kept out of logs.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|m| key.contains(m))
}

/// Settings of the Kafka sink.
///
/// Deserializes with every field optional (missing ones take the defaults
/// below) and unknown fields refused, so a misspelt key is an error at
/// start-up rather than a silently ignored setting.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` bootstrap servers. Default `localhost:9092`.
    pub brokers: String,
    /// Topic every order event goes to. Default `bookverse.checkout.orders`.
    pub topic: String,
    /// Kafka `client.id`, which brokers use in quotas, logs and metrics.
    /// Default `bookverse-checkout`.
    pub client_id: String,
    /// CloudEvents `source` attribute (`ce_source` header): which producer
    /// the events come from. Default `/bookverse/checkout`.
    pub source: String,
    /// How long librdkafka keeps trying to deliver one event (its
    /// `message.timeout.ms`) before `publish` reports it `Unavailable`.
    /// It bounds how long one `publish` call can take. Written as `"30s"`,
    /// `"500ms"`, `"2m"` or a whole number of milliseconds. Default 30 s.
    #[serde(deserialize_with = "deserialize_duration")]
    pub message_timeout: Duration,
    /// Any other librdkafka producer property, passed through as is: this is
    /// where `security.protocol`, `sasl.mechanism`, `sasl.username`,
    /// `sasl.password`, `ssl.ca.location`, `compression.type`, `linger.ms`
    /// go. The keys in [`RESERVED_KEYS`] are refused.
    pub extra: BTreeMap<String, String>,
}

impl KafkaConfig {
    pub const DEFAULT_BROKERS: &'static str = "localhost:9092";
    pub const DEFAULT_TOPIC: &'static str = "bookverse.checkout.orders";
    pub const DEFAULT_CLIENT_ID: &'static str = "bookverse-checkout";
    pub const DEFAULT_SOURCE: &'static str = "/bookverse/checkout";
    pub const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

    /// Checks every setting, naming the first bad key in the error, so that a
    /// broken configuration stops the service at start-up instead of parking
    /// or delaying every event later.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.split(',').all(|b| b.trim().is_empty()) {
            return Err(ConfigError::invalid(
                "brokers",
                "must list at least one host:port",
            ));
        }
        validate_topic(&self.topic)?;
        if self.client_id.trim().is_empty() {
            return Err(ConfigError::invalid("client_id", "must not be empty"));
        }
        // CloudEvents: `source` is a non-empty URI-reference.
        if self.source.is_empty() || self.source.chars().any(|c| c.is_whitespace()) {
            return Err(ConfigError::invalid(
                "source",
                "must be a non-empty URI reference without spaces, such as /bookverse/checkout",
            ));
        }
        let millis = self.message_timeout.as_millis();
        // librdkafka takes an int32 of milliseconds; 0 would mean "forever",
        // which would let one publish call hang while a broker is down.
        if millis == 0 || millis > i32::MAX as u128 {
            return Err(ConfigError::invalid(
                "message_timeout",
                "must be between 1 ms and about 24 days",
            ));
        }
        for key in self.extra.keys() {
            if RESERVED_KEYS.contains(&key.trim().to_ascii_lowercase().as_str()) {
                return Err(ConfigError::invalid(
                    format!("extra.{key}"),
                    "is set by the sink itself (it carries the delivery guarantee) and cannot be overridden",
                ));
            }
        }
        Ok(())
    }

    /// The librdkafka producer properties: the pass-through `extra` first,
    /// then the sink's own settings.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        for (key, value) in &self.extra {
            cfg.set(key, value);
        }
        cfg.set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            // Retries can neither duplicate nor reorder inside a partition,
            // and an event counts as delivered only once every in-sync
            // replica has it.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                self.message_timeout.as_millis().to_string(),
            )
            // The partitioner of the Java client: an order's events land on
            // the partition any JVM producer or Kafka Streams app would pick
            // for the same key.
            .set("partitioner", "murmur2_random");
        cfg
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: Self::DEFAULT_BROKERS.to_owned(),
            topic: Self::DEFAULT_TOPIC.to_owned(),
            client_id: Self::DEFAULT_CLIENT_ID.to_owned(),
            source: Self::DEFAULT_SOURCE.to_owned(),
            message_timeout: Self::DEFAULT_MESSAGE_TIMEOUT,
            extra: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for KafkaConfig {
    /// Like the derived one, but the values of secret `extra` keys
    /// (`sasl.password`, …) are replaced so the config can be logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let extra: BTreeMap<&str, &str> = self
            .extra
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_key(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("client_id", &self.client_id)
            .field("source", &self.source)
            .field("message_timeout", &self.message_timeout)
            .field("extra", &extra)
            .finish()
    }
}

/// A setting the sink cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A setting breaks its rules; `key` names it (`topic`,
    /// `extra.acks`).
    #[error("invalid Kafka setting `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    /// librdkafka refused the configuration when the producer was created.
    /// The message never contains the value of a secret key.
    #[error("could not create the Kafka producer: {0}")]
    Client(String),
}

impl ConfigError {
    fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Kafka's rules for a topic name, checked here so that a bad name fails at
/// start-up instead of rejecting every event.
fn validate_topic(topic: &str) -> Result<(), ConfigError> {
    let ok_chars = topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if topic.is_empty() || topic.len() > 249 || topic == "." || topic == ".." || !ok_chars {
        return Err(ConfigError::invalid(
            "topic",
            "must be 1–249 characters of ASCII letters, digits, `.`, `_` and `-` (and not `.` or `..`)",
        ));
    }
    Ok(())
}

/// Reads `"30s"`, `"500ms"`, `"2m"`, `"30000"` or `30000` (milliseconds).
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
                "`{text}` is not a duration such as \"30s\", \"500ms\", \"2m\" or a number of milliseconds"
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
        let c = KafkaConfig::default();
        assert_eq!(c.brokers, "localhost:9092");
        assert_eq!(c.topic, "bookverse.checkout.orders");
        assert_eq!(c.client_id, "bookverse-checkout");
        assert_eq!(c.source, "/bookverse/checkout");
        assert_eq!(c.message_timeout, Duration::from_secs(30));
        assert!(c.extra.is_empty());
        c.validate().unwrap();
    }

    #[test]
    fn deserializes_partial_config_over_defaults() {
        let c: KafkaConfig = serde_json::from_value(serde_json::json!({
            "brokers": "k1:9092,k2:9092",
            "message_timeout": "5s",
            "extra": { "security.protocol": "SASL_SSL", "sasl.password": "hunter2" }
        }))
        .unwrap();
        assert_eq!(c.brokers, "k1:9092,k2:9092");
        assert_eq!(c.topic, KafkaConfig::DEFAULT_TOPIC);
        assert_eq!(c.message_timeout, Duration::from_secs(5));
        assert_eq!(c.extra["sasl.password"], "hunter2");
    }

    #[test]
    fn refuses_unknown_fields_and_bad_durations() {
        let typo = serde_json::from_value::<KafkaConfig>(serde_json::json!({ "broker": "x" }));
        assert!(typo.is_err());
        let bad =
            serde_json::from_value::<KafkaConfig>(serde_json::json!({ "message_timeout": "soon" }));
        assert!(bad.is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1500"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("3h"), None);
        let c: KafkaConfig =
            serde_json::from_value(serde_json::json!({ "message_timeout": 1500 })).unwrap();
        assert_eq!(c.message_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn debug_redacts_secrets_but_keeps_the_rest() {
        let mut c = KafkaConfig::default();
        c.extra.insert("sasl.username".into(), "checkout".into());
        c.extra.insert("sasl.password".into(), "hunter2".into());
        c.extra
            .insert("ssl.key.password".into(), "s3cret-key".into());
        c.extra
            .insert("sasl.oauthbearer.client.secret".into(), "abc123".into());
        let shown = format!("{c:?}");
        assert!(shown.contains("checkout"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        for secret in ["hunter2", "s3cret-key", "abc123"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
    }

    #[test]
    fn validation_names_the_key() {
        let key_of = |c: KafkaConfig| match c.validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        };
        let base = KafkaConfig::default;
        assert_eq!(
            key_of(KafkaConfig {
                brokers: " , ".into(),
                ..base()
            }),
            "brokers"
        );
        assert_eq!(
            key_of(KafkaConfig {
                topic: "orders/eu".into(),
                ..base()
            }),
            "topic"
        );
        assert_eq!(
            key_of(KafkaConfig {
                topic: "..".into(),
                ..base()
            }),
            "topic"
        );
        assert_eq!(
            key_of(KafkaConfig {
                source: String::new(),
                ..base()
            }),
            "source"
        );
        assert_eq!(
            key_of(KafkaConfig {
                message_timeout: Duration::ZERO,
                ..base()
            }),
            "message_timeout"
        );
        let mut c = base();
        c.extra.insert("acks".into(), "1".into());
        assert_eq!(key_of(c), "extra.acks");
        let mut c = base();
        c.extra.insert("Enable.Idempotence".into(), "false".into());
        assert_eq!(key_of(c), "extra.Enable.Idempotence");
    }

    #[test]
    fn the_sink_owns_the_guarantee_settings() {
        let mut c = KafkaConfig::default();
        c.extra.insert("linger.ms".into(), "20".into());
        let cfg = c.client_config();
        assert_eq!(cfg.get("enable.idempotence"), Some("true"));
        assert_eq!(cfg.get("acks"), Some("all"));
        assert_eq!(cfg.get("message.timeout.ms"), Some("30000"));
        assert_eq!(cfg.get("bootstrap.servers"), Some("localhost:9092"));
        assert_eq!(cfg.get("client.id"), Some("bookverse-checkout"));
        assert_eq!(cfg.get("linger.ms"), Some("20"));
    }
}
