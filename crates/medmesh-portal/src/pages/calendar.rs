//! The clinician's calendar. `GET /calendar` shows their appointments for a day or a week
//! (`?day=YYYY-MM-DD&view=day|week`), and the bookings awaiting their approval; `POST
//! /calendar/{id}/{action}` approves or declines a request, or marks a patient arrived or
//! absent. The appointments are read through the record service with the clinician's
//! context: an appointment opens its patient's record to the practitioner it is with.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_scheduling::StaffAction;
use medmesh_server::AppState;
use serde::Deserialize;
use serde_json::Value;

use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::appointments::{
    is_held, participant, search_appointments, status_words, visit_words, when,
};
use crate::pages::{CsrfForm, name_of, refuse_form, viewer_today};
use crate::viewer::{Audience, Viewer};

/// One appointment in the calendar.
pub struct Visit {
    /// Its id.
    pub id: String,
    /// When, in the practice's time.
    pub when: String,
    /// The patient's name.
    pub patient: String,
    /// What kind of visit.
    pub visit: String,
    /// Its status, in words.
    pub status: String,
    /// Whether it waits for approval.
    pub request: bool,
    /// Whether arrival or absence can be marked.
    pub markable: bool,
    /// A video visit still to take place: its room's link is shown.
    pub video: bool,
}

/// One day of the calendar.
pub struct Day {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Its visits, in order.
    pub visits: Vec<Visit>,
}

#[derive(Template)]
#[template(path = "calendar.html")]
struct CalendarPage {
    shell: Shell,
    week: bool,
    day: String,
    previous: String,
    next: String,
    days: Vec<Day>,
    requests: Vec<Visit>,
    notice: Option<String>,
    figures: Figures,
}

/// The practitioner's appointments from [`FIGURE_DAYS`] days before the days shown to
/// their end, by status, and the share missed among those that came due.
pub struct Figures {
    /// The first day counted, `YYYY-MM-DD`.
    pub from: String,
    /// The last day counted.
    pub to: String,
    /// `(status in words, count)`, the statuses with any.
    pub counts: Vec<(String, u64)>,
    /// Missed among attended and missed, in whole percent; `None` when none came due.
    pub no_show_percent: Option<u64>,
}

/// How far back the calendar's figures look.
const FIGURE_DAYS: i64 = 90;

async fn figures(
    state: &AppState,
    viewer: &Viewer,
    me: &str,
    first: time::Date,
    end: time::Date,
) -> Result<Figures, Response> {
    let from = first
        .checked_sub(time::Duration::days(FIGURE_DAYS))
        .unwrap_or(first);
    let to = end;
    let counted = state
        .scheduling
        .figures(&viewer.ctx, me, Some(&iso(from)), Some(&iso(to)))
        .await
        .map_err(|e| record_problem(viewer.lang, &e))?;
    let attended: u64 = ["arrived", "checked-in", "fulfilled"]
        .iter()
        .filter_map(|s| counted.get(*s))
        .sum();
    let missed = counted.get("noshow").copied().unwrap_or(0);
    Ok(Figures {
        from: iso(from),
        to: iso(to.previous_day().unwrap_or(to)),
        counts: counted
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| (viewer.lang.t(&format!("appt-status-{s}")), *n))
            .collect(),
        no_show_percent: (attended + missed > 0).then(|| missed * 100 / (attended + missed)),
    })
}

/// `GET /calendar` parameters.
#[derive(Debug, Default, Deserialize)]
pub struct Shown {
    #[serde(default)]
    day: String,
    #[serde(default)]
    view: String,
    /// `feed-stopped` after the calendar link was stopped.
    #[serde(default)]
    done: String,
}

fn date_of(s: &str) -> Option<time::Date> {
    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

fn iso(d: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

async fn visit(state: &AppState, viewer: &Viewer, a: &Value) -> Visit {
    let status = a.get("status").and_then(Value::as_str).unwrap_or_default();
    let held = is_held(a);
    Visit {
        id: a
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        when: when(a),
        patient: match participant(a, "Patient") {
            Some(p) => name_of(state, viewer, &p).await,
            None => String::new(),
        },
        visit: visit_words(a),
        status: status_words(viewer.lang, a),
        request: status == "pending" && !held,
        markable: matches!(status, "booked" | "checked-in" | "arrived"),
        video: matches!(status, "booked" | "checked-in" | "arrived")
            && medmesh_scheduling::video::is_video_visit(a),
    }
}

/// `GET /calendar`.
pub async fn calendar(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(shown): Query<Shown>,
) -> Response {
    if viewer.audience != Audience::Clinician {
        return problem(viewer.lang, Problem::WrongAudience);
    }
    let Some(me) = viewer
        .owner_reference()
        .filter(|r| r.starts_with("Practitioner/"))
    else {
        return problem(viewer.lang, Problem::WrongAudience);
    };
    let Some(day) = date_of(&shown.day).or_else(|| viewer_today(&state, &viewer)) else {
        return problem(viewer.lang, Problem::BadInput);
    };
    let week = shown.view == "week";
    let span = if week { 7 } else { 1 };
    let (Some(end), Some(previous), Some(next)) = (
        day.checked_add(time::Duration::days(span)),
        day.checked_sub(time::Duration::days(span)),
        day.checked_add(time::Duration::days(span)),
    ) else {
        return problem(viewer.lang, Problem::BadInput);
    };
    let found = search_appointments(
        &state,
        &viewer,
        &[
            ("actor", me.clone()),
            ("date", format!("ge{}", iso(day))),
            ("date", format!("lt{}", iso(end))),
            ("status:not", "cancelled".into()),
            ("_sort", "date".into()),
            ("_count", "200".into()),
        ],
    )
    .await;
    let booked = match found {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut days: Vec<Day> = (0..span)
        .filter_map(|i| day.checked_add(time::Duration::days(i)))
        .map(|d| Day {
            date: iso(d),
            visits: Vec::new(),
        })
        .collect();
    for a in booked {
        let v = visit(&state, &viewer, &a).await;
        // The practice's day ("Mon 2026-12-07 09:00 CET"), which the search's UTC bounds
        // may put a visit just outside: it then goes to the nearest day shown.
        let date = v.when.get(4..14).unwrap_or_default().to_string();
        let at = days
            .iter()
            .position(|d| d.date == date)
            .unwrap_or(if date < iso(day) {
                0
            } else {
                days.len().saturating_sub(1)
            });
        if let Some(d) = days.get_mut(at) {
            d.visits.push(v);
        }
    }
    // Requests waiting for approval, whatever their day.
    let found = search_appointments(
        &state,
        &viewer,
        &[
            ("actor", me.clone()),
            ("status", "pending".into()),
            ("_sort", "date".into()),
            ("_count", "100".into()),
        ],
    )
    .await;
    let figures = match figures(&state, &viewer, &me, day, end).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut requests = Vec::new();
    for a in match found {
        Ok(a) => a,
        Err(r) => return r,
    } {
        let v = visit(&state, &viewer, &a).await;
        if v.request {
            requests.push(v);
        }
    }
    render(
        axum::http::StatusCode::OK,
        &CalendarPage {
            shell: Shell::new(&viewer, "/calendar", "cal-title"),
            week,
            day: iso(day),
            previous: iso(previous),
            next: iso(next),
            days,
            requests,
            notice: (shown.done == "feed-stopped").then(|| viewer.lang.t("feed-stopped")),
            figures,
        },
    )
}

/// `POST /calendar/{id}/{action}`: `approve`, `decline`, `arrived`, `noshow`.
pub async fn act(
    State(state): State<AppState>,
    viewer: Viewer,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(r) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Clinician, &[&id]) {
        return r;
    }
    let Some(action) = StaffAction::parse(&action) else {
        return problem(viewer.lang, Problem::BadInput);
    };
    match state.scheduling.staff(&viewer.ctx, &id, action).await {
        Ok(_) => Redirect::to("/calendar").into_response(),
        Err(e) => record_problem(viewer.lang, &e),
    }
}
