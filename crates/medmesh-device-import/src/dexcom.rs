//! Dexcom Clarity CSV, from G6 and G7 receivers and apps.
//!
//! One header row, then metadata rows (patient name and birth date, which are skipped and
//! never read, devices and alert settings) without a timestamp, then events: EGV (the
//! sensor's estimated glucose), Calibration, Insulin (Fast-Acting, Long-Acting), Carbs,
//! Exercise, Health and Notes. An EGV beyond the sensor's range is written "Low" or "High"
//! and kept at the limit (40 and 400 mg/dL), counted in the report as clipped.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;

use crate::table::{self, Columns, cell, number};
use crate::{
    Channel, Counting, DeviceKey, DeviceRecord, GlucoseUnit, ImportError, RecordSink, units,
};

/// The sensor's reporting limits, mg/dL.
const LOW_LIMIT: f64 = 40.0;
const HIGH_LIMIT: f64 = 400.0;

/// Reads a Clarity export.
pub(crate) fn read<S: RecordSink + ?Sized>(
    text: &str,
    zone: &TimeZone,
    out: &mut Counting<'_, S>,
) -> Result<(), ImportError> {
    let rows = table::rows(text);
    let header_at = rows
        .iter()
        .position(|r| r.cells.iter().any(|c| c.eq_ignore_ascii_case("event type")))
        .ok_or_else(|| malformed("no header row with an Event Type column"))?;
    let cols = Columns::new(&rows[header_at].cells);
    let time_col = cols
        .find("timestamp")
        .ok_or_else(|| malformed("no Timestamp column"))?;
    let type_col = cols.find("event type");
    let subtype_col = cols.find("event subtype");
    let device_info = cols.find("device info");
    let source = cols.find("source device id");
    let glucose_col = cols.find("glucose value");
    let unit = glucose_col
        .and_then(|i| units::parse(cols.name(i)))
        .unwrap_or(GlucoseUnit::MgDl);
    out.report.unit = Some(unit);
    let insulin = cols.find("insulin value");
    let carbs = cols.find("carb value");
    let duration = cols.find("duration");
    let transmitter = cols.find("transmitter id");
    let body = &rows[header_at + 1..];

    // The Device rows name the model behind each source id.
    let mut models: BTreeMap<String, String> = BTreeMap::new();
    for row in body {
        if cell(row, type_col).is_some_and(|t| t.eq_ignore_ascii_case("device"))
            && let (Some(src), Some(model)) = (cell(row, source), cell(row, device_info))
        {
            models.insert(src.to_owned(), model.to_owned());
        }
    }
    let order = table::date_order(body.iter().filter_map(|r| cell(r, Some(time_col))));
    for row in body {
        let event = cell(row, type_col).unwrap_or_default().to_ascii_lowercase();
        if matches!(event.as_str(), "firstname" | "lastname" | "dateofbirth") {
            out.report.skip("patient details (not kept)");
            continue;
        }
        let Some(time_text) = cell(row, Some(time_col)) else {
            match event.as_str() {
                "device" | "alert" => out.report.skip("device and alert settings"),
                "" if row.cells.iter().all(String::is_empty) => {}
                _ => out.report.reject(row.line, "the event has no timestamp"),
            }
            continue;
        };
        let Some(at) = table::local_time(time_text, order, zone) else {
            out.report.reject(row.line, "the timestamp is not a date");
            continue;
        };
        let src = cell(row, source).unwrap_or("Dexcom");
        let device = DeviceKey {
            model: models.get(src).cloned().unwrap_or_else(|| src.to_owned()),
            serial: cell(row, transmitter).or(Some(src)).map(str::to_owned),
        };
        let subtype = cell(row, subtype_col)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let (channel, col) = match event.as_str() {
            "egv" => (Channel::SensorGlucose, glucose_col),
            "calibration" => (Channel::MeterGlucose, glucose_col),
            "insulin" if subtype.contains("long") => (Channel::LongActingInsulin, insulin),
            "insulin" => (Channel::BolusInsulin, insulin),
            "carbs" => (Channel::Carbs, carbs),
            "exercise" => (Channel::Workout, duration),
            "health" | "notes" | "note" => {
                out.report.skip("health events and notes");
                continue;
            }
            "alert" | "device" => {
                out.report.skip("device and alert settings");
                continue;
            }
            _ => {
                out.report.reject(row.line, "the event type is not known");
                continue;
            }
        };
        let Some(text) = cell(row, col) else {
            if channel == Channel::Workout {
                out.report.skip("exercise without a duration");
            } else {
                out.report.reject(
                    row.line,
                    format!("the {} event has no value", channel.name()),
                );
            }
            continue;
        };
        let glucose = matches!(channel, Channel::SensorGlucose | Channel::MeterGlucose);
        let value = if glucose && text.eq_ignore_ascii_case("low") {
            out.report.clipped += 1;
            Some(LOW_LIMIT)
        } else if glucose && text.eq_ignore_ascii_case("high") {
            out.report.clipped += 1;
            Some(HIGH_LIMIT)
        } else if channel == Channel::Workout {
            table::duration_minutes(text)
        } else {
            number(text).map(|v| if glucose { units::to_mg_dl(v, unit) } else { v })
        };
        let Some(value) = value else {
            out.report.reject(
                row.line,
                format!("the {} value is not a number", channel.name()),
            );
            continue;
        };
        out.emit(DeviceRecord {
            device,
            channel,
            at,
            value,
        })?;
    }
    Ok(())
}

fn malformed(reason: &str) -> ImportError {
    ImportError::Malformed {
        format: "Dexcom Clarity",
        reason: reason.to_owned(),
    }
}
