//! PostgreSQL checks the one-column rules of the tables an order writes
//! through domains instead of table `CHECK` constraints.
//!
//! PostgreSQL keeps a table's `CHECK` constraints as text, and every
//! statement that writes the table reads every one of them back and
//! compiles it; nothing carries over to the next statement. `orders` had
//! fifteen, and an order writes it twice: about 0.4 ms of the server's CPU
//! a statement on the project's machine, a tenth of all it spends on an
//! order (docs/perf/history.md, "PostgreSQL's server CPU by function"). A
//! domain's check is compiled once per session and kept in the type cache,
//! and only the columns a statement assigns are checked. The rules are the
//! same, value for value, and a value that breaks one is refused with the
//! same SQLSTATE (23514, check violation); only the constraint's name in
//! the error changes, to the domain's.
//!
//! Rules that relate two columns stay table constraints. SQLite checks its
//! `CHECK` constraints without that cost and keeps them. PostgreSQL rewrites
//! a table (and its indexes) to give a column a domain with a rule, under an
//! exclusive lock, so each table's columns change in one `ALTER TABLE`: one
//! rewrite per table.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// A domain: its name, base type and rule (on `VALUE`).
struct Domain {
    name: &'static str,
    base: &'static str,
    rule: &'static str,
}

impl Domain {
    const fn new(name: &'static str, base: &'static str, rule: &'static str) -> Self {
        Domain { name, base, rule }
    }
}

const MINOR_UNITS: Domain = Domain::new("checkout_minor_units", "BIGINT", "VALUE >= 0");
const CURRENCY: Domain = Domain::new("checkout_currency", "TEXT", "length(VALUE) = 3");
const POSITIVE: Domain = Domain::new("checkout_positive", "BIGINT", "VALUE >= 1");
const COUNT: Domain = Domain::new("checkout_count", "BIGINT", "VALUE >= 0");
const LINE_QUANTITY: Domain = Domain::new(
    "checkout_line_quantity",
    "BIGINT",
    "VALUE BETWEEN 1 AND 1000",
);
const ORDER_STATE: Domain = Domain::new(
    "checkout_order_state",
    "TEXT",
    "VALUE IN ('pending', 'validating', 'reserved', 'processing_payment', 'paid', \
           'fulfilling', 'completed', 'cancelled', 'refunded', 'inventory_failed', \
           'payment_failed')",
);
const ORDER_RESERVATION_STATUS: Domain = Domain::new(
    "checkout_order_reservation_status",
    "TEXT",
    "VALUE IN ('active', 'confirmed', 'confirm_pending', 'released')",
);
const PAYMENT_STATUS: Domain = Domain::new(
    "checkout_payment_status",
    "TEXT",
    "VALUE IN ('pending', 'requires_action', 'processing', 'succeeded', 'failed', \
           'canceled', 'unknown')",
);
const RESERVATION_STATUS: Domain = Domain::new(
    "checkout_reservation_status",
    "TEXT",
    "VALUE IN ('active', 'confirmed', 'released')",
);

const DOMAINS: [&Domain; 9] = [
    &MINOR_UNITS,
    &CURRENCY,
    &POSITIVE,
    &COUNT,
    &LINE_QUANTITY,
    &ORDER_STATE,
    &ORDER_RESERVATION_STATUS,
    &PAYMENT_STATUS,
    &RESERVATION_STATUS,
];

/// The columns moved to a domain: table, column, domain. Each had the
/// table constraint `{table}_{column}_check` with the domain's rule.
const COLUMNS: [(&str, &str, &Domain); 27] = [
    ("orders", "state", &ORDER_STATE),
    ("orders", "currency", &CURRENCY),
    ("orders", "shipping_minor", &MINOR_UNITS),
    ("orders", "refunded_minor", &MINOR_UNITS),
    ("orders", "subtotal_minor", &MINOR_UNITS),
    ("orders", "tax_minor", &MINOR_UNITS),
    ("orders", "total_minor", &MINOR_UNITS),
    ("orders", "reservation_status", &ORDER_RESERVATION_STATUS),
    ("orders", "payment_attempt", &POSITIVE),
    ("orders", "payment_status", &PAYMENT_STATUS),
    ("orders", "version", &POSITIVE),
    ("orders", "event_sequence", &COUNT),
    ("order_items", "line_no", &POSITIVE),
    ("order_items", "quantity", &LINE_QUANTITY),
    ("order_items", "unit_price_minor", &MINOR_UNITS),
    ("order_items", "expected_unit_price_minor", &MINOR_UNITS),
    ("outbox", "sequence", &POSITIVE),
    ("outbox", "attempts", &COUNT),
    ("payment_attempts", "attempt", &POSITIVE),
    ("payment_attempts", "status", &PAYMENT_STATUS),
    ("stock", "price_minor", &MINOR_UNITS),
    ("stock", "currency", &CURRENCY),
    ("reservations", "currency", &CURRENCY),
    ("reservations", "status", &RESERVATION_STATUS),
    ("reservation_items", "line_no", &POSITIVE),
    ("reservation_items", "unit_price_minor", &MINOR_UNITS),
    // `>= 1` only, as it was: no upper bound here.
    ("reservation_items", "quantity", &POSITIVE),
];

/// One `ALTER TABLE` per table, its actions one per column from `action`
/// (table, column, domain), tables in the order `COLUMNS` first names them.
fn per_table(action: impl Fn(&str, &str, &Domain) -> String) -> Vec<String> {
    let mut tables: Vec<(&str, Vec<String>)> = Vec::new();
    for (table, column, domain) in COLUMNS {
        let i = match tables.iter().position(|(t, _)| *t == table) {
            Some(i) => i,
            None => {
                tables.push((table, Vec::new()));
                tables.len() - 1
            }
        };
        tables[i].1.push(action(table, column, domain));
    }
    tables
        .into_iter()
        .map(|(table, actions)| format!("ALTER TABLE {table} {}", actions.join(", ")))
        .collect()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let mut statements: Vec<String> = DOMAINS
            .iter()
            .map(|d| format!("CREATE DOMAIN {} AS {} CHECK ({})", d.name, d.base, d.rule))
            .collect();
        statements.extend(per_table(|table, column, domain| {
            format!(
                "DROP CONSTRAINT {table}_{column}_check, ALTER COLUMN {column} TYPE {}",
                domain.name
            )
        }));
        crate::run(manager, &statements).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let mut statements = per_table(|table, column, domain| {
            format!(
                "ALTER COLUMN {column} TYPE {}, ADD CONSTRAINT {table}_{column}_check CHECK ({})",
                domain.base,
                domain.rule.replace("VALUE", column)
            )
        });
        statements.extend(DOMAINS.iter().map(|d| format!("DROP DOMAIN {}", d.name)));
        crate::run(manager, &statements).await
    }
}
