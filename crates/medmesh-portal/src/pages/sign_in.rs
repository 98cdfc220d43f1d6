//! Signing in and out, and creating an account: `GET|POST /login` (user name and password),
//! `POST /login/code` (the TOTP step, with enrolment on the first sign-in of a role that
//! requires it, and the recovery codes shown once), `POST /logout`, and
//! `GET|POST /register` (an invitation code, or self-registration where the node allows it).
//!
//! The identity service decides everything (throttling, TOTP, sessions); these pages only
//! render, in the visitor's language, in the portal's signed-out frame. Before a session
//! exists, forms are protected by the double-submit login CSRF cookie.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_identity::IdentityError;
use medmesh_identity::accounts::LoginStep;
use medmesh_server::AppState;
use medmesh_server::web::{
    ClientIp, LOGIN_CSRF_COOKIE, SESSION_COOKIE, SignedIn, audit_login, cookie, csrf_matches,
    login_csrf_refusal, login_failure_status, qr_svg, retry_after, safe_next, set_cookie,
    user_agent,
};
use serde::Deserialize;
use std::collections::HashMap;

use crate::i18n::{Arg, Lang};
use crate::layout::{PlainShell, render};
use crate::viewer::lang_of;

/// The language of a signed-out request.
pub struct VisitorLang(pub Lang);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for VisitorLang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(lang_of(parts)))
    }
}

/// A failed step in the visitor's words: no internal error text reaches the page.
fn error_text(lang: Lang, e: &IdentityError) -> String {
    match e {
        IdentityError::Throttled(wait) => lang.t_with(
            "sign-in-throttled",
            &[("seconds", Arg::Number((*wait).max(1) as f64))],
        ),
        IdentityError::BadCredentials => lang.t("sign-in-bad-credentials"),
        IdentityError::BadSecondFactor => lang.t("sign-in-bad-code"),
        IdentityError::WeakPassword(_) => lang.t("register-weak-password"),
        IdentityError::UsernameTaken => lang.t("register-taken"),
        IdentityError::InvalidGrant => lang.t("register-bad-invitation"),
        IdentityError::Forbidden => lang.t("register-closed"),
        _ => lang.t("problem-unavailable-detail"),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    shell: PlainShell,
    error: Option<String>,
    csrf: String,
    next: String,
    providers: Vec<(String, String)>,
}

fn login_page(
    state: &AppState,
    lang: Lang,
    status: StatusCode,
    error: Option<String>,
    csrf: &str,
    next: &str,
) -> Response {
    render(
        status,
        &LoginPage {
            shell: PlainShell::new(lang, "sign-in-title"),
            error,
            csrf: csrf.to_string(),
            next: next.to_string(),
            providers: state
                .login_providers()
                .into_iter()
                .map(|(id, name)| {
                    let text = lang.t_with("sign-in-with", &[("provider", Arg::Text(name))]);
                    (id, text)
                })
                .collect(),
        },
    )
}

/// `GET /login`.
pub async fn login_form(
    State(state): State<AppState>,
    VisitorLang(lang): VisitorLang,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let csrf = state.identity.new_csrf_token();
    let next = safe_next(q.get("next").map(String::as_str));
    let mut r = login_page(&state, lang, StatusCode::OK, None, &csrf, &next);
    let (k, v) = set_cookie(LOGIN_CSRF_COOKIE, &csrf, 600);
    r.headers_mut().append(k, v);
    r
}

/// The login form.
#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

#[derive(Template)]
#[template(path = "code.html")]
struct CodePage {
    shell: PlainShell,
    error: Option<String>,
    csrf: String,
    next: String,
    qr_svg: Option<String>,
    enrol_uri: String,
}

/// `POST /login`.
pub async fn login_submit(
    State(state): State<AppState>,
    VisitorLang(lang): VisitorLang,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(Some(&f.next));
    if let Some(r) = login_csrf_refusal(&headers, &f.csrf) {
        return r;
    }
    let ua = user_agent(&headers);
    match state
        .identity
        .login_password(&f.username, &f.password, &ip, ua)
        .await
    {
        Ok(LoginStep::Done { cookie }) => {
            audit_login(&state, &headers, &ip, "login", Some(&cookie), true).await;
            let mut r = Redirect::to(&next).into_response();
            let (k, v) = set_cookie(SESSION_COOKIE, &cookie, state.identity.config().session_ttl);
            r.headers_mut().append(k, v);
            r
        }
        Ok(LoginStep::NeedCode { cookie, enrol_uri }) => {
            let uri = enrol_uri.unwrap_or_default();
            let mut r = render(
                StatusCode::OK,
                &CodePage {
                    shell: PlainShell::new(lang, "code-title"),
                    error: None,
                    csrf: f.csrf.clone(),
                    next,
                    qr_svg: if uri.is_empty() { None } else { qr_svg(&uri) },
                    enrol_uri: uri,
                },
            );
            let (k, v) = set_cookie(SESSION_COOKIE, &cookie, 300);
            r.headers_mut().append(k, v);
            r
        }
        Err(e) => {
            audit_login(&state, &headers, &ip, "login", None, false).await;
            let mut r = login_page(
                &state,
                lang,
                login_failure_status(&e),
                Some(error_text(lang, &e)),
                &f.csrf,
                &next,
            );
            retry_after(&e, &mut r);
            r
        }
    }
}

/// The second-factor form.
#[derive(Deserialize)]
pub struct CodeForm {
    code: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: String,
}

#[derive(Template)]
#[template(path = "recovery.html")]
struct RecoveryPage {
    shell: PlainShell,
    codes: Vec<String>,
    next: String,
}

/// `POST /login/code`.
pub async fn login_code(
    State(state): State<AppState>,
    VisitorLang(lang): VisitorLang,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(f): Form<CodeForm>,
) -> Response {
    let next = safe_next(Some(&f.next));
    if let Some(r) = login_csrf_refusal(&headers, &f.csrf) {
        return r;
    }
    let Some(c) = cookie(&headers, SESSION_COOKIE) else {
        return Redirect::to("/login").into_response();
    };
    match state.identity.login_code(&c, &f.code, &ip).await {
        Ok(done) => {
            audit_login(
                &state,
                &headers,
                &ip,
                "login-second-factor",
                Some(&done.cookie),
                true,
            )
            .await;
            let mut r = if done.recovery_codes.is_empty() {
                Redirect::to(&next).into_response()
            } else {
                render(
                    StatusCode::OK,
                    &RecoveryPage {
                        shell: PlainShell::new(lang, "recovery-title"),
                        codes: done.recovery_codes,
                        next,
                    },
                )
            };
            let (k, v) = set_cookie(
                SESSION_COOKIE,
                &done.cookie,
                state.identity.config().session_ttl,
            );
            r.headers_mut().append(k, v);
            let (k, v) = set_cookie(LOGIN_CSRF_COOKIE, "", 0);
            r.headers_mut().append(k, v);
            r
        }
        Err(IdentityError::NotSignedIn) => Redirect::to("/login").into_response(),
        Err(e) => {
            audit_login(&state, &headers, &ip, "login-second-factor", None, false).await;
            let mut r = render(
                login_failure_status(&e),
                &CodePage {
                    shell: PlainShell::new(lang, "code-title"),
                    error: Some(error_text(lang, &e)),
                    csrf: f.csrf.clone(),
                    next,
                    qr_svg: None,
                    enrol_uri: String::new(),
                },
            );
            retry_after(&e, &mut r);
            r
        }
    }
}

#[derive(Template)]
#[template(path = "notice.html")]
struct NoticePage {
    shell: PlainShell,
    text: String,
    link: Option<(&'static str, String)>,
}

/// A notice of the node's own (`medmesh_server::web::Notice`: a failed external sign-in,
/// an app's invalid request, a stale form) as the portal says it, in the request's language,
/// with a way back to sign-in. The server's layer puts it in place of its English page.
pub fn render_notice(
    headers: &axum::http::HeaderMap,
    said: &medmesh_server::web::Notice,
) -> Option<String> {
    let lang = crate::viewer::lang_of_headers(headers);
    let args: Vec<(&str, Arg)> = said
        .args
        .iter()
        .map(|(k, v)| (*k, Arg::Text(v.clone())))
        .collect();
    NoticePage {
        shell: PlainShell::new(lang, &format!("notice-{}-title", said.id)),
        text: lang.t_with(&format!("notice-{}", said.id), &args),
        link: Some(("/login", lang.t("sign-in-again"))),
    }
    .render()
    .ok()
}

/// A signed-out page with one message.
pub fn notice(
    lang: Lang,
    status: StatusCode,
    title_id: &str,
    text_id: &str,
    link: Option<(&'static str, &str)>,
) -> Response {
    render(
        status,
        &NoticePage {
            shell: PlainShell::new(lang, title_id),
            text: lang.t(text_id),
            link: link.map(|(href, id)| (href, lang.t(id))),
        },
    )
}

/// A form holding only a CSRF token.
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /logout`: ends the session, drops its cookie and the browser's cache of pages.
pub async fn logout(
    State(state): State<AppState>,
    VisitorLang(lang): VisitorLang,
    headers: HeaderMap,
    SignedIn(s): SignedIn,
    Form(f): Form<CsrfForm>,
) -> Response {
    if !csrf_matches(&s.csrf, f.csrf.as_deref()) {
        return crate::layout::problem(lang, crate::layout::Problem::Forbidden);
    }
    if let Some(c) = cookie(&headers, SESSION_COOKIE)
        && let Err(e) = state.identity.logout(&c).await
    {
        tracing::error!(error = %e, "cannot end a session");
        return crate::layout::problem(lang, crate::layout::Problem::Unavailable);
    }
    let mut r = notice(
        lang,
        StatusCode::OK,
        "signed-out-title",
        "signed-out-text",
        Some(("/login", "sign-in-again")),
    );
    let (k, v) = set_cookie(SESSION_COOKIE, "", 0);
    r.headers_mut().append(k, v);
    // The browser drops what it cached of the pages. Not "storage": the access-log page
    // keeps there the checkpoint it verified, which must outlive a session to catch a
    // rewritten log; it holds tree hashes, not health data.
    r.headers_mut().insert(
        header::HeaderName::from_static("clear-site-data"),
        HeaderValue::from_static("\"cache\""),
    );
    r
}

#[derive(Template)]
#[template(path = "register.html")]
struct RegisterPage {
    shell: PlainShell,
    error: Option<String>,
    csrf: String,
}

/// `GET /register`.
pub async fn register_form(
    State(state): State<AppState>,
    VisitorLang(lang): VisitorLang,
) -> Response {
    let csrf = state.identity.new_csrf_token();
    let mut r = render(
        StatusCode::OK,
        &RegisterPage {
            shell: PlainShell::new(lang, "register-title"),
            error: None,
            csrf: csrf.clone(),
        },
    );
    let (k, v) = set_cookie(LOGIN_CSRF_COOKIE, &csrf, 600);
    r.headers_mut().append(k, v);
    r
}

/// The registration form.
#[derive(Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    invitation: String,
    username: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /register`: redeems an invitation, or self-registers a patient where allowed.
pub async fn register_submit(
    State(state): State<AppState>,
    VisitorLang(lang): VisitorLang,
    headers: HeaderMap,
    Form(f): Form<RegisterForm>,
) -> Response {
    if let Some(r) = login_csrf_refusal(&headers, &f.csrf) {
        return r;
    }
    let result = if f.invitation.trim().is_empty() {
        state.identity.self_register(&f.username, &f.password).await
    } else {
        state
            .identity
            .accept_invite(&f.invitation, &f.username, &f.password)
            .await
    };
    match result {
        Ok(_) => notice(
            lang,
            StatusCode::CREATED,
            "registered-title",
            "registered-text",
            Some(("/login", "sign-in-title")),
        ),
        Err(e) => {
            let status = if matches!(e, IdentityError::Store(_) | IdentityError::Internal) {
                tracing::error!(error = %e, "cannot create an account");
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::BAD_REQUEST
            };
            render(
                status,
                &RegisterPage {
                    shell: PlainShell::new(lang, "register-title"),
                    error: Some(error_text(lang, &e)),
                    csrf: f.csrf,
                },
            )
        }
    }
}
