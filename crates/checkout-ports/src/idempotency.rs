//! Idempotency keys: a repeated request replays the first response.

use async_trait::async_trait;
use checkout_domain::IdempotencyKey;
use time::OffsetDateTime;

/// A response kept for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    /// Headers worth replaying (`Location`, `Content-Type`).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What `begin` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// The key is new (or its earlier holder was abandoned): go ahead, then
    /// `complete` or `abandon`.
    Started,
    /// The same request already completed: replay this.
    Replay(StoredResponse),
    /// The same key is being processed right now.
    InFlight,
    /// The key was used with a different request.
    Mismatch,
}

/// Idempotency store failures.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The store cannot be reached; the request must not proceed.
    #[error("idempotency store unavailable: {0}")]
    Unavailable(String),
    #[error("unexpected idempotency store error: {0}")]
    Unexpected(String),
}

/// Keeps keys (scoped, e.g. per customer) with the request's fingerprint and,
/// once done, its response — for at least the retention the service sets.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` in `scope` for a request with `fingerprint`. An in-flight
    /// claim older than `stale_before` is taken over (its holder died).
    async fn begin(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &str,
        now: OffsetDateTime,
        stale_before: OffsetDateTime,
    ) -> Result<IdempotencyBegin, IdempotencyError>;

    /// Stores the response of a started request.
    async fn complete(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        response: &StoredResponse,
    ) -> Result<(), IdempotencyError>;

    /// Drops a started claim whose request failed in a way not worth
    /// replaying (a 5xx), so a retry runs again.
    async fn abandon(&self, scope: &str, key: &IdempotencyKey) -> Result<(), IdempotencyError>;

    /// Deletes keys created before `created_before`; returns how many.
    async fn purge(&self, created_before: OffsetDateTime) -> Result<u64, IdempotencyError>;
}
