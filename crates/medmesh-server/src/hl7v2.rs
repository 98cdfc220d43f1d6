//! `POST /api/hl7v2`: one HL7 v2 message over HTTP (HL7's "HL7 over HTTP" profile), for
//! senders that cannot speak MLLP. The sender authenticates with Basic credentials (its
//! name and the secret `medmesh hl7 senders add --http-secret` printed), or, without a
//! secret of its own, by its address. The answer is the acknowledgement, always with 200:
//! its MSA carries the outcome.

use std::net::IpAddr;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use medmesh_interface_engine::Via;

use crate::AppState;
use crate::api::{ApiPath, ApiQuery};
use crate::auth::Authenticated;
use crate::response::ApiError;

/// HL7 over HTTP's media type for ER7 (pipe-delimited) messages.
pub const HL7_ER7: &str = "x-application/hl7-v2+er7";

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, secret) = text.split_once(':')?;
    Some((name.to_string(), secret.to_string()))
}

/// Receives one message.
pub(crate) async fn receive(
    State(state): State<AppState>,
    peer: crate::web::ClientIp,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match axum::body::to_bytes(body, state.body_limits.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                "the message is larger than this node accepts",
            )
                .into_response();
        }
    };
    if bytes.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "the body must hold one HL7 v2 message",
        )
            .into_response();
    }
    let via = Via::Http {
        peer: peer.0.parse::<IpAddr>().ok(),
        credentials: basic_credentials(&headers),
    };
    let reply = state.hl7.receive(&bytes, &via).await;
    if reply.is_empty() {
        // Enhanced mode, and MSH-15 asked for no commit acknowledgement of this outcome.
        return StatusCode::NO_CONTENT.into_response();
    }
    ([(header::CONTENT_TYPE, HL7_ER7)], reply.ack).into_response()
}

/// `GET /api/hl7v2/messages` filters (all optional).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageQuery {
    sender: Option<String>,
    #[serde(rename = "type")]
    message_type: Option<String>,
    status: Option<String>,
    control_id: Option<String>,
    /// RFC 3339.
    since: Option<String>,
    /// RFC 3339.
    until: Option<String>,
    limit: Option<u32>,
}

fn micros(rfc3339: &str) -> Result<i64, ApiError> {
    medmesh_fhir::datetime::parse_rfc3339_micros(rfc3339)
        .ok_or_else(|| ApiError::bad_request("since and until are RFC 3339 times"))
}

fn row_json(r: &medmesh_store::Hl7MessageRow) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "sender": r.sender,
        "type": r.message_type,
        "control_id": r.control_id,
        "received": medmesh_fhir::datetime::format_instant(r.received_micros),
        "status": r.status,
        "ack": r.ack_code,
        "attempts": r.attempts,
    })
}

fn engine_error(e: medmesh_interface_engine::EngineError) -> ApiError {
    match e {
        medmesh_interface_engine::EngineError::NotFound => ApiError::new(
            StatusCode::NOT_FOUND,
            medmesh_fhir::IssueType::NotFound,
            "no such message",
        ),
        other => {
            tracing::error!(error = %other, "the interface engine failed");
            ApiError::internal()
        }
    }
}

/// `GET /api/hl7v2/messages`: the message browser's list, newest first (no patient data).
/// Node admins and the operator only.
pub(crate) async fn list(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiQuery(q): ApiQuery<MessageQuery>,
) -> Result<Response, ApiError> {
    let permit = state.records.interface_messages(&ctx)?;
    let filter = medmesh_store::Hl7Filter {
        sender: q.sender,
        message_type: q.message_type,
        status: q.status,
        control_id: q.control_id,
        since: q.since.as_deref().map(micros).transpose()?,
        until: q.until.as_deref().map(micros).transpose()?,
    };
    let rows = state
        .hl7
        .list_messages(&permit, &filter, q.limit.unwrap_or(50))
        .await
        .map_err(engine_error)?;
    Ok(
        axum::Json(serde_json::json!({"messages": rows.iter().map(row_json).collect::<Vec<_>>()}))
            .into_response(),
    )
}

/// `GET /api/hl7v2/messages/{id}`: one message as received, and what it became (the
/// resources written, or the error). It names patients: node admins only, and audited.
pub(crate) async fn show(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let permit = state.records.interface_messages(&ctx)?;
    let (row, text, outcome) = state
        .hl7
        .open_message(&ctx, &permit, &id)
        .await
        .map_err(engine_error)?;
    let mut body = row_json(&row);
    body["message"] = serde_json::json!(text);
    body["outcome"] = medmesh_interface_engine::outcome_json(&outcome);
    Ok(axum::Json(body).into_response())
}

/// `POST /api/hl7v2/messages/{id}/replay`: processes a stored message again (audited).
pub(crate) async fn replay(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let permit = state.records.interface_messages(&ctx)?;
    let reply = state
        .hl7
        .replay(&ctx, &permit, &id)
        .await
        .map_err(engine_error)?;
    Ok(axum::Json(serde_json::json!({"id": id, "ack": reply.code.as_str()})).into_response())
}

/// `GET /api/hl7v2/stats`: counters per sender and channel, and the recent rate.
pub(crate) async fn stats(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
) -> Result<Response, ApiError> {
    let permit = state.records.interface_messages(&ctx)?;
    let stats = state.hl7.stats(&permit).await.map_err(engine_error)?;
    Ok(axum::Json(stats).into_response())
}
