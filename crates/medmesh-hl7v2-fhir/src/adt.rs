//! ADT: the patient (PID), the visit (PV1), next of kin (NK1), allergies (AL1), and a
//! merge (A40, MRG).

use medmesh_hl7v2::{Message, Segment};
use serde_json::{Map, Value, json};

use crate::datatypes::{
    addresses, codeable, cx, date, datetime, identifier_fhir, names, person_reference, telecoms,
};
use crate::profile::Profile;
use crate::{BundleBuilder, Identifier, Mapped, MappingError, bad_time};

/// The patient of a message: the identifier it is matched on, and the resource.
pub(crate) struct PatientOf {
    pub identifier: Identifier,
    pub resource: Value,
}

/// Reads PID into a Patient.
pub(crate) fn patient(message: &Message, profile: &Profile) -> Result<PatientOf, MappingError> {
    let pid = message
        .segment("PID")
        .ok_or_else(|| MappingError::at("PID", 1, 3, 100, "the message has no PID segment"))?;
    let mut ids: Vec<(Identifier, String)> = pid
        .field(3)
        .repetitions()
        .filter_map(|r| cx(&r, profile))
        .collect();
    // Before v2.3.1, PID-2 and PID-4 held the external and alternate ids.
    for f in [2, 4] {
        for r in pid.field(f).repetitions() {
            if let Some(id) = cx(&r, profile)
                && !ids.iter().any(|(i, _)| *i == id.0)
            {
                ids.push(id);
            }
        }
    }
    let ssn = pid.get(19, 1).trim().to_string();
    let chosen = profile
        .patient_identifier_types
        .iter()
        .find_map(|t| ids.iter().find(|(_, ty)| ty == t))
        .or_else(|| ids.first())
        .map(|(i, _)| i.clone())
        .ok_or_else(|| MappingError::at("PID", 1, 3, 101, "no patient identifier (PID-3)"))?;
    let mut identifiers: Vec<Value> = ids.iter().map(|(i, t)| identifier_fhir(i, t)).collect();
    if !ssn.is_empty() && ssn != "\"\"" {
        identifiers.push(json!({"system": "http://hl7.org/fhir/sid/us-ssn", "value": ssn,
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]}}));
    }
    let mut o = Map::new();
    o.insert("resourceType".into(), json!("Patient"));
    o.insert("identifier".into(), Value::Array(identifiers));
    o.insert("active".into(), json!(true));
    insert_nonempty(&mut o, "name", Value::Array(names(pid.field(5))));
    let mut telecom = telecoms(pid.field(13), "home");
    telecom.extend(telecoms(pid.field(14), "work"));
    insert_nonempty(&mut o, "telecom", Value::Array(telecom));
    let gender = match pid.get(8, 1).trim() {
        "M" => "male",
        "F" => "female",
        "O" | "A" | "X" => "other",
        "U" | "N" => "unknown",
        _ => "",
    };
    if !gender.is_empty() {
        o.insert("gender".into(), json!(gender));
    }
    if let Some(d) = date(&pid.get(7, 1), profile).map_err(bad_time("PID", 1, 7))? {
        o.insert("birthDate".into(), json!(d));
    }
    match pid.get(30, 1).trim() {
        "Y" => match datetime(&pid.get(29, 1), profile).map_err(bad_time("PID", 1, 29))? {
            Some(t) => o.insert("deceasedDateTime".into(), json!(t)),
            None => o.insert("deceasedBoolean".into(), json!(true)),
        },
        "N" => o.insert("deceasedBoolean".into(), json!(false)),
        _ => None,
    };
    insert_nonempty(&mut o, "address", Value::Array(addresses(pid.field(11))));
    if let Some(c) = codeable(&pid.field(16).first(), profile) {
        o.insert("maritalStatus".into(), c);
    }
    match (
        pid.get(24, 1).trim(),
        pid.get(25, 1).trim().parse::<i64>().ok(),
    ) {
        ("Y", Some(order)) => {
            o.insert("multipleBirthInteger".into(), json!(order));
        }
        ("Y", None) => {
            o.insert("multipleBirthBoolean".into(), json!(true));
        }
        ("N", _) => {
            o.insert("multipleBirthBoolean".into(), json!(false));
        }
        _ => {}
    }
    if let Some(lang) = codeable(&pid.field(15).first(), profile) {
        o.insert("communication".into(), json!([{"language": lang}]));
    }
    Ok(PatientOf {
        identifier: chosen,
        resource: Value::Object(o),
    })
}

/// The patient of a message that is not about registration (a result, an order): created
/// when no record matches PID-3, never overwritten. Returns the patient and its full URL.
pub(crate) fn referenced_patient(
    message: &Message,
    profile: &Profile,
    b: &mut BundleBuilder,
) -> Result<(PatientOf, String), MappingError> {
    let p = patient(message, profile)?;
    let url = b.create_if_none("Patient", &p.identifier, p.resource.clone());
    Ok((p, url))
}

pub(crate) fn insert_nonempty(o: &mut Map<String, Value>, key: &str, v: Value) {
    if v.as_array().is_some_and(|a| !a.is_empty())
        || v.as_object().is_some_and(|m| !m.is_empty())
        || v.is_string()
    {
        o.insert(key.into(), v);
    }
}

/// A made-up identifier for what HL7 v2 gives no identifier of its own (next of kin, an
/// allergy, a visit without a visit number): stable across messages about the same thing.
pub(crate) fn derived(
    profile: &Profile,
    kind: &str,
    patient: &Identifier,
    part: &str,
) -> Identifier {
    Identifier {
        system: format!("{}/{kind}", profile.authority_base),
        value: format!("{}|{}|{}", patient.system, patient.value, part),
    }
}

/// The visit (PV1) as an Encounter; `None` when PV1 says nothing that identifies a visit.
pub(crate) fn encounter(
    message: &Message,
    profile: &Profile,
    patient: &PatientOf,
    patient_url: &str,
    trigger: &str,
) -> Result<Option<(Identifier, Value)>, MappingError> {
    let Some(pv1) = message.segment("PV1") else {
        return Ok(None);
    };
    let admitted = datetime(&pv1.get(44, 1), profile).map_err(bad_time("PV1", 1, 44))?;
    let discharged = datetime(&pv1.get(45, 1), profile).map_err(bad_time("PV1", 1, 45))?;
    let identifier = match cx(&pv1.field(19).first(), profile) {
        Some((id, _)) => id,
        None => match &admitted {
            Some(a) => derived(profile, "visit", &patient.identifier, a),
            None => return Ok(None),
        },
    };
    let status = match trigger {
        "A05" | "A14" => "planned",
        "A03" => "finished",
        "A11" | "A27" => "cancelled",
        _ if discharged.is_some() => "finished",
        _ => "in-progress",
    };
    let (class_code, class_display) = match pv1.get(2, 1).trim() {
        "E" => ("EMER", "emergency"),
        "I" | "B" => ("IMP", "inpatient encounter"),
        "O" | "R" | "C" => ("AMB", "ambulatory"),
        "P" => ("PRENC", "pre-admission"),
        _ => ("", ""),
    };
    let class = if class_code.is_empty() {
        json!({"system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "code": "UNK", "display": "unknown"})
    } else {
        json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class_code, "display": class_display})
    };
    let mut o = Map::new();
    o.insert("resourceType".into(), json!("Encounter"));
    o.insert("identifier".into(), json!([identifier.to_fhir()]));
    o.insert("status".into(), json!(status));
    o.insert("class".into(), class);
    o.insert("subject".into(), json!({"reference": patient_url}));
    let mut period = Map::new();
    if let Some(a) = admitted {
        period.insert("start".into(), json!(a));
    }
    if let Some(d) = discharged {
        period.insert("end".into(), json!(d));
    }
    insert_nonempty(&mut o, "period", Value::Object(period));
    let mut participants = Vec::new();
    for (field, code, display) in [
        (7, "ATND", "attender"),
        (8, "REF", "referrer"),
        (9, "CON", "consultant"),
        (17, "ADM", "admitter"),
    ] {
        for r in pv1.field(field).repetitions() {
            if let Some(who) = person_reference(&r, profile) {
                participants.push(json!({
                    "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": code, "display": display}]}],
                    "individual": who,
                }));
            }
        }
    }
    insert_nonempty(&mut o, "participant", Value::Array(participants));
    let location = location_text(pv1);
    if !location.is_empty() {
        o.insert(
            "location".into(),
            json!([{"location": {"display": location}}]),
        );
    }
    Ok(Some((identifier, Value::Object(o))))
}

/// PV1-3 (point of care, room, bed, facility) in words.
fn location_text(pv1: &Segment) -> String {
    let r = pv1.field(3).first();
    [r.sub(1, 1), r.sub(2, 1), r.sub(3, 1), r.sub(4, 1)]
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn map_adt(
    message: &Message,
    profile: &Profile,
    trigger: &str,
    b: &mut BundleBuilder,
) -> Result<Mapped, MappingError> {
    let p = patient(message, profile)?;
    if trigger == "A40" {
        return merge(message, profile, p, b);
    }
    let patient_url = b.put("Patient", &p.identifier, p.resource.clone());
    let visit_events = [
        "A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A11", "A12", "A13",
    ];
    if visit_events.contains(&trigger)
        && let Some((id, enc)) = encounter(message, profile, &p, &patient_url, trigger)?
    {
        b.put("Encounter", &id, enc);
    }
    for (i, nk1) in message.segments_named("NK1").enumerate() {
        let set_id = nk1.get(1, 1).trim().to_string();
        let part = if set_id.is_empty() {
            (i + 1).to_string()
        } else {
            set_id
        };
        let id = derived(profile, "next-of-kin", &p.identifier, &part);
        let mut o = Map::new();
        o.insert("resourceType".into(), json!("RelatedPerson"));
        o.insert("identifier".into(), json!([id.to_fhir()]));
        o.insert("active".into(), json!(true));
        o.insert("patient".into(), json!({"reference": patient_url}));
        if let Some(rel) = codeable(&nk1.field(3).first(), profile) {
            o.insert("relationship".into(), json!([rel]));
        }
        insert_nonempty(&mut o, "name", Value::Array(names(nk1.field(2))));
        let mut telecom = telecoms(nk1.field(5), "home");
        telecom.extend(telecoms(nk1.field(6), "work"));
        insert_nonempty(&mut o, "telecom", Value::Array(telecom));
        insert_nonempty(&mut o, "address", Value::Array(addresses(nk1.field(4))));
        b.put("RelatedPerson", &id, Value::Object(o));
    }
    for (i, al1) in message.segments_named("AL1").enumerate() {
        let allergen = al1.field(3).first();
        let Some(code) = codeable(&allergen, profile) else {
            return Err(MappingError::at(
                "AL1",
                i + 1,
                3,
                101,
                "no allergen (AL1-3)",
            ));
        };
        let key = {
            let c = allergen.get(1);
            if c.trim().is_empty() {
                allergen.get(2).trim().to_lowercase()
            } else {
                c.trim().to_string()
            }
        };
        let id = derived(profile, "allergy", &p.identifier, &key);
        let mut o = Map::new();
        o.insert("resourceType".into(), json!("AllergyIntolerance"));
        o.insert("identifier".into(), json!([id.to_fhir()]));
        o.insert("clinicalStatus".into(), json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]}));
        o.insert("verificationStatus".into(), json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed"}]}));
        let category = match al1.get(2, 1).trim() {
            "DA" | "MA" => "medication",
            "FA" => "food",
            "EA" | "AA" | "PA" | "LA" => "environment",
            _ => "",
        };
        if !category.is_empty() {
            o.insert("category".into(), json!([category]));
        }
        if al1.get(2, 1).trim() == "DA"
            || al1.get(2, 1).trim() == "FA"
            || al1.get(2, 1).trim() == "EA"
        {
            o.insert("type".into(), json!("allergy"));
        }
        let severity = match al1.get(4, 1).trim() {
            "SV" => "severe",
            "MO" => "moderate",
            "MI" => "mild",
            _ => "",
        };
        if severity == "severe" {
            o.insert("criticality".into(), json!("high"));
        }
        o.insert("code".into(), code);
        o.insert("patient".into(), json!({"reference": patient_url}));
        if let Some(d) = date(&al1.get(6, 1), profile).map_err(bad_time("AL1", 1, 6))? {
            o.insert("onsetDateTime".into(), json!(d));
        }
        let manifestations: Vec<Value> = al1
            .field(5)
            .repetitions()
            .map(|r| r.text(1).trim().to_string())
            .filter(|t| !t.is_empty())
            .map(|t| json!({"text": t}))
            .collect();
        if !manifestations.is_empty() {
            let mut reaction = json!({"manifestation": manifestations});
            if !severity.is_empty() {
                reaction["severity"] = json!(severity);
            }
            o.insert("reaction".into(), json!([reaction]));
        }
        b.put("AllergyIntolerance", &id, Value::Object(o));
    }
    Ok(Mapped::about(&p.identifier))
}

/// A40: the surviving patient (PID) replaces the prior one (MRG-1), which is kept,
/// inactive, linked to the survivor.
fn merge(
    message: &Message,
    profile: &Profile,
    p: PatientOf,
    b: &mut BundleBuilder,
) -> Result<Mapped, MappingError> {
    let mrg = message
        .segment("MRG")
        .ok_or_else(|| MappingError::at("MRG", 1, 1, 100, "a merge (A40) needs an MRG segment"))?;
    let prior: Vec<(Identifier, String)> = mrg
        .field(1)
        .repetitions()
        .filter_map(|r| cx(&r, profile))
        .collect();
    let Some((prior_id, _)) = prior.first().cloned() else {
        return Err(MappingError::at(
            "MRG",
            1,
            1,
            101,
            "no prior patient identifier (MRG-1)",
        ));
    };
    if prior_id == p.identifier {
        return Err(MappingError::at(
            "MRG",
            1,
            1,
            102,
            "the prior identifier is the surviving patient's",
        ));
    }
    // Each points at the other through the transaction's full URLs.
    let prior_entry = b.len();
    let prior_url = b.url_ahead(0);
    let survivor_url = b.url_ahead(1);
    let mut old = p.resource.clone();
    old["identifier"] = Value::Array(prior.iter().map(|(i, t)| identifier_fhir(i, t)).collect());
    old["active"] = json!(false);
    old["link"] = json!([{"other": {"reference": survivor_url}, "type": "replaced-by"}]);
    b.put("Patient", &prior_id, old);
    let mut survivor = p.resource;
    survivor["link"] = json!([{"other": {"reference": prior_url}, "type": "replaces"}]);
    b.put("Patient", &p.identifier, survivor);
    Ok(Mapped {
        merge: Some((prior_entry, prior_entry + 1)),
        ..Mapped::about(&p.identifier)
    })
}
