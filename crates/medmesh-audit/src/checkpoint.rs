//! Signed tree heads, as C2SP checkpoints (the signed-note format of Go's checksum database,
//! Sigstore and the transparency-log witness network), so an independent witness can
//! cosign them without knowing medmesh.
//!
//! ```text
//! medmesh.example.org/audit          <- origin: names the log
//! 1234                               <- tree size
//! 5O4RFqzv1Z2z...=                   <- base64 RFC 9162 root hash
//! timestamp 1764028800000000         <- extension line: signing time, microseconds
//! patient-map 3q2+7w...=             <- extension line: root of the patient map at this size
//!
//! — medmesh.example.org/audit AbCd...  <- key name, base64(key hash(4) || Ed25519 signature(64))
//! ```
//!
//! The signature covers the text above the blank line. The key hash is the first four bytes
//! of `SHA-256(name || "\n" || 0x01 || public key)`, as the signed-note spec defines for Ed25519.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The em dash that starts a signature line.
const SIG_PREFIX: &str = "\u{2014} ";
/// The extension line that carries the patient map's root.
const MAP_LINE: &str = "patient-map ";

/// A tree head: what a checkpoint commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeHead {
    /// The log's name.
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// RFC 9162 root hash.
    pub root: Hash,
    /// When it was signed, microseconds since the epoch.
    pub timestamp_micros: i64,
    /// The root of the patient map ([`crate::map`]) at this size. Checkpoints signed before
    /// the map existed have none.
    pub patient_map: Option<Hash>,
}

/// A failure to read or check a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Not a checkpoint.
    #[error("malformed checkpoint")]
    Malformed,
    /// No signature by the expected key, or a signature that does not verify.
    #[error("checkpoint signature does not verify")]
    BadSignature,
}

impl TreeHead {
    /// The signed body text.
    pub fn body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\ntimestamp {}\n",
            self.origin,
            self.size,
            B64.encode(self.root),
            self.timestamp_micros
        );
        if let Some(map) = &self.patient_map {
            body.push_str(MAP_LINE);
            body.push_str(&B64.encode(map));
            body.push('\n');
        }
        body
    }

    /// Parses a body (the text above the blank line).
    fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        let mut lines = body
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed)?
            .split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(CheckpointError::Malformed)?;
        let size = lines
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or(CheckpointError::Malformed)?;
        let root: Hash = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| r.try_into().ok())
            .ok_or(CheckpointError::Malformed)?;
        let timestamp_micros = lines
            .next()
            .and_then(|l| l.strip_prefix("timestamp "))
            .and_then(|t| t.parse().ok())
            .ok_or(CheckpointError::Malformed)?;
        // Other extension lines are a cosigner's business; ours is read, once.
        let mut patient_map = None;
        for line in lines {
            if let Some(map) = line.strip_prefix(MAP_LINE) {
                let map: Hash = B64
                    .decode(map)
                    .ok()
                    .and_then(|m| m.try_into().ok())
                    .ok_or(CheckpointError::Malformed)?;
                if patient_map.replace(map).is_some() {
                    return Err(CheckpointError::Malformed);
                }
            }
        }
        Ok(Self {
            origin: origin.to_string(),
            size,
            root,
            timestamp_micros,
            patient_map,
        })
    }
}

/// The log's Ed25519 key, named as signed notes name keys.
#[derive(Clone)]
pub struct LogSigner {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSigner")
            .field("name", &self.name)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// The 4-byte key hash signed notes use to pick a key.
fn key_hash(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n\x01");
    h.update(public.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

impl LogSigner {
    /// A signer from a 32-byte Ed25519 secret.
    pub fn new(name: &str, secret: [u8; 32]) -> Self {
        Self {
            name: name.to_string(),
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// The secret, for sealing it at rest again (`keys reencrypt`). Never log it.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The matching verifier.
    pub fn verifier(&self) -> LogVerifierKey {
        LogVerifierKey {
            name: self.name.clone(),
            key: self.key.verifying_key(),
        }
    }

    /// Signs a tree head; returns the checkpoint text.
    pub fn sign(&self, head: &TreeHead) -> String {
        let body = head.body();
        let sig = self.key.sign(body.as_bytes());
        let mut blob = key_hash(&self.name, &self.key.verifying_key()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("{body}\n{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob))
    }
}

/// A public key that checks checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogVerifierKey {
    name: String,
    key: VerifyingKey,
}

impl LogVerifierKey {
    /// From a name and a 32-byte public key.
    ///
    /// # Errors
    /// [`CheckpointError::Malformed`] for an invalid key.
    pub fn new(name: &str, public: &[u8]) -> Result<Self, CheckpointError> {
        let bytes: [u8; 32] = public.try_into().map_err(|_| CheckpointError::Malformed)?;
        Ok(Self {
            name: name.to_string(),
            key: VerifyingKey::from_bytes(&bytes).map_err(|_| CheckpointError::Malformed)?,
        })
    }

    /// Parses the signed-note verifier-key text form, checking its key hash.
    ///
    /// # Errors
    /// [`CheckpointError::Malformed`].
    pub fn from_note_key(text: &str) -> Result<Self, CheckpointError> {
        // Names cannot hold '+', base64 can: split from the left.
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(_), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CheckpointError::Malformed);
        };
        let raw = B64.decode(key).map_err(|_| CheckpointError::Malformed)?;
        let Some((1, public)) = raw.split_first() else {
            return Err(CheckpointError::Malformed);
        };
        let parsed = Self::new(name, public)?;
        if parsed.to_note_key() == text {
            Ok(parsed)
        } else {
            Err(CheckpointError::Malformed)
        }
    }

    /// The key in the signed-note verifier-key text form: `name+hash+base64(0x01 || key)`.
    pub fn to_note_key(&self) -> String {
        let mut k = vec![1u8];
        k.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex_lower(&key_hash(&self.name, &self.key)),
            B64.encode(k)
        )
    }

    /// The key's name (the log's origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw public key.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Checks a checkpoint's signature by this key and returns its tree head.
    ///
    /// # Errors
    /// [`CheckpointError`].
    pub fn open(&self, checkpoint: &str) -> Result<TreeHead, CheckpointError> {
        let (body, sigs) = checkpoint
            .split_once("\n\n")
            .ok_or(CheckpointError::Malformed)?;
        let body = format!("{body}\n");
        let head = TreeHead::parse_body(&body)?;
        let want = key_hash(&self.name, &self.key);
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix(SIG_PREFIX) else {
                return Err(CheckpointError::Malformed);
            };
            let Some((name, blob)) = rest.rsplit_once(' ') else {
                return Err(CheckpointError::Malformed);
            };
            let blob = B64.decode(blob).map_err(|_| CheckpointError::Malformed)?;
            if name != self.name || blob.len() != 68 || blob[..4] != want {
                continue; // another key's signature (a witness cosignature)
            }
            let sig = Signature::from_slice(&blob[4..]).map_err(|_| CheckpointError::Malformed)?;
            return self
                .key
                .verify(body.as_bytes(), &sig)
                .map(|()| head)
                .map_err(|_| CheckpointError::BadSignature);
        }
        Err(CheckpointError::BadSignature)
    }
}

/// A witness's key: it cosigns checkpoints in the C2SP `tlog-cosignature/v1` Ed25519 form,
/// a signed-note line whose signature covers `cosignature/v1`, the signing time and the
/// checkpoint's body, so any C2SP client that trusts the witness can check it.
#[derive(Clone)]
pub struct Cosigner {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cosigner")
            .field("name", &self.name)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// The key-ID algorithm byte of Ed25519 cosignatures (`tlog-cosignature`).
const COSIGNATURE_ALG: u8 = 0x04;

fn cosigner_key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', COSIGNATURE_ALG]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A cosigner's verifier key in the signed-note text form: `name+hash+base64(0x04 || key)`.
pub(crate) fn cosigner_note_key(name: &str, public: &[u8; 32]) -> String {
    let mut k = vec![COSIGNATURE_ALG];
    k.extend_from_slice(public);
    format!(
        "{name}+{}+{}",
        hex_lower(&cosigner_key_id(name, public)),
        B64.encode(k)
    )
}

fn cosigned_message(timestamp_secs: u64, body: &str) -> String {
    format!("cosignature/v1\ntime {timestamp_secs}\n{body}")
}

impl Cosigner {
    /// A cosigner from a name (a schema-less URL that names the witness) and a 32-byte
    /// Ed25519 secret.
    pub fn new(name: &str, secret: [u8; 32]) -> Self {
        Self {
            name: name.to_string(),
            key: SigningKey::from_bytes(&secret),
        }
    }

    /// The verifier key in the signed-note text form, algorithm 0x04:
    /// `name+hash+base64(0x04 || key)`.
    pub fn verifier_key(&self) -> String {
        cosigner_note_key(&self.name, self.key.verifying_key().as_bytes())
    }

    /// The cosignature line for `head` at `timestamp_secs` (POSIX seconds), to add below the
    /// checkpoint's own signature lines.
    pub fn cosign(&self, head: &TreeHead, timestamp_secs: u64) -> String {
        let sig = self
            .key
            .sign(cosigned_message(timestamp_secs, &head.body()).as_bytes());
        let mut blob = cosigner_key_id(&self.name, self.key.verifying_key().as_bytes()).to_vec();
        blob.extend_from_slice(&timestamp_secs.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob))
    }
}

/// Checks the cosignature of the witness `name` with Ed25519 key `public` on a
/// checkpoint; returns the time it was made (POSIX seconds).
///
/// # Errors
/// [`CheckpointError::BadSignature`] when there is no such cosignature or it does not
/// verify.
pub fn verify_cosignature(
    checkpoint: &str,
    name: &str,
    public: &[u8; 32],
) -> Result<u64, CheckpointError> {
    let public = VerifyingKey::from_bytes(public).map_err(|_| CheckpointError::Malformed)?;
    let (body, sigs) = checkpoint
        .split_once("\n\n")
        .ok_or(CheckpointError::Malformed)?;
    let body = format!("{body}\n");
    let want = cosigner_key_id(name, public.as_bytes());
    for line in sigs.lines() {
        let Some((line_name, blob)) = line
            .strip_prefix(SIG_PREFIX)
            .and_then(|rest| rest.rsplit_once(' '))
        else {
            continue;
        };
        let Ok(blob) = B64.decode(blob) else { continue };
        if line_name != name || blob.len() != 76 || blob[..4] != want {
            continue;
        }
        let mut time = [0u8; 8];
        time.copy_from_slice(&blob[4..12]);
        let time = u64::from_be_bytes(time);
        let sig = Signature::from_slice(&blob[12..]).map_err(|_| CheckpointError::Malformed)?;
        return public
            .verify(cosigned_message(time, &body).as_bytes(), &sig)
            .map(|()| time)
            .map_err(|_| CheckpointError::BadSignature);
    }
    Err(CheckpointError::BadSignature)
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> TreeHead {
        TreeHead {
            origin: "node.example/audit".into(),
            size: 42,
            root: [9; 32],
            timestamp_micros: 1_700_000_000_000_000,
            patient_map: None,
        }
    }

    #[test]
    fn a_signed_checkpoint_opens_with_its_key_only() {
        let signer = LogSigner::new("node.example/audit", [1; 32]);
        let cp = signer.sign(&head());
        assert!(cp.starts_with("node.example/audit\n42\n"));
        assert_eq!(signer.verifier().open(&cp), Ok(head()));
        let other = LogSigner::new("node.example/audit", [2; 32]);
        assert_eq!(
            other.verifier().open(&cp),
            Err(CheckpointError::BadSignature)
        );
        let forged = cp.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(
            signer.verifier().open(&forged),
            Err(CheckpointError::BadSignature)
        );
        let note_key = signer.verifier().to_note_key();
        assert!(note_key.starts_with("node.example/audit+"));
        assert_eq!(
            LogVerifierKey::from_note_key(&note_key),
            Ok(signer.verifier())
        );
        assert!(LogVerifierKey::from_note_key(&note_key.replacen("+", "+0", 1)).is_err());
    }

    #[test]
    fn the_patient_map_root_is_signed_with_the_head() {
        let signer = LogSigner::new("node.example/audit", [1; 32]);
        let with_map = TreeHead {
            patient_map: Some([4; 32]),
            ..head()
        };
        let cp = signer.sign(&with_map);
        assert!(cp.contains("\ntimestamp 1700000000000000\npatient-map BAQE"));
        assert_eq!(signer.verifier().open(&cp), Ok(with_map));
        let swapped = cp.replacen("patient-map BAQE", "patient-map BQUF", 1);
        assert_eq!(
            signer.verifier().open(&swapped),
            Err(CheckpointError::BadSignature)
        );
    }

    #[test]
    fn a_c2sp_cosignature_verifies_and_the_log_key_still_opens_the_checkpoint() {
        let signer = LogSigner::new("node.example/audit", [1; 32]);
        let witness = Cosigner::new("witness.example/w1", [3; 32]);
        let cp = signer.sign(&head());
        let both = format!("{cp}{}", witness.cosign(&head(), 1_700_000_000));
        assert_eq!(signer.verifier().open(&both), Ok(head()));
        let public = SigningKey::from_bytes(&[3; 32]).verifying_key().to_bytes();
        assert_eq!(
            verify_cosignature(&both, "witness.example/w1", &public),
            Ok(1_700_000_000)
        );
        assert_eq!(
            verify_cosignature(&cp, "witness.example/w1", &public),
            Err(CheckpointError::BadSignature),
            "no cosignature"
        );
        let other = both.replacen("\n42\n", "\n43\n", 1);
        assert_eq!(
            verify_cosignature(&other, "witness.example/w1", &public),
            Err(CheckpointError::BadSignature)
        );
        assert!(witness.verifier_key().starts_with("witness.example/w1+"));
        // The key ID uses algorithm 0x04, not the log's 0x01 (tlog-cosignature).
        let raw = B64
            .decode(witness.verifier_key().splitn(3, '+').nth(2).unwrap())
            .unwrap();
        assert_eq!(raw[0], 0x04);
    }

    #[test]
    fn note_keys_with_plus_signs_in_their_base64_parse() {
        for seed in 0..64u8 {
            let k = LogSigner::new("n/audit", [seed; 32]).verifier();
            assert_eq!(LogVerifierKey::from_note_key(&k.to_note_key()), Ok(k));
        }
    }

    #[test]
    fn a_witness_cosignature_is_skipped_not_rejected() {
        let signer = LogSigner::new("node.example/audit", [1; 32]);
        let witness = LogSigner::new("witness.example", [3; 32]);
        let cp = signer.sign(&head());
        let cosig = witness.sign(&head());
        let sig_line = cosig
            .rsplit_once("\n\n")
            .map(|(_, s)| s)
            .unwrap_or_default();
        let both = format!("{cp}{sig_line}");
        assert_eq!(signer.verifier().open(&both), Ok(head()));
        assert_eq!(witness.verifier().open(&both), Ok(head()));
    }
}
