//! The prescriber's refill requests (`/refills`): the requests their patients made, oldest
//! first, each approved (a renewal is prescribed as a draft, with the safety checks run
//! again, and the prescriber goes on to sign it) or declined with a reason. The patient and
//! the pharmacy are told either way (the medications service does that). Below them, the
//! adherence reviews raised for the clinician (days covered under 80%), each closed with a
//! note of what was done.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_medications::Prescribed;
use medmesh_medications::refills::MedicationTaskItem;
use medmesh_records::RecordError;
use medmesh_server::AppState;

use crate::clinical;
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::prescribe::{WarningRow, overrides_of, refusal_text, value, warning_rows};
use crate::pages::refuse_form;
use crate::viewer::{Audience, Viewer};

/// One request, as the page lists it.
pub struct RequestRow {
    /// The Task's id.
    pub task: String,
    /// The patient's id (the chart's link).
    pub patient: String,
    /// The patient's name.
    pub patient_name: String,
    /// The medication in words.
    pub medication: String,
    /// When it was asked, in words.
    pub asked: String,
    /// The patient's note.
    pub note: String,
}

#[derive(Template)]
#[template(path = "refills.html")]
struct RefillsPage {
    shell: Shell,
    requests: Vec<RequestRow>,
    reviews: Vec<RequestRow>,
    /// The request whose approval needs overrides, with its warnings.
    pending: Option<String>,
    warnings: Vec<WarningRow>,
    error: Option<String>,
    done: Option<String>,
}

fn row(viewer: &Viewer, r: MedicationTaskItem) -> RequestRow {
    let asked = serde_json::Value::String(r.asked);
    RequestRow {
        asked: clinical::date_of(viewer.lang, &asked, viewer.tz_minutes),
        task: r.task,
        patient: r.patient,
        patient_name: r.patient_name,
        medication: r.medication,
        note: r.note.unwrap_or_default(),
    }
}

async fn show(
    state: &AppState,
    viewer: &Viewer,
    pending: Option<String>,
    warnings: Vec<WarningRow>,
    error: Option<String>,
    done: Option<String>,
) -> Response {
    let requests = match state.medications.refill_requests(&viewer.ctx).await {
        Ok(list) => list.into_iter().map(|r| row(viewer, r)).collect(),
        Err(e) => return record_problem(viewer.lang, &e),
    };
    let reviews = match state.medications.adherence_reviews(&viewer.ctx).await {
        Ok(list) => list.into_iter().map(|r| row(viewer, r)).collect(),
        Err(e) => return record_problem(viewer.lang, &e),
    };
    let status = if warnings.is_empty() && error.is_none() {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    render(
        status,
        &RefillsPage {
            shell: Shell::new(viewer, "/refills", "refills-title"),
            requests,
            reviews,
            pending,
            warnings,
            error,
            done,
        },
    )
}

/// `GET /refills`.
pub async fn refills(State(state): State<AppState>, viewer: Viewer) -> Response {
    if viewer.audience != Audience::Clinician {
        return problem(viewer.lang, Problem::WrongAudience);
    }
    show(&state, &viewer, None, Vec::new(), None, None).await
}

/// `POST /refills/{task}/decide`: `decision` is `approve` (with any overrides the checks
/// ask for) or `decline` (with a `reason`).
pub async fn decide(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(task): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_form(
        &viewer,
        Some(value(&pairs, "csrf")),
        Audience::Clinician,
        &[&task],
    ) {
        return r;
    }
    if pairs.len() > 100 {
        return problem(viewer.lang, Problem::BadInput);
    }
    let approve = match value(&pairs, "decision") {
        "approve" => true,
        "decline" => false,
        _ => return problem(viewer.lang, Problem::BadInput),
    };
    let reason = Some(value(&pairs, "reason")).filter(|r| !r.trim().is_empty());
    let overrides = overrides_of(&pairs);
    match state
        .medications
        .decide_refill(&viewer.ctx, &task, approve, reason, None, &overrides)
        .await
    {
        Ok((_, Some(Prescribed::Written { prescription, .. }))) => {
            let rx = prescription["id"].as_str().unwrap_or_default();
            Redirect::to(&format!("/prescriptions/{rx}/sign")).into_response()
        }
        Ok((_, Some(Prescribed::NeedsOverride(warnings)))) => {
            let rows = warning_rows(&warnings, &pairs);
            show(&state, &viewer, Some(task), rows, None, None).await
        }
        Ok((_, None)) => {
            let done = Some(viewer.lang.t("refills-declined"));
            show(&state, &viewer, None, Vec::new(), None, done).await
        }
        Err(RecordError::Invalid(issues)) => {
            let error = Some(refusal_text(&issues));
            show(&state, &viewer, None, Vec::new(), error, None).await
        }
        Err(e) => record_problem(viewer.lang, &e),
    }
}

/// `POST /reviews/{task}/close`: an adherence review done, with a `note` of what was done.
pub async fn close_review(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(task): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = refuse_form(
        &viewer,
        Some(value(&pairs, "csrf")),
        Audience::Clinician,
        &[&task],
    ) {
        return r;
    }
    if pairs.len() > 10 {
        return problem(viewer.lang, Problem::BadInput);
    }
    let note = Some(value(&pairs, "note")).filter(|n| !n.trim().is_empty());
    match state
        .medications
        .close_review(&viewer.ctx, &task, note)
        .await
    {
        Ok(_) => {
            let done = Some(viewer.lang.t("reviews-closed"));
            show(&state, &viewer, None, Vec::new(), None, done).await
        }
        Err(RecordError::Invalid(issues)) => {
            let error = Some(refusal_text(&issues));
            show(&state, &viewer, None, Vec::new(), error, None).await
        }
        Err(e) => record_problem(viewer.lang, &e),
    }
}
