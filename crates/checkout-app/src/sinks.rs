//! The embedded default's event sink: one structured log line per event.
//!
//! It goes through the same relay as Kafka, so the outbox, ordering and
//! retry behaviour are the same whichever sink is configured.

use async_trait::async_trait;
use checkout_ports::{EventSink, OutboxRecord, SinkError};

/// Relays events to the log (target `checkout::events`).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogSink;

#[async_trait]
impl EventSink for LogSink {
    fn name(&self) -> &str {
        "log"
    }

    async fn publish(&self, batch: &[OutboxRecord]) -> Vec<Result<(), SinkError>> {
        batch
            .iter()
            .map(|r| {
                tracing::info!(
                    target: "checkout::events",
                    event_id = %r.id,
                    order_id = %r.order_id,
                    sequence = r.sequence,
                    event_type = %r.event_type,
                    payload = %r.payload,
                    "event published"
                );
                Ok(())
            })
            .collect()
    }
}
