//! The prescriber's pages. `GET /patients/{id}/prescribe` is the form (the medication, the
//! dose and how often, how long, the quantity, refills, substitution, the pharmacy: the
//! patient's preferred one chosen); `POST` prescribes a draft through the medication
//! service, and shows the safety checks' warnings inline, each to override with a reason,
//! when there are any. `GET /prescriptions/{id}/sign` shows the exact text to sign; the
//! browser signs it with the prescriber's own Ed25519 key (`sign.js`, the keys of signed
//! uploads) and activates the prescription through `/api/prescriptions/{id}/activate`.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_medications::{Override, Prescribed, Warning};
use medmesh_records::RecordError;
use medmesh_server::AppState;
use serde_json::{Value, json};

use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::medications::{PharmacyOption, pharmacies};
use crate::pages::{field, name_of, refuse_form, valid_id};
use crate::viewer::{Audience, Viewer};

const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

/// What the form holds (sent back as typed when it is shown again).
#[derive(Debug, Default, Clone)]
pub struct Entered {
    /// The medication in words.
    pub medication: String,
    /// Its RxNorm code, when known.
    pub rxnorm: String,
    /// The dose: a number.
    pub dose: String,
    /// The dose's unit (`tablet`).
    pub unit: String,
    /// Times a day.
    pub per_day: String,
    /// The day the course starts (`YYYY-MM-DD`).
    pub start: String,
    /// For how many days (empty: until stopped).
    pub days: String,
    /// The quantity of one fill.
    pub quantity: String,
    /// Refills allowed.
    pub refills: String,
    /// Substitution allowed.
    pub substitution: bool,
    /// The pharmacy (`Organization/x`), or empty.
    pub pharmacy: String,
    /// Instructions for the patient.
    pub note: String,
}

/// A refusal's issues in words, for a form shown again (the services' diagnostics name no
/// value and are written for the user).
pub(crate) fn refusal_text(issues: &[medmesh_fhir::Issue]) -> String {
    issues
        .iter()
        .map(|i| i.diagnostics.clone())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The overrides a form sends: each ticked warning (`override` = its key) with its reason
/// (`reason:<key>`).
pub(crate) fn overrides_of(pairs: &[(String, String)]) -> Vec<Override> {
    pairs
        .iter()
        .filter(|(k, _)| k == "override")
        .map(|(_, key)| Override {
            warning: key.clone(),
            reason: value(pairs, &format!("reason:{key}")).to_string(),
        })
        .collect()
}

/// Warnings to show again, with the reasons the form had for them.
pub(crate) fn warning_rows(warnings: &[Warning], pairs: &[(String, String)]) -> Vec<WarningRow> {
    warnings
        .iter()
        .map(|w| WarningRow {
            key: w.key.clone(),
            text: w.text.clone(),
            reason: value(pairs, &format!("reason:{}", w.key)).to_string(),
        })
        .collect()
}

/// A warning shown inline.
pub struct WarningRow {
    /// Its key (what an override names).
    pub key: String,
    /// The warning in words.
    pub text: String,
    /// The reason typed, when the form comes back.
    pub reason: String,
}

#[derive(Template)]
#[template(path = "prescribe.html")]
struct PrescribePage {
    shell: Shell,
    patient: String,
    patient_name: String,
    entered: Entered,
    pharmacies: Vec<PharmacyOption>,
    warnings: Vec<WarningRow>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "sign.html")]
struct SignPage {
    shell: Shell,
    id: String,
    patient: String,
    owner: String,
    text: String,
    version: i64,
}

async fn show(
    state: &AppState,
    viewer: &Viewer,
    patient: &str,
    entered: Entered,
    warnings: Vec<WarningRow>,
    error: Option<String>,
) -> Response {
    let list = match pharmacies(state, viewer).await {
        Ok(l) => l,
        Err(e) => return record_problem(viewer.lang, &e),
    };
    let status = if warnings.is_empty() && error.is_none() {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    render(
        status,
        &PrescribePage {
            shell: Shell::new(viewer, "/patients", "rx-title"),
            patient: patient.to_string(),
            patient_name: name_of(state, viewer, &format!("Patient/{patient}")).await,
            entered,
            pharmacies: list,
            warnings,
            error,
        },
    )
}

/// `GET /patients/{id}/prescribe`.
pub async fn form(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    if viewer.audience != Audience::Clinician {
        return problem(viewer.lang, Problem::WrongAudience);
    }
    if !valid_id(&id) {
        return problem(viewer.lang, Problem::NotFound);
    }
    // The patient's preferred pharmacy, chosen already (reading it is reading the patient).
    let choice = match state.medications.pharmacies(&viewer.ctx, &id).await {
        Ok(c) => c,
        Err(e) => return record_problem(viewer.lang, &e),
    };
    let entered = Entered {
        dose: "1".into(),
        unit: "tablet".into(),
        per_day: "1".into(),
        start: crate::pages::now_rfc3339(&state).chars().take(10).collect(),
        refills: "0".into(),
        substitution: true,
        pharmacy: choice.preferred.unwrap_or_default(),
        ..Entered::default()
    };
    show(&state, &viewer, &id, entered, Vec::new(), None).await
}

/// A form field's value (the first), or empty.
pub(crate) fn value<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

fn entered_of(pairs: &[(String, String)]) -> Entered {
    let f = |name: &str, max: usize| field(value(pairs, name), max).unwrap_or_default();
    Entered {
        medication: f("medication", 200),
        rxnorm: f("rxnorm", 20),
        dose: f("dose", 10),
        unit: f("unit", 30),
        per_day: f("per_day", 3),
        start: f("start", 10),
        days: f("days", 4),
        quantity: f("quantity", 10),
        refills: f("refills", 3),
        substitution: value(pairs, "substitution") == "on",
        pharmacy: f("pharmacy", 80),
        note: f("note", 500),
    }
}

/// The MedicationRequest the form stands for.
fn request_of(patient: &str, e: &Entered) -> Result<Value, &'static str> {
    if e.medication.is_empty() {
        return Err("rx-error-medication");
    }
    let number = |s: &str| s.parse::<f64>().ok().filter(|n| n.is_finite() && *n > 0.0);
    let whole = |s: &str| s.parse::<u32>().ok();
    let mut concept = json!({"text": e.medication});
    if !e.rxnorm.is_empty() {
        if !e.rxnorm.chars().all(|c| c.is_ascii_digit()) {
            return Err("rx-error-rxnorm");
        }
        concept["coding"] = json!([{"system": RXNORM, "code": e.rxnorm, "display": e.medication}]);
    }
    let per_day = whole(&e.per_day)
        .filter(|n| (1..=24).contains(n))
        .ok_or("rx-error-per-day")?;
    let mut repeat = json!({"frequency": per_day, "period": 1, "periodUnit": "d"});
    if !e.days.is_empty() {
        let days = whole(&e.days).filter(|n| *n > 0).ok_or("rx-error-days")?;
        repeat["boundsDuration"] = json!({"value": days, "unit": "days",
            "system": "http://unitsofmeasure.org", "code": "d"});
    }
    let mut dosage = json!({"timing": {"repeat": repeat}});
    if let Some(d) = number(&e.dose) {
        dosage["doseAndRate"] = json!([{"doseQuantity": {"value": d, "unit": e.unit}}]);
    }
    if !e.note.is_empty() {
        dosage["patientInstruction"] = json!(e.note);
    }
    let mut dispense =
        json!({"numberOfRepeatsAllowed": whole(&e.refills).ok_or("rx-error-refills")?});
    if !e.quantity.is_empty() {
        let q = number(&e.quantity).ok_or("rx-error-quantity")?;
        dispense["quantity"] = json!({"value": q, "unit": e.unit});
    }
    if !e.pharmacy.is_empty() {
        dispense["performer"] = json!({"reference": e.pharmacy});
    }
    if !e.start.is_empty() {
        if jiff::civil::Date::strptime("%Y-%m-%d", &e.start).is_err() {
            return Err("rx-error-start");
        }
        dispense["validityPeriod"] = json!({"start": e.start});
    }
    Ok(json!({
        "resourceType": "MedicationRequest",
        "intent": "order",
        "medicationCodeableConcept": concept,
        "subject": {"reference": format!("Patient/{patient}")},
        "dosageInstruction": [dosage],
        "dispenseRequest": dispense,
        "substitution": {"allowedBoolean": e.substitution},
    }))
}

/// `POST /patients/{id}/prescribe`.
pub async fn prescribe(
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
    if pairs.len() > 200 {
        return problem(viewer.lang, Problem::BadInput);
    }
    let entered = entered_of(&pairs);
    let request = match request_of(&id, &entered) {
        Ok(r) => r,
        Err(message) => {
            let error = Some(viewer.lang.t(message));
            return show(&state, &viewer, &id, entered, Vec::new(), error).await;
        }
    };
    let overrides = overrides_of(&pairs);
    match state
        .medications
        .prescribe(&viewer.ctx, request, &overrides)
        .await
    {
        Ok(Prescribed::Written { prescription, .. }) => {
            let rx = prescription["id"].as_str().unwrap_or_default();
            Redirect::to(&format!("/prescriptions/{rx}/sign")).into_response()
        }
        Ok(Prescribed::NeedsOverride(warnings)) => {
            let rows = warning_rows(&warnings, &pairs);
            show(&state, &viewer, &id, entered, rows, None).await
        }
        Err(RecordError::Invalid(issues)) => {
            let error = Some(refusal_text(&issues));
            show(&state, &viewer, &id, entered, Vec::new(), error).await
        }
        Err(e) => record_problem(viewer.lang, &e),
    }
}

/// `GET /prescriptions/{id}/sign`.
pub async fn sign(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    if viewer.audience != Audience::Clinician {
        return problem(viewer.lang, Problem::WrongAudience);
    }
    if !valid_id(&id) {
        return problem(viewer.lang, Problem::NotFound);
    }
    let Some(owner) = viewer.owner_reference() else {
        return problem(viewer.lang, Problem::WrongAudience);
    };
    let text = match state.medications.signing_text(&viewer.ctx, &id).await {
        Ok(t) => t,
        Err(e) => return record_problem(viewer.lang, &e),
    };
    let patient = text
        .text
        .lines()
        .find_map(|l| l.strip_prefix("patient Patient/"))
        .unwrap_or_default()
        .to_string();
    render(
        StatusCode::OK,
        &SignPage {
            shell: Shell::new(&viewer, "/patients", "rx-sign-title"),
            id,
            patient,
            owner,
            text: text.text,
            version: text.version,
        },
    )
}

/// The printable prescription's words in the reader's language.
fn print_labels(lang: crate::i18n::Lang) -> medmesh_medications::printable::PrintLabels {
    let t = |k: &str| lang.t(&format!("rx-print-{k}"));
    medmesh_medications::printable::PrintLabels {
        title: t("title"),
        prescriber: t("prescriber"),
        patient: t("patient"),
        born: t("born"),
        medication: t("medication"),
        instructions: t("instructions"),
        quantity: t("quantity"),
        supply: t("supply"),
        refills: t("refills"),
        substitution: t("substitution"),
        allowed: t("allowed"),
        not_allowed: t("not-allowed"),
        pharmacy: t("pharmacy"),
        written: t("written"),
        signed: t("signed"),
        key: t("key"),
        id: t("id"),
        none: t("none"),
        verify_note: t("verify"),
    }
}

/// `GET /prescriptions/{id}/prescription.pdf`: the printable prescription, with the QR code
/// of the signed prescription, for whoever the PDP lets read it (its prescriber, its
/// patient, the pharmacy it is routed to).
pub async fn print(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    if !valid_id(&id) {
        return problem(viewer.lang, Problem::NotFound);
    }
    match state
        .medications
        .print(&viewer.ctx, &id, &print_labels(viewer.lang))
        .await
    {
        Ok(bytes) => medmesh_server::web::pdf(bytes, "prescription.pdf"),
        Err(e) => record_problem(viewer.lang, &e),
    }
}
