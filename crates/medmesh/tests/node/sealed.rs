//! Signed uploads and end-to-end sealed documents, driven through the real `medmesh doc`
//! client against a running node, with two users: a patient and their GP.
//!
//! Signed: a tampered byte, a swapped signature, a replay onto another patient and an
//! unregistered key all fail, online and with the offline `medmesh verify`. Sealed: the GP
//! opens what the patient sealed for them; a practitioner without a key cannot; revoking
//! takes the GP's key away and sharing gives it back; the recovery key opens it when the
//! device key is lost; and every key the node holds (KEKs and data keys) fails to open it.

use std::path::Path;
use std::process::Output;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::documents::{get_bytes, patient, pdf_bytes, practitioner, seed, upload_raw};
use crate::harness::Node;
use crate::on_both_databases;

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn failed(out: &Output, what: &str) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what} should fail with exit 1: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn failed_any(out: &Output, what: &str) -> String {
    assert!(!out.status.success(), "{what} should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Makes and publishes a user's keys; returns the key file's path.
fn keys_for(node: &Node, who: &Node, dir: &Path, owner: &str, recovery: bool) -> String {
    let name = owner.replace('/', "-");
    let key_file = format!("{name}.key");
    let mut args = vec!["keygen", "--key-file", &key_file, "--owner", owner];
    let rec = format!("{name}.recovery");
    if recovery {
        args.extend(["--recovery-file", &rec]);
    }
    ok(&node.doc(&who.token, dir, &args), "doc keygen");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join(&key_file))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key file is private");
    let mut args = vec!["register", "--key-file", &key_file];
    if recovery {
        args.extend(["--recovery-file", &rec]);
    }
    let out = ok(&node.doc(&who.token, dir, &args), "doc register");
    assert_eq!(out.lines().count(), if recovery { 3 } else { 2 }, "{out}");
    key_file
}

/// The upload headers a Provenance's signature was made with, for the given signature, key
/// and patient (to replay it, or forge it).
fn signed_headers(prov: &Value, sig: &str, key: &str, patient: &str) -> Vec<(String, String)> {
    let claims = STANDARD
        .decode(prov["extension"][0]["valueBase64Binary"].as_str().unwrap())
        .unwrap();
    let claims = String::from_utf8(claims).unwrap();
    let line = |name: &str| {
        claims
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap()
            .to_string()
    };
    vec![
        ("x-security-context".into(), format!("Patient/{patient}")),
        ("x-medmesh-document-type".into(), line("type")),
        ("x-medmesh-signature".into(), sig.to_string()),
        ("x-medmesh-signing-key".into(), key.to_string()),
        ("x-medmesh-signed-at".into(), line("time")),
        ("x-medmesh-device".into(), line("device")),
    ]
}

async fn provenance_of(who: &Node, binary: &str) -> Value {
    let b = who
        .search(&format!("Provenance?target=Binary/{binary}"))
        .await;
    b["entry"][0]["resource"].clone()
}

async fn signed_uploads_verify_and_forgeries_fail(node: Node) {
    seed(&node).await;
    let (s, _, b) = node
        .put(
            "Patient/pat2",
            &json!({"resourceType": "Patient", "id": "pat2",
                    "generalPractitioner": [{"reference": "Practitioner/gp"}]}),
        )
        .await;
    assert!(s.is_success(), "{b}");
    let me = patient(&node);
    let gp = practitioner(&node, "gp", "gp");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pat_key = keys_for(&node, &me, d, "Patient/pat", false);
    let gp_key = keys_for(&node, &gp, d, "Practitioner/gp", false);
    // A patient cannot publish keys in someone else's name: the owner comes from the token.
    let out = node.doc(&me.token, d, &["register", "--key-file", &gp_key]);
    assert!(failed_any(&out, "registering the GP's keys as the patient").contains("refused"));

    // The patient uploads a signed report; the node keeps the signature in a Provenance.
    std::fs::write(d.join("report.pdf"), pdf_bytes("signed")).unwrap();
    let id = ok(
        &node.doc(
            &me.token,
            d,
            &[
                "upload",
                "--key-file",
                &pat_key,
                "--patient",
                "pat",
                "--type",
                "http://loinc.org|18748-4",
                "--title",
                "MRI report",
                "report.pdf",
            ],
        ),
        "doc upload",
    );
    let prov = provenance_of(&me, &id).await;
    assert_eq!(prov["resourceType"], "Provenance", "{prov}");
    assert_eq!(prov["signature"][0]["who"]["reference"], "Patient/pat");
    let out = ok(&node.doc(&gp.token, d, &["verify", &id]), "doc verify");
    assert!(out.starts_with("verified: Patient/pat signed"), "{out}");

    // Offline: the downloaded bytes and the Provenance verify; a tampered byte does not.
    let (_, _, bytes) = get_bytes(&gp, &gp.url(&format!("Binary/{id}")), true).await;
    std::fs::write(d.join("copy.pdf"), &bytes).unwrap();
    std::fs::write(d.join("prov.json"), prov.to_string()).unwrap();
    let verify = |file: &str, prov: &str| {
        node.command_with_env("MEDMESH_LOG", "warn")
            .current_dir(d)
            .args(["verify", file, "--provenance", prov])
            .output()
            .unwrap()
    };
    ok(&verify("copy.pdf", "prov.json"), "offline verify");
    let mut tampered = bytes.clone();
    tampered[20] ^= 1;
    std::fs::write(d.join("tampered.pdf"), &tampered).unwrap();
    assert!(failed(&verify("tampered.pdf", "prov.json"), "a tampered byte").contains("changed"));

    // A swapped signature (the GP's, over other claims) does not verify.
    std::fs::write(d.join("gp.pdf"), pdf_bytes("by the GP")).unwrap();
    let gp_doc = ok(
        &node.doc(
            &gp.token,
            d,
            &[
                "upload",
                "--key-file",
                &gp_key,
                "--patient",
                "pat",
                "gp.pdf",
            ],
        ),
        "the GP's upload",
    );
    let gp_prov = provenance_of(&gp, &gp_doc).await;
    let mut swapped = prov.clone();
    swapped["signature"][0]["data"] = gp_prov["signature"][0]["data"].clone();
    std::fs::write(d.join("swapped.json"), swapped.to_string()).unwrap();
    assert!(
        failed(&verify("copy.pdf", "swapped.json"), "a swapped signature").contains("signature")
    );
    let mut swapped_key = prov.clone();
    swapped_key["signature"][0]["extension"] = gp_prov["signature"][0]["extension"].clone();
    std::fs::write(d.join("swapped-key.json"), swapped_key.to_string()).unwrap();
    failed(
        &verify("copy.pdf", "swapped-key.json"),
        "another signer's key",
    );

    // Online, the node refuses the same forgeries before storing anything.
    let send = |who: &Node, body: Vec<u8>, h: Vec<(String, String)>| {
        let who = who.with_token(&who.token);
        async move {
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            upload_raw(&who, body, "application/pdf", &h).await
        }
    };
    let sig = prov["signature"][0]["data"].as_str().unwrap().to_string();
    let key = prov["signature"][0]["extension"][0]["valueBase64Binary"]
        .as_str()
        .unwrap()
        .to_string();
    let headers = |sig: &str, key: &str, patient: &str| signed_headers(&prov, sig, key, patient);
    let original = pdf_bytes("signed");
    let (s, _, _) = send(&me, original.clone(), headers(&sig, &key, "pat")).await;
    assert_eq!(
        s,
        StatusCode::CREATED,
        "the genuine upload, sent again, is accepted"
    );
    let (s, _, oo) = send(&me, tampered.clone(), headers(&sig, &key, "pat")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "tampered byte: {oo}");
    assert_eq!(oo["issue"][0]["code"], "security");
    let gp_sig = gp_prov["signature"][0]["data"].as_str().unwrap();
    let (s, _, _) = send(&me, original.clone(), headers(gp_sig, &key, "pat")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "swapped signature");
    // The GP replays their own signature onto another patient's document.
    let gp_key_b64 = gp_prov["signature"][0]["extension"][0]["valueBase64Binary"]
        .as_str()
        .unwrap();
    let replay = signed_headers(&gp_prov, gp_sig, gp_key_b64, "pat2");
    let (s, _, oo) = send(&gp, pdf_bytes("by the GP"), replay).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "replay onto pat2: {oo}"
    );
    // The patient's genuine signature presented with a key they never registered.
    let stray = medmesh_crypto::UserSigningKey::from_secret([7; 32]);
    let (s, _, oo) = send(
        &me,
        original.clone(),
        headers(&sig, &stray.public().to_base64(), "pat"),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unregistered key: {oo}"
    );
    assert!(oo.to_string().contains("registered"), "{oo}");
}

/// The candidate keys a node holds: every KEK in its key file, and every data key those
/// unwrap from its database.
async fn every_node_key(node: &Node) -> Vec<[u8; 32]> {
    let text = std::fs::read_to_string(node.data_dir.path().join("master.key")).unwrap();
    let keks: Vec<medmesh_crypto::Kek> = text
        .lines()
        .filter(|l| l.starts_with("medmesh-kek"))
        .filter_map(|l| l.split_whitespace().last())
        .map(|b| medmesh_crypto::Kek::from_bytes(STANDARD.decode(b).unwrap().try_into().unwrap()))
        .collect();
    assert!(!keks.is_empty());
    let mut out: Vec<[u8; 32]> = keks.iter().map(|k| *k.expose_bytes()).collect();
    for (id, owner, wrapped) in node.data_key_rows().await {
        let id: medmesh_crypto::KeyId = id.parse().unwrap();
        for kek in &keks {
            if let Ok(dek) = kek.unwrap(&wrapped, &id, &owner) {
                out.push(*dek.expose_bytes());
            }
        }
    }
    assert!(
        out.len() > keks.len(),
        "the node's data keys were unwrapped"
    );
    out
}

async fn sealed_documents_between_two_users(node: Node) {
    seed(&node).await;
    let me = patient(&node);
    let gp = practitioner(&node, "gp", "gp");
    let stranger = practitioner(&node, "stranger", "stranger");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pat_key = keys_for(&node, &me, d, "Patient/pat", true);
    let gp_key = keys_for(&node, &gp, d, "Practitioner/gp", false);
    let stranger_key = keys_for(&node, &stranger, d, "Practitioner/stranger", false);
    let secret = "HIV-1/2 antibody test: NEGATIVE. Private note SEALED-MARKER-55e1.\n";
    std::fs::write(d.join("result.txt"), secret).unwrap();
    // `who` opens the sealed document `id` with `key` into `out`, and gets the secret back.
    let opens = |who: &Node, key: &str, id: &str, out: &str, what: &str| {
        ok(
            &node.doc(
                &who.token,
                d,
                &["open", "--key-file", key, id, "--out", out],
            ),
            what,
        );
        assert_eq!(
            std::fs::read_to_string(d.join(out)).unwrap(),
            secret,
            "{what}"
        );
    };

    // Sealing for someone with no published key is refused before anything is sent.
    let out = node.doc(
        &me.token,
        d,
        &[
            "seal",
            "--key-file",
            &pat_key,
            "--patient",
            "pat",
            "--to",
            "Practitioner/nobody",
            "result.txt",
        ],
    );
    assert!(failed_any(&out, "sealing for nobody").contains("no verified sealing key"));

    let id = ok(
        &node.doc(
            &me.token,
            d,
            &[
                "seal",
                "--key-file",
                &pat_key,
                "--patient",
                "pat",
                "--to",
                "Practitioner/gp",
                "--type",
                "http://loinc.org|7917-8",
                "result.txt",
            ],
        ),
        "doc seal",
    );

    // The GP opens it; the signature over the sealed bytes verifies.
    opens(&gp, &gp_key, &id, "gp-copy.txt", "the GP opens");
    let out = ok(&node.doc(&gp.token, d, &["verify", &id]), "doc verify");
    assert!(out.starts_with("verified: Patient/pat"), "{out}");

    // A practitioner without a key (and without a care relationship) gets nothing.
    let out = node.doc(
        &stranger.token,
        d,
        &["open", "--key-file", &stranger_key, &id, "--out", "x.txt"],
    );
    failed_any(&out, "the stranger opens");
    assert!(!d.join("x.txt").exists() && !d.join("x.txt.partial").exists());

    // The node holds only ciphertext: what it serves is the sealed stream, and no key it
    // has (KEKs, data keys) opens the content or unwraps a recipient's copy.
    let (_, _, served) = get_bytes(&node, &node.url(&format!("Binary/{id}")), true).await;
    assert!(served.starts_with(b"mmb\x01"));
    assert!(!String::from_utf8_lossy(&served).contains("SEALED-MARKER"));
    for f in crate::documents::files_under(&node.data_dir.path().join("blobs")) {
        let raw = std::fs::read(f).unwrap();
        assert!(!raw.windows(13).any(|w| w == b"SEALED-MARKER"));
    }
    let (_, _, mine) = me.get_raw(&format!("/api/sealed/{id}/keys")).await;
    let wrapped: Vec<medmesh_crypto::sealing::WrappedKey> = mine["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            medmesh_crypto::sealing::WrappedKey::from_text(k["wrapped"].as_str().unwrap()).unwrap()
        })
        .collect();
    assert_eq!(
        wrapped.len(),
        2,
        "the patient's sealing and recovery keys: {mine}"
    );
    let document = medmesh_crypto::KeyId(hex_16(mine["documentKeyId"].as_str().unwrap()));
    let keys = every_node_key(&node).await;
    for k in &keys {
        let as_content = medmesh_crypto::sealing::ContentKey::from_bytes(*k);
        assert!(
            as_content.open(&served).is_err(),
            "a node key opened the content"
        );
        let as_recipient = medmesh_crypto::sealing::SealingSecretKey::from_seed(*k);
        for w in &wrapped {
            assert!(
                as_recipient.unwrap(w, &document).is_err(),
                "a node key unwrapped a copy"
            );
        }
    }

    // The patient sees who holds a key: themself (sealing and recovery keys) and the GP.
    let holders = ok(&node.doc(&me.token, d, &["shares", &id]), "doc shares");
    assert_eq!(holders.lines().count(), 3, "{holders}");
    assert_eq!(holders.matches("Patient/pat (key").count(), 2, "{holders}");
    assert!(holders.contains("Practitioner/gp (key"), "{holders}");
    // Nobody else may ask.
    let (s, _, _) = gp.get_raw(&format!("/api/sealed/{id}/shares")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // The patient revokes the GP: the GP's next open fails; the revocation is audited.
    let out = ok(
        &node.doc(&me.token, d, &["revoke", &id, "--from", "Practitioner/gp"]),
        "doc revoke",
    );
    assert!(out.contains("stays with them"), "{out}");
    let out = node.doc(
        &gp.token,
        d,
        &["open", "--key-file", &gp_key, &id, "--out", "gp-again.txt"],
    );
    failed_any(&out, "the GP opens after revocation");
    let holders = ok(&node.doc(&me.token, d, &["shares", &id]), "doc shares");
    assert!(!holders.contains("Practitioner/gp"), "{holders}");
    let (_, _, log) = me.get_raw("/api/patients/pat/audit").await;
    assert!(
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["entry"]["action"] == "revoke"),
        "{log}"
    );
    // The GP, holding no key now, cannot share it on; nobody but the patient or the sharer
    // revokes.
    let out = node.doc(
        &gp.token,
        d,
        &[
            "share",
            "--key-file",
            &gp_key,
            &id,
            "--to",
            "Practitioner/gp",
        ],
    );
    failed_any(&out, "the GP shares without a key");
    // ...and the node itself refuses a share from someone who holds no key for it.
    let (_, _, gp_keys) = gp.get_raw("/api/keys?owner=Practitioner/gp").await;
    let gp_sealing = gp_keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "sealing")
        .unwrap()["keyId"]
        .clone();
    let (s, _, oo) = gp
        .post_raw(
            &format!("/api/sealed/{id}/keys"),
            &json!({"recipientKeyId": gp_sealing, "wrapped": wrapped[0].to_text()}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{oo}");

    // The patient shares it again: the GP opens.
    ok(
        &node.doc(
            &me.token,
            d,
            &[
                "share",
                "--key-file",
                &pat_key,
                &id,
                "--to",
                "Practitioner/gp",
            ],
        ),
        "doc share",
    );
    opens(
        &gp,
        &gp_key,
        &id,
        "gp-back.txt",
        "the GP opens after the share",
    );

    // The patient's device key is lost: the recovery key opens the document.
    std::fs::remove_file(d.join(&pat_key)).unwrap();
    opens(
        &me,
        "Patient-pat.recovery",
        &id,
        "recovered.txt",
        "opening with the recovery key",
    );

    // A sealed upload must carry wrapped keys, one of them the uploader's own.
    let (s, _, oo) = upload_raw(&me, served.clone(), "application/vnd.medmesh.sealed", &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{oo}");
}

fn hex_16(h: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

on_both_databases!(
    signed_uploads_verify_and_forgeries_fail,
    sealed_documents_between_two_users
);
