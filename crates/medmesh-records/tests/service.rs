//! The record service over the real SQLite adapter, with an injected clock and id source.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design
// Tests make their own actors and read the wall clock.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use medmesh_auth::parse_scopes;
use medmesh_crypto::OsRandom;
use medmesh_kernel::{Actor, OperationId, VerifiedIdentity};
use medmesh_at_rest::AtRest;
use medmesh_records::{
    Clock, IdSource, RecordError, RecordService, RequestContext, ReturnPreference,
};
use medmesh_store::AuditLogStore;
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

async fn service() -> (
    Arc<RecordService>,
    Arc<dyn AuditLogStore>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let (svc, stores) = service_at(dir.path(), true, false).await;
    (svc, stores.audit, dir)
}

/// How many entries the audit log holds.
async fn audit_count(log: &Arc<dyn AuditLogStore>) -> u64 {
    log.log_head().await.unwrap().size
}

/// The PDP's key-administration permit, as the CLI's operator.
fn key_admin(svc: &RecordService) -> medmesh_policy::KeyAdmin {
    svc.key_admin(&RequestContext::new(
        Actor::local_operator(),
        OperationId::new("op"),
        None,
        "",
    ))
    .unwrap()
}

/// A service on the SQLite store in `dir`, sealing under a key file there when `encrypted`.
async fn service_at(
    dir: &std::path::Path,
    encrypted: bool,
    migrating: bool,
) -> (Arc<RecordService>, medmesh_store_sql::Stores) {
    let stores = medmesh_store_sql::open(None, dir).await.unwrap();
    let clock = Arc::new(StepClock(AtomicI64::new(1_700_000_000_000_000)));
    let mut svc = RecordService::new(
        stores.records.clone(),
        medmesh_fhir::definitions().unwrap(),
        clock.clone(),
        Arc::new(SeqIds(AtomicU64::new(1))),
    );
    if encrypted {
        let file =
            medmesh_kek::KeyFile::open_or_create(&dir.join("master.key"), &OsRandom).unwrap();
        let kek = Arc::new(medmesh_kek::LocalKek::new(file, Arc::new(OsRandom)));
        // The key ring has its own clock, so the service's stepping clock stays predictable.
        let mut at_rest = AtRest::load(
            stores.keys.clone(),
            kek,
            Arc::new(OsRandom),
            Arc::new(medmesh_records::SystemClock),
        )
        .await
        .unwrap();
        if migrating {
            at_rest = at_rest.accepting_plaintext();
        }
        svc = svc.with_encryption(Arc::new(at_rest));
    }
    (Arc::new(svc), stores)
}

fn ctx(scopes: &str) -> RequestContext {
    RequestContext::new(
        Actor::from_verified_token(VerifiedIdentity {
            subject: "tester".into(),
            scopes: parse_scopes(scopes),
            patient: None,
            role: None,
            clinician: None,
        }),
        OperationId::new("op-1"),
        None,
        "http://test/fhir",
    )
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

mod no_leaks {
    //! The no-leak property: for random care relationships, consents and labelled
    //! resources, nothing a practitioner reads, searches (with `_total`) or gets from
    //! `$everything` holds a resource the PDP's per-resource decision denies; and everything
    //! it permits is found.

    use super::*;
    use medmesh_policy::access::{PatientAccess, Principal, edges_from};
    use medmesh_policy::consent::parse_consent;
    use medmesh_policy::labels::labels_of;
    use medmesh_policy::{Clinician, ReachFacts};
    use proptest::prelude::*;
    use serde_json::Value;

    fn practitioner() -> RequestContext {
        RequestContext::new(
            Actor::from_verified_session(VerifiedIdentity {
                subject: "dr".into(),
                scopes: parse_scopes("user/*.cruds"),
                patient: None,
                role: Some(medmesh_auth::Role::Practitioner),
                clinician: Some(Clinician {
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

/// Reads raw rows straight from the SQLite file, as a thief with the file would.
async fn raw_rows(dir: &std::path::Path, sql: &str) -> Vec<Vec<u8>> {
    use sqlx::Row;
    let url = format!("sqlite://{}?mode=ro", dir.join("medmesh.db").display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            r.try_get::<Vec<u8>, _>(0)
                .or_else(|_| r.try_get::<String, _>(0).map(String::into_bytes))
                .unwrap_or_default()
        })
        .collect()
}

fn contains(haystack: &[Vec<u8>], needle: &str) -> bool {
    let n = needle.as_bytes();
    haystack
        .iter()
        .any(|h| h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n)))
}

fn mejia() -> serde_json::Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": "http://hospital.example/mrn", "value": "MRN-4711"}],
        "name": [{"family": "Quixotely", "given": ["Dulcinea"]}],
        "telecom": [{"system": "phone", "value": "555-0142"}],
        "birthDate": "1980-05-17"
    })
}

const SECRETS: [&str; 4] = ["Quixotely", "Dulcinea", "MRN-4711", "555-0142"];

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

#[tokio::test]
async fn erasure_destroys_the_patients_keys_and_their_whole_history() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, stores) = service_at(dir.path(), true, false).await;
    let admin = ctx("system/*.*");
    let p = svc.create(&admin, "Patient", mejia(), None).await.unwrap();
    let other = svc
        .create(
            &admin,
            "Patient",
            json!({"resourceType": "Patient", "gender": "male"}),
            None,
        )
        .await
        .unwrap();
    let obs = svc
        .create(
            &admin,
            "Observation",
            json!({"resourceType": "Observation", "status": "final",
                   "code": {"text": "pulse"}, "subject": {"reference": format!("Patient/{}", p.id)}}),
            None,
        )
        .await
        .unwrap();
    let mut updated = mejia();
    updated["id"] = json!(p.id);
    updated["gender"] = json!("female");
    svc.update(&admin, "Patient", &p.id, updated, None)
        .await
        .unwrap();

    let report = svc.erase_patient(&admin, &p.id).await.unwrap();
    assert_eq!(report.resources, 2);
    assert_eq!(report.keys, 1);
    assert!(matches!(
        svc.read(&admin, "Observation", &obs.id).await.unwrap_err(),
        RecordError::Gone { .. }
    ));
    // Old versions are unreadable, and history leaves them out.
    assert!(matches!(
        svc.vread(&admin, "Patient", &p.id, "1").await.unwrap_err(),
        RecordError::Erased
    ));
    let history = svc
        .history(
            &admin,
            medmesh_store::HistoryScope::Instance("Patient".into(), p.id.clone()),
            &[],
        )
        .await
        .unwrap();
    assert!(
        history["entry"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e.get("resource").is_none())
    );
    // Others are untouched; the erasure is in the audit log.
    assert!(svc.read(&admin, "Patient", &other.id).await.is_ok());
    let wrapped = raw_rows(
        dir.path(),
        &format!("SELECT wrapped FROM data_keys WHERE owner = '{}'", p.id),
    )
    .await;
    assert!(wrapped.iter().all(Vec::is_empty));
    let erasures = raw_rows(dir.path(), "SELECT entry FROM audit_log").await;
    assert!(contains(&erasures, "\"erase\""));
    drop(stores);
}

#[tokio::test]
async fn reencryption_seals_plaintext_and_rebuilds_blind_indexes_resumably() {
    let dir = tempfile::tempdir().unwrap();
    let admin = ctx("system/*.*");
    // A node from before encryption at rest.
    let (plain, _) = service_at(dir.path(), false, false).await;
    let p = plain
        .create(&admin, "Patient", mejia(), None)
        .await
        .unwrap();
    plain
        .create(
            &admin,
            "Consent",
            json!({"resourceType": "Consent", "status": "active",
                   "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
                   "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                   "patient": {"reference": format!("Patient/{}", p.id)},
                   "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
                   "provision": {"type": "permit", "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}]}, "reference": {"reference": "Practitioner/dr1"}}]}}),
            None,
        )
        .await
        .unwrap();
    drop(plain);
    let bodies = raw_rows(dir.path(), "SELECT body FROM resource_versions").await;
    assert!(contains(&bodies, "Quixotely"));

    let (sealer, _) = service_at(dir.path(), true, true).await;
    let report = sealer
        .reencrypt(&key_admin(&sealer), &|_| {})
        .await
        .unwrap();
    assert_eq!(report.bodies, 2);
    assert_eq!(report.from_plaintext, 2);
    assert_eq!(report.reindexed, 2);
    assert_eq!(report.texts, 1);
    for (table, col) in [
        ("resource_versions", "body"),
        ("idx_string", "norm"),
        ("policy_consents", "body"),
    ] {
        let rows = raw_rows(dir.path(), &format!("SELECT {col} FROM {table}")).await;
        for secret in SECRETS {
            assert!(!contains(&rows, secret), "{secret} in {table}");
        }
    }
    // A second run re-seals under fresh keys again; the data still reads and searches.
    let again = sealer
        .reencrypt(&key_admin(&sealer), &|_| {})
        .await
        .unwrap();
    assert!(!again.resumed);
    assert_eq!(again.from_plaintext, 0);
    assert_eq!(
        again.new_keys, 1,
        "one owner: the patient holds both the Patient and the Consent"
    );
    // An interrupted run (its cursor saved after the first row) carries on from there.
    let first_seq = raw_rows(
        dir.path(),
        "SELECT CAST(MIN(seq) AS TEXT) FROM resource_versions",
    )
    .await;
    let first_seq = String::from_utf8(first_seq[0].clone()).unwrap();
    let url = format!("sqlite://{}", dir.path().join("medmesh.db").display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE key_jobs SET cursor_value = ?1, state = 'running:0' WHERE name = 'reencrypt'",
    )
    .bind(first_seq.parse::<i64>().unwrap())
    .execute(&mut conn)
    .await
    .unwrap();
    let resumed = sealer
        .reencrypt(&key_admin(&sealer), &|_| {})
        .await
        .unwrap();
    assert!(resumed.resumed);
    assert_eq!(resumed.bodies, 1);
    // Keys made since the interrupted run began are that run's: none are made again.
    assert_eq!(resumed.new_keys, 0);
    let (svc, _) = service_at(dir.path(), true, false).await;
    assert_eq!(
        svc.read(&admin, "Patient", &p.id).await.unwrap().resource["name"][0]["family"],
        "Quixotely"
    );
    let found = svc
        .search(
            &admin,
            "Patient",
            &[("family".into(), "quixo".into())],
            medmesh_fhir::search::Handling::Strict,
        )
        .await
        .unwrap();
    assert_eq!(found["entry"].as_array().map(Vec::len), Some(1));
}

/// Oversight data and key administration need a permit that only the PDP issues; a clinician
/// gets none, and their attempt to read a patient's access log is itself audited as denied.
#[tokio::test]
async fn oversight_and_key_administration_need_the_pdps_permit() {
    let (svc, log_store, dir) = service().await;
    let log = medmesh_records::AuditLogService::open(
        log_store.clone(),
        "test",
        [7; 32],
        Arc::new(medmesh_records::SystemClock),
        None,
    )
    .await
    .unwrap();
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
    let before = audit_count(&log_store).await;
    assert!(matches!(
        svc.read_patient_log(&clinician, &log, "p1", None, 10).await,
        Err(RecordError::Forbidden)
    ));
    assert_eq!(
        audit_count(&log_store).await,
        before + 1,
        "the denied reading is in the log"
    );
    // The operator is given each permit.
    let _ = key_admin(&svc);
    let operator = RequestContext::new(Actor::local_operator(), OperationId::new("op"), None, "");
    assert!(svc.review_right(&operator).is_ok());
    let view = svc.audit_view(&operator, Some("p1")).unwrap();
    assert!(svc.access_map(&view).await.unwrap().is_empty());
    drop(dir);
}
