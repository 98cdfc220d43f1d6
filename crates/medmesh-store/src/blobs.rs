//! The blob store port: where document bytes live (a local folder, or an S3-compatible
//! bucket). Blobs arrive here already sealed; the store sees only ciphertext and opaque names.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// Why a blob operation failed. The text names no blob content.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No blob has that name.
    #[error("no such blob")]
    NotFound,
    /// The store failed (network, disk, permissions); its error is the source, for the log.
    #[error("blob store: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A blob's bytes do not hash to the content id they are stored under.
    #[error("a blob's bytes do not match its content id")]
    DigestMismatch,
}

impl BlobError {
    /// A backend failure, keeping its cause as the source.
    pub fn backend(source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self::Backend(source.into())
    }
}

/// A blob's bytes as they arrive from the store.
pub type BlobStream = BoxStream<'static, Result<Bytes, BlobError>>;

/// An upload in progress. Dropping it without [`BlobUpload::finish`] leaves nothing visible
/// under its name (the parts are aborted or left for the store's clean-up).
#[async_trait]
pub trait BlobUpload: Send {
    /// Appends bytes.
    async fn write(&mut self, bytes: Bytes) -> Result<(), BlobError>;
    /// Completes the upload; the blob appears under its name at once and whole.
    async fn finish(self: Box<Self>) -> Result<(), BlobError>;
    /// Abandons the upload.
    async fn abort(self: Box<Self>);
}

/// Where sealed document bytes are kept.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Starts writing a blob named `name` (a `/`-separated path).
    async fn upload(&self, name: &str) -> Result<Box<dyn BlobUpload>, BlobError>;
    /// Streams a blob.
    async fn read(&self, name: &str) -> Result<BlobStream, BlobError>;
    /// Whether a blob exists.
    async fn exists(&self, name: &str) -> Result<bool, BlobError>;
    /// Moves a blob to a new name, replacing whatever was there.
    async fn rename(&self, from: &str, to: &str) -> Result<(), BlobError>;
    /// Deletes a blob; deleting a missing blob is not an error.
    async fn delete(&self, name: &str) -> Result<(), BlobError>;
    /// Names of blobs under a prefix (`a/b/`), in no particular order.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError>;
}
