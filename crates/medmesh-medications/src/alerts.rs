//! Adherence alerts to the care team, for the organizations that opt in. A pass (the binary
//! runs one every `adherence_alert_seconds`, a day by default) reads the patients whose
//! managing organization carries the extension [`EXT_ADHERENCE_ALERTS`] set to true, works
//! out each active prescription's proportion of days covered over 30 days (as the chart
//! shows it), and for one under 80% raises a **Task** `adherence-review` owned by its
//! prescriber (else the patient's GP), telling the prescriber and the patient's general
//! practitioners through the hub (the text names no one). A prescription gets no new alert
//! while one is open, nor within [`ALERT_AGAIN_AFTER_DAYS`] of the last. A prescription never
//! dispensed has no days covered, and so no alert: the figure is of dispenses.

use medmesh_auth::parse_scopes;
use medmesh_kernel::{Actor, OperationId, RequestContext};
use medmesh_policy::Action;
use medmesh_records::RecordError;
use serde_json::{Value, json};

use crate::adherence::Pdc;
use crate::doses::Adherence;
use crate::pharmacy::TASK_CODE_SYSTEM;
use crate::service::{MedicationService, instant};

/// The Organization extension (valueBoolean) by which an organization opts in.
pub const EXT_ADHERENCE_ALERTS: &str =
    "https://medmesh.dev/fhir/StructureDefinition/adherence-alerts";
/// Days before a prescription may be alerted on again.
pub const ALERT_AGAIN_AFTER_DAYS: i64 = 30;
/// The Task code of an alert.
pub const ADHERENCE_REVIEW: &str = "adherence-review";
/// At most this many organizations, and patients, are looked at in one pass.
pub const MAX_PER_PASS: usize = 100_000;

/// Whether an Organization opted in.
pub fn opted_in(organization: &Value) -> bool {
    organization["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["url"] == EXT_ADHERENCE_ALERTS && e["valueBoolean"] == true)
}

/// Whether a prescription whose earlier alerts are `tasks` may be alerted on at `now`
/// (microseconds): none open, and none raised in the last [`ALERT_AGAIN_AFTER_DAYS`].
pub fn may_alert(tasks: &[Value], now: i64) -> bool {
    let again_after = ALERT_AGAIN_AFTER_DAYS * 24 * 3_600_000_000;
    !tasks.iter().any(|t| {
        let open = matches!(
            t["status"].as_str(),
            Some(
                "draft"
                    | "requested"
                    | "received"
                    | "accepted"
                    | "ready"
                    | "in-progress"
                    | "on-hold"
            )
        );
        let recent = t["authoredOn"]
            .as_str()
            .and_then(medmesh_fhir::datetime::parse_range)
            .is_some_and(|r| now - r.lo < again_after);
        open || recent
    })
}

impl MedicationService {
    fn alerts_context(&self) -> RequestContext {
        #[allow(clippy::disallowed_methods)] // The medication service's own alerts.
        let actor = Actor::adherence_alerts(parse_scopes(
            "system/Organization.rs system/Patient.rs system/MedicationRequest.rs \
             system/MedicationDispense.rs system/MedicationAdministration.rs \
             system/MedicationStatement.rs system/Task.crs",
        ));
        RequestContext::new(
            actor,
            OperationId::new(self.records.core().ids().new_id()),
            None,
            String::new(),
        )
    }

    /// One pass: raises an alert for each prescription under the threshold, of the patients
    /// of the organizations that opted in; returns how many were raised.
    ///
    /// # Errors
    /// When storage fails (alerts raised before stay raised).
    pub async fn raise_adherence_alerts(&self) -> Result<usize, RecordError> {
        let ctx = self.alerts_context();
        let organizations = self
            .every_page(&ctx, "Organization", Vec::new(), MAX_PER_PASS)
            .await?;
        let opted: Vec<String> = organizations
            .iter()
            .filter(|o| opted_in(o))
            .filter_map(|o| o["id"].as_str().map(|id| format!("Organization/{id}")))
            .collect();
        let mut patients = Vec::new();
        for chunk in opted.chunks(100) {
            patients.extend(
                self.every_page(
                    &ctx,
                    "Patient",
                    vec![("organization".into(), chunk.join(","))],
                    MAX_PER_PASS,
                )
                .await?,
            );
        }
        let mut raised = 0;
        for patient in &patients {
            let Some(id) = patient["id"].as_str() else {
                continue;
            };
            for a in self.adherence(&ctx, id).await? {
                if let Some(pdc) = a.pdc30.filter(|p| p.days > 0 && p.below_threshold())
                    && self.raise_one(&ctx, patient, &a, pdc).await?
                {
                    raised += 1;
                }
            }
        }
        Ok(raised)
    }

    async fn raise_one(
        &self,
        ctx: &RequestContext,
        patient: &Value,
        a: &Adherence,
        pdc: Pdc,
    ) -> Result<bool, RecordError> {
        let core = self.records.core();
        let rx = format!("MedicationRequest/{}", a.prescription);
        let earlier = self
            .all_of(
                ctx,
                "Task",
                vec![
                    ("focus", rx.clone()),
                    ("code", format!("{TASK_CODE_SYSTEM}|{ADHERENCE_REVIEW}")),
                ],
            )
            .await?;
        if !may_alert(&earlier, core.now()) {
            return Ok(false);
        }
        let (request, _) = self
            .read_as(ctx, "MedicationRequest", &a.prescription)
            .await?;
        let gps: Vec<String> = patient["generalPractitioner"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|g| g["reference"].as_str())
            .filter(|r| r.starts_with("Practitioner/"))
            .map(str::to_string)
            .collect();
        let prescriber = request["requester"]["reference"]
            .as_str()
            .filter(|r| r.starts_with("Practitioner/"))
            .map(str::to_string);
        let Some(owner) = prescriber.clone().or_else(|| gps.first().cloned()) else {
            return Ok(false);
        };
        let patient_id = patient["id"].as_str().unwrap_or_default().to_string();
        let task_id = core.ids().new_id();
        let percent = (pdc.ratio() * 100.0).round();
        let task = json!({
            "resourceType": "Task",
            "id": task_id,
            "status": "requested",
            "intent": "order",
            "priority": "routine",
            "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": ADHERENCE_REVIEW,
                "display": "Adherence review"}]},
            "description": format!(
                "Days covered by dispenses over the last 30 days: {percent}% ({} of {}), under 80%.",
                pdc.covered, pdc.days
            ),
            "focus": {"reference": rx},
            "for": {"reference": format!("Patient/{patient_id}")},
            "authoredOn": instant(core.now()),
            "owner": {"reference": owner},
        });
        core.check_resource("Task", &task)?;
        let grant = core.authorize(ctx, Action::Create, Some("Task")).await?;
        let mut told = Vec::new();
        for who in prescriber.iter().chain(gps.iter()) {
            for r in self.accounts_of(who).await {
                if !told.contains(&r) {
                    told.push(r);
                }
            }
        }
        let rows = self
            .notices(told, &format!("adherence-review:{task_id}"))
            .await?;
        let mut tx = core.begin_write().await?;
        core.write_version(ctx, &mut tx, &grant, "Task", &task_id, task, None)
            .await?;
        self.record_step(
            ctx,
            &mut tx,
            &grant,
            "adherence-alert",
            "Task",
            vec![task_id, rx],
            &patient_id,
        )
        .await?;
        Self::commit_with(tx, &rows).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_organization_opts_in_with_its_extension() {
        let on = json!({"resourceType": "Organization",
            "extension": [{"url": EXT_ADHERENCE_ALERTS, "valueBoolean": true}]});
        assert!(opted_in(&on));
        let off = json!({"resourceType": "Organization",
            "extension": [{"url": EXT_ADHERENCE_ALERTS, "valueBoolean": false}]});
        assert!(!opted_in(&off));
        assert!(!opted_in(&json!({"resourceType": "Organization"})));
    }

    #[test]
    fn an_alert_waits_while_one_is_open_and_for_thirty_days() {
        // 2026-12-04T00:00:00Z in microseconds.
        let now = 1_796_342_400_000_000_i64;
        assert!(may_alert(&[], now));
        let open = json!({"status": "requested", "authoredOn": "2026-10-01T00:00:00Z"});
        assert!(!may_alert(&[open], now), "an open one");
        let recent = json!({"status": "completed", "authoredOn": "2026-11-20T00:00:00Z"});
        assert!(!may_alert(&[recent], now), "14 days ago");
        let old = json!({"status": "completed", "authoredOn": "2026-10-01T00:00:00Z"});
        assert!(may_alert(&[old], now), "64 days ago, done");
    }
}
