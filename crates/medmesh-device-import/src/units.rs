//! Glucose units.

use crate::GlucoseUnit;

/// mg/dL per mmol/L of glucose (molar mass 180.156 g/mol).
pub const MG_DL_PER_MMOL_L: f64 = 18.0156;

/// A glucose value in `unit` as mg/dL.
pub fn to_mg_dl(value: f64, unit: GlucoseUnit) -> f64 {
    match unit {
        GlucoseUnit::MgDl => value,
        GlucoseUnit::MmolL => value * MG_DL_PER_MMOL_L,
    }
}

/// The unit named in a header or an attribute: "mg/dL", "mmol/L", and Apple Health's
/// "mmol<180.1558800000541>/L" (mmol of a substance of that molar mass).
pub fn parse(text: &str) -> Option<GlucoseUnit> {
    let lower = text.to_ascii_lowercase();
    if lower.contains("mg/dl") || lower.contains("mg dl") {
        Some(GlucoseUnit::MgDl)
    } else if lower.contains("mmol") {
        Some(GlucoseUnit::MmolL)
    } else {
        None
    }
}

/// Apple's unit string as a factor to mg/dL: "mg/dL" is 1; "mmol<M>/L" is M / 10 (the molar
/// mass Apple gives, in g/mol); a plain "mmol/L" uses [`MG_DL_PER_MMOL_L`].
pub fn apple_factor(unit: &str) -> Option<f64> {
    let lower = unit.to_ascii_lowercase();
    if lower == "mg/dl" {
        return Some(1.0);
    }
    if let Some(rest) = lower.strip_prefix("mmol<") {
        let mass: f64 = rest.split('>').next()?.parse().ok()?;
        return (mass > 0.0).then_some(mass / 10.0);
    }
    (lower == "mmol/l").then_some(MG_DL_PER_MMOL_L)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apples_molar_unit_converts() {
        let f = apple_factor("mmol<180.1558800000541>/L").unwrap();
        assert!((f - 18.015588).abs() < 1e-6);
        assert_eq!(apple_factor("mg/dL"), Some(1.0));
        assert_eq!(apple_factor("count/min"), None);
    }
}
