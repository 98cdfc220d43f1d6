//! End-to-end sealed documents: iCure's delegation model, done with HPKE (RFC 9180).
//!
//! The client draws a random content key, seals the document with it chunk by chunk (the
//! [`crate::stream`] format, under a random document key id), and wraps the content key for
//! each recipient's X25519 sealing key with HPKE in base mode:
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM (suite `0x0020`/`0x0001`/`0x0002`).
//! The node stores the sealed bytes and the wrapped keys and holds none of the private keys,
//! so it cannot open either.
//!
//! Every wrap binds the document's key id (HPKE `info` and `aad`), so a wrapped key copied onto
//! another sealed document does not open. Sharing is done by a holder of the content key:
//! they unwrap their own copy and wrap it for the new recipient.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

use crate::data_keys::{DataKey, KeyId};
use crate::random::{Random, array};
use crate::stream::{StreamError, StreamOpener, StreamSealer};

type Kem = X25519HkdfSha256;

/// HPKE `info`: the purpose and version of every wrap.
const INFO: &[u8] = b"medmesh-sealed-document v1";
/// Associated data of the sealed content stream.
const CONTENT_CONTEXT: &[u8] = b"medmesh-sealed-content v1";

/// Why sealing or opening failed; nothing here names content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// A key or wrapped key is not well formed.
    #[error("malformed sealing key or wrapped key")]
    Malformed,
    /// The wrapped key is not for this secret key or this document.
    #[error("this key cannot open the document")]
    WrongKey,
    /// The sealed content does not authenticate.
    #[error("the sealed document does not authenticate")]
    Content(#[from] StreamError),
}

/// A user's X25519 sealing key (the private half). Zeroed on drop; Debug shows the public key.
pub struct SealingSecretKey {
    secret: Zeroizing<[u8; 32]>,
    private: <Kem as hpke::Kem>::PrivateKey,
    public: SealingPublicKey,
}

impl fmt::Debug for SealingSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingSecretKey(public {})", self.public.to_base64())
    }
}

impl SealingSecretKey {
    /// A fresh key.
    pub fn generate(random: &dyn Random) -> Self {
        Self::from_seed(array(random))
    }

    /// The key derived from 32 seed bytes (what the key file keeps), by HPKE's DeriveKeyPair.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let (private, public) = Kem::derive_keypair(&seed);
        Self {
            secret: Zeroizing::new(seed),
            private,
            public: SealingPublicKey(public),
        }
    }

    /// The seed, to write the user's key file.
    pub fn expose_seed(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The public half, to publish in the directory.
    pub fn public(&self) -> SealingPublicKey {
        self.public.clone()
    }

    /// Unwraps a content key wrapped for this key and document.
    ///
    /// # Errors
    /// [`SealError::WrongKey`] when it was wrapped for another key or document.
    pub fn unwrap(&self, wrapped: &WrappedKey, document: &KeyId) -> Result<ContentKey, SealError> {
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&wrapped.encapsulated)
            .map_err(|_| SealError::Malformed)?;
        let plain = hpke::single_shot_open::<AesGcm256, HkdfSha256, Kem>(
            &OpModeR::Base,
            &self.private,
            &enc,
            &info(document),
            &wrapped.ciphertext,
            &document.0,
        )
        .map_err(|_| SealError::WrongKey)?;
        let bytes: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| SealError::Malformed)?;
        Ok(ContentKey(DataKey::from_bytes(bytes)))
    }
}

fn info(document: &KeyId) -> Vec<u8> {
    [INFO, &document.0].concat()
}

/// A user's X25519 public sealing key.
#[derive(Clone, PartialEq, Eq)]
pub struct SealingPublicKey(<Kem as hpke::Kem>::PublicKey);

impl fmt::Debug for SealingPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingPublicKey({})", self.to_base64())
    }
}

impl SealingPublicKey {
    /// Base64 of the 32 key bytes.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.to_bytes())
    }

    /// Parses base64 of the 32 key bytes.
    ///
    /// # Errors
    /// [`SealError::Malformed`].
    pub fn from_base64(s: &str) -> Result<Self, SealError> {
        let bytes = STANDARD
            .decode(s.trim())
            .map_err(|_| SealError::Malformed)?;
        <Kem as hpke::Kem>::PublicKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| SealError::Malformed)
    }
}

/// A sealed document's content key. Zeroed on drop.
pub struct ContentKey(DataKey);

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentKey([redacted])")
    }
}

impl ContentKey {
    /// A fresh content key.
    pub fn generate(random: &dyn Random) -> Self {
        Self(DataKey::random(random))
    }

    /// A content key from its 32 bytes (a client restoring one; the test that tries every key
    /// the node holds as one).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(DataKey::from_bytes(bytes))
    }

    /// Wraps this key for a recipient, bound to the document.
    ///
    /// # Errors
    /// [`SealError::Malformed`] if HPKE refuses the recipient's key.
    pub fn wrap_for(
        &self,
        recipient: &SealingPublicKey,
        document: &KeyId,
        random: &dyn Random,
    ) -> Result<WrappedKey, SealError> {
        let mut rng = RandomRng(random);
        let (enc, ciphertext) = hpke::single_shot_seal_with_rng::<AesGcm256, HkdfSha256, Kem>(
            &OpModeS::Base,
            &recipient.0,
            &info(document),
            self.0.expose_bytes(),
            &document.0,
            &mut rng,
        )
        .map_err(|_| SealError::Malformed)?;
        Ok(WrappedKey {
            encapsulated: enc.to_bytes().to_vec(),
            ciphertext,
        })
    }

    /// Starts sealing a document's content under this key; the header goes to `out`.
    pub fn seal_stream(
        &self,
        document: &KeyId,
        random: &dyn Random,
        out: &mut Vec<u8>,
    ) -> StreamSealer {
        StreamSealer::start(&self.0, document, CONTENT_CONTEXT, random, out)
    }

    /// Starts opening a sealed document, given its first [`crate::stream::HEADER`] bytes.
    ///
    /// # Errors
    /// [`SealError::Content`] when the header is not a sealed document's.
    pub fn open_stream(&self, header: &[u8]) -> Result<StreamOpener, SealError> {
        Ok(StreamOpener::start(&self.0, header, CONTENT_CONTEXT)?)
    }

    /// Seals a whole document held in memory (small documents, tests).
    ///
    /// # Errors
    /// [`SealError::Content`] only if the stream counter overflows.
    pub fn seal(
        &self,
        document: &KeyId,
        plain: &[u8],
        random: &dyn Random,
    ) -> Result<Vec<u8>, SealError> {
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut s = self.seal_stream(document, random, &mut out);
        s.push(plain, &mut out)?;
        s.finish(&mut out)?;
        Ok(out)
    }

    /// Opens a whole sealed document held in memory.
    ///
    /// # Errors
    /// [`SealError::Content`] when it is altered, cut short or sealed under another key.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < crate::stream::HEADER {
            return Err(SealError::Content(StreamError::Malformed));
        }
        let (header, body) = sealed.split_at(crate::stream::HEADER);
        let mut o = self.open_stream(header)?;
        let mut out = Vec::with_capacity(body.len());
        o.push(body, &mut out)?;
        o.finish(&mut out)?;
        Ok(out)
    }
}

/// The document key id a sealed document names in its header.
///
/// # Errors
/// [`SealError::Content`] when it is no sealed document.
pub fn document_id_of(sealed: &[u8]) -> Result<KeyId, SealError> {
    Ok(crate::stream::key_id_of(sealed)?)
}

/// A content key wrapped for one recipient: HPKE's encapsulated key and the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// HPKE `enc` (32 bytes for X25519).
    pub encapsulated: Vec<u8>,
    /// The content key, sealed (48 bytes).
    pub ciphertext: Vec<u8>,
}

impl WrappedKey {
    /// `base64(enc).base64(ciphertext)`, as stored and sent.
    pub fn to_text(&self) -> String {
        format!(
            "{}.{}",
            STANDARD.encode(&self.encapsulated),
            STANDARD.encode(&self.ciphertext)
        )
    }

    /// Parses [`Self::to_text`].
    ///
    /// # Errors
    /// [`SealError::Malformed`].
    pub fn from_text(s: &str) -> Result<Self, SealError> {
        let (a, b) = s.trim().split_once('.').ok_or(SealError::Malformed)?;
        let decode = |x: &str| STANDARD.decode(x).map_err(|_| SealError::Malformed);
        Ok(Self {
            encapsulated: decode(a)?,
            ciphertext: decode(b)?,
        })
    }
}

/// Our [`Random`] port as the `rand_core` generator HPKE asks for.
struct RandomRng<'a>(&'a dyn Random);

impl hpke::rand_core::TryRng for RandomRng<'_> {
    type Error = std::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(u32::from_le_bytes(array(self.0)))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(u64::from_le_bytes(array(self.0)))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill(dst);
        Ok(())
    }
}

// Every `Random` is a CSPRNG by contract (the OS generator, or a test's counter).
impl hpke::rand_core::TryCryptoRng for RandomRng<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::testing::Counter;

    #[test]
    fn a_recipient_opens_and_nobody_else_does() {
        let r = Counter::default();
        let patient = SealingSecretKey::generate(&r);
        let doctor = SealingSecretKey::generate(&r);
        let stranger = SealingSecretKey::generate(&r);
        let doc = KeyId::random(&r);
        let k = ContentKey::generate(&r);
        let sealed = k.seal(&doc, b"HIV test: negative", &r).unwrap();
        assert_eq!(document_id_of(&sealed).unwrap(), doc);
        let for_patient = k.wrap_for(&patient.public(), &doc, &r).unwrap();

        // The patient opens, then shares with the doctor: unwrap, wrap for the doctor.
        let theirs = patient.unwrap(&for_patient, &doc).unwrap();
        assert_eq!(theirs.open(&sealed).unwrap(), b"HIV test: negative");
        let for_doctor = theirs.wrap_for(&doctor.public(), &doc, &r).unwrap();
        let back = WrappedKey::from_text(&for_doctor.to_text()).unwrap();
        assert_eq!(
            doctor.unwrap(&back, &doc).unwrap().open(&sealed).unwrap(),
            b"HIV test: negative"
        );

        // Someone else's key, or the doctor's wrap moved to another document, fails.
        assert_eq!(
            stranger.unwrap(&for_doctor, &doc).unwrap_err(),
            SealError::WrongKey
        );
        let other_doc = KeyId::random(&r);
        assert_eq!(
            doctor.unwrap(&for_doctor, &other_doc).unwrap_err(),
            SealError::WrongKey
        );
        // A flipped byte of content fails.
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(theirs.open(&bad), Err(SealError::Content(_))));
        // Keys survive their base64 and seed forms; Debug shows no secret.
        let again = SealingSecretKey::from_seed(*doctor.expose_seed());
        assert_eq!(again.public(), doctor.public());
        assert_eq!(
            SealingPublicKey::from_base64(&doctor.public().to_base64()).unwrap(),
            doctor.public()
        );
        assert!(!format!("{doctor:?}").contains(&STANDARD.encode(doctor.expose_seed())));
    }
}
