//! The waiting list. Where an organization keeps one (`booking-waitlist` on the
//! Organization), a patient may wait for a practitioner: an Appointment with status
//! `waitlist`. When a booked time with that practitioner is freed (a cancellation, a declined
//! request), it is offered to the patient who has waited longest: their waiting Appointment
//! becomes `pending` at that time, held for them for [`OFFER_MINUTES`] (the time is claimed
//! as a hold, so no one else can book it meanwhile), and they are told through the hub, in
//! the transaction of the offer. They book it like any held appointment (`$book` by
//! reference, or the portal); an offer not taken lapses and the time is free for anyone.

use medmesh_audit::Outcome;
use medmesh_fhir::search::{Handling, parse_query};
use medmesh_kernel::RequestContext;
use medmesh_notifications::{Category, Notice, Recipient};
use medmesh_policy::{Action, Pdp};
use medmesh_records::RecordError;
use medmesh_store::PageRequest;
use serde_json::{Value, json};

use crate::availability::{MINUTE, VisitShape};
use crate::calendar::{
    extension_value, format_instant, hold_extension_url, requested, schedule_extension_url,
};
use crate::{SchedulingService, bare, invalid};

/// How long a freed time is held for the patient it is offered to, minutes.
pub const OFFER_MINUTES: i64 = 30;

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
            count: 1,
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
            .next()
        else {
            return Ok(None);
        };
        let mut waiting = core.decode(&v).await?;
        let Some(patient) = waiting
            .get("participant")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.pointer("/actor/reference").and_then(Value::as_str))
            .find_map(|a| a.strip_prefix("Patient/"))
            .map(str::to_string)
        else {
            return Ok(None);
        };
        let id = v.id.clone();
        let until = now + OFFER_MINUTES * MINUTE;
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
                                "A time you waited for has become free. Sign in at {} within {OFFER_MINUTES} minutes to book it.",
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
