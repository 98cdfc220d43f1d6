//! The node's background workers, started by `medmesh serve` beside the HTTP server: the
//! bulk-export worker (which resumes unfinished jobs first), the signing-key refresher and
//! the audit checkpointer. Each logs a failure and carries on; none holds request state.

use std::sync::Arc;
use std::time::Duration;

use medmesh_audit_log::{AuditLogService, PushOutcome, WitnessTransport};
use medmesh_export::BulkExport;
use medmesh_identity::IdentityService;
use tokio::sync::mpsc;

/// Starts the export worker and queues the jobs a previous run left unfinished. Returns the
/// queue the HTTP server hands new jobs to.
pub async fn start_export_worker(export: Arc<BulkExport>) -> mpsc::UnboundedSender<String> {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let worker = export.clone();
    tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            if let Err(e) = worker.run_export(&job).await {
                tracing::error!(job = %job, error = %e, "export job failed");
            }
        }
    });
    match export.unfinished_exports().await {
        Ok(jobs) => {
            for j in jobs {
                tracing::info!(job = %j, "resuming export job");
                let _ = tx.send(j);
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot list unfinished export jobs"),
    }
    tx
}

/// Reloads signing keys and revocations every minute, so replicas pick up a rotation or a
/// revocation made elsewhere.
pub fn start_key_refresher(identity: Arc<IdentityService>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = identity.refresh_keys().await {
                tracing::error!(error = %e, "cannot refresh signing keys");
            }
        }
    });
}

/// Signs an audit checkpoint every `every` and pushes the newest to the witnesses that
/// take pushes (none when zero: checkpoints are then signed on demand and at shutdown).
pub fn start_checkpointer(
    audit_log: Arc<AuditLogService>,
    every: Duration,
    transport: Arc<dyn WitnessTransport>,
) {
    if every.is_zero() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = audit_log.checkpoint_now().await {
                tracing::error!(error = %e, "cannot sign an audit checkpoint");
                continue;
            }
            push_to_witnesses(&audit_log, transport.as_ref()).await;
        }
    });
}

/// One round of pushes; each witness's outcome is logged (sizes and names only).
pub async fn push_to_witnesses(audit_log: &AuditLogService, transport: &dyn WitnessTransport) {
    match audit_log.push_to_witnesses(transport).await {
        Ok(outcomes) => {
            for (witness, outcome) in outcomes {
                match outcome {
                    PushOutcome::Cosigned(size) => {
                        tracing::info!(%witness, size, "a witness cosigned the audit checkpoint");
                    }
                    PushOutcome::UpToDate => {}
                    PushOutcome::Failed(why) => {
                        tracing::warn!(%witness, %why, "a witness did not cosign the audit checkpoint");
                    }
                }
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot push the audit checkpoint to witnesses"),
    }
}

/// The interface engine's housekeeping, every `every`: prunes messages older than the
/// retention, and logs alerts (dead letters, silent senders, deep queues) at warn level for
/// the operator's log watcher.
/// Where the interface engine's alerts go: the node admins, through the notification hub
/// (by e-mail, as each chose; their words name no patient).
pub struct AlertRoute {
    /// The hub.
    pub hub: Arc<medmesh_notifications::NotificationHub>,
    /// Where the node admins are found.
    pub identity: Arc<dyn medmesh_store::IdentityStore>,
}

impl AlertRoute {
    /// Tells the node admins of `alerts`, each at most once an hour.
    async fn tell_admins(&self, alerts: &[String]) {
        if alerts.is_empty() {
            return;
        }
        let admins = match self
            .identity
            .users_with_role(medmesh_auth::Role::NodeAdmin.code(), None, None, 100)
            .await
        {
            Ok(users) => users.into_iter().map(|u| u.id).collect::<Vec<_>>(),
            Err(e) => {
                tracing::error!(error = %e, "the node admins could not be found to alert");
                return;
            }
        };
        let hour = crate::wiring::now_micros() / 3_600_000_000;
        for alert in alerts {
            // The same alert again within the hour is the same event: sent once. (Alerts
            // name senders, channels and counts, never a patient.)
            let key: String = alert.chars().take(200).collect();
            let mut notice = self.hub.notice(
                medmesh_notifications::Category::Operations,
                format!("hl7v2-alert/{hour}/{key}"),
            );
            notice.body = format!("{}\n\nHL7 v2: {alert}", notice.body);
            if let Err(e) = self.hub.notify_accounts(&admins, &notice).await {
                tracing::error!(error = %e, "an HL7 v2 alert could not be sent");
            }
        }
    }
}

pub fn start_hl7_housekeeping(
    engine: Arc<medmesh_interface_engine::InterfaceEngine>,
    route: AlertRoute,
    retention_days: u32,
    silence: Duration,
    max_queue: i64,
    every: Duration,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match engine.prune(retention_days).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(pruned = n, retention_days, "old HL7 v2 messages deleted"),
                Err(e) => tracing::error!(error = %e, "cannot prune HL7 v2 messages"),
            }
            let window = i64::try_from(every.as_micros()).unwrap_or(i64::MAX);
            let silence = i64::try_from(silence.as_micros()).unwrap_or(i64::MAX);
            match engine.alerts(window, silence, max_queue).await {
                Ok(alerts) => {
                    for alert in &alerts {
                        tracing::warn!(alert = %alert, "HL7 v2 alert");
                    }
                    route.tell_admins(&alerts).await;
                }
                Err(e) => tracing::error!(error = %e, "cannot check HL7 v2 alerts"),
            }
        }
    });
}

/// Raises adherence alerts every `every` (see `medmesh_medications::alerts`); the first pass
/// waits one period.
pub async fn adherence_alerts(
    medications: Arc<medmesh_medications::MedicationService>,
    every: std::time::Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        match medications.raise_adherence_alerts().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(raised = n, "adherence alerts raised"),
            Err(e) => tracing::warn!(error = %e, "adherence alerts could not be raised"),
        }
    }
}

/// Queues reminders of the doses to come every `every`, `horizon_hours` ahead (each pass
/// queues only what is not queued yet; see `medmesh_medications::reminders`).
pub async fn dose_reminders(
    medications: Arc<medmesh_medications::MedicationService>,
    every: std::time::Duration,
    horizon_hours: u64,
) {
    let horizon = jiff::SignedDuration::from_hours(i64::try_from(horizon_hours).unwrap_or(26));
    let mut tick = tokio::time::interval(every);
    // The first pass waits one period: a node starting (or a replica joining) is not
    // slowed by it, and the horizon leaves the time.
    tick.tick().await;
    loop {
        tick.tick().await;
        match medications.queue_dose_reminders(horizon).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(queued = n, "dose reminders queued"),
            Err(e) => tracing::warn!(error = %e, "dose reminders could not be queued"),
        }
    }
}
