//! `GET /account/audit`: a patient's access log, proven complete in their own browser.
//!
//! The page is a shell: `assets/audit-page.js` fetches every page of
//! `GET /api/patients/{id}/audit`, runs `assets/audit-verify.js` over it (the browser's
//! copy of `medmesh-patient-log-verifier`), keeps the checkpoint it verified in IndexedDB,
//! and on the next visit asks for a consistency proof from it. It says "verified" only
//! when every check passed, and lists the entries either way.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use crate::AppState;
use crate::web::{SignedIn, message, page};

#[derive(Template)]
#[template(path = "access_log.html")]
struct AccessLogPage<'a> {
    patient: &'a str,
    csrf: &'a str,
    /// The log's signed-note verifier key, pinned by the browser on its first visit.
    log_key: String,
}

/// `GET /account/audit`: for a patient's account.
pub async fn access_log(State(state): State<AppState>, SignedIn(s): SignedIn) -> Response {
    let Some(patient) = s.user.patient_id.as_deref() else {
        return message(
            StatusCode::FORBIDDEN,
            "Not for this account",
            "The access log is shown to the patient whose record it is.",
        );
    };
    page(
        StatusCode::OK,
        &AccessLogPage {
            patient,
            csrf: &s.csrf,
            log_key: state.audit_log.verifier_key().to_note_key(),
        },
    )
}
