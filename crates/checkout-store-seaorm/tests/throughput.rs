//! How many orders per second the store sustains for the order pipeline's
//! own database work, with 64 concurrent callers: per order, the catalog
//! read, the reserve-and-create commit and the paid-and-confirm commit (the
//! embedded fast path, `OrderStockLedger`). Compare with the database's own
//! ceiling for the same work (`shared/bench/ceiling`).
//!
//! Ignored by default (it measures, it doesn't check behaviour):
//! `cargo test --release -p checkout-store-seaorm --test throughput -- --ignored --nocapture`
//! (`TEST_DATABASE_URL` adds PostgreSQL).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use checkout_domain::{OrderState, ReservationStatus};
use checkout_ports::{CatalogRead, OrderStockLedger, StockEffect};
use support::{TestDb, book, ctx, order_id, reserved_order, stock, t0};

/// Concurrent callers (`THROUGHPUT_CALLERS` overrides).
fn callers() -> u64 {
    std::env::var("THROUGHPUT_CALLERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}
const RUN: Duration = Duration::from_secs(5);
const BOOKS: u32 = 200;

async fn one_order(store: &checkout_store_seaorm::SeaOrmStore, seq: u64) {
    let b1 = format!("bk-{}", seq % u64::from(BOOKS));
    let b2 = format!("bk-{}", (seq * 7 + 3) % u64::from(BOOKS));
    let (b1, b2) = if b1 == b2 {
        (b1, format!("bk-{}", (seq + 1) % u64::from(BOOKS)))
    } else {
        (b1, b2)
    };
    let items = [(b1.as_str(), 1), (b2.as_str(), 1)];
    let books = [book(&b1), book(&b2)];
    let prices = store
        .catalog_prices(&books, CatalogRead::Fresh)
        .await
        .unwrap();
    let (mut order, mut changes, req) =
        reserved_order(order_id(seq), "cust-bench", &items, &prices);
    changes.push(
        order
            .transition(
                OrderState::ProcessingPayment,
                ctx("Initiating payment", t0()),
            )
            .unwrap(),
    );
    store
        .create_with_reservation(&order, &changes, &req, &prices)
        .await
        .unwrap();
    let expected = order.version();
    let paid = order
        .transition(OrderState::Paid, ctx("Payment confirmed", t0()))
        .unwrap();
    order.set_reservation_status(ReservationStatus::Confirmed, t0());
    store
        .save_with_stock(
            &order,
            expected,
            &[paid],
            StockEffect::Confirm(req.reservation_id),
        )
        .await
        .unwrap();
}

async fn measure(db: TestDb, name: &str) {
    for i in 0..BOOKS {
        stock(&db, &format!("bk-{i}"), "12.50", 1_000_000).await;
    }
    let done = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(1));
    let start = Instant::now();
    let mut tasks = Vec::new();
    let callers = callers();
    for _ in 0..callers {
        let (store, done, next) = (db.store.clone(), done.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < RUN {
                one_order(&store, next.fetch_add(1, Ordering::Relaxed)).await;
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = done.load(Ordering::Relaxed);
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{name}: {n} orders in {secs:.1} s = {:.0} orders/s ({callers} callers)",
        n as f64 / secs
    );
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn order_pipeline_throughput() {
    measure(TestDb::sqlite().await, "sqlite").await;
    if let Some(db) = TestDb::postgres().await {
        measure(db, "postgres").await;
    }
}
