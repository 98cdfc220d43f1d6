//! The topics a client can subscribe to, what triggers each, and the filters each can be
//! narrowed by (`backport-filter-criteria`: `Appointment?patient=Patient/1&status=booked`).
//!
//! Pure: no I/O. A filter's values within one parameter are alternatives (a comma), and
//! every parameter must match.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where medmesh's topics are named.
pub const TOPIC_BASE: &str = "https://medmesh.dev/fhir/SubscriptionTopic/";

/// The most filter parameters one subscription may have, and values per parameter.
const MAX_FILTERS: usize = 10;
const MAX_VALUES: usize = 20;

/// A topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topic {
    /// An Appointment written: booked, moved, changed, cancelled, arrived, missed.
    Appointment,
    /// A DiagnosticReport written as final, amended, corrected or appended: a result.
    Result,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Self; 2] = [Self::Appointment, Self::Result];

    /// The topic's canonical URL.
    pub fn canonical(self) -> String {
        format!("{TOPIC_BASE}{}", self.name())
    }

    /// Its short name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Appointment => "appointment",
            Self::Result => "result",
        }
    }

    /// The topic a canonical URL names (a `|version` suffix is allowed).
    pub fn from_canonical(url: &str) -> Option<Self> {
        let url = url.split('|').next().unwrap_or(url);
        Self::ALL.into_iter().find(|t| t.canonical() == url)
    }

    /// The resource type whose writes it is told of.
    pub fn resource_type(self) -> &'static str {
        match self {
            Self::Appointment => "Appointment",
            Self::Result => "DiagnosticReport",
        }
    }

    /// The filter parameters it takes.
    pub fn filter_names(self) -> &'static [&'static str] {
        match self {
            Self::Appointment => &["patient", "practitioner", "location", "status"],
            Self::Result => &["patient", "code", "category", "status"],
        }
    }

    /// What it tells of, in words (the topic list, the docs).
    pub fn description(self) -> &'static str {
        match self {
            Self::Appointment => {
                "An Appointment is created or changed (booked, moved, cancelled, arrived, no-show)."
            }
            Self::Result => {
                "A DiagnosticReport is written as final, amended, corrected or appended."
            }
        }
    }

    /// Whether a version of its resource type is an event of this topic.
    pub fn triggered_by(self, resource: &Value) -> bool {
        match self {
            Self::Appointment => true,
            Self::Result => matches!(
                resource["status"].as_str(),
                Some("final" | "amended" | "corrected" | "appended")
            ),
        }
    }
}

/// One filter parameter and the values it accepts (any of them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// The parameter.
    pub name: String,
    /// Its values, as written (`Patient/1`, `http://loinc.org|2345-7`, `booked`).
    pub values: Vec<String>,
}

/// Reads a subscription's filter criteria for `topic`: each string is
/// `[Type?]name=value[,value...][&name=value...]`.
///
/// # Errors
/// A sentence saying what is wrong: another resource type, a parameter the topic does not
/// take, a modifier, too many parameters or values.
pub fn parse_filters(topic: Topic, criteria: &[String]) -> Result<Vec<Filter>, String> {
    let mut filters = Vec::new();
    for c in criteria {
        let query = match c.split_once('?') {
            Some((rt, q)) => {
                if rt != topic.resource_type() {
                    return Err(format!(
                        "the topic {} filters {}, not {rt}",
                        topic.name(),
                        topic.resource_type()
                    ));
                }
                q
            }
            None => c.as_str(),
        };
        for part in query.split('&').filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err(format!("the filter {part:?} has no value"));
            };
            if name.contains(':') {
                return Err("filter modifiers are not supported".into());
            }
            if !topic.filter_names().contains(&name) {
                return Err(format!(
                    "the topic {} is filtered by {}, not by {name}",
                    topic.name(),
                    topic.filter_names().join(", ")
                ));
            }
            let values: Vec<String> = value
                .split(',')
                .map(|v| percent_decode(v.trim()))
                .filter(|v| !v.is_empty())
                .collect();
            if values.is_empty() || values.len() > MAX_VALUES {
                return Err(format!(
                    "the filter {name} needs between 1 and {MAX_VALUES} values"
                ));
            }
            filters.push(Filter {
                name: name.to_string(),
                values,
            });
        }
    }
    if filters.len() > MAX_FILTERS {
        return Err(format!("at most {MAX_FILTERS} filters"));
    }
    Ok(filters)
}

/// `%xx` escapes decoded; anything else kept as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let here = bytes.get(i).copied().unwrap_or(0);
        if here == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(here);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `resource` passes every filter of `topic`.
pub fn matches(topic: Topic, filters: &[Filter], resource: &Value) -> bool {
    filters.iter().all(|f| {
        f.values
            .iter()
            .any(|v| value_matches(topic, &f.name, v, resource))
    })
}

/// Whether a reference (`Patient/1`, `https://node/fhir/Patient/1`) names `rt`/`wanted`
/// (`Patient/1` or a bare `1`).
fn reference_is(reference: &str, rt: &str, wanted: &str) -> bool {
    let wanted = wanted
        .strip_prefix(rt)
        .and_then(|w| w.strip_prefix('/'))
        .unwrap_or(wanted);
    let tail = format!("{rt}/{wanted}");
    reference == tail || reference.ends_with(&format!("/{tail}"))
}

fn participants(resource: &Value) -> impl Iterator<Item = &str> {
    resource["participant"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["actor"]["reference"].as_str())
}

/// Whether a CodeableConcept (or a list of them) holds `token` (`system|code`, `|code`, or
/// `code` in any system).
fn has_token(concepts: &Value, token: &str) -> bool {
    let (system, code) = match token.split_once('|') {
        Some((s, c)) => (Some(s), c),
        None => (None, token),
    };
    let list: Vec<&Value> = match concepts {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    list.iter()
        .flat_map(|c| c["coding"].as_array().into_iter().flatten())
        .any(|coding| {
            coding["code"].as_str() == Some(code)
                && match system {
                    None => true,
                    Some("") => coding.get("system").is_none(),
                    Some(s) => coding["system"].as_str() == Some(s),
                }
        })
}

fn value_matches(topic: Topic, name: &str, value: &str, resource: &Value) -> bool {
    match (topic, name) {
        (_, "status") => resource["status"].as_str() == Some(value),
        (Topic::Appointment, "patient") => {
            participants(resource).any(|r| reference_is(r, "Patient", value))
        }
        (Topic::Appointment, "practitioner") => {
            participants(resource).any(|r| reference_is(r, "Practitioner", value))
        }
        (Topic::Appointment, "location") => {
            participants(resource).any(|r| reference_is(r, "Location", value))
        }
        (Topic::Result, "patient") => resource["subject"]["reference"]
            .as_str()
            .is_some_and(|r| reference_is(r, "Patient", value)),
        (Topic::Result, "code") => has_token(&resource["code"], value),
        (Topic::Result, "category") => has_token(&resource["category"], value),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonicals_round_trip() {
        for t in Topic::ALL {
            assert_eq!(Topic::from_canonical(&t.canonical()), Some(t));
            assert_eq!(
                Topic::from_canonical(&format!("{}|1.0", t.canonical())),
                Some(t)
            );
        }
        assert_eq!(
            Topic::from_canonical("http://hl7.org/SubscriptionTopic/admission"),
            None
        );
    }

    #[test]
    fn filters_are_read_and_refused() {
        let f = parse_filters(
            Topic::Appointment,
            &["Appointment?patient=Patient/1&status=booked,cancelled".into()],
        )
        .unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[1].values, ["booked", "cancelled"]);
        assert!(parse_filters(Topic::Appointment, &["Observation?patient=1".into()]).is_err());
        assert!(parse_filters(Topic::Result, &["practitioner=Practitioner/1".into()]).is_err());
        assert!(parse_filters(Topic::Result, &["code:text=x".into()]).is_err());
        assert!(parse_filters(Topic::Result, &["code=".into()]).is_err());
        let many = vec!["status=final".to_string(); 11];
        assert!(parse_filters(Topic::Result, &many).is_err());
        let coded =
            parse_filters(Topic::Result, &["code=http://loinc.org%7C2345-7".into()]).unwrap();
        assert_eq!(coded[0].values, ["http://loinc.org|2345-7"]);
    }

    #[test]
    fn appointments_match_their_participants_and_status() {
        let a = json!({"resourceType": "Appointment", "status": "booked", "participant": [
            {"actor": {"reference": "Patient/p1"}},
            {"actor": {"reference": "https://node.example/fhir/Practitioner/d1"}}]});
        let f = |q: &str| parse_filters(Topic::Appointment, &[q.to_string()]).unwrap();
        assert!(matches(Topic::Appointment, &f("patient=Patient/p1"), &a));
        assert!(matches(
            Topic::Appointment,
            &f("patient=p1&practitioner=d1"),
            &a
        ));
        assert!(matches(
            Topic::Appointment,
            &f("status=cancelled,booked"),
            &a
        ));
        assert!(!matches(Topic::Appointment, &f("patient=Patient/p2"), &a));
        assert!(!matches(
            Topic::Appointment,
            &f("patient=p1&status=cancelled"),
            &a
        ));
        assert!(matches(Topic::Appointment, &[], &a));
    }

    #[test]
    fn results_are_final_reports_matched_by_subject_and_code() {
        let r = json!({"resourceType": "DiagnosticReport", "status": "final",
            "subject": {"reference": "Patient/p1"},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8"}]}});
        assert!(Topic::Result.triggered_by(&r));
        assert!(!Topic::Result.triggered_by(&json!({"status": "preliminary"})));
        let f = |q: &str| parse_filters(Topic::Result, &[q.to_string()]).unwrap();
        assert!(matches(
            Topic::Result,
            &f("patient=Patient/p1&code=http://loinc.org|24323-8"),
            &r
        ));
        assert!(matches(Topic::Result, &f("code=24323-8&category=LAB"), &r));
        assert!(!matches(
            Topic::Result,
            &f("code=http://snomed.info/sct|24323-8"),
            &r
        ));
        assert!(!matches(Topic::Result, &f("patient=p2"), &r));
    }
}
