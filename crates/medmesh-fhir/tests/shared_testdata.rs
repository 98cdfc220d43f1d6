//! Validation and index extraction over the public sample data in `../shared/testdata`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design

use std::path::PathBuf;

use medmesh_fhir::{definitions, index, validate};
use serde_json::Value;

fn testdata(dir: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/testdata")
        .join(dir);
    assert!(
        p.is_dir(),
        "shared test data missing at {} (clone beside ../shared)",
        p.display()
    );
    p
}

fn json_files(dir: &str) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(testdata(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn every_synthea_resource_is_valid_and_indexes() {
    let d = definitions().unwrap();
    let mut count = 0;
    for (name, bundle) in json_files("fhir-r4-synthea-smart-generated-sample-data") {
        assert!(
            validate::validate(d, &bundle).is_empty(),
            "{name}: {:?}",
            validate::validate(d, &bundle).first()
        );
        for e in bundle["entry"].as_array().unwrap() {
            let r = &e["resource"];
            let issues = validate::validate(d, r);
            assert!(
                issues.is_empty(),
                "{name} {}: {issues:?}",
                r["resourceType"]
            );
            assert!(!index::extract(d, r).is_empty());
            count += 1;
        }
    }
    assert_eq!(count, 1074);
}

#[test]
fn official_examples_validate_except_known_invalid_ones() {
    let d = definitions().unwrap();
    // These four break R4 rules: a Questionnaire item without linkId, and references to types
    // the element does not allow. Each must be rejected at the right location.
    let known_invalid = [
        (
            "bundle-questionnaire.json",
            "Questionnaire.item[0].item[0].linkId",
        ),
        ("devicemetric-example.json", "DeviceMetric.parent.reference"),
        (
            "deviceusestatement-example.json",
            "DeviceUseStatement.reasonReference[0].reference",
        ),
        (
            "medicationrequest0301.json",
            "MedicationRequest.dispenseRequest.performer.reference",
        ),
    ];
    let mut checked = 0;
    for (name, r) in json_files("fhir-r4-examples-fhir-test-cases") {
        let issues = validate::validate(d, &r);
        match known_invalid.iter().find(|(n, _)| *n == name) {
            Some((_, location)) => assert!(
                issues
                    .iter()
                    .any(|i| i.expression.as_deref() == Some(location)),
                "{name}: expected an issue at {location}, got {issues:?}"
            ),
            None => assert!(issues.is_empty(), "{name}: {issues:?}"),
        }
        checked += 1;
    }
    assert_eq!(checked, 72);
}
