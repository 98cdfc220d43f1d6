//! Secure messages (`/messages`, `/messages/{id}`): the reader's threads with their unread
//! counts, a new thread (a patient's goes to their care team; a clinician names colleagues,
//! and the patient a thread is about), a thread's messages with who read them, and the
//! answer form. Opening a thread marks what the reader had not read (on every device).
//! `static/messages.js` refreshes the live region when the node's stream
//! (`/messages/live`) says a thread changed, and in a sealed thread seals and opens the
//! messages in the browser with the reader's own key: the node never sees their text.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_fhir::search::Handling;
use medmesh_messaging::{Body, NewThread};
use medmesh_server::AppState;

use crate::clinical;
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::care_plan::Choice;
use crate::pages::prescribe::value;
use crate::pages::{field, refusal_words, refuse_form, valid_id};
use crate::viewer::{Audience, Viewer};

/// The most practitioners the new-thread form lists.
const MAX_DIRECTORY: usize = 200;

/// A thread in the list.
pub struct ThreadRow {
    /// The header's id.
    pub id: String,
    /// Its subject line.
    pub topic: String,
    /// Its parties, by name.
    pub parties: String,
    /// The patient it is about, by name, or "".
    pub about: String,
    /// When it last moved, in words.
    pub last: String,
    /// Unread messages.
    pub unread: usize,
    /// Sealed end to end.
    pub sealed: bool,
}

/// A message as the thread page shows it.
pub struct MessageRow {
    /// Who sent it.
    pub sender: String,
    /// When, in words.
    pub sent: String,
    /// Its text ("" for a sealed one).
    pub text: String,
    /// A sealed envelope the browser opens, or "".
    pub envelope: String,
    /// Who read it, in words, or "".
    pub read: String,
    /// Whether the reader sent it.
    pub mine: bool,
    /// Its documents: where each opens (its Binary's page, or "" when it has none there)
    /// and its title.
    pub attachments: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "messages.html")]
struct MessagesPage {
    shell: Shell,
    threads: Vec<ThreadRow>,
    patient: bool,
    directory: Vec<Choice>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "message_thread.html")]
struct ThreadPage {
    shell: Shell,
    id: String,
    topic: String,
    parties: String,
    about: String,
    sealed: bool,
    reader: String,
    /// The people a sealed message is sealed for (JSON list of references).
    people: String,
    /// Their names, by reference (JSON), for the script's messages.
    names: String,
    /// "<owner> has no key yet", with `{owner}` for the script to fill.
    no_key: String,
    messages: Vec<MessageRow>,
    /// The thread's patient's documents a message may carry.
    documents: Vec<Choice>,
    error: Option<String>,
}

/// The most documents the answer form offers.
const MAX_OFFERED: &str = "50";

fn audience_ok(viewer: &Viewer) -> bool {
    matches!(viewer.audience, Audience::Patient | Audience::Clinician)
}

/// `GET /messages`.
pub async fn messages(State(state): State<AppState>, viewer: Viewer) -> Response {
    list(&state, &viewer, None).await
}

async fn list(state: &AppState, viewer: &Viewer, error: Option<String>) -> Response {
    let lang = viewer.lang;
    if !audience_ok(viewer) {
        return problem(lang, Problem::WrongAudience);
    }
    let threads = match state.messaging.threads(&viewer.ctx).await {
        Ok(t) => t,
        Err(e) => return record_problem(lang, &e),
    };
    let me = viewer
        .ctx
        .actor()
        .clinician()
        .map(|c| c.practitioner.clone());
    let mut directory = Vec::new();
    if let Some(me) = &me {
        let params = vec![
            ("_count".to_string(), MAX_DIRECTORY.to_string()),
            ("_sort".to_string(), "family".to_string()),
        ];
        match state
            .records
            .search(&viewer.ctx, "Practitioner", &params, Handling::Lenient)
            .await
        {
            Ok(bundle) => {
                for p in clinical::resources(bundle) {
                    let id = format!("Practitioner/{}", p["id"].as_str().unwrap_or_default());
                    if id != *me {
                        directory.push(Choice {
                            label: medmesh_fhir::names::human_name(&p)
                                .unwrap_or_else(|| id.clone()),
                            value: id,
                        });
                    }
                }
            }
            Err(e) => return record_problem(lang, &e),
        }
    }
    let rows = threads
        .into_iter()
        .map(|t| ThreadRow {
            parties: t
                .parties
                .iter()
                .map(|(_, n)| n.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            about: t.about.map(|(_, n)| n).unwrap_or_default(),
            last: clinical::instant(&t.last)
                .map(|at| clinical::date_time(lang, at, viewer.tz_minutes))
                .unwrap_or_default(),
            id: t.id,
            topic: t.topic,
            unread: t.unread,
            sealed: t.sealed,
        })
        .collect();
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render(
        status,
        &MessagesPage {
            shell: Shell::new(viewer, "/messages", "messages-title"),
            threads: rows,
            patient: viewer.audience == Audience::Patient,
            directory,
            error,
        },
    )
}

/// `POST /messages`: a new thread (`topic`, `text`, `sealed`; a clinician's `to` and
/// `about`, and `with_patient`).
pub async fn create(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let audience = viewer.audience;
    if let Some(r) = refuse_form(&viewer, Some(value(&pairs, "csrf")), audience, &[]) {
        return r;
    }
    if !audience_ok(&viewer) {
        return problem(viewer.lang, Problem::WrongAudience);
    }
    if pairs.len() > 80 {
        return problem(viewer.lang, Problem::BadInput);
    }
    let about = field(value(&pairs, "about"), 64);
    if about.as_deref().is_some_and(|a| !valid_id(a)) {
        return problem(viewer.lang, Problem::BadInput);
    }
    let mut parties: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "to")
        .map(|(_, v)| v.clone())
        .collect();
    if let (Some(a), "on") = (&about, value(&pairs, "with_patient")) {
        parties.push(format!("Patient/{a}"));
    }
    let sealed = value(&pairs, "sealed") == "on";
    let new = NewThread {
        topic: field(value(&pairs, "topic"), 200).unwrap_or_default(),
        about,
        parties,
        sealed,
    };
    let text = field(value(&pairs, "text"), medmesh_messaging::thread::MAX_TEXT);
    let id = match state.messaging.create_thread(&viewer.ctx, new).await {
        Ok(id) => id,
        Err(e) => {
            return match refusal_words(&e) {
                Some(w) => list(&state, &viewer, Some(w)).await,
                None => record_problem(viewer.lang, &e),
            };
        }
    };
    // A sealed thread's first message is sealed in the browser, on the thread's page.
    if let (Some(t), false) = (text, sealed)
        && let Err(e) = state
            .messaging
            .send(&viewer.ctx, &id, Body::Text(t), Vec::new())
            .await
    {
        return record_problem(viewer.lang, &e);
    }
    Redirect::to(&format!("/messages/{id}")).into_response()
}

/// `GET /messages/{id}`: the thread; what the reader had not read is marked read.
pub async fn thread(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    show(&state, &viewer, &id, None).await
}

async fn show(state: &AppState, viewer: &Viewer, id: &str, error: Option<String>) -> Response {
    let lang = viewer.lang;
    if !audience_ok(viewer) {
        return problem(lang, Problem::WrongAudience);
    }
    if !valid_id(id) {
        return problem(lang, Problem::NotFound);
    }
    let v = match state.messaging.thread(&viewer.ctx, id, true).await {
        Ok(v) => v,
        Err(e) => return record_problem(lang, &e),
    };
    let when = |s: &str| {
        clinical::instant(s)
            .map(|at| clinical::date_time(lang, at, viewer.tz_minutes))
            .unwrap_or_default()
    };
    let people: Vec<&str> = v
        .summary
        .parties
        .iter()
        .map(|(r, _)| r.as_str())
        .filter(|r| r.starts_with("Practitioner/") || r.starts_with("Patient/"))
        .collect();
    // Each document a message carries, read as the reader (the PDP decides; one the reader
    // may not see is named but not linked).
    let mut documents_of: std::collections::HashMap<String, (String, String)> =
        std::collections::HashMap::new();
    for d in v.messages.iter().flat_map(|m| m.attachments.iter()) {
        if documents_of.contains_key(d) {
            continue;
        }
        let found = state
            .records
            .read(&viewer.ctx, "DocumentReference", d)
            .await;
        let shown = match found {
            Ok(r) => {
                let doc = r.resource;
                let binary = doc["content"][0]["attachment"]["url"]
                    .as_str()
                    .and_then(|u| u.rsplit_once("Binary/").map(|(_, b)| b.to_string()))
                    .filter(|b| valid_id(b))
                    .map(|b| format!("/documents/{b}"))
                    .unwrap_or_default();
                let title = doc["description"]
                    .as_str()
                    .or_else(|| doc["content"][0]["attachment"]["title"].as_str())
                    .map(str::to_string)
                    .unwrap_or_else(|| lang.t("messages-attachment"));
                (binary, title)
            }
            Err(_) => (String::new(), lang.t("messages-attachment")),
        };
        documents_of.insert(d.clone(), shown);
    }
    let messages = v
        .messages
        .iter()
        .map(|m| {
            let (text, envelope) = match &m.body {
                Some(Body::Text(t)) => (t.clone(), String::new()),
                Some(Body::Sealed(e)) => (String::new(), e.clone()),
                None => (String::new(), String::new()),
            };
            let read = m
                .read_by
                .iter()
                .map(|(n, at)| {
                    lang.t_with(
                        "messages-read-by",
                        &[
                            ("name", crate::i18n::Arg::Text(n.clone())),
                            ("when", crate::i18n::Arg::Text(when(at))),
                        ],
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            MessageRow {
                sender: m.sender.1.clone(),
                sent: when(&m.sent),
                text,
                envelope,
                read,
                mine: m.mine,
                attachments: m
                    .attachments
                    .iter()
                    .filter_map(|d| documents_of.get(d).cloned())
                    .collect(),
            }
        })
        .collect();
    // A thread about a patient carries their documents (the vault's), as the reader sees them.
    let mut documents = Vec::new();
    if let (Some((patient, _)), false) = (&v.summary.about, v.summary.sealed) {
        match crate::pages::search(
            state,
            viewer,
            patient,
            "DocumentReference",
            &[("_count", MAX_OFFERED), ("_sort", "-date")],
        )
        .await
        {
            Ok(list) => {
                for d in list {
                    let Some(id) = d["id"].as_str() else { continue };
                    let title = d["description"]
                        .as_str()
                        .or_else(|| d["content"][0]["attachment"]["title"].as_str())
                        .map(str::to_string)
                        .or_else(|| clinical::concept(&d["type"]))
                        .unwrap_or_else(|| lang.t("messages-attachment"));
                    let date = clinical::date_of(lang, &d["date"], viewer.tz_minutes);
                    documents.push(Choice {
                        value: id.to_string(),
                        label: if date.is_empty() {
                            title
                        } else {
                            format!("{title} ({date})")
                        },
                    });
                }
            }
            Err(e) => return record_problem(lang, &e),
        }
    }
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    render(
        status,
        &ThreadPage {
            shell: Shell::new(viewer, "/messages", "messages-thread-title"),
            id: v.summary.id.clone(),
            topic: v.summary.topic.clone(),
            parties: v
                .summary
                .parties
                .iter()
                .map(|(_, n)| n.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            about: v.summary.about.clone().map(|(_, n)| n).unwrap_or_default(),
            sealed: v.summary.sealed,
            reader: v.reader.clone(),
            people: serde_json::to_string(&people).unwrap_or_default(),
            names: serde_json::to_string(
                &v.summary
                    .parties
                    .iter()
                    .cloned()
                    .collect::<std::collections::HashMap<String, String>>(),
            )
            .unwrap_or_default(),
            no_key: lang.t_for_script("messages-no-key", &["owner"]),
            messages,
            documents,
            error,
        },
    )
}

/// `POST /messages/{id}`: an answer (`text`). A sealed thread's answers are sealed by
/// `static/messages.js` and sent to the JSON API; this form then says so.
pub async fn send(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Response {
    let audience = viewer.audience;
    if let Some(r) = refuse_form(&viewer, Some(value(&pairs, "csrf")), audience, &[&id]) {
        return r;
    }
    if pairs.len() > 40 {
        return problem(viewer.lang, Problem::BadInput);
    }
    let text = value(&pairs, "text").to_string();
    let attachments: Vec<String> = pairs
        .iter()
        .filter(|(k, v)| k == "attach" && !v.is_empty())
        .map(|(_, v)| v.clone())
        .collect();
    match state
        .messaging
        .send(&viewer.ctx, &id, Body::Text(text), attachments)
        .await
    {
        Ok(_) => Redirect::to(&format!("/messages/{id}")).into_response(),
        Err(e) => match refusal_words(&e) {
            Some(w) => show(&state, &viewer, &id, Some(w)).await,
            None => record_problem(viewer.lang, &e),
        },
    }
}

/// `GET /messages/live`: the reader's stream of thread events (ids only), for
/// `static/messages.js`.
pub async fn live(State(state): State<AppState>, viewer: Viewer) -> Response {
    match state.messaging.subscribe(&viewer.ctx).await {
        Ok(sub) => medmesh_server::messaging::live_stream(sub),
        Err(e) => record_problem(viewer.lang, &e),
    }
}
