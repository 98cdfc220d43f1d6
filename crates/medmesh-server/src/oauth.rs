//! The OAuth2 / SMART endpoints: discovery, JWKS, authorize (with the consent screen),
//! token, introspection, revocation and registration.

use std::collections::HashMap;

use axum::Form;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use medmesh_identity::IdentityError;
use medmesh_identity::oauth::{AuthorizeError, AuthorizeRequest, ClientAuth, Registration};
use serde_json::{Value, json};

use crate::AppState;
use crate::web::{SignedIn, csrf_refusal, header_csrf_matches, notice};

/// An OAuth endpoint's failure, answered in RFC 6749 section 5.2 form: `{"error",
/// "error_description"}`, never cached. The token, introspection, revocation and
/// registration endpoints answer only this way; the authorize endpoint redirects instead.
#[derive(Debug)]
pub struct OAuthError(IdentityError);

impl From<IdentityError> for OAuthError {
    fn from(e: IdentityError) -> Self {
        Self(e)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = match e {
            IdentityError::InvalidClient => StatusCode::UNAUTHORIZED,
            IdentityError::Store(_) | IdentityError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            IdentityError::Throttled(_) => StatusCode::SERVICE_UNAVAILABLE,
            IdentityError::Forbidden => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        if let IdentityError::Store(inner) = &e {
            tracing::error!(error = %inner, "identity store failure");
        }
        // Store and internal failures describe themselves generically ("storage failure").
        let mut r = (
            status,
            [(header::CACHE_CONTROL, "no-store")],
            Json(json!({"error": e.oauth_code(), "error_description": e.to_string()})),
        )
            .into_response();
        crate::web::retry_after(&e, &mut r);
        r
    }
}

/// A form body of an OAuth endpoint; one that is not `application/x-www-form-urlencoded`
/// is `invalid_request`.
pub struct OAuthForm(pub HashMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequest<S> for OAuthForm {
    type Rejection = OAuthError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, OAuthError> {
        Form::<HashMap<String, String>>::from_request(req, state)
            .await
            .map(|Form(f)| Self(f))
            .map_err(|_| {
                OAuthError(IdentityError::InvalidRequest(
                    "the body must be an application/x-www-form-urlencoded form".into(),
                ))
            })
    }
}

fn no_store(v: Value) -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(v),
    )
        .into_response()
}

/// `GET /.well-known/smart-configuration`.
pub async fn smart_configuration(State(state): State<AppState>) -> Json<Value> {
    Json(state.identity.smart_configuration())
}

/// `GET /.well-known/openid-configuration`.
pub async fn openid_configuration(State(state): State<AppState>) -> Json<Value> {
    Json(state.identity.openid_configuration())
}

/// `GET /oauth/jwks`.
pub async fn jwks(State(state): State<AppState>) -> Json<Value> {
    Json(state.identity.jwks())
}

fn endpoint(state: &AppState, path: &str) -> String {
    format!(
        "{}{path}",
        state.identity.config().issuer.trim_end_matches('/')
    )
}

/// An invalid authorization request as the browser sees it: a page when the redirect URI
/// cannot be trusted, else a redirect to the client with the error (RFC 6749 4.1.2.1).
pub fn authorize_failure(e: AuthorizeError) -> Response {
    match e {
        AuthorizeError::Page(m) => notice(
            StatusCode::BAD_REQUEST,
            "app-request-invalid",
            vec![("detail", m.clone())],
            "This app's request is invalid",
            &m,
        ),
        AuthorizeError::Redirect {
            redirect_uri,
            error,
            description,
            state,
        } => {
            let Ok(mut u) = url::Url::parse(&redirect_uri) else {
                return notice(
                    StatusCode::BAD_REQUEST,
                    "app-request-invalid",
                    vec![("detail", "bad redirect URI".into())],
                    "This app's request is invalid",
                    "bad redirect URI",
                );
            };
            u.query_pairs_mut()
                .append_pair("error", error)
                .append_pair("error_description", &description);
            if let Some(s) = state {
                u.query_pairs_mut().append_pair("state", &s);
            }
            Redirect::to(u.as_str()).into_response()
        }
    }
}

/// The authorization request's parameters, carried through the consent form unchanged.
pub fn encode_request(params: &HashMap<String, String>) -> String {
    let v = serde_json::to_vec(params).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

fn decode_request(s: &str) -> Option<HashMap<String, String>> {
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    serde_json::from_slice(&b).ok()
}

/// Validates an authorization request (the client, its redirect URI, PKCE, scopes and
/// audience); a failure is already the answer to give.
///
/// # Errors
/// The page or redirect [`authorize_failure`] makes.
pub async fn validated(
    state: &AppState,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<AuthorizeRequest, Response> {
    let fhir_base = state.fhir_base(headers);
    state
        .identity
        .authorize_request(params, &fhir_base)
        .await
        .map_err(authorize_failure)
}

/// `POST /oauth/authorize`: the consent decision. Scopes arrive as repeated `scope` fields.
pub async fn authorize_decision(
    State(state): State<AppState>,
    headers: HeaderMap,
    SignedIn(session): SignedIn,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let one = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if let Some(r) = csrf_refusal(&session, one("csrf").as_deref()) {
        return r;
    }
    let Some(params) = one("request").as_deref().and_then(decode_request) else {
        return notice(
            StatusCode::BAD_REQUEST,
            "app-request-lost",
            Vec::new(),
            "This app's request is invalid",
            "the request was lost; start again from the app",
        );
    };
    let req = match validated(&state, &params, &headers).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if one("decision").as_deref() != Some("allow") {
        return authorize_failure(AuthorizeError::Redirect {
            redirect_uri: req.redirect_uri,
            error: "access_denied",
            description: "the user denied access".into(),
            state: req.state,
        });
    }
    let approved: Vec<String> = form
        .iter()
        .filter(|(n, _)| n == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let patient = one("patient").filter(|p| !p.trim().is_empty());
    match state
        .identity
        .approve(&session.user, session.auth_time, &req, &approved, patient)
        .await
    {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => authorize_failure(AuthorizeError::Redirect {
            redirect_uri: req.redirect_uri,
            error: e.oauth_code(),
            description: e.to_string(),
            state: req.state,
        }),
    }
}

fn client_auth(headers: &HeaderMap, form: &HashMap<String, String>) -> ClientAuth {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let (id, secret) = s.split_once(':')?;
            let dec = |x: &str| {
                percent_encoding::percent_decode_str(x)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            Some((dec(id), dec(secret)))
        });
    let get = |k: &str| form.get(k).filter(|v| !v.is_empty()).cloned();
    ClientAuth {
        client_id: basic
            .as_ref()
            .map(|b| b.0.clone())
            .or_else(|| get("client_id")),
        client_secret: basic.map(|b| b.1).or_else(|| get("client_secret")),
        assertion_type: get("client_assertion_type"),
        assertion: get("client_assertion"),
    }
}

/// `POST /oauth/token`.
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    OAuthForm(form): OAuthForm,
) -> Result<Response, OAuthError> {
    let auth = client_auth(&headers, &form);
    let t = state
        .identity
        .token(&form, &auth, &endpoint(&state, "/oauth/token"))
        .await?;
    Ok(no_store(serde_json::to_value(t).unwrap_or_default()))
}

/// `POST /oauth/introspect`.
pub async fn introspect(
    State(state): State<AppState>,
    headers: HeaderMap,
    OAuthForm(form): OAuthForm,
) -> Result<Response, OAuthError> {
    let auth = client_auth(&headers, &form);
    let token = form.get("token").cloned().unwrap_or_default();
    let v = state
        .identity
        .introspect(&token, &auth, &endpoint(&state, "/oauth/introspect"))
        .await?;
    Ok(no_store(v))
}

/// `POST /oauth/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    OAuthForm(form): OAuthForm,
) -> Result<Response, OAuthError> {
    let auth = client_auth(&headers, &form);
    let token = form.get("token").cloned().unwrap_or_default();
    state
        .identity
        .revoke(&token, &auth, &endpoint(&state, "/oauth/revoke"))
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /oauth/register` (RFC 7591): open when the node allows it, else for node admins
/// (a session, or a bearer token with `system/*` scope from `medmesh admin token`).
pub async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    signed_in: Result<SignedIn, Response>,
    reg: Result<Json<Registration>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, OAuthError> {
    let Json(reg) = reg.map_err(|_| {
        OAuthError(IdentityError::InvalidRequest(
            "the registration must be a JSON client metadata document".into(),
        ))
    })?;
    let admin_session = signed_in
        .is_ok_and(|SignedIn(s)| s.user.role == "node-admin" && header_csrf_matches(&s, &headers));
    let admin_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| state.identity.verify_access(t.trim()).ok())
        .is_some_and(|c| {
            c.role.is_none()
                && c.client_id.is_none()
                && c.scope
                    .split_whitespace()
                    .any(|s| s == "system/*.*" || s == "system/*.cruds")
        });
    if !(state.identity.config().open_client_registration || admin_session || admin_token) {
        return Err(IdentityError::Forbidden.into());
    }
    let v = state.identity.register_client(reg).await?;
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(v),
    )
        .into_response())
}
