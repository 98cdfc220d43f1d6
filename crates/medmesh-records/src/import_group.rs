//! Importing several files in one write transaction.
//!
//! Each write transaction writes every page it changed to the log when it commits: on SQLite
//! a Synthea patient file (~110 resources) dirtied some 1,400 pages, most of them the same hot
//! index pages the next file dirtied again. Importing sixteen files in one transaction wrote
//! those pages once and took the import from ~1,350 to ~2,400 resources/s (bench/README.md).
//!
//! A group must import exactly as its files would one after the other. In one transaction a
//! file's conditions (conditional creates, updates, deletes and references) are evaluated
//! before any file of the group has written, and its sharing tags are derived from the
//! consents stored before the group; so files are grouped only when no file could see another
//! file's writes:
//! - no two files share a `fullUrl` or write the same `Type/id`;
//! - no condition of one file can match a resource another file writes: a condition that is
//!   only on `identifier` is checked against the identifiers written (case-insensitively, so
//!   it never misses a match), any other condition on a type another file writes separates them;
//! - a file that writes a Consent, or reads in its transaction (`GET` entries), goes alone.
//!
//! If the group's transaction fails, each file is imported again on its own, so a bad file
//! fails alone and the others land as they would have.

use std::collections::{HashMap, HashSet};

use medmesh_fhir::search::{Criterion, ValuePredicate};
use serde_json::{Value, json};

use crate::bundle::{ReturnPreference, conditional_references};
use crate::context::RequestContext;
use crate::import::{
    ImportSummary, entries_of, failed_import, make_idempotent, take_entries_of, tally,
    tally_entries, transaction_of,
};
use crate::service::{RecordService, split_conditional};

/// Types whose writes change what other writes derive (sharing tags from consents) through
/// reads outside the write transaction: a file writing one is imported alone.
const POLICY_INPUTS: [&str; 1] = ["Consent"];

/// One file ready to import: its document as a transaction Bundle with idempotent creates.
#[derive(Debug, Clone)]
pub struct ImportUnit {
    /// The file, as the report names it.
    pub file: String,
    bundle: Value,
}

impl ImportUnit {
    /// Makes a file's document (a transaction, batch or collection Bundle, or a resource) a
    /// transaction Bundle whose creates are idempotent (see [`crate::import`]).
    pub fn new(file: impl Into<String>, doc: Value) -> Self {
        let mut bundle = transaction_of(doc);
        make_idempotent(&mut bundle);
        Self {
            file: file.into(),
            bundle,
        }
    }

    /// Moves the entries out, leaving none.
    fn take_entries(&mut self) -> Vec<Value> {
        take_entries_of(&mut self.bundle)
    }

    /// Puts entries taken with [`Self::take_entries`] back.
    fn put_entries(&mut self, entries: Vec<Value>) {
        if let Some(slot) = self.bundle.get_mut("entry") {
            *slot = Value::Array(entries);
        }
    }

    fn entries(&self) -> &[Value] {
        entries_of(&self.bundle)
    }
}

/// What a condition can match.
#[derive(Debug)]
enum Condition {
    /// Only resources of the type carrying one of these identifiers: (system, value), with
    /// `None` for any system and `Some(None)` for none; lower-cased, so a match the store
    /// would make under any normalisation is never missed.
    Identifiers(String, Vec<(Option<Option<String>>, String)>),
    /// Any resource of the type.
    AnyOf(String),
}

/// The parts of a file that decide whether it can share a transaction with another.
#[derive(Debug, Default)]
struct Footprint {
    /// Goes alone (policy inputs, reads, or conditions that do not parse).
    alone: bool,
    full_urls: HashSet<String>,
    /// `Type/id` written by id.
    targets: HashSet<String>,
    /// Per written type, the identifiers of the resources written (lower-cased).
    written: HashMap<String, Vec<(Option<String>, String)>>,
    conditions: Vec<Condition>,
}

impl Footprint {
    /// Whether a condition of `self` could match a resource `other` writes.
    fn sees(&self, other: &Footprint) -> bool {
        self.conditions.iter().any(|c| match c {
            Condition::AnyOf(t) => other.written.contains_key(t),
            Condition::Identifiers(t, wanted) => other.written.get(t).is_some_and(|ids| {
                ids.iter().any(|(system, value)| {
                    wanted.iter().any(|(want_system, want_value)| {
                        want_value == value
                            && match want_system {
                                None => true,
                                Some(s) => s == system,
                            }
                    })
                })
            }),
        })
    }

    fn conflicts(&self, other: &Footprint) -> bool {
        self.alone
            || other.alone
            || !self.full_urls.is_disjoint(&other.full_urls)
            || !self.targets.is_disjoint(&other.targets)
            || self.sees(other)
            || other.sees(self)
    }
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

impl RecordService {
    /// What a condition `rt?query` can match; `None` when it does not parse (the file then
    /// goes alone, and its own transaction reports the error).
    fn condition(&self, rt: &str, query: &str) -> Option<Condition> {
        let q = self.conditional_query(rt, query).ok()?;
        let mut wanted = Vec::new();
        for c in &q.criteria {
            match c {
                Criterion::Param {
                    code,
                    any_of,
                    negate: false,
                    ..
                } if code == "identifier" => {
                    for p in any_of {
                        match p {
                            ValuePredicate::Token {
                                system,
                                code: Some(value),
                            } => wanted.push((
                                system.as_ref().map(|s| s.as_deref().map(lower)),
                                lower(value),
                            )),
                            _ => return Some(Condition::AnyOf(rt.to_string())),
                        }
                    }
                }
                _ => return Some(Condition::AnyOf(rt.to_string())),
            }
        }
        // A query without criteria (only result parameters) matches every resource of the type.
        if wanted.is_empty() {
            return Some(Condition::AnyOf(rt.to_string()));
        }
        Some(Condition::Identifiers(rt.to_string(), wanted))
    }

    fn footprint(&self, unit: &ImportUnit) -> Footprint {
        let mut f = Footprint::default();
        for e in unit.entries() {
            if let Some(u) = e.get("fullUrl").and_then(Value::as_str) {
                f.full_urls.insert(u.to_string());
            }
            let method = e
                .pointer("/request/method")
                .and_then(Value::as_str)
                .unwrap_or("");
            let url = e
                .pointer("/request/url")
                .and_then(Value::as_str)
                .unwrap_or("");
            let (path, query) = match url.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (url, None),
            };
            let rt = path.split('/').next().unwrap_or("");
            if method == "GET" || POLICY_INPUTS.contains(&rt) {
                f.alone = true;
            }
            if let Some(q) = query {
                self.add_condition(&mut f, rt, q);
            } else if path.contains('/') {
                f.targets.insert(path.to_string());
            }
            if let Some(q) = e.pointer("/request/ifNoneExist").and_then(Value::as_str) {
                self.add_condition(&mut f, rt, q);
            }
            let Some(resource) = e.get("resource") else {
                continue;
            };
            let written_type = resource
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or(rt);
            if POLICY_INPUTS.contains(&written_type) {
                f.alone = true;
            }
            let identifiers = resource
                .get("identifier")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|i| {
                    let value = i.get("value").and_then(Value::as_str)?;
                    let system = i.get("system").and_then(Value::as_str).map(lower);
                    Some((system, lower(value)))
                });
            f.written
                .entry(written_type.to_string())
                .or_default()
                .extend(identifiers);
            let mut references = Vec::new();
            conditional_references(resource, &mut references);
            for r in references {
                if let (Some(t), q) = split_conditional(&r) {
                    self.add_condition(&mut f, t, q);
                } else {
                    f.alone = true;
                }
            }
        }
        f
    }

    fn add_condition(&self, f: &mut Footprint, rt: &str, query: &str) {
        match self.condition(rt, query) {
            Some(c) => f.conditions.push(c),
            None => f.alone = true,
        }
    }

    /// Splits files, in order, into groups that can share one write transaction (see the
    /// module docs): at most `max_files` files and `max_entries` entries each; a file that
    /// cannot join the open group closes it.
    pub fn group_imports(
        &self,
        units: Vec<ImportUnit>,
        max_files: usize,
        max_entries: usize,
    ) -> Vec<Vec<ImportUnit>> {
        let mut groups = Vec::new();
        let mut open: Vec<(ImportUnit, Footprint)> = Vec::new();
        let mut entries = 0;
        for unit in units {
            let f = self.footprint(&unit);
            let n = unit.entries().len();
            let fits = open.len() < max_files
                && entries + n <= max_entries
                && open.iter().all(|(_, g)| !g.conflicts(&f));
            if !fits && !open.is_empty() {
                groups.push(open.drain(..).map(|(u, _)| u).collect());
                entries = 0;
            }
            entries += n;
            open.push((unit, f));
        }
        if !open.is_empty() {
            groups.push(open.into_iter().map(|(u, _)| u).collect());
        }
        groups
    }

    /// Imports one file as one atomic transaction.
    pub async fn import_unit(&self, ctx: &RequestContext, unit: ImportUnit) -> ImportSummary {
        let mut summary = ImportSummary::default();
        match self
            .transaction(ctx, &unit.bundle, ReturnPreference::Minimal)
            .await
        {
            Ok(response) => tally(&unit.bundle, &response, &mut summary),
            Err(e) => summary.failures.push(failed_import(ctx, &unit.file, &e)),
        }
        summary
    }

    /// Imports a group from [`Self::group_imports`] in one write transaction, or, if that
    /// fails, each file on its own; one summary per file, in order.
    pub async fn import_group(
        &self,
        ctx: &RequestContext,
        mut group: Vec<ImportUnit>,
    ) -> Vec<(String, ImportSummary)> {
        if group.len() > 1 {
            // The entries move into one Bundle (no copy of the resources) and come back to
            // their files if the shared transaction fails.
            let counts: Vec<usize> = group.iter().map(|u| u.entries().len()).collect();
            let merged: Vec<Value> = group
                .iter_mut()
                .flat_map(ImportUnit::take_entries)
                .collect();
            // Set after `json!`, which would serialise (copy) an interpolated value.
            let mut bundle = json!({"resourceType": "Bundle", "type": "transaction"});
            bundle["entry"] = Value::Array(merged);
            let outcome = self
                .transaction(ctx, &bundle, ReturnPreference::Minimal)
                .await;
            let mut requests = take_entries_of(&mut bundle).into_iter();
            for (unit, n) in group.iter_mut().zip(&counts) {
                unit.put_entries(requests.by_ref().take(*n).collect());
            }
            if let Ok(mut response) = outcome {
                let responses = take_entries_of(&mut response);
                let mut at = 0;
                return group
                    .into_iter()
                    .map(|u| {
                        let mine = u.entries();
                        let answers = responses.get(at..).unwrap_or_default();
                        let answers = answers.get(..mine.len()).unwrap_or(answers);
                        at += mine.len();
                        let mut summary = ImportSummary::default();
                        tally_entries(mine, answers, &mut summary);
                        (u.file, summary)
                    })
                    .collect();
            }
        }
        let mut out = Vec::with_capacity(group.len());
        for unit in group {
            let file = unit.file.clone();
            out.push((file, self.import_unit(ctx, unit).await));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn footprint(written: &[(&str, Option<&str>, &str)], conditions: Vec<Condition>) -> Footprint {
        let mut f = Footprint::default();
        for (t, s, v) in written {
            f.written
                .entry((*t).to_string())
                .or_default()
                .push((s.map(str::to_string), lower(v)));
        }
        f.conditions = conditions;
        f
    }

    #[test]
    fn identifier_conditions_see_only_matching_identifiers() {
        let wants = |s: Option<Option<&str>>, v: &str| {
            Condition::Identifiers(
                "Patient".into(),
                vec![(s.map(|s| s.map(str::to_string)), lower(v))],
            )
        };
        let other = footprint(&[("Patient", Some("urn:mrn"), "A-1")], vec![]);
        assert!(footprint(&[], vec![wants(None, "a-1")]).conflicts(&other));
        assert!(footprint(&[], vec![wants(Some(Some("urn:mrn")), "A-1")]).conflicts(&other));
        assert!(!footprint(&[], vec![wants(Some(Some("urn:other")), "A-1")]).conflicts(&other));
        assert!(!footprint(&[], vec![wants(Some(None), "A-1")]).conflicts(&other));
        assert!(!footprint(&[], vec![wants(None, "A-2")]).conflicts(&other));
        // Any other condition on a written type separates them; on another type it does not.
        assert!(footprint(&[], vec![Condition::AnyOf("Patient".into())]).conflicts(&other));
        assert!(!footprint(&[], vec![Condition::AnyOf("Practitioner".into())]).conflicts(&other));
        // Either direction.
        assert!(other.conflicts(&footprint(&[], vec![wants(None, "A-1")])));
    }

    #[test]
    fn shared_urls_and_targets_conflict() {
        let mut a = Footprint::default();
        let mut b = Footprint::default();
        a.full_urls.insert("urn:uuid:1".into());
        b.full_urls.insert("urn:uuid:2".into());
        assert!(!a.conflicts(&b));
        b.full_urls.insert("urn:uuid:1".into());
        assert!(a.conflicts(&b));
        let mut c = Footprint::default();
        a.targets.insert("Patient/p".into());
        c.targets.insert("Patient/p".into());
        assert!(a.conflicts(&c));
        let alone = Footprint {
            alone: true,
            ..Footprint::default()
        };
        assert!(alone.conflicts(&Footprint::default()));
    }
}
