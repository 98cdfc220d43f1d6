//! FHIR resources as people read them: coded values by their display text, dates in the
//! reader's language and time zone, results with their units, reference ranges and
//! abnormal flags, grouped into one series per analyte. No I/O.

use std::collections::BTreeMap;

use serde_json::Value;
use time::{Date, OffsetDateTime, UtcOffset};

use crate::i18n::Lang;

/// A code system's name as people know it.
fn system_name(system: &str) -> &str {
    match system {
        "http://loinc.org" => "LOINC",
        "http://snomed.info/sct" => "SNOMED CT",
        "http://www.nlm.nih.gov/research/umls/rxnorm" => "RxNorm",
        "http://hl7.org/fhir/sid/cvx" => "CVX",
        "http://hl7.org/fhir/sid/icd-10" | "http://hl7.org/fhir/sid/icd-10-cm" => "ICD-10",
        _ => "",
    }
}

/// A CodeableConcept's text: its `text`, else the first coding's `display`, else the code
/// named with its system ("LOINC 2339-0"), never a bare code.
pub fn concept(value: &Value) -> Option<String> {
    if let Some(t) = value["text"].as_str().filter(|t| !t.trim().is_empty()) {
        return Some(t.trim().to_string());
    }
    let codings = value["coding"].as_array()?;
    if let Some(d) = codings
        .iter()
        .find_map(|c| c["display"].as_str().filter(|d| !d.trim().is_empty()))
    {
        return Some(d.trim().to_string());
    }
    codings.iter().find_map(|c| {
        let code = c["code"].as_str()?;
        let system = system_name(c["system"].as_str().unwrap_or_default());
        Some(if system.is_empty() {
            format!("code {code}")
        } else {
            format!("{system} {code}")
        })
    })
}

/// The first coding's code, for grouping (`system|code`).
pub fn concept_key(value: &Value) -> Option<String> {
    let c = value["coding"].as_array()?.first()?;
    Some(format!(
        "{}|{}",
        c["system"].as_str().unwrap_or_default(),
        c["code"].as_str()?
    ))
}

/// A FHIR `date`, `dateTime` or `instant` as a point in time (a date alone is its midnight,
/// UTC).
pub fn instant(text: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Some(t);
    }
    let date_only = time::macros::format_description!("[year]-[month]-[day]");
    if let Some(Ok(d)) = text.get(..10).map(|t| Date::parse(t, date_only)) {
        return Some(d.midnight().assume_utc());
    }
    let year: i32 = text.get(..4)?.parse().ok()?;
    let month: u8 = text.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    Date::from_calendar_date(year, time::Month::try_from(month).ok()?, 1)
        .ok()
        .map(|d| d.midnight().assume_utc())
}

/// A point in time as the reader reads a date: "3 Dec 2026" / "3 déc. 2026", in their
/// time zone (`tz_minutes` east of UTC).
pub fn date(lang: Lang, at: OffsetDateTime, tz_minutes: i32) -> String {
    let offset = UtcOffset::from_whole_seconds(tz_minutes * 60).unwrap_or(UtcOffset::UTC);
    let local = at.to_offset(offset);
    lang.t_with(
        "date-format",
        &[
            ("day", crate::i18n::Arg::Number(f64::from(local.day()))),
            (
                "month",
                crate::i18n::Arg::Text(lang.t(&format!("month-{}", u8::from(local.month())))),
            ),
            ("year", crate::i18n::Arg::Number(f64::from(local.year()))),
        ],
    )
}

/// A point in time with its hour: "3 Dec 2026, 20:15", in the reader's time zone.
pub fn date_time(lang: Lang, at: OffsetDateTime, tz_minutes: i32) -> String {
    let offset = UtcOffset::from_whole_seconds(tz_minutes * 60).unwrap_or(UtcOffset::UTC);
    let local = at.to_offset(offset);
    lang.t_with(
        "datetime-format",
        &[
            ("date", crate::i18n::Arg::Text(date(lang, at, tz_minutes))),
            (
                "time",
                crate::i18n::Arg::Text(format!("{:02}:{:02}", local.hour(), local.minute())),
            ),
        ],
    )
}

/// [`date_time`] of a time in microseconds since the epoch (an audit entry's, an access's),
/// or "" when it is out of range.
pub fn date_time_micros(lang: Lang, micros: i64, tz_minutes: i32) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .map(|t| date_time(lang, t, tz_minutes))
        .unwrap_or_default()
}

/// A date from a resource's field, formatted, or "" when it has none.
pub fn date_of(lang: Lang, field: &Value, tz_minutes: i32) -> String {
    field
        .as_str()
        .and_then(instant)
        .map(|t| date(lang, t, tz_minutes))
        .unwrap_or_default()
}

/// A quantity as "5.4 mmol/L".
pub fn quantity(q: &Value) -> Option<String> {
    let v = q["value"].as_f64()?;
    let unit = q["unit"]
        .as_str()
        .or_else(|| q["code"].as_str())
        .unwrap_or("");
    Some(format!("{} {unit}", number(v)).trim_end().to_string())
}

/// A number without trailing zeros, at most three decimals.
pub fn number(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

/// How a value stands against its reference range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// Within the range, or no range and no interpretation.
    Normal,
    /// Below.
    Low,
    /// Above.
    High,
    /// Abnormal, without a direction (an interpretation code).
    Abnormal,
}

impl Flag {
    /// Whether to mark it.
    pub fn is_abnormal(self) -> bool {
        self != Flag::Normal
    }

    /// The message id of its label.
    pub fn label_id(self) -> &'static str {
        match self {
            Flag::Normal => "flag-normal",
            Flag::Low => "flag-low",
            Flag::High => "flag-high",
            Flag::Abnormal => "flag-abnormal",
        }
    }
}

/// A reference range (either end may be open).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    /// The low end.
    pub low: Option<f64>,
    /// The high end.
    pub high: Option<f64>,
}

/// Typical adult reference ranges of common analytes, by LOINC code and UCUM unit, for
/// results that carry no range of their own (Synthea's, and many feeds'). The page says
/// "typical adult range", never "your lab's range", and a value is only compared with it in
/// the same unit. Sources: the common adult ranges in MedlinePlus's lab test pages and the
/// ACC/AHA and ADA thresholds.
const TYPICAL_RANGES: &[(&str, &str, Option<f64>, Option<f64>)] = &[
    ("2339-0", "mg/dL", Some(70.0), Some(99.0)), // glucose (fasting)
    ("4548-4", "%", Some(4.0), Some(5.6)),       // haemoglobin A1c
    ("2093-3", "mg/dL", None, Some(200.0)),      // total cholesterol
    ("18262-6", "mg/dL", None, Some(100.0)),     // LDL cholesterol
    ("2085-9", "mg/dL", Some(40.0), None),       // HDL cholesterol
    ("2571-8", "mg/dL", None, Some(150.0)),      // triglycerides
    ("8480-6", "mm[Hg]", Some(90.0), Some(120.0)), // systolic blood pressure
    ("8462-4", "mm[Hg]", Some(60.0), Some(80.0)), // diastolic blood pressure
    ("39156-5", "kg/m2", Some(18.5), Some(25.0)), // body mass index
    ("8867-4", "/min", Some(60.0), Some(100.0)), // heart rate
    ("9279-1", "/min", Some(12.0), Some(20.0)),  // respiratory rate
    ("2947-0", "mmol/L", Some(136.0), Some(145.0)), // sodium
    ("6298-4", "mmol/L", Some(3.5), Some(5.1)),  // potassium
    ("2069-3", "mmol/L", Some(98.0), Some(107.0)), // chloride
    ("20565-8", "mmol/L", Some(22.0), Some(29.0)), // carbon dioxide
    ("49765-1", "mg/dL", Some(8.5), Some(10.2)), // calcium
    ("6299-2", "mg/dL", Some(7.0), Some(20.0)),  // urea nitrogen
    ("38483-4", "mg/dL", Some(0.6), Some(1.3)),  // creatinine
];

/// The typical adult range of `system|code` in `unit`, if known.
pub fn typical_range(key: &str, unit: &str) -> Option<Range> {
    let code = key.strip_prefix("http://loinc.org|")?;
    TYPICAL_RANGES
        .iter()
        .find(|(c, u, _, _)| *c == code && *u == unit)
        .map(|(_, _, low, high)| Range {
            low: *low,
            high: *high,
        })
}

/// The Observation's own reference range.
pub fn range_of(obs: &Value) -> Option<Range> {
    let r = obs["referenceRange"].as_array()?.first()?;
    let range = Range {
        low: r["low"]["value"].as_f64(),
        high: r["high"]["value"].as_f64(),
    };
    (range.low.is_some() || range.high.is_some()).then_some(range)
}

/// The flag of a value: the Observation's interpretation when it has one, else against the
/// range.
pub fn flag(obs: &Value, value: Option<f64>, range: Option<Range>) -> Flag {
    let codes: Vec<&str> = obs["interpretation"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["coding"].as_array().into_iter().flatten())
        .filter_map(|c| c["code"].as_str())
        .collect();
    for code in &codes {
        match *code {
            "H" | "HH" | "HU" | ">" => return Flag::High,
            "L" | "LL" | "LU" | "<" => return Flag::Low,
            "A" | "AA" | "POS" | "DET" | "R" => return Flag::Abnormal,
            "N" | "NEG" | "ND" | "S" => return Flag::Normal,
            _ => {}
        }
    }
    match (value, range) {
        (Some(v), Some(r)) if r.low.is_some_and(|l| v < l) => Flag::Low,
        (Some(v), Some(r)) if r.high.is_some_and(|h| v > h) => Flag::High,
        _ => Flag::Normal,
    }
}

/// One measured value of an analyte.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// When it was measured.
    pub at: OffsetDateTime,
    /// The value.
    pub value: f64,
    /// Against its range.
    pub flag: Flag,
}

/// One analyte's results, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its name (display text).
    pub name: String,
    /// The unit of its values.
    pub unit: String,
    /// The reference range of its newest value, if any.
    pub range: Option<Range>,
    /// Whether that range is the typical adult one, not the lab's.
    pub typical: bool,
    /// The values.
    pub points: Vec<Point>,
}

/// The numeric values of an Observation: its own, or each component's as a series of its
/// own (blood pressure gives systolic and diastolic).
fn numeric_parts(obs: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    if obs["valueQuantity"]["value"].is_number() {
        out.push((
            concept_key(&obs["code"]).unwrap_or_default(),
            concept(&obs["code"]).unwrap_or_default(),
            obs,
        ));
    }
    for c in obs["component"].as_array().into_iter().flatten() {
        if c["valueQuantity"]["value"].is_number() {
            out.push((
                concept_key(&c["code"]).unwrap_or_default(),
                concept(&c["code"]).unwrap_or_default(),
                c,
            ));
        }
    }
    out
}

/// Groups Observations into one series per analyte (by code), by name.
pub fn series(observations: &[Value]) -> Vec<Series> {
    let mut by_code: BTreeMap<String, Series> = BTreeMap::new();
    for obs in observations {
        let Some(at) = obs["effectiveDateTime"]
            .as_str()
            .or_else(|| obs["effectivePeriod"]["start"].as_str())
            .or_else(|| obs["issued"].as_str())
            .and_then(instant)
        else {
            continue;
        };
        for (key, name, part) in numeric_parts(obs) {
            if key.is_empty() || name.is_empty() {
                continue;
            }
            let Some(value) = part["valueQuantity"]["value"].as_f64() else {
                continue;
            };
            let unit = part["valueQuantity"]["code"]
                .as_str()
                .or_else(|| part["valueQuantity"]["unit"].as_str())
                .unwrap_or_default();
            let own = range_of(part).or_else(|| range_of(obs));
            let typical = typical_range(&key, unit);
            let range = own.or(typical);
            let flag = flag(part, Some(value), range).max_with(flag(obs, Some(value), range));
            let s = by_code.entry(key).or_insert_with(|| Series {
                name,
                unit: part["valueQuantity"]["unit"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                range: None,
                typical: false,
                points: Vec::new(),
            });
            s.points.push(Point { at, value, flag });
            if range.is_some() {
                s.range = range;
                s.typical = own.is_none();
            }
        }
    }
    let mut out: Vec<Series> = by_code.into_values().collect();
    for s in &mut out {
        s.points.sort_by_key(|p| p.at);
    }
    out.sort_by_key(|s| s.name.to_lowercase());
    out
}

impl Flag {
    /// The more telling of two flags (a direction over none, anything over normal).
    fn max_with(self, other: Flag) -> Flag {
        match (self, other) {
            (Flag::Normal, o) => o,
            (Flag::Abnormal, Flag::High | Flag::Low) => other,
            (s, _) => s,
        }
    }
}

pub use medmesh_fhir::names::human_name;

/// The resources of a searchset Bundle, moved out of it.
pub use medmesh_records::reading::resources_of as resources;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn coded_values_read_as_text_never_a_bare_code() {
        assert_eq!(
            concept(&json!({"text": "Diabetes", "coding": [{"code": "44054006"}]})).unwrap(),
            "Diabetes"
        );
        assert_eq!(
            concept(&json!({"coding": [{"system": "http://loinc.org", "code": "2339-0", "display": "Glucose"}]}))
                .unwrap(),
            "Glucose"
        );
        assert_eq!(
            concept(&json!({"coding": [{"system": "http://loinc.org", "code": "2339-0"}]}))
                .unwrap(),
            "LOINC 2339-0"
        );
        assert_eq!(
            concept(&json!({"coding": [{"system": "urn:x", "code": "7"}]})).unwrap(),
            "code 7"
        );
        assert_eq!(concept(&json!({})), None);
    }

    #[test]
    fn dates_follow_the_language_and_the_time_zone() {
        let at = instant("2026-12-03T23:30:00Z").unwrap();
        assert_eq!(date(Lang::EN, at, 0), "3 Dec 2026");
        assert_eq!(date(Lang::EN, at, 60), "4 Dec 2026");
        assert_eq!(date(Lang::from_tag("fr").unwrap(), at, 0), "3 déc. 2026");
        assert_eq!(date(Lang::EN, instant("1987-06").unwrap(), 0), "1 Jun 1987");
        assert_eq!(date_time(Lang::EN, at, 90), "4 Dec 2026, 01:00");
        assert_eq!(
            date_time(Lang::from_tag("fr").unwrap(), at, 0),
            "3 déc. 2026 à 23:30"
        );
        assert!(instant("not a date").is_none());
    }

    #[test]
    fn results_group_by_analyte_with_flags_from_the_range_or_the_interpretation() {
        let glucose = |day: u32, v: f64, interp: Option<&str>| {
            let mut o = json!({
                "resourceType": "Observation",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0", "display": "Glucose"}]},
                "effectiveDateTime": format!("2026-01-{day:02}T08:00:00Z"),
                "valueQuantity": {"value": v, "unit": "mg/dL"},
                "referenceRange": [{"low": {"value": 70}, "high": {"value": 99}}],
            });
            if let Some(code) = interp {
                o["interpretation"] = json!([{"coding": [{"code": code}]}]);
            }
            o
        };
        let bp = json!({
            "resourceType": "Observation",
            "code": {"text": "Blood pressure"},
            "effectiveDateTime": "2026-01-02",
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6", "display": "Systolic"}]},
                 "valueQuantity": {"value": 128, "unit": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4", "display": "Diastolic"}]},
                 "valueQuantity": {"value": 82, "unit": "mm[Hg]"}}
            ]
        });
        let s = series(&[
            glucose(3, 150.0, None),
            glucose(1, 85.0, None),
            glucose(2, 60.0, None),
            glucose(4, 90.0, Some("H")),
            bp,
        ]);
        let names: Vec<&str> = s.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["Diastolic", "Glucose", "Systolic"]);
        let g = &s[1];
        let flags: Vec<Flag> = g.points.iter().map(|p| p.flag).collect();
        assert_eq!(flags, [Flag::Normal, Flag::Low, Flag::High, Flag::High]);
        assert_eq!(
            g.range,
            Some(Range {
                low: Some(70.0),
                high: Some(99.0)
            })
        );
        assert!(!g.typical, "the lab's own range");
        // Systolic 128 has no range of its own: the typical adult one marks it high.
        assert!(s[2].typical);
        assert_eq!(s[2].points[0].flag, Flag::High);
        assert_eq!(g.unit, "mg/dL");
        assert_eq!(
            quantity(&json!({"value": 5.40, "unit": "mmol/L"})).unwrap(),
            "5.4 mmol/L"
        );
    }
}
