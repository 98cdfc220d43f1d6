//! Patient consent: FHIR R4 Consent resources of scope `patient-privacy`, read into rules
//! the PDP evaluates.
//!
//! A provision matches an access when every constraint it states matches: actor (the
//! practitioner, one of their organizations or care teams), class (resource type),
//! security label, purpose of use, and period. The most specific matching provision decides
//! (nested provisions are exceptions to their parent). Across consents, a deny wins.
//!
//! A permit provision with the extension `urn:medmesh:share-future` (valueBoolean true) is
//! an automatic sharing rule instead: it does not open existing data, but every *later*
//! write that matches it (class, `code` as the resource's category, and optionally the
//! author named in `urn:medmesh:data-author`) is tagged as shared with the provision's actors.

use serde_json::Value;

use crate::labels::{ACT_CODE, CONFIDENTIALITY};

/// The extension marking a provision as an automatic sharing rule.
pub const SHARE_FUTURE: &str = "urn:medmesh:share-future";
/// The extension naming whose writes a sharing rule shares.
pub const DATA_AUTHOR: &str = "urn:medmesh:data-author";
/// The `meta.tag` system recording that a resource was shared with a principal.
pub const SHARED_WITH: &str = "urn:medmesh:shared-with";

/// One provision, with its nested exceptions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Provision {
    /// Permit (true) or deny.
    pub permit: bool,
    /// Actor references (`Practitioner/x`, `Organization/o`, `CareTeam/c`); empty: anyone.
    pub actors: Vec<String>,
    /// Resource types; empty: any.
    pub classes: Vec<String>,
    /// Category codes (sharing rules only); empty: any.
    pub codes: Vec<String>,
    /// Security labels (`R`, `V`, `PSY`...); empty: any.
    pub labels: Vec<String>,
    /// Purposes of use (`TREAT`, `ETREAT`, `HRESCH`, `HPAYMT`); empty: any.
    pub purposes: Vec<String>,
    /// Validity, microseconds; `None` ends are open.
    pub period: (Option<i64>, Option<i64>),
    /// An automatic sharing rule (see the module docs).
    pub share_future: bool,
    /// Sharing rules: whose writes are shared; empty: anyone's.
    pub authors: Vec<String>,
    /// Exceptions.
    pub nested: Vec<Provision>,
}

/// A patient's active privacy consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRule {
    /// `Consent/id`.
    pub reference: String,
    /// The patient id.
    pub patient: String,
    /// The root provision.
    pub root: Provision,
}

/// What an access looks like to a provision.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    /// The actor's principals: `Practitioner/x` first, then organizations and care teams.
    pub principals: &'a [String],
    /// The practitioner reference, if the actor is one.
    pub practitioner: Option<&'a str>,
    /// Resource type.
    pub resource_type: &'a str,
    /// One restricted label being judged, or `None` for unlabelled data.
    pub label: Option<&'a str>,
    /// Purpose of use.
    pub purpose: &'a str,
    /// Now, microseconds.
    pub now: i64,
}

/// The outcome of the provision that decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruling {
    /// Permit or deny.
    pub permit: bool,
    /// The deciding provision named the practitioner themself (needed for `V`).
    pub names_practitioner: bool,
    /// The deciding provision named the label (needed for sensitivity labels).
    pub names_label: bool,
}

fn codes_of(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| {
            // A Coding, or a CodeableConcept's codings.
            let codings: Vec<&Value> = match c.get("coding").and_then(Value::as_array) {
                Some(list) => list.iter().collect(),
                None => vec![c],
            };
            codings
                .into_iter()
                .filter_map(|x| x.get("code").and_then(Value::as_str).map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The first instant of a FHIR date or dateTime, microseconds.
fn start_of(v: Option<&Value>) -> Option<i64> {
    medmesh_fhir::datetime::parse_range(v?.as_str()?).map(|r| r.lo)
}

/// The instant just after a FHIR date or dateTime (its whole day, for a date).
fn end_of(v: Option<&Value>) -> Option<i64> {
    medmesh_fhir::datetime::parse_range(v?.as_str()?).map(|r| r.hi)
}

fn extension<'a>(v: &'a Value, url: &str) -> impl Iterator<Item = &'a Value> {
    v.get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |e| e.get("url").and_then(Value::as_str) == Some(url))
}

fn provision(v: &Value) -> Provision {
    let actors = v
        .get("actor")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| {
            a.pointer("/reference/reference")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    let period = v.get("period");
    Provision {
        permit: v.get("type").and_then(Value::as_str) == Some("permit"),
        actors,
        classes: codes_of(v.get("class")),
        codes: codes_of(v.get("code")),
        labels: codes_of(v.get("securityLabel")),
        purposes: codes_of(v.get("purpose")),
        period: (
            start_of(period.and_then(|p| p.get("start"))),
            end_of(period.and_then(|p| p.get("end"))),
        ),
        share_future: extension(v, SHARE_FUTURE)
            .any(|e| e.get("valueBoolean").and_then(Value::as_bool) == Some(true)),
        authors: extension(v, DATA_AUTHOR)
            .filter_map(|e| {
                e.pointer("/valueReference/reference")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect(),
        nested: v
            .get("provision")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(provision)
            .collect(),
    }
}

/// Reads a Consent resource; `None` unless it is an active patient-privacy consent with a
/// patient and a provision. (A root provision without a type is a deny: nothing is opened
/// by a consent that does not say so.)
pub fn parse_consent(resource: &Value) -> Option<ConsentRule> {
    if resource.get("resourceType").and_then(Value::as_str) != Some("Consent")
        || resource.get("status").and_then(Value::as_str) != Some("active")
    {
        return None;
    }
    let privacy = codes_of(Some(&Value::Array(vec![resource.get("scope")?.clone()])))
        .iter()
        .any(|c| c == "patient-privacy");
    if !privacy {
        return None;
    }
    let patient = resource
        .pointer("/patient/reference")
        .and_then(Value::as_str)?
        .strip_prefix("Patient/")?
        .to_string();
    let id = resource
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some(ConsentRule {
        reference: format!("Consent/{id}"),
        patient,
        root: provision(resource.get("provision")?),
    })
}

impl Provision {
    /// Every start and end of this provision's period and its nested ones'.
    pub fn period_bounds(&self, out: &mut Vec<i64>) {
        out.extend(self.period.0);
        out.extend(self.period.1);
        for n in &self.nested {
            n.period_bounds(out);
        }
    }

    fn in_period(&self, now: i64) -> bool {
        self.period.0.is_none_or(|s| now >= s) && self.period.1.is_none_or(|e| now < e)
    }

    /// Whether the provision's own constraints match (nested ones aside).
    fn matches(&self, a: &Access<'_>) -> bool {
        self.in_period(a.now)
            && (self.actors.is_empty() || self.actors.iter().any(|x| a.principals.contains(x)))
            && (self.classes.is_empty() || self.classes.iter().any(|c| c == a.resource_type))
            && (self.purposes.is_empty() || self.purposes.iter().any(|p| p == a.purpose))
            && (self.labels.is_empty()
                || a.label.is_some_and(|l| self.labels.iter().any(|x| x == l)))
    }

    /// The ruling of the most specific matching provision in this subtree.
    pub fn evaluate(&self, a: &Access<'_>) -> Option<Ruling> {
        if self.share_future || !self.matches(a) {
            return None;
        }
        for n in &self.nested {
            if let Some(r) = n.evaluate(a) {
                return Some(r);
            }
        }
        Some(Ruling {
            permit: self.permit,
            names_practitioner: a
                .practitioner
                .is_some_and(|p| self.actors.iter().any(|x| x == p)),
            names_label: a.label.is_some_and(|l| self.labels.iter().any(|x| x == l)),
        })
    }

    /// The actors this provision (or an exception under it) permits, for the access map.
    pub fn permitted_actors(&self, out: &mut Vec<String>) {
        if self.permit && !self.share_future {
            out.extend(self.actors.iter().cloned());
        }
        for n in &self.nested {
            n.permitted_actors(out);
        }
    }

    /// The sharing rules in this tree.
    pub fn sharing_rules<'a>(&'a self, out: &mut Vec<&'a Provision>) {
        if self.share_future && self.permit {
            out.push(self);
        }
        for n in &self.nested {
            n.sharing_rules(out);
        }
    }
}

/// The principals a newly written resource is shared with, by the patient's sharing rules:
/// for each rule that matches its type, category and author (the writer's practitioner
/// reference), the rule's actors.
pub fn shared_with<'a>(
    consents: impl IntoIterator<Item = &'a ConsentRule>,
    resource_type: &str,
    categories: &[String],
    author: Option<&str>,
    now: i64,
) -> Vec<String> {
    let mut out = Vec::new();
    for c in consents {
        let mut rules = Vec::new();
        c.root.sharing_rules(&mut rules);
        for r in rules {
            let fits = r.in_period(now)
                && (r.classes.is_empty() || r.classes.iter().any(|x| x == resource_type))
                && (r.codes.is_empty() || r.codes.iter().any(|x| categories.contains(x)))
                && (r.authors.is_empty()
                    || author.is_some_and(|a| r.authors.iter().any(|x| x == a)));
            if fits {
                out.extend(r.actors.iter().cloned());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Whether a coding is a restricted label's (for readers that see raw codings).
pub fn is_label_system(system: &str) -> bool {
    system == CONFIDENTIALITY || system == ACT_CODE
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn consent(provision: Value) -> ConsentRule {
        parse_consent(&json!({"resourceType": "Consent", "id": "c1", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "patient": {"reference": "Patient/p"}, "provision": provision}))
        .unwrap()
    }

    fn access<'a>(principals: &'a [String], rt: &'a str, label: Option<&'a str>) -> Access<'a> {
        Access {
            principals,
            practitioner: principals.first().map(String::as_str),
            resource_type: rt,
            label,
            purpose: "TREAT",
            now: 1_000,
        }
    }

    #[test]
    fn nested_exceptions_override_their_parent() {
        // Permit Dr X everything, except PSY-labelled data.
        let c = consent(json!({"type": "permit",
            "actor": [{"reference": {"reference": "Practitioner/x"}}],
            "provision": [{"type": "deny", "securityLabel": [{"system": ACT_CODE, "code": "PSY"}]}]}));
        let x = vec!["Practitioner/x".to_string()];
        let r = c.root.evaluate(&access(&x, "Observation", None)).unwrap();
        assert!(r.permit && r.names_practitioner);
        assert!(
            !c.root
                .evaluate(&access(&x, "Condition", Some("PSY")))
                .unwrap()
                .permit
        );
        let y = vec!["Practitioner/y".to_string()];
        assert_eq!(c.root.evaluate(&access(&y, "Observation", None)), None);
    }

    #[test]
    fn inactive_or_foreign_consents_are_ignored() {
        let mut v = json!({"resourceType": "Consent", "status": "inactive",
            "scope": {"coding": [{"code": "patient-privacy"}]},
            "patient": {"reference": "Patient/p"}, "provision": {"type": "permit"}});
        assert!(parse_consent(&v).is_none());
        v["status"] = json!("active");
        assert!(parse_consent(&v).is_some());
        v["scope"] = json!({"coding": [{"code": "research"}]});
        assert!(parse_consent(&v).is_none());
    }

    #[test]
    fn sharing_rules_pick_type_category_and_author() {
        let c = consent(json!({"type": "deny", "provision": [
            {"type": "permit", "actor": [{"reference": {"reference": "Practitioner/x"}}],
             "class": [{"code": "Observation"}], "code": [{"coding": [{"code": "laboratory"}]}],
             "extension": [{"url": SHARE_FUTURE, "valueBoolean": true}]},
            {"type": "permit", "actor": [{"reference": {"reference": "Practitioner/gp"}}],
             "extension": [{"url": SHARE_FUTURE, "valueBoolean": true},
                           {"url": DATA_AUTHOR, "valueReference": {"reference": "Practitioner/a"}}]}]}));
        let lab = vec!["laboratory".to_string()];
        assert_eq!(
            shared_with([&c], "Observation", &lab, None, 0),
            vec!["Practitioner/x"]
        );
        assert_eq!(
            shared_with(
                std::slice::from_ref(&c),
                "Observation",
                &lab,
                Some("Practitioner/a"),
                0
            ),
            vec!["Practitioner/gp", "Practitioner/x"]
        );
        assert!(shared_with([&c], "Condition", &[], None, 0).is_empty());
    }
}
