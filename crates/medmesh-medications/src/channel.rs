//! The medications capability's rule on the plain FHIR API's writes of MedicationRequest
//! ([`medmesh_records::write_rules`]): a user (a practitioner, a pharmacist, a patient)
//! writes a prescription only as a draft, which `/api/prescriptions/{id}/activate` signs;
//! a prescription past its draft changes only through the lifecycle's operations
//! (`/status`, `/route`, dispensing) or a new prescription. Without this, a `PUT` could make
//! a prescription active unsigned, or change a signed one.
//!
//! What is recorded rather than prescribed here stays open to the FHIR API: a request with
//! an intent that is not a prescription's (`proposal`, `plan`), one marked as reported from
//! elsewhere (`reportedBoolean`/`reportedReference`), and every write by an actor with no
//! user role (the command line's import, an HL7 v2 sender, a backend system), which records
//! prescriptions made elsewhere. Those writers still keep to R4's lifecycle: a change of a
//! prescription's status that it does not allow (a cancelled order made active again) is
//! refused.

use medmesh_auth::Role;
use medmesh_kernel::Actor;
use medmesh_records::write_rules::WriteRule;
use serde_json::Value;

use crate::status::{Intent, RequestStatus, check_transition};

/// The rule on MedicationRequest.
#[derive(Debug, Clone, Copy, Default)]
pub struct PrescriptionWrites;

fn is_prescription(r: &Value) -> bool {
    r["intent"]
        .as_str()
        .and_then(Intent::parse)
        .is_some_and(Intent::is_prescription)
        && r["reportedBoolean"] != true
        && r.get("reportedReference").is_none()
}

fn is_draft(r: &Value) -> bool {
    r["status"] == "draft"
}

/// A recorded prescription's change of status, checked against R4's lifecycle (whether any
/// was dispensed is not known here; the service checks that for its own cancellations).
fn lifecycle_kept(before: Option<&Value>, after: &Value) -> Result<(), String> {
    let (Some(before), true) = (before, is_prescription(after)) else {
        return Ok(());
    };
    let status = |r: &Value| r["status"].as_str().and_then(RequestStatus::parse);
    let (Some(from), Some(to), Some(intent)) = (
        status(before),
        status(after),
        after["intent"].as_str().and_then(Intent::parse),
    ) else {
        return Ok(());
    };
    check_transition(intent, from, to, false).map_err(|e| e.to_string())
}

impl WriteRule for PrescriptionWrites {
    fn check(&self, actor: &Actor, before: Option<&Value>, after: &Value) -> Result<(), String> {
        let Some(role) = actor.role() else {
            return lifecycle_kept(before, after);
        };
        if role == Role::Patient && is_prescription(after) {
            return Err(
                "a patient does not write prescriptions: ask for one (intent proposal), or record what you take (MedicationStatement)".into(),
            );
        }
        if before.is_some_and(|b| is_prescription(b) && !is_draft(b)) {
            return Err("a prescription past its draft changes through /api/prescriptions/{id}/status or /route, or by a new prescription".into());
        }
        if is_prescription(after) && !is_draft(after) {
            return Err("a prescription is written as a draft and becomes active when its prescriber signs it (/api/prescriptions/{id}/activate)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[allow(clippy::disallowed_methods)] // A test's actors.
    fn actor(role: Option<Role>) -> Actor {
        match role {
            None => Actor::local_operator(),
            Some(r) => Actor::from_verified_token(medmesh_kernel::VerifiedIdentity {
                subject: "u".into(),
                scopes: Vec::new(),
                patient: None,
                role: Some(r),
                clinician: None,
            }),
        }
    }

    #[test]
    fn users_write_drafts_and_the_node_records_anything() {
        let rule = PrescriptionWrites;
        let gp = actor(Some(Role::Practitioner));
        let draft = json!({"intent": "order", "status": "draft"});
        let active = json!({"intent": "order", "status": "active"});
        assert!(
            rule.check(&gp, None, &draft).is_ok(),
            "pre-filled through the API"
        );
        assert!(rule.check(&gp, Some(&draft), &draft).is_ok());
        assert!(rule.check(&gp, None, &active).is_err(), "active unsigned");
        assert!(rule.check(&gp, Some(&draft), &active).is_err());
        assert!(
            rule.check(&gp, Some(&active), &active).is_err(),
            "a signed one changed"
        );
        let stopped = json!({"intent": "order", "status": "stopped"});
        assert!(
            rule.check(&gp, Some(&active), &stopped).is_err(),
            "through /status"
        );
        // A proposal, or a record of what another prescriber ordered, is free.
        let proposal = json!({"intent": "proposal", "status": "active"});
        assert!(rule.check(&gp, None, &proposal).is_ok());
        let reported = json!({"intent": "order", "status": "active", "reportedBoolean": true});
        assert!(rule.check(&gp, None, &reported).is_ok());
        // A patient proposes; an import or an HL7 sender records anything.
        let me = actor(Some(Role::Patient));
        assert!(rule.check(&me, None, &draft).is_err());
        assert!(rule.check(&me, None, &proposal).is_ok());
        assert!(rule.check(&actor(None), None, &active).is_ok());
        // ... keeping to the lifecycle: discontinued, yes; cancelled made active, no.
        let node = actor(None);
        assert!(rule.check(&node, Some(&active), &stopped).is_ok());
        let cancelled = json!({"intent": "order", "status": "cancelled"});
        let err = rule.check(&node, Some(&cancelled), &active).unwrap_err();
        assert_eq!(err, "a cancelled prescription cannot change any more");
    }
}
