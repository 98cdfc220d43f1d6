//! The tamper-evident audit log: a patient reads their own entries and checks each proof
//! with code independent of the server's (ct-merkle via medmesh-audit); a past checkpoint is
//! proven consistent with a newer one; `medmesh audit verify` passes on an intact log and
//! names the first bad entry after rows are modified, reordered, inserted or deleted directly
//! in the database.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use medmesh_audit::checkpoint::LogVerifierKey;
use medmesh_audit::merkle::{Hash, verify_consistency, verify_inclusion};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Node;
use crate::on_both_databases;

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect()
}

pub async fn log_key(node: &Node) -> LogVerifierKey {
    let key: Value = node
        .client
        .get(node.root_url("/api/audit/key"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    LogVerifierKey::from_note_key(key["noteVerifierKey"].as_str().unwrap()).unwrap()
}

pub async fn sign_checkpoint(node: &Node) -> String {
    let r = node
        .auth(node.client.post(node.root_url("/api/audit/checkpoint")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

pub fn account_token(node: &Node, role: &str, username: &str, extra: &[&str], scope: &str) -> Node {
    let mut args = vec![
        "admin",
        "create-user",
        "--role",
        role,
        "--username",
        username,
    ];
    args.extend_from_slice(extra);
    let out = node.cli_stdin(&args, "a long enough passphrase\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = node.cli(&["admin", "token", "--scope", scope, "--user", username]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    node.with_token(String::from_utf8(out.stdout).unwrap().trim())
}

/// Checks a patient-log page: the checkpoint's signature, and every entry's proof.
pub async fn check_patient_log(node: &Node, page: &Value) -> usize {
    let key = log_key(node).await;
    let head = key.open(page["checkpoint"].as_str().unwrap()).unwrap();
    let entries = page["entries"].as_array().unwrap();
    for e in entries {
        let leaf = B64.decode(e["leaf"].as_str().unwrap()).unwrap();
        let decoded: Value = serde_json::from_slice(&leaf).unwrap();
        assert_eq!(decoded, e["entry"], "the entry shown is the entry hashed");
        verify_inclusion(
            &leaf,
            e["index"].as_u64().unwrap(),
            head.size,
            &head.root,
            &hashes(&e["proof"]),
        )
        .expect("inclusion proof");
    }
    entries.len()
}

async fn patients_read_their_own_log_with_proofs(node: Node) {
    node.put("Patient/a", &json!({"resourceType": "Patient", "id": "a"}))
        .await;
    node.put("Patient/b", &json!({"resourceType": "Patient", "id": "b"}))
        .await;
    node.put(
        "Observation/oa",
        &json!({"resourceType": "Observation", "id": "oa", "status": "final",
                "code": {"text": "x"}, "subject": {"reference": "Patient/a"}}),
    )
    .await;
    assert_eq!(node.get("Observation/oa").await.0, StatusCode::OK);
    node.search("Observation?subject=Patient/a").await;

    let a = account_token(
        &node,
        "patient",
        "pat-a",
        &["--patient", "a"],
        "patient/*.rs",
    );
    let (s, _, page) = a.get_raw("/api/patients/a/audit").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let actions: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["entry"]["action"].as_str().unwrap())
        .collect();
    for want in ["update", "read", "search"] {
        assert!(actions.contains(&want), "{want} in {actions:?}");
    }
    assert!(check_patient_log(&node, &page).await >= 4);
    let event = &page["entries"][0]["auditEvent"];
    assert_eq!(event["resourceType"], "AuditEvent");
    assert!(
        !page.to_string().contains("\"code\":{\"text\":\"x\"}"),
        "no clinical content in the log"
    );

    // Another patient's log is not there for a, and b's own does not hold a's entries.
    assert_eq!(
        a.get_raw("/api/patients/b/audit").await.0,
        StatusCode::NOT_FOUND
    );
    let b = account_token(
        &node,
        "patient",
        "pat-b",
        &["--patient", "b"],
        "patient/*.rs",
    );
    let (_, _, bpage) = b.get_raw("/api/patients/b/audit").await;
    assert!(
        !bpage.to_string().contains("Observation/oa"),
        "b sees nothing of a's record"
    );
    // The node operator reads anyone's.
    assert_eq!(
        node.get_raw("/api/patients/a/audit").await.0,
        StatusCode::OK
    );

    // A past checkpoint is consistent with a later one.
    let key = log_key(&node).await;
    let old = key.open(&sign_checkpoint(&node).await).unwrap();
    node.get("Observation/oa").await;
    let new = key.open(&sign_checkpoint(&node).await).unwrap();
    assert!(new.size > old.size);
    let (s, _, proof) = node
        .get_raw(&format!(
            "/api/audit/consistency?from={}&to={}",
            old.size, new.size
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{proof}");
    verify_consistency(
        &old.root,
        old.size,
        &new.root,
        new.size,
        &hashes(&proof["proof"]),
    )
    .expect("consistency proof");
    let (s, _, _) = node
        .get_raw(&format!(
            "/api/audit/consistency?from={}&to={}",
            new.size + 1,
            new.size
        ))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // The operator can get any entry's proof.
    let (s, _, p) = node.get_raw("/api/audit/entries/0/proof").await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(
        a.get_raw("/api/audit/entries/0/proof").await.0,
        StatusCode::NOT_FOUND
    );
}

pub fn verify(node: &Node) -> (bool, String) {
    let out = node.cli(&["audit", "verify"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn audit_verify_names_the_first_tampered_entry(node: Node) {
    for i in 0..6 {
        node.put(
            &format!("Patient/p{i}"),
            &json!({"resourceType": "Patient", "id": format!("p{i}")}),
        )
        .await;
        node.get(&format!("Patient/p{i}")).await;
    }
    sign_checkpoint(&node).await;
    node.get("Patient/p1").await;
    let (ok, text) = verify(&node);
    assert!(ok, "{text}");
    assert!(text.contains("audit log OK"), "{text}");

    // Modified: an actor rewritten in place.
    let (edit, undo) = if node.is_postgres() {
        (
            "UPDATE audit_log SET entry = convert_to(replace(convert_from(entry, 'UTF8'), '\"admin\"', '\"nobody\"'), 'UTF8') WHERE leaf_index = 3",
            "UPDATE audit_log SET entry = convert_to(replace(convert_from(entry, 'UTF8'), '\"nobody\"', '\"admin\"'), 'UTF8') WHERE leaf_index = 3",
        )
    } else {
        (
            "UPDATE audit_log SET entry = CAST(replace(CAST(entry AS TEXT), '\"admin\"', '\"nobody\"') AS BLOB) WHERE leaf_index = 3",
            "UPDATE audit_log SET entry = CAST(replace(CAST(entry AS TEXT), '\"nobody\"', '\"admin\"') AS BLOB) WHERE leaf_index = 3",
        )
    };
    node.raw_sql(edit).await;
    let (ok, text) = verify(&node);
    assert!(!ok);
    assert!(text.contains("entry 3 was modified"), "{text}");
    node.raw_sql(undo).await;
    assert!(verify(&node).0, "restored");

    // Reordered: two entries swapped.
    let swap = "CREATE TABLE swapped AS SELECT leaf_index, entry FROM audit_log WHERE leaf_index IN (5, 6); \
                UPDATE audit_log SET entry = (SELECT s.entry FROM swapped s WHERE s.leaf_index = 11 - audit_log.leaf_index) WHERE leaf_index IN (5, 6); \
                DROP TABLE swapped;";
    node.raw_sql(swap).await;
    let (ok, text) = verify(&node);
    assert!(!ok);
    assert!(text.contains("entry 5 was modified, reordered"), "{text}");
    node.raw_sql(swap).await;
    assert!(verify(&node).0, "swapped back");

    // Inserted: a row appended behind the writer's back.
    node.raw_sql("INSERT INTO audit_log (leaf_index, time_micros, actor, entry, nodes) SELECT (SELECT size FROM audit_head), time_micros, actor, entry, nodes FROM audit_log WHERE leaf_index = 0").await;
    let (ok, text) = verify(&node);
    assert!(!ok);
    assert!(text.contains("inserted"), "{text}");
    node.raw_sql("DELETE FROM audit_log WHERE leaf_index = (SELECT size FROM audit_head)")
        .await;
    assert!(verify(&node).0);

    // Deleted.
    node.raw_sql("DELETE FROM audit_log WHERE leaf_index = 2")
        .await;
    let (ok, text) = verify(&node);
    assert!(!ok);
    assert!(text.contains("entry 2 is missing"), "{text}");
}

on_both_databases!(
    patients_read_their_own_log_with_proofs,
    audit_verify_names_the_first_tampered_entry,
);
