//! The HL7 v2 interface engine over MLLP, end to end: what was acknowledged survives
//! `kill -9`, a sender resending after the crash gets every message applied once, and the
//! stored messages reveal no patient in the database file.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::at_rest::{database_bytes, holds};
use crate::harness::{Db, Node};

const FAMILY: &str = "Quixotrelle";

/// A node with one sender allowed from loopback, accepting MLLP.
async fn engine_node(db: Db) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("medmesh.toml");
    // A channel to a destination that is never up: its queue keeps what it is given, sealed.
    std::fs::write(
        &config,
        "[[hl7_sender]]\nname = \"hospital\"\naddresses = [\"127.0.0.1\"]\n\
         [[hl7_channel]]\nname = \"down\"\ndestination = \"127.0.0.1:9\"\nmessage_types = [\"ADT\"]\n",
    )
    .unwrap();
    let node = Node::start_with_env(
        db,
        &[
            ("MEDMESH_CONFIG", config.to_str().unwrap()),
            ("MEDMESH_MLLP_LISTEN", "127.0.0.1:0"),
        ],
    )
    .await;
    assert!(node.mllp.is_some(), "the node did not open MLLP");
    (node, dir)
}

fn admission(i: usize) -> String {
    format!(
        "MSH|^~\\&|ADT|HOSP|MEDMESH|NODE|20240101120000||ADT^A04^ADT_A01|KILL-{i}|P|2.5.1\r\
         PID|1||KILL-{i}^^^HOSP^MR||{FAMILY}^Patient{i}||19800101|F|||{i} Rue Quixote^^Lyon^^69001^FR\r\
         PV1|1|O|||||||||||||||||V-{i}^^^HOSP^VN|||||||||||||||||||||||||20240101110000\r"
    )
}

/// Sends one message, returns MSA-1 and MSA-2, or `None` when the connection broke first.
async fn send(stream: &mut TcpStream, message: &str) -> Option<(String, String)> {
    let mut frame = vec![0x0B];
    frame.extend_from_slice(message.as_bytes());
    frame.extend_from_slice(&[0x1C, 0x0D]);
    stream.write_all(&frame).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.ends_with(&[0x1C, 0x0D]) {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let msa = text
        .split('\r')
        .find(|s| s.starts_with("MSA|"))?
        .to_string();
    let f: Vec<&str> = msa.split('|').collect();
    Some((f[1].to_string(), f[2].to_string()))
}

async fn patients_with(node: &Node, i: usize) -> u64 {
    node.total(&format!(
        "Patient?identifier=urn:medmesh:hl7v2/id/HOSP%7CKILL-{i}"
    ))
    .await
}

async fn acknowledged_messages_survive_kill_9(db: Db) {
    let (mut node, _config) = engine_node(db).await;
    let total = 120;
    let addr = node.mllp.clone().unwrap();
    // The sender sends one message after another; the node is killed while it does.
    let sender = tokio::spawn(async move {
        let mut acked = Vec::new();
        let Ok(mut stream) = TcpStream::connect(&addr).await else {
            return acked;
        };
        for i in 0..total {
            match send(&mut stream, &admission(i)).await {
                Some((code, control)) => {
                    assert_eq!(
                        (code.as_str(), control.as_str()),
                        ("AA", format!("KILL-{i}").as_str())
                    );
                    acked.push(i);
                }
                None => break,
            }
        }
        acked
    });
    // Kill it once a few dozen messages are in, mid-stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while node.total("Patient?_summary=count").await < 30 {
        assert!(
            std::time::Instant::now() < deadline,
            "messages are not being applied"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.restart().await; // SIGKILL, then a fresh start on the same store
    let acked = sender.await.unwrap();
    assert!(
        acked.len() >= 30 && acked.len() < total,
        "acknowledged {} of {total}",
        acked.len()
    );
    for &i in &acked {
        assert_eq!(
            patients_with(&node, i).await,
            1,
            "acknowledged message {i} was lost"
        );
    }
    // The sender resends everything it has no acknowledgement for, and (as senders do after
    // a broken connection) the last few it had: each is applied exactly once.
    let mut stream = TcpStream::connect(node.mllp.as_ref().unwrap())
        .await
        .unwrap();
    let resend_from = acked.len().saturating_sub(5);
    for i in resend_from..total {
        let (code, control) = send(&mut stream, &admission(i)).await.expect("an answer");
        assert_eq!((code.as_str(), control), ("AA", format!("KILL-{i}")));
    }
    for i in 0..total {
        assert_eq!(patients_with(&node, i).await, 1, "message {i}");
    }
    assert_eq!(node.total("Patient?_summary=count").await, total as u64);
    assert_eq!(node.total("Encounter?_summary=count").await, total as u64);
    assert!(
        node.sql_i64("SELECT COUNT(*) FROM hl7_outbound WHERE status = 'pending'")
            .await
            >= total as i64,
        "every applied admission waits for the channel"
    );
    // Nothing about these patients is in the database in clear: not the resources, not the
    // stored messages, not the outbound queue.
    for (name, bytes) in database_bytes(&node) {
        for needle in [FAMILY, "Rue Quixote", "KILL-7^^^HOSP"] {
            assert!(
                !holds(&bytes, needle),
                "{needle:?} found in clear in {name}"
            );
        }
    }
}

mod acknowledged_messages_survive_kill_9 {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::acknowledged_messages_survive_kill_9(super::Db::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::acknowledged_messages_survive_kill_9(super::Db::Postgres).await
    }
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

const RESULT: &str = "MSH|^~\\&|LAB|HOSP|MEDMESH|NODE|20240101120000||ORU^R01^ORU_R01|HTTP-1|P|2.5.1\r\
    PID|1||H-1^^^HOSP^MR||Doe^Jane||19800101|F\r\
    OBR|1||ORD-H1^LAB|2345-7^Glucose^LN|||20240101110000\r\
    OBX|1|NM|2345-7^Glucose^LN||105|mg/dL|70-99|H|||F\r";

async fn post_hl7(node: &Node, credentials: Option<(&str, &str)>, body: &str) -> (u16, String) {
    let mut req = node
        .client
        .post(node.root_url("/api/hl7v2"))
        .body(body.to_string());
    if let Some((user, secret)) = credentials {
        req = req.basic_auth(user, Some(secret));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap_or_default(),
        if status == 200 {
            "x-application/hl7-v2+er7"
        } else {
            "text/plain; charset=utf-8"
        }
    );
    (status, res.text().await.unwrap())
}

fn msa(ack: &str) -> Vec<String> {
    ack.split('\r')
        .find(|s| s.starts_with("MSA|"))
        .unwrap_or_default()
        .split('|')
        .map(str::to_string)
        .collect()
}

/// The operator's commands and the HTTP route: a sender added with the CLI sends over HTTP
/// with its secret; a message with no mapping is a dead letter the CLI lists, shows (with
/// an audit entry) and replays.
async fn operations_over_cli_and_http(db: Db) {
    let (mut node, _config) = engine_node(db).await;
    let added = stdout(&node.cli(&[
        "hl7",
        "senders",
        "add",
        "lab",
        "--application",
        "LAB",
        "--http-secret",
    ]));
    let secret = added
        .lines()
        .find_map(|l| l.rsplit_once("): ").map(|(_, s)| s.trim().to_string()))
        .expect("the secret is printed once");
    let listed = stdout(&node.cli(&["hl7", "senders", "list"]));
    assert!(
        listed.contains("hospital\tsettings file") && listed.contains("lab\tadded\tLAB"),
        "{listed}"
    );
    // Senders are read at start.
    node.restart().await;
    let (status, ack) = post_hl7(&node, Some(("lab", &secret)), RESULT).await;
    assert_eq!(status, 200);
    assert_eq!(msa(&ack)[1..3], ["AA", "HTTP-1"]);
    let (_, ack) = post_hl7(&node, Some(("lab", "wrong")), RESULT).await;
    assert_eq!(msa(&ack)[1], "AR");
    // Without credentials, the loopback sender of the settings file matches by address.
    let (_, ack) = post_hl7(&node, None, &RESULT.replace("HTTP-1", "HTTP-2")).await;
    assert_eq!(msa(&ack)[1], "AA");
    let (status, _) = post_hl7(&node, None, "").await;
    assert_eq!(status, 400);
    assert_eq!(
        node.total("Observation?code=http://loinc.org%7C2345-7")
            .await,
        1
    );
    // The patient is told, in words that name no result.
    let patient = node
        .ids("Patient?identifier=urn:medmesh:hl7v2/id/HOSP%7CH-1")
        .await
        .remove(0);
    let told = node
        .sql_i64(&format!(
            "SELECT COUNT(*) FROM notifications WHERE patient_id = '{patient}' AND kind = 'result' \
             AND message = 'New results from lab are in your record.'"
        ))
        .await;
    assert!(told >= 1, "no result notification");

    // A kind with no mapping yet is kept as a dead letter.
    let mut stream = TcpStream::connect(node.mllp.as_ref().unwrap())
        .await
        .unwrap();
    let bar = "MSH|^~\\&|BILL|HOSP|||20240101||BAR^P01|DL-1|P|2.5\rEVN|P01\rPID|1||9^^^HOSP^MR\r";
    assert_eq!(send(&mut stream, bar).await.unwrap().0, "AE");
    let dead = stdout(&node.cli(&["hl7", "dead-letters", "list"]));
    let line = dead
        .lines()
        .find(|l| l.contains("DL-1"))
        .unwrap_or_else(|| panic!("{dead}"));
    assert!(line.contains("no mapping for BAR^P01"), "{line}");
    let id = line.split('\t').next().unwrap().to_string();
    let operator_entries = "SELECT COUNT(*) FROM audit_log WHERE actor = 'local-cli'";
    let before = node.sql_i64(operator_entries).await;
    let shown = stdout(&node.cli(&["hl7", "show", &id]));
    assert!(
        shown.contains("EVN|P01") && shown.contains("error: MSH-9: no mapping for BAR^P01"),
        "{shown}"
    );
    let replayed = stdout(&node.cli(&["hl7", "dead-letters", "replay", &id]));
    assert!(
        replayed.contains(&format!("{id}\tAE")) && replayed.contains("0 of 1 applied"),
        "{replayed}"
    );
    let messages = stdout(&node.cli(&["hl7", "messages", "--type", "ORU"]));
    assert_eq!(
        messages
            .lines()
            .filter(|l| l.contains("\tapplied\t"))
            .count(),
        2,
        "{messages}"
    );
    let alerts = node.cli(&["hl7", "alerts"]);
    assert!(!alerts.status.success(), "a dead letter is an alert");
    assert!(
        String::from_utf8_lossy(&alerts.stdout).contains("1 HL7 v2 messages could not be applied")
    );
    let counts = stdout(&node.cli(&["hl7", "counts"]));
    assert!(
        counts.contains("hospital\tdead\t1") && counts.contains("lab\tapplied\t1"),
        "{counts}"
    );
    assert!(!node.cli(&["hl7", "show", "no-such-id"]).status.success());
    // The view and the replay are in the audit log, as the operator's.
    assert_eq!(node.sql_i64(operator_entries).await - before, 2);
    // The same through the admin API, for node admins and the operator's tokens.
    let (status, _, _) = node
        .send(
            node.client
                .get(node.root_url("/api/hl7v2/messages?type=ORU")),
        )
        .await;
    assert_eq!(status, 401, "the API needs a token");
    let authed = |path: &str| node.auth(node.client.get(node.root_url(path)));
    let (status, _, list) = node
        .send(authed("/api/hl7v2/messages?type=ORU&status=applied"))
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["messages"].as_array().unwrap().len(), 2, "{list}");
    assert!(
        list.to_string().find("Doe").is_none(),
        "the list holds no patient data"
    );
    let (_, _, one) = node
        .send(authed(&format!("/api/hl7v2/messages/{id}")))
        .await;
    assert!(
        one["message"].as_str().unwrap().contains("BAR^P01"),
        "{one}"
    );
    assert!(
        one["outcome"]["error"]
            .as_str()
            .unwrap()
            .contains("no mapping"),
        "{one}"
    );
    let (_, _, stats) = node.send(authed("/api/hl7v2/stats")).await;
    assert!(
        stats["received_last_hour"].as_i64().unwrap() >= 3,
        "{stats}"
    );
    assert!(
        stats["senders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["sender"] == "lab" && s["status"] == "applied"),
        "{stats}"
    );
    let (status, _, replayed) = node
        .send(
            node.auth(
                node.client
                    .post(node.root_url(&format!("/api/hl7v2/messages/{id}/replay"))),
            ),
        )
        .await;
    assert_eq!(
        (status.as_u16(), replayed["ack"].as_str()),
        (200, Some("AE"))
    );
    // A clinician's or a patient's token gets no permit.
    let reader = node.with_token(&node.mint_token("system/Observation.r"));
    let (status, _, _) = reader
        .send(reader.auth(reader.client.get(reader.root_url("/api/hl7v2/messages"))))
        .await;
    assert_eq!(status, 403);
    stdout(&node.cli(&["hl7", "senders", "remove", "lab"]));
    assert!(
        !node
            .cli(&["hl7", "senders", "remove", "lab"])
            .status
            .success()
    );
}

mod operations_over_cli_and_http {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::operations_over_cli_and_http(super::Db::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::operations_over_cli_and_http(super::Db::Postgres).await
    }
}
