//! Domain events: what the rest of the platform hears about an order.
//!
//! Events are raised by the order's state changes and leave the service
//! through the transactional outbox, written in the same database transaction
//! as the change that raised them.

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::currency::Currency;
use crate::money::Money;
use crate::state::OrderState;
use crate::values::{BookId, CustomerId, EventId, OrderId, RefundId};

/// A book the inventory could not supply in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnavailableItem {
    pub book_id: BookId,
    pub requested: u32,
    pub available: u32,
}

/// One line of a completed order, as the `order.completed` event carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventItem {
    pub book_id: BookId,
    pub quantity: u32,
    pub unit_price: Money,
}

/// What happened to an order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "data")]
pub enum DomainEvent {
    /// Raised by every state change, creation included (`from` is then null).
    #[serde(rename = "order.state_changed")]
    OrderStateChanged {
        from: Option<OrderState>,
        to: OrderState,
        reason: String,
    },
    /// The order is paid: the seed's `OrderCompletedEvent`.
    #[serde(rename = "order.completed")]
    OrderCompleted {
        customer_id: CustomerId,
        currency: Currency,
        total_amount: Money,
        items: Vec<EventItem>,
    },
    /// The payment was declined or failed.
    #[serde(rename = "order.payment_failed")]
    PaymentFailed { code: String, message: String },
    /// The order could not be reserved or priced.
    #[serde(rename = "order.inventory_unavailable")]
    InventoryUnavailable {
        code: String,
        message: String,
        unavailable_items: Vec<UnavailableItem>,
    },
    /// The order was cancelled.
    #[serde(rename = "order.cancelled")]
    OrderCancelled {
        previous_state: OrderState,
        reason: String,
    },
    /// Money went back to the customer (partially or in full).
    #[serde(rename = "order.refunded")]
    OrderRefunded {
        refund_id: RefundId,
        amount: Money,
        refunded_total: Money,
        fully_refunded: bool,
    },
}

impl DomainEvent {
    /// The event's type name on the wire (`order.completed`).
    pub fn event_type(&self) -> &'static str {
        match self {
            DomainEvent::OrderStateChanged { .. } => "order.state_changed",
            DomainEvent::OrderCompleted { .. } => "order.completed",
            DomainEvent::PaymentFailed { .. } => "order.payment_failed",
            DomainEvent::InventoryUnavailable { .. } => "order.inventory_unavailable",
            DomainEvent::OrderCancelled { .. } => "order.cancelled",
            DomainEvent::OrderRefunded { .. } => "order.refunded",
        }
    }
}

/// An event with what a consumer needs to order and de-duplicate it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventEnvelope {
    /// Unique; the same event published twice keeps its id.
    pub id: EventId,
    pub order_id: OrderId,
    /// 1, 2, 3… per order, in the order the events were raised.
    pub sequence: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    #[serde(flatten)]
    pub event: DomainEvent,
}

impl EventEnvelope {
    /// Builds the envelope; the id is derived from the order and sequence so
    /// that it is stable however often the event is written or published.
    pub fn new(
        order_id: OrderId,
        sequence: u32,
        occurred_at: OffsetDateTime,
        event: DomainEvent,
    ) -> Self {
        let id = EventId::from_uuid(Uuid::new_v5(&order_id.as_uuid(), &sequence.to_be_bytes()));
        Self {
            id,
            order_id,
            sequence,
            occurred_at,
            event,
        }
    }

    pub fn event_type(&self) -> &'static str {
        self.event.event_type()
    }

    /// The JSON document published to the broker; `Null` in the one case
    /// where [`Self::to_json_text`] fails.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// The same document as text, written straight from the envelope: what
    /// an outbox stores. Going through [`Self::to_json`]'s tree first built
    /// and freed a map node and a string per field, for every event of
    /// every order. Fails only for a time RFC 3339 cannot spell (a year
    /// outside 0–9999).
    pub fn to_json_text(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}
