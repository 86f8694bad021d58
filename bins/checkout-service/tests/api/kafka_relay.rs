//! The outbox relay publishing to Kafka end to end: orders' events written
//! by the repository, relayed by `OutboxRelay` through `KafkaSink` to
//! librdkafka's built-in mock cluster, and read back by a consumer — every
//! event once, keyed by order, with CloudEvents headers, in per-order order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use checkout_app::workers::{OutboxRelay, RelaySettings};
use checkout_domain::{
    Cart, CartDraft, CartItemDraft, Order, OrderId, OrderState, TransitionContext,
};
use checkout_events_kafka::{KafkaConfig, KafkaSink};
use checkout_ports::{OrderRepository, OutboxStore, SystemClock};
use checkout_store_memory::MemoryStore;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use time::OffsetDateTime;

const TOPIC: &str = "bookverse.checkout.orders";

async fn order_with_events(store: &MemoryStore) -> OrderId {
    let now = OffsetDateTime::now_utc();
    let cart = Cart::parse(CartDraft {
        customer_id: Some("cust-1".into()),
        items: vec![CartItemDraft {
            book_id: Some("bk-1".into()),
            quantity: Some(1),
            unit_price: None,
        }],
        payment_method_token: Some("pm".into()),
        ..Default::default()
    })
    .unwrap();
    let (mut o, created) = Order::place(OrderId::from_uuid(uuid::Uuid::now_v7()), &cart, now, None);
    let changes = vec![
        created,
        o.transition(OrderState::Validating, TransitionContext::new("v", now))
            .unwrap(),
        o.transition(
            OrderState::InventoryFailed,
            TransitionContext::new("x", now),
        )
        .unwrap(),
        o.transition(OrderState::Cancelled, TransitionContext::new("c", now))
            .unwrap(),
    ];
    store.create(&o, &changes).await.unwrap();
    o.id()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_kafka_once_keyed_and_in_order() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(TOPIC, 3, 1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let sink = KafkaSink::new(KafkaConfig {
        brokers: bootstrap.clone(),
        message_timeout: Duration::from_secs(10),
        ..KafkaConfig::default()
    })
    .unwrap();
    let store = MemoryStore::new();
    let mut orders = Vec::new();
    for _ in 0..4 {
        orders.push(order_with_events(&store).await);
    }
    let written = store.outbox_events().len();
    let relay = OutboxRelay::new(
        Arc::new(store.clone()),
        Arc::new(sink),
        Arc::new(SystemClock),
        RelaySettings::default(),
    );
    for _ in 0..10 {
        relay.run_once().await.unwrap();
        if store
            .stats(OffsetDateTime::now_utc())
            .await
            .unwrap()
            .pending
            == 0
        {
            break;
        }
    }
    assert_eq!(
        store
            .stats(OffsetDateTime::now_utc())
            .await
            .unwrap()
            .pending,
        0,
        "every event marked published"
    );

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "relay-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..3 {
        assignment
            .add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut by_order: HashMap<String, Vec<u64>> = HashMap::new();
    let mut received = 0;
    let mut idle = 0;
    while received < written && idle < 50 {
        match consumer.poll(Duration::from_millis(200)) {
            None => idle += 1,
            Some(Err(e)) => panic!("consumer error: {e}"),
            Some(Ok(m)) => {
                received += 1;
                let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
                let payload: serde_json::Value =
                    serde_json::from_slice(m.payload().unwrap()).unwrap();
                assert_eq!(payload["order_id"], key, "keyed by order id");
                let headers = m.headers().unwrap();
                let header = |name: &str| {
                    headers
                        .iter()
                        .find(|h| h.key == name)
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8(v.to_vec()).unwrap())
                };
                assert_eq!(header("ce_id").as_deref(), payload["id"].as_str());
                assert_eq!(header("ce_type").as_deref(), payload["type"].as_str());
                assert_eq!(header("ce_specversion").as_deref(), Some("1.0"));
                by_order
                    .entry(key)
                    .or_default()
                    .push(payload["sequence"].as_u64().unwrap());
            }
        }
    }
    assert_eq!(received, written, "every event arrives, once");
    for o in &orders {
        let seqs = &by_order[&o.to_string()];
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "order {o} out of sequence: {seqs:?}"
        );
        assert_eq!(seqs.len(), written / orders.len());
    }
}
