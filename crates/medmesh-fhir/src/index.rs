//! Search-index extraction: a resource in, typed index rows out.
//!
//! For each search parameter the definitions give for the resource's type, the parameter's
//! FHIRPath expression is evaluated and each value found is turned into a row of the parameter's
//! type. The store persists these rows next to the resource, in the same transaction, and search
//! runs on them only, never on the stored body.

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::datetime::{self, MAX_MICROS, MIN_MICROS};
use crate::definitions::{Definitions, SearchParamDef, SearchParamType};
use crate::fhirpath::{self, Node};

/// One indexed value.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    /// A string, normalized (lower case, no accents) and as written.
    String {
        /// Normalized form, for default and `:contains` matching.
        norm: String,
        /// The original, for `:exact`.
        exact: String,
    },
    /// A code or identifier.
    Token {
        /// Code system or identifier system.
        system: Option<String>,
        /// Code or identifier value.
        code: Option<String>,
        /// Display or text, normalized, for `:text`.
        text: Option<String>,
    },
    /// A date range `[lo, hi)` in microseconds.
    Date {
        /// Inclusive start.
        lo: i64,
        /// Exclusive end.
        hi: i64,
    },
    /// A number, or a quantity with units; `lo == hi` for exact values.
    Quantity {
        /// Low end (inclusive).
        lo: f64,
        /// High end (inclusive).
        hi: f64,
        /// Unit system (for quantities).
        system: Option<String>,
        /// Unit code, or unit text when there is no code.
        code: Option<String>,
    },
    /// A reference to another resource, or a canonical URL.
    Reference {
        /// Target type for a local reference.
        target_type: Option<String>,
        /// Target id for a local reference.
        target_id: Option<String>,
        /// The URL, for absolute and canonical references.
        url: Option<String>,
        /// Logical identifier system, for `:identifier`.
        identifier_system: Option<String>,
        /// Logical identifier value, for `:identifier`.
        identifier_value: Option<String>,
    },
    /// A URI.
    Uri {
        /// The URI as written.
        uri: String,
    },
}

/// One index row: a parameter code, a group (for composites) and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexRow {
    /// The search parameter code; composite components are `code#n`.
    pub param: String,
    /// 0, or for composite components the 1-based ordinal of the element they came from.
    pub group: u32,
    /// The value.
    pub value: IndexValue,
}

/// Lower-cases and strips accents, so `Mejía` matches `mejia`.
pub fn normalize(s: &str) -> String {
    // ASCII has no combining marks and lower-cases byte for byte: most indexed text is ASCII.
    if s.is_ascii() {
        return s.to_ascii_lowercase();
    }
    s.nfd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect()
}

fn opt_str(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn push_string(out: &mut Vec<IndexValue>, s: &str) {
    if !s.trim().is_empty() {
        out.push(IndexValue::String {
            norm: normalize(s),
            exact: s.to_string(),
        });
    }
}

fn string_values(node: &Node<'_>, out: &mut Vec<IndexValue>) {
    let Some(v) = node.json() else { return };
    match v {
        Value::String(s) => push_string(out, s),
        Value::Object(map) => {
            // HumanName and Address: every textual part is searchable.
            for key in [
                "family",
                "text",
                "city",
                "district",
                "state",
                "postalCode",
                "country",
            ] {
                if let Some(s) = map.get(key).and_then(Value::as_str) {
                    push_string(out, s);
                }
            }
            for key in ["given", "prefix", "suffix", "line"] {
                for s in map.get(key).and_then(Value::as_array).into_iter().flatten() {
                    if let Some(s) = s.as_str() {
                        push_string(out, s);
                    }
                }
            }
        }
        _ => {}
    }
}

fn coding_token(c: &Value) -> IndexValue {
    IndexValue::Token {
        system: opt_str(c, "system"),
        code: opt_str(c, "code"),
        text: c.get("display").and_then(Value::as_str).map(normalize),
    }
}

fn token_values(node: &Node<'_>, out: &mut Vec<IndexValue>) {
    let Some(v) = node.json() else {
        if let Node::Bool(b) = node {
            out.push(IndexValue::Token {
                system: None,
                code: Some(b.to_string()),
                text: None,
            });
        }
        return;
    };
    match v {
        Value::String(s) => out.push(IndexValue::Token {
            system: None,
            code: Some(s.clone()),
            text: None,
        }),
        Value::Bool(b) => out.push(IndexValue::Token {
            system: None,
            code: Some(b.to_string()),
            text: None,
        }),
        Value::Object(map) => {
            if let Some(codings) = map.get("coding").and_then(Value::as_array) {
                // CodeableConcept
                out.extend(codings.iter().map(coding_token));
                if let Some(t) = map.get("text").and_then(Value::as_str) {
                    out.push(IndexValue::Token {
                        system: None,
                        code: None,
                        text: Some(normalize(t)),
                    });
                }
            } else if map.contains_key("code") {
                out.push(coding_token(v));
            } else if map.contains_key("value") && !map.contains_key("unit") {
                // Identifier or ContactPoint
                let text = map
                    .get("type")
                    .and_then(|t| t.get("text"))
                    .and_then(Value::as_str)
                    .map(normalize);
                // ContactPoint.system is a kind of contact (a closed code list), not a
                // namespace: index telecom values without a system.
                let is_contact_kind = map.get("system").and_then(Value::as_str).is_some_and(|s| {
                    matches!(
                        s,
                        "phone" | "fax" | "email" | "pager" | "url" | "sms" | "other"
                    )
                });
                let system = if is_contact_kind {
                    None
                } else {
                    opt_str(v, "system")
                };
                out.push(IndexValue::Token {
                    system,
                    code: opt_str(v, "value"),
                    text,
                });
            } else if let Some(t) = map.get("text").and_then(Value::as_str) {
                out.push(IndexValue::Token {
                    system: None,
                    code: None,
                    text: Some(normalize(t)),
                });
            }
        }
        _ => {}
    }
}

fn date_values(node: &Node<'_>, out: &mut Vec<IndexValue>) {
    let Some(v) = node.json() else { return };
    match v {
        Value::String(s) => {
            if let Some(r) = datetime::parse_range(s) {
                out.push(IndexValue::Date { lo: r.lo, hi: r.hi });
            }
        }
        Value::Object(map) => {
            if map.contains_key("start") || map.contains_key("end") {
                let lo = map
                    .get("start")
                    .and_then(Value::as_str)
                    .and_then(datetime::parse_range);
                let hi = map
                    .get("end")
                    .and_then(Value::as_str)
                    .and_then(datetime::parse_range);
                out.push(IndexValue::Date {
                    lo: lo.map_or(MIN_MICROS, |r| r.lo),
                    hi: hi.map_or(MAX_MICROS, |r| r.hi),
                });
            } else if let Some(events) = map.get("event").and_then(Value::as_array) {
                // Timing
                for e in events
                    .iter()
                    .filter_map(Value::as_str)
                    .filter_map(datetime::parse_range)
                {
                    out.push(IndexValue::Date { lo: e.lo, hi: e.hi });
                }
            }
        }
        _ => {}
    }
}

fn number(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn quantity_values(node: &Node<'_>, out: &mut Vec<IndexValue>) {
    let Some(v) = node.json() else { return };
    match v {
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.push(IndexValue::Quantity {
                    lo: x,
                    hi: x,
                    system: None,
                    code: None,
                });
            }
        }
        Value::Object(map) => {
            if let Some(x) = map.get("value").and_then(number) {
                let (system, code) = if let Some(cur) = map.get("currency").and_then(Value::as_str)
                {
                    (
                        Some("urn:iso:std:iso:4217".to_string()),
                        Some(cur.to_string()),
                    )
                } else {
                    (
                        opt_str(v, "system"),
                        opt_str(v, "code").or_else(|| opt_str(v, "unit")),
                    )
                };
                out.push(IndexValue::Quantity {
                    lo: x,
                    hi: x,
                    system,
                    code,
                });
            } else if map.contains_key("low") || map.contains_key("high") {
                // Range
                let low = map.get("low");
                let high = map.get("high");
                let q = low.or(high);
                out.push(IndexValue::Quantity {
                    lo: low
                        .and_then(|l| l.get("value"))
                        .and_then(number)
                        .unwrap_or(f64::MIN),
                    hi: high
                        .and_then(|h| h.get("value"))
                        .and_then(number)
                        .unwrap_or(f64::MAX),
                    system: q.and_then(|q| opt_str(q, "system")),
                    code: q.and_then(|q| opt_str(q, "code").or_else(|| opt_str(q, "unit"))),
                });
            }
        }
        _ => {}
    }
}

/// Splits a reference string into a local `(type, id)` when it has that shape.
pub fn split_reference(reference: &str) -> Option<(String, String)> {
    if reference.starts_with('#') || reference.starts_with("urn:") {
        return None;
    }
    let path = reference.split(['?', '#']).next().unwrap_or_default();
    let mut segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.len() >= 4 && segs[segs.len() - 2] == "_history" {
        segs.truncate(segs.len() - 2);
    }
    let id = *segs.last()?;
    let t = fhirpath::reference_type(path)?;
    Some((t.to_string(), id.to_string()))
}

fn reference_values(node: &Node<'_>, out: &mut Vec<IndexValue>) {
    let Some(v) = node.json() else { return };
    match v {
        Value::String(s) => {
            // canonical or uri used as a reference
            let canonical = s.split('|').next().unwrap_or(s);
            out.push(IndexValue::Reference {
                target_type: None,
                target_id: None,
                url: Some(canonical.to_string()),
                identifier_system: None,
                identifier_value: None,
            });
        }
        Value::Object(map) => {
            let reference = map.get("reference").and_then(Value::as_str);
            let local = reference.and_then(split_reference);
            let absolute = reference.filter(|r| r.contains("://")).map(str::to_string);
            let ident = map.get("identifier");
            if local.is_none() && absolute.is_none() && ident.is_none() {
                return;
            }
            out.push(IndexValue::Reference {
                target_type: local.as_ref().map(|l| l.0.clone()),
                target_id: local.map(|l| l.1),
                url: absolute,
                identifier_system: ident.and_then(|i| opt_str(i, "system")),
                identifier_value: ident.and_then(|i| opt_str(i, "value")),
            });
        }
        _ => {}
    }
}

fn uri_values(node: &Node<'_>, out: &mut Vec<IndexValue>) {
    if let Some(Value::String(s)) = node.json() {
        out.push(IndexValue::Uri { uri: s.clone() });
    }
}

/// Turns evaluated nodes into values of one parameter type.
pub fn values_of(kind: SearchParamType, nodes: &[Node<'_>]) -> Vec<IndexValue> {
    let mut out = Vec::new();
    for n in nodes {
        match kind {
            SearchParamType::String => string_values(n, &mut out),
            SearchParamType::Token => token_values(n, &mut out),
            SearchParamType::Date => date_values(n, &mut out),
            SearchParamType::Number | SearchParamType::Quantity => quantity_values(n, &mut out),
            SearchParamType::Reference => reference_values(n, &mut out),
            SearchParamType::Uri => uri_values(n, &mut out),
            SearchParamType::Composite | SearchParamType::Special => {}
        }
    }
    out
}

fn extract_param(def: &SearchParamDef, resource: &Value, out: &mut Vec<IndexRow>) {
    let Some(expr) = &def.expression else { return };
    let nodes = fhirpath::evaluate(expr, resource);
    if def.kind == SearchParamType::Composite {
        for (i, node) in nodes.iter().enumerate() {
            let Some(element) = node.json() else { continue };
            let parts: Vec<Vec<IndexValue>> = def
                .components
                .iter()
                .map(|comp| values_of(comp.kind, &fhirpath::evaluate(&comp.expression, element)))
                .collect();
            // A composite matches only elements that have every component, so an element
            // missing one is not indexed at all.
            if parts.iter().any(Vec::is_empty) {
                continue;
            }
            for (c, values) in parts.into_iter().enumerate() {
                for value in values {
                    out.push(IndexRow {
                        param: format!("{}#{c}", def.code),
                        group: i as u32 + 1,
                        value,
                    });
                }
            }
        }
        return;
    }
    let mut seen = Vec::new();
    for value in values_of(def.kind, &nodes) {
        if !seen.contains(&value) {
            seen.push(value.clone());
            out.push(IndexRow {
                param: def.code.clone(),
                group: 0,
                value,
            });
        }
    }
}

/// Extracts every index row for a resource.
pub fn extract(defs: &Definitions, resource: &Value) -> Vec<IndexRow> {
    let mut out = Vec::new();
    let Some(rt) = resource.get("resourceType").and_then(Value::as_str) else {
        return out;
    };
    // A union parameter's rows would repeat its members'; search reads the members'.
    for def in defs
        .search_params(rt)
        .into_iter()
        .flat_map(|m| m.values())
        .filter(|d| d.union_of.is_empty())
    {
        extract_param(def, resource, &mut out);
    }
    out
}

/// Extracts the index rows of only the named parameters (cheaper than [`extract`] when a
/// caller needs a few, such as the compartment links of a resource).
pub fn extract_params(defs: &Definitions, resource: &Value, codes: &[String]) -> Vec<IndexRow> {
    let mut out = Vec::new();
    let Some(rt) = resource.get("resourceType").and_then(Value::as_str) else {
        return out;
    };
    let Some(params) = defs.search_params(rt) else {
        return out;
    };
    for code in codes {
        if let Some(def) = params.get(code) {
            extract_param(def, resource, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normalization_lowers_case_and_drops_accents_on_either_path() {
        assert_eq!(normalize("McKenzie-O'Brien 42"), "mckenzie-o'brien 42");
        assert_eq!(normalize("Élodie Müller"), "elodie muller");
        assert_eq!(normalize("ΣΊΣΥΦΟΣ"), "σισυφοσ");
        assert_eq!(normalize(""), "");
    }

    fn rows_for(resource: &Value, param: &str) -> Vec<IndexValue> {
        let d = crate::definitions().unwrap();
        extract(d, resource)
            .into_iter()
            .filter(|r| r.param == param)
            .map(|r| r.value)
            .collect()
    }

    #[test]
    fn extracts_names_tokens_and_references() {
        let p = json!({"resourceType": "Patient", "id": "p1",
            "name": [{"family": "Mejía", "given": ["Gustavo", "Ángel"]}],
            "identifier": [{"system": "urn:s", "value": "42"}],
            "gender": "male", "birthDate": "1970-05",
            "generalPractitioner": [{"reference": "Practitioner/d1"}]});
        let fam = rows_for(&p, "family");
        assert_eq!(
            fam,
            vec![IndexValue::String {
                norm: "mejia".into(),
                exact: "Mejía".into()
            }]
        );
        assert_eq!(rows_for(&p, "name").len(), 3);
        assert!(
            matches!(&rows_for(&p, "identifier")[0], IndexValue::Token { system: Some(s), code: Some(c), .. } if s == "urn:s" && c == "42")
        );
        assert!(
            matches!(&rows_for(&p, "_id")[0], IndexValue::Token { code: Some(c), .. } if c == "p1")
        );
        assert!(
            matches!(&rows_for(&p, "general-practitioner")[0], IndexValue::Reference { target_type: Some(t), target_id: Some(i), .. } if t == "Practitioner" && i == "d1")
        );
        assert!(matches!(
            rows_for(&p, "birthdate")[0],
            IndexValue::Date { .. }
        ));
    }

    #[test]
    fn extracts_composites_per_element() {
        let o = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
            "valueQuantity": {"value": 180.5, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}});
        let d = crate::definitions().unwrap();
        let rows: Vec<_> = extract(d, &o)
            .into_iter()
            .filter(|r| r.param.starts_with("code-value-quantity"))
            .collect();
        assert_eq!(
            rows.len(),
            2,
            "only code-value-quantity: the other code-value-* lack their value"
        );
        assert!(rows.iter().all(|r| r.group == 1));
        assert!(
            matches!(rows_for(&o, "value-quantity")[0], IndexValue::Quantity { lo, .. } if lo == 180.5)
        );
    }
}
