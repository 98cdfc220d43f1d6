//! A pharmacy's queue. `GET /pharmacy`: the prescriptions routed to the pharmacist's
//! pharmacy, each with its patient, medication, instructions and what is left to dispense;
//! `POST /pharmacy/{id}/dispense` hands over a quantity (a whole fill by default) and `POST
//! /pharmacy/{id}/return` returns a prescription with a reason. Everything goes through the
//! medication service with the pharmacist's context: the PDP opens a patient to them only
//! while a prescription is routed to their pharmacy.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_medications::prescription::{instructions_words, medication_words};
use medmesh_server::AppState;
use serde::Deserialize;

use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::{field, name_of, refuse_form};
use crate::viewer::{Audience, Viewer};

/// A prescription in the queue.
pub struct QueueRow {
    /// Its id.
    pub id: String,
    /// The patient's name.
    pub patient: String,
    /// The medication in words.
    pub medication: String,
    /// The instructions in words.
    pub instructions: String,
    /// What is left, in words ("30 tablet left, 2 refills").
    pub left: String,
    /// On hold (not to be dispensed now).
    pub on_hold: bool,
}

#[derive(Template)]
#[template(path = "pharmacy.html")]
struct PharmacyPage {
    shell: Shell,
    queue: Vec<QueueRow>,
    notice: Option<String>,
}

/// `GET /pharmacy` parameters.
#[derive(Debug, Default, Deserialize)]
pub struct Shown {
    /// `dispensed` or `returned` after a form.
    #[serde(default)]
    done: String,
}

/// `GET /pharmacy`.
pub async fn queue(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(shown): Query<Shown>,
) -> Response {
    if viewer.audience != Audience::Pharmacist {
        return problem(viewer.lang, Problem::WrongAudience);
    }
    let lang = viewer.lang;
    let items = match state.medications.pharmacy_queue(&viewer.ctx).await {
        Ok(i) => i,
        Err(e) => return record_problem(lang, &e),
    };
    let mut queue = Vec::new();
    for i in items {
        let r = &i.prescription;
        let patient = match r["subject"]["reference"].as_str() {
            Some(p) => name_of(&state, &viewer, p).await,
            None => String::new(),
        };
        let amount = match (i.remaining.fill_size, &i.remaining.unit) {
            (Some(_), Some(u)) => format!("{} {u}", i.remaining.left),
            (Some(_), None) => i.remaining.left.to_string(),
            (None, _) => lang.t_with(
                "pharmacy-fills",
                &[("n", crate::i18n::Arg::Number(i.remaining.left))],
            ),
        };
        queue.push(QueueRow {
            id: r["id"].as_str().unwrap_or_default().to_string(),
            patient,
            medication: medication_words(r).unwrap_or_default(),
            instructions: instructions_words(r),
            left: lang.t_with(
                "pharmacy-left",
                &[
                    ("amount", crate::i18n::Arg::Text(amount)),
                    (
                        "refills",
                        crate::i18n::Arg::Number(f64::from(i.remaining.refills_left())),
                    ),
                ],
            ),
            on_hold: r["status"] == "on-hold",
        });
    }
    let notice = match shown.done.as_str() {
        "dispensed" => Some(lang.t("pharmacy-done-dispensed")),
        "returned" => Some(lang.t("pharmacy-done-returned")),
        _ => None,
    };
    render(
        StatusCode::OK,
        &PharmacyPage {
            shell: Shell::new(&viewer, "/pharmacy", "pharmacy-title"),
            queue,
            notice,
        },
    )
}

/// The dispense form.
#[derive(Debug, Deserialize)]
pub struct DispenseForm {
    csrf: Option<String>,
    /// How much (empty: a whole fill, or the rest of one).
    #[serde(default)]
    quantity: String,
}

/// `POST /pharmacy/{id}/dispense`.
pub async fn dispense(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<DispenseForm>,
) -> Response {
    if let Some(r) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Pharmacist, &[&id]) {
        return r;
    }
    let quantity = match field(&form.quantity, 20) {
        Some(q) => match q.parse::<f64>() {
            Ok(n) if n.is_finite() => Some(n),
            _ => return problem(viewer.lang, Problem::NotFound),
        },
        None => None,
    };
    match state
        .medications
        .dispense(&viewer.ctx, &id, quantity, None)
        .await
    {
        Ok(_) => Redirect::to("/pharmacy?done=dispensed").into_response(),
        Err(e) => record_problem(viewer.lang, &e),
    }
}

/// The return form.
#[derive(Debug, Deserialize)]
pub struct ReturnForm {
    csrf: Option<String>,
    #[serde(default)]
    reason: String,
}

/// `POST /pharmacy/{id}/return`.
pub async fn return_prescription(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<ReturnForm>,
) -> Response {
    if let Some(r) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Pharmacist, &[&id]) {
        return r;
    }
    let reason = field(&form.reason, 1000).unwrap_or_default();
    match state
        .medications
        .return_prescription(&viewer.ctx, &id, &reason)
        .await
    {
        Ok(_) => Redirect::to("/pharmacy?done=returned").into_response(),
        Err(e) => record_problem(viewer.lang, &e),
    }
}
