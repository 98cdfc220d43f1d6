//! The policy decision point (PDP): the one place that decides who may do what to which data.
//!
//! Every access to clinical data asks [`Pdp::authorize`] first. A permit comes back as a
//! [`Grant`], a capability that only this crate can construct; the record service requires
//! one for each store call, so no code path can reach data around the PDP.
//!
//! This first version decides on SMART scopes (the identity half). The consent, care
//! relationship, security label and break-glass rules plug in here (issue: consent and trust
//! network), without changing any caller.

use medmesh_auth::{Scope, ScopeContext};

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Subject id (user, client, or `local-cli`).
    pub subject: String,
    /// Granted scopes.
    pub scopes: Vec<Scope>,
    /// Patient context, for patient-level scopes.
    pub patient: Option<String>,
}

impl Actor {
    /// The node operator acting through the local CLI (`medmesh import`), with full system scope.
    pub fn local_operator() -> Self {
        Self {
            subject: "local-cli".into(),
            scopes: vec![system_all()],
            patient: None,
        }
    }
}

fn system_all() -> Scope {
    Scope {
        context: ScopeContext::System,
        resource_type: None,
        permissions: medmesh_auth::Permissions::ALL,
        restriction: None,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    action: Action,
    resource_type: Option<String>,
    subject: String,
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
            allowed
                && resource_type.map_or(s.resource_type.is_none(), |t| s.covers_type(t))
                && s.restriction.is_none()
        };
        // Patient-context scopes need compartment enforcement on every channel, which arrives
        // with SMART login; until then they are refused rather than over-granted.
        let usable = actor
            .scopes
            .iter()
            .filter(|s| s.context != ScopeContext::Patient);
        let granted = usable.clone().any(permits);
        if granted {
            Ok(Grant {
                action,
                resource_type: resource_type.map(str::to_string),
                subject: actor.subject.clone(),
            })
        } else {
            Err(Denied {
                reason: format!(
                    "no scope permits {} on {}",
                    action.code(),
                    resource_type.unwrap_or("*")
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_auth::parse_scopes;

    fn actor(scopes: &str) -> Actor {
        Actor {
            subject: "u".into(),
            scopes: parse_scopes(scopes),
            patient: None,
        }
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
            "patient context not yet enforced: refuse"
        );
        assert!(
            pdp.authorize(&actor("openid"), Action::Read, Some("Patient"))
                .is_err()
        );
    }
}
