//! Readings onto a regular grid, day by day: iglu's `CGMS2DayByDay`.
//!
//! iglu interpolates linearly onto a grid of `dt0` minutes that starts one step after the
//! first day's midnight and ends at the midnight after the last reading, leaves out the
//! points beyond the data, and blanks the points inside gaps longer than `inter_gap`
//! minutes. CONGA, MODD and MAGE are computed on that grid, so it is reproduced exactly
//! (including where a gap's blanking falls) to agree with the reference.

use crate::{DAY, Reading};

/// The interpolated grid: `values[d * points_per_day + i]` is day `d`'s point `i`, at
/// `first_day + d days + (i + 1) * dt0 minutes`; NaN where there is no value.
#[derive(Debug, Clone)]
pub struct DayGrid {
    /// Local midnight of the first day, in local wall-clock seconds.
    pub first_day: i64,
    /// The step in minutes.
    pub dt0: i64,
    /// Points per day (1440 / dt0).
    pub points_per_day: usize,
    /// The grid's values, day after day.
    pub values: Vec<f64>,
}

impl DayGrid {
    /// The number of days the grid spans.
    pub fn days(&self) -> usize {
        self.values
            .len()
            .checked_div(self.points_per_day)
            .unwrap_or(0)
    }
}

/// The most common spacing between readings in whole minutes (iglu takes the mode of the
/// differences in minutes, the smallest on ties, then truncates). None below two readings.
pub fn modal_step_minutes(readings: &[Reading]) -> Option<i64> {
    let mut diffs: Vec<i64> = readings.windows(2).map(|w| w[1].at - w[0].at).collect();
    if diffs.is_empty() {
        return None;
    }
    diffs.sort_unstable();
    let (mut best, mut best_count) = (diffs[0], 0usize);
    let mut i = 0;
    while i < diffs.len() {
        let mut j = i;
        while j < diffs.len() && diffs[j] == diffs[i] {
            j += 1;
        }
        if j - i > best_count {
            best = diffs[i];
            best_count = j - i;
        }
        i = j;
    }
    // Seconds to whole minutes, truncated as Python's int() does.
    Some((best / 60).max(1))
}

/// Interpolates sorted, de-duplicated readings onto the day-by-day grid. `dt0` None takes the
/// modal step. None when there are fewer than two readings.
pub fn day_by_day(
    readings: &[Reading],
    dt0: Option<i64>,
    inter_gap_minutes: i64,
) -> Option<DayGrid> {
    let dt0 = match dt0 {
        Some(step) => step.max(1),
        None => modal_step_minutes(readings)?,
    };
    let first = readings.first()?;
    let last = readings.last()?;
    let start = first.at.div_euclid(DAY) * DAY;
    let end = (last.at + DAY - 1).div_euclid(DAY) * DAY;
    let n_days = usize::try_from((end - start) / DAY).ok()?;
    let points_per_day = usize::try_from(1440 / dt0).ok()?;
    let step = dt0 * 60;
    let total = n_days * points_per_day;
    let mut values = vec![f64::NAN; total];
    // Linear interpolation at start + (k + 1) * step, NaN outside [first, last].
    let mut seg = 0usize;
    for (k, value) in values.iter_mut().enumerate() {
        let t = start + (k as i64 + 1) * step;
        if t < first.at || t > last.at {
            continue;
        }
        while seg + 1 < readings.len() && readings[seg + 1].at < t {
            seg += 1;
        }
        let a = readings[seg];
        *value = if a.at == t || seg + 1 >= readings.len() {
            a.mg_dl
        } else {
            let b = readings[seg + 1];
            a.mg_dl + (b.mg_dl - a.mg_dl) * (t - a.at) as f64 / (b.at - a.at) as f64
        };
    }
    // Blank the gaps, with iglu's indices (floor of the gap's start, floor of one second
    // before its end).
    for pair in readings.windows(2) {
        if pair[1].at - pair[0].at > inter_gap_minutes * 60 {
            let from = (pair[0].at - start).div_euclid(step);
            let to = (pair[1].at - start - 1).div_euclid(step);
            let from = usize::try_from(from.max(0)).unwrap_or(0).min(total);
            let to = usize::try_from(to.max(0)).unwrap_or(0).min(total);
            for v in values.iter_mut().take(to).skip(from) {
                *v = f64::NAN;
            }
        }
    }
    Some(DayGrid {
        first_day: start,
        dt0,
        points_per_day,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(min: i64, mg_dl: f64) -> Reading {
        Reading {
            at: 1_600_000_000 / DAY * DAY + min * 60,
            mg_dl,
        }
    }

    #[test]
    fn interpolates_between_readings_and_leaves_the_rest_empty() {
        let grid = day_by_day(&[r(0, 100.0), r(10, 120.0)], None, 45).unwrap();
        assert_eq!(grid.dt0, 10);
        assert_eq!(grid.points_per_day, 144);
        assert_eq!(grid.values[0], 120.0);
        assert!(grid.values[1].is_nan());
        let grid = day_by_day(&[r(0, 100.0), r(10, 120.0)], Some(5), 45).unwrap();
        assert_eq!(grid.values[0], 110.0);
        assert_eq!(grid.values[1], 120.0);
    }

    #[test]
    fn gaps_longer_than_inter_gap_are_blank() {
        let grid = day_by_day(
            &[r(0, 100.0), r(5, 100.0), r(65, 160.0), r(70, 160.0)],
            Some(5),
            45,
        )
        .unwrap();
        // Points between 5 and 65 minutes are blanked from index 1 (floor(5/5)) to 12.
        assert!(grid.values[1..12].iter().all(|v| v.is_nan()));
        assert_eq!(grid.values[12], 160.0);
    }

    #[test]
    fn mode_takes_the_smallest_on_ties() {
        let readings = [r(0, 1.0), r(5, 1.0), r(15, 1.0)];
        assert_eq!(modal_step_minutes(&readings), Some(5));
    }
}
