//! Authentication: the bearer token becomes a [`RequestContext`] (the actor the PDP judges).
//!
//! Handlers cannot reach the record service without this extractor's output, so every `/fhir`
//! request is authenticated. SMART login replaces how tokens are issued, not this check.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use medmesh_auth::parse_scopes;
use medmesh_policy::Actor;
use medmesh_records::RequestContext;
use tower_http::request_id::RequestId;

use crate::AppState;
use crate::response::ApiError;

/// An authenticated request.
#[derive(Debug, Clone)]
pub struct Authenticated(pub RequestContext);

/// The request's operation id (from `X-Request-Id`, generated when absent).
pub fn operation_id(parts: &Parts) -> String {
    parts
        .extensions
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .map(str::to_string)
        .unwrap_or_default()
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
            })
            .ok_or_else(ApiError::unauthorized)?;
        let token = token.trim();
        let mut actor = match state.identity.verify_access(token) {
            Ok(claims) => Actor {
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
                Actor {
                    subject: ext.subject,
                    scopes: parse_scopes(&ext.scope),
                    patient: ext.patient,
                    role: ext.role,
                    clinician: None,
                }
            }
        };
        if actor.role == Some(medmesh_auth::Role::Practitioner) {
            actor.clinician = state
                .identity
                .clinician(&actor.subject)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "cannot read the practitioner's account");
                    ApiError::unauthorized()
                })?;
        }
        let source_ip = crate::web::peer_ip(parts);
        Ok(Self(RequestContext {
            actor,
            operation_id: operation_id(parts),
            source_ip,
            base_url: state.base_url(parts),
        }))
    }
}
