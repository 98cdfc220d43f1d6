//! What an administrator sets up for a bookable calendar, as the FHIR resources that carry
//! it (see [`crate::calendar`]): the PractitionerRole's weekly hours and closed periods, and
//! the Schedule's visit type, buffer, horizon and time zone. Writing them is the caller's,
//! through the record service.

use serde_json::{Value, json};

use crate::calendar::{TIMEZONE_EXTENSION, extension_url};

/// A calendar's setup, as the admin page's form has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSetup {
    /// The practitioner's id.
    pub practitioner: String,
    /// The organization's id, if any.
    pub organization: Option<String>,
    /// The location's id, if any.
    pub location: Option<String>,
    /// Open days (`mon` ... `sun`).
    pub days: Vec<String>,
    /// Opening time, `HH:MM`.
    pub opens: String,
    /// Closing time, `HH:MM`.
    pub closes: String,
    /// The visit type's name.
    pub visit_name: String,
    /// Its length, minutes.
    pub visit_minutes: u32,
    /// Buffer after each visit, minutes.
    pub buffer_minutes: u32,
    /// How many days ahead it may be booked.
    pub horizon_days: u32,
    /// An IANA time zone.
    pub zone: String,
}

/// Why a setup cannot be saved; the text names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(pub &'static str);

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn time_of_day(s: &str) -> Option<String> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u8, u8) = (h.parse().ok()?, m.get(..2)?.parse().ok()?);
    (h < 24 && m < 60).then(|| format!("{h:02}:{m:02}:00"))
}

/// The ids the setup's resources get: one role and one schedule per practitioner.
pub fn ids(practitioner: &str) -> (String, String) {
    (
        format!("booking-{practitioner}"),
        format!("booking-{practitioner}"),
    )
}

impl ScheduleSetup {
    /// The PractitionerRole and Schedule, merged into the current role (whose closed and
    /// extra periods are kept) when there is one.
    ///
    /// # Errors
    /// [`SetupError`] naming what is wrong.
    pub fn resources(&self, current_role: Option<&Value>) -> Result<(Value, Value), SetupError> {
        if self.days.is_empty() || self.days.iter().any(|d| !DAYS.contains(&d.as_str())) {
            return Err(SetupError("days"));
        }
        let opens = time_of_day(&self.opens).ok_or(SetupError("opens"))?;
        let closes = time_of_day(&self.closes).ok_or(SetupError("closes"))?;
        if closes <= opens {
            return Err(SetupError("closes"));
        }
        if !(5..=480).contains(&self.visit_minutes) {
            return Err(SetupError("visit_minutes"));
        }
        if self.buffer_minutes > 120 {
            return Err(SetupError("buffer_minutes"));
        }
        if !(1..=366).contains(&self.horizon_days) {
            return Err(SetupError("horizon_days"));
        }
        if jiff::tz::TimeZone::get(&self.zone).is_err() {
            return Err(SetupError("zone"));
        }
        let name = self.visit_name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(SetupError("visit_name"));
        }
        let (role_id, schedule_id) = ids(&self.practitioner);
        let mut role = current_role.cloned().unwrap_or_else(|| json!({}));
        if let Some(m) = role.as_object_mut() {
            m.remove("meta");
        }
        role["resourceType"] = json!("PractitionerRole");
        role["id"] = json!(role_id);
        role["active"] = json!(true);
        role["practitioner"] = json!({"reference": format!("Practitioner/{}", self.practitioner)});
        match &self.organization {
            Some(o) => role["organization"] = json!({"reference": format!("Organization/{o}")}),
            None => {
                if let Some(m) = role.as_object_mut() {
                    m.remove("organization");
                }
            }
        }
        match &self.location {
            Some(l) => role["location"] = json!([{"reference": format!("Location/{l}")}]),
            None => {
                if let Some(m) = role.as_object_mut() {
                    m.remove("location");
                }
            }
        }
        role["availableTime"] = json!([{
            "daysOfWeek": self.days,
            "availableStartTime": opens,
            "availableEndTime": closes,
        }]);
        let mut actors = vec![json!({"reference": format!("PractitionerRole/{role_id}")})];
        if let Some(l) = &self.location {
            actors.push(json!({"reference": format!("Location/{l}")}));
        }
        let schedule = json!({
            "resourceType": "Schedule",
            "id": schedule_id,
            "active": true,
            "actor": actors,
            "serviceType": [{
                "text": name,
                "extension": [{"url": extension_url("visit-minutes"), "valuePositiveInt": self.visit_minutes}],
            }],
            "extension": [
                {"url": TIMEZONE_EXTENSION, "valueCode": self.zone},
                {"url": extension_url("booking-buffer-minutes"), "valueUnsignedInt": self.buffer_minutes},
                {"url": extension_url("booking-horizon-days"), "valueUnsignedInt": self.horizon_days},
            ],
        });
        Ok((role, schedule))
    }
}

/// The role with one more closed period (`from` and `to` FHIR dates or date-times, both
/// days included), described in words.
///
/// # Errors
/// [`SetupError`] for dates that are not dates, or in the wrong order.
pub fn with_closure(role: &Value, from: &str, to: &str, why: &str) -> Result<Value, SetupError> {
    let utc = jiff::tz::TimeZone::UTC;
    let start = crate::calendar::parse_instant(from, &utc, false).ok_or(SetupError("from"))?;
    let end = crate::calendar::parse_instant(to, &utc, true).ok_or(SetupError("to"))?;
    if end <= start {
        return Err(SetupError("to"));
    }
    let mut role = role.clone();
    if let Some(m) = role.as_object_mut() {
        m.remove("meta");
    }
    let closure = json!({
        "description": if why.trim().is_empty() { "Closed" } else { why.trim() },
        "during": {"start": from, "end": to},
    });
    match role.get_mut("notAvailable").and_then(Value::as_array_mut) {
        Some(list) => list.push(closure),
        None => role["notAvailable"] = json!([closure]),
    }
    Ok(role)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::calendar;

    fn setup() -> ScheduleSetup {
        ScheduleSetup {
            practitioner: "p1".into(),
            organization: Some("o1".into()),
            location: Some("l1".into()),
            days: vec!["mon".into(), "wed".into()],
            opens: "8:30".into(),
            closes: "12:00".into(),
            visit_name: "Consultation".into(),
            visit_minutes: 15,
            buffer_minutes: 5,
            horizon_days: 30,
            zone: "Europe/Paris".into(),
        }
    }

    #[test]
    fn a_setup_reads_back_as_a_calendar() {
        let (role, schedule) = setup().resources(None).unwrap();
        let cal = calendar(&schedule, Some(&role), None).unwrap();
        assert_eq!(cal.practitioner.as_deref(), Some("Practitioner/p1"));
        assert_eq!(cal.visit_types[0].minutes, 15);
        assert_eq!(cal.buffer_minutes, 5);
        assert_eq!(cal.horizon_days, 30);
        assert_eq!(cal.hours.weekly.len(), 1);
        assert_eq!(cal.hours.zone.iana_name(), Some("Europe/Paris"));
        // A closure added later is kept when the hours change.
        let closed = with_closure(&role, "2026-12-24", "2026-12-26", "Christmas").unwrap();
        let (again, _) = setup().resources(Some(&closed)).unwrap();
        assert_eq!(again["notAvailable"][0]["description"], "Christmas");
        let cal = calendar(&schedule, Some(&again), None).unwrap();
        assert_eq!(cal.hours.closed.len(), 1);
    }

    #[test]
    fn bad_setups_name_their_field() {
        let bad = |f: fn(&mut ScheduleSetup)| {
            let mut s = setup();
            f(&mut s);
            s.resources(None).unwrap_err().0
        };
        assert_eq!(bad(|s| s.days = vec![]), "days");
        assert_eq!(bad(|s| s.days = vec!["someday".into()]), "days");
        assert_eq!(bad(|s| s.opens = "25:00".into()), "opens");
        assert_eq!(bad(|s| s.closes = "08:00".into()), "closes");
        assert_eq!(bad(|s| s.visit_minutes = 0), "visit_minutes");
        assert_eq!(bad(|s| s.zone = "Atlantis/Capital".into()), "zone");
        assert_eq!(
            with_closure(&json!({}), "2026-12-26", "2026-12-24", "")
                .unwrap_err()
                .0,
            "to"
        );
    }
}
