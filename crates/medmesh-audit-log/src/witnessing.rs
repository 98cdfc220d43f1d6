//! Witnesses of the log: the node's witness policy (whom it lists, and how many of them a
//! client should ask for), pushing new checkpoints to witnesses with the C2SP
//! `tlog-witness` protocol, taking back cosignatures a pulling witness posts, and serving
//! them with a consistency proof to the checkpoint a client is shown.
//!
//! The node only carries cosignatures: a client checks each against the witness keys it
//! pinned, so a node that drops, forges or withholds them gains nothing but a failed check.

use medmesh_audit::checkpoint::TreeHead;
use medmesh_audit::merkle::{self, Hash};
use medmesh_audit::witness::{AddCheckpoint, WitnessKey, WitnessReply, WitnessTransport};
use medmesh_store::StoredCosignature;

use crate::{AuditLogError, AuditLogService};

/// A witness the node lists: its key, and where to push checkpoints (`None`: it pulls them,
/// with `medmesh audit witness`, and posts its cosignature back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedWitness {
    /// The witness's verifier key.
    pub key: WitnessKey,
    /// Its `add-checkpoint` submission prefix.
    pub url: Option<String>,
}

/// The witnesses the node lists and how many of them a client should require.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WitnessPolicy {
    /// The listed witnesses.
    pub witnesses: Vec<ListedWitness>,
    /// How many distinct listed witnesses must have cosigned (0: none required).
    pub quorum: usize,
}

/// A cosigned checkpoint served to a client, with the consistency proof between its tree
/// and the one the client is shown (from the smaller to the larger; empty at equal size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedCosignature {
    /// The checkpoint with the node's signature and the witness's line.
    pub checkpoint: String,
    /// The consistency proof.
    pub proof: Vec<Hash>,
}

/// How one push went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Cosigned at this size.
    Cosigned(u64),
    /// Already cosigned at the newest size.
    UpToDate,
    /// Not cosigned: why (for the operator's log).
    Failed(String),
}

/// What one `add-checkpoint` came to.
enum Push {
    /// Cosigned and kept at this size.
    Kept(u64),
    /// The witness cosigned this size last (409).
    Conflict(u64),
    /// Anything else.
    Failed(String),
}

impl AuditLogService {
    /// Sets the witness policy.
    #[must_use]
    pub fn with_witnesses(mut self, policy: WitnessPolicy) -> Self {
        self.witnesses = policy;
        self
    }

    /// The witness policy.
    pub fn witness_policy(&self) -> &WitnessPolicy {
        &self.witnesses
    }

    fn listed(&self, name: &str) -> Option<&ListedWitness> {
        self.witnesses
            .witnesses
            .iter()
            .find(|w| w.key.name() == name)
    }

    /// Keeps the cosignatures on `note` of the witnesses the node lists, when `note` is one
    /// of this log's own checkpoints. Returns the names of the witnesses kept.
    ///
    /// # Errors
    /// [`AuditLogError::NotCosigned`] when `note` is not a checkpoint this log signed, or
    /// carries no valid cosignature of a listed witness.
    pub async fn accept_cosigned(&self, note: &str) -> Result<Vec<String>, AuditLogError> {
        let head = self
            .signer
            .verifier()
            .open(note)
            .map_err(|_| AuditLogError::NotCosigned)?;
        let ours = self
            .store
            .checkpoint(Some(head.size))
            .await?
            .ok_or(AuditLogError::NotCosigned)?;
        let body = |t: &str| t.split_once("\n\n").map(|(b, _)| b.to_string());
        if body(&ours.text) != body(note) {
            return Err(AuditLogError::NotCosigned);
        }
        let mut kept = Vec::new();
        for w in &self.witnesses.witnesses {
            if self
                .keep_cosignature(w, head.size, &ours.text, note)
                .await?
            {
                kept.push(w.key.name().to_string());
            }
        }
        if kept.is_empty() {
            return Err(AuditLogError::NotCosigned);
        }
        Ok(kept)
    }

    /// Keeps `witness`'s cosignature on `cosigned` (the checkpoint `ours`, of `size` entries,
    /// with signature lines added), as `ours` with that one line. `false` when it has none
    /// that verifies.
    async fn keep_cosignature(
        &self,
        witness: &ListedWitness,
        size: u64,
        ours: &str,
        cosigned: &str,
    ) -> Result<bool, AuditLogError> {
        let Some(line) = witness.key.cosignature_line(cosigned) else {
            return Ok(false);
        };
        self.store
            .put_cosignature(&StoredCosignature {
                witness: witness.key.name().to_string(),
                size,
                checkpoint: format!("{ours}{line}"),
            })
            .await?;
        Ok(true)
    }

    /// Pushes the newest checkpoint to every listed witness with a URL, and keeps what they
    /// cosign. A witness that cosigned another size answers with it (409); the push starts
    /// again from there, once.
    ///
    /// # Errors
    /// When storage fails; a witness's failure is in its [`PushOutcome`].
    pub async fn push_to_witnesses(
        &self,
        transport: &dyn WitnessTransport,
    ) -> Result<Vec<(String, PushOutcome)>, AuditLogError> {
        let Some(newest) = self.store.checkpoint(None).await? else {
            return Ok(Vec::new());
        };
        let head = self
            .signer
            .verifier()
            .open(&newest.text)
            .map_err(|_| AuditLogError::Damaged)?;
        let kept = self.store.cosignatures().await?;
        let mut outcomes = Vec::new();
        for w in &self.witnesses.witnesses {
            let Some(url) = &w.url else { continue };
            let mut old = kept
                .iter()
                .find(|c| c.witness == w.key.name())
                .map_or(0, |c| c.size);
            let mut outcome = PushOutcome::UpToDate;
            for _ in 0..2 {
                if old == head.size {
                    break;
                }
                outcome = match self
                    .push_once(transport, w, url, old, head.size, &newest.text)
                    .await?
                {
                    Push::Kept(size) => PushOutcome::Cosigned(size),
                    Push::Failed(why) => PushOutcome::Failed(why),
                    Push::Conflict(theirs) if theirs < head.size && theirs != old => {
                        // Once more from the witness's size; if that try conflicts too, this
                        // is what is reported.
                        outcome = PushOutcome::Failed(format!("the witness holds size {theirs}"));
                        old = theirs;
                        continue;
                    }
                    Push::Conflict(theirs) => {
                        PushOutcome::Failed(format!("the witness holds size {theirs}"))
                    }
                };
                break;
            }
            outcomes.push((w.key.name().to_string(), outcome));
        }
        Ok(outcomes)
    }

    /// One `add-checkpoint` of `checkpoint` (of `size` entries).
    async fn push_once(
        &self,
        transport: &dyn WitnessTransport,
        witness: &ListedWitness,
        url: &str,
        old: u64,
        size: u64,
        checkpoint: &str,
    ) -> Result<Push, AuditLogError> {
        let proof = if old == 0 {
            Vec::new()
        } else {
            match self.consistency_proof(old, size).await {
                Ok(p) => p,
                Err(AuditLogError::OutOfRange) => {
                    return Ok(Push::Failed(format!("the witness holds size {old}")));
                }
                Err(e) => return Err(e),
            }
        };
        let body = AddCheckpoint {
            old_size: old,
            proof,
            checkpoint: checkpoint.to_string(),
        }
        .encode();
        match transport.add_checkpoint(url, body).await {
            Ok(WitnessReply::Cosigned(lines)) => {
                let note = format!("{checkpoint}{lines}");
                if self
                    .keep_cosignature(witness, size, checkpoint, &note)
                    .await?
                {
                    Ok(Push::Kept(size))
                } else {
                    Ok(Push::Failed("the reply holds no valid cosignature".into()))
                }
            }
            Ok(WitnessReply::Conflict(size)) => Ok(Push::Conflict(size)),
            Ok(WitnessReply::Refused(status)) => {
                Ok(Push::Failed(format!("the witness answered {status}")))
            }
            Err(why) => Ok(Push::Failed(why)),
        }
    }

    /// The cosignatures of listed witnesses, each with the consistency proof between its
    /// tree and `head`: what a client checks its quorum with.
    ///
    /// # Errors
    /// When storage fails or the tree lacks a node a proof needs.
    pub async fn cosignatures_for(
        &self,
        head: &TreeHead,
    ) -> Result<Vec<ServedCosignature>, AuditLogError> {
        let log_size = self.store.log_head().await?.size;
        let mut out = Vec::new();
        for c in self.store.cosignatures().await? {
            if self.listed(&c.witness).is_none() || c.size == 0 || c.size > log_size {
                continue;
            }
            let (small, large) = (c.size.min(head.size), c.size.max(head.size));
            let proof = if small == large || small == 0 {
                Vec::new()
            } else {
                self.with_nodes(|n| merkle::consistency_proof(small, large, n))
                    .await?
            };
            out.push(ServedCosignature {
                checkpoint: c.checkpoint,
                proof,
            });
        }
        Ok(out)
    }
}
