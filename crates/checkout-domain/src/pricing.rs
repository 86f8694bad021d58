//! Pricing: line totals, subtotal, tax, shipping and total.
//!
//! The total is always the sum of the parts *after* each part was rounded, so
//! a receipt adds up to the cent: `total = subtotal + tax + shipping`, where
//! `tax = round_half_up(subtotal × rate)` (see [`crate::money`] for why
//! half-up) and line totals are exact (unit price × quantity needs no
//! rounding).

use serde::Serialize;

use crate::error::DomainError;
use crate::money::Money;
use crate::values::{Quantity, TaxRate};

/// An order's money, each part a whole number of minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub subtotal: Money,
    pub tax_amount: Money,
    pub shipping_cost: Money,
    pub total_amount: Money,
}

/// Prices a basket of `(unit price, quantity)` lines.
///
/// Every amount must be in the shipping cost's currency.
pub fn price<'a>(
    lines: impl IntoIterator<Item = (&'a Money, Quantity)>,
    tax_rate: TaxRate,
    shipping_cost: Money,
) -> Result<Totals, DomainError> {
    let currency = shipping_cost.currency();
    let mut subtotal = Money::zero(currency);
    for (unit_price, quantity) in lines {
        subtotal = subtotal.checked_add(&unit_price.times(quantity.get())?)?;
    }
    let tax_amount = Money::rounded(subtotal.amount() * tax_rate.get(), currency)?;
    let total_amount = subtotal
        .checked_add(&tax_amount)?
        .checked_add(&shipping_cost)?;
    Ok(Totals {
        subtotal,
        tax_amount,
        shipping_cost,
        total_amount,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::currency::Currency;
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn usd(s: &str) -> Money {
        Money::new(Decimal::from_str(s).unwrap(), Currency::USD).unwrap()
    }

    #[test]
    fn the_contract_example() {
        let unit = usd("12.50");
        let t = price(
            [(&unit, Quantity::new(2).unwrap())],
            TaxRate::new(Decimal::from_str("0.08").unwrap()).unwrap(),
            usd("4.99"),
        )
        .unwrap();
        assert_eq!(t.subtotal.to_string(), "25.00");
        assert_eq!(t.tax_amount.to_string(), "2.00");
        assert_eq!(t.total_amount.to_string(), "31.99");
    }

    #[test]
    fn tax_rounds_half_up() {
        // 0.50 × 0.05 = 0.025 → 0.03 (half-up), not 0.02 (half-even).
        let unit = usd("0.50");
        let t = price(
            [(&unit, Quantity::new(1).unwrap())],
            TaxRate::new(Decimal::from_str("0.05").unwrap()).unwrap(),
            usd("0"),
        )
        .unwrap();
        assert_eq!(t.tax_amount.to_string(), "0.03");
    }

    proptest! {
        #[test]
        fn totals_equal_the_sum_of_rounded_parts(
            cents in proptest::collection::vec((1i64..100_000, 1i64..20), 1..8),
            rate_ppm in 0u32..=1_000_000,
            ship in 0i64..10_000,
            currency in proptest::sample::select(Currency::all().collect::<Vec<_>>()),
        ) {
            let units: Vec<(Money, Quantity)> = cents.iter()
                .map(|(c, q)| (Money::from_minor_units(*c, currency).unwrap(), Quantity::new(*q).unwrap()))
                .collect();
            let rate = TaxRate::new(Decimal::new(i64::from(rate_ppm), 6)).unwrap();
            let shipping = Money::from_minor_units(ship, currency).unwrap();
            let t = price(units.iter().map(|(m, q)| (m, *q)), rate, shipping).unwrap();
            let parts = t.subtotal.amount() + t.tax_amount.amount() + t.shipping_cost.amount();
            prop_assert_eq!(t.total_amount.amount(), parts);
            let exact_sub: Decimal = units.iter().map(|(m, q)| m.amount() * Decimal::from(q.get())).sum();
            prop_assert_eq!(t.subtotal.amount(), exact_sub);
            // Tax is within half a minor unit of the exact figure.
            let half_unit = Decimal::new(5, u32::from(currency.exponent()) + 1);
            prop_assert!((t.tax_amount.amount() - exact_sub * rate.get()).abs() <= half_unit);
            prop_assert_eq!(t.total_amount.to_minor_units(),
                t.subtotal.to_minor_units() + t.tax_amount.to_minor_units() + t.shipping_cost.to_minor_units());
        }

        #[test]
        fn minor_units_round_trip_for_every_currency(
            minor in 0i64..1_000_000_000,
            currency in proptest::sample::select(Currency::all().collect::<Vec<_>>()),
        ) {
            let m = Money::from_minor_units(minor, currency).unwrap();
            prop_assert_eq!(m.to_minor_units(), minor);
            let again = Money::new(Decimal::from_str(&m.to_string()).unwrap(), currency).unwrap();
            prop_assert_eq!(again, m);
        }
    }
}
