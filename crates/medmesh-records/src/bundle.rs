//! Batch and transaction Bundles.
//!
//! A transaction is atomic: all entries commit in one database transaction, with their audit
//! entries, or nothing does. Entries run in the order the spec prescribes (DELETE, POST,
//! PUT/PATCH, then GET), after `urn:uuid:` full URLs and conditional references
//! (`Patient?identifier=...`) are resolved to real ids.

use std::collections::HashMap;

use medmesh_audit::Outcome;
use medmesh_fhir::datetime::format_instant;
use medmesh_fhir::search::Handling;
use medmesh_fhir::{Issue, IssueType, operation_outcome, resource};
use medmesh_policy::Action;
use medmesh_store::HistoryScope;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::context::RequestContext;
use crate::error::RecordError;
use crate::forecast::{Forecast, IdPlan, Matcher, Planned};
use crate::service::{
    RecordService, WriteOutcome, WriteStatus, parse_query_string, split_conditional,
};

const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b':');

/// Encodes query pairs.
pub fn encode_query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, QUERY_VALUE),
                utf8_percent_encode(v, QUERY_VALUE)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `path` with `pairs` as its query, if any.
pub fn with_query(path: &str, pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", encode_query(pairs))
    }
}

/// How much of each written resource to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReturnPreference {
    /// Nothing but the status, location and etag.
    #[default]
    Minimal,
    /// The resource.
    Representation,
    /// An OperationOutcome.
    OperationOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Method {
    Delete,
    Post,
    Put,
    Patch,
    Get,
}

struct Entry {
    index: usize,
    method: Method,
    url: String,
    full_url: Option<String>,
    resource: Option<Value>,
    if_none_exist: Option<String>,
    if_match: Option<i64>,
}

fn entry_error(index: usize, message: impl Into<String>) -> RecordError {
    RecordError::Invalid(vec![
        Issue::error(IssueType::Invalid, message).at(&format!("Bundle.entry[{index}]")),
    ])
}

/// Re-roots issue locations at the entry: `Patient.gender` becomes
/// `Bundle.entry[3].resource.gender`.
fn locate(index: usize, issues: Vec<Issue>) -> RecordError {
    RecordError::Invalid(
        issues
            .into_iter()
            .map(|i| {
                let at = i.expression.clone().unwrap_or_default();
                let rest = at.split_once('.').map_or(at.as_str(), |x| x.1).to_string();
                i.at(&format!("Bundle.entry[{index}].resource.{rest}"))
            })
            .collect(),
    )
}

fn parse_etag(s: &str) -> Option<i64> {
    s.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .ok()
}

fn parse_entries(bundle: &Value) -> Result<Vec<Entry>, RecordError> {
    let entries = match bundle.get("entry") {
        None => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(RecordError::invalid(
                IssueType::Structure,
                "Bundle.entry must be an array",
            ));
        }
    };
    entries
        .iter()
        .enumerate()
        .map(|(index, e)| {
            let req = e
                .get("request")
                .ok_or_else(|| entry_error(index, "entry.request is required"))?;
            let method = match req.get("method").and_then(Value::as_str) {
                Some("DELETE") => Method::Delete,
                Some("POST") => Method::Post,
                Some("PUT") => Method::Put,
                Some("PATCH") => Method::Patch,
                Some("GET" | "HEAD") => Method::Get,
                _ => {
                    return Err(entry_error(
                        index,
                        "entry.request.method must be GET, HEAD, POST, PUT, PATCH or DELETE",
                    ));
                }
            };
            let url = req
                .get("url")
                .and_then(Value::as_str)
                .ok_or_else(|| entry_error(index, "entry.request.url is required"))?;
            let resource = e.get("resource").cloned();
            if matches!(method, Method::Post | Method::Put | Method::Patch) && resource.is_none() {
                return Err(entry_error(
                    index,
                    "entry.resource is required for POST, PUT and PATCH",
                ));
            }
            Ok(Entry {
                index,
                method,
                url: url.trim_start_matches('/').to_string(),
                full_url: e.get("fullUrl").and_then(Value::as_str).map(str::to_string),
                resource,
                if_none_exist: req
                    .get("ifNoneExist")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                if_match: req
                    .get("ifMatch")
                    .and_then(Value::as_str)
                    .and_then(parse_etag),
            })
        })
        .collect()
}

/// Rewrites every `reference` found in `map`.
pub(crate) fn rewrite_references(v: &mut Value, map: &HashMap<String, String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get_mut("reference")
                && let Some(to) = map.get(r.as_str())
            {
                *r = to.clone();
            }
            for (_, child) in o.iter_mut() {
                rewrite_references(child, map);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| rewrite_references(c, map)),
        _ => {}
    }
}

/// Collects conditional references (`Type?query`) in a resource.
pub(crate) fn conditional_references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("reference")
                && r.contains('?')
                && !r.contains("://")
            {
                out.push(r.clone());
            }
            o.values().for_each(|c| conditional_references(c, out));
        }
        Value::Array(a) => a.iter().for_each(|c| conditional_references(c, out)),
        _ => {}
    }
}

/// Every conditional reference (`Type?query`) in the entries' resources.
fn conditional_references_of(entries: &[Entry]) -> Vec<String> {
    let mut out = Vec::new();
    for e in entries {
        if let Some(r) = &e.resource {
            conditional_references(r, &mut out);
        }
    }
    out
}

fn response_entry(base: &str, out: &WriteOutcome, pref: ReturnPreference) -> Value {
    let status = match out.status {
        WriteStatus::Created => "201 Created",
        WriteStatus::Updated | WriteStatus::Unchanged | WriteStatus::Existing => "200 OK",
        WriteStatus::Deleted => "204 No Content",
    };
    let mut response = json!({"status": status});
    if out.status != WriteStatus::Deleted {
        response["location"] = json!(format!(
            "{}/{}/_history/{}",
            out.resource_type, out.id, out.version
        ));
        response["etag"] = json!(format!("W/\"{}\"", out.version));
        response["lastModified"] = json!(format_instant(out.last_updated));
    }
    let mut e = json!({"response": response});
    if out.status != WriteStatus::Deleted {
        e["fullUrl"] = json!(format!("{base}/{}/{}", out.resource_type, out.id));
        match pref {
            ReturnPreference::Representation => {
                if let Some(r) = &out.resource {
                    e["resource"] = r.clone();
                }
            }
            ReturnPreference::OperationOutcome => {
                e["response"]["outcome"] = operation_outcome(&[Issue::information("ok")]);
            }
            ReturnPreference::Minimal => {}
        }
        // Said in the entry, so a client (and `medmesh import`) can tell a write that changed
        // nothing from one that made a new version.
        let unchanged = match out.status {
            WriteStatus::Unchanged => Some("unchanged: identical to the stored version"),
            WriteStatus::Existing => Some("unchanged: matched an existing resource"),
            _ => None,
        };
        if let Some(why) = unchanged {
            e["response"]["outcome"] = operation_outcome(&[Issue::information(why)]);
        }
    }
    e
}

/// Splits `Type/id[/_history/v]` or `Type?query` or `Type`.
fn split_url(url: &str) -> (String, Option<String>, Option<String>) {
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (url, None),
    };
    let mut segs = path.split('/');
    let t = segs.next().unwrap_or_default().to_string();
    let id = segs.next().map(str::to_string);
    (t, id, query)
}

/// Work a capability adds to a transaction Bundle's own database transaction
/// ([`RecordService::transaction_then`]).
#[async_trait::async_trait]
pub trait BeforeCommit: Send + Sync {
    /// Runs in `tx` after the Bundle's writes and audit entries. An error rolls the whole
    /// transaction back.
    async fn before_commit(&self, tx: &mut medmesh_at_rest::WriteTx) -> Result<(), RecordError>;
}

impl RecordService {
    /// Processes a `transaction` or `batch` Bundle posted to the base.
    pub async fn process_bundle(
        &self,
        ctx: &RequestContext,
        bundle: Value,
        pref: ReturnPreference,
    ) -> Result<Value, RecordError> {
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(RecordError::invalid(
                IssueType::Invalid,
                "POST to the base takes a Bundle",
            ));
        }
        match bundle.get("type").and_then(Value::as_str) {
            Some("transaction") => self.transaction(ctx, &bundle, pref).await,
            Some("batch") => self.batch(ctx, &bundle, pref).await,
            _ => Err(RecordError::Invalid(vec![
                Issue::error(IssueType::Value, "Bundle.type must be transaction or batch")
                    .at("Bundle.type"),
            ])),
        }
    }

    /// An atomic transaction.
    pub async fn transaction(
        &self,
        ctx: &RequestContext,
        bundle: &Value,
        pref: ReturnPreference,
    ) -> Result<Value, RecordError> {
        self.transaction_then(ctx, bundle, pref, None).await
    }

    /// An atomic transaction, with `then` run inside it after its writes and audit entries
    /// and before its commit: what a capability keeps about the Bundle (the HL7 v2 message
    /// it came from, say) commits with it or not at all, in one commit. `then` fails the
    /// transaction by failing.
    pub async fn transaction_then(
        &self,
        ctx: &RequestContext,
        bundle: &Value,
        pref: ReturnPreference,
        then: Option<&(dyn BeforeCommit + '_)>,
    ) -> Result<Value, RecordError> {
        let mut entries = parse_entries(bundle)?;
        // Authorize every entry before touching the store.
        let mut grants = HashMap::new();
        for e in &entries {
            let (t, _, _) = split_url(&e.url);
            self.check_type(&t)
                .map_err(|_| entry_error(e.index, format!("unknown resource type '{t}'")))?;
            let action = match e.method {
                Method::Delete => Action::Delete,
                Method::Post => Action::Create,
                Method::Put | Method::Patch => Action::Update,
                Method::Get => Action::Read,
            };
            let g = self.authorize(ctx, action, Some(&t)).await?;
            grants.insert((t, action), g);
        }
        // Validate every resource before taking the database's write lock. Resolving
        // `urn:uuid:` and conditional references later cannot make a valid resource invalid.
        for e in entries
            .iter()
            .filter(|e| matches!(e.method, Method::Post | Method::Put))
        {
            let (t, url_id, _) = split_url(&e.url);
            if let Some(id) = &url_id
                && resource::ResourceId::parse(id).is_none()
            {
                return Err(entry_error(e.index, "request.url holds an invalid id"));
            }
            if let Some(body) = &e.resource {
                self.check_resource(&t, body).map_err(|err| match err {
                    RecordError::Invalid(i) => locate(e.index, i),
                    other => other,
                })?;
            }
        }
        entries.sort_by_key(|e| (e.method, e.index));
        let forecast = self.forecast(ctx, &entries, &grants).await;
        if let Some(f) = &forecast {
            f.ticket.turn().await;
        }
        let mut tx = self.begin_write().await?;
        let mut results: Vec<Option<Value>> = vec![None; entries.len()];
        // Each write's audit entry names the patients whose record it touched, so it appears
        // in their logs (an import's entries once named none).
        let mut audit_ids: Vec<(String, String, &str, Vec<String>)> = Vec::new();

        // 1. Deletes.
        for e in entries.iter().filter(|e| e.method == Method::Delete) {
            let (t, id, query) = split_url(&e.url);
            let g = grants
                .get(&(t.clone(), Action::Delete))
                .ok_or(RecordError::Forbidden)?;
            let out = match (id, query) {
                (Some(id), None) => self.delete_in_tx(&mut tx, g, &t, &id).await?,
                (None, Some(q)) => match self
                    .conditional_matches(&mut tx, g, &t, &q)
                    .await?
                    .as_slice()
                {
                    [] => WriteOutcome {
                        resource: None,
                        resource_type: t.clone(),
                        id: String::new(),
                        version: 0,
                        last_updated: self.now(),
                        status: WriteStatus::Deleted,
                    },
                    [id] => self.delete_in_tx(&mut tx, g, &t, id).await?,
                    _ => return Err(RecordError::MultipleMatches),
                },
                _ => return Err(entry_error(e.index, "DELETE needs Type/id or Type?query")),
            };
            let patients = self.written_patients(&out);
            audit_ids.push((t, out.id.clone(), "delete", patients));
            results[e.index] = Some(response_entry(ctx.base_url(), &out, pref));
        }

        // 2. Assign ids (POSTs get new ids or the match of ifNoneExist; PUTs keep theirs) and
        // resolve conditional references; with the forecast's fresh ids, so that if every
        // condition matches as it did before the lock, so do ids and references.
        let fresh = forecast.as_ref().map(|f| &f.fresh_ids);
        let IdPlan {
            existing,
            post_ids,
            put_ids,
            id_map,
            asked,
        } = self
            .plan_ids(ctx, &entries, &grants, &mut Matcher::Inside(&mut tx), fresh)
            .await?;

        // Read the heads of every PUT target in one round trip.
        let put_keys: Vec<(String, String)> = entries
            .iter()
            .filter(|e| e.method == Method::Put)
            .filter_map(|e| Some((split_url(&e.url).0, put_ids.get(&e.index)?.clone())))
            .collect();
        tx.prefetch_heads(&put_keys).await?;
        // The ticket is held until this function returns: after the commit, or on failure.
        let (_ticket, mut prepared) = match forecast {
            Some(f) if self.forecast_holds(&mut tx, &f, &asked).await? => {
                (Some(f.ticket), f.versions)
            }
            Some(f) => {
                self.forecasts.redone(f.versions.len() as u64);
                (Some(f.ticket), HashMap::new())
            }
            None => (None, HashMap::new()),
        };

        // 3. Rewrite all references.
        for e in entries.iter_mut() {
            if let Some(r) = e.resource.as_mut() {
                rewrite_references(r, &id_map);
            }
        }

        // 4. Creates, then updates and patches.
        for e in entries
            .iter()
            .filter(|e| matches!(e.method, Method::Post | Method::Put | Method::Patch))
        {
            let (t, url_id, _) = split_url(&e.url);
            let mut body = e.resource.clone().unwrap_or(Value::Null);
            let out = match e.method {
                Method::Post => {
                    let id = post_ids.get(&e.index).cloned().unwrap_or_default();
                    if let Some(found) = existing.get(&e.index) {
                        let v = self
                            .store
                            .read(&t, found)
                            .await?
                            .ok_or(RecordError::NotFound)?;
                        WriteOutcome {
                            resource: Some(self.decode(&v).await?),
                            resource_type: t.clone(),
                            id: found.clone(),
                            version: v.version,
                            last_updated: v.last_updated,
                            status: WriteStatus::Existing,
                        }
                    } else {
                        let g = grants
                            .get(&(t.clone(), Action::Create))
                            .ok_or(RecordError::Forbidden)?;
                        self.write_version(
                            ctx,
                            &mut tx,
                            g,
                            &t,
                            &id,
                            body,
                            None,
                            prepared.remove(&e.index),
                        )
                        .await?
                    }
                }
                Method::Put => {
                    let id = put_ids.get(&e.index).cloned().unwrap_or_default();
                    if let Some(o) = body.as_object_mut() {
                        if url_id.is_some()
                            && o.get("id").and_then(Value::as_str) != Some(id.as_str())
                        {
                            return Err(entry_error(
                                e.index,
                                "the resource id must match the id in request.url",
                            ));
                        }
                        o.insert("id".into(), Value::String(id.clone()));
                    }
                    let g = grants
                        .get(&(t.clone(), Action::Update))
                        .ok_or(RecordError::Forbidden)?;
                    self.update_in_tx(
                        ctx,
                        &mut tx,
                        g,
                        &t,
                        &id,
                        body,
                        e.if_match,
                        prepared.remove(&e.index),
                    )
                    .await?
                }
                _ => {
                    let id = url_id.ok_or_else(|| entry_error(e.index, "PATCH needs Type/id"))?;
                    let current = self
                        .store
                        .read(&t, &id)
                        .await?
                        .filter(|v| !v.deleted)
                        .ok_or(RecordError::NotFound)?;
                    let patched = resource::apply_json_patch(&self.decode(&current).await?, &body)?;
                    self.check_resource(&t, &patched)?;
                    let g = grants
                        .get(&(t.clone(), Action::Update))
                        .ok_or(RecordError::Forbidden)?;
                    self.update_in_tx(
                        ctx,
                        &mut tx,
                        g,
                        &t,
                        &id,
                        patched,
                        Some(current.version),
                        None,
                    )
                    .await?
                }
            };
            let action = match (e.method, out.status) {
                (_, WriteStatus::Existing | WriteStatus::Unchanged) => "",
                (Method::Post, _) => "create",
                (Method::Put, _) => "update",
                _ => "patch",
            };
            if !action.is_empty() {
                let patients = self.written_patients(&out);
                audit_ids.push((t.clone(), out.id.clone(), action, patients));
            }
            results[e.index] = Some(response_entry(ctx.base_url(), &out, pref));
        }

        for (t, id, action, patients) in audit_ids {
            let mut entry = self.entry(ctx, action, Some(&t), vec![id], Outcome::Success);
            entry.patients = patients;
            tx.append_audit(&entry).await?;
        }
        if let Some(then) = then {
            then.before_commit(&mut tx).await?;
        }
        tx.commit().await?;
        // 5. Reads come last, so they see the transaction's writes.
        for e in entries.iter().filter(|e| e.method == Method::Get) {
            results[e.index] = Some(self.read_entry(ctx, &e.url).await?);
        }
        Ok(
            json!({"resourceType": "Bundle", "id": self.ids.new_id(), "type": "transaction-response", "entry": results.into_iter().map(|r| r.unwrap_or(Value::Null)).collect::<Vec<_>>()}),
        )
    }

    /// The patients whose compartment a written resource is in.
    fn written_patients(&self, out: &WriteOutcome) -> Vec<String> {
        out.resource
            .as_ref()
            .map(|r| self.compartment_owners(&out.resource_type, r))
            .unwrap_or_default()
    }

    async fn read_entry(&self, ctx: &RequestContext, url: &str) -> Result<Value, RecordError> {
        let (t, id, query) = split_url(url);
        let result = match (id, query) {
            (Some(id), _) if url.contains("/_history") => {
                let parts: Vec<&str> = url.split('/').collect();
                match parts.as_slice() {
                    [_, _, "_history"] => {
                        self.history(ctx, HistoryScope::Instance(t, id), &[])
                            .await?
                    }
                    [_, _, "_history", v] => self.vread(ctx, &t, &id, v).await?.resource,
                    _ => {
                        return Err(RecordError::invalid(
                            IssueType::NotSupported,
                            "unsupported GET in a bundle",
                        ));
                    }
                }
            }
            (Some(id), _) => self.read(ctx, &t, &id).await?.resource,
            (None, q) => {
                self.search(
                    ctx,
                    &t,
                    &parse_query_string(q.as_deref().unwrap_or_default()),
                    Handling::Lenient,
                )
                .await?
            }
        };
        Ok(json!({"resource": result, "response": {"status": "200 OK"}}))
    }

    /// A batch: each entry on its own; failures become error entries.
    pub async fn batch(
        &self,
        ctx: &RequestContext,
        bundle: &Value,
        pref: ReturnPreference,
    ) -> Result<Value, RecordError> {
        let entries = parse_entries(bundle)?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let (t, id, query) = split_url(&e.url);
            let r: Result<Value, RecordError> = async {
                let body = e.resource.clone().unwrap_or(Value::Null);
                let w = match (e.method, id, query) {
                    (Method::Post, None, _) => {
                        self.create(ctx, &t, body, e.if_none_exist.as_deref())
                            .await?
                    }
                    (Method::Put, Some(id), None) => {
                        self.update(ctx, &t, &id, body, e.if_match).await?
                    }
                    (Method::Put, None, Some(q)) => {
                        self.conditional_update(ctx, &t, &q, body).await?
                    }
                    (Method::Patch, Some(id), None) => {
                        self.patch(ctx, &t, &id, &body, e.if_match).await?
                    }
                    (Method::Delete, Some(id), None) => self.delete(ctx, &t, &id).await?,
                    (Method::Delete, None, Some(q)) => self.conditional_delete(ctx, &t, &q).await?,
                    (Method::Get, _, _) => return self.read_entry(ctx, &e.url).await,
                    _ => return Err(entry_error(e.index, "unsupported request in batch entry")),
                };
                Ok(response_entry(ctx.base_url(), &w, pref))
            }
            .await;
            out.push(match r {
                Ok(v) => v,
                Err(err) => {
                    let (status, issue) = crate::status_of(&err);
                    json!({"response": {"status": status.to_string(), "outcome": operation_outcome(&issue)}})
                }
            });
        }
        Ok(
            json!({"resourceType": "Bundle", "id": self.ids.new_id(), "type": "batch-response", "entry": out}),
        )
    }
}

impl RecordService {
    /// Assigns the ids of a transaction's POSTs and PUTs and resolves its `fullUrl`s and
    /// conditional references (`entries` sorted by method). `fresh` gives the id of an entry
    /// that creates; without it, new ids are drawn.
    async fn plan_ids(
        &self,
        ctx: &RequestContext,
        entries: &[Entry],
        grants: &HashMap<(String, Action), medmesh_policy::Grant>,
        matcher: &mut Matcher<'_>,
        fresh: Option<&HashMap<usize, String>>,
    ) -> Result<IdPlan, RecordError> {
        let mut plan = IdPlan::default();
        let fresh_id = |index: usize| {
            fresh
                .and_then(|f| f.get(&index).cloned())
                .unwrap_or_else(|| self.ids.new_id())
        };
        for e in entries.iter().filter(|e| e.method == Method::Post) {
            let (t, _, _) = split_url(&e.url);
            let id = match &e.if_none_exist {
                Some(cond) => {
                    let (_, q) = split_conditional(cond);
                    let g = grants
                        .get(&(t.clone(), Action::Create))
                        .ok_or(RecordError::Forbidden)?;
                    let found = self.matches_for(matcher, g, &t, q).await?;
                    plan.asked.push((format!("{t}?{q}"), found.clone()));
                    match found.as_slice() {
                        [] => fresh_id(e.index),
                        [id] => {
                            plan.existing.insert(e.index, id.clone());
                            id.clone()
                        }
                        _ => return Err(RecordError::MultipleMatches),
                    }
                }
                None => fresh_id(e.index),
            };
            if let Some(f) = &e.full_url {
                plan.id_map.insert(f.clone(), format!("{t}/{id}"));
            }
            plan.post_ids.insert(e.index, id);
        }
        for e in entries.iter().filter(|e| e.method == Method::Put) {
            let (t, id, query) = split_url(&e.url);
            let g = grants
                .get(&(t.clone(), Action::Update))
                .ok_or(RecordError::Forbidden)?;
            let id = match (id, query) {
                (Some(id), None) => id,
                (None, Some(q)) => {
                    let found = self.matches_for(matcher, g, &t, &q).await?;
                    plan.asked.push((format!("{t}?{q}"), found.clone()));
                    match found.as_slice() {
                        [] => e
                            .resource
                            .as_ref()
                            .and_then(|r| r.get("id"))
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .unwrap_or_else(|| fresh_id(e.index)),
                        [id] => id.clone(),
                        _ => return Err(RecordError::MultipleMatches),
                    }
                }
                _ => return Err(entry_error(e.index, "PUT needs Type/id or Type?query")),
            };
            if let Some(f) = &e.full_url {
                plan.id_map.insert(f.clone(), format!("{t}/{id}"));
            }
            plan.put_ids.insert(e.index, id);
        }
        for c in conditional_references_of(entries) {
            if plan.id_map.contains_key(&c) {
                continue;
            }
            let (t, q) = split_conditional(&c);
            let t = t.unwrap_or_default();
            self.check_type(t).map_err(|_| {
                RecordError::invalid(
                    IssueType::Invalid,
                    format!("conditional reference to unknown type '{t}'"),
                )
            })?;
            // Resolving a conditional reference is a search: it needs that permission.
            let g = self.authorize(ctx, Action::Search, Some(t)).await?;
            let found = self.matches_for(matcher, &g, t, q).await?;
            plan.asked.push((c.clone(), found.clone()));
            match found.as_slice() {
                [id] => {
                    plan.id_map.insert(c.clone(), format!("{t}/{id}"));
                }
                [] => {
                    return Err(RecordError::invalid(
                        IssueType::NotFound,
                        format!("conditional reference {t}?... matched nothing"),
                    ));
                }
                _ => return Err(RecordError::MultipleMatches),
            }
        }
        Ok(plan)
    }

    /// The transaction's new resources, prepared before the write lock (see
    /// `crate::forecast`). `None` when the forecast cannot stand in for the work under the
    /// lock: deletes and patches change what later entries see, and a conditional reference
    /// is a search whose refusal must be audited once, under the lock.
    async fn forecast(
        &self,
        ctx: &RequestContext,
        entries: &[Entry],
        grants: &HashMap<(String, Action), medmesh_policy::Grant>,
    ) -> Option<Forecast> {
        if entries
            .iter()
            .any(|e| matches!(e.method, Method::Delete | Method::Patch))
        {
            return None;
        }
        if !conditional_references_of(entries).is_empty() {
            return None;
        }
        // Read first: a consent written after this reading raises the generation, and the
        // forecast is then dropped under the lock.
        let generation = self.store.consent_generation().await.ok()?;
        let fresh: HashMap<usize, String> = entries
            .iter()
            // The entries that may draw a new id: POSTs, and PUTs by condition.
            .filter(|e| {
                e.method == Method::Post || (e.method == Method::Put && e.url.contains('?'))
            })
            .map(|e| (e.index, self.ids.new_id()))
            .collect();
        let plan = self
            .plan_ids(ctx, entries, grants, &mut Matcher::Outside, Some(&fresh))
            .await
            .ok()?;
        let urls: Vec<(String, Option<String>)> = entries
            .iter()
            .map(|e| {
                let (t, id, _) = split_url(&e.url);
                (t, id)
            })
            .collect();
        let planned: Vec<Planned<'_>> = entries
            .iter()
            .zip(&urls)
            .filter(|(e, _)| matches!(e.method, Method::Post | Method::Put))
            .filter_map(|(e, (t, id))| {
                Some(Planned {
                    index: e.index,
                    is_post: e.method == Method::Post,
                    rt: t,
                    url_id: id.as_deref(),
                    resource: e.resource.as_ref()?,
                })
            })
            .collect();
        self.prepare_versions(ctx, grants, &planned, &plan, fresh, generation)
            .await
    }
}
