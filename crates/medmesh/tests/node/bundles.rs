//! Transactions and batches.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::Node;
use crate::on_both_databases;

async fn transaction_resolves_references_atomically(node: Node) {
    node.put("Organization/org9", &json!({"resourceType": "Organization", "id": "org9", "identifier": [{"system": "urn:org", "value": "O9"}]})).await;
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "hr"},
            "subject": {"reference": "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059"}, "performer": [{"reference": "Organization?identifier=urn:org|O9"}]},
         "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059", "resource": {"resourceType": "Patient", "name": [{"family": "Tx"}], "identifier": [{"system": "urn:mrn", "value": "T1"}]},
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:mrn|T1"}},
        {"resource": {"resourceType": "Patient", "id": "put-1", "name": [{"family": "Put"}]}, "request": {"method": "PUT", "url": "Patient/put-1"}},
        {"request": {"method": "GET", "url": "Patient?family=Tx"}}
    ]});
    let (s, _, resp) = node.post("", &tx).await;
    assert_eq!(s, StatusCode::OK, "{resp}");
    assert_eq!(resp["type"], "transaction-response");
    let e = resp["entry"].as_array().unwrap();
    assert_eq!(e[0]["response"]["status"], "201 Created");
    assert_eq!(e[1]["response"]["status"], "201 Created");
    assert_eq!(e[2]["response"]["status"], "201 Created");
    assert_eq!(
        e[3]["resource"]["total"], 1,
        "the GET runs after the writes and sees them"
    );
    let obs_loc = e[0]["response"]["location"].as_str().unwrap();
    let pat_loc = e[1]["response"]["location"].as_str().unwrap();
    let pat_id = pat_loc.split('/').nth(1).unwrap();
    let (_, _, obs) = node.get(obs_loc.split("/_history").next().unwrap()).await;
    assert_eq!(
        obs["subject"]["reference"],
        format!("Patient/{pat_id}"),
        "urn:uuid resolved"
    );
    assert_eq!(
        obs["performer"][0]["reference"], "Organization/org9",
        "conditional reference resolved"
    );

    // The same transaction again: the ifNoneExist finds the patient (200), nothing duplicates.
    let (s, _, resp) = node.post("", &tx).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(resp["entry"][1]["response"]["status"], "200 OK");
    assert_eq!(node.total("Patient?identifier=urn:mrn|T1").await, 1);

    // Spec order: a DELETE and a POST of the same identity in one transaction.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "Order"}]}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": "Patient/put-1"}}
    ]});
    let (s, _, resp) = node.post("", &tx).await;
    assert_eq!(s, StatusCode::OK, "{resp}");
    assert_eq!(node.get("Patient/put-1").await.0, StatusCode::GONE);
}

async fn broken_transaction_writes_nothing(node: Node) {
    let before = node.total("Patient").await;
    let audit_before = node.total("Observation").await;
    // Valid entries first, then an invalid one: nothing may be written.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "Ghost"}]}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "id": "ghost-2", "name": [{"family": "Ghost"}]}, "request": {"method": "PUT", "url": "Patient/ghost-2"}},
        {"resource": {"resourceType": "Observation", "status": "not-a-status", "code": {"text": "x"}}, "request": {"method": "POST", "url": "Observation"}}
    ]});
    let (s, _, out) = node.post("", &tx).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    assert!(
        out["issue"][0]["expression"][0]
            .as_str()
            .unwrap()
            .starts_with("Bundle.entry[2].resource"),
        "{out}"
    );
    assert_eq!(node.total("Patient").await, before);
    assert_eq!(node.total("Observation").await, audit_before);
    assert_eq!(node.get("Patient/ghost-2").await.0, StatusCode::NOT_FOUND);
    // A conditional reference that matches nothing also aborts the whole transaction.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "Ghost"}]}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient?identifier=urn:none|0"}}, "request": {"method": "POST", "url": "Observation"}}
    ]});
    let (s, _, _) = node.post("", &tx).await;
    assert!(s.is_client_error());
    assert_eq!(node.total("Patient").await, before);
    // Malformed bundles.
    assert_eq!(
        node.post("", &json!({"resourceType": "Bundle", "type": "collection"}))
            .await
            .0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        node.post("", &json!({"resourceType": "Patient"})).await.0,
        StatusCode::BAD_REQUEST
    );
    let (s, _, b) = node.post("", &json!({"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "POST", "url": "Patient"}}]})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
}

async fn batch_entries_succeed_or_fail_alone(node: Node) {
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "B1"}]}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "bogus"}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/missing"}},
        {"request": {"method": "GET", "url": "Patient?family=B1"}}
    ]});
    let (s, _, resp) = node.post("", &batch).await;
    assert_eq!(s, StatusCode::OK, "{resp}");
    let e = resp["entry"].as_array().unwrap();
    assert_eq!(e[0]["response"]["status"], "201 Created");
    assert_eq!(e[1]["response"]["status"], "422");
    assert_eq!(
        e[1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(e[2]["response"]["status"], "404");
    assert_eq!(e[3]["resource"]["total"], 1);
}

on_both_databases!(
    transaction_resolves_references_atomically,
    broken_transaction_writes_nothing,
    batch_entries_succeed_or_fail_alone
);
