//! In-memory fakes of the checkout's storage ports: orders, audit trail,
//! outbox, refunds, idempotency keys and local stock, behind one mutex.
//!
//! For unit tests and benchmarks that want real behaviour without a
//! database (the same compare-and-set, all-or-nothing and idempotency rules
//! as the SeaORM store), never for production: nothing is durable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use checkout_domain::{
    AuditEntry, BookId, IdempotencyKey, Money, Order, OrderChange, OrderId, OrderState,
    PriceMismatch, PricingProblem, RefundId, ReservationId, ReservationStatus, UnavailableItem,
};
use checkout_ports::{
    CatalogRead, IdempotencyBegin, IdempotencyError, IdempotencyStore, InventoryError,
    InventoryPort, LedgerError, NewRefund, OrderPage, OrderQuery, OrderRepository,
    OrderStockLedger, OutboxKey, OutboxRecord, OutboxStats, OutboxStore, Refund,
    RefundRecordStatus, RepositoryError, Reservation, ReservationLine, ReservationRequest,
    StockAdmin, StockEffect, StockItem, StoredResponse,
};
use time::OffsetDateTime;

#[derive(Debug, Clone)]
struct OutboxRow {
    record: OutboxRecord,
    published_at: Option<OffsetDateTime>,
    parked: bool,
    claimed_until: Option<OffsetDateTime>,
    next_attempt_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeldStatus {
    Active,
    Confirmed,
    Released,
}

#[derive(Debug, Clone)]
struct Held {
    status: HeldStatus,
    expires_at: OffsetDateTime,
    lines: Vec<ReservationLine>,
}

#[derive(Debug, Clone)]
struct KeyRow {
    fingerprint: String,
    response: Option<StoredResponse>,
    created_at: OffsetDateTime,
    locked_at: OffsetDateTime,
}

#[derive(Debug, Default)]
struct State {
    orders: HashMap<OrderId, Order>,
    audit: HashMap<OrderId, Vec<AuditEntry>>,
    outbox: Vec<OutboxRow>,
    /// (order, sequence) of every outbox row: the unique key the database
    /// enforces.
    sequences: std::collections::HashSet<(OrderId, u32)>,
    refunds: HashMap<RefundId, Refund>,
    webhooks: std::collections::HashSet<(String, String)>,
    keys: HashMap<(String, String), KeyRow>,
    stock: HashMap<BookId, StockItem>,
    reservations: HashMap<ReservationId, Held>,
}

/// Every storage port in memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock poisons it; the data is still the
        // last consistent write, so carry on with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Events written so far (published or not), in write order.
    pub fn outbox_events(&self) -> Vec<OutboxRecord> {
        self.lock()
            .outbox
            .iter()
            .map(|r| r.record.clone())
            .collect()
    }
}

fn write_changes(
    s: &mut State,
    order: &Order,
    changes: &[OrderChange],
) -> Result<(), RepositoryError> {
    for c in changes {
        for e in &c.events {
            if s.sequences.contains(&(e.order_id, e.sequence)) {
                return Err(RepositoryError::Duplicate(format!(
                    "outbox sequence {} of order {}",
                    e.sequence, e.order_id
                )));
            }
        }
    }
    for c in changes {
        s.audit.entry(order.id()).or_default().push(c.audit.clone());
        for e in &c.events {
            s.sequences.insert((e.order_id, e.sequence));
            s.outbox.push(OutboxRow {
                record: OutboxRecord {
                    id: e.id,
                    order_id: e.order_id,
                    sequence: e.sequence,
                    event_type: e.event_type().to_owned(),
                    payload: e.to_json(),
                    occurred_at: e.occurred_at,
                    attempts: 0,
                },
                published_at: None,
                parked: false,
                claimed_until: None,
                next_attempt_at: None,
            });
        }
    }
    s.orders.insert(order.id(), order.clone());
    Ok(())
}

fn save_locked(
    s: &mut State,
    order: &Order,
    expected: u64,
    changes: &[OrderChange],
) -> Result<(), RepositoryError> {
    let current = s.orders.get(&order.id()).ok_or(RepositoryError::NotFound)?;
    // As the SQL store: an order never changes customer.
    if current.version() != expected || current.customer_id() != order.customer_id() {
        return Err(RepositoryError::Conflict(order.id()));
    }
    write_changes(s, order, changes)
}

#[async_trait]
impl OrderRepository for MemoryStore {
    async fn create(&self, order: &Order, changes: &[OrderChange]) -> Result<(), RepositoryError> {
        let mut s = self.lock();
        if s.orders.contains_key(&order.id()) {
            return Err(RepositoryError::Duplicate(format!("order {}", order.id())));
        }
        write_changes(&mut s, order, changes)
    }

    async fn save(
        &self,
        order: &Order,
        expected_version: u64,
        changes: &[OrderChange],
    ) -> Result<(), RepositoryError> {
        save_locked(&mut self.lock(), order, expected_version, changes)
    }

    async fn get(&self, id: OrderId) -> Result<Order, RepositoryError> {
        self.lock()
            .orders
            .get(&id)
            .cloned()
            .ok_or(RepositoryError::NotFound)
    }

    async fn list(&self, q: &OrderQuery) -> Result<OrderPage, RepositoryError> {
        let s = self.lock();
        let mut orders: Vec<Order> = s
            .orders
            .values()
            .filter(|o| q.customer_id.as_ref().is_none_or(|c| o.customer_id() == c))
            .filter(|o| q.state.is_none_or(|st| o.state() == st))
            .filter(|o| q.before.is_none_or(|b| o.id() < b))
            .cloned()
            .collect();
        orders.sort_by_key(|o| std::cmp::Reverse(o.id()));
        orders.truncate(q.limit as usize);
        let next = (orders.len() == q.limit as usize)
            .then(|| orders.last().map(|o| o.id()))
            .flatten();
        Ok(OrderPage { orders, next })
    }

    async fn audit_trail(&self, id: OrderId) -> Result<Vec<AuditEntry>, RepositoryError> {
        let s = self.lock();
        if !s.orders.contains_key(&id) {
            return Err(RepositoryError::NotFound);
        }
        Ok(s.audit.get(&id).cloned().unwrap_or_default())
    }

    async fn find_stale(
        &self,
        state: OrderState,
        updated_before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Order>, RepositoryError> {
        let s = self.lock();
        let mut v: Vec<Order> = s
            .orders
            .values()
            .filter(|o| o.state() == state && o.updated_at() < updated_before)
            .cloned()
            .collect();
        v.sort_by_key(|o| o.updated_at());
        v.truncate(limit as usize);
        Ok(v)
    }

    async fn find_expired_reservations(
        &self,
        states: &[OrderState],
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Order>, RepositoryError> {
        let s = self.lock();
        let mut v: Vec<Order> = s
            .orders
            .values()
            .filter(|o| states.contains(&o.state()))
            .filter(|o| {
                o.reservation()
                    .is_some_and(|r| r.status == ReservationStatus::Active && r.expires_at < now)
            })
            .cloned()
            .collect();
        v.truncate(limit as usize);
        Ok(v)
    }

    async fn find_unconfirmed_reservations(
        &self,
        limit: u32,
    ) -> Result<Vec<Order>, RepositoryError> {
        let s = self.lock();
        let mut v: Vec<Order> = s
            .orders
            .values()
            .filter(|o| {
                o.reservation()
                    .is_some_and(|r| r.status == ReservationStatus::ConfirmPending)
            })
            .cloned()
            .collect();
        v.truncate(limit as usize);
        Ok(v)
    }

    async fn begin_refund(
        &self,
        refund: &NewRefund,
        captured: Money,
    ) -> Result<(), RepositoryError> {
        let mut s = self.lock();
        let held = s
            .refunds
            .values()
            .filter(|r| r.order_id == refund.order_id && r.status != RefundRecordStatus::Failed)
            .try_fold(Money::zero(captured.currency()), |acc, r| {
                acc.checked_add(&r.amount)
            })
            .map_err(|e| RepositoryError::Unexpected(e.to_string()))?;
        let remaining = captured
            .checked_sub(&held)
            .unwrap_or(Money::zero(captured.currency()));
        if refund.amount > remaining {
            return Err(RepositoryError::RefundExceedsPayment { remaining });
        }
        s.refunds.insert(
            refund.id,
            Refund {
                id: refund.id,
                order_id: refund.order_id,
                amount: refund.amount,
                status: RefundRecordStatus::Pending,
                provider_refund_id: None,
                reason: refund.reason.clone(),
                created_at: refund.created_at,
            },
        );
        Ok(())
    }

    async fn complete_refund(
        &self,
        refund_id: RefundId,
        provider_refund_id: &str,
        order: &Order,
        expected_version: u64,
        changes: &[OrderChange],
    ) -> Result<Refund, RepositoryError> {
        let mut s = self.lock();
        if !s.refunds.contains_key(&refund_id) {
            return Err(RepositoryError::NotFound);
        }
        save_locked(&mut s, order, expected_version, changes)?;
        let r = s
            .refunds
            .get_mut(&refund_id)
            .ok_or(RepositoryError::NotFound)?;
        r.status = RefundRecordStatus::Succeeded;
        r.provider_refund_id = Some(provider_refund_id.to_owned());
        Ok(r.clone())
    }

    async fn fail_refund(&self, refund_id: RefundId, _reason: &str) -> Result<(), RepositoryError> {
        let mut s = self.lock();
        let r = s
            .refunds
            .get_mut(&refund_id)
            .ok_or(RepositoryError::NotFound)?;
        r.status = RefundRecordStatus::Failed;
        Ok(())
    }

    async fn get_refund(&self, refund_id: RefundId) -> Result<Refund, RepositoryError> {
        self.lock()
            .refunds
            .get(&refund_id)
            .cloned()
            .ok_or(RepositoryError::NotFound)
    }

    async fn find_by_payment_intent(&self, intent_id: &str) -> Result<Order, RepositoryError> {
        self.lock()
            .orders
            .values()
            .find(|o| o.payment().and_then(|p| p.intent_id.as_deref()) == Some(intent_id))
            .cloned()
            .ok_or(RepositoryError::NotFound)
    }

    async fn record_webhook_event(
        &self,
        provider: &str,
        event_id: &str,
        _event_type: &str,
        _at: OffsetDateTime,
    ) -> Result<bool, RepositoryError> {
        Ok(self
            .lock()
            .webhooks
            .insert((provider.to_owned(), event_id.to_owned())))
    }
}

#[async_trait]
impl InventoryPort for MemoryStore {
    async fn reserve(&self, req: &ReservationRequest) -> Result<Reservation, InventoryError> {
        let mut s = self.lock();
        if let Some(h) = s.reservations.get(&req.reservation_id) {
            return Ok(Reservation {
                id: req.reservation_id,
                expires_at: h.expires_at,
                lines: h.lines.clone(),
            });
        }
        let mut unknown = Vec::new();
        let mut mismatches = Vec::new();
        let mut short = Vec::new();
        let mut lines = Vec::new();
        for l in &req.lines {
            let Some(item) = s.stock.get(&l.book_id) else {
                unknown.push(l.book_id.clone());
                continue;
            };
            if item.price.currency() != req.currency {
                return Err(InventoryError::Pricing(PricingProblem::CurrencyMismatch {
                    catalog: item.price.currency(),
                    order: req.currency,
                }));
            }
            if let Some(expected) = l.expected_unit_price.filter(|e| *e != item.price) {
                mismatches.push(PriceMismatch {
                    book_id: l.book_id.clone(),
                    expected,
                    catalog: item.price,
                });
            }
            if item.available < l.quantity.get() {
                short.push(UnavailableItem {
                    book_id: l.book_id.clone(),
                    requested: l.quantity.get(),
                    available: item.available,
                });
            }
            lines.push(ReservationLine {
                book_id: l.book_id.clone(),
                quantity: l.quantity,
                unit_price: item.price,
            });
        }
        if !unknown.is_empty() {
            return Err(InventoryError::Pricing(PricingProblem::UnknownBooks(
                unknown,
            )));
        }
        if !mismatches.is_empty() {
            return Err(InventoryError::Pricing(PricingProblem::PriceMismatch(
                mismatches,
            )));
        }
        if !short.is_empty() {
            return Err(InventoryError::Unavailable(short));
        }
        for l in &lines {
            if let Some(item) = s.stock.get_mut(&l.book_id) {
                item.available -= l.quantity.get();
                item.reserved += l.quantity.get();
            }
        }
        s.reservations.insert(
            req.reservation_id,
            Held {
                status: HeldStatus::Active,
                expires_at: req.expires_at,
                lines: lines.clone(),
            },
        );
        Ok(Reservation {
            id: req.reservation_id,
            expires_at: req.expires_at,
            lines,
        })
    }

    async fn confirm(&self, id: ReservationId) -> Result<(), InventoryError> {
        let mut s = self.lock();
        let held = s
            .reservations
            .get(&id)
            .cloned()
            .ok_or(InventoryError::NotFound)?;
        match held.status {
            HeldStatus::Confirmed => Ok(()),
            HeldStatus::Released => Err(InventoryError::ReservationGone(id)),
            HeldStatus::Active => {
                for l in &held.lines {
                    if let Some(item) = s.stock.get_mut(&l.book_id) {
                        item.reserved -= l.quantity.get();
                    }
                }
                if let Some(h) = s.reservations.get_mut(&id) {
                    h.status = HeldStatus::Confirmed;
                }
                Ok(())
            }
        }
    }

    async fn release(&self, id: ReservationId) -> Result<(), InventoryError> {
        let mut s = self.lock();
        release_locked(&mut s, id);
        Ok(())
    }

    async fn extend(
        &self,
        id: ReservationId,
        expires_at: OffsetDateTime,
    ) -> Result<(), InventoryError> {
        let mut s = self.lock();
        let h = s
            .reservations
            .get_mut(&id)
            .ok_or(InventoryError::NotFound)?;
        match h.status {
            HeldStatus::Active => {
                h.expires_at = expires_at;
                Ok(())
            }
            HeldStatus::Released => Err(InventoryError::ReservationGone(id)),
            HeldStatus::Confirmed => Ok(()),
        }
    }

    async fn release_expired(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, InventoryError> {
        let mut s = self.lock();
        let expired: Vec<ReservationId> = s
            .reservations
            .iter()
            .filter(|(_, h)| h.status == HeldStatus::Active && h.expires_at < now)
            .map(|(id, _)| *id)
            .take(limit as usize)
            .collect();
        for id in &expired {
            release_locked(&mut s, *id);
        }
        Ok(expired.len() as u64)
    }
}

fn release_locked(s: &mut State, id: ReservationId) {
    let Some(held) = s.reservations.get(&id).cloned() else {
        return;
    };
    if held.status != HeldStatus::Active {
        return;
    }
    for l in &held.lines {
        if let Some(item) = s.stock.get_mut(&l.book_id) {
            item.reserved -= l.quantity.get();
            item.available += l.quantity.get();
        }
    }
    if let Some(h) = s.reservations.get_mut(&id) {
        h.status = HeldStatus::Released;
    }
}

#[async_trait]
impl StockAdmin for MemoryStore {
    async fn upsert_stock(
        &self,
        book_id: &BookId,
        title: &str,
        price: Money,
        available: u32,
    ) -> Result<StockItem, InventoryError> {
        let mut s = self.lock();
        let reserved = s.stock.get(book_id).map(|i| i.reserved).unwrap_or(0);
        let item = StockItem {
            book_id: book_id.clone(),
            title: title.to_owned(),
            price,
            available,
            reserved,
        };
        s.stock.insert(book_id.clone(), item.clone());
        Ok(item)
    }

    async fn get_stock(&self, book_id: &BookId) -> Result<StockItem, InventoryError> {
        self.lock()
            .stock
            .get(book_id)
            .cloned()
            .ok_or(InventoryError::NotFound)
    }

    async fn list_stock(&self) -> Result<Vec<StockItem>, InventoryError> {
        let mut v: Vec<StockItem> = self.lock().stock.values().cloned().collect();
        v.sort_by(|a, b| a.book_id.cmp(&b.book_id));
        Ok(v)
    }
}

#[async_trait]
impl IdempotencyStore for MemoryStore {
    async fn begin(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        fingerprint: &str,
        now: OffsetDateTime,
        stale_before: OffsetDateTime,
    ) -> Result<IdempotencyBegin, IdempotencyError> {
        let mut s = self.lock();
        let k = (scope.to_owned(), key.as_str().to_owned());
        match s.keys.get_mut(&k) {
            None => {
                s.keys.insert(
                    k,
                    KeyRow {
                        fingerprint: fingerprint.to_owned(),
                        response: None,
                        created_at: now,
                        locked_at: now,
                    },
                );
                Ok(IdempotencyBegin::Started)
            }
            Some(row) if row.fingerprint != fingerprint => Ok(IdempotencyBegin::Mismatch),
            Some(row) => match &row.response {
                Some(r) => Ok(IdempotencyBegin::Replay(r.clone())),
                None if row.locked_at < stale_before => {
                    row.locked_at = now;
                    Ok(IdempotencyBegin::Started)
                }
                None => Ok(IdempotencyBegin::InFlight),
            },
        }
    }

    async fn complete(
        &self,
        scope: &str,
        key: &IdempotencyKey,
        response: &StoredResponse,
    ) -> Result<(), IdempotencyError> {
        let mut s = self.lock();
        if let Some(row) = s.keys.get_mut(&(scope.to_owned(), key.as_str().to_owned())) {
            row.response = Some(response.clone());
        }
        Ok(())
    }

    async fn abandon(&self, scope: &str, key: &IdempotencyKey) -> Result<(), IdempotencyError> {
        self.lock()
            .keys
            .remove(&(scope.to_owned(), key.as_str().to_owned()));
        Ok(())
    }

    async fn purge(&self, created_before: OffsetDateTime) -> Result<u64, IdempotencyError> {
        let mut s = self.lock();
        let before = s.keys.len();
        s.keys.retain(|_, r| r.created_at >= created_before);
        Ok((before - s.keys.len()) as u64)
    }
}

#[async_trait]
impl OutboxStore for MemoryStore {
    async fn claim_batch(
        &self,
        limit: u32,
        now: OffsetDateTime,
        lease_seconds: u32,
    ) -> Result<Vec<OutboxRecord>, RepositoryError> {
        let mut s = self.lock();
        let mut blocked: std::collections::HashSet<OrderId> = std::collections::HashSet::new();
        let mut picked = Vec::new();
        let mut order_of_rows: Vec<usize> = (0..s.outbox.len()).collect();
        order_of_rows.sort_by_key(|i| {
            (
                s.outbox[*i].record.occurred_at,
                s.outbox[*i].record.order_id,
                s.outbox[*i].record.sequence,
            )
        });
        for i in order_of_rows {
            let row = &s.outbox[i];
            if row.published_at.is_some() || row.parked {
                continue;
            }
            let oid = row.record.order_id;
            let claimable = row.claimed_until.is_none_or(|c| c <= now)
                && row.next_attempt_at.is_none_or(|n| n <= now);
            if !claimable || blocked.contains(&oid) {
                // An earlier event of this order is not ours to publish yet.
                blocked.insert(oid);
                continue;
            }
            if picked.len() >= limit as usize {
                break;
            }
            picked.push(i);
        }
        let until = now + time::Duration::seconds(i64::from(lease_seconds));
        Ok(picked
            .into_iter()
            .map(|i| {
                s.outbox[i].claimed_until = Some(until);
                s.outbox[i].record.clone()
            })
            .collect())
    }

    async fn mark_published(
        &self,
        events: &[OutboxKey],
        at: OffsetDateTime,
    ) -> Result<(), RepositoryError> {
        let mut s = self.lock();
        for row in s
            .outbox
            .iter_mut()
            .filter(|r| events.contains(&r.record.key()))
        {
            row.published_at = Some(at);
            row.claimed_until = None;
        }
        Ok(())
    }

    async fn record_failure(
        &self,
        event: OutboxKey,
        _error: &str,
        park: bool,
        retry_at: OffsetDateTime,
    ) -> Result<(), RepositoryError> {
        let mut s = self.lock();
        let row = s
            .outbox
            .iter_mut()
            .find(|r| r.record.key() == event)
            .ok_or(RepositoryError::NotFound)?;
        row.record.attempts += 1;
        row.parked = park;
        row.claimed_until = None;
        row.next_attempt_at = Some(retry_at);
        Ok(())
    }

    async fn purge_published(&self, before: OffsetDateTime) -> Result<u64, RepositoryError> {
        let mut s = self.lock();
        let n = s.outbox.len();
        s.outbox
            .retain(|r| r.published_at.is_none_or(|p| p >= before));
        Ok((n - s.outbox.len()) as u64)
    }

    async fn stats(&self, now: OffsetDateTime) -> Result<OutboxStats, RepositoryError> {
        let s = self.lock();
        let pending: Vec<&OutboxRow> = s
            .outbox
            .iter()
            .filter(|r| r.published_at.is_none() && !r.parked)
            .collect();
        let oldest = pending.iter().map(|r| r.record.occurred_at).min();
        Ok(OutboxStats {
            pending: pending.len() as u64,
            parked: s.outbox.iter().filter(|r| r.parked).count() as u64,
            oldest_pending_seconds: oldest
                .map(|o| (now - o).as_seconds_f64().max(0.0))
                .unwrap_or(0.0),
        })
    }
}

#[async_trait]
impl OrderStockLedger for MemoryStore {
    /// Always current: the stock is in this process's memory already.
    async fn catalog_prices(
        &self,
        books: &[BookId],
        _read: CatalogRead,
    ) -> Result<Vec<(BookId, Money)>, InventoryError> {
        let s = self.lock();
        Ok(books
            .iter()
            .filter_map(|b| s.stock.get(b).map(|i| (b.clone(), i.price)))
            .collect())
    }

    async fn create_with_reservation(
        &self,
        order: &Order,
        changes: &[OrderChange],
        reservation: &ReservationRequest,
        prices: &[(BookId, Money)],
    ) -> Result<(), LedgerError> {
        // One lock held throughout: the reservation and the order are one
        // atomic step, as one database transaction would make them.
        let mut s = self.lock();
        if s.orders.contains_key(&order.id()) {
            return Err(RepositoryError::Duplicate(format!("order {}", order.id())).into());
        }
        let mut mismatches = Vec::new();
        for l in &reservation.lines {
            let quoted = prices
                .iter()
                .find(|(b, _)| *b == l.book_id)
                .map(|(_, p)| *p);
            match (s.stock.get(&l.book_id), quoted) {
                (Some(item), Some(q)) if item.price != q => mismatches.push(PriceMismatch {
                    book_id: l.book_id.clone(),
                    expected: q,
                    catalog: item.price,
                }),
                (None, _) | (_, None) => {
                    return Err(InventoryError::Pricing(PricingProblem::UnknownBooks(vec![
                        l.book_id.clone(),
                    ]))
                    .into());
                }
                _ => {}
            }
        }
        if !mismatches.is_empty() {
            return Err(InventoryError::Pricing(PricingProblem::PriceMismatch(mismatches)).into());
        }
        let short: Vec<UnavailableItem> = reservation
            .lines
            .iter()
            .filter_map(|l| {
                let available = s.stock.get(&l.book_id).map(|i| i.available).unwrap_or(0);
                (available < l.quantity.get()).then(|| UnavailableItem {
                    book_id: l.book_id.clone(),
                    requested: l.quantity.get(),
                    available,
                })
            })
            .collect();
        if !short.is_empty() {
            return Err(InventoryError::Unavailable(short).into());
        }
        let mut lines = Vec::new();
        for l in &reservation.lines {
            if let Some(item) = s.stock.get_mut(&l.book_id) {
                item.available -= l.quantity.get();
                item.reserved += l.quantity.get();
                lines.push(ReservationLine {
                    book_id: l.book_id.clone(),
                    quantity: l.quantity,
                    unit_price: item.price,
                });
            }
        }
        s.reservations.insert(
            reservation.reservation_id,
            Held {
                status: HeldStatus::Active,
                expires_at: reservation.expires_at,
                lines,
            },
        );
        write_changes(&mut s, order, changes).map_err(Into::into)
    }

    async fn save_with_stock(
        &self,
        order: &Order,
        expected_version: u64,
        changes: &[OrderChange],
        effect: StockEffect,
    ) -> Result<(), LedgerError> {
        let mut s = self.lock();
        let current = s.orders.get(&order.id()).ok_or(RepositoryError::NotFound)?;
        if current.version() != expected_version {
            return Err(RepositoryError::Conflict(order.id()).into());
        }
        match effect {
            StockEffect::Confirm(id) => {
                let held = s
                    .reservations
                    .get(&id)
                    .cloned()
                    .ok_or(InventoryError::NotFound)?;
                match held.status {
                    HeldStatus::Released => return Err(InventoryError::ReservationGone(id).into()),
                    HeldStatus::Confirmed => {}
                    HeldStatus::Active => {
                        for l in &held.lines {
                            if let Some(item) = s.stock.get_mut(&l.book_id) {
                                item.reserved -= l.quantity.get();
                            }
                        }
                        if let Some(h) = s.reservations.get_mut(&id) {
                            h.status = HeldStatus::Confirmed;
                        }
                    }
                }
            }
            StockEffect::Release(id) => release_locked(&mut s, id),
        }
        write_changes(&mut s, order, changes).map_err(Into::into)
    }
}
