//! Appointments: who can be booked, when, and booking without double-booking.
//!
//! Free time is computed from each Schedule's rules ([`calendar`]) and the time already
//! claimed ([`availability`]), never from rows made in advance. Booking follows IHE ITI
//! Scheduling for R4: [`SchedulingService::find`] proposes appointments (ITI-115),
//! [`SchedulingService::hold`] holds one for a few minutes (ITI-116) and
//! [`SchedulingService::book`] books it (ITI-117), with `Appointment.slot` filled.
//!
//! Every write goes through the record core, so the PDP decides (a patient books only for
//! themself, a practitioner for patients in their reach), the Appointment is sealed and the
//! audit entry commits with it. The time itself is claimed in the same transaction
//! ([`medmesh_store::BookingTx`]), which is what makes two bookings of one hour impossible,
//! on one node or on several over one database.

pub mod availability;
pub mod calendar;
pub mod decoded;
pub mod directory;
pub mod ics;
pub mod setup;
pub mod video;
pub mod waitlist;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use medmesh_audit::Outcome;
use medmesh_fhir::outcome::{Issue, IssueType};
use medmesh_fhir::search::{Handling, parse_query};
use medmesh_kernel::RequestContext;
use medmesh_notifications::{Category, Notice, NotificationHub, Recipient};
use medmesh_policy::{Action, Pdp};
use medmesh_records::{RecordError, RecordService};
use medmesh_store::{BookingStore, PageRequest, ResourceStore, TimeClaim, VersionHead};
use serde_json::{Value, json};

use crate::availability::{Interval, MINUTE, VisitShape, merge, offerable, visit_starts};
use crate::calendar::{
    Calendar, Offer, Requested, WrittenSlot, calendar, concept_matches, extension_flag,
    extension_url, format_instant, hold_extension_url, proposed_appointment, requested,
    schedule_actors, written_slot,
};

/// At most this many calendars are looked at in one search.
pub const MAX_CALENDARS: u32 = 1000;
/// At most this many proposals are answered.
pub const MAX_PROPOSALS: usize = 500;
/// The longest window one `$find` looks at, days.
pub const MAX_FIND_DAYS: i64 = 366;

/// What `$find` looks for.
#[derive(Debug, Clone, Default)]
pub struct FindRequest {
    /// From, microseconds (default: now).
    pub start: Option<i64>,
    /// To, microseconds (default: each calendar's horizon).
    pub end: Option<i64>,
    /// Practitioners (`Practitioner/x` or `x`).
    pub practitioners: Vec<String>,
    /// Specialty tokens (`code` or `system|code`).
    pub specialties: Vec<String>,
    /// Visit-type tokens.
    pub visit_types: Vec<String>,
    /// Locations (`Location/l` or `l`).
    pub locations: Vec<String>,
    /// Organizations (`Organization/o` or `o`).
    pub organizations: Vec<String>,
    /// Schedules (`Schedule/s` or `s`).
    pub schedules: Vec<String>,
    /// The patient it is for, whose reference the proposals carry.
    pub patient: Option<String>,
    /// At most this many proposals (capped at [`MAX_PROPOSALS`]).
    pub limit: usize,
    /// At most this many proposals from one calendar (0: no limit of its own).
    pub per_calendar: usize,
}

/// Per organization, how booking works (extensions on the Organization).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BookingOptions {
    /// A booking waits for staff approval (`booking-approval`).
    pub approval: bool,
    /// At most one booking per patient per day (`booking-one-per-day`).
    pub one_per_day: bool,
    /// A waiting list, offered freed times (`booking-waitlist`).
    pub waitlist: bool,
}

impl BookingOptions {
    /// Reads them from an Organization.
    pub fn of(organization: &Value) -> Self {
        Self {
            approval: extension_flag(organization, "booking-approval"),
            one_per_day: extension_flag(organization, "booking-one-per-day"),
            waitlist: extension_flag(organization, "booking-waitlist"),
        }
    }
}

/// What a staff member does to an appointment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffAction {
    /// Confirms a booking that waited for approval.
    Approve,
    /// Refuses it (the time is freed).
    Decline,
    /// The patient arrived.
    Arrived,
    /// The patient did not come.
    NoShow,
    /// The visit took place.
    Fulfilled,
}

impl StaffAction {
    /// Parses `approve`, `decline`, `arrived`, `noshow`, `fulfilled`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "approve" => Self::Approve,
            "decline" => Self::Decline,
            "arrived" => Self::Arrived,
            "noshow" | "no-show" => Self::NoShow,
            "fulfilled" => Self::Fulfilled,
            _ => return None,
        })
    }
}

/// Reminders of booked appointments: who tells, and how long before.
#[derive(Clone)]
pub struct Reminders {
    /// The hub that tells them.
    pub hub: Arc<NotificationHub>,
    /// How long before the start, each (default 24 hours and 2 hours), microseconds.
    pub before: Vec<i64>,
    /// The node's name, in the texts.
    pub node_name: String,
}

/// Who works as a practitioner: the accounts to tell of requests for them. An adapter over
/// the identity store (the binary's).
#[async_trait::async_trait]
pub trait StaffDirectory: Send + Sync + 'static {
    /// The user ids of the accounts of `Practitioner/<practitioner>`.
    async fn accounts_of(&self, practitioner: &str) -> Vec<String>;
}

/// The default reminder offsets: 24 hours and 2 hours before.
pub const DEFAULT_REMINDERS: [i64; 2] = [24 * 60 * MINUTE, 2 * 60 * MINUTE];

/// How a reminder offset reads: "24 hours", "2 hours", "30 minutes", "45 seconds".
fn offset_words(micros: i64) -> String {
    let secs = micros / 1_000_000;
    let (n, unit) = if secs % 3600 == 0 {
        (secs / 3600, "hour")
    } else if secs % 60 == 0 {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// Appointments on the record service.
pub struct SchedulingService {
    records: Arc<RecordService>,
    resources: Arc<dyn ResourceStore>,
    bookings: Arc<dyn BookingStore>,
    hold_minutes: u32,
    /// How long a waiting-list offer is held, microseconds.
    offer_micros: i64,
    reminders: Option<Reminders>,
    staff: Option<Arc<dyn StaffDirectory>>,
    /// Directory resources as last decoded (`decoded`): read from the store on every call,
    /// opened and parsed only when their version is new.
    decoded: decoded::DecodedDirectory,
    /// Calendars compiled from those bodies (`decoded::CompiledCalendars`).
    compiled: decoded::CompiledCalendars,
}

impl std::fmt::Debug for SchedulingService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulingService")
            .field("hold_minutes", &self.hold_minutes)
            .finish_non_exhaustive()
    }
}

/// A request that breaks a scheduling rule (a time not offered, no waiting list here): 422,
/// with the Appointment as the issue's place.
fn invalid(why: &str) -> RecordError {
    let mut issue = Issue::error(IssueType::Invalid, why);
    issue.expression = Some("Appointment".into());
    RecordError::Invalid(vec![issue])
}

fn unavailable() -> RecordError {
    RecordError::Conflict("the appointment is no longer available".into())
}

fn bare<'a>(reference: &'a str, rt: &str) -> &'a str {
    reference
        .strip_prefix(rt)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(reference)
}

/// An offer checked again before it is held or booked.
struct Checked {
    /// Its calendar.
    cal: Arc<Calendar>,
    /// The visit's shape.
    shape: VisitShape,
    /// The written Slot it fills, if any.
    slot_body: Option<Value>,
    /// The visit type, as the calendar names it.
    visit_type: Option<Value>,
}

/// A calendar with what the search found around it.
struct Found {
    cal: Arc<Calendar>,
    slots: Vec<WrittenSlot>,
}

impl SchedulingService {
    /// The service over the record service, its store, and the claimed-time store. Holds
    /// last `hold_minutes`.
    pub fn new(
        records: Arc<RecordService>,
        resources: Arc<dyn ResourceStore>,
        bookings: Arc<dyn BookingStore>,
        hold_minutes: u32,
    ) -> Self {
        Self {
            records,
            resources,
            bookings,
            hold_minutes: hold_minutes.clamp(1, 60),
            offer_micros: waitlist::OFFER_MINUTES * MINUTE,
            reminders: None,
            staff: None,
            decoded: decoded::DecodedDirectory::default(),
            compiled: decoded::CompiledCalendars::default(),
        }
    }

    /// Holds a freed time offered from the waiting list for `seconds` (at least one) instead
    /// of [`waitlist::OFFER_MINUTES`].
    #[must_use]
    pub fn with_offer_hold(mut self, seconds: u64) -> Self {
        self.offer_micros =
            i64::try_from(seconds.max(1)).unwrap_or(i64::MAX / 2_000_000) * 1_000_000;
        self
    }

    /// Tells practitioners' accounts (in their staff inbox, or as they chose) of requests
    /// awaiting their approval and of patients' cancellations, through the reminders' hub.
    #[must_use]
    pub fn with_staff(mut self, staff: Arc<dyn StaffDirectory>) -> Self {
        self.staff = Some(staff);
        self
    }

    /// Notices for the accounts of the practitioner an appointment is with, as outbox rows
    /// due now, to queue in the appointment's transaction (`request`: a booking awaits
    /// approval; else a patient cancelled). Their words name no patient or time.
    async fn prepare_staff_notices(
        &self,
        appointment: &Value,
        id: &str,
        request: bool,
    ) -> Result<Vec<medmesh_store::NotificationOutboxRow>, RecordError> {
        let (Some(r), Some(staff)) = (&self.reminders, &self.staff) else {
            return Ok(Vec::new());
        };
        let Some(practitioner) = appointment
            .get("participant")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.pointer("/actor/reference").and_then(Value::as_str))
            .find_map(|a| a.strip_prefix("Practitioner/"))
        else {
            return Ok(Vec::new());
        };
        let (event, subject) = if request {
            (
                format!("appointment-request:{id}"),
                format!("A booking request awaits your approval at {}", r.node_name),
            )
        } else {
            (
                format!("appointment-cancelled:{id}"),
                format!("A patient cancelled an appointment at {}", r.node_name),
            )
        };
        let notice = Notice {
            category: Category::Appointments,
            event,
            subject,
            body: format!(
                "Sign in at {} and open your calendar to see it.",
                r.node_name
            ),
        };
        let now = self.records.core().now();
        let mut rows = Vec::new();
        for account in staff.accounts_of(practitioner).await {
            rows.push(
                r.hub
                    .prepare_scheduled(&Recipient::Account(account), &notice, now)
                    .await
                    .map_err(|_| {
                        RecordError::NotSupported("notifications are unavailable".into())
                    })?,
            );
        }
        Ok(rows)
    }

    /// Reminds patients of their booked appointments through `reminders.hub`.
    #[must_use]
    pub fn with_reminders(mut self, reminders: Reminders) -> Self {
        self.reminders = Some(reminders);
        self
    }

    /// The reminders of a booked appointment starting at `start`, as outbox rows to queue
    /// in its transaction: one per offset still ahead at `now`. Their texts name no time,
    /// practitioner or place: only that there is an appointment, and where to sign in.
    async fn prepare_reminders(
        &self,
        id: &str,
        patient: &str,
        (start, video): (i64, bool),
        now: i64,
    ) -> Result<Vec<medmesh_store::NotificationOutboxRow>, RecordError> {
        let Some(r) = &self.reminders else {
            return Ok(Vec::new());
        };
        let who = Recipient::Patient(patient.to_string());
        let mut rows = Vec::new();
        for before in &r.before {
            let due = start - before;
            if due <= now {
                continue;
            }
            let words = offset_words(*before);
            // A video visit's reminder carries its join link (the appointment's id only).
            let body = if video {
                format!(
                    "You have a video visit in {words}. Join it at {}{} (the room opens ten minutes before); sign in at {} to move it or cancel it.",
                    r.hub.node_url(),
                    crate::video::join_path(id),
                    r.node_name
                )
            } else {
                format!(
                    "You have an appointment in {words}. Sign in at {} to see it, move it or cancel it.",
                    r.node_name
                )
            };
            let notice = Notice {
                category: Category::Appointments,
                event: format!("appointment:{id}:{start}:{before}"),
                subject: format!("Appointment reminder from {}", r.node_name),
                body,
            };
            rows.push(
                r.hub
                    .prepare_scheduled(&who, &notice, due)
                    .await
                    .map_err(|_| RecordError::NotSupported("reminders are unavailable".into()))?,
            );
        }
        Ok(rows)
    }

    /// Withdraws an appointment's queued reminders, and queues `rows`, in `tx`. A `new`
    /// appointment (an id just made) has none to withdraw, and the statement is spared.
    async fn replace_reminders(
        &self,
        tx: &mut medmesh_at_rest::WriteTx,
        id: &str,
        patient: &str,
        rows: &[medmesh_store::NotificationOutboxRow],
        new: bool,
    ) -> Result<(), RecordError> {
        if self.reminders.is_none() {
            return Ok(());
        }
        if !new {
            let (account, prefix) = NotificationHub::scheduled_prefix(
                &Recipient::Patient(patient.to_string()),
                &format!("appointment:{id}:"),
            );
            tx.withdraw_notifications(&account, &prefix).await?;
        }
        for row in rows {
            tx.queue_notification(row).await?;
        }
        Ok(())
    }

    /// Reads the current versions of resources (directory data: no patient in them).
    pub(crate) async fn read_directory(
        &self,
        keys: Vec<(String, String)>,
    ) -> Result<HashMap<String, Arc<Value>>, RecordError> {
        let mut out = HashMap::new();
        if keys.is_empty() {
            return Ok(out);
        }
        for v in self.resources.read_many(&keys).await? {
            let (key, body) = self.decode_directory(&v).await?;
            out.insert(key, body);
        }
        Ok(out)
    }

    pub(crate) async fn search_directory(
        &self,
        rt: &str,
        params: Vec<(String, String)>,
    ) -> Result<Vec<Arc<Value>>, RecordError> {
        let core = self.records.core();
        let mut q = parse_query(core.definitions(), rt, &params, Handling::Strict)?;
        core.blind(&mut q)?;
        let page = PageRequest {
            count: MAX_CALENDARS,
            cursor: None,
            with_total: false,
            snapshot: false,
        };
        let found = self.resources.search(&q, &page).await?;
        let mut out = Vec::with_capacity(found.matches.len());
        for v in self.resources.read_many(&found.matches).await? {
            out.push(self.decode_directory(&v).await?.1);
        }
        Ok(out)
    }

    /// A directory resource's body and its `Type/id`: decoded once per version
    /// ([`decoded::DecodedDirectory`]).
    async fn decode_directory(
        &self,
        v: &medmesh_store::StoredVersion,
    ) -> Result<(String, Arc<Value>), RecordError> {
        let key = format!("{}/{}", v.resource_type, v.id);
        if let Some(body) = self.decoded.get(&key, v.version) {
            return Ok((key, body));
        }
        let body = Arc::new(self.records.core().decode(v).await?);
        self.decoded.put(key.clone(), v.version, Arc::clone(&body));
        Ok((key, body))
    }

    /// The calendars of these Schedules (inactive and unreadable ones left out), with the
    /// Slots written on them in `window`.
    async fn calendars(
        &self,
        schedules: Vec<Arc<Value>>,
        window: Option<Interval>,
    ) -> Result<Vec<Found>, RecordError> {
        let mut wanted = Vec::new();
        for s in &schedules {
            for a in schedule_actors(s) {
                if let Some((rt, id)) = a.split_once('/')
                    && matches!(rt, "PractitionerRole" | "Location")
                {
                    wanted.push((rt.to_string(), id.to_string()));
                }
            }
        }
        wanted.sort();
        wanted.dedup();
        let around = self.read_directory(wanted).await?;
        let mut out = Vec::new();
        for s in &schedules {
            let actors = schedule_actors(s);
            let find = |t: &str| {
                actors
                    .iter()
                    .find(|a| a.starts_with(&format!("{t}/")))
                    .and_then(|a| around.get(a))
            };
            let (role, location) = (find("PractitionerRole"), find("Location"));
            let key = format!(
                "Schedule/{}",
                s.get("id").and_then(Value::as_str).unwrap_or_default()
            );
            if let Some(cal) = self.compiled.get(&key, [Some(s), role, location]) {
                out.push(Found {
                    cal,
                    slots: Vec::new(),
                });
                continue;
            }
            match calendar(s, role.map(|r| &**r), location.map(|l| &**l)) {
                Ok(cal) => {
                    let cal = Arc::new(cal);
                    self.compiled.put(
                        key,
                        [Some(Arc::clone(s)), role.cloned(), location.cloned()],
                        Arc::clone(&cal),
                    );
                    out.push(Found {
                        cal,
                        slots: Vec::new(),
                    });
                }
                Err(e) => tracing::debug!(error = %e, "schedule not bookable"),
            }
        }
        if let (Some(w), false) = (window, out.is_empty()) {
            let list: Vec<String> = out
                .iter()
                .map(|f| format!("Schedule/{}", f.cal.schedule))
                .collect();
            // Slots are searched by start: one that began up to a day before still counts.
            // A search takes at most 100 values of one parameter: the schedules go in
            // groups.
            let mut slots = Vec::new();
            for group in list.chunks(100) {
                slots.extend(
                    self.search_directory(
                        "Slot",
                        vec![
                            ("schedule".into(), group.join(",")),
                            (
                                "start".into(),
                                format!("ge{}", format_instant(w.start - 24 * 60 * MINUTE)),
                            ),
                            ("start".into(), format!("lt{}", format_instant(w.end))),
                        ],
                    )
                    .await?,
                );
            }
            let mut by_schedule: HashMap<String, Vec<WrittenSlot>> = HashMap::new();
            for s in &slots {
                // Slots this service wrote for its own bookings are covered by the claims.
                if extension_flag(s, "booking-slot") {
                    continue;
                }
                let schedule = s
                    .pointer("/schedule/reference")
                    .and_then(Value::as_str)
                    .map(|r| bare(r, "Schedule").to_string());
                if let (Some(sched), Some(ws)) = (schedule, written_slot(s)) {
                    by_schedule.entry(sched).or_default().push(ws);
                }
            }
            for f in &mut out {
                f.slots = by_schedule.remove(&f.cal.schedule).unwrap_or_default();
            }
        }
        Ok(out)
    }

    /// Live claimed time per calendar in `window`.
    async fn claimed(
        &self,
        calendars: Vec<String>,
        window: Interval,
        now: i64,
    ) -> Result<HashMap<String, Vec<Interval>>, RecordError> {
        let mut calendars = calendars;
        calendars.sort();
        calendars.dedup();
        let mut out: HashMap<String, Vec<Interval>> = HashMap::new();
        for c in self
            .bookings
            .claimed_time(&calendars, window.start, window.end, now)
            .await?
        {
            out.entry(c.calendar)
                .or_default()
                .push(Interval::new(c.start_micros, c.end_micros));
        }
        Ok(out)
    }

    /// Proposes appointments (ITI-115): free visits on every calendar that matches, soonest
    /// first. Proposals are not stored; each carries its Schedule, so `$hold` and `$book`
    /// can check it again.
    ///
    /// # Errors
    /// [`RecordError::Forbidden`] without a scope for schedules; [`RecordError::Invalid`]
    /// for a bad window.
    pub async fn find(
        &self,
        ctx: &RequestContext,
        req: &FindRequest,
    ) -> Result<Vec<Value>, RecordError> {
        let core = self.records.core();
        core.authorize(ctx, Action::Search, Some("Schedule"))
            .await?;
        let now = core.now();
        let start = req.start.unwrap_or(now).max(now);
        let end = req
            .end
            .unwrap_or(start + MAX_FIND_DAYS * 24 * 60 * MINUTE)
            .min(start + MAX_FIND_DAYS * 24 * 60 * MINUTE);
        if req.end.is_some_and(|e| e <= req.start.unwrap_or(now)) {
            return Err(invalid("end must be after start"));
        }
        let mut params = vec![("active".to_string(), "true".to_string())];
        if !req.schedules.is_empty() {
            let ids: Vec<&str> = req.schedules.iter().map(|s| bare(s, "Schedule")).collect();
            params.push(("_id".into(), ids.join(",")));
        }
        if !req.specialties.is_empty() {
            params.push(("specialty".into(), req.specialties.join(",")));
        }
        let schedules = self.search_directory("Schedule", params).await?;
        let window = Interval::new(start, end);
        let found = self.calendars(schedules, Some(window)).await?;
        let practitioners: Vec<String> = req
            .practitioners
            .iter()
            .map(|p| format!("Practitioner/{}", bare(p, "Practitioner")))
            .collect();
        let locations: Vec<String> = req
            .locations
            .iter()
            .map(|l| format!("Location/{}", bare(l, "Location")))
            .collect();
        let organizations: Vec<String> = req
            .organizations
            .iter()
            .map(|o| format!("Organization/{}", bare(o, "Organization")))
            .collect();
        let found: Vec<Found> = found
            .into_iter()
            .filter(|f| {
                let c = &f.cal;
                (practitioners.is_empty()
                    || c.practitioner
                        .as_ref()
                        .is_some_and(|p| practitioners.contains(p)))
                    && (locations.is_empty()
                        || c.location.as_ref().is_some_and(|l| locations.contains(l)))
                    && (organizations.is_empty()
                        || c.organization
                            .as_ref()
                            .is_some_and(|o| organizations.contains(o)))
                    && (req.visit_types.is_empty()
                        || c.visit_types.is_empty()
                        || req
                            .visit_types
                            .iter()
                            .any(|t| c.visit_types.iter().any(|v| v.matches(t)))
                        || f.slots.iter().any(|s| {
                            req.visit_types
                                .iter()
                                .any(|t| s.service_types.iter().any(|c| concept_matches(c, t)))
                        }))
            })
            .collect();
        let claimed = self
            .claimed(
                found.iter().map(|f| f.cal.claim_calendar()).collect(),
                window,
                now,
            )
            .await?;
        let limit = if req.limit == 0 {
            MAX_PROPOSALS
        } else {
            req.limit.min(MAX_PROPOSALS)
        };
        let mut offers: Vec<(Offer, usize)> = Vec::new();
        let per_calendar = if req.per_calendar == 0 {
            limit
        } else {
            req.per_calendar.min(limit)
        };
        for (i, f) in found.iter().enumerate() {
            let first_offer = offers.len();
            let cal = &f.cal;
            let bookable = cal.bookable_window(now);
            let w = Interval::new(
                window.start.max(bookable.start),
                window.end.min(bookable.end),
            );
            if w.is_empty() {
                continue;
            }
            let taken: Vec<Interval> = claimed
                .get(&cal.claim_calendar())
                .cloned()
                .unwrap_or_default();
            let mut busy_slots = Vec::new();
            for s in &f.slots {
                match s.status.as_str() {
                    "free" if s.time.within(&w) && !taken.iter().any(|t| t.overlaps(&s.time)) => {
                        offers.push((
                            Offer {
                                schedule: cal.schedule.clone(),
                                visit: s.time,
                                visit_type: s.service_types.first().cloned(),
                                slot: Some(s.id.clone()),
                            },
                            i,
                        ));
                    }
                    "busy" | "busy-unavailable" | "busy-tentative" => busy_slots.push(s.time),
                    _ => {}
                }
            }
            let Ok(open) = cal.hours.open(w) else {
                continue;
            };
            let mut busy = taken;
            busy.extend(busy_slots);
            let busy = merge(busy);
            let types: Vec<Option<&calendar::VisitType>> = if cal.visit_types.is_empty() {
                vec![None]
            } else if req.visit_types.is_empty() {
                vec![cal.visit_types.first()]
            } else {
                cal.visit_types
                    .iter()
                    .filter(|v| req.visit_types.iter().any(|t| v.matches(t)))
                    .map(Some)
                    .collect()
            };
            for vt in types {
                let shape = cal.shape(vt);
                for s in visit_starts(&open, &busy, shape, w.start, per_calendar) {
                    offers.push((
                        Offer {
                            schedule: cal.schedule.clone(),
                            visit: shape.visit(s),
                            visit_type: vt.map(|v| v.concept.clone()),
                            slot: None,
                        },
                        i,
                    ));
                }
            }
            // This calendar's soonest, when it is limited.
            if offers.len() - first_offer > per_calendar {
                offers[first_offer..].sort_by_key(|o| o.0.visit.start);
                offers.truncate(first_offer + per_calendar);
            }
        }
        offers.sort_by(|a, b| {
            (a.0.visit.start, &a.0.schedule).cmp(&(b.0.visit.start, &b.0.schedule))
        });
        offers.truncate(limit);
        let patient = req.patient.as_deref().map(|p| bare(p, "Patient"));
        Ok(offers
            .iter()
            .map(|(o, i)| proposed_appointment(&found[*i].cal, o, patient))
            .collect())
    }

    /// The calendar an Appointment asks for, checked: the visit is offerable now (or is
    /// the written free Slot it names). Returns the calendar, the visit's shape and the
    /// written Slot. `new_holder` says `holder` is an id just made, with no claims yet.
    async fn check_offer(
        &self,
        holder: &str,
        new_holder: bool,
        r: &Requested,
        now: i64,
    ) -> Result<Checked, RecordError> {
        let mut schedule_id = r.schedule.clone();
        let mut slot_body = None;
        if let Some(slot) = &r.slot {
            let slots = self
                .read_directory(vec![("Slot".into(), slot.clone())])
                .await?;
            let body = slots
                .get(&format!("Slot/{slot}"))
                .cloned()
                .ok_or_else(|| invalid("the appointment's slot does not exist"))?;
            if !extension_flag(&body, "booking-slot") {
                let ws = written_slot(&body).ok_or_else(|| invalid("the slot has no time"))?;
                if ws.time != r.visit {
                    return Err(invalid("the appointment's time is not its slot's"));
                }
                if ws.status != "free" {
                    return Err(unavailable());
                }
                schedule_id = body
                    .pointer("/schedule/reference")
                    .and_then(Value::as_str)
                    .map(|s| bare(s, "Schedule").to_string())
                    .unwrap_or_default();
                // Written on below: a copy of its own, not the one the cache keeps.
                slot_body = Some(Arc::unwrap_or_clone(body));
            }
        }
        let schedules = self
            .read_directory(vec![("Schedule".into(), schedule_id.clone())])
            .await?;
        let schedule = schedules
            .get(&format!("Schedule/{schedule_id}"))
            .cloned()
            .ok_or_else(|| invalid("the appointment names no schedule of this node"))?;
        let found = self.calendars(vec![schedule], None).await?;
        let cal = found
            .into_iter()
            .next()
            .map(|f| f.cal)
            .ok_or_else(unavailable)?;
        let visit_type = cal
            .visit_type(r.service_type.as_ref().and_then(|c| {
                c.pointer("/coding/0/code")
                    .or_else(|| c.get("text"))
                    .and_then(Value::as_str)
            }))
            .map_err(|e| invalid(&e.to_string()))?;
        let shape = match &slot_body {
            Some(_) => VisitShape {
                minutes: u32::try_from((r.visit.end - r.visit.start) / MINUTE).unwrap_or(0),
                buffer_minutes: 0,
            },
            None => cal.shape(visit_type),
        };
        if slot_body.is_none() {
            if shape.visit(r.visit.start) != r.visit {
                return Err(invalid("the appointment's length is not its visit type's"));
            }
            let window = cal.bookable_window(now);
            let claimed: Vec<Interval> = self
                .bookings
                .claimed_time(
                    &[cal.claim_calendar()],
                    r.visit.start - i64::from(shape.buffer_minutes) * MINUTE,
                    r.visit.end + i64::from(shape.buffer_minutes) * MINUTE,
                    now,
                )
                .await?
                .into_iter()
                .map(|c| Interval::new(c.start_micros, c.end_micros))
                .collect();
            // A new holder (an id just made) has no claims of its own to read.
            let mine: Vec<Interval> = if new_holder {
                Vec::new()
            } else {
                self.bookings
                    .claims_of(holder, now)
                    .await?
                    .into_iter()
                    .map(|c| Interval::new(c.start_micros, c.end_micros))
                    .collect()
            };
            let others: Vec<Interval> = claimed.into_iter().filter(|c| !mine.contains(c)).collect();
            let open = cal
                .hours
                .open(window)
                .map_err(|_| invalid("the appointment's time is out of range"))?;
            if !offerable(&open, &others, shape, r.visit.start, window.start) {
                return Err(unavailable());
            }
        } else if r.visit.start < now {
            return Err(unavailable());
        }
        let visit_type = match &slot_body {
            Some(_) => r.service_type.clone(),
            None => visit_type
                .map(|v| v.concept.clone())
                .or_else(|| r.service_type.clone()),
        };
        Ok(Checked {
            cal,
            shape,
            slot_body,
            visit_type,
        })
    }

    async fn options_for(&self, cal: &Calendar) -> Result<BookingOptions, RecordError> {
        let Some(org) = &cal.organization else {
            return Ok(BookingOptions::default());
        };
        let id = bare(org, "Organization").to_string();
        let orgs = self
            .read_directory(vec![("Organization".into(), id)])
            .await?;
        Ok(orgs
            .get(org)
            .map(|o| BookingOptions::of(o))
            .unwrap_or_default())
    }

    /// The calendar a patient's bookings of one day are claimed on: named by a blind tag
    /// when encryption is on, so the claim rows name no patient.
    fn patient_calendar(&self, patient: &str) -> String {
        let core = self.records.core();
        let tag = core.at_rest().map_or_else(
            || format!("Patient/{patient}"),
            |a| a.blind_index().tag("booking-patient", patient),
        );
        format!("patient-day:{tag}")
    }

    /// The claims a visit makes: the practitioner's (or schedule's) time with its buffer,
    /// and, when the organization allows one booking a day, the patient's day.
    fn claims_for(
        holder: &str,
        cal: &Calendar,
        shape: VisitShape,
        start: i64,
        patient_day: Option<String>,
        expires: Option<i64>,
    ) -> Vec<TimeClaim> {
        let visit = shape.visit(start);
        let claim = shape.claim(start);
        let mut claims = vec![TimeClaim {
            calendar: cal.claim_calendar(),
            holder: holder.to_string(),
            start_micros: claim.start,
            end_micros: claim.end.max(visit.end),
            expires_micros: expires,
        }];
        if let Some(calendar) = patient_day {
            let day_start =
                availability::days_after(&cal.hours.zone, visit.start, 0).unwrap_or(visit.start);
            let day_end =
                availability::days_after(&cal.hours.zone, visit.start, 1).unwrap_or(visit.end);
            claims.push(TimeClaim {
                calendar,
                holder: holder.to_string(),
                start_micros: day_start,
                end_micros: day_end,
                expires_micros: expires,
            });
        }
        claims
    }

    /// Reads an Appointment the actor may update, with its head.
    async fn appointment_for_update(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<(medmesh_policy::Grant, Value, VersionHead), RecordError> {
        let core = self.records.core();
        let grant = core
            .authorize(ctx, Action::Update, Some("Appointment"))
            .await?;
        let found = self.resources.read("Appointment", id).await?;
        let Some(v) = found.filter(|v| !v.deleted) else {
            return Err(RecordError::NotFound);
        };
        let head = VersionHead {
            version: v.version,
            deleted: false,
        };
        let body = core.decode(&v).await?;
        if !core.admits(&grant, "Appointment", &body) {
            return Err(RecordError::NotFound);
        }
        Ok((grant, body, head))
    }

    /// Holds a proposed appointment for a few minutes (ITI-116): its time is claimed until
    /// then and the Appointment is stored `pending`. Booking it (by its id) within the hold
    /// cannot fail for want of time.
    ///
    /// # Errors
    /// [`RecordError::Conflict`] when the time is no longer free; [`RecordError::Invalid`]
    /// for an appointment that is not one of this node's proposals; the PDP's refusals.
    pub async fn hold(&self, ctx: &RequestContext, proposed: &Value) -> Result<Value, RecordError> {
        self.reserve(ctx, proposed, None, true).await
    }

    /// Books an appointment (ITI-117): a proposal from `$find`, or a held Appointment by
    /// id. The time is claimed in the transaction that stores the Appointment (`booked`, or
    /// `pending` where the organization's staff approve bookings) with its Slot.
    ///
    /// # Errors
    /// As [`Self::hold`]; [`RecordError::NotFound`] for a held id the actor cannot see.
    pub async fn book(
        &self,
        ctx: &RequestContext,
        proposed: Option<&Value>,
        held: Option<&str>,
    ) -> Result<Value, RecordError> {
        match (proposed, held) {
            (_, Some(id)) => {
                let (_, body, _) = self.appointment_for_update(ctx, id).await?;
                match body.get("status").and_then(Value::as_str) {
                    Some("pending")
                        if calendar::extension_value(&body, &hold_extension_url()).is_some() => {}
                    Some("booked") => return Ok(body),
                    _ => return Err(invalid("the appointment is not held")),
                }
                self.reserve(ctx, &body, Some(id.to_string()), false).await
            }
            (Some(p), None) => {
                // A proposal that names an id of ours is a held one.
                if let Some(id) = p.get("id").and_then(Value::as_str)
                    && self.resources.read("Appointment", id).await?.is_some()
                {
                    return Box::pin(self.book(ctx, None, Some(id))).await;
                }
                self.reserve(ctx, p, None, false).await
            }
            (None, None) => Err(invalid(
                "an appointment or an appointment reference is required",
            )),
        }
    }

    async fn reserve(
        &self,
        ctx: &RequestContext,
        proposed: &Value,
        existing: Option<String>,
        hold: bool,
    ) -> Result<Value, RecordError> {
        let core = self.records.core();
        let now = core.now();
        let r = requested(proposed).ok_or_else(|| {
            invalid("the appointment must carry its schedule (or slot), start and end")
        })?;
        let Some(patient) = r.patient.clone() else {
            return Err(invalid("the appointment must name its patient"));
        };
        let action = if existing.is_some() {
            Action::Update
        } else {
            Action::Create
        };
        let grant = core.authorize(ctx, action, Some("Appointment")).await?;
        let id = existing.clone().unwrap_or_else(|| core.ids().new_id());
        let Checked {
            cal,
            shape,
            slot_body,
            visit_type,
        } = self.check_offer(&id, existing.is_none(), &r, now).await?;
        let options = self.options_for(&cal).await?;
        let expires = hold.then(|| now + i64::from(self.hold_minutes) * MINUTE);
        let claims = Self::claims_for(
            &id,
            &cal,
            shape,
            r.visit.start,
            options.one_per_day.then(|| self.patient_calendar(&patient)),
            // Provisional until the Appointment is stored: its hold, or two minutes.
            Some(expires.unwrap_or(now + 2 * MINUTE)),
        );
        let awaiting = !hold && options.approval;
        let offer = Offer {
            schedule: cal.schedule.clone(),
            visit: r.visit,
            visit_type: visit_type.clone(),
            slot: None,
        };
        let mut body = proposed_appointment(&cal, &offer, Some(&patient));
        body["id"] = json!(id);
        body["created"] = json!(format_instant(now)[..10]);
        if let Some(d) = proposed.get("description").and_then(Value::as_str) {
            body["description"] = json!(d);
        }
        if let Some(c) = proposed.get("comment").and_then(Value::as_str) {
            body["comment"] = json!(c);
        }
        if let Some(reason) = proposed.get("reasonCode") {
            body["reasonCode"] = reason.clone();
        }
        let status = if hold || awaiting {
            "pending"
        } else {
            "booked"
        };
        body["status"] = json!(status);
        // The patient accepts by booking; the others accept once booked (not while held or
        // waiting for approval).
        if let Some(participants) = body["participant"].as_array_mut() {
            for p in participants {
                let patient_side = p
                    .pointer("/actor/reference")
                    .and_then(Value::as_str)
                    .is_some_and(|a| a.starts_with("Patient/"));
                let accepted = patient_side || !(hold || awaiting);
                p["status"] = json!(if accepted { "accepted" } else { "needs-action" });
            }
        }
        if let Some(until) = expires
            && let Some(ext) = body["extension"].as_array_mut()
        {
            ext.push(json!({"url": hold_extension_url(), "valueInstant": format_instant(until)}));
        }
        // A video visit carries its room's address in the Appointment itself.
        if let Some(r) = &self.reminders {
            crate::video::with_join_url(&mut body, r.hub.node_url(), &id);
        }
        core.check_resource("Appointment", &body)?;
        let reminders = if status == "booked" {
            self.prepare_reminders(
                &id,
                &patient,
                (r.visit.start, crate::video::is_video_visit(&body)),
                now,
            )
            .await?
        } else {
            Vec::new()
        };
        // Staff are told of a request awaiting their approval, in the same transaction.
        let staff_notices = if awaiting {
            self.prepare_staff_notices(&body, &id, true).await?
        } else {
            Vec::new()
        };
        // The Slot the appointment had (when it is held or moved).
        let previous_slot = match &existing {
            Some(e) => match self.resources.read("Appointment", e).await? {
                Some(v) if !v.deleted => core
                    .decode(&v)
                    .await?
                    .pointer("/slot/0/reference")
                    .and_then(Value::as_str)
                    .map(|s| bare(s, "Slot").to_string()),
                _ => None,
            },
            None => None,
        };
        // Claimed first, alone: the calendar is locked only for these statements.
        let mut claim = core.begin_write().await?;
        if !claim.claim_time(&id, &claims, now).await? {
            claim.rollback().await?;
            return Err(unavailable());
        }
        claim.commit().await?;
        let stored = async {
            let mut tx = core.begin_write().await?;
            self.replace_reminders(&mut tx, &id, &patient, &reminders, existing.is_none())
                .await?;
            for row in &staff_notices {
                tx.queue_notification(row).await?;
            }
            // The Slot: the written one becomes busy; a computed visit gets a Slot of its own.
            let slot_grant = Pdp.internal_grant("Slot");
            let slot_status = if hold { "busy-tentative" } else { "busy" };
            let slot_id = match slot_body {
                Some(mut s) => {
                    if let Some(p) = previous_slot
                        .as_deref()
                        .filter(|p| Some(*p) != s.get("id").and_then(Value::as_str))
                    {
                        self.free_slot(ctx, &mut tx, p).await?;
                    }
                    let sid = s
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let head = tx.head("Slot", &sid).await?;
                    if head.is_some_and(|h| !h.deleted) {
                        s["status"] = json!(slot_status);
                        if let Some(m) = s.as_object_mut() {
                            m.remove("meta");
                        }
                        core.write_version(ctx, &mut tx, &slot_grant, "Slot", &sid, s, head)
                            .await?;
                    }
                    sid
                }
                None => {
                    // A Slot this service made is moved with the appointment; a written one is
                    // freed for others.
                    let mut ours = None;
                    if let Some(p) = &previous_slot {
                        let slot = self
                            .read_directory(vec![("Slot".into(), p.clone())])
                            .await?;
                        if slot
                            .get(&format!("Slot/{p}"))
                            .is_some_and(|s| extension_flag(s, "booking-slot"))
                        {
                            ours = Some(p.clone());
                        } else {
                            self.free_slot(ctx, &mut tx, p).await?;
                        }
                    }
                    let sid = ours.clone().unwrap_or_else(|| core.ids().new_id());
                    let head = match &ours {
                        Some(p) => tx.head("Slot", p).await?,
                        None => None,
                    };
                    let mut slot = json!({
                        "resourceType": "Slot",
                        "id": sid,
                        "extension": [{"url": extension_url("booking-slot"), "valueBoolean": true}],
                        "schedule": {"reference": format!("Schedule/{}", cal.schedule)},
                        "status": slot_status,
                        "start": format_instant(r.visit.start),
                        "end": format_instant(r.visit.end),
                    });
                    if let Some(t) = &visit_type {
                        slot["serviceType"] = json!([t]);
                    }
                    core.write_version(ctx, &mut tx, &slot_grant, "Slot", &sid, slot, head)
                        .await?;
                    sid
                }
            };
            body["slot"] = json!([{"reference": format!("Slot/{slot_id}")}]);
            let head = match &existing {
                Some(e) => tx.head("Appointment", e).await?,
                None => None,
            };
            let out = core
                .write_version(ctx, &mut tx, &grant, "Appointment", &id, body, head)
                .await?;
            let mut entry = core.entry(
                ctx,
                if hold { "hold" } else { "book" },
                Some("Appointment"),
                vec![id.clone()],
                Outcome::Success,
            );
            entry.patients = vec![patient.clone()];
            core.annotate(&mut entry, &grant);
            // The provisional claim becomes the appointment's, with the Appointment.
            if !tx.confirm_time(&id, expires, now).await? {
                tx.rollback().await?;
                return Err(unavailable());
            }
            tx.append_audit(&entry).await?;
            tx.commit().await?;
            out.resource.ok_or(RecordError::NotFound)
        }
        .await;
        if stored.is_err() {
            // Not left to lapse: the time is offered again at once.
            let released: Result<(), RecordError> = async {
                let mut tx = core.begin_write().await?;
                tx.release_time(&medmesh_store::provisional(&id)).await?;
                Ok(tx.commit().await?)
            }
            .await;
            if let Err(e) = released {
                tracing::warn!(error = %e, "a provisional claim is left to lapse");
            }
        }
        stored
    }

    /// Cancels an appointment (by the patient or staff): its time is freed in the same
    /// transaction.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] for an appointment the actor may not change;
    /// [`RecordError::Invalid`] for one already over.
    pub async fn cancel(
        &self,
        ctx: &RequestContext,
        id: &str,
        reason: Option<&str>,
    ) -> Result<Value, RecordError> {
        let (grant, mut body, _) = self.appointment_for_update(ctx, id).await?;
        match body.get("status").and_then(Value::as_str) {
            Some("proposed" | "pending" | "booked" | "waitlist") => {}
            Some("cancelled") => return Ok(body),
            _ => return Err(invalid("the appointment can no longer be cancelled")),
        }
        body["status"] = json!("cancelled");
        if let Some(r) = reason.filter(|r| !r.trim().is_empty()) {
            body["cancelationReason"] = json!({"text": r.chars().take(500).collect::<String>()});
        }
        if let Some(m) = body.as_object_mut() {
            m.remove("meta");
        }
        let cancelled = self
            .write_change(ctx, &grant, id, body, "cancel", true)
            .await?;
        self.offer_to_waiting(ctx, &cancelled).await;
        Ok(cancelled)
    }

    /// Offers a freed time to the waiting list; a failure is logged, and the cancellation
    /// stands (the patients waiting keep their place).
    async fn offer_to_waiting(&self, ctx: &RequestContext, freed: &Value) {
        if let Err(e) = self.offer_freed(ctx, freed, None).await {
            tracing::warn!(error = %e, "a freed time could not be offered to the waiting list");
        }
    }

    /// Moves an appointment to a proposal's time: the new time is claimed and the old one
    /// freed in one transaction, so a failed move leaves the booking as it was.
    ///
    /// # Errors
    /// As [`Self::book`].
    pub async fn reschedule(
        &self,
        ctx: &RequestContext,
        id: &str,
        proposed: &Value,
    ) -> Result<Value, RecordError> {
        let (_, current, _) = self.appointment_for_update(ctx, id).await?;
        if !matches!(
            current.get("status").and_then(Value::as_str),
            Some("pending" | "booked")
        ) {
            return Err(invalid("only a pending or booked appointment can be moved"));
        }
        let patient = requested(&current).and_then(|r| r.patient);
        let mut next = proposed.clone();
        // The patient stays the appointment's; the Slot stays ours to reuse.
        if let (Some(p), Some(parts)) = (patient, next["participant"].as_array_mut()) {
            parts.retain(|x| {
                !x.pointer("/actor/reference")
                    .and_then(Value::as_str)
                    .is_some_and(|r| r.starts_with("Patient/"))
            });
            parts.push(
                json!({"actor": {"reference": format!("Patient/{p}")}, "status": "accepted"}),
            );
        }
        self.reserve(ctx, &next, Some(id.to_string()), false).await
    }

    /// What staff do: approve or decline a booking awaiting approval, mark arrival, a
    /// no-show or the visit done.
    ///
    /// # Errors
    /// [`RecordError::NotFound`]; [`RecordError::Invalid`] for a change the status does not
    /// allow.
    pub async fn staff(
        &self,
        ctx: &RequestContext,
        id: &str,
        action: StaffAction,
    ) -> Result<Value, RecordError> {
        if ctx.actor().clinician().is_none() && ctx.actor().patient().is_some() {
            return Err(RecordError::Forbidden);
        }
        let (grant, mut body, _) = self.appointment_for_update(ctx, id).await?;
        let status = body
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let held = calendar::extension_value(&body, &hold_extension_url()).is_some();
        let (next, release) = match (action, status) {
            (StaffAction::Approve, "pending") if !held => ("booked", false),
            (StaffAction::Decline, "pending") if !held => ("cancelled", true),
            (StaffAction::Arrived, "booked" | "checked-in") => ("arrived", false),
            (StaffAction::NoShow, "booked" | "pending") => ("noshow", false),
            (StaffAction::Fulfilled, "booked" | "arrived" | "checked-in") => ("fulfilled", false),
            _ => return Err(invalid("the appointment's status does not allow this")),
        };
        body["status"] = json!(next);
        if action == StaffAction::Approve
            && let Some(parts) = body["participant"].as_array_mut()
        {
            for p in parts {
                p["status"] = json!("accepted");
            }
        }
        if let Some(m) = body.as_object_mut() {
            m.remove("meta");
        }
        let verb = match action {
            StaffAction::Approve => "approve",
            StaffAction::Decline => "decline",
            StaffAction::Arrived => "arrived",
            StaffAction::NoShow => "noshow",
            StaffAction::Fulfilled => "fulfilled",
        };
        let changed = self
            .write_change(ctx, &grant, id, body, verb, release)
            .await?;
        if release {
            self.offer_to_waiting(ctx, &changed).await;
        }
        Ok(changed)
    }

    /// Writes a changed Appointment, freeing its time (and its Slot) when asked, with the
    /// audit entry, in one transaction.
    async fn write_change(
        &self,
        ctx: &RequestContext,
        grant: &medmesh_policy::Grant,
        id: &str,
        body: Value,
        verb: &str,
        release: bool,
    ) -> Result<Value, RecordError> {
        let core = self.records.core();
        core.check_resource("Appointment", &body)?;
        let asked = requested(&body);
        let patient = asked.as_ref().and_then(|r| r.patient.clone());
        // Reminders go with a booking: queued when it is approved, withdrawn when it ends
        // before its time.
        let status = body
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let reminders = match (&asked, &patient, status) {
            (Some(r), Some(p), "booked") => Some(
                self.prepare_reminders(
                    id,
                    p,
                    (r.visit.start, crate::video::is_video_visit(&body)),
                    core.now(),
                )
                .await?,
            ),
            (_, _, "cancelled" | "noshow") => Some(Vec::new()),
            _ => None,
        };
        // A patient's own cancellation is told to the practitioner's staff.
        let staff_notices =
            if verb == "cancel" && ctx.actor().role() == Some(medmesh_auth::Role::Patient) {
                self.prepare_staff_notices(&body, id, false).await?
            } else {
                Vec::new()
            };
        let mut tx = core.begin_write().await?;
        if let (Some(rows), Some(p)) = (&reminders, &patient) {
            self.replace_reminders(&mut tx, id, p, rows, false).await?;
        }
        for row in &staff_notices {
            tx.queue_notification(row).await?;
        }
        if release {
            tx.release_time(id).await?;
            if let Some(sid) = body
                .pointer("/slot/0/reference")
                .and_then(Value::as_str)
                .map(|s| bare(s, "Slot").to_string())
            {
                self.free_slot(ctx, &mut tx, &sid).await?;
            }
        }
        let head = tx.head("Appointment", id).await?;
        let out = core
            .write_version(ctx, &mut tx, grant, "Appointment", id, body, head)
            .await?;
        let mut entry = core.entry(
            ctx,
            verb,
            Some("Appointment"),
            vec![id.to_string()],
            Outcome::Success,
        );
        entry.patients = patient.into_iter().collect();
        core.annotate(&mut entry, grant);
        tx.append_audit(&entry).await?;
        tx.commit().await?;
        out.resource.ok_or(RecordError::NotFound)
    }

    /// Sets a Slot back to `free` in `tx` (a written one is offered again; one this service
    /// made is only a record that the time was freed).
    async fn free_slot(
        &self,
        ctx: &RequestContext,
        tx: &mut medmesh_at_rest::WriteTx,
        sid: &str,
    ) -> Result<(), RecordError> {
        let core = self.records.core();
        let head = tx.head("Slot", sid).await?;
        if let (Some(h), Some(v)) = (
            head.filter(|h| !h.deleted),
            self.resources.read("Slot", sid).await?,
        ) {
            let mut slot = core.decode(&v).await?;
            if slot.get("status").and_then(Value::as_str) == Some("free") {
                return Ok(());
            }
            slot["status"] = json!("free");
            if let Some(m) = slot.as_object_mut() {
                m.remove("meta");
            }
            core.write_version(
                ctx,
                tx,
                &Pdp.internal_grant("Slot"),
                "Slot",
                sid,
                slot,
                Some(h),
            )
            .await?;
        }
        Ok(())
    }

    /// A practitioner's appointments counted by status (booked, arrived, fulfilled, no-show,
    /// cancelled...) between `from` and `to` (FHIR dates or date-times), as far as the caller
    /// may see them: what no-show figures and later analytics are made of. Each count is a
    /// `_summary=count` search, judged by the PDP and audited.
    ///
    /// # Errors
    /// The PDP's refusals; [`RecordError::Invalid`] for a bad date.
    pub async fn figures(
        &self,
        ctx: &RequestContext,
        practitioner: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<BTreeMap<String, u64>, RecordError> {
        const STATUSES: [&str; 9] = [
            "pending",
            "booked",
            "arrived",
            "checked-in",
            "fulfilled",
            "noshow",
            "cancelled",
            "waitlist",
            "entered-in-error",
        ];
        let mut out = BTreeMap::new();
        for status in STATUSES {
            let mut params = vec![
                (
                    "actor".to_string(),
                    format!("Practitioner/{}", bare(practitioner, "Practitioner")),
                ),
                ("status".to_string(), status.to_string()),
                ("_summary".to_string(), "count".to_string()),
            ];
            params.extend(from.map(|f| ("date".to_string(), format!("ge{f}"))));
            params.extend(to.map(|t| ("date".to_string(), format!("lt{t}"))));
            let bundle = self
                .records
                .search(ctx, "Appointment", &params, Handling::Strict)
                .await?;
            let n = bundle.get("total").and_then(Value::as_u64).unwrap_or(0);
            out.insert(status.to_string(), n);
        }
        Ok(out)
    }
}
