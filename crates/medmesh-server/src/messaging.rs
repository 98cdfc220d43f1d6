//! Secure messaging on the JSON API: `/api/messages/threads`, a thread's messages, read
//! receipts, the unread count and the live stream (Server-Sent Events). Extract, call
//! [`medmesh_messaging::MessagingService`], render.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use medmesh_messaging::{Body, NewThread, ThreadSummary, ThreadView};
use serde_json::{Value, json};

use crate::AppState;
use crate::api::{ApiJson, ApiPath};
use crate::auth::Authenticated;
use crate::response::ApiError;

/// `POST /api/messages/threads` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewThreadBody {
    /// The subject line.
    pub topic: String,
    /// The patient it is about (an id).
    #[serde(default)]
    pub about: Option<String>,
    /// The other parties (`Practitioner/x`, `Patient/p`, `CareTeam/t`, `Organization/o`).
    #[serde(default)]
    pub parties: Vec<String>,
    /// Sealed end to end.
    #[serde(default)]
    pub sealed: bool,
}

/// A thread in a list, as JSON.
pub fn summary_json(t: &ThreadSummary) -> Value {
    json!({
        "id": t.id, "topic": t.topic,
        "about": t.about.as_ref().map(|(id, name)| json!({"id": id, "name": name})),
        "parties": t.parties.iter().map(|(r, n)| json!({"reference": r, "name": n})).collect::<Vec<_>>(),
        "last": t.last, "unread": t.unread, "sealed": t.sealed,
    })
}

fn thread_json(v: &ThreadView) -> Value {
    json!({
        "thread": summary_json(&v.summary),
        "reader": v.reader,
        "messages": v.messages.iter().map(|m| json!({
            "id": m.id,
            "sender": {"reference": m.sender.0, "name": m.sender.1},
            "sent": m.sent,
            "text": match &m.body { Some(Body::Text(t)) => Some(t.as_str()), _ => None },
            "sealed": match &m.body { Some(Body::Sealed(e)) => Some(e.as_str()), _ => None },
            "attachments": m.attachments,
            "readBy": m.read_by.iter().map(|(n, at)| json!({"name": n, "at": at})).collect::<Vec<_>>(),
            "mine": m.mine,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /api/messages/threads`: the caller's threads, newest first, with unread counts.
pub async fn threads(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
) -> Result<Response, ApiError> {
    let list = state.messaging.threads(&ctx).await?;
    Ok(Json(json!({"threads": list.iter().map(summary_json).collect::<Vec<_>>()})).into_response())
}

/// `POST /api/messages/threads`: 201 with the thread's id.
pub async fn create_thread(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiJson(body): ApiJson<NewThreadBody>,
) -> Result<Response, ApiError> {
    let id = state
        .messaging
        .create_thread(
            &ctx,
            NewThread {
                topic: body.topic,
                about: body.about,
                parties: body.parties,
                sealed: body.sealed,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
}

/// `GET /api/messages/threads/{id}`: the thread and its messages (nothing marked read).
pub async fn thread(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let v = state.messaging.thread(&ctx, &id, false).await?;
    Ok(Json(thread_json(&v)).into_response())
}

/// `POST /api/messages/threads/{id}/read`: the caller's receipts on what they had not read;
/// the thread as it is then.
pub async fn read(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let v = state.messaging.thread(&ctx, &id, true).await?;
    Ok(Json(thread_json(&v)).into_response())
}

/// `POST /api/messages/threads/{id}/messages` body: `text`, or `sealed` (the envelope, a
/// JSON string) in a sealed thread; `attachments` (DocumentReference ids).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    /// The text.
    #[serde(default)]
    pub text: Option<String>,
    /// The sealed envelope.
    #[serde(default)]
    pub sealed: Option<String>,
    /// Documents of the thread's patient.
    #[serde(default)]
    pub attachments: Vec<String>,
}

/// `POST /api/messages/threads/{id}/messages`: 201 with the message's id.
pub async fn send(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SendBody>,
) -> Result<Response, ApiError> {
    let content = match (body.text, body.sealed) {
        (Some(t), None) => Body::Text(t),
        (None, Some(s)) => Body::Sealed(s),
        _ => {
            return Err(ApiError::bad_request(
                "a message has text or a sealed envelope, not both",
            ));
        }
    };
    let mid = state
        .messaging
        .send(&ctx, &id, content, body.attachments)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"id": mid}))).into_response())
}

/// `GET /api/messages/unread`: how many messages the caller has still to read.
pub async fn unread(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
) -> Result<Response, ApiError> {
    Ok(Json(json!({"unread": state.messaging.unread(&ctx).await?})).into_response())
}

/// How long one live stream lasts (the browser's `EventSource` reconnects by itself).
const LIVE_FOR: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// `GET /api/messages/live`: Server-Sent Events of the caller's threads: `message` and
/// `read` (data: the thread's id), `resync` when events were missed or every
/// [`medmesh_messaging::live::RESYNC_EVERY`] seconds (another replica's messages). No text
/// travels on the stream.
pub async fn live(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
) -> Result<Response, ApiError> {
    let sub = state.messaging.subscribe(&ctx).await?;
    Ok(live_stream(sub))
}

/// The Server-Sent Events of a subscription (the portal's stream too).
pub fn live_stream(sub: medmesh_messaging::Subscription) -> Response {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt;
    use medmesh_messaging::Next;
    let resync = std::time::Duration::from_secs(medmesh_messaging::live::RESYNC_EVERY);
    let events = futures::stream::unfold(sub, move |mut sub| async move {
        let event = match tokio::time::timeout(resync, sub.next()).await {
            Ok(Next::Event(e)) => Event::default().event(e.kind).data(e.thread),
            Ok(Next::Resync) | Err(_) => Event::default().event("resync").data(""),
            Ok(Next::Closed) => return None,
        };
        Some((Ok::<_, std::convert::Infallible>(event), sub))
    })
    .take_until(tokio::time::sleep(LIVE_FOR));
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
