//! FreeStyle LibreView and LibreLink CSV (Libre 1, 2 and 3; patient and clinic exports).
//!
//! One row per record, its kind in "Record Type": 0 historic (the sensor's stored
//! 15- or 5-minute values), 1 scan, 2 strip glucose, 3 ketones, 4 insulin, 5 food, 6 notes
//! and time changes. The header names the unit ("Historic Glucose mmol/L" or "mg/dL"). Clinic
//! "patient report" exports and newer app exports put one or more preamble rows above the
//! header; European exports use `;` and decimal commas, and dates are day-first or (US)
//! month-first with an AM/PM clock.

use jiff::tz::TimeZone;

use crate::table::{self, Columns, cell, number};
use crate::{
    Channel, Counting, DeviceKey, DeviceRecord, GlucoseUnit, ImportError, RecordSink, units,
};

/// Reads a LibreView export.
pub(crate) fn read<S: RecordSink + ?Sized>(
    text: &str,
    zone: &TimeZone,
    out: &mut Counting<'_, S>,
) -> Result<(), ImportError> {
    let rows = table::rows(text);
    let header_at = rows
        .iter()
        .position(|r| {
            r.cells
                .iter()
                .any(|c| c.eq_ignore_ascii_case("record type"))
        })
        .ok_or_else(|| malformed("no header row with a Record Type column"))?;
    let cols = Columns::new(&rows[header_at].cells);
    let unit = (0..rows[header_at].cells.len())
        .map(|i| cols.name(i))
        .filter(|h| h.contains("glucose"))
        .find_map(units::parse)
        .unwrap_or(GlucoseUnit::MgDl);
    out.report.unit = Some(unit);
    let device_col = cols.find("device");
    let serial_col = cols.find("serial number");
    let time_col = cols
        .find("device timestamp")
        .ok_or_else(|| malformed("no Device Timestamp column"))?;
    let type_col = cols.find("record type");
    let historic = cols.find("historic glucose");
    let scan = cols.find("scan glucose");
    let strip = cols.find("strip glucose");
    let ketone = cols.find("ketone");
    let rapid = cols.find("rapid-acting insulin (units)");
    let long = cols
        .find("long-acting insulin value (units)")
        .or_else(|| cols.find("long-acting insulin (units)"));
    let carbs = cols.find("carbohydrates (grams)");
    let servings = cols.find("carbohydrates (servings)");
    let body = &rows[header_at + 1..];
    let order = table::date_order(body.iter().filter_map(|r| cell(r, Some(time_col))));
    for row in body {
        if row.cells.iter().all(String::is_empty) {
            continue;
        }
        let Some(at) = cell(row, Some(time_col)).and_then(|t| table::local_time(t, order, zone))
        else {
            out.report
                .reject(row.line, "the device timestamp is missing or not a date");
            continue;
        };
        let device = DeviceKey {
            model: cell(row, device_col)
                .unwrap_or("FreeStyle Libre")
                .to_owned(),
            serial: cell(row, serial_col).map(str::to_owned),
        };
        let record_type = cell(row, type_col).and_then(|t| t.parse::<u8>().ok());
        let put = Put {
            device: &device,
            at,
            unit,
            line: row.line,
        };
        let found = match record_type {
            Some(0) => put.emit(out, row, Channel::SensorGlucose, historic, true)?,
            Some(1) => put.emit(out, row, Channel::ScanGlucose, scan, true)?,
            Some(2) => put.emit(out, row, Channel::MeterGlucose, strip, true)?,
            Some(3) => put.emit(out, row, Channel::Ketones, ketone, false)?,
            Some(4) => {
                put.emit(out, row, Channel::BolusInsulin, rapid, false)?
                    | put.emit(out, row, Channel::LongActingInsulin, long, false)?
            }
            Some(5) => {
                let grams = put.emit(out, row, Channel::Carbs, carbs, false)?;
                if !grams && cell(row, servings).is_some() {
                    out.report.skip("carbohydrate servings (no grams)");
                }
                grams || cell(row, servings).is_some()
            }
            Some(6) => {
                out.report.skip("notes and time changes");
                true
            }
            _ => {
                out.report
                    .reject(row.line, "the record type is not one of 0 to 6");
                true
            }
        };
        if !found && !matches!(record_type, Some(6)) {
            out.report
                .reject(row.line, "the row has no value for its record type");
        }
    }
    Ok(())
}

/// One row's device, time and unit, for the values it holds.
struct Put<'a> {
    device: &'a DeviceKey,
    at: jiff::Timestamp,
    unit: GlucoseUnit,
    line: u64,
}

impl Put<'_> {
    /// Emits the value in `col` as `channel`; false when the cell is empty.
    fn emit<S: RecordSink + ?Sized>(
        &self,
        out: &mut Counting<'_, S>,
        row: &table::Row,
        channel: Channel,
        col: Option<usize>,
        glucose: bool,
    ) -> Result<bool, ImportError> {
        let Some(text) = cell(row, col) else {
            return Ok(false);
        };
        let Some(value) = number(text) else {
            out.report.reject(
                self.line,
                format!("the {} value is not a number", channel.name()),
            );
            return Ok(true);
        };
        let value = if glucose {
            units::to_mg_dl(value, self.unit)
        } else {
            value
        };
        out.emit(DeviceRecord {
            device: self.device.clone(),
            channel,
            at: self.at,
            value,
        })?;
        Ok(true)
    }
}

fn malformed(reason: &str) -> ImportError {
    ImportError::Malformed {
        format: "LibreView",
        reason: reason.to_owned(),
    }
}
