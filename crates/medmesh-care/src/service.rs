//! The care service, on the record service: care plans written and changed as the caller
//! (the PDP decides whom they reach; bodies are sealed; each step's audit entry commits
//! with its data), changes proposed and decided, the patient's care team, and worklists.

use std::collections::HashMap;

use medmesh_records::reading::Names;
use std::sync::Arc;

use medmesh_audit::Outcome;
use medmesh_fhir::IssueType;
use medmesh_kernel::RequestContext;
use medmesh_notifications::{Category, NotificationHub, Recipient};
use medmesh_policy::{Action, Grant};
use medmesh_records::{RecordError, RecordService};
use medmesh_store::NotificationOutboxRow;
use serde_json::{Value, json};

use crate::plan::{
    ACTIVITY_CODE, ActivityStatus, CARE_TASK_SYSTEM, GoalEnd, LOINC, MAX_ITEMS, MAX_TEXT,
    NewActivity, NewGoal, PROPOSAL_CODE, PlanChange, PlanStatus, Progress, Refused, Target,
    TeamRole, activity_task, change_of, change_provenance, due_of, goal_resource, progress,
    proposal_task, readings, task_kind,
};

/// The most resources of one kind a plan's page reads (goals, activities, proposals,
/// history entries, readings of one measure).
pub const MAX_READ: usize = 500;
/// The most open Tasks a worklist shows.
pub const MAX_WORKLIST: usize = 300;

/// Whose accounts to tell: an adapter over the identity store (the binary's).
#[async_trait::async_trait]
pub trait CareAccounts: Send + Sync + 'static {
    /// The user ids of the accounts of `Practitioner/<practitioner>`.
    async fn practitioner_accounts(&self, practitioner: &str) -> Vec<String>;
}

/// A new plan.
#[derive(Debug, Clone, Default)]
pub struct NewPlan {
    /// Its title ("Type 2 diabetes").
    pub title: String,
    /// What it is for, in words.
    pub description: Option<String>,
    /// The Condition it addresses (its id), if any.
    pub condition: Option<String>,
    /// Its goals.
    pub goals: Vec<NewGoal>,
    /// Its activities.
    pub activities: Vec<NewActivity>,
}

/// A plan as a list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSummary {
    /// The CarePlan's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its status (FHIR's code).
    pub status: String,
    /// Its author's name.
    pub author_name: String,
    /// When it was made (a FHIR dateTime).
    pub created: String,
}

/// A goal with its progress.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalView {
    /// The Goal's id.
    pub id: String,
    /// The goal in words.
    pub description: String,
    /// Its lifecycle status (FHIR's code).
    pub status: String,
    /// Whether it was achieved (FHIR's achievement code), when said.
    pub achievement: Option<String>,
    /// What it aims at, when measured.
    pub target: Option<Target>,
    /// How far it has come, from the record's readings.
    pub progress: Option<Progress>,
}

/// An activity, with who does it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityView {
    /// The Task's id.
    pub task: String,
    /// What is to be done.
    pub description: String,
    /// Who does it (`Practitioner/x`, `Patient/p`).
    pub assignee: String,
    /// Their name.
    pub assignee_name: String,
    /// Whether it is the patient's own.
    pub patients_own: bool,
    /// Whether the caller does it (and so may tick it).
    pub mine: bool,
    /// Its status (FHIR's Task status).
    pub status: String,
    /// When it is due (a FHIR date), when said.
    pub due: Option<String>,
    /// Whether it is open and past its due date.
    pub overdue: bool,
}

/// A change proposed and not yet decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalView {
    /// The proposal Task's id.
    pub task: String,
    /// The change in words.
    pub summary: String,
    /// Who proposed it, by name.
    pub proposer_name: String,
    /// When (a FHIR instant).
    pub proposed: String,
}

/// One change in a plan's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// When (a FHIR instant).
    pub when: String,
    /// What, in words.
    pub summary: String,
    /// Who made it (or proposed it), by name.
    pub author_name: String,
    /// Who accepted it, when it was proposed by another.
    pub verifier_name: Option<String>,
}

/// A plan with everything its page shows.
#[derive(Debug, Clone)]
pub struct PlanView {
    /// The CarePlan's id.
    pub id: String,
    /// Its version (a change names it).
    pub version: i64,
    /// Its title.
    pub title: String,
    /// Its description.
    pub description: Option<String>,
    /// Its status (FHIR's code).
    pub status: String,
    /// The patient's id.
    pub patient: String,
    /// Its author (`Practitioner/x`).
    pub author: String,
    /// Its author's name.
    pub author_name: String,
    /// The goals.
    pub goals: Vec<GoalView>,
    /// The activities.
    pub activities: Vec<ActivityView>,
    /// The changes waiting for a decision.
    pub proposals: Vec<ProposalView>,
    /// Every change, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Whether the caller makes changes directly and decides proposals (the author, the
    /// patient's GP).
    pub may_decide: bool,
    /// Whether the caller may propose changes (a member of the plan's care team).
    pub may_propose: bool,
    /// The CarePlan as stored.
    pub resource: Value,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// It was made; the plan is at this version.
    Applied {
        /// The plan's version after it.
        version: i64,
    },
    /// It was proposed: this Task waits for the author or the GP.
    Proposed {
        /// The proposal Task's id.
        task: String,
    },
}

/// A member of a care team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// `Practitioner/x`.
    pub member: String,
    /// Their name.
    pub name: String,
    /// Their role, when one of ours.
    pub role: Option<TeamRole>,
    /// Their role in words, as stored.
    pub role_text: String,
    /// From when (a FHIR date or dateTime).
    pub start: Option<String>,
    /// Until when.
    pub end: Option<String>,
    /// Whether they are a member now.
    pub active: bool,
}

/// A patient's care team.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TeamView {
    /// The CareTeam's id, once there is one.
    pub id: Option<String>,
    /// Its members, current and past.
    pub members: Vec<MemberView>,
}

/// A new member of a care team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMember {
    /// `Practitioner/x` (or `x`).
    pub member: String,
    /// Their role.
    pub role: TeamRole,
    /// From when (a FHIR date); today when absent.
    pub start: Option<String>,
    /// Until when (a FHIR date); open when absent.
    pub end: Option<String>,
}

/// Care plans, care teams and worklists.
pub struct CareService {
    pub(crate) records: Arc<RecordService>,
    hub: Option<Arc<NotificationHub>>,
    accounts: Option<Arc<dyn CareAccounts>>,
}

impl std::fmt::Debug for CareService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CareService").finish_non_exhaustive()
    }
}

fn refusal(r: Refused) -> RecordError {
    RecordError::invalid(IssueType::Value, r.0)
}

/// A FHIR instant of microseconds since the epoch.
fn instant(micros: i64) -> String {
    medmesh_fhir::datetime::format_instant(micros)
}

/// A FHIR instant to the microsecond: an end written with it closes at once.
pub(crate) fn precise_instant(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_default()
}

/// The UTC date of microseconds since the epoch.
pub(crate) fn date(micros: i64) -> String {
    instant(micros).chars().take(10).collect()
}

pub(crate) fn id_of(r: &Value) -> String {
    r["id"].as_str().unwrap_or_default().to_string()
}

pub(crate) fn reference_of(v: &Value) -> Option<&str> {
    v["reference"].as_str()
}

pub(crate) fn without_meta(mut r: Value) -> Value {
    if let Some(m) = r.as_object_mut() {
        m.remove("meta");
    }
    r
}

/// The caller in the record: their Practitioner, or their Patient.
fn caller_reference(ctx: &RequestContext) -> Option<String> {
    if let Some(c) = ctx.actor().clinician() {
        return Some(c.practitioner.clone());
    }
    ctx.actor().patient().map(|p| format!("Patient/{p}"))
}

pub(crate) fn practitioner_of(ctx: &RequestContext) -> Result<String, RecordError> {
    ctx.actor()
        .clinician()
        .map(|c| c.practitioner.clone())
        .ok_or_else(|| RecordError::refused("only a practitioner does this"))
}

fn patient_of_plan(plan: &Value) -> Result<String, RecordError> {
    reference_of(&plan["subject"])
        .and_then(|r| r.strip_prefix("Patient/"))
        .map(str::to_string)
        .ok_or_else(|| RecordError::rule("this care plan is not about a patient"))
}

/// Whether a Task is part of `CarePlan/plan`.
fn part_of(task: &Value, plan: &str) -> bool {
    let want = format!("CarePlan/{plan}");
    task["basedOn"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|b| reference_of(b) == Some(want.as_str()))
}

/// Resources read before a change's transaction opens, with the version each was read at.
#[derive(Default)]
struct Prepared {
    /// `(type, id, version, body)` to write over what was read.
    updates: Vec<(&'static str, String, i64, Value)>,
    /// `(type, id, body)` to create.
    creates: Vec<(&'static str, String, Value)>,
    /// Whom to tell.
    told: Vec<String>,
}

impl CareService {
    /// The service over `records`.
    pub fn new(records: Arc<RecordService>) -> Self {
        Self {
            records,
            hub: None,
            accounts: None,
        }
    }

    /// Tells care-team members and patients of plans, activities and proposals through
    /// `hub`, finding practitioners' accounts in `accounts`.
    #[must_use]
    pub fn with_notices(
        mut self,
        hub: Arc<NotificationHub>,
        accounts: Arc<dyn CareAccounts>,
    ) -> Self {
        self.hub = Some(hub);
        self.accounts = Some(accounts);
        self
    }

    /// Every resource of a search (up to [`MAX_READ`]), read as the caller.
    async fn all_of(
        &self,
        ctx: &RequestContext,
        rt: &str,
        mut params: Vec<(&str, String)>,
    ) -> Result<Vec<Value>, RecordError> {
        params.push(("_count", MAX_READ.to_string()));
        self.records.search_resources(ctx, rt, &params).await
    }

    pub(crate) async fn read(
        &self,
        ctx: &RequestContext,
        rt: &str,
        id: &str,
    ) -> Result<(Value, i64), RecordError> {
        let found = self.records.read(ctx, rt, id).await?;
        Ok((found.resource, found.version))
    }

    /// The outbox rows that tell `recipients` (references: `Practitioner/x`, `Patient/p`) of
    /// `event`, in words that name no patient data.
    pub(crate) async fn notices(
        &self,
        recipients: &[String],
        event: &str,
    ) -> Result<Vec<NotificationOutboxRow>, RecordError> {
        let Some(hub) = &self.hub else {
            return Ok(Vec::new());
        };
        let mut who = Vec::new();
        for r in recipients {
            if let Some(p) = r.strip_prefix("Patient/") {
                who.push(Recipient::Patient(p.to_string()));
            } else if let (Some(p), Some(accounts)) =
                (r.strip_prefix("Practitioner/"), &self.accounts)
            {
                who.extend(
                    accounts
                        .practitioner_accounts(p)
                        .await
                        .into_iter()
                        .map(Recipient::Account),
                );
            }
        }
        who.sort_by_key(|r| format!("{r:?}"));
        who.dedup();
        let notice = hub.notice(Category::Care, event);
        let now = self.records.core().now();
        let mut rows = Vec::new();
        for w in who {
            rows.push(
                hub.prepare_scheduled(&w, &notice, now).await.map_err(|_| {
                    RecordError::NotSupported("notifications are unavailable".into())
                })?,
            );
        }
        Ok(rows)
    }

    /// The patient's current care team (an active CareTeam about them), read as the caller.
    pub(crate) async fn team_of(
        &self,
        ctx: &RequestContext,
        patient: &str,
    ) -> Result<Option<(Value, i64)>, RecordError> {
        let mut teams = self
            .all_of(
                ctx,
                "CareTeam",
                vec![
                    ("subject", format!("Patient/{patient}")),
                    ("status", "active".into()),
                ],
            )
            .await?;
        teams.sort_by_key(id_of);
        match teams.into_iter().next() {
            Some(t) => {
                let id = id_of(&t);
                self.read(ctx, "CareTeam", &id).await.map(Some)
            }
            None => Ok(None),
        }
    }

    /// The references of those who decide on a plan: its author and the patient's GPs.
    fn deciders(plan: &Value, patient: &Value) -> Vec<String> {
        let mut out: Vec<String> = reference_of(&plan["author"])
            .map(str::to_string)
            .into_iter()
            .collect();
        out.extend(
            patient["generalPractitioner"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(reference_of)
                .map(str::to_string),
        );
        out
    }

    /// Whether the caller is one of `deciders` (by their practitioner, or an organization
    /// they work for).
    fn decides(ctx: &RequestContext, deciders: &[String]) -> bool {
        ctx.actor().clinician().is_some_and(|c| {
            deciders
                .iter()
                .any(|d| *d == c.practitioner || c.organizations.contains(d))
        })
    }

    /// The members of `team` at `now`, as the PDP counts them.
    pub(crate) fn members_now(team: Option<&Value>, now: i64) -> Vec<String> {
        team.map(|t| medmesh_policy::access::members_at(t, now))
            .unwrap_or_default()
    }

    /// Appends a step's audit entry: `action` on `ids` (of `rt`) about `patient`.
    #[allow(clippy::too_many_arguments)] // one audit entry's facts
    pub(crate) async fn audit_step(
        &self,
        ctx: &RequestContext,
        tx: &mut medmesh_at_rest::WriteTx,
        grant: &Grant,
        action: &str,
        rt: &str,
        ids: Vec<String>,
        patient: &str,
    ) -> Result<(), RecordError> {
        let core = self.records.core();
        let mut entry = core.entry(ctx, action, Some(rt), ids, Outcome::Success);
        entry.patients = vec![patient.to_string()];
        core.annotate(&mut entry, grant);
        tx.append_audit(&entry).await?;
        Ok(())
    }

    /// The current head of `rt/id` in `tx`, if it is still `version`.
    pub(crate) async fn head_at(
        tx: &mut medmesh_at_rest::WriteTx,
        rt: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<medmesh_store::VersionHead>, RecordError> {
        let head = tx.head(rt, id).await?;
        if head.is_none_or(|h| h.version != version) {
            return Err(RecordError::Conflict(
                "it changed meanwhile: read it again and retry".into(),
            ));
        }
        Ok(head)
    }

    /// The grants to write each type `types` names, asked of the PDP as the caller.
    async fn grants(
        &self,
        ctx: &RequestContext,
        types: &[(&'static str, Action)],
    ) -> Result<HashMap<(&'static str, bool), Grant>, RecordError> {
        let core = self.records.core();
        let mut out = HashMap::new();
        for (rt, action) in types {
            let grant = core.authorize(ctx, *action, Some(rt)).await?;
            out.insert((*rt, matches!(action, Action::Create)), grant);
        }
        Ok(out)
    }

    /// Writes `prepared` in one transaction with `provenance`, the audit entry (`action`)
    /// and the notices of `event`; the plan's version after it.
    #[allow(clippy::too_many_arguments)] // one step's facts, each named by its caller
    async fn commit_step(
        &self,
        ctx: &RequestContext,
        prepared: Prepared,
        plan: (&str, i64),
        patient: &str,
        summary: &str,
        agents: (&str, Option<&str>),
        action: &str,
        event: &str,
    ) -> Result<i64, RecordError> {
        let core = self.records.core();
        let mut wanted: Vec<(&'static str, Action)> = vec![("Provenance", Action::Create)];
        for (rt, ..) in &prepared.updates {
            wanted.push((rt, Action::Update));
        }
        for (rt, ..) in &prepared.creates {
            wanted.push((rt, Action::Create));
        }
        wanted.sort_by_key(|(rt, a)| (*rt, matches!(a, Action::Create)));
        wanted.dedup_by_key(|(rt, a)| (*rt, matches!(a, Action::Create)));
        let grants = self.grants(ctx, &wanted).await?;
        let grant = |rt: &'static str, create: bool| {
            grants
                .get(&(rt, create))
                .ok_or_else(|| RecordError::invalid(IssueType::Forbidden, "not granted"))
        };
        let rows = self.notices(&prepared.told, event).await?;
        let (plan_id, mut plan_version) = plan;
        let mut ids = vec![plan_id.to_string()];
        let mut tx = core.begin_write().await?;
        for (rt, id, version, body) in prepared.updates {
            let head = Self::head_at(&mut tx, rt, &id, version).await?;
            let out = core
                .write_version(ctx, &mut tx, grant(rt, false)?, rt, &id, body, head)
                .await?;
            if rt == "CarePlan" && id == plan_id {
                plan_version = out.version;
            } else {
                ids.push(format!("{rt}/{id}"));
            }
        }
        for (rt, id, body) in prepared.creates {
            core.check_resource(rt, &body)?;
            if tx.head(rt, &id).await?.is_some() {
                return Err(RecordError::Conflict("that id is taken".into()));
            }
            let out = core
                .write_version(ctx, &mut tx, grant(rt, true)?, rt, &id, body, None)
                .await?;
            if rt == "CarePlan" {
                plan_version = out.version;
            } else {
                ids.push(format!("{rt}/{id}"));
            }
        }
        let provenance_id = core.ids().new_id();
        let provenance = change_provenance(
            &provenance_id,
            plan_id,
            plan_version,
            patient,
            summary,
            agents.0,
            agents.1,
            &instant(core.now()),
        );
        core.check_resource("Provenance", &provenance)?;
        core.write_version(
            ctx,
            &mut tx,
            grant("Provenance", true)?,
            "Provenance",
            &provenance_id,
            provenance,
            None,
        )
        .await?;
        ids.push(format!("Provenance/{provenance_id}"));
        // The entry carries the basis of the plan's own write where there is one.
        let plan_grant = grants
            .get(&("CarePlan", false))
            .or_else(|| grants.get(&("CarePlan", true)))
            .map_or_else(|| grant("Provenance", true), Ok)?;
        self.audit_step(ctx, &mut tx, plan_grant, action, "CarePlan", ids, patient)
            .await?;
        for row in &rows {
            tx.queue_notification(row).await?;
        }
        tx.commit().await?;
        Ok(plan_version)
    }

    /// Checks that `assignee` may be given an activity of a plan for `patient`: the patient,
    /// the plan's author, or an active member of the care team.
    fn check_assignee(
        assignee: &str,
        patient: &str,
        author: &str,
        members: &[String],
    ) -> Result<(), RecordError> {
        if assignee == format!("Patient/{patient}")
            || assignee == author
            || members.iter().any(|m| m == assignee)
        {
            Ok(())
        } else {
            Err(RecordError::rule(
                "an activity goes to the patient, the plan's author or a member of the care team",
            ))
        }
    }

    /// Writes a new care plan for `patient`, authored by the calling practitioner, with its
    /// goals and activities, in one transaction. The assignees and the patient are told.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] for what the plan says; a refusal when the caller may not
    /// write for the patient.
    pub async fn create_plan(
        &self,
        ctx: &RequestContext,
        patient: &str,
        new: NewPlan,
    ) -> Result<String, RecordError> {
        let author = practitioner_of(ctx)?;
        let revise = PlanChange::Revise {
            title: new.title.trim().to_string(),
            description: new.description.clone(),
        };
        revise.check().map_err(refusal)?;
        if new.goals.len() + new.activities.len() > MAX_ITEMS {
            return Err(RecordError::rule(format!(
                "a plan holds at most {MAX_ITEMS} goals and activities"
            )));
        }
        for g in &new.goals {
            PlanChange::AddGoal { goal: g.clone() }
                .check()
                .map_err(refusal)?;
        }
        for a in &new.activities {
            PlanChange::AddActivity {
                activity: a.clone(),
            }
            .check()
            .map_err(refusal)?;
        }
        // Read as the caller first: the PDP says whether they reach this patient.
        self.read(ctx, "Patient", patient).await?;
        if let Some(c) = &new.condition {
            let (condition, _) = self.read(ctx, "Condition", c).await?;
            if reference_of(&condition["subject"]) != Some(format!("Patient/{patient}").as_str()) {
                return Err(RecordError::rule("that condition is another patient's"));
            }
        }
        let core = self.records.core();
        let now = core.now();
        let team = self.team_of(ctx, patient).await?;
        let members = Self::members_now(team.as_ref().map(|(t, _)| t), now);
        for a in &new.activities {
            Self::check_assignee(&a.assignee, patient, &author, &members)?;
        }
        let plan_id = core.ids().new_id();
        let mut prepared = Prepared::default();
        let mut goal_refs = Vec::new();
        for g in &new.goals {
            let id = core.ids().new_id();
            goal_refs.push(json!({"reference": format!("Goal/{id}")}));
            prepared.creates.push((
                "Goal",
                id.clone(),
                goal_resource(&id, patient, g, &author, &date(now)),
            ));
        }
        let mut activities = Vec::new();
        for a in &new.activities {
            let id = core.ids().new_id();
            activities.push(json!({"reference": {"reference": format!("Task/{id}")}}));
            prepared.creates.push((
                "Task",
                id.clone(),
                activity_task(&id, &plan_id, patient, a, &author, &instant(now)),
            ));
            prepared.told.push(a.assignee.clone());
        }
        let mut plan = json!({
            "resourceType": "CarePlan",
            "id": plan_id,
            "status": "active",
            "intent": "plan",
            "title": new.title.trim(),
            "subject": {"reference": format!("Patient/{patient}")},
            "period": {"start": date(now)},
            "created": instant(now),
            "author": {"reference": author},
        });
        if let Some(d) = new
            .description
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
        {
            plan["description"] = json!(d);
        }
        if let Some((t, _)) = &team {
            plan["careTeam"] = json!([{"reference": format!("CareTeam/{}", id_of(t))}]);
        }
        if let Some(c) = &new.condition {
            plan["addresses"] = json!([{"reference": format!("Condition/{c}")}]);
        }
        if !goal_refs.is_empty() {
            plan["goal"] = Value::Array(goal_refs);
        }
        if !activities.is_empty() {
            plan["activity"] = Value::Array(activities);
        }
        prepared
            .creates
            .insert(0, ("CarePlan", plan_id.clone(), plan));
        prepared.told.push(format!("Patient/{patient}"));
        prepared.told.retain(|r| *r != author);
        self.commit_step(
            ctx,
            prepared,
            (&plan_id, 1),
            patient,
            &format!("Made the plan \"{}\"", new.title.trim()),
            (&author, None),
            "care-plan-create",
            &format!("care-plan:{plan_id}"),
        )
        .await?;
        Ok(plan_id)
    }

    /// The care plans of `patient` the caller may read, newest first.
    ///
    /// # Errors
    /// A refusal when the caller may not read the patient's plans.
    pub async fn plans(
        &self,
        ctx: &RequestContext,
        patient: &str,
    ) -> Result<Vec<PlanSummary>, RecordError> {
        let plans = self
            .all_of(
                ctx,
                "CarePlan",
                vec![("subject", format!("Patient/{patient}"))],
            )
            .await?;
        let mut names = Names::new();
        let mut out = Vec::new();
        for p in plans {
            let author = reference_of(&p["author"]).unwrap_or_default().to_string();
            out.push(PlanSummary {
                id: id_of(&p),
                title: p["title"].as_str().unwrap_or_default().to_string(),
                status: p["status"].as_str().unwrap_or_default().to_string(),
                author_name: names.of(&self.records, ctx, &author).await,
                created: p["created"].as_str().unwrap_or_default().to_string(),
            });
        }
        out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Care plan `id` with its goals (and their progress), activities, open proposals and
    /// history, as the caller may read them.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] when there is none the caller may read.
    pub async fn plan(&self, ctx: &RequestContext, id: &str) -> Result<PlanView, RecordError> {
        let (plan, version) = self.read(ctx, "CarePlan", id).await?;
        let patient = patient_of_plan(&plan)?;
        let (patient_resource, _) = self.read(ctx, "Patient", &patient).await?;
        let now = self.records.core().now();
        let me = caller_reference(ctx).unwrap_or_default();
        let mut names = Names::new();
        let author = reference_of(&plan["author"])
            .unwrap_or_default()
            .to_string();
        let author_name = names.of(&self.records, ctx, &author).await;

        let mut goals = Vec::new();
        for g in plan["goal"].as_array().into_iter().flatten() {
            let Some(gid) = reference_of(g).and_then(|r| r.strip_prefix("Goal/")) else {
                continue;
            };
            let goal = match self.read(ctx, "Goal", gid).await {
                Ok((g, _)) => g,
                Err(RecordError::NotFound | RecordError::Gone { .. }) => continue,
                Err(e) => return Err(e),
            };
            let target = goal["target"]
                .as_array()
                .and_then(|t| t.first())
                .and_then(Target::from_fhir);
            let progress = match &target {
                Some(t) => {
                    let observations = self
                        .all_of(
                            ctx,
                            "Observation",
                            vec![
                                ("patient", format!("Patient/{patient}")),
                                ("combo-code", format!("{LOINC}|{}", t.loinc)),
                                ("_sort", "-date".into()),
                            ],
                        )
                        .await?;
                    Some(progress(t, &readings(&observations, &t.loinc)))
                }
                None => None,
            };
            goals.push(GoalView {
                id: gid.to_string(),
                description: goal["description"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                status: goal["lifecycleStatus"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                achievement: goal["achievementStatus"]["coding"][0]["code"]
                    .as_str()
                    .map(str::to_string),
                target,
                progress,
            });
        }

        let tasks = self
            .all_of(ctx, "Task", vec![("based-on", format!("CarePlan/{id}"))])
            .await?;
        let by_id: HashMap<String, Value> = tasks.into_iter().map(|t| (id_of(&t), t)).collect();
        let mut activities = Vec::new();
        for a in plan["activity"].as_array().into_iter().flatten() {
            let Some(tid) = reference_of(&a["reference"]).and_then(|r| r.strip_prefix("Task/"))
            else {
                continue;
            };
            let Some(task) = by_id.get(tid) else {
                continue;
            };
            let assignee = reference_of(&task["owner"]).unwrap_or_default().to_string();
            let status = task["status"].as_str().unwrap_or_default().to_string();
            let due = due_of(task).map(str::to_string);
            let open = ActivityStatus::parse(&status).is_some_and(ActivityStatus::is_open);
            activities.push(ActivityView {
                task: tid.to_string(),
                description: task["description"].as_str().unwrap_or_default().to_string(),
                assignee_name: names.of(&self.records, ctx, &assignee).await,
                patients_own: assignee == format!("Patient/{patient}"),
                mine: !me.is_empty() && assignee == me,
                overdue: open
                    && due
                        .as_deref()
                        .and_then(medmesh_fhir::datetime::parse_range)
                        .is_some_and(|d| d.hi <= now),
                assignee,
                status,
                due,
            });
        }

        let mut proposals = Vec::new();
        for t in self
            .all_of(
                ctx,
                "Task",
                vec![
                    ("focus", format!("CarePlan/{id}")),
                    ("status", "requested".into()),
                    ("code", format!("{CARE_TASK_SYSTEM}|{PROPOSAL_CODE}")),
                ],
            )
            .await?
        {
            let proposer = reference_of(&t["requester"])
                .unwrap_or_default()
                .to_string();
            proposals.push(ProposalView {
                task: id_of(&t),
                summary: t["description"].as_str().unwrap_or_default().to_string(),
                proposer_name: names.of(&self.records, ctx, &proposer).await,
                proposed: t["authoredOn"].as_str().unwrap_or_default().to_string(),
            });
        }
        proposals.sort_by(|a, b| a.proposed.cmp(&b.proposed));

        let mut history = Vec::new();
        for p in self
            .all_of(
                ctx,
                "Provenance",
                vec![("target", format!("CarePlan/{id}"))],
            )
            .await?
        {
            let agent = |code: &str| {
                p["agent"].as_array().into_iter().flatten().find_map(|a| {
                    (a["type"]["coding"][0]["code"] == code)
                        .then(|| reference_of(&a["who"]).map(str::to_string))
                        .flatten()
                })
            };
            let author = agent("author").unwrap_or_default();
            let verifier = agent("verifier");
            let verifier_name = match verifier {
                Some(v) => Some(names.of(&self.records, ctx, &v).await),
                None => None,
            };
            history.push(HistoryEntry {
                when: p["recorded"].as_str().unwrap_or_default().to_string(),
                summary: p["activity"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                author_name: names.of(&self.records, ctx, &author).await,
                verifier_name,
            });
        }
        history.sort_by(|a, b| a.when.cmp(&b.when));

        let deciders = Self::deciders(&plan, &patient_resource);
        let may_decide = Self::decides(ctx, &deciders);
        let team =
            match reference_of(&plan["careTeam"][0]).and_then(|r| r.strip_prefix("CareTeam/")) {
                Some(t) => self.read(ctx, "CareTeam", t).await.ok().map(|(t, _)| t),
                None => None,
            };
        let may_propose = !may_decide
            && ctx
                .actor()
                .clinician()
                .is_some_and(|c| Self::members_now(team.as_ref(), now).contains(&c.practitioner));
        Ok(PlanView {
            id: id.to_string(),
            version,
            title: plan["title"].as_str().unwrap_or_default().to_string(),
            description: plan["description"].as_str().map(str::to_string),
            status: plan["status"].as_str().unwrap_or_default().to_string(),
            patient,
            author,
            author_name,
            goals,
            activities,
            proposals,
            history,
            may_decide,
            may_propose,
            resource: plan,
        })
    }

    /// Makes or proposes `change` to plan `id`. The plan's author and the patient's GP make
    /// it; an activity's owner sets its state (the patient ticks their own); any other
    /// member of the plan's care team proposes it, and the author (and the GP) are told.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] for what the change says, or when the caller may neither
    /// make nor propose it; [`RecordError::Conflict`] when the plan changed meanwhile.
    pub async fn change(
        &self,
        ctx: &RequestContext,
        id: &str,
        change: PlanChange,
    ) -> Result<Changed, RecordError> {
        change.check().map_err(refusal)?;
        let (plan, version) = self.read(ctx, "CarePlan", id).await?;
        let patient = patient_of_plan(&plan)?;
        let (patient_resource, _) = self.read(ctx, "Patient", &patient).await?;
        let me = caller_reference(ctx)
            .ok_or_else(|| RecordError::refused("only a person changes a plan"))?;
        let deciders = Self::deciders(&plan, &patient_resource);
        if Self::decides(ctx, &deciders) {
            let version = self
                .apply(ctx, (&plan, version), &patient, &change, (&me, None), None)
                .await?;
            return Ok(Changed::Applied { version });
        }
        // An activity's owner moves their own activity along.
        if let PlanChange::SetActivity { task, status } = &change {
            let (t, _) = self.read(ctx, "Task", task).await?;
            if reference_of(&t["owner"]) == Some(me.as_str()) {
                let allowed = if me.starts_with("Patient/") {
                    matches!(
                        status,
                        ActivityStatus::Requested
                            | ActivityStatus::InProgress
                            | ActivityStatus::Completed
                    )
                } else {
                    *status != ActivityStatus::Cancelled
                };
                if !allowed {
                    return Err(RecordError::refused(
                        "cancelling an activity is for the plan's author or the patient's GP",
                    ));
                }
                let version = self
                    .apply(ctx, (&plan, version), &patient, &change, (&me, None), None)
                    .await?;
                return Ok(Changed::Applied { version });
            }
        }
        let now = self.records.core().now();
        let team =
            match reference_of(&plan["careTeam"][0]).and_then(|r| r.strip_prefix("CareTeam/")) {
                Some(t) => Some(self.read(ctx, "CareTeam", t).await?.0),
                None => None,
            };
        if !Self::members_now(team.as_ref(), now).contains(&me) {
            return Err(RecordError::refused(
                "changes to a care plan come from its author, the patient's GP, or a member of its care team (who proposes them)",
            ));
        }
        if !matches!(plan["status"].as_str(), Some("active" | "on-hold")) {
            return Err(RecordError::rule(
                "this plan has ended: it no longer changes",
            ));
        }
        let author = reference_of(&plan["author"])
            .ok_or_else(|| RecordError::rule("this plan has no author to decide"))?
            .to_string();
        let core = self.records.core();
        let task_id = core.ids().new_id();
        let task = proposal_task(&task_id, id, &patient, &change, &me, &author, &instant(now));
        core.check_resource("Task", &task)?;
        let grant = core.authorize(ctx, Action::Create, Some("Task")).await?;
        let rows = self
            .notices(&deciders, &format!("care-proposal:{task_id}"))
            .await?;
        let mut tx = core.begin_write().await?;
        core.write_version(ctx, &mut tx, &grant, "Task", &task_id, task, None)
            .await?;
        self.audit_step(
            ctx,
            &mut tx,
            &grant,
            "care-plan-propose",
            "Task",
            vec![task_id.clone(), format!("CarePlan/{id}")],
            &patient,
        )
        .await?;
        for row in &rows {
            tx.queue_notification(row).await?;
        }
        tx.commit().await?;
        Ok(Changed::Proposed { task: task_id })
    }

    /// Accepts (making the change, in the proposer's name and the caller's as the one who
    /// accepted it) or declines (with `reason`) proposal `task`. Only the plan's author and
    /// the patient's GP decide; the proposer is told either way.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] for a Task that is no open proposal, or a caller who does
    /// not decide on the plan.
    pub async fn decide(
        &self,
        ctx: &RequestContext,
        task: &str,
        accept: bool,
        reason: Option<&str>,
    ) -> Result<Changed, RecordError> {
        let (proposal, proposal_version) = self.read(ctx, "Task", task).await?;
        if task_kind(&proposal) != PROPOSAL_CODE || proposal["status"] != "requested" {
            return Err(RecordError::rule("this is not an open proposal"));
        }
        let plan_id = reference_of(&proposal["focus"])
            .and_then(|r| r.strip_prefix("CarePlan/"))
            .ok_or_else(|| RecordError::rule("this proposal names no plan"))?
            .to_string();
        let (plan, version) = self.read(ctx, "CarePlan", &plan_id).await?;
        let patient = patient_of_plan(&plan)?;
        let (patient_resource, _) = self.read(ctx, "Patient", &patient).await?;
        if !Self::decides(ctx, &Self::deciders(&plan, &patient_resource)) {
            return Err(RecordError::refused(
                "a proposal is decided by the plan's author or the patient's GP",
            ));
        }
        let me = practitioner_of(ctx)?;
        let proposer = reference_of(&proposal["requester"])
            .unwrap_or_default()
            .to_string();
        let core = self.records.core();
        let mut decided = without_meta(proposal.clone());
        decided["lastModified"] = json!(instant(core.now()));
        if accept {
            let change = change_of(&proposal).ok_or_else(|| {
                RecordError::rule("this proposal carries no change that can be read")
            })?;
            change.check().map_err(refusal)?;
            decided["status"] = json!("completed");
            let version = self
                .apply(
                    ctx,
                    (&plan, version),
                    &patient,
                    &change,
                    (&proposer, Some(&me)),
                    Some((task, proposal_version, decided)),
                )
                .await?;
            return Ok(Changed::Applied { version });
        }
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        if reason.is_some_and(|r| r.chars().count() > MAX_TEXT) {
            return Err(RecordError::rule(format!(
                "a reason is at most {MAX_TEXT} characters"
            )));
        }
        decided["status"] = json!("rejected");
        if let Some(r) = reason {
            decided["statusReason"] = json!({"text": r});
        }
        let grant = core.authorize(ctx, Action::Update, Some("Task")).await?;
        let rows = self
            .notices(&[proposer], &format!("care-proposal-declined:{task}"))
            .await?;
        let mut tx = core.begin_write().await?;
        let head = Self::head_at(&mut tx, "Task", task, proposal_version).await?;
        core.write_version(ctx, &mut tx, &grant, "Task", task, decided, head)
            .await?;
        self.audit_step(
            ctx,
            &mut tx,
            &grant,
            "care-plan-decline",
            "Task",
            vec![task.to_string(), format!("CarePlan/{plan_id}")],
            &patient,
        )
        .await?;
        for row in &rows {
            tx.queue_notification(row).await?;
        }
        tx.commit().await?;
        Ok(Changed::Applied { version })
    }

    /// Makes `change` to `plan` (read at its version) in one transaction, named for
    /// `agents` (who made or proposed it, and who accepted it), closing `proposal` (its
    /// id, the version read, its closed body) in the same transaction.
    async fn apply(
        &self,
        ctx: &RequestContext,
        (plan, version): (&Value, i64),
        patient: &str,
        change: &PlanChange,
        agents: (&str, Option<&str>),
        proposal: Option<(&str, i64, Value)>,
    ) -> Result<i64, RecordError> {
        let core = self.records.core();
        let now = core.now();
        let plan_id = id_of(plan);
        let ended = !matches!(plan["status"].as_str(), Some("active" | "on-hold"));
        if ended && !matches!(change, PlanChange::SetStatus { .. }) {
            return Err(RecordError::rule(
                "this plan has ended: it no longer changes",
            ));
        }
        let author = reference_of(&plan["author"])
            .unwrap_or_default()
            .to_string();
        let mut new_plan = without_meta(plan.clone());
        let mut plan_changed = false;
        let mut prepared = Prepared::default();
        let items = plan["goal"].as_array().map_or(0, Vec::len)
            + plan["activity"].as_array().map_or(0, Vec::len);
        match change {
            PlanChange::AddGoal { goal } => {
                if items >= MAX_ITEMS {
                    return Err(RecordError::rule(format!(
                        "a plan holds at most {MAX_ITEMS} goals and activities"
                    )));
                }
                let id = core.ids().new_id();
                prepared.creates.push((
                    "Goal",
                    id.clone(),
                    goal_resource(&id, patient, goal, agents.0, &date(now)),
                ));
                push(
                    &mut new_plan,
                    "goal",
                    json!({"reference": format!("Goal/{id}")}),
                );
                plan_changed = true;
            }
            PlanChange::AddActivity { activity } => {
                if items >= MAX_ITEMS {
                    return Err(RecordError::rule(format!(
                        "a plan holds at most {MAX_ITEMS} goals and activities"
                    )));
                }
                let team = match reference_of(&plan["careTeam"][0])
                    .and_then(|r| r.strip_prefix("CareTeam/"))
                {
                    Some(t) => Some(self.read(ctx, "CareTeam", t).await?.0),
                    None => None,
                };
                let members = Self::members_now(team.as_ref(), now);
                Self::check_assignee(&activity.assignee, patient, &author, &members)?;
                let id = core.ids().new_id();
                prepared.creates.push((
                    "Task",
                    id.clone(),
                    activity_task(&id, &plan_id, patient, activity, agents.0, &instant(now)),
                ));
                push(
                    &mut new_plan,
                    "activity",
                    json!({"reference": {"reference": format!("Task/{id}")}}),
                );
                plan_changed = true;
                prepared.told.push(activity.assignee.clone());
            }
            PlanChange::SetActivity { task, status } => {
                let (t, v) = self.read(ctx, "Task", task).await?;
                if !part_of(&t, &plan_id) || task_kind(&t) != ACTIVITY_CODE {
                    return Err(RecordError::rule("that activity is not this plan's"));
                }
                let mut t = without_meta(t);
                t["status"] = json!(status.as_str());
                t["lastModified"] = json!(instant(now));
                if *status == ActivityStatus::Completed {
                    t["executionPeriod"]["end"] = json!(instant(now));
                }
                prepared.updates.push(("Task", task.clone(), v, t));
            }
            PlanChange::EndGoal { goal, end } => {
                let listed = plan["goal"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|g| reference_of(g) == Some(format!("Goal/{goal}").as_str()));
                if !listed {
                    return Err(RecordError::rule("that goal is not this plan's"));
                }
                let (g, v) = self.read(ctx, "Goal", goal).await?;
                let mut g = without_meta(g);
                let (lifecycle, achievement, display) = match end {
                    GoalEnd::Achieved => ("completed", "achieved", "Achieved"),
                    GoalEnd::Cancelled => ("cancelled", "not-achieved", "Not Achieved"),
                };
                g["lifecycleStatus"] = json!(lifecycle);
                g["achievementStatus"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/goal-achievement", "code": achievement, "display": display}]});
                g["statusDate"] = json!(date(now));
                prepared.updates.push(("Goal", goal.clone(), v, g));
            }
            PlanChange::Revise { title, description } => {
                new_plan["title"] = json!(title.trim());
                match description
                    .as_deref()
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                {
                    Some(d) => new_plan["description"] = json!(d),
                    None => {
                        if let Some(m) = new_plan.as_object_mut() {
                            m.remove("description");
                        }
                    }
                }
                plan_changed = true;
            }
            PlanChange::SetStatus { status } => {
                new_plan["status"] = json!(status.as_str());
                if matches!(status, PlanStatus::Completed | PlanStatus::Revoked) {
                    new_plan["period"]["end"] = json!(date(now));
                    // A plan that ends leaves no activity open on anyone's worklist.
                    for t in self
                        .all_of(
                            ctx,
                            "Task",
                            vec![("based-on", format!("CarePlan/{plan_id}"))],
                        )
                        .await?
                    {
                        let open = t["status"]
                            .as_str()
                            .and_then(ActivityStatus::parse)
                            .is_some_and(ActivityStatus::is_open);
                        if open && task_kind(&t) == ACTIVITY_CODE {
                            let (t, v) = self.read(ctx, "Task", &id_of(&t)).await?;
                            let tid = id_of(&t);
                            let mut t = without_meta(t);
                            t["status"] = json!("cancelled");
                            t["lastModified"] = json!(instant(now));
                            prepared.updates.push(("Task", tid, v, t));
                        }
                    }
                }
                plan_changed = true;
            }
        }
        if plan_changed {
            prepared
                .updates
                .insert(0, ("CarePlan", plan_id.clone(), version, new_plan));
        }
        if let Some((task, v, body)) = proposal {
            prepared.updates.push(("Task", task.to_string(), v, body));
            prepared.told.push(agents.0.to_string());
        }
        let me = caller_reference(ctx).unwrap_or_default();
        prepared.told.retain(|r| *r != me);
        self.commit_step(
            ctx,
            prepared,
            (&plan_id, version),
            patient,
            &change.summary(),
            agents,
            "care-plan-change",
            &format!("care-plan:{plan_id}"),
        )
        .await
    }
}

/// Appends `item` to the array `field` of `resource`.
pub(crate) fn push(resource: &mut Value, field: &str, item: Value) {
    match resource.get_mut(field).and_then(Value::as_array_mut) {
        Some(a) => a.push(item),
        None => resource[field] = json!([item]),
    }
}
