//! Read, vread, create, update, delete, patch, conditional operations, versioning and history.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Node, next_link};
use crate::on_both_databases;

fn patient(family: &str) -> Value {
    json!({"resourceType": "Patient", "name": [{"family": family, "given": ["Ann"]}], "gender": "female", "birthDate": "1980-01-02",
           "identifier": [{"system": "urn:test:mrn", "value": format!("mrn-{family}")}]})
}

async fn health_metadata_and_access(node: Node) {
    let r = node
        .client
        .get(format!("{}/healthz", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (s, _, cap) = node.send(node.client.get(node.url("metadata"))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(cap["fhirVersion"], "4.0.1");
    let resources = cap["rest"][0]["resource"].as_array().unwrap();
    assert_eq!(resources.len(), 147, "every R4 resource type");
    let obs = resources
        .iter()
        .find(|r| r["type"] == "Observation")
        .unwrap();
    let params: Vec<&str> = obs["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "code",
        "subject",
        "date",
        "value-quantity",
        "code-value-quantity",
        "_id",
        "_lastUpdated",
        "_tag",
    ] {
        assert!(params.contains(&p), "{p} advertised");
    }
    assert!(
        !resources.iter().any(|r| r["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["type"] == "special")),
        "special params are not supported, so not advertised"
    );

    // No token, a garbage token, a token signed by another key: 401 with an OperationOutcome.
    let (s, h, b) = node.send(node.client.get(node.url("Patient"))).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(b["resourceType"], "OperationOutcome");
    assert!(h.get("www-authenticate").is_some());
    let (s, _, _) = node
        .send(
            node.client
                .get(node.url("Patient"))
                .bearer_auth("not.a.jwt"),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let other = Node::start(crate::harness::Db::Sqlite).await;
    let (s, _, _) = node
        .send(
            node.client
                .get(node.url("Patient"))
                .bearer_auth(&other.token),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a token from another node's key"
    );
    // A narrow scope: reads of Patient only.
    let narrow = node.mint_token("system/Patient.rs");
    let (s, _, _) = node
        .send(node.client.get(node.url("Patient")).bearer_auth(&narrow))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, b) = node
        .send(
            node.client
                .get(node.url("Observation"))
                .bearer_auth(&narrow),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, _, _) = node
        .send(
            node.client
                .post(node.url("Patient"))
                .bearer_auth(&narrow)
                .json(&patient("X")),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // XML is not served.
    let (s, _, b) = node
        .send(
            node.auth(node.client.get(node.url("Patient")))
                .header("accept", "application/fhir+xml"),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(b["resourceType"], "OperationOutcome");
    let (s, _, _) = node.get("Patient?_format=xml").await;
    assert_eq!(s, StatusCode::NOT_ACCEPTABLE);
    let (s, _, _) = node
        .send(
            node.auth(node.client.get(node.url("Patient")))
                .header("accept", "application/json"),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
}

async fn create_read_update_delete(node: Node) {
    let (s, h, created) = node.post("Patient", &patient("Smith")).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["meta"]["versionId"], "1");
    assert!(
        created["meta"]["lastUpdated"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(h["etag"], "W/\"1\"");
    assert!(
        h["location"]
            .to_str()
            .unwrap()
            .ends_with(&format!("/fhir/Patient/{id}/_history/1"))
    );
    assert!(h.get("last-modified").is_some());

    let (s, h, read) = node.get(&format!("Patient/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(read, created);
    assert_eq!(h["content-type"], "application/fhir+json; charset=utf-8");

    let mut changed = read.clone();
    changed["gender"] = json!("other");
    let (s, h, updated) = node.put(&format!("Patient/{id}"), &changed).await;
    assert_eq!(s, StatusCode::OK, "{updated}");
    assert_eq!(updated["meta"]["versionId"], "2");
    assert_eq!(h["etag"], "W/\"2\"");

    // If-Match: the stale version loses with 412, the current one wins.
    let stale = node
        .auth(node.client.put(node.url(&format!("Patient/{id}"))))
        .header("if-match", "W/\"1\"")
        .json(&changed);
    let (s, _, b) = node.send(stale).await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{b}");
    changed["gender"] = json!("male");
    let fresh = node
        .auth(node.client.put(node.url(&format!("Patient/{id}"))))
        .header("if-match", "W/\"2\"")
        .json(&changed);
    assert_eq!(node.send(fresh).await.0, StatusCode::OK);

    // An identical update writes no new version.
    let (_, _, current) = node.get(&format!("Patient/{id}")).await;
    let (s, _, same) = node.put(&format!("Patient/{id}"), &current).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(same["meta"]["versionId"], "3");

    // vread of each version; a missing version is 404.
    let (s, _, v1) = node.get(&format!("Patient/{id}/_history/1")).await;
    assert_eq!((s, v1["gender"].clone()), (StatusCode::OK, json!("female")));
    assert_eq!(
        node.get(&format!("Patient/{id}/_history/9")).await.0,
        StatusCode::NOT_FOUND
    );

    // Prefer: return=minimal and return=OperationOutcome.
    let r = node
        .auth(node.client.post(node.url("Patient")))
        .header("prefer", "return=minimal")
        .json(&patient("Minimal"));
    let (s, h, b) = node.send(r).await;
    assert_eq!((s, b), (StatusCode::CREATED, Value::Null));
    assert!(h.get("location").is_some());
    let r = node
        .auth(node.client.post(node.url("Patient")))
        .header("prefer", "return=OperationOutcome")
        .json(&patient("Outcome"));
    let (s, _, b) = node.send(r).await;
    assert_eq!(
        (s, b["resourceType"].clone()),
        (StatusCode::CREATED, json!("OperationOutcome"))
    );

    // Delete: a versioned tombstone; read is 410 Gone, history keeps every version.
    let (s, _, _) = node.delete(&format!("Patient/{id}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, h, b) = node.get(&format!("Patient/{id}")).await;
    assert_eq!(s, StatusCode::GONE, "{b}");
    assert_eq!(h["etag"], "W/\"4\"");
    let (_, _, hist) = node.get(&format!("Patient/{id}/_history")).await;
    assert_eq!(hist["type"], "history");
    assert_eq!(hist["total"], 4);
    assert_eq!(hist["entry"][0]["request"]["method"], "DELETE");
    assert_eq!(hist["entry"][3]["resource"]["meta"]["versionId"], "1");
    assert_eq!(
        node.delete(&format!("Patient/{id}")).await.0,
        StatusCode::NO_CONTENT,
        "deleting again is fine"
    );
    assert_eq!(
        node.get("Patient/does-not-exist").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(node.get("NotAType/1").await.0, StatusCode::NOT_FOUND);

    // Update as create with a client id, then recreate after delete.
    let mut p = patient("ClientId");
    p["id"] = json!("client-chosen-1");
    let (s, h, b) = node.put("Patient/client-chosen-1", &p).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(h["etag"], "W/\"1\"");
    let (s, _, b) = node.put("Patient/other-id", &p).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "id mismatch: {b}");
}

async fn conditional_operations_and_patch(node: Node) {
    let cond = |n: &Node| {
        n.auth(n.client.post(n.url("Patient")))
            .header("if-none-exist", "identifier=urn:test:mrn|mrn-Cond")
            .json(&patient("Cond"))
    };
    let (s1, _, a) = node.send(cond(&node)).await;
    let (s2, _, b) = node.send(cond(&node)).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(a["id"], b["id"], "conditional create finds the first");

    // Concurrent conditional creates of the same identity: one creates, the others find it.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let req = node
            .auth(node.client.post(node.url("Patient")))
            .header("if-none-exist", "identifier=urn:test:mrn|mrn-Race")
            .json(&patient("Race"));
        tasks.push(tokio::spawn(
            async move { req.send().await.map(|r| r.status()) },
        ));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().unwrap());
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(
        node.total("Patient?identifier=urn:test:mrn|mrn-Race").await,
        1
    );

    // Conditional update: by identifier.
    let mut p = patient("Cond");
    p["gender"] = json!("unknown");
    let (s, _, u) = node
        .put("Patient?identifier=urn:test:mrn|mrn-Cond", &p)
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["id"], a["id"]);
    assert_eq!(u["meta"]["versionId"], "2");
    let (s, _, created) = node
        .put("Patient?identifier=urn:test:mrn|mrn-New", &patient("New"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "no match creates: {created}");

    // Several matches: 412 for conditional create, update and delete.
    node.post("Patient", &patient("Twin")).await;
    node.post("Patient", &patient("Twin")).await;
    let r = node
        .auth(node.client.post(node.url("Patient")))
        .header("if-none-exist", "family=Twin")
        .json(&patient("Twin"));
    assert_eq!(node.send(r).await.0, StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        node.put("Patient?family=Twin", &patient("Twin")).await.0,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        node.delete("Patient?family=Twin").await.0,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        node.delete("Patient?identifier=urn:test:mrn|mrn-New")
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        node.total("Patient?identifier=urn:test:mrn|mrn-New").await,
        0
    );
    // An unknown parameter must never turn a conditional delete into "delete everything".
    assert_eq!(
        node.delete("Patient?nonsense=1").await.0,
        StatusCode::BAD_REQUEST
    );

    // JSON Patch.
    let id = a["id"].as_str().unwrap();
    let patch = json!([{"op": "replace", "path": "/gender", "value": "female"}, {"op": "add", "path": "/active", "value": true}]);
    let r = node
        .auth(node.client.patch(node.url(&format!("Patient/{id}"))))
        .header("content-type", "application/json-patch+json")
        .json(&patch);
    let (s, _, patched) = node.send(r).await;
    assert_eq!(s, StatusCode::OK, "{patched}");
    assert_eq!(
        (
            patched["gender"].clone(),
            patched["active"].clone(),
            patched["meta"]["versionId"].clone()
        ),
        (json!("female"), json!(true), json!("3"))
    );
    let bad = json!([{"op": "replace", "path": "/gender", "value": "nope"}]);
    let r = node
        .auth(node.client.patch(node.url(&format!("Patient/{id}"))))
        .header("content-type", "application/json-patch+json")
        .json(&bad);
    assert_eq!(
        node.send(r).await.0,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a patch that makes the resource invalid"
    );
    let r = node
        .auth(node.client.patch(node.url(&format!("Patient/{id}"))))
        .header("content-type", "application/json-patch+json")
        .header("if-match", "W/\"1\"")
        .json(&patch);
    assert_eq!(node.send(r).await.0, StatusCode::PRECONDITION_FAILED);
}

async fn history_levels_and_filters(node: Node) {
    let (_, _, a) = node.post("Patient", &patient("Hist")).await;
    let id = a["id"].as_str().unwrap().to_string();
    let t1 = a["meta"]["lastUpdated"].as_str().unwrap().to_string();
    let mut b = a.clone();
    b["active"] = json!(true);
    let (_, _, b) = node.put(&format!("Patient/{id}"), &b).await;
    let t2 = b["meta"]["lastUpdated"].as_str().unwrap().to_string();
    node.post("Observation", &json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": format!("Patient/{id}")}})).await;

    let (_, _, sys) = node.get("_history").await;
    assert_eq!(sys["total"], 3);
    let (_, _, ty) = node.get("Patient/_history").await;
    assert_eq!(ty["total"], 2);
    let (_, _, since) = node
        .get(&format!("Patient/{id}/_history?_since={}", urlencode(&t2)))
        .await;
    assert_eq!(since["total"], 1);
    assert_eq!(since["entry"][0]["resource"]["meta"]["versionId"], "2");
    let (_, _, at) = node
        .get(&format!("Patient/{id}/_history?_at={}", urlencode(&t1)))
        .await;
    assert_eq!(at["total"], 1, "{at}");
    assert_eq!(at["entry"][0]["resource"]["meta"]["versionId"], "1");
    // Paging with _count.
    let (_, _, p1) = node.get("_history?_count=2").await;
    assert_eq!(p1["entry"].as_array().unwrap().len(), 2);
    let next = next_link(&p1).unwrap();
    let (s, _, p2) = node.send(node.auth(node.client.get(next))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p2["entry"].as_array().unwrap().len(), 1);
    assert_eq!(
        node.get("_history?_since=yesterday").await.0,
        StatusCode::BAD_REQUEST
    );
}

pub fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}

on_both_databases!(
    health_metadata_and_access,
    create_read_update_delete,
    conditional_operations_and_patch,
    history_levels_and_filters
);
