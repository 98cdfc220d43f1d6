//! `medmesh import`: FHIR files (Bundles, NDJSON, single resources) loaded through the
//! records service as the local operator.

use crate::commands::keys;
use crate::config::Config;
use crate::wiring::*;
use anyhow::{Context, bail};
use futures::StreamExt;
use medmesh_records::import::{ImportFailure, ImportSummary};
use medmesh_records::import_group::ImportUnit;
use medmesh_records::{RecordService, RequestContext};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub(crate) fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot read folder {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            out.extend(collect_files(&entries)?);
        } else if p.is_file() {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
            if matches!(ext, "json" | "ndjson") {
                out.push(p.clone());
            } else if paths.contains(p) {
                bail!("{}: not a .json or .ndjson file", p.display());
            }
        } else {
            bail!("{}: no such file or folder", p.display());
        }
    }
    Ok(out)
}

/// A file read and parsed, or already done: NDJSON (imported in chunks of its own), or a file
/// that could not be read or parsed.
enum Loaded {
    Unit(ImportUnit),
    Done(ImportSummary),
}

async fn load_file(
    records: &RecordService,
    ctx: &RequestContext,
    path: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Loaded {
    let name = path.display().to_string();
    let fail = |reason: String| {
        Loaded::Done(ImportSummary {
            failures: vec![ImportFailure {
                file: name.clone(),
                entry: None,
                reason,
            }],
            ..ImportSummary::default()
        })
    };
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) => return fail(format!("cannot read: {e}")),
    };
    if path.extension().is_some_and(|e| e == "ndjson") {
        return Loaded::Done(
            records
                .import_ndjson(ctx, &name, &String::from_utf8_lossy(&bytes), progress)
                .await,
        );
    }
    match medmesh_fhir::resource::parse_json_object(&bytes) {
        Ok(doc) => Loaded::Unit(ImportUnit::new(name, doc)),
        Err(issue) => fail(issue.diagnostics),
    }
}

/// Imports one file on its own.
pub(crate) async fn import_file(
    records: &RecordService,
    ctx: &RequestContext,
    path: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> ImportSummary {
    match load_file(records, ctx, path, progress).await {
        Loaded::Unit(unit) => {
            let s = records.import_unit(ctx, unit).await;
            progress(s.total());
            s
        }
        Loaded::Done(s) => s,
    }
}

/// Entries at most in one write transaction of grouped files.
const MAX_GROUP_ENTRIES: usize = 5_000;

/// What one import task does: a group of files in one transaction, or report a file done.
enum Work {
    Group(Vec<PathBuf>, Vec<ImportUnit>),
    Done(PathBuf, ImportSummary),
}

/// Groups consecutive loaded files (see `medmesh_records::import_group`).
fn plan(records: &RecordService, chunk: Vec<(PathBuf, Loaded)>, batch: usize) -> Vec<Work> {
    let mut work = Vec::new();
    let (mut paths, mut units) = (Vec::new(), Vec::new());
    for (path, loaded) in chunk {
        match loaded {
            Loaded::Unit(u) => {
                paths.push(path);
                units.push(u);
            }
            Loaded::Done(s) => work.push(Work::Done(path, s)),
        }
    }
    let mut paths = paths.into_iter();
    for group in records.group_imports(units, batch, MAX_GROUP_ENTRIES) {
        let mine = paths.by_ref().take(group.len()).collect();
        work.push(Work::Group(mine, group));
    }
    work
}

async fn run(
    records: &RecordService,
    ctx: &RequestContext,
    work: Work,
    progress: &(dyn Fn(u64) + Sync),
) -> Vec<(PathBuf, ImportSummary)> {
    match work {
        Work::Done(path, s) => vec![(path, s)],
        Work::Group(paths, group) => {
            let done = records.import_group(ctx, group).await;
            paths
                .into_iter()
                .zip(done)
                .map(|(path, (_, s))| {
                    progress(s.total());
                    (path, s)
                })
                .collect()
        }
    }
}

pub(crate) async fn import(
    cfg: Config,
    paths: Vec<PathBuf>,
    jobs: u16,
    batch: u16,
    id_map: Option<PathBuf>,
) -> anyhow::Result<bool> {
    let files = collect_files(&paths)?;
    let stores = open_store(&cfg).await?;
    let records = record_service(&stores, &cfg).await?;
    let ctx = keys::local_ctx("import");
    let total_bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = indicatif::ProgressBar::new(total_bytes);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    #[allow(clippy::disallowed_methods)] // A stopwatch for the report, not a time of record.
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let progress: Arc<dyn Fn(u64) + Send + Sync> = {
        let bar = bar.clone();
        Arc::new(move |n: u64| {
            let d = done.fetch_add(n, Ordering::Relaxed) + n;
            let rate = d as f64 / started.elapsed().as_secs_f64().max(0.001);
            bar.set_message(format!("{d} resources, {rate:.0}/s"));
        })
    };
    let mut summary = ImportSummary::default();
    let mut retry = Vec::new();
    // Files are read and parsed as tasks of their own, so parsing uses every core; then
    // consecutive files that cannot see each other's writes share one write transaction
    // (`batch` at most), and each group is a task: one forecasts while another writes.
    let loaded = {
        let (records, ctx, progress) = (records.clone(), ctx.clone(), progress.clone());
        futures::stream::iter(files.iter().cloned())
            .map(move |f| {
                let (records, ctx, progress) = (records.clone(), ctx.clone(), progress.clone());
                tokio::spawn(async move {
                    let loaded = load_file(&records, &ctx, &f, progress.as_ref()).await;
                    (f, loaded)
                })
            })
            .buffered(usize::from(jobs))
    };
    let mut results = {
        let planner = records.clone();
        loaded
            .chunks(usize::from(batch))
            .map(move |chunk| {
                let chunk = chunk
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()
                    .context("an import task stopped")?;
                anyhow::Ok(plan(&planner, chunk, usize::from(batch)))
            })
            .flat_map(|planned| match planned {
                Ok(work) => futures::stream::iter(work.into_iter().map(Ok).collect::<Vec<_>>()),
                Err(e) => futures::stream::iter(vec![Err(e)]),
            })
            .map(|work| {
                let (records, ctx, progress) = (records.clone(), ctx.clone(), progress.clone());
                tokio::spawn(async move { Ok(run(&records, &ctx, work?, progress.as_ref()).await) })
            })
            .buffer_unordered(usize::from(jobs))
    };
    while let Some(joined) = results.next().await {
        let done: anyhow::Result<Vec<(PathBuf, ImportSummary)>> =
            joined.context("an import task stopped")?;
        for (f, s) in done? {
            bar.inc(std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0));
            // A bundle whose conditional reference points at data in a later file gets a
            // second try.
            if s.failures
                .iter()
                .any(|x| x.reason.contains("matched nothing"))
            {
                retry.push(f);
            } else {
                summary.merge(s);
            }
        }
    }
    drop(results);
    for f in &retry {
        summary.merge(import_file(&records, &ctx, f, progress.as_ref()).await);
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    outln!(
        "Imported {} resources from {} files in {:.1}s ({:.0} resources/s)",
        summary.total(),
        files.len(),
        secs,
        summary.total() as f64 / secs.max(0.001)
    );
    outln!(
        "  created {}, updated {}, unchanged {}",
        summary.created,
        summary.updated,
        summary.unchanged
    );
    let prepared = records.prepared_writes();
    outln!(
        "  prepared before the write lock: {} written as prepared, {} prepared again under it",
        prepared.used,
        prepared.redone
    );
    if let Some(path) = &id_map {
        let map: serde_json::Map<String, serde_json::Value> = summary
            .ids
            .iter()
            .map(|(from, to)| (from.clone(), serde_json::Value::String(to.clone())))
            .collect();
        std::fs::write(path, serde_json::to_vec_pretty(&map)?)
            .with_context(|| format!("cannot write the id map to {}", path.display()))?;
        outln!("  id map: {} entries in {}", map.len(), path.display());
    }
    for (t, n) in &summary.counts {
        outln!("  {t:<32} {n}");
    }
    if !summary.failures.is_empty() {
        outln!("{} failures:", summary.failures.len());
        for f in &summary.failures {
            match f.entry {
                Some(e) => outln!("  {} entry {e}: {}", f.file, f.reason),
                None => outln!("  {}: {}", f.file, f.reason),
            }
        }
    }
    Ok(summary.failures.is_empty())
}
