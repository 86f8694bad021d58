//! Money: a decimal amount tied to its currency, always a whole number of
//! minor units.
//!
//! Rounding rule (the only one in the checkout): where an amount must be
//! rounded — tax — it is rounded to the currency's minor unit **half-up**
//! (ties away from zero). Half-up is what sales-tax and VAT rules prescribe
//! for a single amount on an invoice (e.g. US state rules, EU VAT guidance),
//! and it is what a customer checking the receipt by hand expects; banker's
//! rounding only pays off when many rounded amounts are summed, which a
//! checkout never does with tax.
//!
//! Amounts that enter from outside (a shipping cost, a refund amount) are not
//! rounded: one with more decimals than the minor unit is rejected, so a client
//! never gets charged something it did not send.

use std::fmt;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::Serialize;

use crate::currency::Currency;
use crate::error::DomainError;

/// The largest amount (in major units) the checkout accepts: far above any
/// bookshop basket, far below anything that could overflow an `i64` of minor
/// units in any currency.
pub const MAX_MAJOR_UNITS: i64 = 1_000_000_000;

/// A non-negative amount in one currency, a whole number of its minor units.
///
/// The decimal is kept at exactly the currency's scale, so `to_string()` gives
/// `"25.00"` for USD and `"1500"` for JPY.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// Builds an amount given from outside: refuses negatives, amounts finer
    /// than the minor unit and absurdly large amounts.
    pub fn new(amount: Decimal, currency: Currency) -> Result<Self, DomainError> {
        if amount.is_sign_negative() && !amount.is_zero() {
            return Err(DomainError::NegativeAmount);
        }
        if amount > Decimal::from(MAX_MAJOR_UNITS) {
            return Err(DomainError::AmountTooLarge);
        }
        let exp = u32::from(currency.exponent());
        let normalized = amount.normalize();
        if normalized.scale() > exp {
            return Err(DomainError::SubMinorUnit {
                amount: amount.to_string(),
                currency: currency.code().to_owned(),
                exponent: currency.exponent(),
            });
        }
        Ok(Self::at_scale(normalized, currency))
    }

    /// Rounds a computed amount to the minor unit, half-up (see module docs).
    pub fn rounded(amount: Decimal, currency: Currency) -> Result<Self, DomainError> {
        let r = amount.round_dp_with_strategy(
            u32::from(currency.exponent()),
            RoundingStrategy::MidpointAwayFromZero,
        );
        Self::new(r, currency)
    }

    /// Zero in `currency`.
    pub fn zero(currency: Currency) -> Self {
        Self::at_scale(Decimal::ZERO, currency)
    }

    /// Builds an amount from integer minor units (`1999` USD cents → 19.99).
    pub fn from_minor_units(minor: i64, currency: Currency) -> Result<Self, DomainError> {
        if minor < 0 {
            return Err(DomainError::NegativeAmount);
        }
        Self::new(
            Decimal::new(minor, u32::from(currency.exponent())),
            currency,
        )
    }

    /// The amount as integer minor units, computed from the currency's
    /// exponent (never by multiplying by 100).
    pub fn to_minor_units(&self) -> i64 {
        // The scale equals the exponent, so the mantissa *is* the number of
        // minor units; MAX_MAJOR_UNITS keeps it far inside i64.
        i64::try_from(self.amount.mantissa()).unwrap_or(i64::MAX)
    }

    fn at_scale(mut amount: Decimal, currency: Currency) -> Self {
        amount.rescale(u32::from(currency.exponent()));
        if amount.is_zero() {
            amount.set_sign_positive(true);
        }
        Self { amount, currency }
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    /// Sum of two amounts of the same currency.
    pub fn checked_add(&self, other: &Money) -> Result<Money, DomainError> {
        self.same_currency(other)?;
        Money::new(self.amount + other.amount, self.currency)
    }

    /// Difference of two amounts of the same currency; below zero is an error.
    pub fn checked_sub(&self, other: &Money) -> Result<Money, DomainError> {
        self.same_currency(other)?;
        Money::new(self.amount - other.amount, self.currency)
    }

    /// The amount times a whole quantity.
    pub fn times(&self, quantity: u32) -> Result<Money, DomainError> {
        Money::new(self.amount * Decimal::from(quantity), self.currency)
    }

    fn same_currency(&self, other: &Money) -> Result<(), DomainError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(DomainError::CurrencyMismatch {
                left: self.currency.code().to_owned(),
                right: other.currency.code().to_owned(),
            })
        }
    }
}

impl fmt::Display for Money {
    /// The amount formatted to the currency's minor unit, without the code.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.amount, f)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

impl PartialOrd for Money {
    /// Only amounts of the same currency compare.
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (self.currency == other.currency).then(|| self.amount.cmp(&other.amount))
    }
}

impl Serialize for Money {
    /// Money goes on the wire as a decimal string at the currency's scale.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn usd(s: &str) -> Money {
        Money::new(Decimal::from_str(s).unwrap(), Currency::USD).unwrap()
    }

    #[test]
    fn keeps_the_currency_scale_for_display() {
        assert_eq!(usd("12.5").to_string(), "12.50");
        assert_eq!(usd("3").to_string(), "3.00");
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(
            Money::new(Decimal::from(1500), jpy).unwrap().to_string(),
            "1500"
        );
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(
            Money::new(Decimal::from_str("1.5").unwrap(), kwd)
                .unwrap()
                .to_string(),
            "1.500"
        );
    }

    #[test]
    fn minor_units_follow_the_exponent() {
        assert_eq!(usd("31.99").to_minor_units(), 3199);
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(
            Money::new(Decimal::from(1500), jpy)
                .unwrap()
                .to_minor_units(),
            1500
        );
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(
            Money::new(Decimal::from_str("1.234").unwrap(), kwd)
                .unwrap()
                .to_minor_units(),
            1234
        );
    }

    #[test]
    fn rejects_sub_minor_unit_negative_and_huge_amounts() {
        assert!(matches!(
            Money::new(Decimal::from_str("1.001").unwrap(), Currency::USD),
            Err(DomainError::SubMinorUnit { .. })
        ));
        let jpy = Currency::parse("JPY").unwrap();
        assert!(Money::new(Decimal::from_str("1.5").unwrap(), jpy).is_err());
        assert_eq!(
            Money::new(Decimal::from_str("-1").unwrap(), Currency::USD),
            Err(DomainError::NegativeAmount)
        );
        assert_eq!(
            Money::new(Decimal::from(MAX_MAJOR_UNITS + 1), Currency::USD),
            Err(DomainError::AmountTooLarge)
        );
        // Trailing zeros beyond the minor unit are not extra precision.
        assert_eq!(usd("1.2000").to_string(), "1.20");
    }

    #[test]
    fn rounds_half_up() {
        let r = |s: &str| {
            Money::rounded(Decimal::from_str(s).unwrap(), Currency::USD)
                .unwrap()
                .to_string()
        };
        assert_eq!(r("2.005"), "2.01");
        assert_eq!(r("2.015"), "2.02");
        assert_eq!(r("2.0049"), "2.00");
    }

    #[test]
    fn arithmetic_refuses_mixed_currencies_and_going_below_zero() {
        let eur = Money::new(Decimal::ONE, Currency::parse("EUR").unwrap()).unwrap();
        assert!(usd("1").checked_add(&eur).is_err());
        assert_eq!(
            usd("1").checked_sub(&usd("2")),
            Err(DomainError::NegativeAmount)
        );
        assert_eq!(
            usd("2").checked_sub(&usd("0.5")).unwrap().to_string(),
            "1.50"
        );
    }
}
