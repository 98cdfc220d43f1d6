//! The patient map at scale, on SQLite: a patient's map proof (their head, proven against
//! the newest checkpoint) in a log of 10M entries over 1M patients (criterion), after the
//! log is built through the real append path and the map moved over all of it by one
//! checkpoint (both timed once, printed).
//!
//! `cargo bench -p medmesh-audit-log --bench patient_map` (`MAP_BENCH_ENTRIES` and
//! `MAP_BENCH_PATIENTS` change the sizes). The log is kept in
//! `target/audit-bench-map-<entries>-<patients>/` for later runs (~7 GB at 10M).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A benchmark times itself with the wall clock.
#![allow(clippy::disallowed_methods)]

mod common;
use common::entry;

use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use medmesh_audit::AuditEntry;
use medmesh_audit_log::AuditLogService;
use medmesh_kernel::SystemClock;
use medmesh_testkit::{operator, service_at};

fn var(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn patient(i: u64) -> String {
    format!("{:032x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

fn bench(c: &mut Criterion) {
    let n = var("MAP_BENCH_ENTRIES", 10_000_000);
    let p = var("MAP_BENCH_PATIENTS", 1_000_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target")
        .join(format!("audit-bench-map-{n}-{p}"));
    std::fs::create_dir_all(&dir).unwrap();
    let (records, stores) = rt.block_on(service_at(&dir, true, false));
    let log = rt.block_on(async {
        let have = stores.audit.log_head().await.unwrap().size;
        if have < n {
            eprintln!(
                "building a log of {n} entries over {p} patients in {} (once)",
                dir.display()
            );
            let started = Instant::now();
            let mut i = have;
            while i < n {
                let batch: Vec<AuditEntry> = (i..(i + 10_000).min(n))
                    .map(|i| entry(i, patient(i % p)))
                    .collect();
                stores.records.append_audit(&batch).await.unwrap();
                i += batch.len() as u64;
            }
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "appended {} entries in {secs:.1}s ({:.0} entries/s)",
                n - have,
                (n - have) as f64 / secs
            );
        }
        let log = AuditLogService::open(
            stores.audit.clone(),
            "bench/audit",
            [7; 32],
            Arc::new(SystemClock),
            None,
        )
        .await
        .unwrap();
        let started = Instant::now();
        let before = stores.audit.map_head().await.unwrap().size;
        log.checkpoint_now().await.unwrap();
        if before < n {
            eprintln!(
                "moved the patient map over {} entries in {:.1}s",
                n - before,
                started.elapsed().as_secs_f64()
            );
        }
        log
    });
    let ctx = operator();
    let mut i = 0u64;
    c.bench_function(
        &format!("a patient's map proof at {n} entries, {p} patients (SQLite)"),
        |b| {
            b.iter(|| {
                i = (i + 7_919) % p;
                let view = records.audit_view(&ctx, Some(&patient(i))).unwrap();
                let (_, head, proof) = rt.block_on(log.patient_map_proof(&view)).unwrap().unwrap();
                assert!(proof.verify(&head.patient_map.unwrap()).unwrap().is_some());
            })
        },
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(200);
    targets = bench
}
criterion_main!(benches);
