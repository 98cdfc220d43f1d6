//! Importing FHIR files: Bundles (transaction, batch or collection), single resources and
//! NDJSON. Each Bundle is one atomic transaction; a failure is recorded and the import goes on.
//!
//! Re-importing the same data must not duplicate it. Entries that create (`POST`) without an
//! `ifNoneExist` are made idempotent: a resource with an identifier becomes a conditional
//! create on its first identifier; one without becomes an update of the id in its
//! `urn:uuid:` full URL, and identical updates write nothing.

use std::collections::BTreeMap;

use medmesh_fhir::resource::ResourceId;
use serde_json::{Value, json};

use crate::context::RequestContext;
use crate::error::RecordError;
use crate::import_group::ImportUnit;
use crate::service::RecordService;

/// One failed unit of an import.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportFailure {
    /// The file.
    pub file: String,
    /// The entry (Bundle entry index or NDJSON line, from 1 for lines), when known.
    pub entry: Option<usize>,
    /// Why (safe to print: no resource content).
    pub reason: String,
}

/// The tally of an import.
#[derive(Debug, Clone, Default)]
pub struct ImportSummary {
    /// Resources written or matched, per type.
    pub counts: BTreeMap<String, u64>,
    /// Resources created.
    pub created: u64,
    /// Resources that got a new version.
    pub updated: u64,
    /// Resources already stored as they are (a re-import).
    pub unchanged: u64,
    /// Each entry's `fullUrl` in the file, and the `Type/id` the node stores it under: an
    /// import assigns its own ids (transaction semantics), so a Synthea file's UUID is not
    /// the stored id.
    pub ids: Vec<(String, String)>,
    /// Failures.
    pub failures: Vec<ImportFailure>,
}

impl ImportSummary {
    /// Total resources imported.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
    /// Adds another summary.
    pub fn merge(&mut self, other: ImportSummary) {
        for (k, v) in other.counts {
            *self.counts.entry(k).or_default() += v;
        }
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.ids.extend(other.ids);
        self.failures.extend(other.failures);
    }
}

fn escape_token(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(',', "\\,")
        .replace('$', "\\$")
}

fn percent(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Makes a transaction's creating entries idempotent (see the module docs).
pub fn make_idempotent(bundle: &mut Value) {
    let Some(entries) = bundle.get_mut("entry").and_then(Value::as_array_mut) else {
        return;
    };
    for e in entries {
        let is_post = e.pointer("/request/method").and_then(Value::as_str) == Some("POST");
        if !is_post || e.pointer("/request/ifNoneExist").is_some() {
            continue;
        }
        let ident = e.pointer("/resource/identifier/0").cloned();
        let system = ident
            .as_ref()
            .and_then(|i| i.get("system"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let value = ident
            .as_ref()
            .and_then(|i| i.get("value"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if let (Some(s), Some(v)) = (system, value) {
            e["request"]["ifNoneExist"] = json!(format!(
                "identifier={}",
                percent(&format!("{}|{}", escape_token(&s), escape_token(&v)))
            ));
            continue;
        }
        let uuid = e
            .get("fullUrl")
            .and_then(Value::as_str)
            .and_then(|f| f.strip_prefix("urn:uuid:"))
            .map(str::to_string);
        let rt = e
            .pointer("/resource/resourceType")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let (Some(id), Some(rt)) = (uuid.filter(|u| ResourceId::parse(u).is_some()), rt) {
            e["request"] = json!({"method": "PUT", "url": format!("{rt}/{id}")});
            e["resource"]["id"] = json!(id);
        }
    }
}

/// A document as a transaction: a transaction or batch Bundle as it is (a batch made atomic),
/// a collection Bundle's resources, or a single resource.
pub(crate) fn transaction_of(doc: Value) -> Value {
    let kind = doc.get("type").and_then(Value::as_str);
    let is_bundle = doc.get("resourceType").and_then(Value::as_str) == Some("Bundle");
    if is_bundle && matches!(kind, Some("transaction" | "batch")) {
        let mut b = doc;
        b["type"] = json!("transaction");
        return b;
    }
    as_transaction(doc)
}

/// Turns a collection Bundle, or a single resource, into a transaction.
fn as_transaction(mut doc: Value) -> Value {
    let rt = doc
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let resources: Vec<(Option<String>, Value)> = if rt == "Bundle" {
        take_entries_of(&mut doc)
            .into_iter()
            .filter_map(|mut e| {
                Some((
                    e.get("fullUrl").and_then(Value::as_str).map(str::to_string),
                    e.get_mut("resource")?.take(),
                ))
            })
            .collect()
    } else {
        vec![(None, doc)]
    };
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|(full_url, r)| {
            let t = r
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let request = match r.get("id").and_then(Value::as_str) {
                Some(id) => json!({"method": "PUT", "url": format!("{t}/{id}")}),
                None => json!({"method": "POST", "url": t}),
            };
            // Moved in, not interpolated: `json!` would serialise (copy) the resource.
            let mut e = Value::Object(serde_json::Map::new());
            e["resource"] = r;
            e["request"] = request;
            if let Some(f) = full_url {
                e["fullUrl"] = json!(f);
            }
            e
        })
        .collect();
    let mut bundle = json!({"resourceType": "Bundle", "type": "transaction"});
    bundle["entry"] = Value::Array(entries);
    bundle
}

/// Tallies a committed transaction: types from the request, and from each response entry
/// whether it created, updated or left a resource unchanged, and where it went.
pub(crate) fn tally(bundle: &Value, response: &Value, summary: &mut ImportSummary) {
    tally_entries(entries_of(bundle), entries_of(response), summary);
}

/// A Bundle's entries, or none.
pub(crate) fn entries_of(bundle: &Value) -> &[Value] {
    bundle
        .get("entry")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Moves a Bundle's entries out (none if it has none), leaving `entry` null.
pub(crate) fn take_entries_of(bundle: &mut Value) -> Vec<Value> {
    match bundle.get_mut("entry").map(Value::take) {
        Some(Value::Array(entries)) => entries,
        _ => Vec::new(),
    }
}

/// [`tally`] over a transaction's request entries and the response entries that answer them,
/// in the same order.
pub(crate) fn tally_entries(requests: &[Value], responses: &[Value], summary: &mut ImportSummary) {
    let pairs = requests
        .iter()
        .zip(responses.iter().map(Some).chain(std::iter::repeat(None)));
    for (e, r) in pairs {
        if let Some(t) = e.pointer("/resource/resourceType").and_then(Value::as_str) {
            *summary.counts.entry(t.to_string()).or_default() += 1;
        }
        let Some(r) = r else { continue };
        let status = r
            .pointer("/response/status")
            .and_then(Value::as_str)
            .unwrap_or("");
        let unchanged = r
            .pointer("/response/outcome/issue/0/diagnostics")
            .and_then(Value::as_str)
            .is_some_and(|d| d.starts_with("unchanged"));
        match (status, unchanged) {
            (s, _) if s.starts_with("201") => summary.created += 1,
            (_, true) => summary.unchanged += 1,
            (s, false) if s.starts_with("200") => summary.updated += 1,
            _ => {}
        }
        if let (Some(full_url), Some(location)) = (
            e.get("fullUrl").and_then(Value::as_str),
            r.pointer("/response/location").and_then(Value::as_str),
        ) {
            let stored = location.split("/_history/").next().unwrap_or(location);
            summary.ids.push((full_url.to_string(), stored.to_string()));
        }
    }
}

/// The failure a transaction's error makes of a file: what the summary calls an internal
/// error is told in full in the log only.
pub(crate) fn failed_import(ctx: &RequestContext, file: &str, err: &RecordError) -> ImportFailure {
    if crate::status_of(err).0 >= 500 {
        tracing::warn!(operation_id = %ctx.operation_id(), error = ?err, "import transaction failed");
    }
    let (entry, reason) = describe(err);
    ImportFailure {
        file: file.to_string(),
        entry,
        reason,
    }
}

/// A short, PHI-free description of an import error, with the failing entry if known.
fn describe(err: &RecordError) -> (Option<usize>, String) {
    let (status, issues) = crate::status_of(err);
    let entry = issues.iter().find_map(|i| {
        i.expression
            .as_deref()?
            .strip_prefix("Bundle.entry[")?
            .split(']')
            .next()?
            .parse()
            .ok()
    });
    let text = issues.iter().map(|i| match &i.expression {
        Some(e) => format!("{} ({e})", i.diagnostics),
        None => i.diagnostics.clone(),
    });
    (
        entry,
        format!("HTTP {status}: {}", text.collect::<Vec<_>>().join("; ")),
    )
}

impl RecordService {
    /// Imports one JSON document (Bundle or resource) as one atomic transaction.
    pub async fn import_json(&self, ctx: &RequestContext, file: &str, doc: Value) -> ImportSummary {
        self.import_unit(ctx, ImportUnit::new(file, doc)).await
    }

    /// Imports NDJSON lines in chunks, each chunk one transaction; a failing chunk is retried
    /// line by line so one bad line fails alone.
    pub async fn import_ndjson(
        &self,
        ctx: &RequestContext,
        file: &str,
        text: &str,
        progress: &(dyn Fn(u64) + Sync),
    ) -> ImportSummary {
        let mut summary = ImportSummary::default();
        let mut chunk: Vec<(usize, Value)> = Vec::new();
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty())
            .collect();
        let mut pending = Vec::new();
        for (n, line) in lines {
            match serde_json::from_str::<Value>(line) {
                Ok(v) if v.is_object() => pending.push((n, v)),
                _ => summary.failures.push(ImportFailure {
                    file: file.into(),
                    entry: Some(n),
                    reason: "line is not a JSON object".into(),
                }),
            }
        }
        for item in pending {
            chunk.push(item);
            if chunk.len() == 500 {
                self.import_chunk(
                    ctx,
                    file,
                    std::mem::take(&mut chunk),
                    &mut summary,
                    progress,
                )
                .await;
            }
        }
        if !chunk.is_empty() {
            self.import_chunk(ctx, file, chunk, &mut summary, progress)
                .await;
        }
        summary
    }

    async fn import_chunk(
        &self,
        ctx: &RequestContext,
        file: &str,
        chunk: Vec<(usize, Value)>,
        summary: &mut ImportSummary,
        progress: &(dyn Fn(u64) + Sync),
    ) {
        let collection = json!({"resourceType": "Bundle", "type": "collection", "entry": chunk.iter().map(|(_, r)| json!({"resource": r})).collect::<Vec<_>>()});
        let s = self.import_json(ctx, file, collection).await;
        if s.failures.is_empty() {
            progress(s.total());
            summary.merge(s);
            return;
        }
        for (n, r) in chunk {
            let mut one = self.import_json(ctx, file, r).await;
            for f in &mut one.failures {
                f.entry = Some(n);
            }
            progress(one.total());
            summary.merge(one);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_become_idempotent() {
        let mut b = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:0b8e0f3a-1111-4c5e-9a2b-000000000001", "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:s", "value": "a|b"}]}, "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:0b8e0f3a-1111-4c5e-9a2b-000000000002", "resource": {"resourceType": "Observation"}, "request": {"method": "POST", "url": "Observation"}},
            {"resource": {"resourceType": "Observation"}, "request": {"method": "POST", "url": "Observation", "ifNoneExist": "x=1"}}
        ]});
        make_idempotent(&mut b);
        assert_eq!(
            b["entry"][0]["request"]["ifNoneExist"],
            "identifier=urn%3As%7Ca%5C%7Cb"
        );
        assert_eq!(
            b["entry"][1]["request"],
            json!({"method": "PUT", "url": "Observation/0b8e0f3a-1111-4c5e-9a2b-000000000002"})
        );
        assert_eq!(b["entry"][2]["request"]["ifNoneExist"], "x=1");
    }

    #[test]
    fn a_collection_or_a_single_resource_becomes_a_transaction() {
        let collection = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "p1"}},
            {"resource": {"resourceType": "Observation", "status": "final"}},
            {"fullUrl": "urn:uuid:3"}
        ]});
        assert_eq!(
            transaction_of(collection),
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "p1"},
                 "request": {"method": "PUT", "url": "Patient/p1"}},
                {"resource": {"resourceType": "Observation", "status": "final"},
                 "request": {"method": "POST", "url": "Observation"}}
            ]})
        );
        assert_eq!(
            transaction_of(json!({"resourceType": "Patient"})),
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}
            ]})
        );
    }
}
