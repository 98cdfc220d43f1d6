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
    // past the value bound, and four just under it (parsed and validated), two of them
    // over a megabyte and two under (the parse budget is by values, not bytes: a body of
    // 1,000,000 bytes once passed by it unbudgeted).
    let parsed_large = tiny_objects_body(1_050_000);
    let parsed_small = tiny_objects_body(1_000_000);
    let before = node.peak_rss();
    let mut sends = Vec::new();
    for i in 0..8 {
        let r = node
            .auth(node.client.post(node.url("Patient")))
            .header("content-type", "application/fhir+json")
            .body(match i % 4 {
                1 => parsed_large.clone(),
                3 => parsed_small.clone(),
                _ => body.clone(),
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

/// Patients with these ids, created through the API.
async fn put_patients(node: &Node, ids: &[&str]) {
    for id in ids {
        let (s, _, b) = node
            .put(
                &format!("Patient/{id}"),
                &json!({"resourceType": "Patient", "id": id}),
            )
            .await;
        assert!(s.is_success(), "{b}");
    }
}

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
    put_patients(&node, &["p1", "p2"]).await;
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

async fn outside_clients_get_conformant_answers(node: Node) {
    put_patients(&node, &["p1", "p2"]).await;
    for id in ["p1", "p2"] {
        for n in 0..3 {
            let (s, _, b) = node
                .post(
                    "Observation",
                    &json!({"resourceType": "Observation", "status": "final",
                            "code": {"text": format!("obs {n}")},
                            "subject": {"reference": format!("Patient/{id}")},
                            "note": [{"text": "x"}]}),
                )
                .await;
            assert!(s.is_success(), "{b}");
        }
    }
    // Compartment search, advertised in the CapabilityStatement.
    let b = node.search("Patient/p1/Observation").await;
    assert_eq!(b["entry"].as_array().unwrap().len(), 3, "{b}");
    assert!(
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["resource"]["subject"]["reference"] == "Patient/p1")
    );
    let (s, _, b) = node.get("Patient/p1/Practitioner").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    // Every R4 compartment: an Encounter's, a Practitioner's.
    let (s, _, b) = node
        .put(
            "Encounter/e1",
            &json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
                    "class": {"code": "AMB"}, "subject": {"reference": "Patient/p1"}}),
        )
        .await;
    assert!(s.is_success(), "{b}");
    let (s, _, b) = node
        .post(
            "Observation",
            &json!({"resourceType": "Observation", "status": "final", "code": {"text": "bp"},
                    "subject": {"reference": "Patient/p1"},
                    "encounter": {"reference": "Encounter/e1"},
                    "performer": [{"reference": "Practitioner/dr1"}]}),
        )
        .await;
    assert!(s.is_success(), "{b}");
    let in_encounter = node.search("Encounter/e1/Observation").await;
    assert_eq!(
        crate::harness::ids_of(&in_encounter).len(),
        1,
        "{in_encounter}"
    );
    let by_practitioner = node.search("Practitioner/dr1/Observation").await;
    assert_eq!(
        crate::harness::ids_of(&by_practitioner).len(),
        1,
        "{by_practitioner}"
    );
    assert_eq!(
        crate::harness::ids_of(&node.search("Encounter/e1/Encounter").await).len(),
        1
    );
    let (s, _, b) = node.get("Basic/x/Observation").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    // _elements keeps the mandatory elements.
    let b = node.search("Observation?_elements=subject&_count=1").await;
    let o = &b["entry"][0]["resource"];
    assert!(
        o["status"].is_string() && o["code"].is_object() && o["subject"].is_object(),
        "{o}"
    );
    assert!(o.get("note").is_none(), "{o}");
    // Paging: each page's self link is itself, with first and next links.
    let page1 = node.search("Observation?_count=2").await;
    let link = |b: &serde_json::Value, rel: &str| {
        b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == rel)
            .map(|l| l["url"].as_str().unwrap().to_string())
    };
    let next = link(&page1, "next").expect("a next link");
    let first = link(&page1, "first").expect("a first link");
    let fetch = |url: String| {
        let req = node.client.get(url).bearer_auth(&node.token);
        async move {
            req.send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let page2 = fetch(next.clone()).await;
    assert_ne!(link(&page2, "self"), link(&page1, "self"));
    assert_eq!(link(&page2, "self").as_deref(), Some(next.as_str()));
    assert_eq!(link(&page2, "first").as_deref(), Some(first.as_str()));
    // `previous` leads back to the same page, for the default order (keyset) and for an
    // explicit sort (offset); the first page has none.
    for query in ["Observation?_count=2", "Observation?_count=2&_sort=code"] {
        let page1 = node.search(query).await;
        assert!(link(&page1, "previous").is_none());
        let page2 = fetch(link(&page1, "next").unwrap()).await;
        let page3 = fetch(link(&page2, "next").unwrap()).await;
        let back2 = fetch(link(&page3, "previous").unwrap()).await;
        assert_eq!(
            crate::harness::ids_of(&back2),
            crate::harness::ids_of(&page2),
            "{query}"
        );
        let back1 = fetch(link(&back2, "previous").unwrap()).await;
        assert_eq!(
            crate::harness::ids_of(&back1),
            crate::harness::ids_of(&page1),
            "{query}"
        );
        let forward = fetch(link(&back1, "next").unwrap()).await;
        assert_eq!(
            crate::harness::ids_of(&forward),
            crate::harness::ids_of(&page2),
            "{query}"
        );
    }
    // A page size past the cap is said so, not silently cut.
    let big = node.search("Observation?_count=5000").await;
    assert!(crate::harness::outcome_diagnostics(&big).contains("_count was lowered to 1000"));
    // The CapabilityStatement is valid (a real implementation.url), and can be asked for small.
    let (s, _, cap) = node.get("metadata").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        cap["implementation"]["url"],
        node.url("").trim_end_matches('/')
    );
    assert_eq!(
        cap["rest"][0]["compartment"][0],
        "http://hl7.org/fhir/CompartmentDefinition/patient"
    );
    assert_eq!(cap["rest"][0]["compartment"].as_array().unwrap().len(), 5);
    let (s, _, small) = node.get("metadata?_elements=fhirVersion,format").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(small["fhirVersion"], "4.0.1");
    assert!(small.get("rest").is_none());
    assert!(small.to_string().len() < 2000);
    let (s, _, summary) = node.get("metadata?_summary=true").await;
    assert_eq!(s, StatusCode::OK, "{summary}");
}

on_both_databases!(outside_clients_get_conformant_answers);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_and_unserved_paths_answer_in_json() {
    let node = Node::start_with_env(
        crate::harness::Db::Sqlite,
        &[("MEDMESH_CORS_ALLOWED_ORIGINS", "https://app.example.org")],
    )
    .await;
    // A browser's preflight from an allowed origin, for the FHIR API and the token endpoint.
    for path in [
        "/fhir/Patient",
        "/oauth/token",
        "/.well-known/smart-configuration",
    ] {
        let r = node
            .client
            .request(reqwest::Method::OPTIONS, node.root_url(path))
            .header("origin", "https://app.example.org")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "https://app.example.org",
            "{path}"
        );
        assert!(
            r.headers()
                .get("access-control-allow-credentials")
                .is_none()
        );
    }
    // Another origin gets no grant.
    let r = node
        .client
        .get(node.url("metadata"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let (s, _, cap) = node.get("metadata").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(cap["rest"][0]["security"]["cors"], true);
    // Paths and methods the node does not serve answer JSON, never an empty body.
    let (s, h, b) = node.get_raw("/no/such/thing").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["content-type"].to_str().unwrap().contains("json"));
    assert_eq!(b["error"], "not_found");
    let r = node
        .client
        .delete(node.root_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let b: serde_json::Value = r.json().await.unwrap();
    assert_eq!(b["error"], "method_not_allowed");
    let (s, _, b) = node.get("Patient/p1/_nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["resourceType"], "OperationOutcome");
    // The front door leads to sign-in, and tells programs where the FHIR API is.
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(node.root_url("/"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection());
    assert_eq!(r.headers()["location"], "/login");
    assert!(
        r.headers()["link"]
            .to_str()
            .unwrap()
            .contains("/fhir/metadata")
    );
}

/// The `created N, updated N, unchanged N` line of `medmesh import`.
fn tally(output: &str) -> (usize, usize, usize) {
    let line = output
        .lines()
        .find(|l| l.trim_start().starts_with("created "))
        .expect("a tally line");
    let n: Vec<usize> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    (n[0], n[1], n[2])
}

async fn imports_say_what_they_did_and_where_it_went(node: Node) {
    let dir = crate::harness::shared_testdata("fhir-r4-synthea-smart-generated-sample-data");
    let file = dir.join("Liz_Conn_27c911c6-f045-4ffa-af5d-6eba57ac94b2.json");
    let bundle: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let patient_entry = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Patient")
        .unwrap();
    let full_url = patient_entry["fullUrl"].as_str().unwrap().to_string();
    let identifier = &patient_entry["resource"]["identifier"][0];
    let entries = bundle["entry"].as_array().unwrap().len();
    // Practitioners and organizations first, as a real load does.
    for info in std::fs::read_dir(&dir).unwrap() {
        let p = info.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .contains("Information")
        {
            assert!(node.import(&[p]).status.success());
        }
    }
    let map_file = node.data_dir.path().join("ids.json");
    let out = node
        .command()
        .arg("import")
        .args(node.store_args())
        .args(["--id-map", map_file.to_str().unwrap()])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    // The patient's file names a few practitioners and organizations already loaded: those
    // are matched, not created again.
    let (created, updated, unchanged) = tally(&text);
    assert_eq!(created + unchanged, entries, "{text}");
    assert!(created > entries / 2 && updated == 0, "{text}");
    let map: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&map_file).unwrap()).unwrap();
    let stored = map[&full_url]
        .as_str()
        .expect("the patient's fullUrl is mapped");
    let (s, _, p) = node.get(stored).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["identifier"][0], *identifier);
    // A re-import changes nothing, and says so.
    let out = node.import(std::slice::from_ref(&file));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(tally(&text), (0, 0, entries), "{text}");
    // An account is linked by the identifier in the file, not the id the node assigned.
    let wanted = format!(
        "identifier={}|{}",
        identifier["system"].as_str().unwrap(),
        identifier["value"].as_str().unwrap()
    );
    let out = node.cli_stdin(
        &[
            "admin",
            "create-user",
            "--role",
            "patient",
            "--username",
            "liz",
            "--patient",
            &wanted,
        ],
        "a long enough passphrase\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = node.cli(&["admin", "token", "--scope", "patient/*.rs", "--user", "liz"]);
    let liz = node.with_token(String::from_utf8(token.stdout).unwrap().trim());
    let (s, _, me) = liz.get(stored).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    let out = node.cli_stdin(
        &[
            "admin",
            "create-user",
            "--role",
            "patient",
            "--username",
            "nobody",
            "--patient",
            "identifier=urn:none|none",
        ],
        "a long enough passphrase\n",
    );
    assert!(!out.status.success());
}

on_both_databases!(imports_say_what_they_did_and_where_it_went);

async fn audit_verify_rederives_every_row_beside_the_log(node: Node) {
    use crate::audit_log::verify;
    put_patients(&node, &["p1", "p2"]).await;
    for id in ["p1", "p2"] {
        assert_eq!(node.get(&format!("Patient/{id}")).await.0, StatusCode::OK);
    }
    // A transaction (what `medmesh import` runs) names the patients it wrote for.
    let (s, _, b) = node
        .post_raw(
            "/fhir",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"request": {"method": "POST", "url": "Observation"},
                 "resource": {"resourceType": "Observation", "status": "final",
                              "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}}}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let logged = node
        .sql_i64(
            "SELECT COUNT(*) FROM audit_patient p JOIN audit_log l ON l.leaf_index = p.leaf_index \
             WHERE p.patient_id = 'p1'",
        )
        .await;
    assert!(logged >= 3, "p1's log: {logged} entries");
    // An id that names nothing is not carried into the log.
    assert_eq!(node.get("Patient/Witting").await.0, StatusCode::NOT_FOUND);
    let (ok, text) = verify(&node);
    assert!(ok, "{text}");
    let text_of_entry = if node.is_postgres() {
        "convert_from(entry, 'UTF8')"
    } else {
        "CAST(entry AS TEXT)"
    };
    let typed = node
        .sql_i64(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE {text_of_entry} LIKE '%Witting%'"
        ))
        .await;
    assert_eq!(typed, 0, "a typed id reached the log");

    // Each derived row, tampered with, is named; none hides behind a valid hash chain.
    let tamper = [
        (
            "DELETE FROM audit_patient WHERE patient_id = 'p2'",
            "patient row(s) missing",
        ),
        (
            "UPDATE audit_log SET actor = 'nobody' WHERE leaf_index = 1",
            "the actor column differs",
        ),
        (
            "UPDATE audit_log SET time_micros = time_micros + 1 WHERE leaf_index = 2",
            "the time column differs",
        ),
        (
            "INSERT INTO audit_patient (patient_id, leaf_index) VALUES ('p2', 0)",
            "patient row(s) the entry does not name",
        ),
        (
            "INSERT INTO audit_patient (patient_id, leaf_index) VALUES ('p2', 100000)",
            "is not in the log",
        ),
    ];
    for (sql, said) in tamper {
        node.raw_sql(sql).await;
        let (ok, text) = verify(&node);
        assert!(!ok, "{sql}: {text}");
        assert!(text.contains(said), "{sql}: {text}");
    }
}

on_both_databases!(audit_verify_rederives_every_row_beside_the_log);
