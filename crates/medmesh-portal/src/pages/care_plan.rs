//! A care plan for its care team (`/care-plans/{id}`): its goals with their progress, its
//! activities with who does them and by when, the forms that change it, the changes
//! proposed by other members waiting for a decision, and its history, each change with
//! who made it and who accepted it.
//!
//! The plan's author and the patient's GP make changes directly and decide proposals; any
//! other member of its care team proposes (the same forms, the buttons say "Propose").
//! The care service decides which: the page only shows what it answered.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_care::{
    ActivityStatus, Changed, Comparator, GoalEnd, NewActivity, NewGoal, PlanChange, PlanStatus,
    Target,
};
use medmesh_server::AppState;
use serde::Deserialize;

use crate::clinical;
use crate::i18n::Arg;
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::care::{
    ActivityRow, GoalRow, activity_row, goal_row, plan_status_words, status_words,
};
use crate::pages::chart::MEASUREMENTS;
use crate::pages::prescribe::value;
use crate::pages::{field, refuse_form, valid_id};
use crate::viewer::{Audience, Viewer};

/// An option of a select: its value, its label, whether chosen.
pub struct Choice {
    /// The value sent.
    pub value: String,
    /// The label shown.
    pub label: String,
}

/// The plan as the page shows it.
pub struct PlanDetail {
    /// The CarePlan's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its description.
    pub description: String,
    /// The patient's id (the chart's link).
    pub patient: String,
    /// The patient's name.
    pub patient_name: String,
    /// Who made it, in words.
    pub author: String,
    /// Its state in words.
    pub status: String,
    /// Its state's code.
    pub status_code: String,
    /// Whether it still changes.
    pub open: bool,
    /// Its goals.
    pub goals: Vec<GoalRow>,
    /// Its activities.
    pub activities: Vec<ActivityRow>,
}

/// A proposal as the page shows it.
pub struct ProposalRow {
    /// The Task's id.
    pub task: String,
    /// The change in words.
    pub summary: String,
    /// Who proposed it and when, in words.
    pub by: String,
}

/// A change in the history.
pub struct HistoryRow {
    /// When, in words.
    pub when: String,
    /// What.
    pub summary: String,
    /// Who made or proposed it.
    pub author: String,
    /// Who accepted it, or "".
    pub accepted_by: String,
}

#[derive(Template)]
#[template(path = "care_plan.html")]
struct CarePlanPage {
    shell: Shell,
    p: PlanDetail,
    proposals: Vec<ProposalRow>,
    history: Vec<HistoryRow>,
    may_decide: bool,
    may_propose: bool,
    assignees: Vec<Choice>,
    measures: Vec<Choice>,
    statuses: Vec<Choice>,
    plan_statuses: Vec<Choice>,
    goal_required: bool,
    done: Option<String>,
    error: Option<String>,
}

/// What the page says after a change (`?done=`): a word, never data.
#[derive(Debug, Deserialize)]
pub struct Done {
    /// `applied`, `proposed`, `accepted` or `declined`.
    pub done: Option<String>,
}

/// `GET /care-plans/{id}`.
pub async fn plan(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<Done>,
) -> Response {
    let done = match q.done.as_deref() {
        Some(d @ ("applied" | "proposed" | "accepted" | "declined")) => {
            Some(viewer.lang.t(&format!("care-done-{d}")))
        }
        _ => None,
    };
    show(&state, &viewer, &id, done, None).await
}

async fn show(
    state: &AppState,
    viewer: &Viewer,
    id: &str,
    done: Option<String>,
    error: Option<String>,
) -> Response {
    let lang = viewer.lang;
    if viewer.audience != Audience::Clinician {
        return problem(lang, Problem::WrongAudience);
    }
    if !valid_id(id) {
        return problem(lang, Problem::NotFound);
    }
    let v = match state.care.plan(&viewer.ctx, id).await {
        Ok(v) => v,
        Err(e) => return record_problem(lang, &e),
    };
    let about = match crate::pages::chart::about(state, viewer, &v.patient).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let team = match state.care.care_team(&viewer.ctx, &v.patient).await {
        Ok(t) => t,
        Err(e) => return record_problem(lang, &e),
    };
    let mut assignees = vec![Choice {
        value: format!("Patient/{}", v.patient),
        label: lang.t_with(
            "care-assignee-patient",
            &[("name", Arg::Text(about.name.clone()))],
        ),
    }];
    let mut add = |value: String, label: String| {
        if !assignees.iter().any(|c| c.value == value) {
            assignees.push(Choice { value, label });
        }
    };
    add(v.author.clone(), v.author_name.clone());
    for m in team.members.iter().filter(|m| m.active) {
        add(m.member.clone(), m.name.clone());
    }
    let tz = viewer.tz_minutes;
    let when = |s: &str| {
        clinical::instant(s)
            .map(|t| clinical::date_time(lang, t, tz))
            .unwrap_or_default()
    };
    let detail = PlanDetail {
        id: v.id.clone(),
        title: v.title.clone(),
        description: v.description.clone().unwrap_or_default(),
        patient: v.patient.clone(),
        patient_name: about.name,
        author: lang.t_with(
            "care-plan-by",
            &[("author", Arg::Text(v.author_name.clone()))],
        ),
        status: plan_status_words(lang, &v.status),
        status_code: v.status.clone(),
        open: matches!(v.status.as_str(), "active" | "on-hold"),
        goals: v.goals.iter().map(|g| goal_row(lang, tz, g)).collect(),
        activities: v.activities.iter().map(|a| activity_row(lang, a)).collect(),
    };
    let proposals = v
        .proposals
        .iter()
        .map(|p| ProposalRow {
            task: p.task.clone(),
            summary: p.summary.clone(),
            by: lang.t_with(
                "care-proposed-by",
                &[
                    ("name", Arg::Text(p.proposer_name.clone())),
                    ("when", Arg::Text(when(&p.proposed))),
                ],
            ),
        })
        .collect();
    let history = v
        .history
        .iter()
        .map(|h| HistoryRow {
            when: when(&h.when),
            summary: h.summary.clone(),
            author: h.author_name.clone(),
            accepted_by: h.verifier_name.clone().unwrap_or_default(),
        })
        .collect();
    let measures = MEASUREMENTS
        .iter()
        .map(|(code, display, unit, _)| Choice {
            value: (*code).to_string(),
            label: format!("{display} ({unit})"),
        })
        .collect();
    let statuses = [
        ActivityStatus::Requested,
        ActivityStatus::InProgress,
        ActivityStatus::OnHold,
        ActivityStatus::Completed,
        ActivityStatus::Cancelled,
    ]
    .iter()
    .map(|s| Choice {
        value: s.as_str().to_string(),
        label: status_words(lang, s.as_str()),
    })
    .collect();
    let plan_statuses = ["active", "on-hold", "completed", "revoked"]
        .iter()
        .map(|s| Choice {
            value: (*s).to_string(),
            label: plan_status_words(lang, s),
        })
        .collect();
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render(
        status,
        &CarePlanPage {
            shell: Shell::new(viewer, "/patients", "care-plan-title"),
            p: detail,
            proposals,
            history,
            may_decide: v.may_decide,
            may_propose: v.may_propose,
            assignees,
            measures,
            statuses,
            plan_statuses,
            goal_required: true,
            done,
            error,
        },
    )
}

/// The change a plan form asks for, from its fields; `Err` names what is wrong.
fn change_of_form(pairs: &[(String, String)]) -> Result<PlanChange, &'static str> {
    let text = |name: &str| field(value(pairs, name), medmesh_care::plan::MAX_TEXT);
    match value(pairs, "kind") {
        "add-goal" => Ok(PlanChange::AddGoal {
            goal: goal_of_form(pairs)?.ok_or("care-error-goal")?,
        }),
        "add-activity" => Ok(PlanChange::AddActivity {
            activity: activity_of_form(pairs)?.ok_or("care-error-activity")?,
        }),
        "set-activity" => Ok(PlanChange::SetActivity {
            task: value(pairs, "task").to_string(),
            status: ActivityStatus::parse(value(pairs, "status")).ok_or("care-error-status")?,
        }),
        "end-goal" => Ok(PlanChange::EndGoal {
            goal: value(pairs, "goal").to_string(),
            end: match value(pairs, "end") {
                "achieved" => GoalEnd::Achieved,
                "cancelled" => GoalEnd::Cancelled,
                _ => return Err("care-error-status"),
            },
        }),
        "revise" => Ok(PlanChange::Revise {
            title: text("title").ok_or("care-error-title")?,
            description: text("description"),
        }),
        "set-status" => Ok(PlanChange::SetStatus {
            status: match value(pairs, "status") {
                "active" => PlanStatus::Active,
                "on-hold" => PlanStatus::OnHold,
                "completed" => PlanStatus::Completed,
                "revoked" => PlanStatus::Revoked,
                _ => return Err("care-error-status"),
            },
        }),
        _ => Err("care-error-status"),
    }
}

/// The goal a form's `goal_*` fields describe; `None` when its description is empty.
pub(crate) fn goal_of_form(pairs: &[(String, String)]) -> Result<Option<NewGoal>, &'static str> {
    let Some(description) = field(
        value(pairs, "goal_description"),
        medmesh_care::plan::MAX_TEXT,
    ) else {
        return Ok(None);
    };
    let code = value(pairs, "goal_measure");
    let target = if code.is_empty() {
        None
    } else {
        let (code, display, unit, _) = MEASUREMENTS
            .iter()
            .find(|m| m.0 == code)
            .ok_or("care-error-goal")?;
        let comparator =
            Comparator::parse(value(pairs, "goal_comparator")).ok_or("care-error-goal")?;
        let limit: f64 = value(pairs, "goal_value")
            .trim()
            .replace(',', ".")
            .parse()
            .map_err(|_| "care-error-goal")?;
        Some(Target {
            loinc: (*code).to_string(),
            measure: (*display).to_string(),
            comparator: Some(comparator),
            value: Some(limit),
            high: None,
            unit: (*unit).to_string(),
            due: field(value(pairs, "goal_due"), 10),
        })
    };
    Ok(Some(NewGoal {
        description,
        target,
    }))
}

/// The activity a form's `activity_*` fields describe; `None` when its description is
/// empty.
pub(crate) fn activity_of_form(
    pairs: &[(String, String)],
) -> Result<Option<NewActivity>, &'static str> {
    let Some(description) = field(
        value(pairs, "activity_description"),
        medmesh_care::plan::MAX_TEXT,
    ) else {
        return Ok(None);
    };
    let assignee = value(pairs, "activity_assignee").trim().to_string();
    if assignee.is_empty() {
        return Err("care-error-activity");
    }
    Ok(Some(NewActivity {
        description,
        assignee,
        due: field(value(pairs, "activity_due"), 10),
    }))
}

/// `POST /care-plans/{id}/change`: one change (`kind` and its fields), made or proposed.
pub async fn change(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_form(
        &viewer,
        Some(value(&pairs, "csrf")),
        Audience::Clinician,
        &[&id],
    ) {
        return r;
    }
    if pairs.len() > 40 {
        return problem(viewer.lang, Problem::BadInput);
    }
    let change = match change_of_form(&pairs) {
        Ok(c) => c,
        Err(message) => {
            let error = Some(viewer.lang.t(message));
            return show(&state, &viewer, &id, None, error).await;
        }
    };
    match state.care.change(&viewer.ctx, &id, change).await {
        Ok(Changed::Applied { .. }) => {
            Redirect::to(&format!("/care-plans/{id}?done=applied")).into_response()
        }
        Ok(Changed::Proposed { .. }) => {
            Redirect::to(&format!("/care-plans/{id}?done=proposed")).into_response()
        }
        Err(e) => refused(&state, &viewer, &id, &e).await,
    }
}

/// A refusal the user can act on is shown on the page in words; anything else is the
/// pages' usual problem.
async fn refused(
    state: &AppState,
    viewer: &Viewer,
    id: &str,
    e: &medmesh_records::RecordError,
) -> Response {
    let text = match (crate::pages::refusal_words(e), e) {
        (Some(words), _) => words,
        (None, medmesh_records::RecordError::Conflict(_)) => viewer.lang.t("care-error-conflict"),
        _ => return record_problem(viewer.lang, e),
    };
    show(state, viewer, id, None, Some(text)).await
}

/// `POST /care-plans/{id}/proposals/{task}`: `decision` is `accept` or `decline` (with a
/// `reason`).
pub async fn decide(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((id, task)): Path<(String, String)>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_form(
        &viewer,
        Some(value(&pairs, "csrf")),
        Audience::Clinician,
        &[&id, &task],
    ) {
        return r;
    }
    let accept = match value(&pairs, "decision") {
        "accept" => true,
        "decline" => false,
        _ => return problem(viewer.lang, Problem::BadInput),
    };
    let reason = field(value(&pairs, "reason"), medmesh_care::plan::MAX_TEXT);
    match state
        .care
        .decide(&viewer.ctx, &task, accept, reason.as_deref())
        .await
    {
        Ok(_) => {
            let done = if accept { "accepted" } else { "declined" };
            Redirect::to(&format!("/care-plans/{id}?done={done}")).into_response()
        }
        Err(e) => refused(&state, &viewer, &id, &e).await,
    }
}
