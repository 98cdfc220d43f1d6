//! Care coordination over HTTP, told as a week of a diabetes plan: the GP adds a nurse to
//! the patient's care team (the record opens to her on her next request), writes a plan
//! with an HbA1c goal whose progress comes from the record's own result, and activities for
//! the patient and the nurse; the nurse proposes an activity, which she cannot accept
//! herself and the GP accepts; the history names who made and who accepted each change;
//! the nurse's worklist puts her overdue activity first; the patient ticks off her own
//! activity and no one else's; the FHIR API does not let anyone skip the plan's rules; and
//! ending the nurse's membership closes the record to her on her next request.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::documents::{patient, practitioner, seed};
use crate::harness::Node;
use crate::on_both_databases;

async fn put(node: &Node, path: &str, body: Value) {
    let (s, _, b) = node.put(path, &body).await;
    assert!(s.is_success(), "{path}: {s} {b}");
}

async fn plan(who: &Node, id: &str) -> Value {
    let (s, _, b) = who.get_raw(&format!("/api/care-plans/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

fn activity<'a>(plan: &'a Value, description: &str) -> &'a Value {
    plan["activities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["description"] == description)
        .unwrap_or_else(|| panic!("no activity {description}: {plan}"))
}

async fn care_plans_and_teams(node: Node) {
    seed(&node).await;
    put(
        &node,
        "Patient/pat",
        json!({"resourceType": "Patient", "id": "pat",
               "name": [{"given": ["Alex"], "family": "Doe"}],
               "generalPractitioner": [{"reference": "Practitioner/gp"}]}),
    )
    .await;
    put(
        &node,
        "Practitioner/nurse",
        json!({"resourceType": "Practitioner", "id": "nurse",
               "name": [{"given": ["Nora"], "family": "Quinn"}]}),
    )
    .await;
    let gp = practitioner(&node, "gp-user", "gp");
    let nurse = practitioner(&node, "nurse-user", "nurse");
    let pat = patient(&node);

    // The nurse is in no care relationship with the patient: the record is closed to her.
    let (s, _, _) = nurse.get("Patient/pat").await;
    assert!(!s.is_success(), "closed before she joins: {s}");

    // The GP adds her to the care team; it opens on her next request.
    let (s, _, team) = gp
        .post_raw(
            "/api/patients/pat/care-team/members",
            &json!({"member": "Practitioner/nurse", "role": "nurse"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{team}");
    assert_eq!(team["members"][0]["name"], "Nora Quinn");
    assert_eq!(team["members"][0]["active"], true);
    let (s, _, b) = nurse.get("Patient/pat").await;
    assert_eq!(s, StatusCode::OK, "open once she is a member: {b}");
    let (s, _, b) = gp
        .post_raw(
            "/api/patients/pat/care-team/members",
            &json!({"member": "Practitioner/nurse", "role": "nurse"}),
        )
        .await;
    assert!(s.is_client_error(), "a member is not added twice: {s} {b}");
    let (s, _, b) = gp
        .post_raw(
            "/api/patients/pat/care-team/members",
            &json!({"member": "Practitioner/nobody", "role": "nurse"}),
        )
        .await;
    assert!(
        s.is_client_error(),
        "only practitioners in the directory: {s} {b}"
    );

    // The GP's plan: a measured goal, the patient's own activity, and an overdue one for
    // the nurse.
    put(
        &node,
        "Observation/a1c",
        json!({"resourceType": "Observation", "id": "a1c", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
               "subject": {"reference": "Patient/pat"},
               "effectiveDateTime": "2026-11-20T09:00:00Z",
               "valueQuantity": {"value": 6.8, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}}),
    )
    .await;
    let (s, _, created) = gp
        .post_raw(
            "/api/patients/pat/care-plans",
            &json!({
                "title": "Type 2 diabetes",
                "description": "Keep glucose in range and the feet healthy.",
                "goals": [{"description": "HbA1c below 7%", "target": {
                    "loinc": "4548-4", "measure": "HbA1c", "comparator": "<", "value": 7, "unit": "%"}}],
                "activities": [
                    {"description": "Walk 30 minutes a day", "assignee": "Patient/pat"},
                    {"description": "Check the feet", "assignee": "Practitioner/nurse", "due": "2020-01-01"}
                ]
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let (s, _, b) = gp
        .post_raw(
            "/api/patients/pat/care-plans",
            &json!({"title": "x", "activities": [{"description": "y", "assignee": "Practitioner/stranger"}]}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "activities go to the care team: {b}"
    );

    let seen = plan(&gp, &id).await;
    assert_eq!(seen["title"], "Type 2 diabetes");
    assert_eq!(seen["mayDecide"], true);
    assert_eq!(seen["goals"][0]["target"]["text"], "HbA1c < 7 %");
    assert_eq!(seen["goals"][0]["progress"]["met"], true, "{seen}");
    assert_eq!(seen["goals"][0]["progress"]["latest"]["value"], 6.8);
    assert_eq!(seen["activities"].as_array().unwrap().len(), 2);

    // The nurse proposes; she cannot accept her own proposal; the GP accepts it.
    let seen = plan(&nurse, &id).await;
    assert_eq!(
        (seen["mayDecide"].clone(), seen["mayPropose"].clone()),
        (json!(false), json!(true))
    );
    let (s, _, proposed) = nurse
        .post_raw(
            &format!("/api/care-plans/{id}/changes"),
            &json!({"kind": "add-activity", "activity": {
                "description": "Dietitian visit", "assignee": "Practitioner/nurse", "due": "2099-01-31"}}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{proposed}");
    let proposal = proposed["proposal"].as_str().unwrap().to_string();
    assert_eq!(
        plan(&gp, &id).await["activities"].as_array().unwrap().len(),
        2,
        "a proposal changes nothing yet"
    );
    let (s, _, b) = nurse
        .post_raw(
            &format!("/api/care-plan-proposals/{proposal}/decision"),
            &json!({"accept": true}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "the proposer does not decide: {b}"
    );
    let seen = plan(&gp, &id).await;
    assert_eq!(
        seen["proposals"][0]["summary"],
        "Added the activity \"Dietitian visit\", due 2099-01-31"
    );
    assert_eq!(seen["proposals"][0]["proposer"], "Nora Quinn");
    let (s, _, b) = gp
        .post_raw(
            &format!("/api/care-plan-proposals/{proposal}/decision"),
            &json!({"accept": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _, b) = gp
        .post_raw(
            &format!("/api/care-plan-proposals/{proposal}/decision"),
            &json!({"accept": true}),
        )
        .await;
    assert!(s.is_client_error(), "a proposal is decided once: {s} {b}");
    let seen = plan(&gp, &id).await;
    assert_eq!(seen["activities"].as_array().unwrap().len(), 3);
    assert!(seen["proposals"].as_array().unwrap().is_empty());

    // A second proposal, declined with a reason, changes nothing.
    let (_, _, second) = nurse
        .post_raw(
            &format!("/api/care-plans/{id}/changes"),
            &json!({"kind": "revise", "title": "Diabetes and feet"}),
        )
        .await;
    let second = second["proposal"].as_str().unwrap().to_string();
    let (s, _, b) = gp
        .post_raw(
            &format!("/api/care-plan-proposals/{second}/decision"),
            &json!({"accept": false, "reason": "The title names the condition."}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, _, task) = gp.get(&format!("Task/{second}")).await;
    assert_eq!(task["status"], "rejected");
    assert_eq!(plan(&gp, &id).await["title"], "Type 2 diabetes");

    // The nurse's worklist: her overdue activity first, then the one she proposed.
    let (s, _, work) = nurse.get_raw("/api/worklist").await;
    assert_eq!(s, StatusCode::OK, "{work}");
    let items = work["items"].as_array().unwrap();
    let descriptions: Vec<&str> = items
        .iter()
        .map(|i| i["description"].as_str().unwrap())
        .collect();
    assert_eq!(
        descriptions,
        ["Check the feet", "Dietitian visit"],
        "{work}"
    );
    assert_eq!(items[0]["overdue"], true);
    assert_eq!(items[1]["overdue"], false);
    assert_eq!(items[0]["plan"], id.as_str());
    let (s, _, b) = pat.get_raw("/api/worklist").await;
    assert!(s.is_client_error(), "worklists are clinicians': {s} {b}");

    // The patient ticks off her own activity, and no one else's; she changes nothing else.
    let walk = activity(&plan(&pat, &id).await, "Walk 30 minutes a day")["task"]
        .as_str()
        .unwrap()
        .to_string();
    let feet = activity(&plan(&pat, &id).await, "Check the feet")["task"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _, b) = pat
        .post_raw(
            &format!("/api/care-plans/{id}/changes"),
            &json!({"kind": "set-activity", "task": walk, "status": "completed"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _, b) = pat
        .post_raw(
            &format!("/api/care-plans/{id}/changes"),
            &json!({"kind": "set-activity", "task": feet, "status": "completed"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "not hers: {b}");
    let (s, _, b) = pat
        .post_raw(
            &format!("/api/care-plans/{id}/changes"),
            &json!({"kind": "revise", "title": "Mine"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let seen = plan(&pat, &id).await;
    assert_eq!(
        activity(&seen, "Walk 30 minutes a day")["status"],
        "completed"
    );
    assert_eq!(activity(&seen, "Walk 30 minutes a day")["mine"], true);

    // The history names who made each change, and who accepted the proposed one.
    let history = seen["history"].as_array().unwrap();
    let said: Vec<(&str, &str, Option<&str>)> = history
        .iter()
        .map(|h| {
            (
                h["summary"].as_str().unwrap(),
                h["author"].as_str().unwrap(),
                h["acceptedBy"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        said,
        [
            ("Made the plan \"Type 2 diabetes\"", "Dr Jane Smith", None),
            (
                "Added the activity \"Dietitian visit\", due 2099-01-31",
                "Nora Quinn",
                Some("Dr Jane Smith")
            ),
            ("Marked an activity completed", "Alex Doe", None),
        ],
    );

    // The FHIR API does not skip the plan's rules.
    let mut raw = plan(&gp, &id).await["carePlan"].clone();
    raw["title"] = json!("Changed behind the plan's back");
    let (s, _, b) = nurse.put(&format!("CarePlan/{id}"), &raw).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "only the author, through FHIR: {b}"
    );
    let (s, _, b) = pat.put(&format!("CarePlan/{id}"), &raw).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "not the patient: {b}");

    // The GP ends the nurse's membership: the record closes to her on her next request,
    // and she proposes nothing more.
    let (s, _, team) = gp
        .post_raw("/api/patients/pat/care-team/members/nurse/end", &json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{team}");
    assert_eq!(team["members"][0]["active"], false);
    let (s, _, _) = nurse.get("Patient/pat").await;
    assert!(!s.is_success(), "closed once she left: {s}");
    let (s, _, _) = nurse.get_raw(&format!("/api/care-plans/{id}")).await;
    assert!(!s.is_success(), "the plan too: {s}");
    let (s, _, b) = nurse
        .post_raw(
            &format!("/api/care-plans/{id}/changes"),
            &json!({"kind": "revise", "title": "Late"}),
        )
        .await;
    assert!(!s.is_success(), "{s} {b}");

    // Completing the plan closes its open activities: nothing stays on a worklist.
    let (s, _, b) = gp
        .post_raw(
            &format!("/api/care-plans/{id}/changes"),
            &json!({"kind": "set-status", "status": "completed"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let seen = plan(&gp, &id).await;
    assert_eq!(seen["status"], "completed");
    assert_eq!(activity(&seen, "Check the feet")["status"], "cancelled");
    assert_eq!(
        activity(&seen, "Walk 30 minutes a day")["status"],
        "completed"
    );
    let (_, _, work) = gp.get_raw("/api/worklist").await;
    assert!(work["items"].as_array().unwrap().is_empty(), "{work}");
}

on_both_databases!(care_plans_and_teams);
