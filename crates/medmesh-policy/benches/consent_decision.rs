//! One PDP decision for a practitioner on a patient with 50 consents: compiling the access
//! (edges and consents) and judging one labelled resource, as a read does.
//!
//! `cargo bench -p medmesh-policy --bench consent_decision`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
// A benchmark makes its own actors and reads the wall clock.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use medmesh_auth::parse_scopes;
use medmesh_policy::access::{Edge, EdgeKind};
use medmesh_policy::consent::parse_consent;
use medmesh_policy::{Action, Actor, Clinician, Pdp, ReachFacts};
use serde_json::json;

fn bench(c: &mut Criterion) {
    // 50 consents: grants and denials for other practitioners and organizations, by class,
    // label and purpose, with nested exceptions; one of them concerns our practitioner.
    let consents: Vec<_> = (0..50)
        .map(|i| {
            let actor = if i == 49 {
                "Practitioner/x".to_string()
            } else {
                format!("Practitioner/other{i}")
            };
            parse_consent(
                &json!({"resourceType": "Consent", "id": format!("c{i}"), "status": "active",
                "scope": {"coding": [{"code": "patient-privacy"}]},
                "patient": {"reference": "Patient/p"},
                "provision": {"type": if i % 3 == 0 { "deny" } else { "permit" },
                    "period": {"start": "2020-01-01", "end": "2030-01-01"},
                    "actor": [{"reference": {"reference": actor}}],
                    "class": [{"code": "Observation"}, {"code": "Condition"}],
                    "purpose": [{"code": "TREAT"}],
                    "securityLabel": [{"code": "R"}, {"code": "PSY"}],
                    "provision": [{"type": "deny", "securityLabel": [{"code": "HIV"}]}]}}),
            )
            .map(std::sync::Arc::new)
            .unwrap()
        })
        .collect();
    let edges = vec![Edge {
        patient: "p".into(),
        principal: "Practitioner/x".into(),
        kind: EdgeKind::CareTeam,
        source: "CareTeam/ct".into(),
        since: 0,
        until: None,
        detail: None,
    }];
    let actor = Actor::from_verified_token(medmesh_kernel::VerifiedIdentity {
        subject: "u".into(),
        scopes: parse_scopes("user/*.cruds"),
        patient: None,
        role: Some(medmesh_auth::Role::Practitioner),
        clinician: Some(Clinician {
            practitioner: "Practitioner/x".into(),
            organizations: vec!["Organization/h".into()],
            verified: true,
        }),
    });
    let facts = ReachFacts {
        principals: vec![
            "Practitioner/x".into(),
            "Organization/h".into(),
            "CareTeam/ct".into(),
        ],
        edges,
        consents,
    };
    let now = 1_764_000_000_000_000;
    let pdp = Pdp;
    let labels = vec!["PSY".to_string(), "R".to_string()];
    c.bench_function(
        "PDP decision, 50 consents (grant + compile + judge one resource)",
        |b| {
            b.iter(|| {
                let g = pdp
                    .authorize(&actor, Action::Read, Some("Observation"))
                    .unwrap();
                let g = pdp.confine_to_reach(g, &actor, facts.clone(), now);
                let access = g.reach().unwrap().patient("p").unwrap();
                black_box(access.admits("Observation", black_box(&labels), false))
            })
        },
    );
    let g = pdp.confine_to_reach(
        pdp.authorize(&actor, Action::Read, Some("Observation"))
            .unwrap(),
        &actor,
        facts.clone(),
        now,
    );
    let access = g.reach().unwrap().patient("p").unwrap().clone();
    c.bench_function(
        "judge one resource against 50 consents (access compiled)",
        |b| b.iter(|| black_box(access.admits("Observation", black_box(&labels), false))),
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
