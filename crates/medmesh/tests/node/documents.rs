//! The document vault over real HTTP: raw `POST /fhir/Binary` and multipart
//! `POST /api/documents`, content sniffing, content addressing and deduplication, streamed
//! download with the digest checked, short-lived download links, and "Dr X opened your
//! document" in the patient's inbox. Blobs on disk hold no plaintext, and a tampered blob
//! never comes back as wrong bytes.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::audit_log::account_token;
use crate::harness::{Node, ids_of};
use crate::on_both_databases;

/// A small but real PDF (one empty page), with a marker that must never reach the disk in
/// clear.
pub const MARKER: &str = "MRI-REPORT-MARKER-7f3a";

pub fn pdf_bytes(extra: &str) -> Vec<u8> {
    format!(
        "%PDF-1.4\n%\u{e2}\u{e3}\u{cf}\u{d3}\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n\
         2 0 obj <</Type /Pages /Kids [3 0 R] /Count 1>> endobj\n\
         3 0 obj <</Type /Page /Parent 2 0 R /MediaBox [0 0 200 200]>> endobj\n\
         % {MARKER} {extra}\ntrailer <</Root 1 0 R>>\n%%EOF\n"
    )
    .into_bytes()
}

async fn put(node: &Node, path: &str, body: Value) {
    let (s, _, b) = node.put(path, &body).await;
    assert!(s.is_success(), "{path}: {s} {b}");
}

/// A patient with a GP (Dr Jane Smith) and a stranger practitioner.
pub async fn seed(node: &Node) {
    put(
        node,
        "Organization/h",
        json!({"resourceType": "Organization", "id": "h", "name": "General Hospital"}),
    )
    .await;
    put(
        node,
        "Practitioner/gp",
        json!({"resourceType": "Practitioner", "id": "gp",
               "name": [{"prefix": ["Dr"], "given": ["Jane"], "family": "Smith"}]}),
    )
    .await;
    put(
        node,
        "Practitioner/stranger",
        json!({"resourceType": "Practitioner", "id": "stranger"}),
    )
    .await;
    put(
        node,
        "Patient/pat",
        json!({"resourceType": "Patient", "id": "pat",
               "generalPractitioner": [{"reference": "Practitioner/gp"}]}),
    )
    .await;
}

pub fn practitioner(node: &Node, user: &str, id: &str) -> Node {
    account_token(
        node,
        "practitioner",
        user,
        &[
            "--practitioner",
            id,
            "--organization",
            "h",
            "--verification",
            "verified",
        ],
        "user/*.cruds",
    )
}

pub fn patient(node: &Node) -> Node {
    account_token(
        node,
        "patient",
        "pat",
        &["--patient", "pat"],
        "patient/*.cruds",
    )
}

/// `POST /fhir/Binary` with raw bytes.
pub async fn upload_raw(
    who: &Node,
    bytes: Vec<u8>,
    content_type: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = who
        .auth(who.client.post(who.url("Binary")))
        .header("content-type", content_type)
        .header("x-medmesh-title", "MRI report");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    who.send(req.body(bytes)).await
}

/// A GET whose body is bytes.
pub async fn get_bytes(
    who: &Node,
    url: &str,
    auth: bool,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = who.client.get(url);
    if auth {
        req = who.auth(req);
    }
    let r = req.send().await.expect("request");
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
    (status, headers, body)
}

/// A multipart/form-data body, fields first and the file last.
pub fn multipart(
    fields: &[(&str, &str)],
    file_name: &str,
    ct: &str,
    bytes: &[u8],
) -> (String, Vec<u8>) {
    let boundary = "medmesh-test-boundary-5d1c";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: {ct}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn cid_of(bytes: &[u8]) -> String {
    medmesh_crypto_cid(&Sha256::digest(bytes))
}

/// CIDv1 (raw, sha2-256, base32) of a digest, computed independently of the node.
fn medmesh_crypto_cid(digest: &[u8]) -> String {
    let mut bytes = vec![0x01, 0x55, 0x12, 0x20];
    bytes.extend_from_slice(digest);
    // RFC 4648 base32, lower case, no padding.
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::from("b");
    let (mut buf, mut bits) = (0u32, 0);
    for b in bytes {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buf >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buf << (5 - bits)) & 31) as usize] as char);
    }
    out
}

async fn the_vault_round_trip(node: Node) {
    seed(&node).await;
    let gp = practitioner(&node, "gp", "gp");
    let stranger = practitioner(&node, "stranger", "stranger");
    let me = patient(&node);
    let pdf = pdf_bytes("first");

    // The patient uploads a PDF with raw bytes; it is named by its content id.
    let (s, h, binary) = upload_raw(&me, pdf.clone(), "application/pdf", &[]).await;
    assert_eq!(s, StatusCode::CREATED, "{binary}");
    let cid = cid_of(&pdf);
    assert!(cid.starts_with("bafkrei"));
    assert_eq!(h["x-content-id"], cid.as_str());
    let id = binary["id"].as_str().unwrap().to_string();
    assert!(
        h["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/Binary/{id}"))
    );
    assert_eq!(binary["contentType"], "application/pdf");
    assert_eq!(binary["securityContext"]["reference"], "Patient/pat");
    assert!(
        binary.get("data").is_none(),
        "the bytes stay out of the resource"
    );

    // Its DocumentReference is in the patient's record.
    let docs = me.search("DocumentReference?subject=Patient/pat").await;
    assert_eq!(ids_of(&docs).len(), 1, "{docs}");
    let att = &docs["entry"][0]["resource"]["content"][0]["attachment"];
    assert_eq!(att["url"], format!("Binary/{id}"));
    assert_eq!(att["size"], pdf.len());
    assert_eq!(att["title"], "MRI report");
    assert_eq!(
        docs["entry"][0]["resource"]["identifier"][0]["value"],
        format!("urn:cid:{cid}")
    );

    // The same bytes again: a second document, one blob.
    let blobs_dir = node.data_dir.path().join("blobs");
    let before = files_under(&blobs_dir);
    assert_eq!(before.len(), 1, "{before:?}");
    let (s, _, again) = upload_raw(&me, pdf.clone(), "application/pdf", &[]).await;
    assert_eq!(s, StatusCode::CREATED, "{again}");
    assert_ne!(again["id"], binary["id"]);
    assert_eq!(
        files_under(&blobs_dir),
        before,
        "identical bytes are stored once"
    );

    // Nothing in the blob folder is in clear, and its names say nothing.
    for f in &before {
        let raw = std::fs::read(f).unwrap();
        assert!(!raw.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()));
        assert!(!raw.starts_with(b"%PDF"));
        let name = f.strip_prefix(&blobs_dir).unwrap().display().to_string();
        assert!(!name.contains("pat") && !name.contains(&cid), "{name}");
    }

    // What the bytes really are decides: an executable named a PDF is refused, and so is
    // a type the vault does not take.
    let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0rest of a program".to_vec();
    let (s, _, oo) = upload_raw(&me, elf.clone(), "application/pdf", &[]).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{oo}");
    assert_eq!(oo["resourceType"], "OperationOutcome");
    let (s, _, oo) = upload_raw(&me, elf, "application/octet-stream", &[]).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{oo}");
    let (s, _, oo) = upload_raw(&me, Vec::new(), "application/pdf", &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{oo}");
    assert_eq!(
        files_under(&blobs_dir).len(),
        1,
        "refused uploads leave nothing"
    );

    // The GP downloads it: the exact bytes, with their digest.
    let (s, h, got) = get_bytes(&gp, &gp.url(&format!("Binary/{id}")), true).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, pdf);
    assert_eq!(h["content-type"], "application/pdf");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-content-id"], cid.as_str());
    assert!(h["repr-digest"].to_str().unwrap().starts_with("sha-256=:"));
    // Asking for FHIR JSON gives the Binary resource instead.
    let (s, _, meta) = gp
        .send(
            gp.auth(gp.client.get(gp.url(&format!("Binary/{id}"))))
                .header("accept", "application/fhir+json"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(meta["resourceType"], "Binary");

    // A practitioner without a care relationship gets nothing, as if it did not exist.
    let (s, _, _) = get_bytes(&stranger, &stranger.url(&format!("Binary/{id}")), true).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = stranger.get_raw(&format!("/api/documents/{id}/link")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = upload_raw(
        &stranger,
        pdf_bytes("x"),
        "application/pdf",
        &[("x-security-context", "Patient/pat")],
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // The patient's inbox says who opened what; their own opens say nothing.
    let (_, _, inbox) = me.get_raw("/api/patients/pat/notifications").await;
    let opened: Vec<&Value> = inbox["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "document-opened")
        .collect();
    assert_eq!(opened.len(), 1, "{inbox}");
    assert_eq!(
        opened[0]["message"],
        "Dr Jane Smith opened your document \u{201c}MRI report\u{201d}"
    );
    let (_, _, mine) = get_bytes(&me, &me.url(&format!("Binary/{id}")), true).await;
    assert_eq!(mine, pdf);
    let (_, _, inbox) = me.get_raw("/api/patients/pat/notifications").await;
    assert_eq!(
        inbox["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == "document-opened")
            .count(),
        1
    );
    // The open is in the patient's own audit log.
    let (_, _, log) = me.get_raw("/api/patients/pat/audit").await;
    let reads = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["entry"]["action"] == "read"
                && e["entry"].to_string().contains(&format!("Binary/{id}"))
        })
        .count();
    assert!(reads >= 2, "{log}");

    // A download link works without a token, for a few minutes, for that document only.
    let (s, _, link) = gp.get_raw(&format!("/api/documents/{id}/link")).await;
    assert_eq!(s, StatusCode::OK, "{link}");
    let url = link["url"].as_str().unwrap().to_string();
    // The link names no patient: the path is the opaque token, whose claims say only the
    // document. (The token's base64 may hold any three letters, "pat" too: CI once failed
    // on that, so the claims are read, not the text.)
    let token = url.rsplit('/').next().unwrap();
    let claims = base64::Engine::decode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        token.split('.').nth(1).unwrap(),
    )
    .unwrap();
    let claims = String::from_utf8(claims).unwrap();
    assert!(
        !claims.contains("pat") && !url.contains("Patient"),
        "{claims}"
    );
    let (s, h, got) = get_bytes(&gp, &url, false).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, pdf);
    assert_eq!(h["content-type"], "application/pdf");
    let mut forged = url.clone();
    forged.push('x');
    let (s, _, _) = get_bytes(&gp, &forged, false).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The link's ticket is no access token.
    let ticket = url.rsplit('/').next().unwrap();
    let (s, _, _) = gp
        .send(gp.client.get(gp.url("Patient/pat")).bearer_auth(ticket))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Multipart upload, by the GP for the patient, with a type and a file name.
    let text = "Hb 13.1 g/dl\nLeukocytes 6.2\n".as_bytes();
    let (ct, body) = multipart(
        &[
            ("patient", "pat"),
            ("title", "Blood count"),
            ("type", "http://loinc.org|11502-2"),
        ],
        "lab.txt",
        "text/plain",
        text,
    );
    let (s, _, made) = gp
        .send(
            gp.auth(gp.client.post(gp.root_url("/api/documents")))
                .header("content-type", ct)
                .body(body),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    assert_eq!(made["contentType"], "text/plain");
    assert_eq!(made["contentId"], cid_of(text));
    let docref = made["documentReference"].as_str().unwrap();
    let (s, _, d) = me.get(&format!("DocumentReference/{docref}")).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["type"]["coding"][0]["code"], "11502-2");
    assert_eq!(d["author"][0]["reference"], "Practitioner/gp");
    let lab = made["binary"].as_str().unwrap();
    let (_, _, got) = get_bytes(&me, &me.url(&format!("Binary/{lab}")), true).await;
    assert_eq!(got, text);

    // A tampered blob never comes back as bytes. A document of one piece fails its check
    // before the answer starts, so the answer is a clear error, not a body that breaks off
    // (a larger one that fails later breaks off part-way).
    for f in files_under(&blobs_dir) {
        let mut raw = std::fs::read(&f).unwrap();
        let mid = raw.len() / 2;
        raw[mid] ^= 0x40;
        std::fs::write(&f, raw).unwrap();
    }
    let (s, _, got) = get_bytes(&gp, &gp.url(&format!("Binary/{id}")), true).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    let outcome: Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let (s, _, _) = get_bytes(&me, &me.url(&format!("Binary/{lab}")), true).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
}

on_both_databases!(the_vault_round_trip);

/// Bytes of the large-document test: `MEDMESH_TEST_DOCUMENT_BYTES`, default 2 GiB.
fn large_document_bytes() -> u64 {
    std::env::var("MEDMESH_TEST_DOCUMENT_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2 << 30)
}

/// A generated PDF-looking document of `len` bytes, in 1 MiB pieces, never whole in memory.
/// Every piece is one pattern with its index stamped in, so no two pieces are equal.
fn generated_document(len: u64) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    const PIECE: u64 = 1 << 20;
    let pattern: Vec<u8> = (0..PIECE).map(|j| (j % 251) as u8).collect();
    futures::stream::iter((0..len.div_ceil(PIECE)).map(move |i| {
        let n = PIECE.min(len - i * PIECE) as usize;
        let mut piece = pattern[..n].to_vec();
        let stamp = i.to_le_bytes();
        let at = 16.min(n);
        piece[..at].copy_from_slice(&[stamp, stamp][..].concat()[..at]);
        if i == 0 {
            piece[..9].copy_from_slice(b"%PDF-1.7\n");
        }
        Ok(piece)
    }))
}

/// A 2 GB document goes up and comes back down through the node with its memory bounded:
/// the node's peak resident memory grows by less than 64 MiB.
async fn a_large_document_streams_in_bounded_memory(node: Node) {
    use futures::StreamExt;
    seed(&node).await;
    let me = patient(&node);
    let len = large_document_bytes();
    let mut expected = Sha256::new();
    let mut pieces = Box::pin(generated_document(len));
    while let Some(p) = pieces.next().await {
        expected.update(p.unwrap());
    }
    let expected = expected.finalize().to_vec();
    let before = node.peak_rss();

    let r = me
        .auth(me.client.post(me.url("Binary")))
        .header("content-type", "application/pdf")
        .header("content-length", len.to_string())
        .body(reqwest::Body::wrap_stream(generated_document(len)))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let binary: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{binary}");
    assert!(
        binary["meta"]["extension"]
            .to_string()
            .contains(&medmesh_crypto_cid(&expected)),
        "{binary}"
    );
    let id = binary["id"].as_str().unwrap();

    let r = me
        .auth(me.client.get(me.url(&format!("Binary/{id}"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], len.to_string().as_str());
    let mut got = Sha256::new();
    let mut n = 0u64;
    let mut body = r.bytes_stream();
    while let Some(piece) = body.next().await {
        let piece = piece.unwrap();
        n += piece.len() as u64;
        got.update(&piece);
    }
    assert_eq!(n, len);
    assert_eq!(got.finalize().to_vec(), expected);

    let grown = node.peak_rss().saturating_sub(before);
    eprintln!(
        "a {len}-byte document moved up and down; the node's peak memory grew {} KiB (from {} to {} KiB)",
        grown >> 10,
        before >> 10,
        node.peak_rss() >> 10
    );
    assert!(
        grown < 64 << 20,
        "moving {len} bytes grew the node's peak memory by {} MiB",
        grown >> 20
    );
}

on_both_databases!(a_large_document_streams_in_bounded_memory);

/// `keys reencrypt` seals document blobs again under the patient's fresh key, while the
/// node serves; a blob two Binaries share is sealed once, and both still download whole.
async fn reencryption_reseals_document_blobs(node: Node) {
    seed(&node).await;
    let me = patient(&node);
    let pdf = pdf_bytes("reencrypt");
    let (_, _, first) = upload_raw(&me, pdf.clone(), "application/pdf", &[]).await;
    let (_, _, second) = upload_raw(&me, pdf.clone(), "application/pdf", &[]).await;
    let blobs_dir = node.data_dir.path().join("blobs");
    let files = files_under(&blobs_dir);
    assert_eq!(files.len(), 1);
    // The sealed header: magic, then the 16-byte id of the data key that sealed it.
    let key_of = |f: &Path| std::fs::read(f).unwrap()[4..20].to_vec();
    let before = key_of(&files[0]);

    let out = node.cli(&["keys", "reencrypt"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("and 1 document blobs"), "{said}");
    let files = files_under(&blobs_dir);
    assert_eq!(files.len(), 1, "no staging copy is left: {files:?}");
    assert_ne!(
        key_of(&files[0]),
        before,
        "the blob is sealed under a new key"
    );
    for b in [&first, &second] {
        let id = b["id"].as_str().unwrap();
        let (s, _, got) = get_bytes(&me, &me.url(&format!("Binary/{id}")), true).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(got, pdf);
    }
    // Every run gives every owner a fresh key, so a second run seals the blob once more.
    let after_first = key_of(&files_under(&blobs_dir)[0]);
    let out = node.cli(&["keys", "reencrypt"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("and 1 document blobs"));
    assert_ne!(key_of(&files_under(&blobs_dir)[0]), after_first);
}

on_both_databases!(reencryption_reseals_document_blobs);
