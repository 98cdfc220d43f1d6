//! Authentication: the bearer token becomes a [`RequestContext`] (the actor the PDP judges).
//!
//! Handlers cannot reach the record service without this extractor's output, so every `/fhir`
//! request is authenticated. SMART login replaces how tokens are issued, not this check.
//!
//! The node's own pages call the same API with the browser's session cookie instead of a
//! token. Such a request must also carry the session's CSRF token in `X-CSRF-Token`, whatever
//! its method, so no other site can make a signed-in browser call the API; the actor is the
//! session's account with its role's full scope ceiling (the pages are a first-party client).

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use medmesh_auth::parse_scopes;
use medmesh_kernel::{Actor, OperationId, RequestContext, VerifiedIdentity};
use tower_http::request_id::RequestId;

use crate::AppState;
use crate::response::ApiError;

/// An authenticated request.
#[derive(Debug, Clone)]
pub struct Authenticated(pub RequestContext);

/// The request's operation id (from `X-Request-Id`, generated when absent).
pub fn operation_id(parts: &Parts) -> OperationId {
    OperationId::new(
        parts
            .extensions
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or_default(),
    )
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            });
        let Some(token) = token else {
            return session_actor(parts, state).await.map(Self);
        };
        let token = token.trim();
        let mut who = match state.identity.verify_access(token) {
            Ok(claims) => VerifiedIdentity {
                subject: claims.sub,
                scopes: parse_scopes(&claims.scope),
                patient: claims.patient,
                role: claims.role.as_deref().and_then(|r| r.parse().ok()),
                clinician: None,
            },
            // Not ours: perhaps a configured external provider's access token.
            Err(_) => {
                let ext = state
                    .external
                    .api_actor(&state.identity, token)
                    .await
                    .ok_or_else(ApiError::unauthorized)?;
                VerifiedIdentity {
                    subject: ext.subject,
                    scopes: parse_scopes(&ext.scope),
                    patient: ext.patient,
                    role: ext.role,
                    clinician: None,
                }
            }
        };
        if who.role.is_some_and(medmesh_auth::Role::is_clinician) {
            who.clinician = state.identity.clinician(&who.subject).await.map_err(|e| {
                tracing::error!(error = %e, "cannot read the practitioner's account");
                ApiError::unauthorized()
            })?;
        }
        // The token was verified above, by this node or by a configured provider.
        #[allow(clippy::disallowed_methods)]
        let actor = Actor::from_verified_token(who);
        Ok(Self(context(parts, state, actor)))
    }
}

fn context(parts: &Parts, state: &AppState, actor: Actor) -> RequestContext {
    RequestContext::new(
        actor,
        operation_id(parts),
        crate::web::peer_ip(parts),
        state.base_url(parts),
    )
}

/// The actor of a request that carries the node's session cookie and the session's CSRF
/// token; 401 without a live session, 403 when the CSRF token is missing or wrong.
async fn session_actor(parts: &Parts, state: &AppState) -> Result<RequestContext, ApiError> {
    let cookie = crate::web::cookie(&parts.headers, crate::web::SESSION_COOKIE)
        .ok_or_else(ApiError::unauthorized)?;
    let session = state
        .identity
        .session(&cookie)
        .await
        .map_err(|_| ApiError::unauthorized())?;
    if !crate::web::header_csrf_matches(&session, &parts.headers) {
        return Err(ApiError::csrf_required());
    }
    session_context(parts, state, session)
        .await
        .ok_or_else(ApiError::unauthorized)
}

/// The request context of a signed-in browser session: the account's role, its ceiling of
/// scopes, its patient or practitioner link. `None` when the account is unusable (an
/// unknown role, or its practitioner record cannot be read). The caller has looked the
/// session up by its cookie; checking a form's or header's CSRF token is its business too.
pub async fn session_context(
    parts: &Parts,
    state: &AppState,
    session: medmesh_identity::accounts::Session,
) -> Option<RequestContext> {
    let user = session.user;
    let role: medmesh_auth::Role = user.role.parse().ok()?;
    let verification = user.verification.parse().unwrap_or_default();
    let clinician = if role.is_clinician() {
        match state.identity.clinician(&user.id).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the practitioner's account");
                return None;
            }
        }
    } else {
        None
    };
    // The session was looked up by its cookie.
    #[allow(clippy::disallowed_methods)]
    let actor = Actor::from_verified_session(VerifiedIdentity {
        subject: user.id,
        scopes: role.ceiling(verification),
        patient: user.patient_id,
        role: Some(role),
        clinician,
    });
    Some(context(parts, state, actor))
}

/// The request context of a private calendar feed's token (`GET /feeds/{token}.ics`): the
/// feed's owner, allowed to read and search appointments and the directory only (and, for a
/// practitioner, the patients their appointments name, as far as the PDP lets them).
/// `None` for a token that is not live, or an account that has no appointments of its own
/// (neither a patient nor a practitioner).
pub async fn feed_context(
    parts: &Parts,
    state: &AppState,
    token: &str,
) -> Result<Option<(RequestContext, medmesh_store::UserRecord, String)>, ApiError> {
    let Some((user, detail)) = state
        .identity
        .calendar_feed_owner(token)
        .await
        .map_err(|_| ApiError::internal())?
    else {
        return Ok(None);
    };
    let Ok(role) = user.role.parse::<medmesh_auth::Role>() else {
        return Ok(None);
    };
    let (context_word, types): (&str, &[&str]) = match role {
        medmesh_auth::Role::Patient => ("patient", &["Appointment", "Practitioner", "Location"]),
        medmesh_auth::Role::Practitioner => ("user", &["Appointment", "Patient", "Location"]),
        _ => return Ok(None),
    };
    let scopes = types
        .iter()
        .filter_map(|t| medmesh_auth::Scope::parse(&format!("{context_word}/{t}.rs")).ok())
        .collect();
    let clinician = if role == medmesh_auth::Role::Practitioner {
        state
            .identity
            .clinician(&user.id)
            .await
            .map_err(|_| ApiError::internal())?
    } else {
        None
    };
    // The feed's token was looked up by its digest just now.
    #[allow(clippy::disallowed_methods)]
    let actor = Actor::from_verified_feed(VerifiedIdentity {
        subject: user.id.clone(),
        scopes,
        patient: user.patient_id.clone(),
        role: Some(role),
        clinician,
    });
    Ok(Some((context(parts, state, actor), user, detail)))
}
