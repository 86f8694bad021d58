//! `POST /orders` through the real handler and pipeline, over in-memory
//! ports and an always-paying provider: the service's own cost per order,
//! without the database.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark set-up

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::test;
use async_trait::async_trait;
use checkout_app::{CheckoutSettings, OrderProcessor};
use checkout_domain::{BookId, Currency, Money, PaymentMethod, PaymentStatus};
use checkout_http::{AppState, HealthCheck, HttpSettings};
use checkout_ports::*;
use checkout_store_memory::MemoryStore;
use criterion::{Criterion, criterion_group, criterion_main};
use rust_decimal::Decimal;

struct Pays;

#[async_trait]
impl PaymentProvider for Pays {
    fn name(&self) -> &str {
        "bench"
    }
    async fn create_intent(&self, r: &CreateIntent) -> Result<PaymentIntent, PaymentError> {
        Ok(intent(format!("pi_{}", r.order_id), PaymentStatus::Pending))
    }
    async fn confirm(
        &self,
        id: &str,
        _: &PaymentMethod,
        _: &str,
    ) -> Result<PaymentIntent, PaymentError> {
        Ok(intent(id.to_owned(), PaymentStatus::Succeeded))
    }
    async fn status(&self, id: &str) -> Result<PaymentIntent, PaymentError> {
        Ok(intent(id.to_owned(), PaymentStatus::Succeeded))
    }
    async fn refund(&self, _: &str, _: Money, _: &str) -> Result<ProviderRefund, PaymentError> {
        Err(PaymentError::NotFound)
    }
}

fn intent(intent_id: String, status: PaymentStatus) -> PaymentIntent {
    PaymentIntent {
        intent_id,
        status,
        transaction_id: None,
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

fn bench(c: &mut Criterion) {
    let system = actix_web::rt::System::new();
    let store = MemoryStore::new();
    system.block_on(async {
        for i in 0..100 {
            store
                .upsert_stock(
                    &BookId::parse(format!("bk-{i:04}")).unwrap(),
                    "t",
                    Money::new(Decimal::from_str("12.50").unwrap(), Currency::USD).unwrap(),
                    u32::MAX / 2,
                )
                .await
                .unwrap();
        }
    });
    let state = AppState {
        processor: OrderProcessor::new(
            Arc::new(store.clone()),
            Arc::new(store.clone()),
            Arc::new(Pays),
            Arc::new(SystemClock),
            Arc::new(UuidGenerator),
            CheckoutSettings::default(),
        ),
        idempotency: Arc::new(store.clone()),
        stock: Some(Arc::new(store.clone())),
        webhooks: None,
        health: Arc::new(Ready),
        metrics: None,
        clock: Arc::new(SystemClock),
        settings: HttpSettings::default(),
    };
    let app = system.block_on(test::init_service(checkout_http::server::app(
        actix_web::web::Data::new(state),
    )));
    let body = serde_json::json!({
        "customer_id": "cust-42",
        "items": [{"book_id": "bk-0001", "quantity": 2, "unit_price": "12.50"}, {"book_id": "bk-0002", "quantity": 1}],
        "tax_rate": "0.08", "shipping_cost": "4.99",
        "payment_method": {"type": "card", "token": "pm_card_visa"}
    });
    c.bench_function("post_orders_in_memory", |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let req = test::TestRequest::post()
                        .uri("/orders")
                        .set_json(&body)
                        .to_request();
                    let res = test::call_service(&app, req).await;
                    assert_eq!(res.status().as_u16(), 201);
                }
                start.elapsed()
            })
        })
    });
    let _ = Duration::ZERO;
}

criterion_group! {
    name = http;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(http);
