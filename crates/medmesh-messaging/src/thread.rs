//! A thread's rules, with no I/O: its FHIR shape, who its parties are, what a message may
//! carry (text, or a sealed envelope only its parties' browsers open), and read receipts.
//!
//! A thread is a `Communication` header (category `thread`, status `in-progress`, `topic`
//! its subject line, `subject` the patient it is about, `sender` who opened it, `recipient`
//! the other parties). A message is a `Communication` (category `message`) `partOf` the
//! header, sent by one party to the others. A reader's receipt is an extension on the
//! message (`read-by`: who, when), so every device of theirs sees it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

/// The code system of the categories this capability writes.
pub const MESSAGE_SYSTEM: &str = "https://medmesh.dev/fhir/CodeSystem/message";
/// A thread's header.
pub const THREAD_CODE: &str = "thread";
/// A message.
pub const MESSAGE_CODE: &str = "message";
/// A reader's receipt on a message: `reader` (a reference) and `at` (an instant).
pub const EXT_READ_BY: &str = "https://medmesh.dev/fhir/StructureDefinition/read-by";
/// On a thread's header: its messages are sealed end to end.
pub const EXT_SEALED: &str = "https://medmesh.dev/fhir/StructureDefinition/sealed-thread";
/// On an Organization: whether its patients may message their care team (`on`, `off`, or
/// `shared-inbox`: to the organization's inbox rather than to the team).
pub const EXT_PATIENT_MESSAGING: &str =
    "https://medmesh.dev/fhir/StructureDefinition/patient-messaging";
/// The content type of a sealed message's envelope.
pub const SEALED_TYPE: &str = "application/vnd.medmesh.sealed-message+json";

/// The longest subject line, characters.
pub const MAX_TOPIC: usize = 200;
/// The longest message, characters.
pub const MAX_TEXT: usize = 10_000;
/// The largest sealed envelope, bytes of JSON.
pub const MAX_SEALED: usize = 256 * 1024;
/// The most parties of one thread.
pub const MAX_PARTIES: usize = 50;
/// The most documents one message carries.
pub const MAX_ATTACHMENTS: usize = 10;

/// A refusal for what a thread or message says, in words (no patient data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn refused(s: impl Into<String>) -> Refused {
    Refused(s.into())
}

/// Whether `s` is a FHIR id.
pub fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// A party reference as a thread takes it: a practitioner, a patient, a care team, or an
/// organization (a shared inbox).
///
/// # Errors
/// Anything else.
pub fn party(reference: &str) -> Result<String, Refused> {
    let ok = ["Practitioner/", "Patient/", "CareTeam/", "Organization/"]
        .iter()
        .any(|p| reference.strip_prefix(p).is_some_and(is_id));
    if ok {
        Ok(reference.to_string())
    } else {
        Err(refused(
            "a party is a Practitioner/<id>, Patient/<id>, CareTeam/<id> or Organization/<id>",
        ))
    }
}

/// Checks a subject line.
///
/// # Errors
/// Empty, or too long.
pub fn check_topic(topic: &str) -> Result<(), Refused> {
    let n = topic.trim().chars().count();
    if n == 0 {
        return Err(refused("a thread has a subject line"));
    }
    if n > MAX_TOPIC {
        return Err(refused(format!(
            "a subject line is at most {MAX_TOPIC} characters"
        )));
    }
    Ok(())
}

/// What a message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Text, sealed at rest under the patient's (or the node's) key like any record.
    Text(String),
    /// An envelope sealed in the sender's browser for each party's keys: the node stores
    /// and returns it and cannot open it. JSON: `{"sealed": base64, "keys": "keyId:wrapped,..."}`.
    Sealed(String),
}

impl Body {
    /// Checks it.
    ///
    /// # Errors
    /// Empty, too long, or a sealed envelope that is not one.
    pub fn check(&self) -> Result<(), Refused> {
        match self {
            Self::Text(t) => {
                let n = t.trim().chars().count();
                if n == 0 {
                    return Err(refused("a message has text"));
                }
                if n > MAX_TEXT {
                    return Err(refused(format!(
                        "a message is at most {MAX_TEXT} characters"
                    )));
                }
            }
            Self::Sealed(envelope) => {
                if envelope.len() > MAX_SEALED {
                    return Err(refused("a sealed message is at most 256 KiB"));
                }
                let v: Value = serde_json::from_str(envelope)
                    .map_err(|_| refused("a sealed message is a JSON envelope"))?;
                let sealed_ok = v["sealed"]
                    .as_str()
                    .is_some_and(|s| STANDARD.decode(s).is_ok_and(|b| b.len() > 16));
                let keys_ok = v["keys"].as_str().is_some_and(|k| {
                    !k.is_empty() && k.split(',').all(|w| w.split_once(':').is_some())
                });
                let only = v.as_object().is_some_and(|o| o.len() == 2);
                if !(sealed_ok && keys_ok && only) {
                    return Err(refused(
                        "a sealed message is {\"sealed\": base64, \"keys\": \"keyId:wrapped,...\"}",
                    ));
                }
            }
        }
        Ok(())
    }

    /// As a `Communication.payload`.
    pub fn to_payload(&self) -> Value {
        match self {
            Self::Text(t) => json!({"contentString": t.trim()}),
            Self::Sealed(e) => json!({"contentAttachment": {
                "contentType": SEALED_TYPE,
                "data": STANDARD.encode(e.as_bytes()),
            }}),
        }
    }

    /// Reads a message's payload back.
    pub fn of_message(message: &Value) -> Option<Self> {
        message["payload"].as_array()?.iter().find_map(|p| {
            match p.get("contentString").and_then(Value::as_str) {
                Some(t) => Some(Self::Text(t.to_string())),
                None if p["contentAttachment"]["contentType"] == SEALED_TYPE => {
                    p["contentAttachment"]["data"]
                        .as_str()
                        .and_then(|d| STANDARD.decode(d).ok())
                        .and_then(|b| String::from_utf8(b).ok())
                        .map(Self::Sealed)
                }
                None => None,
            }
        })
    }
}

/// A thread's header.
#[allow(clippy::too_many_arguments)] // one header's facts
pub fn header(
    id: &str,
    topic: &str,
    about: Option<&str>,
    sender: &str,
    recipients: &[String],
    sealed: bool,
    now: &str,
) -> Value {
    let mut h = json!({
        "resourceType": "Communication",
        "id": id,
        "status": "in-progress",
        "category": [{"coding": [{"system": MESSAGE_SYSTEM, "code": THREAD_CODE, "display": "Message thread"}]}],
        "topic": {"text": topic.trim()},
        "sender": {"reference": sender},
        "recipient": recipients.iter().map(|r| json!({"reference": r})).collect::<Vec<_>>(),
        "sent": now,
    });
    if let Some(p) = about {
        h["subject"] = json!({"reference": format!("Patient/{p}")});
    }
    if sealed {
        h["extension"] = json!([{"url": EXT_SEALED, "valueBoolean": true}]);
    }
    h
}

/// Whether a header's thread is sealed end to end.
pub fn is_sealed(header: &Value) -> bool {
    header["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["url"] == EXT_SEALED && e["valueBoolean"] == true)
}

/// Whether a Communication is a thread's header.
pub fn is_header(c: &Value) -> bool {
    c["category"].as_array().into_iter().flatten().any(|cat| {
        cat["coding"][0]["system"] == MESSAGE_SYSTEM && cat["coding"][0]["code"] == THREAD_CODE
    })
}

/// A header's parties: who opened it and its recipients.
pub fn parties(header: &Value) -> Vec<String> {
    medmesh_policy::parties_of("Communication", header)
}

/// The patient a thread is about (`Patient` id).
pub fn about(header: &Value) -> Option<String> {
    header["subject"]["reference"]
        .as_str()
        .and_then(|r| r.strip_prefix("Patient/"))
        .map(str::to_string)
}

/// A message of thread `thread` from `sender` to every other party.
#[allow(clippy::too_many_arguments)] // one message's facts
pub fn message(
    id: &str,
    thread: &Value,
    sender: &str,
    body: &Body,
    attachments: &[String],
    now: &str,
) -> Value {
    let thread_id = thread["id"].as_str().unwrap_or_default();
    let mut payload = vec![body.to_payload()];
    payload.extend(
        attachments
            .iter()
            .map(|d| json!({"contentReference": {"reference": format!("DocumentReference/{d}")}})),
    );
    let recipients: Vec<Value> = parties(thread)
        .into_iter()
        .filter(|p| p != sender)
        .map(|r| json!({"reference": r}))
        .collect();
    let mut m = json!({
        "resourceType": "Communication",
        "id": id,
        "status": "completed",
        "category": [{"coding": [{"system": MESSAGE_SYSTEM, "code": MESSAGE_CODE, "display": "Message"}]}],
        "partOf": [{"reference": format!("Communication/{thread_id}")}],
        "sender": {"reference": sender},
        "recipient": recipients,
        "sent": now,
        "payload": payload,
    });
    if let Some(s) = thread.get("subject") {
        m["subject"] = s.clone();
    }
    m
}

/// Who read a message, and when: `(reader, at)`.
pub fn read_by(message: &Value) -> Vec<(String, String)> {
    message["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["url"] == EXT_READ_BY)
        .filter_map(|e| {
            let sub = |name: &str| {
                e["extension"]
                    .as_array()?
                    .iter()
                    .find(|s| s["url"] == name)
                    .cloned()
            };
            let reader = sub("reader")?["valueReference"]["reference"]
                .as_str()?
                .to_string();
            let at = sub("at")?["valueDateTime"].as_str()?.to_string();
            Some((reader, at))
        })
        .collect()
}

/// Whether `reader` has still to read `message`: it was not sent by one of `mine` (the
/// reader's principals) and carries no receipt of theirs.
pub fn unread_for(message: &Value, reader: &str, mine: &[String]) -> bool {
    let sender = message["sender"]["reference"].as_str().unwrap_or_default();
    !mine.iter().any(|m| m == sender) && !read_by(message).iter().any(|(r, _)| r == reader)
}

/// `message` with `reader`'s receipt at `at` added.
pub fn with_receipt(mut message: Value, reader: &str, at: &str) -> Value {
    let receipt = json!({"url": EXT_READ_BY, "extension": [
        {"url": "reader", "valueReference": {"reference": reader}},
        {"url": "at", "valueDateTime": at},
    ]});
    match message.get_mut("extension").and_then(Value::as_array_mut) {
        Some(list) => list.push(receipt),
        None => message["extension"] = json!([receipt]),
    }
    message
}

/// What an organization says of its patients' messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientMessaging {
    /// To their care team.
    On,
    /// Not at all.
    Off,
    /// To the organization's shared inbox.
    SharedInbox,
}

/// The setting of `organization` (on when it says nothing).
pub fn patient_messaging(organization: &Value) -> PatientMessaging {
    let code = organization["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["url"] == EXT_PATIENT_MESSAGING)
        .and_then(|e| e["valueCode"].as_str());
    match code {
        Some("off") => PatientMessaging::Off,
        Some("shared-inbox") => PatientMessaging::SharedInbox,
        _ => PatientMessaging::On,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_and_its_messages_name_their_parties() {
        let h = header(
            "t1",
            "Blood results",
            Some("p1"),
            "Practitioner/a",
            &["Practitioner/b".into(), "Patient/p1".into()],
            false,
            "2026-12-05T10:00:00Z",
        );
        assert!(is_header(&h) && !is_sealed(&h));
        assert_eq!(
            parties(&h),
            ["Practitioner/a", "Practitioner/b", "Patient/p1"]
        );
        assert_eq!(about(&h).as_deref(), Some("p1"));
        let m = message(
            "m1",
            &h,
            "Practitioner/b",
            &Body::Text("Normal.".into()),
            &["d1".into()],
            "2026-12-05T10:01:00Z",
        );
        assert_eq!(
            m["recipient"].as_array().unwrap().len(),
            2,
            "all but the sender"
        );
        assert_eq!(m["subject"]["reference"], "Patient/p1");
        assert_eq!(Body::of_message(&m), Some(Body::Text("Normal.".into())));
        assert_eq!(
            m["payload"][1]["contentReference"]["reference"],
            "DocumentReference/d1"
        );
    }

    #[test]
    fn receipts_say_who_read_and_when() {
        let h = header(
            "t",
            "x",
            None,
            "Practitioner/a",
            &["Practitioner/b".into()],
            false,
            "t0",
        );
        let m = message(
            "m",
            &h,
            "Practitioner/a",
            &Body::Text("hi".into()),
            &[],
            "t1",
        );
        let mine_b = vec!["Practitioner/b".to_string(), "Organization/o".to_string()];
        assert!(unread_for(&m, "Practitioner/b", &mine_b));
        assert!(
            !unread_for(&m, "Practitioner/a", &["Practitioner/a".into()]),
            "one's own"
        );
        let read = with_receipt(m, "Practitioner/b", "2026-12-05T10:02:00Z");
        assert!(!unread_for(&read, "Practitioner/b", &mine_b));
        assert_eq!(
            read_by(&read),
            [(
                "Practitioner/b".to_string(),
                "2026-12-05T10:02:00Z".to_string()
            )]
        );
    }

    #[test]
    fn sealed_envelopes_are_checked_not_opened() {
        let good = json!({"sealed": STANDARD.encode([7u8; 40]), "keys": "k1:abc.def,k2:ghi.jkl"})
            .to_string();
        let b = Body::Sealed(good.clone());
        assert!(b.check().is_ok());
        let h = header(
            "t",
            "x",
            None,
            "Practitioner/a",
            &["Practitioner/b".into()],
            true,
            "t0",
        );
        assert!(is_sealed(&h));
        let m = message("m", &h, "Practitioner/a", &b, &[], "t1");
        assert_eq!(
            m["payload"][0]["contentAttachment"]["contentType"],
            SEALED_TYPE
        );
        assert_eq!(Body::of_message(&m), Some(Body::Sealed(good)));
        for bad in [
            "not json".to_string(),
            json!({"sealed": "!!", "keys": "k:w"}).to_string(),
            json!({"sealed": STANDARD.encode([7u8; 40]), "keys": ""}).to_string(),
            json!({"sealed": STANDARD.encode([7u8; 40]), "keys": "k:w", "text": "clear"})
                .to_string(),
        ] {
            assert!(Body::Sealed(bad).check().is_err());
        }
        assert!(Body::Text(" ".into()).check().is_err());
        assert!(Body::Text("x".repeat(MAX_TEXT + 1)).check().is_err());
    }

    #[test]
    fn parties_and_settings_are_read_strictly() {
        assert!(party("Practitioner/a").is_ok());
        assert!(party("Organization/o").is_ok());
        assert!(party("Device/d").is_err());
        assert!(party("Practitioner/").is_err());
        assert!(check_topic(" ").is_err());
        let org = json!({"resourceType": "Organization", "extension": [{"url": EXT_PATIENT_MESSAGING, "valueCode": "off"}]});
        assert_eq!(patient_messaging(&org), PatientMessaging::Off);
        assert_eq!(patient_messaging(&json!({})), PatientMessaging::On);
    }
}
