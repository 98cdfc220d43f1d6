//! The rule on `CarePlan` writes through the plain FHIR API: a plan changes as the care
//! capability says, so that its history names who made each change and proposals are not
//! skipped.
//!
//! - A patient does not write a care plan: they tick their own activities
//!   (`/api/care-plans/{id}/changes`).
//! - A plan that has an author is changed through the FHIR API by that author only; the
//!   patient's GP and the care team go through the care API (changes, proposals).
//! - Callers with no role (the node's own channels, imports by the operator) are not judged.

use medmesh_records::write_rules::KeptBy;

/// The rule on CarePlan.
pub const CARE_PLAN_WRITES: KeptBy = KeptBy {
    keeper: "/author/reference",
    to_patients: "a patient ticks their own activities through /api/care-plans/{id}/changes; the care team writes the plan",
    to_others: "this plan is changed by its author; others change it through /api/care-plans/{id}/changes (a proposal, or the GP's change)",
};

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_auth::Role;
    use medmesh_kernel::Actor;
    use medmesh_records::write_rules::WriteRule;
    use serde_json::json;

    #[allow(clippy::disallowed_methods)] // A test's actors.
    fn actor(role: Role, practitioner: Option<&str>) -> Actor {
        Actor::from_verified_token(medmesh_kernel::VerifiedIdentity {
            subject: "u".into(),
            scopes: Vec::new(),
            patient: (role == Role::Patient).then(|| "p".to_string()),
            role: Some(role),
            clinician: practitioner.map(|p| medmesh_kernel::Clinician {
                practitioner: p.to_string(),
                organizations: Vec::new(),
                verified: true,
            }),
        })
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // The operator, as the CLI's imports act.
    fn only_the_author_changes_a_plan_through_the_fhir_api() {
        let plan = json!({"resourceType": "CarePlan", "author": {"reference": "Practitioner/a"}});
        let rule = CARE_PLAN_WRITES;
        let author = actor(Role::Practitioner, Some("Practitioner/a"));
        let other = actor(Role::Practitioner, Some("Practitioner/b"));
        assert!(rule.check(&author, Some(&plan), &plan).is_ok());
        assert!(rule.check(&other, Some(&plan), &plan).is_err());
        assert!(
            rule.check(&other, None, &plan).is_ok(),
            "anyone writes a new plan"
        );
        let patient = actor(Role::Patient, None);
        assert!(rule.check(&patient, None, &plan).is_err());
        assert!(
            rule.check(&Actor::local_operator(), Some(&plan), &plan)
                .is_ok()
        );
    }
}
