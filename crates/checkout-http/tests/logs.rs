//! No secret ever reaches the log: every log line of a run of typical and
//! hostile requests is captured (at TRACE, `log` records included) and
//! grepped for the signing secret, the tokens, card tokens and signature
//! headers. And a 500's cause is in the log, never in the body.
//!
//! One test per file: the capturing subscriber is process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use checkout_ports::{MockOrderRepository, RepositoryError};
use reqwest::Method;
use serde_json::json;
use support::*;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

const CARD_TOKEN: &str = "pm_card_SUPERSECRET_4242";
const GARBAGE_TOKEN: &str = "garbage-token-SECRET-0xfeed";
const STRIPE_SIGNATURE: &str = "t=1700000000,v1=deadbeefSIGNATUREdeadbeef";
const INTERNAL_CAUSE: &str = "corrupt row in orders: checksum 0xBAD";

#[tokio::test]
async fn secrets_never_reach_the_log_and_500s_are_opaque() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish()
        .try_init()
        .unwrap();

    let app = TestApp::spawn().await;
    // What a binary might log at start-up.
    tracing::info!(config = ?auth_config(), settings = ?checkout_http::HttpSettings::default(), "starting");

    // Typical traffic.
    let placed = app
        .call(
            Method::POST,
            "/orders",
            Some(&order_body(CUSTOMER_A, CARD_TOKEN)),
            Who::CustomerA,
            Some("key-1"),
        )
        .await;
    assert_eq!(placed.status, 201, "{}", placed.body);
    let id = placed.body["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/orders/{id}"), Who::CustomerA)
            .await
            .status,
        200
    );
    let refund = app
        .post(
            &format!("/orders/{id}/refunds"),
            &json!({"amount": "1.00"}),
            Who::Staff,
        )
        .await;
    assert_eq!(refund.status, 201);

    // Hostile traffic.
    for who in [
        Who::Expired,
        Who::BadSignature,
        Who::WrongAudience,
        Who::AlgNone,
    ] {
        assert_eq!(app.get("/orders", who).await.status, 401);
    }
    let res = app
        .client
        .get(format!("{}/orders", app.base))
        .header("authorization", format!("Bearer {GARBAGE_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    let res = app
        .client
        .post(format!("{}/webhooks/stripe", app.base))
        .header("stripe-signature", STRIPE_SIGNATURE)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);

    // A 500: the repository fails in a way only the log should hear of.
    let mut repo = MockOrderRepository::new();
    repo.expect_get()
        .returning(|_| Err(RepositoryError::Unexpected(INTERNAL_CAUSE.into())));
    let broken = TestApp::spawn_with(Options {
        repo: Some(Arc::new(repo)),
        ..Options::default()
    })
    .await;
    let res = broken
        .get("/orders/0193a2b4-0000-7000-8000-000000000000", Who::Staff)
        .await;
    assert_eq!(res.status, 500);
    assert_eq!(res.body["code"], "internal_error");
    assert!(!res.body.to_string().contains("corrupt"), "{}", res.body);

    let log = captured.text();
    if std::env::var_os("TEST_LOG").is_some() {
        #[allow(clippy::print_stderr)] // asked for: TEST_LOG shows what was captured
        {
            eprintln!("{log}");
        }
    }
    // The capture works, and carries what operators need.
    assert!(
        log.contains("request not authenticated"),
        "nothing captured?\n{log}"
    );
    assert!(
        log.contains(INTERNAL_CAUSE),
        "the 500's cause must be logged"
    );
    assert!(log.contains("subject=\"cust-a\"") || log.contains("subject=cust-a"));

    let mut secrets = vec![
        SECRET.to_owned(),
        CARD_TOKEN.to_owned(),
        GARBAGE_TOKEN.to_owned(),
        STRIPE_SIGNATURE.to_owned(),
        "deadbeefSIGNATURE".to_owned(),
    ];
    for who in Who::ALL {
        if let Some(token) = token_of(who) {
            // The whole token and its signature alone.
            let signature = token.rsplit('.').next().unwrap().to_owned();
            secrets.push(token);
            if !signature.is_empty() {
                secrets.push(signature);
            }
        }
    }
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a secret reached the log: {secret}"
        );
    }
    assert!(
        !log.to_ascii_lowercase().contains("bearer ey"),
        "a bearer token reached the log"
    );
}
