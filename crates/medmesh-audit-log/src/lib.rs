//! The audit-log service: signed checkpoints, inclusion and consistency proofs, a
//! patient's own entries with proofs, and the full re-derivation `medmesh audit verify` runs.
//!
//! This is the log's read side. Appends happen with the data, inside the record service's
//! write transactions and its group-commit writer (`medmesh_records::audit_writer`), so this
//! crate never writes an entry except the one that records a reading of the log itself.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use medmesh_audit::AuditEntry;
use medmesh_audit::StoredBeside;
use medmesh_audit::chain::PatientHead;
use medmesh_audit::chain::{ChainFold, LinkProblem, LinkRef, PrevEntry};
use medmesh_audit::checkpoint::{LogSigner, LogVerifierKey, TreeHead};
use medmesh_audit::map::{
    DerivedMap, EMPTY, MapChanges, MapKey, MapNodeId, MapProof, MapSecret, MapUpdate, proof_nodes,
};
use medmesh_audit::merkle::{self, Frontier, Hash, MerkleError, NodeId};
use medmesh_audit::verify::{LogProblem, LogVerifier, VerifyReport};
use medmesh_crypto::{Random, SetDigest, SetDigestKey};
use medmesh_store::{
    AuditLogStore, DerivedRow, LeafPage, LogKeyRecord, MapHead, PatientRowPages, RowPages,
    ScannedLeaf, SecretSealer, StoreError, StoredCheckpoint,
};

use medmesh_audit::Outcome;
use medmesh_kernel::{Clock, RequestContext};
use medmesh_policy::AuditView;
use medmesh_records::{RecordError, RecordService};

mod witnessing;

pub use medmesh_audit::witness::{ReplyFuture, WitnessReply, WitnessTransport};
pub use witnessing::{ListedWitness, PushOutcome, ServedCosignature, WitnessPolicy};

/// Rows read per page while verifying.
const VERIFY_PAGE: u32 = 20_000;

/// A failure of the audit log service.
#[derive(Debug, thiserror::Error)]
pub enum AuditLogError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A proof was asked for sizes or an index the log does not have.
    #[error("no such tree size or entry")]
    OutOfRange,
    /// The stored tree lacks a node a proof needs (the log is damaged; run `audit verify`).
    #[error("the stored tree is damaged")]
    Damaged,
    /// The log's signing key cannot be sealed or opened (the key-encryption key).
    #[error("the log key cannot be sealed or opened: {0}")]
    Key(#[source] medmesh_store::KekError),
    /// The stored log key is not a 32-byte secret (the store is damaged).
    #[error("the stored log key is not 32 bytes")]
    MalformedKey,
    /// A posted cosignature is not on one of this log's checkpoints, or not by a witness the
    /// node lists.
    #[error("not a checkpoint of this log cosigned by a listed witness")]
    NotCosigned,
}

impl From<AuditLogError> for RecordError {
    fn from(e: AuditLogError) -> Self {
        match e {
            AuditLogError::Store(inner) => RecordError::Store(inner),
            AuditLogError::OutOfRange => RecordError::BadRequest(vec![medmesh_fhir::Issue::error(
                medmesh_fhir::IssueType::Invalid,
                "no such tree size or entry",
            )]),
            AuditLogError::Damaged => {
                tracing::error!("the audit tree is damaged; run `medmesh audit verify`");
                RecordError::Corrupt
            }
            AuditLogError::Key(inner) => RecordError::Keys(inner),
            AuditLogError::MalformedKey => {
                tracing::error!("the stored audit-log key is malformed");
                RecordError::Corrupt
            }
            AuditLogError::NotCosigned => {
                RecordError::BadRequest(vec![medmesh_fhir::Issue::error(
                    medmesh_fhir::IssueType::Invalid,
                    "not a checkpoint of this log cosigned by a witness the node lists",
                )])
            }
        }
    }
}

impl AuditLogService {
    /// One page of a patient's access log for `ctx`: who accessed the record, when, why and
    /// on what basis, each entry with its inclusion proof. The reading is itself an access
    /// to the record and is audited, permitted or denied (after the page is read, so a page
    /// never proves its own reading).
    ///
    /// # Errors
    /// [`RecordError::Forbidden`] when the PDP refuses (audited); store failures.
    pub async fn read_patient_log(
        &self,
        records: &RecordService,
        ctx: &RequestContext,
        patient: &str,
        before: Option<u64>,
        limit: u32,
        pinned: Option<u64>,
    ) -> Result<Option<PatientLog>, RecordError> {
        let core = records.core();
        let view = records.audit_view(ctx, Some(patient));
        let outcome = if view.is_ok() {
            Outcome::Success
        } else {
            Outcome::Denied
        };
        let mut entry = core.entry(ctx, "read-audit-log", None, Vec::new(), outcome);
        entry.patients = vec![patient.to_string()];
        let view = match view {
            Ok(v) => v,
            Err(e) => {
                core.append_audit(vec![entry]).await?;
                return Err(e);
            }
        };
        let page = self.patient_log(&view, before, limit, pinned).await?;
        core.append_audit(vec![entry]).await?;
        Ok(page)
    }
}

impl From<MerkleError> for AuditLogError {
    fn from(e: MerkleError) -> Self {
        match e {
            MerkleError::OutOfRange => Self::OutOfRange,
            MerkleError::MissingNode(..) | MerkleError::Invalid => Self::Damaged,
        }
    }
}

/// One of a patient's entries, with its proof against a checkpoint.
#[derive(Debug, Clone)]
pub struct ProvenEntry {
    /// Leaf index.
    pub index: u64,
    /// The entry's exact bytes (what was hashed).
    pub leaf: Vec<u8>,
    /// The entry, decoded.
    pub entry: AuditEntry,
    /// Inclusion proof (RFC 9162 audit path, leaf side first).
    pub proof: Vec<Hash>,
}

/// A page of a patient's log.
#[derive(Debug, Clone)]
pub struct PatientLog {
    /// The checkpoint every proof is against.
    pub checkpoint: StoredCheckpoint,
    /// Its tree head.
    pub head: TreeHead,
    /// The patient's map proof against the checkpoint (not given for a pinned checkpoint).
    pub map: Option<MapProof>,
    /// The listed witnesses' cosignatures, each with a consistency proof to the checkpoint
    /// (first page only, with the map proof).
    pub cosignatures: Vec<ServedCosignature>,
    /// Entries, newest first.
    pub entries: Vec<ProvenEntry>,
}

/// The audit log service.
pub struct AuditLogService {
    store: Arc<dyn AuditLogStore>,
    signer: LogSigner,
    /// Derived from the signing secret: patient ids become map keys under it.
    map_secret: MapSecret,
    origin: String,
    clock: Arc<dyn Clock>,
    secrets: Option<Arc<dyn SecretSealer>>,
    /// The witnesses the node lists ([`WitnessPolicy`]).
    witnesses: WitnessPolicy,
}

/// What a log key's sealed secret is bound to.
fn log_key_context(origin: &str) -> String {
    format!("audit-key/{origin}")
}

/// Opens a stored log key: sealed, or (stored before keys were sealed) as it is.
async fn open_log_secret(
    secrets: Option<&dyn SecretSealer>,
    context: &str,
    stored: &[u8],
) -> Result<[u8; 32], AuditLogError> {
    let plain = match secrets {
        Some(s) => s
            .open_secret(context, stored)
            .await
            .map_err(AuditLogError::Key)?
            .unwrap_or_else(|| stored.to_vec()),
        None => stored.to_vec(),
    };
    plain.try_into().map_err(|_| AuditLogError::MalformedKey)
}

impl std::fmt::Debug for AuditLogService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLogService")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl AuditLogService {
    /// Opens the log named `origin`: loads its signing key, or stores `fresh_secret` as the
    /// key if this origin has none yet (so every replica ends up with the same key).
    ///
    /// # Errors
    /// When storage fails.
    ///
    /// With `secrets`, the key is stored sealed under the KEK (a copy of the database alone
    /// cannot sign checkpoints); a key stored before that is used as it is until
    /// [`Self::reseal_key`] seals it.
    pub async fn open(
        store: Arc<dyn AuditLogStore>,
        origin: &str,
        fresh_secret: [u8; 32],
        clock: Arc<dyn Clock>,
        secrets: Option<Arc<dyn SecretSealer>>,
    ) -> Result<Self, AuditLogError> {
        let candidate = LogSigner::new(origin, fresh_secret);
        let context = log_key_context(origin);
        let stored_candidate = match &secrets {
            Some(s) => s
                .seal_secret(&context, &fresh_secret)
                .await
                .map_err(AuditLogError::Key)?,
            None => fresh_secret.to_vec(),
        };
        let record = store
            .log_key(
                &LogKeyRecord {
                    name: origin.to_string(),
                    secret: stored_candidate,
                    public: candidate.verifier().public_bytes(),
                },
                clock.now_micros(),
            )
            .await?;
        let secret = open_log_secret(secrets.as_deref(), &context, &record.secret).await?;
        // The map's keys must not change while the log lives, whatever name the log is
        // opened under later (a changed public origin makes a new signing key): the map
        // secret comes from the log's first key.
        let first = store
            .log_public_keys()
            .await?
            .into_iter()
            .next()
            .map(|(name, _)| name)
            .filter(|name| name != origin);
        let map_secret = match first {
            None => MapSecret::derive(&secret),
            Some(name) => {
                let record = store
                    .log_key(
                        &LogKeyRecord {
                            name: name.clone(),
                            secret: Vec::new(),
                            public: [0; 32],
                        },
                        clock.now_micros(),
                    )
                    .await?;
                let first_secret =
                    open_log_secret(secrets.as_deref(), &log_key_context(&name), &record.secret)
                        .await?;
                MapSecret::derive(&first_secret)
            }
        };
        Ok(Self {
            store,
            signer: LogSigner::new(origin, secret),
            map_secret,
            origin: origin.to_string(),
            clock,
            secrets,
            witnesses: WitnessPolicy::default(),
        })
    }

    /// Seals this log's key again under the sealer's current key (`keys reencrypt`), a
    /// key stored in clear before secrets were sealed included.
    ///
    /// # Errors
    /// When the store or the sealer fails.
    pub async fn reseal_key(&self) -> Result<(), AuditLogError> {
        let Some(sealer) = &self.secrets else {
            return Ok(());
        };
        let context = log_key_context(&self.origin);
        let sealed = sealer
            .seal_secret(&context, &self.signer.secret_bytes())
            .await
            .map_err(AuditLogError::Key)?;
        self.store
            .replace_log_key_secret(&self.origin, &sealed)
            .await?;
        Ok(())
    }

    /// The key that verifies this log's checkpoints.
    pub fn verifier_key(&self) -> LogVerifierKey {
        self.signer.verifier()
    }

    /// The secret under which patient ids become map keys: `audit verify` re-derives the
    /// map with it. Never show it.
    pub fn map_secret(&self) -> &MapSecret {
        &self.map_secret
    }

    /// Signs a checkpoint of the current tree, unless the newest one already covers it.
    /// Returns the newest checkpoint. Called at the configured interval and on demand.
    ///
    /// Signing first moves the patient map to the tree's size, from the entries appended
    /// since it was last moved, and the checkpoint signs the map's root beside the tree's.
    /// The map and its checkpoint commit together; when another replica moved the map
    /// first, this one starts again from the newer state.
    ///
    /// # Errors
    /// When storage fails.
    pub async fn checkpoint_now(&self) -> Result<Option<StoredCheckpoint>, AuditLogError> {
        for _ in 0..MAP_TRIES {
            let head = self.store.log_head().await?;
            let latest = self.store.checkpoint(None).await?;
            let covered = latest
                .as_ref()
                .is_some_and(|c| c.size >= head.size && signs_map(c));
            if covered || head.size == 0 {
                return Ok(latest);
            }
            let map = self.store.map_head().await?;
            if map.size > head.size {
                continue; // moved past the head read above: read again
            }
            let changes = self.map_changes(map.size, head.size, map.root).await?;
            let frontier = Frontier::from_bytes(head.size, &head.peaks)?;
            let root = frontier.root().ok_or(AuditLogError::Damaged)?;
            let now = self.clock.now_micros();
            let text = self.signer.sign(&TreeHead {
                origin: self.origin.clone(),
                size: head.size,
                root,
                timestamp_micros: now,
                patient_map: Some(changes.root),
            });
            let checkpoint = StoredCheckpoint {
                size: head.size,
                text,
                signed_micros: now,
            };
            if self
                .store
                .commit_map(map.size, head.size, &changes, &checkpoint)
                .await?
            {
                // Another replica may have signed the same size first; theirs is kept.
                return Ok(self.store.checkpoint(Some(head.size)).await?);
            }
        }
        // Every try lost to another replica: theirs is the newest.
        Ok(self.store.checkpoint(None).await?)
    }

    /// The map's changes for the entries `from..to`: each patient's newest link among them
    /// becomes their head.
    async fn map_changes(
        &self,
        from: u64,
        to: u64,
        root: Hash,
    ) -> Result<MapChanges, AuditLogError> {
        // The same fold `audit verify` re-derives the chains with. What is wrong with a link
        // is verify's to report; the map follows the entries as they are. An entry from
        // before the chains has no links: the map is first built from the start of the log,
        // so the fold's count gives its place.
        let mut chains = ChainFold::default();
        let mut next = from;
        while next < to {
            let page = self.store.log_entries(next, VERIFY_PAGE).await?;
            let Some(last) = page.last() else {
                return Err(AuditLogError::Damaged); // shorter than its head
            };
            next = last.index + 1;
            for row in page.iter().take_while(|r| r.index < to) {
                let entry =
                    StoredBeside::from_leaf(&row.entry).map_err(|_| AuditLogError::Damaged)?;
                entry.fold_into(&mut chains, row.index, merkle::leaf_hash(&row.entry));
            }
        }
        // The fold started at `from`: every head it holds moved in `from..to`.
        let heads: Vec<(String, PatientHead)> = chains
            .heads()
            .map(|(p, h, _)| (p.to_string(), *h))
            .collect();
        if heads.is_empty() {
            return Ok(MapChanges {
                heads: Vec::new(),
                nodes: Vec::new(),
                root,
            });
        }
        let update = MapUpdate::new(
            heads
                .into_iter()
                .map(|(p, h)| (self.map_secret.key(&p), h))
                .collect(),
        );
        let members = self.store.map_members(&update.buckets()).await?;
        let nodes = self.store.map_nodes(&update.nodes_needed()).await?;
        Ok(update.apply(members, &nodes))
    }

    /// A patient's map proof, from the stored map as it is now.
    async fn map_proof(&self, patient: &str) -> Result<MapProof, AuditLogError> {
        let key = self.map_secret.key(patient);
        let members = self.store.map_members(&[key.bucket()]).await?;
        let nodes = self.store.map_nodes(&proof_nodes(key.bucket())).await?;
        Ok(MapProof::build(key, &members, &nodes))
    }

    /// The patient's head in the map, proven against a checkpoint of the whole log as it is
    /// now (signed now if the newest does not cover it): what a patient's client checks
    /// first. The PDP's [`AuditView`] of that patient is the permission. `None` while the
    /// log is empty, or for a view that names no patient.
    ///
    /// # Errors
    /// Storage failures; [`AuditLogError::Damaged`] when the stored map does not match its
    /// checkpoint.
    pub async fn patient_map_proof(
        &self,
        view: &AuditView,
    ) -> Result<Option<(StoredCheckpoint, TreeHead, MapProof)>, AuditLogError> {
        match view.patient() {
            Some(patient) => self.current_proof(patient).await,
            None => Ok(None),
        }
    }

    /// A checkpoint of the whole log as it is now (signed now if the newest does not cover
    /// it), with the patient's map proof against it. `None` while the log is empty.
    async fn current_proof(
        &self,
        patient: &str,
    ) -> Result<Option<(StoredCheckpoint, TreeHead, MapProof)>, AuditLogError> {
        let key = self.signer.verifier();
        for _ in 0..MAP_TRIES {
            // Signed now unless the newest covers the whole log: the page is proven against
            // the log as it is, not as it was at the last interval. (Covering only the
            // patient's newest visible entry would let a hidden newer one stay outside.)
            let Some(checkpoint) = self.checkpoint_now().await? else {
                return Ok(None);
            };
            let head = key
                .open(&checkpoint.text)
                .map_err(|_| AuditLogError::Damaged)?;
            let Some(root) = head.patient_map else {
                continue;
            };
            let proof = self.map_proof(patient).await?;
            // A map moved by a newer checkpoint between the two reads: read both again.
            if proof.verify(&root).is_ok() {
                return Ok(Some((checkpoint, head, proof)));
            }
        }
        tracing::error!(
            "the patient map does not match its checkpoint; run `medmesh audit verify`"
        );
        Err(AuditLogError::Damaged)
    }

    /// The newest checkpoint.
    ///
    /// # Errors
    /// When storage fails.
    pub async fn latest(&self) -> Result<Option<StoredCheckpoint>, AuditLogError> {
        Ok(self.store.checkpoint(None).await?)
    }

    /// The checkpoint at exactly `size`.
    ///
    /// # Errors
    /// When storage fails.
    pub async fn checkpoint_at(
        &self,
        size: u64,
    ) -> Result<Option<StoredCheckpoint>, AuditLogError> {
        Ok(self.store.checkpoint(Some(size)).await?)
    }

    async fn with_nodes<T>(
        &self,
        run: impl Fn(&mut dyn FnMut(NodeId) -> Result<Hash, MerkleError>) -> Result<T, MerkleError>,
    ) -> Result<T, AuditLogError> {
        let wanted = merkle::nodes_needed(|n| run(n).map(|_| ()));
        let nodes = self.store.log_nodes(&wanted).await?;
        let mut lookup = |id: NodeId| {
            nodes
                .get(&id)
                .copied()
                .ok_or(MerkleError::MissingNode(id.0, id.1))
        };
        Ok(run(&mut lookup)?)
    }

    async fn check_size(&self, size: u64) -> Result<(), AuditLogError> {
        if size == 0 || size > self.store.log_head().await?.size {
            return Err(AuditLogError::OutOfRange);
        }
        Ok(())
    }

    /// The inclusion proof of entry `index` in the tree of `size` entries.
    ///
    /// # Errors
    /// [`AuditLogError::OutOfRange`] for an index or size the log does not have.
    pub async fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, AuditLogError> {
        self.check_size(size).await?;
        self.with_nodes(|n| merkle::inclusion_proof(index, size, n))
            .await
    }

    /// The consistency proof from the tree of `old_size` entries to the tree of `new_size`.
    ///
    /// # Errors
    /// [`AuditLogError::OutOfRange`] unless `0 < old_size <= new_size <= current size`.
    pub async fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash>, AuditLogError> {
        self.check_size(new_size).await?;
        self.with_nodes(|n| merkle::consistency_proof(old_size, new_size, n))
            .await
    }

    /// A patient's own entries, newest first, each with an inclusion proof against one
    /// checkpoint, and the patient's map proof against the same checkpoint, which says how
    /// many entries there are and which is the newest. Without `pinned`, the checkpoint is
    /// the newest (signed now if it does not cover the patient's entries yet); with it, the
    /// checkpoint at that size, so that a client reads the later pages of one log against
    /// the checkpoint of the first (the map proof is given for the newest only). The PDP's
    /// [`AuditView`] of that patient is the permission; [`Self::read_patient_log`] asks for
    /// it and audits the reading.
    ///
    /// ```compile_fail
    /// # async fn f(log: &medmesh_records::AuditLogService) {
    /// log.patient_log("p1", None, 50, None).await;
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`AuditLogError::OutOfRange`] for a pinned size with no checkpoint; storage failures.
    pub async fn patient_log(
        &self,
        view: &AuditView,
        before: Option<u64>,
        limit: u32,
        pinned: Option<u64>,
    ) -> Result<Option<PatientLog>, AuditLogError> {
        // A view of the whole log names no patient: there is no patient page to show.
        let Some(patient_id) = view.patient() else {
            return Ok(None);
        };
        let (checkpoint, head, map) = match pinned {
            Some(size) => {
                let checkpoint = self
                    .store
                    .checkpoint(Some(size))
                    .await?
                    .ok_or(AuditLogError::OutOfRange)?;
                let head = self
                    .signer
                    .verifier()
                    .open(&checkpoint.text)
                    .map_err(|_| AuditLogError::Damaged)?;
                (checkpoint, head, None)
            }
            None => match self.current_proof(patient_id).await? {
                Some((checkpoint, head, map)) => (checkpoint, head, Some(map)),
                None => return Ok(None),
            },
        };
        let before = before.map_or(head.size, |b| b.min(head.size));
        let rows = self
            .store
            .log_entries_for_patient(patient_id, Some(before), limit)
            .await?;
        // Every proof of the page from one read of the nodes they need (the checkpoint's size
        // lies within the log, so no size check is needed).
        let indices: Vec<u64> = rows.iter().map(|r| r.index).collect();
        let proofs = self
            .with_nodes(|n| {
                indices
                    .iter()
                    .map(|i| merkle::inclusion_proof(*i, head.size, &mut *n))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let mut entries = Vec::with_capacity(rows.len());
        for (r, proof) in rows.into_iter().zip(proofs) {
            let entry = AuditEntry::from_leaf(&r.entry).map_err(|_| AuditLogError::Damaged)?;
            entries.push(ProvenEntry {
                index: r.index,
                leaf: r.entry,
                entry,
                proof,
            });
        }
        let cosignatures = if map.is_some() {
            self.cosignatures_for(&head).await?
        } else {
            Vec::new()
        };
        Ok(Some(PatientLog {
            checkpoint,
            head,
            map,
            cosignatures,
            entries,
        }))
    }
}

/// Tries at moving the map before giving way to the replica that keeps moving it.
const MAP_TRIES: usize = 4;

/// Whether a checkpoint signs the patient map (those from before the map do not).
fn signs_map(checkpoint: &StoredCheckpoint) -> bool {
    checkpoint.text.contains("\npatient-map ")
}

/// Re-derives the whole log from storage and checks every checkpoint (`medmesh audit
/// verify`). `trusted` pins the keys to check checkpoints with; empty means the keys stored
/// beside the log (which someone able to rewrite the database could also replace). `random`
/// draws the one-use key that compares the patient rows as sets.
///
/// One pass reads the leaves in order: it hashes each into the tree, checks the stored nodes
/// and the checkpoints, checks the columns stored beside the leaf, and digests the patient
/// rows the entry names. Beside it, on another core, a second pass digests the
/// `audit_patient` rows in the table's own order. Equal digests mean equal sets; only when
/// they differ does a slower pass, in leaf order, name the entries whose rows differ.
///
/// # Errors
/// `Ok(Err(problem))` names the first problem; `Err` is a storage failure.
pub async fn verify_log(
    store: &dyn AuditLogStore,
    trusted: &[LogVerifierKey],
    map_secret: &MapSecret,
    random: &dyn Random,
) -> Result<Result<VerifyReport, LogProblem>, StoreError> {
    let keys = if trusted.is_empty() {
        store
            .log_public_keys()
            .await?
            .into_iter()
            .filter_map(|(name, public)| LogVerifierKey::new(&name, &public).ok())
            .collect()
    } else {
        trusted.to_vec()
    };
    let checkpoints: Vec<(u64, String)> = store
        .checkpoints()
        .await?
        .into_iter()
        .map(|c| (c.size, c.text))
        .collect();
    // The map first, then the head: the map never runs ahead of a head read after it.
    // Entries appended while verifying are beyond the head and not checked.
    let stored_map = store.map_head().await?;
    let head = store.log_head().await?;
    let mut verifier = match LogVerifier::new(&keys, &checkpoints) {
        Ok(v) => v,
        Err(p) => return Ok(Err(p)),
    };
    // What the pass ends by comparing (the stored map's heads and nodes, the chain heads) is
    // read beside it, on the scans' own threads: read after it, it was a quarter of the time.
    let beside_rows = AbortOnDrop(tokio::spawn(read_beside_rows(
        store.scan_map_heads(),
        store.scan_map_nodes(),
        store.scan_chain_heads(),
    )));
    let mut maps = MapCheck {
        secret: map_secret,
        chains: ChainFold::default(),
        map: DerivedMap::default(),
        signed: signed_map_roots(&keys, &checkpoints, head.size),
        stored: stored_map,
        reading: Some(beside_rows),
        beside: BesideRows::default(),
    };
    if stored_map.size > head.size {
        return Ok(Err(LogProblem::DerivedRows {
            count: 1,
            differences: vec![format!(
                "the patient map is at size {} but the log ends at {}",
                stored_map.size, head.size
            )],
        }));
    }
    // Drawn after the rows to compare were written, and never shown: no one can have picked
    // rows whose digests cancel.
    let key = SetDigestKey::random(random);
    // Dropping a join handle does not stop its task; this aborts it (and so its reader) on
    // an early return.
    let mut stored_pass = AbortOnDrop(tokio::spawn(digest_patient_rows(
        store.scan_patient_rows(),
        key.digest(),
        head.size,
    )));

    let mut named = key.digest();
    let mut derived = DerivedCheck::default();
    // Leaf hashes and the columns' checks are independent per leaf: each page gets them on
    // a blocking thread while this task folds the previous page into the tree.
    let empty = key.digest();
    let mut pages = store
        .scan_leaves(0, head.size)
        .map(move |page| {
            let empty = empty.clone();
            async move {
                let page = page?;
                tokio::task::spawn_blocking(move || HashedPage::of(page, empty))
                    .await
                    .map_err(StoreError::backend)
            }
        })
        .buffered(PAGES_HASHED_AHEAD);
    while let Some(page) = pages.next().await {
        let mut page = page?;
        derived.merge(std::mem::take(&mut page.derived));
        // Reused for every entry of the page: the fold reads them borrowed from the page.
        let mut patients: Vec<&str> = Vec::new();
        let mut chain: Vec<LinkRef<'_>> = Vec::new();
        for (i, (leaf, &hash)) in page.leaves.iter().zip(&page.hashes).enumerate() {
            if let Err(p) = verifier.feed_hashed(leaf.index, hash, leaf.nodes) {
                return Ok(Err(p));
            }
            if maps.stored.size == leaf.index
                || maps
                    .signed
                    .first_key_value()
                    .is_some_and(|(s, _)| *s == leaf.index)
            {
                maps.at(leaf.index, &mut derived).await?;
            }
            page.links.entry(i, &mut patients, &mut chain);
            maps.feed(leaf.index, hash, &patients, &chain, &mut derived);
        }
        named.merge(&page.named);
    }
    drop(pages);
    // The chain heads are compared on another core while this one derives the map's root.
    let chain_heads = maps.compare_chain_heads_beside(head.size).await?;
    maps.at(head.size, &mut derived).await?;
    let wrong = chain_heads.await.map_err(StoreError::backend)?;
    if wrong > 0 {
        derived.differ(format!(
            "{wrong} chain head row(s) differ from the newest entries of their patients"
        ));
    }
    let stored = (&mut stored_pass.0).await.map_err(StoreError::backend)??;
    if !named.same_as(&stored.digest) {
        name_patient_row_differences(store, head.size, &mut derived).await?;
        if derived.count == 0 {
            // Compared one by one the rows agree, so they changed between the two passes,
            // which an append cannot do (it only adds rows past the head).
            derived.differ("the patient rows changed while they were verified".into());
        }
    }
    // Patient rows naming entries the log does not have (past its end).
    if stored.past_head > 0 {
        for row in store.derived_rows(head.size, u64::MAX >> 2).await? {
            if row.time_micros.is_none() && !row.patients.is_empty() {
                derived.differ(format!(
                    "entry {} is not in the log but {} patient row(s) name it",
                    row.index,
                    row.patients.len()
                ));
            }
        }
    }
    // Rows past the head are fine only if a concurrent append has since moved the head over
    // them; a row no head covers was inserted behind the writer's back.
    if let Some(extra) = store.log_entries(head.size, 1).await?.first()
        && store.log_head().await?.size <= extra.index
    {
        return Ok(Err(LogProblem::Inserted(extra.index)));
    }
    let structure = verifier.finish(head.size, &head.peaks);
    Ok(match structure {
        Ok(report) if derived.count == 0 => Ok(report),
        Ok(_) => Err(LogProblem::DerivedRows {
            count: derived.count,
            differences: derived.differences,
        }),
        Err(p) => Err(p),
    })
}

/// The patient-map roots the checkpoints sign, by size, for sizes the log reaches.
fn signed_map_roots(
    keys: &[LogVerifierKey],
    checkpoints: &[(u64, String)],
    size: u64,
) -> std::collections::BTreeMap<u64, Hash> {
    checkpoints
        .iter()
        .filter(|(s, _)| *s <= size)
        .filter_map(|(s, text)| {
            keys.iter()
                .find_map(|k| k.open(text).ok())
                .and_then(|h| h.patient_map)
                .map(|root| (*s, root))
        })
        .collect()
}

/// Pages of leaves hashed ahead of the tree. The reader, the hashing and the fold each take
/// about a third of the work on two cores; with two pages ahead, a stage often waited for the
/// next (~75% of the cores busy; four were 1.1 to 1.2× as fast in one set of runs).
const PAGES_HASHED_AHEAD: usize = 4;
/// A page of leaves with what can be computed for each leaf alone.
struct HashedPage {
    leaves: LeafPage,
    hashes: Vec<Hash>,
    links: PageLinks,
    derived: DerivedCheck,
    named: SetDigest,
}

/// Every entry's patients and chain links for one page, in a few buffers shared by the
/// page's entries rather than a few allocations per entry (a million entries made them a
/// quarter of verify's time, most of it in allocating and freeing).
#[derive(Default)]
struct PageLinks {
    /// The patient ids the page's entries name, back to back.
    names: String,
    /// Each entry's patients, sorted and without repeats, as ranges of `names`.
    patients: Vec<std::ops::Range<usize>>,
    /// Each entry's links, with the patient as a range of `names`.
    links: Vec<(std::ops::Range<usize>, u64, Option<PrevEntry>)>,
    /// Where each entry's patients and links end in `patients` and `links`.
    ends: Vec<(usize, usize)>,
}

impl PageLinks {
    fn name(&mut self, id: &str) -> std::ops::Range<usize> {
        let start = self.names.len();
        self.names.push_str(id);
        start..self.names.len()
    }

    /// Adds the next entry (none for one that does not parse).
    fn push(&mut self, patients: &[&str], chain: &[medmesh_audit::beside::LinkBeside<'_>]) {
        for p in patients {
            let r = self.name(p);
            self.patients.push(r);
        }
        for l in chain {
            let r = self.name(&l.patient);
            self.links.push((r, l.seq, l.prev));
        }
        self.ends.push((self.patients.len(), self.links.len()));
    }

    /// Entry `i`'s patients and links, into the caller's buffers.
    fn entry<'a>(&'a self, i: usize, patients: &mut Vec<&'a str>, chain: &mut Vec<LinkRef<'a>>) {
        let (p_start, l_start) = i
            .checked_sub(1)
            .and_then(|j| self.ends.get(j).copied())
            .unwrap_or_default();
        let (p_end, l_end) = self.ends.get(i).copied().unwrap_or((p_start, l_start));
        patients.clear();
        chain.clear();
        for r in self.patients.get(p_start..p_end).unwrap_or_default() {
            patients.push(self.names.get(r.clone()).unwrap_or_default());
        }
        for (r, seq, prev) in self.links.get(l_start..l_end).unwrap_or_default() {
            chain.push(LinkRef {
                patient: self.names.get(r.clone()).unwrap_or_default(),
                seq: *seq,
                prev: *prev,
            });
        }
    }
}

impl HashedPage {
    fn of(leaves: LeafPage, mut named: SetDigest) -> Self {
        let mut derived = DerivedCheck::default();
        let mut links = PageLinks::default();
        let hashes = leaves
            .iter()
            .map(|leaf| {
                derived.columns(&leaf, &mut named, &mut links);
                merkle::leaf_hash(leaf.entry)
            })
            .collect();
        Self {
            leaves,
            hashes,
            links,
            derived,
            named,
        }
    }
}

/// The chains and the patient map, re-derived in leaf order and compared with every map
/// root a checkpoint signs and with the stored map.
struct MapCheck<'a> {
    secret: &'a MapSecret,
    /// The chains; the heads they moved since the map was last brought up to date are
    /// drained into it when the map is compared (so keys are derived once per patient
    /// rather than per entry).
    chains: ChainFold,
    map: DerivedMap,
    /// Map roots signed by checkpoints, by tree size, not yet compared.
    signed: std::collections::BTreeMap<u64, Hash>,
    /// The stored map's size and root.
    stored: MapHead,
    /// The stored rows the derived map and chains are compared with, while they are read.
    reading: Option<AbortOnDrop<Result<BesideRows, StoreError>>>,
    /// Those rows, once read (each part is taken by the comparison that uses it).
    beside: BesideRows,
}

/// The rows stored beside the log that verify compares at the end: the patient map's heads
/// and nodes, and the chain heads the appender links the next entries to.
#[derive(Default)]
struct BesideRows {
    map_heads: Vec<(MapKey, PatientHead)>,
    map_nodes: foldhash::HashMap<MapNodeId, Hash>,
    chain_heads: Vec<(String, PatientHead)>,
}

/// Reads the three passes of [`BesideRows`] to the end.
async fn read_beside_rows(
    map_heads: RowPages<(MapKey, PatientHead)>,
    map_nodes: RowPages<(MapNodeId, Hash)>,
    chain_heads: RowPages<(String, PatientHead)>,
) -> Result<BesideRows, StoreError> {
    Ok(BesideRows {
        map_heads: map_heads.try_concat().await?,
        map_nodes: map_nodes.try_concat().await?.into_iter().collect(),
        chain_heads: chain_heads.try_concat().await?,
    })
}

impl MapCheck<'_> {
    fn feed(
        &mut self,
        index: u64,
        hash: Hash,
        patients: &[&str],
        chain: &[LinkRef<'_>],
        derived: &mut DerivedCheck,
    ) {
        let problem = self.chains.feed(index, hash, patients, chain);
        if let Some(problem) = problem {
            derived.differ(format!(
                "entry {index}: {}",
                match problem {
                    LinkProblem::Unlinked => "no chain links, though it names patients",
                    LinkProblem::WrongPatients => "its chain links do not name its patients",
                    LinkProblem::WrongPrevious =>
                        "a chain link does not name the patient's previous entry",
                }
            ));
        }
    }

    fn root(&mut self) -> Hash {
        let (map, secret) = (&mut self.map, self.secret);
        self.chains
            .drain_moved(|p, head| map.set(secret.key(p), head));
        self.map.root()
    }

    /// Compares what was signed or stored at `size` entries (the entries before it folded).
    async fn at(&mut self, size: u64, derived: &mut DerivedCheck) -> Result<(), StoreError> {
        while let Some((&signed_at, &signed)) = self.signed.first_key_value() {
            if signed_at > size {
                break;
            }
            self.signed.remove(&signed_at);
            if self.root() != signed {
                derived.differ(format!(
                    "the patient map signed at size {signed_at} is not the one the log derives"
                ));
            }
        }
        if self.stored.size == size {
            let root = self.root();
            if root != self.stored.root {
                derived.differ(format!(
                    "the stored patient map's root (at size {size}) is not the one the log derives"
                ));
            }
            self.compare_stored(derived).await?;
        }
        Ok(())
    }

    /// The rows read beside the pass, once they are read.
    async fn beside_rows(&mut self) -> Result<&mut BesideRows, StoreError> {
        if let Some(mut reading) = self.reading.take() {
            self.beside = (&mut reading.0).await.map_err(StoreError::backend)??;
        }
        Ok(&mut self.beside)
    }

    /// Starts comparing the appender's chain heads with the derived ones on a blocking
    /// thread (rows a concurrent append moved past `size` are left alone); the handle gives
    /// how many differ.
    async fn compare_chain_heads_beside(
        &mut self,
        size: u64,
    ) -> Result<tokio::task::JoinHandle<u64>, StoreError> {
        let stored_rows = std::mem::take(&mut self.beside_rows().await?.chain_heads);
        let derived: Vec<(Box<str>, PatientHead, bool)> = self
            .chains
            .heads()
            .map(|(p, head, linked)| (p.into(), *head, linked))
            .collect();
        Ok(tokio::task::spawn_blocking(move || {
            let mut stored: foldhash::HashMap<&str, PatientHead> = foldhash::HashMap::default();
            let mut moved_on: foldhash::HashSet<&str> = foldhash::HashSet::default();
            for (patient, head) in &stored_rows {
                if head.index < size {
                    stored.insert(patient, *head);
                } else {
                    moved_on.insert(patient);
                }
            }
            let mut wrong = 0u64;
            for (patient, head, linked) in &derived {
                if moved_on.contains(&**patient) {
                    continue;
                }
                match stored.remove(&**patient) {
                    Some(row) if row == *head => {}
                    None if !linked => {}
                    _ => wrong += 1,
                }
            }
            wrong + stored.len() as u64
        }))
    }

    /// Compares the stored heads and nodes with the derived ones.
    async fn compare_stored(&mut self, derived: &mut DerivedCheck) -> Result<(), StoreError> {
        let map_heads = std::mem::take(&mut self.beside_rows().await?.map_heads);
        let stored_heads = map_heads.len();
        for (key, head) in map_heads {
            if self.map.get(&key) != Some(head) {
                derived.differ("a stored patient map head is not the one the log derives".into());
            }
        }
        let want = self.map.len();
        if stored_heads != want {
            derived.differ(format!(
                "the stored patient map holds {stored_heads} heads; the log derives {want}"
            ));
        }
        let stored_nodes = std::mem::take(&mut self.beside_rows().await?.map_nodes);
        let nodes = self.map.nodes();
        let wrong = nodes
            .iter()
            .filter(|(id, h)| stored_nodes.get(id).unwrap_or(&EMPTY) != *h)
            .count()
            + stored_nodes
                .iter()
                .filter(|(id, h)| !nodes.contains_key(id) && **h != EMPTY)
                .count();
        if wrong > 0 {
            derived.differ(format!(
                "{wrong} stored patient map node(s) differ from the ones the log derives"
            ));
        }
        Ok(())
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the pass over `audit_patient` found.
struct StoredPatientRows {
    /// The rows of leaves below the head.
    digest: SetDigest,
    /// How many rows name leaves at or past the head (checked one by one afterwards).
    past_head: u64,
}

/// Digests the `audit_patient` rows of leaves below `head_size` and counts the rest.
async fn digest_patient_rows(
    mut pages: PatientRowPages,
    mut digest: SetDigest,
    head_size: u64,
) -> Result<StoredPatientRows, StoreError> {
    let mut past_head = 0;
    while let Some(page) = pages.next().await {
        for (index, patient) in page?.iter() {
            if index < head_size {
                digest.add(index, patient.as_bytes());
            } else {
                past_head += 1;
            }
        }
    }
    Ok(StoredPatientRows { digest, past_head })
}

/// The slow pass, run only when the digests differ: reads the patient rows in leaf order,
/// page by page, and names each entry whose rows differ.
async fn name_patient_row_differences(
    store: &dyn AuditLogStore,
    head_size: u64,
    derived: &mut DerivedCheck,
) -> Result<(), StoreError> {
    let mut next = 0;
    while next < head_size {
        let page = store.log_entries(next, VERIFY_PAGE).await?;
        let Some(last) = page.last() else { break };
        let after = last.index + 1;
        let beside = store.derived_rows(next, after.min(head_size)).await?;
        derived.compare_patients(&page, head_size, beside);
        next = after;
    }
    Ok(())
}

/// Differences between the hashed entries and what is stored beside them.
#[derive(Debug, Default)]
struct DerivedCheck {
    count: u64,
    differences: Vec<String>,
}

/// Differences listed by name at most; the rest are counted.
const DIFFERENCES_LISTED: usize = 20;

impl DerivedCheck {
    /// Adds the differences another page found, after this one's.
    fn merge(&mut self, other: DerivedCheck) {
        self.count += other.count;
        let room = DIFFERENCES_LISTED.saturating_sub(self.differences.len());
        self.differences
            .extend(other.differences.into_iter().take(room));
    }

    fn differ(&mut self, what: String) {
        self.count += 1;
        if self.differences.len() < DIFFERENCES_LISTED {
            self.differences.push(what);
        }
    }

    /// Checks the columns stored beside a leaf against its entry, adds the patient rows
    /// the entry names to `named`, and adds its patients and chain links to `links`.
    fn columns(&mut self, leaf: &ScannedLeaf<'_>, named: &mut SetDigest, links: &mut PageLinks) {
        let Ok(entry) = StoredBeside::from_leaf(leaf.entry) else {
            // An entry that does not parse is caught by its hash, or was never ours.
            self.differ(format!("entry {} does not parse", leaf.index));
            links.push(&[], &[]);
            return;
        };
        if leaf.time_micros != entry.time_micros {
            self.differ(format!(
                "entry {}: the time column differs from the entry",
                leaf.index
            ));
        }
        if leaf.actor != entry.actor.as_bytes() {
            self.differ(format!(
                "entry {}: the actor column differs from the entry",
                leaf.index
            ));
        }
        let mut patients: Vec<&str> = entry.patients.iter().map(|p| &**p).collect();
        if patients.len() > 1 {
            patients.sort_unstable();
            patients.dedup();
        }
        for p in &patients {
            named.add(leaf.index, p.as_bytes());
        }
        links.push(&patients, &entry.chain);
    }

    /// Compares the patient rows stored beside each entry of `page` with those it names.
    fn compare_patients(
        &mut self,
        page: &[medmesh_store::LoggedEntry],
        end: u64,
        beside: Vec<DerivedRow>,
    ) {
        let mut stored: std::collections::HashMap<u64, DerivedRow> =
            beside.into_iter().map(|r| (r.index, r)).collect();
        for row in page.iter().take_while(|r| r.index < end) {
            let Ok(entry) = StoredBeside::from_leaf(&row.entry) else {
                continue;
            };
            let found = stored.remove(&row.index).unwrap_or_default();
            let mut expected: Vec<String> = entry.patients.iter().map(|p| p.to_string()).collect();
            expected.sort();
            expected.dedup();
            let missing = expected
                .iter()
                .filter(|p| !found.patients.contains(p))
                .count();
            let extra = found
                .patients
                .iter()
                .filter(|p| !expected.contains(p))
                .count();
            if missing > 0 {
                self.differ(format!(
                    "entry {}: {missing} patient row(s) missing (hidden from a patient's log)",
                    row.index
                ));
            }
            if extra > 0 {
                self.differ(format!(
                    "entry {}: {extra} patient row(s) the entry does not name",
                    row.index
                ));
            }
        }
    }
}
