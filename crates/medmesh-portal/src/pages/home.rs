//! `GET /home`: where a user lands after signing in. A patient sees their newest results,
//! recent documents, the latest accesses to their record and pending requests, each linking
//! to its page; other accounts see their start page's links.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use medmesh_server::AppState;

use crate::clinical::{concept, date_of, quantity};
use crate::layout::{Shell, record_problem, render};
use crate::pages::record::Item;
use crate::pages::search;
use crate::viewer::{Audience, Viewer};

/// A card of the home page: a heading, lines, a link to the page with the rest.
pub struct Card {
    /// Its id.
    pub id: &'static str,
    /// Heading.
    pub title: String,
    /// Lines.
    pub items: Vec<Item>,
    /// When there are none.
    pub empty: String,
    /// Where the rest is.
    pub more_href: &'static str,
    /// The link's text.
    pub more: String,
    /// Per line, the id of a notice the viewer may mark read (empty: none).
    pub reads: Vec<String>,
}

impl Card {
    /// The notice line `i` may mark read, if any.
    pub fn read_id(&self, i: &usize) -> Option<&str> {
        self.reads
            .get(*i)
            .map(String::as_str)
            .filter(|id| !id.is_empty())
    }
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    shell: Shell,
    greeting: String,
    cards: Vec<Card>,
}

/// An access log's actor as people read it: "You", an account's name and role, or the
/// service it names.
pub(crate) async fn who(state: &AppState, viewer: &Viewer, actor: &str) -> String {
    let lang = viewer.lang;
    if actor == viewer.user_id() {
        return lang.t("who-you");
    }
    match state.identity.account_label(actor).await {
        Ok(Some((name, role))) => lang.t_with(
            "who-account",
            &[
                ("name", crate::i18n::Arg::Text(name)),
                (
                    "role",
                    crate::i18n::Arg::Text(lang.t(&format!("role-{role}"))),
                ),
            ],
        ),
        Ok(None) => lang.t_with(
            "who-service",
            &[("name", crate::i18n::Arg::Text(actor.to_string()))],
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot name an access log's actor");
            actor.to_string()
        }
    }
}

/// An audited action in words; an action the catalog does not name is "accessed".
pub(crate) fn action(lang: crate::i18n::Lang, action: &str) -> String {
    lang.lookup(&format!("action-{action}"))
        .unwrap_or_else(|| lang.t("action-other"))
}

/// A result's value in words: its quantity, its coded value, or its components'
/// quantities ("128/82 mm[Hg]").
fn value_text(o: &serde_json::Value) -> String {
    if let Some(q) = quantity(&o["valueQuantity"]) {
        return q;
    }
    if let Some(c) = concept(&o["valueCodeableConcept"]) {
        return c;
    }
    let mut components: Vec<&serde_json::Value> = o["component"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["valueQuantity"]["value"].is_number())
        .collect();
    // Blood pressure reads systolic over diastolic, whatever order the feed used.
    components.sort_by_key(|c| c["code"]["coding"][0]["code"].as_str() != Some("8480-6"));
    let parts: Vec<&serde_json::Value> = components.iter().map(|c| &c["valueQuantity"]).collect();
    let unit = parts.first().and_then(|q| q["unit"].as_str()).unwrap_or("");
    if !parts.is_empty()
        && parts
            .iter()
            .all(|q| q["unit"].as_str().unwrap_or("") == unit)
    {
        let values: Vec<String> = parts
            .iter()
            .filter_map(|q| q["value"].as_f64())
            .map(crate::clinical::number)
            .collect();
        return format!("{} {unit}", values.join("/"))
            .trim_end()
            .to_string();
    }
    String::new()
}

/// `POST /account/inbox/{id}/read`: a staff account marks one of its own notices read
/// (the PDP's `StaffInbox` is the permission; another's is not found).
pub async fn mark_read(
    State(state): State<AppState>,
    viewer: Viewer,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::Form(form): axum::Form<crate::pages::CsrfForm>,
) -> Response {
    if let Some(r) = crate::pages::refuse_form(
        &viewer,
        form.csrf.as_deref(),
        crate::viewer::Audience::Clinician,
        &[&id],
    ) {
        return r;
    }
    let marked = match state.records.staff_inbox(&viewer.ctx) {
        Ok(inbox) => state.trust.mark_staff_notification_read(&inbox, &id).await,
        Err(e) => Err(e),
    };
    match marked {
        Ok(()) => axum::response::Redirect::to("/home#inbox").into_response(),
        Err(e) => crate::layout::record_problem(viewer.lang, &e),
    }
}

/// `GET /home`.
pub async fn home(State(state): State<AppState>, viewer: Viewer) -> Response {
    let lang = viewer.lang;
    let tz = viewer.tz_minutes;
    let greeting = lang.t_with(
        "home-greeting",
        &[("name", crate::i18n::Arg::Text(viewer.name().to_string()))],
    );
    let Some(patient) = viewer.own_patient() else {
        let cards = match viewer.audience {
            Audience::Clinician => clinician_cards(&state, &viewer).await,
            Audience::Admin => admin_cards(&state, &viewer).await,
            Audience::Patient | Audience::Pharmacist => Ok(Vec::new()),
        };
        return match cards {
            Ok(cards) => render(
                StatusCode::OK,
                &HomePage {
                    shell: Shell::new(&viewer, "/home", "home-title"),
                    greeting,
                    cards,
                },
            ),
            Err(r) => r,
        };
    };
    let fetched = tokio::try_join!(
        search(
            &state,
            &viewer,
            &patient,
            "Observation",
            &[
                ("category", "laboratory,vital-signs"),
                ("_count", "5"),
                ("_sort", "-date"),
            ],
        ),
        search(
            &state,
            &viewer,
            &patient,
            "DocumentReference",
            &[("_count", "5"), ("_sort", "-date")],
        ),
        state
            .audit_log
            .read_patient_log(&state.records, &viewer.ctx, &patient, None, 5, None),
        search(
            &state,
            &viewer,
            &patient,
            "Task",
            &[("status", "requested"), ("_count", "20")]
        ),
        notifications(&state, &viewer, &patient),
    );
    let (results, documents, log, tasks, notes) = match fetched {
        Ok(f) => f,
        Err(e) => return record_problem(lang, &e),
    };
    let results = results
        .iter()
        .filter_map(|o| {
            Some(Item {
                what: concept(&o["code"])?,
                detail: value_text(o),
                when: date_of(lang, &o["effectiveDateTime"], tz),
            })
        })
        .collect();
    let documents = documents
        .iter()
        .map(|d| Item {
            what: d["description"]
                .as_str()
                .map(str::to_string)
                .or_else(|| concept(&d["type"]))
                .unwrap_or_else(|| lang.t("home-document")),
            detail: String::new(),
            when: date_of(lang, &d["date"], tz),
        })
        .collect();
    let mut accesses = Vec::new();
    for e in log.map(|l| l.entries).unwrap_or_default() {
        accesses.push(Item {
            what: who(&state, &viewer, &e.entry.actor).await,
            detail: action(lang, &e.entry.action),
            when: crate::clinical::date_time_micros(lang, e.entry.time_micros, tz),
        });
    }
    let mut requests: Vec<Item> = notes
        .into_iter()
        .filter(|n| n.read_micros.is_none())
        .take(5)
        .map(|n| Item {
            what: lang
                .lookup(&format!("notification-{}", n.kind))
                .unwrap_or(n.message),
            detail: String::new(),
            when: crate::clinical::date_time_micros(lang, n.created_micros, tz),
        })
        .collect();
    for t in tasks.iter().filter(|t| {
        t["focus"]["reference"]
            .as_str()
            .is_some_and(|f| f.starts_with("ServiceRequest/"))
    }) {
        let to = match t["owner"]["reference"].as_str() {
            Some(o) => crate::pages::name_of(&state, &viewer, o).await,
            None => String::new(),
        };
        requests.push(Item {
            what: lang.t_with("home-referral", &[("name", crate::i18n::Arg::Text(to))]),
            detail: String::new(),
            when: date_of(lang, &t["authoredOn"], tz),
        });
    }
    let card = |id, title: &str, empty: &str, items, more_href, more: &str| Card {
        id,
        title: lang.t(title),
        items,
        empty: lang.t(empty),
        more_href,
        more: lang.t(more),
        reads: Vec::new(),
    };
    render(
        StatusCode::OK,
        &HomePage {
            shell: Shell::new(&viewer, "/home", "home-title"),
            greeting,
            cards: vec![
                card(
                    "results",
                    "home-results",
                    "home-results-none",
                    results,
                    "/record#results",
                    "home-results-more",
                ),
                card(
                    "documents",
                    "home-documents",
                    "home-documents-none",
                    documents,
                    "/documents",
                    "home-documents-more",
                ),
                card(
                    "accesses",
                    "home-accesses",
                    "home-accesses-none",
                    accesses,
                    "/account/audit",
                    "home-accesses-more",
                ),
                card(
                    "requests",
                    "home-requests",
                    "home-requests-none",
                    requests,
                    "/sharing",
                    "home-requests-more",
                ),
            ],
        },
    )
}

/// The patient's notifications (the PDP's audit view of their own record is the permit).
async fn notifications(
    state: &AppState,
    viewer: &Viewer,
    patient: &str,
) -> Result<Vec<medmesh_store::Notification>, medmesh_records::RecordError> {
    let view = state.records.audit_view(&viewer.ctx, Some(patient))?;
    state.trust.notifications(&view).await
}

/// A clinician's start: the referrals waiting for their answer, and the way to their
/// patients.
async fn clinician_cards(state: &AppState, viewer: &Viewer) -> Result<Vec<Card>, Response> {
    let lang = viewer.lang;
    let waiting = match state.trust.referrals_for(&viewer.ctx).await {
        Ok(r) => r,
        // An unverified practitioner has no inbox yet.
        Err(medmesh_records::RecordError::Forbidden) => Vec::new(),
        Err(e) => return Err(record_problem(lang, &e)),
    };
    let mut items = Vec::new();
    for r in waiting
        .into_iter()
        .filter(|r| r.status == "requested")
        .take(5)
    {
        let from = match &r.requester {
            Some(p) => crate::pages::name_of(state, viewer, p).await,
            None => String::new(),
        };
        items.push(Item {
            what: lang.t_with(
                "home-referral-from",
                &[("name", crate::i18n::Arg::Text(from))],
            ),
            detail: String::new(),
            when: r
                .authored_on
                .map(|a| date_of(lang, &serde_json::Value::String(a), viewer.tz_minutes))
                .unwrap_or_default(),
        });
    }
    // The staff inbox: booking requests and cancellations for this clinician.
    let mut told = Vec::new();
    let mut reads = Vec::new();
    if let Ok(inbox) = state.records.staff_inbox(&viewer.ctx) {
        let list = state
            .trust
            .staff_notifications(&inbox)
            .await
            .map_err(|e| record_problem(lang, &e))?;
        for n in list.into_iter().take(5) {
            reads.push(if n.read_micros.is_none() {
                n.id.clone()
            } else {
                String::new()
            });
            told.push(Item {
                what: n.message,
                detail: String::new(),
                when: crate::clinical::date_time_micros(lang, n.created_micros, viewer.tz_minutes),
            });
        }
    }
    Ok(vec![
        Card {
            id: "inbox",
            title: lang.t("home-staff-inbox"),
            items: told,
            empty: lang.t("home-staff-inbox-none"),
            more_href: "/calendar",
            more: lang.t("home-staff-inbox-more"),
            reads,
        },
        Card {
            id: "referrals",
            title: lang.t("home-referrals"),
            items,
            empty: lang.t("home-referrals-none"),
            more_href: "/referrals",
            more: lang.t("home-referrals-more"),
            reads: Vec::new(),
        },
        Card {
            id: "patients",
            title: lang.t("patients-title"),
            items: Vec::new(),
            empty: lang.t("home-patients"),
            more_href: "/patients",
            more: lang.t("home-patients-more"),
            reads: Vec::new(),
        },
    ])
}

/// An admin's start: practitioners waiting for verification, emergency accesses in force.
async fn admin_cards(state: &AppState, viewer: &Viewer) -> Result<Vec<Card>, Response> {
    let lang = viewer.lang;
    let mut waiting = Vec::new();
    // The store picks the five waiting; the card does not read every account to show them.
    if let Ok(users) = state
        .identity
        .practitioners_overseen(&viewer.account, Some("unverified"), 5)
        .await
    {
        for u in users {
            waiting.push(Item {
                what: u.username,
                detail: lang.t("verification-unverified"),
                when: String::new(),
            });
        }
    }
    let mut emergencies = Vec::new();
    if let Ok(right) = state.records.review_right(&viewer.ctx) {
        let now = state.identity.clock().now_micros();
        let edges = state
            .trust
            .break_glass_queue(&right, 0)
            .await
            .map_err(|e| record_problem(lang, &e))?;
        for e in edges.into_iter().filter(|e| e.holds_at(now)).take(5) {
            emergencies.push(Item {
                what: crate::pages::name_of(state, viewer, &e.principal).await,
                detail: lang.t("admin-break-glass-active"),
                when: crate::clinical::date_time_micros(lang, e.since, viewer.tz_minutes),
            });
        }
    }
    Ok(vec![
        Card {
            id: "verification",
            title: lang.t("home-verification"),
            items: waiting,
            empty: lang.t("home-verification-none"),
            more_href: "/admin",
            more: lang.t("nav-admin-users"),
            reads: Vec::new(),
        },
        Card {
            id: "emergencies",
            title: lang.t("home-emergencies"),
            items: emergencies,
            empty: lang.t("admin-break-glass-none"),
            more_href: "/admin/break-glass",
            more: lang.t("nav-admin-break-glass"),
            reads: Vec::new(),
        },
    ])
}
