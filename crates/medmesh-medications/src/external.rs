//! Prescriptions and dispenses recorded from elsewhere: a hospital pharmacy system's HL7 v2
//! RDE^O11 (a MedicationRequest) and RDS^O13 (MedicationDispenses), mapped by
//! `medmesh-hl7v2-fhir` and written by the interface engine's transaction through the record
//! service (the PDP, the audit log, encryption at rest). The engine then hands what it wrote
//! to [`MedicationService::follow_external`], which does what the medication loop does for
//! its own prescriptions:
//!
//! - an order seen for the first time is checked like one prescribed here (allergies,
//!   duplicate therapy, interactions, dose limits); it is not stopped (the sending system's
//!   prescriber ordered it), but each finding is recorded as a DetectedIssue with status
//!   `preliminary` and no mitigation, and the patient's general practitioners are told;
//! - an order that is no longer active (discontinued, cancelled, held) has its dose
//!   reminders not yet sent withdrawn;
//! - a dispense counts against its prescription: the dispenses that use it up complete it,
//!   and the patient is told.
//!
//! The lifecycle holds for these writers too: a change of status R4 does not allow is
//! refused before anything is written (`channel.rs`), so the sender gets an error
//! acknowledgement and the message is kept as a dead letter.

use medmesh_auth::parse_scopes;
use medmesh_kernel::{Actor, OperationId, RequestContext};
use medmesh_notifications::Recipient;
use medmesh_policy::Action;
use medmesh_records::RecordError;
use serde_json::json;

use crate::dispensing::remaining;
use crate::pharmacy::patient_of;
use crate::service::{MedicationService, instant};
use crate::status::RequestStatus;

impl MedicationService {
    fn follow_up_context(&self) -> RequestContext {
        #[allow(clippy::disallowed_methods)] // The medication service's own follow-up.
        let actor = Actor::medication_follow_up(parse_scopes(
            "system/MedicationRequest.rs system/MedicationDispense.rs \
             system/AllergyIntolerance.rs system/Medication.rs system/Patient.rs \
             system/DetectedIssue.crs",
        ));
        RequestContext::new(
            actor,
            OperationId::new(self.records.core().ids().new_id()),
            None,
            String::new(),
        )
    }

    /// Follows up the resources (`Type/id`) a message from elsewhere wrote.
    ///
    /// # Errors
    /// When storage fails; what was done before stays done, and a replay of the message
    /// does again only what is left (findings recorded once, a completion once).
    pub async fn follow_external(&self, resources: &[String]) -> Result<(), RecordError> {
        let ctx = self.follow_up_context();
        for r in resources {
            if let Some(id) = r.strip_prefix("MedicationRequest/") {
                self.follow_request(&ctx, id).await?;
            } else if let Some(id) = r.strip_prefix("MedicationDispense/") {
                self.follow_dispense(&ctx, id).await?;
            }
        }
        Ok(())
    }

    async fn follow_request(&self, ctx: &RequestContext, id: &str) -> Result<(), RecordError> {
        let (request, version) = self.read_as(ctx, "MedicationRequest", id).await?;
        let patient = patient_of(&request);
        let status = request["status"].as_str().and_then(RequestStatus::parse);
        if status != Some(RequestStatus::Active) {
            let mut tx = self.records.core().begin_write().await?;
            Self::withdraw_dose_reminders(&mut tx, &patient, id).await?;
            tx.commit().await?;
            return Ok(());
        }
        if version != 1 {
            return Ok(());
        }
        let warnings = self.warnings(ctx, &patient, &request).await?;
        if warnings.is_empty() {
            return Ok(());
        }
        let recorded = self
            .all_of(
                ctx,
                "DetectedIssue",
                vec![("implicated", format!("MedicationRequest/{id}"))],
            )
            .await?;
        let new: Vec<_> = warnings
            .iter()
            .filter(|w| !recorded.iter().any(|d| w.recorded_by(d)))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let core = self.records.core();
        let grant = core
            .authorize(ctx, Action::Create, Some("DetectedIssue"))
            .await?;
        let mut told = Vec::new();
        let gps = self
            .records
            .read(ctx, "Patient", &patient)
            .await
            .map(|p| p.resource["generalPractitioner"].clone())
            .unwrap_or_default();
        for g in gps.as_array().into_iter().flatten() {
            if let Some(r) = g["reference"].as_str() {
                told.extend(self.accounts_of(r).await);
            }
        }
        let rows = self
            .notices(told, &format!("external-order-checked:{id}"))
            .await?;
        let mut tx = core.begin_write().await?;
        let mut ids = Vec::new();
        for w in new {
            let (code, display, severity) = w.issue_code();
            let issue_id = core.ids().new_id();
            let mut implicated = vec![json!({"reference": format!("MedicationRequest/{id}")})];
            implicated.extend(w.implicated().map(|r| json!({"reference": r})));
            let issue = json!({
                "resourceType": "DetectedIssue",
                "id": issue_id,
                "status": "preliminary",
                "code": {"coding": [{"system": crate::service::V3_ACT_CODE, "code": code, "display": display}]},
                "severity": severity,
                "patient": {"reference": format!("Patient/{patient}")},
                "identifiedDateTime": instant(core.now()),
                "implicated": implicated,
                "detail": w.text,
            });
            core.check_resource("DetectedIssue", &issue)?;
            core.write_version(
                ctx,
                &mut tx,
                &grant,
                "DetectedIssue",
                &issue_id,
                issue,
                None,
            )
            .await?;
            ids.push(issue_id);
        }
        ids.push(format!("MedicationRequest/{id}"));
        self.record_step(
            ctx,
            &mut tx,
            &grant,
            "external-order-checked",
            "DetectedIssue",
            ids,
            &patient,
        )
        .await?;
        Self::commit_with(tx, &rows).await
    }

    async fn follow_dispense(&self, ctx: &RequestContext, id: &str) -> Result<(), RecordError> {
        let (dispense, _) = self.read_as(ctx, "MedicationDispense", id).await?;
        let Some(rx) = dispense["authorizingPrescription"][0]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("MedicationRequest/"))
            .map(str::to_string)
        else {
            return Ok(());
        };
        let (request, version) = self.read_as(ctx, "MedicationRequest", &rx).await?;
        let patient = patient_of(&request);
        let core = self.records.core();
        let rows = self
            .notices(
                vec![Recipient::Patient(patient.clone())],
                &format!("rx-dispensed:{id}"),
            )
            .await?;
        // Read before the write transaction opens (a read inside it would wait for it).
        let used_up = request["status"] == "active"
            && remaining(
                &request,
                &self
                    .all_of(
                        ctx,
                        "MedicationDispense",
                        vec![("prescription", format!("MedicationRequest/{rx}"))],
                    )
                    .await?,
            )
            .used_up();
        let mut tx = core.begin_write().await?;
        if used_up {
            // Dispensed in full elsewhere: the node completes it, as it does when its own
            // pharmacies dispense the last of it.
            self.complete_in(ctx, &mut tx, &request, &rx, version, &patient)
                .await?;
        }
        Self::commit_with(tx, &rows).await
    }
}
