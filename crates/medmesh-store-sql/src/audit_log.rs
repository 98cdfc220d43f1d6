//! The audit log's rows: Merkle leaves with the nodes they complete, the writer's head,
//! checkpoints and the log key. Appends run inside the caller's transaction, so a write's
//! entry commits with the write; the head row lock serializes appends across replicas.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use medmesh_audit::AuditEntry;
use medmesh_audit::chain::{Chainer, PatientHead};
use medmesh_audit::map::{MapChanges, MapKey, MapNodeId};
use medmesh_audit::merkle::{Frontier, Hash, NodeId, home_of, leaf_hash};
use medmesh_store::{
    AuditLogStore, DerivedRow, LeafPage, LeafPages, LogHead, LogKeyRecord, LoggedEntry, MapHead,
    PatientRow, PatientRowPage, PatientRowPages, RowPages, ScannedLeaf, StoreError,
    StoredCheckpoint, StoredCosignature,
};

use crate::exec::Exec;
use crate::sql::{Arg, Col, Dialect, Row, Sql};
use crate::store::{Backend, SqlStore};

/// Rows per multi-row insert (well under both drivers' bind limits).
const INSERT_CHUNK: usize = 200;

fn corrupt(what: &str) -> StoreError {
    StoreError::Invalid(format!("audit log: {what}"))
}

fn u64_of(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt("negative index"))
}

fn i64_of(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| corrupt("index out of range"))
}

/// The patients' heads this process's last append left, with the log's state it left (size
/// and peaks). The next append trusts them only when it reads that same state under the
/// head row's lock: then no other append came in between (another replica's would have moved
/// the peaks, and so would a rolled-back one of this process, whose state never committed).
/// It saves reading, on every batch, the heads of patients the writer already knows: audited
/// reads of one record append a batch of that patient's entries after another.
#[derive(Debug, Default)]
pub(crate) struct HeadCache {
    state: Option<(u64, Vec<u8>)>,
    heads: HashMap<String, PatientHead>,
}

/// The most heads kept; past it the cache starts again empty.
const HEAD_CACHE_MAX: usize = 10_000;

/// A store's head cache, shared by its transactions.
pub(crate) type SharedHeadCache = Arc<std::sync::Mutex<HeadCache>>;

/// Appends entries as leaves, inside `tx`: locks the head, links each entry into its
/// patients' chains (with the heads `cache` holds, or read), hashes, inserts, moves the head.
///
/// `raise` raises the policy generation too (`Some(consents)`, as
/// [`crate::policy::raise_generation`]). On PostgreSQL a batch that fits one statement is
/// written with one statement (the rows, the patients' heads, the log's head and the
/// generation), so the head's lock, which every write of the node waits for, is held for
/// three round trips instead of seven (bench/README.md, "Bookings on PostgreSQL").
// The row functions are passed through closures: a closure takes the rows' lifetime from
// the bound it is passed to, which the function items alone do not satisfy (tried: explicit
// lifetimes on the functions meet a limit of the type checker and demand 'static).
#[allow(clippy::redundant_closure)]
pub(crate) async fn append_leaves(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    mut entries: Vec<AuditEntry>,
    cache: &SharedHeadCache,
    raise: Option<bool>,
) -> Result<(), StoreError> {
    if entries.is_empty() {
        if let Some(consents) = raise {
            crate::policy::raise_generation(tx, d, consents).await?;
        }
        return Ok(());
    }
    let rows = tx
        .fetch(
            Sql::new(
                d,
                &format!(
                    "SELECT size, peaks, (SELECT size FROM audit_chain_start WHERE id = 1) FROM audit_head WHERE id = 1{}",
                    d.for_update()
                ),
            ),
            &[Col::I64, Col::Bytes, Col::I64],
        )
        .await?;
    let mut row = rows.into_iter().next().ok_or_else(|| corrupt("no head"))?;
    let size = u64_of(row.i64(0)?)?;
    let unchained = row.i64(2)? > 0;
    let peaks = row.take_bytes(1)?;
    let mut frontier = Frontier::from_bytes(size, &peaks).map_err(|_| corrupt("bad head"))?;
    // Read under the head's lock: no other append can move a patient's head meanwhile.
    let batch_patients = Chainer::patients_of(&entries);
    let known: HashMap<String, PatientHead> = {
        let mut c = cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if c.state.as_ref() == Some(&(size, peaks)) {
            batch_patients
                .iter()
                .filter_map(|p| c.heads.get(p).map(|h| (p.clone(), *h)))
                .collect()
        } else {
            c.state = None;
            c.heads.clear();
            HashMap::new()
        }
    };
    let unknown: Vec<String> = batch_patients
        .iter()
        .filter(|p| !known.contains_key(*p))
        .cloned()
        .collect();
    let mut heads = if unknown.is_empty() {
        HashMap::new()
    } else {
        patient_heads(tx, d, &unknown, unchained).await?
    };
    heads.extend(known);
    let mut chainer = Chainer::new(heads);
    let mut leaves = Vec::with_capacity(entries.len());
    let mut patients = Vec::new();
    for e in &mut entries {
        let index = frontier.size();
        let (bytes, hash) = chainer.link(e, index);
        let nodes = frontier.push(hash).concat();
        leaves.push((index, bytes, nodes));
    }
    for (e, (index, _, _)) in entries.iter().zip(&leaves) {
        for p in &e.patients {
            patients.push((p.as_str(), *index));
        }
    }
    let rows: Vec<_> = leaves.iter().zip(&entries).collect();
    patients.sort_unstable();
    let moved: HashMap<String, PatientHead> = batch_patients
        .into_iter()
        .filter_map(|p| chainer.head(&p).map(|h| (p, h)))
        .collect();
    let mut heads: Vec<(&String, &PatientHead)> = moved.iter().collect();
    heads.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let size = i64_of(frontier.size())?;
    let fits = [rows.len(), patients.len(), heads.len()]
        .iter()
        .all(|n| *n <= INSERT_CHUNK);
    if d == Dialect::Postgres && fits {
        // One data-modifying statement; each part touches a table of its own, so none needs
        // to see another's rows.
        let mut sql = Sql::new(
            d,
            &format!("WITH l AS (INSERT INTO {AUDIT_LOG_COLUMNS} VALUES "),
        );
        push_rows(&mut sql, &rows, |r| log_row(r))?;
        sql.push(")");
        if !patients.is_empty() {
            sql.push(&format!(
                ", p AS (INSERT INTO {AUDIT_PATIENT_COLUMNS} VALUES "
            ));
            push_rows(&mut sql, &patients, |r| patient_row(r))?;
            sql.push(")");
        }
        if !heads.is_empty() {
            sql.push(&format!(", c AS (INSERT INTO {CHAIN_HEAD_COLUMNS} VALUES "));
            push_rows(&mut sql, &heads, |r| head_row(r))?;
            sql.push(CHAIN_HEAD_UPSERT).push(")");
        }
        let raised_rows = match raise {
            Some(consents) => {
                let (update, n) = crate::policy::raise_statement(consents);
                sql.push(&format!(", g AS ({update} RETURNING 1)"));
                n
            }
            None => 0,
        };
        sql.push(", h AS (");
        push_head_update(&mut sql, size, &frontier);
        sql.push(" RETURNING 1) SELECT (SELECT count(*) FROM h), ")
            .push(if raise.is_some() {
                "(SELECT count(*) FROM g)"
            } else {
                "CAST(0 AS BIGINT)"
            });
        let counts = tx.fetch(sql, &[Col::I64, Col::I64]).await?;
        let counts = counts.first().ok_or_else(|| corrupt("no head"))?;
        if counts.i64(0)? != 1 {
            return Err(corrupt("no head"));
        }
        crate::policy::check_raised(counts.i64(1)?, raised_rows)?;
    } else {
        if let Some(consents) = raise {
            crate::policy::raise_generation(tx, d, consents).await?;
        }
        insert_rows(tx, d, AUDIT_LOG_COLUMNS, "", &rows, |r| log_row(r)).await?;
        insert_rows(tx, d, AUDIT_PATIENT_COLUMNS, "", &patients, |r| {
            patient_row(r)
        })
        .await?;
        insert_rows(tx, d, CHAIN_HEAD_COLUMNS, CHAIN_HEAD_UPSERT, &heads, |r| {
            head_row(r)
        })
        .await?;
        let mut sql = Sql::new(d, "");
        push_head_update(&mut sql, size, &frontier);
        tx.execute(sql).await?;
    }
    // Kept before the commit: if it fails, the committed state is not this one, and the next
    // append finds the cache stale.
    let mut c = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if c.heads.len() + moved.len() > HEAD_CACHE_MAX {
        c.heads.clear();
    }
    c.heads.extend(moved);
    c.state = Some((frontier.size(), frontier.to_bytes()));
    Ok(())
}

/// One value of a row that [`insert_rows`] writes.
enum Val<'a> {
    Int(i64),
    Str(&'a str),
    Bytes(Vec<u8>),
}

/// Writes `rows` with one multi-row `INSERT INTO {into} VALUES ... {tail}` per
/// [`INSERT_CHUNK`] rows; `values` gives a row's values in the columns' order.
async fn insert_rows<T>(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    into: &str,
    tail: &str,
    rows: &[T],
    values: impl Fn(&T) -> Result<Vec<Val<'_>>, StoreError>,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut sql = Sql::new(d, &format!("INSERT INTO {into} VALUES "));
        push_rows(&mut sql, chunk, &values)?;
        sql.push(tail);
        tx.execute(sql).await?;
    }
    Ok(())
}

/// Appends the `UPDATE` that moves the log's head to `size` entries with `frontier`'s peaks.
fn push_head_update(sql: &mut Sql, size: i64, frontier: &Frontier) {
    sql.push("UPDATE audit_head SET size = ")
        .int(size)
        .push(", peaks = ")
        .bind(Arg::Bytes(frontier.to_bytes()))
        .push(" WHERE id = 1");
}

/// Appends `(v, ...), (v, ...)` for `rows` to `sql`.
fn push_rows<T>(
    sql: &mut Sql,
    rows: &[T],
    values: impl Fn(&T) -> Result<Vec<Val<'_>>, StoreError>,
) -> Result<(), StoreError> {
    for (i, row) in rows.iter().enumerate() {
        sql.push(if i > 0 { ", (" } else { "(" });
        for (j, v) in values(row)?.into_iter().enumerate() {
            if j > 0 {
                sql.push(", ");
            }
            match v {
                Val::Int(n) => sql.int(n),
                Val::Str(t) => sql.str(t),
                Val::Bytes(b) => sql.bind(Arg::Bytes(b)),
            };
        }
        sql.push(")");
    }
    Ok(())
}

/// A leaf's row in `audit_log`.
fn log_row<'a>(
    ((index, bytes, nodes), e): &(&'a (u64, Vec<u8>, Vec<u8>), &'a AuditEntry),
) -> Result<Vec<Val<'a>>, StoreError> {
    Ok(vec![
        Val::Int(i64_of(*index)?),
        Val::Int(e.time_micros),
        Val::Str(&e.actor),
        Val::Bytes(bytes.clone()),
        Val::Bytes(nodes.clone()),
    ])
}

/// A patient's row in `audit_patient`.
fn patient_row<'a>((p, index): &(&'a str, u64)) -> Result<Vec<Val<'a>>, StoreError> {
    Ok(vec![Val::Str(p), Val::Int(i64_of(*index)?)])
}

/// A patient's chain head in `audit_chain_heads`.
fn head_row<'a>((p, h): &(&'a String, &'a PatientHead)) -> Result<Vec<Val<'a>>, StoreError> {
    Ok(vec![
        Val::Str(p),
        Val::Int(i64_of(h.count)?),
        Val::Int(i64_of(h.index)?),
        Val::Bytes(h.hash.to_vec()),
    ])
}

/// The audit tables' columns as their inserts name them.
const AUDIT_LOG_COLUMNS: &str = "audit_log (leaf_index, time_micros, actor, entry, nodes)";
const AUDIT_PATIENT_COLUMNS: &str = "audit_patient (patient_id, leaf_index)";
const CHAIN_HEAD_COLUMNS: &str =
    "audit_chain_heads (patient_id, entry_count, last_index, last_hash)";
const CHAIN_HEAD_UPSERT: &str = " ON CONFLICT (patient_id) DO UPDATE SET entry_count = excluded.entry_count, last_index = excluded.last_index, last_hash = excluded.last_hash";

/// Patients per statement when reading heads (each is a subquery of its own).
const HEADS_CHUNK: usize = 100;

/// Each patient's newest entry: its index, hash and place in the patient's chain, from
/// `audit_chain_heads`. A patient without a row there has no entry yet, or, on a log with
/// entries from before the chains (`unchained`), only such entries: those are found through
/// `audit_patient` (one index probe per patient), and their place is counted.
async fn patient_heads(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    patients: &[String],
    unchained: bool,
) -> Result<HashMap<String, PatientHead>, StoreError> {
    let mut heads = HashMap::with_capacity(patients.len());
    for chunk in patients.chunks(LIST_CHUNK) {
        let mut sql = Sql::new(
            d,
            "SELECT patient_id, entry_count, last_index, last_hash FROM audit_chain_heads WHERE patient_id IN (",
        );
        sql.str_list(chunk).push(")");
        for mut r in tx
            .fetch(sql, &[Col::Str, Col::I64, Col::I64, Col::Bytes])
            .await?
        {
            heads.insert(
                r.take_string(0)?,
                PatientHead {
                    count: u64_of(r.i64(1)?)?,
                    index: u64_of(r.i64(2)?)?,
                    hash: hash_of(r.take_bytes(3)?)?,
                },
            );
        }
    }
    if !unchained {
        return Ok(heads);
    }
    let unknown: Vec<&String> = patients
        .iter()
        .filter(|p| !heads.contains_key(*p))
        .collect();
    for chunk in unknown.chunks(HEADS_CHUNK) {
        let mut sql = Sql::new(d, "");
        for (i, p) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(" UNION ALL ");
            }
            sql.push("SELECT p.patient_id, l.leaf_index, l.entry FROM audit_patient p JOIN audit_log l ON l.leaf_index = p.leaf_index WHERE p.patient_id = ")
                .str(p)
                .push(" AND p.leaf_index = (SELECT max(leaf_index) FROM audit_patient WHERE patient_id = ")
                .str(p)
                .push(")");
        }
        for mut r in tx.fetch(sql, &[Col::Str, Col::I64, Col::Bytes]).await? {
            let patient = r.take_string(0)?;
            let index = u64_of(r.i64(1)?)?;
            let bytes = r.take_bytes(2)?;
            let link = AuditEntry::from_leaf(&bytes)
                .ok()
                .and_then(|e| e.chain.into_iter().find(|l| l.patient == patient));
            let count = match link {
                Some(l) => l.seq,
                None => {
                    let mut sql =
                        Sql::new(d, "SELECT count(*) FROM audit_patient WHERE patient_id = ");
                    sql.str(&patient)
                        .push(" AND leaf_index <= ")
                        .int(i64_of(index)?);
                    let rows = tx.fetch(sql, &[Col::I64]).await?;
                    u64_of(rows.first().map_or(Ok(0), |r| r.i64(0))?)?
                }
            };
            heads.insert(
                patient,
                PatientHead {
                    count,
                    index,
                    hash: leaf_hash(&bytes),
                },
            );
        }
    }
    Ok(heads)
}

/// Items per `IN (...)` list.
const LIST_CHUNK: usize = 500;
/// Columns of a stored map head.
const MAP_HEAD_COLS: [Col; 4] = [Col::Bytes, Col::I64, Col::I64, Col::Bytes];
/// Columns of a stored map node.
const MAP_NODE_COLS: [Col; 3] = [Col::I64, Col::I64, Col::Bytes];

fn hash_of(bytes: Vec<u8>) -> Result<Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| corrupt("a stored hash is not 32 bytes"))
}

fn map_head_from(mut r: Row) -> Result<(MapKey, PatientHead), StoreError> {
    Ok((
        MapKey(hash_of(r.take_bytes(0)?)?),
        PatientHead {
            count: u64_of(r.i64(1)?)?,
            index: u64_of(r.i64(2)?)?,
            hash: hash_of(r.take_bytes(3)?)?,
        },
    ))
}

/// Columns of a stored chain head.
const CHAIN_HEAD_COLS: [Col; 4] = [Col::Str, Col::I64, Col::I64, Col::Bytes];

fn chain_head_from(mut r: Row) -> Result<(String, PatientHead), StoreError> {
    Ok((
        r.take_string(0)?,
        PatientHead {
            count: u64_of(r.i64(1)?)?,
            index: u64_of(r.i64(2)?)?,
            hash: hash_of(r.take_bytes(3)?)?,
        },
    ))
}

fn map_node_from(mut r: Row) -> Result<(MapNodeId, Hash), StoreError> {
    let level = u32::try_from(r.i64(0)?).map_err(|_| corrupt("bad map level"))?;
    Ok(((level, u64_of(r.i64(1)?)?), hash_of(r.take_bytes(2)?)?))
}

const ENTRY_COLS: [Col; 3] = [Col::I64, Col::Bytes, Col::Bytes];

fn entry_from(mut r: Row) -> Result<LoggedEntry, StoreError> {
    Ok(LoggedEntry {
        index: u64_of(r.i64(0)?)?,
        entry: r.take_bytes(1)?,
        nodes: r.take_bytes(2)?,
    })
}

/// Columns of a full pass over the leaves.
const LEAF_COLS: [Col; 5] = [Col::I64, Col::Bytes, Col::Bytes, Col::I64, Col::Str];
/// A pass over `audit_patient`, before any key condition.
const PATIENT_ROWS: &str = "SELECT leaf_index, patient_id FROM audit_patient";
/// A pass over the stored patient map's heads, before any key condition.
const MAP_HEAD_ROWS: &str =
    "SELECT map_key, entry_count, last_index, last_hash FROM audit_map_heads";
/// A pass over the stored patient map's nodes, before any key condition.
const MAP_NODE_ROWS: &str = "SELECT level, node_index, hash FROM audit_map_nodes";
/// A pass over the chain heads, before any key condition.
const CHAIN_HEAD_ROWS: &str =
    "SELECT patient_id, entry_count, last_index, last_hash FROM audit_chain_heads";
/// Columns of a pass over `audit_patient`.
const PATIENT_COLS: [Col; 2] = [Col::I64, Col::Str];
/// Rows per page when a pass pages through the pool.
const PASS_PAGE: i64 = 4096;
/// Pages read ahead of the caller when a pass pages through the pool.
const PASS_AHEAD: usize = 4;

/// A leaf read through the pool, before it is packed into its page.
struct PooledLeaf {
    index: u64,
    entry: Vec<u8>,
    nodes: Vec<u8>,
    time_micros: i64,
    actor: String,
}

fn leaf_from(mut r: Row) -> Result<PooledLeaf, StoreError> {
    Ok(PooledLeaf {
        index: u64_of(r.i64(0)?)?,
        entry: r.take_bytes(1)?,
        nodes: r.take_bytes(2)?,
        time_micros: r.i64(3)?,
        actor: r.take_string(4)?,
    })
}

/// A page read through the pool, packed.
fn leaf_page(leaves: Vec<PooledLeaf>) -> LeafPage {
    let mut page = LeafPage::with_capacity(leaves.len());
    for l in &leaves {
        page.push(ScannedLeaf {
            index: l.index,
            entry: &l.entry,
            nodes: &l.nodes,
            time_micros: l.time_micros,
            actor: l.actor.as_bytes(),
        });
    }
    page
}

/// A page of patient rows read through the pool, packed.
fn patient_row_page(rows: Vec<PatientRow>) -> PatientRowPage {
    let mut page = PatientRowPage::with_capacity(rows.len());
    for r in &rows {
        page.push(r.index, &r.patient_id);
    }
    page
}

fn patient_row_from(mut r: Row) -> Result<PatientRow, StoreError> {
    Ok(PatientRow {
        index: u64_of(r.i64(0)?)?,
        patient_id: r.take_string(1)?,
    })
}

/// Pages through the pool by key on a task of its own, reading ahead of the caller: `next`
/// makes the statement for the page after the last row (`None` first) and `key` reads a
/// row's key. Each page is its own short statement, so no statement timeout cuts a long pass.
fn paged<B: Backend, T: Send + 'static, K: Send + 'static>(
    backend: Arc<B>,
    cols: &'static [Col],
    next: impl Fn(Option<&K>) -> Result<Sql, StoreError> + Send + 'static,
    key: fn(&T) -> K,
    decode: fn(Row) -> Result<T, StoreError>,
) -> RowPages<T> {
    let (pages, received) = tokio::sync::mpsc::channel(PASS_AHEAD);
    tokio::spawn(async move {
        let mut after: Option<K> = None;
        loop {
            let sql = next(after.as_ref());
            let page = async {
                let sql = sql?;
                let mut conn = backend.conn().await?;
                conn.fetch(sql, cols)
                    .await?
                    .into_iter()
                    .map(decode)
                    .collect::<Result<Vec<T>, _>>()
            }
            .await;
            let last = match &page {
                Ok(rows) => rows.last().map(key),
                Err(_) => None,
            };
            let full = matches!(&page, Ok(rows) if rows.len() as i64 == PASS_PAGE);
            let empty = matches!(&page, Ok(rows) if rows.is_empty());
            if !empty && pages.send(page).await.is_err() {
                return;
            }
            match last {
                Some(k) if full => after = Some(k),
                _ => return,
            }
        }
    });
    crate::store::pages_of(received)
}

impl<B: Backend> SqlStore<B> {
    /// Moves the rows of the first log format (before the Merkle tree) into the tree, in
    /// their original order, in one transaction. Runs at open; a no-op once done.
    pub(crate) async fn upgrade_audit_v1(&self) -> Result<(), StoreError> {
        let mut tx = self.backend().begin().await?;
        let d = self.dialect();
        let rows = tx
            .fetch(
                Sql::new(
                    d,
                    "SELECT time_micros, operation_id, actor, action, resource_type, resource_ids, outcome, source_ip FROM audit_log_v1 ORDER BY seq",
                ),
                &[
                    Col::I64,
                    Col::Str,
                    Col::Str,
                    Col::Str,
                    Col::OptStr,
                    Col::Str,
                    Col::Str,
                    Col::OptStr,
                ],
            )
            .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut entries = Vec::with_capacity(rows.len());
        for r in rows {
            let outcome = match r.string(6)?.as_str() {
                "success" => medmesh_audit::Outcome::Success,
                "denied" => medmesh_audit::Outcome::Denied,
                _ => medmesh_audit::Outcome::Failed,
            };
            let mut e = AuditEntry::new(
                r.i64(0)?,
                &r.string(1)?,
                &r.string(2)?,
                &r.string(3)?,
                outcome,
            );
            e.resource_type = r.opt_string(4)?;
            e.resource_ids = serde_json::from_str(&r.string(5)?).unwrap_or_default();
            e.source_ip = r.opt_string(7)?;
            entries.push(e);
        }
        append_leaves(&mut tx, d, entries, &SharedHeadCache::default(), None).await?;
        tx.execute(Sql::new(d, "DELETE FROM audit_log_v1")).await?;
        B::commit(tx).await
    }
}

#[async_trait]
impl<B: Backend> AuditLogStore for SqlStore<B> {
    async fn log_head(&self) -> Result<LogHead, StoreError> {
        let mut conn = self.backend().conn().await?;
        let rows = conn
            .fetch(
                self.sql("SELECT size, peaks FROM audit_head WHERE id = 1"),
                &[Col::I64, Col::Bytes],
            )
            .await?;
        let mut row = rows.into_iter().next().ok_or_else(|| corrupt("no head"))?;
        Ok(LogHead {
            size: u64_of(row.i64(0)?)?,
            peaks: row.take_bytes(1)?,
        })
    }

    async fn log_nodes(&self, nodes: &[NodeId]) -> Result<HashMap<NodeId, Hash>, StoreError> {
        let mut out = HashMap::with_capacity(nodes.len());
        if nodes.is_empty() {
            return Ok(out);
        }
        let mut homes: Vec<u64> = nodes.iter().map(|n| home_of(*n).0).collect();
        homes.sort_unstable();
        homes.dedup();
        let mut sql =
            self.sql("SELECT leaf_index, entry, nodes FROM audit_log WHERE leaf_index IN (");
        for (i, h) in homes.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.int(i64_of(*h)?);
        }
        sql.push(")");
        let mut conn = self.backend().conn().await?;
        let rows: HashMap<u64, Vec<u8>> = conn
            .fetch(sql, &ENTRY_COLS)
            .await?
            .into_iter()
            .map(|r| entry_from(r).map(|e| (e.index, e.nodes)))
            .collect::<Result<_, _>>()?;
        for n in nodes {
            let (leaf, pos) = home_of(*n);
            if let Some(hash) = rows
                .get(&leaf)
                .and_then(|blob| blob.get(pos * 32..pos * 32 + 32))
                .and_then(|h| Hash::try_from(h).ok())
            {
                out.insert(*n, hash);
            }
        }
        Ok(out)
    }

    async fn log_entries(&self, from: u64, limit: u32) -> Result<Vec<LoggedEntry>, StoreError> {
        let mut sql =
            self.sql("SELECT leaf_index, entry, nodes FROM audit_log WHERE leaf_index >= ");
        sql.int(i64_of(from)?)
            .push(" ORDER BY leaf_index")
            .limit(i64::from(limit));
        let mut conn = self.backend().conn().await?;
        conn.fetch(sql, &ENTRY_COLS)
            .await?
            .into_iter()
            .map(entry_from)
            .collect()
    }

    fn scan_leaves(&self, from: u64, to: u64) -> LeafPages {
        let (lo, hi) = match (i64_of(from), i64_of(to.min(i64::MAX as u64))) {
            (Ok(lo), Ok(hi)) => (lo, hi),
            (Err(e), _) | (_, Err(e)) => return futures::stream::once(async { Err(e) }).boxed(),
        };
        let d = self.dialect();
        let statement = move |start: i64, limit: Option<i64>| {
            let mut sql = Sql::new(
                d,
                "SELECT leaf_index, entry, nodes, time_micros, actor FROM audit_log WHERE leaf_index >= ",
            );
            sql.int(start)
                .push(" AND leaf_index < ")
                .int(hi)
                .push(" ORDER BY leaf_index");
            if let Some(n) = limit {
                sql.limit(n);
            }
            sql
        };
        if let Some(pages) = self.backend().scan_leaf_pages(statement(lo, None)) {
            return pages;
        }
        paged(
            self.backend_arc(),
            &LEAF_COLS,
            move |after: Option<&u64>| {
                let start = match after {
                    Some(i) => i64_of(*i)? + 1,
                    None => lo,
                };
                Ok(statement(start, Some(PASS_PAGE)))
            },
            |leaf: &PooledLeaf| leaf.index,
            leaf_from,
        )
        .map_ok(leaf_page)
        .boxed()
    }

    fn scan_patient_rows(&self) -> PatientRowPages {
        let d = self.dialect();
        // The table's own key order (patient, leaf): no index by leaf is needed.
        let whole = Sql::new(d, PATIENT_ROWS);
        if let Some(pages) = self.backend().scan_patient_row_pages(whole) {
            return pages;
        }
        paged(
            self.backend_arc(),
            &PATIENT_COLS,
            move |after: Option<&(String, u64)>| {
                let mut sql = Sql::new(d, PATIENT_ROWS);
                if let Some((patient, index)) = after {
                    sql.push(" WHERE (patient_id, leaf_index) > (")
                        .str(patient)
                        .push(", ")
                        .int(i64_of(*index)?)
                        .push(")");
                }
                sql.push(" ORDER BY patient_id, leaf_index")
                    .limit(PASS_PAGE);
                Ok(sql)
            },
            |row: &PatientRow| (row.patient_id.clone(), row.index),
            patient_row_from,
        )
        .map_ok(patient_row_page)
        .boxed()
    }

    async fn derived_rows(&self, from: u64, to: u64) -> Result<Vec<DerivedRow>, StoreError> {
        let (lo, hi) = (i64_of(from)?, i64_of(to)?);
        let mut conn = self.backend().conn().await?;
        let mut sql =
            self.sql("SELECT leaf_index, time_micros, actor FROM audit_log WHERE leaf_index >= ");
        sql.int(lo)
            .push(" AND leaf_index < ")
            .int(hi)
            .push(" ORDER BY leaf_index");
        let mut rows: std::collections::BTreeMap<u64, DerivedRow> =
            std::collections::BTreeMap::new();
        for r in conn.fetch(sql, &[Col::I64, Col::I64, Col::Str]).await? {
            let index = u64_of(r.i64(0)?)?;
            rows.insert(
                index,
                DerivedRow {
                    index,
                    time_micros: Some(r.i64(1)?),
                    actor: Some(r.string(2)?),
                    patients: Vec::new(),
                },
            );
        }
        let mut sql =
            self.sql("SELECT leaf_index, patient_id FROM audit_patient WHERE leaf_index >= ");
        sql.int(lo)
            .push(" AND leaf_index < ")
            .int(hi)
            .push(" ORDER BY leaf_index, patient_id");
        for r in conn.fetch(sql, &[Col::I64, Col::Str]).await? {
            let index = u64_of(r.i64(0)?)?;
            rows.entry(index)
                .or_insert_with(|| DerivedRow {
                    index,
                    ..DerivedRow::default()
                })
                .patients
                .push(r.string(1)?);
        }
        Ok(rows.into_values().collect())
    }

    async fn log_entries_for_patient(
        &self,
        patient_id: &str,
        before: Option<u64>,
        limit: u32,
    ) -> Result<Vec<LoggedEntry>, StoreError> {
        let mut sql = self.sql("SELECT l.leaf_index, l.entry, l.nodes FROM audit_patient p JOIN audit_log l ON l.leaf_index = p.leaf_index WHERE p.patient_id = ");
        sql.str(patient_id);
        if let Some(b) = before {
            sql.push(" AND p.leaf_index < ").int(i64_of(b)?);
        }
        sql.push(" ORDER BY p.leaf_index DESC")
            .limit(i64::from(limit));
        let mut conn = self.backend().conn().await?;
        conn.fetch(sql, &ENTRY_COLS)
            .await?
            .into_iter()
            .map(entry_from)
            .collect()
    }

    async fn put_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError> {
        let mut sql = self
            .sql("INSERT INTO audit_checkpoints (tree_size, checkpoint, signed_micros) VALUES (");
        sql.int(i64_of(checkpoint.size)?)
            .push(", ")
            .str(&checkpoint.text)
            .push(", ")
            .int(checkpoint.signed_micros)
            .push(") ON CONFLICT (tree_size) DO NOTHING");
        let mut conn = self.backend().conn().await?;
        conn.execute(sql).await?;
        Ok(())
    }

    async fn put_cosignature(&self, cosignature: &StoredCosignature) -> Result<(), StoreError> {
        let mut sql =
            self.sql("INSERT INTO audit_cosignatures (witness, tree_size, checkpoint) VALUES (");
        sql.str(&cosignature.witness)
            .push(", ")
            .int(i64_of(cosignature.size)?)
            .push(", ")
            .str(&cosignature.checkpoint)
            .push(
                ") ON CONFLICT (witness) DO UPDATE SET tree_size = excluded.tree_size, \
                 checkpoint = excluded.checkpoint \
                 WHERE excluded.tree_size >= audit_cosignatures.tree_size",
            );
        let mut conn = self.backend().conn().await?;
        conn.execute(sql).await?;
        Ok(())
    }

    async fn cosignatures(&self) -> Result<Vec<StoredCosignature>, StoreError> {
        let mut conn = self.backend().conn().await?;
        conn.fetch(
            self.sql(
                "SELECT witness, tree_size, checkpoint FROM audit_cosignatures ORDER BY witness",
            ),
            &[Col::Str, Col::I64, Col::Str],
        )
        .await?
        .into_iter()
        .map(|r| {
            Ok(StoredCosignature {
                witness: r.string(0)?,
                size: u64_of(r.i64(1)?)?,
                checkpoint: r.string(2)?,
            })
        })
        .collect()
    }

    async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let mut conn = self.backend().conn().await?;
        conn.fetch(
            self.sql("SELECT tree_size, checkpoint, signed_micros FROM audit_checkpoints ORDER BY tree_size"),
            &[Col::I64, Col::Str, Col::I64],
        )
        .await?
        .into_iter()
        .map(|r| {
            Ok(StoredCheckpoint {
                size: u64_of(r.i64(0)?)?,
                text: r.string(1)?,
                signed_micros: r.i64(2)?,
            })
        })
        .collect()
    }

    async fn checkpoint(&self, size: Option<u64>) -> Result<Option<StoredCheckpoint>, StoreError> {
        let mut sql =
            self.sql("SELECT tree_size, checkpoint, signed_micros FROM audit_checkpoints");
        match size {
            Some(s) => {
                sql.push(" WHERE tree_size = ").int(i64_of(s)?);
            }
            None => {
                sql.push(" ORDER BY tree_size DESC LIMIT 1");
            }
        }
        let mut conn = self.backend().conn().await?;
        let rows = conn.fetch(sql, &[Col::I64, Col::Str, Col::I64]).await?;
        rows.into_iter()
            .next()
            .map(|r| {
                Ok(StoredCheckpoint {
                    size: u64_of(r.i64(0)?)?,
                    text: r.string(1)?,
                    signed_micros: r.i64(2)?,
                })
            })
            .transpose()
    }

    async fn log_key(
        &self,
        candidate: &LogKeyRecord,
        now_micros: i64,
    ) -> Result<LogKeyRecord, StoreError> {
        let mut sql =
            self.sql("INSERT INTO audit_keys (name, secret, public, created_micros) VALUES (");
        sql.str(&candidate.name)
            .push(", ")
            .bind(Arg::Bytes(candidate.secret.to_vec()))
            .push(", ")
            .bind(Arg::Bytes(candidate.public.to_vec()))
            .push(", ")
            .int(now_micros)
            .push(") ON CONFLICT (name) DO NOTHING");
        let mut conn = self.backend().conn().await?;
        conn.execute(sql).await?;
        let mut sql = self.sql("SELECT secret, public FROM audit_keys WHERE name = ");
        sql.str(&candidate.name);
        let mut row = conn
            .fetch(sql, &[Col::Bytes, Col::Bytes])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| corrupt("log key vanished"))?;
        let secret = row.take_bytes(0)?;
        let public = row.take_bytes(1)?;
        Ok(LogKeyRecord {
            name: candidate.name.clone(),
            secret,
            public: public.try_into().map_err(|_| corrupt("bad log key"))?,
        })
    }

    async fn replace_log_key_secret(&self, name: &str, secret: &[u8]) -> Result<(), StoreError> {
        let mut sql = self.sql("UPDATE audit_keys SET secret = ");
        sql.bind(Arg::Bytes(secret.to_vec()))
            .push(" WHERE name = ")
            .str(name);
        let mut conn = self.backend().conn().await?;
        conn.execute(sql).await.map(|_| ())
    }

    async fn log_public_keys(&self) -> Result<Vec<(String, [u8; 32])>, StoreError> {
        let mut conn = self.backend().conn().await?;
        conn.fetch(
            self.sql("SELECT name, public FROM audit_keys ORDER BY created_micros, name"),
            &[Col::Str, Col::Bytes],
        )
        .await?
        .into_iter()
        .map(|mut r| {
            let name = r.string(0)?;
            let public = r.take_bytes(1)?;
            Ok((name, public.try_into().map_err(|_| corrupt("bad log key"))?))
        })
        .collect()
    }

    async fn map_head(&self) -> Result<MapHead, StoreError> {
        let mut conn = self.backend().conn().await?;
        let rows = conn
            .fetch(
                self.sql("SELECT size, root FROM audit_map_head WHERE id = 1"),
                &[Col::I64, Col::Bytes],
            )
            .await?;
        let mut row = rows
            .into_iter()
            .next()
            .ok_or_else(|| corrupt("no map head"))?;
        Ok(MapHead {
            size: u64_of(row.i64(0)?)?,
            root: hash_of(row.take_bytes(1)?)?,
        })
    }

    async fn map_members(
        &self,
        buckets: &[u64],
    ) -> Result<BTreeMap<MapKey, PatientHead>, StoreError> {
        let mut out = BTreeMap::new();
        let mut conn = self.backend().conn().await?;
        for chunk in buckets.chunks(LIST_CHUNK) {
            let mut sql = self.sql(
                "SELECT map_key, entry_count, last_index, last_hash FROM audit_map_heads WHERE bucket IN (",
            );
            for (i, b) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.int(i64_of(*b)?);
            }
            sql.push(")");
            for r in conn.fetch(sql, &MAP_HEAD_COLS).await? {
                let (key, head) = map_head_from(r)?;
                out.insert(key, head);
            }
        }
        Ok(out)
    }

    async fn map_nodes(&self, ids: &[MapNodeId]) -> Result<HashMap<MapNodeId, Hash>, StoreError> {
        let mut out = HashMap::with_capacity(ids.len());
        let mut conn = self.backend().conn().await?;
        for chunk in ids.chunks(LIST_CHUNK) {
            let mut sql = self.sql(
                "SELECT level, node_index, hash FROM audit_map_nodes WHERE (level, node_index) IN (VALUES ",
            );
            for (i, (level, index)) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.push("(")
                    .int(i64::from(*level))
                    .push(", ")
                    .int(i64_of(*index)?)
                    .push(")");
            }
            sql.push(")");
            for r in conn.fetch(sql, &MAP_NODE_COLS).await? {
                let (id, hash) = map_node_from(r)?;
                out.insert(id, hash);
            }
        }
        Ok(out)
    }

    async fn commit_map(
        &self,
        from: u64,
        to: u64,
        changes: &MapChanges,
        checkpoint: &StoredCheckpoint,
    ) -> Result<bool, StoreError> {
        let d = self.dialect();
        let mut tx = self.backend().begin().await?;
        let rows = tx
            .fetch(
                Sql::new(
                    d,
                    &format!(
                        "SELECT size FROM audit_map_head WHERE id = 1{}",
                        d.for_update()
                    ),
                ),
                &[Col::I64],
            )
            .await?;
        let at = u64_of(rows.first().ok_or_else(|| corrupt("no map head"))?.i64(0)?)?;
        if at != from {
            return Ok(false);
        }
        insert_rows(
            &mut tx,
            d,
            "audit_map_heads (bucket, map_key, entry_count, last_index, last_hash)",
            " ON CONFLICT (bucket, map_key) DO UPDATE SET entry_count = excluded.entry_count, last_index = excluded.last_index, last_hash = excluded.last_hash",
            &changes.heads,
            |(key, head)| {
                Ok(vec![
                    Val::Int(i64_of(key.bucket())?),
                    Val::Bytes(key.0.to_vec()),
                    Val::Int(i64_of(head.count)?),
                    Val::Int(i64_of(head.index)?),
                    Val::Bytes(head.hash.to_vec()),
                ])
            },
        )
        .await?;
        insert_rows(
            &mut tx,
            d,
            "audit_map_nodes (level, node_index, hash)",
            " ON CONFLICT (level, node_index) DO UPDATE SET hash = excluded.hash",
            &changes.nodes,
            |((level, index), hash)| {
                Ok(vec![
                    Val::Int(i64::from(*level)),
                    Val::Int(i64_of(*index)?),
                    Val::Bytes(hash.to_vec()),
                ])
            },
        )
        .await?;
        let mut sql = Sql::new(d, "UPDATE audit_map_head SET size = ");
        sql.int(i64_of(to)?)
            .push(", root = ")
            .bind(Arg::Bytes(changes.root.to_vec()))
            .push(" WHERE id = 1");
        tx.execute(sql).await?;
        // A checkpoint of this size signed before the map existed is replaced by the one
        // that signs the map too.
        let mut sql = Sql::new(
            d,
            "INSERT INTO audit_checkpoints (tree_size, checkpoint, signed_micros) VALUES (",
        );
        sql.int(i64_of(checkpoint.size)?)
            .push(", ")
            .str(&checkpoint.text)
            .push(", ")
            .int(checkpoint.signed_micros)
            .push(") ON CONFLICT (tree_size) DO UPDATE SET checkpoint = excluded.checkpoint, signed_micros = excluded.signed_micros WHERE audit_checkpoints.checkpoint NOT LIKE '%patient-map %'");
        tx.execute(sql).await?;
        B::commit(tx).await?;
        Ok(true)
    }

    fn scan_map_heads(&self) -> RowPages<(MapKey, PatientHead)> {
        let d = self.dialect();
        let mut whole = Sql::new(d, MAP_HEAD_ROWS);
        whole.push(" ORDER BY bucket, map_key");
        if let Some(pages) = self.backend().scan(whole, &MAP_HEAD_COLS, map_head_from) {
            return pages;
        }
        paged(
            self.backend_arc(),
            &MAP_HEAD_COLS,
            move |after: Option<&MapKey>| {
                let mut sql = Sql::new(d, MAP_HEAD_ROWS);
                if let Some(key) = after {
                    sql.push(" WHERE (bucket, map_key) > (")
                        .int(i64_of(key.bucket())?)
                        .push(", ")
                        .bind(Arg::Bytes(key.0.to_vec()))
                        .push(")");
                }
                sql.push(" ORDER BY bucket, map_key").limit(PASS_PAGE);
                Ok(sql)
            },
            |row: &(MapKey, PatientHead)| row.0,
            map_head_from,
        )
    }

    fn scan_chain_heads(&self) -> RowPages<(String, PatientHead)> {
        let d = self.dialect();
        if let Some(pages) = self.backend().scan(
            Sql::new(d, CHAIN_HEAD_ROWS),
            &CHAIN_HEAD_COLS,
            chain_head_from,
        ) {
            return pages;
        }
        paged(
            self.backend_arc(),
            &CHAIN_HEAD_COLS,
            move |after: Option<&String>| {
                let mut sql = Sql::new(d, CHAIN_HEAD_ROWS);
                if let Some(p) = after {
                    sql.push(" WHERE patient_id > ").str(p);
                }
                sql.push(" ORDER BY patient_id").limit(PASS_PAGE);
                Ok(sql)
            },
            |row: &(String, PatientHead)| row.0.clone(),
            chain_head_from,
        )
    }

    fn scan_map_nodes(&self) -> RowPages<(MapNodeId, Hash)> {
        let d = self.dialect();
        if let Some(pages) =
            self.backend()
                .scan(Sql::new(d, MAP_NODE_ROWS), &MAP_NODE_COLS, map_node_from)
        {
            return pages;
        }
        paged(
            self.backend_arc(),
            &MAP_NODE_COLS,
            move |after: Option<&MapNodeId>| {
                let mut sql = Sql::new(d, MAP_NODE_ROWS);
                if let Some((level, index)) = after {
                    sql.push(" WHERE (level, node_index) > (")
                        .int(i64::from(*level))
                        .push(", ")
                        .int(i64_of(*index)?)
                        .push(")");
                }
                sql.push(" ORDER BY level, node_index").limit(PASS_PAGE);
                Ok(sql)
            },
            |row: &(MapNodeId, Hash)| row.0,
            map_node_from,
        )
    }
}
