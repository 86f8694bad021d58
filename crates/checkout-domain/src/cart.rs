//! The customer's cart as the checkout accepts it: every field checked, every
//! problem reported with the path of the field it concerns
//! (`items[0].quantity`), all at once so a client can fix them in one go.

use std::collections::HashSet;
use std::fmt;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::currency::Currency;
use crate::error::DomainError;
use crate::money::Money;
use crate::values::{BookId, CustomerId, Quantity, TaxRate};

/// Most lines one order may have.
pub const MAX_ITEMS: usize = 100;

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Path of the field, e.g. `items[0].quantity`.
    pub field: String,
    pub message: String,
}

/// Every problem found in a request.
#[derive(Debug, Clone, PartialEq, Eq, Default, thiserror::Error)]
#[error("{} invalid field(s): {}", .errors.len(), summary(.errors))]
pub struct ValidationErrors {
    pub errors: Vec<FieldError>,
}

fn summary(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ValidationErrors {
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            errors: vec![FieldError {
                field: field.into(),
                message: message.into(),
            }],
        }
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Records the error of a fallible constructor under `field`, returning
    /// the value if it was valid.
    fn check<T>(&mut self, field: impl Into<String>, r: Result<T, DomainError>) -> Option<T> {
        r.map_err(|e| self.push(field, e.to_string())).ok()
    }
}

/// A postal address, each part bounded so it fits on a label and in a column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Address {
    line1: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    line2: Option<String>,
    city: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    postal_code: String,
    /// ISO 3166-1 alpha-2, upper case.
    country: String,
}

/// Raw address fields as a client sent them.
#[derive(Debug, Clone, Default)]
pub struct AddressDraft {
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub city: Option<String>,
    pub region: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
}

impl Address {
    const MAX_PART: usize = 200;

    /// Checks a draft, recording problems under `path` (`shipping_address`).
    pub fn parse(
        draft: AddressDraft,
        path: &str,
        errors: &mut ValidationErrors,
    ) -> Option<Address> {
        let before = errors.errors.len();
        let required = |name: &str, v: Option<String>, errors: &mut ValidationErrors| -> String {
            let v = v.unwrap_or_default().trim().to_owned();
            if v.is_empty() {
                errors.push(format!("{path}.{name}"), "is required");
            } else if v.chars().count() > Self::MAX_PART {
                errors.push(
                    format!("{path}.{name}"),
                    format!("must be at most {} characters", Self::MAX_PART),
                );
            }
            v
        };
        let line1 = required("line1", draft.line1, errors);
        let city = required("city", draft.city, errors);
        let postal_code = required("postal_code", draft.postal_code, errors);
        let country = required("country", draft.country, errors).to_ascii_uppercase();
        if !country.is_empty()
            && (country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()))
        {
            errors.push(
                format!("{path}.country"),
                "must be an ISO 3166-1 alpha-2 code such as US",
            );
        }
        let optional = |name: &str, v: Option<String>, errors: &mut ValidationErrors| {
            let v = v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
            if v.as_ref()
                .is_some_and(|s| s.chars().count() > Self::MAX_PART)
            {
                errors.push(
                    format!("{path}.{name}"),
                    format!("must be at most {} characters", Self::MAX_PART),
                );
            }
            v
        };
        let line2 = optional("line2", draft.line2, errors);
        let region = optional("region", draft.region, errors);
        (errors.errors.len() == before).then_some(Address {
            line1,
            line2,
            city,
            region,
            postal_code,
            country,
        })
    }
}

/// How the customer pays: a provider token (`pm_card_visa`), never card data.
#[derive(Clone, PartialEq, Eq)]
pub struct PaymentMethod {
    kind: String,
    token: String,
}

impl PaymentMethod {
    pub fn new(kind: impl Into<String>, token: impl Into<String>) -> Result<Self, DomainError> {
        let (kind, token) = (kind.into(), token.into());
        if kind.is_empty()
            || kind.len() > 32
            || !kind.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            return Err(DomainError::Invalid(
                "payment method type must be a lower-case word such as card".into(),
            ));
        }
        if token.is_empty() || token.len() > 255 || !token.chars().all(|c| c.is_ascii_graphic()) {
            return Err(DomainError::Invalid(
                "payment method token must be 1–255 visible ASCII characters".into(),
            ));
        }
        Ok(Self { kind, token })
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The provider token. Never log it.
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl fmt::Debug for PaymentMethod {
    /// The token stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PaymentMethod")
            .field("kind", &self.kind)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// One line of a cart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartItem {
    book_id: BookId,
    quantity: Quantity,
    expected_unit_price: Option<Money>,
}

impl CartItem {
    pub fn book_id(&self) -> &BookId {
        &self.book_id
    }
    pub fn quantity(&self) -> Quantity {
        self.quantity
    }
    /// The unit price the client saw, if it sent one; it must equal the
    /// catalog's price, it is never what gets charged.
    pub fn expected_unit_price(&self) -> Option<Money> {
        self.expected_unit_price
    }
}

/// A checked cart: the input of the order pipeline.
#[derive(Debug, Clone)]
pub struct Cart {
    customer_id: CustomerId,
    currency: Currency,
    items: Vec<CartItem>,
    tax_rate: TaxRate,
    shipping_cost: Money,
    shipping_address: Option<Address>,
    billing_address: Option<Address>,
    payment_method: PaymentMethod,
}

/// A cart's raw fields, as decoded from a request; `Cart::parse` checks them.
#[derive(Debug, Clone, Default)]
pub struct CartDraft {
    pub customer_id: Option<String>,
    pub currency: Option<String>,
    pub items: Vec<CartItemDraft>,
    pub tax_rate: Option<Decimal>,
    pub shipping_cost: Option<Decimal>,
    pub shipping_address: Option<AddressDraft>,
    pub billing_address: Option<AddressDraft>,
    pub payment_method_type: Option<String>,
    pub payment_method_token: Option<String>,
    /// Set when the request had no `payment_method` object at all.
    pub payment_method_missing: bool,
}

/// Raw fields of one cart line.
#[derive(Debug, Clone, Default)]
pub struct CartItemDraft {
    pub book_id: Option<String>,
    pub quantity: Option<i64>,
    pub unit_price: Option<Decimal>,
}

impl Cart {
    /// Checks every field, reporting all problems with their paths.
    pub fn parse(draft: CartDraft) -> Result<Cart, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let customer_id = match draft.customer_id {
            None => {
                errors.push("customer_id", "is required");
                None
            }
            Some(c) => errors.check("customer_id", CustomerId::parse(c)),
        };
        let currency = match draft.currency {
            None => Some(Currency::USD),
            Some(c) => errors.check("currency", Currency::parse(&c)),
        };
        if draft.items.is_empty() {
            errors.push("items", "must contain at least one item");
        } else if draft.items.len() > MAX_ITEMS {
            errors.push("items", format!("must contain at most {MAX_ITEMS} items"));
        }
        let mut items = Vec::with_capacity(draft.items.len());
        let mut seen = HashSet::new();
        for (i, item) in draft.items.into_iter().enumerate() {
            let book_id = match item.book_id {
                None => {
                    errors.push(format!("items[{i}].book_id"), "is required");
                    None
                }
                Some(b) => errors.check(format!("items[{i}].book_id"), BookId::parse(b)),
            };
            if let Some(b) = &book_id {
                if !seen.insert(b.clone()) {
                    errors.push(
                        format!("items[{i}].book_id"),
                        "appears more than once; use one line with a larger quantity",
                    );
                }
            }
            let quantity = match item.quantity {
                None => {
                    errors.push(format!("items[{i}].quantity"), "is required");
                    None
                }
                Some(q) => errors.check(format!("items[{i}].quantity"), Quantity::new(q)),
            };
            let expected_unit_price = match (item.unit_price, currency) {
                (Some(p), Some(cur)) => errors
                    .check(format!("items[{i}].unit_price"), Money::new(p, cur))
                    .map(Some),
                _ => Some(None),
            };
            if let (Some(book_id), Some(quantity), Some(expected_unit_price)) =
                (book_id, quantity, expected_unit_price)
            {
                items.push(CartItem {
                    book_id,
                    quantity,
                    expected_unit_price,
                });
            }
        }
        let tax_rate = match draft.tax_rate {
            None => Some(TaxRate::ZERO),
            Some(r) => errors.check("tax_rate", TaxRate::new(r)),
        };
        let shipping_cost = match (draft.shipping_cost, currency) {
            (None, Some(c)) => Some(Money::zero(c)),
            (Some(s), Some(c)) => errors.check("shipping_cost", Money::new(s, c)),
            (_, None) => None,
        };
        let shipping_address = draft
            .shipping_address
            .and_then(|a| Address::parse(a, "shipping_address", &mut errors));
        let billing_address = draft
            .billing_address
            .and_then(|a| Address::parse(a, "billing_address", &mut errors));
        let payment_method = if draft.payment_method_missing {
            errors.push("payment_method", "is required");
            None
        } else {
            let kind = draft
                .payment_method_type
                .unwrap_or_else(|| "card".to_owned());
            match draft.payment_method_token {
                None => {
                    errors.push("payment_method.token", "is required");
                    None
                }
                Some(token) => errors.check("payment_method", PaymentMethod::new(kind, token)),
            }
        };
        match (
            customer_id,
            currency,
            tax_rate,
            shipping_cost,
            payment_method,
        ) {
            (
                Some(customer_id),
                Some(currency),
                Some(tax_rate),
                Some(shipping_cost),
                Some(payment_method),
            ) if errors.is_empty() => Ok(Cart {
                customer_id,
                currency,
                items,
                tax_rate,
                shipping_cost,
                shipping_address,
                billing_address,
                payment_method,
            }),
            _ => Err(errors),
        }
    }

    pub fn customer_id(&self) -> &CustomerId {
        &self.customer_id
    }
    pub fn currency(&self) -> Currency {
        self.currency
    }
    pub fn items(&self) -> &[CartItem] {
        &self.items
    }
    pub fn tax_rate(&self) -> TaxRate {
        self.tax_rate
    }
    pub fn shipping_cost(&self) -> Money {
        self.shipping_cost
    }
    pub fn shipping_address(&self) -> Option<&Address> {
        self.shipping_address.as_ref()
    }
    pub fn billing_address(&self) -> Option<&Address> {
        self.billing_address.as_ref()
    }
    pub fn payment_method(&self) -> &PaymentMethod {
        &self.payment_method
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    pub(crate) fn draft() -> CartDraft {
        CartDraft {
            customer_id: Some("cust-42".into()),
            currency: None,
            items: vec![CartItemDraft {
                book_id: Some("bk-0001".into()),
                quantity: Some(2),
                unit_price: Some(Decimal::from_str("12.50").unwrap()),
            }],
            tax_rate: Some(Decimal::from_str("0.08").unwrap()),
            shipping_cost: Some(Decimal::from_str("4.99").unwrap()),
            payment_method_token: Some("pm_card_visa".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_valid_cart_with_defaults() {
        let cart = Cart::parse(draft()).unwrap();
        assert_eq!(cart.currency(), Currency::USD);
        assert_eq!(cart.items()[0].quantity().get(), 2);
        assert_eq!(cart.payment_method().kind(), "card");
        assert!(!format!("{:?}", cart.payment_method()).contains("pm_card_visa"));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let mut d = draft();
        d.customer_id = None;
        d.currency = Some("XYZ".into());
        d.items.push(CartItemDraft {
            book_id: Some("bk 2".into()),
            quantity: Some(0),
            unit_price: None,
        });
        d.tax_rate = Some(Decimal::from(2));
        d.shipping_address = Some(AddressDraft {
            country: Some("USA".into()),
            ..Default::default()
        });
        let errs = Cart::parse(d).unwrap_err();
        let fields: Vec<&str> = errs.errors.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "customer_id",
            "currency",
            "items[1].book_id",
            "items[1].quantity",
            "tax_rate",
            "shipping_address.line1",
            "shipping_address.country",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn empty_duplicate_and_sub_cent_items_are_refused() {
        let mut d = draft();
        d.items.clear();
        assert_eq!(Cart::parse(d).unwrap_err().errors[0].field, "items");
        let mut d = draft();
        d.items.push(d.items[0].clone());
        assert_eq!(
            Cart::parse(d).unwrap_err().errors[0].field,
            "items[1].book_id"
        );
        let mut d = draft();
        d.items[0].unit_price = Some(Decimal::from_str("1.001").unwrap());
        assert_eq!(
            Cart::parse(d).unwrap_err().errors[0].field,
            "items[0].unit_price"
        );
        let mut d = draft();
        d.shipping_cost = Some(Decimal::from(-1));
        assert_eq!(Cart::parse(d).unwrap_err().errors[0].field, "shipping_cost");
        let mut d = draft();
        d.payment_method_missing = true;
        assert_eq!(
            Cart::parse(d).unwrap_err().errors[0].field,
            "payment_method"
        );
    }
}
