//! Security labels: the confidentiality level (HL7 v3 Confidentiality N, R, V) and the
//! sensitivity labels (HL7 v3 ActCode: HIV, PSY, ETH, SDV, SEX, STD...) in `meta.security`,
//! and the rules that derive labels from content when a resource is written.

use serde::Deserialize;
use serde_json::{Value, json};

/// The HL7 v3 Confidentiality code system.
pub const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
/// The HL7 v3 ActCode code system (sensitivity labels).
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// Sensitivity codes the PDP restricts: data labelled with one is hidden unless a consent
/// names the label.
pub const SENSITIVITY: &[&str] = &[
    "HIV", "PSY", "ETH", "SDV", "SEX", "STD", "GDIS", "SICKLE", "MH", "SUD", "BH",
];

/// Restricted labels as the PDP names them: `R`, `V`, then the sensitivity codes.
pub fn restricted_labels() -> Vec<String> {
    let mut out = vec!["R".to_string(), "V".to_string()];
    out.extend(SENSITIVITY.iter().map(|s| (*s).to_string()));
    out
}

/// The restricted labels a resource carries (`R`, `V`, sensitivity codes), from
/// `meta.security`. `N`, `L`, `M`, `U` restrict nothing.
pub fn labels_of(resource: &Value) -> Vec<String> {
    let mut out: Vec<String> = resource
        .pointer("/meta/security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let system = c.get("system").and_then(Value::as_str)?;
            let code = c.get("code").and_then(Value::as_str)?;
            let restricted = (system == CONFIDENTIALITY && matches!(code, "R" | "V"))
                || (system == ACT_CODE && SENSITIVITY.contains(&code));
            restricted.then(|| code.to_string())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The `meta.security` coding of a label.
pub fn coding_of(label: &str) -> Value {
    if matches!(label, "R" | "V" | "N" | "L" | "M" | "U") {
        json!({"system": CONFIDENTIALITY, "code": label})
    } else {
        json!({"system": ACT_CODE, "code": label})
    }
}

/// Adds labels to a resource's `meta.security`, keeping those it has.
pub fn add_labels(resource: &mut Value, labels: &[String]) {
    if labels.is_empty() {
        return;
    }
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    let meta = obj.entry("meta").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let security = meta.entry("security").or_insert_with(|| json!([]));
    let Some(list) = security.as_array_mut() else {
        return;
    };
    for l in labels {
        let coding = coding_of(l);
        if !list
            .iter()
            .any(|c| c.get("system") == coding.get("system") && c.get("code") == coding.get("code"))
        {
            list.push(coding);
        }
    }
}

/// A rule that labels content: resources of `resource_type` with a `code` whose system is
/// `system` and whose code starts with one of `prefixes` get `label`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LabelRule {
    /// Resource type (`Condition`).
    pub resource_type: String,
    /// Code system of `Resource.code`.
    pub system: String,
    /// Code prefixes (`F` for the ICD-10 mental and behavioural chapter).
    pub prefixes: Vec<String>,
    /// The label to add (`PSY`).
    pub label: String,
}

/// The rules used when none are configured: mental-health diagnoses (ICD-10 chapter F,
/// ICD-10-CM F codes) get PSY, HIV diagnoses (ICD-10 B20-B24, Z21) get HIV.
pub fn default_label_rules() -> Vec<LabelRule> {
    let rule = |system: &str, prefixes: &[&str], label: &str| LabelRule {
        resource_type: "Condition".into(),
        system: system.into(),
        prefixes: prefixes.iter().map(|p| (*p).to_string()).collect(),
        label: label.into(),
    };
    vec![
        rule("http://hl7.org/fhir/sid/icd-10", &["F"], "PSY"),
        rule("http://hl7.org/fhir/sid/icd-10-cm", &["F"], "PSY"),
        rule(
            "http://hl7.org/fhir/sid/icd-10",
            &["B20", "B21", "B22", "B23", "B24", "Z21"],
            "HIV",
        ),
        rule("http://hl7.org/fhir/sid/icd-10-cm", &["B20", "Z21"], "HIV"),
    ]
}

/// The labels `rules` derive for a resource.
pub fn derive_labels(rules: &[LabelRule], resource: &Value) -> Vec<String> {
    let rt = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let codings: Vec<(&str, &str)> = resource
        .pointer("/code/coding")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c.get("system").and_then(Value::as_str)?,
                c.get("code").and_then(Value::as_str)?,
            ))
        })
        .collect();
    let mut out: Vec<String> = rules
        .iter()
        .filter(|r| r.resource_type == rt)
        .filter(|r| {
            codings.iter().any(|(s, c)| {
                *s == r.system && r.prefixes.iter().any(|p| c.starts_with(p.as_str()))
            })
        })
        .map(|r| r.label.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_read_added_and_derived() {
        let mut c = json!({"resourceType": "Condition",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "F32.1"}]},
            "meta": {"security": [{"system": CONFIDENTIALITY, "code": "N"}]}});
        assert!(labels_of(&c).is_empty(), "N restricts nothing");
        let derived = derive_labels(&default_label_rules(), &c);
        assert_eq!(derived, vec!["PSY"]);
        add_labels(&mut c, &derived);
        add_labels(&mut c, &["R".into(), "PSY".into()]);
        assert_eq!(labels_of(&c), vec!["PSY", "R"]);
        assert_eq!(c["meta"]["security"].as_array().unwrap().len(), 3);
        let flu = json!({"resourceType": "Condition",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "J10"}]}});
        assert!(derive_labels(&default_label_rules(), &flu).is_empty());
    }
}
