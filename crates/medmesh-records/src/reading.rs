//! Reads the capability services make as the caller, over the record service's search and
//! read (so the PDP judges each and the audit log records it): the resources of a search,
//! and a principal's name.

use std::collections::HashMap;

use medmesh_fhir::search::Handling;
use medmesh_kernel::RequestContext;
use serde_json::Value;

use crate::{RecordError, RecordService};

/// The resources of a search Bundle, without its OperationOutcome entries: moved out of the
/// Bundle, not copied (a page of a thousand resources was copied once more here).
pub fn resources_of(bundle: Value) -> Vec<Value> {
    let Value::Object(mut bundle) = bundle else {
        return Vec::new();
    };
    let Some(Value::Array(entries)) = bundle.remove("entry") else {
        return Vec::new();
    };
    entries
        .into_iter()
        .filter_map(|entry| {
            let Value::Object(mut entry) = entry else {
                return None;
            };
            // (`Map`'s index panics on a missing key, unlike `Value`'s.)
            let mode = entry.get("search").and_then(|s| s.get("mode"));
            if mode.and_then(Value::as_str) == Some("outcome") {
                return None;
            }
            entry.remove("resource").filter(Value::is_object)
        })
        .collect()
}

impl RecordService {
    /// The resources of one page of a strict search of `rt`, read as `ctx`.
    ///
    /// # Errors
    /// As [`RecordService::search`].
    pub async fn search_resources(
        &self,
        ctx: &RequestContext,
        rt: &str,
        params: &[(&str, String)],
    ) -> Result<Vec<Value>, RecordError> {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect();
        let bundle = self.search(ctx, rt, &params, Handling::Strict).await?;
        Ok(resources_of(bundle))
    }
}

/// Names of principals (`Practitioner/x`, `Patient/p`, `Organization/o`, `CareTeam/t`),
/// each read once as the caller: a person's HumanName, an organization's or a team's name,
/// or the reference itself when it cannot be read or has none.
#[derive(Debug, Default)]
pub struct Names(HashMap<String, Option<String>>);

impl Names {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The name of `reference`, read as `ctx` the first time.
    pub async fn of(
        &mut self,
        records: &RecordService,
        ctx: &RequestContext,
        reference: &str,
    ) -> String {
        self.read(records, ctx, reference)
            .await
            .unwrap_or_else(|| reference.to_string())
    }

    /// As [`Self::of`], but `None` when `reference` cannot be read as `ctx` (gone, or not
    /// for them), for a caller that says so in its own words.
    pub async fn read(
        &mut self,
        records: &RecordService,
        ctx: &RequestContext,
        reference: &str,
    ) -> Option<String> {
        if let Some(n) = self.0.get(reference) {
            return n.clone();
        }
        let name = match reference.split_once('/') {
            Some((rt, id)) => records.read(ctx, rt, id).await.ok().map(|found| {
                medmesh_fhir::names::human_name(&found.resource)
                    .unwrap_or_else(|| reference.to_string())
            }),
            None => Some(reference.to_string()),
        };
        self.0.insert(reference.to_string(), name.clone());
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resources_leave_out_outcomes_and_entries_without_one() {
        let bundle = json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "Patient", "id": "a"}, "search": {"mode": "match"}},
            {"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "outcome"}},
            {"fullUrl": "x"},
            {"resource": {"resourceType": "Practitioner", "id": "b"}, "search": {"mode": "include"}}
        ]});
        let ids: Vec<_> = resources_of(bundle)
            .iter()
            .map(|r| r["id"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(resources_of(json!({"resourceType": "Bundle"})).is_empty());
    }
}
