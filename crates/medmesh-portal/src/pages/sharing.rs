//! `GET /sharing`: who can see the patient's data and why, and the patient's say over it.
//!
//! Every edge of the trust graph to them (care team, GP, referral, visit, consent, sharing
//! rule, break-glass) is listed with the person or organization by name, the reason in
//! words, since when and until when; emergency (break-glass) access is highlighted. From the
//! same page the patient:
//! - gives a practitioner or organization access, to everything or one category, with or
//!   without sensitive labels (mental health, HIV...), until a date (`POST /sharing/find`
//!   searches the directory, `POST /sharing/grant` writes a permit Consent);
//! - narrows or blocks anyone's access (`POST /sharing/block`, a deny Consent for one
//!   category or all) and withdraws a consent they gave (`POST /sharing/withdraw`);
//! - accepts or declines the referrals made for them (`POST /sharing/referral`, a permit or
//!   deny Consent naming the practitioner referred to);
//! - sets automatic sharing rules (`POST /sharing/rule`): later results of a category are
//!   shared with a practitioner as they are written.
//!
//! Each is a FHIR Consent written through the record service as the patient, which the PDP
//! reads on the very next request; the page says so.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_fhir::search::Handling;
use medmesh_policy::access::EdgeKind;
use medmesh_server::AppState;
use medmesh_trust_network::AccessLine;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;

use crate::clinical::{self, human_name, resources};
use crate::i18n::Lang;
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::{field, name_of, now_rfc3339, refuse_form, search, valid_id};
use crate::viewer::{Audience, Viewer};

/// The categories a patient can share or block: a resource type, or everything (`all`).
pub const CATEGORIES: &[&str] = &[
    "all",
    "Observation",
    "Condition",
    "MedicationRequest",
    "AllergyIntolerance",
    "Immunization",
    "Encounter",
    "DocumentReference",
];

/// The sensitivity labels a grant can name (HL7 v3 ActCode).
pub const SENSITIVE: &[&str] = &[
    "PSY", "MH", "SUD", "HIV", "STD", "SEX", "SDV", "ETH", "GDIS",
];

/// One line of the list.
pub struct Line {
    /// The person or organization, by name.
    pub who: String,
    /// `Practitioner/x`, `Organization/o`...
    pub principal: String,
    /// Why they can see the record.
    pub why: String,
    /// Since when (empty: always).
    pub since: String,
    /// Until when (empty: open).
    pub until: String,
    /// Whether it is an emergency access.
    pub emergency: bool,
    /// The Consent the patient can withdraw, when the access comes from one.
    pub consent: Option<String>,
}

/// Current or ended access.
pub struct Part {
    /// Its id.
    pub id: &'static str,
    /// Heading.
    pub title: String,
    /// The lines.
    pub lines: Vec<Line>,
    /// Whether its lines offer changes (current access only).
    pub actions: bool,
}

/// A referral made for the patient.
pub struct ReferralLine {
    /// The practitioner referred to (`Practitioner/x`).
    pub owner: String,
    /// Their name.
    pub to: String,
    /// Who referred, by name.
    pub from: String,
    /// The status, in words.
    pub status: String,
    /// When.
    pub when: String,
}

/// A practitioner or organization the directory found.
pub struct Found {
    /// `Practitioner/x` or `Organization/o`.
    pub reference: String,
    /// Name.
    pub name: String,
}

#[derive(Template)]
#[template(path = "sharing.html")]
struct SharingPage {
    shell: Shell,
    parts: Vec<Part>,
    referrals: Vec<ReferralLine>,
    found: Option<Vec<Found>>,
    categories: Vec<(&'static str, String)>,
    labels: Vec<(&'static str, String)>,
    saved: bool,
}

fn category_name(lang: Lang, c: &str) -> String {
    if c == "all" {
        lang.t("sharing-everything")
    } else {
        lang.t(&format!("type-{c}"))
    }
}

/// Whether the page was reached after a change.
#[derive(Debug, Deserialize)]
pub struct SharingQuery {
    #[serde(default)]
    saved: Option<String>,
}

/// One line per person or organization and reason: a long record holds an encounter edge
/// per visit, hundreds of them with the same hospital. A merged line runs from the earliest
/// start to the latest end (open if any is). Consents, sharing rules and emergencies stay one
/// line each: each is withdrawn or reviewed on its own.
fn merged(lines: Vec<AccessLine>) -> Vec<AccessLine> {
    let mut out: Vec<AccessLine> = Vec::with_capacity(lines.len());
    let mut at: HashMap<(String, EdgeKind, bool), usize> = HashMap::new();
    for line in lines {
        let apart = matches!(
            line.edge.kind,
            EdgeKind::Consent | EdgeKind::Shared | EdgeKind::BreakGlass
        );
        if !apart {
            let key = (line.edge.principal.clone(), line.edge.kind, line.active);
            if let Some(kept) = at.get(&key).and_then(|&i| out.get_mut(i)) {
                let e = &mut kept.edge;
                e.since = e.since.min(line.edge.since);
                e.until = match (e.until, line.edge.until) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
                continue;
            }
            at.insert(key, out.len());
        }
        out.push(line);
    }
    out
}

/// `GET /sharing`.
pub async fn sharing(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(q): Query<SharingQuery>,
) -> Response {
    page(&state, &viewer, None, q.saved.is_some()).await
}

async fn page(
    state: &AppState,
    viewer: &Viewer,
    found: Option<Vec<Found>>,
    saved: bool,
) -> Response {
    let lang = viewer.lang;
    let tz = viewer.tz_minutes;
    let Some(patient) = viewer.own_patient() else {
        return problem(lang, Problem::WrongAudience);
    };
    let view = match state.records.audit_view(&viewer.ctx, Some(&patient)) {
        Ok(v) => v,
        Err(e) => return record_problem(lang, &e),
    };
    let (lines, tasks) = match tokio::try_join!(
        state.trust.access_map(&view),
        search(state, viewer, &patient, "Task", &[("_count", "100")])
    ) {
        Ok(x) => x,
        Err(e) => return record_problem(lang, &e),
    };
    let (mut active, mut past) = (Vec::new(), Vec::new());
    let mut lines = merged(lines);
    // Newest first: by the end of the access, open ones first.
    lines.sort_by_key(|l| std::cmp::Reverse(l.edge.until.unwrap_or(i64::MAX)));
    let mut names = crate::pages::PageNames::default();
    for l in lines {
        let e = l.edge;
        let line = Line {
            who: names.of(state, viewer, &e.principal).await,
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
            emergency: e.kind == EdgeKind::BreakGlass,
            consent: matches!(e.kind, EdgeKind::Consent | EdgeKind::Shared)
                .then(|| e.source.clone())
                .filter(|s| s.starts_with("Consent/")),
            principal: e.principal,
        };
        if l.active {
            active.push(line)
        } else {
            past.push(line)
        }
    }
    let mut referrals = Vec::new();
    for t in tasks.iter().filter(|t| {
        t["focus"]["reference"]
            .as_str()
            .is_some_and(|f| f.starts_with("ServiceRequest/"))
    }) {
        let Some(owner) = t["owner"]["reference"].as_str() else {
            continue;
        };
        let status = t["status"].as_str().unwrap_or_default();
        referrals.push(ReferralLine {
            owner: owner.to_string(),
            to: names.of(state, viewer, owner).await,
            from: match t["requester"]["reference"].as_str() {
                Some(r) => names.of(state, viewer, r).await,
                None => String::new(),
            },
            status: lang
                .lookup(&format!("status-{status}"))
                .unwrap_or_else(|| status.to_string()),
            when: clinical::date_of(lang, &t["authoredOn"], tz),
        });
    }
    render(
        StatusCode::OK,
        &SharingPage {
            shell: Shell::new(viewer, "/sharing", "sharing-title"),
            parts: vec![
                Part {
                    id: "now",
                    title: lang.t("sharing-now"),
                    lines: active,
                    actions: true,
                },
                Part {
                    id: "past",
                    title: lang.t("sharing-past"),
                    lines: past,
                    actions: false,
                },
            ],
            referrals,
            found,
            categories: CATEGORIES
                .iter()
                .map(|c| (*c, category_name(lang, c)))
                .collect(),
            labels: SENSITIVE
                .iter()
                .map(|l| (*l, lang.t(&format!("label-{l}"))))
                .collect(),
            saved,
        },
    )
}

/// The practitioners who can see the patient's record now, by name: whom a patient may seal
/// a document for or share one with (a recipient must be able to read the document as well
/// as hold its key).
///
/// # Errors
/// The record service's.
pub async fn practitioners_now(
    state: &AppState,
    viewer: &Viewer,
    patient: &str,
) -> Result<Vec<Found>, medmesh_records::RecordError> {
    let view = state.records.audit_view(&viewer.ctx, Some(patient))?;
    let mut references: Vec<String> = state
        .trust
        .access_map(&view)
        .await?
        .into_iter()
        .filter(|l| l.active && l.edge.principal.starts_with("Practitioner/"))
        .map(|l| l.edge.principal)
        .collect();
    references.sort();
    references.dedup();
    let mut found = Vec::with_capacity(references.len());
    for reference in references {
        found.push(Found {
            name: name_of(state, viewer, &reference).await,
            reference,
        });
    }
    Ok(found)
}

/// The directory search.
#[derive(Debug, Deserialize)]
pub struct FindForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
}

/// `POST /sharing/find`: practitioners and organizations by name.
pub async fn find(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<FindForm>,
) -> Response {
    if let Some(refused) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Patient, &[]) {
        return refused;
    }
    let Some(name) = field(&form.name, 100) else {
        return page(&state, &viewer, Some(Vec::new()), false).await;
    };
    let mut found = Vec::new();
    for rt in ["Practitioner", "Organization"] {
        let bundle = match state
            .records
            .search(
                &viewer.ctx,
                rt,
                &[
                    ("name".into(), name.clone()),
                    ("_count".into(), "20".into()),
                ],
                Handling::Lenient,
            )
            .await
        {
            Ok(b) => b,
            Err(e) => return record_problem(viewer.lang, &e),
        };
        for r in resources(bundle) {
            let Some(id) = r["id"].as_str() else { continue };
            found.push(Found {
                reference: format!("{rt}/{id}"),
                name: human_name(&r).unwrap_or_else(|| format!("{rt}/{id}")),
            });
        }
    }
    page(&state, &viewer, Some(found), false).await
}

/// A principal as a form may name one.
fn principal_ok(p: &str) -> bool {
    ["Practitioner/", "Organization/", "CareTeam/"]
        .iter()
        .any(|prefix| p.strip_prefix(prefix).is_some_and(valid_id))
}

/// What one consent says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Permit or deny.
    pub permit: bool,
    /// Whom.
    pub principal: String,
    /// A resource type, or `None` for everything.
    pub class: Option<String>,
    /// Sensitivity labels a permit extends to.
    pub labels: Vec<String>,
    /// The last day it holds (`YYYY-MM-DD`), or `None`.
    pub until: Option<String>,
    /// An automatic sharing rule: later data of `class` and `category` is shared.
    pub share_future: Option<String>,
}

impl Choice {
    /// A permit or deny of everything for `principal`, open-ended.
    pub fn new(permit: bool, principal: &str) -> Self {
        Self {
            permit,
            principal: principal.trim().to_string(),
            class: None,
            labels: Vec::new(),
            until: None,
            share_future: None,
        }
    }
}

/// The FHIR Consent (scope `patient-privacy`) a choice is recorded as.
pub fn consent_of(patient: &str, choice: &Choice, now: &str) -> Value {
    let mut provision = json!({
        "type": if choice.permit { "permit" } else { "deny" },
        "actor": [{
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]},
            "reference": {"reference": choice.principal},
        }],
    });
    if let Some(c) = &choice.class {
        provision["class"] = json!([{"system": "http://hl7.org/fhir/resource-types", "code": c}]);
    }
    if !choice.labels.is_empty() {
        provision["securityLabel"] = Value::Array(
            choice
                .labels
                .iter()
                .map(|l| medmesh_policy::labels::coding_of(l))
                .collect(),
        );
    }
    if let Some(end) = &choice.until {
        provision["period"] = json!({"start": now, "end": end});
    }
    if let Some(category) = &choice.share_future {
        provision["extension"] =
            json!([{"url": medmesh_policy::consent::SHARE_FUTURE, "valueBoolean": true}]);
        provision["code"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}]);
    }
    json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy", "display": "Privacy Consent"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": now,
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": if choice.permit { "OPTIN" } else { "OPTOUT" }}]},
        "provision": provision,
    })
}

async fn record_choice(state: &AppState, viewer: &Viewer, choice: Choice) -> Response {
    let lang = viewer.lang;
    let Some(patient) = viewer.own_patient() else {
        return problem(lang, Problem::WrongAudience);
    };
    let consent = consent_of(&patient, &choice, &now_rfc3339(state));
    match state
        .records
        .create(&viewer.ctx, "Consent", consent, None)
        .await
    {
        Ok(_) => Redirect::to("/sharing?saved=1").into_response(),
        Err(e) => record_problem(lang, &e),
    }
}

/// The grant form, read from the raw body: `axum::Form` keeps one value of a repeated key,
/// and `labels` is a group of checkboxes.
#[derive(Debug, Default)]
pub struct GrantForm {
    csrf: Option<String>,
    principal: String,
    category: String,
    labels: Vec<String>,
    until: String,
}

impl GrantForm {
    fn parse(body: &str) -> Self {
        let mut f = GrantForm::default();
        for (k, v) in url::form_urlencoded::parse(body.as_bytes()).take(64) {
            let v = v.into_owned();
            match k.as_ref() {
                "csrf" => f.csrf = Some(v),
                "principal" => f.principal = v,
                "category" => f.category = v,
                "until" => f.until = v,
                "labels" => f.labels.push(v),
                _ => {}
            }
        }
        f
    }
}

fn class_of(category: &str) -> Option<Option<String>> {
    match category {
        "all" | "" => Some(None),
        c if CATEGORIES.contains(&c) => Some(Some(c.to_string())),
        _ => None,
    }
}

/// `POST /sharing/grant`.
pub async fn grant(State(state): State<AppState>, viewer: Viewer, body: String) -> Response {
    let lang = viewer.lang;
    let form = GrantForm::parse(&body);
    if let Some(refused) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Patient, &[]) {
        return refused;
    }
    let until = field(&form.until, 10);
    let labels_ok = form.labels.iter().all(|l| SENSITIVE.contains(&l.as_str()));
    let until_ok = until
        .as_deref()
        .is_none_or(|u| u.len() == 10 && medmesh_fhir::datetime::parse_range(u).is_some());
    let (true, true, true, Some(class)) = (
        principal_ok(form.principal.trim()),
        labels_ok,
        until_ok,
        class_of(&form.category),
    ) else {
        return problem(lang, Problem::BadInput);
    };
    record_choice(
        &state,
        &viewer,
        Choice {
            class,
            labels: form.labels,
            until,
            ..Choice::new(true, &form.principal)
        },
    )
    .await
}

/// The block form (also a referral's answer and a sharing rule).
#[derive(Debug, Deserialize)]
pub struct BlockForm {
    csrf: Option<String>,
    principal: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    answer: String,
}

/// `POST /sharing/block`: a deny for one category, or everything.
pub async fn block(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<BlockForm>,
) -> Response {
    if let Some(refused) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Patient, &[]) {
        return refused;
    }
    let (true, Some(class)) = (
        principal_ok(form.principal.trim()),
        class_of(&form.category),
    ) else {
        return problem(viewer.lang, Problem::BadInput);
    };
    record_choice(
        &state,
        &viewer,
        Choice {
            class,
            ..Choice::new(false, &form.principal)
        },
    )
    .await
}

/// `POST /sharing/referral`: `answer=accept` consents to the practitioner referred to,
/// `answer=decline` denies them.
pub async fn referral(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<BlockForm>,
) -> Response {
    if let Some(refused) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Patient, &[]) {
        return refused;
    }
    let permit = match form.answer.as_str() {
        "accept" => true,
        "decline" => false,
        _ => return problem(viewer.lang, Problem::BadInput),
    };
    if !principal_ok(form.principal.trim()) {
        return problem(viewer.lang, Problem::BadInput);
    }
    record_choice(&state, &viewer, Choice::new(permit, &form.principal)).await
}

/// `POST /sharing/rule`: later results of a category are shared with someone as written.
pub async fn rule(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<BlockForm>,
) -> Response {
    if let Some(refused) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Patient, &[]) {
        return refused;
    }
    let category = match form.category.as_str() {
        c @ ("laboratory" | "vital-signs") => c.to_string(),
        _ => return problem(viewer.lang, Problem::BadInput),
    };
    if !principal_ok(form.principal.trim()) {
        return problem(viewer.lang, Problem::BadInput);
    }
    record_choice(
        &state,
        &viewer,
        Choice {
            class: Some("Observation".into()),
            share_future: Some(category),
            ..Choice::new(true, &form.principal)
        },
    )
    .await
}

/// The withdraw form.
#[derive(Debug, Deserialize)]
pub struct WithdrawForm {
    csrf: Option<String>,
    consent: String,
}

/// `POST /sharing/withdraw`: the Consent becomes `inactive`.
pub async fn withdraw(
    State(state): State<AppState>,
    viewer: Viewer,
    Form(form): Form<WithdrawForm>,
) -> Response {
    let lang = viewer.lang;
    if let Some(refused) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Patient, &[]) {
        return refused;
    }
    let Some(id) = form
        .consent
        .trim()
        .strip_prefix("Consent/")
        .filter(|id| valid_id(id))
    else {
        return problem(lang, Problem::BadInput);
    };
    let mut consent = match state.records.read(&viewer.ctx, "Consent", id).await {
        Ok(c) => c.resource,
        Err(e) => return record_problem(lang, &e),
    };
    consent["status"] = json!("inactive");
    match state
        .records
        .update(&viewer.ctx, "Consent", id, consent, None)
        .await
    {
        Ok(_) => Redirect::to("/sharing?saved=1").into_response(),
        Err(e) => record_problem(lang, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_policy::access::Edge;
    use medmesh_policy::consent::parse_consent;

    fn choice(permit: bool) -> Choice {
        Choice::new(permit, "Practitioner/dr")
    }

    fn line(
        principal: &str,
        kind: EdgeKind,
        since: i64,
        until: Option<i64>,
        active: bool,
    ) -> AccessLine {
        AccessLine {
            edge: Edge {
                patient: "p1".into(),
                principal: principal.into(),
                kind,
                source: format!("Encounter/{since}"),
                since,
                until,
                detail: None,
            },
            active,
        }
    }

    /// Visits to one hospital are one line from the first to the last; consents and
    /// emergencies stay apart, and so do ended and current access.
    #[test]
    fn visits_to_one_organization_are_one_line() {
        let lines = merged(vec![
            line("Organization/h", EdgeKind::Encounter, 10, Some(20), false),
            line("Organization/h", EdgeKind::Encounter, 5, Some(30), false),
            line("Organization/h", EdgeKind::Encounter, 40, None, true),
            line("Organization/h", EdgeKind::Encounter, 50, Some(90), true),
            line("Organization/k", EdgeKind::Encounter, 1, Some(2), false),
            line("Practitioner/a", EdgeKind::Consent, 1, None, true),
            line("Practitioner/a", EdgeKind::Consent, 2, None, true),
            line("Practitioner/b", EdgeKind::BreakGlass, 3, Some(4), false),
            line("Practitioner/b", EdgeKind::BreakGlass, 5, Some(6), false),
        ]);
        let seen: Vec<_> = lines
            .iter()
            .map(|l| {
                (
                    l.edge.principal.as_str(),
                    l.edge.kind,
                    l.edge.since,
                    l.edge.until,
                    l.active,
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("Organization/h", EdgeKind::Encounter, 5, Some(30), false),
                ("Organization/h", EdgeKind::Encounter, 40, None, true),
                ("Organization/k", EdgeKind::Encounter, 1, Some(2), false),
                ("Practitioner/a", EdgeKind::Consent, 1, None, true),
                ("Practitioner/a", EdgeKind::Consent, 2, None, true),
                ("Practitioner/b", EdgeKind::BreakGlass, 3, Some(4), false),
                ("Practitioner/b", EdgeKind::BreakGlass, 5, Some(6), false),
            ]
        );
    }

    /// What the page writes is what the PDP reads.
    #[test]
    fn the_pdp_reads_each_choice_as_made() {
        let now = "2026-12-03T10:00:00Z";
        let c = parse_consent(&consent_of("p1", &choice(true), now)).unwrap();
        assert!(c.root.permit);
        assert_eq!(c.root.actors, vec!["Practitioner/dr".to_string()]);
        assert!(c.root.classes.is_empty());

        let mut narrow = choice(true);
        narrow.class = Some("Observation".into());
        narrow.labels = vec!["PSY".into()];
        narrow.until = Some("2027-01-31".into());
        let c = parse_consent(&consent_of("p1", &narrow, now)).unwrap();
        assert_eq!(c.root.classes, vec!["Observation".to_string()]);
        assert_eq!(c.root.labels, vec!["PSY".to_string()]);
        assert!(c.root.period.1.is_some());

        let mut block = choice(false);
        block.class = Some("Condition".into());
        let c = parse_consent(&consent_of("p1", &block, now)).unwrap();
        assert!(!c.root.permit);
        assert_eq!(c.root.classes, vec!["Condition".to_string()]);

        let mut rule = choice(true);
        rule.class = Some("Observation".into());
        rule.share_future = Some("laboratory".into());
        let c = parse_consent(&consent_of("p1", &rule, now)).unwrap();
        assert!(c.root.share_future);
        assert_eq!(c.root.codes, vec!["laboratory".to_string()]);
    }

    #[test]
    fn forms_name_only_what_they_offer() {
        assert!(principal_ok("Practitioner/abc-1"));
        assert!(principal_ok("Organization/o.1"));
        assert!(!principal_ok("Patient/p1"));
        assert!(!principal_ok("Practitioner/../x y"));
        assert_eq!(class_of("all"), Some(None));
        assert_eq!(class_of("Condition"), Some(Some("Condition".into())));
        assert_eq!(class_of("Account"), None);
        let f = GrantForm::parse("csrf=x&labels=PSY&labels=HIV&principal=Practitioner%2Fdr");
        assert_eq!(f.labels, vec!["PSY".to_string(), "HIV".to_string()]);
        assert_eq!(f.principal, "Practitioner/dr");
    }
}
