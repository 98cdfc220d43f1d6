//! How glucose moves with insulin, carbohydrates and activity: lagged cross-correlation on a
//! 5-minute grid, and the excursions after meals and after exercise, each with the number of
//! days behind it and a plain statement of its uncertainty. These describe the past; they
//! are not advice on doses.

use serde::Serialize;

use crate::{DAY, Reading};

const STEP: i64 = 300;
/// Lags tried, minutes: 0 to 4 hours by 15 minutes (glucose after the factor).
const MAX_LAG_MINUTES: i64 = 240;
const LAG_STEP_MINUTES: i64 = 15;

/// A factor's values: (local wall-clock seconds, value).
pub type Series = [(i64, f64)];

/// How a factor is put on the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// Amounts add up in each step (insulin, carbs, steps); empty steps are 0.
    Sum,
    /// The mean in each step (heart rate); empty steps are missing.
    Mean,
    /// The last value holds until the next (a basal rate).
    Hold,
}

/// The correlation of glucose with one factor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Correlation {
    /// The factor's name.
    pub factor: String,
    /// The lag (minutes, glucose after the factor) where |r| is largest.
    pub lag_minutes: i64,
    /// Pearson's r at that lag.
    pub r: Option<f64>,
    /// Its 95% interval (Fisher's z, with one independent sample per hour of data: the
    /// 5-minute points are far from independent).
    pub interval: Option<(f64, f64)>,
    /// Grid points behind the figure.
    pub points: usize,
    /// Days with both glucose and the factor.
    pub days: usize,
    /// The figure's uncertainty in words.
    pub statement: String,
}

/// The mean excursion after events (meals or workouts).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Excursion {
    /// What the events are.
    pub after: String,
    /// Events with glucose around them.
    pub events: usize,
    /// Days they fell on.
    pub days: usize,
    /// Mean change from the start to the peak (meals) or the lowest point (exercise), mg/dL.
    pub mean_change: Option<f64>,
    /// Its standard deviation.
    pub sd_change: Option<f64>,
    /// Mean minutes from the start to that point.
    pub mean_minutes_to_extreme: Option<f64>,
    /// The figure's uncertainty in words.
    pub statement: String,
}

fn glucose_grid(readings: &[Reading], start: i64, n: usize) -> Vec<f64> {
    let mut out = vec![f64::NAN; n];
    let mut j = 0;
    for (k, v) in out.iter_mut().enumerate() {
        let t = start + k as i64 * STEP;
        while j + 1 < readings.len() && readings[j + 1].at <= t {
            j += 1;
        }
        if let Some(a) = readings.get(j)
            && a.at <= t
            && t - a.at <= 10 * 60
        {
            *v = a.mg_dl;
        }
    }
    out
}

fn factor_grid(series: &Series, how: Aggregate, start: i64, n: usize) -> Vec<f64> {
    let mut sums = vec![0.0; n];
    let mut counts = vec![0usize; n];
    for &(at, v) in series {
        if at < start {
            continue;
        }
        if let Some(k) = usize::try_from((at - start) / STEP).ok().filter(|k| *k < n) {
            sums[k] += v;
            counts[k] += 1;
        }
    }
    match how {
        Aggregate::Sum => sums,
        Aggregate::Mean => sums
            .iter()
            .zip(&counts)
            .map(|(s, c)| if *c > 0 { s / *c as f64 } else { f64::NAN })
            .collect(),
        Aggregate::Hold => {
            let mut last = series
                .iter()
                .filter(|(at, _)| *at < start)
                .map(|(_, v)| *v)
                .next_back()
                .unwrap_or(f64::NAN);
            (0..n)
                .map(|k| {
                    if counts[k] > 0 {
                        last = sums[k] / counts[k] as f64;
                    }
                    last
                })
                .collect()
        }
    }
}

fn pearson(pairs: &[(f64, f64)]) -> Option<f64> {
    let n = pairs.len() as f64;
    if pairs.len() < 3 {
        return None;
    }
    let (mx, my) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / n,
        pairs.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

fn days_of(times: impl Iterator<Item = i64>) -> usize {
    let mut days: Vec<i64> = times.map(|t| t.div_euclid(DAY)).collect();
    days.sort_unstable();
    days.dedup();
    days.len()
}

fn caution(days: usize) -> &'static str {
    if days < 7 {
        "Fewer than 7 days: too little to draw anything from."
    } else if days < 14 {
        "Fewer than 14 days (the consensus minimum for CGM figures): read it as a hint."
    } else {
        "Enough days for a pattern; it shows an association, not a cause."
    }
}

/// The best lag so far: minutes, r, the (factor, glucose) pairs and their times.
type LagFit = (i64, f64, Vec<(f64, f64)>, Vec<i64>);

/// Glucose against one factor, at every lag from 0 to 4 hours.
pub fn correlate(
    factor: &str,
    readings: &[Reading],
    series: &Series,
    how: Aggregate,
) -> Correlation {
    let (Some(first), Some(last)) = (readings.first(), readings.last()) else {
        return Correlation {
            factor: factor.to_owned(),
            lag_minutes: 0,
            r: None,
            interval: None,
            points: 0,
            days: 0,
            statement: caution(0).to_owned(),
        };
    };
    let start = first.at - first.at.rem_euclid(STEP);
    let n = usize::try_from((last.at - start) / STEP + 1).unwrap_or(0);
    let g = glucose_grid(readings, start, n);
    let f = factor_grid(series, how, start, n);
    let mut best: Option<LagFit> = None;
    for lag_min in (0..=MAX_LAG_MINUTES).step_by(LAG_STEP_MINUTES as usize) {
        let lag = usize::try_from(lag_min * 60 / STEP).unwrap_or(0);
        let mut pairs = Vec::new();
        let mut times = Vec::new();
        for k in 0..n.saturating_sub(lag) {
            let (x, y) = (f[k], g[k + lag]);
            if x.is_finite() && y.is_finite() {
                pairs.push((x, y));
                times.push(start + k as i64 * STEP);
            }
        }
        if let Some(r) = pearson(&pairs)
            && best.as_ref().is_none_or(|b| r.abs() > b.1.abs())
        {
            best = Some((lag_min, r, pairs, times));
        }
    }
    match best {
        None => Correlation {
            factor: factor.to_owned(),
            lag_minutes: 0,
            r: None,
            interval: None,
            points: 0,
            days: 0,
            statement: "No overlap of glucose and this factor, or the factor never changes."
                .to_owned(),
        },
        Some((lag, r, pairs, times)) => {
            let days = days_of(times.iter().copied());
            let hours = days_of(times.iter().map(|t| t * 24)).max(1) as f64;
            let interval = (hours > 3.0).then(|| {
                let z = r.clamp(-0.999_999, 0.999_999).atanh();
                let se = 1.0 / (hours - 3.0).sqrt();
                ((z - 1.96 * se).tanh(), (z + 1.96 * se).tanh())
            });
            Correlation {
                factor: factor.to_owned(),
                lag_minutes: lag,
                r: Some(r),
                interval,
                points: pairs.len(),
                days,
                statement: caution(days).to_owned(),
            }
        }
    }
}

/// The change in glucose after each event: to the peak in the next 3 hours (`rise`), or to
/// the lowest point from the start to 2 hours after the end (`fall`, for workouts, whose
/// value is their length in minutes).
pub fn excursions(after: &str, readings: &[Reading], events: &Series, rise: bool) -> Excursion {
    let mut changes = Vec::new();
    let mut minutes = Vec::new();
    let mut when = Vec::new();
    for &(at, value) in events {
        let base = readings
            .iter()
            .rev()
            .find(|r| r.at <= at && at - r.at <= 15 * 60);
        let Some(base) = base else { continue };
        let end = if rise {
            at + 3 * 3600
        } else {
            at + (value.max(0.0) * 60.0) as i64 + 2 * 3600
        };
        let window: Vec<&Reading> = readings
            .iter()
            .filter(|r| r.at > at && r.at <= end)
            .collect();
        if window.len() < 6 {
            continue;
        }
        let extreme = if rise {
            window.iter().max_by(|a, b| a.mg_dl.total_cmp(&b.mg_dl))
        } else {
            window.iter().min_by(|a, b| a.mg_dl.total_cmp(&b.mg_dl))
        };
        if let Some(x) = extreme {
            changes.push(x.mg_dl - base.mg_dl);
            minutes.push((x.at - at) as f64 / 60.0);
            when.push(at);
        }
    }
    let days = days_of(when.iter().copied());
    let n = changes.len();
    Excursion {
        after: after.to_owned(),
        events: n,
        days,
        mean_change: (n > 0).then(|| crate::mean(changes.iter().copied())),
        sd_change: (n > 1).then(|| crate::sample_sd(changes.iter().copied())),
        mean_minutes_to_extreme: (n > 0).then(|| crate::mean(minutes.iter().copied())),
        statement: if n < 5 {
            "Fewer than 5 events: too few to describe a pattern.".to_owned()
        } else {
            caution(days).to_owned()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lagged_response_is_found_at_its_lag() {
        // Carbs every 6 hours; glucose peaks 60 minutes later.
        let meals: Vec<(i64, f64)> = (0..60).map(|i| (i * 6 * 3600, 50.0)).collect();
        let readings: Vec<Reading> = (0..(15 * 288))
            .map(|i: i64| {
                let t = i * 300;
                let since = t.rem_euclid(6 * 3600);
                let bump = if (3000..4200).contains(&since) {
                    80.0
                } else {
                    0.0
                };
                Reading {
                    at: t,
                    mg_dl: 110.0 + bump,
                }
            })
            .collect();
        let c = correlate("carbs", &readings, &meals, Aggregate::Sum);
        assert_eq!(c.lag_minutes, 60, "{c:?}");
        assert!(c.r.unwrap() > 0.3, "{c:?}");
        assert_eq!(c.days, 15);
        let (lo, hi) = c.interval.unwrap();
        assert!(lo < c.r.unwrap() && c.r.unwrap() < hi);
        let e = excursions("meals", &readings, &meals, true);
        assert_eq!(e.events, 60);
        assert_eq!(e.mean_change, Some(80.0));
        assert!(e.statement.contains("association"));
    }

    #[test]
    fn no_factor_no_figure() {
        let readings: Vec<Reading> = (0..100)
            .map(|i| Reading {
                at: i * 300,
                mg_dl: 100.0 + i as f64,
            })
            .collect();
        let c = correlate("steps", &readings, &[], Aggregate::Sum);
        assert_eq!(c.r, None);
    }
}
