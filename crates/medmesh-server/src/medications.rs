//! Prescribing on the JSON API: `/api/prescriptions`. Extract, call
//! [`medmesh_medications::MedicationService`], render.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use medmesh_medications::status::RequestStatus;
use medmesh_medications::{Override, Prescribed, Signature};
use serde_json::{Value, json};

use crate::AppState;
use crate::api::{ApiJson, ApiPath};
use crate::auth::Authenticated;
use crate::response::ApiError;

/// The code system of a prescribing warning's key, in the OperationOutcome that answers a
/// prescription with warnings not yet overridden.
pub const WARNING_SYSTEM: &str = "https://medmesh.dev/fhir/CodeSystem/prescribing-warning";
/// At most this many overrides in one request.
const MAX_OVERRIDES: usize = 100;

/// One override: the warning's key and the prescriber's reason.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideBody {
    /// The warning's key (`allergy:<id>`, `duplicate:<id>`).
    pub warning: String,
    /// Why the prescriber goes on.
    pub reason: String,
}

/// `POST /api/prescriptions` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrescribeBody {
    /// The MedicationRequest (a draft; the requester is the caller).
    pub prescription: Value,
    /// Overrides of warnings a first attempt answered.
    #[serde(default)]
    pub overrides: Vec<OverrideBody>,
}

/// `POST /api/prescriptions`: 201 with the draft and the DetectedIssues of its overrides, or
/// 409 with an OperationOutcome of the warnings to override first (nothing written).
pub async fn prescribe(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiJson(body): ApiJson<PrescribeBody>,
) -> Result<Response, ApiError> {
    if body.overrides.len() > MAX_OVERRIDES {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_OVERRIDES} overrides"
        )));
    }
    let overrides: Vec<Override> = body
        .overrides
        .into_iter()
        .map(|o| Override {
            warning: o.warning,
            reason: o.reason,
        })
        .collect();
    match state
        .medications
        .prescribe(&ctx, body.prescription, &overrides)
        .await?
    {
        Prescribed::Written {
            prescription,
            detected_issues,
        } => Ok((
            StatusCode::CREATED,
            Json(json!({"prescription": prescription, "detectedIssues": detected_issues})),
        )
            .into_response()),
        Prescribed::NeedsOverride(warnings) => {
            let issues: Vec<Value> = warnings
                .iter()
                .map(|w| {
                    json!({
                        "severity": "warning",
                        "code": "business-rule",
                        "details": {
                            "coding": [{"system": WARNING_SYSTEM, "code": w.key}],
                            "text": w.kind,
                        },
                        "diagnostics": w.text,
                    })
                })
                .collect();
            Ok((
                StatusCode::CONFLICT,
                Json(json!({"resourceType": "OperationOutcome", "issue": issues})),
            )
                .into_response())
        }
    }
}

/// `GET /api/prescriptions/{id}/signing-text`: the exact text to sign, and the draft's version.
pub async fn signing_text(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let t = state.medications.signing_text(&ctx, &id).await?;
    Ok(Json(json!({"text": t.text, "version": t.version})).into_response())
}

/// `POST /api/prescriptions/{id}/activate` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateBody {
    /// The draft's version that was signed (refused if it changed since).
    pub version: Option<i64>,
    /// The signing time in the signed text.
    pub time: String,
    /// The Ed25519 signature, base64.
    pub signature: String,
    /// The signing key, base64.
    pub key: String,
}

/// `POST /api/prescriptions/{id}/activate`: signs a draft into an active prescription.
pub async fn activate(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ActivateBody>,
) -> Result<Response, ApiError> {
    let signed = Signature {
        time: body.time,
        signature: body.signature,
        key: body.key,
    };
    let r = state
        .medications
        .activate(&ctx, &id, body.version, &signed)
        .await?;
    Ok(Json(r).into_response())
}

/// `POST /api/prescriptions/{id}/status` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusBody {
    /// The new status (`on-hold`, `active`, `completed`, `cancelled`, `stopped`,
    /// `entered-in-error`).
    pub status: String,
    /// Why (required to hold, stop, cancel or mark in error).
    pub reason: Option<String>,
}

/// `POST /api/prescriptions/{id}/status`: one step of the lifecycle.
pub async fn status(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<StatusBody>,
) -> Result<Response, ApiError> {
    let Some(to) = RequestStatus::parse(&body.status) else {
        return Err(ApiError::bad_request(
            "status is one of draft, active, on-hold, completed, cancelled, stopped, entered-in-error",
        ));
    };
    let r = state
        .medications
        .change_status(&ctx, &id, to, body.reason.as_deref())
        .await?;
    Ok(Json(r).into_response())
}

/// `GET /api/prescriptions/{id}/signed`: the signed prescription (claims, signature, key),
/// for `medmesh verify-prescription` and the printed QR code.
pub async fn signed(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.medications.signed(&ctx, &id).await?).into_response())
}
