//! The trust network's oversight data over the real SQLite adapter: the access map and
//! notifications take the PDP's view of one patient, and a view of the whole log is not one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use medmesh_records::RecordError;
use medmesh_testkit::{operator, service_at};
use medmesh_trust_network::{DEFAULT_BREAK_GLASS_MICROS, TrustNetwork};

#[tokio::test]
async fn oversight_data_is_read_with_the_view_of_one_patient() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, stores) = service_at(dir.path(), true, false).await;
    let trust = TrustNetwork::new(
        svc.clone(),
        stores.records.clone(),
        DEFAULT_BREAK_GLASS_MICROS,
    );
    let view = svc.audit_view(&operator(), Some("p1")).unwrap();
    assert!(trust.access_map(&view).await.unwrap().is_empty());
    assert!(trust.notifications(&view).await.unwrap().is_empty());
    let whole_log = svc.audit_view(&operator(), None).unwrap();
    assert!(matches!(
        trust.access_map(&whole_log).await,
        Err(RecordError::NotFound)
    ));
    let review = svc.review_right(&operator()).unwrap();
    assert!(
        trust
            .break_glass_queue(&review, 0)
            .await
            .unwrap()
            .is_empty()
    );
}
