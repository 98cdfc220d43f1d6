//! The record service: every FHIR interaction, over the store port, behind the PDP.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use medmesh_audit::{AuditEntry, Outcome};
use medmesh_fhir::datetime::{self, format_instant};
use medmesh_fhir::json as fhir_json;
use medmesh_fhir::search::{self, Handling, Include, SearchQuery, SummaryMode, TotalMode};
use medmesh_fhir::{Definitions, Issue, IssueType, index, operation_outcome, resource, validate};
use medmesh_policy::{
    Action, AuditView, Grant, InboxOwner, InterfaceMessages, KeyAdmin, KeyStatusView, Pdp, Reach,
    ReviewRight,
};
use medmesh_store::{
    HistoryQuery, HistoryScope, NewVersion, PageRequest, RecordStore, StoredVersion, VersionHead,
};
use serde_json::{Value, json};

use crate::bundle::{self, encode_query};
use crate::context::{Clock, IdSource, RequestContext};
use crate::error::RecordError;
use crate::forecast::PreparedVersion;
use medmesh_at_rest::{AtRest, WriteTx, body_context};

/// The most search-index entries one resource version may have (blind-index prefix tokens
/// included). A Synthea patient's largest resource has a few hundred.
pub const MAX_INDEX_ROWS: usize = 20_000;

/// Default page size for search and history.
pub const DEFAULT_COUNT: u32 = 20;
/// Largest page size served.
pub const MAX_COUNT: u32 = 1000;

/// The result of a write.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    /// The resource as stored (with id and meta), or `None` for a deletion.
    pub resource: Option<Value>,
    /// Resource type.
    pub resource_type: String,
    /// Logical id.
    pub id: String,
    /// Version written (or found).
    pub version: i64,
    /// When, micros.
    pub last_updated: i64,
    /// What happened.
    pub status: WriteStatus,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStatus {
    /// A new resource.
    Created,
    /// A new version.
    Updated,
    /// The update was identical to the current version; nothing was written.
    Unchanged,
    /// A conditional create found an existing match.
    Existing,
    /// A deletion (or nothing to delete).
    Deleted,
}

/// A resource as read.
#[derive(Debug, Clone)]
pub struct ReadOutcome {
    /// The resource, with meta.
    pub resource: Value,
    /// Version.
    pub version: i64,
    /// Last updated, micros.
    pub last_updated: i64,
}

/// The record service.
pub struct RecordService {
    pub(crate) store: Arc<dyn RecordStore>,
    /// Encryption at rest; `None` stores bodies and index values in clear.
    pub(crate) at_rest: Option<Arc<AtRest>>,
    pub(crate) pdp: Pdp,
    pub(crate) defs: &'static Definitions,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) ids: Arc<dyn IdSource>,
    pub(crate) audit: crate::audit_writer::AuditWriter,
    pub(crate) trust: crate::policy_facts::TrustConfig,
    /// Practitioners' compiled access, kept while its facts stand.
    pub(crate) reach_cache: crate::reach_cache::ReachCache,
    /// How many versions prepared before the write lock were used, and how many were
    /// prepared again under it.
    pub(crate) forecasts: crate::forecast::ForecastCounts,
    /// The order in which transactions stamped before the lock take it.
    pub(crate) stamps: Arc<crate::forecast::StampQueue>,
    /// Capabilities' rules on writes of their types through the FHIR API.
    pub(crate) write_rules: crate::write_rules::WriteRules,
}

impl std::fmt::Debug for RecordService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordService").finish_non_exhaustive()
    }
}

/// Where a conditional URL's query starts: `Patient?identifier=x` or `identifier=x`.
pub fn split_conditional(url: &str) -> (Option<&str>, &str) {
    match url.split_once('?') {
        Some((t, q)) => (Some(t).filter(|t| !t.is_empty()), q),
        None => (None, url),
    }
}

/// Decodes a URL query string into pairs.
pub fn parse_query_string(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

/// Canonical content of a resource for change detection: without `meta.versionId`/`lastUpdated`.
fn content_key(v: &Value) -> Value {
    let mut c = v.clone();
    if let Some(meta) = c.get_mut("meta").and_then(Value::as_object_mut) {
        meta.remove("versionId");
        meta.remove("lastUpdated");
        if meta.is_empty() {
            c.as_object_mut().map(|o| o.remove("meta"));
        }
    }
    c
}

/// One sign-in step, for [`RecordService::audit_sign_in`].
#[derive(Debug, Clone, Copy)]
pub struct SignInEvent<'a> {
    /// The request's operation id.
    pub operation_id: &'a medmesh_kernel::OperationId,
    /// The account, when known.
    pub subject: Option<&'a str>,
    /// The account's patient record, if any.
    pub patient: Option<&'a str>,
    /// `login-password`, `login-totp`...
    pub step: &'a str,
    /// Whether the step succeeded.
    pub succeeded: bool,
    /// The client's address.
    pub source_ip: Option<&'a str>,
}

impl RecordService {
    /// Assembles the service from its ports.
    pub fn new(
        store: Arc<dyn RecordStore>,
        defs: &'static Definitions,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdSource>,
    ) -> Self {
        let audit = crate::audit_writer::AuditWriter::start(store.clone());
        Self {
            store,
            at_rest: None,
            pdp: Pdp,
            defs,
            clock,
            ids,
            audit,
            trust: crate::policy_facts::TrustConfig::default(),
            reach_cache: Default::default(),
            forecasts: Default::default(),
            stamps: Default::default(),
            write_rules: Default::default(),
        }
    }

    /// Sets a capability's rule on the FHIR API's writes of `rt` (see
    /// [`crate::write_rules`]).
    pub fn with_write_rule(
        mut self,
        rt: &str,
        rule: Arc<dyn crate::write_rules::WriteRule>,
    ) -> Self {
        self.write_rules.set(rt, rule);
        self
    }

    /// Turns on encryption at rest: bodies sealed under per-patient keys, identifying
    /// index values blinded.
    pub fn with_encryption(mut self, at_rest: Arc<AtRest>) -> Self {
        self.at_rest = Some(at_rest);
        self
    }

    /// Starts a write transaction.
    pub(crate) async fn begin_write(&self) -> Result<WriteTx, RecordError> {
        Ok(WriteTx::new(
            self.store.begin().await?,
            self.at_rest.clone(),
        ))
    }

    /// Blinds a query's identifying values when encryption at rest is on.
    pub(crate) fn blind(&self, q: &mut SearchQuery) -> Result<(), RecordError> {
        if let Some(a) = &self.at_rest {
            a.blind_index().blind_query(q)?;
        }
        Ok(())
    }

    /// Seals text stored outside a resource body (a consent, a break-glass reason) under
    /// `owner`'s key.
    pub(crate) async fn seal_text(
        &self,
        tx: &mut WriteTx,
        owner: &str,
        context: &str,
        text: String,
    ) -> Result<String, RecordError> {
        match &self.at_rest {
            Some(a) => Ok(a.seal_text_in(tx, owner, context, &text).await?),
            None => Ok(text),
        }
    }

    /// Opens text sealed by [`Self::seal_text`].
    pub(crate) async fn open_text(
        &self,
        context: &str,
        text: String,
    ) -> Result<String, RecordError> {
        match &self.at_rest {
            Some(a) => Ok(a.open_text(context, &text).await?),
            None => Ok(text),
        }
    }

    /// Sets the trust settings (break-glass duration, encounter window, label rules).
    pub fn with_trust(mut self, trust: crate::policy_facts::TrustConfig) -> Self {
        self.trust = trust;
        self
    }

    /// The definitions in use.
    pub fn definitions(&self) -> &'static Definitions {
        self.defs
    }

    /// Whether the store answers (for health checks); reads no data.
    ///
    /// # Errors
    /// When the store cannot be reached.
    pub async fn ping(&self) -> Result<(), RecordError> {
        Ok(self.store.ping().await?)
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now_micros()
    }

    /// Appends audit entries through the group-commit writer; durable when this returns.
    pub(crate) async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), RecordError> {
        Ok(self.audit.append(entries).await?)
    }

    /// Asks the PDP for the right to see one patient's oversight data (access log, access
    /// map, notifications), or with `None` the whole log (node operators).
    ///
    /// # Errors
    /// [`RecordError::Forbidden`] when the PDP refuses.
    pub fn audit_view(
        &self,
        ctx: &RequestContext,
        patient: Option<&str>,
    ) -> Result<AuditView, RecordError> {
        self.pdp
            .authorize_audit_view(ctx.actor(), patient)
            .map_err(|_| RecordError::Forbidden)
    }

    /// Asks the PDP for the right to review break-glass declarations.
    ///
    /// # Errors
    /// [`RecordError::Forbidden`] when the PDP refuses.
    pub fn review_right(&self, ctx: &RequestContext) -> Result<ReviewRight, RecordError> {
        self.pdp
            .authorize_review(ctx.actor())
            .map_err(|_| RecordError::Forbidden)
    }

    /// Asks the PDP for the right to change a patient's notification inbox.
    ///
    /// # Errors
    /// [`RecordError::Forbidden`] when the PDP refuses.
    pub fn inbox_owner(
        &self,
        ctx: &RequestContext,
        patient: &str,
    ) -> Result<InboxOwner, RecordError> {
        self.pdp
            .authorize_inbox(ctx.actor(), patient)
            .map_err(|_| RecordError::Forbidden)
    }

    /// Asks the PDP for the right to read the caller's own staff inbox.
    ///
    /// # Errors
    /// [`RecordError::Forbidden`] for a patient or an actor with no role.
    pub fn staff_inbox(
        &self,
        ctx: &RequestContext,
    ) -> Result<medmesh_policy::StaffInbox, RecordError> {
        self.pdp
            .authorize_staff_inbox(ctx.actor())
            .map_err(|_| RecordError::Forbidden)
    }

    /// Asks the PDP for the right to administer the node's encryption keys.
    ///
    /// # Errors
    /// [`RecordError::Forbidden`] when the PDP refuses.
    pub fn key_admin(&self, ctx: &RequestContext) -> Result<KeyAdmin, RecordError> {
        self.pdp
            .authorize_key_admin(ctx.actor())
            .map_err(|_| RecordError::Forbidden)
    }

    /// The PDP's permit to open and replay the interface engine's stored messages (node
    /// admins, the operator).
    ///
    /// # Errors
    /// [`RecordError::Forbidden`].
    pub fn interface_messages(
        &self,
        ctx: &RequestContext,
    ) -> Result<InterfaceMessages, RecordError> {
        self.pdp
            .authorize_interface_messages(ctx.actor())
            .map_err(|_| RecordError::Forbidden)
    }

    /// The PDP's permit to see the state of the node's keys (node admins, the operator).
    ///
    /// # Errors
    /// [`RecordError::Forbidden`].
    pub fn key_status_view(&self, ctx: &RequestContext) -> Result<KeyStatusView, RecordError> {
        self.pdp
            .authorize_key_status(ctx.actor())
            .map_err(|_| RecordError::Forbidden)
    }

    /// Records a sign-in step (password, second factor, OIDC callback) in the audit log:
    /// who (or `anonymous`), which step, whether it succeeded, and the account's patient, so
    /// the patient sees sign-ins to their account beside reads of their record.
    ///
    /// # Errors
    /// When the entry could not be committed.
    pub async fn audit_sign_in(&self, sign_in: SignInEvent<'_>) -> Result<(), RecordError> {
        let mut e = AuditEntry::new(
            self.now(),
            sign_in.operation_id.as_str(),
            sign_in.subject.unwrap_or("anonymous"),
            sign_in.step,
            if sign_in.succeeded {
                Outcome::Success
            } else {
                Outcome::Failed
            },
        );
        e.source_ip = sign_in.source_ip.map(str::to_string);
        e.patients = sign_in.patient.map(str::to_string).into_iter().collect();
        self.append_audit(vec![e]).await
    }

    /// An audit entry for this request. Ids are normalised to `Type/id` references.
    pub(crate) fn entry(
        &self,
        ctx: &RequestContext,
        action: &str,
        rt: Option<&str>,
        ids: Vec<String>,
        outcome: Outcome,
    ) -> AuditEntry {
        AuditEntry {
            time_micros: self.now(),
            operation_id: ctx.operation_id().to_string(),
            actor: ctx.actor().subject().to_string(),
            action: action.to_string(),
            resource_type: rt.map(str::to_string),
            // Every entry names resources the same way, `Type/id`, whether the caller had a
            // bare id (read, write) or a reference already (search, history, $everything).
            resource_ids: ids
                .into_iter()
                .map(|id| match rt {
                    Some(t) if !id.contains('/') => format!("{t}/{id}"),
                    _ => id,
                })
                .collect(),
            outcome,
            source_ip: ctx.source_ip().map(str::to_string),
            patients: Vec::new(),
            purpose: None,
            basis: Vec::new(),
            reason: None,
            chain: Vec::new(),
        }
    }

    /// Asks the PDP; a denial is audited and becomes [`RecordError::Forbidden`].
    pub(crate) async fn authorize(
        &self,
        ctx: &RequestContext,
        action: Action,
        rt: Option<&str>,
    ) -> Result<Grant, RecordError> {
        match self.pdp.authorize(ctx.actor(), action, rt) {
            Ok(g) if self.pdp.needs_reach(ctx.actor(), rt) => {
                let reach = self.reach_of(ctx.actor(), g.compartment()).await?;
                Ok(self.pdp.with_reach(g, reach))
            }
            Ok(g) => Ok(g),
            Err(denied) => self.refuse(ctx, action, rt, &denied.reason).await,
        }
    }

    /// Audits a refusal and answers 403.
    async fn refuse<T>(
        &self,
        ctx: &RequestContext,
        action: Action,
        rt: Option<&str>,
        reason: &str,
    ) -> Result<T, RecordError> {
        tracing::info!(operation_id = %ctx.operation_id(), reason = %reason, "access denied");
        self.audit
            .append(vec![
                self.entry(ctx, action.code(), rt, Vec::new(), Outcome::Denied)
                    .with_reason(reason),
            ])
            .await?;
        Err(RecordError::Forbidden)
    }

    /// Judges a write by its scopes alone, before its body is read: an actor whose scopes
    /// allow none of `actions` on `rt` is refused (and the refusal audited) without the node
    /// reading, let alone parsing, what they sent. Passing only lets the request go on: the
    /// write is judged again, in full, with its content.
    ///
    /// # Errors
    /// [`RecordError::Forbidden`].
    pub async fn precheck_write(
        &self,
        ctx: &RequestContext,
        actions: &[Action],
        rt: &str,
    ) -> Result<(), RecordError> {
        let mut reason = String::new();
        for action in actions {
            match self.pdp.authorize(ctx.actor(), *action, Some(rt)) {
                Ok(_) => return Ok(()),
                Err(denied) => reason = denied.reason,
            }
        }
        let first = actions.first().copied().unwrap_or(Action::Create);
        self.refuse(ctx, first, Some(rt), &reason).await
    }

    /// Grants for several types at once, without auditing refusals (they judge resources
    /// pulled in by another, audited, interaction: includes, history, `$everything`). The
    /// same PDP and the same reach as [`Self::authorize`].
    pub(crate) async fn quiet_grants(
        &self,
        ctx: &RequestContext,
        action: Action,
        types: &[String],
    ) -> Result<HashMap<String, Grant>, RecordError> {
        let mut out = HashMap::new();
        // One reach for every type (they share the actor and, but for odd scopes, the
        // compartment): `$everything` asks for a hundred types.
        let mut reach: Option<(Option<String>, Arc<Reach>)> = None;
        for t in types {
            let Ok(g) = self.pdp.authorize(ctx.actor(), action, Some(t)) else {
                continue;
            };
            let g = if self.pdp.needs_reach(ctx.actor(), Some(t)) {
                let compartment = g.compartment().map(str::to_string);
                let r = match &reach {
                    Some((c, r)) if *c == compartment => r.clone(),
                    _ => {
                        let r = self.reach_of(ctx.actor(), compartment.as_deref()).await?;
                        reach = Some((compartment, r.clone()));
                        r
                    }
                };
                self.pdp.with_reach(g, r)
            } else {
                g
            };
            out.insert(t.clone(), g);
        }
        Ok(out)
    }

    pub(crate) fn check_type(&self, rt: &str) -> Result<(), RecordError> {
        if self.defs.is_resource_type(rt) {
            Ok(())
        } else {
            Err(RecordError::UnknownType)
        }
    }

    pub(crate) async fn decode(&self, v: &StoredVersion) -> Result<Value, RecordError> {
        match &self.at_rest {
            Some(a) => {
                let bytes = a
                    .open(&body_context(&v.resource_type, &v.id, v.version), &v.body)
                    .await?;
                parse_body(&bytes)
            }
            None => parse_body(&v.body),
        }
    }

    /// Decodes many stored versions, in order. Bodies are opened one after the other (cheap),
    /// then, when there are enough of them, parsed on two threads: a page of a thousand
    /// Observations spent most of its own time in JSON parsing on one core while the other
    /// waited (the portal's `/record`; bench/README.md).
    pub(crate) async fn decode_many(
        &self,
        versions: &[&StoredVersion],
    ) -> Result<Vec<Value>, RecordError> {
        let Some(a) = &self.at_rest else {
            return versions.iter().map(|v| parse_body(&v.body)).collect();
        };
        let mut opened = Vec::with_capacity(versions.len());
        for v in versions {
            opened.push(
                a.open(&body_context(&v.resource_type, &v.id, v.version), &v.body)
                    .await?,
            );
        }
        parse_bodies(opened).await
    }

    /// Checks a resource body against its type and the definitions.
    pub(crate) fn check_resource(&self, rt: &str, resource: &Value) -> Result<(), RecordError> {
        let actual = resource.get("resourceType").and_then(Value::as_str);
        if actual != Some(rt) {
            return Err(RecordError::Invalid(vec![
                Issue::error(IssueType::Invalid, format!("resourceType must be {rt}"))
                    .at(&format!("{rt}.resourceType")),
            ]));
        }
        let issues = validate::validate(self.defs, resource);
        if issues.is_empty() {
            Ok(())
        } else {
            Err(RecordError::Invalid(issues))
        }
    }

    /// Writes one version inside `tx` for the FHIR API: as
    /// [`Self::write_version_unruled`], after the rule a capability set on `rt`, if any.
    #[expect(
        clippy::too_many_arguments,
        reason = "the request, its transaction and grant, the version being written, and what was prepared for it"
    )]
    pub(crate) async fn write_version(
        &self,
        ctx: &RequestContext,
        tx: &mut WriteTx,
        grant: &Grant,
        rt: &str,
        id: &str,
        body: Value,
        head: Option<VersionHead>,
        prepared: Option<PreparedVersion>,
    ) -> Result<WriteOutcome, RecordError> {
        if let Some(rule) = self.write_rules.get(rt) {
            let before = match head.filter(|h| !h.deleted) {
                Some(h) => match self.store.vread(rt, id, h.version).await? {
                    Some(v) => Some(self.decode(&v).await?),
                    None => None,
                },
                None => None,
            };
            rule.check(ctx.actor(), before.as_ref(), &body)
                .map_err(|why| RecordError::invalid(IssueType::BusinessRule, why))?;
        }
        self.write_version_unruled(ctx, tx, grant, rt, id, body, head, prepared)
            .await
    }

    /// Writes one version inside `tx`: stamps meta, indexes, encodes and stores.
    ///
    /// A resource whose index would exceed [`MAX_INDEX_ROWS`] entries is refused. `prepared`,
    /// when it was made for this very version (see `crate::forecast`), is written as it is:
    /// the labels, stamp, index and sealing are not done again under the lock.
    #[expect(
        clippy::too_many_arguments,
        reason = "the request, its transaction and grant, the version being written, and what was prepared for it"
    )]
    pub(crate) async fn write_version_unruled(
        &self,
        ctx: &RequestContext,
        tx: &mut WriteTx,
        grant: &Grant,
        rt: &str,
        id: &str,
        mut body: Value,
        head: Option<VersionHead>,
        prepared: Option<PreparedVersion>,
    ) -> Result<WriteOutcome, RecordError> {
        self.check_write_reach(grant, rt, id, head, Some(&body))
            .await?;
        let version = head.map_or(1, |h| h.version + 1);
        let prepared = match prepared {
            Some(p) if p.version == version && self.sealed_as_now(tx, &p).await? => {
                self.forecasts.used(1);
                Some(p)
            }
            Some(_) => {
                self.forecasts.redone(1);
                None
            }
            None => None,
        };
        let (body, stored, index, now) = match prepared {
            Some(p) => (p.body, p.stored, p.index, p.now),
            None => {
                self.apply_write_policy(ctx, tx, rt, &mut body).await?;
                let now = self.now();
                let (json, index) = self.stamp_and_index(id, version, now, &mut body)?;
                let (stored, index) = match &self.at_rest {
                    Some(a) => {
                        let owner = self.key_owner(rt, &body);
                        let sealed = a
                            .seal_in(tx, &owner, &body_context(rt, id, version), &json)
                            .await?;
                        (sealed, a.blind_index().blind_rows(rt, index))
                    }
                    None => (json, index),
                };
                (body, stored, index, now)
            }
        };
        if index.len() > MAX_INDEX_ROWS {
            // A body within the size bounds can still fan out: 60,000 given names become
            // millions of blind-index prefix tokens, all written under the write lock.
            return Err(RecordError::invalid(
                IssueType::TooCostly,
                format!(
                    "the resource has more searchable values than one resource may ({MAX_INDEX_ROWS} index entries)"
                ),
            ));
        }
        tx.put(NewVersion {
            resource_type: rt.to_string(),
            id: id.to_string(),
            version,
            last_updated: now,
            deleted: false,
            body: stored,
            index,
        })
        .await?;
        self.update_policy_facts(tx, rt, id, Some(&body), head.is_none())
            .await?;
        let status = if head.is_some_and(|h| !h.deleted) {
            WriteStatus::Updated
        } else {
            WriteStatus::Created
        };
        Ok(WriteOutcome {
            resource: Some(body),
            resource_type: rt.to_string(),
            id: id.to_string(),
            version,
            last_updated: now,
            status,
        })
    }

    /// Stamps id, version and `lastUpdated` into a body about to be written, and returns its
    /// stored JSON and its index rows (before blinding).
    pub(crate) fn stamp_and_index(
        &self,
        id: &str,
        version: i64,
        now: i64,
        body: &mut Value,
    ) -> Result<(Vec<u8>, Vec<medmesh_fhir::index::IndexRow>), RecordError> {
        resource::stamp(body, id, version, &format_instant(now));
        let index = index::extract(self.defs, body);
        let json = serde_json::to_vec(&*body).map_err(|_| RecordError::Corrupt)?;
        Ok((json, index))
    }

    /// Whether a prepared version is sealed under the key this transaction would use.
    async fn sealed_as_now(
        &self,
        tx: &mut WriteTx,
        prepared: &PreparedVersion,
    ) -> Result<bool, RecordError> {
        match (&self.at_rest, &prepared.sealed_under) {
            (None, None) => Ok(true),
            (Some(a), Some(key)) => Ok(a.adopt_in(tx, key).await?),
            _ => Ok(false),
        }
    }

    /// A restricted grant may write only inside its reach: the new content must be within
    /// it (else 403: the actor knows what they sent), and so must the version it replaces
    /// (else 404: they may not learn that it exists).
    async fn check_write_reach(
        &self,
        grant: &Grant,
        rt: &str,
        id: &str,
        head: Option<VersionHead>,
        new_body: Option<&Value>,
    ) -> Result<(), RecordError> {
        if grant.is_unrestricted() {
            return Ok(());
        }
        if let Some(h) = head.filter(|h| !h.deleted) {
            let current = self
                .store
                .vread(rt, id, h.version)
                .await?
                .ok_or(RecordError::NotFound)?;
            if !self.admits(grant, rt, &self.decode(&current).await?) {
                return Err(RecordError::NotFound);
            }
        }
        if let Some(b) = new_body
            && !(self.admits(grant, rt, b) && self.write_stays_in_compartment(grant, rt, b))
        {
            return Err(RecordError::Forbidden);
        }
        Ok(())
    }

    pub(crate) async fn tombstone(
        &self,
        tx: &mut WriteTx,
        grant: &Grant,
        rt: &str,
        id: &str,
        head: VersionHead,
    ) -> Result<WriteOutcome, RecordError> {
        self.check_write_reach(grant, rt, id, Some(head), None)
            .await?;
        let version = head.version + 1;
        let now = self.now();
        tx.put(NewVersion {
            resource_type: rt.to_string(),
            id: id.to_string(),
            version,
            last_updated: now,
            deleted: true,
            body: Vec::new(),
            index: Vec::new(),
        })
        .await?;
        self.update_policy_facts(tx, rt, id, None, false).await?;
        Ok(WriteOutcome {
            resource: None,
            resource_type: rt.to_string(),
            id: id.to_string(),
            version,
            last_updated: now,
            status: WriteStatus::Deleted,
        })
    }

    /// Parses a conditional query for `rt`, strictly (an unknown parameter must never widen a
    /// conditional match to everything).
    pub(crate) fn conditional_query(
        &self,
        rt: &str,
        query: &str,
    ) -> Result<SearchQuery, RecordError> {
        let params = parse_query_string(query);
        if params.is_empty() {
            return Err(RecordError::invalid(
                IssueType::Invalid,
                "a conditional operation needs search parameters",
            ));
        }
        Ok(search::parse_query(
            self.defs,
            rt,
            &params,
            Handling::Strict,
        )?)
    }

    /// The search a conditional runs: parsed strictly, confined to the grant, blinded.
    pub(crate) fn conditional_search(
        &self,
        grant: &Grant,
        rt: &str,
        query: &str,
    ) -> Result<SearchQuery, RecordError> {
        let mut q = self.conditional_query(rt, query)?;
        self.confine_query(grant, &mut q)?;
        self.blind(&mut q)?;
        Ok(q)
    }

    /// Finds matches of a conditional query inside a transaction (at most 2, to tell one from many).
    pub(crate) async fn conditional_matches(
        &self,
        tx: &mut WriteTx,
        grant: &Grant,
        rt: &str,
        query: &str,
    ) -> Result<Vec<String>, RecordError> {
        let q = self.conditional_search(grant, rt, query)?;
        tx.lock_condition(&format!("{rt}?{query}")).await?;
        Ok(tx
            .search_ids(&q, 2)
            .await?
            .into_iter()
            .map(|(_, id)| id)
            .collect())
    }

    /// `POST /Type` (with optional `If-None-Exist`).
    pub async fn create(
        &self,
        ctx: &RequestContext,
        rt: &str,
        body: Value,
        if_none_exist: Option<&str>,
    ) -> Result<WriteOutcome, RecordError> {
        self.check_type(rt)?;
        let grant = self.authorize(ctx, Action::Create, Some(rt)).await?;
        self.check_resource(rt, &body)?;
        let mut tx = self.begin_write().await?;
        if let Some(cond) = if_none_exist {
            let (_, q) = split_conditional(cond);
            match self
                .conditional_matches(&mut tx, &grant, rt, q)
                .await?
                .as_slice()
            {
                [] => {}
                [id] => {
                    drop(tx);
                    let found = self.read(ctx, rt, id).await?;
                    return Ok(WriteOutcome {
                        resource: Some(found.resource),
                        resource_type: rt.into(),
                        id: id.clone(),
                        version: found.version,
                        last_updated: found.last_updated,
                        status: WriteStatus::Existing,
                    });
                }
                _ => return Err(RecordError::MultipleMatches),
            }
        }
        let id = self.ids.new_id();
        let out = self
            .write_version(ctx, &mut tx, &grant, rt, &id, body, None, None)
            .await?;
        let mut entry = self.entry(ctx, "create", Some(rt), vec![id], Outcome::Success);
        entry.patients = out
            .resource
            .as_ref()
            .map(|r| self.compartment_owners(rt, r))
            .unwrap_or_default();
        tx.append_audit(&entry).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// `GET /Type/id`.
    pub async fn read(
        &self,
        ctx: &RequestContext,
        rt: &str,
        id: &str,
    ) -> Result<ReadOutcome, RecordError> {
        self.check_type(rt)?;
        let grant = self.authorize(ctx, Action::Read, Some(rt)).await?;
        let found = self.store.read(rt, id).await?;
        self.audited_read(ctx, &grant, "read", rt, id, found).await
    }

    /// Audits a read and answers it. The audit entry is durable before the response leaves;
    /// if it cannot be written the read fails closed.
    pub(crate) async fn audited_read(
        &self,
        ctx: &RequestContext,
        grant: &Grant,
        action: &str,
        rt: &str,
        id: &str,
        found: Option<StoredVersion>,
    ) -> Result<ReadOutcome, RecordError> {
        // What the grant does not reach answers as absent (404, never 403), and a restricted
        // grant cannot tell whose a tombstone was, so it sees deleted resources as absent too.
        let mut hidden = false;
        let mut patients = Vec::new();
        // An id that names no resource is whatever the client typed (`Patient/Witting`):
        // it stays out of the log, which records only that a read of the type failed.
        let logged_ids = if found.is_some() {
            vec![id.to_string()]
        } else {
            Vec::new()
        };
        let result = match found {
            None => Err(RecordError::NotFound),
            Some(v) if v.deleted && grant.is_unrestricted() => {
                Err(RecordError::Gone { version: v.version })
            }
            Some(v) if v.deleted => Err(RecordError::NotFound),
            Some(v) => {
                let resource = self.decode(&v).await?;
                patients = self.compartment_owners(rt, &resource);
                if self.admits(grant, rt, &resource) {
                    Ok(ReadOutcome {
                        resource,
                        version: v.version,
                        last_updated: v.last_updated,
                    })
                } else {
                    hidden = true;
                    Err(RecordError::NotFound)
                }
            }
        };
        let outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(_) if hidden => Outcome::Denied,
            Err(_) => Outcome::Failed,
        };
        let mut entry = self.entry(ctx, action, Some(rt), logged_ids, outcome);
        entry.patients = patients;
        self.annotate(&mut entry, grant);
        self.audit.append(vec![entry]).await?;
        result
    }

    /// `GET /Type/id/_history/vid`.
    pub async fn vread(
        &self,
        ctx: &RequestContext,
        rt: &str,
        id: &str,
        version: &str,
    ) -> Result<ReadOutcome, RecordError> {
        self.check_type(rt)?;
        let grant = self.authorize(ctx, Action::Read, Some(rt)).await?;
        let version: i64 = version.parse().map_err(|_| RecordError::NotFound)?;
        let found = self.store.vread(rt, id, version).await?;
        self.audited_read(ctx, &grant, "vread", rt, id, found).await
    }

    /// `PUT /Type/id`: update, or create with the client's id.
    pub async fn update(
        &self,
        ctx: &RequestContext,
        rt: &str,
        id: &str,
        body: Value,
        if_match: Option<i64>,
    ) -> Result<WriteOutcome, RecordError> {
        self.check_type(rt)?;
        if resource::ResourceId::parse(id).is_none() {
            return Err(RecordError::invalid(
                IssueType::Value,
                "the id in the URL is not a valid FHIR id",
            ));
        }
        if body.get("id").and_then(Value::as_str) != Some(id) {
            return Err(RecordError::BadRequest(vec![
                Issue::error(
                    IssueType::Invalid,
                    "the resource id must match the id in the URL",
                )
                .at(&format!("{rt}.id")),
            ]));
        }
        let grant = self.authorize(ctx, Action::Update, Some(rt)).await?;
        self.check_resource(rt, &body)?;
        let mut tx = self.begin_write().await?;
        let out = self
            .update_in_tx(ctx, &mut tx, &grant, rt, id, body, if_match, None)
            .await?;
        self.commit_write(ctx, tx, "update", out).await
    }

    /// An update inside `tx`; `prepared` as for [`Self::write_version`].
    #[expect(
        clippy::too_many_arguments,
        reason = "the write pipeline needs each of these, and they differ in kind"
    )]
    pub(crate) async fn update_in_tx(
        &self,
        ctx: &RequestContext,
        tx: &mut WriteTx,
        grant: &Grant,
        rt: &str,
        id: &str,
        body: Value,
        if_match: Option<i64>,
        prepared: Option<PreparedVersion>,
    ) -> Result<WriteOutcome, RecordError> {
        let head = tx.head(rt, id).await?;
        match (head, if_match) {
            (Some(h), Some(v)) if h.version != v => {
                return Err(RecordError::PreconditionFailed(format!(
                    "the current version is {}",
                    h.version
                )));
            }
            (None, Some(_)) => {
                return Err(RecordError::PreconditionFailed(
                    "the resource does not exist".into(),
                ));
            }
            (None, None) | (Some(VersionHead { deleted: true, .. }), None) => {
                // Update as create needs create permission too.
                self.authorize(ctx, Action::Create, Some(rt)).await?;
            }
            _ => {}
        }
        if let Some(h) = head.filter(|h| !h.deleted) {
            // An identical update writes nothing (no new version), so re-imports are idempotent.
            if let Some(current) = self.store.vread(rt, id, h.version).await? {
                let current = self.decode(&current).await?;
                if content_key(&current) == content_key(&body) {
                    let last = current
                        .pointer("/meta/lastUpdated")
                        .and_then(Value::as_str)
                        .and_then(datetime::parse_range)
                        .map_or(0, |r| r.lo);
                    return Ok(WriteOutcome {
                        resource: Some(current),
                        resource_type: rt.into(),
                        id: id.into(),
                        version: h.version,
                        last_updated: last,
                        status: WriteStatus::Unchanged,
                    });
                }
            }
        }
        self.write_version(ctx, tx, grant, rt, id, body, head, prepared)
            .await
    }

    /// `PUT /Type?query`: conditional update.
    pub async fn conditional_update(
        &self,
        ctx: &RequestContext,
        rt: &str,
        query: &str,
        mut body: Value,
    ) -> Result<WriteOutcome, RecordError> {
        self.check_type(rt)?;
        let grant = self.authorize(ctx, Action::Update, Some(rt)).await?;
        self.check_resource(rt, &body)?;
        let mut tx = self.begin_write().await?;
        let matches = self.conditional_matches(&mut tx, &grant, rt, query).await?;
        let id = match matches.as_slice() {
            [] => body
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| self.ids.new_id()),
            [id] => {
                if body
                    .get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|b| b != id)
                {
                    return Err(RecordError::invalid(
                        IssueType::Invalid,
                        "the resource id does not match the resource found",
                    ));
                }
                id.clone()
            }
            _ => return Err(RecordError::MultipleMatches),
        };
        if let Some(o) = body.as_object_mut() {
            o.insert("id".into(), Value::String(id.clone()));
        }
        let out = self
            .update_in_tx(ctx, &mut tx, &grant, rt, &id, body, None, None)
            .await?;
        self.commit_write(ctx, tx, "update", out).await
    }

    /// Ends a single-resource write: audits and commits it, unless it changed nothing (then
    /// the transaction is dropped, which rolls back nothing but the row locks).
    async fn commit_write(
        &self,
        ctx: &RequestContext,
        mut tx: WriteTx,
        action: &str,
        out: WriteOutcome,
    ) -> Result<WriteOutcome, RecordError> {
        if out.status != WriteStatus::Unchanged {
            let mut entry = self.entry(
                ctx,
                action,
                Some(&out.resource_type),
                vec![out.id.clone()],
                Outcome::Success,
            );
            entry.patients = out
                .resource
                .as_ref()
                .map(|r| self.compartment_owners(&out.resource_type, r))
                .unwrap_or_default();
            tx.append_audit(&entry).await?;
            tx.commit().await?;
        }
        Ok(out)
    }

    /// `PATCH /Type/id` with a JSON Patch.
    pub async fn patch(
        &self,
        ctx: &RequestContext,
        rt: &str,
        id: &str,
        patch: &Value,
        if_match: Option<i64>,
    ) -> Result<WriteOutcome, RecordError> {
        self.check_type(rt)?;
        let grant = self.authorize(ctx, Action::Update, Some(rt)).await?;
        let current = self.store.read(rt, id).await?;
        let current = match current {
            None => return Err(RecordError::NotFound),
            Some(v) if v.deleted => return Err(RecordError::Gone { version: v.version }),
            Some(v) => v,
        };
        if if_match.is_some_and(|m| m != current.version) {
            return Err(RecordError::PreconditionFailed(format!(
                "the current version is {}",
                current.version
            )));
        }
        let patched = resource::apply_json_patch(&self.decode(&current).await?, patch)?;
        if patched.get("id").and_then(Value::as_str) != Some(id)
            || patched.get("resourceType").and_then(Value::as_str) != Some(rt)
        {
            return Err(RecordError::invalid(
                IssueType::Invalid,
                "a patch may not change the id or resourceType",
            ));
        }
        self.check_resource(rt, &patched)?;
        let mut tx = self.begin_write().await?;
        // Patch applies to the version read; a concurrent write in between is a conflict.
        let out = self
            .update_in_tx(
                ctx,
                &mut tx,
                &grant,
                rt,
                id,
                patched,
                Some(current.version),
                None,
            )
            .await?;
        self.commit_write(ctx, tx, "patch", out).await
    }

    /// `DELETE /Type/id`: writes a versioned tombstone. Deleting what is absent succeeds.
    pub async fn delete(
        &self,
        ctx: &RequestContext,
        rt: &str,
        id: &str,
    ) -> Result<WriteOutcome, RecordError> {
        self.check_type(rt)?;
        let grant = self.authorize(ctx, Action::Delete, Some(rt)).await?;
        let mut tx = self.begin_write().await?;
        let out = self.delete_in_tx(&mut tx, &grant, rt, id).await?;
        tx.append_audit(&self.entry(
            ctx,
            "delete",
            Some(rt),
            vec![id.to_string()],
            Outcome::Success,
        ))
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    pub(crate) async fn delete_in_tx(
        &self,
        tx: &mut WriteTx,
        grant: &Grant,
        rt: &str,
        id: &str,
    ) -> Result<WriteOutcome, RecordError> {
        match tx.head(rt, id).await? {
            Some(h) if !h.deleted => self.tombstone(tx, grant, rt, id, h).await,
            h => Ok(WriteOutcome {
                resource: None,
                resource_type: rt.into(),
                id: id.into(),
                version: h.map_or(0, |h| h.version),
                last_updated: self.now(),
                status: WriteStatus::Deleted,
            }),
        }
    }

    /// `DELETE /Type?query`: deletes the one match (412 for several).
    pub async fn conditional_delete(
        &self,
        ctx: &RequestContext,
        rt: &str,
        query: &str,
    ) -> Result<WriteOutcome, RecordError> {
        self.check_type(rt)?;
        let grant = self.authorize(ctx, Action::Delete, Some(rt)).await?;
        let mut tx = self.begin_write().await?;
        let matches = self.conditional_matches(&mut tx, &grant, rt, query).await?;
        let out = match matches.as_slice() {
            [] => {
                return Ok(WriteOutcome {
                    resource: None,
                    resource_type: rt.into(),
                    id: String::new(),
                    version: 0,
                    last_updated: self.now(),
                    status: WriteStatus::Deleted,
                });
            }
            [id] => self.delete_in_tx(&mut tx, &grant, rt, id).await?,
            _ => return Err(RecordError::MultipleMatches),
        };
        tx.append_audit(&self.entry(
            ctx,
            "delete",
            Some(rt),
            vec![out.id.clone()],
            Outcome::Success,
        ))
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    /// `GET /Type?...` and `POST /Type/_search`: a searchset Bundle.
    pub async fn search(
        &self,
        ctx: &RequestContext,
        rt: &str,
        params: &[(String, String)],
        handling: Handling,
    ) -> Result<Value, RecordError> {
        self.search_in(ctx, None, rt, params, handling).await
    }

    /// A compartment search, `GET /[Compartment]/[id]/[type]?...`: the search of `rt`,
    /// limited to the compartment of `compartment/id` (R4's CompartmentDefinitions for
    /// Patient, Encounter, Practitioner, RelatedPerson and Device). The PDP judges it as any
    /// search of `rt`; the compartment only narrows it further.
    ///
    /// # Errors
    /// As [`Self::search`]; 400 for a type that defines no compartment, or one outside it.
    pub async fn compartment_search(
        &self,
        ctx: &RequestContext,
        compartment: &str,
        id: &str,
        rt: &str,
        params: &[(String, String)],
        handling: Handling,
    ) -> Result<Value, RecordError> {
        let members = self.defs.compartment(compartment).ok_or_else(|| {
            RecordError::invalid(
                IssueType::NotSupported,
                format!("{compartment} defines no compartment"),
            )
        })?;
        self.check_type(rt)?;
        let Some(within) = crate::confine::compartment_criterion(members, compartment, id, rt)
        else {
            return Err(RecordError::invalid(
                IssueType::NotSupported,
                format!("{rt} is not in the {compartment} compartment"),
            ));
        };
        let base = format!("{compartment}/{id}/{rt}");
        self.search_in(ctx, Some((base, within)), rt, params, handling)
            .await
    }

    async fn search_in(
        &self,
        ctx: &RequestContext,
        within: Option<(String, search::Criterion)>,
        rt: &str,
        params: &[(String, String)],
        handling: Handling,
    ) -> Result<Value, RecordError> {
        self.check_type(rt)?;
        let grant = self.authorize(ctx, Action::Search, Some(rt)).await?;
        let mut q = search::parse_query(self.defs, rt, params, handling)?;
        let path = match within {
            Some((path, compartment)) => {
                q.criteria.push(compartment);
                path
            }
            None => rt.to_string(),
        };
        self.confine_query(&grant, &mut q)?;
        self.blind(&mut q)?;
        let summary_count = q.summary == Some(SummaryMode::Count);
        let count = if summary_count {
            0
        } else {
            q.count.unwrap_or(DEFAULT_COUNT).min(MAX_COUNT)
        };
        let page = PageRequest {
            count,
            cursor: q.page.clone(),
            with_total: q.total == TotalMode::Accurate || summary_count || count == 0,
            snapshot: true,
        };
        let (result, matches) = self.store.search_read(&q, &page).await?;
        let mut seen: HashSet<(String, String)> = result.matches.iter().cloned().collect();
        let included = self.includes(ctx, &q, &result.matches, &mut seen).await?;

        let mut entries = Vec::new();
        let mut returned_ids = Vec::new();
        let mut patients = Vec::new();
        let modes = std::iter::repeat_n("match", matches.len())
            .chain(std::iter::repeat_n("include", included.len()));
        // Each body is decoded once: for the audit entry's patients and for the Bundle.
        let all: Vec<&StoredVersion> = matches.iter().chain(&included).collect();
        let decoded = self.decode_many(&all).await?;
        for ((v, mode), decoded) in all.into_iter().zip(modes).zip(decoded) {
            patients.extend(self.compartment_owners(&v.resource_type, &decoded));
            let r = resource::shaped(self.defs, decoded, q.summary, &q.elements);
            returned_ids.push(format!("{}/{}", v.resource_type, v.id));
            entries.push(fhir_json::search_entry(
                Some(format!("{}/{}/{}", ctx.base_url(), v.resource_type, v.id)),
                r,
                mode,
            ));
        }
        patients.sort();
        patients.dedup();
        let mut issues: Vec<Issue> = q
            .ignored
            .iter()
            .map(|(p, why)| {
                Issue::warning(
                    IssueType::NotSupported,
                    format!("parameter '{p}' was ignored: {why}"),
                )
            })
            .collect();
        if q.count.is_some_and(|c| c > MAX_COUNT) {
            // Said, not silent: a client that asked for more per page must know it got fewer.
            issues.push(Issue::warning(
                IssueType::TooCostly,
                format!("_count was lowered to {MAX_COUNT}, the most one page holds"),
            ));
        }
        if !issues.is_empty() {
            entries.push(fhir_json::search_entry(
                None,
                operation_outcome(&issues),
                "outcome",
            ));
        }
        let mut entry = self.entry(ctx, "search", Some(rt), returned_ids, Outcome::Success);
        entry.patients = patients;
        self.annotate(&mut entry, &grant);
        self.audit.append(vec![entry]).await?;

        let base = format!("{}/{path}", ctx.base_url());
        // Links name the page size actually used, and each page names its own cursor, so a
        // page's `self` is that page (page 2's once equalled page 1's).
        let mut applied: Vec<(String, String)> = q
            .applied
            .iter()
            .filter(|(k, _)| k != "_count")
            .cloned()
            .collect();
        applied.push(("_count".into(), count.to_string()));
        let mut this_page = applied.clone();
        if let Some(cursor) = &q.page {
            this_page.push(("_page".into(), cursor.clone()));
        }
        let mut links = vec![
            json!({"relation": "self", "url": format!("{base}?{}", encode_query(&this_page))}),
            json!({"relation": "first", "url": format!("{base}?{}", encode_query(&applied))}),
        ];
        if let Some(previous) = &result.previous {
            let mut p = applied.clone();
            p.push(("_page".into(), previous.clone()));
            links.push(
                json!({"relation": "previous", "url": format!("{base}?{}", encode_query(&p))}),
            );
        }
        if let Some(next) = &result.next {
            let mut p = applied.clone();
            p.push(("_page".into(), next.clone()));
            links.push(json!({"relation": "next", "url": format!("{base}?{}", encode_query(&p))}));
        }
        let mut b = fhir_json::searchset(
            self.ids.new_id(),
            format_instant(self.now()),
            links,
            entries,
        );
        // Without `_total=accurate`, a total is given only when it is free: the first page
        // holds every match. Counting large results on every page is left to clients that ask.
        let free_total =
            (q.total == TotalMode::WhenFree && q.page.is_none() && result.next.is_none())
                .then_some(result.matches.len() as u64);
        if let Some(t) = result.total.or(free_total) {
            b["total"] = json!(t);
        }
        Ok(b)
    }

    /// Resolves `_include` and `_revinclude` (with `:iterate`), only for types the actor may read.
    async fn includes(
        &self,
        ctx: &RequestContext,
        q: &SearchQuery,
        matches: &[(String, String)],
        seen: &mut HashSet<(String, String)>,
    ) -> Result<Vec<StoredVersion>, RecordError> {
        let mut out: Vec<StoredVersion> = Vec::new();
        if q.includes.is_empty() && q.revincludes.is_empty() {
            return Ok(out);
        }
        let mut frontier: Vec<(String, String)> = matches.to_vec();
        for round in 0..4 {
            let mut found: Vec<(String, String)> = Vec::new();
            let active = |inc: &&Include| round == 0 || inc.iterate;
            for inc in q.includes.iter().filter(active) {
                found.extend(self.store.include_targets(&frontier, inc).await?);
            }
            for inc in q.revincludes.iter().filter(active) {
                found.extend(self.store.revinclude_sources(&frontier, inc).await?);
            }
            let mut candidates = Vec::new();
            for k in found {
                if seen.insert(k.clone()) {
                    candidates.push(k);
                }
            }
            if candidates.is_empty() {
                break;
            }
            // Only what the actor may read leaves the server, and only what they may read
            // leads on to further includes.
            let mut fresh = Vec::new();
            let versions = self.store.read_many(&candidates).await?;
            let mut types: Vec<String> = versions.iter().map(|v| v.resource_type.clone()).collect();
            types.sort();
            types.dedup();
            let grants = self.quiet_grants(ctx, Action::Read, &types).await?;
            for v in versions {
                let Some(grant) = grants.get(&v.resource_type) else {
                    continue;
                };
                if v.deleted || !self.admits(grant, &v.resource_type, &self.decode(&v).await?) {
                    continue;
                }
                fresh.push(v);
            }
            if fresh.is_empty() {
                break;
            }
            frontier = fresh
                .iter()
                .map(|v| (v.resource_type.clone(), v.id.clone()))
                .collect();
            out.extend(fresh);
        }
        Ok(out)
    }

    /// History at instance, type or system level.
    pub async fn history(
        &self,
        ctx: &RequestContext,
        scope: HistoryScope,
        params: &[(String, String)],
    ) -> Result<Value, RecordError> {
        let rt = match &scope {
            HistoryScope::Instance(t, _) | HistoryScope::Type(t) => {
                self.check_type(t)?;
                Some(t.clone())
            }
            HistoryScope::System => None,
        };
        let grant = self.authorize(ctx, Action::Read, rt.as_deref()).await?;
        let mut q = HistoryQuery {
            scope: scope.clone(),
            since: None,
            at: None,
            count: DEFAULT_COUNT,
            cursor: None,
        };
        let bad =
            |p: &str| RecordError::invalid(IssueType::Value, format!("invalid value for {p}"));
        for (k, v) in params {
            match k.as_str() {
                "_since" => {
                    q.since = Some(datetime::parse_range(v).ok_or_else(|| bad("_since"))?.lo)
                }
                "_at" => q.at = Some(datetime::parse_range(v).ok_or_else(|| bad("_at"))?.hi - 1),
                "_count" => q.count = v.parse::<u32>().map_err(|_| bad("_count"))?.min(MAX_COUNT),
                "_page" => q.cursor = Some(v.clone()),
                "_format" | "_pretty" => {}
                other => {
                    return Err(RecordError::invalid(
                        IssueType::NotSupported,
                        format!("unknown history parameter '{other}'"),
                    ));
                }
            }
        }
        let page = self.store.history(&q).await?;
        let mut entries = Vec::new();
        let mut ids = Vec::new();
        let mut types: Vec<String> = page
            .versions
            .iter()
            .map(|v| v.resource_type.clone())
            .collect();
        types.sort();
        types.dedup();
        let grants = if grant.is_unrestricted() {
            HashMap::new()
        } else {
            self.quiet_grants(ctx, Action::Read, &types).await?
        };
        for v in &page.versions {
            let body = if v.deleted {
                None
            } else {
                match self.decode(v).await {
                    Ok(b) => Some(b),
                    // An erased patient's past versions are gone: left out of history.
                    Err(RecordError::Erased) => continue,
                    Err(e) => return Err(e),
                }
            };
            // A restricted grant sees only versions it reaches (tombstones carry no content
            // to judge, so they are left out).
            if !grant.is_unrestricted()
                && !body.as_ref().is_some_and(|b| {
                    grants
                        .get(&v.resource_type)
                        .is_some_and(|g| self.admits(g, &v.resource_type, b))
                })
            {
                continue;
            }
            ids.push(format!(
                "{}/{}/_history/{}",
                v.resource_type, v.id, v.version
            ));
            let mut e = json!({
                "fullUrl": format!("{}/{}/{}", ctx.base_url(), v.resource_type, v.id),
                "request": {"method": if v.deleted { "DELETE" } else if v.version == 1 { "POST" } else { "PUT" },
                            "url": if v.version == 1 && !v.deleted { v.resource_type.clone() } else { format!("{}/{}", v.resource_type, v.id) }},
                "response": {"status": if v.deleted { "204" } else if v.version == 1 { "201" } else { "200" },
                             "etag": format!("W/\"{}\"", v.version), "lastModified": format_instant(v.last_updated)},
            });
            if let Some(b) = body {
                e["resource"] = b;
            }
            entries.push(e);
        }
        self.audit
            .append(vec![self.entry(
                ctx,
                "history",
                rt.as_deref(),
                ids,
                Outcome::Success,
            )])
            .await?;
        let path = match &scope {
            HistoryScope::Instance(t, id) => format!("{}/{t}/{id}/_history", ctx.base_url()),
            HistoryScope::Type(t) => format!("{}/{t}/_history", ctx.base_url()),
            HistoryScope::System => format!("{}/_history", ctx.base_url()),
        };
        let kept: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| k != "_page")
            .cloned()
            .collect();
        let mut links = vec![json!({"relation": "self", "url": bundle::with_query(&path, &kept)})];
        if let Some(next) = page.next {
            let mut p = kept.clone();
            p.push(("_page".into(), next));
            links.push(json!({"relation": "next", "url": bundle::with_query(&path, &p)}));
        }
        let mut b = fhir_json::object([
            ("resourceType", json!("Bundle")),
            ("id", json!(self.ids.new_id())),
            ("type", json!("history")),
            ("link", Value::Array(links)),
            ("entry", Value::Array(entries)),
        ]);
        // The store's total counts every version; a restricted grant must not learn it.
        if grant.is_unrestricted() {
            b["total"] = json!(page.total);
        }
        Ok(b)
    }
}

/// Below this many bodies, parsing them on a second thread costs more than it saves.
const PARALLEL_PARSE_MIN: usize = 128;

fn parse_body(bytes: &[u8]) -> Result<Value, RecordError> {
    serde_json::from_slice(bytes).map_err(|_| RecordError::Corrupt)
}

/// Parses opened bodies in order; a large batch's second half on a blocking thread while
/// this task parses the first.
async fn parse_bodies(mut bodies: Vec<Vec<u8>>) -> Result<Vec<Value>, RecordError> {
    if bodies.len() < PARALLEL_PARSE_MIN {
        return bodies.iter().map(|b| parse_body(b)).collect();
    }
    let second = bodies.split_off(bodies.len() / 2);
    let second = tokio::task::spawn_blocking(move || {
        second
            .iter()
            .map(|b| parse_body(b))
            .collect::<Result<Vec<_>, _>>()
    });
    let mut parsed = bodies
        .iter()
        .map(|b| parse_body(b))
        .collect::<Result<Vec<_>, _>>()?;
    // A parser thread that did not finish (the runtime shutting down) is a failure to read,
    // never a silently shorter page.
    parsed.extend(
        second
            .await
            .map_err(|e| RecordError::Store(medmesh_store::StoreError::backend(e)))??,
    );
    Ok(parsed)
}
