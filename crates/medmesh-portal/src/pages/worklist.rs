//! The clinician's worklist (`/worklist`): every open Task they own across their patients
//! (care-plan activities, proposed changes to decide, refill requests, adherence reviews,
//! referrals), overdue first, each linking to where it is done.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use medmesh_server::AppState;
use serde_json::Value;

use crate::clinical;
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::care::status_words;
use crate::viewer::{Audience, Viewer};

/// One open Task as the page lists it.
pub struct WorkRow {
    /// What kind of work, in words.
    pub kind: String,
    /// The patient's id (the chart's link).
    pub patient: String,
    /// The patient's name.
    pub patient_name: String,
    /// What is to be done.
    pub description: String,
    /// When it is due, in words, or "".
    pub due: String,
    /// Whether it is overdue.
    pub overdue: bool,
    /// Its state in words.
    pub status: String,
    /// Where it is done.
    pub link: String,
}

#[derive(Template)]
#[template(path = "worklist.html")]
struct WorklistPage {
    shell: Shell,
    rows: Vec<WorkRow>,
    overdue: usize,
}

/// `GET /worklist`.
pub async fn worklist(State(state): State<AppState>, viewer: Viewer) -> Response {
    let lang = viewer.lang;
    if viewer.audience != Audience::Clinician {
        return problem(lang, Problem::WrongAudience);
    }
    let items = match state.care.worklist(&viewer.ctx).await {
        Ok(i) => i,
        Err(e) => return record_problem(lang, &e),
    };
    let rows: Vec<WorkRow> = items
        .into_iter()
        .map(|w| {
            let link = match (w.kind.as_str(), &w.plan) {
                (_, Some(plan)) => format!("/care-plans/{plan}"),
                ("refill-request" | "adherence-review", _) => "/refills".to_string(),
                ("referral", _) => "/referrals".to_string(),
                _ => format!("/patients/{}", w.patient),
            };
            WorkRow {
                kind: lang.t(&format!("worklist-kind-{}", w.kind)),
                due: w
                    .due
                    .map(|d| clinical::date_of(lang, &Value::String(d), viewer.tz_minutes))
                    .unwrap_or_default(),
                overdue: w.overdue,
                status: status_words(lang, &w.status),
                patient: w.patient,
                patient_name: w.patient_name,
                description: w.description,
                link,
            }
        })
        .collect();
    let overdue = rows.iter().filter(|r| r.overdue).count();
    render(
        StatusCode::OK,
        &WorklistPage {
            shell: Shell::new(&viewer, "/worklist", "worklist-title"),
            rows,
            overdue,
        },
    )
}
