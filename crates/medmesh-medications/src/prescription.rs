//! A prescription as its prescriber signs it, and its instructions in plain words.
//!
//! [`claims_of`] reads a MedicationRequest into the [`PrescriptionClaims`] the prescriber's
//! Ed25519 key signs: the same function runs on the node (before it activates a
//! prescription) and in `medmesh verify-prescription` (offline), so a prescription whose
//! stored content no longer matches its signature is found either way.

use medmesh_crypto::PrescriptionClaims;
use serde_json::Value;

use crate::safety::RXNORM;

/// Marks a prescription whose medication is free text (no coding): the checks that need a
/// code match it by name only, and the prescriber and pharmacist see it said.
pub const EXT_FREE_TEXT: &str = "https://medmesh.dev/fhir/StructureDefinition/medication-free-text";

/// Why a MedicationRequest cannot be signed as a prescription.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    /// A part every prescription needs is missing; the element is named.
    #[error("a prescription needs {0}")]
    Missing(&'static str),
}

/// One line of text: line breaks and runs of spaces become one space; empty becomes `none`.
fn line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.is_empty() {
        "none".into()
    } else {
        joined
    }
}

fn number(v: &Value) -> Option<String> {
    if let Some(i) = v.as_i64() {
        return Some(i.to_string());
    }
    let f = v.as_f64()?;
    Some(if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{f:.0}")
    } else {
        format!("{f}")
    })
}

/// `10 mg`, `1 tablet`: a Quantity's value and unit (or code).
pub fn quantity_words(q: &Value) -> Option<String> {
    let value = number(&q["value"])?;
    let unit = q["unit"].as_str().or_else(|| q["code"].as_str());
    Some(match unit {
        Some(u) if !u.is_empty() => format!("{value} {u}"),
        _ => value,
    })
}

fn concept_words(c: &Value) -> Option<String> {
    c["text"]
        .as_str()
        .or_else(|| {
            c["coding"]
                .as_array()?
                .iter()
                .find_map(|c| c["display"].as_str())
        })
        .map(str::to_string)
}

/// The medication's concept: `medicationCodeableConcept`, or the contained Medication's code.
fn medication_concept(request: &Value) -> Option<&Value> {
    if request["medicationCodeableConcept"].is_object() {
        return Some(&request["medicationCodeableConcept"]);
    }
    let id = request["medicationReference"]["reference"]
        .as_str()?
        .strip_prefix('#')?;
    request["contained"]
        .as_array()?
        .iter()
        .find(|c| c["id"].as_str() == Some(id))
        .map(|m| &m["code"])
}

/// The medication in words ("lisinopril 10 MG Oral Tablet").
pub fn medication_words(request: &Value) -> Option<String> {
    medication_concept(request)
        .and_then(concept_words)
        .or_else(|| {
            request["medicationReference"]["display"]
                .as_str()
                .map(str::to_string)
        })
}

/// The medication's code, `system|code` (RxNorm first), or `None` for free text.
pub fn medication_code(request: &Value) -> Option<String> {
    let codings = medication_concept(request)?["coding"].as_array()?;
    let coded = |c: &&Value| c["system"].as_str().is_some() && c["code"].as_str().is_some();
    let pick = codings
        .iter()
        .filter(coded)
        .find(|c| c["system"] == RXNORM)
        .or_else(|| codings.iter().find(coded))?;
    Some(format!(
        "{}|{}",
        pick["system"].as_str().unwrap_or_default(),
        pick["code"].as_str().unwrap_or_default()
    ))
}

fn times_a(n: i64) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

fn unit_words(unit: &str, n: f64) -> String {
    let one = n == 1.0;
    let name = match unit {
        "s" => "second",
        "min" => "minute",
        "h" => "hour",
        "d" => "day",
        "wk" => "week",
        "mo" => "month",
        "a" => "year",
        other => other,
    };
    if one {
        name.to_string()
    } else {
        format!("{name}s")
    }
}

fn when_words(code: &str) -> &str {
    match code {
        "MORN" => "in the morning",
        "MORN.early" => "early in the morning",
        "MORN.late" => "late in the morning",
        "NOON" => "at noon",
        "AFT" => "in the afternoon",
        "AFT.early" => "early in the afternoon",
        "AFT.late" => "late in the afternoon",
        "EVE" => "in the evening",
        "EVE.early" => "early in the evening",
        "EVE.late" => "late in the evening",
        "NIGHT" => "at night",
        "PHS" => "after sleep",
        "HS" => "at bedtime",
        "WAKE" => "on waking",
        "C" => "with a meal",
        "CM" => "with breakfast",
        "CD" => "with lunch",
        "CV" => "with dinner",
        "AC" => "before a meal",
        "ACM" => "before breakfast",
        "ACD" => "before lunch",
        "ACV" => "before dinner",
        "PC" => "after a meal",
        "PCM" => "after breakfast",
        "PCD" => "after lunch",
        "PCV" => "after dinner",
        other => other,
    }
}

fn day_words(code: &str) -> &str {
    match code {
        "mon" => "Monday",
        "tue" => "Tuesday",
        "wed" => "Wednesday",
        "thu" => "Thursday",
        "fri" => "Friday",
        "sat" => "Saturday",
        "sun" => "Sunday",
        other => other,
    }
}

fn list_words(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// How often, from `Timing.repeat` (and `Timing.code` when there is no repeat).
fn timing_words(timing: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let r = &timing["repeat"];
    let frequency = r["frequency"].as_i64().unwrap_or(1);
    let period = r["period"].as_f64();
    let unit = r["periodUnit"].as_str();
    match (period, unit) {
        (Some(1.0), Some(u)) => {
            out.push(format!("{} a {}", times_a(frequency), unit_words(u, 1.0)));
        }
        (Some(p), Some(u)) => {
            let every = format!(
                "every {} {}",
                number(&r["period"]).unwrap_or_default(),
                unit_words(u, p)
            );
            out.push(if frequency == 1 {
                every
            } else {
                format!("{} {every}", times_a(frequency))
            });
        }
        _ => {
            if let Some(words) = concept_words(&timing["code"]) {
                out.push(words);
            }
        }
    }
    let days: Vec<String> = r["dayOfWeek"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|d| day_words(d).to_string())
        .collect();
    if !days.is_empty() {
        out.push(format!("on {}", list_words(&days)));
    }
    let times: Vec<String> = r["timeOfDay"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|t| t.get(..5).unwrap_or(t).to_string())
        .collect();
    if !times.is_empty() {
        out.push(format!("at {}", list_words(&times)));
    }
    let whens: Vec<String> = r["when"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|w| when_words(w).to_string())
        .collect();
    if !whens.is_empty() {
        let mut words = list_words(&whens);
        if let Some(offset) = r["offset"].as_i64().filter(|o| *o > 0) {
            words = format!("{offset} minutes {words}");
        }
        out.push(words);
    }
    if let Some(d) = r["boundsDuration"].as_object() {
        let value = d.get("value").and_then(number);
        let unit = d
            .get("code")
            .or_else(|| d.get("unit"))
            .and_then(Value::as_str);
        if let (Some(v), Some(u)) = (value, unit) {
            let n = v.parse::<f64>().unwrap_or(2.0);
            out.push(format!("for {v} {}", unit_words(u, n)));
        }
    } else if let Some(end) = r["boundsPeriod"]["end"].as_str() {
        out.push(format!("until {}", end.get(..10).unwrap_or(end)));
    }
    if let Some(count) = r["count"].as_i64() {
        out.push(format!(
            "{count} {} in all",
            if count == 1 { "dose" } else { "doses" }
        ));
    }
    out
}

/// One Dosage in plain words: its `text` when the prescriber wrote one; else built from the
/// dose, route, timing and as-needed ("1 tablet by mouth, twice a day, for 10 days").
pub fn dosage_words(dosage: &Value) -> String {
    if let Some(text) = dosage["text"].as_str().filter(|t| !t.trim().is_empty()) {
        return line(text);
    }
    let mut parts: Vec<String> = Vec::new();
    let dose_and_rate = &dosage["doseAndRate"][0];
    let dose = quantity_words(&dose_and_rate["doseQuantity"]).or_else(|| {
        let lo = quantity_words(&dose_and_rate["doseRange"]["low"])?;
        let hi = quantity_words(&dose_and_rate["doseRange"]["high"])?;
        Some(format!("{lo} to {hi}"))
    });
    let route = concept_words(&dosage["route"]).map(|r| r.to_lowercase());
    match (dose, route) {
        (Some(d), Some(r)) => parts.push(format!("{d}, {r}")),
        (Some(d), None) => parts.push(d),
        (None, Some(r)) => parts.push(r),
        (None, None) => {}
    }
    parts.extend(timing_words(&dosage["timing"]));
    if dosage["asNeededBoolean"] == true {
        parts.push("as needed".into());
    } else if let Some(why) = concept_words(&dosage["asNeededCodeableConcept"]) {
        parts.push(format!("as needed for {}", why.to_lowercase()));
    }
    if let Some(extra) = dosage["patientInstruction"].as_str() {
        parts.push(extra.to_string());
    }
    if parts.is_empty() {
        "as directed".into()
    } else {
        line(&parts.join(", "))
    }
}

/// Every dosage instruction of a request in plain words, `; ` between them.
pub fn instructions_words(request: &Value) -> String {
    let words: Vec<String> = request["dosageInstruction"]
        .as_array()
        .into_iter()
        .flatten()
        .map(dosage_words)
        .collect();
    if words.is_empty() {
        "as directed".into()
    } else {
        words.join("; ")
    }
}

/// Whether substitution is allowed (R4: `allowedBoolean`, or `allowedCodeableConcept` with
/// v3 ActSubstanceAdminSubstitutionCode `N` for none).
fn substitution(request: &Value) -> &'static str {
    let s = &request["substitution"];
    let refused = s["allowedBoolean"] == false
        || s["allowedCodeableConcept"]["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["code"] == "N");
    if refused { "not-allowed" } else { "allowed" }
}

/// The claims of `request` signed at `time`: what the prescriber's key signs, and what an
/// offline check compares a stored prescription with.
///
/// # Errors
/// [`ClaimsError::Missing`] for a request without an id, patient, practitioner requester,
/// medication or `authoredOn`.
pub fn claims_of(request: &Value, time: &str) -> Result<PrescriptionClaims, ClaimsError> {
    let id = request["id"]
        .as_str()
        .ok_or(ClaimsError::Missing("an id"))?;
    let patient = request["subject"]["reference"]
        .as_str()
        .filter(|r| r.starts_with("Patient/"))
        .ok_or(ClaimsError::Missing("a patient (subject)"))?;
    let prescriber = request["requester"]["reference"]
        .as_str()
        .filter(|r| r.starts_with("Practitioner/"))
        .ok_or(ClaimsError::Missing("a practitioner as its requester"))?;
    let medication_text = medication_words(request).ok_or(ClaimsError::Missing("a medication"))?;
    let authored = request["authoredOn"]
        .as_str()
        .ok_or(ClaimsError::Missing("authoredOn"))?;
    let dispense = &request["dispenseRequest"];
    Ok(PrescriptionClaims {
        prescription: format!("MedicationRequest/{id}"),
        patient: patient.to_string(),
        prescriber: prescriber.to_string(),
        medication: line(&medication_code(request).unwrap_or_else(|| "text".into())),
        medication_text: line(&medication_text),
        dosage: line(&instructions_words(request)),
        quantity: line(&quantity_words(&dispense["quantity"]).unwrap_or_default()),
        supply: line(
            &dispense["expectedSupplyDuration"]
                .as_object()
                .and_then(|_| quantity_words(&dispense["expectedSupplyDuration"]))
                .unwrap_or_default(),
        ),
        refills: dispense["numberOfRepeatsAllowed"]
            .as_u64()
            .unwrap_or(0)
            .to_string(),
        substitution: substitution(request).into(),
        authored: line(authored),
        time: line(time),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request() -> Value {
        json!({
            "resourceType": "MedicationRequest", "id": "rx1",
            "status": "draft", "intent": "order",
            "medicationCodeableConcept": {"coding": [
                {"system": "http://snomed.info/sct", "code": "318858003"},
                {"system": RXNORM, "code": "314076", "display": "lisinopril 10 MG Oral Tablet"}]},
            "subject": {"reference": "Patient/p1"},
            "requester": {"reference": "Practitioner/gp"},
            "authoredOn": "2026-12-04",
            "dosageInstruction": [{
                "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
                "route": {"text": "By mouth"},
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d", "when": ["MORN"]}}}],
            "dispenseRequest": {"quantity": {"value": 30, "unit": "tablet"},
                "expectedSupplyDuration": {"value": 30, "unit": "days", "code": "d"},
                "numberOfRepeatsAllowed": 2,
                "performer": {"reference": "Organization/ph1"}},
            "substitution": {"allowedBoolean": true}
        })
    }

    #[test]
    fn claims_read_every_part_of_a_prescription() {
        let c = claims_of(&request(), "2026-12-04T10:00:00Z").unwrap();
        assert_eq!(c.prescription, "MedicationRequest/rx1");
        assert_eq!(c.medication, format!("{RXNORM}|314076"), "RxNorm first");
        assert_eq!(c.medication_text, "lisinopril 10 MG Oral Tablet");
        assert_eq!(c.dosage, "1 tablet, by mouth, once a day, in the morning");
        assert_eq!(c.quantity, "30 tablet");
        assert_eq!(c.supply, "30 days");
        assert_eq!(c.refills, "2");
        assert_eq!(c.substitution, "allowed");
        c.signed_bytes().unwrap();
        // Free text with a line break in it still makes one line.
        let mut free = request();
        free["medicationCodeableConcept"] = json!({"text": "Magistral cream\nzinc 10%"});
        free.as_object_mut().unwrap().remove("dispenseRequest");
        let c = claims_of(&free, "2026-12-04T10:00:00Z").unwrap();
        assert_eq!(c.medication, "text");
        assert_eq!(c.medication_text, "Magistral cream zinc 10%");
        assert_eq!((c.quantity.as_str(), c.refills.as_str()), ("none", "0"));
        c.signed_bytes().unwrap();
        // No practitioner requester: nothing to sign with.
        let mut orphan = request();
        orphan["requester"] = json!({"reference": "Organization/h"});
        assert_eq!(
            claims_of(&orphan, "t"),
            Err(ClaimsError::Missing("a practitioner as its requester"))
        );
    }

    #[test]
    fn instructions_read_as_plain_words() {
        let words = |d: Value| dosage_words(&d);
        assert_eq!(
            words(json!({"text": "Take one\n daily "})),
            "Take one daily"
        );
        assert_eq!(
            words(
                json!({"doseAndRate": [{"doseQuantity": {"value": 2, "unit": "puff"}}],
                "timing": {"repeat": {"frequency": 1, "period": 6, "periodUnit": "h"}},
                "asNeededCodeableConcept": {"text": "Shortness of breath"}})
            ),
            "2 puff, every 6 hours, as needed for shortness of breath"
        );
        assert_eq!(
            words(
                json!({"timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d",
                "boundsDuration": {"value": 10, "code": "d"}}}})
            ),
            "twice a day, for 10 days"
        );
        assert_eq!(
            words(
                json!({"doseAndRate": [{"doseRange": {"low": {"value": 1, "unit": "tablet"}, "high": {"value": 2, "unit": "tablet"}}}],
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk", "dayOfWeek": ["mon", "thu"], "timeOfDay": ["08:00:00"]}}})
            ),
            "1 tablet to 2 tablet, once a week, on Monday and Thursday, at 08:00"
        );
        assert_eq!(
            words(
                json!({"timing": {"repeat": {"when": ["ACM", "ACV"], "offset": 30, "count": 20}}})
            ),
            "30 minutes before breakfast and before dinner, 20 doses in all"
        );
        assert_eq!(words(json!({})), "as directed");
    }
}
