//! Key administration over the real SQLite adapter: erasure destroys a patient's keys and
//! history; re-encryption seals plaintext, rebuilds blind indexes and resumes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design
#![allow(clippy::disallowed_methods)]

use medmesh_key_admin::KeyAdministration;
use medmesh_records::RecordError;
use medmesh_testkit::{SECRETS, contains, ctx, mejia, operator, raw_rows, service_at};
use serde_json::json;

#[tokio::test]
async fn erasure_destroys_the_patients_keys_and_their_whole_history() {
    let dir = tempfile::tempdir().unwrap();
    let (svc, stores) = service_at(dir.path(), true, false).await;
    let keys = KeyAdministration::new(svc.clone(), stores.records.clone(), None);
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

    let report = keys.erase_patient(&admin, &p.id).await.unwrap();
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

    let (sealer, stores) = service_at(dir.path(), true, true).await;
    let sealer = KeyAdministration::new(sealer, stores.records.clone(), None);
    let report = sealer
        .reencrypt(&sealer.permit(&operator()).unwrap(), &|_| {})
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
        .reencrypt(&sealer.permit(&operator()).unwrap(), &|_| {})
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
        .reencrypt(&sealer.permit(&operator()).unwrap(), &|_| {})
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
