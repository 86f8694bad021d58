//! [`KafkaSink`]: the outbox relay's [`EventSink`] for Kafka.
//!
//! One record becomes one Kafka message: key = order id (so all of an
//! order's events share a partition and keep their order), value = the JSON
//! envelope, CloudEvents attributes in `ce_*` headers. A batch is enqueued
//! whole, so librdkafka can pack it into few requests, and then every
//! delivery report is awaited, so each record's result says what the broker
//! acknowledged, not what was merely queued.

use std::collections::HashSet;
use std::fmt;
use std::sync::{PoisonError, RwLock};

use async_trait::async_trait;
use checkout_domain::OrderId;
use checkout_ports::{EventSink, OutboxRecord, SinkError};
use futures::future::join_all;
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::cloudevents;
use crate::config::{ConfigError, KafkaConfig, is_secret_key};
use crate::errors::classify;

/// Publishes outbox events to one Kafka topic with an idempotent producer.
///
/// Delivery is at-least-once: an event is reported published only once every
/// in-sync replica has it (`acks=all`), and anything else is reported as a
/// failure for the relay to retry or park. Retries inside the producer cannot
/// duplicate or reorder (`enable.idempotence=true`); a re-publish by the
/// relay can duplicate, with the same event id (`ce_id`), which consumers use
/// to drop the copy.
pub struct KafkaSink {
    config: KafkaConfig,
    /// Kept to build a fresh producer after a fatal error.
    client_config: ClientConfig,
    /// The producer and its generation. An idempotent producer that hits a
    /// fatal error (e.g. the broker lost its sequence state) refuses all
    /// further work, so the sink swaps in a new one; the generation makes
    /// sure two concurrent batches that saw the same fatal error replace it
    /// only once.
    producer: RwLock<(u64, FutureProducer)>,
}

impl KafkaSink {
    /// Checks `config` and creates the producer. Connecting to the brokers
    /// happens in the background: an unreachable cluster is not an error
    /// here, it makes `publish` report `Unavailable` until it is reachable.
    pub fn new(config: KafkaConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let client_config = config.client_config();
        let producer = create_producer(&client_config)?;
        Ok(Self {
            config,
            client_config,
            producer: RwLock::new((0, producer)),
        })
    }

    /// The topic events go to.
    pub fn topic(&self) -> &str {
        &self.config.topic
    }

    /// The configuration the sink runs with.
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    fn current_producer(&self) -> (u64, FutureProducer) {
        // The lock guards a plain swap; a panic elsewhere cannot leave it
        // half-written, so a poisoned lock is still good to read.
        self.producer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts one record on the producer's queue.
    fn enqueue(
        &self,
        producer: &FutureProducer,
        record: &OutboxRecord,
    ) -> Result<DeliveryFuture, SinkError> {
        let payload = serde_json::to_vec(&record.payload).map_err(|e| {
            SinkError::Rejected(format!("event {} is not serialisable: {e}", record.id))
        })?;
        let key = record.order_id.to_string();
        let headers = cloudevents::headers(record, &self.config.source)?
            .iter()
            .fold(OwnedHeaders::new_with_capacity(8), |h, (name, value)| {
                h.insert(Header {
                    key: name,
                    value: Some(value.as_str()),
                })
            });
        let message = FutureRecord::to(&self.config.topic)
            .key(&key)
            .payload(&payload)
            .headers(headers);
        producer
            .send_result(message)
            .map_err(|(err, _message)| classify(&err))
    }

    /// Replaces the producer if it hit a fatal error, so the next batch (the
    /// relay retries this one's failures) goes through a working one.
    fn recover_from_fatal(&self, generation: u64, producer: &FutureProducer) {
        let Some((code, reason)) = producer.client().fatal_error() else {
            return;
        };
        tracing::error!(?code, %reason, "Kafka producer hit a fatal error; creating a new one");
        let fresh = match create_producer(&self.client_config) {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::error!(error = %e, "could not recreate the Kafka producer");
                return;
            }
        };
        let mut slot = self
            .producer
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.0 == generation {
            *slot = (generation + 1, fresh);
        }
    }
}

#[async_trait]
impl EventSink for KafkaSink {
    fn name(&self) -> &str {
        "kafka"
    }

    async fn publish(&self, batch: &[OutboxRecord]) -> Vec<Result<(), SinkError>> {
        let (generation, producer) = self.current_producer();

        // Enqueue everything first. Once an order's event could not be
        // queued (full queue), its later events in the batch are held back:
        // sending them would put them on the topic ahead of it.
        let mut held: HashSet<OrderId> = HashSet::new();
        let mut pending = Vec::with_capacity(batch.len());
        for record in batch {
            if held.contains(&record.order_id) {
                pending.push(Pending::Failed(held_back(record)));
                continue;
            }
            match self.enqueue(&producer, record) {
                Ok(delivery) => pending.push(Pending::Queued(delivery)),
                Err(err) => {
                    if matches!(err, SinkError::Unavailable(_)) {
                        held.insert(record.order_id);
                    }
                    pending.push(Pending::Failed(err));
                }
            }
        }

        // Then wait for every delivery report; librdkafka resolves each one
        // within `message_timeout`, so this cannot hang.
        let outcomes = join_all(pending.into_iter().map(Pending::outcome)).await;
        let results = keep_per_order_order(batch, outcomes);

        self.recover_from_fatal(generation, &producer);
        // One warning per batch (an outage fails every event of every
        // retry), the details per event at debug level.
        let failures: Vec<_> = batch
            .iter()
            .zip(&results)
            .filter_map(|(record, result)| result.as_ref().err().map(|error| (record, error)))
            .collect();
        for (record, error) in &failures {
            tracing::debug!(
                order_id = %record.order_id,
                event_id = %record.id,
                sequence = record.sequence,
                %error,
                "event not published to Kafka"
            );
        }
        if let Some((_, first_error)) = failures.first() {
            tracing::warn!(
                failed = failures.len(),
                batch = batch.len(),
                first_error = %first_error,
                "events not published to Kafka"
            );
        }
        results
    }
}

impl fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the ClientConfig: its Debug would print `sasl.password`.
        f.debug_struct("KafkaSink")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One record of a batch between enqueueing and its delivery report.
enum Pending {
    Queued(DeliveryFuture),
    Failed(SinkError),
}

impl Pending {
    async fn outcome(self) -> Result<(), SinkError> {
        match self {
            Pending::Failed(err) => Err(err),
            Pending::Queued(delivery) => match delivery.await {
                Ok(Ok(_delivered)) => Ok(()),
                Ok(Err((err, _message))) => Err(classify(&err)),
                // The producer went away before reporting: the outcome is
                // unknown, so the event must be tried again.
                Err(_canceled) => Err(classify(&KafkaError::Canceled)),
            },
        }
    }
}

/// The error of an event not sent because an earlier one of its order failed.
fn held_back(record: &OutboxRecord) -> SinkError {
    SinkError::Unavailable(format!(
        "not sent: an earlier event of order {} in this batch could not be queued",
        record.order_id
    ))
}

/// Makes sure the relay never marks an event published while an earlier
/// event of the same order is still to be retried.
///
/// Brokers acknowledge per partition, so in rare cases (an earlier event
/// timed out just before the broker came back) a later event of the same
/// order is delivered although an earlier one failed. Reporting it as
/// published would let the relay move past the failed one; instead it is
/// reported `Unavailable` too and re-sent after the failed one. Consumers see
/// that second copy with the same event id and drop it.
fn keep_per_order_order(
    batch: &[OutboxRecord],
    outcomes: Vec<Result<(), SinkError>>,
) -> Vec<Result<(), SinkError>> {
    let mut failed: HashSet<OrderId> = HashSet::new();
    batch
        .iter()
        .zip(outcomes)
        .map(|(record, outcome)| match outcome {
            Ok(()) if failed.contains(&record.order_id) => Err(SinkError::Unavailable(format!(
                "delivered after an earlier event of order {} failed; to be re-sent after it",
                record.order_id
            ))),
            Err(SinkError::Unavailable(reason)) => {
                failed.insert(record.order_id);
                Err(SinkError::Unavailable(reason))
            }
            other => other,
        })
        .collect()
}

fn create_producer(config: &ClientConfig) -> Result<FutureProducer, ConfigError> {
    config
        .create()
        .map_err(|e| ConfigError::Client(describe_creation_error(e)))
}

/// librdkafka's message for a bad property quotes the value; for a secret
/// key that value must not end up in a log.
fn describe_creation_error(err: KafkaError) -> String {
    match err {
        KafkaError::ClientConfig(_, _, key, _) if is_secret_key(&key) => {
            format!("invalid value for `{key}` (value not shown)")
        }
        KafkaError::ClientConfig(_, description, key, _) => {
            format!("invalid value for `{key}`: {description}")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkout_domain::EventId;
    use rdkafka::types::RDKafkaConfRes;
    use time::macros::datetime;

    fn record(order: &str, sequence: u32) -> OutboxRecord {
        let order_id = OrderId::parse(order).unwrap();
        OutboxRecord {
            id: EventId::from_uuid(order_id.as_uuid()),
            order_id,
            sequence,
            event_type: "order.state_changed".into(),
            payload: serde_json::json!({}),
            occurred_at: datetime!(2026-03-14 09:26:53 UTC),
            attempts: 0,
        }
    }

    const A: &str = "01953a4e-7c3b-7d2a-9f10-4b6c1e2d3a40";
    const B: &str = "01953a4e-7c3b-7d2a-9f10-4b6c1e2d3a41";

    #[test]
    fn a_later_event_of_a_failed_order_is_not_reported_published() {
        let batch = [record(A, 1), record(B, 1), record(A, 2), record(B, 2)];
        let unavailable = || Err(SinkError::Unavailable("timed out".into()));
        let results = keep_per_order_order(&batch, vec![unavailable(), Ok(()), Ok(()), Ok(())]);
        assert!(matches!(results[0], Err(SinkError::Unavailable(_))));
        assert_eq!(results[1], Ok(()));
        assert!(matches!(results[2], Err(SinkError::Unavailable(_))));
        assert_eq!(results[3], Ok(()));
    }

    #[test]
    fn a_rejected_event_does_not_hold_its_order_back() {
        // The relay parks a rejected event and moves on with the order.
        let batch = [record(A, 1), record(A, 2)];
        let results = keep_per_order_order(
            &batch,
            vec![Err(SinkError::Rejected("too large".into())), Ok(())],
        );
        assert!(matches!(results[0], Err(SinkError::Rejected(_))));
        assert_eq!(results[1], Ok(()));
    }

    #[test]
    fn creation_errors_do_not_quote_secret_values() {
        let err = KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value \"hunter2\" for configuration property \"sasl.password\"".into(),
            "sasl.password".into(),
            "hunter2".into(),
        );
        let shown = describe_creation_error(err);
        assert!(shown.contains("sasl.password"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn a_bad_property_fails_at_construction_naming_it() {
        let mut config = KafkaConfig::default();
        config
            .extra
            .insert("compression.type".into(), "bogus".into());
        let err = KafkaSink::new(config).unwrap_err();
        assert!(err.to_string().contains("compression.type"), "{err}");
    }

    #[test]
    fn debug_does_not_print_secrets() {
        let mut config = KafkaConfig::default();
        config
            .extra
            .insert("sasl.password".into(), "hunter2".into());
        config
            .extra
            .insert("security.protocol".into(), "SASL_PLAINTEXT".into());
        config.extra.insert("sasl.mechanism".into(), "PLAIN".into());
        config
            .extra
            .insert("sasl.username".into(), "checkout".into());
        let sink = KafkaSink::new(config).unwrap();
        let shown = format!("{sink:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("bookverse.checkout.orders"), "{shown}");
    }
}
