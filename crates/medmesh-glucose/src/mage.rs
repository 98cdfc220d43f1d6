//! MAGE, the mean amplitude of glycemic excursions, by iglu's moving-average algorithm
//! (Fernandes et al., "Open-source algorithm to calculate MAGE", 2022).
//!
//! The readings are interpolated onto a 5-minute grid (gaps over 45 minutes stay blank),
//! cut into segments at gaps over 3 hours, and in each segment the crossings of a short
//! (5-point) and a long (32-point) moving average bracket the peaks and nadirs. Excursions
//! larger than one SD are averaged, up and down; the segments are weighted by their length.
//! Every step, including its edge cases, follows iglu-python 0.4.3 so that the figures agree.

use crate::{Reading, grid, sample_sd};

const SHORT_MA: usize = 5;
const LONG_MA: usize = 32;
const STEP_MINUTES: i64 = 5;
const INTER_GAP_MINUTES: i64 = 45;
const MAX_GAP_MINUTES: i64 = 180;

/// MAGE over the readings (NaN when no excursion exceeds one SD).
pub fn mage(readings: &[Reading]) -> f64 {
    let Some(grid) = grid::day_by_day(readings, Some(STEP_MINUTES), INTER_GAP_MINUTES) else {
        return f64::NAN;
    };
    // Grid point k is at first_day + (k + 1) * 5 minutes; trim the blank ends.
    let values = &grid.values;
    let Some(first) = values.iter().position(|v| v.is_finite()) else {
        return f64::NAN;
    };
    let last = values.iter().rposition(|v| v.is_finite()).unwrap_or(first);
    let times: Vec<i64> = (first..=last)
        .map(|k| (k as i64 + 1) * STEP_MINUTES)
        .collect();
    let gl = &values[first..=last];

    let mut results: Vec<(f64, f64)> = Vec::new(); // (excursion, segment minutes)
    for (from, to) in segments(gl, &times) {
        let minutes = (times[to - 1] - times[from]) as f64;
        for excursion in atomic(&gl[from..to]).into_iter().flatten() {
            if excursion.is_finite() {
                results.push((excursion, minutes));
            }
        }
    }
    if results.is_empty() {
        return f64::NAN;
    }
    let total: f64 = results.iter().map(|(_, m)| m).sum();
    results.iter().map(|(e, m)| e * m / total).sum()
}

/// Segments split at gaps over three hours between present values, each without its blank
/// tail, as `[from, to)` index ranges.
fn segments(gl: &[f64], times: &[i64]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut last_valid: Option<i64> = None;
    for (i, v) in gl.iter().enumerate() {
        if v.is_finite() {
            if let Some(prev) = last_valid
                && times[i] - prev > MAX_GAP_MINUTES
            {
                out.push((start, i));
                start = i;
            }
            last_valid = Some(times[i]);
        }
    }
    out.push((start, gl.len()));
    out.into_iter()
        .filter_map(|(from, mut to)| {
            while to > from && !gl[to - 1].is_finite() {
                to -= 1;
            }
            (to > from).then_some((from, to))
        })
        .collect()
}

/// A rolling mean over `window` points that ignores blanks (pandas' `rolling(min_periods=1)`),
/// whose first `window` values are set to the `window`-th (or the last, if shorter).
fn moving_average(gl: &[f64], window: usize) -> Vec<f64> {
    let mut out: Vec<f64> = (0..gl.len())
        .map(|i| crate::mean(gl[i.saturating_sub(window - 1)..=i].iter().copied()))
        .collect();
    let fill = if window > out.len() {
        out.last().copied()
    } else {
        out.get(window - 1).copied()
    };
    if let Some(fill) = fill {
        for v in out.iter_mut().take(window) {
            *v = fill;
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Turn {
    Min,
    Max,
}

/// One segment's excursions: `[plus, minus]`, each None when there is none.
fn atomic(gl: &[f64]) -> [Option<f64>; 2] {
    let n = gl.len();
    let sd = sample_sd(gl.iter().copied());
    if gl.iter().all(|v| !v.is_finite()) || n < 7 || n < SHORT_MA || sd < 1.0 {
        return [None, None];
    }
    let short = moving_average(gl, SHORT_MA);
    let long = moving_average(gl, LONG_MA);
    let mut delta: Vec<f64> = short.iter().zip(&long).map(|(s, l)| s - l).collect();

    // Crossing points of the two averages.
    let mut crosses: Vec<(usize, Turn)> =
        vec![(0, if delta[0] > 0.0 { Turn::Max } else { Turn::Min })];
    for d in delta.iter_mut() {
        if *d == 0.0 {
            *d = f64::NAN;
        }
    }
    for i in 1..n {
        let (d, d_prev) = (delta[i], delta[i - 1]);
        if gl[i].is_finite() && gl[i - 1].is_finite() && d.is_finite() && d_prev.is_finite() {
            if d * d_prev < 0.0 {
                crosses.push((i, if d < d_prev { Turn::Min } else { Turn::Max }));
            }
        } else if d.is_finite()
            && let Some(&(prev_idx, _)) = crosses.last()
        {
            let prev = delta[prev_idx];
            if d * prev < 0.0 {
                crosses.push((i, if d < prev { Turn::Min } else { Turn::Max }));
            }
        }
    }
    crosses.push((
        n - 1,
        if delta[n - 1] > 0.0 {
            Turn::Max
        } else {
            Turn::Min
        },
    ));

    // The extreme between consecutive crossings.
    let mut minmax: Vec<f64> = Vec::with_capacity(crosses.len());
    let mut indexes: Vec<usize> = Vec::with_capacity(crosses.len());
    for i in 0..crosses.len() - 1 {
        let s1 = if i == 0 { crosses[0].0 } else { indexes[i - 1] };
        let s2 = crosses[i + 1].0;
        let (lo, hi) = (s1.min(s2), s1.max(s2));
        let mut best: Option<(usize, f64)> = None;
        for (k, v) in gl.iter().enumerate().take(hi + 1).skip(lo) {
            if !v.is_finite() {
                continue;
            }
            let better = match (best, crosses[i].1) {
                (None, _) => true,
                (Some((_, b)), Turn::Min) => *v < b,
                (Some((_, b)), Turn::Max) => *v > b,
            };
            if better {
                best = Some((k, *v));
            }
        }
        let (k, v) = best.unwrap_or((s1, f64::NAN));
        minmax.push(v);
        indexes.push(k);
    }

    let plus = excursions(&minmax, sd, true);
    let minus = excursions(&minmax, sd, false);
    let mean_of = |h: &[f64]| (!h.is_empty()).then(|| crate::mean(h.iter().copied()));
    [mean_of(&plus), mean_of(&minus).map(f64::abs)]
}

/// The first index of the largest value (NaN counts as largest, as numpy's argmax has it).
fn arg_max(values: impl Iterator<Item = f64>) -> (usize, f64) {
    let mut best = (0usize, f64::NAN);
    for (i, v) in values.enumerate() {
        if v.is_nan() {
            return (i, f64::NAN);
        }
        if i == 0 || v > best.1 {
            best = (i, v);
        }
    }
    best
}

/// Excursions larger than `sd`, as iglu's `calculate_mage_plus` (`up`: from a nadir to the
/// peak that follows, riding the peak up) and `calculate_mage_minus` (down: the mirror
/// image, run here on the negated values). The two differ in one step only: after an
/// excursion up the search restarts where the ride ended, after one down at the nadir.
/// The heights come back in the direction of travel (negative for `down`).
fn excursions(values: &[f64], sd: f64, up: bool) -> Vec<f64> {
    let m: Vec<f64> = if up {
        values.to_vec()
    } else {
        values.iter().map(|v| -v).collect()
    };
    let n = m.len();
    let mut heights = Vec::new();
    let (mut j, mut prev_j) = (0usize, 0usize);
    while j < n {
        if prev_j > j {
            j += 1;
            continue;
        }
        let (off, max_v) = arg_max((prev_j..=j).map(|r| m[j] - m[r]));
        let i = off + prev_j;
        if max_v > sd {
            let mut k = j;
            while k < n {
                if m[k] >= m[j] {
                    j = k;
                }
                if m[k] - m[j] < -sd || k == n - 1 {
                    let height = m[j] - m[i];
                    heights.push(if up { height } else { -height });
                    prev_j = if up { k } else { j };
                    j = k;
                    break;
                }
                k += 1;
            }
        } else {
            j += 1;
        }
    }
    heights
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_trace_has_no_mage() {
        let r: Vec<Reading> = (0..300)
            .map(|i| Reading {
                at: 1_600_000_000 + i * 300,
                mg_dl: 120.0,
            })
            .collect();
        assert!(mage(&r).is_nan());
    }

    #[test]
    fn a_regular_swing_has_its_amplitude() {
        // 100 ↔ 200 over 6-hour periods: every excursion is about 100 mg/dL.
        let r: Vec<Reading> = (0..2000)
            .map(|i| {
                let phase = (i as f64) * 300.0 / (6.0 * 3600.0) * std::f64::consts::TAU;
                Reading {
                    at: 1_600_000_000 + i * 300,
                    mg_dl: 150.0 + 50.0 * phase.sin(),
                }
            })
            .collect();
        let m = mage(&r);
        assert!((m - 100.0).abs() < 5.0, "{m}");
    }
}
