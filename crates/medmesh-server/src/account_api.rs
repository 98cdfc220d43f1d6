//! The account JSON API the node's own pages call with the session cookie and
//! `X-CSRF-Token`: who is signed in, invitations, linking a patient record, verifying
//! practitioners, two-factor sign-in and the portal's EHR launch. Every answer is JSON,
//! failures included ([`ApiError`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::api::{ApiJson, ApiPath, ApiSession, SessionForCsrf};
use crate::response::ApiError;

/// `GET /api/account`: who is signed in, and the CSRF token for API calls.
pub async fn account(SessionForCsrf(s): SessionForCsrf) -> Response {
    axum::Json(json!({
        "id": s.user.id,
        "username": s.user.username,
        "role": s.user.role,
        "verification": s.user.verification,
        "patient": s.user.patient_id,
        "practitioner": s.user.practitioner_id,
        "csrf": s.csrf,
    }))
    .into_response()
}

/// Body of `POST /api/invitations`.
#[derive(Debug, Deserialize)]
pub struct InvitationRequest {
    role: String,
    patient: Option<String>,
    practitioner: Option<String>,
}

/// `POST /api/invitations` `{"role": ..., "patient"?: ..., "practitioner"?: ...}`: an org
/// admin invites a practitioner, a practitioner invites a patient. Answers the one-time code.
pub async fn create_invitation(
    State(state): State<AppState>,
    ApiSession(s): ApiSession,
    ApiJson(body): ApiJson<InvitationRequest>,
) -> Result<Response, ApiError> {
    let role = body
        .role
        .parse()
        .map_err(|_| ApiError::bad_request("role is unknown"))?;
    let code = state
        .identity
        .invite(&s.user, role, body.patient, body.practitioner)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(json!({"code": code}))).into_response())
}

/// Body of `POST /api/account/link` and `POST /api/account/totp/confirm`.
#[derive(Debug, Deserialize)]
pub struct CodeRequest {
    code: String,
}

/// `POST /api/account/link` `{"code": ...}`: a patient links their account to their Patient
/// record with a one-time code.
pub async fn link_patient(
    State(state): State<AppState>,
    ApiSession(s): ApiSession,
    ApiJson(body): ApiJson<CodeRequest>,
) -> Result<Response, ApiError> {
    let patient = state.identity.link_patient(&s.user, &body.code).await?;
    Ok(axum::Json(json!({"patient": patient})).into_response())
}

/// Whom the signed-in account's notifications are for: its patient record's, or its own.
fn recipient(user: &medmesh_store::UserRecord) -> medmesh_notifications::Recipient {
    medmesh_notifications::Recipient::of_account(&user.id, user.patient_id.as_deref())
}

fn hub_error(e: medmesh_notifications::HubError) -> ApiError {
    match e {
        medmesh_notifications::HubError::Invalid(why) => ApiError::bad_request(why),
        other => {
            tracing::error!(error = %other, "notification settings failed");
            ApiError::internal()
        }
    }
}

fn settings_json(s: &medmesh_notifications::Settings) -> Response {
    use medmesh_notifications::Category;
    let choices: serde_json::Map<String, serde_json::Value> = Category::ALL
        .iter()
        .map(|c| {
            (
                c.as_str().to_string(),
                json!(
                    s.choices
                        .channels(*c)
                        .iter()
                        .map(|ch| ch.as_str())
                        .collect::<Vec<_>>()
                ),
            )
        })
        .collect();
    axum::Json(json!({
        "email": s.email,
        "webhook": s.webhook.as_ref().map(|w| w.url.clone()),
        "choices": choices,
        "channels": ["inbox", "email", "webhook"],
    }))
    .into_response()
}

/// `GET /api/account/notifications`: the signed-in account's choices (channels per
/// category, the defaults filled in) and e-mail address.
pub async fn notification_settings(
    State(state): State<AppState>,
    ApiSession(s): ApiSession,
) -> Result<Response, ApiError> {
    let settings = state
        .hub
        .settings(&recipient(&s.user))
        .await
        .map_err(hub_error)?;
    Ok(settings_json(&settings))
}

/// Body of `PUT /api/account/notifications`.
#[derive(Debug, Deserialize)]
pub struct NotificationSettingsRequest {
    email: Option<String>,
    #[serde(default)]
    choices: std::collections::BTreeMap<String, Vec<String>>,
}

/// `PUT /api/account/notifications` `{"email"?: ..., "choices": {"results": ["inbox",
/// "email"], ...}}`: sets them (categories left out keep their defaults).
pub async fn set_notification_settings(
    State(state): State<AppState>,
    ApiSession(s): ApiSession,
    ApiJson(body): ApiJson<NotificationSettingsRequest>,
) -> Result<Response, ApiError> {
    use medmesh_notifications::{Category, Channel, Choices};
    if body.choices.len() > Category::ALL.len() {
        return Err(ApiError::bad_request("too many categories"));
    }
    let mut choices = Choices::default();
    for (category, channels) in &body.choices {
        let category = Category::parse(category)
            .ok_or_else(|| ApiError::bad_request("a category is unknown"))?;
        let mut parsed = Vec::new();
        for c in channels.iter().take(4) {
            let channel =
                Channel::parse(c).ok_or_else(|| ApiError::bad_request("a channel is unknown"))?;
            if !parsed.contains(&channel) {
                parsed.push(channel);
            }
        }
        choices.0.insert(category, parsed);
    }
    let who = recipient(&s.user);
    state
        .hub
        .set_choices(&who, choices, body.email)
        .await
        .map_err(hub_error)?;
    let saved = state.hub.settings(&who).await.map_err(hub_error)?;
    Ok(settings_json(&saved))
}

/// Body of `PUT /api/account/notifications/webhook`.
#[derive(Debug, Deserialize)]
pub struct WebhookRequest {
    url: String,
}

/// `PUT /api/account/notifications/webhook` `{"url": "https://..."}`: where the signed-in
/// account's webhooks go. Answers the new signing secret, this once.
pub async fn set_webhook(
    State(state): State<AppState>,
    ApiSession(s): ApiSession,
    ApiJson(body): ApiJson<WebhookRequest>,
) -> Result<Response, ApiError> {
    let secret = state
        .hub
        .set_webhook(&recipient(&s.user), &body.url)
        .await
        .map_err(hub_error)?;
    Ok(axum::Json(json!({"url": body.url.trim(), "secret": secret})).into_response())
}

/// `DELETE /api/account/notifications/webhook`: no more webhooks.
pub async fn remove_webhook(
    State(state): State<AppState>,
    ApiSession(s): ApiSession,
) -> Result<Response, ApiError> {
    state
        .hub
        .remove_webhook(&recipient(&s.user))
        .await
        .map_err(hub_error)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Body of `POST /api/users/{id}/verification`.
#[derive(Debug, Deserialize)]
pub struct VerificationRequest {
    status: String,
}

/// `POST /api/users/{id}/verification` `{"status": "verified" | "suspended" |
/// "unverified"}`: an org admin of the practitioner's organization, or a node admin, sets a
/// practitioner's verification status.
pub async fn set_verification(
    State(state): State<AppState>,
    ApiSession(s): ApiSession,
    ApiPath(user_id): ApiPath<String>,
    ApiJson(body): ApiJson<VerificationRequest>,
) -> Result<Response, ApiError> {
    let status: medmesh_auth::Verification = body
        .status
        .parse()
        .map_err(|_| ApiError::bad_request("status must be verified, suspended or unverified"))?;
    state
        .identity
        .set_verification(&s.user, &user_id, status)
        .await?;
    Ok(axum::Json(json!({"id": user_id, "verification": status.code()})).into_response())
}

/// `POST /api/account/totp`: starts optional two-factor sign-in for a patient; answers the
/// `otpauth://` URI and its QR code (SVG).
pub async fn start_totp(
    State(state): State<AppState>,
    ApiSession(s): ApiSession,
) -> Result<Response, ApiError> {
    let uri = state.identity.start_totp(&s.user).await?;
    let qr = crate::web::qr_svg(&uri);
    Ok(axum::Json(json!({"uri": uri, "qr_svg": qr})).into_response())
}

/// `POST /api/account/totp/confirm` `{"code": "123456"}`: turns two-factor sign-in on;
/// answers the recovery codes, shown once.
pub async fn confirm_totp(
    State(state): State<AppState>,
    ApiSession(s): ApiSession,
    ApiJson(body): ApiJson<CodeRequest>,
) -> Result<Response, ApiError> {
    let codes = state.identity.confirm_totp(&s.user.id, &body.code).await?;
    Ok(axum::Json(json!({"recovery_codes": codes})).into_response())
}

/// Body of `POST /api/launch`.
#[derive(Debug, Deserialize)]
pub struct LaunchRequest {
    patient: String,
}

/// `POST /api/launch` `{"patient": "id"}`: the portal's EHR launch. Answers an opaque
/// `launch` value for the app's authorize request; it names the signed-in user and the open
/// patient, and lives five minutes.
pub async fn make_launch(
    State(state): State<AppState>,
    ApiSession(s): ApiSession,
    ApiJson(body): ApiJson<LaunchRequest>,
) -> Result<Response, ApiError> {
    let launch = state.identity.make_launch(&s.user, &body.patient)?;
    Ok(axum::Json(json!({"launch": launch})).into_response())
}
