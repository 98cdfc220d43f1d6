//! The HL7 v2 interface engine over MLLP, end to end: what was acknowledged survives
//! `kill -9`, a sender resending after the crash gets every message applied once, and the
//! stored messages reveal no patient in the database file.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::at_rest::{database_bytes, holds};
use crate::harness::{Db, Node};

const FAMILY: &str = "Quixotrelle";

/// A node with these settings, accepting MLLP.
async fn mllp_node(db: Db, settings: &str) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("medmesh.toml");
    std::fs::write(&config, settings).unwrap();
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

/// A node with one sender allowed from loopback, accepting MLLP.
async fn engine_node(db: Db) -> (Node, tempfile::TempDir) {
    // A channel to a destination that is never up: its queue keeps what it is given, sealed.
    mllp_node(
        db,
        "[[hl7_sender]]\nname = \"hospital\"\naddresses = [\"127.0.0.1\"]\n\
         [[hl7_channel]]\nname = \"down\"\ndestination = \"127.0.0.1:9\"\nmessage_types = [\"ADT\"]\n",
    )
    .await
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
    let acks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = acks.clone();
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
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                None => break,
            }
        }
        acked
    });
    // Kill it once a few dozen messages are acknowledged, mid-stream. (Counting applied
    // patients instead raced: the 30th can be applied before its ACK reaches the sender.)
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acks.load(std::sync::atomic::Ordering::SeqCst) < 30 {
        assert!(
            std::time::Instant::now() < deadline,
            "messages are not being acknowledged"
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

/// A sender that sends the same message on two connections at once (a resend racing its
/// original) gets AA on both, and the message is stored and applied once: a message is stored
/// in the transaction that applies it, and the one that loses the race falls back to the
/// path that answers a resend.
async fn a_message_sent_twice_at_once_is_applied_once(db: Db) {
    let (node, _config) = engine_node(db).await;
    let addr = node.mllp.clone().unwrap();
    let total = 40;
    let mut connections = Vec::new();
    for _ in 0..2 {
        connections.push(TcpStream::connect(&addr).await.unwrap());
    }
    let [mut first, mut second]: [TcpStream; 2] = connections.try_into().unwrap();
    for i in 0..total {
        let message = admission(1000 + i);
        let (a, b) = tokio::join!(send(&mut first, &message), send(&mut second, &message));
        let expected = ("AA".to_string(), format!("KILL-{}", 1000 + i));
        assert_eq!(a.as_ref(), Some(&expected), "first connection, message {i}");
        assert_eq!(
            b.as_ref(),
            Some(&expected),
            "second connection, message {i}"
        );
    }
    for i in 0..total {
        assert_eq!(patients_with(&node, 1000 + i).await, 1, "message {i}");
    }
    assert_eq!(
        node.sql_i64("SELECT COUNT(*) FROM hl7_messages WHERE status = 'applied'")
            .await,
        total as i64
    );
    assert_eq!(
        node.sql_i64("SELECT COUNT(*) FROM hl7_messages").await,
        total as i64
    );
}

mod a_message_sent_twice_at_once_is_applied_once {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_message_sent_twice_at_once_is_applied_once(super::Db::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_message_sent_twice_at_once_is_applied_once(super::Db::Postgres).await
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
            "SELECT COUNT(*) FROM notifications WHERE patient_id = '{patient}' AND kind = 'results' \
             AND message = 'New results at medmesh'"
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

/// A downstream MLLP system: every frame it receives is passed on, and committed (CA).
async fn downstream() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(2).position(|w| w == [0x1C, 0x0D]) {
                        let frame: Vec<u8> = buf.drain(..end + 2).collect();
                        let text = String::from_utf8_lossy(&frame[1..frame.len() - 2]).to_string();
                        let control = text
                            .split('\r')
                            .next()
                            .and_then(|msh| msh.split('|').nth(9))
                            .unwrap_or_default()
                            .to_string();
                        let ack = format!(
                            "\x0bMSH|^~\\&|RIS|HOSP|MEDMESH|NODE|20260101||ACK|C{control}|P|2.5.1\rMSA|CA|{control}\r\x1c\r"
                        );
                        if stream.write_all(ack.as_bytes()).await.is_err() {
                            return;
                        }
                        let _ = tx.send(text);
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// The next frame the downstream system received whose MSH-9 starts with `kind`; frames of
/// other kinds before it are returned too, in order.
async fn next_of(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    kind: &str,
) -> (String, Vec<String>) {
    let mut before = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {kind} arrived; before it: {before:?}"))
            .expect("the downstream system stopped");
        let msh9 = frame
            .split('\r')
            .next()
            .and_then(|msh| msh.split('|').nth(8))
            .unwrap_or_default()
            .to_string();
        if msh9.starts_with(kind) {
            return (frame, before);
        }
        before.push(frame);
    }
}

fn segment<'a>(message: &'a str, name: &str) -> Vec<&'a str> {
    message
        .split('\r')
        .find(|s| s.starts_with(&format!("{name}|")))
        .unwrap_or_default()
        .split('|')
        .collect()
}

/// Enhanced acknowledgement mode and the node's own events: a commit acknowledgement on the
/// connection, the application acknowledgement delivered to the sender's acknowledgement
/// destination (or none, as MSH-15 and MSH-16 ask); an Appointment booked, moved and
/// cancelled over FHIR reaches a downstream system as SIU^S12, S13 and S15, and a final
/// DiagnosticReport as ORU^R01, while what came in over HL7 v2 is not sent back out as an
/// event.
async fn enhanced_mode_and_node_events(db: Db) {
    let (downstream_addr, mut received) = downstream().await;
    let (node, _config) = mllp_node(
        db,
        &format!(
            "[[hl7_sender]]\nname = \"hospital\"\naddresses = [\"127.0.0.1\"]\n\
             ack_destination = \"{downstream_addr}\"\n\
             [[hl7_channel]]\nname = \"ris\"\ndestination = \"{downstream_addr}\"\n\
             inbound = false\nevents = [\"appointments\", \"results\"]\n\
             receiving_application = \"RIS\"\nreceiving_facility = \"HOSP\"\n"
        ),
    )
    .await;
    let mut stream = TcpStream::connect(node.mllp.clone().unwrap())
        .await
        .unwrap();

    // MSH-15 AL, MSH-16 AL: CA now, AA later at the acknowledgement destination.
    let enhanced = RESULT
        .replace("|HTTP-1|P|2.5.1\r", "|ENH-1|P|2.5.1|||AL|AL\r")
        .replace("H-1^^^HOSP", "ENH-1^^^HOSP");
    assert_eq!(
        send(&mut stream, &enhanced).await,
        Some(("CA".into(), "ENH-1".into()))
    );
    let (ack, _) = next_of(&mut received, "ACK").await;
    assert_eq!(segment(&ack, "MSA")[1..3], ["AA", "ENH-1"]);
    assert_eq!(segment(&ack, "MSH")[14..16], ["AL", "NE"]);
    // MSH-15 NE: nothing on the connection (the next answer is the next message's); MSH-16
    // ER: the failure's AE reaches the destination.
    let unmapped = "MSH|^~\\&|LAB|HOSP|MEDMESH|NODE|20240101120000||ZZZ^Z01|ENH-2|P|2.5.1|||NE|ER\r\
                    PID|1||ENH-2^^^HOSP^MR\r";
    let mut frame = vec![0x0B];
    frame.extend_from_slice(unmapped.as_bytes());
    frame.extend_from_slice(&[0x1C, 0x0D]);
    stream.write_all(&frame).await.unwrap();
    // MSH-15 SU and MSH-16 ER on a success: a CA, and no application acknowledgement.
    let quiet = enhanced
        .replace("|ENH-1|P|2.5.1|||AL|AL\r", "|ENH-3|P|2.5.1|||SU|ER\r")
        .replace("ORD-H1", "ORD-H3");
    assert_eq!(
        send(&mut stream, &quiet).await,
        Some(("CA".into(), "ENH-3".into()))
    );
    let (ack, _) = next_of(&mut received, "ACK").await;
    assert_eq!(segment(&ack, "MSA")[1..3], ["AE", "ENH-2"]);
    // The engine's unit of order: a resend in enhanced mode is committed again, once.
    assert_eq!(
        send(&mut stream, &enhanced).await,
        Some(("CA".into(), "ENH-1".into()))
    );

    // Node events: the patient, then an appointment booked, moved and cancelled.
    let (status, _, patient) = node
        .post(
            "/Patient",
            &serde_json::json!({"resourceType": "Patient",
                "identifier": [{"system": "urn:medmesh:hl7v2/id/HOSP", "value": "EVT-1"}],
                "name": [{"family": "Eventide", "given": ["Ada"]}], "gender": "female",
                "birthDate": "1970-02-03"}),
        )
        .await;
    assert_eq!(status, 201);
    let patient_id = patient["id"].as_str().unwrap().to_string();
    let mut appointment = serde_json::json!({"resourceType": "Appointment", "status": "booked",
        "start": "2026-03-02T09:00:00Z", "end": "2026-03-02T09:20:00Z",
        "participant": [{"actor": {"reference": format!("Patient/{patient_id}")}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/dr-1", "display": "Dr One"}, "status": "accepted"}]});
    let (status, _, created) = node.post("/Appointment", &appointment).await;
    assert_eq!(status, 201, "{created}");
    let appointment_id = created["id"].as_str().unwrap().to_string();
    let (siu, before) = next_of(&mut received, "SIU").await;
    // The result that came in over HL7 v2 was written before the appointment: had it been
    // taken for an event, it would have arrived first.
    assert!(
        before.iter().all(|f| !f.contains("ORU^R01")),
        "an inbound result was sent back out: {before:?}"
    );
    assert_eq!(segment(&siu, "MSH")[8], "SIU^S12^SIU_S12");
    assert_eq!(segment(&siu, "MSH")[4..6], ["RIS", "HOSP"]);
    assert_eq!(segment(&siu, "SCH")[2], format!("{appointment_id}^MEDMESH"));
    assert!(segment(&siu, "PID")[3].starts_with("EVT-1^^^HOSP"), "{siu}");
    assert_eq!(segment(&siu, "PID")[5], "Eventide^Ada");
    assert_eq!(segment(&siu, "TQ1")[7], "20260302090000+0000");
    appointment["id"] = serde_json::json!(appointment_id);
    appointment["start"] = serde_json::json!("2026-03-02T10:00:00Z");
    appointment["end"] = serde_json::json!("2026-03-02T10:20:00Z");
    let path = format!("/Appointment/{appointment_id}");
    assert_eq!(node.put(&path, &appointment).await.0, 200);
    let (siu, _) = next_of(&mut received, "SIU").await;
    assert_eq!(segment(&siu, "MSH")[8], "SIU^S13^SIU_S12");
    assert_eq!(segment(&siu, "TQ1")[7], "20260302100000+0000");
    appointment["status"] = serde_json::json!("cancelled");
    assert_eq!(node.put(&path, &appointment).await.0, 200);
    let (siu, _) = next_of(&mut received, "SIU").await;
    assert_eq!(segment(&siu, "MSH")[8], "SIU^S15^SIU_S12");
    assert_eq!(segment(&siu, "SCH")[25], "Cancelled");

    // A final result written over FHIR.
    let (status, _, obs) = node
        .post(
            "/Observation",
            &serde_json::json!({"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
                "subject": {"reference": format!("Patient/{patient_id}")},
                "valueQuantity": {"value": 7.8, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
                "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": "H"}]}]}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _, _) = node
        .post(
            "/DiagnosticReport",
            &serde_json::json!({"resourceType": "DiagnosticReport", "status": "final",
                "identifier": [{"system": "urn:example:lab", "value": "REP-1"}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8", "display": "Metabolic panel"}]},
                "subject": {"reference": format!("Patient/{patient_id}")},
                "effectiveDateTime": "2026-03-02T08:00:00Z",
                "result": [{"reference": format!("Observation/{}", obs["id"].as_str().unwrap())}]}),
        )
        .await;
    assert_eq!(status, 201);
    let (oru, _) = next_of(&mut received, "ORU").await;
    assert_eq!(segment(&oru, "OBR")[3], "REP-1^MEDMESH");
    assert_eq!(segment(&oru, "OBR")[25], "F");
    let obx = segment(&oru, "OBX");
    assert_eq!(
        obx[2..7],
        ["NM", "2345-7^Glucose^LN", "", "7.8", "mmol/L^mmol/L^UCUM"]
    );
    assert_eq!(obx[8], "H");
    // The channel's reads were the PDP's and are in the audit log under its own name.
    let channel_reads = node
        .sql_i64("SELECT COUNT(*) FROM audit_log WHERE actor = 'hl7v2-channel:ris'")
        .await;
    assert!(channel_reads >= 4, "{channel_reads}");
}

mod enhanced_mode_and_node_events {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::enhanced_mode_and_node_events(super::Db::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::enhanced_mode_and_node_events(super::Db::Postgres).await
    }
}

/// A merge (A40) moves the prior patient's record to the survivor: what came in over HL7 v2
/// and what was written over FHIR alike, each move an audited update.
async fn a_merge_moves_the_record(db: Db) {
    let (node, _config) = engine_node(db).await;
    let mut stream = TcpStream::connect(node.mllp.clone().unwrap())
        .await
        .unwrap();
    let admit = |id: &str| {
        format!(
            "MSH|^~\\&|ADT|HOSP|MEDMESH|NODE|20240101120000||ADT^A04^ADT_A01|ADM-{id}|P|2.5.1\r\
             PID|1||{id}^^^HOSP^MR||Mergewell^Pat||19800101|F\r"
        )
    };
    for id in ["OLD-1", "NEW-1"] {
        assert_eq!(
            send(&mut stream, &admit(id)).await,
            Some(("AA".into(), format!("ADM-{id}")))
        );
    }
    let result = RESULT
        .replace("|HTTP-1|", "|MRG-R1|")
        .replace("H-1^^^HOSP", "OLD-1^^^HOSP");
    assert_eq!(
        send(&mut stream, &result).await,
        Some(("AA".into(), "MRG-R1".into()))
    );
    let id_of = |bundle: Value| {
        bundle["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let old = id_of(
        node.search("Patient?identifier=urn:medmesh:hl7v2/id/HOSP%7COLD-1")
            .await,
    );
    let new = id_of(
        node.search("Patient?identifier=urn:medmesh:hl7v2/id/HOSP%7CNEW-1")
            .await,
    );
    let (status, _, _) = node
        .post(
            "/Condition",
            &serde_json::json!({"resourceType": "Condition",
                "code": {"text": "Asthma"}, "subject": {"reference": format!("Patient/{old}")}}),
        )
        .await;
    assert_eq!(status, 201);
    let merge = "MSH|^~\\&|ADT|HOSP|MEDMESH|NODE|20240102120000||ADT^A40^ADT_A39|MRG-1|P|2.5.1\r\
                 EVN|A40|20240102120000\r\
                 PID|1||NEW-1^^^HOSP^MR||Mergewell^Pat||19800101|F\r\
                 MRG|OLD-1^^^HOSP^MR\r";
    assert_eq!(
        send(&mut stream, merge).await,
        Some(("AA".into(), "MRG-1".into()))
    );
    for kind in ["Observation", "DiagnosticReport", "Condition"] {
        assert_eq!(
            node.total(&format!("{kind}?subject=Patient/{old}")).await,
            0,
            "{kind}"
        );
        assert!(
            node.total(&format!("{kind}?subject=Patient/{new}")).await >= 1,
            "{kind}"
        );
    }
    let (_, _, prior) = node.get(&format!("/Patient/{old}")).await;
    assert_eq!(prior["link"][0]["type"], "replaced-by");
    assert_eq!(
        prior["link"][0]["other"]["reference"],
        format!("Patient/{new}")
    );
    assert_eq!(prior["active"], false);
    // An encapsulated PDF report is kept in the document vault, as the content of the
    // DocumentReference the result wrote: sealed in the blob store, not inline.
    let pdf = crate::documents::pdf_bytes("hl7-ed");
    use base64::Engine as _;
    let ed = format!(
        "MSH|^~\\&|LAB|HOSP|MEDMESH|NODE|20240103120000||ORU^R01^ORU_R01|ED-1|P|2.5.1\r\
         PID|1||NEW-1^^^HOSP^MR||Mergewell^Pat||19800101|F\r\
         OBR|1||ORD-ED1^LAB|11502-2^Laboratory report^LN|||20240103110000\r\
         OBX|1|ED|11502-2^Laboratory report^LN||LAB^AP^PDF^Base64^{}||||||F\r",
        base64::engine::general_purpose::STANDARD.encode(&pdf)
    );
    assert_eq!(
        send(&mut stream, &ed).await,
        Some(("AA".into(), "ED-1".into()))
    );
    let docs = node
        .search(&format!("DocumentReference?subject=Patient/{new}"))
        .await;
    let doc = &docs["entry"][0]["resource"];
    let attachment = &doc["content"][0]["attachment"];
    assert!(attachment["data"].is_null(), "{doc}");
    assert_eq!(attachment["contentType"], "application/pdf");
    assert_eq!(doc["type"]["coding"][0]["code"], "11502-2");
    // No version of it ever held the bytes: they are the vault's alone.
    let doc_id = doc["id"].as_str().unwrap();
    let history = node
        .search(&format!("DocumentReference/{doc_id}/_history"))
        .await;
    let versions = history["entry"].as_array().unwrap();
    assert!(!versions.is_empty());
    for v in versions {
        assert!(
            v["resource"]["content"][0]["attachment"]["data"].is_null(),
            "a version holds the document inline"
        );
    }
    let binary = attachment["url"].as_str().unwrap().to_string();
    assert!(binary.starts_with("Binary/"), "{binary}");
    let (status, _, bytes) = crate::documents::get_bytes(&node, &node.url(&binary), true).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, pdf);
    for (file, raw) in database_bytes(&node) {
        assert!(
            !holds(&raw, crate::documents::MARKER),
            "the report is in clear in {file}"
        );
    }
    // A type the vault does not keep (RTF) is kept inline, and the outcome says so.
    let rtf = format!(
        "MSH|^~\\&|LAB|HOSP|MEDMESH|NODE|20240103120000||ORU^R01^ORU_R01|ED-2|P|2.5.1\r\
         PID|1||NEW-1^^^HOSP^MR||Mergewell^Pat||19800101|F\r\
         OBR|1||ORD-ED2^LAB|11502-2^Laboratory report^LN|||20240103110000\r\
         OBX|1|ED|11502-2^Laboratory report^LN||LAB^TEXT^RTF^Base64^{}||||||F\r",
        base64::engine::general_purpose::STANDARD.encode(b"{\\rtf1 report}")
    );
    assert_eq!(
        send(&mut stream, &rtf).await,
        Some(("AA".into(), "ED-2".into()))
    );
    let docs = node
        .search(&format!("DocumentReference?subject=Patient/{new}"))
        .await;
    let inline: Vec<&Value> = docs["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"]["content"][0]["attachment"])
        .filter(|a| a["contentType"] == "application/rtf")
        .collect();
    assert_eq!(inline.len(), 1);
    assert_eq!(
        inline[0]["data"],
        base64::engine::general_purpose::STANDARD.encode(b"{\\rtf1 report}")
    );
    // Sent again, the merge changes nothing more and is acknowledged as before.
    assert_eq!(
        send(&mut stream, merge).await,
        Some(("AA".into(), "MRG-1".into()))
    );
}

mod a_merge_moves_the_record {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_merge_moves_the_record(super::Db::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_merge_moves_the_record(super::Db::Postgres).await
    }
}
