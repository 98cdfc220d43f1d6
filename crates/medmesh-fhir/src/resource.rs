//! Resource identity and shaping: ids, metadata, JSON Patch, `_summary` and `_elements`.

use std::fmt;

use serde_json::{Map, Value, json};

use crate::definitions::Definitions;
use crate::outcome::{Issue, IssueType};
use crate::search::SummaryMode;

/// A validated resource type name (`Patient`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceType(String);

impl ResourceType {
    /// Checks `name` against the definitions.
    pub fn parse(defs: &Definitions, name: &str) -> Option<Self> {
        defs.is_resource_type(name).then(|| Self(name.to_string()))
    }
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated logical id (1-64 of `A-Za-z0-9-.`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId(String);

impl ResourceId {
    /// Checks the id's format.
    pub fn parse(id: &str) -> Option<Self> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        ok.then(|| Self(id.to_string()))
    }
    /// Wraps an id the server generated.
    pub fn generated(id: String) -> Self {
        Self(id)
    }
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a request body as a JSON object. serde_json's recursion limit (128) rejects
/// pathologically deep documents before they can exhaust the stack.
///
/// # Errors
/// Malformed JSON or a body that is not an object.
pub fn parse_json_object(body: &[u8]) -> Result<Value, Issue> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        let reason = if e.to_string().contains("recursion limit") {
            "the JSON is nested too deeply".to_string()
        } else {
            format!("malformed JSON at line {} column {}", e.line(), e.column())
        };
        Issue::error(IssueType::Structure, reason)
    })?;
    if !v.is_object() {
        return Err(Issue::error(
            IssueType::Structure,
            "the body must be a JSON object",
        ));
    }
    Ok(v)
}

/// An upper bound on the JSON values in `body`, counted without parsing: every object,
/// array and comma-separated member outside strings. Parsing costs memory per value, not per
/// byte (a 31 MB body of tiny objects took 2.3 GB as a `Value`), so a body is judged by
/// this count before it is parsed.
pub fn json_value_count(body: &[u8]) -> usize {
    let mut count = 1;
    let mut in_string = false;
    let mut escaped = false;
    for &b in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' | b',' => count += 1,
            _ => {}
        }
    }
    count
}

/// The JSON values in `body` (see [`json_value_count`]), refusing a body of more than
/// `max_values` before anything parses it.
///
/// # Errors
/// A `too-costly` issue past `max_values`.
pub fn json_values_within(body: &[u8], max_values: usize) -> Result<usize, Issue> {
    let values = json_value_count(body);
    if values > max_values {
        return Err(Issue::error(
            IssueType::TooCostly,
            format!("the body holds more than {max_values} JSON values (max_json_values)"),
        ));
    }
    Ok(values)
}

/// Sets `id`, `meta.versionId` and `meta.lastUpdated`, keeping other meta (tags, profiles,
/// security labels).
pub fn stamp(resource: &mut Value, id: &str, version: i64, last_updated: &str) {
    if let Some(obj) = resource.as_object_mut() {
        obj.insert("id".into(), Value::String(id.to_string()));
        let meta = obj.entry("meta").or_insert_with(|| json!({}));
        if !meta.is_object() {
            *meta = json!({});
        }
        if let Some(m) = meta.as_object_mut() {
            m.insert("versionId".into(), Value::String(version.to_string()));
            m.insert(
                "lastUpdated".into(),
                Value::String(last_updated.to_string()),
            );
        }
        // Keep `resourceType` first, as FHIR clients expect to see it there.
        if let Some(rt) = obj.shift_remove("resourceType") {
            let mut ordered = Map::with_capacity(obj.len() + 1);
            ordered.insert("resourceType".into(), rt);
            ordered.extend(std::mem::take(obj));
            *obj = ordered;
        }
    }
}

/// Applies an RFC 6902 JSON Patch.
///
/// # Errors
/// A malformed patch, or one whose operations do not apply.
pub fn apply_json_patch(resource: &Value, patch: &Value) -> Result<Value, Issue> {
    let patch: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|_| {
        Issue::error(
            IssueType::Structure,
            "the body is not a JSON Patch document",
        )
    })?;
    let mut out = resource.clone();
    json_patch::patch(&mut out, &patch)
        .map_err(|e| Issue::error(IssueType::Value, format!("the patch does not apply: {e}")))?;
    Ok(out)
}

fn subsetted(v: &mut Value) {
    let tag = json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"});
    if let Some(meta) = v.get_mut("meta").and_then(Value::as_object_mut) {
        let tags = meta.entry("tag").or_insert_with(|| json!([]));
        if let Some(a) = tags.as_array_mut() {
            a.push(tag);
        }
    }
}

/// The definition of a top-level element of `rt` named as it appears in JSON (a choice
/// element `valueQuantity` is `value[x]`).
fn top_level_def<'a>(
    defs: &'a Definitions,
    rt: &str,
    name: &str,
) -> Option<&'a crate::definitions::ElementDef> {
    let td = defs.type_def(rt)?;
    td.elements.get(&format!("{rt}.{name}")).or_else(|| {
        td.children.get(rt).into_iter().flatten().find_map(|c| {
            c.strip_suffix("[x]")
                .filter(|b| name.starts_with(b))
                .and_then(|_| td.elements.get(&format!("{rt}.{c}")))
        })
    })
}

/// [`shape`] of a resource already owned: when nothing is taken out (no `_elements`, no
/// `_summary` that drops anything), the resource itself, not a copy of it.
pub fn shaped(
    defs: &Definitions,
    resource: Value,
    summary: Option<SummaryMode>,
    elements: &[String],
) -> Value {
    let keeps_everything = elements.is_empty()
        && matches!(
            summary,
            None | Some(SummaryMode::False) | Some(SummaryMode::Count)
        );
    if keeps_everything || !resource.is_object() {
        return resource;
    }
    shape(defs, &resource, summary, elements)
}

/// Shapes a resource for `_summary` and `_elements`.
pub fn shape(
    defs: &Definitions,
    resource: &Value,
    summary: Option<SummaryMode>,
    elements: &[String],
) -> Value {
    let Some(obj) = resource.as_object() else {
        return resource.clone();
    };
    let rt = obj
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let always = ["resourceType", "id", "meta"];
    let mut out = match summary {
        Some(SummaryMode::True) => {
            let td = defs.type_def(rt);
            obj.iter()
                .filter(|(k, _)| {
                    always.contains(&k.as_str())
                        || td.is_some_and(|td| {
                            let base = k.trim_start_matches('_');
                            td.elements
                                .get(&format!("{rt}.{base}"))
                                .is_some_and(|e| e.is_summary)
                                || td.children.get(rt).into_iter().flatten().any(|c| {
                                    c.strip_suffix("[x]").is_some_and(|b| base.starts_with(b))
                                        && td
                                            .elements
                                            .get(&format!("{rt}.{c}"))
                                            .is_some_and(|e| e.is_summary)
                                })
                        })
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Map<_, _>>()
        }
        Some(SummaryMode::Text) => obj
            .iter()
            .filter(|(k, _)| always.contains(&k.as_str()) || k.as_str() == "text")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Some(SummaryMode::Data) => obj
            .iter()
            .filter(|(k, _)| k.as_str() != "text")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        _ if !elements.is_empty() => obj
            .iter()
            .filter(|(k, _)| {
                always.contains(&k.as_str())
                    // Mandatory elements stay (FHIR's rule for `_elements`): without them an
                    // Observation has no `status` or `code` and is no valid R4 resource.
                    || top_level_def(defs, rt, k.trim_start_matches('_')).is_some_and(|e| e.min > 0)
                    || elements.iter().any(|e| {
                        e == k.trim_start_matches('_')
                            || k.strip_prefix(e.as_str())
                                .is_some_and(|s| s.starts_with(|c: char| c.is_ascii_uppercase()))
                    })
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        _ => return resource.clone(),
    };
    let mut v = Value::Object(std::mem::take(&mut out));
    if !matches!(summary, Some(SummaryMode::False)) {
        subsetted(&mut v);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shaped_is_shape_without_the_copy() {
        let defs = crate::definitions().unwrap();
        let obs = serde_json::json!({"resourceType": "Observation", "id": "o", "status": "final",
            "code": {"text": "x"}, "text": {"status": "generated", "div": "<div>x</div>"}});
        for summary in [
            None,
            Some(SummaryMode::False),
            Some(SummaryMode::True),
            Some(SummaryMode::Text),
            Some(SummaryMode::Data),
        ] {
            for elements in [vec![], vec!["status".to_string()]] {
                assert_eq!(
                    shaped(defs, obs.clone(), summary, &elements),
                    shape(defs, &obs, summary, &elements),
                    "{summary:?} {elements:?}"
                );
            }
        }
    }

    #[test]
    fn elements_keep_what_is_mandatory() {
        let defs = crate::definitions().unwrap();
        let obs = serde_json::json!({"resourceType": "Observation", "id": "o", "status": "final",
            "code": {"text": "x"}, "subject": {"reference": "Patient/p"}, "valueString": "v",
            "note": [{"text": "n"}]});
        let shaped = shape(defs, &obs, None, &["subject".to_string()]);
        for kept in ["status", "code", "subject", "id"] {
            assert!(shaped.get(kept).is_some(), "{kept}: {shaped}");
        }
        assert!(shaped.get("valueString").is_none() && shaped.get("note").is_none());
    }

    #[test]
    fn values_are_counted_outside_strings() {
        assert_eq!(json_value_count(br#"{"a":1}"#), 2);
        assert_eq!(json_value_count(br#"{"a":"x,{[","b":[1,2]}"#), 5);
        assert_eq!(json_value_count(br#"{"a":"q\",{"}"#), 2);
        let many = format!(
            r#"{{"name":[{}]}}"#,
            vec![r#"{"given":["a"]}"#; 1000].join(",")
        );
        assert!(json_value_count(many.as_bytes()) >= 3000);
        assert!(json_values_within(many.as_bytes(), 2000).is_err());
        assert!(json_values_within(many.as_bytes(), 4000).is_ok());
    }

    #[test]
    fn ids_and_patch() {
        assert!(ResourceId::parse("abc-1.2").is_some());
        assert!(ResourceId::parse("a/b").is_none());
        assert!(ResourceId::parse(&"x".repeat(65)).is_none());
        let p = apply_json_patch(
            &json!({"resourceType": "Patient", "active": true}),
            &json!([{"op": "replace", "path": "/active", "value": false}]),
        )
        .unwrap();
        assert_eq!(p["active"], false);
        assert!(apply_json_patch(&p, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }

    #[test]
    fn summary_and_elements() {
        let d = crate::definitions().unwrap();
        let p = json!({"resourceType": "Patient", "id": "1", "meta": {}, "text": {"status": "generated", "div": "<div/>"}, "name": [{"family": "X"}], "photo": [{"title": "x"}], "deceasedBoolean": false});
        let s = shape(d, &p, Some(SummaryMode::True), &[]);
        assert!(
            s.get("name").is_some()
                && s.get("photo").is_none()
                && s.get("text").is_none()
                && s.get("deceasedBoolean").is_some()
        );
        let e = shape(d, &p, None, &["photo".to_string()]);
        assert!(e.get("photo").is_some() && e.get("name").is_none());
        assert_eq!(e["meta"]["tag"][0]["code"], "SUBSETTED");
    }
}
