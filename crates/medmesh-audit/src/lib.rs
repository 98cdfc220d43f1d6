//! Audit entries. Every access to clinical data produces one; writes commit theirs in the same
//! transaction as the data. The entry never holds clinical content: who, what (type and id),
//! when, how it went, and the request id. The tamper-evident Merkle log builds on these rows.

pub mod merkle;

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
}

impl AuditEntry {
    /// Renders the entry as a FHIR AuditEvent in the shape of IHE BALP.
    pub fn to_audit_event(&self, recorded: &str) -> Value {
        let action = match self.action.as_str() {
            "create" => "C",
            "update" | "patch" => "U",
            "delete" => "D",
            "read" | "search" | "export" | "history" => "R",
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
        json!({
            "resourceType": "AuditEvent",
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
            "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": self.action}],
            "action": action,
            "recorded": recorded,
            "outcome": self.outcome.fhir(),
            "agent": [{"who": {"identifier": {"value": self.actor}}, "requestor": true,
                       "network": self.source_ip.as_ref().map(|ip| json!({"address": ip, "type": "2"}))}],
            "source": {"observer": {"display": "medmesh"}},
            "entity": entities,
            "extension": [{"url": "urn:medmesh:operation-id", "valueString": self.operation_id}],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_are_references_or_identifiers() {
        let e = AuditEntry {
            time_micros: 0,
            operation_id: "op".into(),
            actor: "u".into(),
            action: "search".into(),
            resource_type: Some("Observation".into()),
            resource_ids: vec!["Observation/o1".into(), "Patient/p1".into(), "job-1".into()],
            outcome: Outcome::Success,
            source_ip: None,
        };
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
