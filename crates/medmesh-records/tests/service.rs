//! The record service over the real SQLite adapter, with an injected clock and id source.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design
// Tests make their own actors and read the wall clock.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;

use medmesh_auth::parse_scopes;
use medmesh_kernel::{Actor, OperationId, RequestContext, VerifiedIdentity};
use medmesh_records::{RecordError, RecordService, ReturnPreference};
use medmesh_store::AuditLogStore;
use medmesh_testkit::{SECRETS, audit_count, contains, ctx, mejia, operator, raw_rows, service_at};
use serde_json::json;

async fn service() -> (
    Arc<RecordService>,
    Arc<dyn AuditLogStore>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let (svc, stores) = service_at(dir.path(), true, false).await;
    (svc, stores.audit, dir)
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
        audit_count(&store).await,
        1,
        "the write's entry commits with it"
    );
    svc.read(&admin, "Patient", "id-1").await.unwrap();
    assert_eq!(
        audit_count(&store).await,
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
    assert_eq!(audit_count(&store).await, 3);
    let narrow = ctx("system/Observation.rs");
    assert!(matches!(
        svc.read(&narrow, "Patient", "id-1").await,
        Err(RecordError::Forbidden)
    ));
    assert_eq!(audit_count(&store).await, 4, "denials are audited too");
    // A failing transaction writes neither data nor audit entries.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "x"}, "request": {"method": "POST", "url": "Patient"}}]});
    assert!(
        svc.process_bundle(&admin, tx, ReturnPreference::Minimal)
            .await
            .is_err()
    );
    assert_eq!(audit_count(&store).await, 4);
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
        audit_count(&store).await,
        201,
        "no entry lost in group commit"
    );
}

/// A verified practitioner, `Practitioner/x` of `Organization/h`.
fn practitioner() -> RequestContext {
    RequestContext::new(
        Actor::from_verified_session(VerifiedIdentity {
            subject: "dr".into(),
            scopes: parse_scopes("user/*.cruds"),
            patient: None,
            role: Some(medmesh_auth::Role::Practitioner),
            clinician: Some(medmesh_policy::Clinician {
                practitioner: "Practitioner/x".into(),
                organizations: vec!["Organization/h".into()],
                verified: true,
            }),
        }),
        OperationId::new("op"),
        None,
        "http://test/fhir",
    )
}

/// A practitioner's compiled access is kept between requests, and ends with the next change
/// to the trust graph or the consents, made through any record service on the store: here a
/// second replica, whose writes the first learns of only through the store.
#[tokio::test]
async fn a_kept_access_ends_with_the_next_trust_change_from_another_replica() {
    let dir = tempfile::tempdir().unwrap();
    let (node_a, _) = service_at(dir.path(), true, false).await;
    let (node_b, _) = service_at(dir.path(), true, false).await;
    let dr = practitioner();
    // Writes a resource as the operator through one node.
    async fn put(node: &RecordService, body: serde_json::Value) {
        let (rt, id) = (body["resourceType"].as_str(), body["id"].as_str());
        let (rt, id) = (rt.unwrap().to_string(), id.unwrap().to_string());
        node.update(&ctx("system/*.*"), &rt, &id, body, None)
            .await
            .unwrap();
    }
    let team = |member: &str| {
        json!({"resourceType": "CareTeam", "id": "ct1", "status": "active",
            "subject": {"reference": "Patient/p1"},
            "participant": [{"member": {"reference": member}}]})
    };
    put(&node_a, json!({"resourceType": "Patient", "id": "p1"})).await;
    put(&node_a, team("Practitioner/x")).await;
    for _ in 0..3 {
        assert!(
            node_a.read(&dr, "Patient", "p1").await.is_ok(),
            "on the care team"
        );
    }
    // The other replica takes the practitioner off the team: the next read is refused.
    put(&node_b, team("Practitioner/y")).await;
    assert!(matches!(
        node_a.read(&dr, "Patient", "p1").await,
        Err(RecordError::NotFound | RecordError::Forbidden)
    ));
    // And puts them back: the next read is let through again.
    put(&node_b, team("Practitioner/x")).await;
    assert!(node_a.read(&dr, "Patient", "p1").await.is_ok());
    // The patient's consent denies Patient data to everyone: it counts from the next read.
    put(
        &node_b,
        json!({"resourceType": "Consent", "id": "deny", "status": "active",
            "scope": {"coding": [{"code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/p1"},
            "provision": {"type": "deny", "class": [{"code": "Patient"}]}}),
    )
    .await;
    assert!(matches!(
        node_a.read(&dr, "Patient", "p1").await,
        Err(RecordError::NotFound | RecordError::Forbidden)
    ));
}

mod no_leaks {
    //! The no-leak property: for random care relationships, consents and labelled
    //! resources, nothing a practitioner reads, searches (with `_total`) or gets from
    //! `$everything` holds a resource the PDP's per-resource decision denies; and everything
    //! it permits is found.

    use super::*;
    use medmesh_policy::ReachFacts;
    use medmesh_policy::access::{PatientAccess, Principal, edges_from};
    use medmesh_policy::consent::parse_consent;
    use medmesh_policy::labels::labels_of;
    use proptest::prelude::*;
    use serde_json::Value;

    fn provision() -> impl Strategy<Value = Value> {
        (
            any::<bool>(),
            prop::sample::select(vec![None, Some("Practitioner/x"), Some("Organization/h"), Some("Practitioner/y")]),
            prop::sample::select(vec![None, Some("Observation"), Some("Condition")]),
            prop::sample::select(vec![None, Some("R"), Some("V"), Some("PSY"), Some("HIV")]),
        )
            .prop_map(|(permit, actor, class, label)| {
                let mut p = json!({"type": if permit { "permit" } else { "deny" }});
                if let Some(a) = actor {
                    p["actor"] = json!([{"role": {"coding": [{"code": "PRCP"}]}, "reference": {"reference": a}}]);
                }
                if let Some(c) = class {
                    p["class"] = json!([{"system": "http://hl7.org/fhir/resource-types", "code": c}]);
                }
                if let Some(l) = label {
                    p["securityLabel"] = json!([{"code": l}]);
                }
                p
            })
    }

    #[derive(Debug, Clone)]
    struct Case {
        care: [bool; 2],
        consents: Vec<(usize, Value)>,
        resources: Vec<(usize, bool, Vec<&'static str>)>,
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            any::<[bool; 2]>(),
            prop::collection::vec((0usize..2, provision()), 0..4),
            prop::collection::vec(
                (
                    0usize..2,
                    any::<bool>(),
                    prop::sample::subsequence(vec!["R", "V", "PSY", "HIV"], 0..3),
                ),
                1..7,
            ),
        )
            .prop_map(|(care, consents, resources)| Case {
                care,
                consents,
                resources,
            })
    }

    async fn run(c: Case) {
        let (svc, _store, _dir) = service().await;
        let admin = ctx("system/*.*");
        let mut written: Vec<Value> = Vec::new();
        let mut put = |v: Value| written.push(v);
        for p in 0..2 {
            put(json!({"resourceType": "Patient", "id": format!("p{p}")}));
            if c.care[p] {
                put(
                    json!({"resourceType": "CareTeam", "id": format!("ct{p}"), "status": "active",
                    "subject": {"reference": format!("Patient/p{p}")},
                    "participant": [{"member": {"reference": "Practitioner/x"}}]}),
                );
            }
        }
        for (i, (p, provision)) in c.consents.iter().enumerate() {
            put(
                json!({"resourceType": "Consent", "id": format!("k{i}"), "status": "active",
                "scope": {"coding": [{"code": "patient-privacy"}]},
                "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                "patient": {"reference": format!("Patient/p{p}")}, "provision": provision}),
            );
        }
        for (i, (p, condition, labels)) in c.resources.iter().enumerate() {
            let security: Vec<Value> = labels
                .iter()
                .map(|l| {
                    let system = if matches!(*l, "R" | "V") {
                        "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
                    } else {
                        "http://terminology.hl7.org/CodeSystem/v3-ActCode"
                    };
                    json!({"system": system, "code": l})
                })
                .collect();
            let mut r = if *condition {
                json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/p{p}")}})
            } else {
                json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                       "subject": {"reference": format!("Patient/p{p}")}})
            };
            r["id"] = json!(format!("r{i}"));
            if !security.is_empty() {
                r["meta"] = json!({"security": security});
            }
            put(r);
        }
        for v in &written {
            let rt = v["resourceType"].as_str().unwrap();
            let id = v["id"].as_str().unwrap();
            svc.update(&admin, rt, id, v.clone(), None).await.unwrap();
        }
        // The oracle: the PDP's decision per resource, from the same facts.
        let mut edges = Vec::new();
        let mut consents = Vec::new();
        for v in &written {
            edges.extend(edges_from(v, 0));
            consents.extend(parse_consent(v).map(std::sync::Arc::new));
        }
        let principal = Principal {
            practitioner: Some("Practitioner/x".into()),
            references: vec!["Organization/h".into(), "Practitioner/x".into()],
        };
        edges.retain(|e| principal.references.contains(&e.principal));
        let facts = ReachFacts {
            principals: principal.references.clone(),
            edges,
            consents,
        };
        let allowed = |v: &Value| -> bool {
            let rt = v["resourceType"].as_str().unwrap();
            let patient = if rt == "Patient" {
                v["id"].as_str().unwrap().to_string()
            } else {
                v["subject"]["reference"].as_str().unwrap()[8..].to_string()
            };
            PatientAccess::compile(
                &patient,
                &principal,
                &facts.edges,
                &facts.consents,
                1_700_000_000_000_000,
            )
            .is_some_and(|a| a.admits(rt, &labels_of(v), false))
        };
        let dr = practitioner();
        for v in written.iter().filter(|v| {
            matches!(
                v["resourceType"].as_str(),
                Some("Patient" | "Observation" | "Condition")
            )
        }) {
            let rt = v["resourceType"].as_str().unwrap();
            let id = v["id"].as_str().unwrap();
            let read = svc.read(&dr, rt, id).await;
            assert_eq!(read.is_ok(), allowed(v), "read {rt}/{id}: {c:?}");
            if let Err(e) = read {
                assert!(matches!(e, RecordError::NotFound), "a denial answers 404");
            }
        }
        for rt in ["Observation", "Condition", "Patient"] {
            let bundle = svc
                .search(
                    &dr,
                    rt,
                    &[("_total".into(), "accurate".into())],
                    medmesh_fhir::search::Handling::Lenient,
                )
                .await
                .unwrap();
            let mut got: Vec<String> = bundle["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
                .collect();
            got.sort();
            let mut want: Vec<String> = written
                .iter()
                .filter(|v| v["resourceType"] == rt && allowed(v))
                .map(|v| v["id"].as_str().unwrap().to_string())
                .collect();
            want.sort();
            assert_eq!(got, want, "search {rt}: {c:?}");
            assert_eq!(bundle["total"], json!(want.len()), "_total {rt}");
        }
        for p in 0..2 {
            let visible_patient = allowed(
                &written[written
                    .iter()
                    .position(|v| v["id"] == format!("p{p}"))
                    .unwrap()],
            );
            match svc.everything(&dr, &format!("p{p}"), &[]).await {
                Ok(bundle) => {
                    assert!(visible_patient);
                    for e in bundle["entry"].as_array().into_iter().flatten() {
                        let r = &written
                            .iter()
                            .find(|v| v["id"] == e["resource"]["id"])
                            .unwrap();
                        if matches!(
                            r["resourceType"].as_str(),
                            Some("Observation" | "Condition")
                        ) {
                            assert!(allowed(r), "$everything leaked {}: {c:?}", r["id"]);
                        }
                    }
                }
                Err(e) => {
                    assert!(!visible_patient, "{e:?}");
                    assert!(matches!(e, RecordError::NotFound));
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
        #[test]
        fn no_response_holds_a_resource_the_pdp_denies(c in case()) {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(run(c));
        }
    }
}

#[tokio::test]
async fn bodies_and_identifying_index_values_never_reach_the_database_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, _) = service_at(dir.path(), true, false).await;
    let admin = ctx("system/*.*");
    let p = svc.create(&admin, "Patient", mejia(), None).await.unwrap();
    let pid = p.id.clone();
    svc.create(
        &admin,
        "Observation",
        json!({"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
               "subject": {"reference": format!("Patient/{pid}")},
               "note": [{"text": "Quixotely reports palpitations"}]}),
        None,
    )
    .await
    .unwrap();
    for table in ["resource_versions", "idx_string", "idx_token"] {
        let col = match table {
            "resource_versions" => "body",
            "idx_string" => "norm || exact",
            _ => "COALESCE(code, '') || COALESCE(text, '')",
        };
        let rows = raw_rows(dir.path(), &format!("SELECT {col} FROM {table}")).await;
        assert!(!rows.is_empty());
        for secret in SECRETS {
            assert!(!contains(&rows, secret), "{secret} in {table}");
        }
    }
    // Clinical codes stay in clear: range and code searches need them.
    let codes = raw_rows(
        dir.path(),
        "SELECT code FROM idx_token WHERE code IS NOT NULL",
    )
    .await;
    assert!(contains(&codes, "8867-4"));
    // And search still finds the patient by what was blinded.
    for q in [
        "family=quix",
        "family:exact=Quixotely",
        "given=DULC",
        "identifier=MRN-4711",
        "identifier=http://hospital.example/mrn|MRN-4711",
        "telecom=555-0142",
        "birthdate=1980-05",
        "name=dulcinea",
    ] {
        let (k, v) = q.split_once('=').unwrap();
        let bundle = svc
            .search(
                &admin,
                "Patient",
                &[(k.into(), v.into())],
                medmesh_fhir::search::Handling::Strict,
            )
            .await
            .unwrap();
        assert_eq!(bundle["entry"].as_array().map(Vec::len), Some(1), "{q}");
    }
    let refused = svc
        .search(
            &admin,
            "Patient",
            &[("family:contains".into(), "xot".into())],
            medmesh_fhir::search::Handling::Strict,
        )
        .await
        .unwrap_err();
    assert!(matches!(refused, RecordError::Invalid(_)), "{refused:?}");
}

#[tokio::test]
async fn a_body_moved_to_another_row_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, _) = service_at(dir.path(), true, false).await;
    let admin = ctx("system/*.*");
    let a = svc.create(&admin, "Patient", mejia(), None).await.unwrap();
    let b = svc
        .create(
            &admin,
            "Patient",
            json!({"resourceType": "Patient", "gender": "female"}),
            None,
        )
        .await
        .unwrap();
    // Swap the two bodies directly in the file.
    let url = format!("sqlite://{}", dir.path().join("medmesh.db").display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE resource_versions SET body = (SELECT body FROM resource_versions WHERE res_id = ?1) WHERE res_id = ?2",
    )
    .bind(&a.id)
    .bind(&b.id)
    .execute(&mut conn)
    .await
    .unwrap();
    let err = svc.read(&admin, "Patient", &b.id).await.unwrap_err();
    assert!(matches!(err, RecordError::Corrupt), "{err:?}");
    assert!(svc.read(&admin, "Patient", &a.id).await.is_ok());
}

/// Oversight data and key administration need a permit that only the PDP issues; a clinician
/// gets none, and the operator gets each.
#[tokio::test]
async fn oversight_and_key_administration_need_the_pdps_permit() {
    let (svc, _, dir) = service().await;
    let clinician = ctx("user/*.cruds");
    assert!(matches!(
        svc.audit_view(&clinician, Some("p1")),
        Err(RecordError::Forbidden)
    ));
    assert!(matches!(
        svc.review_right(&clinician),
        Err(RecordError::Forbidden)
    ));
    assert!(matches!(
        svc.inbox_owner(&clinician, "p1"),
        Err(RecordError::Forbidden)
    ));
    assert!(matches!(
        svc.key_admin(&clinician),
        Err(RecordError::Forbidden)
    ));
    let operator = operator();
    assert!(svc.key_admin(&operator).is_ok());
    assert!(svc.review_right(&operator).is_ok());
    assert!(svc.audit_view(&operator, Some("p1")).is_ok());
    drop(dir);
}

/// A clock that stands still: every write of a second transaction has the time the first
/// one's already stored, so a write prepared before the lock can no longer keep time in
/// commit order and must be prepared again under it.
#[derive(Debug)]
struct StillClock;

impl medmesh_kernel::Clock for StillClock {
    fn now_micros(&self) -> i64 {
        1_700_000_000_000_000
    }
}

/// A transaction of new resources for one new patient: a Patient (its data key is new) and
/// an Observation referring to it by `urn:uuid`, created, plus a PUT of a new Observation.
fn new_patient_bundle(n: u32) -> serde_json::Value {
    let patient = format!("urn:uuid:0b8e0f3a-1111-4c5e-9a2b-{n:012}");
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": patient, "resource": {"resourceType": "Patient", "name": [{"family": format!("Quillfeather{n}")}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": patient}},
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Observation", "id": format!("put-{n}"), "status": "final",
                      "code": {"text": "y"}, "subject": {"reference": patient}},
         "request": {"method": "PUT", "url": format!("Observation/put-{n}")}}
    ]})
}

async fn encrypted_service(
    dir: &std::path::Path,
    clock: Arc<dyn medmesh_kernel::Clock>,
) -> (Arc<RecordService>, medmesh_store_sql::Stores) {
    let stores = medmesh_store_sql::open(None, dir).await.unwrap();
    let file = medmesh_kek::KeyFile::open_or_create(
        &dir.join("master.key"),
        &medmesh_kernel::random::OsRandom,
    )
    .unwrap();
    let kek = Arc::new(medmesh_kek::LocalKek::new(
        file,
        Arc::new(medmesh_kernel::random::OsRandom),
    ));
    let at_rest = medmesh_at_rest::AtRest::load(
        stores.keys.clone(),
        kek,
        Arc::new(medmesh_kernel::random::OsRandom),
        Arc::new(medmesh_kernel::SystemClock),
    )
    .await
    .unwrap();
    let svc = RecordService::new(
        stores.records.clone(),
        medmesh_fhir::definitions().unwrap(),
        clock,
        Arc::new(medmesh_testkit::SeqIds::default()),
    )
    .with_encryption(Arc::new(at_rest));
    (Arc::new(svc), stores)
}

/// Reads back what a transaction wrote: the Observations point at the patient, every
/// version is 1, sealed, and the patient's data key is stored once.
async fn check_written(
    svc: &RecordService,
    stores: &medmesh_store_sql::Stores,
    response: &serde_json::Value,
) {
    let admin = ctx("system/*.*");
    let locations: Vec<String> = response["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["location"].as_str().unwrap().to_string())
        .collect();
    let patient_id = locations[0].split('/').nth(1).unwrap().to_string();
    for (i, loc) in locations.iter().enumerate() {
        let mut parts = loc.split('/');
        let (rt, id) = (parts.next().unwrap(), parts.next().unwrap());
        let read = svc.read(&admin, rt, id).await.unwrap().resource;
        assert_eq!(read["meta"]["versionId"], "1", "{loc}");
        if i > 0 {
            assert_eq!(
                read["subject"]["reference"],
                format!("Patient/{patient_id}")
            );
        }
    }
    assert!(
        stores.keys.active_key(&patient_id).await.unwrap().is_some(),
        "the new patient's data key is stored with the data"
    );
}

#[tokio::test]
async fn new_resources_are_prepared_before_the_write_lock_and_written_as_prepared() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, stores) =
        encrypted_service(dir.path(), Arc::new(medmesh_testkit::StepClock::default())).await;
    let admin = ctx("system/*.*");
    for n in 0..2 {
        let out = svc
            .transaction(&admin, &new_patient_bundle(n), ReturnPreference::Minimal)
            .await
            .unwrap();
        check_written(&svc, &stores, &out).await;
    }
    let prepared = svc.prepared_writes();
    assert_eq!((prepared.used, prepared.redone), (6, 0));
    // Nothing is left in clear by the prepared path. (The name is long enough that sealed
    // bytes do not hold it by chance: "F1", matched in any case, turned up in ciphertext.)
    assert!(!contains(
        &raw_rows(dir.path(), "SELECT body FROM resource_versions").await,
        "Quillfeather1"
    ));
}

#[tokio::test]
async fn a_prepared_write_whose_facts_changed_is_prepared_again_under_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, stores) = encrypted_service(dir.path(), Arc::new(StillClock)).await;
    let admin = ctx("system/*.*");
    let first = svc
        .transaction(&admin, &new_patient_bundle(0), ReturnPreference::Minimal)
        .await
        .unwrap();
    check_written(&svc, &stores, &first).await;
    assert_eq!(svc.prepared_writes().used, 3);
    // The clock stands still: the second forecast's time is not newer than what is stored.
    let second = svc
        .transaction(&admin, &new_patient_bundle(1), ReturnPreference::Minimal)
        .await
        .unwrap();
    check_written(&svc, &stores, &second).await;
    let prepared = svc.prepared_writes();
    assert_eq!((prepared.used, prepared.redone), (3, 3));

    // A PUT to a resource that exists is not prepared: it writes version 2 under the lock.
    let mut again = new_patient_bundle(1);
    again["entry"][2]["resource"]["status"] = json!("amended");
    let third = svc
        .transaction(&admin, &again, ReturnPreference::Minimal)
        .await
        .unwrap();
    assert!(
        third["entry"][2]["response"]["location"]
            .as_str()
            .unwrap()
            .ends_with("/_history/2")
    );
}

/// A transaction Bundle of one entry.
fn one_entry(
    full_url: &str,
    resource: serde_json::Value,
    request: serde_json::Value,
) -> serde_json::Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": full_url, "resource": resource, "request": request}]})
}

#[tokio::test]
async fn files_share_a_transaction_only_when_none_could_see_another() {
    use medmesh_records::import_group::ImportUnit;
    let (svc, _, _dir) = service().await;
    let admin = ctx("system/*.*");
    let org = |n: u32, id: &str| {
        one_entry(
            &format!("urn:uuid:00000000-0000-4000-8000-00000000000{n}"),
            json!({"resourceType": "Organization", "identifier": [{"system": "urn:org", "value": id}], "name": "Clinic"}),
            json!({"method": "POST", "url": "Organization"}),
        )
    };
    let patient_of = |n: u32, reference: &str| {
        one_entry(
            &format!("urn:uuid:00000000-0000-4000-8000-0000000001{n:02}"),
            json!({"resourceType": "Patient", "managingOrganization": {"reference": reference}}),
            json!({"method": "POST", "url": "Patient"}),
        )
    };
    let units = vec![
        ImportUnit::new("a", org(1, "A")),
        // Another organization, another identifier: cannot match a's.
        ImportUnit::new("b", org(2, "B")),
        // The same condition as a's: in one transaction both would create.
        ImportUnit::new("c", org(3, "A")),
        // A conditional reference to what c creates.
        ImportUnit::new("d", patient_of(4, "Organization?identifier=urn:org|a")),
        // A reference by a query that is not only on identifiers, to a type nobody here writes.
        ImportUnit::new("e", patient_of(5, "Practitioner?name=x")),
        // A Consent goes alone.
        ImportUnit::new(
            "f",
            one_entry(
                "urn:uuid:00000000-0000-4000-8000-000000000006",
                json!({"resourceType": "Consent", "status": "active", "scope": {"text": "x"}, "category": [{"text": "x"}]}),
                json!({"method": "POST", "url": "Consent"}),
            ),
        ),
        ImportUnit::new("g", org(7, "G")),
        // A reference by a query without criteria matches any Organization, g's too.
        ImportUnit::new("i", patient_of(10, "Organization?_count=1")),
    ];
    let names = |groups: &Vec<Vec<ImportUnit>>| {
        groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|u| u.file.as_str())
                    .collect::<Vec<_>>()
                    .join("")
            })
            .collect::<Vec<_>>()
    };
    let groups = svc.group_imports(units.clone(), 16, 5_000);
    assert_eq!(names(&groups), ["ab", "c", "de", "f", "g", "i"]);
    assert_eq!(
        names(&svc.group_imports(units.clone(), 1, 5_000)),
        ["a", "b", "c", "d", "e", "f", "g", "i"]
    );
    assert_eq!(
        names(&svc.group_imports(units[..2].to_vec(), 16, 1)),
        ["a", "b"]
    );

    // A group whose transaction fails is imported file by file: the bad file fails alone.
    let bad = one_entry(
        "urn:uuid:00000000-0000-4000-8000-000000000008",
        json!({"resourceType": "Patient", "gender": "bogus"}),
        json!({"method": "POST", "url": "Patient"}),
    );
    let group = svc.group_imports(
        vec![
            ImportUnit::new("a", org(1, "A")),
            ImportUnit::new("bad", bad),
            ImportUnit::new("b", org(2, "B")),
        ],
        16,
        5_000,
    );
    assert_eq!(names(&group), ["abadb"]);
    let done = svc
        .import_group(&admin, group.into_iter().next().unwrap())
        .await;
    let failed: Vec<_> = done
        .iter()
        .filter(|(_, s)| !s.failures.is_empty())
        .map(|(f, _)| f.as_str())
        .collect();
    assert_eq!(failed, ["bad"]);
    assert_eq!(done.iter().map(|(_, s)| s.created).sum::<u64>(), 2);
    // A group that commits reports each file's own writes and ids.
    let group = svc.group_imports(
        vec![
            ImportUnit::new("g", org(7, "G")),
            ImportUnit::new("h", org(9, "H")),
        ],
        16,
        5_000,
    );
    let done = svc
        .import_group(&admin, group.into_iter().next().unwrap())
        .await;
    for (file, s) in &done {
        assert_eq!(
            (s.created, s.ids.len(), s.failures.len()),
            (1, 1, 0),
            "{file}"
        );
    }
    assert_ne!(done[0].1.ids[0].1, done[1].1.ids[0].1);
    // The second import of a's organization matches it: one, not two.
    let again = svc
        .import_group(&admin, vec![ImportUnit::new("c", org(3, "A"))])
        .await;
    assert_eq!((again[0].1.created, again[0].1.unchanged), (0, 1));
}
