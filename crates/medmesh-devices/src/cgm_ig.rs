//! The export of the HL7 FHIR CGM implementation guide (STU 1, `hl7.fhir.uv.cgm`): a
//! collection Bundle with the CGM Summary Observation, its members (mean glucose, times in
//! ranges, GMI, CV, days of wear, sensor active percentage) and, optionally, each sensor
//! reading as a CGM Sensor Reading Observation. The summary codes are the guide's own code
//! system (with LOINC where the guide maps one that is published: 97507-8 for the mean).

use serde_json::{Value, json};

use crate::service::GlucoseView;

const IG: &str = "http://hl7.org/fhir/uv/cgm";
const CODES: &str = "http://hl7.org/fhir/uv/cgm/CodeSystem/cgm-summary-codes-temporary";
const UCUM: &str = "http://unitsofmeasure.org";

fn profile(name: &str) -> Value {
    json!({"profile": [format!("{IG}/StructureDefinition/{name}")]})
}

fn coded(code: &str, display: &str, loinc: Option<&str>) -> Value {
    let mut coding = vec![json!({"system": CODES, "code": code, "display": display})];
    if let Some(l) = loinc {
        coding.push(json!({"system": "http://loinc.org", "code": l}));
    }
    json!({"coding": coding})
}

fn quantity(value: f64, unit: &str) -> Value {
    json!({"value": (value * 100.0).round() / 100.0, "unit": unit, "system": UCUM, "code": unit})
}

/// The Bundle for `view` (the period's summary) and the sensor readings `(UTC instant,
/// mg/dL)`, for Patient `patient`.
pub fn bundle(patient: &str, view: &GlucoseView, readings: &[(String, f64)]) -> Value {
    let s = &view.summary;
    let subject = json!({"reference": format!("Patient/{patient}")});
    let period = json!({"start": view.start, "end": view.end});
    let category = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]);
    let mut members: Vec<(String, Value)> = Vec::new();
    let mut member = |id: &str,
                      prof: &str,
                      code: Value,
                      value: Option<Value>,
                      components: Option<Vec<Value>>| {
        let mut obs = json!({
            "resourceType": "Observation", "id": id, "meta": profile(prof), "status": "final",
            "category": category, "code": code, "subject": subject, "effectivePeriod": period,
        });
        if let Some(v) = value {
            obs["valueQuantity"] = v;
        }
        if let Some(c) = components {
            obs["component"] = json!(c);
        }
        members.push((id.to_owned(), obs));
    };
    if let Some(mean) = s.mean_glu {
        member(
            "mean-glucose",
            "cgm-summary-mean-glucose-mass-per-volume",
            coded(
                "mean-glucose-mass-per-volume",
                "Mean Glucose (Mass per Volume)",
                Some("97507-8"),
            ),
            Some(quantity(mean, "mg/dL")),
            None,
        );
    }
    let ranges = [
        ("time-in-very-low", "Time in Very Low Range (%)", s.below_54),
        (
            "time-in-low",
            "Time in Low Range (%)",
            s.below_70.zip(s.below_54).map(|(a, b)| a - b),
        ),
        (
            "time-in-target",
            "Time in Target Range (%)",
            s.in_range_70_180,
        ),
        (
            "time-in-high",
            "Time in High Range (%)",
            s.above_180.zip(s.above_250).map(|(a, b)| a - b),
        ),
        (
            "time-in-very-high",
            "Time in Very High Range (%)",
            s.above_250,
        ),
    ];
    if ranges.iter().all(|r| r.2.is_some()) {
        let components = ranges
            .iter()
            .map(|(code, display, v)| json!({"code": coded(code, display, None), "valueQuantity": quantity(v.unwrap_or(0.0), "%")}))
            .collect();
        member(
            "times-in-ranges",
            "cgm-summary-times-in-ranges",
            coded("times-in-ranges", "Times in Glucose Ranges", None),
            None,
            Some(components),
        );
    }
    if let Some(gmi) = s.gmi {
        member(
            "gmi",
            "cgm-summary-gmi",
            coded("gmi", "Glucose Management Indicator (GMI)", None),
            Some(quantity(gmi, "%")),
            None,
        );
    }
    if let Some(cv) = s.cv_glu {
        member(
            "cv",
            "cgm-summary-coefficient-of-variation",
            coded("cv", "Coefficient of Variation (CV)", None),
            Some(quantity(cv, "%")),
            None,
        );
    }
    member(
        "days-of-wear",
        "cgm-summary-days-of-wear",
        coded("days-of-wear", "Days of Wear", None),
        Some(quantity(view.days, "d")),
        None,
    );
    if let Some(active) = s.active_percent {
        member(
            "sensor-active",
            "cgm-summary-sensor-active-percentage",
            coded("sensor-active-percentage", "Sensor Active Percentage", None),
            Some(quantity(active, "%")),
            None,
        );
    }
    let summary = json!({
        "resourceType": "Observation", "id": "cgm-summary", "meta": profile("cgm-summary"), "status": "final",
        "category": category, "code": coded("cgm-summary", "CGM Summary Report", None), "subject": subject,
        "effectivePeriod": period,
        "hasMember": members.iter().map(|(id, _)| json!({"reference": format!("Observation/{id}")})).collect::<Vec<_>>(),
    });
    let mut entries =
        vec![json!({"fullUrl": "urn:medmesh:cgm:Observation/cgm-summary", "resource": summary})];
    entries.extend(members.into_iter().map(
        |(id, r)| json!({"fullUrl": format!("urn:medmesh:cgm:Observation/{id}"), "resource": r}),
    ));
    for (i, (at, mg_dl)) in readings.iter().enumerate() {
        entries.push(json!({"fullUrl": format!("urn:medmesh:cgm:Observation/reading-{i}"), "resource": {
            "resourceType": "Observation", "id": format!("reading-{i}"), "meta": profile("cgm-sensor-reading-mass-per-volume"),
            "status": "final", "category": category,
            "code": {"coding": [{"system": "http://loinc.org", "code": "99504-3", "display": "Glucose [Mass/volume] in Interstitial fluid"}]},
            "subject": subject, "effectiveDateTime": at, "valueQuantity": quantity(*mg_dl, "mg/dL"),
        }}));
    }
    json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
}
