//! Prescribing, told as a GP's morning: a prescription for a patient allergic to it is
//! stopped with a warning until the GP overrides it with a reason (kept as a DetectedIssue);
//! a duplicate of an active medication is caught even in free text; the GP signs the draft
//! with the key file's Ed25519 key (`medmesh doc sign-prescription`), which makes it active;
//! the signed prescription verifies offline against the node's public key directory
//! (`medmesh verify-prescription`), and a tampered one does not; forged, replayed and
//! late signatures are refused; and every step of the lifecycle is checked and audited.

use std::process::Output;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::documents::{practitioner, seed};
use crate::harness::Node;
use crate::on_both_databases;

const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `medmesh verify-prescription ...`, offline: no node, no store.
fn offline(node: &Node, args: &[&str]) -> Output {
    node.command()
        .arg("verify-prescription")
        .args(args)
        .output()
        .expect("run medmesh")
}

fn refused(out: &Output, what: &str) -> String {
    assert_eq!(out.status.code(), Some(1), "{what} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a tool the test needs; fails loudly when it is missing (scripts/test installs it).
fn tool(name: &str, args: &[&str]) -> Output {
    let out = std::process::Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{name} is required (scripts/test installs it): {e}"));
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The QR code of a printed prescription, read from the page rendered at 300 dpi.
fn scan_printed(dir: &std::path::Path, pdf: &[u8]) -> String {
    let file = dir.join("printed.pdf");
    std::fs::write(&file, pdf).unwrap();
    let png = dir.join("printed");
    tool(
        "pdftoppm",
        &[
            "-r",
            "300",
            "-png",
            "-singlefile",
            file.to_str().unwrap(),
            png.to_str().unwrap(),
        ],
    );
    let out = tool(
        "zbarimg",
        &[
            "--raw",
            "-q",
            "-Sdisable",
            "-Sqrcode.enable",
            dir.join("printed.png").to_str().unwrap(),
        ],
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

/// The text of a printed prescription (poppler's pdftotext).
fn pdf_text(dir: &std::path::Path, pdf: &[u8]) -> String {
    let file = dir.join("text.pdf");
    std::fs::write(&file, pdf).unwrap();
    let out = tool("pdftotext", &[file.to_str().unwrap(), "-"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn put(node: &Node, path: &str, body: Value) {
    let (s, _, b) = node.put(path, &body).await;
    assert!(s.is_success(), "{path}: {s} {b}");
}

/// The GP's key file (`gp.key`, in the returned folder), made and published in the key
/// directory with `medmesh doc keygen` and `doc register`.
fn gp_keys(node: &Node, gp: &Node) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(
        &node.doc(
            &gp.token,
            d,
            &[
                "keygen",
                "--key-file",
                "gp.key",
                "--owner",
                "Practitioner/gp",
            ],
        ),
        "keygen",
    );
    ok(
        &node.doc(&gp.token, d, &["register", "--key-file", "gp.key"]),
        "register",
    );
    dir
}

fn amoxicillin() -> Value {
    json!({
        "resourceType": "MedicationRequest",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "308182",
            "display": "amoxicillin 250 MG Oral Capsule"}],
            "text": "amoxicillin 250 MG Oral Capsule"},
        "subject": {"reference": "Patient/pat"},
        "dosageInstruction": [{
            "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "capsule"}}],
            "timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d",
                "boundsDuration": {"value": 7, "unit": "days", "code": "d",
                    "system": "http://unitsofmeasure.org"}}}}],
        "dispenseRequest": {"quantity": {"value": 21, "unit": "capsule"},
            "numberOfRepeatsAllowed": 0},
        "substitution": {"allowedBoolean": true}
    })
}

async fn prescribe(who: &Node, prescription: Value, overrides: Value) -> (StatusCode, Value) {
    let (s, _, b) = who
        .post_raw(
            "/api/prescriptions",
            &json!({"prescription": prescription, "overrides": overrides}),
        )
        .await;
    (s, b)
}

/// The warning keys of a 409.
fn warning_keys(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert_eq!(i["severity"], "warning");
            i["details"]["coding"][0]["code"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

async fn status(who: &Node, id: &str, to: &str, reason: Option<&str>) -> (StatusCode, Value) {
    let (s, _, b) = who
        .post_raw(
            &format!("/api/prescriptions/{id}/status"),
            &json!({"status": to, "reason": reason}),
        )
        .await;
    (s, b)
}

async fn prescribing_checks_signs_and_follows_the_lifecycle(node: Node) {
    seed(&node).await;
    // The patient is allergic to amoxicillin (the ingredient, RxNorm 723), and takes
    // lisinopril (recorded from a hospital's import, so already active).
    put(
        &node,
        "AllergyIntolerance/amox",
        json!({"resourceType": "AllergyIntolerance", "id": "amox",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
            "code": {"coding": [{"system": RXNORM, "code": "723", "display": "amoxicillin"}], "text": "Amoxicillin"},
            "patient": {"reference": "Patient/pat"}}),
    )
    .await;
    put(
        &node,
        "MedicationRequest/lisinopril",
        json!({"resourceType": "MedicationRequest", "id": "lisinopril",
            "status": "active", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "314076",
                "display": "lisinopril 10 MG Oral Tablet"}]},
            "subject": {"reference": "Patient/pat"}}),
    )
    .await;
    let gp = practitioner(&node, "gp", "gp");
    let stranger = practitioner(&node, "stranger", "stranger");
    let dir = gp_keys(&node, &gp);
    let d = dir.path();

    // 1. The allergy stops the prescription: the product (a contained Medication) is matched
    // to the allergy through its ingredient's code.
    let mut rx = amoxicillin();
    let product = rx["medicationCodeableConcept"].take();
    rx.as_object_mut()
        .unwrap()
        .remove("medicationCodeableConcept");
    rx["contained"] = json!([{"resourceType": "Medication", "id": "med", "code": product,
        "ingredient": [{"itemCodeableConcept": {"coding": [{"system": RXNORM, "code": "723", "display": "amoxicillin"}]}}]}]);
    rx["medicationReference"] = json!({"reference": "#med"});
    let (s, warnings) = prescribe(&gp, rx.clone(), json!([])).await;
    assert_eq!(s, StatusCode::CONFLICT, "{warnings}");
    assert_eq!(warning_keys(&warnings), vec!["allergy:amox"]);
    assert!(
        warnings["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("allergy")
    );
    assert_eq!(node.total("DetectedIssue").await, 0, "nothing written");
    assert_eq!(node.total("MedicationRequest").await, 1);
    // An override without a reason is no override.
    let (s, _) = prescribe(
        &gp,
        rx.clone(),
        json!([{"warning": "allergy:amox", "reason": "  "}]),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let reason = "Tolerated a full course in 2025; rash was viral";
    let (s, written) = prescribe(
        &gp,
        rx.clone(),
        json!([{"warning": "allergy:amox", "reason": reason}]),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{written}");
    let draft = &written["prescription"];
    let id = draft["id"].as_str().unwrap().to_string();
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["requester"]["reference"], "Practitioner/gp");
    assert!(draft["authoredOn"].is_string());
    let issue = &written["detectedIssues"][0];
    assert_eq!(issue["code"]["coding"][0]["code"], "ALGY");
    assert_eq!(issue["mitigation"][0]["action"]["text"], reason);
    assert_eq!(
        issue["implicated"][0]["reference"],
        format!("MedicationRequest/{id}")
    );
    assert_eq!(
        issue["implicated"][1]["reference"],
        "AllergyIntolerance/amox"
    );
    assert_eq!(node.total("DetectedIssue?patient=pat").await, 1);

    // 2. Duplicate therapy: another strength, in free text (marked so), of an active
    // ingredient.
    let mut free = amoxicillin();
    free["medicationCodeableConcept"] = json!({"text": "Lisinopril 20 mg tablets"});
    let (s, warnings) = prescribe(&gp, free.clone(), json!([])).await;
    assert_eq!(s, StatusCode::CONFLICT, "{warnings}");
    assert_eq!(warning_keys(&warnings), vec!["duplicate:lisinopril"]);
    assert!(
        warnings["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("ingredient")
    );
    let (s, written) = prescribe(
        &gp,
        free,
        json!([{"warning": "duplicate:lisinopril", "reason": "dose raised; the 10 mg is stopped today"}]),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{written}");
    assert_eq!(
        written["detectedIssues"][0]["code"]["coding"][0]["code"],
        "DUPTHPY"
    );
    assert!(
        written["prescription"]["extension"]
            .to_string()
            .contains("medication-free-text")
    );
    let free_id = written["prescription"]["id"].as_str().unwrap().to_string();

    // 3. Who may prescribe: not a practitioner outside the patient's care (for whom the
    // patient is not there), nor the patient.
    let (s, _) = prescribe(&stranger, amoxicillin(), json!([])).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let me = crate::documents::patient(&node);
    let (s, _) = prescribe(&me, amoxicillin(), json!([])).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Nor written active: a prescription is made active by signing it.
    let mut active = amoxicillin();
    active["status"] = json!("active");
    let (s, _) = prescribe(&gp, active, json!([])).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // A timing that cannot be scheduled is refused, naming where.
    let mut bad = amoxicillin();
    bad["dosageInstruction"][0]["timing"]["repeat"]["frequency"] = json!(500);
    let (s, b) = prescribe(&gp, bad, json!([])).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.to_string().contains("dosageInstruction[0].timing"), "{b}");

    // 4. Forged signatures are refused: a key not in the directory, a text that is not the
    // prescription's, a time far from now; and the draft stays a draft.
    let (s, _, t) = gp
        .get_raw(&format!("/api/prescriptions/{id}/signing-text"))
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let text = t["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("medmesh-prescription v1\n"), "{text}");
    assert!(
        text.contains("\nrefills 0\n") && text.contains("\nquantity 21 capsule\n"),
        "{text}"
    );
    let claims = medmesh_crypto::PrescriptionClaims::parse(text.as_bytes()).unwrap();
    let outsider = medmesh_crypto::UserSigningKey::from_secret([7; 32]);
    let activate = |signed: &medmesh_crypto::PrescriptionClaims,
                    key: &medmesh_crypto::UserSigningKey| {
        json!({"version": t["version"], "time": signed.time,
            "signature": key.sign_prescription(signed).unwrap().to_base64(),
            "key": key.public().to_base64()})
    };
    let (s, _, b) = gp
        .post_raw(
            &format!("/api/prescriptions/{id}/activate"),
            &activate(&claims, &outsider),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.to_string().contains("directory"), "{b}");
    let keys = medmesh_doc_client::KeyFile::read(&d.join("gp.key")).unwrap();
    let gp_key = keys.signing.as_ref().unwrap();
    let more_refills = medmesh_crypto::PrescriptionClaims {
        refills: "5".into(),
        ..claims.clone()
    };
    let mut forged = activate(&more_refills, gp_key);
    forged["time"] = json!(claims.time);
    let (s, _, b) = gp
        .post_raw(&format!("/api/prescriptions/{id}/activate"), &forged)
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.to_string().contains("does not verify"), "{b}");
    let late = medmesh_crypto::PrescriptionClaims {
        time: "2020-01-01T00:00:00Z".into(),
        ..claims.clone()
    };
    let (s, _, b) = gp
        .post_raw(
            &format!("/api/prescriptions/{id}/activate"),
            &activate(&late, gp_key),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.to_string().contains("10 minutes"), "{b}");
    let (s, _) = status(&gp, &id, "active", None).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a draft is activated by signing"
    );
    let (_, _, now) = gp.get(&format!("MedicationRequest/{id}")).await;
    assert_eq!(now["status"], "draft");

    // 5. The GP signs with the key file: the prescription is active, with its Provenance.
    let out = ok(
        &node.doc(
            &gp.token,
            d,
            &["sign-prescription", "--key-file", "gp.key", &id],
        ),
        "sign-prescription",
    );
    assert!(out.contains("active"), "{out}");
    let (_, _, signed_rx) = gp.get(&format!("MedicationRequest/{id}")).await;
    assert_eq!(signed_rx["status"], "active");
    let prov = gp
        .search(&format!("Provenance?target=MedicationRequest/{id}"))
        .await;
    assert_eq!(
        prov["entry"][0]["resource"]["signature"][0]["sigFormat"],
        "application/vnd.medmesh.prescription-v1+ed25519"
    );
    // Signing twice is refused: it is no longer a draft.
    let (s, _, _) = gp
        .get_raw(&format!("/api/prescriptions/{id}/signing-text"))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // 6. Offline: the signed prescription, the GP's directory listing and the stored
    // MedicationRequest, each saved to a file as a pharmacy would have them.
    let (s, _, signed) = gp.get_raw(&format!("/api/prescriptions/{id}/signed")).await;
    assert_eq!(s, StatusCode::OK, "{signed}");
    let (_, _, listing) = gp.get_raw("/api/keys?owner=Practitioner/gp").await;
    let save = |name: &str, v: &Value| {
        std::fs::write(d.join(name), serde_json::to_vec(v).unwrap()).unwrap();
        d.join(name).to_string_lossy().into_owned()
    };
    let signed_file = save("signed.json", &signed);
    let keys_file = save("keys.json", &listing);
    let rx_file = save("rx.json", &signed_rx);
    let out = ok(
        &offline(
            &node,
            &[
                &signed_file,
                "--directory",
                &keys_file,
                "--prescription",
                &rx_file,
            ],
        ),
        "verify-prescription",
    );
    assert!(
        out.contains("verified: Practitioner/gp signed MedicationRequest/"),
        "{out}"
    );
    // The printed prescription: its QR code, scanned from the page as an image (poppler's
    // pdftoppm, zbar's zbarimg), is the signed prescription, which verifies offline.
    let (s, headers, pdf) = gp.get_bytes(&format!("/api/prescriptions/{id}/pdf")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/pdf");
    assert_eq!(headers["cache-control"], "no-store");
    let scanned = scan_printed(d, &pdf);
    assert_eq!(
        serde_json::from_str::<Value>(&scanned).unwrap(),
        signed,
        "the QR code holds the signed prescription"
    );
    let qr_file = d.join("qr.json").to_string_lossy().into_owned();
    std::fs::write(&qr_file, &scanned).unwrap();
    ok(
        &offline(&node, &[&qr_file, "--directory", &keys_file]),
        "verify the scanned QR code",
    );
    let text = pdf_text(d, &pdf);
    assert!(text.contains("amoxicillin 250 MG Oral Capsule"), "{text}");
    assert!(text.contains("Practitioner/gp"), "{text}");
    // Someone outside the patient's care gets nothing.
    let (s, _, _) = stranger
        .get_bytes(&format!("/api/prescriptions/{id}/pdf"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A MedicationRequest changed after signing (more capsules) is not what was signed.
    let mut more = signed_rx.clone();
    more["dispenseRequest"]["quantity"]["value"] = json!(42);
    let tampered_rx = save("tampered-rx.json", &more);
    let err = refused(
        &offline(&node, &[&signed_file, "--prescription", &tampered_rx]),
        "a tampered prescription",
    );
    assert!(err.contains("quantity"), "{err}");
    // Signed text changed in the QR payload: the signature no longer holds.
    let text =
        String::from_utf8(STANDARD.decode(signed["claims"].as_str().unwrap()).unwrap()).unwrap();
    let mut altered = signed.clone();
    altered["claims"] = json!(STANDARD.encode(text.replace("\nrefills 0\n", "\nrefills 9\n")));
    let altered_file = save("altered.json", &altered);
    let err = refused(&offline(&node, &[&altered_file]), "altered claims");
    assert!(err.contains("does not verify"), "{err}");
    // A key that is not the prescriber's in the directory: the stranger's listing has none.
    let (_, _, strangers) = gp.get_raw("/api/keys?owner=Practitioner/stranger").await;
    let strangers_file = save("strangers.json", &strangers);
    let err = refused(
        &offline(&node, &[&signed_file, "--directory", &strangers_file]),
        "another directory",
    );
    assert!(err.contains("not one of Practitioner/gp"), "{err}");

    // 7. The lifecycle: each step checked, reasons required where R4 means them.
    let (s, b) = status(&gp, &id, "on-hold", None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, held) = status(&gp, &id, "on-hold", Some("admitted to hospital")).await;
    assert_eq!(s, StatusCode::OK, "{held}");
    assert_eq!(held["statusReason"]["text"], "admitted to hospital");
    let (s, resumed) = status(&gp, &id, "active", None).await;
    assert_eq!(s, StatusCode::OK, "{resumed}");
    assert!(resumed.get("statusReason").is_none());
    let (s, b) = status(&gp, &id, "draft", None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    // Dispensed once: cancelling is refused (stop it), stopping is not.
    put(
        &node,
        "MedicationDispense/first",
        json!({"resourceType": "MedicationDispense", "id": "first", "status": "completed",
            "medicationCodeableConcept": {"text": "amoxicillin 250 MG Oral Capsule"},
            "subject": {"reference": "Patient/pat"},
            "authorizingPrescription": [{"reference": format!("MedicationRequest/{id}")}],
            "quantity": {"value": 21, "unit": "capsule"}}),
    )
    .await;
    let (s, b) = status(&gp, &id, "cancelled", Some("not needed")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.to_string().contains("stop it instead"), "{b}");
    let (s, stopped) = status(&gp, &id, "stopped", Some("rash on day 2")).await;
    assert_eq!(s, StatusCode::OK, "{stopped}");
    let (s, b) = status(&gp, &id, "active", None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.to_string().contains("cannot change any more"), "{b}");
    // A draft never signed is cancelled.
    let (s, b) = status(
        &gp,
        &free_id,
        "cancelled",
        Some("prescribed in error of dose"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Another clinician outside the patient's care cannot touch it.
    let (s, _) = status(&stranger, &free_id, "entered-in-error", Some("x")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // 8. The plain FHIR API: a draft may be pre-filled there (the checks run when it is
    // signed), but nothing is made active or changed once signed except through the
    // operations above, and a patient writes no prescription.
    let mut prefilled = rx.clone();
    prefilled["status"] = json!("draft");
    prefilled["requester"] = json!({"reference": "Practitioner/gp"});
    prefilled["authoredOn"] = json!("2026-12-01");
    let (s, _, pre) = gp.post("MedicationRequest", &prefilled).await;
    assert_eq!(s, StatusCode::CREATED, "{pre}");
    let pre_id = pre["id"].as_str().unwrap().to_string();
    let out = node.doc(
        &gp.token,
        d,
        &["sign-prescription", "--key-file", "gp.key", &pre_id],
    );
    assert!(!out.status.success(), "the allergy stops the signature");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("409"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, _, t) = gp
        .get_raw(&format!("/api/prescriptions/{pre_id}/signing-text"))
        .await;
    let claims =
        medmesh_crypto::PrescriptionClaims::parse(t["text"].as_str().unwrap().as_bytes()).unwrap();
    let mut body = activate(&claims, gp_key);
    body["version"] = t["version"].clone();
    body["overrides"] = json!([{"warning": "allergy:amox", "reason": "desensitised in hospital"}]);
    let (s, _, active) = gp
        .post_raw(&format!("/api/prescriptions/{pre_id}/activate"), &body)
        .await;
    assert_eq!(s, StatusCode::OK, "{active}");
    assert_eq!(active["status"], "active");
    let issues = gp
        .search(&format!(
            "DetectedIssue?implicated=MedicationRequest/{pre_id}"
        ))
        .await;
    assert_eq!(issues["entry"].as_array().unwrap().len(), 1, "{issues}");
    let mut more = active.clone();
    more["dispenseRequest"]["numberOfRepeatsAllowed"] = json!(9);
    let (s, _, b) = gp.put(&format!("MedicationRequest/{pre_id}"), &more).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let mut unsigned = prefilled.clone();
    unsigned["status"] = json!("active");
    let (s, _, b) = gp.post("MedicationRequest", &unsigned).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.to_string().contains("signs it"), "{b}");
    let (s, _, b) = me.post("MedicationRequest", &prefilled).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");

    // 9. Every step is in the patient's audit log.
    let (s, _, log) = me.get_raw("/api/patients/pat/audit?_count=500").await;
    assert_eq!(s, StatusCode::OK);
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["entry"]["action"].as_str())
        .collect();
    for action in [
        "prescribe",
        "override",
        "sign",
        "status:on-hold",
        "status:active",
        "status:stopped",
        "status:cancelled",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

on_both_databases!(prescribing_checks_signs_and_follows_the_lifecycle);

/// Waits until `who`'s inbox at `path` holds `n` notices about medications (the hub's worker
/// delivers a notice due now within a second or two); returns them.
async fn told(who: &Node, path: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (s, _, b) = who.get_raw(path).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let about: Vec<Value> = b["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x.to_string().to_lowercase().contains("medications"))
            .cloned()
            .collect();
        if about.len() >= n {
            return about;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} never had {n} medication notices: {b}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn pharmacy(id: &str, name: &str) -> Value {
    json!({"resourceType": "Organization", "id": id, "name": name,
        "type": [{"coding": [{"system": "https://medmesh.dev/fhir/CodeSystem/organization-type", "code": "pharmacy"}]}]})
}

async fn the_pharmacy_loop_dispenses_returns_and_refills(node: Node) {
    seed(&node).await;
    put(
        &node,
        "Organization/corner",
        pharmacy("corner", "Corner Pharmacy"),
    )
    .await;
    put(
        &node,
        "Organization/late",
        pharmacy("late", "Late Night Pharmacy"),
    )
    .await;
    put(
        &node,
        "Practitioner/ph1",
        json!({"resourceType": "Practitioner", "id": "ph1"}),
    )
    .await;
    put(
        &node,
        "Practitioner/ph2",
        json!({"resourceType": "Practitioner", "id": "ph2"}),
    )
    .await;
    put(
        &node,
        "Observation/bp",
        json!({"resourceType": "Observation", "id": "bp", "status": "final",
            "code": {"text": "Blood pressure"}, "subject": {"reference": "Patient/pat"}}),
    )
    .await;
    let pharmacist = |user: &str, pharmacy: &str| {
        crate::audit_log::account_token(
            &node,
            "pharmacist",
            user,
            &[
                "--practitioner",
                user,
                "--organization",
                pharmacy,
                "--verification",
                "verified",
            ],
            "user/*.cruds",
        )
    };
    let ph1 = pharmacist("ph1", "corner");
    let ph2 = pharmacist("ph2", "late");
    let gp = practitioner(&node, "gp", "gp");
    let me = crate::documents::patient(&node);
    let dir = gp_keys(&node, &gp);
    let d = dir.path();

    // 1. The patient chooses a preferred and an alternate pharmacy; a hospital is none.
    let (s, _, b) = me
        .send(
            me.auth(
                me.client
                    .put(me.root_url("/api/patients/pat/pharmacies"))
                    .json(&json!({"preferred": "corner", "alternate": "Organization/late"})),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b,
        json!({"preferred": "Organization/corner", "alternate": "Organization/late"})
    );
    let (s, _, _) = me
        .send(
            me.auth(
                me.client
                    .put(me.root_url("/api/patients/pat/pharmacies"))
                    .json(&json!({"preferred": "h"})),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Nothing routed yet: the pharmacist knows nothing of the patient.
    assert_eq!(ph1.get("Patient/pat").await.0, StatusCode::NOT_FOUND);

    // 2. The GP prescribes without naming a pharmacy: it goes to the preferred one.
    let mut rx = amoxicillin();
    rx["dispenseRequest"] = json!({"quantity": {"value": 21, "unit": "capsule"},
        "numberOfRepeatsAllowed": 1});
    let (s, written) = prescribe(&gp, rx, json!([])).await;
    assert_eq!(s, StatusCode::CREATED, "{written}");
    let id = written["prescription"]["id"].as_str().unwrap().to_string();
    assert_eq!(
        written["prescription"]["dispenseRequest"]["performer"]["reference"],
        "Organization/corner"
    );
    // A draft is in no queue, and opens nothing.
    let (_, _, q) = ph1.get_raw("/api/pharmacy/queue").await;
    assert_eq!(q["queue"].as_array().unwrap().len(), 0, "{q}");
    ok(
        &node.doc(
            &gp.token,
            d,
            &["sign-prescription", "--key-file", "gp.key", &id],
        ),
        "sign",
    );
    // The patient is told it is active, the pharmacy that it is waiting.
    told(&me, "/api/patients/pat/notifications", 1).await;
    told(&ph1, "/api/account/inbox", 1).await;

    // 3. The pharmacy's queue; the pharmacist reads the medication record, nothing else.
    let (s, _, q) = ph1.get_raw("/api/pharmacy/queue").await;
    assert_eq!(s, StatusCode::OK, "{q}");
    assert_eq!(q["queue"][0]["prescription"]["id"], id.as_str());
    assert_eq!(q["queue"][0]["remaining"]["left"], 42.0);
    assert_eq!(q["queue"][0]["remaining"]["refillsLeft"], 1);
    assert_eq!(ph1.get("Patient/pat").await.0, StatusCode::OK);
    assert_eq!(
        ph1.get("AllergyIntolerance?patient=pat").await.0,
        StatusCode::OK
    );
    assert_eq!(ph1.get("Observation/bp").await.0, StatusCode::FORBIDDEN);
    // Another pharmacy sees nothing of it.
    let (_, _, q2) = ph2.get_raw("/api/pharmacy/queue").await;
    assert_eq!(q2["queue"].as_array().unwrap().len(), 0);
    assert_eq!(ph2.get("Patient/pat").await.0, StatusCode::NOT_FOUND);
    let (s, _, _) = ph2
        .post_raw(
            &format!("/api/prescriptions/{id}/dispense"),
            &json!({"quantity": 21}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A practitioner is no pharmacist.
    assert_eq!(
        gp.get_raw("/api/pharmacy/queue").await.0,
        StatusCode::FORBIDDEN
    );

    // 4. Dispensing: a part fill, the rest of it, a refill; more than is left is refused;
    // the last fill completes the prescription.
    let path = format!("/api/prescriptions/{id}/dispense");
    let (s, _, first) = ph1
        .post_raw(&path, &json!({"quantity": 10, "daysSupply": 3}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(first["type"]["coding"][0]["code"], "FFP");
    assert_eq!(
        first["performer"][1]["actor"]["reference"],
        "Organization/corner"
    );
    let (s, _, rest) = ph1.post_raw(&path, &json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{rest}");
    assert_eq!(
        rest["quantity"]["value"], 11.0,
        "the rest of the first fill"
    );
    assert_eq!(rest["type"]["coding"][0]["code"], "FFP");
    let (s, _, b) = ph1.post_raw(&path, &json!({"quantity": 30})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(b.to_string().contains("only 21 capsule is left"), "{b}");
    let (s, _, refill) = ph1.post_raw(&path, &json!({"quantity": 21})).await;
    assert_eq!(s, StatusCode::CREATED, "{refill}");
    assert_eq!(refill["type"]["coding"][0]["code"], "RF");
    let (_, _, done) = gp.get(&format!("MedicationRequest/{id}")).await;
    assert_eq!(done["status"], "completed", "used up");
    let (s, _, b) = ph1.post_raw(&path, &json!({"quantity": 1})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    // The patient and the prescriber were told of each dispense.
    told(&me, "/api/patients/pat/notifications", 4).await;
    told(&gp, "/api/account/inbox", 3).await;
    // The pharmacy keeps seeing what it dispensed.
    assert_eq!(
        ph1.get(&format!(
            "MedicationDispense/{}",
            refill["id"].as_str().unwrap()
        ))
        .await
        .0,
        StatusCode::OK
    );

    // 5. A refill: the patient asks, the GP approves with 2 refills; the renewal is a
    // draft to sign (not a duplicate of the prescription it renews).
    let (s, _, task) = me
        .post_raw(
            &format!("/api/prescriptions/{id}/refill-request"),
            &json!({"note": "running out on Friday"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{task}");
    let task_id = task["id"].as_str().unwrap().to_string();
    let (s, _, _) = me
        .post_raw(
            &format!("/api/prescriptions/{id}/refill-request"),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "asked already");
    // Only the prescriber decides.
    let (s, _, _) = ph1
        .post_raw(
            &format!("/api/refill-requests/{task_id}/decide"),
            &json!({"approve": true}),
        )
        .await;
    assert_ne!(s, StatusCode::OK);
    let (s, _, decided) = gp
        .post_raw(
            &format!("/api/refill-requests/{task_id}/decide"),
            &json!({"approve": true, "refills": 2, "overrides": [{"warning": "allergy:none", "reason": "n/a"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{decided}");
    assert_eq!(decided["task"]["status"], "completed");
    let renewal = decided["renewal"]["id"].as_str().unwrap().to_string();
    assert_eq!(decided["renewal"]["status"], "draft");
    assert_eq!(
        decided["renewal"]["dispenseRequest"]["numberOfRepeatsAllowed"],
        2
    );
    assert_eq!(
        decided["renewal"]["priorPrescription"]["reference"],
        format!("MedicationRequest/{id}")
    );
    ok(
        &node.doc(
            &gp.token,
            d,
            &["sign-prescription", "--key-file", "gp.key", &renewal],
        ),
        "sign the renewal",
    );
    let (_, _, q) = ph1.get_raw("/api/pharmacy/queue").await;
    assert_eq!(q["queue"][0]["prescription"]["id"], renewal.as_str(), "{q}");

    // 6. The pharmacy returns it (out of stock): it leaves the queue, the GP routes it to
    // the alternate pharmacy, which dispenses it.
    let (s, _, b) = ph1
        .post_raw(
            &format!("/api/prescriptions/{renewal}/return"),
            &json!({"reason": " "}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, _, returned) = ph1
        .post_raw(
            &format!("/api/prescriptions/{renewal}/return"),
            &json!({"reason": "out of stock until next week"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{returned}");
    assert_eq!(returned["status"], "declined");
    assert_eq!(
        returned["statusReasonCodeableConcept"]["text"],
        "out of stock until next week"
    );
    let (_, _, q) = ph1.get_raw("/api/pharmacy/queue").await;
    assert_eq!(q["queue"].as_array().unwrap().len(), 0, "{q}");
    let (s, _, b) = ph1
        .post_raw(
            &format!("/api/prescriptions/{renewal}/dispense"),
            &json!({}),
        )
        .await;
    assert_ne!(s, StatusCode::CREATED, "{b}");
    let (s, _, routed) = gp
        .post_raw(
            &format!("/api/prescriptions/{renewal}/route"),
            &json!({"pharmacy": "late"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{routed}");
    let (_, _, q2) = ph2.get_raw("/api/pharmacy/queue").await;
    assert_eq!(
        q2["queue"][0]["prescription"]["id"],
        renewal.as_str(),
        "{q2}"
    );
    let (s, _, b) = ph2
        .post_raw(
            &format!("/api/prescriptions/{renewal}/dispense"),
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["type"]["coding"][0]["code"], "FF");

    // 7. A refill declined, with a reason the patient sees.
    let (_, _, task) = me
        .post_raw(
            &format!("/api/prescriptions/{renewal}/refill-request"),
            &json!({}),
        )
        .await;
    let task_id = task["id"].as_str().unwrap().to_string();
    let (s, _, _) = gp
        .post_raw(
            &format!("/api/refill-requests/{task_id}/decide"),
            &json!({"approve": false}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a decline needs a reason"
    );
    let (s, _, decided) = gp
        .post_raw(
            &format!("/api/refill-requests/{task_id}/decide"),
            &json!({"approve": false, "reason": "the course is complete; see me first"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{decided}");
    assert_eq!(decided["task"]["status"], "rejected");
    let (_, _, seen) = me.get(&format!("Task/{task_id}")).await;
    assert_eq!(
        seen["statusReason"]["text"],
        "the course is complete; see me first"
    );

    // 8. The steps are in the patient's audit log.
    let (_, _, log) = me.get_raw("/api/patients/pat/audit?_count=500").await;
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["entry"]["action"].as_str())
        .collect();
    for action in [
        "choose-pharmacy",
        "dispense",
        "status:completed",
        "refill-request",
        "refill-approved",
        "return",
        "route",
        "refill-declined",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

on_both_databases!(the_pharmacy_loop_dispenses_returns_and_refills);

async fn doses_are_logged_and_adherence_is_figured(node: Node) {
    seed(&node).await;
    // The patient lives in Berlin (UTC+1 in winter): 08:00 there is 07:00 UTC.
    put(
        &node,
        "Patient/pat",
        json!({"resourceType": "Patient", "id": "pat",
            "generalPractitioner": [{"reference": "Practitioner/gp"}],
            "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/timezone", "valueCode": "Europe/Berlin"}]}),
    )
    .await;
    let gp = practitioner(&node, "gp", "gp");
    let me = crate::documents::patient(&node);
    let dir = gp_keys(&node, &gp);
    let d = dir.path();
    let berlin = time::UtcOffset::from_hms(1, 0, 0).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let today = now.to_offset(berlin).date();
    let day = |n: i64| today - time::Duration::days(n);
    let at = |n: i64, hh: u8, mm: u8| format!("{}T{hh:02}:{mm:02}:00Z", day(n));
    // Once a day at 08:00 local, from four days ago.
    let mut rx = amoxicillin();
    rx["medicationCodeableConcept"] = json!({"coding": [{"system": RXNORM, "code": "314076",
        "display": "lisinopril 10 MG Oral Tablet"}]});
    rx["dosageInstruction"] = json!([{"doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
        "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d", "timeOfDay": ["08:00:00"]}}}]);
    rx["dispenseRequest"] = json!({"quantity": {"value": 10, "unit": "tablet"},
        "numberOfRepeatsAllowed": 5,
        "validityPeriod": {"start": format!("{}T00:00:00+01:00", day(4))}});
    let (s, written) = prescribe(&gp, rx, json!([])).await;
    assert_eq!(s, StatusCode::CREATED, "{written}");
    let id = written["prescription"]["id"].as_str().unwrap().to_string();
    ok(
        &node.doc(
            &gp.token,
            d,
            &["sign-prescription", "--key-file", "gp.key", &id],
        ),
        "sign",
    );

    // Today's doses: one, at 07:00 UTC.
    let (s, _, today_doses) = me.get_raw("/api/patients/pat/doses").await;
    assert_eq!(s, StatusCode::OK, "{today_doses}");
    assert_eq!(today_doses["doses"][0]["due"], at(0, 7, 0), "{today_doses}");
    assert_eq!(
        today_doses["doses"][0]["instructions"],
        "1 tablet, once a day, at 08:00"
    );

    // The log: four days ago from a device app through the FHIR API (no dose named: the
    // nearest), three days ago on time in one tap, two days ago skipped, yesterday late.
    let (s, _, b) = me
        .post(
            "MedicationAdministration",
            &json!({"resourceType": "MedicationAdministration", "status": "completed",
                "medicationCodeableConcept": {"text": "lisinopril"},
                "subject": {"reference": "Patient/pat"},
                "effectiveDateTime": at(4, 7, 20),
                "request": {"reference": format!("MedicationRequest/{id}")}}),
        )
        .await;
    assert!(s.is_success(), "{b}");
    let log = |due: String, status: &str, when: Option<String>| {
        let body = json!({"due": due, "status": status, "at": when});
        let path = format!("/api/prescriptions/{id}/doses");
        let me = &me;
        async move { me.post_raw(&path, &body).await }
    };
    let (s, _, b) = log(at(3, 7, 0), "taken", Some(at(3, 7, 10))).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["status"], "completed");
    let (s, _, b) = log(at(2, 7, 0), "skipped", Some(at(2, 9, 0))).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["status"], "not-done");
    let (s, _, _) = log(at(1, 7, 0), "late", Some(at(1, 11, 0))).await;
    assert_eq!(s, StatusCode::CREATED);
    // No dose is due at 09:00 UTC, and nothing is taken tomorrow.
    let (s, _, b) = log(at(1, 9, 0), "taken", None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, _, b) = log(at(0, 7, 0), "taken", Some(at(-1, 7, 0))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (_, _, two_days_ago) = me
        .get_raw(&format!("/api/patients/pat/doses?date={}", day(2)))
        .await;
    assert_eq!(
        two_days_ago["doses"][0]["logged"], "skipped",
        "{two_days_ago}"
    );

    // Dispenses (hand-worked PDC): 10 days' supply 20 days ago, 10 more 5 days ago. Over
    // the last 30 days the first fill opens the period: days -20..0 are 21 days, of which
    // -20..-11 and -5..0 are covered: 16 of 21. The same over 90 days.
    for (n, days_ago) in [("d1", 20), ("d2", 5)] {
        put(
            &node,
            &format!("MedicationDispense/{n}"),
            json!({"resourceType": "MedicationDispense", "id": n, "status": "completed",
                "medicationCodeableConcept": {"text": "lisinopril"},
                "subject": {"reference": "Patient/pat"},
                "authorizingPrescription": [{"reference": format!("MedicationRequest/{id}")}],
                "quantity": {"value": 10, "unit": "tablet"},
                "daysSupply": {"value": 10, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"},
                "whenHandedOver": at(days_ago, 11, 0)}),
        )
        .await;
    }
    let (s, _, fig) = gp.get_raw("/api/patients/pat/adherence").await;
    assert_eq!(s, StatusCode::OK, "{fig}");
    let a = &fig["adherence"][0];
    assert_eq!(a["prescription"], id.as_str());
    assert_eq!(
        (a["pdc30"]["covered"].as_u64(), a["pdc30"]["days"].as_u64()),
        (Some(16), Some(21)),
        "{a}"
    );
    assert_eq!(a["pdc30"]["belowThreshold"], true);
    assert_eq!(a["pdc90"]["covered"], 16);
    // Doses due in the last 30 days up to an hour ago: the four past days, and today's if
    // it was due more than an hour ago.
    let due_today =
        time::PrimitiveDateTime::new(today, time::Time::from_hms(8, 0, 0).unwrap()).assume_utc();
    let today_due = now >= due_today;
    let d30 = &a["doses30"];
    assert_eq!(d30["due"], 4 + u64::from(today_due), "{d30}");
    assert_eq!(d30["onTime"], 2, "{d30}");
    assert_eq!(d30["skipped"], 1);
    assert_eq!(d30["late"], 1);
    assert_eq!(d30["missing"], u64::from(today_due));
    // Another patient's figures are not the GP's to read without care, nor a stranger's.
    let stranger = practitioner(&node, "stranger", "stranger");
    assert_eq!(
        stranger.get_raw("/api/patients/pat/adherence").await.0,
        StatusCode::NOT_FOUND
    );
}

on_both_databases!(doses_are_logged_and_adherence_is_figured);

/// Dose reminders for a year ahead, in Berlin: 08:00 local is 07:00 UTC in winter and 06:00
/// UTC in summer, so both stand in the queue, and nothing else; a pass run again (every
/// second here) queues nothing twice; stopping the prescription withdraws what was not sent;
/// a patient without an account here gets none.
async fn dose_reminders_keep_local_time_across_daylight_saving(db: crate::harness::Db) {
    let node = Node::start_with_env(
        db,
        &[
            ("MEDMESH_DOSE_REMINDER_SECONDS", "1"),
            ("MEDMESH_DOSE_REMINDER_HORIZON_HOURS", "8784"),
        ],
    )
    .await;
    seed(&node).await;
    put(
        &node,
        "Patient/pat",
        json!({"resourceType": "Patient", "id": "pat",
            "generalPractitioner": [{"reference": "Practitioner/gp"}],
            "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/timezone", "valueCode": "Europe/Berlin"}]}),
    )
    .await;
    // Reminders are for patients with an account here.
    let _me = crate::documents::patient(&node);
    let gp = practitioner(&node, "gp", "gp");
    let dir = gp_keys(&node, &gp);
    let d = dir.path();
    // Another patient, without an account, on the same medication, signed first: the pass
    // that queues the first patient's reminders has seen it, and queued none.
    put(
        &node,
        "Patient/quiet",
        json!({"resourceType": "Patient", "id": "quiet",
            "generalPractitioner": [{"reference": "Practitioner/gp"}]}),
    )
    .await;
    let mut theirs = amoxicillin();
    theirs["subject"] = json!({"reference": "Patient/quiet"});
    theirs["dosageInstruction"] = json!([{"timing": {"repeat": {"frequency": 1, "period": 1,
        "periodUnit": "d", "timeOfDay": ["08:00:00"]}}}]);
    let (s, written) = prescribe(&gp, theirs, json!([])).await;
    assert_eq!(s, StatusCode::CREATED, "{written}");
    let quiet = written["prescription"]["id"].as_str().unwrap().to_string();
    ok(
        &node.doc(
            &gp.token,
            d,
            &["sign-prescription", "--key-file", "gp.key", &quiet],
        ),
        "sign",
    );
    let mut rx = amoxicillin();
    rx["dosageInstruction"] = json!([{"timing": {"repeat": {"frequency": 1, "period": 1,
        "periodUnit": "d", "timeOfDay": ["08:00:00"]}}}]);
    let (s, written) = prescribe(&gp, rx, json!([])).await;
    assert_eq!(s, StatusCode::CREATED, "{written}");
    let id = written["prescription"]["id"].as_str().unwrap().to_string();
    ok(
        &node.doc(
            &gp.token,
            d,
            &["sign-prescription", "--key-file", "gp.key", &id],
        ),
        "sign",
    );
    let mine = format!(
        "FROM notification_outbox WHERE channel = 'scheduled' AND status = 'pending' AND dedupe_key LIKE '%dose:{id}:%'"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let total = loop {
        let n = node.sql_i64(&format!("SELECT count(*) {mine}")).await;
        if n >= 365 {
            break n;
        }
        assert!(std::time::Instant::now() < deadline, "{n} reminders queued");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let at_utc_hour = |h: i64| {
        let q = format!(
            "SELECT count(*) {mine} AND (next_attempt_micros / 1000000) % 86400 = {}",
            h * 3600
        );
        let node = &node;
        async move { node.sql_i64(&q).await }
    };
    assert_eq!(
        node.sql_i64(&format!(
            "SELECT count(*) FROM notification_outbox WHERE dedupe_key LIKE '%dose:{quiet}:%'"
        ))
        .await,
        0,
        "no account, no reminders"
    );
    let winter = at_utc_hour(7).await;
    let summer = at_utc_hour(6).await;
    assert!(
        winter > 100 && summer > 100,
        "winter {winter}, summer {summer}"
    );
    assert_eq!(winter + summer, total, "every reminder at 08:00 in Berlin");
    assert!(total <= 367, "one a day, not one a pass: {total}");
    // Stopped: the reminders not sent are withdrawn with it.
    let (s, b) = status(&gp, &id, "stopped", Some("side effects")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(node.sql_i64(&format!("SELECT count(*) {mine}")).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dose_reminders_keep_local_time_across_daylight_saving_on_sqlite() {
    dose_reminders_keep_local_time_across_daylight_saving(crate::harness::Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dose_reminders_keep_local_time_across_daylight_saving_on_postgres() {
    dose_reminders_keep_local_time_across_daylight_saving(crate::harness::Db::Postgres).await;
}

/// A simvastatin prescription of `tablets` 40 mg tablets once a day.
fn simvastatin(tablets: u32) -> Value {
    json!({
        "resourceType": "MedicationRequest",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "200345",
            "display": "simvastatin 40 MG Oral Tablet"}]},
        "subject": {"reference": "Patient/pat"},
        "dosageInstruction": [{
            "doseAndRate": [{"doseQuantity": {"value": tablets, "unit": "tablet"}}],
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}],
        "dispenseRequest": {"quantity": {"value": 30 * tablets, "unit": "tablet"},
            "numberOfRepeatsAllowed": 1},
        "substitution": {"allowedBoolean": true}
    })
}

/// The knowledge base: a drug-drug interaction from the ONC list that ships with the node
/// (simvastatin with clarithromycin), and a dose limit from a file the node was started
/// with, each a warning until overridden with a reason, recorded as a DetectedIssue (DRG,
/// DOSEH) that signing does not ask again; and a knowledge file that cannot be used stops
/// the node before it opens anything.
async fn interactions_and_dose_limits_warn_until_overridden(db: crate::harness::Db) {
    let files = tempfile::tempdir().unwrap();
    let formulary = files.path().join("formulary.toml");
    std::fs::write(
        &formulary,
        "[source]\nname = \"Test formulary\"\n\n[[dose_limit]]\ningredient = \"simvastatin\"\nmax_daily_mg = 40\nsource = \"the test formulary\"\n",
    )
    .unwrap();
    let node = Node::start_with_env(
        db,
        &[(
            "MEDMESH_MEDICATION_KNOWLEDGE_FILES",
            formulary.to_str().unwrap(),
        )],
    )
    .await;
    seed(&node).await;
    put(
        &node,
        "MedicationRequest/clari",
        json!({"resourceType": "MedicationRequest", "id": "clari",
            "status": "active", "intent": "order",
            "medicationCodeableConcept": {"text": "Clarithromycin 500 mg tablets"},
            "subject": {"reference": "Patient/pat"}}),
    )
    .await;
    let gp = practitioner(&node, "gp", "gp");
    let dir = gp_keys(&node, &gp);

    // Two 40 mg tablets a day of simvastatin, while on clarithromycin: both checks warn.
    let (s, warnings) = prescribe(&gp, simvastatin(2), json!([])).await;
    assert_eq!(s, StatusCode::CONFLICT, "{warnings}");
    assert_eq!(
        warning_keys(&warnings),
        vec!["interaction:clari", "dose:simvastatin"]
    );
    let texts: Vec<&str> = warnings["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["diagnostics"].as_str().unwrap())
        .collect();
    assert!(
        texts[0].contains("HMG-CoA reductase inhibitor"),
        "{}",
        texts[0]
    );
    assert!(texts[0].contains("ONC high-priority"), "{}", texts[0]);
    assert!(
        texts[1].contains("80 mg of simvastatin a day"),
        "{}",
        texts[1]
    );
    assert!(
        texts[1].contains("40 mg a day of the test formulary"),
        "{}",
        texts[1]
    );
    // One tablet a day is within the limit: only the interaction is left.
    let (s, warnings) = prescribe(&gp, simvastatin(1), json!([])).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(warning_keys(&warnings), vec!["interaction:clari"]);
    assert_eq!(node.total("DetectedIssue").await, 0, "nothing written");

    // Overridden, each with a reason: written with a DetectedIssue each.
    let (s, written) = prescribe(
        &gp,
        simvastatin(2),
        json!([
            {"warning": "interaction:clari", "reason": "Clarithromycin ends tomorrow; statin starts after"},
            {"warning": "dose:simvastatin", "reason": "Lipid clinic's advice, reviewed"}]),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{written}");
    let id = written["prescription"]["id"].as_str().unwrap().to_string();
    let issues = written["detectedIssues"].as_array().unwrap();
    assert_eq!(issues.len(), 2);
    assert_eq!(issues[0]["code"]["coding"][0]["code"], "DRG");
    assert_eq!(issues[0]["severity"], "high");
    assert_eq!(
        issues[0]["implicated"][1]["reference"],
        "MedicationRequest/clari"
    );
    assert_eq!(issues[1]["code"]["coding"][0]["code"], "DOSEH");
    assert_eq!(
        issues[1]["implicated"].as_array().unwrap().len(),
        1,
        "a dose implicates only its prescription"
    );
    // Signing runs the checks again and finds both recorded: it is not asked again.
    let out = node.doc(
        &gp.token,
        dir.path(),
        &["sign-prescription", "--key-file", "gp.key", &id],
    );
    ok(&out, "sign-prescription");
    let (s, _, rx) = gp.get(&format!("MedicationRequest/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(rx["status"], "active");
    assert_eq!(node.total("DetectedIssue?patient=pat").await, 2);

    // A knowledge file that cannot be used stops the node, with the file and the reason.
    let bad = files.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[source]\nname = \"x\"\n[[dose_limit]]\ningredient = \"simvastatin\"\nmax_daily_mg = 0\nsource = \"x\"\n",
    )
    .unwrap();
    let out = node
        .command_with_env("MEDMESH_MEDICATION_KNOWLEDGE_FILES", bad.to_str().unwrap())
        .arg("serve")
        .args(node.store_args())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("positive max_daily_mg"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactions_and_dose_limits_warn_until_overridden_on_sqlite() {
    interactions_and_dose_limits_warn_until_overridden(crate::harness::Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactions_and_dose_limits_warn_until_overridden_on_postgres() {
    interactions_and_dose_limits_warn_until_overridden(crate::harness::Db::Postgres).await;
}

/// A patient of `org` with the GP as their general practitioner, on a signed once-a-day
/// prescription of which 10 days' supply was handed over 20 days ago: 10 of 21 days
/// covered (48%). Returns the prescription's id.
async fn patient_under_the_threshold(
    node: &Node,
    gp: &Node,
    keys: &std::path::Path,
    patient: &str,
    org: &str,
) -> String {
    put(
        node,
        &format!("Patient/{patient}"),
        json!({"resourceType": "Patient", "id": patient,
            "managingOrganization": {"reference": format!("Organization/{org}")},
            "generalPractitioner": [{"reference": "Practitioner/gp"}]}),
    )
    .await;
    let mut rx = amoxicillin();
    rx["subject"] = json!({"reference": format!("Patient/{patient}")});
    rx["dosageInstruction"] = json!([{"doseAndRate": [{"doseQuantity": {"value": 1, "unit": "capsule"}}],
        "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}]);
    let (s, written) = prescribe(gp, rx, json!([])).await;
    assert_eq!(s, StatusCode::CREATED, "{written}");
    let id = written["prescription"]["id"].as_str().unwrap().to_string();
    ok(
        &node.doc(
            &gp.token,
            keys,
            &["sign-prescription", "--key-file", "gp.key", &id],
        ),
        "sign",
    );
    let handed = time::OffsetDateTime::now_utc() - time::Duration::days(20);
    put(
        node,
        &format!("MedicationDispense/{patient}-d1"),
        json!({"resourceType": "MedicationDispense", "id": format!("{patient}-d1"),
            "status": "completed",
            "medicationCodeableConcept": {"text": "amoxicillin"},
            "subject": {"reference": format!("Patient/{patient}")},
            "authorizingPrescription": [{"reference": format!("MedicationRequest/{id}")}],
            "quantity": {"value": 10, "unit": "capsule"},
            "whenHandedOver": format!("{}T11:00:00Z", handed.date())}),
    )
    .await;
    id
}

/// The review Tasks raised for prescription `id`, waited for until there are `n`.
async fn reviews(node: &Node, id: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let b = node
            .search(&format!(
                "Task?focus=MedicationRequest/{id}&code=https://medmesh.dev/fhir/CodeSystem/medication-task|adherence-review"
            ))
            .await;
        let found: Vec<Value> = b["entry"]
            .as_array()
            .map(|e| e.iter().map(|x| x["resource"].clone()).collect())
            .unwrap_or_default();
        if found.len() >= n {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {n} adherence reviews for {id}: {b}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Adherence alerts, for an organization that opted in (every second here): a prescription
/// under 80% of days covered raises a review Task for its prescriber, who is told; a later
/// pass raises no second one; a patient of an organization that did not opt in raises none.
async fn adherence_alerts_reach_the_care_team(db: crate::harness::Db) {
    let node = Node::start_with_env(db, &[("MEDMESH_ADHERENCE_ALERT_SECONDS", "1")]).await;
    seed(&node).await;
    put(
        &node,
        "Organization/practice",
        json!({"resourceType": "Organization", "id": "practice", "name": "The practice",
            "extension": [{"url": "https://medmesh.dev/fhir/StructureDefinition/adherence-alerts", "valueBoolean": true}]}),
    )
    .await;
    put(
        &node,
        "Organization/elsewhere",
        json!({"resourceType": "Organization", "id": "elsewhere", "name": "Elsewhere"}),
    )
    .await;
    let gp = practitioner(&node, "gp", "gp");
    let dir = gp_keys(&node, &gp);
    let d = dir.path();
    let first = patient_under_the_threshold(&node, &gp, d, "pat", "practice").await;
    let task = &reviews(&node, &first, 1).await[0];
    assert_eq!(task["status"], "requested");
    assert_eq!(task["owner"]["reference"], "Practitioner/gp");
    assert_eq!(task["for"]["reference"], "Patient/pat");
    assert_eq!(
        task["description"],
        "Days covered by dispenses over the last 30 days: 48% (10 of 21), under 80%."
    );
    let notices = told(&gp, "/api/account/inbox", 1).await;
    assert!(
        !notices[0].to_string().contains("amoxicillin"),
        "the notice names no medication: {}",
        notices[0]
    );
    // A patient of an organization that did not opt in, then one more of the practice's:
    // once the latter's alert is raised, a pass has seen all three.
    let quiet = patient_under_the_threshold(&node, &gp, d, "quiet", "elsewhere").await;
    let second = patient_under_the_threshold(&node, &gp, d, "second", "practice").await;
    reviews(&node, &second, 1).await;
    assert_eq!(reviews(&node, &first, 0).await.len(), 1, "no second alert");
    assert!(reviews(&node, &quiet, 0).await.is_empty(), "not opted in");
    // The GP's worklist has both reviews; one is closed with what was done.
    let (s, _, list) = gp.get_raw("/api/worklist/medications").await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let open = list["adherenceReviews"].as_array().unwrap();
    assert_eq!(open.len(), 2, "{list}");
    assert_eq!(open[0]["prescription"], first.as_str(), "oldest first");
    assert!(open[0]["note"].as_str().unwrap().contains("48%"));
    let task_id = task["id"].as_str().unwrap();
    let path = format!("/api/adherence-reviews/{task_id}/close");
    let (s, _, closed) = gp
        .post_raw(
            &path,
            &json!({"note": "Called: cost of the medicine; switched to generic"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{closed}");
    assert_eq!(closed["status"], "completed");
    let (s, _, _) = gp.post_raw(&path, &json!({})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "closed already");
    let (_, _, list) = gp.get_raw("/api/worklist/medications").await;
    assert_eq!(list["adherenceReviews"].as_array().unwrap().len(), 1);
    // Closed within 30 days of raising: later passes raise no new one for it.
    assert_eq!(reviews(&node, &first, 0).await.len(), 1);

    // Audited as the node's adherence alerts (its reads, and the two alerts).
    assert!(
        node.sql_i64("SELECT count(*) FROM audit_log WHERE actor = 'adherence-alerts'")
            .await
            >= 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adherence_alerts_reach_the_care_team_on_sqlite() {
    adherence_alerts_reach_the_care_team(crate::harness::Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adherence_alerts_reach_the_care_team_on_postgres() {
    adherence_alerts_reach_the_care_team(crate::harness::Db::Postgres).await;
}
