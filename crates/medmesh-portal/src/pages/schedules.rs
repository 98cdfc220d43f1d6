//! Bookable calendars, the admin's side. `GET /admin/schedules` lists each practitioner's
//! weekly hours, visit type, buffer and horizon, and offers a form to set them up; `POST
//! /admin/schedules` saves them (a PractitionerRole and a Schedule, through the record
//! service with the admin's context: directory resources, which org and node admins may
//! write); `POST /admin/schedules/{practitioner}/closed` closes a period (holidays, one
//! occurrence off) without touching the other occurrences.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_fhir::search::Handling;
use medmesh_records::RecordError;
use medmesh_scheduling::calendar::{TIMEZONE_EXTENSION, calendar, extension_value};
use medmesh_scheduling::setup::{ScheduleSetup, ids, with_closure};
use medmesh_server::AppState;
use serde::Deserialize;
use serde_json::Value;

use crate::clinical::{human_name, resources};
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::{field, refuse_form, valid_id};
use crate::viewer::{Audience, Viewer};

/// One bookable calendar, in words.
pub struct Row {
    /// The practitioner's id.
    pub practitioner: String,
    /// Their name.
    pub name: String,
    /// Weekly hours.
    pub hours: String,
    /// The visit type and its length.
    pub visit: String,
    /// Buffer and horizon.
    pub limits: String,
    /// Closed periods.
    pub closed: Vec<String>,
}

/// A choice in a select.
pub struct Choice {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// A day's box in the form.
pub struct DayBox {
    /// `mon` ... `sun`.
    pub id: &'static str,
    /// Its name.
    pub name: String,
    /// Ticked at first (weekdays).
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "admin_schedules.html")]
struct SchedulesPage {
    shell: Shell,
    days: Vec<DayBox>,
    rows: Vec<Row>,
    practitioners: Vec<Choice>,
    organizations: Vec<Choice>,
    locations: Vec<Choice>,
    saved: bool,
    error: Option<String>,
}

/// `GET /admin/schedules?saved=1`.
#[derive(Debug, Default, Deserialize)]
pub struct Shown {
    #[serde(default)]
    saved: Option<String>,
}

async fn search(state: &AppState, viewer: &Viewer, rt: &str) -> Result<Vec<Value>, RecordError> {
    let params = vec![("_count".to_string(), "500".to_string())];
    let b = state
        .records
        .search(&viewer.ctx, rt, &params, Handling::Lenient)
        .await?;
    Ok(resources(b))
}

fn choices(list: &[Value]) -> Vec<Choice> {
    list.iter()
        .filter_map(|r| {
            let id = r.get("id")?.as_str()?.to_string();
            let name = human_name(r)
                .or_else(|| r.get("name").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| id.clone());
            Some(Choice { id, name })
        })
        .collect()
}

async fn show(state: &AppState, viewer: &Viewer, saved: bool, error: Option<String>) -> Response {
    if viewer.audience != Audience::Admin {
        return problem(viewer.lang, Problem::WrongAudience);
    }
    let lists = async {
        Ok::<_, RecordError>((
            search(state, viewer, "Schedule").await?,
            search(state, viewer, "PractitionerRole").await?,
            search(state, viewer, "Practitioner").await?,
            search(state, viewer, "Organization").await?,
            search(state, viewer, "Location").await?,
        ))
    }
    .await;
    let (schedules, roles, practitioners, organizations, locations) = match lists {
        Ok(l) => l,
        Err(e) => return record_problem(viewer.lang, &e),
    };
    let people = choices(&practitioners);
    let mut rows = Vec::new();
    for s in &schedules {
        let role = s
            .get("actor")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a.get("reference").and_then(Value::as_str))
            .find_map(|r| r.strip_prefix("PractitionerRole/"))
            .and_then(|id| {
                roles
                    .iter()
                    .find(|r| r.get("id").and_then(Value::as_str) == Some(id))
            });
        let Ok(cal) = calendar(s, role, None) else {
            continue;
        };
        let practitioner = cal
            .practitioner
            .as_deref()
            .and_then(|p| p.strip_prefix("Practitioner/"))
            .unwrap_or_default()
            .to_string();
        let hours = role
            .and_then(|r| r.get("availableTime"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|t| {
                let days: Vec<&str> = t
                    .get("daysOfWeek")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let at = |k: &str| {
                    t.get(k)
                        .and_then(Value::as_str)
                        .and_then(|v| v.get(..5))
                        .unwrap_or("")
                };
                format!(
                    "{} {}–{}",
                    days.join(" "),
                    at("availableStartTime"),
                    at("availableEndTime")
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let zone = extension_value(s, TIMEZONE_EXTENSION)
            .and_then(Value::as_str)
            .unwrap_or("UTC");
        rows.push(Row {
            name: people
                .iter()
                .find(|c| c.id == practitioner)
                .map_or_else(|| practitioner.clone(), |c| c.name.clone()),
            practitioner,
            hours: format!("{hours} ({zone})"),
            visit: cal
                .visit_types
                .iter()
                .map(|v| {
                    let name = v
                        .concept
                        .get("text")
                        .or_else(|| v.concept.pointer("/coding/0/display"))
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    format!("{name}, {} min", v.minutes)
                })
                .collect::<Vec<_>>()
                .join("; "),
            limits: viewer.lang.t_with(
                "sched-limits",
                &[
                    (
                        "buffer",
                        crate::i18n::Arg::Number(f64::from(cal.buffer_minutes)),
                    ),
                    (
                        "days",
                        crate::i18n::Arg::Number(f64::from(cal.horizon_days)),
                    ),
                ],
            ),
            closed: role
                .and_then(|r| r.get("notAvailable"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|n| {
                    let at = |k: &str| {
                        n.pointer(&format!("/during/{k}"))
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    };
                    let why = n.get("description").and_then(Value::as_str).unwrap_or("");
                    format!("{why}: {} – {}", at("start"), at("end"))
                })
                .collect(),
        });
    }
    render(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        &SchedulesPage {
            shell: Shell::new(viewer, "/admin/schedules", "sched-title"),
            days: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                .into_iter()
                .map(|id| DayBox {
                    id,
                    name: viewer.lang.t(&format!("sched-day-{id}")),
                    checked: !matches!(id, "sat" | "sun"),
                })
                .collect(),
            rows,
            practitioners: people,
            organizations: choices(&organizations),
            locations: choices(&locations),
            saved,
            error,
        },
    )
}

/// `GET /admin/schedules`.
pub async fn schedules(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(shown): Query<Shown>,
) -> Response {
    show(&state, &viewer, shown.saved.is_some(), None).await
}

/// The setup form.
#[derive(Debug, Deserialize)]
pub struct SetupForm {
    csrf: Option<String>,
    practitioner: String,
    #[serde(default)]
    organization: String,
    #[serde(default)]
    location: String,
    #[serde(default)]
    mon: Option<String>,
    #[serde(default)]
    tue: Option<String>,
    #[serde(default)]
    wed: Option<String>,
    #[serde(default)]
    thu: Option<String>,
    #[serde(default)]
    fri: Option<String>,
    #[serde(default)]
    sat: Option<String>,
    #[serde(default)]
    sun: Option<String>,
    opens: String,
    closes: String,
    visit_name: String,
    visit_minutes: String,
    #[serde(default)]
    buffer_minutes: String,
    horizon_days: String,
    zone: String,
}

fn number(s: &str) -> u32 {
    s.trim().parse().unwrap_or(u32::MAX)
}

async fn current(
    state: &AppState,
    viewer: &Viewer,
    rt: &str,
    id: &str,
) -> Result<Option<Value>, RecordError> {
    match state.records.read(&viewer.ctx, rt, id).await {
        Ok(r) => Ok(Some(r.resource)),
        Err(RecordError::NotFound | RecordError::Gone { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `POST /admin/schedules`: saves a practitioner's calendar.
pub async fn save(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<SetupForm>,
) -> Response {
    let optional = |s: &str| field(s, 64).filter(|v| valid_id(v));
    if let Some(r) = refuse_form(
        &viewer,
        form.csrf.as_deref(),
        Audience::Admin,
        &[&form.practitioner],
    ) {
        return r;
    }
    let days: Vec<String> = [
        ("mon", &form.mon),
        ("tue", &form.tue),
        ("wed", &form.wed),
        ("thu", &form.thu),
        ("fri", &form.fri),
        ("sat", &form.sat),
        ("sun", &form.sun),
    ]
    .iter()
    .filter(|(_, on)| on.is_some())
    .map(|(d, _)| (*d).to_string())
    .collect();
    let setup = ScheduleSetup {
        practitioner: form.practitioner.clone(),
        organization: optional(&form.organization),
        location: optional(&form.location),
        days,
        opens: form.opens.clone(),
        closes: form.closes.clone(),
        visit_name: form.visit_name.clone(),
        visit_minutes: number(&form.visit_minutes),
        buffer_minutes: if form.buffer_minutes.trim().is_empty() {
            0
        } else {
            number(&form.buffer_minutes)
        },
        horizon_days: number(&form.horizon_days),
        zone: form.zone.trim().to_string(),
    };
    let (role_id, schedule_id) = ids(&setup.practitioner);
    let role = match current(&state, &viewer, "PractitionerRole", &role_id).await {
        Ok(r) => r,
        Err(e) => return record_problem(viewer.lang, &e),
    };
    let (role, schedule) = match setup.resources(role.as_ref()) {
        Ok(r) => r,
        Err(e) => {
            let why = viewer.lang.t(&format!("sched-bad-{}", e.0));
            return show(&state, &viewer, false, Some(why)).await;
        }
    };
    for (rt, id, body) in [
        ("PractitionerRole", &role_id, role),
        ("Schedule", &schedule_id, schedule),
    ] {
        if let Err(e) = state.records.update(&viewer.ctx, rt, id, body, None).await {
            return record_problem(viewer.lang, &e);
        }
    }
    Redirect::to("/admin/schedules?saved=1").into_response()
}

/// The closing form.
#[derive(Debug, Deserialize)]
pub struct ClosedForm {
    csrf: Option<String>,
    from: String,
    to: String,
    #[serde(default)]
    why: String,
}

/// `POST /admin/schedules/{practitioner}/closed`: closes a period (both days included).
pub async fn close(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(practitioner): Path<String>,
    Form(form): Form<ClosedForm>,
) -> Response {
    if let Some(r) = refuse_form(
        &viewer,
        form.csrf.as_deref(),
        Audience::Admin,
        &[&practitioner],
    ) {
        return r;
    }
    let (role_id, _) = ids(&practitioner);
    let role = match current(&state, &viewer, "PractitionerRole", &role_id).await {
        Ok(Some(r)) => r,
        Ok(None) => return problem(viewer.lang, Problem::NotFound),
        Err(e) => return record_problem(viewer.lang, &e),
    };
    let why = field(&form.why, 100).unwrap_or_default();
    let role = match with_closure(&role, form.from.trim(), form.to.trim(), &why) {
        Ok(r) => r,
        Err(e) => {
            let why = viewer.lang.t(&format!("sched-bad-{}", e.0));
            return show(&state, &viewer, false, Some(why)).await;
        }
    };
    match state
        .records
        .update(&viewer.ctx, "PractitionerRole", &role_id, role, None)
        .await
    {
        Ok(_) => Redirect::to("/admin/schedules?saved=1").into_response(),
        Err(e) => record_problem(viewer.lang, &e),
    }
}
