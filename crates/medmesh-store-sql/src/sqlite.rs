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
use crate::sqlite_checkpoint::checkpoint_beside;
pub use crate::sqlite_writer::SqliteTx;
use crate::sqlite_writer::{self as writer, Writer};
use crate::store::Backend;
use medmesh_store::RowPages;
use rusqlite::types::ValueRef;

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
        let checkpoints = writer::open_connection(path, PRAGMAS).map_err(writer::map_err)?;
        tokio::spawn(checkpoint_beside(checkpoints, Arc::downgrade(&alive)));
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

/// How long any statement waits for a lock another connection holds.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

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
    fn scan<T: Send + 'static>(
        &self,
        sql: Sql,
        cols: &'static [Col],
        decode: fn(Row) -> Result<T, StoreError>,
    ) -> Option<RowPages<T>> {
        let new_page = || Vec::with_capacity(SCAN_PAGE);
        let push = move |row: &rusqlite::Row<'_>, page: &mut Vec<T>| {
            page.push(decode(writer::decode(row, cols)?)?);
            Ok(page.len())
        };
        Some(scan_in_background(self.path.clone(), sql, new_page, push))
    }

    /// As [`Self::scan`], with each leaf copied straight from SQLite's row into its page.
    fn scan_leaf_pages(&self, sql: Sql) -> Option<medmesh_store::LeafPages> {
        let new_page = || medmesh_store::LeafPage::with_capacity(SCAN_PAGE);
        let push = |row: &rusqlite::Row<'_>, page: &mut medmesh_store::LeafPage| {
            page.push(medmesh_store::ScannedLeaf {
                index: leaf_index(row, 0)?,
                entry: bytes(row, 1)?,
                nodes: bytes(row, 2)?,
                time_micros: int(row, 3)?,
                actor: bytes(row, 4)?,
            });
            Ok(page.len())
        };
        Some(scan_in_background(self.path.clone(), sql, new_page, push))
    }

    /// As [`Self::scan`], with each row's patient id copied straight from SQLite's row into
    /// its page.
    fn scan_patient_row_pages(&self, sql: Sql) -> Option<medmesh_store::PatientRowPages> {
        let new_page = || medmesh_store::PatientRowPage::with_capacity(SCAN_PAGE);
        let push = |row: &rusqlite::Row<'_>, page: &mut medmesh_store::PatientRowPage| {
            let patient = std::str::from_utf8(bytes(row, 1)?)
                .map_err(|_| StoreError::Invalid("a patient id is not UTF-8".into()))?;
            page.push(leaf_index(row, 0)?, patient);
            Ok(page.len())
        };
        Some(scan_in_background(self.path.clone(), sql, new_page, push))
    }
}

/// Column `i` of a scanned row as an integer.
fn int(row: &rusqlite::Row<'_>, i: usize) -> Result<i64, StoreError> {
    match row.get_ref(i).map_err(writer::map_err)? {
        ValueRef::Integer(n) => Ok(n),
        _ => Err(crate::sql::bad_col(i)),
    }
}

/// Column `i` of a scanned row as bytes (a blob or text), borrowed from SQLite's row.
fn bytes<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r [u8], StoreError> {
    match row.get_ref(i).map_err(writer::map_err)? {
        ValueRef::Blob(b) | ValueRef::Text(b) => Ok(b),
        _ => Err(crate::sql::bad_col(i)),
    }
}

/// Column `i` of a scanned row as a leaf index.
fn leaf_index(row: &rusqlite::Row<'_>, i: usize) -> Result<u64, StoreError> {
    u64::try_from(int(row, i)?).map_err(|_| StoreError::Invalid("a negative leaf index".into()))
}

/// Steps `sql` on a blocking thread of its own and yields its rows in pages, each page made
/// by `new_page` and filled by `push` (which returns the page's length).
fn scan_in_background<P: Send + 'static>(
    path: PathBuf,
    sql: Sql,
    new_page: impl Fn() -> P + Send + 'static,
    push: impl FnMut(&rusqlite::Row<'_>, &mut P) -> Result<usize, StoreError> + Send + 'static,
) -> futures::stream::BoxStream<'static, Result<P, StoreError>> {
    let (pages, received) = tokio::sync::mpsc::channel(SCAN_AHEAD);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = scan_file(&path, &sql, new_page, push, &pages) {
            // The receiver may be gone already: then no one is waiting for the error.
            let _ = pages.blocking_send(Err(e));
        }
    });
    crate::store::pages_of(received)
}

/// Rows sqlx's worker thread may hold for its task before it waits: more than a search page's
/// rows (`_count` at most 1,000, plus one to learn whether a next page exists). Every caller
/// collects all rows, so the buffer holds nothing the result would not.
const ROW_BUFFER: usize = 2048;

/// Rows per page a scan hands over.
const SCAN_PAGE: usize = 4096;
/// How much of the file a scan maps (SQLite maps no more than the file's size).
const SCAN_MMAP_BYTES: i64 = 1 << 40;
/// Pages a scan reads ahead of its caller (room for `audit verify`'s pages being hashed
/// while the reader goes on).
const SCAN_AHEAD: usize = 8;

/// Steps `sql` over the file at `path` and sends its rows in pages of [`SCAN_PAGE`], each
/// made by `new_page` and filled by `push`. Stops quietly when the receiver is dropped.
fn scan_file<P>(
    path: &Path,
    sql: &Sql,
    new_page: impl Fn() -> P,
    mut push: impl FnMut(&rusqlite::Row<'_>, &mut P) -> Result<usize, StoreError>,
    pages: &tokio::sync::mpsc::Sender<Result<P, StoreError>>,
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
    let mut page = new_page();
    let mut len = 0;
    while let Some(row) = rows.next().map_err(writer::map_err)? {
        len = push(row, &mut page)?;
        if len == SCAN_PAGE {
            let full = std::mem::replace(&mut page, new_page());
            len = 0;
            if pages.blocking_send(Ok(full)).is_err() {
                return Ok(());
            }
        }
    }
    if len > 0 {
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

    /// The bundled SQLite is built without the global mutexes `.cargo/config.toml` takes out
    /// (`LIBSQLITE3_FLAGS`): one page-cache group for every connection, and memory statistics.
    /// A build that lost that setting (the file removed, or the variable overridden) fails here.
    #[tokio::test]
    async fn sqlite_is_built_without_its_global_mutexes() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(&dir.path().join("t.db")).await.unwrap();
        let mut conn = backend.conn().await.unwrap();
        let options = conn
            .fetch(
                Sql::new(
                    Dialect::Sqlite,
                    "SELECT compile_options FROM pragma_compile_options",
                ),
                &[Col::Str],
            )
            .await
            .unwrap();
        let options: Vec<String> = options.iter().map(|r| r.string(0).unwrap()).collect();
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
        // The rest of the build is libsqlite3-sys's own, as before.
        assert!(options.iter().any(|o| o == "THREADSAFE=1"), "{options:?}");
    }
}
