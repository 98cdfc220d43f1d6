//! Witnesses, with no I/O: the C2SP `tlog-witness` protocol's `add-checkpoint` request and
//! the witness's decision on it, and witness keys in the signed-note verifier-key form.
//!
//! A witness keeps, per log, the newest checkpoint it cosigned. A log sends it a newer one
//! with a consistency proof from that size; the witness cosigns only if the new tree extends
//! the old. A split view (two different trees shown to two audiences) cannot then carry a
//! quorum of cosignatures from witnesses that each saw only one history.
//!
//! ```text
//! old 20852014                         <- the size the witness cosigned last (0: none)
//! PlRNCrwHpqhGrupue0L7gxbj...=         <- consistency proof, one base64 hash per line
//!                                      <- blank line
//! node.example/audit                   <- the checkpoint, with its signatures
//! ...
//! ```

use std::future::Future;
use std::pin::Pin;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::checkpoint::{LogVerifierKey, TreeHead, verify_cosignature};
use crate::merkle::{Hash, verify_consistency};

/// At most this many proof lines (the spec's bound: a proof has at most 63 hashes).
pub const MAX_PROOF_LINES: usize = 63;
/// The largest `add-checkpoint` body a witness reads.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// A witness's public key, in the signed-note verifier-key form with the cosignature
/// algorithm byte: `name+hash+base64(0x04 || Ed25519 key)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessKey {
    name: String,
    public: [u8; 32],
}

/// Why a request or a key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessRefusal {
    /// Not a well-formed request (HTTP 400): unreadable, too long, or an old size past the
    /// checkpoint's.
    #[error("malformed add-checkpoint request")]
    BadRequest,
    /// The witness does not know the checkpoint's origin (HTTP 404).
    #[error("unknown log")]
    UnknownLog,
    /// No signature by a key the witness trusts for that origin (HTTP 403).
    #[error("the checkpoint is not signed by a trusted key of its log")]
    Forbidden,
    /// The old size is not the size the witness cosigned last, which it gives (HTTP 409).
    #[error("the witness's last cosigned size is {0}")]
    Conflict(u64),
    /// The consistency proof does not verify (HTTP 422): the log forked or rewrote itself.
    #[error("the checkpoint does not extend the one the witness cosigned last")]
    Inconsistent,
}

impl WitnessRefusal {
    /// The HTTP status the protocol gives this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::UnknownLog => 404,
            Self::Forbidden => 403,
            Self::Conflict(_) => 409,
            Self::Inconsistent => 422,
        }
    }
}

impl WitnessKey {
    /// Reads a verifier key `name+hash+base64(0x04 || key)`; the hash must match.
    ///
    /// # Errors
    /// [`WitnessRefusal::BadRequest`] when it is not such a key.
    pub fn parse(text: &str) -> Result<Self, WitnessRefusal> {
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(WitnessRefusal::BadRequest);
        };
        let key = B64.decode(key).map_err(|_| WitnessRefusal::BadRequest)?;
        let public: [u8; 32] = match key.split_first() {
            Some((&0x04, rest)) => rest.try_into().map_err(|_| WitnessRefusal::BadRequest)?,
            _ => return Err(WitnessRefusal::BadRequest),
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(WitnessRefusal::BadRequest);
        }
        let key = Self {
            name: name.to_string(),
            public,
        };
        if key.to_note_key() != format!("{name}+{hash}+{}", B64.encode(key.blob())) {
            return Err(WitnessRefusal::BadRequest);
        }
        Ok(key)
    }

    fn blob(&self) -> Vec<u8> {
        let mut k = vec![0x04];
        k.extend_from_slice(&self.public);
        k
    }

    /// The key in its text form.
    pub fn to_note_key(&self) -> String {
        crate::checkpoint::cosigner_note_key(&self.name, &self.public)
    }

    /// The witness's name (the key name on its cosignature lines).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw Ed25519 public key.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.public
    }

    /// The time (POSIX seconds) of this witness's valid cosignature on `checkpoint`, if it
    /// has one.
    pub fn cosigned_at(&self, checkpoint: &str) -> Option<u64> {
        verify_cosignature(checkpoint, &self.name, &self.public).ok()
    }

    /// This witness's valid cosignature line on `checkpoint` (with its newline), if any:
    /// what a log keeps beside its own checkpoint.
    pub fn cosignature_line(&self, checkpoint: &str) -> Option<String> {
        let (body, sigs) = checkpoint.split_once("\n\n")?;
        sigs.lines()
            .filter(|l| l.starts_with(&format!("\u{2014} {} ", self.name)))
            .map(|l| format!("{l}\n"))
            .find(|l| self.cosigned_at(&format!("{body}\n\n{l}")).is_some())
    }
}

/// An `add-checkpoint` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size the log believes the witness cosigned last (0: none).
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The checkpoint, with its signatures.
    pub checkpoint: String,
}

impl AddCheckpoint {
    /// Reads a request body.
    ///
    /// # Errors
    /// [`WitnessRefusal::BadRequest`].
    pub fn parse(body: &str) -> Result<Self, WitnessRefusal> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err(WitnessRefusal::BadRequest);
        }
        let (head, checkpoint) = body.split_once("\n\n").ok_or(WitnessRefusal::BadRequest)?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .filter(|n| n == &"0" || (!n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit())))
            .and_then(|n| n.parse().ok())
            .ok_or(WitnessRefusal::BadRequest)?;
        let proof = lines
            .map(|l| {
                B64.decode(l)
                    .ok()
                    .and_then(|h| <Hash>::try_from(h).ok())
                    .ok_or(WitnessRefusal::BadRequest)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if proof.len() > MAX_PROOF_LINES {
            return Err(WitnessRefusal::BadRequest);
        }
        Ok(Self {
            old_size: old,
            proof,
            checkpoint: checkpoint.to_string(),
        })
    }

    /// The request body.
    pub fn encode(&self) -> String {
        let mut body = format!("old {}\n", self.old_size);
        for h in &self.proof {
            body.push_str(&B64.encode(h));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&self.checkpoint);
        body
    }
}

/// A witness's answer to `add-checkpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WitnessReply {
    /// 200: the cosignature lines.
    Cosigned(String),
    /// 409: the size the witness cosigned last.
    Conflict(u64),
    /// Any other status.
    Refused(u16),
}

/// A future a [`WitnessTransport`] returns.
pub type ReplyFuture<'a> = Pin<Box<dyn Future<Output = Result<WitnessReply, String>> + Send + 'a>>;

/// The port to a witness's `add-checkpoint` endpoint; the adapter (HTTP) is in
/// `medmesh-audit-client`. The error is a description for the operator's log.
pub trait WitnessTransport: Send + Sync {
    /// POSTs `body` to `<url>/add-checkpoint`.
    fn add_checkpoint<'a>(&'a self, url: &'a str, body: String) -> ReplyFuture<'a>;
}

/// The origin named on a checkpoint's first line.
pub fn origin_of(checkpoint: &str) -> Option<&str> {
    checkpoint.split('\n').next().filter(|o| !o.is_empty())
}

/// The witness's decision on `request`, given the keys it trusts for the checkpoint's
/// origin (`None`: an unknown log) and the tree it cosigned last for that origin (`None`:
/// never). On success it returns the tree head to cosign and to keep as the newest: the
/// caller must keep it, atomically with the check, before answering.
///
/// # Errors
/// The [`WitnessRefusal`] to answer with.
pub fn decide(
    request: &AddCheckpoint,
    trusted: Option<&[LogVerifierKey]>,
    latest: Option<(u64, Hash)>,
) -> Result<TreeHead, WitnessRefusal> {
    let trusted = trusted.ok_or(WitnessRefusal::UnknownLog)?;
    let head = trusted
        .iter()
        .find_map(|k| k.open(&request.checkpoint).ok())
        .ok_or(WitnessRefusal::Forbidden)?;
    if request.old_size > head.size {
        return Err(WitnessRefusal::BadRequest);
    }
    let (last_size, last_root) = latest.unwrap_or((0, [0; 32]));
    if request.old_size != last_size {
        return Err(WitnessRefusal::Conflict(last_size));
    }
    if last_size == 0 {
        return if request.proof.is_empty() {
            Ok(head)
        } else {
            Err(WitnessRefusal::BadRequest)
        };
    }
    if last_size == head.size {
        return if request.proof.is_empty() && last_root == head.root {
            Ok(head)
        } else {
            Err(WitnessRefusal::Inconsistent)
        };
    }
    verify_consistency(&last_root, last_size, &head.root, head.size, &request.proof)
        .map(|()| head)
        .map_err(|_| WitnessRefusal::Inconsistent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Cosigner, LogSigner};
    use crate::merkle::{Frontier, consistency_proof, leaf_hash, nodes_completed_by};
    use std::collections::HashMap;

    /// A log of `n` leaves, its nodes, and a signed checkpoint of it.
    fn log(n: u64) -> (Frontier, HashMap<crate::merkle::NodeId, Hash>) {
        let mut f = Frontier::new();
        let mut nodes = HashMap::new();
        for i in 0..n {
            let hashes = f.push(leaf_hash(format!("leaf {i}").as_bytes()));
            nodes.extend(nodes_completed_by(i).into_iter().zip(hashes));
        }
        (f, nodes)
    }

    fn signed(signer: &LogSigner, f: &Frontier) -> (String, TreeHead) {
        let head = TreeHead {
            origin: "node.example/audit".into(),
            size: f.size(),
            root: f.root().unwrap(),
            timestamp_micros: 1,
            patient_map: None,
        };
        (signer.sign(&head), head)
    }

    #[test]
    fn a_request_round_trips_and_bad_ones_are_refused() {
        let r = AddCheckpoint {
            old_size: 3,
            proof: vec![[1; 32], [2; 32]],
            checkpoint: "o\n5\nroot\n\n\u{2014} o sig\n".into(),
        };
        assert_eq!(AddCheckpoint::parse(&r.encode()), Ok(r));
        for bad in [
            "old 03\n\no\n",
            "old -1\n\no\n",
            "new 3\n\no\n",
            "old 3\nnot base64!\n\no\n",
            "old 3\no\n",
        ] {
            assert_eq!(
                AddCheckpoint::parse(bad),
                Err(WitnessRefusal::BadRequest),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_witness_cosigns_only_a_log_that_extends_what_it_saw() {
        let signer = LogSigner::new("node.example/audit", [1; 32]);
        let trusted = [signer.verifier()];
        let (f5, _) = log(5);
        let (f9, nodes) = log(9);
        let (cp5, h5) = signed(&signer, &f5);
        let (cp9, h9) = signed(&signer, &f9);

        let first = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            checkpoint: cp5.clone(),
        };
        assert_eq!(decide(&first, Some(&trusted), None), Ok(h5.clone()));
        assert_eq!(decide(&first, None, None), Err(WitnessRefusal::UnknownLog));
        let stranger = [LogSigner::new("node.example/audit", [2; 32]).verifier()];
        assert_eq!(
            decide(&first, Some(&stranger), None),
            Err(WitnessRefusal::Forbidden)
        );
        // The witness has 5: a request that believes otherwise learns the size.
        assert_eq!(
            decide(&first, Some(&trusted), Some((5, h5.root))),
            Err(WitnessRefusal::Conflict(5))
        );

        let proof = consistency_proof(5, 9, &mut |id| Ok(nodes[&id])).unwrap();
        let next = AddCheckpoint {
            old_size: 5,
            proof: proof.clone(),
            checkpoint: cp9.clone(),
        };
        assert_eq!(decide(&next, Some(&trusted), Some((5, h5.root))), Ok(h9));
        // A fork at 5: the same proof does not tie the witness's root to the new one.
        assert_eq!(
            decide(&next, Some(&trusted), Some((5, [7; 32]))),
            Err(WitnessRefusal::Inconsistent)
        );
        // An old size past the checkpoint's.
        let past = AddCheckpoint {
            old_size: 10,
            proof,
            checkpoint: cp9,
        };
        assert_eq!(
            decide(&past, Some(&trusted), Some((10, [0; 32]))),
            Err(WitnessRefusal::BadRequest)
        );
        // The same tree again is cosigned again; another root at that size is a fork.
        let again = AddCheckpoint {
            old_size: 5,
            proof: vec![],
            checkpoint: cp5,
        };
        assert!(decide(&again, Some(&trusted), Some((5, h5.root))).is_ok());
        assert_eq!(
            decide(&again, Some(&trusted), Some((5, [3; 32]))),
            Err(WitnessRefusal::Inconsistent)
        );
    }

    #[test]
    fn a_witness_key_reads_back_and_finds_its_line() {
        let cosigner = Cosigner::new("witness.example/w1", [5; 32]);
        let key = WitnessKey::parse(&cosigner.verifier_key()).unwrap();
        assert_eq!(key.name(), "witness.example/w1");
        assert_eq!(key.to_note_key(), cosigner.verifier_key());
        let tampered = cosigner.verifier_key().replacen('+', "+00", 1);
        assert_eq!(
            WitnessKey::parse(&tampered),
            Err(WitnessRefusal::BadRequest)
        );

        let signer = LogSigner::new("node.example/audit", [1; 32]);
        let (f, _) = log(3);
        let (cp, head) = signed(&signer, &f);
        let other = Cosigner::new("witness.example/w2", [6; 32]);
        let line = cosigner.cosign(&head, 1_800_000_000);
        let note = format!("{cp}{}{line}", other.cosign(&head, 1));
        assert_eq!(key.cosigned_at(&note), Some(1_800_000_000));
        assert_eq!(key.cosignature_line(&note), Some(line));
        assert_eq!(key.cosigned_at(&cp), None);
    }
}
