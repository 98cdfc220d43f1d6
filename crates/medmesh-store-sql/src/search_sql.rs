//! Turns a [`SearchQuery`] into SQL over the index tables. Shared by both dialects.
//!
//! Every criterion becomes `alias.rid [NOT] IN (SELECT rid FROM idx_* WHERE ...)`, so criteria
//! compose freely (AND across parameters, OR across values) and recurse for chains and `_has`.

use medmesh_fhir::SearchParamType;
use medmesh_fhir::search::{
    Criterion, Prefix, SearchQuery, SortKey, StringMatch, UriMatch, ValuePredicate,
};
use medmesh_store::StoreError;

use crate::sql::{Dialect, Sql, like_escape};

/// Which index table holds a parameter type.
pub fn table_for(kind: SearchParamType) -> &'static str {
    match kind {
        SearchParamType::String => "idx_string",
        SearchParamType::Token | SearchParamType::Composite | SearchParamType::Special => {
            "idx_token"
        }
        SearchParamType::Date => "idx_date",
        SearchParamType::Number | SearchParamType::Quantity => "idx_quantity",
        SearchParamType::Reference => "idx_reference",
        SearchParamType::Uri => "idx_uri",
    }
}

/// `resources` seen as the token rows `_id` once had (live resources only, as index rows were).
const ID_ROWS: &str = "(SELECT rid, res_type, '_id' AS param, 0 AS grp, CAST(NULL AS TEXT) AS system, res_id AS code, CAST(NULL AS TEXT) AS text FROM resources WHERE deleted = 0)";

/// A view of `resources` for a search parameter the store answers from that table instead of
/// index rows, or `None` for the others. `_id` was a token row per resource whose value, a
/// random id, landed on a random page of `idx_token`'s value index: the costliest index row
/// an import wrote. `resources` holds the same value under its unique `(res_type, res_id)` key.
pub fn from_resources(code: &str) -> Option<&'static str> {
    (code == "_id").then_some(ID_ROWS)
}

/// Where the rows of parameter `code` (of type `kind`) are: its index table, or the view of
/// `resources` that [`from_resources`] gives.
fn rows_of(kind: SearchParamType, code: &str) -> &'static str {
    from_resources(code).unwrap_or_else(|| table_for(kind))
}

fn table_for_predicate(p: &ValuePredicate) -> &'static str {
    match p {
        ValuePredicate::String { .. } => "idx_string",
        ValuePredicate::Token { .. }
        | ValuePredicate::TokenText(_)
        | ValuePredicate::Composite(_) => "idx_token",
        ValuePredicate::Date { .. } => "idx_date",
        ValuePredicate::Quantity { .. } => "idx_quantity",
        ValuePredicate::Reference { .. } | ValuePredicate::ReferenceIdentifier { .. } => {
            "idx_reference"
        }
        ValuePredicate::Uri { .. } => "idx_uri",
    }
}

const DAY_MICROS: i64 = 86_400_000_000;

/// Appends the SQL for one value predicate on index alias `x`.
/// `now` is the injected clock's time, which the `ap` (approximately) prefix is measured from.
fn predicate(sql: &mut Sql, x: &str, p: &ValuePredicate, now: i64) {
    match p {
        ValuePredicate::String { value, mode } => match mode {
            StringMatch::Exact => {
                sql.push(&format!("{x}.exact = ")).str(value);
            }
            StringMatch::StartsWith => {
                sql.push(&format!("{x}.norm LIKE "))
                    .str(&format!("{}%", like_escape(value)))
                    .push(" ESCAPE '\\'");
            }
            StringMatch::Blind => {
                sql.push(&format!("{x}.norm = ")).str(value);
            }
            StringMatch::Contains => {
                sql.push(&format!("{x}.norm LIKE "))
                    .str(&format!("%{}%", like_escape(value)))
                    .push(" ESCAPE '\\'");
            }
        },
        ValuePredicate::Token { system, code } => {
            sql.push("(1=1");
            if let Some(c) = code {
                sql.push(&format!(" AND {x}.code = ")).str(c);
            }
            match system {
                None => {}
                Some(None) => {
                    sql.push(&format!(" AND {x}.system IS NULL"));
                }
                Some(Some(s)) => {
                    sql.push(&format!(" AND {x}.system = ")).str(s);
                }
            }
            sql.push(")");
        }
        ValuePredicate::TokenText(t) => {
            sql.push(&format!("{x}.text LIKE "))
                .str(&format!("{}%", like_escape(t)))
                .push(" ESCAPE '\\'");
        }
        ValuePredicate::Date { prefix, lo, hi } => {
            let (lo, hi) = (*lo, *hi);
            match prefix {
                Prefix::Eq => {
                    sql.push(&format!("({x}.lo >= "))
                        .int(lo)
                        .push(&format!(" AND {x}.hi <= "))
                        .int(hi)
                        .push(")");
                }
                Prefix::Ne => {
                    sql.push(&format!("NOT ({x}.lo >= "))
                        .int(lo)
                        .push(&format!(" AND {x}.hi <= "))
                        .int(hi)
                        .push(")");
                }
                Prefix::Gt => {
                    sql.push(&format!("{x}.hi > ")).int(hi);
                }
                Prefix::Lt => {
                    sql.push(&format!("{x}.lo < ")).int(lo);
                }
                Prefix::Ge => {
                    sql.push(&format!("{x}.hi > ")).int(lo);
                }
                Prefix::Le => {
                    sql.push(&format!("{x}.lo < ")).int(hi);
                }
                Prefix::Sa => {
                    sql.push(&format!("{x}.lo >= ")).int(hi);
                }
                Prefix::Eb => {
                    sql.push(&format!("{x}.hi <= ")).int(lo);
                }
                Prefix::Ap => {
                    // Approximately: within 10% of the distance from now, and at least a day.
                    let w = ((now - lo).abs() / 10).max(DAY_MICROS);
                    sql.push(&format!("({x}.lo < "))
                        .int(hi.saturating_add(w))
                        .push(&format!(" AND {x}.hi > "))
                        .int(lo.saturating_sub(w))
                        .push(")");
                }
            }
        }
        ValuePredicate::Quantity {
            prefix,
            value,
            lo,
            hi,
            system,
            code,
        } => {
            sql.push("(");
            match prefix {
                Prefix::Eq => {
                    sql.push(&format!("{x}.lo >= "))
                        .float(*lo)
                        .push(&format!(" AND {x}.hi < "))
                        .float(*hi);
                }
                Prefix::Ne => {
                    sql.push(&format!("NOT ({x}.lo >= "))
                        .float(*lo)
                        .push(&format!(" AND {x}.hi < "))
                        .float(*hi)
                        .push(")");
                }
                Prefix::Gt => {
                    sql.push(&format!("{x}.hi > ")).float(*value);
                }
                Prefix::Lt => {
                    sql.push(&format!("{x}.lo < ")).float(*value);
                }
                Prefix::Ge => {
                    sql.push(&format!("{x}.hi >= ")).float(*value);
                }
                Prefix::Le => {
                    sql.push(&format!("{x}.lo <= ")).float(*value);
                }
                Prefix::Sa => {
                    sql.push(&format!("{x}.lo > ")).float(*value);
                }
                Prefix::Eb => {
                    sql.push(&format!("{x}.hi < ")).float(*value);
                }
                Prefix::Ap => {
                    let w = (value.abs() * 0.1).max(hi - lo);
                    sql.push(&format!("{x}.lo <= "))
                        .float(value + w)
                        .push(&format!(" AND {x}.hi >= "))
                        .float(value - w);
                }
            }
            if let Some(s) = system {
                sql.push(&format!(" AND {x}.system = ")).str(s);
            }
            if let Some(c) = code {
                sql.push(&format!(" AND {x}.code = ")).str(c);
            }
            sql.push(")");
        }
        ValuePredicate::Reference {
            target_type,
            id,
            url,
        } => {
            sql.push("(");
            let mut local = false;
            if let Some(i) = id {
                sql.push(&format!("({x}.target_id = ")).str(i);
                if let Some(t) = target_type {
                    sql.push(&format!(" AND {x}.target_type = ")).str(t);
                }
                sql.push(")");
                local = true;
            }
            if let Some(u) = url {
                if local {
                    sql.push(" OR ");
                }
                sql.push(&format!("{x}.url = ")).str(u);
            }
            if !local && url.is_none() {
                sql.push("1=0");
            }
            sql.push(")");
        }
        ValuePredicate::ReferenceIdentifier { system, value } => {
            sql.push(&format!("({x}.ident_value = ")).str(value);
            if let Some(s) = system {
                sql.push(&format!(" AND {x}.ident_system = ")).str(s);
            }
            sql.push(")");
        }
        ValuePredicate::Uri { value, mode } => match mode {
            UriMatch::Exact => {
                sql.push(&format!("{x}.uri = ")).str(value);
            }
            UriMatch::Below => {
                sql.push(&format!("{x}.uri LIKE "))
                    .str(&format!("{}%", like_escape(value)))
                    .push(" ESCAPE '\\'");
            }
            UriMatch::Above => {
                sql.push("substr(")
                    .str(value)
                    .push(&format!(", 1, length({x}.uri)) = {x}.uri"));
            }
        },
        ValuePredicate::Composite(_) => {
            sql.push("1=0");
        }
    }
}

/// How the criterion's resource type is constrained in its subqueries.
#[derive(Clone, Copy)]
enum TypeRef<'a> {
    /// A known type, bound as a value.
    Known(&'a str),
    /// The type of the outer alias's row (a chain with several possible targets).
    Outer,
}

fn push_type(sql: &mut Sql, x: &str, outer: &str, t: TypeRef<'_>) {
    match t {
        TypeRef::Known(rt) => {
            sql.push(&format!("{x}.res_type = ")).str(rt);
        }
        TypeRef::Outer => {
            sql.push(&format!("{x}.res_type = {outer}.res_type"));
        }
    }
}

/// Opens `r.rid [NOT] IN (SELECT x.rid FROM table x WHERE <type> AND x.param = 'param'`: the
/// rows of one parameter, for the caller to narrow (or not) and close.
fn rows_subquery(
    sql: &mut Sql,
    r: &str,
    x: &str,
    t: TypeRef<'_>,
    table: &str,
    negate: bool,
    param: &str,
) {
    sql.push(&format!(
        "{r}.rid {}IN (SELECT {x}.rid FROM {table} {x} WHERE ",
        if negate { "NOT " } else { "" }
    ));
    push_type(sql, x, r, t);
    sql.push(&format!(" AND {x}.param = ")).str(param);
}

/// Appends SQL for a criterion on the `resources` alias `r`.
fn criterion(
    sql: &mut Sql,
    r: &str,
    t: TypeRef<'_>,
    c: &Criterion,
    depth: usize,
    now: i64,
) -> Result<(), StoreError> {
    if depth > 8 {
        return Err(StoreError::Invalid("search nesting too deep".into()));
    }
    let x = format!("x{depth}");
    match c {
        Criterion::Any => {
            sql.push("1=1");
        }
        Criterion::Compartment {
            owner_type,
            patient_ids,
            params,
            include_self,
        } => {
            sql.push("(");
            if params.is_empty() || patient_ids.is_empty() {
                sql.push("1=0");
            } else {
                sql.push(&format!(
                    "{r}.rid IN (SELECT {x}.rid FROM idx_reference {x} WHERE "
                ));
                push_type(sql, &x, r, t);
                sql.push(&format!(" AND {x}.param IN ("))
                    .str_list(params)
                    .push(&format!(") AND {x}.target_type = "))
                    .str(owner_type)
                    .push(&format!(" AND {x}.target_id IN ("))
                    .str_list(patient_ids)
                    .push("))");
            }
            if *include_self && !patient_ids.is_empty() {
                sql.push(&format!(" OR {r}.rid IN (SELECT p{depth}.rid FROM resources p{depth} WHERE p{depth}.res_type = "))
                    .str(owner_type)
                    .push(&format!(" AND p{depth}.res_id IN ("))
                    .str_list(patient_ids)
                    .push("))");
            }
            sql.push(")");
        }
        Criterion::AnyOf(groups) => {
            sql.push("(");
            if groups.is_empty() {
                sql.push("1=0");
            }
            for (i, group) in groups.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                sql.push("(");
                if group.is_empty() {
                    sql.push("1=1");
                }
                for (j, c) in group.iter().enumerate() {
                    if j > 0 {
                        sql.push(" AND ");
                    }
                    criterion(sql, r, t, c, depth + 1, now)?;
                }
                sql.push(")");
            }
            sql.push(")");
        }
        Criterion::Param {
            code,
            kind,
            any_of,
            negate,
        } => {
            // Several bare codes, or several local references of one type, are one subquery
            // (`[NOT] IN (... code IN (a, b, c))`), not one per value ([`ValueList`]).
            let table = rows_of(*kind, code);
            if let Some(list) = ValueList::of(table, any_of) {
                rows_subquery(sql, r, &x, t, table, *negate, code);
                list.push(sql, &x);
                return Ok(());
            }
            sql.push("(");
            for (i, p) in any_of.iter().enumerate() {
                if i > 0 {
                    sql.push(if *negate { " AND " } else { " OR " });
                }
                if let ValuePredicate::Composite(parts) = p {
                    sql.push(&format!(
                        "{r}.rid {}IN (SELECT c0.rid FROM ",
                        if *negate { "NOT " } else { "" }
                    ));
                    for (n, (_, cp)) in parts.iter().enumerate() {
                        if n == 0 {
                            sql.push(&format!("{} c0", table_for_predicate(cp)));
                        } else {
                            sql.push(&format!(
                                " JOIN {} c{n} ON c{n}.rid = c0.rid AND c{n}.grp = c0.grp",
                                table_for_predicate(cp)
                            ));
                        }
                    }
                    sql.push(" WHERE ");
                    push_type(sql, "c0", r, t);
                    for (n, (pcode, cp)) in parts.iter().enumerate() {
                        sql.push(&format!(" AND c{n}.param = "))
                            .str(pcode)
                            .push(" AND ");
                        predicate(sql, &format!("c{n}"), cp, now);
                    }
                    sql.push(")");
                    continue;
                }
                let table = if *kind == SearchParamType::Composite {
                    table_for_predicate(p)
                } else {
                    rows_of(*kind, code)
                };
                rows_subquery(sql, r, &x, t, table, *negate, code);
                sql.push(" AND ");
                predicate(sql, &x, p, now);
                sql.push(")");
            }
            sql.push(")");
        }
        Criterion::Missing {
            code,
            kind,
            missing,
        } => {
            let (table, param) = if *kind == SearchParamType::Composite {
                ("idx_token", format!("{code}#0"))
            } else {
                (rows_of(*kind, code), code.clone())
            };
            rows_subquery(sql, r, &x, t, table, *missing, &param);
            sql.push(")");
        }
        Criterion::Chain {
            code,
            target_types,
            inner,
        } => {
            let tr = format!("t{depth}");
            sql.push(&format!("{r}.rid IN (SELECT {x}.rid FROM idx_reference {x} JOIN resources {tr} ON {tr}.res_type = {x}.target_type AND {tr}.res_id = {x}.target_id WHERE "));
            push_type(sql, &x, r, t);
            sql.push(&format!(" AND {x}.param = "))
                .str(code)
                .push(&format!(" AND {tr}.deleted = 0 AND {tr}.res_type IN ("));
            sql.str_list(target_types).push(") AND ");
            let inner_t = match target_types.as_slice() {
                [one] => TypeRef::Known(one),
                _ => TypeRef::Outer,
            };
            criterion(sql, &tr, inner_t, inner, depth + 1, now)?;
            sql.push(")");
        }
        Criterion::Has {
            source_type,
            code,
            inner,
        } => {
            let s = format!("s{depth}");
            let g = format!("g{depth}");
            sql.push(&format!("{r}.rid IN (SELECT {g}.rid FROM idx_reference {x} JOIN resources {s} ON {s}.rid = {x}.rid JOIN resources {g} ON {g}.res_type = {x}.target_type AND {g}.res_id = {x}.target_id WHERE {x}.res_type = "));
            sql.str(source_type)
                .push(&format!(" AND {x}.param = "))
                .str(code)
                .push(&format!(" AND {s}.deleted = 0 AND "));
            push_type(sql, &g, r, t);
            sql.push(" AND ");
            criterion(sql, &s, TypeRef::Known(source_type), inner, depth + 1, now)?;
            sql.push(")");
        }
    }
    Ok(())
}

/// The codes of several token predicates that each name a code in any system, written as
/// one `code IN (...)` list; `None` for a single value, or when one names a system (or no
/// code).
fn code_list(any_of: &[ValuePredicate]) -> Option<Vec<&str>> {
    if any_of.len() < 2 {
        return None;
    }
    any_of
        .iter()
        .map(|p| match p {
            ValuePredicate::Token {
                system: None,
                code: Some(c),
            } => Some(c.as_str()),
            _ => None,
        })
        .collect()
}

/// The ids of several reference predicates that each name a local resource by id, all of one
/// target type (or all of none), written as one `target_id IN (...)` list; `None` for a single
/// value, or when one is a URL, names no id, or names another type.
fn reference_list(any_of: &[ValuePredicate]) -> Option<(Option<&str>, Vec<&str>)> {
    if any_of.len() < 2 {
        return None;
    }
    let mut target: Option<Option<&str>> = None;
    let mut ids = Vec::with_capacity(any_of.len());
    for p in any_of {
        let ValuePredicate::Reference {
            target_type,
            id: Some(id),
            url: None,
        } = p
        else {
            return None;
        };
        let this = target_type.as_deref();
        if *target.get_or_insert(this) != this {
            return None;
        }
        ids.push(id.as_str());
    }
    target.map(|t| (t, ids))
}

/// Several values of one parameter that differ in one column only, written as one `IN` list:
/// one subquery, or one per-row check, where one per value made the planners scan. As a
/// dozen `OR`ed subqueries (the chart's probe for the labels consent hides), SQLite scanned
/// every resource of the node (issue 16); as a hundred (`$find`'s Slot search over its
/// schedules), PostgreSQL took 15 ms over a node of 6,000 patients (issue 18;
/// bench/README.md). With `:not`, a practitioner's every search carries the labels hidden
/// from them as one such list.
enum ValueList<'a> {
    /// Bare codes (any system): `code IN (...)`. Only a token parameter's values are tokens.
    Codes(Vec<&'a str>),
    /// Local references by id, all of one type or all of none: `target_id IN (...)`, and
    /// `target_type = T` when they name one.
    References(Option<&'a str>, Vec<&'a str>),
}

impl<'a> ValueList<'a> {
    /// The list `any_of` makes as rows of `table`, if its values make one.
    fn of(table: &str, any_of: &'a [ValuePredicate]) -> Option<Self> {
        if let Some(codes) = code_list(any_of) {
            return Some(Self::Codes(codes));
        }
        if table != "idx_reference" {
            return None;
        }
        reference_list(any_of).map(|(target, ids)| Self::References(target, ids))
    }

    /// ` AND x.column IN (...)` on the rows' alias `x`, and the `)` that closes the subquery
    /// or the per-row check it ends.
    fn push(&self, sql: &mut Sql, x: &str) {
        match self {
            Self::Codes(codes) => {
                sql.push(&format!(" AND {x}.code IN ("))
                    .str_list(codes)
                    .push(")");
            }
            Self::References(target, ids) => {
                sql.push(&format!(" AND {x}.target_id IN ("))
                    .str_list(ids)
                    .push(")");
                if let Some(t) = target {
                    sql.push(&format!(" AND {x}.target_type = ")).str(t);
                }
            }
        }
        sql.push(")");
    }
}

/// How well a criterion narrows the search when it drives the query (lower is better), or
/// `None` when it cannot drive (negations, `:missing`).
fn driver_rank(c: &Criterion) -> Option<u8> {
    match c {
        Criterion::Param { negate: true, .. } | Criterion::Missing { .. } | Criterion::Any => None,
        Criterion::Param { kind, any_of, .. } => Some(match kind {
            SearchParamType::Reference => 0,
            SearchParamType::Token
                if any_of
                    .iter()
                    .any(|p| matches!(p, ValuePredicate::TokenText(_))) =>
            {
                3
            }
            SearchParamType::Token | SearchParamType::Uri => 1,
            SearchParamType::String | SearchParamType::Composite => 2,
            _ => 4,
        }),
        Criterion::Chain { .. } | Criterion::Has { .. } => Some(3),
        // One patient's compartment is small: drive by it.
        Criterion::Compartment { .. } => Some(0),
        // A practitioner's patients each confined, or a union parameter's members: as
        // selective as the least selective group, each by its most selective criterion.
        // Without groups nothing matches: the cheapest driver of all.
        Criterion::AnyOf(groups) if groups.is_empty() => Some(0),
        Criterion::AnyOf(groups) => groups
            .iter()
            .map(|g| g.iter().filter_map(driver_rank).min())
            .collect::<Option<Vec<u8>>>()?
            .into_iter()
            .max(),
    }
}

/// A criterion checked row by row through the `rid` index of its table, or `resources`' own
/// key for `_id` (used for every criterion but the one that drives the query).
fn correlated(sql: &mut Sql, c: &Criterion, rt: &str, now: i64) -> Result<bool, StoreError> {
    let (table, code, preds, negate) = match c {
        Criterion::Param {
            code,
            kind,
            any_of,
            negate,
        } if *kind != SearchParamType::Composite => {
            (rows_of(*kind, code), code.as_str(), Some(any_of), *negate)
        }
        Criterion::Missing {
            code,
            kind,
            missing,
        } if *kind != SearchParamType::Composite => {
            (rows_of(*kind, code), code.as_str(), None, *missing)
        }
        _ => return Ok(false),
    };
    let _ = rt;
    sql.push(if negate {
        "NOT EXISTS (SELECT 1 FROM "
    } else {
        "EXISTS (SELECT 1 FROM "
    });
    sql.push(&format!("{table} c WHERE c.rid = r.rid AND c.param = "))
        .str(code);
    // Several values as one list, which the `rid` index's (rid, param, code) or
    // (rid, param, target_id) answers.
    if let Some(list) = preds.and_then(|p| ValueList::of(table, p)) {
        list.push(sql, "c");
        return Ok(true);
    }
    if let Some(preds) = preds {
        sql.push(" AND (");
        for (i, p) in preds.iter().enumerate() {
            if i > 0 {
                sql.push(" OR ");
            }
            predicate(sql, "c", p, now);
        }
        sql.push(")");
    }
    sql.push(")");
    Ok(true)
}

/// The WHERE clause (without the keyword) for a query's criteria on alias `r`.
///
/// The most selective positive criterion drives the query as `r.rid IN (subquery)`; the others
/// are checked per candidate row. Without a driver the type's rows are scanned.
pub fn where_clause(sql: &mut Sql, q: &SearchQuery, now: i64) -> Result<(), StoreError> {
    let rt = q.resource_type.as_str();
    let driver = q
        .criteria
        .iter()
        .enumerate()
        .filter_map(|(i, c)| driver_rank(c).map(|r| (r, i)))
        .min()
        .map(|(_, i)| i);
    match driver {
        Some(d) => {
            criterion(sql, "r", TypeRef::Known(rt), &q.criteria[d], 0, now)?;
            sql.push(" AND r.deleted = 0");
        }
        None => {
            sql.push("r.res_type = ").str(rt).push(" AND r.deleted = 0");
        }
    }
    for (i, c) in q.criteria.iter().enumerate() {
        if Some(i) == driver {
            continue;
        }
        sql.push(" AND ");
        if !correlated(sql, c, rt, now)? {
            criterion(sql, "r", TypeRef::Known(rt), c, 0, now)?;
        }
    }
    Ok(())
}

fn sort_expr(sql: &mut Sql, key: &SortKey) {
    match key.code.as_str() {
        "_id" => {
            sql.push("r.res_id");
        }
        "_lastUpdated" => {
            sql.push("r.last_updated");
        }
        _ => {
            let agg = if key.descending { "MAX" } else { "MIN" };
            let col = match key.kind {
                SearchParamType::String => "norm",
                SearchParamType::Date => {
                    if key.descending {
                        "hi"
                    } else {
                        "lo"
                    }
                }
                SearchParamType::Number | SearchParamType::Quantity => "lo",
                SearchParamType::Reference => "target_id",
                SearchParamType::Uri => "uri",
                _ => "code",
            };
            sql.push(&format!(
                "(SELECT {agg}(o.{col}) FROM {} o WHERE o.rid = r.rid AND o.param IN (",
                table_for(key.kind)
            ))
            .str_list(&key.rows_of)
            .push("))");
        }
    }
}

/// A paging position: keyset on `rid` for the default order, offset for explicit sorts. Both
/// carry the snapshot (the highest `rid` at the first page) so later inserts never shift pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// After this rid.
    After {
        /// The last rid of the previous page.
        rid: i64,
        /// Highest rid at the first page.
        snapshot: i64,
    },
    /// Before this rid: the page before a keyset page, read backwards.
    Before {
        /// The first rid of the page after.
        rid: i64,
        /// Highest rid at the first page.
        snapshot: i64,
    },
    /// Skip this many.
    Offset {
        /// Rows to skip.
        offset: i64,
        /// Highest rid at the first page.
        snapshot: i64,
    },
}

impl Cursor {
    /// Encodes the cursor for a URL.
    pub fn encode(self) -> String {
        match self {
            Cursor::After { rid, snapshot } => format!("k{rid}.{snapshot}"),
            Cursor::Before { rid, snapshot } => format!("b{rid}.{snapshot}"),
            Cursor::Offset { offset, snapshot } => format!("o{offset}.{snapshot}"),
        }
    }
    /// Parses a cursor.
    pub fn decode(s: &str) -> Result<Self, StoreError> {
        let (kind, rest) = s.split_at_checked(1).ok_or(StoreError::BadCursor)?;
        let (a, b) = rest.split_once('.').ok_or(StoreError::BadCursor)?;
        let a: i64 = a.parse().map_err(|_| StoreError::BadCursor)?;
        let snapshot: i64 = b.parse().map_err(|_| StoreError::BadCursor)?;
        match kind {
            "k" => Ok(Cursor::After { rid: a, snapshot }),
            "b" => Ok(Cursor::Before { rid: a, snapshot }),
            "o" if a >= 0 => Ok(Cursor::Offset {
                offset: a,
                snapshot,
            }),
            _ => Err(StoreError::BadCursor),
        }
    }
}

/// Builds the page query: selects `rid, res_type, res_id`, `count + 1` rows to detect a next page.
///
/// `snapshot` bounds the page to the `rid`s a first page saw. `None` takes the snapshot in
/// this same statement instead: no bound, and a fourth column, the highest `rid` the statement
/// saw (an uncorrelated subquery, evaluated once), which is what the bound would have been.
/// One statement instead of two per first page: each is a hand-off to the driver's thread
/// and back.
pub fn page_query(
    d: Dialect,
    q: &SearchQuery,
    count: u32,
    cursor: Option<Cursor>,
    snapshot: Option<i64>,
    now: i64,
) -> Result<Sql, StoreError> {
    let mut sql = Sql::new(
        d,
        match snapshot {
            Some(_) => "SELECT r.rid, r.res_type, r.res_id FROM resources r WHERE ",
            None => {
                "SELECT r.rid, r.res_type, r.res_id, (SELECT MAX(m.rid) FROM resources m) FROM resources r WHERE "
            }
        },
    );
    where_clause(&mut sql, q, now)?;
    if let Some(snapshot) = snapshot {
        sql.push(" AND r.rid <= ").int(snapshot);
    }
    if let Some(Cursor::After { rid, .. }) = cursor {
        sql.push(" AND r.rid > ").int(rid);
    }
    if let Some(Cursor::Before { rid, .. }) = cursor {
        // Backwards from the page after; the caller puts the rows back in order.
        sql.push(" AND r.rid < ")
            .int(rid)
            .push(" ORDER BY r.rid DESC")
            .limit(i64::from(count) + 1);
        return Ok(sql);
    }
    sql.push(" ORDER BY ");
    for key in &q.sort {
        // NULLs last in both directions. `NULLS LAST` (SQLite 3.30+, PostgreSQL) evaluates the
        // key once; the portable `key IS NULL, key` evaluated its subquery twice per row.
        sort_expr(&mut sql, key);
        sql.push(if key.descending {
            " DESC NULLS LAST, "
        } else {
            " ASC NULLS LAST, "
        });
    }
    sql.push("r.rid ASC").limit(i64::from(count) + 1);
    if let Some(Cursor::Offset { offset, .. }) = cursor {
        sql.push(" OFFSET ").int(offset);
    }
    Ok(sql)
}

/// Builds the count query.
pub fn count_query(
    d: Dialect,
    q: &SearchQuery,
    snapshot: i64,
    now: i64,
) -> Result<Sql, StoreError> {
    let mut sql = Sql::new(d, "SELECT COUNT(*) FROM resources r WHERE ");
    where_clause(&mut sql, q, now)?;
    sql.push(" AND r.rid <= ").int(snapshot);
    Ok(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index rows migration 0011 removes, in each dialect, are exactly those of the union
    /// parameters the definitions derive: a union found later needs a migration of its own.
    #[test]
    fn migration_0011_removes_the_rows_of_every_union_parameter() {
        let defs = medmesh_fhir::definitions().unwrap();
        let mut expected = std::collections::BTreeSet::new();
        for rt in defs.resource_types() {
            for (code, p) in defs.search_params(rt).into_iter().flatten() {
                if p.union_of.is_empty() {
                    continue;
                }
                if p.kind == SearchParamType::Composite {
                    for (i, c) in p.components.iter().enumerate() {
                        expected.insert((table_for(c.kind), rt.clone(), format!("{code}#{i}")));
                    }
                } else {
                    expected.insert((table_for(p.kind), rt.clone(), code.clone()));
                }
            }
        }
        for migration in [
            include_str!("../migrations/sqlite/0011_union_params.sql"),
            include_str!("../migrations/postgres/0011_union_params.sql"),
        ] {
            let mut removed = std::collections::BTreeSet::new();
            for line in migration.lines().filter(|l| l.starts_with("DELETE FROM ")) {
                let table = line["DELETE FROM ".len()..].split(' ').next().unwrap();
                let table = crate::store::INDEX_TABLES
                    .iter()
                    .find(|t| **t == table)
                    .unwrap();
                let rt = line
                    .split("res_type = '")
                    .nth(1)
                    .unwrap()
                    .split('\'')
                    .next()
                    .unwrap();
                let list = line
                    .split("param IN (")
                    .nth(1)
                    .unwrap()
                    .split(')')
                    .next()
                    .unwrap();
                for param in list.split(", ") {
                    removed.insert((*table, rt.to_string(), param.trim_matches('\'').to_string()));
                }
            }
            assert_eq!(removed, expected);
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        for c in [
            Cursor::After {
                rid: 5,
                snapshot: 9,
            },
            Cursor::Offset {
                offset: 20,
                snapshot: 100,
            },
            Cursor::Before {
                rid: 7,
                snapshot: 9,
            },
        ] {
            assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }
        for bad in ["", "x1.2", "k1", "o-1.2", "kA.2"] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }
}
