//! The patient's doses: what is due on a day (from each active prescription's
//! `dosageInstruction.timing`, in the patient's time zone), the log of each dose taken,
//! late or skipped (a MedicationAdministration, from the portal in one tap or from a device
//! app through the FHIR API), and the adherence figures: the proportion of days covered by
//! dispenses (PQA) over 30 and 90 days, and the share of doses taken on time.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use medmesh_kernel::RequestContext;
use medmesh_policy::Action;
use medmesh_records::RecordError;
use serde_json::{Value, json};

use crate::adherence::{Doses, Fill, Logged, Pdc, dose_counts, proportion_of_days_covered};
use crate::prescription::{instructions_words, medication_words};
use crate::schedule::{Schedule, doses, read_dosage, units_per_day};
use crate::service::{MedicationService, invalid};

/// MedicationAdministration extension: the scheduled time the log is for (`valueDateTime`).
pub const EXT_DOSE_DUE: &str = "https://medmesh.dev/fhir/StructureDefinition/dose-due";
/// MedicationAdministration extension: the patient said the dose was late (`valueBoolean`).
pub const EXT_DOSE_LATE: &str = "https://medmesh.dev/fhir/StructureDefinition/dose-late";
/// The core extension naming a resource's IANA time zone (`valueCode`), read on the Patient.
pub const EXT_TIMEZONE: &str = "http://hl7.org/fhir/StructureDefinition/timezone";
/// A dose taken within this of its time is on time (one hour).
pub const ON_TIME_GRACE: SignedDuration = SignedDuration::from_hours(1);
/// A log without a scheduled time counts for the nearest dose within this (12 hours).
const MATCH_WINDOW: SignedDuration = SignedDuration::from_hours(12);
/// At most this many logs or dispenses are read for one figure.
const MAX_READ: usize = 1000;

/// What a patient logs of a dose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoseStatus {
    /// Taken (on time or not: the time says).
    Taken,
    /// Taken, late (the patient says so).
    Late,
    /// Not taken, on purpose.
    Skipped,
}

impl DoseStatus {
    /// Parses `taken`, `late`, `skipped`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "taken" => Self::Taken,
            "late" => Self::Late,
            "skipped" => Self::Skipped,
            _ => return None,
        })
    }
}

/// One dose of a day.
#[derive(Debug, Clone)]
pub struct DueDose {
    /// The prescription.
    pub prescription: String,
    /// The medication in words.
    pub medication: String,
    /// The instructions in words.
    pub instructions: String,
    /// When it is due (`None` for an as-needed medication).
    pub due: Option<Timestamp>,
    /// The time it is due at in the patient's time zone (`08:00`).
    pub local_time: Option<String>,
    /// `taken`, `late`, `skipped`, or `None` (not logged yet).
    pub logged: Option<&'static str>,
}

/// A prescription's adherence figures.
#[derive(Debug, Clone)]
pub struct Adherence {
    /// The prescription.
    pub prescription: String,
    /// The medication in words.
    pub medication: String,
    /// Proportion of days covered by dispenses over the last 30 days.
    pub pdc30: Option<Pdc>,
    /// Over the last 90 days.
    pub pdc90: Option<Pdc>,
    /// The doses due in the last 30 days, as logged.
    pub doses30: Doses,
}

fn ts(micros: i64) -> Timestamp {
    Timestamp::from_microsecond(micros).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn parse_time(s: &str) -> Option<Timestamp> {
    medmesh_fhir::datetime::parse_range(s).map(|r| ts(r.lo))
}

fn instant(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The patient's time zone: the Patient's `timezone` extension, else UTC.
pub fn zone_of(patient: &Value) -> TimeZone {
    patient["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["url"] == EXT_TIMEZONE)
        .and_then(|e| e["valueCode"].as_str())
        .and_then(|z| TimeZone::get(z).ok())
        .unwrap_or(TimeZone::UTC)
}

/// When a course began: its `dispenseRequest.validityPeriod.start`, else `authoredOn`.
fn course_start(request: &Value) -> Option<Timestamp> {
    request
        .pointer("/dispenseRequest/validityPeriod/start")
        .or_else(|| request.get("authoredOn"))
        .and_then(Value::as_str)
        .and_then(parse_time)
}

/// The schedules of a request's dosage instructions that can be read (as-needed ones too).
fn schedules(service: &MedicationService, request: &Value) -> Vec<Schedule> {
    request["dosageInstruction"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| read_dosage(d, service.meals()).ok())
        .collect()
}

/// The due times of `request` in `[from, to)`.
pub(crate) fn due_between(
    service: &MedicationService,
    request: &Value,
    from: Timestamp,
    to: Timestamp,
    tz: &TimeZone,
) -> Vec<Timestamp> {
    let Some(first) = course_start(request) else {
        return Vec::new();
    };
    let mut out: Vec<Timestamp> = schedules(service, request)
        .iter()
        .flat_map(|s| doses(s, first, from, to, tz))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What a MedicationAdministration logs: the dose it is for (its `dose-due`, or the nearest
/// due time within 12 hours of when it happened) and how.
fn read_log(administration: &Value, due: &[Timestamp]) -> Option<(Timestamp, Logged)> {
    let ext = |url: &str| {
        administration["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["url"] == url)
            .cloned()
    };
    let at = administration["effectiveDateTime"]
        .as_str()
        .or_else(|| administration["effectivePeriod"]["start"].as_str())
        .and_then(parse_time)?;
    let scheduled =
        match ext(EXT_DOSE_DUE).and_then(|e| e["valueDateTime"].as_str().and_then(parse_time)) {
            Some(s) => s,
            None => *due
                .iter()
                .filter(|d| d.duration_since(at).abs() <= MATCH_WINDOW)
                .min_by_key(|d| d.duration_since(at).abs())?,
        };
    let logged = match administration["status"].as_str() {
        Some("not-done") => Logged::Skipped,
        Some("completed" | "in-progress") => {
            if ext(EXT_DOSE_LATE).is_some_and(|e| e["valueBoolean"] == true) {
                Logged::Late
            } else {
                Logged::Taken(at)
            }
        }
        _ => return None,
    };
    Some((scheduled, logged))
}

impl MedicationService {
    async fn patient_and_zone(
        &self,
        ctx: &RequestContext,
        patient: &str,
    ) -> Result<TimeZone, RecordError> {
        let p = self.records.read(ctx, "Patient", patient).await?;
        Ok(zone_of(&p.resource))
    }

    async fn active_of(
        &self,
        ctx: &RequestContext,
        patient: &str,
    ) -> Result<Vec<Value>, RecordError> {
        self.all_of(
            ctx,
            "MedicationRequest",
            vec![
                ("patient", format!("Patient/{patient}")),
                ("status", "active".into()),
            ],
        )
        .await
    }

    async fn logs_of(
        &self,
        ctx: &RequestContext,
        request_ids: &[String],
    ) -> Result<Vec<Value>, RecordError> {
        let out = self
            .of_prescriptions(ctx, "MedicationAdministration", "request", request_ids)
            .await?;
        if out.len() > MAX_READ {
            return Err(invalid("too many dose logs to read at once"));
        }
        Ok(out)
    }

    /// The doses of `day` (the patient's local date; default today there) for each active
    /// prescription, with what was logged of each; an as-needed medication is listed once,
    /// without a time.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] for a patient the caller may not read.
    pub async fn doses_of_day(
        &self,
        ctx: &RequestContext,
        patient: &str,
        day: Option<Date>,
    ) -> Result<Vec<DueDose>, RecordError> {
        let tz = self.patient_and_zone(ctx, patient).await?;
        let day = day.unwrap_or_else(|| {
            ts(self.records.core().now())
                .to_zoned_datetime(tz.clone())
                .date()
        });
        let (Ok(from), Ok(to)) = (
            day.to_zoned_datetime(tz.clone()).map(|z| z.timestamp()),
            day.tomorrow()
                .and_then(|d| d.to_zoned_datetime(tz.clone()))
                .map(|z| z.timestamp()),
        ) else {
            return Err(invalid(
                "that day cannot be read in the patient's time zone",
            ));
        };
        let active = self.active_of(ctx, patient).await?;
        let ids: Vec<String> = active
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect();
        let logs = self.logs_of(ctx, &ids).await?;
        let mut out = Vec::new();
        for r in &active {
            let id = r["id"].as_str().unwrap_or_default().to_string();
            let medication = medication_words(r).unwrap_or_default();
            let instructions = instructions_words(r);
            let sched = schedules(self, r);
            let due = due_between(self, r, from, to, &tz);
            let target = format!("MedicationRequest/{id}");
            let mine: Vec<(Timestamp, Logged)> = logs
                .iter()
                .filter(|l| l["request"]["reference"].as_str() == Some(target.as_str()))
                .filter_map(|l| read_log(l, &due))
                .collect();
            if due.is_empty() && sched.iter().any(|s| matches!(s, Schedule::AsNeeded)) {
                out.push(DueDose {
                    prescription: id.clone(),
                    medication: medication.clone(),
                    instructions: instructions.clone(),
                    due: None,
                    local_time: None,
                    logged: None,
                });
            }
            for d in due {
                let logged = mine
                    .iter()
                    .rev()
                    .find(|(s, _)| *s == d)
                    .map(|(_, l)| match l {
                        Logged::Taken(at) if at.duration_since(d).abs() > ON_TIME_GRACE => "late",
                        Logged::Taken(_) => "taken",
                        Logged::Late => "late",
                        Logged::Skipped => "skipped",
                    });
                out.push(DueDose {
                    prescription: id.clone(),
                    medication: medication.clone(),
                    instructions: instructions.clone(),
                    due: Some(d),
                    local_time: Some(
                        d.to_zoned_datetime(tz.clone())
                            .strftime("%H:%M")
                            .to_string(),
                    ),
                    logged,
                });
            }
        }
        out.sort_by_key(|d| d.due);
        Ok(out)
    }

    /// Logs one dose of prescription `id`: `due` (one of its scheduled times; none for an
    /// as-needed dose), taken, late or skipped, at `at` (default now). A
    /// MedicationAdministration written as the caller (the patient, or whoever the PDP lets
    /// write the patient's record) and audited; a second log of a dose corrects the first.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] for a prescription that is not active, or a time that is
    /// none of its doses.
    pub async fn log_dose(
        &self,
        ctx: &RequestContext,
        id: &str,
        due: Option<&str>,
        status: DoseStatus,
        at: Option<&str>,
    ) -> Result<Value, RecordError> {
        let core = self.records.core();
        let request = self
            .records
            .read(ctx, "MedicationRequest", id)
            .await?
            .resource;
        if request["status"] != "active" {
            return Err(invalid("doses are logged against an active prescription"));
        }
        let patient = request["subject"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Patient/"))
            .unwrap_or_default()
            .to_string();
        let now = ts(core.now());
        let at = match at {
            Some(a) => parse_time(a).ok_or_else(|| invalid("`at` is not a FHIR dateTime"))?,
            None => now,
        };
        if at > now + SignedDuration::from_mins(5) {
            return Err(invalid("a dose is not logged before it is taken"));
        }
        let due = match due {
            Some(d) => {
                let d = parse_time(d).ok_or_else(|| invalid("`due` is not a FHIR dateTime"))?;
                let tz = self.patient_and_zone(ctx, &patient).await?;
                let day = SignedDuration::from_hours(24);
                let scheduled = due_between(self, &request, d - day, d + day, &tz);
                if !scheduled.contains(&d) {
                    return Err(invalid("no dose of this prescription is due at that time"));
                }
                Some(d)
            }
            None => None,
        };
        let administration_id = core.ids().new_id();
        let mut extension = Vec::new();
        if let Some(d) = due {
            extension.push(json!({"url": EXT_DOSE_DUE, "valueDateTime": instant(d)}));
        }
        if status == DoseStatus::Late {
            extension.push(json!({"url": EXT_DOSE_LATE, "valueBoolean": true}));
        }
        let mut administration = json!({
            "resourceType": "MedicationAdministration",
            "id": administration_id,
            "status": if status == DoseStatus::Skipped { "not-done" } else { "completed" },
            "subject": {"reference": format!("Patient/{patient}")},
            "effectiveDateTime": instant(at),
            "request": {"reference": format!("MedicationRequest/{id}")},
        });
        if !extension.is_empty() {
            administration["extension"] = json!(extension);
        }
        for key in [
            "medicationCodeableConcept",
            "medicationReference",
            "contained",
        ] {
            if let Some(v) = request.get(key) {
                administration[key] = v.clone();
            }
        }
        if let Some(p) = crate::service::author_reference(ctx) {
            administration["performer"] = json!([{"actor": {"reference": p}}]);
        }
        core.check_resource("MedicationAdministration", &administration)?;
        let grant = core
            .authorize(ctx, Action::Create, Some("MedicationAdministration"))
            .await?;
        let mut tx = core.begin_write().await?;
        let out = core
            .write_version(
                ctx,
                &mut tx,
                &grant,
                "MedicationAdministration",
                &administration_id,
                administration,
                None,
            )
            .await?;
        self.record_step(
            ctx,
            &mut tx,
            &grant,
            "dose",
            "MedicationAdministration",
            vec![administration_id, format!("MedicationRequest/{id}")],
            &patient,
        )
        .await?;
        tx.commit().await?;
        out.resource.ok_or(RecordError::NotFound)
    }

    /// The adherence figures of each active prescription of a patient: PDC over 30 and 90
    /// days from the dispenses of it and the prescriptions it renews, and the doses of the
    /// last 30 days as logged.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] for a patient the caller may not read.
    pub async fn adherence(
        &self,
        ctx: &RequestContext,
        patient: &str,
    ) -> Result<Vec<Adherence>, RecordError> {
        let tz = self.patient_and_zone(ctx, patient).await?;
        let now = ts(self.records.core().now());
        let today = now.to_zoned_datetime(tz.clone()).date();
        let active = self.active_of(ctx, patient).await?;
        let mut out = Vec::new();
        for r in &active {
            let id = r["id"].as_str().unwrap_or_default().to_string();
            // The course: this prescription and those it renews.
            let mut lineage = vec![id.clone()];
            let mut prior = r["priorPrescription"]["reference"]
                .as_str()
                .map(str::to_string);
            while let Some(p) = prior.take().filter(|_| lineage.len() < 20) {
                let Some(pid) = p.strip_prefix("MedicationRequest/") else {
                    break;
                };
                lineage.push(pid.to_string());
                prior = self
                    .records
                    .read(ctx, "MedicationRequest", pid)
                    .await
                    .ok()
                    .and_then(|f| {
                        f.resource["priorPrescription"]["reference"]
                            .as_str()
                            .map(str::to_string)
                    });
            }
            let dispenses = self
                .of_prescriptions(ctx, "MedicationDispense", "prescription", &lineage)
                .await?;
            // The prescribed daily amount, for dispenses that give no days of supply.
            let daily_units = units_per_day(&r["dosageInstruction"][0], self.meals());
            let fills: Vec<Fill> = dispenses
                .iter()
                .filter(|d| d["status"] == "completed")
                .filter_map(|d| {
                    let when = d["whenHandedOver"]
                        .as_str()
                        .or_else(|| d["whenPrepared"].as_str())
                        .and_then(parse_time)?;
                    // The dispense's days of supply; else the prescription's expected
                    // duration; else the quantity handed over at the prescribed daily
                    // amount (10 tablets at one a day are 10 days).
                    let days = d["daysSupply"]["value"]
                        .as_f64()
                        .or_else(|| {
                            let e = &r["dispenseRequest"]["expectedSupplyDuration"];
                            let v = e["value"].as_f64()?;
                            match e["code"].as_str().or_else(|| e["unit"].as_str()) {
                                Some("d" | "day" | "days") => Some(v),
                                Some("wk" | "week" | "weeks") => Some(v * 7.0),
                                _ => None,
                            }
                        })
                        .or_else(|| {
                            let quantity = d["quantity"]["value"].as_f64()?;
                            let per_day = daily_units.filter(|u| *u > 0.0)?;
                            Some((quantity / per_day).floor())
                        })?;
                    Some(Fill {
                        date: when.to_zoned_datetime(tz.clone()).date(),
                        days_supply: u32::try_from(days.round() as i64).ok()?,
                    })
                })
                .collect();
            let pdc = |days: i64| {
                let start = today.checked_sub(jiff::Span::new().days(days - 1)).ok()?;
                let end = today.tomorrow().ok()?;
                proportion_of_days_covered(&fills, start, end)
            };
            let from = now - SignedDuration::from_hours(24 * 30);
            // Doses due up to an hour ago: one due just now may still be taken on time.
            let due = due_between(self, r, from, now - ON_TIME_GRACE, &tz);
            let logs = self.logs_of(ctx, std::slice::from_ref(&id)).await?;
            let logged: Vec<(Timestamp, Logged)> =
                logs.iter().filter_map(|l| read_log(l, &due)).collect();
            out.push(Adherence {
                prescription: id,
                medication: medication_words(r).unwrap_or_default(),
                pdc30: pdc(30),
                pdc90: pdc(90),
                doses30: dose_counts(&due, &logged, ON_TIME_GRACE),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_counts_for_its_dose_or_the_nearest_one() {
        let due: Vec<Timestamp> = ["2026-12-04T08:00:00Z", "2026-12-04T20:00:00Z"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let tapped = json!({"status": "completed", "effectiveDateTime": "2026-12-04T08:20:00Z",
            "extension": [{"url": EXT_DOSE_DUE, "valueDateTime": "2026-12-04T08:00:00Z"}]});
        let (s, l) = read_log(&tapped, &due).unwrap();
        assert_eq!(s, due[0]);
        assert!(matches!(l, Logged::Taken(_)));
        // From a device app, no dose named: the nearest within 12 hours.
        let app = json!({"status": "completed", "effectiveDateTime": "2026-12-04T19:10:00Z"});
        assert_eq!(read_log(&app, &due).unwrap().0, due[1]);
        let skipped = json!({"status": "not-done", "effectiveDateTime": "2026-12-04T08:05:00Z"});
        assert_eq!(read_log(&skipped, &due).unwrap().1, Logged::Skipped);
        let late = json!({"status": "completed", "effectiveDateTime": "2026-12-04T11:00:00Z",
            "extension": [{"url": EXT_DOSE_DUE, "valueDateTime": "2026-12-04T08:00:00Z"},
                {"url": EXT_DOSE_LATE, "valueBoolean": true}]});
        assert_eq!(read_log(&late, &due).unwrap().1, Logged::Late);
        // Nothing due near it: not a log of this schedule.
        let far = json!({"status": "completed", "effectiveDateTime": "2026-12-06T08:00:00Z"});
        assert!(read_log(&far, &due).is_none());
        assert!(
            read_log(
                &json!({"status": "entered-in-error", "effectiveDateTime": "2026-12-04T08:00:00Z"}),
                &due
            )
            .is_none()
        );
    }

    #[test]
    fn the_zone_is_the_patients() {
        let p = json!({"extension": [{"url": EXT_TIMEZONE, "valueCode": "Europe/Berlin"}]});
        assert_eq!(zone_of(&p).iana_name(), Some("Europe/Berlin"));
        assert_eq!(zone_of(&json!({})), TimeZone::UTC);
    }
}
