//! Envelopes: AES-256-GCM ciphertexts that carry the id of the key that sealed them.
//!
//! Layout: `b"mm\x01"`, the 16-byte [`KeyId`], a 12-byte random nonce, then the ciphertext
//! and tag. The associated data is the header (magic and key id) plus a caller's context,
//! such as `Observation/42/_history/3`: a body copied onto another row, or under another
//! key id, fails to open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use crate::data_keys::{DataKey, KeyId};
use crate::random::{Random, array};

/// The first bytes of every envelope (version 1).
pub const MAGIC: [u8; 3] = *b"mm\x01";
const HEADER: usize = 3 + 16;
/// Bytes an envelope adds to its plaintext.
pub const OVERHEAD: usize = HEADER + 12 + 16;

/// Why an envelope does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not an envelope, or truncated.
    #[error("not an envelope")]
    Malformed,
    /// Authentication failed: wrong key, wrong context, or altered bytes.
    #[error("envelope does not authenticate")]
    Unauthentic,
}

/// Seals and opens envelopes.
#[derive(Debug, Clone, Copy)]
pub struct Envelope;

fn aad(key_id: &KeyId, context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER + context.len());
    aad.extend_from_slice(&MAGIC);
    aad.extend_from_slice(&key_id.0);
    aad.extend_from_slice(context);
    aad
}

impl Envelope {
    /// Seals `plaintext` under `key` (named `key_id`) for `context`.
    pub fn seal(
        key: &DataKey,
        key_id: &KeyId,
        context: &[u8],
        plaintext: &[u8],
        random: &dyn Random,
    ) -> Vec<u8> {
        let nonce: [u8; 12] = array(random);
        let cipher = Aes256Gcm::new(&(*key.bytes()).into());
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&key_id.0);
        out.extend_from_slice(&nonce);
        // AES-GCM fails only for messages over 64 GiB; bodies are bounded far below that.
        if let Ok(ct) = cipher.encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &aad(key_id, context),
            },
        ) {
            out.extend_from_slice(&ct);
        }
        out
    }

    /// Whether `bytes` start like an envelope.
    pub fn is_envelope(bytes: &[u8]) -> bool {
        bytes.len() >= OVERHEAD && bytes[..3] == MAGIC
    }

    /// The id of the key an envelope was sealed with.
    pub fn key_id(sealed: &[u8]) -> Option<KeyId> {
        if !Self::is_envelope(sealed) {
            return None;
        }
        sealed[3..HEADER].try_into().ok().map(KeyId)
    }

    /// Opens an envelope sealed for `context`.
    ///
    /// # Errors
    /// [`EnvelopeError`] when the bytes are not an envelope or do not authenticate.
    pub fn open(key: &DataKey, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let key_id = Self::key_id(sealed).ok_or(EnvelopeError::Malformed)?;
        let nonce: [u8; 12] = sealed[HEADER..HEADER + 12]
            .try_into()
            .map_err(|_| EnvelopeError::Malformed)?;
        let cipher = Aes256Gcm::new(&(*key.bytes()).into());
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &sealed[HEADER + 12..],
                    aad: &aad(&key_id, context),
                },
            )
            .map_err(|_| EnvelopeError::Unauthentic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::testing::Counter;
    use proptest::prelude::*;

    #[test]
    fn binds_context_key_and_bytes() {
        let rng = Counter::default();
        let key = DataKey::random(&rng);
        let id = KeyId::random(&rng);
        let sealed = Envelope::seal(&key, &id, b"Patient/1/_history/1", b"{\"a\":1}", &rng);
        assert_eq!(Envelope::key_id(&sealed), Some(id));
        assert_eq!(
            Envelope::open(&key, b"Patient/1/_history/1", &sealed).unwrap(),
            b"{\"a\":1}"
        );
        assert_eq!(
            Envelope::open(&key, b"Patient/2/_history/1", &sealed).unwrap_err(),
            EnvelopeError::Unauthentic
        );
        let other = DataKey::random(&rng);
        assert!(Envelope::open(&other, b"Patient/1/_history/1", &sealed).is_err());
        let mut swapped_id = sealed.clone();
        swapped_id[5] ^= 1;
        assert!(Envelope::open(&key, b"Patient/1/_history/1", &swapped_id).is_err());
        assert_eq!(
            Envelope::open(&key, b"x", b"{\"plain\":true}").unwrap_err(),
            EnvelopeError::Malformed
        );
        assert!(!Envelope::is_envelope(b"{\"resourceType\":\"Patient\"}"));
    }

    #[test]
    fn nonces_differ_between_seals() {
        let rng = Counter::default();
        let key = DataKey::random(&rng);
        let id = KeyId::random(&rng);
        let a = Envelope::seal(&key, &id, b"c", b"same", &rng);
        let b = Envelope::seal(&key, &id, b"c", b"same", &rng);
        assert_ne!(a, b);
    }

    proptest! {
        #[test]
        fn any_single_bit_flip_is_detected(body in proptest::collection::vec(any::<u8>(), 0..200), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let rng = Counter::default();
            let key = DataKey::random(&rng);
            let id = KeyId::random(&rng);
            let mut sealed = Envelope::seal(&key, &id, b"ctx", &body, &rng);
            prop_assert_eq!(Envelope::open(&key, b"ctx", &sealed).unwrap(), body);
            let i = at.index(sealed.len());
            sealed[i] ^= 1 << bit;
            prop_assert!(Envelope::open(&key, b"ctx", &sealed).is_err());
        }
    }
}
