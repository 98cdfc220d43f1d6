//! One module per page. Each has a handler that extracts, calls the application services
//! with the viewer's context, shapes what it got into a view, and renders its template.

pub mod access_log;
pub mod account;
pub mod admin;
pub mod appointments;
pub mod calendar;
pub mod care;
pub mod care_plan;
pub mod care_team;
pub mod chart;
pub mod consent;
pub mod documents;
pub mod feed;
pub mod glucose;
pub mod home;
pub mod medications;
pub mod messages;
pub mod my_data;
pub mod notifications;
pub mod patients;
pub mod pharmacy;
pub mod prescribe;
pub mod record;
pub mod referrals;
pub mod refills;
pub mod schedules;
pub mod sealed;
pub mod sessions;
pub mod sharing;
pub mod sign_in;
pub mod visit;
pub mod worklist;

use medmesh_fhir::search::Handling;
use medmesh_records::RecordError;
use medmesh_server::AppState;
use serde_json::Value;

use crate::clinical::resources;
use crate::i18n::Arg;
use crate::viewer::Viewer;

/// The resources of one search of the viewer's patient's data (the PDP judges it and the
/// audit log records it, as any search).
pub(crate) async fn search(
    state: &AppState,
    viewer: &Viewer,
    patient: &str,
    rt: &str,
    params: &[(&str, &str)],
) -> Result<Vec<Value>, RecordError> {
    let mut all: Vec<(String, String)> = vec![("patient".into(), patient.into())];
    all.extend(params.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let bundle = state
        .records
        .search(&viewer.ctx, rt, &all, Handling::Lenient)
        .await?;
    Ok(resources(bundle))
}

/// The resources of type `rt` in the patient's compartment (`Patient/[id]/[rt]?...`): what
/// the record shows as theirs. A patient's own session is confined to that compartment
/// already, so the search checks it once; a clinician's is judged as any search.
pub(crate) async fn compartment_search(
    state: &AppState,
    viewer: &Viewer,
    patient: &str,
    rt: &str,
    params: &[(&str, &str)],
) -> Result<Vec<Value>, RecordError> {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let bundle = state
        .records
        .compartment_search(
            &viewer.ctx,
            "Patient",
            patient,
            rt,
            &params,
            Handling::Lenient,
        )
        .await?;
    Ok(resources(bundle))
}

/// A record id as it may appear in a path or a form: FHIR's id characters, at most 64.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// The name of a principal (`Practitioner/x`, `Organization/o`, `CareTeam/c`), read as the
/// viewer; its reference when it has none, and words saying it could not be read (with the
/// reference) when it cannot.
pub(crate) async fn name_of(state: &AppState, viewer: &Viewer, principal: &str) -> String {
    PageNames::default().of(state, viewer, principal).await
}

/// Names of principals for one page, each read once (through the record service's
/// [`Names`](medmesh_records::reading::Names)): the sharing page lists a line per care
/// relationship, and a long record has hundreds of visits with the same few organizations
/// (each read was a judged read of its own; bench/README.md, issue 16).
#[derive(Default)]
pub(crate) struct PageNames(medmesh_records::reading::Names);

impl PageNames {
    /// [`name_of`] `principal`, read the first time it is asked for.
    pub(crate) async fn of(
        &mut self,
        state: &AppState,
        viewer: &Viewer,
        principal: &str,
    ) -> String {
        self.0
            .read(&state.records, &viewer.ctx, principal)
            .await
            .unwrap_or_else(|| {
                viewer.lang.t_with(
                    "sharing-unnamed",
                    &[("reference", Arg::Text(principal.to_string()))],
                )
            })
    }
}

/// The node's time now as FHIR `dateTime`, from its injected clock (never the wall clock).
pub(crate) fn now_rfc3339(state: &AppState) -> String {
    time::OffsetDateTime::from_unix_timestamp(state.identity.clock().now_secs())
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Today's date where the viewer is (their browser's UTC offset), not in UTC: at 08:00 in
/// UTC+10 it is still yesterday in UTC.
pub(crate) fn viewer_today(state: &AppState, viewer: &Viewer) -> Option<time::Date> {
    local_date(state.identity.clock().now_secs(), viewer.tz_minutes)
}

/// The date at `unix_secs` in a zone `tz_minutes` east of UTC.
fn local_date(unix_secs: i64, tz_minutes: i32) -> Option<time::Date> {
    let local = unix_secs.checked_add(i64::from(tz_minutes) * 60)?;
    time::OffsetDateTime::from_unix_timestamp(local)
        .ok()
        .map(|t| t.date())
}

/// The refusal of a form whose CSRF token is not the session's; `None` lets it through.
pub(crate) fn csrf_guard(viewer: &Viewer, token: Option<&str>) -> Option<axum::response::Response> {
    (!medmesh_server::web::csrf_matches(&viewer.csrf, token))
        .then(|| crate::layout::problem(viewer.lang, crate::layout::Problem::Forbidden))
}

/// A form that carries only the session's CSRF token (a button).
#[derive(Debug, serde::Deserialize)]
pub struct CsrfForm {
    /// The token.
    pub csrf: Option<String>,
}

/// The one check in front of every form that changes something: the session's CSRF token
/// (else 403), the page's audience (else "not for this account"), and the ids taken from
/// the path (else "not found"). `None` lets the form through.
pub(crate) fn refuse_form(
    viewer: &Viewer,
    token: Option<&str>,
    audience: crate::viewer::Audience,
    ids: &[&str],
) -> Option<axum::response::Response> {
    use crate::layout::{Problem, problem};
    if let Some(refused) = csrf_guard(viewer, token) {
        return Some(refused);
    }
    if viewer.audience != audience {
        return Some(problem(viewer.lang, Problem::WrongAudience));
    }
    if !ids.iter().all(|id| valid_id(id)) {
        return Some(problem(viewer.lang, Problem::NotFound));
    }
    None
}

/// A form field, trimmed and bounded: `None` when empty. Free text typed into a form is
/// cut at `max` characters (the forms say so in their `maxlength`).
pub(crate) fn field(value: &str, max: usize) -> Option<String> {
    let v: String = value.trim().chars().take(max).collect();
    (!v.is_empty()).then_some(v)
}

/// A refusal the user can act on, in the words the service gave (business rules, never
/// patient data): `None` for anything else, which the pages' problem mapping answers.
pub(crate) fn refusal_words(e: &RecordError) -> Option<String> {
    match e {
        RecordError::Invalid(issues) if !issues.is_empty() => {
            Some(crate::pages::prescribe::refusal_text(issues))
        }
        _ => None,
    }
}

#[cfg(test)]
mod local_date_tests {
    use super::local_date;
    use time::macros::date;

    /// 2026-12-06 22:00 UTC is already the 7th in Sydney (UTC+10) and still the 6th in
    /// New York (UTC-5); 03:00 UTC is still the 5th in New York.
    #[test]
    fn today_is_the_viewers_date_not_utcs() {
        let evening = 1_796_594_400; // 2026-12-06T22:00:00Z
        assert_eq!(local_date(evening, 0), Some(date!(2026 - 12 - 06)));
        assert_eq!(local_date(evening, 600), Some(date!(2026 - 12 - 07)));
        assert_eq!(local_date(evening, -300), Some(date!(2026 - 12 - 06)));
        let early = evening - 19 * 3600; // 2026-12-06T03:00:00Z
        assert_eq!(local_date(early, -300), Some(date!(2026 - 12 - 05)));
        assert_eq!(local_date(i64::MAX, 60), None);
    }
}
