//! Real data: the Synthea sample through `medmesh import`, and the official R4 examples.

use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{Node, shared_testdata};
use crate::on_both_databases;

async fn synthea_import_counts_and_searches(node: Node) {
    node.load_synthea();
    for (t, n) in [
        ("Patient", 8),
        ("Organization", 102),
        ("Practitioner", 102),
        ("Observation", 478),
        ("Encounter", 66),
        ("Claim", 79),
        ("Condition", 25),
        ("Immunization", 52),
    ] {
        assert_eq!(node.total(&format!("{t}?_summary=count")).await, n, "{t}");
    }
    assert_eq!(node.total("Patient?family=conn").await, 1);
    assert_eq!(node.total("Patient?name=gustavo").await, 1);
    assert_eq!(
        node.total("Patient?family=mejia").await,
        1,
        "accent-insensitive"
    );
    assert_eq!(
        node.total("Observation?code=http://loinc.org|8302-2").await,
        37
    );
    let liz = node.ids("Patient?family=Conn").await.remove(0);
    let b = node
        .search(&format!(
            "Observation?patient={liz}&code=http://loinc.org|8302-2"
        ))
        .await;
    assert!(b["total"].as_u64().unwrap() >= 1);
    // Expected figures come from the bundles themselves.
    let bundle_types = |file: &str| -> Vec<String> {
        let b: Value = serde_json::from_slice(
            &std::fs::read(
                shared_testdata("fhir-r4-synthea-smart-generated-sample-data").join(file),
            )
            .unwrap(),
        )
        .unwrap();
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["resourceType"].as_str().unwrap().to_string())
            .collect()
    };
    let trey = bundle_types("Trey_Leffler_250ebf4a-c818-428c-81a6-c0e46a816512.json");
    assert_eq!(
        node.total("Encounter?patient.family=Leffler").await,
        trey.iter().filter(|t| *t == "Encounter").count() as u64
    );
    let liz_types = bundle_types("Liz_Conn_27c911c6-f045-4ffa-af5d-6eba57ac94b2.json");
    assert_eq!(
        node.total(&format!("Observation?subject=Patient/{liz}"))
            .await,
        liz_types.iter().filter(|t| *t == "Observation").count() as u64
    );
    let everything = node
        .search(&format!("Patient/{liz}/$everything?_count=1000"))
        .await;
    let in_compartment = liz_types
        .iter()
        .filter(|t| !matches!(t.as_str(), "Organization" | "Practitioner"))
        .count();
    assert_eq!(
        everything["entry"].as_array().unwrap().len(),
        in_compartment,
        "Liz's bundle minus her organization and practitioner"
    );
    // Re-import: nothing duplicates and no new versions are written.
    let history_before = node.search("_history?_count=1").await["total"].clone();
    node.load_synthea();
    assert_eq!(node.total("Patient?_summary=count").await, 8);
    assert_eq!(node.total("Observation?_summary=count").await, 478);
    assert_eq!(
        node.search("_history?_count=1").await["total"],
        history_before
    );
}

async fn import_reports_failures_and_runs_beside_the_node(node: Node) {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.ndjson");
    std::fs::write(&good, "{\"resourceType\":\"Patient\",\"id\":\"n1\"}\n\n{\"resourceType\":\"Patient\",\"id\":\"n2\",\"gender\":\"bogus\"}\nnot json\n{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"}}\n").unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{ nope").unwrap();
    let single = dir.path().join("single.json");
    std::fs::write(
        &single,
        r#"{"resourceType":"Practitioner","id":"solo","name":[{"family":"Solo"}]}"#,
    )
    .unwrap();
    let out = node.import(&[dir.path().to_path_buf()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "failures make the exit code non-zero: {stdout}"
    );
    assert!(stdout.contains("3 failures:"), "{stdout}");
    assert!(
        stdout.contains("good.ndjson entry 3"),
        "the bad line is named: {stdout}"
    );
    assert!(stdout.contains("good.ndjson entry 4"), "{stdout}");
    assert!(stdout.contains("bad.json"), "{stdout}");
    assert!(
        stdout.contains("Patient") && stdout.contains("Practitioner"),
        "counts per type: {stdout}"
    );
    // Everything good landed, despite the failures around it.
    assert_eq!(node.get("Patient/n1").await.0, StatusCode::OK);
    assert_eq!(node.get("Practitioner/solo").await.0, StatusCode::OK);
    assert_eq!(node.get("Patient/n2").await.0, StatusCode::NOT_FOUND);
    assert_eq!(node.total("Observation").await, 1);
    let missing = node.import(&[PathBuf::from("/nonexistent/file.json")]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such file"));
}

async fn official_examples_round_trip(node: Node) {
    let dir = shared_testdata("fhir-r4-examples-fhir-test-cases");
    let invalid = [
        "bundle-questionnaire.json",
        "devicemetric-example.json",
        "deviceusestatement-example.json",
        "medicationrequest0301.json",
        // A classic R4 query subscription: this node takes the R4 backport's topics
        // (docs/notifications.md), and says so about `criteria`.
        "subscription-example.json",
    ];
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut round_tripped = 0;
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let r: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let rt = r["resourceType"].as_str().unwrap().to_string();
        let (s, _, stored) = match r["id"].as_str() {
            Some(id) => node.put(&format!("{rt}/{id}"), &r).await,
            None => node.post(&rt, &r).await,
        };
        let id = stored["id"].as_str().unwrap_or_default().to_string();
        if invalid.contains(&name.as_str()) {
            assert_eq!(
                s,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{name} must be rejected: {stored}"
            );
            assert!(
                stored["issue"][0]["expression"][0].as_str().is_some(),
                "{name}: located: {stored}"
            );
            continue;
        }
        assert!(
            s == StatusCode::CREATED || s == StatusCode::OK,
            "{name}: {s} {stored}"
        );
        // A Binary read answers its bytes unless FHIR JSON is asked for.
        let (s, _, read) = node
            .send(
                node.auth(node.client.get(node.url(&format!("{rt}/{id}"))))
                    .header("accept", "application/fhir+json"),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{name}");
        if rt == "Binary" {
            let (s, h, raw) =
                crate::documents::get_bytes(&node, &node.url(&format!("Binary/{id}")), true).await;
            assert_eq!(s, StatusCode::OK, "{name}: the bytes");
            assert_eq!(h["content-type"], r["contentType"].as_str().unwrap());
            // base64Binary may hold white space.
            let data: String = r["data"]
                .as_str()
                .unwrap()
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            use base64::Engine;
            let expected = base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap();
            assert_eq!(raw, expected, "{name}: the decoded bytes");
        }
        // Everything the example said is still there, unchanged, apart from meta.
        let mut expected = r.clone();
        let mut got = read.clone();
        if r.get("id").is_none() {
            got.as_object_mut().unwrap().remove("id");
        }
        for v in [&mut expected, &mut got] {
            if let Some(m) = v.get_mut("meta").and_then(Value::as_object_mut) {
                m.remove("versionId");
                m.remove("lastUpdated");
                if m.is_empty() {
                    v.as_object_mut().unwrap().remove("meta");
                }
            }
        }
        assert_eq!(got, expected, "{name} round trip");
        round_tripped += 1;
    }
    assert_eq!(round_tripped, 67);
}

on_both_databases!(
    synthea_import_counts_and_searches,
    import_reports_failures_and_runs_beside_the_node,
    official_examples_round_trip
);
