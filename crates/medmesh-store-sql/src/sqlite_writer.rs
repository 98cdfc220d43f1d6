//! The SQLite writer: one rusqlite connection whose write transactions run their statements on
//! the task that issues them, with no hand-off to a driver thread.
//!
//! sqlx-sqlite runs every statement on a worker thread of its own and sends the result back:
//! two thread wake-ups per statement, 30 to 100 µs apiece, and under the one write lock they
//! add up. An HL7 v2 message's 44 statements held the writer ~2.5 ms, most of it in those
//! hand-offs (bench/README.md, "Where an ORU^R01's time goes"). A write transaction's
//! statements are short (a row, its index rows, a head, an audit leaf), so here they run
//! inline: the caller's thread steps SQLite itself, and the write lock is held only for the
//! work. Reads stay on the sqlx pool.
//!
//! The one wait that may be long, `BEGIN IMMEDIATE` while another connection holds the write
//! lock (a `RESTART` checkpoint, `medmesh import` beside a running node), is not done inline:
//! the first attempt does not wait at all, and a busy one is retried on a blocking thread with
//! the usual busy timeout.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use medmesh_store::StoreError;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, ffi};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::exec::Exec;
use crate::sql::{Arg, Cell, Col, Row, Sql};
use crate::sqlite_busy::waiting_in_steps;

/// Prepared statements the writer keeps: a write path uses a few dozen distinct texts.
const STATEMENT_CACHE: usize = 256;

/// The node's one SQLite write connection. Holding its lock is holding the in-process write
/// lock; `BEGIN IMMEDIATE` takes the file's, against other processes.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    conn: Arc<Mutex<Connection>>,
    busy_timeout: Duration,
}

impl Writer {
    /// Opens the write connection on an existing, migrated database file, with the pool's
    /// settings (`pragmas`, applied in order).
    pub(crate) fn open(
        path: &Path,
        pragmas: &[(&str, &str)],
        busy_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let conn = open_connection(path, pragmas).map_err(map_err)?;
        // Inline, a statement never waits for a lock: see `begin`.
        conn.busy_timeout(Duration::ZERO).map_err(map_err)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            busy_timeout,
        })
    }

    /// Begins a write transaction: waits for the in-process writer, then takes the file's
    /// write lock.
    pub(crate) async fn begin(&self) -> Result<SqliteTx, StoreError> {
        let conn = self.conn.clone().lock_owned().await;
        match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => return Ok(SqliteTx { conn }),
            Err(e) if !is_busy(&e) => return Err(map_err(e)),
            Err(_) => {}
        }
        // Another connection writes. Wait for it on a blocking thread, not on this worker.
        // The transaction is built there, so if this future is dropped meanwhile, its drop
        // rolls back what the thread began.
        // It waits in small steps: behind a checkpoint, every audited read waits for this.
        let wait = self.busy_timeout;
        tokio::task::spawn_blocking(move || {
            let waited = waiting_in_steps(&conn, wait, |c| c.execute_batch("BEGIN IMMEDIATE"));
            let tx = SqliteTx { conn };
            waited.map_err(map_err)?;
            Ok(tx)
        })
        .await
        .map_err(StoreError::backend)?
    }
}

/// A read-write connection to an existing database file, with `pragmas` applied in order.
pub(crate) fn open_connection(
    path: &Path,
    pragmas: &[(&str, &str)],
) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    for (name, value) in pragmas {
        conn.pragma_update(None, name, value)?;
    }
    Ok(conn)
}

/// A SQLite write transaction on the [`Writer`]: ends with [`SqliteTx::commit`] or
/// [`SqliteTx::rollback`]; dropped open, it rolls back at once.
pub struct SqliteTx {
    conn: OwnedMutexGuard<Connection>,
}

impl SqliteTx {
    /// Commits.
    pub(crate) fn commit(self) -> Result<(), StoreError> {
        self.conn.execute_batch("COMMIT").map_err(map_err)
    }

    /// Rolls back.
    pub(crate) fn rollback(self) -> Result<(), StoreError> {
        self.conn.execute_batch("ROLLBACK").map_err(map_err)
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        // Open after a failed statement, an early return or a cancelled request: the next
        // writer must not inherit it.
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::warn!(error = %e, "rolling back a dropped SQLite write transaction failed");
        }
    }
}

#[async_trait]
impl Exec for SqliteTx {
    async fn fetch(&mut self, sql: Sql, cols: &[Col]) -> Result<Vec<Row>, StoreError> {
        let mut statement = self.conn.prepare_cached(&sql.text).map_err(map_err)?;
        bind(&mut statement, &sql.args)?;
        let mut rows = statement.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(map_err)? {
            out.push(decode(row, cols)?);
        }
        Ok(out)
    }

    async fn execute(&mut self, sql: Sql) -> Result<u64, StoreError> {
        {
            let mut statement = self.conn.prepare_cached(&sql.text).map_err(map_err)?;
            bind(&mut statement, &sql.args)?;
            // Stepped to the end, as a driver's `execute` does: a statement may return rows
            // (`RETURNING`) that the caller does not want.
            let mut rows = statement.raw_query();
            while rows.next().map_err(map_err)?.is_some() {}
        }
        Ok(self.conn.changes())
    }
}

/// Binds `args` to `statement`'s positional parameters.
pub(crate) fn bind(
    statement: &mut rusqlite::Statement<'_>,
    args: &[Arg],
) -> Result<(), StoreError> {
    for (i, arg) in args.iter().enumerate() {
        let at = i + 1;
        match arg {
            Arg::I64(v) => statement.raw_bind_parameter(at, v),
            Arg::F64(v) => statement.raw_bind_parameter(at, v),
            Arg::Str(v) => statement.raw_bind_parameter(at, v),
            Arg::OptStr(v) => statement.raw_bind_parameter(at, v),
            Arg::OptI64(v) => statement.raw_bind_parameter(at, v),
            Arg::Bytes(v) => statement.raw_bind_parameter(at, v),
        }
        .map_err(map_err)?;
    }
    Ok(())
}

/// Decodes a row as `cols`, converting as SQLite's own column accessors do where a value's
/// storage class differs from the column's (an expression's result has no declared type).
pub(crate) fn decode(row: &rusqlite::Row<'_>, cols: &[Col]) -> Result<Row, StoreError> {
    let mut cells = Vec::with_capacity(cols.len());
    for (i, col) in cols.iter().enumerate() {
        let value = row.get_ref(i).map_err(map_err)?;
        let mismatch = || {
            StoreError::backend(Mismatch {
                column: i,
                wanted: *col,
            })
        };
        let int = |v: ValueRef<'_>| match v {
            ValueRef::Integer(n) => Some(n),
            _ => None,
        };
        let text = |v: ValueRef<'_>| match v {
            ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8(t.to_vec()).ok(),
            ValueRef::Integer(n) => Some(n.to_string()),
            ValueRef::Real(f) => Some(f.to_string()),
            ValueRef::Null => None,
        };
        cells.push(match (col, value) {
            (Col::OptI64, ValueRef::Null) => Cell::OptI64(None),
            (Col::OptStr, ValueRef::Null) => Cell::OptStr(None),
            (Col::I64, v) => Cell::I64(int(v).ok_or_else(mismatch)?),
            (Col::OptI64, v) => Cell::OptI64(Some(int(v).ok_or_else(mismatch)?)),
            (Col::Str, v) => Cell::Str(text(v).ok_or_else(mismatch)?),
            (Col::OptStr, v) => Cell::OptStr(Some(text(v).ok_or_else(mismatch)?)),
            (Col::Bytes, ValueRef::Blob(b) | ValueRef::Text(b)) => Cell::Bytes(b.to_vec()),
            (Col::Bytes, _) => return Err(mismatch()),
        });
    }
    Ok(Row(cells))
}

/// A column whose value cannot be read as the type asked for.
#[derive(Debug, thiserror::Error)]
#[error("column {column} cannot be read as {wanted:?}")]
struct Mismatch {
    column: usize,
    wanted: Col,
}

fn is_busy(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
}

/// Maps rusqlite errors as [`crate::exec::map_err`] maps sqlx's: a unique or primary-key
/// violation is a conflict.
pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e
        && matches!(
            f.extended_code,
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        )
    {
        return StoreError::Conflict;
    }
    StoreError::backend(e)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sql(text: &str, args: Vec<Arg>) -> Sql {
        let mut sql = Sql::new(crate::sql::Dialect::Sqlite, text);
        sql.args = args;
        sql
    }

    async fn writer(dir: &Path) -> Writer {
        let path = dir.join("w.db");
        let setup = Connection::open(&path).unwrap();
        setup
            .execute_batch(
                "PRAGMA journal_mode=WAL; CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER, b BLOB)",
            )
            .unwrap();
        Writer::open(&path, &[("synchronous", "NORMAL")], Duration::from_secs(5)).unwrap()
    }

    fn count(dir: &Path) -> i64 {
        let c = Connection::open(dir.join("w.db")).unwrap();
        c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[tokio::test]
    async fn a_transaction_commits_and_reads_its_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path()).await;
        let mut tx = w.begin().await.unwrap();
        let insert = "INSERT INTO t (k, n, b) VALUES (?, ?, ?)";
        let n = tx
            .execute(sql(
                insert,
                vec![Arg::Str("a".into()), Arg::I64(7), Arg::Bytes(vec![1, 2])],
            ))
            .await
            .unwrap();
        assert_eq!(n, 1);
        let rows = tx
            .fetch(
                sql("SELECT k, n, b, NULL, n * 2 FROM t", vec![]),
                &[Col::Str, Col::I64, Col::Bytes, Col::OptI64, Col::OptI64],
            )
            .await
            .unwrap();
        assert_eq!(
            rows,
            vec![Row(vec![
                Cell::Str("a".into()),
                Cell::I64(7),
                Cell::Bytes(vec![1, 2]),
                Cell::OptI64(None),
                Cell::OptI64(Some(14)),
            ])]
        );
        assert_eq!(count(dir.path()), 0, "not visible before the commit");
        tx.commit().unwrap();
        assert_eq!(count(dir.path()), 1);
    }

    #[tokio::test]
    async fn a_duplicate_key_is_a_conflict_and_a_dropped_transaction_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path()).await;
        let insert = |k: &str| sql("INSERT INTO t (k) VALUES (?)", vec![Arg::Str(k.into())]);
        let mut tx = w.begin().await.unwrap();
        tx.execute(insert("a")).await.unwrap();
        assert!(matches!(
            tx.execute(insert("a")).await,
            Err(StoreError::Conflict)
        ));
        drop(tx);
        // The writer is free again, and nothing of the dropped transaction remains.
        let mut tx = w.begin().await.unwrap();
        tx.execute(insert("b")).await.unwrap();
        tx.commit().unwrap();
        let c = Connection::open(dir.path().join("w.db")).unwrap();
        let keys: Vec<String> = c
            .prepare("SELECT k FROM t")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(keys, vec!["b".to_string()]);
    }

    #[tokio::test]
    async fn a_value_of_the_wrong_kind_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path()).await;
        let mut tx = w.begin().await.unwrap();
        let got = tx.fetch(sql("SELECT 'text'", vec![]), &[Col::I64]).await;
        assert!(matches!(got, Err(StoreError::Backend(_))), "{got:?}");
        let got = tx.fetch(sql("SELECT NULL", vec![]), &[Col::Str]).await;
        assert!(matches!(got, Err(StoreError::Backend(_))), "{got:?}");
        tx.rollback().unwrap();
    }

    /// While another connection holds the file's write lock, `begin` waits off the runtime's
    /// worker (this test's runtime has only one thread, which must stay free to release the
    /// lock) and goes on when it is released.
    #[tokio::test(flavor = "current_thread")]
    async fn begin_waits_for_another_writer_without_blocking_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path()).await;
        let other = Connection::open(dir.path().join("w.db")).unwrap();
        other
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t (k) VALUES ('x')")
            .unwrap();
        let waiting = tokio::spawn({
            let w = w.clone();
            async move {
                let mut tx = w.begin().await.unwrap();
                tx.execute(sql("INSERT INTO t (k) VALUES ('y')", vec![]))
                    .await
                    .unwrap();
                tx.commit().unwrap();
            }
        });
        // The runtime's one thread runs this while `begin` waits.
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        other.execute_batch("COMMIT").unwrap();
        waiting.await.unwrap();
        assert_eq!(count(dir.path()), 2);
    }
}
