//! When doses fall: a dose schedule read from FHIR `Dosage.timing` (and `asNeeded`), and the
//! dose times it gives between two instants in the patient's time zone.
//!
//! Clock times (`timeOfDay`, meal-related `when`, so-many times a day) are kept in the
//! patient's local time, so a morning dose stays at 08:00 across a daylight-saving change;
//! intervals in hours or less (`every 8 hours`) are kept in elapsed time. A local time that
//! does not exist on a spring-forward day falls later, as jiff's compatible rule does.

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Span, Timestamp};
use serde_json::Value;

/// The clock times meal-related codes stand for, in the patient's day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MealTimes {
    /// Waking (`WAKE`).
    pub wake: Time,
    /// Breakfast (`CM`, `ACM`, `PCM`); also `MORN`.
    pub breakfast: Time,
    /// Lunch (`CD`, `ACD`, `PCD`).
    pub lunch: Time,
    /// Afternoon (`AFT`).
    pub afternoon: Time,
    /// Dinner (`CV`, `ACV`, `PCV`); also `EVE`.
    pub dinner: Time,
    /// Bedtime (`HS`); also `NIGHT`.
    pub bed: Time,
}

impl Default for MealTimes {
    fn default() -> Self {
        Self {
            wake: Time::constant(7, 0, 0, 0),
            breakfast: Time::constant(8, 0, 0, 0),
            lunch: Time::constant(12, 30, 0, 0),
            afternoon: Time::constant(15, 0, 0, 0),
            dinner: Time::constant(18, 30, 0, 0),
            bed: Time::constant(22, 0, 0, 0),
        }
    }
}

/// How the doses recur.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recurrence {
    /// At these local times on the days that count: every `every_days` days from the start,
    /// and only on `weekdays` when any are named.
    Daily {
        /// Local clock times, sorted.
        times: Vec<Time>,
        /// 1 for every day, 2 for every other day...
        every_days: i64,
        /// The weekdays allowed (none: all).
        weekdays: Vec<Weekday>,
    },
    /// Every so long, in elapsed time, from the start.
    Interval(SignedDuration),
    /// At these local times, every `every_months` months on the start's day of the month.
    Monthly {
        /// Local clock times.
        times: Vec<Time>,
        /// 1 for monthly, 3 for quarterly...
        every_months: i64,
    },
}

/// A dose schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Taken when needed: nothing is due.
    AsNeeded,
    /// Due as the recurrence says, within the bounds.
    Regular {
        /// How the doses recur.
        recurrence: Recurrence,
        /// The first moment a dose may be due (`boundsPeriod.start`), when the timing says.
        start: Option<Timestamp>,
        /// The end (`boundsPeriod.end`), when the timing says.
        end: Option<Timestamp>,
        /// How long from the start (`boundsDuration`), when the timing says.
        duration: Option<SignedDuration>,
        /// How many doses in all (`count`), when the timing says.
        count: Option<u32>,
    },
}

/// Why a timing cannot be scheduled, in words for the prescriber.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// No timing, and not as needed.
    #[error("the dosage has no timing: say when it is taken, or that it is taken as needed")]
    NoTiming,
    /// A value outside what a schedule can use.
    #[error("the timing's {0} is not usable")]
    Unusable(&'static str),
}

/// How many doses a day a schedule makes, on average (`None` as needed).
pub fn doses_per_day(schedule: &Schedule) -> Option<f64> {
    let Schedule::Regular { recurrence, .. } = schedule else {
        return None;
    };
    match recurrence {
        Recurrence::Daily {
            times,
            every_days,
            weekdays,
        } => {
            let days_counted = if weekdays.is_empty() {
                7.0
            } else {
                weekdays.len() as f64
            };
            Some(times.len() as f64 / (*every_days).max(1) as f64 * days_counted / 7.0)
        }
        Recurrence::Interval(every) => {
            let secs = every.as_secs_f64();
            (secs > 0.0).then(|| 86_400.0 / secs)
        }
        Recurrence::Monthly {
            times,
            every_months,
        } => Some(times.len() as f64 / (30.0 * (*every_months).max(1) as f64)),
    }
}

/// How many units of its dose (tablets, mL...) a dosage line takes a day, when its dose is
/// a single quantity and its timing regular.
pub fn units_per_day(dosage: &Value, meals: &MealTimes) -> Option<f64> {
    let dose = dosage["doseAndRate"][0]["doseQuantity"]["value"]
        .as_f64()
        .filter(|v| v.is_finite() && *v > 0.0)?;
    Some(dose * doses_per_day(&read_dosage(dosage, meals).ok()?)?)
}

/// The most doses one day may have (a timing asking more is refused).
const MAX_PER_DAY: i64 = 48;

fn unusable(what: &'static str) -> ScheduleError {
    ScheduleError::Unusable(what)
}

/// A UCUM time unit as a duration of `value` of it (`s`, `min`, `h`, `d`, `wk`; months and
/// years are not fixed lengths and are refused here).
fn fixed_duration(value: f64, unit: &str) -> Option<SignedDuration> {
    let seconds = match unit {
        "s" => 1.0,
        "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "wk" => 604_800.0,
        _ => return None,
    };
    let total = value * seconds;
    (total.is_finite() && total > 0.0 && total < 1e10).then(|| SignedDuration::from_secs_f64(total))
}

fn weekday(code: &str) -> Option<Weekday> {
    medmesh_fhir::datetime::day_of_week(code).and_then(|i| Weekday::from_monday_zero_offset(i).ok())
}

fn shifted(t: Time, minutes: i64) -> Time {
    t.wrapping_add(SignedDuration::from_mins(minutes))
}

/// The clock times a `when` code stands for (`offset` minutes before or after a meal).
fn when_times(code: &str, offset: Option<i64>, meals: &MealTimes) -> Option<Vec<Time>> {
    let before = -offset.unwrap_or(30);
    let after = offset.unwrap_or(30);
    let three = [meals.breakfast, meals.lunch, meals.dinner];
    Some(match code {
        "WAKE" => vec![meals.wake],
        "MORN" | "MORN.early" | "MORN.late" => vec![meals.breakfast],
        "NOON" => vec![Time::constant(12, 0, 0, 0)],
        "AFT" | "AFT.early" | "AFT.late" => vec![meals.afternoon],
        "EVE" | "EVE.early" | "EVE.late" => vec![meals.dinner],
        "NIGHT" | "HS" | "PHS" => vec![meals.bed],
        "C" => three.to_vec(),
        "CM" => vec![meals.breakfast],
        "CD" => vec![meals.lunch],
        "CV" => vec![meals.dinner],
        "AC" => three.iter().map(|t| shifted(*t, before)).collect(),
        "ACM" => vec![shifted(meals.breakfast, before)],
        "ACD" => vec![shifted(meals.lunch, before)],
        "ACV" => vec![shifted(meals.dinner, before)],
        "PC" => three.iter().map(|t| shifted(*t, after)).collect(),
        "PCM" => vec![shifted(meals.breakfast, after)],
        "PCD" => vec![shifted(meals.lunch, after)],
        "PCV" => vec![shifted(meals.dinner, after)],
        _ => return None,
    })
}

/// `n` doses a day at waking-day times: once at breakfast; two to four spread evenly from
/// 08:00 to 20:00; more, evenly round the clock from 08:00.
fn spread(n: i64, meals: &MealTimes) -> Vec<Time> {
    match n {
        1 => vec![meals.breakfast],
        2..=4 => (0..n)
            .map(|i| shifted(Time::constant(8, 0, 0, 0), i * 720 / (n - 1)))
            .collect(),
        _ => (0..n)
            .map(|i| shifted(Time::constant(8, 0, 0, 0), i * 1440 / n))
            .collect(),
    }
}

/// What a common `Timing.code` says, as frequency, period and unit.
fn coded(code: &str) -> Option<(i64, f64, &'static str)> {
    Some(match code {
        "QD" | "AM" | "PM" => (1, 1.0, "d"),
        "BID" => (2, 1.0, "d"),
        "TID" => (3, 1.0, "d"),
        "QID" => (4, 1.0, "d"),
        "QOD" => (1, 2.0, "d"),
        "Q4H" => (1, 4.0, "h"),
        "Q6H" => (1, 6.0, "h"),
        "Q8H" => (1, 8.0, "h"),
        "WK" => (1, 1.0, "wk"),
        "MO" => (1, 1.0, "mo"),
        _ => return None,
    })
}

/// Reads a `Dosage`'s schedule (its `timing` and `asNeeded[x]`).
///
/// # Errors
/// [`ScheduleError`] for a dosage with no usable timing.
pub fn read_dosage(dosage: &Value, meals: &MealTimes) -> Result<Schedule, ScheduleError> {
    let as_needed = dosage["asNeededBoolean"] == Value::Bool(true)
        || dosage.get("asNeededCodeableConcept").is_some();
    if as_needed && dosage.get("timing").is_none() {
        return Ok(Schedule::AsNeeded);
    }
    let timing = dosage.get("timing").ok_or(ScheduleError::NoTiming)?;
    read_timing(timing, meals)
}

/// Reads a FHIR `Timing`.
///
/// # Errors
/// [`ScheduleError`] for a timing with nothing to schedule by, or values out of range.
pub fn read_timing(timing: &Value, meals: &MealTimes) -> Result<Schedule, ScheduleError> {
    let r = &timing["repeat"];
    let code = timing["code"]["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|c| c["code"].as_str().and_then(coded));
    let mut frequency = r["frequency"].as_i64();
    let mut period = r["period"].as_f64();
    let mut unit = r["periodUnit"].as_str().map(str::to_string);
    if let Some((f, p, u)) = code {
        frequency = frequency.or(Some(f));
        period = period.or(Some(p));
        unit = unit.or(Some(u.to_string()));
    }
    let frequency = frequency.unwrap_or(1);
    if !(1..=MAX_PER_DAY).contains(&frequency) {
        return Err(unusable("frequency"));
    }
    let offset = r["offset"].as_i64();
    let mut times: Vec<Time> = Vec::new();
    for t in r["timeOfDay"].as_array().into_iter().flatten() {
        let t: Time = t
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| unusable("timeOfDay"))?;
        times.push(t);
    }
    for w in r["when"].as_array().into_iter().flatten() {
        let found = w
            .as_str()
            .and_then(|c| when_times(c, offset, meals))
            .ok_or_else(|| unusable("when"))?;
        times.extend(found);
    }
    let mut weekdays = Vec::new();
    for d in r["dayOfWeek"].as_array().into_iter().flatten() {
        weekdays.push(
            d.as_str()
                .and_then(weekday)
                .ok_or_else(|| unusable("dayOfWeek"))?,
        );
    }
    times.sort();
    times.dedup();
    let recurrence = match (unit.as_deref(), period) {
        (Some("d"), Some(p)) | (None, Some(p)) if p >= 1.0 => {
            if p.fract() != 0.0 {
                return Err(unusable("period"));
            }
            if times.is_empty() {
                times = spread(frequency, meals);
            }
            #[allow(clippy::cast_possible_truncation)] // checked whole and at least 1
            let every_days = p as i64;
            Recurrence::Daily {
                times,
                every_days,
                weekdays,
            }
        }
        (Some("wk"), Some(p)) => {
            if p.fract() != 0.0 || p < 1.0 {
                return Err(unusable("period"));
            }
            if times.is_empty() {
                times = vec![meals.breakfast];
            }
            #[allow(clippy::cast_possible_truncation)] // checked whole and at least 1
            let weeks = p as i64;
            if weekdays.is_empty() {
                // The start's weekday, every so many weeks.
                Recurrence::Daily {
                    times,
                    every_days: 7 * weeks,
                    weekdays,
                }
            } else if weeks == 1 {
                // The named days of every week.
                Recurrence::Daily {
                    times,
                    every_days: 1,
                    weekdays,
                }
            } else {
                return Err(unusable("dayOfWeek"));
            }
        }
        (Some("mo" | "a"), Some(p)) => {
            if p.fract() != 0.0 || p < 1.0 {
                return Err(unusable("period"));
            }
            if times.is_empty() {
                times = vec![meals.breakfast];
            }
            #[allow(clippy::cast_possible_truncation)] // checked whole and at least 1
            let n = p as i64;
            let every_months = if unit.as_deref() == Some("a") {
                12 * n
            } else {
                n
            };
            Recurrence::Monthly {
                times,
                every_months,
            }
        }
        (Some(u), Some(p)) => {
            // Hours, minutes, seconds, or a fraction of a day: elapsed time.
            #[allow(clippy::cast_precision_loss)] // frequency is at most 48
            let each = fixed_duration(p / frequency as f64, u).ok_or_else(|| unusable("period"))?;
            if each < SignedDuration::from_mins(30) {
                return Err(unusable("period"));
            }
            Recurrence::Interval(each)
        }
        (_, None) if !times.is_empty() => Recurrence::Daily {
            times,
            every_days: 1,
            weekdays,
        },
        _ => return Err(ScheduleError::NoTiming),
    };
    let bounds = &r["boundsPeriod"];
    let instant = |v: &Value| -> Result<Option<Timestamp>, ScheduleError> {
        match v.as_str() {
            None => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| unusable("boundsPeriod")),
        }
    };
    let duration = match r.get("boundsDuration") {
        None => None,
        Some(d) => {
            let value = d["value"]
                .as_f64()
                .ok_or_else(|| unusable("boundsDuration"))?;
            let unit = d["code"].as_str().or(d["unit"].as_str()).unwrap_or("d");
            Some(fixed_duration(value, unit).ok_or_else(|| unusable("boundsDuration"))?)
        }
    };
    let count = match r["count"].as_u64() {
        None => None,
        Some(c) => Some(u32::try_from(c).map_err(|_| unusable("count"))?),
    };
    Ok(Schedule::Regular {
        recurrence,
        start: instant(&bounds["start"])?,
        end: instant(&bounds["end"])?,
        duration,
        count,
    })
}

/// The most dose times one call gives.
pub const MAX_DOSES: usize = 10_000;

/// Collects dose times: counts those of the course (a `count` is of the course, not of the
/// window asked for) and keeps those in the window.
struct Collector {
    start: Timestamp,
    stop: Timestamp,
    from: Timestamp,
    limit: usize,
    given: usize,
    out: Vec<Timestamp>,
}

impl Collector {
    /// Whether no later time can be taken.
    fn done(&self, t: Timestamp) -> bool {
        t >= self.stop || self.given >= self.limit || self.out.len() >= MAX_DOSES
    }

    /// Takes a dose time (ignored before the start); `false` once no later one can be.
    fn take(&mut self, t: Timestamp) -> bool {
        if self.done(t) {
            return false;
        }
        if t >= self.start {
            self.given += 1;
            if t >= self.from {
                self.out.push(t);
            }
        }
        true
    }
}

/// The dose times of `schedule` in `[from, to)`, for a course that began at `first` (the
/// prescription's start when the timing names none), in the patient's `tz`, at most
/// [`MAX_DOSES`]. As-needed schedules have none.
pub fn doses(
    schedule: &Schedule,
    first: Timestamp,
    from: Timestamp,
    to: Timestamp,
    tz: &TimeZone,
) -> Vec<Timestamp> {
    let Schedule::Regular {
        recurrence,
        start,
        end,
        duration,
        count,
    } = schedule
    else {
        return Vec::new();
    };
    let start = start.unwrap_or(first);
    let mut stop = to;
    if let Some(e) = end {
        stop = stop.min(*e);
    }
    if let Some(d) = duration
        && let Ok(e) = start.checked_add(*d)
    {
        stop = stop.min(e);
    }
    let mut c = Collector {
        start,
        stop,
        from,
        limit: count.map_or(MAX_DOSES, |n| (n as usize).min(MAX_DOSES)),
        given: 0,
        out: Vec::new(),
    };
    match recurrence {
        Recurrence::Interval(each) => {
            let mut t = start;
            while c.take(t) {
                match t.checked_add(*each) {
                    Ok(next) => t = next,
                    Err(_) => break,
                }
            }
        }
        Recurrence::Daily {
            times,
            every_days,
            weekdays,
        } => {
            let first_day = start.to_zoned_datetime(tz.clone()).date();
            let mut day = first_day;
            while !c.done(local(day, Time::midnight(), tz)) {
                let counts = days_between(first_day, day) % (*every_days).max(1) == 0
                    && (weekdays.is_empty() || weekdays.contains(&day.weekday()));
                if counts && !times.iter().all(|t| c.take(local(day, *t, tz))) {
                    break;
                }
                match day.tomorrow() {
                    Ok(d) => day = d,
                    Err(_) => break,
                }
            }
        }
        Recurrence::Monthly {
            times,
            every_months,
        } => {
            let first_day = start.to_zoned_datetime(tz.clone()).date();
            for k in 0.. {
                let Ok(day) = first_day.checked_add(Span::new().months(k * (*every_months).max(1)))
                else {
                    break;
                };
                if c.done(local(day, Time::midnight(), tz))
                    || !times.iter().all(|t| c.take(local(day, *t, tz)))
                {
                    break;
                }
            }
        }
    }
    c.out
}

fn days_between(a: Date, b: Date) -> i64 {
    a.until(b).map_or(0, |s| i64::from(s.get_days()))
}

/// A local date and time as an instant in `tz` (a time skipped by a clock change falls
/// later; a repeated one is its first occurrence).
fn local(day: Date, t: Time, tz: &TimeZone) -> Timestamp {
    tz.to_ambiguous_timestamp(day.to_datetime(t))
        .compatible()
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn schedule(timing: Value) -> Schedule {
        read_timing(&timing, &MealTimes::default()).unwrap()
    }

    fn utc(ts: &[Timestamp]) -> Vec<String> {
        ts.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn twice_a_day_stays_at_local_times_across_the_spring_change() {
        // Berlin moves from UTC+1 to UTC+2 on 2026-03-29.
        let s = schedule(json!({"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}}));
        let got = doses(
            &s,
            at("2026-03-28T00:00:00Z"),
            at("2026-03-28T00:00:00Z"),
            at("2026-03-30T00:00:00Z"),
            &berlin(),
        );
        assert_eq!(
            utc(&got),
            [
                "2026-03-28T07:00:00Z",
                "2026-03-28T19:00:00Z",
                "2026-03-29T06:00:00Z",
                "2026-03-29T18:00:00Z"
            ]
        );
    }

    #[test]
    fn every_eight_hours_is_elapsed_time_across_the_autumn_change() {
        // Berlin moves back to UTC+1 on 2026-10-25: the doses stay 8 real hours apart.
        let s = schedule(json!({"repeat": {"frequency": 1, "period": 8, "periodUnit": "h"}}));
        let got = doses(
            &s,
            at("2026-10-24T22:00:00Z"),
            at("2026-10-24T00:00:00Z"),
            at("2026-10-25T15:00:00Z"),
            &berlin(),
        );
        assert_eq!(
            utc(&got),
            [
                "2026-10-24T22:00:00Z",
                "2026-10-25T06:00:00Z",
                "2026-10-25T14:00:00Z"
            ]
        );
    }

    #[test]
    fn meals_times_of_day_and_codes() {
        let before_breakfast = schedule(json!({"repeat": {"when": ["ACM"], "offset": 60}}));
        let got = doses(
            &before_breakfast,
            at("2026-06-01T00:00:00Z"),
            at("2026-06-01T00:00:00Z"),
            at("2026-06-02T00:00:00Z"),
            &berlin(),
        );
        assert_eq!(utc(&got), ["2026-06-01T05:00:00Z"]); // 07:00 in Berlin summer time
        let at_times = schedule(json!({"repeat": {"timeOfDay": ["21:00:00", "09:00:00"]}}));
        let got = doses(
            &at_times,
            at("2026-06-01T00:00:00Z"),
            at("2026-06-01T00:00:00Z"),
            at("2026-06-02T00:00:00Z"),
            &TimeZone::UTC,
        );
        assert_eq!(utc(&got), ["2026-06-01T09:00:00Z", "2026-06-01T21:00:00Z"]);
        let tid = schedule(json!({"code": {"coding": [{"code": "TID"}]}}));
        let got = doses(
            &tid,
            at("2026-06-01T00:00:00Z"),
            at("2026-06-01T00:00:00Z"),
            at("2026-06-02T00:00:00Z"),
            &TimeZone::UTC,
        );
        assert_eq!(
            utc(&got),
            [
                "2026-06-01T08:00:00Z",
                "2026-06-01T14:00:00Z",
                "2026-06-01T20:00:00Z"
            ]
        );
    }

    #[test]
    fn bounds_count_and_every_other_day() {
        let week = schedule(
            json!({"repeat": {"frequency": 1, "period": 1, "periodUnit": "d",
                                              "boundsDuration": {"value": 3, "code": "d"}}}),
        );
        let got = doses(
            &week,
            at("2026-06-01T06:00:00Z"),
            at("2026-05-01T00:00:00Z"),
            at("2026-07-01T00:00:00Z"),
            &TimeZone::UTC,
        );
        assert_eq!(
            utc(&got),
            [
                "2026-06-01T08:00:00Z",
                "2026-06-02T08:00:00Z",
                "2026-06-03T08:00:00Z"
            ]
        );
        let five = schedule(
            json!({"repeat": {"frequency": 2, "period": 1, "periodUnit": "d", "count": 5}}),
        );
        let got = doses(
            &five,
            at("2026-06-01T00:00:00Z"),
            at("2026-06-02T00:00:00Z"),
            at("2026-07-01T00:00:00Z"),
            &TimeZone::UTC,
        );
        // The count is of the course: two were due on the first day, outside the window.
        assert_eq!(
            utc(&got),
            [
                "2026-06-02T08:00:00Z",
                "2026-06-02T20:00:00Z",
                "2026-06-03T08:00:00Z"
            ]
        );
        let qod = schedule(json!({"code": {"coding": [{"code": "QOD"}]}}));
        let got = doses(
            &qod,
            at("2026-06-01T00:00:00Z"),
            at("2026-06-01T00:00:00Z"),
            at("2026-06-06T00:00:00Z"),
            &TimeZone::UTC,
        );
        assert_eq!(
            utc(&got),
            [
                "2026-06-01T08:00:00Z",
                "2026-06-03T08:00:00Z",
                "2026-06-05T08:00:00Z"
            ]
        );
    }

    #[test]
    fn units_a_day_for_a_days_supply() {
        let meals = MealTimes::default();
        let line = |dose: f64, repeat: Value| {
            json!({"doseAndRate": [{"doseQuantity": {"value": dose, "unit": "tablet"}}],
                "timing": {"repeat": repeat}})
        };
        let twice = line(1.0, json!({"frequency": 2, "period": 1, "periodUnit": "d"}));
        assert_eq!(units_per_day(&twice, &meals), Some(2.0));
        let every8 = line(2.0, json!({"frequency": 1, "period": 8, "periodUnit": "h"}));
        assert_eq!(units_per_day(&every8, &meals), Some(6.0));
        let mon_thu = line(
            1.0,
            json!({"dayOfWeek": ["mon", "thu"], "timeOfDay": ["09:00:00"]}),
        );
        assert!((units_per_day(&mon_thu, &meals).unwrap() - 2.0 / 7.0).abs() < 1e-9);
        let prn = json!({"asNeededBoolean": true, "doseAndRate": [{"doseQuantity": {"value": 1}}]});
        assert_eq!(units_per_day(&prn, &meals), None);
    }

    #[test]
    fn weekly_on_named_days_and_monthly() {
        let mon_thu = schedule(
            json!({"repeat": {"frequency": 1, "period": 1, "periodUnit": "d",
                                                 "dayOfWeek": ["mon", "thu"], "timeOfDay": ["10:00:00"]}}),
        );
        // 2026-06-01 is a Monday.
        let got = doses(
            &mon_thu,
            at("2026-06-01T00:00:00Z"),
            at("2026-06-01T00:00:00Z"),
            at("2026-06-08T00:00:00Z"),
            &TimeZone::UTC,
        );
        assert_eq!(utc(&got), ["2026-06-01T10:00:00Z", "2026-06-04T10:00:00Z"]);
        let monthly =
            schedule(json!({"repeat": {"frequency": 1, "period": 1, "periodUnit": "mo"}}));
        let got = doses(
            &monthly,
            at("2026-01-31T00:00:00Z"),
            at("2026-01-01T00:00:00Z"),
            at("2026-04-01T00:00:00Z"),
            &TimeZone::UTC,
        );
        assert_eq!(
            utc(&got),
            [
                "2026-01-31T08:00:00Z",
                "2026-02-28T08:00:00Z",
                "2026-03-31T08:00:00Z"
            ]
        );
    }

    #[test]
    fn as_needed_has_no_doses_and_nonsense_is_refused() {
        let prn = read_dosage(&json!({"asNeededBoolean": true}), &MealTimes::default()).unwrap();
        assert_eq!(prn, Schedule::AsNeeded);
        assert!(
            doses(
                &prn,
                Timestamp::UNIX_EPOCH,
                Timestamp::UNIX_EPOCH,
                Timestamp::MAX,
                &TimeZone::UTC
            )
            .is_empty()
        );
        assert_eq!(
            read_dosage(&json!({"text": "some"}), &MealTimes::default()),
            Err(ScheduleError::NoTiming)
        );
        for bad in [
            json!({"repeat": {"frequency": 0, "period": 1, "periodUnit": "d"}}),
            json!({"repeat": {"frequency": 1, "period": 1.5, "periodUnit": "d"}}),
            json!({"repeat": {"frequency": 1, "period": 5, "periodUnit": "min"}}),
            json!({"repeat": {"when": ["SOMETIME"]}}),
            json!({"repeat": {"timeOfDay": ["25:00:00"]}}),
            json!({"repeat": {"dayOfWeek": ["funday"], "timeOfDay": ["10:00:00"]}}),
        ] {
            assert!(read_timing(&bad, &MealTimes::default()).is_err(), "{bad}");
        }
    }
}
