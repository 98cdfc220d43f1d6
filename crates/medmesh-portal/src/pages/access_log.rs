//! `GET /account/audit`: every access to the patient's record, proven complete in their own
//! browser.
//!
//! The page is a frame: `static/access-log.js` fetches every page of
//! `GET /api/patients/{id}/audit`, runs `/assets/audit-verify.js` over it (the browser's copy
//! of `medmesh-patient-log-verifier`), keeps the checkpoint it verified in IndexedDB, and on
//! the next visit asks for a consistency proof from it. It says "verified against the
//! checkpoint of <time>" only when every check passed, says "not verified" plainly
//! otherwise, and lists the entries either way: who (by name), when, what, why, the
//! outcome, with emergency (break-glass) accesses highlighted.
//!
//! The rows are drawn from the entries the browser verified, never from HTML the node
//! rendered: what the node adds here is only the words (the page's messages and the names
//! of the accounts in the newest entries), as JSON data the script reads.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use medmesh_server::AppState;
use serde_json::json;

use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::home::who;
use crate::viewer::Viewer;

/// How many of the newest entries have their actors named ahead (older ones show the
/// account id, which the patient can still tell apart).
const NAMED_ENTRIES: u32 = 500;

/// The page's messages the script shows, by key.
const MESSAGES: &[(&str, &str)] = &[
    ("verifiedOne", "access-log-verified-one"),
    ("verifiedOther", "access-log-verified-other"),
    ("witnessedOne", "access-log-witnessed-one"),
    ("witnessedOther", "access-log-witnessed-other"),
    ("unwitnessed", "access-log-unwitnessed"),
    ("policyChanged", "access-log-policy-changed"),
    ("failed", "access-log-failed"),
    ("keyChanged", "access-log-key-changed"),
    ("nothing", "access-log-nothing"),
    ("unchecked", "access-log-unchecked"),
    ("ownAccess", "access-log-own-access"),
    ("emergency", "access-log-emergency"),
    ("denied", "access-log-denied"),
    ("failure", "access-log-failure"),
    ("success", "access-log-success"),
    ("other", "action-other"),
];

/// The audited actions the catalog names.
const ACTIONS: &[&str] = &[
    "read",
    "vread",
    "search",
    "create",
    "update",
    "delete",
    "read-audit-log",
    "export",
    "everything",
    "login",
    "login-second-factor",
    "break-glass",
    "withheld",
    "referral-inbox",
    "accept-referral",
];

#[derive(Template)]
#[template(path = "access_log.html")]
struct AccessLogPage {
    shell: Shell,
    patient: String,
    log_key: String,
    words: String,
}

/// `GET /account/audit`.
pub async fn access_log(State(state): State<AppState>, viewer: Viewer) -> Response {
    let lang = viewer.lang;
    let Some(patient) = viewer.own_patient() else {
        return problem(lang, Problem::WrongAudience);
    };
    let newest = match state
        .audit_log
        .read_patient_log(
            &state.records,
            &viewer.ctx,
            &patient,
            None,
            NAMED_ENTRIES,
            None,
        )
        .await
    {
        Ok(l) => l,
        Err(e) => return record_problem(lang, &e),
    };
    let mut names = BTreeMap::new();
    for e in newest.map(|l| l.entries).unwrap_or_default() {
        if !names.contains_key(&e.entry.actor) {
            let name = who(&state, &viewer, &e.entry.actor).await;
            names.insert(e.entry.actor.clone(), name);
        }
    }
    // The script fills the placeholders (`{name}`) in.
    let names_used = ["asOf", "n", "count", "names", "since", "reason", "error"];
    let messages: BTreeMap<&str, String> = MESSAGES
        .iter()
        .map(|(k, id)| (*k, lang.t_for_script(id, &names_used)))
        .collect();
    let actions: BTreeMap<&str, String> = ACTIONS
        .iter()
        .filter_map(|a| lang.lookup(&format!("action-{a}")).map(|t| (*a, t)))
        .collect();
    let words = json!({
        "lang": lang.tag(),
        "messages": messages,
        "actions": actions,
        "names": names,
    });
    render(
        StatusCode::OK,
        &AccessLogPage {
            shell: Shell::new(&viewer, "/account/audit", "access-log-title"),
            patient,
            log_key: state.audit_log.verifier_key().to_note_key(),
            // No `<` reaches the data block, so no name can end it early (`<` only
            // occurs inside JSON strings, where `\u003c` means the same).
            words: words.to_string().replace('<', "\\u003c"),
        },
    )
}
