//! Building SQL statements with bound values, the same text for both
//! backends: `$n` placeholders, which PostgreSQL and SQLite (through sqlx)
//! both accept. The SQLite ledger thread respells them `?n` before running
//! them (`sqlite_ledger::numbered_placeholders`), which SQLite binds by
//! number instead of by name.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, Value};
use time::OffsetDateTime;

/// Appends the placeholder of the `n`th value, `$n`.
fn push_placeholder(text: &mut String, n: usize) {
    text.push('$');
    text.push_str(itoa::Buffer::new().format(n));
}

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

    /// Binds a value and appends its placeholder, its digits written
    /// straight into the text: an order's writes bind a hundred values or
    /// more, and formatting each placeholder into a string of its own was
    /// about a tenth of the HTTP worker's CPU (docs/performance.md).
    pub(crate) fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        self.values.push(value.into());
        push_placeholder(&mut self.text, self.values.len());
        self
    }

    /// Binds a value and returns its placeholder (to use more than once).
    pub(crate) fn param(&mut self, value: impl Into<Value>) -> String {
        self.values.push(value.into());
        let mut placeholder = String::with_capacity(4);
        push_placeholder(&mut placeholder, self.values.len());
        placeholder
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
/// writer, the embedded mode's bottleneck.
///
/// PostgreSQL's extended protocol takes one statement per call, so there a
/// run of *parts* — gates ([`Batch::gate`]), writes ([`Batch::write`]) and
/// locks ([`Batch::lock`]) — joins ONE statement, each part a `WITH` entry
/// named `s1`, `s2`, … ([`Batch::part_name`]):
/// `WITH s1 AS (UPDATE … RETURNING …), s2 AS (INSERT …) SELECT … FROM s1`.
/// Every data-modifying part runs exactly once, to completion, whether or
/// not anything reads it; all parts see the database as the statement found
/// it, so a part that needs what an earlier one wrote reads that part's
/// `RETURNING` rows by name, and a foreign key is checked when the
/// statement ends. A statement started with [`Batch::next`] stands alone.
///
/// A *gate* is a part whose `RETURNING` rows say it did its job (a
/// compare-and-set, a conditional stock update); its first column is the
/// `BIGINT` `marker` saying which gate it is, then the columns it names
/// (padded with `NULL` for gates without them). A batch returns every
/// gate's rows. Writes after a gate run whether or not it passed — on
/// SQLite in the same call, on PostgreSQL in the same statement — so the
/// caller, finding a gate's row missing, drops the transaction; a write
/// that must not happen unless a gate passed reads the gate's rows (on
/// PostgreSQL) or its condition (on SQLite) itself.
///
/// An *all-or-nothing* batch ([`Batch::all_or_nothing`]) is one PostgreSQL
/// statement that needs no transaction around it: should a gate return
/// fewer rows than it exists for, its last part raises an error, which
/// rolls back everything the statement did.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// SQLite: every statement in one string.
    merge: bool,
    /// PostgreSQL: consecutive parts join one statement.
    join: bool,
    /// PostgreSQL: the statement undoes itself unless every gate passed.
    all_or_nothing: bool,
    current: Sql,
    /// Whether the current statement returns gate rows.
    current_gate: bool,
    /// The parts of the current statement (PostgreSQL).
    chain: Option<Chain>,
    done: Vec<(Sql, bool)>,
}

/// The parts of a PostgreSQL statement being joined: all but the last are
/// wrapped as `WITH` entries already.
#[derive(Debug)]
struct Chain {
    /// Parts so far, the last included (it is `s{parts}`).
    parts: usize,
    /// Where the last part's text starts.
    last_start: usize,
    /// Whether the last part is a lock (wrapped `MATERIALIZED`).
    last_is_lock: bool,
    gates: Vec<Gate>,
}

/// A gate of a joined statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gate {
    /// Its part number.
    part: usize,
    /// The columns it returns after its marker.
    columns: &'static [&'static str],
    /// How many rows it returns when it passes.
    rows: usize,
}

/// What a part of a batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Gate {
        columns: &'static [&'static str],
        rows: usize,
    },
    Write,
    Lock,
}

/// The function an all-or-nothing statement calls when a gate did not pass
/// (migration `m20261203_000008_refused_write`); it raises
/// [`REFUSED_WRITE`].
const REFUSE_WRITE: &str = "checkout_refuse_write()";

/// The SQLSTATE of an all-or-nothing statement that undid itself because a
/// gate did not pass.
pub(crate) const REFUSED_WRITE: &str = "CKR01";

impl Batch {
    pub(crate) fn new(backend: DbBackend) -> Self {
        Self {
            merge: backend == DbBackend::Sqlite,
            join: backend == DbBackend::Postgres,
            ..Self::default()
        }
    }

    /// A batch whose statements stay apart, each numbering its own `$n`
    /// (for a runner that prepares each statement itself).
    pub(crate) fn separate() -> Self {
        Self::default()
    }

    /// A PostgreSQL batch of parts joined into one statement that writes
    /// nothing unless every gate returned its rows, to run on its own
    /// (see [`Batch::into_one_statement`]).
    pub(crate) fn all_or_nothing() -> Self {
        Self {
            join: true,
            all_or_nothing: true,
            ..Self::default()
        }
    }

    /// The one statement of an all-or-nothing batch; `None` when the batch
    /// holds more than one (a statement started with [`Batch::next`]),
    /// which only a transaction makes all or nothing.
    pub(crate) fn into_one_statement(mut self) -> Option<Statement> {
        self.finish();
        if self.done.len() != 1 {
            return None;
        }
        let (sql, _) = self.done.pop()?;
        Some(sql.build(DbBackend::Postgres))
    }

    /// The statements, each with its values.
    pub(crate) fn into_statements(mut self) -> Vec<(String, Vec<Value>)> {
        self.finish();
        self.done
            .into_iter()
            .map(|(sql, _)| (sql.text, sql.values))
            .collect()
    }

    /// Closes the current statement: a joined statement with gates ends in
    /// the `SELECT` of their rows, and an all-or-nothing one (even of a
    /// single part, a take of several books being able to take some) in
    /// the call that undoes it unless each gate returned its rows.
    fn finish(&mut self) {
        if let Some(chain) = self.chain.take() {
            if (chain.parts > 1 || self.all_or_nothing) && !chain.gates.is_empty() {
                self.wrap_last(&chain);
                let mut columns: Vec<&str> = Vec::new();
                for gate in &chain.gates {
                    for c in gate.columns {
                        if !columns.contains(c) {
                            columns.push(c);
                        }
                    }
                }
                let text = &mut self.current.text;
                for (i, gate) in chain.gates.iter().enumerate() {
                    // The wrapped last part ends in a space.
                    text.push_str(if i == 0 {
                        "SELECT marker"
                    } else {
                        " UNION ALL SELECT marker"
                    });
                    for c in &columns {
                        text.push_str(", ");
                        text.push_str(if gate.columns.contains(c) { c } else { "NULL" });
                    }
                    text.push_str(&format!(" FROM s{}", gate.part));
                }
                if self.all_or_nothing {
                    text.push_str(&format!(" UNION ALL SELECT {REFUSE_WRITE}"));
                    for _ in &columns {
                        text.push_str(", NULL");
                    }
                    text.push_str(" WHERE NOT (");
                    for (i, gate) in chain.gates.iter().enumerate() {
                        if i > 0 {
                            text.push_str(" AND ");
                        }
                        text.push_str(&format!(
                            "(SELECT COUNT(*) FROM s{}) = {}",
                            gate.part, gate.rows
                        ));
                    }
                    text.push(')');
                }
            }
        }
        if !self.current.text.is_empty() {
            let done = std::mem::take(&mut self.current);
            self.done.push((done, self.current_gate));
        }
    }

    /// Wraps the last part of `chain` as its `WITH` entry.
    fn wrap_last(&mut self, chain: &Chain) {
        let text = &mut self.current.text;
        let last = text.split_off(chain.last_start);
        if chain.parts == 1 {
            text.push_str("WITH ");
        } else {
            let kept = text.trim_end().len();
            text.truncate(kept);
            text.push_str(", ");
        }
        let materialized = if chain.last_is_lock {
            "MATERIALIZED "
        } else {
            ""
        };
        text.push_str(&format!(
            "s{} AS {materialized}({})",
            chain.parts,
            last.trim_end()
        ));
        text.push(' ');
    }

    fn start(&mut self, gate: bool) -> &mut Sql {
        if self.merge {
            if !self.current.text.is_empty() {
                self.current.text.push_str(";\n");
            }
        } else {
            self.finish();
        }
        self.current_gate = gate;
        &mut self.current
    }

    /// Starts a part: on PostgreSQL it joins the current statement.
    fn part(&mut self, part: Part) -> &mut Sql {
        let gate = matches!(part, Part::Gate { .. });
        if !self.join {
            return self.start(gate);
        }
        let mut chain = match self.chain.take() {
            Some(chain) => {
                self.wrap_last(&chain);
                Chain {
                    parts: chain.parts + 1,
                    last_start: self.current.text.len(),
                    ..chain
                }
            }
            None => {
                self.start(false);
                Chain {
                    parts: 1,
                    last_start: self.current.text.len(),
                    last_is_lock: false,
                    gates: Vec::new(),
                }
            }
        };
        chain.last_is_lock = part == Part::Lock;
        if let Part::Gate { columns, rows } = part {
            chain.gates.push(Gate {
                part: chain.parts,
                columns,
                rows,
            });
            self.current_gate = true;
        }
        self.chain = Some(chain);
        &mut self.current
    }

    /// Starts a statement of its own and returns it to be written.
    pub(crate) fn next(&mut self) -> &mut Sql {
        self.start(false)
    }

    /// Starts a write that returns nothing: an insert, or an update whose
    /// only reads of this batch's other parts are by name.
    pub(crate) fn write(&mut self) -> &mut Sql {
        self.part(Part::Write)
    }

    /// Starts a gate that returns its marker (`AS marker`) only, in one
    /// row when it passes.
    pub(crate) fn gate(&mut self) -> &mut Sql {
        self.gate_returning(&[])
    }

    /// Starts a gate that returns its marker (`AS marker`) and `columns`,
    /// in one row when it passes.
    pub(crate) fn gate_returning(&mut self, columns: &'static [&'static str]) -> &mut Sql {
        self.gate_rows(columns, 1)
    }

    /// Starts a gate that returns its marker (`AS marker`) and `columns`,
    /// in `rows` rows when it passes (one per stock row it takes from).
    pub(crate) fn gate_rows(&mut self, columns: &'static [&'static str], rows: usize) -> &mut Sql {
        self.part(Part::Gate { columns, rows })
    }

    /// Starts a locking read (`SELECT … FOR UPDATE`) for later parts to read
    /// by name (PostgreSQL): it runs once, in full, the first time one of
    /// them reads it, and only if one does.
    pub(crate) fn lock(&mut self) -> &mut Sql {
        self.part(Part::Lock)
    }

    /// The name by which later parts of the same statement read the part
    /// just started. Only PostgreSQL's parts have one (see
    /// [`Batch::joins_parts`]); elsewhere it is empty, which
    /// no statement accepts as a name.
    pub(crate) fn part_name(&self) -> String {
        self.chain
            .as_ref()
            .map(|c| format!("s{}", c.parts))
            .unwrap_or_default()
    }

    /// Whether parts join one statement and read each other by name
    /// (PostgreSQL, where each statement is a round trip of its own).
    pub(crate) fn joins_parts(&self) -> bool {
        self.join
    }

    /// Runs the statements, stopping at the first error (and, on
    /// PostgreSQL, after a statement whose gates returned no row); returns
    /// every row the statements returned, in order.
    pub(crate) async fn run<C: ConnectionTrait>(
        mut self,
        conn: &C,
        backend: DbBackend,
    ) -> Result<Vec<QueryResult>, DbErr> {
        self.finish();
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
    fn postgres_joins_gates_writes_and_locks_in_one_statement() {
        let mut p = Batch::new(DbBackend::Postgres);
        p.gate()
            .push("UPDATE g SET x = ")
            .bind(0i64)
            .push(" RETURNING 1 AS marker");
        assert_eq!(p.part_name(), "s1");
        p.write()
            .push("INSERT INTO a VALUES ")
            .tuple([Value::from(1i64)]);
        p.gate_returning(&["book_id", "price_minor"])
            .push("UPDATE h SET y = 1 RETURNING 2 AS marker, book_id, price_minor");
        p.lock()
            .push("SELECT book_id FROM h, s3 WHERE h.x = ")
            .bind(2i64)
            .push(" FOR UPDATE");
        assert_eq!(p.part_name(), "s4");
        p.write().push("UPDATE h SET z = 1 FROM s4");
        p.next().push("UPDATE d SET y = ").bind(4i64);
        p.write()
            .push("INSERT INTO e VALUES ")
            .tuple([Value::from(5i64)]);
        p.write()
            .push("INSERT INTO f VALUES ")
            .tuple([Value::from(6i64)]);
        p.gate().push("UPDATE k SET v = 1 RETURNING 3 AS marker");
        let statements = p.into_statements();
        let texts: Vec<&str> = statements.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "WITH s1 AS (UPDATE g SET x = $1 RETURNING 1 AS marker), \
                 s2 AS (INSERT INTO a VALUES ($2)), \
                 s3 AS (UPDATE h SET y = 1 RETURNING 2 AS marker, book_id, price_minor), \
                 s4 AS MATERIALIZED (SELECT book_id FROM h, s3 WHERE h.x = $3 FOR UPDATE), \
                 s5 AS (UPDATE h SET z = 1 FROM s4) \
                 SELECT marker, NULL, NULL FROM s1 \
                 UNION ALL SELECT marker, book_id, price_minor FROM s3",
                "UPDATE d SET y = $1",
                "WITH s1 AS (INSERT INTO e VALUES ($1)), s2 AS (INSERT INTO f VALUES ($2)), \
                 s3 AS (UPDATE k SET v = 1 RETURNING 3 AS marker) SELECT marker FROM s3",
            ]
        );
        assert_eq!(statements[0].1.len(), 3);
        assert_eq!(statements[2].1.len(), 2);
    }

    #[test]
    fn an_all_or_nothing_statement_undoes_itself_unless_every_gate_passed() {
        let mut p = Batch::all_or_nothing();
        p.gate_rows(&["book_id"], 2)
            .push("UPDATE h SET y = 1 RETURNING 2 AS marker, book_id");
        p.write()
            .push("INSERT INTO a VALUES ")
            .tuple([Value::from(1i64)]);
        p.gate().push("UPDATE g SET x = 1 RETURNING 1 AS marker");
        assert_eq!(
            p.into_one_statement().unwrap().sql,
            "WITH s1 AS (UPDATE h SET y = 1 RETURNING 2 AS marker, book_id), \
             s2 AS (INSERT INTO a VALUES ($1)), \
             s3 AS (UPDATE g SET x = 1 RETURNING 1 AS marker) \
             SELECT marker, book_id FROM s1 UNION ALL SELECT marker, NULL FROM s3 \
             UNION ALL SELECT checkout_refuse_write(), NULL \
             WHERE NOT ((SELECT COUNT(*) FROM s1) = 2 AND (SELECT COUNT(*) FROM s3) = 1)"
        );
        // A lone gate (a take of several books can take some) is checked too.
        let mut lone = Batch::all_or_nothing();
        lone.gate_rows(&[], 3)
            .push("UPDATE h SET y = 1 RETURNING 2 AS marker");
        assert_eq!(
            lone.into_one_statement().unwrap().sql,
            "WITH s1 AS (UPDATE h SET y = 1 RETURNING 2 AS marker) SELECT marker FROM s1 \
             UNION ALL SELECT checkout_refuse_write() WHERE NOT ((SELECT COUNT(*) FROM s1) = 3)"
        );
        // Two statements are all or nothing only in a transaction.
        let mut two = Batch::all_or_nothing();
        two.gate().push("UPDATE g SET x = 1 RETURNING 1 AS marker");
        two.next().push("UPDATE d SET y = 2");
        assert!(two.into_one_statement().is_none());
    }

    #[test]
    fn postgres_leaves_a_lone_part_or_a_run_of_writes_as_it_is() {
        let mut p = Batch::new(DbBackend::Postgres);
        p.gate().push("UPDATE g SET x = 1 RETURNING 1 AS marker");
        p.next().push("UPDATE d SET y = 2");
        p.write()
            .push("INSERT INTO a VALUES ")
            .tuple([Value::from(1i64)]);
        p.write()
            .push("INSERT INTO b VALUES ")
            .tuple([Value::from(2i64)]);
        p.write()
            .push("INSERT INTO c VALUES ")
            .tuple([Value::from(3i64)]);
        let texts: Vec<String> = p.into_statements().into_iter().map(|(t, _)| t).collect();
        assert_eq!(
            texts,
            vec![
                "UPDATE g SET x = 1 RETURNING 1 AS marker",
                "UPDATE d SET y = 2",
                "WITH s1 AS (INSERT INTO a VALUES ($1)), s2 AS (INSERT INTO b VALUES ($2)) \
                 INSERT INTO c VALUES ($3)",
            ]
        );
    }

    #[test]
    fn sqlite_and_the_ledger_thread_keep_their_own_shapes() {
        let mut s = Batch::new(DbBackend::Sqlite);
        s.write()
            .push("INSERT INTO a VALUES ")
            .tuple([Value::from(1i64)]);
        s.gate().push("UPDATE g SET x = 1 RETURNING 1 AS marker");
        s.write()
            .push("INSERT INTO b VALUES ")
            .tuple([Value::from(2i64)]);
        assert_eq!(s.part_name(), "");
        assert_eq!(
            s.current.text,
            "INSERT INTO a VALUES ($1);\nUPDATE g SET x = 1 RETURNING 1 AS marker;\n\
             INSERT INTO b VALUES ($2)"
        );
        let mut l = Batch::separate();
        l.write()
            .push("INSERT INTO a VALUES ")
            .tuple([Value::from(1i64)]);
        l.write()
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
