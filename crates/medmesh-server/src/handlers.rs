//! Thin handlers: extract, call the record service, render.

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use medmesh_fhir::datetime::format_http_date;
use medmesh_fhir::resource::{json_values_within, parse_json_object};
use medmesh_fhir::search::Handling;
use medmesh_fhir::{Issue, IssueType};
use medmesh_policy::Action;
use medmesh_records::service::parse_query_string;
use medmesh_records::{ReadOutcome, RecordError, ReturnPreference, WriteOutcome, WriteStatus};
use medmesh_store::HistoryScope;
use serde_json::Value;

use crate::AppState;
use crate::auth::Authenticated;
use crate::response::{ApiError, fhir_json, outcome, set_header};

pub(crate) type ApiResult = Result<Response, ApiError>;

/// What the `Prefer` header asks for.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Prefer {
    ret: Option<ReturnPreference>,
    pub(crate) handling: Handling,
    pub(crate) respond_async: bool,
}

pub(crate) fn prefer(headers: &HeaderMap) -> Prefer {
    let mut p = Prefer::default();
    for v in headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for part in v.split([',', ';']).map(str::trim) {
            match part {
                "return=minimal" => p.ret = Some(ReturnPreference::Minimal),
                "return=representation" => p.ret = Some(ReturnPreference::Representation),
                "return=OperationOutcome" => p.ret = Some(ReturnPreference::OperationOutcome),
                "handling=strict" => p.handling = Handling::Strict,
                "handling=lenient" => p.handling = Handling::Lenient,
                "respond-async" => p.respond_async = true,
                _ => {}
            }
        }
    }
    p
}

fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    match headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .trim_start_matches("W/")
            .trim_matches('"')
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request("If-Match must be an ETag such as W/\"1\"")),
    }
}

/// Reads a body within the configured limit; a larger one is 413.
async fn read_body(state: &AppState, req: Request) -> Result<Bytes, ApiError> {
    let (parts, body) = req.into_parts();
    let ct = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.is_empty() && !ct.contains("json") && !ct.contains("x-www-form-urlencoded") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            "only JSON (application/fhir+json) is supported",
        ));
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            IssueType::TooLong,
            format!(
                "the body exceeds the limit of {} bytes",
                state.body_limits.max_body_bytes
            ),
        )
    };
    // Refuse on the declared length before reading a byte of it.
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > state.body_limits.max_body_bytes) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, state.body_limits.max_body_bytes)
        .await
        .map_err(|_| too_large())
}

/// A parsed request body. One of many JSON values keeps its share of the parse budget until
/// the handler is done with it: a parsed `Value` of tiny objects costs up to ~75 times its
/// text (a 1 MB body within the value bound is ~75 MB), so the budget bounds what the bodies
/// in flight hold, not only what is being parsed.
pub(crate) struct ParsedBody {
    /// The body's JSON object.
    pub value: Value,
    _budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl std::ops::Deref for ParsedBody {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.value
    }
}

/// JSON values from which a body takes a share of the parse budget and is parsed off the
/// async workers. Below it a body costs at most a few MB parsed, and parses in well under
/// a millisecond.
const BUDGETED_VALUES: usize = 10_000;

/// Parses a body within the JSON-value bound and the node's parse budget
/// ([`crate::AppState::parse_budget`]): counts its values without parsing (refusing past
/// `max_json_values`), then, for a body of [`BUDGETED_VALUES`] or more, waits for that many
/// of the budget's permits and parses off the async workers. The permits come back with
/// the parsed body, for the handler to hold while it uses it.
async fn parse_within_budget<T: Send + 'static>(
    state: &AppState,
    bytes: Bytes,
    parse: fn(&[u8]) -> Result<T, ApiError>,
) -> Result<(T, Option<tokio::sync::OwnedSemaphorePermit>), ApiError> {
    let blocking_failed = |_| ApiError::from(RecordError::Corrupt);
    let max_values = state.body_limits.max_json_values;
    let counted = if bytes.len() >= crate::LARGE_BODY {
        // A scan of megabytes is long enough to stall other requests on this worker.
        let scanned = bytes.clone();
        tokio::task::spawn_blocking(move || json_values_within(&scanned, max_values))
            .await
            .map_err(blocking_failed)?
    } else {
        json_values_within(&bytes, max_values)
    };
    let values = counted.map_err(|i| ApiError::from(RecordError::Invalid(vec![i])))?;
    if values < BUDGETED_VALUES {
        return Ok((parse(&bytes)?, None));
    }
    // A body within the value bound always fits the budget (twice the bound).
    let share = u32::try_from(values).unwrap_or(u32::MAX);
    let permits = state
        .parse_budget
        .clone()
        .acquire_many_owned(share)
        .await
        .map_err(|_| ApiError::from(RecordError::NotSupported("shutting down".into())))?;
    let parsed = tokio::task::spawn_blocking(move || parse(&bytes))
        .await
        .map_err(blocking_failed)??;
    Ok((parsed, Some(permits)))
}

/// Reads and parses a JSON body within every bound: bytes, JSON values, and the parse
/// budget, held for as long as the handler holds the body, so that a few concurrent
/// worst-case bodies cannot take the node's memory. Without the value bound, one 31 MB
/// body of tiny objects took 2.3 GB.
pub(crate) async fn read_resource(state: &AppState, req: Request) -> Result<ParsedBody, ApiError> {
    let bytes = read_body(state, req).await?;
    let (value, budget) = parse_within_budget(state, bytes, |b| {
        parse_json_object(b).map_err(|i| ApiError::from(RecordError::Invalid(vec![i])))
    })
    .await?;
    Ok(ParsedBody {
        value,
        _budget: budget,
    })
}

fn read_response(r: ReadOutcome) -> Response {
    let mut resp = fhir_json(StatusCode::OK, &r.resource);
    set_header(
        resp.headers_mut(),
        header::ETAG,
        &format!("W/\"{}\"", r.version),
    );
    set_header(
        resp.headers_mut(),
        header::LAST_MODIFIED,
        &format_http_date(r.last_updated),
    );
    resp
}

fn write_response(
    ctx: &medmesh_records::RequestContext,
    out: WriteOutcome,
    pref: Prefer,
) -> Response {
    let status = match out.status {
        WriteStatus::Created => StatusCode::CREATED,
        WriteStatus::Deleted => StatusCode::NO_CONTENT,
        _ => StatusCode::OK,
    };
    if out.status == WriteStatus::Deleted {
        return status.into_response();
    }
    let mut resp = match (
        pref.ret.unwrap_or(ReturnPreference::Representation),
        &out.resource,
    ) {
        (ReturnPreference::Representation, Some(r)) => fhir_json(status, r),
        (ReturnPreference::OperationOutcome, _) => outcome(
            status,
            &[Issue::information(format!(
                "{} {}/{} version {}",
                match out.status {
                    WriteStatus::Created => "created",
                    WriteStatus::Unchanged => "unchanged",
                    WriteStatus::Existing => "found",
                    _ => "updated",
                },
                out.resource_type,
                out.id,
                out.version
            ))],
        ),
        _ => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = status;
            r
        }
    };
    let h = resp.headers_mut();
    set_header(
        h,
        header::LOCATION,
        &format!(
            "{}/{}/{}/_history/{}",
            ctx.base_url(),
            out.resource_type,
            out.id,
            out.version
        ),
    );
    set_header(h, header::ETAG, &format!("W/\"{}\"", out.version));
    set_header(
        h,
        header::LAST_MODIFIED,
        &format_http_date(out.last_updated),
    );
    resp
}

/// `GET /healthz`: 200 once the store answers.
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.records.ping().await {
        Ok(()) => (StatusCode::OK, "ok").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
        }
    }
}

/// `GET /fhir/metadata`, with `_summary` and `_elements` (the full statement is large: every
/// type with every search parameter).
pub async fn metadata(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    let mut statement = (*state.capability).clone();
    // The node's address is known per request (unless fixed by configuration).
    statement["implementation"]["url"] = Value::String(state.fhir_base(&headers));
    let params = parse_query_string(q.as_deref().unwrap_or_default());
    let mut summary = None;
    let mut elements = Vec::new();
    for (k, v) in &params {
        match k.as_str() {
            "_summary" => {
                summary = Some(match v.as_str() {
                    "true" => medmesh_fhir::search::SummaryMode::True,
                    "text" => medmesh_fhir::search::SummaryMode::Text,
                    "data" => medmesh_fhir::search::SummaryMode::Data,
                    "false" => medmesh_fhir::search::SummaryMode::False,
                    _ => {
                        return Err(ApiError::bad_request(
                            "_summary on metadata is true, text, data or false",
                        ));
                    }
                })
            }
            "_elements" => elements.extend(
                v.split(',')
                    .map(|e| e.trim().to_string())
                    .filter(|e| !e.is_empty()),
            ),
            _ => {}
        }
    }
    if summary.is_some() || !elements.is_empty() {
        statement = medmesh_fhir::resource::shape(
            state.records.definitions(),
            &statement,
            summary,
            &elements,
        );
    }
    Ok(fhir_json(StatusCode::OK, &statement))
}

/// `POST /fhir`: transaction or batch.
pub async fn root_post(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    headers: HeaderMap,
    req: Request,
) -> ApiResult {
    let bundle = read_resource(&state, req).await?;
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if entries > state.body_limits.max_bundle_entries {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::TooCostly,
            format!(
                "the Bundle has {entries} entries; at most {} are taken in one request (max_bundle_entries)",
                state.body_limits.max_bundle_entries
            ),
        ));
    }
    let pref = prefer(&headers);
    let out = state
        .records
        .process_bundle(&ctx, bundle.value, pref.ret.unwrap_or_default())
        .await?;
    Ok(fhir_json(StatusCode::OK, &out))
}

/// `GET /fhir/_history`.
pub async fn system_history(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let params = parse_query_string(q.as_deref().unwrap_or_default());
    Ok(fhir_json(
        StatusCode::OK,
        &state
            .records
            .history(&ctx, HistoryScope::System, &params)
            .await?,
    ))
}

/// `GET /fhir/[type]?...`: search.
pub async fn type_get(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(rt): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    let params = parse_query_string(q.as_deref().unwrap_or_default());
    let bundle = state
        .records
        .search(&ctx, &rt, &params, prefer(&headers).handling)
        .await?;
    Ok(fhir_json(StatusCode::OK, &bundle))
}

/// `POST /fhir/[type]`: create.
pub async fn type_post(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(rt): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> ApiResult {
    state
        .records
        .precheck_write(&ctx, &[Action::Create], &rt)
        .await?;
    let body = read_resource(&state, req).await?;
    let ine = headers
        .get("if-none-exist")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let out = state
        .records
        .create(&ctx, &rt, body.value, ine.as_deref())
        .await?;
    Ok(write_response(&ctx, out, prefer(&headers)))
}

/// `PUT /fhir/[type]?query`: conditional update.
pub async fn type_put(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(rt): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    req: Request,
) -> ApiResult {
    let q = q
        .filter(|q| !q.is_empty())
        .ok_or_else(|| ApiError::bad_request("a conditional update needs search parameters"))?;
    state
        .records
        .precheck_write(&ctx, &[Action::Update, Action::Create], &rt)
        .await?;
    let body = read_resource(&state, req).await?;
    let out = state
        .records
        .conditional_update(&ctx, &rt, &q, body.value)
        .await?;
    Ok(write_response(&ctx, out, prefer(&headers)))
}

/// `DELETE /fhir/[type]?query`: conditional delete.
pub async fn type_delete(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(rt): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let q = q
        .filter(|q| !q.is_empty())
        .ok_or_else(|| ApiError::bad_request("a conditional delete needs search parameters"))?;
    let out = state.records.conditional_delete(&ctx, &rt, &q).await?;
    Ok(write_response(&ctx, out, Prefer::default()))
}

/// `POST /fhir/[type]/_search`: parameters in the form body and the URL.
pub async fn type_search_post(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(rt): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    req: Request,
) -> ApiResult {
    let body = read_body(&state, req).await?;
    let mut params = parse_query_string(q.as_deref().unwrap_or_default());
    params.extend(parse_query_string(&String::from_utf8_lossy(&body)));
    Ok(fhir_json(
        StatusCode::OK,
        &state
            .records
            .search(&ctx, &rt, &params, prefer(&headers).handling)
            .await?,
    ))
}

/// `GET /fhir/[type]/_history`.
pub async fn type_history(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path(rt): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let params = parse_query_string(q.as_deref().unwrap_or_default());
    Ok(fhir_json(
        StatusCode::OK,
        &state
            .records
            .history(&ctx, HistoryScope::Type(rt), &params)
            .await?,
    ))
}

/// `GET /fhir/[type]/[id]`: read.
pub async fn instance_get(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path((rt, id)): Path<(String, String)>,
) -> ApiResult {
    Ok(read_response(state.records.read(&ctx, &rt, &id).await?))
}

/// `PUT /fhir/[type]/[id]`: update or create with a client id.
pub async fn instance_put(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path((rt, id)): Path<(String, String)>,
    headers: HeaderMap,
    req: Request,
) -> ApiResult {
    state
        .records
        .precheck_write(&ctx, &[Action::Update, Action::Create], &rt)
        .await?;
    let body = read_resource(&state, req).await?;
    let out = state
        .records
        .update(&ctx, &rt, &id, body.value, if_match(&headers)?)
        .await?;
    Ok(write_response(&ctx, out, prefer(&headers)))
}

/// `PATCH /fhir/[type]/[id]` with `application/json-patch+json`.
pub async fn instance_patch(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path((rt, id)): Path<(String, String)>,
    headers: HeaderMap,
    req: Request,
) -> ApiResult {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json-patch+json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            "PATCH takes application/json-patch+json",
        ));
    }
    state
        .records
        .precheck_write(&ctx, &[Action::Update], &rt)
        .await?;
    let bytes = read_body(&state, req).await?;
    let (patch, _budget) = parse_within_budget(&state, bytes, |b| {
        serde_json::from_slice::<Value>(b)
            .map_err(|_| ApiError::bad_request("the patch is not valid JSON"))
    })
    .await?;
    let out = state
        .records
        .patch(&ctx, &rt, &id, &patch, if_match(&headers)?)
        .await?;
    Ok(write_response(&ctx, out, prefer(&headers)))
}

/// `DELETE /fhir/[type]/[id]`.
pub async fn instance_delete(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path((rt, id)): Path<(String, String)>,
) -> ApiResult {
    let out = state.records.delete(&ctx, &rt, &id).await?;
    Ok(write_response(&ctx, out, Prefer::default()))
}

/// `GET /fhir/[type]/[id]/_history`, and compartment searches (`Patient/[id]/Observation`).
pub async fn instance_op(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path((rt, id, op)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> ApiResult {
    let params = parse_query_string(q.as_deref().unwrap_or_default());
    match (rt.as_str(), op.as_str()) {
        (_, "_history") => Ok(fhir_json(
            StatusCode::OK,
            &state
                .records
                .history(&ctx, HistoryScope::Instance(rt, id), &params)
                .await?,
        )),
        // A compartment search: `Patient/[id]/Observation?...`.
        (_, target) if target.starts_with(|c: char| c.is_ascii_uppercase()) => Ok(fhir_json(
            StatusCode::OK,
            &state
                .records
                .compartment_search(&ctx, &rt, &id, target, &params, prefer(&headers).handling)
                .await?,
        )),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            IssueType::NotSupported,
            "unknown operation",
        )),
    }
}

/// `GET /fhir/[type]/[id]/_history/[vid]`.
pub async fn vread(
    State(state): State<AppState>,
    Authenticated(ctx): Authenticated,
    Path((rt, id, vid)): Path<(String, String, String)>,
) -> ApiResult {
    Ok(read_response(
        state.records.vread(&ctx, &rt, &id, &vid).await?,
    ))
}

/// Rejects requests for XML (406) before they reach a handler.
pub async fn negotiate(req: Request, next: axum::middleware::Next) -> Response {
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = req
        .uri()
        .query()
        .map(parse_query_string)
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "_format")
        .map(|(_, v)| v);
    let wants_xml = |s: &str| s.contains("xml") && !s.contains("json") && !s.contains("*/*");
    // A Binary's bytes are whatever type the document is (a CDA is XML).
    let binary = req.uri().path().starts_with("/Binary/");
    if !binary && wants_xml(accept) || format.as_deref().is_some_and(|f| f.contains("xml")) {
        return outcome(
            StatusCode::NOT_ACCEPTABLE,
            &[Issue::error(
                IssueType::NotSupported,
                "only JSON is supported: use application/fhir+json",
            )],
        );
    }
    next.run(req).await
}
