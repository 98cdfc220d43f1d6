//! Bad input: each kind gets a clear OperationOutcome, never a panic or a silent write.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Node;
use crate::on_both_databases;

async fn raw_post(node: &Node, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let r = node
        .auth(node.client.post(node.url(path)))
        .header("content-type", "application/fhir+json")
        .body(body);
    let (s, _, b) = node.send(r).await;
    (s, b)
}

/// A body of `mb` megabytes in 1 MB chunks, with no declared length.
fn futures_chunks(mb: usize) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::iter((0..mb).map(|_| Ok(vec![b' '; 1024 * 1024])))
}

fn assert_outcome(b: &Value) {
    assert_eq!(b["resourceType"], "OperationOutcome", "{b}");
    assert_eq!(b["issue"][0]["severity"], "error");
}

async fn malformed_and_hostile_bodies(node: Node) {
    // Malformed JSON.
    let (s, b) = raw_post(
        &node,
        "Patient",
        b"{\"resourceType\": \"Patient\", ".to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_outcome(&b);
    assert!(
        b["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("malformed JSON")
    );
    // Not an object.
    let (s, b) = raw_post(&node, "Patient", b"[1,2]".to_vec()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_outcome(&b);
    // Wrong resourceType for the endpoint.
    let (s, _, b) = node
        .post(
            "Patient",
            &json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["issue"][0]["expression"][0], "Patient.resourceType");
    // Unknown resource type.
    let (s, _, b) = node
        .post("Patientx", &json!({"resourceType": "Patientx"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_outcome(&b);
    // A 50 MB body is refused with 413 on its declared length, before it is read. A raw
    // client sends the headers and the first megabyte, then reads the answer.
    let status_line = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = node.base.trim_start_matches("http://").to_string();
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /fhir/Patient HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\n\r\n",
            node.token,
            50 * 1024 * 1024
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let _ = stream.write_all(&vec![b' '; 1024 * 1024]).await;
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    assert!(status_line.contains("OperationOutcome"), "{status_line}");
    // Without a declared length (chunked), the limit still holds while reading.
    let chunks = futures_chunks(50);
    let r = node
        .auth(node.client.post(node.url("Patient")))
        .header("content-type", "application/fhir+json")
        .body(reqwest::Body::wrap_stream(chunks));
    if let Ok(resp) = r.send().await {
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
    // Deep nesting: refused, and the node stays up.
    let depth = 100_000;
    let mut deep = br#"{"resourceType":"Patient","extension":"#.to_vec();
    deep.extend(std::iter::repeat_n(b'[', depth));
    deep.extend(std::iter::repeat_n(b']', depth));
    deep.push(b'}');
    let (s, b) = raw_post(&node, "Patient", deep).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        b["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("too deeply"),
        "{b}"
    );
    let nested = json!({"resourceType": "Questionnaire", "status": "draft", "item": [{"linkId": "1", "type": "group", "item": [{"linkId": "2", "type": "group", "item": [{"linkId": "3", "type": "string"}]}]}]});
    assert_eq!(
        node.post("Questionnaire", &nested).await.0,
        StatusCode::CREATED,
        "legitimate recursion is fine"
    );
    // Invalid dates, each located.
    for (field, value) in [
        ("birthDate", "1980-02-30"),
        ("birthDate", "80-01-01"),
        ("deceasedDateTime", "2020-01-01T10:00:00"),
    ] {
        let (s, _, b) = node
            .post("Patient", &json!({"resourceType": "Patient", field: value}))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{field}={value}: {b}");
        assert_eq!(b["issue"][0]["expression"][0], format!("Patient.{field}"));
    }
    // Unsupported media type and unknown search parameters under strict handling.
    let r = node
        .auth(node.client.post(node.url("Patient")))
        .header("content-type", "application/fhir+xml")
        .body("<Patient/>");
    assert_eq!(node.send(r).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = node
        .auth(node.client.get(node.url("Observation?foo=bar")))
        .header("prefer", "handling=strict");
    let (s, _, b) = node.send(r).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        b["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("foo")
    );
    let (s, _, b) = node.get("Observation?date=notadate").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_outcome(&b);
    // Nothing of the above was stored.
    assert_eq!(node.total("Patient").await, 0);
    let r = node
        .client
        .get(format!("{}/healthz", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn concurrent_conflicting_updates(node: Node) {
    let (_, _, p) = node
        .post(
            "Patient",
            &json!({"resourceType": "Patient", "name": [{"family": "Race"}]}),
        )
        .await;
    let id = p["id"].as_str().unwrap().to_string();
    // Eight writers all claim version 1: exactly one may win.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let mut body = p.clone();
        body["name"][0]["given"] = json!([format!("writer{i}")]);
        let req = node
            .auth(node.client.put(node.url(&format!("Patient/{id}"))))
            .header("if-match", "W/\"1\"")
            .json(&body);
        tasks.push(tokio::spawn(
            async move { req.send().await.map(|r| r.status()) },
        ));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| matches!(**s, StatusCode::PRECONDITION_FAILED | StatusCode::CONFLICT))
        .count();
    assert_eq!((ok, refused), (1, 7), "{statuses:?}");
    let (_, _, h) = node.get(&format!("Patient/{id}/_history")).await;
    assert_eq!(h["total"], 2);
    // Without If-Match, concurrent updates serialize: every one lands as its own version.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let mut body = p.clone();
        body["name"][0]["given"] = json!([format!("free{i}")]);
        let req = node
            .auth(node.client.put(node.url(&format!("Patient/{id}"))))
            .json(&body);
        tasks.push(tokio::spawn(
            async move { req.send().await.map(|r| r.status()) },
        ));
    }
    let mut landed = 0;
    for t in tasks {
        let s = t.await.unwrap().unwrap();
        assert!(s == StatusCode::OK || s == StatusCode::CONFLICT, "{s}");
        landed += usize::from(s == StatusCode::OK);
    }
    let (_, _, h) = node.get(&format!("Patient/{id}/_history")).await;
    assert_eq!(
        h["total"],
        2 + landed as u64,
        "no lost or duplicated versions"
    );
}

on_both_databases!(malformed_and_hostile_bodies, concurrent_conflicting_updates);
