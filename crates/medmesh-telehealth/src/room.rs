//! A video visit's rules, with no I/O: which appointments are video visits, when their room
//! is open and to whom, the TURN credentials a browser is given, and the Encounter that
//! records the visit.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

pub use medmesh_scheduling::video::{ACT_CODE, VIRTUAL, is_video_visit};

/// The room opens this long before the appointment's start, microseconds (10 minutes).
pub const OPENS_BEFORE: i64 = 10 * 60 * 1_000_000;
/// The room stays open this long after the appointment's end, microseconds (30 minutes):
/// a visit that runs over is not cut off.
pub const CLOSES_AFTER: i64 = 30 * 60 * 1_000_000;

/// Why a room is not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Closed {
    /// Not a video visit.
    #[error("this appointment is not a video visit")]
    NotVideo,
    /// Cancelled, or otherwise not to take place.
    #[error("this appointment will not take place")]
    NotBooked,
    /// Too early: it opens at this time (microseconds).
    #[error("the room opens ten minutes before the visit")]
    TooEarly(i64),
    /// Over.
    #[error("this visit is over")]
    Over,
}

/// When the room of `appointment` opens and closes (microseconds).
pub fn window(appointment: &Value) -> Option<(i64, i64)> {
    let at = |k: &str| {
        appointment[k]
            .as_str()
            .and_then(medmesh_fhir::datetime::parse_range)
    };
    let start = at("start")?.lo;
    let end = at("end").map_or(start, |e| e.lo);
    Some((start - OPENS_BEFORE, end + CLOSES_AFTER))
}

/// Whether the room of `appointment` is open at `now`.
///
/// # Errors
/// Why not.
pub fn check_open(appointment: &Value, now: i64) -> Result<(), Closed> {
    if !is_video_visit(appointment) {
        return Err(Closed::NotVideo);
    }
    if !matches!(
        appointment["status"].as_str(),
        Some("booked" | "arrived" | "checked-in" | "fulfilled")
    ) {
        return Err(Closed::NotBooked);
    }
    let (opens, closes) = window(appointment).ok_or(Closed::NotBooked)?;
    if now < opens {
        return Err(Closed::TooEarly(opens));
    }
    if now > closes {
        return Err(Closed::Over);
    }
    Ok(())
}

/// The appointment's people who have not declined: its patient, and its practitioners.
pub fn people(appointment: &Value) -> (Option<String>, Vec<String>) {
    let actors: Vec<String> = appointment["participant"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["status"] != "declined")
        .filter_map(|p| p["actor"]["reference"].as_str().map(str::to_string))
        .collect();
    let patient = actors
        .iter()
        .find_map(|a| a.strip_prefix("Patient/"))
        .map(str::to_string);
    let practitioners = actors
        .into_iter()
        .filter(|a| a.starts_with("Practitioner/"))
        .collect();
    (patient, practitioners)
}

/// TURN credentials in the TURN REST API scheme (draft-uberti-behave-turn-rest, as coturn's
/// `use-auth-secret` checks them): the user name is `<expiry>:<user>` and the password is
/// base64(HMAC-SHA1(secret, user name)). `user` must name no one (a random id): the TURN
/// server logs it.
pub fn turn_credentials(
    secret: &str,
    user: &str,
    ttl_secs: u64,
    now_secs: i64,
) -> (String, String) {
    let expiry = now_secs.saturating_add(i64::try_from(ttl_secs).unwrap_or(i64::MAX));
    let username = format!("{expiry}:{user}");
    let password = match hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(username.as_bytes());
            STANDARD.encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length: this does not happen.
        Err(_) => String::new(),
    };
    (username, password)
}

/// The Encounter of a visit that began at `start` (a FHIR instant).
pub fn encounter(
    id: &str,
    appointment: &str,
    patient: &str,
    practitioners: &[String],
    start: &str,
) -> Value {
    json!({
        "resourceType": "Encounter",
        "id": id,
        "status": "in-progress",
        "class": {"system": ACT_CODE, "code": VIRTUAL, "display": "virtual"},
        "subject": {"reference": format!("Patient/{patient}")},
        "participant": practitioners.iter().map(|p| json!({"individual": {"reference": p}})).collect::<Vec<_>>(),
        "appointment": [{"reference": format!("Appointment/{appointment}")}],
        "period": {"start": start},
    })
}

/// `encounter`, finished at `end` with `practitioners` (everyone who took part).
pub fn finished(mut encounter: Value, practitioners: &[String], end: &str) -> Value {
    encounter["status"] = json!("finished");
    encounter["period"]["end"] = json!(end);
    encounter["participant"] = practitioners
        .iter()
        .map(|p| json!({"individual": {"reference": p}}))
        .collect::<Vec<_>>()
        .into();
    if let Some(m) = encounter.as_object_mut() {
        m.remove("meta");
    }
    encounter
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visit() -> Value {
        json!({"resourceType": "Appointment", "status": "booked",
            "appointmentType": {"coding": [{"system": ACT_CODE, "code": "VR"}]},
            "start": "2026-12-07T09:00:00Z", "end": "2026-12-07T09:20:00Z",
            "participant": [
                {"actor": {"reference": "Patient/p"}, "status": "accepted"},
                {"actor": {"reference": "Practitioner/a"}, "status": "accepted"},
                {"actor": {"reference": "Practitioner/no"}, "status": "declined"},
                {"actor": {"reference": "Location/room"}, "status": "accepted"}]})
    }

    fn at(s: &str) -> i64 {
        medmesh_fhir::datetime::parse_range(s).unwrap().lo
    }

    #[test]
    fn the_room_opens_ten_minutes_before_and_closes_after() {
        let v = visit();
        assert_eq!(
            check_open(&v, at("2026-12-07T08:49:59Z")),
            Err(Closed::TooEarly(at("2026-12-07T08:50:00Z")))
        );
        assert_eq!(check_open(&v, at("2026-12-07T08:50:00Z")), Ok(()));
        assert_eq!(check_open(&v, at("2026-12-07T09:49:00Z")), Ok(()));
        assert_eq!(
            check_open(&v, at("2026-12-07T09:51:00Z")),
            Err(Closed::Over)
        );
        let mut cancelled = v.clone();
        cancelled["status"] = json!("cancelled");
        assert_eq!(
            check_open(&cancelled, at("2026-12-07T09:00:00Z")),
            Err(Closed::NotBooked)
        );
        let mut in_person = v;
        in_person["appointmentType"] = json!({"coding": [{"system": ACT_CODE, "code": "AMB"}]});
        assert_eq!(
            check_open(&in_person, at("2026-12-07T09:00:00Z")),
            Err(Closed::NotVideo)
        );
    }

    #[test]
    fn its_people_are_the_patient_and_the_practitioners_who_did_not_decline() {
        assert_eq!(
            people(&visit()),
            (Some("p".into()), vec!["Practitioner/a".into()])
        );
    }

    #[test]
    fn turn_credentials_follow_the_rest_api_scheme() {
        // HMAC-SHA1 over "<expiry>:<user>" (draft-uberti-behave-turn-rest-00, section 2.2),
        // against the value openssl computes:
        // printf '1700000600:u1' | openssl dgst -sha1 -hmac secret -binary | base64
        let (user, pass) = turn_credentials("secret", "u1", 600, 1_700_000_000);
        assert_eq!(user, "1700000600:u1");
        assert_eq!(pass, "YJTCb6Wg7JVOc530Yb6Nlt1E/mM=");
    }

    #[test]
    fn the_encounter_is_virtual_and_finishes_with_everyone_who_took_part() {
        let e = encounter(
            "e",
            "a",
            "p",
            &["Practitioner/a".into()],
            "2026-12-07T09:01:00Z",
        );
        assert_eq!(e["class"]["code"], "VR");
        let f = finished(
            e,
            &["Practitioner/a".into(), "Practitioner/b".into()],
            "2026-12-07T09:19:00Z",
        );
        assert_eq!(f["status"], "finished");
        assert_eq!(f["period"]["end"], "2026-12-07T09:19:00Z");
        assert_eq!(f["participant"].as_array().unwrap().len(), 2);
    }
}
