//! Appointments, told as the clinic's story: a practice publishes a practitioner's hours; a
//! patient finds a time, holds it and books it (ITI-115, -116, -117), and the booked time is
//! no longer offered; another patient cannot take it; cancelling frees it. Fifty bookings of
//! one time at once make exactly one booking, on SQLite, on PostgreSQL, and across two
//! nodes on one PostgreSQL database. Where the organization asks for it, bookings wait for
//! staff approval and a patient books at most once a day.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::audit_log::account_token;
use crate::harness::Node;
use crate::on_both_databases;

const MEDMESH: &str = "https://medmesh.dev/fhir/StructureDefinition/";

pub(crate) async fn put(node: &Node, path: &str, body: Value) {
    let (s, _, b) = node.put(path, &body).await;
    assert!(s.is_success(), "{path}: {s} {b}");
}

/// A practice open every day around the clock (so the story does not depend on the day it
/// runs), with 20-minute consultations and a 10-minute buffer after each.
pub(crate) async fn seed(node: &Node, options: &[(&str, bool)]) {
    let mut org = json!({"resourceType": "Organization", "id": "o1", "name": "Riverside Practice"});
    if !options.is_empty() {
        org["extension"] = options
            .iter()
            .map(|(k, v)| json!({"url": format!("{MEDMESH}{k}"), "valueBoolean": v}))
            .collect();
    }
    put(node, "Organization/o1", org).await;
    put(
        node,
        "Practitioner/p1",
        json!({"resourceType": "Practitioner", "id": "p1", "name": [{"family": "Ortega"}]}),
    )
    .await;
    put(
        node,
        "Location/l1",
        json!({"resourceType": "Location", "id": "l1", "name": "Riverside",
               "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/timezone",
                              "valueCode": "Europe/Berlin"}]}),
    )
    .await;
    put(
        node,
        "PractitionerRole/r1",
        json!({"resourceType": "PractitionerRole", "id": "r1",
               "practitioner": {"reference": "Practitioner/p1"},
               "organization": {"reference": "Organization/o1"},
               "location": [{"reference": "Location/l1"}],
               "availableTime": [{"daysOfWeek": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                                  "allDay": true}]}),
    )
    .await;
    put(
        node,
        "Schedule/s1",
        json!({"resourceType": "Schedule", "id": "s1", "active": true,
               "actor": [{"reference": "PractitionerRole/r1"}, {"reference": "Location/l1"}],
               "serviceType": [{"coding": [{"system": "http://snomed.info/sct", "code": "11429006",
                                            "display": "Consultation"}],
                                "extension": [{"url": format!("{MEDMESH}visit-minutes"),
                                               "valuePositiveInt": 20}]}],
               "extension": [{"url": format!("{MEDMESH}booking-buffer-minutes"),
                              "valueUnsignedInt": 10}]}),
    )
    .await;
}

pub(crate) async fn patient(node: &Node, id: &str) {
    put(
        node,
        &format!("Patient/{id}"),
        json!({"resourceType": "Patient", "id": id, "gender": "unknown"}),
    )
    .await;
}

fn instant(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn now_micros() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

/// Proposals from `$find` for `patient`, a day from now onwards.
pub(crate) async fn find(node: &Node, patient: &str, count: usize) -> Vec<Value> {
    let start = now_micros() + 24 * 3_600_000_000;
    let end = start + 2 * 24 * 3_600_000_000;
    let (s, _, b) = node
        .get(&format!(
            "Appointment/$find?start={}&end={}&patient=Patient/{patient}&_count={count}",
            instant(start),
            instant(end)
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["type"], "searchset");
    b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect()
}

/// The verified practitioner p1's account (user `ortega`).
pub(crate) fn ortega(node: &Node) -> Node {
    account_token(
        node,
        "practitioner",
        "ortega",
        &[
            "--practitioner",
            "p1",
            "--organization",
            "o1",
            "--verification",
            "verified",
        ],
        "user/*.cruds",
    )
}

/// A patient account for Patient/`id` that may book (create and update its appointments).
pub(crate) fn booking_patient(node: &Node, id: &str) -> Node {
    account_token(
        node,
        "patient",
        &format!("pat-{id}"),
        &["--patient", id],
        "patient/*.crus",
    )
}

/// Books `proposal` with `$book` as `node`'s caller; the booked Appointment's id.
pub(crate) async fn booked_id(node: &Node, proposal: &Value) -> String {
    let (s, _, b) = node.post("Appointment/$book", &parameters(proposal)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

pub(crate) fn for_patient(proposal: &Value, patient: &str) -> Value {
    let mut p = proposal.clone();
    let parts = p["participant"].as_array_mut().unwrap();
    parts.retain(|x| {
        !x["actor"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("Patient/")
    });
    parts.push(
        json!({"actor": {"reference": format!("Patient/{patient}")}, "status": "needs-action"}),
    );
    p
}

fn parameters(appointment: &Value) -> Value {
    json!({"resourceType": "Parameters",
           "parameter": [{"name": "appointment", "resource": appointment}]})
}

async fn api(node: &Node, path: &str, body: &Value) -> (StatusCode, Value) {
    let (s, _, b) = node
        .send(node.auth(node.client.post(node.root_url(path)).json(body)))
        .await;
    (s, b)
}

async fn a_patient_finds_holds_books_and_cancels(node: Node) {
    seed(&node, &[]).await;
    patient(&node, "pa").await;
    patient(&node, "pb").await;
    let pa = booking_patient(&node, "pa");
    let pb = booking_patient(&node, "pb");

    let offers = find(&pa, "pa", 5).await;
    assert_eq!(offers.len(), 5);
    for o in &offers {
        assert_eq!(o["status"], "proposed");
        assert_eq!(o["minutesDuration"], 20);
        assert_eq!(o["participant"][0]["actor"]["reference"], "Practitioner/p1");
    }
    // Visits follow each other with the buffer between them.
    let starts: Vec<String> = offers
        .iter()
        .map(|o| o["start"].as_str().unwrap().to_string())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{starts:?}");

    // Held: pending, with the hold's end, and the time already claimed.
    let (s, _, held) = pa.post("Appointment/$hold", &parameters(&offers[0])).await;
    assert_eq!(s, StatusCode::OK, "{held}");
    assert_eq!(held["status"], "pending");
    let id = held["id"].as_str().unwrap().to_string();
    assert!(
        held["extension"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["url"] == format!("{MEDMESH}held-until"))
    );
    // The other patient cannot take the held time.
    let (s, _, b) = pb
        .post(
            "Appointment/$book",
            &parameters(&for_patient(&offers[0], "pb")),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    // Nor book for someone else.
    let (s, _, _) = pb
        .post(
            "Appointment/$book",
            &parameters(&for_patient(&offers[1], "pa")),
        )
        .await;
    assert!(
        s == StatusCode::FORBIDDEN || s == StatusCode::NOT_FOUND,
        "{s}"
    );

    // Booked by reference to the hold: booked, with its Slot.
    let by_ref = json!({"resourceType": "Parameters", "parameter": [
        {"name": "appointment-reference", "valueReference": {"reference": format!("Appointment/{id}")}}]});
    let (s, _, b) = pa.post("Appointment/$book", &by_ref).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let booked = &b["entry"][0]["resource"];
    assert_eq!(booked["status"], "booked");
    assert_eq!(booked["id"], id.as_str());
    let slot = booked["slot"][0]["reference"].as_str().unwrap().to_string();
    let (s, _, slot_body) = node.get(&slot).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(slot_body["status"], "busy");
    assert_eq!(slot_body["start"], booked["start"]);

    // The booked time is no longer offered, to anyone.
    let again = find(&pb, "pb", 5).await;
    assert!(
        again.iter().all(|o| o["start"] != booked["start"]),
        "{again:?}"
    );

    // The other patient books the next time directly.
    let theirs = booked_id(&pb, &for_patient(&offers[1], "pb")).await;

    // A patient cannot cancel someone else's appointment; they can cancel their own, and the
    // time is offered again.
    let (s, _) = api(
        &pa,
        &format!("/api/appointments/{theirs}/cancel"),
        &json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = api(
        &pa,
        &format!("/api/appointments/{id}/cancel"),
        &json!({"reason": "feeling better"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "cancelled");
    assert_eq!(node.get(&slot).await.2["status"], "free");
    let after = find(&pb, "pb", 5).await;
    assert!(
        after.iter().any(|o| o["start"] == booked["start"]),
        "{after:?}"
    );

    // The booked practitioner sees the appointment and marks the patient arrived; one who is
    // not part of it sees nothing.
    let doc = ortega(&node);
    let (s, _, b) = doc.get(&format!("Appointment/{theirs}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = api(
        &doc,
        &format!("/api/appointments/{theirs}/arrived"),
        &json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "arrived");
    // The practitioner's figures, as the node's operator sees them: one cancelled, one
    // arrived.
    let (s, b) = get_api(&node, "/api/appointments/figures?practitioner=p1").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["byStatus"]["cancelled"], 1, "{b}");
    assert_eq!(b["byStatus"]["arrived"], 1, "{b}");
    assert_eq!(b["byStatus"]["noshow"], 0, "{b}");
    let (s, _) = get_api(&node, "/api/appointments/figures?practitioner=p1&from=soon").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    put(
        &node,
        "Practitioner/p2",
        json!({"resourceType": "Practitioner", "id": "p2"}),
    )
    .await;
    let other = account_token(
        &node,
        "practitioner",
        "stranger",
        &[
            "--practitioner",
            "p2",
            "--organization",
            "o1",
            "--verification",
            "verified",
        ],
        "user/*.cruds",
    );
    assert_eq!(
        other.get(&format!("Appointment/{theirs}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, _) = api(
        &other,
        &format!("/api/appointments/{theirs}/noshow"),
        &json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A time the rules do not offer is refused.
    let mut odd = for_patient(&offers[2], "pb");
    odd["end"] = json!(instant(now_micros() + 30 * 24 * 3_600_000_000));
    let (s, _, _) = pb.post("Appointment/$book", &parameters(&odd)).await;
    assert!(
        s == StatusCode::BAD_REQUEST || s == StatusCode::UNPROCESSABLE_ENTITY,
        "{s}"
    );
}

/// Fifty bookings of one time at once, each for another patient, `per_node` of them on each
/// of `nodes`: exactly one succeeds.
async fn fifty_at_once(nodes: &[&Node], offer: &Value, first_patient: usize) {
    let mut calls = Vec::new();
    for i in 0..50 {
        let node = nodes[i % nodes.len()];
        let body = parameters(&for_patient(offer, &format!("c{}", first_patient + i)));
        calls.push(async move {
            let (s, _, b) = node.post("Appointment/$book", &body).await;
            (s, b)
        });
    }
    let answers = join_all(calls).await;
    let statuses: Vec<StatusCode> = answers.iter().map(|(s, _)| *s).collect();
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let conflict = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    // What any other answer said, so a failure shows why.
    let others: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s != StatusCode::OK && *s != StatusCode::CONFLICT)
        .map(|(_, b)| b)
        .collect();
    assert_eq!((ok, conflict), (1, 49), "{statuses:?} {others:?}");
}

async fn fifty_concurrent_bookings_of_one_time_make_one(node: Node) {
    seed(&node, &[]).await;
    let entries: Vec<Value> = (0..100)
        .map(|i| {
            json!({"resource": {"resourceType": "Patient", "id": format!("c{i}")},
                   "request": {"method": "PUT", "url": format!("Patient/c{i}")}})
        })
        .collect();
    let (s, _, b) = node
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let offers = find(&node, "c0", 3).await;
    fifty_at_once(&[&node], &offers[0], 0).await;
    if node.is_postgres() {
        // Two nodes on one database: still exactly one.
        let replica = node.replica().await;
        fifty_at_once(&[&node, &replica], &offers[1], 50).await;
    }
    let (_, _, b) = node.get("Appointment?status=booked&_total=accurate").await;
    assert_eq!(b["total"], if node.is_postgres() { 2 } else { 1 }, "{b}");
}

/// The staff inbox's messages, polled until `what` is among them (the hub's worker delivers
/// a notice due now within a second or two).
async fn staff_told(doc: &Node, what: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (s, b) = get_api(doc, "/api/account/inbox").await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let messages: Vec<String> = b["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["message"].as_str().unwrap().to_string())
            .collect();
        if messages.iter().any(|m| m == what) {
            return messages;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never told: {what} ({messages:?})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn bookings_wait_for_approval_and_one_a_day(node: Node) {
    seed(
        &node,
        &[("booking-approval", true), ("booking-one-per-day", true)],
    )
    .await;
    patient(&node, "pa").await;
    let pa = booking_patient(&node, "pa");
    let doc = ortega(&node);
    let offers = find(&pa, "pa", 3).await;
    let (s, _, b) = pa.post("Appointment/$book", &parameters(&offers[0])).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let a = &b["entry"][0]["resource"];
    assert_eq!(a["status"], "pending");
    let id = a["id"].as_str().unwrap().to_string();
    // The practitioner is told of the request in their staff inbox, in words naming no one.
    let told = staff_told(&doc, "A booking request awaits your approval at medmesh").await;
    assert_eq!(told.len(), 1, "{told:?}");
    // A patient has no staff inbox.
    assert_eq!(
        get_api(&pa, "/api/account/inbox").await.0,
        StatusCode::NOT_FOUND
    );
    // One booking a day: the next time on the same day is refused. The day is the
    // schedule's (Berlin), not UTC's: at 23:25 UTC it is already tomorrow there.
    let berlin_day = |start: &Value| {
        start
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
            .in_tz("Europe/Berlin")
            .unwrap()
            .date()
    };
    let same_day = offers
        .iter()
        .skip(1)
        .find(|o| berlin_day(&o["start"]) == berlin_day(&a["start"]));
    if let Some(o) = same_day {
        let (s, _, b) = pa.post("Appointment/$book", &parameters(o)).await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");
    }
    // A patient cannot approve their own booking; the practitioner can.
    let (s, _) = api(&pa, &format!("/api/appointments/{id}/approve"), &json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = api(&doc, &format!("/api/appointments/{id}/approve"), &json!({})).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "booked");
    // The patient cancels; the practitioner is told, and marks the notice read (a notice
    // of theirs only).
    let (s, _) = api(&pa, &format!("/api/appointments/{id}/cancel"), &json!({})).await;
    assert_eq!(s, StatusCode::OK);
    staff_told(&doc, "A patient cancelled an appointment at medmesh").await;
    let (_, inbox) = get_api(&doc, "/api/account/inbox").await;
    let first = inbox["notifications"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = api(
        &doc,
        &format!("/api/account/inbox/{first}/read"),
        &json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, inbox) = get_api(&doc, "/api/account/inbox").await;
    assert_eq!(inbox["notifications"][0]["read"], true, "{inbox}");
    let (s, _) = api(&pa, &format!("/api/account/inbox/{first}/read"), &json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

async fn get_api(node: &Node, path: &str) -> (StatusCode, Value) {
    let (s, _, b) = node
        .send(node.auth(node.client.get(node.root_url(path))))
        .await;
    (s, b)
}

/// A second practice in Munich, German-speaking, taking the Gold plan; the first (Berlin)
/// speaks Portuguese and takes none.
async fn the_directory_finds_by_specialty_place_plan_and_language(node: Node) {
    seed(&node, &[]).await;
    let cardiology = json!([{"coding": [{"system": "http://snomed.info/sct", "code": "394579002",
                                         "display": "Cardiology"}]}]);
    let mut r1 = node.get("PractitionerRole/r1").await.2;
    r1["specialty"] = cardiology.clone();
    put(&node, "PractitionerRole/r1", r1).await;
    put(
        &node,
        "Practitioner/p1",
        json!({"resourceType": "Practitioner", "id": "p1",
        "name": [{"given": ["Ana"], "family": "Ortega"}],
        "communication": [{"coding": [{"system": "urn:ietf:bcp:47", "code": "pt-BR"}]}]}),
    )
    .await;
    let mut l1 = node.get("Location/l1").await.2;
    l1["position"] = json!({"latitude": 52.5163, "longitude": 13.3777});
    put(&node, "Location/l1", l1).await;
    put(
        &node,
        "Organization/o2",
        json!({"resourceType": "Organization", "id": "o2", "name": "Isar Herz"}),
    )
    .await;
    put(
        &node,
        "Practitioner/p2",
        json!({"resourceType": "Practitioner", "id": "p2",
        "name": [{"given": ["Jonas"], "family": "Weber"}],
        "communication": [{"coding": [{"system": "urn:ietf:bcp:47", "code": "de"}]}]}),
    )
    .await;
    put(
        &node,
        "Location/l2",
        json!({"resourceType": "Location", "id": "l2", "name": "Marienplatz",
        "position": {"latitude": 48.1374, "longitude": 11.5755},
        "address": {"line": ["Marienplatz 1"], "city": "München", "postalCode": "80331"}}),
    )
    .await;
    put(&node, "PractitionerRole/r2", json!({"resourceType": "PractitionerRole", "id": "r2",
        "practitioner": {"reference": "Practitioner/p2"}, "organization": {"reference": "Organization/o2"},
        "location": [{"reference": "Location/l2"}], "specialty": cardiology})).await;
    put(
        &node,
        "InsurancePlan/gold",
        json!({"resourceType": "InsurancePlan", "id": "gold", "name": "Gold Care",
        "network": [{"reference": "Organization/o2"}]}),
    )
    .await;
    // A patient searches the directory (the directory is open to every role).
    patient(&node, "pa").await;
    let pa = booking_patient(&node, "pa");
    let names = |b: &Value| -> Vec<String> {
        b["practitioners"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let (s, b) = get_api(&pa, "/api/directory?specialty=cardiology").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(names(&b), vec!["Ana Ortega", "Jonas Weber"]);
    // Near Munich: only the Munich practice, with its distance.
    let (_, b) = get_api(&pa, "/api/directory?near=48.14,11.58&km=50").await;
    assert_eq!(names(&b), vec!["Jonas Weber"]);
    assert!(b["practitioners"][0]["distance_km"].as_f64().unwrap() < 1.0);
    assert_eq!(
        b["practitioners"][0]["address"],
        "Marienplatz 1, 80331, München"
    );
    // Within 600 km of Munich both, nearest first.
    let (_, b) = get_api(&pa, "/api/directory?near=48.14,11.58&km=600").await;
    assert_eq!(names(&b), vec!["Jonas Weber", "Ana Ortega"]);
    let (_, b) = get_api(&pa, "/api/directory?insurance=Gold%20Care").await;
    assert_eq!(names(&b), vec!["Jonas Weber"]);
    assert_eq!(b["practitioners"][0]["plans"], json!(["Gold Care"]));
    let (_, b) = get_api(&pa, "/api/directory?language=pt").await;
    assert_eq!(names(&b), vec!["Ana Ortega"]);
    // The next free time: the Berlin practitioner has a schedule, the Munich one none.
    let (_, b) = get_api(&pa, "/api/directory?specialty=394579002&next_free=true").await;
    assert!(b["practitioners"][0]["next_free"].is_string(), "{b}");
    assert!(b["practitioners"][1]["next_free"].is_null(), "{b}");
    let (s, _) = get_api(&pa, "/api/directory?near=north").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

/// More schedules than one search takes values of a parameter (100): `$find` still spans
/// them all.
async fn find_spans_more_schedules_than_one_search_takes(node: Node) {
    let mut entries = Vec::new();
    for i in 0..120 {
        for r in [
            json!({"resourceType": "Practitioner", "id": format!("m{i}")}),
            json!({"resourceType": "PractitionerRole", "id": format!("mr{i}"),
                   "practitioner": {"reference": format!("Practitioner/m{i}")},
                   "availableTime": [{"daysOfWeek": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "allDay": true}]}),
            json!({"resourceType": "Schedule", "id": format!("ms{i}"), "active": true,
                   "actor": [{"reference": format!("PractitionerRole/mr{i}")}]}),
        ] {
            let url = format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap()
            );
            entries.push(json!({"resource": r, "request": {"method": "PUT", "url": url}}));
        }
    }
    let (s, _, b) = node
        .post(
            "",
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let start = now_micros() + 3_600_000_000;
    let (s, _, b) = node
        .get(&format!(
            "Appointment/$find?start={}&end={}&_count=500",
            instant(start),
            instant(start + 7_200_000_000)
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let mut who: Vec<String> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["resource"]["participant"][0]["actor"]["reference"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    who.sort();
    who.dedup();
    assert_eq!(who.len(), 120);
}

/// A patient's notifications' messages, polled until `what` is among them.
async fn patient_told(node: &Node, patient: &str, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (s, b) = get_api(node, &format!("/api/patients/{patient}/notifications")).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        if b["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["message"] == what)
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never told: {what} ({b})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A practice with a waiting list and three patients, the first of whom has booked the
/// first of three times offered: their accounts, the offers and the booking's id.
async fn waitlist_practice(node: &Node) -> (Node, Node, Node, Vec<Value>, String) {
    seed(node, &[("booking-waitlist", true)]).await;
    for p in ["pa", "pb", "pc"] {
        patient(node, p).await;
    }
    let (pa, pb, pc) = (
        booking_patient(node, "pa"),
        booking_patient(node, "pb"),
        booking_patient(node, "pc"),
    );
    let offers = find(&pa, "pa", 3).await;
    let taken = booked_id(&pa, &offers[0]).await;
    (pa, pb, pc, offers, taken)
}

/// Where the practice keeps a waiting list, a freed time is held for the patient who waited
/// longest, who is told, and books it; no one else can take it meanwhile.
async fn a_freed_time_goes_to_the_patient_who_waited_longest(node: Node) {
    let (pa, pb, pc, offers, taken) = waitlist_practice(&node).await;
    // pb waits first, then pc.
    let (s, first) = api(
        &pb,
        "/api/appointments/waitlist",
        &json!({"practitioner": "p1"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    assert_eq!(first["status"], "waitlist");
    let (s, _) = api(
        &pc,
        "/api/appointments/waitlist",
        &json!({"practitioner": "Practitioner/p1"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    // pa cancels: the time is held for pb, who is told.
    let (s, _) = api(
        &pa,
        &format!("/api/appointments/{taken}/cancel"),
        &json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let waiting = first["id"].as_str().unwrap();
    let (s, _, offered) = pb.get(&format!("Appointment/{waiting}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(offered["status"], "pending");
    assert_eq!(offered["start"], offers[0]["start"]);
    patient_told(&pb, "pb", "A time has become free at medmesh").await;
    // No one else can take it meanwhile.
    let (s, _, _) = pc
        .post(
            "Appointment/$book",
            &parameters(&for_patient(&offers[0], "pc")),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // pb books it.
    let by_ref = json!({"resourceType": "Parameters", "parameter": [
        {"name": "appointment-reference", "valueReference": {"reference": format!("Appointment/{waiting}")}}]});
    let (s, _, b) = pb.post("Appointment/$book", &by_ref).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["entry"][0]["resource"]["status"], "booked");
    // A practice without a waiting list refuses one.
    put(
        &node,
        "Organization/o1",
        json!({"resourceType": "Organization", "id": "o1"}),
    )
    .await;
    let (s, _) = api(
        &pc,
        "/api/appointments/waitlist",
        &json!({"practitioner": "p1"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

/// Waits until `who` sees Appointment `id` with `status`; returns it.
async fn appointment_becomes(who: &Node, id: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (s, _, b) = who.get(&format!("Appointment/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        if b["status"] == status {
            return b;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Appointment/{id} never became {status}: {b}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// An offer not taken in time (here two seconds) passes to the next patient waiting, and
/// the first goes back on the list, last; the next patient is told and books it.
async fn an_offer_not_taken_passes_to_the_next_patient(db: crate::harness::Db) {
    let node = Node::start_with_env(db, &[("MEDMESH_WAITLIST_OFFER_SECONDS", "2")]).await;
    let (pa, pb, pc, offers, taken) = waitlist_practice(&node).await;
    let mut waiting = Vec::new();
    for who in [&pb, &pc] {
        let (s, w) = api(
            who,
            "/api/appointments/waitlist",
            &json!({"practitioner": "p1"}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{w}");
        waiting.push(w["id"].as_str().unwrap().to_string());
    }
    let (s, _) = api(
        &pa,
        &format!("/api/appointments/{taken}/cancel"),
        &json!({}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let offered = appointment_becomes(&pb, &waiting[0], "pending").await;
    assert_eq!(offered["start"], offers[0]["start"]);
    // pb does not book: the offer lapses and passes to pc.
    let next = appointment_becomes(&pc, &waiting[1], "pending").await;
    assert_eq!(next["start"], offers[0]["start"]);
    let back = appointment_becomes(&pb, &waiting[0], "waitlist").await;
    assert!(back.get("start").is_none(), "{back}");
    patient_told(&pc, "pc", "A time has become free at medmesh").await;
    let by_ref = json!({"resourceType": "Parameters", "parameter": [
        {"name": "appointment-reference", "valueReference": {"reference": format!("Appointment/{}", waiting[1])}}]});
    let (s, _, b) = pc.post("Appointment/$book", &by_ref).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["entry"][0]["resource"]["status"], "booked");
    // pb, back on the list, can no longer book the time that was offered to them.
    let (s, _, _) = pb
        .post(
            "Appointment/$book",
            &parameters(&for_patient(&offers[0], "pb")),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_not_taken_passes_to_the_next_patient_on_sqlite() {
    an_offer_not_taken_passes_to_the_next_patient(crate::harness::Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_not_taken_passes_to_the_next_patient_on_postgres() {
    an_offer_not_taken_passes_to_the_next_patient(crate::harness::Db::Postgres).await;
}

/// `$find` keeps the directory bodies it decoded and the calendars it compiled
/// (docs/scheduling.md): a change to a Schedule, or to the PractitionerRole under it, is
/// seen by the very next call, also when another replica wrote it.
async fn find_sees_each_change_to_a_calendar(node: Node) {
    seed(&node, &[]).await;
    patient(&node, "pa").await;
    let replica = if node.is_postgres() {
        Some(node.replica().await)
    } else {
        None
    };
    let writer = replica.as_ref().unwrap_or(&node);
    let minutes = |p: &Value| {
        let at = |f: &str| {
            time::OffsetDateTime::parse(
                p[f].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        };
        (at("end") - at("start")).whole_minutes()
    };
    let who = |offers: &[Value]| -> Vec<String> {
        let mut out: Vec<String> = offers
            .iter()
            .flat_map(|o| o["participant"].as_array().unwrap().clone())
            .filter_map(|p| p["actor"]["reference"].as_str().map(str::to_string))
            .filter(|r| r.starts_with("Practitioner/"))
            .collect();
        out.sort();
        out.dedup();
        out
    };
    let before = find(&node, "pa", 3).await;
    assert!(!before.is_empty());
    assert_eq!(minutes(&before[0]), 20);
    assert_eq!(who(&before), ["Practitioner/p1"]);
    // The Schedule's visits become 45 minutes long.
    let (s, _, mut schedule) = node.get("Schedule/s1").await;
    assert_eq!(s, StatusCode::OK, "{schedule}");
    schedule["serviceType"][0]["extension"][0]["valuePositiveInt"] = json!(45);
    put(writer, "Schedule/s1", schedule).await;
    let after = find(&node, "pa", 3).await;
    assert!(!after.is_empty());
    assert!(after.iter().all(|p| minutes(p) == 45), "{after:?}");
    // The role under it now books another practitioner; the Schedule itself is unchanged.
    put(
        writer,
        "Practitioner/p2",
        json!({"resourceType": "Practitioner", "id": "p2", "name": [{"family": "Okafor"}]}),
    )
    .await;
    let (s, _, mut role) = node.get("PractitionerRole/r1").await;
    assert_eq!(s, StatusCode::OK, "{role}");
    role["practitioner"] = json!({"reference": "Practitioner/p2"});
    put(writer, "PractitionerRole/r1", role).await;
    let moved = find(&node, "pa", 3).await;
    assert!(!moved.is_empty());
    assert_eq!(who(&moved), ["Practitioner/p2"]);
    assert!(moved.iter().all(|p| minutes(p) == 45), "{moved:?}");
}

on_both_databases!(
    a_freed_time_goes_to_the_patient_who_waited_longest,
    find_sees_each_change_to_a_calendar,
    find_spans_more_schedules_than_one_search_takes,
    the_directory_finds_by_specialty_place_plan_and_language,
    a_patient_finds_holds_books_and_cancels,
    fifty_concurrent_bookings_of_one_time_make_one,
    bookings_wait_for_approval_and_one_a_day,
);
