//! The SQLite backend: one file in WAL mode, many readers, one writer at a time.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use medmesh_store::StoreError;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Sqlite, SqlitePool};

use crate::exec::{Exec, map_err, sqlite as run};
use crate::sql::{Col, Dialect, Row, Sql};
pub use crate::sqlite_writer::SqliteTx;
use crate::sqlite_writer::{self as writer, Writer};
use crate::store::Backend;
use medmesh_store::RowPages;

/// SQLite connections: a pool of readers (sqlx), and one writer whose transactions run inline
/// (`sqlite_writer`). Writers are serialized in-process by the writer's lock and
/// across processes (`medmesh import` beside a running node) by `BEGIN IMMEDIATE` plus a busy
/// timeout.
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    pool: SqlitePool,
    writer: Writer,
    /// The database file, for [`Backend::scan`]'s reader of its own.
    path: PathBuf,
    /// Held while any clone of the backend lives: the checkpoint task stops when it goes.
    _alive: Arc<()>,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database file and runs the SQLite migrations.
    ///
    /// # Errors
    /// If the file cannot be opened or migrated.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let mut options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(map_err)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            // No memory map for the pool: pages are read with read(). A map made audited reads
            // by id 13% slower (every commit that grows the file has each connection remap
            // it, with its page faults and TLB shootdowns) and gained nothing on the portal's
            // `/record` once its searches used covering indexes (bench/README.md, "The pool
            // without its memory map"). The single-threaded scan below still maps the file.
            //
            // A whole page of rows is handed over without the worker waiting: sqlx's worker
            // thread stops after `row_buffer_size` rows until the task takes them, so a page
            // of 1,000 bodies went over in twenty stop-and-wake hand-offs between two threads.
            .row_buffer_size(ROW_BUFFER);
        for (name, value) in PRAGMAS {
            options = options.pragma(*name, *value);
        }
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
        // Opened once the file exists and is migrated, with the pool's settings.
        let writer = Writer::open(path, PRAGMAS, BUSY_TIMEOUT)?;
        let alive = Arc::new(());
        tokio::spawn(checkpoint_beside(pool.clone(), Arc::downgrade(&alive)));
        Ok(Self {
            pool,
            writer,
            path: path.to_path_buf(),
            _alive: alive,
        })
    }
}

/// The settings of every connection, the pool's and the writer's, beside the journal mode
/// (kept in the file) and the busy timeout (the writer's differs: `sqlite_writer`).
const PRAGMAS: &[(&str, &str)] = &[
    // WAL without an fsync per commit: a commit survives the process's death (kill -9), and
    // the checkpoint beside the writers syncs the file.
    ("synchronous", "NORMAL"),
    ("foreign_keys", "ON"),
    ("cache_size", "-65536"),
    ("temp_store", "memory"),
    // Bounds ANALYZE (run by `PRAGMA optimize`) to a sample, so start-up stays fast on a big store.
    ("analysis_limit", "400"),
    // No checkpoint inside a commit: the committing writer would copy the WAL back and fsync
    // the database while every read waiting on that commit's audit entry stalled (~180 ms
    // each time at 1M resources, the whole p99 of audited reads). `checkpoint_beside` does it
    // on a task of its own.
    ("wal_autocheckpoint", "0"),
    ("journal_size_limit", "67108864"),
];

/// How often the WAL is copied back to the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// WAL frames (4 KiB pages) past which a checkpoint waits for readers and writers to let it
/// finish, so the WAL restarts: 64 MB. Below it checkpoints never block anyone. Each such
/// wait stalls the commits queued behind it (audited reads wait on theirs): it sets the p99
/// of audited reads now (bench/README.md, "Issue 14, third pass").
const WAL_FRAMES_BOUND: i64 = 16_384;

/// WAL frames (256 MB) past which a `RESTART` checkpoint waits as long as it takes.
const WAL_FRAMES_HARD_BOUND: i64 = 65_536;
/// How long a `RESTART` checkpoint may wait below [`WAL_FRAMES_HARD_BOUND`] (a
/// `busy_timeout` pragma) before it gives up until the next tick. While it waits, no commit can
/// start: with SQLite's own busy timeout it waited 1.3 to 3.5 s under 64 readers on a slow disk,
/// and every audited read queued behind it.
const RESTART_WAIT_SHORT: &str = "PRAGMA busy_timeout = 100";
/// The same wait as every other statement's ([`BUSY_TIMEOUT`]): past the hard bound the WAL
/// must start over even if a writer that never pauses (an import) keeps it waiting.
const RESTART_WAIT_UNBOUNDED: &str = "PRAGMA busy_timeout = 30000";
/// How long any statement waits for a lock another connection holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A `RESTART` checkpoint on a pooled connection whose busy timeout is `wait` meanwhile. The
/// connection goes back to the pool with [`BUSY_TIMEOUT`] again, or is closed if that fails.
async fn restart_checkpoint(pool: &SqlitePool, wait: &'static str) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    sqlx::query(wait).execute(&mut *conn).await?;
    let checkpoint = sqlx::query("PRAGMA wal_checkpoint(RESTART)")
        .execute(&mut *conn)
        .await;
    if sqlx::query(RESTART_WAIT_UNBOUNDED)
        .execute(&mut *conn)
        .await
        .is_err()
    {
        drop(conn.detach());
    }
    checkpoint.map(|_| ())
}

/// Checkpoints the WAL beside the writers until the backend is dropped. A `PASSIVE`
/// checkpoint copies what it can without blocking anyone. But the WAL only starts over when a
/// writer finds no reader on it, which never happens under steady reads, and a writer that
/// never pauses (an import) keeps a passive checkpoint from catching up: so past
/// [`WAL_FRAMES_BOUND`] frames a `RESTART` checkpoint waits for the current writer and
/// readers (at most [`RESTART_WAIT_SHORT`] below [`WAL_FRAMES_HARD_BOUND`]), copies the rest
/// and makes the next writer start the WAL over (its file then cut back to
/// `journal_size_limit`). The commits themselves never checkpoint. A failed
/// checkpoint is retried at the next tick: the WAL keeps everything until it succeeds.
async fn checkpoint_beside(pool: SqlitePool, alive: std::sync::Weak<()>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if alive.upgrade().is_none() || pool.is_closed() {
            return;
        }
        let passive: Result<(i64, i64, i64), _> = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&pool)
            .await;
        match passive {
            Ok((_, log, _)) if log > WAL_FRAMES_BOUND => {
                let wait = if log > WAL_FRAMES_HARD_BOUND {
                    RESTART_WAIT_UNBOUNDED
                } else {
                    RESTART_WAIT_SHORT
                };
                if let Err(e) = restart_checkpoint(&pool, wait).await {
                    tracing::warn!(error = %e, "WAL checkpoint (restart) failed; retried");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; retried"),
        }
    }
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
        self.writer.begin().await
    }
    async fn commit(tx: Self::Tx) -> Result<(), StoreError> {
        tx.commit()
    }
    async fn rollback(tx: Self::Tx) -> Result<(), StoreError> {
        tx.rollback()
    }
    /// Reads with a read-only connection of its own, stepping the statement on a blocking
    /// thread: sqlx-sqlite hands every row from its worker thread to the caller, which bounded
    /// `audit verify` at ~190,000 entries/s. The statement is one read transaction, so the
    /// pass sees one snapshot while writers go on (WAL).
    fn scan(&self, sql: Sql, cols: &'static [Col]) -> Option<RowPages<Row>> {
        let (pages, received) = tokio::sync::mpsc::channel(SCAN_AHEAD);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = scan_file(&path, &sql, cols, &pages) {
                // The receiver may be gone already: then no one is waiting for the error.
                let _ = pages.blocking_send(Err(e));
            }
        });
        Some(crate::store::pages_of(received))
    }
}

/// Rows sqlx's worker thread may hold for its task before it waits: more than a search page's
/// rows (`_count` at most 1,000, plus one to learn whether a next page exists). Every caller
/// collects all rows, so the buffer holds nothing the result would not.
const ROW_BUFFER: usize = 2048;

/// Rows per page a scan hands over.
const SCAN_PAGE: usize = 4096;
/// How much of the file a scan maps (SQLite maps no more than the file's size).
const SCAN_MMAP_BYTES: i64 = 1 << 40;
/// Pages a scan reads ahead of its caller.
const SCAN_AHEAD: usize = 4;

/// Steps `sql` over the file at `path` and sends its rows, decoded as `cols`, in pages.
/// Stops quietly when the receiver is dropped.
fn scan_file(
    path: &Path,
    sql: &Sql,
    cols: &[Col],
    pages: &tokio::sync::mpsc::Sender<Result<Vec<Row>, StoreError>>,
) -> Result<(), StoreError> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(writer::map_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(writer::map_err)?;
    // Read pages through a memory map instead of a read() call each: a full pass touches
    // every page once, and the copy into SQLite's cache was a fifth of its time.
    conn.pragma_update(None, "mmap_size", SCAN_MMAP_BYTES)
        .map_err(writer::map_err)?;
    let mut statement = conn.prepare(&sql.text).map_err(writer::map_err)?;
    writer::bind(&mut statement, &sql.args)?;
    let mut rows = statement.raw_query();
    let mut page = Vec::with_capacity(SCAN_PAGE);
    while let Some(row) = rows.next().map_err(writer::map_err)? {
        page.push(writer::decode(row, cols)?);
        if page.len() == SCAN_PAGE {
            let full = std::mem::replace(&mut page, Vec::with_capacity(SCAN_PAGE));
            if pages.blocking_send(Ok(full)).is_err() {
                return Ok(());
            }
        }
    }
    if !page.is_empty() {
        let _ = pages.blocking_send(Ok(page));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::sql::Cell;

    /// The pool's connections and the writer carry the same settings, from one list.
    #[tokio::test]
    async fn the_writer_and_the_pool_share_their_settings() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(&dir.path().join("t.db")).await.unwrap();
        let settings = "SELECT s.synchronous, f.foreign_keys, c.cache_size, t.temp_store FROM pragma_synchronous s, pragma_foreign_keys f, pragma_cache_size c, pragma_temp_store t";
        let cols = [Col::I64, Col::I64, Col::I64, Col::I64];
        let mut conn = backend.conn().await.unwrap();
        let pooled = conn
            .fetch(Sql::new(Dialect::Sqlite, settings), &cols)
            .await
            .unwrap();
        let mut tx = backend.begin().await.unwrap();
        let written = tx
            .fetch(Sql::new(Dialect::Sqlite, settings), &cols)
            .await
            .unwrap();
        SqliteBackend::rollback(tx).await.unwrap();
        assert_eq!(pooled, written);
        assert_eq!(
            pooled,
            vec![Row(vec![
                Cell::I64(1),
                Cell::I64(1),
                Cell::I64(-65536),
                Cell::I64(2)
            ])]
        );
    }

    #[test]
    fn the_unbounded_restart_wait_is_the_usual_busy_timeout() {
        assert_eq!(
            RESTART_WAIT_UNBOUNDED,
            format!("PRAGMA busy_timeout = {}", BUSY_TIMEOUT.as_millis())
        );
    }

    /// A short restart returns while a reader holds the WAL (which keeps its snapshot), and
    /// its connection goes back to the pool with the usual busy timeout, not the short one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_restart_returns_and_restores_the_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(&dir.path().join("t.db")).await.unwrap();
        let pool = &backend.pool;
        let run = |statement: &'static str| async move {
            sqlx::query(statement).execute(pool).await.unwrap();
        };
        run("CREATE TABLE t (x INTEGER)").await;
        run("INSERT INTO t VALUES (1)").await;
        // A reader on the WAL's snapshot, then a write after it: the WAL cannot restart.
        let mut reader = pool.begin().await.unwrap();
        let _: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM t")
            .fetch_one(&mut *reader)
            .await
            .unwrap();
        run("INSERT INTO t VALUES (2)").await;
        restart_checkpoint(pool, RESTART_WAIT_SHORT).await.unwrap();
        let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM t")
            .fetch_one(&mut *reader)
            .await
            .unwrap();
        assert_eq!(
            rows, 1,
            "the reader kept its snapshot through the checkpoint"
        );
        reader.rollback().await.unwrap();
        let mut held = Vec::new();
        for _ in 0..pool.size() {
            let mut conn = pool.acquire().await.unwrap();
            let (ms,): (i64,) = sqlx::query_as("PRAGMA busy_timeout")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(ms, 30_000);
            held.push(conn);
        }
    }
}
