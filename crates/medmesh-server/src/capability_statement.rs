//! The CapabilityStatement, generated from the same definitions the server runs on, so it
//! lists exactly the types, search parameters and operations that work.

use medmesh_fhir::{Definitions, SearchParamType};
use serde_json::{Value, json};

/// Builds the CapabilityStatement.
pub fn capability_statement(
    defs: &Definitions,
    base_url: &str,
    software_version: &str,
    oauth_issuer: &str,
    cors: bool,
) -> Value {
    let interactions = [
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
        "search-type",
    ];
    let mut resources: Vec<Value> = defs
        .resource_types()
        .iter()
        .map(|t| {
            let params = defs.search_params(t).into_iter().flat_map(|m| m.values());
            let supported: Vec<Value> = params
                .clone()
                .filter(|p| p.kind != SearchParamType::Special && (p.expression.is_some() || p.code == "_id"))
                .map(|p| json!({"name": p.code, "definition": p.url, "type": p.kind.code()}))
                .collect();
            let includes: Vec<String> = params.clone().filter(|p| p.kind == SearchParamType::Reference && p.expression.is_some()).map(|p| format!("{t}:{}", p.code)).collect();
            let mut rev: Vec<String> = Vec::new();
            for other in defs.resource_types() {
                for p in defs.search_params(other).into_iter().flat_map(|m| m.values()) {
                    if p.kind == SearchParamType::Reference && p.expression.is_some() && (p.targets.is_empty() || p.targets.iter().any(|x| x == t)) {
                        rev.push(format!("{other}:{}", p.code));
                    }
                }
            }
            let mut r = json!({
                "type": t,
                "profile": format!("http://hl7.org/fhir/StructureDefinition/{t}"),
                "interaction": interactions.iter().map(|i| json!({"code": i})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "referencePolicy": ["literal", "logical"],
                "searchInclude": includes,
                "searchRevInclude": rev,
                "searchParam": supported,
            });
            if t == "Patient" {
                r["operation"] = json!([
                    {"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"},
                    {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"}
                ]);
            }
            if t == "Group" {
                r["operation"] = json!([{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}]);
            }
            r
        })
        .filter(|r| r["type"] != "Subscription")
        .collect();
    resources.push(subscription_resource());
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-24",
        "publisher": "medmesh",
        "kind": "instance",
        "software": {"name": "medmesh", "version": software_version},
        "implementation": if base_url.is_empty() {
            // Filled in per request from the Host header; an empty url is invalid FHIR.
            json!({"description": "medmesh FHIR R4 node"})
        } else {
            json!({"description": "medmesh FHIR R4 node", "url": base_url})
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": cors,
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}],
                "description": "Every request needs an OAuth2 bearer token carrying SMART scopes (SMART App Launch 2.x; see /.well-known/smart-configuration).",
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [
                        {"url": "authorize", "valueUri": format!("{oauth_issuer}/oauth/authorize")},
                        {"url": "token", "valueUri": format!("{oauth_issuer}/oauth/token")},
                        {"url": "register", "valueUri": format!("{oauth_issuer}/oauth/register")},
                        {"url": "revoke", "valueUri": format!("{oauth_issuer}/oauth/revoke")},
                        {"url": "introspect", "valueUri": format!("{oauth_issuer}/oauth/introspect")}
                    ]
                }]
            },
            "resource": resources,
            "compartment": [
                "http://hl7.org/fhir/CompartmentDefinition/patient",
                "http://hl7.org/fhir/CompartmentDefinition/encounter",
                "http://hl7.org/fhir/CompartmentDefinition/relatedPerson",
                "http://hl7.org/fhir/CompartmentDefinition/practitioner",
                "http://hl7.org/fhir/CompartmentDefinition/device"
            ],
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
            "searchParam": [
                {"name": "_count", "type": "number"}, {"name": "_sort", "type": "string"}, {"name": "_include", "type": "string"},
                {"name": "_revinclude", "type": "string"}, {"name": "_total", "type": "token"}, {"name": "_summary", "type": "token"},
                {"name": "_elements", "type": "string"}
            ],
            "operation": [{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}]
        }]
    })
}

/// Subscriptions as the R4 backport advertises them: rest-hook only, the caller's own, and
/// the topics this node offers (`subscriptiontopic-canonical`).
fn subscription_resource() -> Value {
    let topics: Vec<Value> = medmesh_subscriptions::topic::Topic::ALL
        .iter()
        .map(|t| json!({
            "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical",
            "valueCanonical": t.canonical(),
        }))
        .collect();
    json!({
        "extension": topics,
        "type": "Subscription",
        "supportedProfile": ["http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"],
        "interaction": [{"code": "read"}, {"code": "update"}, {"code": "delete"}, {"code": "create"}, {"code": "search-type"}],
        "updateCreate": true,
        "searchParam": [],
        "documentation": "A caller's own subscriptions. Channel rest-hook; payload application/fhir+json, empty, id-only or full-resource.",
        "operation": [{"name": "status", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"}],
    })
}
