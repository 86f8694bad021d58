//! `IdempotencyStore`: the first request with a key claims it (insert-or-
//! ignore on the `(scope, key)` primary key); later ones replay its
//! response, wait, or are told the key was used for another request.

use async_trait::async_trait;
use checkout_domain::IdempotencyKey;
use checkout_ports::{IdempotencyBegin, IdempotencyError, IdempotencyStore, StoredResponse};
use sea_orm::EntityTrait;
use time::OffsetDateTime;
use tracing::debug;

use crate::SeaOrmStore;
use crate::entity::idempotency_keys;
use crate::error::DbResultExt;
use crate::sql::{Sql, micros};

/// How often `begin` re-reads a key that changed under it (completed,
/// abandoned or taken over between two statements) before giving up.
const BEGIN_ATTEMPTS: usize = 3;

fn stored_response(row: &idempotency_keys::Model) -> Result<StoredResponse, IdempotencyError> {
    let status = row
        .response_status
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| IdempotencyError::Unexpected("completed key without a status".into()))?;
    let headers: Vec<(String, String)> = match &row.response_headers {
        Some(h) => serde_json::from_str(h)
            .map_err(|e| IdempotencyError::Unexpected(format!("stored headers: {e}")))?,
        None => Vec::new(),
    };
    Ok(StoredResponse {
        status,
        headers,
        body: row.response_body.clone().unwrap_or_default(),
    })
}

#[async_trait]
impl IdempotencyStore for SeaOrmStore {
    async fn begin(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &str,
        now: OffsetDateTime,
        stale_before: OffsetDateTime,
    ) -> Result<IdempotencyBegin, IdempotencyError> {
        let backend = self.db_backend();
        for _ in 0..BEGIN_ATTEMPTS {
            let mut claim = Sql::new(
                "INSERT INTO idempotency_keys (scope, key, fingerprint, status, created_at, \
                 locked_at) VALUES ",
            );
            claim
                .tuple([
                    scope.into(),
                    key.as_str().into(),
                    fingerprint.into(),
                    "in_flight".into(),
                    micros(now).into(),
                    micros(now).into(),
                ])
                .push(" ON CONFLICT (scope, key) DO NOTHING");
            if self.exec_write(claim.build(backend)).await.idem()? == 1 {
                return Ok(IdempotencyBegin::Started);
            }
            let Some(row) =
                idempotency_keys::Entity::find_by_id((scope.to_owned(), key.as_str().to_owned()))
                    .one(&self.reader)
                    .await
                    .idem()?
            else {
                // Abandoned between our insert and this read: claim again.
                continue;
            };
            if row.fingerprint != fingerprint {
                return Ok(IdempotencyBegin::Mismatch);
            }
            if row.status == "completed" {
                return Ok(IdempotencyBegin::Replay(stored_response(&row)?));
            }
            if row.locked_at >= micros(stale_before) {
                return Ok(IdempotencyBegin::InFlight);
            }
            // The holder died: take the key over, compare-and-set on the
            // claim we saw, so only one of several retries wins it.
            let mut take = Sql::new("UPDATE idempotency_keys SET locked_at = ");
            take.bind(micros(now))
                .push(" WHERE status = 'in_flight' AND scope = ")
                .bind(scope)
                .push(" AND key = ")
                .bind(key.as_str())
                .push(" AND locked_at = ")
                .bind(row.locked_at);
            if self.exec_write(take.build(backend)).await.idem()? == 1 {
                debug!(scope, "took over a stale idempotency key");
                return Ok(IdempotencyBegin::Started);
            }
            // Someone else changed it first: look again.
        }
        Ok(IdempotencyBegin::InFlight)
    }

    async fn complete(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        response: &StoredResponse,
    ) -> Result<(), IdempotencyError> {
        let headers = serde_json::to_string(&response.headers)
            .map_err(|e| IdempotencyError::Unexpected(e.to_string()))?;
        let mut sql =
            Sql::new("UPDATE idempotency_keys SET status = 'completed', response_status = ");
        sql.bind(i64::from(response.status))
            .push(", response_headers = ")
            .bind(headers)
            .push(", response_body = ")
            .bind(response.body.clone())
            .push(" WHERE scope = ")
            .bind(scope)
            .push(" AND key = ")
            .bind(key.as_str());
        self.exec_write(sql.build(self.db_backend())).await.idem()?;
        Ok(())
    }

    async fn abandon(&self, scope: &str, key: &IdempotencyKey) -> Result<(), IdempotencyError> {
        let mut sql =
            Sql::new("DELETE FROM idempotency_keys WHERE status = 'in_flight' AND scope = ");
        sql.bind(scope).push(" AND key = ").bind(key.as_str());
        self.exec_write(sql.build(self.db_backend())).await.idem()?;
        Ok(())
    }

    async fn purge(&self, created_before: OffsetDateTime) -> Result<u64, IdempotencyError> {
        let mut sql = Sql::new("DELETE FROM idempotency_keys WHERE created_at < ");
        sql.bind(micros(created_before));
        self.exec_write(sql.build(self.db_backend())).await.idem()
    }
}
