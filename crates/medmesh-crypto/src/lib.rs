//! The cryptographic core of medmesh. Pure: keys come in as bytes and randomness through the
//! [`Random`] port, so every function here is deterministic under test.
//!
//! - [`envelope`]: AES-256-GCM envelopes for record bodies and other stored bytes, each
//!   naming the data key it was sealed with.
//! - [`data_keys`]: data-encryption keys (DEKs) and the key-encryption key (KEK) that wraps them.
//! - [`blind`]: keyed HMAC blind indexes, so identifying values can be searched without
//!   being stored.
//! - [`signing`]: users' Ed25519 keys and detached signatures over an upload's digest and
//!   claims.
//! - [`stream`]: documents sealed chunk by chunk (STREAM over AES-256-GCM).
//! - [`sealing`]: end-to-end sealed documents (HPKE-wrapped content keys).
//! - [`content_id`]: SHA-256 content ids written as CIDv1.

pub mod blind;
pub mod content_id;
pub mod data_keys;
pub mod envelope;
pub mod random;
pub mod sealing;
pub mod set_digest;
pub mod signing;
pub mod stream;
pub mod wire;

pub use blind::BlindIndexKey;
pub use content_id::{ContentHasher, ContentId};
pub use data_keys::{DataKey, Kek, KekId, KeyId, WrapError};
pub use envelope::{Envelope, EnvelopeError};
pub use random::{OsRandom, Random};
pub use set_digest::{SetDigest, SetDigestKey};
pub use signing::{
    KeyStatement, PrescriptionClaims, SignatureError, UploadClaims, UploadSignature, UserPublicKey,
    UserSigningKey,
};
