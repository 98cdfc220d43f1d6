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
