//! `GET /my-data`: the patient's whole record to download as one FHIR Bundle, and their
//! choice about research use, recorded as a FHIR Consent (scope `research`, policy rule
//! OPTIN or OPTOUT) through the record service, so it is judged, audited and encrypted as
//! any write. `GET /my-data/record.json` is the download; `POST /my-data/research` records a
//! choice (CSRF-checked).

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_records::RecordError;
use medmesh_server::AppState;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::clinical;
use crate::layout::{Problem, Shell, problem, record_problem, render, secure};
use crate::pages::search;
use crate::viewer::Viewer;

/// The most resources one download holds; a larger record is cut there, and the page says
/// so (the Bulk Data export has no bound).
const MAX_EXPORT: usize = 50_000;

#[derive(Template)]
#[template(path = "my_data.html")]
struct MyDataPage {
    shell: Shell,
    export_title: String,
    export_intro: String,
    export_button: String,
    research_title: String,
    research_now: String,
    research_in: String,
    research_out: String,
    research_save: String,
    research_legend: String,
    opted_in: bool,
}

/// The patient's current research choice: their newest active research Consent.
async fn research_choice(
    state: &AppState,
    viewer: &Viewer,
    patient: &str,
) -> Result<Option<(bool, String)>, RecordError> {
    let consents = search(
        state,
        viewer,
        patient,
        "Consent",
        &[
            ("scope", "research"),
            ("status", "active"),
            ("_sort", "-date"),
            ("_count", "1"),
        ],
    )
    .await?;
    Ok(consents.first().map(|c| {
        let opted_in = c["policyRule"]["coding"][0]["code"].as_str() == Some("OPTIN");
        (
            opted_in,
            clinical::date_of(viewer.lang, &c["dateTime"], viewer.tz_minutes),
        )
    }))
}

/// `GET /my-data`.
pub async fn my_data(State(state): State<AppState>, viewer: Viewer) -> Response {
    let lang = viewer.lang;
    let Some(patient) = viewer.own_patient() else {
        return problem(lang, Problem::WrongAudience);
    };
    let choice = match research_choice(&state, &viewer, &patient).await {
        Ok(c) => c,
        Err(e) => return record_problem(lang, &e),
    };
    let (opted_in, research_now) = match &choice {
        Some((true, when)) => (
            true,
            lang.t_with(
                "mydata-research-is-in",
                &[("date", crate::i18n::Arg::Text(when.clone()))],
            ),
        ),
        Some((false, when)) => (
            false,
            lang.t_with(
                "mydata-research-is-out",
                &[("date", crate::i18n::Arg::Text(when.clone()))],
            ),
        ),
        None => (false, lang.t("mydata-research-never")),
    };
    render(
        StatusCode::OK,
        &MyDataPage {
            shell: Shell::new(&viewer, "/my-data", "mydata-title"),
            export_title: lang.t("mydata-export"),
            export_intro: lang.t("mydata-export-intro"),
            export_button: lang.t("mydata-export-button"),
            research_title: lang.t("mydata-research"),
            research_now,
            research_in: lang.t("mydata-research-in"),
            research_out: lang.t("mydata-research-out"),
            research_save: lang.t("mydata-research-save"),
            research_legend: lang.t("mydata-research-legend"),
            opted_in,
        },
    )
}

/// The `_page` cursor of a searchset's next link.
fn next_page(bundle: &Value) -> Option<String> {
    let url = bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == "next")?["url"]
        .as_str()?;
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "_page").then(|| v.to_string())
    })
}

/// `GET /my-data/record.json`: the whole record, page after page of `$everything`, as one
/// collection Bundle, downloaded.
pub async fn download(State(state): State<AppState>, viewer: Viewer) -> Response {
    let lang = viewer.lang;
    let Some(patient) = viewer.own_patient() else {
        return problem(lang, Problem::WrongAudience);
    };
    let mut entries: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut params = vec![("_count".to_string(), "1000".to_string())];
        if let Some(c) = &cursor {
            params.push(("_page".into(), c.clone()));
        }
        let page = match state
            .records
            .everything(&viewer.ctx, &patient, &params)
            .await
        {
            Ok(p) => p,
            Err(e) => return record_problem(lang, &e),
        };
        cursor = next_page(&page);
        for e in clinical::resources(page) {
            entries.push(medmesh_fhir::json::object([("resource", e)]));
        }
        if cursor.is_none() || entries.len() >= MAX_EXPORT {
            break;
        }
    }
    entries.truncate(MAX_EXPORT);
    let bundle = medmesh_fhir::json::object([
        ("resourceType", json!("Bundle")),
        ("type", json!("collection")),
        ("total", json!(entries.len())),
        ("entry", Value::Array(entries)),
    ]);
    let mut r = (
        [(header::CONTENT_TYPE, "application/fhir+json")],
        bundle.to_string(),
    )
        .into_response();
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"my-health-record.json\""),
    );
    secure(r)
}

/// The research form.
#[derive(Debug, Deserialize)]
pub struct ResearchForm {
    csrf: Option<String>,
    choice: String,
}

/// `POST /my-data/research`: records the choice as a new active Consent, and marks the
/// earlier research Consents inactive, so one choice stands.
pub async fn research(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<ResearchForm>,
) -> Response {
    let lang = viewer.lang;
    if let Some(refused) = super::csrf_guard(&viewer, form.csrf.as_deref()) {
        return refused;
    }
    let Some(patient) = viewer.own_patient() else {
        return problem(lang, Problem::WrongAudience);
    };
    let rule = match form.choice.as_str() {
        "in" => "OPTIN",
        "out" => "OPTOUT",
        _ => return problem(lang, Problem::BadInput),
    };
    let earlier = match search(
        &state,
        &viewer,
        &patient,
        "Consent",
        &[
            ("scope", "research"),
            ("status", "active"),
            ("_count", "100"),
        ],
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return record_problem(lang, &e),
    };
    let now = super::now_rfc3339(&state);
    let consent = json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research", "display": "Research"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "57016-8", "display": "Privacy policy acknowledgement Document"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": now,
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": rule}]},
        "provision": {"type": if rule == "OPTIN" { "permit" } else { "deny" }},
    });
    if let Err(e) = state
        .records
        .create(&viewer.ctx, "Consent", consent, None)
        .await
    {
        return record_problem(lang, &e);
    }
    for mut old in earlier {
        let Some(id) = old["id"].as_str().map(str::to_string) else {
            continue;
        };
        old["status"] = json!("inactive");
        if let Err(e) = state
            .records
            .update(&viewer.ctx, "Consent", &id, old, None)
            .await
        {
            return record_problem(lang, &e);
        }
    }
    Redirect::to("/my-data").into_response()
}
