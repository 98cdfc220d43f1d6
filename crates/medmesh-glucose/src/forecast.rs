//! A short-term glucose forecast, 30 and 60 minutes ahead, and its measured error.
//!
//! The model is a ridge regression fitted to the patient's own history: from the readings on
//! a 5-minute grid, it predicts the change over the horizon from the current level, the
//! changes over the last 5, 15 and 30 minutes, and, where they were logged, the insulin and
//! the carbohydrates still acting (each decaying exponentially: insulin with a 55-minute and
//! carbohydrates with a 40-minute time constant, the shapes of common bolus calculators).
//! Its band is the residuals' 10th to 90th percentile on the training data. It is a
//! statistical estimate for display, not a dosing aid.
//!
//! [`evaluate`] fits on the first days and measures RMSE and MARD on the held-out last days,
//! beside two baselines: the last value, and the line through the last 15 minutes.

use serde::Serialize;

use crate::{DAY, Reading, agp::quantile};

/// The grid step, minutes.
const STEP: i64 = 5;
/// Insulin and carbohydrate time constants, minutes.
const INSULIN_TAU: f64 = 55.0;
const CARBS_TAU: f64 = 40.0;
/// The ridge penalty (relative to the number of samples).
const RIDGE: f64 = 1e-3;
/// Features: 1, level, Δ5, Δ15, Δ30, insulin acting, carbs acting.
const FEATURES: usize = 7;

/// A logged dose or meal: local wall-clock seconds and amount (units or grams).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// When.
    pub at: i64,
    /// How much.
    pub amount: f64,
}

/// A fitted model for one horizon.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    /// Minutes ahead.
    pub horizon: i64,
    /// The coefficients, in [`FEATURES`] order.
    pub weights: Vec<f64>,
    /// The residuals' 10th and 90th percentiles (mg/dL), for the band.
    pub band: (f64, f64),
    /// Training samples.
    pub samples: usize,
}

/// A forecast point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Prediction {
    /// Minutes ahead.
    pub horizon: i64,
    /// When (local wall-clock seconds).
    pub at: i64,
    /// The predicted glucose, mg/dL.
    pub mg_dl: f64,
    /// The band's low end (10th percentile).
    pub low: f64,
    /// The band's high end (90th percentile).
    pub high: f64,
}

/// A 5-minute grid of the readings: linear between readings at most 15 minutes apart.
fn grid(readings: &[Reading]) -> (i64, Vec<f64>) {
    let Some(first) = readings.first() else {
        return (0, Vec::new());
    };
    let start = first.at - first.at.rem_euclid(STEP * 60);
    let end = readings.last().map_or(start, |r| r.at);
    let n = usize::try_from((end - start) / (STEP * 60) + 1).unwrap_or(0);
    let mut out = vec![f64::NAN; n];
    let mut j = 0;
    for (k, v) in out.iter_mut().enumerate() {
        let t = start + k as i64 * STEP * 60;
        while j + 1 < readings.len() && readings[j + 1].at < t {
            j += 1;
        }
        let a = readings[j];
        if a.at == t {
            *v = a.mg_dl;
        } else if let Some(b) = readings.get(j + 1)
            && a.at < t
            && b.at >= t
            && b.at - a.at <= 15 * 60
        {
            *v = a.mg_dl + (b.mg_dl - a.mg_dl) * (t - a.at) as f64 / (b.at - a.at) as f64;
        }
    }
    (start, out)
}

/// The amount still acting at `t` of events decaying with `tau` minutes.
fn acting(events: &[Event], t: i64, tau: f64) -> f64 {
    events
        .iter()
        .filter(|e| e.at <= t && t - e.at < 8 * 3600)
        .map(|e| e.amount * (-((t - e.at) as f64 / 60.0) / tau).exp())
        .sum()
}

fn features(
    g: &[f64],
    k: usize,
    t: i64,
    insulin: &[Event],
    carbs: &[Event],
) -> Option<[f64; FEATURES]> {
    let at = |back: usize| {
        k.checked_sub(back)
            .and_then(|i| g.get(i))
            .copied()
            .filter(|v| v.is_finite())
    };
    let (now, m5, m15, m30) = (at(0)?, at(1)?, at(3)?, at(6)?);
    Some([
        1.0,
        now,
        now - m5,
        now - m15,
        now - m30,
        acting(insulin, t, INSULIN_TAU),
        acting(carbs, t, CARBS_TAU),
    ])
}

fn dot(w: &[f64], x: &[f64; FEATURES]) -> f64 {
    w.iter().zip(x).map(|(a, b)| a * b).sum()
}

/// Solves `a x = b` (Gaussian elimination with partial pivoting).
fn solve(mut a: [[f64; FEATURES]; FEATURES], mut b: [f64; FEATURES]) -> Option<[f64; FEATURES]> {
    for col in 0..FEATURES {
        let pivot = (col..FEATURES).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = a[col];
        for row in col + 1..FEATURES {
            let f = a[row][col] / pivot_row[col];
            for (cell, p) in a[row].iter_mut().zip(pivot_row.iter()).skip(col) {
                *cell -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0.0; FEATURES];
    for row in (0..FEATURES).rev() {
        let s: f64 = (row + 1..FEATURES).map(|c| a[row][c] * x[c]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

/// Fits the model for `horizon` minutes on the readings (sorted) and logged events.
pub fn fit(
    readings: &[Reading],
    insulin: &[Event],
    carbs: &[Event],
    horizon: i64,
) -> Option<Model> {
    let (start, g) = grid(readings);
    let ahead = usize::try_from(horizon / STEP).ok()?;
    let mut samples: Vec<([f64; FEATURES], f64)> = Vec::new();
    for k in 0..g.len().saturating_sub(ahead) {
        let t = start + k as i64 * STEP * 60;
        if let (Some(x), Some(y)) = (
            features(&g, k, t, insulin, carbs),
            g.get(k + ahead).filter(|v| v.is_finite()),
        ) {
            samples.push((x, y - x[1]));
        }
    }
    if samples.len() < 50 {
        return None;
    }
    let mut xtx = [[0.0; FEATURES]; FEATURES];
    let mut xty = [0.0; FEATURES];
    for (x, y) in &samples {
        for i in 0..FEATURES {
            xty[i] += x[i] * y;
            for j in 0..FEATURES {
                xtx[i][j] += x[i] * x[j];
            }
        }
    }
    // Features scaled to comparable size by the diagonal, so one penalty fits all.
    for (i, row) in xtx.iter_mut().enumerate() {
        row[i] += RIDGE * row[i].max(1.0);
    }
    let w = solve(xtx, xty)?;
    let mut residuals: Vec<f64> = samples.iter().map(|(x, y)| y - dot(&w, x)).collect();
    residuals.sort_by(f64::total_cmp);
    Some(Model {
        horizon,
        weights: w.to_vec(),
        band: (quantile(&residuals, 0.1), quantile(&residuals, 0.9)),
        samples: samples.len(),
    })
}

impl Model {
    /// The forecast from the latest reading, if the last 30 minutes are on the grid.
    pub fn predict(
        &self,
        readings: &[Reading],
        insulin: &[Event],
        carbs: &[Event],
    ) -> Option<Prediction> {
        let (start, g) = grid(readings);
        let k = g.len().checked_sub(1)?;
        let t = start + k as i64 * STEP * 60;
        let x = features(&g, k, t, insulin, carbs)?;
        let mg_dl = (x[1] + dot(&self.weights, &x)).clamp(20.0, 500.0);
        Some(Prediction {
            horizon: self.horizon,
            at: t + self.horizon * 60,
            mg_dl,
            low: (mg_dl + self.band.0).max(20.0),
            high: (mg_dl + self.band.1).min(500.0),
        })
    }
}

/// One predictor's error on the held-out days.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Error {
    /// Root mean square error, mg/dL.
    pub rmse: f64,
    /// Mean absolute relative difference, percent.
    pub mard: f64,
}

/// The forecast's error against the baselines at one horizon.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Evaluation {
    /// Minutes ahead.
    pub horizon: i64,
    /// Held-out predictions scored.
    pub points: usize,
    /// The model.
    pub model: Error,
    /// The last value, held.
    pub last_value: Error,
    /// The line through the last 15 minutes, extended.
    pub linear: Error,
}

/// Fits on all but the last `test_days` days and scores every held-out 5-minute point.
pub fn evaluate(
    readings: &[Reading],
    insulin: &[Event],
    carbs: &[Event],
    horizon: i64,
    test_days: i64,
) -> Option<Evaluation> {
    let last = readings.last()?.at;
    let cut = (last.div_euclid(DAY) - test_days + 1) * DAY;
    let train: Vec<Reading> = readings.iter().copied().filter(|r| r.at < cut).collect();
    let model = fit(&train, insulin, carbs, horizon)?;
    let (start, g) = grid(readings);
    let ahead = usize::try_from(horizon / STEP).ok()?;
    let mut errs: [Vec<(f64, f64)>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for k in 0..g.len().saturating_sub(ahead) {
        let t = start + k as i64 * STEP * 60;
        if t < cut {
            continue;
        }
        let (Some(x), Some(truth)) = (
            features(&g, k, t, insulin, carbs),
            g.get(k + ahead).copied().filter(|v| v.is_finite()),
        ) else {
            continue;
        };
        let now = x[1];
        let predictions = [
            (now + dot(&model.weights, &x)).clamp(20.0, 500.0),
            now,
            (now + x[3] / 15.0 * horizon as f64).clamp(20.0, 500.0),
        ];
        for (e, p) in errs.iter_mut().zip(predictions) {
            e.push((p, truth));
        }
    }
    let score = |pairs: &[(f64, f64)]| Error {
        rmse: (pairs.iter().map(|(p, t)| (p - t).powi(2)).sum::<f64>() / pairs.len() as f64).sqrt(),
        mard: 100.0 * pairs.iter().map(|(p, t)| (p - t).abs() / t).sum::<f64>()
            / pairs.len() as f64,
    };
    if errs[0].len() < 20 {
        return None;
    }
    Some(Evaluation {
        horizon,
        points: errs[0].len(),
        model: score(&errs[0]),
        last_value: score(&errs[1]),
        linear: score(&errs[2]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_learns_a_meal_response_the_baselines_cannot_see() {
        // A flat 100 mg/dL, and 60 g of carbs three times a day raising glucose by 80 mg/dL
        // over the next two hours: only the carbs acting announce the rise.
        let day0 = 1_600_000_000 / DAY * DAY;
        let mut carbs = Vec::new();
        let mut readings = Vec::new();
        for d in 0..10 {
            for meal in [8, 13, 19] {
                carbs.push(Event {
                    at: day0 + d * DAY + meal * 3600,
                    amount: 60.0,
                });
            }
        }
        for i in 0..(10 * 288) {
            let t = day0 + i * 300;
            let rise: f64 = carbs
                .iter()
                .filter(|c| c.at <= t && t - c.at < 4 * 3600)
                .map(|c| {
                    let m = (t - c.at) as f64 / 60.0;
                    80.0 * (m / 60.0) * (-(m / 60.0 - 1.0)).exp()
                })
                .sum();
            readings.push(Reading {
                at: t,
                mg_dl: 100.0 + rise,
            });
        }
        let e = evaluate(&readings, &[], &carbs, 30, 3).unwrap();
        assert!(e.model.rmse < e.last_value.rmse, "{e:?}");
        assert!(e.model.rmse < e.linear.rmse, "{e:?}");
        let model = fit(&readings, &[], &carbs, 60).unwrap();
        let p = model.predict(&readings, &[], &carbs).unwrap();
        assert_eq!(p.at, readings.last().unwrap().at + 3600);
        assert!(p.low <= p.mg_dl && p.mg_dl <= p.high);
    }

    #[test]
    fn too_little_history_gives_no_model() {
        let r: Vec<Reading> = (0..20)
            .map(|i| Reading {
                at: i * 300,
                mg_dl: 100.0,
            })
            .collect();
        assert!(fit(&r, &[], &[], 30).is_none());
    }
}
