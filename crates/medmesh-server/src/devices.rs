//! Device data on the JSON API: uploads (`POST /api/patients/{id}/device-data`, multipart)
//! and the glucose figures, readings and AGP report
//! (`/api/patients/{id}/glucose/{summary,readings,agp.svg,agp.pdf}`). Extract, call
//! [`medmesh_devices::DeviceDataService`], render.

use std::io::Seek;

use axum::Json;
use axum::extract::{Multipart, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use medmesh_device_import::{Channel, Format};
use medmesh_fhir::IssueType;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::AppState;
use crate::api::{ApiJson, ApiPath, ApiQuery};
use crate::auth::Authenticated;
use crate::response::ApiError;

/// The largest device file one upload takes (an Apple Health export.zip of years).
pub const MAX_DEVICE_FILE_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Files per upload.
pub const MAX_DEVICE_FILES: usize = 20;

/// `POST /api/patients/{id}/device-data` (multipart/form-data): optional `format`
/// (`libreview`, `dexcom-clarity`, `carelink`, `apple-health`, `nightscout`; detected when
/// absent) and `time_zone` (IANA, for exports written in local time; UTC when absent), then
/// one or more `file` fields. Each file is spooled to a temporary file, read and merged
/// into the patient's record; the answer reports each.
pub async fn upload(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut form = form.map_err(|_| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            "the body must be multipart/form-data",
        )
    })?;
    let bad_form = |_| ApiError::bad_request("the multipart body is malformed");
    let (mut format, mut zone_name) = (None, None);
    let mut reports = Vec::new();
    while let Some(mut field) = form.next_field().await.map_err(bad_form)? {
        match field.name().unwrap_or_default() {
            "format" => {
                let name = field.text().await.map_err(bad_form)?;
                let name = name.trim();
                if !name.is_empty() {
                    format = Some(Format::from_name(name).ok_or_else(|| ApiError::bad_request("format is not one of libreview, dexcom-clarity, carelink, apple-health, nightscout"))?);
                }
            }
            "time_zone" => zone_name = Some(field.text().await.map_err(bad_form)?),
            "file" => {
                if reports.len() >= MAX_DEVICE_FILES {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        IssueType::TooCostly,
                        format!("at most {MAX_DEVICE_FILES} files per upload"),
                    ));
                }
                let name = field.file_name().unwrap_or("upload").to_owned();
                let file = spool(&mut field).await.map_err(|e| match e {
                    SpoolError::TooLarge => ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        IssueType::TooCostly,
                        format!("a file is at most {MAX_DEVICE_FILE_BYTES} bytes"),
                    ),
                    SpoolError::Malformed => {
                        ApiError::bad_request("the multipart body is malformed")
                    }
                    SpoolError::Io => ApiError::internal(),
                })?;
                let zone = medmesh_devices::zone(zone_name.as_deref())?;
                let report = state
                    .devices
                    .import(&ctx, &patient, &name, file, format, zone)
                    .await?;
                reports.push(report);
            }
            _ => {
                let _ = field.text().await.map_err(bad_form)?;
            }
        }
    }
    if reports.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Required,
            "the form has no file field",
        ));
    }
    Ok(Json(json!({ "files": reports })).into_response())
}

/// Why an uploaded file could not be spooled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolError {
    /// Larger than [`MAX_DEVICE_FILE_BYTES`].
    TooLarge,
    /// The multipart body broke off or is malformed.
    Malformed,
    /// The temporary file could not be written.
    Io,
}

/// Copies an uploaded file field to an anonymous temporary file (deleted when dropped),
/// rewound, at most [`MAX_DEVICE_FILE_BYTES`]: the device importers read from it, so the
/// upload is never held in memory. The pages' upload uses it too.
///
/// # Errors
/// See [`SpoolError`].
pub async fn spool(
    field: &mut axum::extract::multipart::Field<'_>,
) -> Result<std::fs::File, SpoolError> {
    let spool = tempfile::tempfile().map_err(|_| SpoolError::Io)?;
    let mut out = tokio::fs::File::from_std(spool);
    let mut size: u64 = 0;
    while let Some(chunk) = field.chunk().await.map_err(|_| SpoolError::Malformed)? {
        size += chunk.len() as u64;
        if size > MAX_DEVICE_FILE_BYTES {
            return Err(SpoolError::TooLarge);
        }
        out.write_all(&chunk).await.map_err(|_| SpoolError::Io)?;
    }
    out.flush().await.map_err(|_| SpoolError::Io)?;
    let mut file = out.into_std().await;
    file.rewind().map_err(|_| SpoolError::Io)?;
    Ok(file)
}

/// The query of the glucose reads: the period and its zone.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlucoseQuery {
    /// A date (a whole day in the zone) or an instant; 14 days before `end` by default.
    pub start: Option<String>,
    /// A date (included) or an instant; now by default.
    pub end: Option<String>,
    /// The IANA zone of the days and times of day; UTC by default.
    pub tz: Option<String>,
    /// For readings: the channel (`sensor-glucose` by default).
    pub channel: Option<String>,
    /// For the CGM export: whether to include each reading (true by default).
    pub readings: Option<bool>,
}

fn period_of(
    state: &AppState,
    q: &GlucoseQuery,
) -> Result<(jiff::Timestamp, jiff::Timestamp, jiff::tz::TimeZone), ApiError> {
    let zone = medmesh_devices::zone(q.tz.as_deref())?;
    let now = state.devices.now();
    let (start, end) = medmesh_devices::period(q.start.as_deref(), q.end.as_deref(), &zone, now)?;
    Ok((start, end, zone))
}

/// The body of a Nightscout pull.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NightscoutPull {
    /// The site's base URL (`https://me.example.org/`).
    pub url: String,
    /// Its `API_SECRET` (sent only as Nightscout's SHA-1 of it), or...
    pub api_secret: Option<String>,
    /// ...an access token (`readable-...`).
    pub token: Option<String>,
    /// A date or an instant; 90 days before `end` by default.
    pub start: Option<String>,
    /// A date (included) or an instant; now by default.
    pub end: Option<String>,
    /// The IANA zone of the dates; UTC by default.
    pub time_zone: Option<String>,
}

/// `POST /api/patients/{id}/device-data/nightscout`: pulls the period from the patient's
/// Nightscout site and imports it; the answer reports it like one file. The credential is
/// used for this pull only, never stored.
pub async fn pull_nightscout(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
    ApiJson(body): ApiJson<NightscoutPull>,
) -> Result<Response, ApiError> {
    let credential = match (body.api_secret, body.token) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("give api_secret or token, not both"));
        }
        (Some(secret), None) => medmesh_devices::RemoteCredential::ApiSecret(secret),
        (None, Some(token)) => medmesh_devices::RemoteCredential::Token(token),
        (None, None) => medmesh_devices::RemoteCredential::None,
    };
    let zone = medmesh_devices::zone(body.time_zone.as_deref())?;
    let (start, end) = medmesh_devices::pull_period(
        body.start.as_deref(),
        body.end.as_deref(),
        &zone,
        state.devices.now(),
    )?;
    let report = state
        .devices
        .pull_nightscout(&ctx, &patient, &body.url, credential, start, end, zone)
        .await?;
    Ok(Json(json!({ "files": [report] })).into_response())
}

/// `GET /api/patients/{id}/glucose/summary`: the consensus figures, named as iglu names them.
pub async fn summary(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
    ApiQuery(q): ApiQuery<GlucoseQuery>,
) -> Result<Response, ApiError> {
    let (start, end, zone) = period_of(&state, &q)?;
    let (view, _) = state
        .devices
        .glucose_summary(&ctx, &patient, start, end, &zone)
        .await?;
    Ok(Json(view).into_response())
}

/// `GET /api/patients/{id}/glucose/readings`: one channel's readings, with UTC and local times.
pub async fn readings(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
    ApiQuery(q): ApiQuery<GlucoseQuery>,
) -> Result<Response, ApiError> {
    let (start, end, zone) = period_of(&state, &q)?;
    let channel = match q.channel.as_deref() {
        None | Some("") => Channel::SensorGlucose,
        Some(name) => Channel::from_name(name)
            .ok_or_else(|| ApiError::bad_request("channel is not a known channel"))?,
    };
    let stored = state
        .devices
        .readings(&ctx, &patient, channel, start, end)
        .await?;
    let readings: Vec<Value> = stored
        .iter()
        .map(|r| {
            let local = zone.to_offset(r.at).to_datetime(r.at);
            json!({"time": r.at.to_string(), "local": local.to_string(), "value": r.value})
        })
        .collect();
    Ok(Json(json!({
        "channel": channel.name(),
        "unit": channel.ucum(),
        "time_zone": zone.iana_name().unwrap_or("UTC"),
        "readings": readings,
    }))
    .into_response())
}

/// `GET /api/patients/{id}/glucose/agp.svg`: the AGP report.
pub async fn agp_svg(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
    ApiQuery(q): ApiQuery<GlucoseQuery>,
) -> Result<Response, ApiError> {
    let (start, end, zone) = period_of(&state, &q)?;
    let svg = state
        .devices
        .agp_svg(&ctx, &patient, start, end, &zone)
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    )
        .into_response())
}

/// `GET /api/patients/{id}/glucose/agp.pdf`: the AGP report on one printable A4 page,
/// under the patient's name and birth date.
pub async fn agp_pdf(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
    ApiQuery(q): ApiQuery<GlucoseQuery>,
) -> Result<Response, ApiError> {
    let (start, end, zone) = period_of(&state, &q)?;
    let print = state
        .devices
        .agp_print(&ctx, &patient, start, end, &zone)
        .await?;
    let pdf = print.to_pdf().await.map_err(|e| {
        tracing::error!(error = %e, "AGP report not printed");
        ApiError::internal()
    })?;
    Ok(crate::web::pdf(pdf, "agp-report.pdf"))
}

/// `GET /api/patients/{id}/glucose/correlations`: glucose against insulin, carbs, heart
/// rate, steps and workouts, and the excursions after meals and exercise.
pub async fn correlations(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
    ApiQuery(q): ApiQuery<GlucoseQuery>,
) -> Result<Response, ApiError> {
    let (start, end, zone) = period_of(&state, &q)?;
    let insights = state
        .devices
        .insights(&ctx, &patient, start, end, &zone)
        .await?;
    Ok(Json(insights).into_response())
}

/// `GET /api/patients/{id}/glucose/forecast`: 30 and 60 minutes after the latest reading,
/// with bands, and the model's measured error beside the baselines.
pub async fn forecast(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
    ApiQuery(q): ApiQuery<GlucoseQuery>,
) -> Result<Response, ApiError> {
    let zone = medmesh_devices::zone(q.tz.as_deref())?;
    let view = state.devices.forecast(&ctx, &patient, &zone).await?;
    Ok(Json(view).into_response())
}

/// The query of the clinicians' panel.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelQuery {
    /// Days up to now (14 by default, at most 90).
    pub days: Option<i64>,
    /// `gri` (default) or `below_70`.
    pub sort: Option<String>,
    /// The IANA zone of the figures' days.
    pub tz: Option<String>,
}

/// Parses the panel's order.
///
/// # Errors
/// Neither `gri` nor `below_70`.
pub fn panel_order(sort: Option<&str>) -> Result<medmesh_devices::PanelOrder, ApiError> {
    match sort.unwrap_or("gri") {
        "gri" => Ok(medmesh_devices::PanelOrder::Gri),
        "below_70" => Ok(medmesh_devices::PanelOrder::BelowRange),
        _ => Err(ApiError::bad_request("sort is gri or below_70")),
    }
}

/// `GET /api/glucose/panel`: the caller's patients with CGM data, highest risk first.
pub async fn panel(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiQuery(q): ApiQuery<PanelQuery>,
) -> Result<Response, ApiError> {
    let order = panel_order(q.sort.as_deref())?;
    let zone = medmesh_devices::zone(q.tz.as_deref())?;
    let now = state.devices.now();
    let rows = state
        .devices
        .panel(&ctx, now, q.days.unwrap_or(14), order, &zone)
        .await?;
    Ok(Json(json!({ "patients": rows })).into_response())
}

/// `GET /api/patients/{id}/glucose/cgm-bundle`: the HL7 CGM implementation guide's export (a
/// collection Bundle: the CGM Summary, its members and the sensor readings).
pub async fn cgm_bundle(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    ApiPath(patient): ApiPath<String>,
    ApiQuery(q): ApiQuery<GlucoseQuery>,
) -> Result<Response, ApiError> {
    let (start, end, zone) = period_of(&state, &q)?;
    let bundle = state
        .devices
        .cgm_export(
            &ctx,
            &patient,
            start,
            end,
            &zone,
            q.readings.unwrap_or(true),
        )
        .await?;
    Ok((
        [(header::CONTENT_TYPE, "application/fhir+json")],
        Json(bundle),
    )
        .into_response())
}
