//! Export files in a local folder (`<data-dir>/exports/<job>/<Type>.ndjson`).

use std::path::PathBuf;

use async_trait::async_trait;
use medmesh_store::{ExportFiles, ExportFilesError};
use tokio::io::AsyncWriteExt;

/// A local folder for export output.
#[derive(Debug, Clone)]
pub struct LocalExportFiles {
    root: PathBuf,
}

impl LocalExportFiles {
    /// Files under `root`.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }
    fn job_dir(&self, job: &str) -> Result<PathBuf, ExportFilesError> {
        if job.is_empty() || !job.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(ExportFilesError::InvalidJob);
        }
        Ok(self.root.join(job))
    }
}

#[async_trait]
impl ExportFiles for LocalExportFiles {
    async fn append(&self, job: &str, name: &str, bytes: &[u8]) -> Result<(), ExportFilesError> {
        let dir = self.job_dir(job)?;
        tokio::fs::create_dir_all(&dir).await?;
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .await?;
        f.write_all(bytes).await?;
        Ok(f.flush().await?)
    }
    async fn read(&self, job: &str, name: &str) -> Result<Option<Vec<u8>>, ExportFilesError> {
        match tokio::fs::read(self.job_dir(job)?.join(name)).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
    async fn remove_job(&self, job: &str) -> Result<(), ExportFilesError> {
        match tokio::fs::remove_dir_all(self.job_dir(job)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
