//! Roles and the scope ceiling each role sets: scopes narrow what a role allows, never widen it.

use std::fmt;
use std::str::FromStr;

use crate::scope::{Permissions, Scope, ScopeContext};

/// A user's role on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A patient, linked to one Patient resource.
    Patient,
    /// A practitioner, linked to Practitioner and PractitionerRole resources.
    Practitioner,
    /// A pharmacist, linked to a Practitioner resource and the pharmacy (an Organization) they
    /// dispense for: they see the medication record of patients with prescriptions routed
    /// there, and dispense.
    Pharmacist,
    /// An organization administrator (no clinical data by default).
    OrgAdmin,
    /// A researcher (de-identified exports, later).
    Researcher,
    /// The node administrator.
    NodeAdmin,
}

/// A practitioner's verification status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Verification {
    /// Not yet checked: sees nothing clinical.
    #[default]
    Unverified,
    /// Checked by an org admin.
    Verified,
    /// Suspended: sees nothing clinical.
    Suspended,
}

/// A role or status name that is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role or status '{0}'")]
pub struct UnknownRole(pub String);

impl Role {
    /// Every role.
    pub const ALL: [Role; 6] = [
        Role::Patient,
        Role::Practitioner,
        Role::Pharmacist,
        Role::OrgAdmin,
        Role::Researcher,
        Role::NodeAdmin,
    ];

    /// The stable code (`patient`, `practitioner`, `pharmacist`, `org-admin`, `researcher`,
    /// `node-admin`).
    pub fn code(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Practitioner => "practitioner",
            Role::Pharmacist => "pharmacist",
            Role::OrgAdmin => "org-admin",
            Role::Researcher => "researcher",
            Role::NodeAdmin => "node-admin",
        }
    }

    /// Whether the role works with a Practitioner record and an organization's verification
    /// (practitioners and pharmacists).
    pub fn is_clinician(self) -> bool {
        matches!(self, Role::Practitioner | Role::Pharmacist)
    }

    /// Whether login needs a second factor (TOTP) for this role.
    pub fn requires_totp(self) -> bool {
        !matches!(self, Role::Patient)
    }

    /// The broadest clinical scopes this role may hold. Requested scopes are intersected
    /// with these (see [`narrow`]).
    pub fn ceiling(self, verification: Verification) -> Vec<Scope> {
        let all = |context, permissions| Scope {
            context,
            resource_type: None,
            permissions,
            restriction: None,
        };
        let typed = |context, t: &str, permissions| Scope {
            context,
            resource_type: Some(t.to_string()),
            permissions,
            restriction: None,
        };
        // A patient reads all of their record and may add to it, but deletes nothing.
        let patient_perms = Permissions {
            delete: false,
            ..Permissions::ALL
        };
        let read_search = Permissions {
            read: true,
            search: true,
            ..Permissions::default()
        };
        match (self, verification) {
            (Role::Patient, _) => vec![
                all(ScopeContext::Patient, patient_perms),
                all(ScopeContext::User, patient_perms),
            ],
            (Role::Practitioner, Verification::Verified) => vec![
                all(ScopeContext::Patient, Permissions::ALL),
                all(ScopeContext::User, Permissions::ALL),
            ],
            // A pharmacist reads a patient's medication record and dispenses; which patients
            // is the PDP's reach (the prescriptions routed to their pharmacy).
            (Role::Pharmacist, Verification::Verified) => PHARMACY_READ_TYPES
                .iter()
                .chain(DIRECTORY_TYPES.iter())
                .map(|t| typed(ScopeContext::User, t, read_search))
                .chain(std::iter::once(typed(
                    ScopeContext::User,
                    "MedicationDispense",
                    Permissions {
                        delete: false,
                        ..Permissions::ALL
                    },
                )))
                .collect(),
            // Unverified or suspended practitioners and pharmacists see directory data only.
            (Role::Practitioner | Role::Pharmacist, _) | (Role::Researcher, _) => DIRECTORY_TYPES
                .iter()
                .map(|t| typed(ScopeContext::User, t, read_search))
                .collect(),
            (Role::OrgAdmin, _) => DIRECTORY_TYPES
                .iter()
                .map(|t| typed(ScopeContext::User, t, Permissions::ALL))
                .collect(),
            (Role::NodeAdmin, _) => vec![
                all(ScopeContext::User, Permissions::ALL),
                all(ScopeContext::System, Permissions::ALL),
            ],
        }
    }
}

/// Directory resources: who works where, when they can be booked, and which insurance plans
/// they take. They hold no patient data.
pub const DIRECTORY_TYPES: [&str; 9] = [
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Location",
    "HealthcareService",
    "Endpoint",
    "Schedule",
    "Slot",
    "InsurancePlan",
];

/// What a pharmacist reads of a patient's record: the medication record, the allergies, the
/// overrides a prescriber recorded and the signatures.
pub const PHARMACY_READ_TYPES: [&str; 8] = [
    "Patient",
    "MedicationRequest",
    "MedicationDispense",
    "MedicationStatement",
    "Medication",
    "AllergyIntolerance",
    "DetectedIssue",
    "Provenance",
];

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.code() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

impl Verification {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            Verification::Unverified => "unverified",
            Verification::Verified => "verified",
            Verification::Suspended => "suspended",
        }
    }
}

impl FromStr for Verification {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "unverified" => Ok(Self::Unverified),
            "verified" => Ok(Self::Verified),
            "suspended" => Ok(Self::Suspended),
            _ => Err(UnknownRole(s.to_string())),
        }
    }
}

/// Intersects requested scopes with a ceiling: the result never permits anything the
/// ceiling does not. Requested scopes outside the ceiling are dropped or cut down.
pub fn narrow(requested: &[Scope], ceiling: &[Scope]) -> Vec<Scope> {
    let mut out: Vec<Scope> = Vec::new();
    for r in requested {
        for c in ceiling {
            if let Some(s) = r.intersect(c)
                && !out.contains(&s)
            {
                out.push(s);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scope::parse_scopes;
    use proptest::prelude::*;

    fn permits(scopes: &[Scope], ctx: ScopeContext, t: &str, p: Permissions) -> bool {
        scopes.iter().any(|s| {
            s.context == ctx
                && s.covers_type(t)
                && (!p.read || s.permissions.read)
                && (!p.search || s.permissions.search)
                && (!p.create || s.permissions.create)
                && (!p.update || s.permissions.update)
                && (!p.delete || s.permissions.delete)
        })
    }

    #[test]
    fn roles_round_trip_and_set_ceilings() {
        for r in Role::ALL {
            assert_eq!(r.code().parse::<Role>().unwrap(), r);
        }
        assert!(Role::Practitioner.requires_totp() && !Role::Patient.requires_totp());
        let got = narrow(
            &parse_scopes("user/*.cruds system/*.rs"),
            &Role::Practitioner.ceiling(Verification::Suspended),
        );
        assert!(got.iter().all(|s| {
            s.resource_type
                .as_deref()
                .is_some_and(|t| DIRECTORY_TYPES.contains(&t))
        }));
        assert!(got.iter().all(|s| !s.permissions.create));
        let got = narrow(
            &parse_scopes("patient/Observation.cruds?category=laboratory"),
            &Role::Patient.ceiling(Verification::Unverified),
        );
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].to_string(),
            "patient/Observation.crus?category=laboratory"
        );
        assert!(
            narrow(
                &parse_scopes("system/*.rs"),
                &Role::Patient.ceiling(Verification::Unverified)
            )
            .is_empty()
        );
    }

    fn arb_scope() -> impl Strategy<Value = Scope> {
        (
            0..3usize,
            prop_oneof![
                Just("*"),
                Just("Patient"),
                Just("Observation"),
                Just("Organization")
            ],
            1u8..32,
            proptest::bool::ANY,
        )
            .prop_map(|(ctx, t, mask, restricted)| {
                let perms: String = "cruds"
                    .chars()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, c)| c)
                    .collect();
                let mut s = format!("{}/{t}.{perms}", ["patient", "user", "system"][ctx]);
                if restricted {
                    s.push_str("?category=laboratory");
                }
                Scope::parse(&s).unwrap()
            })
    }

    proptest! {
        /// Narrowing never widens: whatever the narrowed set permits, both the request and
        /// the ceiling permit.
        #[test]
        fn narrowing_never_widens(req in proptest::collection::vec(arb_scope(), 0..5), role in 0..5usize, ver in 0..3usize,
                                  ctx in 0..3usize, t in prop_oneof![Just("Patient"), Just("Observation"), Just("Organization")], mask in 1u8..32) {
            let role = Role::ALL[role];
            let ver = [Verification::Unverified, Verification::Verified, Verification::Suspended][ver];
            let ceiling = role.ceiling(ver);
            let got = narrow(&req, &ceiling);
            let ctx = [ScopeContext::Patient, ScopeContext::User, ScopeContext::System][ctx];
            let p = Permissions { create: mask & 1 != 0, read: mask & 2 != 0, update: mask & 4 != 0, delete: mask & 8 != 0, search: mask & 16 != 0 };
            if permits(&got, ctx, t, p) {
                prop_assert!(permits(&req, ctx, t, p));
                prop_assert!(permits(&ceiling, ctx, t, p));
            }
            // And narrowing is idempotent.
            prop_assert_eq!(narrow(&got, &ceiling), got.clone());
        }
    }
}
