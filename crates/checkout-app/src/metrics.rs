//! The checkout's metrics, through the `metrics` facade (the binary installs
//! the Prometheus recorder). Names are kept here so they are defined once.

use checkout_domain::OrderChange;

/// Orders placed, by outcome (`paid`, `declined`, …).
pub const ORDERS: &str = "checkout_orders_total";
/// Order state changes saved, by `from` and `to`.
pub const TRANSITIONS: &str = "checkout_order_transitions_total";
/// Reservations whose confirmation failed after payment, by `kind`
/// (`retry`: a worker retries; `gone`: released before confirmation).
pub const CONFIRM_FAILURES: &str = "checkout_reservation_confirm_failures_total";
/// Outbox events published, failed (`result`), parked.
pub const OUTBOX_PUBLISHED: &str = "checkout_outbox_published_total";
pub const OUTBOX_FAILED: &str = "checkout_outbox_publish_failures_total";
pub const OUTBOX_PARKED: &str = "checkout_outbox_parked_total";
/// Unpublished events and the age of the oldest (outbox lag).
pub const OUTBOX_PENDING: &str = "checkout_outbox_pending";
pub const OUTBOX_LAG: &str = "checkout_outbox_lag_seconds";
pub const OUTBOX_PARKED_NOW: &str = "checkout_outbox_parked";
/// Work done by background workers, by `worker`.
pub const WORKER_ITEMS: &str = "checkout_worker_items_total";
pub const WORKER_ERRORS: &str = "checkout_worker_errors_total";

pub(crate) fn order_outcome(outcome: &'static str) {
    metrics::counter!(ORDERS, "outcome" => outcome).increment(1);
}

pub(crate) fn changes_saved(changes: &[OrderChange]) {
    for c in changes {
        let from = c.audit.previous_state.map(|s| s.as_str()).unwrap_or("none");
        metrics::counter!(TRANSITIONS, "from" => from, "to" => c.audit.new_state.as_str())
            .increment(1);
    }
}

pub(crate) fn reservation_confirm_failure(kind: &'static str) {
    metrics::counter!(CONFIRM_FAILURES, "kind" => kind).increment(1);
}

pub(crate) fn worker_items(worker: &'static str, n: u64) {
    if n > 0 {
        metrics::counter!(WORKER_ITEMS, "worker" => worker).increment(n);
    }
}

pub(crate) fn worker_error(worker: &'static str) {
    metrics::counter!(WORKER_ERRORS, "worker" => worker).increment(1);
}
