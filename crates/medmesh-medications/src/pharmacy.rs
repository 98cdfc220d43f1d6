//! Pharmacies: the patient's preferred and alternate pharmacy, the queue of prescriptions
//! routed to a pharmacy, dispensing (part fills and refills counted down), returning a
//! prescription with a reason, and refill requests decided by the prescriber. The patient,
//! the prescriber and the pharmacy are told of each step through the hub, in the step's
//! transaction.
//!
//! A pharmacist reads a patient's medication record only while a prescription is routed to
//! their pharmacy (the PDP's `dispensing` edge, [`medmesh_policy::access::EdgeKind`]), and
//! within their role's ceiling (the medication record, allergies, overrides, signatures).

use medmesh_auth::Role;
use medmesh_fhir::IssueType;
use medmesh_kernel::RequestContext;
use medmesh_notifications::Recipient;
use medmesh_policy::{Action, Pdp};
use medmesh_records::RecordError;
use serde_json::{Value, json};

use crate::dispensing::{SUPPLY_TYPE_SYSTEM, next_dispense, remaining};
use crate::service::{MAX_REASON, MedicationService, instant, invalid};

/// Patient extension: the pharmacy the patient prefers (`valueReference`).
pub const EXT_PREFERRED_PHARMACY: &str =
    "https://medmesh.dev/fhir/StructureDefinition/preferred-pharmacy";
/// Patient extension: the pharmacy to use when the preferred one cannot.
pub const EXT_ALTERNATE_PHARMACY: &str =
    "https://medmesh.dev/fhir/StructureDefinition/alternate-pharmacy";
/// `Organization.type` of a pharmacy, in medmesh's code system (NUCC pharmacy taxonomy
/// codes, `3336...`, are taken too).
pub const ORGANIZATION_TYPE: &str = "https://medmesh.dev/fhir/CodeSystem/organization-type";
/// The code system of medmesh's medication tasks (`refill-request`).
pub const TASK_CODE_SYSTEM: &str = "https://medmesh.dev/fhir/CodeSystem/medication-task";
const NUCC: &str = "http://nucc.org/provider-taxonomy";
/// At most this many prescriptions in a pharmacy's queue at once.
pub const MAX_QUEUE: usize = 500;

/// Whether an Organization is a pharmacy: type `pharmacy` in medmesh's code system, or a NUCC
/// pharmacy taxonomy code.
pub fn is_pharmacy(organization: &Value) -> bool {
    organization["type"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| t["coding"].as_array().into_iter().flatten())
        .any(|c| {
            (c["system"] == ORGANIZATION_TYPE && c["code"] == "pharmacy")
                || (c["system"] == NUCC
                    && c["code"]
                        .as_str()
                        .is_some_and(|code| code.starts_with("3336")))
        })
}

/// A patient's pharmacy choice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PharmacyChoice {
    /// The preferred pharmacy (`Organization/x`).
    pub preferred: Option<String>,
    /// The alternate one.
    pub alternate: Option<String>,
}

impl PharmacyChoice {
    /// Reads the choice from a Patient's extensions.
    pub fn of(patient: &Value) -> Self {
        let ext = |url: &str| {
            patient["extension"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|e| e["url"] == url)
                .and_then(|e| e["valueReference"]["reference"].as_str())
                .map(str::to_string)
        };
        Self {
            preferred: ext(EXT_PREFERRED_PHARMACY),
            alternate: ext(EXT_ALTERNATE_PHARMACY),
        }
    }
}

/// One prescription in a pharmacy's queue.
#[derive(Debug, Clone)]
pub struct QueueItem {
    /// The MedicationRequest.
    pub prescription: Value,
    /// What is left to dispense.
    pub remaining: crate::dispensing::Remaining,
}

fn reference(id: &str, rt: &str) -> String {
    let bare = id
        .strip_prefix(rt)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(id);
    format!("{rt}/{bare}")
}

/// The patient of a request (`subject`), as a bare id.
pub(crate) fn patient_of(request: &Value) -> String {
    request["subject"]["reference"]
        .as_str()
        .and_then(|r| r.strip_prefix("Patient/"))
        .unwrap_or_default()
        .to_string()
}

/// A reason a step needs: 1 to [`MAX_REASON`] characters, trimmed.
pub(crate) fn reason_of(reason: &str) -> Result<String, RecordError> {
    let r = reason.trim();
    if r.is_empty() || r.chars().count() > MAX_REASON {
        return Err(invalid(format!(
            "a reason of 1 to {MAX_REASON} characters is needed"
        )));
    }
    Ok(r.to_string())
}

/// The pharmacist's pharmacies (the organizations of their account), or a refusal.
fn pharmacies_of(ctx: &RequestContext) -> Result<(String, Vec<String>), RecordError> {
    let forbidden = || RecordError::invalid(IssueType::Forbidden, "this is for pharmacists");
    if ctx.actor().role() != Some(Role::Pharmacist) {
        return Err(forbidden());
    }
    let c = ctx.actor().clinician().ok_or_else(forbidden)?;
    Ok((c.practitioner.clone(), c.organizations.clone()))
}

impl MedicationService {
    pub(crate) async fn read_as(
        &self,
        ctx: &RequestContext,
        rt: &str,
        id: &str,
    ) -> Result<(Value, i64), RecordError> {
        let found = self.records.read(ctx, rt, id).await?;
        Ok((found.resource, found.version))
    }

    /// A pharmacy, read as the caller: `Organization/x` must be a pharmacy.
    pub(crate) async fn pharmacy_checked(
        &self,
        ctx: &RequestContext,
        org: &str,
    ) -> Result<String, RecordError> {
        self.pharmacy(ctx, org).await
    }

    async fn pharmacy(&self, ctx: &RequestContext, org: &str) -> Result<String, RecordError> {
        let r = reference(org, "Organization");
        let id = &r["Organization/".len()..];
        let (o, _) = self
            .read_as(ctx, "Organization", id)
            .await
            .map_err(|_| invalid(format!("{r} is not a pharmacy of this node")))?;
        if !is_pharmacy(&o) {
            return Err(invalid(format!("{r} is not a pharmacy")));
        }
        Ok(r)
    }

    /// The patient's pharmacy choice (as the caller may read the Patient).
    ///
    /// # Errors
    /// [`RecordError::NotFound`] for a patient the caller may not read.
    pub async fn pharmacies(
        &self,
        ctx: &RequestContext,
        patient: &str,
    ) -> Result<PharmacyChoice, RecordError> {
        let (p, _) = self.read_as(ctx, "Patient", patient).await?;
        Ok(PharmacyChoice::of(&p))
    }

    /// Sets the patient's preferred and alternate pharmacy (each must be a pharmacy; `None`
    /// removes it), as extensions on the Patient, written as the caller (the patient, or
    /// whoever the PDP lets update them) and audited.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] for an organization that is not a pharmacy, or the same one
    /// twice.
    pub async fn choose_pharmacies(
        &self,
        ctx: &RequestContext,
        patient: &str,
        choice: &PharmacyChoice,
    ) -> Result<PharmacyChoice, RecordError> {
        let core = self.records.core();
        let preferred = match &choice.preferred {
            Some(o) => Some(self.pharmacy(ctx, o).await?),
            None => None,
        };
        let alternate = match &choice.alternate {
            Some(o) => Some(self.pharmacy(ctx, o).await?),
            None => None,
        };
        if preferred.is_some() && preferred == alternate {
            return Err(invalid(
                "the alternate pharmacy is another than the preferred one",
            ));
        }
        let (mut p, version) = self.read_as(ctx, "Patient", patient).await?;
        let mut ext: Vec<Value> = p["extension"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["url"] != EXT_PREFERRED_PHARMACY && e["url"] != EXT_ALTERNATE_PHARMACY)
            .collect();
        for (url, org) in [
            (EXT_PREFERRED_PHARMACY, &preferred),
            (EXT_ALTERNATE_PHARMACY, &alternate),
        ] {
            if let Some(o) = org {
                ext.push(json!({"url": url, "valueReference": {"reference": o}}));
            }
        }
        match p.as_object_mut() {
            Some(m) => {
                m.remove("meta");
                if ext.is_empty() {
                    m.remove("extension");
                } else {
                    m.insert("extension".into(), json!(ext));
                }
            }
            None => return Err(RecordError::Corrupt),
        }
        core.check_resource("Patient", &p)?;
        let grant = core.authorize(ctx, Action::Update, Some("Patient")).await?;
        let out = self
            .update_step(
                ctx,
                &grant,
                ("Patient", patient, version),
                p,
                "choose-pharmacy",
                vec![patient.to_string()],
                patient,
                &[],
            )
            .await?;
        Ok(PharmacyChoice::of(&out.unwrap_or(Value::Null)))
    }

    /// The patient's preferred pharmacy, for a prescription that names none.
    pub(crate) async fn default_pharmacy(
        &self,
        ctx: &RequestContext,
        patient: &str,
    ) -> Result<Option<String>, RecordError> {
        Ok(self.pharmacies(ctx, patient).await?.preferred)
    }

    /// The resources of `rt` whose search parameter `param` names one of the prescriptions
    /// `ids`, read as the caller, 50 prescriptions a search.
    pub(crate) async fn of_prescriptions(
        &self,
        ctx: &RequestContext,
        rt: &str,
        param: &'static str,
        ids: &[String],
    ) -> Result<Vec<Value>, RecordError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(50) {
            let list = chunk
                .iter()
                .map(|id| format!("MedicationRequest/{id}"))
                .collect::<Vec<_>>()
                .join(",");
            out.extend(self.all_of(ctx, rt, vec![(param, list)]).await?);
        }
        Ok(out)
    }

    /// Prescriptions' dispenses, read as the caller.
    async fn dispenses_of(
        &self,
        ctx: &RequestContext,
        ids: &[String],
    ) -> Result<Vec<Value>, RecordError> {
        self.of_prescriptions(ctx, "MedicationDispense", "prescription", ids)
            .await
    }

    fn of_prescription(dispenses: &[Value], id: &str) -> Vec<Value> {
        let target = format!("MedicationRequest/{id}");
        dispenses
            .iter()
            .filter(|d| {
                d["authorizingPrescription"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| r["reference"].as_str() == Some(target.as_str()))
            })
            .cloned()
            .collect()
    }

    /// The pharmacist's queue: the active and on-hold prescriptions routed to their
    /// pharmacy, oldest first, each with what is left to dispense.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] (403) for a caller who is not a pharmacist.
    pub async fn pharmacy_queue(
        &self,
        ctx: &RequestContext,
    ) -> Result<Vec<QueueItem>, RecordError> {
        let (_, orgs) = pharmacies_of(ctx)?;
        let mut routed: Vec<Value> = self
            .all_of(
                ctx,
                "MedicationRequest",
                vec![("status", "active,on-hold".into())],
            )
            .await?
            .into_iter()
            .filter(|r| {
                r["dispenseRequest"]["performer"]["reference"]
                    .as_str()
                    .is_some_and(|p| orgs.iter().any(|o| o == p))
            })
            .collect();
        routed.sort_by(|a, b| {
            a["authoredOn"]
                .as_str()
                .unwrap_or_default()
                .cmp(b["authoredOn"].as_str().unwrap_or_default())
        });
        routed.truncate(MAX_QUEUE);
        let ids: Vec<String> = routed
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect();
        let dispenses = self.dispenses_of(ctx, &ids).await?;
        Ok(routed
            .into_iter()
            .map(|r| {
                let mine = Self::of_prescription(&dispenses, r["id"].as_str().unwrap_or_default());
                QueueItem {
                    remaining: remaining(&r, &mine),
                    prescription: r,
                }
            })
            .collect())
    }

    /// A prescription routed to the pharmacist's pharmacy, with its dispenses, or a refusal.
    async fn routed_to_me(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<(Value, i64, String, String, Vec<Value>), RecordError> {
        let (pharmacist, orgs) = pharmacies_of(ctx)?;
        let (request, version) = self.read_as(ctx, "MedicationRequest", id).await?;
        let Some(pharmacy) = request["dispenseRequest"]["performer"]["reference"]
            .as_str()
            .filter(|p| orgs.iter().any(|o| o == p))
            .map(str::to_string)
        else {
            return Err(invalid("this prescription is not routed to your pharmacy"));
        };
        let dispenses = self.dispenses_of(ctx, &[id.to_string()]).await?;
        Ok((request, version, pharmacist, pharmacy, dispenses))
    }

    /// Dispenses `quantity` (in the prescription's unit; for one without a quantity, one
    /// fill) of prescription `id` at the pharmacist's pharmacy: a MedicationDispense coded
    /// first fill, part fill or refill, and, when it uses the prescription up, the
    /// prescription completed, in one transaction; the patient and the prescriber are told.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] for a prescription not active, not routed here, expired,
    /// used up, or a quantity above what is left.
    pub async fn dispense(
        &self,
        ctx: &RequestContext,
        id: &str,
        quantity: Option<f64>,
        days_supply: Option<u32>,
    ) -> Result<Value, RecordError> {
        let core = self.records.core();
        let (request, version, pharmacist, pharmacy, dispenses) =
            self.routed_to_me(ctx, id).await?;
        if request["status"] != "active" {
            return Err(invalid(format!(
                "only an active prescription is dispensed; this one is {}",
                request["status"].as_str().unwrap_or("unknown")
            )));
        }
        let now = core.now();
        if let Some(end) = request
            .pointer("/dispenseRequest/validityPeriod/end")
            .and_then(Value::as_str)
            .and_then(medmesh_fhir::datetime::parse_range)
            && end.hi < now
        {
            return Err(invalid("this prescription has expired"));
        }
        let left = remaining(&request, &dispenses);
        // By default a whole fill, or the rest of a part fill.
        let quantity = quantity.or(left.fill_size.map(|s| {
            let given = left.dispensed % s;
            (if given > 0.0 { s - given } else { s }).min(left.left)
        }));
        let supply = next_dispense(&left, quantity).map_err(|e| invalid(e.to_string()))?;
        let patient = patient_of(&request);
        let dispense_id = core.ids().new_id();
        let mut dispense = json!({
            "resourceType": "MedicationDispense",
            "id": dispense_id,
            "status": "completed",
            "subject": {"reference": format!("Patient/{patient}")},
            "performer": [
                {"actor": {"reference": pharmacist}},
                {"actor": {"reference": pharmacy}},
            ],
            "authorizingPrescription": [{"reference": format!("MedicationRequest/{id}")}],
            "type": {"coding": [{"system": SUPPLY_TYPE_SYSTEM, "code": supply}]},
            "whenHandedOver": instant(now),
            "substitution": {"wasSubstituted": false},
        });
        for key in [
            "medicationCodeableConcept",
            "medicationReference",
            "contained",
            "dosageInstruction",
        ] {
            if let Some(v) = request.get(key) {
                dispense[key] = v.clone();
            }
        }
        if let Some(q) = quantity {
            dispense["quantity"] = json!({"value": q});
            if let Some(u) = &left.unit {
                dispense["quantity"]["unit"] = json!(u);
            }
        }
        if let Some(days) = days_supply {
            dispense["daysSupply"] = json!({"value": days, "unit": "days",
                "system": "http://unitsofmeasure.org", "code": "d"});
        }
        core.check_resource("MedicationDispense", &dispense)?;
        let mut after = dispenses.clone();
        after.push(dispense.clone());
        let used_up = remaining(&request, &after).used_up();
        let grant = core
            .authorize(ctx, Action::Create, Some("MedicationDispense"))
            .await?;
        let prescriber = request["requester"]["reference"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut told = vec![Recipient::Patient(patient.clone())];
        told.extend(self.accounts_of(&prescriber).await);
        let rows = self
            .notices(told, &format!("rx-dispensed:{dispense_id}"))
            .await?;
        let mut tx = core.begin_write().await?;
        let out = core
            .write_version(
                ctx,
                &mut tx,
                &grant,
                "MedicationDispense",
                &dispense_id,
                dispense,
                None,
            )
            .await?;
        self.record_step(
            ctx,
            &mut tx,
            &grant,
            "dispense",
            "MedicationDispense",
            vec![dispense_id.clone(), format!("MedicationRequest/{id}")],
            &patient.clone(),
        )
        .await?;
        if used_up {
            // The pharmacist may not update prescriptions; the node completes it on their
            // behalf, the dispense having just been checked against it.
            self.complete_in(ctx, &mut tx, &request, id, version, &patient)
                .await?;
        }
        Self::commit_with(tx, &rows).await?;
        out.resource.ok_or(RecordError::NotFound)
    }

    /// Returns prescription `id` from the pharmacist's pharmacy with a reason: a declined
    /// MedicationDispense keeps the reason, the prescription is no longer routed there (the
    /// prescriber may route it to another), in one transaction; the patient and the
    /// prescriber are told.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] for a prescription not routed here, or no reason.
    pub async fn return_prescription(
        &self,
        ctx: &RequestContext,
        id: &str,
        reason: &str,
    ) -> Result<Value, RecordError> {
        let core = self.records.core();
        let reason = reason_of(reason)?;
        let (request, version, pharmacist, pharmacy, _) = self.routed_to_me(ctx, id).await?;
        let patient = patient_of(&request);
        let dispense_id = core.ids().new_id();
        let mut declined = json!({
            "resourceType": "MedicationDispense",
            "id": dispense_id,
            "status": "declined",
            "statusReasonCodeableConcept": {"text": reason},
            "subject": {"reference": format!("Patient/{patient}")},
            "performer": [
                {"actor": {"reference": pharmacist}},
                {"actor": {"reference": pharmacy}},
            ],
            "authorizingPrescription": [{"reference": format!("MedicationRequest/{id}")}],
            "whenPrepared": instant(core.now()),
        });
        for key in [
            "medicationCodeableConcept",
            "medicationReference",
            "contained",
        ] {
            if let Some(v) = request.get(key) {
                declined[key] = v.clone();
            }
        }
        core.check_resource("MedicationDispense", &declined)?;
        let mut unrouted = request.clone();
        if let Some(d) = unrouted["dispenseRequest"].as_object_mut() {
            d.remove("performer");
        }
        if let Some(m) = unrouted.as_object_mut() {
            m.remove("meta");
        }
        let grant = core
            .authorize(ctx, Action::Create, Some("MedicationDispense"))
            .await?;
        let prescriber = request["requester"]["reference"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut told = vec![Recipient::Patient(patient.clone())];
        told.extend(self.accounts_of(&prescriber).await);
        let rows = self
            .notices(told, &format!("rx-returned:{dispense_id}"))
            .await?;
        let mut tx = core.begin_write().await?;
        let out = core
            .write_version(
                ctx,
                &mut tx,
                &grant,
                "MedicationDispense",
                &dispense_id,
                declined,
                None,
            )
            .await?;
        let head = Self::head_at(&mut tx, "MedicationRequest", id, version).await?;
        // The pharmacist may not update prescriptions; the node takes the routing off on
        // their behalf, the prescription having just been found routed to them.
        let internal = Pdp.internal_grant("MedicationRequest");
        core.write_version(
            ctx,
            &mut tx,
            &internal,
            "MedicationRequest",
            id,
            unrouted,
            head,
        )
        .await?;
        self.record_step(
            ctx,
            &mut tx,
            &grant,
            "return",
            "MedicationRequest",
            vec![id.to_string(), format!("MedicationDispense/{dispense_id}")],
            &patient,
        )
        .await?;
        Self::commit_with(tx, &rows).await?;
        out.resource.ok_or(RecordError::NotFound)
    }

    /// Routes prescription `id` to a pharmacy (the prescriber, after a return, or to the
    /// alternate): not part of what was signed, so no new signature; the pharmacy is told.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] for an organization that is not a pharmacy, or a
    /// prescription that is not active or on hold.
    pub async fn route(
        &self,
        ctx: &RequestContext,
        id: &str,
        pharmacy: &str,
    ) -> Result<Value, RecordError> {
        let core = self.records.core();
        let pharmacy = self.pharmacy(ctx, pharmacy).await?;
        let (mut request, version) = self.read_as(ctx, "MedicationRequest", id).await?;
        if !matches!(
            request["status"].as_str(),
            Some("active" | "on-hold" | "draft")
        ) {
            return Err(invalid(
                "only a draft, active or on-hold prescription is routed",
            ));
        }
        request["dispenseRequest"]["performer"] = json!({"reference": pharmacy});
        if let Some(m) = request.as_object_mut() {
            m.remove("meta");
        }
        core.check_resource("MedicationRequest", &request)?;
        let grant = core
            .authorize(ctx, Action::Update, Some("MedicationRequest"))
            .await?;
        let patient = patient_of(&request);
        let rows = if request["status"] == "draft" {
            Vec::new()
        } else {
            self.notices(
                self.accounts_of(&pharmacy).await,
                &format!("rx-routed:{id}:{version}"),
            )
            .await?
        };
        self.update_step(
            ctx,
            &grant,
            ("MedicationRequest", id, version),
            request,
            "route",
            vec![id.to_string()],
            &patient,
            &rows,
        )
        .await?
        .ok_or(RecordError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pharmacies_are_known_by_their_type() {
        assert!(is_pharmacy(
            &json!({"type": [{"coding": [{"system": ORGANIZATION_TYPE, "code": "pharmacy"}]}]})
        ));
        assert!(is_pharmacy(
            &json!({"type": [{"coding": [{"system": NUCC, "code": "3336C0003X"}]}]})
        ));
        assert!(!is_pharmacy(
            &json!({"type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}]}]})
        ));
        assert!(
            !is_pharmacy(&json!({"name": "Corner Pharmacy"})),
            "a name is not a type"
        );
    }

    #[test]
    fn a_patients_choice_is_read_from_extensions() {
        let p = json!({"extension": [
            {"url": EXT_PREFERRED_PHARMACY, "valueReference": {"reference": "Organization/a"}},
            {"url": EXT_ALTERNATE_PHARMACY, "valueReference": {"reference": "Organization/b"}}]});
        assert_eq!(
            PharmacyChoice::of(&p),
            PharmacyChoice {
                preferred: Some("Organization/a".into()),
                alternate: Some("Organization/b".into())
            }
        );
        assert_eq!(PharmacyChoice::of(&json!({})), PharmacyChoice::default());
    }
}
