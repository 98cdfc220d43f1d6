//! The key store port: wrapped data keys, by owner, and the progress of key jobs.
//!
//! The store only ever sees wrapped keys. Unwrapping needs the key-encryption key, which
//! comes from a [`KekProvider`] (a key file, or an external key service).

use async_trait::async_trait;

use crate::StoreError;

/// The life of a data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// New data for the owner is sealed under it.
    Active,
    /// Replaced by a newer key: still opens what it sealed, seals nothing new.
    Retired,
    /// Destroyed (erasure): the wrapped key is gone, and so is everything it sealed.
    Destroyed,
}

impl KeyState {
    /// The stored code.
    pub fn code(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Retired => "retired",
            KeyState::Destroyed => "destroyed",
        }
    }

    /// Parses a stored code.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(KeyState::Active),
            "retired" => Some(KeyState::Retired),
            "destroyed" => Some(KeyState::Destroyed),
            _ => None,
        }
    }
}

/// A data key as stored: wrapped under a KEK, never in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKeyRecord {
    /// The key's id (hex), as named in every envelope it seals.
    pub key_id: String,
    /// Whose key: a patient id, or `node:`-prefixed for the node's own keys.
    pub owner: String,
    /// The KEK it is wrapped under (`None` once destroyed).
    pub kek_id: Option<String>,
    /// The wrapped key (`None` once destroyed).
    pub wrapped: Option<Vec<u8>>,
    /// Its state.
    pub state: KeyState,
    /// Created, microseconds.
    pub created_micros: i64,
    /// Last state change or re-wrap, microseconds.
    pub changed_micros: i64,
}

/// Where wrapped data keys live.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// The owner's active key.
    async fn active_key(&self, owner: &str) -> Result<Option<WrappedKeyRecord>, StoreError>;
    /// A key by id, whatever its state.
    async fn key(&self, key_id: &str) -> Result<Option<WrappedKeyRecord>, StoreError>;
    /// Inserts `key` as its owner's active key, unless the owner already has one (another
    /// writer raced us); returns the owner's active key either way.
    async fn insert_active_key(
        &self,
        key: &WrappedKeyRecord,
    ) -> Result<WrappedKeyRecord, StoreError>;
    /// Keys that are not destroyed, ordered by id, after `after` (for rotation).
    async fn live_keys_page(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<WrappedKeyRecord>, StoreError>;
    /// Replaces a key's wrapping if it is still wrapped under `old_kek`. Returns false when
    /// it was not (re-wrapped or destroyed meanwhile).
    async fn rewrap(
        &self,
        key_id: &str,
        old_kek: &str,
        new_kek: &str,
        wrapped: &[u8],
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Marks the owner's active key retired and inserts `replacement` as active, in one
    /// transaction (full re-encryption starts a new key per owner).
    async fn replace_active_key(&self, replacement: &WrappedKeyRecord) -> Result<(), StoreError>;
    /// Destroys every key of an owner: the wrapped bytes are deleted. Returns how many.
    async fn destroy_keys(&self, owner: &str, now: i64) -> Result<u64, StoreError>;
    /// How many live keys each KEK wraps.
    async fn keys_per_kek(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// The saved cursor of a resumable key job, if it has started.
    async fn job_cursor(&self, job: &str) -> Result<Option<(i64, String)>, StoreError>;
    /// Saves a key job's cursor and state (`running`, `done`).
    async fn save_job_cursor(
        &self,
        job: &str,
        cursor: i64,
        state: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// Rewrites the database so that data replaced by re-encryption leaves no copy in its
    /// files: SQLite checkpoints its WAL, vacuums (dropping free pages) and truncates the
    /// WAL; PostgreSQL vacuums (its heap files keep dead row versions until `VACUUM FULL`).
    async fn purge_replaced_data(&self) -> Result<(), StoreError>;
}

/// A stored body to re-encrypt: its row, and what it is.
#[derive(Debug, Clone)]
pub struct StoredBody {
    /// The row's sequence number (the resumable cursor).
    pub seq: i64,
    /// The version.
    pub version: crate::StoredVersion,
    /// Whether it is the resource's current version (its index rows are rebuilt too).
    pub current: bool,
}

/// Where the key-encryption keys come from: a local key file, or an external key service.
#[async_trait]
pub trait KekProvider: Send + Sync + 'static {
    /// The KEK new keys are wrapped under.
    fn current_kek(&self) -> String;
    /// Wraps a data key under the current KEK. Returns the KEK id and the wrapped bytes.
    async fn wrap(
        &self,
        key: &medmesh_crypto::DataKey,
        key_id: &medmesh_crypto::KeyId,
        owner: &str,
    ) -> Result<(String, Vec<u8>), KekError>;
    /// Unwraps a data key wrapped under `kek_id`.
    async fn unwrap(
        &self,
        kek_id: &str,
        wrapped: &[u8],
        key_id: &medmesh_crypto::KeyId,
        owner: &str,
    ) -> Result<medmesh_crypto::DataKey, KekError>;
}

/// Seals the node's own secrets (the token-signing keys, the audit log's checkpoint key,
/// users' TOTP seeds) under a data key wrapped by the KEK, so that a copy of the database
/// alone opens none of them. `keys rotate` re-wraps that data key with every other;
/// `keys reencrypt` re-seals the secrets under a fresh one.
#[async_trait::async_trait]
pub trait SecretSealer: Send + Sync + 'static {
    /// Seals `secret`, bound to `context` (what it is and whose: `signing-key/<kid>`).
    async fn seal_secret(&self, context: &str, secret: &[u8]) -> Result<Vec<u8>, KekError>;
    /// Opens a sealed secret. `Ok(None)`: the bytes are not sealed at all (written before
    /// secrets were sealed); the caller may use them as they are until they are re-sealed.
    async fn open_secret(&self, context: &str, stored: &[u8]) -> Result<Option<Vec<u8>>, KekError>;
}

/// Why a KEK operation failed. No key material is ever in the message.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    /// The KEK named is not available (retired and removed, or a different key file).
    #[error("key-encryption key {0} is not available")]
    Unknown(String),
    /// The wrapped key does not authenticate under that KEK.
    #[error("wrapped key does not authenticate")]
    Unauthentic,
    /// The key file or key service failed; its error is the source, for the log.
    #[error("key service: {0}")]
    Service(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl KekError {
    /// A key-service failure, keeping its cause as the source.
    pub fn service(source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self::Service(source.into())
    }
}
