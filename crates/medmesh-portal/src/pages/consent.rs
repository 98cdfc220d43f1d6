//! `GET /oauth/authorize`: the consent screen of the node's authorization server, in the
//! user's language. The request is validated first (an invalid one never reaches a login
//! page), then the user signs in if they have not, then chooses what the app may have; the
//! form posts to `POST /oauth/authorize` (`medmesh-server`), which issues the code.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use medmesh_auth::{Scope, ScopeContext};
use medmesh_server::AppState;
use medmesh_server::oauth::{encode_request, validated};

use crate::i18n::{Arg, Lang};
use crate::layout::{Shell, render};
use crate::viewer::Viewer;

/// A scope in the user's words.
pub fn describe(lang: Lang, scope: &str) -> String {
    match scope {
        "openid" | "fhirUser" | "profile" => lang.t("scope-identity"),
        "offline_access" => lang.t("scope-offline"),
        "online_access" => lang.t("scope-online"),
        "launch/patient" | "launch" => lang.t("scope-launch"),
        s => match Scope::parse(s) {
            Ok(sc) => {
                let p = sc.permissions;
                let mut verbs = Vec::new();
                if p.read || p.search {
                    verbs.push(lang.t("scope-read"));
                }
                if p.create || p.update {
                    verbs.push(lang.t("scope-write"));
                }
                if p.delete {
                    verbs.push(lang.t("scope-delete"));
                }
                let what = sc
                    .resource_type
                    .as_deref()
                    .map(|t| {
                        lang.lookup(&format!("type-{t}"))
                            .unwrap_or_else(|| t.to_string())
                    })
                    .unwrap_or_else(|| lang.t("scope-all-types"));
                let whose = lang.t(match sc.context {
                    ScopeContext::Patient => "scope-patient",
                    ScopeContext::User => "scope-user",
                    ScopeContext::System => "scope-system",
                });
                let filter = sc
                    .restriction
                    .map(|(k, v)| format!(" ({k} {v})"))
                    .unwrap_or_default();
                lang.t_with(
                    "scope-data",
                    &[
                        ("verbs", Arg::Text(verbs.join(", "))),
                        ("whose", Arg::Text(whose)),
                        ("what", Arg::Text(format!("{what}{filter}"))),
                    ],
                )
            }
            Err(_) => lang.t("scope-other"),
        },
    }
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage {
    shell: Shell,
    client_name: String,
    request: String,
    scopes: Vec<(String, String)>,
    pick_patient: bool,
    launch_patient: String,
}

/// `GET /oauth/authorize`.
pub async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
    viewer: Result<Viewer, Response>,
) -> Response {
    let req = match validated(&state, &params, &headers).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    // Not signed in: the login page, which comes back here.
    let viewer = match viewer {
        Ok(v) => v,
        Err(login) => return login,
    };
    let lang = viewer.lang;
    let granted = medmesh_identity::oauth::scopes_for_user(&viewer.account, &req.scope);
    let mut shell = Shell::new(&viewer, "/oauth/authorize", "consent-title");
    shell.title = lang.t_with(
        "consent-title",
        &[("app", Arg::Text(req.client.name.clone()))],
    );
    render(
        StatusCode::OK,
        &ConsentPage {
            shell,
            client_name: req.client.name.clone(),
            request: encode_request(&params),
            pick_patient: viewer.account.role != "patient"
                && granted.iter().any(|s| s.starts_with("patient/")),
            scopes: granted
                .iter()
                .map(|s| (s.clone(), describe(lang, s)))
                .collect(),
            launch_patient: req
                .launch
                .as_ref()
                .filter(|l| l.user_id == viewer.user_id())
                .map(|l| l.patient.clone())
                .unwrap_or_default(),
        },
    )
}
