//! The transactional outbox and the sinks it is relayed to.
//!
//! Events are written to the outbox by `OrderRepository` in the same
//! transaction as the change that raised them; a relay later claims them,
//! hands them to an `EventSink` (Kafka, the log) and marks them published.

use async_trait::async_trait;
use checkout_domain::{EventId, OrderId};
use time::OffsetDateTime;

use crate::repository::RepositoryError;

/// An event waiting in (or relayed from) the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub id: EventId,
    pub order_id: OrderId,
    /// Per-order sequence (1, 2, …).
    pub sequence: u32,
    /// `order.completed`, …
    pub event_type: String,
    /// The whole envelope as JSON (what consumers receive).
    pub payload: serde_json::Value,
    pub occurred_at: OffsetDateTime,
    /// Failed publish attempts so far.
    pub attempts: u32,
}

impl OutboxRecord {
    /// How the relay refers to this event when it reports back.
    pub fn key(&self) -> OutboxKey {
        OutboxKey {
            order_id: self.order_id,
            sequence: self.sequence,
        }
    }
}

/// An outbox event as the relay reports on it: its order and its place in
/// the order's sequence, which together determine its id.
///
/// Stores key the outbox this way rather than by event id: an event id is
/// a hash (stable, for consumers to de-duplicate on), and an index on
/// hashes puts every new event on a random page, where order ids grow with
/// time and keep an order's events together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OutboxKey {
    pub order_id: OrderId,
    pub sequence: u32,
}

/// How far behind the relay is.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OutboxStats {
    pub pending: u64,
    pub parked: u64,
    /// Age of the oldest unpublished event, in seconds (0 when none).
    pub oldest_pending_seconds: f64,
}

/// The outbox side the relay works on.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Hands out up to `limit` unpublished, unparked events, in per-order
    /// sequence order; never an event while an earlier event of its order
    /// is still unpublished and unparked, nor one whose retry time has not
    /// come. For `lease_seconds`, unless marked published or failed first,
    /// no relay is handed them again. A store may also hand one relay
    /// instance at a time all of the work: the SQL store leases the whole
    /// outbox to one instance for `lease_seconds`, renewed as it works, and
    /// hands the others nothing meanwhile.
    async fn claim_batch(
        &self,
        limit: u32,
        now: OffsetDateTime,
        lease_seconds: u32,
    ) -> Result<Vec<OutboxRecord>, RepositoryError>;

    /// Marks events published.
    async fn mark_published(
        &self,
        events: &[OutboxKey],
        at: OffsetDateTime,
    ) -> Result<(), RepositoryError>;

    /// Records a failed attempt; `park` sets the event aside for good (a
    /// poison event), otherwise it is retried after `retry_at`.
    async fn record_failure(
        &self,
        event: OutboxKey,
        error: &str,
        park: bool,
        retry_at: OffsetDateTime,
    ) -> Result<(), RepositoryError>;

    /// Deletes events published before `before`; returns how many.
    async fn purge_published(&self, before: OffsetDateTime) -> Result<u64, RepositoryError>;

    async fn stats(&self, now: OffsetDateTime) -> Result<OutboxStats, RepositoryError>;
}

/// Why a sink could not publish an event.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SinkError {
    /// The broker is unreachable or timed out: retry later.
    #[error("sink unavailable: {0}")]
    Unavailable(String),
    /// The broker refused this event for good (too large, invalid): retrying
    /// will not help.
    #[error("event rejected: {0}")]
    Rejected(String),
}

/// Where relayed events go.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait EventSink: Send + Sync {
    fn name(&self) -> &str;

    /// Publishes a batch; one result per record, in the batch's order.
    async fn publish(&self, batch: &[OutboxRecord]) -> Vec<Result<(), SinkError>>;
}
