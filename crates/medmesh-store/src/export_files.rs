//! The export-files port: where bulk-export output goes (a folder by default, object storage
//! at scale). The files hold sealed NDJSON; the port never sees plaintext.

use async_trait::async_trait;

/// Why an export file could not be written, read or removed. For the log; a client sees an
/// internal error.
#[derive(Debug, thiserror::Error)]
pub enum ExportFilesError {
    /// The job id is not one the node makes (only letters, digits and `-`).
    #[error("invalid export job id")]
    InvalidJob,
    /// The file system or object store failed.
    #[error("export files: {0}")]
    Io(#[from] std::io::Error),
}

/// Where export files go.
#[async_trait]
pub trait ExportFiles: Send + Sync + 'static {
    /// Appends bytes to a job's file.
    async fn append(&self, job: &str, name: &str, bytes: &[u8]) -> Result<(), ExportFilesError>;
    /// Reads a job's file; `None` when there is no such file.
    async fn read(&self, job: &str, name: &str) -> Result<Option<Vec<u8>>, ExportFilesError>;
    /// Removes all of a job's files (nothing to remove is fine).
    async fn remove_job(&self, job: &str) -> Result<(), ExportFilesError>;
}
