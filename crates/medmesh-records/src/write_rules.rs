//! Rules a capability sets on how its own resources may be written through the plain FHIR
//! API. The medications capability, for one, makes a prescription active only by its
//! prescriber's signature, and moves it through its lifecycle through its own operations:
//! a `PUT` that did either would skip the signature and the checks. Such a rule is pure
//! (no I/O): it sees the actor, the current version and the new one.
//!
//! The rules apply to every write of the FHIR API (create, update, patch, conditional
//! writes, transaction and batch entries, imports). A capability's own writes through
//! [`crate::RecordCore`] have passed its checks already, and are not judged again.

use std::collections::HashMap;
use std::sync::Arc;

use medmesh_kernel::Actor;
use serde_json::Value;

/// A rule on the writes of one resource type through the FHIR API.
pub trait WriteRule: Send + Sync + 'static {
    /// Whether `actor` may write `after` over `before` (the current version; `None` for a
    /// create). `Err` says why not, in words for the client (no patient data).
    ///
    /// # Errors
    /// The refusal's reason.
    fn check(&self, actor: &Actor, before: Option<&Value>, after: &Value) -> Result<(), String>;
}

/// The rules, by resource type.
#[derive(Clone, Default)]
pub struct WriteRules(HashMap<String, Arc<dyn WriteRule>>);

impl WriteRules {
    /// The rule on `rt`, if one is set.
    pub fn get(&self, rt: &str) -> Option<&Arc<dyn WriteRule>> {
        self.0.get(rt)
    }

    /// Sets the rule on `rt`.
    pub fn set(&mut self, rt: &str, rule: Arc<dyn WriteRule>) {
        self.0.insert(rt.to_string(), rule);
    }
}

impl std::fmt::Debug for WriteRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// A rule for a type that a capability keeps: patients do not write it through the FHIR API
/// (they go through the capability's own API), and an existing resource is changed there by
/// the practitioner its `keeper` field names only (a plan's author, a message's sender).
/// Callers with no role (the node's channels, the operator's imports) are not judged.
#[derive(Debug, Clone, Copy)]
pub struct KeptBy {
    /// The JSON pointer of the keeper's reference (`/author/reference`).
    pub keeper: &'static str,
    /// The refusal a patient gets.
    pub to_patients: &'static str,
    /// The refusal anyone else gets.
    pub to_others: &'static str,
}

impl WriteRule for KeptBy {
    fn check(&self, actor: &Actor, before: Option<&Value>, _after: &Value) -> Result<(), String> {
        let Some(role) = actor.role() else {
            return Ok(());
        };
        if role == medmesh_auth::Role::Patient {
            return Err(self.to_patients.into());
        }
        let keeper = before
            .and_then(|b| b.pointer(self.keeper))
            .and_then(Value::as_str);
        let me = actor.clinician().map(|c| c.practitioner.as_str());
        match keeper {
            Some(k) if Some(k) != me => Err(self.to_others.into()),
            _ => Ok(()),
        }
    }
}
