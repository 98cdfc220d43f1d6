//! The device data service, on the record service: imports written as the caller (the PDP
//! decides whether a patient may add to their own record, or a clinician to a patient's;
//! every series is sealed and audited like any write), readings read back as the caller,
//! and the glucose figures computed from them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Seek};
use std::sync::Arc;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use medmesh_device_import::{Channel, DeviceKey, DeviceRecord, Format, ImportError, ReadReport};
use medmesh_fhir::IssueType;
use medmesh_glucose::{Reading, Summary};
use medmesh_kernel::RequestContext;
use medmesh_records::{RecordError, RecordService};
use serde::Serialize;
use serde_json::{Value, json};

use crate::series::{self, SeriesKey, Slots};

/// Records per batch passed from the reader's thread to the writer.
const BATCH: usize = 10_000;
/// Batches in flight between them: with [`BATCH`], the bound on memory for any file size.
const BATCHES_IN_FLIGHT: usize = 4;
/// Series held before they are merged into the record and written.
const SERIES_PER_FLUSH: usize = 400;
/// Ids per `_id` search when looking up existing series.
const IDS_PER_SEARCH: usize = 100;
/// The longest period one request reads (glucose summary, readings, AGP).
pub const MAX_PERIOD_DAYS: i64 = 400;
/// Days per search window when reading series (× devices stays under a page of 1,000).
const WINDOW_DAYS: i64 = 50;
/// Series referenced by one Provenance.
const TARGETS_PER_PROVENANCE: usize = 500;

/// Errors are the record service's: the PDP's refusal, a missing patient, an unreadable
/// file (422 with the reader's reason, which never quotes the file).
pub type DeviceError = RecordError;

/// The device data service.
pub struct DeviceDataService {
    records: Arc<RecordService>,
    /// Opens the sites device data is pulled from; `None` where the node pulls from none.
    remote: Option<Arc<dyn crate::remote::RemoteConnector>>,
    /// Tells patients who chose glucose alerts of a forecast low; `None`: no alerts.
    hub: Option<Arc<medmesh_notifications::NotificationHub>>,
}

/// What one file's import did (or a pull's, window by window).
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The file's name as given (not stored).
    pub file: String,
    /// The format read.
    pub format: &'static str,
    /// What the reader saw: unit, records per channel, time range, skipped and rejected rows.
    #[serde(flatten)]
    pub read: ReadReport,
    /// New or changed minute values written, per channel (0 on a re-import).
    pub added: BTreeMap<String, u64>,
    /// Day series written (new or changed).
    pub series_written: u64,
    /// Day series that already held everything in the file.
    pub series_unchanged: u64,
    /// The devices the file's records came from (model names).
    pub devices: Vec<String>,
    /// When fresh sensor glucose forecasts a low: whether the patient was told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low_glucose_alert: Option<crate::alerts::LowAlert>,
}

impl FileReport {
    /// A report of nothing yet, for `file` read as `format`.
    pub fn empty(file: &str, format: Format) -> Self {
        Self {
            file: file.to_owned(),
            format: format.name(),
            read: ReadReport::default(),
            added: BTreeMap::new(),
            series_written: 0,
            series_unchanged: 0,
            devices: Vec::new(),
            low_glucose_alert: None,
        }
    }
}

/// The glucose summary of a period.
#[derive(Debug, Clone, Serialize)]
pub struct GlucoseView {
    /// The period's start (inclusive).
    pub start: String,
    /// The period's end (exclusive).
    pub end: String,
    /// The time zone whose days and times of day the figures use.
    pub time_zone: String,
    /// The unit of the glucose figures.
    pub unit: &'static str,
    /// Days in the period.
    pub days: f64,
    /// The figures.
    #[serde(flatten)]
    pub summary: Summary,
}

/// The longest period whose readings one CGM export holds, days.
pub const MAX_EXPORT_READING_DAYS: i64 = 31;

/// The most patients a panel lists.
pub const MAX_PANEL: usize = 200;

/// How the clinicians' panel is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanelOrder {
    /// By the glycemia risk index, highest first.
    Gri,
    /// By the time below 70 mg/dL, highest first.
    BelowRange,
}

/// One patient on the panel.
#[derive(Debug, Clone, Serialize)]
pub struct PanelRow {
    /// The patient's id.
    pub patient: String,
    /// Their figures over the panel's days.
    #[serde(flatten)]
    pub summary: Summary,
}

/// What the forecast view says of itself.
const FORECAST_NOTE: &str = "A statistical estimate from your own recent readings, insulin and carbs. It is not a dosing aid: check with your meter and follow your care plan.";

/// Correlations and excursions over a period.
#[derive(Debug, Clone, Serialize)]
pub struct Insights {
    /// Glucose against each factor that has data.
    pub correlations: Vec<medmesh_glucose::correlation::Correlation>,
    /// After meals and after workouts.
    pub excursions: Vec<medmesh_glucose::correlation::Excursion>,
    /// What the figures are not.
    pub note: &'static str,
}

/// The forecast from the latest reading.
#[derive(Debug, Clone, Serialize)]
pub struct ForecastView {
    /// The latest reading's time (UTC), None without readings.
    pub latest: Option<String>,
    /// 30 and 60 minutes ahead (times in local wall-clock seconds), with their bands.
    pub predictions: Vec<medmesh_glucose::forecast::Prediction>,
    /// The model's error on the last two days, beside the baselines.
    pub evaluations: Vec<medmesh_glucose::forecast::Evaluation>,
    /// Days of readings the model was fitted on.
    pub training_days: usize,
    /// What it is not.
    pub note: &'static str,
}

/// One reading read back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredReading {
    /// When.
    pub at: Timestamp,
    /// The value in the channel's unit.
    pub value: f64,
}

impl DeviceDataService {
    /// The service over `records`.
    pub fn new(records: Arc<RecordService>) -> Self {
        Self {
            records,
            remote: None,
            hub: None,
        }
    }

    /// The service, telling patients who chose glucose alerts through `hub`.
    pub fn with_alerts(mut self, hub: Arc<medmesh_notifications::NotificationHub>) -> Self {
        self.hub = Some(hub);
        self
    }

    /// The hub alerts go through, when the node sends them.
    pub(crate) fn hub(&self) -> Option<&Arc<medmesh_notifications::NotificationHub>> {
        self.hub.as_ref()
    }

    /// The service, pulling from remote sites through `connector`.
    pub fn with_remote(mut self, connector: Arc<dyn crate::remote::RemoteConnector>) -> Self {
        self.remote = Some(connector);
        self
    }

    /// The connector to remote sites, when the node has one.
    pub(crate) fn remote(&self) -> Option<&Arc<dyn crate::remote::RemoteConnector>> {
        self.remote.as_ref()
    }

    /// The injected clock's time (the default period ends now).
    pub fn now(&self) -> Timestamp {
        Timestamp::from_microsecond(self.records.core().now()).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// Imports one file for `patient`: reads it on a blocking thread (bounded memory),
    /// merges its records into the patient's day series and writes what changed as the
    /// caller, with the devices and a Provenance naming the caller and the file's format.
    /// When it brings fresh sensor glucose, a patient who chose glucose alerts is told of a
    /// forecast low ([`crate::alerts`]).
    ///
    /// # Errors
    /// The patient is not found or not writable by the caller; the file is unreadable.
    pub async fn import<R: Read + Seek + Send + 'static>(
        &self,
        ctx: &RequestContext,
        patient: &str,
        file: &str,
        input: R,
        format: Option<Format>,
        zone: TimeZone,
    ) -> Result<FileReport, DeviceError> {
        let mut report = self
            .import_file(ctx, patient, file, input, format, zone)
            .await?;
        report.low_glucose_alert = self.alert_if_low(ctx, patient, &report).await;
        Ok(report)
    }

    /// [`Self::import`] without the alert.
    async fn import_file<R: Read + Seek + Send + 'static>(
        &self,
        ctx: &RequestContext,
        patient: &str,
        file: &str,
        input: R,
        format: Option<Format>,
        zone: TimeZone,
    ) -> Result<FileReport, DeviceError> {
        // The patient must exist for the caller (the PDP's read decides; 404 otherwise).
        self.records.read(ctx, "Patient", patient).await?;
        self.write_file(ctx, patient, file, input, format, zone)
            .await
    }

    /// Reads one file and writes what it changes, with no read of the patient of its own
    /// (a pull reads the patient once, then writes its weeks through this).
    pub(crate) async fn write_file<R: Read + Seek + Send + 'static>(
        &self,
        ctx: &RequestContext,
        patient: &str,
        file: &str,
        input: R,
        format: Option<Format>,
        zone: TimeZone,
    ) -> Result<FileReport, DeviceError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<DeviceRecord>>(BATCHES_IN_FLIGHT);
        let reader = tokio::task::spawn_blocking(move || {
            let mut batch = Vec::with_capacity(BATCH);
            let mut sink = |record: DeviceRecord| {
                batch.push(record);
                if batch.len() >= BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    return tx.blocking_send(full).is_ok();
                }
                true
            };
            let result = medmesh_device_import::read(input, format, &zone, &mut sink);
            if !batch.is_empty() && result.is_ok() {
                let _ = tx.blocking_send(batch);
            }
            result
        });
        let mut writer = Writer::new(self, ctx, patient);
        let mut failed: Option<DeviceError> = None;
        while let Some(batch) = rx.recv().await {
            if failed.is_some() {
                continue;
            }
            writer.take(batch);
            if writer.pending.len() >= SERIES_PER_FLUSH
                && let Err(e) = writer.flush().await
            {
                failed = Some(e);
                rx.close();
            }
        }
        let read = reader
            .await
            .map_err(|_| RecordError::rule("the file could not be read"))?;
        if let Some(e) = failed {
            return Err(e);
        }
        let (format, read) = read.map_err(import_error)?;
        writer.flush().await?;
        writer.provenance(format).await?;
        Ok(FileReport {
            file: file.to_owned(),
            format: format.name(),
            read,
            added: writer.added,
            series_written: writer.written.len() as u64,
            series_unchanged: writer.unchanged,
            devices: writer
                .devices
                .keys()
                .map(|d| d.model.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            low_glucose_alert: None,
        })
    }

    /// The readings of `channel` in `[start, end)`, from every device, in time order.
    ///
    /// # Errors
    /// The caller may not read the patient's Observations; the period is too long.
    pub async fn readings(
        &self,
        ctx: &RequestContext,
        patient: &str,
        channel: Channel,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<StoredReading>, DeviceError> {
        self.check(ctx, patient, start, end).await?;
        self.series_readings(ctx, patient, channel, start, end)
            .await
    }

    /// The period's bounds, and the patient's own read: a search answers only what the
    /// caller may see, which for a stranger is nothing; the read tells them no instead (404
    /// when they may not know of the patient). Each public read makes it once. Answers the
    /// Patient as read.
    pub(crate) async fn check(
        &self,
        ctx: &RequestContext,
        patient: &str,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Value, DeviceError> {
        check_period(start, end)?;
        Ok(self.records.read(ctx, "Patient", patient).await?.resource)
    }

    /// A channel's readings in `[start, end)`, searched as the caller, with no check of its
    /// own (see [`Self::check`]).
    async fn series_readings(
        &self,
        ctx: &RequestContext,
        patient: &str,
        channel: Channel,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<StoredReading>, DeviceError> {
        let mut out = Vec::new();
        let mut from = start;
        while from < end {
            let to = (from + SignedDuration::from_hours(24 * WINDOW_DAYS)).min(end);
            let found = self
                .records
                .search_resources(
                    ctx,
                    "Observation",
                    &[
                        ("patient", patient.to_owned()),
                        ("code", series::channel_token(channel)),
                        ("date", format!("ge{}", day_start(from))),
                        ("date", format!("lt{}", to)),
                        ("_count", "1000".to_owned()),
                    ],
                )
                .await?;
            for obs in found {
                let Some(day) = series::day_of(&obs) else {
                    continue;
                };
                for (minute, value) in series::slots_of(&obs) {
                    if let Some(at) =
                        series::instant(day, minute).filter(|at| *at >= from && *at < to)
                    {
                        out.push(StoredReading { at, value });
                    }
                }
            }
            from = to;
        }
        out.sort_by_key(|r| r.at);
        Ok(out)
    }

    /// The time of the patient's latest sensor glucose reading, if any (the portal's default
    /// period ends there).
    ///
    /// # Errors
    /// The caller may not read the patient's Observations.
    pub async fn latest_glucose(
        &self,
        ctx: &RequestContext,
        patient: &str,
    ) -> Result<Option<Timestamp>, DeviceError> {
        let found = self
            .records
            .search_resources(
                ctx,
                "Observation",
                &[
                    ("patient", patient.to_owned()),
                    ("code", series::channel_token(Channel::SensorGlucose)),
                    ("_sort", "-date".to_owned()),
                    ("_count", "1".to_owned()),
                ],
            )
            .await?;
        Ok(found.first().and_then(|obs| {
            let day = series::day_of(obs)?;
            let last = series::slots_of(obs).keys().next_back().copied()?;
            series::instant(day, last)
        }))
    }

    /// The consensus glucose figures over `[start, end)`, from sensor glucose, with days and
    /// times of day in `zone`.
    ///
    /// # Errors
    /// As [`Self::readings`].
    pub async fn glucose_summary(
        &self,
        ctx: &RequestContext,
        patient: &str,
        start: Timestamp,
        end: Timestamp,
        zone: &TimeZone,
    ) -> Result<(GlucoseView, Vec<Reading>), DeviceError> {
        self.check(ctx, patient, start, end).await?;
        let stored = self
            .series_readings(ctx, patient, Channel::SensorGlucose, start, end)
            .await?;
        Ok(glucose_view(&stored, start, end, zone))
    }

    /// A factor's readings at local wall-clock seconds (no check of its own).
    async fn local_series(
        &self,
        ctx: &RequestContext,
        patient: &str,
        channel: Channel,
        start: Timestamp,
        end: Timestamp,
        zone: &TimeZone,
    ) -> Result<Vec<(i64, f64)>, DeviceError> {
        let stored = self
            .series_readings(ctx, patient, channel, start, end)
            .await?;
        Ok(stored
            .iter()
            .map(|r| (local_seconds(r.at, zone), r.value))
            .collect())
    }

    /// How glucose moved with insulin, carbs, heart rate, steps and workouts over the period:
    /// lagged correlations and the excursions after meals and exercise.
    ///
    /// # Errors
    /// As [`Self::readings`].
    pub async fn insights(
        &self,
        ctx: &RequestContext,
        patient: &str,
        start: Timestamp,
        end: Timestamp,
        zone: &TimeZone,
    ) -> Result<Insights, DeviceError> {
        let (_, glucose) = self.glucose_summary(ctx, patient, start, end, zone).await?;
        self.insights_of(ctx, patient, start, end, zone, &glucose)
            .await
    }

    /// [`Self::insights`] over the period's sensor glucose already read (by
    /// [`Self::glucose_summary`], which checked the period and the patient).
    ///
    /// # Errors
    /// As [`Self::readings`].
    pub async fn insights_of(
        &self,
        ctx: &RequestContext,
        patient: &str,
        start: Timestamp,
        end: Timestamp,
        zone: &TimeZone,
        glucose: &[Reading],
    ) -> Result<Insights, DeviceError> {
        use medmesh_glucose::correlation::{Aggregate, correlate, excursions};
        let mut correlations = Vec::new();
        let mut by_channel = HashMap::new();
        let channels = [
            (Channel::BolusInsulin, Aggregate::Sum),
            (Channel::BasalRate, Aggregate::Hold),
            (Channel::Carbs, Aggregate::Sum),
            (Channel::HeartRate, Aggregate::Mean),
            (Channel::Steps, Aggregate::Sum),
            (Channel::Workout, Aggregate::Sum),
        ];
        // The six searches run at once: each reads the patient's Observations by code, and
        // one after the other they were most of the glucose page's time (bench/README.md).
        let read = futures::future::try_join_all(
            channels
                .iter()
                .map(|(channel, _)| self.local_series(ctx, patient, *channel, start, end, zone)),
        )
        .await?;
        for ((channel, how), series) in channels.into_iter().zip(read) {
            if !series.is_empty() {
                correlations.push(correlate(channel.name(), glucose, &series, how));
            }
            by_channel.insert(channel, series);
        }
        let meals: Vec<(i64, f64)> = by_channel
            .get(&Channel::Carbs)
            .map(|c| c.iter().copied().filter(|(_, g)| *g >= 10.0).collect())
            .unwrap_or_default();
        let workouts = by_channel.remove(&Channel::Workout).unwrap_or_default();
        Ok(Insights {
            correlations,
            excursions: vec![
                excursions("meals of 10 g or more", glucose, &meals, true),
                excursions("workouts", glucose, &workouts, false),
            ],
            note: "These describe the past period only. They are not advice on insulin doses or treatment; discuss changes with your care team.",
        })
    }

    /// The glucose forecast 30 and 60 minutes after the latest reading, fitted on the 30 days
    /// before it (with logged insulin and carbs), and the model's error on the last 2 of them
    /// beside the baselines.
    ///
    /// # Errors
    /// As [`Self::readings`].
    pub async fn forecast(
        &self,
        ctx: &RequestContext,
        patient: &str,
        zone: &TimeZone,
    ) -> Result<ForecastView, DeviceError> {
        self.records.read(ctx, "Patient", patient).await?;
        let latest = self.latest_glucose(ctx, patient).await?;
        self.forecast_from(ctx, patient, latest, zone).await
    }

    /// [`Self::forecast`] from `latest` (the patient's latest sensor reading, as
    /// [`Self::latest_glucose`] found it; None gives an empty forecast).
    ///
    /// # Errors
    /// As [`Self::readings`].
    pub async fn forecast_from(
        &self,
        ctx: &RequestContext,
        patient: &str,
        latest: Option<Timestamp>,
        zone: &TimeZone,
    ) -> Result<ForecastView, DeviceError> {
        use medmesh_glucose::forecast::{Event, evaluate, fit};
        let Some(latest) = latest else {
            return Ok(ForecastView {
                latest: None,
                predictions: Vec::new(),
                evaluations: Vec::new(),
                training_days: 0,
                note: FORECAST_NOTE,
            });
        };
        let end = latest + SignedDuration::from_secs(60);
        let start = end - SignedDuration::from_hours(24 * 30);
        let stored = self
            .series_readings(ctx, patient, Channel::SensorGlucose, start, end)
            .await?;
        let (_, glucose) = glucose_view(&stored, start, end, zone);
        let events = |s: Vec<(i64, f64)>| {
            s.into_iter()
                .map(|(at, amount)| Event { at, amount })
                .collect::<Vec<_>>()
        };
        let insulin = events(
            self.local_series(ctx, patient, Channel::BolusInsulin, start, end, zone)
                .await?,
        );
        let carbs = events(
            self.local_series(ctx, patient, Channel::Carbs, start, end, zone)
                .await?,
        );
        let mut predictions = Vec::new();
        let mut evaluations = Vec::new();
        for horizon in [30, 60] {
            if let Some(p) = fit(&glucose, &insulin, &carbs, horizon)
                .and_then(|m| m.predict(&glucose, &insulin, &carbs))
            {
                predictions.push(p);
            }
            if let Some(e) = evaluate(&glucose, &insulin, &carbs, horizon, 2) {
                evaluations.push(e);
            }
        }
        let days = {
            let mut d: Vec<i64> = glucose.iter().map(|r| r.at.div_euclid(86_400)).collect();
            d.dedup();
            d.len()
        };
        Ok(ForecastView {
            latest: Some(latest.to_string()),
            predictions,
            evaluations,
            training_days: days,
            note: FORECAST_NOTE,
        })
    }

    /// The caller's patients with sensor glucose in the `days` days up to `now`, each with
    /// their figures, sorted by `order` (the highest risk first): the clinician's panel.
    /// Whom the caller sees is the PDP's answer to their search; at most [`MAX_PANEL`].
    ///
    /// # Errors
    /// The caller may not search Observations.
    pub async fn panel(
        &self,
        ctx: &RequestContext,
        now: Timestamp,
        days: i64,
        order: PanelOrder,
        zone: &TimeZone,
    ) -> Result<Vec<PanelRow>, DeviceError> {
        let start = now - SignedDuration::from_hours(24 * days.clamp(1, 90));
        let found = self
            .records
            .search_resources(
                ctx,
                "Observation",
                &[
                    ("code", series::channel_token(Channel::SensorGlucose)),
                    ("date", format!("ge{}", day_start(start))),
                    ("_elements", "subject".to_owned()),
                    ("_count", "1000".to_owned()),
                ],
            )
            .await?;
        let mut patients: Vec<String> = found
            .iter()
            .filter_map(|o| {
                o.pointer("/subject/reference")?
                    .as_str()?
                    .strip_prefix("Patient/")
                    .map(str::to_owned)
            })
            .collect();
        patients.sort();
        patients.dedup();
        patients.truncate(MAX_PANEL);
        let mut rows = Vec::new();
        for patient in patients {
            let (view, _) = self
                .glucose_summary(ctx, &patient, start, now, zone)
                .await?;
            if view.summary.readings > 0 {
                rows.push(PanelRow {
                    patient,
                    summary: view.summary,
                });
            }
        }
        let key = |r: &PanelRow| match order {
            PanelOrder::Gri => r.summary.gri,
            PanelOrder::BelowRange => r.summary.below_70,
        };
        rows.sort_by(|a, b| key(b).unwrap_or(-1.0).total_cmp(&key(a).unwrap_or(-1.0)));
        Ok(rows)
    }

    /// The CGM implementation guide's export over `[start, end)`: the summary and, when
    /// `with_readings` (at most [`MAX_EXPORT_READING_DAYS`] days), each sensor reading.
    ///
    /// # Errors
    /// As [`Self::readings`]; readings asked for over a longer period.
    pub async fn cgm_export(
        &self,
        ctx: &RequestContext,
        patient: &str,
        start: Timestamp,
        end: Timestamp,
        zone: &TimeZone,
        with_readings: bool,
    ) -> Result<Value, DeviceError> {
        if with_readings && end.as_second() - start.as_second() > MAX_EXPORT_READING_DAYS * 86_400 {
            return Err(RecordError::invalid(
                IssueType::TooCostly,
                format!(
                    "readings are exported for at most {MAX_EXPORT_READING_DAYS} days at a time; ask for readings=false for the summary alone"
                ),
            ));
        }
        // One read of the period's readings serves the summary and the exported readings.
        self.check(ctx, patient, start, end).await?;
        let stored = self
            .series_readings(ctx, patient, Channel::SensorGlucose, start, end)
            .await?;
        let (view, _) = glucose_view(&stored, start, end, zone);
        let readings: Vec<(String, f64)> = if with_readings {
            stored.iter().map(|r| (r.at.to_string(), r.value)).collect()
        } else {
            Vec::new()
        };
        Ok(crate::cgm_ig::bundle(patient, &view, &readings))
    }

    /// The AGP report over `[start, end)` as SVG.
    ///
    /// # Errors
    /// As [`Self::readings`].
    pub async fn agp_svg(
        &self,
        ctx: &RequestContext,
        patient: &str,
        start: Timestamp,
        end: Timestamp,
        zone: &TimeZone,
    ) -> Result<String, DeviceError> {
        let (view, local) = self.glucose_summary(ctx, patient, start, end, zone).await?;
        Ok(crate::report::agp_report(&view, &local))
    }

    /// The AGP report ready to print: the drawing, and the name and birth date it is
    /// printed under (read from the Patient as the caller, like the readings).
    ///
    /// # Errors
    /// As [`Self::glucose_summary`].
    pub async fn agp_print(
        &self,
        ctx: &RequestContext,
        patient: &str,
        start: Timestamp,
        end: Timestamp,
        zone: &TimeZone,
    ) -> Result<AgpPrint, DeviceError> {
        let record = self.check(ctx, patient, start, end).await?;
        let stored = self
            .series_readings(ctx, patient, Channel::SensorGlucose, start, end)
            .await?;
        let (view, local) = glucose_view(&stored, start, end, zone);
        Ok(AgpPrint {
            svg: crate::report::agp_report(&view, &local),
            heading: crate::report_pdf::PrintHeading {
                patient: medmesh_fhir::names::human_name(&record),
                born: record["birthDate"].as_str().map(str::to_owned),
                printed: {
                    let now = self.now();
                    now.round(jiff::Unit::Second).unwrap_or(now).to_string()
                },
            },
        })
    }
}

/// The AGP report and its heading, to be printed with [`AgpPrint::to_pdf`].
#[derive(Debug, Clone)]
pub struct AgpPrint {
    /// The report, as [`crate::report::agp_report`] draws it.
    pub svg: String,
    /// Whose it is and when it was printed.
    pub heading: crate::report_pdf::PrintHeading,
}

impl AgpPrint {
    /// One printable A4 page of PDF, drawn on a blocking thread (tens of milliseconds of
    /// CPU, kept off the async workers).
    ///
    /// # Errors
    /// The drawing could not be laid out or written (a bug, never the data's fault).
    pub async fn to_pdf(self) -> Result<Vec<u8>, crate::report_pdf::PdfError> {
        tokio::task::spawn_blocking(move || crate::report_pdf::agp_pdf(&self.svg, &self.heading))
            .await
            .map_err(|_| crate::report_pdf::PdfError::Write)?
    }
}

/// An instant as local wall-clock seconds in `zone` (the analytics' time).
pub fn local_seconds(at: Timestamp, zone: &TimeZone) -> i64 {
    at.as_second() + i64::from(zone.to_offset(at).seconds())
}

/// Readings at local wall-clock seconds in `zone`.
pub fn local_readings(stored: &[StoredReading], zone: &TimeZone) -> Vec<Reading> {
    stored
        .iter()
        .map(|r| Reading {
            at: local_seconds(r.at, zone),
            mg_dl: r.value,
        })
        .collect()
}

/// The summary of sensor glucose read for `[start, end)`, with the readings it rests on
/// (local, sorted, one per second).
fn glucose_view(
    stored: &[StoredReading],
    start: Timestamp,
    end: Timestamp,
    zone: &TimeZone,
) -> (GlucoseView, Vec<Reading>) {
    let local = medmesh_glucose::normalize(local_readings(stored, zone));
    let summary = medmesh_glucose::summarize(&local);
    let view = GlucoseView {
        start: start.to_string(),
        end: end.to_string(),
        time_zone: zone.iana_name().unwrap_or("UTC").to_owned(),
        unit: "mg/dL",
        days: (end.as_second() - start.as_second()) as f64 / 86_400.0,
        summary,
    };
    (view, local)
}

pub(crate) fn check_period(start: Timestamp, end: Timestamp) -> Result<(), DeviceError> {
    if end <= start {
        return Err(RecordError::invalid(
            IssueType::Value,
            "the period's end must be after its start",
        ));
    }
    if end.as_second() - start.as_second() > MAX_PERIOD_DAYS * 86_400 {
        return Err(RecordError::invalid(
            IssueType::TooCostly,
            format!("a period is at most {MAX_PERIOD_DAYS} days"),
        ));
    }
    Ok(())
}

/// Midnight UTC of the day holding `at` (series are found by their day's period).
pub(crate) fn day_start(at: Timestamp) -> Timestamp {
    Timestamp::from_second(at.as_second().div_euclid(86_400) * 86_400).unwrap_or(at)
}

fn import_error(e: ImportError) -> DeviceError {
    match e {
        ImportError::TooLarge { .. } => RecordError::invalid(IssueType::TooCostly, e.to_string()),
        other => RecordError::invalid(IssueType::Invalid, other.to_string()),
    }
}

/// Merges batches into day series and writes them.
struct Writer<'a> {
    service: &'a DeviceDataService,
    ctx: &'a RequestContext,
    patient: &'a str,
    /// Device keys seen, with their identifiers.
    devices: HashMap<DeviceKey, String>,
    /// Series to write: the device (for its contained Device) and the file's minutes.
    pending: HashMap<SeriesKey, (DeviceKey, Slots)>,
    added: BTreeMap<String, u64>,
    written: Vec<String>,
    unchanged: u64,
}

impl<'a> Writer<'a> {
    fn new(service: &'a DeviceDataService, ctx: &'a RequestContext, patient: &'a str) -> Self {
        Self {
            service,
            ctx,
            patient,
            devices: HashMap::new(),
            pending: HashMap::new(),
            added: BTreeMap::new(),
            written: Vec::new(),
            unchanged: 0,
        }
    }

    /// Puts records into their series: in one import, values in the same minute add up
    /// (insulin, carbs, steps) or the later wins (readings, rates).
    fn take(&mut self, batch: Vec<DeviceRecord>) {
        for record in batch {
            let patient = self.patient;
            let device = match self.devices.get(&record.device) {
                Some(id) => id.clone(),
                None => {
                    let id = series::device_id(patient, &record.device);
                    self.devices.insert(record.device.clone(), id.clone());
                    id
                }
            };
            let (day, minute) = series::day_and_minute(record.at);
            let key = SeriesKey {
                patient: self.patient.to_owned(),
                device,
                channel: record.channel,
                day,
            };
            let (_, slots) = self
                .pending
                .entry(key)
                .or_insert_with(|| (record.device.clone(), Slots::new()));
            // Values are kept at the series' precision (three decimals), so a re-import
            // compares equal to what was stored.
            if record.channel.sums() {
                let sum = slots.entry(minute).or_insert(0.0);
                *sum = series::round3(*sum + record.value);
            } else {
                slots.insert(minute, series::round3(record.value));
            }
        }
    }

    /// Writes every pending series merged over what the record holds (the file's minutes
    /// replace the stored ones; the rest are kept).
    async fn flush(&mut self) -> Result<(), DeviceError> {
        let records = &self.service.records;
        let pending: Vec<(SeriesKey, (DeviceKey, Slots))> =
            std::mem::take(&mut self.pending).into_iter().collect();
        let mut stored: HashMap<String, Slots> = HashMap::new();
        for chunk in pending.chunks(IDS_PER_SEARCH) {
            let ids = chunk
                .iter()
                .map(|(k, _)| k.id())
                .collect::<Vec<_>>()
                .join(",");
            let found = records
                .search_resources(
                    self.ctx,
                    "Observation",
                    &[("_id", ids), ("_count", IDS_PER_SEARCH.to_string())],
                )
                .await?;
            for obs in found {
                if let Some(id) = obs.get("id").and_then(Value::as_str) {
                    stored.insert(id.to_owned(), series::slots_of(&obs));
                }
            }
        }
        for (key, (device, slots)) in pending {
            let id = key.id();
            let mut merged = stored.remove(&id).unwrap_or_default();
            let mut added = 0u64;
            for (minute, value) in slots {
                if merged.insert(minute, value) != Some(value) {
                    added += 1;
                }
            }
            if added == 0 {
                self.unchanged += 1;
                continue;
            }
            records
                .update(
                    self.ctx,
                    "Observation",
                    &id,
                    series::observation(&key, &device, &merged),
                    None,
                )
                .await?;
            *self.added.entry(key.channel.name().to_owned()).or_default() += added;
            self.written.push(id);
        }
        Ok(())
    }

    /// Records who imported what, when: a Provenance over the series written (none when
    /// the import changed nothing).
    async fn provenance(&self, format: Format) -> Result<(), DeviceError> {
        let actor = self.ctx.actor();
        let who = match (actor.clinician(), actor.patient()) {
            (Some(c), _) => json!({"reference": c.practitioner}),
            (None, Some(p)) => json!({"reference": format!("Patient/{p}")}),
            _ => json!({"display": "node operator"}),
        };
        let recorded = medmesh_fhir::datetime::format_instant(self.service.records.core().now());
        for targets in self.written.chunks(TARGETS_PER_PROVENANCE) {
            // The patient is a target too: it puts the Provenance in their compartment.
            let mut target: Vec<Value> = targets
                .iter()
                .map(|id| json!({"reference": format!("Observation/{id}")}))
                .collect();
            target.push(json!({"reference": format!("Patient/{}", self.patient)}));
            let body = json!({
                "resourceType": "Provenance",
                "target": target,
                "recorded": recorded,
                "activity": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": "CREATE",
                }], "text": format!("device data import ({})", format.name())},
                "agent": [{"who": who}],
                "entity": [{"role": "source", "what": {"display": format!("{} export", format.name())}}],
            });
            self.service
                .records
                .create(self.ctx, "Provenance", body, None)
                .await?;
        }
        Ok(())
    }
}

/// The time zone named `name` (IANA), UTC when none is given.
///
/// # Errors
/// The name is not a known zone.
pub fn zone(name: Option<&str>) -> Result<TimeZone, DeviceError> {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        None => Ok(TimeZone::UTC),
        Some(n) => TimeZone::get(n).map_err(|_| {
            RecordError::invalid(IssueType::Value, "the time zone is not a known IANA zone")
        }),
    }
}

/// A period from its ends as given: a date (`2024-05-01`, a whole day in `zone`; an end date
/// is included) or an instant (`2024-05-01T08:00:00Z`). By default the 14 days up to `now`
/// (the consensus' minimum for a glucose summary).
///
/// # Errors
/// An end is neither; the end is not after the start; the period is too long.
pub fn period(
    start: Option<&str>,
    end: Option<&str>,
    zone: &TimeZone,
    now: Timestamp,
) -> Result<(Timestamp, Timestamp), DeviceError> {
    let parse = |text: &str, is_end: bool| -> Result<Timestamp, DeviceError> {
        let text = text.trim();
        if let Ok(at) = text.parse::<Timestamp>() {
            return Ok(at);
        }
        let date: jiff::civil::Date = text.parse().map_err(|_| {
            RecordError::invalid(
                IssueType::Value,
                "a period's ends are dates (YYYY-MM-DD) or instants",
            )
        })?;
        let date = if is_end {
            date.tomorrow().unwrap_or(date)
        } else {
            date
        };
        zone.to_ambiguous_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
            .compatible()
            .map_err(|_| RecordError::invalid(IssueType::Value, "the date is out of range"))
    };
    let end = match end.filter(|e| !e.trim().is_empty()) {
        Some(e) => parse(e, true)?,
        None => now,
    };
    let start = match start.filter(|s| !s.trim().is_empty()) {
        Some(s) => parse(s, false)?,
        None => end - SignedDuration::from_hours(24 * 14),
    };
    check_period(start, end)?;
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_take_dates_in_the_zone_and_instants() {
        let now: Timestamp = "2024-05-15T12:00:00Z".parse().unwrap();
        let berlin = zone(Some("Europe/Berlin")).unwrap();
        let (s, e) = period(Some("2024-05-01"), Some("2024-05-14"), &berlin, now).unwrap();
        assert_eq!(s.to_string(), "2024-04-30T22:00:00Z");
        assert_eq!(e.to_string(), "2024-05-14T22:00:00Z");
        let (s, e) = period(None, None, &TimeZone::UTC, now).unwrap();
        assert_eq!((s.to_string(), e), ("2024-05-01T12:00:00Z".to_owned(), now));
        assert!(period(Some("2024-05-02"), Some("2024-05-01"), &TimeZone::UTC, now).is_err());
        assert!(period(Some("2020-01-01"), Some("2024-05-01"), &TimeZone::UTC, now).is_err());
        assert!(period(Some("yesterday"), None, &TimeZone::UTC, now).is_err());
        assert!(zone(Some("Mars/Olympus")).is_err());
    }
}
