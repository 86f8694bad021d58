//! `OrderRepository` and the `OrderStockLedger` fast path.

use std::collections::HashMap;

use async_trait::async_trait;
use checkout_domain::{
    AuditEntry, BookId, Money, Order, OrderChange, OrderId, OrderState, RefundId,
};
use checkout_ports::{
    InventoryError, LedgerError, NewRefund, OrderPage, OrderQuery, OrderRepository,
    OrderStockLedger, Refund, RefundRecordStatus, RepositoryError, ReservationRequest, StockEffect,
};
use sea_orm::{ConnectionTrait, DbErr, QueryResult, TransactionTrait, Value};
use time::OffsetDateTime;

use crate::convert::{self, ORDER_COLUMN_COUNT, ORDER_COLUMNS, get, i, opt_s, s, ts};
use crate::error;
use crate::{SqlStore, placeholders, rows_placeholders};

const AUDIT_COLS: &str = "order_id, previous_state, new_state, reason, metadata, actor, at";
const OUTBOX_COLS: &str = "id, order_id, sequence, event_type, payload, occurred_at";

impl SqlStore {
    /// Inserts the order row, its items and its changes.
    pub(crate) async fn insert_order(
        &self,
        c: &impl ConnectionTrait,
        order: &Order,
        changes: &[OrderChange],
    ) -> Result<(), DbErr> {
        self.exec(
            c,
            &format!(
                "INSERT INTO orders ({ORDER_COLUMNS}) VALUES ({})",
                placeholders(ORDER_COLUMN_COUNT)
            ),
            convert::order_values(order),
        )
        .await?;
        let lines = order.lines();
        if !lines.is_empty() {
            let mut values = Vec::with_capacity(lines.len() * 6);
            for (n, l) in lines.iter().enumerate() {
                values.extend([
                    s(order.id().to_string()),
                    i(n as i64),
                    s(l.book_id.as_str()),
                    i(i64::from(l.quantity.get())),
                    Value::from(l.unit_price.map(|m| m.to_minor_units())),
                    Value::from(l.expected_unit_price.map(|m| m.to_minor_units())),
                ]);
            }
            let q = format!(
                "INSERT INTO order_items (order_id, line, book_id, quantity, unit_price_minor, expected_unit_price_minor) VALUES {}",
                rows_placeholders(lines.len(), 6)
            );
            self.exec(c, &q, values).await?;
        }
        self.write_changes(c, order, changes).await
    }

    /// Updates the order row over `expected`; `false` when the version moved.
    pub(crate) async fn update_order(
        &self,
        c: &impl ConnectionTrait,
        order: &Order,
        expected: u64,
    ) -> Result<bool, DbErr> {
        let mut values = convert::order_values(order);
        // Every column but the id, then the id and the expected version.
        let id = values.remove(0);
        let sets: Vec<String> = ORDER_COLUMNS
            .split(", ")
            .skip(1)
            .map(|c| format!("{} = ?", c.trim()))
            .collect();
        values.push(id);
        values.push(i(i64::try_from(expected).unwrap_or(i64::MAX)));
        let q = format!(
            "UPDATE orders SET {} WHERE id = ? AND version = ?",
            sets.join(", ")
        );
        Ok(self.exec(c, &q, values).await?.rows_affected() == 1)
    }

    /// Audit entries and outbox events, one multi-row insert each; the
    /// current payment attempt mirrored into `payment_attempts`.
    async fn write_changes(
        &self,
        c: &impl ConnectionTrait,
        order: &Order,
        changes: &[OrderChange],
    ) -> Result<(), DbErr> {
        if !changes.is_empty() {
            let mut values = Vec::with_capacity(changes.len() * 7);
            for ch in changes {
                let a = &ch.audit;
                values.extend([
                    s(a.order_id.to_string()),
                    opt_s(a.previous_state.map(|p| p.as_str())),
                    s(a.new_state.as_str()),
                    s(a.reason.clone()),
                    s(a.metadata.to_string()),
                    opt_s(a.actor.clone()),
                    i(ts(a.at)),
                ]);
            }
            self.exec(
                c,
                &format!(
                    "INSERT INTO audit_log ({AUDIT_COLS}) VALUES {}",
                    rows_placeholders(changes.len(), 7)
                ),
                values,
            )
            .await?;
            let events: Vec<_> = changes.iter().flat_map(|ch| ch.events.iter()).collect();
            if !events.is_empty() {
                let mut values = Vec::with_capacity(events.len() * 6);
                for e in &events {
                    values.extend([
                        s(e.id.to_string()),
                        s(e.order_id.to_string()),
                        i(i64::from(e.sequence)),
                        s(e.event_type()),
                        s(e.to_json().to_string()),
                        i(ts(e.occurred_at)),
                    ]);
                }
                self.exec(
                    c,
                    &format!(
                        "INSERT INTO outbox_events ({OUTBOX_COLS}) VALUES {}",
                        rows_placeholders(events.len(), 6)
                    ),
                    values,
                )
                .await?;
            }
        }
        if let Some(p) = order.payment() {
            let now = ts(order.updated_at());
            let q = "INSERT INTO payment_attempts (order_id, attempt, provider, idempotency_key, intent_id, transaction_id, status, \
                     failure_code, failure_message, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (order_id, attempt) DO UPDATE SET intent_id = excluded.intent_id, transaction_id = excluded.transaction_id, \
                     status = excluded.status, failure_code = excluded.failure_code, failure_message = excluded.failure_message, \
                     updated_at = excluded.updated_at";
            self.exec(
                c,
                q,
                vec![
                    s(order.id().to_string()),
                    i(i64::from(p.attempt)),
                    s(p.provider.clone()),
                    s(p.idempotency_key.clone()),
                    opt_s(p.intent_id.clone()),
                    opt_s(p.transaction_id.clone()),
                    s(p.status.as_str()),
                    opt_s(p.failure_code.clone()),
                    opt_s(p.failure_message.clone()),
                    i(now),
                    i(now),
                ],
            )
            .await?;
        }
        Ok(())
    }

    /// Orders matching `filter` (SQL after `WHERE`), with their items.
    pub(crate) async fn load_orders(
        &self,
        c: &impl ConnectionTrait,
        tail: &str,
        values: Vec<Value>,
    ) -> Result<Vec<Order>, DbErr> {
        let rows = self
            .all(
                c,
                &format!("SELECT {ORDER_COLUMNS} FROM orders {tail}"),
                values,
            )
            .await?;
        if rows.is_empty() {
            return Ok(vec![]);
        }
        let ids: Vec<String> = rows
            .iter()
            .map(|r| get::<String>(r, "id"))
            .collect::<Result<_, _>>()?;
        let items = self
            .all(
                c,
                &format!(
                    "SELECT order_id, book_id, quantity, unit_price_minor, expected_unit_price_minor FROM order_items WHERE order_id IN ({}) ORDER BY order_id, line",
                    placeholders(ids.len())
                ),
                ids.iter().map(|id| s(id.clone())).collect(),
            )
            .await?;
        let mut by_order: HashMap<String, Vec<convert::ItemRow>> = HashMap::new();
        for row in &items {
            let (oid, item) = convert::item_row(row)?;
            by_order.entry(oid).or_default().push(item);
        }
        rows.iter()
            .zip(ids)
            .map(|(row, id)| convert::order_from(row, by_order.remove(&id).unwrap_or_default()))
            .collect()
    }

    async fn save_in(
        &self,
        c: &impl ConnectionTrait,
        order: &Order,
        expected: u64,
        changes: &[OrderChange],
    ) -> Result<(), RepositoryError> {
        if !self
            .update_order(c, order, expected)
            .await
            .map_err(error::repo)?
        {
            let exists = self
                .one(
                    c,
                    "SELECT version FROM orders WHERE id = ?",
                    vec![s(order.id().to_string())],
                )
                .await
                .map_err(error::repo)?;
            return Err(if exists.is_some() {
                RepositoryError::Conflict(order.id())
            } else {
                RepositoryError::NotFound
            });
        }
        self.write_changes(c, order, changes)
            .await
            .map_err(error::repo)
    }
}

fn refund_from(row: &QueryResult, currency: checkout_domain::Currency) -> Result<Refund, DbErr> {
    Ok(Refund {
        id: RefundId::from_uuid(convert::uuid(&get::<String>(row, "id")?)?),
        order_id: OrderId::from_uuid(convert::uuid(&get::<String>(row, "order_id")?)?),
        amount: convert::money(get(row, "amount_minor")?, currency)?,
        status: match get::<String>(row, "status")?.as_str() {
            "pending" => RefundRecordStatus::Pending,
            "succeeded" => RefundRecordStatus::Succeeded,
            _ => RefundRecordStatus::Failed,
        },
        provider_refund_id: get(row, "provider_refund_id")?,
        reason: get(row, "reason")?,
        created_at: convert::from_ts(get(row, "created_at")?)?,
    })
}

const REFUND_SELECT: &str = "SELECT r.id, r.order_id, r.amount_minor, r.status, r.provider_refund_id, r.reason, r.created_at, o.currency \
     FROM refunds r JOIN orders o ON o.id = r.order_id WHERE r.id = ?";

#[async_trait]
impl OrderRepository for SqlStore {
    async fn create(&self, order: &Order, changes: &[OrderChange]) -> Result<(), RepositoryError> {
        let tx = self.db.begin().await.map_err(error::repo)?;
        self.insert_order(&tx, order, changes)
            .await
            .map_err(error::repo)?;
        tx.commit().await.map_err(error::repo)
    }

    async fn save(
        &self,
        order: &Order,
        expected_version: u64,
        changes: &[OrderChange],
    ) -> Result<(), RepositoryError> {
        let tx = self.db.begin().await.map_err(error::repo)?;
        self.save_in(&tx, order, expected_version, changes).await?;
        tx.commit().await.map_err(error::repo)
    }

    async fn get(&self, id: OrderId) -> Result<Order, RepositoryError> {
        self.load_orders(&self.db, "WHERE id = ?", vec![s(id.to_string())])
            .await
            .map_err(error::repo)?
            .pop()
            .ok_or(RepositoryError::NotFound)
    }

    async fn list(&self, q: &OrderQuery) -> Result<OrderPage, RepositoryError> {
        let mut clauses = Vec::new();
        let mut values = Vec::new();
        if let Some(c) = &q.customer_id {
            clauses.push("customer_id = ?");
            values.push(s(c.as_str()));
        }
        if let Some(st) = q.state {
            clauses.push("state = ?");
            values.push(s(st.as_str()));
        }
        if let Some(b) = q.before {
            clauses.push("id < ?");
            values.push(s(b.to_string()));
        }
        let filter = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        values.push(i(i64::from(q.limit)));
        let orders = self
            .load_orders(
                &self.db,
                &format!("{filter} ORDER BY id DESC LIMIT ?"),
                values,
            )
            .await
            .map_err(error::repo)?;
        let next = (orders.len() as u32 == q.limit)
            .then(|| orders.last().map(|o| o.id()))
            .flatten();
        Ok(OrderPage { orders, next })
    }

    async fn audit_trail(&self, id: OrderId) -> Result<Vec<AuditEntry>, RepositoryError> {
        let exists = self
            .one(
                &self.db,
                "SELECT id FROM orders WHERE id = ?",
                vec![s(id.to_string())],
            )
            .await
            .map_err(error::repo)?;
        if exists.is_none() {
            return Err(RepositoryError::NotFound);
        }
        let rows = self
            .all(
                &self.db,
                &format!("SELECT {AUDIT_COLS} FROM audit_log WHERE order_id = ? ORDER BY id"),
                vec![s(id.to_string())],
            )
            .await
            .map_err(error::repo)?;
        rows.iter()
            .map(|r| -> Result<AuditEntry, DbErr> {
                let state = |v: String| {
                    v.parse::<OrderState>()
                        .map_err(|e| convert::corrupt(e.to_string()))
                };
                Ok(AuditEntry {
                    order_id: id,
                    previous_state: get::<Option<String>>(r, "previous_state")?
                        .map(state)
                        .transpose()?,
                    new_state: state(get(r, "new_state")?)?,
                    reason: get(r, "reason")?,
                    metadata: serde_json::from_str(&get::<String>(r, "metadata")?)
                        .unwrap_or(serde_json::Value::Null),
                    actor: get(r, "actor")?,
                    at: convert::from_ts(get(r, "at")?)?,
                })
            })
            .collect::<Result<_, _>>()
            .map_err(error::repo)
    }

    async fn find_stale(
        &self,
        state: OrderState,
        updated_before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Order>, RepositoryError> {
        self.load_orders(
            &self.db,
            "WHERE state = ? AND updated_at < ? ORDER BY updated_at LIMIT ?",
            vec![
                s(state.as_str()),
                i(ts(updated_before)),
                i(i64::from(limit)),
            ],
        )
        .await
        .map_err(error::repo)
    }

    async fn find_expired_reservations(
        &self,
        states: &[OrderState],
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Order>, RepositoryError> {
        if states.is_empty() {
            return Ok(vec![]);
        }
        let mut values: Vec<Value> = states.iter().map(|st| s(st.as_str())).collect();
        values.push(i(ts(now)));
        values.push(i(i64::from(limit)));
        self.load_orders(
            &self.db,
            &format!(
                "WHERE state IN ({}) AND reservation_status = 'active' AND reservation_expires_at < ? ORDER BY reservation_expires_at LIMIT ?",
                placeholders(states.len())
            ),
            values,
        )
        .await
        .map_err(error::repo)
    }

    async fn find_unconfirmed_reservations(
        &self,
        limit: u32,
    ) -> Result<Vec<Order>, RepositoryError> {
        self.load_orders(
            &self.db,
            "WHERE reservation_status = 'confirm_pending' ORDER BY updated_at LIMIT ?",
            vec![i(i64::from(limit))],
        )
        .await
        .map_err(error::repo)
    }

    async fn begin_refund(
        &self,
        refund: &NewRefund,
        captured: Money,
    ) -> Result<(), RepositoryError> {
        let tx = self.db.begin().await.map_err(error::repo)?;
        let oid = s(refund.order_id.to_string());
        if self.pg {
            // Concurrent refunds of one order queue here.
            self.exec(
                &tx,
                "SELECT id FROM orders WHERE id = ? FOR UPDATE",
                vec![oid.clone()],
            )
            .await
            .map_err(error::repo)?;
        }
        let now = i(ts(refund.created_at));
        let amount = refund.amount.to_minor_units();
        let inserted = self
            .exec(
                &tx,
                "INSERT INTO refunds (id, order_id, amount_minor, status, reason, created_at, updated_at) \
                 SELECT ?, ?, ?, 'pending', ?, ?, ? \
                 WHERE (SELECT COALESCE(SUM(amount_minor), 0) FROM refunds WHERE order_id = ? AND status <> 'failed') + ? <= ?",
                vec![
                    s(refund.id.to_string()),
                    oid.clone(),
                    i(amount),
                    opt_s(refund.reason.clone()),
                    now.clone(),
                    now,
                    oid.clone(),
                    i(amount),
                    i(captured.to_minor_units()),
                ],
            )
            .await
            .map_err(error::repo)?
            .rows_affected();
        if inserted == 0 {
            let held = self
                .one(&tx, "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) AS held FROM refunds WHERE order_id = ? AND status <> 'failed'", vec![oid])
                .await
                .map_err(error::repo)?
                .map(|r| get::<i64>(&r, "held"))
                .transpose()
                .map_err(error::repo)?
                .unwrap_or(0);
            let remaining = Money::from_minor_units(
                (captured.to_minor_units() - held).max(0),
                captured.currency(),
            )
            .map_err(|e| RepositoryError::Unexpected(e.to_string()))?;
            return Err(RepositoryError::RefundExceedsPayment { remaining });
        }
        tx.commit().await.map_err(error::repo)
    }

    async fn complete_refund(
        &self,
        refund_id: RefundId,
        provider_refund_id: &str,
        order: &Order,
        expected_version: u64,
        changes: &[OrderChange],
    ) -> Result<Refund, RepositoryError> {
        let tx = self.db.begin().await.map_err(error::repo)?;
        let updated = self
            .exec(
                &tx,
                "UPDATE refunds SET status = 'succeeded', provider_refund_id = ?, updated_at = ? WHERE id = ?",
                vec![s(provider_refund_id), i(ts(order.updated_at())), s(refund_id.to_string())],
            )
            .await
            .map_err(error::repo)?;
        if updated.rows_affected() == 0 {
            return Err(RepositoryError::NotFound);
        }
        self.save_in(&tx, order, expected_version, changes).await?;
        let row = self
            .one(&tx, REFUND_SELECT, vec![s(refund_id.to_string())])
            .await
            .map_err(error::repo)?
            .ok_or(RepositoryError::NotFound)?;
        let refund = refund_from(&row, order.currency()).map_err(error::repo)?;
        tx.commit().await.map_err(error::repo)?;
        Ok(refund)
    }

    async fn fail_refund(&self, refund_id: RefundId, reason: &str) -> Result<(), RepositoryError> {
        let r = self
            .exec(
                &self.db,
                "UPDATE refunds SET status = 'failed', reason = COALESCE(reason, ?) WHERE id = ? AND status = 'pending'",
                vec![s(reason), s(refund_id.to_string())],
            )
            .await
            .map_err(error::repo)?;
        if r.rows_affected() == 0 {
            Err(RepositoryError::NotFound)
        } else {
            Ok(())
        }
    }

    async fn get_refund(&self, refund_id: RefundId) -> Result<Refund, RepositoryError> {
        let row = self
            .one(&self.db, REFUND_SELECT, vec![s(refund_id.to_string())])
            .await
            .map_err(error::repo)?
            .ok_or(RepositoryError::NotFound)?;
        let cur = convert::currency(&get::<String>(&row, "currency").map_err(error::repo)?)
            .map_err(error::repo)?;
        refund_from(&row, cur).map_err(error::repo)
    }

    async fn find_by_payment_intent(&self, intent_id: &str) -> Result<Order, RepositoryError> {
        self.load_orders(&self.db, "WHERE payment_intent_id = ?", vec![s(intent_id)])
            .await
            .map_err(error::repo)?
            .pop()
            .ok_or(RepositoryError::NotFound)
    }

    async fn record_webhook_event(
        &self,
        provider: &str,
        event_id: &str,
        event_type: &str,
        received_at: OffsetDateTime,
    ) -> Result<bool, RepositoryError> {
        let r = self
            .exec(
                &self.db,
                "INSERT INTO webhook_inbox (provider, event_id, event_type, received_at) VALUES (?, ?, ?, ?) ON CONFLICT (provider, event_id) DO NOTHING",
                vec![s(provider), s(event_id), s(event_type), i(ts(received_at))],
            )
            .await
            .map_err(error::repo)?;
        Ok(r.rows_affected() == 1)
    }
}

#[async_trait]
impl OrderStockLedger for SqlStore {
    async fn catalog_prices(
        &self,
        books: &[BookId],
    ) -> Result<Vec<(BookId, Money)>, InventoryError> {
        if books.is_empty() {
            return Ok(vec![]);
        }
        let rows = self
            .all(
                &self.db,
                &format!(
                    "SELECT book_id, price_minor, currency FROM stock WHERE book_id IN ({})",
                    placeholders(books.len())
                ),
                books.iter().map(|b| s(b.as_str())).collect(),
            )
            .await
            .map_err(error::inventory)?;
        rows.iter()
            .map(|r| -> Result<(BookId, Money), DbErr> {
                let cur = convert::currency(&get::<String>(r, "currency")?)?;
                Ok((
                    convert::book(get(r, "book_id")?)?,
                    convert::money(get(r, "price_minor")?, cur)?,
                ))
            })
            .collect::<Result<_, _>>()
            .map_err(error::inventory)
    }

    async fn create_with_reservation(
        &self,
        order: &Order,
        changes: &[OrderChange],
        reservation: &ReservationRequest,
        prices: &[(BookId, Money)],
    ) -> Result<(), LedgerError> {
        let tx = self.db.begin().await.map_err(error::repo)?;
        if let Err(e) = self.hold_stock(&tx, reservation, Some(prices)).await {
            drop(tx);
            return Err(match e {
                crate::stock::HoldError::Db(e) => LedgerError::Inventory(error::inventory(e)),
                crate::stock::HoldError::Refused => {
                    LedgerError::Inventory(self.why_refused(reservation, Some(prices)).await)
                }
            });
        }
        self.insert_order(&tx, order, changes)
            .await
            .map_err(error::repo)?;
        tx.commit().await.map_err(error::repo)?;
        Ok(())
    }

    async fn save_with_stock(
        &self,
        order: &Order,
        expected_version: u64,
        changes: &[OrderChange],
        effect: StockEffect,
    ) -> Result<(), LedgerError> {
        let tx = self.db.begin().await.map_err(error::repo)?;
        let now = ts(order.updated_at());
        match effect {
            StockEffect::Confirm(id) => self.confirm_in(&tx, id, now).await?,
            StockEffect::Release(id) => self
                .release_in(&tx, id, now)
                .await
                .map_err(error::inventory)?,
        }
        self.save_in(&tx, order, expected_version, changes).await?;
        tx.commit().await.map_err(error::repo)?;
        Ok(())
    }
}
