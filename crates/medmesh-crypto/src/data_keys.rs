//! Data-encryption keys and the key-encryption key that wraps them.
//!
//! Each patient's records are sealed under the patient's own [`DataKey`]; the node keeps
//! only wrapped copies (sealed under the [`Kek`]). Destroying a wrapped copy, and rotating
//! the KEK so that backups of it die too, makes the patient's data unreadable.

use std::fmt;
use std::str::FromStr;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::random::{Random, array};

/// Names a data key. Random, so it says nothing about whose key it is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

impl KeyId {
    /// A fresh random key id.
    pub fn random(random: &dyn Random) -> Self {
        Self(array(random))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = WrapError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).map_err(|_| WrapError::Malformed)?;
        Ok(Self(out))
    }
}

/// A 256-bit data-encryption key. Zeroed on drop; its Debug never shows the bytes.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// A fresh random key.
    pub fn random(random: &dyn Random) -> Self {
        Self(Zeroizing::new(array(random)))
    }

    /// A key from its bytes (after unwrapping, or in tests).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The raw key, for the cipher.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The raw key, to derive another key from it (the blind-index key is stored as a
    /// wrapped data key).
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// Names a key-encryption key: a digest of the key, so the same key always has the same id
/// and an id reveals nothing of the key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KekId(pub String);

impl fmt::Display for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KekId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KekId({})", self.0)
    }
}

/// Why a key could not be wrapped or unwrapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WrapError {
    /// The bytes are not a wrapped key (or not hex, for ids).
    #[error("malformed wrapped key")]
    Malformed,
    /// The wrapped key fails authentication: wrong KEK, wrong owner, or altered bytes.
    #[error("wrapped key does not authenticate")]
    Unauthentic,
}

/// A 256-bit key-encryption key. Zeroed on drop; its Debug never shows the bytes.
#[derive(Clone)]
pub struct Kek {
    key: Zeroizing<[u8; 32]>,
    id: KekId,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Binds a wrapped DEK to its id and owner, so a wrapped key copied onto another patient's
/// row does not unwrap.
fn wrap_aad(key_id: &KeyId, owner: &str) -> Vec<u8> {
    let mut aad = b"medmesh/dek/v1\0".to_vec();
    aad.extend_from_slice(&key_id.0);
    aad.push(0);
    aad.extend_from_slice(owner.as_bytes());
    aad
}

impl Kek {
    /// A KEK from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"medmesh/kek-id/v1\0")
            .chain_update(bytes)
            .finalize();
        Self {
            key: Zeroizing::new(bytes),
            id: KekId(hex::encode(&digest[..8])),
        }
    }

    /// A fresh random KEK.
    pub fn random(random: &dyn Random) -> Self {
        Self::from_bytes(array(random))
    }

    /// Its id.
    pub fn id(&self) -> &KekId {
        &self.id
    }

    /// The raw key, for writing the key file.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.key
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&(*self.key).into())
    }

    /// Wraps a DEK for `owner`: a random nonce, then the sealed key.
    pub fn wrap(&self, dek: &DataKey, key_id: &KeyId, owner: &str, random: &dyn Random) -> Vec<u8> {
        let nonce: [u8; 12] = array(random);
        let aad = wrap_aad(key_id, owner);
        let mut out = nonce.to_vec();
        // AES-GCM over 32 bytes cannot fail: the only errors are for inputs over 64 GiB.
        if let Ok(ct) = self.cipher().encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: dek.bytes(),
                aad: &aad,
            },
        ) {
            out.extend_from_slice(&ct);
        }
        out
    }

    /// Unwraps a DEK that [`Kek::wrap`] sealed for this id and owner.
    ///
    /// # Errors
    /// [`WrapError::Unauthentic`] for a different KEK, id or owner, or altered bytes.
    pub fn unwrap(
        &self,
        wrapped: &[u8],
        key_id: &KeyId,
        owner: &str,
    ) -> Result<DataKey, WrapError> {
        if wrapped.len() != 12 + 32 + 16 {
            return Err(WrapError::Malformed);
        }
        let (nonce, ct) = wrapped.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| WrapError::Malformed)?;
        let aad = wrap_aad(key_id, owner);
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: &aad })
                .map_err(|_| WrapError::Unauthentic)?,
        );
        let bytes: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| WrapError::Malformed)?;
        Ok(DataKey::from_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::testing::Counter;

    #[test]
    fn wrap_round_trips_and_binds_owner_and_id() {
        let rng = Counter::default();
        let kek = Kek::random(&rng);
        let dek = DataKey::random(&rng);
        let id = KeyId::random(&rng);
        let wrapped = kek.wrap(&dek, &id, "patient-1", &rng);
        let back = kek.unwrap(&wrapped, &id, "patient-1").unwrap();
        assert_eq!(back.bytes(), dek.bytes());
        assert_eq!(
            kek.unwrap(&wrapped, &id, "patient-2").unwrap_err(),
            WrapError::Unauthentic
        );
        let other_id = KeyId::random(&rng);
        assert!(kek.unwrap(&wrapped, &other_id, "patient-1").is_err());
        let other_kek = Kek::random(&rng);
        assert!(other_kek.unwrap(&wrapped, &id, "patient-1").is_err());
        let mut flipped = wrapped.clone();
        flipped[20] ^= 1;
        assert!(kek.unwrap(&flipped, &id, "patient-1").is_err());
        assert_eq!(
            kek.unwrap(&wrapped[1..], &id, "patient-1").unwrap_err(),
            WrapError::Malformed
        );
    }

    #[test]
    fn ids_are_stable_and_debug_is_redacted() {
        let a = Kek::from_bytes([1; 32]);
        assert_eq!(a.id(), Kek::from_bytes([1; 32]).id());
        assert_ne!(a.id(), Kek::from_bytes([2; 32]).id());
        assert!(!format!("{a:?}").contains("[1, 1"));
        assert_eq!(
            format!("{:?}", DataKey::from_bytes([9; 32])),
            "DataKey(<redacted>)"
        );
        let id = KeyId([0xab; 16]);
        assert_eq!(id.to_string().parse::<KeyId>().unwrap(), id);
    }
}
