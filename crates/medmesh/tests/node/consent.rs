//! Consent and the trust network, told as the clinical story: a GP refers a patient to a
//! cardiologist, who sees the referral-scoped data but not the PSY-labelled note; the
//! patient revokes, and the cardiologist loses access; an ER doctor uses break-glass, and the
//! patient sees it in their log with a valid proof. Around it: a practitioner with no care
//! relationship sees nothing (404 on read, empty searches with `_total` 0, nothing through
//! `_include`, `_revinclude`, chains, `_has`, history or `$everything`), an unverified one
//! is refused, and an org admin sees no clinical data.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::audit_log::{account_token, check_patient_log};
use crate::harness::{Node, ids_of};
use crate::on_both_databases;

const SCOPE: &str = "user/*.cruds";

fn practitioner(node: &Node, user: &str, id: &str, extra: &[&str]) -> Node {
    let mut args = vec!["--practitioner", id, "--organization", "h"];
    args.extend_from_slice(extra);
    account_token(node, "practitioner", user, &args, SCOPE)
}

async fn put(node: &Node, path: &str, body: Value) {
    let (s, _, b) = node.put(path, &body).await;
    assert!(s.is_success(), "{path}: {s} {b}");
}

async fn seed(node: &Node) {
    put(
        node,
        "Organization/h",
        json!({"resourceType": "Organization", "id": "h", "name": "General Hospital"}),
    )
    .await;
    for p in ["gp", "card", "er", "stranger"] {
        put(
            node,
            &format!("Practitioner/{p}"),
            json!({"resourceType": "Practitioner", "id": p}),
        )
        .await;
    }
    put(
        node,
        "Patient/pat",
        json!({"resourceType": "Patient", "id": "pat", "gender": "female",
               "generalPractitioner": [{"reference": "Practitioner/gp"}]}),
    )
    .await;
    put(
        node,
        "Observation/bp",
        json!({"resourceType": "Observation", "id": "bp", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
               "subject": {"reference": "Patient/pat"},
               "performer": [{"reference": "Practitioner/gp"}]}),
    )
    .await;
    // A depression diagnosis: the default rules label it PSY.
    put(
        node,
        "Condition/dep",
        json!({"resourceType": "Condition", "id": "dep",
               "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "F32.1"}]},
               "subject": {"reference": "Patient/pat"}}),
    )
    .await;
}

/// Every channel answers as if the patient's data did not exist.
async fn sees_nothing(dr: &Node) {
    for path in [
        "Patient/pat",
        "Observation/bp",
        "Condition/dep",
        "Observation/bp/_history/1",
    ] {
        assert_eq!(dr.get(path).await.0, StatusCode::NOT_FOUND, "{path}");
    }
    for q in [
        "Observation?_total=accurate",
        "Observation?subject=Patient/pat&_total=accurate",
        "Observation?subject:Patient.gender=female&_total=accurate",
        "Patient?_has:Observation:subject:code=85354-9&_total=accurate",
        "Condition?_total=accurate",
        "Patient?_total=accurate",
    ] {
        let (s, _, b) = dr.get(q).await;
        assert_eq!(s, StatusCode::OK, "{q}: {b}");
        assert_eq!(b["total"], 0, "{q}: {b}");
        assert!(ids_of(&b).is_empty(), "{q}");
    }
    // Includes cannot pull the patient in through a resource the actor may see.
    let b = dr
        .search("Practitioner?_revinclude=Observation:performer")
        .await;
    assert!(
        !ids_of(&b).iter().any(|i| i.starts_with("Observation/")),
        "{b}"
    );
    let (_, _, hist) = dr.get("Observation/_history").await;
    assert!(ids_of(&hist).is_empty(), "{hist}");
    let (s, _, _) = dr.get("Patient/pat/$everything").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

async fn the_clinical_story(node: Node) {
    seed(&node).await;
    let gp = practitioner(&node, "gp", "gp", &["--verification", "verified"]);
    let card = practitioner(&node, "card", "card", &["--verification", "verified"]);
    let er = practitioner(&node, "er", "er", &["--verification", "verified"]);
    let stranger = practitioner(
        &node,
        "stranger",
        "stranger",
        &["--verification", "verified"],
    );
    let unverified = practitioner(&node, "newbie", "stranger", &[]);
    let patient = account_token(
        &node,
        "patient",
        "pat",
        &["--patient", "pat"],
        "patient/*.cruds",
    );
    let admin = account_token(
        &node,
        "org-admin",
        "admin-h",
        &["--organization", "h"],
        "user/*.cruds",
    );

    // The GP, named on the Patient, sees the normal record but not the PSY-labelled note.
    assert_eq!(gp.get("Observation/bp").await.0, StatusCode::OK);
    assert_eq!(gp.get("Condition/dep").await.0, StatusCode::NOT_FOUND);
    assert_eq!(gp.total("Condition?subject=Patient/pat").await, 0);
    assert_eq!(gp.total("Observation?subject=Patient/pat").await, 1);

    sees_nothing(&stranger).await;
    sees_nothing(&card).await;
    // Unverified practitioners and org admins are refused clinical types outright.
    assert_eq!(
        unverified.get("Observation?_total=accurate").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(admin.get("Observation/bp").await.0, StatusCode::FORBIDDEN);

    // The GP refers to the cardiologist; the cardiologist accepts.
    let (s, _, b) = gp
        .post(
            "ServiceRequest",
            &json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                    "subject": {"reference": "Patient/pat"},
                    "requester": {"reference": "Practitioner/gp"},
                    "performer": [{"reference": "Practitioner/card"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let referral = format!("ServiceRequest/{}", b["id"].as_str().unwrap());
    let (s, _, b) = gp
        .post(
            "Task",
            &json!({"resourceType": "Task", "status": "requested", "intent": "order",
                    "focus": {"reference": referral}, "for": {"reference": "Patient/pat"},
                    "requester": {"reference": "Practitioner/gp"},
                    "owner": {"reference": "Practitioner/card"}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let task = b["id"].as_str().unwrap().to_string();
    sees_nothing(&card).await;
    // Only the owner can accept.
    let (s, _, _) = stranger
        .post_raw(&format!("/api/referrals/{task}/accept"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, b) = card
        .post_raw(&format!("/api/referrals/{task}/accept"), &json!({}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");

    assert_eq!(card.get("Observation/bp").await.0, StatusCode::OK);
    assert_eq!(card.get("Patient/pat").await.0, StatusCode::OK);
    assert_eq!(
        card.get("Condition/dep").await.0,
        StatusCode::NOT_FOUND,
        "PSY stays hidden"
    );
    assert_eq!(card.total("Condition?_total=accurate").await, 0);
    let everything = card.search("Patient/pat/$everything").await;
    assert!(ids_of(&everything).contains(&"Observation/bp".to_string()));
    assert!(!ids_of(&everything).contains(&"Condition/dep".to_string()));
    sees_nothing(&stranger).await;

    // The patient sees who has access and why.
    let (s, _, map) = patient.get_raw("/api/patients/pat/access").await;
    assert_eq!(s, StatusCode::OK, "{map}");
    let who: Vec<(String, String)> = map["access"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["who"].as_str().unwrap().to_string(),
                l["why"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        who.contains(&("Practitioner/gp".into(), "general-practitioner".into())),
        "{map}"
    );
    assert!(
        who.contains(&("Practitioner/card".into(), "referral".into())),
        "{map}"
    );
    assert_eq!(
        card.get_raw("/api/patients/pat/access").await.0,
        StatusCode::NOT_FOUND
    );

    // The patient lets the GP see the PSY note, then denies the cardiologist everything.
    let (s, _, b) = patient
        .put(
            "Consent/psy-gp",
            &json!({"resourceType": "Consent", "id": "psy-gp", "status": "active",
                    "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
                    "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                    "patient": {"reference": "Patient/pat"},
                    "provision": {"type": "permit",
                        "actor": [{"role": {"coding": [{"code": "PRCP"}]}, "reference": {"reference": "Practitioner/gp"}}],
                        "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]}}),
        )
        .await;
    assert!(s.is_success(), "{b}");
    assert_eq!(gp.get("Condition/dep").await.0, StatusCode::OK);
    assert_eq!(gp.total("Condition?subject=Patient/pat").await, 1);
    assert_eq!(card.get("Condition/dep").await.0, StatusCode::NOT_FOUND);

    let revoke = json!({"resourceType": "Consent", "id": "no-card", "status": "active",
        "scope": {"coding": [{"code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/pat"},
        "provision": {"type": "deny", "actor": [{"role": {"coding": [{"code": "PRCP"}]}, "reference": {"reference": "Practitioner/card"}}]}});
    let (s, _, b) = patient.put("Consent/no-card", &revoke).await;
    assert!(s.is_success(), "{b}");
    // The very next request is refused.
    sees_nothing(&card).await;
    assert_eq!(
        gp.get("Observation/bp").await.0,
        StatusCode::OK,
        "others keep theirs"
    );
    // Withdrawing the denial gives it back.
    let mut withdrawn = revoke.clone();
    withdrawn["status"] = json!("inactive");
    assert!(
        patient
            .put("Consent/no-card", &withdrawn)
            .await
            .0
            .is_success()
    );
    assert_eq!(card.get("Observation/bp").await.0, StatusCode::OK);
    assert!(patient.put("Consent/no-card", &revoke).await.0.is_success());
    sees_nothing(&card).await;

    // The ER doctor has no relationship; an unverified one cannot break the glass, and
    // neither can anyone without a reason.
    sees_nothing(&er).await;
    let (s, _, _) = unverified
        .post_raw("/api/patients/pat/break-glass", &json!({"reason": "x"}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = er
        .post_raw("/api/patients/pat/break-glass", &json!({"reason": " "}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, bg) = er
        .post_raw(
            "/api/patients/pat/break-glass",
            &json!({"reason": "unconscious in ER"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{bg}");
    assert_eq!(er.get("Observation/bp").await.0, StatusCode::OK);
    assert_eq!(
        er.get("Condition/dep").await.0,
        StatusCode::NOT_FOUND,
        "break-glass does not open PSY"
    );

    // The org admin's review queue holds it, with the reason.
    let (s, _, queue) = admin.get_raw("/api/break-glass").await;
    assert_eq!(s, StatusCode::OK, "{queue}");
    assert_eq!(queue["breakGlass"][0]["reason"], "unconscious in ER");
    assert_eq!(
        er.get_raw("/api/break-glass").await.0,
        StatusCode::NOT_FOUND
    );

    // The patient is notified, and sees the flagged access in their log with a valid proof.
    let (_, _, inbox) = patient.get_raw("/api/patients/pat/notifications").await;
    assert_eq!(inbox["notifications"][0]["kind"], "break-glass", "{inbox}");
    assert_eq!(inbox["notifications"][0]["read"], false);
    // The patient marks it read; nobody else can, and unknown ids are 404.
    let nid = inbox["notifications"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mark = format!("/api/patients/pat/notifications/{nid}/read");
    assert_eq!(
        er.post_raw(&mark, &json!({})).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        patient.post_raw(&mark, &json!({})).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        patient
            .post_raw("/api/patients/pat/notifications/nope/read", &json!({}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, _, inbox) = patient.get_raw("/api/patients/pat/notifications").await;
    assert_eq!(inbox["notifications"][0]["read"], true, "{inbox}");
    assert!(
        !inbox.to_string().contains("unconscious"),
        "the reason is not PHI-free; it stays with reviewers"
    );
    let (s, _, log) = patient.get_raw("/api/patients/pat/audit").await;
    assert_eq!(s, StatusCode::OK);
    check_patient_log(&node, &log).await;
    let flagged: Vec<&Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["breakGlass"] == true)
        .collect();
    assert!(
        flagged.iter().any(|e| e["entry"]["action"] == "read"
            && e["entry"]["purpose"] == "ETREAT"
            && e["entry"]["resource_ids"][0] == "Observation/bp"),
        "{log}"
    );
    assert!(
        flagged
            .iter()
            .any(|e| e["entry"]["action"] == "break-glass")
    );
    // Denied attempts are in the log too, with the basis of permitted ones.
    let entries = log["entries"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["entry"]["outcome"] == "Denied"));
    assert!(
        entries
            .iter()
            .any(|e| e["entry"]["basis"].as_array().is_some_and(|b| b
                .iter()
                .any(|x| x.as_str() == Some(&format!("Task/{task}")))))
    );

    // The patient labels their own data: R hides it from the GP (their consent covers PSY
    // only), while break-glass covers R.
    let (_, _, mut bp) = patient.get("Observation/bp").await;
    bp["meta"]["security"] = json!([{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]);
    let (s, _, b) = patient.put("Observation/bp", &bp).await;
    assert!(s.is_success(), "{b}");
    assert_eq!(gp.get("Observation/bp").await.0, StatusCode::NOT_FOUND);
    assert_eq!(gp.total("Observation?subject=Patient/pat").await, 0);
    assert_eq!(
        er.get("Observation/bp").await.0,
        StatusCode::OK,
        "break-glass covers R"
    );
}

async fn care_teams_and_sharing_rules_open_the_record(node: Node) {
    seed(&node).await;
    let stranger = practitioner(
        &node,
        "stranger",
        "stranger",
        &["--verification", "verified"],
    );
    let card = practitioner(&node, "card", "card", &["--verification", "verified"]);
    let patient = account_token(
        &node,
        "patient",
        "pat",
        &["--patient", "pat"],
        "patient/*.cruds",
    );
    sees_nothing(&stranger).await;
    // Through FHIR: a CareTeam naming the practitioner.
    put(
        &node,
        "CareTeam/ct",
        json!({"resourceType": "CareTeam", "id": "ct", "status": "active",
               "subject": {"reference": "Patient/pat"},
               "participant": [{"member": {"reference": "Practitioner/stranger"}}]}),
    )
    .await;
    assert_eq!(stranger.get("Observation/bp").await.0, StatusCode::OK);
    put(
        &node,
        "CareTeam/ct",
        json!({"resourceType": "CareTeam", "id": "ct", "status": "inactive",
               "subject": {"reference": "Patient/pat"},
               "participant": [{"member": {"reference": "Practitioner/stranger"}}]}),
    )
    .await;
    sees_nothing(&stranger).await;

    // A sharing rule: my future lab results go to the cardiologist.
    let rule = json!({"resourceType": "Consent", "id": "labs", "status": "active",
        "scope": {"coding": [{"code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/pat"},
        // A sharing rule stands alone as its Consent's root provision: it opens nothing
        // that exists, and decides nothing about other access.
        "provision": {"type": "permit",
            "extension": [{"url": "urn:medmesh:share-future", "valueBoolean": true}],
            "actor": [{"role": {"coding": [{"code": "PRCP"}]}, "reference": {"reference": "Practitioner/card"}}],
            "class": [{"code": "Observation"}],
            "code": [{"coding": [{"code": "laboratory"}]}]}});
    let (s, _, b) = patient.put("Consent/labs", &rule).await;
    assert!(s.is_success(), "{b}");
    put(
        &node,
        "Observation/lab",
        json!({"resourceType": "Observation", "id": "lab", "status": "final",
               "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
               "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0"}]},
               "subject": {"reference": "Patient/pat"}}),
    )
    .await;
    assert_eq!(card.get("Observation/lab").await.0, StatusCode::OK);
    assert_eq!(
        card.get("Observation/bp").await.0,
        StatusCode::NOT_FOUND,
        "earlier data stays closed"
    );
    assert_eq!(
        card.ids("Observation?_total=accurate").await,
        vec!["lab".to_string()]
    );
    assert_eq!(card.total("Observation?_total=accurate").await, 1);
    assert_eq!(card.get("Patient/pat").await.0, StatusCode::NOT_FOUND);
}

on_both_databases!(
    the_clinical_story,
    care_teams_and_sharing_rules_open_the_record
);
