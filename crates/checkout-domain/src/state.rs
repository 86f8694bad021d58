//! The order state machine: eleven states and exactly the transitions of the
//! blueprint's table. Nothing else in the checkout decides what may follow
//! what.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::DomainError;

/// Where an order is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    Pending,
    Validating,
    Reserved,
    ProcessingPayment,
    Paid,
    Fulfilling,
    Completed,
    Cancelled,
    Refunded,
    PaymentFailed,
    InventoryFailed,
}

use OrderState::*;

impl OrderState {
    /// All eleven states.
    pub const ALL: [OrderState; 11] = [
        Pending,
        Validating,
        Reserved,
        ProcessingPayment,
        Paid,
        Fulfilling,
        Completed,
        Cancelled,
        Refunded,
        PaymentFailed,
        InventoryFailed,
    ];

    /// The states this one may move to — the blueprint's table, verbatim.
    pub fn allowed_next(self) -> &'static [OrderState] {
        match self {
            Pending => &[Validating, Cancelled],
            Validating => &[Reserved, InventoryFailed, Cancelled],
            Reserved => &[ProcessingPayment, Cancelled],
            ProcessingPayment => &[Paid, PaymentFailed],
            Paid => &[Fulfilling, Refunded],
            Fulfilling => &[Completed, Cancelled],
            PaymentFailed => &[Cancelled],
            InventoryFailed => &[Cancelled],
            Completed => &[Refunded],
            Cancelled | Refunded => &[],
        }
    }

    pub fn can_transition_to(self, next: OrderState) -> bool {
        self.allowed_next().contains(&next)
    }

    /// No transition leaves a terminal state.
    pub fn is_terminal(self) -> bool {
        self.allowed_next().is_empty()
    }

    /// The lower-case wire name (`processing_payment`).
    pub fn as_str(self) -> &'static str {
        match self {
            Pending => "pending",
            Validating => "validating",
            Reserved => "reserved",
            ProcessingPayment => "processing_payment",
            Paid => "paid",
            Fulfilling => "fulfilling",
            Completed => "completed",
            Cancelled => "cancelled",
            Refunded => "refunded",
            PaymentFailed => "payment_failed",
            InventoryFailed => "inventory_failed",
        }
    }
}

impl fmt::Display for OrderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OrderState {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OrderState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| DomainError::Invalid(format!("unknown order state `{s}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table written out as pairs, independently of `allowed_next`.
    const TABLE: &[(OrderState, OrderState)] = &[
        (Pending, Validating),
        (Pending, Cancelled),
        (Validating, Reserved),
        (Validating, InventoryFailed),
        (Validating, Cancelled),
        (Reserved, ProcessingPayment),
        (Reserved, Cancelled),
        (ProcessingPayment, Paid),
        (ProcessingPayment, PaymentFailed),
        (Paid, Fulfilling),
        (Paid, Refunded),
        (Fulfilling, Completed),
        (Fulfilling, Cancelled),
        (PaymentFailed, Cancelled),
        (InventoryFailed, Cancelled),
        (Completed, Refunded),
    ];

    #[test]
    fn exactly_the_blueprint_table() {
        for from in OrderState::ALL {
            for to in OrderState::ALL {
                assert_eq!(
                    from.can_transition_to(to),
                    TABLE.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn terminal_states() {
        let terminal: Vec<_> = OrderState::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(terminal, vec![Cancelled, Refunded]);
    }

    #[test]
    fn wire_names_round_trip_and_match_serde() {
        for s in OrderState::ALL {
            assert_eq!(s.as_str().parse::<OrderState>().unwrap(), s);
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
    }
}
