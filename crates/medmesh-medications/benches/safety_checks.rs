//! The prescribing-time safety checks for a patient with 30 active medications and 20
//! allergies (half coded, half free text): reading the new request, the allergies and the
//! active requests into substances, then every check: allergies, duplicate therapy, the
//! interactions of the knowledge base that ships (the ONC list; the 30 active medications
//! are drugs it names, so its lookups do real work, and eight of them interact) and a dose
//! limit from a loaded file. Beside it, the peer: parsing the same 51 resources from JSON
//! text, which the service does before any check.
//!
//! `cargo bench -p medmesh-medications --bench safety_checks`

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use medmesh_medications::KnowledgeBase;
use medmesh_medications::safety::{RXNORM, allergy_substance, check, substance_of};
use medmesh_medications::schedule::MealTimes;
use serde_json::{Value, json};

fn resources() -> (Value, Vec<Value>, Vec<Value>) {
    let new = json!({"resourceType": "MedicationRequest", "status": "draft", "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "200345", "display": "simvastatin 40 MG Oral Tablet"}]},
        "dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}]});
    // Drugs the ONC list names; four of them interact with simvastatin.
    let drugs = [
        "amiodarone",
        "azithromycin",
        "citalopram",
        "clarithromycin",
        "diltiazem",
        "fluoxetine",
        "haloperidol",
        "methadone",
        "ondansetron",
        "sertraline",
        "tramadol",
        "verapamil",
        "ciprofloxacin",
        "omeprazole",
        "carbamazepine",
    ];
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
                    "coding": [{"system": RXNORM, "code": format!("{}", 200_000 + i), "display": format!("{} {} MG Oral Tablet", drugs[i % 15], 10 + i)}],
                    "text": format!("{} {} mg oral tablet", drugs[i % 15], 10 + i)}})
        })
        .collect();
    (new, allergies, active)
}

fn bench(c: &mut Criterion) {
    let (new, allergies, active) = resources();
    let mut kb = KnowledgeBase::shipped();
    kb.add("[source]\nname = \"bench\"\n[[dose_limit]]\ningredient = \"simvastatin\"\nmax_daily_mg = 80\nsource = \"bench\"\n")
        .unwrap();
    let meals = MealTimes::default();
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
            let found = check(&s, &a, &m);
            let interactions = kb.interactions(&s, &m);
            // Amiodarone, clarithromycin, diltiazem and verapamil, each twice in the 30.
            assert_eq!(interactions.len(), 8);
            black_box((found, interactions, kb.over_limits(&s, &new, &meals)))
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
