//! Building SQL statements with bound values, the same text for both
//! backends: `$n` placeholders, which PostgreSQL and SQLite (through sqlx)
//! both accept. The SQLite ledger thread respells them `?n` before running
//! them (`sqlite_ledger::numbered_placeholders`), which SQLite binds by
//! number instead of by name.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, Value};
use time::OffsetDateTime;

/// A statement being built: SQL text and the values its `$n` refer to.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    text: String,
    values: Vec<Value>,
}

impl Sql {
    pub(crate) fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            values: Vec::new(),
        }
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Binds a value and appends its placeholder.
    pub(crate) fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        let p = self.param(value);
        self.text.push_str(&p);
        self
    }

    /// Binds a value and returns its placeholder (to use more than once).
    pub(crate) fn param(&mut self, value: impl Into<Value>) -> String {
        self.values.push(value.into());
        format!("${}", self.values.len())
    }

    /// Appends `(v1, v2, …)` with every value bound.
    pub(crate) fn tuple(&mut self, values: impl IntoIterator<Item = Value>) -> &mut Self {
        self.text.push('(');
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(v);
        }
        self.text.push(')');
        self
    }

    /// Appends `(v1, v2, …)`, one placeholder per item (for `IN`).
    pub(crate) fn list<V: Into<Value>>(&mut self, items: impl IntoIterator<Item = V>) -> &mut Self {
        self.tuple(items.into_iter().map(Into::into))
    }

    /// Appends the rows of a multi-row `VALUES` list.
    pub(crate) fn rows(&mut self, rows: impl IntoIterator<Item = Vec<Value>>) -> &mut Self {
        for (i, row) in rows.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.tuple(row);
        }
        self
    }

    pub(crate) fn build(self, backend: DbBackend) -> Statement {
        Statement::from_sql_and_values(backend, self.text, self.values)
    }
}

/// Statements that run one after the other, as few round trips as the
/// backend allows.
///
/// SQLite runs the whole batch as ONE call — its driver executes every
/// statement of a string, each binding the shared `$n` it names — which
/// saves a round trip to the database thread per statement on the single
/// writer, the embedded mode's bottleneck. PostgreSQL's extended protocol
/// takes one statement per call, so there they run one by one — except
/// consecutive *inserts* ([`Batch::insert`]): plain inserts that return
/// nothing and need nothing of each other before the statement ends (a
/// foreign key is checked when it ends), which go to PostgreSQL as one
/// statement, `WITH i1 AS (INSERT …), i2 AS (INSERT …) INSERT …`. Every
/// part of such a statement runs exactly once, whether or not anything
/// reads it, so the effect is that of the inserts run in turn.
///
/// A *gate* is a statement whose `RETURNING` row says it did its job (a
/// compare-and-set, a conditional stock update). On PostgreSQL the batch
/// stops at a gate that returned nothing, so nothing after a failed check
/// runs; on SQLite everything runs and the caller, finding the gate's row
/// missing, drops the transaction — the same outcome, one call. Returned
/// rows carry a marker in their first column (a `BIGINT`) saying which
/// statement they come from.
#[derive(Debug)]
pub(crate) struct Batch {
    merge: bool,
    /// PostgreSQL: consecutive inserts share one statement.
    chain_inserts: bool,
    current: Sql,
    current_gate: bool,
    /// Inserts of the current statement wrapped as `WITH` parts so far,
    /// and where its last, unwrapped insert starts (`None` when the current
    /// statement is not a run of inserts).
    chain: Option<(usize, usize)>,
    done: Vec<(Sql, bool)>,
}

impl Batch {
    pub(crate) fn new(backend: DbBackend) -> Self {
        Self {
            merge: backend == DbBackend::Sqlite,
            chain_inserts: backend == DbBackend::Postgres,
            current: Sql::default(),
            current_gate: false,
            chain: None,
            done: Vec::new(),
        }
    }

    /// A batch whose statements stay apart, each numbering its own `$n`
    /// (for a runner that prepares each statement itself).
    pub(crate) fn separate() -> Self {
        Self {
            merge: false,
            chain_inserts: false,
            current: Sql::default(),
            current_gate: false,
            chain: None,
            done: Vec::new(),
        }
    }

    /// The statements, each with its values.
    pub(crate) fn into_statements(mut self) -> Vec<(String, Vec<Value>)> {
        if !self.current.text.is_empty() {
            self.done.push((self.current, self.current_gate));
        }
        self.done
            .into_iter()
            .map(|(sql, _)| (sql.text, sql.values))
            .collect()
    }

    fn start(&mut self, gate: bool) -> &mut Sql {
        self.chain = None;
        if !self.current.text.is_empty() {
            if self.merge {
                self.current.text.push_str(";\n");
            } else {
                let done = std::mem::take(&mut self.current);
                self.done.push((done, self.current_gate));
            }
        }
        self.current_gate = gate;
        &mut self.current
    }

    /// Starts the next statement and returns it to be written.
    pub(crate) fn next(&mut self) -> &mut Sql {
        self.start(false)
    }

    /// Starts an insert that returns nothing and reads nothing an insert
    /// just before it writes (see the type's documentation): on PostgreSQL
    /// it joins the run of inserts before it in one statement.
    pub(crate) fn insert(&mut self) -> &mut Sql {
        match self.chain {
            Some((wrapped, last_start)) if self.chain_inserts => {
                let last = self.current.text.split_off(last_start);
                let n = wrapped + 1;
                if wrapped == 0 {
                    self.current.text.push_str("WITH ");
                } else {
                    let kept = self.current.text.trim_end().len();
                    self.current.text.truncate(kept);
                    self.current.text.push_str(", ");
                }
                self.current
                    .text
                    .push_str(&format!("i{n} AS ({})", last.trim_end()));
                self.current.text.push(' ');
                self.chain = Some((n, self.current.text.len()));
            }
            _ => {
                self.start(false);
                self.chain = Some((0, self.current.text.len()));
            }
        }
        &mut self.current
    }

    /// Starts a gate: a statement that must return a row for the batch to
    /// go on (on PostgreSQL).
    pub(crate) fn gate(&mut self) -> &mut Sql {
        self.start(true)
    }

    /// Whether every statement is a round trip of its own (PostgreSQL),
    /// so that one statement doing the work of several saves round trips.
    pub(crate) fn statements_are_round_trips(&self) -> bool {
        self.chain_inserts
    }

    /// Runs the statements, stopping at the first error (and, on
    /// PostgreSQL, after a gate that returned no row); returns every row
    /// the statements returned, in order.
    pub(crate) async fn run<C: ConnectionTrait>(
        mut self,
        conn: &C,
        backend: DbBackend,
    ) -> Result<Vec<QueryResult>, DbErr> {
        if !self.current.text.is_empty() {
            self.done.push((self.current, self.current_gate));
        }
        let mut rows = Vec::new();
        for (sql, gate) in self.done {
            let got = conn.query_all_raw(sql.build(backend)).await?;
            let stop = gate && got.is_empty();
            rows.extend(got);
            if stop {
                break;
            }
        }
        Ok(rows)
    }
}

/// Marker of an order row saved by its compare-and-set.
pub(crate) const ORDER_SAVED: i64 = 1;
/// Marker of a stock row a reservation took units from (with `book_id`,
/// `price_minor`).
pub(crate) const STOCK_TAKEN: i64 = 2;
/// Marker of a reservation switched from `active` by its compare-and-set.
pub(crate) const RESERVATION_SWITCHED: i64 = 3;

/// The markers (first column) of `rows`.
pub(crate) fn markers(rows: &[QueryResult]) -> Result<Vec<i64>, DbErr> {
    rows.iter().map(|r| r.try_get_by_index::<i64>(0)).collect()
}

/// An instant as stored: microseconds since the Unix epoch, UTC. Sub-
/// microsecond digits are dropped (PostgreSQL's own precision).
pub(crate) fn micros(t: OffsetDateTime) -> i64 {
    let m = t.unix_timestamp_nanos().div_euclid(1_000);
    i64::try_from(m).unwrap_or(if m < 0 { i64::MIN } else { i64::MAX })
}

/// The instant a stored microsecond count stands for.
pub(crate) fn from_micros(m: i64) -> Result<OffsetDateTime, String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1_000)
        .map_err(|e| format!("instant {m} out of range: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_count_up() {
        let mut s = Sql::new("INSERT INTO t (a, b) VALUES ");
        s.rows([
            vec![Value::from(1i64), Value::from("x")],
            vec![Value::from(2i64), Value::from("y")],
        ]);
        let st = s.build(DbBackend::Sqlite);
        assert_eq!(st.sql, "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)");
        assert_eq!(st.values.map(|v| v.0.len()), Some(4));
    }

    #[test]
    fn a_sqlite_batch_is_one_string_with_shared_numbering() {
        let mut b = Batch::new(DbBackend::Sqlite);
        b.next()
            .push("INSERT INTO a VALUES ")
            .tuple([Value::from(1i64)]);
        b.next()
            .push("INSERT INTO b VALUES ")
            .tuple([Value::from(2i64)]);
        assert!(b.done.is_empty());
        b.gate().push("UPDATE c SET x = 1 RETURNING 1");
        assert!(b.done.is_empty());
        assert_eq!(
            b.current.text,
            "INSERT INTO a VALUES ($1);\nINSERT INTO b VALUES ($2);\nUPDATE c SET x = 1 RETURNING 1"
        );
        let mut p = Batch::new(DbBackend::Postgres);
        p.next()
            .push("INSERT INTO a VALUES ")
            .tuple([Value::from(1i64)]);
        p.next()
            .push("INSERT INTO b VALUES ")
            .tuple([Value::from(2i64)]);
        assert_eq!(p.done.len(), 1);
        assert_eq!(p.current.text, "INSERT INTO b VALUES ($1)");
    }

    #[test]
    fn postgres_runs_consecutive_inserts_as_one_statement() {
        let mut p = Batch::new(DbBackend::Postgres);
        p.gate()
            .push("UPDATE g SET x = ")
            .bind(0i64)
            .push(" RETURNING 1");
        p.insert()
            .push("INSERT INTO a VALUES ")
            .tuple([Value::from(1i64)]);
        p.insert()
            .push("INSERT INTO b VALUES ")
            .tuple([Value::from(2i64)]);
        p.insert()
            .push("INSERT INTO c VALUES ")
            .tuple([Value::from(3i64)]);
        p.next().push("UPDATE d SET y = ").bind(4i64);
        p.insert()
            .push("INSERT INTO e VALUES ")
            .tuple([Value::from(5i64)]);
        let statements = p.into_statements();
        let texts: Vec<&str> = statements.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "UPDATE g SET x = $1 RETURNING 1",
                "WITH i1 AS (INSERT INTO a VALUES ($1)), i2 AS (INSERT INTO b VALUES ($2)) \
                 INSERT INTO c VALUES ($3)",
                "UPDATE d SET y = $1",
                "INSERT INTO e VALUES ($1)",
            ]
        );
        assert_eq!(statements[1].1.len(), 3);
        // SQLite and the ledger thread keep their own shapes.
        let mut s = Batch::new(DbBackend::Sqlite);
        s.insert()
            .push("INSERT INTO a VALUES ")
            .tuple([Value::from(1i64)]);
        s.insert()
            .push("INSERT INTO b VALUES ")
            .tuple([Value::from(2i64)]);
        assert_eq!(
            s.current.text,
            "INSERT INTO a VALUES ($1);\nINSERT INTO b VALUES ($2)"
        );
        let mut l = Batch::separate();
        l.insert()
            .push("INSERT INTO a VALUES ")
            .tuple([Value::from(1i64)]);
        l.insert()
            .push("INSERT INTO b VALUES ")
            .tuple([Value::from(2i64)]);
        assert_eq!(l.into_statements().len(), 2);
    }

    #[test]
    fn instants_round_trip_to_the_microsecond() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_764_000_000_123_456_789).unwrap();
        let back = from_micros(micros(t)).unwrap();
        assert_eq!(back.unix_timestamp_nanos(), 1_764_000_000_123_456_000);
        let before_epoch = OffsetDateTime::from_unix_timestamp_nanos(-1_500).unwrap();
        assert_eq!(micros(before_epoch), -2);
    }
}
