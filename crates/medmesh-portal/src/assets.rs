//! The portal's static files, embedded in the binary and served from `/static/`: the
//! stylesheet and the small scripts (no inline script or style anywhere), the web-app
//! manifest and the service worker, which caches the static files only, never a page
//! (pages hold health data).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Every static file: name, content type, bytes.
pub const FILES: &[(&str, &str, &str)] = &[
    (
        "portal.css",
        "text/css; charset=utf-8",
        include_str!("../assets/portal.css"),
    ),
    (
        "portal.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/portal.js"),
    ),
    (
        "access-log.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/access-log.js"),
    ),
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/vendor/htmx.min.js"),
    ),
    (
        "upload.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/upload.js"),
    ),
    (
        "common.mjs",
        "text/javascript; charset=utf-8",
        include_str!("../assets/common.mjs"),
    ),
    (
        "sealing.mjs",
        "text/javascript; charset=utf-8",
        include_str!("../assets/sealing.mjs"),
    ),
    (
        "sign.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/sign.js"),
    ),
    (
        "messages.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/messages.js"),
    ),
    (
        "visit.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/visit.js"),
    ),
    (
        "sealed.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/sealed.js"),
    ),
    (
        "hpke.min.mjs",
        "text/javascript; charset=utf-8",
        include_str!("../assets/vendor/hpke.min.mjs"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_str!("../assets/icon.svg"),
    ),
];

fn file(kind: &'static str, body: &'static str, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, cache),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `GET /static/{name}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => file(kind, body, "no-cache"),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `GET /manifest.webmanifest`: installable as a web app.
pub async fn manifest() -> Response {
    file(
        "application/manifest+json",
        include_str!("../assets/manifest.webmanifest"),
        "no-cache",
    )
}

/// `GET /sw.js`: the service worker, at the root so its scope is the whole portal.
pub async fn service_worker() -> Response {
    file(
        "text/javascript; charset=utf-8",
        include_str!("../assets/sw.js"),
        "no-cache",
    )
}
