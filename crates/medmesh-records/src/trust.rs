//! The trust network in the record service: reading the facts the PDP reasons over, keeping
//! them in step with writes (edges, consents, derived labels, sharing tags), and the
//! operations on the network itself: break-glass, accepting a referral, and the patient's
//! access map.

use medmesh_at_rest::WriteTx;
use medmesh_audit::{AuditEntry, Outcome};
use medmesh_policy::access::{Edge, EdgeKind, edges_from};
use medmesh_policy::consent::{ConsentRule, SHARED_WITH, parse_consent, shared_with};
use medmesh_policy::labels::{add_labels, derive_labels, labels_of};
use medmesh_policy::{Actor, AuditView, Grant, ReachFacts, ReviewRight};
use medmesh_store::Notification;
use serde_json::{Value, json};

use crate::context::RequestContext;
use crate::{RecordError, RecordService};

/// How long a break-glass declaration lasts when not configured: 4 hours.
pub const DEFAULT_BREAK_GLASS_MICROS: i64 = 4 * 3600 * 1_000_000;
/// How long an encounter keeps its organization's access when not configured: 90 days.
pub const DEFAULT_ENCOUNTER_WINDOW_MICROS: i64 = 90 * 86_400 * 1_000_000;

/// Trust settings.
#[derive(Debug, Clone)]
pub struct TrustConfig {
    /// Break-glass duration, microseconds.
    pub break_glass_micros: i64,
    /// Encounter window, microseconds.
    pub encounter_window_micros: i64,
    /// Label derivation rules.
    pub label_rules: Vec<medmesh_policy::labels::LabelRule>,
}

impl Default for TrustConfig {
    fn default() -> Self {
        Self {
            break_glass_micros: DEFAULT_BREAK_GLASS_MICROS,
            encounter_window_micros: DEFAULT_ENCOUNTER_WINDOW_MICROS,
            label_rules: medmesh_policy::labels::default_label_rules(),
        }
    }
}

/// One line of a patient's access map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLine {
    /// The edge.
    pub edge: Edge,
    /// Whether it holds now.
    pub active: bool,
}

fn categories(resource: &Value) -> Vec<String> {
    resource
        .get("category")
        .map(|c| match c {
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        })
        .unwrap_or_default()
        .iter()
        .flat_map(|cc| {
            cc.get("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("code").and_then(Value::as_str).map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The AEAD context of a stored consent: bound to its patient, so a consent row moved to
/// another patient does not open.
pub(crate) fn consent_context(patient: &str) -> String {
    format!("Consent-of/Patient/{patient}")
}

impl RecordService {
    /// The active privacy consents of these patients, parsed.
    async fn consents_of(
        &self,
        patients: &[String],
    ) -> Result<Vec<std::sync::Arc<ConsentRule>>, RecordError> {
        let mut out = Vec::new();
        for (patient, body) in self.store.consents_of(patients).await? {
            let body = self.open_text(&consent_context(&patient), body).await?;
            if let Some(rule) = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| parse_consent(&v))
            {
                out.push(std::sync::Arc::new(rule));
            }
        }
        Ok(out)
    }

    /// Reads what the PDP needs about a practitioner: their principals, the edges to them,
    /// and the consents of the patients those edges lead to. Read on every request: a
    /// revoked consent or a suspended account counts from the next request.
    pub(crate) async fn reach_facts(&self, actor: &Actor) -> Result<ReachFacts, RecordError> {
        let (principals, edges) = self.store.reach(&actor.seeds(), self.now()).await?;
        let mut patients: Vec<String> = edges.iter().map(|e| e.patient.clone()).collect();
        patients.sort();
        patients.dedup();
        let consents = self.consents_of(&patients).await?;
        Ok(ReachFacts {
            principals,
            edges,
            consents,
        })
    }

    /// Whether a reach-confined grant admits a resource: a shared type always; otherwise a
    /// patient whose compartment holds it must be open to the actor for its type and labels.
    pub(crate) fn reach_admits(&self, grant: &Grant, rt: &str, resource: &Value) -> bool {
        let Some(reach) = grant.reach() else {
            return true;
        };
        if medmesh_policy::is_shared_type(rt) {
            return true;
        }
        let labels = labels_of(resource);
        let tagged = resource
            .pointer("/meta/tag")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|t| {
                t.get("system").and_then(Value::as_str) == Some(SHARED_WITH)
                    && t.get("code")
                        .and_then(Value::as_str)
                        .is_some_and(|c| reach.principals.iter().any(|p| p == c))
            });
        self.compartment_owners(rt, resource)
            .iter()
            .filter_map(|p| reach.patient(p))
            .any(|a| a.admits(rt, &labels, tagged))
    }

    /// Stamps what policy derives from a resource about to be written: labels from the
    /// configured rules, and shared-with tags from the patients' sharing rules.
    pub(crate) async fn apply_write_policy(
        &self,
        ctx: &RequestContext,
        tx: &mut WriteTx,
        rt: &str,
        body: &mut Value,
    ) -> Result<(), RecordError> {
        add_labels(body, &derive_labels(&self.trust.label_rules, body));
        let owners = self.compartment_owners(rt, body);
        if owners.is_empty() {
            return Ok(());
        }
        // Read once per transaction and patient: an import writes a whole bundle of one
        // patient's resources in one transaction, and this read was one query per resource.
        let consents = match tx.consents.get(&owners) {
            Some(c) => c.clone(),
            None => {
                let c = self.consents_of(&owners).await?;
                tx.consents.insert(owners.clone(), c.clone());
                c
            }
        };
        let author = ctx.actor().clinician().map(|c| c.practitioner.as_str());
        let shared = shared_with(
            consents.iter().map(|c| &**c),
            rt,
            &categories(body),
            author,
            self.now(),
        );
        if shared.is_empty() {
            return Ok(());
        }
        if let Some(obj) = body.as_object_mut() {
            let meta = obj.entry("meta").or_insert_with(|| json!({}));
            if let Some(meta) = meta.as_object_mut() {
                let tags = meta.entry("tag").or_insert_with(|| json!([]));
                if let Some(list) = tags.as_array_mut() {
                    for s in shared {
                        let tag = json!({"system": SHARED_WITH, "code": s});
                        if !list.contains(&tag) {
                            list.push(tag);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Replaces the policy facts a written (or deleted: `None`) resource contributes.
    pub(crate) async fn update_policy_facts(
        &self,
        tx: &mut WriteTx,
        rt: &str,
        id: &str,
        body: Option<&Value>,
    ) -> Result<(), RecordError> {
        if !matches!(
            rt,
            "CareTeam" | "Patient" | "Task" | "Encounter" | "Consent"
        ) {
            return Ok(());
        }
        let source = format!("{rt}/{id}");
        let edges = body
            .map(|b| edges_from(b, self.trust.encounter_window_micros))
            .unwrap_or_default();
        let consent = match (body, body.and_then(parse_consent)) {
            (Some(b), Some(c)) => {
                let sealed = self
                    .seal_text(tx, &c.patient, &consent_context(&c.patient), b.to_string())
                    .await?;
                Some((c.patient, sealed))
            }
            _ => None,
        };
        tx.replace_policy_facts(
            &source,
            &edges,
            consent.as_ref().map(|(p, t)| (p.as_str(), t.as_str())),
        )
        .await?;
        Ok(())
    }

    /// Adds to an audit entry what a reach-confined access rested on.
    pub(crate) fn annotate(&self, entry: &mut AuditEntry, grant: &Grant) {
        let Some(reach) = grant.reach() else {
            return;
        };
        let mut basis = Vec::new();
        let mut purpose = None;
        for p in &entry.patients {
            if let Some(a) = reach.patient(p) {
                basis.extend(a.basis());
                if a.break_glass() || purpose.is_none() {
                    purpose = Some(a.purpose().to_string());
                }
            }
        }
        basis.sort();
        basis.dedup();
        entry.basis = basis;
        entry.purpose = purpose.or_else(|| Some("TREAT".into()));
    }

    /// A verified practitioner declares an emergency: time-boxed access to the patient,
    /// flagged on every access, notified to the patient, listed for review. The reason is
    /// kept for the reviewers, never in the audit log or the notification.
    ///
    /// # Errors
    /// [`RecordError::Forbidden`] unless the actor is a verified practitioner.
    pub async fn declare_break_glass(
        &self,
        ctx: &RequestContext,
        patient_id: &str,
        reason: &str,
    ) -> Result<Edge, RecordError> {
        let clinician = ctx
            .actor()
            .clinician()
            .filter(|c| c.verified && ctx.actor().role() == Some(medmesh_auth::Role::Practitioner));
        let now = self.now();
        let mut entry = AuditEntry::new(
            now,
            ctx.operation_id().as_str(),
            ctx.actor().subject(),
            "break-glass",
            Outcome::Denied,
        );
        entry.source_ip = ctx.source_ip().map(str::to_string);
        entry.patients = vec![patient_id.to_string()];
        entry.purpose = Some("ETREAT".into());
        let (Some(clinician), false) = (clinician, reason.trim().is_empty()) else {
            self.audit
                .append(vec![entry.with_reason(
                    "break-glass needs a verified practitioner and a reason",
                )])
                .await?;
            return Err(RecordError::Forbidden);
        };
        let id = self.ids.new_id();
        let edge = Edge {
            patient: patient_id.to_string(),
            principal: clinician.practitioner.clone(),
            kind: EdgeKind::BreakGlass,
            source: format!("break-glass/{id}"),
            since: now,
            until: Some(now + self.trust.break_glass_micros),
            detail: None,
        };
        let mut tx = self.begin_write().await?;
        // The reason is free text a clinician typed: it may name the patient, so it is
        // sealed under the patient's key like their records.
        let mut edge = edge;
        edge.detail = Some(
            self.seal_text(
                &mut tx,
                patient_id,
                &edge.source,
                reason.chars().take(500).collect(),
            )
            .await?,
        );
        tx.replace_policy_facts(&edge.source, std::slice::from_ref(&edge), None)
            .await?;
        tx.notify(&Notification {
            id: self.ids.new_id(),
            patient_id: patient_id.to_string(),
            kind: "break-glass".into(),
            message: format!(
                "{} declared an emergency and may see your record until {}",
                clinician.practitioner,
                medmesh_fhir::datetime::format_instant(now + self.trust.break_glass_micros)
            ),
            created_micros: now,
            read_micros: None,
        })
        .await?;
        entry.outcome = Outcome::Success;
        entry.basis = vec![edge.source.clone()];
        tx.append_audit(&entry).await?;
        tx.commit().await?;
        Ok(edge)
    }

    /// The practitioner a referral Task names as owner accepts it: the Task becomes
    /// `accepted`, which creates the referral edge (under the patient's consents, which still
    /// apply on every access).
    ///
    /// # Errors
    /// [`RecordError::NotFound`] unless the actor owns a requested referral Task with that id.
    pub async fn accept_referral(
        &self,
        ctx: &RequestContext,
        task_id: &str,
    ) -> Result<(), RecordError> {
        let me = ctx
            .actor()
            .clinician()
            .filter(|c| c.verified)
            .map(|c| c.practitioner.clone());
        let mut tx = self.begin_write().await?;
        let head = tx.head("Task", task_id).await?;
        let current = match head.filter(|h| !h.deleted) {
            Some(h) => self.store.vread("Task", task_id, h.version).await?,
            None => None,
        };
        let mut task = match current {
            Some(v) => self.decode(&v).await?,
            None => return Err(RecordError::NotFound),
        };
        let owner = task.pointer("/owner/reference").and_then(Value::as_str);
        let requested = task.get("status").and_then(Value::as_str) == Some("requested");
        let referral = task
            .pointer("/focus/reference")
            .and_then(Value::as_str)
            .is_some_and(|f| f.starts_with("ServiceRequest/"));
        if me.is_none() || owner != me.as_deref() || !requested || !referral {
            return Err(RecordError::NotFound);
        }
        task["status"] = json!("accepted");
        let grant = self.pdp.internal_grant("Task");
        let out = self
            .write_version(ctx, &mut tx, &grant, "Task", task_id, task, head)
            .await?;
        let mut entry = self.entry(
            ctx,
            "accept-referral",
            Some("Task"),
            vec![task_id.to_string()],
            Outcome::Success,
        );
        entry.patients = out
            .resource
            .as_ref()
            .map(|r| self.compartment_owners("Task", r))
            .unwrap_or_default();
        tx.append_audit(&entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Who can see a patient's data and why: every edge, current or past. The PDP's
    /// [`AuditView`] of that patient is the permission; without one this does not compile:
    ///
    /// ```compile_fail
    /// # async fn f(svc: &medmesh_records::RecordService) {
    /// svc.access_map("Patient/p1").await;
    /// # }
    /// ```
    ///
    /// # Errors
    /// When storage fails; [`RecordError::NotFound`] for a view of the whole log.
    pub async fn access_map(&self, view: &AuditView) -> Result<Vec<AccessLine>, RecordError> {
        let patient_id = view.patient().ok_or(RecordError::NotFound)?;
        let now = self.now();
        let mut out = Vec::new();
        for edge in self.store.patient_edges(patient_id).await? {
            let edge = self.open_edge(edge).await?;
            out.push(AccessLine {
                active: edge.holds_at(now),
                edge,
            });
        }
        Ok(out)
    }

    /// Opens a break-glass edge's sealed reason (gone, if the patient was erased).
    async fn open_edge(&self, mut edge: Edge) -> Result<Edge, RecordError> {
        if edge.kind == EdgeKind::BreakGlass
            && let Some(d) = edge.detail.take()
        {
            edge.detail = match self.open_text(&edge.source, d).await {
                Ok(reason) => Some(reason),
                Err(RecordError::Erased) => None,
                Err(e) => return Err(e),
            };
        }
        Ok(edge)
    }

    /// Break-glass declarations since `since`, for review; the PDP's [`ReviewRight`] is the
    /// permission:
    ///
    /// ```compile_fail
    /// # async fn f(svc: &medmesh_records::RecordService) {
    /// svc.break_glass_queue(0).await;
    /// # }
    /// ```
    ///
    /// # Errors
    /// When storage fails.
    pub async fn break_glass_queue(
        &self,
        _right: &ReviewRight,
        since: i64,
    ) -> Result<Vec<Edge>, RecordError> {
        let mut out = Vec::new();
        for edge in self.store.break_glass_since(since).await? {
            out.push(self.open_edge(edge).await?);
        }
        Ok(out)
    }

    /// Marks one of the patient's notifications read.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] when the patient has no such notification.
    pub async fn mark_notification_read(
        &self,
        inbox: &medmesh_policy::InboxOwner,
        id: &str,
    ) -> Result<(), RecordError> {
        if self
            .store
            .mark_notification_read(inbox.patient(), id, self.now())
            .await?
        {
            Ok(())
        } else {
            Err(RecordError::NotFound)
        }
    }

    /// A patient's notifications; the PDP's [`AuditView`] of that patient is the permission:
    ///
    /// ```compile_fail
    /// # async fn f(svc: &medmesh_records::RecordService) {
    /// svc.notifications("p1").await;
    /// # }
    /// ```
    ///
    /// # Errors
    /// When storage fails; [`RecordError::NotFound`] for a view of the whole log.
    pub async fn notifications(&self, view: &AuditView) -> Result<Vec<Notification>, RecordError> {
        let patient_id = view.patient().ok_or(RecordError::NotFound)?;
        let mut list = self.store.notifications(patient_id).await?;
        // Messages that name a document are sealed under the patient's key.
        for n in &mut list {
            if n.message.starts_with(medmesh_at_rest::TEXT_PREFIX) {
                let sealed = std::mem::take(&mut n.message);
                n.message = self
                    .open_text(&format!("notification/{}", n.id), sealed)
                    .await?;
            }
        }
        Ok(list)
    }
}
