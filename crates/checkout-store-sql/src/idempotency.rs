//! `IdempotencyStore` over `idempotency_keys`.

use async_trait::async_trait;
use checkout_domain::IdempotencyKey;
use checkout_ports::{IdempotencyBegin, IdempotencyError, IdempotencyStore, StoredResponse};
use sea_orm::Value;
use time::OffsetDateTime;

use crate::SqlStore;
use crate::convert::{get, i, s, ts};
use crate::error;

#[async_trait]
impl IdempotencyStore for SqlStore {
    async fn begin(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &str,
        now: OffsetDateTime,
        stale_before: OffsetDateTime,
    ) -> Result<IdempotencyBegin, IdempotencyError> {
        let (sc, k) = (s(scope), s(key.as_str()));
        // The insert is the claim: of concurrent first requests exactly one
        // inserts; the others see its row.
        let claimed = self
            .exec(
                &self.db,
                "INSERT INTO idempotency_keys (scope, key, fingerprint, created_at, locked_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope, key) DO NOTHING",
                vec![sc.clone(), k.clone(), s(fingerprint), i(ts(now)), i(ts(now))],
            )
            .await
            .map_err(error::idempotency)?;
        if claimed.rows_affected() == 1 {
            return Ok(IdempotencyBegin::Started);
        }
        let Some(row) = self
            .one(
                &self.db,
                "SELECT fingerprint, response_status, response_headers, response_body, locked_at FROM idempotency_keys WHERE scope = ? AND key = ?",
                vec![sc.clone(), k.clone()],
            )
            .await
            .map_err(error::idempotency)?
        else {
            // Purged in between: treat as new on the client's retry.
            return Ok(IdempotencyBegin::InFlight);
        };
        let read = |e: sea_orm::DbErr| IdempotencyError::Unexpected(e.to_string());
        if get::<String>(&row, "fingerprint").map_err(read)? != fingerprint {
            return Ok(IdempotencyBegin::Mismatch);
        }
        if let Some(status) = get::<Option<i64>>(&row, "response_status").map_err(read)? {
            let headers: Vec<(String, String)> = serde_json::from_str(
                &get::<Option<String>>(&row, "response_headers")
                    .map_err(read)?
                    .unwrap_or_default(),
            )
            .unwrap_or_default();
            let body: Vec<u8> = get::<Option<Vec<u8>>>(&row, "response_body")
                .map_err(read)?
                .unwrap_or_default();
            return Ok(IdempotencyBegin::Replay(StoredResponse {
                status: u16::try_from(status).unwrap_or(500),
                headers,
                body,
            }));
        }
        let locked_at: i64 = get(&row, "locked_at").map_err(read)?;
        if locked_at < ts(stale_before) {
            let took = self
                .exec(
                    &self.db,
                    "UPDATE idempotency_keys SET locked_at = ? WHERE scope = ? AND key = ? AND locked_at = ? AND response_status IS NULL",
                    vec![i(ts(now)), sc, k, i(locked_at)],
                )
                .await
                .map_err(error::idempotency)?;
            if took.rows_affected() == 1 {
                return Ok(IdempotencyBegin::Started);
            }
        }
        Ok(IdempotencyBegin::InFlight)
    }

    async fn complete(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        response: &StoredResponse,
    ) -> Result<(), IdempotencyError> {
        let headers = serde_json::to_string(&response.headers).unwrap_or_else(|_| "[]".into());
        self.exec(
            &self.db,
            "UPDATE idempotency_keys SET response_status = ?, response_headers = ?, response_body = ? WHERE scope = ? AND key = ?",
            vec![i(i64::from(response.status)), s(headers), Value::from(response.body.clone()), s(scope), s(key.as_str())],
        )
        .await
        .map_err(error::idempotency)?;
        Ok(())
    }

    async fn abandon(&self, scope: &str, key: &IdempotencyKey) -> Result<(), IdempotencyError> {
        self.exec(
            &self.db,
            "DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND response_status IS NULL",
            vec![s(scope), s(key.as_str())],
        )
        .await
        .map_err(error::idempotency)?;
        Ok(())
    }

    async fn purge(&self, created_before: OffsetDateTime) -> Result<u64, IdempotencyError> {
        let r = self
            .exec(
                &self.db,
                "DELETE FROM idempotency_keys WHERE created_at < ?",
                vec![i(ts(created_before))],
            )
            .await
            .map_err(error::idempotency)?;
        Ok(r.rows_affected())
    }
}
