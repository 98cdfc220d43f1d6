//! Care coordination on the JSON API: care plans (`/api/patients/{id}/care-plans`,
//! `/api/care-plans/{id}`), changes and proposals, the patient's care team, and the
//! clinician's worklist. Extract, call [`medmesh_care::CareService`], render.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use medmesh_care::{
    Changed, NewActivity, NewGoal, NewMember, NewPlan, PlanChange, PlanView, TeamRole, TeamView,
    WorkItem,
};
use serde_json::{Value, json};

use crate::AppState;
use crate::api::{ApiJson, ApiPath};
use crate::auth::Authenticated;
use crate::response::ApiError;

/// `POST /api/patients/{id}/care-plans` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPlanBody {
    /// The plan's title.
    pub title: String,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// The Condition it addresses (an id).
    #[serde(default)]
    pub condition: Option<String>,
    /// Its goals.
    #[serde(default)]
    pub goals: Vec<NewGoal>,
    /// Its activities.
    #[serde(default)]
    pub activities: Vec<NewActivity>,
}

/// `POST /api/patients/{id}/care-plans`: 201 with the new plan's id.
pub async fn create_plan(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
    ApiJson(body): ApiJson<NewPlanBody>,
) -> Result<Response, ApiError> {
    let id = state
        .care
        .create_plan(
            &ctx,
            &patient,
            NewPlan {
                title: body.title,
                description: body.description,
                condition: body.condition,
                goals: body.goals,
                activities: body.activities,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
}

/// `GET /api/patients/{id}/care-plans`: the patient's plans, newest first.
pub async fn plans(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
) -> Result<Response, ApiError> {
    let plans = state.care.plans(&ctx, &patient).await?;
    Ok(Json(
        plans
            .iter()
            .map(|p| {
                json!({"id": p.id, "title": p.title, "status": p.status,
                    "author": p.author_name, "created": p.created})
            })
            .collect::<Vec<_>>(),
    )
    .into_response())
}

fn plan_json(v: &PlanView) -> Value {
    json!({
        "id": v.id,
        "version": v.version,
        "title": v.title,
        "description": v.description,
        "status": v.status,
        "patient": v.patient,
        "author": v.author_name,
        "mayDecide": v.may_decide,
        "mayPropose": v.may_propose,
        "goals": v.goals.iter().map(|g| json!({
            "id": g.id,
            "description": g.description,
            "status": g.status,
            "achievement": g.achievement,
            "target": g.target.as_ref().map(|t| json!({"text": t.words(), "loinc": t.loinc, "due": t.due})),
            "progress": g.progress.as_ref().map(|p| json!({
                "latest": p.latest.as_ref().map(|r| json!({"value": r.value, "unit": r.unit})),
                "previous": p.previous.as_ref().map(|r| json!({"value": r.value, "unit": r.unit})),
                "met": p.met,
                "otherUnits": p.other_units,
            })),
        })).collect::<Vec<_>>(),
        "activities": v.activities.iter().map(|a| json!({
            "task": a.task, "description": a.description, "assignee": a.assignee,
            "assigneeName": a.assignee_name, "patientsOwn": a.patients_own, "mine": a.mine,
            "status": a.status, "due": a.due, "overdue": a.overdue,
        })).collect::<Vec<_>>(),
        "proposals": v.proposals.iter().map(|p| json!({
            "task": p.task, "summary": p.summary, "proposer": p.proposer_name, "proposed": p.proposed,
        })).collect::<Vec<_>>(),
        "history": v.history.iter().map(|h| json!({
            "when": h.when, "summary": h.summary, "author": h.author_name, "acceptedBy": h.verifier_name,
        })).collect::<Vec<_>>(),
        "carePlan": v.resource,
    })
}

/// `GET /api/care-plans/{id}`: the plan with its goals and their progress, activities,
/// open proposals and history.
pub async fn plan(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let view = state.care.plan(&ctx, &id).await?;
    Ok(Json(plan_json(&view)).into_response())
}

fn changed_response(c: Changed) -> Response {
    match c {
        Changed::Applied { version } => {
            Json(json!({"applied": true, "version": version})).into_response()
        }
        Changed::Proposed { task } => (
            StatusCode::ACCEPTED,
            Json(json!({"applied": false, "proposal": task})),
        )
            .into_response(),
    }
}

/// `POST /api/care-plans/{id}/changes`: a [`PlanChange`]; 200 when made, 202 with the
/// proposal's Task when it waits for the author or the GP.
pub async fn change(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
    ApiJson(change): ApiJson<PlanChange>,
) -> Result<Response, ApiError> {
    Ok(changed_response(
        state.care.change(&ctx, &id, change).await?,
    ))
}

/// `POST /api/care-plan-proposals/{task}/decision` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Accept (make the change) or decline.
    pub accept: bool,
    /// Why, when declining.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /api/care-plan-proposals/{task}/decision`.
pub async fn decide(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(task): ApiPath<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> Result<Response, ApiError> {
    Ok(changed_response(
        state
            .care
            .decide(&ctx, &task, body.accept, body.reason.as_deref())
            .await?,
    ))
}

fn team_json(t: &TeamView) -> Value {
    json!({
        "id": t.id,
        "members": t.members.iter().map(|m| json!({
            "member": m.member, "name": m.name, "role": m.role.map(TeamRole::code),
            "roleText": m.role_text, "start": m.start, "end": m.end, "active": m.active,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /api/patients/{id}/care-team`.
pub async fn team(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(Json(team_json(&state.care.care_team(&ctx, &patient).await?)).into_response())
}

/// `POST /api/patients/{id}/care-team/members` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    /// `Practitioner/x`.
    pub member: String,
    /// The role's code (`gp`, `specialist`, `nurse`, `pharmacist`, `dietitian`,
    /// `coordinator`, `other`).
    pub role: String,
    /// From (a date; today when absent).
    #[serde(default)]
    pub start: Option<String>,
    /// Until (a date).
    #[serde(default)]
    pub end: Option<String>,
}

/// `POST /api/patients/{id}/care-team/members`: adds a member; the team after it.
pub async fn add_member(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
    ApiJson(body): ApiJson<MemberBody>,
) -> Result<Response, ApiError> {
    let role = TeamRole::parse(&body.role).ok_or_else(|| {
        ApiError::bad_request(
            "role is one of gp, specialist, nurse, pharmacist, dietitian, coordinator, other",
        )
    })?;
    let team = state
        .care
        .add_member(
            &ctx,
            &patient,
            NewMember {
                member: body.member,
                role,
                start: body.start,
                end: body.end,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(team_json(&team))).into_response())
}

/// `POST /api/patients/{id}/care-team/members/{practitioner}/end`: ends a membership now.
pub async fn end_member(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath((patient, practitioner)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let team = state.care.end_member(&ctx, &patient, &practitioner).await?;
    Ok(Json(team_json(&team)).into_response())
}

/// A worklist item as JSON.
pub fn work_item_json(w: &WorkItem) -> Value {
    json!({"task": w.task, "kind": w.kind, "patient": w.patient, "patientName": w.patient_name,
        "description": w.description, "status": w.status, "due": w.due, "overdue": w.overdue,
        "authored": w.authored, "plan": w.plan})
}

/// `GET /api/worklist`: the caller's open Tasks across their patients, overdue first.
pub async fn worklist(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
) -> Result<Response, ApiError> {
    let items = state.care.worklist(&ctx).await?;
    Ok(
        Json(json!({"items": items.iter().map(work_item_json).collect::<Vec<_>>()}))
            .into_response(),
    )
}
