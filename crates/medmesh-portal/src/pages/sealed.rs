//! A sealed document: `GET /documents/{binary}/sealed` opens it in this browser (the node
//! sends ciphertext and the wrapped key meant for the browser's own sealing key;
//! `static/sealed.js` unwraps and opens it, and shows it in place), shares it further with a
//! practitioner (the browser wraps the content key for their directory keys), and, for the
//! document's patient, lists who holds a key to it with a button to revoke each
//! (`POST /documents/{binary}/sealed/revoke`).
//!
//! Nothing here can open the document: the node holds no private key. What the page reads
//! (who holds keys) and changes (a revocation) goes through the vault, so the PDP judges it
//! and the audit log records it.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_fhir::search::Handling;
use medmesh_records::RecordError;
use medmesh_server::AppState;
use serde::Deserialize;

use crate::clinical::{self, human_name, resources};
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::sharing::{Found, practitioners_now};
use crate::pages::{name_of, refuse_form, valid_id};
use crate::viewer::{Audience, Viewer};

/// One key that opens the document.
pub struct Holder {
    /// Whose key, by name.
    pub name: String,
    /// Who shared it, by name, and when.
    pub shared: String,
    /// The key's directory id (for revoking).
    pub key: String,
    /// Whether the patient may revoke it here (not their own keys).
    pub revocable: bool,
}

#[derive(Template)]
#[template(path = "sealed.html")]
struct SealedPage {
    shell: Shell,
    binary: String,
    owner: String,
    /// The holders, for the document's patient; `None` for anyone else.
    holders: Option<Vec<Holder>>,
    choices: Vec<Found>,
    revoked: bool,
    shared: bool,
    msg_opening: String,
    msg_opened: String,
    msg_not_holder: String,
    msg_unauthentic: String,
    msg_refused: String,
    msg_no_key: String,
    msg_shared: String,
    msg_sharing: String,
}

/// Whether the page was reached after a revocation or a share.
#[derive(Debug, Deserialize)]
pub struct SealedQuery {
    #[serde(default)]
    revoked: Option<String>,
    #[serde(default)]
    shared: Option<String>,
}

/// Practitioners a clinician may share with: the directory's, not themselves.
async fn colleagues(state: &AppState, viewer: &Viewer) -> Result<Vec<Found>, RecordError> {
    let bundle = state
        .records
        .search(
            &viewer.ctx,
            "Practitioner",
            &[("_count".into(), "50".into())],
            Handling::Lenient,
        )
        .await?;
    let me = viewer.owner_reference();
    Ok(resources(bundle)
        .into_iter()
        .filter_map(|p| {
            let reference = format!("Practitioner/{}", p["id"].as_str()?);
            (Some(&reference) != me.as_ref()).then(|| Found {
                name: human_name(&p).unwrap_or_else(|| reference.clone()),
                reference,
            })
        })
        .collect())
}

/// `GET /documents/{binary}/sealed`.
pub async fn sealed(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(binary): Path<String>,
    Query(q): Query<SealedQuery>,
) -> Response {
    let lang = viewer.lang;
    if !valid_id(&binary) {
        return problem(lang, Problem::NotFound);
    }
    let Some(owner) = viewer.owner_reference() else {
        return problem(lang, Problem::WrongAudience);
    };
    let (holders, choices) = match viewer.own_patient() {
        Some(patient) => {
            // Only the patient sees who holds keys; the vault audits the read.
            let keys = match state.vault.sealed_shares(&viewer.ctx, &binary).await {
                Ok(k) => k,
                Err(e) => return record_problem(lang, &e),
            };
            let mut holders = Vec::new();
            for k in keys {
                holders.push(Holder {
                    name: name_of(&state, &viewer, &k.recipient).await,
                    shared: lang.t_with(
                        "sealed-shared-by",
                        &[
                            (
                                "name",
                                crate::i18n::Arg::Text(name_of(&state, &viewer, &k.added_by).await),
                            ),
                            (
                                "when",
                                crate::i18n::Arg::Text(clinical::date_time_micros(
                                    lang,
                                    k.added_micros,
                                    viewer.tz_minutes,
                                )),
                            ),
                        ],
                    ),
                    revocable: k.recipient != owner,
                    key: k.recipient_key_id,
                });
            }
            match practitioners_now(&state, &viewer, &patient).await {
                Ok(c) => (Some(holders), c),
                Err(e) => return record_problem(lang, &e),
            }
        }
        None if viewer.audience == Audience::Clinician => match colleagues(&state, &viewer).await {
            Ok(c) => (None, c),
            Err(e) => return record_problem(lang, &e),
        },
        None => return problem(lang, Problem::WrongAudience),
    };
    render(
        StatusCode::OK,
        &SealedPage {
            shell: Shell::new(&viewer, "/documents", "sealed-title"),
            binary,
            owner,
            holders,
            choices,
            revoked: q.revoked.is_some(),
            shared: q.shared.is_some(),
            msg_opening: lang.t("sealed-opening"),
            msg_opened: lang.t("sealed-opened"),
            msg_not_holder: lang.t("sealed-not-holder"),
            msg_unauthentic: lang.t("sealed-unauthentic"),
            msg_refused: lang.t_for_script("sealing-refused", &["status"]),
            msg_no_key: lang.t_for_script("sealing-no-key", &["owner"]),
            msg_shared: lang.t_for_script("sealed-shared", &["count", "name"]),
            msg_sharing: lang.t("sealed-sharing"),
        },
    )
}

/// The revocation form.
#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    csrf: Option<String>,
    #[serde(default)]
    key: String,
}

/// `POST /documents/{binary}/sealed/revoke`: the patient removes one holder's wrapped key.
pub async fn revoke(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(binary): Path<String>,
    Form(form): Form<RevokeForm>,
) -> Response {
    let key = form.key.trim();
    if let Some(refused) = refuse_form(
        &viewer,
        form.csrf.as_deref(),
        Audience::Patient,
        &[&binary, key],
    ) {
        return refused;
    }
    match state.vault.revoke_sealed(&viewer.ctx, &binary, key).await {
        Ok(()) => Redirect::to(&format!("/documents/{binary}/sealed?revoked=1")).into_response(),
        Err(e) => record_problem(viewer.lang, &e),
    }
}
