//! A small SQL text builder with typed arguments, shared by both adapters.
//!
//! Statements are written once; the [`Dialect`] decides placeholders (`?` or `$n`) and the few
//! constructs that differ. Each adapter binds [`Arg`]s and decodes [`Col`]umns with its own
//! driver, so no sqlx type crosses into the shared code.

use std::fmt::Write as _;

use medmesh_store::StoreError;

/// The SQL dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3.35+.
    Sqlite,
    /// PostgreSQL 13+.
    Postgres,
}

impl Dialect {
    /// Row lock suffix for reading a head inside a write transaction. SQLite serializes
    /// writers with `BEGIN IMMEDIATE` instead.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }
}

/// A bound argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// 64-bit integer.
    I64(i64),
    /// Double.
    F64(f64),
    /// Text.
    Str(String),
    /// Nullable text.
    OptStr(Option<String>),
    /// Nullable integer.
    OptI64(Option<i64>),
    /// Bytes.
    Bytes(Vec<u8>),
}

/// The type of a result column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    /// Integer.
    I64,
    /// Nullable integer.
    OptI64,
    /// Text.
    Str,
    /// Nullable text.
    OptStr,
    /// Bytes.
    Bytes,
}

/// A decoded cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Integer.
    I64(i64),
    /// Nullable integer.
    OptI64(Option<i64>),
    /// Text.
    Str(String),
    /// Nullable text.
    OptStr(Option<String>),
    /// Bytes.
    Bytes(Vec<u8>),
}

/// A decoded row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Cell>);

/// A column whose value is not of the type read.
pub(crate) fn bad_col(i: usize) -> StoreError {
    StoreError::Invalid(format!("unexpected column type at {i}"))
}

impl Row {
    /// Integer at `i`.
    pub fn i64(&self, i: usize) -> Result<i64, StoreError> {
        match self.0.get(i) {
            Some(Cell::I64(v)) => Ok(*v),
            _ => Err(bad_col(i)),
        }
    }
    /// Nullable integer at `i`.
    pub fn opt_i64(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.0.get(i) {
            Some(Cell::OptI64(v)) => Ok(*v),
            _ => Err(bad_col(i)),
        }
    }
    /// Text at `i`.
    pub fn string(&self, i: usize) -> Result<String, StoreError> {
        match self.0.get(i) {
            Some(Cell::Str(v)) => Ok(v.clone()),
            _ => Err(bad_col(i)),
        }
    }
    /// Nullable text at `i`.
    pub fn opt_string(&self, i: usize) -> Result<Option<String>, StoreError> {
        match self.0.get(i) {
            Some(Cell::OptStr(v)) => Ok(v.clone()),
            _ => Err(bad_col(i)),
        }
    }
    /// Takes the text at `i`.
    pub fn take_string(&mut self, i: usize) -> Result<String, StoreError> {
        match self.0.get_mut(i) {
            Some(Cell::Str(v)) => Ok(std::mem::take(v)),
            _ => Err(bad_col(i)),
        }
    }
    /// Takes the bytes at `i`.
    pub fn take_bytes(&mut self, i: usize) -> Result<Vec<u8>, StoreError> {
        match self.0.get_mut(i) {
            Some(Cell::Bytes(v)) => Ok(std::mem::take(v)),
            _ => Err(bad_col(i)),
        }
    }
}

/// A statement under construction.
#[derive(Debug, Clone)]
pub struct Sql {
    dialect: Dialect,
    /// The SQL text.
    pub text: String,
    /// The arguments, in placeholder order.
    pub args: Vec<Arg>,
}

impl Sql {
    /// Starts a statement.
    pub fn new(dialect: Dialect, init: &str) -> Self {
        Self {
            dialect,
            text: init.to_string(),
            args: Vec::new(),
        }
    }
    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }
    /// Appends SQL text. Only ever called with text from this crate, never with input.
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }
    /// Appends ` LIMIT n`, with `n` written into the text rather than bound. SQLite's
    /// planner reads a bound LIMIT's value, which marks the statement to be compiled again
    /// whenever that parameter is bound again: every execution of a cached paging statement
    /// was parsed and planned anew (`sqlite3Reprepare`, 2% of an import's samples).
    pub fn limit(&mut self, n: i64) -> &mut Self {
        self.text.push_str(&format!(" LIMIT {n}"));
        self
    }
    /// Appends a placeholder bound to `arg`.
    pub fn bind(&mut self, arg: Arg) -> &mut Self {
        self.args.push(arg);
        match self.dialect {
            Dialect::Sqlite => self.text.push('?'),
            Dialect::Postgres => {
                let _ = write!(self.text, "${}", self.args.len());
            }
        }
        self
    }
    /// Binds a string.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bind(Arg::Str(s.to_string()))
    }
    /// Binds an integer.
    pub fn int(&mut self, v: i64) -> &mut Self {
        self.bind(Arg::I64(v))
    }
    /// Binds a double.
    pub fn float(&mut self, v: f64) -> &mut Self {
        self.bind(Arg::F64(v))
    }
    /// Binds a comma-separated list of strings (for `IN (...)`).
    pub fn str_list(&mut self, items: &[impl AsRef<str>]) -> &mut Self {
        for (i, s) in items.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.str(s.as_ref());
        }
        self
    }
}

/// Escapes `%`, `_` and `\` for a LIKE pattern used with `ESCAPE '\'`.
pub fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_dialect() {
        let mut a = Sql::new(Dialect::Sqlite, "SELECT ");
        a.int(1).push(", ").str("x");
        assert_eq!(a.text, "SELECT ?, ?");
        let mut b = Sql::new(Dialect::Postgres, "SELECT ");
        b.int(1).push(", ").str("x");
        assert_eq!(b.text, "SELECT $1, $2");
        assert_eq!(like_escape("a%b_c\\"), "a\\%b\\_c\\\\");
    }
    #[test]
    fn a_limit_is_written_out_never_bound() {
        let mut q = Sql::new(
            Dialect::Sqlite,
            "SELECT rid FROM resources WHERE res_type = ",
        );
        q.str("Patient").push(" ORDER BY rid").limit(21);
        assert_eq!(
            q.text,
            "SELECT rid FROM resources WHERE res_type = ? ORDER BY rid LIMIT 21"
        );
        assert_eq!(q.args.len(), 1, "only the type is bound");
    }
}
