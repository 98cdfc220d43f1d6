//! The PostgreSQL backend: a connection pool; row locks order concurrent writers.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use medmesh_store::StoreError;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use crate::exec::{Exec, map_err, postgres as run};
use crate::sql::{Col, Dialect, Row, Sql};
use crate::store::Backend;

/// PostgreSQL connections.
#[derive(Debug, Clone)]
pub struct PgBackend {
    pool: PgPool,
}

impl PgBackend {
    /// Connects and runs the PostgreSQL migrations.
    ///
    /// # Errors
    /// If the server is unreachable or the migrations fail.
    pub async fn open(
        url: &str,
        max_connections: u32,
        statement_timeout: Option<Duration>,
    ) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(map_err)?;
        // Migrations may take long on a big database: they run on a connection of their
        // own, without the serving pool's statement timeout.
        {
            let migrator = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await
                .map_err(map_err)?;
            sqlx::migrate!("./migrations/postgres")
                .run(&migrator)
                .await
                .map_err(StoreError::backend)?;
            migrator.close().await;
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if let Some(t) = statement_timeout {
                        // No statement outlives its bound: a costly search is cancelled by
                        // the server itself, even when the node that sent it is gone.
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "SET statement_timeout = {}",
                            t.as_millis()
                        )))
                        .execute(&mut *conn)
                        .await?;
                        // PostgreSQL 14 and later also notice a client that went away in
                        // mid-statement (a request dropped when its client disconnected).
                        // Older servers lack the setting; the timeout still bounds them.
                        let _ = sqlx::query("SET client_connection_check_interval = 1000")
                            .execute(&mut *conn)
                            .await;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(map_err)?;
        Ok(Self { pool })
    }
}

/// A pooled connection that knows whether a statement its request may abandon is running on
/// it ([`Backend::statement_started`]). Dropped in the middle of one, it is closed rather
/// than returned: sqlx would otherwise wait for the statement to end before reusing it, and
/// the server would run it to the statement timeout for a client already gone. The server
/// notices the closed connection within `client_connection_check_interval` (one second, set
/// on every connection) and ends the statement. This costs nothing per statement; asking
/// the server for the connection's backend id to cancel it cost a round trip per search.
#[derive(Debug)]
pub struct PgConn {
    conn: PoolConnection<Postgres>,
    in_flight: bool,
}

impl Drop for PgConn {
    fn drop(&mut self) {
        if self.in_flight {
            tracing::debug!("closing a connection whose request ended mid-statement");
            self.conn.close_on_drop();
        }
    }
}

#[async_trait]
impl Exec for PgConn {
    async fn fetch(&mut self, sql: Sql, cols: &[Col]) -> Result<Vec<Row>, StoreError> {
        run::fetch_on(&mut self.conn, sql, cols).await
    }
    async fn execute(&mut self, sql: Sql) -> Result<u64, StoreError> {
        run::execute_on(&mut self.conn, sql).await
    }
}

#[async_trait]
impl Exec for Transaction<'static, Postgres> {
    async fn fetch(&mut self, sql: Sql, cols: &[Col]) -> Result<Vec<Row>, StoreError> {
        run::fetch_on(self, sql, cols).await
    }
    async fn execute(&mut self, sql: Sql) -> Result<u64, StoreError> {
        run::execute_on(self, sql).await
    }
}

#[async_trait]
impl Backend for PgBackend {
    type Conn = PgConn;
    type Tx = Transaction<'static, Postgres>;
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
    async fn conn(&self) -> Result<Self::Conn, StoreError> {
        Ok(PgConn {
            conn: self.pool.acquire().await.map_err(map_err)?,
            in_flight: false,
        })
    }
    async fn begin(&self) -> Result<Self::Tx, StoreError> {
        self.pool.begin().await.map_err(map_err)
    }
    async fn commit(tx: Self::Tx) -> Result<(), StoreError> {
        tx.commit().await.map_err(map_err)
    }
    async fn rollback(tx: Self::Tx) -> Result<(), StoreError> {
        tx.rollback().await.map_err(map_err)
    }

    fn statement_started(conn: &mut Self::Conn) {
        conn.in_flight = true;
    }
    fn statement_ended(conn: &mut Self::Conn) {
        conn.in_flight = false;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    #![allow(clippy::disallowed_methods)] // Database names and deadlines of a test against a real server.
    use super::*;

    /// The PostgreSQL the suite runs against (`scripts/test` sets it; this is its default).
    fn admin_url() -> String {
        std::env::var("MEDMESH_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
    }

    /// Creates database `name` on the suite's server: a connection to the server, and the
    /// database's URL.
    async fn fresh_database(name: &str) -> (sqlx::PgPool, String) {
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&format!("{}/postgres", admin_url()))
            .await
            .expect("PostgreSQL must be running for the store tests");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .unwrap();
        (admin, format!("{}/{name}", admin_url()))
    }

    /// Drops database `name`, closing what is still connected to it.
    async fn drop_database(admin: &sqlx::PgPool, name: &str) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(admin)
        .await
        .unwrap();
    }

    /// The server process behind a pooled connection.
    async fn backend_id(conn: &mut PgConn) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn.conn)
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_statement_outlives_the_timeout_or_its_request() {
        let name = format!("medmesh_timeout_{}", uuid::Uuid::new_v4().simple());
        let (admin, url) = fresh_database(&name).await;
        let backend = PgBackend::open(&url, 2, Some(Duration::from_millis(300)))
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let err = sqlx::query("SELECT pg_sleep(5)")
            .execute(&backend.pool)
            .await
            .expect_err("the statement must be cancelled");
        assert!(err.to_string().contains("statement timeout"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
        // Without a timeout (offline commands), the same connection settings run long
        // statements to the end.
        let offline = PgBackend::open(&url, 1, None).await.unwrap();
        sqlx::query("SELECT pg_sleep(0.5)")
            .execute(&offline.pool)
            .await
            .unwrap();
        // A statement whose request is dropped ends within a second (its connection closed),
        // not at the timeout.
        let slow = PgBackend::open(&url, 2, Some(Duration::from_secs(60)))
            .await
            .unwrap();
        let mut conn = slow.conn().await.unwrap();
        let pid = backend_id(&mut conn).await;
        PgBackend::statement_started(&mut conn);
        let request = async move {
            sqlx::query("SELECT pg_sleep(30)")
                .execute(&mut *conn.conn)
                .await
        };
        assert!(
            tokio::time::timeout(Duration::from_millis(300), request)
                .await
                .is_err()
        );
        let dropped = std::time::Instant::now();
        loop {
            let running: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE '%pg_sleep(30)%'",
            )
            .bind(pid)
            .fetch_one(&admin)
            .await
            .unwrap();
            if running == 0 {
                break;
            }
            assert!(
                dropped.elapsed() < Duration::from_secs(5),
                "the dropped statement kept running"
            );
            tokio::task::yield_now().await;
        }
        // A statement that ended by itself leaves its connection in the pool for the next.
        let single = PgBackend::open(&url, 1, Some(Duration::from_secs(60)))
            .await
            .unwrap();
        let mut conn = single.conn().await.unwrap();
        let first = backend_id(&mut conn).await;
        PgBackend::statement_started(&mut conn);
        sqlx::query("SELECT 1")
            .execute(&mut *conn.conn)
            .await
            .unwrap();
        PgBackend::statement_ended(&mut conn);
        drop(conn);
        let mut conn = single.conn().await.unwrap();
        let next = backend_id(&mut conn).await;
        assert_eq!(
            next, first,
            "a finished statement's connection was not reused"
        );
        drop(conn);
        single.pool.close().await;
        slow.pool.close().await;
        backend.pool.close().await;
        offline.pool.close().await;
        drop_database(&admin, &name).await;
    }

    /// A write transaction reads a key job's cursor (the key ring's erasure check, about
    /// once a second) through itself. On a pool of one connection, which the transaction
    /// holds, it answers at once; through the pool it would wait for the pool's timeout,
    /// as every write in flight once did with the pool's 16 connections all held so.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transaction_reads_the_key_jobs_through_itself() {
        use medmesh_store::{KeyStore as _, ResourceStore as _};
        let name = format!("medmesh_keyjobs_{}", uuid::Uuid::new_v4().simple());
        let (admin, url) = fresh_database(&name).await;
        let backend = PgBackend::open(&url, 1, Some(Duration::from_secs(10)))
            .await
            .unwrap();
        let store = crate::store::SqlStore::new(
            backend.clone(),
            std::sync::Arc::new(medmesh_kernel::SystemClock),
        );
        store
            .save_job_cursor("erasure-epoch", 7, "erasure", 1)
            .await
            .unwrap();
        let mut tx = store.begin().await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(5), tx.key_job_cursor("erasure-epoch"))
            .await
            .expect("the transaction waited for a second connection");
        assert_eq!(read.unwrap(), Some((7, "erasure".to_string())));
        tx.rollback().await.unwrap();
        backend.pool.close().await;
        drop_database(&admin, &name).await;
    }
}
