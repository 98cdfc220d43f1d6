//! The consensus metrics, named after iglu's functions.

use serde::Serialize;

use crate::{Reading, grid, mage, mean, round_even, sample_sd};

/// iglu's default largest gap (minutes) that is still interpolated across.
pub const INTER_GAP_MINUTES: i64 = 45;

/// The summary of a period, in mg/dL and percent. Fields are named after iglu's functions;
/// a metric that the data cannot support (too few readings, no day-to-day overlap) is None.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Readings behind the figures.
    pub readings: usize,
    /// Local wall-clock seconds of the first and last reading.
    pub first_at: Option<i64>,
    /// See `first_at`.
    pub last_at: Option<i64>,
    /// Mean glucose (`mean_glu`).
    pub mean_glu: Option<f64>,
    /// Sample standard deviation (`sd_glu`).
    pub sd_glu: Option<f64>,
    /// Coefficient of variation, percent (`cv_glu`).
    pub cv_glu: Option<f64>,
    /// Glucose management indicator, percent: 3.31 + 0.02392 × mean (`gmi`).
    pub gmi: Option<f64>,
    /// Percent of readings below 54 mg/dL.
    pub below_54: Option<f64>,
    /// Percent of readings below 70 mg/dL.
    pub below_70: Option<f64>,
    /// Percent of readings from 70 to 180 mg/dL inclusive.
    pub in_range_70_180: Option<f64>,
    /// Percent of readings above 180 mg/dL.
    pub above_180: Option<f64>,
    /// Percent of readings above 250 mg/dL.
    pub above_250: Option<f64>,
    /// Percent of the expected readings present (`active_percent`, automatic range).
    pub active_percent: Option<f64>,
    /// Mean amplitude of glycemic excursions (`mage`, moving-average algorithm).
    pub mage: Option<f64>,
    /// Continuous overall net glycemic action over 24 hours (`conga`, n = 24, iglu's default).
    pub conga: Option<f64>,
    /// Mean of daily differences (`modd`, lag one day).
    pub modd: Option<f64>,
    /// Low blood glucose index (`lbgi`).
    pub lbgi: Option<f64>,
    /// High blood glucose index (`hbgi`).
    pub hbgi: Option<f64>,
    /// Glycemia risk index (`gri`, Klonoff et al. 2023).
    pub gri: Option<f64>,
    /// J-index: 0.001 × (mean + SD)² (`j_index`).
    pub j_index: Option<f64>,
}

fn some(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Every metric over the readings (sorted and de-duplicated with [`crate::normalize`]).
pub fn summarize(readings: &[Reading]) -> Summary {
    let values = readings.iter().map(|r| r.mg_dl);
    let n = readings.len();
    let mean_glu = mean(values.clone());
    let sd_glu = sample_sd(values.clone());
    let percent = |pred: &dyn Fn(f64) -> bool| -> Option<f64> {
        (n > 0).then(|| 100.0 * values.clone().filter(|v| pred(*v)).count() as f64 / n as f64)
    };
    let below_54 = percent(&|v| v < 54.0);
    let below_70 = percent(&|v| v < 70.0);
    let above_180 = percent(&|v| v > 180.0);
    let above_250 = percent(&|v| v > 250.0);
    let gri = match (below_54, below_70, above_180, above_250) {
        (Some(b54), Some(b70), Some(a180), Some(a250)) => {
            Some((3.0 * b54 + 2.4 * (b70 - b54) + 1.6 * a250 + 0.8 * (a180 - a250)).min(100.0))
        }
        _ => None,
    };
    Summary {
        readings: n,
        first_at: readings.first().map(|r| r.at),
        last_at: readings.last().map(|r| r.at),
        mean_glu: some(mean_glu),
        sd_glu: some(sd_glu),
        cv_glu: some(100.0 * sd_glu / mean_glu),
        gmi: some(3.31 + 0.02392 * mean_glu),
        below_54,
        below_70,
        in_range_70_180: percent(&|v| (70.0..=180.0).contains(&v)),
        above_180,
        above_250,
        active_percent: active_percent(readings),
        mage: some(mage::mage(readings)),
        conga: conga(readings, 24),
        modd: modd(readings, 1),
        lbgi: some(risk_index(readings, Risk::Low)),
        hbgi: some(risk_index(readings, Risk::High)),
        gri,
        j_index: some(0.001 * (mean_glu + sd_glu).powi(2)),
    }
}

/// iglu's `active_percent` in its automatic range: the readings present against those a
/// sensor at the median step would have taken between the first and the last.
pub fn active_percent(readings: &[Reading]) -> Option<f64> {
    if readings.len() < 2 {
        return (readings.len() == 1).then_some(100.0);
    }
    let mut diffs: Vec<f64> = readings
        .windows(2)
        .map(|w| (w[1].at - w[0].at) as f64 / 60.0)
        .collect();
    let mut sorted = diffs.clone();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    let median = if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    };
    let dt0 = round_even(median);
    if dt0 <= 0.0 {
        return None;
    }
    let total_minutes = diffs.iter().sum::<f64>();
    let theoretical = round_even(total_minutes / dt0) + 1.0;
    diffs.retain(|d| *d > dt0);
    let gap_minutes: f64 = diffs.iter().sum();
    let missing = round_even((gap_minutes - diffs.len() as f64 * dt0) / dt0);
    some((theoretical - missing) / theoretical * 100.0)
}

/// iglu's `conga`: the SD of the differences between grid points `hours` apart.
pub fn conga(readings: &[Reading], hours: i64) -> Option<f64> {
    let grid = grid::day_by_day(readings, None, INTER_GAP_MINUTES)?;
    let per_hour = round_even(60.0 / grid.dt0 as f64) as usize;
    let lag = per_hour * usize::try_from(hours).ok()?;
    if lag == 0 || lag >= grid.values.len() {
        return None;
    }
    let diffs: Vec<f64> = (lag..grid.values.len())
        .map(|i| grid.values[i] - grid.values[i - lag])
        .filter(|d| d.is_finite())
        .collect();
    if diffs.len() < 2 {
        return None;
    }
    some(sample_sd(diffs.iter().copied()))
}

/// iglu's `modd`: the mean absolute difference between grid points `lag_days` apart.
pub fn modd(readings: &[Reading], lag_days: i64) -> Option<f64> {
    let grid = grid::day_by_day(readings, None, INTER_GAP_MINUTES)?;
    let shift = usize::try_from(lag_days * 24 * 60 / grid.dt0).ok()?;
    if shift == 0 || shift >= grid.values.len() {
        return None;
    }
    some(mean(
        (shift..grid.values.len()).map(|i| (grid.values[i] - grid.values[i - shift]).abs()),
    ))
}

enum Risk {
    Low,
    High,
}

/// Kovatchev's risk function: 10 × f(BG)² over the readings on one side of 112.5 mg/dL,
/// divided by all readings (iglu's `lbgi` and `hbgi`).
fn risk_index(readings: &[Reading], side: Risk) -> f64 {
    if readings.is_empty() {
        return f64::NAN;
    }
    let sum: f64 = readings
        .iter()
        .filter(|r| r.mg_dl > 0.0)
        .map(|r| {
            let f = 1.509 * (r.mg_dl.ln().powf(1.084) - 5.381);
            match side {
                Risk::Low if r.mg_dl < 112.5 => f.min(0.0).powi(2),
                Risk::High if r.mg_dl >= 112.5 => f.max(0.0).powi(2),
                _ => 0.0,
            }
        })
        .sum();
    10.0 * sum / readings.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64], step_minutes: i64) -> Vec<Reading> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Reading {
                at: 1_600_000_000 + i as i64 * step_minutes * 60,
                mg_dl: *v,
            })
            .collect()
    }

    #[test]
    fn ranges_and_gri_follow_the_consensus_cut_points() {
        let s = summarize(&series(
            &[
                50.0, 60.0, 100.0, 100.0, 100.0, 100.0, 180.0, 200.0, 300.0, 70.0,
            ],
            5,
        ));
        assert_eq!(s.below_54, Some(10.0));
        assert_eq!(s.below_70, Some(20.0));
        assert_eq!(s.in_range_70_180, Some(60.0));
        assert_eq!(s.above_180, Some(20.0));
        assert_eq!(s.above_250, Some(10.0));
        assert!((s.gri.unwrap() - 78.0).abs() < 1e-9);
        let worst = summarize(&series(&[40.0, 300.0], 5));
        assert_eq!(worst.gri, Some(100.0));
    }

    #[test]
    fn active_percent_counts_the_missing_steps() {
        // 0, 5, 10, then 25: two readings missing of six.
        let mut r = series(&[100.0; 3], 5);
        r.push(Reading {
            at: r[0].at + 25 * 60,
            mg_dl: 100.0,
        });
        assert!((active_percent(&r).unwrap() - 4.0 / 6.0 * 100.0).abs() < 1e-9);
    }

    #[test]
    fn risk_indices_are_zero_on_the_other_side() {
        let s = summarize(&series(&[200.0, 220.0], 5));
        assert_eq!(s.lbgi, Some(0.0));
        assert!(s.hbgi.unwrap() > 0.0);
    }

    #[test]
    fn no_readings_gives_no_figures() {
        let s = summarize(&[]);
        assert_eq!(s.readings, 0);
        assert_eq!(s.mean_glu, None);
        assert_eq!(s.gri, None);
    }
}
