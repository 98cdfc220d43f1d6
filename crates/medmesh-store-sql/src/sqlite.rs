//! The SQLite backend: one file in WAL mode, many readers, one writer at a time.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use medmesh_store::StoreError;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::exec::{Exec, map_err, sqlite as run};
use crate::sql::{Col, Dialect, Row, Sql};
use crate::store::Backend;

/// SQLite connections. Writers are serialized in-process by a semaphore and across processes
/// (`medmesh import` beside a running node) by `BEGIN IMMEDIATE` plus a busy timeout.
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    pool: SqlitePool,
    writer: Arc<Semaphore>,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database file and runs the SQLite migrations.
    ///
    /// # Errors
    /// If the file cannot be opened or migrated.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(map_err)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory")
            // Bounds ANALYZE (run by `PRAGMA optimize`) to a sample, so start-up stays fast on a big store.
            .pragma("analysis_limit", "400")
            // Checkpoint every 64 MB of WAL rather than 4 MB: hot index pages are copied back
            // to the database once per checkpoint, not once per few bundles.
            .pragma("wal_autocheckpoint", "16384");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(options)
            .await
            .map_err(map_err)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(StoreError::backend)?;
        // Give the query planner fresh statistics (cheap: it only analyzes what changed).
        sqlx::query("PRAGMA optimize=0x10002")
            .execute(&pool)
            .await
            .map_err(map_err)?;
        Ok(Self {
            pool,
            writer: Arc::new(Semaphore::new(1)),
        })
    }
}

/// A SQLite write transaction holding the in-process writer permit.
pub struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
    _permit: OwnedSemaphorePermit,
}

#[async_trait]
impl Exec for PoolConnection<Sqlite> {
    async fn fetch(&mut self, sql: Sql, cols: &[Col]) -> Result<Vec<Row>, StoreError> {
        run::fetch_on(self, sql, cols).await
    }
    async fn execute(&mut self, sql: Sql) -> Result<u64, StoreError> {
        run::execute_on(self, sql).await
    }
}

#[async_trait]
impl Exec for SqliteTx {
    async fn fetch(&mut self, sql: Sql, cols: &[Col]) -> Result<Vec<Row>, StoreError> {
        run::fetch_on(&mut self.tx, sql, cols).await
    }
    async fn execute(&mut self, sql: Sql) -> Result<u64, StoreError> {
        run::execute_on(&mut self.tx, sql).await
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    type Conn = PoolConnection<Sqlite>;
    type Tx = SqliteTx;
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
    async fn conn(&self) -> Result<Self::Conn, StoreError> {
        self.pool.acquire().await.map_err(map_err)
    }
    async fn begin(&self) -> Result<Self::Tx, StoreError> {
        let permit = self
            .writer
            .clone()
            .acquire_owned()
            .await
            .map_err(StoreError::backend)?;
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(map_err)?;
        Ok(SqliteTx {
            tx,
            _permit: permit,
        })
    }
    async fn commit(tx: Self::Tx) -> Result<(), StoreError> {
        tx.tx.commit().await.map_err(map_err)
    }
}
