//! The audit log at scale, on SQLite: an inclusion proof at 10M entries (criterion), and the
//! rate of a full `audit verify` over the same log (timed once, printed).
//!
//! `cargo bench -p medmesh-audit-log --bench audit_log` (set `AUDIT_BENCH_ENTRIES` to change the
//! size). The log is built once through the real append path, in batches as the group-commit
//! writer makes them, and kept in `target/audit-bench-<N>/` for later runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A benchmark times itself with the wall clock.
#![allow(clippy::disallowed_methods)]

mod common;
use common::entry;

use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use medmesh_audit::AuditEntry;
use medmesh_audit_log::{AuditLogService, verify_log};
use medmesh_kernel::SystemClock;

fn entries() -> u64 {
    std::env::var("AUDIT_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

fn bench(c: &mut Criterion) {
    let n = entries();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target")
        .join(format!("audit-bench-{n}"));
    let stores = rt.block_on(async {
        let stores = medmesh_store_sql::open(None, &dir).await.unwrap();
        let have = stores.audit.log_head().await.unwrap().size;
        if have < n {
            eprintln!("building a log of {n} entries in {} (once)", dir.display());
            let started = Instant::now();
            let mut i = have;
            while i < n {
                let batch: Vec<AuditEntry> = (i..(i + 10_000).min(n))
                    .map(|i| entry(i, format!("{:032x}", i % 50_000)))
                    .collect();
                stores.records.append_audit(&batch).await.unwrap();
                i += batch.len() as u64;
            }
            eprintln!(
                "appended {} entries in {:.1}s ({:.0} entries/s)",
                n - have,
                started.elapsed().as_secs_f64(),
                (n - have) as f64 / started.elapsed().as_secs_f64()
            );
        }
        stores
    });
    let log = rt.block_on(async {
        let log = AuditLogService::open(
            stores.audit.clone(),
            "bench/audit",
            [7; 32],
            Arc::new(SystemClock),
            None,
        )
        .await
        .unwrap();
        log.checkpoint_now().await.unwrap();
        log
    });
    let mut i = 0u64;
    c.bench_function(&format!("inclusion proof at {n} entries (SQLite)"), |b| {
        b.iter(|| {
            i = (i + 7_654_321) % n;
            rt.block_on(log.inclusion_proof(i, n)).unwrap()
        })
    });
    let started = Instant::now();
    let report = rt
        .block_on(verify_log(
            stores.audit.as_ref(),
            &[],
            log.map_secret(),
            &medmesh_kernel::random::OsRandom,
        ))
        .unwrap()
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "full verify: {} entries, {} checkpoints in {:.2}s = {:.0} entries/s",
        report.entries,
        report.checkpoints,
        secs,
        report.entries as f64 / secs
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(200);
    targets = bench
}
criterion_main!(benches);
