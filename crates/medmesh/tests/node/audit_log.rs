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
use medmesh_patient_log_verifier::{
    Page, Problem, Remembered, Verified, verify as verify_patient_log,
};

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

/// A patient account for Patient/`id` (user `pat-<id>`) and its token.
pub fn patient_token(node: &Node, id: &str) -> Node {
    account_token(
        node,
        "patient",
        &format!("pat-{id}"),
        &["--patient", id],
        "patient/*.rs",
    )
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

    let a = patient_token(&node, "a");
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
    let b = patient_token(&node, "b");
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

/// Every page of a patient's log (the first unpinned, the rest pinned to its checkpoint).
async fn patient_pages(as_patient: &Node, patient: &str, per_page: u32) -> Vec<Page> {
    let mut pages: Vec<Page> = Vec::new();
    let mut path = format!("/api/patients/{patient}/audit?_count={per_page}");
    loop {
        let (s, _, body) = as_patient.get_raw(&path).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let page: Page = serde_json::from_value(body).expect("a patient log page");
        let next = page.next_before;
        let size = page.checkpoint.split('\n').nth(1).unwrap().to_string();
        pages.push(page);
        match next {
            Some(before) => {
                path = format!(
                    "/api/patients/{patient}/audit?_count={per_page}&before={before}&checkpoint={size}"
                )
            }
            None => return pages,
        }
    }
}

/// The patient-side verdict on their log, with what they remembered from a last visit.
async fn patient_verdict(
    node: &Node,
    as_patient: &Node,
    patient: &str,
    remembered: Option<&Remembered>,
) -> Result<Verified, Problem> {
    let key = log_key(node).await;
    let pages = patient_pages(as_patient, patient, 3).await;
    let consistency = match remembered {
        Some(old) => {
            let from = key.open(&old.checkpoint).unwrap().size;
            let to = key.open(&pages[0].checkpoint).map(|h| h.size).unwrap_or(0);
            if from < to {
                let (s, _, body) = node
                    .get_raw(&format!("/api/audit/consistency?from={from}&to={to}"))
                    .await;
                assert_eq!(s, StatusCode::OK, "{body}");
                Some(serde_json::from_value::<Vec<String>>(body["proof"].clone()).unwrap())
            } else {
                None
            }
        }
        None => None,
    };
    verify_patient_log(&key, patient, &pages, remembered, consistency.as_deref())
}

/// Each tamper an operator can make with the rows through which a patient's log is found is
/// caught by the patient's own check and by `audit verify`.
async fn a_patient_proves_their_log_complete(node: Node) {
    for id in ["a", "b"] {
        node.put(
            &format!("Patient/{id}"),
            &json!({"resourceType": "Patient", "id": id}),
        )
        .await;
    }
    for _ in 0..4 {
        node.get("Patient/a").await;
    }
    node.get("Patient/b").await;
    let a = patient_token(&node, "a");
    let b = patient_token(&node, "b");
    let first = patient_verdict(&node, &a, "a", None).await.expect("intact");
    assert!(
        first.entries.len() >= 5,
        "paged by three: {}",
        first.entries.len()
    );
    assert_eq!(first.head.unwrap().count as usize, first.entries.len());
    patient_verdict(&node, &b, "b", None).await.expect("intact");
    let (ok, text) = verify(&node);
    assert!(ok, "{text}");

    // Each target is read just before its tamper: every reading of the log is itself a new
    // entry of the patient's.
    let nth = |order: &str, offset: u32| {
        format!(
            "SELECT leaf_index FROM audit_patient WHERE patient_id = 'a' ORDER BY leaf_index {order} LIMIT 1 OFFSET {offset}"
        )
    };
    for (what, target, seen_by_b) in [
        ("a deleted audit_patient row", nth("DESC", 2), false),
        ("the newest entry withheld", nth("DESC", 0), false),
        ("an entry moved to another patient", nth("ASC", 1), true),
    ] {
        let index = node.sql_i64(&target).await;
        let (tamper, undo) = if seen_by_b {
            (
                format!(
                    "UPDATE audit_patient SET patient_id = 'b' WHERE patient_id = 'a' AND leaf_index = {index}"
                ),
                format!(
                    "UPDATE audit_patient SET patient_id = 'a' WHERE patient_id = 'b' AND leaf_index = {index}"
                ),
            )
        } else {
            (
                format!(
                    "DELETE FROM audit_patient WHERE patient_id = 'a' AND leaf_index = {index}"
                ),
                format!("INSERT INTO audit_patient (patient_id, leaf_index) VALUES ('a', {index})"),
            )
        };
        node.raw_sql(&tamper).await;
        let verdict = patient_verdict(&node, &a, "a", None).await;
        assert!(
            matches!(verdict, Err(Problem::Chain(_))),
            "{what}: {verdict:?}"
        );
        if seen_by_b {
            let verdict = patient_verdict(&node, &b, "b", None).await;
            assert!(
                matches!(verdict, Err(Problem::Chain(_))),
                "{what}, b: {verdict:?}"
            );
        }
        let (ok, text) = verify(&node);
        assert!(!ok, "{what} passed audit verify");
        assert!(text.contains("patient row(s)"), "{what}: {text}");
        node.raw_sql(&undo).await;
        // The entries appended meanwhile chained on the true newest entry, not on the rows.
        patient_verdict(&node, &a, "a", None)
            .await
            .unwrap_or_else(|p| panic!("{what} undone: {p}"));
    }
    assert!(verify(&node).0, "every tamper undone");

    // The appender's own head row, bent: audit verify sees it.
    node.raw_sql(
        "UPDATE audit_chain_heads SET entry_count = entry_count - 1 WHERE patient_id = 'a'",
    )
    .await;
    let (ok, text) = verify(&node);
    assert!(!ok && text.contains("chain head row(s) differ"), "{text}");

    // Without head rows, on a log that says it had entries before the chains, the appender
    // finds each patient's newest entry through audit_patient and links onto it.
    node.raw_sql(
        "DELETE FROM audit_chain_heads; UPDATE audit_chain_start SET size = 1 WHERE id = 1",
    )
    .await;
    node.get("Patient/a").await;
    node.get("Patient/b").await;
    patient_verdict(&node, &a, "a", None)
        .await
        .expect("linked through audit_patient");
    patient_verdict(&node, &b, "b", None)
        .await
        .expect("linked through audit_patient");
}

/// The whole tail rewritten and re-signed with the node's own key: the operator puts back a
/// copy of the database taken before an access, and the log grows past what the patient
/// saw. Every proof the node serves verifies and `audit verify` passes (the database is
/// consistent in itself), but the consistency proof from the checkpoint the patient kept
/// fails.
async fn a_rewritten_tail_is_caught_against_the_kept_checkpoint(db: crate::harness::Db) {
    // A fixed log name, so the restarted node signs with the same key.
    let mut node =
        Node::start_with_env(db, &[("MEDMESH_AUDIT_ORIGIN", "rewrite.test/audit")]).await;
    node.put("Patient/a", &json!({"resourceType": "Patient", "id": "a"}))
        .await;
    node.get("Patient/a").await;
    let a = patient_token(&node, "a");
    patient_verdict(&node, &a, "a", None).await.expect("intact");
    // Outside the node: the patient's CLI with its state file, and a witness.
    let outside = tempfile::tempdir().unwrap();
    let state = outside.path().join("patient.json");
    let patient_cli = |node: &Node, token: &str| {
        run(node
            .command()
            .args([
                "audit",
                "verify-patient",
                "--node",
                &node.base,
                "--patient",
                "a",
            ])
            .args(["--state", state.to_str().unwrap()])
            .env("MEDMESH_TOKEN", token))
    };
    let witness = |node: &Node| {
        run(node
            .command()
            .args(["audit", "witness", "--log", &node.base])
            .args([
                "--state",
                outside.path().join("witness.json").to_str().unwrap(),
                "--key",
                outside.path().join("witness.key").to_str().unwrap(),
            ]))
    };
    let (ok, text) = patient_cli(&node, &a.token);
    assert!(ok && text.contains("verified: all"), "{text}");
    let (ok, text) = witness(&node);
    assert!(ok && text.contains("first run"), "{text}");
    // A C2SP tlog-cosignature/v1 line, checked with the witness key it printed.
    let (checkpoint, report) = text.split_once("witnessed ").unwrap();
    let key = report
        .rsplit("witness key ")
        .next()
        .and_then(|rest| rest.lines().next())
        .unwrap()
        .trim();
    assert!(
        report.contains("the node did not keep the cosignature"),
        "{report}"
    );
    // name+hash+base64: base64 may hold '+' itself, so split from the left.
    let public = B64.decode(key.splitn(3, '+').nth(2).unwrap()).unwrap();
    assert_eq!(public[0], 0x04, "{key}");
    let cosigned = format!("{}\n", checkpoint.trim_end());
    medmesh_audit::checkpoint::verify_cosignature(
        &cosigned,
        "medmesh-witness",
        &public[1..].try_into().unwrap(),
    )
    .unwrap_or_else(|e| panic!("{e}: {cosigned}"));
    log_key(&node)
        .await
        .open(&cosigned)
        .expect("the log's own signature still opens it");

    node.terminate();
    node.save_database();
    node.restart().await;
    let a = a.with_base(&node);
    node.get("Patient/a").await; // the access to hide
    let seen = patient_verdict(&node, &a, "a", None)
        .await
        .expect("the log with the access");
    let (ok, text) = patient_cli(&node, &a.token);
    assert!(ok && text.contains("only grew"), "{text}");
    sign_checkpoint(&node).await;
    let (ok, text) = witness(&node);
    assert!(ok && text.contains("consistent with"), "{text}");

    node.terminate();
    node.restore_database();
    node.restart().await;
    let a = a.with_base(&node);
    for _ in 0..12 {
        node.get("Patient/b").await;
    }
    sign_checkpoint(&node).await;
    let (ok, text) = verify(&node);
    assert!(ok, "the rewritten database is consistent in itself: {text}");
    let verdict = patient_verdict(&node, &a, "a", Some(&seen.remember)).await;
    assert_eq!(verdict.err(), Some(Problem::Consistency));
    let (ok, text) = patient_cli(&node, &a.token);
    assert!(
        !ok && text.contains("NOT VERIFIED: the log was rewritten"),
        "{text}"
    );
    let (ok, text) = witness(&node);
    assert!(!ok && text.contains("does not extend"), "{text}");
    // Without what it kept, the patient could not tell.
    assert!(patient_verdict(&node, &a, "a", None).await.is_ok());
}

/// Runs a command; its success and its output, both streams.
fn run(cmd: &mut std::process::Command) -> (bool, String) {
    let out = cmd.output().expect("run medmesh");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A witness server the node pushes to, and its key.
struct WitnessServer {
    child: std::process::Child,
    key: String,
    url: String,
}

impl Drop for WitnessServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `medmesh audit witness-server` on a free port, trusting `log_key`, and reads its
/// key and address from what it prints.
fn witness_server(node: &Node, dir: &std::path::Path, log_key: &str) -> WitnessServer {
    use std::io::BufRead;
    let mut child = node
        .command()
        .args(["audit", "witness-server", "--listen", "127.0.0.1:0"])
        .args(["--state", dir.join("pushed.json").to_str().unwrap()])
        .args(["--key", dir.join("pushed.key").to_str().unwrap()])
        .args(["--name", "witness.test/pushed", "--log-key", log_key])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the witness");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let key = lines.next().unwrap().unwrap();
    let url = lines.next().unwrap().unwrap();
    WitnessServer {
        child,
        key: key.strip_prefix("witness key: ").unwrap().to_string(),
        url: url.rsplit(' ').next().unwrap().to_string(),
    }
}

/// The node pushes its checkpoints to a C2SP witness and takes back the cosignature of a
/// witness that pulls; a patient's client asks for both, pinned on the first visit, and
/// fails when the node stops serving them.
async fn witnesses_cosign_and_patients_require_them(db: crate::harness::Db) {
    let mut node = Node::start_with_env(
        db,
        &[
            ("MEDMESH_AUDIT_ORIGIN", "witnessed.test/audit"),
            ("MEDMESH_AUDIT_CHECKPOINT_INTERVAL", "1"),
        ],
    )
    .await;
    node.put("Patient/a", &json!({"resourceType": "Patient", "id": "a"}))
        .await;
    node.get("Patient/a").await;
    let log = log_key(&node).await.to_note_key();
    let outside = tempfile::tempdir().unwrap();
    let pushed = witness_server(&node, outside.path(), &log);
    let pull = |node: &Node| {
        run(node
            .command()
            .args(["audit", "witness", "--log", &node.base])
            .args(["--name", "witness.test/pulls"])
            .args([
                "--state",
                outside.path().join("pulls.json").to_str().unwrap(),
                "--key",
                outside.path().join("pulls.key").to_str().unwrap(),
            ]))
    };
    sign_checkpoint(&node).await;
    // Not listed yet: the node does not keep what it does not trust.
    let (ok, text) = pull(&node);
    assert!(ok && text.contains("did not keep"), "{text}");
    let pulls = text
        .rsplit("witness key ")
        .next()
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();

    node.terminate();
    node.set_env(
        "MEDMESH_AUDIT_WITNESSES",
        &format!("{} {},{pulls}", pushed.key, pushed.url),
    );
    node.set_env("MEDMESH_AUDIT_WITNESS_QUORUM", "2");
    node.restart().await;
    let a = patient_token(&node, "a");
    node.get("Patient/a").await;
    sign_checkpoint(&node).await;
    let (ok, text) = pull(&node);
    assert!(
        ok && text.contains("the node kept the cosignature"),
        "{text}"
    );
    // The checkpointer pushes every second: wait for the pushed witness's cosignature.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let served = loop {
        let (status, _, body) = node.get_raw("/api/audit/witnesses").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["cosigned"].as_array().unwrap().len() == 2 {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no push cosigned: {body}\n{}",
            node.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(served["policy"]["quorum"], 2);

    // The patient's first visit pins the two witnesses; both cosigned this history.
    node.get("Patient/a").await;
    let seen = patient_verdict(&node, &a, "a", None)
        .await
        .expect("witnessed");
    assert_eq!(seen.witnessed.len(), 2, "{:?}", seen.witnessed);
    assert_eq!(seen.remember.witnesses.quorum, 2);
    let (ok, text) = run(node
        .command()
        .args(["audit", "verify-patient", "--node", &node.base])
        .args(["--patient", "a"])
        .env("MEDMESH_TOKEN", &a.token));
    assert!(
        ok && text.contains("witnessed by witness.test/pushed")
            && text.contains("witnessed by witness.test/pulls"),
        "{text}"
    );

    // The pushed witness loses its state (a new machine): it answers the node's next push
    // with 409 and size 0, and the node pushes again from there.
    let cosigned_size = |body: &Value, name: &str| {
        body["cosigned"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["checkpoint"].as_str())
            .find(|c| c.contains(&format!("\u{2014} {name} ")))
            .and_then(|c| c.split('\n').nth(1))
            .and_then(|n| n.parse::<u64>().ok())
    };
    let before = cosigned_size(&served, "witness.test/pushed").unwrap();
    drop(pushed);
    std::fs::remove_file(outside.path().join("pushed.json")).unwrap();
    let pushed = witness_server(&node, outside.path(), &log);
    node.terminate();
    node.set_env(
        "MEDMESH_AUDIT_WITNESSES",
        &format!("{} {},{pulls}", pushed.key, pushed.url),
    );
    node.restart().await;
    let a = a.with_base(&node);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        node.get("Patient/a").await;
        let (_, _, body) = node.get_raw("/api/audit/witnesses").await;
        if cosigned_size(&body, "witness.test/pushed").is_some_and(|s| s > before) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no push after the witness's 409: {body}\n{}",
            node.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let seen = patient_verdict(&node, &a, "a", Some(&seen.remember))
        .await
        .expect("still witnessed by both");

    // The node stops serving the cosignatures (or drops the witnesses): the pinned policy
    // still asks for them.
    node.raw_sql("DELETE FROM audit_cosignatures WHERE witness = 'witness.test/pushed'")
        .await;
    node.terminate();
    node.set_env("MEDMESH_AUDIT_WITNESSES", &pulls);
    node.set_env("MEDMESH_AUDIT_WITNESS_QUORUM", "1");
    node.restart().await;
    let a = a.with_base(&node);
    let verdict = patient_verdict(&node, &a, "a", Some(&seen.remember)).await;
    assert!(
        matches!(verdict, Err(Problem::WitnessQuorum { have: 1, need: 2 })),
        "{verdict:?}"
    );
    // A client that never pinned anything takes the node's word: one witness.
    assert!(patient_verdict(&node, &a, "a", None).await.is_ok());

    // A cosignature posted by someone the node does not list is refused.
    let (status, _, _) = node
        .send(
            node.client
                .post(node.root_url("/api/audit/cosignatures"))
                .body(sign_checkpoint(&node).await),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

mod witnesses_cosign_and_patients_require_them {
    use crate::harness::Db;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::witnesses_cosign_and_patients_require_them(Db::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::witnesses_cosign_and_patients_require_them(Db::Postgres).await
    }
}

mod a_rewritten_tail_is_caught {
    use crate::harness::Db;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_rewritten_tail_is_caught_against_the_kept_checkpoint(Db::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_rewritten_tail_is_caught_against_the_kept_checkpoint(Db::Postgres).await
    }
}

on_both_databases!(
    patients_read_their_own_log_with_proofs,
    audit_verify_names_the_first_tampered_entry,
    a_patient_proves_their_log_complete,
);
