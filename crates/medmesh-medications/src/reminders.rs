//! Dose reminders through the notification hub. A pass (the binary runs one every
//! `dose_reminder_seconds`) reads the active prescriptions of the patients who have an
//! account here (no one else would read a reminder: an imported hospital history gets
//! none), works out their doses in the
//! hours ahead in its patient's time zone (so 08:00 stays 08:00 across a daylight-saving
//! change), and queues one scheduled notice per dose in the hub's durable outbox, due at the
//! dose's time. The notice's event is `dose:<prescription>:<time>`, so a pass that queues a
//! dose again (the next pass, another replica) adds nothing; stopping, holding or cancelling
//! the prescription withdraws the reminders not yet sent, in the same transaction. The
//! patient's own hub settings decide the channels (none, the inbox, e-mail, a webhook), and
//! the text names no medication.

use std::collections::HashMap;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use medmesh_auth::parse_scopes;
use medmesh_kernel::{Actor, OperationId, RequestContext};
use medmesh_notifications::{NotificationHub, Recipient};
use medmesh_records::RecordError;
use medmesh_records::service::parse_query_string;
use serde_json::Value;

use crate::doses::zone_of;
use crate::service::MedicationService;

/// At most this many active prescriptions are read in one search of a pass (pages of 500).
pub const MAX_PER_PASS: usize = 100_000;
/// At most this many patients' prescriptions are looked at in one pass.
pub const MAX_PATIENTS: u32 = 100_000;
const PAGE: usize = 500;

/// The event key of a dose's reminder.
pub fn dose_event(prescription: &str, due: Timestamp) -> String {
    format!("dose:{prescription}:{}", due.as_microsecond())
}

impl MedicationService {
    /// The context dose reminders are read in: read and search on prescriptions and
    /// patients, audited as `medication-reminders`.
    fn reminders_context(&self) -> RequestContext {
        #[allow(clippy::disallowed_methods)] // The medication service's own reminders.
        let actor = Actor::medication_reminders(parse_scopes(
            "system/MedicationRequest.rs system/Patient.rs",
        ));
        RequestContext::new(
            actor,
            OperationId::new(self.records.core().ids().new_id()),
            None,
            String::new(),
        )
    }

    /// Every page of a search, following its `next` links, up to `limit` resources.
    pub(crate) async fn every_page(
        &self,
        ctx: &RequestContext,
        rt: &str,
        mut params: Vec<(String, String)>,
        limit: usize,
    ) -> Result<Vec<Value>, RecordError> {
        params.push(("_count".into(), PAGE.to_string()));
        let mut out = Vec::new();
        loop {
            let bundle = self
                .records
                .search(ctx, rt, &params, medmesh_fhir::search::Handling::Strict)
                .await?;
            out.extend(
                bundle["entry"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| e["search"]["mode"] != "outcome")
                    .map(|e| e["resource"].clone()),
            );
            let next = bundle["link"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["relation"] == "next")
                .and_then(|l| l["url"].as_str())
                .and_then(|u| u.split_once('?'))
                .map(|(_, q)| parse_query_string(q));
            match next {
                Some(p) if out.len() < limit => params = p,
                _ => break,
            }
        }
        Ok(out)
    }

    /// Queues reminders of every active prescription's doses from now to `horizon` ahead;
    /// returns how many were new. Without a hub it does nothing.
    ///
    /// # Errors
    /// When storage fails (what was queued before stays queued).
    pub async fn queue_dose_reminders(
        &self,
        horizon: SignedDuration,
    ) -> Result<usize, RecordError> {
        let Some(hub) = self.hub.clone() else {
            return Ok(0);
        };
        let Some(accounts) = self.accounts.clone() else {
            return Ok(0);
        };
        let ctx = self.reminders_context();
        let with_accounts = accounts.patients_with_accounts(MAX_PATIENTS).await;
        let mut active = Vec::new();
        for chunk in with_accounts.chunks(100) {
            let patients = chunk
                .iter()
                .map(|p| format!("Patient/{p}"))
                .collect::<Vec<_>>()
                .join(",");
            active.extend(
                self.every_page(
                    &ctx,
                    "MedicationRequest",
                    vec![
                        ("status".into(), "active".into()),
                        ("patient".into(), patients),
                    ],
                    MAX_PER_PASS,
                )
                .await?,
            );
        }
        let now = Timestamp::from_microsecond(self.records.core().now())
            .map_err(|_| RecordError::Corrupt)?;
        let until = now.checked_add(horizon).unwrap_or(now);
        // The patients' time zones, read a page at a time.
        let mut patients: Vec<String> = active
            .iter()
            .filter_map(|r| {
                r["subject"]["reference"]
                    .as_str()
                    .and_then(|s| s.strip_prefix("Patient/"))
                    .map(str::to_string)
            })
            .collect();
        patients.sort();
        patients.dedup();
        let mut zones: HashMap<String, TimeZone> = HashMap::new();
        for chunk in patients.chunks(100) {
            for p in self
                .every_page(
                    &ctx,
                    "Patient",
                    vec![("_id".into(), chunk.join(","))],
                    chunk.len(),
                )
                .await?
            {
                if let Some(id) = p["id"].as_str() {
                    zones.insert(id.to_string(), zone_of(&p));
                }
            }
        }
        let mut queued = 0;
        let mut rows = Vec::new();
        for r in &active {
            let (Some(id), Some(patient)) = (
                r["id"].as_str(),
                r["subject"]["reference"]
                    .as_str()
                    .and_then(|s| s.strip_prefix("Patient/")),
            ) else {
                continue;
            };
            let tz = zones.get(patient).cloned().unwrap_or(TimeZone::UTC);
            for due in crate::doses::due_between(self, r, now, until, &tz) {
                let notice = hub.dose_reminder(dose_event(id, due));
                let row = hub
                    .prepare_scheduled(
                        &Recipient::Patient(patient.to_string()),
                        &notice,
                        due.as_microsecond(),
                    )
                    .await
                    .map_err(|_| {
                        RecordError::NotSupported("notifications are unavailable".into())
                    })?;
                rows.push(row);
            }
            if rows.len() >= PAGE {
                queued += self.queue_rows(std::mem::take(&mut rows)).await?;
            }
        }
        queued += self.queue_rows(rows).await?;
        Ok(queued)
    }

    async fn queue_rows(
        &self,
        rows: Vec<medmesh_store::NotificationOutboxRow>,
    ) -> Result<usize, RecordError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let mut tx = self.records.core().begin_write().await?;
        let mut added = 0;
        for row in &rows {
            if tx.queue_notification(row).await? {
                added += 1;
            }
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Withdraws, inside `tx`, the reminders of prescription `id` not yet sent.
    pub(crate) async fn withdraw_dose_reminders(
        tx: &mut medmesh_at_rest::WriteTx,
        patient: &str,
        id: &str,
    ) -> Result<(), RecordError> {
        let (account, prefix) = NotificationHub::scheduled_prefix(
            &Recipient::Patient(patient.to_string()),
            &format!("dose:{id}:"),
        );
        tx.withdraw_notifications(&account, &prefix).await?;
        Ok(())
    }
}
