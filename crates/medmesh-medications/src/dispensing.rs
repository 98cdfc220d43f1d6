//! What is left of a prescription to dispense, and what the next dispense is.
//!
//! A prescription allows `1 + dispenseRequest.numberOfRepeatsAllowed` fills. When it names
//! the quantity of one fill (`dispenseRequest.quantity`), everything is counted in that
//! quantity: a partial fill leaves the rest of its fill owed, and the prescription is used
//! up when the fills' total has been dispensed. Without a quantity, each dispense is one
//! fill. Only completed dispenses count (a declined one, a return, does not).

use serde_json::Value;

/// How a dispense is coded (v3 ActPharmacySupplyType).
pub const SUPPLY_TYPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// What is left of a prescription.
#[derive(Debug, Clone, PartialEq)]
pub struct Remaining {
    /// The quantity of one fill, when the prescription names it.
    pub fill_size: Option<f64>,
    /// Its unit (`capsule`).
    pub unit: Option<String>,
    /// Fills allowed in all (the first and the refills).
    pub fills_allowed: u32,
    /// Quantity dispensed so far (when counted in quantity) or fills done (when not).
    pub dispensed: f64,
    /// Quantity left (when counted in quantity) or fills left (when not).
    pub left: f64,
}

impl Remaining {
    /// Refills left after the fill under way: the first fill is no refill, and the rest of a
    /// part fill is owed on its fill, not a refill.
    pub fn refills_left(&self) -> u32 {
        let (fills_left, fill_open) = match self.fill_size {
            Some(size) => (
                (self.left / size).ceil(),
                self.dispensed == 0.0 || self.dispensed % size != 0.0,
            ),
            None => (self.left, self.dispensed == 0.0),
        };
        let refills = fills_left - if fill_open { 1.0 } else { 0.0 };
        // A small whole number: at most the refills allowed.
        if refills <= 0.0 {
            0
        } else {
            u32::try_from(refills as i64).unwrap_or(0)
        }
    }

    /// Whether nothing is left.
    pub fn used_up(&self) -> bool {
        self.left <= 0.0
    }
}

/// Why a dispense cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispenseError {
    /// A quantity of zero or less.
    #[error("a dispense gives a quantity greater than zero")]
    NothingGiven,
    /// More than is left.
    #[error("only {0} is left to dispense on this prescription")]
    TooMuch(String),
    /// Nothing is left.
    #[error("this prescription is used up: every fill was dispensed")]
    UsedUp,
}

fn completed_quantity(dispense: &Value) -> Option<f64> {
    (dispense["status"] == "completed")
        .then(|| dispense["quantity"]["value"].as_f64().unwrap_or(0.0))
}

/// What is left of `request` after `dispenses` (its MedicationDispenses, any status).
pub fn remaining(request: &Value, dispenses: &[Value]) -> Remaining {
    let d = &request["dispenseRequest"];
    let fills_allowed = 1 + u32::try_from(d["numberOfRepeatsAllowed"].as_u64().unwrap_or(0))
        .unwrap_or(u32::MAX - 1);
    let fill_size = d["quantity"]["value"].as_f64().filter(|q| *q > 0.0);
    let unit = d["quantity"]["unit"]
        .as_str()
        .or_else(|| d["quantity"]["code"].as_str())
        .map(str::to_string);
    let (dispensed, left) = match fill_size {
        Some(size) => {
            let given: f64 = dispenses.iter().filter_map(completed_quantity).sum();
            (given, (size * f64::from(fills_allowed) - given).max(0.0))
        }
        None => {
            let fills = dispenses.iter().filter_map(completed_quantity).count() as f64;
            (fills, (f64::from(fills_allowed) - fills).max(0.0))
        }
    };
    Remaining {
        fill_size,
        unit,
        fills_allowed,
        dispensed,
        left,
    }
}

/// The supply type of a dispense of `quantity` given what is left: `FF` (first fill), `FFP`
/// (first fill, part fill, and the rest of it), `RF` (refill), `RFP` (refill, part fill).
///
/// # Errors
/// [`DispenseError`] for nothing, too much, or a used-up prescription.
pub fn next_dispense(
    left: &Remaining,
    quantity: Option<f64>,
) -> Result<&'static str, DispenseError> {
    if left.used_up() {
        return Err(DispenseError::UsedUp);
    }
    let (first, partial) = match (left.fill_size, quantity) {
        (Some(size), Some(q)) => {
            if q <= 0.0 {
                return Err(DispenseError::NothingGiven);
            }
            if q > left.left {
                return Err(DispenseError::TooMuch(
                    format!("{} {}", left.left, left.unit.as_deref().unwrap_or(""))
                        .trim()
                        .to_string(),
                ));
            }
            // Completing a part fill is still that fill: the first until a whole fill
            // was given.
            (
                left.dispensed < size,
                q < size || left.dispensed % size != 0.0,
            )
        }
        (_, Some(q)) if q <= 0.0 => return Err(DispenseError::NothingGiven),
        _ => (left.dispensed == 0.0, false),
    };
    Ok(match (first, partial) {
        (true, false) => "FF",
        (true, true) => "FFP",
        (false, false) => "RF",
        (false, true) => "RFP",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rx(quantity: Option<f64>, repeats: u64) -> Value {
        let mut d = json!({"numberOfRepeatsAllowed": repeats});
        if let Some(q) = quantity {
            d["quantity"] = json!({"value": q, "unit": "tablet"});
        }
        json!({"dispenseRequest": d})
    }

    fn given(q: f64) -> Value {
        json!({"status": "completed", "quantity": {"value": q}})
    }

    #[test]
    fn fills_are_counted_in_quantity_with_partial_fills_owed() {
        // 30 tablets, 2 refills: 90 in all.
        let r = rx(Some(30.0), 2);
        let fresh = remaining(&r, &[]);
        assert_eq!((fresh.left, fresh.refills_left()), (90.0, 2));
        assert_eq!(next_dispense(&fresh, Some(30.0)), Ok("FF"));
        assert_eq!(next_dispense(&fresh, Some(10.0)), Ok("FFP"));
        // A part fill of 10: 20 still owed on the first fill, 2 refills after it.
        let part = remaining(&r, &[given(10.0)]);
        assert_eq!((part.left, part.refills_left()), (80.0, 2));
        assert_eq!(
            next_dispense(&part, Some(20.0)),
            Ok("FFP"),
            "the first fill's rest"
        );
        // The first fill done: 2 refills left; then one refill: 1 left.
        let one = remaining(&r, &[given(10.0), given(20.0)]);
        assert_eq!((one.left, one.refills_left()), (60.0, 2));
        let two = remaining(&r, &[given(10.0), given(20.0), given(30.0)]);
        assert_eq!((two.left, two.refills_left()), (30.0, 1));
        assert_eq!(
            next_dispense(&two, Some(40.0)),
            Err(DispenseError::TooMuch("30 tablet".into()))
        );
        let done = remaining(&r, &[given(30.0), given(30.0), given(30.0)]);
        assert!(done.used_up());
        assert_eq!(done.refills_left(), 0);
        assert_eq!(next_dispense(&done, Some(1.0)), Err(DispenseError::UsedUp));
        // A declined dispense (a return) gives nothing.
        let returned = remaining(
            &r,
            &[json!({"status": "declined", "quantity": {"value": 30}})],
        );
        assert_eq!(returned.left, 90.0);
        assert_eq!(
            next_dispense(&fresh, Some(0.0)),
            Err(DispenseError::NothingGiven)
        );
    }

    #[test]
    fn without_a_quantity_each_dispense_is_a_fill() {
        let r = rx(None, 1);
        let fresh = remaining(&r, &[]);
        assert_eq!((fresh.left, fresh.refills_left()), (2.0, 1));
        assert_eq!(next_dispense(&fresh, None), Ok("FF"));
        let one = remaining(&r, &[given(0.0)]);
        assert_eq!((one.left, one.refills_left()), (1.0, 1));
        assert_eq!(next_dispense(&one, None), Ok("RF"));
        assert!(remaining(&r, &[given(0.0), given(0.0)]).used_up());
    }
}
