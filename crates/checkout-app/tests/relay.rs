//! The outbox relay over the in-memory store: per-order order, retries with
//! backoff, parking of poison events, several relays at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use checkout_app::workers::{OutboxRelay, RelaySettings};
use checkout_domain::*;
use checkout_ports::*;
use checkout_store_memory::MemoryStore;
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

const T0: OffsetDateTime = datetime!(2026-11-25 10:00 UTC);

struct FixedClock(Mutex<OffsetDateTime>);
impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}
impl FixedClock {
    fn advance(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }
}

/// Records what it published; fails events of the orders it is told to.
#[derive(Default)]
struct ScriptedSink {
    published: Mutex<Vec<(OrderId, u32)>>,
    unavailable_for: Mutex<Vec<OrderId>>,
    reject_type: Mutex<Option<String>>,
}

#[async_trait]
impl EventSink for ScriptedSink {
    fn name(&self) -> &str {
        "scripted"
    }
    async fn publish(&self, batch: &[OutboxRecord]) -> Vec<Result<(), SinkError>> {
        tokio::task::yield_now().await;
        batch
            .iter()
            .map(|r| {
                if self.unavailable_for.lock().unwrap().contains(&r.order_id) {
                    return Err(SinkError::Unavailable("broker down".into()));
                }
                if self.reject_type.lock().unwrap().as_deref() == Some(r.event_type.as_str()) {
                    return Err(SinkError::Rejected("too large".into()));
                }
                self.published
                    .lock()
                    .unwrap()
                    .push((r.order_id, r.sequence));
                Ok(())
            })
            .collect()
    }
}

/// Writes an order with its creation and a few transitions: 5 events.
async fn order_with_events(store: &MemoryStore) -> OrderId {
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
    let (mut o, created) = Order::place(OrderId::from_uuid(Uuid::now_v7()), &cart, T0, None);
    let mut changes = vec![created];
    changes.push(
        o.transition(OrderState::Validating, TransitionContext::new("v", T0))
            .unwrap(),
    );
    changes.push(
        o.transition(OrderState::InventoryFailed, TransitionContext::new("x", T0))
            .unwrap(),
    );
    changes.push(
        o.transition(OrderState::Cancelled, TransitionContext::new("c", T0))
            .unwrap(),
    );
    store.create(&o, &changes).await.unwrap();
    o.id()
}

fn relay(
    store: &MemoryStore,
    sink: Arc<ScriptedSink>,
    clock: Arc<FixedClock>,
    batch: u32,
) -> OutboxRelay {
    OutboxRelay::new(
        Arc::new(store.clone()),
        sink,
        clock,
        RelaySettings {
            batch,
            lease_seconds: 30,
            max_attempts: 3,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        },
    )
}

/// How many events the store holds for `order`.
fn events_of(store: &MemoryStore, order: OrderId) -> u32 {
    store
        .outbox_events()
        .iter()
        .filter(|e| e.order_id == order)
        .count() as u32
}

fn sequences_of(published: &[(OrderId, u32)], order: OrderId) -> Vec<u32> {
    published
        .iter()
        .filter(|(o, _)| *o == order)
        .map(|(_, s)| *s)
        .collect()
}

#[tokio::test]
async fn publishes_every_order_in_sequence() {
    let store = MemoryStore::new();
    let a = order_with_events(&store).await;
    let b = order_with_events(&store).await;
    let sink = Arc::new(ScriptedSink::default());
    let clock = Arc::new(FixedClock(Mutex::new(T0)));
    let r = relay(&store, sink.clone(), clock, 100);
    r.run_once().await.unwrap();
    let published = sink.published.lock().unwrap().clone();
    let n = events_of(&store, a);
    assert_eq!(sequences_of(&published, a), (1..=n).collect::<Vec<_>>());
    assert_eq!(sequences_of(&published, b), (1..=n).collect::<Vec<_>>());
    assert_eq!(store.stats(T0).await.unwrap().pending, 0);
}

#[tokio::test]
async fn a_broker_outage_loses_nothing_and_keeps_order() {
    let store = MemoryStore::new();
    let a = order_with_events(&store).await;
    let b = order_with_events(&store).await;
    let sink = Arc::new(ScriptedSink::default());
    sink.unavailable_for.lock().unwrap().push(a);
    let clock = Arc::new(FixedClock(Mutex::new(T0)));
    let r = relay(&store, sink.clone(), clock.clone(), 100);
    r.run_once().await.unwrap();
    // b went out; a's first event failed and nothing after it was sent.
    assert!(sequences_of(&sink.published.lock().unwrap(), a).is_empty());
    assert!(!sequences_of(&sink.published.lock().unwrap(), b).is_empty());
    // Before the backoff has passed, a is not retried.
    r.run_once().await.unwrap();
    assert!(sequences_of(&sink.published.lock().unwrap(), a).is_empty());
    sink.unavailable_for.lock().unwrap().clear();
    clock.advance(Duration::from_secs(31));
    r.run_once().await.unwrap();
    let n = events_of(&store, a);
    assert_eq!(
        sequences_of(&sink.published.lock().unwrap(), a),
        (1..=n).collect::<Vec<_>>()
    );
    assert_eq!(store.stats(clock.now()).await.unwrap().pending, 0);
}

#[tokio::test]
async fn a_poison_event_is_parked_without_blocking_other_orders() {
    let store = MemoryStore::new();
    let a = order_with_events(&store).await;
    let sink = Arc::new(ScriptedSink::default());
    *sink.reject_type.lock().unwrap() = Some("order.inventory_unavailable".into());
    let clock = Arc::new(FixedClock(Mutex::new(T0)));
    let r = relay(&store, sink.clone(), clock.clone(), 100);
    r.run_once().await.unwrap();
    let stats = store.stats(T0).await.unwrap();
    assert_eq!(stats.parked, 1);
    let b = order_with_events(&store).await;
    *sink.reject_type.lock().unwrap() = None;
    clock.advance(Duration::from_secs(120));
    r.run_once().await.unwrap();
    let published = sink.published.lock().unwrap().clone();
    assert!(!sequences_of(&published, b).is_empty(), "other orders flow");
    assert!(
        !sequences_of(&published, a).contains(&4),
        "the parked event stays parked"
    );
}

#[tokio::test]
async fn an_event_that_keeps_failing_is_parked_after_max_attempts() {
    let store = MemoryStore::new();
    let a = order_with_events(&store).await;
    let sink = Arc::new(ScriptedSink::default());
    sink.unavailable_for.lock().unwrap().push(a);
    let clock = Arc::new(FixedClock(Mutex::new(T0)));
    let r = relay(&store, sink.clone(), clock.clone(), 100);
    for _ in 0..3 {
        r.run_once().await.unwrap();
        clock.advance(Duration::from_secs(120));
    }
    assert_eq!(store.stats(clock.now()).await.unwrap().parked, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_at_once_publish_everything_in_order() {
    let store = MemoryStore::new();
    let mut orders = Vec::new();
    for _ in 0..20 {
        orders.push(order_with_events(&store).await);
    }
    let sink = Arc::new(ScriptedSink::default());
    let clock = Arc::new(FixedClock(Mutex::new(T0)));
    let r1 = relay(&store, sink.clone(), clock.clone(), 7);
    let r2 = relay(&store, sink.clone(), clock.clone(), 7);
    for _ in 0..20 {
        let (x, y) = tokio::join!(r1.run_once(), r2.run_once());
        x.unwrap();
        y.unwrap();
    }
    let published = sink.published.lock().unwrap().clone();
    let mut count: HashMap<OrderId, usize> = HashMap::new();
    for o in &orders {
        let seqs = sequences_of(&published, *o);
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "order {o} out of sequence: {seqs:?}"
        );
        count.insert(*o, seqs.len());
    }
    assert_eq!(
        published.len(),
        store.outbox_events().len(),
        "each event exactly once here"
    );
    assert_eq!(store.stats(T0).await.unwrap().pending, 0);
}

#[tokio::test]
async fn the_paced_relay_publishes_what_arrives_and_stops_when_cancelled() {
    let store = MemoryStore::new();
    let sink = Arc::new(ScriptedSink::default());
    let clock = Arc::new(FixedClock(Mutex::new(T0)));
    let r = Arc::new(relay(&store, sink.clone(), clock, 3));
    let token = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn({
        let (r, token) = (r.clone(), token.clone());
        async move { r.run_paced(Duration::from_millis(5), token).await }
    });
    // Orders written while it runs: their events go out, in full batches
    // and after its pauses, each order's in sequence.
    let mut orders = Vec::new();
    for _ in 0..4 {
        orders.push(order_with_events(&store).await);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let events = store.outbox_events().len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sink.published.lock().unwrap().len() < events {
        assert!(
            tokio::time::Instant::now() < deadline,
            "events not relayed: {:?}",
            sink.published.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    token.cancel();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the relay stops once cancelled")
        .unwrap();
    let published = sink.published.lock().unwrap().clone();
    assert_eq!(published.len(), events, "each event once: {published:?}");
    for order in orders {
        let n = events_of(&store, order);
        assert_eq!(sequences_of(&published, order), (1..=n).collect::<Vec<_>>());
    }
    assert_eq!(store.stats(T0).await.unwrap().pending, 0);
}
