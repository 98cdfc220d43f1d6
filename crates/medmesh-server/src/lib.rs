//! The HTTP adapter: the FHIR REST API on axum.
//!
//! Routes map to thin handlers ([`handlers`]); authentication yields the request context
//! ([`auth`]); every error leaves through one mapping to an OperationOutcome ([`response`]).

pub mod account_api;
pub mod api;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod capability_statement;
pub mod care;
pub mod devices;
pub mod directory;
pub mod documents;
pub mod external;
pub mod handlers;
pub mod hl7v2;
pub mod listener;
pub mod medications;
pub mod messaging;
pub mod oauth;
pub mod operations;
pub mod response;
pub mod scheduling;
pub mod subscriptions;
pub mod web;

use std::sync::Arc;

use axum::Router;
use axum::http::request::Parts;
use axum::http::{HeaderName, Request, header};
use axum::routing::{delete, get, post, put};
use medmesh_audit_log::AuditLogService;
use medmesh_export::BulkExport;
use medmesh_identity::IdentityService;
use medmesh_records::RecordService;
use medmesh_trust_network::TrustNetwork;
use medmesh_vault::DocumentVault;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Shared state of the HTTP adapter.
#[derive(Clone)]
pub struct AppState {
    /// The record service.
    pub records: Arc<RecordService>,
    /// The document vault and key directory.
    pub vault: Arc<DocumentVault>,
    /// The trust network's operations.
    pub trust: Arc<TrustNetwork>,
    /// Bulk export.
    pub export: Arc<BulkExport>,
    /// Identity: login, sessions, the authorization server, token verification.
    pub identity: Arc<IdentityService>,
    /// External OpenID Connect providers.
    pub external: Arc<external::ExternalLogin>,
    /// The audit log's checkpoints and proofs.
    pub audit_log: Arc<AuditLogService>,
    /// The HL7 v2 interface engine.
    pub hl7: Arc<medmesh_interface_engine::InterfaceEngine>,
    /// The notification hub.
    pub hub: Arc<medmesh_notifications::NotificationHub>,
    /// Appointments: `$find`, `$hold`, `$book`, the directory.
    pub scheduling: Arc<medmesh_scheduling::SchedulingService>,
    /// FHIR Subscriptions (`/fhir/Subscription`).
    pub subscriptions: Arc<medmesh_subscriptions::SubscriptionService>,
    /// Prescribing: the checks, signed activation, the lifecycle (`/api/prescriptions`).
    pub medications: Arc<medmesh_medications::MedicationService>,
    /// Care plans, care teams and worklists (`/api/care-plans`, `/api/worklist`).
    pub care: Arc<medmesh_care::CareService>,
    /// Secure messaging (`/api/messages`).
    pub messaging: Arc<medmesh_messaging::MessagingService>,
    /// Video visits (the portal's `/visits/{id}`).
    pub telehealth: Arc<medmesh_telehealth::TelehealthService>,
    /// Device data and glucose analytics (`/api/patients/{id}/device-data`, `/glucose`).
    pub devices: Arc<medmesh_devices::DeviceDataService>,
    /// The CapabilityStatement, built once.
    pub capability: Arc<Value>,
    /// Public base URL (`http://host:port/fhir`); when `None`, taken from the Host header.
    pub public_base_url: Option<String>,
    /// Bounds on request bodies.
    pub body_limits: BodyLimits,
    /// Origins whose browser apps may call the FHIR API, the token endpoint and discovery
    /// (CORS); `*` for any. Empty: none.
    pub cors_allowed_origins: Vec<String>,
    /// The parse budget, in JSON values: a body of many values takes one permit per value
    /// while it is parsed and used, so the bodies in flight hold at most this many parsed
    /// values (twice `max_json_values`) however many cores or connections there are, and
    /// the rest wait their turn.
    pub parse_budget: Arc<tokio::sync::Semaphore>,
    export_queue: mpsc::UnboundedSender<String>,
}

/// Bounds on what one request body may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Bytes (413 past it).
    pub max_body_bytes: usize,
    /// JSON values: objects, arrays and members (400 `too-costly` past it).
    pub max_json_values: usize,
    /// Entries of one Bundle posted to `/fhir` (400 `too-costly` past it).
    pub max_bundle_entries: usize,
}

impl BodyLimits {
    /// The parse budget's size in JSON values: twice `max_json_values`, so a body at the
    /// bound always fits, held to what a semaphore can count (a larger setting would
    /// otherwise stop the node at start).
    pub fn parse_budget(&self) -> usize {
        self.max_json_values
            .saturating_mul(2)
            .min(tokio::sync::Semaphore::MAX_PERMITS)
    }
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY,
            max_json_values: 200_000,
            max_bundle_entries: 1000,
        }
    }
}

/// Bodies at least this large have their JSON values counted off the async workers.
pub const LARGE_BODY: usize = 1024 * 1024;

impl AppState {
    /// The FHIR base URL for this request.
    pub fn base_url(&self, parts: &Parts) -> String {
        self.fhir_base(&parts.headers)
    }
    /// The FHIR base URL for a request's headers (the `aud` SMART apps name).
    pub fn fhir_base(&self, headers: &axum::http::HeaderMap) -> String {
        if let Some(b) = &self.public_base_url {
            return b.clone();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}/fhir")
    }

    /// External sign-in providers offered on the login page: `(id, display name)`.
    pub fn login_providers(&self) -> Vec<(String, String)> {
        self.external.list()
    }

    /// Queues an export job for the worker.
    pub fn enqueue_export(&self, job: String) {
        if self.export_queue.send(job).is_err() {
            tracing::error!("the export worker has stopped; the job stays queued until restart");
        }
    }
}

/// What the server needs at start.
pub struct ServerConfig {
    /// Public base URL, if fixed.
    pub public_base_url: Option<String>,
    /// Bounds on request bodies.
    pub body_limits: BodyLimits,
    /// Origins allowed to call cross-origin (CORS).
    pub cors_allowed_origins: Vec<String>,
    /// Version string for the CapabilityStatement.
    pub software_version: String,
}

/// The application services the HTTP adapter calls, one per capability.
#[derive(Clone)]
pub struct Services {
    /// FHIR interactions, bundles, `$everything`, import.
    pub records: Arc<RecordService>,
    /// Documents and the key directory.
    pub vault: Arc<DocumentVault>,
    /// Break-glass, referrals, the access map, notifications.
    pub trust: Arc<TrustNetwork>,
    /// Bulk export.
    pub export: Arc<BulkExport>,
    /// The audit log's checkpoints and proofs.
    pub audit_log: Arc<AuditLogService>,
    /// Identity.
    pub identity: Arc<IdentityService>,
    /// The HL7 v2 interface engine (`POST /api/hl7v2`).
    pub hl7: Arc<medmesh_interface_engine::InterfaceEngine>,
    /// The notification hub (`/api/account/notifications`).
    pub hub: Arc<medmesh_notifications::NotificationHub>,
    /// Appointments (`Appointment/$find`, `$hold`, `$book`, `/api/appointments`).
    pub scheduling: Arc<medmesh_scheduling::SchedulingService>,
    /// FHIR Subscriptions (`/fhir/Subscription`, `$status`).
    pub subscriptions: Arc<medmesh_subscriptions::SubscriptionService>,
    /// Prescribing (`/api/prescriptions`).
    pub medications: Arc<medmesh_medications::MedicationService>,
    /// Care plans, care teams and worklists (`/api/care-plans`, `/api/worklist`).
    pub care: Arc<medmesh_care::CareService>,
    /// Secure messaging (`/api/messages`).
    pub messaging: Arc<medmesh_messaging::MessagingService>,
    /// Video visits.
    pub telehealth: Arc<medmesh_telehealth::TelehealthService>,
    /// Device data and glucose analytics.
    pub devices: Arc<medmesh_devices::DeviceDataService>,
}

/// Builds the server's state. The background workers are the binary's to start; the
/// export worker's queue comes in as `export_queue`.
pub fn build_state(
    services: Services,
    export_queue: mpsc::UnboundedSender<String>,
    config: ServerConfig,
) -> AppState {
    let Services {
        records,
        vault,
        trust,
        export,
        audit_log,
        identity,
        hl7,
        hub,
        scheduling,
        subscriptions,
        medications,
        care,
        messaging,
        telehealth,
        devices,
    } = services;
    let capability = capability_statement::capability_statement(
        records.definitions(),
        config.public_base_url.as_deref().unwrap_or(""),
        &config.software_version,
        identity.config().issuer.trim_end_matches('/'),
        !config.cors_allowed_origins.is_empty(),
    );
    let external = Arc::new(external::ExternalLogin::new(
        identity.config().external.clone(),
        identity.config().token_times,
        identity.clock(),
    ));
    AppState {
        records,
        vault,
        trust,
        export,
        identity,
        external,
        audit_log,
        hl7,
        hub,
        scheduling,
        subscriptions,
        medications,
        care,
        messaging,
        telehealth,
        devices,
        capability: Arc::new(capability),
        public_base_url: config.public_base_url,
        body_limits: config.body_limits,
        cors_allowed_origins: config.cors_allowed_origins,
        // Two of the largest bodies at once (~75 MB each parsed, at the default bound), or
        // many ordinary ones; the budget, not the cores, bounds the memory.
        parse_budget: Arc::new(tokio::sync::Semaphore::new(
            config.body_limits.parse_budget(),
        )),
        export_queue,
    }
}

/// CORS for the routes browser apps on other origins call: the configured origins (`*` for
/// any), bearer tokens only (no credentials), and the FHIR headers they need.
fn cors_layer(origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            HeaderName::from_static("if-none-exist"),
            HeaderName::from_static("prefer"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::LAST_MODIFIED,
            header::CONTENT_LOCATION,
            header::RETRY_AFTER,
            HeaderName::from_static("x-progress"),
            HeaderName::from_static("x-request-id"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}

/// The router with every route and layer.
pub fn router(state: AppState) -> Router {
    router_with(state, Pages::default())
}

/// What a front end adds to the node: its routes, and how it says the node's own notices
/// (a failed external sign-in, an app's invalid request) in the reader's language.
#[derive(Default)]
pub struct Pages {
    /// Routes merged into the node's (the portal's, from `medmesh-portal`).
    pub routes: Router<AppState>,
    /// Renders a [`web::Notice`] page; without one the node's pages stay in English.
    pub notices: Option<web::NoticeRenderer>,
}

/// The node's routes with the `pages` merged in: they get the same state, layers and
/// fallback.
pub fn router_with(state: AppState, pages: Pages) -> Router {
    let Pages {
        routes: pages,
        notices,
    } = pages;
    use handlers::*;
    let request_id = HeaderName::from_static("x-request-id");
    // The operations and Binary have routes of their own; a static segment (`$export`,
    // `Binary`) wins over the generic `{rt}`, and a path it does not complete falls back.
    let fhir = Router::new()
        .route("/$export", get(operations::export_system))
        .route("/Patient/$export", get(operations::export_patients))
        .route("/Group/{id}/$export", get(operations::export_group))
        .route(
            "/$export-poll-status/{job}",
            get(operations::export_status).delete(operations::export_cancel),
        )
        .route("/$export-file/{job}/{name}", get(operations::export_file))
        .route("/Patient/{id}/$everything", get(operations::everything))
        .route(
            "/Appointment/$find",
            get(scheduling::find_get).post(scheduling::find_post),
        )
        .route("/Appointment/$hold", post(scheduling::hold))
        .route("/Appointment/$book", post(scheduling::book))
        .route(
            "/Subscription",
            get(subscriptions::search).post(subscriptions::create),
        )
        .route(
            "/Subscription/{id}",
            get(subscriptions::read)
                .put(subscriptions::update)
                .delete(subscriptions::delete),
        )
        .route("/Subscription/{id}/$status", get(subscriptions::status))
        .merge(documents::binary_routes())
        .route("/metadata", get(metadata))
        .route("/", post(root_post))
        .route("/_history", get(system_history))
        .route(
            "/{rt}",
            get(type_get)
                .post(type_post)
                .put(type_put)
                .delete(type_delete),
        )
        .route("/{rt}/_search", post(type_search_post))
        .route("/{rt}/_history", get(type_history))
        .route(
            "/{rt}/{id}",
            get(instance_get)
                .put(instance_put)
                .patch(instance_patch)
                .delete(instance_delete),
        )
        .route("/{rt}/{id}/{op}", get(instance_op))
        .route("/{rt}/{id}/_history/{vid}", get(vread))
        .layer(axum::middleware::from_fn(negotiate));
    // What a SMART app running in a browser on another origin calls: discovery, the token
    // endpoint and the FHIR API. Cookies are never allowed cross-origin.
    let cors = cors_layer(&state.cors_allowed_origins);
    let cross_origin = Router::new()
        .route(
            "/.well-known/smart-configuration",
            get(oauth::smart_configuration),
        )
        .route(
            "/.well-known/openid-configuration",
            get(oauth::openid_configuration),
        )
        .route(
            "/fhir/.well-known/smart-configuration",
            get(oauth::smart_configuration),
        )
        .route("/oauth/jwks", get(oauth::jwks))
        .route("/oauth/token", post(oauth::token))
        .layer(cors.clone());
    Router::new()
        .route("/healthz", get(healthz))
        .merge(cross_origin)
        .route("/oauth/authorize", post(oauth::authorize_decision))
        .route("/oauth/introspect", post(oauth::introspect))
        .route("/oauth/revoke", post(oauth::revoke))
        .route("/oauth/register", post(oauth::register))
        .route("/login/external/{id}", get(external::start))
        .route("/login/external/{id}/callback", get(external::callback))
        .route("/assets/{name}", get(assets::asset))
        .route("/api/hl7v2", post(hl7v2::receive))
        .route("/api/hl7v2/messages", get(hl7v2::list))
        .route("/api/hl7v2/messages/{id}", get(hl7v2::show))
        .route("/api/hl7v2/messages/{id}/replay", post(hl7v2::replay))
        .route("/api/hl7v2/stats", get(hl7v2::stats))
        .route("/api/account", get(account_api::account))
        .route("/api/account/link", post(account_api::link_patient))
        .route(
            "/api/account/notifications",
            get(account_api::notification_settings).put(account_api::set_notification_settings),
        )
        .route(
            "/api/account/notifications/webhook",
            put(account_api::set_webhook).delete(account_api::remove_webhook),
        )
        .route("/api/invitations", post(account_api::create_invitation))
        .route(
            "/api/users/{id}/verification",
            post(account_api::set_verification),
        )
        .route("/api/account/totp", post(account_api::start_totp))
        .route("/api/account/totp/confirm", post(account_api::confirm_totp))
        .route("/api/launch", post(account_api::make_launch))
        .route(
            "/api/audit/checkpoint",
            get(audit::latest_checkpoint).post(audit::sign_checkpoint),
        )
        .route("/api/audit/key", get(audit::log_key))
        .route("/api/audit/witnesses", get(audit::witnesses))
        .route(
            "/api/audit/cosignatures",
            post(audit::post_cosignatures).layer(axum::extract::DefaultBodyLimit::max(
                medmesh_audit::witness::MAX_REQUEST_BYTES,
            )),
        )
        .route("/api/audit/consistency", get(audit::consistency))
        .route("/api/audit/entries/{index}/proof", get(audit::entry_proof))
        .route("/api/patients/{id}/audit", get(audit::patient_log))
        .route("/api/patients/{id}/access", get(audit::access_map))
        .route("/api/patients/{id}/break-glass", post(audit::break_glass))
        .route(
            "/api/patients/{id}/notifications",
            get(audit::notifications),
        )
        .route(
            "/api/patients/{id}/notifications/{nid}/read",
            post(audit::mark_notification_read),
        )
        .route("/api/referrals/{task}/accept", post(audit::accept_referral))
        .route(
            "/api/appointments/{id}/cancel",
            post(scheduling::api_cancel),
        )
        .route(
            "/api/appointments/{id}/reschedule",
            post(scheduling::api_reschedule),
        )
        .route(
            "/api/appointments/{id}/{action}",
            post(scheduling::api_staff),
        )
        .route("/api/appointments/waitlist", post(scheduling::api_waitlist))
        .route("/api/appointments/figures", get(scheduling::api_figures))
        .route("/api/directory", get(scheduling::api_directory))
        .route("/api/prescriptions", post(medications::prescribe))
        .route(
            "/api/prescriptions/{id}/signing-text",
            get(medications::signing_text),
        )
        .route(
            "/api/prescriptions/{id}/activate",
            post(medications::activate),
        )
        .route("/api/prescriptions/{id}/status", post(medications::status))
        .route("/api/prescriptions/{id}/signed", get(medications::signed))
        .route("/api/prescriptions/{id}/pdf", get(medications::pdf))
        .route(
            "/api/prescriptions/{id}/dispense",
            post(medications::dispense),
        )
        .route(
            "/api/prescriptions/{id}/return",
            post(medications::return_prescription),
        )
        .route("/api/prescriptions/{id}/route", post(medications::route))
        .route(
            "/api/prescriptions/{id}/refill-request",
            post(medications::request_refill),
        )
        .route(
            "/api/refill-requests/{task}/decide",
            post(medications::decide_refill),
        )
        .route("/api/worklist/medications", get(medications::worklist))
        .route("/api/worklist", get(care::worklist))
        .route(
            "/api/patients/{id}/device-data",
            post(devices::upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route(
            "/api/patients/{id}/device-data/nightscout",
            post(devices::pull_nightscout),
        )
        .route("/api/patients/{id}/glucose/summary", get(devices::summary))
        .route(
            "/api/patients/{id}/glucose/readings",
            get(devices::readings),
        )
        .route("/api/patients/{id}/glucose/agp.svg", get(devices::agp_svg))
        .route("/api/patients/{id}/glucose/agp.pdf", get(devices::agp_pdf))
        .route(
            "/api/patients/{id}/glucose/correlations",
            get(devices::correlations),
        )
        .route(
            "/api/patients/{id}/glucose/forecast",
            get(devices::forecast),
        )
        .route("/api/glucose/panel", get(devices::panel))
        .route(
            "/api/patients/{id}/glucose/cgm-bundle",
            get(devices::cgm_bundle),
        )
        .route(
            "/api/messages/threads",
            get(messaging::threads).post(messaging::create_thread),
        )
        .route("/api/messages/threads/{id}", get(messaging::thread))
        .route("/api/messages/threads/{id}/read", post(messaging::read))
        .route("/api/messages/threads/{id}/messages", post(messaging::send))
        .route("/api/messages/unread", get(messaging::unread))
        .route("/api/messages/live", get(messaging::live))
        .route(
            "/api/patients/{id}/care-plans",
            get(care::plans).post(care::create_plan),
        )
        .route("/api/care-plans/{id}", get(care::plan))
        .route("/api/care-plans/{id}/changes", post(care::change))
        .route(
            "/api/care-plan-proposals/{task}/decision",
            post(care::decide),
        )
        .route("/api/patients/{id}/care-team", get(care::team))
        .route(
            "/api/patients/{id}/care-team/members",
            post(care::add_member),
        )
        .route(
            "/api/patients/{id}/care-team/members/{practitioner}/end",
            post(care::end_member),
        )
        .route(
            "/api/adherence-reviews/{task}/close",
            post(medications::close_review),
        )
        .route("/api/pharmacy/queue", get(medications::queue))
        .route("/api/prescriptions/{id}/doses", post(medications::log_dose))
        .route("/api/patients/{id}/doses", get(medications::doses_of_day))
        .route("/api/patients/{id}/adherence", get(medications::adherence))
        .route(
            "/api/patients/{id}/pharmacies",
            get(medications::pharmacies).put(medications::choose_pharmacies),
        )
        .route("/api/account/inbox", get(audit::staff_inbox))
        .route(
            "/api/account/inbox/{nid}/read",
            post(audit::mark_staff_notification_read),
        )
        .route(
            "/api/account/calendar-feed",
            post(scheduling::api_create_feed).delete(scheduling::api_revoke_feed),
        )
        .route("/feeds/{file}", get(scheduling::feed))
        .route("/api/break-glass", get(audit::break_glass_queue))
        // The vault checks sizes itself, while streaming; axum's 2 MiB default would cut it.
        .route(
            "/api/documents",
            post(documents::documents_post).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/api/documents/{id}/link", get(documents::document_link))
        .route("/api/blobs/{ticket}", get(documents::blob_get))
        .route(
            "/api/keys",
            post(directory::register_key).get(directory::list_keys),
        )
        .route("/api/keys/{key}", delete(directory::revoke_key))
        .route(
            "/api/sealed/{binary}/keys",
            get(directory::my_sealed_keys).post(directory::share_sealed),
        )
        .route("/api/sealed/{binary}/shares", get(directory::sealed_shares))
        .route(
            "/api/sealed/{binary}/keys/{recipient}",
            delete(directory::revoke_sealed),
        )
        .route("/fhir/", post(handlers::root_post))
        .nest("/fhir", fhir.layer(cors.clone()))
        .route("/", get(front_door))
        .merge(pages)
        .fallback(not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                say_notice(notices, req, next)
            },
        ))
        // Every answer gets `nosniff`, and a method a route does not take a body (axum
        // answers an empty 405; `method_not_allowed_fallback` would replace the CORS layer's
        // preflight answers).
        .layer(axum::middleware::from_fn(finish_response))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                // The operation id goes in every log line; the URL does not (it may carry
                // search values, which can be PHI).
                let op = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                tracing::info_span!("request", operation_id = %op, method = %req.method())
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// `GET /`: people are sent to sign in (and on to their account); programs find the FHIR
/// base in the `Link` header.
async fn front_door() -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut r = axum::response::Redirect::to("/login").into_response();
    response::set_header(
        r.headers_mut(),
        header::LINK,
        "</fhir/metadata>; rel=\"service-desc\", </.well-known/smart-configuration>; rel=\"describedby\"",
    );
    r
}

/// The JSON (or, under `/fhir`, OperationOutcome) answer for a path or method the node does
/// not serve: never an empty body.
fn unserved(fhir: bool, status: axum::http::StatusCode, message: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    if fhir {
        return response::outcome(
            status,
            &[medmesh_fhir::Issue::error(
                if status == axum::http::StatusCode::NOT_FOUND {
                    medmesh_fhir::IssueType::NotFound
                } else {
                    medmesh_fhir::IssueType::NotSupported
                },
                message,
            )],
        );
    }
    (
        status,
        axum::Json(serde_json::json!({
            "error": if status == axum::http::StatusCode::NOT_FOUND { "not_found" } else { "method_not_allowed" },
            "message": message,
            "fhir": "/fhir/metadata",
        })),
    )
        .into_response()
}

/// Whether a path is under the FHIR API (its errors are OperationOutcomes).
fn is_fhir_path(path: &str) -> bool {
    path == "/fhir" || path.starts_with("/fhir/")
}

async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    unserved(
        is_fhir_path(uri.path()),
        axum::http::StatusCode::NOT_FOUND,
        "no such endpoint on this node",
    )
}

/// Re-renders a page marked with a [`web::Notice`] through the front end's renderer, in the
/// request's language, keeping its status and headers.
async fn say_notice(
    renderer: Option<web::NoticeRenderer>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    // Only the paths that answer with notices are looked at; every other request (the FHIR
    // API's above all) passes straight through.
    let path = req.uri().path();
    let Some(render) = renderer.filter(|_| web::NOTICE_PATHS.iter().any(|p| path.starts_with(p)))
    else {
        return next.run(req).await;
    };
    // What the language is read from: the cookie and `Accept-Language` (cheap clones).
    let mut headers = axum::http::HeaderMap::new();
    for name in [header::COOKIE, header::ACCEPT_LANGUAGE] {
        for v in req.headers().get_all(&name) {
            headers.append(name.clone(), v.clone());
        }
    }
    let mut r = next.run(req).await;
    let Some(notice) = r.extensions_mut().remove::<web::Notice>() else {
        return r;
    };
    match render(&headers, &notice) {
        Some(html) => {
            let (mut parts, _) = r.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            axum::response::Response::from_parts(parts, axum::body::Body::from(html))
        }
        None => r,
    }
}

async fn finish_response(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    // Only a flag outlives the request: this runs on every request, and the path matters
    // only for the rare 405.
    let fhir = is_fhir_path(req.uri().path());
    let mut r = next.run(req).await;
    // No response of the node is ever to be sniffed into another type (a JSON body holding
    // a patient's text rendered as HTML, say).
    if !r.headers().contains_key("x-content-type-options") {
        r.headers_mut().insert(
            HeaderName::from_static("x-content-type-options"),
            axum::http::HeaderValue::from_static("nosniff"),
        );
    }
    if r.status() == axum::http::StatusCode::METHOD_NOT_ALLOWED
        && !r.headers().contains_key(header::CONTENT_TYPE)
    {
        let mut explained = unserved(
            fhir,
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            "this endpoint does not take that method",
        );
        if let Some(allow) = r.headers().get(header::ALLOW) {
            explained.headers_mut().insert(header::ALLOW, allow.clone());
        }
        return explained;
    }
    r
}

/// Serves until `shutdown` resolves.
///
/// # Errors
/// If the listener fails.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    limits: listener::ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, Pages::default(), limits, shutdown).await
}

/// [`serve`], with the portal's `pages` merged in ([`router_with`]).
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    pages: Pages,
    limits: listener::ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener::serve_bounded(listener, router_with(state, pages), limits, shutdown).await
}

/// Default largest body: 8 MiB, in line with what hosted FHIR servers take (a Synthea
/// patient's whole history is about 1 MB; documents have their own, streamed limit).
pub const DEFAULT_MAX_BODY: usize = 8 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parse_budget_holds_two_bodies_at_the_bound_and_never_stops_the_node() {
        assert_eq!(BodyLimits::default().parse_budget(), 400_000);
        let huge = BodyLimits {
            max_json_values: usize::MAX / 2,
            ..BodyLimits::default()
        };
        assert_eq!(huge.parse_budget(), tokio::sync::Semaphore::MAX_PERMITS);
        let semaphore = tokio::sync::Semaphore::new(huge.parse_budget());
        assert_eq!(semaphore.available_permits(), huge.parse_budget());
    }
}
