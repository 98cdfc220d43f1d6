//! Encryption at rest, end to end: the Synthea sample goes in through `medmesh import`, and
//! neither the SQLite file (with its WAL) nor a `pg_dump` of PostgreSQL holds any patient's
//! name, phone, address line or identifier. Then the key commands: rotation, erasure (a
//! backup taken before it no longer opens the erased data), and re-encryption.

use std::process::Command;

use reqwest::StatusCode;

use crate::harness::{Node, synthea_secrets};
use crate::on_both_databases;

/// Whether `hay` holds `needle` as stored in clear. Values of five characters or more are
/// looked for anywhere (as written and lower-cased, the index's normal form); shorter ones
/// only as JSON strings (`"Liz"`), since three random bytes turn up by chance in a few
/// megabytes of ciphertext. The index columns are also checked exactly, in SQL.
pub(crate) fn holds(hay: &[u8], needle: &str) -> bool {
    let find = |n: &[u8]| hay.windows(n.len()).any(|w| w == n);
    if needle.len() >= 5 {
        find(needle.as_bytes()) || find(needle.to_lowercase().as_bytes())
    } else {
        find(format!("\"{needle}\"").as_bytes())
    }
}

pub(crate) fn database_bytes(node: &Node) -> Vec<(String, Vec<u8>)> {
    match &node.db_url {
        None => ["medmesh.db", "medmesh.db-wal"]
            .iter()
            .filter_map(|f| {
                let p = node.data_dir.path().join(f);
                std::fs::read(&p).ok().map(|b| (f.to_string(), b))
            })
            .collect(),
        Some(url) => {
            let out = Command::new("pg_dump")
                .args(["--no-owner", "--data-only", url])
                .output()
                .expect("pg_dump must be installed for the PostgreSQL tests");
            assert!(
                out.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            vec![("pg_dump".to_string(), out.stdout)]
        }
    }
}

/// Rows of `table` whose `column` is not an envelope (`mm\x01`, key id, nonce, sealed 32
/// bytes or fewer and the tag): secrets stored in clear.
async fn unsealed_secrets(node: &Node, table: &str, column: &str) -> i64 {
    let prefix = if node.is_postgres() {
        format!("substring({column} from 1 for 3) <> '\\x6d6d01'::bytea")
    } else {
        format!("substr({column}, 1, 3) <> X'6D6D01'")
    };
    node.sql_i64(&format!(
        "SELECT COUNT(*) FROM {table} WHERE LENGTH({column}) > 0 AND ({prefix} OR LENGTH({column}) < 60)"
    ))
    .await
}

/// The node's own secrets are sealed under the KEK: token-signing keys, the audit log's key
/// and TOTP seeds. A copy of the database once minted a `system/*.*` token for the node.
pub async fn assert_node_secrets_sealed(node: &Node) {
    for (table, column) in [
        ("signing_keys", "secret"),
        ("audit_keys", "secret"),
        ("users", "totp_secret"),
    ] {
        let rows = node
            .sql_i64(&format!(
                "SELECT COUNT(*) FROM {table} WHERE LENGTH({column}) > 0"
            ))
            .await;
        assert!(rows > 0, "{table} has no {column} to check");
        assert_eq!(
            unsealed_secrets(node, table, column).await,
            0,
            "{table}.{column} holds a secret in clear"
        );
    }
}

async fn a_stolen_database_reveals_no_patient(node: Node) {
    // A practitioner (TOTP required) and a signed checkpoint, so every kind of node secret
    // is in the database.
    let out = node.cli_stdin(
        &[
            "admin",
            "create-user",
            "--role",
            "node-admin",
            "--username",
            "root",
        ],
        "a long enough passphrase\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_node_secrets_sealed(&node).await;
    node.load_synthea();
    let mut secrets = synthea_secrets();
    secrets.extend(["MRI report Tamatha Witting", "Patient is homeless"].map(String::from));
    assert!(
        secrets.len() > 60,
        "the sample's patients give many values to look for"
    );
    // The node still answers from the blinded index.
    assert_eq!(node.total("Patient?family=Conn").await, 1);
    assert_eq!(node.total("Patient?family=conn").await, 1);
    assert_eq!(node.total("Patient?given=liz").await, 1);
    assert_eq!(node.total("Patient?identifier=999-34-1238").await, 1);
    assert_eq!(node.total("Patient?telecom=555-175-3568").await, 1);
    assert_eq!(node.total("Patient?address-city=Beverly").await, 1);
    assert!(node.total("Encounter?patient.family=Conn").await > 0);
    // Free text written about a patient is identifying too: it is blind-indexed like a name.
    let conn = node.ids("Patient?family=Conn").await.remove(0);
    let free_text = ["MRI report Tamatha Witting", "Patient is homeless"];
    let (s, _, b) = node
        .post(
            "DocumentReference",
            &serde_json::json!({"resourceType": "DocumentReference", "status": "current",
                "subject": {"reference": format!("Patient/{conn}")},
                "description": free_text[0],
                "content": [{"attachment": {"contentType": "text/plain", "data": "eA=="}}]}),
        )
        .await;
    assert!(s.is_success(), "{b}");
    let (s, _, b) = node
        .post(
            "Observation",
            &serde_json::json!({"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "71802-3"}]},
                "subject": {"reference": format!("Patient/{conn}")},
                "valueString": free_text[1]}),
        )
        .await;
    assert!(s.is_success(), "{b}");
    // A care plan's words and a message's text are sealed like any record (docs/care.md,
    // docs/messaging.md).
    let care_and_messages = [
        "Dressing change for the sacral wound twice daily",
        "Please call about the biopsy result",
    ];
    let (s, _, b) = node
        .post(
            "CarePlan",
            &serde_json::json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
                "subject": {"reference": format!("Patient/{conn}")},
                "title": care_and_messages[0]}),
        )
        .await;
    assert!(s.is_success(), "{b}");
    let (s, _, b) = node
        .post(
            "Communication",
            &serde_json::json!({"resourceType": "Communication", "status": "completed",
                "subject": {"reference": format!("Patient/{conn}")},
                "payload": [{"contentString": care_and_messages[1]}]}),
        )
        .await;
    assert!(s.is_success(), "{b}");
    assert_eq!(
        node.total("DocumentReference?description=MRI%20rep").await,
        1
    );
    assert_eq!(
        node.total("Observation?value-string:exact=Patient%20is%20homeless")
            .await,
        1
    );
    assert_eq!(
        node.total("Observation?code-value-string=http://loinc.org|71802-3$Patient%20is")
            .await,
        1
    );
    // A patient's e-mail address for notifications is sealed too.
    let address = "conn.quarantined-mailbox@example.org";
    let out = node.cli(&[
        "notifications",
        "settings",
        "--patient",
        &conn,
        "--email",
        address,
        "--choose",
        "results=inbox,email",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(address));
    // So is a FHIR Subscription: its filter names the patient, its header holds a secret.
    let hook_secret = "quarantined-hook-secret";
    let (s, _, b) = node
        .post(
            "Subscription",
            &serde_json::json!({"resourceType": "Subscription", "status": "requested",
                "reason": "results", "criteria": "https://medmesh.dev/fhir/SubscriptionTopic/result",
                "_criteria": {"extension": [{
                    "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria",
                    "valueString": format!("DiagnosticReport?patient=Patient/{conn}")}]},
                "channel": {"type": "rest-hook", "endpoint": "https://hooks.example.org/results",
                            "header": [format!("Authorization: Bearer {hook_secret}")]}}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{b}");
    assert_eq!(
        unsealed_secrets(&node, "fhir_subscriptions", "body").await,
        0
    );
    // Device data: the day series' readings and the device's serial (docs/devices.md).
    let device_secrets = ["QUARANTINED-SENSOR-7731", "187.123 E 191.457"];
    let csv = format!(
        "Device,Serial Number,Device Timestamp,Record Type,Historic Glucose mg/dL\n\
         FreeStyle Libre 3,{serial},05-12-2019 16:25,0,187.123\n\
         FreeStyle Libre 3,{serial},05-12-2019 16:27,0,191.457\n",
        serial = device_secrets[0]
    );
    let (ct, body) = crate::documents::multipart(&[], "libre.csv", "text/csv", csv.as_bytes());
    let (s, _, b) = node
        .send(
            node.auth(
                node.client
                    .post(node.root_url(&format!("/api/patients/{conn}/device-data"))),
            )
            .header("content-type", ct)
            .body(body),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK, "{b}");
    let files = database_bytes(&node);
    for (name, bytes) in &files {
        for t in device_secrets {
            assert!(!holds(bytes, t), "{t:?} found in clear in {name}");
        }
        assert!(
            !holds(bytes, hook_secret),
            "a subscription's header is in clear in {name}"
        );
        assert!(!holds(bytes, address), "the address is in clear in {name}");
        for t in free_text.iter().chain(&care_and_messages) {
            assert!(!holds(bytes, t), "{t:?} found in clear in {name}");
        }
    }
    assert!(files.iter().map(|(_, b)| b.len()).sum::<usize>() > 100_000);
    for (name, bytes) in &files {
        for s in &secrets {
            assert!(!holds(bytes, s), "{s:?} found in clear in {name}");
        }
    }
    // Exactly, column by column: no index row holds a value in clear.
    for s in &secrets {
        let lower = s.to_lowercase().replace('\'', "''");
        let exact = s.replace('\'', "''");
        node.raw_sql(&format!(
            "CREATE TABLE IF NOT EXISTS leak_check (n INTEGER); \
             INSERT INTO leak_check SELECT COUNT(*) FROM idx_string WHERE norm = '{lower}' OR exact = '{exact}'; \
             INSERT INTO leak_check SELECT COUNT(*) FROM idx_token WHERE code = '{exact}' OR text = '{lower}'; \
             INSERT INTO leak_check SELECT COUNT(*) FROM idx_reference WHERE ident_value = '{exact}';"
        ))
        .await;
    }
    assert_eq!(
        node.sql_i64("SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM leak_check")
            .await,
        0,
        "an index row holds an identifying value in clear"
    );
    // Bulk export files on disk are sealed too; the download is plain NDJSON.
    let status = crate::export::kickoff(&node, "Patient/$export?_type=Patient").await;
    let manifest = crate::export::wait_for(&node, &status).await;
    let url = crate::export::output(&manifest, "Patient").unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(crate::export::lines(&node, &url).await.len(), 8);
    let mut on_disk = Vec::new();
    for job in std::fs::read_dir(node.data_dir.path().join("exports")).unwrap() {
        for f in std::fs::read_dir(job.unwrap().path()).unwrap() {
            on_disk.extend(std::fs::read(f.unwrap().path()).unwrap());
        }
    }
    assert!(on_disk.len() > 1000);
    for s in &secrets {
        assert!(!holds(&on_disk, s), "{s:?} in clear in an export file");
    }
}

async fn key_rotation_is_online_and_erasure_reaches_backups(node: Node) {
    let (s, _, p) = node
        .post(
            "Patient",
            &serde_json::json!({"resourceType": "Patient", "name": [{"family": "Erasmus", "given": ["Tobias"]}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let pid = p["id"].as_str().unwrap().to_string();
    let (s, _, o) = node
        .post(
            "Observation",
            &serde_json::json!({"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
                                "subject": {"reference": format!("Patient/{pid}")}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let oid = o["id"].as_str().unwrap().to_string();
    let (s, _, keep) = node
        .post(
            "Patient",
            &serde_json::json!({"resourceType": "Patient", "gender": "female"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let keep = keep["id"].as_str().unwrap().to_string();

    // Rotation while the node serves: every data key is re-wrapped, the old KEK goes.
    let before = std::fs::read_to_string(node.data_dir.path().join("master.key")).unwrap();
    let out = node.cli(&["keys", "rotate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = std::fs::read_to_string(node.data_dir.path().join("master.key")).unwrap();
    assert_ne!(before, after);
    assert_eq!(
        after
            .lines()
            .filter(|l| l.starts_with("medmesh-kek"))
            .count(),
        1
    );
    let status = node.cli(&["keys", "status"]);
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert_eq!(
        status.matches("data keys wrapped under").count(),
        1,
        "{status}"
    );
    assert_eq!(node.get(&format!("Patient/{pid}")).await.0, StatusCode::OK);
    assert_eq!(node.total("Patient?family=erasm").await, 1);

    // A backup taken now, with the key file of the day.
    let backup = tempfile::tempdir().unwrap();
    if node.db_url.is_none() {
        node.raw_sql(&format!(
            "VACUUM INTO '{}'",
            backup.path().join("medmesh.db").display()
        ))
        .await;
        std::fs::copy(
            node.data_dir.path().join("master.key"),
            backup.path().join("master.key"),
        )
        .unwrap();
    }

    // Erasure needs the id twice.
    let refused = node.cli(&["admin", "erase-patient", &pid, "--confirm", "someone-else"]);
    assert!(!refused.status.success());
    let out = node.cli(&["admin", "erase-patient", &pid, "--confirm", &pid]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2 resources deleted, 1 data keys destroyed"),
        "{text}"
    );
    assert_eq!(
        node.get(&format!("Observation/{oid}")).await.0,
        StatusCode::GONE
    );
    // The serving node learns of the erasure within a second (it drops its cached keys).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (s, _, _) = node.get(&format!("Patient/{pid}/_history/1")).await;
        if s == StatusCode::GONE {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "old versions still readable: {s}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(node.get(&format!("Patient/{keep}")).await.0, StatusCode::OK);
    assert_eq!(node.total("Patient?family=erasm").await, 0);
    // The erasure is audited.
    let log = node.get_raw(&format!("/api/patients/{pid}/audit")).await;
    assert!(log.2.to_string().contains("\"erase\""), "{}", log.2);

    // The backup, opened with today's key file: the KEK that wrapped its keys (the erased
    // patient's among them) is gone, so nothing in it opens. Keeping a backup readable
    // means keeping that day's key file, and erasure reaches the backup when it expires.
    if node.db_url.is_none() {
        std::fs::copy(
            node.data_dir.path().join("master.key"),
            backup.path().join("master.key"),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_medmesh"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(backup.path())
            .env("MEDMESH_LOG", "warn")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot open the data keys"), "{err}");
    }
}

on_both_databases!(
    a_stolen_database_reveals_no_patient,
    key_rotation_is_online_and_erasure_reaches_backups,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_encryption_is_sealed_by_reencrypt() {
    let node = Node::start_with_env(
        crate::harness::Db::Sqlite,
        &[("MEDMESH_ENCRYPTION_AT_REST", "false")],
    )
    .await;
    let (s, _, p) = node
        .post(
            "Patient",
            &serde_json::json!({"resourceType": "Patient", "name": [{"family": "Plaintextova"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let pid = p["id"].as_str().unwrap().to_string();
    let db = node.data_dir.clone();
    drop(node);
    let raw = [
        std::fs::read(db.path().join("medmesh.db")).unwrap(),
        std::fs::read(db.path().join("medmesh.db-wal")).unwrap_or_default(),
    ]
    .concat();
    assert!(holds(&raw, "Plaintextova"));
    // With encryption on, the node refuses to serve next to clear records...
    let refused = Command::new(env!("CARGO_BIN_EXE_medmesh"))
        .args([
            "serve",
            "--data-dir",
            &db.path().display().to_string(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("MEDMESH_ENCRYPTION_AT_REST")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("medmesh keys reencrypt"));
    // ... until they are sealed.
    let out = Command::new(env!("CARGO_BIN_EXE_medmesh"))
        .args([
            "keys",
            "reencrypt",
            "--data-dir",
            &db.path().display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("(1 were plaintext)"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-sealed"));
    // Reencrypt leaves no copy behind: not in the main file, its free pages or the WAL,
    // read straight after it exits, with nothing else touching the files.
    for file in ["medmesh.db", "medmesh.db-wal", "medmesh.db-shm"] {
        let raw = std::fs::read(db.path().join(file)).unwrap_or_default();
        assert!(!holds(&raw, "Plaintextova"), "plaintext left in {file}");
    }
    let node = Node::start_on_dir(db).await;
    assert_eq!(node.total("Patient?family=plaintext").await, 1);
    assert_eq!(node.get(&format!("Patient/{pid}")).await.0, StatusCode::OK);
    // The signing key and the audit key written in clear before encryption are sealed now,
    // and still work: the token above verified; a checkpoint signs.
    for (table, column) in [("signing_keys", "secret"), ("audit_keys", "secret")] {
        assert_eq!(unsealed_secrets(&node, table, column).await, 0, "{table}");
    }
    crate::audit_log::sign_checkpoint(&node).await;
}
