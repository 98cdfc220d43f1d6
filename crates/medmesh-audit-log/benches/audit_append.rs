//! Appends through the real path (`RecordStore::append_audit`, as the group-commit writer
//! calls it) into a fresh SQLite log: entries/s, printed. Plain `main`, no criterion, and
//! only API that predates the patient chains, so that `bench/audit-append.sh` can run the
//! same file against an earlier revision, side by side. For that it stands alone: its entry
//! is the one `common.rs` gives the other benches, written out (an older revision has no
//! `common/`).
//!
//! `cargo bench -p medmesh-audit-log --bench audit_append` with `APPEND_ENTRIES` (default
//! 1,000,000), `APPEND_BATCH` (10,000) and `APPEND_PATIENTS` (50,000).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// A benchmark times itself with the wall clock.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use medmesh_audit::{AuditEntry, Outcome};

fn var(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench` asks harness-less benches to list themselves
    }
    let n = var("APPEND_ENTRIES", 1_000_000);
    let batch = var("APPEND_BATCH", 10_000);
    let patients = var("APPEND_PATIENTS", 50_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secs = rt.block_on(async {
        let stores = medmesh_store_sql::open(None, dir.path()).await.unwrap();
        let started = Instant::now();
        let mut i = 0;
        while i < n {
            let entries: Vec<AuditEntry> = (i..(i + batch).min(n))
                .map(|i| {
                    let mut e = AuditEntry::new(
                        1_764_000_000_000_000 + i as i64,
                        &format!("{:032x}", i * 7919),
                        "7d0b7e7c-3a51-4c8e-9d3e-2f1c6b1e9a10",
                        "read",
                        Outcome::Success,
                    );
                    e.resource_type = Some("Observation".into());
                    e.resource_ids = vec![format!("Observation/{:032x}", i)];
                    e.patients = vec![format!("{:032x}", i % patients)];
                    e.source_ip = Some("10.1.2.3".into());
                    e
                })
                .collect();
            stores.records.append_audit(&entries).await.unwrap();
            i += entries.len() as u64;
        }
        started.elapsed().as_secs_f64()
    });
    println!(
        "appended {n} entries in batches of {batch} over {patients} patients: {:.2}s = {:.0} entries/s",
        secs,
        n as f64 / secs
    );
}
