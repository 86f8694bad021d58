//! `OutboxStore`: the relay's side of the transactional outbox.
//!
//! Claiming is a lease (`claimed_until`): a relay that dies leaves its
//! events to be claimed again when the lease runs out. Per-order order is
//! the rule everything else bends to: an event is handed out only when
//! every earlier pending event of its order is handed out with it, so no
//! two relays ever hold events of one order at once and no event overtakes
//! an earlier one. On PostgreSQL candidates are locked `FOR UPDATE SKIP
//! LOCKED`, so concurrent relays split the backlog instead of waiting on
//! each other. On a SQLite file the candidates are read on a read
//! connection and leased by a compare-and-set in the ledger thread's next
//! group, which commits only if every one is still claimable; otherwise
//! (and on an in-memory database) the single writer serialises claims.

use std::collections::HashMap;

use async_trait::async_trait;
use checkout_ports::{OutboxKey, OutboxRecord, OutboxStats, OutboxStore, RepositoryError};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Value};
use time::OffsetDateTime;
use tracing::{debug, instrument};
use uuid::Uuid;

use crate::SeaOrmStore;
use crate::convert::{self, corrupt};
use crate::entity::outbox;
use crate::error::DbResultExt;
use crate::sql::{Sql, from_micros, micros};

/// A claimable event, with how many pending events of its order come
/// before it.
#[derive(Debug, FromQueryResult)]
struct Candidate {
    id: Uuid,
    order_id: Uuid,
    sequence: i64,
    event_type: String,
    payload: String,
    occurred_at: i64,
    attempts: i64,
    pending_before: i64,
}

/// Keeps, per order, only the run of candidates that starts at the order's
/// first pending event and has no gap: candidate `i` of an order (in
/// sequence order) is kept only when exactly `i` pending events precede it
/// — i.e. all of them are in the batch too.
fn without_gaps(candidates: Vec<Candidate>) -> Vec<Candidate> {
    let mut taken: HashMap<Uuid, i64> = HashMap::new();
    let mut blocked: Vec<Uuid> = Vec::new();
    let mut out = Vec::with_capacity(candidates.len());
    for c in candidates {
        if blocked.contains(&c.order_id) {
            continue;
        }
        let n = taken.entry(c.order_id).or_insert(0);
        if c.pending_before == *n {
            *n += 1;
            out.push(c);
        } else {
            blocked.push(c.order_id);
        }
    }
    out
}

/// Appends a condition that holds for exactly the events `keys` (order,
/// sequence). That pair is the outbox's primary key, so each event is one
/// index probe whatever the planner's statistics say. PostgreSQL turns a
/// row-value `IN` list into one probe per row; SQLite takes row values on
/// the right of `IN` only from a subquery, and probes the key with each row
/// of a `VALUES` list.
fn push_keys(sql: &mut Sql, backend: DbBackend, keys: impl IntoIterator<Item = (Uuid, i64)>) {
    let rows = keys
        .into_iter()
        .map(|(order_id, sequence)| vec![Value::from(order_id), Value::from(sequence)]);
    sql.push("(order_id, sequence) IN (");
    if backend == DbBackend::Sqlite {
        sql.push("VALUES ");
    }
    sql.rows(rows).push(")");
}

fn key_values(key: &OutboxKey) -> (Uuid, i64) {
    (key.order_id.as_uuid(), i64::from(key.sequence))
}

fn record(c: &Candidate) -> Result<OutboxRecord, RepositoryError> {
    convert::outbox_record(&outbox::Model {
        id: c.id,
        order_id: c.order_id,
        sequence: c.sequence,
        event_type: c.event_type.clone(),
        payload: c.payload.clone(),
        occurred_at: c.occurred_at,
        published_at: None,
        attempts: c.attempts,
        last_error: None,
        parked_at: None,
        claimed_until: None,
        next_attempt_at: None,
    })
}

impl SeaOrmStore {
    /// The claimable events, oldest order first (locked on PostgreSQL).
    /// Pending = unpublished and unparked. A candidate must be claimable
    /// (no live lease, retry time come) and have no earlier pending event
    /// of its order that is not claimable; `pending_before` lets
    /// `without_gaps` drop those whose earlier events another relay is
    /// locking right now.
    ///
    /// Both look-backs are correlated counts over the order's few earlier
    /// events, an index probe per candidate. The "none held" check was a
    /// `NOT EXISTS`, which PostgreSQL may flatten into an anti-join; on
    /// tables without statistics yet (a fresh database under load) it then
    /// rescanned every pending event for each candidate — 0.7 s a pass
    /// with 10,000 pending, so the relay fell further behind with every
    /// pass. An aggregate in a sublink is never flattened.
    fn candidates(&self, limit: u32, now: OffsetDateTime) -> sea_orm::Statement {
        let mut sql = Sql::new("");
        let now_p = sql.param(micros(now));
        sql.push(&format!(
            "SELECT o.id, o.order_id, o.sequence, o.event_type, o.payload, o.occurred_at, \
             o.attempts, \
             (SELECT COUNT(*) FROM outbox p WHERE p.order_id = o.order_id \
               AND p.sequence < o.sequence AND p.published_at IS NULL AND p.parked_at IS NULL) \
               AS pending_before \
             FROM outbox o \
             WHERE o.published_at IS NULL AND o.parked_at IS NULL \
             AND (o.claimed_until IS NULL OR o.claimed_until <= {now_p}) \
             AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= {now_p}) \
             AND (SELECT COUNT(*) FROM outbox p WHERE p.order_id = o.order_id \
               AND p.sequence < o.sequence AND p.published_at IS NULL AND p.parked_at IS NULL \
               AND ((p.claimed_until IS NOT NULL AND p.claimed_until > {now_p}) \
                 OR (p.next_attempt_at IS NOT NULL AND p.next_attempt_at > {now_p}))) = 0 \
             ORDER BY o.order_id, o.sequence LIMIT "
        ))
        .bind(i64::from(limit));
        if self.is_postgres() {
            sql.push(" FOR UPDATE OF o SKIP LOCKED");
        }
        sql.build(self.db_backend())
    }

    /// The events a claim may take now, read on `conn`: the candidates,
    /// without those behind an earlier event held elsewhere.
    async fn claimable<C: ConnectionTrait>(
        &self,
        conn: &C,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<Vec<Candidate>, RepositoryError> {
        let candidates = Candidate::find_by_statement(self.candidates(limit, now))
            .all(conn)
            .await
            .repo()?;
        Ok(without_gaps(candidates))
    }

    /// Leases `batch` until `until`: each event only while it is still
    /// claimable at `now`, so the rows changed say whether all of it was.
    ///
    /// "Pending" is spelt `COALESCE(published_at, parked_at) IS NULL` so
    /// that it does not imply `outbox_unpublished`'s predicate. On a table
    /// without statistics PostgreSQL guesses that partial index holds a
    /// handful of rows and would read all of it — the whole backlog — in
    /// place of one probe of the key per event.
    fn claim(
        &self,
        batch: &[Candidate],
        now: OffsetDateTime,
        until: OffsetDateTime,
    ) -> sea_orm::Statement {
        let mut claim = Sql::new("UPDATE outbox SET claimed_until = ");
        claim.bind(micros(until));
        let now_p = claim.param(micros(now));
        claim.push(&format!(
            " WHERE COALESCE(published_at, parked_at) IS NULL \
                 AND (claimed_until IS NULL OR claimed_until <= {now_p}) \
                 AND (next_attempt_at IS NULL OR next_attempt_at <= {now_p}) AND "
        ));
        push_keys(
            &mut claim,
            self.db_backend(),
            batch.iter().map(|c| (c.order_id, c.sequence)),
        );
        claim.build(self.db_backend())
    }

    /// Marks `events` published at `at`.
    fn published(&self, events: &[OutboxKey], at: OffsetDateTime) -> sea_orm::Statement {
        let mut sql = Sql::new("UPDATE outbox SET claimed_until = NULL, published_at = ");
        sql.bind(micros(at)).push(" WHERE ");
        push_keys(&mut sql, self.db_backend(), events.iter().map(key_values));
        sql.build(self.db_backend())
    }
}

#[async_trait]
impl OutboxStore for SeaOrmStore {
    #[instrument(skip(self))]
    async fn claim_batch(
        &self,
        limit: u32,
        now: OffsetDateTime,
        lease_seconds: u32,
    ) -> Result<Vec<OutboxRecord>, RepositoryError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let until = now + time::Duration::seconds(i64::from(lease_seconds));
        if self.has_ledger_thread() {
            // SQLite with a ledger thread: read the candidates beside the
            // writer, then claim them with a compare-and-set in the ledger's
            // next group, which commits only if every one is still as read.
            // An earlier event of an order never turns pending again once
            // published or parked, so a batch that was gapless when read is
            // gapless when claimed.
            let batch = self.claimable(&self.reader, limit, now).await?;
            if batch.is_empty() {
                return Ok(Vec::new());
            }
            let claim = self.claim(&batch, now, until);
            let wanted = u64::try_from(batch.len()).unwrap_or(u64::MAX);
            if self.on_ledger_thread(&claim, Some(wanted)).await.is_some() {
                debug!(claimed = batch.len(), "outbox batch claimed");
                return batch.iter().map(record).collect();
            }
            debug!("outbox batch changed before its claim; claiming in a transaction");
        }
        let txn = self.begin_write().await.repo()?;
        let batch = self.claimable(&*txn, limit, now).await?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        txn.execute_raw(self.claim(&batch, now, until))
            .await
            .repo()?;
        let records = batch.iter().map(record).collect::<Result<Vec<_>, _>>()?;
        txn.commit().await.repo()?;
        debug!(claimed = records.len(), "outbox batch claimed");
        Ok(records)
    }

    async fn mark_published(
        &self,
        events: &[OutboxKey],
        at: OffsetDateTime,
    ) -> Result<(), RepositoryError> {
        if events.is_empty() {
            return Ok(());
        }
        self.exec_write(self.published(events, at)).await.repo()?;
        Ok(())
    }

    async fn record_failure(
        &self,
        event: OutboxKey,
        error: &str,
        park: bool,
        retry_at: OffsetDateTime,
    ) -> Result<(), RepositoryError> {
        let parked_at = park.then(|| micros(OffsetDateTime::now_utc()));
        let mut sql = Sql::new(
            "UPDATE outbox SET attempts = attempts + 1, claimed_until = NULL, last_error = ",
        );
        sql.bind(error)
            .push(", parked_at = ")
            .bind(parked_at)
            .push(", next_attempt_at = ")
            .bind(micros(retry_at))
            .push(" WHERE order_id = ")
            .bind(event.order_id.as_uuid())
            .push(" AND sequence = ")
            .bind(i64::from(event.sequence));
        let done = self.exec_write(sql.build(self.db_backend())).await.repo()?;
        if done == 0 {
            return Err(RepositoryError::NotFound);
        }
        if park {
            tracing::warn!(order_id = %event.order_id, sequence = event.sequence, error, "outbox event parked");
        }
        Ok(())
    }

    async fn purge_published(&self, before: OffsetDateTime) -> Result<u64, RepositoryError> {
        let mut sql =
            Sql::new("DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < ");
        sql.bind(micros(before));
        self.exec_write(sql.build(self.db_backend())).await.repo()
    }

    async fn stats(&self, now: OffsetDateTime) -> Result<OutboxStats, RepositoryError> {
        let backend = self.db_backend();
        let pending = self
            .reader
            .query_one_raw(
                Sql::new(
                    "SELECT COUNT(*), MIN(occurred_at) FROM outbox \
                     WHERE published_at IS NULL AND parked_at IS NULL",
                )
                .build(backend),
            )
            .await
            .repo()?;
        let (count, oldest): (i64, Option<i64>) = match pending {
            Some(row) => (
                row.try_get_by_index(0).repo()?,
                row.try_get_by_index(1).repo()?,
            ),
            None => (0, None),
        };
        let parked: i64 = match self
            .reader
            .query_one_raw(
                Sql::new("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL AND parked_at IS NOT NULL")
                    .build(backend),
            )
            .await
            .repo()?
        {
            Some(row) => row.try_get_by_index(0).repo()?,
            None => 0,
        };
        let oldest_pending_seconds = match oldest {
            Some(m) => (now - from_micros(m).map_err(corrupt)?)
                .as_seconds_f64()
                .max(0.0),
            None => 0.0,
        };
        Ok(OutboxStats {
            pending: u64::try_from(count).unwrap_or(0),
            parked: u64::try_from(parked).unwrap_or(0),
            oldest_pending_seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::TransactionTrait;

    use super::*;

    fn c(order: u128, sequence: i64, pending_before: i64) -> Candidate {
        Candidate {
            id: Uuid::from_u128(order * 1000 + sequence as u128),
            order_id: Uuid::from_u128(order),
            sequence,
            event_type: String::new(),
            payload: String::new(),
            occurred_at: 0,
            attempts: 0,
            pending_before,
        }
    }

    #[test]
    fn keeps_only_gapless_runs_from_the_first_pending_event() {
        let kept = without_gaps(vec![
            c(1, 1, 0),
            c(1, 2, 1),
            // Order 2's first pending event is held elsewhere.
            c(2, 3, 1),
            c(2, 4, 2),
            // Order 3: the second candidate skips one.
            c(3, 1, 0),
            c(3, 3, 2),
        ]);
        let seqs: Vec<(u128, i64)> = kept
            .iter()
            .map(|k| (k.order_id.as_u128(), k.sequence))
            .collect();
        assert_eq!(seqs, vec![(1, 1), (1, 2), (3, 1)]);
    }

    /// The look-back for an earlier event held elsewhere must stay a probe
    /// per candidate. As a `NOT EXISTS` it became an anti-join, which a
    /// database without statistics ran as a rescan of every pending event
    /// for each candidate (0.7 s a relay pass at 10,000 pending).
    #[tokio::test]
    async fn postgres_plans_the_look_backs_as_probes_per_candidate() {
        let Some(db) = crate::plan_check::FreshPostgres::new().await else {
            return;
        };
        let st = db.store.candidates(200, OffsetDateTime::now_utc());
        let values = st.values.clone().map(|v| v.0).unwrap_or_default();
        let (nodes, plan) = db.plan(&st.sql, values).await;
        assert!(
            nodes.iter().all(|n| n.join_type.as_deref() != Some("Anti")),
            "{plan}"
        );
        let look_backs = nodes
            .iter()
            .filter(|n| n.parent.as_deref() == Some("SubPlan"))
            .count();
        assert_eq!(look_backs, 2, "{plan}");
        db.finish().await;
    }

    /// The relay's "published" mark and claim of `n` events.
    fn relay_statements(store: &SeaOrmStore, n: u32) -> [sea_orm::Statement; 2] {
        let now = OffsetDateTime::now_utc();
        let candidates: Vec<Candidate> = (1..=n)
            .map(|i| Candidate {
                order_id: Uuid::now_v7(),
                sequence: i64::from(i % 5 + 1),
                ..c(0, 0, 0)
            })
            .collect();
        let keys: Vec<OutboxKey> = candidates
            .iter()
            .map(|c| OutboxKey {
                order_id: checkout_domain::OrderId::from_uuid(c.order_id),
                sequence: u32::try_from(c.sequence).unwrap(),
            })
            .collect();
        [
            store.published(&keys, now),
            store.claim(&candidates, now, now),
        ]
    }

    /// The relay's claim and its "published" mark find each event by the
    /// outbox's key, (order, sequence), never by scanning the outbox —
    /// also on a database without statistics, where a scan of a large
    /// outbox per relay batch would be the relay falling behind.
    #[tokio::test]
    async fn postgres_addresses_events_by_their_key() {
        let Some(db) = crate::plan_check::FreshPostgres::new().await else {
            return;
        };
        // An outbox of 50,000 events (of orders that are not there: the
        // plan does not depend on them), never analysed.
        let txn = db.store.writer.begin().await.unwrap();
        for sql in [
            "SET LOCAL session_replication_role = replica",
            "INSERT INTO outbox (id, order_id, sequence, event_type, payload, occurred_at) \
             SELECT gen_random_uuid(), gen_random_uuid(), 1, 'order.created', repeat('x', 600), 0 \
             FROM generate_series(1, 50000)",
        ] {
            txn.execute_unprepared(sql).await.unwrap();
        }
        txn.commit().await.unwrap();
        for st in relay_statements(&db.store, 200) {
            let values = st.values.clone().map(|v| v.0).unwrap_or_default();
            let (nodes, plan) = db.plan(&st.sql, values).await;
            assert!(
                nodes
                    .iter()
                    .all(|n| n.node_type.as_deref() != Some("Seq Scan")),
                "{plan}"
            );
            assert!(
                nodes
                    .iter()
                    .any(|n| n.index.as_deref() == Some("outbox_pkey")),
                "{plan}"
            );
            assert!(
                nodes
                    .iter()
                    .all(|n| n.index.is_none() || n.index_cond.is_some()),
                "{plan}"
            );
        }
        db.finish().await;
    }

    /// The same on SQLite, where a row value's `IN` takes a `VALUES` list:
    /// each row is a search of the key, not a scan of the table.
    #[tokio::test]
    async fn sqlite_addresses_events_by_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/plan.db?mode=rwc", dir.path().display());
        let store = SeaOrmStore::connect(&url, crate::StoreOptions::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        for st in relay_statements(&store, 3) {
            let values = st.values.clone().map(|v| v.0).unwrap_or_default();
            let rows = store
                .reader
                .query_all_raw(sea_orm::Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    format!("EXPLAIN QUERY PLAN {}", st.sql),
                    values,
                ))
                .await
                .unwrap();
            let details: Vec<String> = rows
                .iter()
                .map(|r| r.try_get_by_index::<String>(3).unwrap())
                .collect();
            assert!(
                details.iter().any(|d| d.starts_with("SEARCH outbox USING")
                    && d.contains("(order_id=? AND sequence=?)")),
                "{details:?}"
            );
            assert!(
                !details.iter().any(|d| d.starts_with("SCAN outbox")),
                "{details:?}"
            );
        }
        store.close().await.unwrap();
    }
}
