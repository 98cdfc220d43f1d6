//! Defects found by a security probe and by outside FHIR clients, each with the regression
//! test that failed before its fix: documents served so that nothing in them runs, bounded
//! searches and bodies, patients confined to their own record on write, one login-throttle
//! key, and the node's connection limits.

use reqwest::StatusCode;
use serde_json::json;

use crate::documents::{get_bytes, pdf_bytes, seed, upload_raw};
use crate::harness::Node;
use crate::on_both_databases;

/// The headers that keep a stored document from running as the node's own page.
fn assert_hardened(h: &reqwest::header::HeaderMap, disposition: &str, what: &str) {
    assert_eq!(
        h["content-security-policy"], "sandbox; default-src 'none'",
        "{what}"
    );
    assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(h["content-disposition"], disposition, "{what}");
}

async fn documents_never_run_as_the_nodes_page(node: Node) {
    seed(&node).await;
    let ctx = [("x-security-context", "Patient/pat")];
    // HTML is refused, whether claimed as HTML, as text, or not claimed at all; so is XHTML
    // sent as XML.
    let html = b"<!DOCTYPE html><html><body><script>fetch('/api/account')</script></body></html>";
    for ct in ["text/html", "text/plain", "application/octet-stream"] {
        let (s, _, b) = upload_raw(&node, html.to_vec(), ct, &ctx).await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}: {b}");
        assert_eq!(b["resourceType"], "OperationOutcome");
    }
    let xhtml = br#"<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body><script>alert(1)</script></body></html>"#;
    for ct in ["text/xml", "application/xml"] {
        let (s, _, b) = upload_raw(&node, xhtml.to_vec(), ct, &ctx).await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}: {b}");
    }
    // What is accepted is served sandboxed: text as an attachment, a PDF inline, on both the
    // FHIR read and the token-less download link.
    let (s, _, text) = upload_raw(&node, b"Hb 13.1 g/dl".to_vec(), "text/plain", &ctx).await;
    assert_eq!(s, StatusCode::CREATED, "{text}");
    let (s, _, pdf) = upload_raw(&node, pdf_bytes("x"), "application/pdf", &ctx).await;
    assert_eq!(s, StatusCode::CREATED, "{pdf}");
    for (doc, disposition) in [(&text, "attachment"), (&pdf, "inline")] {
        let id = doc["id"].as_str().unwrap();
        let (s, h, _) = get_bytes(&node, &node.url(&format!("Binary/{id}")), true).await;
        assert_eq!(s, StatusCode::OK);
        assert_hardened(&h, disposition, "read");
        let (_, _, link) = node.get_raw(&format!("/api/documents/{id}/link")).await;
        let (s, h, _) = get_bytes(&node, link["url"].as_str().unwrap(), false).await;
        assert_eq!(s, StatusCode::OK);
        assert_hardened(&h, disposition, "link");
    }
    // A FHIR JSON Binary holds whatever type its writer named; its decoded bytes are served
    // sandboxed too, as a download.
    let (s, _, inline) = node
        .post(
            "Binary",
            &json!({"resourceType": "Binary", "contentType": "text/html",
                    "securityContext": {"reference": "Patient/pat"},
                    "data": "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{inline}");
    let id = inline["id"].as_str().unwrap();
    let (s, h, _) = get_bytes(&node, &node.url(&format!("Binary/{id}")), true).await;
    assert_eq!(s, StatusCode::OK);
    assert_hardened(&h, "attachment", "inline Binary");
}

on_both_databases!(documents_never_run_as_the_nodes_page);

/// The OperationOutcome's first issue code, asserting a 400.
fn refused(status: StatusCode, body: &serde_json::Value, what: &str) -> String {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{what}");
    body["issue"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn searches_are_bounded_before_the_database(node: Node) {
    let (s, _, b) = node
        .put(
            "Patient/p1",
            &json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Smith"}]}),
        )
        .await;
    assert!(s.is_success(), "{b}");
    // A patient's read-only token is enough to send these: each once took PostgreSQL from
    // seconds to minutes to plan, or SQLite to a 500.
    let reader = node.with_token(&node.mint_token("system/*.rs"));
    let started = std::time::Instant::now();
    let repeated: String = (0..160).map(|i| format!("family=n{i}&")).collect();
    let (s, _, b) = reader.get(&format!("Patient?{repeated}")).await;
    assert_eq!(refused(s, &b, "160 x family"), "too-costly");
    let codes: String = (0..989)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let (s, _, b) = reader.get(&format!("Observation?code={codes}")).await;
    assert_eq!(refused(s, &b, "989 OR values"), "too-costly");
    let chain = "subject:Patient.organization.partof.partof.partof.partof.partof.partof.name=x";
    let (s, _, b) = reader.get(&format!("Observation?{chain}")).await;
    assert_eq!(refused(s, &b, "a 9-link chain"), "too-costly");
    let includes: String = (0..11).map(|_| "_include=Observation:subject&").collect();
    let (s, _, b) = reader.get(&format!("Observation?{includes}")).await;
    assert_eq!(refused(s, &b, "11 includes"), "too-costly");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "refusals are cheap: {:?}",
        started.elapsed()
    );
    // Within the bounds, the same kinds of search still run.
    let codes: String = (0..100)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let (s, _, b) = reader.get(&format!("Observation?code={codes}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _, b) = reader
        .get("Observation?subject:Patient.organization.name=x")
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // A modifier or sort the node cannot honour changes what the answer means: refused,
    // where it once returned every patient in an unasked-for order.
    let (s, _, b) = reader.get("Patient?family:bogus=x").await;
    assert_eq!(refused(s, &b, "family:bogus"), "not-supported");
    let (s, _, b) = reader.get("Patient?_sort=bogus").await;
    assert_eq!(refused(s, &b, "_sort=bogus"), "not-supported");
    // An unknown parameter is still ignored under lenient handling, and reported.
    let (s, _, b) = reader.get("Patient?bogus=x").await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

on_both_databases!(searches_are_bounded_before_the_database);

/// A worst case for the parser: tiny objects, so the most `Value`s per byte.
fn tiny_objects_body(bytes: usize) -> Vec<u8> {
    let item = r#"{"given":["a"]},"#;
    let mut body = String::from(r#"{"resourceType":"Patient","name":["#);
    while body.len() + item.len() + 3 < bytes {
        body.push_str(item);
    }
    body.push_str(r#"{"given":["a"]}]}"#);
    body.into_bytes()
}

/// Sends a `POST /fhir/Patient` declaring `length` bytes, writes the first megabyte, and
/// returns the first line of the node's answer: what a client sees when the node answers
/// before reading the whole body.
async fn first_answer(node: &Node, token: &str, length: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = node.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /fhir/Patient HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/fhir+json\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let _ = stream.write_all(&vec![b' '; 1024 * 1024]).await;
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

async fn bodies_are_bounded_by_what_they_cost(node: Node) {
    // A body within the byte limit but of millions of tiny values is refused unparsed.
    let body = tiny_objects_body(7 * 1024 * 1024);
    let r = node
        .auth(node.client.post(node.url("Patient")))
        .header("content-type", "application/fhir+json")
        .body(body.clone());
    let (s, _, b) = node.send(r).await;
    assert_eq!(refused(s, &b, "7 MB of tiny objects"), "too-costly");
    // The default byte limit is now 8 MiB, refused on the declared length.
    let status = first_answer(&node, &node.token, 9 * 1024 * 1024).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    // Scopes are judged before the body is read: a read-only token is refused at once,
    // while the client is still sending.
    let reader = node.mint_token("patient/*.rs");
    let status = first_answer(&node, &reader, 7 * 1024 * 1024).await;
    assert!(status.starts_with("HTTP/1.1 403"), "{status}");
    // A Bundle of more entries than the node takes in one request.
    let entries: Vec<_> = (0..1001)
        .map(|i| {
            json!({"request": {"method": "PUT", "url": format!("Basic/b{i}")},
                   "resource": {"resourceType": "Basic", "id": format!("b{i}"),
                                "code": {"text": "x"}}})
        })
        .collect();
    let (s, _, b) = node
        .post_raw(
            "/fhir",
            &json!({"resourceType": "Bundle", "type": "batch", "entry": entries}),
        )
        .await;
    assert_eq!(refused(s, &b, "1001 entries"), "too-costly");
    // A resource that would fan out into too many index entries is refused.
    let names: Vec<_> = (0..2000)
        .map(|i| json!({"given": [format!("Abcdefghijklmnopqrstuvwxyz{i:05}")]}))
        .collect();
    let (s, _, b) = node
        .post(
            "Patient",
            &json!({"resourceType": "Patient", "name": names}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    // Eight worst-case bodies at once keep the node's memory within a stated bound: four
    // past the value bound, and four just under it (parsed, validated, then refused for
    // their index).
    let parsed = tiny_objects_body(1_050_000);
    let before = node.peak_rss();
    let mut sends = Vec::new();
    for i in 0..8 {
        let r = node
            .auth(node.client.post(node.url("Patient")))
            .header("content-type", "application/fhir+json")
            .body(if i % 2 == 0 {
                body.clone()
            } else {
                parsed.clone()
            });
        sends.push(node.send(r));
    }
    for (i, (s, _, b)) in futures::future::join_all(sends)
        .await
        .into_iter()
        .enumerate()
    {
        if i % 2 == 0 {
            refused(s, &b, "concurrent, past the value bound");
        } else {
            // Sixty thousand copies of one name are a valid Patient.
            assert!(
                s == StatusCode::CREATED || s == StatusCode::BAD_REQUEST,
                "{s}"
            );
        }
    }
    let growth = node.peak_rss().saturating_sub(before);
    assert!(
        growth < 256 * 1024 * 1024,
        "8 concurrent 7 MB bodies grew the node's peak memory by {} MiB",
        growth >> 20
    );
}

on_both_databases!(bodies_are_bounded_by_what_they_cost);

/// Reads until the peer closes or `limit` passes; returns what came and whether it closed.
async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    limit: std::time::Duration,
) -> (String, bool) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into(), false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_and_silent_ones_closed() {
    use tokio::io::AsyncWriteExt;
    let node = Node::start_with_env(
        crate::harness::Db::Sqlite,
        &[
            ("MEDMESH_MAX_CONNECTIONS", "16"),
            ("MEDMESH_HEADER_READ_TIMEOUT", "1"),
            ("MEDMESH_IDLE_TIMEOUT", "2"),
        ],
    )
    .await;
    let addr = node.base.trim_start_matches("http://").to_string();
    // Forty connections that never send a byte: past the cap they are answered 503 at once;
    // the rest are closed when their header deadline passes.
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let mut busy = 0;
    for s in &mut silent {
        let (got, closed) = read_until_closed(s, std::time::Duration::from_secs(10)).await;
        assert!(closed, "a silent connection stayed open: {got:?}");
        if got.starts_with("HTTP/1.1 503") {
            assert!(got.contains("Retry-After: 1"), "{got}");
            busy += 1;
        }
    }
    assert!(
        busy >= 24,
        "only {busy} of 40 connections were refused at the cap"
    );
    // Headers that dribble in are cut off at the deadline.
    let mut dribbler = tokio::net::TcpStream::connect(&addr).await.unwrap();
    dribbler
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let (_, closed) = read_until_closed(&mut dribbler, std::time::Duration::from_secs(10)).await;
    assert!(closed, "dribbled headers kept the connection");
    // A body that stalls mid-way is closed once the connection is idle.
    let mut staller = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /fhir/Patient HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/fhir+json\r\nContent-Length: 1000\r\n\r\n{{\"resourceType\"",
        node.token
    );
    staller.write_all(head.as_bytes()).await.unwrap();
    let (_, closed) = read_until_closed(&mut staller, std::time::Duration::from_secs(15)).await;
    assert!(closed, "a stalled body kept the connection");
    // And the node still answers.
    let (s, _, _) = node.get_raw("/healthz").await;
    assert_eq!(s, StatusCode::OK);
}

async fn sigterm_drains_and_exits_cleanly(mut node: Node) {
    let (s, _, b) = node
        .put(
            "Patient/p1",
            &json!({"resourceType": "Patient", "id": "p1"}),
        )
        .await;
    assert!(s.is_success(), "{b}");
    let status = node.terminate();
    assert!(status.success(), "serve exited with {status:?} on SIGTERM");
    let log = node.log();
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("medmesh stopped"), "{log}");
}

on_both_databases!(sigterm_drains_and_exits_cleanly);

async fn tokens_past_the_lifetime_cap_are_refused(node: Node) {
    // The CLI will not mint one...
    let out = node.cli(&["admin", "token", "--scope", "system/*.*", "--ttl", "100y"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("max_token_lifetime"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ...and a node refuses one minted where the cap was higher (a copied key, an old
    // setting), however well it is signed.
    let out = node
        .command_with_env("MEDMESH_MAX_TOKEN_LIFETIME", "2592000")
        .args(["admin", "token", "--scope", "system/*.*", "--ttl", "29days"])
        .args(node.store_args())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let long = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (s, _, _) = node.with_token(&long).get("Patient").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = node.get("Patient").await;
    assert_eq!(s, StatusCode::OK);
}

on_both_databases!(tokens_past_the_lifetime_cap_are_refused);

/// A token for one patient's compartment, minted by the CLI.
fn patient_context_token(node: &Node, patient: &str) -> Node {
    let out = node.cli(&[
        "admin",
        "token",
        "--scope",
        "patient/*.cruds",
        "--patient",
        patient,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    node.with_token(String::from_utf8(out.stdout).unwrap().trim())
}

async fn a_patient_cannot_write_into_another_patients_record(node: Node) {
    for id in ["p1", "p2"] {
        let (s, _, b) = node
            .put(
                &format!("Patient/{id}"),
                &json!({"resourceType": "Patient", "id": id}),
            )
            .await;
        assert!(s.is_success(), "{b}");
    }
    let p1 = patient_context_token(&node, "p1");
    let observation = |performer: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "mood"},
               "subject": {"reference": "Patient/p1"},
               "performer": [{"reference": performer}]})
    };
    // Each of these names p2 on a path of the patient CompartmentDefinition.
    let (s, _, b) = p1.post("Observation", &observation("Patient/p2")).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "performer: {b}");
    let (s, _, b) = p1
        .post(
            "CareTeam",
            &json!({"resourceType": "CareTeam", "subject": {"reference": "Patient/p1"},
                    "participant": [{"member": {"reference": "Patient/p2"}}]}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "participant: {b}");
    let (s, _, b) = p1
        .put(
            "Patient/p1",
            &json!({"resourceType": "Patient", "id": "p1",
                    "link": [{"other": {"reference": "Patient/p2"}, "type": "seealso"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "link: {b}");
    // Within their own record, the patient still writes.
    let (s, _, b) = p1.post("Observation", &observation("Patient/p1")).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // Nothing of p1's reached p2's record, and p2 cannot read p1.
    let (s, _, everything) = node.get("Patient/p2/$everything").await;
    assert_eq!(s, StatusCode::OK);
    let types: Vec<&str> = everything["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Patient"], "{everything}");
    let p2 = patient_context_token(&node, "p2");
    assert_eq!(p2.get("Patient/p1").await.0, StatusCode::NOT_FOUND);
}

on_both_databases!(a_patient_cannot_write_into_another_patients_record);
