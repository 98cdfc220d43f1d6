//! A patient's care team and care plans, for clinicians (`/patients/{id}/care`): the team's
//! members with their roles and periods (add one found by name, end a membership), the
//! patient's plans, and a new plan with its first goal and activity.
//!
//! Membership is a care relationship for the PDP: adding a member opens the record to them
//! and ending it closes it, on their next request. The page says so.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_care::{NewMember, NewPlan, TeamRole};
use medmesh_fhir::search::Handling;
use medmesh_server::AppState;
use serde::Deserialize;
use serde_json::Value;

use crate::clinical;
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::care::{MemberRow, member_rows, plan_status_words};
use crate::pages::care_plan::{Choice, activity_of_form, goal_of_form};
use crate::pages::chart::{About, MEASUREMENTS, about};
use crate::pages::prescribe::value;
use crate::pages::{field, refuse_form, valid_id};
use crate::viewer::{Audience, Viewer};

/// The most practitioners a name search lists.
const MAX_FOUND: usize = 20;

/// A plan in the list.
pub struct PlanRow {
    /// The CarePlan's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its state in words.
    pub status: String,
    /// Who made it.
    pub author: String,
    /// When, in words.
    pub created: String,
}

#[derive(Template)]
#[template(path = "care_team.html")]
struct CareTeamPage {
    shell: Shell,
    about: About,
    members: Vec<MemberRow>,
    plans: Vec<PlanRow>,
    find: String,
    found: Vec<Choice>,
    roles: Vec<Choice>,
    measures: Vec<Choice>,
    assignees: Vec<Choice>,
    conditions: Vec<Choice>,
    goal_required: bool,
    done: Option<String>,
    error: Option<String>,
}

/// The page's query: a practitioner's name to find (directory data, not the patient's),
/// and a word for what was done.
#[derive(Debug, Deserialize)]
pub struct CareQuery {
    /// Part of a practitioner's name.
    pub find: Option<String>,
    /// `added`, `ended` or `created`.
    pub done: Option<String>,
}

/// `GET /patients/{id}/care`.
pub async fn care_team(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<CareQuery>,
) -> Response {
    let done = match q.done.as_deref() {
        Some(d @ ("added" | "ended")) => Some(viewer.lang.t(&format!("care-team-done-{d}"))),
        _ => None,
    };
    let find = q
        .find
        .as_deref()
        .and_then(|f| field(f, 100))
        .unwrap_or_default();
    show(&state, &viewer, &id, find, done, None).await
}

async fn show(
    state: &AppState,
    viewer: &Viewer,
    id: &str,
    find: String,
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
    let about = match about(state, viewer, id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let team = match state.care.care_team(&viewer.ctx, id).await {
        Ok(t) => t,
        Err(e) => return record_problem(lang, &e),
    };
    let plans = match state.care.plans(&viewer.ctx, id).await {
        Ok(p) => p,
        Err(e) => return record_problem(lang, &e),
    };
    let mut found = Vec::new();
    if !find.is_empty() {
        let params = vec![
            ("name".to_string(), find.clone()),
            ("_count".to_string(), MAX_FOUND.to_string()),
        ];
        match state
            .records
            .search(&viewer.ctx, "Practitioner", &params, Handling::Lenient)
            .await
        {
            Ok(bundle) => {
                for p in clinical::resources(bundle) {
                    let pid = p["id"].as_str().unwrap_or_default().to_string();
                    found.push(Choice {
                        label: medmesh_fhir::names::human_name(&p).unwrap_or_else(|| pid.clone()),
                        value: format!("Practitioner/{pid}"),
                    });
                }
            }
            Err(e) => return record_problem(lang, &e),
        }
    }
    // The patient's conditions, for a plan about one (read as the viewer: the PDP decides).
    let conditions =
        match crate::pages::search(state, viewer, id, "Condition", &[("_count", "100")]).await {
            Ok(list) => list
                .iter()
                .filter(|c| {
                    !matches!(
                        c["clinicalStatus"]["coding"][0]["code"].as_str(),
                        Some("resolved" | "inactive" | "remission")
                    ) && c["verificationStatus"]["coding"][0]["code"] != "entered-in-error"
                })
                .filter_map(|c| {
                    Some(Choice {
                        value: c["id"].as_str()?.to_string(),
                        label: clinical::concept(&c["code"])?,
                    })
                })
                .collect(),
            Err(e) => return record_problem(lang, &e),
        };
    let mut assignees = vec![Choice {
        value: format!("Patient/{id}"),
        label: lang.t_with(
            "care-assignee-patient",
            &[("name", crate::i18n::Arg::Text(about.name.clone()))],
        ),
    }];
    if let Some(c) = viewer.ctx.actor().clinician() {
        assignees.push(Choice {
            value: c.practitioner.clone(),
            label: lang.t("care-assignee-me"),
        });
    }
    for m in team.members.iter().filter(|m| m.active) {
        if !assignees.iter().any(|a| a.value == m.member) {
            assignees.push(Choice {
                value: m.member.clone(),
                label: m.name.clone(),
            });
        }
    }
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render(
        status,
        &CareTeamPage {
            shell: Shell::new(viewer, "/patients", "care-team-title"),
            members: member_rows(lang, &team),
            plans: plans
                .iter()
                .map(|p| PlanRow {
                    id: p.id.clone(),
                    title: p.title.clone(),
                    status: plan_status_words(lang, &p.status),
                    author: p.author_name.clone(),
                    created: clinical::date_of(
                        lang,
                        &Value::String(p.created.clone()),
                        viewer.tz_minutes,
                    ),
                })
                .collect(),
            about,
            find,
            found,
            roles: TeamRole::ALL
                .iter()
                .map(|r| Choice {
                    value: r.code().to_string(),
                    label: lang.t(&format!("care-role-{}", r.code())),
                })
                .collect(),
            measures: MEASUREMENTS
                .iter()
                .map(|(code, display, unit, _)| Choice {
                    value: (*code).to_string(),
                    label: format!("{display} ({unit})"),
                })
                .collect(),
            assignees,
            conditions,
            goal_required: false,
            done,
            error,
        },
    )
}

async fn refused(
    state: &AppState,
    viewer: &Viewer,
    id: &str,
    e: &medmesh_records::RecordError,
) -> Response {
    match crate::pages::refusal_words(e) {
        Some(text) => show(state, viewer, id, String::new(), None, Some(text)).await,
        None => record_problem(viewer.lang, e),
    }
}

/// `POST /patients/{id}/care/members`: adds `member` with `role`, `start` and `end`.
pub async fn add_member(
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
    let Some(role) = TeamRole::parse(value(&pairs, "role")) else {
        return problem(viewer.lang, Problem::BadInput);
    };
    let new = NewMember {
        member: value(&pairs, "member").to_string(),
        role,
        start: field(value(&pairs, "start"), 10),
        end: field(value(&pairs, "end"), 10),
    };
    match state.care.add_member(&viewer.ctx, &id, new).await {
        Ok(_) => Redirect::to(&format!("/patients/{id}/care?done=added")).into_response(),
        Err(e) => refused(&state, &viewer, &id, &e).await,
    }
}

/// `POST /patients/{id}/care/members/end`: ends `member`'s membership now.
pub async fn end_member(
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
    match state
        .care
        .end_member(&viewer.ctx, &id, value(&pairs, "member"))
        .await
    {
        Ok(_) => Redirect::to(&format!("/patients/{id}/care?done=ended")).into_response(),
        Err(e) => refused(&state, &viewer, &id, &e).await,
    }
}

/// `POST /patients/{id}/care/plans`: a new plan with its first goal and activity (each
/// optional).
pub async fn create_plan(
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
    let lang = viewer.lang;
    let parts = (goal_of_form(&pairs), activity_of_form(&pairs));
    let (goal, activity) = match parts {
        (Ok(g), Ok(a)) => (g, a),
        (Err(m), _) | (_, Err(m)) => {
            return show(&state, &viewer, &id, String::new(), None, Some(lang.t(m))).await;
        }
    };
    let new = NewPlan {
        title: field(value(&pairs, "title"), medmesh_care::plan::MAX_TEXT).unwrap_or_default(),
        description: field(value(&pairs, "description"), medmesh_care::plan::MAX_TEXT),
        condition: field(value(&pairs, "condition"), 64).filter(|c| valid_id(c)),
        goals: goal.into_iter().collect(),
        activities: activity.into_iter().collect(),
    };
    match state.care.create_plan(&viewer.ctx, &id, new).await {
        Ok(plan) => Redirect::to(&format!("/care-plans/{plan}?done=applied")).into_response(),
        Err(e) => refused(&state, &viewer, &id, &e).await,
    }
}
