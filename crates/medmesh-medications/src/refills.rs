//! Refills: a patient asks for one, the prescriber approves (a renewal, prescribed as a
//! draft with the checks run again, to sign) or declines with a reason, and the pharmacy
//! and the patient are told either way. The prescriber's worklist lists the requests open
//! for them across their patients.

use medmesh_fhir::IssueType;
use medmesh_kernel::RequestContext;
use medmesh_notifications::Recipient;
use medmesh_policy::Action;
use medmesh_records::RecordError;
use serde_json::{Value, json};

use crate::pharmacy::{TASK_CODE_SYSTEM, patient_of, reason_of};
use crate::service::{MAX_REASON, MedicationService, Override, Prescribed, instant, invalid};

/// The most open refill requests a worklist shows.
pub const MAX_WORKLIST: usize = 200;

/// An open medication Task (a refill request, an adherence review), as the prescriber's
/// worklist shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MedicationTaskItem {
    /// The Task's id (what deciding names).
    pub task: String,
    /// The prescription's id.
    pub prescription: String,
    /// The patient's id.
    pub patient: String,
    /// The patient's name.
    pub patient_name: String,
    /// The medication in words.
    pub medication: String,
    /// The patient's note (a refill), or what was found (a review).
    pub note: Option<String>,
    /// When it was asked or raised (a FHIR instant).
    pub asked: String,
}

impl MedicationService {
    /// The refill requests open for the calling prescriber, oldest first, across the
    /// patients the PDP lets them see (at most [`MAX_WORKLIST`]).
    ///
    /// # Errors
    /// [`RecordError::Invalid`] (403) for anyone but a practitioner.
    pub async fn refill_requests(
        &self,
        ctx: &RequestContext,
    ) -> Result<Vec<MedicationTaskItem>, RecordError> {
        self.open_tasks(ctx, "refill-request").await
    }

    /// The adherence reviews open for the calling clinician (see [`crate::alerts`]).
    ///
    /// # Errors
    /// As [`Self::refill_requests`].
    pub async fn adherence_reviews(
        &self,
        ctx: &RequestContext,
    ) -> Result<Vec<MedicationTaskItem>, RecordError> {
        self.open_tasks(ctx, crate::alerts::ADHERENCE_REVIEW).await
    }

    async fn open_tasks(
        &self,
        ctx: &RequestContext,
        code: &str,
    ) -> Result<Vec<MedicationTaskItem>, RecordError> {
        let me = crate::service::prescriber_of(ctx)?;
        let params = vec![
            ("owner".to_string(), me),
            ("status".to_string(), "requested".to_string()),
            ("code".to_string(), format!("{TASK_CODE_SYSTEM}|{code}")),
            ("_sort".to_string(), "authored-on".to_string()),
            ("_count".to_string(), MAX_WORKLIST.to_string()),
        ];
        let bundle = self
            .records
            .search(ctx, "Task", &params, medmesh_fhir::search::Handling::Strict)
            .await?;
        let mut out = Vec::new();
        for task in bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| &e["resource"])
        {
            let Some(rx) = task["focus"]["reference"]
                .as_str()
                .and_then(|r| r.strip_prefix("MedicationRequest/"))
            else {
                continue;
            };
            // A prescription the caller no longer reads is left out, not an error.
            let request = match self.read_as(ctx, "MedicationRequest", rx).await {
                Ok((r, _)) => r,
                Err(RecordError::NotFound) => continue,
                Err(e) => return Err(e),
            };
            let patient = patient_of(&request);
            let patient_name = match self.records.read(ctx, "Patient", &patient).await {
                Ok(found) => medmesh_fhir::names::human_name(&found.resource).unwrap_or_default(),
                Err(RecordError::NotFound) => String::new(),
                Err(e) => return Err(e),
            };
            out.push(MedicationTaskItem {
                task: task["id"].as_str().unwrap_or_default().to_string(),
                prescription: rx.to_string(),
                patient,
                patient_name,
                medication: crate::prescription::medication_words(&request).unwrap_or_default(),
                note: task["note"][0]["text"]
                    .as_str()
                    .or_else(|| task["description"].as_str())
                    .map(str::to_string),
                asked: task["authoredOn"].as_str().unwrap_or_default().to_string(),
            });
        }
        Ok(out)
    }

    /// The patient asks for a refill of prescription `id`: a Task (`refill-request`, status
    /// requested) owned by the prescriber, who is told.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] for a prescription that was cancelled, stopped or never
    /// signed, or one with a refill request open already.
    pub async fn request_refill(
        &self,
        ctx: &RequestContext,
        id: &str,
        note: Option<&str>,
    ) -> Result<Value, RecordError> {
        let core = self.records.core();
        let (request, _) = self.read_as(ctx, "MedicationRequest", id).await?;
        if !matches!(request["status"].as_str(), Some("active" | "completed")) {
            return Err(invalid(
                "a refill is asked of an active or completed prescription",
            ));
        }
        let Some(prescriber) = request["requester"]["reference"]
            .as_str()
            .filter(|r| r.starts_with("Practitioner/"))
            .map(str::to_string)
        else {
            return Err(invalid("this prescription has no prescriber to ask"));
        };
        let open = self
            .all_of(
                ctx,
                "Task",
                vec![
                    ("focus", format!("MedicationRequest/{id}")),
                    ("status", "requested".into()),
                ],
            )
            .await?;
        if !open.is_empty() {
            return Err(invalid("a refill of this prescription was asked already"));
        }
        let patient = patient_of(&request);
        let task_id = core.ids().new_id();
        let mut task = json!({
            "resourceType": "Task",
            "id": task_id,
            "status": "requested",
            "intent": "order",
            "code": {"coding": [{"system": TASK_CODE_SYSTEM, "code": "refill-request", "display": "Refill request"}]},
            "focus": {"reference": format!("MedicationRequest/{id}")},
            "for": {"reference": format!("Patient/{patient}")},
            "authoredOn": instant(core.now()),
            "requester": {"reference": format!("Patient/{patient}")},
            "owner": {"reference": prescriber},
        });
        if let Some(n) = note.map(str::trim).filter(|n| !n.is_empty()) {
            if n.chars().count() > MAX_REASON {
                return Err(invalid(format!(
                    "a note is at most {MAX_REASON} characters"
                )));
            }
            task["note"] = json!([{"text": n}]);
        }
        core.check_resource("Task", &task)?;
        let grant = core.authorize(ctx, Action::Create, Some("Task")).await?;
        let rows = self
            .notices(
                self.accounts_of(&prescriber).await,
                &format!("refill-request:{task_id}"),
            )
            .await?;
        let mut tx = core.begin_write().await?;
        let out = core
            .write_version(ctx, &mut tx, &grant, "Task", &task_id, task, None)
            .await?;
        self.record_step(
            ctx,
            &mut tx,
            &grant,
            "refill-request",
            "Task",
            vec![task_id.clone(), format!("MedicationRequest/{id}")],
            &patient,
        )
        .await?;
        Self::commit_with(tx, &rows).await?;
        out.resource.ok_or(RecordError::NotFound)
    }

    /// The prescriber decides a refill request. Declined: the Task is rejected with the
    /// reason. Approved: a renewal of the prescription is prescribed as a draft (the safety
    /// checks run again, with `overrides`; the old prescription is not its own duplicate),
    /// with `refills` refills (default as before) and the same pharmacy, and the Task is
    /// completed with the renewal as its output; the prescriber then signs the renewal. The
    /// patient and the pharmacy are told either way.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] for a request already decided, or a decline without a
    /// reason; [`RecordError::Invalid`] (403) for anyone but the prescriber it is for.
    pub async fn decide_refill(
        &self,
        ctx: &RequestContext,
        task_id: &str,
        approve: bool,
        reason: Option<&str>,
        refills: Option<u32>,
        overrides: &[Override],
    ) -> Result<(Value, Option<Prescribed>), RecordError> {
        let core = self.records.core();
        let (mut task, version, _) = self
            .open_task_of_mine(
                ctx,
                task_id,
                "refill-request",
                "this refill request was decided already",
                "only the prescriber asked decides a refill request",
            )
            .await?;
        let focus = task["focus"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("MedicationRequest/"))
            .unwrap_or_default()
            .to_string();
        let (original, _) = self.read_as(ctx, "MedicationRequest", &focus).await?;
        let patient = patient_of(&original);
        let mut renewal = None;
        if approve {
            let mut draft = json!({
                "resourceType": "MedicationRequest",
                "intent": original["intent"].as_str().unwrap_or("order"),
                "subject": original["subject"],
                "priorPrescription": {"reference": format!("MedicationRequest/{focus}")},
            });
            for key in [
                "medicationCodeableConcept",
                "medicationReference",
                "contained",
                "dosageInstruction",
                "dispenseRequest",
                "substitution",
                "reasonCode",
            ] {
                if let Some(v) = original.get(key) {
                    draft[key] = v.clone();
                }
            }
            if let Some(n) = refills {
                draft["dispenseRequest"]["numberOfRepeatsAllowed"] = json!(n);
            }
            match Box::pin(self.prescribe(ctx, draft, overrides)).await? {
                Prescribed::Written {
                    prescription,
                    detected_issues,
                } => {
                    renewal = Some(Prescribed::Written {
                        prescription,
                        detected_issues,
                    });
                }
                needs => return Ok((task, Some(needs))),
            }
            task["status"] = json!("completed");
            if let Some(Prescribed::Written { prescription, .. }) = &renewal {
                task["output"] = json!([{
                    "type": {"text": "renewal"},
                    "valueReference": {"reference": format!("MedicationRequest/{}", prescription["id"].as_str().unwrap_or_default())},
                }]);
            }
        } else {
            let why = reason_of(reason.unwrap_or_default())?;
            task["status"] = json!("rejected");
            task["statusReason"] = json!({"text": why});
        }
        if let Some(m) = task.as_object_mut() {
            m.remove("meta");
        }
        core.check_resource("Task", &task)?;
        let grant = core.authorize(ctx, Action::Update, Some("Task")).await?;
        let mut told = vec![Recipient::Patient(patient.clone())];
        if let Some(pharmacy) = original["dispenseRequest"]["performer"]["reference"].as_str() {
            told.extend(self.accounts_of(pharmacy).await);
        }
        let rows = self
            .notices(told, &format!("refill-decided:{task_id}"))
            .await?;
        let action = if approve {
            "refill-approved"
        } else {
            "refill-declined"
        };
        let out = self
            .update_step(
                ctx,
                &grant,
                ("Task", task_id, version),
                task,
                action,
                vec![task_id.to_string(), format!("MedicationRequest/{focus}")],
                &patient,
                &rows,
            )
            .await?;
        Ok((out.unwrap_or(Value::Null), renewal))
    }

    /// The clinician closes an adherence review they own: the Task is completed, with what
    /// they did as its note (optional, at most [`MAX_REASON`] characters). Audited
    /// `adherence-reviewed`.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] for a Task that is not a review the caller reads;
    /// [`RecordError::Invalid`] for one closed already, or (403) one owned by someone else.
    pub async fn close_review(
        &self,
        ctx: &RequestContext,
        task_id: &str,
        note: Option<&str>,
    ) -> Result<Value, RecordError> {
        let core = self.records.core();
        let (mut task, version, me) = self
            .open_task_of_mine(
                ctx,
                task_id,
                crate::alerts::ADHERENCE_REVIEW,
                "this review was closed already",
                "only the clinician it was raised for closes a review",
            )
            .await?;
        task["status"] = json!("completed");
        task["lastModified"] = json!(instant(core.now()));
        if let Some(n) = note.map(str::trim).filter(|n| !n.is_empty()) {
            if n.chars().count() > MAX_REASON {
                return Err(invalid(format!(
                    "a note is at most {MAX_REASON} characters"
                )));
            }
            task["note"] = json!([{"text": n, "authorReference": {"reference": me}}]);
        }
        if let Some(m) = task.as_object_mut() {
            m.remove("meta");
        }
        let patient = task["for"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Patient/"))
            .unwrap_or_default()
            .to_string();
        core.check_resource("Task", &task)?;
        let grant = core.authorize(ctx, Action::Update, Some("Task")).await?;
        self.update_step(
            ctx,
            &grant,
            ("Task", task_id, version),
            task,
            "adherence-reviewed",
            vec![task_id.to_string()],
            &patient,
            &[],
        )
        .await?
        .ok_or(RecordError::NotFound)
    }

    /// Task `task_id` of `code`, still requested and owned by the calling practitioner, with
    /// its version and the practitioner's reference.
    async fn open_task_of_mine(
        &self,
        ctx: &RequestContext,
        task_id: &str,
        code: &str,
        done_already: &str,
        not_theirs: &str,
    ) -> Result<(Value, i64, String), RecordError> {
        let (task, version) = self.read_as(ctx, "Task", task_id).await?;
        let of_code = task["code"]["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["system"] == TASK_CODE_SYSTEM && c["code"] == code);
        if !of_code {
            return Err(RecordError::NotFound);
        }
        if task["status"] != "requested" {
            return Err(invalid(done_already));
        }
        let me = crate::service::prescriber_of(ctx)
            .map_err(|_| RecordError::invalid(IssueType::Forbidden, not_theirs))?;
        if task["owner"]["reference"].as_str() != Some(me.as_str()) {
            return Err(RecordError::invalid(IssueType::Forbidden, not_theirs));
        }
        Ok((task, version, me))
    }
}
