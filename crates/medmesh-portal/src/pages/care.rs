//! The patient's care plans (`/care`), in plain words: each plan's goals with how far they
//! have come (from the record's own results), the activities that are the patient's own,
//! with a button to tick each off, what the care team does, and who is in the care team.
//! Ticking goes through the care service as the patient, so only their own activities
//! move and the plan's history names them.
//!
//! The row shapes here ([`GoalRow`], [`ActivityRow`]) are the clinician's plan page's too.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_care::{ActivityStatus, ActivityView, GoalView, PlanChange, PlanView};
use medmesh_server::AppState;
use serde::Deserialize;
use serde_json::Value;

use crate::clinical;
use crate::i18n::{Arg, Lang};
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::refuse_form;
use crate::viewer::{Audience, Viewer};

/// A goal as a page shows it.
pub struct GoalRow {
    /// The Goal's id.
    pub id: String,
    /// The goal in words.
    pub description: String,
    /// Its target in words ("HbA1c < 7 %"), or "".
    pub target: String,
    /// The newest reading and its date, in words, or "".
    pub latest: String,
    /// "On target", "Not yet on target", "No result yet", or "".
    pub standing: String,
    /// Whether the newest reading meets the target (for the style; the word says it too).
    pub met: bool,
    /// Its state in words.
    pub status: String,
    /// Whether it is still pursued.
    pub active: bool,
}

/// An activity as a page shows it.
pub struct ActivityRow {
    /// The Task's id.
    pub task: String,
    /// What is to be done.
    pub description: String,
    /// Who does it.
    pub assignee: String,
    /// Its state in words.
    pub status: String,
    /// Whether it is done.
    pub done: bool,
    /// Whether it is still to be done.
    pub open: bool,
    /// When it is due, in words, or "".
    pub due: String,
    /// Whether it is open and past its due date.
    pub overdue: bool,
    /// Whether the viewer does it.
    pub mine: bool,
    /// Whether it is the patient's own.
    pub patients_own: bool,
}

/// A goal's row, in `lang`.
pub fn goal_row(lang: Lang, tz: i32, g: &GoalView) -> GoalRow {
    let latest = g
        .progress
        .as_ref()
        .and_then(|p| p.latest.as_ref())
        .map(|r| {
            let when = clinical::date_time_micros(lang, r.at, tz);
            lang.t_with(
                "care-goal-latest",
                &[
                    (
                        "value",
                        Arg::Text(format!(
                            "{} {}",
                            clinical::number(r.value),
                            r.unit.clone().unwrap_or_default()
                        )),
                    ),
                    ("when", Arg::Text(when)),
                ],
            )
        })
        .unwrap_or_default();
    let met = g.progress.as_ref().and_then(|p| p.met);
    let standing = match (&g.target, met) {
        (None, _) => String::new(),
        (Some(_), Some(true)) => lang.t("care-goal-met"),
        (Some(_), Some(false)) => lang.t("care-goal-not-met"),
        (Some(_), None) => lang.t("care-goal-no-result"),
    };
    let status = match (g.status.as_str(), g.achievement.as_deref()) {
        ("completed", _) | (_, Some("achieved")) => lang.t("care-goal-achieved"),
        ("cancelled", _) => lang.t("care-goal-cancelled"),
        _ => lang.t("care-goal-active"),
    };
    GoalRow {
        id: g.id.clone(),
        description: g.description.clone(),
        target: g
            .target
            .as_ref()
            .map(|t| {
                let due = t
                    .due
                    .as_ref()
                    .map(|d| clinical::date_of(lang, &Value::String(d.clone()), 0))
                    .unwrap_or_default();
                if due.is_empty() {
                    t.words()
                } else {
                    lang.t_with(
                        "care-goal-target-by",
                        &[("target", Arg::Text(t.words())), ("due", Arg::Text(due))],
                    )
                }
            })
            .unwrap_or_default(),
        latest,
        standing,
        met: met == Some(true),
        status,
        active: g.status == "active",
    }
}

/// An activity's state in words.
pub fn status_words(lang: Lang, status: &str) -> String {
    lang.t(&format!("care-status-{status}"))
}

/// An activity's row, in `lang`.
pub fn activity_row(lang: Lang, a: &ActivityView) -> ActivityRow {
    let status = ActivityStatus::parse(&a.status);
    ActivityRow {
        task: a.task.clone(),
        description: a.description.clone(),
        assignee: a.assignee_name.clone(),
        status: status_words(lang, status.map_or("unknown", ActivityStatus::as_str)),
        done: status == Some(ActivityStatus::Completed),
        open: status.is_some_and(ActivityStatus::is_open),
        due: a
            .due
            .as_ref()
            .map(|d| clinical::date_of(lang, &Value::String(d.clone()), 0))
            .unwrap_or_default(),
        overdue: a.overdue,
        mine: a.mine,
        patients_own: a.patients_own,
    }
}

/// One plan on the patient's page.
pub struct PlanSection {
    /// The CarePlan's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its description.
    pub description: String,
    /// Who made it, in words.
    pub author: String,
    /// Its state in words.
    pub status: String,
    /// Whether it is in force.
    pub active: bool,
    /// Its goals.
    pub goals: Vec<GoalRow>,
    /// The patient's own activities.
    pub mine: Vec<ActivityRow>,
    /// The care team's activities.
    pub team: Vec<ActivityRow>,
}

/// A member of the care team, in words.
pub struct MemberRow {
    /// `Practitioner/x`.
    pub member: String,
    /// Their name.
    pub name: String,
    /// Their role in words.
    pub role: String,
    /// Since and until, in words.
    pub period: String,
    /// Whether they are a member now.
    pub active: bool,
}

/// The care team's members as rows, in `lang`.
pub fn member_rows(lang: Lang, team: &medmesh_care::TeamView) -> Vec<MemberRow> {
    team.members
        .iter()
        .map(|m| {
            let day = |d: &Option<String>| {
                d.as_ref()
                    .map(|d| clinical::date_of(lang, &Value::String(d.clone()), 0))
                    .unwrap_or_default()
            };
            let (start, end) = (day(&m.start), day(&m.end));
            let period = match (start.is_empty(), end.is_empty()) {
                (false, true) => lang.t_with("care-team-since", &[("start", Arg::Text(start))]),
                (false, false) => lang.t_with(
                    "care-team-from-to",
                    &[("start", Arg::Text(start)), ("end", Arg::Text(end))],
                ),
                (true, false) => lang.t_with("care-team-until", &[("end", Arg::Text(end))]),
                (true, true) => String::new(),
            };
            MemberRow {
                member: m.member.clone(),
                name: m.name.clone(),
                role: m.role.map_or_else(
                    || m.role_text.clone(),
                    |r| lang.t(&format!("care-role-{}", r.code())),
                ),
                period,
                active: m.active,
            }
        })
        .collect()
}

/// A plan's state in words.
pub fn plan_status_words(lang: Lang, status: &str) -> String {
    lang.t(&format!("care-plan-status-{status}"))
}

fn section(lang: Lang, tz: i32, v: &PlanView) -> PlanSection {
    let (mine, team): (Vec<_>, Vec<_>) = v
        .activities
        .iter()
        .map(|a| activity_row(lang, a))
        .partition(|a| a.patients_own);
    PlanSection {
        id: v.id.clone(),
        title: v.title.clone(),
        description: v.description.clone().unwrap_or_default(),
        author: lang.t_with(
            "care-plan-by",
            &[("author", Arg::Text(v.author_name.clone()))],
        ),
        status: plan_status_words(lang, &v.status),
        active: v.status == "active",
        goals: v.goals.iter().map(|g| goal_row(lang, tz, g)).collect(),
        mine,
        team,
    }
}

#[derive(Template)]
#[template(path = "care.html")]
struct CarePage {
    shell: Shell,
    plans: Vec<PlanSection>,
    members: Vec<MemberRow>,
    done: Option<String>,
}

/// `GET /care`: the patient's care plans and care team.
pub async fn care(State(state): State<AppState>, viewer: Viewer) -> Response {
    show(&state, &viewer, None).await
}

async fn show(state: &AppState, viewer: &Viewer, done: Option<String>) -> Response {
    let lang = viewer.lang;
    if viewer.audience != Audience::Patient {
        return problem(lang, Problem::WrongAudience);
    }
    let Some(patient) = viewer.own_patient() else {
        return problem(lang, Problem::NotFound);
    };
    let summaries = match state.care.plans(&viewer.ctx, &patient).await {
        Ok(s) => s,
        Err(e) => return record_problem(lang, &e),
    };
    let mut plans = Vec::new();
    for s in summaries {
        match state.care.plan(&viewer.ctx, &s.id).await {
            Ok(v) => plans.push(section(lang, viewer.tz_minutes, &v)),
            Err(e) => return record_problem(lang, &e),
        }
    }
    // Plans in force first, then the ones that ended.
    plans.sort_by_key(|p| !p.active);
    let members = match state.care.care_team(&viewer.ctx, &patient).await {
        Ok(t) => member_rows(lang, &t),
        Err(e) => return record_problem(lang, &e),
    };
    render(
        StatusCode::OK,
        &CarePage {
            shell: Shell::new(viewer, "/care", "care-title"),
            plans,
            members: members.into_iter().filter(|m| m.active).collect(),
            done,
        },
    )
}

/// The tick form: the plan and the new state.
#[derive(Debug, Deserialize)]
pub struct TickForm {
    /// The session's CSRF token.
    pub csrf: Option<String>,
    /// The CarePlan's id.
    pub plan: String,
    /// `completed` or `requested` (undo).
    pub status: String,
}

/// `POST /care/activities/{task}`: the patient ticks off (or reopens) one of their own
/// activities.
pub async fn tick(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(task): Path<String>,
    Form(form): Form<TickForm>,
) -> Response {
    if let Some(r) = refuse_form(
        &viewer,
        form.csrf.as_deref(),
        Audience::Patient,
        &[&task, &form.plan],
    ) {
        return r;
    }
    let status = match form.status.as_str() {
        "completed" => ActivityStatus::Completed,
        "requested" => ActivityStatus::Requested,
        _ => return problem(viewer.lang, Problem::BadInput),
    };
    match state
        .care
        .change(
            &viewer.ctx,
            &form.plan,
            PlanChange::SetActivity { task, status },
        )
        .await
    {
        Ok(_) => Redirect::to(&format!("/care#plan-{}", form.plan)).into_response(),
        Err(e) => record_problem(viewer.lang, &e),
    }
}
