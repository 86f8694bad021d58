//! Rows ⇄ domain types, explicitly, field by field.
//!
//! Reading trusts nothing: a row that does not make a valid domain value
//! (an unknown state, a negative amount, malformed JSON) is reported as
//! corrupt data (`Unexpected`) rather than papered over.

use std::str::FromStr;

use checkout_domain::{
    Address, AuditEntry, BookId, Currency, CustomerId, EventEnvelope, Money, Order, OrderId,
    OrderLine, OrderSnapshot, OrderState, Payment, PaymentStatus, Quantity, RefundId,
    ReservationId, ReservationRef, ReservationStatus, TaxRate,
};
use checkout_ports::{Refund, RefundRecordStatus, RepositoryError, ReservationLine, StockItem};
use rust_decimal::Decimal;
use sea_orm::Value;

use crate::entity::{audit_log, order_items, orders, refunds, reservation_items, stock};
use crate::sql::{from_micros, micros};

/// Corrupt or unreadable stored data.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> RepositoryError {
    RepositoryError::Unexpected(format!("corrupt stored data: {what}"))
}

fn money(minor: i64, currency: Currency, what: &str) -> Result<Money, RepositoryError> {
    Money::from_minor_units(minor, currency).map_err(|e| corrupt(format!("{what}: {e}")))
}

fn currency(code: &str) -> Result<Currency, RepositoryError> {
    Currency::parse(code).map_err(corrupt)
}

fn instant(m: i64) -> Result<time::OffsetDateTime, RepositoryError> {
    from_micros(m).map_err(corrupt)
}

fn state(s: &str) -> Result<OrderState, RepositoryError> {
    OrderState::from_str(s).map_err(corrupt)
}

fn json_text(v: &serde_json::Value) -> String {
    v.to_string()
}

fn address_json(a: Option<&Address>) -> Result<Option<String>, RepositoryError> {
    a.map(|a| serde_json::to_string(a).map_err(|e| RepositoryError::Unexpected(e.to_string())))
        .transpose()
}

fn address(s: Option<&str>) -> Result<Option<Address>, RepositoryError> {
    s.map(|s| serde_json::from_str(s).map_err(|e| corrupt(format!("address: {e}"))))
        .transpose()
}

/// The `orders` columns, in the order [`order_values`] gives their values.
pub(crate) const ORDER_COLUMNS: &[&str] = &[
    "id",
    "customer_id",
    "state",
    "currency",
    "tax_rate",
    "shipping_minor",
    "refunded_minor",
    "subtotal_minor",
    "tax_minor",
    "total_minor",
    "reservation_id",
    "reservation_expires_at",
    "reservation_status",
    "payment_provider",
    "payment_attempt",
    "payment_idempotency_key",
    "payment_intent_id",
    "payment_transaction_id",
    "payment_status",
    "payment_client_secret",
    "payment_next_action",
    "payment_failure_code",
    "payment_failure_message",
    "shipping_address",
    "billing_address",
    "version",
    "event_sequence",
    "created_at",
    "updated_at",
];

fn to_i64(v: u64, what: &str) -> Result<i64, RepositoryError> {
    i64::try_from(v).map_err(|_| RepositoryError::Unexpected(format!("{what} {v} out of range")))
}

/// Every column of an order's row, as values typed for the column (a NULL
/// keeps the column's type, which PostgreSQL insists on).
pub(crate) fn order_values(order: &Order) -> Result<Vec<Value>, RepositoryError> {
    let s = order.snapshot();
    let totals = order.totals();
    let r = s.reservation.as_ref();
    let p = s.payment.as_ref();
    Ok(vec![
        s.id.as_uuid().into(),
        s.customer_id.as_str().into(),
        s.state.as_str().into(),
        s.currency.code().into(),
        s.tax_rate.get().to_string().into(),
        s.shipping_cost.to_minor_units().into(),
        s.refunded_amount.to_minor_units().into(),
        totals.map(|t| t.subtotal.to_minor_units()).into(),
        totals.map(|t| t.tax_amount.to_minor_units()).into(),
        totals.map(|t| t.total_amount.to_minor_units()).into(),
        r.map(|r| r.id.as_uuid()).into(),
        r.map(|r| micros(r.expires_at)).into(),
        r.map(|r| r.status.as_str().to_owned()).into(),
        p.map(|p| p.provider.clone()).into(),
        p.map(|p| i64::from(p.attempt)).into(),
        p.map(|p| p.idempotency_key.clone()).into(),
        p.and_then(|p| p.intent_id.clone()).into(),
        p.and_then(|p| p.transaction_id.clone()).into(),
        p.map(|p| p.status.as_str().to_owned()).into(),
        p.and_then(|p| p.client_secret.clone()).into(),
        p.and_then(|p| p.next_action.as_ref().map(json_text)).into(),
        p.and_then(|p| p.failure_code.clone()).into(),
        p.and_then(|p| p.failure_message.clone()).into(),
        address_json(s.shipping_address.as_ref())?.into(),
        address_json(s.billing_address.as_ref())?.into(),
        to_i64(s.version, "version")?.into(),
        i64::from(s.event_sequence).into(),
        micros(s.created_at).into(),
        micros(s.updated_at).into(),
    ])
}

/// One `order_items` row per line.
pub(crate) fn item_rows(order: &Order) -> Vec<Vec<Value>> {
    let id = order.id().as_uuid();
    order
        .lines()
        .iter()
        .enumerate()
        .map(|(i, l)| {
            vec![
                id.into(),
                (i as i64 + 1).into(),
                l.book_id.as_str().into(),
                i64::from(l.quantity.get()).into(),
                l.unit_price.map(|m| m.to_minor_units()).into(),
                l.expected_unit_price.map(|m| m.to_minor_units()).into(),
            ]
        })
        .collect()
}

/// One `audit_log` row (without its generated id).
pub(crate) fn audit_row(a: &AuditEntry) -> Vec<Value> {
    vec![
        a.order_id.as_uuid().into(),
        a.previous_state.map(|s| s.as_str().to_owned()).into(),
        a.new_state.as_str().into(),
        a.reason.clone().into(),
        json_text(&a.metadata).into(),
        a.actor.clone().into(),
        micros(a.at).into(),
    ]
}

/// One `outbox` row: the envelope's JSON is what consumers receive.
pub(crate) fn outbox_row(e: &EventEnvelope) -> Result<Vec<Value>, RepositoryError> {
    let payload = e.to_json_text().map_err(|err| {
        RepositoryError::Unexpected(format!(
            "event {} of order {}: {err}",
            e.sequence, e.order_id
        ))
    })?;
    Ok(vec![
        e.id.as_uuid().into(),
        e.order_id.as_uuid().into(),
        i64::from(e.sequence).into(),
        e.event_type().into(),
        payload.into(),
        micros(e.occurred_at).into(),
    ])
}

/// The order's current payment, as a `payment_attempts` row.
pub(crate) fn payment_row(order: &Order) -> Option<Vec<Value>> {
    let p = order.payment()?;
    Some(vec![
        order.id().as_uuid().into(),
        i64::from(p.attempt).into(),
        p.provider.clone().into(),
        p.idempotency_key.clone().into(),
        p.intent_id.clone().into(),
        p.transaction_id.clone().into(),
        p.status.as_str().into(),
        p.failure_code.clone().into(),
        p.failure_message.clone().into(),
        micros(order.updated_at()).into(),
        micros(order.updated_at()).into(),
    ])
}

fn line(row: &order_items::Model, cur: Currency) -> Result<OrderLine, RepositoryError> {
    Ok(OrderLine {
        book_id: BookId::parse(row.book_id.clone()).map_err(corrupt)?,
        quantity: Quantity::new(row.quantity).map_err(corrupt)?,
        unit_price: row
            .unit_price_minor
            .map(|m| money(m, cur, "unit price"))
            .transpose()?,
        expected_unit_price: row
            .expected_unit_price_minor
            .map(|m| money(m, cur, "expected unit price"))
            .transpose()?,
    })
}

/// Rebuilds an order from its row and its lines (in line order).
pub(crate) fn order(
    row: &orders::Model,
    items: &[&order_items::Model],
) -> Result<Order, RepositoryError> {
    let cur = currency(&row.currency)?;
    let reservation = match (
        row.reservation_id,
        row.reservation_expires_at,
        row.reservation_status.as_deref(),
    ) {
        (Some(id), Some(expires_at), Some(status)) => Some(ReservationRef {
            id: ReservationId::from_uuid(id),
            expires_at: instant(expires_at)?,
            status: ReservationStatus::parse(status).map_err(corrupt)?,
        }),
        _ => None,
    };
    let payment = match (
        row.payment_provider.as_ref(),
        row.payment_attempt,
        row.payment_idempotency_key.as_ref(),
        row.payment_status.as_deref(),
    ) {
        (Some(provider), Some(attempt), Some(key), Some(status)) => Some(Payment {
            provider: provider.clone(),
            attempt: u32::try_from(attempt).map_err(corrupt)?,
            idempotency_key: key.clone(),
            intent_id: row.payment_intent_id.clone(),
            transaction_id: row.payment_transaction_id.clone(),
            status: PaymentStatus::parse(status).map_err(corrupt)?,
            client_secret: row.payment_client_secret.clone(),
            next_action: row
                .payment_next_action
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| corrupt(format!("next_action: {e}")))?,
            failure_code: row.payment_failure_code.clone(),
            failure_message: row.payment_failure_message.clone(),
        }),
        _ => None,
    };
    let tax_rate = Decimal::from_str(&row.tax_rate)
        .map_err(corrupt)
        .and_then(|d| TaxRate::new(d).map_err(corrupt))?;
    let snapshot = OrderSnapshot {
        id: OrderId::from_uuid(row.id),
        customer_id: CustomerId::parse(row.customer_id.clone()).map_err(corrupt)?,
        state: state(&row.state)?,
        currency: cur,
        lines: items
            .iter()
            .map(|i| line(i, cur))
            .collect::<Result<_, _>>()?,
        tax_rate,
        shipping_cost: money(row.shipping_minor, cur, "shipping cost")?,
        refunded_amount: money(row.refunded_minor, cur, "refunded amount")?,
        reservation,
        payment,
        shipping_address: address(row.shipping_address.as_deref())?,
        billing_address: address(row.billing_address.as_deref())?,
        version: u64::try_from(row.version).map_err(corrupt)?,
        event_sequence: u32::try_from(row.event_sequence).map_err(corrupt)?,
        created_at: instant(row.created_at)?,
        updated_at: instant(row.updated_at)?,
    };
    Ok(Order::restore(snapshot))
}

pub(crate) fn audit_entry(row: &audit_log::Model) -> Result<AuditEntry, RepositoryError> {
    Ok(AuditEntry {
        order_id: OrderId::from_uuid(row.order_id),
        previous_state: row.previous_state.as_deref().map(state).transpose()?,
        new_state: state(&row.new_state)?,
        reason: row.reason.clone(),
        metadata: serde_json::from_str(&row.metadata)
            .map_err(|e| corrupt(format!("audit metadata: {e}")))?,
        actor: row.actor.clone(),
        at: instant(row.at)?,
    })
}

pub(crate) fn refund_status(s: &str) -> Result<RefundRecordStatus, RepositoryError> {
    Ok(match s {
        "pending" => RefundRecordStatus::Pending,
        "succeeded" => RefundRecordStatus::Succeeded,
        "failed" => RefundRecordStatus::Failed,
        other => return Err(corrupt(format!("refund status `{other}`"))),
    })
}

pub(crate) fn refund(row: &refunds::Model) -> Result<Refund, RepositoryError> {
    Ok(Refund {
        id: RefundId::from_uuid(row.id),
        order_id: OrderId::from_uuid(row.order_id),
        amount: money(row.amount_minor, currency(&row.currency)?, "refund amount")?,
        status: refund_status(&row.status)?,
        provider_refund_id: row.provider_refund_id.clone(),
        reason: row.reason.clone(),
        created_at: instant(row.created_at)?,
    })
}

fn count(v: i64, what: &str) -> Result<u32, RepositoryError> {
    u32::try_from(v).map_err(|_| corrupt(format!("{what} {v}")))
}

pub(crate) fn stock_item(row: &stock::Model) -> Result<StockItem, RepositoryError> {
    Ok(StockItem {
        book_id: BookId::parse(row.book_id.clone()).map_err(corrupt)?,
        title: row.title.clone(),
        price: money(row.price_minor, currency(&row.currency)?, "price")?,
        available: count(row.available, "available")?,
        reserved: count(row.reserved, "reserved")?,
    })
}

pub(crate) fn reservation_line(
    row: &reservation_items::Model,
    cur: &str,
) -> Result<ReservationLine, RepositoryError> {
    Ok(ReservationLine {
        book_id: BookId::parse(row.book_id.clone()).map_err(corrupt)?,
        quantity: Quantity::new(row.quantity).map_err(corrupt)?,
        unit_price: money(row.unit_price_minor, currency(cur)?, "unit price")?,
    })
}
