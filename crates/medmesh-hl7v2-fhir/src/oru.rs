//! ORU^R01: results. Each order (OBR) becomes a DiagnosticReport, each OBX an Observation
//! (or, for an encapsulated document, OBX-2 `ED`, a DocumentReference), each SPM a Specimen.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use medmesh_hl7v2::{Message, Repetition, Segment};
use serde_json::{Map, Value, json};

use crate::adt::{derived, encounter, insert_nonempty, referenced_patient};
use crate::datatypes::{code_system, codeable, datetime, person_reference};
use crate::profile::{Profile, slug};
use crate::{BundleBuilder, Identifier, Mapped, MappingError};

/// One order and what belongs to it, gathered in message order.
struct Order<'a> {
    obr: &'a Segment,
    sequence: usize,
    notes: Vec<String>,
    observations: Vec<(&'a Segment, usize, Vec<String>)>,
    specimens: Vec<&'a Segment>,
}

fn group(message: &Message) -> Vec<Order<'_>> {
    let mut orders: Vec<Order<'_>> = Vec::new();
    let mut obx_seq = 0;
    let mut after_obx = false;
    for s in message.segments() {
        match s.name() {
            "OBR" => {
                let sequence = orders.len() + 1;
                orders.push(Order {
                    obr: s,
                    sequence,
                    notes: Vec::new(),
                    observations: Vec::new(),
                    specimens: Vec::new(),
                });
                after_obx = false;
            }
            "OBX" => {
                obx_seq += 1;
                if let Some(o) = orders.last_mut() {
                    o.observations.push((s, obx_seq, Vec::new()));
                    after_obx = true;
                }
            }
            "NTE" => {
                let text: Vec<String> = s
                    .field(3)
                    .repetitions()
                    .map(|r| r.text(1).into_owned())
                    .collect();
                let text = text.join("\n");
                if text.trim().is_empty() {
                    continue;
                }
                if let Some(o) = orders.last_mut() {
                    match (after_obx, o.observations.last_mut()) {
                        (true, Some(obs)) => obs.2.push(text),
                        _ => o.notes.push(text),
                    }
                }
            }
            "SPM" => {
                if let Some(o) = orders.last_mut() {
                    o.specimens.push(s);
                }
                after_obx = false;
            }
            _ => {}
        }
    }
    orders
}

/// An entity identifier (EI: id, namespace, universal id, its type) as an Identifier.
pub(crate) fn entity(
    r: &Repetition<'_>,
    c: usize,
    kind: &str,
    profile: &Profile,
) -> Option<Identifier> {
    let (id, ns, uid, utype) = if c == 0 {
        (r.get(1), r.get(2), r.get(3), r.get(4))
    } else {
        (r.sub(c, 1), r.sub(c, 2), r.sub(c, 3), r.sub(c, 4))
    };
    let id = id.trim().to_string();
    if id.is_empty() || id == "\"\"" {
        return None;
    }
    let system = if utype.eq_ignore_ascii_case("ISO")
        && !uid.is_empty()
        && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        format!("urn:oid:{uid}")
    } else {
        let authority = if ns.trim().is_empty() {
            uid.trim().to_string()
        } else {
            ns.trim().to_string()
        };
        if authority.is_empty() {
            // No authority: the number is the sender's own.
            format!("{}/{kind}/unspecified", profile.system_base)
        } else {
            format!("{}/{kind}/{}", profile.authority_base, slug(&authority))
        }
    };
    Some(Identifier { system, value: id })
}

fn observation_status(code: &str) -> Option<&'static str> {
    Some(match code {
        "F" | "U" => "final",
        "C" => "corrected",
        "A" | "B" => "amended",
        "P" | "R" | "S" => "preliminary",
        "I" | "O" => "registered",
        "D" | "W" => "entered-in-error",
        "X" | "N" => "cancelled",
        _ => return None,
    })
}

fn report_status(code: &str) -> Option<&'static str> {
    Some(match code {
        "O" | "I" => "registered",
        "S" | "A" | "R" => "partial",
        "P" => "preliminary",
        "C" => "corrected",
        "F" => "final",
        "X" => "cancelled",
        "M" => "amended",
        _ => return None,
    })
}

/// A decimal as JSON, or `None` when it is not one.
fn decimal(s: &str) -> Option<Value> {
    let s = s.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return None;
    }
    let f: f64 = s.parse().ok()?;
    f.is_finite().then(|| json!(f))
}

fn comparator_split(s: &str) -> (Option<&'static str>, &str) {
    let s = s.trim();
    for (p, c) in [("<=", "<="), (">=", ">="), ("<", "<"), (">", ">")] {
        if let Some(rest) = s.strip_prefix(p) {
            return (Some(c), rest.trim());
        }
    }
    (None, s)
}

/// OBX-6 as the unit, code and system a Quantity carries.
fn unit_of(obx: &Segment, profile: &Profile) -> Map<String, Value> {
    let r = obx.field(6).first();
    let code = r.get(1).trim().to_string();
    let text = r.get(2).trim().to_string();
    let system_name = r.get(3).trim().to_string();
    let mut o = Map::new();
    let unit = if text.is_empty() { code.clone() } else { text };
    if !unit.is_empty() {
        o.insert("unit".into(), json!(unit));
    }
    if !code.is_empty() {
        let system = if system_name.is_empty() {
            profile
                .units_are_ucum
                .then(|| "http://unitsofmeasure.org".to_string())
        } else {
            Some(code_system(&system_name, profile))
        };
        if let Some(s) = system {
            o.insert("system".into(), json!(s));
            o.insert("code".into(), json!(code));
        }
    }
    o
}

fn quantity(value: Value, comparator: Option<&str>, unit: &Map<String, Value>) -> Value {
    let mut q = Map::new();
    q.insert("value".into(), value);
    if let Some(c) = comparator {
        q.insert("comparator".into(), json!(c));
    }
    q.extend(unit.clone());
    Value::Object(q)
}

/// OBX-7 as a reference range: `low-high`, `<high`, `>low`, or words.
fn reference_range(raw: &str, unit: &Map<String, Value>) -> Option<Value> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let simple = |v: Value| {
        let mut q = Map::new();
        q.insert("value".into(), v);
        q.extend(unit.clone());
        Value::Object(q)
    };
    let (cmp, rest) = comparator_split(raw);
    match cmp {
        Some("<") | Some("<=") => {
            if let Some(v) = decimal(rest) {
                return Some(json!({"high": simple(v)}));
            }
        }
        Some(_) => {
            if let Some(v) = decimal(rest) {
                return Some(json!({"low": simple(v)}));
            }
        }
        None => {
            // The separating hyphen is not a leading minus sign.
            if let Some(at) = raw.get(1..).and_then(|r| r.find('-')).map(|i| i + 1)
                && let (Some(lo), Some(hi)) = (decimal(&raw[..at]), decimal(&raw[at + 1..]))
            {
                return Some(json!({"low": simple(lo), "high": simple(hi)}));
            }
        }
    }
    Some(json!({"text": raw}))
}

fn bad_value(seq: usize, why: &str) -> MappingError {
    MappingError::at("OBX", seq, 5, 102, why)
}

/// OBX-5 by OBX-2's type, as the Observation's `value[x]`; `None` when empty.
fn value_of(
    obx: &Segment,
    seq: usize,
    profile: &Profile,
) -> Result<Option<(String, Value)>, MappingError> {
    let kind = obx.get(2, 1).trim().to_ascii_uppercase();
    let field = obx.field(5);
    if field.is_empty() || field.is_null() {
        return Ok(None);
    }
    let first = field.first();
    let unit = unit_of(obx, profile);
    let v = match kind.as_str() {
        "NM" => {
            let raw = first.get(1);
            let (cmp, num) = comparator_split(&raw);
            let Some(n) = decimal(num) else {
                return Err(bad_value(seq, "OBX-2 says NM but OBX-5 is not a number"));
            };
            ("valueQuantity", quantity(n, cmp, &unit))
        }
        "SN" => {
            let cmp = match first.get(1).trim() {
                "" | "=" => None,
                "<" => Some("<"),
                "<=" => Some("<="),
                ">" => Some(">"),
                ">=" => Some(">="),
                "<>" => None,
                _ => {
                    return Err(bad_value(
                        seq,
                        "SN's comparator must be one of > < >= <= = <>",
                    ));
                }
            };
            let n1 = decimal(&first.get(2));
            let sep = first.get(3).trim().to_string();
            let n2 = decimal(&first.get(4));
            match (n1, sep.as_str(), n2) {
                (Some(a), ":" | "/", Some(b)) => (
                    "valueRatio",
                    json!({"numerator": {"value": a}, "denominator": {"value": b}}),
                ),
                (Some(a), "-", Some(b)) => (
                    "valueRange",
                    json!({"low": quantity(a, None, &unit), "high": quantity(b, None, &unit)}),
                ),
                (Some(a), "" | "+", None) => ("valueQuantity", quantity(a, cmp, &unit)),
                _ => return Err(bad_value(seq, "not a structured numeric (SN) value")),
            }
        }
        "CE" | "CWE" | "CNE" | "CF" | "IS" | "ID" => match codeable(&first, profile) {
            Some(c) => ("valueCodeableConcept", c),
            None => return Ok(None),
        },
        "DT" | "DTM" | "TS" => {
            match datetime(&first.get(1), profile).map_err(|w| bad_value(seq, w))? {
                Some(t) => ("valueDateTime", json!(t)),
                None => return Ok(None),
            }
        }
        "TM" => {
            let t = first.get(1);
            let d: String = t.chars().take_while(char::is_ascii_digit).collect();
            if ![4, 6].contains(&d.len()) {
                return Err(bad_value(seq, "not a time (HHMM[SS])"));
            }
            let secs = if d.len() == 6 { &d[4..6] } else { "00" };
            (
                "valueTime",
                json!(format!("{}:{}:{secs}", &d[..2], &d[2..4])),
            )
        }
        _ => {
            // ST, TX, FT and anything else: the text, repetitions on lines of their own.
            let text: Vec<String> = field
                .repetitions()
                .map(|r| r.text(1).into_owned())
                .collect();
            let text = text.join("\n");
            if text.trim().is_empty() {
                return Ok(None);
            }
            ("valueString", json!(text))
        }
    };
    Ok(Some((v.0.to_string(), v.1)))
}

/// An encapsulated document (ED: source, type, subtype, encoding, data) as an attachment.
pub(crate) fn attachment(obx: &Segment, seq: usize) -> Result<Value, MappingError> {
    let r = obx.field(5).first();
    let subtype = r.get(3).trim().to_ascii_uppercase();
    let encoding = r.get(4).trim().to_ascii_uppercase();
    let data = r.get(5);
    let bytes = match encoding.as_str() {
        "BASE64" | "B64" => {
            let compact: String = data.chars().filter(|c| !c.is_whitespace()).collect();
            STANDARD
                .decode(compact.as_bytes())
                .map_err(|_| bad_value(seq, "ED data is not valid Base64"))?
        }
        "A" | "" => data.as_bytes().to_vec(),
        "HEX" => {
            let compact: String = data.chars().filter(|c| !c.is_whitespace()).collect();
            (0..compact.len())
                .step_by(2)
                .map(|i| {
                    compact
                        .get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| bad_value(seq, "ED data is not valid hexadecimal"))?
        }
        _ => return Err(bad_value(seq, "ED encoding must be Base64, Hex or A")),
    };
    if bytes.is_empty() {
        return Err(bad_value(seq, "ED holds no data"));
    }
    let content_type = match subtype.as_str() {
        "PDF" => "application/pdf",
        "JPEG" | "JPG" => "image/jpeg",
        "PNG" => "image/png",
        "TIFF" => "image/tiff",
        "RTF" => "application/rtf",
        "HTML" => "text/html",
        "XML" => "application/xml",
        "TEXT" | "PLAIN" => "text/plain",
        _ if bytes.starts_with(b"%PDF") => "application/pdf",
        _ => "application/octet-stream",
    };
    Ok(json!({"contentType": content_type, "data": STANDARD.encode(&bytes)}))
}

pub(crate) fn map_oru(
    message: &Message,
    profile: &Profile,
    b: &mut BundleBuilder,
) -> Result<Mapped, MappingError> {
    let (p, patient_url) = referenced_patient(message, profile, b)?;
    let encounter_url = encounter(message, profile, &p, &patient_url, "R01")?
        .map(|(id, enc)| b.create_if_none("Encounter", &id, enc));
    let orders = group(message);
    if orders.is_empty() {
        return Err(MappingError::at(
            "OBR",
            1,
            1,
            100,
            "a result needs an OBR segment",
        ));
    }
    let orc = message.segment("ORC");
    let mut final_result = false;
    let mut documents = Vec::new();
    for order in &orders {
        let obr = order.obr;
        let report_id = entity(&obr.field(3).first(), 0, "filler", profile)
            .or_else(|| orc.and_then(|o| entity(&o.field(3).first(), 0, "filler", profile)))
            .or_else(|| entity(&obr.field(2).first(), 0, "placer", profile))
            .or_else(|| orc.and_then(|o| entity(&o.field(2).first(), 0, "placer", profile)))
            .ok_or_else(|| {
                MappingError::at(
                    "OBR",
                    order.sequence,
                    3,
                    101,
                    "no filler or placer order number (OBR-3, OBR-2)",
                )
            })?;
        let code = codeable(&obr.field(4).first(), profile).ok_or_else(|| {
            MappingError::at(
                "OBR",
                order.sequence,
                4,
                101,
                "no universal service identifier (OBR-4)",
            )
        })?;
        let effective = datetime(&obr.get(7, 1), profile)
            .map_err(|w| MappingError::at("OBR", order.sequence, 7, 102, w))?;
        let issued = datetime(&obr.get(22, 1), profile)
            .map_err(|w| MappingError::at("OBR", order.sequence, 22, 102, w))?;

        // Specimens.
        let mut specimen_urls = Vec::new();
        for (i, spm) in order.specimens.iter().enumerate() {
            let r = spm.field(2).first();
            let sid = entity(&r, 2, "specimen", profile)
                .or_else(|| entity(&r, 1, "specimen", profile))
                .unwrap_or_else(|| derived(profile, "specimen", &report_id, &(i + 1).to_string()));
            let mut o = Map::new();
            o.insert("resourceType".into(), json!("Specimen"));
            o.insert("identifier".into(), json!([sid.to_fhir()]));
            o.insert("subject".into(), json!({"reference": patient_url}));
            if let Some(t) = codeable(&spm.field(4).first(), profile) {
                o.insert("type".into(), t);
            }
            if let Some(t) = datetime(&spm.field(17).first().sub(1, 1), profile)
                .map_err(|w| MappingError::at("SPM", i + 1, 17, 102, w))?
            {
                o.insert("collection".into(), json!({"collectedDateTime": t}));
            }
            if let Some(t) = datetime(&spm.get(18, 1), profile)
                .map_err(|w| MappingError::at("SPM", i + 1, 18, 102, w))?
                && t.len() > 10
            {
                o.insert("receivedTime".into(), json!(t));
            }
            specimen_urls.push(b.put("Specimen", &sid, Value::Object(o)));
        }

        // Observations.
        let mut result_urls = Vec::new();
        let mut seen = HashSet::new();
        let mut statuses = Vec::new();
        for (obx, seq, notes) in &order.observations {
            let code_rep = obx.field(3).first();
            let obs_code = codeable(&code_rep, profile).ok_or_else(|| {
                MappingError::at("OBX", *seq, 3, 101, "no observation identifier (OBX-3)")
            })?;
            let status_code = obx.get(11, 1).trim().to_string();
            let status = observation_status(&status_code)
                .or_else(|| {
                    report_status(obr.get(25, 1).trim())
                        .map(|s| if s == "partial" { "preliminary" } else { s })
                })
                .unwrap_or("final");
            statuses.push(status);
            let mut key = format!("{}|{}", code_rep.get(1).trim(), obx.get(4, 1).trim());
            if key.starts_with('|') {
                key = format!("{}{key}", code_rep.get(2).trim());
            }
            if !seen.insert(key.clone()) {
                key = format!("{key}|{}", obx.get(1, 1).trim());
                seen.insert(key.clone());
            }
            let oid = derived(profile, "observation", &report_id, &key);
            let effective_obs = datetime(&obx.get(14, 1), profile)
                .map_err(|w| MappingError::at("OBX", *seq, 14, 102, w))?
                .or_else(|| effective.clone());
            let mut performers: Vec<Value> = obx
                .field(16)
                .repetitions()
                .filter_map(|r| person_reference(&r, profile))
                .collect();
            let org = obx.get(23, 1).trim().to_string();
            if !org.is_empty() {
                performers.push(json!({"display": org}));
            }
            if obx.get(2, 1).trim().eq_ignore_ascii_case("ED") {
                let mut o = Map::new();
                o.insert("resourceType".into(), json!("DocumentReference"));
                o.insert("identifier".into(), json!([oid.to_fhir()]));
                o.insert(
                    "status".into(),
                    json!(if status == "entered-in-error" {
                        "entered-in-error"
                    } else {
                        "current"
                    }),
                );
                o.insert(
                    "docStatus".into(),
                    json!(match status {
                        "preliminary" => "preliminary",
                        "corrected" | "amended" => "amended",
                        _ => "final",
                    }),
                );
                o.insert("type".into(), obs_code);
                o.insert("subject".into(), json!({"reference": patient_url}));
                if let Some(t) = &effective_obs
                    && t.len() > 10
                {
                    o.insert("date".into(), json!(t));
                }
                let (described, whole) = crate::set_aside(attachment(obx, *seq)?);
                o.insert("content".into(), json!([{ "attachment": described }]));
                if let Some(e) = &encounter_url {
                    o.insert("context".into(), json!({"encounter": [{"reference": e}]}));
                }
                documents.push((b.len(), whole));
                b.put("DocumentReference", &oid, Value::Object(o));
                continue;
            }
            let mut o = Map::new();
            o.insert("resourceType".into(), json!("Observation"));
            o.insert("identifier".into(), json!([oid.to_fhir()]));
            o.insert("status".into(), json!(status));
            o.insert("category".into(), json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]));
            o.insert("code".into(), obs_code);
            o.insert("subject".into(), json!({"reference": patient_url}));
            if let Some(e) = &encounter_url {
                o.insert("encounter".into(), json!({"reference": e}));
            }
            if let Some(t) = effective_obs {
                o.insert("effectiveDateTime".into(), json!(t));
            }
            insert_nonempty(&mut o, "performer", Value::Array(performers));
            if let Some((k, v)) = value_of(obx, *seq, profile)? {
                o.insert(k, v);
            }
            let interpretation: Vec<Value> = obx
                .field(8)
                .repetitions()
                .filter(|r| !r.get(1).trim().is_empty())
                .map(|r| {
                    let mut c = json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": r.get(1).trim()});
                    let text = r.get(2).trim().to_string();
                    if !text.is_empty() {
                        c["display"] = json!(text);
                    }
                    json!({"coding": [c]})
                })
                .collect();
            insert_nonempty(&mut o, "interpretation", Value::Array(interpretation));
            if let Some(range) = reference_range(&obx.get(7, 1), &unit_of(obx, profile)) {
                o.insert("referenceRange".into(), json!([range]));
            }
            if !notes.is_empty() {
                o.insert(
                    "note".into(),
                    Value::Array(notes.iter().map(|n| json!({"text": n})).collect()),
                );
            }
            if let Some(s) = specimen_urls.first() {
                o.insert("specimen".into(), json!({"reference": s}));
            }
            result_urls.push(b.put("Observation", &oid, Value::Object(o)));
        }

        let status = report_status(obr.get(25, 1).trim()).unwrap_or_else(|| {
            // Without OBR-25, the report is as far along as its least advanced result.
            let done = |s: &&str| matches!(*s, "final" | "corrected" | "amended");
            if statuses.is_empty() || !statuses.iter().all(done) {
                "partial"
            } else if statuses.contains(&"corrected") {
                "corrected"
            } else if statuses.contains(&"amended") {
                "amended"
            } else {
                "final"
            }
        });
        if matches!(status, "final" | "corrected" | "amended") {
            final_result = true;
        }
        let mut o = Map::new();
        o.insert("resourceType".into(), json!("DiagnosticReport"));
        o.insert("identifier".into(), json!([report_id.to_fhir()]));
        o.insert("status".into(), json!(status));
        o.insert("code".into(), code);
        o.insert("subject".into(), json!({"reference": patient_url}));
        if let Some(e) = &encounter_url {
            o.insert("encounter".into(), json!({"reference": e}));
        }
        if let Some(t) = effective {
            o.insert("effectiveDateTime".into(), json!(t));
        }
        if let Some(t) = issued.filter(|t| t.len() > 10) {
            o.insert("issued".into(), json!(t));
        }
        // OBR-32, the principal result interpreter: a CNN in sub-components.
        let interp = obr.field(32).first();
        let name = [interp.sub(1, 3), interp.sub(1, 2)]
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        if !name.is_empty() {
            o.insert("resultsInterpreter".into(), json!([{"display": name}]));
        }
        insert_nonempty(
            &mut o,
            "result",
            Value::Array(
                result_urls
                    .iter()
                    .map(|u| json!({"reference": u}))
                    .collect(),
            ),
        );
        insert_nonempty(
            &mut o,
            "specimen",
            Value::Array(
                specimen_urls
                    .iter()
                    .map(|u| json!({"reference": u}))
                    .collect(),
            ),
        );
        if !order.notes.is_empty() {
            o.insert("conclusion".into(), json!(order.notes.join("\n")));
        }
        b.put("DiagnosticReport", &report_id, Value::Object(o));
    }
    Ok(Mapped {
        bundle: Value::Null,
        patient_key: Some(p.identifier.key()),
        final_result,
        merge: None,
        documents,
    })
}
