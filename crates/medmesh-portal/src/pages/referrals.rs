//! Referrals, the clinician's side. `GET /patients/{id}/refer` finds a colleague in the
//! directory (`POST`ed: name, specialty, organization) and `POST /patients/{id}/refer`
//! sends the referral: a ServiceRequest and its Task (`requested`, owned by the colleague),
//! both written through the record service. `GET /referrals` lists the referrals sent to the
//! clinician and those they sent; `POST /referrals/{task}/accept` accepts one, which opens
//! the patient's record to them (under the patient's consents) on the next request.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use medmesh_fhir::search::Handling;
use medmesh_records::bundle::ReturnPreference;
use medmesh_server::AppState;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::clinical::{self, concept, human_name, resources};
use crate::i18n::Arg;
use crate::layout::{Problem, Shell, problem, record_problem, render};
use crate::pages::{CsrfForm, csrf_guard, field, name_of, now_rfc3339, refuse_form, valid_id};
use crate::viewer::{Audience, Viewer};

/// The ServiceRequest's name inside the referral's transaction Bundle, which the record
/// service replaces with its new id in the Task's `focus` (placeholders are local to one
/// Bundle, so one constant serves every referral).
const REQUEST_PLACEHOLDER: &str = "urn:uuid:5b0e3c1e-9c3a-4a52-8e63-0c6f1e0d2a11";

/// One colleague the directory found.
pub struct Colleague {
    /// `Practitioner/x`.
    pub reference: String,
    /// Name.
    pub name: String,
    /// Specialties and organizations, in words.
    pub details: String,
}

#[derive(Template)]
#[template(path = "refer.html")]
struct ReferPage {
    shell: Shell,
    patient_id: String,
    searched: bool,
    colleagues: Vec<Colleague>,
    name: String,
    specialty: String,
    organization: String,
}

/// The directory search.
#[derive(Debug, Default, Deserialize)]
pub struct DirectoryForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    specialty: String,
    #[serde(default)]
    organization: String,
}

/// Finds practitioners by name, specialty and organization: their PractitionerRoles (with
/// the practitioner and organization included), and, for a name alone, practitioners who
/// have no role on record too.
async fn directory(
    state: &AppState,
    viewer: &Viewer,
    name: Option<&str>,
    specialty: Option<&str>,
    organization: Option<&str>,
) -> Result<Vec<Colleague>, medmesh_records::RecordError> {
    let mut params: Vec<(String, String)> = vec![
        ("_count".into(), "50".into()),
        ("_include".into(), "PractitionerRole:practitioner".into()),
        ("_include".into(), "PractitionerRole:organization".into()),
    ];
    params.extend(name.map(|n| ("practitioner.name".into(), n.into())));
    params.extend(specialty.map(|s| ("specialty:text".into(), s.into())));
    params.extend(organization.map(|o| ("organization.name".into(), o.into())));
    let bundle = state
        .records
        .search(&viewer.ctx, "PractitionerRole", &params, Handling::Lenient)
        .await?;
    let found = resources(bundle);
    let by_ref = |reference: &str| {
        found.iter().find(|r| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or_default(),
                r["id"].as_str().unwrap_or_default()
            ) == reference
        })
    };
    let mut out: Vec<Colleague> = Vec::new();
    for role in found
        .iter()
        .filter(|r| r["resourceType"] == "PractitionerRole")
    {
        let Some(reference) = role["practitioner"]["reference"].as_str() else {
            continue;
        };
        let mut details: Vec<String> = role["specialty"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(concept)
            .collect();
        if let Some(org) = role["organization"]["reference"]
            .as_str()
            .and_then(by_ref)
            .and_then(human_name)
        {
            details.push(org);
        }
        match out.iter_mut().find(|c| c.reference == reference) {
            Some(c) => {
                c.details = format!("{} · {}", c.details, details.join(" · "));
            }
            None => out.push(Colleague {
                reference: reference.to_string(),
                name: by_ref(reference)
                    .and_then(human_name)
                    .unwrap_or_else(|| reference.to_string()),
                details: details.join(" · "),
            }),
        }
    }
    if let (Some(n), None, None) = (name, specialty, organization) {
        let bundle = state
            .records
            .search(
                &viewer.ctx,
                "Practitioner",
                &[("name".into(), n.into()), ("_count".into(), "50".into())],
                Handling::Lenient,
            )
            .await?;
        for p in resources(bundle) {
            let reference = format!("Practitioner/{}", p["id"].as_str().unwrap_or_default());
            if !out.iter().any(|c| c.reference == reference) {
                out.push(Colleague {
                    name: human_name(&p).unwrap_or_else(|| reference.clone()),
                    reference,
                    details: String::new(),
                });
            }
        }
    }
    // Not oneself.
    let me = viewer
        .ctx
        .actor()
        .clinician()
        .map(|c| c.practitioner.as_str());
    out.retain(|c| Some(c.reference.as_str()) != me);
    Ok(out)
}

async fn refer_page(
    state: &AppState,
    viewer: &Viewer,
    id: String,
    form: Option<DirectoryForm>,
) -> Response {
    let lang = viewer.lang;
    if viewer.audience != Audience::Clinician {
        return problem(lang, Problem::WrongAudience);
    }
    if !valid_id(&id) {
        return problem(lang, Problem::NotFound);
    }
    let patient_name = match crate::pages::chart::about(state, viewer, &id).await {
        Ok(a) => a.name,
        Err(refused) => return refused,
    };
    let searched = form.is_some();
    let form = form.unwrap_or_default();
    let (name, specialty, organization) = (
        field(&form.name, 100),
        field(&form.specialty, 100),
        field(&form.organization, 100),
    );
    let colleagues = if searched {
        match directory(
            state,
            viewer,
            name.as_deref(),
            specialty.as_deref(),
            organization.as_deref(),
        )
        .await
        {
            Ok(c) => c,
            Err(e) => return record_problem(lang, &e),
        }
    } else {
        Vec::new()
    };
    let mut shell = Shell::new(viewer, "/patients", "refer-title");
    shell.title = lang.t_with("refer-title", &[("name", Arg::Text(patient_name))]);
    render(
        StatusCode::OK,
        &ReferPage {
            shell,
            patient_id: id,
            searched,
            colleagues,
            name: name.unwrap_or_default(),
            specialty: specialty.unwrap_or_default(),
            organization: organization.unwrap_or_default(),
        },
    )
}

/// `GET /patients/{id}/refer`.
pub async fn refer_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    refer_page(&state, &viewer, id, None).await
}

/// `POST /patients/{id}/refer/search`.
pub async fn refer_search(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<DirectoryForm>,
) -> Response {
    if let Some(refused) = csrf_guard(&viewer, form.csrf.as_deref()) {
        return refused;
    }
    refer_page(&state, &viewer, id, Some(form)).await
}

/// The referral itself.
#[derive(Debug, Deserialize)]
pub struct ReferralForm {
    csrf: Option<String>,
    #[serde(default)]
    practitioner: String,
    #[serde(default)]
    reason: String,
}

/// `POST /patients/{id}/refer`: the ServiceRequest and its Task, in one transaction of the
/// record service.
pub async fn refer(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<ReferralForm>,
) -> Response {
    let lang = viewer.lang;
    if let Some(refused) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Clinician, &[&id]) {
        return refused;
    }
    let colleague = form.practitioner.trim();
    let colleague_ok = colleague
        .strip_prefix("Practitioner/")
        .is_some_and(valid_id);
    let (true, Some(me)) = (
        colleague_ok,
        viewer
            .ctx
            .actor()
            .clinician()
            .map(|c| c.practitioner.clone()),
    ) else {
        return problem(lang, Problem::BadInput);
    };
    let reason = field(&form.reason, 500);
    let now = now_rfc3339(&state);
    let mut request = json!({
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"}], "text": "Referral"}],
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"}], "text": "Referral"},
        "subject": {"reference": format!("Patient/{id}")},
        "authoredOn": now,
        "requester": {"reference": me},
        "performer": [{"reference": colleague}],
    });
    if let Some(r) = &reason {
        request["reasonCode"] = json!([{"text": r}]);
    }
    let task = json!({
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}], "text": "Referral"},
        "focus": {"reference": REQUEST_PLACEHOLDER},
        "for": {"reference": format!("Patient/{id}")},
        "authoredOn": now,
        "requester": {"reference": me},
        "owner": {"reference": colleague},
    });
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": REQUEST_PLACEHOLDER, "resource": request,
             "request": {"method": "POST", "url": "ServiceRequest"}},
            {"resource": task, "request": {"method": "POST", "url": "Task"}},
        ],
    });
    match state
        .records
        .process_bundle(&viewer.ctx, bundle, ReturnPreference::Minimal)
        .await
    {
        Ok(_) => Redirect::to("/referrals").into_response(),
        Err(e) => record_problem(lang, &e),
    }
}

/// One referral in a list.
pub struct ReferralRow {
    /// The Task's id (for accepting).
    pub task: String,
    /// The patient, by name when the viewer may read them.
    pub patient: String,
    /// The other clinician.
    pub who: String,
    /// The status, in words.
    pub status: String,
    /// Whether it waits for the viewer's answer.
    pub pending: bool,
    /// When it was sent.
    pub when: String,
}

#[derive(Template)]
#[template(path = "referrals.html")]
struct ReferralsPage {
    shell: Shell,
    incoming: Vec<ReferralRow>,
    sent: Vec<ReferralRow>,
}

/// The referral Tasks the viewer sent: Tasks of patients they reach (the PDP decides, and
/// audits the search).
async fn tasks(
    state: &AppState,
    viewer: &Viewer,
    param: &str,
    me: &str,
) -> Result<Vec<Value>, medmesh_records::RecordError> {
    let bundle = state
        .records
        .search(
            &viewer.ctx,
            "Task",
            &[
                (param.into(), me.into()),
                ("_count".into(), "100".into()),
                ("_sort".into(), "-authored-on".into()),
            ],
            Handling::Lenient,
        )
        .await?;
    Ok(resources(bundle)
        .into_iter()
        .filter(|t| {
            t["focus"]["reference"]
                .as_str()
                .is_some_and(|f| f.starts_with("ServiceRequest/"))
        })
        .collect())
}

async fn rows(
    state: &AppState,
    viewer: &Viewer,
    tasks: Vec<Value>,
    other: &str,
) -> Vec<ReferralRow> {
    let lang = viewer.lang;
    let mut out = Vec::new();
    for t in tasks {
        let status = t["status"].as_str().unwrap_or_default().to_string();
        let patient = match t["for"]["reference"].as_str() {
            Some(p) => name_of(state, viewer, p).await,
            None => String::new(),
        };
        let who = match t[other]["reference"].as_str() {
            Some(p) => name_of(state, viewer, p).await,
            None => String::new(),
        };
        out.push(ReferralRow {
            task: t["id"].as_str().unwrap_or_default().to_string(),
            patient,
            who,
            pending: false,
            status: lang
                .lookup(&format!("status-{status}"))
                .unwrap_or_else(|| status.clone()),
            when: clinical::date_of(lang, &t["authoredOn"], viewer.tz_minutes),
        });
    }
    out
}

/// `GET /referrals`.
pub async fn referrals(State(state): State<AppState>, viewer: Viewer) -> Response {
    let lang = viewer.lang;
    let Some(me) = viewer
        .ctx
        .actor()
        .clinician()
        .map(|c| c.practitioner.clone())
        .filter(|_| viewer.audience == Audience::Clinician)
    else {
        return problem(lang, Problem::WrongAudience);
    };
    let (owned, requested) = match tokio::try_join!(
        state.trust.referrals_for(&viewer.ctx),
        tasks(&state, &viewer, "requester", &me)
    ) {
        Ok(t) => t,
        Err(e) => return record_problem(lang, &e),
    };
    let mut incoming = Vec::new();
    for r in owned {
        let patient = match &r.patient {
            // Readable once accepted; before, the patient is not named to the owner.
            Some(p) if r.status != "requested" => name_of(&state, &viewer, p).await,
            _ => lang.t("referrals-patient-hidden"),
        };
        let who = match &r.requester {
            Some(p) => name_of(&state, &viewer, p).await,
            None => String::new(),
        };
        incoming.push(ReferralRow {
            pending: r.status == "requested",
            status: lang
                .lookup(&format!("status-{}", r.status))
                .unwrap_or_else(|| r.status.clone()),
            when: r
                .authored_on
                .map(|a| clinical::date_of(lang, &Value::String(a), viewer.tz_minutes))
                .unwrap_or_default(),
            task: r.task_id,
            patient,
            who,
        });
    }
    let sent = rows(&state, &viewer, requested, "owner").await;
    render(
        StatusCode::OK,
        &ReferralsPage {
            shell: Shell::new(&viewer, "/referrals", "referrals-title"),
            incoming,
            sent,
        },
    )
}

/// `POST /referrals/{task}/accept`.
pub async fn accept(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(task): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let lang = viewer.lang;
    if let Some(refused) = refuse_form(&viewer, form.csrf.as_deref(), Audience::Clinician, &[&task])
    {
        return refused;
    }
    match state.trust.accept_referral(&viewer.ctx, &task).await {
        Ok(()) => Redirect::to("/referrals").into_response(),
        Err(e) => record_problem(lang, &e),
    }
}
