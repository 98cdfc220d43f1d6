//! Applies a grant's limits to data: a patient-context grant reaches only that patient's
//! compartment, and a granular scope (`?category=laboratory`) only matching resources.
//!
//! Two halves that must agree: [`RecordService::admits`] judges one resource in memory (reads,
//! includes, history, writes), and [`RecordService::confine_query`] adds the same limits to
//! a search so paging and `_total` count only what the actor may see.

use medmesh_fhir::index::{self, IndexValue};
use medmesh_fhir::search::{self, Criterion, SearchQuery};
use medmesh_policy::consent::SHARED_WITH;
use medmesh_policy::labels::restricted_labels;
use medmesh_policy::{Grant, Reach};
use serde_json::Value;

use crate::{RecordError, RecordService};

use medmesh_policy::is_shared_type as shared_type;

/// A search group's limits: whether the type is open (else only shared-with tags), and
/// the labels hidden.
type GroupLimits = (bool, Vec<String>);

fn token_matches(filter: &str, value: &IndexValue) -> bool {
    let IndexValue::Token { system, code, .. } = value else {
        return false;
    };
    match filter.split_once('|') {
        None => code.as_deref() == Some(filter),
        Some(("", c)) => system.is_none() && code.as_deref() == Some(c),
        Some((s, "")) => system.as_deref() == Some(s),
        Some((s, c)) => system.as_deref() == Some(s) && code.as_deref() == Some(c),
    }
}

impl RecordService {
    /// Whose key seals a resource: its patient (the first, if it names several), else the
    /// node's records key.
    pub(crate) fn key_owner(&self, rt: &str, resource: &Value) -> String {
        self.compartment_owners(rt, resource)
            .into_iter()
            .next()
            .unwrap_or_else(|| medmesh_at_rest::NODE_RECORDS_OWNER.to_string())
    }

    /// The patients whose compartment a resource is in (for audit entries and the PDP).
    pub(crate) fn compartment_owners(&self, rt: &str, resource: &Value) -> Vec<String> {
        if rt == "Patient" {
            return resource
                .get("id")
                .and_then(Value::as_str)
                .map(|id| vec![id.to_string()])
                .unwrap_or_default();
        }
        let mut out = self.linked_patients(rt, resource);
        out.sort();
        out.dedup();
        out
    }

    /// The patients a resource links to through its type's patient-compartment parameters.
    fn linked_patients(&self, rt: &str, resource: &Value) -> Vec<String> {
        let Some(params) = self.defs.patient_compartment().get(rt) else {
            return Vec::new();
        };
        index::extract_params(self.defs, resource, params)
            .into_iter()
            .filter_map(|r| match r.value {
                IndexValue::Reference {
                    target_type: Some(t),
                    target_id: Some(id),
                    ..
                } if t == "Patient" => Some(id),
                _ => None,
            })
            .collect()
    }

    /// Every patient whose compartment a resource enters, through any of the
    /// CompartmentDefinition's paths: a Patient's own id and its `link`s included. A write
    /// that names another patient on any of them puts itself into that patient's record.
    pub(crate) fn compartments_entered(&self, rt: &str, resource: &Value) -> Vec<String> {
        let mut out = if rt == "Patient" {
            resource
                .get("id")
                .and_then(Value::as_str)
                .map(|id| vec![id.to_string()])
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        out.extend(self.linked_patients(rt, resource));
        out.sort();
        out.dedup();
        out
    }

    /// Whether a write under `grant` stays in the grant's compartment: a patient-context
    /// grant may not put a resource into another patient's record (an Observation
    /// performed by them, a CareTeam naming them, a Patient linked to them). The resource
    /// must be in the grant's compartment, and in no other.
    pub(crate) fn write_stays_in_compartment(
        &self,
        grant: &Grant,
        rt: &str,
        resource: &Value,
    ) -> bool {
        match grant.compartment() {
            Some(patient) => self
                .compartments_entered(rt, resource)
                .iter()
                .all(|p| p == patient),
            None => true,
        }
    }

    /// Whether a resource lies within what `grant` reaches.
    pub(crate) fn admits(&self, grant: &Grant, rt: &str, resource: &Value) -> bool {
        if grant.is_unrestricted() {
            return true;
        }
        let rows = index::extract(self.defs, resource);
        if let Some(patient) = grant.compartment() {
            let links = self.defs.patient_compartment().get(rt);
            let linked = links.is_some_and(|params| {
                rows.iter().any(|r| {
                    params.contains(&r.param)
                        && matches!(&r.value, IndexValue::Reference { target_type: Some(t), target_id: Some(id), .. }
                            if t == "Patient" && id == patient)
                })
            });
            let itself =
                rt == "Patient" && resource.get("id").and_then(Value::as_str) == Some(patient);
            let member = if links.is_some() {
                linked || itself
            } else {
                shared_type(rt)
            };
            if !member {
                return false;
            }
        }
        let filtered = grant.filters().is_empty()
            || grant.filters().iter().any(|(param, value)| {
                rows.iter().any(|r| {
                    &r.param == param && value.split(',').any(|v| token_matches(v, &r.value))
                })
            });
        filtered && self.reach_admits(grant, rt, resource)
    }

    /// The search form of a practitioner's reach: for each patient, their compartment
    /// without the labels hidden from the actor; where the type is closed (or only sharing
    /// rules open the patient), only resources tagged as shared with the actor. Patients
    /// with the same limits share one group.
    fn reach_criterion(&self, reach: &Reach, rt: &str) -> Result<Criterion, RecordError> {
        let Some(params) = self.defs.patient_compartment().get(rt) else {
            // Clinical but outside the compartment: nothing can be attributed, nothing shown.
            return Ok(Criterion::AnyOf(Vec::new()));
        };
        let universe = restricted_labels();
        // (type open, hidden labels) -> patients with exactly those limits.
        let mut groups: Vec<(GroupLimits, Vec<String>)> = Vec::new();
        for a in &reach.patients {
            let open = !a.shared_only() && a.type_visible(rt);
            if !open && !a.tagged_visible(rt) {
                continue;
            }
            let key = (open, a.hidden_labels(rt, &universe));
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, patients)) => patients.push(a.patient().to_string()),
                None => groups.push((key, vec![a.patient().to_string()])),
            }
        }
        let tags: Vec<String> = reach
            .principals
            .iter()
            .map(|p| format!("{SHARED_WITH}|{p}"))
            .collect();
        let mut out = Vec::new();
        for ((open, hidden), patients) in groups {
            let mut group = vec![Criterion::Compartment {
                owner_type: "Patient".into(),
                patient_ids: patients,
                params: params.clone(),
                include_self: rt == "Patient",
            }];
            if !hidden.is_empty() {
                group.push(
                    search::parse_criterion(self.defs, rt, "_security:not", &hidden.join(","))
                        .map_err(|_| RecordError::Forbidden)?,
                );
            }
            if !open {
                group.push(
                    search::parse_criterion(self.defs, rt, "_tag", &tags.join(","))
                        .map_err(|_| RecordError::Forbidden)?,
                );
            }
            out.push(group);
        }
        // A message is open to its parties too (medmesh_policy::PARTY_TYPES).
        if medmesh_policy::PARTY_TYPES.contains(&rt) && !reach.principals.is_empty() {
            let principals = reach.principals.join(",");
            for param in ["sender", "recipient"] {
                out.push(vec![
                    search::parse_criterion(self.defs, rt, param, &principals)
                        .map_err(|_| RecordError::Forbidden)?,
                ]);
            }
        }
        Ok(Criterion::AnyOf(out))
    }

    /// Adds the grant's limits to a search on `q.resource_type`.
    ///
    /// # Errors
    /// [`RecordError::Forbidden`] when the filters cannot be expressed as one criterion
    /// (granular scopes on different parameters for one type).
    pub(crate) fn confine_query(
        &self,
        grant: &Grant,
        q: &mut SearchQuery,
    ) -> Result<(), RecordError> {
        let rt = q.resource_type.clone();
        if let Some(patient) = grant.compartment() {
            let criterion = match self.defs.patient_compartment().get(&rt) {
                Some(params) => Some(Criterion::Compartment {
                    owner_type: "Patient".into(),
                    patient_ids: vec![patient.to_string()],
                    params: params.clone(),
                    include_self: rt == "Patient",
                }),
                None if shared_type(&rt) => None,
                // Outside the compartment and not shareable: nothing matches.
                None => Some(Criterion::Compartment {
                    owner_type: "Patient".into(),
                    patient_ids: vec![patient.to_string()],
                    params: Vec::new(),
                    include_self: false,
                }),
            };
            q.criteria.extend(criterion);
        }
        if let Some(reach) = grant.reach()
            && !shared_type(&rt)
        {
            q.criteria.push(self.reach_criterion(reach, &rt)?);
        }
        if let Some((param, _)) = grant.filters().first() {
            if grant.filters().iter().any(|(p, _)| p != param) {
                return Err(RecordError::Forbidden);
            }
            let values: Vec<&str> = grant.filters().iter().map(|(_, v)| v.as_str()).collect();
            let c = search::parse_criterion(self.defs, &rt, param, &values.join(","))
                .map_err(|_| RecordError::Forbidden)?;
            q.criteria.push(c);
        }
        Ok(())
    }
}
