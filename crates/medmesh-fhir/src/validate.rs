//! Structural validation of a resource against the R4 StructureDefinitions.
//!
//! Checks element names (including choice types such as `valueQuantity`), JSON shapes,
//! cardinality, primitive formats, required bindings on `code` elements, reference format and
//! target types, and contained resources. Each problem is reported with its FHIRPath location.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::definitions::{Definitions, ElementDef, TypeDef, TypeKind};
use crate::outcome::{Issue, IssueType};

fn re(cell: &'static OnceLock<Option<Regex>>, pattern: &str) -> Option<&'static Regex> {
    cell.get_or_init(|| Regex::new(pattern).ok()).as_ref()
}

macro_rules! pattern {
    ($name:ident, $re:expr) => {
        fn $name(s: &str) -> bool {
            static CELL: OnceLock<Option<Regex>> = OnceLock::new();
            re(&CELL, concat!("^(?:", $re, ")$")).is_some_and(|r| r.is_match(s))
        }
    };
}

pattern!(is_id, r"[A-Za-z0-9\-\.]{1,64}");
pattern!(
    is_date,
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?"
);
pattern!(
    is_date_time,
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
);
pattern!(
    is_instant,
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
);
pattern!(
    is_time,
    r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
);
pattern!(is_code, r"[^\s]+(\s[^\s]+)*");
pattern!(is_oid, r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+");
pattern!(
    is_uuid,
    r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
);
pattern!(is_base64, r"[A-Za-z0-9+/=\s]*");

/// Checks a resource; returns every problem found (empty when valid).
pub fn validate(defs: &Definitions, resource: &Value) -> Vec<Issue> {
    let mut v = Validator {
        defs,
        issues: Vec::new(),
    };
    v.resource(resource, "", 0);
    v.issues
}

struct Validator<'d> {
    defs: &'d Definitions,
    issues: Vec<Issue>,
}

const MAX_ISSUES: usize = 100;

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// The FHIR primitive a `System.*` type code stands for.
fn system_type(code: &str) -> &str {
    match code.strip_prefix("http://hl7.org/fhirpath/System.") {
        Some("String") => "string",
        Some("Boolean") => "boolean",
        Some("Integer") => "integer",
        Some("Decimal") => "decimal",
        Some("Date") => "date",
        Some("DateTime") => "dateTime",
        Some("Time") => "time",
        Some(_) => "string",
        None => code,
    }
}

impl Validator<'_> {
    fn issue(&mut self, code: IssueType, location: &str, message: String) {
        if self.issues.len() < MAX_ISSUES {
            self.issues.push(Issue::error(code, message).at(location));
        }
    }

    fn resource(&mut self, value: &Value, location_prefix: &str, depth: usize) {
        let Some(obj) = value.as_object() else {
            self.issue(
                IssueType::Structure,
                location_prefix,
                "a resource must be a JSON object".into(),
            );
            return;
        };
        let Some(rt) = obj.get("resourceType").and_then(Value::as_str) else {
            self.issue(
                IssueType::Structure,
                location_prefix,
                "resourceType is missing".into(),
            );
            return;
        };
        let Some(td) = self
            .defs
            .type_def(rt)
            .filter(|t| t.kind == TypeKind::Resource && !t.is_abstract)
        else {
            self.issue(
                IssueType::Structure,
                location_prefix,
                format!("unknown resource type '{rt}'"),
            );
            return;
        };
        let loc = if location_prefix.is_empty() {
            rt.to_string()
        } else {
            location_prefix.to_string()
        };
        if let Some(id) = obj.get("id")
            && !id.as_str().is_some_and(is_id)
        {
            self.issue(
                IssueType::Value,
                &format!("{loc}.id"),
                "id must be 1-64 characters of A-Z a-z 0-9 - .".into(),
            );
        }
        self.object(td, rt, obj, &loc, depth, true);
    }

    /// Validates the children of an object whose definition path is `def_path` in `td`.
    fn object(
        &mut self,
        td: &TypeDef,
        def_path: &str,
        obj: &Map<String, Value>,
        loc: &str,
        depth: usize,
        is_resource_root: bool,
    ) {
        if depth > 64 {
            self.issue(
                IssueType::TooLong,
                loc,
                "the resource is nested too deeply".into(),
            );
            return;
        }
        let children = td.children.get(def_path);
        let mut seen_choice: Vec<(&str, &str)> = Vec::new();
        for (key, value) in obj {
            if is_resource_root && key == "resourceType" {
                continue;
            }
            if key == "fhir_comments" {
                continue;
            }
            if let Some(base) = key.strip_prefix('_') {
                // The extension/id part of a primitive: `_birthDate`.
                if self.find_element(td, def_path, base).is_none() {
                    self.issue(
                        IssueType::Structure,
                        &format!("{loc}.{key}"),
                        format!("unknown element '{key}'"),
                    );
                } else if !(value.is_object() || value.is_array()) {
                    self.issue(
                        IssueType::Structure,
                        &format!("{loc}.{key}"),
                        "primitive extensions must be an object or array".into(),
                    );
                }
                continue;
            }
            let Some((el, type_code)) = self.find_element(td, def_path, key) else {
                self.issue(
                    IssueType::Structure,
                    &format!("{loc}.{key}"),
                    format!("unknown element '{key}'"),
                );
                continue;
            };
            if el.is_choice() {
                let base = el.path.rsplit('.').next().unwrap_or_default();
                if let Some((_, other)) = seen_choice.iter().find(|(b, _)| *b == base) {
                    self.issue(
                        IssueType::Structure,
                        &format!("{loc}.{key}"),
                        format!("only one of the choices for {base} may be present (also {other})"),
                    );
                }
                seen_choice.push((base, key));
            }
            self.element(
                td,
                el,
                type_code.as_deref(),
                key,
                value,
                obj.get(&format!("_{key}")),
                loc,
                depth,
            );
        }
        // Required elements.
        for name in children.into_iter().flatten() {
            let path = format!("{def_path}.{name}");
            let Some(el) = td.elements.get(&path) else {
                continue;
            };
            if el.min == 0 {
                continue;
            }
            let present = if let Some(base) = name.strip_suffix("[x]") {
                obj.keys().any(|k| {
                    k.strip_prefix(base)
                        .is_some_and(|s| s.starts_with(|c: char| c.is_ascii_uppercase()))
                })
            } else {
                obj.contains_key(name.as_str()) || obj.contains_key(&format!("_{name}"))
            };
            if !present {
                self.issue(
                    IssueType::Required,
                    &format!("{loc}.{name}"),
                    format!("{name} is required (min {})", el.min),
                );
            }
        }
    }

    /// Finds the element for a JSON key, resolving choice types. Returns the element and, for a
    /// choice, the chosen type code.
    fn find_element<'a>(
        &self,
        td: &'a TypeDef,
        def_path: &str,
        key: &str,
    ) -> Option<(&'a ElementDef, Option<String>)> {
        if let Some(el) = td.elements.get(&format!("{def_path}.{key}")) {
            return Some((el, None));
        }
        for name in td.children.get(def_path)? {
            let Some(base) = name.strip_suffix("[x]") else {
                continue;
            };
            let Some(suffix) = key.strip_prefix(base) else {
                continue;
            };
            let el = td.elements.get(&format!("{def_path}.{name}"))?;
            if let Some(t) = el.types.iter().find(|t| capitalize(&t.code) == suffix) {
                return Some((el, Some(t.code.clone())));
            }
        }
        None
    }

    #[allow(clippy::too_many_arguments)]
    fn element(
        &mut self,
        td: &TypeDef,
        el: &ElementDef,
        choice_type: Option<&str>,
        key: &str,
        value: &Value,
        extension: Option<&Value>,
        loc: &str,
        depth: usize,
    ) {
        let here = format!("{loc}.{key}");
        let items: Vec<(String, &Value)> = match value {
            Value::Array(items) => {
                if !el.is_array() {
                    self.issue(
                        IssueType::Structure,
                        &here,
                        format!("{key} is not repeating and must not be an array"),
                    );
                    return;
                }
                if items.is_empty() {
                    self.issue(
                        IssueType::Structure,
                        &here,
                        "arrays must not be empty".into(),
                    );
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (format!("{here}[{i}]"), v))
                    .collect()
            }
            _ => {
                if el.is_array() {
                    self.issue(
                        IssueType::Structure,
                        &here,
                        format!("{key} repeats and must be an array"),
                    );
                    return;
                }
                vec![(here.clone(), value)]
            }
        };
        if let Some(max) = el.max
            && items.len() > max as usize
        {
            self.issue(
                IssueType::Structure,
                &here,
                format!("{key} allows at most {max} values"),
            );
        }
        let type_code = match choice_type {
            Some(t) => t.to_string(),
            None => el
                .types
                .first()
                .map(|t| system_type(&t.code).to_string())
                .unwrap_or_default(),
        };
        for (i, (item_loc, item)) in items.into_iter().enumerate() {
            if item.is_null() {
                // A null stands in an array whose `_key` twin holds the extension.
                let has_twin = extension
                    .and_then(|e| e.as_array())
                    .and_then(|a| a.get(i))
                    .is_some_and(|x| !x.is_null());
                if !has_twin {
                    self.issue(
                        IssueType::Structure,
                        &item_loc,
                        "null values are not allowed".into(),
                    );
                }
                continue;
            }
            if let Some(reference) = &el.content_reference {
                let target = reference.trim_start_matches('#');
                match item.as_object() {
                    Some(o) => self.object(td, target, o, &item_loc, depth + 1, false),
                    None => self.issue(IssueType::Structure, &item_loc, "must be an object".into()),
                }
                continue;
            }
            self.typed_value(td, el, &type_code, item, &item_loc, depth);
        }
    }

    fn typed_value(
        &mut self,
        td: &TypeDef,
        el: &ElementDef,
        type_code: &str,
        item: &Value,
        loc: &str,
        depth: usize,
    ) {
        match type_code {
            "BackboneElement" | "Element" if td.children.contains_key(&el.path) => {
                match item.as_object() {
                    Some(o) => self.object(td, &el.path, o, loc, depth + 1, false),
                    None => self.issue(IssueType::Structure, loc, "must be an object".into()),
                }
            }
            "Resource" => self.resource(item, loc, depth + 1),
            _ => match self.defs.type_def(type_code) {
                Some(t) if t.kind == TypeKind::Primitive => {
                    self.primitive(type_code, el, item, loc)
                }
                Some(t) => match item.as_object() {
                    Some(o) => {
                        self.object(t, type_code, o, loc, depth + 1, false);
                        if type_code == "Reference" {
                            self.reference(el, o, loc);
                        }
                    }
                    None => self.issue(
                        IssueType::Structure,
                        loc,
                        format!("a {type_code} must be an object"),
                    ),
                },
                None => self.primitive(type_code, el, item, loc),
            },
        }
    }

    fn primitive(&mut self, type_code: &str, el: &ElementDef, item: &Value, loc: &str) {
        let ok = match type_code {
            "boolean" => item.is_boolean(),
            "integer" => item.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            "positiveInt" => item
                .as_i64()
                .is_some_and(|n| n > 0 && i32::try_from(n).is_ok()),
            "unsignedInt" => item
                .as_i64()
                .is_some_and(|n| n >= 0 && i32::try_from(n).is_ok()),
            "decimal" => item.is_number(),
            _ => {
                let Some(s) = item.as_str() else {
                    self.issue(
                        IssueType::Structure,
                        loc,
                        format!("a {type_code} must be a JSON string"),
                    );
                    return;
                };
                let ok = match type_code {
                    "id" => is_id(s),
                    "date" => is_date(s) && crate::datetime::parse_range(s).is_some(),
                    "dateTime" => is_date_time(s) && crate::datetime::parse_range(s).is_some(),
                    "instant" => is_instant(s) && crate::datetime::parse_range(s).is_some(),
                    "time" => is_time(s),
                    "code" => is_code(s),
                    "oid" => is_oid(s),
                    "uuid" => is_uuid(s),
                    "base64Binary" => is_base64(s),
                    "uri" | "url" | "canonical" => {
                        !s.is_empty() && !s.chars().any(char::is_whitespace)
                    }
                    "xhtml" => s.trim_start().starts_with("<div"),
                    _ => !s.is_empty(),
                };
                if ok
                    && type_code == "code"
                    && let Some(vs) = el
                        .required_binding
                        .as_deref()
                        .and_then(|u| self.defs.value_set(u))
                    && vs.complete
                    && !vs.contains(s)
                {
                    let url = el.required_binding.clone().unwrap_or_default();
                    self.issue(
                        IssueType::CodeInvalid,
                        loc,
                        format!("'{s}' is not in the required value set {url}"),
                    );
                }
                ok
            }
        };
        if !ok {
            self.issue(IssueType::Value, loc, format!("not a valid {type_code}"));
        }
    }

    fn reference(&mut self, el: &ElementDef, o: &Map<String, Value>, loc: &str) {
        let Some(reference) = o.get("reference").and_then(Value::as_str) else {
            return;
        };
        if reference.starts_with('#')
            || reference.starts_with("urn:uuid:")
            || reference.starts_with("urn:oid:")
        {
            return;
        }
        if reference.contains('?') {
            // A conditional reference; only valid inside a transaction, where it is resolved first.
            return;
        }
        let Some((t, id)) = crate::index::split_reference(reference) else {
            if reference.contains("://") {
                return; // any absolute URL is a valid reference, RESTful shape or not
            }
            self.issue(
                IssueType::Value,
                &format!("{loc}.reference"),
                "a reference is Type/id, an absolute URL, #id or urn:uuid".into(),
            );
            return;
        };
        if !reference.contains("://") && (!self.defs.is_resource_type(&t) || !is_id(&id)) {
            self.issue(
                IssueType::Value,
                &format!("{loc}.reference"),
                format!("'{t}' is not a resource type or '{id}' not an id"),
            );
            return;
        }
        let targets: Vec<&String> = el
            .types
            .iter()
            .filter(|ty| ty.code == "Reference")
            .flat_map(|ty| ty.target_types.iter())
            .collect();
        if !targets.is_empty()
            && !targets.iter().any(|x| *x == &t || *x == "Resource")
            && self.defs.is_resource_type(&t)
        {
            self.issue(
                IssueType::Value,
                &format!("{loc}.reference"),
                format!("a reference to {t} is not allowed here"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(v: Value) -> Vec<String> {
        validate(crate::definitions().unwrap(), &v)
            .into_iter()
            .map(|i| i.expression.unwrap_or_default() + ": " + &i.diagnostics)
            .collect()
    }

    #[test]
    fn accepts_a_valid_patient_and_observation() {
        assert_eq!(
            check(
                json!({"resourceType": "Patient", "id": "a", "name": [{"family": "X", "given": ["Y"]}], "gender": "female", "birthDate": "1980-02-03", "_birthDate": {"extension": [{"url": "http://x", "valueString": "y"}]}})
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            check(
                json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": 1.5, "unit": "kg"}, "subject": {"reference": "Patient/a"}, "component": [{"code": {"text": "c"}, "valueString": "v"}]})
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn locates_each_problem() {
        let issues = check(
            json!({"resourceType": "Patient", "name": {"family": "X"}, "gender": "f", "birthDate": "1980-13-01", "foo": 1, "managingOrganization": {"reference": "Patient/1"}}),
        );
        assert!(
            issues.iter().any(|i| i.starts_with("Patient.name:")),
            "{issues:?}"
        );
        assert!(
            issues.iter().any(|i| i.starts_with("Patient.gender:")),
            "{issues:?}"
        );
        assert!(
            issues.iter().any(|i| i.starts_with("Patient.birthDate:")),
            "{issues:?}"
        );
        assert!(
            issues.iter().any(|i| i.starts_with("Patient.foo:")),
            "{issues:?}"
        );
        assert!(
            issues
                .iter()
                .any(|i| i.starts_with("Patient.managingOrganization.reference:")),
            "{issues:?}"
        );
        let issues = check(
            json!({"resourceType": "Observation", "code": {"text": "x"}, "valueQuantity": {"value": "1"}, "valueString": "x"}),
        );
        assert!(
            issues.iter().any(|i| i.starts_with("Observation.status:")),
            "{issues:?}"
        );
        assert!(
            issues
                .iter()
                .any(|i| i.starts_with("Observation.valueQuantity.value:")),
            "{issues:?}"
        );
        assert!(
            issues.iter().any(|i| i.contains("only one of the choices")),
            "{issues:?}"
        );
        let issues =
            check(json!({"resourceType": "Patient", "contained": [{"resourceType": "Nope"}]}));
        assert!(
            issues
                .iter()
                .any(|i| i.starts_with("Patient.contained[0]:")),
            "{issues:?}"
        );
    }
}
