//! The audit log's rows: Merkle leaves with the nodes they complete, the writer's head,
//! checkpoints and the log key. Appends run inside the caller's transaction, so a write's
//! entry commits with the write; the head row lock serializes appends across replicas.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use medmesh_audit::AuditEntry;
use medmesh_audit::merkle::{Frontier, Hash, NodeId, home_of, leaf_hash};
use medmesh_store::{
    AuditLogStore, DerivedRow, LogHead, LogKeyRecord, LoggedEntry, PatientRow, RowPages,
    ScannedLeaf, StoreError, StoredCheckpoint,
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

/// Appends entries as leaves, inside `tx`: locks the head, hashes, inserts, moves the head.
pub(crate) async fn append_leaves(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    entries: &[AuditEntry],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let rows = tx
        .fetch(
            Sql::new(
                d,
                &format!(
                    "SELECT size, peaks FROM audit_head WHERE id = 1{}",
                    d.for_update()
                ),
            ),
            &[Col::I64, Col::Bytes],
        )
        .await?;
    let mut row = rows.into_iter().next().ok_or_else(|| corrupt("no head"))?;
    let size = u64_of(row.i64(0)?)?;
    let mut frontier =
        Frontier::from_bytes(size, &row.take_bytes(1)?).map_err(|_| corrupt("bad head"))?;
    let mut leaves = Vec::with_capacity(entries.len());
    let mut patients = Vec::new();
    for e in entries {
        let bytes = e.to_leaf();
        let index = frontier.size();
        let nodes = frontier.push(leaf_hash(&bytes)).concat();
        for p in &e.patients {
            patients.push((p.as_str(), index));
        }
        leaves.push((index, e, bytes, nodes));
    }
    for chunk in leaves.chunks(INSERT_CHUNK) {
        let mut sql = Sql::new(
            d,
            "INSERT INTO audit_log (leaf_index, time_micros, actor, entry, nodes) VALUES ",
        );
        for (i, (index, e, bytes, nodes)) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.push("(")
                .int(i64_of(*index)?)
                .push(", ")
                .int(e.time_micros)
                .push(", ")
                .str(&e.actor)
                .push(", ")
                .bind(Arg::Bytes(bytes.clone()))
                .push(", ")
                .bind(Arg::Bytes(nodes.clone()))
                .push(")");
        }
        tx.execute(sql).await?;
    }
    patients.sort_unstable();
    patients.dedup();
    for chunk in patients.chunks(INSERT_CHUNK) {
        let mut sql = Sql::new(
            d,
            "INSERT INTO audit_patient (patient_id, leaf_index) VALUES ",
        );
        for (i, (p, index)) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.push("(")
                .str(p)
                .push(", ")
                .int(i64_of(*index)?)
                .push(")");
        }
        tx.execute(sql).await?;
    }
    let mut sql = Sql::new(d, "UPDATE audit_head SET size = ");
    sql.int(i64_of(frontier.size())?)
        .push(", peaks = ")
        .bind(Arg::Bytes(frontier.to_bytes()))
        .push(" WHERE id = 1");
    tx.execute(sql).await?;
    Ok(())
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
/// Columns of a pass over `audit_patient`.
const PATIENT_COLS: [Col; 2] = [Col::I64, Col::Str];
/// Rows per page when a pass pages through the pool.
const PASS_PAGE: i64 = 4096;
/// Pages read ahead of the caller when a pass pages through the pool.
const PASS_AHEAD: usize = 4;

fn leaf_from(mut r: Row) -> Result<ScannedLeaf, StoreError> {
    Ok(ScannedLeaf {
        index: u64_of(r.i64(0)?)?,
        entry: r.take_bytes(1)?,
        nodes: r.take_bytes(2)?,
        time_micros: r.i64(3)?,
        actor: r.take_string(4)?,
    })
}

fn patient_row_from(mut r: Row) -> Result<PatientRow, StoreError> {
    Ok(PatientRow {
        index: u64_of(r.i64(0)?)?,
        patient_id: r.take_string(1)?,
    })
}

/// Decodes each page of a backend's own scan.
fn decoded<T: Send + 'static>(
    pages: RowPages<Row>,
    decode: fn(Row) -> Result<T, StoreError>,
) -> RowPages<T> {
    pages
        .map(move |page| page.and_then(|rows| rows.into_iter().map(decode).collect()))
        .boxed()
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
        append_leaves(&mut tx, d, &entries).await?;
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

    fn scan_leaves(&self, from: u64, to: u64) -> RowPages<ScannedLeaf> {
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
        if let Some(pages) = self.backend().scan(statement(lo, None), &LEAF_COLS) {
            return decoded(pages, leaf_from);
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
            |leaf: &ScannedLeaf| leaf.index,
            leaf_from,
        )
    }

    fn scan_patient_rows(&self) -> RowPages<PatientRow> {
        let d = self.dialect();
        // The table's own key order (patient, leaf): no index by leaf is needed.
        let whole = Sql::new(d, PATIENT_ROWS);
        if let Some(pages) = self.backend().scan(whole, &PATIENT_COLS) {
            return decoded(pages, patient_row_from);
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
            self.sql("SELECT name, public FROM audit_keys ORDER BY created_micros"),
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
}
