//! What the CSV readers share: bounded reading, delimiter detection, locale-tolerant numbers
//! and dates.

use std::io::Read;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;

use crate::{ImportError, MAX_TABLE_BYTES};

/// Reads a whole text file (at most [`MAX_TABLE_BYTES`]), without a byte-order mark.
pub(crate) fn slurp(input: impl Read) -> Result<String, ImportError> {
    let mut bytes = Vec::new();
    input.take(MAX_TABLE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_TABLE_BYTES {
        return Err(ImportError::TooLarge {
            limit: MAX_TABLE_BYTES,
        });
    }
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        // Older exports are Windows-1252 / Latin-1: each byte is its code point.
        Err(e) => e.into_bytes().iter().map(|b| char::from(*b)).collect(),
    };
    Ok(text.trim_start_matches('\u{feff}').to_owned())
}

/// A row with its 1-based line number.
pub(crate) struct Row {
    pub(crate) line: u64,
    pub(crate) cells: Vec<String>,
}

/// Splits the text into rows, with the delimiter of the line that best looks like a header
/// (the one with most `,`, `;` or tab).
pub(crate) fn rows(text: &str) -> Vec<Row> {
    let probe: Vec<&str> = text.lines().take(20).collect();
    let count = |d: char| {
        probe
            .iter()
            .map(|l| l.matches(d).count())
            .max()
            .unwrap_or(0)
    };
    let delimiter = [(',', count(',')), (';', count(';')), ('\t', count('\t'))]
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map_or(b',', |(d, _)| d as u8);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    for record in reader.records().flatten() {
        let line = record.position().map_or(0, |p| p.line());
        out.push(Row {
            line,
            cells: record.iter().map(|c| c.trim().to_owned()).collect(),
        });
    }
    out
}

/// Column positions by header name.
pub(crate) struct Columns(Vec<String>);

impl Columns {
    pub(crate) fn new(header: &[String]) -> Columns {
        Columns(header.iter().map(|h| h.to_ascii_lowercase()).collect())
    }

    /// The first column whose header starts with `prefix` (case-insensitive).
    pub(crate) fn find(&self, prefix: &str) -> Option<usize> {
        let prefix = prefix.to_ascii_lowercase();
        self.0.iter().position(|h| h.starts_with(&prefix))
    }

    /// The header of column `i`.
    pub(crate) fn name(&self, i: usize) -> &str {
        self.0.get(i).map_or("", String::as_str)
    }
}

/// The cell at `i`, trimmed, or None when absent or empty.
pub(crate) fn cell(row: &Row, i: Option<usize>) -> Option<&str> {
    let c = row.cells.get(i?)?.as_str();
    (!c.is_empty()).then_some(c)
}

/// A number written with either decimal separator ("6,3" or "6.3"); thousands separators
/// are not used in these exports.
pub(crate) fn number(text: &str) -> Option<f64> {
    let text = text.trim();
    let normalized = if text.contains(',') && !text.contains('.') {
        text.replace(',', ".")
    } else {
        text.to_owned()
    };
    normalized.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// How day and month are ordered in a file's dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DateOrder {
    /// Year first (2019-12-05, 2019/12/05).
    YearMonthDay,
    /// Day first (05-12-2019, 05.12.2019, 5/12/19).
    DayMonthYear,
    /// Month first (12-05-2019, 12/5/19), as in US exports.
    MonthDayYear,
}

fn date_fields(text: &str) -> Option<(u32, u32, u32, usize)> {
    let date = text.split([' ', 'T']).next()?;
    let parts: Vec<&str> = date.split(['-', '/', '.']).collect();
    if parts.len() != 3 {
        return None;
    }
    let nums: Vec<u32> = parts
        .iter()
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    Some((nums[0], nums[1], nums[2], parts[0].len()))
}

/// Decides the date order from all of a file's date cells: a first field above 12 means day
/// first, a second above 12 means month first; an AM/PM clock means US order; otherwise day
/// first (the more common order outside the US).
pub(crate) fn date_order<'a>(cells: impl Iterator<Item = &'a str>) -> DateOrder {
    let (mut first_big, mut second_big, mut am_pm) = (false, false, false);
    for c in cells {
        if let Some((a, b, _, first_len)) = date_fields(c) {
            if first_len == 4 {
                return DateOrder::YearMonthDay;
            }
            first_big |= a > 12;
            second_big |= b > 12;
        }
        let upper = c.to_ascii_uppercase();
        am_pm |= upper.ends_with(" AM") || upper.ends_with(" PM");
    }
    match (first_big, second_big) {
        (true, false) => DateOrder::DayMonthYear,
        (false, true) => DateOrder::MonthDayYear,
        _ if am_pm => DateOrder::MonthDayYear,
        _ => DateOrder::DayMonthYear,
    }
}

/// A local date and time ("05-12-2019 16:25", "3/3/15 00:26:24", "2016-10-24T11:24:17",
/// "02-18-2021 12:09 PM"), placed in `zone` (an ambiguous time takes the earlier instant).
pub(crate) fn local_time(text: &str, order: DateOrder, zone: &TimeZone) -> Option<Timestamp> {
    let (a, b, c, _) = date_fields(text)?;
    let (year, month, day) = match order {
        DateOrder::YearMonthDay => (a, b, c),
        DateOrder::DayMonthYear => (c, b, a),
        DateOrder::MonthDayYear => (c, a, b),
    };
    let year = if year < 100 { 2000 + year } else { year };
    let date = Date::new(
        i16::try_from(year).ok()?,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
    )
    .ok()?;
    let rest = text.split_once([' ', 'T']).map_or("", |(_, r)| r).trim();
    let time = clock(rest)?;
    let dt = DateTime::from_parts(date, time);
    zone.to_ambiguous_timestamp(dt).compatible().ok()
}

/// "16:25", "00:26:24", "4:25 PM", "12:09:05 AM".
fn clock(text: &str) -> Option<Time> {
    let upper = text.trim().to_ascii_uppercase();
    let (hms, pm) = match upper
        .strip_suffix("PM")
        .or_else(|| upper.strip_suffix("P.M."))
    {
        Some(h) => (h.trim().to_owned(), Some(true)),
        None => match upper
            .strip_suffix("AM")
            .or_else(|| upper.strip_suffix("A.M."))
        {
            Some(h) => (h.trim().to_owned(), Some(false)),
            None => (upper.clone(), None),
        },
    };
    let hms = hms.split(['.', '+', 'Z']).next().unwrap_or_default();
    let parts: Vec<&str> = hms.split(':').collect();
    if parts.len() < 2 {
        return None;
    }
    let mut hour: i8 = parts[0].parse().ok()?;
    let minute: i8 = parts[1].parse().ok()?;
    let second: i8 = parts.get(2).map_or(Some(0), |s| s.parse().ok())?;
    if let Some(pm) = pm {
        if !(1..=12).contains(&hour) {
            return None;
        }
        hour = match (hour, pm) {
            (12, false) => 0,
            (12, true) => 12,
            (h, true) => h + 12,
            (h, false) => h,
        };
    }
    Time::new(hour, minute, second, 0).ok()
}

/// "hh:mm:ss" as minutes.
pub(crate) fn duration_minutes(text: &str) -> Option<f64> {
    let parts: Vec<f64> = text
        .split(':')
        .map(|p| p.trim().parse::<f64>().ok())
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [h, m, s] => Some(h * 60.0 + m + s / 60.0),
        [h, m] => Some(h * 60.0 + m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_take_either_decimal_separator() {
        assert_eq!(number("6,3"), Some(6.3));
        assert_eq!(number("6.3"), Some(6.3));
        assert_eq!(number("Low"), None);
    }

    #[test]
    fn dates_follow_the_files_order() {
        let utc = TimeZone::UTC;
        let cells = ["05-12-2019 16:25", "13-12-2019 01:00"];
        let order = date_order(cells.iter().copied());
        assert_eq!(order, DateOrder::DayMonthYear);
        assert_eq!(
            local_time(cells[0], order, &utc).unwrap().to_string(),
            "2019-12-05T16:25:00Z"
        );
        let us = ["02-18-2021 12:09 PM"];
        let order = date_order(us.iter().copied());
        assert_eq!(order, DateOrder::MonthDayYear);
        assert_eq!(
            local_time(us[0], order, &utc).unwrap().to_string(),
            "2021-02-18T12:09:00Z"
        );
        assert_eq!(
            local_time("3/3/15 00:26:24", DateOrder::MonthDayYear, &utc)
                .unwrap()
                .to_string(),
            "2015-03-03T00:26:24Z"
        );
        assert_eq!(
            local_time("2016-10-24T11:24:17", DateOrder::YearMonthDay, &utc)
                .unwrap()
                .to_string(),
            "2016-10-24T11:24:17Z"
        );
        assert_eq!(
            local_time("24.10.2016 11:24", DateOrder::DayMonthYear, &utc)
                .unwrap()
                .to_string(),
            "2016-10-24T11:24:00Z"
        );
    }

    #[test]
    fn local_times_are_placed_in_the_zone() {
        let zone = TimeZone::get("Europe/Amsterdam").unwrap();
        assert_eq!(
            local_time("2020-06-01 12:00", DateOrder::YearMonthDay, &zone)
                .unwrap()
                .to_string(),
            "2020-06-01T10:00:00Z"
        );
    }
}
