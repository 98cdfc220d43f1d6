//! Encryption at rest: every stored body is an envelope sealed under its patient's data key
//! (or the node's, for resources outside any patient's compartment), and identifying index
//! values are blind-index tokens.
//!
//! Data keys are created inside the write transaction that first needs them, so a body is
//! never committed without its key. They are cached unwrapped for [`CACHE_TTL_MICROS`]:
//! an erasure on this process forgets them at once, one on another replica within that time.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use medmesh_crypto::{BlindIndexKey, DataKey, Envelope, KeyId, Random};
use medmesh_store::{
    KekError, KekProvider, KeyState, KeyStore, RecordTx, SecretSealer, StoreError, WrappedKeyRecord,
};

use crate::blind_index::BlindIndex;
use medmesh_kernel::Clock;

/// Owner of the key that seals resources outside every patient's compartment.
pub const NODE_RECORDS_OWNER: &str = "node:records";
/// Owner of the blind-index key.
pub const BLIND_INDEX_OWNER: &str = "node:blind-index";
/// Owner of the key that seals the node's own secrets (signing keys, TOTP seeds).
pub const NODE_SECRETS_OWNER: &str = "node:secrets";
/// How long an unwrapped data key stays cached (five minutes).
pub const CACHE_TTL_MICROS: i64 = 300_000_000;
/// Cached keys at most; the cache is cleared when it grows past this.
const CACHE_MAX: usize = 100_000;
/// Text prefix of sealed values stored in text columns (consents).
/// The prefix of sealed text in a text column.
pub const TEXT_PREFIX: &str = "mm1:";
/// The key-job row whose value changes at every erasure: nodes that see it change drop
/// their cached keys.
pub const ERASURE_EPOCH: &str = "erasure-epoch";
/// How often a node looks at the erasure epoch: an erasure made by another process (the
/// CLI, another replica) takes effect here within this time.
pub const EPOCH_CHECK_MICROS: i64 = 1_000_000;

/// Why sealed data could not be opened or sealed.
#[derive(Debug, thiserror::Error)]
pub enum AtRestError {
    /// The data's key was destroyed: the patient was erased.
    #[error("data erased")]
    Erased,
    /// The bytes are not an envelope, or do not authenticate.
    #[error("stored data does not authenticate")]
    Corrupt,
    /// The key-encryption key is unavailable or refused.
    #[error(transparent)]
    Kek(#[from] KekError),
    /// The key store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct CachedKey {
    key: DataKey,
    owner: String,
    loaded: i64,
}

#[derive(Default)]
struct KeyCache {
    by_id: HashMap<KeyId, CachedKey>,
    by_owner: HashMap<String, (KeyId, i64)>,
}

/// The key ring and blind index of a node.
pub struct AtRest {
    keys: Arc<dyn KeyStore>,
    kek: Arc<dyn KekProvider>,
    random: Arc<dyn Random>,
    clock: Arc<dyn Clock>,
    blind: BlindIndex,
    cache: Mutex<KeyCache>,
    accept_plaintext: bool,
    /// When the erasure epoch was last read, and its value.
    epoch: Mutex<(i64, Option<i64>)>,
}

impl std::fmt::Debug for AtRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtRest").finish_non_exhaustive()
    }
}

/// A data key for a write prepared before its transaction (see
/// [`AtRest::key_for_prepared`]). Debug shows the owner and key id only.
pub struct PreparedKey {
    owner: String,
    /// The key's id, as sealed bodies name it.
    pub id: KeyId,
    key: DataKey,
    /// A key made for this write and not stored yet.
    new_record: Option<WrappedKeyRecord>,
}

impl std::fmt::Debug for PreparedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedKey")
            .field("owner", &self.owner)
            .field("id", &self.id)
            .field("new", &self.new_record.is_some())
            .finish_non_exhaustive()
    }
}

/// Keys a write transaction read or created, by owner; cached once it commits.
type KeyMemo = HashMap<String, (KeyId, DataKey)>;

/// A write transaction, with the data keys it has used. Commit through it, so keys it
/// created are cached only once they exist.
pub struct WriteTx {
    inner: Box<dyn RecordTx>,
    memo: KeyMemo,
    at_rest: Option<Arc<AtRest>>,
    /// Committed consents read during this transaction, by patients: what sharing rules
    /// apply to its writes. Consents it writes itself take effect from the next one. The
    /// record service fills it; it rides here so one transaction value carries all a write
    /// has read.
    pub consents: HashMap<Vec<String>, Vec<Arc<medmesh_policy::consent::ConsentRule>>>,
}

impl Deref for WriteTx {
    type Target = dyn RecordTx;
    fn deref(&self) -> &Self::Target {
        self.inner.as_ref()
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.inner.as_mut()
    }
}

impl WriteTx {
    /// Wraps a store transaction.
    pub fn new(inner: Box<dyn RecordTx>, at_rest: Option<Arc<AtRest>>) -> Self {
        Self {
            inner,
            memo: HashMap::new(),
            at_rest,
            consents: HashMap::new(),
        }
    }

    /// Rolls back at once, releasing the transaction's locks.
    ///
    /// # Errors
    /// When the store fails to roll back.
    pub async fn rollback(self) -> Result<(), StoreError> {
        self.inner.rollback().await
    }

    /// Commits, then caches the keys it used.
    ///
    /// # Errors
    /// When the store fails to commit.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.inner.commit().await?;
        if let Some(a) = &self.at_rest {
            a.remember(self.memo);
        }
        Ok(())
    }
}

/// The AEAD context of a resource version: a body moved to another row fails to open.
pub fn body_context(rt: &str, id: &str, version: i64) -> String {
    format!("{rt}/{id}/_history/{version}")
}

impl AtRest {
    /// Loads the key ring: reads (or, on a new node, creates) the blind-index key.
    ///
    /// # Errors
    /// When the key store or the KEK fails.
    pub async fn load(
        keys: Arc<dyn KeyStore>,
        kek: Arc<dyn KekProvider>,
        random: Arc<dyn Random>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AtRestError> {
        let mut ring = Self {
            keys,
            kek,
            random,
            clock,
            blind: BlindIndex::new(BlindIndexKey::from_bytes([0; 32])),
            cache: Mutex::new(KeyCache::default()),
            accept_plaintext: false,
            epoch: Mutex::new((i64::MIN, None)),
        };
        let (_, key) = ring.owner_key_outside_tx(BLIND_INDEX_OWNER).await?;
        ring.blind = BlindIndex::new(BlindIndexKey::from_bytes(*key.expose_bytes()));
        Ok(ring)
    }

    /// Whether this database already holds a blind-index key (else it was written without
    /// encryption at rest, or is new).
    ///
    /// # Errors
    /// When the key store fails.
    pub async fn is_initialized(keys: &dyn KeyStore) -> Result<bool, StoreError> {
        Ok(keys.active_key(BLIND_INDEX_OWNER).await?.is_some())
    }

    /// Also opens plaintext bodies (written before encryption was turned on), for the
    /// one-off `medmesh keys reencrypt` that seals them.
    pub fn accepting_plaintext(mut self) -> Self {
        self.accept_plaintext = true;
        self
    }

    /// The key ring's clock: key creation times are on it.
    pub fn now_micros(&self) -> i64 {
        self.clock.now_micros()
    }

    /// The blind index.
    pub fn blind_index(&self) -> &BlindIndex {
        &self.blind
    }

    /// The key store.
    pub fn key_store(&self) -> &Arc<dyn KeyStore> {
        &self.keys
    }

    /// The KEK provider.
    pub fn kek(&self) -> &Arc<dyn KekProvider> {
        &self.kek
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, KeyCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new data key for `owner`, wrapped under the current KEK.
    async fn new_key_record(&self, owner: &str) -> Result<WrappedKeyRecord, AtRestError> {
        Ok(self.new_key(owner).await?.0)
    }

    /// A new data key for `owner`: its record (wrapped under the KEK) and the key itself.
    async fn new_key(
        &self,
        owner: &str,
    ) -> Result<(WrappedKeyRecord, KeyId, DataKey), AtRestError> {
        let key = DataKey::random(self.random.as_ref());
        let id = KeyId::random(self.random.as_ref());
        let (kek_id, wrapped) = self.kek.wrap(&key, &id, owner).await?;
        let now = self.clock.now_micros();
        let record = WrappedKeyRecord {
            key_id: id.to_string(),
            owner: owner.to_string(),
            kek_id: Some(kek_id),
            wrapped: Some(wrapped),
            state: KeyState::Active,
            created_micros: now,
            changed_micros: now,
        };
        Ok((record, id, key))
    }

    /// The key to seal a write prepared before its transaction, found or made without
    /// writing anything: the owner's active key, or a new one kept in memory until
    /// [`Self::adopt_in`] stores it under the lock. (Creating it through the store would be
    /// a write of its own, and on SQLite it would wait for the writer it was meant to run
    /// beside.)
    ///
    /// # Errors
    /// When the key cannot be read, wrapped or unwrapped.
    pub async fn key_for_prepared(&self, owner: &str) -> Result<PreparedKey, AtRestError> {
        self.check_erasures().await?;
        if let Some((id, key)) = self.cached_owner_key(owner) {
            return Ok(PreparedKey {
                owner: owner.to_string(),
                id,
                key,
                new_record: None,
            });
        }
        match self.keys.active_key(owner).await? {
            Some(record) => {
                let id: KeyId = record.key_id.parse().map_err(|_| AtRestError::Corrupt)?;
                let key = self.unwrap_record(&record).await?;
                Ok(PreparedKey {
                    owner: owner.to_string(),
                    id,
                    key,
                    new_record: None,
                })
            }
            None => {
                let (record, id, key) = self.new_key(owner).await?;
                Ok(PreparedKey {
                    owner: owner.to_string(),
                    id,
                    key,
                    new_record: Some(record),
                })
            }
        }
    }

    /// Seals bytes with a key from [`Self::key_for_prepared`].
    pub fn seal_prepared(&self, key: &PreparedKey, context: &str, plain: &[u8]) -> Vec<u8> {
        self.seal_with(&key.id, &key.key, context, plain)
    }

    /// Under the lock: whether what was sealed with `prepared` may be written in `tx`, that
    /// is whether it is the key the transaction seals the owner's writes with. A new key is
    /// stored here, in the transaction, unless the owner has got one meanwhile.
    ///
    /// # Errors
    /// When the store fails, or the key cannot be read or unwrapped.
    pub async fn adopt_in(
        &self,
        tx: &mut WriteTx,
        prepared: &PreparedKey,
    ) -> Result<bool, AtRestError> {
        if let Some((id, _)) = tx.memo.get(&prepared.owner) {
            return Ok(*id == prepared.id);
        }
        let Some(record) = &prepared.new_record else {
            return Ok(self.key_in(tx, &prepared.owner).await?.0 == prepared.id);
        };
        self.check_erasures_in(tx).await?;
        if self.cached_owner_key(&prepared.owner).is_some()
            || tx.active_data_key(&prepared.owner).await?.is_some()
        {
            return Ok(false);
        }
        tx.insert_data_key(record).await?;
        // Another writer may have won the race: whichever key is active is the one.
        let active = tx
            .active_data_key(&prepared.owner)
            .await?
            .ok_or(StoreError::Conflict)?;
        if active.key_id != record.key_id {
            return Ok(false);
        }
        tx.memo
            .insert(prepared.owner.clone(), (prepared.id, prepared.key.clone()));
        Ok(true)
    }

    async fn unwrap_record(&self, r: &WrappedKeyRecord) -> Result<DataKey, AtRestError> {
        let (Some(kek_id), Some(wrapped)) = (&r.kek_id, &r.wrapped) else {
            return Err(AtRestError::Erased);
        };
        let id: KeyId = r.key_id.parse().map_err(|_| AtRestError::Corrupt)?;
        Ok(self.kek.unwrap(kek_id, wrapped, &id, &r.owner).await?)
    }

    /// Caches the keys a committed transaction used.
    fn remember(&self, memo: KeyMemo) {
        if memo.is_empty() {
            return;
        }
        let now = self.clock.now_micros();
        let mut c = self.cache();
        if c.by_id.len() + memo.len() > CACHE_MAX {
            *c = KeyCache::default();
        }
        for (owner, (id, key)) in memo {
            c.by_owner.insert(owner.clone(), (id, now));
            c.by_id.insert(
                id,
                CachedKey {
                    key,
                    owner,
                    loaded: now,
                },
            );
        }
    }

    /// Retires the owner's active key and makes a new one (full re-encryption).
    ///
    /// # Errors
    /// When the KEK or the store fails.
    pub async fn replace_key(&self, owner: &str) -> Result<(), AtRestError> {
        let record = self.new_key_record(owner).await?;
        self.keys.replace_active_key(&record).await?;
        self.forget(owner);
        Ok(())
    }

    /// Forgets an owner's keys (after erasure).
    pub fn forget(&self, owner: &str) {
        let mut c = self.cache();
        c.by_owner.remove(owner);
        c.by_id.retain(|_, k| k.owner != owner);
    }

    /// Drops every cached key if an erasure happened since the epoch was last read (at most
    /// once per [`EPOCH_CHECK_MICROS`]).
    async fn check_erasures(&self) -> Result<(), AtRestError> {
        let Some(now) = self.erasure_check_due() else {
            return Ok(());
        };
        let seen = self.keys.job_cursor(ERASURE_EPOCH).await?.map(|(v, _)| v);
        self.erasures_seen(now, seen);
        Ok(())
    }

    /// As [`Self::check_erasures`], reading the epoch in `tx`. A transaction must not wait
    /// for a pooled connection while it holds its own: on PostgreSQL, when the check fell
    /// due, every open write transaction could be waiting here for one, with all of the
    /// pool's connections held so, until the pool's 30 s timeout (docs/architecture.md).
    async fn check_erasures_in(&self, tx: &mut WriteTx) -> Result<(), AtRestError> {
        let Some(now) = self.erasure_check_due() else {
            return Ok(());
        };
        let seen = tx.key_job_cursor(ERASURE_EPOCH).await?.map(|(v, _)| v);
        self.erasures_seen(now, seen);
        Ok(())
    }

    /// The time now, if the erasure epoch was last read [`EPOCH_CHECK_MICROS`] ago or more.
    fn erasure_check_due(&self) -> Option<i64> {
        let now = self.clock.now_micros();
        let last = self.epoch.lock().unwrap_or_else(PoisonError::into_inner).0;
        (now.saturating_sub(last) >= EPOCH_CHECK_MICROS).then_some(now)
    }

    /// Records the epoch read at `now`, dropping every cached key if it moved.
    fn erasures_seen(&self, now: i64, seen: Option<i64>) {
        let changed = {
            let mut e = self.epoch.lock().unwrap_or_else(PoisonError::into_inner);
            let changed = e.0 != i64::MIN && e.1 != seen;
            *e = (now, seen);
            changed
        };
        if changed {
            *self.cache() = KeyCache::default();
        }
    }

    /// Records an erasure, so every node drops its cached keys.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn announce_erasure(&self) -> Result<(), AtRestError> {
        let now = self.clock.now_micros();
        self.keys
            .save_job_cursor(ERASURE_EPOCH, now, "erasure", now)
            .await?;
        Ok(())
    }

    fn cached_owner_key(&self, owner: &str) -> Option<(KeyId, DataKey)> {
        let now = self.clock.now_micros();
        let c = self.cache();
        let (id, at) = c.by_owner.get(owner)?;
        if now - at > CACHE_TTL_MICROS {
            return None;
        }
        let k = c.by_id.get(id)?;
        Some((*id, k.key.clone()))
    }

    /// The owner's active key, as the transaction sees it, created there if it has none.
    async fn key_in(&self, tx: &mut WriteTx, owner: &str) -> Result<(KeyId, DataKey), AtRestError> {
        if let Some((id, key)) = tx.memo.get(owner) {
            return Ok((*id, key.clone()));
        }
        self.check_erasures_in(tx).await?;
        if let Some(found) = self.cached_owner_key(owner) {
            tx.memo.insert(owner.to_string(), found.clone());
            return Ok(found);
        }
        let record = match tx.active_data_key(owner).await? {
            Some(r) => r,
            None => {
                let fresh = self.new_key_record(owner).await?;
                tx.insert_data_key(&fresh).await?;
                // Another writer may have won the race: whichever key is active is the one.
                tx.active_data_key(owner)
                    .await?
                    .ok_or(StoreError::Conflict)?
            }
        };
        let id: KeyId = record.key_id.parse().map_err(|_| AtRestError::Corrupt)?;
        let key = self.unwrap_record(&record).await?;
        tx.memo.insert(owner.to_string(), (id, key.clone()));
        Ok((id, key))
    }

    /// Seals bytes for `context` under `owner`'s key, inside a write transaction.
    ///
    /// # Errors
    /// When the key cannot be read, created or unwrapped.
    pub async fn seal_in(
        &self,
        tx: &mut WriteTx,
        owner: &str,
        context: &str,
        plain: &[u8],
    ) -> Result<Vec<u8>, AtRestError> {
        let (id, key) = self.key_in(tx, owner).await?;
        Ok(self.seal_with(&id, &key, context, plain))
    }

    /// The owner's active key outside any write transaction (blobs, export files), created
    /// if the owner has none. Never call it while this task holds a write transaction: see
    /// [`Self::seal_detached`].
    ///
    /// # Errors
    /// When the key cannot be read, created or unwrapped.
    pub async fn owner_key(&self, owner: &str) -> Result<(KeyId, DataKey), AtRestError> {
        self.check_erasures().await?;
        match self.cached_owner_key(owner) {
            Some(found) => Ok(found),
            None => {
                let found = self.owner_key_outside_tx(owner).await?;
                self.remember(KeyMemo::from([(owner.to_string(), found.clone())]));
                Ok(found)
            }
        }
    }

    /// The randomness source (nonces for blob streams).
    pub fn random(&self) -> &dyn Random {
        self.random.as_ref()
    }

    /// Seals bytes under `owner`'s key outside any write transaction (export files). Never
    /// call it while this task holds a write transaction: creating the key writes to the
    /// store, and SQLite has one writer.
    ///
    /// # Errors
    /// When the key cannot be read, created or unwrapped.
    pub async fn seal_detached(
        &self,
        owner: &str,
        context: &str,
        plain: &[u8],
    ) -> Result<Vec<u8>, AtRestError> {
        let (id, key) = self.owner_key(owner).await?;
        Ok(self.seal_with(&id, &key, context, plain))
    }

    /// The owner's active key, read (or created) through the key store's own connection.
    async fn owner_key_outside_tx(&self, owner: &str) -> Result<(KeyId, DataKey), AtRestError> {
        let record = match self.keys.active_key(owner).await? {
            Some(r) => r,
            None => {
                let fresh = self.new_key_record(owner).await?;
                self.keys.insert_active_key(&fresh).await?
            }
        };
        let id: KeyId = record.key_id.parse().map_err(|_| AtRestError::Corrupt)?;
        Ok((id, self.unwrap_record(&record).await?))
    }

    fn seal_with(&self, id: &KeyId, key: &DataKey, context: &str, plain: &[u8]) -> Vec<u8> {
        Envelope::seal(key, id, context.as_bytes(), plain, self.random.as_ref())
    }

    /// Seals text for a text column: `mm1:` and the envelope in base64.
    ///
    /// # Errors
    /// As [`Self::seal_in`].
    pub async fn seal_text_in(
        &self,
        tx: &mut WriteTx,
        owner: &str,
        context: &str,
        plain: &str,
    ) -> Result<String, AtRestError> {
        let sealed = self.seal_in(tx, owner, context, plain.as_bytes()).await?;
        Ok(format!("{TEXT_PREFIX}{}", STANDARD.encode(sealed)))
    }

    /// A data key by id: from the cache, else the store (and the KEK).
    ///
    /// # Errors
    /// [`AtRestError::Erased`] when it was destroyed.
    pub async fn key_by_id(&self, id: KeyId) -> Result<DataKey, AtRestError> {
        self.check_erasures().await?;
        let now = self.clock.now_micros();
        if let Some(k) = self.cache().by_id.get(&id)
            && now - k.loaded <= CACHE_TTL_MICROS
        {
            return Ok(k.key.clone());
        }
        let record = self
            .keys
            .key(&id.to_string())
            .await?
            .ok_or(AtRestError::Corrupt)?;
        if record.state == KeyState::Destroyed {
            return Err(AtRestError::Erased);
        }
        let key = self.unwrap_record(&record).await?;
        let mut c = self.cache();
        if c.by_id.len() >= CACHE_MAX {
            *c = KeyCache::default();
        }
        c.by_id.insert(
            id,
            CachedKey {
                key: key.clone(),
                owner: record.owner.clone(),
                loaded: now,
            },
        );
        Ok(key)
    }

    /// Opens a sealed body.
    ///
    /// # Errors
    /// [`AtRestError::Erased`] when its key was destroyed; [`AtRestError::Corrupt`] when it
    /// does not authenticate for `context`.
    pub async fn open(&self, context: &str, stored: &[u8]) -> Result<Vec<u8>, AtRestError> {
        let Some(id) = Envelope::key_id(stored) else {
            if self.accept_plaintext && stored.first() == Some(&b'{') {
                return Ok(stored.to_vec());
            }
            return Err(AtRestError::Corrupt);
        };
        let key = self.key_by_id(id).await?;
        Envelope::open(&key, context.as_bytes(), stored).map_err(|_| AtRestError::Corrupt)
    }

    /// Opens text sealed by [`Self::seal_text_in`].
    ///
    /// # Errors
    /// As [`Self::open`].
    pub async fn open_text(&self, context: &str, stored: &str) -> Result<String, AtRestError> {
        let Some(b64) = stored.strip_prefix(TEXT_PREFIX) else {
            if self.accept_plaintext && stored.starts_with('{') {
                return Ok(stored.to_string());
            }
            return Err(AtRestError::Corrupt);
        };
        let sealed = STANDARD.decode(b64).map_err(|_| AtRestError::Corrupt)?;
        let plain = self.open(context, &sealed).await?;
        String::from_utf8(plain).map_err(|_| AtRestError::Corrupt)
    }
}

fn secret_failure(e: AtRestError) -> KekError {
    match e {
        AtRestError::Kek(k) => k,
        AtRestError::Erased | AtRestError::Corrupt => KekError::Unauthentic,
        AtRestError::Store(s) => KekError::service(s),
    }
}

#[async_trait::async_trait]
impl SecretSealer for AtRest {
    async fn seal_secret(&self, context: &str, secret: &[u8]) -> Result<Vec<u8>, KekError> {
        self.seal_detached(NODE_SECRETS_OWNER, context, secret)
            .await
            .map_err(secret_failure)
    }

    async fn open_secret(&self, context: &str, stored: &[u8]) -> Result<Option<Vec<u8>>, KekError> {
        if Envelope::key_id(stored).is_none() {
            return Ok(None);
        }
        self.open(context, stored)
            .await
            .map(Some)
            .map_err(secret_failure)
    }
}
