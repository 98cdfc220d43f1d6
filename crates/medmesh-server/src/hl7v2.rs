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
    ([(header::CONTENT_TYPE, HL7_ER7)], reply.ack).into_response()
}
