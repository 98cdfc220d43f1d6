//! The document vault: documents streamed in and out of the blob store, sealed under the
//! patient's key, signed by their uploaders; the key directory users publish their keys in;
//! and the wrapped keys of end-to-end sealed documents.
//!
//! Built on the record service: every document is a `Binary` and a `DocumentReference`
//! written through the record core, so the PDP judges it, the audit entry commits with it,
//! and its metadata is sealed like any other resource.

pub mod directory;
mod hashing;
pub mod sniff;
pub mod vault;

use std::sync::Arc;

use medmesh_records::RecordService;
use medmesh_store::{BlobStore, KeyDirectoryStore, RecordStore, ResourceStore};

pub use directory::{KEY_KINDS, NewKey, key_id};
pub use vault::{Download, LinkGrant, NewDocument, SignedClaims, StoredDocument};

/// The document vault and key directory, over the record service and a blob store.
pub struct DocumentVault {
    records: Arc<RecordService>,
    resources: Arc<dyn ResourceStore>,
    directory: Arc<dyn KeyDirectoryStore>,
    blobs: Arc<dyn BlobStore>,
    max_document_bytes: u64,
    hub: Option<Arc<medmesh_notifications::NotificationHub>>,
}

impl std::fmt::Debug for DocumentVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentVault")
            .field("max_document_bytes", &self.max_document_bytes)
            .finish_non_exhaustive()
    }
}

impl DocumentVault {
    /// The vault over `records`, reading documents' resources and the key directory from
    /// `store` and their bytes from `blobs`; uploads past `max_document_bytes` are refused.
    pub fn new(
        records: Arc<RecordService>,
        store: Arc<dyn RecordStore>,
        blobs: Arc<dyn BlobStore>,
        max_document_bytes: u64,
    ) -> Self {
        Self {
            records,
            resources: store.clone(),
            directory: store,
            blobs,
            max_document_bytes,
            hub: None,
        }
    }

    /// Tells patients their documents were opened on the other channels they chose too
    /// (e-mail), through `hub`; the inbox row is written with the audit entry either way.
    pub fn with_hub(mut self, hub: Arc<medmesh_notifications::NotificationHub>) -> Self {
        self.hub = Some(hub);
        self
    }
}
