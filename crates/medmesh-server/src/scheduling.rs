//! IHE ITI Scheduling on the FHIR API: `Appointment/$find` (ITI-115), `$hold` (ITI-116) and
//! `$book` (ITI-117). Extract, call [`medmesh_scheduling::SchedulingService`], render.

use axum::Json;
use axum::extract::{RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use medmesh_fhir::IssueType;
use medmesh_records::service::parse_query_string;
use medmesh_scheduling::calendar::parse_utc;
use medmesh_scheduling::directory::DirectoryQuery;
use medmesh_scheduling::ics::{FeedDetail, FeedOwner};
use medmesh_scheduling::{FindRequest, StaffAction};
use serde_json::{Value, json};

use crate::AppState;
use crate::api::{ApiJson, ApiPath, ApiQuery};
use crate::auth::Authenticated;
use crate::handlers::{ApiResult, read_resource};
use crate::response::{ApiError, fhir_json};

/// At most this many values of one list parameter.
const MAX_VALUES: usize = 50;

fn instant(name: &str, v: &str) -> Result<i64, ApiError> {
    parse_utc(v, name == "end")
        .ok_or_else(|| ApiError::bad_request(format!("{name} is not a FHIR dateTime")))
}

/// Builds a find request from `(name, value)` pairs, from a query string or Parameters.
fn find_request(params: &[(String, String)]) -> Result<FindRequest, ApiError> {
    let mut req = FindRequest::default();
    for (name, value) in params {
        let list = match name.as_str() {
            "start" => {
                req.start = Some(instant("start", value)?);
                continue;
            }
            "end" => {
                req.end = Some(instant("end", value)?);
                continue;
            }
            "patient" => {
                req.patient = Some(value.clone());
                continue;
            }
            "_count" => {
                req.limit = value
                    .parse()
                    .map_err(|_| ApiError::bad_request("_count is not a number"))?;
                continue;
            }
            "practitioner" => &mut req.practitioners,
            "specialty" => &mut req.specialties,
            "appointmentType" | "appointment-type" | "visit-type" | "service-type" => {
                &mut req.visit_types
            }
            "location" => &mut req.locations,
            "organization" => &mut req.organizations,
            "schedule" => &mut req.schedules,
            // Other parameters of ITI-115 (referral, reason) narrow nothing here.
            _ => continue,
        };
        list.extend(
            value
                .split(',')
                .filter(|v| !v.is_empty())
                .map(str::to_string),
        );
        if list.len() > MAX_VALUES {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_VALUES} values of {name}"
            )));
        }
    }
    Ok(req)
}

/// A Parameters resource's parameters as `(name, value)` text pairs (references by their
/// reference), plus its resource-valued ones.
/// A Parameters resource read: text-valued parameters, and resource-valued ones.
type ReadParameters = (Vec<(String, String)>, Vec<(String, Value)>);

fn parameters(body: &Value) -> Result<ReadParameters, ApiError> {
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(ApiError::bad_request(
            "the body must be a Parameters resource",
        ));
    }
    let mut text = Vec::new();
    let mut resources = Vec::new();
    for p in body
        .get("parameter")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let Some(name) = p.get("name").and_then(Value::as_str) else {
            return Err(ApiError::bad_request("a parameter without a name"));
        };
        if let Some(r) = p.get("resource") {
            resources.push((name.to_string(), r.clone()));
            continue;
        }
        let value = p
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")))
            .map(|(_, v)| v);
        let value = match value {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(v) => match v.get("reference").and_then(Value::as_str) {
                Some(r) => r.to_string(),
                None => match v.pointer("/coding/0/code").and_then(Value::as_str) {
                    Some(code) => match v.pointer("/coding/0/system").and_then(Value::as_str) {
                        Some(system) => format!("{system}|{code}"),
                        None => code.to_string(),
                    },
                    None => continue,
                },
            },
            None => continue,
        };
        text.push((name.to_string(), value));
    }
    Ok((text, resources))
}

fn searchset(entries: Vec<Value>) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": entries.len(),
        "entry": entries.into_iter().map(|r| json!({"resource": r, "search": {"mode": "match"}})).collect::<Vec<_>>(),
    })
}

/// `GET /fhir/Appointment/$find?start=..&end=..&practitioner=..`: proposed appointments,
/// a searchset Bundle.
pub async fn find_get(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let params = parse_query_string(q.as_deref().unwrap_or_default());
    let req = find_request(&params)?;
    let found = state.scheduling.find(&ctx, &req).await?;
    Ok(fhir_json(StatusCode::OK, &searchset(found)))
}

/// `POST /fhir/Appointment/$find` with a Parameters body.
pub async fn find_post(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    req: Request,
) -> ApiResult {
    let body = read_resource(&state, req).await?;
    let (params, _) = parameters(&body)?;
    let req = find_request(&params)?;
    let found = state.scheduling.find(&ctx, &req).await?;
    Ok(fhir_json(StatusCode::OK, &searchset(found)))
}

/// The Appointment a `$hold` or `$book` names: a Parameters `appointment` resource (or an
/// `appointment-reference`), or a bare Appointment.
fn appointment_input(body: &Value) -> Result<(Option<Value>, Option<String>), ApiError> {
    if body.get("resourceType").and_then(Value::as_str) == Some("Appointment") {
        return Ok((Some(body.clone()), None));
    }
    let (text, resources) = parameters(body)?;
    let resource = resources
        .into_iter()
        .find(|(n, r)| {
            n == "appointment"
                && r.get("resourceType").and_then(Value::as_str) == Some("Appointment")
        })
        .map(|(_, r)| r);
    let reference = text
        .into_iter()
        .find(|(n, _)| n == "appointment-reference" || n == "appointment")
        .map(|(_, r)| {
            r.rsplit_once("Appointment/")
                .map_or(r.clone(), |(_, id)| id.to_string())
        });
    if resource.is_none() && reference.is_none() {
        return Err(ApiError::bad_request(
            "an appointment (resource) or appointment-reference parameter is required",
        ));
    }
    Ok((resource, reference))
}

/// `POST /fhir/Appointment/$hold`: holds a proposed appointment; answers the Appointment,
/// `pending`, held for the node's hold time.
pub async fn hold(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    req: Request,
) -> ApiResult {
    let body = read_resource(&state, req).await?;
    let (resource, _) = appointment_input(&body)?;
    let Some(resource) = resource else {
        return Err(ApiError::bad_request(
            "$hold needs the proposed appointment",
        ));
    };
    let held = state.scheduling.hold(&ctx, &resource).await?;
    Ok(fhir_json(StatusCode::OK, &held))
}

/// `POST /fhir/Appointment/$book`: books a proposed or held appointment; answers a
/// searchset Bundle holding the Appointment (ITI-117).
pub async fn book(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    req: Request,
) -> ApiResult {
    let body = read_resource(&state, req).await?;
    let (resource, reference) = appointment_input(&body)?;
    let booked = state
        .scheduling
        .book(&ctx, resource.as_ref(), reference.as_deref())
        .await?;
    Ok(fhir_json(StatusCode::OK, &searchset(vec![booked])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_a_find_request() {
        let body = json!({"resourceType": "Parameters", "parameter": [
            {"name": "start", "valueDateTime": "2026-12-07T08:00:00Z"},
            {"name": "end", "valueDateTime": "2026-12-08"},
            {"name": "practitioner", "valueReference": {"reference": "Practitioner/p1"}},
            {"name": "specialty", "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "394814009"}]}},
            {"name": "appointmentType", "valueString": "ROUTINE"},
            {"name": "patient", "valueReference": {"reference": "Patient/x"}}
        ]});
        let (params, _) = parameters(&body).unwrap();
        let req = find_request(&params).unwrap();
        assert_eq!(req.practitioners, vec!["Practitioner/p1"]);
        assert_eq!(req.specialties, vec!["http://snomed.info/sct|394814009"]);
        assert_eq!(req.visit_types, vec!["ROUTINE"]);
        assert_eq!(req.patient.as_deref(), Some("Patient/x"));
        assert!(req.start.is_some() && req.end.is_some());
        assert!(find_request(&[("start".into(), "soon".into())]).is_err());
        let many: Vec<(String, String)> = (0..60)
            .map(|i| ("practitioner".to_string(), format!("p{i}")))
            .collect();
        assert!(find_request(&many).is_err());
        assert!(parameters(&json!({"resourceType": "Patient"})).is_err());
    }

    #[test]
    fn book_takes_a_resource_or_a_reference() {
        let appt = json!({"resourceType": "Appointment", "status": "proposed"});
        assert!(appointment_input(&appt).unwrap().0.is_some());
        let by_ref = json!({"resourceType": "Parameters", "parameter": [
            {"name": "appointment-reference", "valueReference": {"reference": "Appointment/a1"}}]});
        assert_eq!(appointment_input(&by_ref).unwrap().1.as_deref(), Some("a1"));
        let empty = json!({"resourceType": "Parameters", "parameter": []});
        assert!(appointment_input(&empty).is_err());
    }
}

/// `POST /api/appointments/{id}/cancel` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Why (optional, at most 500 characters kept).
    pub reason: Option<String>,
}

/// `POST /api/appointments/{id}/cancel`: the patient or staff cancel; the time is freed.
pub async fn api_cancel(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CancelRequest>,
) -> Result<Response, ApiError> {
    let a = state
        .scheduling
        .cancel(&ctx, &id, body.reason.as_deref())
        .await?;
    Ok(Json(a).into_response())
}

/// `POST /api/appointments/{id}/reschedule` body: a proposal from `$find`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RescheduleRequest {
    /// The proposed Appointment to move to.
    pub appointment: Value,
}

/// `POST /api/appointments/{id}/reschedule`: moves an appointment to a proposal's time, in
/// one transaction (the old time is freed only if the new one is claimed).
pub async fn api_reschedule(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RescheduleRequest>,
) -> Result<Response, ApiError> {
    let a = state
        .scheduling
        .reschedule(&ctx, &id, &body.appointment)
        .await?;
    Ok(Json(a).into_response())
}

/// `POST /api/appointments/{id}/{action}` with `approve`, `decline`, `arrived`, `noshow`
/// or `fulfilled`: what staff do.
pub async fn api_staff(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath((id, action)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let Some(action) = StaffAction::parse(&action) else {
        return Err(ApiError::bad_request(
            "the action is one of approve, decline, arrived, noshow, fulfilled",
        ));
    };
    let a = state.scheduling.staff(&ctx, &id, action).await?;
    Ok(Json(a).into_response())
}

/// `GET /api/directory` parameters.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryParams {
    /// A specialty: `code`, `system|code`, or its text.
    pub specialty: Option<String>,
    /// `latitude,longitude`, degrees.
    pub near: Option<String>,
    /// How far from `near`, km (default 25).
    pub km: Option<f64>,
    /// An insurance plan: id, identifier value or name.
    pub insurance: Option<String>,
    /// A language (BCP 47).
    pub language: Option<String>,
    /// Whether to look up the next free time (`true`).
    pub next_free: Option<bool>,
    /// At most this many (default and cap 100).
    pub limit: Option<usize>,
}

/// Reads `latitude,longitude`.
pub fn parse_place(s: &str) -> Result<(f64, f64), ApiError> {
    let bad = || ApiError::bad_request("near is latitude,longitude in degrees");
    let (lat, lon) = s.split_once(',').ok_or_else(bad)?;
    let lat: f64 = lat.trim().parse().map_err(|_| bad())?;
    let lon: f64 = lon.trim().parse().map_err(|_| bad())?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(bad());
    }
    Ok((lat, lon))
}

/// `GET /api/directory?specialty=..&near=lat,lon&km=..&insurance=..&language=..&next_free=true`:
/// practitioners who can be booked, nearest first when a place is given.
pub async fn api_directory(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiQuery(p): ApiQuery<DirectoryParams>,
) -> Result<Response, ApiError> {
    let query = DirectoryQuery {
        specialty: p.specialty.filter(|s| !s.trim().is_empty()),
        near: p.near.as_deref().map(parse_place).transpose()?,
        within_km: p.km,
        insurance: p.insurance.filter(|s| !s.trim().is_empty()),
        language: p.language.filter(|s| !s.trim().is_empty()),
        next_free: p.next_free.unwrap_or(false),
        limit: p.limit.unwrap_or(0),
    };
    let found = state.scheduling.directory(&ctx, &query).await?;
    Ok(Json(json!({ "practitioners": found })).into_response())
}

/// `GET /feeds/{token}.ics`: the owner's appointments as an RFC 5545 calendar, for calendar
/// apps that cannot sign in. The token is the credential (unguessable, revocable, read-only
/// for appointments); an unknown one answers 404 like any missing page.
pub async fn feed(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, _) = req.into_parts();
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            "no such calendar",
        )
    };
    let file = parts
        .uri
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let Some(token) = file.strip_suffix(".ics") else {
        return Err(not_found());
    };
    let Some((ctx, user, detail)) = crate::auth::feed_context(&parts, &state, token).await? else {
        return Err(not_found());
    };
    let owner = match (&user.patient_id, &user.practitioner_id, user.role.as_str()) {
        (Some(p), _, "patient") => FeedOwner::Patient(p.clone()),
        (_, Some(p), "practitioner") => FeedOwner::Practitioner(p.clone()),
        _ => return Err(not_found()),
    };
    let detail = FeedDetail::parse(&detail).unwrap_or(FeedDetail::Busy);
    let base = state.base_url(&parts);
    let host = base
        .split("://")
        .nth(1)
        .and_then(|r| r.split(['/', ':']).next())
        .unwrap_or("medmesh.invalid")
        .to_string();
    let text = state.scheduling.feed(&ctx, &owner, detail, &host).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store, private"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::CONTENT_DISPOSITION,
                "inline; filename=\"appointments.ics\"",
            ),
        ],
        text,
    )
        .into_response())
}

/// `POST /api/account/calendar-feed` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedRequest {
    /// `busy` (the default: times only) or `detailed` (names and places).
    pub detail: Option<String>,
}

/// Makes the caller's private calendar feed (replacing the one they had) and answers its
/// URL, shown this once.
pub async fn api_create_feed(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiJson(body): ApiJson<FeedRequest>,
) -> Result<Response, ApiError> {
    let url = create_feed(&state, &ctx, body.detail.as_deref().unwrap_or("busy")).await?;
    Ok((StatusCode::CREATED, Json(json!({ "url": url }))).into_response())
}

/// Makes `ctx`'s user's calendar feed and returns its URL. Patients and practitioners only.
///
/// # Errors
/// 403 for other accounts; 400 for an unknown detail.
pub async fn create_feed(
    state: &AppState,
    ctx: &medmesh_kernel::RequestContext,
    detail: &str,
) -> Result<String, ApiError> {
    let role = ctx.actor().role();
    if !matches!(
        role,
        Some(medmesh_auth::Role::Patient | medmesh_auth::Role::Practitioner)
    ) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            IssueType::Forbidden,
            "calendar feeds are for patients and practitioners",
        ));
    }
    let token = state
        .identity
        .create_calendar_feed(ctx.actor().subject(), detail)
        .await
        .map_err(|e| match e {
            medmesh_identity::IdentityError::InvalidRequest(m) => ApiError::bad_request(m),
            _ => ApiError::internal(),
        })?;
    let base = ctx.base_url().trim_end_matches("/fhir").to_string();
    Ok(format!("{base}/feeds/{token}.ics"))
}

/// `DELETE /api/account/calendar-feed`: the caller's feed stops working.
pub async fn api_revoke_feed(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
) -> Result<Response, ApiError> {
    state
        .identity
        .revoke_calendar_feed(ctx.actor().subject())
        .await
        .map_err(|_| ApiError::internal())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/appointments/waitlist` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitlistRequest {
    /// `Practitioner/x` or `x`.
    pub practitioner: String,
    /// `Patient/p` or `p`; a patient's own by default.
    pub patient: Option<String>,
}

/// `POST /api/appointments/waitlist`: waits for a practitioner, where the practice keeps a
/// waiting list; a freed time is offered (held) to the patient who waited longest.
pub async fn api_waitlist(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiJson(body): ApiJson<WaitlistRequest>,
) -> Result<Response, ApiError> {
    let patient = body
        .patient
        .or_else(|| ctx.actor().patient().map(str::to_string))
        .ok_or_else(|| ApiError::bad_request("name the patient"))?;
    let a = state
        .scheduling
        .join_waitlist(&ctx, &body.practitioner, &patient)
        .await?;
    Ok((StatusCode::CREATED, Json(a)).into_response())
}

/// `GET /api/appointments/figures` parameters.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiguresParams {
    /// `Practitioner/x` or `x`.
    pub practitioner: String,
    /// From this date (FHIR date or dateTime).
    pub from: Option<String>,
    /// Before this date.
    pub to: Option<String>,
}

/// `GET /api/appointments/figures?practitioner=..&from=..&to=..`: the practitioner's
/// appointments counted by status (no-shows among them), as far as the caller may see them.
pub async fn api_figures(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiQuery(p): ApiQuery<FiguresParams>,
) -> Result<Response, ApiError> {
    for d in [&p.from, &p.to].into_iter().flatten() {
        instant("from and to", d)?;
    }
    let counts = state
        .scheduling
        .figures(&ctx, &p.practitioner, p.from.as_deref(), p.to.as_deref())
        .await?;
    Ok(Json(json!({ "practitioner": p.practitioner, "byStatus": counts })).into_response())
}
