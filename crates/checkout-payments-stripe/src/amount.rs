//! Turning a domain [`Money`] into the integer `amount` Stripe expects.
//!
//! The domain counts minor units by the ISO 4217 exponent; Stripe mostly
//! agrees but has its own table, so the conversion lives here, in the
//! adapter, and nowhere else:
//!
//! | Stripe treats as | currencies | domain exponent | Stripe `amount` |
//! |---|---|---|---|
//! | zero-decimal | BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF VND VUV XAF XOF XPF | 0 (MGA: 2) | whole major units; an MGA amount with a fraction is refused |
//! | three-decimal | BHD JOD KWD OMR TND | 3 | minor units whose last digit must be 0 (Stripe's card partners settle to 10 fils) |
//! | two-decimal, "effectively zero-decimal" | ISK, UGX | 0 | major units × 100, so always divisible by 100 as Stripe requires |
//! | two-decimal (zero-decimal for payouts only) | HUF, TWD | 2 | minor units; charges may carry a fraction |
//! | two-decimal | every other currency | 2 | minor units |
//!
//! An amount Stripe would refuse (a fractional MGA amount, a KWD amount not a
//! multiple of 10 fils, a three-decimal currency Stripe does not list) is
//! refused here, before any call, with a clear message.

use checkout_domain::Money;

/// Currencies Stripe takes in whole major units.
const ZERO_DECIMAL: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "VND", "VUV", "XAF",
    "XOF", "XPF",
];

/// Currencies Stripe takes in thousandths, last digit zero.
const THREE_DECIMAL: &[&str] = &["BHD", "JOD", "KWD", "OMR", "TND"];

/// Zero-decimal in practice, but sent in the two-decimal representation for
/// backwards compatibility: the amount must be divisible by 100.
const TWO_DECIMAL_WHOLE_UNITS: &[&str] = &["ISK", "UGX"];

/// An amount ready for a Stripe request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeAmount {
    /// The integer `amount` parameter.
    pub amount: i64,
    /// The lower-case currency code Stripe requires.
    pub currency: String,
}

/// Why an amount cannot be sent to Stripe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// The amount has a finer fraction than Stripe accepts in the currency.
    #[error("{amount} {currency}: Stripe takes {currency} in {what}")]
    Precision {
        amount: String,
        currency: String,
        what: &'static str,
    },
    /// The domain knows a three-decimal currency that Stripe does not list.
    #[error("{0} is not a currency Stripe accepts")]
    Unsupported(String),
    /// Too large for Stripe's integer amount (never for checkout amounts).
    #[error("{amount} {currency} is too large for Stripe")]
    TooLarge { amount: String, currency: String },
}

/// The number of decimals Stripe's `amount` has for `code`.
pub fn stripe_exponent(code: &str) -> u8 {
    if ZERO_DECIMAL.contains(&code) {
        0
    } else if THREE_DECIMAL.contains(&code) {
        3
    } else {
        2
    }
}

/// Converts `money` into Stripe's `amount` and currency, applying Stripe's
/// rules for the currency (see the module docs).
pub fn to_stripe_amount(money: &Money) -> Result<StripeAmount, AmountError> {
    let currency = money.currency();
    let code = currency.code();
    let domain_exp = u32::from(currency.exponent());
    let stripe_exp = u32::from(stripe_exponent(code));
    if domain_exp == 3 && stripe_exp != 3 {
        return Err(AmountError::Unsupported(code.to_owned()));
    }
    let minor = money.to_minor_units();
    let too_large = || AmountError::TooLarge {
        amount: money.to_string(),
        currency: code.to_owned(),
    };
    // Scale between the two exponents with integer arithmetic only.
    let amount = if stripe_exp >= domain_exp {
        let factor = 10_i64
            .checked_pow(stripe_exp - domain_exp)
            .ok_or_else(too_large)?;
        minor.checked_mul(factor).ok_or_else(too_large)?
    } else {
        let factor = 10_i64
            .checked_pow(domain_exp - stripe_exp)
            .ok_or_else(too_large)?;
        if minor % factor != 0 {
            return Err(AmountError::Precision {
                amount: money.to_string(),
                currency: code.to_owned(),
                what: "whole units only",
            });
        }
        minor / factor
    };
    if stripe_exp == 3 && amount % 10 != 0 {
        return Err(AmountError::Precision {
            amount: money.to_string(),
            currency: code.to_owned(),
            what: "multiples of 0.010 only (the last of the three decimals must be 0)",
        });
    }
    if TWO_DECIMAL_WHOLE_UNITS.contains(&code) && amount % 100 != 0 {
        return Err(AmountError::Precision {
            amount: money.to_string(),
            currency: code.to_owned(),
            what: "whole units only (an amount divisible by 100)",
        });
    }
    Ok(StripeAmount {
        amount,
        currency: code.to_ascii_lowercase(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use checkout_domain::Currency;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn money(amount: &str, code: &str) -> Money {
        Money::new(
            Decimal::from_str(amount).unwrap(),
            Currency::parse(code).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn amounts_per_currency_kind() {
        let table = [
            ("31.99", "USD", 3199, "usd"),
            ("0.50", "EUR", 50, "eur"),
            ("1500", "JPY", 1500, "jpy"),
            ("1", "KRW", 1, "krw"),
            ("25000", "VND", 25000, "vnd"),
            ("1.500", "KWD", 1500, "kwd"),
            ("12.340", "BHD", 12340, "bhd"),
            ("5", "ISK", 500, "isk"),
            ("5000", "UGX", 500000, "ugx"),
            ("12.50", "HUF", 1250, "huf"),
            ("100.05", "TWD", 10005, "twd"),
            ("1200.00", "MGA", 1200, "mga"),
        ];
        for (amount, code, expected, lower) in table {
            assert_eq!(
                to_stripe_amount(&money(amount, code)).unwrap(),
                StripeAmount {
                    amount: expected,
                    currency: lower.into()
                },
                "{amount} {code}"
            );
        }
    }

    #[test]
    fn refuses_what_stripe_would_refuse() {
        assert!(matches!(
            to_stripe_amount(&money("1.234", "KWD")),
            Err(AmountError::Precision { .. })
        ));
        assert!(matches!(
            to_stripe_amount(&money("0.001", "JOD")),
            Err(AmountError::Precision { .. })
        ));
        assert!(matches!(
            to_stripe_amount(&money("12.50", "MGA")),
            Err(AmountError::Precision { .. })
        ));
        assert_eq!(
            to_stripe_amount(&money("1.000", "IQD")),
            Err(AmountError::Unsupported("IQD".into()))
        );
    }

    #[test]
    fn every_domain_currency_converts_or_is_refused_clearly() {
        for currency in Currency::all() {
            let one = Money::new(Decimal::ONE, currency).unwrap();
            match to_stripe_amount(&one) {
                Ok(a) => {
                    let expected = 10_i64.pow(u32::from(stripe_exponent(currency.code())));
                    assert_eq!(a.amount, expected, "{currency}");
                }
                Err(e) => assert_eq!(e, AmountError::Unsupported(currency.code().into())),
            }
        }
    }
}
