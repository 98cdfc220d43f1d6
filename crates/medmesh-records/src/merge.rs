//! Moving a merged patient's record to the survivor (an HL7 v2 A40, a registration
//! clerk's merge): every resource that refers to the prior patient is rewritten to refer to
//! the survivor. Each rewrite is an ordinary update in a transaction, so the PDP judges
//! every type, and the audit log, encryption and consent labels apply as to any write.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::ReturnPreference;
use crate::context::RequestContext;
use crate::error::RecordError;
use crate::service::RecordService;

/// Resources rewritten per transaction.
const CHUNK: usize = 100;

/// Whether `reference` names `Patient/{id}` (relative, absolute, or a version of it).
fn names_patient(reference: &str, id: &str) -> bool {
    let target = format!("Patient/{id}");
    let path = reference
        .split_once("/_history/")
        .map_or(reference, |(p, _)| p);
    path == target || path.ends_with(&format!("/{target}"))
}

/// Rewrites every `reference` naming the prior patient; whether anything changed.
fn move_references(v: &mut Value, prior: &str, survivor: &str) -> bool {
    match v {
        Value::Object(o) => {
            let mut changed = false;
            for (k, child) in o.iter_mut() {
                if k == "reference"
                    && let Value::String(r) = child
                    && names_patient(r, prior)
                {
                    *r = format!("Patient/{survivor}");
                    changed = true;
                } else {
                    changed |= move_references(child, prior, survivor);
                }
            }
            changed
        }
        Value::Array(a) => a
            .iter_mut()
            .fold(false, |c, x| move_references(x, prior, survivor) | c),
        _ => false,
    }
}

impl RecordService {
    /// Moves the record of `prior` (merged into `survivor`) to the survivor: every resource
    /// in the prior patient's compartment that refers to it is updated to refer to the
    /// survivor instead (the two Patient resources keep their links). Returns the
    /// resources moved, as `Type/id`. Done again, it moves what is left.
    ///
    /// # Errors
    /// As the transactions of the updates fail: [`RecordError::Forbidden`] when the PDP
    /// refuses a type, [`RecordError::PreconditionFailed`] when a resource changed while it
    /// was being moved.
    pub async fn move_patient_references(
        &self,
        ctx: &RequestContext,
        prior: &str,
        survivor: &str,
    ) -> Result<Vec<String>, RecordError> {
        if prior == survivor {
            return Ok(Vec::new());
        }
        let links: Vec<(String, Vec<String>)> = self
            .defs
            .patient_compartment()
            .iter()
            .filter(|(t, _)| t.as_str() != "Patient")
            .map(|(t, p)| (t.clone(), p.clone()))
            .collect();
        let types: Vec<String> = links.iter().map(|(t, _)| t.clone()).collect();
        // Listed first, then rewritten: a rewritten resource leaves the compartment, which
        // would shift the pages under a cursor.
        let mut members = BTreeSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .store
                .compartment_page(prior, &links, None, &types, 500, cursor.as_deref())
                .await?;
            members.extend(page.matches.into_iter().filter(|(t, _)| t != "Patient"));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let members: Vec<(String, String)> = members.into_iter().collect();
        let mut moved = Vec::new();
        for chunk in members.chunks(CHUNK) {
            let mut entries = Vec::new();
            for v in self.store.read_many(chunk).await? {
                let mut resource = match self.decode(&v).await {
                    Ok(r) => r,
                    Err(RecordError::Erased) => continue,
                    Err(e) => return Err(e),
                };
                if !move_references(&mut resource, prior, survivor) {
                    continue;
                }
                moved.push(format!("{}/{}", v.resource_type, v.id));
                entries.push(json!({
                    "resource": resource,
                    "request": {
                        "method": "PUT",
                        "url": format!("{}/{}", v.resource_type, v.id),
                        "ifMatch": format!("W/\"{}\"", v.version),
                    },
                }));
            }
            if entries.is_empty() {
                continue;
            }
            let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
            self.transaction(ctx, &bundle, ReturnPreference::Minimal)
                .await?;
        }
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_to_the_prior_patient_move_and_no_others() {
        let mut r = json!({"resourceType": "Observation",
            "subject": {"reference": "Patient/old"},
            "performer": [{"reference": "Practitioner/old"}, {"reference": "https://node.example/fhir/Patient/old/_history/3"}],
            "focus": [{"reference": "Patient/older"}]});
        assert!(move_references(&mut r, "old", "new"));
        assert_eq!(r["subject"]["reference"], "Patient/new");
        assert_eq!(r["performer"][0]["reference"], "Practitioner/old");
        assert_eq!(r["performer"][1]["reference"], "Patient/new");
        assert_eq!(r["focus"][0]["reference"], "Patient/older");
        assert!(!move_references(&mut r, "old", "new"));
    }
}
