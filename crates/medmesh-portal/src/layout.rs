//! The frame every page shares, and the one way pages answer.
//!
//! [`Shell`] carries what `templates/layout.html` needs: the language, the page title, the
//! navigation for the viewer's audience (with the current page marked), the user's name and
//! the CSRF token the sign-out form echoes. [`render`] turns a page template into a
//! response with the portal's headers; [`problem`] is the pages' error answer (one mapping
//! for this audience: no internal error text reaches the browser).

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use medmesh_records::RecordError;

use crate::i18n::Lang;
use crate::viewer::{Audience, Viewer};

/// The Content-Security-Policy of every page: the node's one policy.
pub use medmesh_server::web::CONTENT_SECURITY_POLICY;

/// One navigation link.
#[derive(Debug, Clone)]
pub struct NavLink {
    /// Where it goes.
    pub href: &'static str,
    /// Its text.
    pub label: String,
    /// Whether it is the page shown.
    pub current: bool,
}

/// What the layout shows around a page.
#[derive(Debug, Clone)]
pub struct Shell {
    /// `<html lang>`.
    pub lang: &'static str,
    /// The page's language, for templates: `{{ shell.i18n.t("message-id") }}`.
    pub i18n: Lang,
    /// A banner every page of the session shows (an emergency access in force), if any.
    pub banner: Option<String>,
    /// The page's title (also the `<h1>`).
    pub title: String,
    /// The navigation for the viewer's audience.
    pub nav: Vec<NavLink>,
    /// The signed-in user's name, shown beside the sign-out button.
    pub user: String,
    /// The session's CSRF token.
    pub csrf: String,
    /// Layout strings, translated.
    pub text: ShellText,
    /// For a patient, the words of the live count of their unread notifications
    /// (`{count}` left for `portal.js`, which fills it from `/account/notifications/live`).
    pub live_inbox: Option<String>,
}

/// The layout's own strings.
#[derive(Debug, Clone)]
pub struct ShellText {
    /// "Skip to content".
    pub skip: String,
    /// The navigation's accessible name.
    pub nav_label: String,
    /// "Sign out".
    pub sign_out: String,
    /// "Signed in as".
    pub signed_in_as: String,
    /// The product name.
    pub product: String,
}

impl Shell {
    /// The frame for `viewer` on the page at `here`, titled by the message `title_id`.
    pub fn new(viewer: &Viewer, here: &str, title_id: &str) -> Self {
        let t = |id: &str| viewer.lang.t(id);
        let links: &[(&'static str, &str)] = match viewer.audience {
            Audience::Patient => &[
                ("/home", "nav-home"),
                ("/record", "nav-record"),
                ("/appointments", "nav-appointments"),
                ("/medications", "nav-medications"),
                ("/care", "nav-care"),
                ("/glucose", "nav-glucose"),
                ("/messages", "nav-messages"),
                ("/sharing", "nav-sharing"),
                ("/my-data", "nav-my-data"),
                ("/documents", "nav-documents"),
                ("/account/audit", "nav-access-log"),
                ("/account", "nav-account"),
            ],
            Audience::Clinician => &[
                ("/home", "nav-home"),
                ("/patients", "nav-patients"),
                ("/worklist", "nav-worklist"),
                ("/glucose/panel", "nav-glucose-panel"),
                ("/messages", "nav-messages"),
                ("/calendar", "nav-calendar"),
                ("/referrals", "nav-referrals"),
                ("/refills", "nav-refills"),
                ("/account/documents", "nav-documents"),
                ("/account", "nav-account"),
            ],
            Audience::Pharmacist => &[
                ("/home", "nav-home"),
                ("/pharmacy", "nav-pharmacy"),
                ("/account", "nav-account"),
            ],
            Audience::Admin => &[
                ("/home", "nav-home"),
                ("/admin", "nav-admin-users"),
                ("/admin/clients", "nav-admin-clients"),
                ("/admin/break-glass", "nav-admin-break-glass"),
                ("/admin/schedules", "nav-admin-schedules"),
                ("/admin/keys", "nav-admin-keys"),
                ("/account", "nav-account"),
            ],
        };
        Self {
            lang: viewer.lang.tag(),
            i18n: viewer.lang,
            banner: None,
            title: t(title_id),
            nav: links
                .iter()
                .map(|(href, id)| NavLink {
                    href,
                    label: t(id),
                    current: *href == here,
                })
                .collect(),
            user: viewer.name().to_string(),
            csrf: viewer.csrf.clone(),
            live_inbox: (viewer.audience == Audience::Patient)
                .then(|| viewer.lang.t_for_script("layout-inbox-new", &["count"])),
            text: ShellText {
                skip: t("layout-skip"),
                nav_label: t("layout-nav"),
                sign_out: t("layout-sign-out"),
                signed_in_as: t("layout-signed-in-as"),
                product: t("product"),
            },
        }
    }
}

/// What the signed-out frame (`templates/plain.html`) shows around a page: sign-in,
/// second factor, recovery codes, registration, notices.
#[derive(Debug, Clone)]
pub struct PlainShell {
    /// `<html lang>`.
    pub lang: &'static str,
    /// The page's language, for templates.
    pub i18n: Lang,
    /// The page's title (also the `<h1>`).
    pub title: String,
}

impl PlainShell {
    /// The frame in `lang`, titled by the message `title_id`.
    pub fn new(lang: Lang, title_id: &str) -> Self {
        Self {
            lang: lang.tag(),
            i18n: lang,
            title: lang.t(title_id),
        }
    }
}

/// Sets the page headers on a response: the node's one set (`medmesh_server::web::secure_page`).
pub use medmesh_server::web::secure_page as secure;

/// Renders a page with the portal's headers.
pub fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => secure((status, Html(html)).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "a page template failed to render");
            secure(StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
    }
}

/// Why a page cannot be shown, as the browser is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Nothing here for this user (also what a refused record looks like).
    NotFound,
    /// The page is for another kind of account.
    WrongAudience,
    /// The node cannot answer now.
    Unavailable,
    /// A form without the session's CSRF token (a stale page, or another site's form).
    Forbidden,
    /// A form with a value the page does not offer.
    BadInput,
}

#[derive(Template)]
#[template(path = "problem.html")]
struct ProblemPage {
    lang: &'static str,
    title: String,
    detail: String,
    home: String,
}

/// The page for a [`Problem`].
pub fn problem(lang: Lang, p: Problem) -> Response {
    let (status, title, detail) = match p {
        Problem::NotFound => (
            StatusCode::NOT_FOUND,
            "problem-not-found",
            "problem-not-found-detail",
        ),
        Problem::WrongAudience => (
            StatusCode::FORBIDDEN,
            "problem-wrong-audience",
            "problem-wrong-audience-detail",
        ),
        Problem::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "problem-unavailable",
            "problem-unavailable-detail",
        ),
        Problem::Forbidden => (
            StatusCode::FORBIDDEN,
            "problem-forbidden",
            "problem-forbidden-detail",
        ),
        Problem::BadInput => (
            StatusCode::BAD_REQUEST,
            "problem-bad-input",
            "problem-bad-input-detail",
        ),
    };
    render(
        status,
        &ProblemPage {
            lang: lang.tag(),
            title: lang.t(title),
            detail: lang.t(detail),
            home: lang.t("nav-home"),
        },
    )
}

/// A record-service failure as a page: a refusal looks like "not found" (a patient who
/// changes an id learns nothing; the attempt is in the audit log), the rest is logged and
/// shown as unavailable.
pub fn record_problem(lang: Lang, e: &RecordError) -> Response {
    match e {
        RecordError::Forbidden | RecordError::NotFound | RecordError::Gone { .. } => {
            problem(lang, Problem::NotFound)
        }
        // A value the page passed on that the record service would not take.
        RecordError::Invalid(_) | RecordError::BadRequest(_) => {
            tracing::warn!(error = %e, "a page's request was refused as invalid");
            problem(lang, Problem::BadInput)
        }
        other => {
            tracing::error!(error = %other, "a page could not read the record");
            problem(lang, Problem::Unavailable)
        }
    }
}
