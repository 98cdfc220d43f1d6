//! The trust network's operations: a practitioner's break-glass declaration, accepting a
//! referral, a patient's access map and notifications, and the review queue.
//!
//! The facts the PDP reasons over (edges, consents, labels) are kept in step with every
//! write by the record service itself (`medmesh_records::policy_facts`); this crate acts on
//! the network through the record core, so its writes are sealed and audited like any other.

use std::sync::Arc;

use medmesh_audit::{AuditEntry, Outcome};
use medmesh_kernel::RequestContext;
use medmesh_policy::access::{Edge, EdgeKind};
use medmesh_policy::{AuditView, InboxOwner, Pdp, ReviewRight};
use medmesh_records::{RecordError, RecordService};
use medmesh_store::{Notification, NotificationStore, RecordStore, ResourceStore, TrustEdgeStore};
use serde_json::{Value, json};

/// How long a break-glass declaration lasts when not configured: 4 hours.
pub const DEFAULT_BREAK_GLASS_MICROS: i64 = 4 * 3600 * 1_000_000;

/// One line of a patient's access map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLine {
    /// The edge.
    pub edge: Edge,
    /// Whether it holds now.
    pub active: bool,
}

/// A referral sent to a practitioner, as their inbox lists it before they may read the
/// patient's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingReferral {
    /// The Task's id (what accepting names).
    pub task_id: String,
    /// The patient (`Patient/x`); their record opens to the owner once accepted.
    pub patient: Option<String>,
    /// Who referred (`Practitioner/x`).
    pub requester: Option<String>,
    /// The Task's status (`requested`, `accepted`, `rejected`...).
    pub status: String,
    /// `authoredOn`, as written.
    pub authored_on: Option<String>,
}

/// The trust network's operations, over the record service.
pub struct TrustNetwork {
    records: Arc<RecordService>,
    resources: Arc<dyn ResourceStore>,
    edges: Arc<dyn TrustEdgeStore>,
    inbox: Arc<dyn NotificationStore>,
    break_glass_micros: i64,
    hub: Option<Arc<medmesh_notifications::NotificationHub>>,
}

impl std::fmt::Debug for TrustNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustNetwork")
            .field("break_glass_micros", &self.break_glass_micros)
            .finish_non_exhaustive()
    }
}

impl TrustNetwork {
    /// The network over `records`, reading edges and notifications from `store`; a
    /// break-glass declaration lasts `break_glass_micros`.
    pub fn new(
        records: Arc<RecordService>,
        store: Arc<dyn RecordStore>,
        break_glass_micros: i64,
    ) -> Self {
        Self {
            records,
            resources: store.clone(),
            edges: store.clone(),
            inbox: store,
            break_glass_micros,
            hub: None,
        }
    }

    /// Tells patients of emergency accesses on the other channels they chose too (e-mail),
    /// through `hub`; the inbox row is written with the declaration either way.
    pub fn with_hub(mut self, hub: Arc<medmesh_notifications::NotificationHub>) -> Self {
        self.hub = Some(hub);
        self
    }

    /// How long a break-glass declaration lasts, in microseconds.
    pub fn break_glass_micros(&self) -> i64 {
        self.break_glass_micros
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
        let core = self.records.core();
        let clinician = ctx
            .actor()
            .clinician()
            .filter(|c| c.verified && ctx.actor().role() == Some(medmesh_auth::Role::Practitioner));
        let now = core.now();
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
            core.append_audit(vec![
                entry.with_reason("break-glass needs a verified practitioner and a reason"),
            ])
            .await?;
            return Err(RecordError::Forbidden);
        };
        let id = core.ids().new_id();
        let edge = Edge {
            patient: patient_id.to_string(),
            principal: clinician.practitioner.clone(),
            kind: EdgeKind::BreakGlass,
            source: format!("break-glass/{id}"),
            since: now,
            until: Some(now + self.break_glass_micros),
            detail: None,
        };
        let mut tx = core.begin_write().await?;
        // The reason is free text a clinician typed: it may name the patient, so it is
        // sealed under the patient's key like their records.
        let mut edge = edge;
        edge.detail = Some(
            core.seal_text(
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
            id: core.ids().new_id(),
            patient_id: patient_id.to_string(),
            kind: "break-glass".into(),
            message: format!(
                "{} declared an emergency and may see your record until {}",
                clinician.practitioner,
                medmesh_fhir::datetime::format_instant(now + self.break_glass_micros)
            ),
            created_micros: now,
            read_micros: None,
        })
        .await?;
        entry.outcome = Outcome::Success;
        entry.basis = vec![edge.source.clone()];
        tx.append_audit(&entry).await?;
        tx.commit().await?;
        if let Some(hub) = &self.hub {
            use medmesh_notifications::{Category, Recipient};
            let notice = hub.notice(Category::BreakGlass, edge.source.clone());
            // Declared and audited either way; a failure to queue the e-mail is logged.
            if let Err(e) = hub
                .notify_beyond_inbox(&Recipient::Patient(patient_id.to_string()), &notice)
                .await
            {
                tracing::error!(error = %e, "an emergency access could not be e-mailed");
            }
        }
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
        let core = self.records.core();
        let me = ctx
            .actor()
            .clinician()
            .filter(|c| c.verified)
            .map(|c| c.practitioner.clone());
        let mut tx = core.begin_write().await?;
        let head = tx.head("Task", task_id).await?;
        let current = match head.filter(|h| !h.deleted) {
            Some(h) => self.resources.vread("Task", task_id, h.version).await?,
            None => None,
        };
        let mut task = match current {
            Some(v) => core.decode(&v).await?,
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
        let grant = Pdp.internal_grant("Task");
        let out = core
            .write_version(ctx, &mut tx, &grant, "Task", task_id, task, head)
            .await?;
        let mut entry = core.entry(
            ctx,
            "accept-referral",
            Some("Task"),
            vec![task_id.to_string()],
            Outcome::Success,
        );
        entry.patients = out
            .resource
            .as_ref()
            .map(|r| core.compartment_owners("Task", r))
            .unwrap_or_default();
        tx.append_audit(&entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The referrals a verified practitioner owns, newest first (at most 100): a referral
    /// is addressed to them before their care relationship exists, so its Task is read
    /// here by the network, not through the practitioner's reach; only what the inbox
    /// needs leaves it (no reason, no clinical content). The read is audited under the
    /// patients the Tasks name.
    ///
    /// # Errors
    /// [`RecordError::Forbidden`] unless the actor is a verified practitioner.
    pub async fn referrals_for(
        &self,
        ctx: &RequestContext,
    ) -> Result<Vec<IncomingReferral>, RecordError> {
        let core = self.records.core();
        let Some(me) = ctx
            .actor()
            .clinician()
            .filter(|c| c.verified)
            .map(|c| c.practitioner.clone())
        else {
            return Err(RecordError::Forbidden);
        };
        let mut q = medmesh_fhir::search::parse_query(
            core.definitions(),
            "Task",
            &[
                ("owner".into(), me),
                ("_sort".into(), "-authored-on".into()),
            ],
            medmesh_fhir::search::Handling::Strict,
        )?;
        core.blind(&mut q)?;
        let page = medmesh_store::PageRequest {
            count: 100,
            cursor: None,
            with_total: false,
            snapshot: false,
        };
        let found = self.resources.search(&q, &page).await?;
        let mut out = Vec::new();
        let mut ids = Vec::new();
        let mut patients = Vec::new();
        for v in self.resources.read_many(&found.matches).await? {
            let task = core.decode(&v).await?;
            let text = |p: &str| task.pointer(p).and_then(Value::as_str).map(str::to_string);
            let is_referral =
                text("/focus/reference").is_some_and(|f| f.starts_with("ServiceRequest/"));
            if !is_referral {
                continue;
            }
            patients.extend(core.compartment_owners("Task", &task));
            ids.push(v.id.clone());
            out.push(IncomingReferral {
                task_id: v.id,
                patient: text("/for/reference"),
                requester: text("/requester/reference"),
                status: text("/status").unwrap_or_default(),
                authored_on: text("/authoredOn"),
            });
        }
        patients.sort();
        patients.dedup();
        let mut entry = core.entry(ctx, "referral-inbox", Some("Task"), ids, Outcome::Success);
        entry.patients = patients;
        core.append_audit(vec![entry]).await?;
        Ok(out)
    }

    /// Who can see a patient's data and why: every edge, current or past. The PDP's
    /// [`AuditView`] of that patient is the permission; without one this does not compile:
    ///
    /// ```compile_fail
    /// # async fn f(svc: &medmesh_trust_network::TrustNetwork) {
    /// svc.access_map("Patient/p1").await;
    /// # }
    /// ```
    ///
    /// # Errors
    /// When storage fails; [`RecordError::NotFound`] for a view of the whole log.
    pub async fn access_map(&self, view: &AuditView) -> Result<Vec<AccessLine>, RecordError> {
        let core = self.records.core();
        let patient_id = view.patient().ok_or(RecordError::NotFound)?;
        let now = core.now();
        let mut out = Vec::new();
        for edge in self.edges.patient_edges(patient_id).await? {
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
        let core = self.records.core();
        if edge.kind == EdgeKind::BreakGlass
            && let Some(d) = edge.detail.take()
        {
            edge.detail = match core.open_text(&edge.source, d).await {
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
    /// # async fn f(svc: &medmesh_trust_network::TrustNetwork) {
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
        for edge in self.edges.break_glass_since(since).await? {
            out.push(self.open_edge(edge).await?);
        }
        Ok(out)
    }

    /// Marks one of a staff account's own notifications read; the PDP's
    /// [`medmesh_policy::StaffInbox`] is the permission.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] for a notification that is not theirs.
    pub async fn mark_staff_notification_read(
        &self,
        inbox: &medmesh_policy::StaffInbox,
        id: &str,
    ) -> Result<(), RecordError> {
        let core = self.records.core();
        if self
            .inbox
            .mark_notification_read(inbox.key(), id, core.now())
            .await?
        {
            Ok(())
        } else {
            Err(RecordError::NotFound)
        }
    }

    /// Marks one of a patient's notifications read; the PDP's [`InboxOwner`] is the
    /// permission.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] for a notification that is not theirs.
    pub async fn mark_notification_read(
        &self,
        inbox: &InboxOwner,
        id: &str,
    ) -> Result<(), RecordError> {
        let core = self.records.core();
        if self
            .inbox
            .mark_notification_read(inbox.patient(), id, core.now())
            .await?
        {
            Ok(())
        } else {
            Err(RecordError::NotFound)
        }
    }

    /// How many of a patient's notifications are unread (none is opened); the PDP's
    /// [`AuditView`] of that patient is the permission.
    ///
    /// # Errors
    /// When storage fails; [`RecordError::NotFound`] for a view of the whole log.
    pub async fn unread(&self, view: &AuditView) -> Result<usize, RecordError> {
        let patient_id = view.patient().ok_or(RecordError::NotFound)?;
        Ok(self
            .inbox
            .notifications(patient_id)
            .await?
            .iter()
            .filter(|n| n.read_micros.is_none())
            .count())
    }

    /// A staff account's own notifications (booking requests, cancellations), newest
    /// first; the PDP's [`medmesh_policy::StaffInbox`] is the permission.
    ///
    /// # Errors
    /// When storage fails.
    pub async fn staff_notifications(
        &self,
        inbox: &medmesh_policy::StaffInbox,
    ) -> Result<Vec<Notification>, RecordError> {
        Ok(self.inbox.notifications(inbox.key()).await?)
    }

    /// A patient's notifications; the PDP's [`AuditView`] of that patient is the permission:
    ///
    /// ```compile_fail
    /// # async fn f(svc: &medmesh_trust_network::TrustNetwork) {
    /// svc.notifications("p1").await;
    /// # }
    /// ```
    ///
    /// # Errors
    /// When storage fails; [`RecordError::NotFound`] for a view of the whole log.
    pub async fn notifications(&self, view: &AuditView) -> Result<Vec<Notification>, RecordError> {
        let core = self.records.core();
        let patient_id = view.patient().ok_or(RecordError::NotFound)?;
        let mut list = self.inbox.notifications(patient_id).await?;
        // Messages that name a document are sealed under the patient's key.
        for n in &mut list {
            if n.message.starts_with(medmesh_at_rest::TEXT_PREFIX) {
                let sealed = std::mem::take(&mut n.message);
                n.message = core
                    .open_text(&format!("notification/{}", n.id), sealed)
                    .await?;
            }
        }
        Ok(list)
    }
}
