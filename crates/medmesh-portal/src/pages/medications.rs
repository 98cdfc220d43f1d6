//! A patient's medications. `GET /medications`: today's doses, each logged taken or skipped
//! in one tap (`POST /medications/{id}/dose`); the active prescriptions with their
//! instructions in plain words, each with a refill request (`POST
//! /medications/{id}/refill`); the past ones; the last doses logged; and the preferred and
//! alternate pharmacy (`POST /medications/pharmacies`). Everything goes through the
//! medication service with the patient's context, so the PDP and the audit log apply.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_fhir::search::Handling;
use medmesh_medications::PharmacyChoice;
use medmesh_medications::doses::DoseStatus;
use medmesh_medications::prescription::{instructions_words, medication_words};
use medmesh_server::AppState;
use serde::Deserialize;

use crate::clinical::resources;
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::{field, refuse_form, search};
use crate::viewer::{Audience, Viewer};

/// A dose of today.
pub struct DoseRow {
    /// The prescription's id.
    pub prescription: String,
    /// The medication in words.
    pub medication: String,
    /// The instructions in words.
    pub instructions: String,
    /// When, in the patient's time (`08:00`); empty for as needed.
    pub time: String,
    /// The instant it is due (what the form sends back); empty for as needed.
    pub due: String,
    /// What was logged, in words; empty when nothing was.
    pub logged: String,
}

/// A prescription in the list.
pub struct RxRow {
    /// Its id.
    pub id: String,
    /// The medication in words.
    pub medication: String,
    /// The instructions in words.
    pub instructions: String,
    /// Its status, in words.
    pub status: String,
    /// When it was written (a date).
    pub written: String,
}

/// A dose logged.
pub struct LogRow {
    /// When (the patient's browser's time).
    pub when: String,
    /// The medication.
    pub medication: String,
    /// Taken, late or skipped, in words.
    pub what: String,
}

/// A pharmacy to choose.
pub struct PharmacyOption {
    /// `Organization/x`.
    pub reference: String,
    /// Its name.
    pub name: String,
}

#[derive(Template)]
#[template(path = "medications.html")]
struct MedicationsPage {
    shell: Shell,
    doses: Vec<DoseRow>,
    active: Vec<RxRow>,
    past: Vec<RxRow>,
    log: Vec<LogRow>,
    pharmacies: Vec<PharmacyOption>,
    preferred: String,
    alternate: String,
    notice: Option<String>,
}

/// `GET /medications` parameters.
#[derive(Debug, Default, Deserialize)]
pub struct Shown {
    /// `logged`, `refill`, `pharmacies` after a form.
    #[serde(default)]
    done: String,
}

/// The node's pharmacies (Organizations of type pharmacy), by name, for a choice.
pub(crate) async fn pharmacies(
    state: &AppState,
    viewer: &Viewer,
) -> Result<Vec<PharmacyOption>, medmesh_records::RecordError> {
    let b = state
        .records
        .search(
            &viewer.ctx,
            "Organization",
            &[
                (
                    "type".into(),
                    format!(
                        "{}|pharmacy",
                        medmesh_medications::pharmacy::ORGANIZATION_TYPE
                    ),
                ),
                ("_count".into(), "100".into()),
            ],
            Handling::Lenient,
        )
        .await?;
    Ok(resources(b)
        .iter()
        .filter_map(|o| {
            Some(PharmacyOption {
                reference: format!("Organization/{}", o["id"].as_str()?),
                name: o["name"].as_str().unwrap_or_default().to_string(),
            })
        })
        .collect())
}

fn words_of_status(lang: crate::i18n::Lang, status: &str) -> String {
    lang.t(&format!("med-status-{status}"))
}

/// `GET /medications`.
pub async fn medications(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(shown): Query<Shown>,
) -> Response {
    let Some(patient) = viewer.own_patient() else {
        return problem(viewer.lang, Problem::WrongAudience);
    };
    let lang = viewer.lang;
    let t = |id: &str| lang.t(id);
    let doses = match state
        .medications
        .doses_of_day(&viewer.ctx, &patient, None)
        .await
    {
        Ok(d) => d
            .into_iter()
            .map(|d| DoseRow {
                prescription: d.prescription,
                medication: d.medication,
                instructions: d.instructions,
                time: d.local_time.unwrap_or_default(),
                due: d
                    .due
                    .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                    .unwrap_or_default(),
                logged: d
                    .logged
                    .map(|l| t(&format!("med-logged-{l}")))
                    .unwrap_or_default(),
            })
            .collect(),
        Err(e) => return record_problem(lang, &e),
    };
    let requests = match search(
        &state,
        &viewer,
        &format!("Patient/{patient}"),
        "MedicationRequest",
        &[("_sort", "-authoredon"), ("_count", "100")],
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return record_problem(lang, &e),
    };
    let (mut active, mut past) = (Vec::new(), Vec::new());
    for r in &requests {
        let status = r["status"].as_str().unwrap_or_default();
        if status == "draft" {
            continue;
        }
        let row = RxRow {
            id: r["id"].as_str().unwrap_or_default().to_string(),
            medication: medication_words(r).unwrap_or_default(),
            instructions: instructions_words(r),
            status: words_of_status(lang, status),
            written: r["authoredOn"]
                .as_str()
                .map(|a| a.chars().take(10).collect())
                .unwrap_or_default(),
        };
        if matches!(status, "active" | "on-hold") {
            active.push(row);
        } else {
            past.push(row);
        }
    }
    let names: std::collections::HashMap<String, String> = requests
        .iter()
        .filter_map(|r| {
            Some((
                format!("MedicationRequest/{}", r["id"].as_str()?),
                medication_words(r)?,
            ))
        })
        .collect();
    let log = match search(
        &state,
        &viewer,
        &format!("Patient/{patient}"),
        "MedicationAdministration",
        &[("_sort", "-effective-time"), ("_count", "20")],
    )
    .await
    {
        Ok(l) => l
            .iter()
            .map(|a| LogRow {
                when: crate::clinical::date_of(lang, &a["effectiveDateTime"], viewer.tz_minutes),
                medication: a["request"]["reference"]
                    .as_str()
                    .and_then(|r| names.get(r).cloned())
                    .unwrap_or_default(),
                what: t(match a["status"].as_str() {
                    Some("not-done") => "med-logged-skipped",
                    _ => "med-logged-taken",
                }),
            })
            .collect(),
        Err(e) => return record_problem(lang, &e),
    };
    let choice = match state.medications.pharmacies(&viewer.ctx, &patient).await {
        Ok(c) => c,
        Err(e) => return record_problem(lang, &e),
    };
    let pharmacies = match pharmacies(&state, &viewer).await {
        Ok(p) => p,
        Err(e) => return record_problem(lang, &e),
    };
    let notice = match shown.done.as_str() {
        "logged" => Some(t("med-done-logged")),
        "refill" => Some(t("med-done-refill")),
        "pharmacies" => Some(t("med-done-pharmacies")),
        _ => None,
    };
    render(
        StatusCode::OK,
        &MedicationsPage {
            shell: Shell::new(&viewer, "/medications", "med-title"),
            doses,
            active,
            past,
            log,
            pharmacies,
            preferred: choice.preferred.unwrap_or_default(),
            alternate: choice.alternate.unwrap_or_default(),
            notice,
        },
    )
}

/// A dose logged from the page.
#[derive(Debug, Deserialize)]
pub struct DoseForm {
    csrf: Option<String>,
    /// The dose's time (empty for as needed).
    #[serde(default)]
    due: String,
    /// `taken` or `skipped`.
    status: String,
}

/// `POST /medications/{id}/dose`.
pub async fn log_dose(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<DoseForm>,
) -> Response {
    if let Some(r) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Patient, &[&id]) {
        return r;
    }
    let Some(status) = DoseStatus::parse(&form.status) else {
        return problem(viewer.lang, Problem::NotFound);
    };
    let due = field(&form.due, 40);
    match state
        .medications
        .log_dose(&viewer.ctx, &id, due.as_deref(), status, None)
        .await
    {
        Ok(_) => Redirect::to("/medications?done=logged").into_response(),
        Err(e) => record_problem(viewer.lang, &e),
    }
}

/// `POST /medications/{id}/refill`.
pub async fn request_refill(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<crate::pages::CsrfForm>,
) -> Response {
    if let Some(r) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Patient, &[&id]) {
        return r;
    }
    match state
        .medications
        .request_refill(&viewer.ctx, &id, None)
        .await
    {
        Ok(_) => Redirect::to("/medications?done=refill").into_response(),
        Err(e) => record_problem(viewer.lang, &e),
    }
}

/// The pharmacy choice form.
#[derive(Debug, Deserialize)]
pub struct PharmaciesForm {
    csrf: Option<String>,
    #[serde(default)]
    preferred: String,
    #[serde(default)]
    alternate: String,
}

/// `POST /medications/pharmacies`.
pub async fn choose_pharmacies(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<PharmaciesForm>,
) -> Response {
    if let Some(r) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Patient, &[]) {
        return r;
    }
    let Some(patient) = viewer.own_patient() else {
        return problem(viewer.lang, Problem::WrongAudience);
    };
    let choice = PharmacyChoice {
        preferred: field(&form.preferred, 80),
        alternate: field(&form.alternate, 80),
    };
    match state
        .medications
        .choose_pharmacies(&viewer.ctx, &patient, &choice)
        .await
    {
        Ok(_) => Redirect::to("/medications?done=pharmacies").into_response(),
        Err(e) => record_problem(viewer.lang, &e),
    }
}
