//! Audit entries. Every access to clinical data produces one; writes commit theirs in the same
//! transaction as the data. The entry never holds clinical content: who, what (type and id),
//! when, how it went, and the request id.
//!
//! The log is a Merkle tree ([`merkle`]) whose heads are signed as checkpoints
//! ([`checkpoint`]); [`verify`] re-derives it from storage. Each entry's leaf is its canonical
//! JSON ([`AuditEntry::to_leaf`]), which is also what storage keeps, so the bytes a patient is
//! shown are the bytes that were hashed.

pub mod beside;
pub mod chain;
pub mod checkpoint;
pub mod map;
pub mod merkle;
pub mod verify;
pub mod witness;

pub use beside::StoredBeside;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// How the access ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Succeeded.
    Success,
    /// Refused by policy.
    Denied,
    /// Failed (bad input, conflict, not found).
    Failed,
}

impl Outcome {
    /// A stable code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
            Self::Failed => "failed",
        }
    }
    /// The FHIR AuditEvent.outcome code.
    fn fhir(self) -> &'static str {
        match self {
            Self::Success => "0",
            Self::Denied => "4",
            Self::Failed => "8",
        }
    }
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Microseconds since the epoch.
    pub time_micros: i64,
    /// The request's operation id.
    pub operation_id: String,
    /// Who (subject of the token, or `local-cli`).
    pub actor: String,
    /// What (`read`, `search`, `create`...).
    pub action: String,
    /// Resource type, if one.
    pub resource_type: Option<String>,
    /// What was touched: resource references (`Type/id`, or `Type/id/_history/v`); for
    /// searches, every resource returned. Other objects (an export job) by their bare id.
    pub resource_ids: Vec<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// Source IP, when over the network.
    pub source_ip: Option<String>,
    /// The patients whose data the access touched (or would have), for their own log view.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patients: Vec<String>,
    /// Purpose of use (`TREAT`, `ETREAT`, `HRESCH`, `HPAYMT`), when one was declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// What the access rested on: `CareTeam/ct1`, `Consent/c1`, `ServiceRequest/r1`,
    /// `break-glass/<id>`. Empty for the patient's own access and for system actors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub basis: Vec<String>,
    /// Why it was denied, in terms safe to log (no PHI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For each patient in `patients`, this entry's place in their chain: set by the
    /// appender ([`chain::Chainer`]), never by the caller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<chain::ChainLink>,
}

impl AuditEntry {
    /// A new entry with the required fields; the optional ones start empty.
    pub fn new(
        time_micros: i64,
        operation_id: &str,
        actor: &str,
        action: &str,
        outcome: Outcome,
    ) -> Self {
        Self {
            time_micros,
            operation_id: operation_id.to_string(),
            actor: actor.to_string(),
            action: action.to_string(),
            resource_type: None,
            resource_ids: Vec::new(),
            outcome,
            source_ip: None,
            patients: Vec::new(),
            purpose: None,
            basis: Vec::new(),
            reason: None,
            chain: Vec::new(),
        }
    }

    /// The same entry with a denial reason.
    pub fn with_reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_string());
        self
    }

    /// Whether the access was made under break-glass.
    pub fn is_break_glass(&self) -> bool {
        self.basis.iter().any(|b| b.starts_with("break-glass/"))
    }

    /// The canonical bytes: the Merkle leaf, and what storage keeps.
    pub fn to_leaf(&self) -> Vec<u8> {
        // Serializing a struct of strings, numbers and vectors cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an entry back from its leaf bytes.
    ///
    /// # Errors
    /// When the bytes are not an entry.
    pub fn from_leaf(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Renders the entry as a FHIR AuditEvent in the shape of IHE BALP.
    pub fn to_audit_event(&self, recorded: &str) -> Value {
        let action = match self.action.as_str() {
            "create" => "C",
            "update" | "patch" => "U",
            "delete" => "D",
            "read" | "vread" | "search" | "export" | "history" | "everything" => "R",
            _ => "E",
        };
        let entities: Vec<Value> = self
            .resource_ids
            .iter()
            .map(|id| {
                if id.contains('/') {
                    json!({"what": {"reference": id}})
                } else {
                    json!({"what": {"identifier": {"value": id}}})
                }
            })
            .collect();
        let mut extension =
            vec![json!({"url": "urn:medmesh:operation-id", "valueString": self.operation_id})];
        extension.extend(
            self.basis
                .iter()
                .map(|b| json!({"url": "urn:medmesh:access-basis", "valueString": b})),
        );
        if let Some(r) = &self.reason {
            extension.push(json!({"url": "urn:medmesh:denial-reason", "valueString": r}));
        }
        let purpose: Vec<Value> = self
            .purpose
            .iter()
            .map(|p| json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": p}]}))
            .collect();
        let mut entities = entities;
        entities.extend(self.patients.iter().map(|p| {
            json!({"what": {"reference": format!("Patient/{p}")},
                   "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}})
        }));
        json!({
            "resourceType": "AuditEvent",
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
            "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": self.action}],
            "action": action,
            "recorded": recorded,
            "outcome": self.outcome.fhir(),
            "purposeOfEvent": purpose,
            "agent": [{"who": {"identifier": {"value": self.actor}}, "requestor": true,
                       "network": self.source_ip.as_ref().map(|ip| json!({"address": ip, "type": "2"}))}],
            "source": {"observer": {"display": "medmesh"}},
            "entity": entities,
            "extension": extension,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_are_references_or_identifiers() {
        let mut e = AuditEntry::new(0, "op", "u", "search", Outcome::Success);
        e.resource_type = Some("Observation".into());
        e.resource_ids = vec!["Observation/o1".into(), "Patient/p1".into(), "job-1".into()];
        assert_eq!(AuditEntry::from_leaf(&e.to_leaf()).unwrap(), e);
        let v = e.to_audit_event("2026-01-01T00:00:00Z");
        assert_eq!(v["entity"][0]["what"]["reference"], "Observation/o1");
        assert_eq!(
            v["entity"][1]["what"]["reference"], "Patient/p1",
            "an included resource keeps its own type"
        );
        assert_eq!(v["entity"][2]["what"]["identifier"]["value"], "job-1");
        assert_eq!(v["action"], "R");
    }
}
