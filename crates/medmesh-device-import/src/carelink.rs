//! Medtronic CareLink CSV (Paradigm, 5xx and 6xx/7xx pumps, Guardian sensors).
//!
//! Preamble rows (the patient's name and id, which are never read, the data range) sit above
//! a header; newer exports repeat the header once per device section, each section opened by
//! a `-------` row naming the device. US exports use `,`, month-first dates and decimal
//! points; European ones `;`, day-first dates and decimal commas. Rows come newest first, so
//! they are sorted before the basal rate is followed through its changes:
//! scheduled (the "Basal Rate" column or `BasalProfileStart` raw events), temporary
//! (absolute or percent, for a duration, then back to the scheduled rate) and suspended
//! (zero until resumed). Square and dual boluses spread their extended part by minute over
//! the delivered share of the programmed duration.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::table::{self, Columns, Row, cell, number};
use crate::{
    Channel, Counting, DeviceKey, DeviceRecord, GlucoseUnit, ImportError, RecordSink, units,
};

struct Section {
    cols: Columns,
    model: Option<String>,
    serial: Option<String>,
}

struct Event<'a> {
    at: Timestamp,
    row: &'a Row,
    section: usize,
}

/// Reads a CareLink export.
pub(crate) fn read<S: RecordSink + ?Sized>(
    text: &str,
    zone: &TimeZone,
    out: &mut Counting<'_, S>,
) -> Result<(), ImportError> {
    let rows = table::rows(text);
    let mut sections: Vec<Section> = Vec::new();
    let mut pending_device: (Option<String>, Option<String>) = (None, None);
    let mut body: Vec<(usize, &Row)> = Vec::new();
    for row in &rows {
        let first = row.cells.first().map(String::as_str).unwrap_or_default();
        if first.starts_with("----") {
            pending_device = (
                row.cells.get(1).cloned(),
                row.cells.get(3).cloned().filter(|s| !s.is_empty()),
            );
            continue;
        }
        let is_header = row.cells.iter().any(|c| c.eq_ignore_ascii_case("index"))
            && row.cells.iter().any(|c| c.eq_ignore_ascii_case("date"))
            && row.cells.iter().any(|c| c.eq_ignore_ascii_case("time"));
        if is_header {
            sections.push(Section {
                cols: Columns::new(&row.cells),
                model: pending_device.0.take(),
                serial: pending_device.1.take(),
            });
            continue;
        }
        if let Some(current) = sections.len().checked_sub(1) {
            body.push((current, row));
        }
    }
    if sections.is_empty() {
        return Err(ImportError::Malformed {
            format: "CareLink",
            reason: "no header row with Index, Date and Time".to_owned(),
        });
    }
    let unit = sections
        .iter()
        .find_map(|s| {
            s.cols
                .find("sensor glucose")
                .or_else(|| s.cols.find("bg reading"))
                .and_then(|i| units::parse(s.cols.name(i)))
        })
        .unwrap_or(GlucoseUnit::MgDl);
    out.report.unit = Some(unit);

    let order = table::date_order(
        body.iter()
            .filter_map(|(s, r)| cell(r, sections[*s].cols.find("date"))),
    );
    let mut events: Vec<Event<'_>> = Vec::new();
    for (section, row) in body {
        if row.cells.iter().all(String::is_empty) {
            continue;
        }
        let cols = &sections[section].cols;
        let stamp = match (cell(row, cols.find("date")), cell(row, cols.find("time"))) {
            (Some(d), Some(t)) => Some(format!("{d} {t}")),
            _ => cell(row, cols.find("timestamp")).map(str::to_owned),
        };
        match stamp.and_then(|s| table::local_time(&s, order, zone)) {
            Some(at) => events.push(Event { at, row, section }),
            None => out
                .report
                .reject(row.line, "the date and time are missing or not a date"),
        }
    }
    events.sort_by_key(|e| {
        (
            e.at,
            e.row
                .cells
                .first()
                .and_then(|i| i.parse::<i64>().ok())
                .unwrap_or(0),
        )
    });

    let mut basal = Basal::default();
    for event in &events {
        let s = &sections[event.section];
        let cols = &s.cols;
        let row = event.row;
        let device = DeviceKey {
            model: s
                .model
                .clone()
                .or_else(|| cell(row, cols.find("raw-device type")).map(str::to_owned))
                .unwrap_or_else(|| "Medtronic".to_owned()),
            serial: s.serial.clone(),
        };
        let at = event.at;
        let put = |channel: Channel, value: f64| DeviceRecord {
            device: device.clone(),
            channel,
            at,
            value,
        };
        let glucose = |col: Option<usize>| {
            cell(row, col)
                .and_then(number)
                .map(|v| units::to_mg_dl(v, unit))
        };
        if let Some(v) = glucose(cols.find("sensor glucose")) {
            out.emit(put(Channel::SensorGlucose, v))?;
        }
        if let Some(v) =
            glucose(cols.find("bg reading")).or_else(|| glucose(cols.find("sensor calibration bg")))
        {
            out.emit(put(Channel::MeterGlucose, v))?;
        }
        if let Some(g) = cell(row, cols.find("bwz carb input"))
            .and_then(number)
            .filter(|g| *g > 0.0)
        {
            out.emit(put(Channel::Carbs, g))?;
        }
        bolus(row, cols, &device, at, out)?;
        let raw_type = cell(row, cols.find("raw-type")).unwrap_or_default();
        let raw = cell(row, cols.find("raw-values")).unwrap_or_default();
        // Basal: the scheduled rate, then temporary rates and suspensions over it.
        let scheduled = cell(row, cols.find("basal rate"))
            .and_then(number)
            .or_else(|| {
                (raw_type == "BasalProfileStart")
                    .then(|| raw_value(raw, "RATE"))
                    .flatten()
            });
        if let Some(rate) = scheduled {
            basal.scheduled = Some(rate);
            if basal.temp_until.is_none() && !basal.suspended {
                out.emit(put(Channel::BasalRate, rate))?;
            }
        }
        if let Some(until) = basal.temp_until
            && until <= at
        {
            basal.temp_until = None;
            if let (Some(rate), false) = (basal.scheduled, basal.suspended) {
                out.emit(DeviceRecord {
                    device: device.clone(),
                    channel: Channel::BasalRate,
                    at: until,
                    value: rate,
                })?;
            }
        }
        if let Some(amount) = cell(row, cols.find("temp basal amount")).and_then(number) {
            let kind = cell(row, cols.find("temp basal type"))
                .unwrap_or_default()
                .to_ascii_lowercase();
            let minutes = cell(row, cols.find("temp basal duration"))
                .and_then(table::duration_minutes)
                .unwrap_or(0.0);
            let rate = if kind.starts_with("percent") {
                basal.scheduled.map(|s| s * amount / 100.0)
            } else {
                Some(amount)
            };
            if minutes <= 0.0 {
                basal.temp_until = None;
                if let (Some(rate), false) = (basal.scheduled, basal.suspended) {
                    out.emit(put(Channel::BasalRate, rate))?;
                }
            } else if let Some(rate) = rate {
                basal.temp_until = at
                    .checked_add(SignedDuration::from_secs_f64(minutes * 60.0))
                    .ok();
                if !basal.suspended {
                    out.emit(put(Channel::BasalRate, rate))?;
                }
            } else {
                out.report.reject(
                    row.line,
                    "a percent temporary basal before any scheduled rate",
                );
            }
        }
        if let Some(state) = cell(row, cols.find("suspend")) {
            let state = state.to_ascii_lowercase();
            if state.contains("resume") || state.contains("normal") {
                basal.suspended = false;
                if let Some(rate) = basal.scheduled {
                    out.emit(put(Channel::BasalRate, rate))?;
                }
            } else {
                basal.suspended = true;
                out.emit(put(Channel::BasalRate, 0.0))?;
            }
        }
        for (column, what) in [
            ("prime type", "primes"),
            ("rewind", "rewinds"),
            ("alarm", "alarms"),
            ("alert", "alerts"),
        ] {
            if cell(row, cols.find(column)).is_some() {
                out.report.skip(what);
            }
        }
    }
    Ok(())
}

#[derive(Default)]
struct Basal {
    scheduled: Option<f64>,
    temp_until: Option<Timestamp>,
    suspended: bool,
}

/// The bolus on a row: its immediate part at once, its extended part spread by minute.
fn bolus<S: RecordSink + ?Sized>(
    row: &Row,
    cols: &Columns,
    device: &DeviceKey,
    at: Timestamp,
    out: &mut Counting<'_, S>,
) -> Result<(), ImportError> {
    let Some(delivered) = cell(row, cols.find("bolus volume delivered")).and_then(number) else {
        return Ok(());
    };
    if delivered <= 0.0 {
        return Ok(());
    }
    let kind = cell(row, cols.find("bolus type"))
        .unwrap_or_default()
        .to_ascii_lowercase();
    let selected = cell(row, cols.find("bolus volume selected"))
        .and_then(number)
        .unwrap_or(delivered);
    let programmed = cell(row, cols.find("programmed bolus duration"))
        .or_else(|| cell(row, cols.find("bolus duration")))
        .and_then(table::duration_minutes)
        .unwrap_or(0.0);
    let extended = kind.contains("square") && programmed >= 1.0;
    if !extended {
        return out.emit(DeviceRecord {
            device: device.clone(),
            channel: Channel::BolusInsulin,
            at,
            value: delivered,
        });
    }
    // Delivered at a steady rate; an interrupted bolus stopped early.
    let share = if selected > 0.0 {
        (delivered / selected).min(1.0)
    } else {
        1.0
    };
    let minutes = (programmed * share).round().max(1.0) as i64;
    // Thousandths of a unit per minute, the remainder in the last minute: the parts add up
    // to what was delivered exactly.
    let total = (delivered * 1000.0).round() as i64;
    let per_minute = total / minutes;
    for m in 0..minutes {
        let Ok(when) = at.checked_add(SignedDuration::from_secs(m * 60)) else {
            break;
        };
        let part = if m == minutes - 1 {
            total - per_minute * (minutes - 1)
        } else {
            per_minute
        };
        out.emit(DeviceRecord {
            device: device.clone(),
            channel: Channel::BolusInsulin,
            at: when,
            value: part as f64 / 1000.0,
        })?;
    }
    Ok(())
}

/// `KEY=value` out of CareLink's raw values ("PATTERN_NAME=standard, RATE=0.8, ...").
fn raw_value(raw: &str, key: &str) -> Option<f64> {
    raw.split(',').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == key).then(|| number(v)).flatten()
    })
}
