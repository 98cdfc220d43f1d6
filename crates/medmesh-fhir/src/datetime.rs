//! FHIR date, dateTime and instant values as ranges of microseconds since the Unix epoch.
//!
//! A FHIR date is imprecise: `2024` means all of 2024. Search compares ranges, so every value
//! is turned into `[lo, hi)`. Values without a time zone are taken as UTC.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// A half-open range `[lo, hi)` in microseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    /// Inclusive start.
    pub lo: i64,
    /// Exclusive end.
    pub hi: i64,
}

/// Smallest value, used for an open start.
pub const MIN_MICROS: i64 = i64::MIN / 2;
/// Largest value, used for an open end.
pub const MAX_MICROS: i64 = i64::MAX / 2;

fn micros(dt: OffsetDateTime) -> i64 {
    i64::try_from(dt.unix_timestamp_nanos() / 1000).unwrap_or(MAX_MICROS)
}

fn num(s: &str, digits: usize) -> Option<u32> {
    (s.len() == digits && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn parse_offset(s: &str) -> Option<UtcOffset> {
    if s == "Z" {
        return Some(UtcOffset::UTC);
    }
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = s[1..].split_once(':')?;
    let (h, m) = (num(h, 2)?, num(m, 2)?);
    if h > 14 || m > 59 {
        return None;
    }
    UtcOffset::from_hms(sign * h as i8, sign * m as i8, 0).ok()
}

/// Parses a FHIR `date`, `dateTime` or `instant` into the range it denotes.
///
/// Returns `None` for anything that is not a valid value of those types.
pub fn parse_range(s: &str) -> Option<DateRange> {
    let (date_part, time_part) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut it = date_part.split('-');
    let year = num(it.next()?, 4)? as i32;
    let month = it
        .next()
        .map(|m| num(m, 2))
        .map_or(Some(None), |m| m.map(Some))?;
    let day = it
        .next()
        .map(|d| num(d, 2))
        .map_or(Some(None), |d| d.map(Some))?;
    if it.next().is_some() {
        return None;
    }
    let month_of = |m: u32| Month::try_from(m as u8).ok();
    match (month, day, time_part) {
        (None, None, None) => {
            let lo = Date::from_calendar_date(year, Month::January, 1).ok()?;
            let hi = Date::from_calendar_date(year + 1, Month::January, 1).ok()?;
            Some(DateRange {
                lo: day_micros(lo),
                hi: day_micros(hi),
            })
        }
        (Some(m), None, None) => {
            let lo = Date::from_calendar_date(year, month_of(m)?, 1).ok()?;
            let (ny, nm) = if m == 12 {
                (year + 1, 1)
            } else {
                (year, m + 1)
            };
            let hi = Date::from_calendar_date(ny, month_of(nm)?, 1).ok()?;
            Some(DateRange {
                lo: day_micros(lo),
                hi: day_micros(hi),
            })
        }
        (Some(m), Some(d), None) => {
            let lo = Date::from_calendar_date(year, month_of(m)?, d as u8).ok()?;
            let hi = lo.next_day()?;
            Some(DateRange {
                lo: day_micros(lo),
                hi: day_micros(hi),
            })
        }
        (Some(m), Some(d), Some(t)) => {
            let date = Date::from_calendar_date(year, month_of(m)?, d as u8).ok()?;
            let tz_at = t.find(['Z', '+', '-'])?;
            let (clock, tz) = t.split_at(tz_at);
            let offset = parse_offset(tz)?;
            let (hms, frac) = match clock.split_once('.') {
                Some((hms, f)) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
                    (hms, Some(f))
                }
                Some(_) => return None,
                None => (clock, None),
            };
            let mut parts = hms.split(':');
            let h = num(parts.next()?, 2)?;
            let mi = num(parts.next()?, 2)?;
            let sec = parts.next().map(|x| num(x, 2));
            if parts.next().is_some() {
                return None;
            }
            let (sec, precise_to_second) = match sec {
                Some(Some(s)) => (s, true),
                Some(None) => return None,
                None => (0, false),
            };
            let sec = sec.min(59);
            let time = Time::from_hms(h as u8, mi as u8, sec as u8).ok()?;
            let base = PrimitiveDateTime::new(date, time).assume_offset(offset);
            let lo = micros(base);
            let width: i64 = match (frac, precise_to_second) {
                (Some(f), _) => {
                    let digits = f.len().min(6) as u32;
                    let value: i64 = f[..digits as usize].parse().ok()?;
                    let unit = 10i64.pow(6 - digits);
                    return Some(DateRange {
                        lo: lo + value * unit,
                        hi: lo + value * unit + unit,
                    });
                }
                (None, true) => 1_000_000,
                (None, false) => 60_000_000,
            };
            Some(DateRange { lo, hi: lo + width })
        }
        _ => None,
    }
}

fn day_micros(d: Date) -> i64 {
    micros(PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_utc())
}

/// A calendar period that a date range covers exactly: a year, a month or a day (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarSpan {
    /// A whole year.
    Year(i32),
    /// A whole month.
    Month(i32, u8),
    /// One day.
    Day(i32, u8, u8),
}

impl CalendarSpan {
    /// The span a `[lo, hi)` range covers, when it is exactly a year, month or day, as
    /// [`parse_range`] gives for `YYYY`, `YYYY-MM` and `YYYY-MM-DD`.
    pub fn of_range(lo: i64, hi: i64) -> Option<Self> {
        let start = OffsetDateTime::from_unix_timestamp_nanos(i128::from(lo) * 1000).ok()?;
        if start.time() != Time::MIDNIGHT {
            return None;
        }
        let d = start.date();
        let (y, m, day) = (d.year(), u8::from(d.month()), d.day());
        let candidates = [
            CalendarSpan::Day(y, m, day),
            CalendarSpan::Month(y, m),
            CalendarSpan::Year(y),
        ];
        candidates
            .into_iter()
            .filter(|c| match c {
                CalendarSpan::Day(..) => true,
                CalendarSpan::Month(..) => day == 1,
                CalendarSpan::Year(..) => day == 1 && m == 1,
            })
            .find(|c| parse_range(&c.to_string()).is_some_and(|r| r.lo == lo && r.hi == hi))
    }

    /// This span and the coarser ones that contain it: a day gives its day, month and year.
    pub fn with_coarser(self) -> Vec<CalendarSpan> {
        match self {
            CalendarSpan::Year(_) => vec![self],
            CalendarSpan::Month(y, _) => vec![self, CalendarSpan::Year(y)],
            CalendarSpan::Day(y, m, _) => {
                vec![self, CalendarSpan::Month(y, m), CalendarSpan::Year(y)]
            }
        }
    }
}

impl std::fmt::Display for CalendarSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalendarSpan::Year(y) => write!(f, "{y:04}"),
            CalendarSpan::Month(y, m) => write!(f, "{y:04}-{m:02}"),
            CalendarSpan::Day(y, m, d) => write!(f, "{y:04}-{m:02}-{d:02}"),
        }
    }
}

/// The FHIR `days-of-week` codes, Monday first.
pub const DAYS_OF_WEEK: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A `days-of-week` code as days after Monday (0 to 6); `None` for another code.
pub fn day_of_week(code: &str) -> Option<i8> {
    DAYS_OF_WEEK
        .iter()
        .position(|d| *d == code)
        .and_then(|i| i8::try_from(i).ok())
}

/// Formats microseconds since the epoch as a FHIR instant (`2024-01-02T03:04:05.678Z`).
pub fn format_instant(micros_since_epoch: i64) -> String {
    let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros_since_epoch) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    dt.format(&f).unwrap_or_default()
}

/// Parses an RFC 3339 timestamp (`2024-01-02T03:04:05Z`, any offset) into microseconds
/// since the epoch; `None` when it is not one.
pub fn parse_rfc3339_micros(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

/// Formats microseconds as an HTTP date (`Last-Modified`).
pub fn format_http_date(micros_since_epoch: i64) -> String {
    let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros_since_epoch) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    dt.format(&f).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_timestamps_parse_to_micros() {
        use super::{format_instant, parse_rfc3339_micros};
        let t = parse_rfc3339_micros("2024-01-02T03:04:05.678Z").unwrap();
        assert_eq!(format_instant(t), "2024-01-02T03:04:05.678Z");
        assert_eq!(
            parse_rfc3339_micros("2024-01-02T05:04:05.678+02:00"),
            Some(t)
        );
        for bad in ["2024-01-02", "yesterday", ""] {
            assert_eq!(parse_rfc3339_micros(bad), None, "{bad}");
        }
    }

    #[test]
    fn calendar_spans_round_trip_dates_of_each_precision() {
        for s in [
            "1980",
            "1980-05",
            "1980-05-17",
            "2024-02-29",
            "1999-12",
            "1999-12-31",
        ] {
            let r = parse_range(s).unwrap();
            assert_eq!(CalendarSpan::of_range(r.lo, r.hi).unwrap().to_string(), s);
        }
        let r = parse_range("1980-05-17T10:00:00Z").unwrap();
        assert_eq!(CalendarSpan::of_range(r.lo, r.hi), None);
        let day = CalendarSpan::Day(1980, 5, 17).with_coarser();
        let names: Vec<String> = day.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["1980-05-17", "1980-05", "1980"]);
    }

    use super::*;

    #[test]
    fn ranges_follow_precision() {
        let y = parse_range("2024").unwrap();
        let d = parse_range("2024-02-29").unwrap();
        assert_eq!(d.hi - d.lo, 86_400_000_000);
        assert!(y.lo <= d.lo && d.hi <= y.hi);
        let m = parse_range("2024-12").unwrap();
        assert_eq!(m.hi, parse_range("2025").unwrap().lo);
        let t = parse_range("2024-02-29T10:00:00+02:00").unwrap();
        assert_eq!(t.lo, parse_range("2024-02-29T08:00:00Z").unwrap().lo);
        assert_eq!(t.hi - t.lo, 1_000_000);
        let ms = parse_range("2024-02-29T08:00:00.25Z").unwrap();
        assert_eq!(ms.lo - t.lo, 250_000);
        assert_eq!(format_instant(ms.lo), "2024-02-29T08:00:00.250Z");
    }

    #[test]
    fn rejects_invalid_values() {
        for bad in [
            "2024-13",
            "2023-02-29",
            "24-01-01",
            "2024-01-01T25:00:00Z",
            "2024-01-01T10:00:00",
            "x",
            "2024-1-1",
            "2024-01-01T10:00:00.Z",
        ] {
            assert_eq!(parse_range(bad), None, "{bad}");
        }
    }
}
