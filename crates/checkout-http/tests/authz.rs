//! Who may do what: every endpoint × every kind of caller, as a table, plus
//! the rules a table can't show (idempotency isolation, the audit actor,
//! listing confinement) and the edge's hardening (header and JSON limits,
//! the request timeout, CORS, the admin address).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod support;

use std::net::TcpListener;
use std::time::Duration;

use checkout_http::{AuthConfig, HttpSettings, ServerSettings};
use reqwest::Method;
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The state an order is put in before a row's request.
#[derive(Debug, Clone, Copy)]
enum Setup {
    /// No order needed.
    None,
    /// A paid order of customer A.
    Paid,
    /// A paid order of customer A, moved on to fulfilling.
    Fulfilling,
}

struct Row {
    method: Method,
    /// `{id}` is replaced by the set-up order's id.
    path: &'static str,
    body: Option<Value>,
    setup: Setup,
    /// Anonymous, customer A, customer B, staff, service, expired, bad
    /// signature, wrong audience, `alg: none`.
    expect: [u16; 9],
}

const BAD_TOKENS: [u16; 4] = [401, 401, 401, 401];

/// Expected statuses for the five real callers, then the four bad tokens.
const fn row(anon: u16, a: u16, b: u16, staff: u16, service: u16, bad: [u16; 4]) -> [u16; 9] {
    [anon, a, b, staff, service, bad[0], bad[1], bad[2], bad[3]]
}

/// Public endpoints: everyone, whatever their token, gets the same answer.
const fn public(status: u16) -> [u16; 9] {
    [status; 9]
}

fn matrix() -> Vec<Row> {
    use Setup::*;
    let r = |method: Method, path, body: Option<Value>, setup, expect| Row {
        method,
        path,
        body,
        setup,
        expect,
    };
    vec![
        // Customers order for themselves only; services don't order.
        r(
            Method::POST,
            "/orders",
            Some(order_body(CUSTOMER_A, "pm_card_visa")),
            None,
            row(401, 201, 403, 201, 403, BAD_TOKENS),
        ),
        // Everyone authenticated may list (customers see only their own).
        r(
            Method::GET,
            "/orders",
            Option::None,
            Paid,
            row(401, 200, 200, 200, 200, BAD_TOKENS),
        ),
        // Someone else's order is a 404, never a 403.
        r(
            Method::GET,
            "/orders/{id}",
            Option::None,
            Paid,
            row(401, 200, 404, 200, 200, BAD_TOKENS),
        ),
        r(
            Method::GET,
            "/orders/{id}/audit",
            Option::None,
            Paid,
            row(401, 403, 403, 200, 200, BAD_TOKENS),
        ),
        r(
            Method::POST,
            "/orders/{id}/cancel",
            Some(json!({"reason": "changed my mind"})),
            // A paid order can't be cancelled; one in fulfilling can (and
            // is refunded first).
            Fulfilling,
            row(401, 200, 404, 200, 403, BAD_TOKENS),
        ),
        r(
            Method::POST,
            "/orders/{id}/fulfill",
            Some(json!({})),
            Paid,
            row(401, 403, 403, 200, 403, BAD_TOKENS),
        ),
        r(
            Method::POST,
            "/orders/{id}/complete",
            Some(json!({})),
            Fulfilling,
            row(401, 403, 403, 200, 403, BAD_TOKENS),
        ),
        r(
            Method::POST,
            "/orders/{id}/refunds",
            Some(json!({"amount": "1.00", "reason": "damaged"})),
            Paid,
            row(401, 403, 403, 201, 403, BAD_TOKENS),
        ),
        r(
            Method::PUT,
            "/inventory/bk-0100",
            Some(json!({"available": 3, "price": "9.99", "currency": "USD", "title": "Dune"})),
            None,
            row(401, 403, 403, 200, 403, BAD_TOKENS),
        ),
        r(
            Method::GET,
            "/inventory/bk-0001",
            Option::None,
            None,
            row(401, 403, 403, 200, 200, BAD_TOKENS),
        ),
        r(
            Method::GET,
            "/inventory",
            Option::None,
            None,
            row(401, 403, 403, 200, 200, BAD_TOKENS),
        ),
        // Authenticated by its signature only: a bad one is a 400 for all.
        r(
            Method::POST,
            "/webhooks/stripe",
            Some(json!({"id": "evt_1"})),
            None,
            public(400),
        ),
        r(Method::GET, "/health/live", Option::None, None, public(200)),
        r(
            Method::GET,
            "/health/ready",
            Option::None,
            None,
            public(200),
        ),
        r(Method::GET, "/metrics", Option::None, None, public(200)),
        r(
            Method::GET,
            "/openapi.json",
            Option::None,
            None,
            public(200),
        ),
        // Unknown routes need a token too: they reveal nothing to strangers.
        r(
            Method::GET,
            "/nowhere",
            Option::None,
            None,
            row(401, 404, 404, 404, 404, BAD_TOKENS),
        ),
    ]
}

#[tokio::test]
async fn authorization_matrix_every_endpoint_times_every_caller() {
    let app = TestApp::spawn().await;
    let mut failures = Vec::new();
    for row in matrix() {
        for (who, expected) in Who::ALL.into_iter().zip(row.expect) {
            let id = match row.setup {
                Setup::None => String::new(),
                Setup::Paid => app.paid_order_of(CUSTOMER_A).await,
                Setup::Fulfilling => {
                    let id = app.paid_order_of(CUSTOMER_A).await;
                    let r = app
                        .post(&format!("/orders/{id}/fulfill"), &json!({}), Who::Staff)
                        .await;
                    assert_eq!(r.status, 200, "{}", r.body);
                    id
                }
            };
            let before = if id.is_empty() {
                String::new()
            } else {
                app.state_of(&id).await
            };
            let path = row.path.replace("{id}", &id);
            let res = app
                .call(row.method.clone(), &path, row.body.as_ref(), who, None)
                .await;
            let case = format!("{} {path} as {who:?}", row.method);
            if res.status != expected {
                failures.push(format!(
                    "{case}: expected {expected}, got {} {}",
                    res.status, res.body
                ));
                continue;
            }
            match res.status {
                401 => {
                    let challenge = res
                        .headers
                        .get("www-authenticate")
                        .map(|v| v.to_str().unwrap());
                    assert!(
                        challenge.is_some_and(|c| c.starts_with("Bearer realm=")),
                        "{case}: 401 without a Bearer challenge"
                    );
                    if who != Who::Anonymous {
                        assert!(challenge.unwrap().contains("invalid_token"), "{case}");
                    }
                    assert_eq!(
                        res.headers["content-type"], "application/problem+json",
                        "{case}"
                    );
                }
                403 => assert_eq!(res.body["code"], "forbidden", "{case}"),
                404 if !id.is_empty() => {
                    assert_eq!(res.body["code"], "order_not_found", "{case}")
                }
                _ => {}
            }
            // A refused request changes nothing.
            if !id.is_empty() && res.status >= 400 {
                assert_eq!(app.state_of(&id).await, before, "{case} changed the order");
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[tokio::test]
async fn idempotency_keys_are_isolated_between_subjects() {
    let app = TestApp::spawn().await;
    let key = Some("same-key-123");
    let place = |who, customer| {
        let body = order_body(customer, "pm_card_visa");
        let app = &app;
        async move {
            app.call(Method::POST, "/orders", Some(&body), who, key)
                .await
        }
    };
    let a1 = place(Who::CustomerA, CUSTOMER_A).await;
    let b1 = place(Who::CustomerB, CUSTOMER_B).await;
    assert_eq!(
        (a1.status, b1.status),
        (201, 201),
        "{} {}",
        a1.body,
        b1.body
    );
    assert_ne!(a1.body["id"], b1.body["id"]);
    assert!(b1.headers.get("idempotent-replayed").is_none());
    assert_eq!(b1.body["customer_id"], CUSTOMER_B);
    // Each replays its own.
    let a2 = place(Who::CustomerA, CUSTOMER_A).await;
    let b2 = place(Who::CustomerB, CUSTOMER_B).await;
    assert_eq!(
        (a2.body["id"].clone(), b2.body["id"].clone()),
        (a1.body["id"].clone(), b1.body["id"].clone())
    );
    assert_eq!(a2.headers["idempotent-replayed"], "true");
    assert_eq!(b2.headers["idempotent-replayed"], "true");
    // Staff ordering for customer A with the same key is a third request.
    let s = place(Who::Staff, CUSTOMER_A).await;
    assert_eq!(s.status, 201);
    assert_ne!(s.body["id"], a1.body["id"]);
    assert!(s.headers.get("idempotent-replayed").is_none());

    // Refunds: per subject too (and per order).
    let id = a1.body["id"].as_str().unwrap();
    let refund = json!({"amount": "1.00"});
    let path = format!("/orders/{id}/refunds");
    let r1 = app
        .call(Method::POST, &path, Some(&refund), Who::Staff, key)
        .await;
    let r2 = app
        .call(Method::POST, &path, Some(&refund), Who::Staff, key)
        .await;
    assert_eq!((r1.status, r2.status), (201, 201));
    assert_eq!(r1.body["id"], r2.body["id"]);
    assert_eq!(r2.headers["idempotent-replayed"], "true");
    let order = app.get(&format!("/orders/{id}"), Who::Staff).await;
    assert_eq!(order.body["refunded_amount"], "1.00");
}

#[tokio::test]
async fn the_audit_actor_is_the_token_subject() {
    let app = TestApp::spawn().await;
    let placed = app
        .post(
            "/orders",
            &order_body(CUSTOMER_A, "pm_card_visa"),
            Who::CustomerA,
        )
        .await;
    let id = placed.body["id"].as_str().unwrap();
    app.post(&format!("/orders/{id}/fulfill"), &json!({}), Who::Staff)
        .await;
    let trail = app.get(&format!("/orders/{id}/audit"), Who::Service).await;
    let entries = trail.body["entries"].as_array().unwrap();
    assert_eq!(entries.first().unwrap()["actor"], CUSTOMER_A);
    let last = entries.last().unwrap();
    assert_eq!(
        (last["new_state"].as_str(), last["actor"].as_str()),
        (Some("fulfilling"), Some(STAFF))
    );
}

#[tokio::test]
async fn customers_list_only_their_own_orders() {
    let app = TestApp::spawn().await;
    let a = app.paid_order_of(CUSTOMER_A).await;
    let b = app.paid_order_of(CUSTOMER_B).await;
    let ids = |v: &Value| -> Vec<String> {
        v["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let mine = app.get("/orders", Who::CustomerA).await;
    assert_eq!(ids(&mine.body), std::slice::from_ref(&a));
    let mine = app.get("/orders?customer_id=cust-a", Who::CustomerA).await;
    assert_eq!(ids(&mine.body), std::slice::from_ref(&a));
    let theirs = app.get("/orders?customer_id=cust-b", Who::CustomerA).await;
    assert_eq!(
        (theirs.status, theirs.body["code"].as_str()),
        (403, Some("forbidden"))
    );
    let mut all = ids(&app.get("/orders", Who::Service).await.body);
    all.sort();
    let mut both = vec![a, b];
    both.sort();
    assert_eq!(all, both);
}

#[tokio::test]
async fn oversized_headers_and_deep_json_are_refused() {
    let app = TestApp::spawn().await;
    let mut req = app.client.get(format!("{}/health/live", app.base));
    for i in 0..70 {
        req = req.header(format!("x-filler-{i}"), "x");
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status().as_u16(), 431);
    let res = app
        .client
        .get(format!("{}/health/live", app.base))
        .header("x-big", "x".repeat(17 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 431);

    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    let res = app
        .client
        .post(format!("{}/orders", app.base))
        .bearer_auth(token_of(Who::Staff).unwrap())
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let p: Value = res.json().await.unwrap();
    assert!(
        p["detail"].as_str().unwrap().contains("nested deeper"),
        "{p}"
    );
}

#[tokio::test]
async fn a_stalled_request_is_cut_off_by_the_request_timeout() {
    let app = TestApp::spawn_with(Options {
        settings: HttpSettings {
            request_timeout: Duration::from_millis(200),
            ..HttpSettings::default()
        },
        ..Options::default()
    })
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let token = token_of(Who::Staff).unwrap();
    // Promise 100 bytes of body, send 2, then stall.
    let head = format!(
        "POST /orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\""
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    // Bounded: the server answers after its 200 ms timeout, long before this.
    let n = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut answer))
        .await
        .expect("the server never answered the stalled request")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
}

#[tokio::test]
async fn cors_is_off_unless_origins_are_configured() {
    let preflight = |app: &TestApp, origin: &'static str| {
        app.client
            .request(Method::OPTIONS, format!("{}/orders", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let off = TestApp::spawn().await;
    let res = preflight(&off, "https://shop.bookverse.example")
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let res = off
        .client
        .get(format!("{}/health/live", off.base))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");

    let on = TestApp::spawn_with(Options {
        settings: HttpSettings {
            cors_allowed_origins: vec!["https://shop.bookverse.example".into()],
            ..HttpSettings::default()
        },
        ..Options::default()
    })
    .await;
    let res = preflight(&on, "https://shop.bookverse.example")
        .await
        .unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://shop.bookverse.example"
    );
    let res = preflight(&on, "https://evil.example").await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn metrics_can_move_to_an_admin_address() {
    let store = seeded_store().await;
    let state = state_for(
        &store,
        Options {
            settings: HttpSettings {
                metrics_on_api: false,
                ..HttpSettings::default()
            },
            ..Options::default()
        },
    );
    let admin_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = format!("http://{}", admin_listener.local_addr().unwrap());
    let server =
        checkout_http::serve_admin(admin_listener, state.clone(), &ServerSettings::default())
            .unwrap();
    tokio::spawn(server);
    let api = serve_on_loopback(state);
    let client = reqwest::Client::new();
    let status = |url: String| {
        let client = client.clone();
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status(format!("{api}/metrics")).await, 404);
    assert_eq!(status(format!("{admin}/metrics")).await, 200);
    assert_eq!(status(format!("{admin}/health/ready")).await, 200);
    // The admin address serves nothing else.
    assert_eq!(status(format!("{admin}/orders")).await, 404);
}

#[tokio::test]
async fn disabled_authentication_is_refused_off_loopback() {
    let store = seeded_store().await;
    let state = state_for(
        &store,
        Options {
            auth: AuthConfig::default(),
            ..Options::default()
        },
    );
    assert!(!state.settings.auth.is_enabled());
    // Bound but never served: the check runs before anything is accepted.
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let err = checkout_http::serve(listener, state, &ServerSettings::default())
        .err()
        .expect("serving unauthenticated on 0.0.0.0 must be refused");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("auth.mode"), "{err}");
}

#[tokio::test]
async fn the_edge_checks_are_there_for_a_binary_serving_app_itself() {
    let store = seeded_store().await;
    let open = state_for(
        &store,
        Options {
            auth: AuthConfig::default(),
            ..Options::default()
        },
    );
    let public: std::net::SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let loopback: std::net::SocketAddr = "127.0.0.1:8080".parse().unwrap();
    assert!(matches!(
        open.settings.check_for(public),
        Err(checkout_http::EdgeConfigError::Auth(_))
    ));
    assert!(open.settings.check_for(loopback).is_ok());
    let jwt = state_for(&store, Options::default());
    assert!(jwt.settings.check_for(public).is_ok());
    let wildcard = HttpSettings {
        cors_allowed_origins: vec!["*".into()],
        ..jwt.settings.clone()
    };
    assert!(matches!(
        wildcard.check_for(public),
        Err(checkout_http::EdgeConfigError::CorsOrigin(_))
    ));
}
