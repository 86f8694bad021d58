//! `Idempotency-Key` handling: a repeated request replays the first
//! response; the same key with another body is refused; the same key while
//! the first request runs is refused. Keys are scoped so that two callers'
//! keys never collide: per token subject when authentication is on (and per
//! order for refunds), per customer for orders and per order for refunds
//! when it is off. The scopes are built by
//! [`Caller::orders_scope`](crate::auth::Caller::orders_scope) and
//! [`Caller::refunds_scope`](crate::auth::Caller::refunds_scope).

use std::future::Future;

use actix_web::HttpRequest;
use actix_web::http::StatusCode;
use checkout_domain::IdempotencyKey;
use checkout_ports::IdempotencyBegin;
use sha2::{Digest, Sha256};

use crate::problem::Problem;
use crate::reply::Reply;
use crate::state::AppState;

pub const HEADER: &str = "Idempotency-Key";
pub const REPLAYED: &str = "Idempotent-Replayed";

/// The request's key, if it sent one; an invalid key is a 422.
pub fn key_of(req: &HttpRequest) -> Result<Option<IdempotencyKey>, Problem> {
    let Some(raw) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let text = raw
        .to_str()
        .map_err(|_| Problem::field(HEADER, "must be printable ASCII"))?;
    IdempotencyKey::parse(text)
        .map(Some)
        .map_err(|e| Problem::field(HEADER, e.to_string()))
}

/// A fingerprint of the request: the same body (as JSON, whatever its
/// whitespace or key order) gives the same fingerprint.
pub fn fingerprint(method: &str, path: &str, body: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update(b" ");
    h.update(path.as_bytes());
    h.update(b"\n");
    h.update(serde_json::to_vec(body).unwrap_or_default());
    hex::encode(h.finalize())
}

/// Runs `work` at most once per (scope, key); replays its reply afterwards.
/// A 5xx reply is not kept, so the client's retry runs again.
pub async fn run_once<F, Fut>(
    state: &AppState,
    scope: &str,
    key: &IdempotencyKey,
    fingerprint: &str,
    work: F,
) -> Reply
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Reply>,
{
    let now = state.clock.now();
    let stale_before = now - state.settings.idempotency_in_flight_timeout;
    let begun = state
        .idempotency
        .begin(scope, key, fingerprint, now, stale_before)
        .await;
    match begun {
        Ok(IdempotencyBegin::Started) => {}
        Ok(IdempotencyBegin::Replay(stored)) => {
            return Reply::from_stored(stored).header(REPLAYED, "true".into());
        }
        Ok(IdempotencyBegin::InFlight) => {
            return Problem::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_use",
                "Idempotency key in use",
                "a request with this Idempotency-Key is still being processed; retry shortly",
            )
            .into();
        }
        Ok(IdempotencyBegin::Mismatch) => {
            return Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency key reused",
                "this Idempotency-Key was used with a different request",
            )
            .into();
        }
        Err(e) => {
            tracing::warn!(error = %e, "idempotency store unavailable");
            return Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "Service unavailable",
                "retry later",
            )
            .into();
        }
    }
    let reply = work().await;
    let kept = if reply.status.is_server_error() {
        state.idempotency.abandon(scope, key).await
    } else {
        state
            .idempotency
            .complete(scope, key, &reply.to_stored())
            .await
    };
    if let Err(e) = kept {
        // The work is done; failing to remember it only costs a replay.
        tracing::warn!(error = %e, scope, "recording the idempotent response failed");
    }
    reply
}
