//! Device data readers, with no I/O of their own: each takes a reader and the patient's time
//! zone and yields normalized [`DeviceRecord`]s to a sink, one at a time, so that a
//! gigabyte-sized Apple Health export is read in bounded memory.
//!
//! | format | source | what is read |
//! |---|---|---|
//! | [`Format::LibreView`] | FreeStyle LibreView / LibreLink CSV | historic and scan glucose, strip glucose, ketones, rapid- and long-acting insulin, carbs |
//! | [`Format::DexcomClarity`] | Dexcom Clarity CSV (G6, G7) | EGVs ("Low"/"High" at the sensor's limits), calibrations, insulin, carbs, exercise |
//! | [`Format::CareLink`] | Medtronic CareLink CSV | sensor glucose, BG readings, basal (scheduled, temp, suspend), boluses, carbs |
//! | [`Format::AppleHealth`] | Apple Health `export.xml` / `export.zip` | blood glucose, heart rate, steps, insulin delivery, carbs, workouts, sleep |
//! | [`Format::Nightscout`] | Nightscout entries/treatments JSON, entries TSV | sgv and mbg entries, insulin and carbs treatments |
//!
//! Patient-identifying rows (Dexcom's FirstName, LastName, DateOfBirth; CareLink's name and
//! patient id) are never read into records. Notes are counted, not kept: free text is the
//! one thing here that could carry anything.

pub mod apple;
pub mod carelink;
pub mod dexcom;
pub mod libre;
pub mod nightscout;
mod table;
pub mod units;

use std::collections::BTreeMap;
use std::io::Read;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

/// The formats the readers know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// FreeStyle LibreView / LibreLink CSV.
    LibreView,
    /// Dexcom Clarity CSV.
    DexcomClarity,
    /// Medtronic CareLink CSV.
    CareLink,
    /// Apple Health export.xml (or the zip it comes in).
    AppleHealth,
    /// Nightscout entries or treatments, JSON or TSV.
    Nightscout,
}

impl Format {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Format::LibreView => "libreview",
            Format::DexcomClarity => "dexcom-clarity",
            Format::CareLink => "carelink",
            Format::AppleHealth => "apple-health",
            Format::Nightscout => "nightscout",
        }
    }

    /// The format named `name` (as [`Format::name`] spells it).
    pub fn from_name(name: &str) -> Option<Format> {
        [
            Format::LibreView,
            Format::DexcomClarity,
            Format::CareLink,
            Format::AppleHealth,
            Format::Nightscout,
        ]
        .into_iter()
        .find(|f| f.name() == name)
    }
}

/// What a record measures; each is stored and analysed as its own series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    /// Sensor (CGM) glucose, mg/dL: the series the metrics are computed on.
    SensorGlucose,
    /// A CGM reading taken on demand (a Libre scan), mg/dL.
    ScanGlucose,
    /// Capillary glucose from a meter or strip (including calibrations), mg/dL.
    MeterGlucose,
    /// Blood ketones, mmol/L.
    Ketones,
    /// Rapid-acting insulin delivered (boluses; extended boluses spread by minute), units.
    BolusInsulin,
    /// The basal rate from this time on, U/h (0 while suspended).
    BasalRate,
    /// Long-acting insulin injected, units.
    LongActingInsulin,
    /// Carbohydrates, grams.
    Carbs,
    /// Heart rate, beats per minute.
    HeartRate,
    /// Steps counted in the interval that starts here.
    Steps,
    /// A workout starting here; the value is its length in minutes.
    Workout,
    /// Sleep starting here; the value is its length in minutes.
    Sleep,
}

impl Channel {
    /// Every channel, in order.
    pub const ALL: [Channel; 12] = [
        Channel::SensorGlucose,
        Channel::ScanGlucose,
        Channel::MeterGlucose,
        Channel::Ketones,
        Channel::BolusInsulin,
        Channel::BasalRate,
        Channel::LongActingInsulin,
        Channel::Carbs,
        Channel::HeartRate,
        Channel::Steps,
        Channel::Workout,
        Channel::Sleep,
    ];

    /// The channel's stable name (storage, API, reports).
    pub fn name(self) -> &'static str {
        match self {
            Channel::SensorGlucose => "sensor-glucose",
            Channel::ScanGlucose => "scan-glucose",
            Channel::MeterGlucose => "meter-glucose",
            Channel::Ketones => "ketones",
            Channel::BolusInsulin => "bolus-insulin",
            Channel::BasalRate => "basal-rate",
            Channel::LongActingInsulin => "long-acting-insulin",
            Channel::Carbs => "carbs",
            Channel::HeartRate => "heart-rate",
            Channel::Steps => "steps",
            Channel::Workout => "workout",
            Channel::Sleep => "sleep",
        }
    }

    /// The channel named `name`.
    pub fn from_name(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The UCUM unit of the channel's values.
    pub fn ucum(self) -> &'static str {
        match self {
            Channel::SensorGlucose | Channel::ScanGlucose | Channel::MeterGlucose => "mg/dL",
            Channel::Ketones => "mmol/L",
            Channel::BolusInsulin | Channel::LongActingInsulin => "[iU]",
            Channel::BasalRate => "[iU]/h",
            Channel::Carbs => "g",
            Channel::HeartRate => "/min",
            Channel::Steps => "{steps}",
            Channel::Workout | Channel::Sleep => "min",
        }
    }

    /// Whether several records in one minute add up (insulin, carbs, steps) rather than the
    /// later replacing the earlier (readings, rates).
    pub fn sums(self) -> bool {
        matches!(
            self,
            Channel::BolusInsulin | Channel::LongActingInsulin | Channel::Carbs | Channel::Steps
        )
    }
}

/// The device a record came from: its model and, where the export gives one, its serial.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct DeviceKey {
    /// The model or app ("FreeStyle LibreLink", "Dexcom G6 Mobile App", "Paradigm Revel - 723").
    pub model: String,
    /// The serial number or source id, when the export has one.
    pub serial: Option<String>,
}

/// One normalized record.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRecord {
    /// The device it came from.
    pub device: DeviceKey,
    /// What it measures.
    pub channel: Channel,
    /// When.
    pub at: Timestamp,
    /// The value in the channel's unit.
    pub value: f64,
}

/// The glucose unit a file was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum GlucoseUnit {
    /// mg/dL.
    #[serde(rename = "mg/dL")]
    MgDl,
    /// mmol/L (converted at 18.0156 mg/dL per mmol/L, glucose's molar mass / 10).
    #[serde(rename = "mmol/L")]
    MmolL,
}

/// A row that could not be read, with the reason (never the row's content).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rejected {
    /// The 1-based line (CSV, TSV), element ordinal (XML) or entry index (JSON).
    pub line: u64,
    /// Why it was rejected.
    pub reason: String,
}

/// The most rejected rows a report lists one by one; the rest are counted.
pub const MAX_LISTED_REJECTIONS: usize = 100;

/// What a reader saw, for the import report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReadReport {
    /// The glucose unit detected (None when the file has no glucose).
    pub unit: Option<GlucoseUnit>,
    /// Records yielded per channel.
    pub records: BTreeMap<String, u64>,
    /// The earliest and latest record.
    #[serde(serialize_with = "instant")]
    pub first: Option<Timestamp>,
    /// See `first`.
    #[serde(serialize_with = "instant")]
    pub last: Option<Timestamp>,
    /// Rows read but deliberately not kept (notes, patient details, alerts...), by kind.
    pub skipped: BTreeMap<String, u64>,
    /// Rejected rows, up to [`MAX_LISTED_REJECTIONS`].
    pub rejected: Vec<Rejected>,
    /// Every rejected row, listed or not.
    pub rejected_total: u64,
    /// Glucose values given as "Low" or "High" and kept at the sensor's limit.
    pub clipped: u64,
}

impl ReadReport {
    /// Adds another reader's report to this one (the windows of a pull, read one by one):
    /// counts add up, the time range widens, the listed rejections stay within
    /// [`MAX_LISTED_REJECTIONS`].
    pub fn absorb(&mut self, other: ReadReport) {
        self.unit = self.unit.or(other.unit);
        for (k, n) in other.records {
            *self.records.entry(k).or_default() += n;
        }
        for (k, n) in other.skipped {
            *self.skipped.entry(k).or_default() += n;
        }
        self.first = self.first.into_iter().chain(other.first).min();
        self.last = self.last.into_iter().chain(other.last).max();
        let room = MAX_LISTED_REJECTIONS.saturating_sub(self.rejected.len());
        self.rejected.extend(other.rejected.into_iter().take(room));
        self.rejected_total += other.rejected_total;
        self.clipped += other.clipped;
    }

    fn reject(&mut self, line: u64, reason: impl Into<String>) {
        self.rejected_total += 1;
        if self.rejected.len() < MAX_LISTED_REJECTIONS {
            self.rejected.push(Rejected {
                line,
                reason: reason.into(),
            });
        }
    }

    fn skip(&mut self, what: &str) {
        *self.skipped.entry(what.to_owned()).or_default() += 1;
    }
}

fn instant<S: serde::Serializer>(at: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => s.serialize_str(&at.to_string()),
        None => s.serialize_none(),
    }
}

/// Why a file could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The format could not be recognised.
    #[error(
        "the file's format was not recognised; name its format (libreview, dexcom-clarity, carelink, apple-health, nightscout)"
    )]
    UnknownFormat,
    /// The file is not what its format says.
    #[error("not a valid {format} file: {reason}")]
    Malformed {
        /// The format expected.
        format: &'static str,
        /// What is wrong (no file content).
        reason: String,
    },
    /// The file is larger than a reader accepts.
    #[error("the file is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// Reading failed.
    #[error("the file could not be read: {0}")]
    Io(#[from] std::io::Error),
    /// The sink stopped the import.
    #[error("the import was stopped")]
    Stopped,
}

/// What a reader passes records to; returning false stops the read.
pub trait RecordSink {
    /// Takes one record.
    fn record(&mut self, record: DeviceRecord) -> bool;
}

impl<F: FnMut(DeviceRecord) -> bool> RecordSink for F {
    fn record(&mut self, record: DeviceRecord) -> bool {
        self(record)
    }
}

/// Counts what passes to the sink into the report.
pub(crate) struct Counting<'a, S: RecordSink + ?Sized> {
    pub(crate) sink: &'a mut S,
    pub(crate) report: &'a mut ReadReport,
}

impl<S: RecordSink + ?Sized> Counting<'_, S> {
    pub(crate) fn emit(&mut self, record: DeviceRecord) -> Result<(), ImportError> {
        if !record.value.is_finite() {
            return Ok(());
        }
        *self
            .report
            .records
            .entry(record.channel.name().to_owned())
            .or_default() += 1;
        self.report.first = Some(self.report.first.map_or(record.at, |f| f.min(record.at)));
        self.report.last = Some(self.report.last.map_or(record.at, |l| l.max(record.at)));
        if self.sink.record(record) {
            Ok(())
        } else {
            Err(ImportError::Stopped)
        }
    }
}

/// The largest CSV, TSV or JSON file read (they are read whole); Apple Health XML streams.
pub const MAX_TABLE_BYTES: u64 = 256 * 1024 * 1024;

/// Recognises a file from its first bytes (and, for a zip, its name).
pub fn detect(head: &[u8]) -> Option<Format> {
    if head.starts_with(b"PK\x03\x04") {
        return Some(Format::AppleHealth);
    }
    let text = String::from_utf8_lossy(head);
    let text = text.trim_start_matches('\u{feff}').trim_start();
    if text.starts_with("<?xml")
        || text.starts_with("<!DOCTYPE HealthData")
        || text.starts_with("<HealthData")
    {
        return text.contains("HealthData").then_some(Format::AppleHealth);
    }
    if text.starts_with('[') || text.starts_with('{') {
        return Some(Format::Nightscout);
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("record type")
        && (lower.contains("historic glucose") || lower.contains("device timestamp"))
    {
        return Some(Format::LibreView);
    }
    if lower.contains("event type") && lower.contains("glucose value") {
        return Some(Format::DexcomClarity);
    }
    if lower.contains("sensor glucose")
        || lower.contains("bg reading")
        || lower.contains("raw-type")
    {
        return Some(Format::CareLink);
    }
    // Nightscout's entries TSV: date string, epoch milliseconds, value, direction, device.
    let first = text.lines().next().unwrap_or_default();
    let cols: Vec<&str> = first.split('\t').collect();
    if cols.len() >= 3
        && cols[1].trim().len() >= 12
        && cols[1].trim().chars().all(|c| c.is_ascii_digit())
    {
        return Some(Format::Nightscout);
    }
    None
}

/// Reads `input` as `format` (or the detected one), passing records to `sink`.
///
/// `zone` is the patient's time zone, for the exports that write local times without an
/// offset (LibreView, Clarity, CareLink).
pub fn read<R: Read + std::io::Seek>(
    input: R,
    format: Option<Format>,
    zone: &TimeZone,
    sink: &mut dyn RecordSink,
) -> Result<(Format, ReadReport), ImportError> {
    let mut input = std::io::BufReader::new(input);
    let head = {
        use std::io::BufRead;
        input.fill_buf()?.to_vec()
    };
    let format = format
        .or_else(|| detect(&head))
        .ok_or(ImportError::UnknownFormat)?;
    let mut report = ReadReport::default();
    let mut out = Counting {
        sink,
        report: &mut report,
    };
    match format {
        Format::AppleHealth if head.starts_with(b"PK\x03\x04") => apple::read_zip(input, &mut out)?,
        Format::AppleHealth => apple::read_xml(input, &mut out)?,
        Format::LibreView => libre::read(&table::slurp(input)?, zone, &mut out)?,
        Format::DexcomClarity => dexcom::read(&table::slurp(input)?, zone, &mut out)?,
        Format::CareLink => carelink::read(&table::slurp(input)?, zone, &mut out)?,
        Format::Nightscout => nightscout::read(&table::slurp(input)?, &mut out)?,
    }
    Ok((format, report))
}
