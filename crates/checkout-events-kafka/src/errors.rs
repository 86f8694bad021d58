//! How librdkafka's errors become the port's [`SinkError`].
//!
//! The relay retries an `Unavailable` event later and parks a `Rejected` one
//! for good, so the line between them decides whether an event waits or is
//! set aside. The rule: `Rejected` only for errors about *this event* (too
//! large, malformed, refused by a topic policy), which no retry can fix.
//! Everything about the cluster or the client — brokers down, timeouts, a
//! full local queue, missing topic, failed authentication or authorisation,
//! an unknown code — is `Unavailable`: parking would set aside every event
//! while the cause is a broker or a setting that an operator can fix, after
//! which the waiting events go out by themselves.

use checkout_ports::SinkError;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Maps an enqueue or delivery error to the port's error.
pub fn classify(err: &KafkaError) -> SinkError {
    match err.rdkafka_error_code() {
        Some(code) if is_permanent(code) => SinkError::Rejected(describe(err)),
        _ => SinkError::Unavailable(describe(err)),
    }
}

/// Errors that say the event itself can never be accepted.
fn is_permanent(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        // Larger than the producer's `message.max.bytes` (checked locally)
        // or the topic's `max.message.bytes` (checked by the broker).
        C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::MessageBatchTooLarge
            // The broker refused the record's content or format.
            | C::InvalidRecord
            | C::UnsupportedForMessageFormat
            | C::PolicyViolation
            // The topic name is not valid for the broker (names are checked
            // at start-up, so this means a broker-side rule).
            | C::InvalidTopic
            // librdkafka refused the message before sending it.
            | C::BadMessage
            | C::InvalidArgument
            | C::KeySerialization
            | C::ValueSerialization
    )
}

/// A one-line description with the librdkafka code, for the outbox's
/// `last_error` column and the logs.
fn describe(err: &KafkaError) -> String {
    match err.rdkafka_error_code() {
        Some(code) => format!("{err} ({code:?})"),
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(code: RDKafkaErrorCode) -> &'static str {
        match classify(&KafkaError::MessageProduction(code)) {
            SinkError::Unavailable(_) => "unavailable",
            SinkError::Rejected(_) => "rejected",
        }
    }

    #[test]
    fn transient_and_cluster_wide_errors_are_unavailable() {
        use RDKafkaErrorCode as C;
        for code in [
            C::QueueFull,
            C::MessageTimedOut,
            C::RequestTimedOut,
            C::OperationTimedOut,
            C::BrokerTransportFailure,
            C::AllBrokersDown,
            C::NetworkException,
            C::LeaderNotAvailable,
            C::NotLeaderForPartition,
            C::NotEnoughReplicas,
            C::UnknownTopicOrPartition,
            C::UnknownTopic,
            C::TopicAuthorizationFailed,
            C::SaslAuthenticationFailed,
            C::Fatal,
            C::Unknown,
        ] {
            assert_eq!(kind(code), "unavailable", "{code:?}");
        }
        assert!(matches!(
            classify(&KafkaError::Canceled),
            SinkError::Unavailable(_)
        ));
    }

    #[test]
    fn errors_about_the_event_are_rejected() {
        use RDKafkaErrorCode as C;
        for code in [
            C::MessageSizeTooLarge,
            C::InvalidMessageSize,
            C::InvalidRecord,
            C::InvalidTopic,
            C::PolicyViolation,
        ] {
            assert_eq!(kind(code), "rejected", "{code:?}");
        }
    }

    #[test]
    fn the_description_names_the_code() {
        let e = classify(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge,
        ));
        assert!(e.to_string().contains("MessageSizeTooLarge"), "{e}");
    }
}
