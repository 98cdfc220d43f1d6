//! A Nightscout stand-in on loopback, for tests: the v1 read API as cgm-remote-monitor
//! answers it (entries newest first by `date`, treatments newest first by `created_at`,
//! `find[field][$gte|$gt|$lte|$lt]` and `count`, the `api-secret` header or the `token`
//! parameter), over documents given to it. It can cap `count` as a proxy might, and counts
//! the requests it answers. The real server needs MongoDB, which this machine's registries
//! do not carry.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

/// What the stand-in holds and how it answers.
#[derive(Debug, Clone, Default)]
pub struct Site {
    /// Entries (`sgv`, `mbg`, `cal`).
    pub entries: Vec<Value>,
    /// Treatments.
    pub treatments: Vec<Value>,
    /// Profiles.
    pub profile: Vec<Value>,
    /// The `API_SECRET`, when reading needs one.
    pub secret: Option<String>,
    /// An access token that may read.
    pub token: Option<String>,
    /// The most documents one answer holds, whatever `count` asks (0: no cap).
    pub max_count: usize,
}

/// A running stand-in.
#[derive(Debug)]
pub struct StandIn {
    /// Where it listens (`http://{addr}/`).
    pub addr: SocketAddr,
    /// Requests answered so far.
    pub requests: Arc<AtomicUsize>,
}

struct Shared {
    site: Site,
    requests: Arc<AtomicUsize>,
}

/// Starts the stand-in on an ephemeral loopback port.
///
/// # Errors
/// The port cannot be bound.
pub async fn serve(site: Site) -> std::io::Result<StandIn> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let requests = Arc::new(AtomicUsize::new(0));
    let shared = Arc::new(Shared {
        site,
        requests: Arc::clone(&requests),
    });
    let app = axum::Router::new()
        .route("/api/v1/{collection}", get(collection))
        .with_state(shared);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(StandIn { addr, requests })
}

fn allowed(shared: &Shared, headers: &HeaderMap, q: &HashMap<String, String>) -> bool {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let site = &shared.site;
    if site.secret.is_none() && site.token.is_none() {
        return true;
    }
    let by_secret = site.secret.as_deref().is_some_and(|s| {
        headers.get("api-secret").and_then(|h| h.to_str().ok())
            == Some(crate::api_secret_header(s).as_str())
    });
    let by_token = site
        .token
        .as_deref()
        .is_some_and(|t| q.get("token").map(String::as_str) == Some(t));
    by_secret || by_token
}

/// Whether `v` meets every `find[field][op]` condition in `q`.
fn matches(v: Option<&Value>, field: &str, q: &HashMap<String, String>) -> bool {
    let ops = ["$gte", "$gt", "$lte", "$lt"];
    ops.iter().all(|op| {
        let Some(bound) = q.get(&format!("find[{field}][{op}]")) else {
            return true;
        };
        let ord = match v {
            Some(Value::Number(n)) => match (n.as_f64(), bound.parse::<f64>()) {
                (Some(a), Ok(b)) => a.partial_cmp(&b),
                _ => None,
            },
            Some(Value::String(s)) => Some(s.as_str().cmp(bound.as_str())),
            _ => None,
        };
        match (ord, *op) {
            (None, _) => false,
            (Some(o), "$gte") => o.is_ge(),
            (Some(o), "$gt") => o.is_gt(),
            (Some(o), "$lte") => o.is_le(),
            (Some(o), _) => o.is_lt(),
        }
    })
}

fn query(shared: &Shared, docs: &[Value], field: &str, q: &HashMap<String, String>) -> Response {
    let mut found: Vec<&Value> = docs
        .iter()
        .filter(|d| matches(d.get(field), field, q))
        .collect();
    found.sort_by(|a, b| {
        let key = |d: &Value| d.get(field).map(Value::to_string).unwrap_or_default();
        match (a.get(field), b.get(field)) {
            (Some(Value::Number(x)), Some(Value::Number(y))) => y
                .as_f64()
                .partial_cmp(&x.as_f64())
                .unwrap_or(std::cmp::Ordering::Equal),
            _ => key(b).cmp(&key(a)),
        }
    });
    let mut count = q
        .get("count")
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(10);
    if shared.site.max_count > 0 {
        count = count.min(shared.site.max_count);
    }
    found.truncate(count);
    Json(found).into_response()
}

/// `GET /api/v1/{entries,treatments,profile}.json`.
async fn collection(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !allowed(&shared, &headers, &q) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let site = &shared.site;
    match name.as_str() {
        "entries.json" => query(&shared, &site.entries, "date", &q),
        "treatments.json" => query(&shared, &site.treatments, "created_at", &q),
        "profile.json" => Json(site.profile.clone()).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}
