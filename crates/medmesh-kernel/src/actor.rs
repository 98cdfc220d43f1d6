//! Who is asking.

use medmesh_auth::{Permissions, Role, Scope, ScopeContext};

/// A practitioner as their account describes them, looked up on every request so a
/// suspension takes effect at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clinician {
    /// `Practitioner/x`.
    pub practitioner: String,
    /// `Organization/o` they work for.
    pub organizations: Vec<String>,
    /// Whether their organization has verified them (and not suspended them).
    pub verified: bool,
}

/// What a verified credential (an access token or a session) says about its holder. It grants
/// nothing by itself: only [`Actor::from_verified_token`] and [`Actor::from_verified_session`]
/// turn it into an actor, and those are called only where the credential was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    /// Subject id (user or client).
    pub subject: String,
    /// Granted scopes.
    pub scopes: Vec<Scope>,
    /// Patient context, for patient-level scopes; for a patient user, their own record.
    pub patient: Option<String>,
    /// The user's role; `None` for backend services.
    pub role: Option<Role>,
    /// For a practitioner user: who they are, where they work, whether verified.
    pub clinician: Option<Clinician>,
}

/// Who is asking: the one input of every decision the policy decision point makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    subject: String,
    scopes: Vec<Scope>,
    patient: Option<String>,
    role: Option<Role>,
    clinician: Option<Clinician>,
}

impl Actor {
    /// The holder of an access token this node (or a trusted external provider) signed and
    /// that was verified just now.
    pub fn from_verified_token(who: VerifiedIdentity) -> Self {
        Self::from(who)
    }

    /// The account behind a live session whose cookie (and, for the API, CSRF token) was
    /// checked just now.
    pub fn from_verified_session(who: VerifiedIdentity) -> Self {
        Self::from(who)
    }

    /// The holder of a private calendar feed's token, checked just now: the feed's route
    /// gives it read access to appointments (and the directory) only.
    pub fn from_verified_feed(who: VerifiedIdentity) -> Self {
        Self::from(who)
    }

    /// The node operator acting through the local CLI (`medmesh import`), with full system
    /// scope. Only the binary's commands act as the operator; no network request does.
    pub fn local_operator() -> Self {
        Self {
            subject: "local-cli".into(),
            scopes: vec![Scope {
                context: ScopeContext::System,
                resource_type: None,
                permissions: Permissions::ALL,
                restriction: None,
            }],
            patient: None,
            role: None,
            clinician: None,
        }
    }

    /// A configured HL7 v2 sender, recognised just now by its source address or its
    /// credentials, with the system scopes its messages' mapping needs. Only the interface
    /// engine's sender check makes one.
    pub fn from_verified_sender(sender: &str, scopes: Vec<Scope>) -> Self {
        Self {
            subject: format!("hl7v2-sender:{sender}"),
            scopes,
            patient: None,
            role: None,
            clinician: None,
        }
    }

    /// A configured outbound HL7 v2 channel reading the record's change feed, with the
    /// system read scopes the messages it builds need. Only the interface engine makes one,
    /// from the node's configuration.
    pub fn from_configured_channel(channel: &str, scopes: Vec<Scope>) -> Self {
        Self {
            subject: format!("hl7v2-channel:{channel}"),
            scopes,
            patient: None,
            role: None,
            clinician: None,
        }
    }

    /// The owner of a FHIR Subscription, as its account or client stands now, with the
    /// scopes it was granted when it subscribed cut to what it may have now. Only the
    /// subscriptions' directory of owners makes one, to ask the PDP whether the owner may
    /// be told of an event.
    pub fn from_standing_subscription(who: VerifiedIdentity) -> Self {
        Self::from(who)
    }

    /// The node's scheduler, acting on its own timers (a waiting-list offer that lapsed is
    /// passed to the next patient). It holds no scopes: what it writes, it writes with the
    /// PDP's internal grant for its own bookkeeping. Only the scheduling service makes one.
    pub fn scheduling_worker() -> Self {
        Self {
            subject: "scheduling".into(),
            scopes: Vec::new(),
            patient: None,
            role: None,
            clinician: None,
        }
    }

    /// The node's dose reminders: reads the active prescriptions and their patients (with
    /// `scopes`, read and search on those types) to queue reminders of the doses to come.
    /// Only the medication service makes one.
    pub fn medication_reminders(scopes: Vec<Scope>) -> Self {
        Self {
            subject: "medication-reminders".into(),
            scopes,
            patient: None,
            role: None,
            clinician: None,
        }
    }

    /// The node's adherence alerts: reads the medication records of the patients of the
    /// organizations that opted in, and raises a review Task for the care team when a
    /// prescription's days covered fall under the threshold (with `scopes`). Only the
    /// medication service makes one.
    pub fn adherence_alerts(scopes: Vec<Scope>) -> Self {
        Self {
            subject: "adherence-alerts".into(),
            scopes,
            patient: None,
            role: None,
            clinician: None,
        }
    }

    /// The medication loop's follow-up of prescriptions and dispenses recorded from
    /// elsewhere (HL7 v2 pharmacy messages): the safety checks' findings recorded, reminders
    /// withdrawn, a prescription dispensed in full completed (with `scopes`). Only the
    /// medication service makes one.
    pub fn medication_follow_up(scopes: Vec<Scope>) -> Self {
        Self {
            subject: "medication-follow-up".into(),
            scopes,
            patient: None,
            role: None,
            clinician: None,
        }
    }

    /// The reader of the record's change feed for FHIR Subscriptions, with read scopes on
    /// the topics' types. Only the subscription service makes one.
    pub fn subscription_feed(scopes: Vec<Scope>) -> Self {
        Self {
            subject: "fhir-subscriptions".into(),
            scopes,
            patient: None,
            role: None,
            clinician: None,
        }
    }

    /// Whoever sent an HL7 v2 message no configured sender matches: no scopes, so it can do
    /// nothing; it exists so the refusal can be audited with the source address.
    pub fn unrecognised_sender() -> Self {
        Self {
            subject: "hl7v2-sender:unknown".into(),
            scopes: Vec::new(),
            patient: None,
            role: None,
            clinician: None,
        }
    }

    fn from(who: VerifiedIdentity) -> Self {
        Self {
            subject: who.subject,
            scopes: who.scopes,
            patient: who.patient,
            role: who.role,
            clinician: who.clinician,
        }
    }

    /// Subject id (user, client, or `local-cli`).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Granted scopes.
    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    /// Patient context, for patient-level scopes; for a patient user, their own record.
    pub fn patient(&self) -> Option<&str> {
        self.patient.as_deref()
    }

    /// The user's role; `None` for backend services and the node CLI.
    pub fn role(&self) -> Option<Role> {
        self.role
    }

    /// For a practitioner user: who they are, where they work, whether verified.
    pub fn clinician(&self) -> Option<&Clinician> {
        self.clinician.as_ref()
    }

    /// The references the trust graph starts from: the practitioner and their organizations.
    pub fn seeds(&self) -> Vec<String> {
        self.clinician
            .iter()
            .flat_map(|c| {
                std::iter::once(c.practitioner.clone()).chain(c.organizations.iter().cloned())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // Tests make their own actors.
    use super::*;

    #[test]
    fn the_local_operator_has_system_scope_and_no_role() {
        let op = Actor::local_operator();
        assert_eq!(op.subject(), "local-cli");
        assert_eq!(op.role(), None);
        assert_eq!(op.patient(), None);
        assert!(matches!(op.scopes()[0].context, ScopeContext::System));
    }

    #[test]
    fn seeds_are_the_practitioner_then_their_organizations() {
        let a = Actor::from_verified_session(VerifiedIdentity {
            subject: "u1".into(),
            scopes: vec![],
            patient: None,
            role: Some(Role::Practitioner),
            clinician: Some(Clinician {
                practitioner: "Practitioner/p".into(),
                organizations: vec!["Organization/o".into()],
                verified: true,
            }),
        });
        assert_eq!(a.seeds(), ["Practitioner/p", "Organization/o"]);
    }
}
