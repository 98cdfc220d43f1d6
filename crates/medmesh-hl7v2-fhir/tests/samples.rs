//! Every shared ADT and ORU sample maps to a transaction whose resources the node's own
//! validator accepts; a representative set of values is checked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use std::path::{Path, PathBuf};

use medmesh_hl7v2::{Batch, Message};
use medmesh_hl7v2_fhir::{Profile, SUPPORTED, map};
use serde_json::Value;

fn shared(file: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata");
    assert!(
        dir.is_dir(),
        "the shared test data is missing: {}",
        dir.display()
    );
    dir.join(file)
}

fn message(file: &str) -> Message {
    Message::parse(&std::fs::read(shared(file)).unwrap()).unwrap()
}

fn resources<'a>(bundle: &'a Value, rt: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(move |r| r["resourceType"] == rt)
}

#[test]
fn every_supported_sample_maps_to_valid_resources() {
    let defs = medmesh_fhir::definitions::definitions().unwrap();
    let mut mapped = 0;
    let mut kinds = std::collections::BTreeSet::new();
    let mut refused = Vec::new();
    for dir in ["hl7v2-microsoft-fhir-converter", "hl7v2-hapi-hl7v2"] {
        for entry in std::fs::read_dir(shared(dir)).unwrap() {
            let path = entry.unwrap().path();
            let Ok(batch) = Batch::parse(&std::fs::read(&path).unwrap()) else {
                continue;
            };
            for m in &batch.messages {
                let (code, trigger, _) = m.message_type();
                let kind = format!("{code}^{trigger}");
                match map(m, &Profile::for_sender("sample")) {
                    Ok(out) => {
                        assert!(SUPPORTED.contains(&kind.as_str()));
                        for e in out.bundle["entry"].as_array().unwrap() {
                            let issues = medmesh_fhir::validate::validate(defs, &e["resource"]);
                            assert!(
                                issues.is_empty(),
                                "{}: {kind}: {issues:?}\n{}",
                                path.display(),
                                e["resource"]
                            );
                        }
                        assert!(out.patient_key.is_some());
                        mapped += 1;
                        kinds.insert(kind);
                    }
                    Err(e) if e.code == 200 => {
                        assert!(!SUPPORTED.contains(&kind.as_str()), "{kind}")
                    }
                    // Required content missing from the sample itself: an AE, with the field.
                    Err(e) if matches!(e.code, 100 | 101) && e.field.is_some() => {
                        refused.push(format!(
                            "{}: {kind}: {e}",
                            path.file_name().unwrap().to_string_lossy()
                        ));
                    }
                    Err(e) => panic!("{}: {kind}: {e}", path.display()),
                }
            }
        }
    }
    println!("refused:\n{}", refused.join("\n"));
    // Seven samples lack what their kind needs: a supply order (RQD) with no OBR, an order
    // with no order number, documents whose ED points at content sent elsewhere.
    assert!(refused.len() <= 7, "{refused:#?}");
    for r in &refused {
        assert!(
            [
                "an order needs an OBR segment",
                "no placer or filler order number",
                "the document has no content"
            ]
            .iter()
            .any(|why| r.contains(why)),
            "{r}"
        );
    }
    assert!(mapped >= 80, "mapped {mapped}");
    for k in [
        "ADT^A01", "ADT^A03", "ADT^A08", "ADT^A40", "ORU^R01", "ORM^O01", "OML^O21", "SIU^S12",
        "SIU^S15", "MDM^T02", "RDE^O11", "RDS^O13", "VXU^V04",
    ] {
        assert!(kinds.contains(k), "no sample of {k}");
    }
}

#[test]
fn an_admission_maps_demographics_visit_next_of_kin_and_allergy() {
    let out = map(
        &message("hl7v2-microsoft-fhir-converter/ADT-A01-01.hl7"),
        &Profile::for_sender("GHH"),
    )
    .unwrap();
    let b = &out.bundle;
    let patient = resources(b, "Patient").next().unwrap();
    assert_eq!(patient["name"][0]["family"], "EVERYMAN");
    assert_eq!(patient["name"][0]["given"][0], "ADAM");
    assert_eq!(patient["gender"], "male");
    assert_eq!(patient["birthDate"], "1988-08-18");
    assert_eq!(patient["identifier"][0]["value"], "PATID1234");
    let put = &b["entry"][0]["request"];
    assert_eq!(put["method"], "PUT");
    assert!(
        put["url"]
            .as_str()
            .unwrap()
            .starts_with("Patient?identifier=")
    );
    let enc = resources(b, "Encounter").next().unwrap();
    assert_eq!(enc["status"], "in-progress");
    assert_eq!(enc["class"]["code"], "PRENC");
    assert_eq!(enc["subject"]["reference"], b["entry"][0]["fullUrl"]);
    assert!(resources(b, "RelatedPerson").next().is_some());
    let allergy = resources(b, "AllergyIntolerance").next().unwrap();
    assert_eq!(allergy["code"]["coding"][0]["code"], "P");
    assert_eq!(allergy["category"][0], "environment");
}

#[test]
fn a_lab_result_maps_values_units_ranges_flags_and_status() {
    let out = map(
        &message("hl7v2-microsoft-fhir-converter/LAB-ORU-1.hl7"),
        &Profile::for_sender("lab"),
    )
    .unwrap();
    let b = &out.bundle;
    // The patient is created only if none matches: a lab never overwrites registration.
    assert_eq!(b["entry"][0]["request"]["method"], "POST");
    assert!(
        b["entry"][0]["request"]["ifNoneExist"]
            .as_str()
            .unwrap()
            .starts_with("identifier=")
    );
    let obs: Vec<&Value> = resources(b, "Observation").collect();
    let rbc = obs
        .iter()
        .find(|o| o["code"]["coding"][0]["code"] == "11273-0")
        .unwrap();
    assert_eq!(rbc["valueQuantity"]["value"], 4.06);
    assert_eq!(rbc["valueQuantity"]["unit"], "tera.l-1");
    assert_eq!(rbc["status"], "preliminary");
    assert_eq!(rbc["interpretation"][0]["coding"][0]["code"], "N");
    assert_eq!(rbc["effectiveDateTime"], "2014-10-06T06:27:00+07:00");
    let pending = obs
        .iter()
        .find(|o| o["code"]["coding"][0]["code"] == "11156-7")
        .unwrap();
    assert_eq!(pending["status"], "registered");
    assert!(pending.get("valueQuantity").is_none());
    let reports: Vec<&Value> = resources(b, "DiagnosticReport").collect();
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0]["status"], "final");
    assert_eq!(reports[0]["result"].as_array().unwrap().len(), 5);
    assert!(out.final_result);
    assert!(resources(b, "Specimen").next().is_some());

    let flagged = map(
        &message("hl7v2-microsoft-fhir-converter/ORU-R01-01.hl7"),
        &Profile::for_sender("lab"),
    )
    .unwrap();
    let obs: Vec<&Value> = resources(&flagged.bundle, "Observation").collect();
    let hr = obs
        .iter()
        .find(|o| o["valueQuantity"]["value"] == 27.0 || o["valueQuantity"]["value"] == 60.0);
    let _ = hr;
    let culture = obs
        .iter()
        .find(|o| o["code"]["coding"][0]["code"] == "625-4")
        .unwrap();
    assert_eq!(
        culture["valueCodeableConcept"]["coding"][0]["code"],
        "27268008"
    );
    assert_eq!(culture["referenceRange"][0]["low"]["value"], 70.0);
    assert_eq!(culture["referenceRange"][0]["high"]["value"], 80.0);
    assert_eq!(culture["interpretation"][0]["coding"][0]["code"], "A");
}

#[test]
fn a_corrected_result_targets_the_same_observation() {
    let text = |status: &str, value: &str| {
        format!(
            "MSH|^~\\&|LAB|H|||20240101120000||ORU^R01|C{status}|P|2.5.1\rPID|1||42^^^H^MR||Doe^Jane\rOBR|1||ORD7^LAB|2345-7^Glucose^LN|||20240101110000\rOBX|1|NM|2345-7^Glucose^LN||{value}|mg/dL|70-99|H|||{status}\r"
        )
    };
    let first = map(
        &Message::parse_str(&text("F", "180")).unwrap(),
        &Profile::for_sender("lab"),
    )
    .unwrap();
    let fixed = map(
        &Message::parse_str(&text("C", "108")).unwrap(),
        &Profile::for_sender("lab"),
    )
    .unwrap();
    let url = |b: &Value| {
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["resource"]["resourceType"] == "Observation")
            .unwrap()["request"]["url"]
            .clone()
    };
    assert_eq!(url(&first.bundle), url(&fixed.bundle));
    let obs = resources(&fixed.bundle, "Observation").next().unwrap();
    assert_eq!(obs["status"], "corrected");
    assert_eq!(obs["valueQuantity"]["system"], "http://unitsofmeasure.org");
    assert_eq!(obs["valueQuantity"]["code"], "mg/dL");
    assert_eq!(
        resources(&fixed.bundle, "DiagnosticReport").next().unwrap()["status"],
        "corrected"
    );
}

#[test]
fn a_merge_links_both_records() {
    let out = map(
        &message("hl7v2-microsoft-fhir-converter/ADT-A40-01.hl7"),
        &Profile::for_sender("GHH"),
    )
    .unwrap();
    let patients: Vec<&Value> = resources(&out.bundle, "Patient").collect();
    assert_eq!(patients.len(), 2);
    assert_eq!(patients[0]["active"], false);
    assert_eq!(patients[0]["link"][0]["type"], "replaced-by");
    assert_eq!(patients[1]["link"][0]["type"], "replaces");
    assert_eq!(
        patients[0]["link"][0]["other"]["reference"],
        out.bundle["entry"][1]["fullUrl"]
    );
}

#[test]
fn an_encapsulated_pdf_becomes_a_document_reference() {
    use base64::Engine;
    let pdf = base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.4\n%test\n");
    let text = format!(
        "MSH|^~\\&|LAB|H|||20240101120000||ORU^R01|P1|P|2.5.1\rPID|1||42^^^H^MR\rOBR|1||ORD8^LAB|11502-2^Lab report^LN\rOBX|1|ED|11502-2^Lab report^LN||LAB^AP^PDF^Base64^{pdf}||||||F\r"
    );
    let out = map(
        &Message::parse_str(&text).unwrap(),
        &Profile::for_sender("lab"),
    )
    .unwrap();
    let doc = resources(&out.bundle, "DocumentReference").next().unwrap();
    assert_eq!(
        doc["content"][0]["attachment"]["contentType"],
        "application/pdf"
    );
    // The bytes are set aside for the vault: no version of the resource holds them.
    assert!(doc["content"][0]["attachment"]["data"].is_null());
    assert_eq!(out.documents.len(), 1);
    assert_eq!(out.documents[0].1["data"], pdf);
    assert_eq!(out.documents[0].1["contentType"], "application/pdf");
}

#[test]
fn errors_say_where_and_why() {
    let bad = |body: &str| {
        map(
            &Message::parse_str(&format!("MSH|^~\\&|LAB|H|||2024||ORU^R01|1|P|2.5\r{body}"))
                .unwrap(),
            &Profile::default(),
        )
        .unwrap_err()
    };
    let e = bad("OBR|1||O1|X^Y^LN");
    assert_eq!(
        (e.segment.as_deref(), e.field, e.code),
        (Some("PID"), Some(3), 100)
    );
    let e = bad("PID|1||^^^H\rOBR|1||O1|X^Y^LN");
    assert_eq!((e.field, e.code), (Some(3), 101));
    let e = bad("PID|1||1^^^H\rOBR|1||O1|X^Y^LN\rOBX|1|NM|X^Y^LN||high");
    assert_eq!(
        e.to_string(),
        "OBX-5: OBX-2 says NM but OBX-5 is not a number"
    );
    let e = bad("PID|1||1^^^H||||2024-01-01");
    assert_eq!((e.field, e.code), (Some(7), 102));
    let e = map(
        &Message::parse_str("MSH|^~\\&|A|B|||2024||ZZZ^Z01|1|P|2.5").unwrap(),
        &Profile::default(),
    )
    .unwrap_err();
    assert_eq!(e.code, 200);
    let err = e.to_ack_error();
    assert_eq!(err.location.unwrap().field, Some(9));
}

#[test]
fn a_profile_reads_from_toml_and_translates_codes() {
    let profile: Profile = toml::from_str(
        r#"
        system_base = "https://lab.example.org/hl7"
        timezone = "+01:00"
        identifier_systems = { H = "https://hospital.example.org/mrn" }
        [[translations]]
        from_system = "99LAB"
        from_code = "GLU"
        to_system = "http://loinc.org"
        to_code = "2345-7"
        display = "Glucose"
    "#,
    )
    .unwrap();
    profile.validate().unwrap();
    let m = Message::parse_str("MSH|^~\\&|LAB|H|||2024||ORU^R01|1|P|2.5\rPID|1||42^^^H^MR\rOBR|1||O1|PANEL^Panel^99LAB|||202401011200\rOBX|1|NM|GLU^Glucose^99LAB||5.5|mmol/L||||F").unwrap();
    let out = map(&m, &profile).unwrap();
    let p = resources(&out.bundle, "Patient").next().unwrap();
    assert_eq!(
        p["identifier"][0]["system"],
        "https://hospital.example.org/mrn"
    );
    let obs = resources(&out.bundle, "Observation").next().unwrap();
    assert_eq!(obs["code"]["coding"][1]["code"], "2345-7");
    assert_eq!(obs["effectiveDateTime"], "2024-01-01T12:00:00+01:00");
    assert!(
        toml::from_str::<Profile>("timezone = \"CET\"")
            .unwrap()
            .validate()
            .is_err()
    );
    assert!(toml::from_str::<Profile>("unknown = 1").is_err());
}

#[test]
fn orders_appointments_documents_medications_and_vaccines() {
    let p = Profile::for_sender("GHH");
    let one = |file: &str, rt: &str| -> Value {
        let out = map(
            &message(&format!("hl7v2-microsoft-fhir-converter/{file}")),
            &p,
        )
        .unwrap();
        resources(&out.bundle, rt)
            .next()
            .unwrap_or_else(|| panic!("{file}: no {rt}"))
            .clone()
    };
    let appt = one("SIU-S12-01.hl7", "Appointment");
    assert_eq!(appt["status"], "booked");
    assert_eq!(appt["start"], "2021-09-24T09:30:00+02:15");
    assert_eq!(appt["serviceType"][0]["coding"][0]["code"], "76164006");
    assert!(appt["participant"].as_array().unwrap().len() >= 3);
    assert_eq!(one("SIU-S15-01.hl7", "Appointment")["status"], "cancelled");
    let vax = one("VXU-V04-01.hl7", "Immunization");
    assert_eq!(vax["vaccineCode"]["coding"][0]["code"], "49281021588");
    assert_eq!(vax["occurrenceDateTime"], "2021-08-18");
    assert_eq!(vax["lotNumber"], "315841");
    assert_eq!(vax["primarySource"], true);
    assert_eq!(vax["route"]["coding"][0]["code"], "C28161");
    let order = one("ORM-O01-01.hl7", "ServiceRequest");
    assert_eq!(order["code"]["coding"][0]["code"], "24725-4");
    assert_eq!(order["identifier"][0]["value"], "1101");
    assert_eq!(order["intent"], "order");
    let rx = one("RDE-O11-01.hl7", "MedicationRequest");
    assert_eq!(
        rx["medicationCodeableConcept"]["coding"][0]["code"],
        "0143963401"
    );
    assert_eq!(rx["identifier"][0]["value"], "1163422591");
    let dispense = map(
        &message("hl7v2-microsoft-fhir-converter/RDS-O13-01.hl7"),
        &p,
    )
    .unwrap();
    let d = resources(&dispense.bundle, "MedicationDispense")
        .next()
        .unwrap();
    assert_eq!(d["status"], "completed");
    assert!(
        d["authorizingPrescription"][0]["reference"]
            .as_str()
            .unwrap()
            .starts_with("urn:uuid:")
    );
    let doc = one("MDM-T02-02.hl7", "DocumentReference");
    assert!(doc["content"][0]["attachment"]["contentType"].is_string());
    let mdm = map(
        &message("hl7v2-microsoft-fhir-converter/MDM-T02-02.hl7"),
        &p,
    )
    .unwrap();
    assert!(
        mdm.documents[0].1["data"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
}
