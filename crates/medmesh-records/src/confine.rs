//! Applies a grant's limits to data: a patient-context grant reaches only that patient's
//! compartment, and a granular scope (`?category=laboratory`) only matching resources.
//!
//! Two halves that must agree: [`RecordService::admits`] judges one resource in memory (reads,
//! includes, history, writes), and [`RecordService::confine_query`] adds the same limits to
//! a search so paging and `_total` count only what the actor may see.

use medmesh_fhir::definitions::Definitions;
use medmesh_fhir::index::{self, IndexValue};
use medmesh_fhir::search::{self, Criterion, SearchQuery};
use medmesh_policy::consent::SHARED_WITH;
use medmesh_policy::labels::restricted_labels;
use medmesh_policy::{Grant, Reach};
use serde_json::Value;
use std::collections::BTreeMap;

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

/// The criterion that keeps a search of `rt` inside `owner_type/id`'s compartment: the
/// CompartmentDefinition's links for the type (`members`), and the owner itself in a search
/// of its own type. A compartment search and a patient-context grant both use it, so the two
/// are equal and a patient's own compartment search checks it once. `None` when `rt` has no
/// place in the compartment (no link, and not the owner's type).
pub(crate) fn compartment_criterion(
    members: &BTreeMap<String, Vec<String>>,
    owner_type: &str,
    id: &str,
    rt: &str,
) -> Option<Criterion> {
    let params: Vec<String> = members
        .get(rt)
        .into_iter()
        .flatten()
        .filter(|p| p.as_str() != "{def}")
        .cloned()
        .collect();
    let include_self = rt == owner_type;
    (!params.is_empty() || include_self).then(|| Criterion::Compartment {
        owner_type: owner_type.to_string(),
        patient_ids: vec![id.to_string()],
        params,
        include_self,
    })
}

/// A compartment criterion that matches nothing: `patient`'s compartment through no link.
fn matches_nothing(patient: &str) -> Criterion {
    Criterion::Compartment {
        owner_type: "Patient".into(),
        patient_ids: vec![patient.to_string()],
        params: Vec::new(),
        include_self: false,
    }
}

/// Keeps `q` inside `patient`'s compartment (a patient-context grant): its types by their
/// links, shared types (Practitioner, Organization, ...) as they are, other types not at all.
fn confine_to_patient(defs: &Definitions, q: &mut SearchQuery, patient: &str) {
    let rt = q.resource_type.as_str();
    let members = defs.patient_compartment();
    let criterion = if members.contains_key(rt) {
        Some(
            compartment_criterion(members, "Patient", patient, rt)
                .unwrap_or_else(|| matches_nothing(patient)),
        )
    } else if shared_type(rt) {
        None
    } else {
        // Outside the compartment and not shareable: nothing matches.
        Some(matches_nothing(patient))
    };
    // A criterion already in the query (a compartment search's) is not added again: `A AND
    // A` is `A`, and each copy cost the search another subquery over the same index rows.
    if let Some(c) = criterion
        && !q.criteria.contains(&c)
    {
        q.criteria.push(c);
    }
}

/// Whether `outer` implies `inner`, both patient compartments: every patient `outer` names
/// is one of `inner`'s, through links `inner` has too.
fn compartment_implies(outer: &Criterion, inner: &Criterion) -> bool {
    match (outer, inner) {
        (
            Criterion::Compartment {
                owner_type: outer_type,
                patient_ids: outer_ids,
                params: outer_params,
                include_self: outer_self,
            },
            Criterion::Compartment {
                owner_type: inner_type,
                patient_ids: inner_ids,
                params: inner_params,
                include_self: inner_self,
            },
        ) => {
            outer_type == inner_type
                && outer_ids.iter().all(|p| inner_ids.contains(p))
                && outer_params.iter().all(|p| inner_params.contains(p))
                && (!outer_self || *inner_self)
        }
        _ => false,
    }
}

/// Drops from each group of a practitioner's reach a compartment that a criterion of the
/// query already implies: a search of one patient's compartment (the chart's
/// `Patient/x/Observation`) otherwise checked it twice, the second time against every
/// patient of the group (bench/README.md, issue 16). `A AND (A' AND B)` is `A AND B` when
/// `A` implies `A'`; a group left empty matches whatever the query does.
fn drop_implied_compartments(criteria: &[Criterion], reached: &mut Criterion) {
    let Criterion::AnyOf(groups) = reached else {
        return;
    };
    for group in groups {
        group.retain(|c| !criteria.iter().any(|q| compartment_implies(q, c)));
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
            confine_to_patient(self.defs, q, patient);
        }
        if let Some(reach) = grant.reach()
            && !shared_type(&rt)
        {
            let mut reached = self.reach_criterion(reach, &rt)?;
            drop_implied_compartments(&q.criteria, &mut reached);
            q.criteria.push(reached);
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

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_fhir::search::{Handling, parse_query};

    fn query(rt: &str) -> SearchQuery {
        parse_query(
            medmesh_fhir::definitions::definitions().unwrap(),
            rt,
            &[("_count".to_string(), "10".to_string())],
            Handling::Strict,
        )
        .unwrap()
    }

    #[test]
    fn a_patients_own_compartment_search_is_confined_once() {
        let defs = medmesh_fhir::definitions::definitions().unwrap();
        // A search of `Patient/{id}/{rt}`, as compartment_search builds it.
        let compartment_search = |rt: &str, id: &str| {
            let mut q = query(rt);
            q.criteria.push(
                compartment_criterion(defs.compartment("Patient").unwrap(), "Patient", id, rt)
                    .unwrap(),
            );
            q
        };
        for rt in ["Observation", "Condition", "Patient", "Encounter"] {
            let mut own = compartment_search(rt, "p1");
            confine_to_patient(defs, &mut own, "p1");
            assert_eq!(
                own.criteria.len(),
                1,
                "{rt}: the grant's criterion is the same one"
            );
            // Another patient's compartment is still confined to the grant's.
            let mut other = compartment_search(rt, "p2");
            confine_to_patient(defs, &mut other, "p1");
            assert_eq!(other.criteria.len(), 2, "{rt}");
        }
        // A plain search gets the grant's criterion; a shared type none; a type outside the
        // compartment one that matches nothing.
        let mut q = query("Observation");
        confine_to_patient(defs, &mut q, "p1");
        assert!(
            matches!(&q.criteria[..], [Criterion::Compartment { params, .. }] if params.contains(&"subject".to_string()))
        );
        let mut q = query("Organization");
        confine_to_patient(defs, &mut q, "p1");
        assert!(q.criteria.is_empty());
        let outside = defs
            .resource_types()
            .iter()
            .map(|t| t.as_str())
            .find(|t| !defs.patient_compartment().contains_key(*t) && !shared_type(t))
            .unwrap();
        let mut q = query(outside);
        confine_to_patient(defs, &mut q, "p1");
        assert!(
            matches!(&q.criteria[..], [Criterion::Compartment { params, .. }] if params.is_empty())
        );
    }

    /// A practitioner's search of one patient's compartment checks that compartment once;
    /// the group's other limits (hidden labels) stay, and so do other groups.
    #[test]
    fn a_compartment_the_query_keeps_to_is_not_checked_again_by_the_reach() {
        let compartment =
            |ids: &[&str], params: &[&str], include_self: bool| Criterion::Compartment {
                owner_type: "Patient".into(),
                patient_ids: ids.iter().map(|s| s.to_string()).collect(),
                params: params.iter().map(|s| s.to_string()).collect(),
                include_self,
            };
        let label = Criterion::Any;
        let mut reached = Criterion::AnyOf(vec![
            vec![
                compartment(&["p1", "p2"], &["subject", "performer"], false),
                label.clone(),
            ],
            vec![compartment(&["p3"], &["subject", "performer"], false)],
            vec![compartment(&["p1"], &["performer"], false)],
        ]);
        let query = [compartment(&["p1"], &["subject", "performer"], false)];
        drop_implied_compartments(&query, &mut reached);
        assert_eq!(
            reached,
            Criterion::AnyOf(vec![
                vec![label],
                vec![compartment(&["p3"], &["subject", "performer"], false)],
                // Fewer links than the query's: not implied.
                vec![compartment(&["p1"], &["performer"], false)],
            ])
        );
        // A query over the patient itself too does not imply a group without it.
        assert!(!compartment_implies(
            &compartment(&["p1"], &["subject"], true),
            &compartment(&["p1"], &["subject"], false)
        ));
        assert!(compartment_implies(
            &compartment(&["p1"], &["subject"], false),
            &compartment(&["p1", "p9"], &["subject", "link"], true)
        ));
    }
}
