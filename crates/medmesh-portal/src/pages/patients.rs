//! `GET /patients`: a clinician's patients, the ones their care relationships reach (the PDP
//! decides which: the search is judged and audited as any), and `POST /patients`, a search
//! among them by name, birth date or identifier (POSTed, so nothing about a patient lands
//! in a URL or the browser's history). `POST /patients/emergency` is the break-glass
//! declaration: a reason is required, the time box is said before and after, and the chart
//! then shows a banner while it holds.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_fhir::search::Handling;
use medmesh_server::AppState;
use serde::Deserialize;

use crate::clinical::{self, human_name, resources};
use crate::i18n::Arg;
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::{csrf_guard, field, refuse_form, valid_id};
use crate::viewer::{Audience, Viewer};

/// How many patients one page lists.
const LISTED: usize = 50;

/// One patient in the list.
pub struct PatientRow {
    /// Their record id, for the chart's link.
    pub id: String,
    /// Name.
    pub name: String,
    /// Birth date, formatted.
    pub born: String,
    /// Their first identifier's value (a medical record number, say).
    pub identifier: String,
}

#[derive(Template)]
#[template(path = "patients.html")]
struct PatientsPage {
    shell: Shell,
    patients: Vec<PatientRow>,
    searched: bool,
    name: String,
    birthdate: String,
    identifier: String,
    /// The cursors of the pages before and after this one, when there are.
    previous: Option<String>,
    next: Option<String>,
    emergency_hours: String,
}

/// The search form.
#[derive(Debug, Default, Deserialize)]
pub struct SearchForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    birthdate: String,
    #[serde(default)]
    identifier: String,
    /// The page of results to show: the search's own cursor (`_page`), posted back.
    #[serde(default)]
    page: String,
}

/// The `_page` cursor of a searchset's `relation` link (`next`, `previous`), when it has one.
fn cursor(bundle: &serde_json::Value, relation: &str) -> Option<String> {
    let link = bundle["link"]
        .as_array()?
        .iter()
        .find(|l| l["relation"] == relation)?;
    let url = url::Url::parse(&format!(
        "http://page.invalid/{}",
        link["url"].as_str()?.trim_start_matches('/')
    ))
    .ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "_page")
        .map(|(_, v)| v.into_owned())
}

/// `GET /patients`.
pub async fn patients(State(state): State<AppState>, viewer: Viewer) -> Response {
    list(&state, &viewer, SearchForm::default(), false).await
}

/// `POST /patients`.
pub async fn search(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<SearchForm>,
) -> Response {
    if let Some(refused) = csrf_guard(&viewer, form.csrf.as_deref()) {
        return refused;
    }
    list(&state, &viewer, form, true).await
}

async fn list(state: &AppState, viewer: &Viewer, form: SearchForm, searched: bool) -> Response {
    let lang = viewer.lang;
    if viewer.audience != Audience::Clinician {
        return problem(lang, Problem::WrongAudience);
    }
    let name = field(&form.name, 100);
    let birthdate = field(&form.birthdate, 10);
    let identifier = field(&form.identifier, 100);
    if birthdate
        .as_deref()
        .is_some_and(|d| medmesh_fhir::datetime::parse_range(d).is_none())
    {
        return problem(lang, Problem::BadInput);
    }
    let mut params: Vec<(String, String)> = vec![("_count".into(), LISTED.to_string())];
    params.extend(name.clone().map(|n| ("name".into(), n)));
    params.extend(birthdate.clone().map(|d| ("birthdate".into(), d)));
    params.extend(identifier.clone().map(|i| ("identifier".into(), i)));
    // A cursor is the node's own; one bounded in length is passed back as it came.
    params.extend(field(&form.page, 512).map(|p| ("_page".into(), p)));
    let bundle = match state
        .records
        .search(&viewer.ctx, "Patient", &params, Handling::Lenient)
        .await
    {
        Ok(b) => b,
        Err(e) => return record_problem(lang, &e),
    };
    let (previous, next) = (cursor(&bundle, "previous"), cursor(&bundle, "next"));
    let mut patients: Vec<PatientRow> = resources(bundle)
        .iter()
        .filter_map(|p| {
            Some(PatientRow {
                id: p["id"].as_str()?.to_string(),
                name: human_name(p).unwrap_or_else(|| lang.t("patients-unnamed")),
                born: clinical::date_of(lang, &p["birthDate"], 0),
                identifier: p["identifier"][0]["value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            })
        })
        .collect();
    // Sorted by name within the page; the pages follow the search's own order.
    patients.sort_by_key(|p| p.name.to_lowercase());
    let hours = state.trust.break_glass_micros() as f64 / 3_600_000_000.0;
    render(
        StatusCode::OK,
        &PatientsPage {
            shell: Shell::new(viewer, "/patients", "patients-title"),
            patients,
            searched,
            name: name.unwrap_or_default(),
            birthdate: birthdate.unwrap_or_default(),
            identifier: identifier.unwrap_or_default(),
            previous,
            next,
            emergency_hours: lang.t_with("emergency-time-box", &[("hours", Arg::Number(hours))]),
        },
    )
}

/// The break-glass form.
#[derive(Debug, Deserialize)]
pub struct EmergencyForm {
    csrf: Option<String>,
    #[serde(default)]
    patient: String,
    #[serde(default)]
    reason: String,
}

/// `POST /patients/emergency`: declares an emergency access to a patient outside the
/// clinician's care relationships, with the reason they typed; then opens the chart, which
/// shows the banner. A refusal (no reason, an unverified account) is said, and audited by
/// the trust network.
pub async fn emergency(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<EmergencyForm>,
) -> Response {
    let lang = viewer.lang;
    if let Some(refused) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Clinician, &[]) {
        return refused;
    }
    let (Some(patient), Some(reason)) = (field(&form.patient, 64), field(&form.reason, 500)) else {
        return problem(lang, Problem::BadInput);
    };
    if !valid_id(&patient) {
        return problem(lang, Problem::BadInput);
    }
    match state
        .trust
        .declare_break_glass(&viewer.ctx, &patient, &reason)
        .await
    {
        Ok(_) => Redirect::to(&format!("/patients/{patient}")).into_response(),
        Err(e) => record_problem(lang, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_cursor_is_read_off_the_searchset_links() {
        let bundle = json!({"link": [
            {"relation": "self", "url": "http://node/fhir/Patient?_count=50"},
            {"relation": "next", "url": "http://node/fhir/Patient?_count=50&name=ann&_page=k%2B9"},
            {"relation": "previous", "url": "/fhir/Patient?_page=p1"},
        ]});
        assert_eq!(cursor(&bundle, "next").as_deref(), Some("k+9"));
        assert_eq!(cursor(&bundle, "previous").as_deref(), Some("p1"));
        assert_eq!(cursor(&json!({"link": []}), "next"), None);
    }
}
