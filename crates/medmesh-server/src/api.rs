//! The JSON API's extractors. Each rejects with [`ApiError`], so a JSON route answers JSON
//! (an OperationOutcome) whatever went wrong: a malformed body or query, a missing session,
//! a wrong CSRF token. Pages use [`crate::web::SignedIn`] instead, which redirects to the
//! login page.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use medmesh_fhir::IssueType;
use medmesh_identity::IdentityError;
use medmesh_identity::accounts::Session;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::response::ApiError;

/// A typed JSON body. Bad JSON, a missing field or a value of the wrong type is 400; a body
/// that is not JSON at all is 415; one over the size limit is 413. The serde message is not
/// passed on, since it can quote the client's values.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                IssueType::NotSupported,
                "the body must be JSON (Content-Type: application/json)",
            )),
            Err(JsonRejection::BytesRejection(r))
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    IssueType::TooLong,
                    "the body is too large",
                ))
            }
            Err(_) => Err(ApiError::bad_request(
                "the body is not valid JSON, or a required field is missing or of the wrong type",
            )),
        }
    }
}

/// A typed query string; a malformed one is 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|_: QueryRejection| {
                ApiError::bad_request("a query parameter is missing or malformed")
            })
    }
}

/// Typed path parameters; one that does not parse (a non-number index) is 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|_: PathRejection| ApiError::bad_request("a path segment is malformed"))
    }
}

/// The signed-in account behind a JSON call made by the node's own pages: the session cookie
/// and the session's CSRF token in `X-CSRF-Token`. No session is 401, a missing or wrong
/// token 403, both as JSON.
pub struct ApiSession(pub Session);

impl FromRequestParts<AppState> for ApiSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let SessionForCsrf(session) = SessionForCsrf::from_request_parts(parts, state).await?;
        if !crate::web::header_csrf_matches(&session, &parts.headers) {
            return Err(ApiError::csrf_required());
        }
        Ok(Self(session))
    }
}

/// The signed-in account for the one JSON route that hands the pages their CSRF token
/// (`GET /api/account`): the session cookie alone, since the token is what the page does
/// not have yet. Another site cannot read the answer (no CORS for cookies, `SameSite`), so
/// the token does not leak. No session is a JSON 401.
pub struct SessionForCsrf(pub Session);

impl FromRequestParts<AppState> for SessionForCsrf {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let cookie = crate::web::cookie(&parts.headers, crate::web::SESSION_COOKIE)
            .ok_or_else(not_signed_in)?;
        let session = state
            .identity
            .session(&cookie)
            .await
            .map_err(|_| not_signed_in())?;
        Ok(Self(session))
    }
}

fn not_signed_in() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        IssueType::Login,
        "sign in first: this call needs the node's session cookie",
    )
}

/// Identity failures as the JSON API tells them. Identity messages are written to be shown
/// (no secrets, no PHI); internal failures say nothing and are logged.
impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        let code = match &e {
            IdentityError::Throttled(_) => IssueType::Throttled,
            IdentityError::NotSignedIn => IssueType::Login,
            IdentityError::Forbidden => IssueType::Forbidden,
            IdentityError::NotFound => IssueType::NotFound,
            IdentityError::UsernameTaken => IssueType::Duplicate,
            IdentityError::AlreadyLinked => IssueType::Conflict,
            IdentityError::Store(inner) => {
                tracing::error!(error = %inner, "identity store failure");
                return Self::internal();
            }
            IdentityError::Internal => return Self::internal(),
            _ => IssueType::Invalid,
        };
        let status = crate::response::identity_status(&e);
        let mut out = Self::new(status, code, e.to_string());
        if let IdentityError::Throttled(wait) = e {
            out = out.with_header(axum::http::header::RETRY_AFTER, (wait.max(1)).to_string());
        }
        out
    }
}
