//! The waiting list. Where an organization keeps one (`booking-waitlist` on the
//! Organization), a patient may wait for a practitioner: an Appointment with status
//! `waitlist`. When a booked time with that practitioner is freed (a cancellation, a declined
//! request), it is offered to the patient who has waited longest: their waiting Appointment
//! becomes `pending` at that time, held for them for [`OFFER_MINUTES`] (the time is claimed
//! as a hold, so no one else can book it meanwhile), and they are told through the hub, in
//! the transaction of the offer. They book it like any held appointment (`$book` by
//! reference, or the portal). An offer not taken lapses: a timer queued in the offer's
//! transaction (the hub's durable outbox, channel [`OFFER_LAPSE`]) puts the patient back on
//! the list, last, frees the time and offers it to the next patient waiting.

use std::sync::{Arc, OnceLock, Weak};

use medmesh_audit::Outcome;
use medmesh_fhir::search::{Handling, parse_query};
use medmesh_kernel::{Actor, OperationId, RequestContext};
use medmesh_notifications::{Category, ChannelDelivery, Notice, Recipient, SendError};
use medmesh_policy::{Action, Pdp};
use medmesh_records::RecordError;
use medmesh_store::{NotificationOutboxRow, PageRequest};
use serde_json::{Value, json};

use crate::availability::{MINUTE, VisitShape};
use crate::calendar::{
    extension_value, format_instant, hold_extension_url, patient_of, requested,
    schedule_extension_url,
};
use crate::{SchedulingService, bare, invalid};

/// How long a freed time is held for the patient it is offered to, by default, minutes.
pub const OFFER_MINUTES: i64 = 30;

/// The hub's outbox channel of lapsing offers: due when an offer's hold ends.
pub const OFFER_LAPSE: &str = "waitlist-offer-lapse";

impl SchedulingService {
    /// Puts `patient` on `practitioner`'s waiting list (an Appointment with status
    /// `waitlist`), where the practice keeps one.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] when the practitioner cannot be booked here or the practice
    /// keeps no waiting list; the PDP's refusals (a patient waits only for themself).
    pub async fn join_waitlist(
        &self,
        ctx: &RequestContext,
        practitioner: &str,
        patient: &str,
    ) -> Result<Value, RecordError> {
        let core = self.records.core();
        let grant = core
            .authorize(ctx, Action::Create, Some("Appointment"))
            .await?;
        let practitioner = format!("Practitioner/{}", bare(practitioner, "Practitioner"));
        let patient = bare(patient, "Patient").to_string();
        let schedules = self
            .search_directory("Schedule", vec![("active".into(), "true".into())])
            .await?;
        let cal = self
            .calendars(schedules, None)
            .await?
            .into_iter()
            .map(|f| f.cal)
            .find(|c| c.practitioner.as_deref() == Some(practitioner.as_str()))
            .ok_or_else(|| invalid("this practitioner cannot be booked here"))?;
        if !self.options_for(&cal).await?.waitlist {
            return Err(invalid("this practice keeps no waiting list"));
        }
        let now = core.now();
        let id = core.ids().new_id();
        let body = json!({
            "resourceType": "Appointment",
            "id": id,
            "status": "waitlist",
            "extension": [{"url": schedule_extension_url(),
                           "valueReference": {"reference": format!("Schedule/{}", cal.schedule)}}],
            "created": format_instant(now)[..10],
            "participant": [
                {"actor": {"reference": practitioner}, "required": "required", "status": "needs-action"},
                {"actor": {"reference": format!("Patient/{patient}")}, "required": "required", "status": "accepted"}
            ],
        });
        core.check_resource("Appointment", &body)?;
        let mut tx = core.begin_write().await?;
        let out = core
            .write_version(ctx, &mut tx, &grant, "Appointment", &id, body, None)
            .await?;
        let mut entry = core.entry(
            ctx,
            "waitlist",
            Some("Appointment"),
            vec![id.clone()],
            Outcome::Success,
        );
        entry.patients = vec![patient];
        core.annotate(&mut entry, &grant);
        tx.append_audit(&entry).await?;
        tx.commit().await?;
        out.resource.ok_or(RecordError::NotFound)
    }

    /// Offers the time a cancelled or declined appointment (`freed`) held to the patient who
    /// has waited longest for its practitioner, where the practice keeps a waiting list.
    /// Returns the waiting Appointment's id when an offer was made.
    ///
    /// # Errors
    /// Store failures; the caller logs them (the cancellation stands either way).
    pub(crate) async fn offer_freed(
        &self,
        ctx: &RequestContext,
        freed: &Value,
        except: Option<&str>,
    ) -> Result<Option<String>, RecordError> {
        let core = self.records.core();
        let now = core.now();
        let Some(r) = requested(freed).filter(|r| r.visit.start > now && !r.schedule.is_empty())
        else {
            return Ok(None);
        };
        let schedules = self
            .read_directory(vec![("Schedule".into(), r.schedule.clone())])
            .await?;
        let Some(schedule) = schedules.get(&format!("Schedule/{}", r.schedule)).cloned() else {
            return Ok(None);
        };
        let Some(cal) = self
            .calendars(vec![schedule], None)
            .await?
            .into_iter()
            .next()
            .map(|f| f.cal)
        else {
            return Ok(None);
        };
        let Some(practitioner) = cal.practitioner.clone() else {
            return Ok(None);
        };
        if !self.options_for(&cal).await?.waitlist {
            return Ok(None);
        }
        // The longest waiting: the oldest `waitlist` Appointment with this practitioner.
        let mut q = parse_query(
            core.definitions(),
            "Appointment",
            &[
                ("actor".into(), practitioner.clone()),
                ("status".into(), "waitlist".into()),
                ("_sort".into(), "_lastUpdated".into()),
            ],
            Handling::Strict,
        )?;
        core.blind(&mut q)?;
        let page = PageRequest {
            count: 2,
            cursor: None,
            with_total: false,
            snapshot: false,
        };
        let found = self.resources.search(&q, &page).await?;
        let Some(v) = self
            .resources
            .read_many(&found.matches)
            .await?
            .into_iter()
            .find(|v| Some(v.id.as_str()) != except)
        else {
            return Ok(None);
        };
        let mut waiting = core.decode(&v).await?;
        let Some(patient) = patient_of(&waiting) else {
            return Ok(None);
        };
        let id = v.id.clone();
        let until = now + self.offer_micros;
        let minutes = (self.offer_micros / MINUTE).max(1);
        let shape = VisitShape {
            minutes: u32::try_from((r.visit.end - r.visit.start) / MINUTE).unwrap_or(0),
            buffer_minutes: cal.buffer_minutes,
        };
        let claims = Self::claims_for(&id, &cal, shape, r.visit.start, None, Some(until));
        let mut claim = core.begin_write().await?;
        if !claim.claim_time(&id, &claims, now).await? {
            // Taken meanwhile (booked through $find at once): nothing to offer.
            claim.rollback().await?;
            return Ok(None);
        }
        claim.commit().await?;
        let notice = match &self.reminders {
            Some(rem) => Some(
                rem.hub
                    .prepare_scheduled(
                        &Recipient::Patient(patient.clone()),
                        &Notice {
                            category: Category::Appointments,
                            event: format!("waitlist-offer:{id}:{}", r.visit.start),
                            subject: format!("A time has become free at {}", rem.node_name),
                            body: format!(
                                "A time you waited for has become free. Sign in at {} within {minutes} minutes to book it.",
                                rem.node_name
                            ),
                        },
                        now,
                    )
                    .await
                    .map_err(|_| RecordError::NotSupported("notifications are unavailable".into()))?,
            ),
            None => None,
        };
        waiting["status"] = json!("pending");
        waiting["start"] = json!(format_instant(r.visit.start));
        waiting["end"] = json!(format_instant(r.visit.end));
        if let Some(t) = &r.service_type {
            waiting["serviceType"] = json!([t]);
        }
        if let Some(m) = waiting.as_object_mut() {
            m.remove("meta");
        }
        if extension_value(&waiting, &hold_extension_url()).is_none()
            && let Some(ext) = waiting["extension"].as_array_mut()
        {
            ext.push(json!({"url": hold_extension_url(), "valueInstant": format_instant(until)}));
        }
        core.check_resource("Appointment", &waiting)?;
        let mut tx = core.begin_write().await?;
        let head = tx.head("Appointment", &id).await?;
        // The node's own bookkeeping, after the checks above: the offer is made for the
        // patient, who books it themself.
        let grant = Pdp.internal_grant("Appointment");
        core.write_version(ctx, &mut tx, &grant, "Appointment", &id, waiting, head)
            .await?;
        if !tx.confirm_time(&id, Some(until), now).await? {
            tx.rollback().await?;
            return Ok(None);
        }
        if let Some(row) = &notice {
            tx.queue_notification(row).await?;
        }
        if let Some(row) = self.lapse_timer(&id, r.visit.start, until).await {
            tx.queue_notification(&row).await?;
        }
        let mut entry = core.entry(
            ctx,
            "waitlist-offer",
            Some("Appointment"),
            vec![id.clone()],
            Outcome::Success,
        );
        entry.patients = vec![patient];
        tx.append_audit(&entry).await?;
        tx.commit().await?;
        Ok(Some(id))
    }
}

impl SchedulingService {
    /// The timer that passes an offer on when its hold ends, as an outbox row for the
    /// offer's transaction; `None` (the offer then simply lapses) where the hub has no such
    /// channel.
    async fn lapse_timer(&self, id: &str, start: i64, until: i64) -> Option<NotificationOutboxRow> {
        let rem = self.reminders.as_ref()?;
        let body = json!({"appointment": id, "start": start}).to_string();
        match rem
            .hub
            .prepare_on(
                OFFER_LAPSE,
                &format!("Appointment/{id}"),
                Category::Appointments,
                &format!("offer-lapse:{id}:{start}"),
                &body,
                until,
            )
            .await
        {
            Ok(row) => Some(row),
            Err(e) => {
                tracing::warn!(error = %e, "a waiting-list offer will lapse without being passed on");
                None
            }
        }
    }

    /// A lapsed offer (appointment `id`, offered for `start`): when it is still pending at
    /// that time and its hold has ended, its patient goes back on the waiting list (last),
    /// the time is freed, and it is offered to the next patient waiting. Returns the id of
    /// the Appointment it was offered to next. Nothing is done to an offer that was booked,
    /// cancelled or moved meanwhile.
    ///
    /// # Errors
    /// Store failures; the timer is tried again.
    pub async fn lapse_offer(
        &self,
        ctx: &RequestContext,
        id: &str,
        start: i64,
    ) -> Result<Option<String>, RecordError> {
        let core = self.records.core();
        let now = core.now();
        let Some(v) = self.resources.read("Appointment", id).await? else {
            return Ok(None);
        };
        if v.deleted {
            return Ok(None);
        }
        let offered = core.decode(&v).await?;
        let held_until = extension_value(&offered, &hold_extension_url())
            .and_then(Value::as_str)
            .and_then(|h| crate::calendar::parse_utc(h, false));
        if offered.get("status").and_then(Value::as_str) != Some("pending")
            || requested(&offered).map(|r| r.visit.start) != Some(start)
            || held_until.is_none_or(|h| h > now)
        {
            return Ok(None);
        }
        let patient = patient_of(&offered);
        let mut waiting = offered.clone();
        waiting["status"] = json!("waitlist");
        if let Some(m) = waiting.as_object_mut() {
            for k in ["meta", "start", "end", "minutesDuration", "slot"] {
                m.remove(k);
            }
        }
        let hold = hold_extension_url();
        if let Some(ext) = waiting.get_mut("extension").and_then(Value::as_array_mut) {
            ext.retain(|e| e.get("url").and_then(Value::as_str) != Some(hold.as_str()));
        }
        core.check_resource("Appointment", &waiting)?;
        let mut tx = core.begin_write().await?;
        let head = tx.head("Appointment", id).await?;
        // The node's own bookkeeping: the offer it made is withdrawn.
        let grant = Pdp.internal_grant("Appointment");
        core.write_version(ctx, &mut tx, &grant, "Appointment", id, waiting, head)
            .await?;
        tx.release_time(id).await?;
        let mut entry = core.entry(
            ctx,
            "waitlist-offer-lapsed",
            Some("Appointment"),
            vec![id.to_string()],
            Outcome::Success,
        );
        entry.patients = patient.into_iter().collect();
        tx.append_audit(&entry).await?;
        tx.commit().await?;
        self.offer_freed(ctx, &offered, Some(id)).await
    }

    /// The context the node's scheduler acts in (its own timers).
    pub fn worker_context(&self) -> RequestContext {
        #[allow(clippy::disallowed_methods)] // The scheduling service's own timers.
        let actor = Actor::scheduling_worker();
        RequestContext::new(
            actor,
            OperationId::new(self.records.core().ids().new_id()),
            None,
            String::new(),
        )
    }
}

/// Delivers the hub's [`OFFER_LAPSE`] channel: each row is a lapsing offer, passed on by
/// [`SchedulingService::lapse_offer`]. Bound to the service once both exist (the hub is
/// built first, as the service tells through it).
#[derive(Debug, Default)]
pub struct OfferLapses {
    service: OnceLock<Weak<SchedulingService>>,
}

impl OfferLapses {
    /// Binds the service that passes offers on.
    pub fn bind(&self, service: &Arc<SchedulingService>) {
        let _ = self.service.set(Arc::downgrade(service));
    }
}

#[async_trait::async_trait]
impl ChannelDelivery for OfferLapses {
    async fn deliver(&self, _row: &NotificationOutboxRow, body: &str) -> Result<(), SendError> {
        let service = self
            .service
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| SendError::Transient("scheduling is not running".into()))?;
        let job: Value = serde_json::from_str(body)
            .map_err(|_| SendError::Permanent("the timer is not readable".into()))?;
        let (Some(id), Some(start)) = (job["appointment"].as_str(), job["start"].as_i64()) else {
            return Err(SendError::Permanent("the timer is not readable".into()));
        };
        let ctx = service.worker_context();
        service
            .lapse_offer(&ctx, id, start)
            .await
            .map(|_| ())
            .map_err(|_| SendError::Transient("the offer could not be passed on".into()))
    }

    async fn given_up(&self, _row: &NotificationOutboxRow) {}
}
