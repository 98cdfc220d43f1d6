//! The patient-side check of an access log: given the pages of `GET
//! /api/patients/{id}/audit` and the node's published log key, it proves that the entries
//! shown are every entry of the patient's log at a signed checkpoint, not only that each is
//! in the log. With what the client remembered from its last visit, it also proves the log
//! was not rewritten since.
//!
//! No I/O: the CLI (`medmesh audit verify-patient`) and the tests feed it what they fetched.
//! The browser runs the same checks in `audit-verify.js`; test vectors generated here
//! (`tests/vectors.rs`) are checked by both, so the two cannot drift.
//!
//! What is checked, in order:
//! 1. the checkpoint's signature by the log key, and that it signs a patient-map root;
//! 2. the patient's map proof against that root: it gives the head (entry count, newest
//!    index, newest hash), or proves the patient has no entry;
//! 3. every later page is against the same checkpoint;
//! 4. each entry's leaf bytes and its inclusion proof against the checkpoint;
//! 5. the chain, from the head back to the first entry: each entry is the one its
//!    successor (or the head) names, in sequence, and none is left over;
//! 6. against what was remembered: the same map key, a tree that only grew (consistency
//!    proof), and the remembered newest entry still in the chain at its place;
//! 7. the witnesses: each cosigned checkpoint served with the first page that carries a
//!    valid cosignature of a pinned witness key must be a checkpoint of the same log,
//!    consistent with the one shown (else the log showed someone another history), and at
//!    least the pinned quorum of distinct witnesses must have cosigned. The witness policy
//!    (keys and quorum) is pinned on the first visit and kept with what is remembered.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use medmesh_audit::chain::{ChainError, PatientHead, walk};
use medmesh_audit::checkpoint::{LogVerifierKey, TreeHead};
use medmesh_audit::map::{MapError, MapKey, MapProof};
use medmesh_audit::merkle::{Hash, verify_consistency, verify_inclusion};
use medmesh_audit::witness::WitnessKey;
use serde::{Deserialize, Serialize};

/// One page of `GET /api/patients/{id}/audit`, as served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    /// The checkpoint text every proof of the page is against.
    pub checkpoint: String,
    /// The patient's map proof (first page only).
    #[serde(default)]
    pub map: Option<MapProofJson>,
    /// The entries, newest first.
    pub entries: Vec<PageEntry>,
    /// Where the next page starts, if any.
    #[serde(default)]
    pub next_before: Option<u64>,
    /// The node's witness policy and the cosignatures it holds (first page only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witnesses: Option<Witnesses>,
}

/// The witnesses as the first page serves them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Witnesses {
    /// The node's witness policy.
    pub policy: WitnessPolicy,
    /// Cosigned checkpoints, each with a consistency proof to the page's checkpoint.
    pub cosigned: Vec<Cosigned>,
}

/// Whom to ask for: witness verifier keys (`name+hash+base64(0x04 || key)`) and how many of
/// them must have cosigned.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WitnessPolicy {
    /// The witness keys.
    pub keys: Vec<String>,
    /// How many distinct witnesses must have cosigned.
    pub quorum: usize,
}

/// A checkpoint with a witness's cosignature, and the consistency proof between its tree and
/// the page's (from the smaller to the larger).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cosigned {
    /// The checkpoint text with the cosignature line.
    pub checkpoint: String,
    /// The proof, base64 hashes.
    pub proof: Vec<String>,
}

/// A witness that cosigned a checkpoint consistent with the one shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessedBy {
    /// The witness's name.
    pub name: String,
    /// The cosigned tree's size.
    pub size: u64,
    /// When it cosigned (POSIX seconds).
    pub time: u64,
}

/// One entry of a page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageEntry {
    /// Leaf index.
    pub index: u64,
    /// The hashed bytes, base64.
    pub leaf: String,
    /// The inclusion proof, base64 hashes, leaf side first.
    pub proof: Vec<String>,
}

/// A map proof as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapProofJson {
    /// The patient's map key, base64.
    pub key: String,
    /// The head, `None` when the patient has no entry.
    pub head: Option<PatientHead>,
    /// The bucket's other members: `[key, value hash]`, base64.
    pub others: Vec<[String; 2]>,
    /// The siblings, bucket level first, base64.
    pub siblings: Vec<String>,
}

/// What a client keeps between visits: the last checkpoint it verified, the patient's map
/// key, and the head it saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remembered {
    /// The checkpoint text.
    pub checkpoint: String,
    /// The patient's map key, base64.
    pub map_key: String,
    /// The patient's head at that checkpoint.
    pub head: Option<PatientHead>,
    /// The witness policy pinned on the first visit.
    #[serde(default)]
    pub witnesses: WitnessPolicy,
}

/// A log proven complete.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The checkpoint's tree head.
    pub tree: TreeHead,
    /// The patient's head (`None`: no entry).
    pub head: Option<PatientHead>,
    /// The entries checked, newest first: `(leaf index, bytes)`.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// What to remember for the next visit.
    pub remember: Remembered,
    /// The pinned witnesses that cosigned, newest tree first.
    pub witnessed: Vec<WitnessedBy>,
    /// The node now serves another witness policy than the pinned one (which still holds).
    pub policy_changed: bool,
}

/// Why a log is not proven complete. [`Problem::code`] is the stable name the browser's
/// verifier uses for the same finding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The checkpoint does not open with the log key.
    #[error("the checkpoint is not signed by the log's key")]
    Checkpoint,
    /// The checkpoint signs no patient map (or the page has no map proof).
    #[error("the checkpoint does not commit to the patients' heads")]
    NoMap,
    /// The map proof does not verify.
    #[error("the map proof does not verify: {0}")]
    Map(MapError),
    /// A later page is against another checkpoint.
    #[error("page {0} is against another checkpoint")]
    PageCheckpoint(usize),
    /// An entry's bytes or proof are not readable.
    #[error("entry {0} is malformed")]
    Malformed(u64),
    /// An entry is not in the log at its index.
    #[error("entry {0} is not in the signed log")]
    Inclusion(u64),
    /// The chain does not walk back from the head to the first entry.
    #[error("{0}")]
    Chain(ChainError),
    /// The log is older than the remembered one.
    #[error("the log is older than the one seen before ({remembered} entries, now {now})")]
    Rollback {
        /// The remembered size.
        remembered: u64,
        /// The size now.
        now: u64,
    },
    /// The log does not extend the one seen before.
    #[error("the log was rewritten since it was last seen (the consistency proof fails)")]
    Consistency,
    /// The patient's map key changed.
    #[error("the patient's map key changed")]
    MapKey,
    /// The head seen before is no longer in the chain at its place.
    #[error("the patient's entries seen before were rewritten")]
    HeadRewritten,
    /// A pinned witness key is not a witness key.
    #[error("a pinned witness key is malformed")]
    WitnessKey,
    /// A witness cosigned a tree of this log that the one shown does not extend (or that
    /// does not extend it): the log shows different histories to different audiences.
    #[error("a witness saw another history of this log (split view)")]
    WitnessFork,
    /// Fewer pinned witnesses cosigned than the quorum asks.
    #[error("{have} of the {need} witnesses required have cosigned")]
    WitnessQuorum {
        /// Distinct pinned witnesses with a valid, consistent cosignature.
        have: usize,
        /// The quorum.
        need: usize,
    },
}

impl Problem {
    /// The stable code the browser's verifier reports for the same finding.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Checkpoint => "checkpoint",
            Self::NoMap => "no-map",
            Self::Map(_) => "map",
            Self::PageCheckpoint(_) => "page-checkpoint",
            Self::Malformed(_) => "malformed",
            Self::Inclusion(_) => "inclusion",
            Self::Chain(_) => "chain",
            Self::Rollback { .. } => "rollback",
            Self::Consistency => "consistency",
            Self::MapKey => "map-key",
            Self::HeadRewritten => "head-rewritten",
            Self::WitnessKey => "witness-key",
            Self::WitnessFork => "witness-fork",
            Self::WitnessQuorum { .. } => "witness-quorum",
        }
    }
}

fn hash_of(text: &str) -> Option<Hash> {
    B64.decode(text).ok().and_then(|v| v.try_into().ok())
}

fn map_proof(json: &MapProofJson) -> Result<MapProof, Problem> {
    let bad = || Problem::Map(MapError::Bucket);
    let key = MapKey(hash_of(&json.key).ok_or_else(bad)?);
    let others = json
        .others
        .iter()
        .map(|[k, v]| Some((MapKey(hash_of(k)?), hash_of(v)?)))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)?;
    let siblings = json
        .siblings
        .iter()
        .map(|s| hash_of(s))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)?;
    Ok(MapProof {
        key,
        head: json.head,
        others,
        siblings,
    })
}

/// Verifies a patient's log. `pages` are every page, the first one unpinned (it carries the
/// map proof), the rest pinned to its checkpoint; `remembered` is what the client kept from
/// its last visit, and `consistency` the proof from that checkpoint's size to this one's
/// (`GET /api/audit/consistency?from=OLD&to=NEW`), needed when the sizes differ.
///
/// # Errors
/// The first [`Problem`].
pub fn verify(
    key: &LogVerifierKey,
    patient: &str,
    pages: &[Page],
    remembered: Option<&Remembered>,
    consistency: Option<&[String]>,
) -> Result<Verified, Problem> {
    let first = pages.first().ok_or(Problem::NoMap)?;
    let tree = key
        .open(&first.checkpoint)
        .map_err(|_| Problem::Checkpoint)?;
    let root = tree.patient_map.ok_or(Problem::NoMap)?;
    let proof = map_proof(first.map.as_ref().ok_or(Problem::NoMap)?)?;
    let head = proof.verify(&root).map_err(Problem::Map)?;

    let mut entries = Vec::new();
    for (n, page) in pages.iter().enumerate() {
        if page.checkpoint != first.checkpoint {
            return Err(Problem::PageCheckpoint(n));
        }
        for e in &page.entries {
            let leaf = B64
                .decode(&e.leaf)
                .map_err(|_| Problem::Malformed(e.index))?;
            let path = e
                .proof
                .iter()
                .map(|h| hash_of(h))
                .collect::<Option<Vec<_>>>()
                .ok_or(Problem::Malformed(e.index))?;
            verify_inclusion(&leaf, e.index, tree.size, &tree.root, &path)
                .map_err(|_| Problem::Inclusion(e.index))?;
            entries.push((e.index, leaf));
        }
    }
    let shown: Vec<(u64, &[u8])> = entries.iter().map(|(i, b)| (*i, b.as_slice())).collect();
    walk(patient, head.as_ref(), &shown).map_err(Problem::Chain)?;

    if let Some(old) = remembered {
        check_against(
            key,
            old,
            &tree,
            &proof.key,
            head.as_ref(),
            &shown,
            consistency,
        )?;
    }
    let served = first.witnesses.as_ref();
    let policy = match remembered {
        Some(old) => old.witnesses.clone(),
        None => served.map(|w| w.policy.clone()).unwrap_or_default(),
    };
    let policy_changed = served.map_or(!policy.keys.is_empty(), |w| w.policy != policy);
    let witnessed = check_witnesses(key, &tree, &policy, served.map_or(&[][..], |w| &w.cosigned))?;
    Ok(Verified {
        remember: Remembered {
            checkpoint: first.checkpoint.clone(),
            map_key: B64.encode(proof.key.0),
            head,
            witnesses: policy,
        },
        tree,
        head,
        entries,
        witnessed,
        policy_changed,
    })
}

/// Checks the served cosignatures against the pinned policy: every one by a pinned witness
/// must be on a checkpoint of this log consistent with `tree`, and the quorum must be met.
fn check_witnesses(
    key: &LogVerifierKey,
    tree: &TreeHead,
    policy: &WitnessPolicy,
    cosigned: &[Cosigned],
) -> Result<Vec<WitnessedBy>, Problem> {
    let keys = policy
        .keys
        .iter()
        .map(|k| WitnessKey::parse(k).map_err(|_| Problem::WitnessKey))
        .collect::<Result<Vec<_>, _>>()?;
    let mut witnessed: Vec<WitnessedBy> = Vec::new();
    for c in cosigned {
        let by: Vec<(&WitnessKey, u64)> = keys
            .iter()
            .filter_map(|k| k.cosigned_at(&c.checkpoint).map(|t| (k, t)))
            .collect();
        if by.is_empty() {
            continue; // nobody the client trusts: not evidence of anything
        }
        // A pinned witness vouches for this tree: it must be this log's, and one history
        // with the tree shown.
        let theirs = key.open(&c.checkpoint).map_err(|_| Problem::WitnessFork)?;
        let proof = c
            .proof
            .iter()
            .map(|h| hash_of(h))
            .collect::<Option<Vec<_>>>()
            .ok_or(Problem::WitnessFork)?;
        let (small, large) = if theirs.size <= tree.size {
            (&theirs, tree)
        } else {
            (tree, &theirs)
        };
        let consistent = if small.size == large.size {
            small.root == large.root
        } else {
            verify_consistency(&small.root, small.size, &large.root, large.size, &proof).is_ok()
        };
        if !consistent {
            return Err(Problem::WitnessFork);
        }
        for (k, time) in by {
            // Each witness counts once, at the largest tree it cosigned.
            match witnessed.iter_mut().find(|w| w.name == k.name()) {
                Some(w) if w.size < theirs.size => {
                    w.size = theirs.size;
                    w.time = time;
                }
                Some(_) => {}
                None => witnessed.push(WitnessedBy {
                    name: k.name().to_string(),
                    size: theirs.size,
                    time,
                }),
            }
        }
    }
    if witnessed.len() < policy.quorum {
        return Err(Problem::WitnessQuorum {
            have: witnessed.len(),
            need: policy.quorum,
        });
    }
    witnessed.sort_by(|a, b| b.size.cmp(&a.size).then(a.name.cmp(&b.name)));
    Ok(witnessed)
}

/// Checks the log against what the client remembered.
fn check_against(
    key: &LogVerifierKey,
    old: &Remembered,
    tree: &TreeHead,
    map_key: &MapKey,
    head: Option<&PatientHead>,
    shown: &[(u64, &[u8])],
    consistency: Option<&[String]>,
) -> Result<(), Problem> {
    let before = key.open(&old.checkpoint).map_err(|_| Problem::Checkpoint)?;
    if before.size > tree.size {
        return Err(Problem::Rollback {
            remembered: before.size,
            now: tree.size,
        });
    }
    if before.size == tree.size {
        if before.root != tree.root {
            return Err(Problem::Consistency);
        }
    } else if before.size > 0 {
        let proof = consistency
            .ok_or(Problem::Consistency)?
            .iter()
            .map(|h| hash_of(h))
            .collect::<Option<Vec<_>>>()
            .ok_or(Problem::Consistency)?;
        verify_consistency(&before.root, before.size, &tree.root, tree.size, &proof)
            .map_err(|_| Problem::Consistency)?;
    }
    if old.map_key != B64.encode(map_key.0) {
        return Err(Problem::MapKey);
    }
    if let Some(seen) = &old.head {
        // The chain was walked whole: the entry seen newest then must be in it, at its
        // place and with its bytes.
        let count = head.map_or(0, |h| h.count);
        let place = count
            .checked_sub(seen.count)
            .and_then(|back| usize::try_from(back).ok().and_then(|back| shown.get(back)));
        match place {
            Some((index, bytes))
                if *index == seen.index && medmesh_audit::merkle::leaf_hash(bytes) == seen.hash => {
            }
            _ => return Err(Problem::HeadRewritten),
        }
    }
    Ok(())
}
