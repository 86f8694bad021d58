//! Stripe-style webhooks through the API over in-memory ports: a bad
//! signature changes nothing; a delivery settles the order from the
//! payment's *current* status; a duplicate or out-of-order delivery changes
//! nothing twice; a webhook racing the reconciler yields one `paid` and one
//! `order.completed`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::net::TcpListener;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use checkout_app::{CheckoutSettings, OrderProcessor};
use checkout_domain::{BookId, Currency, Money, OrderId, OrderState, PaymentMethod, PaymentStatus};
use checkout_http::{AppState, HealthCheck, HttpSettings, ServerSettings};
use checkout_ports::*;
use checkout_store_memory::MemoryStore;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use time::OffsetDateTime;

/// A provider whose payments wait for 3-D Secure, then read whatever status
/// the test sets.
#[derive(Default)]
struct Provider {
    status: Mutex<Option<PaymentStatus>>,
}

fn intent(id: &str, status: PaymentStatus) -> PaymentIntent {
    PaymentIntent {
        intent_id: id.into(),
        status,
        transaction_id: (status == PaymentStatus::Succeeded).then(|| "ch_1".to_owned()),
        client_secret: Some("pi_secret".into()),
        next_action: (status == PaymentStatus::RequiresAction)
            .then(|| json!({"type": "redirect_to_url"})),
        failure_code: None,
        failure_message: None,
    }
}

#[async_trait]
impl PaymentProvider for Provider {
    fn name(&self) -> &str {
        "stripe"
    }
    async fn create_intent(&self, r: &CreateIntent) -> Result<PaymentIntent, PaymentError> {
        Ok(intent(
            &format!("pi_{}", r.order_id.as_uuid().simple()),
            PaymentStatus::Pending,
        ))
    }
    async fn confirm(
        &self,
        id: &str,
        _: &PaymentMethod,
        _: &str,
    ) -> Result<PaymentIntent, PaymentError> {
        Ok(intent(id, PaymentStatus::RequiresAction))
    }
    async fn status(&self, id: &str) -> Result<PaymentIntent, PaymentError> {
        let status = self
            .status
            .lock()
            .unwrap()
            .unwrap_or(PaymentStatus::RequiresAction);
        Ok(intent(id, status))
    }
    async fn refund(&self, _: &str, _: Money, _: &str) -> Result<ProviderRefund, PaymentError> {
        Err(PaymentError::NotFound)
    }
}

/// Accepts the signature `good`; the payload is `{"id", "type", "intent"}`.
struct Verifier;

impl WebhookVerifier for Verifier {
    fn provider(&self) -> &str {
        "stripe"
    }
    fn verify(
        &self,
        payload: &[u8],
        signature: &str,
        _: OffsetDateTime,
    ) -> Result<ProviderEvent, WebhookError> {
        if signature.is_empty() {
            return Err(WebhookError::MissingSignature);
        }
        if signature != "good" {
            return Err(WebhookError::InvalidSignature);
        }
        let v: Value =
            serde_json::from_slice(payload).map_err(|e| WebhookError::Malformed(e.to_string()))?;
        Ok(ProviderEvent {
            event_id: v["id"].as_str().unwrap_or_default().to_owned(),
            event_type: v["type"].as_str().unwrap_or_default().to_owned(),
            intent_id: v["intent"].as_str().map(str::to_owned),
        })
    }
}

struct Ready;
#[async_trait]
impl HealthCheck for Ready {
    async fn ready(&self) -> bool {
        true
    }
}

struct App {
    base: String,
    client: reqwest::Client,
    store: MemoryStore,
    provider: Arc<Provider>,
    processor: OrderProcessor,
}

async fn spawn() -> App {
    let store = MemoryStore::new();
    store
        .upsert_stock(
            &BookId::parse("bk-1").unwrap(),
            "t",
            Money::new(Decimal::from_str("12.50").unwrap(), Currency::USD).unwrap(),
            5,
        )
        .await
        .unwrap();
    let provider = Arc::new(Provider::default());
    let processor = OrderProcessor::new(
        Arc::new(store.clone()),
        Arc::new(store.clone()),
        provider.clone(),
        Arc::new(SystemClock),
        Arc::new(UuidGenerator),
        CheckoutSettings::default(),
    );
    let state = AppState {
        processor: processor.clone(),
        idempotency: Arc::new(store.clone()),
        stock: Some(Arc::new(store.clone())),
        webhooks: Some(Arc::new(Verifier)),
        health: Arc::new(Ready),
        metrics: None,
        clock: Arc::new(SystemClock),
        settings: HttpSettings::default(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(
        checkout_http::serve(
            listener,
            state,
            &ServerSettings {
                workers: 1,
                ..ServerSettings::default()
            },
        )
        .unwrap(),
    );
    App {
        base: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
        store,
        provider,
        processor,
    }
}

impl App {
    async fn place(&self) -> (String, String) {
        let body = json!({"customer_id": "cust-1", "items": [{"book_id": "bk-1", "quantity": 1}], "payment_method": {"type": "card", "token": "pm_card_threeDSecure2Required"}});
        let res = self
            .client
            .post(format!("{}/orders", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 202);
        let order: Value = res.json().await.unwrap();
        assert!(order["next_action"].is_object());
        (
            order["id"].as_str().unwrap().to_owned(),
            order["payment"]["intent_id"].as_str().unwrap().to_owned(),
        )
    }

    async fn deliver(
        &self,
        event_id: &str,
        event_type: &str,
        intent: &str,
        signature: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}/webhooks/stripe", self.base))
            .body(json!({"id": event_id, "type": event_type, "intent": intent}).to_string());
        if let Some(sig) = signature {
            req = req.header("Stripe-Signature", sig);
        }
        let res = req.send().await.unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    async fn state(&self, id: &str) -> OrderState {
        self.store
            .get(OrderId::parse(id).unwrap())
            .await
            .unwrap()
            .state()
    }

    fn completed_events(&self, id: &str) -> usize {
        self.store
            .outbox_events()
            .iter()
            .filter(|e| e.order_id.to_string() == id && e.event_type == "order.completed")
            .count()
    }

    fn set_status(&self, status: PaymentStatus) {
        *self.provider.status.lock().unwrap() = Some(status);
    }
}

#[tokio::test]
async fn a_bad_or_missing_signature_is_400_and_changes_nothing() {
    let app = spawn().await;
    let (id, intent) = app.place().await;
    app.set_status(PaymentStatus::Succeeded);
    let (s, p) = app
        .deliver("evt_1", "payment_intent.succeeded", &intent, Some("forged"))
        .await;
    assert_eq!((s, p["code"].as_str()), (400, Some("invalid_signature")));
    let (s, _) = app
        .deliver("evt_1", "payment_intent.succeeded", &intent, None)
        .await;
    assert_eq!(s, 400);
    assert_eq!(app.state(&id).await, OrderState::ProcessingPayment);
    // Not recorded either: the genuine delivery is still processed.
    let (s, body) = app
        .deliver("evt_1", "payment_intent.succeeded", &intent, Some("good"))
        .await;
    assert_eq!((s, body["outcome"].as_str()), (200, Some("processed")));
    assert_eq!(app.state(&id).await, OrderState::Paid);
}

#[tokio::test]
async fn duplicates_and_out_of_order_deliveries_change_nothing_twice() {
    let app = spawn().await;
    let (id, intent) = app.place().await;
    app.set_status(PaymentStatus::Succeeded);
    let (s, body) = app
        .deliver("evt_ok", "payment_intent.succeeded", &intent, Some("good"))
        .await;
    assert_eq!((s, body["outcome"].as_str()), (200, Some("processed")));
    assert_eq!(app.state(&id).await, OrderState::Paid);
    let (s, body) = app
        .deliver("evt_ok", "payment_intent.succeeded", &intent, Some("good"))
        .await;
    assert_eq!((s, body["outcome"].as_str()), (200, Some("duplicate")));
    // A failure event arriving after the success: the order follows the
    // payment's current status (succeeded), never the event.
    let (s, _) = app
        .deliver(
            "evt_late",
            "payment_intent.payment_failed",
            &intent,
            Some("good"),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(app.state(&id).await, OrderState::Paid);
    assert_eq!(app.completed_events(&id), 1);
    let stock = app
        .store
        .get_stock(&BookId::parse("bk-1").unwrap())
        .await
        .unwrap();
    assert_eq!((stock.available, stock.reserved), (4, 0), "confirmed once");
}

#[tokio::test]
async fn a_failed_payment_releases_the_stock() {
    let app = spawn().await;
    let (id, intent) = app.place().await;
    app.set_status(PaymentStatus::Failed);
    let (s, _) = app
        .deliver(
            "evt_f",
            "payment_intent.payment_failed",
            &intent,
            Some("good"),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(app.state(&id).await, OrderState::PaymentFailed);
    let stock = app
        .store
        .get_stock(&BookId::parse("bk-1").unwrap())
        .await
        .unwrap();
    assert_eq!((stock.available, stock.reserved), (5, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_racing_settlement_pays_once() {
    let app = spawn().await;
    let (id, intent) = app.place().await;
    app.set_status(PaymentStatus::Succeeded);
    let oid = OrderId::parse(&id).unwrap();
    let (a, b, c, d) = tokio::join!(
        app.deliver("evt_a", "payment_intent.succeeded", &intent, Some("good")),
        app.deliver("evt_b", "charge.succeeded", &intent, Some("good")),
        app.processor.settle_payment(oid),
        app.processor.settle_payment(oid),
    );
    assert_eq!((a.0, b.0), (200, 200));
    assert_eq!(c.unwrap().state(), OrderState::Paid);
    assert_eq!(d.unwrap().state(), OrderState::Paid);
    assert_eq!(app.completed_events(&id), 1, "one order.completed");
    let trail = app.store.audit_trail(oid).await.unwrap();
    assert_eq!(
        trail
            .iter()
            .filter(|e| e.new_state == OrderState::Paid)
            .count(),
        1,
        "one transition to paid"
    );
}
