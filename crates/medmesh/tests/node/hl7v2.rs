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
    std::fs::write(&config, "[[hl7_sender]]\nname = \"hospital\"\naddresses = [\"127.0.0.1\"]\n").unwrap();
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
    let msa = text.split('\r').find(|s| s.starts_with("MSA|"))?.to_string();
    let f: Vec<&str> = msa.split('|').collect();
    Some((f[1].to_string(), f[2].to_string()))
}

async fn patients_with(node: &Node, i: usize) -> u64 {
    node.total(&format!(
        "Patient?identifier=urn:medmesh:hl7v2:hospital/id/HOSP%7CKILL-{i}"
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
                    assert_eq!((code.as_str(), control.as_str()), ("AA", format!("KILL-{i}").as_str()));
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
        assert!(std::time::Instant::now() < deadline, "messages are not being applied");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.restart().await; // SIGKILL, then a fresh start on the same store
    let acked = sender.await.unwrap();
    assert!(acked.len() >= 30 && acked.len() < total, "acknowledged {} of {total}", acked.len());
    for &i in &acked {
        assert_eq!(patients_with(&node, i).await, 1, "acknowledged message {i} was lost");
    }
    // The sender resends everything it has no acknowledgement for, and (as senders do after
    // a broken connection) the last few it had: each is applied exactly once.
    let mut stream = TcpStream::connect(node.mllp.as_ref().unwrap()).await.unwrap();
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
    // Nothing about these patients is in the database in clear: not the resources, not the
    // stored messages.
    for (name, bytes) in database_bytes(&node) {
        for needle in [FAMILY, "Rue Quixote", "KILL-7^^^HOSP"] {
            assert!(!holds(&bytes, needle), "{needle:?} found in clear in {name}");
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
