//! Video visits over HTTP, signed in as people are: the room's page of a video appointment
//! opens to its practitioner (with relay-only ICE servers and TURN credentials that verify
//! against the shared secret, in the TURN REST API scheme) and to its patient, not to a
//! practitioner who is not in the appointment, not an hour early and not for an in-person
//! appointment; its WebSocket takes this node's pages only (Origin); and the join link
//! reaches the booked Appointment itself. The call itself, through a real TURN server, is
//! `tests/browser/telehealth.test.mjs`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Db, Node};
use crate::identity::{Browser, create_user};

const SECRET: &str = "turn-shared-secret";

async fn put(node: &Node, path: &str, body: Value) {
    let (s, _, b) = node.put(path, &body).await;
    assert!(s.is_success(), "{path}: {s} {b}");
}

fn at(minutes: i64) -> String {
    #[allow(clippy::disallowed_methods)] // The test's own appointments, around the real now.
    let now = time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes);
    now.replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn appointment(id: &str, kind: &str, from: i64, to: i64) -> Value {
    json!({"resourceType": "Appointment", "id": id, "status": "booked",
        "appointmentType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": kind}]},
        "start": at(from), "end": at(to),
        "participant": [{"actor": {"reference": "Patient/ada"}, "status": "accepted"},
                        {"actor": {"reference": "Practitioner/gp"}, "status": "accepted"}]})
}

/// The TURN password for `username` (HMAC-SHA1, base64), by openssl.
fn turn_password(username: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("openssl dgst -sha1 -hmac {SECRET} -binary | base64"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(username.as_bytes())
        .unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string()
}

async fn handshake(b: &Browser, path: &str, origin: &str) -> StatusCode {
    b.http
        .get(format!("{}{path}", b.base))
        .header("cookie", b.cookie_header())
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("origin", origin)
        .send()
        .await
        .unwrap()
        .status()
}

async fn video_rooms(db: Db) {
    let node = Node::start_with_env(
        db,
        &[
            (
                "MEDMESH_TELEHEALTH_TURN_URLS",
                "turn:127.0.0.1:3478?transport=udp",
            ),
            ("MEDMESH_TELEHEALTH_TURN_SECRET", SECRET),
            ("MEDMESH_TELEHEALTH_ICE_POLICY", "relay"),
        ],
    )
    .await;
    put(
        &node,
        "Organization/h",
        json!({"resourceType": "Organization", "id": "h", "name": "Clinic"}),
    )
    .await;
    put(
        &node,
        "Practitioner/gp",
        json!({"resourceType": "Practitioner", "id": "gp", "name": [{"family": "Ortega"}]}),
    )
    .await;
    put(
        &node,
        "Practitioner/other",
        json!({"resourceType": "Practitioner", "id": "other", "name": [{"family": "Other"}]}),
    )
    .await;
    put(
        &node,
        "Patient/ada",
        json!({"resourceType": "Patient", "id": "ada", "name": [{"family": "Bookwell"}],
        "generalPractitioner": [{"reference": "Practitioner/other"}]}),
    )
    .await;
    put(&node, "Appointment/v1", appointment("v1", "VR", 5, 25)).await;
    put(
        &node,
        "Appointment/later",
        appointment("later", "VR", 60, 80),
    )
    .await;
    put(
        &node,
        "Appointment/office",
        appointment("office", "AMB", 5, 25),
    )
    .await;
    let (_, gp_totp) = create_user(
        &node,
        "practitioner",
        "gp",
        &[
            "--practitioner",
            "gp",
            "--organization",
            "h",
            "--verification",
            "verified",
        ],
    );
    let (_, other_totp) = create_user(
        &node,
        "practitioner",
        "other",
        &[
            "--practitioner",
            "other",
            "--organization",
            "h",
            "--verification",
            "verified",
        ],
    );
    create_user(&node, "patient", "ada", &["--patient", "ada"]);

    let mut gp = Browser::new(&node);
    gp.login("gp", gp_totp.as_deref()).await;
    let (s, _, page) = gp.get("/visits/v1").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let ice = page
        .split("<script type=\"application/json\" id=\"ice-config\">")
        .nth(1)
        .and_then(|r| r.split("</script>").next())
        .unwrap();
    let ice: Value = serde_json::from_str(ice).unwrap();
    assert_eq!(ice["iceTransportPolicy"], "relay");
    let server = &ice["iceServers"][0];
    assert_eq!(server["urls"][0], "turn:127.0.0.1:3478?transport=udp");
    let username = server["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    #[allow(clippy::disallowed_methods)] // Comparing with the real clock the node used.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let ttl = expiry.parse::<i64>().unwrap() - now;
    assert!((890..=905).contains(&ttl), "short-lived: {ttl} s");
    assert!(
        !user.contains("gp") && !user.contains("Ortega"),
        "no name: {user}"
    );
    assert_eq!(server["credential"], turn_password(username).as_str());

    // Its WebSocket: this node's pages only.
    assert_eq!(
        handshake(&gp, "/visits/v1/signal", &node.base).await,
        StatusCode::SWITCHING_PROTOCOLS
    );
    assert_eq!(
        handshake(&gp, "/visits/v1/signal", "http://evil.example").await,
        StatusCode::FORBIDDEN
    );

    // The patient's own page opens; an hour early it does not; nor for an office visit.
    let mut ada = Browser::new(&node);
    ada.login("ada", None).await;
    let (s, _, _) = ada.get("/visits/v1").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, page) = ada.get("/visits/later").await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(page.contains("opens ten minutes before"), "{page}");
    let (s, _, page) = ada.get("/visits/office").await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(page.contains("not a video visit"), "{page}");

    // The patient's GP reaches her record, but is not in this appointment: no room for him,
    // and no WebSocket.
    let mut other = Browser::new(&node);
    other.login("other", other_totp.as_deref()).await;
    let (s, _, _) = other.get("/visits/v1").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        handshake(&other, "/visits/v1/signal", &node.base).await,
        StatusCode::NOT_FOUND
    );
}

mod video_rooms {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::video_rooms(crate::harness::Db::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::video_rooms(crate::harness::Db::Postgres).await;
    }
}
