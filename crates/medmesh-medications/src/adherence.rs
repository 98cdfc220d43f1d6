//! How well a medication is kept: the proportion of days covered (PDC) by what was
//! dispensed, and the share of scheduled doses the patient logged as taken on time.
//!
//! PDC follows the Pharmacy Quality Alliance's method: the days in the window from the
//! first fill in it (or from the window's start, when a fill before it still covers it) to
//! its end; a day counts when supply covers it; a refill picked up before the last one ran
//! out starts when it runs out (supply is not counted twice). Patients under 80% are
//! usually called non-adherent ([`ADHERENT`]).

use jiff::civil::Date;
use jiff::{SignedDuration, Timestamp};

/// The PDC at and above which a patient counts as adherent.
pub const ADHERENT: f64 = 0.8;

/// One dispense: the day it was handed over and how many days it supplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    /// When it was handed over (`MedicationDispense.whenHandedOver`, the patient's date).
    pub date: Date,
    /// Days supplied (`MedicationDispense.daysSupply`).
    pub days_supply: u32,
}

/// A proportion of days covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pdc {
    /// Days supply covered.
    pub covered: u32,
    /// Days counted.
    pub days: u32,
}

impl Pdc {
    /// The proportion, 0 to 1.
    pub fn ratio(self) -> f64 {
        if self.days == 0 {
            0.0
        } else {
            f64::from(self.covered) / f64::from(self.days)
        }
    }

    /// Whether it is under [`ADHERENT`].
    pub fn below_threshold(self) -> bool {
        self.ratio() < ADHERENT
    }
}

fn day_number(d: Date) -> i64 {
    Date::constant(1970, 1, 1)
        .until(d)
        .map_or(0, |s| i64::from(s.get_days()))
}

/// The PDC over the days `[start, end)` from `fills` (in any order; fills before the
/// window count for the days they still cover in it). `None` when no supply reaches the
/// window: there is nothing to measure.
pub fn proportion_of_days_covered(fills: &[Fill], start: Date, end: Date) -> Option<Pdc> {
    let (start, end) = (day_number(start), day_number(end));
    if end <= start {
        return None;
    }
    let mut sorted: Vec<Fill> = fills
        .iter()
        .copied()
        .filter(|f| day_number(f.date) < end)
        .collect();
    sorted.sort_by_key(|f| f.date);
    // Supply laid end to end: each fill starts when it is picked up or when the one before
    // runs out, whichever is later.
    let mut next_free = i64::MIN;
    let mut spans = Vec::new();
    for f in &sorted {
        let from = day_number(f.date).max(next_free);
        let to = from + i64::from(f.days_supply);
        next_free = to;
        if to > start && from < end {
            spans.push((from.max(start), to.min(end)));
        }
    }
    let first = spans.first()?.0;
    let covered: i64 = spans.iter().map(|(a, b)| b - a).sum();
    Some(Pdc {
        covered: u32::try_from(covered).unwrap_or(u32::MAX),
        days: u32::try_from(end - first).unwrap_or(u32::MAX),
    })
}

/// What the patient logged of one scheduled dose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logged {
    /// Taken, at this time.
    Taken(Timestamp),
    /// Taken, and the patient said it was late.
    Late,
    /// Not taken, on purpose.
    Skipped,
}

/// The doses of a window as logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Doses {
    /// Doses due in the window.
    pub due: u32,
    /// Logged taken within the grace of their time.
    pub on_time: u32,
    /// Taken late (logged so, or taken outside the grace).
    pub late: u32,
    /// Logged skipped.
    pub skipped: u32,
    /// Due and not logged at all.
    pub missing: u32,
}

impl Doses {
    /// The share taken on time, 0 to 1 (`None` when nothing was due).
    pub fn on_time_rate(self) -> Option<f64> {
        (self.due > 0).then(|| f64::from(self.on_time) / f64::from(self.due))
    }
}

/// Counts `due` doses against `logs` (each the scheduled time it is for, and what was
/// logged); a dose taken within `grace` of its time is on time.
pub fn dose_counts(
    due: &[Timestamp],
    logs: &[(Timestamp, Logged)],
    grace: SignedDuration,
) -> Doses {
    let mut out = Doses {
        due: u32::try_from(due.len()).unwrap_or(u32::MAX),
        ..Doses::default()
    };
    for scheduled in due {
        // The last log for a dose wins (a correction).
        match logs
            .iter()
            .rev()
            .find(|(s, _)| s == scheduled)
            .map(|(_, l)| *l)
        {
            None => out.missing += 1,
            Some(Logged::Skipped) => out.skipped += 1,
            Some(Logged::Late) => out.late += 1,
            Some(Logged::Taken(at)) => {
                if at.duration_since(*scheduled).abs() <= grace {
                    out.on_time += 1;
                } else {
                    out.late += 1;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn fill(m: i8, d: i8, days: u32) -> Fill {
        Fill {
            date: date(2026, m, d),
            days_supply: days,
        }
    }

    /// June 2026, 30 days.
    fn june(fills: &[Fill]) -> Option<Pdc> {
        proportion_of_days_covered(fills, date(2026, 6, 1), date(2026, 7, 1))
    }

    #[test]
    fn pdc_by_hand() {
        // One 30-day fill on the first day covers the month.
        assert_eq!(
            june(&[fill(6, 1, 30)]),
            Some(Pdc {
                covered: 30,
                days: 30
            })
        );
        // Two 10-day fills with a gap: June 1-10 and 16-25, 20 of 30 days (66.7%).
        let gap = june(&[fill(6, 16, 10), fill(6, 1, 10)]).unwrap();
        assert_eq!(
            gap,
            Pdc {
                covered: 20,
                days: 30
            }
        );
        assert!(gap.below_threshold());
        // A refill picked up early starts when the first runs out: June 11-20, not 5-14.
        assert_eq!(
            june(&[fill(6, 1, 10), fill(6, 5, 10)]),
            Some(Pdc {
                covered: 20,
                days: 30
            })
        );
        // A fill before the window still covers its first days: May 25 + 30 days covers
        // June 1-23; the window counts from June 1.
        assert_eq!(
            june(&[fill(5, 25, 30)]),
            Some(Pdc {
                covered: 23,
                days: 30
            })
        );
        // The first fill in the middle of the window starts the count: June 11-30, all
        // covered.
        let late_start = june(&[fill(6, 11, 30)]).unwrap();
        assert_eq!(
            late_start,
            Pdc {
                covered: 20,
                days: 20
            }
        );
        assert!(!late_start.below_threshold());
        // Nothing reaches the window: nothing to measure.
        assert_eq!(june(&[fill(4, 1, 30)]), None);
        assert_eq!(june(&[fill(7, 1, 30)]), None);
        assert_eq!(june(&[]), None);
    }

    #[test]
    fn ninety_days_with_three_monthly_fills_one_late() {
        // Apr 1 (30), May 10 (30, nine days late), Jun 9 (30): Apr 1-30, May 10-Jun 8,
        // Jun 9-29 within [Apr 1, Jun 30) = 30 + 30 + 21 = 81 of 90 days (90%).
        let pdc = proportion_of_days_covered(
            &[fill(4, 1, 30), fill(5, 10, 30), fill(6, 9, 30)],
            date(2026, 4, 1),
            date(2026, 6, 30),
        )
        .unwrap();
        assert_eq!(
            pdc,
            Pdc {
                covered: 81,
                days: 90
            }
        );
        assert!((pdc.ratio() - 0.9).abs() < 1e-9);
    }

    #[test]
    fn doses_on_time_late_skipped_and_missing() {
        let t = |h: i64| Timestamp::UNIX_EPOCH + SignedDuration::from_hours(h);
        let due = [t(8), t(20), t(32), t(44)];
        let logs = [
            (t(8), Logged::Taken(t(8) + SignedDuration::from_mins(20))),
            (t(20), Logged::Taken(t(20) + SignedDuration::from_hours(3))),
            (t(32), Logged::Skipped),
            // A correction: first skipped, then taken on time.
            (t(32), Logged::Taken(t(32))),
        ];
        let d = dose_counts(&due, &logs, SignedDuration::from_hours(1));
        assert_eq!(
            d,
            Doses {
                due: 4,
                on_time: 2,
                late: 1,
                skipped: 0,
                missing: 1
            }
        );
        assert_eq!(d.on_time_rate(), Some(0.5));
        assert_eq!(
            dose_counts(&[], &logs, SignedDuration::from_hours(1)).on_time_rate(),
            None
        );
    }
}
