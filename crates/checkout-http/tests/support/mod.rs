//! Shared by the authentication tests: the API over in-memory ports with
//! bearer JWT on, callers with their tokens, and typed request helpers.

#![allow(dead_code)] // each test crate uses its own part of this module

use std::net::TcpListener;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use checkout_app::{CheckoutSettings, OrderProcessor};
use checkout_domain::{BookId, Currency, Money, PaymentMethod, PaymentStatus};
use checkout_http::{
    AppState, AuthConfig, AuthMode, Authenticator, HealthCheck, HttpSettings, Role, ServerSettings,
    mint_hs256,
};
use checkout_ports::*;
use checkout_store_memory::MemoryStore;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use metrics_exporter_prometheus::PrometheusBuilder;
use reqwest::Method;
use reqwest::header::HeaderMap;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use time::OffsetDateTime;

/// The HS256 secret of the test deployment. Tests grep logs for it.
pub const SECRET: &str = "test-secret-5f0c1d2e3a4b5c6d7e8f9a0b1c2d3e4f";
pub const CUSTOMER_A: &str = "cust-a";
pub const CUSTOMER_B: &str = "cust-b";
pub const STAFF: &str = "staff-1";
pub const SERVICE: &str = "svc-shipping";

/// Pays everything.
pub struct FakeProvider;

#[async_trait]
impl PaymentProvider for FakeProvider {
    fn name(&self) -> &str {
        "fake"
    }
    async fn create_intent(&self, r: &CreateIntent) -> Result<PaymentIntent, PaymentError> {
        Ok(intent(&format!("pi_{}", r.order_id)))
    }
    async fn confirm(
        &self,
        id: &str,
        _: &PaymentMethod,
        _: &str,
    ) -> Result<PaymentIntent, PaymentError> {
        Ok(intent(id))
    }
    async fn status(&self, id: &str) -> Result<PaymentIntent, PaymentError> {
        Ok(intent(id))
    }
    async fn refund(&self, id: &str, _: Money, key: &str) -> Result<ProviderRefund, PaymentError> {
        Ok(ProviderRefund {
            refund_id: format!("re_{id}_{key}"),
            status: RefundStatus::Succeeded,
        })
    }
}

fn intent(id: &str) -> PaymentIntent {
    PaymentIntent {
        intent_id: id.to_owned(),
        status: PaymentStatus::Succeeded,
        transaction_id: Some("ch_1".into()),
        client_secret: None,
        next_action: None,
        failure_code: None,
        failure_message: None,
    }
}

/// Refuses every delivery, as a wrong signature would be refused: enough
/// to show the webhook is reached without a token.
pub struct RejectingWebhooks;

impl WebhookVerifier for RejectingWebhooks {
    fn provider(&self) -> &str {
        "fake"
    }
    fn verify(
        &self,
        _: &[u8],
        signature: &str,
        _: OffsetDateTime,
    ) -> Result<ProviderEvent, WebhookError> {
        Err(if signature.is_empty() {
            WebhookError::MissingSignature
        } else {
            WebhookError::InvalidSignature
        })
    }
}

pub struct Ready;
#[async_trait]
impl HealthCheck for Ready {
    async fn ready(&self) -> bool {
        true
    }
}

/// Who makes a request: the matrix's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Anonymous,
    CustomerA,
    CustomerB,
    Staff,
    Service,
    Expired,
    BadSignature,
    WrongAudience,
    AlgNone,
}

impl Who {
    pub const ALL: [Who; 9] = [
        Who::Anonymous,
        Who::CustomerA,
        Who::CustomerB,
        Who::Staff,
        Who::Service,
        Who::Expired,
        Who::BadSignature,
        Who::WrongAudience,
        Who::AlgNone,
    ];
}

pub fn auth_config() -> AuthConfig {
    AuthConfig {
        mode: AuthMode::Jwt,
        hs256_secret: SECRET.into(),
        ..AuthConfig::default()
    }
}

fn claims(sub: &str, role: &str, aud: &str, exp_offset: i64) -> Value {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    json!({"sub": sub, "role": role, "iss": "bookverse", "aud": aud, "iat": now, "exp": now + exp_offset})
}

fn sign(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// The bearer token of each caller (none for the anonymous one). The bad
/// ones are bad in exactly one way each. Minted once per test process, so
/// that a test can look for exactly the tokens it sent.
pub fn token_of(who: Who) -> Option<String> {
    static TOKENS: OnceLock<Vec<Option<String>>> = OnceLock::new();
    let tokens = TOKENS.get_or_init(|| Who::ALL.into_iter().map(mint_token_of).collect());
    let i = Who::ALL.iter().position(|w| *w == who).unwrap();
    tokens[i].clone()
}

fn mint_token_of(who: Who) -> Option<String> {
    let config = auth_config();
    let mint = |sub: &str, role| {
        mint_hs256(
            &config,
            sub,
            role,
            Duration::from_secs(600),
            OffsetDateTime::now_utc(),
        )
        .unwrap()
    };
    Some(match who {
        Who::Anonymous => return None,
        Who::CustomerA => mint(CUSTOMER_A, Role::Customer),
        Who::CustomerB => mint(CUSTOMER_B, Role::Customer),
        Who::Staff => mint(STAFF, Role::Staff),
        Who::Service => mint(SERVICE, Role::Service),
        // An hour past expiry: far outside any leeway.
        Who::Expired => sign(
            &claims(STAFF, "staff", "bookverse-checkout", -3600),
            SECRET.as_bytes(),
        ),
        Who::BadSignature => sign(
            &claims(STAFF, "staff", "bookverse-checkout", 600),
            b"not-the-secret-but-just-as-long-as-it",
        ),
        Who::WrongAudience => sign(
            &claims(STAFF, "staff", "bookverse-admin", 600),
            SECRET.as_bytes(),
        ),
        Who::AlgNone => {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let head = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
            let body = b64.encode(
                serde_json::to_vec(&claims(STAFF, "staff", "bookverse-checkout", 600)).unwrap(),
            );
            format!("{head}.{body}.")
        }
    })
}

pub struct Response {
    pub status: u16,
    pub body: Value,
    pub headers: HeaderMap,
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: MemoryStore,
}

/// What a test may change about the app.
pub struct Options {
    pub auth: AuthConfig,
    pub settings: HttpSettings,
    pub repo: Option<Arc<dyn OrderRepository>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            auth: auth_config(),
            settings: HttpSettings {
                body_limit: 8 * 1024,
                ..HttpSettings::default()
            },
            repo: None,
        }
    }
}

pub async fn seeded_store() -> MemoryStore {
    let store = MemoryStore::new();
    for (id, price) in [("bk-0001", "12.50"), ("bk-0002", "20.00")] {
        store
            .upsert_stock(
                &BookId::parse(id).unwrap(),
                "A book",
                Money::new(Decimal::from_str(price).unwrap(), Currency::USD).unwrap(),
                1000,
            )
            .await
            .unwrap();
    }
    store
}

pub fn state_for(store: &MemoryStore, options: Options) -> AppState {
    let repo: Arc<dyn OrderRepository> = options.repo.unwrap_or_else(|| Arc::new(store.clone()));
    let processor = OrderProcessor::new(
        repo,
        Arc::new(store.clone()),
        Arc::new(FakeProvider),
        Arc::new(SystemClock),
        Arc::new(UuidGenerator),
        CheckoutSettings::default(),
    );
    AppState {
        processor,
        idempotency: Arc::new(store.clone()),
        stock: Some(Arc::new(store.clone())),
        webhooks: Some(Arc::new(RejectingWebhooks)),
        health: Arc::new(Ready),
        metrics: Some(PrometheusBuilder::new().build_recorder().handle()),
        clock: Arc::new(SystemClock),
        settings: HttpSettings {
            auth: Arc::new(Authenticator::new(&options.auth).unwrap()),
            ..options.settings
        },
    }
}

pub fn serve_on_loopback(state: AppState) -> String {
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
    format!("http://127.0.0.1:{port}")
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> TestApp {
        let store = seeded_store().await;
        let base = serve_on_loopback(state_for(&store, options));
        TestApp {
            base,
            client: reqwest::Client::new(),
            store,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        who: Who,
        idempotency_key: Option<&str>,
    ) -> Response {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token_of(who) {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Response {
            status,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str, who: Who) -> Response {
        self.call(Method::GET, path, None, who, None).await
    }

    pub async fn post(&self, path: &str, body: &Value, who: Who) -> Response {
        self.call(Method::POST, path, Some(body), who, None).await
    }

    /// A paid order of `customer`, placed by staff; its id.
    pub async fn paid_order_of(&self, customer: &str) -> String {
        let r = self
            .post("/orders", &order_body(customer, "pm_card_visa"), Who::Staff)
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// The order's state, as staff sees it.
    pub async fn state_of(&self, id: &str) -> String {
        let r = self.get(&format!("/orders/{id}"), Who::Staff).await;
        r.body["state"].as_str().unwrap_or("?").to_owned()
    }
}

pub fn order_body(customer: &str, card_token: &str) -> Value {
    json!({
        "customer_id": customer,
        "items": [{"book_id": "bk-0001", "quantity": 1, "unit_price": "12.50"}],
        "payment_method": {"type": "card", "token": card_token}
    })
}
