//! Day series: one Observation per (patient, device, channel, UTC day), minute by minute.
//!
//! A series' `valueSampledData` has a period of one minute and 1,440 points from midnight
//! UTC ("E" where the minute has no value). Readings keep their minute (seconds are dropped:
//! no CGM reports more often than once a minute). Ids are derived from what the series is,
//! so that an import finds, merges into and rewrites the same resource: a re-import, or an
//! export overlapping an earlier one, writes nothing new. Two devices never share a series.

use std::collections::BTreeMap;

use jiff::Timestamp;
use medmesh_device_import::{Channel, DeviceKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Minutes in a day: the points of a series.
pub const MINUTES: usize = 1440;
/// The code system of the channels (each series' second coding, and its search code).
pub const CHANNEL_SYSTEM: &str = "https://medmesh.dev/fhir/CodeSystem/device-channel";

/// The `code` search value that finds a channel's series (`system|code`).
pub fn channel_token(channel: Channel) -> String {
    format!("{CHANNEL_SYSTEM}|{}", channel.name())
}
/// The identifier system of a series' contained Device (the value is [`device_id`]).
pub const DEVICE_SYSTEM: &str = "https://medmesh.dev/fhir/device";
/// The identifier system of series (the value is the series' id).
pub const SERIES_SYSTEM: &str = "https://medmesh.dev/fhir/device-series";
const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";

/// What a series is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    /// The patient's id.
    pub patient: String,
    /// The Device resource's id.
    pub device: String,
    /// The channel.
    pub channel: Channel,
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
}

impl SeriesKey {
    /// The series' resource id: `ds-` and 40 hex digits of a SHA-256 of what it is.
    pub fn id(&self) -> String {
        hashed_id(
            "ds",
            &format!(
                "series|{}|{}|{}|{}",
                self.patient,
                self.device,
                self.channel.name(),
                self.day
            ),
        )
    }
}

/// A patient's device's identifier (`dv-` and 40 hex digits).
pub fn device_id(patient: &str, device: &DeviceKey) -> String {
    hashed_id(
        "dv",
        &format!(
            "device|{patient}|{}|{}",
            device.model,
            device.serial.as_deref().unwrap_or("")
        ),
    )
}

fn hashed_id(prefix: &str, what: &str) -> String {
    let digest = Sha256::digest(what.as_bytes());
    format!("{prefix}-{}", &hex::encode(digest)[..40])
}

/// The day (since 1970-01-01 UTC) and the minute within it of an instant.
pub fn day_and_minute(at: Timestamp) -> (i64, usize) {
    let secs = at.as_second();
    let day = secs.div_euclid(86_400);
    let minute = usize::try_from(secs.rem_euclid(86_400) / 60).unwrap_or(0);
    (day, minute)
}

/// The instant of `minute` in `day`.
pub fn instant(day: i64, minute: usize) -> Option<Timestamp> {
    Timestamp::from_second(day * 86_400 + minute as i64 * 60).ok()
}

/// The LOINC code of a channel, where LOINC has one.
pub fn loinc(channel: Channel) -> Option<(&'static str, &'static str)> {
    match channel {
        Channel::SensorGlucose | Channel::ScanGlucose => {
            Some(("99504-3", "Glucose [Mass/volume] in Interstitial fluid"))
        }
        Channel::MeterGlucose => Some(("2339-0", "Glucose [Mass/volume] in Blood")),
        Channel::HeartRate => Some(("8867-4", "Heart rate")),
        Channel::Steps => Some(("55423-8", "Number of steps in unspecified time Pedometer")),
        Channel::Carbs => Some(("9059-7", "Carbohydrate intake Estimated")),
        Channel::Sleep => Some(("93832-4", "Sleep duration")),
        _ => None,
    }
}

/// The words for a channel.
pub fn display(channel: Channel) -> &'static str {
    match channel {
        Channel::SensorGlucose => "Sensor glucose (CGM)",
        Channel::ScanGlucose => "Scanned sensor glucose",
        Channel::MeterGlucose => "Meter glucose",
        Channel::Ketones => "Blood ketones",
        Channel::BolusInsulin => "Bolus insulin delivered",
        Channel::BasalRate => "Basal insulin rate",
        Channel::LongActingInsulin => "Long-acting insulin injected",
        Channel::Carbs => "Carbohydrates",
        Channel::HeartRate => "Heart rate",
        Channel::Steps => "Steps",
        Channel::Workout => "Workout",
        Channel::Sleep => "Sleep",
    }
}

fn category(channel: Channel) -> &'static str {
    match channel {
        Channel::HeartRate => "vital-signs",
        Channel::Steps | Channel::Workout | Channel::Sleep | Channel::Carbs => "activity",
        Channel::BolusInsulin | Channel::BasalRate | Channel::LongActingInsulin => "therapy",
        _ => "laboratory",
    }
}

/// A day's values by minute.
pub type Slots = BTreeMap<usize, f64>;

/// The Observation for a series holding `slots`, with its Device contained (a patient may
/// write their own Observations, and the device belongs to the series: R4's Patient
/// compartment holds no Device).
pub fn observation(key: &SeriesKey, device: &DeviceKey, slots: &Slots) -> Value {
    let mut coding = Vec::new();
    if let Some((code, text)) = loinc(key.channel) {
        coding.push(json!({"system": LOINC, "code": code, "display": text}));
    }
    coding.push(json!({"system": CHANNEL_SYSTEM, "code": key.channel.name(), "display": display(key.channel)}));
    let mut data = Vec::with_capacity(MINUTES);
    for minute in 0..MINUTES {
        data.push(
            slots
                .get(&minute)
                .map_or_else(|| "E".to_owned(), |v| decimal(*v)),
        );
    }
    let start = instant(key.day, 0)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let end = instant(key.day, MINUTES - 1)
        .map(|t| (t + jiff::SignedDuration::from_secs(59)).to_string())
        .unwrap_or_default();
    let unit = key.channel.ucum();
    let id = key.id();
    json!({
        "resourceType": "Observation",
        "id": id,
        "identifier": [{"system": SERIES_SYSTEM, "value": id}],
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": category(key.channel),
        }]}],
        "code": {"coding": coding, "text": display(key.channel)},
        "contained": [device_resource(&key.patient, device)],
        "subject": {"reference": format!("Patient/{}", key.patient)},
        "device": {"reference": "#device"},
        "effectivePeriod": {"start": start, "end": end},
        "valueSampledData": {
            "origin": {"value": 0, "unit": unit, "system": UCUM, "code": unit},
            "period": 60000,
            "dimensions": 1,
            "data": data.join(" "),
        },
    })
}

/// A value at the series' precision: three decimals.
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A value with at most three decimals and no trailing zeros.
fn decimal(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// The slots of a series Observation (empty when it holds none).
pub fn slots_of(observation: &Value) -> Slots {
    let data = observation
        .pointer("/valueSampledData/data")
        .and_then(Value::as_str)
        .unwrap_or("");
    data.split_whitespace()
        .enumerate()
        .filter_map(|(minute, token)| {
            token
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(|v| (minute, v))
        })
        .collect()
}

/// The series' day (since 1970-01-01 UTC), from its period's start.
pub fn day_of(observation: &Value) -> Option<i64> {
    let start = observation.pointer("/effectivePeriod/start")?.as_str()?;
    Some(
        start
            .parse::<Timestamp>()
            .ok()?
            .as_second()
            .div_euclid(86_400),
    )
}

/// The series' channel, from its code.
pub fn channel_of(observation: &Value) -> Option<Channel> {
    observation
        .pointer("/code/coding")?
        .as_array()?
        .iter()
        .find_map(|c| {
            (c.get("system")?.as_str()? == CHANNEL_SYSTEM)
                .then(|| Channel::from_name(c.get("code")?.as_str()?))
                .flatten()
        })
}

/// The Device a series contains (id `device`), identified across series by
/// [`device_id`].
pub fn device_resource(patient: &str, device: &DeviceKey) -> Value {
    let mut body = json!({
        "resourceType": "Device",
        "id": "device",
        "identifier": [{"system": DEVICE_SYSTEM, "value": device_id(patient, device)}],
        "status": "active",
        "deviceName": [{"name": device.model, "type": "model-name"}],
        "patient": {"reference": format!("Patient/{patient}")},
    });
    if let Some(serial) = &device.serial {
        body["serialNumber"] = json!(serial);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_round_trips_through_its_observation() {
        let key = SeriesKey {
            patient: "p1".into(),
            device: "dv-x".into(),
            channel: Channel::SensorGlucose,
            day: 18_000,
        };
        let slots: Slots = [(0, 100.0), (5, 113.498), (1439, 40.0)]
            .into_iter()
            .collect();
        let device = DeviceKey {
            model: "Dexcom G6".into(),
            serial: Some("X1".into()),
        };
        let obs = observation(&key, &device, &slots);
        assert_eq!(obs["contained"][0]["serialNumber"], "X1");
        assert_eq!(obs["device"]["reference"], "#device");
        assert_eq!(slots_of(&obs), slots);
        assert_eq!(day_of(&obs), Some(18_000));
        assert_eq!(channel_of(&obs), Some(Channel::SensorGlucose));
        assert_eq!(obs["effectivePeriod"]["start"], "2019-04-14T00:00:00Z");
        assert_eq!(obs["effectivePeriod"]["end"], "2019-04-14T23:59:59Z");
        assert_eq!(obs["code"]["coding"][0]["code"], "99504-3");
        assert_eq!(obs["id"], key.id());
        assert!(key.id().len() <= 64);
    }

    #[test]
    fn minutes_are_from_midnight_utc() {
        let at: Timestamp = "2019-04-14T01:02:59Z".parse().unwrap();
        assert_eq!(day_and_minute(at), (18_000, 62));
        assert_eq!(
            instant(18_000, 62).unwrap().to_string(),
            "2019-04-14T01:02:00Z"
        );
    }
}
