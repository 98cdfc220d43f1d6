//! Prescribing on the JSON API: `/api/prescriptions`. Extract, call
//! [`medmesh_medications::MedicationService`], render.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use medmesh_medications::doses::DoseStatus;
use medmesh_medications::status::RequestStatus;
use medmesh_medications::{Override, PharmacyChoice, Prescribed, Signature, Warning};
use serde_json::{Value, json};

use crate::AppState;
use crate::api::{ApiJson, ApiPath, ApiQuery};
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

/// The overrides of a request, at most [`MAX_OVERRIDES`].
fn overrides_of(list: Vec<OverrideBody>) -> Result<Vec<Override>, ApiError> {
    if list.len() > MAX_OVERRIDES {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_OVERRIDES} overrides"
        )));
    }
    Ok(list
        .into_iter()
        .map(|o| Override {
            warning: o.warning,
            reason: o.reason,
        })
        .collect())
}

/// `POST /api/prescriptions`: 201 with the draft and the DetectedIssues of its overrides, or
/// 409 with an OperationOutcome of the warnings to override first (nothing written).
pub async fn prescribe(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiJson(body): ApiJson<PrescribeBody>,
) -> Result<Response, ApiError> {
    let overrides = overrides_of(body.overrides)?;
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
        Prescribed::NeedsOverride(warnings) => Ok(warnings_response(&warnings)),
    }
}

/// 409 with an OperationOutcome of the warnings to override (nothing was written).
fn warnings_response(warnings: &[Warning]) -> Response {
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
    (
        StatusCode::CONFLICT,
        Json(json!({"resourceType": "OperationOutcome", "issue": issues})),
    )
        .into_response()
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
    /// Overrides of warnings found at signing (a draft pre-filled through the FHIR API).
    #[serde(default)]
    pub overrides: Vec<OverrideBody>,
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
    let overrides = overrides_of(body.overrides)?;
    match state
        .medications
        .activate(&ctx, &id, body.version, &signed, &overrides)
        .await?
    {
        Prescribed::Written { prescription, .. } => Ok(Json(prescription).into_response()),
        Prescribed::NeedsOverride(w) => Ok(warnings_response(&w)),
    }
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

/// `GET /api/prescriptions/{id}/pdf`: the printable prescription (English), with a QR code
/// holding the signed prescription. Not kept in caches: it names the patient.
pub async fn pdf(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let bytes = state
        .medications
        .print(
            &ctx,
            &id,
            &medmesh_medications::printable::PrintLabels::default(),
        )
        .await?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/pdf"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
            (
                axum::http::header::CONTENT_DISPOSITION,
                "inline; filename=\"prescription.pdf\"",
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `PUT /api/patients/{id}/pharmacies` body (and `GET`'s answer).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PharmaciesBody {
    /// The preferred pharmacy (`Organization/x` or `x`); absent or null removes it.
    pub preferred: Option<String>,
    /// The alternate pharmacy.
    pub alternate: Option<String>,
}

fn choice_json(c: &PharmacyChoice) -> Value {
    json!({"preferred": c.preferred, "alternate": c.alternate})
}

/// `GET /api/patients/{id}/pharmacies`.
pub async fn pharmacies(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
) -> Result<Response, ApiError> {
    let c = state.medications.pharmacies(&ctx, &patient).await?;
    Ok(Json(choice_json(&c)).into_response())
}

/// `PUT /api/patients/{id}/pharmacies`: the patient's preferred and alternate pharmacy.
pub async fn choose_pharmacies(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
    ApiJson(body): ApiJson<PharmaciesBody>,
) -> Result<Response, ApiError> {
    let c = state
        .medications
        .choose_pharmacies(
            &ctx,
            &patient,
            &PharmacyChoice {
                preferred: body.preferred,
                alternate: body.alternate,
            },
        )
        .await?;
    Ok(Json(choice_json(&c)).into_response())
}

fn remaining_json(r: &medmesh_medications::dispensing::Remaining) -> Value {
    json!({
        "fillSize": r.fill_size,
        "unit": r.unit,
        "fillsAllowed": r.fills_allowed,
        "dispensed": r.dispensed,
        "left": r.left,
        "refillsLeft": r.refills_left(),
    })
}

/// `GET /api/pharmacy/queue`: the prescriptions routed to the pharmacist's pharmacy.
pub async fn queue(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
) -> Result<Response, ApiError> {
    let items = state.medications.pharmacy_queue(&ctx).await?;
    let out: Vec<Value> = items
        .iter()
        .map(|i| json!({"prescription": i.prescription, "remaining": remaining_json(&i.remaining)}))
        .collect();
    Ok(Json(json!({"queue": out})).into_response())
}

/// `POST /api/prescriptions/{id}/dispense` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DispenseBody {
    /// How much is handed over (default: a full fill, or what is left of it).
    pub quantity: Option<f64>,
    /// Days it should last.
    pub days_supply: Option<u32>,
}

/// `POST /api/prescriptions/{id}/dispense`: 201 with the MedicationDispense.
pub async fn dispense(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DispenseBody>,
) -> Result<Response, ApiError> {
    let d = state
        .medications
        .dispense(&ctx, &id, body.quantity, body.days_supply)
        .await?;
    Ok((StatusCode::CREATED, Json(d)).into_response())
}

/// A body holding a reason.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why.
    pub reason: String,
}

/// `POST /api/prescriptions/{id}/return`: the pharmacy returns it, with a reason.
pub async fn return_prescription(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Response, ApiError> {
    let d = state
        .medications
        .return_prescription(&ctx, &id, &body.reason)
        .await?;
    Ok(Json(d).into_response())
}

/// `POST /api/prescriptions/{id}/route` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteBody {
    /// The pharmacy (`Organization/x` or `x`).
    pub pharmacy: String,
}

/// `POST /api/prescriptions/{id}/route`: sends it to a pharmacy.
pub async fn route(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RouteBody>,
) -> Result<Response, ApiError> {
    let r = state.medications.route(&ctx, &id, &body.pharmacy).await?;
    Ok(Json(r).into_response())
}

/// `POST /api/prescriptions/{id}/refill-request` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefillRequestBody {
    /// A note for the prescriber.
    pub note: Option<String>,
}

/// `POST /api/prescriptions/{id}/refill-request`: 201 with the Task.
pub async fn request_refill(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RefillRequestBody>,
) -> Result<Response, ApiError> {
    let t = state
        .medications
        .request_refill(&ctx, &id, body.note.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

/// `POST /api/refill-requests/{task}/decide` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideBody {
    /// Approve (a renewal is prescribed as a draft) or decline.
    pub approve: bool,
    /// Why (required to decline).
    pub reason: Option<String>,
    /// Refills on the renewal (default: as before).
    pub refills: Option<u32>,
    /// Overrides of the renewal's warnings.
    #[serde(default)]
    pub overrides: Vec<OverrideBody>,
}

fn task_item_json(t: &medmesh_medications::refills::MedicationTaskItem) -> Value {
    json!({"task": t.task, "prescription": t.prescription, "patient": t.patient,
        "patientName": t.patient_name, "medication": t.medication, "note": t.note,
        "asked": t.asked})
}

/// `GET /api/worklist/medications`: the caller's open refill requests and adherence
/// reviews, oldest first.
pub async fn worklist(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
) -> Result<Response, ApiError> {
    let refills = state.medications.refill_requests(&ctx).await?;
    let reviews = state.medications.adherence_reviews(&ctx).await?;
    Ok(Json(json!({
        "refillRequests": refills.iter().map(task_item_json).collect::<Vec<_>>(),
        "adherenceReviews": reviews.iter().map(task_item_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `POST /api/adherence-reviews/{task}/close` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseReviewBody {
    /// What was done.
    pub note: Option<String>,
}

/// `POST /api/adherence-reviews/{task}/close`: the review's Task, completed.
pub async fn close_review(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(task): ApiPath<String>,
    ApiJson(body): ApiJson<CloseReviewBody>,
) -> Result<Response, ApiError> {
    let task = state
        .medications
        .close_review(&ctx, &task, body.note.as_deref())
        .await?;
    Ok(Json(task).into_response())
}

/// `POST /api/refill-requests/{task}/decide`: the Task, and the renewal when approved (or
/// 409 with warnings to override first).
pub async fn decide_refill(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(task): ApiPath<String>,
    ApiJson(body): ApiJson<DecideBody>,
) -> Result<Response, ApiError> {
    let overrides = overrides_of(body.overrides)?;
    let (task, renewal) = state
        .medications
        .decide_refill(
            &ctx,
            &task,
            body.approve,
            body.reason.as_deref(),
            body.refills,
            &overrides,
        )
        .await?;
    match renewal {
        Some(Prescribed::NeedsOverride(w)) => Ok(warnings_response(&w)),
        Some(Prescribed::Written {
            prescription,
            detected_issues,
        }) => Ok(Json(
            json!({"task": task, "renewal": prescription, "detectedIssues": detected_issues}),
        )
        .into_response()),
        None => Ok(Json(json!({"task": task})).into_response()),
    }
}

/// `GET /api/patients/{id}/doses` parameters.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DayQuery {
    /// The patient's local date (`YYYY-MM-DD`; default today).
    pub date: Option<String>,
}

/// `GET /api/patients/{id}/doses?date=`: the day's doses and what was logged of each.
pub async fn doses_of_day(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
    ApiQuery(q): ApiQuery<DayQuery>,
) -> Result<Response, ApiError> {
    let day = match q.date.as_deref() {
        Some(d) => Some(
            d.parse::<jiff::civil::Date>()
                .map_err(|_| ApiError::bad_request("date is YYYY-MM-DD"))?,
        ),
        None => None,
    };
    let doses = state.medications.doses_of_day(&ctx, &patient, day).await?;
    let out: Vec<Value> = doses
        .iter()
        .map(|d| {
            json!({
                "prescription": d.prescription,
                "medication": d.medication,
                "instructions": d.instructions,
                "due": d.due.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                "logged": d.logged,
            })
        })
        .collect();
    Ok(Json(json!({"doses": out})).into_response())
}

/// `POST /api/prescriptions/{id}/doses` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoseBody {
    /// The scheduled time it is for (none for an as-needed dose).
    pub due: Option<String>,
    /// `taken`, `late` or `skipped`.
    pub status: String,
    /// When it was taken (default now).
    pub at: Option<String>,
}

/// `POST /api/prescriptions/{id}/doses`: 201 with the MedicationAdministration.
pub async fn log_dose(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<DoseBody>,
) -> Result<Response, ApiError> {
    let Some(status) = DoseStatus::parse(&body.status) else {
        return Err(ApiError::bad_request("status is taken, late or skipped"));
    };
    let a = state
        .medications
        .log_dose(&ctx, &id, body.due.as_deref(), status, body.at.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(a)).into_response())
}

fn pdc_json(p: Option<medmesh_medications::adherence::Pdc>) -> Value {
    match p {
        Some(p) => json!({"covered": p.covered, "days": p.days, "ratio": p.ratio(),
            "belowThreshold": p.below_threshold()}),
        None => Value::Null,
    }
}

/// `GET /api/patients/{id}/adherence`: each active prescription's PDC over 30 and 90 days
/// and its doses of the last 30 days.
pub async fn adherence(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
) -> Result<Response, ApiError> {
    let figures = state.medications.adherence(&ctx, &patient).await?;
    let out: Vec<Value> = figures
        .iter()
        .map(|a| {
            let d = a.doses30;
            json!({
                "prescription": a.prescription,
                "medication": a.medication,
                "pdc30": pdc_json(a.pdc30),
                "pdc90": pdc_json(a.pdc90),
                "doses30": {"due": d.due, "onTime": d.on_time, "late": d.late,
                    "skipped": d.skipped, "missing": d.missing, "onTimeRate": d.on_time_rate()},
            })
        })
        .collect();
    Ok(Json(json!({"adherence": out})).into_response())
}
