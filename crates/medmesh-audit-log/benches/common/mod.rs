//! What the audit benchmarks share: the entry they append, shaped as a read's.

use medmesh_audit::{AuditEntry, Outcome};

/// Entry number `i`, a read of one Observation of `patient`.
pub fn entry(i: u64, patient: String) -> AuditEntry {
    let mut e = AuditEntry::new(
        1_764_000_000_000_000 + i as i64,
        &format!("{:032x}", i * 7919),
        "7d0b7e7c-3a51-4c8e-9d3e-2f1c6b1e9a10",
        "read",
        Outcome::Success,
    );
    e.resource_type = Some("Observation".into());
    e.resource_ids = vec![format!("Observation/{:032x}", i)];
    e.patients = vec![patient];
    e.source_ip = Some("10.1.2.3".into());
    e
}
