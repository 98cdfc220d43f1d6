//! Names in words, from FHIR resources (pure).

use serde_json::Value;

/// A person's name as written (`prefix given family`), from the first `HumanName`; an
/// organization's `name`. `None` when there is none.
pub fn human_name(resource: &Value) -> Option<String> {
    if let Some(n) = resource["name"].as_array().and_then(|names| names.first()) {
        if let Some(text) = n["text"].as_str().filter(|t| !t.trim().is_empty()) {
            return Some(text.trim().to_string());
        }
        let mut parts: Vec<&str> = Vec::new();
        parts.extend(
            n["prefix"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str),
        );
        parts.extend(
            n["given"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str),
        );
        parts.extend(n["family"].as_str());
        let joined = parts
            .iter()
            .flat_map(|p| p.split_whitespace())
            .collect::<Vec<_>>()
            .join(" ");
        return (!joined.is_empty()).then_some(joined);
    }
    resource["name"].as_str().map(str::to_string)
}
