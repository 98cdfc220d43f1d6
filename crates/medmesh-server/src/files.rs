//! Export files in a local folder (`<data-dir>/exports/<job>/<Type>.ndjson`).

use std::path::PathBuf;

use async_trait::async_trait;
use medmesh_records::export::ExportFiles;
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
    fn job_dir(&self, job: &str) -> Result<PathBuf, String> {
        if job.is_empty() || !job.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("invalid job id".into());
        }
        Ok(self.root.join(job))
    }
}

#[async_trait]
impl ExportFiles for LocalExportFiles {
    async fn append(&self, job: &str, name: &str, bytes: &[u8]) -> Result<(), String> {
        let dir = self.job_dir(job)?;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| e.to_string())?;
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .await
            .map_err(|e| e.to_string())?;
        f.write_all(bytes).await.map_err(|e| e.to_string())?;
        f.flush().await.map_err(|e| e.to_string())
    }
    async fn read(&self, job: &str, name: &str) -> Result<Option<Vec<u8>>, String> {
        match tokio::fs::read(self.job_dir(job)?.join(name)).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
    async fn remove_job(&self, job: &str) -> Result<(), String> {
        match tokio::fs::remove_dir_all(self.job_dir(job)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}
