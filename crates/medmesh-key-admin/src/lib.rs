//! Key administration on a running node's data: re-wrapping every data key under a new
//! KEK, full re-encryption (resumable), and erasure of a patient by destroying their keys.
//!
//! The mechanism (the key ring, sealing, the blind index) is `medmesh-at-rest`, below the
//! record service. Administration walks every stored body, consent, break-glass reason and
//! document blob, so it sits above the record service and the vault, and acts through the
//! record core: its writes are sealed and audited like any other.

use std::collections::HashSet;

use medmesh_audit::Outcome;
use medmesh_crypto::KeyId;
use medmesh_fhir::index;
use medmesh_policy::{Action, KeyAdmin, KeyStatusView};
use medmesh_store::KeyState;
use serde_json::Value;

use std::sync::Arc;

use medmesh_at_rest::{AtRest, body_context};
use medmesh_kernel::RequestContext;
use medmesh_records::policy_facts::consent_context;
use medmesh_records::{RecordError, RecordService};
use medmesh_store::{RecordStore, ResourceStore, TrustEdgeStore};
use medmesh_vault::DocumentVault;

/// The re-encryption job's name in `key_jobs`.
pub const REENCRYPT_JOB: &str = "reencrypt";
/// Rows re-encrypted per transaction.
const BATCH: u32 = 200;

/// What a re-wrap did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewrapReport {
    /// Keys re-wrapped under the current KEK.
    pub rewrapped: u64,
    /// Keys already under it.
    pub current: u64,
}

/// What a re-encryption did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReencryptReport {
    /// Stored versions sealed again.
    pub bodies: u64,
    /// Of them, plaintext bodies sealed for the first time.
    pub from_plaintext: u64,
    /// Current versions whose index rows were rebuilt.
    pub reindexed: u64,
    /// Consents and break-glass reasons sealed again.
    pub texts: u64,
    /// Owners given a new data key.
    pub new_keys: u64,
    /// Document blobs sealed again under their patient's new key.
    pub blobs: u64,
    /// Whether it resumed an interrupted run.
    pub resumed: bool,
}

/// What an erasure did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErasureReport {
    /// Resources deleted (current versions that were live).
    pub resources: u64,
    /// Data keys destroyed.
    pub keys: u64,
}

/// Key administration over the record service and the document vault.
pub struct KeyAdministration {
    records: Arc<RecordService>,
    resources: Arc<dyn ResourceStore>,
    edges: Arc<dyn TrustEdgeStore>,
    vault: Option<Arc<DocumentVault>>,
}

impl std::fmt::Debug for KeyAdministration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyAdministration").finish_non_exhaustive()
    }
}

fn at_rest(svc: &RecordService) -> Result<&Arc<AtRest>, RecordError> {
    svc.core()
        .at_rest()
        .ok_or_else(|| RecordError::NotSupported("encryption at rest is off on this node".into()))
}

/// The state of the node's keys (no key material).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyStatus {
    /// Whether encryption at rest is on.
    pub encrypted: bool,
    /// The KEK new data keys are wrapped under.
    pub current_kek: Option<String>,
    /// Live data keys per KEK.
    pub keys_per_kek: Vec<(String, u64)>,
    /// The re-encryption job's row cursor and state, once it ran.
    pub reencryption: Option<(i64, String)>,
}

/// What sealed data holds, or `None` when its patient was erased (nothing to re-encrypt).
fn unless_erased<T>(
    opened: Result<T, medmesh_at_rest::AtRestError>,
) -> Result<Option<T>, RecordError> {
    match opened {
        Ok(v) => Ok(Some(v)),
        Err(medmesh_at_rest::AtRestError::Erased) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl KeyAdministration {
    /// Administration over `records` and `store`; with `vault`, document blobs are sealed
    /// again with their Binary.
    pub fn new(
        records: Arc<RecordService>,
        store: Arc<dyn RecordStore>,
        vault: Option<Arc<DocumentVault>>,
    ) -> Self {
        Self {
            records,
            resources: store.clone(),
            edges: store,
            vault,
        }
    }

    /// Asks the PDP for the key-administration permit every method here takes.
    ///
    /// # Errors
    /// [`RecordError::Forbidden`] when the PDP refuses (anyone but the CLI's operator).
    pub fn permit(&self, ctx: &RequestContext) -> Result<KeyAdmin, RecordError> {
        self.records.key_admin(ctx)
    }

    /// Re-wraps every live data key under the KEK provider's current KEK. The data is not
    /// touched: each key is unwrapped with its old KEK and wrapped again.
    ///
    /// The PDP's [`KeyAdmin`] (the CLI's operator) is the permission:
    ///
    /// ```compile_fail
    /// # async fn f(svc: &medmesh_key_admin::KeyAdministration) {
    /// svc.rewrap_all_keys().await;
    /// # }
    /// ```
    ///
    /// # Errors
    /// When a key cannot be unwrapped (its KEK is missing) or the store fails.
    pub async fn rewrap_all_keys(&self, _admin: &KeyAdmin) -> Result<RewrapReport, RecordError> {
        let core = self.records.core();
        let a = at_rest(&self.records)?;
        let current = a.kek().current_kek();
        let mut report = RewrapReport::default();
        let mut after: Option<String> = None;
        loop {
            let page = a.key_store().live_keys_page(after.as_deref(), 500).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.key_id.clone());
            for k in page {
                let (Some(old), Some(wrapped)) = (&k.kek_id, &k.wrapped) else {
                    continue;
                };
                if *old == current {
                    report.current += 1;
                    continue;
                }
                let id: KeyId = k.key_id.parse().map_err(|_| RecordError::Corrupt)?;
                let dek = a
                    .kek()
                    .unwrap(old, wrapped, &id, &k.owner)
                    .await
                    .map_err(RecordError::Keys)?;
                let (new, rewrapped) = a
                    .kek()
                    .wrap(&dek, &id, &k.owner)
                    .await
                    .map_err(RecordError::Keys)?;
                if a.key_store()
                    .rewrap(&k.key_id, old, &new, &rewrapped, core.now())
                    .await?
                {
                    report.rewrapped += 1;
                }
            }
        }
        Ok(report)
    }

    /// The state of the node's keys, for the admin area: whether encryption at rest is on,
    /// the current KEK, how many data keys each KEK wraps, and the re-encryption job. The
    /// PDP's [`KeyStatusView`] is the permission.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn status(&self, _view: &KeyStatusView) -> Result<KeyStatus, RecordError> {
        let Some(at_rest) = self.records.core().at_rest() else {
            return Ok(KeyStatus::default());
        };
        Ok(KeyStatus {
            encrypted: true,
            current_kek: Some(at_rest.kek().current_kek()),
            keys_per_kek: at_rest.key_store().keys_per_kek().await?,
            reencryption: at_rest.key_store().job_cursor(REENCRYPT_JOB).await?,
        })
    }

    /// How many live data keys each KEK wraps.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn keys_per_kek(&self, _admin: &KeyAdmin) -> Result<Vec<(String, u64)>, RecordError> {
        Ok(at_rest(&self.records)?.key_store().keys_per_kek().await?)
    }

    /// The re-encryption job's saved cursor and state.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn reencrypt_state(
        &self,
        _admin: &KeyAdmin,
    ) -> Result<Option<(i64, String)>, RecordError> {
        Ok(at_rest(&self.records)?
            .key_store()
            .job_cursor(REENCRYPT_JOB)
            .await?)
    }

    /// Seals every stored version again, each owner under a fresh data key, rebuilds the
    /// current versions' (blinded) index rows, and seals consents and break-glass reasons
    /// again. Plaintext bodies from before encryption at rest are sealed for the first time.
    ///
    /// Resumable: progress is saved after every batch, and a later call carries on from
    /// there, reusing the keys the interrupted run made. `progress` hears the rows done.
    ///
    /// # Errors
    /// When the store or the KEK fails; the saved cursor stays where it was.
    pub async fn reencrypt(
        &self,
        admin: &KeyAdmin,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<ReencryptReport, RecordError> {
        let core = self.records.core();
        let a = at_rest(&self.records)?;
        let keys = a.key_store();
        let mut report = ReencryptReport::default();
        let (mut cursor, started) = match keys.job_cursor(REENCRYPT_JOB).await? {
            Some((c, state)) if state.starts_with("running:") => {
                report.resumed = true;
                let started = state["running:".len()..].parse::<i64>().unwrap_or(0);
                (c, started)
            }
            _ => {
                // On the key ring's clock: it is compared with key creation times.
                let now = a.now_micros();
                keys.save_job_cursor(REENCRYPT_JOB, 0, &format!("running:{now}"), now)
                    .await?;
                (0, now)
            }
        };
        let state = format!("running:{started}");
        // Owners whose key this run has replaced (read back from the store on resume).
        let mut fresh: HashSet<String> = HashSet::new();
        loop {
            let rows = self.resources.bodies_after(cursor, BATCH).await?;
            let Some(last) = rows.last() else { break };
            let last_seq = last.seq;
            // Open everything and give owners their new keys first: a key store write
            // inside the data transaction would wait on it (SQLite has one writer).
            let mut opened = Vec::with_capacity(rows.len());
            for row in rows {
                let v = &row.version;
                let ctx = body_context(&v.resource_type, &v.id, v.version);
                let Some(plain) = unless_erased(a.open(&ctx, &v.body).await)? else {
                    continue;
                };
                if !medmesh_crypto::Envelope::is_envelope(&v.body) {
                    report.from_plaintext += 1;
                }
                let json: Value =
                    serde_json::from_slice(&plain).map_err(|_| RecordError::Corrupt)?;
                let owner = core.key_owner(&v.resource_type, &json);
                self.fresh_key(a, &owner, started, &mut fresh, &mut report)
                    .await?;
                opened.push((row, ctx, plain, json, owner));
            }
            let binaries: Vec<Value> = opened
                .iter()
                .filter(|(row, _, _, _, _)| row.current && row.version.resource_type == "Binary")
                .map(|(_, _, _, json, _)| json.clone())
                .collect();
            let mut tx = core.begin_write().await?;
            for (row, ctx, plain, json, owner) in opened {
                let v = &row.version;
                let sealed = a.seal_in(&mut tx, &owner, &ctx, &plain).await?;
                tx.rewrite_body(row.seq, sealed).await?;
                report.bodies += 1;
                if row.current {
                    let rows = a
                        .blind_index()
                        .blind_rows(&v.resource_type, index::extract(core.definitions(), &json));
                    if tx
                        .reindex_current(&v.resource_type, &v.id, v.version, rows)
                        .await?
                    {
                        report.reindexed += 1;
                    }
                }
            }
            tx.commit().await?;
            // Document blobs follow their Binary (outside the transaction: blob I/O).
            for json in &binaries {
                if let Some(vault) = &self.vault
                    && vault.reseal_blob(admin, json).await?
                {
                    report.blobs += 1;
                }
            }
            cursor = last_seq;
            keys.save_job_cursor(REENCRYPT_JOB, cursor, &state, core.now())
                .await?;
            progress(report.bodies);
        }
        self.reseal_texts(a, started, &mut fresh, &mut report)
            .await?;
        keys.save_job_cursor(REENCRYPT_JOB, cursor, "done", core.now())
            .await?;
        Ok(report)
    }

    /// Gives `owner` a new active key, once per run.
    async fn fresh_key(
        &self,
        a: &AtRest,
        owner: &str,
        started: i64,
        fresh: &mut HashSet<String>,
        report: &mut ReencryptReport,
    ) -> Result<(), RecordError> {
        if fresh.contains(owner) {
            return Ok(());
        }
        let current = a.key_store().active_key(owner).await?;
        // A key made since the run started is this run's (a resumed run reuses it).
        if !current.is_some_and(|k| k.created_micros >= started && k.state == KeyState::Active) {
            a.replace_key(owner).await?;
            report.new_keys += 1;
        }
        fresh.insert(owner.to_string());
        Ok(())
    }

    /// Seals consents and break-glass reasons again under their patients' current keys.
    async fn reseal_texts(
        &self,
        a: &AtRest,
        started: i64,
        fresh: &mut HashSet<String>,
        report: &mut ReencryptReport,
    ) -> Result<(), RecordError> {
        let core = self.records.core();
        let mut consents = Vec::new();
        for (source, patient, body) in self.edges.consent_rows().await? {
            let ctx = consent_context(&patient);
            let Some(plain) = unless_erased(a.open_text(&ctx, &body).await)? else {
                continue;
            };
            self.fresh_key(a, &patient, started, fresh, report).await?;
            consents.push((source, patient, ctx, plain));
        }
        let mut reasons = Vec::new();
        for edge in self.edges.break_glass_since(i64::MIN).await? {
            let Some(detail) = &edge.detail else { continue };
            let Some(plain) = unless_erased(a.open_text(&edge.source, detail).await)? else {
                continue;
            };
            self.fresh_key(a, &edge.patient, started, fresh, report)
                .await?;
            reasons.push((edge, plain));
        }
        let mut tx = core.begin_write().await?;
        for (source, patient, ctx, plain) in consents {
            let sealed = a.seal_text_in(&mut tx, &patient, &ctx, &plain).await?;
            tx.rewrite_consent(&source, &sealed).await?;
            report.texts += 1;
        }
        for (mut edge, plain) in reasons {
            edge.detail = Some(
                a.seal_text_in(&mut tx, &edge.patient, &edge.source, &plain)
                    .await?,
            );
            tx.replace_policy_facts(&edge.source.clone(), std::slice::from_ref(&edge), None)
                .await?;
            report.texts += 1;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Erases a patient: deletes every resource in their compartment and destroys their
    /// data keys, in one audited transaction. Every stored version of their data, in this
    /// database and in its backups, becomes unreadable once the KEK that wrapped those keys
    /// is also rotated away (the CLI does that next).
    ///
    /// # Errors
    /// [`RecordError::Forbidden`] unless the actor holds `system/*` write access; store or
    /// key failures.
    pub async fn erase_patient(
        &self,
        ctx: &RequestContext,
        patient_id: &str,
    ) -> Result<ErasureReport, RecordError> {
        let core = self.records.core();
        let a = at_rest(&self.records)?;
        let grant = core.authorize(ctx, Action::Delete, Some("Patient")).await?;
        if !grant.is_unrestricted() {
            return Err(RecordError::Forbidden);
        }
        let links: Vec<(String, Vec<String>)> = core
            .definitions()
            .patient_compartment()
            .iter()
            .map(|(t, p)| (t.clone(), p.clone()))
            .collect();
        let mut targets = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .resources
                .compartment_page(patient_id, &links, None, &[], 1000, cursor.as_deref())
                .await?;
            targets.extend(page.matches);
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        let mut tx = core.begin_write().await?;
        let mut report = ErasureReport::default();
        let mut erased = Vec::new();
        for (rt, id) in &targets {
            if let Some(head) = tx.head(rt, id).await?
                && !head.deleted
            {
                core.tombstone(&mut tx, &grant, rt, id, head).await?;
                report.resources += 1;
                erased.push(format!("{rt}/{id}"));
            }
        }
        report.keys = tx.destroy_data_keys(patient_id, core.now()).await?;
        let mut entry = core.entry(ctx, "erase", Some("Patient"), erased, Outcome::Success);
        entry.patients = vec![patient_id.to_string()];
        entry.reason = Some("erasure at the patient's request".into());
        tx.append_audit(&entry).await?;
        tx.commit().await?;
        a.forget(patient_id);
        a.announce_erasure().await?;
        Ok(report)
    }
}
