//! `OrderRepository`: orders with their lines, audit trail, outbox events,
//! payment attempts, refunds and the webhook inbox.
//!
//! Writes are the service's hot path: each `create`/`save` is one
//! transaction of a handful of statements — the order row (a
//! compare-and-set on `version` when saving), one multi-row insert for the
//! audit entries, one for the outbox events, one upsert of the payment
//! attempt — with no read before the write.

use std::collections::HashMap;

use async_trait::async_trait;
use checkout_domain::{
    AuditEntry, Money, Order, OrderChange, OrderId, OrderState, RefundId, ReservationStatus,
};
use checkout_ports::{NewRefund, OrderPage, OrderQuery, OrderRepository, Refund, RepositoryError};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};
use time::OffsetDateTime;
use tracing::{debug, instrument};
use uuid::Uuid;

use crate::convert::{self, ORDER_COLUMNS};
use crate::entity::{audit_log, order_items, orders, refunds};
use crate::error::{DbResultExt, repo_err};
use crate::sql::{Batch, ORDER_SAVED, Sql, markers, micros};
use crate::{SeaOrmStore, WriteTxn};

/// Most orders one listing returns.
const MAX_PAGE: u32 = 200;

/// The orders' expiry sweep: orders in `states` whose reservation is
/// active and past its expiry, soonest expired first.
fn expired_reservations(states: &[OrderState], now: OffsetDateTime) -> Select<orders::Entity> {
    orders::Entity::find()
        .filter(reservation_is(ReservationStatus::Active))
        .filter(orders::Column::ReservationExpiresAt.lt(micros(now)))
        .filter(orders::Column::State.is_in(states.iter().map(|s| s.as_str())))
        .order_by_asc(orders::Column::ReservationExpiresAt)
}

/// The confirm retrier's sweep: paid (or later) orders whose reservation
/// is still to be confirmed, longest waiting first.
fn unconfirmed_reservations() -> Select<orders::Entity> {
    let paid_or_later = [
        OrderState::Paid,
        OrderState::Fulfilling,
        OrderState::Completed,
        OrderState::Cancelled,
        OrderState::Refunded,
    ];
    orders::Entity::find()
        .filter(reservation_is(ReservationStatus::ConfirmPending))
        .filter(orders::Column::State.is_in(paid_or_later.iter().map(|s| s.as_str())))
        .order_by_asc(orders::Column::UpdatedAt)
}

/// `reservation_status = '…'` with the status written as a literal, not
/// bound: the index the sweeps need holds only open reservations (a
/// partial index, `m20261206_000010_open_reservation_indexes`), and a
/// database proves a query may use it only from a literal.
fn reservation_is(status: ReservationStatus) -> Expr {
    // Here only: in scope module-wide, its `max` and `min` would shadow
    // the integers' own.
    use sea_orm::sea_query::ExprTrait as _;
    Expr::col((orders::Entity, orders::Column::ReservationStatus))
        .eq(Expr::cust(format!("'{}'", status.as_str())))
}

impl SeaOrmStore {
    /// Rebuilds orders from their rows, loading the lines of all of them in
    /// one query.
    pub(crate) async fn load_orders<C: ConnectionTrait>(
        &self,
        conn: &C,
        rows: Vec<orders::Model>,
    ) -> Result<Vec<Order>, RepositoryError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let items = order_items::Entity::find()
            .filter(order_items::Column::OrderId.is_in(ids))
            .order_by_asc(order_items::Column::OrderId)
            .order_by_asc(order_items::Column::LineNo)
            .all(conn)
            .await
            .repo()?;
        let mut by_order: HashMap<Uuid, Vec<&order_items::Model>> = HashMap::new();
        for item in &items {
            by_order.entry(item.order_id).or_default().push(item);
        }
        rows.iter()
            .map(|r| convert::order(r, by_order.get(&r.id).map(Vec::as_slice).unwrap_or(&[])))
            .collect()
    }

    async fn load_one<C: ConnectionTrait>(
        &self,
        conn: &C,
        row: Option<orders::Model>,
    ) -> Result<Order, RepositoryError> {
        let row = row.ok_or(RepositoryError::NotFound)?;
        self.load_orders(conn, vec![row])
            .await?
            .pop()
            .ok_or(RepositoryError::NotFound)
    }

    /// Appends the statements that insert a new order, its lines, its
    /// changes and its payment attempt.
    pub(crate) fn push_create(
        batch: &mut Batch,
        order: &Order,
        changes: &[OrderChange],
    ) -> Result<(), RepositoryError> {
        batch
            .write()
            .push(&format!(
                "INSERT INTO orders ({}) VALUES ",
                ORDER_COLUMNS.join(", ")
            ))
            .tuple(convert::order_values(order)?);
        let items = convert::item_rows(order);
        if !items.is_empty() {
            batch
                .write()
                .push(
                    "INSERT INTO order_items (order_id, line_no, book_id, quantity, \
                     unit_price_minor, expected_unit_price_minor) VALUES ",
                )
                .rows(items);
        }
        Self::push_changes(batch, order, changes)
    }

    /// What a failed create means: a taken order id is `Duplicate`.
    pub(crate) fn create_failed(order: &Order, e: DbErr) -> RepositoryError {
        match repo_err(e) {
            RepositoryError::Duplicate(m) => {
                RepositoryError::Duplicate(format!("order {}: {m}", order.id()))
            }
            other => other,
        }
    }

    /// Appends the statements that save `order` over `expected_version`:
    /// the row's compare-and-set on `version` (a gate returning
    /// [`ORDER_SAVED`]), then the changes.
    ///
    /// The id, the creation time and the customer never change, so they
    /// are not assigned. The customer is compared instead: SQLite rewrites
    /// an index entry whenever an assignment names one of its columns,
    /// even with the value it already has, and `orders_customer_id` is
    /// keyed by customers in no order, so every save wrote a page of it at
    /// random (docs/performance.md). A save for another customer than the
    /// stored one matches no row and is refused like a stale one.
    pub(crate) fn push_save(
        batch: &mut Batch,
        order: &Order,
        expected_version: u64,
        changes: &[OrderChange],
    ) -> Result<(), RepositoryError> {
        let values = convert::order_values(order)?;
        let expected =
            i64::try_from(expected_version).map_err(|_| RepositoryError::Conflict(order.id()))?;
        let sql = batch.gate();
        sql.push("UPDATE orders SET ");
        for (i, (col, value)) in ORDER_COLUMNS
            .iter()
            .zip(values)
            .filter(|(c, _)| !matches!(**c, "id" | "created_at" | "customer_id"))
            .enumerate()
        {
            if i > 0 {
                sql.push(", ");
            }
            sql.push(col).push(" = ").bind(value);
        }
        sql.push(" WHERE id = ")
            .bind(order.id().as_uuid())
            .push(" AND version = ")
            .bind(expected)
            .push(" AND customer_id = ")
            .bind(order.customer_id().as_str())
            .push(&format!(
                " RETURNING CAST({ORDER_SAVED} AS BIGINT) AS marker"
            ));
        Self::push_changes(batch, order, changes)
    }

    /// Why a save's compare-and-set matched no row (the cold path): the
    /// order is missing, or its stored version is not the expected one.
    /// `conn` sees the database as the save left it (the save changed
    /// nothing in `orders`).
    pub(crate) async fn save_refused<C: ConnectionTrait>(
        &self,
        conn: &C,
        order: &Order,
        expected_version: u64,
    ) -> RepositoryError {
        let stored = orders::Entity::find_by_id(order.id().as_uuid())
            .select_only()
            .column(orders::Column::Version)
            .into_tuple::<i64>()
            .one(conn)
            .await;
        debug!(order_id = %order.id(), expected_version, ?stored, "save refused");
        match stored {
            Ok(None) => RepositoryError::NotFound,
            Ok(Some(_)) => RepositoryError::Conflict(order.id()),
            Err(e) => repo_err(e),
        }
    }

    /// What a save batch that failed means, once its transaction is rolled
    /// back: a stale writer (whose events may have collided with the
    /// winner's) is a `Conflict`; otherwise the error stands.
    pub(crate) async fn save_failed(
        &self,
        order: &Order,
        expected_version: u64,
        e: DbErr,
    ) -> RepositoryError {
        let stored = orders::Entity::find_by_id(order.id().as_uuid())
            .select_only()
            .column(orders::Column::Version)
            .into_tuple::<i64>()
            .one(&self.writer)
            .await;
        match stored {
            Ok(Some(v)) if u64::try_from(v).ok() == Some(expected_version) => repo_err(e),
            Ok(Some(_)) => RepositoryError::Conflict(order.id()),
            Ok(None) => RepositoryError::NotFound,
            Err(_) => repo_err(e),
        }
    }

    /// Saves `order` over `expected_version` with `changes` inside `txn`,
    /// in one batch. On `Err` the transaction has been rolled back.
    pub(crate) async fn save_in(
        &self,
        txn: WriteTxn,
        order: &Order,
        expected_version: u64,
        changes: &[OrderChange],
    ) -> Result<WriteTxn, RepositoryError> {
        let backend = self.db_backend();
        let mut batch = Batch::new(backend);
        Self::push_save(&mut batch, order, expected_version, changes)?;
        let rows = match batch.run(&*txn, backend).await {
            Ok(rows) => rows,
            Err(e) => {
                let _ = txn.rollback().await;
                return Err(self.save_failed(order, expected_version, e).await);
            }
        };
        if !markers(&rows).repo()?.contains(&ORDER_SAVED) {
            return Err(self.save_refused(&*txn, order, expected_version).await);
        }
        Ok(txn)
    }

    /// The audit entries and outbox events of `changes` (one multi-row
    /// insert each), then the order's current payment attempt (upsert).
    /// Fails, writing nothing, when an event cannot be written as JSON.
    fn push_changes(
        batch: &mut Batch,
        order: &Order,
        changes: &[OrderChange],
    ) -> Result<(), RepositoryError> {
        if !changes.is_empty() {
            batch
                .write()
                .push(
                    "INSERT INTO audit_log (order_id, previous_state, new_state, reason, \
                     metadata, actor, at) VALUES ",
                )
                .rows(changes.iter().map(|c| convert::audit_row(&c.audit)));
        }
        let events = changes
            .iter()
            .flat_map(|c| c.events.iter().map(convert::outbox_row))
            .collect::<Result<Vec<_>, _>>()?;
        if !events.is_empty() {
            batch
                .write()
                .push(
                    "INSERT INTO outbox (id, order_id, sequence, event_type, payload, \
                     occurred_at) VALUES ",
                )
                .rows(events);
        }
        if let Some(row) = convert::payment_row(order) {
            batch
                .write()
                .push(
                    "INSERT INTO payment_attempts (order_id, attempt, provider, \
                     idempotency_key, intent_id, transaction_id, status, failure_code, \
                     failure_message, created_at, updated_at) VALUES ",
                )
                .tuple(row)
                .push(
                    " ON CONFLICT (order_id, attempt) DO UPDATE SET provider = \
                     excluded.provider, intent_id = excluded.intent_id, transaction_id = \
                     excluded.transaction_id, status = excluded.status, failure_code = \
                     excluded.failure_code, failure_message = excluded.failure_message, \
                     updated_at = excluded.updated_at",
                );
        }
        Ok(())
    }

    async fn find_orders(
        &self,
        select: sea_orm::Select<orders::Entity>,
        limit: u32,
    ) -> Result<Vec<Order>, RepositoryError> {
        let rows = select
            .limit(u64::from(limit))
            .all(&self.reader)
            .await
            .repo()?;
        self.load_orders(&self.reader, rows).await
    }
}

#[async_trait]
impl OrderRepository for SeaOrmStore {
    #[instrument(skip_all, fields(order_id = %order.id()))]
    async fn create(&self, order: &Order, changes: &[OrderChange]) -> Result<(), RepositoryError> {
        let backend = self.db_backend();
        let mut batch = Batch::new(backend);
        Self::push_create(&mut batch, order, changes)?;
        let txn = self.begin_write().await.repo()?;
        batch
            .run(&*txn, backend)
            .await
            .map_err(|e| Self::create_failed(order, e))?;
        txn.commit().await.repo()
    }

    #[instrument(skip_all, fields(order_id = %order.id(), expected_version))]
    async fn save(
        &self,
        order: &Order,
        expected_version: u64,
        changes: &[OrderChange],
    ) -> Result<(), RepositoryError> {
        let txn = self.begin_write().await.repo()?;
        let txn = self.save_in(txn, order, expected_version, changes).await?;
        txn.commit().await.repo()
    }

    async fn get(&self, id: OrderId) -> Result<Order, RepositoryError> {
        let row = orders::Entity::find_by_id(id.as_uuid())
            .one(&self.reader)
            .await
            .repo()?;
        self.load_one(&self.reader, row).await
    }

    async fn list(&self, query: &OrderQuery) -> Result<OrderPage, RepositoryError> {
        let limit = query.limit.clamp(1, MAX_PAGE);
        let mut select = orders::Entity::find();
        if let Some(c) = &query.customer_id {
            select = select.filter(orders::Column::CustomerId.eq(c.as_str()));
        }
        if let Some(s) = query.state {
            select = select.filter(orders::Column::State.eq(s.as_str()));
        }
        if let Some(before) = query.before {
            select = select.filter(orders::Column::Id.lt(before.as_uuid()));
        }
        let orders = self
            .find_orders(select.order_by_desc(orders::Column::Id), limit)
            .await?;
        let next = (orders.len() == limit as usize)
            .then(|| orders.last().map(Order::id))
            .flatten();
        Ok(OrderPage { orders, next })
    }

    async fn audit_trail(&self, id: OrderId) -> Result<Vec<AuditEntry>, RepositoryError> {
        let rows = audit_log::Entity::find()
            .filter(audit_log::Column::OrderId.eq(id.as_uuid()))
            .order_by_asc(audit_log::Column::Id)
            .all(&self.reader)
            .await
            .repo()?;
        if rows.is_empty() {
            // Every order has its creation entry; no entries means no order.
            let exists = orders::Entity::find_by_id(id.as_uuid())
                .one(&self.reader)
                .await
                .repo()?;
            if exists.is_none() {
                return Err(RepositoryError::NotFound);
            }
        }
        rows.iter().map(convert::audit_entry).collect()
    }

    async fn find_stale(
        &self,
        state: OrderState,
        updated_before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Order>, RepositoryError> {
        let select = orders::Entity::find()
            .filter(orders::Column::State.eq(state.as_str()))
            .filter(orders::Column::UpdatedAt.lt(micros(updated_before)))
            .order_by_asc(orders::Column::UpdatedAt)
            .order_by_asc(orders::Column::Id);
        self.find_orders(select, limit).await
    }

    async fn find_expired_reservations(
        &self,
        states: &[OrderState],
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Order>, RepositoryError> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        self.find_orders(expired_reservations(states, now), limit)
            .await
    }

    async fn find_unconfirmed_reservations(
        &self,
        limit: u32,
    ) -> Result<Vec<Order>, RepositoryError> {
        self.find_orders(unconfirmed_reservations(), limit).await
    }

    #[instrument(skip_all, fields(order_id = %refund.order_id, refund_id = %refund.id))]
    async fn begin_refund(
        &self,
        refund: &NewRefund,
        captured: Money,
    ) -> Result<(), RepositoryError> {
        if refund.amount.currency() != captured.currency() {
            return Err(RepositoryError::Unexpected(format!(
                "refund in {} for a payment captured in {}",
                refund.amount.currency(),
                captured.currency()
            )));
        }
        let backend = self.db_backend();
        let order_id = refund.order_id.as_uuid();
        let txn = self.begin_write().await.repo()?;
        // PostgreSQL: lock the order row, so concurrent refunds of one order
        // run one after the other and each sees the others' sums. (SQLite's
        // IMMEDIATE transaction already holds the only write lock.)
        let mut lock = Sql::new("SELECT id FROM orders WHERE id = ");
        lock.bind(order_id);
        if self.is_postgres() {
            lock.push(" FOR UPDATE");
        }
        if txn
            .query_one_raw(lock.build(backend))
            .await
            .repo()?
            .is_none()
        {
            return Err(RepositoryError::NotFound);
        }
        // Check and insert in ONE statement: the sum of live refunds plus
        // this one must stay within the captured amount.
        let amount = refund.amount.to_minor_units();
        let mut sql = Sql::new(
            "INSERT INTO refunds (id, order_id, amount_minor, currency, status, reason, \
             created_at, updated_at) SELECT ",
        );
        let oid = sql.param(order_id);
        let amt = sql.param(amount);
        let at = sql.param(micros(refund.created_at));
        sql.bind(refund.id.as_uuid())
            .push(&format!(", {oid}, {amt}, "))
            .bind(refund.amount.currency().code())
            .push(", 'pending', ")
            .bind(refund.reason.clone())
            .push(&format!(
                ", {at}, {at} WHERE (SELECT COALESCE(SUM(amount_minor), 0) FROM refunds \
                 WHERE order_id = {oid} AND status IN ('pending', 'succeeded')) + {amt} <= "
            ))
            .bind(captured.to_minor_units());
        let inserted = txn.execute_raw(sql.build(backend)).await.repo()?;
        if inserted.rows_affected() == 1 {
            txn.commit().await.repo()?;
            debug!(amount = %refund.amount, "refund recorded as pending");
            return Ok(());
        }
        let mut held = Sql::new(
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM refunds \
             WHERE status IN ('pending', 'succeeded') AND order_id = ",
        );
        held.bind(order_id);
        let held: i64 = match txn.query_one_raw(held.build(backend)).await.repo()? {
            Some(row) => row.try_get_by_index(0).repo()?,
            None => 0,
        };
        let left = (captured.to_minor_units() - held).max(0);
        let remaining = Money::from_minor_units(left, captured.currency())
            .map_err(|e| RepositoryError::Unexpected(e.to_string()))?;
        Err(RepositoryError::RefundExceedsPayment { remaining })
    }

    #[instrument(skip_all, fields(order_id = %order.id(), %refund_id))]
    async fn complete_refund(
        &self,
        refund_id: RefundId,
        provider_refund_id: &str,
        order: &Order,
        expected_version: u64,
        changes: &[OrderChange],
    ) -> Result<Refund, RepositoryError> {
        let backend = self.db_backend();
        let txn = self.begin_write().await.repo()?;
        let mut sql = Sql::new("UPDATE refunds SET status = 'succeeded', provider_refund_id = ");
        sql.bind(provider_refund_id)
            .push(", updated_at = ")
            .bind(micros(order.updated_at()))
            .push(" WHERE id = ")
            .bind(refund_id.as_uuid());
        if txn
            .execute_raw(sql.build(backend))
            .await
            .repo()?
            .rows_affected()
            == 0
        {
            return Err(RepositoryError::NotFound);
        }
        let txn = self.save_in(txn, order, expected_version, changes).await?;
        let row = refunds::Entity::find_by_id(refund_id.as_uuid())
            .one(&*txn)
            .await
            .repo()?
            .ok_or(RepositoryError::NotFound)?;
        let refund = convert::refund(&row)?;
        txn.commit().await.repo()?;
        Ok(refund)
    }

    async fn fail_refund(&self, refund_id: RefundId, reason: &str) -> Result<(), RepositoryError> {
        let mut sql = Sql::new("UPDATE refunds SET status = 'failed', failure_reason = ");
        sql.bind(reason)
            .push(", updated_at = ")
            .bind(micros(OffsetDateTime::now_utc()))
            .push(" WHERE status = 'pending' AND id = ")
            .bind(refund_id.as_uuid());
        let done = self.exec_write(sql.build(self.db_backend())).await.repo()?;
        if done == 0 {
            // Already settled is fine; unknown is not.
            self.get_refund(refund_id).await?;
        }
        Ok(())
    }

    async fn get_refund(&self, refund_id: RefundId) -> Result<Refund, RepositoryError> {
        let row = refunds::Entity::find_by_id(refund_id.as_uuid())
            .one(&self.reader)
            .await
            .repo()?
            .ok_or(RepositoryError::NotFound)?;
        convert::refund(&row)
    }

    async fn find_by_payment_intent(&self, intent_id: &str) -> Result<Order, RepositoryError> {
        let row = orders::Entity::find()
            .filter(orders::Column::PaymentIntentId.eq(intent_id))
            .order_by_desc(orders::Column::Id)
            .one(&self.reader)
            .await
            .repo()?;
        self.load_one(&self.reader, row).await
    }

    async fn record_webhook_event(
        &self,
        provider: &str,
        event_id: &str,
        event_type: &str,
        received_at: OffsetDateTime,
    ) -> Result<bool, RepositoryError> {
        let mut sql = Sql::new(
            "INSERT INTO webhook_inbox (provider, event_id, event_type, received_at) VALUES ",
        );
        sql.tuple([
            provider.into(),
            event_id.into(),
            event_type.into(),
            micros(received_at).into(),
        ])
        .push(" ON CONFLICT (provider, event_id) DO NOTHING");
        let done = self.exec_write(sql.build(self.db_backend())).await.repo()?;
        Ok(done == 1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use sea_orm::{DbBackend, QueryTrait};

    use super::*;

    /// The sweeps' queries, as the store runs them.
    fn sweeps(backend: DbBackend) -> Vec<sea_orm::Statement> {
        let now = OffsetDateTime::now_utc();
        vec![
            expired_reservations(&[OrderState::Reserved, OrderState::ProcessingPayment], now)
                .build(backend),
            unconfirmed_reservations().build(backend),
        ]
    }

    /// The sweeps search the index of open reservations: a partial index,
    /// which a query may use only when its condition implies the index's.
    #[tokio::test]
    async fn sqlite_sweeps_search_the_open_reservations() {
        let db = crate::plan_check::FreshSqlite::new().await;
        for st in sweeps(DbBackend::Sqlite) {
            let details = db.plan(&st).await;
            assert!(
                details
                    .iter()
                    .any(|d| d.starts_with("SEARCH orders USING INDEX orders_open_reservation")),
                "{details:?}"
            );
        }
        db.finish().await;
    }

    /// The same on PostgreSQL, with scans priced out so that the plan
    /// shows whether the index can serve the query at all.
    #[tokio::test]
    async fn postgres_sweeps_can_use_the_open_reservations_index() {
        let Some(db) = crate::plan_check::FreshPostgres::new().await else {
            return;
        };
        for st in sweeps(DbBackend::Postgres) {
            db.assert_can_use_index(&st, "orders_open_reservation")
                .await;
        }
        db.finish().await;
    }
}
