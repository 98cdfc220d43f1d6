//! `GET /account/notifications`: how the user wants to be told of things, per category (in
//! the portal's inbox, by e-mail), and their e-mail address; `POST` saves them through the
//! notification hub.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_notifications::{Category, Channel, Choices, HubError, Recipient, Settings};
use medmesh_server::AppState;

use crate::layout::{Problem, Shell, problem, render};
use crate::pages::csrf_guard;
use crate::viewer::{Audience, Viewer};

/// One category's row: its name, and which channels are on.
pub struct CategoryRow {
    /// Its key (`results`), used in the form's field names.
    pub key: &'static str,
    /// Its name, in the reader's language.
    pub name: String,
    /// Told in the portal's inbox.
    pub inbox: bool,
    /// Told by e-mail.
    pub email: bool,
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    shell: Shell,
    email: String,
    rows: Vec<CategoryRow>,
    /// Whether the inbox is a channel for this user (patients have one).
    has_inbox: bool,
    /// What happened on a save: a confirmation, or what was wrong.
    saved: bool,
    error: Option<String>,
}

/// Whose settings the viewer's are: their patient record's, or their account's.
fn recipient(viewer: &Viewer) -> Recipient {
    Recipient::of_account(viewer.user_id(), viewer.own_patient().as_deref())
}

/// The categories that concern this audience.
fn categories(audience: Audience) -> &'static [Category] {
    match audience {
        Audience::Patient => &[
            Category::Results,
            Category::Documents,
            Category::Referrals,
            Category::BreakGlass,
            Category::Appointments,
            Category::Medications,
            Category::Messages,
            Category::Care,
            Category::GlucoseAlerts,
        ],
        Audience::Clinician => &[
            Category::Referrals,
            Category::Appointments,
            Category::Medications,
            Category::Messages,
            Category::Care,
        ],
        Audience::Pharmacist => &[Category::Medications, Category::Messages],
        Audience::Admin => &[
            Category::Operations,
            Category::BreakGlass,
            Category::Messages,
        ],
    }
}

fn page(viewer: &Viewer, settings: &Settings, saved: bool, error: Option<String>) -> Response {
    let rows = categories(viewer.audience)
        .iter()
        .map(|c| {
            let chosen = settings.choices.channels(*c);
            CategoryRow {
                key: c.as_str(),
                name: viewer.lang.t(&format!("notify-category-{}", c.as_str())),
                inbox: chosen.contains(&Channel::Inbox),
                email: chosen.contains(&Channel::Email),
            }
        })
        .collect();
    render(
        if error.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        },
        &NotificationsPage {
            shell: Shell::new(viewer, "/account", "notify-title"),
            email: settings.email.clone().unwrap_or_default(),
            rows,
            has_inbox: viewer.audience == Audience::Patient,
            saved,
            error,
        },
    )
}

/// `GET /account/notifications` (`?saved=1` after a save, which redirects here so that a
/// reload does not post again).
#[derive(Debug, serde::Deserialize)]
pub struct Shown {
    #[serde(default)]
    saved: Option<String>,
}

/// `GET /account/notifications`.
pub async fn notifications(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(shown): Query<Shown>,
) -> Response {
    match state.hub.settings(&recipient(&viewer)).await {
        Ok(s) => page(&viewer, &s, shown.saved.is_some(), None),
        Err(e) => {
            tracing::error!(error = %e, "cannot read notification settings");
            problem(viewer.lang, Problem::Unavailable)
        }
    }
}

/// `POST /account/notifications`: `csrf`, `email`, and `<category>.inbox` /
/// `<category>.email` for each box ticked.
pub async fn save_notifications(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(refused) = csrf_guard(&viewer, field("csrf")) {
        return refused;
    }
    let mut choices = Choices::default();
    for c in categories(viewer.audience) {
        let mut on = Vec::new();
        if viewer.audience == Audience::Patient && field(&format!("{}.inbox", c.as_str())).is_some()
        {
            on.push(Channel::Inbox);
        }
        if field(&format!("{}.email", c.as_str())).is_some() {
            on.push(Channel::Email);
        }
        choices.0.insert(*c, on);
    }
    let email = field("email")
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty());
    let settings = Settings {
        choices,
        email,
        webhook: None,
    };
    let who = recipient(&viewer);
    // The webhook is set on its own (the API, the CLI): the hub keeps it.
    match state
        .hub
        .set_choices(&who, settings.choices.clone(), settings.email.clone())
        .await
    {
        Ok(()) => Redirect::to("/account/notifications?saved=1").into_response(),
        Err(HubError::Invalid(_)) => page(
            &viewer,
            &settings,
            false,
            Some(viewer.lang.t("notify-bad-email")),
        ),
        Err(e) => {
            tracing::error!(error = %e, "cannot save notification settings");
            problem(viewer.lang, Problem::Unavailable)
        }
    }
}

/// How often the live count is checked, and for how long one stream lasts (the browser's
/// `EventSource` reconnects by itself).
const LIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
const LIVE_CHECKS: u32 = 900;

/// `GET /account/notifications/live`: the patient's count of unread notifications as
/// Server-Sent Events (`unread`), at once and whenever it changes. It is read from the
/// database, so a notification written by another replica is seen too.
pub async fn live(State(state): State<AppState>, viewer: Viewer) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt;
    let Some(patient) = viewer.own_patient() else {
        return problem(viewer.lang, Problem::WrongAudience);
    };
    let view = match state.records.audit_view(&viewer.ctx, Some(&patient)) {
        Ok(v) => v,
        Err(e) => return crate::layout::record_problem(viewer.lang, &e),
    };
    let trust = state.trust.clone();
    let checks = futures::stream::unfold((0u32, None::<usize>), move |(n, last)| {
        let trust = trust.clone();
        let view = view.clone();
        async move {
            if n >= LIVE_CHECKS {
                return None;
            }
            if n > 0 {
                tokio::time::sleep(LIVE_EVERY).await;
            }
            let now = match trust.unread(&view).await {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "the live inbox count could not be read");
                    last
                }
            };
            let event = (now != last)
                .then(|| now.map(|c| Event::default().event("unread").data(c.to_string())))
                .flatten();
            Some((event, (n + 1, now)))
        }
    });
    let events = checks.filter_map(|e| async move { e.map(Ok::<_, std::convert::Infallible>) });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
