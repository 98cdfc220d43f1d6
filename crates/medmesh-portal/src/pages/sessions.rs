//! `GET /account/sessions`: where the user is signed in (when, which browser, from where),
//! with a button to end any other session; `POST /account/sessions/end` ends one.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_server::AppState;
use serde::Deserialize;

use crate::clinical;
use crate::layout::{Problem, Shell, problem, render};
use crate::pages::csrf_guard;
use crate::viewer::Viewer;

/// One session.
pub struct SessionRow {
    /// When it signed in.
    pub signed_in: String,
    /// The browser, as it named itself.
    pub user_agent: String,
    /// From which address.
    pub ip: String,
    /// Its public handle.
    pub handle: String,
    /// Whether it is this one.
    pub current: bool,
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct SessionsPage {
    shell: Shell,
    sessions: Vec<SessionRow>,
}

/// `GET /account/sessions`.
pub async fn sessions(State(state): State<AppState>, viewer: Viewer) -> Response {
    let lang = viewer.lang;
    let list = match state.identity.sessions_of(viewer.user_id()).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot list sessions");
            return problem(lang, Problem::Unavailable);
        }
    };
    let current = viewer.session_handle.clone();
    let sessions = list
        .into_iter()
        .map(|r| SessionRow {
            signed_in: clinical::date_time_micros(
                lang,
                r.auth_time.saturating_mul(1_000_000),
                viewer.tz_minutes,
            ),
            current: r.handle == current,
            user_agent: r.user_agent,
            ip: r.ip,
            handle: r.handle,
        })
        .collect();
    render(
        StatusCode::OK,
        &SessionsPage {
            shell: Shell::new(&viewer, "/account", "sessions-title"),
            sessions,
        },
    )
}

/// The end-session form.
#[derive(Debug, Deserialize)]
pub struct EndForm {
    csrf: Option<String>,
    #[serde(default)]
    handle: String,
}

/// `POST /account/sessions/end`.
pub async fn end_session(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(f): Form<EndForm>,
) -> Response {
    if let Some(refused) = csrf_guard(&viewer, f.csrf.as_deref()) {
        return refused;
    }
    match state
        .identity
        .end_session(viewer.user_id(), &f.handle)
        .await
    {
        Ok(()) => Redirect::to("/account/sessions").into_response(),
        Err(medmesh_identity::IdentityError::NotFound) => problem(viewer.lang, Problem::NotFound),
        Err(e) => {
            tracing::error!(error = %e, "cannot end a session");
            problem(viewer.lang, Problem::Unavailable)
        }
    }
}
