//! FHIR Subscriptions (R4 backport, rest-hook), told as a clinic's story with a receiver of
//! the suite's own on loopback: a patient subscribes to their appointments and results and a
//! practitioner to the appointments booked with them; each endpoint takes a handshake, and
//! then exactly the events its owner may read, numbered, with the payload it asked for.
//! Another patient's booking is not told to the first (the PDP decides, as the owner), a
//! preliminary result is not a result, a failing endpoint puts its subscription in error, a
//! deleted subscription is told nothing more, and no one reads another's subscription.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode as HttpStatus};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::{Db, Node};
use crate::scheduling::{booked_id, booking_patient, find, for_patient, ortega, patient, seed};

const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/";
const TOPICS: &str = "https://medmesh.dev/fhir/SubscriptionTopic/";

/// What the receiver was sent: the path it was sent to, its headers and its body.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, HeaderMap, Value)>>>);

impl Received {
    fn all(&self) -> Vec<(String, HeaderMap, Value)> {
        self.0.lock().unwrap().clone()
    }

    /// The bundles sent to `/hooks/{name}`.
    fn at(&self, name: &str) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|(p, _, _)| p == name)
            .map(|(_, _, b)| b)
            .collect()
    }

    /// Waits until `/hooks/{name}` has had `n` bundles; returns them.
    async fn wait_for(&self, name: &str, n: usize) -> Vec<Value> {
        for _ in 0..600 {
            let got = self.at(name);
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{name} had {} notifications, not {n}", self.at(name).len());
    }
}

/// A rest-hook receiver on loopback: `/hooks/fail` answers 500, any other name 200.
async fn receiver() -> (String, Received) {
    let received = Received::default();
    async fn take(
        State(r): State<Received>,
        Path(name): Path<String>,
        headers: HeaderMap,
        body: String,
    ) -> HttpStatus {
        let value = serde_json::from_str(&body).unwrap_or(Value::Null);
        r.0.lock().unwrap().push((name.clone(), headers, value));
        if name == "fail" {
            HttpStatus::INTERNAL_SERVER_ERROR
        } else {
            HttpStatus::OK
        }
    }
    let app = axum::Router::new()
        .route("/hooks/{name}", axum::routing::post(take))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, received)
}

fn subscription(topic: &str, filter: Option<&str>, endpoint: &str, content: &str) -> Value {
    let mut s = json!({
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "the suite listens",
        "criteria": format!("{TOPICS}{topic}"),
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": format!("{BACKPORT}backport-payload-content"),
                                        "valueCode": content}]},
            "header": ["Authorization: Bearer receiver-secret"],
        }
    });
    if let Some(f) = filter {
        s["_criteria"] = json!({"extension": [{"url": format!("{BACKPORT}backport-filter-criteria"),
                                               "valueString": f}]});
    }
    s
}

async fn subscribe(who: &Node, body: &Value) -> String {
    let (s, h, b) = who.post("Subscription", body).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["status"], "requested");
    assert_eq!(b["channel"]["header"][0], "Authorization: [redacted]");
    assert!(h.get("location").is_some());
    b["id"].as_str().unwrap().to_string()
}

/// The status parameter `name` of a notification bundle (or a `$status` answer).
fn param(bundle: &Value, name: &str) -> Value {
    bundle["entry"][0]["resource"]["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

fn kind(bundle: &Value) -> String {
    param(bundle, "type")["valueCode"]
        .as_str()
        .unwrap()
        .to_string()
}

fn focus(bundle: &Value) -> String {
    param(bundle, "notification-event")["part"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "focus")
        .map(|p| {
            p["valueReference"]["reference"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .unwrap_or_default()
}

fn event_number(bundle: &Value) -> String {
    param(bundle, "notification-event")["part"][0]["valueString"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn wait_status(who: &Node, id: &str, want: &str) -> Value {
    for _ in 0..600 {
        let (s, _, b) = who.get(&format!("Subscription/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        if b["status"] == want {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Subscription/{id} never became {want}");
}

fn report(id: &str, patient: &str, status: &str) -> Value {
    json!({"resourceType": "DiagnosticReport", "id": id, "status": status,
           "subject": {"reference": format!("Patient/{patient}")},
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
           "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8"}]}})
}

async fn subscribers_are_told_what_they_may_read(db: Db) {
    let node = Node::start_with_env(db, &[("MEDMESH_WEBHOOKS_ALLOW_INTERNAL", "true")]).await;
    let (hooks, received) = receiver().await;
    seed(&node, &[]).await;
    patient(&node, "pa").await;
    patient(&node, "pb").await;
    let pa = booking_patient(&node, "pa");
    let pb = booking_patient(&node, "pb");
    let doctor = ortega(&node);

    // What the node cannot do is refused, with the element it is about.
    let mut other_topic = subscription("appointment", None, &format!("{hooks}/x"), "id-only");
    other_topic["criteria"] = json!("http://hl7.org/SubscriptionTopic/admission");
    let (s, _, b) = pa.post("Subscription", &other_topic).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["issue"][0]["expression"][0], "Subscription.criteria");
    let mut websocket = subscription("appointment", None, &format!("{hooks}/x"), "id-only");
    websocket["channel"]["type"] = json!("websocket");
    assert_eq!(
        pa.post("Subscription", &websocket).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let bad_filter = subscription(
        "result",
        Some("DiagnosticReport?performer=x"),
        &format!("{hooks}/x"),
        "id-only",
    );
    assert_eq!(
        pa.post("Subscription", &bad_filter).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // The patient's subscription takes a handshake, with its header, and becomes active.
    let pa_appointments = subscribe(
        &pa,
        &subscription(
            "appointment",
            None,
            &format!("{hooks}/pa-appointments"),
            "id-only",
        ),
    )
    .await;
    let handshake = received.wait_for("pa-appointments", 1).await;
    assert_eq!(kind(&handshake[0]), "handshake");
    assert_eq!(handshake[0]["type"], "history");
    let (_, headers, _) = received
        .all()
        .into_iter()
        .find(|(p, _, _)| p == "pa-appointments")
        .unwrap();
    assert_eq!(headers["authorization"], "Bearer receiver-secret");
    assert_eq!(headers["content-type"], "application/fhir+json");
    wait_status(&pa, &pa_appointments, "active").await;
    let doctor_booked = subscribe(
        &doctor,
        &subscription(
            "appointment",
            Some("Appointment?status=booked"),
            &format!("{hooks}/doctor"),
            "full-resource",
        ),
    )
    .await;
    received.wait_for("doctor", 1).await;

    // The patient books: both are told, each as they asked.
    let offers = find(&pa, "pa", 4).await;
    let first = booked_id(&pa, &offers[0]).await;
    let pa_told = received.wait_for("pa-appointments", 2).await;
    let event = &pa_told[1];
    assert_eq!(kind(event), "event-notification");
    assert!(
        focus(event).ends_with(&format!("/Appointment/{first}")),
        "{event}"
    );
    assert_eq!(event_number(event), "1");
    assert!(
        event["entry"][1]["resource"].is_null(),
        "id-only carries no resource"
    );
    let doctor_told = received.wait_for("doctor", 2).await;
    assert_eq!(doctor_told[1]["entry"][1]["resource"]["id"], first.as_str());
    assert_eq!(doctor_told[1]["entry"][1]["resource"]["status"], "booked");

    // Another patient books with the same practitioner: the practitioner is told; the first
    // patient may not read it, so is told nothing.
    let second = booked_id(&pb, &for_patient(&offers[2], "pb")).await;
    let doctor_told = received.wait_for("doctor", 3).await;
    assert_eq!(
        doctor_told[2]["entry"][1]["resource"]["id"],
        second.as_str()
    );
    let (s, _, status) = pa
        .get(&format!("Subscription/{pa_appointments}/$status"))
        .await;
    assert_eq!(s, StatusCode::OK, "{status}");
    assert_eq!(status["type"], "searchset");
    assert_eq!(param(&status, "type")["valueCode"], "query-status");
    assert_eq!(
        param(&status, "events-since-subscription-start")["valueString"],
        "1"
    );
    assert_eq!(param(&status, "status")["valueCode"], "active");
    assert_eq!(received.at("pa-appointments").len(), 2);

    // No one reads, changes or removes another's subscription; each lists their own.
    assert_eq!(
        pb.get(&format!("Subscription/{pa_appointments}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        pb.get(&format!("Subscription/{pa_appointments}/$status"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        pb.delete(&format!("Subscription/{pa_appointments}"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let theirs = pa.get(&format!("Subscription/{pa_appointments}")).await.2;
    assert_eq!(
        pb.put(&format!("Subscription/{pa_appointments}"), &theirs)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // A PUT to a new id creates it there (update as create); a classic R4 query
    // subscription is refused at its criteria.
    let mut named = subscription("result", None, &format!("{hooks}/pb"), "empty");
    named["id"] = json!("pb-results");
    let (s, _, b) = pb.put("Subscription/pb-results", &named).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["id"], "pb-results");
    let mut classic = named.clone();
    classic["id"] = json!("classic");
    classic["criteria"] = json!("Observation?code=http://loinc.org|1975-2");
    let (s, _, b) = pb.put("Subscription/classic", &classic).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["issue"][0]["expression"][0], "Subscription.criteria");
    assert_eq!(
        pb.delete("Subscription/pb-results").await.0,
        StatusCode::NO_CONTENT
    );
    let (_, _, mine) = pa.get("Subscription").await;
    assert_eq!(mine["total"], 1);
    assert_eq!(mine["entry"][0]["resource"]["id"], pa_appointments.as_str());

    // Results: a preliminary report is no result; the final one is, with its resource; the
    // other patient's final report is not the first patient's to hear of.
    let pa_results = subscribe(
        &pa,
        &subscription(
            "result",
            Some("DiagnosticReport?code=http://loinc.org|24323-8"),
            &format!("{hooks}/pa-results"),
            "full-resource",
        ),
    )
    .await;
    received.wait_for("pa-results", 1).await;
    wait_status(&pa, &pa_results, "active").await;
    let (s, _, b) = node
        .put("DiagnosticReport/r1", &report("r1", "pa", "preliminary"))
        .await;
    assert!(s.is_success(), "{b}");
    let (s, _, b) = node
        .put("DiagnosticReport/r2", &report("r2", "pb", "final"))
        .await;
    assert!(s.is_success(), "{b}");
    let (s, _, b) = node
        .put("DiagnosticReport/r1", &report("r1", "pa", "final"))
        .await;
    assert!(s.is_success(), "{b}");
    let results = received.wait_for("pa-results", 2).await;
    let told = &results[1];
    assert_eq!(told["entry"][1]["resource"]["id"], "r1");
    assert_eq!(told["entry"][1]["resource"]["status"], "final");
    assert_eq!(told["entry"][1]["request"]["method"], "PUT");
    assert_eq!(event_number(told), "1");

    // A failing endpoint puts its subscription in error, and says why.
    let failing = subscribe(
        &doctor,
        &subscription("appointment", None, &format!("{hooks}/fail"), "empty"),
    )
    .await;
    let in_error = wait_status(&doctor, &failing, "error").await;
    assert_eq!(in_error["error"], "the receiver answered 500");

    // Deleted, a subscription is told nothing more; paused (off), neither.
    assert_eq!(
        pa.delete(&format!("Subscription/{pa_appointments}"))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let mut paused = doctor.get(&format!("Subscription/{doctor_booked}")).await.2;
    paused["status"] = json!("off");
    let (s, _, b) = doctor
        .put(&format!("Subscription/{doctor_booked}"), &paused)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "off");
    let third = booked_id(&pa, &offers[3]).await;
    // The results subscription is a barrier: a result written after the booking is told
    // after the booking was judged.
    let (s, _, b) = node
        .put("DiagnosticReport/r3", &report("r3", "pa", "final"))
        .await;
    assert!(s.is_success(), "{b}");
    received.wait_for("pa-results", 3).await;
    assert_eq!(
        received.at("pa-appointments").len(),
        2,
        "deleted, yet told of {third}"
    );
    assert_eq!(
        received.at("doctor").len(),
        3,
        "paused, yet told of {third}"
    );

    // Nothing the receiver was sent, nor the node's log, names more than references.
    for (_, _, body) in received.all() {
        let text = body.to_string();
        assert!(!text.contains("receiver-secret"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_are_told_what_they_may_read_on_sqlite() {
    subscribers_are_told_what_they_may_read(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_are_told_what_they_may_read_on_postgres() {
    subscribers_are_told_what_they_may_read(Db::Postgres).await;
}
