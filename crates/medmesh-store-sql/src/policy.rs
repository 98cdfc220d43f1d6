//! The trust graph's rows: edges, consents and notifications. Edges of a source are
//! replaced inside the transaction that writes the source resource.

use medmesh_policy::access::{Edge, EdgeKind};
use medmesh_store::{Notification, StoreError};

use crate::exec::Exec;
use crate::sql::{Arg, Col, Dialect, Row, Sql};

const EDGE_COLS: [Col; 7] = [
    Col::Str,
    Col::Str,
    Col::Str,
    Col::Str,
    Col::I64,
    Col::OptI64,
    Col::OptStr,
];
const EDGE_SELECT: &str = "SELECT e.source, e.patient_id, e.principal, e.kind, e.since_micros, e.until_micros, e.detail FROM policy_edges e";

fn edge_from(r: &Row) -> Result<Option<Edge>, StoreError> {
    let Some(kind) = EdgeKind::parse(&r.string(3)?) else {
        return Ok(None);
    };
    Ok(Some(Edge {
        source: r.string(0)?,
        patient: r.string(1)?,
        principal: r.string(2)?,
        kind,
        since: r.i64(4)?,
        until: r.opt_i64(5)?,
        detail: r.opt_string(6)?,
    }))
}

fn edges(rows: Vec<Row>) -> Result<Vec<Edge>, StoreError> {
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.extend(edge_from(r)?);
    }
    Ok(out)
}

/// What replacing a source's facts changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FactsChanged {
    /// Any edge or consent row went or came.
    pub any: bool,
    /// A consent row went or came.
    pub consents: bool,
}

/// Replaces a source's edges and consent, and says what went or came (a source that had no
/// facts and gets none changes nothing).
pub(crate) async fn replace_facts(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    source: &str,
    new_edges: &[Edge],
    consent: Option<(&str, &str)>,
) -> Result<FactsChanged, StoreError> {
    let mut del = Sql::new(d, "DELETE FROM policy_edges WHERE source = ");
    del.str(source);
    let edges_removed = tx.execute(del).await?;
    let mut del = Sql::new(d, "DELETE FROM policy_consents WHERE source = ");
    del.str(source);
    let consents_removed = tx.execute(del).await?;
    let added = insert_facts(tx, d, source, new_edges, consent).await?;
    Ok(FactsChanged {
        any: added.any || consents_removed > 0 || edges_removed > 0,
        consents: added.consents || consents_removed > 0,
    })
}

/// Inserts a source's edges and consent (a source with none before), and says what came.
pub(crate) async fn insert_facts(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    source: &str,
    new_edges: &[Edge],
    consent: Option<(&str, &str)>,
) -> Result<FactsChanged, StoreError> {
    let changed = FactsChanged {
        any: consent.is_some() || !new_edges.is_empty(),
        consents: consent.is_some(),
    };
    if !new_edges.is_empty() {
        let mut sql = Sql::new(
            d,
            "INSERT INTO policy_edges (source, patient_id, principal, kind, since_micros, until_micros, detail) VALUES ",
        );
        for (i, e) in new_edges.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.push("(")
                .str(&e.source)
                .push(", ")
                .str(&e.patient)
                .push(", ")
                .str(&e.principal)
                .push(", ")
                .str(e.kind.code())
                .push(", ")
                .int(e.since)
                .push(", ")
                .bind(Arg::OptI64(e.until))
                .push(", ")
                .bind(Arg::OptStr(e.detail.clone()))
                .push(")");
        }
        tx.execute(sql).await?;
    }
    if let Some((patient, body)) = consent {
        let mut sql = Sql::new(
            d,
            "INSERT INTO policy_consents (source, patient_id, body) VALUES (",
        );
        sql.str(source)
            .push(", ")
            .str(patient)
            .push(", ")
            .str(body)
            .push(")");
        tx.execute(sql).await?;
    }
    Ok(changed)
}

/// Raises the policy generation (row 1, migration 0008) and, when consents changed, the
/// consent generation (row 2, migration 0009), in the transaction that changed the facts.
pub(crate) async fn raise_generation(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    consents: bool,
) -> Result<(), StoreError> {
    let (update, expected) = raise_statement(consents);
    let raised = tx.execute(Sql::new(d, &update)).await?;
    check_raised(i64::try_from(raised).unwrap_or(-1), expected)
}

/// The `UPDATE` that raises the generation rows a change moves, and how many rows it must
/// move (also written inside the audit append's one statement on PostgreSQL).
pub(crate) fn raise_statement(consents: bool) -> (String, i64) {
    let (rows, expected) = if consents { ("(1, 2)", 2) } else { ("(1)", 1) };
    (
        format!("UPDATE policy_generation SET generation = generation + 1 WHERE id IN {rows}"),
        expected,
    )
}

/// Without its rows the counters could never move, and kept accesses would outlive the
/// changes that end them: a raise that moved fewer rows refuses the write.
pub(crate) fn check_raised(raised: i64, expected: i64) -> Result<(), StoreError> {
    if raised == expected {
        Ok(())
    } else {
        Err(StoreError::Invalid(
            "policy_generation: its row is missing".into(),
        ))
    }
}

/// The policy generation (`row` 1) or the consent generation (`row` 2).
pub(crate) async fn generation(
    conn: &mut (impl Exec + ?Sized),
    d: Dialect,
    row: i64,
) -> Result<i64, StoreError> {
    let mut sql = Sql::new(d, "SELECT generation FROM policy_generation WHERE id = ");
    sql.int(row);
    let rows = conn.fetch(sql, &[Col::I64]).await?;
    rows.first()
        .ok_or_else(|| StoreError::Invalid("policy_generation: its row is missing".into()))?
        .i64(0)
}

/// Inserts a notification.
pub(crate) async fn insert_notification(
    tx: &mut (impl Exec + ?Sized),
    d: Dialect,
    n: &Notification,
) -> Result<(), StoreError> {
    let mut sql = Sql::new(
        d,
        "INSERT INTO notifications (id, patient_id, kind, message, created_micros, read_micros) VALUES (",
    );
    sql.str(&n.id)
        .push(", ")
        .str(&n.patient_id)
        .push(", ")
        .str(&n.kind)
        .push(", ")
        .str(&n.message)
        .push(", ")
        .int(n.created_micros)
        .push(", ")
        .bind(Arg::OptI64(n.read_micros))
        .push(") ON CONFLICT (id) DO NOTHING");
    tx.execute(sql).await?;
    Ok(())
}

/// Principals reachable from the seeds through care-team membership, and the edges to them.
pub(crate) async fn reach(
    conn: &mut (impl Exec + ?Sized),
    d: Dialect,
    seeds: &[String],
    now: i64,
) -> Result<(Vec<String>, Vec<Edge>), StoreError> {
    if seeds.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    // A member of a CareTeam stands for that team too (teams can be members of teams).
    let mut sql = Sql::new(d, "WITH RECURSIVE principals(ref) AS (SELECT v.ref FROM (");
    for (i, s) in seeds.iter().enumerate() {
        if i > 0 {
            sql.push(" UNION ");
        }
        sql.push("SELECT ").str(s).push(" AS ref");
    }
    sql.push(") v UNION SELECT e.source FROM policy_edges e JOIN principals p ON e.principal = p.ref WHERE e.kind = 'care-team' AND e.since_micros <= ")
        .int(now)
        .push(" AND (e.until_micros IS NULL OR e.until_micros > ")
        .int(now)
        .push(")) ")
        .push(EDGE_SELECT)
        .push(" JOIN principals p ON e.principal = p.ref WHERE e.since_micros <= ")
        .int(now)
        .push(" AND (e.until_micros IS NULL OR e.until_micros > ")
        .int(now)
        .push(")");
    let found = edges(conn.fetch(sql, &EDGE_COLS).await?)?;
    let mut principals: Vec<String> = seeds.to_vec();
    principals.extend(
        found
            .iter()
            .filter(|e| e.kind == EdgeKind::CareTeam)
            .map(|e| e.source.clone()),
    );
    principals.sort();
    principals.dedup();
    Ok((principals, found))
}

/// Every edge to a patient.
pub(crate) async fn patient_edges(
    conn: &mut (impl Exec + ?Sized),
    d: Dialect,
    patient: &str,
) -> Result<Vec<Edge>, StoreError> {
    let mut sql = Sql::new(d, EDGE_SELECT);
    sql.push(" WHERE e.patient_id = ")
        .str(patient)
        .push(" ORDER BY e.since_micros, e.source");
    edges(conn.fetch(sql, &EDGE_COLS).await?)
}

/// Consents of patients.
pub(crate) async fn consents_of(
    conn: &mut (impl Exec + ?Sized),
    d: Dialect,
    patients: &[String],
) -> Result<Vec<(String, String)>, StoreError> {
    if patients.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = Sql::new(
        d,
        "SELECT patient_id, body FROM policy_consents WHERE patient_id IN (",
    );
    sql.str_list(patients).push(") ORDER BY source");
    conn.fetch(sql, &[Col::Str, Col::Str])
        .await?
        .into_iter()
        .map(|r| Ok((r.string(0)?, r.string(1)?)))
        .collect()
}

/// Break-glass edges since a time.
pub(crate) async fn break_glass_since(
    conn: &mut (impl Exec + ?Sized),
    d: Dialect,
    since: i64,
) -> Result<Vec<Edge>, StoreError> {
    let mut sql = Sql::new(d, EDGE_SELECT);
    sql.push(" WHERE e.kind = 'break-glass' AND e.since_micros >= ")
        .int(since)
        .push(" ORDER BY e.since_micros DESC");
    edges(conn.fetch(sql, &EDGE_COLS).await?)
}

/// A patient's notifications.
pub(crate) async fn notifications(
    conn: &mut (impl Exec + ?Sized),
    d: Dialect,
    patient: &str,
) -> Result<Vec<Notification>, StoreError> {
    let mut sql = Sql::new(
        d,
        "SELECT id, patient_id, kind, message, created_micros, read_micros FROM notifications WHERE patient_id = ",
    );
    sql.str(patient).push(" ORDER BY created_micros DESC");
    conn.fetch(
        sql,
        &[
            Col::Str,
            Col::Str,
            Col::Str,
            Col::Str,
            Col::I64,
            Col::OptI64,
        ],
    )
    .await?
    .into_iter()
    .map(|r| {
        Ok(Notification {
            id: r.string(0)?,
            patient_id: r.string(1)?,
            kind: r.string(2)?,
            message: r.string(3)?,
            created_micros: r.i64(4)?,
            read_micros: r.opt_i64(5)?,
        })
    })
    .collect()
}
