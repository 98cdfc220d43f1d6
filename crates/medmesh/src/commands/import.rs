//! `medmesh import`: FHIR files (Bundles, NDJSON, single resources) loaded through the
//! records service as the local operator.

use crate::commands::keys;
use crate::config::Config;
use crate::wiring::*;
use anyhow::{Context, bail};
use futures::StreamExt;
use medmesh_records::import::{ImportFailure, ImportSummary};
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

pub(crate) async fn import_file(
    records: &RecordService,
    ctx: &RequestContext,
    path: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> ImportSummary {
    let name = path.display().to_string();
    let fail = |reason: String| ImportSummary {
        failures: vec![ImportFailure {
            file: name.clone(),
            entry: None,
            reason,
        }],
        ..ImportSummary::default()
    };
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) => return fail(format!("cannot read: {e}")),
    };
    if path.extension().is_some_and(|e| e == "ndjson") {
        return records
            .import_ndjson(ctx, &name, &String::from_utf8_lossy(&bytes), progress)
            .await;
    }
    match medmesh_fhir::resource::parse_json_object(&bytes) {
        Ok(doc) => {
            let s = records.import_json(ctx, &name, doc).await;
            progress(s.total());
            s
        }
        Err(issue) => fail(issue.diagnostics),
    }
}

pub(crate) async fn import(
    cfg: Config,
    paths: Vec<PathBuf>,
    jobs: u16,
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
    // Each file is a task of its own, so parsing, validation, index extraction and sealing
    // run on every core; only the store's writer is shared. (Futures polled by one stream
    // would all run on the thread that polls it.)
    let mut results = futures::stream::iter(files.iter().cloned())
        .map(|f| {
            let (records, ctx, progress, bar) =
                (records.clone(), ctx.clone(), progress.clone(), bar.clone());
            tokio::spawn(async move {
                let s = import_file(&records, &ctx, &f, progress.as_ref()).await;
                bar.inc(std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0));
                (f, s)
            })
        })
        .buffer_unordered(usize::from(jobs));
    while let Some(joined) = results.next().await {
        let (f, s) = joined.context("an import task stopped")?;
        // A bundle whose conditional reference points at data in a later file gets a second try.
        if s.failures
            .iter()
            .any(|x| x.reason.contains("matched nothing"))
        {
            retry.push(f);
        } else {
            summary.merge(s);
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
