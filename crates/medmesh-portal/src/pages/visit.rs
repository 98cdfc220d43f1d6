//! A video visit (`/visits/{appointment}`): the room of a telehealth appointment, open ten
//! minutes before it to its patient and practitioners only. The page shows the caller's
//! camera, the other parties, the waiting room (a clinician admits the patient), and the
//! visit's chat, which is the appointment's messaging thread. `static/visit.js` does the
//! WebRTC: the node relays the signalling over a WebSocket (`/visits/{appointment}/signal`,
//! signed in by the session, same origin only) and hands out the ICE servers with
//! short-lived TURN credentials. Nothing is recorded; the visit is an Encounter.

use askama::Template;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use medmesh_messaging::Body;
use medmesh_records::RecordError;
use medmesh_server::AppState;
use medmesh_telehealth::{Role, Ticket};

use crate::clinical;
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::valid_id;
use crate::viewer::{Audience, Viewer};

/// The longest a signalling connection lasts, seconds (a visit that runs longer reconnects).
const MAX_CALL_SECS: u64 = 4 * 3600;

/// A chat message as the page shows it.
pub struct ChatRow {
    /// Who wrote it.
    pub sender: String,
    /// When, in words.
    pub sent: String,
    /// Its text.
    pub text: String,
}

#[derive(Template)]
#[template(path = "visit.html")]
struct VisitPage {
    shell: Shell,
    appointment: String,
    clinician: bool,
    ice: String,
    thread: String,
    chat: Vec<ChatRow>,
    closed: Option<String>,
}

/// `GET /visits/{appointment}`.
pub async fn visit(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let lang = viewer.lang;
    if !matches!(viewer.audience, Audience::Patient | Audience::Clinician) {
        return problem(lang, Problem::WrongAudience);
    }
    if !valid_id(&id) {
        return problem(lang, Problem::NotFound);
    }
    let shell = Shell::new(&viewer, "/visits", "visit-title");
    let ticket = match state.telehealth.ticket(&viewer.ctx, &id).await {
        Ok(t) => t,
        Err(RecordError::Invalid(issues)) if !issues.is_empty() => {
            // Not open now (too early, over, cancelled): said in words, with no room.
            return render(
                StatusCode::CONFLICT,
                &VisitPage {
                    shell,
                    appointment: id,
                    clinician: false,
                    ice: String::new(),
                    thread: String::new(),
                    chat: Vec::new(),
                    closed: Some(crate::pages::prescribe::refusal_text(&issues)),
                },
            );
        }
        Err(e) => return record_problem(lang, &e),
    };
    let thread = match state
        .messaging
        .visit_thread(&viewer.ctx, &id, "Video visit")
        .await
    {
        Ok(t) => t,
        Err(e) => return record_problem(lang, &e),
    };
    let chat = match state.messaging.thread(&viewer.ctx, &thread, true).await {
        Ok(v) => v
            .messages
            .into_iter()
            .filter_map(|m| match m.body {
                Some(Body::Text(text)) => Some(ChatRow {
                    sender: m.sender.1,
                    sent: clinical::instant(&m.sent)
                        .map(|at| clinical::date_time(lang, at, viewer.tz_minutes))
                        .unwrap_or_default(),
                    text,
                }),
                _ => None,
            })
            .collect(),
        Err(e) => return record_problem(lang, &e),
    };
    render(
        StatusCode::OK,
        &VisitPage {
            shell,
            clinician: ticket.role == Role::Clinician,
            // A JSON data block, never run: `<` only occurs inside strings, where `\u003c` means
            // the same.
            ice: state
                .telehealth
                .ice_config(&ticket)
                .to_string()
                .replace('<', "\\u003c"),
            appointment: id,
            thread,
            chat,
            closed: None,
        },
    )
}

/// Whether a WebSocket handshake comes from a page of this node (the session cookie is
/// SameSite=Lax, and the Origin must name this host too).
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
    match (host, origin) {
        (Some(h), Some(o)) => {
            o.strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"))
                == Some(h)
        }
        _ => false,
    }
}

/// `GET /visits/{appointment}/signal`: the WebSocket that relays the visit's signalling.
pub async fn signal(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if !same_origin(&headers) {
        return problem(viewer.lang, Problem::Forbidden);
    }
    if !valid_id(&id) {
        return problem(viewer.lang, Problem::NotFound);
    }
    let ticket = match state.telehealth.ticket(&viewer.ctx, &id).await {
        Ok(t) => t,
        Err(e) => return record_problem(viewer.lang, &e),
    };
    ws.max_message_size(medmesh_telehealth::MAX_SIGNAL)
        .on_upgrade(move |socket| relay(state, ticket, socket))
        .into_response()
}

async fn relay(state: AppState, ticket: Ticket, socket: WebSocket) {
    let joined = match state.telehealth.join(&ticket) {
        Ok(j) => j,
        Err(_) => {
            let (mut sink, _) = socket.split();
            let _ = sink.send(Message::Text(r#"{"type":"full"}"#.into())).await;
            return;
        }
    };
    let peer = joined.peer;
    let (mut sink, mut stream) = socket.split();
    let mut rx = joined.rx;
    let forward = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    });
    let receive = async {
        while let Some(Ok(message)) = stream.next().await {
            match message {
                Message::Text(text) => {
                    if let Err(e) = state.telehealth.handle(&ticket, peer, text.as_str()).await {
                        tracing::debug!(error = %e, "a signalling message was refused");
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(MAX_CALL_SECS), receive).await;
    state.telehealth.leave(&ticket, peer).await;
    forward.abort();
}
