//! The prescribing service, on the record service: a prescription is written as a draft
//! after the safety checks (each warning overridden with a reason becomes a DetectedIssue in
//! the same transaction), activated only with its prescriber's Ed25519 signature over the
//! [`PrescriptionClaims`] (kept in a Provenance), and moved through R4's lifecycle with
//! every change checked ([`crate::status::check_transition`]) and audited.
//!
//! Every read and write goes through the record core as the caller, so the PDP decides (a
//! prescriber writes only for patients in their reach), bodies are sealed and the audit
//! entry commits with the data.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use medmesh_audit::Outcome;
use medmesh_crypto::wire::{EXT_SIGNED_CLAIMS, EXT_SIGNING_KEY, PRESCRIPTION_SIG_FORMAT};
use medmesh_crypto::{PrescriptionClaims, UploadSignature, UserPublicKey};
use medmesh_fhir::IssueType;
use medmesh_fhir::search::Handling;
use medmesh_kernel::RequestContext;
use medmesh_notifications::{Category, NotificationHub, Recipient};
use medmesh_policy::{Action, Pdp};
use medmesh_records::{RecordError, RecordService};
use medmesh_store::KeyDirectoryStore;
use medmesh_store::NotificationOutboxRow;
use serde_json::{Value, json};

use crate::knowledge::KnowledgeBase;
use crate::prescription::{EXT_FREE_TEXT, claims_of, medication_words};
use crate::safety::{Finding, Matched, allergy_substance, check, substance_of};
use crate::schedule::{MealTimes, ScheduleError, read_dosage};
use crate::status::{Intent, RequestStatus, check_transition};

/// At most this many allergies or active prescriptions are read for the checks; a patient
/// with more is refused rather than checked in part.
pub const MAX_CHECKED: usize = 1000;
/// The longest override reason, characters.
pub const MAX_REASON: usize = 1000;
/// How far a signature's time may be from the node's clock, microseconds (10 minutes).
pub const SIGNATURE_SKEW: i64 = 10 * 60 * 1_000_000;

/// HL7 v3 ActCode, the DetectedIssue codes' system.
pub(crate) const V3_ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// A warning the prescriber must override, with a reason, before the prescription is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// What an override names: `allergy:<AllergyIntolerance id>`, `duplicate:<MedicationRequest
    /// id>`, `interaction:<MedicationRequest id>`, `dose:<ingredient>`.
    pub key: String,
    /// `allergy`, `duplicate`, `interaction` or `dose`.
    pub kind: &'static str,
    /// The warning in words, for the prescriber.
    pub text: String,
}

impl Warning {
    /// The resource the warning is about besides the new prescription: the allergy, or the
    /// other prescription; none for a dose over its limit.
    pub fn implicated(&self) -> Option<String> {
        match self.key.split_once(':') {
            Some(("allergy", id)) => Some(format!("AllergyIntolerance/{id}")),
            Some(("dose", _)) | None => None,
            Some((_, id)) => Some(format!("MedicationRequest/{id}")),
        }
    }

    /// The DetectedIssue code (HL7 v3 ActCode), its display and the severity it records.
    pub fn issue_code(&self) -> (&'static str, &'static str, &'static str) {
        match self.kind {
            "allergy" => ("ALGY", "Allergy Alert", "high"),
            "interaction" => ("DRG", "Drug Interaction Alert", "high"),
            "dose" => ("DOSEH", "High Dose Alert", "high"),
            _ => ("DUPTHPY", "Duplicate Therapy Alert", "moderate"),
        }
    }

    /// Whether DetectedIssue `issue` already records an override of this warning: its code,
    /// and what it implicates besides the prescription (for a dose, its detail names the
    /// ingredient).
    pub fn recorded_by(&self, issue: &Value) -> bool {
        let code = issue["code"]["coding"][0]["code"].as_str();
        if code != Some(self.issue_code().0) {
            return false;
        }
        match self.implicated() {
            Some(other) => issue["implicated"][1]["reference"].as_str() == Some(other.as_str()),
            None => issue["detail"].as_str() == Some(self.text.as_str()),
        }
    }
}

/// A prescriber's decision to go on despite a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The warning's key.
    pub warning: String,
    /// Why (kept in the DetectedIssue's mitigation).
    pub reason: String,
}

/// What prescribing did.
#[derive(Debug, Clone)]
pub enum Prescribed {
    /// The draft was written, with a DetectedIssue for each overridden warning.
    Written {
        /// The MedicationRequest as stored.
        prescription: Value,
        /// The DetectedIssues as stored.
        detected_issues: Vec<Value>,
    },
    /// Nothing was written: these warnings need an override first.
    NeedsOverride(Vec<Warning>),
}

/// A prescriber's signature over a prescription's claims.
#[derive(Debug, Clone)]
pub struct Signature {
    /// When it was signed (the claims' `time`, a FHIR instant).
    pub time: String,
    /// The Ed25519 signature, base64.
    pub signature: String,
    /// The signing key, base64 (one of the prescriber's in the key directory).
    pub key: String,
}

/// The text a prescriber signs, and the version of the draft it was made from.
#[derive(Debug, Clone)]
pub struct SigningText {
    /// The exact bytes to sign, as text.
    pub text: String,
    /// The draft's version: activating another version is refused.
    pub version: i64,
}

/// Whose accounts to tell: an adapter over the identity store (the binary's).
#[async_trait::async_trait]
pub trait MedicationAccounts: Send + Sync + 'static {
    /// The user ids of the accounts of `Practitioner/<practitioner>`.
    async fn prescriber_accounts(&self, practitioner: &str) -> Vec<String>;
    /// The user ids of the pharmacists of `Organization/<pharmacy>`.
    async fn pharmacy_accounts(&self, pharmacy: &str) -> Vec<String>;
    /// The patients (Patient ids) who have a live account here, at most `limit`: the ones
    /// dose reminders are for.
    async fn patients_with_accounts(&self, limit: u32) -> Vec<String>;
}

/// Prescribing, signing, the prescription lifecycle, pharmacies and refills.
pub struct MedicationService {
    pub(crate) records: Arc<RecordService>,
    directory: Arc<dyn KeyDirectoryStore>,
    meals: MealTimes,
    knowledge: Arc<KnowledgeBase>,
    pub(crate) hub: Option<Arc<NotificationHub>>,
    pub(crate) accounts: Option<Arc<dyn MedicationAccounts>>,
}

impl std::fmt::Debug for MedicationService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MedicationService").finish_non_exhaustive()
    }
}

/// Milligrams in words: whole when whole, else to three decimals without trailing zeros.
fn round_mg(mg: f64) -> String {
    if (mg - mg.round()).abs() < 1e-9 {
        format!("{}", mg.round())
    } else {
        let s = format!("{mg:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A business-rule refusal (422), in words for the user.
pub(crate) fn invalid(message: impl Into<String>) -> RecordError {
    RecordError::invalid(IssueType::BusinessRule, message)
}

fn bad_signature(message: &str) -> RecordError {
    RecordError::BadSignature(message.to_string())
}

/// A FHIR instant (UTC, whole seconds) of microseconds since the epoch.
pub(crate) fn instant(micros: i64) -> String {
    jiff::Timestamp::from_microsecond(micros)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn bare<'a>(reference: &'a str, rt: &str) -> &'a str {
    reference
        .strip_prefix(rt)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(reference)
}

fn status_of(resource: &Value) -> Result<RequestStatus, RecordError> {
    resource["status"]
        .as_str()
        .and_then(RequestStatus::parse)
        .ok_or_else(|| invalid("the prescription has no known status"))
}

fn intent_of(resource: &Value) -> Result<Intent, RecordError> {
    resource["intent"]
        .as_str()
        .and_then(Intent::parse)
        .ok_or_else(|| invalid("the prescription has no known intent"))
}

/// Whether `request` may be signed into an active prescription: a draft of a
/// prescription's intent.
fn check_signable(request: &Value) -> Result<(), RecordError> {
    let status = status_of(request)?;
    if status != RequestStatus::Draft {
        return Err(invalid(format!(
            "only a draft is signed; this prescription is {status}"
        )));
    }
    check_transition(intent_of(request)?, status, RequestStatus::Active, false)
        .map_err(|e| invalid(e.to_string()))
}

/// Who the caller is in the record: their Practitioner, or their Patient.
pub(crate) fn author_reference(ctx: &RequestContext) -> Option<String> {
    if let Some(c) = ctx.actor().clinician() {
        return Some(c.practitioner.clone());
    }
    ctx.actor().patient().map(|p| format!("Patient/{p}"))
}

/// The prescriber: the actor's own Practitioner (only a practitioner prescribes).
pub(crate) fn prescriber_of(ctx: &RequestContext) -> Result<String, RecordError> {
    ctx.actor()
        .clinician()
        .map(|c| c.practitioner.clone())
        .ok_or_else(|| RecordError::invalid(IssueType::Forbidden, "only a practitioner prescribes"))
}

impl MedicationService {
    /// The service over `records`, checking signatures against `directory`.
    pub fn new(records: Arc<RecordService>, directory: Arc<dyn KeyDirectoryStore>) -> Self {
        Self {
            records,
            directory,
            meals: MealTimes::default(),
            knowledge: Arc::new(KnowledgeBase::shipped()),
            hub: None,
            accounts: None,
        }
    }

    /// The meal times `when` codes are read against.
    pub(crate) fn meals(&self) -> &MealTimes {
        &self.meals
    }

    /// Checks interactions and dose limits against `knowledge` (by default the base that
    /// ships with the node: the ONC high-priority list).
    #[must_use]
    pub fn with_knowledge(mut self, knowledge: KnowledgeBase) -> Self {
        self.knowledge = Arc::new(knowledge);
        self
    }

    /// Tells patients, prescribers and pharmacies of each step through `hub`, finding their
    /// accounts in `accounts`.
    #[must_use]
    pub fn with_notices(
        mut self,
        hub: Arc<NotificationHub>,
        accounts: Arc<dyn MedicationAccounts>,
    ) -> Self {
        self.hub = Some(hub);
        self.accounts = Some(accounts);
        self
    }

    /// The outbox rows that tell `recipients` of `event` (PHI-free texts: "there is news
    /// about your medications"), to queue in the transaction of what they tell of.
    pub(crate) async fn notices(
        &self,
        recipients: Vec<Recipient>,
        event: &str,
    ) -> Result<Vec<NotificationOutboxRow>, RecordError> {
        let Some(hub) = &self.hub else {
            return Ok(Vec::new());
        };
        let notice = hub.notice(Category::Medications, event);
        let now = self.records.core().now();
        let mut rows = Vec::new();
        for who in recipients {
            rows.push(
                hub.prepare_scheduled(&who, &notice, now)
                    .await
                    .map_err(|_| {
                        RecordError::NotSupported("notifications are unavailable".into())
                    })?,
            );
        }
        Ok(rows)
    }

    /// The accounts of a prescriber (`Practitioner/x`) and of a pharmacy (`Organization/o`).
    pub(crate) async fn accounts_of(&self, reference: &str) -> Vec<Recipient> {
        let Some(accounts) = &self.accounts else {
            return Vec::new();
        };
        let ids = if let Some(p) = reference.strip_prefix("Practitioner/") {
            accounts.prescriber_accounts(p).await
        } else if let Some(o) = reference.strip_prefix("Organization/") {
            accounts.pharmacy_accounts(o).await
        } else {
            Vec::new()
        };
        ids.into_iter().map(Recipient::Account).collect()
    }

    /// Every resource of a search (up to [`MAX_CHECKED`]), read as the caller.
    pub(crate) async fn all_of(
        &self,
        ctx: &RequestContext,
        rt: &str,
        params: Vec<(&str, String)>,
    ) -> Result<Vec<Value>, RecordError> {
        let mut params: Vec<(String, String)> = params
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        params.push(("_count".into(), MAX_CHECKED.to_string()));
        let bundle = self
            .records
            .search(ctx, rt, &params, Handling::Strict)
            .await?;
        let more = bundle["link"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|l| l["relation"] == "next");
        if more {
            return Err(invalid(format!(
                "more than {MAX_CHECKED} {rt} resources to check: the checks are not made in part"
            )));
        }
        Ok(bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["search"]["mode"] != "outcome")
            .map(|e| e["resource"].clone())
            .collect())
    }

    /// The warnings for prescribing `request` to `patient`: its allergies, the same
    /// substance already active or on hold, an interaction with one of those in the
    /// knowledge base, and a daily dose over a limit the knowledge base holds.
    ///
    /// # Errors
    /// When the caller may not read the patient's allergies and medications (the checks
    /// are not skipped), or storage fails.
    pub async fn warnings(
        &self,
        ctx: &RequestContext,
        patient: &str,
        request: &Value,
    ) -> Result<Vec<Warning>, RecordError> {
        let patient_ref = format!("Patient/{patient}");
        let allergies = self
            .all_of(
                ctx,
                "AllergyIntolerance",
                vec![("patient", patient_ref.clone())],
            )
            .await?;
        let active = self
            .all_of(
                ctx,
                "MedicationRequest",
                vec![
                    ("patient", patient_ref),
                    ("status", "active,on-hold".into()),
                ],
            )
            .await?;
        let own_id = request["id"].as_str();
        // A renewal is not a duplicate of the prescription it renews.
        let renews = request["priorPrescription"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("MedicationRequest/"));
        let allergy_list: Vec<(String, _)> = allergies
            .iter()
            .filter_map(|a| Some((a["id"].as_str()?.to_string(), allergy_substance(a)?)))
            .collect();
        let active_list: Vec<(String, _)> = active
            .iter()
            .filter(|m| m["id"].as_str() != own_id && m["id"].as_str() != renews)
            .filter_map(|m| Some((m["id"].as_str()?.to_string(), substance_of(m))))
            .collect();
        let name = medication_words(request).unwrap_or_else(|| "this medication".into());
        let how = |m: Matched| match m {
            Matched::ByCode => "by its code",
            Matched::ByIngredient => "by its ingredient's name",
            Matched::ByName => "by name only (one of them is free text)",
        };
        let words = |list: &[Value], id: &str, path: &str| {
            list.iter()
                .find(|r| r["id"].as_str() == Some(id))
                .and_then(|r| {
                    let c = &r[path];
                    c["text"].as_str().map(str::to_string).or_else(|| {
                        c["coding"]
                            .as_array()?
                            .iter()
                            .find_map(|c| c["display"].as_str().map(str::to_string))
                    })
                })
                .unwrap_or_else(|| "a recorded substance".into())
        };
        let new = substance_of(request);
        let mut out: Vec<Warning> = check(&new, &allergy_list, &active_list)
            .into_iter()
            .map(|f| match f {
                Finding::Allergy { allergy, matched } => Warning {
                    text: format!(
                        "allergy: the patient has a recorded allergy to {}, which matches {name} {}",
                        words(&allergies, &allergy, "code"),
                        how(matched)
                    ),
                    key: format!("allergy:{allergy}"),
                    kind: "allergy",
                },
                Finding::Duplicate { request, matched } => Warning {
                    text: format!(
                        "duplicate therapy: {} is already prescribed and matches {name} {}",
                        active
                            .iter()
                            .find(|m| m["id"].as_str() == Some(request.as_str()))
                            .and_then(medication_words)
                            .unwrap_or_else(|| "a medication".into()),
                        how(matched)
                    ),
                    key: format!("duplicate:{request}"),
                    kind: "duplicate",
                },
            })
            .collect();
        for i in self.knowledge.interactions(&new, &active_list) {
            let other = active
                .iter()
                .find(|m| m["id"].as_str() == Some(i.request.as_str()))
                .and_then(medication_words)
                .unwrap_or_else(|| "a medication".into());
            out.push(Warning {
                text: format!(
                    "interaction: {name} ({}) with {other} ({}), already prescribed: {}, from the {}{}",
                    i.new_drug,
                    i.other_drug,
                    i.label,
                    i.source.name,
                    i.source
                        .severity
                        .as_deref()
                        .map(|s| format!(", which lists it as {s}"))
                        .unwrap_or_default()
                ),
                key: format!("interaction:{}", i.request),
                kind: "interaction",
            });
        }
        for l in self.knowledge.over_limits(&new, request, &self.meals) {
            out.push(Warning {
                text: format!(
                    "dose limit: {name} comes to {} mg of {} a day, more than the {} mg a day of {}",
                    round_mg(l.daily_mg),
                    l.ingredient,
                    round_mg(l.max_daily_mg),
                    l.source
                ),
                key: format!("dose:{}", l.ingredient),
                kind: "dose",
            });
        }
        Ok(out)
    }

    /// Prescribes: writes `request` as a draft by the calling practitioner, after the safety
    /// checks. A warning without an override in `overrides` stops the write and is answered;
    /// each overridden one becomes a DetectedIssue (status final, the prescriber's reason as
    /// its mitigation) in the prescription's transaction.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] for a request that is not a draft MedicationRequest for a
    /// patient, or whose timing cannot be scheduled; [`RecordError::Forbidden`] when the
    /// PDP refuses.
    pub async fn prescribe(
        &self,
        ctx: &RequestContext,
        mut request: Value,
        overrides: &[Override],
    ) -> Result<Prescribed, RecordError> {
        let core = self.records.core();
        if request["resourceType"] != "MedicationRequest" {
            return Err(invalid("a prescription is a MedicationRequest"));
        }
        let prescriber = prescriber_of(ctx)?;
        let grant = core
            .authorize(ctx, Action::Create, Some("MedicationRequest"))
            .await?;
        match request["status"].as_str() {
            None | Some("draft") => request["status"] = json!("draft"),
            Some(_) => {
                return Err(invalid(
                    "a prescription is written as a draft, then signed to make it active",
                ));
            }
        }
        if request["intent"].is_null() {
            request["intent"] = json!("order");
        }
        intent_of(&request)?;
        let patient = request["subject"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Patient/"))
            .map(str::to_string)
            .ok_or_else(|| invalid("a prescription names its patient (subject)"))?;
        if medication_words(&request).is_none() {
            return Err(invalid(
                "a prescription names its medication (medicationCodeableConcept or a contained Medication)",
            ));
        }
        for (i, dosage) in request["dosageInstruction"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            match read_dosage(dosage, &self.meals) {
                Ok(_) | Err(ScheduleError::NoTiming) => {}
                Err(e) => {
                    return Err(RecordError::Invalid(vec![
                        medmesh_fhir::outcome::Issue::error(IssueType::Value, e.to_string())
                            .at(&format!("MedicationRequest.dosageInstruction[{i}].timing")),
                    ]));
                }
            }
        }
        for o in overrides {
            if o.reason.trim().is_empty() || o.reason.chars().count() > MAX_REASON {
                return Err(invalid(format!(
                    "an override needs a reason of 1 to {MAX_REASON} characters"
                )));
            }
        }
        let now = core.now();
        let id = core.ids().new_id();
        request["id"] = json!(id);
        request["requester"] = json!({"reference": prescriber});
        if request["authoredOn"].is_null() {
            request["authoredOn"] = json!(instant(now));
        }
        if crate::prescription::medication_code(&request).is_none() {
            let ext = request["extension"].as_array().cloned().unwrap_or_default();
            if !ext.iter().any(|e| e["url"] == EXT_FREE_TEXT) {
                let mut ext = ext;
                ext.push(json!({"url": EXT_FREE_TEXT, "valueBoolean": true}));
                request["extension"] = json!(ext);
            }
        }
        if let Some(m) = request.as_object_mut() {
            m.remove("meta");
        }
        // Routed to the pharmacy named, or to the patient's preferred one; only ever to a
        // pharmacy, since routing opens the patient's medication record to it.
        match request["dispenseRequest"]["performer"]["reference"].as_str() {
            Some(p) => {
                let p = p.to_string();
                request["dispenseRequest"]["performer"] =
                    json!({"reference": self.pharmacy_checked(ctx, &p).await?});
            }
            None => {
                if let Some(p) = self.default_pharmacy(ctx, &patient).await? {
                    request["dispenseRequest"]["performer"] = json!({"reference": p});
                }
            }
        }
        core.check_resource("MedicationRequest", &request)?;
        let warnings = self.warnings(ctx, &patient, &request).await?;
        let (overridden, open): (Vec<Warning>, Vec<Warning>) = warnings
            .into_iter()
            .partition(|w| overrides.iter().any(|o| o.warning == w.key));
        if !open.is_empty() {
            return Ok(Prescribed::NeedsOverride(open));
        }
        let issue_grant = if overridden.is_empty() {
            None
        } else {
            Some(
                core.authorize(ctx, Action::Create, Some("DetectedIssue"))
                    .await?,
            )
        };
        let mut tx = core.begin_write().await?;
        let out = core
            .write_version(
                ctx,
                &mut tx,
                &grant,
                "MedicationRequest",
                &id,
                request,
                None,
            )
            .await?;
        self.record_step(
            ctx,
            &mut tx,
            &grant,
            "prescribe",
            "MedicationRequest",
            vec![id.clone()],
            &patient,
        )
        .await?;
        let detected_issues = match issue_grant {
            Some(g) => {
                self.write_overrides(
                    ctx,
                    &mut tx,
                    &g,
                    &patient,
                    &id,
                    &prescriber,
                    &overridden,
                    overrides,
                )
                .await?
            }
            None => Vec::new(),
        };
        tx.commit().await?;
        Ok(Prescribed::Written {
            prescription: out.resource.unwrap_or(Value::Null),
            detected_issues,
        })
    }

    /// Appends a step's audit entry to `tx`: `action` on `ids` (of `rt`) for `patient`, with
    /// the basis `grant` rests on.
    #[allow(clippy::too_many_arguments)] // one audit entry's facts
    pub(crate) async fn record_step(
        &self,
        ctx: &RequestContext,
        tx: &mut medmesh_at_rest::WriteTx,
        grant: &medmesh_policy::Grant,
        action: &str,
        rt: &str,
        ids: Vec<String>,
        patient: &str,
    ) -> Result<(), RecordError> {
        let core = self.records.core();
        let mut entry = core.entry(ctx, action, Some(rt), ids, Outcome::Success);
        entry.patients = vec![patient.to_string()];
        core.annotate(&mut entry, grant);
        tx.append_audit(&entry).await?;
        Ok(())
    }

    /// One step that updates `rt/id` (read at `version`) to `resource`: the write, its audit
    /// entry (`action`, naming `ids`, about `patient`) and the notices `rows`, in one
    /// transaction. The resource as stored.
    ///
    /// # Errors
    /// [`RecordError::Conflict`] when it changed since `version`; storage failures.
    #[allow(clippy::too_many_arguments)] // one step's facts, each named by its caller
    pub(crate) async fn update_step(
        &self,
        ctx: &RequestContext,
        grant: &medmesh_policy::Grant,
        (rt, id, version): (&str, &str, i64),
        resource: Value,
        action: &str,
        ids: Vec<String>,
        patient: &str,
        rows: &[NotificationOutboxRow],
    ) -> Result<Option<Value>, RecordError> {
        let core = self.records.core();
        let mut tx = core.begin_write().await?;
        let head = Self::head_at(&mut tx, rt, id, version).await?;
        let out = core
            .write_version(ctx, &mut tx, grant, rt, id, resource, head)
            .await?;
        self.record_step(ctx, &mut tx, grant, action, rt, ids, patient)
            .await?;
        Self::commit_with(tx, rows).await?;
        Ok(out.resource)
    }

    /// Completes prescription `id` (`request`, read at `version`) inside `tx` on the node's
    /// behalf, the last of it having been dispensed; audited `status:completed`.
    pub(crate) async fn complete_in(
        &self,
        ctx: &RequestContext,
        tx: &mut medmesh_at_rest::WriteTx,
        request: &Value,
        id: &str,
        version: i64,
        patient: &str,
    ) -> Result<(), RecordError> {
        let core = self.records.core();
        let mut done = request.clone();
        done["status"] = json!("completed");
        if let Some(m) = done.as_object_mut() {
            m.remove("meta");
        }
        let head = Self::head_at(tx, "MedicationRequest", id, version).await?;
        let internal = Pdp.internal_grant("MedicationRequest");
        core.write_version(ctx, tx, &internal, "MedicationRequest", id, done, head)
            .await?;
        let mut entry = core.entry(
            ctx,
            "status:completed",
            Some("MedicationRequest"),
            vec![id.to_string()],
            Outcome::Success,
        );
        entry.patients = vec![patient.to_string()];
        tx.append_audit(&entry).await?;
        Ok(())
    }

    /// The current head of `rt/id` in `tx`, if it is still `version`; otherwise the step
    /// read an older version and must be tried again.
    pub(crate) async fn head_at(
        tx: &mut medmesh_at_rest::WriteTx,
        rt: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<medmesh_store::VersionHead>, RecordError> {
        let head = tx.head(rt, id).await?;
        if head.is_none_or(|h| h.version != version) {
            return Err(RecordError::Conflict(
                "it changed meanwhile: read it again and retry".into(),
            ));
        }
        Ok(head)
    }

    /// Queues a step's notices in `tx` and commits it.
    pub(crate) async fn commit_with(
        mut tx: medmesh_at_rest::WriteTx,
        rows: &[NotificationOutboxRow],
    ) -> Result<(), RecordError> {
        for row in rows {
            tx.queue_notification(row).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Writes one DetectedIssue per overridden warning of prescription `id` inside `tx`
    /// (status final; the prescriber's reason as its mitigation), each audited `override`.
    #[allow(clippy::too_many_arguments)] // one override's facts, from the step that made it
    async fn write_overrides(
        &self,
        ctx: &RequestContext,
        tx: &mut medmesh_at_rest::WriteTx,
        grant: &medmesh_policy::Grant,
        patient: &str,
        id: &str,
        prescriber: &str,
        overridden: &[Warning],
        overrides: &[Override],
    ) -> Result<Vec<Value>, RecordError> {
        let core = self.records.core();
        let now = core.now();
        let mut out = Vec::new();
        for w in overridden {
            let reason = overrides
                .iter()
                .find(|o| o.warning == w.key)
                .map(|o| o.reason.trim().to_string())
                .unwrap_or_default();
            let (code, display, severity) = w.issue_code();
            let mut implicated = vec![json!({"reference": format!("MedicationRequest/{id}")})];
            implicated.extend(w.implicated().map(|r| json!({"reference": r})));
            let issue_id = core.ids().new_id();
            let issue = json!({
                "resourceType": "DetectedIssue",
                "id": issue_id,
                "status": "final",
                "code": {"coding": [{"system": V3_ACT_CODE, "code": code, "display": display}]},
                "severity": severity,
                "patient": {"reference": format!("Patient/{patient}")},
                "identifiedDateTime": instant(now),
                "author": {"reference": prescriber},
                "implicated": implicated,
                "detail": w.text,
                "mitigation": [{
                    "action": {
                        "coding": [{"system": V3_ACT_CODE, "code": "1", "display": "Therapy Appropriate"}],
                        "text": reason,
                    },
                    "date": instant(now),
                    "author": {"reference": prescriber},
                }],
            });
            core.check_resource("DetectedIssue", &issue)?;
            let stored = core
                .write_version(ctx, tx, grant, "DetectedIssue", &issue_id, issue, None)
                .await?;
            self.record_step(
                ctx,
                tx,
                grant,
                "override",
                "DetectedIssue",
                vec![issue_id],
                patient,
            )
            .await?;
            out.extend(stored.resource);
        }
        Ok(out)
    }

    /// The warnings of `request` still open: not overridden in `overrides`, nor already by a
    /// DetectedIssue recorded against it.
    async fn open_warnings(
        &self,
        ctx: &RequestContext,
        patient: &str,
        request: &Value,
        overrides: &[Override],
    ) -> Result<(Vec<Warning>, Vec<Warning>), RecordError> {
        let warnings = self.warnings(ctx, patient, request).await?;
        let recorded: Vec<Value> = match request["id"].as_str() {
            Some(id) if !warnings.is_empty() => {
                self.all_of(
                    ctx,
                    "DetectedIssue",
                    vec![("implicated", format!("MedicationRequest/{id}"))],
                )
                .await?
            }
            _ => Vec::new(),
        };
        let (to_record, open): (Vec<Warning>, Vec<Warning>) = warnings
            .into_iter()
            .filter(|w| !recorded.iter().any(|d| w.recorded_by(d)))
            .partition(|w| overrides.iter().any(|o| o.warning == w.key));
        Ok((to_record, open))
    }

    /// A prescription as the caller may read it (the PDP decides; audited).
    async fn read(&self, ctx: &RequestContext, id: &str) -> Result<(Value, i64), RecordError> {
        let found = self.records.read(ctx, "MedicationRequest", id).await?;
        Ok((found.resource, found.version))
    }

    /// The text the prescriber signs to activate draft `id`, with the node's time as the
    /// signing time (the signer may sign claims with their own time instead, within
    /// [`SIGNATURE_SKEW`]).
    ///
    /// # Errors
    /// [`RecordError::NotFound`]; [`RecordError::Invalid`] when it is not a draft
    /// prescription, or lacks a part a prescription needs.
    pub async fn signing_text(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<SigningText, RecordError> {
        let (request, version) = self.read(ctx, id).await?;
        check_signable(&request)?;
        let claims = claims_of(&request, &instant(self.records.core().now()))
            .map_err(|e| invalid(e.to_string()))?;
        let text = claims.signed_bytes().map_err(|e| invalid(e.to_string()))?;
        Ok(SigningText {
            text: String::from_utf8_lossy(&text).into_owned(),
            version,
        })
    }

    /// Activates draft `id` with its prescriber's signature: the claims are read again from
    /// the stored draft (version `version`), the signature must verify with a live signing
    /// key of the prescriber's in the key directory, and the caller must be that
    /// prescriber. The safety checks run again (a draft may have been pre-filled through the
    /// FHIR API): a warning not overridden before (no DetectedIssue records it) nor in
    /// `overrides` stops the activation and is answered. The MedicationRequest becomes
    /// active and a Provenance keeps the signed claims and the signature, with a
    /// DetectedIssue per new override, in one transaction.
    ///
    /// # Errors
    /// [`RecordError::BadSignature`] when the signature, key or time does not hold;
    /// [`RecordError::PreconditionFailed`] when the draft changed since `version`;
    /// [`RecordError::Invalid`] for a transition the lifecycle refuses.
    pub async fn activate(
        &self,
        ctx: &RequestContext,
        id: &str,
        version: Option<i64>,
        signed: &Signature,
        overrides: &[Override],
    ) -> Result<Prescribed, RecordError> {
        let core = self.records.core();
        let prescriber = prescriber_of(ctx)?;
        let (mut request, current) = self.read(ctx, id).await?;
        if version.is_some_and(|v| v != current) {
            return Err(RecordError::PreconditionFailed(format!(
                "the prescription changed: its current version is {current}"
            )));
        }
        check_signable(&request)?;
        if request["requester"]["reference"].as_str() != Some(prescriber.as_str()) {
            return Err(RecordError::invalid(
                IssueType::Forbidden,
                "only the prescriber named on a prescription signs it",
            ));
        }
        let signed_at = medmesh_fhir::datetime::parse_range(&signed.time)
            .filter(|_| signed.time.len() >= 20)
            .ok_or_else(|| bad_signature("the signing time is not a FHIR instant"))?;
        if (signed_at.lo - core.now()).abs() > SIGNATURE_SKEW {
            return Err(bad_signature(
                "the signing time is more than 10 minutes from the node's clock",
            ));
        }
        let claims = claims_of(&request, &signed.time).map_err(|e| invalid(e.to_string()))?;
        let key = UserPublicKey::from_base64(&signed.key)
            .map_err(|_| bad_signature("the signing key is not an Ed25519 key"))?;
        let signature = UploadSignature::from_base64(&signed.signature)
            .map_err(|_| bad_signature("the signature is malformed"))?;
        let live = self
            .directory
            .user_keys(&prescriber)
            .await?
            .into_iter()
            .any(|k| {
                k.kind == "signing" && k.revoked_micros.is_none() && k.public_key == key.to_base64()
            });
        if !live {
            return Err(bad_signature(
                "the key is not one of the prescriber's live signing keys in the directory",
            ));
        }
        key.verify_prescription(&claims, &signature).map_err(|_| {
            bad_signature("the signature does not verify for this prescription and key")
        })?;
        let text = claims.signed_bytes().map_err(|e| invalid(e.to_string()))?;
        let patient = bare(&claims.patient, "Patient").to_string();
        let (to_record, open) = self
            .open_warnings(ctx, &patient, &request, overrides)
            .await?;
        if !open.is_empty() {
            return Ok(Prescribed::NeedsOverride(open));
        }
        let issue_grant = if to_record.is_empty() {
            None
        } else {
            Some(
                core.authorize(ctx, Action::Create, Some("DetectedIssue"))
                    .await?,
            )
        };
        request["status"] = json!("active");
        if let Some(m) = request.as_object_mut() {
            m.remove("meta");
        }
        let routed_to = request["dispenseRequest"]["performer"]["reference"]
            .as_str()
            .map(str::to_string);
        core.check_resource("MedicationRequest", &request)?;
        let grant = core
            .authorize(ctx, Action::Update, Some("MedicationRequest"))
            .await?;
        let provenance_grant = core
            .authorize(ctx, Action::Create, Some("Provenance"))
            .await?;
        // Prepared before the transaction opens: the hub reads its settings outside it.
        let mut told = vec![Recipient::Patient(patient.clone())];
        if let Some(pharmacy) = &routed_to {
            told.extend(self.accounts_of(pharmacy).await);
        }
        let rows = self.notices(told, &format!("rx-active:{id}")).await?;
        let mut tx = core.begin_write().await?;
        let head = Self::head_at(&mut tx, "MedicationRequest", id, current).await?;
        let out = core
            .write_version(ctx, &mut tx, &grant, "MedicationRequest", id, request, head)
            .await?;
        let provenance_id = core.ids().new_id();
        let provenance = json!({
            "resourceType": "Provenance",
            "id": provenance_id,
            "extension": [{"url": EXT_SIGNED_CLAIMS, "valueBase64Binary": STANDARD.encode(&text)}],
            "target": [
                {"reference": format!("MedicationRequest/{id}/_history/{}", out.version)},
                {"reference": claims.patient},
            ],
            "occurredDateTime": claims.time,
            "recorded": instant(core.now()),
            "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "UPDATE"}]},
            "agent": [{
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]},
                "who": {"reference": claims.prescriber},
            }],
            "signature": [{
                "type": [{"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.1", "display": "Author's Signature"}],
                "when": claims.time,
                "who": {"reference": claims.prescriber},
                "targetFormat": "text/plain",
                "sigFormat": PRESCRIPTION_SIG_FORMAT,
                "data": signature.to_base64(),
                "extension": [{"url": EXT_SIGNING_KEY, "valueBase64Binary": key.to_base64()}],
            }],
        });
        core.check_resource("Provenance", &provenance)?;
        core.write_version(
            ctx,
            &mut tx,
            &provenance_grant,
            "Provenance",
            &provenance_id,
            provenance,
            None,
        )
        .await?;
        let detected_issues = match issue_grant {
            Some(g) => {
                self.write_overrides(
                    ctx,
                    &mut tx,
                    &g,
                    &patient,
                    id,
                    &prescriber,
                    &to_record,
                    overrides,
                )
                .await?
            }
            None => Vec::new(),
        };
        self.record_step(
            ctx,
            &mut tx,
            &grant,
            "sign",
            "MedicationRequest",
            vec![id.to_string(), format!("Provenance/{provenance_id}")],
            &patient,
        )
        .await?;
        Self::commit_with(tx, &rows).await?;
        Ok(Prescribed::Written {
            prescription: out.resource.ok_or(RecordError::NotFound)?,
            detected_issues,
        })
    }

    /// The signed prescription: its claims text, signature and key, as a pharmacy verifies
    /// it offline (`medmesh verify-prescription`) and as the printed QR code carries it.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] for a prescription the caller may not read or that was
    /// never signed.
    pub async fn signed(&self, ctx: &RequestContext, id: &str) -> Result<Value, RecordError> {
        self.signed_with_request(ctx, id)
            .await
            .map(|(payload, _)| payload)
    }

    /// The signed prescription of `id`, and the prescription as read (once, audited).
    async fn signed_with_request(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<(Value, Value), RecordError> {
        // The prescription is read first, so the PDP decides who may see its signature.
        let (request, _) = self.read(ctx, id).await?;
        let bundle = self
            .records
            .search(
                ctx,
                "Provenance",
                &[
                    ("target".into(), format!("MedicationRequest/{id}")),
                    ("_sort".into(), "-_lastUpdated".into()),
                ],
                Handling::Strict,
            )
            .await?;
        let signature = bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| &e["resource"])
            .find_map(|p| {
                let sig = p["signature"]
                    .as_array()?
                    .iter()
                    .find(|s| s["sigFormat"] == PRESCRIPTION_SIG_FORMAT)?;
                let claims = p["extension"]
                    .as_array()?
                    .iter()
                    .find(|e| e["url"] == EXT_SIGNED_CLAIMS)?["valueBase64Binary"]
                    .as_str()?;
                let key = sig["extension"]
                    .as_array()?
                    .iter()
                    .find(|e| e["url"] == EXT_SIGNING_KEY)?["valueBase64Binary"]
                    .as_str()?;
                Some(signed_payload(claims, sig["data"].as_str()?, key))
            });
        Ok((signature.ok_or(RecordError::NotFound)?, request))
    }

    /// What the printable prescription of `id` shows: the signed claims (verified again
    /// before they are printed), the patient's name and birth date, the prescriber's name and
    /// the pharmacy it is routed to, each read through the PDP as the caller.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] when it is not signed or the caller may not read it;
    /// [`RecordError::Invalid`] when its stored signature does not verify.
    pub async fn printable(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<crate::printable::Printable, RecordError> {
        let (payload, request) = self.signed_with_request(ctx, id).await?;
        let verified = verify_signed(&payload, None, None)
            .map_err(|_| invalid("the prescription's stored signature does not verify"))?;
        let name_of = |r: &Value| medmesh_fhir::names::human_name(r);
        let id_part = |reference: &str| reference.rsplit('/').next().unwrap_or("").to_string();
        let patient = self
            .records
            .read(ctx, "Patient", &id_part(&verified.claims.patient))
            .await?
            .resource;
        let prescriber_name = match self
            .records
            .read(ctx, "Practitioner", &id_part(&verified.claims.prescriber))
            .await
        {
            Ok(found) => name_of(&found.resource),
            Err(RecordError::NotFound) => None,
            Err(e) => return Err(e),
        };
        let pharmacy = match request["dispenseRequest"]["performer"]["reference"].as_str() {
            Some(r) => match self.records.read(ctx, "Organization", &id_part(r)).await {
                Ok(found) => name_of(&found.resource),
                Err(RecordError::NotFound) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        Ok(crate::printable::Printable {
            signed_json: payload.to_string(),
            key: verified.key,
            patient_name: name_of(&patient).unwrap_or_default(),
            patient_birth: patient["birthDate"].as_str().map(str::to_string),
            prescriber_name: prescriber_name.unwrap_or_else(|| verified.claims.prescriber.clone()),
            pharmacy,
            claims: verified.claims,
        })
    }

    /// The printable prescription of `id` as PDF, in the words of `labels`.
    ///
    /// # Errors
    /// As [`Self::printable`]; [`RecordError::Invalid`] when the signed prescription is too
    /// long for a QR code.
    pub async fn print(
        &self,
        ctx: &RequestContext,
        id: &str,
        labels: &crate::printable::PrintLabels,
    ) -> Result<Vec<u8>, RecordError> {
        let page = self.printable(ctx, id).await?;
        crate::printable::render_pdf(&page, labels).map_err(|e| invalid(e.to_string()))
    }

    /// Moves prescription `id` to `to` (anything but a draft's activation, which needs a
    /// signature): checked against R4's lifecycle, with `reason` as its `statusReason`
    /// (required to hold, stop, cancel or mark in error), audited.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] for a transition the lifecycle refuses, saying why.
    pub async fn change_status(
        &self,
        ctx: &RequestContext,
        id: &str,
        to: RequestStatus,
        reason: Option<&str>,
    ) -> Result<Value, RecordError> {
        let core = self.records.core();
        let (mut request, current) = self.read(ctx, id).await?;
        let from = status_of(&request)?;
        if from == RequestStatus::Draft && to == RequestStatus::Active {
            return Err(invalid(
                "a draft is made active by signing it (POST .../activate)",
            ));
        }
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        let needs_reason = matches!(
            to,
            RequestStatus::OnHold
                | RequestStatus::Stopped
                | RequestStatus::Cancelled
                | RequestStatus::EnteredInError
        );
        if needs_reason && reason.is_none() {
            return Err(invalid(format!("a reason is needed to make it {to}")));
        }
        if reason.is_some_and(|r| r.chars().count() > MAX_REASON) {
            return Err(invalid(format!(
                "a reason is at most {MAX_REASON} characters"
            )));
        }
        let dispensed = if to == RequestStatus::Cancelled {
            !self
                .all_of(
                    ctx,
                    "MedicationDispense",
                    vec![("prescription", format!("MedicationRequest/{id}"))],
                )
                .await?
                .is_empty()
        } else {
            false
        };
        check_transition(intent_of(&request)?, from, to, dispensed)
            .map_err(|e| invalid(e.to_string()))?;
        if from == to {
            return Ok(request);
        }
        request["status"] = json!(to.code());
        match reason {
            Some(r) => request["statusReason"] = json!({"text": r}),
            None => {
                if let Some(m) = request.as_object_mut() {
                    m.remove("statusReason");
                }
            }
        }
        if let Some(m) = request.as_object_mut() {
            m.remove("meta");
        }
        let patient = request["subject"]["reference"]
            .as_str()
            .map(|r| bare(r, "Patient").to_string())
            .unwrap_or_default();
        core.check_resource("MedicationRequest", &request)?;
        let grant = core
            .authorize(ctx, Action::Update, Some("MedicationRequest"))
            .await?;
        let mut tx = core.begin_write().await?;
        let head = Self::head_at(&mut tx, "MedicationRequest", id, current).await?;
        let out = core
            .write_version(ctx, &mut tx, &grant, "MedicationRequest", id, request, head)
            .await?;
        self.record_step(
            ctx,
            &mut tx,
            &grant,
            &format!("status:{}", to.code()),
            "MedicationRequest",
            vec![id.to_string()],
            &patient,
        )
        .await?;
        if to != RequestStatus::Active {
            Self::withdraw_dose_reminders(&mut tx, &patient, id).await?;
        }
        tx.commit().await?;
        out.resource.ok_or(RecordError::NotFound)
    }
}

/// The signed prescription as one JSON object (what `medmesh verify-prescription` reads
/// and the QR code holds): the claims text (base64), the signature and the key.
pub fn signed_payload(claims_base64: &str, signature: &str, key: &str) -> Value {
    json!({
        "format": PRESCRIPTION_SIG_FORMAT,
        "claims": claims_base64,
        "signature": signature,
        "key": key,
    })
}

/// What offline verification of a signed prescription found.
#[derive(Debug, Clone)]
pub struct VerifiedPrescription {
    /// The signed claims.
    pub claims: PrescriptionClaims,
    /// The key that signed them, base64.
    pub key: String,
}

/// Why a signed prescription does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrescriptionCheckError {
    /// The payload is not a signed prescription.
    #[error("not a signed prescription: {0}")]
    Malformed(&'static str),
    /// The signature does not verify with the key.
    #[error("the signature does not verify for these claims and key")]
    Invalid,
    /// The key is not the prescriber's (per the directory given).
    #[error("the signing key is not one of {0}'s live signing keys in the directory")]
    NotTheirs(String),
    /// The prescription given differs from what was signed.
    #[error("the prescription differs from what was signed: {0}")]
    Differs(&'static str),
}

/// Checks a signed prescription offline: the signature over the claims with the key it names;
/// with `directory_keys` (the prescriber's live signing keys, already checked against their
/// statements), that the key is one of them; with `request` (a MedicationRequest), that its
/// content is what was signed.
///
/// # Errors
/// [`PrescriptionCheckError`], saying what does not hold.
pub fn verify_signed(
    payload: &Value,
    directory_keys: Option<&[String]>,
    request: Option<&Value>,
) -> Result<VerifiedPrescription, PrescriptionCheckError> {
    use PrescriptionCheckError as E;
    if payload["format"] != PRESCRIPTION_SIG_FORMAT {
        return Err(E::Malformed("unknown format"));
    }
    let text = payload["claims"]
        .as_str()
        .and_then(|c| STANDARD.decode(c).ok())
        .ok_or(E::Malformed("claims"))?;
    let claims = PrescriptionClaims::parse(&text).map_err(|_| E::Malformed("claims"))?;
    let key = payload["key"]
        .as_str()
        .and_then(|k| UserPublicKey::from_base64(k).ok())
        .ok_or(E::Malformed("key"))?;
    let signature = payload["signature"]
        .as_str()
        .and_then(|s| UploadSignature::from_base64(s).ok())
        .ok_or(E::Malformed("signature"))?;
    key.verify_prescription(&claims, &signature)
        .map_err(|_| E::Invalid)?;
    if let Some(keys) = directory_keys
        && !keys.contains(&key.to_base64())
    {
        return Err(E::NotTheirs(claims.prescriber.clone()));
    }
    if let Some(r) = request {
        let stored =
            claims_of(r, &claims.time).map_err(|_| E::Differs("it is not a prescription"))?;
        let fields = [
            ("prescription", stored.prescription == claims.prescription),
            ("patient", stored.patient == claims.patient),
            ("prescriber", stored.prescriber == claims.prescriber),
            ("medication", stored.medication == claims.medication),
            (
                "medication",
                stored.medication_text == claims.medication_text,
            ),
            ("dosage", stored.dosage == claims.dosage),
            ("quantity", stored.quantity == claims.quantity),
            ("supply", stored.supply == claims.supply),
            ("refills", stored.refills == claims.refills),
            ("substitution", stored.substitution == claims.substitution),
            ("authored", stored.authored == claims.authored),
        ];
        if let Some((name, _)) = fields.iter().find(|(_, same)| !same) {
            return Err(E::Differs(name));
        }
    }
    Ok(VerifiedPrescription {
        claims,
        key: key.to_base64(),
    })
}
