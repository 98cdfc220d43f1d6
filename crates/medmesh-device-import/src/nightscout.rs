//! Nightscout: `/api/v1/entries` (JSON or TSV), `/api/v1/treatments` and `/api/v1/profile`
//! JSON, as files or as pulled from a site.
//!
//! Entries carry `sgv` (sensor glucose) or `mbg` (a meter reading) in mg/dL with `date` in
//! epoch milliseconds; calibration entries (`cal`) are counted, not kept. Treatments carry
//! `insulin` (units), `carbs` (grams) and, for temporary basals, `absolute` or `rate` with a
//! `duration` in minutes, at `created_at`. A profile is settings, not data: it is counted.

use jiff::Timestamp;
use serde_json::Value;

use crate::table::number;
use crate::{Channel, Counting, DeviceKey, DeviceRecord, GlucoseUnit, ImportError, RecordSink};

/// Reads Nightscout JSON or TSV.
pub(crate) fn read<S: RecordSink + ?Sized>(
    text: &str,
    out: &mut Counting<'_, S>,
) -> Result<(), ImportError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        let value: Value = serde_json::from_str(trimmed).map_err(|e| ImportError::Malformed {
            format: "Nightscout",
            reason: format!("not JSON (line {})", e.line()),
        })?;
        let items: Vec<Value> = match value {
            Value::Array(items) => items,
            Value::Object(mut map) => {
                // A wrapper ({"entries": [...], "treatments": [...]}) or one document.
                let mut items = Vec::new();
                for key in ["entries", "treatments", "profile"] {
                    if let Some(Value::Array(list)) = map.remove(key) {
                        items.extend(list);
                    }
                }
                if items.is_empty() {
                    vec![Value::Object(map)]
                } else {
                    items
                }
            }
            _ => Vec::new(),
        };
        for (i, item) in items.iter().enumerate() {
            json_item(item, i as u64 + 1, out)?;
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            let line_no = i as u64 + 1;
            let cols: Vec<&str> = line.split('\t').map(str::trim).collect();
            if cols.iter().all(|c| c.is_empty()) {
                continue;
            }
            let at = cols
                .get(1)
                .and_then(|ms| ms.parse::<i64>().ok())
                .and_then(|ms| Timestamp::from_millisecond(ms).ok());
            let value = cols.get(2).and_then(|v| number(v));
            match (at, value) {
                (Some(_), Some(value)) if value < 39.0 => out
                    .report
                    .reject(line_no, "a sensor error code, not a glucose value"),
                (Some(at), Some(value)) => {
                    out.report.unit = Some(GlucoseUnit::MgDl);
                    let model = cols
                        .get(4)
                        .filter(|d| !d.is_empty())
                        .copied()
                        .unwrap_or("Nightscout");
                    out.emit(DeviceRecord {
                        device: DeviceKey {
                            model: model.to_owned(),
                            serial: None,
                        },
                        channel: Channel::SensorGlucose,
                        at,
                        value,
                    })?;
                }
                _ => out.report.reject(
                    line_no,
                    "expected date string, epoch milliseconds, glucose, direction, device",
                ),
            }
        }
    }
    Ok(())
}

fn json_item<S: RecordSink + ?Sized>(
    item: &Value,
    n: u64,
    out: &mut Counting<'_, S>,
) -> Result<(), ImportError> {
    let device = DeviceKey {
        model: item
            .get("device")
            .and_then(Value::as_str)
            .or_else(|| item.get("enteredBy").and_then(Value::as_str))
            .unwrap_or("Nightscout")
            .to_owned(),
        serial: None,
    };
    let num = |key: &str| match item.get(key) {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => number(s),
        _ => None,
    };
    if item.get("store").is_some() || item.get("defaultProfile").is_some() {
        out.report.skip("profile settings");
        return Ok(());
    }
    let at = item
        .get("date")
        .and_then(Value::as_i64)
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .or_else(|| {
            item.get("mills")
                .and_then(Value::as_i64)
                .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        })
        .or_else(|| {
            ["dateString", "created_at", "timestamp"]
                .iter()
                .find_map(|k| item.get(*k)?.as_str().and_then(parse_instant))
        });
    let Some(at) = at else {
        out.report.reject(n, "the entry has no date");
        return Ok(());
    };
    let put = |channel, value| DeviceRecord {
        device: device.clone(),
        channel,
        at,
        value,
    };
    match item.get("type").and_then(Value::as_str) {
        Some("sgv") => match num("sgv") {
            Some(v) if v > 0.0 => {
                out.report.unit = Some(GlucoseUnit::MgDl);
                // Values below 40 are Dexcom's error codes (1: sensor not active, 5: ?, 9: absolute).
                if v < 39.0 {
                    out.report
                        .reject(n, "a sensor error code, not a glucose value");
                    Ok(())
                } else {
                    out.emit(put(Channel::SensorGlucose, v))
                }
            }
            _ => {
                out.report.reject(n, "the sgv entry has no glucose value");
                Ok(())
            }
        },
        Some("mbg") => match num("mbg") {
            Some(v) => {
                out.report.unit = Some(GlucoseUnit::MgDl);
                out.emit(put(Channel::MeterGlucose, v))
            }
            None => {
                out.report.reject(n, "the mbg entry has no glucose value");
                Ok(())
            }
        },
        Some("cal") => {
            out.report.skip("sensor calibration factors");
            Ok(())
        }
        _ if item.get("eventType").is_some() => {
            let mut any = false;
            if let Some(u) = num("insulin").filter(|u| *u > 0.0) {
                out.emit(put(Channel::BolusInsulin, u))?;
                any = true;
            }
            if let Some(g) = num("carbs").filter(|g| *g > 0.0) {
                out.emit(put(Channel::Carbs, g))?;
                any = true;
            }
            if let Some(rate) = num("absolute").or_else(|| num("rate")) {
                out.emit(put(Channel::BasalRate, rate))?;
                any = true;
            }
            if let Some(glucose) = num("glucose").filter(|_| item.get("glucoseType").is_some()) {
                let mg = if item.get("units").and_then(Value::as_str) == Some("mmol") {
                    glucose * crate::units::MG_DL_PER_MMOL_L
                } else {
                    glucose
                };
                out.emit(put(Channel::MeterGlucose, mg))?;
                any = true;
            }
            if !any {
                out.report
                    .skip("treatments without insulin, carbs or a rate (notes, site changes...)");
            }
            Ok(())
        }
        _ => {
            out.report.reject(n, "neither an entry nor a treatment");
            Ok(())
        }
    }
}

/// An ISO 8601 instant with an offset ("2018-06-02T00:25:00-0700", "...Z", "...+02:00").
pub(crate) fn parse_instant(text: &str) -> Option<Timestamp> {
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Some(ts);
    }
    // Offsets without a colon (-0700).
    let (head, tail) = text.split_at(text.len().checked_sub(5)?);
    if (tail.starts_with('+') || tail.starts_with('-'))
        && tail[1..].chars().all(|c| c.is_ascii_digit())
    {
        return format!("{head}{}:{}", &tail[..3], &tail[3..])
            .parse::<Timestamp>()
            .ok();
    }
    None
}
