//! Orders, appointments and documents: ORM^O01 / OML^O21 → ServiceRequest, SIU^S12–S26 →
//! Appointment, MDM (with content) → DocumentReference.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use medmesh_hl7v2::{Message, Segment};
use serde_json::{Map, Value, json};

use crate::adt::{insert_nonempty, referenced_patient};
use crate::datatypes::{codeable, datetime, person_reference};
use crate::oru::{attachment, entity};
use crate::profile::Profile;
use crate::{BundleBuilder, Identifier, Mapped, MappingError, bad_time};

/// The order numbers of an ORC (and its OBR): placer first, then filler.
fn order_identifiers(
    orc: Option<&Segment>,
    obr: Option<&Segment>,
    profile: &Profile,
) -> Vec<(Identifier, &'static str)> {
    let mut out = Vec::new();
    for (field, kind, code) in [(2, "placer", "PLAC"), (3, "filler", "FILL")] {
        let found = orc
            .and_then(|o| entity(&o.field(field).first(), 0, kind, profile))
            .or_else(|| obr.and_then(|o| entity(&o.field(field).first(), 0, kind, profile)));
        if let Some(id) = found {
            out.push((id, code));
        }
    }
    out
}

fn typed(id: &Identifier, code: &str) -> Value {
    json!({"system": id.system, "value": id.value,
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": code}]}})
}

/// ORC-1 (order control) and ORC-5 (order status) as a request's status.
fn request_status(orc: Option<&Segment>) -> &'static str {
    let Some(orc) = orc else { return "active" };
    match orc.get(5, 1).trim() {
        "CM" => return "completed",
        "CA" | "DC" => return "revoked",
        "HD" => return "on-hold",
        _ => {}
    }
    match orc.get(1, 1).trim() {
        "CA" | "OC" | "DC" | "CR" | "OD" | "DR" => "revoked",
        "HD" | "OH" => "on-hold",
        _ => "active",
    }
}

/// ORM^O01 and OML^O21: each ORC with its OBR becomes a ServiceRequest.
pub(crate) fn map_order(
    message: &Message,
    profile: &Profile,
    b: &mut BundleBuilder,
) -> Result<Mapped, MappingError> {
    let (p, patient_url) = referenced_patient(message, profile, b)?;
    // Pair each ORC with the OBR that follows it (an OBR without an ORC stands alone).
    let mut groups: Vec<(Option<&Segment>, Option<&Segment>, usize)> = Vec::new();
    let mut obr_seq = 0;
    for s in message.segments() {
        match s.name() {
            "ORC" => groups.push((Some(s), None, 0)),
            "OBR" => {
                obr_seq += 1;
                match groups.last_mut() {
                    Some(g) if g.1.is_none() => {
                        g.1 = Some(s);
                        g.2 = obr_seq;
                    }
                    _ => groups.push((None, Some(s), obr_seq)),
                }
            }
            _ => {}
        }
    }
    let mut written = 0;
    for (i, (orc, obr, seq)) in groups.iter().enumerate() {
        let Some(obr) = obr else { continue };
        let ids = order_identifiers(*orc, Some(obr), profile);
        let Some((key, _)) = ids.first().cloned() else {
            return Err(MappingError::at(
                "ORC",
                i + 1,
                2,
                101,
                "no placer or filler order number (ORC-2, ORC-3, OBR-2, OBR-3)",
            ));
        };
        let code = codeable(&obr.field(4).first(), profile).ok_or_else(|| {
            MappingError::at(
                "OBR",
                *seq,
                4,
                101,
                "no universal service identifier (OBR-4)",
            )
        })?;
        let mut o = Map::new();
        o.insert("resourceType".into(), json!("ServiceRequest"));
        o.insert(
            "identifier".into(),
            Value::Array(ids.iter().map(|(id, t)| typed(id, t)).collect()),
        );
        o.insert("status".into(), json!(request_status(*orc)));
        o.insert("intent".into(), json!("order"));
        o.insert("code".into(), code);
        o.insert("subject".into(), json!({"reference": patient_url}));
        let priority = match obr.get(27, 6).trim() {
            "S" => "stat",
            "A" => "asap",
            "R" => "routine",
            _ => "",
        };
        if !priority.is_empty() {
            o.insert("priority".into(), json!(priority));
        }
        if let Some(orc) = orc {
            if let Some(t) = datetime(&orc.get(9, 1), profile).map_err(bad_time("ORC", i + 1, 9))? {
                o.insert("authoredOn".into(), json!(t));
            }
            if let Some(who) = person_reference(&orc.field(12).first(), profile) {
                o.insert("requester".into(), who);
            }
        }
        if let Some(t) = datetime(&obr.get(7, 1), profile).map_err(bad_time("OBR", *seq, 7))? {
            o.insert("occurrenceDateTime".into(), json!(t));
        }
        b.put("ServiceRequest", &key, Value::Object(o));
        written += 1;
    }
    if written == 0 {
        return Err(MappingError::at(
            "OBR",
            1,
            4,
            100,
            "an order needs an OBR segment",
        ));
    }
    Ok(Mapped::about(&p.identifier))
}

/// SIU: the appointment (SCH), its times (TQ1, else SCH-11), its service (AIS), people
/// (AIP) and place (AIL).
pub(crate) fn map_schedule(
    message: &Message,
    profile: &Profile,
    trigger: &str,
    b: &mut BundleBuilder,
) -> Result<Mapped, MappingError> {
    let sch = message.segment("SCH").ok_or_else(|| {
        MappingError::at(
            "SCH",
            1,
            1,
            100,
            "a scheduling message needs an SCH segment",
        )
    })?;
    let id = entity(&sch.field(2).first(), 0, "appointment", profile)
        .or_else(|| entity(&sch.field(1).first(), 0, "appointment", profile))
        .ok_or_else(|| MappingError::at("SCH", 1, 2, 101, "no appointment id (SCH-2, SCH-1)"))?;
    let (p, patient_url) = referenced_patient(message, profile, b)?;
    let (start, end) = match message.segment("TQ1") {
        Some(tq1) if !tq1.get(7, 1).trim().is_empty() => (
            datetime(&tq1.get(7, 1), profile).map_err(bad_time("TQ1", 1, 7))?,
            datetime(&tq1.get(8, 1), profile).map_err(bad_time("TQ1", 1, 8))?,
        ),
        _ => {
            let timing = sch.field(11).first();
            (
                datetime(&timing.get(4), profile).map_err(bad_time("SCH", 1, 11))?,
                datetime(&timing.get(5), profile).map_err(bad_time("SCH", 1, 11))?,
            )
        }
    };
    let filler_status = sch.get(25, 1).trim().to_ascii_lowercase();
    let mut status = match trigger {
        "S15" => "cancelled",
        "S17" => "entered-in-error",
        "S26" => "noshow",
        _ => match filler_status.as_str() {
            "pending" => "pending",
            "waitlist" => "waitlist",
            "complete" => "fulfilled",
            "noshow" => "noshow",
            "cancelled" | "deleted" => "cancelled",
            _ => "booked",
        },
    };
    // Only a proposed, cancelled or waitlisted appointment may lack its times (app-3).
    let has_times =
        start.as_ref().is_some_and(|s| s.len() > 10) && end.as_ref().is_some_and(|e| e.len() > 10);
    if !has_times && !matches!(status, "cancelled" | "waitlist" | "entered-in-error") {
        status = "proposed";
    }
    let mut o = Map::new();
    o.insert("resourceType".into(), json!("Appointment"));
    o.insert("identifier".into(), json!([id.to_fhir()]));
    o.insert("status".into(), json!(status));
    if has_times {
        o.insert("start".into(), json!(start));
        o.insert("end".into(), json!(end));
    }
    if let Some(reason) = codeable(&sch.field(7).first(), profile) {
        o.insert("reasonCode".into(), json!([reason]));
    }
    if let Some(kind) = codeable(&sch.field(8).first(), profile) {
        o.insert("appointmentType".into(), kind);
    }
    let services: Vec<Value> = message
        .segments_named("AIS")
        .filter_map(|ais| codeable(&ais.field(3).first(), profile))
        .collect();
    insert_nonempty(&mut o, "serviceType", Value::Array(services));
    let mut participants = vec![json!({"actor": {"reference": patient_url}, "status": "accepted"})];
    for aip in message.segments_named("AIP") {
        if let Some(who) = person_reference(&aip.field(3).first(), profile) {
            participants.push(json!({"actor": who, "status": "accepted"}));
        }
    }
    for ail in message.segments_named("AIL") {
        let r = ail.field(3).first();
        let place = [r.get(1), r.get(2), r.get(4)]
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(", ");
        if !place.is_empty() {
            participants.push(json!({"actor": {"display": place}, "status": "accepted"}));
        }
    }
    o.insert("participant".into(), Value::Array(participants));
    b.put("Appointment", &id, Value::Object(o));
    Ok(Mapped::about(&p.identifier))
}

/// MDM with content: the document (TXA) and its text or encapsulated data (OBX).
pub(crate) fn map_document(
    message: &Message,
    profile: &Profile,
    b: &mut BundleBuilder,
) -> Result<Mapped, MappingError> {
    let txa = message.segment("TXA").ok_or_else(|| {
        MappingError::at("TXA", 1, 1, 100, "a document message needs a TXA segment")
    })?;
    let id = entity(&txa.field(12).first(), 0, "document", profile)
        .or_else(|| entity(&txa.field(16).first(), 0, "document", profile))
        .or_else(|| entity(&txa.field(14).first(), 0, "document", profile))
        .ok_or_else(|| MappingError::at("TXA", 1, 12, 101, "no unique document number (TXA-12)"))?;
    let (p, patient_url) = referenced_patient(message, profile, b)?;
    // The content: an encapsulated document, or the text of the OBX segments.
    let mut content = None;
    let mut text = Vec::new();
    for (i, obx) in message.segments_named("OBX").enumerate() {
        match obx.get(2, 1).trim() {
            "ED" if content.is_none() => match attachment(obx, i + 1) {
                Ok(a) => content = Some(a),
                // An ED without data (a reference to content sent elsewhere) is not content.
                Err(e) if e.message == "ED holds no data" => {}
                Err(e) => return Err(e),
            },
            "TX" | "FT" | "ST" => {
                text.extend(obx.field(5).repetitions().map(|r| r.text(1).into_owned()))
            }
            _ => {}
        }
    }
    let content = match content {
        Some(c) => c,
        None if !text.is_empty() => {
            json!({"contentType": "text/plain; charset=utf-8", "data": STANDARD.encode(text.join("\n"))})
        }
        None => {
            return Err(MappingError::at(
                "OBX",
                1,
                5,
                101,
                "the document has no content (OBX-5)",
            ));
        }
    };
    let doc_status = match txa.get(17, 1).trim() {
        "DI" | "IP" | "IN" | "PA" => "preliminary",
        _ => "final",
    };
    let mut o = Map::new();
    o.insert("resourceType".into(), json!("DocumentReference"));
    o.insert("identifier".into(), json!([id.to_fhir()]));
    o.insert(
        "status".into(),
        json!(if txa.get(19, 1).trim() == "OB" {
            "superseded"
        } else {
            "current"
        }),
    );
    o.insert("docStatus".into(), json!(doc_status));
    let kind = txa.field(2).first();
    if !kind.get(1).trim().is_empty() {
        let mut c = codeable(&kind, profile).unwrap_or_else(|| json!({}));
        if kind.get(3).trim().is_empty() {
            c["coding"][0]["system"] = json!("http://terminology.hl7.org/CodeSystem/v2-0270");
        }
        o.insert("type".into(), c);
    }
    o.insert("subject".into(), json!({"reference": patient_url}));
    if let Some(t) = datetime(&txa.get(4, 1), profile).map_err(bad_time("TXA", 1, 4))?
        && t.len() > 10
    {
        o.insert("date".into(), json!(t));
    }
    let authors: Vec<Value> = txa
        .field(9)
        .repetitions()
        .filter_map(|r| person_reference(&r, profile))
        .collect();
    insert_nonempty(&mut o, "author", Value::Array(authors));
    let (described, whole) = crate::set_aside(content);
    o.insert("content".into(), json!([{ "attachment": described }]));
    let entry = b.len();
    b.put("DocumentReference", &id, Value::Object(o));
    Ok(Mapped {
        documents: vec![(entry, whole)],
        ..Mapped::about(&p.identifier)
    })
}
