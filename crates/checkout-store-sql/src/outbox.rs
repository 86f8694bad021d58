//! `OutboxStore` over `outbox_events`.
//!
//! Claims are leases (`claimed_until`), so a relay that dies mid-batch
//! loses nothing: its events become claimable again when the lease ends. On
//! PostgreSQL, claims from several relay instances are serialised by a
//! transaction-scoped advisory lock, so that no relay can claim an order's
//! later event while another holds an earlier one.

use async_trait::async_trait;
use checkout_domain::{EventId, OrderId};
use checkout_ports::{OutboxRecord, OutboxStats, OutboxStore, RepositoryError};
use sea_orm::{DbErr, QueryResult, TransactionTrait};
use time::OffsetDateTime;

use crate::convert::{self, get, i, opt_s, s, ts};
use crate::{SqlStore, error, placeholders};

/// The advisory lock key of outbox claims (any constant unique to us).
const CLAIM_LOCK: i64 = 0x0b00_c4ec;

fn record(row: &QueryResult) -> Result<OutboxRecord, DbErr> {
    Ok(OutboxRecord {
        id: EventId::from_uuid(convert::uuid(&get::<String>(row, "id")?)?),
        order_id: OrderId::from_uuid(convert::uuid(&get::<String>(row, "order_id")?)?),
        sequence: u32::try_from(get::<i64>(row, "sequence")?)
            .map_err(|e| convert::corrupt(e.to_string()))?,
        event_type: get(row, "event_type")?,
        payload: serde_json::from_str(&get::<String>(row, "payload")?)
            .map_err(|e| convert::corrupt(e.to_string()))?,
        occurred_at: convert::from_ts(get(row, "occurred_at")?)?,
        attempts: u32::try_from(get::<i64>(row, "attempts")?).unwrap_or(u32::MAX),
    })
}

#[async_trait]
impl OutboxStore for SqlStore {
    async fn claim_batch(
        &self,
        limit: u32,
        now: OffsetDateTime,
        lease_seconds: u32,
    ) -> Result<Vec<OutboxRecord>, RepositoryError> {
        let tx = self.db.begin().await.map_err(error::repo)?;
        if self.pg {
            self.exec(&tx, "SELECT pg_advisory_xact_lock(?)", vec![i(CLAIM_LOCK)])
                .await
                .map_err(error::repo)?;
        }
        let n = i(ts(now));
        // Claimable: unpublished, unparked, not leased, retry time come, and
        // no earlier event of its order held back (leased elsewhere or
        // waiting for its retry). An order's earlier claimable events sort
        // first, so they are in the same batch whenever a later one is.
        let rows = self
            .all(
                &tx,
                "SELECT id, order_id, sequence, event_type, payload, occurred_at, attempts FROM outbox_events o \
                 WHERE published_at IS NULL AND parked_at IS NULL \
                 AND (claimed_until IS NULL OR claimed_until <= ?) AND (next_attempt_at IS NULL OR next_attempt_at <= ?) \
                 AND NOT EXISTS (SELECT 1 FROM outbox_events p WHERE p.order_id = o.order_id AND p.sequence < o.sequence \
                     AND p.published_at IS NULL AND p.parked_at IS NULL \
                     AND ((p.claimed_until IS NOT NULL AND p.claimed_until > ?) OR (p.next_attempt_at IS NOT NULL AND p.next_attempt_at > ?))) \
                 ORDER BY occurred_at, order_id, sequence LIMIT ?",
                vec![n.clone(), n.clone(), n.clone(), n, i(i64::from(limit))],
            )
            .await
            .map_err(error::repo)?;
        let records = rows
            .iter()
            .map(record)
            .collect::<Result<Vec<_>, _>>()
            .map_err(error::repo)?;
        if !records.is_empty() {
            let until = ts(now) + i64::from(lease_seconds) * 1_000_000;
            let mut values = vec![i(until)];
            values.extend(records.iter().map(|r| s(r.id.to_string())));
            self.exec(
                &tx,
                &format!(
                    "UPDATE outbox_events SET claimed_until = ? WHERE id IN ({})",
                    placeholders(records.len())
                ),
                values,
            )
            .await
            .map_err(error::repo)?;
        }
        tx.commit().await.map_err(error::repo)?;
        Ok(records)
    }

    async fn mark_published(
        &self,
        ids: &[EventId],
        at: OffsetDateTime,
    ) -> Result<(), RepositoryError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut values = vec![i(ts(at))];
        values.extend(ids.iter().map(|id| s(id.to_string())));
        self.exec(
            &self.db,
            &format!(
                "UPDATE outbox_events SET published_at = ?, claimed_until = NULL WHERE id IN ({})",
                placeholders(ids.len())
            ),
            values,
        )
        .await
        .map_err(error::repo)?;
        Ok(())
    }

    async fn record_failure(
        &self,
        id: EventId,
        err: &str,
        park: bool,
        retry_at: OffsetDateTime,
    ) -> Result<(), RepositoryError> {
        let parked_at = if park { Some(ts(retry_at)) } else { None };
        self.exec(
            &self.db,
            "UPDATE outbox_events SET attempts = attempts + 1, last_error = ?, parked_at = ?, claimed_until = NULL, next_attempt_at = ? WHERE id = ?",
            vec![opt_s(Some(err.chars().take(1000).collect::<String>())), sea_orm::Value::from(parked_at), i(ts(retry_at)), s(id.to_string())],
        )
        .await
        .map_err(error::repo)?;
        Ok(())
    }

    async fn purge_published(&self, before: OffsetDateTime) -> Result<u64, RepositoryError> {
        let r = self
            .exec(
                &self.db,
                "DELETE FROM outbox_events WHERE published_at IS NOT NULL AND published_at < ?",
                vec![i(ts(before))],
            )
            .await
            .map_err(error::repo)?;
        Ok(r.rows_affected())
    }

    async fn stats(&self, now: OffsetDateTime) -> Result<OutboxStats, RepositoryError> {
        let row = self
            .one(
                &self.db,
                "SELECT \
                   (SELECT COUNT(*) FROM outbox_events WHERE published_at IS NULL AND parked_at IS NULL) AS pending, \
                   (SELECT COUNT(*) FROM outbox_events WHERE parked_at IS NOT NULL) AS parked, \
                   (SELECT MIN(occurred_at) FROM outbox_events WHERE published_at IS NULL AND parked_at IS NULL) AS oldest",
                vec![],
            )
            .await
            .map_err(error::repo)?;
        let Some(row) = row else {
            return Ok(OutboxStats::default());
        };
        let pending: i64 = get(&row, "pending").map_err(error::repo)?;
        let parked: i64 = get(&row, "parked").map_err(error::repo)?;
        let oldest: Option<i64> = get(&row, "oldest").map_err(error::repo)?;
        Ok(OutboxStats {
            pending: u64::try_from(pending).unwrap_or(0),
            parked: u64::try_from(parked).unwrap_or(0),
            oldest_pending_seconds: oldest
                .map(|o| ((ts(now) - o) as f64 / 1e6).max(0.0))
                .unwrap_or(0.0),
        })
    }
}
