//! The record core: what a capability crate built on the record service may call.
//!
//! The document vault, the trust network, bulk export, key administration and the audit-log
//! service each live in a crate of their own (see `docs/architecture.md`). They reach the
//! PDP, the audit log and encryption at rest through this one narrow door, so those apply to
//! them exactly as they apply to a FHIR interaction:
//!
//! - [`RecordCore::authorize`] asks the PDP and audits a refusal; its [`Grant`] is the only
//!   way to [`RecordCore::admits`] a resource;
//! - [`RecordCore::begin_write`] opens the transaction that seals bodies and carries the
//!   audit entry with the data;
//! - [`RecordCore::entry`] builds an audit entry for the request.
//!
//! Inbound adapters (the HTTP server, the CLI) never use it: they call application methods
//! that take a `RequestContext` or a PDP permit. `crates/medmesh/tests/architecture.rs`
//! fails if one does.

use std::sync::Arc;

use medmesh_at_rest::{AtRest, WriteTx};
use medmesh_audit::{AuditEntry, Outcome};
use medmesh_fhir::Definitions;
use medmesh_fhir::search::SearchQuery;
use medmesh_kernel::{IdSource, RequestContext};
use medmesh_policy::{Action, Grant};
use medmesh_store::{StoredVersion, VersionHead};
use serde_json::Value;

use crate::{ReadOutcome, RecordError, RecordService, WriteOutcome};

/// The narrow door a capability crate uses into the record service. Made by
/// [`RecordService::core`].
#[derive(Debug, Clone, Copy)]
pub struct RecordCore<'a> {
    records: &'a RecordService,
}

impl RecordService {
    /// The record core, for capability crates built on this service (see
    /// [`crate::record_core`]). Adapters must not call it.
    pub fn core(&self) -> RecordCore<'_> {
        RecordCore { records: self }
    }
}

impl<'a> RecordCore<'a> {
    /// Asks the PDP for `action` on `rt`; a denial is audited and becomes
    /// [`RecordError::Forbidden`].
    ///
    /// # Errors
    /// [`RecordError::Forbidden`]; store failures while reading the trust facts.
    pub async fn authorize(
        &self,
        ctx: &RequestContext,
        action: Action,
        rt: Option<&str>,
    ) -> Result<Grant, RecordError> {
        self.records.authorize(ctx, action, rt).await
    }

    /// Whether `grant` admits this resource: its compartment, labels and sharing rules.
    pub fn admits(&self, grant: &Grant, rt: &str, resource: &Value) -> bool {
        self.records.admits(grant, rt, resource)
    }

    /// An audit entry for this request; ids are normalised to `Type/id`.
    pub fn entry(
        &self,
        ctx: &RequestContext,
        action: &str,
        rt: Option<&str>,
        ids: Vec<String>,
        outcome: Outcome,
    ) -> AuditEntry {
        self.records.entry(ctx, action, rt, ids, outcome)
    }

    /// Adds the grant's basis and purpose (consent, break-glass...) to an entry.
    pub fn annotate(&self, entry: &mut AuditEntry, grant: &Grant) {
        self.records.annotate(entry, grant);
    }

    /// Appends entries that go with no data write (reads, refusals), through the
    /// group-commit writer; durable when this returns.
    ///
    /// # Errors
    /// When the entries could not be committed.
    pub async fn append_audit(&self, entries: Vec<AuditEntry>) -> Result<(), RecordError> {
        self.records.append_audit(entries).await
    }

    /// Starts a write transaction: bodies written through it are sealed, and an audit entry
    /// appended through it commits with the data.
    ///
    /// # Errors
    /// When the store cannot begin one.
    pub async fn begin_write(&self) -> Result<WriteTx, RecordError> {
        self.records.begin_write().await
    }

    /// Writes one version of a resource inside `tx`, as `grant` allows: the grant's reach is
    /// checked, labels and sharing rules are applied, the body is sealed and indexed. The
    /// caller appends the audit entry to `tx` and commits.
    ///
    /// # Errors
    /// [`RecordError::Forbidden`] outside the grant's reach; store failures.
    #[allow(clippy::too_many_arguments)] // one write's facts, as the service's own callers pass them
    pub async fn write_version(
        &self,
        ctx: &RequestContext,
        tx: &mut WriteTx,
        grant: &Grant,
        rt: &str,
        id: &str,
        body: Value,
        head: Option<VersionHead>,
    ) -> Result<WriteOutcome, RecordError> {
        // The capability's own checks have run: its rule on the FHIR API is not for it.
        self.records
            .write_version_unruled(ctx, tx, grant, rt, id, body, head, None)
            .await
    }

    /// Deletes the current version `head` of a resource inside `tx`, as `grant` allows. The
    /// caller appends the audit entry to `tx` and commits.
    ///
    /// # Errors
    /// [`RecordError::Forbidden`] outside the grant's reach; store failures.
    pub async fn tombstone(
        &self,
        tx: &mut WriteTx,
        grant: &Grant,
        rt: &str,
        id: &str,
        head: VersionHead,
    ) -> Result<WriteOutcome, RecordError> {
        self.records.tombstone(tx, grant, rt, id, head).await
    }

    /// Audits a read of `found` under `grant` and answers it: what the grant does not admit
    /// answers as absent. The entry is durable before this returns.
    ///
    /// # Errors
    /// [`RecordError::NotFound`], [`RecordError::Gone`]; when the entry cannot be written.
    pub async fn audited_read(
        &self,
        ctx: &RequestContext,
        grant: &Grant,
        action: &str,
        rt: &str,
        id: &str,
        found: Option<StoredVersion>,
    ) -> Result<ReadOutcome, RecordError> {
        self.records
            .audited_read(ctx, grant, action, rt, id, found)
            .await
    }

    /// Opens a stored version's body.
    ///
    /// # Errors
    /// [`RecordError::Erased`], [`RecordError::Corrupt`].
    pub async fn decode(&self, v: &StoredVersion) -> Result<Value, RecordError> {
        self.records.decode(v).await
    }

    /// Checks a resource against the definitions before it is written.
    ///
    /// # Errors
    /// [`RecordError::Invalid`].
    pub fn check_resource(&self, rt: &str, resource: &Value) -> Result<(), RecordError> {
        self.records.check_resource(rt, resource)
    }

    /// Checks that `rt` is a resource type.
    ///
    /// # Errors
    /// [`RecordError::UnknownType`].
    pub fn check_type(&self, rt: &str) -> Result<(), RecordError> {
        self.records.check_type(rt)
    }

    /// Blinds a query's identifying values when encryption at rest is on.
    ///
    /// # Errors
    /// When a value cannot be blinded.
    pub fn blind(&self, q: &mut SearchQuery) -> Result<(), RecordError> {
        self.records.blind(q)
    }

    /// Seals text stored outside a resource body under `owner`'s key (in clear when
    /// encryption at rest is off).
    ///
    /// # Errors
    /// When the key ring fails.
    pub async fn seal_text(
        &self,
        tx: &mut WriteTx,
        owner: &str,
        context: &str,
        text: String,
    ) -> Result<String, RecordError> {
        self.records.seal_text(tx, owner, context, text).await
    }

    /// Seals bytes kept outside the record (a stored message, a queued notification) under
    /// `owner`'s key, outside any write transaction; in clear when encryption at rest is
    /// off.
    ///
    /// # Errors
    /// When the key ring fails.
    pub async fn seal_detached(
        &self,
        owner: &str,
        context: &str,
        plain: &[u8],
    ) -> Result<Vec<u8>, RecordError> {
        match self.at_rest() {
            Some(a) => Ok(a.seal_detached(owner, context, plain).await?),
            None => Ok(plain.to_vec()),
        }
    }

    /// Opens bytes sealed by [`Self::seal_detached`].
    ///
    /// # Errors
    /// [`RecordError::Erased`], [`RecordError::Corrupt`], or as the key ring fails.
    pub async fn open_detached(
        &self,
        context: &str,
        stored: &[u8],
    ) -> Result<Vec<u8>, RecordError> {
        match self.at_rest() {
            Some(a) => Ok(a.open(context, stored).await?),
            None => Ok(stored.to_vec()),
        }
    }

    /// Opens text sealed by [`Self::seal_text`].
    ///
    /// # Errors
    /// [`RecordError::Erased`], [`RecordError::Corrupt`].
    pub async fn open_text(&self, context: &str, text: String) -> Result<String, RecordError> {
        self.records.open_text(context, text).await
    }

    /// The patients whose compartments a resource is in.
    pub fn compartment_owners(&self, rt: &str, resource: &Value) -> Vec<String> {
        self.records.compartment_owners(rt, resource)
    }

    /// The owner of the key that seals this resource.
    pub fn key_owner(&self, rt: &str, resource: &Value) -> String {
        self.records.key_owner(rt, resource)
    }

    /// The key ring, when encryption at rest is on.
    pub fn at_rest(&self) -> Option<&'a Arc<AtRest>> {
        self.records.at_rest.as_ref()
    }

    /// The definitions in use.
    pub fn definitions(&self) -> &'static Definitions {
        self.records.defs
    }

    /// The injected clock's time, microseconds.
    pub fn now(&self) -> i64 {
        self.records.now()
    }

    /// The injected id source.
    pub fn ids(&self) -> &'a dyn IdSource {
        self.records.ids.as_ref()
    }
}
