//! Notification bundles, as the R4 backport shapes them: a `history` Bundle whose first
//! entry is the subscription's status (a Parameters resource), then the resources an event
//! is about, as far as the subscription's payload content asks.

use serde_json::{Value, json};

use crate::resource::{BACKPORT, Content};
use crate::topic::Topic;

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The channel is being checked when the subscription is written.
    Handshake,
    /// Nothing happened for a while; the channel still works.
    Heartbeat,
    /// An event.
    EventNotification,
    /// An answer to `$status`.
    QueryStatus,
}

impl Kind {
    fn code(self) -> &'static str {
        match self {
            Self::Handshake => "handshake",
            Self::Heartbeat => "heartbeat",
            Self::EventNotification => "event-notification",
            Self::QueryStatus => "query-status",
        }
    }
}

/// The resource an event is about.
#[derive(Debug, Clone)]
pub struct Focus {
    /// `Appointment`, `DiagnosticReport`.
    pub resource_type: String,
    /// Its id.
    pub id: String,
    /// Whether this version created it.
    pub created: bool,
    /// The resource, for full-resource payloads.
    pub resource: Value,
}

/// One event in a notification.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its number in the subscription.
    pub number: i64,
    /// When it happened, microseconds.
    pub timestamp: i64,
    /// What it is about.
    pub focus: Focus,
}

/// Everything a status says.
#[derive(Debug, Clone)]
pub struct Status<'a> {
    /// The node's FHIR base URL.
    pub base_url: &'a str,
    /// The subscription's id.
    pub subscription: &'a str,
    /// Its topic.
    pub topic: Topic,
    /// Its status.
    pub status: &'a str,
    /// Events numbered so far.
    pub events_since_start: i64,
    /// Why it is in error, when it is.
    pub error: Option<&'a str>,
}

/// The status resource (`backport-subscription-status-r4`).
pub fn status_parameters(
    id: &str,
    status: &Status<'_>,
    kind: Kind,
    event: Option<&Event>,
    content: Content,
) -> Value {
    let mut parameters = vec![
        json!({"name": "subscription", "valueReference": {
            "reference": format!("{}/Subscription/{}", status.base_url, status.subscription)}}),
        json!({"name": "topic", "valueCanonical": status.topic.canonical()}),
        json!({"name": "status", "valueCode": status.status}),
        json!({"name": "type", "valueCode": kind.code()}),
        json!({"name": "events-since-subscription-start",
               "valueString": status.events_since_start.to_string()}),
    ];
    if let Some(e) = event {
        let mut part = vec![
            json!({"name": "event-number", "valueString": e.number.to_string()}),
            json!({"name": "timestamp",
                   "valueInstant": medmesh_fhir::datetime::format_instant(e.timestamp)}),
        ];
        if content != Content::Empty {
            part.push(
                json!({"name": "focus", "valueReference": {"reference": format!(
                "{}/{}/{}", status.base_url, e.focus.resource_type, e.focus.id)}}),
            );
        }
        parameters.push(json!({"name": "notification-event", "part": part}));
    }
    if let Some(why) = status.error {
        parameters.push(json!({"name": "error", "valueCodeableConcept": {"text": why}}));
    }
    json!({
        "resourceType": "Parameters",
        "id": id,
        "meta": {"profile": [format!("{BACKPORT}backport-subscription-status-r4")]},
        "parameter": parameters,
    })
}

/// A notification bundle (`backport-subscription-notification-r4`). `ids` gives the
/// bundle's and the status's ids (fresh per notification).
pub fn notification(
    ids: (&str, &str),
    now: i64,
    status: &Status<'_>,
    kind: Kind,
    event: Option<&Event>,
    content: Content,
) -> Value {
    let (bundle_id, status_id) = ids;
    let mut entries = vec![json!({
        "fullUrl": format!("urn:uuid:{status_id}"),
        "resource": status_parameters(status_id, status, kind, event, content),
        "request": {"method": "GET",
                    "url": format!("{}/Subscription/{}/$status", status.base_url, status.subscription)},
        "response": {"status": "200"},
    })];
    if let Some(e) = event
        && content != Content::Empty
    {
        let f = &e.focus;
        let mut entry = json!({
            "fullUrl": format!("{}/{}/{}", status.base_url, f.resource_type, f.id),
            "request": if f.created {
                json!({"method": "POST", "url": f.resource_type})
            } else {
                json!({"method": "PUT", "url": format!("{}/{}", f.resource_type, f.id)})
            },
            "response": {"status": if f.created { "201" } else { "200" }},
        });
        if content == Content::FullResource {
            entry["resource"] = f.resource.clone();
        }
        entries.push(entry);
    }
    json!({
        "resourceType": "Bundle",
        "id": bundle_id,
        "meta": {"profile": [format!("{BACKPORT}backport-subscription-notification-r4")]},
        "type": "history",
        "timestamp": medmesh_fhir::datetime::format_instant(now),
        "entry": entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> Status<'static> {
        Status {
            base_url: "https://node.example/fhir",
            subscription: "s1",
            topic: Topic::Appointment,
            status: "active",
            events_since_start: 3,
            error: None,
        }
    }

    fn event() -> Event {
        Event {
            number: 3,
            timestamp: 1_700_000_000_000_000,
            focus: Focus {
                resource_type: "Appointment".into(),
                id: "a1".into(),
                created: false,
                resource: json!({"resourceType": "Appointment", "id": "a1"}),
            },
        }
    }

    fn param<'a>(p: &'a Value, name: &str) -> &'a Value {
        p["parameter"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .unwrap()
    }

    #[test]
    fn an_id_only_event_names_its_focus_without_the_resource() {
        let e = event();
        let b = notification(
            ("b", "st"),
            0,
            &status(),
            Kind::EventNotification,
            Some(&e),
            Content::IdOnly,
        );
        assert_eq!(b["type"], "history");
        let st = &b["entry"][0]["resource"];
        assert_eq!(param(st, "type")["valueCode"], "event-notification");
        assert_eq!(
            param(st, "events-since-subscription-start")["valueString"],
            "3"
        );
        let ev = param(st, "notification-event");
        assert_eq!(ev["part"][0]["valueString"], "3");
        assert_eq!(
            ev["part"][2]["valueReference"]["reference"],
            "https://node.example/fhir/Appointment/a1"
        );
        assert_eq!(
            b["entry"][1]["fullUrl"],
            "https://node.example/fhir/Appointment/a1"
        );
        assert_eq!(b["entry"][1]["request"]["method"], "PUT");
        assert!(b["entry"][1].get("resource").is_none());
    }

    #[test]
    fn full_resource_carries_it_and_empty_carries_nothing() {
        let e = event();
        let full = notification(
            ("b", "st"),
            0,
            &status(),
            Kind::EventNotification,
            Some(&e),
            Content::FullResource,
        );
        assert_eq!(full["entry"][1]["resource"]["id"], "a1");
        let empty = notification(
            ("b", "st"),
            0,
            &status(),
            Kind::EventNotification,
            Some(&e),
            Content::Empty,
        );
        assert_eq!(empty["entry"].as_array().unwrap().len(), 1);
        let ev = param(&empty["entry"][0]["resource"], "notification-event");
        assert_eq!(ev["part"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn a_handshake_has_no_event() {
        let b = notification(
            ("b", "st"),
            0,
            &status(),
            Kind::Handshake,
            None,
            Content::IdOnly,
        );
        assert_eq!(b["entry"].as_array().unwrap().len(), 1);
        assert_eq!(
            param(&b["entry"][0]["resource"], "type")["valueCode"],
            "handshake"
        );
    }
}
