//! `checkout-load`: drives a running checkout service with realistic carts
//! and reports throughput, latency percentiles and status codes.
//!
//! Two modes: closed loop (`--concurrency N` clients, each sending its next
//! order when the last one answered) measures peak throughput; fixed rate
//! (`--rate R`) sends R orders per second whatever the answers and measures
//! latency from each request's *scheduled* time, so a stalled server shows
//! up in the percentiles instead of hiding (coordinated omission).
//!
//! Carts: 1–3 distinct books from `--books` load-test titles, quantities 1–2,
//! random customers, a fraction with an `Idempotency-Key`. Prices are chosen
//! so that every total is below 100.00 and not `.13`: the mock provider pays
//! them all, so any status but 201 is unexpected and fails the run.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a CLI reports on stdout/stderr

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Mutex;

mod http1;
use http1::{Connection, IdleConnections, Target};

#[derive(Debug, Parser, Clone)]
#[command(version, about = "Load generator for the BookVerse checkout service")]
struct Args {
    /// Base URL of the service.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Concurrent clients (closed loop); with --rate, the most requests in flight.
    #[arg(long, short = 'c', default_value_t = 16)]
    concurrency: usize,
    /// How long to run, in seconds.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Fixed-rate mode: orders per second (open loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Distinct load-test books to spread orders over.
    #[arg(long, default_value_t = 1000)]
    books: usize,
    /// Create (or reset) the load-test books in the local stock first.
    #[arg(long)]
    seed_stock: bool,
    /// Fraction of orders sent with an Idempotency-Key.
    #[arg(long, default_value_t = 0.2)]
    idempotent_fraction: f64,
    /// Warm-up seconds before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// Also write every measured request to this CSV file: when it was due
    /// (µs after measuring began), how late it left and its latency (µs).
    /// Percentiles say how long the tail is; this says when it happened,
    /// which tells a periodic stall from a queue that grows.
    #[arg(long)]
    timeline: Option<std::path::PathBuf>,
}

#[derive(Debug, Serialize)]
struct Report {
    mode: String,
    concurrency: usize,
    target_rate: Option<f64>,
    duration_s: f64,
    requests: u64,
    orders_per_s: f64,
    latency_ms: Percentiles,
    /// Fixed rate only: how late each request left against its schedule
    /// (the wait for a free slot and the generator's own delay). Included
    /// in `latency_ms`; reported apart so that a generator short of CPU is
    /// told from a slow service.
    #[serde(skip_serializing_if = "Option::is_none")]
    send_lag_ms: Option<Percentiles>,
    statuses: BTreeMap<String, u64>,
    unexpected: u64,
    errors: u64,
    ok: bool,
}

#[derive(Debug, Serialize)]
struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    p99_9: f64,
    max: f64,
    mean: f64,
}

impl Percentiles {
    /// The percentiles of a histogram of microseconds, in milliseconds.
    fn of(hist: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Percentiles {
            p50: ms(hist.value_at_quantile(0.5)),
            p90: ms(hist.value_at_quantile(0.9)),
            p99: ms(hist.value_at_quantile(0.99)),
            p99_9: ms(hist.value_at_quantile(0.999)),
            max: ms(hist.max()),
            mean: hist.mean() / 1000.0,
        }
    }
}

struct Tally {
    hist: Histogram<u64>,
    send_lag: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    /// With `--timeline`: (due, send lag, latency) of each measured request.
    timeline: Option<Vec<TimelineRow>>,
}

/// One request of `--timeline`, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TimelineRow {
    due: u64,
    lag: u64,
    latency: u64,
}

impl Tally {
    fn timeline_row(&mut self, due: u64, lag: u64, latency: u64) {
        if let Some(rows) = &mut self.timeline {
            rows.push(TimelineRow { due, lag, latency });
        }
    }
}

/// Writes `--timeline`'s CSV, rows in the order the requests were due.
fn write_timeline(path: &std::path::Path, rows: &[TimelineRow]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut sorted = rows.to_vec();
    sorted.sort_by_key(|r| r.due);
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "due_us,send_lag_us,latency_us")?;
    for r in &sorted {
        writeln!(out, "{},{},{}", r.due, r.lag, r.latency)?;
    }
    out.flush()?;
    Ok(())
}

const BOOK_PRICE: &str = "12.50";

fn book_id(i: usize) -> String {
    format!("bk-load-{i:05}")
}

fn cart(books: usize, rng: &mut fastrand::Rng) -> serde_json::Value {
    let lines = rng.usize(1..=3).min(books);
    let mut picked: Vec<usize> = Vec::with_capacity(lines);
    while picked.len() < lines {
        let b = rng.usize(0..books);
        if !picked.contains(&b) {
            picked.push(b);
        }
    }
    let items: Vec<_> = picked
        .iter()
        .map(|b| json!({"book_id": book_id(*b), "quantity": rng.u32(1..=2), "unit_price": BOOK_PRICE}))
        .collect();
    json!({
        "customer_id": format!("cust-{}", rng.u32(1..=100_000)),
        "currency": "USD",
        "items": items,
        "tax_rate": "0.08",
        "shipping_cost": "4.99",
        "payment_method": {"type": "card", "token": "pm_card_visa"}
    })
}

async fn seed(client: &reqwest::Client, args: &Args) -> anyhow::Result<()> {
    for i in 0..args.books {
        let res = client
            .put(format!("{}/inventory/{}", args.url, book_id(i)))
            .json(&json!({"available": 100_000_000, "price": BOOK_PRICE, "currency": "USD", "title": format!("Load test title {i}")}))
            .send()
            .await
            .context("seeding the stock")?;
        if !res.status().is_success() {
            bail!("seeding {} answered {}", book_id(i), res.status());
        }
    }
    Ok(())
}

/// How long an order may take before it counts as a transport error.
const ORDER_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the orders go, from `--url`: the raw client speaks plain HTTP/1.1.
fn orders_target(url: &str) -> anyhow::Result<Target> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("--url {url}"))?;
    if parsed.scheme() != "http" {
        bail!("--url must be http:// (the load generator speaks plain HTTP/1.1)");
    }
    let host = parsed.host_str().context("--url has no host")?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let path = format!("{}/orders", parsed.path().trim_end_matches('/'));
    Ok(Target {
        authority: format!("{host}:{port}"),
        path,
    })
}

/// Sends one order over `conn`, opening a connection when there is none,
/// and gives its status. A connection that failed, timed out or was asked
/// to close is dropped; the next order opens another.
async fn one_order(
    conn: &mut Option<Connection>,
    target: &Target,
    args: &Args,
    rng: &mut fastrand::Rng,
) -> Result<u16, ()> {
    let body = serde_json::to_vec(&cart(args.books, rng)).map_err(|_| ())?;
    let key = (rng.f64() < args.idempotent_fraction)
        .then(|| format!("load-{:016x}{:016x}", rng.u64(..), rng.u64(..)));
    let idempotency;
    let headers: &[(&str, &str)] = match &key {
        Some(key) => {
            idempotency = [("Idempotency-Key", key.as_str())];
            &idempotency
        }
        None => &[],
    };
    let mut open = match conn.take() {
        Some(open) => open,
        None => Connection::open(target).await.map_err(|_| ())?,
    };
    match tokio::time::timeout(ORDER_TIMEOUT, open.post_json(target, headers, &body)).await {
        Ok(Ok((status, keep_alive))) => {
            if keep_alive {
                *conn = Some(open);
            }
            Ok(status)
        }
        Ok(Err(_)) | Err(_) => Err(()),
    }
}

/// A duration in whole microseconds, at least 1 (the histograms' floor).
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Whole microseconds from `from` to `at` (0 when `at` is earlier).
fn since(from: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(from).as_micros()).unwrap_or(u64::MAX)
}

fn record(t: &mut Tally, started: Instant, outcome: Result<u16, ()>) -> u64 {
    let latency = micros(started.elapsed());
    let _ = t.hist.record(latency);
    match outcome {
        Ok(s) => *t.statuses.entry(s).or_default() += 1,
        Err(()) => t.errors += 1,
    }
    latency
}

// One thread: the generator shares the machine with the service it
// measures, and on one thread its tasks never wake each other across cores.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.seed_stock {
        // Seeding is a thousand requests before the run, not measured:
        // reqwest does it.
        let client = reqwest::Client::builder().timeout(ORDER_TIMEOUT).build()?;
        seed(&client, &args).await?;
    }
    let orders = Arc::new(orders_target(&args.url)?);
    let tally = Arc::new(Mutex::new(Tally {
        hist: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        send_lag: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        statuses: BTreeMap::new(),
        errors: 0,
        timeline: args.timeline.as_ref().map(|_| Vec::new()),
    }));
    let measuring = Arc::new(AtomicBool::new(false));
    let warmup = Duration::from_secs_f64(args.warmup);
    let run = Duration::from_secs_f64(args.duration);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + run;

    let mut tasks = Vec::new();
    match args.rate {
        None => {
            for w in 0..args.concurrency {
                let (orders, args, tally, measuring) = (
                    orders.clone(),
                    args.clone(),
                    tally.clone(),
                    measuring.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let mut rng = fastrand::Rng::with_seed(w as u64 + 1);
                    // Each client keeps its own connection.
                    let mut conn = None;
                    while Instant::now() < end {
                        let t0 = Instant::now();
                        let outcome = one_order(&mut conn, &orders, &args, &mut rng).await;
                        if measuring.load(Ordering::Relaxed) || t0 >= measure_from {
                            let mut tally = tally.lock().await;
                            let latency = record(&mut tally, t0, outcome);
                            let due = since(measure_from, t0);
                            tally.timeline_row(due, 0, latency);
                        }
                    }
                }));
            }
        }
        Some(rate) => {
            if rate <= 0.0 {
                bail!("--rate must be positive");
            }
            let interval = Duration::from_secs_f64(1.0 / rate);
            // At most `concurrency` requests in flight, as documented: a send
            // that finds none free waits, and its latency still counts from
            // its scheduled time, so a service that falls behind shows it in
            // the figures instead of in an ever longer queue of connections.
            let permits = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
            // The idle connections: no more than the requests in flight.
            let idle: Arc<IdleConnections> = Arc::default();
            let mut n: u64 = 0;
            loop {
                let scheduled = start + interval.mul_f64(n as f64);
                if scheduled >= end {
                    break;
                }
                tokio::time::sleep_until(scheduled.into()).await;
                let permit = permits.clone().acquire_owned().await?;
                let (orders, args, tally, idle) =
                    (orders.clone(), args.clone(), tally.clone(), idle.clone());
                tasks.push(tokio::spawn(async move {
                    let mut rng = fastrand::Rng::with_seed(n + 1);
                    let lag = scheduled.elapsed();
                    let mut conn = idle.take();
                    let outcome = one_order(&mut conn, &orders, &args, &mut rng).await;
                    if let Some(conn) = conn {
                        idle.put(conn);
                    }
                    drop(permit);
                    if scheduled >= measure_from {
                        // Latency from the scheduled send time.
                        let mut tally = tally.lock().await;
                        let _ = tally.send_lag.record(micros(lag));
                        let latency = record(&mut tally, scheduled, outcome);
                        let due = since(measure_from, scheduled);
                        tally.timeline_row(due, micros(lag), latency);
                    }
                }));
                n += 1;
            }
        }
    }
    tokio::time::sleep_until(measure_from.into()).await;
    measuring.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = run.as_secs_f64();
    let t = tally.lock().await;
    if let (Some(path), Some(rows)) = (&args.timeline, &t.timeline) {
        write_timeline(path, rows)?;
    }
    let requests = t.hist.len();
    let unexpected: u64 = t
        .statuses
        .iter()
        .filter(|(s, _)| **s != 201)
        .map(|(_, n)| *n)
        .sum();
    let report = Report {
        mode: if args.rate.is_some() {
            "fixed-rate".into()
        } else {
            "closed-loop".into()
        },
        concurrency: args.concurrency,
        target_rate: args.rate,
        duration_s: elapsed,
        requests,
        orders_per_s: t.statuses.get(&201).copied().unwrap_or(0) as f64 / elapsed,
        latency_ms: Percentiles::of(&t.hist),
        send_lag_ms: args.rate.map(|_| Percentiles::of(&t.send_lag)),
        statuses: t
            .statuses
            .iter()
            .map(|(s, n)| (s.to_string(), *n))
            .collect(),
        unexpected,
        errors: t.errors,
        ok: unexpected == 0 && t.errors == 0 && requests > 0,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} c={} {:.1}s: {} requests, {:.0} orders/s | p50 {:.2} ms p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} | statuses {:?} errors {}",
            report.mode,
            report.concurrency,
            elapsed,
            requests,
            report.orders_per_s,
            report.latency_ms.p50,
            report.latency_ms.p90,
            report.latency_ms.p99,
            report.latency_ms.p99_9,
            report.latency_ms.max,
            report.statuses,
            report.errors
        );
        if let Some(lag) = &report.send_lag_ms {
            println!(
                "send lag (included above): p50 {:.2} ms p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
                lag.p50, lag.p90, lag.p99, lag.p99_9, lag.max
            );
        }
    }
    if !report.ok {
        eprintln!(
            "FAILED: {} unexpected statuses, {} transport errors",
            unexpected, t.errors
        );
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_timeline_lists_requests_in_the_order_they_were_due() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timeline.csv");
        let rows = [
            TimelineRow {
                due: 2_000,
                lag: 15,
                latency: 4_100,
            },
            TimelineRow {
                due: 0,
                lag: 3,
                latency: 900,
            },
            TimelineRow {
                due: 1_000,
                lag: 0,
                latency: 25_000,
            },
        ];
        write_timeline(&path, &rows).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "due_us,send_lag_us,latency_us\n0,3,900\n1000,0,25000\n2000,15,4100\n"
        );
    }

    #[test]
    fn a_tally_keeps_a_timeline_only_when_asked() {
        let tally = |timeline| Tally {
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
            send_lag: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
            statuses: BTreeMap::new(),
            errors: 0,
            timeline,
        };
        let mut without = tally(None);
        without.timeline_row(1, 2, 3);
        assert!(without.timeline.is_none());
        let mut with = tally(Some(Vec::new()));
        with.timeline_row(1, 2, 3);
        with.timeline_row(4, 5, 6);
        assert_eq!(
            with.timeline.unwrap(),
            [
                TimelineRow {
                    due: 1,
                    lag: 2,
                    latency: 3
                },
                TimelineRow {
                    due: 4,
                    lag: 5,
                    latency: 6
                },
            ]
        );
    }
}
