//! The prescribing-time safety checks for a patient with 30 active medications and 20
//! allergies (half coded, half free text): reading the new request, the allergies and the
//! active requests into substances, then checking. Beside it, the peer: parsing the same
//! 51 resources from JSON text, which the service does before any check.
//!
//! `cargo bench -p medmesh-medications --bench safety_checks`

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use medmesh_medications::safety::{RXNORM, allergy_substance, check, substance_of};
use serde_json::{Value, json};

fn resources() -> (Value, Vec<Value>, Vec<Value>) {
    let new = json!({"resourceType": "MedicationRequest", "status": "draft", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "29046", "display": "lisinopril"}],
                                      "text": "lisinopril 10 mg oral tablet"}});
    let allergies = (0..20)
        .map(|i| {
            let mut a = json!({"resourceType": "AllergyIntolerance", "id": format!("a{i}"),
                "clinicalStatus": {"coding": [{"code": "active"}]},
                "code": {"text": format!("substance number {i}")}});
            if i % 2 == 0 {
                a["code"]["coding"] =
                    json!([{"system": RXNORM, "code": format!("{}", 100_000 + i)}]);
            }
            a
        })
        .collect();
    let active = (0..30)
        .map(|i| {
            json!({"resourceType": "MedicationRequest", "id": format!("r{i}"), "status": "active",
                "medicationCodeableConcept": {
                    "coding": [{"system": RXNORM, "code": format!("{}", 200_000 + i), "display": format!("medicine {i}")}],
                    "text": format!("medicine {i} 20 mg oral tablet")}})
        })
        .collect();
    (new, allergies, active)
}

fn bench(c: &mut Criterion) {
    let (new, allergies, active) = resources();
    c.bench_function("safety checks, 30 active, 20 allergies", |b| {
        b.iter(|| {
            let s = substance_of(black_box(&new));
            let a: Vec<_> = allergies
                .iter()
                .filter_map(|x| Some((x["id"].as_str()?.to_string(), allergy_substance(x)?)))
                .collect();
            let m: Vec<_> = active
                .iter()
                .map(|x| {
                    (
                        x["id"].as_str().unwrap_or_default().to_string(),
                        substance_of(x),
                    )
                })
                .collect();
            black_box(check(&s, &a, &m))
        });
    });
    let texts: Vec<String> = std::iter::once(&new)
        .chain(&allergies)
        .chain(&active)
        .map(Value::to_string)
        .collect();
    c.bench_function("peer: parse the same 51 resources from JSON", |b| {
        b.iter(|| {
            for t in &texts {
                black_box(serde_json::from_str::<Value>(black_box(t)).unwrap());
            }
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
