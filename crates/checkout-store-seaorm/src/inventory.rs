//! The local stock: `InventoryPort`, `StockAdmin` and `OrderStockLedger`
//! over the `stock`, `reservations` and `reservation_items` tables.
//!
//! Stock is only ever changed by conditional updates
//! (`available = available - q WHERE available >= q`), never by reading a
//! count and writing it back, so two checkouts can never sell the same
//! copy; the `CHECK (available >= 0)` of the table backs that up.
//! Reservation state changes are compare-and-set on `status`, which makes
//! confirm, release and the expiry sweep happen exactly once however many
//! service instances try at the same time. On PostgreSQL the stock rows a
//! transaction will touch are locked in `book_id` order first, so two
//! transactions touching the same books can't deadlock.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use checkout_domain::{
    BookId, Money, Order, OrderChange, PriceMismatch, PricingProblem, ReservationId,
    UnavailableItem,
};
use checkout_ports::{
    CatalogRead, InventoryError, InventoryPort, LedgerError, OrderStockLedger, RepositoryError,
    Reservation, ReservationRequest, StockAdmin, StockEffect, StockItem,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QueryResult, Value,
};
use time::OffsetDateTime;
use tracing::{debug, instrument};
use uuid::Uuid;

use crate::SeaOrmStore;
use crate::convert;
use crate::entity::{reservation_items, reservations, stock};
use crate::error::{DbResultExt, db_code};
use crate::sql::{
    Batch, ORDER_SAVED, REFUSED_WRITE, RESERVATION_SWITCHED, STOCK_TAKEN, Sql, from_micros,
    markers, micros,
};
use crate::sqlite_ledger::{Expect, Outcome, Statements};

/// One book's part of a reservation: the units to take and, for a quoted
/// reservation, the price (minor units) the book must still cost.
#[derive(Debug, Clone, Copy)]
struct Take<'a> {
    book: &'a str,
    units: u32,
    quoted: Option<i64>,
}

fn unexpected(e: RepositoryError) -> InventoryError {
    InventoryError::Unexpected(e.to_string())
}

/// Which prices a reservation must be made at.
#[derive(Debug, Clone, Copy)]
enum Quote<'a> {
    /// The catalog's current prices, checked against the prices the client
    /// saw (when it sent them).
    Catalog,
    /// Exactly these prices (read earlier by `catalog_prices`): a price that
    /// changed since is a mismatch.
    Quoted(&'a [(BookId, Money)]),
}

/// What a stock change does to a reservation's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adjust {
    /// Sold: the units leave `reserved`.
    Confirm,
    /// Given back: the units move from `reserved` to `available`.
    Release,
}

impl Adjust {
    /// The `SET` of the stock update, the units in `{from}.q`.
    fn set(self, from: &str) -> String {
        match self {
            Adjust::Confirm => format!("reserved = reserved - {from}.q"),
            Adjust::Release => {
                format!("available = available + {from}.q, reserved = reserved - {from}.q")
            }
        }
    }
}

/// Which lines of the reservations a stock adjustment counts.
#[derive(Debug, Clone, Copy)]
enum Lines<'a> {
    /// Every line: the caller has switched the reservations already.
    All,
    /// Lines of reservations still active (SQLite's save, whose switch
    /// follows in the same call).
    StillActive,
    /// Every line, if the part of the statement named here returned a row
    /// (PostgreSQL's save: the switch from `active`).
    IfSwitched(&'a str),
}

/// What a stock take returns after its marker: the book and the price it
/// was reserved at.
const TAKEN_COLUMNS: &[&str] = &["book_id", "price_minor"];

impl SeaOrmStore {
    /// The expiry sweep's pick: up to `limit` active reservations past
    /// their expiry, soonest expired first. The status is a literal: the
    /// index it searches holds active reservations only (a partial index,
    /// `m20261206_000010_open_reservation_indexes`).
    fn expired_reservation_pick(&self, now: OffsetDateTime, limit: u32) -> sea_orm::Statement {
        let mut pick =
            Sql::new("SELECT id FROM reservations WHERE status = 'active' AND expires_at < ");
        pick.bind(micros(now))
            .push(" ORDER BY expires_at LIMIT ")
            .bind(i64::from(limit));
        if self.is_postgres() {
            // Another instance sweeping right now keeps its rows; we take
            // the next ones instead of waiting.
            pick.push(" FOR UPDATE SKIP LOCKED");
        }
        pick.build(self.db_backend())
    }

    /// A reservation with its lines, if it exists.
    async fn load_reservation<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: Uuid,
    ) -> Result<Option<Reservation>, InventoryError> {
        let Some(row) = reservations::Entity::find_by_id(id).one(conn).await.inv()? else {
            return Ok(None);
        };
        let items = reservation_items::Entity::find()
            .filter(reservation_items::Column::ReservationId.eq(id))
            .order_by_asc(reservation_items::Column::LineNo)
            .all(conn)
            .await
            .inv()?;
        let lines = items
            .iter()
            .map(|i| convert::reservation_line(i, &row.currency))
            .collect::<Result<_, _>>()
            .map_err(unexpected)?;
        Ok(Some(Reservation {
            id: ReservationId::from_uuid(row.id),
            expires_at: from_micros(row.expires_at).map_err(InventoryError::Unexpected)?,
            lines,
        }))
    }

    /// Inserts the reservation row if it is new; `Some(existing)` when the
    /// id is already taken (a repeat, or a concurrent twin that won — the
    /// insert waits on its key): it is returned as it is.
    async fn claim_reservation_id(
        &self,
        txn: &DatabaseTransaction,
        req: &ReservationRequest,
    ) -> Result<Option<Reservation>, InventoryError> {
        let mut sql = Sql::default();
        Self::push_reservation_row(&mut sql, req);
        sql.push(" ON CONFLICT (id) DO NOTHING");
        let inserted = txn.execute_raw(sql.build(self.db_backend())).await.inv()?;
        if inserted.rows_affected() == 1 {
            return Ok(None);
        }
        debug!(reservation_id = %req.reservation_id, "reservation exists; returning it");
        self.load_reservation(txn, req.reservation_id.as_uuid())
            .await?
            .map(Some)
            .ok_or(InventoryError::NotFound)
    }

    fn push_reservation_row(sql: &mut Sql, req: &ReservationRequest) {
        let now = micros(OffsetDateTime::now_utc());
        sql.push(
            "INSERT INTO reservations (id, order_id, currency, status, expires_at, created_at, \
             updated_at) VALUES ",
        )
        .tuple([
            req.reservation_id.as_uuid().into(),
            req.order_id.as_uuid().into(),
            req.currency.code().into(),
            "active".into(),
            micros(req.expires_at).into(),
            now.into(),
            now.into(),
        ]);
    }

    /// Appends the statements that take the units of `req`: a conditional
    /// update of each book's stock row that also checks the catalog row is
    /// in the order's currency (and, for a quoted reservation, still at the
    /// quoted price) and returns the price it reserved at
    /// ([`STOCK_TAKEN`]); then the reservation row (when `new_row`) and its
    /// lines. No read comes first: `finish_reserve` works out what went
    /// wrong, if anything, from the rows that came back. Returns the units
    /// wanted per book.
    ///
    /// On PostgreSQL, where each statement is a round trip, several books
    /// are taken by one statement that first locks their rows in book
    /// order (a stable lock order, so two orders sharing books cannot
    /// deadlock); it is a gate that returns a row per book taken. Otherwise
    /// (one book, or SQLite's single call) it is one gate per book, in book
    /// order.
    fn push_reserve(
        batch: &mut Batch,
        req: &ReservationRequest,
        quote: Quote<'_>,
        new_row: bool,
    ) -> Result<Vec<(String, u32)>, InventoryError> {
        let now = micros(OffsetDateTime::now_utc());
        let mut wanted: BTreeMap<&str, u32> = BTreeMap::new();
        for line in &req.lines {
            *wanted.entry(line.book_id.as_str()).or_default() += line.quantity.get();
        }
        let mut takes = Vec::with_capacity(wanted.len());
        for (book, q) in &wanted {
            let quoted = match quote {
                Quote::Catalog => None,
                Quote::Quoted(prices) => match prices.iter().find(|(b, _)| b.as_str() == *book) {
                    Some((_, price)) => Some(price.to_minor_units()),
                    None => {
                        return Err(InventoryError::Pricing(PricingProblem::UnknownBooks(vec![
                            BookId::parse(*book)
                                .map_err(|e| InventoryError::Unexpected(e.to_string()))?,
                        ])));
                    }
                },
            };
            takes.push(Take {
                book,
                units: *q,
                quoted,
            });
        }
        if batch.joins_parts() && takes.len() > 1 {
            Self::push_take_all(batch, req.currency.code(), &takes, now);
        } else {
            for take in &takes {
                Self::push_take(batch, req.currency.code(), take, now);
            }
        }
        // On PostgreSQL the one take (of one or of every book) is a part of
        // the statement the lines join, whose rows they read.
        let taken = batch.joins_parts().then(|| batch.part_name());
        if new_row {
            Self::push_reservation_row(batch.write(), req);
        }
        if req.lines.is_empty() {
            return Ok(Vec::new());
        }
        // The lines, at the price each book was just reserved at: the take's
        // own rows on PostgreSQL, the stock rows the gates above updated on
        // SQLite (not the request's prices).
        let sql = batch.write();
        sql.push(
            "INSERT INTO reservation_items (reservation_id, line_no, book_id, quantity, \
             unit_price_minor) ",
        );
        for (i, line) in req.lines.iter().enumerate() {
            if i > 0 {
                sql.push(" UNION ALL ");
            }
            let book = sql.param(line.book_id.as_str());
            sql.push("SELECT ")
                .bind(req.reservation_id.as_uuid())
                .push(", ")
                .bind(i as i64 + 1)
                .push(&format!(", {book}, "))
                .bind(i64::from(line.quantity.get()));
            match &taken {
                Some(part) => sql.push(&format!(
                    ", t.price_minor FROM {part} AS t WHERE t.book_id = {book}"
                )),
                None => sql.push(&format!(", price_minor FROM stock WHERE book_id = {book}")),
            };
        }
        Ok(wanted.into_iter().map(|(b, q)| (b.to_owned(), q)).collect())
    }

    /// The take of one book's units (see `push_reserve`): a gate.
    fn push_take(batch: &mut Batch, currency: &str, take: &Take<'_>, now: i64) {
        let sql = batch.gate_returning(TAKEN_COLUMNS);
        let q = sql.param(i64::from(take.units));
        sql.push(&format!(
            "UPDATE stock SET available = available - {q}, reserved = reserved + {q}, updated_at = "
        ))
        .bind(now)
        .push(" WHERE book_id = ")
        .bind(take.book)
        .push(&format!(" AND available >= {q} AND currency = "))
        .bind(currency);
        if let Some(price) = take.quoted {
            sql.push(" AND price_minor = ").bind(price);
        }
        sql.push(&format!(
            " RETURNING CAST({STOCK_TAKEN} AS BIGINT) AS marker, book_id, price_minor"
        ));
    }

    /// PostgreSQL's take of every book of a reservation in one statement
    /// (see `push_reserve`), `takes` in book order. The `MATERIALIZED` part
    /// locks the rows in book order before the update can reach any of
    /// them: a row is updated only once the lock has returned it, and the
    /// lock returns rows in order.
    fn push_take_all(batch: &mut Batch, currency: &str, takes: &[Take<'_>], now: i64) {
        let sql = batch.gate_rows(TAKEN_COLUMNS, takes.len());
        sql.push("WITH locked AS MATERIALIZED (SELECT book_id FROM stock WHERE book_id IN ")
            .list(takes.iter().map(|t| t.book))
            .push(
                " ORDER BY book_id FOR UPDATE) UPDATE stock SET available = available - w.q, \
                 reserved = reserved + w.q, updated_at = ",
            )
            .bind(now)
            .push(" FROM (VALUES ")
            .rows(takes.iter().map(|t| {
                vec![
                    Value::from(t.book),
                    Value::from(i64::from(t.units)),
                    Value::from(t.quoted),
                ]
            }))
            .push(
                ") AS w (book_id, q, price) WHERE stock.book_id = w.book_id \
                 AND stock.book_id IN (SELECT book_id FROM locked) \
                 AND stock.available >= w.q \
                 AND (w.price IS NULL OR stock.price_minor = w.price) AND stock.currency = ",
            )
            .bind(currency)
            .push(&format!(
                " RETURNING CAST({STOCK_TAKEN} AS BIGINT) AS marker, stock.book_id, \
                 stock.price_minor"
            ));
    }

    /// Reads what a batch of `push_reserve` returned: the reservation when
    /// every book was taken at an acceptable price, else why not (the
    /// caller then drops the transaction).
    async fn finish_reserve(
        &self,
        txn: &DatabaseTransaction,
        req: &ReservationRequest,
        quote: Quote<'_>,
        wanted: &[(String, u32)],
        rows: &[QueryResult],
    ) -> Result<Reservation, InventoryError> {
        let mut catalog: HashMap<String, Money> = HashMap::new();
        for row in rows {
            if row.try_get_by_index::<i64>(0).inv()? != STOCK_TAKEN {
                continue;
            }
            let book: String = row.try_get_by_index(1).inv()?;
            let minor: i64 = row.try_get_by_index(2).inv()?;
            let price = Money::from_minor_units(minor, req.currency)
                .map_err(|e| InventoryError::Unexpected(format!("stored price: {e}")))?;
            catalog.insert(book, price);
        }
        let taken: HashMap<&str, u32> = wanted
            .iter()
            .filter(|(b, _)| catalog.contains_key(b))
            .map(|(b, q)| (b.as_str(), *q))
            .collect();
        if let Some((failed, _)) = wanted.iter().find(|(b, _)| !catalog.contains_key(b)) {
            return Err(self.diagnose(txn, req, quote, &taken, failed).await);
        }
        let mut lines = Vec::with_capacity(req.lines.len());
        for line in &req.lines {
            let Some(price) = catalog.get(line.book_id.as_str()).copied() else {
                return Err(InventoryError::Unexpected(
                    "reserved line without a price".into(),
                ));
            };
            // The price the client saw must be the catalog's.
            if line.expected_unit_price.is_some_and(|e| e != price) {
                return Err(self
                    .diagnose(txn, req, quote, &taken, line.book_id.as_str())
                    .await);
            }
            lines.push(checkout_ports::ReservationLine {
                book_id: line.book_id.clone(),
                quantity: line.quantity,
                unit_price: price,
            });
        }
        Ok(Reservation {
            id: req.reservation_id,
            expires_at: req.expires_at,
            lines,
        })
    }

    /// Appends the statements that apply `effect` to the stock, for a
    /// batch that already holds the order's save. The reservation's switch
    /// from `active` returns [`RESERVATION_SWITCHED`].
    ///
    /// The units must move only if this transaction made the switch. On
    /// PostgreSQL the switch, the lock of the stock rows in book order and
    /// their adjustment are parts of the save's one statement: the lock
    /// finds the reservation's lines only if the switch returned its row,
    /// and the adjustment moves the units of the rows the lock returned. On
    /// SQLite the whole batch runs in one call whatever the gates say, so
    /// the units are moved first, by a statement that only finds lines
    /// while the reservation is still active, and the switch follows; the
    /// single writer holds the database throughout, so the two see the same
    /// status.
    fn push_effect(batch: &mut Batch, effect: StockEffect) {
        let (id, to, adjust) = match effect {
            StockEffect::Confirm(id) => (id, "confirmed", Adjust::Confirm),
            StockEffect::Release(id) => (id, "released", Adjust::Release),
        };
        let now = micros(OffsetDateTime::now_utc());
        let switch = |sql: &mut Sql| {
            sql.push("UPDATE reservations SET status = ")
                .bind(to)
                .push(", updated_at = ")
                .bind(now)
                .push(" WHERE status = 'active' AND id = ")
                .bind(id.as_uuid())
                .push(&format!(
                    " RETURNING CAST({RESERVATION_SWITCHED} AS BIGINT) AS marker"
                ));
        };
        if !batch.joins_parts() {
            Self::push_adjust(batch, &[id.as_uuid()], adjust, Lines::StillActive, now);
            switch(batch.next());
            return;
        }
        switch(batch.gate());
        let switched = batch.part_name();
        Self::push_adjust(
            batch,
            &[id.as_uuid()],
            adjust,
            Lines::IfSwitched(&switched),
            now,
        );
    }

    /// Appends what moves the units of `ids`' reservations, counting the
    /// lines `lines` says. On SQLite it is one update. On PostgreSQL it is
    /// two parts of one statement: a lock of the stock rows in book order,
    /// so transactions touching the same books can't deadlock, then the
    /// update of the rows the lock returned.
    ///
    /// The lock visits the reservations' books in order and locks each
    /// stock row through a `LATERAL` probe of its primary key, and the
    /// update names the locked books again as `= ANY (ARRAY(…))`: plans
    /// that do not depend on the tables' statistics. Without them a fresh
    /// database, which has none yet, planned a scan of the whole stock table
    /// (live and dead rows) for every paid or failed order.
    fn push_adjust(batch: &mut Batch, ids: &[Uuid], adjust: Adjust, lines: Lines<'_>, now: i64) {
        let condition = match lines {
            Lines::All => String::new(),
            Lines::StillActive => {
                " AND reservation_id IN (SELECT id FROM reservations WHERE status = 'active')"
                    .to_owned()
            }
            Lines::IfSwitched(part) => format!(" AND EXISTS (SELECT 1 FROM {part})"),
        };
        if !batch.joins_parts() {
            batch
                .next()
                .push(&format!(
                    "UPDATE stock SET {}, updated_at = ",
                    adjust.set("x")
                ))
                .bind(now)
                .push(
                    " FROM (SELECT book_id, CAST(SUM(quantity) AS BIGINT) AS q FROM \
                     reservation_items WHERE reservation_id IN ",
                )
                .list(ids.iter().copied())
                .push(&format!(
                    "{condition} GROUP BY book_id) AS x WHERE stock.book_id = x.book_id"
                ));
            return;
        }
        batch
            .lock()
            .push(
                "SELECT s.book_id, r.q FROM (SELECT book_id, CAST(SUM(quantity) AS BIGINT) AS q \
                 FROM reservation_items WHERE reservation_id IN ",
            )
            .list(ids.iter().copied())
            .push(&format!(
                "{condition} GROUP BY book_id ORDER BY book_id) AS r CROSS JOIN LATERAL \
                 (SELECT book_id FROM stock WHERE stock.book_id = r.book_id FOR UPDATE) AS s"
            ));
        let locked = batch.part_name();
        batch
            .write()
            .push(&format!(
                "UPDATE stock SET {}, updated_at = ",
                adjust.set("l")
            ))
            .bind(now)
            .push(&format!(
                " FROM {locked} AS l WHERE stock.book_id = l.book_id \
                 AND stock.book_id = ANY (ARRAY(SELECT book_id FROM {locked}))"
            ));
    }

    /// Why a reservation can't be made, worked out after a conditional
    /// update refused (the cold path), from the catalog rows of every
    /// requested book read inside the same transaction. In order: unknown
    /// books, a catalog currency other than the order's, prices that differ
    /// (from the quote or from what the client saw), then short lines —
    /// counting back what this transaction already took.
    async fn diagnose(
        &self,
        txn: &DatabaseTransaction,
        req: &ReservationRequest,
        quote: Quote<'_>,
        taken: &HashMap<&str, u32>,
        failed: &str,
    ) -> InventoryError {
        let books: Vec<&str> = req.lines.iter().map(|l| l.book_id.as_str()).collect();
        let rows = match stock::Entity::find()
            .filter(stock::Column::BookId.is_in(books))
            .all(txn)
            .await
            .inv()
        {
            Ok(rows) => rows,
            Err(e) => return e,
        };
        let mut items: HashMap<&str, StockItem> = HashMap::new();
        for row in &rows {
            match convert::stock_item(row) {
                Ok(item) => {
                    items.insert(row.book_id.as_str(), item);
                }
                Err(e) => return unexpected(e),
            }
        }
        let unknown: Vec<BookId> = req
            .lines
            .iter()
            .filter(|l| {
                !items.contains_key(l.book_id.as_str())
                    || matches!(quote, Quote::Quoted(q) if !q.iter().any(|(b, _)| *b == l.book_id))
            })
            .map(|l| l.book_id.clone())
            .collect();
        if !unknown.is_empty() {
            return InventoryError::Pricing(PricingProblem::UnknownBooks(unknown));
        }
        if let Some(other) = items.values().find(|i| i.price.currency() != req.currency) {
            return InventoryError::Pricing(PricingProblem::CurrencyMismatch {
                catalog: other.price.currency(),
                order: req.currency,
            });
        }
        let mut mismatches = Vec::new();
        for line in &req.lines {
            let Some(item) = items.get(line.book_id.as_str()) else {
                continue;
            };
            let quoted = match quote {
                Quote::Catalog => None,
                Quote::Quoted(q) => q.iter().find(|(b, _)| *b == line.book_id).map(|(_, p)| *p),
            };
            if let Some(expected) = quoted
                .filter(|q| *q != item.price)
                .or(line.expected_unit_price.filter(|e| *e != item.price))
            {
                mismatches.push(PriceMismatch {
                    book_id: line.book_id.clone(),
                    expected,
                    catalog: item.price,
                });
            }
        }
        if !mismatches.is_empty() {
            return InventoryError::Pricing(PricingProblem::PriceMismatch(mismatches));
        }
        let mut wanted: BTreeMap<&str, u32> = BTreeMap::new();
        for line in &req.lines {
            *wanted.entry(line.book_id.as_str()).or_default() += line.quantity.get();
        }
        let mut short = Vec::new();
        for (book, q) in wanted {
            let Some(item) = items.get(book) else {
                continue;
            };
            let available = item
                .available
                .saturating_add(taken.get(book).copied().unwrap_or(0));
            if available < q || book == failed {
                short.push(UnavailableItem {
                    book_id: item.book_id.clone(),
                    requested: q,
                    // The update of `failed` found too few copies; should a
                    // concurrent release have refilled it since, it is still
                    // reported as short, with what it had.
                    available: if available < q {
                        available
                    } else {
                        q.saturating_sub(1)
                    },
                });
            }
        }
        InventoryError::Unavailable(short)
    }

    /// Moves the units of `ids`' reservations (which the caller has just
    /// switched, by compare-and-set, to confirmed or released).
    async fn adjust_stock(
        &self,
        txn: &DatabaseTransaction,
        ids: &[Uuid],
        adjust: Adjust,
    ) -> Result<(), InventoryError> {
        if ids.is_empty() {
            return Ok(());
        }
        let backend = self.db_backend();
        let mut batch = Batch::new(backend);
        Self::push_adjust(
            &mut batch,
            ids,
            adjust,
            Lines::All,
            micros(OffsetDateTime::now_utc()),
        );
        batch.run(txn, backend).await.inv()?;
        Ok(())
    }

    /// Compare-and-set of a reservation's status from `active`; `true` when
    /// this call made the change.
    async fn switch_active(
        &self,
        txn: &DatabaseTransaction,
        id: Uuid,
        to: &str,
    ) -> Result<bool, InventoryError> {
        let mut sql = Sql::new("UPDATE reservations SET status = ");
        sql.bind(to)
            .push(", updated_at = ")
            .bind(micros(OffsetDateTime::now_utc()))
            .push(" WHERE status = 'active' AND id = ")
            .bind(id);
        Ok(txn
            .execute_raw(sql.build(self.db_backend()))
            .await
            .inv()?
            .rows_affected()
            == 1)
    }

    async fn status_of<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: Uuid,
    ) -> Result<Option<String>, InventoryError> {
        Ok(reservations::Entity::find_by_id(id)
            .one(conn)
            .await
            .inv()?
            .map(|r| r.status))
    }

    async fn confirm_in(
        &self,
        txn: &DatabaseTransaction,
        id: ReservationId,
    ) -> Result<(), InventoryError> {
        if self.switch_active(txn, id.as_uuid(), "confirmed").await? {
            return self
                .adjust_stock(txn, &[id.as_uuid()], Adjust::Confirm)
                .await;
        }
        match self.status_of(txn, id.as_uuid()).await?.as_deref() {
            None => Err(InventoryError::NotFound),
            Some("confirmed") => Ok(()),
            Some(_) => Err(InventoryError::ReservationGone(id)),
        }
    }

    async fn release_in(
        &self,
        txn: &DatabaseTransaction,
        id: ReservationId,
    ) -> Result<(), InventoryError> {
        if self.switch_active(txn, id.as_uuid(), "released").await? {
            self.adjust_stock(txn, &[id.as_uuid()], Adjust::Release)
                .await?;
        }
        // Released already, confirmed, or unknown: nothing to give back.
        Ok(())
    }
}

#[async_trait]
impl InventoryPort for SeaOrmStore {
    #[instrument(skip_all, fields(order_id = %request.order_id, reservation_id = %request.reservation_id))]
    async fn reserve(&self, request: &ReservationRequest) -> Result<Reservation, InventoryError> {
        let backend = self.db_backend();
        let txn = self.begin_write().await.inv()?;
        if let Some(existing) = self.claim_reservation_id(&txn, request).await? {
            return Ok(existing);
        }
        let mut batch = Batch::new(backend);
        let wanted = Self::push_reserve(&mut batch, request, Quote::Catalog, false)?;
        let rows = batch.run(&*txn, backend).await.inv()?;
        let reservation = self
            .finish_reserve(&txn, request, Quote::Catalog, &wanted, &rows)
            .await?;
        txn.commit().await.inv()?;
        Ok(reservation)
    }

    #[instrument(skip(self))]
    async fn confirm(&self, id: ReservationId) -> Result<(), InventoryError> {
        let txn = self.begin_write().await.inv()?;
        self.confirm_in(&txn, id).await?;
        txn.commit().await.inv()
    }

    #[instrument(skip(self))]
    async fn release(&self, id: ReservationId) -> Result<(), InventoryError> {
        let txn = self.begin_write().await.inv()?;
        self.release_in(&txn, id).await?;
        txn.commit().await.inv()
    }

    async fn extend(
        &self,
        id: ReservationId,
        expires_at: OffsetDateTime,
    ) -> Result<(), InventoryError> {
        let mut sql = Sql::new("UPDATE reservations SET expires_at = ");
        sql.bind(micros(expires_at))
            .push(", updated_at = ")
            .bind(micros(OffsetDateTime::now_utc()))
            .push(" WHERE status = 'active' AND id = ")
            .bind(id.as_uuid());
        let done = self.exec_write(sql.build(self.db_backend())).await.inv()?;
        if done == 1 {
            return Ok(());
        }
        match self.status_of(&self.writer, id.as_uuid()).await?.as_deref() {
            None => Err(InventoryError::NotFound),
            Some("released") => Err(InventoryError::ReservationGone(id)),
            // Confirmed: sold, nothing left to expire.
            Some(_) => Ok(()),
        }
    }

    #[instrument(skip(self))]
    async fn release_expired(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, InventoryError> {
        let backend = self.db_backend();
        let txn = self.begin_write().await.inv()?;
        let picked: Vec<Uuid> = txn
            .query_all_raw(self.expired_reservation_pick(now, limit))
            .await
            .inv()?
            .iter()
            .map(|r| r.try_get_by_index::<Uuid>(0))
            .collect::<Result<_, _>>()
            .inv()?;
        if picked.is_empty() {
            return Ok(0);
        }
        // The compare-and-set decides: only reservations still active now
        // are released, and only those give their units back.
        let mut sql = Sql::new("UPDATE reservations SET status = 'released', updated_at = ");
        sql.bind(micros(OffsetDateTime::now_utc()))
            .push(" WHERE status = 'active' AND id IN ")
            .list(picked.iter().copied())
            .push(" RETURNING id");
        let released: Vec<Uuid> = txn
            .query_all_raw(sql.build(backend))
            .await
            .inv()?
            .iter()
            .map(|r| r.try_get_by_index::<Uuid>(0))
            .collect::<Result<_, _>>()
            .inv()?;
        self.adjust_stock(&txn, &released, Adjust::Release).await?;
        txn.commit().await.inv()?;
        debug!(released = released.len(), "expired reservations released");
        Ok(released.len() as u64)
    }
}

#[async_trait]
impl StockAdmin for SeaOrmStore {
    async fn upsert_stock(
        &self,
        book_id: &BookId,
        title: &str,
        price: Money,
        available: u32,
    ) -> Result<StockItem, InventoryError> {
        let backend = self.db_backend();
        let mut sql = Sql::new(
            "INSERT INTO stock (book_id, title, price_minor, currency, available, reserved, \
             updated_at) VALUES ",
        );
        sql.tuple([
            book_id.as_str().into(),
            title.into(),
            price.to_minor_units().into(),
            price.currency().code().into(),
            i64::from(available).into(),
            0i64.into(),
            micros(OffsetDateTime::now_utc()).into(),
        ])
        .push(
            " ON CONFLICT (book_id) DO UPDATE SET title = excluded.title, \
             price_minor = excluded.price_minor, currency = excluded.currency, \
             available = excluded.available, updated_at = excluded.updated_at \
             RETURNING book_id, title, price_minor, currency, available, reserved, updated_at",
        );
        let row = stock::Model::find_by_statement(sql.build(backend))
            .one(&self.writer)
            .await
            .inv()?
            .ok_or_else(|| InventoryError::Unexpected("upsert returned no row".into()))?;
        let item = convert::stock_item(&row).map_err(unexpected)?;
        self.prices.set(&item.book_id, item.price);
        Ok(item)
    }

    async fn get_stock(&self, book_id: &BookId) -> Result<StockItem, InventoryError> {
        let row = stock::Entity::find_by_id(book_id.as_str())
            .one(&self.reader)
            .await
            .inv()?
            .ok_or(InventoryError::NotFound)?;
        convert::stock_item(&row).map_err(unexpected)
    }

    async fn list_stock(&self) -> Result<Vec<StockItem>, InventoryError> {
        stock::Entity::find()
            .order_by_asc(stock::Column::BookId)
            .all(&self.reader)
            .await
            .inv()?
            .iter()
            .map(|r| convert::stock_item(r).map_err(unexpected))
            .collect()
    }
}

#[async_trait]
impl OrderStockLedger for SeaOrmStore {
    async fn catalog_prices(
        &self,
        books: &[BookId],
        read: CatalogRead,
    ) -> Result<Vec<(BookId, Money)>, InventoryError> {
        if books.is_empty() {
            return Ok(Vec::new());
        }
        if read == CatalogRead::Cached {
            if let Some(quote) = self.prices.quote(books) {
                return Ok(quote);
            }
        }
        let answer = stock::Entity::find()
            .filter(stock::Column::BookId.is_in(books.iter().map(BookId::as_str)))
            .all(&self.reader)
            .await
            .inv()?
            .iter()
            .map(|r| {
                let item = convert::stock_item(r).map_err(unexpected)?;
                Ok((item.book_id, item.price))
            })
            .collect::<Result<Vec<_>, InventoryError>>()?;
        self.prices.learn(books, &answer);
        Ok(answer)
    }

    #[instrument(skip_all, fields(order_id = %order.id(), reservation_id = %reservation.reservation_id))]
    async fn create_with_reservation(
        &self,
        order: &Order,
        changes: &[OrderChange],
        reservation: &ReservationRequest,
        prices: &[(BookId, Money)],
    ) -> Result<(), LedgerError> {
        self.write_ledger(LedgerWrite::Create {
            order,
            changes,
            reservation,
            prices,
        })
        .await
    }

    #[instrument(skip_all, fields(order_id = %order.id(), expected_version))]
    async fn save_with_stock(
        &self,
        order: &Order,
        expected_version: u64,
        changes: &[OrderChange],
        effect: StockEffect,
    ) -> Result<(), LedgerError> {
        self.write_ledger(LedgerWrite::Save {
            order,
            expected_version,
            changes,
            effect,
        })
        .await
    }
}

/// The ledger writes themselves: on their own (`*_solo`, through SeaORM) or
/// as statements for the SQLite ledger thread (`ledger_batch`).
impl SeaOrmStore {
    /// The batch of a reservation-with-order: take the units (gates),
    /// record the reservation, create the order with its changes.
    fn create_batch(
        mut batch: Batch,
        order: &Order,
        changes: &[OrderChange],
        reservation: &ReservationRequest,
        quote: Quote<'_>,
    ) -> Result<(Batch, Vec<(String, u32)>), LedgerError> {
        // The reservation id is fresh here, so a plain insert.
        let wanted = Self::push_reserve(&mut batch, reservation, quote, true)?;
        Self::push_create(&mut batch, order, changes)?;
        Ok((batch, wanted))
    }

    /// The batch of a save-with-stock-effect: the order's compare-and-set
    /// (a gate) and changes, then the stock effect (see `push_effect`).
    fn save_batch(
        &self,
        mut batch: Batch,
        order: &Order,
        expected_version: u64,
        changes: &[OrderChange],
        effect: StockEffect,
    ) -> Result<Batch, LedgerError> {
        Self::push_save(&mut batch, order, expected_version, changes)?;
        Self::push_effect(&mut batch, effect);
        Ok(batch)
    }

    /// `create_with_reservation` in its own transaction: BEGIN, one call
    /// (on SQLite), COMMIT; on failure, the precise reason.
    pub(crate) async fn create_with_reservation_solo(
        &self,
        order: &Order,
        changes: &[OrderChange],
        reservation: &ReservationRequest,
        prices: &[(BookId, Money)],
    ) -> Result<(), LedgerError> {
        let quote = Quote::Quoted(prices);
        let (batch, wanted) = Self::create_batch(
            Batch::new(self.db_backend()),
            order,
            changes,
            reservation,
            quote,
        )?;
        let txn = self.begin_write().await.repo()?;
        let rows = batch
            .run(&*txn, self.db_backend())
            .await
            .map_err(|e| Self::create_failed(order, e))?;
        self.finish_reserve(&txn, reservation, quote, &wanted, &rows)
            .await?;
        txn.commit().await.repo()?;
        Ok(())
    }

    /// `save_with_stock` in its own transaction; on failure, the precise
    /// reason.
    pub(crate) async fn save_with_stock_solo(
        &self,
        order: &Order,
        expected_version: u64,
        changes: &[OrderChange],
        effect: StockEffect,
    ) -> Result<(), LedgerError> {
        let batch = self.save_batch(
            Batch::new(self.db_backend()),
            order,
            expected_version,
            changes,
            effect,
        )?;
        let txn = self.begin_write().await.repo()?;
        let rows = match batch.run(&*txn, self.db_backend()).await {
            Ok(rows) => rows,
            Err(e) => {
                let _ = txn.rollback().await;
                return Err(self.save_failed(order, expected_version, e).await.into());
            }
        };
        let marks = markers(&rows).repo()?;
        if !marks.contains(&ORDER_SAVED) {
            return Err(self
                .save_refused(&*txn, order, expected_version)
                .await
                .into());
        }
        if !marks.contains(&RESERVATION_SWITCHED) {
            self.confirmed_before(&txn, effect).await?;
        }
        txn.commit().await.repo()?;
        Ok(())
    }

    /// A ledger write: in the SQLite ledger thread's next group when there
    /// is one, otherwise — or when it was not committed there — in its own
    /// transaction, which also gives a failure its precise error.
    async fn write_ledger(&self, write: LedgerWrite<'_>) -> Result<(), LedgerError> {
        if let Some(ledger) = &self.sqlite_ledger {
            if let Some((statements, check)) = self.ledger_statements(write) {
                if let Outcome::Committed(_) =
                    ledger.submit(statements, Expect::Ledger(check)).await
                {
                    return Ok(());
                }
            }
        } else if self.is_postgres() && self.write_in_one_statement(write).await {
            return Ok(());
        }
        match write {
            LedgerWrite::Create {
                order,
                changes,
                reservation,
                prices,
            } => {
                self.create_with_reservation_solo(order, changes, reservation, prices)
                    .await
            }
            LedgerWrite::Save {
                order,
                expected_version,
                changes,
                effect,
            } => {
                self.save_with_stock_solo(order, expected_version, changes, effect)
                    .await
            }
        }
    }

    /// The parts of a ledger write in `batch`, with the units a create
    /// wants per book (none for a save).
    fn write_batch(
        &self,
        batch: Batch,
        write: LedgerWrite<'_>,
    ) -> Result<(Batch, Vec<(String, u32)>), LedgerError> {
        match write {
            LedgerWrite::Create {
                order,
                changes,
                reservation,
                prices,
            } => Self::create_batch(batch, order, changes, reservation, Quote::Quoted(prices)),
            LedgerWrite::Save {
                order,
                expected_version,
                changes,
                effect,
            } => Ok((
                self.save_batch(batch, order, expected_version, changes, effect)?,
                Vec::new(),
            )),
        }
    }

    /// PostgreSQL: the ledger write as ONE statement with no transaction
    /// around it, one round trip where `BEGIN`, the statement and `COMMIT`
    /// are three (see `Batch::all_or_nothing`). `true` when it went
    /// through. Otherwise it wrote nothing — a gate did not pass and the
    /// statement undid itself, or it failed — and the caller runs the write
    /// in a transaction, which works out why (or, for a confirm whose
    /// reservation was confirmed before, saves the order alone).
    async fn write_in_one_statement(&self, write: LedgerWrite<'_>) -> bool {
        if let LedgerWrite::Create {
            reservation,
            prices,
            ..
        } = write
        {
            // The statement takes each book only at its quoted price, so a
            // price the client saw must be that one; if it is not, the
            // transaction says so.
            let seen_quoted = reservation.lines.iter().all(|l| {
                l.expected_unit_price
                    .is_none_or(|e| prices.iter().any(|(b, p)| *b == l.book_id && *p == e))
            });
            if !seen_quoted {
                return false;
            }
        }
        let Some(statement) = self
            .write_batch(Batch::all_or_nothing(), write)
            .ok()
            .and_then(|(batch, _)| batch.into_one_statement())
        else {
            return false;
        };
        match self.writer.query_all_raw(statement).await {
            Ok(_) => true,
            Err(e) => {
                let refused = db_code(&e).as_deref() == Some(REFUSED_WRITE);
                debug!(refused, error = %e, "one-statement write undone; writing in a transaction");
                false
            }
        }
    }

    /// The statements of a ledger write for the SQLite ledger thread (kept
    /// apart: the thread prepares and caches each), with what their rows
    /// must show for it to have gone through. `None` when the write can't
    /// even be built (it then runs on its own, to fail there).
    fn ledger_statements(&self, write: LedgerWrite<'_>) -> Option<(Statements, GroupCheck)> {
        let (batch, wanted) = self.write_batch(Batch::separate(), write).ok()?;
        let mut check = GroupCheck::default();
        match write {
            LedgerWrite::Create { reservation, .. } => {
                check.taken = wanted.len();
                check.expected_prices = reservation
                    .lines
                    .iter()
                    .filter_map(|l| {
                        l.expected_unit_price
                            .map(|p| (l.book_id.as_str().to_owned(), p.to_minor_units()))
                    })
                    .collect();
            }
            LedgerWrite::Save { .. } => check.saves = 1,
        }
        Some((batch.into_statements(), check))
    }

    /// When a save's stock effect found its reservation no longer active:
    /// fine unless a confirm finds it released (or missing) — then nothing
    /// may be written.
    async fn confirmed_before(
        &self,
        txn: &DatabaseTransaction,
        effect: StockEffect,
    ) -> Result<(), LedgerError> {
        if let StockEffect::Confirm(id) = effect {
            match self.status_of(txn, id.as_uuid()).await?.as_deref() {
                Some("confirmed") => {}
                None => return Err(InventoryError::NotFound.into()),
                Some(_) => return Err(InventoryError::ReservationGone(id).into()),
            }
        }
        Ok(())
    }
}

/// A row a batch's statement returned, with its marker (see
/// `sql::markers`): for [`STOCK_TAKEN`], the book and the price it was
/// taken at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MarkedRow {
    pub(crate) marker: i64,
    pub(crate) book: Option<String>,
    pub(crate) price: Option<i64>,
}

/// What the rows of a group's batch must show for every write in it to
/// have gone through: each gate returns at most one row (a stock row by
/// its key, an order by its id, a reservation by its id), so the counts of
/// marked rows say whether every gate passed, whichever write a row came
/// from.
#[derive(Debug, Default)]
pub(crate) struct GroupCheck {
    /// Stock rows the reservations must take (one per distinct book each).
    taken: usize,
    /// Saves, each with its compare-and-set and its reservation switch.
    saves: usize,
    /// The prices clients saw, which must be the catalog's (book, minor
    /// units).
    expected_prices: Vec<(String, i64)>,
}

impl GroupCheck {
    /// Whether `rows` show every write gone through: every book taken,
    /// every order saved, every reservation switched, every price the
    /// client saw still the catalog's (a price can't differ between two
    /// rows of one transaction). Anything else — including a reservation
    /// confirmed before, which is fine but needs a look — sends the group's
    /// writes to run on their own.
    pub(crate) fn passed<'r>(&self, rows: impl Iterator<Item = &'r MarkedRow>) -> bool {
        let (mut taken, mut saved, mut switched) = (0, 0, 0);
        let mut prices: HashMap<&str, i64> = HashMap::new();
        for row in rows {
            match row.marker {
                STOCK_TAKEN => {
                    let (Some(book), Some(minor)) = (&row.book, row.price) else {
                        return false;
                    };
                    taken += 1;
                    prices.insert(book, minor);
                }
                ORDER_SAVED => saved += 1,
                RESERVATION_SWITCHED => switched += 1,
                _ => {}
            }
        }
        taken == self.taken
            && saved == self.saves
            && switched == self.saves
            && self
                .expected_prices
                .iter()
                .all(|(book, minor)| prices.get(book.as_str()) == Some(minor))
    }

    /// Adds what `other`'s rows must show (for a group of writes).
    pub(crate) fn add(&mut self, other: &GroupCheck) {
        self.taken += other.taken;
        self.saves += other.saves;
        self.expected_prices
            .extend(other.expected_prices.iter().cloned());
    }
}

/// A ledger write, as `OrderStockLedger` was asked for it.
#[derive(Debug, Clone, Copy)]
enum LedgerWrite<'a> {
    Create {
        order: &'a Order,
        changes: &'a [OrderChange],
        reservation: &'a ReservationRequest,
        prices: &'a [(BookId, Money)],
    },
    Save {
        order: &'a Order,
        expected_version: u64,
        changes: &'a [OrderChange],
        effect: StockEffect,
    },
}

#[cfg(test)]
mod tests {
    use sea_orm::DbBackend;

    use super::*;

    /// The expiry sweep searches the index of active reservations (a
    /// partial index: usable only because the query names the status as
    /// a literal), on both databases.
    #[tokio::test]
    async fn the_expiry_sweep_searches_the_active_reservations() {
        let db = crate::plan_check::FreshSqlite::new().await;
        let pick = db
            .store
            .expired_reservation_pick(OffsetDateTime::now_utc(), 100);
        let details = db.plan(&pick).await;
        assert!(
            details.iter().any(|d| d.starts_with(
                "SEARCH reservations USING INDEX reservations_active_expiry (expires_at<?)"
            )),
            "{details:?}"
        );
        db.finish().await;

        let Some(db) = crate::plan_check::FreshPostgres::new().await else {
            return;
        };
        let pick = db
            .store
            .expired_reservation_pick(OffsetDateTime::now_utc(), 100);
        db.assert_can_use_index(&pick, "reservations_active_expiry")
            .await;
        db.finish().await;
    }

    /// A stock adjustment on its own (a confirm or release through the
    /// inventory port, the expiry worker) is one statement that locks the
    /// reservation's stock rows by key, in book order, and updates them by
    /// key. As `book_id IN (subquery)` the lock was planned, on a database
    /// without statistics, as a scan of the whole stock table for every
    /// paid or failed order.
    #[tokio::test]
    async fn postgres_locks_stock_rows_by_key() {
        let Some(db) = crate::plan_check::FreshPostgres::new().await else {
            return;
        };
        let mut batch = Batch::new(DbBackend::Postgres);
        SeaOrmStore::push_adjust(
            &mut batch,
            &[Uuid::now_v7()],
            Adjust::Confirm,
            Lines::All,
            0,
        );
        locks_then_updates_stock_by_key(&db, batch).await;
        db.finish().await;
    }

    /// Asserts that `batch` is one statement that locks stock rows and
    /// whose plan never scans `stock` but reads it by its key twice: the
    /// lock in book order, then the update.
    async fn locks_then_updates_stock_by_key(db: &crate::plan_check::FreshPostgres, batch: Batch) {
        let statements = batch.into_statements();
        assert_eq!(statements.len(), 1);
        let (sql, values) = statements.into_iter().next().unwrap();
        assert!(sql.contains("FOR UPDATE"), "{sql}");
        let (nodes, plan) = db.plan(&sql, values).await;
        assert!(
            !nodes
                .iter()
                .any(|n| n.node_type.as_deref() == Some("Seq Scan")
                    && n.relation.as_deref() == Some("stock")),
            "{plan}"
        );
        let by_key = nodes
            .iter()
            .filter(|n| n.index.as_deref() == Some("stock_pkey"))
            .count();
        assert_eq!(by_key, 2, "{plan}");
    }

    /// A paid order's confirmation of its reservation, as parts of the
    /// save's one statement on a database without statistics, reads
    /// `stock` only by its key: the lock in book order and the update.
    #[tokio::test]
    async fn postgres_confirms_a_reservation_by_key_in_one_statement() {
        let Some(db) = crate::plan_check::FreshPostgres::new().await else {
            return;
        };
        let mut batch = Batch::new(DbBackend::Postgres);
        SeaOrmStore::push_effect(
            &mut batch,
            StockEffect::Confirm(ReservationId::from_uuid(Uuid::now_v7())),
        );
        locks_then_updates_stock_by_key(&db, batch).await;
        db.finish().await;
    }

    /// A reservation's take of all its books, on a database without
    /// statistics, reads `stock` only by its key: both the lock in book
    /// order and the update.
    #[tokio::test]
    async fn postgres_takes_a_reservations_books_by_key() {
        let Some(db) = crate::plan_check::FreshPostgres::new().await else {
            return;
        };
        let mut batch = Batch::new(DbBackend::Postgres);
        let takes = [
            Take {
                book: "bk-1",
                units: 1,
                quoted: None,
            },
            Take {
                book: "bk-2",
                units: 2,
                quoted: Some(1_250),
            },
        ];
        SeaOrmStore::push_take_all(&mut batch, "USD", &takes, 0);
        locks_then_updates_stock_by_key(&db, batch).await;
        db.finish().await;
    }

    fn usd(minor: i64) -> Money {
        Money::from_minor_units(minor, checkout_domain::Currency::USD).unwrap()
    }

    async fn shelve(store: &SeaOrmStore, book: &str, available: u32) {
        let id = BookId::parse(book).unwrap();
        store
            .upsert_stock(&id, "A title", usd(1_250), available)
            .await
            .unwrap();
    }

    async fn shelf(store: &SeaOrmStore, book: &str) -> (u32, u32, String) {
        let item = store
            .get_stock(&BookId::parse(book).unwrap())
            .await
            .unwrap();
        (item.available, item.reserved, item.title)
    }

    /// An all-or-nothing statement whose take of two books finds one short
    /// undoes the take of the other and every later part: it runs without
    /// a transaction, so only its own refusal can.
    #[tokio::test]
    async fn postgres_one_statement_write_undoes_itself_when_a_gate_fails() {
        let Some(db) = crate::plan_check::FreshPostgres::new().await else {
            return;
        };
        shelve(&db.store, "bk-1", 5).await;
        shelve(&db.store, "bk-2", 1).await;
        shelve(&db.store, "bk-3", 1).await;
        let attempt = |units: u32| {
            let mut batch = Batch::all_or_nothing();
            let takes = [
                Take {
                    book: "bk-1",
                    units: 1,
                    quoted: Some(1_250),
                },
                Take {
                    book: "bk-2",
                    units,
                    quoted: Some(1_250),
                },
            ];
            SeaOrmStore::push_take_all(&mut batch, "USD", &takes, 0);
            batch
                .write()
                .push("UPDATE stock SET title = 'Retitled' WHERE book_id = 'bk-3'");
            batch.into_one_statement().unwrap()
        };

        let refused = db.store.writer.query_all_raw(attempt(2)).await.unwrap_err();
        assert_eq!(
            db_code(&refused).as_deref(),
            Some(REFUSED_WRITE),
            "{refused}"
        );
        assert_eq!(shelf(&db.store, "bk-1").await, (5, 0, "A title".to_owned()));
        assert_eq!(shelf(&db.store, "bk-2").await, (1, 0, "A title".to_owned()));
        assert_eq!(shelf(&db.store, "bk-3").await, (1, 0, "A title".to_owned()));

        let rows = db.store.writer.query_all_raw(attempt(1)).await.unwrap();
        assert_eq!(markers(&rows).unwrap(), vec![STOCK_TAKEN, STOCK_TAKEN]);
        assert_eq!(shelf(&db.store, "bk-1").await, (4, 1, "A title".to_owned()));
        assert_eq!(shelf(&db.store, "bk-2").await, (0, 1, "A title".to_owned()));
        assert_eq!(
            shelf(&db.store, "bk-3").await,
            (1, 0, "Retitled".to_owned())
        );
        db.finish().await;
    }

    /// An order placed, validated, priced and reserved, as the pipeline's
    /// first write has it, with its changes and reservation request.
    fn reserved_order(prices: &[(BookId, Money)]) -> (Order, Vec<OrderChange>, ReservationRequest) {
        use checkout_domain::{
            Cart, CartDraft, CartItemDraft, OrderId, OrderState, Quantity, ReservationRef,
            ReservationStatus, TransitionContext,
        };
        let now = OffsetDateTime::now_utc();
        let cart = Cart::parse(CartDraft {
            customer_id: Some("cust-1".into()),
            currency: Some("USD".into()),
            items: prices
                .iter()
                .map(|(b, _)| CartItemDraft {
                    book_id: Some(b.as_str().into()),
                    quantity: Some(1),
                    unit_price: None,
                })
                .collect(),
            tax_rate: None,
            shipping_cost: None,
            shipping_address: None,
            billing_address: None,
            payment_method_type: Some("card".into()),
            payment_method_token: Some("pm_card_visa".into()),
            payment_method_missing: false,
        })
        .unwrap();
        let (mut order, placed) =
            Order::place(OrderId::from_uuid(Uuid::now_v7()), &cart, now, None);
        let ctx = || TransitionContext::new("test", now);
        let mut changes = vec![placed];
        changes.push(order.transition(OrderState::Validating, ctx()).unwrap());
        order.apply_catalog_prices(prices).unwrap();
        let request = ReservationRequest {
            reservation_id: ReservationId::from_uuid(Uuid::now_v7()),
            order_id: order.id(),
            currency: checkout_domain::Currency::USD,
            lines: prices
                .iter()
                .map(|(b, _)| checkout_ports::ReserveLine {
                    book_id: b.clone(),
                    quantity: Quantity::new(1).unwrap(),
                    expected_unit_price: None,
                })
                .collect(),
            expires_at: now + time::Duration::minutes(15),
        };
        order.attach_reservation(
            ReservationRef {
                id: request.reservation_id,
                expires_at: request.expires_at,
                status: ReservationStatus::Active,
            },
            now,
        );
        changes.push(order.transition(OrderState::Reserved, ctx()).unwrap());
        (order, changes, request)
    }

    /// The pipeline's two ledger writes go through as one statement each,
    /// with no transaction around them; a stale save is refused by its
    /// compare-and-set, writes nothing, and is left to the transaction.
    #[tokio::test]
    async fn postgres_ledger_writes_are_one_statement_each() {
        use checkout_domain::{OrderState, TransitionContext};
        use checkout_ports::OrderRepository;
        let Some(db) = crate::plan_check::FreshPostgres::new().await else {
            return;
        };
        shelve(&db.store, "bk-1", 5).await;
        shelve(&db.store, "bk-2", 5).await;
        let prices = [
            (BookId::parse("bk-1").unwrap(), usd(1_250)),
            (BookId::parse("bk-2").unwrap(), usd(1_250)),
        ];
        let (order, changes, reservation) = reserved_order(&prices);
        let create = LedgerWrite::Create {
            order: &order,
            changes: &changes,
            reservation: &reservation,
            prices: &prices,
        };
        assert!(db.store.write_in_one_statement(create).await);
        assert_eq!(shelf(&db.store, "bk-2").await.0, 4);

        let mut paid = db.store.get(order.id()).await.unwrap();
        let expected = paid.version();
        let now = OffsetDateTime::now_utc();
        let mut changes = Vec::new();
        for state in [OrderState::ProcessingPayment, OrderState::Paid] {
            changes.push(
                paid.transition(state, TransitionContext::new("test", now))
                    .unwrap(),
            );
        }
        let save = |expected_version| LedgerWrite::Save {
            order: &paid,
            expected_version,
            changes: &changes,
            effect: StockEffect::Confirm(reservation.reservation_id),
        };
        assert!(!db.store.write_in_one_statement(save(expected + 1)).await);
        assert_eq!(db.store.get(order.id()).await.unwrap().version(), expected);
        assert_eq!(shelf(&db.store, "bk-1").await.1, 1);

        assert!(db.store.write_in_one_statement(save(expected)).await);
        assert_eq!(
            db.store.get(order.id()).await.unwrap().state(),
            OrderState::Paid
        );
        assert_eq!(shelf(&db.store, "bk-1").await, (4, 0, "A title".to_owned()));
        db.finish().await;
    }
}
