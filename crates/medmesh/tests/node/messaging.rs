//! Secure messaging over HTTP: a patient writes to her care team (the nurse in it reads and
//! answers; the GP, who is not in it, does not see the thread in his list, and a stranger
//! cannot open it); read receipts keep the unread counts right for every device; the
//! nurse's live stream hears the patient's message as it is sent; a thread between two
//! clinicians that names no patient is theirs alone, in the FHIR API too; a sealed thread
//! takes only envelopes sealed in the browser and returns them unopened; and a practice that
//! turns patient messaging off is obeyed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::documents::{patient, practitioner, seed};
use crate::harness::Node;
use crate::on_both_databases;

async fn put(node: &Node, path: &str, body: Value) {
    let (s, _, b) = node.put(path, &body).await;
    assert!(s.is_success(), "{path}: {s} {b}");
}

async fn threads(who: &Node) -> Vec<Value> {
    let (s, _, b) = who.get_raw("/api/messages/threads").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["threads"].as_array().unwrap().clone()
}

async fn unread(who: &Node) -> u64 {
    let (_, _, b) = who.get_raw("/api/messages/unread").await;
    b["unread"].as_u64().unwrap()
}

async fn messages_between_patients_and_teams(node: Node) {
    seed(&node).await;
    put(
        &node,
        "Patient/pat",
        json!({"resourceType": "Patient", "id": "pat", "name": [{"given": ["Alex"], "family": "Doe"}],
               "generalPractitioner": [{"reference": "Practitioner/gp"}],
               "managingOrganization": {"reference": "Organization/h"}}),
    )
    .await;
    put(
        &node,
        "Practitioner/nurse",
        json!({"resourceType": "Practitioner", "id": "nurse", "name": [{"given": ["Nora"], "family": "Quinn"}]}),
    )
    .await;
    let gp = practitioner(&node, "gp-user", "gp");
    let nurse = practitioner(&node, "nurse-user", "nurse");
    let stranger = practitioner(&node, "stranger-user", "stranger");
    let pat = patient(&node);

    // Without a care team, a patient has no one to write to.
    let (s, _, b) = pat
        .post_raw("/api/messages/threads", &json!({"topic": "Hello"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, _, b) = gp
        .post_raw(
            "/api/patients/pat/care-team/members",
            &json!({"member": "Practitioner/nurse", "role": "nurse"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // The patient writes to her care team; whom she names does not matter.
    let (s, _, created) = pat
        .post_raw(
            "/api/messages/threads",
            &json!({"topic": "My tablets", "parties": ["Practitioner/stranger"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let thread = created["id"].as_str().unwrap().to_string();
    let (s, _, header) = gp.get(&format!("Communication/{thread}")).await;
    assert_eq!(s, StatusCode::OK, "the GP reaches the patient: {header}");
    let recipients = header["recipient"].as_array().unwrap();
    assert_eq!(recipients.len(), 1);
    assert!(
        recipients[0]["reference"]
            .as_str()
            .unwrap()
            .starts_with("CareTeam/"),
        "{header}"
    );

    // The nurse's live stream is open before the patient writes.
    let mut live = nurse
        .auth(nurse.client.get(nurse.root_url("/api/messages/live")))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let (s, _, b) = pat
        .post_raw(
            &format!("/api/messages/threads/{thread}/messages"),
            &json!({"text": "Can I take them with food?"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let heard = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut text = String::new();
        while let Some(chunk) = live.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains(&format!("event: message\ndata: {thread}")) {
                return text;
            }
        }
        text
    })
    .await
    .expect("the nurse's stream hears the message");
    assert!(!heard.contains("food"), "no text on the stream: {heard}");
    drop(live);

    // The nurse has it unread; the GP, not in the team, has no such thread in his list;
    // a stranger cannot open it.
    let listed = threads(&nurse).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["unread"], 1);
    assert_eq!(listed[0]["about"]["name"], "Alex Doe");
    assert_eq!(unread(&nurse).await, 1);
    assert!(threads(&gp).await.is_empty(), "not a party");
    let (s, _, _) = stranger
        .get_raw(&format!("/api/messages/threads/{thread}"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = stranger
        .post_raw(
            &format!("/api/messages/threads/{thread}/messages"),
            &json!({"text": "hi"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Reading on one device clears it on every device; the patient sees the receipt.
    let (s, _, read) = nurse
        .post_raw(&format!("/api/messages/threads/{thread}/read"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{read}");
    assert_eq!(unread(&nurse).await, 0);
    let nurse_again = nurse.with_token(&nurse.token);
    assert_eq!(threads(&nurse_again).await[0]["unread"], 0);
    let (_, _, seen) = pat
        .get_raw(&format!("/api/messages/threads/{thread}"))
        .await;
    assert_eq!(seen["messages"][0]["readBy"][0]["name"], "Nora Quinn");
    assert_eq!(seen["messages"][0]["text"], "Can I take them with food?");
    assert_eq!(seen["messages"][0]["mine"], true);

    // The nurse answers; the patient has one unread, and the answer names its sender.
    let (s, _, b) = nurse
        .post_raw(
            &format!("/api/messages/threads/{thread}/messages"),
            &json!({"text": "Yes, with breakfast."}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(unread(&pat).await, 1);
    let (_, _, seen) = pat
        .get_raw(&format!("/api/messages/threads/{thread}"))
        .await;
    assert_eq!(seen["messages"][1]["sender"]["name"], "Nora Quinn");

    // The patient does not write Communications through the FHIR API, and nobody rewrites
    // another's message.
    let m = seen["messages"][1].clone();
    let (_, _, mut raw) = nurse
        .get(&format!("Communication/{}", m["id"].as_str().unwrap()))
        .await;
    raw["payload"][0]["contentString"] = json!("No, never with food.");
    let (s, _, b) = gp
        .put(
            &format!("Communication/{}", m["id"].as_str().unwrap()),
            &raw,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (s, _, b) = pat
        .post(
            "Communication",
            &json!({"resourceType": "Communication", "status": "completed",
                    "subject": {"reference": "Patient/pat"}, "sender": {"reference": "Patient/pat"},
                    "recipient": [{"reference": "Practitioner/stranger"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");

    // Two clinicians, no patient: theirs alone, in the FHIR API too.
    let (s, _, created) = gp
        .post_raw(
            "/api/messages/threads",
            &json!({"topic": "Rota next week", "parties": ["Practitioner/stranger"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let rota = created["id"].as_str().unwrap().to_string();
    let (s, _, b) = stranger
        .post_raw(
            &format!("/api/messages/threads/{rota}/messages"),
            &json!({"text": "I can take Tuesday."}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(unread(&gp).await, 1);
    let (s, _, _) = stranger.get(&format!("Communication/{rota}")).await;
    assert_eq!(s, StatusCode::OK, "a party reads it through FHIR");
    let (s, _, _) = nurse.get(&format!("Communication/{rota}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "no one else does");
    let found = nurse
        .search("Communication?category=https://medmesh.dev/fhir/CodeSystem/message|thread")
        .await;
    let ids: Vec<&str> = found["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["resource"]["id"].as_str())
        .collect();
    assert!(
        ids.contains(&thread.as_str()) && !ids.contains(&rota.as_str()),
        "{ids:?}"
    );

    // A sealed thread takes only envelopes, and gives them back unopened.
    let (s, _, created) = gp
        .post_raw(
            "/api/messages/threads",
            &json!({"topic": "Sealed", "parties": ["Practitioner/nurse"], "sealed": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let sealed = created["id"].as_str().unwrap().to_string();
    let (s, _, b) = gp
        .post_raw(
            &format!("/api/messages/threads/{sealed}/messages"),
            &json!({"text": "in clear"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let envelope = json!({"sealed": STANDARD.encode([9u8; 64]), "keys": "k1:enc.ct"}).to_string();
    let (s, _, b) = gp
        .post_raw(
            &format!("/api/messages/threads/{sealed}/messages"),
            &json!({"sealed": envelope}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, _, seen) = nurse
        .get_raw(&format!("/api/messages/threads/{sealed}"))
        .await;
    assert_eq!(seen["messages"][0]["sealed"], envelope.as_str());
    assert!(seen["messages"][0]["text"].is_null());
    assert_eq!(seen["thread"]["sealed"], true);

    // A message carries documents of the thread's patient, none of another's.
    put(
        &node,
        "DocumentReference/d1",
        json!({"resourceType": "DocumentReference", "id": "d1", "status": "current",
               "subject": {"reference": "Patient/pat"},
               "content": [{"attachment": {"contentType": "text/plain", "data": "eA=="}}]}),
    )
    .await;
    put(
        &node,
        "Patient/other",
        json!({"resourceType": "Patient", "id": "other"}),
    )
    .await;
    put(
        &node,
        "DocumentReference/d2",
        json!({"resourceType": "DocumentReference", "id": "d2", "status": "current",
               "subject": {"reference": "Patient/other"},
               "content": [{"attachment": {"contentType": "text/plain", "data": "eA=="}}]}),
    )
    .await;
    let (s, _, b) = nurse
        .post_raw(
            &format!("/api/messages/threads/{thread}/messages"),
            &json!({"text": "Your letter.", "attachments": ["d1"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, _, seen) = pat
        .get_raw(&format!("/api/messages/threads/{thread}"))
        .await;
    assert_eq!(seen["messages"][2]["attachments"], json!(["d1"]));
    let (s, _, b) = nurse
        .post_raw(
            &format!("/api/messages/threads/{thread}/messages"),
            &json!({"text": "Wrong letter.", "attachments": ["d2"]}),
        )
        .await;
    assert!(s.is_client_error(), "another patient's document: {s} {b}");

    // A practice with a shared inbox: the patient's thread goes to the organization, whose
    // practitioners are its parties.
    put(
        &node,
        "Organization/h",
        json!({"resourceType": "Organization", "id": "h", "name": "General Hospital",
               "extension": [{"url": "https://medmesh.dev/fhir/StructureDefinition/patient-messaging", "valueCode": "shared-inbox"}]}),
    )
    .await;
    let (s, _, created) = pat
        .post_raw("/api/messages/threads", &json!({"topic": "Opening hours"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let inbox = created["id"].as_str().unwrap().to_string();
    let (_, _, header) = gp.get(&format!("Communication/{inbox}")).await;
    assert_eq!(header["recipient"][0]["reference"], "Organization/h");
    assert!(
        threads(&gp).await.iter().any(|t| t["id"] == inbox.as_str()),
        "the practice's practitioners answer its inbox"
    );

    // The practice turns patient messaging off: a new thread is refused in words.
    put(
        &node,
        "Organization/h",
        json!({"resourceType": "Organization", "id": "h", "name": "General Hospital",
               "extension": [{"url": "https://medmesh.dev/fhir/StructureDefinition/patient-messaging", "valueCode": "off"}]}),
    )
    .await;
    let (s, _, b) = pat
        .post_raw("/api/messages/threads", &json!({"topic": "Again"}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(b.to_string().contains("does not take messages"), "{b}");

    // Away parties were told through the hub, in words with no text.
    let (_, _, inbox) = pat.get_raw("/api/patients/pat/notifications").await;
    let told = inbox.to_string();
    assert!(
        !told.contains("breakfast") && !told.contains("food"),
        "{told}"
    );
}

on_both_databases!(messages_between_patients_and_teams);
