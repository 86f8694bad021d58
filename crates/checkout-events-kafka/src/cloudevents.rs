//! The CloudEvents Kafka protocol binding, binary content mode: the event's
//! attributes travel as `ce_*` message headers and the message value is the
//! event data, here the whole JSON envelope (`docs/events.md`).
//!
//! Binary mode lets a consumer route or filter on `ce_type` without parsing
//! the value, while a consumer that ignores headers still finds every field
//! (id, type, order, sequence, time) in the JSON itself.

use checkout_ports::{OutboxRecord, SinkError};
use time::format_description::well_known::Rfc3339;

/// `ce_specversion`: the CloudEvents version the headers follow.
pub const SPEC_VERSION: &str = "1.0";
/// The `content-type` header: the binding's mapping of `datacontenttype`.
pub const CONTENT_TYPE: &str = "application/json";

/// Header names, as the Kafka binding spells them.
pub mod header {
    pub const SPEC_VERSION: &str = "ce_specversion";
    pub const ID: &str = "ce_id";
    pub const SOURCE: &str = "ce_source";
    pub const TYPE: &str = "ce_type";
    pub const TIME: &str = "ce_time";
    /// Optional CloudEvents attribute: the order the event is about, so a
    /// consumer can tell without the key or the value.
    pub const SUBJECT: &str = "ce_subject";
    pub const CONTENT_TYPE: &str = "content-type";
}

/// The headers of one event, in the order they are written.
///
/// `ce_id` is the outbox event id, which is derived from the order id and
/// the per-order sequence: a re-published event carries the same id, which is
/// how consumers recognise a duplicate.
pub fn headers(
    record: &OutboxRecord,
    source: &str,
) -> Result<Vec<(&'static str, String)>, SinkError> {
    let time = record.occurred_at.format(&Rfc3339).map_err(|e| {
        SinkError::Rejected(format!(
            "event {} has a time that RFC 3339 cannot express: {e}",
            record.id
        ))
    })?;
    Ok(vec![
        (header::SPEC_VERSION, SPEC_VERSION.to_owned()),
        (header::ID, record.id.to_string()),
        (header::SOURCE, source.to_owned()),
        (header::TYPE, record.event_type.clone()),
        (header::TIME, time),
        (header::SUBJECT, record.order_id.to_string()),
        (header::CONTENT_TYPE, CONTENT_TYPE.to_owned()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkout_domain::{EventId, OrderId};
    use time::macros::datetime;

    #[test]
    fn binary_mode_headers() {
        let order_id = OrderId::parse("01953a4e-7c3b-7d2a-9f10-4b6c1e2d3a40").unwrap();
        let id = EventId::parse("5a0c7f0e-8f7e-5f8a-9c55-0d4c2b1a7e11").unwrap();
        let record = OutboxRecord {
            id,
            order_id,
            sequence: 3,
            event_type: "order.completed".into(),
            payload: serde_json::json!({}),
            occurred_at: datetime!(2026-03-14 09:26:53.5 UTC),
            attempts: 0,
        };
        let h = headers(&record, "/bookverse/checkout").unwrap();
        let get = |k: &str| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("ce_specversion"), Some("1.0"));
        assert_eq!(get("ce_id"), Some("5a0c7f0e-8f7e-5f8a-9c55-0d4c2b1a7e11"));
        assert_eq!(get("ce_source"), Some("/bookverse/checkout"));
        assert_eq!(get("ce_type"), Some("order.completed"));
        assert_eq!(get("ce_time"), Some("2026-03-14T09:26:53.5Z"));
        assert_eq!(
            get("ce_subject"),
            Some("01953a4e-7c3b-7d2a-9f10-4b6c1e2d3a40")
        );
        assert_eq!(get("content-type"), Some("application/json"));
    }
}
