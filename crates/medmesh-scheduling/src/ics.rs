//! A user's appointments as an RFC 5545 calendar (icalendar), for their private feed.
//!
//! What each event says is the user's choice ([`FeedDetail`]): by default only that there is
//! an appointment and when (`busy`), so a feed that leaks names no one; with `detailed`, who
//! with, where and what kind of visit.

use chrono::{DateTime, Utc};
use icalendar::{Calendar, Component, Event, EventLike, EventStatus};
use medmesh_fhir::search::Handling;
use medmesh_kernel::RequestContext;
use medmesh_records::RecordError;
use serde_json::Value;

use crate::SchedulingService;
use crate::calendar::{format_instant, parse_utc};

/// Whose appointments a feed lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedOwner {
    /// A patient's (their id).
    Patient(String),
    /// A practitioner's (their id).
    Practitioner(String),
}

/// How far back a feed goes, days.
const FEED_PAST_DAYS: i64 = 30;
/// At most this many events in a feed.
const FEED_EVENTS: u32 = 500;

/// How much a feed shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedDetail {
    /// "Appointment" and the time.
    Busy,
    /// Who with, where, what kind of visit.
    Detailed,
}

impl FeedDetail {
    /// Reads `busy` or `detailed`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "busy" => Some(Self::Busy),
            "detailed" => Some(Self::Detailed),
            _ => None,
        }
    }
}

/// One appointment in a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEvent {
    /// The Appointment's id (the event's UID, with the node's host).
    pub id: String,
    /// Start, microseconds.
    pub start: i64,
    /// End, microseconds.
    pub end: i64,
    /// The Appointment's status.
    pub status: String,
    /// The title.
    pub summary: String,
    /// Where, when shown.
    pub location: Option<String>,
    /// A video visit's join link.
    pub url: Option<String>,
    /// More words, when shown.
    pub description: Option<String>,
    /// The Appointment's version (the event's SEQUENCE, so calendar apps take changes).
    pub version: i64,
    /// When it last changed, microseconds (DTSTAMP).
    pub updated: i64,
}

fn at(micros: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default()
}

/// The calendar named `name`, events' UIDs made unique with `host`.
pub fn calendar(name: &str, host: &str, events: &[FeedEvent]) -> String {
    let mut cal = Calendar::new();
    cal.name(name);
    for e in events {
        let status = match e.status.as_str() {
            "booked" | "arrived" | "checked-in" | "fulfilled" => EventStatus::Confirmed,
            "cancelled" | "noshow" | "entered-in-error" => EventStatus::Cancelled,
            _ => EventStatus::Tentative,
        };
        let mut event = Event::new();
        event
            .uid(&format!("{}@{host}", e.id))
            .summary(&e.summary)
            .starts(at(e.start))
            .ends(at(e.end))
            .status(status)
            .sequence(u32::try_from(e.version.max(1) - 1).unwrap_or(0))
            .timestamp(at(e.updated));
        if let Some(l) = &e.location {
            event.location(l);
        }
        if let Some(d) = &e.description {
            event.description(d);
        }
        if let Some(u) = &e.url {
            event.add_property("URL", u);
        }
        cal.push(event.done());
    }
    cal.done().to_string()
}

impl SchedulingService {
    /// The owner's appointments from 30 days ago on, as an RFC 5545 calendar, read with the
    /// feed's context (so the PDP decides and the audit log records the read). With
    /// [`FeedDetail::Busy`] an event says "Appointment" and nothing else; with
    /// [`FeedDetail::Detailed`] a patient's name the practitioner, the place and the visit
    /// type, a practitioner's the patient and the visit type.
    ///
    /// # Errors
    /// The PDP's refusals; store failures.
    pub async fn feed(
        &self,
        ctx: &RequestContext,
        owner: &FeedOwner,
        detail: FeedDetail,
        host: &str,
    ) -> Result<String, RecordError> {
        let since = self.records.core().now() - FEED_PAST_DAYS * 24 * 3_600_000_000;
        let mut params = vec![
            ("date".to_string(), format!("ge{}", format_instant(since))),
            ("_sort".to_string(), "date".to_string()),
            ("_count".to_string(), FEED_EVENTS.to_string()),
        ];
        params.push(match owner {
            FeedOwner::Patient(p) => ("patient".into(), p.clone()),
            FeedOwner::Practitioner(p) => ("actor".into(), format!("Practitioner/{p}")),
        });
        let bundle = self
            .records
            .search(ctx, "Appointment", &params, Handling::Lenient)
            .await?;
        let appointments: Vec<Value> = bundle
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|e| e.pointer("/search/mode").and_then(Value::as_str) != Some("include"))
            .filter_map(|e| e.get("resource").cloned())
            .collect();
        let mut names: std::collections::HashMap<String, Option<String>> = Default::default();
        let mut events = Vec::new();
        for a in appointments {
            let text = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or_default();
            let (Some(start), Some(end)) = (
                parse_utc(text("start"), false),
                parse_utc(text("end"), false),
            ) else {
                continue;
            };
            let mut summary = "Appointment".to_string();
            let mut location = None;
            let mut description = None;
            if detail == FeedDetail::Detailed {
                let wanted: &[&str] = match owner {
                    FeedOwner::Patient(_) => &["Practitioner/", "Location/"],
                    FeedOwner::Practitioner(_) => &["Patient/"],
                };
                let mut found = Vec::new();
                for r in a
                    .get("participant")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.pointer("/actor/reference").and_then(Value::as_str))
                    .filter(|r| wanted.iter().any(|w| r.starts_with(w)))
                {
                    if !names.contains_key(r) {
                        let name = self.name(ctx, r).await;
                        names.insert(r.to_string(), name);
                    }
                    if let Some(Some(n)) = names.get(r) {
                        found.push((
                            r.split('/').next().unwrap_or_default().to_string(),
                            n.clone(),
                        ));
                    }
                }
                let of = |t: &str| found.iter().find(|(k, _)| k == t).map(|(_, n)| n.clone());
                summary = match (of("Practitioner"), of("Patient")) {
                    (Some(p), _) => format!("Appointment with {p}"),
                    (None, Some(p)) => format!("Appointment: {p}"),
                    _ => summary,
                };
                location = of("Location");
                description = a
                    .pointer("/serviceType/0/text")
                    .or_else(|| a.pointer("/serviceType/0/coding/0/display"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            let url = crate::video::is_video_visit(&a).then(|| {
                let origin = self.reminders.as_ref().map_or_else(
                    || format!("https://{host}"),
                    |r| r.hub.node_url().to_string(),
                );
                format!("{origin}{}", crate::video::join_path(text("id")))
            });
            events.push(FeedEvent {
                url,
                id: text("id").to_string(),
                start,
                end,
                status: text("status").to_string(),
                summary,
                location,
                description,
                version: a
                    .pointer("/meta/versionId")
                    .and_then(Value::as_str)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1),
                updated: a
                    .pointer("/meta/lastUpdated")
                    .and_then(Value::as_str)
                    .and_then(|u| parse_utc(u, false))
                    .unwrap_or(start),
            });
        }
        Ok(calendar("Appointments", host, &events))
    }

    /// A participant's name, read with the feed's context; `None` when it cannot be read.
    async fn name(&self, ctx: &RequestContext, reference: &str) -> Option<String> {
        let (rt, id) = reference.split_once('/')?;
        let r = self.records.read(ctx, rt, id).await.ok()?.resource;
        match r.get("name") {
            // A Location's or an Organization's name is a string; a person's a HumanName.
            Some(Value::String(n)) => Some(n.clone()),
            _ => crate::directory::human_name(&r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_their_uid_times_status_and_sequence() {
        let text = calendar(
            "medmesh appointments",
            "node.example.org",
            &[FeedEvent {
                id: "a1".into(),
                start: 1_796_630_400_000_000,
                end: 1_796_631_600_000_000,
                status: "booked".into(),
                summary: "Appointment with Dr. Ana Ortega, Riverside; long words that must be folded at seventy-five octets".into(),
                location: Some("Riverside, Marienplatz 1".into()),
                url: Some("https://node.example.org/visits/a1".into()),
                description: None,
                version: 3,
                updated: 1_796_000_000_000_000,
            }],
        );
        assert!(text.starts_with("BEGIN:VCALENDAR\r\n"));
        assert!(text.contains("UID:a1@node.example.org\r\n"));
        assert!(text.contains("DTSTART:20261207T080000Z\r\n"), "{text}");
        assert!(text.contains("STATUS:CONFIRMED\r\n"));
        assert!(text.contains("SEQUENCE:2\r\n"));
        // RFC 5545: commas and semicolons escaped, lines folded at 75 octets.
        assert!(text.contains("LOCATION:Riverside\\, Marienplatz 1\r\n"));
        assert!(
            text.contains("URL:https://node.example.org/visits/a1\r\n"),
            "{text}"
        );
        assert!(text.lines().all(|l| l.len() <= 75), "{text}");
    }
}
