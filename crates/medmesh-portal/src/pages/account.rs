//! `GET /account`: the signed-in user's own settings. The language the pages are shown in
//! (kept in the `medmesh_lang` cookie; without it, `Accept-Language` decides); two-factor
//! sign-in, which a patient may turn on (`POST /account/totp` shows the QR code and the
//! secret, `POST /account/totp/confirm` checks a first code and shows the recovery codes,
//! once) and which a clinician always has; linking a patient account to its record with the
//! one-time code a practitioner gave (`POST /account/link`); and the way to the sessions
//! page.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_identity::IdentityError;
use medmesh_server::AppState;
use serde::Deserialize;

use crate::i18n::{LANGUAGES, Lang};
use crate::layout::{Problem, Shell, problem, render};
use crate::pages::csrf_guard;
use crate::viewer::{Audience, LANG_COOKIE, Viewer};

/// What the two-factor part of the page shows.
pub enum TwoFactor {
    /// Off; a button turns it on.
    Off,
    /// Enrolment started: the QR code (SVG) and the `otpauth://` URI to type instead.
    Enrolling {
        /// The QR code.
        qr_svg: String,
        /// The URI.
        uri: String,
    },
    /// The first code was wrong: the secret is not shown again; start again for a new one,
    /// or try another code.
    WrongCode,
    /// Just turned on: the recovery codes, shown once.
    Recovery(Vec<String>),
    /// On.
    On,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    shell: Shell,
    languages: Vec<(&'static str, String, bool)>,
    two_factor: TwoFactor,
    can_link: bool,
    link_error: bool,
    clinician: bool,
}

fn page(viewer: &Viewer, two_factor: TwoFactor, link_error: bool) -> Response {
    let lang = viewer.lang;
    render(
        StatusCode::OK,
        &AccountPage {
            shell: Shell::new(viewer, "/account", "account-title"),
            languages: LANGUAGES
                .iter()
                .map(|(tag, _)| {
                    let l = Lang::from_tag(tag).unwrap_or(Lang::EN);
                    (*tag, l.t("language-name"), l == lang)
                })
                .collect(),
            two_factor,
            can_link: viewer.audience == Audience::Patient && viewer.account.patient_id.is_none(),
            link_error,
            clinician: viewer.audience != Audience::Patient,
        },
    )
}

fn current(viewer: &Viewer) -> TwoFactor {
    if viewer.account.totp_confirmed {
        TwoFactor::On
    } else {
        TwoFactor::Off
    }
}

/// `GET /account`.
pub async fn account(viewer: Viewer) -> Response {
    page(&viewer, current(&viewer), false)
}

/// The language form.
#[derive(Debug, Deserialize)]
pub struct LanguageForm {
    csrf: Option<String>,
    lang: String,
}

/// `POST /account/language`: keeps the choice for a year in this browser.
pub async fn language(viewer: Viewer, Form(form): Form<LanguageForm>) -> Response {
    if let Some(refused) = csrf_guard(&viewer, form.csrf.as_deref()) {
        return refused;
    }
    let Some(chosen) = Lang::from_tag(&form.lang) else {
        return problem(viewer.lang, Problem::BadInput);
    };
    let mut r = Redirect::to("/account").into_response();
    let (k, v) = medmesh_server::web::set_cookie(LANG_COOKIE, chosen.tag(), 365 * 86_400);
    r.headers_mut().append(k, v);
    r
}

/// A form with a CSRF token and maybe a code.
#[derive(Debug, Deserialize)]
pub struct CodeForm {
    csrf: Option<String>,
    #[serde(default)]
    code: String,
}

/// `POST /account/totp`: starts enrolment.
pub async fn totp_start(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<CodeForm>,
) -> Response {
    if let Some(refused) = csrf_guard(&viewer, form.csrf.as_deref()) {
        return refused;
    }
    match state.identity.start_totp(&viewer.account).await {
        Ok(uri) => {
            let qr_svg = medmesh_server::web::qr_svg(&uri).unwrap_or_default();
            page(&viewer, TwoFactor::Enrolling { qr_svg, uri }, false)
        }
        Err(IdentityError::InvalidRequest(_)) => page(&viewer, current(&viewer), false),
        Err(e) => {
            tracing::error!(error = %e, "cannot start two-factor enrolment");
            problem(viewer.lang, Problem::Unavailable)
        }
    }
}

/// `POST /account/totp/confirm`: the first code turns two-factor sign-in on.
pub async fn totp_confirm(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<CodeForm>,
) -> Response {
    if let Some(refused) = csrf_guard(&viewer, form.csrf.as_deref()) {
        return refused;
    }
    match state
        .identity
        .confirm_totp(viewer.user_id(), form.code.trim())
        .await
    {
        Ok(codes) => page(&viewer, TwoFactor::Recovery(codes), false),
        Err(IdentityError::BadSecondFactor) => page(&viewer, TwoFactor::WrongCode, false),
        Err(IdentityError::InvalidRequest(_)) => page(&viewer, current(&viewer), false),
        Err(e) => {
            tracing::error!(error = %e, "cannot confirm two-factor enrolment");
            problem(viewer.lang, Problem::Unavailable)
        }
    }
}

/// `POST /account/link`: links a patient account to its record with a one-time code.
pub async fn link(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<CodeForm>,
) -> Response {
    if let Some(refused) = csrf_guard(&viewer, form.csrf.as_deref()) {
        return refused;
    }
    match state
        .identity
        .link_patient(&viewer.account, form.code.trim())
        .await
    {
        Ok(_) => Redirect::to("/home").into_response(),
        Err(
            IdentityError::InvalidGrant | IdentityError::AlreadyLinked | IdentityError::Forbidden,
        ) => page(&viewer, current(&viewer), true),
        Err(e) => {
            tracing::error!(error = %e, "cannot link an account to its record");
            problem(viewer.lang, Problem::Unavailable)
        }
    }
}
