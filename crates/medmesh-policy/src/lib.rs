//! The policy decision point (PDP): the one place that decides who may do what to which data.
//!
//! Every access to clinical data asks [`Pdp::authorize`] first. A permit comes back as a
//! [`Grant`], a capability that only this crate can construct; the record service requires
//! one for each store call, so no code path can reach data around the PDP.
//!
//! This first version decides on SMART scopes (the identity half). The consent, care
//! relationship, security label and break-glass rules plug in here (issue: consent and trust
//! network), without changing any caller.

pub mod access;
pub mod consent;
pub mod labels;

use std::sync::Arc;

use medmesh_auth::role::DIRECTORY_TYPES;
use medmesh_auth::{Role, Scope, ScopeContext};
pub use medmesh_kernel::{Actor, Clinician};

use crate::access::{Edge, PatientAccess, Principal};
use crate::consent::ConsentRule;

/// Definitional types outside the Patient compartment. With the directory types they hold
/// no patient data, so anyone with a scope for them may read them (the practitioner who wrote
/// a note, the medication prescribed). Any other type outside the compartment (Bundle,
/// Binary, Device...) is treated as clinical, since it may carry some patient's data without
/// naming them in a compartment parameter.
pub const DEFINITIONAL_TYPES: &[&str] = &[
    "Medication",
    "MedicationKnowledge",
    "Substance",
    "ValueSet",
    "CodeSystem",
    "ConceptMap",
    "NamingSystem",
    "StructureDefinition",
    "SearchParameter",
    "OperationDefinition",
    "CapabilityStatement",
    "Questionnaire",
    "PlanDefinition",
    "ActivityDefinition",
    "Library",
    "Measure",
    "ObservationDefinition",
    "SpecimenDefinition",
];

/// Whether a type holds no patient data (directory and definitional types).
pub fn is_shared_type(rt: &str) -> bool {
    DIRECTORY_TYPES.contains(&rt) || DEFINITIONAL_TYPES.contains(&rt)
}

/// Types whose resources are open to their parties as well as to those who reach the
/// patient they name: a message (`Communication`) is read and written by its sender and
/// its recipients (a practitioner, or an organization or care team they belong to), so a
/// thread between clinicians that names no patient is theirs alone.
pub const PARTY_TYPES: &[&str] = &["Communication"];

/// The parties of a resource of a [`PARTY_TYPES`] type: its sender and recipients.
pub fn parties_of(rt: &str, resource: &serde_json::Value) -> Vec<String> {
    if !PARTY_TYPES.contains(&rt) {
        return Vec::new();
    }
    let reference = |v: &serde_json::Value| v["reference"].as_str().map(str::to_string);
    let mut out: Vec<String> = reference(&resource["sender"]).into_iter().collect();
    out.extend(
        resource["recipient"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(reference),
    );
    out
}

/// The patients a practitioner's grant reaches, each with its compiled access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// Per patient.
    pub patients: Vec<PatientAccess>,
    /// Every reference that stands for the actor (for shared-with tags).
    pub principals: Vec<String>,
}

impl Reach {
    /// The access to one patient, if any.
    pub fn patient(&self, id: &str) -> Option<&PatientAccess> {
        self.patients.iter().find(|p| p.patient() == id)
    }
}

/// What the store found around an actor: principals, edges, and the consents of the
/// patients the edges lead to.
#[derive(Debug, Clone, Default)]
pub struct ReachFacts {
    /// Principals (own reference, organizations, care teams).
    pub principals: Vec<String>,
    /// Edges to them.
    pub edges: Vec<Edge>,
    /// The patients' consents (shared, not copied, into each patient's access).
    pub consents: Vec<Arc<ConsentRule>>,
}

impl ReachFacts {
    /// The first instant after `now` at which an access compiled from these facts could
    /// judge differently with no write in between: an edge ends (or starts), or a consent
    /// provision's period begins or ends. `None` when nothing here changes with time.
    pub fn judged_again_at(&self, now: i64) -> Option<i64> {
        let mut times: Vec<i64> = Vec::new();
        for e in &self.edges {
            times.push(e.since);
            times.extend(e.until);
        }
        for c in &self.consents {
            c.root.period_bounds(&mut times);
        }
        times.into_iter().filter(|t| *t > now).min()
    }
}

/// What the actor wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Read one resource, a version, or history.
    Read,
    /// Search.
    Search,
    /// Create.
    Create,
    /// Update or patch.
    Update,
    /// Delete.
    Delete,
    /// Bulk export.
    Export,
}

impl Action {
    /// A stable code, for audit entries.
    pub fn code(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Search => "search",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Export => "export",
        }
    }
}

/// A permit for one action on one resource type. Only the PDP makes these.
///
/// A grant may be narrower than the action on the whole type: confined to one patient's
/// compartment, or to resources matching a granular scope's filter. The record service
/// applies both on every channel (read, search, includes, history, `$everything`, export).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    action: Action,
    resource_type: Option<String>,
    subject: String,
    compartment: Option<String>,
    filters: Vec<(String, String)>,
    reach: Option<Arc<Reach>>,
}

impl Grant {
    /// The permitted action.
    pub fn action(&self) -> Action {
        self.action
    }
    /// The resource type, or `None` for all types (system-level operations).
    pub fn resource_type(&self) -> Option<&str> {
        self.resource_type.as_deref()
    }
    /// Who it was granted to.
    pub fn subject(&self) -> &str {
        &self.subject
    }
    /// The patient whose compartment the grant is confined to, if any.
    pub fn compartment(&self) -> Option<&str> {
        self.compartment.as_deref()
    }
    /// Granular-scope filters (`category=laboratory`): a resource must match one of them.
    /// Empty: no filter.
    pub fn filters(&self) -> &[(String, String)] {
        &self.filters
    }
    /// The patients a practitioner's grant reaches (care relationships and consents), or
    /// `None` when the grant is not confined that way.
    pub fn reach(&self) -> Option<&Reach> {
        self.reach.as_deref()
    }
    /// Whether the grant reaches every resource of its type.
    pub fn is_unrestricted(&self) -> bool {
        self.compartment.is_none() && self.filters.is_empty() && self.reach.is_none()
    }
}

/// A permit to read audit entries: one patient's, or (node operators) the whole log.
/// Only the PDP makes these; no other crate can:
///
/// ```compile_fail
/// let forged = medmesh_policy::AuditView { patient: None };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditView {
    patient: Option<String>,
}

impl AuditView {
    /// The patient whose entries may be read; `None` for the whole log.
    pub fn patient(&self) -> Option<&str> {
        self.patient.as_deref()
    }
}

/// A permit to change a patient's notification inbox (mark items read): the patient's own.
/// Only the PDP makes these:
///
/// ```compile_fail
/// let forged = medmesh_policy::InboxOwner { patient: "p1".into() };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxOwner {
    patient: String,
}

/// A permit to read one's own staff inbox: the notifications of an account that is not a
/// patient's (booking requests, cancellations). Only the PDP makes these:
///
/// ```compile_fail
/// let forged = medmesh_policy::StaffInbox { key: String::new() };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffInbox {
    key: String,
}

impl StaffInbox {
    /// The inbox's key: `User/<account>`.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// A permit to read the break-glass review queue, with the declared reasons: org admins and
/// node operators. Only the PDP makes these:
///
/// ```compile_fail
/// let forged = medmesh_policy::ReviewRight { _private: () };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewRight {
    _private: (),
}

/// A permit to administer the node's encryption keys (rewrap, re-encrypt, report): the
/// local operator of the CLI only. Only the PDP makes these:
///
/// ```compile_fail
/// let forged = medmesh_policy::KeyAdmin { _private: () };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAdmin {
    _private: (),
}

/// A permit to see the state of the node's encryption keys (which KEK is current, how many
/// data keys each wraps, the re-encryption job): node admins and the CLI's operator. It
/// changes nothing and shows no key. Only the PDP makes these:
///
/// ```compile_fail
/// let forged = medmesh_policy::KeyStatusView { _private: () };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatusView {
    _private: (),
}

/// A permit to open the interface engine's stored messages (their text names patients) and
/// to replay them: node admins and the CLI's operator. Only the PDP makes these:
///
/// ```compile_fail
/// let forged = medmesh_policy::InterfaceMessages { _private: () };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceMessages {
    _private: (),
}

impl InboxOwner {
    /// The patient whose inbox it is.
    pub fn patient(&self) -> &str {
        &self.patient
    }
}

/// A denial, with the reason (for the audit log; clients see only a generic message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("access denied: {reason}")]
pub struct Denied {
    /// Why, in terms safe to log (no PHI).
    pub reason: String,
}

/// The policy decision point.
#[derive(Debug, Clone, Default)]
pub struct Pdp;

impl Pdp {
    /// Decides whether `actor` may read the audit entries of `patient` (`None`: the whole
    /// log). A patient reads their own; node operators (node admins, system scopes on
    /// AuditEvent) read anyone's. Everyone else is refused, practitioners included: who
    /// looked at a record is the patient's to see.
    ///
    /// # Errors
    /// [`Denied`].
    pub fn authorize_audit_view(
        &self,
        actor: &Actor,
        patient: Option<&str>,
    ) -> Result<AuditView, Denied> {
        let reads_audit = actor
            .scopes()
            .iter()
            .any(|s| s.permissions.read && s.covers_type("AuditEvent"));
        let operator = actor.role() == Some(Role::NodeAdmin)
            || (actor.role().is_none()
                && actor.scopes().iter().any(|s| {
                    s.context == ScopeContext::System
                        && s.permissions.read
                        && s.covers_type("AuditEvent")
                }));
        let own =
            actor.role() == Some(Role::Patient) && patient.is_some() && actor.patient() == patient;
        if reads_audit && (operator || own) {
            Ok(AuditView {
                patient: patient.map(str::to_string),
            })
        } else {
            Err(Denied {
                reason: "audit entries are for the patient and node operators".into(),
            })
        }
    }

    /// Decides whether `actor` may change `patient`'s inbox: only the patient themself.
    /// Operators may read it (through [`Self::authorize_audit_view`]) but not mark it read.
    ///
    /// # Errors
    /// [`Denied`].
    pub fn authorize_inbox(&self, actor: &Actor, patient: &str) -> Result<InboxOwner, Denied> {
        if actor.role() == Some(Role::Patient) && actor.patient() == Some(patient) {
            Ok(InboxOwner {
                patient: patient.to_string(),
            })
        } else {
            Err(Denied {
                reason: "only the patient marks their notifications read".into(),
            })
        }
    }

    /// Decides whether `actor` may read their own staff inbox: any signed-in account with a
    /// role other than patient (patients have the patient inbox).
    ///
    /// # Errors
    /// [`Denied`].
    pub fn authorize_staff_inbox(&self, actor: &Actor) -> Result<StaffInbox, Denied> {
        match actor.role() {
            Some(r) if r != Role::Patient => Ok(StaffInbox {
                key: format!("User/{}", actor.subject()),
            }),
            _ => Err(Denied {
                reason: "the staff inbox is for staff accounts".into(),
            }),
        }
    }

    /// Decides whether `actor` may do `action` on `resource_type` (`None`: every type).
    ///
    /// # Errors
    /// [`Denied`] with the reason.
    pub fn authorize(
        &self,
        actor: &Actor,
        action: Action,
        resource_type: Option<&str>,
    ) -> Result<Grant, Denied> {
        let permits = |s: &Scope| {
            let p = s.permissions;
            let allowed = match action {
                Action::Read => p.read,
                Action::Search => p.search,
                Action::Create => p.create,
                Action::Update => p.update,
                Action::Delete => p.delete,
                Action::Export => p.read && p.search,
            };
            allowed && resource_type.map_or(s.resource_type.is_none(), |t| s.covers_type(t))
        };
        let deny = |why: &str| Denied {
            reason: format!(
                "{why}: {} on {}",
                action.code(),
                resource_type.unwrap_or("*")
            ),
        };
        let permitting: Vec<&Scope> = actor.scopes().iter().filter(|s| permits(s)).collect();
        if permitting.is_empty() {
            return Err(deny("no scope permits"));
        }
        // A patient user is confined to their own record whatever the scopes say; anyone
        // else is confined only when nothing but patient-context scopes permit the action.
        let confined = actor.role() == Some(Role::Patient)
            || permitting
                .iter()
                .all(|s| s.context == ScopeContext::Patient);
        let compartment = if confined {
            Some(
                actor
                    .patient()
                    .map(str::to_string)
                    .ok_or_else(|| deny("patient scope without a patient context"))?,
            )
        } else {
            None
        };
        // The scopes the grant rests on: all of them when confined, else the unconfined ones.
        let used: Vec<&Scope> = permitting
            .into_iter()
            .filter(|s| confined || s.context != ScopeContext::Patient)
            .collect();
        let filters = if used.iter().any(|s| s.restriction.is_none()) {
            Vec::new()
        } else {
            let mut f: Vec<(String, String)> =
                used.iter().filter_map(|s| s.restriction.clone()).collect();
            f.sort();
            f.dedup();
            f
        };
        // Roles without a care role see no clinical data, whatever their scopes.
        let clinical = resource_type.is_none_or(|t| !is_shared_type(t));
        if clinical {
            match actor.role() {
                Some(Role::OrgAdmin | Role::Researcher) => {
                    return Err(deny("no clinical access for this role"));
                }
                Some(Role::Practitioner | Role::Pharmacist)
                    if !actor.clinician().is_some_and(|c| c.verified) =>
                {
                    return Err(deny("practitioner not verified"));
                }
                _ => {}
            }
        }
        Ok(Grant {
            action,
            resource_type: resource_type.map(str::to_string),
            subject: actor.subject().to_string(),
            compartment,
            filters,
            reach: None,
        })
    }

    /// An unrestricted grant for the node's own bookkeeping after a domain check has passed
    /// (accepting a referral updates the Task on the owner's behalf). Never for a request's
    /// own access: callers obtain those through [`Pdp::authorize`].
    pub fn internal_grant(&self, resource_type: &str) -> Grant {
        Grant {
            action: Action::Update,
            resource_type: Some(resource_type.to_string()),
            subject: "medmesh".into(),
            compartment: None,
            filters: Vec::new(),
            reach: None,
        }
    }

    /// Decides whether `actor` may review break-glass declarations: org admins and node
    /// operators.
    ///
    /// # Errors
    /// [`Denied`].
    pub fn authorize_review(&self, actor: &Actor) -> Result<ReviewRight, Denied> {
        let operator = actor.role().is_none()
            && actor
                .scopes()
                .iter()
                .any(|s| s.context == ScopeContext::System && s.permissions.read);
        if matches!(actor.role(), Some(Role::OrgAdmin | Role::NodeAdmin)) || operator {
            Ok(ReviewRight { _private: () })
        } else {
            Err(Denied {
                reason: "break-glass review is for administrators".into(),
            })
        }
    }

    /// Decides whether `actor` may administer the node's encryption keys: only an actor with
    /// no role and full system scope, which the CLI's local operator is and no signed-in user
    /// is.
    ///
    /// # Errors
    /// [`Denied`].
    pub fn authorize_key_admin(&self, actor: &Actor) -> Result<KeyAdmin, Denied> {
        let full_system = actor.scopes().iter().any(|s| {
            s.context == ScopeContext::System
                && s.resource_type.is_none()
                && s.restriction.is_none()
                && s.permissions == medmesh_auth::Permissions::ALL
        });
        if actor.role().is_none() && full_system {
            Ok(KeyAdmin { _private: () })
        } else {
            Err(Denied {
                reason: "key administration is for the node's operator".into(),
            })
        }
    }

    /// Decides whether `actor` may see the state of the node's keys: a node admin, or the
    /// CLI's operator.
    ///
    /// # Errors
    /// [`Denied`].
    pub fn authorize_key_status(&self, actor: &Actor) -> Result<KeyStatusView, Denied> {
        if actor.role() == Some(Role::NodeAdmin) || self.authorize_key_admin(actor).is_ok() {
            Ok(KeyStatusView { _private: () })
        } else {
            Err(Denied {
                reason: "key status is for node administrators".into(),
            })
        }
    }

    /// Decides whether `actor` may open and replay the interface engine's stored messages:
    /// a node admin, or the CLI's operator.
    ///
    /// # Errors
    /// [`Denied`].
    pub fn authorize_interface_messages(&self, actor: &Actor) -> Result<InterfaceMessages, Denied> {
        if actor.role() == Some(Role::NodeAdmin) || self.authorize_key_admin(actor).is_ok() {
            Ok(InterfaceMessages { _private: () })
        } else {
            Err(Denied {
                reason: "interface messages are for node administrators".into(),
            })
        }
    }

    /// Whether a grant for `resource_type` must be confined to the actor's care
    /// relationships and the patients' consents (practitioners, on clinical types).
    pub fn needs_reach(&self, actor: &Actor, resource_type: Option<&str>) -> bool {
        actor.role().is_some_and(Role::is_clinician)
            && resource_type.is_none_or(|t| !is_shared_type(t))
    }

    /// Confines a grant to the patients the facts open, each as far as their consents and
    /// labels allow. A patient-context grant keeps only its patient.
    pub fn confine_to_reach(
        &self,
        grant: Grant,
        actor: &Actor,
        facts: ReachFacts,
        now: i64,
    ) -> Grant {
        let reach = self.compile_reach(actor, facts, grant.compartment(), now);
        self.with_reach(grant, reach)
    }

    /// Compiles what the facts open to `actor` at `now`, limited to `compartment` when the
    /// grant has one. The result holds until the facts change (a write to the trust graph
    /// or a consent) or until [`ReachFacts::judged_again_at`], whichever comes first; within
    /// that, it may be kept and used for any grant of the same actor and compartment.
    pub fn compile_reach(
        &self,
        actor: &Actor,
        facts: ReachFacts,
        compartment: Option<&str>,
        now: i64,
    ) -> Arc<Reach> {
        let principal = Principal {
            practitioner: actor.clinician().map(|c| c.practitioner.clone()),
            references: facts.principals.clone(),
        };
        let mut patients: Vec<String> = facts.edges.iter().map(|e| e.patient.clone()).collect();
        patients.sort();
        patients.dedup();
        if let Some(only) = compartment {
            patients.retain(|p| p == only);
        }
        let compiled = patients
            .iter()
            .filter_map(|p| {
                PatientAccess::compile(p, &principal, &facts.edges, &facts.consents, now)
            })
            .collect();
        Arc::new(Reach {
            patients: compiled,
            principals: facts.principals,
        })
    }

    /// Confines a grant to a compiled reach (see [`Self::compile_reach`]).
    pub fn with_reach(&self, mut grant: Grant, reach: Arc<Reach>) -> Grant {
        grant.reach = Some(reach);
        grant
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_auth::parse_scopes;

    fn actor(scopes: &str) -> Actor {
        actor_as(scopes, None, None)
    }

    #[allow(clippy::disallowed_methods)] // A test's actor.
    fn actor_as(scopes: &str, patient: Option<&str>, role: Option<Role>) -> Actor {
        Actor::from_verified_token(medmesh_kernel::VerifiedIdentity {
            subject: "u".into(),
            scopes: parse_scopes(scopes),
            patient: patient.map(str::to_string),
            role,
            clinician: None,
        })
    }

    #[test]
    fn scopes_decide() {
        let pdp = Pdp;
        assert!(
            pdp.authorize(&actor("system/*.*"), Action::Delete, Some("Patient"))
                .is_ok()
        );
        assert!(
            pdp.authorize(&actor("system/Patient.rs"), Action::Read, Some("Patient"))
                .is_ok()
        );
        assert!(
            pdp.authorize(
                &actor("system/Patient.rs"),
                Action::Read,
                Some("Observation")
            )
            .is_err()
        );
        assert!(
            pdp.authorize(&actor("system/Patient.rs"), Action::Create, Some("Patient"))
                .is_err()
        );
        assert!(
            pdp.authorize(&actor("system/Patient.rs"), Action::Export, None)
                .is_err()
        );
        assert!(
            pdp.authorize(&actor("system/*.rs"), Action::Export, None)
                .is_ok()
        );
        assert!(
            pdp.authorize(&actor("patient/*.*"), Action::Read, Some("Patient"))
                .is_err(),
            "a patient scope without a patient context"
        );
        let p = actor_as("patient/*.rs user/Organization.rs", Some("p1"), None);
        let g = pdp
            .authorize(&p, Action::Read, Some("Observation"))
            .unwrap();
        assert_eq!(g.compartment(), Some("p1"));
        let g = pdp
            .authorize(&p, Action::Read, Some("Organization"))
            .unwrap();
        assert!(g.is_unrestricted(), "a user scope is not confined");
        let p = actor_as(
            "patient/*.rs user/Organization.rs",
            Some("p1"),
            Some(Role::Patient),
        );
        let g = pdp
            .authorize(&p, Action::Read, Some("Organization"))
            .unwrap();
        assert_eq!(
            g.compartment(),
            Some("p1"),
            "a patient user is always confined"
        );
        let lab = actor_as(
            "patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs",
            Some("p1"),
            None,
        );
        let g = pdp
            .authorize(&lab, Action::Search, Some("Observation"))
            .unwrap();
        assert_eq!(g.filters().len(), 2);
        assert!(
            pdp.authorize(&lab, Action::Create, Some("Observation"))
                .is_err()
        );
        assert!(
            pdp.authorize(&actor("openid"), Action::Read, Some("Patient"))
                .is_err()
        );
    }
}
