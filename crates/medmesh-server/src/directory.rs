//! The key directory and sealed documents' keys over HTTP:
//!
//! - `POST /api/keys` publishes one of the caller's public keys (a signed statement);
//! - `GET /api/keys?owner=Practitioner/gp` lists an owner's entries, for clients to verify;
//! - `DELETE /api/keys/{key id}` revokes one of the caller's keys;
//! - `GET /api/sealed/{binary}/keys` gives the caller's wrapped keys of a sealed document;
//! - `POST /api/sealed/{binary}/keys` shares it with another recipient key;
//! - `DELETE /api/sealed/{binary}/keys/{recipient key id}` revokes a share;
//! - `GET /api/sealed/{binary}/shares` lists who holds a key, for the document's patient.
//!
//! Handlers extract, call the record service (which asks the PDP and audits), and render.

use crate::api::{ApiJson, ApiPath, ApiQuery};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use medmesh_store::{SealedKey, UserKey};
use medmesh_vault::directory::NewKey;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::Authenticated;
use crate::response::ApiError;

fn key_json(k: &UserKey) -> Value {
    json!({
        "keyId": k.key_id,
        "owner": k.owner,
        "kind": k.kind,
        "publicKey": k.public_key,
        "time": k.statement_time,
        "signature": k.signature,
        "revoked": k.revoked_micros.is_some(),
    })
}

fn sealed_json(k: &SealedKey) -> Value {
    json!({
        "recipientKeyId": k.recipient_key_id,
        "recipient": k.recipient,
        "wrapped": k.wrapped,
        "addedBy": k.added_by,
    })
}

/// Body of `POST /api/keys`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRequest {
    kind: String,
    public_key: String,
    time: String,
    signature: String,
}

/// `POST /api/keys`.
pub async fn register_key(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiJson(req): ApiJson<KeyRequest>,
) -> Result<Response, ApiError> {
    let key = state
        .vault
        .register_key(
            &ctx,
            NewKey {
                kind: req.kind,
                public_key: req.public_key,
                time: req.time,
                signature: req.signature,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(key_json(&key))).into_response())
}

/// Query of `GET /api/keys`.
#[derive(Debug, Deserialize)]
pub struct OwnerQuery {
    owner: String,
}

/// `GET /api/keys?owner=...`: public keys, so any signed-in caller may read them.
pub async fn list_keys(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiQuery(q): ApiQuery<OwnerQuery>,
) -> Result<Response, ApiError> {
    let keys = state.vault.directory(&ctx, &q.owner).await?;
    Ok(axum::Json(json!({
        "owner": q.owner,
        "keys": keys.iter().map(key_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `DELETE /api/keys/{key id}`.
pub async fn revoke_key(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(key_id): ApiPath<String>,
) -> Result<Response, ApiError> {
    state.vault.revoke_key(&ctx, &key_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /api/sealed/{binary}/keys`.
pub async fn my_sealed_keys(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(binary): ApiPath<String>,
) -> Result<Response, ApiError> {
    let (document_key_id, keys) = state.vault.my_sealed_keys(&ctx, &binary).await?;
    Ok(axum::Json(json!({
        "document": binary,
        "documentKeyId": document_key_id,
        "keys": keys.iter().map(sealed_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `GET /api/sealed/{binary}/shares`.
pub async fn sealed_shares(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(binary): ApiPath<String>,
) -> Result<Response, ApiError> {
    let keys = state.vault.sealed_shares(&ctx, &binary).await?;
    Ok(axum::Json(json!({
        "document": binary,
        "shares": keys.iter().map(sealed_json).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// Body of `POST /api/sealed/{binary}/keys`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareRequest {
    recipient_key_id: String,
    wrapped: String,
}

/// `POST /api/sealed/{binary}/keys`.
pub async fn share_sealed(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(binary): ApiPath<String>,
    ApiJson(req): ApiJson<ShareRequest>,
) -> Result<Response, ApiError> {
    let key = state
        .vault
        .share_sealed(&ctx, &binary, &req.recipient_key_id, &req.wrapped)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(sealed_json(&key))).into_response())
}

/// `DELETE /api/sealed/{binary}/keys/{recipient key id}`.
pub async fn revoke_sealed(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath((binary, recipient)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    state.vault.revoke_sealed(&ctx, &binary, &recipient).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
