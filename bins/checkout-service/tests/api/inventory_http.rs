//! The whole service configured with the HTTP inventory, pointed at a
//! wiremock inventory service: an order placed through the API, and the
//! inventory service unreachable (503, order cancelled).

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::{Backend, TestApp};

fn reserve_answer(req: &Request) -> ResponseTemplate {
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    let items: Vec<Value> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| json!({"book_id": i["book_id"], "quantity": i["quantity"], "unit_price": "12.50", "currency": "USD"}))
        .collect();
    ResponseTemplate::new(201).set_body_json(json!({
        "reservation_id": body["reservation_id"],
        "status": "active",
        "expires_at": "2099-01-01T00:00:00Z",
        "items": items
    }))
}

#[tokio::test]
async fn an_order_through_the_http_inventory() {
    let inventory = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/reservations"))
        .respond_with(reserve_answer)
        .mount(&inventory)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/reservations/[0-9a-f-]+/confirm$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "confirmed"})))
        .expect(1)
        .mount(&inventory)
        .await;
    let uri = inventory.uri();
    let app = TestApp::spawn_with(Backend::Sqlite, move |s| {
        s.inventory.mode = "http".into();
        s.inventory.http = Some(json!({"base_url": uri, "max_retries": 1, "request_timeout": "500ms", "total_timeout": "2s"}));
    })
    .await
    .serve();
    let body = json!({
        "customer_id": "cust-42",
        "items": [{"book_id": "bk-0001", "quantity": 2, "unit_price": "12.50"}],
        "tax_rate": "0.08", "shipping_cost": "4.99",
        "payment_method": {"type": "card", "token": "pm_card_visa"}
    });
    let (status, order, _) = app.post("/orders", body, None).await;
    assert_eq!(status, 201, "{order}");
    assert_eq!(order["total_amount"], "31.99");
    assert_eq!(order["reservation"]["status"], "confirmed");
    // The local stock endpoints are off in this mode.
    let (s, p) = app.get("/inventory/bk-0001").await;
    assert_eq!(
        (s, p["code"].as_str()),
        (404, Some("local_inventory_disabled"))
    );
    let sent = inventory.received_requests().await.unwrap();
    let reserve: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(reserve["items"][0]["expected_unit_price"], "12.50");
    assert_eq!(reserve["currency"], "USD");
}

#[tokio::test]
async fn an_unreachable_inventory_cancels_the_order_with_503() {
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = TestApp::spawn_with(Backend::Sqlite, move |s| {
        s.inventory.mode = "http".into();
        s.inventory.http = Some(json!({"base_url": format!("http://127.0.0.1:{port}"), "max_retries": 1, "connect_timeout": "200ms", "total_timeout": "1s"}));
    })
    .await
    .serve();
    let body = json!({"customer_id": "cust-42", "items": [{"book_id": "bk-0001", "quantity": 1}], "payment_method": {"type": "card", "token": "pm_card_visa"}});
    let (status, p, _) = app.post("/orders", body, None).await;
    assert_eq!(
        (status, p["code"].as_str()),
        (503, Some("inventory_service_unavailable")),
        "{p}"
    );
    let order = app.order(p["order_id"].as_str().unwrap()).await;
    assert_eq!(order["state"], "cancelled");
    assert_eq!(
        app.audit_states(p["order_id"].as_str().unwrap()).await,
        ["pending", "validating", "cancelled"]
    );
}
