//! The record store port: what the application needs from a database, and nothing of how.
//!
//! Adapters (SQLite, PostgreSQL) live in `medmesh-store-sql`. Bodies are opaque bytes (sealed
//! envelopes when encryption at rest is on); the store never parses them, and search runs on
//! index rows only.

pub mod audit_log;
pub mod blobs;
mod booking;
pub mod data_keys;
pub mod directory;
pub mod export_files;
pub mod hl7;
pub mod identity;
mod notify;
mod subscriptions;

/// The store's role traits, for `use medmesh_store::prelude::*` where a caller uses several.
pub mod prelude {
    pub use crate::{
        BookingTx, DataKeyTx, ExportJobStore, KeyDirectoryStore, KeyDirectoryTx, NotificationStore,
        NotificationTx, RecordStore, RecordTx, ResourceStore, ResourceTx, TrustEdgeStore, TrustTx,
    };
}

pub use audit_log::{
    AuditLogStore, DerivedRow, LeafPage, LeafPages, LogHead, LogKeyRecord, LoggedEntry, MapHead,
    PatientRow, PatientRowPage, PatientRowPages, RowPages, ScannedLeaf, StoredCheckpoint,
    StoredCosignature,
};
pub use blobs::{BlobError, BlobStore, BlobStream, BlobUpload};
pub use booking::{BookingStore, BookingTx, ClaimedTime, TimeClaim, provisional};
pub use data_keys::{
    KekError, KekProvider, KeyState, KeyStore, SecretSealer, StoredBody, WrappedKeyRecord,
};
pub use directory::{SealedKey, UserKey};
pub use export_files::{ExportFiles, ExportFilesError};
pub use hl7::{
    Hl7Filter, Hl7MessageRow, Hl7OutboundRow, Hl7OutboxStore, Hl7SenderRow, Hl7Store, Hl7Tx,
};
pub use notify::{NotificationHubStore, NotificationOutboxRow, NotificationSettingsRow};
pub use subscriptions::{SubscriptionRow, SubscriptionStore};

pub use identity::{
    AuthCodeRecord, ClientRecord, IdentityStore, InviteRecord, KeyRecord, RefreshRecord,
    SessionRecord, UserRecord,
};

use async_trait::async_trait;
use medmesh_audit::AuditEntry;
use medmesh_fhir::index::IndexRow;
use medmesh_fhir::search::{Include, SearchQuery};
use medmesh_policy::access::Edge;

/// A resource version as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVersion {
    /// Resource type.
    pub resource_type: String,
    /// Logical id.
    pub id: String,
    /// Version number, from 1.
    pub version: i64,
    /// When this version was written, microseconds since the epoch.
    pub last_updated: i64,
    /// True for a deletion tombstone.
    pub deleted: bool,
    /// The encoded body (empty for tombstones).
    pub body: Vec<u8>,
}

/// The head of a resource's history, read inside a write transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionHead {
    /// Current version.
    pub version: i64,
    /// Whether the current version is a tombstone.
    pub deleted: bool,
}

/// A version to write, with its index rows.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// Resource type.
    pub resource_type: String,
    /// Logical id.
    pub id: String,
    /// The new version number (head + 1, or 1).
    pub version: i64,
    /// Write time, microseconds.
    pub last_updated: i64,
    /// A tombstone.
    pub deleted: bool,
    /// Encoded body.
    pub body: Vec<u8>,
    /// Search index rows (empty for tombstones).
    pub index: Vec<IndexRow>,
}

/// Which history to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryScope {
    /// One resource.
    Instance(String, String),
    /// One type.
    Type(String),
    /// Everything.
    System,
}

/// A history request.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    /// Whose history.
    pub scope: HistoryScope,
    /// Only versions written at or after this time (micros).
    pub since: Option<i64>,
    /// Only versions current at this time (micros): written at or before it.
    pub at: Option<i64>,
    /// Page size.
    pub count: u32,
    /// Opaque cursor from a previous page.
    pub cursor: Option<String>,
}

/// A page of history, newest first.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// The versions.
    pub versions: Vec<StoredVersion>,
    /// Total versions matching.
    pub total: u64,
    /// Cursor for the next page.
    pub next: Option<String>,
}

/// A page of search matches.
#[derive(Debug, Clone)]
pub struct SearchPage {
    /// Matches, as (type, id), in order.
    pub matches: Vec<(String, String)>,
    /// Total matches, when requested.
    pub total: Option<u64>,
    /// Cursor for the next page.
    pub next: Option<String>,
    /// Cursor for the previous page (`None` on the first).
    pub previous: Option<String>,
}

/// Bulk export job state, persisted so jobs survive a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportJob {
    /// Job id.
    pub id: String,
    /// `queued`, `running`, `complete`, `failed` or `cancelled`.
    pub state: String,
    /// The kick-off request, as JSON (types, since, filters, level, group).
    pub request: String,
    /// The result manifest outputs, as JSON, when complete.
    pub output: Option<String>,
    /// A safe error message, when failed.
    pub error: Option<String>,
    /// Created, micros.
    pub created: i64,
    /// Last change, micros.
    pub updated: i64,
}

/// Errors from a store adapter. Messages are for logs, never for clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer got there first (unique or version conflict).
    #[error("conflicting concurrent write")]
    Conflict,
    /// The database (or the driver, or the disk under it) failed; the driver's error is the
    /// source, for the log.
    #[error("database error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The store cannot do what was asked, or found its own data not as it wrote it; the
    /// text says what, for the log.
    #[error("store: {0}")]
    Invalid(String),
    /// A cursor that this store did not issue.
    #[error("invalid paging cursor")]
    BadCursor,
}

impl StoreError {
    /// A driver or I/O failure, keeping it as the source.
    pub fn backend(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Backend(Box::new(source))
    }
}

/// A paging request for search.
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// Page size.
    pub count: u32,
    /// Cursor from the previous page.
    pub cursor: Option<String>,
    /// Whether to count all matches.
    pub with_total: bool,
    /// Whether to pin a snapshot so later pages ignore newer rows (false only for one-off
    /// lookups that never page).
    pub snapshot: bool,
}

#[async_trait]
/// Resources: reads, history, search, the compartment, write transactions, and the read
/// audit entries that must be durable before a response leaves.
pub trait ResourceStore: Send + Sync + 'static {
    /// Starts a write transaction.
    async fn begin(&self) -> Result<Box<dyn RecordTx>, StoreError>;
    /// The current version of a resource, tombstones included.
    async fn read(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<StoredVersion>, StoreError>;
    /// One version of a resource.
    async fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<StoredVersion>, StoreError>;
    /// Current versions of several resources (missing and deleted ones are left out).
    async fn read_many(&self, keys: &[(String, String)]) -> Result<Vec<StoredVersion>, StoreError>;
    /// History, newest first.
    async fn history(&self, query: &HistoryQuery) -> Result<HistoryPage, StoreError>;
    /// Runs a search.
    async fn search(
        &self,
        query: &SearchQuery,
        page: &PageRequest,
    ) -> Result<SearchPage, StoreError>;
    /// Runs a search and reads its matches' current versions, in the page's order (missing
    /// and deleted ones left out, as [`Self::read_many`]). An adapter that knows its matches
    /// by an internal key reads them by that key instead of by (type, id).
    async fn search_read(
        &self,
        query: &SearchQuery,
        page: &PageRequest,
    ) -> Result<(SearchPage, Vec<StoredVersion>), StoreError> {
        let found = self.search(query, page).await?;
        let versions = self.read_many(&found.matches).await?;
        Ok((found, versions))
    }
    /// Targets of `include` from the given resources.
    async fn include_targets(
        &self,
        from: &[(String, String)],
        include: &Include,
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// Resources that refer to the given ones through `include` (a `_revinclude`).
    async fn revinclude_sources(
        &self,
        to: &[(String, String)],
        include: &Include,
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// Resources in a patient's compartment (and the patient), after `cursor`, in a stable order.
    async fn compartment_page(
        &self,
        patient_id: &str,
        links: &[(String, Vec<String>)],
        since: Option<i64>,
        types: &[String],
        count: u32,
        cursor: Option<&str>,
    ) -> Result<SearchPage, StoreError>;
    /// Appends audit entries for reads, durably, before the response leaves.
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError>;
    /// Checks the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Stored versions (tombstones left out) after row `after_seq`, in row order: what
    /// full re-encryption walks.
    async fn bodies_after(&self, after_seq: i64, limit: u32)
    -> Result<Vec<StoredBody>, StoreError>;
    /// The change feed: versions of `types` (tombstones left out) written after row
    /// `after_seq`, in row order. On PostgreSQL a row can commit after a later one, so a
    /// reader re-reads a recent window rather than trusting the last row it saw.
    async fn versions_after(
        &self,
        after_seq: i64,
        types: &[String],
        limit: u32,
    ) -> Result<Vec<StoredBody>, StoreError>;
}

#[async_trait]
/// The trust network: care-relationship edges, consents and break-glass declarations,
/// which the PDP's reach is compiled from.
pub trait TrustEdgeStore: Send + Sync + 'static {
    /// The trust graph around an actor: every principal reachable from `seeds` through
    /// care-team membership (a recursive query: teams in teams, organizations in teams), and
    /// every edge to one of them that holds at `now`.
    async fn reach(
        &self,
        seeds: &[String],
        now: i64,
    ) -> Result<(Vec<String>, Vec<Edge>), StoreError>;
    /// Every edge to a patient (for the patient's access map).
    async fn patient_edges(&self, patient_id: &str) -> Result<Vec<Edge>, StoreError>;
    /// The active privacy Consents of these patients, as `(patient, stored body)`.
    async fn consents_of(
        &self,
        patient_ids: &[String],
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// Break-glass edges declared since `since` (the review queue).
    async fn break_glass_since(&self, since: i64) -> Result<Vec<Edge>, StoreError>;
    /// Every stored consent row, as `(source, patient, body)`.
    async fn consent_rows(&self) -> Result<Vec<(String, String, String)>, StoreError>;
    /// A number that rises with every committed change to the edges or the stored consents,
    /// whichever node or process made it: what was compiled from them at generation G holds
    /// while the generation is still G.
    async fn policy_generation(&self) -> Result<i64, StoreError>;
    /// A number that rises with every committed change to the stored consents only (edges
    /// leave it be): what sharing tags were worked out from at generation G holds while it
    /// is still G.
    async fn consent_generation(&self) -> Result<i64, StoreError>;
}

#[async_trait]
/// Patients' notification inboxes.
pub trait NotificationStore: Send + Sync + 'static {
    /// A patient's notifications, newest first.
    async fn notifications(&self, patient_id: &str) -> Result<Vec<Notification>, StoreError>;
    /// Marks a patient's notification read (once; later calls keep the first time).
    /// Returns false when the patient has no such notification.
    async fn mark_notification_read(
        &self,
        patient_id: &str,
        id: &str,
        now: i64,
    ) -> Result<bool, StoreError>;
}

#[async_trait]
/// Bulk-export jobs and the pages they read.
pub trait ExportJobStore: Send + Sync + 'static {
    /// Saves an export job.
    async fn put_export_job(&self, job: &ExportJob) -> Result<(), StoreError>;
    /// Reads an export job.
    async fn export_job(&self, id: &str) -> Result<Option<ExportJob>, StoreError>;
    /// Jobs left queued or running (to resume after a restart).
    async fn unfinished_export_jobs(&self) -> Result<Vec<ExportJob>, StoreError>;
    /// All ids of a type with versions changed since `since`, for export, in pages.
    async fn export_page(
        &self,
        resource_type: &str,
        since: Option<i64>,
        after_rid: i64,
        count: u32,
    ) -> Result<(Vec<StoredVersion>, i64), StoreError>;
}

#[async_trait]
/// The key directory (users' public keys) and the wrapped keys of sealed documents.
pub trait KeyDirectoryStore: Send + Sync + 'static {
    /// An owner's keys in the directory, revoked ones included, oldest first.
    async fn user_keys(&self, owner: &str) -> Result<Vec<UserKey>, StoreError>;
    /// A directory key by id.
    async fn user_key(&self, key_id: &str) -> Result<Option<UserKey>, StoreError>;
    /// The wrapped content keys of a sealed document.
    async fn sealed_keys(&self, document_id: &str) -> Result<Vec<SealedKey>, StoreError>;
}

/// Everything the record service needs from a database: one adapter implements every role
/// (the SQL adapter does, for SQLite and PostgreSQL), and any type that does is one.
pub trait RecordStore:
    ResourceStore + TrustEdgeStore + NotificationStore + ExportJobStore + KeyDirectoryStore
{
}

impl<T> RecordStore for T where
    T: ResourceStore + TrustEdgeStore + NotificationStore + ExportJobStore + KeyDirectoryStore
{
}

/// A notification to a patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Id.
    pub id: String,
    /// Recipient patient.
    pub patient_id: String,
    /// Kind (`break-glass`).
    pub kind: String,
    /// Text, free of clinical content.
    pub message: String,
    /// When, microseconds.
    pub created_micros: i64,
    /// When read, if read.
    pub read_micros: Option<i64>,
}

/// What work prepared before a write transaction depends on (see [`ResourceTx::freshness`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// The consent generation (see [`TrustEdgeStore::consent_generation`]).
    pub consent_generation: i64,
    /// The newest `lastUpdated` of any stored version, microseconds (0 when none).
    pub latest_stamp: i64,
}

#[async_trait]
/// Resource writes inside a transaction: heads, conditional locks, versions, index rows,
/// re-encryption rewrites, and the audit entry that commits with them.
pub trait ResourceTx: Send {
    /// The head of a resource, locked for update where the database supports it.
    async fn head(
        &mut self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<VersionHead>, StoreError>;
    /// Reads the heads of many resources at once (locking them like [`RecordTx::head`]), so
    /// later `head` calls for them need no round trip.
    async fn prefetch_heads(&mut self, keys: &[(String, String)]) -> Result<(), StoreError>;
    /// What a transaction prepared outside the write lock depends on, read inside it: the
    /// consent generation and the newest `lastUpdated` stored.
    async fn freshness(&mut self) -> Result<Freshness, StoreError>;
    /// Serializes transactions that use the same conditional criteria (`key`) until commit, so
    /// two concurrent conditional creates cannot both find nothing and both create.
    async fn lock_condition(&mut self, key: &str) -> Result<(), StoreError>;
    /// Ids matching a search, inside the transaction (conditional create, update, delete).
    async fn search_ids(
        &mut self,
        query: &SearchQuery,
        limit: u32,
    ) -> Result<Vec<(String, String)>, StoreError>;
    /// Writes a version: history row, current row and index rows.
    async fn put(&mut self, version: NewVersion) -> Result<(), StoreError>;
    /// Appends an audit entry in this transaction.
    async fn append_audit(&mut self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// Replaces the body of stored row `seq` (re-encryption; the content is unchanged).
    async fn rewrite_body(&mut self, seq: i64, body: Vec<u8>) -> Result<(), StoreError>;
    /// Replaces a resource's index rows if `version` is still its current version (a newer
    /// version wrote its own). Returns whether it did.
    async fn reindex_current(
        &mut self,
        resource_type: &str,
        id: &str,
        version: i64,
        index: Vec<IndexRow>,
    ) -> Result<bool, StoreError>;
}

#[async_trait]
/// Trust-network facts derived from a written resource, in its transaction.
pub trait TrustTx: Send {
    /// Replaces the policy facts derived from `source` (a resource reference): its edges,
    /// and its consent (`(patient, JSON)`) if it is an active privacy Consent.
    async fn replace_policy_facts(
        &mut self,
        source: &str,
        edges: &[Edge],
        consent: Option<(&str, &str)>,
    ) -> Result<(), StoreError>;
    /// Adds the policy facts of a source never written before: there are none to replace,
    /// so nothing is deleted first.
    async fn add_policy_facts(
        &mut self,
        source: &str,
        edges: &[Edge],
        consent: Option<(&str, &str)>,
    ) -> Result<(), StoreError>;
    /// Replaces a stored consent's body (re-encryption).
    async fn rewrite_consent(&mut self, source: &str, body: &str) -> Result<(), StoreError>;
}

#[async_trait]
/// Notifications queued in the transaction that causes them.
pub trait NotificationTx: Send {
    /// Queues a notification in this transaction (an inbox row with an id already stored is
    /// left as it is, so a retried delivery does not write it twice).
    async fn notify(&mut self, notification: &Notification) -> Result<(), StoreError>;
    /// Queues a notification in the hub's outbox in this transaction (a reminder that must
    /// exist exactly when its appointment does); false when one with its channel and key is
    /// queued already.
    async fn queue_notification(&mut self, row: &NotificationOutboxRow)
    -> Result<bool, StoreError>;
    /// Withdraws `account`'s pending notifications whose key starts with `key_prefix`, in
    /// this transaction. Returns how many.
    async fn withdraw_notifications(
        &mut self,
        account: &str,
        key_prefix: &str,
    ) -> Result<u64, StoreError>;
}

#[async_trait]
/// Key-directory and sealed-key writes, in a transaction.
pub trait KeyDirectoryTx: Send {
    /// Publishes a key in the directory (a key already there is left as it is).
    async fn put_user_key(&mut self, key: &UserKey) -> Result<(), StoreError>;
    /// Revokes a directory key of `owner`. Returns false when the owner has no such live key.
    async fn revoke_user_key(
        &mut self,
        owner: &str,
        key_id: &str,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Adds (or replaces) a sealed document's wrapped key for one recipient key.
    async fn put_sealed_key(&mut self, key: &SealedKey) -> Result<(), StoreError>;
    /// Removes a sealed document's wrapped key. Returns whether there was one.
    async fn delete_sealed_key(
        &mut self,
        document_id: &str,
        recipient_key_id: &str,
    ) -> Result<bool, StoreError>;
}

#[async_trait]
/// Data keys created or destroyed in the transaction whose data they seal.
pub trait DataKeyTx: Send {
    /// The owner's active data key, as this transaction sees it.
    async fn active_data_key(
        &mut self,
        owner: &str,
    ) -> Result<Option<WrappedKeyRecord>, StoreError>;
    /// Inserts an active data key unless the owner already has one (then it does nothing:
    /// read the winner with [`RecordTx::active_data_key`]).
    async fn insert_data_key(&mut self, key: &WrappedKeyRecord) -> Result<(), StoreError>;
    /// Destroys every data key of an owner (erasure), in this transaction.
    async fn destroy_data_keys(&mut self, owner: &str, now: i64) -> Result<u64, StoreError>;
    /// A key job's cursor and state, as this transaction sees it (as
    /// `KeyStore::job_cursor`, without a second connection while this one is held).
    async fn key_job_cursor(&mut self, job: &str) -> Result<Option<(i64, String)>, StoreError>;
}

#[async_trait]
/// A write transaction over every role. Dropping it without commit rolls back.
pub trait RecordTx:
    ResourceTx + TrustTx + NotificationTx + KeyDirectoryTx + DataKeyTx + BookingTx + Hl7Tx
{
    /// Commits.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
    /// Rolls back at once, releasing its locks (dropping it rolls back too, but only when
    /// its connection is next used).
    async fn rollback(self: Box<Self>) -> Result<(), StoreError>;
}
