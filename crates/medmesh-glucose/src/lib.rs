//! Glucose analytics, with no I/O.
//!
//! Everything here works on [`Reading`]s: a glucose value in mg/dL at a local wall-clock
//! time. The metrics follow the definitions of the R package iglu (and its Python port,
//! `iglu-python`, which the tests compare against), which in turn follow the international
//! consensus on CGM metrics (Battelino et al., Diabetes Care 2019). Where iglu interpolates
//! onto a regular grid (CONGA, MODD, MAGE), [`grid::day_by_day`] does the same, step for step.

pub mod agp;
pub mod correlation;
pub mod forecast;
pub mod grid;
pub mod mage;
pub mod metrics;

pub use metrics::{Summary, summarize};

/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// One glucose reading.
///
/// `at` is the local wall-clock time in seconds since 1970-01-01T00:00 (the civil time read
/// as if it were UTC): the metrics' days and the AGP's time of day are the patient's own,
/// whatever the zone, as iglu's are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Local wall-clock seconds since 1970-01-01T00:00.
    pub at: i64,
    /// Glucose in mg/dL.
    pub mg_dl: f64,
}

/// Sorts readings by time and keeps one reading per second (the last one given).
pub fn normalize(mut readings: Vec<Reading>) -> Vec<Reading> {
    readings.retain(|r| r.mg_dl.is_finite());
    readings.sort_by_key(|r| r.at);
    let mut out: Vec<Reading> = Vec::with_capacity(readings.len());
    for reading in readings {
        match out.last_mut() {
            Some(last) if last.at == reading.at => *last = reading,
            _ => out.push(reading),
        }
    }
    out
}

/// The arithmetic mean of the finite values, or NaN when there are none.
pub(crate) fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// The sample standard deviation (n − 1) of the finite values, or NaN below two values.
pub(crate) fn sample_sd(values: impl IntoIterator<Item = f64> + Clone) -> f64 {
    let m = mean(values.clone());
    let (sq, n) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(s, n), v| (s + (v - m) * (v - m), n + 1));
    if n < 2 {
        f64::NAN
    } else {
        (sq / (n - 1) as f64).sqrt()
    }
}

/// Rounds half to even, as Python's and numpy's `round` do (iglu-python uses both).
pub(crate) fn round_even(x: f64) -> f64 {
    x.round_ties_even()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_sorts_and_keeps_one_per_second() {
        let r = |at, mg_dl| Reading { at, mg_dl };
        let out = normalize(vec![r(10, 1.0), r(5, 2.0), r(10, 3.0), r(7, f64::NAN)]);
        assert_eq!(out, vec![r(5, 2.0), r(10, 3.0)]);
    }

    #[test]
    fn sd_is_the_sample_sd() {
        assert!((sample_sd([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]) - 2.138089935).abs() < 1e-8);
        assert!(sample_sd([1.0]).is_nan());
    }
}
