//! Building SQL statements with bound values, the same text for both
//! backends: `$n` placeholders, which PostgreSQL and SQLite (through sqlx)
//! both accept.

use sea_orm::{DbBackend, Statement, Value};
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
    fn instants_round_trip_to_the_microsecond() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_764_000_000_123_456_789).unwrap();
        let back = from_micros(micros(t)).unwrap();
        assert_eq!(back.unix_timestamp_nanos(), 1_764_000_000_123_456_000);
        let before_epoch = OffsetDateTime::from_unix_timestamp_nanos(-1_500).unwrap();
        assert_eq!(micros(before_epoch), -2);
    }
}
