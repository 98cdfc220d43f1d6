//! The care plan's rules, with no I/O: what a change to a plan is, how it is checked and
//! said in words, the FHIR resources it writes (Goal, Task, Provenance), how a goal's
//! progress is read from observations, and the order of a worklist.
//!
//! A plan is a FHIR `CarePlan`. Its goals are `Goal`s it references; its activities are
//! `Task`s (`CarePlan.activity.reference`), each owned by the care-team member who does it
//! or by the patient, with its due date in `Task.restriction.period.end`. A change proposed
//! by a care-team member who may not make it directly is a `Task` with intent `proposal`,
//! focused on the plan and owned by the plan's author, whose input carries the change.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The code system of the Tasks this capability writes.
pub const CARE_TASK_SYSTEM: &str = "https://medmesh.dev/fhir/CodeSystem/care-task";
/// A plan's activity.
pub const ACTIVITY_CODE: &str = "care-activity";
/// A proposed change to a plan.
pub const PROPOSAL_CODE: &str = "plan-change";
/// The code system of care-team roles.
pub const TEAM_ROLE_SYSTEM: &str = "https://medmesh.dev/fhir/CodeSystem/care-team-role";
/// LOINC.
pub const LOINC: &str = "http://loinc.org";
/// UCUM.
pub const UCUM: &str = "http://unitsofmeasure.org";

/// The longest text a plan, goal or activity holds, characters.
pub const MAX_TEXT: usize = 1000;
/// The most goals or activities one plan holds.
pub const MAX_ITEMS: usize = 200;

/// A change refused for what it says, in words for the user (no patient data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn refused(s: impl Into<String>) -> Refused {
    Refused(s.into())
}

/// How a goal's target compares the measured value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparator {
    /// Below the value.
    #[serde(rename = "<")]
    Below,
    /// At most the value.
    #[serde(rename = "<=")]
    AtMost,
    /// At least the value.
    #[serde(rename = ">=")]
    AtLeast,
    /// Above the value.
    #[serde(rename = ">")]
    Above,
}

impl Comparator {
    /// FHIR's `Quantity.comparator` code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Below => "<",
            Self::AtMost => "<=",
            Self::AtLeast => ">=",
            Self::Above => ">",
        }
    }

    /// Reads FHIR's code.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "<" => Some(Self::Below),
            "<=" => Some(Self::AtMost),
            ">=" => Some(Self::AtLeast),
            ">" => Some(Self::Above),
            _ => None,
        }
    }

    /// Whether `measured` meets `value` under this comparator.
    pub fn holds(self, measured: f64, value: f64) -> bool {
        match self {
            Self::Below => measured < value,
            Self::AtMost => measured <= value,
            Self::AtLeast => measured >= value,
            Self::Above => measured > value,
        }
    }
}

/// What a goal aims at: a measured value (a LOINC code) against a limit or a range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The LOINC code of what is measured (`4548-4`, HbA1c).
    pub loinc: String,
    /// What is measured, in words.
    pub measure: String,
    /// How the value compares; absent with `low` and `high` for a range.
    #[serde(default)]
    pub comparator: Option<Comparator>,
    /// The limit (with `comparator`), or the range's low end.
    #[serde(default)]
    pub value: Option<f64>,
    /// The range's high end.
    #[serde(default)]
    pub high: Option<f64>,
    /// The UCUM unit (`%`, `mg/dL`, `mm[Hg]`, `kg`).
    pub unit: String,
    /// By when (a FHIR date).
    #[serde(default)]
    pub due: Option<String>,
}

impl Target {
    fn check(&self) -> Result<(), Refused> {
        let code_ok = !self.loinc.is_empty()
            && self.loinc.len() <= 20
            && self
                .loinc
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !code_ok {
            return Err(refused("a target names a LOINC code such as 4548-4"));
        }
        text_ok("what is measured", &self.measure)?;
        if self.unit.trim().is_empty() || self.unit.len() > 40 {
            return Err(refused("a target has a unit (UCUM, such as % or mg/dL)"));
        }
        match (self.comparator, self.value, self.high) {
            (Some(_), Some(v), None) if v.is_finite() => {}
            (None, Some(lo), Some(hi)) if lo.is_finite() && hi.is_finite() && lo <= hi => {}
            _ => {
                return Err(refused(
                    "a target is a limit (a comparator and a value) or a range (low and high)",
                ));
            }
        }
        if let Some(d) = &self.due {
            date_ok(d)?;
        }
        Ok(())
    }

    /// Whether `measured` meets the target.
    pub fn met_by(&self, measured: f64) -> Option<bool> {
        match (self.comparator, self.value, self.high) {
            (Some(c), Some(v), _) => Some(c.holds(measured, v)),
            (None, Some(lo), Some(hi)) => Some(lo <= measured && measured <= hi),
            _ => None,
        }
    }

    /// The target in words: "HbA1c < 7 %", "Blood pressure 90–130 mm[Hg]".
    pub fn words(&self) -> String {
        match (self.comparator, self.value, self.high) {
            (Some(c), Some(v), _) => {
                format!("{} {} {} {}", self.measure, c.code(), num(v), self.unit)
            }
            (None, Some(lo), Some(hi)) => {
                format!("{} {}–{} {}", self.measure, num(lo), num(hi), self.unit)
            }
            _ => self.measure.clone(),
        }
    }

    /// As a `Goal.target`.
    pub fn to_fhir(&self) -> Value {
        let measure = json!({
            "coding": [{"system": LOINC, "code": self.loinc}],
            "text": self.measure,
        });
        let quantity =
            |v: f64| json!({"value": v, "unit": self.unit, "system": UCUM, "code": self.unit});
        let mut t = json!({"measure": measure});
        match (self.comparator, self.value, self.high) {
            (Some(c), Some(v), _) => {
                let mut q = quantity(v);
                q["comparator"] = json!(c.code());
                t["detailQuantity"] = q;
            }
            (None, Some(lo), Some(hi)) => {
                t["detailRange"] = json!({"low": quantity(lo), "high": quantity(hi)});
            }
            _ => {}
        }
        if let Some(d) = &self.due {
            t["dueDate"] = json!(d);
        }
        t
    }

    /// Reads a `Goal.target` (any client's): a LOINC measure with a quantity or a range.
    pub fn from_fhir(t: &Value) -> Option<Self> {
        let coding = t["measure"]["coding"]
            .as_array()?
            .iter()
            .find(|c| c["system"] == LOINC)?;
        let loinc = coding["code"].as_str()?.to_string();
        let measure = t["measure"]["text"]
            .as_str()
            .or_else(|| coding["display"].as_str())
            .unwrap_or(&loinc)
            .to_string();
        let unit_of = |q: &Value| {
            q["code"]
                .as_str()
                .or_else(|| q["unit"].as_str())
                .unwrap_or_default()
                .to_string()
        };
        let due = t["dueDate"].as_str().map(str::to_string);
        if let Some(q) = t.get("detailQuantity") {
            return Some(Self {
                loinc,
                measure,
                comparator: Some(
                    q["comparator"]
                        .as_str()
                        .and_then(Comparator::parse)
                        .unwrap_or(Comparator::AtMost),
                ),
                value: q["value"].as_f64(),
                high: None,
                unit: unit_of(q),
                due,
            });
        }
        let r = t.get("detailRange")?;
        Some(Self {
            loinc,
            measure,
            comparator: None,
            value: r["low"]["value"].as_f64(),
            high: r["high"]["value"].as_f64(),
            unit: unit_of(&r["low"]),
            due,
        })
    }
}

/// A number as people write it: no trailing zeros.
fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn text_ok(what: &str, s: &str) -> Result<(), Refused> {
    let n = s.trim().chars().count();
    if n == 0 {
        return Err(refused(format!("{what} is empty")));
    }
    if n > MAX_TEXT {
        return Err(refused(format!("{what} is at most {MAX_TEXT} characters")));
    }
    Ok(())
}

fn date_ok(d: &str) -> Result<(), Refused> {
    if d.len() == 10 && medmesh_fhir::datetime::parse_range(d).is_some() {
        Ok(())
    } else {
        Err(refused("a date is written YYYY-MM-DD"))
    }
}

/// A goal to add.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGoal {
    /// The goal in words ("Bring HbA1c below 7%").
    pub description: String,
    /// What it aims at, when measured.
    #[serde(default)]
    pub target: Option<Target>,
}

/// An activity to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewActivity {
    /// What is to be done, in words.
    pub description: String,
    /// Who does it: `Practitioner/x` (a care-team member, or the plan's author) or
    /// `Patient/p` (the patient's own activity).
    pub assignee: String,
    /// By when (a FHIR date).
    #[serde(default)]
    pub due: Option<String>,
}

/// An activity's state, as FHIR's Task statuses a plan uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivityStatus {
    /// To do.
    Requested,
    /// Being done.
    InProgress,
    /// Paused.
    OnHold,
    /// Done.
    Completed,
    /// No longer to be done.
    Cancelled,
}

impl ActivityStatus {
    /// FHIR's Task status code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::InProgress => "in-progress",
            Self::OnHold => "on-hold",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Reads a Task status; the Task statuses a plan does not use read as none.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "requested" => Some(Self::Requested),
            "in-progress" => Some(Self::InProgress),
            "on-hold" => Some(Self::OnHold),
            "completed" => Some(Self::Completed),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }

    /// Whether it is still to be done (on a worklist).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Requested | Self::InProgress | Self::OnHold)
    }
}

/// A plan's state, as FHIR's CarePlan statuses a plan moves through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanStatus {
    /// In force.
    Active,
    /// Paused.
    OnHold,
    /// Its work is done.
    Completed,
    /// Ended before its work was done.
    Revoked,
}

impl PlanStatus {
    /// FHIR's CarePlan status code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::OnHold => "on-hold",
            Self::Completed => "completed",
            Self::Revoked => "revoked",
        }
    }
}

/// How a goal ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GoalEnd {
    /// Reached.
    Achieved,
    /// Given up.
    Cancelled,
}

/// One change to a plan. Made directly by the plan's author or the patient's GP; proposed
/// by any other member of the plan's care team, and made when one of those accepts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PlanChange {
    /// Adds a goal.
    AddGoal {
        /// The goal.
        goal: NewGoal,
    },
    /// Adds an activity (a Task for its assignee).
    AddActivity {
        /// The activity.
        activity: NewActivity,
    },
    /// Sets an activity's state (its Task's status).
    SetActivity {
        /// The Task's id.
        task: String,
        /// The new state.
        status: ActivityStatus,
    },
    /// Ends a goal.
    EndGoal {
        /// The Goal's id.
        goal: String,
        /// How.
        end: GoalEnd,
    },
    /// Rewrites the plan's title and description.
    Revise {
        /// The title.
        title: String,
        /// The description.
        #[serde(default)]
        description: Option<String>,
    },
    /// Sets the plan's state.
    SetStatus {
        /// The new state.
        status: PlanStatus,
    },
}

impl PlanChange {
    /// Checks what the change says on its own (lengths, dates, references' shape).
    ///
    /// # Errors
    /// Why it is refused, in words.
    pub fn check(&self) -> Result<(), Refused> {
        match self {
            Self::AddGoal { goal } => {
                text_ok("a goal", &goal.description)?;
                if let Some(t) = &goal.target {
                    t.check()?;
                }
            }
            Self::AddActivity { activity } => {
                text_ok("an activity", &activity.description)?;
                let ok = ["Practitioner/", "Patient/"].iter().any(|p| {
                    activity
                        .assignee
                        .strip_prefix(p)
                        .is_some_and(medmesh_fhir_id)
                });
                if !ok {
                    return Err(refused(
                        "an activity is assigned to a Practitioner/<id> or to the Patient/<id>",
                    ));
                }
                if let Some(d) = &activity.due {
                    date_ok(d)?;
                }
            }
            Self::SetActivity { task: id, .. } | Self::EndGoal { goal: id, .. } => {
                if !medmesh_fhir_id(id) {
                    return Err(refused("not a valid id"));
                }
            }
            Self::Revise { title, description } => {
                text_ok("a title", title)?;
                if description
                    .as_ref()
                    .is_some_and(|d| d.chars().count() > MAX_TEXT)
                {
                    return Err(refused(format!(
                        "a description is at most {MAX_TEXT} characters"
                    )));
                }
            }
            Self::SetStatus { .. } => {}
        }
        Ok(())
    }

    /// The change in words, for the plan's history and a proposal's list. It quotes what
    /// the plan says (the history is shown only to those who may read the plan).
    pub fn summary(&self) -> String {
        match self {
            Self::AddGoal { goal } => match &goal.target {
                Some(t) => format!("Added the goal \"{}\" ({})", goal.description, t.words()),
                None => format!("Added the goal \"{}\"", goal.description),
            },
            Self::AddActivity { activity } => {
                let due = activity
                    .due
                    .as_deref()
                    .map(|d| format!(", due {d}"))
                    .unwrap_or_default();
                format!("Added the activity \"{}\"{due}", activity.description)
            }
            Self::SetActivity { status, .. } => {
                format!("Marked an activity {}", status.as_str().replace('-', " "))
            }
            Self::EndGoal { end, .. } => match end {
                GoalEnd::Achieved => "Marked a goal achieved".to_string(),
                GoalEnd::Cancelled => "Cancelled a goal".to_string(),
            },
            Self::Revise { title, .. } => format!("Revised the plan as \"{title}\""),
            Self::SetStatus { status } => {
                format!("Set the plan {}", status.as_str().replace('-', " "))
            }
        }
    }
}

/// Whether `s` is a FHIR id (`[A-Za-z0-9\-\.]{1,64}`).
pub fn medmesh_fhir_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// A role in a care team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeamRole {
    /// The patient's general practitioner.
    Gp,
    /// A specialist physician.
    Specialist,
    /// A nurse.
    Nurse,
    /// A pharmacist.
    Pharmacist,
    /// A dietitian.
    Dietitian,
    /// A care coordinator.
    Coordinator,
    /// Anyone else.
    Other,
}

impl TeamRole {
    /// Every role, in the order forms list them.
    pub const ALL: [TeamRole; 7] = [
        Self::Gp,
        Self::Specialist,
        Self::Nurse,
        Self::Pharmacist,
        Self::Dietitian,
        Self::Coordinator,
        Self::Other,
    ];

    /// Its code in [`TEAM_ROLE_SYSTEM`].
    pub fn code(self) -> &'static str {
        match self {
            Self::Gp => "gp",
            Self::Specialist => "specialist",
            Self::Nurse => "nurse",
            Self::Pharmacist => "pharmacist",
            Self::Dietitian => "dietitian",
            Self::Coordinator => "coordinator",
            Self::Other => "other",
        }
    }

    /// Its display, in English (the portal says it in the reader's language).
    pub fn display(self) -> &'static str {
        match self {
            Self::Gp => "General practitioner",
            Self::Specialist => "Specialist",
            Self::Nurse => "Nurse",
            Self::Pharmacist => "Pharmacist",
            Self::Dietitian => "Dietitian",
            Self::Coordinator => "Care coordinator",
            Self::Other => "Other",
        }
    }

    /// Reads a code.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == s)
    }

    /// A participant's role as a `CodeableConcept`.
    pub fn to_fhir(self) -> Value {
        json!([{"coding": [{"system": TEAM_ROLE_SYSTEM, "code": self.code(), "display": self.display()}], "text": self.display()}])
    }
}

/// One measured value of what a goal aims at.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// When (microseconds since the epoch).
    pub at: i64,
    /// The value.
    pub value: f64,
    /// Its UCUM unit, when it has one.
    pub unit: Option<String>,
}

/// The readings of LOINC `code` in `observations`: an Observation's own value, or the value
/// of its component with that code (a blood pressure's systolic). Newest first.
pub fn readings(observations: &[Value], code: &str) -> Vec<Reading> {
    let has = |cc: &Value| {
        cc["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["system"] == LOINC && c["code"] == code)
    };
    let quantity = |q: &Value| {
        q["value"].as_f64().map(|v| {
            (
                v,
                q["code"]
                    .as_str()
                    .or_else(|| q["unit"].as_str())
                    .map(str::to_string),
            )
        })
    };
    let mut out: Vec<Reading> = observations
        .iter()
        .filter(|o| !matches!(o["status"].as_str(), Some("entered-in-error" | "cancelled")))
        .filter_map(|o| {
            let at = o["effectiveDateTime"]
                .as_str()
                .or_else(|| o["effectivePeriod"]["start"].as_str())
                .or_else(|| o["issued"].as_str())
                .and_then(medmesh_fhir::datetime::parse_range)?
                .lo;
            let (value, unit) = if has(&o["code"]) {
                quantity(&o["valueQuantity"])?
            } else {
                o["component"]
                    .as_array()?
                    .iter()
                    .find(|c| has(&c["code"]))
                    .and_then(|c| quantity(&c["valueQuantity"]))?
            };
            Some(Reading { at, value, unit })
        })
        .collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.at));
    out
}

/// How far a goal has come, from the record's readings.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// The newest reading in the target's unit.
    pub latest: Option<Reading>,
    /// The one before it, for the direction.
    pub previous: Option<Reading>,
    /// Whether the newest reading meets the target.
    pub met: Option<bool>,
    /// Readings in another unit, not compared.
    pub other_units: usize,
}

/// The progress of `target` from `readings` (newest first): only readings in the target's
/// unit are compared, never converted.
pub fn progress(target: &Target, readings: &[Reading]) -> Progress {
    let same = |r: &&Reading| r.unit.as_deref().is_none_or(|u| u == target.unit);
    let mut comparable = readings.iter().filter(same);
    let latest = comparable.next().cloned();
    let previous = comparable.next().cloned();
    Progress {
        met: latest.as_ref().and_then(|r| target.met_by(r.value)),
        latest,
        previous,
        other_units: readings.iter().filter(|r| !same(r)).count(),
    }
}

/// An open Task on a clinician's worklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    /// The Task's id.
    pub task: String,
    /// What kind of work: `care-activity`, `plan-change`, `refill-request`,
    /// `adherence-review`, `referral`, or `task`.
    pub kind: String,
    /// The patient's id.
    pub patient: String,
    /// The patient's name.
    pub patient_name: String,
    /// What is to be done, in words.
    pub description: String,
    /// Its status (FHIR's Task status).
    pub status: String,
    /// When it is due, when it says (a FHIR date or dateTime).
    pub due: Option<String>,
    /// The end of the due day or time, microseconds (for the order).
    pub due_at: Option<i64>,
    /// When it was asked (a FHIR dateTime).
    pub authored: String,
    /// The plan it belongs to (`CarePlan` id), for a plan's activity or proposal.
    pub plan: Option<String>,
    /// Whether it is overdue now.
    pub overdue: bool,
}

/// Orders a worklist: overdue first (the longest overdue first), then by due date, then
/// those with no due date, oldest asked first. Marks each overdue as of `now`.
pub fn order_worklist(items: &mut [WorkItem], now: i64) {
    for i in items.iter_mut() {
        i.overdue = i.due_at.is_some_and(|d| d < now);
    }
    items.sort_by(|a, b| {
        let key = |i: &WorkItem| (!i.overdue, i.due_at.is_none(), i.due_at.unwrap_or(i64::MAX));
        key(a)
            .cmp(&key(b))
            .then_with(|| a.authored.cmp(&b.authored))
            .then_with(|| a.task.cmp(&b.task))
    });
}

/// The code of a Task, in [`CARE_TASK_SYSTEM`] or any other system, for a worklist's kind.
pub fn task_kind(task: &Value) -> String {
    let code = task["code"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|c| c["code"].as_str());
    match code {
        Some(c @ (ACTIVITY_CODE | PROPOSAL_CODE | "refill-request" | "adherence-review")) => {
            c.to_string()
        }
        _ if task["focus"]["reference"]
            .as_str()
            .is_some_and(|r| r.starts_with("ServiceRequest/")) =>
        {
            "referral".to_string()
        }
        _ => "task".to_string(),
    }
}

/// The due date of a Task (`restriction.period.end`).
pub fn due_of(task: &Value) -> Option<&str> {
    task["restriction"]["period"]["end"].as_str()
}

/// A plan's activity as a Task: `id` for `patient`, asked by `author` at `now` (a FHIR
/// instant), part of `CarePlan/plan`.
pub fn activity_task(
    id: &str,
    plan: &str,
    patient: &str,
    activity: &NewActivity,
    author: &str,
    now: &str,
) -> Value {
    let mut t = json!({
        "resourceType": "Task",
        "id": id,
        "status": "requested",
        "intent": "plan",
        "code": {"coding": [{"system": CARE_TASK_SYSTEM, "code": ACTIVITY_CODE, "display": "Care plan activity"}]},
        "description": activity.description.trim(),
        "basedOn": [{"reference": format!("CarePlan/{plan}")}],
        "for": {"reference": format!("Patient/{patient}")},
        "authoredOn": now,
        "lastModified": now,
        "requester": {"reference": author},
        "owner": {"reference": activity.assignee},
    });
    if let Some(d) = &activity.due {
        t["restriction"] = json!({"period": {"end": d}});
    }
    t
}

/// A goal as a Goal: `id` for `patient`, expressed by `author`, started `today` (a date).
pub fn goal_resource(id: &str, patient: &str, goal: &NewGoal, author: &str, today: &str) -> Value {
    let mut g = json!({
        "resourceType": "Goal",
        "id": id,
        "lifecycleStatus": "active",
        "achievementStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/goal-achievement", "code": "in-progress", "display": "In Progress"}]},
        "description": {"text": goal.description.trim()},
        "subject": {"reference": format!("Patient/{patient}")},
        "startDate": today,
        "expressedBy": {"reference": author},
    });
    if let Some(t) = &goal.target {
        g["target"] = json!([t.to_fhir()]);
    }
    g
}

/// A proposed change as a Task: `id`, proposed by `proposer` at `now` for the plan's
/// `owner` (its author) to decide.
pub fn proposal_task(
    id: &str,
    plan: &str,
    patient: &str,
    change: &PlanChange,
    proposer: &str,
    owner: &str,
    now: &str,
) -> Value {
    json!({
        "resourceType": "Task",
        "id": id,
        "status": "requested",
        "intent": "proposal",
        "code": {"coding": [{"system": CARE_TASK_SYSTEM, "code": PROPOSAL_CODE, "display": "Proposed change to a care plan"}]},
        "description": change.summary(),
        "focus": {"reference": format!("CarePlan/{plan}")},
        "for": {"reference": format!("Patient/{patient}")},
        "authoredOn": now,
        "lastModified": now,
        "requester": {"reference": proposer},
        "owner": {"reference": owner},
        "input": [{
            "type": {"coding": [{"system": CARE_TASK_SYSTEM, "code": PROPOSAL_CODE}]},
            "valueString": serde_json::to_string(change).unwrap_or_default(),
        }],
    })
}

/// The change a proposal Task carries.
pub fn change_of(proposal: &Value) -> Option<PlanChange> {
    proposal["input"]
        .as_array()?
        .iter()
        .find(|i| i["type"]["coding"][0]["code"] == PROPOSAL_CODE)
        .and_then(|i| i["valueString"].as_str())
        .and_then(|s| serde_json::from_str(s).ok())
}

/// The Provenance of one change to `CarePlan/plan` (now at `version`): `summary` in words,
/// made by `author`, and accepted by `verifier` when it was proposed by another.
#[allow(clippy::too_many_arguments)] // one change's facts
pub fn change_provenance(
    id: &str,
    plan: &str,
    version: i64,
    patient: &str,
    summary: &str,
    author: &str,
    verifier: Option<&str>,
    now: &str,
) -> Value {
    let agent = |code: &str, who: &str| {
        json!({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": code}]},
            "who": {"reference": who},
        })
    };
    let mut agents = vec![agent("author", author)];
    if let Some(v) = verifier {
        agents.push(agent("verifier", v));
    }
    json!({
        "resourceType": "Provenance",
        "id": id,
        "target": [
            {"reference": format!("CarePlan/{plan}")},
            {"reference": format!("Patient/{patient}")},
        ],
        "recorded": now,
        "activity": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": if version == 1 { "CREATE" } else { "UPDATE" }}],
            "text": summary,
        },
        "entity": [{"role": "revision", "what": {"reference": format!("CarePlan/{plan}/_history/{version}")}}],
        "agent": agents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hba1c() -> Target {
        Target {
            loinc: "4548-4".into(),
            measure: "HbA1c".into(),
            comparator: Some(Comparator::Below),
            value: Some(7.0),
            high: None,
            unit: "%".into(),
            due: Some("2027-06-01".into()),
        }
    }

    fn obs(code: &str, at: &str, v: f64, unit: &str) -> Value {
        json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": code}]},
            "effectiveDateTime": at,
            "valueQuantity": {"value": v, "unit": unit, "system": UCUM, "code": unit}})
    }

    #[test]
    fn a_target_round_trips_through_fhir_and_says_itself() {
        let t = hba1c();
        assert_eq!(Target::from_fhir(&t.to_fhir()), Some(t.clone()));
        assert_eq!(t.words(), "HbA1c < 7 %");
        let range = Target {
            comparator: None,
            value: Some(90.0),
            high: Some(130.0),
            unit: "mm[Hg]".into(),
            measure: "Systolic".into(),
            loinc: "8480-6".into(),
            due: None,
        };
        assert_eq!(Target::from_fhir(&range.to_fhir()), Some(range.clone()));
        assert_eq!(range.words(), "Systolic 90–130 mm[Hg]");
        assert_eq!(range.met_by(131.0), Some(false));
        assert_eq!(range.met_by(120.0), Some(true));
    }

    #[test]
    fn progress_reads_the_newest_value_in_the_targets_unit() {
        let observations = vec![
            obs("4548-4", "2026-01-10", 8.1, "%"),
            obs("4548-4", "2026-04-10", 6.8, "%"),
            obs("4548-4", "2026-05-10", 51.0, "mmol/mol"),
            obs("2339-0", "2026-06-10", 99.0, "mg/dL"),
        ];
        let r = readings(&observations, "4548-4");
        assert_eq!(r.len(), 3);
        let p = progress(&hba1c(), &r);
        assert_eq!(p.latest.as_ref().map(|r| r.value), Some(6.8));
        assert_eq!(p.previous.as_ref().map(|r| r.value), Some(8.1));
        assert_eq!(p.met, Some(true));
        assert_eq!(p.other_units, 1, "mmol/mol is not converted");
        let none = progress(&hba1c(), &[]);
        assert_eq!((none.latest, none.met), (None, None));
    }

    #[test]
    fn a_component_counts_as_a_reading() {
        let bp = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
            "effectiveDateTime": "2026-03-01T08:00:00Z",
            "component": [
                {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 142, "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": {"value": 88, "code": "mm[Hg]"}}]});
        let r = readings(&[bp], "8480-6");
        assert_eq!(r.len(), 1);
        assert!((r[0].value - 142.0).abs() < f64::EPSILON);
    }

    #[test]
    fn changes_are_checked_and_said_in_words() {
        let add = PlanChange::AddActivity {
            activity: NewActivity {
                description: "Walk 30 minutes a day".into(),
                assignee: "Patient/p1".into(),
                due: Some("2027-01-31".into()),
            },
        };
        assert!(add.check().is_ok());
        assert_eq!(
            add.summary(),
            "Added the activity \"Walk 30 minutes a day\", due 2027-01-31"
        );
        let text = serde_json::to_string(&add).unwrap();
        assert_eq!(serde_json::from_str::<PlanChange>(&text).unwrap(), add);
        let bad = PlanChange::AddActivity {
            activity: NewActivity {
                description: "x".into(),
                assignee: "Organization/o".into(),
                due: None,
            },
        };
        assert!(bad.check().is_err());
        let bad_date = PlanChange::AddActivity {
            activity: NewActivity {
                description: "x".into(),
                assignee: "Practitioner/a".into(),
                due: Some("next week".into()),
            },
        };
        assert!(bad_date.check().is_err());
        let long = PlanChange::Revise {
            title: "t".repeat(MAX_TEXT + 1),
            description: None,
        };
        assert!(long.check().is_err());
        let no_target = PlanChange::AddGoal {
            goal: NewGoal {
                description: "Lower it".into(),
                target: Some(Target {
                    value: None,
                    ..hba1c()
                }),
            },
        };
        assert!(no_target.check().is_err());
        assert!(
            serde_json::from_value::<PlanChange>(
                json!({"kind": "add-goal", "goal": {"description": "d"}, "extra": 1})
            )
            .is_err(),
            "unknown fields are refused"
        );
    }

    #[test]
    fn a_proposal_carries_its_change() {
        let change = PlanChange::AddGoal {
            goal: NewGoal {
                description: "HbA1c below 7%".into(),
                target: Some(hba1c()),
            },
        };
        let t = proposal_task(
            "t1",
            "cp",
            "p",
            &change,
            "Practitioner/b",
            "Practitioner/a",
            "2026-12-05T10:00:00Z",
        );
        assert_eq!(change_of(&t), Some(change));
        assert_eq!(task_kind(&t), PROPOSAL_CODE);
        assert_eq!(t["owner"]["reference"], "Practitioner/a");
    }

    #[test]
    fn the_worklist_puts_overdue_first() {
        let item = |task: &str, due: Option<i64>, authored: &str| WorkItem {
            task: task.into(),
            kind: "task".into(),
            patient: "p".into(),
            patient_name: String::new(),
            description: String::new(),
            status: "requested".into(),
            due: None,
            due_at: due,
            authored: authored.into(),
            plan: None,
            overdue: false,
        };
        let mut items = vec![
            item("later", Some(500), "2026-01-01"),
            item("none-old", None, "2025-01-01"),
            item("overdue-recent", Some(90), "2026-01-01"),
            item("none-new", None, "2026-02-01"),
            item("overdue-long", Some(10), "2026-01-01"),
            item("soon", Some(200), "2026-01-01"),
        ];
        order_worklist(&mut items, 100);
        let order: Vec<&str> = items.iter().map(|i| i.task.as_str()).collect();
        assert_eq!(
            order,
            [
                "overdue-long",
                "overdue-recent",
                "soon",
                "later",
                "none-old",
                "none-new"
            ]
        );
        assert!(items[0].overdue && items[1].overdue && !items[2].overdue);
    }

    #[test]
    fn team_roles_read_back() {
        for r in TeamRole::ALL {
            assert_eq!(TeamRole::parse(r.code()), Some(r));
        }
        assert_eq!(TeamRole::parse("surgeon"), None);
    }
}
