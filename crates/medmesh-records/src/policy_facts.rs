//! The trust network's facts in the record service: reading what the PDP reasons over
//! (principals, edges, consents) and keeping it in step with every write (edges, consents,
//! derived labels, sharing tags). The operations on the network itself (break-glass,
//! referrals, the access map) are `medmesh-trust-network`'s.

use medmesh_at_rest::WriteTx;
use medmesh_audit::AuditEntry;
use medmesh_policy::access::edges_from;
use medmesh_policy::consent::{ConsentRule, SHARED_WITH, parse_consent, shared_with};
use medmesh_policy::labels::{add_labels, derive_labels, labels_of};
use medmesh_policy::{Actor, Grant, Reach, ReachFacts};
use serde_json::{Value, json};
use std::sync::Arc;

use crate::context::RequestContext;
use crate::{RecordError, RecordService};

/// How long an encounter keeps its organization's access when not configured: 90 days.
pub const DEFAULT_ENCOUNTER_WINDOW_MICROS: i64 = 90 * 86_400 * 1_000_000;

/// The policy facts' settings.
#[derive(Debug, Clone)]
pub struct TrustConfig {
    /// Encounter window, microseconds.
    pub encounter_window_micros: i64,
    /// Label derivation rules.
    pub label_rules: Vec<medmesh_policy::labels::LabelRule>,
}

impl Default for TrustConfig {
    fn default() -> Self {
        Self {
            encounter_window_micros: DEFAULT_ENCOUNTER_WINDOW_MICROS,
            label_rules: medmesh_policy::labels::default_label_rules(),
        }
    }
}

fn categories(resource: &Value) -> Vec<String> {
    resource
        .get("category")
        .map(|c| match c {
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        })
        .unwrap_or_default()
        .iter()
        .flat_map(|cc| {
            cc.get("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| c.get("code").and_then(Value::as_str).map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The AEAD context of a stored consent: bound to its patient, so a consent row moved to
/// another patient does not open.
pub fn consent_context(patient: &str) -> String {
    format!("Consent-of/Patient/{patient}")
}

impl RecordService {
    /// The active privacy consents of these patients, parsed.
    async fn consents_of(
        &self,
        patients: &[String],
    ) -> Result<Vec<std::sync::Arc<ConsentRule>>, RecordError> {
        let mut out = Vec::new();
        for (patient, body) in self.store.consents_of(patients).await? {
            let body = self.open_text(&consent_context(&patient), body).await?;
            if let Some(rule) = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| parse_consent(&v))
            {
                out.push(std::sync::Arc::new(rule));
            }
        }
        Ok(out)
    }

    /// What `actor` may reach, compiled from the facts, limited to `compartment`: kept
    /// between requests while the facts stand (see [`crate::reach_cache`]), so a revoked
    /// consent or a removed care-team member counts from the next request.
    pub(crate) async fn reach_of(
        &self,
        actor: &Actor,
        compartment: Option<&str>,
    ) -> Result<Arc<Reach>, RecordError> {
        // The generation is read before the facts: a change committed between the two
        // either is in the facts or raises the generation past the one kept with them.
        let generation = self.store.policy_generation().await?;
        let seeds = actor.seeds();
        let now = self.now();
        if let Some(kept) = self.reach_cache.get(&seeds, compartment, generation, now) {
            return Ok(kept);
        }
        let facts = self.reach_facts(&seeds, now).await?;
        let changes_at = facts.judged_again_at(now);
        let reach = self.pdp.compile_reach(actor, facts, compartment, now);
        self.reach_cache.put(
            &seeds,
            compartment,
            generation,
            now,
            changes_at,
            reach.clone(),
        );
        Ok(reach)
    }

    /// Reads what the PDP needs about a practitioner starting from `seeds`: their
    /// principals, the edges to them that hold at `now` (the instant the access is compiled
    /// and kept from), and the consents of the patients those edges lead to.
    async fn reach_facts(&self, seeds: &[String], now: i64) -> Result<ReachFacts, RecordError> {
        let (principals, edges) = self.store.reach(seeds, now).await?;
        let mut patients: Vec<String> = edges.iter().map(|e| e.patient.clone()).collect();
        patients.sort();
        patients.dedup();
        let consents = self.consents_of(&patients).await?;
        Ok(ReachFacts {
            principals,
            edges,
            consents,
        })
    }

    /// Whether a reach-confined grant admits a resource: a shared type always; otherwise a
    /// patient whose compartment holds it must be open to the actor for its type and labels.
    pub(crate) fn reach_admits(&self, grant: &Grant, rt: &str, resource: &Value) -> bool {
        let Some(reach) = grant.reach() else {
            return true;
        };
        if medmesh_policy::is_shared_type(rt) {
            return true;
        }
        // A message is open to its parties, whatever patient it names.
        if medmesh_policy::parties_of(rt, resource)
            .iter()
            .any(|p| reach.principals.contains(p))
        {
            return true;
        }
        let labels = labels_of(resource);
        let tagged = resource
            .pointer("/meta/tag")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|t| {
                t.get("system").and_then(Value::as_str) == Some(SHARED_WITH)
                    && t.get("code")
                        .and_then(Value::as_str)
                        .is_some_and(|c| reach.principals.iter().any(|p| p == c))
            });
        self.compartment_owners(rt, resource)
            .iter()
            .filter_map(|p| reach.patient(p))
            .any(|a| a.admits(rt, &labels, tagged))
    }

    /// Stamps what policy derives from a resource about to be written: labels from the
    /// configured rules, and shared-with tags from the patients' sharing rules.
    pub(crate) async fn apply_write_policy(
        &self,
        ctx: &RequestContext,
        tx: &mut WriteTx,
        rt: &str,
        body: &mut Value,
    ) -> Result<(), RecordError> {
        let owners = self.compartment_owners(rt, body);
        let consents = if owners.is_empty() {
            Vec::new()
        } else {
            // Read once per transaction and patient: an import writes a whole bundle of one
            // patient's resources in one transaction, and this read was one query per resource.
            match tx.consents.get(&owners) {
                Some(c) => c.clone(),
                None => {
                    let c = self.consents_of(&owners).await?;
                    tx.consents.insert(owners.clone(), c.clone());
                    c
                }
            }
        };
        // The time sharing rules are judged at; without owners there are none to judge.
        let now = if owners.is_empty() { 0 } else { self.now() };
        self.label_and_share(ctx, rt, body, &owners, &consents, now);
        Ok(())
    }

    /// The consents that sharing rules read for these patients (outside any transaction: a
    /// write prepared before the lock checks the policy generation under it).
    pub(crate) async fn sharing_consents(
        &self,
        owners: &[String],
    ) -> Result<Vec<Arc<ConsentRule>>, RecordError> {
        if owners.is_empty() {
            return Ok(Vec::new());
        }
        self.consents_of(owners).await
    }

    /// What [`Self::apply_write_policy`] stamps, given the compartment's owners, their
    /// consents and the time of the write.
    pub(crate) fn label_and_share(
        &self,
        ctx: &RequestContext,
        rt: &str,
        body: &mut Value,
        owners: &[String],
        consents: &[Arc<ConsentRule>],
        now: i64,
    ) {
        add_labels(body, &derive_labels(&self.trust.label_rules, body));
        if owners.is_empty() {
            return;
        }
        let author = ctx.actor().clinician().map(|c| c.practitioner.as_str());
        let shared = shared_with(
            consents.iter().map(|c| &**c),
            rt,
            &categories(body),
            author,
            now,
        );
        if shared.is_empty() {
            return;
        }
        if let Some(obj) = body.as_object_mut() {
            let meta = obj.entry("meta").or_insert_with(|| json!({}));
            if let Some(meta) = meta.as_object_mut() {
                let tags = meta.entry("tag").or_insert_with(|| json!([]));
                if let Some(list) = tags.as_array_mut() {
                    for s in shared {
                        let tag = json!({"system": SHARED_WITH, "code": s});
                        if !list.contains(&tag) {
                            list.push(tag);
                        }
                    }
                }
            }
        }
    }

    /// Replaces the policy facts a written (or deleted: `None`) resource contributes.
    /// `first` says it was never written before: then it has no facts to replace (its facts
    /// are only added, without the two deletes a replacement makes), and one that contributes
    /// none (most prescriptions an import brings) costs no statement.
    pub(crate) async fn update_policy_facts(
        &self,
        tx: &mut WriteTx,
        rt: &str,
        id: &str,
        body: Option<&Value>,
        first: bool,
    ) -> Result<(), RecordError> {
        if !matches!(
            rt,
            "CareTeam"
                | "Patient"
                | "Task"
                | "Encounter"
                | "Consent"
                | "Appointment"
                | "MedicationRequest"
                | "MedicationDispense"
        ) {
            return Ok(());
        }
        let source = format!("{rt}/{id}");
        let edges = body
            .map(|b| edges_from(b, self.trust.encounter_window_micros))
            .unwrap_or_default();
        let consent = match (body, body.and_then(parse_consent)) {
            (Some(b), Some(c)) => {
                let sealed = self
                    .seal_text(tx, &c.patient, &consent_context(&c.patient), b.to_string())
                    .await?;
                Some((c.patient, sealed))
            }
            _ => None,
        };
        let consent = consent.as_ref().map(|(p, t)| (p.as_str(), t.as_str()));
        if !first {
            tx.replace_policy_facts(&source, &edges, consent).await?;
        } else if !edges.is_empty() || consent.is_some() {
            tx.add_policy_facts(&source, &edges, consent).await?;
        }
        Ok(())
    }

    /// Adds to an audit entry what a reach-confined access rested on.
    pub(crate) fn annotate(&self, entry: &mut AuditEntry, grant: &Grant) {
        let Some(reach) = grant.reach() else {
            return;
        };
        let mut basis = Vec::new();
        let mut purpose = None;
        for p in &entry.patients {
            if let Some(a) = reach.patient(p) {
                basis.extend(a.basis());
                if a.break_glass() || purpose.is_none() {
                    purpose = Some(a.purpose().to_string());
                }
            }
        }
        basis.sort();
        basis.dedup();
        entry.basis = basis;
        entry.purpose = purpose.or_else(|| Some("TREAT".into()));
    }
}
