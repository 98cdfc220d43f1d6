//! Browser login: the sign-in pages (password, then TOTP), sessions with HttpOnly, Secure,
//! SameSite cookies and CSRF tokens, session listing, logout, registration and invitations.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use medmesh_identity::IdentityError;
use medmesh_identity::accounts::Session;
use subtle_eq::ct_eq;

use crate::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "medmesh_session";
/// The pre-login CSRF cookie (double-submit, so a login form cannot be posted cross-site).
pub const LOGIN_CSRF_COOKIE: &str = "medmesh_login_csrf";

mod subtle_eq {
    /// Constant-time string comparison for CSRF tokens.
    pub fn ct_eq(a: &str, b: &str) -> bool {
        a.len() == b.len()
            && a.bytes()
                .zip(b.bytes())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0
    }
}

/// A cookie from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` header on `/`: HttpOnly, Secure, SameSite=Lax.
pub fn set_cookie(name: &str, value: &str, max_age: i64) -> (header::HeaderName, HeaderValue) {
    set_cookie_at(name, value, "/", max_age)
}

/// A `Set-Cookie` header: HttpOnly, Secure, SameSite=Lax, on `path`.
pub fn set_cookie_at(
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
) -> (header::HeaderName, HeaderValue) {
    let v =
        format!("{name}={value}; Path={path}; HttpOnly; Secure; SameSite=Lax; Max-Age={max_age}");
    (
        header::SET_COOKIE,
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("")),
    )
}

/// The Content-Security-Policy of every page the node serves (these and the portal's):
/// scripts, styles, images and fetches from the node only, no inline script or style, no
/// plugins, no framing, forms posting back to the node only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; \
    manifest-src 'self'; worker-src 'self'; frame-src 'self' blob:; object-src 'none'; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Sets the headers every page carries: the CSP, no framing, no caching (pages may hold
/// health data or one-time secrets), no referrer leaving the node, no type sniffing.
pub fn secure_page(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

pub(crate) fn page<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(html) => secure_page((status, Html(html)).into_response()),
        Err(_) => secure_page(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
}

/// A plain page with a title and a message, in English, with nothing to translate it by
/// (a [`Notice`] says what it means to a layer that can: [`notice`]).
pub fn message(status: StatusCode, title: &str, message: &str) -> Response {
    page(status, &MessagePage { title, message })
}

/// What a notice page of the node's own (a failed external sign-in, an app's invalid
/// request, a stale form) says, by message id, carried in the response's extensions so that
/// a layer with message catalogs (the portal's, [`NoticeRenderer`]) can say it in the
/// reader's language. The page's English body stays as it is when there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The message id: the catalogs hold `notice-<id>-title` and `notice-<id>`.
    pub id: &'static str,
    /// The message's arguments (`seconds` for a throttled sign-in, `detail` for an app's
    /// invalid request), safe to show.
    pub args: Vec<(&'static str, String)>,
}

/// Renders a [`Notice`] as a whole page for the request whose headers are given (the
/// language is theirs to read), or `None` to keep the English page.
pub type NoticeRenderer = fn(&HeaderMap, &Notice) -> Option<String>;

/// Where the node answers with notices: sign-in (external too), registration and the
/// authorization server. The notice layer looks at these paths' answers only, so the FHIR
/// API pays nothing for it; a notice given on another path stays in English.
pub const NOTICE_PATHS: &[&str] = &["/login", "/register", "/oauth/"];

/// Every notice id the node's own pages use, for the catalogs to be checked against
/// (`medmesh-portal`'s catalog test); the English words stay at each call of [`notice`].
pub const NOTICES: &[&str] = &[
    "stale-form",
    "external-failed",
    "external-unknown",
    "external-expired",
    "external-mismatch",
    "external-cancelled",
    "external-no-role",
    "app-request-invalid",
    "app-request-lost",
    "identity-wrong-credentials",
    "identity-wrong-code",
    "identity-throttled",
    "identity-invalid",
    "identity-taken",
    "identity-already-linked",
    "identity-refused",
    "identity-failed",
];

/// [`message`], marked with the [`Notice`] `id` (one of [`NOTICES`]) and its arguments.
pub fn notice(
    status: StatusCode,
    id: &'static str,
    args: Vec<(&'static str, String)>,
    title: &str,
    text: &str,
) -> Response {
    debug_assert!(NOTICES.contains(&id), "an unlisted notice id: {id}");
    let mut r = message(status, title, text);
    r.extensions_mut().insert(Notice { id, args });
    r
}

/// A failure as the HTML pages tell it: a status, a title and a message safe to show, on
/// the node's message page, marked with its [`Notice`]. The JSON API's counterpart is
/// [`crate::response::ApiError`]; the OAuth endpoints' is [`crate::oauth::OAuthError`].
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    notice: Notice,
    detail: String,
    retry_after: Option<i64>,
}

impl From<IdentityError> for PageError {
    fn from(e: IdentityError) -> Self {
        let status = crate::response::identity_status(&e);
        if let IdentityError::Store(inner) = &e {
            tracing::error!(error = %inner, "identity store failure");
        }
        // Identity messages are written to be shown: no secrets, no PHI.
        let detail = e.to_string();
        let (id, args) = match &e {
            IdentityError::BadCredentials => ("identity-wrong-credentials", Vec::new()),
            IdentityError::BadSecondFactor => ("identity-wrong-code", Vec::new()),
            IdentityError::Throttled(wait) => (
                "identity-throttled",
                vec![("seconds", wait.max(&1).to_string())],
            ),
            IdentityError::WeakPassword(_) | IdentityError::InvalidRequest(_) => {
                ("identity-invalid", vec![("detail", detail.clone())])
            }
            IdentityError::UsernameTaken => ("identity-taken", Vec::new()),
            IdentityError::AlreadyLinked => ("identity-already-linked", Vec::new()),
            IdentityError::Store(_) | IdentityError::Internal => ("identity-failed", Vec::new()),
            _ => ("identity-refused", vec![("detail", detail.clone())]),
        };
        Self {
            status,
            notice: Notice { id, args },
            detail,
            retry_after: match e {
                IdentityError::Throttled(wait) => Some(wait.max(1)),
                _ => None,
            },
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let mut r = notice(
            self.status,
            self.notice.id,
            self.notice.args,
            "Something went wrong",
            &self.detail,
        );
        if let Some(wait) = self.retry_after {
            crate::response::set_header(
                r.headers_mut(),
                axum::http::header::RETRY_AFTER,
                &wait.to_string(),
            );
        }
        r
    }
}

/// A throttled answer says when to come back (RFC 9110 `Retry-After`, in seconds).
pub fn retry_after(e: &IdentityError, response: &mut Response) {
    if let IdentityError::Throttled(wait) = e {
        crate::response::set_header(
            response.headers_mut(),
            axum::http::header::RETRY_AFTER,
            &(*wait).max(1).to_string(),
        );
    }
}

/// The peer's IP address (the socket's, never a spoofable forwarding header).
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(peer_ip(parts).unwrap_or_default()))
    }
}

/// A signed-in browser user. Extracting it fails with a redirect to the login page.
pub struct SignedIn(pub Session);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let login = || {
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let mut u = url::form_urlencoded::Serializer::new(String::new());
            u.append_pair("next", next);
            Redirect::to(&format!("/login?{}", u.finish())).into_response()
        };
        let c = cookie(&parts.headers, SESSION_COOKIE).ok_or_else(login)?;
        state
            .identity
            .session(&c)
            .await
            .map(Self)
            .map_err(|_| login())
    }
}

/// Whether a form's CSRF token is the session's (compared in constant time).
pub fn csrf_matches(session_token: &str, form_token: Option<&str>) -> bool {
    form_token.is_some_and(|t| ct_eq(t, session_token))
}

/// Checks a form's CSRF token against the session's: `None` when it matches, else the 403
/// page to answer with.
pub fn csrf_refusal(session: &Session, form_token: Option<&str>) -> Option<Response> {
    match form_token {
        Some(t) if ct_eq(t, &session.csrf) => None,
        _ => Some(notice(
            StatusCode::FORBIDDEN,
            "stale-form",
            Vec::new(),
            "Request refused",
            "The form was stale or did not come from this site. Go back, reload and try again.",
        )),
    }
}

/// Whether a JSON call carries the session's CSRF token in `X-CSRF-Token` (compared in
/// constant time). The JSON API answers a mismatch with [`ApiError::csrf_required`].
///
/// [`ApiError::csrf_required`]: crate::response::ApiError::csrf_required
pub fn header_csrf_matches(session: &Session, headers: &HeaderMap) -> bool {
    headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| ct_eq(t, &session.csrf))
}

/// The browser's `User-Agent`, as the sessions page lists it (empty when absent).
pub fn user_agent(headers: &HeaderMap) -> &str {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The peer's IP address: the socket's, never a spoofable forwarding header.
pub fn peer_ip(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

/// Checks a pre-session form's token against the login CSRF cookie (double submit).
pub fn login_csrf_refusal(headers: &HeaderMap, form_token: &str) -> Option<Response> {
    let pre = cookie(headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if !pre.is_empty() && ct_eq(&pre, form_token) {
        return None;
    }
    Some(notice(
        StatusCode::FORBIDDEN,
        "stale-form",
        Vec::new(),
        "Request refused",
        "The form was stale or did not come from this site. Go back, reload and try again.",
    ))
}

/// 429 while throttled, else 401: a failed login step.
pub fn login_failure_status(e: &IdentityError) -> StatusCode {
    if matches!(e, IdentityError::Throttled(_)) {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::UNAUTHORIZED
    }
}

/// Only local paths may follow a login, never another site.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        // The portal's home, which sends each role to its own start page.
        _ => "/home".into(),
    }
}

/// A PDF to show in the browser (`inline`, saved as `filename`), never cached: every PDF the
/// node serves is someone's record.
pub fn pdf(bytes: Vec<u8>, filename: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/pdf"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&format!("inline; filename=\"{filename}\""))
                    .unwrap_or_else(|_| HeaderValue::from_static("inline")),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// The QR code of `uri` as an SVG document (`None` if it is too long to encode).
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build(),
    )
}

/// Audits a login step. The actor is the account id once known, else `anonymous` (a
/// username may identify a patient, so it is never logged). A failure to write the entry is
/// logged; the login page still answers, since no clinical data is at stake.
pub async fn audit_login(
    state: &AppState,
    headers: &HeaderMap,
    ip: &str,
    step: &str,
    cookie: Option<&str>,
    ok: bool,
) {
    // One session read gives both the account and its patient.
    let user = match cookie {
        Some(c) => state.identity.session(c).await.ok().map(|s| s.user),
        None => None,
    };
    let op = medmesh_kernel::OperationId::new(
        headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
    );
    let sign_in = medmesh_records::SignInEvent {
        operation_id: &op,
        subject: user.as_ref().map(|u| u.id.as_str()),
        patient: user.as_ref().and_then(|u| u.patient_id.as_deref()),
        step,
        succeeded: ok,
        source_ip: Some(ip).filter(|i| !i.is_empty()),
    };
    if let Err(err) = state.records.audit_sign_in(sign_in).await {
        tracing::error!(error = %err, "cannot audit a login");
    }
}
