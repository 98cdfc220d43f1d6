//! Encryption at rest, the mechanism: the node's key ring (per-patient data keys wrapped by
//! a key-encryption key, cached, forgotten on erasure), the write transaction that seals
//! bodies inside it, and the blind index that turns identifying search values into tokens.
//!
//! It sits below the record service: every write and search of `medmesh-records` passes
//! through it. Key *administration* (rewrap, re-encrypt, erase) walks records and documents,
//! so it lives above them, in `medmesh-key-admin`.

pub mod blind_index;
pub mod key_ring;

pub use blind_index::BlindIndex;
pub use key_ring::{
    AtRest, AtRestError, BLIND_INDEX_OWNER, CACHE_TTL_MICROS, EPOCH_CHECK_MICROS, ERASURE_EPOCH,
    NODE_RECORDS_OWNER, NODE_SECRETS_OWNER, PreparedKey, TEXT_PREFIX, WriteTx, body_context,
};
/// The id of a data key (what a sealed body names).
pub use medmesh_crypto::KeyId;
