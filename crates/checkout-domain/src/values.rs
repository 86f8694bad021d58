//! Validated value types: each has private fields and one fallible
//! constructor, so holding one means holding a valid one.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::DomainError;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
            /// Parses the canonical text form; anything else is an error.
            pub fn parse(s: &str) -> Result<Self, DomainError> {
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| DomainError::Invalid(format!("`{s}` is not a valid id")))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

uuid_id!(
    /// An order's id: a UUIDv7, so ids sort by creation time and listing
    /// newest-first is an index scan.
    OrderId
);
uuid_id!(
    /// A stock reservation's id, chosen by the checkout so that every
    /// inventory call can be retried safely.
    ReservationId
);
uuid_id!(
    /// A refund's id, chosen by the checkout; the provider's idempotency key
    /// for the refund is derived from it.
    RefundId
);
uuid_id!(
    /// A domain event's id: derived from the order id and the event's
    /// per-order sequence, so a re-published event carries the same id.
    EventId
);

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $max:expr, $check:expr, $what:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Longest accepted value, in characters.
            pub const MAX_LEN: usize = $max;

            pub fn parse(value: impl Into<String>) -> Result<Self, DomainError> {
                let value: String = value.into();
                let check: fn(char) -> bool = $check;
                if value.is_empty() {
                    return Err(DomainError::Invalid(format!("{} must not be empty", $what)));
                }
                if value.chars().count() > Self::MAX_LEN {
                    return Err(DomainError::Invalid(format!(
                        "{} must be at most {} characters",
                        $what,
                        Self::MAX_LEN
                    )));
                }
                if !value.chars().all(check) {
                    return Err(DomainError::Invalid(format!(
                        "{} contains characters that are not allowed",
                        $what
                    )));
                }
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn is_catalog_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
}

fn is_visible_ascii(c: char) -> bool {
    c.is_ascii_graphic()
}

fn is_printable_ascii(c: char) -> bool {
    c.is_ascii_graphic() || c == ' '
}

text_id!(
    /// A catalog book id (`bk-0001`): ASCII letters, digits and `-_.:`.
    BookId,
    64,
    is_catalog_char,
    "book id"
);
text_id!(
    /// The customer an order belongs to: visible ASCII, no spaces, so it can
    /// sit in a URL query and a log line unquoted.
    CustomerId,
    128,
    is_visible_ascii,
    "customer id"
);
text_id!(
    /// A client-chosen key that makes a request safe to retry: 1–255
    /// printable ASCII characters, as the API contract says.
    IdempotencyKey,
    255,
    is_printable_ascii,
    "idempotency key"
);

/// How many copies of one book a line may ask for: 1 to [`Quantity::MAX`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    /// No bookshop basket needs more than a thousand copies of one title; a
    /// larger number is a typo or an attack on the stock.
    pub const MAX: u32 = 1_000;

    pub fn new(value: i64) -> Result<Self, DomainError> {
        if value < 1 {
            return Err(DomainError::Invalid("quantity must be at least 1".into()));
        }
        if value > i64::from(Self::MAX) {
            return Err(DomainError::Invalid(format!(
                "quantity must be at most {}",
                Self::MAX
            )));
        }
        Ok(Self(value as u32))
    }

    pub fn get(&self) -> u32 {
        self.0
    }
}

impl fmt::Debug for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A tax rate between 0 and 1 inclusive (`0.08` is 8 %), at most six decimals.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TaxRate(Decimal);

impl TaxRate {
    pub const ZERO: TaxRate = TaxRate(Decimal::ZERO);

    pub fn new(rate: Decimal) -> Result<Self, DomainError> {
        if rate < Decimal::ZERO || rate > Decimal::ONE {
            return Err(DomainError::Invalid(
                "tax rate must be between 0 and 1".into(),
            ));
        }
        let rate = rate.normalize();
        if rate.scale() > 6 {
            return Err(DomainError::Invalid(
                "tax rate must have at most 6 decimals".into(),
            ));
        }
        Ok(Self(rate))
    }

    pub fn get(&self) -> Decimal {
        self.0
    }
}

impl fmt::Debug for TaxRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn book_ids() {
        assert!(BookId::parse("bk-0001").is_ok());
        assert!(BookId::parse("").is_err());
        assert!(BookId::parse("bk 1").is_err());
        assert!(BookId::parse("x".repeat(65)).is_err());
    }

    #[test]
    fn customer_ids_and_keys() {
        assert!(CustomerId::parse("cust-42").is_ok());
        assert!(CustomerId::parse("cust 42").is_err());
        assert!(IdempotencyKey::parse("a key with spaces").is_ok());
        assert!(IdempotencyKey::parse("é").is_err());
        assert!(IdempotencyKey::parse("k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse("k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("tab\there").is_err());
    }

    #[test]
    fn quantities() {
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(-1).is_err());
        assert_eq!(Quantity::new(1).unwrap().get(), 1);
        assert!(Quantity::new(1_000).is_ok());
        assert!(Quantity::new(1_001).is_err());
    }

    #[test]
    fn tax_rates() {
        assert!(TaxRate::new(Decimal::from_str("0.08").unwrap()).is_ok());
        assert!(TaxRate::new(Decimal::ONE).is_ok());
        assert!(TaxRate::new(Decimal::from_str("1.01").unwrap()).is_err());
        assert!(TaxRate::new(Decimal::from_str("-0.01").unwrap()).is_err());
        assert!(TaxRate::new(Decimal::from_str("0.1234567").unwrap()).is_err());
    }

    #[test]
    fn uuid_ids_parse_only_uuids() {
        assert!(OrderId::parse("not-a-uuid").is_err());
        let id = Uuid::now_v7();
        assert_eq!(OrderId::parse(&id.to_string()).unwrap().as_uuid(), id);
    }
}
