//! Reading a bookable calendar out of FHIR resources, and writing what it offers back as FHIR.
//!
//! A **Schedule** is bookable when it is active. Its rules come from standard R4 elements
//! where R4 has them, and from a few medmesh extensions where it does not:
//!
//! | what | where |
//! |---|---|
//! | who and where | `Schedule.actor`: a `PractitionerRole` (its practitioner, organization, location), or a `Practitioner`, plus a `Location` |
//! | weekly hours | `PractitionerRole.availableTime` (days, start and end, or all day) |
//! | closed periods (holidays, one occurrence off) | `PractitionerRole.notAvailable.during` |
//! | extra periods (one occurrence moved) | `PractitionerRole` extension `available-also` (`valuePeriod`) |
//! | visit types and their lengths | `Schedule.serviceType`, each with extension `visit-minutes` (default 30) |
//! | buffer after each visit | `Schedule` extension `booking-buffer-minutes` (default 0) |
//! | how far ahead | `Schedule` extension `booking-horizon-days` (default 56), within `Schedule.planningHorizon` |
//! | how soon | `Schedule` extension `booking-notice-minutes` (default 0) |
//! | time zone | the core extension `http://hl7.org/fhir/StructureDefinition/timezone` on the Schedule or its Location (default UTC) |
//!
//! Slots a FHIR client writes itself on the Schedule (`Slot.status` `free`) are offered as
//! they are, one appointment each; `busy` ones are taken off like bookings.

use jiff::Timestamp;
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use serde_json::{Value, json};

use crate::availability::{Interval, OpenHours, VisitShape, WeeklyHours};

/// Where medmesh's own extensions live.
pub const EXTENSION_BASE: &str = "https://medmesh.dev/fhir/StructureDefinition/";
/// HL7's time-zone extension (an IANA zone name as `valueCode`).
pub const TIMEZONE_EXTENSION: &str = "http://hl7.org/fhir/StructureDefinition/timezone";
/// The default visit length, minutes.
pub const DEFAULT_VISIT_MINUTES: u32 = 30;
/// The default booking horizon, days.
pub const DEFAULT_HORIZON_DAYS: u32 = 56;

/// The URL of one of medmesh's extensions.
pub fn extension_url(name: &str) -> String {
    format!("{EXTENSION_BASE}{name}")
}

/// The value of `resource`'s extension `url` (its `value[x]`, whatever the type).
pub fn extension_value<'a>(resource: &'a Value, url: &str) -> Option<&'a Value> {
    resource
        .get("extension")?
        .as_array()?
        .iter()
        .find(|e| e.get("url").and_then(Value::as_str) == Some(url))?
        .as_object()?
        .iter()
        .find(|(k, _)| k.starts_with("value"))
        .map(|(_, v)| v)
}

fn extension_u32(resource: &Value, name: &str) -> Option<u32> {
    extension_value(resource, &extension_url(name))
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
}

/// Whether `resource`'s extension `name` is `true`.
pub fn extension_flag(resource: &Value, name: &str) -> bool {
    extension_value(resource, &extension_url(name)).and_then(Value::as_bool) == Some(true)
}

/// A visit type a calendar offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitType {
    /// The CodeableConcept as written (without the length extension).
    pub concept: Value,
    /// Its length, minutes.
    pub minutes: u32,
}

impl VisitType {
    /// Whether a token (`code` or `system|code`) names it.
    pub fn matches(&self, token: &str) -> bool {
        concept_matches(&self.concept, token)
    }
}

/// Whether a CodeableConcept holds a coding that a token (`code`, `system|code`, or a
/// coding's display or the concept's text, in any case) names.
pub fn concept_matches(concept: &Value, token: &str) -> bool {
    let (system, code) = match token.split_once('|') {
        Some((s, c)) => (Some(s), c),
        None => (None, token),
    };
    let codings = concept
        .get("coding")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    codings.iter().any(|c| {
        c.get("code").and_then(Value::as_str) == Some(code)
            && system
                .is_none_or(|s| s.is_empty() || c.get("system").and_then(Value::as_str) == Some(s))
    }) || (system.is_none()
        && codings
            .iter()
            .filter_map(|c| c.get("display").and_then(Value::as_str))
            .chain(concept.get("text").and_then(Value::as_str))
            .any(|t| t.eq_ignore_ascii_case(code)))
}

/// A visit type the calendar does not offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the schedule offers no such visit type")]
pub struct UnknownVisitType;

/// A bookable calendar: one Schedule with its rules.
#[derive(Debug, Clone)]
pub struct Calendar {
    /// The Schedule's id.
    pub schedule: String,
    /// The practitioner booked (`Practitioner/x`), when there is one.
    pub practitioner: Option<String>,
    /// The practitioner role, when the Schedule names one (`PractitionerRole/r`).
    pub role: Option<String>,
    /// Where (`Location/l`).
    pub location: Option<String>,
    /// The organization (`Organization/o`), from the role.
    pub organization: Option<String>,
    /// Specialties (`Schedule.specialty`, else the role's).
    pub specialties: Vec<Value>,
    /// Visit types.
    pub visit_types: Vec<VisitType>,
    /// When it is open.
    pub hours: OpenHours,
    /// Buffer after each visit, minutes.
    pub buffer_minutes: u32,
    /// How many days ahead it may be booked.
    pub horizon_days: u32,
    /// How soon, minutes from now.
    pub notice_minutes: u32,
    /// `Schedule.planningHorizon`, when given.
    pub planning: Option<Interval>,
}

impl Calendar {
    /// The calendars a booking claims: the practitioner (whatever schedule they are booked
    /// through), else the schedule itself.
    pub fn claim_calendar(&self) -> String {
        self.practitioner
            .clone()
            .unwrap_or_else(|| format!("Schedule/{}", self.schedule))
    }

    /// The shape of a visit of `visit_type` (the first visit type when `None`, else the
    /// default length).
    pub fn shape(&self, visit_type: Option<&VisitType>) -> VisitShape {
        VisitShape {
            minutes: visit_type
                .or_else(|| self.visit_types.first())
                .map_or(DEFAULT_VISIT_MINUTES, |v| v.minutes),
            buffer_minutes: self.buffer_minutes,
        }
    }

    /// The visit type a token names, or the first when `None`.
    ///
    /// # Errors
    /// [`UnknownVisitType`] when a token names none of them.
    pub fn visit_type(&self, token: Option<&str>) -> Result<Option<&VisitType>, UnknownVisitType> {
        match token {
            None => Ok(self.visit_types.first()),
            // A calendar with no visit types offers one kind of visit, whatever it is called.
            Some(_) if self.visit_types.is_empty() => Ok(None),
            Some(t) => self
                .visit_types
                .iter()
                .find(|v| v.matches(t))
                .map(Some)
                .ok_or(UnknownVisitType),
        }
    }

    /// The window in which it may be booked at `now`: from now plus the notice to the
    /// horizon, inside the planning horizon.
    pub fn bookable_window(&self, now: i64) -> Interval {
        let start = now + i64::from(self.notice_minutes) * crate::availability::MINUTE;
        let end = crate::availability::days_after(&self.hours.zone, now, self.horizon_days)
            .unwrap_or(start);
        let mut window = Interval::new(start, end);
        if let Some(p) = self.planning {
            window = Interval::new(window.start.max(p.start), window.end.min(p.end));
        }
        window
    }
}

fn reference(v: &Value) -> Option<&str> {
    v.get("reference").and_then(Value::as_str)
}

/// The references a Schedule's actors name, by type.
pub fn schedule_actors(schedule: &Value) -> Vec<String> {
    schedule
        .get("actor")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(reference).map(str::to_string).collect())
        .unwrap_or_default()
}

fn weekday(code: &str) -> Option<Weekday> {
    medmesh_fhir::datetime::day_of_week(code).and_then(|i| Weekday::from_monday_zero_offset(i).ok())
}

fn fhir_time(s: &str) -> Option<Time> {
    s.parse::<Time>().ok()
}

/// Parses a FHIR `dateTime` or `instant` to microseconds. A date, or a date and time with no
/// offset, is read in `zone`; `end` takes a bare date as the end of that day (FHIR's
/// reading of a period ending on a date).
pub fn parse_instant(s: &str, zone: &TimeZone, end: bool) -> Option<i64> {
    // A year, a year and month, or a date (which jiff would also read as a midnight).
    if s.len() <= 10 {
        return parse_date(s, zone, end);
    }
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t.as_microsecond());
    }
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        return zone
            .to_ambiguous_timestamp(dt)
            .compatible()
            .ok()
            .map(|t| t.as_microsecond());
    }
    None
}

fn parse_date(s: &str, zone: &TimeZone, end: bool) -> Option<i64> {
    let date = match s.len() {
        4 => s.parse::<i16>().ok().and_then(|y| Date::new(y, 1, 1).ok()),
        7 => format!("{s}-01").parse::<Date>().ok(),
        _ => s.parse::<Date>().ok(),
    }?;
    let day = if end {
        match s.len() {
            4 => date.checked_add(jiff::Span::new().years(1)).ok()?,
            7 => date.checked_add(jiff::Span::new().months(1)).ok()?,
            _ => date.tomorrow().ok()?,
        }
    } else {
        date
    };
    zone.to_ambiguous_timestamp(day.to_datetime(Time::midnight()))
        .compatible()
        .ok()
        .map(|t| t.as_microsecond())
}

/// Parses a FHIR `dateTime` to microseconds, reading one without an offset as UTC.
pub fn parse_utc(s: &str, end: bool) -> Option<i64> {
    parse_instant(s, &TimeZone::UTC, end)
}

/// An instant as people read it in `zone` (an IANA name; UTC when unknown):
/// `2026-12-07 09:00`, with the zone's abbreviation.
pub fn local_time(instant: &str, zone: Option<&str>) -> String {
    let zone = zone
        .and_then(|z| TimeZone::get(z).ok())
        .unwrap_or(TimeZone::UTC);
    match instant.parse::<Timestamp>() {
        Ok(t) => t
            .to_zoned_datetime(zone)
            .strftime("%a %Y-%m-%d %H:%M %Z")
            .to_string(),
        Err(_) => instant.to_string(),
    }
}

/// Formats an instant as a FHIR `instant` in UTC.
pub fn format_instant(micros: i64) -> String {
    Timestamp::from_microsecond(micros)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn period(v: &Value, zone: &TimeZone) -> Option<Interval> {
    let start = v
        .get("start")
        .and_then(Value::as_str)
        .map_or(Some(i64::MIN / 2), |s| parse_instant(s, zone, false))?;
    let end = v
        .get("end")
        .and_then(Value::as_str)
        .map_or(Some(i64::MAX / 2), |s| parse_instant(s, zone, true))?;
    Some(Interval::new(start, end))
}

/// The zone named by `resource`'s time-zone extension.
pub fn zone_of(resource: &Value) -> Option<TimeZone> {
    extension_value(resource, TIMEZONE_EXTENSION)
        .and_then(Value::as_str)
        .and_then(|z| TimeZone::get(z).ok())
}

/// Why a Schedule is not a bookable calendar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// `Schedule.active` is false.
    #[error("the schedule is not active")]
    Inactive,
    /// The time-zone extension names no zone this node knows.
    #[error("unknown time zone")]
    UnknownZone,
}

/// Reads a calendar from a Schedule, its PractitionerRole (if it names one) and its Location
/// (if it names one).
///
/// # Errors
/// [`CalendarError`].
pub fn calendar(
    schedule: &Value,
    role: Option<&Value>,
    location: Option<&Value>,
) -> Result<Calendar, CalendarError> {
    if schedule.get("active").and_then(Value::as_bool) == Some(false) {
        return Err(CalendarError::Inactive);
    }
    let named_zone = extension_value(schedule, TIMEZONE_EXTENSION)
        .or_else(|| location.and_then(|l| extension_value(l, TIMEZONE_EXTENSION)));
    let zone = match named_zone.and_then(Value::as_str) {
        Some(z) => TimeZone::get(z).map_err(|_| CalendarError::UnknownZone)?,
        None => TimeZone::UTC,
    };
    let actors = schedule_actors(schedule);
    let of_type = |t: &str| {
        actors
            .iter()
            .find(|a| a.starts_with(&format!("{t}/")))
            .cloned()
    };
    let role_ref = of_type("PractitionerRole");
    let practitioner = of_type("Practitioner").or_else(|| {
        role.and_then(|r| r.get("practitioner"))
            .and_then(reference)
            .map(str::to_string)
    });
    let location_ref = of_type("Location").or_else(|| {
        role.and_then(|r| r.get("location"))
            .and_then(Value::as_array)
            .and_then(|l| l.first())
            .and_then(reference)
            .map(str::to_string)
    });
    let organization = role
        .and_then(|r| r.get("organization"))
        .and_then(reference)
        .map(str::to_string);
    let concepts = |v: Option<&Value>| -> Vec<Value> {
        v.and_then(Value::as_array).cloned().unwrap_or_default()
    };
    let mut specialties = concepts(schedule.get("specialty"));
    if specialties.is_empty() {
        specialties = concepts(role.and_then(|r| r.get("specialty")));
    }
    let length_url = extension_url("visit-minutes");
    let visit_types = concepts(schedule.get("serviceType"))
        .into_iter()
        .map(|mut concept| {
            let minutes = extension_value(&concept, &length_url)
                .and_then(Value::as_u64)
                .and_then(|m| u32::try_from(m).ok())
                .filter(|m| (1..=24 * 60).contains(m))
                .unwrap_or(DEFAULT_VISIT_MINUTES);
            if let Some(o) = concept.as_object_mut() {
                o.remove("extension");
            }
            VisitType { concept, minutes }
        })
        .collect();
    let mut weekly = Vec::new();
    let mut closed = Vec::new();
    let mut extra = Vec::new();
    if let Some(role) = role {
        for at in role
            .get("availableTime")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let days: Vec<Weekday> = at
                .get("daysOfWeek")
                .and_then(Value::as_array)
                .map(|d| {
                    d.iter()
                        .filter_map(Value::as_str)
                        .filter_map(weekday)
                        .collect()
                })
                .unwrap_or_default();
            if days.is_empty() {
                continue;
            }
            let all_day = at.get("allDay").and_then(Value::as_bool) == Some(true);
            let start = at
                .get("availableStartTime")
                .and_then(Value::as_str)
                .and_then(fhir_time);
            let end = at
                .get("availableEndTime")
                .and_then(Value::as_str)
                .and_then(fhir_time);
            let hours = if all_day {
                WeeklyHours {
                    days,
                    start: Time::midnight(),
                    end: None,
                }
            } else {
                match (start, end) {
                    (Some(start), Some(end)) if end > start => WeeklyHours {
                        days,
                        start,
                        end: Some(end),
                    },
                    // Open until midnight.
                    (Some(start), Some(end)) if end == Time::midnight() => WeeklyHours {
                        days,
                        start,
                        end: None,
                    },
                    _ => continue,
                }
            };
            weekly.push(hours);
        }
        for na in role
            .get("notAvailable")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if let Some(p) = na.get("during").and_then(|d| period(d, &zone)) {
                closed.push(p);
            }
        }
        let also = extension_url("available-also");
        for e in role
            .get("extension")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if e.get("url").and_then(Value::as_str) == Some(also.as_str())
                && let Some(p) = e.get("valuePeriod").and_then(|p| period(p, &zone))
            {
                extra.push(p);
            }
        }
    }
    let planning = schedule
        .get("planningHorizon")
        .and_then(|p| period(p, &zone));
    Ok(Calendar {
        schedule: schedule
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        practitioner,
        role: role_ref,
        location: location_ref,
        organization,
        specialties,
        visit_types,
        hours: OpenHours {
            zone,
            weekly,
            extra,
            closed,
        },
        buffer_minutes: extension_u32(schedule, "booking-buffer-minutes")
            .unwrap_or(0)
            .min(24 * 60),
        horizon_days: extension_u32(schedule, "booking-horizon-days")
            .unwrap_or(DEFAULT_HORIZON_DAYS)
            .min(2 * 366),
        notice_minutes: extension_u32(schedule, "booking-notice-minutes")
            .unwrap_or(0)
            .min(366 * 24 * 60),
        planning,
    })
}

/// A Slot a FHIR client wrote on a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenSlot {
    /// Its id.
    pub id: String,
    /// Its time.
    pub time: Interval,
    /// `free`, `busy`, `busy-unavailable`, `busy-tentative`, `entered-in-error`.
    pub status: String,
    /// Its service types.
    pub service_types: Vec<Value>,
}

/// Reads a Slot.
pub fn written_slot(slot: &Value) -> Option<WrittenSlot> {
    let utc = TimeZone::UTC;
    let start = parse_instant(slot.get("start")?.as_str()?, &utc, false)?;
    let end = parse_instant(slot.get("end")?.as_str()?, &utc, false)?;
    Some(WrittenSlot {
        id: slot.get("id")?.as_str()?.to_string(),
        time: Interval::new(start, end),
        status: slot.get("status")?.as_str()?.to_string(),
        service_types: slot
            .get("serviceType")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    })
}

/// What an offer is: a time on a calendar, for a visit type, maybe in a written Slot.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    /// The Schedule.
    pub schedule: String,
    /// The visit.
    pub visit: Interval,
    /// The visit type's concept, when the calendar has visit types.
    pub visit_type: Option<Value>,
    /// The written Slot it fills, if any.
    pub slot: Option<String>,
}

/// The extension on a proposed Appointment naming the Schedule it is offered on.
pub fn schedule_extension_url() -> String {
    extension_url("appointment-schedule")
}

/// The extension on a held Appointment saying until when it is held.
pub fn hold_extension_url() -> String {
    extension_url("held-until")
}

/// A proposed Appointment for an offer (ITI-115's answer), for `patient` when given.
pub fn proposed_appointment(cal: &Calendar, offer: &Offer, patient: Option<&str>) -> Value {
    let mut participants = Vec::new();
    let mut actor = |reference: &str| {
        participants.push(json!({
            "actor": {"reference": reference},
            "required": "required",
            "status": "needs-action"
        }));
    };
    if let Some(p) = &cal.practitioner {
        actor(p);
    }
    if let Some(r) = &cal.role
        && cal.practitioner.is_none()
    {
        actor(r);
    }
    if let Some(l) = &cal.location {
        actor(l);
    }
    if let Some(p) = patient {
        actor(&format!("Patient/{p}"));
    }
    let minutes = (offer.visit.end - offer.visit.start) / crate::availability::MINUTE;
    let mut a = json!({
        "resourceType": "Appointment",
        "meta": {"profile": ["https://profiles.ihe.net/ITI/Scheduling/StructureDefinition/ihe-sched-appt"]},
        "extension": [{
            "url": schedule_extension_url(),
            "valueReference": {"reference": format!("Schedule/{}", offer.schedule)}
        }],
        "status": "proposed",
        "start": format_instant(offer.visit.start),
        "end": format_instant(offer.visit.end),
        "participant": participants,
    });
    // A Slot a client wrote may be shorter than a minute; minutesDuration is a positiveInt.
    if minutes > 0 {
        a["minutesDuration"] = json!(minutes);
    }
    if let Some(t) = &offer.visit_type {
        a["serviceType"] = json!([t]);
    }
    // The calendar's zone, so a client shows the time as the practice keeps it.
    if let Some(zone) = cal.hours.zone.iana_name()
        && let Some(ext) = a["extension"].as_array_mut()
    {
        ext.push(json!({"url": TIMEZONE_EXTENSION, "valueCode": zone}));
    }
    if !cal.specialties.is_empty() {
        a["specialty"] = Value::Array(cal.specialties.clone());
    }
    if let Some(s) = &offer.slot {
        a["slot"] = json!([{"reference": format!("Slot/{s}")}]);
    }
    a
}

/// What a proposed (or held) Appointment asks for: its schedule, time, visit type, slot and
/// patient.
#[derive(Debug, Clone, PartialEq)]
pub struct Requested {
    /// The Schedule id.
    pub schedule: String,
    /// The visit.
    pub visit: Interval,
    /// The first `serviceType`, if any.
    pub service_type: Option<Value>,
    /// The written Slot id, if any.
    pub slot: Option<String>,
    /// The patient's id.
    pub patient: Option<String>,
}

/// The id of the patient an Appointment is for (its first Patient participant).
pub fn patient_of(appointment: &Value) -> Option<String> {
    appointment
        .get("participant")
        .and_then(Value::as_array)
        .and_then(|ps| {
            ps.iter()
                .filter_map(|p| p.get("actor").and_then(reference))
                .find_map(|r| r.strip_prefix("Patient/"))
        })
        .map(str::to_string)
}

/// Reads what an Appointment asks for. `None` when it names no schedule or no time.
pub fn requested(appointment: &Value) -> Option<Requested> {
    let schedule = extension_value(appointment, &schedule_extension_url())
        .and_then(reference)
        .and_then(|r| r.strip_prefix("Schedule/"))
        .map(str::to_string);
    let slot = appointment
        .get("slot")
        .and_then(Value::as_array)
        .and_then(|s| s.first())
        .and_then(reference)
        .and_then(|r| r.strip_prefix("Slot/"))
        .map(str::to_string);
    let utc = TimeZone::UTC;
    let start = parse_instant(appointment.get("start")?.as_str()?, &utc, false)?;
    let end = parse_instant(appointment.get("end")?.as_str()?, &utc, false)?;
    let patient = patient_of(appointment);
    Some(Requested {
        schedule: schedule.unwrap_or_default(),
        visit: Interval::new(start, end),
        service_type: appointment
            .get("serviceType")
            .and_then(Value::as_array)
            .and_then(|s| s.first())
            .cloned(),
        slot,
        patient,
    })
    .filter(|r| !r.visit.is_empty() && (!r.schedule.is_empty() || r.slot.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role() -> Value {
        json!({
            "resourceType": "PractitionerRole", "id": "r1",
            "practitioner": {"reference": "Practitioner/p1"},
            "organization": {"reference": "Organization/o1"},
            "location": [{"reference": "Location/l1"}],
            "specialty": [{"coding": [{"system": "http://snomed.info/sct", "code": "394814009"}]}],
            "availableTime": [
                {"daysOfWeek": ["mon", "tue", "wed", "thu", "fri"],
                 "availableStartTime": "09:00:00", "availableEndTime": "12:00:00"},
                {"daysOfWeek": ["sat"], "allDay": true},
                {"daysOfWeek": ["sun"]}
            ],
            "notAvailable": [{"description": "Christmas", "during": {"start": "2026-12-24", "end": "2026-12-26"}}],
            "extension": [{"url": extension_url("available-also"),
                           "valuePeriod": {"start": "2026-12-27T10:00:00+01:00", "end": "2026-12-27T12:00:00+01:00"}}]
        })
    }

    fn schedule() -> Value {
        json!({
            "resourceType": "Schedule", "id": "s1", "active": true,
            "actor": [{"reference": "PractitionerRole/r1"}, {"reference": "Location/l1"}],
            "serviceType": [
                {"coding": [{"system": "http://snomed.info/sct", "code": "11429006", "display": "Consultation"}],
                 "extension": [{"url": extension_url("visit-minutes"), "valuePositiveInt": 20}]},
                {"text": "Follow-up"}
            ],
            "extension": [
                {"url": TIMEZONE_EXTENSION, "valueCode": "Europe/Berlin"},
                {"url": extension_url("booking-buffer-minutes"), "valueUnsignedInt": 5},
                {"url": extension_url("booking-horizon-days"), "valueUnsignedInt": 28}
            ]
        })
    }

    #[test]
    fn a_schedule_and_its_role_make_a_calendar() {
        let cal = calendar(&schedule(), Some(&role()), None).unwrap();
        assert_eq!(cal.practitioner.as_deref(), Some("Practitioner/p1"));
        assert_eq!(cal.claim_calendar(), "Practitioner/p1");
        assert_eq!(cal.location.as_deref(), Some("Location/l1"));
        assert_eq!(cal.organization.as_deref(), Some("Organization/o1"));
        assert_eq!(cal.visit_types.len(), 2);
        assert_eq!(cal.visit_types[0].minutes, 20);
        assert_eq!(cal.visit_types[1].minutes, DEFAULT_VISIT_MINUTES);
        assert!(cal.visit_types[0].concept.get("extension").is_none());
        assert!(
            cal.visit_type(Some("http://snomed.info/sct|11429006"))
                .unwrap()
                .is_some()
        );
        assert!(cal.visit_type(Some("follow-up")).unwrap().is_some());
        assert!(cal.visit_type(Some("nope")).is_err());
        assert_eq!(cal.buffer_minutes, 5);
        assert_eq!(cal.horizon_days, 28);
        // Sunday has no hours, so it is left out.
        assert_eq!(cal.hours.weekly.len(), 2);
        assert_eq!(cal.hours.weekly[1].end, None);
        // The holiday runs from the start of the 24th to the end of the 26th, Berlin time.
        let z = TimeZone::get("Europe/Berlin").unwrap();
        assert_eq!(
            cal.hours.closed,
            vec![Interval::new(
                parse_instant("2026-12-24T00:00:00+01:00", &z, false).unwrap(),
                parse_instant("2026-12-27T00:00:00+01:00", &z, false).unwrap()
            )]
        );
        assert_eq!(cal.hours.extra.len(), 1);
        let inactive = json!({"resourceType": "Schedule", "id": "x", "active": false});
        assert_eq!(
            calendar(&inactive, None, None).unwrap_err(),
            CalendarError::Inactive
        );
        let bad_zone = json!({"resourceType": "Schedule", "id": "x",
            "extension": [{"url": TIMEZONE_EXTENSION, "valueCode": "Mars/Olympus"}]});
        assert_eq!(
            calendar(&bad_zone, None, None).unwrap_err(),
            CalendarError::UnknownZone
        );
    }

    #[test]
    fn a_proposed_appointment_reads_back() {
        let cal = calendar(&schedule(), Some(&role()), None).unwrap();
        let offer = Offer {
            schedule: "s1".into(),
            visit: Interval::new(
                1_800_000_000_000_000,
                1_800_000_000_000_000 + 20 * 60_000_000,
            ),
            visit_type: Some(cal.visit_types[0].concept.clone()),
            slot: None,
        };
        let a = proposed_appointment(&cal, &offer, Some("pat1"));
        assert_eq!(a["status"], "proposed");
        assert_eq!(a["minutesDuration"], 20);
        assert_eq!(a["start"], "2027-01-15T08:00:00Z");
        let r = requested(&a).unwrap();
        assert_eq!(r.schedule, "s1");
        assert_eq!(r.visit, offer.visit);
        assert_eq!(r.patient.as_deref(), Some("pat1"));
        assert_eq!(r.service_type, offer.visit_type);
    }

    #[test]
    fn instants_in_their_variants() {
        let z = TimeZone::get("Europe/Berlin").unwrap();
        let utc = TimeZone::UTC;
        assert_eq!(
            parse_instant("2026-12-07T09:00:00+01:00", &utc, false),
            parse_instant("2026-12-07T08:00:00Z", &utc, false)
        );
        assert_eq!(
            parse_instant("2026-12-07T09:00:00", &z, false),
            parse_instant("2026-12-07T08:00:00Z", &utc, false)
        );
        assert_eq!(
            parse_instant("2026-12-07", &z, true),
            parse_instant("2026-12-07T23:00:00Z", &utc, false)
        );
        assert_eq!(
            parse_instant("2026-12", &utc, true),
            parse_instant("2027-01-01T00:00:00Z", &utc, false)
        );
        assert_eq!(parse_instant("yesterday", &utc, false), None);
        assert_eq!(format_instant(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            local_time("2026-12-07T08:00:00Z", Some("Europe/Berlin")),
            "Mon 2026-12-07 09:00 CET"
        );
        assert_eq!(
            local_time("2026-12-07T08:00:00Z", None),
            "Mon 2026-12-07 08:00 UTC"
        );
    }
}
