//! FHIR Bulk Data export (Bulk Data Access 2.0): kick-off, background job, status, files.
//!
//! A job is persisted before the kick-off answers, and a node resumes unfinished jobs at
//! start-up, so jobs survive a restart. Output is NDJSON per resource type, written through the
//! [`ExportFiles`] port.

use std::collections::BTreeMap;
use std::sync::Arc;

use medmesh_audit::Outcome;
use medmesh_fhir::IssueType;
use medmesh_fhir::datetime::{self, format_instant};
use medmesh_fhir::search::{self, Handling, SearchQuery};
use medmesh_policy::Action;
use medmesh_store::{ExportJob, PageRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use medmesh_kernel::RequestContext;
use medmesh_records::service::parse_query_string;
use medmesh_records::{RecordError, RecordService};
use medmesh_store::{ExportJobStore, RecordStore, ResourceStore};

pub use medmesh_store::{ExportFiles, ExportFilesError};

/// Owner of the key that seals export files (they hold many patients' records).
pub const EXPORT_KEY_OWNER: &str = "node:exports";

fn export_context(job_id: &str, name: &str) -> String {
    format!("export/{job_id}/{name}")
}

/// A failure of the export-files port, logged with the job; the client sees an internal error.
fn files_error(e: ExportFilesError) -> RecordError {
    RecordError::Store(medmesh_store::StoreError::backend(e))
}

/// Which resources an export covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExportLevel {
    /// Everything.
    System,
    /// Everything in any patient's compartment.
    Patient,
    /// The compartments of a Group's members.
    Group(String),
}

/// A kick-off request, as persisted with the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportRequest {
    /// Level.
    pub level: ExportLevel,
    /// `_type`, or empty for all permitted types.
    pub types: Vec<String>,
    /// `_since`, micros.
    pub since: Option<i64>,
    /// `_typeFilter` queries.
    pub type_filters: Vec<String>,
    /// The kick-off URL, echoed in the manifest.
    pub request_url: String,
    /// Who asked (subject), and their scopes, to re-check on resume.
    pub subject: String,
    /// Scopes, space-separated.
    pub scopes: String,
    /// Transaction time, micros: the export reflects data up to here.
    pub transaction_time: i64,
    /// The patient a confined actor's export is limited to.
    #[serde(default)]
    pub patient: Option<String>,
    /// The actor's role code, to rebuild the same actor on resume.
    #[serde(default)]
    pub role: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OutputFile {
    #[serde(rename = "type")]
    resource_type: String,
    name: String,
    count: u64,
}

/// Bulk export over the record service: jobs in the store, files through the port.
pub struct BulkExport {
    records: Arc<RecordService>,
    resources: Arc<dyn ResourceStore>,
    jobs: Arc<dyn ExportJobStore>,
    files: Arc<dyn ExportFiles>,
}

impl std::fmt::Debug for BulkExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkExport").finish_non_exhaustive()
    }
}

impl BulkExport {
    /// Export over `records`, keeping jobs in `store` and writing files through `files`.
    pub fn new(
        records: Arc<RecordService>,
        store: Arc<dyn RecordStore>,
        files: Arc<dyn ExportFiles>,
    ) -> Self {
        Self {
            records,
            resources: store.clone(),
            jobs: store,
            files,
        }
    }

    /// Kicks off an export; returns the job id. Requires export permission for every type.
    pub async fn export_kickoff(
        &self,
        ctx: &RequestContext,
        level: ExportLevel,
        params: &[(String, String)],
    ) -> Result<String, RecordError> {
        let core = self.records.core();
        let bad =
            |p: &str| RecordError::invalid(IssueType::Value, format!("invalid value for {p}"));
        let mut req = ExportRequest {
            level,
            types: Vec::new(),
            since: None,
            type_filters: Vec::new(),
            request_url: String::new(),
            subject: ctx.actor().subject().to_string(),
            scopes: ctx
                .actor()
                .scopes()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            transaction_time: core.now(),
            patient: None,
            role: ctx.actor().role().map(|r| r.code().to_string()),
        };
        for (k, v) in params {
            match k.as_str() {
                "_type" => req
                    .types
                    .extend(v.split(',').filter(|t| !t.is_empty()).map(str::to_string)),
                "_since" => {
                    req.since = Some(datetime::parse_range(v).ok_or_else(|| bad("_since"))?.lo)
                }
                "_typeFilter" => req.type_filters.extend(v.split(',').map(str::to_string)),
                "_outputFormat"
                    if matches!(
                        v.as_str(),
                        "application/fhir+ndjson" | "application/ndjson" | "ndjson"
                    ) => {}
                "_outputFormat" => {
                    return Err(RecordError::NotSupported(
                        "only NDJSON output is supported".into(),
                    ));
                }
                other => {
                    return Err(RecordError::invalid(
                        IssueType::NotSupported,
                        format!("unsupported export parameter '{other}'"),
                    ));
                }
            }
        }
        for t in &req.types {
            core.check_type(t).map_err(|_| bad("_type"))?;
        }
        for f in &req.type_filters {
            let (t, q) = f.split_once('?').ok_or_else(|| bad("_typeFilter"))?;
            let mut q = search::parse_query(
                core.definitions(),
                t,
                &parse_query_string(q),
                Handling::Strict,
            )?;
            core.blind(&mut q)?;
        }
        for t in self.export_types(&req) {
            let grant = core.authorize(ctx, Action::Export, Some(&t)).await?;
            // A patient-confined actor may export their own compartment only, through the
            // Patient-level export; granular filters do not apply to bulk files.
            if !grant.filters().is_empty() {
                return Err(RecordError::Forbidden);
            }
            if let Some(p) = grant.compartment() {
                if req.level != ExportLevel::Patient
                    || req.patient.as_deref().is_some_and(|q| q != p)
                {
                    return Err(RecordError::Forbidden);
                }
                req.patient = Some(p.to_string());
            }
        }
        let id = core.ids().new_id();
        req.request_url = format!("{}/$export", ctx.base_url());
        let now = core.now();
        let job = ExportJob {
            id: id.clone(),
            state: "queued".into(),
            request: serde_json::to_string(&req).map_err(|_| RecordError::Corrupt)?,
            output: None,
            error: None,
            created: now,
            updated: now,
        };
        self.jobs.put_export_job(&job).await?;
        core.append_audit(vec![core.entry(
            ctx,
            "export",
            None,
            vec![id.clone()],
            Outcome::Success,
        )])
        .await?;
        Ok(id)
    }

    fn export_types(&self, req: &ExportRequest) -> Vec<String> {
        let core = self.records.core();
        let base: Vec<String> = match req.level {
            ExportLevel::System => core.definitions().resource_types().to_vec(),
            _ => {
                let mut t: Vec<String> = core
                    .definitions()
                    .patient_compartment()
                    .keys()
                    .cloned()
                    .collect();
                t.push("Patient".into());
                t.sort();
                t.dedup();
                t
            }
        };
        if req.types.is_empty() {
            base
        } else {
            base.into_iter().filter(|t| req.types.contains(t)).collect()
        }
    }

    /// Runs one job to completion, writing files through `files`. Safe to call again for a job
    /// that was interrupted: it starts that job's files afresh.
    pub async fn run_export(&self, job_id: &str) -> Result<(), RecordError> {
        let core = self.records.core();
        let Some(mut job) = self.jobs.export_job(job_id).await? else {
            return Err(RecordError::NotFound);
        };
        if job.state == "cancelled" {
            return Ok(());
        }
        let req: ExportRequest =
            serde_json::from_str(&job.request).map_err(|_| RecordError::Corrupt)?;
        job.state = "running".into();
        job.updated = core.now();
        self.jobs.put_export_job(&job).await?;
        self.files.remove_job(job_id).await.map_err(files_error)?;
        let result = self.write_export(&req, job_id).await;
        let mut job = self
            .jobs
            .export_job(job_id)
            .await?
            .ok_or(RecordError::NotFound)?;
        if job.state == "cancelled" {
            let _ = self.files.remove_job(job_id).await;
            return Ok(());
        }
        job.updated = core.now();
        match result {
            Ok(outputs) => {
                job.state = "complete".into();
                job.output =
                    Some(serde_json::to_string(&outputs).map_err(|_| RecordError::Corrupt)?);
            }
            Err(e) => {
                tracing::warn!(job = job_id, error = %e, "export failed");
                job.state = "failed".into();
                job.error = Some("the export failed; see the server log".into());
            }
        }
        self.jobs.put_export_job(&job).await?;
        Ok(())
    }

    async fn patients_of(&self, req: &ExportRequest) -> Result<Option<Vec<String>>, RecordError> {
        let core = self.records.core();
        Ok(match &req.level {
            ExportLevel::System => None,
            ExportLevel::Patient if req.patient.is_some() => req.patient.clone().map(|p| vec![p]),
            ExportLevel::Patient => {
                let mut ids = Vec::new();
                let mut after = 0;
                loop {
                    let (page, last) = self.jobs.export_page("Patient", None, after, 1000).await?;
                    if page.is_empty() {
                        break;
                    }
                    ids.extend(page.into_iter().map(|v| v.id));
                    after = last;
                }
                Some(ids)
            }
            ExportLevel::Group(gid) => {
                let g = self
                    .resources
                    .read("Group", gid)
                    .await?
                    .filter(|v| !v.deleted)
                    .ok_or(RecordError::NotFound)?;
                let g = core.decode(&g).await?;
                let members = g
                    .get("member")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten();
                Some(
                    members
                        .filter_map(|m| {
                            m.pointer("/entity/reference")?
                                .as_str()?
                                .strip_prefix("Patient/")
                                .map(str::to_string)
                        })
                        .collect(),
                )
            }
        })
    }

    async fn write_export(
        &self,
        req: &ExportRequest,
        job_id: &str,
    ) -> Result<Vec<OutputFile>, RecordError> {
        let core = self.records.core();
        let types = self.export_types(req);
        let patients = self.patients_of(req).await?;
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut filters: BTreeMap<String, Vec<SearchQuery>> = BTreeMap::new();
        for f in &req.type_filters {
            if let Some((t, q)) = f.split_once('?') {
                let mut q = search::parse_query(
                    core.definitions(),
                    t,
                    &parse_query_string(q),
                    Handling::Strict,
                )?;
                core.blind(&mut q)?;
                filters.entry(t.to_string()).or_default().push(q);
            }
        }
        let mut write = async |t: &str, body: &[u8]| -> Result<(), RecordError> {
            let name = format!("{t}.ndjson");
            let stored = self.seal_export_line(job_id, &name, body).await?;
            self.files
                .append(job_id, &name, &stored)
                .await
                .map_err(files_error)?;
            *counts.entry(t.to_string()).or_default() += 1;
            Ok(())
        };
        let in_window = |v: &medmesh_store::StoredVersion| {
            v.last_updated <= req.transaction_time && req.since.is_none_or(|s| v.last_updated >= s)
        };
        match &patients {
            None => {
                for t in &types {
                    if let Some(qs) = filters.get(t) {
                        for q in qs {
                            let mut cursor = None;
                            loop {
                                let page = self
                                    .resources
                                    .search(
                                        q,
                                        &PageRequest {
                                            count: 500,
                                            cursor: cursor.clone(),
                                            with_total: false,
                                            snapshot: true,
                                        },
                                    )
                                    .await?;
                                for v in self.resources.read_many(&page.matches).await? {
                                    if in_window(&v) {
                                        let line = self.ndjson_line(&v).await?;
                                        write(t, &line).await?;
                                    }
                                }
                                match page.next {
                                    Some(n) => cursor = Some(n),
                                    None => break,
                                }
                            }
                        }
                        continue;
                    }
                    let mut after = 0;
                    loop {
                        let (page, last) = self.jobs.export_page(t, req.since, after, 500).await?;
                        if page.is_empty() {
                            break;
                        }
                        for v in page.iter().filter(|v| in_window(v)) {
                            let line = self.ndjson_line(v).await?;
                            write(t, &line).await?;
                        }
                        after = last;
                    }
                }
            }
            Some(patient_ids) => {
                let links: Vec<(String, Vec<String>)> = core
                    .definitions()
                    .patient_compartment()
                    .iter()
                    .filter(|(t, _)| types.contains(t))
                    .map(|(t, p)| (t.clone(), p.clone()))
                    .collect();
                let type_filter: Vec<String> = types.clone();
                for pid in patient_ids {
                    let mut cursor: Option<String> = None;
                    loop {
                        let page = self
                            .resources
                            .compartment_page(
                                pid,
                                &links,
                                req.since,
                                &type_filter,
                                500,
                                cursor.as_deref(),
                            )
                            .await?;
                        for v in self.resources.read_many(&page.matches).await? {
                            if !in_window(&v) {
                                continue;
                            }
                            if let Some(qs) = filters.get(&v.resource_type) {
                                // A _typeFilter narrows its type: keep only resources it matches.
                                let mut keep = false;
                                for q in qs {
                                    let mut narrowed = q.clone();
                                    narrowed.criteria.push(search::parse_criterion(
                                        core.definitions(),
                                        &v.resource_type,
                                        "_id",
                                        &v.id,
                                    )?);
                                    if !self
                                        .resources
                                        .search(
                                            &narrowed,
                                            &PageRequest {
                                                count: 1,
                                                cursor: None,
                                                with_total: false,
                                                snapshot: true,
                                            },
                                        )
                                        .await?
                                        .matches
                                        .is_empty()
                                    {
                                        keep = true;
                                        break;
                                    }
                                }
                                if !keep {
                                    continue;
                                }
                            }
                            let line = self.ndjson_line(&v).await?;
                            write(&v.resource_type, &line).await?;
                        }
                        match page.next {
                            Some(n) => cursor = Some(n),
                            None => break,
                        }
                    }
                }
            }
        }
        Ok(counts
            .into_iter()
            .map(|(t, count)| OutputFile {
                name: format!("{t}.ndjson"),
                resource_type: t,
                count,
            })
            .collect())
    }

    async fn ndjson_line(&self, v: &medmesh_store::StoredVersion) -> Result<Vec<u8>, RecordError> {
        let core = self.records.core();
        let mut line =
            serde_json::to_vec(&core.decode(v).await?).map_err(|_| RecordError::Corrupt)?;
        line.push(b'\n');
        Ok(line)
    }

    /// The status of a job: `Ok(None)` while it runs, `Ok(Some(manifest))` when complete.
    pub async fn export_status(
        &self,
        ctx: &RequestContext,
        job_id: &str,
    ) -> Result<ExportStatus, RecordError> {
        let job = self.owned_job(ctx, job_id).await?;
        let req: ExportRequest =
            serde_json::from_str(&job.request).map_err(|_| RecordError::Corrupt)?;
        Ok(match job.state.as_str() {
            "complete" => {
                let outputs: Vec<OutputFile> =
                    serde_json::from_str(job.output.as_deref().unwrap_or("[]"))
                        .map_err(|_| RecordError::Corrupt)?;
                ExportStatus::Complete(json!({
                    "transactionTime": format_instant(req.transaction_time),
                    "request": req.request_url,
                    "requiresAccessToken": true,
                    "output": outputs.iter().map(|o| json!({"type": o.resource_type, "url": format!("{}/$export-file/{job_id}/{}", ctx.base_url(), o.name), "count": o.count})).collect::<Vec<_>>(),
                    "error": [],
                }))
            }
            "failed" => ExportStatus::Failed(job.error.unwrap_or_default()),
            "cancelled" => return Err(RecordError::NotFound),
            state => ExportStatus::InProgress(state.to_string()),
        })
    }

    async fn owned_job(
        &self,
        ctx: &RequestContext,
        job_id: &str,
    ) -> Result<ExportJob, RecordError> {
        let job = self
            .jobs
            .export_job(job_id)
            .await?
            .ok_or(RecordError::NotFound)?;
        let req: ExportRequest =
            serde_json::from_str(&job.request).map_err(|_| RecordError::Corrupt)?;
        // Only the requester can see a job (others learn nothing of its existence).
        if req.subject != ctx.actor().subject() {
            return Err(RecordError::NotFound);
        }
        Ok(job)
    }

    /// Cancels a job and deletes its files.
    pub async fn export_cancel(
        &self,
        ctx: &RequestContext,
        job_id: &str,
    ) -> Result<(), RecordError> {
        let core = self.records.core();
        let mut job = self.owned_job(ctx, job_id).await?;
        job.state = "cancelled".into();
        job.updated = core.now();
        self.jobs.put_export_job(&job).await?;
        self.files.remove_job(job_id).await.map_err(files_error)?;
        Ok(())
    }

    /// One output file of a completed job, for its requester.
    pub async fn export_file(
        &self,
        ctx: &RequestContext,
        job_id: &str,
        name: &str,
    ) -> Result<Vec<u8>, RecordError> {
        let core = self.records.core();
        let job = self.owned_job(ctx, job_id).await?;
        if job.state != "complete"
            || !name.ends_with(".ndjson")
            || name.contains('/')
            || name.contains("..")
        {
            return Err(RecordError::NotFound);
        }
        core.append_audit(vec![core.entry(
            ctx,
            "export-download",
            None,
            vec![format!("{job_id}/{name}")],
            Outcome::Success,
        )])
        .await?;
        let stored = self
            .files
            .read(job_id, name)
            .await
            .map_err(files_error)?
            .ok_or(RecordError::NotFound)?;
        self.open_export_file(job_id, name, &stored).await
    }

    /// An export line as stored: in clear without encryption at rest, else a frame of a
    /// 4-byte big-endian length and an envelope under the node's export key.
    async fn seal_export_line(
        &self,
        job_id: &str,
        name: &str,
        line: &[u8],
    ) -> Result<Vec<u8>, RecordError> {
        let core = self.records.core();
        let Some(a) = core.at_rest() else {
            return Ok(line.to_vec());
        };
        let sealed = a
            .seal_detached(EXPORT_KEY_OWNER, &export_context(job_id, name), line)
            .await?;
        let len = u32::try_from(sealed.len()).map_err(|_| RecordError::Corrupt)?;
        let mut out = len.to_be_bytes().to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens an export file written by [`Self::seal_export_line`].
    async fn open_export_file(
        &self,
        job_id: &str,
        name: &str,
        stored: &[u8],
    ) -> Result<Vec<u8>, RecordError> {
        let core = self.records.core();
        let Some(a) = core.at_rest() else {
            return Ok(stored.to_vec());
        };
        let context = export_context(job_id, name);
        let mut out = Vec::with_capacity(stored.len());
        let mut rest = stored;
        while !rest.is_empty() {
            let (len, tail) = rest.split_at_checked(4).ok_or(RecordError::Corrupt)?;
            let len = u32::from_be_bytes(len.try_into().map_err(|_| RecordError::Corrupt)?);
            let len = usize::try_from(len).map_err(|_| RecordError::Corrupt)?;
            let (frame, tail) = tail.split_at_checked(len).ok_or(RecordError::Corrupt)?;
            out.extend_from_slice(&a.open(&context, frame).await?);
            rest = tail;
        }
        Ok(out)
    }

    /// Job ids left queued or running, to resume at start-up.
    pub async fn unfinished_exports(&self) -> Result<Vec<String>, RecordError> {
        Ok(self
            .jobs
            .unfinished_export_jobs()
            .await?
            .into_iter()
            .map(|j| j.id)
            .collect())
    }
}

/// Where a job stands.
#[derive(Debug, Clone)]
pub enum ExportStatus {
    /// Queued or running.
    InProgress(String),
    /// Done: the manifest.
    Complete(Value),
    /// Failed, with a safe message.
    Failed(String),
}
