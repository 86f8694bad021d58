//! The local stock: `InventoryPort` and `StockAdmin` over the `stock`,
//! `reservations` and `reservation_items` tables.
//!
//! A reservation never reads then writes: each line is one conditional
//! update (`available >= quantity`, and the quoted price where there is
//! one), so concurrent reservations can never take stock below zero, and the
//! `CHECK` constraints would refuse it anyway.

use async_trait::async_trait;
use checkout_domain::{
    BookId, Money, PriceMismatch, PricingProblem, Quantity, ReservationId, UnavailableItem,
};
use checkout_ports::{
    InventoryError, InventoryPort, Reservation, ReservationLine, ReservationRequest, StockAdmin,
    StockItem,
};
use sea_orm::{ConnectionTrait, DbErr, QueryResult, TransactionTrait};
use time::OffsetDateTime;

use crate::convert::{self, get, i, s, ts};
use crate::error;
use crate::{SqlStore, placeholders, rows_placeholders};

/// Why holding stock did not happen.
pub(crate) enum HoldError {
    /// A line could not be held (short, unknown, price or currency moved):
    /// `why_refused` tells which.
    Refused,
    Db(DbErr),
}

impl From<DbErr> for HoldError {
    fn from(e: DbErr) -> Self {
        HoldError::Db(e)
    }
}

impl SqlStore {
    /// Holds every line of `req` inside `c`'s transaction, or returns
    /// `Refused` having held some (the caller rolls back). `quoted` prices,
    /// when given, must still be the catalog's.
    pub(crate) async fn hold_stock(
        &self,
        c: &impl ConnectionTrait,
        req: &ReservationRequest,
        quoted: Option<&[(BookId, Money)]>,
    ) -> Result<Vec<ReservationLine>, HoldError> {
        let now = i(ts(OffsetDateTime::now_utc()));
        // A stable order of locks keeps concurrent reservations from
        // deadlocking on PostgreSQL.
        let mut lines: Vec<_> = req.lines.iter().collect();
        lines.sort_by(|a, b| a.book_id.cmp(&b.book_id));
        let mut held = Vec::with_capacity(lines.len());
        for l in lines {
            let q = i64::from(l.quantity.get());
            let price = match quoted {
                Some(p) => p
                    .iter()
                    .find(|(b, _)| *b == l.book_id)
                    .map(|(_, m)| *m)
                    .or(l.expected_unit_price),
                None => l.expected_unit_price,
            };
            let mut sql = String::from(
                "UPDATE stock SET available = available - ?, reserved = reserved + ?, updated_at = ? \
                 WHERE book_id = ? AND available >= ? AND currency = ?",
            );
            let mut values = vec![
                i(q),
                i(q),
                now.clone(),
                s(l.book_id.as_str()),
                i(q),
                s(req.currency.code()),
            ];
            if let Some(p) = price {
                sql.push_str(" AND price_minor = ?");
                values.push(i(p.to_minor_units()));
            }
            sql.push_str(" RETURNING price_minor");
            let Some(row) = self.one(c, &sql, values).await? else {
                return Err(HoldError::Refused);
            };
            let unit_price = convert::money(get(&row, "price_minor")?, req.currency)?;
            held.push(ReservationLine {
                book_id: l.book_id.clone(),
                quantity: l.quantity,
                unit_price,
            });
        }
        let rid = s(req.reservation_id.to_string());
        self.exec(
            c,
            "INSERT INTO reservations (id, order_id, status, expires_at, created_at, updated_at) VALUES (?, ?, 'active', ?, ?, ?)",
            vec![rid.clone(), s(req.order_id.to_string()), i(ts(req.expires_at)), now.clone(), now],
        )
        .await?;
        let mut values = Vec::with_capacity(held.len() * 4);
        for h in &held {
            values.extend([
                rid.clone(),
                s(h.book_id.as_str()),
                i(i64::from(h.quantity.get())),
                i(h.unit_price.to_minor_units()),
            ]);
        }
        self.exec(
            c,
            &format!("INSERT INTO reservation_items (reservation_id, book_id, quantity, unit_price_minor) VALUES {}", rows_placeholders(held.len(), 4)),
            values,
        )
        .await?;
        Ok(held)
    }

    /// After a refused hold (rolled back): reads the stock to say why.
    pub(crate) async fn why_refused(
        &self,
        req: &ReservationRequest,
        quoted: Option<&[(BookId, Money)]>,
    ) -> InventoryError {
        let books: Vec<_> = req.lines.iter().map(|l| s(l.book_id.as_str())).collect();
        let rows = match self
            .all(&self.db, &format!("SELECT book_id, price_minor, currency, available FROM stock WHERE book_id IN ({})", placeholders(books.len())), books)
            .await
        {
            Ok(r) => r,
            Err(e) => return error::inventory(e),
        };
        let find = |b: &BookId| {
            rows.iter()
                .find(|r| get::<String>(r, "book_id").ok().as_deref() == Some(b.as_str()))
        };
        let unknown: Vec<BookId> = req
            .lines
            .iter()
            .filter(|l| find(&l.book_id).is_none())
            .map(|l| l.book_id.clone())
            .collect();
        if !unknown.is_empty() {
            return InventoryError::Pricing(PricingProblem::UnknownBooks(unknown));
        }
        let mut mismatches = Vec::new();
        let mut short = Vec::new();
        for l in &req.lines {
            let Some(row) = find(&l.book_id) else {
                continue;
            };
            let (Ok(code), Ok(minor), Ok(available)) = (
                get::<String>(row, "currency"),
                get::<i64>(row, "price_minor"),
                get::<i64>(row, "available"),
            ) else {
                return InventoryError::Unexpected("unreadable stock row".into());
            };
            let Ok(cur) = convert::currency(&code) else {
                return InventoryError::Unexpected(format!("bad currency {code}"));
            };
            if cur != req.currency {
                return InventoryError::Pricing(PricingProblem::CurrencyMismatch {
                    catalog: cur,
                    order: req.currency,
                });
            }
            let Ok(catalog) = convert::money(minor, cur) else {
                return InventoryError::Unexpected("bad price".into());
            };
            let expected = quoted
                .and_then(|q| q.iter().find(|(b, _)| *b == l.book_id).map(|(_, m)| *m))
                .or(l.expected_unit_price);
            if let Some(expected) = expected.filter(|e| *e != catalog) {
                mismatches.push(PriceMismatch {
                    book_id: l.book_id.clone(),
                    expected,
                    catalog,
                });
            }
            if available < i64::from(l.quantity.get()) {
                short.push(UnavailableItem {
                    book_id: l.book_id.clone(),
                    requested: l.quantity.get(),
                    available: u32::try_from(available.max(0)).unwrap_or(0),
                });
            }
        }
        if !mismatches.is_empty() {
            return InventoryError::Pricing(PricingProblem::PriceMismatch(mismatches));
        }
        if !short.is_empty() {
            return InventoryError::Unavailable(short);
        }
        InventoryError::ServiceUnavailable("the stock changed while reserving; retry".into())
    }

    /// Active → confirmed: the reserved units leave the stock.
    pub(crate) async fn confirm_in(
        &self,
        c: &impl ConnectionTrait,
        id: ReservationId,
        now: i64,
    ) -> Result<(), InventoryError> {
        let rid = s(id.to_string());
        let moved = self
            .exec(c, "UPDATE reservations SET status = 'confirmed', updated_at = ? WHERE id = ? AND status = 'active'", vec![i(now), rid.clone()])
            .await
            .map_err(error::inventory)?;
        if moved.rows_affected() == 1 {
            self.adjust_items(c, &rid, "reserved = reserved - ?")
                .await
                .map_err(error::inventory)?;
            return Ok(());
        }
        match self
            .status_of(c, &rid)
            .await
            .map_err(error::inventory)?
            .as_deref()
        {
            Some("confirmed") => Ok(()),
            Some(_) => Err(InventoryError::ReservationGone(id)),
            None => Err(InventoryError::NotFound),
        }
    }

    /// Active → released: the reserved units go back on sale. Anything else
    /// is left as it is.
    pub(crate) async fn release_in(
        &self,
        c: &impl ConnectionTrait,
        id: ReservationId,
        now: i64,
    ) -> Result<(), DbErr> {
        let rid = s(id.to_string());
        let moved = self
            .exec(c, "UPDATE reservations SET status = 'released', updated_at = ? WHERE id = ? AND status = 'active'", vec![i(now), rid.clone()])
            .await?;
        if moved.rows_affected() == 1 {
            self.adjust_items(
                c,
                &rid,
                "available = available + ?, reserved = reserved - ?",
            )
            .await?;
        }
        Ok(())
    }

    async fn adjust_items(
        &self,
        c: &impl ConnectionTrait,
        rid: &sea_orm::Value,
        set: &str,
    ) -> Result<(), DbErr> {
        let items = self.all(c, "SELECT book_id, quantity FROM reservation_items WHERE reservation_id = ? ORDER BY book_id", vec![rid.clone()]).await?;
        let twice = set.matches('?').count() == 2;
        for it in &items {
            let q: i64 = get(it, "quantity")?;
            let mut values = vec![i(q)];
            if twice {
                values.push(i(q));
            }
            values.push(s(get::<String>(it, "book_id")?));
            self.exec(
                c,
                &format!("UPDATE stock SET {set} WHERE book_id = ?"),
                values,
            )
            .await?;
        }
        Ok(())
    }

    async fn status_of(
        &self,
        c: &impl ConnectionTrait,
        rid: &sea_orm::Value,
    ) -> Result<Option<String>, DbErr> {
        self.one(
            c,
            "SELECT status FROM reservations WHERE id = ?",
            vec![rid.clone()],
        )
        .await?
        .map(|r| get::<String>(&r, "status"))
        .transpose()
    }

    async fn existing_reservation(
        &self,
        req: &ReservationRequest,
    ) -> Result<Option<Reservation>, DbErr> {
        let rid = s(req.reservation_id.to_string());
        let Some(row) = self
            .one(
                &self.db,
                "SELECT expires_at FROM reservations WHERE id = ?",
                vec![rid.clone()],
            )
            .await?
        else {
            return Ok(None);
        };
        let items = self.all(&self.db, "SELECT book_id, quantity, unit_price_minor FROM reservation_items WHERE reservation_id = ?", vec![rid]).await?;
        let lines = items
            .iter()
            .map(|it| {
                Ok(ReservationLine {
                    book_id: convert::book(get(it, "book_id")?)?,
                    quantity: Quantity::new(get(it, "quantity")?)
                        .map_err(|e| convert::corrupt(e.to_string()))?,
                    unit_price: convert::money(get(it, "unit_price_minor")?, req.currency)?,
                })
            })
            .collect::<Result<Vec<_>, DbErr>>()?;
        Ok(Some(Reservation {
            id: req.reservation_id,
            expires_at: convert::from_ts(get(&row, "expires_at")?)?,
            lines,
        }))
    }
}

fn stock_item(row: &QueryResult) -> Result<StockItem, DbErr> {
    let cur = convert::currency(&get::<String>(row, "currency")?)?;
    let count = |col: &str| -> Result<u32, DbErr> {
        u32::try_from(get::<i64>(row, col)?).map_err(|e| convert::corrupt(e.to_string()))
    };
    Ok(StockItem {
        book_id: convert::book(get(row, "book_id")?)?,
        title: get(row, "title")?,
        price: convert::money(get(row, "price_minor")?, cur)?,
        available: count("available")?,
        reserved: count("reserved")?,
    })
}

const STOCK_COLS: &str = "book_id, title, price_minor, currency, available, reserved";

#[async_trait]
impl InventoryPort for SqlStore {
    async fn reserve(&self, req: &ReservationRequest) -> Result<Reservation, InventoryError> {
        if let Some(existing) = self
            .existing_reservation(req)
            .await
            .map_err(error::inventory)?
        {
            return Ok(existing);
        }
        let tx = self.db.begin().await.map_err(error::inventory)?;
        match self.hold_stock(&tx, req, None).await {
            Ok(lines) => {
                tx.commit().await.map_err(error::inventory)?;
                Ok(Reservation {
                    id: req.reservation_id,
                    expires_at: req.expires_at,
                    lines,
                })
            }
            Err(HoldError::Db(e)) => Err(error::inventory(e)),
            Err(HoldError::Refused) => {
                drop(tx);
                Err(self.why_refused(req, None).await)
            }
        }
    }

    async fn confirm(&self, id: ReservationId) -> Result<(), InventoryError> {
        let tx = self.db.begin().await.map_err(error::inventory)?;
        self.confirm_in(&tx, id, ts(OffsetDateTime::now_utc()))
            .await?;
        tx.commit().await.map_err(error::inventory)
    }

    async fn release(&self, id: ReservationId) -> Result<(), InventoryError> {
        let tx = self.db.begin().await.map_err(error::inventory)?;
        self.release_in(&tx, id, ts(OffsetDateTime::now_utc()))
            .await
            .map_err(error::inventory)?;
        tx.commit().await.map_err(error::inventory)
    }

    async fn extend(
        &self,
        id: ReservationId,
        expires_at: OffsetDateTime,
    ) -> Result<(), InventoryError> {
        let rid = s(id.to_string());
        let moved = self
            .exec(
                &self.db,
                "UPDATE reservations SET expires_at = ? WHERE id = ? AND status = 'active'",
                vec![i(ts(expires_at)), rid.clone()],
            )
            .await
            .map_err(error::inventory)?;
        if moved.rows_affected() == 1 {
            return Ok(());
        }
        match self
            .status_of(&self.db, &rid)
            .await
            .map_err(error::inventory)?
            .as_deref()
        {
            Some("confirmed") => Ok(()),
            Some(_) => Err(InventoryError::ReservationGone(id)),
            None => Err(InventoryError::NotFound),
        }
    }

    async fn release_expired(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<u64, InventoryError> {
        let rows = self
            .all(&self.db, "SELECT id FROM reservations WHERE status = 'active' AND expires_at < ? ORDER BY expires_at LIMIT ?", vec![i(ts(now)), i(i64::from(limit))])
            .await
            .map_err(error::inventory)?;
        let mut released = 0;
        for row in rows {
            let id = ReservationId::from_uuid(
                convert::uuid(&get::<String>(&row, "id").map_err(error::inventory)?)
                    .map_err(error::inventory)?,
            );
            let tx = self.db.begin().await.map_err(error::inventory)?;
            // The status check in `release_in` makes this once-only even when
            // several instances sweep at the same time.
            let before = self
                .status_of(&tx, &s(id.to_string()))
                .await
                .map_err(error::inventory)?;
            self.release_in(&tx, id, ts(now))
                .await
                .map_err(error::inventory)?;
            tx.commit().await.map_err(error::inventory)?;
            if before.as_deref() == Some("active") {
                released += 1;
            }
        }
        Ok(released)
    }
}

#[async_trait]
impl StockAdmin for SqlStore {
    async fn upsert_stock(
        &self,
        book_id: &BookId,
        title: &str,
        price: Money,
        available: u32,
    ) -> Result<StockItem, InventoryError> {
        self.exec(
            &self.db,
            "INSERT INTO stock (book_id, title, price_minor, currency, available, reserved, updated_at) VALUES (?, ?, ?, ?, ?, 0, ?) \
             ON CONFLICT (book_id) DO UPDATE SET title = excluded.title, price_minor = excluded.price_minor, \
             currency = excluded.currency, available = excluded.available, updated_at = excluded.updated_at",
            vec![s(book_id.as_str()), s(title), i(price.to_minor_units()), s(price.currency().code()), i(i64::from(available)), i(ts(OffsetDateTime::now_utc()))],
        )
        .await
        .map_err(error::inventory)?;
        self.get_stock(book_id).await
    }

    async fn get_stock(&self, book_id: &BookId) -> Result<StockItem, InventoryError> {
        let row = self
            .one(
                &self.db,
                &format!("SELECT {STOCK_COLS} FROM stock WHERE book_id = ?"),
                vec![s(book_id.as_str())],
            )
            .await
            .map_err(error::inventory)?
            .ok_or(InventoryError::NotFound)?;
        stock_item(&row).map_err(error::inventory)
    }

    async fn list_stock(&self) -> Result<Vec<StockItem>, InventoryError> {
        let rows = self
            .all(
                &self.db,
                &format!("SELECT {STOCK_COLS} FROM stock ORDER BY book_id"),
                vec![],
            )
            .await
            .map_err(error::inventory)?;
        rows.iter()
            .map(stock_item)
            .collect::<Result<_, _>>()
            .map_err(error::inventory)
    }
}
