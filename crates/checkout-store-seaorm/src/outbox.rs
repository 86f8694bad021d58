//! `OutboxStore`: the relay's side of the transactional outbox.
//!
//! One relay instance at a time works a database's outbox: it holds the
//! outbox's lease, a row of `relay_leases` (migration 9) that it takes
//! when the lease has lapsed and renews once half of it has run. A relay
//! that dies leaves the outbox to the next instance when its lease runs
//! out. Events are handed out without being written: what this store (and
//! its clones, in the same process) has handed out and not yet seen
//! published or failed is kept in memory, in flight for a lease's length,
//! so relays sharing a store never get the same event. Before the lease,
//! every event was written twice after its insert, a lease of its own and
//! the published mark; now only the mark is (docs/performance.md).
//!
//! Per-order order is the rule everything else bends to: an event is
//! handed out only when every earlier pending event of its order is handed
//! out with it, so no two relays ever hold events of one order at once and
//! no event overtakes an earlier one.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use checkout_domain::{EventId, OrderId};
use checkout_ports::{OutboxKey, OutboxRecord, OutboxStats, OutboxStore, RepositoryError};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Value};
use serde::Deserialize;
use time::OffsetDateTime;
use tracing::{debug, instrument};
use uuid::Uuid;

use crate::SeaOrmStore;
use crate::convert::corrupt;
use crate::error::DbResultExt;
use crate::sql::{Sql, from_micros, micros};

/// What a store, and every clone of it, knows of the relay: who it is to
/// the other stores on the database, until when it holds the outbox's
/// lease, and which events it has handed out (until when).
#[derive(Debug, Clone)]
pub(crate) struct RelayLease(Arc<tokio::sync::Mutex<LeaseState>>);

#[derive(Debug)]
struct LeaseState {
    holder: Uuid,
    held_until: Option<OffsetDateTime>,
    in_flight: HashMap<(Uuid, i64), OffsetDateTime>,
}

impl Default for RelayLease {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::Mutex::new(LeaseState {
            holder: Uuid::new_v4(),
            held_until: None,
            in_flight: HashMap::new(),
        })))
    }
}

impl RelayLease {
    /// Forgets events now published or failed.
    async fn settled(&self, events: impl IntoIterator<Item = (Uuid, i64)>) {
        let mut state = self.0.lock().await;
        for key in events {
            state.in_flight.remove(&key);
        }
    }
}

/// A pending event due now, with how many pending events of its order
/// come before it. On SQLite each is an array in a JSON array, its fields
/// in this order (`SeaOrmStore::read_candidates`). The payload is parsed
/// once, into the value the relay's sink takes, and moves into the
/// [`OutboxRecord`].
#[derive(Debug, Deserialize)]
struct Candidate {
    #[serde(deserialize_with = "hex_uuid")]
    id: Uuid,
    #[serde(deserialize_with = "hex_uuid")]
    order_id: Uuid,
    sequence: i64,
    event_type: String,
    #[serde(deserialize_with = "json_from_text")]
    payload: serde_json::Value,
    occurred_at: i64,
    attempts: i64,
    pending_before: i64,
}

/// A [`Candidate`] as PostgreSQL's rows give it, the payload as text.
#[derive(Debug, FromQueryResult)]
struct CandidateRow {
    id: Uuid,
    order_id: Uuid,
    sequence: i64,
    event_type: String,
    payload: String,
    occurred_at: i64,
    attempts: i64,
    pending_before: i64,
}

impl TryFrom<CandidateRow> for Candidate {
    type Error = RepositoryError;

    fn try_from(row: CandidateRow) -> Result<Self, Self::Error> {
        Ok(Candidate {
            id: row.id,
            order_id: row.order_id,
            sequence: row.sequence,
            event_type: row.event_type,
            payload: serde_json::from_str(&row.payload)
                .map_err(|e| corrupt(format!("outbox payload: {e}")))?,
            occurred_at: row.occurred_at,
            attempts: row.attempts,
            pending_before: row.pending_before,
        })
    }
}

/// SQLite: every candidate in one JSON array, one row.
#[derive(Debug, FromQueryResult)]
struct CandidateBatch {
    batch: String,
}

/// A JSON document held as text (the outbox's `payload` column).
///
/// Embedding the document itself instead (`json(payload)` in the batch)
/// spared this step but cost SQLite's reader as much again in parsing it
/// (docs/performance.md).
fn json_from_text<'de, D: serde::Deserializer<'de>>(
    text: D,
) -> Result<serde_json::Value, D::Error> {
    let text = String::deserialize(text)?;
    serde_json::from_str(&text).map_err(serde::de::Error::custom)
}

/// A UUID as SQLite's `hex()` spells its 16 bytes.
fn hex_uuid<'de, D: serde::Deserializer<'de>>(hex: D) -> Result<Uuid, D::Error> {
    let hex = <&str>::deserialize(hex)?;
    Uuid::try_parse(hex).map_err(serde::de::Error::custom)
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
/// index probe whatever the planner's statistics say.
///
/// PostgreSQL gets the keys as two arrays, so the statement's text is the
/// same for a mark of any length and the connection keeps one prepared
/// statement for all of them. A list of row values was a statement of its
/// own for every length (72 in 277 marks of one benchmark step, each kept
/// by the connection), and planning one of 150 rows took 5–6 ms against
/// 0.2–0.5 ms for the arrays. SQLite takes row values on the right of `IN`
/// only from a subquery, and probes the key with each row of a `VALUES`
/// list.
fn push_keys(sql: &mut Sql, backend: DbBackend, keys: impl IntoIterator<Item = (Uuid, i64)>) {
    sql.push("(order_id, sequence) IN (");
    if backend == DbBackend::Postgres {
        let (orders, sequences): (Vec<Uuid>, Vec<i64>) = keys.into_iter().unzip();
        sql.push("SELECT * FROM unnest(")
            .bind(orders)
            .push("::uuid[], ")
            .bind(sequences)
            .push("::bigint[])");
    } else {
        let rows = keys
            .into_iter()
            .map(|(order_id, sequence)| vec![Value::from(order_id), Value::from(sequence)]);
        sql.push("VALUES ").rows(rows);
    }
    sql.push(")");
}

/// Marks `events` published at `at`, in one statement.
fn published(backend: DbBackend, events: &[OutboxKey], at: OffsetDateTime) -> sea_orm::Statement {
    let mut sql = Sql::new("UPDATE outbox SET published_at = ");
    sql.bind(micros(at)).push(" WHERE ");
    push_keys(&mut sql, backend, events.iter().map(key_values));
    sql.build(backend)
}

fn key_values(key: &OutboxKey) -> (Uuid, i64) {
    (key.order_id.as_uuid(), i64::from(key.sequence))
}

/// The event handed to the relay; the candidate's payload moves into it.
fn record(c: Candidate) -> Result<OutboxRecord, RepositoryError> {
    Ok(OutboxRecord {
        id: EventId::from_uuid(c.id),
        order_id: OrderId::from_uuid(c.order_id),
        sequence: u32::try_from(c.sequence).map_err(corrupt)?,
        event_type: c.event_type,
        payload: c.payload,
        occurred_at: from_micros(c.occurred_at).map_err(corrupt)?,
        attempts: u32::try_from(c.attempts).map_err(corrupt)?,
    })
}

impl SeaOrmStore {
    /// The events due now, oldest order first. Pending = unpublished and
    /// unparked. A candidate must be due (its retry time come) and have no
    /// earlier pending event of its order that is not; `pending_before`
    /// lets `without_gaps` drop those behind an earlier event in flight.
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
             AND (o.next_attempt_at IS NULL OR o.next_attempt_at <= {now_p}) \
             AND (SELECT COUNT(*) FROM outbox p WHERE p.order_id = o.order_id \
               AND p.sequence < o.sequence AND p.published_at IS NULL AND p.parked_at IS NULL \
               AND p.next_attempt_at IS NOT NULL AND p.next_attempt_at > {now_p}) = 0 \
             ORDER BY o.order_id, o.sequence LIMIT "
        ))
        .bind(i64::from(limit));
        sql.build(self.db_backend())
    }

    /// The due candidates (see [`Self::candidates`]), in (order, sequence)
    /// order.
    ///
    /// SQLite reads them as one row holding a JSON array. The driver runs
    /// each SQLite connection on a thread of its own and hands every row
    /// across to the waiting task, waking it: a claim of 200 events was
    /// some 200 wake-ups, about five context switches an order at 80 % of
    /// the peak, and the threads they woke took the cores from the ledger
    /// thread. One row is one hand-over (docs/performance.md).
    async fn read_candidates(
        &self,
        limit: u32,
        now: OffsetDateTime,
    ) -> Result<Vec<Candidate>, RepositoryError> {
        let statement = self.candidates(limit, now);
        if self.db_backend() != DbBackend::Sqlite {
            return CandidateRow::find_by_statement(statement)
                .all(&self.reader)
                .await
                .repo()?
                .into_iter()
                .map(Candidate::try_from)
                .collect();
        }
        // The columns in `Candidate`'s field order; a UUID, a 16-byte blob
        // here, as its hex digits.
        let statement = sea_orm::Statement {
            sql: format!(
                "SELECT json_group_array(json_array(hex(id), hex(order_id), sequence, \
                 event_type, payload, occurred_at, attempts, pending_before)) AS batch \
                 FROM ({})",
                statement.sql
            ),
            ..statement
        };
        let Some(found) = CandidateBatch::find_by_statement(statement)
            .one(&self.reader)
            .await
            .repo()?
        else {
            return Ok(Vec::new());
        };
        let mut candidates: Vec<Candidate> = serde_json::from_str(&found.batch)
            .map_err(|e| corrupt(format!("outbox batch: {e}")))?;
        // An aggregate's input order is SQLite's to choose.
        candidates.sort_unstable_by_key(|c| (c.order_id, c.sequence));
        Ok(candidates)
    }

    /// Takes or renews the outbox's lease for `state`'s holder when it is
    /// not held for more than half of `lease` still; whether it is held.
    /// The lease is taken only from its own holder or once it has lapsed;
    /// two stores taking it at once are serialised by its row.
    async fn hold_lease(
        &self,
        state: &mut LeaseState,
        now: OffsetDateTime,
        lease: time::Duration,
    ) -> Result<bool, RepositoryError> {
        if state
            .held_until
            .is_some_and(|until| until - now > lease / 2)
        {
            return Ok(true);
        }
        let until = now + lease;
        let mut sql =
            Sql::new("INSERT INTO relay_leases (name, holder, held_until) VALUES ('outbox', ");
        sql.bind(state.holder)
            .push(", ")
            .bind(micros(until))
            .push(
                ") ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 held_until = excluded.held_until \
                 WHERE relay_leases.holder = excluded.holder OR relay_leases.held_until <= ",
            )
            .bind(micros(now));
        let held = self.exec_write(sql.build(self.db_backend())).await.repo()? == 1;
        state.held_until = held.then_some(until);
        if !held {
            debug!("another relay instance holds the outbox");
        }
        Ok(held)
    }

    /// SQLite's mark of `events` as published at `at`: for each order, one
    /// update per run of consecutive sequence numbers, so every event
    /// between a run's ends is in `events`.
    ///
    /// Each is the same short statement, which the ledger thread keeps
    /// prepared, and a search of the key's range. The one-statement mark
    /// (`published`, still the fallback) was prepared afresh for every
    /// batch, its `VALUES` list being of a new length, and SQLite built an
    /// ephemeral table of its rows each time; preparing it alone was 2 % of
    /// the ledger thread's samples (docs/performance.md).
    fn published_runs(&self, events: &[OutboxKey], at: OffsetDateTime) -> Vec<sea_orm::Statement> {
        let mut keys: Vec<(Uuid, i64)> = events.iter().map(key_values).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut runs: Vec<(Uuid, i64, i64)> = Vec::new();
        for (order_id, sequence) in keys {
            match runs.last_mut() {
                Some((o, _, last)) if *o == order_id && *last + 1 == sequence => *last = sequence,
                _ => runs.push((order_id, sequence, sequence)),
            }
        }
        runs.into_iter()
            .map(|(order_id, first, last)| {
                let mut sql = Sql::new("UPDATE outbox SET published_at = ");
                sql.bind(micros(at))
                    .push(" WHERE order_id = ")
                    .bind(order_id)
                    .push(" AND sequence BETWEEN ")
                    .bind(first)
                    .push(" AND ")
                    .bind(last);
                sql.build(self.db_backend())
            })
            .collect()
    }

    /// Runs the one-statement mark on the SeaORM writer.
    ///
    /// On PostgreSQL it is planned afresh at every call, with the keys and
    /// the outbox as they are. A prepared statement otherwise moves to one
    /// generic plan at its sixth call, which assumes ten keys: made while
    /// the outbox held under about 200 events (a fresh database) it hashes
    /// a scan of the whole outbox, and keeps doing so as the outbox grows,
    /// until autovacuum next analyses it.
    async fn mark_on_writer(
        &self,
        events: &[OutboxKey],
        at: OffsetDateTime,
    ) -> Result<u64, sea_orm::DbErr> {
        let statement = published(self.db_backend(), events, at);
        if self.db_backend() != DbBackend::Postgres {
            return self.exec_on_writer(statement).await;
        }
        let txn = self.begin_write().await?;
        txn.execute_unprepared("SET LOCAL plan_cache_mode = force_custom_plan")
            .await?;
        let marked = txn.execute_raw(statement).await?.rows_affected();
        txn.commit().await?;
        Ok(marked)
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
        let lease = time::Duration::seconds(i64::from(lease_seconds));
        let mut state = self.relay.0.lock().await;
        state.in_flight.retain(|_, until| *until > now);
        // Read past the events in flight, which are still pending.
        let in_flight = u32::try_from(state.in_flight.len()).unwrap_or(u32::MAX);
        let candidates = self
            .read_candidates(limit.saturating_add(in_flight), now)
            .await?;
        let fresh = candidates
            .into_iter()
            .filter(|c| !state.in_flight.contains_key(&(c.order_id, c.sequence)))
            .collect();
        let mut batch = without_gaps(fresh);
        batch.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        if batch.is_empty() || !self.hold_lease(&mut state, now, lease).await? {
            return Ok(Vec::new());
        }
        let keys: Vec<(Uuid, i64)> = batch.iter().map(|c| (c.order_id, c.sequence)).collect();
        let records = batch
            .into_iter()
            .map(record)
            .collect::<Result<Vec<_>, _>>()?;
        for key in keys {
            state.in_flight.insert(key, now + lease);
        }
        debug!(claimed = records.len(), "outbox batch handed out");
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
        let on_ledger = self.sqlite_ledger.is_some()
            && self
                .on_ledger_thread(self.published_runs(events, at))
                .await
                .is_some();
        if !on_ledger {
            // Not through `exec_write`: the ledger thread, when there is
            // one, has just refused these events.
            self.mark_on_writer(events, at).await.repo()?;
        }
        self.relay.settled(events.iter().map(key_values)).await;
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
        let mut sql = Sql::new("UPDATE outbox SET attempts = attempts + 1, last_error = ");
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
        self.relay.settled([key_values(&event)]).await;
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
            payload: serde_json::Value::Null,
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
            // Order 2's first pending event is in flight.
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

    /// The look-back for an earlier event not due yet must stay a probe
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

    /// `n` events of `n` orders.
    fn keys(n: u32) -> Vec<OutboxKey> {
        (1..=n)
            .map(|i| OutboxKey {
                order_id: checkout_domain::OrderId::from_uuid(Uuid::now_v7()),
                sequence: i % 5 + 1,
            })
            .collect()
    }

    /// The relay's "published" mark of `n` events.
    fn published_mark(store: &SeaOrmStore, n: u32) -> sea_orm::Statement {
        published(store.db_backend(), &keys(n), OffsetDateTime::now_utc())
    }

    /// On PostgreSQL a mark of any length is one statement, prepared once
    /// per connection, with the keys in three values whatever their number.
    #[test]
    fn postgres_marks_any_number_of_events_with_one_statement() {
        let at = OffsetDateTime::now_utc();
        let one = published(DbBackend::Postgres, &keys(1), at);
        let many = published(DbBackend::Postgres, &keys(200), at);
        assert_eq!(one.sql, many.sql);
        let values = many.values.map(|v| v.0).unwrap_or_default();
        assert_eq!(values.len(), 3);
        for keys in &values[1..] {
            let Value::Array(_, Some(keys)) = keys else {
                panic!("the keys are not an array: {keys:?}");
            };
            assert_eq!(keys.len(), 200);
        }
        // SQLite keeps a list of row values, one pair of values an event.
        let sqlite = published(DbBackend::Sqlite, &keys(200), at);
        assert_eq!(sqlite.values.map(|v| v.0.len()), Some(401));
    }

    /// The relay's "published" mark finds each event by the outbox's key,
    /// (order, sequence), never by scanning the outbox — also on a
    /// database without statistics, where a scan of a large outbox per
    /// relay batch would be the relay falling behind.
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
        for st in [published_mark(&db.store, 200)] {
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

    /// Every mark is planned with its keys and the outbox as they are, never
    /// with a generic plan, which the connection would keep from the
    /// statement's sixth call: for ten keys assumed, and made on a near-empty
    /// outbox, that is a scan of the whole outbox, kept as it grows.
    #[tokio::test]
    async fn postgres_plans_every_mark_afresh() {
        let Some(db) = crate::plan_check::FreshPostgres::new().await else {
            return;
        };
        // One connection, so the marks and the question share it.
        let options = crate::StoreOptions {
            max_connections: 1,
            ..crate::StoreOptions::default()
        };
        let store = SeaOrmStore::connect(&db.url(), options).await.unwrap();
        for n in 1..=20 {
            store
                .mark_published(&keys(n), OffsetDateTime::now_utc())
                .await
                .unwrap();
        }
        let row = store
            .writer
            .query_one_raw(sea_orm::Statement::from_string(
                DbBackend::Postgres,
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements \
                 WHERE statement LIKE 'UPDATE outbox SET published_at%'",
            ))
            .await
            .unwrap()
            .unwrap();
        let plans: (i64, i64) = (
            row.try_get_by_index(0).unwrap(),
            row.try_get_by_index(1).unwrap(),
        );
        assert_eq!(plans, (0, 20));
        store.close().await.unwrap();
        db.finish().await;
    }

    /// The same on SQLite, where a row value's `IN` takes a `VALUES` list:
    /// each row is a search of the key, not a scan of the table.
    #[tokio::test]
    async fn sqlite_addresses_events_by_their_key() {
        let db = crate::plan_check::FreshSqlite::new().await;
        let details = db.plan(&published_mark(&db.store, 3)).await;
        assert!(
            details.iter().any(|d| d.starts_with("SEARCH outbox USING")
                && d.contains("(order_id=? AND sequence=?)")),
            "{details:?}"
        );
        assert!(
            !details.iter().any(|d| d.starts_with("SCAN outbox")),
            "{details:?}"
        );
        // The mark the relay makes through the ledger thread: a run of an
        // order's events is a range of the key.
        let key = |sequence| OutboxKey {
            order_id: checkout_domain::OrderId::from_uuid(Uuid::now_v7()),
            sequence,
        };
        let runs = db
            .store
            .published_runs(&[key(1), key(4)], OffsetDateTime::now_utc());
        assert_eq!(runs.len(), 2);
        let details = db.plan(&runs[0]).await;
        assert!(
            details.iter().any(|d| d.starts_with("SEARCH outbox USING")
                && d.contains("(order_id=? AND sequence>? AND sequence<?)")),
            "{details:?}"
        );
        db.finish().await;
    }
}
