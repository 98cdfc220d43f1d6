//! The document vault over HTTP: raw `POST /fhir/Binary`, multipart `POST /api/documents`,
//! streamed `GET /fhir/Binary/{id}`, and short-lived download links.
//!
//! Bodies stream straight through to the record service, never buffered whole. Download
//! links carry a signed ticket in the path (`/api/blobs/{ticket}`): it opens one document
//! for five minutes, so a browser can fetch without a bearer token in the URL or the logs.

use crate::api::ApiPath;
use axum::Router;
use axum::body::Body;
use axum::extract::{Multipart, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::TryStreamExt;
use medmesh_fhir::IssueType;
use medmesh_records::RequestContext;
use medmesh_vault::vault::{Download, LinkGrant, NewDocument, SignedClaims, StoredDocument};
use serde_json::json;

use crate::AppState;
use crate::auth::{Authenticated, operation_id};
use crate::response::{ApiError, fhir_json, set_header};

/// How long a download link works.
pub const LINK_SECONDS: i64 = 300;

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Whose document: `X-Security-Context: Patient/123` (FHIR's header for Binary), else the
/// patient user themself.
fn patient_from(
    ctx: &RequestContext,
    security_context: Option<String>,
) -> Result<String, ApiError> {
    match security_context {
        Some(r) => r
            .strip_prefix("Patient/")
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .map(str::to_string)
            .ok_or_else(|| ApiError::bad_request("X-Security-Context must be Patient/<id>")),
        None => ctx.actor().patient().map(str::to_string).ok_or_else(|| {
            ApiError::bad_request("say whose document this is: X-Security-Context: Patient/<id>")
        }),
    }
}

/// A signed upload's signature parts, read by `get` under `names` (signature, signing key,
/// signed-at, device): `None` without a signature, 400 when one comes without the rest.
fn signed_claims(
    get: impl Fn(&str) -> Option<String>,
    names: [&str; 4],
    kind: &str,
) -> Result<Option<SignedClaims>, ApiError> {
    let Some(signature) = get(names[0]) else {
        return Ok(None);
    };
    let need = |n: &str| {
        get(n).ok_or_else(|| ApiError::bad_request(format!("a signed upload needs the {n} {kind}")))
    };
    Ok(Some(SignedClaims {
        signature,
        public_key: need(names[1])?,
        time: need(names[2])?,
        device: need(names[3])?,
    }))
}

/// Signature claims from `X-Medmesh-Signature`, `-Signing-Key`, `-Signed-At`, `-Device`.
fn signature_from(headers: &HeaderMap) -> Result<Option<SignedClaims>, ApiError> {
    signed_claims(
        |n| header_text(headers, n),
        [
            "x-medmesh-signature",
            "x-medmesh-signing-key",
            "x-medmesh-signed-at",
            "x-medmesh-device",
        ],
        "header",
    )
}

/// Wrapped keys of a sealed upload: `key-id:wrapped` items separated by commas or white
/// space (`X-Medmesh-Sealed-Keys`, or the form's `sealed_keys` field).
fn sealed_keys_from(text: Option<String>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.split_once(':')
                .map(|(k, w)| (k.to_string(), w.to_string()))
                .ok_or_else(|| {
                    ApiError::bad_request("sealed keys are key-id:wrapped items, comma-separated")
                })
        })
        .collect()
}

/// Whether the client asked for the resource (JSON) rather than the bytes.
fn wants_resource(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("fhir+json") || a.contains("application/json"))
}

/// Whether a request body is FHIR JSON (a Binary resource) rather than raw content.
fn is_json_body(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|c| c.contains("fhir+json") || c.starts_with("application/json"))
}

fn created(ctx: &RequestContext, stored: &StoredDocument) -> Response {
    let id = stored
        .binary
        .get("id")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let mut r = fhir_json(StatusCode::CREATED, &stored.binary);
    set_header(
        r.headers_mut(),
        header::LOCATION,
        &format!("{}/Binary/{id}", ctx.base_url()),
    );
    set_header(
        r.headers_mut(),
        HeaderName::from_static("x-content-id"),
        &stored.content_id.to_string(),
    );
    r
}

/// The `Binary` type's own routes. `POST /Binary` and `GET /Binary/[id]` choose between the
/// vault (raw bytes) and an ordinary FHIR interaction (a Binary resource in JSON) by content
/// negotiation; every other interaction on Binary is the generic one.
pub fn binary_routes() -> Router<AppState> {
    use crate::handlers as fhir;
    let binary = || Path("Binary".to_string());
    Router::new()
        .route(
            "/Binary",
            get(
                move |st: State<AppState>, a: Authenticated, q: RawQuery, h: HeaderMap| async move {
                    fhir::type_get(st, a, binary(), q, h).await
                },
            )
            .post(binary_create)
            .put(
                move |st: State<AppState>,
                      a: Authenticated,
                      q: RawQuery,
                      h: HeaderMap,
                      req: Request| async move {
                    fhir::type_put(st, a, binary(), q, h, req).await
                },
            )
            .delete(
                move |st: State<AppState>, a: Authenticated, q: RawQuery| async move {
                    fhir::type_delete(st, a, binary(), q).await
                },
            ),
        )
        .route(
            "/Binary/_search",
            post(
                move |st: State<AppState>,
                      a: Authenticated,
                      q: RawQuery,
                      h: HeaderMap,
                      req: Request| async move {
                    fhir::type_search_post(st, a, binary(), q, h, req).await
                },
            ),
        )
        .route(
            "/Binary/_history",
            get(
                move |st: State<AppState>, a: Authenticated, q: RawQuery| async move {
                    fhir::type_history(st, a, binary(), q).await
                },
            ),
        )
        .route(
            "/Binary/{id}",
            get(binary_read)
                .put(
                    |st: State<AppState>,
                     a: Authenticated,
                     Path(id): Path<String>,
                     h: HeaderMap,
                     req: Request| async move {
                        fhir::instance_put(st, a, Path(("Binary".into(), id)), h, req).await
                    },
                )
                .patch(
                    |st: State<AppState>,
                     a: Authenticated,
                     Path(id): Path<String>,
                     h: HeaderMap,
                     req: Request| async move {
                        fhir::instance_patch(st, a, Path(("Binary".into(), id)), h, req).await
                    },
                )
                .delete(
                    |st: State<AppState>, a: Authenticated, Path(id): Path<String>| async move {
                        fhir::instance_delete(st, a, Path(("Binary".into(), id))).await
                    },
                ),
        )
}

/// `POST /fhir/Binary`: raw content is a document for the vault; a Binary resource in FHIR
/// JSON is an ordinary create.
pub async fn binary_create(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    if is_json_body(&headers) {
        return crate::handlers::type_post(
            State(state),
            Authenticated(ctx),
            Path("Binary".into()),
            headers,
            req,
        )
        .await;
    }
    binary_upload(&state, &ctx, req).await
}

/// `GET /fhir/Binary/[id]`: the document's bytes, or the Binary resource when the client
/// asks for FHIR JSON.
pub async fn binary_read(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if wants_resource(&headers) {
        return crate::handlers::instance_get(
            State(state),
            Authenticated(ctx),
            Path(("Binary".into(), id)),
        )
        .await;
    }
    binary_download(&state, &ctx, &id).await
}

/// Raw content into the vault.
async fn binary_upload(
    state: &AppState,
    ctx: &RequestContext,
    req: Request,
) -> Result<Response, ApiError> {
    let headers = req.headers().clone();
    let doc = NewDocument {
        patient: patient_from(ctx, header_text(&headers, "x-security-context"))?,
        content_type: header_text(&headers, "content-type"),
        title: header_text(&headers, "x-medmesh-title"),
        doc_type: header_text(&headers, "x-medmesh-document-type"),
        signature: signature_from(&headers)?,
        sealed_keys: sealed_keys_from(header_text(&headers, "x-medmesh-sealed-keys"))?,
        attach_to: None,
    };
    let body = req.into_body().into_data_stream();
    let stored = state.vault.upload_document(ctx, doc, body).await?;
    Ok(created(ctx, &stored))
}

/// `POST /api/documents` (multipart/form-data): fields `patient`, `title`, `type`
/// (`system|code`), optionally `signature`, `signing_key`, `signed_at`, `device`, and for a
/// sealed document `sealed_keys`, and last the `file`. Answers 201 with the Binary and DocumentReference ids.
pub async fn documents_post(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut form = form.map_err(|_| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            medmesh_fhir::IssueType::NotSupported,
            "the body must be multipart/form-data",
        )
    })?;
    let mut fields: Vec<(String, String)> = Vec::new();
    let bad_form = |_| ApiError::bad_request("the multipart body is malformed");
    while let Some(field) = form.next_field().await.map_err(bad_form)? {
        let name = field.name().unwrap_or_default().to_string();
        if name != "file" {
            let value = field.text().await.map_err(bad_form)?;
            fields.push((name, value));
            continue;
        }
        let get = |k: &str| {
            fields
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let signature = signed_claims(
            get,
            ["signature", "signing_key", "signed_at", "device"],
            "field",
        )?;
        let patient = match get("patient") {
            Some(p) => patient_from(
                &ctx,
                Some(format!("Patient/{}", p.trim_start_matches("Patient/"))),
            )?,
            None => patient_from(&ctx, None)?,
        };
        let doc = NewDocument {
            patient,
            content_type: field.content_type().map(str::to_string),
            title: get("title").or_else(|| field.file_name().map(str::to_string)),
            doc_type: get("type"),
            signature,
            sealed_keys: sealed_keys_from(get("sealed_keys"))?,
            attach_to: None,
        };
        let stored = state.vault.upload_document(&ctx, doc, field).await?;
        let mut r = axum::Json(json!({
            "binary": stored.binary.get("id"),
            "documentReference": stored.document_reference_id,
            "provenance": stored.provenance_id,
            "contentId": stored.content_id.to_string(),
            "size": stored.size,
            "contentType": stored.content_type,
            "deduplicated": stored.deduplicated,
        }))
        .into_response();
        *r.status_mut() = StatusCode::CREATED;
        return Ok(r);
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        IssueType::Required,
        "the form has no file field (it must come last)",
    ))
}

/// Types a browser may show in its own tab: it renders them itself and runs no script from
/// them. Everything else is a download.
fn shown_inline(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "application/pdf"
            | "image/jpeg"
            | "image/png"
            | "image/gif"
            | "image/webp"
            | "image/tiff"
            | "image/heif"
            | "image/heic"
    )
}

/// The headers every vault response carries, whichever route served it: documents come from
/// patients and outside systems, and are served from the node's own origin, so nothing in
/// them may run as the node's page (no script, no plugin, no sniffing into HTML).
fn harden_document_headers(h: &mut HeaderMap, content_type: &str) {
    set_header(
        h,
        header::CONTENT_SECURITY_POLICY,
        "sandbox; default-src 'none'",
    );
    set_header(
        h,
        HeaderName::from_static("x-content-type-options"),
        "nosniff",
    );
    set_header(
        h,
        header::CONTENT_DISPOSITION,
        if shown_inline(content_type) {
            "inline"
        } else {
            "attachment"
        },
    );
}

/// A document's bytes as an answer: streamed, typed, sandboxed, shown inline only when its
/// type is safe to, with its digest (RFC 9530) for the client to check.
pub fn download_response(d: Download) -> Response {
    let mut r = Response::new(Body::from_stream(
        d.body.map_err(|e| std::io::Error::other(e.to_string())),
    ));
    let h = r.headers_mut();
    set_header(h, header::CONTENT_TYPE, &d.content_type);
    set_header(h, header::CONTENT_LENGTH, &d.size.to_string());
    set_header(h, header::CACHE_CONTROL, "no-store");
    harden_document_headers(h, &d.content_type);
    set_header(
        h,
        HeaderName::from_static("x-content-id"),
        &d.content_id.to_string(),
    );
    // RFC 9530: the digest of the bytes, so a client can check them too.
    set_header(
        h,
        HeaderName::from_static("repr-digest"),
        &format!("sha-256=:{}:", STANDARD.encode(d.content_id.0)),
    );
    r
}

/// A document's bytes, streamed out of the vault.
async fn binary_download(
    state: &AppState,
    ctx: &RequestContext,
    id: &str,
) -> Result<Response, ApiError> {
    Ok(download_response(state.vault.open_document(ctx, id).await?))
}

/// `GET /api/documents/{binary id}/link`: a download link valid for five minutes.
pub async fn document_link(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let grant = state.vault.link_grant(&ctx, &id).await?;
    let (ticket, expires) = state
        .identity
        .mint_download(
            &grant.subject,
            &grant.binary_id,
            grant.practitioner,
            grant.patient,
            LINK_SECONDS,
        )
        .map_err(ApiError::from)?;
    let base = ctx.base_url().trim_end_matches("/fhir");
    Ok(axum::Json(json!({
        "url": format!("{base}/api/blobs/{ticket}"),
        "expires": medmesh_fhir::datetime::format_instant(expires * 1_000_000),
    }))
    .into_response())
}

/// `GET /api/blobs/{ticket}`: a download link.
pub async fn blob_get(
    State(state): State<AppState>,
    ApiPath(ticket): ApiPath<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let gone = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            "this download link is invalid or has expired",
        )
    };
    let claims = state
        .identity
        .verify_download(&ticket)
        .map_err(|_| gone())?;
    let binary_id = claims
        .scope
        .strip_prefix("download:Binary/")
        .ok_or_else(gone)?
        .to_string();
    let link = LinkGrant {
        binary_id,
        subject: claims.sub,
        practitioner: claims.fhir_user,
        patient: claims.patient,
    };
    let d = state
        .vault
        .open_linked_document(&link, &operation_id(&parts))
        .await?;
    Ok(download_response(d))
}
