//! The ambulatory glucose profile (AGP): percentile curves over a modal day, and the daily
//! profiles, on the international consensus layout (Battelino et al. 2019; the AGP report
//! v5 of the International Diabetes Center).

use serde::Serialize;

use crate::{DAY, Reading};

/// Minutes per bin of the modal day.
pub const BIN_MINUTES: i64 = 15;
/// The percentiles drawn: 5, 25, 50 (the median), 75 and 95.
pub const PERCENTILES: [f64; 5] = [5.0, 25.0, 50.0, 75.0, 95.0];

/// One 15-minute bin of the modal day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bin {
    /// Minutes after midnight at the bin's start.
    pub minute: i64,
    /// Readings in the bin, over all days.
    pub readings: usize,
    /// The 5th, 25th, 50th, 75th and 95th percentiles (None for an empty bin).
    pub percentiles: Option<[f64; 5]>,
}

/// The modal day: 96 bins of 15 minutes, each with its percentiles over every day.
pub fn modal_day(readings: &[Reading]) -> Vec<Bin> {
    let bins = (24 * 60 / BIN_MINUTES) as usize;
    let mut by_bin: Vec<Vec<f64>> = vec![Vec::new(); bins];
    for r in readings {
        let minute = r.at.rem_euclid(DAY) / 60;
        let bin = usize::try_from(minute / BIN_MINUTES)
            .unwrap_or(0)
            .min(bins - 1);
        by_bin[bin].push(r.mg_dl);
    }
    by_bin
        .into_iter()
        .enumerate()
        .map(|(i, mut values)| {
            values.sort_by(f64::total_cmp);
            Bin {
                minute: i as i64 * BIN_MINUTES,
                readings: values.len(),
                percentiles: (!values.is_empty())
                    .then(|| PERCENTILES.map(|p| quantile(&values, p / 100.0))),
            }
        })
        .collect()
}

/// The `q` quantile of sorted values by linear interpolation (R's type 7, numpy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// One day's readings for the daily profiles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DailyProfile {
    /// Local midnight of the day, local wall-clock seconds.
    pub day: i64,
    /// (minutes after midnight, mg/dL) in time order.
    pub points: Vec<(i64, f64)>,
}

/// The readings split by local day, in order.
pub fn daily_profiles(readings: &[Reading]) -> Vec<DailyProfile> {
    let mut out: Vec<DailyProfile> = Vec::new();
    for r in readings {
        let day = r.at.div_euclid(DAY) * DAY;
        let point = ((r.at - day) / 60, r.mg_dl);
        match out.last_mut() {
            Some(profile) if profile.day == day => profile.points.push(point),
            _ => out.push(DailyProfile {
                day,
                points: vec![point],
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_linearly() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 0.25), 2.0);
        assert!((quantile(&v, 0.05) - 1.2).abs() < 1e-12);
    }

    #[test]
    fn readings_fall_in_their_time_of_day() {
        let day = 1_600_000_000 / DAY * DAY;
        let r = |offset: i64, mg_dl| Reading { at: offset, mg_dl };
        let bins = modal_day(&[
            r(day + 60, 100.0),
            r(day + DAY + 120, 200.0),
            r(day + 3600, 50.0),
        ]);
        assert_eq!(bins.len(), 96);
        assert_eq!(bins[0].readings, 2);
        assert_eq!(bins[0].percentiles.unwrap()[2], 150.0);
        assert_eq!(bins[4].readings, 1);
        assert_eq!(
            daily_profiles(&[r(day + 60, 1.0), r(day + DAY, 2.0)]).len(),
            2
        );
    }
}
