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
    InventoryError, InventoryPort, LedgerError, OrderStockLedger, RepositoryError, Reservation,
    ReservationRequest, StockAdmin, StockEffect, StockItem,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder,
};
use time::OffsetDateTime;
use tracing::{debug, instrument};
use uuid::Uuid;

use crate::SeaOrmStore;
use crate::convert;
use crate::entity::{reservation_items, reservations, stock};
use crate::error::DbResultExt;
use crate::sql::{Sql, from_micros, micros};

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

impl SeaOrmStore {
    /// A reservation with its lines, if it exists.
    async fn load_reservation<C: ConnectionTrait>(
        &self,
        conn: &C,
        id: Uuid,
    ) -> Result<Option<(reservations::Model, Reservation)>, InventoryError> {
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
        let reservation = Reservation {
            id: ReservationId::from_uuid(row.id),
            expires_at: from_micros(row.expires_at).map_err(InventoryError::Unexpected)?,
            lines,
        };
        Ok(Some((row, reservation)))
    }

    /// Reserves every line of `req` or none, inside `txn` (the caller drops
    /// the transaction on error, which rolls everything back).
    async fn reserve_in(
        &self,
        txn: &DatabaseTransaction,
        req: &ReservationRequest,
        quote: Quote<'_>,
    ) -> Result<Reservation, InventoryError> {
        let backend = self.db_backend();
        let now = micros(OffsetDateTime::now_utc());
        // Insert-first: the reservation id is the idempotency key. A repeat
        // (or a concurrent twin, which waits on the key) inserts nothing
        // and gets the existing reservation back as it is.
        let mut sql = Sql::new(
            "INSERT INTO reservations (id, order_id, currency, status, expires_at, created_at, \
             updated_at) VALUES ",
        );
        sql.tuple([
            req.reservation_id.as_uuid().into(),
            req.order_id.as_uuid().into(),
            req.currency.code().into(),
            "active".into(),
            micros(req.expires_at).into(),
            now.into(),
            now.into(),
        ])
        .push(" ON CONFLICT (id) DO NOTHING");
        if txn
            .execute_raw(sql.build(backend))
            .await
            .inv()?
            .rows_affected()
            == 0
        {
            debug!(reservation_id = %req.reservation_id, "reservation exists; returning it");
            return self
                .load_reservation(txn, req.reservation_id.as_uuid())
                .await?
                .map(|(_, r)| r)
                .ok_or(InventoryError::NotFound);
        }

        // The catalog rows of every requested book, in one query.
        let books: Vec<&str> = req.lines.iter().map(|l| l.book_id.as_str()).collect();
        let rows = stock::Entity::find()
            .filter(stock::Column::BookId.is_in(books))
            .all(txn)
            .await
            .inv()?;
        let catalog: HashMap<&str, &stock::Model> =
            rows.iter().map(|r| (r.book_id.as_str(), r)).collect();
        let unknown: Vec<BookId> = req
            .lines
            .iter()
            .filter(|l| !catalog.contains_key(l.book_id.as_str()))
            .map(|l| l.book_id.clone())
            .collect();
        if !unknown.is_empty() {
            return Err(InventoryError::Pricing(PricingProblem::UnknownBooks(
                unknown,
            )));
        }
        let mut prices = Vec::with_capacity(req.lines.len());
        let mut mismatches = Vec::new();
        for line in &req.lines {
            let Some(row) = catalog.get(line.book_id.as_str()) else {
                continue;
            };
            let item = convert::stock_item(row).map_err(unexpected)?;
            if item.price.currency() != req.currency {
                return Err(InventoryError::Pricing(PricingProblem::CurrencyMismatch {
                    catalog: item.price.currency(),
                    order: req.currency,
                }));
            }
            let quoted = match quote {
                Quote::Catalog => None,
                Quote::Quoted(q) => match q.iter().find(|(b, _)| *b == line.book_id) {
                    Some((_, p)) => Some(*p),
                    None => {
                        return Err(InventoryError::Pricing(PricingProblem::UnknownBooks(vec![
                            line.book_id.clone(),
                        ])));
                    }
                },
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
            prices.push(item.price);
        }
        if !mismatches.is_empty() {
            return Err(InventoryError::Pricing(PricingProblem::PriceMismatch(
                mismatches,
            )));
        }

        // Take the units: one conditional update per book, in book order
        // (a stable lock order on PostgreSQL).
        let mut wanted: BTreeMap<&str, u32> = BTreeMap::new();
        for line in &req.lines {
            *wanted.entry(line.book_id.as_str()).or_default() += line.quantity.get();
        }
        let wanted: Vec<(&str, u32)> = wanted.into_iter().collect();
        for (i, (book, q)) in wanted.iter().enumerate() {
            let mut sql = Sql::new("UPDATE stock SET ");
            let q_param = sql.param(i64::from(*q));
            sql.push(&format!(
                "available = available - {q_param}, reserved = reserved + {q_param}, updated_at = "
            ))
            .bind(now)
            .push(" WHERE book_id = ")
            .bind(*book)
            .push(&format!(" AND available >= {q_param}"));
            if txn
                .execute_raw(sql.build(backend))
                .await
                .inv()?
                .rows_affected()
                == 0
            {
                let short = self.short_lines(txn, &wanted[i..]).await?;
                debug!(reservation_id = %req.reservation_id, short = short.len(), "not enough stock");
                return Err(InventoryError::Unavailable(short));
            }
        }

        let mut sql = Sql::new(
            "INSERT INTO reservation_items (reservation_id, line_no, book_id, quantity, \
             unit_price_minor) VALUES ",
        );
        sql.rows(
            req.lines
                .iter()
                .zip(&prices)
                .enumerate()
                .map(|(i, (l, p))| {
                    vec![
                        req.reservation_id.as_uuid().into(),
                        (i as i64 + 1).into(),
                        l.book_id.as_str().into(),
                        i64::from(l.quantity.get()).into(),
                        p.to_minor_units().into(),
                    ]
                }),
        );
        if !req.lines.is_empty() {
            txn.execute_raw(sql.build(backend)).await.inv()?;
        }
        Ok(Reservation {
            id: req.reservation_id,
            expires_at: req.expires_at,
            lines: req
                .lines
                .iter()
                .zip(prices)
                .map(|(l, unit_price)| checkout_ports::ReservationLine {
                    book_id: l.book_id.clone(),
                    quantity: l.quantity,
                    unit_price,
                })
                .collect(),
        })
    }

    /// The lines that can't be served: the first of `rest` failed its
    /// conditional update, so it is short whatever the count now says; the
    /// others are short when their current count is below what they need.
    async fn short_lines(
        &self,
        txn: &DatabaseTransaction,
        rest: &[(&str, u32)],
    ) -> Result<Vec<UnavailableItem>, InventoryError> {
        let rows = stock::Entity::find()
            .filter(stock::Column::BookId.is_in(rest.iter().map(|(b, _)| *b)))
            .all(txn)
            .await
            .inv()?;
        let counts: HashMap<&str, i64> = rows
            .iter()
            .map(|r| (r.book_id.as_str(), r.available))
            .collect();
        let mut short = Vec::new();
        for (i, (book, q)) in rest.iter().enumerate() {
            let available = counts.get(book).copied().unwrap_or(0);
            let available = u32::try_from(available.max(0)).unwrap_or(u32::MAX);
            if i == 0 || available < *q {
                short.push(UnavailableItem {
                    book_id: BookId::parse(*book)
                        .map_err(|e| InventoryError::Unexpected(e.to_string()))?,
                    requested: *q,
                    // A concurrent release may have refilled the first line
                    // since its update failed; report it as short anyway.
                    available: if i == 0 {
                        available.min(q.saturating_sub(1))
                    } else {
                        available
                    },
                });
            }
        }
        Ok(short)
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
        if self.is_postgres() {
            let mut lock = Sql::new(
                "SELECT book_id FROM stock WHERE book_id IN (SELECT book_id FROM \
                 reservation_items WHERE reservation_id IN ",
            );
            lock.list(ids.iter().copied())
                .push(") ORDER BY book_id FOR UPDATE");
            txn.query_all_raw(lock.build(backend)).await.inv()?;
        }
        let set = match adjust {
            Adjust::Confirm => "reserved = reserved - x.q",
            Adjust::Release => "available = available + x.q, reserved = reserved - x.q",
        };
        let mut sql = Sql::new(&format!("UPDATE stock SET {set}, updated_at = "));
        sql.bind(micros(OffsetDateTime::now_utc()))
            .push(
                " FROM (SELECT book_id, CAST(SUM(quantity) AS BIGINT) AS q FROM reservation_items \
                 WHERE reservation_id IN ",
            )
            .list(ids.iter().copied())
            .push(" GROUP BY book_id) AS x WHERE stock.book_id = x.book_id");
        txn.execute_raw(sql.build(backend)).await.inv()?;
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
        let txn = self.begin_write().await.inv()?;
        let reservation = self.reserve_in(&txn, request, Quote::Catalog).await?;
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
        let done = self
            .writer
            .execute_raw(sql.build(self.db_backend()))
            .await
            .inv()?;
        if done.rows_affected() == 1 {
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
        let picked: Vec<Uuid> = txn
            .query_all_raw(pick.build(backend))
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
        convert::stock_item(&row).map_err(unexpected)
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
    ) -> Result<Vec<(BookId, Money)>, InventoryError> {
        if books.is_empty() {
            return Ok(Vec::new());
        }
        stock::Entity::find()
            .filter(stock::Column::BookId.is_in(books.iter().map(BookId::as_str)))
            .all(&self.reader)
            .await
            .inv()?
            .iter()
            .map(|r| {
                let item = convert::stock_item(r).map_err(unexpected)?;
                Ok((item.book_id, item.price))
            })
            .collect()
    }

    #[instrument(skip_all, fields(order_id = %order.id(), reservation_id = %reservation.reservation_id))]
    async fn create_with_reservation(
        &self,
        order: &Order,
        changes: &[OrderChange],
        reservation: &ReservationRequest,
        prices: &[(BookId, Money)],
    ) -> Result<(), LedgerError> {
        let txn = self.begin_write().await.repo()?;
        self.reserve_in(&txn, reservation, Quote::Quoted(prices))
            .await?;
        self.create_in(&txn, order, changes).await?;
        txn.commit().await.repo()?;
        Ok(())
    }

    #[instrument(skip_all, fields(order_id = %order.id(), expected_version))]
    async fn save_with_stock(
        &self,
        order: &Order,
        expected_version: u64,
        changes: &[OrderChange],
        effect: StockEffect,
    ) -> Result<(), LedgerError> {
        let txn = self.begin_write().await.repo()?;
        self.save_in(&txn, order, expected_version, changes).await?;
        match effect {
            StockEffect::Confirm(id) => self.confirm_in(&txn, id).await?,
            StockEffect::Release(id) => self.release_in(&txn, id).await?,
        }
        txn.commit().await.repo()?;
        Ok(())
    }
}
