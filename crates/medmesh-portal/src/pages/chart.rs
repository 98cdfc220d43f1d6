//! A clinician's view of one patient: `GET /patients/{id}`, the chart (problems,
//! medications, allergies, visits, results with trends, documents) with what the patient's
//! consent withholds named as "restricted by the patient's consent" and its category, never
//! silently missing, and a banner while an emergency access is in force; and
//! `GET|POST /patients/{id}/write`, adding an observation, a condition, an allergy or a
//! note through the record service (so the PDP judges the write against the clinician's
//! reach, the audit log records it and encryption at rest applies).
//!
//! The patient's id is in the path: it is an opaque record id, never a name or a value.
//! Anyone who changes it to a patient they do not reach gets "not found", and the refused
//! read is in the audit log.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use medmesh_records::RecordError;
use medmesh_server::AppState;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::clinical::{self, human_name};
use crate::i18n::{Arg, Lang};
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::record::{self, Chart};
use crate::pages::{CsrfForm, field, now_rfc3339, refuse_form, valid_id};
use crate::viewer::{Audience, Viewer};

/// The types the chart shows, and so the ones whose withholding it reports.
const CHART_TYPES: &[&str] = &[
    "Condition",
    "MedicationRequest",
    "AllergyIntolerance",
    "Immunization",
    "Encounter",
    "Observation",
    "DocumentReference",
];

/// The measurements the write form offers: LOINC code, its display, UCUM unit, category.
pub const MEASUREMENTS: &[(&str, &str, &str, &str)] = &[
    ("8480-6", "Systolic blood pressure", "mm[Hg]", "vital-signs"),
    (
        "8462-4",
        "Diastolic blood pressure",
        "mm[Hg]",
        "vital-signs",
    ),
    ("8867-4", "Heart rate", "/min", "vital-signs"),
    ("29463-7", "Body weight", "kg", "vital-signs"),
    ("8310-5", "Body temperature", "Cel", "vital-signs"),
    (
        "2339-0",
        "Glucose [Mass/volume] in Blood",
        "mg/dL",
        "laboratory",
    ),
    (
        "4548-4",
        "Hemoglobin A1c/Hemoglobin.total in Blood",
        "%",
        "laboratory",
    ),
    (
        "2093-3",
        "Cholesterol [Mass/volume] in Serum or Plasma",
        "mg/dL",
        "laboratory",
    ),
    (
        "38483-4",
        "Creatinine [Mass/volume] in Blood",
        "mg/dL",
        "laboratory",
    ),
];

/// Who the chart is about, as its heading shows them.
pub struct About {
    /// The patient's id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Birth date and sex, formatted.
    pub details: String,
}

#[derive(Template)]
#[template(path = "chart.html")]
struct ChartPage {
    shell: Shell,
    about: About,
    restricted: Vec<String>,
    chart: Chart,
    invitation: Option<String>,
    adherence: Vec<AdherenceRow>,
}

/// One active prescription's adherence, in words, for the chart.
pub struct AdherenceRow {
    /// The medication.
    pub medication: String,
    /// The proportion of days covered over 30 days ("87% (26 of 30 days)"), or a dash.
    pub pdc30: String,
    /// Over 90 days.
    pub pdc90: String,
    /// The doses taken on time over 30 days ("12 of 14 (86%)"), or a dash.
    pub on_time: String,
    /// Whether the 30-day figure is under 80%.
    pub below: bool,
}

fn percent(ratio: f64) -> String {
    format!("{}%", (ratio * 100.0).round())
}

/// The adherence figures of a patient's active prescriptions, in words.
fn adherence_rows(
    lang: Lang,
    list: Vec<medmesh_medications::doses::Adherence>,
) -> Vec<AdherenceRow> {
    let pdc = |p: Option<medmesh_medications::adherence::Pdc>| match p {
        Some(p) if p.days > 0 => lang.t_with(
            "chart-adherence-pdc",
            &[
                ("percent", Arg::Text(percent(p.ratio()))),
                ("covered", Arg::Number(f64::from(p.covered))),
                ("days", Arg::Number(f64::from(p.days))),
            ],
        ),
        _ => "–".to_string(),
    };
    list.into_iter()
        .map(|a| AdherenceRow {
            below: a.pdc30.is_some_and(|p| p.days > 0 && p.below_threshold()),
            pdc30: pdc(a.pdc30),
            pdc90: pdc(a.pdc90),
            on_time: match a.doses30.on_time_rate() {
                Some(rate) => lang.t_with(
                    "chart-adherence-on-time",
                    &[
                        ("taken", Arg::Number(f64::from(a.doses30.on_time))),
                        ("due", Arg::Number(f64::from(a.doses30.due))),
                        ("percent", Arg::Text(percent(rate))),
                    ],
                ),
                None => "–".to_string(),
            },
            medication: a.medication,
        })
        .collect()
}

/// Reads the patient (audited; a patient the viewer does not reach is "not found").
pub(crate) async fn about(state: &AppState, viewer: &Viewer, id: &str) -> Result<About, Response> {
    let lang = viewer.lang;
    let patient = state
        .records
        .read(&viewer.ctx, "Patient", id)
        .await
        .map_err(|e| record_problem(lang, &e))?
        .resource;
    let born = clinical::date_of(lang, &patient["birthDate"], 0);
    let sex = patient["gender"]
        .as_str()
        .map(|g| lang.t(&format!("gender-{g}")))
        .unwrap_or_default();
    Ok(About {
        id: id.to_string(),
        name: human_name(&patient).unwrap_or_else(|| lang.t("patients-unnamed")),
        details: [born, sex]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" · "),
    })
}

/// A withheld category in words: "Conditions", or "Conditions: mental health".
fn category(lang: Lang, w: &medmesh_records::withheld::Withheld) -> String {
    let kind = lang.t(&format!("type-{}", w.resource_type));
    match &w.label {
        None => kind,
        Some(label) => format!("{kind}: {}", lang.t(&format!("label-{label}"))),
    }
}

/// `GET /patients/{id}`.
pub async fn chart(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    chart_page(&state, &viewer, id, None).await
}

/// `POST /patients/{id}/invite`: a one-time code the patient signs up with (at
/// `/register`), which links their new account to this record; shown once, on the chart.
pub async fn invite(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let lang = viewer.lang;
    if let Some(refused) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Clinician, &[&id]) {
        return refused;
    }
    // Only a patient the clinician reaches: the read is judged (and audited) first.
    if let Err(r) = about(&state, &viewer, &id).await {
        return r;
    }
    match state
        .identity
        .invite(
            &viewer.account,
            medmesh_auth::Role::Patient,
            Some(id.clone()),
            None,
        )
        .await
    {
        Ok(code) => chart_page(&state, &viewer, id, Some(code)).await,
        Err(e) => {
            tracing::warn!(error = %e, "a patient invitation was refused");
            problem(lang, Problem::WrongAudience)
        }
    }
}

async fn chart_page(
    state: &AppState,
    viewer: &Viewer,
    id: String,
    invitation: Option<String>,
) -> Response {
    let lang = viewer.lang;
    if !valid_id(&id) {
        return problem(lang, Problem::NotFound);
    }
    // A patient may only ever open their own chart, at /record; any id here is read (and
    // so audited) as theirs would be, and answers "not found" unless it is theirs.
    if viewer.audience == Audience::Patient && viewer.own_patient().as_deref() == Some(&id) {
        return Redirect::to("/record").into_response();
    }
    let about = match about(state, viewer, &id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if viewer.audience != Audience::Clinician {
        return problem(lang, Problem::WrongAudience);
    }
    // What consent withholds, the record and the adherence are read at once: one after the
    // other, the withheld categories' probes alone took longer than the record
    // (bench/README.md, issue 16).
    let (access, chart, adherence) = tokio::join!(
        state.records.chart_access(&viewer.ctx, &id, CHART_TYPES),
        record::load(state, viewer, &id),
        state.medications.adherence(&viewer.ctx, &id),
    );
    let access = match access {
        Ok(a) => a,
        Err(e) => return record_problem(lang, &e),
    };
    let chart = match chart {
        Ok(c) => c,
        Err(e) => return record_problem(lang, &e),
    };
    // Medications withheld from this clinician (a restricted label) leave the table empty.
    let adherence = match adherence {
        Ok(list) => adherence_rows(lang, list),
        Err(RecordError::NotFound | RecordError::Forbidden) => Vec::new(),
        Err(e) => return record_problem(lang, &e),
    };
    let mut shell = Shell::new(viewer, "/patients", "patients-title");
    shell.title = about.name.clone();
    shell.banner = access.emergency_until.map(|until| {
        lang.t_with(
            "emergency-banner",
            &[(
                "until",
                Arg::Text(clinical::date_time_micros(lang, until, viewer.tz_minutes)),
            )],
        )
    });
    render(
        StatusCode::OK,
        &ChartPage {
            shell,
            restricted: access.withheld.iter().map(|w| category(lang, w)).collect(),
            about,
            chart,
            invitation,
            adherence,
        },
    )
}

#[derive(Template)]
#[template(path = "write.html")]
struct WritePage {
    shell: Shell,
    about: About,
    measurements: Vec<(&'static str, String, &'static str)>,
    today: String,
}

/// `GET /patients/{id}/write`: the four forms.
pub async fn write_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let lang = viewer.lang;
    if viewer.audience != Audience::Clinician {
        return problem(lang, Problem::WrongAudience);
    }
    if !valid_id(&id) {
        return problem(lang, Problem::NotFound);
    }
    let about = match about(&state, &viewer, &id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut shell = Shell::new(&viewer, "/patients", "write-title");
    shell.title = lang.t_with("write-title", &[("name", Arg::Text(about.name.clone()))]);
    render(
        StatusCode::OK,
        &WritePage {
            shell,
            about,
            measurements: MEASUREMENTS
                .iter()
                .map(|(code, _, unit, _)| (*code, lang.t(&format!("analyte-{code}")), *unit))
                .collect(),
            today: now_rfc3339(&state).chars().take(10).collect(),
        },
    )
}

/// What the write forms send; `kind` says which.
#[derive(Debug, Deserialize)]
pub struct WriteForm {
    csrf: Option<String>,
    kind: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    criticality: String,
    #[serde(default)]
    title: String,
}

/// The resource a write form describes, or `None` when a field is missing or wrong.
fn resource_of(
    form: &WriteForm,
    patient: &str,
    author: Option<&str>,
    now: &str,
) -> Option<(&'static str, Value)> {
    let subject = json!({"reference": format!("Patient/{patient}")});
    let date = match field(&form.date, 10) {
        Some(d) => {
            medmesh_fhir::datetime::parse_range(&d)?;
            d
        }
        None => now.to_string(),
    };
    let author = author.map(|a| json!({"reference": a}));
    match form.kind.as_str() {
        "observation" => {
            let (code, display, unit, category) =
                MEASUREMENTS.iter().find(|m| m.0 == form.code.trim())?;
            let value: f64 = form.value.trim().replace(',', ".").parse().ok()?;
            if !value.is_finite() {
                return None;
            }
            let mut obs = json!({
                "resourceType": "Observation",
                "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display},
                "subject": subject,
                "effectiveDateTime": date,
                "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
            });
            if let Some(a) = author {
                obs["performer"] = json!([a]);
            }
            Some(("Observation", obs))
        }
        "condition" => {
            let text = field(&form.text, 200)?;
            let mut c = json!({
                "resourceType": "Condition",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
                "code": {"text": text},
                "subject": subject,
                "onsetDateTime": date,
                "recordedDate": now,
            });
            if let Some(a) = author {
                c["recorder"] = a;
            }
            Some(("Condition", c))
        }
        "allergy" => {
            let text = field(&form.text, 200)?;
            let criticality = match form.criticality.as_str() {
                c @ ("low" | "high" | "unable-to-assess") => c,
                _ => return None,
            };
            let mut a = json!({
                "resourceType": "AllergyIntolerance",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed"}]},
                "criticality": criticality,
                "code": {"text": text},
                "patient": subject,
                "recordedDate": now,
            });
            if let Some(r) = author {
                a["recorder"] = r;
            }
            Some(("AllergyIntolerance", a))
        }
        "note" => {
            let title = field(&form.title, 200)?;
            let text = field(&form.text, 20_000)?;
            let mut d = json!({
                "resourceType": "DocumentReference",
                "status": "current",
                "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}], "text": "Progress note"},
                "subject": subject,
                "date": now,
                "description": title,
                "content": [{"attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "title": title,
                    "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
                }}],
            });
            if let Some(a) = author {
                d["author"] = json!([a]);
            }
            Some(("DocumentReference", d))
        }
        _ => None,
    }
}

/// `POST /patients/{id}/write`.
pub async fn write(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<WriteForm>,
) -> Response {
    let lang = viewer.lang;
    if let Some(refused) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Clinician, &[&id]) {
        return refused;
    }
    let author = viewer
        .ctx
        .actor()
        .clinician()
        .map(|c| c.practitioner.clone());
    let now = now_rfc3339(&state);
    let Some((rt, resource)) = resource_of(&form, &id, author.as_deref(), &now) else {
        return problem(lang, Problem::BadInput);
    };
    match state.records.create(&viewer.ctx, rt, resource, None).await {
        Ok(_) => Redirect::to(&format!("/patients/{id}")).into_response(),
        Err(e) => record_problem(lang, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(kind: &str) -> WriteForm {
        WriteForm {
            csrf: None,
            kind: kind.into(),
            code: String::new(),
            value: String::new(),
            text: String::new(),
            date: String::new(),
            criticality: String::new(),
            title: String::new(),
        }
    }

    #[test]
    fn each_form_makes_a_valid_resource() {
        let defs = medmesh_fhir::definitions::definitions().unwrap();
        let mut o = form("observation");
        o.code = "8480-6".into();
        o.value = "128,5".into();
        o.date = "2026-11-30".into();
        let mut c = form("condition");
        c.text = "Asthma".into();
        let mut a = form("allergy");
        a.text = "Penicillin".into();
        a.criticality = "high".into();
        let mut n = form("note");
        n.title = "Follow-up".into();
        n.text = "Seen today; better.".into();
        for f in [o, c, a, n] {
            let (rt, r) = resource_of(&f, "p1", Some("Practitioner/x"), "2026-12-03T10:00:00Z")
                .unwrap_or_else(|| panic!("{}", f.kind));
            let issues = medmesh_fhir::validate::validate(defs, &r);
            assert!(issues.is_empty(), "{rt}: {issues:?} {r}");
        }
    }

    #[test]
    fn bad_input_makes_nothing() {
        let mut o = form("observation");
        o.code = "not-offered".into();
        o.value = "1".into();
        assert!(resource_of(&o, "p1", None, "now").is_none());
        let mut o = form("observation");
        o.code = "8480-6".into();
        o.value = "NaN".into();
        assert!(resource_of(&o, "p1", None, "now").is_none());
        let mut a = form("allergy");
        a.text = "x".into();
        a.criticality = "extreme".into();
        assert!(resource_of(&a, "p1", None, "now").is_none());
        let mut c = form("condition");
        c.text = "  ".into();
        assert!(resource_of(&c, "p1", None, "now").is_none());
        let mut c = form("condition");
        c.text = "x".into();
        c.date = "yesterday".into();
        assert!(resource_of(&c, "p1", None, "now").is_none());
        assert!(resource_of(&form("script"), "p1", None, "now").is_none());
    }
}
