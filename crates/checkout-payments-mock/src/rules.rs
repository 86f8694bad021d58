//! The seed's mock amount rules, as a pure function of the amount.
//!
//! Kept apart from the provider so the rules can be read (and tested) in one
//! place, and so that other crates' tests can ask which outcome an amount
//! will produce instead of copying the table.
//!
//! The rules speak of "ends in `.13`" for an amount formatted to the
//! currency's minor unit. They are read on the amount's *fractional part*:
//! "ends in `.NN`" means "the fractional part equals `0.NN`". For two-decimal
//! currencies (USD, EUR, …) that is exactly the seed's textual rule. For the
//! other exponents it gives:
//!
//! - zero-decimal currencies (JPY, KRW, …) have no fractional part, so every
//!   amount is a whole amount ("ends in `.00`"): rules 1 and 3 never apply,
//!   an amount up to and including 100 succeeds and an amount above 100
//!   fails with a processing error;
//! - three-decimal currencies (KWD, BHD, …): `x.130` is "ends in `.13`",
//!   `x.990` is "ends in `.99`", `x.000` is "ends in `.00`"; `x.013`,
//!   `x.099` and `x.500` match none of them.

use checkout_domain::Money;
use rust_decimal::Decimal;

/// What the mock does with an amount, in the order the seed checks its rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountOutcome {
    /// Rule 1 (ends in `.13`): creating the intent fails with a provider
    /// error (`PaymentError::Rejected`, code `processing_error`).
    CreateFails,
    /// Rule 2 (below 100) or rule 5 (anything else): the payment succeeds.
    Succeeds,
    /// Rule 3 (ends in `.99`, 100 or more): confirm declines the card
    /// (`PaymentError::Declined`, code `card_declined`).
    Declined,
    /// Rule 4 (ends in `.00`, above 100): confirm fails with a processing
    /// error (`PaymentError::Rejected`, code `processing_error`).
    ProcessingError,
}

/// Applies the seed's rules, in the seed's order, to `amount`.
///
/// Edges worth knowing: `31.99` succeeds (rule 2 comes before rule 3);
/// `0.13` fails at create (rule 1 comes before rule 2); exactly `100.00` is
/// neither "below 100" (rule 2) nor "above 100" (rule 4), so it succeeds by
/// rule 5.
pub fn amount_outcome(amount: &Money) -> AmountOutcome {
    let value = amount.amount();
    let fraction = value.fract();
    let hundred = Decimal::ONE_HUNDRED;
    if fraction == Decimal::new(13, 2) {
        AmountOutcome::CreateFails
    } else if value < hundred {
        AmountOutcome::Succeeds
    } else if fraction == Decimal::new(99, 2) {
        AmountOutcome::Declined
    } else if fraction.is_zero() && value > hundred {
        AmountOutcome::ProcessingError
    } else {
        AmountOutcome::Succeeds
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkout_domain::Currency;
    use std::str::FromStr;

    fn money(amount: &str, currency: &str) -> Money {
        Money::new(
            Decimal::from_str(amount).unwrap(),
            Currency::parse(currency).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn every_rule_and_edge() {
        use AmountOutcome::*;
        let table = [
            // (amount, currency, expected, why)
            ("31.99", "USD", Succeeds, "rule 2 before rule 3"),
            ("99.99", "USD", Succeeds, "below 100"),
            ("0.13", "USD", CreateFails, "rule 1 before rule 2"),
            ("100.13", "USD", CreateFails, "rule 1"),
            ("12345.13", "EUR", CreateFails, "rule 1"),
            (
                "100.00",
                "USD",
                Succeeds,
                "neither below nor above 100: rule 5",
            ),
            ("100.01", "USD", Succeeds, "rule 5"),
            ("100.99", "USD", Declined, "rule 3"),
            ("131.99", "USD", Declined, "rule 3"),
            ("200.00", "USD", ProcessingError, "rule 4"),
            ("100.50", "USD", Succeeds, "rule 5"),
            ("0.00", "USD", Succeeds, "below 100"),
            ("0.99", "USD", Succeeds, "below 100"),
            ("99", "JPY", Succeeds, "below 100"),
            ("100", "JPY", Succeeds, "exactly 100: rule 5"),
            ("101", "JPY", ProcessingError, "whole amount above 100"),
            ("1500", "JPY", ProcessingError, "whole amount above 100"),
            ("1.500", "KWD", Succeeds, "below 100"),
            ("0.130", "KWD", CreateFails, "fraction .130 is .13"),
            ("100.130", "KWD", CreateFails, "rule 1"),
            ("100.013", "KWD", Succeeds, "fraction .013 is not .13"),
            ("131.990", "KWD", Declined, "fraction .990 is .99"),
            ("131.099", "KWD", Succeeds, "fraction .099 is not .99"),
            ("200.000", "KWD", ProcessingError, "rule 4"),
            ("100.000", "KWD", Succeeds, "exactly 100: rule 5"),
        ];
        for (amount, currency, expected, why) in table {
            assert_eq!(
                amount_outcome(&money(amount, currency)),
                expected,
                "{amount} {currency}: {why}"
            );
        }
    }
}
