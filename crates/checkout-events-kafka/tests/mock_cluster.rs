//! `KafkaSink` against librdkafka's built-in mock cluster: real Kafka
//! protocol over localhost sockets, no external broker.
//!
//! Every wait is bounded (short `message_timeout`, a bounded number of
//! consumer polls and publish retries) and no test looks at the clock.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use checkout_domain::{DomainEvent, EventEnvelope, OrderId, OrderState};
use checkout_events_kafka::{KafkaConfig, KafkaSink};
use checkout_ports::{EventSink, OutboxRecord, SinkError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use time::macros::datetime;

const TOPIC: &str = "bookverse.checkout.orders";

fn order(n: u8) -> OrderId {
    OrderId::parse(&format!("01953a4e-7c3b-7d2a-9f10-4b6c1e2d3a{n:02x}")).unwrap()
}

/// The outbox record of an order's `sequence`-th event, as the relay would
/// hand it over; `reason` lets a test make the payload as large as it needs.
fn record_with_reason(order_id: OrderId, sequence: u32, reason: String) -> OutboxRecord {
    let envelope = EventEnvelope::new(
        order_id,
        sequence,
        datetime!(2026-03-14 09:26:53 UTC) + time::Duration::seconds(i64::from(sequence)),
        DomainEvent::OrderStateChanged {
            from: Some(OrderState::Pending),
            to: OrderState::Validating,
            reason,
        },
    );
    OutboxRecord {
        id: envelope.id,
        order_id,
        sequence,
        event_type: envelope.event_type().to_owned(),
        payload: envelope.to_json(),
        occurred_at: envelope.occurred_at,
        attempts: 0,
    }
}

fn record(order_id: OrderId, sequence: u32) -> OutboxRecord {
    record_with_reason(order_id, sequence, format!("step {sequence}"))
}

/// `sequences` events of each order, interleaved as the outbox would hand
/// them over: A1 B1 C1 A2 B2 C2 …
fn interleaved(orders: &[OrderId], sequences: std::ops::RangeInclusive<u32>) -> Vec<OutboxRecord> {
    sequences
        .flat_map(|s| orders.iter().map(move |o| record(*o, s)))
        .collect()
}

fn sink(bootstrap: &str, message_timeout: Duration, extra: &[(&str, &str)]) -> KafkaSink {
    let mut extra: BTreeMap<String, String> = extra
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    // Reconnect quickly once a broker is back, so a test needs few retries.
    extra
        .entry("reconnect.backoff.max.ms".into())
        .or_insert_with(|| "200".into());
    KafkaSink::new(KafkaConfig {
        brokers: bootstrap.to_owned(),
        message_timeout,
        extra,
        ..KafkaConfig::default()
    })
    .unwrap()
}

/// A message as a consumer sees it.
#[derive(Debug)]
struct Received {
    partition: i32,
    offset: i64,
    key: String,
    headers: HashMap<String, String>,
    payload: Value,
}

/// Reads the topic from the beginning until `expected` messages arrived or
/// a bounded number of polls found nothing more.
fn consume(bootstrap: &str, partitions: i32, expected: usize) -> Vec<Received> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "events-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();

    let mut received = Vec::new();
    let mut idle_polls = 0;
    while received.len() < expected && idle_polls < 50 {
        match consumer.poll(Duration::from_millis(200)) {
            None => idle_polls += 1,
            Some(Err(e)) => panic!("consumer error: {e}"),
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                let value = h.value.map(|v| String::from_utf8(v.to_vec()).unwrap());
                                (h.key.to_owned(), value.unwrap_or_default())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                received.push(Received {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
                    headers,
                    payload: serde_json::from_slice(m.payload().unwrap()).unwrap(),
                });
            }
        }
    }
    received.sort_by_key(|r| (r.partition, r.offset));
    received
}

/// Per order, the sequences in the order a consumer of the order's
/// partition meets them for the first time (duplicates dropped by event id,
/// as the doc tells consumers to).
fn first_seen_sequences(received: &[Received]) -> HashMap<String, Vec<u64>> {
    let mut seen_ids = HashSet::new();
    let mut per_order: HashMap<String, Vec<u64>> = HashMap::new();
    for r in received {
        if seen_ids.insert(r.payload["id"].as_str().unwrap().to_owned()) {
            per_order
                .entry(r.key.clone())
                .or_default()
                .push(r.payload["sequence"].as_u64().unwrap());
        }
    }
    per_order
}

fn all_ok(results: &[Result<(), SinkError>]) -> bool {
    results.iter().all(Result::is_ok)
}

/// What the relay does with `Unavailable`: try the same events again, here
/// at most ten times, a little apart. Anything but `Unavailable` fails.
async fn publish_until_ok(sink: &KafkaSink, batch: &[OutboxRecord]) -> bool {
    for _attempt in 0..10 {
        let results = sink.publish(batch).await;
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Ok(()) | Err(SinkError::Unavailable(_)))),
            "{results:?}"
        );
        if all_ok(&results) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn events_arrive_with_key_headers_payload_and_per_order_order() {
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic(TOPIC, 6, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let sink = sink(&bootstrap, Duration::from_secs(10), &[]);

    let orders = [order(1), order(2), order(3), order(4)];
    let batch = interleaved(&orders, 1..=5);
    let results = sink.publish(&batch).await;
    assert_eq!(results.len(), batch.len());
    assert!(all_ok(&results), "{results:?}");

    let received = consume(&bootstrap, 6, batch.len());
    assert_eq!(
        received.len(),
        batch.len(),
        "every event arrives exactly once"
    );

    let by_id: HashMap<String, &OutboxRecord> =
        batch.iter().map(|r| (r.id.to_string(), r)).collect();
    for message in &received {
        let id = message.payload["id"].as_str().unwrap();
        let sent = by_id[id];
        assert_eq!(message.payload, sent.payload, "the value is the envelope");
        assert_eq!(
            message.key,
            sent.order_id.to_string(),
            "the key is the order id"
        );
        let h = &message.headers;
        assert_eq!(h["ce_specversion"], "1.0");
        assert_eq!(h["ce_id"], sent.id.to_string());
        assert_eq!(h["ce_source"], "/bookverse/checkout");
        assert_eq!(h["ce_type"], "order.state_changed");
        assert_eq!(
            h["ce_time"],
            message.payload["occurred_at"].as_str().unwrap()
        );
        assert_eq!(h["ce_subject"], sent.order_id.to_string());
        assert_eq!(h["content-type"], "application/json");
    }

    // One order, one partition, its events in sequence order.
    for o in &orders {
        let partitions: HashSet<i32> = received
            .iter()
            .filter(|r| r.key == o.to_string())
            .map(|r| r.partition)
            .collect();
        assert_eq!(partitions.len(), 1, "order {o} spread over {partitions:?}");
    }
    for (order, sequences) in first_seen_sequences(&received) {
        assert_eq!(sequences, vec![1, 2, 3, 4, 5], "order {order}");
    }
}

#[tokio::test]
async fn a_broker_outage_is_reported_unavailable_and_nothing_is_lost_or_reordered() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 2, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let sink = sink(&bootstrap, Duration::from_millis(1500), &[]);
    let orders = [order(1), order(2)];

    // Up: the first events go through.
    let first = interleaved(&orders, 1..=2);
    assert!(all_ok(&sink.publish(&first).await));

    // Down: the sink says so for every event instead of dropping them.
    cluster.broker_down(1).unwrap();
    let second = interleaved(&orders, 3..=5);
    let results = sink.publish(&second).await;
    assert_eq!(results.len(), second.len());
    for result in &results {
        assert!(
            matches!(result, Err(SinkError::Unavailable(_))),
            "expected Unavailable while the broker is down, got {result:?}"
        );
    }

    // Up again: the relay retries the same events (bounded here) until they
    // are all published, then carries on with the next ones.
    cluster.broker_up(1).unwrap();
    assert!(
        publish_until_ok(&sink, &second).await,
        "events were not published after the broker came back"
    );
    let third = interleaved(&orders, 6..=6);
    assert!(all_ok(&sink.publish(&third).await));

    let received = consume(&bootstrap, 2, 12);
    let sequences = first_seen_sequences(&received);
    for o in &orders {
        assert_eq!(
            sequences[&o.to_string()],
            vec![1, 2, 3, 4, 5, 6],
            "order {o}: every event, each first seen in sequence order"
        );
    }
}

#[tokio::test]
async fn transient_broker_errors_are_retried_inside_the_producer() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let sink = sink(
        &bootstrap,
        Duration::from_secs(10),
        &[("retry.backoff.ms", "10")],
    );

    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 3],
    );
    let batch = interleaved(&[order(1), order(2)], 1..=3);
    let results = sink.publish(&batch).await;
    assert!(all_ok(&results), "{results:?}");

    let received = consume(&bootstrap, 1, batch.len());
    assert_eq!(
        received.len(),
        batch.len(),
        "no duplicates from internal retries"
    );
    for (order, sequences) in first_seen_sequences(&received) {
        assert_eq!(sequences, vec![1, 2, 3], "order {order}");
    }
}

#[tokio::test]
async fn an_oversized_event_is_rejected_and_does_not_hold_back_the_others() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    // librdkafka's smallest allowed limit; the small events are ~600 bytes.
    let sink = sink(
        &bootstrap,
        Duration::from_secs(10),
        &[("message.max.bytes", "1000")],
    );

    let (a, b) = (order(1), order(2));
    let huge = record_with_reason(a, 2, "x".repeat(5_000));
    let batch = vec![record(a, 1), huge, record(a, 3), record(b, 1)];
    let results = sink.publish(&batch).await;
    assert_eq!(results[0], Ok(()));
    assert!(
        matches!(&results[1], Err(SinkError::Rejected(reason)) if reason.contains("MessageSizeTooLarge")),
        "{:?}",
        results[1]
    );
    assert_eq!(results[2], Ok(()));
    assert_eq!(results[3], Ok(()));

    let received = consume(&bootstrap, 1, 3);
    let sequences = first_seen_sequences(&received);
    assert_eq!(sequences[&a.to_string()], vec![1, 3]);
    assert_eq!(sequences[&b.to_string()], vec![1]);
}

#[tokio::test]
async fn an_event_the_broker_refuses_for_good_is_rejected() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let sink = sink(&bootstrap, Duration::from_secs(10), &[]);

    // The broker's own size check (the topic's max.message.bytes).
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let results = sink.publish(&[record(order(1), 1)]).await;
    assert!(
        matches!(&results[0], Err(SinkError::Rejected(_))),
        "{results:?}"
    );

    // The next event goes through.
    let results = sink.publish(&[record(order(1), 2)]).await;
    assert_eq!(results, vec![Ok(())]);
}

#[tokio::test]
async fn an_empty_batch_publishes_nothing() {
    let cluster = MockCluster::new(1).unwrap();
    let sink = sink(&cluster.bootstrap_servers(), Duration::from_secs(1), &[]);
    assert!(sink.publish(&[]).await.is_empty());
    assert_eq!(sink.name(), "kafka");
}

#[tokio::test]
async fn a_full_queue_is_unavailable_and_holds_back_the_rest_of_that_order() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    // Room for one undelivered message: the second enqueue of a batch finds
    // the queue full (delivery needs a network round trip, enqueueing none).
    let sink = sink(
        &bootstrap,
        Duration::from_secs(10),
        &[("queue.buffering.max.messages", "1")],
    );

    let (a, b) = (order(1), order(2));
    let batch = vec![record(a, 1), record(a, 2), record(b, 1), record(a, 3)];
    let results = sink.publish(&batch).await;
    assert_eq!(results[0], Ok(()));
    assert!(
        matches!(&results[1], Err(SinkError::Unavailable(r)) if r.contains("QueueFull")),
        "{results:?}"
    );
    assert!(
        matches!(&results[2], Err(SinkError::Unavailable(r)) if r.contains("QueueFull")),
        "{results:?}"
    );
    // Never tried: sending it would have put it ahead of a2.
    assert!(
        matches!(&results[3], Err(SinkError::Unavailable(r)) if r.contains("earlier event")),
        "{results:?}"
    );

    // The relay retries what failed, one by one here, and order is kept.
    for retry in &batch[1..] {
        assert!(publish_until_ok(&sink, std::slice::from_ref(retry)).await);
    }
    let received = consume(&bootstrap, 1, 4);
    let sequences = first_seen_sequences(&received);
    assert_eq!(sequences[&a.to_string()], vec![1, 2, 3]);
    assert_eq!(sequences[&b.to_string()], vec![1]);
}

#[tokio::test]
async fn a_fatal_producer_error_is_unavailable_and_the_producer_is_replaced() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 1, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let sink = sink(&bootstrap, Duration::from_secs(5), &[]);

    // An idempotent producer that cannot get a producer id is dead for good.
    cluster.request_errors(
        RDKafkaApiKey::InitProducerId,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED],
    );
    let results = sink.publish(&[record(order(1), 1)]).await;
    assert!(
        matches!(&results[0], Err(SinkError::Unavailable(_))),
        "{results:?}"
    );

    // The sink swapped in a new producer: the retry goes through.
    assert!(publish_until_ok(&sink, &[record(order(1), 1)]).await);
}
