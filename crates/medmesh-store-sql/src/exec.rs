//! Running [`Sql`] on a driver connection: the only place that binds and decodes with sqlx.

use async_trait::async_trait;
use medmesh_store::StoreError;
use sqlx::{AssertSqlSafe, Row as _};

use crate::sql::{Arg, Cell, Col, Row, Sql};

/// Something that runs statements: a pooled connection or a transaction.
#[async_trait]
pub trait Exec: Send {
    /// Runs a query and decodes the columns as `cols`.
    async fn fetch(&mut self, sql: Sql, cols: &[Col]) -> Result<Vec<Row>, StoreError>;
    /// Runs a statement; returns rows affected.
    async fn execute(&mut self, sql: Sql) -> Result<u64, StoreError>;
}

/// Maps driver errors: unique violations, serialization failures and deadlocks are conflicts.
pub fn map_err(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && (db.is_unique_violation() || matches!(db.code().as_deref(), Some("40001" | "40P01")))
    {
        return StoreError::Conflict;
    }
    StoreError::backend(e)
}

macro_rules! exec_for {
    ($db:ty, $row:ty, $conn:ty) => {
        fn bind_all(
            sql: Sql,
        ) -> sqlx::query::Query<'static, $db, <$db as sqlx::Database>::Arguments> {
            let mut q = sqlx::query::<$db>(AssertSqlSafe(sql.text));
            for a in sql.args {
                q = match a {
                    Arg::I64(v) => q.bind(v),
                    Arg::F64(v) => q.bind(v),
                    Arg::Str(v) => q.bind(v),
                    Arg::OptStr(v) => q.bind(v),
                    Arg::OptI64(v) => q.bind(v),
                    Arg::Bytes(v) => q.bind(v),
                };
            }
            q
        }

        fn decode(row: &$row, cols: &[Col]) -> Result<Row, StoreError> {
            let mut cells = Vec::with_capacity(cols.len());
            for (i, c) in cols.iter().enumerate() {
                let cell = match c {
                    Col::I64 => Cell::I64(row.try_get(i).map_err(map_err)?),
                    Col::OptI64 => Cell::OptI64(row.try_get(i).map_err(map_err)?),
                    Col::Str => Cell::Str(row.try_get(i).map_err(map_err)?),
                    Col::OptStr => Cell::OptStr(row.try_get(i).map_err(map_err)?),
                    Col::Bytes => Cell::Bytes(row.try_get(i).map_err(map_err)?),
                };
                cells.push(cell);
            }
            Ok(Row(cells))
        }

        /// Runs a query on a connection.
        pub async fn fetch_on(
            conn: &mut $conn,
            sql: Sql,
            cols: &[Col],
        ) -> Result<Vec<Row>, StoreError> {
            let rows = bind_all(sql).fetch_all(&mut *conn).await.map_err(map_err)?;
            rows.iter().map(|r| decode(r, cols)).collect()
        }

        /// Runs a statement on a connection.
        pub async fn execute_on(conn: &mut $conn, sql: Sql) -> Result<u64, StoreError> {
            Ok(bind_all(sql)
                .execute(&mut *conn)
                .await
                .map_err(map_err)?
                .rows_affected())
        }
    };
}

/// SQLite execution.
pub mod sqlite {
    use super::*;
    exec_for!(
        sqlx::Sqlite,
        sqlx::sqlite::SqliteRow,
        sqlx::SqliteConnection
    );
}

/// PostgreSQL execution.
pub mod postgres {
    use super::*;
    exec_for!(sqlx::Postgres, sqlx::postgres::PgRow, sqlx::PgConnection);
}
