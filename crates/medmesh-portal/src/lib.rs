//! The web portals, server-rendered by the node: the patient's, the clinician's and the
//! admin area. An inbound adapter beside the JSON and FHIR APIs of `medmesh-server`: pages
//! call the same application services with the signed-in user's context, so the PDP, the
//! audit log and encryption apply unchanged.
//!
//! Conventions (`docs/portal.md`): a page is a module under `pages/`, a template under
//! `templates/`, a route in [`routes`], and a browser test. Pages extend
//! `templates/layout.html` and take a [`layout::Shell`]; every string comes from the Fluent
//! catalogs ([`i18n`]); answers go through [`layout::render`], which sets the security
//! headers (a strict Content-Security-Policy with no inline script or style, no framing,
//! `no-store`). Assets are embedded and served from `/static/`.

pub mod assets;
pub mod chart;
pub mod clinical;
pub mod i18n;
pub mod layout;
pub mod pages;
pub mod viewer;

use axum::Router;
use axum::routing::{get, post};
use medmesh_server::AppState;

/// The portal's routes, merged into the node's router by the binary.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/home", get(pages::home::home))
        .route("/record", get(pages::record::record))
        .route("/sharing", get(pages::sharing::sharing))
        .route("/my-data", get(pages::my_data::my_data))
        .route("/my-data/record.json", get(pages::my_data::download))
        .route("/my-data/research", post(pages::my_data::research))
        .route("/static/{name}", get(assets::asset))
        .route("/manifest.webmanifest", get(assets::manifest))
        .route("/sw.js", get(assets::service_worker))
}
