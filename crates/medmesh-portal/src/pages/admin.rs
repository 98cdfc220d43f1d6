//! The admin area. `GET /admin`: the practitioner accounts an admin oversees (all of them
//! for a node admin, their organization's for an org admin), each with its verification
//! status and the buttons to verify, suspend or reset it, and invitations (a one-time code
//! for a new practitioner or admin). `GET /admin/clients`: the registered OAuth clients and
//! a registration form (node admins). `GET /admin/break-glass`: the review queue of
//! emergency accesses with their declared reasons. `GET /admin/keys`: the encryption keys'
//! state and the audit log's newest signed checkpoint.
//!
//! Every decision is the identity service's or the PDP's (the review queue takes the PDP's
//! `ReviewRight`, the key page its `KeyStatusView`); these handlers only render. Room for
//! later administration (HL7 v2 senders, schedules) is one more module and one more line in
//! the admin navigation (`layout::Shell::new`).

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use medmesh_identity::IdentityError;
use medmesh_server::AppState;
use serde::Deserialize;

use crate::PortalServices;
use crate::clinical;
use crate::i18n::{Arg, Lang};
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::{field, name_of, refuse_form, valid_id};
use crate::viewer::{Audience, Viewer};

/// An identity failure as a page: a refusal is "wrong audience", a bad value "bad input",
/// the rest logged and "unavailable".
fn identity_problem(lang: Lang, e: &IdentityError) -> Response {
    match e {
        IdentityError::Forbidden => problem(lang, Problem::WrongAudience),
        IdentityError::NotFound => problem(lang, Problem::NotFound),
        IdentityError::InvalidRequest(_) | IdentityError::WeakPassword(_) => {
            problem(lang, Problem::BadInput)
        }
        other => {
            tracing::error!(error = %other, "an admin page failed");
            problem(lang, Problem::Unavailable)
        }
    }
}

fn admins_only(viewer: &Viewer) -> Option<Response> {
    (viewer.audience != Audience::Admin).then(|| problem(viewer.lang, Problem::WrongAudience))
}

/// One practitioner account.
pub struct UserRow {
    /// The account id (for the buttons).
    pub id: String,
    /// Login name.
    pub username: String,
    /// The linked Practitioner, by name when known.
    pub practitioner: String,
    /// Status code (`verified`, `unverified`, `suspended`).
    pub status: String,
    /// The status in words.
    pub status_text: String,
}

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage {
    shell: Shell,
    users: Vec<UserRow>,
    invitation: Option<String>,
}

/// How many practitioner accounts the admin page lists (by user name).
const LISTED_ACCOUNTS: u32 = 500;

async fn users_page(state: &AppState, viewer: &Viewer, invitation: Option<String>) -> Response {
    let lang = viewer.lang;
    if let Some(r) = admins_only(viewer) {
        return r;
    }
    let accounts = match state
        .identity
        .practitioners_overseen(&viewer.account, None, LISTED_ACCOUNTS)
        .await
    {
        Ok(a) => a,
        Err(e) => return identity_problem(lang, &e),
    };
    let mut users = Vec::new();
    for u in accounts {
        let practitioner = match &u.practitioner_id {
            Some(p) => name_of(state, viewer, &format!("Practitioner/{p}")).await,
            None => String::new(),
        };
        users.push(UserRow {
            status_text: lang.t(&format!("verification-{}", u.verification)),
            id: u.id,
            username: u.username,
            practitioner,
            status: u.verification,
        });
    }
    render(
        StatusCode::OK,
        &UsersPage {
            shell: Shell::new(viewer, "/admin", "admin-users-title"),
            users,
            invitation,
        },
    )
}

/// `GET /admin`.
pub async fn users(State(state): State<AppState>, viewer: Viewer) -> Response {
    users_page(&state, &viewer, None).await
}

/// The verification buttons' form.
#[derive(Debug, Deserialize)]
pub struct VerificationForm {
    csrf: Option<String>,
    status: String,
}

/// `POST /admin/users/{id}/verification`.
pub async fn set_verification(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(user_id): Path<String>,
    Form(form): Form<VerificationForm>,
) -> Response {
    let lang = viewer.lang;
    if let Some(refused) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Admin, &[]) {
        return refused;
    }
    let Ok(status) = form.status.parse::<medmesh_auth::Verification>() else {
        return problem(lang, Problem::BadInput);
    };
    match state
        .identity
        .set_verification(&viewer.account, &user_id, status)
        .await
    {
        Ok(()) => Redirect::to("/admin").into_response(),
        Err(e) => identity_problem(lang, &e),
    }
}

/// The invitation form.
#[derive(Debug, Deserialize)]
pub struct InvitationForm {
    csrf: Option<String>,
    role: String,
    #[serde(default)]
    practitioner: String,
}

/// `POST /admin/invitations`: shows the one-time code once, on the page that made it.
pub async fn invite(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<InvitationForm>,
) -> Response {
    let lang = viewer.lang;
    if let Some(refused) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Admin, &[]) {
        return refused;
    }
    let role = match form.role.as_str() {
        "practitioner" => medmesh_auth::Role::Practitioner,
        "org-admin" => medmesh_auth::Role::OrgAdmin,
        _ => return problem(lang, Problem::BadInput),
    };
    let practitioner =
        field(&form.practitioner, 64).map(|p| p.trim_start_matches("Practitioner/").to_string());
    if practitioner.as_deref().is_some_and(|p| !valid_id(p)) {
        return problem(lang, Problem::BadInput);
    }
    match state
        .identity
        .invite(&viewer.account, role, None, practitioner)
        .await
    {
        Ok(code) => users_page(&state, &viewer, Some(code)).await,
        Err(e) => identity_problem(lang, &e),
    }
}

/// One OAuth client.
pub struct ClientRow {
    /// `client_id`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Kind, in words.
    pub kind: String,
    /// Redirect URIs.
    pub redirects: String,
    /// The most it may be granted.
    pub scope: String,
    /// Registered when.
    pub created: String,
}

#[derive(Template)]
#[template(path = "admin_clients.html")]
struct ClientsPage {
    shell: Shell,
    clients: Vec<ClientRow>,
    registered: Option<(String, Option<String>)>,
}

async fn clients_page(
    state: &AppState,
    viewer: &Viewer,
    registered: Option<(String, Option<String>)>,
) -> Response {
    let lang = viewer.lang;
    if let Some(r) = admins_only(viewer) {
        return r;
    }
    let clients = match state.identity.registered_clients(&viewer.account).await {
        Ok(c) => c,
        Err(e) => return identity_problem(lang, &e),
    };
    render(
        StatusCode::OK,
        &ClientsPage {
            shell: Shell::new(viewer, "/admin/clients", "admin-clients-title"),
            clients: clients
                .into_iter()
                .map(|c| ClientRow {
                    kind: lang.t(&format!("client-kind-{}", c.kind)),
                    redirects: c.redirect_uris.join(" "),
                    created: clinical::date_time_micros(lang, c.created, viewer.tz_minutes),
                    id: c.client_id,
                    name: c.name,
                    scope: c.scope,
                })
                .collect(),
            registered,
        },
    )
}

/// `GET /admin/clients`.
pub async fn clients(State(state): State<AppState>, viewer: Viewer) -> Response {
    clients_page(&state, &viewer, None).await
}

/// The client registration form.
#[derive(Debug, Deserialize)]
pub struct ClientForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    redirect_uris: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    scope: String,
}

/// `POST /admin/clients`: registers a client (RFC 7591 metadata, as `/oauth/register`
/// takes it) and shows its id, and its secret once for a confidential one.
pub async fn register_client(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<ClientForm>,
) -> Response {
    let lang = viewer.lang;
    if let Some(refused) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Admin, &[]) {
        return refused;
    }
    if viewer.account.role != medmesh_auth::Role::NodeAdmin.code() {
        return problem(lang, Problem::WrongAudience);
    }
    let method = match form.kind.as_str() {
        "public" => "none",
        "confidential" => "client_secret_basic",
        _ => return problem(lang, Problem::BadInput),
    };
    let redirect_uris: Vec<String> = form
        .redirect_uris
        .split_whitespace()
        .take(10)
        .map(str::to_string)
        .collect();
    let registration = medmesh_identity::oauth::Registration {
        client_name: field(&form.name, 100).unwrap_or_default(),
        redirect_uris,
        token_endpoint_auth_method: Some(method.into()),
        jwks: None,
        scope: field(&form.scope, 1000),
    };
    match state.identity.register_client(registration).await {
        Ok(v) => {
            let id = v["client_id"].as_str().unwrap_or_default().to_string();
            let secret = v["client_secret"].as_str().map(str::to_string);
            clients_page(&state, &viewer, Some((id, secret))).await
        }
        Err(e) => identity_problem(lang, &e),
    }
}

/// One emergency access under review.
pub struct EmergencyRow {
    /// Who declared it.
    pub who: String,
    /// The patient's record id (the reviewer opens the record with the API if needed).
    pub patient: String,
    /// When.
    pub declared: String,
    /// Until.
    pub until: String,
    /// The reason they typed (gone if the patient was erased).
    pub reason: String,
    /// Whether it still holds.
    pub active: bool,
}

#[derive(Template)]
#[template(path = "admin_break_glass.html")]
struct BreakGlassPage {
    shell: Shell,
    rows: Vec<EmergencyRow>,
}

/// `GET /admin/break-glass`.
pub async fn break_glass(State(state): State<AppState>, viewer: Viewer) -> Response {
    let lang = viewer.lang;
    if let Some(r) = admins_only(&viewer) {
        return r;
    }
    let right = match state.records.review_right(&viewer.ctx) {
        Ok(r) => r,
        Err(e) => return record_problem(lang, &e),
    };
    let edges = match state.trust.break_glass_queue(&right, 0).await {
        Ok(e) => e,
        Err(e) => return record_problem(lang, &e),
    };
    let now = state.identity.clock().now_micros();
    let mut rows = Vec::new();
    for e in edges {
        rows.push(EmergencyRow {
            who: name_of(&state, &viewer, &e.principal).await,
            patient: e.patient.clone(),
            declared: clinical::date_time_micros(lang, e.since, viewer.tz_minutes),
            until: e
                .until
                .map(|u| clinical::date_time_micros(lang, u, viewer.tz_minutes))
                .unwrap_or_default(),
            active: e.holds_at(now),
            reason: e.detail.unwrap_or_else(|| lang.t("admin-reason-gone")),
        });
    }
    render(
        StatusCode::OK,
        &BreakGlassPage {
            shell: Shell::new(&viewer, "/admin/break-glass", "admin-break-glass-title"),
            rows,
        },
    )
}

#[derive(Template)]
#[template(path = "admin_keys.html")]
struct KeysPage {
    shell: Shell,
    encrypted: bool,
    current_kek: String,
    keys_per_kek: Vec<(String, u64)>,
    reencryption: String,
    checkpoint_size: String,
    checkpoint_signed: String,
    checkpoint_text: String,
}

/// `GET /admin/keys`.
pub async fn keys(
    State(state): State<AppState>,
    Extension(services): Extension<Arc<PortalServices>>,
    viewer: Viewer,
) -> Response {
    let lang = viewer.lang;
    if let Some(r) = admins_only(&viewer) {
        return r;
    }
    let view = match state.records.key_status_view(&viewer.ctx) {
        Ok(v) => v,
        Err(e) => return record_problem(lang, &e),
    };
    let status = match services.keys.status(&view).await {
        Ok(s) => s,
        Err(e) => return record_problem(lang, &e),
    };
    let checkpoint = match state.audit_log.latest().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the newest checkpoint");
            return problem(lang, Problem::Unavailable);
        }
    };
    render(
        StatusCode::OK,
        &KeysPage {
            shell: Shell::new(&viewer, "/admin/keys", "admin-keys-title"),
            encrypted: status.encrypted,
            current_kek: status.current_kek.unwrap_or_default(),
            keys_per_kek: status.keys_per_kek,
            reencryption: match status.reencryption {
                Some((row, state)) => lang.t_with(
                    "admin-reencryption",
                    &[
                        ("state", Arg::Text(state)),
                        ("row", Arg::Number(row as f64)),
                    ],
                ),
                None => lang.t("admin-reencryption-never"),
            },
            checkpoint_size: checkpoint
                .as_ref()
                .map(|c| c.size.to_string())
                .unwrap_or_default(),
            checkpoint_signed: checkpoint
                .as_ref()
                .map(|c| clinical::date_time_micros(lang, c.signed_micros, viewer.tz_minutes))
                .unwrap_or_default(),
            checkpoint_text: checkpoint.map(|c| c.text).unwrap_or_default(),
        },
    )
}
