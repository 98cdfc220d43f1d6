//! The audit log API: checkpoints, the log key, consistency proofs, and a patient's own log
//! with inclusion proofs. Proof formats are in `docs/audit.md`.
//!
//! Checkpoints, the key and consistency proofs hold hashes only, so they are public: anyone
//! holding an old checkpoint (a witness, a regulator) can check the log only grew. Entries
//! name who looked at whose record, so they need the PDP's [`medmesh_policy::AuditView`].

use crate::api::{ApiJson, ApiPath, ApiQuery};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use medmesh_audit_log::AuditLogError;
use medmesh_fhir::datetime::format_instant;
use medmesh_fhir::outcome::IssueType;
use medmesh_records::RecordError;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Authenticated;
use crate::response::ApiError;

impl From<AuditLogError> for ApiError {
    fn from(e: AuditLogError) -> Self {
        RecordError::from(e).into()
    }
}

fn b64_list(hashes: &[[u8; 32]]) -> Vec<String> {
    hashes.iter().map(|h| B64.encode(h)).collect()
}

fn checkpoint_text(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// `GET /api/audit/checkpoint`: the newest signed checkpoint (C2SP format, text/plain).
pub async fn latest_checkpoint(State(state): State<AppState>) -> Result<Response, ApiError> {
    match state.audit_log.latest().await? {
        Some(c) => Ok(checkpoint_text(c.text)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            "no checkpoint has been signed yet",
        )),
    }
}

/// `POST /api/audit/checkpoint`: signs a checkpoint of the current tree now (any
/// authenticated caller; it is idempotent and cheap) and returns it.
pub async fn sign_checkpoint(
    State(state): State<AppState>,
    Authenticated(_ctx): Authenticated,
) -> Result<Response, ApiError> {
    match state.audit_log.checkpoint_now().await? {
        Some(c) => Ok(checkpoint_text(c.text)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            "the log is empty",
        )),
    }
}

/// `GET /api/audit/key`: the key checkpoints are signed with.
pub async fn log_key(State(state): State<AppState>) -> Response {
    let key = state.audit_log.verifier_key();
    axum::Json(json!({
        "name": key.name(),
        "algorithm": "Ed25519",
        "publicKey": B64.encode(key.public_bytes()),
        "noteVerifierKey": key.to_note_key(),
    }))
    .into_response()
}

/// `GET /api/audit/witnesses`: the witnesses the node lists (their C2SP verifier keys), the
/// quorum a client should ask for, and the newest checkpoint each cosigned.
pub async fn witnesses(State(state): State<AppState>) -> Result<Response, ApiError> {
    let policy = state.audit_log.witness_policy();
    let newest = state.audit_log.latest().await?;
    let head = match &newest {
        Some(c) => Some(
            state
                .audit_log
                .verifier_key()
                .open(&c.text)
                .map_err(|_| AuditLogError::Damaged)?,
        ),
        None => None,
    };
    let cosigned = match &head {
        Some(h) => state.audit_log.cosignatures_for(h).await?,
        None => Vec::new(),
    };
    Ok(axum::Json(json!({
        "policy": policy_json(policy),
        "witnesses": policy.witnesses.iter().map(|w| json!({
            "key": w.key.to_note_key(),
            "pushed": w.url.is_some(),
        })).collect::<Vec<_>>(),
        "checkpoint": newest.map(|c| c.text),
        "cosigned": cosigned_json(&cosigned),
    }))
    .into_response())
}

fn policy_json(policy: &medmesh_audit_log::WitnessPolicy) -> Value {
    json!({
        "keys": policy.witnesses.iter().map(|w| w.key.to_note_key()).collect::<Vec<_>>(),
        "quorum": policy.quorum,
    })
}

fn cosigned_json(cosigned: &[medmesh_audit_log::ServedCosignature]) -> Vec<Value> {
    cosigned
        .iter()
        .map(|c| json!({"checkpoint": c.checkpoint, "proof": b64_list(&c.proof)}))
        .collect()
}

/// `POST /api/audit/cosignatures` (text/plain, at most 16 KiB): a witness that pulls
/// checkpoints hands one back with its cosignature line. The node keeps the cosignatures of
/// witnesses it lists, on checkpoints it signed; no credential is needed, since a
/// cosignature proves itself. Answers the names kept, or 400.
pub async fn post_cosignatures(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let note = std::str::from_utf8(&body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Invalid,
            "the body is not a checkpoint",
        )
    })?;
    let kept = state.audit_log.accept_cosigned(note).await?;
    Ok(axum::Json(json!({"kept": kept})).into_response())
}

/// Query of `GET /api/audit/consistency`.
#[derive(Debug, Deserialize)]
pub struct ConsistencyQuery {
    from: u64,
    to: Option<u64>,
}

/// `GET /api/audit/consistency?from=N[&to=M]`: the RFC 9162 consistency proof from tree
/// size N to M (default: the newest checkpoint's size).
pub async fn consistency(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> Result<Response, ApiError> {
    let latest = state.audit_log.latest().await?;
    let to = match (q.to, &latest) {
        (Some(t), _) => t,
        (None, Some(c)) => c.size,
        (None, None) => return Err(AuditLogError::OutOfRange.into()),
    };
    let proof = state.audit_log.consistency_proof(q.from, to).await?;
    Ok(axum::Json(json!({
        "from": q.from,
        "to": to,
        "proof": b64_list(&proof),
        "checkpoint": latest.filter(|c| c.size == to).map(|c| c.text),
    }))
    .into_response())
}

/// Query of `GET /api/audit/entries/{index}/proof`.
#[derive(Debug, Deserialize)]
pub struct InclusionQuery {
    size: Option<u64>,
}

/// `GET /api/audit/entries/{index}/proof[?size=M]`: node operators only; the inclusion proof
/// of any entry.
pub async fn entry_proof(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(index): ApiPath<u64>,
    ApiQuery(q): ApiQuery<InclusionQuery>,
) -> Result<Response, ApiError> {
    state.records.audit_view(&ctx, None).map_err(hidden)?;
    let checkpoint = match q.size {
        Some(s) => state.audit_log.checkpoint_at(s).await?,
        None => state.audit_log.checkpoint_now().await?,
    }
    .ok_or(AuditLogError::OutOfRange)?;
    let proof = state
        .audit_log
        .inclusion_proof(index, checkpoint.size)
        .await?;
    Ok(axum::Json(json!({
        "index": index,
        "size": checkpoint.size,
        "proof": b64_list(&proof),
        "checkpoint": checkpoint.text,
    }))
    .into_response())
}

/// A refusal of oversight data answers as if there were nothing there, so a caller cannot
/// learn which patients exist.
fn hidden(e: RecordError) -> ApiError {
    match e {
        RecordError::Forbidden => not_found(),
        other => other.into(),
    }
}

fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        IssueType::NotFound,
        "no such patient log",
    )
}

/// Query of `GET /api/patients/{id}/audit`.
#[derive(Debug, Deserialize)]
pub struct PatientLogQuery {
    before: Option<u64>,
    #[serde(rename = "_count")]
    count: Option<u32>,
    /// Pins the checkpoint (its tree size) that the page's proofs are against: a client
    /// reads the later pages of a log against the first page's checkpoint.
    checkpoint: Option<u64>,
}

/// `GET /api/patients/{id}/audit`: who accessed this patient's record, when, why and on
/// what basis, newest first, each entry with its exact leaf bytes and an inclusion proof
/// against the returned checkpoint. The patient themselves, or node operators.
pub async fn patient_log(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
    ApiQuery(q): ApiQuery<PatientLogQuery>,
) -> Result<Response, ApiError> {
    let count = q.count.unwrap_or(50).clamp(1, 500);
    let log = state
        .audit_log
        .read_patient_log(
            &state.records,
            &ctx,
            &patient,
            q.before,
            count,
            q.checkpoint,
        )
        .await
        .map_err(hidden)?;
    let Some(log) = log else {
        return Ok(axum::Json(json!({"entries": []})).into_response());
    };
    let entries: Vec<Value> = log
        .entries
        .iter()
        .map(|e| {
            json!({
                "index": e.index,
                "leaf": B64.encode(&e.leaf),
                "proof": b64_list(&e.proof),
                "breakGlass": e.entry.is_break_glass(),
                "entry": e.entry,
                "auditEvent": e.entry.to_audit_event(&format_instant(e.entry.time_micros)),
            })
        })
        .collect();
    let next = log
        .entries
        .last()
        .filter(|_| log.entries.len() as u32 == count)
        .map(|e| e.index);
    Ok(axum::Json(json!({
        "patient": patient,
        "checkpoint": log.checkpoint.text,
        "treeSize": log.head.size,
        "rootHash": B64.encode(log.head.root),
        "map": log.map.as_ref().map(map_proof_json),
        // With the map proof (first page): whom a client should ask for, and what they
        // cosigned, each with a consistency proof to this checkpoint.
        "witnesses": log.map.as_ref().map(|_| json!({
            "policy": policy_json(state.audit_log.witness_policy()),
            "cosigned": cosigned_json(&log.cosignatures),
        })),
        "entries": entries,
        "nextBefore": next,
    }))
    .into_response())
}

/// A patient's map proof as the API shows it: the key, the head (`null` when the patient
/// has no entry), the bucket's other members as `[key, value hash]`, and the 16 siblings,
/// bucket level first; every hash base64.
fn map_proof_json(p: &medmesh_audit::map::MapProof) -> Value {
    json!({
        "key": B64.encode(p.key.0),
        "head": p.head,
        "others": p.others.iter().map(|(k, v)| [B64.encode(k.0), B64.encode(v)]).collect::<Vec<_>>(),
        "siblings": b64_list(&p.siblings),
    })
}

/// Body of `POST /api/patients/{id}/break-glass`.
#[derive(Debug, Deserialize)]
pub struct BreakGlassRequest {
    reason: String,
}

/// `POST /api/patients/{id}/break-glass` `{"reason": "..."}`: a verified practitioner with no
/// care relationship declares an emergency. Answers 201 with the access's id and end.
pub async fn break_glass(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
    ApiJson(body): ApiJson<BreakGlassRequest>,
) -> Result<Response, ApiError> {
    let edge = state
        .trust
        .declare_break_glass(&ctx, &patient, &body.reason)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "id": edge.source,
            "patient": edge.patient,
            "practitioner": edge.principal,
            "until": edge.until.map(format_instant),
        })),
    )
        .into_response())
}

/// `POST /api/referrals/{task}/accept`: the practitioner a referral Task names as owner
/// accepts it, which opens the patient's record to them under the patient's consents.
pub async fn accept_referral(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(task): ApiPath<String>,
) -> Result<Response, ApiError> {
    state.trust.accept_referral(&ctx, &task).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/patients/{id}/access`: who can see this patient's data and why: every edge of
/// the trust graph to them (care team, GP, referral, encounter, consent, sharing rule,
/// break-glass), with its source resource and period. The patient, or node operators.
pub async fn access_map(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
) -> Result<Response, ApiError> {
    let view = state
        .records
        .audit_view(&ctx, Some(&patient))
        .map_err(hidden)?;
    let lines: Vec<Value> = state
        .trust
        .access_map(&view)
        .await?
        .into_iter()
        .map(|l| {
            let e = l.edge;
            json!({
                "who": e.principal,
                "why": e.kind,
                "source": e.source,
                "since": (e.since > 0).then(|| format_instant(e.since)),
                "until": e.until.map(format_instant),
                "active": l.active,
                // A break-glass reason is for reviewers; the referral detail names the
                // referring request.
                "detail": if e.kind == medmesh_policy::access::EdgeKind::Referral { e.detail } else { None },
            })
        })
        .collect();
    Ok(axum::Json(json!({"patient": patient, "access": lines})).into_response())
}

/// `GET /api/break-glass`: the review queue of emergency accesses, newest first, with the
/// declared reasons. Org admins and node operators.
pub async fn break_glass_queue(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
) -> Result<Response, ApiError> {
    let right = state.records.review_right(&ctx).map_err(hidden)?;
    let items: Vec<Value> = state
        .trust
        .break_glass_queue(&right, 0)
        .await?
        .into_iter()
        .map(|e| {
            json!({
                "id": e.source,
                "patient": e.patient,
                "practitioner": e.principal,
                "declared": format_instant(e.since),
                "until": e.until.map(format_instant),
                "reason": e.detail,
            })
        })
        .collect();
    Ok(axum::Json(json!({"breakGlass": items})).into_response())
}

/// A notification as the JSON API shows it.
fn notification_json(n: &medmesh_store::Notification) -> Value {
    json!({"id": n.id, "kind": n.kind, "message": n.message,
           "created": format_instant(n.created_micros), "read": n.read_micros.is_some()})
}

/// `GET /api/patients/{id}/notifications`: the patient's notifications, newest first.
pub async fn notifications(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
) -> Result<Response, ApiError> {
    let view = state
        .records
        .audit_view(&ctx, Some(&patient))
        .map_err(hidden)?;
    let items: Vec<Value> = state
        .trust
        .notifications(&view)
        .await?
        .iter()
        .map(notification_json)
        .collect();
    Ok(axum::Json(json!({"notifications": items})).into_response())
}

/// `GET /api/account/inbox`: a staff account's own notifications (booking requests,
/// cancellations), newest first; patients have theirs under their record.
pub async fn staff_inbox(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
) -> Result<Response, ApiError> {
    let inbox = state.records.staff_inbox(&ctx).map_err(hidden)?;
    let items: Vec<Value> = state
        .trust
        .staff_notifications(&inbox)
        .await?
        .iter()
        .map(notification_json)
        .collect();
    Ok(axum::Json(json!({"notifications": items})).into_response())
}

/// `POST /api/account/inbox/{nid}/read`: a staff account marks one of its own
/// notifications read (204); anyone else's answers 404.
pub async fn mark_staff_notification_read(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let inbox = state.records.staff_inbox(&ctx).map_err(hidden)?;
    state
        .trust
        .mark_staff_notification_read(&inbox, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/patients/{id}/notifications/{nid}/read`: the patient marks a notification read
/// (204). Only the patient themself; anyone else gets 404.
pub async fn mark_notification_read(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath((patient, id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let inbox = state.records.inbox_owner(&ctx, &patient).map_err(hidden)?;
    state.trust.mark_notification_read(&inbox, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
