//! The HTTP API over in-memory ports: status codes, problem documents,
//! validation paths, idempotency and the transitions, as the contract says.
//! (The same flows against the real databases run in the service's tests.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::net::TcpListener;
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use checkout_app::{CheckoutSettings, OrderProcessor};
use checkout_domain::{BookId, Currency, Money, PaymentMethod, PaymentStatus};
use checkout_http::{AppState, HealthCheck, HttpSettings, ServerSettings};
use checkout_ports::*;
use checkout_store_memory::MemoryStore;
use rust_decimal::Decimal;
use serde_json::{Value, json};

/// Pays every order (the payment outcomes are the service tests' business).
struct FakeProvider;

#[async_trait]
impl PaymentProvider for FakeProvider {
    fn name(&self) -> &str {
        "fake"
    }
    async fn create_intent(&self, r: &CreateIntent) -> Result<PaymentIntent, PaymentError> {
        Ok(intent(
            &format!("pi_{}", r.order_id),
            PaymentStatus::Pending,
        ))
    }
    async fn confirm(
        &self,
        id: &str,
        _: &PaymentMethod,
        _: &str,
    ) -> Result<PaymentIntent, PaymentError> {
        Ok(intent(id, PaymentStatus::Succeeded))
    }
    async fn status(&self, id: &str) -> Result<PaymentIntent, PaymentError> {
        Ok(intent(id, PaymentStatus::Succeeded))
    }
    async fn refund(&self, id: &str, _: Money, key: &str) -> Result<ProviderRefund, PaymentError> {
        Ok(ProviderRefund {
            refund_id: format!("re_{id}_{key}"),
            status: RefundStatus::Succeeded,
        })
    }
}

fn intent(id: &str, status: PaymentStatus) -> PaymentIntent {
    PaymentIntent {
        intent_id: id.to_owned(),
        status,
        transaction_id: (status == PaymentStatus::Succeeded).then(|| "ch_1".to_owned()),
        client_secret: None,
        next_action: None,
        failure_code: None,
        failure_message: None,
    }
}

struct Ready;
#[async_trait]
impl HealthCheck for Ready {
    async fn ready(&self) -> bool {
        true
    }
}

struct TestApp {
    base: String,
    client: reqwest::Client,
    store: MemoryStore,
}

impl TestApp {
    async fn spawn() -> TestApp {
        let store = MemoryStore::new();
        for (id, price, n) in [("bk-0001", "12.50", 10), ("bk-0002", "20.00", 1)] {
            store
                .upsert_stock(
                    &BookId::parse(id).unwrap(),
                    "A book",
                    Money::new(Decimal::from_str(price).unwrap(), Currency::USD).unwrap(),
                    n,
                )
                .await
                .unwrap();
        }
        let processor = OrderProcessor::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(FakeProvider),
            Arc::new(SystemClock),
            Arc::new(UuidGenerator),
            CheckoutSettings::default(),
        );
        let state = AppState {
            processor,
            idempotency: Arc::new(store.clone()),
            stock: Some(Arc::new(store.clone())),
            webhooks: None,
            health: Arc::new(Ready),
            metrics: None,
            clock: Arc::new(SystemClock),
            settings: HttpSettings {
                body_limit: 4096,
                ..HttpSettings::default()
            },
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = checkout_http::serve(
            listener,
            state,
            &ServerSettings {
                workers: 1,
                ..ServerSettings::default()
            },
        )
        .unwrap();
        tokio::spawn(server);
        TestApp {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            store,
        }
    }

    async fn post(
        &self,
        path: &str,
        body: Value,
        key: Option<&str>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self.client.post(format!("{}{path}", self.base)).json(&body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.json::<Value>().await.unwrap_or(Value::Null);
        (status, body, headers)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.json::<Value>().await.unwrap_or(Value::Null),
        )
    }
}

fn order_body(book: &str, qty: i64) -> Value {
    json!({
        "customer_id": "cust-42",
        "items": [{"book_id": book, "quantity": qty, "unit_price": "12.50"}],
        "tax_rate": "0.08",
        "shipping_cost": "4.99",
        "payment_method": {"type": "card", "token": "pm_card_visa"}
    })
}

#[tokio::test]
async fn a_paid_order_is_201_with_location_and_the_contract_fields() {
    let app = TestApp::spawn().await;
    let (status, order, headers) = app.post("/orders", order_body("bk-0001", 2), None).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(
        headers["location"],
        format!("/orders/{}", order["id"].as_str().unwrap())
    );
    assert_eq!(order["state"], "paid");
    assert_eq!(order["subtotal"], "25.00");
    assert_eq!(order["tax_amount"], "2.00");
    assert_eq!(order["total_amount"], "31.99");
    assert_eq!(order["refunded_amount"], "0.00");
    assert_eq!(order["items"][0]["line_total"], "25.00");
    assert_eq!(order["payment"]["status"], "succeeded");
    let (s, audit) = app
        .get(&format!("/orders/{}/audit", order["id"].as_str().unwrap()))
        .await;
    assert_eq!(s, 200);
    let states: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["new_state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "pending",
            "validating",
            "reserved",
            "processing_payment",
            "paid"
        ]
    );
    assert!(audit["entries"][0]["previous_state"].is_null());
}

#[tokio::test]
async fn validation_errors_name_every_field_and_create_nothing() {
    let app = TestApp::spawn().await;
    let body = json!({"customer_id": 42, "currency": "XYZ", "items": [{"book_id": "bk-0001", "quantity": 0}, {"quantity": 2.5}], "tax_rate": 2, "payment_method": {"token": "pm"}});
    let (status, problem, headers) = app.post("/orders", body, None).await;
    assert_eq!(status, 422);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(problem["code"], "validation_failed");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"customer_id") && fields.contains(&"items[1].quantity"),
        "{fields:?}"
    );
    let (status, problem, _) = app
        .post(
            "/orders",
            json!({"customer_id": "c", "items": [], "payment_method": {"token": "pm"}}),
            None,
        )
        .await;
    assert_eq!(
        (status, problem["errors"][0]["field"].as_str()),
        (422, Some("items"))
    );
    let (_, list) = app.get("/orders").await;
    assert_eq!(list["orders"].as_array().unwrap().len(), 0);
    assert_eq!(
        app.store
            .get_stock(&BookId::parse("bk-0001").unwrap())
            .await
            .unwrap()
            .available,
        10
    );
}

#[tokio::test]
async fn malformed_json_and_oversized_bodies_are_4xx_problems() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .post(format!("{}/orders", app.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "validation_failed"
    );
    let huge = "x".repeat(10_000);
    let res = app
        .client
        .post(format!("{}/orders", app.base))
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 413);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let (s, p) = app.get("/orders/not-a-uuid").await;
    assert_eq!((s, p["code"].as_str()), (404, Some("order_not_found")));
    let (s, p) = app.get("/nowhere").await;
    assert_eq!((s, p["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn inventory_failures_are_409_with_the_order_id() {
    let app = TestApp::spawn().await;
    let (status, p, _) = app.post("/orders", order_body("bk-0001", 11), None).await;
    assert_eq!(status, 409);
    assert_eq!(p["code"], "insufficient_inventory");
    assert_eq!(
        p["unavailable_items"][0],
        json!({"book_id": "bk-0001", "requested": 11, "available": 10})
    );
    let (_, order) = app
        .get(&format!("/orders/{}", p["order_id"].as_str().unwrap()))
        .await;
    assert_eq!(order["state"], "inventory_failed");
    let (status, p, _) = app.post("/orders", order_body("bk-9999", 1), None).await;
    assert_eq!((status, p["code"].as_str()), (409, Some("unknown_book")));
    let mut body = order_body("bk-0001", 1);
    body["items"][0]["unit_price"] = json!("10.00");
    let (status, p, _) = app.post("/orders", body, None).await;
    assert_eq!((status, p["code"].as_str()), (409, Some("price_mismatch")));
}

#[tokio::test]
async fn idempotency_replays_refuses_reuse_and_scopes_per_customer() {
    let app = TestApp::spawn().await;
    let (s1, o1, _) = app
        .post("/orders", order_body("bk-0001", 1), Some("key-1"))
        .await;
    let (s2, o2, h2) = app
        .post("/orders", order_body("bk-0001", 1), Some("key-1"))
        .await;
    assert_eq!((s1, s2), (201, 201));
    assert_eq!(o1["id"], o2["id"]);
    assert_eq!(h2["idempotent-replayed"], "true");
    let (s3, p3, _) = app
        .post("/orders", order_body("bk-0001", 2), Some("key-1"))
        .await;
    assert_eq!(
        (s3, p3["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    let mut other = order_body("bk-0001", 1);
    other["customer_id"] = json!("cust-7");
    let (s4, o4, h4) = app.post("/orders", other, Some("key-1")).await;
    assert_eq!(s4, 201);
    assert_ne!(o4["id"], o1["id"]);
    assert!(h4.get("idempotent-replayed").is_none());
    // Failures replay too.
    let (f1, p1, _) = app
        .post("/orders", order_body("bk-0001", 50), Some("key-2"))
        .await;
    let (f2, p2, h) = app
        .post("/orders", order_body("bk-0001", 50), Some("key-2"))
        .await;
    assert_eq!((f1, f2), (409, 409));
    assert_eq!(p1["order_id"], p2["order_id"]);
    assert_eq!(h["idempotent-replayed"], "true");
}

#[tokio::test]
async fn transitions_through_the_api() {
    let app = TestApp::spawn().await;
    let (_, order, _) = app.post("/orders", order_body("bk-0001", 2), None).await;
    let id = order["id"].as_str().unwrap();
    let (s, p, _) = app
        .post(&format!("/orders/{id}/complete"), json!({}), None)
        .await;
    assert_eq!(
        (s, p["code"].as_str(), p["from"].as_str(), p["to"].as_str()),
        (
            409,
            Some("invalid_transition"),
            Some("paid"),
            Some("completed")
        )
    );
    let (s, o, _) = app
        .post(&format!("/orders/{id}/fulfill"), json!({}), None)
        .await;
    assert_eq!((s, o["state"].as_str()), (200, Some("fulfilling")));
    let (s, o, _) = app
        .post(&format!("/orders/{id}/complete"), json!({}), None)
        .await;
    assert_eq!((s, o["state"].as_str()), (200, Some("completed")));
    let (s, r, _) = app
        .post(
            &format!("/orders/{id}/refunds"),
            json!({"amount": "5.00", "reason": "damaged"}),
            None,
        )
        .await;
    assert_eq!(
        (s, r["amount"].as_str(), r["status"].as_str()),
        (201, Some("5.00"), Some("succeeded"))
    );
    let (s, p, _) = app
        .post(
            &format!("/orders/{id}/refunds"),
            json!({"amount": "100.00"}),
            None,
        )
        .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (422, Some("refund_exceeds_payment"))
    );
    let (s, r, _) = app
        .post(&format!("/orders/{id}/refunds"), json!({}), None)
        .await;
    assert_eq!((s, r["amount"].as_str()), (201, Some("26.99")));
    let (_, o) = app.get(&format!("/orders/{id}")).await;
    assert_eq!(
        (o["state"].as_str(), o["refunded_amount"].as_str()),
        (Some("refunded"), Some("31.99"))
    );
    let (s, p, _) = app
        .post(
            &format!("/orders/{id}/cancel"),
            json!({"reason": "x"}),
            None,
        )
        .await;
    assert_eq!((s, p["code"].as_str()), (409, Some("invalid_transition")));
}

#[tokio::test]
async fn listing_pages_newest_first_with_a_cursor() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (_, o, _) = app.post("/orders", order_body("bk-0001", 1), None).await;
        ids.push(o["id"].as_str().unwrap().to_owned());
    }
    ids.reverse();
    let (s, page) = app.get("/orders?customer_id=cust-42&limit=2").await;
    assert_eq!(s, 200);
    let got: Vec<&str> = page["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, ids[..2]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page2) = app
        .get(&format!(
            "/orders?customer_id=cust-42&limit=2&cursor={cursor}"
        ))
        .await;
    let got2: Vec<&str> = page2["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(got2, ids[2..4]);
    let (s, p) = app.get("/orders?limit=500&state=bogus").await;
    assert_eq!(s, 422);
    assert_eq!(p["errors"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn local_inventory_endpoints() {
    let app = TestApp::spawn().await;
    let res = app
        .client
        .put(format!("{}/inventory/bk-0100", app.base))
        .json(&json!({"available": 7, "price": "9.99", "currency": "USD", "title": "Dune"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let (s, item) = app.get("/inventory/bk-0100").await;
    assert_eq!(s, 200);
    assert_eq!(
        item,
        json!({"book_id": "bk-0100", "title": "Dune", "price": "9.99", "currency": "USD", "available": 7, "reserved": 0})
    );
    let (s, p) = app.get("/inventory/bk-nope").await;
    assert_eq!((s, p["code"].as_str()), (404, Some("book_not_found")));
    let res = app
        .client
        .put(format!("{}/inventory/bk-0100", app.base))
        .json(&json!({"available": -1, "price": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 422);
    let (_, all) = app.get("/inventory").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn health_and_openapi() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/health/live").await.0, 200);
    assert_eq!(app.get("/health/ready").await.0, 200);
    let (s, doc) = app.get("/openapi.json").await;
    assert_eq!(s, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/orders",
        "/orders/{id}",
        "/orders/{id}/audit",
        "/orders/{id}/cancel",
        "/orders/{id}/fulfill",
        "/orders/{id}/complete",
        "/orders/{id}/refunds",
        "/inventory/{book_id}",
        "/webhooks/stripe",
        "/health/ready",
        "/metrics",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
}
