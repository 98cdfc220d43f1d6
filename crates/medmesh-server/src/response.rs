//! FHIR responses: JSON bodies, headers, and the one mapping from errors to OperationOutcome.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use medmesh_fhir::{Issue, IssueType, operation_outcome};
use medmesh_records::{RecordError, status_of};
use serde_json::Value;

/// The FHIR JSON media type.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// A JSON response with the FHIR content type.
pub fn fhir_json(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

/// An OperationOutcome response.
pub fn outcome(status: StatusCode, issues: &[Issue]) -> Response {
    fhir_json(status, &operation_outcome(issues))
}

/// Adds a header, skipping values that are not valid header text.
pub fn set_header(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// The HTTP status of an identity failure, one table for every audience that shows one (the
/// JSON API and the pages; the OAuth endpoints answer in RFC 6749 terms instead).
pub fn identity_status(e: &medmesh_identity::IdentityError) -> StatusCode {
    use medmesh_identity::IdentityError as E;
    match e {
        E::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
        E::NotSignedIn => StatusCode::UNAUTHORIZED,
        E::Forbidden => StatusCode::FORBIDDEN,
        E::NotFound => StatusCode::NOT_FOUND,
        E::UsernameTaken | E::AlreadyLinked => StatusCode::CONFLICT,
        E::Store(_) | E::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// An error on its way to a client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    issues: Vec<Issue>,
    extra: Vec<(HeaderName, String)>,
}

impl ApiError {
    /// An error with one issue.
    pub fn new(status: StatusCode, code: IssueType, message: impl Into<String>) -> Self {
        Self {
            status,
            issues: vec![Issue::error(code, message)],
            extra: Vec::new(),
        }
    }
    /// 401 with the `WWW-Authenticate` challenge.
    pub fn unauthorized() -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            IssueType::Login,
            "a valid bearer token is required",
        );
        e.extra
            .push((header::WWW_AUTHENTICATE, "Bearer realm=\"medmesh\"".into()));
        e
    }
    /// 400 for a malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, IssueType::Invalid, message)
    }
    /// 403 for a call made with the session cookie but without the session's CSRF token.
    pub fn csrf_required() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            IssueType::Forbidden,
            "a request made with the session cookie needs the session's X-CSRF-Token",
        )
    }
    /// 500 that says nothing of its cause (the caller has logged it).
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueType::Exception,
            "internal error; see the server log for this operation id",
        )
    }
    /// Adds a header to the answer.
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: String) -> Self {
        self.extra.push((name, value));
        self
    }
}

impl From<RecordError> for ApiError {
    fn from(e: RecordError) -> Self {
        if let RecordError::Store(inner) = &e {
            // The detail goes to the log (with the request's operation id in the span), never
            // to the client.
            tracing::error!(error = %inner, "store failure");
        } else if matches!(e, RecordError::Corrupt) {
            tracing::error!("stored data failed to decode or authenticate");
        } else if let RecordError::Keys(inner) = &e {
            tracing::error!(error = %inner, "key service failure");
        } else if let RecordError::Blobs(inner) = &e {
            tracing::error!(error = %inner, "blob store failure");
        }
        let (status, issues) = status_of(&e);
        let mut out = Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            issues,
            extra: Vec::new(),
        };
        if let RecordError::Gone { version } = e {
            out.extra.push((header::ETAG, format!("W/\"{version}\"")));
        }
        out
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = outcome(self.status, &self.issues);
        for (k, v) in self.extra {
            set_header(r.headers_mut(), k, &v);
        }
        r
    }
}
