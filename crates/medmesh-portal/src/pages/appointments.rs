//! A patient's appointments. `GET /appointments` finds a clinician in the directory (by
//! specialty, language, insurance plan), shows the free times of the one chosen, and lists
//! the patient's own appointments; `POST /appointments/book` books a time (`$book`), `POST
//! /appointments/{id}/cancel` cancels and `POST /appointments/{id}/move` moves one to
//! another free time. Everything goes through the scheduling service with the patient's
//! context, so the PDP, the audit log and the no-double-booking claim apply.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_fhir::search::Handling;
use medmesh_records::RecordError;
use medmesh_scheduling::FindRequest;
use medmesh_scheduling::calendar::{TIMEZONE_EXTENSION, extension_value, local_time};
use medmesh_scheduling::directory::DirectoryQuery;
use medmesh_server::AppState;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::clinical::resources;
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::{field, name_of, refuse_form, valid_id};
use crate::viewer::{Audience, Viewer};

/// How many free times are shown for one clinician.
const TIMES_SHOWN: usize = 12;

/// One clinician the directory found.
pub struct Clinician {
    /// `Practitioner/x`.
    pub reference: String,
    /// Name.
    pub name: String,
    /// Specialties, the practice and its place, in words.
    pub details: String,
    /// Languages.
    pub languages: String,
    /// The next free time, in the practice's time, if any.
    pub next_free: Option<String>,
}

/// One free time offered.
pub struct FreeTime {
    /// When, in the practice's time.
    pub label: String,
    /// What the booking form sends back.
    pub schedule: String,
    /// Start, FHIR instant.
    pub start: String,
    /// End, FHIR instant.
    pub end: String,
    /// The visit type, `system|code`, or empty.
    pub visit: String,
    /// The visit type in words.
    pub visit_name: String,
}

/// One of the patient's appointments.
pub struct Mine {
    /// Its id.
    pub id: String,
    /// When.
    pub when: String,
    /// With whom.
    pub with: String,
    /// Its status, in words.
    pub status: String,
    /// Whether it can still be cancelled or moved.
    pub changeable: bool,
    /// Whether it can be moved to another free time (booked or requested, not waiting).
    pub movable: bool,
    /// Whether it is held for the patient (a freed time offered from the waiting list, or
    /// a `$hold`), to be booked.
    pub held: bool,
    /// The practitioner (for finding another time).
    pub practitioner: String,
    /// A video visit that is booked: its room's link is shown.
    pub video: bool,
}

#[derive(Template)]
#[template(path = "appointments.html")]
struct AppointmentsPage {
    shell: Shell,
    specialty: String,
    language: String,
    insurance: String,
    searched: bool,
    clinicians: Vec<Clinician>,
    chosen: Option<String>,
    times: Vec<FreeTime>,
    moving: Option<String>,
    mine: Vec<Mine>,
    notice: Option<String>,
    error: Option<String>,
}

/// `GET /appointments` parameters.
#[derive(Debug, Default, Deserialize)]
pub struct Shown {
    #[serde(default)]
    specialty: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    insurance: String,
    /// `Practitioner/x`: show their free times.
    #[serde(default)]
    practitioner: String,
    /// An appointment being moved.
    #[serde(default)]
    r#move: String,
    /// `booked`, `cancelled`, `moved`, `taken` after a form.
    #[serde(default)]
    done: String,
}

/// An appointment's visit type in words.
pub(crate) fn visit_words(a: &Value) -> String {
    a.pointer("/serviceType/0/coding/0/display")
        .or_else(|| a.pointer("/serviceType/0/text"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// When an appointment starts, in its practice's time zone.
pub(crate) fn when(a: &Value) -> String {
    let zone = extension_value(a, TIMEZONE_EXTENSION).and_then(Value::as_str);
    a.get("start")
        .and_then(Value::as_str)
        .map(|s| local_time(s, zone))
        .unwrap_or_default()
}

/// The first participant of an appointment whose reference is of type `rt`.
pub(crate) fn participant(a: &Value, rt: &str) -> Option<String> {
    a.get("participant")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.pointer("/actor/reference").and_then(Value::as_str))
        .find(|r| r.strip_prefix(rt).is_some_and(|id| id.starts_with('/')))
        .map(str::to_string)
}

/// Whether an appointment is only held (a `$hold` not yet booked).
pub(crate) fn is_held(a: &Value) -> bool {
    extension_value(a, &medmesh_scheduling::calendar::hold_extension_url()).is_some()
}

/// An appointment's status in words (a hold reads as held, not as pending).
pub(crate) fn status_words(lang: crate::i18n::Lang, a: &Value) -> String {
    match a.get("status").and_then(Value::as_str).unwrap_or_default() {
        "pending" if is_held(a) => lang.t("appt-status-held"),
        s => lang.t(&format!("appt-status-{s}")),
    }
}

async fn show(state: &AppState, viewer: &Viewer, shown: Shown, error: Option<String>) -> Response {
    let Some(patient) = viewer.own_patient() else {
        return problem(viewer.lang, Problem::WrongAudience);
    };
    let t = |id: &str| viewer.lang.t(id);
    let searched =
        !(shown.specialty.is_empty() && shown.language.is_empty() && shown.insurance.is_empty());
    let mut clinicians = Vec::new();
    if searched {
        let q = DirectoryQuery {
            specialty: field(&shown.specialty, 100),
            language: field(&shown.language, 20),
            insurance: field(&shown.insurance, 100),
            next_free: true,
            limit: 30,
            ..DirectoryQuery::default()
        };
        match state.scheduling.directory(&viewer.ctx, &q).await {
            Ok(found) => {
                for e in found {
                    let Some(reference) = e.practitioner.clone() else {
                        continue;
                    };
                    let mut details: Vec<String> = e.specialties.clone();
                    details.extend(e.organization.clone());
                    details.extend(e.location.clone());
                    details.extend(e.address.clone());
                    clinicians.push(Clinician {
                        name: e.name.clone().unwrap_or_else(|| reference.clone()),
                        reference,
                        details: details.join(" · "),
                        languages: e.languages.join(", "),
                        next_free: e.next_free.as_deref().map(|n| local_time(n, None)),
                    });
                }
            }
            Err(e) => return record_problem(viewer.lang, &e),
        }
    }
    let chosen = field(&shown.practitioner, 80)
        .filter(|p| p.strip_prefix("Practitioner/").is_some_and(valid_id));
    let mut times = Vec::new();
    if let Some(p) = &chosen {
        let req = FindRequest {
            practitioners: vec![p.clone()],
            limit: TIMES_SHOWN,
            ..FindRequest::default()
        };
        match state.scheduling.find(&viewer.ctx, &req).await {
            Ok(offers) => {
                for o in offers {
                    let text = |k: &str| {
                        o.get(k)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string()
                    };
                    let visit = match (
                        o.pointer("/serviceType/0/coding/0/system")
                            .and_then(Value::as_str),
                        o.pointer("/serviceType/0/coding/0/code")
                            .and_then(Value::as_str),
                    ) {
                        (Some(s), Some(c)) => format!("{s}|{c}"),
                        (None, Some(c)) => c.to_string(),
                        // A visit type named only in words is named by its words.
                        _ => o
                            .pointer("/serviceType/0/text")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    };
                    times.push(FreeTime {
                        label: when(&o),
                        schedule: extension_value(
                            &o,
                            &medmesh_scheduling::calendar::schedule_extension_url(),
                        )
                        .and_then(|r| r.get("reference"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                        start: text("start"),
                        end: text("end"),
                        visit_name: visit_words(&o),
                        visit,
                    });
                }
            }
            Err(e) => return record_problem(viewer.lang, &e),
        }
    }
    let found = search_appointments(
        state,
        viewer,
        &[
            ("patient", patient.clone()),
            ("_sort", "date".into()),
            ("_count", "50".into()),
        ],
    )
    .await;
    let appointments = match found {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut mine = Vec::new();
    for a in appointments {
        let status = a
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let practitioner = participant(&a, "Practitioner").unwrap_or_default();
        let with = if practitioner.is_empty() {
            String::new()
        } else {
            name_of(state, viewer, &practitioner).await
        };
        mine.push(Mine {
            id: a
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            when: when(&a),
            with,
            status: status_words(viewer.lang, &a),
            changeable: matches!(status.as_str(), "pending" | "booked" | "waitlist"),
            held: status == "pending" && is_held(&a),
            movable: matches!(status.as_str(), "pending" | "booked") && !is_held(&a),
            practitioner,
            video: status == "booked" && medmesh_scheduling::video::is_video_visit(&a),
        });
    }
    let notice = match shown.done.as_str() {
        "booked" => Some(t("appt-done-booked")),
        "pending" => Some(t("appt-done-pending")),
        "cancelled" => Some(t("appt-done-cancelled")),
        "moved" => Some(t("appt-done-moved")),
        "feed-stopped" => Some(t("feed-stopped")),
        "waiting" => Some(t("appt-done-waiting")),
        _ => None,
    };
    render(
        if error.is_some() {
            StatusCode::CONFLICT
        } else {
            StatusCode::OK
        },
        &AppointmentsPage {
            shell: Shell::new(viewer, "/appointments", "appt-title"),
            specialty: shown.specialty,
            language: shown.language,
            insurance: shown.insurance,
            searched,
            clinicians,
            chosen,
            times,
            moving: field(&shown.r#move, 64).filter(|m| valid_id(m)),
            mine,
            notice,
            error,
        },
    )
}

/// `GET /appointments`.
pub async fn appointments(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(shown): Query<Shown>,
) -> Response {
    show(&state, &viewer, shown, None).await
}

/// A free time chosen on the page.
#[derive(Debug, Deserialize)]
pub struct TimeForm {
    csrf: Option<String>,
    schedule: String,
    start: String,
    end: String,
    #[serde(default)]
    visit: String,
    #[serde(default)]
    practitioner: String,
}

/// The check in front of a patient's own form: the CSRF token, the audience, the ids; the
/// patient's id when it passes.
fn own_form(viewer: &Viewer, csrf: Option<&str>, ids: &[&str]) -> Result<String, Box<Response>> {
    if let Some(r) = refuse_form(viewer, csrf, Audience::Patient, ids) {
        return Err(Box::new(r));
    }
    viewer
        .own_patient()
        .ok_or_else(|| Box::new(problem(viewer.lang, Problem::WrongAudience)))
}

/// Appointments the viewer may see, by a search (judged by the PDP and audited).
pub(crate) async fn search_appointments(
    state: &AppState,
    viewer: &Viewer,
    params: &[(&str, String)],
) -> Result<Vec<Value>, Response> {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    state
        .records
        .search(&viewer.ctx, "Appointment", &params, Handling::Lenient)
        .await
        .map(resources)
        .map_err(|e| record_problem(viewer.lang, &e))
}

/// The proposal a chosen time stands for, for the viewer's own record.
fn proposal(form: &TimeForm, patient: &str) -> Value {
    let mut a = json!({
        "resourceType": "Appointment",
        "status": "proposed",
        "extension": [{"url": medmesh_scheduling::calendar::schedule_extension_url(),
                       "valueReference": {"reference": form.schedule}}],
        "start": form.start,
        "end": form.end,
        "participant": [{"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"}],
    });
    if let Some((system, code)) = form.visit.split_once('|') {
        a["serviceType"] = json!([{"coding": [{"system": system, "code": code}]}]);
    } else if !form.visit.is_empty() {
        // A code, or the words of a visit type that has none: the schedule matches either.
        a["serviceType"] = json!([{"coding": [{"code": form.visit}], "text": form.visit}]);
    }
    a
}

/// What a booking's refusal reads as: taken (someone else got it first) or not offered.
async fn refused(state: &AppState, viewer: &Viewer, form: &TimeForm, e: &RecordError) -> Response {
    match e {
        RecordError::Conflict(_) | RecordError::Invalid(_) => {
            let shown = Shown {
                practitioner: form.practitioner.clone(),
                ..Shown::default()
            };
            show(state, viewer, shown, Some(viewer.lang.t("appt-taken"))).await
        }
        other => record_problem(viewer.lang, other),
    }
}

/// `POST /appointments/book`: books the chosen time.
pub async fn book(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<TimeForm>,
) -> Response {
    let patient = match own_form(&viewer, form.csrf.as_deref(), &[]) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match state
        .scheduling
        .book(&viewer.ctx, Some(&proposal(&form, &patient)), None)
        .await
    {
        Ok(a) if a.get("status").and_then(Value::as_str) == Some("pending") => {
            Redirect::to("/appointments?done=pending").into_response()
        }
        Ok(_) => Redirect::to("/appointments?done=booked").into_response(),
        Err(e) => refused(&state, &viewer, &form, &e).await,
    }
}

/// `POST /appointments/{id}/move`: moves an appointment to the chosen time.
pub async fn move_to(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<TimeForm>,
) -> Response {
    let patient = match own_form(&viewer, form.csrf.as_deref(), &[&id]) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match state
        .scheduling
        .reschedule(&viewer.ctx, &id, &proposal(&form, &patient))
        .await
    {
        Ok(_) => Redirect::to("/appointments?done=moved").into_response(),
        Err(e) => refused(&state, &viewer, &form, &e).await,
    }
}

/// `POST /appointments/{id}/book`: books a time held for the patient (a freed time the
/// waiting list offered them).
pub async fn book_held(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<crate::pages::CsrfForm>,
) -> Response {
    if let Some(r) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Patient, &[&id]) {
        return r;
    }
    match state.scheduling.book(&viewer.ctx, None, Some(&id)).await {
        Ok(_) => Redirect::to("/appointments?done=booked").into_response(),
        Err(RecordError::Conflict(_) | RecordError::Invalid(_)) => {
            show(
                &state,
                &viewer,
                Shown::default(),
                Some(viewer.lang.t("appt-taken")),
            )
            .await
        }
        Err(e) => record_problem(viewer.lang, &e),
    }
}

/// The waiting-list form.
#[derive(Debug, Deserialize)]
pub struct WaitForm {
    csrf: Option<String>,
    practitioner: String,
}

/// `POST /appointments/waitlist`: waits for the chosen practitioner.
pub async fn wait(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<WaitForm>,
) -> Response {
    let patient = match own_form(&viewer, form.csrf.as_deref(), &[]) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match state
        .scheduling
        .join_waitlist(&viewer.ctx, &form.practitioner, &patient)
        .await
    {
        Ok(_) => Redirect::to("/appointments?done=waiting").into_response(),
        Err(RecordError::Invalid(_)) => {
            let shown = Shown {
                practitioner: form.practitioner.clone(),
                ..Shown::default()
            };
            show(
                &state,
                &viewer,
                shown,
                Some(viewer.lang.t("appt-no-waitlist")),
            )
            .await
        }
        Err(e) => record_problem(viewer.lang, &e),
    }
}

/// `POST /appointments/{id}/cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<crate::pages::CsrfForm>,
) -> Response {
    if let Some(r) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Patient, &[&id]) {
        return r;
    }
    match state.scheduling.cancel(&viewer.ctx, &id, None).await {
        Ok(_) => Redirect::to("/appointments?done=cancelled").into_response(),
        Err(e) => record_problem(viewer.lang, &e),
    }
}
