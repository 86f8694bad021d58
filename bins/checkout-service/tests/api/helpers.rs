//! `TestApp`: the application on port 0 with typed helpers.

use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use checkout_ports::Clock;
use checkout_service::config::Settings;
use checkout_service::startup::{Application, Overrides, Workers};
use serde_json::{Value, json};
use time::OffsetDateTime;

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A clock the test moves by hand.
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap();
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub workers: Workers,
    /// The service's own store, for set-ups the API can't make.
    pub store: checkout_store_seaorm::SeaOrmStore,
    pub app: Option<Application>,
    _dir: tempfile::TempDir,
    pg_database: Option<(String, String)>,
}

/// The PostgreSQL server to test against, if any (printed once when not).
pub fn postgres_url() -> Option<String> {
    static ONCE: Once = Once::new();
    let url = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        ONCE.call_once(|| {
            eprintln!("skipping PostgreSQL runs of the API tests: TEST_DATABASE_URL is not set")
        });
    }
    url
}

fn psql(server: &str, sql: &str) {
    let status = std::process::Command::new("psql")
        .arg(format!("{server}/postgres"))
        .arg("-qc")
        .arg(sql)
        .status()
        .unwrap();
    assert!(status.success(), "psql failed: {sql}");
}

/// The backends this run covers.
pub fn backends() -> Vec<Backend> {
    let mut v = vec![Backend::Sqlite];
    if postgres_url().is_some() {
        v.push(Backend::Postgres);
    }
    v
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Starts the service with its workers stopped (tests run them by hand)
    /// and a manual clock.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        if std::env::var("TEST_LOG").is_ok() {
            checkout_service::telemetry::init("pretty", "info");
        }
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::default();
        settings.server.addr = "127.0.0.1:0".into();
        settings.server.workers = 2;
        settings.workers.enabled = false;
        let mut pg_database = None;
        settings.database.url = match backend {
            Backend::Sqlite => format!("sqlite://{}/checkout.db", dir.path().display())
                .as_str()
                .into(),
            Backend::Postgres => {
                let url = postgres_url().unwrap();
                let server = url.rsplit_once('/').map(|(s, _)| s.to_owned()).unwrap();
                let name = format!("t_{}", uuid::Uuid::new_v4().simple());
                psql(&server, &format!("CREATE DATABASE {name}"));
                pg_database = Some((server.clone(), name.clone()));
                format!("{server}/{name}").as_str().into()
            }
        };
        settings.database.max_connections = Some(5);
        tweak(&mut settings);
        let clock = Arc::new(ManualClock(Mutex::new(OffsetDateTime::now_utc())));
        let app = Application::build(
            settings,
            Overrides {
                clock: Some(clock.clone()),
                ..Overrides::default()
            },
        )
        .await
        .unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let workers = app.workers().clone();
        let store = app.store().clone();
        TestApp {
            base,
            client: reqwest::Client::new(),
            clock,
            workers,
            store,
            app: Some(app),
            _dir: dir,
            pg_database,
        }
    }

    /// Serves in the background (most tests).
    pub fn serve(mut self) -> TestApp {
        if let Some(app) = self.app.take() {
            tokio::spawn(app.run_until(std::future::pending()));
        }
        self
    }

    pub async fn post(
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
        (status, res.json().await.unwrap_or(Value::Null), headers)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    /// Creates a book with an exact price (and plenty of stock).
    pub async fn book(&self, id: &str, price: &str, available: u32) {
        let res = self
            .client
            .put(format!("{}/inventory/{id}", self.base))
            .json(&json!({"available": available, "price": price, "currency": "USD", "title": format!("Test {id}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
    }

    /// Places an order of `qty` × `book`, no tax or shipping, paid with `token`.
    pub async fn place(&self, book: &str, qty: u32, token: &str) -> (u16, Value) {
        let body = json!({
            "customer_id": "cust-42",
            "items": [{"book_id": book, "quantity": qty}],
            "payment_method": {"type": "card", "token": token}
        });
        let (s, b, _) = self.post("/orders", body, None).await;
        (s, b)
    }

    pub async fn order(&self, id: &str) -> Value {
        let (s, o) = self.get(&format!("/orders/{id}")).await;
        assert_eq!(s, 200, "{o}");
        o
    }

    pub async fn stock(&self, book: &str) -> (u64, u64) {
        let (_, s) = self.get(&format!("/inventory/{book}")).await;
        (
            s["available"].as_u64().unwrap(),
            s["reserved"].as_u64().unwrap(),
        )
    }

    pub async fn audit_states(&self, id: &str) -> Vec<String> {
        let (_, a) = self.get(&format!("/orders/{id}/audit")).await;
        a["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["new_state"].as_str().unwrap().to_owned())
            .collect()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some((server, name)) = self.pg_database.take() {
            // Best effort: the server may still hold connections for a moment.
            let _ = std::process::Command::new("psql")
                .arg(format!("{server}/postgres"))
                .arg("-qc")
                .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .status();
        }
    }
}

/// The standard order body of the contract's example.
pub fn contract_order() -> Value {
    json!({
        "customer_id": "cust-42",
        "currency": "USD",
        "items": [{"book_id": "bk-0001", "quantity": 2, "unit_price": "12.50"}],
        "tax_rate": "0.08",
        "shipping_cost": "4.99",
        "shipping_address": {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"},
        "billing_address": null,
        "payment_method": {"type": "card", "token": "pm_card_visa"}
    })
}
