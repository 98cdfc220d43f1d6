//! Search: every parameter type, modifiers, prefixes, chains, `_has`, includes, sorting,
//! paging, and the result parameters.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Node, matches, next_link};
use crate::on_both_databases;

/// A small world: two patients, observations, an organization, a practitioner.
async fn seed(node: &Node) -> (String, String) {
    let org = json!({"resourceType": "Organization", "id": "org1", "name": "General Hospital", "identifier": [{"system": "urn:org", "value": "G1"}]});
    node.put("Organization/org1", &org).await;
    let dr = json!({"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "House", "given": ["Gregory"]}]});
    node.put("Practitioner/dr1", &dr).await;
    let p1 = json!({"resourceType": "Patient", "id": "p1", "active": true, "gender": "female", "birthDate": "1970-05-15",
        "name": [{"family": "Mejía", "given": ["Ana", "María"]}], "telecom": [{"system": "phone", "value": "555-0101"}],
        "identifier": [{"system": "urn:mrn", "value": "A1", "type": {"text": "Medical record"}}],
        "address": [{"line": ["1 Main St"], "city": "Springfield", "postalCode": "12345"}],
        "managingOrganization": {"reference": "Organization/org1"}, "generalPractitioner": [{"reference": "Practitioner/dr1"}],
        "meta": {"tag": [{"system": "urn:tags", "code": "vip"}], "profile": ["http://example.org/fhir/StructureDefinition/my-patient"],
                 "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}});
    node.put("Patient/p1", &p1).await;
    let p2 = json!({"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1990",
        "name": [{"family": "Smith", "given": ["John"]}], "managingOrganization": {"reference": "Organization/org1"}});
    node.put("Patient/p2", &p2).await;
    let obs = |id: &str, pat: &str, code: &str, value: f64, date: &str| {
        json!({"resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": "Body height"}], "text": "Body height"},
        "subject": {"reference": format!("Patient/{pat}")}, "effectiveDateTime": date,
        "valueQuantity": {"value": value, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}})
    };
    node.put(
        "Observation/o1",
        &obs("o1", "p1", "8302-2", 150.0, "2020-01-10T10:00:00Z"),
    )
    .await;
    node.put(
        "Observation/o2",
        &obs("o2", "p1", "8302-2", 160.5, "2021-06-01T10:00:00Z"),
    )
    .await;
    node.put(
        "Observation/o3",
        &obs("o3", "p2", "8302-2", 180.0, "2022-03-03T10:00:00Z"),
    )
    .await;
    node.put(
        "Observation/o4",
        &obs("o4", "p2", "29463-7", 80.0, "2022-03-03T10:00:00Z"),
    )
    .await;
    let vs = json!({"resourceType": "ValueSet", "id": "vs1", "status": "active", "url": "http://example.org/fhir/ValueSet/colors"});
    node.put("ValueSet/vs1", &vs).await;
    let rv = json!({"resourceType": "RiskAssessment", "id": "ra1", "status": "final", "subject": {"reference": "Patient/p1"},
        "prediction": [{"probabilityDecimal": 0.25}]});
    node.put("RiskAssessment/ra1", &rv).await;
    // Dates of day and year precision on a parameter kept in clear (birth dates are blinded).
    for (id, pat, when) in [("im1", "p1", "1970-05-15"), ("im2", "p2", "1990")] {
        let im = json!({"resourceType": "Immunization", "id": id, "status": "completed",
            "vaccineCode": {"text": "measles"}, "patient": {"reference": format!("Patient/{pat}")},
            "occurrenceDateTime": when});
        node.put(&format!("Immunization/{id}"), &im).await;
    }
    ("p1".into(), "p2".into())
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn search_types_modifiers_and_prefixes(node: Node) {
    seed(&node).await;
    // string: default is case- and accent-insensitive prefix; :exact; :contains.
    assert_eq!(node.ids("Patient?family=mejia").await, vec!["p1"]);
    assert_eq!(
        node.ids("Patient?name=MAR").await,
        vec!["p1"],
        "given names are part of name"
    );
    assert!(node.ids("Patient?family:exact=mejia").await.is_empty());
    assert_eq!(node.ids("Patient?family:exact=Mejía").await, vec!["p1"]);
    assert_eq!(
        node.ids("Practitioner?family:contains=ous").await,
        vec!["dr1"]
    );
    // Patients' names are blind indexes: a substring cannot be looked up.
    let (s, _, oo) = node.get("Patient?family:contains=ji").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{oo}");
    assert!(oo.to_string().contains("blind index"));
    assert_eq!(node.ids("Patient?address-city=spring").await, vec!["p1"]);
    assert_eq!(
        sorted(node.ids("Patient?family=smith,mejia").await),
        vec!["p1", "p2"],
        "OR within a parameter"
    );
    assert!(
        node.ids("Patient?family=smith&gender=female")
            .await
            .is_empty(),
        "AND across parameters"
    );
    // token: code, system|code, |code, system|, :not, :text, :missing, identifier.
    assert_eq!(node.ids("Patient?gender=female").await, vec!["p1"]);
    assert_eq!(node.ids("Patient?gender:not=female").await, vec!["p2"]);
    assert_eq!(node.ids("Patient?identifier=urn:mrn|A1").await, vec!["p1"]);
    assert!(node.ids("Patient?identifier=urn:other|A1").await.is_empty());
    assert_eq!(node.ids("Patient?identifier=urn:mrn|").await, vec!["p1"]);
    assert_eq!(node.ids("Patient?phone=555-0101").await, vec!["p1"]);
    assert_eq!(node.ids("Patient?active=true").await, vec!["p1"]);
    assert_eq!(node.ids("Patient?active:missing=true").await, vec!["p2"]);
    assert_eq!(node.ids("Patient?active:missing=false").await, vec!["p1"]);
    assert_eq!(
        node.total("Observation?code=http://loinc.org|8302-2").await,
        3
    );
    assert_eq!(node.total("Observation?code=8302-2").await, 3);
    assert_eq!(
        node.total("Observation?code=|8302-2").await,
        0,
        "|code means no system"
    );
    assert_eq!(node.total("Observation?code:text=body").await, 4);
    // date: prefixes on ranges.
    assert_eq!(node.ids("Immunization?date=1970").await, vec!["im1"]);
    assert_eq!(node.ids("Immunization?date=1970-05-15").await, vec!["im1"]);
    assert_eq!(node.ids("Immunization?date=lt1980").await, vec!["im1"]);
    assert_eq!(
        node.ids("Immunization?date=ge1990-06").await,
        vec!["im2"],
        "1990 overlaps June 1990 onwards"
    );
    assert_eq!(node.ids("Immunization?date=sa1980").await, vec!["im2"]);
    assert_eq!(node.ids("Immunization?date=eb1980").await, vec!["im1"]);
    assert_eq!(
        sorted(node.ids("Immunization?date=ne1970-05-15").await),
        vec!["im2"]
    );
    assert_eq!(
        node.ids("Immunization?date=ap1970-05-20").await,
        vec!["im1"]
    );
    // Birth dates are blinded: a year, a month or a day match; comparisons are refused.
    assert_eq!(node.ids("Patient?birthdate=1970").await, vec!["p1"]);
    assert_eq!(node.ids("Patient?birthdate=1970-05").await, vec!["p1"]);
    assert_eq!(node.ids("Patient?birthdate=1970-05-15").await, vec!["p1"]);
    assert_eq!(node.ids("Patient?birthdate=1990").await, vec!["p2"]);
    assert!(node.ids("Patient?birthdate=1990-06").await.is_empty());
    assert_eq!(
        node.get("Patient?birthdate=lt1980").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        sorted(
            node.ids("Observation?date=gt2021-01-01&date=lt2022-12-31")
                .await
        ),
        vec!["o2", "o3", "o4"]
    );
    assert_eq!(node.ids("Observation?date=le2020-01-10").await, vec!["o1"]);
    // quantity and number.
    assert_eq!(
        sorted(node.ids("Observation?value-quantity=gt155").await),
        vec!["o2", "o3"]
    );
    assert_eq!(
        node.ids("Observation?value-quantity=160.5|http://unitsofmeasure.org|cm")
            .await,
        vec!["o2"]
    );
    assert_eq!(
        node.ids("Observation?value-quantity=160").await,
        Vec::<String>::new(),
        "160 means [159.5, 160.5)"
    );
    assert_eq!(
        node.ids("Observation?value-quantity=1.6e2").await,
        vec!["o2"],
        "1.6e2 means [155, 165)"
    );
    assert_eq!(
        node.ids("Observation?value-quantity=le80||cm").await,
        vec!["o4"]
    );
    assert_eq!(
        node.ids("Observation?value-quantity=ap180").await,
        vec!["o3"],
        "within 10%"
    );
    assert_eq!(
        node.ids("RiskAssessment?probability=0.25").await,
        vec!["ra1"]
    );
    assert_eq!(
        node.ids("RiskAssessment?probability=gt0.3").await,
        Vec::<String>::new()
    );
    // reference: id, Type/id, type modifier, :identifier, absolute URL of this server.
    assert_eq!(
        sorted(node.ids("Observation?subject=Patient/p1").await),
        vec!["o1", "o2"]
    );
    assert_eq!(
        sorted(node.ids("Observation?subject:Patient=p1").await),
        vec!["o1", "o2"]
    );
    assert_eq!(
        sorted(node.ids("Observation?patient=p1").await),
        vec!["o1", "o2"]
    );
    assert!(node.ids("Observation?subject:Group=p1").await.is_empty());
    assert_eq!(
        sorted(node.ids("Patient?organization:identifier=urn:org|G1").await),
        Vec::<String>::new(),
        "the reference carries no identifier"
    );
    // uri, with :below and :above.
    assert_eq!(
        node.ids("ValueSet?url=http://example.org/fhir/ValueSet/colors")
            .await,
        vec!["vs1"]
    );
    assert_eq!(
        node.ids("ValueSet?url:below=http://example.org/fhir").await,
        vec!["vs1"]
    );
    assert_eq!(
        node.ids("ValueSet?url:above=http://example.org/fhir/ValueSet/colors/extra")
            .await,
        vec!["vs1"]
    );
    assert!(
        node.ids("ValueSet?url=http://example.org/fhir")
            .await
            .is_empty()
    );
    // composite: code and value on the same Observation.
    assert_eq!(
        node.ids("Observation?code-value-quantity=http://loinc.org|8302-2$gt170")
            .await,
        vec!["o3"]
    );
    assert!(
        node.ids("Observation?code-value-quantity=http://loinc.org|29463-7$gt170")
            .await
            .is_empty()
    );
    // Resource-level: _id, _lastUpdated, _tag, _profile, _security.
    assert_eq!(
        sorted(node.ids("Patient?_id=p1,p2").await),
        vec!["p1", "p2"]
    );
    // `_id` is answered from `resources`, not from index rows: as the driver, as a
    // criterion checked per row, negated, `:missing`, in a chain and after a delete.
    assert_eq!(
        node.ids("Observation?subject=Patient/p1&_id=o2,o3").await,
        vec!["o2"]
    );
    assert_eq!(
        sorted(node.ids("Observation?_id:not=o1&code=8302-2").await),
        vec!["o2", "o3"]
    );
    assert_eq!(node.total("Patient?_id:missing=false").await, 2);
    assert_eq!(node.total("Patient?_id:missing=true").await, 0);
    assert_eq!(
        sorted(node.ids("Observation?patient._id=p2").await),
        vec!["o3", "o4"]
    );
    assert_eq!(
        node.ids("Patient?_has:Observation:patient:_id=o1").await,
        vec!["p1"]
    );
    assert!(node.ids("Patient?_id=sys|p1").await.is_empty());
    assert_eq!(node.ids("ValueSet?_id=vs1").await, vec!["vs1"]);
    assert!(
        node.ids("Patient?_id=vs1").await.is_empty(),
        "another type's id"
    );
    assert_eq!(node.total("Patient?_lastUpdated=gt2000-01-01").await, 2);
    assert_eq!(node.total("Patient?_lastUpdated=lt2000-01-01").await, 0);
    assert_eq!(node.ids("Patient?_tag=urn:tags|vip").await, vec!["p1"]);
    assert_eq!(
        node.ids("Patient?_profile=http://example.org/fhir/StructureDefinition/my-patient")
            .await,
        vec!["p1"]
    );
    assert_eq!(node.ids("Patient?_security=R").await, vec!["p1"]);
    // A deleted resource's id matches no more.
    assert_eq!(node.ids("Immunization?_id=im2").await, vec!["im2"]);
    let (status, _, _) = node.delete("Immunization/im2").await;
    assert!(status.is_success(), "{status}");
    assert!(node.ids("Immunization?_id=im2").await.is_empty());
    assert!(
        node.ids("Immunization?_id:missing=false&patient=p2")
            .await
            .is_empty()
    );
}

async fn search_chains_has_includes_and_sort(node: Node) {
    seed(&node).await;
    assert_eq!(
        sorted(node.ids("Observation?subject:Patient.name=mejia").await),
        vec!["o1", "o2"]
    );
    assert_eq!(
        sorted(node.ids("Observation?patient.gender=male").await),
        vec!["o3", "o4"]
    );
    assert_eq!(
        sorted(
            node.ids("Observation?patient.organization.name=general")
                .await
        ),
        vec!["o1", "o2", "o3", "o4"],
        "two-level chain"
    );
    assert_eq!(
        node.ids("Patient?_has:Observation:patient:code=29463-7")
            .await,
        vec!["p2"]
    );
    assert_eq!(
        node.ids("Patient?_has:Observation:subject:value-quantity=gt170")
            .await,
        vec!["p2"]
    );
    assert!(
        node.ids("Patient?_has:Observation:patient:code=none")
            .await
            .is_empty()
    );
    // _include and _revinclude, with :iterate.
    let b = node
        .search("Observation?_id=o1&_include=Observation:subject")
        .await;
    let kinds: Vec<(String, String)> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["resource"]["id"].as_str().unwrap().to_string(),
                e["search"]["mode"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("o1".into(), "match".into()),
            ("p1".into(), "include".into())
        ]
    );
    assert_eq!(b["total"], 1, "includes do not count");
    let b = node
        .search(
            "Observation?_id=o1&_include=Observation:subject&_include:iterate=Patient:organization",
        )
        .await;
    assert_eq!(
        b["entry"].as_array().unwrap().len(),
        3,
        "iterate reaches the organization: {b}"
    );
    let b = node
        .search("Patient?_id=p2&_revinclude=Observation:subject")
        .await;
    assert_eq!(b["entry"].as_array().unwrap().len(), 3);
    let b = node.search("Organization?_id=org1&_revinclude=Patient:organization&_revinclude:iterate=Observation:subject").await;
    assert_eq!(
        b["entry"].as_array().unwrap().len(),
        7,
        "org, 2 patients, 4 observations"
    );
    // _sort, several keys, descending.
    assert_eq!(
        node.ids("Observation?_sort=-value-quantity").await,
        vec!["o3", "o2", "o1", "o4"]
    );
    assert_eq!(
        node.ids("Observation?_sort=date,-value-quantity").await,
        vec!["o1", "o2", "o3", "o4"]
    );
    assert_eq!(node.ids("Patient?_sort=gender").await, vec!["p1", "p2"]);
    assert_eq!(node.ids("Patient?_sort=-gender").await, vec!["p2", "p1"]);
    // A blind index has no order.
    assert_eq!(
        node.get("Patient?_sort=family").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(node.ids("Patient?_sort=-_id").await, vec!["p2", "p1"]);
}

async fn search_paging_totals_and_shaping(node: Node) {
    seed(&node).await;
    for i in 0..25 {
        node.post("Observation", &json!({"resourceType": "Observation", "status": "final", "code": {"text": format!("bulk {i}")}, "subject": {"reference": "Patient/p2"}})).await;
    }
    // Walk the pages of a search while writes happen between them: no duplicates, no gaps.
    let mut seen = Vec::new();
    let mut url = node.url("Observation?_count=10&_total=accurate");
    let mut pages = 0;
    loop {
        let (s, _, b) = node.send(node.auth(node.client.get(&url))).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["total"], 29, "total is the snapshot's");
        seen.extend(matches(&b));
        pages += 1;
        node.post(
            "Observation",
            &json!({"resourceType": "Observation", "status": "final", "code": {"text": "late"}}),
        )
        .await;
        match next_link(&b) {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!((seen.len(), dedup.len()), (29, 29));
    // Sorted paging.
    let b = node
        .search("Observation?_sort=-value-quantity&_count=2")
        .await;
    assert_eq!(matches(&b), vec!["o3", "o2"]);
    let next = next_link(&b).unwrap();
    let (_, _, b2) = node.send(node.auth(node.client.get(next))).await;
    assert_eq!(matches(&b2)[..2], ["o1".to_string(), "o4".to_string()]);
    assert_eq!(
        node.get("Observation?_page=garbage").await.0,
        StatusCode::BAD_REQUEST
    );

    // _total: free when one page holds every match, counted on request, never with none.
    assert_eq!(node.search("Patient").await["total"], 2);
    assert!(
        node.search("Observation?_count=5")
            .await
            .get("total")
            .is_none(),
        "a total would cost a count"
    );
    assert_eq!(
        node.search("Observation?_count=5&_total=accurate").await["total"],
        32,
        "29 plus 3 written while paging"
    );
    assert!(
        node.search("Patient?_total=none")
            .await
            .get("total")
            .is_none()
    );
    let b = node.search("Patient?_summary=count").await;
    assert_eq!(
        (b["total"].clone(), b["entry"].as_array().map(Vec::len)),
        (json!(2), Some(0))
    );
    let b = node.search("Patient?_id=p1&_summary=true").await;
    let r = &b["entry"][0]["resource"];
    assert!(r.get("name").is_some() && r.get("telecom").is_some());
    assert_eq!(
        r["meta"]["tag"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["code"] == "SUBSETTED")
            .count(),
        1
    );
    let b = node.search("Patient?_id=p1&_elements=gender").await;
    let r = &b["entry"][0]["resource"];
    assert!(r.get("gender").is_some() && r.get("name").is_none() && r.get("id").is_some());

    // Unknown parameters: lenient ignores and reports; strict refuses.
    let b = node.search("Patient?nonsense=1&family=smith").await;
    assert_eq!(matches(&b), vec!["p2"]);
    assert!(crate::harness::outcome_diagnostics(&b).contains("nonsense"));
    let strict = node
        .auth(node.client.get(node.url("Patient?nonsense=1")))
        .header("prefer", "handling=strict");
    let (s, _, b) = node.send(strict).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["resourceType"], "OperationOutcome");
    // POST _search with a form body.
    let r = node
        .auth(node.client.post(node.url("Patient/_search")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("family=smith");
    let (s, _, b) = node.send(r).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(matches(&b), vec!["p2"]);
}

async fn patient_everything(node: Node) {
    seed(&node).await;
    let b = node.search("Patient/p1/$everything").await;
    let mut ids: Vec<String> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        vec![
            "Immunization/im1",
            "Observation/o1",
            "Observation/o2",
            "Patient/p1",
            "RiskAssessment/ra1"
        ]
    );
    let b = node.search("Patient/p1/$everything?_count=2").await;
    assert_eq!(b["entry"].as_array().unwrap().len(), 2);
    assert!(next_link(&b).is_some());
    let b = node
        .search("Patient/p1/$everything?_type=Observation")
        .await;
    assert_eq!(b["entry"].as_array().unwrap().len(), 2);
    let b = node.search("Patient/p1/$everything?start=2021-01-01").await;
    let ids: Vec<&str> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"o2") && !ids.contains(&"o1"), "{ids:?}");
    assert_eq!(
        node.get("Patient/nobody/$everything").await.0,
        StatusCode::NOT_FOUND
    );
    let _ = Value::Null;
}

on_both_databases!(
    search_types_modifiers_and_prefixes,
    search_chains_has_includes_and_sort,
    search_paging_totals_and_shaping,
    patient_everything
);
