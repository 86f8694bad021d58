//! Every row of the contract's `POST /orders` outcome table, the mock
//! provider's amount rules, idempotency, transitions and the audit trail.

use serde_json::json;

use crate::helpers::{TestApp, backends, contract_order};

#[tokio::test]
async fn the_contract_example_is_paid_with_its_audit_trail() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await.serve();
        let (status, order, headers) = app.post("/orders", contract_order(), None).await;
        assert_eq!(status, 201, "{backend:?}: {order}");
        let id = order["id"].as_str().unwrap();
        assert_eq!(headers["location"], format!("/orders/{id}"));
        assert_eq!(
            (order["state"].as_str(), order["total_amount"].as_str()),
            (Some("paid"), Some("31.99"))
        );
        assert_eq!(order["payment"]["provider"], "mock");
        assert_eq!(order["reservation"]["status"], "confirmed");
        assert_eq!(order["shipping_address"]["city"], "Springfield");
        assert_eq!(
            app.audit_states(id).await,
            [
                "pending",
                "validating",
                "reserved",
                "processing_payment",
                "paid"
            ]
        );
        // The demo catalog had 40 copies: two are sold, none held.
        assert_eq!(app.stock("bk-0001").await, (38, 0));
        let again = app.order(id).await;
        assert_eq!(again["version"], order["version"]);
    }
}

#[tokio::test]
async fn the_mock_amount_rules_exactly() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await.serve();
        // (price, expected status, expected state, expected code)
        let cases = [
            ("50.13", 502, "cancelled", "payment_provider_error"), // 1: ends in .13 → creation fails
            ("99.99", 201, "paid", ""), // 2: below 100 → success (even .99)
            ("150.99", 402, "payment_failed", "card_declined"), // 3: .99 → declined
            ("200.00", 502, "cancelled", "payment_provider_error"), // 4: .00 above 100 → processing error
            ("100.00", 201, "paid", ""), // 5: exactly 100.00 is neither below nor above
            ("150.50", 201, "paid", ""), // 5: anything else → success
            ("100.13", 502, "cancelled", "payment_provider_error"), // 1 wins over everything
        ];
        for (i, (price, status, state, code)) in cases.iter().enumerate() {
            let book = format!("bk-rule-{i}");
            app.book(&book, price, 5).await;
            let (s, body) = app.place(&book, 1, "pm_card_visa").await;
            assert_eq!(s, *status, "{backend:?} {price}: {body}");
            let id = if s == 201 {
                body["id"].as_str().unwrap().to_owned()
            } else {
                body["order_id"].as_str().unwrap().to_owned()
            };
            if !code.is_empty() {
                assert_eq!(body["code"], *code, "{price}: {body}");
                assert_eq!(body["type"], format!("/problems/{code}"));
            }
            let order = app.order(&id).await;
            assert_eq!(order["state"], *state, "{price}");
            // A failed payment gives the stock back; a paid one keeps it sold.
            let expected_stock = if *status == 201 { (4, 0) } else { (5, 0) };
            assert_eq!(app.stock(&book).await, expected_stock, "{price}");
        }
        // The provider error is on the audit trail as payment_failed → cancelled.
        let (_, body) = app.place("bk-rule-0", 1, "pm_card_visa").await;
        let states = app.audit_states(body["order_id"].as_str().unwrap()).await;
        assert_eq!(states[states.len() - 2..], ["payment_failed", "cancelled"]);
    }
}

#[tokio::test]
async fn inventory_outcomes() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await.serve();
        // bk-0012 has 3 copies in the demo catalog.
        let (s, p) = app.place("bk-0012", 5, "pm_card_visa").await;
        assert_eq!(
            (s, p["code"].as_str()),
            (409, Some("insufficient_inventory")),
            "{p}"
        );
        assert_eq!(
            p["unavailable_items"],
            json!([{"book_id": "bk-0012", "requested": 5, "available": 3}])
        );
        assert_eq!(
            app.order(p["order_id"].as_str().unwrap()).await["state"],
            "inventory_failed"
        );
        assert_eq!(app.stock("bk-0012").await, (3, 0));
        let (s, p) = app.place("bk-unknown", 1, "pm_card_visa").await;
        assert_eq!((s, p["code"].as_str()), (409, Some("unknown_book")));
        let mut body = contract_order();
        body["items"][0]["unit_price"] = json!("9.99");
        let (s, p, _) = app.post("/orders", body, None).await;
        assert_eq!((s, p["code"].as_str()), (409, Some("price_mismatch")));
        assert_eq!(
            app.order(p["order_id"].as_str().unwrap()).await["state"],
            "inventory_failed"
        );
        assert_eq!(
            app.stock("bk-0001").await,
            (40, 0),
            "nothing stays reserved"
        );
    }
}

#[tokio::test]
async fn invalid_requests_create_nothing() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await.serve();
        let bad = [
            json!({"customer_id": "c", "items": [], "payment_method": {"token": "pm"}}),
            json!({"customer_id": "c", "items": [{"book_id": "bk-0001", "quantity": 0}], "payment_method": {"token": "pm"}}),
            json!({"customer_id": "c", "items": [{"book_id": "bk-0001", "quantity": 100000}], "payment_method": {"token": "pm"}}),
            json!({"customer_id": "c", "currency": "ZZZ", "items": [{"book_id": "bk-0001", "quantity": 1}], "payment_method": {"token": "pm"}}),
            json!({"customer_id": "c", "shipping_cost": "-1", "items": [{"book_id": "bk-0001", "quantity": 1}], "payment_method": {"token": "pm"}}),
            json!({"customer_id": "c", "tax_rate": 1.5, "items": [{"book_id": "bk-0001", "quantity": 1}], "payment_method": {"token": "pm"}}),
            json!({"customer_id": "c", "items": [{"book_id": "bk-0001", "quantity": "two"}], "payment_method": {"token": "pm"}}),
            json!([1, 2, 3]),
        ];
        for body in bad {
            let (s, p, _) = app.post("/orders", body.clone(), None).await;
            assert_eq!(s, 422, "{body} → {p}");
            assert_eq!(p["code"], "validation_failed");
            assert!(!p["errors"].as_array().unwrap().is_empty());
        }
        let (_, list) = app.get("/orders").await;
        assert!(list["orders"].as_array().unwrap().is_empty());
        assert_eq!(app.stock("bk-0001").await, (40, 0));
    }
}

#[tokio::test]
async fn idempotency_replay_reuse_and_concurrent_same_key() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await.serve();
        let (s1, o1, _) = app.post("/orders", contract_order(), Some("k-1")).await;
        let (s2, o2, h2) = app.post("/orders", contract_order(), Some("k-1")).await;
        assert_eq!((s1, s2), (201, 201));
        assert_eq!(o1, o2);
        assert_eq!(h2["idempotent-replayed"], "true");
        let mut other = contract_order();
        other["items"][0]["quantity"] = json!(1);
        let (s3, p3, _) = app.post("/orders", other, Some("k-1")).await;
        assert_eq!(
            (s3, p3["code"].as_str()),
            (422, Some("idempotency_key_reused"))
        );

        // Ten concurrent requests with one key: exactly one order.
        let requests = (0..10).map(|_| app.post("/orders", contract_order(), Some("k-concurrent")));
        let results = futures::future::join_all(requests).await;
        let mut ids = std::collections::HashSet::new();
        for (s, body, _) in &results {
            match s {
                201 => {
                    ids.insert(body["id"].as_str().unwrap().to_owned());
                }
                409 => assert_eq!(body["code"], "idempotency_key_in_use"),
                other => panic!("unexpected {other}: {body}"),
            }
        }
        assert_eq!(ids.len(), 1, "{results:?}");
        let (_, list) = app.get("/orders?customer_id=cust-42").await;
        assert_eq!(list["orders"].as_array().unwrap().len(), 2);
    }
}

#[tokio::test]
async fn every_transition_through_the_api() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await.serve();
        let (_, order, _) = app.post("/orders", contract_order(), None).await;
        let id = order["id"].as_str().unwrap();
        let forbidden = |from: &str, to: &str, p: &serde_json::Value| {
            assert_eq!(
                (p["code"].as_str(), p["from"].as_str(), p["to"].as_str()),
                (Some("invalid_transition"), Some(from), Some(to)),
                "{p}"
            );
        };
        let (s, p, _) = app
            .post(&format!("/orders/{id}/complete"), json!({}), None)
            .await;
        assert_eq!(s, 409);
        forbidden("paid", "completed", &p);
        let (s, p, _) = app
            .post(
                &format!("/orders/{id}/cancel"),
                json!({"reason": "changed my mind"}),
                None,
            )
            .await;
        assert_eq!(s, 409);
        forbidden("paid", "cancelled", &p);
        let (s, o, _) = app
            .post(&format!("/orders/{id}/fulfill"), json!({}), None)
            .await;
        assert_eq!((s, o["state"].as_str()), (200, Some("fulfilling")));
        let (s, p, _) = app
            .post(
                &format!("/orders/{id}/refunds"),
                json!({"amount": "1.00"}),
                None,
            )
            .await;
        assert_eq!(s, 409, "refunds are for paid or completed orders: {p}");
        // Cancelling in fulfilling refunds what was paid first.
        let (s, o, _) = app
            .post(
                &format!("/orders/{id}/cancel"),
                json!({"reason": "lost in the warehouse"}),
                None,
            )
            .await;
        assert_eq!(
            (s, o["state"].as_str(), o["refunded_amount"].as_str()),
            (200, Some("cancelled"), Some("31.99")),
            "{o}"
        );
        let (s, p, _) = app
            .post(&format!("/orders/{id}/fulfill"), json!({}), None)
            .await;
        assert_eq!(s, 409);
        forbidden("cancelled", "fulfilling", &p);

        let (_, order, _) = app.post("/orders", contract_order(), None).await;
        let id = order["id"].as_str().unwrap();
        app.post(&format!("/orders/{id}/fulfill"), json!({}), None)
            .await;
        let (s, o, _) = app
            .post(&format!("/orders/{id}/complete"), json!({}), None)
            .await;
        assert_eq!((s, o["state"].as_str()), (200, Some("completed")));
        let (s, r, _) = app
            .post(
                &format!("/orders/{id}/refunds"),
                json!({"amount": "10.00", "reason": "late"}),
                Some("r-1"),
            )
            .await;
        assert_eq!((s, r["amount"].as_str()), (201, Some("10.00")));
        let (s, r2, h) = app
            .post(
                &format!("/orders/{id}/refunds"),
                json!({"amount": "10.00", "reason": "late"}),
                Some("r-1"),
            )
            .await;
        assert_eq!(
            (s, &r2, h["idempotent-replayed"].to_str().unwrap()),
            (201, &r, "true")
        );
        let (s, p, _) = app
            .post(
                &format!("/orders/{id}/refunds"),
                json!({"amount": "22.00"}),
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
        assert_eq!((s, r["amount"].as_str()), (201, Some("21.99")));
        assert_eq!(app.order(id).await["state"], "refunded");
        assert_eq!(
            app.audit_states(id).await.last().map(String::as_str),
            Some("refunded")
        );

        let (s, p, _) = app
            .post(
                "/orders/00000000-0000-7000-8000-000000000000/fulfill",
                json!({}),
                None,
            )
            .await;
        assert_eq!((s, p["code"].as_str()), (404, Some("order_not_found")));
    }
}

#[tokio::test]
async fn listing_with_filters_and_cursor() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await.serve();
        let mut ids = Vec::new();
        for _ in 0..5 {
            let (_, o, _) = app.post("/orders", contract_order(), None).await;
            ids.push(o["id"].as_str().unwrap().to_owned());
        }
        app.place("bk-unknown", 1, "pm_card_visa").await;
        ids.reverse();
        let (_, page) = app
            .get("/orders?customer_id=cust-42&state=paid&limit=3")
            .await;
        let got: Vec<String> = page["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(got, ids[..3]);
        let (_, page2) = app
            .get(&format!(
                "/orders?customer_id=cust-42&state=paid&limit=3&cursor={}",
                page["next_cursor"].as_str().unwrap()
            ))
            .await;
        let got2: Vec<String> = page2["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(got2, ids[3..]);
        assert!(page2["next_cursor"].is_null());
        let (_, failed) = app.get("/orders?state=inventory_failed").await;
        assert_eq!(failed["orders"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn operations_endpoints() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await.serve();
        assert_eq!(app.get("/health/live").await.0, 200);
        assert_eq!(app.get("/health/ready").await.0, 200);
        app.post("/orders", contract_order(), None).await;
        let res = app
            .client
            .get(format!("{}/metrics", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200);
        let text = res.text().await.unwrap();
        assert!(text.contains("checkout_orders_total"), "{text}");
        assert!(
            text.contains("checkout_http_request_duration_seconds"),
            "{text}"
        );
        let (s, doc) = app.get("/openapi.json").await;
        assert_eq!(s, 200);
        assert!(doc["paths"]["/orders"]["post"].is_object());
    }
}

#[tokio::test]
async fn metrics_on_a_separate_admin_address() {
    // Port 0: the service binds a free port itself, so no other test can
    // take it between the choice and the bind.
    let app = TestApp::spawn_with(crate::helpers::Backend::Sqlite, |s| {
        s.server.admin_addr = "127.0.0.1:0".to_owned()
    })
    .await;
    let port = app
        .app
        .as_ref()
        .and_then(|a| a.admin_address())
        .unwrap()
        .port();
    let app = app.serve();
    app.post("/orders", contract_order(), None).await;
    let admin = app
        .client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status().as_u16(), 200);
    assert!(
        admin
            .text()
            .await
            .unwrap()
            .contains("checkout_orders_total")
    );
    let ready = app
        .client
        .get(format!("http://127.0.0.1:{port}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let api = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_ne!(api.status().as_u16(), 200, "no metrics on the API address");
}
