//! A patient-context token reaches one patient's data and nothing else, on every channel:
//! read, vread, search (with `_total`, chains, `_has`), `_include`/`_revinclude`, history,
//! `$everything`, `$export`, writes and transactions. Granular scopes narrow within a type.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Node, ids_of, matches};
use crate::on_both_databases;

fn obs(id: &str, patient: &str, category: &str, extra: Value) -> Value {
    let mut o = json!({
        "resourceType": "Observation", "id": id, "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")},
    });
    if let (Some(o), Some(e)) = (o.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    o
}

async fn seed(node: &Node) {
    for (id, gender) in [("a", "female"), ("b", "female")] {
        let (s, _, b) = node
            .put(
                &format!("Patient/{id}"),
                &json!({"resourceType": "Patient", "id": id, "gender": gender}),
            )
            .await;
        assert!(s.is_success(), "{b}");
    }
    node.put(
        "Practitioner/dr",
        &json!({"resourceType": "Practitioner", "id": "dr"}),
    )
    .await;
    let writes = [
        obs("b-lab", "b", "laboratory", json!({})),
        // a's observations: one points at b's (has-member), one names a practitioner.
        obs(
            "a-lab",
            "a",
            "laboratory",
            json!({"hasMember": [{"reference": "Observation/b-lab"}], "performer": [{"reference": "Practitioner/dr"}]}),
        ),
        obs("a-vital", "a", "vital-signs", json!({})),
    ];
    for o in writes {
        let id = o["id"].as_str().unwrap().to_string();
        let (s, _, b) = node.put(&format!("Observation/{id}"), &o).await;
        assert!(s.is_success(), "{b}");
    }
    // A second version of b's observation, for history.
    node.put(
        "Observation/b-lab",
        &obs("b-lab", "b", "laboratory", json!({"status": "amended"})),
    )
    .await;
    // A Bundle is outside the compartment and may hold anyone's data.
    node.put(
        "Bundle/loose",
        &json!({"resourceType": "Bundle", "id": "loose", "type": "collection"}),
    )
    .await;
}

fn as_patient(node: &Node, scope: &str, patient: &str) -> Node {
    let out = node.cli(&[
        "admin",
        "token",
        "--scope",
        scope,
        "--patient",
        patient,
        "--user",
        "app",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    node.with_token(String::from_utf8(out.stdout).unwrap().trim())
}

async fn reads_and_searches_stay_in_the_compartment(node: Node) {
    seed(&node).await;
    let a = as_patient(&node, "patient/*.rs", "a");
    assert_eq!(a.get("Observation/a-lab").await.0, StatusCode::OK);
    assert_eq!(a.get("Patient/a").await.0, StatusCode::OK);
    // Another patient's data answers as absent, not forbidden.
    for path in [
        "Observation/b-lab",
        "Patient/b",
        "Observation/b-lab/_history/1",
        "Bundle/loose",
    ] {
        assert_eq!(a.get(path).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    // A shared directory resource is readable.
    assert_eq!(a.get("Practitioner/dr").await.0, StatusCode::OK);

    // Search, with an accurate total.
    assert_eq!(a.ids("Observation").await.len(), 2);
    assert_eq!(a.total("Observation").await, 2);
    assert_eq!(a.total("Patient").await, 1);
    assert_eq!(a.total("Observation?subject=Patient/b").await, 0);
    assert_eq!(a.total("Bundle").await, 0);
    // Chains and _has run inside the compartment only.
    assert_eq!(
        a.total("Observation?subject:Patient.gender=female").await,
        2
    );
    assert_eq!(
        a.ids("Patient?_has:Observation:subject:category=laboratory")
            .await,
        vec!["a"]
    );

    // _include never pulls in another patient's resource; _revinclude neither.
    let b = a
        .search(
            "Observation?_id=a-lab&_include=Observation:has-member&_include=Observation:performer",
        )
        .await;
    assert_eq!(ids_of(&b), vec!["Observation/a-lab", "Practitioner/dr"]);
    let b = a
        .search("Patient?_revinclude=Observation:subject&_revinclude=Observation:has-member")
        .await;
    assert_eq!(
        ids_of(&b),
        vec!["Observation/a-lab", "Observation/a-vital", "Patient/a"]
    );
    let b = a.search("Observation?_id=a-lab&_include=Observation:has-member:iterate&_include:iterate=Observation:subject").await;
    assert!(
        !ids_of(&b)
            .iter()
            .any(|i| i.ends_with("/b") || i.contains("b-lab")),
        "{b}"
    );

    // History at every level shows only a's versions, and no total.
    let (_, _, h) = a.get("Observation/b-lab/_history").await;
    assert!(ids_of(&h).is_empty(), "{h}");
    let (s, _, h) = a.get("Observation/_history").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ids_of(&h), vec!["Observation/a-lab", "Observation/a-vital"]);
    assert!(h.get("total").is_none());
    let (_, _, h) = a.get("_history").await;
    assert!(
        ids_of(&h)
            .iter()
            .all(|i| !i.contains("b-lab") && i != "Patient/b" && i != "Bundle/loose"),
        "{h}"
    );

    // $everything: own record only.
    assert_eq!(
        a.get("Patient/b/$everything").await.0,
        StatusCode::NOT_FOUND
    );
    let (s, _, e) = a.get("Patient/a/$everything").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        ids_of(&e),
        vec!["Observation/a-lab", "Observation/a-vital", "Patient/a"]
    );

    // The search returned by the whole system for the same query shows what was hidden.
    assert_eq!(node.total("Observation").await, 3);
    assert_eq!(matches(&node.search("Patient").await).len(), 2);
}

async fn granular_scopes_narrow_within_a_type(node: Node) {
    seed(&node).await;
    let lab = as_patient(
        &node,
        "patient/Observation.rs?category=laboratory patient/Patient.rs",
        "a",
    );
    assert_eq!(lab.get("Observation/a-lab").await.0, StatusCode::OK);
    assert_eq!(
        lab.get("Observation/a-vital").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(lab.ids("Observation").await, vec!["a-lab"]);
    let (_, _, e) = lab.get("Patient/a/$everything").await;
    assert_eq!(ids_of(&e), vec!["Observation/a-lab", "Patient/a"]);
    assert_eq!(
        lab.get("Condition").await.0,
        StatusCode::FORBIDDEN,
        "no scope for Condition"
    );
}

async fn writes_stay_in_the_compartment(node: Node) {
    seed(&node).await;
    let a = as_patient(&node, "patient/*.cruds", "a");
    let (s, _, _) = a
        .post("Observation", &obs("x", "a", "laboratory", json!({})))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _, _) = a
        .post("Observation", &obs("x", "b", "laboratory", json!({})))
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "writing into another patient's record"
    );
    let (s, _, _) = a
        .put(
            "Observation/b-lab",
            &obs("b-lab", "a", "laboratory", json!({})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "taking over another patient's resource"
    );
    let (s, _, _) = a
        .put(
            "Observation/a-lab",
            &obs("a-lab", "b", "laboratory", json!({})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "moving a resource to another patient"
    );
    assert_eq!(a.delete("Observation/b-lab").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        node.get("Observation/b-lab").await.0,
        StatusCode::OK,
        "still there"
    );
    // Conditional delete only sees the compartment.
    a.delete("Observation?category=laboratory&subject=Patient/b")
        .await;
    assert_eq!(node.get("Observation/b-lab").await.0, StatusCode::OK);
    // A transaction is checked entry by entry, atomically.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": obs("t1", "a", "laboratory", json!({})), "request": {"method": "POST", "url": "Observation"}},
        {"resource": obs("t2", "b", "laboratory", json!({})), "request": {"method": "POST", "url": "Observation"}},
    ]});
    let (s, _, _) = a.post("", &tx).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        node.total("Observation").await,
        4,
        "nothing of the refused transaction landed"
    );
}

async fn export_is_limited_to_the_patient(node: Node) {
    seed(&node).await;
    let a = as_patient(&node, "patient/*.rs", "a");
    for path in ["$export", "Group/g/$export"] {
        let r = a
            .auth(a.client.get(a.url(path)))
            .header("prefer", "respond-async");
        assert_eq!(a.send(r).await.0, StatusCode::FORBIDDEN, "{path}");
    }
    let r = a
        .auth(a.client.get(a.url("Patient/$export")))
        .header("prefer", "respond-async");
    let (s, h, b) = a.send(r).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let status = h["content-location"].to_str().unwrap().to_string();
    let manifest = loop {
        let (s, _, b) = a.send(a.auth(a.client.get(&status))).await;
        if s == StatusCode::OK {
            break b;
        }
        assert_eq!(s, StatusCode::ACCEPTED);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut seen = Vec::new();
    for o in manifest["output"].as_array().unwrap() {
        let text = a
            .auth(a.client.get(o["url"].as_str().unwrap()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for l in text.lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            seen.push(format!(
                "{}/{}",
                v["resourceType"].as_str().unwrap(),
                v["id"].as_str().unwrap()
            ));
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        vec!["Observation/a-lab", "Observation/a-vital", "Patient/a"]
    );
}

async fn a_patient_scope_needs_a_patient_context(node: Node) {
    seed(&node).await;
    let t = node.mint_token("patient/*.rs");
    let n = node.with_token(&t);
    assert_eq!(n.get("Observation").await.0, StatusCode::FORBIDDEN);
}

on_both_databases!(
    reads_and_searches_stay_in_the_compartment,
    granular_scopes_narrow_within_a_type,
    writes_stay_in_the_compartment,
    export_is_limited_to_the_patient,
    a_patient_scope_needs_a_patient_context,
);
