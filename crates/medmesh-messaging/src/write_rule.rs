//! The rule on `Communication` writes through the plain FHIR API: messages go through the
//! messaging API, so that a patient writes only to their care team and nobody rewrites
//! what another sent.
//!
//! - A patient does not write Communications through the FHIR API (`/api/messages`).
//! - A Communication is changed through the FHIR API by its sender only.
//! - Callers with no role (the node's own channels, imports by the operator) are not judged.

use medmesh_records::write_rules::KeptBy;

/// The rule on Communication.
pub const MESSAGE_WRITES: KeptBy = KeptBy {
    keeper: "/sender/reference",
    to_patients: "a patient writes to their care team through /api/messages",
    to_others: "a message is changed by its sender only",
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
    fn only_the_sender_rewrites_a_message_and_patients_use_the_api() {
        let m = json!({"resourceType": "Communication", "sender": {"reference": "Practitioner/a"}});
        let rule = MESSAGE_WRITES;
        assert!(
            rule.check(
                &actor(Role::Practitioner, Some("Practitioner/a")),
                Some(&m),
                &m
            )
            .is_ok()
        );
        assert!(
            rule.check(
                &actor(Role::Practitioner, Some("Practitioner/b")),
                Some(&m),
                &m
            )
            .is_err()
        );
        assert!(
            rule.check(&actor(Role::Practitioner, Some("Practitioner/b")), None, &m)
                .is_ok()
        );
        assert!(rule.check(&actor(Role::Patient, None), None, &m).is_err());
    }
}
