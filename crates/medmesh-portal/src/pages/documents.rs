//! Documents: `GET /documents` lists the patient's documents, each with its signature and
//! integrity status in plain words, a link to view it in place (PDF, images and text open
//! inline, sandboxed) and one to download it; `GET /documents/{binary}` opens one
//! (`?download=1` to save it). Opening goes through the vault as the viewer, so the PDP
//! judges it, the audit log records it and the patient is notified as for any read.
//! `GET /account/documents` is the signed upload, sealed end to end when asked, whose page
//! keeps the browser's non-extractable Ed25519 and X25519 keys (`static/upload.js` over
//! `static/sealing.mjs`). A sealed document opens on its own page (`super::sealed`). A
//! clinician's chart lists the patient's documents the same way ([`rows`]).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use medmesh_server::AppState;
use serde::Deserialize;
use serde_json::Value;

use crate::clinical::{self, concept};
use crate::i18n::Arg;
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::sharing::{Found, practitioners_now};
use crate::pages::{name_of, search, valid_id};
use crate::viewer::Viewer;

/// The content type of an end-to-end sealed document (only its recipients' browsers and
/// devices can open it), as `medmesh_crypto::wire::SEALED_TYPE` names it.
const SEALED_TYPE: &str = "application/vnd.medmesh.sealed";

/// One document as a list shows it.
pub struct DocumentRow {
    /// Its title or type.
    pub what: String,
    /// When, formatted.
    pub when: String,
    /// Who wrote or uploaded it.
    pub author: String,
    /// Its signature and integrity, in words.
    pub status: String,
    /// Whether it is signed.
    pub signed: bool,
    /// The Binary's id, when the document's content is in the vault.
    pub binary: Option<String>,
    /// Whether it is sealed end to end (the node cannot show it).
    pub sealed: bool,
}

/// The documents of `patient` as the viewer may see them, newest first, with the
/// signatures the node checked when they were uploaded.
///
/// # Errors
/// The record service's.
pub async fn rows(
    state: &AppState,
    viewer: &Viewer,
    patient: &str,
) -> Result<Vec<DocumentRow>, medmesh_records::RecordError> {
    let lang = viewer.lang;
    let tz = viewer.tz_minutes;
    let (documents, provenances) = tokio::try_join!(
        search(
            state,
            viewer,
            patient,
            "DocumentReference",
            &[("_count", "100"), ("_sort", "-date")],
        ),
        search(state, viewer, patient, "Provenance", &[("_count", "200")]),
    )?;
    // Each signed upload's Provenance names its DocumentReference among its targets.
    let mut signatures: HashMap<String, &Value> = HashMap::new();
    for p in &provenances {
        for t in p["target"].as_array().into_iter().flatten() {
            if let Some(r) = t["reference"].as_str()
                && r.starts_with("DocumentReference/")
                && p["signature"].as_array().is_some_and(|s| !s.is_empty())
            {
                signatures.insert(r.to_string(), &p["signature"][0]);
            }
        }
    }
    let mut out = Vec::new();
    for d in &documents {
        let id = d["id"].as_str().unwrap_or_default();
        let attachment = &d["content"][0]["attachment"];
        let binary = attachment["url"]
            .as_str()
            .and_then(|u| u.strip_prefix("Binary/"))
            .filter(|b| valid_id(b))
            .map(str::to_string);
        let sealed = attachment["contentType"].as_str() == Some(SEALED_TYPE);
        let author = match d["author"][0]["reference"].as_str() {
            Some(a) => name_of(state, viewer, a).await,
            None => String::new(),
        };
        let signature = signatures.get(&format!("DocumentReference/{id}"));
        let status = match (signature, &binary) {
            (Some(sig), _) => {
                let by = match sig["who"]["reference"].as_str() {
                    Some(w) => name_of(state, viewer, w).await,
                    None => author.clone(),
                };
                lang.t_with(
                    "documents-signed",
                    &[
                        ("name", Arg::Text(by)),
                        ("when", Arg::Text(clinical::date_of(lang, &sig["when"], tz))),
                    ],
                )
            }
            (None, Some(_)) => lang.t("documents-unsigned"),
            (None, None) => lang.t("documents-inline"),
        };
        out.push(DocumentRow {
            what: d["description"]
                .as_str()
                .map(str::to_string)
                .or_else(|| concept(&d["type"]))
                .or_else(|| attachment["title"].as_str().map(str::to_string))
                .unwrap_or_else(|| lang.t("record-document")),
            when: clinical::date_of(lang, &d["date"], tz),
            author,
            signed: signature.is_some(),
            status,
            binary,
            sealed,
        });
    }
    Ok(out)
}

#[derive(Template)]
#[template(path = "documents.html")]
struct DocumentsPage {
    shell: Shell,
    documents: Vec<DocumentRow>,
}

/// `GET /documents`.
pub async fn documents(State(state): State<AppState>, viewer: Viewer) -> Response {
    let lang = viewer.lang;
    let Some(patient) = viewer.own_patient() else {
        return problem(lang, Problem::WrongAudience);
    };
    match rows(&state, &viewer, &patient).await {
        Ok(documents) => render(
            StatusCode::OK,
            &DocumentsPage {
                shell: Shell::new(&viewer, "/documents", "documents-title"),
                documents,
            },
        ),
        Err(e) => record_problem(lang, &e),
    }
}

/// How to open a document.
#[derive(Debug, Deserialize)]
pub struct OpenQuery {
    #[serde(default)]
    download: Option<String>,
}

/// `GET /documents/{binary}`: the document's bytes, streamed and digest-checked by the vault,
/// shown in place when its type is safe to (sandboxed, no script), else saved.
pub async fn open(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(binary): Path<String>,
    Query(q): Query<OpenQuery>,
) -> Response {
    let lang = viewer.lang;
    if !valid_id(&binary) {
        return problem(lang, Problem::NotFound);
    }
    match state.vault.open_document(&viewer.ctx, &binary).await {
        Ok(d) => {
            let mut r = medmesh_server::documents::download_response(d);
            if q.download.is_some() {
                r.headers_mut().insert(
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_static("attachment"),
                );
            }
            r
        }
        Err(e) => record_problem(lang, &e),
    }
}

#[derive(Template)]
#[template(path = "upload.html")]
struct UploadPage {
    shell: Shell,
    owner: String,
    patient: String,
    /// Whom a patient may seal for besides themselves (who can see their record now).
    recipients: Vec<Found>,
    /// The script's messages, with `{placeholders}`.
    msg_key_ready: String,
    msg_no_key: String,
    msg_uploaded: String,
    msg_sealed: String,
    msg_failed: String,
    msg_working: String,
    msg_choose_file: String,
    msg_too_large: String,
    msg_no_recipient_key: String,
    msg_refused: String,
}

/// `GET /account/documents`: signed (and, when asked, sealed) uploads from the browser, with
/// keys that the page keeps non-extractable in WebCrypto (`static/upload.js`).
pub async fn upload(State(state): State<AppState>, viewer: Viewer) -> Response {
    let lang = viewer.lang;
    let Some(owner) = viewer.owner_reference() else {
        return problem(lang, Problem::WrongAudience);
    };
    let recipients = match viewer.own_patient() {
        Some(patient) => match practitioners_now(&state, &viewer, &patient).await {
            Ok(r) => r,
            Err(e) => return record_problem(lang, &e),
        },
        None => Vec::new(),
    };
    render(
        StatusCode::OK,
        &UploadPage {
            shell: Shell::new(&viewer, "/documents", "upload-title"),
            patient: viewer.account.patient_id.clone().unwrap_or_default(),
            owner,
            recipients,
            msg_key_ready: lang.t_for_script("upload-key-ready", &["owner", "key"]),
            msg_no_key: lang.t_for_script("upload-no-key", &["error"]),
            msg_uploaded: lang.t_for_script("upload-done", &["id"]),
            msg_sealed: lang.t_for_script("upload-sealed", &["id"]),
            msg_failed: lang.t_for_script("upload-failed", &["error"]),
            msg_working: lang.t("upload-working"),
            msg_choose_file: lang.t("upload-choose-file"),
            msg_too_large: lang.t("upload-too-large"),
            msg_no_recipient_key: lang.t_for_script("sealing-no-key", &["owner"]),
            msg_refused: lang.t_for_script("sealing-refused", &["status"]),
        },
    )
}
