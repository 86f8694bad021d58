//! What goes over the wire: response bodies built from domain types, and
//! request bodies decoded leniently into domain drafts so that every bad
//! field is reported by its path instead of failing on the first.

use std::str::FromStr;

use checkout_domain::{
    Address, AddressDraft, AuditEntry, CartDraft, CartItemDraft, Money, Order, OrderState,
    PaymentStatus, ReservationStatus, UnavailableItem,
};
use checkout_ports::{Refund, StockItem};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::problem::Problem;

fn money(m: Money) -> String {
    m.to_string()
}

/// An order line.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderItemDto {
    #[schema(example = "bk-0001")]
    pub book_id: String,
    pub quantity: u32,
    /// Catalog unit price (null until the order is priced).
    #[schema(example = "12.50")]
    pub unit_price: Option<String>,
    #[schema(example = "25.00")]
    pub line_total: Option<String>,
}

/// The stock held for an order.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReservationDto {
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    #[schema(value_type = String, example = "confirmed")]
    pub status: ReservationStatus,
}

/// The order's payment at its provider.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentDto {
    #[schema(example = "mock")]
    pub provider: String,
    pub intent_id: Option<String>,
    pub transaction_id: Option<String>,
    #[schema(value_type = String, example = "succeeded")]
    pub status: PaymentStatus,
    pub attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_message: Option<String>,
}

/// An order (see the API contract).
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderDto {
    pub id: String,
    pub customer_id: String,
    #[schema(value_type = String, example = "paid")]
    pub state: OrderState,
    #[schema(example = "USD")]
    pub currency: String,
    pub items: Vec<OrderItemDto>,
    #[schema(example = "25.00")]
    pub subtotal: Option<String>,
    #[schema(example = "2.00")]
    pub tax_amount: Option<String>,
    #[schema(example = "4.99")]
    pub shipping_cost: String,
    #[schema(example = "31.99")]
    pub total_amount: Option<String>,
    #[schema(example = "0.00")]
    pub refunded_amount: String,
    pub reservation: Option<ReservationDto>,
    pub payment: Option<PaymentDto>,
    #[schema(value_type = Option<Object>)]
    pub shipping_address: Option<Address>,
    #[schema(value_type = Option<Object>)]
    pub billing_address: Option<Address>,
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    /// Only when the customer must act (3-D Secure): what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub next_action: Option<Value>,
    /// Only with `next_action`: the secret the client SDK needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

impl OrderDto {
    pub fn from_order(o: &Order) -> Self {
        let totals = o.totals();
        Self {
            id: o.id().to_string(),
            customer_id: o.customer_id().to_string(),
            state: o.state(),
            currency: o.currency().code().to_owned(),
            items: o
                .lines()
                .iter()
                .map(|l| OrderItemDto {
                    book_id: l.book_id.to_string(),
                    quantity: l.quantity.get(),
                    unit_price: l.unit_price.map(money),
                    line_total: l.line_total().map(money),
                })
                .collect(),
            subtotal: totals.map(|t| money(t.subtotal)),
            tax_amount: totals.map(|t| money(t.tax_amount)),
            shipping_cost: money(o.shipping_cost()),
            total_amount: totals.map(|t| money(t.total_amount)),
            refunded_amount: money(o.refunded_amount()),
            reservation: o.reservation().map(|r| ReservationDto {
                id: r.id.to_string(),
                expires_at: r.expires_at,
                status: r.status,
            }),
            payment: o.payment().map(|p| PaymentDto {
                provider: p.provider.clone(),
                intent_id: p.intent_id.clone(),
                transaction_id: p.transaction_id.clone(),
                status: p.status,
                attempt: p.attempt,
                failure_code: p.failure_code.clone(),
                failure_message: p.failure_message.clone(),
            }),
            shipping_address: o.shipping_address().cloned(),
            billing_address: o.billing_address().cloned(),
            version: o.version(),
            created_at: o.created_at(),
            updated_at: o.updated_at(),
            next_action: None,
            client_secret: None,
        }
    }

    /// The order plus what the customer must do (202 for 3-D Secure).
    pub fn with_next_action(o: &Order) -> Self {
        let mut dto = Self::from_order(o);
        if let Some(p) = o
            .payment()
            .filter(|p| p.status == PaymentStatus::RequiresAction)
        {
            dto.next_action = p.next_action.clone();
            dto.client_secret = p.client_secret.clone();
        }
        dto
    }
}

/// A page of orders.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderListDto {
    pub orders: Vec<OrderDto>,
    pub next_cursor: Option<String>,
}

/// One audit entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryDto {
    #[schema(value_type = Option<String>)]
    pub previous_state: Option<OrderState>,
    #[schema(value_type = String)]
    pub new_state: OrderState,
    pub reason: String,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub actor: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
}

impl From<AuditEntry> for AuditEntryDto {
    fn from(e: AuditEntry) -> Self {
        Self {
            previous_state: e.previous_state,
            new_state: e.new_state,
            reason: e.reason,
            metadata: e.metadata,
            actor: e.actor,
            at: e.at,
        }
    }
}

/// An order's audit trail, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditTrailDto {
    pub entries: Vec<AuditEntryDto>,
}

/// A refund.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundDto {
    pub id: String,
    pub order_id: String,
    #[schema(example = "5.00")]
    pub amount: String,
    #[schema(example = "succeeded")]
    pub status: String,
    pub provider_refund_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<Refund> for RefundDto {
    fn from(r: Refund) -> Self {
        Self {
            id: r.id.to_string(),
            order_id: r.order_id.to_string(),
            amount: money(r.amount),
            status: r.status.as_str().to_owned(),
            provider_refund_id: r.provider_refund_id,
            created_at: r.created_at,
        }
    }
}

/// A book in the local stock.
#[derive(Debug, Serialize, ToSchema)]
pub struct StockItemDto {
    pub book_id: String,
    pub title: String,
    #[schema(example = "12.50")]
    pub price: String,
    #[schema(example = "USD")]
    pub currency: String,
    pub available: u32,
    pub reserved: u32,
}

impl From<StockItem> for StockItemDto {
    fn from(s: StockItem) -> Self {
        Self {
            book_id: s.book_id.to_string(),
            title: s.title,
            price: money(s.price),
            currency: s.price.currency().code().to_owned(),
            available: s.available,
            reserved: s.reserved,
        }
    }
}

/// The local stock.
#[derive(Debug, Serialize, ToSchema)]
pub struct StockListDto {
    pub items: Vec<StockItemDto>,
}

/// A book the inventory could not supply, as a 409 reports it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnavailableItemDto {
    pub book_id: String,
    pub requested: u32,
    pub available: u32,
}

impl From<&UnavailableItem> for UnavailableItemDto {
    fn from(u: &UnavailableItem) -> Self {
        Self {
            book_id: u.book_id.to_string(),
            requested: u.requested,
            available: u.available,
        }
    }
}

/// `POST /orders` body, documented for OpenAPI (decoded by hand, see
/// [`Fields`]).
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct PlaceOrderRequest {
    #[schema(example = "cust-42")]
    customer_id: String,
    /// ISO 4217, default USD.
    #[schema(example = "USD")]
    currency: Option<String>,
    items: Vec<PlaceOrderItem>,
    /// 0–1, default 0; a decimal string or number.
    #[schema(value_type = Option<String>, example = "0.08")]
    tax_rate: Option<String>,
    /// ≥ 0, default 0; a decimal string or number.
    #[schema(value_type = Option<String>, example = "4.99")]
    shipping_cost: Option<String>,
    #[schema(value_type = Option<Object>)]
    shipping_address: Option<Value>,
    #[schema(value_type = Option<Object>)]
    billing_address: Option<Value>,
    #[schema(value_type = Object, example = json!({"type": "card", "token": "pm_card_visa"}))]
    payment_method: Value,
}

#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct PlaceOrderItem {
    book_id: String,
    /// 1–1000.
    quantity: u32,
    /// Optional; must equal the catalog price.
    #[schema(value_type = Option<String>, example = "12.50")]
    unit_price: Option<String>,
}

/// `POST /orders/{id}/cancel` body.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct CancelRequest {
    reason: Option<String>,
}

/// `POST /orders/{id}/refunds` body.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct RefundRequest {
    /// Default: all that is left to refund.
    #[schema(value_type = Option<String>, example = "5.00")]
    amount: Option<String>,
    reason: Option<String>,
}

/// `PUT /inventory/{book_id}` body.
#[allow(dead_code)]
#[derive(Debug, ToSchema)]
pub struct StockRequest {
    available: u32,
    #[schema(value_type = String, example = "12.50")]
    price: String,
    #[schema(example = "USD")]
    currency: Option<String>,
    title: String,
}

/// Reads typed fields out of a JSON object, collecting every problem with
/// its path instead of stopping at the first.
#[derive(Debug)]
pub struct Fields<'a> {
    pub errors: &'a mut checkout_domain::ValidationErrors,
}

impl Fields<'_> {
    pub fn object<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
    ) -> Option<&'v serde_json::Map<String, Value>> {
        match value {
            Value::Object(m) => Some(m),
            _ => {
                self.errors.push(
                    if path.is_empty() { "body" } else { path },
                    "must be a JSON object",
                );
                None
            }
        }
    }

    pub fn string(
        &mut self,
        obj: &serde_json::Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Option<String> {
        match obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.errors.push(path, "must be a string");
                None
            }
        }
    }

    pub fn integer(
        &mut self,
        obj: &serde_json::Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Option<i64> {
        match obj.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => Some(i),
                None => {
                    self.errors
                        .push(path, "must be a whole number within range");
                    None
                }
            },
            Some(_) => {
                self.errors.push(path, "must be a whole number");
                None
            }
        }
    }

    /// A decimal given as a string (`"12.50"`) or a JSON number.
    pub fn decimal(
        &mut self,
        obj: &serde_json::Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Option<Decimal> {
        let text = match obj.get(key) {
            None | Some(Value::Null) => return None,
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => {
                self.errors.push(path, "must be a decimal string or number");
                return None;
            }
        };
        match Decimal::from_str(&text).or_else(|_| Decimal::from_scientific(&text)) {
            Ok(d) => Some(d),
            Err(_) => {
                self.errors
                    .push(path, "must be a decimal number such as \"12.50\"");
                None
            }
        }
    }

    fn address(&mut self, obj: &serde_json::Map<String, Value>, key: &str) -> Option<AddressDraft> {
        let value = obj.get(key)?;
        if value.is_null() {
            return None;
        }
        let a = self.object(value, key)?;
        Some(AddressDraft {
            line1: self.string(a, "line1", &format!("{key}.line1")),
            line2: self.string(a, "line2", &format!("{key}.line2")),
            city: self.string(a, "city", &format!("{key}.city")),
            region: self
                .string(a, "region", &format!("{key}.region"))
                .or_else(|| self.string(a, "state", &format!("{key}.state"))),
            postal_code: self.string(a, "postal_code", &format!("{key}.postal_code")),
            country: self.string(a, "country", &format!("{key}.country")),
        })
    }
}

/// Decodes a `POST /orders` body into a draft; type errors are collected
/// into the returned problem together with the domain's own checks.
pub fn cart_draft(body: &Value) -> Result<CartDraft, Problem> {
    let mut errors = checkout_domain::ValidationErrors::default();
    let mut f = Fields {
        errors: &mut errors,
    };
    let Some(obj) = f.object(body, "") else {
        return Err(Problem::validation(&errors));
    };
    let mut draft = CartDraft {
        customer_id: f.string(obj, "customer_id", "customer_id"),
        currency: f.string(obj, "currency", "currency"),
        tax_rate: f.decimal(obj, "tax_rate", "tax_rate"),
        shipping_cost: f.decimal(obj, "shipping_cost", "shipping_cost"),
        ..Default::default()
    };
    match obj.get("items") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("items[{i}]");
                let Some(it) = f.object(item, &path) else {
                    continue;
                };
                draft.items.push(CartItemDraft {
                    book_id: f.string(it, "book_id", &format!("{path}.book_id")),
                    quantity: f.integer(it, "quantity", &format!("{path}.quantity")),
                    unit_price: f.decimal(it, "unit_price", &format!("{path}.unit_price")),
                });
            }
        }
        Some(_) => f.errors.push("items", "must be an array"),
    }
    draft.shipping_address = f.address(obj, "shipping_address");
    draft.billing_address = f.address(obj, "billing_address");
    match obj.get("payment_method") {
        None | Some(Value::Null) => draft.payment_method_missing = true,
        Some(pm) => {
            if let Some(pm) = f.object(pm, "payment_method") {
                draft.payment_method_type = f.string(pm, "type", "payment_method.type");
                draft.payment_method_token = f.string(pm, "token", "payment_method.token");
            }
        }
    }
    // Type errors come first; the domain then checks values. Reporting both
    // at once would repeat a field (a wrong-typed field is also "missing").
    if !errors.is_empty() {
        return Err(Problem::validation(&errors));
    }
    Ok(draft)
}
