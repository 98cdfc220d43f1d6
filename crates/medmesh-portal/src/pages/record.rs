//! `GET /record`: the patient's own record, readable: problems, medications, allergies,
//! immunizations, encounters as a timeline, results with each analyte's trend, documents.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use medmesh_server::AppState;
use serde_json::Value;

use crate::chart;
use crate::clinical::{self, Series, concept, date_of, number};
use crate::i18n::{Arg, Lang};
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::compartment_search;
use crate::viewer::Viewer;

/// How many of the newest results the trends are drawn from (the newest first; older ones
/// are in the FHIR API and the download).
const RESULTS_SHOWN: &str = "1000";

/// A line of a list: what, its status or detail, when.
pub struct Item {
    /// The display text.
    pub what: String,
    /// A status or detail, translated.
    pub detail: String,
    /// When, formatted.
    pub when: String,
}

/// One analyte: its latest value, its trend, the values as a table.
pub struct Analyte {
    /// A page-unique id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Latest value with its unit.
    pub latest: String,
    /// When the latest was taken.
    pub latest_when: String,
    /// The latest value's flag label, if abnormal.
    pub latest_flag: Option<String>,
    /// The reference range as text, if any.
    pub range: Option<String>,
    /// Its label: the lab's range, or the typical adult one.
    pub range_label: String,
    /// The SVG trend (two values or more).
    pub chart: Option<String>,
    /// Every value, newest first: (when, value, flag label if abnormal).
    pub rows: Vec<(String, String, Option<String>)>,
}

/// One section of the record.
pub struct Section {
    /// Its id, for in-page links.
    pub id: &'static str,
    /// Heading.
    pub title: String,
    /// The lines.
    pub items: Vec<Item>,
    /// What to say when there are none.
    pub empty: String,
}

/// A patient's record as people read it: the lists, the visits, the results, the
/// documents. The patient's own `/record` and a clinician's chart show the same.
pub struct Chart {
    /// Conditions, medications, allergies, immunizations.
    pub sections: Vec<Section>,
    /// Visits, newest first.
    pub encounters: Section,
    /// Documents, newest first.
    pub documents: Vec<crate::pages::documents::DocumentRow>,
    /// One per analyte.
    pub analytes: Vec<Analyte>,
}

#[derive(Template)]
#[template(path = "record.html")]
struct RecordPage {
    shell: Shell,
    chart: Chart,
}

/// A status code (`active`, or a CodeableConcept's first code) in words; a code the
/// catalog does not know is shown as it is.
fn status(lang: Lang, resource: &Value, field: &str) -> String {
    let Some(code) = resource[field]["coding"][0]["code"]
        .as_str()
        .or_else(|| resource[field].as_str())
    else {
        return String::new();
    };
    lang.lookup(&format!("status-{code}"))
        .unwrap_or_else(|| code.to_string())
}

fn items(
    resources: &[Value],
    what: impl Fn(&Value) -> Option<String>,
    detail: impl Fn(&Value) -> String,
    when: impl Fn(&Value) -> String,
) -> Vec<Item> {
    resources
        .iter()
        .filter_map(|r| {
            Some(Item {
                what: what(r)?,
                detail: detail(r),
                when: when(r),
            })
        })
        .collect()
}

fn range_text(r: &clinical::Range, unit: &str) -> String {
    match (r.low, r.high) {
        (Some(l), Some(h)) => format!("{}–{} {unit}", number(l), number(h)),
        (Some(l), None) => format!("≥ {} {unit}", number(l)),
        (None, Some(h)) => format!("≤ {} {unit}", number(h)),
        (None, None) => String::new(),
    }
}

/// The page's view of each analyte.
pub fn analytes(lang: Lang, series: &[Series], tz: i32) -> Vec<Analyte> {
    series
        .iter()
        .enumerate()
        .filter_map(|(n, s)| {
            let latest = s.points.last()?;
            let value = |v: f64| format!("{} {}", number(v), s.unit).trim_end().to_string();
            let flag = |f: clinical::Flag| f.is_abnormal().then(|| lang.t(f.label_id()));
            let id = format!("analyte-{n}");
            let description =
                lang.t_with(
                    "chart-description",
                    &[
                        ("count", Arg::Number(s.points.len() as f64)),
                        ("first", Arg::Text(clinical::date(lang, s.points[0].at, tz))),
                        ("last", Arg::Text(clinical::date(lang, latest.at, tz))),
                        (
                            "abnormal",
                            Arg::Number(
                                s.points.iter().filter(|p| p.flag.is_abnormal()).count() as f64
                            ),
                        ),
                    ],
                );
            let title = lang.t_with("chart-title", &[("name", Arg::Text(s.name.clone()))]);
            Some(Analyte {
                chart: chart::trend(s, &id, &title, &description),
                id,
                name: s.name.clone(),
                latest: value(latest.value),
                latest_when: clinical::date(lang, latest.at, tz),
                latest_flag: flag(latest.flag),
                range: s.range.as_ref().map(|r| range_text(r, &s.unit)),
                range_label: lang.t(if s.typical {
                    "record-range-typical"
                } else {
                    "record-range"
                }),
                rows: s
                    .points
                    .iter()
                    .rev()
                    .map(|p| (clinical::date(lang, p.at, tz), value(p.value), flag(p.flag)))
                    .collect(),
            })
        })
        .collect()
}

/// Reads `patient`'s record as the viewer (every search judged by the PDP and audited).
///
/// # Errors
/// The record service's.
pub async fn load(
    state: &AppState,
    viewer: &Viewer,
    patient: &str,
) -> Result<Chart, medmesh_records::RecordError> {
    let lang = viewer.lang;
    let tz = viewer.tz_minutes;
    // The searches run at once: the page waits for the slowest, not for their sum. (Reading
    // the results on a task of their own was measured too, and gained nothing: the cost is
    // work on each resource, not waiting; bench/README.md.)
    let (conditions, medications, allergies, immunizations, encounters, observations, documents) =
        tokio::try_join!(
            compartment_search(state, viewer, patient, "Condition", &[("_count", "500")]),
            compartment_search(
                state,
                viewer,
                patient,
                "MedicationRequest",
                &[("_count", "500"), ("_sort", "-authoredon")],
            ),
            compartment_search(
                state,
                viewer,
                patient,
                "AllergyIntolerance",
                &[("_count", "200")]
            ),
            compartment_search(
                state,
                viewer,
                patient,
                "Immunization",
                &[("_count", "500"), ("_sort", "-date")],
            ),
            compartment_search(
                state,
                viewer,
                patient,
                "Encounter",
                &[("_count", "200"), ("_sort", "-date")],
            ),
            compartment_search(
                state,
                viewer,
                patient,
                "Observation",
                &[
                    ("category", "laboratory,vital-signs"),
                    ("_count", RESULTS_SHOWN),
                    ("_sort", "-date"),
                ],
            ),
            crate::pages::documents::rows(state, viewer, patient),
        )?;
    let section = |id, title: &str, empty: &str, items| Section {
        id,
        title: lang.t(title),
        items,
        empty: lang.t(empty),
    };
    let sections = vec![
        section(
            "conditions",
            "record-conditions",
            "record-conditions-none",
            items(
                &conditions,
                |r| concept(&r["code"]),
                |r| status(lang, r, "clinicalStatus"),
                |r| date_of(lang, &r["onsetDateTime"], tz),
            ),
        ),
        section(
            "medications",
            "record-medications",
            "record-medications-none",
            items(
                &medications,
                |r| concept(&r["medicationCodeableConcept"]),
                |r| status(lang, r, "status"),
                |r| date_of(lang, &r["authoredOn"], tz),
            ),
        ),
        section(
            "allergies",
            "record-allergies",
            "record-allergies-none",
            items(
                &allergies,
                |r| concept(&r["code"]),
                |r| {
                    r["criticality"]
                        .as_str()
                        .map(|c| lang.t(&format!("criticality-{c}")))
                        .unwrap_or_default()
                },
                |r| date_of(lang, &r["recordedDate"], tz),
            ),
        ),
        section(
            "immunizations",
            "record-immunizations",
            "record-immunizations-none",
            items(
                &immunizations,
                |r| concept(&r["vaccineCode"]),
                |r| status(lang, r, "status"),
                |r| date_of(lang, &r["occurrenceDateTime"], tz),
            ),
        ),
    ];
    let timeline = section(
        "encounters",
        "record-encounters",
        "record-encounters-none",
        items(
            &encounters,
            |r| {
                r["type"]
                    .as_array()
                    .and_then(|t| t.first())
                    .and_then(concept)
                    .or_else(|| r["class"]["display"].as_str().map(str::to_string))
                    .or_else(|| Some(lang.t("record-encounter")))
            },
            |r| {
                r["reasonCode"]
                    .as_array()
                    .and_then(|t| t.first())
                    .and_then(concept)
                    .unwrap_or_default()
            },
            |r| date_of(lang, &r["period"]["start"], tz),
        ),
    );
    let series = clinical::series(&observations);
    let analytes = analytes(lang, &series, tz);
    // Up to two thousand parsed resources take a few milliseconds to free, one allocation at
    // a time; the page need not wait for that (bench/README.md, issue 16).
    crate::release_later((
        conditions,
        medications,
        allergies,
        immunizations,
        encounters,
        observations,
    ));
    Ok(Chart {
        sections,
        encounters: timeline,
        documents,
        analytes,
    })
}

/// `GET /record`.
pub async fn record(State(state): State<AppState>, viewer: Viewer) -> Response {
    let lang = viewer.lang;
    let Some(patient) = viewer.own_patient() else {
        return problem(lang, Problem::WrongAudience);
    };
    match load(&state, &viewer, &patient).await {
        Ok(chart) => render(
            StatusCode::OK,
            &RecordPage {
                shell: Shell::new(&viewer, "/record", "record-title"),
                chart,
            },
        ),
        Err(e) => record_problem(lang, &e),
    }
}
