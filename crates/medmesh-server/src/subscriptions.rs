//! FHIR Subscriptions on the FHIR API (R4 backport, rest-hook): `Subscription` create,
//! read, search, update and delete, and `$status`, each for the caller's own
//! subscriptions. Extract, call [`medmesh_subscriptions::SubscriptionService`], render.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use medmesh_subscriptions::SubscriptionError;

use crate::AppState;
use crate::api::ApiPath;
use crate::auth::Authenticated;
use crate::handlers::{ApiResult, read_resource};
use crate::response::{ApiError, fhir_json};

impl From<SubscriptionError> for ApiError {
    fn from(e: SubscriptionError) -> Self {
        match e {
            SubscriptionError::Records(e) => e.into(),
            SubscriptionError::Hub(e) => {
                tracing::error!(error = %e, "a subscription's notification could not be queued");
                ApiError::internal()
            }
        }
    }
}

/// `POST /fhir/Subscription`: 201 with the Subscription, `requested` until its endpoint
/// takes the handshake.
pub async fn create(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    req: Request,
) -> ApiResult {
    let body = read_resource(&state, req).await?;
    let created = state.subscriptions.create(&ctx, &body).await?;
    let location = format!(
        "{}/Subscription/{}",
        ctx.base_url(),
        created["id"].as_str().unwrap_or_default()
    );
    let mut response = fhir_json(StatusCode::CREATED, &created);
    if let Ok(v) = location.parse() {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// `GET /fhir/Subscription`: the caller's subscriptions.
pub async fn search(State(state): State<AppState>, Authenticated(ctx): Authenticated) -> ApiResult {
    Ok(fhir_json(
        StatusCode::OK,
        &state.subscriptions.search(&ctx).await?,
    ))
}

/// `GET /fhir/Subscription/{id}`.
pub async fn read(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    Ok(fhir_json(
        StatusCode::OK,
        &state.subscriptions.read(&ctx, &id).await?,
    ))
}

/// `PUT /fhir/Subscription/{id}`: 200 replaced, 201 created with this id.
pub async fn update(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
    req: Request,
) -> ApiResult {
    let body = read_resource(&state, req).await?;
    let (written, created) = state.subscriptions.update(&ctx, &id, &body).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(fhir_json(status, &written))
}

/// `DELETE /fhir/Subscription/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    state.subscriptions.delete(&ctx, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /fhir/Subscription/{id}/$status`: a searchset holding its status.
pub async fn status(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    Ok(fhir_json(
        StatusCode::OK,
        &state.subscriptions.status(&ctx, &id).await?,
    ))
}
