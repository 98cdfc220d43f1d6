//! Apple Health `export.xml`, alone or inside the `export.zip` the Health app shares, read as
//! a stream: real exports are gigabytes, so one element is held at a time.
//!
//! | HealthKit type | channel |
//! |---|---|
//! | `HKQuantityTypeIdentifierBloodGlucose` | sensor glucose when written by a CGM app, else meter glucose |
//! | `HKQuantityTypeIdentifierHeartRate` | heart rate |
//! | `HKQuantityTypeIdentifierStepCount` | steps |
//! | `HKQuantityTypeIdentifierInsulinDelivery` | bolus (reason 2), or basal rate over the interval (reason 1) |
//! | `HKQuantityTypeIdentifierDietaryCarbohydrates` | carbs |
//! | `HKCategoryTypeIdentifierSleepAnalysis` (asleep values) | sleep |
//! | `Workout` | workout |
//!
//! Blood glucose comes in mg/dL or in Apple's "mmol<180.1558800000541>/L", whose factor is
//! the molar mass it names. Every other type is counted as skipped.

use std::io::{BufRead, Read, Seek};

use jiff::Timestamp;
use quick_xml::events::{BytesStart, Event};

use crate::{
    Channel, Counting, DeviceKey, DeviceRecord, GlucoseUnit, ImportError, RecordSink, units,
};

/// The largest export.xml read out of a zip (a guard against a zip bomb).
pub const MAX_XML_BYTES: u64 = 64 * 1024 * 1024 * 1024;

/// Sources whose blood glucose is a sensor's (CGM apps writing to Health).
const CGM_SOURCES: [&str; 10] = [
    "dexcom",
    "libre",
    "guardian",
    "eversense",
    "cgm",
    "xdrip",
    "loop",
    "nightscout",
    "sugarmate",
    "glucose direct",
];

/// Reads the export.xml inside an export.zip.
pub(crate) fn read_zip<R: Read + Seek, S: RecordSink + ?Sized>(
    input: R,
    out: &mut Counting<'_, S>,
) -> Result<(), ImportError> {
    let mut archive =
        zip::ZipArchive::new(input).map_err(|_| malformed("not a readable zip archive"))?;
    let index = (0..archive.len())
        .find(|i| {
            archive
                .name_for_index(*i)
                .and_then(Result::ok)
                .is_some_and(|n| n == "export.xml" || n.ends_with("/export.xml"))
        })
        .ok_or_else(|| malformed("the zip holds no export.xml"))?;
    let entry = archive
        .by_index(index)
        .map_err(|_| malformed("the export.xml entry cannot be read"))?;
    read_xml(std::io::BufReader::new(entry.take(MAX_XML_BYTES)), out)
}

/// Reads an export.xml stream.
pub(crate) fn read_xml<R: BufRead, S: RecordSink + ?Sized>(
    input: R,
    out: &mut Counting<'_, S>,
) -> Result<(), ImportError> {
    let mut reader = quick_xml::Reader::from_reader(input);
    reader.config_mut().trim_text(true);
    let mut buf = Vec::new();
    let mut element: u64 = 0;
    let mut open: Option<Pending> = None;
    let mut saw_root = false;
    loop {
        buf.clear();
        let event = reader.read_event_into(&mut buf).map_err(|e| {
            malformed(&format!(
                "XML error near byte {}: {e}",
                reader.buffer_position()
            ))
        })?;
        match event {
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"HealthData" => {
                saw_root = true
            }
            Event::Start(e) => {
                element += 1;
                match e.name().as_ref() {
                    b"Record" | b"Workout" => open = Some(Pending::new(&e, element)),
                    b"MetadataEntry" => metadata(&e, open.as_mut()),
                    _ => {}
                }
            }
            Event::Empty(e) => {
                element += 1;
                match e.name().as_ref() {
                    b"Record" | b"Workout" => finish(Pending::new(&e, element), out)?,
                    b"MetadataEntry" => metadata(&e, open.as_mut()),
                    _ => {}
                }
            }
            Event::End(e) if matches!(e.name().as_ref(), b"Record" | b"Workout") => {
                if let Some(pending) = open.take() {
                    finish(pending, out)?;
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root {
        return Err(malformed("no HealthData element"));
    }
    Ok(())
}

/// A Record or Workout being read, with what its metadata adds.
struct Pending {
    element: u64,
    workout: bool,
    kind: String,
    source: String,
    device: Option<String>,
    unit: String,
    value: String,
    start: String,
    end: String,
    duration: Option<(String, String)>,
    insulin_reason: Option<String>,
}

impl Pending {
    fn new(e: &BytesStart<'_>, element: u64) -> Pending {
        let mut p = Pending {
            element,
            workout: e.name().as_ref() == b"Workout",
            kind: String::new(),
            source: String::new(),
            device: None,
            unit: String::new(),
            value: String::new(),
            start: String::new(),
            end: String::new(),
            duration: None,
            insulin_reason: None,
        };
        let (mut duration, mut duration_unit) = (None, None);
        for attr in e.attributes().flatten() {
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map(|v| v.into_owned())
                .unwrap_or_default();
            match attr.key.as_ref() {
                b"type" | b"workoutActivityType" => p.kind = value,
                b"sourceName" => p.source = value,
                b"device" => p.device = Some(value),
                b"unit" => p.unit = value,
                b"value" => p.value = value,
                b"startDate" => p.start = value,
                b"endDate" => p.end = value,
                b"duration" => duration = Some(value),
                b"durationUnit" => duration_unit = Some(value),
                _ => {}
            }
        }
        p.duration = duration.map(|d| (d, duration_unit.unwrap_or_else(|| "min".to_owned())));
        p
    }
}

fn metadata(e: &BytesStart<'_>, pending: Option<&mut Pending>) {
    let Some(pending) = pending else { return };
    let (mut key, mut value) = (String::new(), String::new());
    for attr in e.attributes().flatten() {
        let v = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map(|v| v.into_owned())
            .unwrap_or_default();
        match attr.key.as_ref() {
            b"key" => key = v,
            b"value" => value = v,
            _ => {}
        }
    }
    if key == "HKInsulinDeliveryReason" {
        pending.insulin_reason = Some(value);
    }
}

fn finish<S: RecordSink + ?Sized>(
    p: Pending,
    out: &mut Counting<'_, S>,
) -> Result<(), ImportError> {
    let Some(start) = apple_time(&p.start) else {
        out.report
            .reject(p.element, "the record's start date is not a date");
        return Ok(());
    };
    let end = apple_time(&p.end);
    let minutes = end.map(|e| (e.as_second() - start.as_second()) as f64 / 60.0);
    let device = DeviceKey {
        model: device_name(&p),
        serial: None,
    };
    let put = |channel: Channel, value: f64| DeviceRecord {
        device: device.clone(),
        channel,
        at: start,
        value,
    };
    if p.workout {
        let length = p
            .duration
            .as_ref()
            .and_then(|(d, u)| {
                d.parse::<f64>().ok().map(|d| {
                    if u == "s" {
                        d / 60.0
                    } else if u == "h" || u == "hr" {
                        d * 60.0
                    } else {
                        d
                    }
                })
            })
            .or(minutes);
        return match length {
            Some(m) if m >= 0.0 => out.emit(put(Channel::Workout, m)),
            _ => {
                out.report.reject(p.element, "the workout has no duration");
                Ok(())
            }
        };
    }
    let value = p.value.parse::<f64>().ok();
    let kind = p.kind.as_str();
    let record = match kind {
        "HKQuantityTypeIdentifierBloodGlucose" => match (value, units::apple_factor(&p.unit)) {
            (Some(v), Some(factor)) => {
                out.report.unit = Some(if factor == 1.0 {
                    GlucoseUnit::MgDl
                } else {
                    GlucoseUnit::MmolL
                });
                let source = p.source.to_ascii_lowercase();
                let channel = if CGM_SOURCES.iter().any(|s| source.contains(s)) {
                    Channel::SensorGlucose
                } else {
                    Channel::MeterGlucose
                };
                Some(put(channel, v * factor))
            }
            _ => None,
        },
        "HKQuantityTypeIdentifierHeartRate" => value.map(|v| put(Channel::HeartRate, v)),
        "HKQuantityTypeIdentifierStepCount" => value.map(|v| put(Channel::Steps, v)),
        "HKQuantityTypeIdentifierDietaryCarbohydrates" => value.map(|v| put(Channel::Carbs, v)),
        "HKQuantityTypeIdentifierInsulinDelivery" => match (value, p.insulin_reason.as_deref()) {
            (Some(v), Some("1")) => match minutes.filter(|m| *m > 0.0) {
                Some(m) => Some(put(Channel::BasalRate, v / (m / 60.0))),
                None => Some(put(Channel::BolusInsulin, v)),
            },
            (Some(v), _) => Some(put(Channel::BolusInsulin, v)),
            _ => None,
        },
        "HKCategoryTypeIdentifierSleepAnalysis" => {
            if p.value.contains("Asleep") {
                minutes.map(|m| put(Channel::Sleep, m))
            } else {
                out.report.skip("sleep analysis: in bed or awake");
                return Ok(());
            }
        }
        other => {
            let short = other
                .trim_start_matches("HKQuantityTypeIdentifier")
                .trim_start_matches("HKCategoryTypeIdentifier");
            out.report.skip(&format!("Apple Health {short}"));
            return Ok(());
        }
    };
    match record {
        Some(r) => out.emit(r),
        None => {
            out.report
                .reject(p.element, "the record's value or unit is not usable");
            Ok(())
        }
    }
}

/// The device named in Apple's device attribute ("<<HKDevice: 0x…>, name:Apple Watch, …>"),
/// or the source app's name.
fn device_name(p: &Pending) -> String {
    if let Some(device) = &p.device {
        let name = device
            .split(", ")
            .find_map(|part| part.strip_prefix("name:"));
        let model = device
            .split(", ")
            .find_map(|part| part.strip_prefix("model:"));
        if let Some(name) = name.or(model) {
            return name.trim_end_matches('>').to_owned();
        }
    }
    if p.source.is_empty() {
        "Apple Health".to_owned()
    } else {
        p.source.clone()
    }
}

/// Apple's "2016-11-14 07:25:41 -0700".
fn apple_time(text: &str) -> Option<Timestamp> {
    let mut parts = text.split_whitespace();
    let (date, time, offset) = (parts.next()?, parts.next()?, parts.next()?);
    if offset.len() != 5 {
        return format!("{date}T{time}{offset}").parse().ok();
    }
    format!("{date}T{time}{}:{}", &offset[..3], &offset[3..])
        .parse()
        .ok()
}

fn malformed(reason: &str) -> ImportError {
    ImportError::Malformed {
        format: "Apple Health",
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apple_times_carry_their_offset() {
        assert_eq!(
            apple_time("2016-11-14 07:25:41 -0700").unwrap().to_string(),
            "2016-11-14T14:25:41Z"
        );
    }
}
