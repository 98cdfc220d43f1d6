//! Who is looking: the signed-in user of a page request, with their request context (for
//! the application services), their language and their time-zone offset.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::Response;
use medmesh_kernel::RequestContext;
use medmesh_server::AppState;
use medmesh_server::web::SignedIn;

use crate::i18n::Lang;
use crate::layout;

/// The cookie that keeps the user's language choice.
pub const LANG_COOKIE: &str = "medmesh_lang";
/// The cookie `static/portal.js` sets to the browser's offset from UTC, in minutes east.
pub const TZ_COOKIE: &str = "medmesh_tz";

/// The role a page is shown to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// A patient (the account is linked to their Patient record).
    Patient,
    /// A practitioner.
    Clinician,
    /// A pharmacist (the pharmacy's queue).
    Pharmacist,
    /// An organization or node administrator.
    Admin,
}

/// A signed-in user on a page. Extracting it redirects to the login page without a session.
pub struct Viewer {
    /// The request context the services judge.
    pub ctx: RequestContext,
    /// Whom the pages are for.
    pub audience: Audience,
    /// The session's CSRF token, for forms.
    pub csrf: String,
    /// The language pages are shown in.
    pub lang: Lang,
    /// Minutes east of UTC that times are shown in.
    pub tz_minutes: i32,
    /// The account (its id, user name, linked records), as the identity service's account
    /// operations take it.
    pub account: medmesh_store::UserRecord,
    /// The session's public handle (the sessions page marks it).
    pub session_handle: String,
}

impl Viewer {
    /// The account's id.
    pub fn user_id(&self) -> &str {
        &self.account.id
    }

    /// The user's display name (their user name).
    pub fn name(&self) -> &str {
        &self.account.username
    }

    /// The user as the key directory and signatures name them (`Patient/x`, else
    /// `Practitioner/y`); `None` for an account that is neither (an administrator).
    pub fn owner_reference(&self) -> Option<String> {
        match (&self.account.patient_id, &self.account.practitioner_id) {
            (Some(p), _) => Some(format!("Patient/{p}")),
            (None, Some(p)) => Some(format!("Practitioner/{p}")),
            (None, None) => None,
        }
    }

    /// The patient whose own pages these are: `Some` for a patient's account only.
    pub fn own_patient(&self) -> Option<String> {
        match self.audience {
            Audience::Patient => self.account.patient_id.clone(),
            _ => None,
        }
    }
}

/// The language of a request, signed in or not: the cookie, else `Accept-Language`.
pub fn lang_of(parts: &Parts) -> Lang {
    lang_of_headers(&parts.headers)
}

/// [`lang_of`], from the request's headers alone.
pub fn lang_of_headers(headers: &axum::http::HeaderMap) -> Lang {
    medmesh_server::web::cookie(headers, LANG_COOKIE)
        .and_then(|c| Lang::from_tag(&c))
        .unwrap_or_else(|| {
            Lang::negotiate(
                headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok()),
            )
        })
}

fn tz_of(parts: &Parts) -> i32 {
    medmesh_server::web::cookie(&parts.headers, TZ_COOKIE)
        .and_then(|c| c.parse::<i32>().ok())
        .filter(|m| (-14 * 60..=14 * 60).contains(m))
        .unwrap_or(0)
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let SignedIn(session) = SignedIn::from_request_parts(parts, state).await?;
        let lang = lang_of(parts);
        let csrf = session.csrf.clone();
        let account = session.user.clone();
        let session_handle = session.handle.clone();
        let ctx = medmesh_server::auth::session_context(parts, state, session)
            .await
            .ok_or_else(|| layout::problem(lang, layout::Problem::Unavailable))?;
        let audience = match account.role.as_str() {
            "patient" => Audience::Patient,
            "practitioner" => Audience::Clinician,
            "pharmacist" => Audience::Pharmacist,
            _ => Audience::Admin,
        };
        Ok(Self {
            ctx,
            audience,
            csrf,
            lang,
            tz_minutes: tz_of(parts),
            account,
            session_handle,
        })
    }
}
