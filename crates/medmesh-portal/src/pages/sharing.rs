//! `GET /sharing`: who can see the patient's data and why. Every edge of the trust graph to
//! them (care team, GP, referral, visit, consent, sharing rule, break-glass), each with the
//! person or organization by name, the reason in words, since when and until when, and
//! whether it holds now; emergency (break-glass) access is highlighted.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use medmesh_server::AppState;

use crate::clinical;
use crate::i18n::Arg;
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::viewer::Viewer;

/// One line of the list.
pub struct Line {
    /// The person or organization, by name.
    pub who: String,
    /// Why they can see the record.
    pub why: String,
    /// Since when (empty: always).
    pub since: String,
    /// Until when (empty: open).
    pub until: String,
    /// Whether it is an emergency access.
    pub emergency: bool,
}

/// Current or ended access.
pub struct Part {
    /// Its id.
    pub id: &'static str,
    /// Heading.
    pub title: String,
    /// The lines.
    pub lines: Vec<Line>,
}

#[derive(Template)]
#[template(path = "sharing.html")]
struct SharingPage {
    shell: Shell,
    intro: String,
    parts: Vec<Part>,
    none: String,
    t_who: String,
    t_why: String,
    t_since: String,
    t_until: String,
    t_open: String,
    t_emergency: String,
}

/// The name of a principal (`Practitioner/x`, `Organization/o`, `CareTeam/c`), read as the
/// viewer; its reference when it cannot be read.
async fn name_of(state: &AppState, viewer: &Viewer, principal: &str) -> String {
    let Some((rt, id)) = principal.split_once('/') else {
        return principal.to_string();
    };
    let read = state.records.read(&viewer.ctx, rt, id).await;
    let resource = match read {
        Ok(r) => r.resource,
        Err(_) => {
            return viewer.lang.t_with(
                "sharing-unnamed",
                &[("reference", Arg::Text(principal.to_string()))],
            );
        }
    };
    let human = resource["name"]
        .as_array()
        .and_then(|names| names.first())
        .map(|n| {
            let given: Vec<&str> = n["given"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g.as_str())
                .collect();
            format!(
                "{} {} {}",
                n["prefix"][0].as_str().unwrap_or_default(),
                given.join(" "),
                n["family"].as_str().unwrap_or_default()
            )
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
        });
    human
        .filter(|n| !n.is_empty())
        .or_else(|| resource["name"].as_str().map(str::to_string))
        .unwrap_or_else(|| principal.to_string())
}

/// `GET /sharing`.
pub async fn sharing(State(state): State<AppState>, viewer: Viewer) -> Response {
    let lang = viewer.lang;
    let tz = viewer.tz_minutes;
    let Some(patient) = viewer.own_patient() else {
        return problem(lang, Problem::WrongAudience);
    };
    let view = match state.records.audit_view(&viewer.ctx, Some(&patient)) {
        Ok(v) => v,
        Err(e) => return record_problem(lang, &e),
    };
    let lines = match state.trust.access_map(&view).await {
        Ok(l) => l,
        Err(e) => return record_problem(lang, &e),
    };
    let (mut active, mut past) = (Vec::new(), Vec::new());
    let mut lines = lines;
    // Newest first: by the end of the access, open ones first.
    lines.sort_by_key(|l| std::cmp::Reverse(l.edge.until.unwrap_or(i64::MAX)));
    for l in lines {
        let e = l.edge;
        let line = Line {
            who: name_of(&state, &viewer, &e.principal).await,
            why: lang.t(&format!("why-{}", e.kind.code())),
            // 0 means "always"; a visit before 1970 has a negative time.
            since: if e.since != 0 {
                clinical::date_time_micros(lang, e.since, tz)
            } else {
                String::new()
            },
            until: e
                .until
                .map(|u| clinical::date_time_micros(lang, u, tz))
                .unwrap_or_default(),
            emergency: e.kind == medmesh_policy::access::EdgeKind::BreakGlass,
        };
        if l.active {
            active.push(line)
        } else {
            past.push(line)
        }
    }
    render(
        StatusCode::OK,
        &SharingPage {
            shell: Shell::new(&viewer, "/sharing", "sharing-title"),
            intro: lang.t("sharing-intro"),
            parts: vec![
                Part {
                    id: "now",
                    title: lang.t("sharing-now"),
                    lines: active,
                },
                Part {
                    id: "past",
                    title: lang.t("sharing-past"),
                    lines: past,
                },
            ],
            none: lang.t("sharing-none"),
            t_who: lang.t("sharing-who"),
            t_why: lang.t("sharing-why"),
            t_since: lang.t("sharing-since"),
            t_until: lang.t("sharing-until"),
            t_open: lang.t("sharing-open"),
            t_emergency: lang.t("sharing-emergency"),
        },
    )
}
