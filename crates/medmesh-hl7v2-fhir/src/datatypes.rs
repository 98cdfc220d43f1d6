//! HL7 v2 data types to FHIR data types: CX, XPN, XAD, XTN, CWE, XCN, DTM and the codes
//! of HL7 tables, after the mapping guide's data type maps.

use medmesh_hl7v2::{Field, Repetition};
use serde_json::{Map, Value, json};

use crate::Identifier;
use crate::profile::{Profile, slug};

/// The standard coding systems: the names HL7 v2 gives each (CWE-3; the first is the
/// one this node writes) and its FHIR URI. Read both ways: inbound and outbound.
const STANDARD_SYSTEMS: &[(&[&str], &str)] = &[
    (&["LN", "LOINC"], "http://loinc.org"),
    (
        &["SCT", "SNM", "SNOMED", "SNOMEDCT", "SCT2"],
        "http://snomed.info/sct",
    ),
    (
        &["I10", "I10C", "ICD10CM"],
        "http://hl7.org/fhir/sid/icd-10-cm",
    ),
    (&["I10P"], "http://www.cms.gov/Medicare/Coding/ICD10"),
    (&["I9", "I9C", "I9CDX"], "http://hl7.org/fhir/sid/icd-9-cm"),
    (&["CPT", "C4", "C5"], "http://www.ama-assn.org/go/cpt"),
    (
        &["RXNORM", "RXN"],
        "http://www.nlm.nih.gov/research/umls/rxnorm",
    ),
    (&["NDC"], "http://hl7.org/fhir/sid/ndc"),
    (&["CVX"], "http://hl7.org/fhir/sid/cvx"),
    (&["MVX"], "http://terminology.hl7.org/CodeSystem/MVX"),
    (&["UCUM"], "http://unitsofmeasure.org"),
    (&["NUCC"], "http://nucc.org/provider-taxonomy"),
    (&["CDCREC"], "urn:oid:2.16.840.1.113883.6.238"),
    (&["ISO3166_1"], "urn:iso:std:iso:3166"),
];

/// Where HL7 v2 tables live in FHIR (`HL70078` is `...CodeSystem/v2-0078`).
const HL7_TABLES: &str = "http://terminology.hl7.org/CodeSystem/v2-";

/// The FHIR system of an HL7 coding-system name (CWE-3), the sender's own first.
pub fn code_system(name: &str, profile: &Profile) -> String {
    if let Some(s) = profile.code_systems.get(name) {
        return s.clone();
    }
    let upper = name.to_ascii_uppercase();
    if let Some((_, uri)) = STANDARD_SYSTEMS
        .iter()
        .find(|(names, _)| names.contains(&upper.as_str()))
    {
        return (*uri).to_string();
    }
    // HL7 tables: HL70078, HL7-0078 and 0078.
    let digits = upper.trim_start_matches("HL7").trim_start_matches('-');
    if digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()) {
        return format!("{HL7_TABLES}{digits}");
    }
    format!("{}/codes/{}", profile.system_base, slug(name))
}

/// The HL7 coding-system name (CWE-3) of a FHIR system: the standard one's, `HL7nnnn` for an
/// HL7 table, else the URI's last segment.
pub fn code_system_name(system: &str) -> String {
    if let Some((names, _)) = STANDARD_SYSTEMS.iter().find(|(_, uri)| *uri == system) {
        return names[0].to_string();
    }
    match system.strip_prefix(HL7_TABLES) {
        Some(table) => format!("HL7{table}"),
        None => system.rsplit('/').next().unwrap_or_default().to_string(),
    }
}

/// The system of an assigning authority (HD: namespace id, universal id, its type).
fn authority_system(
    namespace: &str,
    universal: &str,
    universal_type: &str,
    profile: &Profile,
) -> Option<String> {
    if let Some(s) = profile.identifier_systems.get(namespace) {
        return Some(s.clone());
    }
    if !universal.is_empty() {
        match universal_type.to_ascii_uppercase().as_str() {
            "ISO" if universal.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
                return Some(format!("urn:oid:{universal}"));
            }
            "URI" | "URL" if universal.contains(':') => return Some(universal.to_string()),
            _ => {}
        }
    }
    let name = if namespace.is_empty() {
        universal
    } else {
        namespace
    };
    (!name.is_empty()).then(|| format!("{}/id/{}", profile.authority_base, slug(name)))
}

/// An identifier of CX type: value, system from the assigning authority (CX-4), its type
/// code (CX-5).
pub fn cx(rep: &Repetition<'_>, profile: &Profile) -> Option<(Identifier, String)> {
    let value = rep.get(1).trim().to_string();
    if value.is_empty() || value == "\"\"" {
        return None;
    }
    let system = authority_system(&rep.sub(4, 1), &rep.sub(4, 2), &rep.sub(4, 3), profile)
        .unwrap_or_else(|| format!("{}/id/unspecified", profile.system_base));
    Some((Identifier { system, value }, rep.get(5).trim().to_string()))
}

/// A FHIR Identifier with its v2-0203 type.
pub fn identifier_fhir(id: &Identifier, type_code: &str) -> Value {
    let mut v = id.to_fhir();
    if !type_code.is_empty() {
        v["type"] = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": type_code}]});
    }
    v
}

fn non_empty(parts: impl IntoIterator<Item = String>) -> Vec<Value> {
    parts
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s != "\"\"")
        .map(Value::String)
        .collect()
}

fn put_if(o: &mut Map<String, Value>, key: &str, v: Value) {
    let empty = match &v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    };
    if !empty {
        o.insert(key.into(), v);
    }
}

/// Person names (XPN): family (its surname, FN-1), given and middle names, suffix,
/// prefix, and the name's use (table 0200).
pub fn names(field: Field<'_>) -> Vec<Value> {
    field
        .repetitions()
        .filter_map(|r| {
            let mut o = Map::new();
            put_if(
                &mut o,
                "family",
                Value::String(r.sub(1, 1).trim().to_string()),
            );
            put_if(
                &mut o,
                "given",
                Value::Array(non_empty([r.get(2).into_owned(), r.get(3).into_owned()])),
            );
            put_if(
                &mut o,
                "suffix",
                Value::Array(non_empty([r.get(4).into_owned()])),
            );
            put_if(
                &mut o,
                "prefix",
                Value::Array(non_empty([r.get(5).into_owned()])),
            );
            if o.is_empty() {
                return None;
            }
            let usage = match &*r.get(7) {
                "L" => "official",
                "D" | "C" => "usual",
                "M" | "B" => "maiden",
                "N" => "nickname",
                "A" | "S" => "anonymous",
                "T" | "I" => "temp",
                _ => "",
            };
            put_if(&mut o, "use", Value::String(usage.into()));
            Some(Value::Object(o))
        })
        .collect()
}

/// Addresses (XAD): street (its first sub-component, SAD-1), other designation, city,
/// state, postal code, country, and use (table 0190).
pub fn addresses(field: Field<'_>) -> Vec<Value> {
    field
        .repetitions()
        .filter_map(|r| {
            let mut o = Map::new();
            put_if(
                &mut o,
                "line",
                Value::Array(non_empty([r.sub(1, 1).into_owned(), r.get(2).into_owned()])),
            );
            put_if(&mut o, "city", Value::String(r.get(3).trim().into()));
            put_if(&mut o, "state", Value::String(r.get(4).trim().into()));
            put_if(&mut o, "postalCode", Value::String(r.get(5).trim().into()));
            put_if(&mut o, "country", Value::String(r.get(6).trim().into()));
            if o.is_empty() {
                return None;
            }
            let (usage, kind) = match &*r.get(7) {
                "H" | "P" => ("home", ""),
                "B" | "O" => ("work", ""),
                "C" => ("temp", ""),
                "M" => ("", "postal"),
                "BA" => ("old", ""),
                _ => ("", ""),
            };
            put_if(&mut o, "use", Value::String(usage.into()));
            put_if(&mut o, "type", Value::String(kind.into()));
            Some(Value::Object(o))
        })
        .collect()
}

/// Telecom numbers and addresses (XTN): the number (XTN-1, or area code and local number,
/// XTN-6/7, with extension XTN-8), an e-mail address (XTN-4), use by XTN-2 (table 0201),
/// else `default_use`.
pub fn telecoms(field: Field<'_>, default_use: &str) -> Vec<Value> {
    field
        .repetitions()
        .filter_map(|r| {
            let equipment = r.get(3);
            let email = r.get(4).trim().to_string();
            let (system, value) = if equipment.eq_ignore_ascii_case("Internet")
                || equipment == "X.400"
                || !email.is_empty() && r.get(1).is_empty() && r.get(7).is_empty()
            {
                ("email", email)
            } else {
                let local = r.get(7);
                let number = if local.trim().is_empty() {
                    r.get(1).trim().to_string()
                } else {
                    let area = r.get(6);
                    let ext = r.get(8);
                    let mut n = String::new();
                    if !area.trim().is_empty() {
                        n.push_str(&format!("({}) ", area.trim()));
                    }
                    n.push_str(local.trim());
                    if !ext.trim().is_empty() {
                        n.push_str(&format!(" x{}", ext.trim()));
                    }
                    n
                };
                let system = match &*equipment {
                    "FX" => "fax",
                    "BP" => "pager",
                    _ => "phone",
                };
                (system, number)
            };
            if value.is_empty() || value == "\"\"" {
                return None;
            }
            let usage = match &*r.get(2) {
                "PRN" | "ORN" | "VHN" => "home",
                "WPN" => "work",
                "PRS" => "mobile",
                "EMR" | "NET" => "",
                _ => default_use,
            };
            let usage = if equipment == "CP" { "mobile" } else { usage };
            let mut o = Map::new();
            o.insert("system".into(), json!(system));
            o.insert("value".into(), json!(value));
            put_if(&mut o, "use", Value::String(usage.into()));
            Some(Value::Object(o))
        })
        .collect()
}

/// A coded element (CWE, CE, CNE, starting at component `at`): its code, text and system,
/// the alternate triplet, the original text (CWE-9); and the profile's translation of a
/// local code, added beside it. `None` when it holds nothing.
pub fn codeable_at(r: &Repetition<'_>, at: usize, profile: &Profile) -> Option<Value> {
    let mut codings = Vec::new();
    for base in [at, at + 3] {
        let code = r.get(base).trim().to_string();
        let display = r.get(base + 1).trim().to_string();
        let system_name = r.get(base + 2).trim().to_string();
        if code.is_empty() {
            continue;
        }
        let mut c = Map::new();
        if !system_name.is_empty() {
            c.insert("system".into(), json!(code_system(&system_name, profile)));
        }
        c.insert("code".into(), json!(code));
        put_if(&mut c, "display", Value::String(display));
        codings.push(Value::Object(c));
        if let Some(t) = profile
            .translations
            .iter()
            .find(|t| t.from_system == system_name && t.from_code == code)
        {
            let mut tc = json!({"system": t.to_system, "code": t.to_code});
            if let Some(d) = &t.display {
                tc["display"] = json!(d);
            }
            codings.push(tc);
        }
    }
    let text = {
        let original = if at == 1 {
            r.get(9).trim().to_string()
        } else {
            String::new()
        };
        if original.is_empty() {
            r.get(at + 1).trim().to_string()
        } else {
            original
        }
    };
    if codings.is_empty() && text.is_empty() {
        return None;
    }
    let mut o = Map::new();
    put_if(&mut o, "coding", Value::Array(codings));
    put_if(&mut o, "text", Value::String(text));
    Some(Value::Object(o))
}

/// A coded element from the first component.
pub fn codeable(r: &Repetition<'_>, profile: &Profile) -> Option<Value> {
    codeable_at(r, 1, profile)
}

/// A person (XCN) as a reference by identifier and display: ID number, family and given.
pub fn person_reference(r: &Repetition<'_>, profile: &Profile) -> Option<Value> {
    let id = r.get(1).trim().to_string();
    let family = r.sub(2, 1).trim().to_string();
    let given = r.get(3).trim().to_string();
    let prefix = r.get(6).trim().to_string();
    let display = [prefix, given, family]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if id.is_empty() && display.is_empty() {
        return None;
    }
    let mut o = Map::new();
    if !id.is_empty() {
        let system = authority_system(&r.sub(9, 1), &r.sub(9, 2), &r.sub(9, 3), profile)
            .unwrap_or_else(|| format!("{}/id/practitioners", profile.system_base));
        o.insert("identifier".into(), json!({"system": system, "value": id}));
    }
    put_if(&mut o, "display", Value::String(display));
    Some(Value::Object(o))
}

/// Why a timestamp was refused.
pub const BAD_TIMESTAMP: &str = "not a timestamp (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ])";

/// An HL7 timestamp (DTM, TS's first component) as a FHIR dateTime, at the precision sent;
/// a time without an offset takes the profile's. `Ok(None)` when empty.
///
/// # Errors
/// [`BAD_TIMESTAMP`] when it is not one.
pub fn datetime(raw: &str, profile: &Profile) -> Result<Option<String>, &'static str> {
    let raw = raw.trim();
    if raw.is_empty() || raw == "\"\"" {
        return Ok(None);
    }
    let (main, offset) = match raw.find(['+', '-']) {
        Some(i) => (&raw[..i], Some(&raw[i..])),
        None => (raw, None),
    };
    let (digits, fraction) = match main.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (main, None),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit())
        || ![4, 6, 8, 10, 12, 14].contains(&digits.len())
        || fraction.is_some_and(|f| {
            f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) || digits.len() != 14
        })
    {
        return Err(BAD_TIMESTAMP);
    }
    let n = |a: usize, b: usize| digits[a..b].parse::<u32>().unwrap_or(99);
    let ranges_ok = (digits.len() < 6 || (1..=12).contains(&n(4, 6)))
        && (digits.len() < 8 || (1..=31).contains(&n(6, 8)))
        && (digits.len() < 10 || n(8, 10) <= 23)
        && (digits.len() < 12 || n(10, 12) <= 59)
        && (digits.len() < 14 || n(12, 14) <= 60);
    if !ranges_ok {
        return Err(BAD_TIMESTAMP);
    }
    let mut out = digits[..4].to_string();
    if digits.len() >= 6 {
        out.push_str(&format!("-{}", &digits[4..6]));
    }
    if digits.len() >= 8 {
        out.push_str(&format!("-{}", &digits[6..8]));
    }
    if digits.len() >= 10 {
        let minutes = if digits.len() >= 12 {
            &digits[10..12]
        } else {
            "00"
        };
        let seconds = if digits.len() >= 14 {
            &digits[12..14]
        } else {
            "00"
        };
        out.push_str(&format!("T{}:{minutes}:{seconds}", &digits[8..10]));
        if let Some(f) = fraction {
            out.push('.');
            out.push_str(&f[..f.len().min(6)]);
        }
        let tz = match offset {
            Some(o) if o.len() == 5 && o[1..].bytes().all(|b| b.is_ascii_digit()) => {
                format!("{}:{}", &o[..3], &o[3..5])
            }
            Some(_) => return Err(BAD_TIMESTAMP),
            None => profile.timezone.clone(),
        };
        out.push_str(if tz == "+00:00" { "Z" } else { &tz });
    } else if offset.is_some_and(|o| o.len() != 5 || !o[1..].bytes().all(|b| b.is_ascii_digit())) {
        return Err(BAD_TIMESTAMP);
    }
    Ok(Some(out))
}

/// The date part of a timestamp (a birth date), at the precision sent.
///
/// # Errors
/// As [`datetime`].
pub fn date(raw: &str, profile: &Profile) -> Result<Option<String>, &'static str> {
    Ok(datetime(raw, profile)?.map(|d| d.chars().take(10).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_hl7v2::Message;

    #[test]
    fn coding_system_names_read_both_ways() {
        let p = Profile::default();
        for (names, uri) in STANDARD_SYSTEMS {
            assert_eq!(code_system_name(uri), names[0]);
            for name in *names {
                assert_eq!(code_system(name, &p), *uri);
            }
        }
        assert_eq!(code_system_name(&code_system("HL70078", &p)), "HL70078");
        assert_eq!(code_system_name("https://lab.example.org/codes"), "codes");
    }

    fn p() -> Profile {
        Profile::for_sender("Lab One")
    }

    #[test]
    fn timestamps_at_every_precision() {
        let cases = [
            ("2024", "2024"),
            ("202403", "2024-03"),
            ("20240315", "2024-03-15"),
            ("2024031512", "2024-03-15T12:00:00Z"),
            ("202403151230", "2024-03-15T12:30:00Z"),
            ("20240315123045", "2024-03-15T12:30:45Z"),
            ("20240315123045.1234", "2024-03-15T12:30:45.1234Z"),
            ("202403151230+0215", "2024-03-15T12:30:00+02:15"),
            ("20240315123045-0500", "2024-03-15T12:30:45-05:00"),
        ];
        for (raw, want) in cases {
            assert_eq!(datetime(raw, &p()).unwrap().as_deref(), Some(want), "{raw}");
        }
        let mut paris = p();
        paris.timezone = "+01:00".into();
        assert_eq!(
            datetime("202403151230", &paris).unwrap().unwrap(),
            "2024-03-15T12:30:00+01:00"
        );
        for bad in [
            "20241",
            "2024-03-15",
            "20241315",
            "202403151260",
            "2024031512+02",
            "abc",
        ] {
            assert_eq!(datetime(bad, &p()), Err(BAD_TIMESTAMP), "{bad}");
        }
        assert_eq!(datetime("", &p()), Ok(None));
        assert_eq!(date("19800101120000", &p()).unwrap().unwrap(), "1980-01-01");
    }

    #[test]
    fn identifiers_names_addresses_telecoms_codes() {
        let m = Message::parse_str("MSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5\rPID|1||123^^^HOSP^MR~456^^^&2.16.840.1&ISO^PI||Doe^Jane^Q^Jr^Dr^^L~Smith^Jane^^^^^M||19800101|F|||1 Main St^Apt 2^Town^ST^12345^USA^H||^PRN^PH^^1^555^1234567~^NET^Internet^jane@example.org|^WPN^CP^^^555^7654321\rOBX|1|CWE|X1^Local thing^99LOC^1234-5^Loinc thing^LN|").unwrap();
        let pid = m.segment("PID").unwrap();
        let ids: Vec<_> = pid
            .field(3)
            .repetitions()
            .filter_map(|r| cx(&r, &p()))
            .collect();
        assert_eq!(ids[0].0.system, "urn:medmesh:hl7v2/id/HOSP");
        assert_eq!(ids[0].1, "MR");
        assert_eq!(ids[1].0.system, "urn:oid:2.16.840.1");
        let n = names(pid.field(5));
        assert_eq!(
            n[0],
            json!({"family": "Doe", "given": ["Jane", "Q"], "suffix": ["Jr"], "prefix": ["Dr"], "use": "official"})
        );
        assert_eq!(n[1]["use"], "maiden");
        let a = addresses(pid.field(11));
        assert_eq!(
            a[0],
            json!({"line": ["1 Main St", "Apt 2"], "city": "Town", "state": "ST", "postalCode": "12345", "country": "USA", "use": "home"})
        );
        let t = telecoms(pid.field(13), "home");
        assert_eq!(
            t[0],
            json!({"system": "phone", "value": "(555) 1234567", "use": "home"})
        );
        assert_eq!(
            t[1],
            json!({"system": "email", "value": "jane@example.org"})
        );
        assert_eq!(telecoms(pid.field(14), "work")[0]["use"], "mobile");
        let obx = m.segment("OBX").unwrap();
        let c = codeable(&obx.field(3).first(), &p()).unwrap();
        assert_eq!(
            c["coding"][0]["system"],
            "urn:medmesh:hl7v2:Lab-One/codes/99LOC"
        );
        assert_eq!(c["coding"][1]["system"], "http://loinc.org");
        assert_eq!(c["text"], "Local thing");
        assert_eq!(
            code_system("HL70078", &p()),
            "http://terminology.hl7.org/CodeSystem/v2-0078"
        );
    }
}
