//! A patient's access log over the real SQLite adapter: reading it needs the PDP's view of
//! that patient, and every attempt, refused ones included, is itself in the log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use std::sync::Arc;

use medmesh_audit_log::AuditLogService;
use medmesh_kernel::SystemClock;
use medmesh_records::RecordError;
use medmesh_testkit::{audit_count, ctx, operator, service_at};

#[tokio::test]
async fn reading_a_patients_log_needs_the_pdps_view_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, stores) = service_at(dir.path(), true, false).await;
    let log = AuditLogService::open(
        stores.audit.clone(),
        "test",
        [7; 32],
        Arc::new(SystemClock),
        None,
    )
    .await
    .unwrap();
    let before = audit_count(&stores.audit).await;
    assert!(matches!(
        log.read_patient_log(&svc, &ctx("user/*.cruds"), "p1", None, 10, None)
            .await,
        Err(RecordError::Forbidden)
    ));
    assert_eq!(
        audit_count(&stores.audit).await,
        before + 1,
        "the denied reading is in the log"
    );
    log.read_patient_log(&svc, &operator(), "p1", None, 10, None)
        .await
        .unwrap();
    assert_eq!(
        audit_count(&stores.audit).await,
        before + 2,
        "so is the permitted one"
    );
}
