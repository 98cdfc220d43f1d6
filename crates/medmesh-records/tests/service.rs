//! The record service over the real SQLite adapter, with an injected clock and id source.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use medmesh_auth::parse_scopes;
use medmesh_policy::Actor;
use medmesh_records::{
    Clock, IdSource, RecordError, RecordService, RequestContext, ReturnPreference,
};
use medmesh_store::{PlainCodec, RecordStore};
use serde_json::json;

struct StepClock(AtomicI64);
impl Clock for StepClock {
    fn now_micros(&self) -> i64 {
        self.0.fetch_add(1_000_000, Ordering::SeqCst)
    }
}
struct SeqIds(AtomicU64);
impl IdSource for SeqIds {
    fn new_id(&self) -> String {
        format!("id-{}", self.0.fetch_add(1, Ordering::SeqCst))
    }
}

async fn service() -> (Arc<RecordService>, Arc<dyn RecordStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = medmesh_store_sql::open(None, dir.path())
        .await
        .unwrap()
        .records;
    let clock = Arc::new(StepClock(AtomicI64::new(1_700_000_000_000_000)));
    let svc = RecordService::new(
        store.clone(),
        Arc::new(PlainCodec),
        medmesh_fhir::definitions().unwrap(),
        clock,
        Arc::new(SeqIds(AtomicU64::new(1))),
    );
    (Arc::new(svc), store, dir)
}

fn ctx(scopes: &str) -> RequestContext {
    RequestContext {
        actor: Actor {
            subject: "tester".into(),
            scopes: parse_scopes(scopes),
            patient: None,
            role: None,
            clinician: None,
        },
        operation_id: "op-1".into(),
        source_ip: None,
        base_url: "http://test/fhir".into(),
    }
}

#[tokio::test]
async fn ids_and_time_are_injected() {
    let (svc, _, _dir) = service().await;
    let out = svc
        .create(
            &ctx("system/*.*"),
            "Patient",
            json!({"resourceType": "Patient"}),
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.id, "id-1");
    assert_eq!(
        out.resource.unwrap()["meta"]["lastUpdated"],
        "2023-11-14T22:13:20.000Z"
    );
}

#[tokio::test]
async fn every_access_is_audited_and_failures_leave_nothing() {
    let (svc, store, _dir) = service().await;
    let admin = ctx("system/*.*");
    svc.create(
        &admin,
        "Patient",
        json!({"resourceType": "Patient", "name": [{"family": "A"}]}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        store.audit_count().await.unwrap(),
        1,
        "the write's entry commits with it"
    );
    svc.read(&admin, "Patient", "id-1").await.unwrap();
    assert_eq!(
        store.audit_count().await.unwrap(),
        2,
        "a read's entry is durable before it returns"
    );
    svc.search(
        &admin,
        "Patient",
        &[("family".into(), "a".into())],
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(store.audit_count().await.unwrap(), 3);
    let narrow = ctx("system/Observation.rs");
    assert!(matches!(
        svc.read(&narrow, "Patient", "id-1").await,
        Err(RecordError::Forbidden)
    ));
    assert_eq!(
        store.audit_count().await.unwrap(),
        4,
        "denials are audited too"
    );
    // A failing transaction writes neither data nor audit entries.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "x"}, "request": {"method": "POST", "url": "Patient"}}]});
    assert!(
        svc.process_bundle(&admin, tx, ReturnPreference::Minimal)
            .await
            .is_err()
    );
    assert_eq!(store.audit_count().await.unwrap(), 4);
    let page = svc
        .search(&admin, "Patient", &[], Default::default())
        .await
        .unwrap();
    assert_eq!(page["total"], 1);
}

#[tokio::test]
async fn concurrent_reads_share_audit_commits() {
    let (svc, store, _dir) = service().await;
    let admin = ctx("system/*.*");
    svc.create(&admin, "Patient", json!({"resourceType": "Patient"}), None)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let svc = svc.clone();
        let admin = admin.clone();
        tasks.push(tokio::spawn(async move {
            svc.read(&admin, "Patient", "id-1").await.map(|_| ())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        store.audit_count().await.unwrap(),
        201,
        "no entry lost in group commit"
    );
}
