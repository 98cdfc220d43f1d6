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

pub use pages::sign_in::render_notice;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::{Extension, Router};
use medmesh_key_admin::KeyAdministration;
use medmesh_server::AppState;

/// What the portal needs beyond the node's [`AppState`]: the key administration its key
/// status page reads (through the PDP's `KeyStatusView`).
pub struct PortalServices {
    /// Key administration.
    pub keys: Arc<KeyAdministration>,
}

/// The portal's routes, merged into the node's router by the binary.
pub fn routes(services: PortalServices) -> Router<AppState> {
    Router::new()
        // Signing in and out, creating an account.
        .route(
            "/login",
            get(pages::sign_in::login_form).post(pages::sign_in::login_submit),
        )
        .route("/login/code", post(pages::sign_in::login_code))
        .route("/logout", post(pages::sign_in::logout))
        .route(
            "/register",
            get(pages::sign_in::register_form).post(pages::sign_in::register_submit),
        )
        .route("/oauth/authorize", get(pages::consent::authorize))
        // Everyone signed in.
        .route("/home", get(pages::home::home))
        .route("/account/inbox/{id}/read", post(pages::home::mark_read))
        .route("/account/sessions", get(pages::sessions::sessions))
        .route(
            "/account/notifications",
            get(pages::notifications::notifications).post(pages::notifications::save_notifications),
        )
        .route(
            "/account/notifications/live",
            get(pages::notifications::live),
        )
        .route("/account/sessions/end", post(pages::sessions::end_session))
        .route("/account/calendar-feed", post(pages::feed::create))
        .route("/account/calendar-feed/stop", post(pages::feed::stop))
        .route("/account/documents", get(pages::documents::upload))
        .route("/account", get(pages::account::account))
        .route("/account/language", post(pages::account::language))
        .route("/account/totp", post(pages::account::totp_start))
        .route("/account/totp/confirm", post(pages::account::totp_confirm))
        .route("/account/link", post(pages::account::link))
        // Patients.
        .route("/record", get(pages::record::record))
        .route("/sharing", get(pages::sharing::sharing))
        .route("/sharing/find", post(pages::sharing::find))
        .route("/sharing/grant", post(pages::sharing::grant))
        .route("/sharing/block", post(pages::sharing::block))
        .route("/sharing/withdraw", post(pages::sharing::withdraw))
        .route("/sharing/referral", post(pages::sharing::referral))
        .route("/sharing/rule", post(pages::sharing::rule))
        .route("/account/audit", get(pages::access_log::access_log))
        .route("/documents", get(pages::documents::documents))
        .route("/documents/{binary}", get(pages::documents::open))
        .route("/documents/{binary}/sealed", get(pages::sealed::sealed))
        .route(
            "/documents/{binary}/sealed/revoke",
            post(pages::sealed::revoke),
        )
        .route("/appointments", get(pages::appointments::appointments))
        .route("/medications", get(pages::medications::medications))
        .route("/pharmacy", get(pages::pharmacy::queue))
        .route("/pharmacy/{id}/dispense", post(pages::pharmacy::dispense))
        .route(
            "/pharmacy/{id}/return",
            post(pages::pharmacy::return_prescription),
        )
        .route(
            "/medications/pharmacies",
            post(pages::medications::choose_pharmacies),
        )
        .route("/medications/{id}/dose", post(pages::medications::log_dose))
        .route(
            "/medications/{id}/refill",
            post(pages::medications::request_refill),
        )
        .route("/appointments/book", post(pages::appointments::book))
        .route("/appointments/waitlist", post(pages::appointments::wait))
        .route(
            "/appointments/{id}/book",
            post(pages::appointments::book_held),
        )
        .route(
            "/appointments/{id}/cancel",
            post(pages::appointments::cancel),
        )
        .route(
            "/appointments/{id}/move",
            post(pages::appointments::move_to),
        )
        .route("/my-data", get(pages::my_data::my_data))
        .route("/my-data/record.json", get(pages::my_data::download))
        .route("/my-data/research", post(pages::my_data::research))
        // Clinicians.
        .route(
            "/patients",
            get(pages::patients::patients).post(pages::patients::search),
        )
        .route("/patients/emergency", post(pages::patients::emergency))
        .route("/patients/{id}", get(pages::chart::chart))
        .route("/patients/{id}/invite", post(pages::chart::invite))
        .route(
            "/patients/{id}/prescribe",
            get(pages::prescribe::form).post(pages::prescribe::prescribe),
        )
        .route("/prescriptions/{id}/sign", get(pages::prescribe::sign))
        .route("/care", get(pages::care::care))
        .route("/glucose", get(pages::glucose::own))
        .route("/glucose/panel", get(pages::glucose::panel))
        .route(
            "/glucose/upload",
            post(pages::glucose::upload_own).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/patients/{id}/glucose", get(pages::glucose::of_patient))
        .route("/glucose/agp.pdf", get(pages::glucose::print_own))
        .route("/glucose/nightscout", post(pages::glucose::nightscout_own))
        .route(
            "/patients/{id}/glucose/nightscout",
            post(pages::glucose::nightscout_for),
        )
        .route(
            "/patients/{id}/glucose/agp.pdf",
            get(pages::glucose::print_for),
        )
        .route(
            "/patients/{id}/glucose/upload",
            post(pages::glucose::upload_for).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/care/activities/{task}", post(pages::care::tick))
        .route("/care-plans/{id}", get(pages::care_plan::plan))
        .route("/care-plans/{id}/change", post(pages::care_plan::change))
        .route(
            "/care-plans/{id}/proposals/{task}",
            post(pages::care_plan::decide),
        )
        .route("/patients/{id}/care", get(pages::care_team::care_team))
        .route(
            "/patients/{id}/care/members",
            post(pages::care_team::add_member),
        )
        .route(
            "/patients/{id}/care/members/end",
            post(pages::care_team::end_member),
        )
        .route(
            "/patients/{id}/care/plans",
            post(pages::care_team::create_plan),
        )
        .route("/worklist", get(pages::worklist::worklist))
        .route(
            "/messages",
            get(pages::messages::messages).post(pages::messages::create),
        )
        .route("/messages/live", get(pages::messages::live))
        .route("/visits/{id}", get(pages::visit::visit))
        .route("/visits/{id}/signal", get(pages::visit::signal))
        .route(
            "/messages/{id}",
            get(pages::messages::thread).post(pages::messages::send),
        )
        .route("/refills", get(pages::refills::refills))
        .route("/refills/{task}/decide", post(pages::refills::decide))
        .route("/reviews/{task}/close", post(pages::refills::close_review))
        .route(
            "/prescriptions/{id}/prescription.pdf",
            get(pages::prescribe::print),
        )
        .route(
            "/patients/{id}/write",
            get(pages::chart::write_form).post(pages::chart::write),
        )
        .route(
            "/patients/{id}/refer",
            get(pages::referrals::refer_form).post(pages::referrals::refer),
        )
        .route(
            "/patients/{id}/refer/search",
            post(pages::referrals::refer_search),
        )
        .route("/referrals", get(pages::referrals::referrals))
        .route("/calendar", get(pages::calendar::calendar))
        .route("/calendar/{id}/{action}", post(pages::calendar::act))
        .route("/referrals/{task}/accept", post(pages::referrals::accept))
        // Admins.
        .route("/admin", get(pages::admin::users))
        .route(
            "/admin/users/{id}/verification",
            post(pages::admin::set_verification),
        )
        .route("/admin/invitations", post(pages::admin::invite))
        .route(
            "/admin/clients",
            get(pages::admin::clients).post(pages::admin::register_client),
        )
        .route("/admin/break-glass", get(pages::admin::break_glass))
        .route("/admin/keys", get(pages::admin::keys))
        .route(
            "/admin/schedules",
            get(pages::schedules::schedules).post(pages::schedules::save),
        )
        .route(
            "/admin/schedules/{practitioner}/closed",
            post(pages::schedules::close),
        )
        // Assets.
        .route("/static/{name}", get(assets::asset))
        .route("/manifest.webmanifest", get(assets::manifest))
        .route("/sw.js", get(assets::service_worker))
        .layer(Extension(Arc::new(services)))
}

/// Frees `value` on a blocking thread, after the answer that no longer needs it. Freeing a
/// page's worth of parsed resources (each a tree of maps and strings) is milliseconds of
/// work the reader should not wait for.
pub(crate) fn release_later<T: Send + 'static>(value: T) {
    drop(tokio::task::spawn_blocking(move || drop(value)));
}
