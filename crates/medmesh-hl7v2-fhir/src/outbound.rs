//! FHIR R4 to HL7 v2, for the node's own events on an outbound channel: a booked,
//! moved, changed or cancelled Appointment as SIU^S12/S13/S14/S15/S26, and a final or
//! corrected DiagnosticReport with its Observations as ORU^R01. The reverse of the inbound
//! mapping, so a message the node sends maps back to what it was made from.

use medmesh_hl7v2::encode::{FieldValue, MessageBuilder, SegmentBuilder};
use medmesh_hl7v2::{Delimiters, Message};
use serde_json::Value;

/// What every outbound message's header carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// MSH-3 and MSH-4: this node.
    pub sending_application: String,
    /// MSH-4.
    pub sending_facility: String,
    /// MSH-5 and MSH-6: the destination.
    pub receiving_application: String,
    /// MSH-6.
    pub receiving_facility: String,
    /// MSH-7, `YYYYMMDDHHMMSS+ZZZZ`.
    pub timestamp: String,
    /// MSH-10.
    pub control_id: String,
    /// Where identifier systems made from assigning authorities start (the profiles'
    /// `authority_base`), so they become assigning authorities again.
    pub authority_base: String,
}

/// The SIU trigger for an Appointment's new version, given the version before it (`None`
/// for the first): S12 when it becomes booked, S13 when a booked one moves, S14 when a
/// booked one otherwise changes, S15 when it is cancelled, S26 for a no-show. `None` when
/// nothing a scheduling system hears of happened (a proposal, a waitlist entry).
pub fn appointment_trigger(current: &Value, previous: Option<&Value>) -> Option<&'static str> {
    let status = |v: &Value| v["status"].as_str().unwrap_or_default().to_string();
    let now = status(current);
    let before = previous.map(status).unwrap_or_default();
    let was_scheduled = matches!(
        before.as_str(),
        "booked" | "arrived" | "checked-in" | "fulfilled"
    );
    match now.as_str() {
        "booked" | "arrived" | "checked-in" | "fulfilled" if !was_scheduled => Some("S12"),
        "booked" | "arrived" | "checked-in" | "fulfilled" => {
            let moved = previous
                .is_some_and(|p| p["start"] != current["start"] || p["end"] != current["end"]);
            Some(if moved { "S13" } else { "S14" })
        }
        "cancelled" if was_scheduled => Some("S15"),
        "noshow" if before != "noshow" => Some("S26"),
        _ => None,
    }
}

/// Whether a DiagnosticReport's new version is a result to send: it is final, corrected or
/// amended, and was not already sent with this status and content.
pub fn report_is_result(current: &Value, previous: Option<&Value>) -> bool {
    let reportable = matches!(
        current["status"].as_str(),
        Some("final" | "corrected" | "amended" | "appended")
    );
    reportable && previous.is_none_or(|p| strip_meta(p) != strip_meta(current))
}

fn strip_meta(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("meta");
    }
    v
}

/// `2024-03-01T10:30:00+01:00` as an HL7 timestamp, `20240301103000+0100`.
pub fn hl7_timestamp(fhir: &str) -> String {
    let (body, zone) = match fhir.find('T') {
        Some(t) => {
            let time = &fhir[t..];
            match time.rfind(['+', '-']).or_else(|| time.find('Z')) {
                Some(z) => (&fhir[..t + z], &fhir[t + z..]),
                None => (fhir, ""),
            }
        }
        None => (fhir, ""),
    };
    let mut out: String = body
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    match zone {
        "" => {}
        "Z" => out.push_str("+0000"),
        z => out.extend(z.chars().filter(|c| *c != ':')),
    }
    out
}

fn header_segment(h: &Header, code: &str, trigger: &str, structure: &str) -> SegmentBuilder {
    SegmentBuilder::new("MSH")
        .text(3, &h.sending_application)
        .text(4, &h.sending_facility)
        .text(5, &h.receiving_application)
        .text(6, &h.receiving_facility)
        .text(7, &h.timestamp)
        .components(9, [code, trigger, structure])
        .text(10, &h.control_id)
        .text(11, "P")
        .text(12, "2.5.1")
        // The destination commits each message (CA), which is what the queue waits for.
        .text(15, "AL")
        .text(16, "NE")
        .text(18, "UNICODE UTF-8")
}

/// An identifier as CX: value, and its system as an assigning authority (a namespace for
/// systems made from one, an OID, or a URI).
fn cx(identifier: &Value, authority_base: &str) -> Vec<Vec<String>> {
    let value = identifier["value"].as_str().unwrap_or_default().to_string();
    let system = identifier["system"].as_str().unwrap_or_default();
    let authority = if let Some(ns) = system.strip_prefix(&format!("{authority_base}/id/")) {
        vec![ns.to_string()]
    } else if let Some(oid) = system.strip_prefix("urn:oid:") {
        vec![String::new(), oid.to_string(), "ISO".into()]
    } else if system.is_empty() {
        vec![]
    } else {
        vec![String::new(), system.to_string(), "URI".into()]
    };
    let type_code = identifier["type"]["coding"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    vec![vec![value], vec![], vec![], authority, vec![type_code]]
}

/// The first coding of a CodeableConcept as CWE: code, text, system.
fn cwe(concept: &Value) -> Vec<String> {
    let coding = &concept["coding"][0];
    let system_name =
        crate::datatypes::code_system_name(coding["system"].as_str().unwrap_or_default());
    let text = concept["text"]
        .as_str()
        .or_else(|| coding["display"].as_str())
        .unwrap_or_default();
    vec![
        coding["code"].as_str().unwrap_or_default().to_string(),
        text.to_string(),
        system_name,
    ]
}

fn one_rep(components: Vec<String>) -> FieldValue {
    FieldValue(vec![components.into_iter().map(|c| vec![c]).collect()])
}

/// PID from a Patient: identifiers, names, birth date, sex, addresses.
fn pid(patient: &Value, authority_base: &str) -> SegmentBuilder {
    let ids: Vec<Vec<Vec<String>>> = patient["identifier"]
        .as_array()
        .map(|a| a.iter().map(|i| cx(i, authority_base)).collect())
        .unwrap_or_default();
    let names: Vec<Vec<Vec<String>>> = patient["name"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|n| {
                    let given: Vec<&str> = n["given"]
                        .as_array()
                        .map(|g| g.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let part = |v: &Value| {
                        v.as_array()
                            .and_then(|a| a.first())
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string()
                    };
                    let use_code = match n["use"].as_str() {
                        Some("official" | "usual") => "L",
                        Some("maiden") => "M",
                        Some("nickname") => "N",
                        Some("anonymous") => "S",
                        _ => "",
                    };
                    [
                        n["family"].as_str().unwrap_or_default().to_string(),
                        given.first().copied().unwrap_or_default().to_string(),
                        given.get(1..).map(|m| m.join(" ")).unwrap_or_default(),
                        part(&n["suffix"]),
                        part(&n["prefix"]),
                        String::new(),
                        use_code.to_string(),
                    ]
                    .into_iter()
                    .map(|c| vec![c])
                    .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    let addresses: Vec<Vec<Vec<String>>> = patient["address"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|addr| {
                    let line = |i: usize| addr["line"][i].as_str().unwrap_or_default().to_string();
                    let field = |k: &str| addr[k].as_str().unwrap_or_default().to_string();
                    [
                        line(0),
                        line(1),
                        field("city"),
                        field("state"),
                        field("postalCode"),
                        field("country"),
                    ]
                    .into_iter()
                    .map(|c| vec![c])
                    .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    let sex = match patient["gender"].as_str() {
        Some("male") => "M",
        Some("female") => "F",
        Some("other") => "O",
        Some("unknown") => "U",
        _ => "",
    };
    SegmentBuilder::new("PID")
        .text(1, "1")
        .set(3, FieldValue(ids))
        .set(5, FieldValue(names))
        .text(
            7,
            hl7_timestamp(patient["birthDate"].as_str().unwrap_or_default()),
        )
        .text(8, sex)
        .set(11, FieldValue(addresses))
}

/// SIU^`trigger` for an Appointment, with its patient when it has one.
pub fn siu(
    header: &Header,
    trigger: &str,
    appointment: &Value,
    patient: Option<&Value>,
) -> Message {
    let filler_id = appointment["id"].as_str().unwrap_or_default();
    let placer = appointment["identifier"][0].clone();
    let status = match appointment["status"].as_str().unwrap_or_default() {
        "booked" | "arrived" | "checked-in" => "Booked",
        "fulfilled" => "Complete",
        "cancelled" => "Cancelled",
        "noshow" => "Noshow",
        "pending" | "proposed" => "Pending",
        "waitlist" => "Waitlist",
        _ => "",
    };
    let start = hl7_timestamp(appointment["start"].as_str().unwrap_or_default());
    let end = hl7_timestamp(appointment["end"].as_str().unwrap_or_default());
    let mut sch = SegmentBuilder::new("SCH")
        .components(
            2,
            [filler_id.to_string(), header.sending_application.clone()],
        )
        .text(
            9,
            appointment["minutesDuration"]
                .as_i64()
                .map(|m| m.to_string())
                .unwrap_or_default(),
        )
        .text(
            10,
            if appointment["minutesDuration"].is_i64() {
                "MIN"
            } else {
                ""
            },
        )
        .components(11, ["", "", "", start.as_str(), end.as_str()])
        .text(25, status);
    if placer.is_object() {
        sch = sch.components(1, [placer["value"].as_str().unwrap_or_default()]);
    }
    if let Some(reason) = appointment["reasonCode"].get(0) {
        sch = sch.set(7, one_rep(cwe(reason)));
    }
    if appointment["appointmentType"].is_object() {
        sch = sch.set(8, one_rep(cwe(&appointment["appointmentType"])));
    }
    let mut b = MessageBuilder::new(Delimiters::default())
        .segment(header_segment(header, "SIU", trigger, "SIU_S12"))
        .segment(sch)
        .segment(
            SegmentBuilder::new("TQ1")
                .text(1, "1")
                .text(7, start.clone())
                .text(8, end.clone()),
        );
    if let Some(p) = patient {
        b = b.segment(pid(p, &header.authority_base));
    }
    b = b.segment(SegmentBuilder::new("RGS").text(1, "1"));
    for (i, service) in appointment["serviceType"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        b = b.segment(
            SegmentBuilder::new("AIS")
                .text(1, (i + 1).to_string())
                .set(3, one_rep(cwe(service))),
        );
    }
    let participants = appointment["participant"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut people = 0;
    let mut places = 0;
    for p in &participants {
        let reference = p["actor"]["reference"].as_str().unwrap_or_default();
        let display = p["actor"]["display"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(id) = reference.strip_prefix("Practitioner/") {
            people += 1;
            // XCN: id, then the display as the family name (FHIR keeps no split name here).
            b = b.segment(
                SegmentBuilder::new("AIP")
                    .text(1, people.to_string())
                    .components(3, [id.to_string(), display]),
            );
        } else if reference.starts_with("Location/")
            || (reference.is_empty() && !display.is_empty())
        {
            places += 1;
            b = b.segment(
                SegmentBuilder::new("AIL")
                    .text(1, places.to_string())
                    .components(3, [display]),
            );
        }
    }
    b.build()
}

/// ORU^R01 for a DiagnosticReport, its Observations (in the report's order) and its
/// patient.
pub fn oru(
    header: &Header,
    report: &Value,
    observations: &[Value],
    patient: Option<&Value>,
) -> Message {
    let result_status = match report["status"].as_str().unwrap_or_default() {
        "corrected" | "amended" => "C",
        "preliminary" | "partial" => "P",
        "cancelled" => "X",
        _ => "F",
    };
    let filler = report["identifier"][0]["value"]
        .as_str()
        .or_else(|| report["id"].as_str())
        .unwrap_or_default();
    let mut b = MessageBuilder::new(Delimiters::default())
        .segment(header_segment(header, "ORU", "R01", "ORU_R01"));
    if let Some(p) = patient {
        b = b.segment(pid(p, &header.authority_base));
    }
    let effective = report["effectiveDateTime"]
        .as_str()
        .or_else(|| report["effectivePeriod"]["start"].as_str())
        .unwrap_or_default();
    b = b.segment(
        SegmentBuilder::new("OBR")
            .text(1, "1")
            .components(3, [filler.to_string(), header.sending_application.clone()])
            .set(4, one_rep(cwe(&report["code"])))
            .text(7, hl7_timestamp(effective))
            .text(
                22,
                hl7_timestamp(report["issued"].as_str().unwrap_or_default()),
            )
            .text(25, result_status),
    );
    for (i, o) in observations.iter().enumerate() {
        let (kind, value, units) = if o["valueQuantity"].is_object() {
            let q = &o["valueQuantity"];
            let number = match &q["value"] {
                Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            let unit = q["code"]
                .as_str()
                .or_else(|| q["unit"].as_str())
                .unwrap_or_default();
            let unit_field = if q["system"].as_str() == Some("http://unitsofmeasure.org") {
                vec![
                    unit.to_string(),
                    q["unit"].as_str().unwrap_or(unit).to_string(),
                    "UCUM".into(),
                ]
            } else {
                vec![unit.to_string()]
            };
            ("NM", one_rep(vec![number]), one_rep(unit_field))
        } else if o["valueCodeableConcept"].is_object() {
            (
                "CWE",
                one_rep(cwe(&o["valueCodeableConcept"])),
                FieldValue::default(),
            )
        } else if let Some(s) = o["valueString"].as_str() {
            ("ST", FieldValue::text(s), FieldValue::default())
        } else {
            ("ST", FieldValue::default(), FieldValue::default())
        };
        let range = &o["referenceRange"][0];
        let range_text = match (
            range["low"]["value"].as_f64(),
            range["high"]["value"].as_f64(),
        ) {
            (Some(l), Some(h)) => format!("{l}-{h}"),
            (Some(l), None) => format!(">{l}"),
            (None, Some(h)) => format!("<{h}"),
            (None, None) => range["text"].as_str().unwrap_or_default().to_string(),
        };
        let flags: Vec<Vec<String>> = o["interpretation"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["coding"][0]["code"].as_str())
            .map(|c| vec![c.to_string()])
            .collect();
        let status = match o["status"].as_str().unwrap_or_default() {
            "corrected" | "amended" => "C",
            "preliminary" => "P",
            "cancelled" => "X",
            "entered-in-error" => "W",
            _ => "F",
        };
        b = b.segment(
            SegmentBuilder::new("OBX")
                .text(1, (i + 1).to_string())
                .text(2, kind)
                .set(3, one_rep(cwe(&o["code"])))
                .set(5, value)
                .set(6, units)
                .text(7, range_text)
                .set(8, FieldValue(flags.into_iter().map(|f| vec![f]).collect()))
                .text(11, status)
                .text(
                    14,
                    hl7_timestamp(o["effectiveDateTime"].as_str().unwrap_or_default()),
                ),
        );
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Profile, map};
    use serde_json::json;

    fn header() -> Header {
        Header {
            sending_application: "MEDMESH".into(),
            sending_facility: "NODE".into(),
            receiving_application: "RIS".into(),
            receiving_facility: "HOSP".into(),
            timestamp: "20260101120000+0000".into(),
            control_id: "E1".into(),
            authority_base: "urn:medmesh:hl7v2".into(),
        }
    }

    fn patient() -> Value {
        json!({"resourceType": "Patient", "id": "p1",
            "identifier": [{"system": "urn:medmesh:hl7v2/id/hosp", "value": "MRN-7",
                "type": {"coding": [{"code": "MR"}]}}],
            "name": [{"family": "Ng", "given": ["Ada", "B"]}],
            "gender": "female", "birthDate": "1970-02-03"})
    }

    #[test]
    fn timestamps_lose_their_punctuation_and_keep_their_zone() {
        assert_eq!(
            hl7_timestamp("2024-03-01T10:30:00+01:00"),
            "20240301103000+0100"
        );
        assert_eq!(hl7_timestamp("2024-03-01T10:30:00Z"), "20240301103000+0000");
        assert_eq!(
            hl7_timestamp("2024-03-01T10:30:00.25-05:00"),
            "20240301103000.25-0500"
        );
        assert_eq!(hl7_timestamp("1970-02-03"), "19700203");
        assert_eq!(hl7_timestamp(""), "");
    }

    #[test]
    fn triggers_follow_the_appointments_status() {
        let booked = json!({"status": "booked", "start": "2026-01-01T09:00:00Z"});
        let moved = json!({"status": "booked", "start": "2026-01-01T10:00:00Z"});
        let cancelled = json!({"status": "cancelled"});
        assert_eq!(appointment_trigger(&booked, None), Some("S12"));
        assert_eq!(appointment_trigger(&moved, Some(&booked)), Some("S13"));
        assert_eq!(appointment_trigger(&booked, Some(&booked)), Some("S14"));
        assert_eq!(appointment_trigger(&cancelled, Some(&booked)), Some("S15"));
        assert_eq!(
            appointment_trigger(&json!({"status": "proposed"}), None),
            None
        );
        assert_eq!(appointment_trigger(&cancelled, None), None);
    }

    #[test]
    fn only_final_results_are_sent_once() {
        let fin = json!({"status": "final", "meta": {"versionId": "1"}});
        let same = json!({"status": "final", "meta": {"versionId": "2"}});
        assert!(report_is_result(&fin, None));
        assert!(!report_is_result(&same, Some(&fin)));
        assert!(report_is_result(
            &json!({"status": "corrected"}),
            Some(&fin)
        ));
        assert!(!report_is_result(&json!({"status": "preliminary"}), None));
    }

    #[test]
    fn an_appointment_round_trips_through_siu() {
        let appointment = json!({"resourceType": "Appointment", "id": "a1", "status": "booked",
            "start": "2026-01-05T09:00:00Z", "end": "2026-01-05T09:20:00Z",
            "minutesDuration": 20,
            "appointmentType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0276", "code": "ROUTINE"}]},
            "participant": [{"actor": {"reference": "Patient/p1"}},
                {"actor": {"reference": "Practitioner/dr1", "display": "Dr Who"}},
                {"actor": {"reference": "Location/l1", "display": "Room 4"}}]});
        let m = siu(&header(), "S12", &appointment, Some(&patient()));
        let text = m.encode();
        assert!(text.contains("SIU^S12^SIU_S12"), "{text}");
        let back = Message::parse_str(&text).unwrap();
        let mapped = map(&back, &Profile::for_sender("node")).unwrap();
        let appt = mapped.bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["resource"]["resourceType"] == "Appointment")
            .unwrap()["resource"]
            .clone();
        assert_eq!(appt["status"], "booked");
        assert_eq!(appt["start"], "2026-01-05T09:00:00Z");
        assert_eq!(appt["identifier"][0]["value"], "a1");
        assert_eq!(
            mapped.patient_key.as_deref(),
            Some("urn:medmesh:hl7v2/id/hosp|MRN-7")
        );
    }

    #[test]
    fn a_report_round_trips_through_oru() {
        let report = json!({"resourceType": "DiagnosticReport", "id": "r1", "status": "corrected",
            "identifier": [{"value": "F-9"}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8", "display": "Metabolic panel"}]},
            "effectiveDateTime": "2026-01-05T08:00:00Z"});
        let glucose = json!({"resourceType": "Observation", "status": "corrected",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
            "valueQuantity": {"value": 7.8, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
            "referenceRange": [{"low": {"value": 3.9}, "high": {"value": 5.6}}],
            "interpretation": [{"coding": [{"code": "H"}]}]});
        let m = oru(&header(), &report, &[glucose], Some(&patient()));
        let back = Message::parse_str(&m.encode()).unwrap();
        let mapped = map(&back, &Profile::for_sender("node")).unwrap();
        assert!(mapped.final_result);
        let obs = mapped.bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["resource"]["resourceType"] == "Observation")
            .unwrap()["resource"]
            .clone();
        assert_eq!(obs["status"], "corrected");
        assert_eq!(obs["valueQuantity"]["value"], 7.8);
        assert_eq!(obs["valueQuantity"]["code"], "mmol/L");
        assert_eq!(obs["referenceRange"][0]["high"]["value"], 5.6);
        assert_eq!(obs["interpretation"][0]["coding"][0]["code"], "H");
    }
}
