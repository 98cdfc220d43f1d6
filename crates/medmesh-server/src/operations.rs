//! The FHIR operations, each on a route of its own: Bulk Data export (`$export` at the
//! system, Patient and Group levels, the status endpoint, the files) and
//! `Patient/[id]/$everything`.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use medmesh_export::{ExportLevel, ExportStatus};
use medmesh_fhir::{Issue, IssueType};
use medmesh_kernel::RequestContext;
use medmesh_records::service::parse_query_string;

use crate::AppState;
use crate::auth::Authenticated;
use crate::handlers::{ApiResult, prefer};
use crate::response::{ApiError, fhir_json, outcome, set_header};

/// `GET /fhir/$export`: everything on the node.
pub async fn export_system(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    kickoff(&state, &ctx, ExportLevel::System, q, &headers).await
}

/// `GET /fhir/Patient/$export`: every patient's compartment.
pub async fn export_patients(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    kickoff(&state, &ctx, ExportLevel::Patient, q, &headers).await
}

/// `GET /fhir/Group/[id]/$export`: the compartments of a Group's members.
pub async fn export_group(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(group): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    kickoff(&state, &ctx, ExportLevel::Group(group), q, &headers).await
}

/// Starts an export job and answers 202 with the status URL.
async fn kickoff(
    state: &AppState,
    ctx: &RequestContext,
    level: ExportLevel,
    q: Option<String>,
    headers: &HeaderMap,
) -> ApiResult {
    if !prefer(headers).respond_async {
        return Err(ApiError::bad_request(
            "$export requires the header Prefer: respond-async",
        ));
    }
    let params = parse_query_string(q.as_deref().unwrap_or_default());
    let job = state.export.export_kickoff(ctx, level, &params).await?;
    state.enqueue_export(job.clone());
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::ACCEPTED;
    set_header(
        r.headers_mut(),
        header::CONTENT_LOCATION,
        &format!("{}/$export-poll-status/{job}", ctx.base_url()),
    );
    Ok(r)
}

/// `GET /fhir/$export-poll-status/[job]`: 202 with `X-Progress` while it runs, then the
/// manifest.
pub async fn export_status(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(job): Path<String>,
) -> ApiResult {
    match state.export.export_status(&ctx, &job).await? {
        ExportStatus::InProgress(state_name) => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::ACCEPTED;
            set_header(
                r.headers_mut(),
                HeaderName::from_static("x-progress"),
                &state_name,
            );
            set_header(r.headers_mut(), header::RETRY_AFTER, "1");
            Ok(r)
        }
        ExportStatus::Complete(manifest) => {
            let mut r = fhir_json(StatusCode::OK, &manifest);
            set_header(r.headers_mut(), header::CONTENT_TYPE, "application/json");
            Ok(r)
        }
        ExportStatus::Failed(msg) => Ok(outcome(
            StatusCode::INTERNAL_SERVER_ERROR,
            &[Issue::error(IssueType::Exception, msg)],
        )),
    }
}

/// `DELETE /fhir/$export-poll-status/[job]`: cancels the job and deletes its files.
pub async fn export_cancel(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(job): Path<String>,
) -> ApiResult {
    state.export.export_cancel(&ctx, &job).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `GET /fhir/$export-file/[job]/[name]`: one NDJSON file of a finished job.
pub async fn export_file(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path((job, name)): Path<(String, String)>,
) -> ApiResult {
    let bytes = state.export.export_file(&ctx, &job, &name).await?;
    Ok(([(header::CONTENT_TYPE, "application/fhir+ndjson")], bytes).into_response())
}

/// `GET /fhir/Patient/[id]/$everything`.
pub async fn everything(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(patient): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let params = parse_query_string(q.as_deref().unwrap_or_default());
    Ok(fhir_json(
        StatusCode::OK,
        &state.records.everything(&ctx, &patient, &params).await?,
    ))
}
