//! The record store, written once over [`Backend`]; SQLite and PostgreSQL supply the backend.

use std::sync::Arc;

use async_trait::async_trait;
use medmesh_audit::AuditEntry;
use medmesh_fhir::index::{IndexRow, IndexValue};
use medmesh_fhir::search::{Include, SearchQuery};
use medmesh_kernel::Clock;
use medmesh_policy::access::Edge;
use medmesh_store::prelude::*;
use medmesh_store::{
    ExportJob, Freshness, HistoryPage, HistoryQuery, HistoryScope, NewVersion, Notification,
    PageRequest, SealedKey, SearchPage, StoreError, StoredBody, StoredVersion, TimeClaim, UserKey,
    VersionHead, WrappedKeyRecord,
};

use crate::exec::Exec;
use crate::search_sql::{self, Cursor};
use crate::sql::{Arg, Col, Dialect, Row, Sql};

/// The stream over the pages a reader task sends.
pub(crate) fn pages_of<P: Send + 'static>(
    received: tokio::sync::mpsc::Receiver<Result<P, StoreError>>,
) -> futures::stream::BoxStream<'static, Result<P, StoreError>> {
    use futures::StreamExt;
    futures::stream::unfold(received, |mut r| async move {
        r.recv().await.map(|page| (page, r))
    })
    .boxed()
}

/// What a database adapter provides: connections, transactions and its dialect.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A pooled connection for reads.
    type Conn: Exec;
    /// A write transaction.
    type Tx: Exec;
    /// The SQL dialect.
    fn dialect(&self) -> Dialect;
    /// Takes a connection from the pool.
    async fn conn(&self) -> Result<Self::Conn, StoreError>;
    /// Begins a write transaction.
    async fn begin(&self) -> Result<Self::Tx, StoreError>;
    /// Commits.
    async fn commit(tx: Self::Tx) -> Result<(), StoreError>;
    /// Rolls back now (a dropped transaction's rollback waits for its connection's next
    /// use, holding its locks until then).
    async fn rollback(tx: Self::Tx) -> Result<(), StoreError>;
    /// Marks `conn` as running a statement its request may abandon (a search whose client
    /// went away, or whose connection timed out): dropped before [`Self::statement_ended`],
    /// the connection is closed instead of going back to the pool, and the server ends the
    /// statement once it sees its client gone. A no-op where a dropped future already ends
    /// the statement (SQLite runs it on the caller's task).
    fn statement_started(_conn: &mut Self::Conn) {}
    /// The statement [`Self::statement_started`] marked ended by itself: the connection goes
    /// back to the pool when dropped.
    fn statement_ended(_conn: &mut Self::Conn) {}
    /// Runs one long read (a full pass over a table) on a reader of the backend's own and
    /// yields its rows in pages, read ahead of the caller. `None` where the backend has no
    /// such reader: the caller then pages through the pool by key. `decode` turns each row
    /// into the caller's type on the reader's thread (so the row is freed where it was made).
    fn scan<T: Send + 'static>(
        &self,
        _sql: Sql,
        _cols: &'static [Col],
        _decode: fn(Row) -> Result<T, StoreError>,
    ) -> Option<medmesh_store::RowPages<T>> {
        None
    }
    /// As [`Self::scan`], over `audit_log`'s leaves (`leaf_index, entry, nodes, time_micros,
    /// actor`), each copied straight into a packed [`medmesh_store::LeafPage`].
    fn scan_leaf_pages(&self, _sql: Sql) -> Option<medmesh_store::LeafPages> {
        None
    }
    /// As [`Self::scan`], over `audit_patient`'s rows (`leaf_index, patient_id`), each
    /// copied straight into a packed [`medmesh_store::PatientRowPage`].
    fn scan_patient_row_pages(&self, _sql: Sql) -> Option<medmesh_store::PatientRowPages> {
        None
    }
}

/// The record store over a backend.
pub struct SqlStore<B: Backend> {
    backend: Arc<B>,
    /// The injected clock: relative search prefixes (`ap`) are measured from its time.
    clock: Arc<dyn Clock>,
    /// The patients' heads the last audit append left (`audit_log::HeadCache`).
    heads: crate::audit_log::SharedHeadCache,
}

impl<B: Backend + std::fmt::Debug> std::fmt::Debug for SqlStore<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> SqlStore<B> {
    /// Wraps a backend.
    pub fn new(backend: B, clock: Arc<dyn Clock>) -> Self {
        Self {
            backend: Arc::new(backend),
            clock,
            heads: Default::default(),
        }
    }
    pub(crate) fn sql(&self, init: &str) -> Sql {
        Sql::new(self.backend.dialect(), init)
    }

    pub(crate) fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, shared, for a task that outlives the call.
    pub(crate) fn backend_arc(&self) -> Arc<B> {
        self.backend.clone()
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.backend.dialect()
    }
}

const VERSION_COLS: [Col; 6] = [Col::Str, Col::Str, Col::I64, Col::I64, Col::I64, Col::Bytes];

fn version_from(mut row: Row) -> Result<StoredVersion, StoreError> {
    Ok(StoredVersion {
        resource_type: row.string(0)?,
        id: row.string(1)?,
        version: row.i64(2)?,
        last_updated: row.i64(3)?,
        deleted: row.i64(4)? != 0,
        body: row.take_bytes(5)?,
    })
}

fn keys_from(rows: Vec<Row>, type_col: usize) -> Result<Vec<(String, String)>, StoreError> {
    rows.into_iter()
        .map(|r| Ok((r.string(type_col)?, r.string(type_col + 1)?)))
        .collect()
}

async fn max_rid(conn: &mut impl Exec, d: Dialect) -> Result<i64, StoreError> {
    let rows = conn
        .fetch(
            Sql::new(d, "SELECT MAX(rid) FROM resources"),
            &[Col::OptI64],
        )
        .await?;
    Ok(rows
        .first()
        .map(|r| r.opt_i64(0))
        .transpose()?
        .flatten()
        .unwrap_or(0))
}

/// Runs a search page on any executor (the pool, or a transaction for conditional writes).
async fn run_search(
    conn: &mut impl Exec,
    d: Dialect,
    query: &SearchQuery,
    page: &PageRequest,
    now: i64,
) -> Result<SearchPage, StoreError> {
    Ok(run_search_page(conn, d, query, page, now).await?.0)
}

/// [`run_search`], with the matches' `rid`s in the page's order.
async fn run_search_page(
    conn: &mut impl Exec,
    d: Dialect,
    query: &SearchQuery,
    page: &PageRequest,
    now: i64,
) -> Result<(SearchPage, Vec<i64>), StoreError> {
    let cursor = page.cursor.as_deref().map(Cursor::decode).transpose()?;
    // The `rid` bound of the page: a later page's comes with its cursor; a first page takes
    // its own, in the page query itself when no count needs it first.
    let bound = match cursor {
        Some(
            Cursor::After { snapshot, .. }
            | Cursor::Before { snapshot, .. }
            | Cursor::Offset { snapshot, .. },
        ) => Some(snapshot),
        // Conditional matches inside a write transaction never page: no snapshot needed.
        None if !page.snapshot => Some(i64::MAX),
        None if page.with_total => Some(max_rid(conn, d).await?),
        None => None,
    };
    let total = if page.with_total {
        let rows = conn
            .fetch(
                search_sql::count_query(d, query, bound.unwrap_or(i64::MAX), now)?,
                &[Col::I64],
            )
            .await?;
        Some(
            rows.first()
                .map(|r| r.i64(0))
                .transpose()?
                .unwrap_or(0)
                .max(0) as u64,
        )
    } else {
        None
    };
    if page.count == 0 {
        return Ok((
            SearchPage {
                matches: Vec::new(),
                total,
                next: None,
                previous: None,
            },
            Vec::new(),
        ));
    }
    let cols: &[Col] = match bound {
        Some(_) => &[Col::I64, Col::Str, Col::Str],
        None => &[Col::I64, Col::Str, Col::Str, Col::OptI64],
    };
    let rows = conn
        .fetch(
            search_sql::page_query(d, query, page.count, cursor, bound, now)?,
            cols,
        )
        .await?;
    // Without rows there is no next page, so no snapshot to carry.
    let snapshot = match bound {
        Some(b) => b,
        None => rows
            .first()
            .map(|r| r.opt_i64(3))
            .transpose()?
            .flatten()
            .unwrap_or(0),
    };
    let has_more = rows.len() > page.count as usize;
    let mut rows: Vec<Row> = rows.into_iter().take(page.count as usize).collect();
    let (next, previous) = if let Some(Cursor::Before { rid, .. }) = cursor {
        // Read backwards: put the page in order. There is a next page (the one this came
        // from), and a previous one when more rows lay before.
        rows.reverse();
        let first = rows.first().map(|r| r.i64(0)).transpose()?.unwrap_or(rid);
        (
            Some(
                Cursor::After {
                    rid: rid - 1,
                    snapshot,
                }
                .encode(),
            ),
            has_more.then(|| {
                Cursor::Before {
                    rid: first,
                    snapshot,
                }
                .encode()
            }),
        )
    } else {
        let previous = match cursor {
            // The rows at or before the cursor's rid.
            Some(Cursor::After { rid, .. }) => Some(
                Cursor::Before {
                    rid: rid + 1,
                    snapshot,
                }
                .encode(),
            ),
            Some(Cursor::Offset { offset, .. }) if offset > 0 => Some(
                Cursor::Offset {
                    offset: (offset - i64::from(page.count)).max(0),
                    snapshot,
                }
                .encode(),
            ),
            _ => None,
        };
        let next = if has_more {
            Some(if query.sort.is_empty() {
                let last = rows.last().map(|r| r.i64(0)).transpose()?.unwrap_or(0);
                Cursor::After {
                    rid: last,
                    snapshot,
                }
                .encode()
            } else {
                let offset = match cursor {
                    Some(Cursor::Offset { offset, .. }) => offset,
                    _ => 0,
                };
                Cursor::Offset {
                    offset: offset + i64::from(page.count),
                    snapshot,
                }
                .encode()
            })
        } else {
            None
        };
        (next, previous)
    };
    let rids = rids_of(&rows)?;
    Ok((
        SearchPage {
            matches: keys_from(rows, 1)?,
            total,
            next,
            previous,
        },
        rids,
    ))
}

fn rids_of(rows: &[Row]) -> Result<Vec<i64>, StoreError> {
    rows.iter().map(|r| r.i64(0)).collect()
}

/// The current versions of the resources with these `rid`s, in that order (deleted ones
/// left out): one statement on the table's key, where [`ResourceStore::read_many`] looks
/// each (type, id) up through the unique index, 200 per statement.
async fn read_rids(
    conn: &mut impl Exec,
    d: Dialect,
    rids: &[i64],
) -> Result<Vec<StoredVersion>, StoreError> {
    if rids.is_empty() {
        return Ok(Vec::new());
    }
    // A page holds at most 1,000 (MAX_COUNT), well inside both dialects' limits on bound
    // parameters; pages of one size share one prepared statement.
    let mut sql = Sql::new(
        d,
        "SELECT v.res_type, v.res_id, v.version, v.last_updated, v.deleted, v.body, r.rid FROM resources r JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version WHERE r.deleted = 0 AND r.rid IN (",
    );
    for (i, rid) in rids.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.int(*rid);
    }
    sql.push(")");
    let mut cols = VERSION_COLS.to_vec();
    cols.push(Col::I64);
    // Each row goes straight to its place in the page (a sort looked the places up
    // n log n times and moved whole versions around).
    let place: std::collections::HashMap<i64, usize> =
        rids.iter().enumerate().map(|(i, rid)| (*rid, i)).collect();
    let mut slots: Vec<Option<StoredVersion>> =
        std::iter::repeat_with(|| None).take(rids.len()).collect();
    for row in conn.fetch(sql, &cols).await? {
        let rid = row.i64(VERSION_COLS.len())?;
        if let Some(slot) = place.get(&rid).and_then(|i| slots.get_mut(*i)) {
            *slot = Some(version_from(row)?);
        }
    }
    Ok(slots.into_iter().flatten().collect())
}

#[async_trait]
impl<B: Backend> ResourceStore for SqlStore<B> {
    async fn begin(&self) -> Result<Box<dyn RecordTx>, StoreError> {
        let tx = self.backend.begin().await?;
        Ok(Box::new(SqlTx::<B> {
            now: self.clock.now_micros(),
            tx,
            dialect: self.backend.dialect(),
            heads: self.heads.clone(),
            pending: Vec::new(),
            creates: Vec::new(),
            created: Default::default(),
            audit: Vec::new(),
            known_heads: Default::default(),
            policy_changed: false,
            consents_changed: false,
        }))
    }

    async fn read(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<StoredVersion>, StoreError> {
        let mut sql = self.sql("SELECT v.res_type, v.res_id, v.version, v.last_updated, v.deleted, v.body FROM resources r JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version WHERE r.res_type = ");
        sql.str(resource_type).push(" AND r.res_id = ").str(id);
        let mut conn = self.backend.conn().await?;
        conn.fetch(sql, &VERSION_COLS)
            .await?
            .into_iter()
            .next()
            .map(version_from)
            .transpose()
    }

    async fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<StoredVersion>, StoreError> {
        let mut sql = self.sql("SELECT res_type, res_id, version, last_updated, deleted, body FROM resource_versions WHERE res_type = ");
        sql.str(resource_type)
            .push(" AND res_id = ")
            .str(id)
            .push(" AND version = ")
            .int(version);
        let mut conn = self.backend.conn().await?;
        conn.fetch(sql, &VERSION_COLS)
            .await?
            .into_iter()
            .next()
            .map(version_from)
            .transpose()
    }

    async fn read_many(&self, keys: &[(String, String)]) -> Result<Vec<StoredVersion>, StoreError> {
        // Nothing to read takes no connection: every search without `_include` asked for
        // none, a second trip through the pool per search (bench/README.md).
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(keys.len());
        let mut conn = self.backend.conn().await?;
        for chunk in keys.chunks(200) {
            // One `res_id IN (...)` per type (a search's page is nearly always one type): an
            // index lookup per id, where a chain of ORs made the planner work per pair.
            let mut types: Vec<&str> = chunk.iter().map(|(t, _)| t.as_str()).collect();
            types.sort_unstable();
            types.dedup();
            let mut sql = self.sql("SELECT v.res_type, v.res_id, v.version, v.last_updated, v.deleted, v.body FROM resources r JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version WHERE r.deleted = 0 AND (");
            for (i, rt) in types.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                sql.push("(r.res_type = ")
                    .str(rt)
                    .push(" AND r.res_id IN (");
                for (j, (_, id)) in chunk.iter().filter(|(t, _)| t == rt).enumerate() {
                    if j > 0 {
                        sql.push(", ");
                    }
                    sql.str(id);
                }
                sql.push("))");
            }
            sql.push(")");
            for row in conn.fetch(sql, &VERSION_COLS).await? {
                out.push(version_from(row)?);
            }
        }
        // Keep the caller's order: each key's place, looked up once (a scan of the keys per
        // comparison made a page of 1,000 quadratic).
        let place: std::collections::HashMap<(&str, &str), usize> = keys
            .iter()
            .enumerate()
            .map(|(i, (t, id))| ((t.as_str(), id.as_str()), i))
            .collect();
        out.sort_by_cached_key(|v| {
            place
                .get(&(v.resource_type.as_str(), v.id.as_str()))
                .copied()
                .unwrap_or(usize::MAX)
        });
        Ok(out)
    }

    async fn history(&self, q: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        let filter = |sql: &mut Sql| {
            match &q.scope {
                HistoryScope::Instance(t, id) => {
                    sql.push(" AND v.res_type = ")
                        .str(t)
                        .push(" AND v.res_id = ")
                        .str(id);
                }
                HistoryScope::Type(t) => {
                    sql.push(" AND v.res_type = ").str(t);
                }
                HistoryScope::System => {}
            }
            if let Some(since) = q.since {
                sql.push(" AND v.last_updated >= ").int(since);
            }
            if let Some(at) = q.at {
                // Versions current at `at`: written by then, and not yet replaced.
                sql.push(" AND v.last_updated <= ").int(at);
                sql.push(" AND NOT EXISTS (SELECT 1 FROM resource_versions n WHERE n.rid = v.rid AND n.version = v.version + 1 AND n.last_updated <= ").int(at).push(")");
            }
        };
        let mut conn = self.backend.conn().await?;
        let mut count = self.sql("SELECT COUNT(*) FROM resource_versions v WHERE 1=1");
        filter(&mut count);
        let total = conn
            .fetch(count, &[Col::I64])
            .await?
            .first()
            .map(|r| r.i64(0))
            .transpose()?
            .unwrap_or(0)
            .max(0) as u64;
        let mut sql = self.sql("SELECT v.res_type, v.res_id, v.version, v.last_updated, v.deleted, v.body, v.seq FROM resource_versions v WHERE 1=1");
        filter(&mut sql);
        if let Some(c) = &q.cursor {
            let before: i64 = c
                .strip_prefix('h')
                .and_then(|s| s.parse().ok())
                .ok_or(StoreError::BadCursor)?;
            sql.push(" AND v.seq < ").int(before);
        }
        sql.push(" ORDER BY v.seq DESC")
            .limit(i64::from(q.count) + 1);
        let mut cols = VERSION_COLS.to_vec();
        cols.push(Col::I64);
        let rows = conn.fetch(sql, &cols).await?;
        let has_more = rows.len() > q.count as usize;
        let mut versions = Vec::new();
        let mut last_seq = 0;
        for row in rows.into_iter().take(q.count as usize) {
            last_seq = row.i64(6)?;
            versions.push(version_from(row)?);
        }
        Ok(HistoryPage {
            versions,
            total,
            next: has_more.then(|| format!("h{last_seq}")),
        })
    }

    async fn search(
        &self,
        query: &SearchQuery,
        page: &PageRequest,
    ) -> Result<SearchPage, StoreError> {
        let mut conn = self.backend.conn().await?;
        B::statement_started(&mut conn);
        let page = run_search(
            &mut conn,
            self.backend.dialect(),
            query,
            page,
            self.clock.now_micros(),
        )
        .await;
        B::statement_ended(&mut conn);
        page
    }

    async fn search_read(
        &self,
        query: &SearchQuery,
        page: &PageRequest,
    ) -> Result<(SearchPage, Vec<StoredVersion>), StoreError> {
        let mut conn = self.backend.conn().await?;
        B::statement_started(&mut conn);
        let dialect = self.backend.dialect();
        let found = run_search_page(&mut conn, dialect, query, page, self.clock.now_micros()).await;
        B::statement_ended(&mut conn);
        let (found, rids) = found?;
        let versions = read_rids(&mut conn, dialect, &rids).await?;
        Ok((found, versions))
    }

    async fn include_targets(
        &self,
        from: &[(String, String)],
        include: &Include,
    ) -> Result<Vec<(String, String)>, StoreError> {
        if from.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = self.sql("SELECT DISTINCT t.res_type, t.res_id FROM resources s JOIN idx_reference x ON x.rid = s.rid JOIN resources t ON t.res_type = x.target_type AND t.res_id = x.target_id WHERE t.deleted = 0 AND s.res_type = ");
        sql.str(&include.source_type);
        if include.param != "*" {
            sql.push(" AND x.param = ").str(&include.param);
        }
        if let Some(tt) = &include.target_type {
            sql.push(" AND t.res_type = ").str(tt);
        }
        sql.push(" AND s.res_id IN (");
        let ids: Vec<String> = from
            .iter()
            .filter(|(t, _)| *t == include.source_type)
            .map(|(_, id)| id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sql.str_list(&ids).push(")");
        let mut conn = self.backend.conn().await?;
        keys_from(conn.fetch(sql, &[Col::Str, Col::Str]).await?, 0)
    }

    async fn revinclude_sources(
        &self,
        to: &[(String, String)],
        include: &Include,
    ) -> Result<Vec<(String, String)>, StoreError> {
        if to.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = self.sql("SELECT DISTINCT s.res_type, s.res_id FROM idx_reference x JOIN resources s ON s.rid = x.rid WHERE s.deleted = 0 AND x.res_type = ");
        sql.str(&include.source_type);
        if include.param != "*" {
            sql.push(" AND x.param = ").str(&include.param);
        }
        sql.push(" AND (");
        for (i, (t, id)) in to.iter().enumerate() {
            if i > 0 {
                sql.push(" OR ");
            }
            sql.push("(x.target_id = ")
                .str(id)
                .push(" AND x.target_type = ")
                .str(t)
                .push(")");
        }
        sql.push(")");
        let mut conn = self.backend.conn().await?;
        keys_from(conn.fetch(sql, &[Col::Str, Col::Str]).await?, 0)
    }

    async fn compartment_page(
        &self,
        patient_id: &str,
        links: &[(String, Vec<String>)],
        since: Option<i64>,
        types: &[String],
        count: u32,
        cursor: Option<&str>,
    ) -> Result<SearchPage, StoreError> {
        let after: i64 = match cursor {
            Some(c) => c
                .strip_prefix('c')
                .and_then(|s| s.parse().ok())
                .ok_or(StoreError::BadCursor)?,
            None => 0,
        };
        let mut conn = self.backend.conn().await?;
        let mut matches = Vec::new();
        // The patient comes first, on the first page.
        if cursor.is_none() && (types.is_empty() || types.iter().any(|t| t == "Patient")) {
            let mut sql = self.sql("SELECT res_type, res_id, last_updated FROM resources WHERE deleted = 0 AND res_type = 'Patient' AND res_id = ");
            sql.str(patient_id);
            for r in conn.fetch(sql, &[Col::Str, Col::Str, Col::I64]).await? {
                if since.is_none_or(|s| r.i64(2).is_ok_and(|t| t >= s)) {
                    matches.push((r.string(0)?, r.string(1)?));
                }
            }
        }
        // The patient counts toward the page size.
        let limit = count.saturating_sub(matches.len() as u32);
        // The compartment, walked in rid order on the (target_id, target_type, rid) index, so a
        // page reads its own rows only, however large the compartment.
        let mut sql = self.sql("SELECT k.rid, r.res_type, r.res_id, r.last_updated FROM (SELECT x.rid AS rid FROM idx_reference x WHERE x.target_id = ");
        sql.str(patient_id)
            .push(" AND x.target_type = 'Patient' AND x.rid > ")
            .int(after)
            .push(" AND (");
        for (i, (t, params)) in links.iter().enumerate() {
            if i > 0 {
                sql.push(" OR ");
            }
            sql.push("(x.res_type = ")
                .str(t)
                .push(" AND x.param IN (")
                .str_list(params)
                .push("))");
        }
        if links.is_empty() {
            sql.push("1=0");
        }
        sql.push(")");
        if !types.is_empty() {
            sql.push(" AND x.res_type IN (").str_list(types).push(")");
        }
        sql.push(" GROUP BY x.rid ORDER BY x.rid")
            .limit(i64::from(limit) + 1);
        sql.push(") k JOIN resources r ON r.rid = k.rid WHERE r.deleted = 0 ORDER BY k.rid");
        let rows = conn
            .fetch(sql, &[Col::I64, Col::Str, Col::Str, Col::I64])
            .await?;
        let has_more = rows.len() > limit as usize;
        let rows: Vec<Row> = rows.into_iter().take(limit as usize).collect();
        let last = rows.last().map(|r| r.i64(0)).transpose()?.unwrap_or(after);
        let next = has_more.then(|| format!("c{last}"));
        for r in rows {
            // `_since` filters here, after paging, so a page may hold fewer than `count`.
            if since.is_none_or(|s| r.i64(3).is_ok_and(|t| t >= s)) {
                matches.push((r.string(1)?, r.string(2)?));
            }
        }
        Ok(SearchPage {
            matches,
            total: None,
            next,
            // This listing runs forward only.
            previous: None,
        })
    }

    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.backend.begin().await?;
        crate::audit_log::append_leaves(
            &mut tx,
            self.backend.dialect(),
            entries.to_vec(),
            &self.heads,
            None,
        )
        .await?;
        B::commit(tx).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.backend.conn().await?;
        conn.fetch(self.sql("SELECT CAST(1 AS BIGINT)"), &[Col::I64])
            .await
            .map(|_| ())
    }

    async fn bodies_after(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<StoredBody>, StoreError> {
        self.stored_after(after_seq, None, limit).await
    }

    async fn versions_after(
        &self,
        after_seq: i64,
        types: &[String],
        limit: u32,
    ) -> Result<Vec<StoredBody>, StoreError> {
        if types.is_empty() {
            return Ok(Vec::new());
        }
        self.stored_after(after_seq, Some(types), limit).await
    }
}

impl<B: Backend> SqlStore<B> {
    /// Stored versions (tombstones left out) after row `after_seq`, of `types` or of all,
    /// in row order: re-encryption's walk and the change feed.
    async fn stored_after(
        &self,
        after_seq: i64,
        types: Option<&[String]>,
        limit: u32,
    ) -> Result<Vec<StoredBody>, StoreError> {
        let mut sql = self.sql(
            "SELECT v.res_type, v.res_id, v.version, v.last_updated, v.deleted, v.body, v.seq, \
             CAST(CASE WHEN r.version = v.version THEN 1 ELSE 0 END AS BIGINT) \
             FROM resource_versions v JOIN resources r ON r.rid = v.rid \
             WHERE v.deleted = 0 AND v.seq > ",
        );
        sql.int(after_seq);
        if let Some(types) = types {
            sql.push(" AND v.res_type IN (").str_list(types).push(")");
        }
        sql.push(" ORDER BY v.seq").limit(i64::from(limit));
        let mut cols = VERSION_COLS.to_vec();
        cols.extend([Col::I64, Col::I64]);
        let rows = self.backend.conn().await?.fetch(sql, &cols).await?;
        rows.into_iter()
            .map(|r| {
                let seq = r.i64(6)?;
                let current = r.i64(7)? != 0;
                Ok(StoredBody {
                    seq,
                    current,
                    version: version_from(r)?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl<B: Backend> TrustEdgeStore for SqlStore<B> {
    async fn reach(
        &self,
        seeds: &[String],
        now: i64,
    ) -> Result<(Vec<String>, Vec<Edge>), StoreError> {
        let mut conn = self.backend.conn().await?;
        crate::policy::reach(&mut conn, self.dialect(), seeds, now).await
    }

    async fn patient_edges(&self, patient_id: &str) -> Result<Vec<Edge>, StoreError> {
        let mut conn = self.backend.conn().await?;
        crate::policy::patient_edges(&mut conn, self.dialect(), patient_id).await
    }

    async fn consents_of(
        &self,
        patient_ids: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut conn = self.backend.conn().await?;
        crate::policy::consents_of(&mut conn, self.dialect(), patient_ids).await
    }

    async fn break_glass_since(&self, since: i64) -> Result<Vec<Edge>, StoreError> {
        let mut conn = self.backend.conn().await?;
        crate::policy::break_glass_since(&mut conn, self.dialect(), since).await
    }

    async fn policy_generation(&self) -> Result<i64, StoreError> {
        let mut conn = self.backend.conn().await?;
        crate::policy::generation(&mut conn, self.dialect(), 1).await
    }

    async fn consent_generation(&self) -> Result<i64, StoreError> {
        let mut conn = self.backend.conn().await?;
        crate::policy::generation(&mut conn, self.dialect(), 2).await
    }

    async fn consent_rows(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let rows = self
            .backend
            .conn()
            .await?
            .fetch(
                self.sql("SELECT source, patient_id, body FROM policy_consents ORDER BY source"),
                &[Col::Str, Col::Str, Col::Str],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.string(0)?, r.string(1)?, r.string(2)?)))
            .collect()
    }
}

#[async_trait]
impl<B: Backend> NotificationStore for SqlStore<B> {
    async fn notifications(&self, patient_id: &str) -> Result<Vec<Notification>, StoreError> {
        let mut conn = self.backend.conn().await?;
        crate::policy::notifications(&mut conn, self.dialect(), patient_id).await
    }

    async fn mark_notification_read(
        &self,
        patient_id: &str,
        id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut sql = self.sql("UPDATE notifications SET read_micros = COALESCE(read_micros, ");
        sql.int(now)
            .push(") WHERE id = ")
            .str(id)
            .push(" AND patient_id = ")
            .str(patient_id);
        Ok(self.backend.conn().await?.execute(sql).await? == 1)
    }
}

#[async_trait]
impl<B: Backend> ExportJobStore for SqlStore<B> {
    async fn put_export_job(&self, job: &ExportJob) -> Result<(), StoreError> {
        // An upsert that never leaves `cancelled`: a cancel is final even when the worker
        // saves its progress afterwards.
        let mut sql = self.sql("INSERT INTO export_jobs (id, state, request, output, error, created, updated) VALUES (");
        sql.str(&job.id)
            .push(", ")
            .str(&job.state)
            .push(", ")
            .str(&job.request)
            .push(", ");
        sql.bind(Arg::OptStr(job.output.clone()))
            .push(", ")
            .bind(Arg::OptStr(job.error.clone()))
            .push(", ");
        sql.int(job.created).push(", ").int(job.updated).push(")");
        sql.push(" ON CONFLICT (id) DO UPDATE SET state = excluded.state, output = excluded.output, error = excluded.error, updated = excluded.updated WHERE export_jobs.state <> 'cancelled'");
        let mut conn = self.backend.conn().await?;
        conn.execute(sql).await.map(|_| ())
    }

    async fn export_job(&self, id: &str) -> Result<Option<ExportJob>, StoreError> {
        let mut sql = self.sql("SELECT id, state, request, output, error, created, updated FROM export_jobs WHERE id = ");
        sql.str(id);
        let mut conn = self.backend.conn().await?;
        let rows = conn.fetch(sql, &JOB_COLS).await?;
        rows.into_iter().next().map(job_from).transpose()
    }

    async fn unfinished_export_jobs(&self) -> Result<Vec<ExportJob>, StoreError> {
        let sql = self.sql("SELECT id, state, request, output, error, created, updated FROM export_jobs WHERE state IN ('queued', 'running') ORDER BY created");
        let mut conn = self.backend.conn().await?;
        conn.fetch(sql, &JOB_COLS)
            .await?
            .into_iter()
            .map(job_from)
            .collect()
    }

    async fn export_page(
        &self,
        resource_type: &str,
        since: Option<i64>,
        after_rid: i64,
        count: u32,
    ) -> Result<(Vec<StoredVersion>, i64), StoreError> {
        let mut sql = self.sql("SELECT v.res_type, v.res_id, v.version, v.last_updated, v.deleted, v.body, r.rid FROM resources r JOIN resource_versions v ON v.rid = r.rid AND v.version = r.version WHERE r.deleted = 0 AND r.res_type = ");
        sql.str(resource_type).push(" AND r.rid > ").int(after_rid);
        if let Some(s) = since {
            sql.push(" AND r.last_updated >= ").int(s);
        }
        sql.push(" ORDER BY r.rid").limit(i64::from(count));
        let mut cols = VERSION_COLS.to_vec();
        cols.push(Col::I64);
        let mut conn = self.backend.conn().await?;
        let mut last = after_rid;
        let mut out = Vec::new();
        for row in conn.fetch(sql, &cols).await? {
            last = row.i64(6)?;
            out.push(version_from(row)?);
        }
        Ok((out, last))
    }
}

#[async_trait]
impl<B: Backend> KeyDirectoryStore for SqlStore<B> {
    async fn user_keys(&self, owner: &str) -> Result<Vec<UserKey>, StoreError> {
        let mut conn = self.backend.conn().await?;
        crate::directory::user_keys(&mut conn, self.dialect(), owner).await
    }

    async fn user_key(&self, key_id: &str) -> Result<Option<UserKey>, StoreError> {
        let mut conn = self.backend.conn().await?;
        crate::directory::user_key_by_id(&mut conn, self.dialect(), key_id).await
    }

    async fn sealed_keys(&self, document_id: &str) -> Result<Vec<SealedKey>, StoreError> {
        let mut conn = self.backend.conn().await?;
        crate::directory::sealed_keys(&mut conn, self.dialect(), document_id).await
    }
}

const JOB_COLS: [Col; 7] = [
    Col::Str,
    Col::Str,
    Col::Str,
    Col::OptStr,
    Col::OptStr,
    Col::I64,
    Col::I64,
];

fn job_from(r: Row) -> Result<ExportJob, StoreError> {
    Ok(ExportJob {
        id: r.string(0)?,
        state: r.string(1)?,
        request: r.string(2)?,
        output: r.opt_string(3)?,
        error: r.opt_string(4)?,
        created: r.i64(5)?,
        updated: r.i64(6)?,
    })
}

/// A write transaction. Index rows are buffered and written in batches at commit (or before a
/// search inside the transaction), which keeps bundle imports fast.
struct SqlTx<B: Backend> {
    tx: B::Tx,
    dialect: Dialect,
    /// The store's audit head cache.
    heads: crate::audit_log::SharedHeadCache,
    /// The clock's time when the transaction began (for conditional matches' `ap`).
    now: i64,
    /// Index rows waiting for the next flush.
    pending: Vec<(i64, String, IndexRow)>,
    /// New resources waiting for the next flush, written as multi-row inserts.
    creates: Vec<NewVersion>,
    /// `(type, id)` of the buffered creates.
    created: std::collections::HashSet<(String, String)>,
    /// Audit entries of this transaction, written in batches before commit.
    audit: Vec<AuditEntry>,
    /// Heads read ahead by `prefetch_heads` (`None`: no such resource).
    known_heads: std::collections::HashMap<(String, String), Option<VersionHead>>,
    /// Whether the trust graph or the consents changed: the policy generation is raised
    /// before commit.
    policy_changed: bool,
    /// Whether a consent row went or came (the consent generation rises too).
    consents_changed: bool,
}

/// The `INSERT INTO resource_versions` column list.
const VERSION_INSERT: &str = "INSERT INTO resource_versions (rid, res_type, res_id, version, last_updated, deleted, body) VALUES ";

/// Appends one `resource_versions` row's values, consuming the body.
fn push_version_row(sql: &mut Sql, rid: i64, v: &NewVersion, body: Vec<u8>) {
    sql.push("(").int(rid).push(", ");
    push_version_cells(sql, v, body);
    sql.push(")");
}

/// Appends a version's `res_type, res_id, version, last_updated, deleted, body` values.
fn push_version_cells(sql: &mut Sql, v: &NewVersion, body: Vec<u8>) {
    sql.str(&v.resource_type)
        .push(", ")
        .str(&v.id)
        .push(", ")
        .int(v.version)
        .push(", ")
        .int(v.last_updated)
        .push(", ")
        .int(i64::from(v.deleted))
        .push(", ")
        .bind(Arg::Bytes(body));
}

pub(crate) const INDEX_TABLES: [&str; 6] = [
    "idx_string",
    "idx_token",
    "idx_date",
    "idx_quantity",
    "idx_reference",
    "idx_uri",
];

fn table_of(v: &IndexValue) -> usize {
    match v {
        IndexValue::String { .. } => 0,
        IndexValue::Token { .. } => 1,
        IndexValue::Date { .. } => 2,
        IndexValue::Quantity { .. } => 3,
        IndexValue::Reference { .. } => 4,
        IndexValue::Uri { .. } => 5,
    }
}

fn push_index_values(sql: &mut Sql, rid: i64, rt: &str, row: &IndexRow) {
    sql.push("(")
        .int(rid)
        .push(", ")
        .str(rt)
        .push(", ")
        .str(&row.param)
        .push(", ")
        .int(i64::from(row.group));
    push_index_value_cells(sql, &row.value);
    sql.push(")");
}

/// Appends `, v1, v2...`: an index row's value columns, in [`INDEX_VALUE_COLUMNS`]' order.
fn push_index_value_cells(sql: &mut Sql, value: &IndexValue) {
    match value {
        IndexValue::String { norm, exact } => {
            sql.push(", ").str(norm).push(", ").str(exact);
        }
        IndexValue::Token { system, code, text } => {
            sql.push(", ")
                .bind(Arg::OptStr(system.clone()))
                .push(", ")
                .bind(Arg::OptStr(code.clone()))
                .push(", ")
                .bind(Arg::OptStr(text.clone()));
        }
        IndexValue::Date { lo, hi } => {
            sql.push(", ").int(*lo).push(", ").int(*hi);
        }
        IndexValue::Quantity {
            lo,
            hi,
            system,
            code,
        } => {
            sql.push(", ")
                .float(*lo)
                .push(", ")
                .float(*hi)
                .push(", ")
                .bind(Arg::OptStr(system.clone()))
                .push(", ")
                .bind(Arg::OptStr(code.clone()));
        }
        IndexValue::Reference {
            target_type,
            target_id,
            url,
            identifier_system,
            identifier_value,
        } => {
            sql.push(", ")
                .bind(Arg::OptStr(target_type.clone()))
                .push(", ")
                .bind(Arg::OptStr(target_id.clone()))
                .push(", ")
                .bind(Arg::OptStr(url.clone()));
            sql.push(", ")
                .bind(Arg::OptStr(identifier_system.clone()))
                .push(", ")
                .bind(Arg::OptStr(identifier_value.clone()));
        }
        IndexValue::Uri { uri } => {
            sql.push(", ").str(uri);
        }
    }
}

const INDEX_COLUMNS: [&str; 6] = [
    "(rid, res_type, param, grp, norm, exact)",
    "(rid, res_type, param, grp, system, code, text)",
    "(rid, res_type, param, grp, lo, hi)",
    "(rid, res_type, param, grp, lo, hi, system, code)",
    "(rid, res_type, param, grp, target_type, target_id, url, ident_system, ident_value)",
    "(rid, res_type, param, grp, uri)",
];

/// Each index table's value columns (its columns after `rid, res_type, param, grp`).
const INDEX_VALUE_COLUMNS: [&str; 6] = [
    "norm, exact",
    "system, code, text",
    "lo, hi",
    "lo, hi, system, code",
    "target_type, target_id, url, ident_system, ident_value",
    "uri",
];

/// The most creates [`SqlTx::flush_at_once`] writes in its one statement.
const AT_ONCE_CREATES: usize = 8;

/// The most index rows [`SqlTx::flush_at_once`] writes in its one statement.
const AT_ONCE_ROWS: usize = 128;

/// Deletes a resource's index rows from every index table.
async fn delete_index_rows(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    rid: i64,
) -> Result<(), StoreError> {
    for table in INDEX_TABLES {
        let mut del = Sql::new(d, &format!("DELETE FROM {table} WHERE rid = "));
        del.int(rid);
        tx.execute(del).await?;
    }
    Ok(())
}

/// Resources per multi-row insert. Fixed, so the statements (and prepared-statement cache
/// entries) stay few.
const CHUNK: usize = 64;

impl<B: Backend> SqlTx<B> {
    /// Writes buffered creates, then buffered index rows (but for the parameters search answers
    /// from `resources`, [`crate::search_sql::from_resources`]).
    async fn flush(&mut self) -> Result<(), StoreError> {
        self.flush_creates().await?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        for (t, table) in INDEX_TABLES.iter().enumerate() {
            let rows: Vec<&(i64, String, IndexRow)> = pending
                .iter()
                .filter(|(_, _, r)| {
                    table_of(&r.value) == t && crate::search_sql::from_resources(&r.param).is_none()
                })
                .collect();
            for chunk in rows.chunks(CHUNK) {
                let mut sql = Sql::new(
                    self.dialect,
                    &format!("INSERT INTO {table} {} VALUES ", INDEX_COLUMNS[t]),
                );
                for (i, (rid, rt, row)) in chunk.iter().enumerate() {
                    if i > 0 {
                        sql.push(", ");
                    }
                    push_index_values(&mut sql, *rid, rt, row);
                }
                self.tx.execute(sql).await?;
            }
        }
        Ok(())
    }

    /// PostgreSQL, at commit: the buffered creates, their versions and every buffered index
    /// row in one statement of data-modifying `WITH` parts, one round trip where
    /// [`Self::flush`] makes one per table (a booking's two creates were six statements). A
    /// create's index rows find its new `rid` by joining the `resources` rows the statement
    /// inserts. False, with nothing written, for a larger batch: a statement's text follows
    /// its batch's shape, and a new text costs PostgreSQL a parse and a plan (and sqlx a
    /// round trip to prepare it), so only the small writes whose shapes recur (a create, a
    /// booking, an HL7 message) take this path. An import took it for its transactions'
    /// flushes and ran at 0.65 of its speed; its batches keep the statement per table,
    /// whose fixed shapes stay prepared.
    async fn flush_at_once(&mut self) -> Result<bool, StoreError> {
        let create_rows: usize = self.creates.iter().map(|v| v.index.len()).sum();
        if self.creates.len() > AT_ONCE_CREATES || create_rows + self.pending.len() > AT_ONCE_ROWS {
            return Ok(false);
        }
        if self.creates.is_empty() && self.pending.is_empty() {
            return Ok(true);
        }
        let mut creates = std::mem::take(&mut self.creates);
        self.created.clear();
        let pending = std::mem::take(&mut self.pending);
        let mut sql = Sql::new(self.dialect, "WITH ");
        let mut parts = 0;
        if !creates.is_empty() {
            sql.push("c (res_type, res_id, version, last_updated, deleted, body) AS (VALUES ");
            for (i, v) in creates.iter_mut().enumerate() {
                sql.push(if i > 0 { ", (" } else { "(" });
                let body = std::mem::take(&mut v.body);
                push_version_cells(&mut sql, v, body);
                sql.push(")");
            }
            sql.push(
                "), r AS (INSERT INTO resources (res_type, res_id, version, last_updated, deleted) \
                 SELECT res_type, res_id, version, last_updated, deleted FROM c \
                 RETURNING rid, res_type, res_id), \
                 v AS (INSERT INTO resource_versions (rid, res_type, res_id, version, last_updated, deleted, body) \
                 SELECT r.rid, c.res_type, c.res_id, c.version, c.last_updated, c.deleted, c.body \
                 FROM c JOIN r ON r.res_type = c.res_type AND r.res_id = c.res_id)",
            );
            parts += 1;
        }
        // A create's rows carry its id (and no rid yet); an updated resource's carry its rid.
        let rows: Vec<(Option<i64>, Option<&str>, &str, &IndexRow)> = creates
            .iter()
            .flat_map(|v| {
                v.index
                    .iter()
                    .map(|row| (None, Some(v.id.as_str()), v.resource_type.as_str(), row))
            })
            .chain(
                pending
                    .iter()
                    .map(|(rid, rt, row)| (Some(*rid), None, rt.as_str(), row)),
            )
            .filter(|(_, _, _, row)| crate::search_sql::from_resources(&row.param).is_none())
            .collect();
        for (t, table) in INDEX_TABLES.iter().enumerate() {
            let mut of_table = rows.iter().filter(|r| table_of(&r.3.value) == t).peekable();
            if of_table.peek().is_none() {
                continue;
            }
            let columns = INDEX_VALUE_COLUMNS[t];
            sql.push(if parts > 0 { ", " } else { "" }).push(&format!(
                "i{t} AS (INSERT INTO {table} (rid, res_type, param, grp, {columns}) SELECT {}, \
                 x.res_type, x.param, x.grp, {} FROM (VALUES ",
                if creates.is_empty() {
                    "x.rid"
                } else {
                    "COALESCE(x.rid, r.rid)"
                },
                columns
                    .split(", ")
                    .map(|c| format!("x.{c}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
            for (i, (rid, id, rt, row)) in of_table.enumerate() {
                sql.push(if i > 0 { ", (" } else { "(" })
                    .bind(Arg::OptI64(*rid))
                    .push(", ")
                    .bind(Arg::OptStr(id.map(str::to_string)))
                    .push(", ")
                    .str(rt)
                    .push(", ")
                    .str(&row.param)
                    .push(", ")
                    .int(i64::from(row.group));
                push_index_value_cells(&mut sql, &row.value);
                sql.push(")");
            }
            sql.push(&format!(
                ") AS x (rid, res_id, res_type, param, grp, {columns}){})",
                if creates.is_empty() {
                    ""
                } else {
                    " LEFT JOIN r ON x.rid IS NULL AND r.res_type = x.res_type AND r.res_id = x.res_id"
                }
            ));
            parts += 1;
        }
        sql.push(if creates.is_empty() {
            " SELECT CAST(0 AS BIGINT)"
        } else {
            " SELECT count(*) FROM r"
        });
        let inserted = self.tx.fetch(sql, &[Col::I64]).await?;
        let inserted = inserted.first().map(|r| r.i64(0)).transpose()?;
        if !creates.is_empty() && inserted != i64::try_from(creates.len()).ok() {
            return Err(StoreError::Conflict);
        }
        Ok(true)
    }

    /// Inserts buffered new resources: current rows (returning their rids), then version rows.
    async fn flush_creates(&mut self) -> Result<(), StoreError> {
        if self.creates.is_empty() {
            return Ok(());
        }
        let mut creates = std::mem::take(&mut self.creates);
        self.created.clear();
        while !creates.is_empty() {
            let rest = creates.split_off(creates.len().min(CHUNK));
            let chunk = std::mem::replace(&mut creates, rest);
            let mut sql = Sql::new(
                self.dialect,
                "INSERT INTO resources (res_type, res_id, version, last_updated, deleted) VALUES ",
            );
            for (i, v) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.push("(")
                    .str(&v.resource_type)
                    .push(", ")
                    .str(&v.id)
                    .push(", ")
                    .int(v.version)
                    .push(", ")
                    .int(v.last_updated)
                    .push(", ")
                    .int(i64::from(v.deleted))
                    .push(")");
            }
            sql.push(" RETURNING rid, res_type, res_id");
            let rows = self.tx.fetch(sql, &[Col::I64, Col::Str, Col::Str]).await?;
            let mut rids = std::collections::HashMap::with_capacity(rows.len());
            for r in &rows {
                rids.insert((r.string(1)?, r.string(2)?), r.i64(0)?);
            }
            let mut sql = Sql::new(self.dialect, VERSION_INSERT);
            for (i, mut v) in chunk.into_iter().enumerate() {
                let rid = *rids
                    .get(&(v.resource_type.clone(), v.id.clone()))
                    .ok_or(StoreError::Conflict)?;
                if i > 0 {
                    sql.push(", ");
                }
                let body = std::mem::take(&mut v.body);
                push_version_row(&mut sql, rid, &v, body);
                let rt = v.resource_type;
                self.pending
                    .extend(v.index.into_iter().map(|row| (rid, rt.clone(), row)));
            }
            self.tx.execute(sql).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl<B: Backend> ResourceTx for SqlTx<B> {
    async fn head(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<VersionHead>, StoreError> {
        if self
            .created
            .contains(&(resource_type.to_string(), id.to_string()))
        {
            return Ok(Some(VersionHead {
                version: 1,
                deleted: false,
            }));
        }
        if let Some(known) = self
            .known_heads
            .remove(&(resource_type.to_string(), id.to_string()))
        {
            return Ok(known);
        }
        let mut sql = Sql::new(
            self.dialect,
            "SELECT version, deleted FROM resources WHERE res_type = ",
        );
        sql.str(resource_type)
            .push(" AND res_id = ")
            .str(id)
            .push(self.dialect.for_update());
        let rows = self.tx.fetch(sql, &[Col::I64, Col::I64]).await?;
        rows.first()
            .map(|r| {
                Ok(VersionHead {
                    version: r.i64(0)?,
                    deleted: r.i64(1)? != 0,
                })
            })
            .transpose()
    }

    async fn freshness(&mut self) -> Result<Freshness, StoreError> {
        self.flush().await?;
        let rows = self
            .tx
            .fetch(
                Sql::new(
                    self.dialect,
                    "SELECT (SELECT generation FROM policy_generation WHERE id = 2), \
                     (SELECT COALESCE(MAX(last_updated), 0) FROM resource_versions)",
                ),
                &[Col::OptI64, Col::OptI64],
            )
            .await?;
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Invalid("no freshness row".into()))?;
        Ok(Freshness {
            // A missing generation row is damage, as in `consent_generation`.
            consent_generation: row.opt_i64(0)?.ok_or_else(|| {
                StoreError::Invalid("the policy generation row is missing".into())
            })?,
            latest_stamp: row.opt_i64(1)?.unwrap_or(0),
        })
    }

    async fn lock_condition(&mut self, key: &str) -> Result<(), StoreError> {
        match self.dialect {
            // SQLite already runs one writer at a time.
            Dialect::Sqlite => Ok(()),
            Dialect::Postgres => {
                let mut sql = Sql::new(
                    self.dialect,
                    "SELECT pg_advisory_xact_lock(hashtextextended(",
                );
                sql.str(key).push(", 0))");
                self.tx.execute(sql).await.map(|_| ())
            }
        }
    }

    async fn prefetch_heads(&mut self, keys: &[(String, String)]) -> Result<(), StoreError> {
        for chunk in keys.chunks(CHUNK) {
            let mut sql = Sql::new(
                self.dialect,
                "SELECT res_type, res_id, version, deleted FROM resources WHERE ",
            );
            for (i, (t, id)) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                sql.push("(res_type = ")
                    .str(t)
                    .push(" AND res_id = ")
                    .str(id)
                    .push(")");
            }
            sql.push(self.dialect.for_update());
            for (t, id) in chunk {
                self.known_heads.insert((t.clone(), id.clone()), None);
            }
            for r in self
                .tx
                .fetch(sql, &[Col::Str, Col::Str, Col::I64, Col::I64])
                .await?
            {
                let head = VersionHead {
                    version: r.i64(2)?,
                    deleted: r.i64(3)? != 0,
                };
                self.known_heads
                    .insert((r.string(0)?, r.string(1)?), Some(head));
            }
        }
        Ok(())
    }

    async fn search_ids(
        &mut self,
        query: &SearchQuery,
        limit: u32,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.flush().await?;
        let page = PageRequest {
            count: limit,
            cursor: None,
            with_total: false,
            snapshot: false,
        };
        Ok(
            run_search(&mut self.tx, self.dialect, query, &page, self.now)
                .await?
                .matches,
        )
    }

    async fn put(&mut self, v: NewVersion) -> Result<(), StoreError> {
        let d = self.dialect;
        if v.version == 1 {
            let key = (v.resource_type.clone(), v.id.clone());
            if !self.created.insert(key) {
                return Err(StoreError::Conflict);
            }
            self.creates.push(v);
            if self.creates.len() >= 4 * CHUNK {
                self.flush_creates().await?;
            }
            return Ok(());
        }
        // An update of a resource created earlier in this transaction needs its row first.
        self.flush().await?;
        self.known_heads
            .remove(&(v.resource_type.clone(), v.id.clone()));
        // Guarded by the previous version, so a lost race is a conflict, never an overwrite.
        let mut sql = Sql::new(d, "UPDATE resources SET version = ");
        sql.int(v.version)
            .push(", last_updated = ")
            .int(v.last_updated)
            .push(", deleted = ")
            .int(i64::from(v.deleted));
        sql.push(" WHERE res_type = ")
            .str(&v.resource_type)
            .push(" AND res_id = ")
            .str(&v.id)
            .push(" AND version = ")
            .int(v.version - 1)
            .push(" RETURNING rid");
        let rid = self
            .tx
            .fetch(sql, &[Col::I64])
            .await?
            .first()
            .map(|r| r.i64(0))
            .transpose()?
            .ok_or(StoreError::Conflict)?;
        delete_index_rows(&mut self.tx, d, rid).await?;
        let mut v = v;
        let body = std::mem::take(&mut v.body);
        let mut sql = Sql::new(d, VERSION_INSERT);
        push_version_row(&mut sql, rid, &v, body);
        self.tx.execute(sql).await?;
        let rt = v.resource_type;
        self.pending
            .extend(v.index.into_iter().map(|row| (rid, rt.clone(), row)));
        Ok(())
    }

    async fn append_audit(&mut self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.audit.push(entry.clone());
        Ok(())
    }

    async fn rewrite_body(&mut self, seq: i64, body: Vec<u8>) -> Result<(), StoreError> {
        let mut sql = Sql::new(self.dialect, "UPDATE resource_versions SET body = ");
        sql.bind(Arg::Bytes(body)).push(" WHERE seq = ").int(seq);
        self.tx.execute(sql).await.map(|_| ())
    }

    async fn reindex_current(
        &mut self,
        resource_type: &str,
        id: &str,
        version: i64,
        index: Vec<IndexRow>,
    ) -> Result<bool, StoreError> {
        self.flush().await?;
        let mut sql = Sql::new(self.dialect, "SELECT rid FROM resources WHERE res_type = ");
        sql.str(resource_type)
            .push(" AND res_id = ")
            .str(id)
            .push(" AND version = ")
            .int(version)
            .push(" AND deleted = 0")
            .push(self.dialect.for_update());
        let Some(rid) = self
            .tx
            .fetch(sql, &[Col::I64])
            .await?
            .first()
            .map(|r| r.i64(0))
            .transpose()?
        else {
            return Ok(false);
        };
        delete_index_rows(&mut self.tx, self.dialect, rid).await?;
        let rt = resource_type.to_string();
        self.pending
            .extend(index.into_iter().map(|row| (rid, rt.clone(), row)));
        Ok(true)
    }
}

#[async_trait]
impl<B: Backend> TrustTx for SqlTx<B> {
    async fn replace_policy_facts(
        &mut self,
        source: &str,
        edges: &[Edge],
        consent: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let changed =
            crate::policy::replace_facts(&mut self.tx, self.dialect, source, edges, consent)
                .await?;
        self.policy_changed |= changed.any;
        self.consents_changed |= changed.consents;
        Ok(())
    }

    async fn add_policy_facts(
        &mut self,
        source: &str,
        edges: &[Edge],
        consent: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let changed =
            crate::policy::insert_facts(&mut self.tx, self.dialect, source, edges, consent).await?;
        self.policy_changed |= changed.any;
        self.consents_changed |= changed.consents;
        Ok(())
    }

    async fn rewrite_consent(&mut self, source: &str, body: &str) -> Result<(), StoreError> {
        let mut sql = Sql::new(self.dialect, "UPDATE policy_consents SET body = ");
        sql.str(body).push(" WHERE source = ").str(source);
        self.tx.execute(sql).await.map(|_| ())
    }
}

#[async_trait]
impl<B: Backend> NotificationTx for SqlTx<B> {
    async fn notify(&mut self, notification: &Notification) -> Result<(), StoreError> {
        crate::policy::insert_notification(&mut self.tx, self.dialect, notification).await
    }

    async fn queue_notification(
        &mut self,
        row: &medmesh_store::NotificationOutboxRow,
    ) -> Result<bool, StoreError> {
        crate::notify::enqueue(&mut self.tx, self.dialect, row).await
    }

    async fn withdraw_notifications(
        &mut self,
        account: &str,
        key_prefix: &str,
    ) -> Result<u64, StoreError> {
        crate::notify::withdraw(&mut self.tx, self.dialect, account, key_prefix).await
    }
}

#[async_trait]
impl<B: Backend> KeyDirectoryTx for SqlTx<B> {
    async fn put_user_key(&mut self, key: &UserKey) -> Result<(), StoreError> {
        crate::directory::put_user_key(&mut self.tx, self.dialect, key).await
    }

    async fn revoke_user_key(
        &mut self,
        owner: &str,
        key_id: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        crate::directory::revoke_user_key(&mut self.tx, self.dialect, owner, key_id, now).await
    }

    async fn put_sealed_key(&mut self, key: &SealedKey) -> Result<(), StoreError> {
        crate::directory::put_sealed_key(&mut self.tx, self.dialect, key).await
    }

    async fn delete_sealed_key(
        &mut self,
        document_id: &str,
        recipient_key_id: &str,
    ) -> Result<bool, StoreError> {
        crate::directory::delete_sealed_key(
            &mut self.tx,
            self.dialect,
            document_id,
            recipient_key_id,
        )
        .await
    }
}

#[async_trait]
impl<B: Backend> DataKeyTx for SqlTx<B> {
    async fn active_data_key(
        &mut self,
        owner: &str,
    ) -> Result<Option<WrappedKeyRecord>, StoreError> {
        crate::data_keys::active_key_in(&mut self.tx, self.dialect, owner).await
    }

    async fn insert_data_key(&mut self, key: &WrappedKeyRecord) -> Result<(), StoreError> {
        crate::data_keys::insert_key_in(&mut self.tx, self.dialect, key).await
    }

    async fn destroy_data_keys(&mut self, owner: &str, now: i64) -> Result<u64, StoreError> {
        crate::data_keys::destroy_in(&mut self.tx, self.dialect, owner, now).await
    }

    async fn key_job_cursor(&mut self, job: &str) -> Result<Option<(i64, String)>, StoreError> {
        crate::data_keys::job_cursor_in(&mut self.tx, self.dialect, job).await
    }
}

#[async_trait]
impl<B: Backend> BookingTx for SqlTx<B> {
    async fn claim_time(
        &mut self,
        holder: &str,
        claims: &[TimeClaim],
        now: i64,
    ) -> Result<bool, StoreError> {
        crate::booking::claim_time(&mut self.tx, self.dialect, holder, claims, now).await
    }

    async fn confirm_time(
        &mut self,
        holder: &str,
        expires: Option<i64>,
        now: i64,
    ) -> Result<bool, StoreError> {
        crate::booking::confirm_time(&mut self.tx, self.dialect, holder, expires, now).await
    }

    async fn release_time(&mut self, holder: &str) -> Result<u64, StoreError> {
        crate::booking::release_time(&mut self.tx, self.dialect, holder).await
    }
}

#[async_trait]
impl<B: Backend> medmesh_store::Hl7Tx for SqlTx<B> {
    async fn insert_hl7_message(
        &mut self,
        row: &medmesh_store::Hl7MessageRow,
    ) -> Result<bool, StoreError> {
        let sql = crate::hl7::insert_message(self.dialect, row);
        Ok(self.tx.execute(sql).await? == 1)
    }

    async fn update_hl7_message(
        &mut self,
        row: &medmesh_store::Hl7MessageRow,
    ) -> Result<(), StoreError> {
        let sql = crate::hl7::update_message(self.dialect, row);
        self.tx.execute(sql).await.map(|_| ())
    }
}

#[async_trait]
impl<B: Backend> RecordTx for SqlTx<B> {
    async fn rollback(self: Box<Self>) -> Result<(), StoreError> {
        B::rollback(self.tx).await
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        if !(self.dialect == Dialect::Postgres && self.flush_at_once().await?) {
            self.flush().await?;
        }
        // The audit entries commit in the same transaction as the data they describe.
        // Last, so the head row (which serializes appends) is locked only briefly; the policy
        // generation is raised beside it (its row too is one that every policy-changing
        // writer updates), in the same statement where the dialect allows.
        let entries = std::mem::take(&mut self.audit);
        let raise = self.policy_changed.then_some(self.consents_changed);
        crate::audit_log::append_leaves(&mut self.tx, self.dialect, entries, &self.heads, raise)
            .await?;
        B::commit(self.tx).await
    }
}
