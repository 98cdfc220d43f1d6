//! Pharmacy and immunization: RDE^O11 → MedicationRequest, RDS^O13 → MedicationDispense
//! (with the request it fills), VXU^V04 → Immunization.

use medmesh_hl7v2::{Message, Segment};
use serde_json::{Map, Value, json};

use crate::adt::{derived, insert_nonempty, referenced_patient};
use crate::datatypes::{code_system, codeable, date, datetime, person_reference};
use crate::oru::entity;
use crate::profile::Profile;
use crate::{BundleBuilder, Identifier, Mapped, MappingError, bad_time};

/// A quantity from a number and a coded unit (CWE).
fn quantity(value: &str, unit: &medmesh_hl7v2::Repetition<'_>, profile: &Profile) -> Option<Value> {
    let n: f64 = value.trim().parse().ok().filter(|n: &f64| n.is_finite())?;
    let mut q = Map::new();
    q.insert("value".into(), json!(n));
    let code = unit.get(1).trim().to_string();
    let text = unit.get(2).trim().to_string();
    let label = if text.is_empty() { code.clone() } else { text };
    if !label.is_empty() {
        q.insert("unit".into(), json!(label));
    }
    let system = unit.get(3).trim().to_string();
    if !code.is_empty() && !system.is_empty() {
        q.insert("system".into(), json!(code_system(&system, profile)));
        q.insert("code".into(), json!(code));
    }
    Some(Value::Object(q))
}

fn request_id(orc: Option<&Segment>, profile: &Profile) -> Option<Identifier> {
    let orc = orc?;
    entity(&orc.field(2).first(), 0, "placer", profile)
        .or_else(|| entity(&orc.field(3).first(), 0, "filler", profile))
}

/// The MedicationRequest an RDE (or an RDS's RXE) carries.
fn medication_request(
    message: &Message,
    profile: &Profile,
    patient_url: &str,
) -> Result<Option<(Identifier, Value)>, MappingError> {
    let orc = message.segment("ORC");
    let (Some(rxe), Some(id)) = (message.segment("RXE"), request_id(orc, profile)) else {
        return Ok(None);
    };
    let medication = codeable(&rxe.field(2).first(), profile)
        .ok_or_else(|| MappingError::at("RXE", 1, 2, 101, "no give code (RXE-2)"))?;
    let status = match orc
        .map(|o| o.get(1, 1).trim().to_string())
        .unwrap_or_default()
        .as_str()
    {
        "CA" | "OC" | "CR" => "cancelled",
        "DC" | "OD" => "stopped",
        "HD" | "OH" => "on-hold",
        _ => "active",
    };
    let mut o = Map::new();
    o.insert("resourceType".into(), json!("MedicationRequest"));
    o.insert("identifier".into(), json!([id.to_fhir()]));
    o.insert("status".into(), json!(status));
    o.insert("intent".into(), json!("order"));
    o.insert("medicationCodeableConcept".into(), medication);
    o.insert("subject".into(), json!({"reference": patient_url}));
    if let Some(orc) = orc {
        if let Some(t) = datetime(&orc.get(9, 1), profile).map_err(bad_time("ORC", 1, 9))? {
            o.insert("authoredOn".into(), json!(t));
        }
        if let Some(who) = person_reference(&orc.field(12).first(), profile) {
            o.insert("requester".into(), who);
        }
    }
    let instructions: Vec<String> = rxe
        .field(7)
        .repetitions()
        .map(|r| {
            let text = r.get(2).trim().to_string();
            if text.is_empty() {
                r.get(1).trim().to_string()
            } else {
                text
            }
        })
        .filter(|t| !t.is_empty())
        .collect();
    let mut dosage = Map::new();
    if !instructions.is_empty() {
        dosage.insert("text".into(), json!(instructions.join("; ")));
    }
    if let Some(route) = message
        .segment("RXR")
        .and_then(|r| codeable(&r.field(1).first(), profile))
    {
        dosage.insert("route".into(), route);
    }
    if !dosage.is_empty() {
        o.insert("dosageInstruction".into(), json!([dosage]));
    }
    let mut dispense = Map::new();
    if let Some(q) = quantity(&rxe.get(10, 1), &rxe.field(11).first(), profile) {
        dispense.insert("quantity".into(), q);
    }
    if let Ok(n) = rxe.get(12, 1).trim().parse::<u32>() {
        dispense.insert("numberOfRepeatsAllowed".into(), json!(n));
    }
    insert_nonempty(&mut o, "dispenseRequest", Value::Object(dispense));
    Ok(Some((id, Value::Object(o))))
}

/// RDE^O11.
pub(crate) fn map_rde(
    message: &Message,
    profile: &Profile,
    b: &mut BundleBuilder,
) -> Result<Mapped, MappingError> {
    let (p, patient_url) = referenced_patient(message, profile, b)?;
    let Some((id, request)) = medication_request(message, profile, &patient_url)? else {
        return Err(MappingError::at(
            "RXE",
            1,
            2,
            100,
            "a pharmacy order needs ORC-2 (or ORC-3) and an RXE segment",
        ));
    };
    b.put("MedicationRequest", &id, request);
    Ok(Mapped::about(&p.identifier))
}

/// RDS^O13: each RXD a dispense, for the request the message carries (created if the node
/// has not seen it).
pub(crate) fn map_rds(
    message: &Message,
    profile: &Profile,
    b: &mut BundleBuilder,
) -> Result<Mapped, MappingError> {
    let (p, patient_url) = referenced_patient(message, profile, b)?;
    let request_url = medication_request(message, profile, &patient_url)?
        .map(|(id, request)| b.create_if_none("MedicationRequest", &id, request));
    let mut n = 0;
    for (i, rxd) in message.segments_named("RXD").enumerate() {
        n += 1;
        let medication = codeable(&rxd.field(2).first(), profile).ok_or_else(|| {
            MappingError::at("RXD", i + 1, 2, 101, "no dispense give code (RXD-2)")
        })?;
        let when = datetime(&rxd.get(3, 1), profile).map_err(bad_time("RXD", i + 1, 3))?;
        let number = rxd.get(7, 1).trim().to_string();
        let id = if number.is_empty() {
            derived(
                profile,
                "dispense",
                &p.identifier,
                &format!(
                    "{}|{}",
                    rxd.get(2, 1).trim(),
                    when.clone().unwrap_or_default()
                ),
            )
        } else {
            Identifier {
                system: format!("{}/prescription", profile.authority_base),
                value: number,
            }
        };
        let mut o = Map::new();
        o.insert("resourceType".into(), json!("MedicationDispense"));
        o.insert("identifier".into(), json!([id.to_fhir()]));
        o.insert("status".into(), json!("completed"));
        o.insert("medicationCodeableConcept".into(), medication);
        o.insert("subject".into(), json!({"reference": patient_url}));
        if let Some(r) = &request_url {
            o.insert("authorizingPrescription".into(), json!([{"reference": r}]));
        }
        if let Some(q) = quantity(&rxd.get(4, 1), &rxd.field(5).first(), profile) {
            o.insert("quantity".into(), q);
        }
        if let Some(t) = when {
            o.insert("whenHandedOver".into(), json!(t));
        }
        b.put("MedicationDispense", &id, Value::Object(o));
    }
    if n == 0 {
        return Err(MappingError::at(
            "RXD",
            1,
            1,
            100,
            "a dispense needs an RXD segment",
        ));
    }
    Ok(Mapped::about(&p.identifier))
}

/// VXU^V04: each RXA an Immunization.
pub(crate) fn map_vxu(
    message: &Message,
    profile: &Profile,
    b: &mut BundleBuilder,
) -> Result<Mapped, MappingError> {
    let (p, patient_url) = referenced_patient(message, profile, b)?;
    let segments = message.segments();
    let mut n = 0;
    for (at, rxa) in segments
        .iter()
        .enumerate()
        .filter(|(_, s)| s.name() == "RXA")
    {
        n += 1;
        let seq = n;
        // The ORC before it, and the RXR after it, belong to it.
        let orc = segments[..at]
            .iter()
            .rev()
            .take_while(|s| s.name() != "RXA")
            .find(|s| s.name() == "ORC");
        let rxr = segments[at + 1..]
            .iter()
            .take_while(|s| s.name() != "RXA" && s.name() != "ORC")
            .find(|s| s.name() == "RXR");
        let vaccine = codeable(&rxa.field(5).first(), profile)
            .ok_or_else(|| MappingError::at("RXA", seq, 5, 101, "no administered code (RXA-5)"))?;
        let when = datetime(&rxa.get(3, 1), profile)
            .map_err(bad_time("RXA", seq, 3))?
            .ok_or_else(|| {
                MappingError::at("RXA", seq, 3, 101, "no administration time (RXA-3)")
            })?;
        let id = orc
            .and_then(|o| {
                entity(&o.field(3).first(), 0, "filler", profile)
                    .or_else(|| entity(&o.field(2).first(), 0, "placer", profile))
            })
            .unwrap_or_else(|| {
                derived(
                    profile,
                    "immunization",
                    &p.identifier,
                    &format!("{}|{when}", rxa.get(5, 1).trim()),
                )
            });
        let status = match (rxa.get(21, 1).trim(), rxa.get(20, 1).trim()) {
            ("D", _) => "entered-in-error",
            (_, "RE" | "NA") => "not-done",
            _ => "completed",
        };
        let mut o = Map::new();
        o.insert("resourceType".into(), json!("Immunization"));
        o.insert("identifier".into(), json!([id.to_fhir()]));
        o.insert("status".into(), json!(status));
        o.insert("vaccineCode".into(), vaccine);
        o.insert("patient".into(), json!({"reference": patient_url}));
        o.insert("occurrenceDateTime".into(), json!(when));
        // RXA-9 `00` is a new record (the sender gave the dose); anything else is history.
        o.insert("primarySource".into(), json!(rxa.get(9, 1).trim() == "00"));
        if rxa.get(6, 1).trim() != "999"
            && let Some(q) = quantity(&rxa.get(6, 1), &rxa.field(7).first(), profile)
        {
            o.insert("doseQuantity".into(), q);
        }
        let lot = rxa.get(15, 1).trim().to_string();
        if !lot.is_empty() {
            o.insert("lotNumber".into(), json!(lot));
        }
        if let Some(d) = date(&rxa.get(16, 1), profile).map_err(bad_time("RXA", seq, 16))?
            && d.len() == 10
        {
            o.insert("expirationDate".into(), json!(d));
        }
        let maker = rxa.field(17).first();
        let maker_name = if maker.get(2).trim().is_empty() {
            maker.get(1)
        } else {
            maker.get(2)
        };
        if !maker_name.trim().is_empty() {
            o.insert("manufacturer".into(), json!({"display": maker_name.trim()}));
        }
        let performers: Vec<Value> = rxa
            .field(10)
            .repetitions()
            .filter_map(|r| person_reference(&r, profile))
            .map(|who| json!({"actor": who}))
            .collect();
        insert_nonempty(&mut o, "performer", Value::Array(performers));
        if let Some(rxr) = rxr {
            if let Some(route) = codeable(&rxr.field(1).first(), profile) {
                o.insert("route".into(), route);
            }
            if let Some(site) = codeable(&rxr.field(2).first(), profile) {
                o.insert("site".into(), site);
            }
        }
        b.put("Immunization", &id, Value::Object(o));
    }
    if n == 0 {
        return Err(MappingError::at(
            "RXA",
            1,
            1,
            100,
            "an immunization message needs an RXA segment",
        ));
    }
    Ok(Mapped::about(&p.identifier))
}
