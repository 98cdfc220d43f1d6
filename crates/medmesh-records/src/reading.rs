//! Reads the capability services make as the caller, over the record service's search and
//! read (so the PDP judges each and the audit log records it): the resources of a search,
//! and a principal's name.

use std::collections::HashMap;

use medmesh_fhir::search::Handling;
use medmesh_kernel::RequestContext;
use serde_json::Value;

use crate::{RecordError, RecordService};

/// The resources of a search Bundle, without its OperationOutcome entries.
pub fn resources_of(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] != "outcome")
        .map(|e| e["resource"].clone())
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
        Ok(resources_of(&bundle))
    }
}

/// Names of principals (`Practitioner/x`, `Patient/p`, `Organization/o`, `CareTeam/t`),
/// each read once as the caller: a person's HumanName, an organization's or a team's name,
/// or the reference itself when it cannot be read or has none.
#[derive(Debug, Default)]
pub struct Names(HashMap<String, String>);

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
        if let Some(n) = self.0.get(reference) {
            return n.clone();
        }
        let name = match reference.split_once('/') {
            Some((rt, id)) => match records.read(ctx, rt, id).await {
                Ok(found) => match found.resource.get("name") {
                    Some(Value::String(n)) => Some(n.clone()),
                    _ => medmesh_fhir::names::human_name(&found.resource),
                },
                Err(_) => None,
            },
            None => None,
        }
        .unwrap_or_else(|| reference.to_string());
        self.0.insert(reference.to_string(), name.clone());
        name
    }
}
