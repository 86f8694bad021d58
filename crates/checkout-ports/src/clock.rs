//! Time and ids come through ports so tests can fix them.

use checkout_domain::{OrderId, RefundId, ReservationId};
use time::OffsetDateTime;
use uuid::Uuid;

/// The current time, UTC.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// New ids for what the checkout creates.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait IdGenerator: Send + Sync {
    /// A UUIDv7, so orders sort by creation.
    fn order_id(&self) -> OrderId;
    fn reservation_id(&self) -> ReservationId;
    fn refund_id(&self) -> RefundId;
}

/// Random/time-ordered UUIDs.
#[derive(Debug, Default, Clone, Copy)]
pub struct UuidGenerator;

impl IdGenerator for UuidGenerator {
    fn order_id(&self) -> OrderId {
        OrderId::from_uuid(Uuid::now_v7())
    }
    fn reservation_id(&self) -> ReservationId {
        ReservationId::from_uuid(Uuid::now_v7())
    }
    fn refund_id(&self) -> RefundId {
        RefundId::from_uuid(Uuid::now_v7())
    }
}
