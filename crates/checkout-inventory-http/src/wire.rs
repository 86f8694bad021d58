//! The inventory service's JSON, as `docs/inventory-api.md` specifies it, and
//! its conversion to and from the domain's types.
//!
//! These types stay private to the crate: the rest of the checkout sees only
//! the port's [`Reservation`] and
//! [`InventoryError`](checkout_ports::InventoryError). Conversions from the
//! wire are strict — a price finer than its currency's minor unit, an
//! unknown currency code, a reservation that does not match what was asked —
//! because a wrong price or quantity accepted here would be charged.

use std::collections::HashMap;
use std::str::FromStr;

use checkout_domain::{
    BookId, Currency, Money, OrderId, PriceMismatch, Quantity, ReservationId, UnavailableItem,
};
use checkout_ports::{Reservation, ReservationLine, ReservationRequest};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// `POST /reservations` body.
#[derive(Debug, Serialize)]
pub(crate) struct ReserveBody<'a> {
    pub reservation_id: ReservationId,
    pub order_id: OrderId,
    pub currency: Currency,
    pub ttl_seconds: u32,
    pub items: Vec<ReserveItem<'a>>,
}

/// One line of a reserve request.
#[derive(Debug, Serialize)]
pub(crate) struct ReserveItem<'a> {
    pub book_id: &'a BookId,
    pub quantity: u32,
    /// A decimal string at the currency's scale (`"12.50"`), only when the
    /// customer sent the price they saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_unit_price: Option<Money>,
}

impl<'a> ReserveBody<'a> {
    pub(crate) fn new(request: &'a ReservationRequest, ttl_seconds: u32) -> Self {
        Self {
            reservation_id: request.reservation_id,
            order_id: request.order_id,
            currency: request.currency,
            ttl_seconds,
            items: request
                .lines
                .iter()
                .map(|l| ReserveItem {
                    book_id: &l.book_id,
                    quantity: l.quantity.get(),
                    expected_unit_price: l.expected_unit_price,
                })
                .collect(),
        }
    }
}

/// `POST /reservations/{id}/extend` body.
#[derive(Debug, Serialize)]
pub(crate) struct ExtendBody {
    pub ttl_seconds: u32,
}

/// A reservation as the service answers a reserve (201 new, 200 replay).
/// Unknown fields (`status`, `created_at`, …) are ignored so the service
/// can add to its answer without breaking this client.
#[derive(Debug, Deserialize)]
pub(crate) struct ReservationBody {
    reservation_id: ReservationId,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    items: Vec<ReservedItem>,
}

#[derive(Debug, Deserialize)]
struct ReservedItem {
    book_id: BookId,
    quantity: u32,
    unit_price: String,
    currency: String,
}

/// A refusal (any 4xx): a machine-readable `code`, a human `message`, and
/// the details that go with the code.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    pub code: Option<String>,
    pub message: Option<String>,
    #[serde(default)]
    pub unavailable_items: Vec<UnavailableWire>,
    #[serde(default)]
    pub book_ids: Vec<BookId>,
    #[serde(default)]
    pub mismatches: Vec<MismatchWire>,
    pub catalog_currency: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UnavailableWire {
    book_id: BookId,
    requested: u32,
    available: u32,
}

#[derive(Debug, Deserialize)]
pub(crate) struct MismatchWire {
    book_id: BookId,
    expected_unit_price: String,
    unit_price: String,
    currency: String,
}

/// Why an answer could not be used; becomes `InventoryError::Unexpected`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Malformed {
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Content(String),
}

impl ErrorBody {
    /// The refusal's body, or an empty one when it is not the documented
    /// JSON (a proxy's HTML page, say): the caller then sees no code and
    /// reports the status as unexpected.
    pub(crate) fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }

    pub(crate) fn unavailable_items(&self) -> Result<Vec<UnavailableItem>, Malformed> {
        if self.unavailable_items.is_empty() {
            return Err(Malformed::Content(
                "insufficient_inventory without unavailable_items".into(),
            ));
        }
        Ok(self
            .unavailable_items
            .iter()
            .map(|i| UnavailableItem {
                book_id: i.book_id.clone(),
                requested: i.requested,
                available: i.available,
            })
            .collect())
    }

    pub(crate) fn unknown_books(&self) -> Result<Vec<BookId>, Malformed> {
        if self.book_ids.is_empty() {
            return Err(Malformed::Content("unknown_book without book_ids".into()));
        }
        Ok(self.book_ids.clone())
    }

    pub(crate) fn price_mismatches(&self) -> Result<Vec<PriceMismatch>, Malformed> {
        if self.mismatches.is_empty() {
            return Err(Malformed::Content(
                "price_mismatch without mismatches".into(),
            ));
        }
        self.mismatches
            .iter()
            .map(|m| {
                let currency = currency(&m.currency)?;
                Ok(PriceMismatch {
                    book_id: m.book_id.clone(),
                    expected: money(&m.expected_unit_price, currency)?,
                    catalog: money(&m.unit_price, currency)?,
                })
            })
            .collect()
    }

    pub(crate) fn catalog_currency(&self) -> Result<Currency, Malformed> {
        let code = self.catalog_currency.as_deref().ok_or_else(|| {
            Malformed::Content("currency_mismatch without catalog_currency".into())
        })?;
        currency(code)
    }
}

/// Turns a reserve's success answer into the port's [`Reservation`],
/// checking that it is the reservation asked for: same id, and exactly the
/// requested books in the requested quantities (anything else would let the
/// checkout charge for stock it does not hold).
///
/// Prices are taken as the catalog states them, in the catalog's currency:
/// when that differs from the order's currency or from the price the
/// customer saw, the order pricing step reports it and releases the
/// reservation (the service is asked to refuse such a reserve up front).
pub(crate) fn reservation(
    body: &[u8],
    request: &ReservationRequest,
) -> Result<Reservation, Malformed> {
    let body: ReservationBody = serde_json::from_slice(body)?;
    if body.reservation_id != request.reservation_id {
        return Err(Malformed::Content(format!(
            "answered reservation {} to a reserve of {}",
            body.reservation_id, request.reservation_id
        )));
    }
    let mut wanted: HashMap<&BookId, Quantity> = HashMap::new();
    for line in &request.lines {
        // A request naming a book twice is a caller bug the domain's cart
        // prevents; the service would see the same, so add them up.
        let total = wanted
            .get(&line.book_id)
            .map_or(i64::from(line.quantity.get()), |q| {
                i64::from(q.get()) + i64::from(line.quantity.get())
            });
        let q = Quantity::new(total).map_err(|e| Malformed::Content(e.to_string()))?;
        wanted.insert(&line.book_id, q);
    }
    if body.items.len() != wanted.len() {
        return Err(Malformed::Content(format!(
            "answered {} reserved books for {} requested",
            body.items.len(),
            wanted.len()
        )));
    }
    let mut lines = Vec::with_capacity(body.items.len());
    for item in body.items {
        let Some(quantity) = wanted.remove(&item.book_id) else {
            return Err(Malformed::Content(format!(
                "answered book {} that was not requested (or twice)",
                item.book_id
            )));
        };
        if quantity.get() != item.quantity {
            return Err(Malformed::Content(format!(
                "reserved {} of book {} instead of {}",
                item.quantity, item.book_id, quantity
            )));
        }
        let currency = currency(&item.currency)?;
        lines.push(ReservationLine {
            book_id: item.book_id,
            quantity,
            unit_price: money(&item.unit_price, currency)?,
        });
    }
    Ok(Reservation {
        id: body.reservation_id,
        expires_at: body.expires_at,
        lines,
    })
}

/// Whole seconds from `now` to `expires_at`, rounded up and at least one:
/// the service counts the time-to-live from its own clock, so the two
/// machines' clocks never have to agree.
pub(crate) fn ttl_seconds(expires_at: OffsetDateTime, now: OffsetDateTime) -> u32 {
    let left = expires_at - now;
    let mut secs = left.whole_seconds();
    if left.subsec_nanoseconds() > 0 {
        secs = secs.saturating_add(1);
    }
    u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
}

fn currency(code: &str) -> Result<Currency, Malformed> {
    Currency::parse(code).map_err(|e| Malformed::Content(e.to_string()))
}

/// A wire price in `currency`, by the domain's rules: a decimal string, not
/// negative, a whole number of minor units (`"12.505"` USD is refused).
fn money(text: &str, currency: Currency) -> Result<Money, Malformed> {
    let amount = Decimal::from_str(text.trim())
        .map_err(|_| Malformed::Content(format!("`{text}` is not a decimal price")))?;
    Money::new(amount, currency).map_err(|e| Malformed::Content(format!("price `{text}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkout_ports::ReserveLine;
    use serde_json::json;
    use time::macros::datetime;

    fn request() -> ReservationRequest {
        ReservationRequest {
            reservation_id: ReservationId::parse("0193a000-0000-7000-8000-000000000001").unwrap(),
            order_id: OrderId::parse("0193a000-0000-7000-8000-000000000002").unwrap(),
            currency: Currency::USD,
            lines: vec![
                ReserveLine {
                    book_id: BookId::parse("bk-1").unwrap(),
                    quantity: Quantity::new(2).unwrap(),
                    expected_unit_price: Some(
                        Money::new(Decimal::from_str("12.5").unwrap(), Currency::USD).unwrap(),
                    ),
                },
                ReserveLine {
                    book_id: BookId::parse("bk-2").unwrap(),
                    quantity: Quantity::new(1).unwrap(),
                    expected_unit_price: None,
                },
            ],
            expires_at: datetime!(2026-11-25 10:15 UTC),
        }
    }

    #[test]
    fn reserve_body_has_the_documented_shape() {
        let r = request();
        let body = serde_json::to_value(ReserveBody::new(&r, 900)).unwrap();
        assert_eq!(
            body,
            json!({
                "reservation_id": "0193a000-0000-7000-8000-000000000001",
                "order_id": "0193a000-0000-7000-8000-000000000002",
                "currency": "USD",
                "ttl_seconds": 900,
                "items": [
                    {"book_id": "bk-1", "quantity": 2, "expected_unit_price": "12.50"},
                    {"book_id": "bk-2", "quantity": 1}
                ]
            })
        );
    }

    fn answer(items: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "reservation_id": "0193a000-0000-7000-8000-000000000001",
            "status": "active",
            "expires_at": "2026-11-25T10:15:00Z",
            "items": items
        }))
        .unwrap()
    }

    #[test]
    fn converts_a_matching_reservation() {
        let r = reservation(
            &answer(json!([
                {"book_id": "bk-2", "quantity": 1, "unit_price": "7", "currency": "USD"},
                {"book_id": "bk-1", "quantity": 2, "unit_price": "12.50", "currency": "usd"}
            ])),
            &request(),
        )
        .unwrap();
        assert_eq!(r.expires_at, datetime!(2026-11-25 10:15 UTC));
        assert_eq!(r.lines.len(), 2);
        assert_eq!(r.lines[0].unit_price.to_string(), "7.00");
        assert_eq!(r.lines[1].unit_price.to_string(), "12.50");
    }

    #[test]
    fn refuses_answers_that_do_not_match_the_request() {
        let bad = |items: serde_json::Value| reservation(&answer(items), &request()).is_err();
        // Sub-minor-unit price.
        assert!(bad(json!([
            {"book_id": "bk-1", "quantity": 2, "unit_price": "12.505", "currency": "USD"},
            {"book_id": "bk-2", "quantity": 1, "unit_price": "7", "currency": "USD"}
        ])));
        // A number instead of a decimal string.
        assert!(bad(json!([
            {"book_id": "bk-1", "quantity": 2, "unit_price": 12.5, "currency": "USD"},
            {"book_id": "bk-2", "quantity": 1, "unit_price": "7", "currency": "USD"}
        ])));
        // Unknown currency.
        assert!(bad(json!([
            {"book_id": "bk-1", "quantity": 2, "unit_price": "12.50", "currency": "XYZ"},
            {"book_id": "bk-2", "quantity": 1, "unit_price": "7", "currency": "USD"}
        ])));
        // Missing book, wrong quantity, extra book.
        assert!(bad(json!([
            {"book_id": "bk-1", "quantity": 2, "unit_price": "12.50", "currency": "USD"}
        ])));
        assert!(bad(json!([
            {"book_id": "bk-1", "quantity": 1, "unit_price": "12.50", "currency": "USD"},
            {"book_id": "bk-2", "quantity": 1, "unit_price": "7", "currency": "USD"}
        ])));
        assert!(bad(json!([
            {"book_id": "bk-1", "quantity": 2, "unit_price": "12.50", "currency": "USD"},
            {"book_id": "bk-3", "quantity": 1, "unit_price": "7", "currency": "USD"}
        ])));
        // Negative price.
        assert!(bad(json!([
            {"book_id": "bk-1", "quantity": 2, "unit_price": "-1.00", "currency": "USD"},
            {"book_id": "bk-2", "quantity": 1, "unit_price": "7", "currency": "USD"}
        ])));
        // Another reservation's id.
        let mut other: serde_json::Value = serde_json::from_slice(&answer(json!([]))).unwrap();
        other["reservation_id"] = json!("0193a000-0000-7000-8000-00000000ffff");
        assert!(reservation(&serde_json::to_vec(&other).unwrap(), &request()).is_err());
    }

    #[test]
    fn ttl_is_whole_seconds_rounded_up_and_positive() {
        let now = datetime!(2026-11-25 10:00 UTC);
        assert_eq!(ttl_seconds(datetime!(2026-11-25 10:15 UTC), now), 900);
        assert_eq!(ttl_seconds(datetime!(2026-11-25 10:00:00.2 UTC), now), 1);
        assert_eq!(ttl_seconds(datetime!(2026-11-25 10:00:10.5 UTC), now), 11);
        assert_eq!(ttl_seconds(datetime!(2026-11-25 09:00 UTC), now), 1);
    }

    #[test]
    fn error_bodies_convert_to_domain_values() {
        let body = ErrorBody::parse(
            &serde_json::to_vec(&json!({
                "code": "price_mismatch",
                "message": "prices changed",
                "mismatches": [{"book_id": "bk-1", "expected_unit_price": "12.00",
                                "unit_price": "12.50", "currency": "USD"}]
            }))
            .unwrap(),
        );
        assert_eq!(body.code.as_deref(), Some("price_mismatch"));
        let m = body.price_mismatches().unwrap();
        assert_eq!(m[0].expected.to_string(), "12.00");
        assert_eq!(m[0].catalog.to_string(), "12.50");

        let html = ErrorBody::parse(b"<html>bad gateway</html>");
        assert!(html.code.is_none());
        assert!(html.unavailable_items().is_err());
        assert!(html.unknown_books().is_err());
        assert!(html.catalog_currency().is_err());
    }
}
