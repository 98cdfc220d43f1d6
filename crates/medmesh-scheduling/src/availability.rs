//! Free time, computed from recurring rules rather than from rows made in advance.
//!
//! A calendar is open in its weekly hours (in its own time zone, so opening hours stay put
//! across daylight-saving changes), minus the periods closed (holidays, one occurrence
//! cancelled), plus extra periods opened once (an occurrence moved). What is already claimed is taken off, each
//! claim widened backwards by the buffer so a new visit's own buffer never runs into it.
//! Changing one occurrence is adding a closed or extra period: the weekly rule is untouched,
//! so no other occurrence moves. All instants are microseconds since the Unix epoch.

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// Microseconds in a minute.
pub const MINUTE: i64 = 60_000_000;
/// Microseconds in a day.
pub const DAY: i64 = 24 * 60 * MINUTE;

/// A half-open interval `[start, end)` of instants, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    /// Start, inclusive.
    pub start: i64,
    /// End, exclusive.
    pub end: i64,
}

impl Interval {
    /// An interval; empty when `end <= start`.
    pub fn new(start: i64, end: i64) -> Self {
        Self { start, end }
    }

    /// Whether it holds no time.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// Whether it shares time with `other`.
    pub fn overlaps(&self, other: &Interval) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// Whether it lies wholly inside `other`.
    pub fn within(&self, other: &Interval) -> bool {
        other.start <= self.start && self.end <= other.end
    }
}

/// Weekly opening hours: on these days, from `start` to `end` local time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeeklyHours {
    /// The days.
    pub days: Vec<Weekday>,
    /// Opening, local time.
    pub start: Time,
    /// Closing, local time; `None` for midnight at the end of the day.
    pub end: Option<Time>,
}

/// Why the rules cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RulesError {
    /// An instant or a date out of the calendar's range.
    #[error("a date or time out of range")]
    OutOfRange,
}

/// A calendar's rules: when it is open.
#[derive(Debug, Clone)]
pub struct OpenHours {
    /// The time zone the weekly hours are in.
    pub zone: TimeZone,
    /// Recurring weekly hours.
    pub weekly: Vec<WeeklyHours>,
    /// Extra periods open once (an occurrence moved, a Saturday clinic).
    pub extra: Vec<Interval>,
    /// Periods closed (holidays, leave, one occurrence cancelled).
    pub closed: Vec<Interval>,
}

fn ts(micros: i64) -> Result<Timestamp, RulesError> {
    Timestamp::from_microsecond(micros).map_err(|_| RulesError::OutOfRange)
}

fn local_instant(zone: &TimeZone, date: Date, time: Time) -> Result<i64, RulesError> {
    // A time skipped by a daylight-saving change is taken as the instant after the gap, and
    // a repeated one as the first of the two (RFC 5545's and Temporal's "compatible").
    let instant = zone
        .to_ambiguous_timestamp(date.to_datetime(time))
        .compatible()
        .map_err(|_| RulesError::OutOfRange)?;
    Ok(instant.as_microsecond())
}

impl OpenHours {
    /// The open time within `window`, sorted and merged.
    ///
    /// # Errors
    /// [`RulesError::OutOfRange`] for instants beyond the calendar.
    pub fn open(&self, window: Interval) -> Result<Vec<Interval>, RulesError> {
        if window.is_empty() {
            return Ok(Vec::new());
        }
        let mut open = Vec::new();
        // One day before the window's local date, so hours that began the evening before in
        // a zone west of UTC are seen too.
        let first = ts(window.start)?
            .to_zoned_datetime(self.zone.clone())
            .date();
        let last = ts(window.end)?.to_zoned_datetime(self.zone.clone()).date();
        let mut day = first.yesterday().map_err(|_| RulesError::OutOfRange)?;
        while day <= last {
            for hours in &self.weekly {
                if !hours.days.contains(&day.weekday()) {
                    continue;
                }
                let start = local_instant(&self.zone, day, hours.start)?;
                let end = match hours.end {
                    Some(t) => local_instant(&self.zone, day, t)?,
                    None => local_instant(
                        &self.zone,
                        day.tomorrow().map_err(|_| RulesError::OutOfRange)?,
                        Time::midnight(),
                    )?,
                };
                open.push(Interval::new(start.max(window.start), end.min(window.end)));
            }
            day = day.tomorrow().map_err(|_| RulesError::OutOfRange)?;
        }
        // Closed periods close the weekly hours; an extra period opens even inside one (the
        // occurrence moved to another hour of a day otherwise closed).
        let mut open = subtract(&merge(open), &self.closed);
        for extra in &self.extra {
            open.push(Interval::new(
                extra.start.max(window.start),
                extra.end.min(window.end),
            ));
        }
        Ok(merge(open))
    }
}

/// Sorts and merges intervals, dropping empty ones.
pub fn merge(mut intervals: Vec<Interval>) -> Vec<Interval> {
    intervals.retain(|i| !i.is_empty());
    intervals.sort_unstable();
    let mut out: Vec<Interval> = Vec::with_capacity(intervals.len());
    for i in intervals {
        match out.last_mut() {
            Some(last) if i.start <= last.end => last.end = last.end.max(i.end),
            _ => out.push(i),
        }
    }
    out
}

/// `from` with `taken` removed; `from` sorted and merged, the result is too.
pub fn subtract(from: &[Interval], taken: &[Interval]) -> Vec<Interval> {
    let taken = merge(taken.to_vec());
    let mut out = Vec::new();
    for f in from {
        let mut cursor = f.start;
        for t in taken.iter().filter(|t| t.overlaps(f)) {
            if t.start > cursor {
                out.push(Interval::new(cursor, t.start));
            }
            cursor = cursor.max(t.end);
        }
        if cursor < f.end {
            out.push(Interval::new(cursor, f.end));
        }
    }
    out
}

/// What one visit needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisitShape {
    /// The visit's length, minutes (at least 1).
    pub minutes: u32,
    /// Time kept free after it, minutes.
    pub buffer_minutes: u32,
}

impl VisitShape {
    /// The visit itself.
    pub fn visit(&self, start: i64) -> Interval {
        Interval::new(start, start + i64::from(self.minutes.max(1)) * MINUTE)
    }

    /// What a visit starting at `start` claims: the visit and the buffer after it.
    pub fn claim(&self, start: i64) -> Interval {
        Interval::new(
            start,
            start + i64::from(self.minutes.max(1) + self.buffer_minutes) * MINUTE,
        )
    }
}

/// Start times of visits of `shape` in `open` time that avoid `claimed` time: each visit lies
/// inside open time and neither it nor its buffer overlaps a claim. Starts fall on the open
/// period's start, then every visit-plus-buffer after it, on a five-minute grid; at most
/// `limit`.
pub fn visit_starts(
    open: &[Interval],
    claimed: &[Interval],
    shape: VisitShape,
    not_before: i64,
    limit: usize,
) -> Vec<i64> {
    let widened: Vec<Interval> = claimed
        .iter()
        .map(|c| Interval::new(c.start - i64::from(shape.buffer_minutes) * MINUTE, c.end))
        .collect();
    let free = subtract(open, &widened);
    let step = i64::from(shape.minutes.max(1) + shape.buffer_minutes) * MINUTE;
    let grid = 5 * MINUTE;
    let mut out = Vec::new();
    for f in free {
        let mut start = f.start.max(not_before);
        // Onto the five-minute grid, so offers read as times people use.
        let rem = start.rem_euclid(grid);
        if rem != 0 {
            start += grid - rem;
        }
        while shape.visit(start).end <= f.end {
            if out.len() >= limit {
                return out;
            }
            out.push(start);
            start += step;
        }
    }
    out
}

/// Whether a visit of `shape` at `start` is offerable: inside open time, clear of claims
/// (with its buffer), and not before `not_before`. What `$book` checks again.
pub fn offerable(
    open: &[Interval],
    claimed: &[Interval],
    shape: VisitShape,
    start: i64,
    not_before: i64,
) -> bool {
    let visit = shape.visit(start);
    let claim = shape.claim(start);
    start >= not_before
        && open.iter().any(|o| visit.within(o))
        && !claimed.iter().any(|c| c.overlaps(&claim))
}

/// The instant `days` local days after `from`'s local date began, in `zone`: the booking
/// horizon's end.
///
/// # Errors
/// [`RulesError::OutOfRange`].
pub fn days_after(zone: &TimeZone, from: i64, days: u32) -> Result<i64, RulesError> {
    let zoned = ts(from)?.to_zoned_datetime(zone.clone());
    let date = zoned
        .date()
        .checked_add(SignedDuration::from_hours(24 * i64::from(days)))
        .map_err(|_| RulesError::OutOfRange)?;
    local_instant(zone, date, Time::midnight())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::{date, time};

    fn at(zone: &TimeZone, y: i16, mo: i8, d: i8, h: i8, mi: i8) -> i64 {
        local_instant(zone, date(y, mo, d), time(h, mi, 0, 0)).unwrap()
    }

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap()
    }

    fn weekdays_9_to_12(zone: TimeZone) -> OpenHours {
        OpenHours {
            zone,
            weekly: vec![WeeklyHours {
                days: vec![
                    Weekday::Monday,
                    Weekday::Tuesday,
                    Weekday::Wednesday,
                    Weekday::Thursday,
                    Weekday::Friday,
                ],
                start: time(9, 0, 0, 0),
                end: Some(time(12, 0, 0, 0)),
            }],
            extra: vec![],
            closed: vec![],
        }
    }

    #[test]
    fn weekly_hours_open_in_local_time_across_a_daylight_saving_change() {
        let z = berlin();
        let hours = weekdays_9_to_12(z.clone());
        // Friday 2026-10-23 to Tuesday 2026-10-27: the clocks go back on Sunday the 25th.
        let window = Interval::new(at(&z, 2026, 10, 23, 0, 0), at(&z, 2026, 10, 28, 0, 0));
        let open = hours.open(window).unwrap();
        assert_eq!(
            open,
            vec![
                Interval::new(at(&z, 2026, 10, 23, 9, 0), at(&z, 2026, 10, 23, 12, 0)),
                Interval::new(at(&z, 2026, 10, 26, 9, 0), at(&z, 2026, 10, 26, 12, 0)),
                Interval::new(at(&z, 2026, 10, 27, 9, 0), at(&z, 2026, 10, 27, 12, 0)),
            ]
        );
        // 09:00 in Berlin is 07:00 UTC in summer and 08:00 UTC in winter.
        assert_eq!(
            at(&z, 2026, 10, 26, 9, 0) - at(&z, 2026, 10, 23, 9, 0),
            3 * DAY + 60 * MINUTE
        );
    }

    #[test]
    fn closing_one_occurrence_leaves_the_others_and_an_extra_period_opens_once() {
        let z = berlin();
        let mut hours = weekdays_9_to_12(z.clone());
        let window = Interval::new(at(&z, 2026, 12, 7, 0, 0), at(&z, 2026, 12, 10, 0, 0));
        let before = hours.open(window).unwrap();
        assert_eq!(before.len(), 3);
        // Tuesday's occurrence moves to the afternoon.
        hours.closed.push(Interval::new(
            at(&z, 2026, 12, 8, 0, 0),
            at(&z, 2026, 12, 9, 0, 0),
        ));
        hours.extra.push(Interval::new(
            at(&z, 2026, 12, 8, 14, 0),
            at(&z, 2026, 12, 8, 17, 0),
        ));
        let after = hours.open(window).unwrap();
        assert_eq!(after[0], before[0]);
        assert_eq!(after[2], before[2]);
        assert_eq!(
            after[1],
            Interval::new(at(&z, 2026, 12, 8, 14, 0), at(&z, 2026, 12, 8, 17, 0))
        );
    }

    #[test]
    fn visits_avoid_claims_and_keep_their_buffer() {
        let open = vec![Interval::new(0, 120 * MINUTE)];
        let shape = VisitShape {
            minutes: 20,
            buffer_minutes: 10,
        };
        // Booked 30..60 (a 20-minute visit with its 10-minute buffer).
        let claimed = vec![Interval::new(30 * MINUTE, 60 * MINUTE)];
        let starts = visit_starts(&open, &claimed, shape, 0, 100);
        assert_eq!(starts, vec![0, 60 * MINUTE, 90 * MINUTE]);
        for s in &starts {
            assert!(offerable(&open, &claimed, shape, *s, 0));
        }
        // 10 would run its buffer into the booking; 100 would end after closing.
        assert!(!offerable(&open, &claimed, shape, 10 * MINUTE, 0));
        assert!(!offerable(&open, &claimed, shape, 105 * MINUTE, 0));
        // Not before now.
        assert_eq!(
            visit_starts(&open, &claimed, shape, 61 * MINUTE, 100),
            vec![65 * MINUTE, 95 * MINUTE]
        );
    }

    #[test]
    fn merge_and_subtract() {
        let m = merge(vec![
            Interval::new(5, 10),
            Interval::new(0, 3),
            Interval::new(3, 6),
            Interval::new(20, 20),
        ]);
        assert_eq!(m, vec![Interval::new(0, 10)]);
        assert_eq!(
            subtract(&m, &[Interval::new(2, 4), Interval::new(8, 12)]),
            vec![Interval::new(0, 2), Interval::new(4, 8)]
        );
    }

    #[test]
    fn the_horizon_counts_local_days() {
        let z = berlin();
        let from = at(&z, 2026, 12, 4, 15, 30);
        assert_eq!(days_after(&z, from, 56).unwrap(), at(&z, 2027, 1, 29, 0, 0));
    }
}
