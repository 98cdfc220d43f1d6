//! The private calendar feed, from the portal. `POST /account/calendar-feed` makes the
//! user's link (times only, or with names and places, as they choose), replacing the one
//! they had, and shows it this once; `POST /account/calendar-feed/stop` makes it stop
//! working. Patients reach it from `/appointments`, clinicians from `/calendar`.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_server::AppState;
use serde::Deserialize;

use crate::layout::{Problem, Shell, problem, render};
use crate::pages::csrf_guard;
use crate::viewer::{Audience, Viewer};

#[derive(Template)]
#[template(path = "feed.html")]
struct FeedPage {
    shell: Shell,
    url: String,
    back: &'static str,
}

/// The feed form.
#[derive(Debug, Deserialize)]
pub struct FeedForm {
    csrf: Option<String>,
    #[serde(default)]
    detail: String,
}

fn home(viewer: &Viewer) -> Option<&'static str> {
    match viewer.audience {
        Audience::Patient => Some("/appointments"),
        Audience::Clinician => Some("/calendar"),
        Audience::Admin | Audience::Pharmacist => None,
    }
}

/// `POST /account/calendar-feed`.
pub async fn create(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<FeedForm>,
) -> Response {
    if let Some(r) = csrf_guard(&viewer, form.csrf.as_deref()) {
        return r;
    }
    let Some(back) = home(&viewer) else {
        return problem(viewer.lang, Problem::WrongAudience);
    };
    let detail = if form.detail == "detailed" {
        "detailed"
    } else {
        "busy"
    };
    match medmesh_server::scheduling::create_feed(&state, &viewer.ctx, detail).await {
        Ok(url) => render(
            StatusCode::OK,
            &FeedPage {
                shell: Shell::new(&viewer, back, "feed-title"),
                url,
                back,
            },
        ),
        Err(_) => problem(viewer.lang, Problem::Unavailable),
    }
}

/// `POST /account/calendar-feed/stop`.
pub async fn stop(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<crate::pages::CsrfForm>,
) -> Response {
    if let Some(r) = csrf_guard(&viewer, form.csrf.as_deref()) {
        return r;
    }
    let Some(back) = home(&viewer) else {
        return problem(viewer.lang, Problem::WrongAudience);
    };
    match state.identity.revoke_calendar_feed(viewer.user_id()).await {
        Ok(_) => Redirect::to(&format!("{back}?done=feed-stopped")).into_response(),
        Err(_) => problem(viewer.lang, Problem::Unavailable),
    }
}
