//! Bulk Data export: kick-off, polling, files, filters, and jobs that survive a restart.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::Node;
use crate::on_both_databases;

pub(crate) async fn kickoff(node: &Node, path: &str) -> String {
    let r = node
        .auth(node.client.get(node.url(path)))
        .header("prefer", "respond-async")
        .header("accept", "application/fhir+json");
    let (s, h, b) = node.send(r).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{path}: {b}");
    h["content-location"].to_str().unwrap().to_string()
}

pub(crate) async fn wait_for(node: &Node, status_url: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, _, b) = node.send(node.auth(node.client.get(status_url))).await;
        match s {
            StatusCode::OK => return b,
            StatusCode::ACCEPTED => {}
            other => panic!("export status {other}: {b}"),
        }
        assert!(Instant::now() < deadline, "export did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) async fn lines(node: &Node, url: &str) -> Vec<Value> {
    let r = node.auth(node.client.get(url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub(crate) fn output<'a>(manifest: &'a Value, t: &str) -> Option<&'a Value> {
    manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == t)
}

async fn bulk_export_levels_and_filters(node: Node) {
    node.put(
        "Patient/a",
        &json!({"resourceType": "Patient", "id": "a", "gender": "female"}),
    )
    .await;
    node.put(
        "Patient/b",
        &json!({"resourceType": "Patient", "id": "b", "gender": "male"}),
    )
    .await;
    node.put(
        "Organization/o",
        &json!({"resourceType": "Organization", "id": "o", "name": "Org"}),
    )
    .await;
    for (id, p, code) in [("x1", "a", "1"), ("x2", "a", "2"), ("x3", "b", "1")] {
        node.put(&format!("Observation/{id}"), &json!({"resourceType": "Observation", "id": id, "status": "final", "code": {"coding": [{"system": "urn:c", "code": code}]}, "subject": {"reference": format!("Patient/{p}")}})).await;
    }
    node.put("Group/g", &json!({"resourceType": "Group", "id": "g", "type": "person", "actual": true, "member": [{"entity": {"reference": "Patient/b"}}]})).await;

    // System level.
    let m = wait_for(&node, &kickoff(&node, "$export").await).await;
    assert_eq!(m["requiresAccessToken"], true);
    assert_eq!(output(&m, "Observation").unwrap()["count"], 3);
    assert_eq!(output(&m, "Organization").unwrap()["count"], 1);
    let obs = lines(
        &node,
        output(&m, "Observation").unwrap()["url"].as_str().unwrap(),
    )
    .await;
    assert_eq!(obs.len(), 3);
    assert!(obs.iter().all(|o| o["resourceType"] == "Observation"));
    // The files need the token.
    let r = node
        .client
        .get(output(&m, "Observation").unwrap()["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // _type and _typeFilter.
    let m = wait_for(
        &node,
        &kickoff(
            &node,
            "$export?_type=Observation,Patient&_typeFilter=Observation%3Fcode%3Durn%3Ac%7C1",
        )
        .await,
    )
    .await;
    assert!(output(&m, "Organization").is_none());
    assert_eq!(output(&m, "Observation").unwrap()["count"], 2);
    assert_eq!(output(&m, "Patient").unwrap()["count"], 2);

    // Patient level excludes what is in no patient's compartment.
    let m = wait_for(&node, &kickoff(&node, "Patient/$export").await).await;
    assert!(output(&m, "Organization").is_none());
    assert_eq!(output(&m, "Observation").unwrap()["count"], 3);
    assert_eq!(output(&m, "Patient").unwrap()["count"], 2);

    // Group level: only member b.
    let m = wait_for(&node, &kickoff(&node, "Group/g/$export").await).await;
    assert_eq!(output(&m, "Observation").unwrap()["count"], 1);
    assert_eq!(output(&m, "Patient").unwrap()["count"], 1);

    // _since: only what changed after.
    let (_, _, later) = node
        .put(
            "Patient/a",
            &json!({"resourceType": "Patient", "id": "a", "gender": "other"}),
        )
        .await;
    let since = later["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .replace(':', "%3A");
    let m = wait_for(
        &node,
        &kickoff(&node, &format!("$export?_since={since}")).await,
    )
    .await;
    assert_eq!(output(&m, "Patient").unwrap()["count"], 1);
    assert!(output(&m, "Observation").is_none());

    // Kick-off without Prefer: respond-async, and bad parameters.
    assert_eq!(node.get("$export").await.0, StatusCode::BAD_REQUEST);
    let r = node
        .auth(node.client.get(node.url("$export?_type=Nope")))
        .header("prefer", "respond-async");
    assert_eq!(node.send(r).await.0, StatusCode::BAD_REQUEST);
    // A narrow token may not export.
    let narrow = node.mint_token("system/Patient.rs");
    let r = node
        .client
        .get(node.url("$export"))
        .bearer_auth(narrow)
        .header("prefer", "respond-async");
    assert_eq!(node.send(r).await.0, StatusCode::FORBIDDEN);
    // Cancel deletes the job.
    let url = kickoff(&node, "$export").await;
    let (s, _, _) = node.send(node.auth(node.client.delete(&url))).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(
        node.send(node.auth(node.client.get(&url))).await.0,
        StatusCode::NOT_FOUND
    );
}

async fn export_jobs_survive_a_restart(mut node: Node) {
    for i in 0..300 {
        node.put(
            &format!("Patient/p{i}"),
            &json!({"resourceType": "Patient", "id": format!("p{i}")}),
        )
        .await;
    }
    let status = kickoff(&node, "$export?_type=Patient").await;
    // Crash the node at once; the job was persisted before the kick-off answered.
    let old_base = node.base.clone();
    node.restart().await;
    let status = status.replace(&old_base, &node.base);
    let m = wait_for(&node, &status).await;
    let m: Value = serde_json::from_str(&m.to_string().replace(&old_base, &node.base)).unwrap();
    assert_eq!(output(&m, "Patient").unwrap()["count"], 300);
    let rows = lines(
        &node,
        output(&m, "Patient").unwrap()["url"].as_str().unwrap(),
    )
    .await;
    assert_eq!(rows.len(), 300, "resumed from scratch, no duplicate lines");
}

on_both_databases!(
    bulk_export_levels_and_filters,
    export_jobs_survive_a_restart
);
