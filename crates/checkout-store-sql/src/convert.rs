//! Rows to domain types and back.

use std::str::FromStr;

use checkout_domain::{
    Address, BookId, Currency, CustomerId, Money, Order, OrderId, OrderLine, OrderSnapshot,
    OrderState, Payment, PaymentStatus, Quantity, ReservationId, ReservationRef, ReservationStatus,
    TaxRate,
};
use rust_decimal::Decimal;
use sea_orm::{DbErr, QueryResult, TryGetable, Value};
use time::OffsetDateTime;
use uuid::Uuid;

/// Instants are stored as microseconds since the Unix epoch.
pub(crate) fn ts(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

pub(crate) fn from_ts(micros: i64) -> Result<OffsetDateTime, DbErr> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .map_err(|e| corrupt(format!("timestamp {micros}: {e}")))
}

pub(crate) fn corrupt(msg: impl Into<String>) -> DbErr {
    DbErr::Custom(format!("corrupt row: {}", msg.into()))
}

pub(crate) fn get<T: TryGetable>(row: &QueryResult, col: &str) -> Result<T, DbErr> {
    row.try_get::<T>("", col)
}

pub(crate) fn s(v: impl Into<String>) -> Value {
    Value::from(v.into())
}

pub(crate) fn opt_s(v: Option<impl Into<String>>) -> Value {
    Value::from(v.map(Into::into))
}

pub(crate) fn i(v: i64) -> Value {
    Value::from(v)
}

pub(crate) fn opt_i(v: Option<i64>) -> Value {
    Value::from(v)
}

pub(crate) fn money(minor: i64, currency: Currency) -> Result<Money, DbErr> {
    Money::from_minor_units(minor, currency).map_err(|e| corrupt(e.to_string()))
}

pub(crate) fn currency(code: &str) -> Result<Currency, DbErr> {
    Currency::parse(code).map_err(|e| corrupt(e.to_string()))
}

pub(crate) fn uuid(text: &str) -> Result<Uuid, DbErr> {
    Uuid::parse_str(text).map_err(|e| corrupt(format!("id {text}: {e}")))
}

pub(crate) fn book(text: String) -> Result<BookId, DbErr> {
    BookId::parse(text).map_err(|e| corrupt(e.to_string()))
}

fn json_opt<T: serde::de::DeserializeOwned>(text: Option<String>) -> Result<Option<T>, DbErr> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(e.to_string())))
        .transpose()
}

/// The columns of `orders`, in the order `order_values` binds them.
pub(crate) const ORDER_COLUMNS: &str = "id, customer_id, state, currency, tax_rate, shipping_minor, refunded_minor, \
    reservation_id, reservation_expires_at, reservation_status, payment_provider, payment_attempt, payment_idempotency_key, \
    payment_intent_id, payment_transaction_id, payment_status, payment_client_secret, payment_next_action, \
    payment_failure_code, payment_failure_message, shipping_address, billing_address, version, event_sequence, created_at, updated_at";

pub(crate) const ORDER_COLUMN_COUNT: usize = 26;

/// The values of an order row (see `ORDER_COLUMNS`).
pub(crate) fn order_values(o: &Order) -> Vec<Value> {
    let sn = o.snapshot();
    let r = sn.reservation.as_ref();
    let p = sn.payment.as_ref();
    vec![
        s(sn.id.to_string()),
        s(sn.customer_id.as_str()),
        s(sn.state.as_str()),
        s(sn.currency.code()),
        s(sn.tax_rate.get().to_string()),
        i(sn.shipping_cost.to_minor_units()),
        i(sn.refunded_amount.to_minor_units()),
        opt_s(r.map(|r| r.id.to_string())),
        opt_i(r.map(|r| ts(r.expires_at))),
        opt_s(r.map(|r| r.status.as_str())),
        opt_s(p.map(|p| p.provider.clone())),
        opt_i(p.map(|p| i64::from(p.attempt))),
        opt_s(p.map(|p| p.idempotency_key.clone())),
        opt_s(p.and_then(|p| p.intent_id.clone())),
        opt_s(p.and_then(|p| p.transaction_id.clone())),
        opt_s(p.map(|p| p.status.as_str())),
        opt_s(p.and_then(|p| p.client_secret.clone())),
        opt_s(p.and_then(|p| p.next_action.as_ref().map(|v| v.to_string()))),
        opt_s(p.and_then(|p| p.failure_code.clone())),
        opt_s(p.and_then(|p| p.failure_message.clone())),
        opt_s(
            sn.shipping_address
                .as_ref()
                .and_then(|a| serde_json::to_string(a).ok()),
        ),
        opt_s(
            sn.billing_address
                .as_ref()
                .and_then(|a| serde_json::to_string(a).ok()),
        ),
        i(i64::try_from(sn.version).unwrap_or(i64::MAX)),
        i(i64::from(sn.event_sequence)),
        i(ts(sn.created_at)),
        i(ts(sn.updated_at)),
    ]
}

/// One `order_items` row.
pub(crate) struct ItemRow {
    pub book_id: String,
    pub quantity: i64,
    pub unit_price_minor: Option<i64>,
    pub expected_unit_price_minor: Option<i64>,
}

pub(crate) fn item_row(row: &QueryResult) -> Result<(String, ItemRow), DbErr> {
    Ok((
        get(row, "order_id")?,
        ItemRow {
            book_id: get(row, "book_id")?,
            quantity: get(row, "quantity")?,
            unit_price_minor: get(row, "unit_price_minor")?,
            expected_unit_price_minor: get(row, "expected_unit_price_minor")?,
        },
    ))
}

/// Rebuilds an order from its row and its items.
pub(crate) fn order_from(row: &QueryResult, items: Vec<ItemRow>) -> Result<Order, DbErr> {
    let cur = currency(&get::<String>(row, "currency")?)?;
    let lines = items
        .into_iter()
        .map(|it| {
            Ok(OrderLine {
                book_id: book(it.book_id)?,
                quantity: Quantity::new(it.quantity).map_err(|e| corrupt(e.to_string()))?,
                unit_price: it.unit_price_minor.map(|m| money(m, cur)).transpose()?,
                expected_unit_price: it
                    .expected_unit_price_minor
                    .map(|m| money(m, cur))
                    .transpose()?,
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    let reservation = match get::<Option<String>>(row, "reservation_id")? {
        None => None,
        Some(id) => Some(ReservationRef {
            id: ReservationId::from_uuid(uuid(&id)?),
            expires_at: from_ts(get::<Option<i64>>(row, "reservation_expires_at")?.unwrap_or(0))?,
            status: ReservationStatus::parse(
                &get::<Option<String>>(row, "reservation_status")?.unwrap_or_default(),
            )
            .map_err(|e| corrupt(e.to_string()))?,
        }),
    };
    let payment = match get::<Option<String>>(row, "payment_provider")? {
        None => None,
        Some(provider) => Some(Payment {
            provider,
            attempt: u32::try_from(get::<Option<i64>>(row, "payment_attempt")?.unwrap_or(1))
                .unwrap_or(1),
            idempotency_key: get::<Option<String>>(row, "payment_idempotency_key")?
                .unwrap_or_default(),
            intent_id: get(row, "payment_intent_id")?,
            transaction_id: get(row, "payment_transaction_id")?,
            status: PaymentStatus::parse(
                &get::<Option<String>>(row, "payment_status")?.unwrap_or_default(),
            )
            .map_err(|e| corrupt(e.to_string()))?,
            client_secret: get(row, "payment_client_secret")?,
            next_action: json_opt(get(row, "payment_next_action")?)?,
            failure_code: get(row, "payment_failure_code")?,
            failure_message: get(row, "payment_failure_message")?,
        }),
    };
    let tax =
        Decimal::from_str(&get::<String>(row, "tax_rate")?).map_err(|e| corrupt(e.to_string()))?;
    let snapshot = OrderSnapshot {
        id: OrderId::from_uuid(uuid(&get::<String>(row, "id")?)?),
        customer_id: CustomerId::parse(get::<String>(row, "customer_id")?)
            .map_err(|e| corrupt(e.to_string()))?,
        state: OrderState::from_str(&get::<String>(row, "state")?)
            .map_err(|e| corrupt(e.to_string()))?,
        currency: cur,
        lines,
        tax_rate: TaxRate::new(tax).map_err(|e| corrupt(e.to_string()))?,
        shipping_cost: money(get(row, "shipping_minor")?, cur)?,
        refunded_amount: money(get(row, "refunded_minor")?, cur)?,
        reservation,
        payment,
        shipping_address: json_opt::<Address>(get(row, "shipping_address")?)?,
        billing_address: json_opt::<Address>(get(row, "billing_address")?)?,
        version: u64::try_from(get::<i64>(row, "version")?).map_err(|e| corrupt(e.to_string()))?,
        event_sequence: u32::try_from(get::<i64>(row, "event_sequence")?)
            .map_err(|e| corrupt(e.to_string()))?,
        created_at: from_ts(get(row, "created_at")?)?,
        updated_at: from_ts(get(row, "updated_at")?)?,
    };
    Ok(Order::restore(snapshot))
}
