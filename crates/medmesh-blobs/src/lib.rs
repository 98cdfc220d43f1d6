//! The blob store adapter: [`medmesh_store::BlobStore`] over the `object_store` crate, on a
//! local folder (the default) or an S3-compatible bucket (AWS S3, MinIO, Ceph, moto).
//!
//! Uploads stream through `object_store`'s buffered multipart writer with two parts in
//! flight: 5 MiB parts on S3 (its minimum part size), so an upload of any size holds about
//! 15 MiB, and 1 MiB parts in a local folder, which has no minimum.
//!
//! Bulk-export output goes to a local folder through [`LocalExportFiles`], the
//! [`medmesh_store::ExportFiles`] adapter.

pub mod export_files;

pub use export_files::LocalExportFiles;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use medmesh_store::{BlobError, BlobStore, BlobStream, BlobUpload};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

/// S3 part size, and the writer's buffer: S3 refuses smaller parts but the last.
const S3_PART_BYTES: usize = 5 * 1024 * 1024;
/// Part size in a local folder.
const LOCAL_PART_BYTES: usize = 1024 * 1024;
/// Parts uploaded at once.
const PARTS_IN_FLIGHT: usize = 2;

/// Where an S3-compatible bucket is and how to sign in to it.
#[derive(Clone, Default)]
pub struct S3Settings {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint URL for a non-AWS service (`http://127.0.0.1:9000`); `None` for AWS.
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish()
    }
}

/// Blobs in an `object_store` backend.
#[derive(Debug, Clone)]
pub struct ObjectBlobStore {
    store: Arc<dyn ObjectStore>,
    kind: &'static str,
    part_bytes: usize,
}

fn backend(e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        // The message names the store and the path (opaque digests), never content.
        other => BlobError::backend(other),
    }
}

fn path(name: &str) -> Result<Path, BlobError> {
    Path::parse(name).map_err(|_| BlobError::backend("invalid blob name"))
}

impl ObjectBlobStore {
    /// Blobs in a local folder, created if missing.
    ///
    /// # Errors
    /// When the folder cannot be created or opened.
    pub fn local(dir: &std::path::Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(dir).map_err(BlobError::backend)?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(backend)?
            .with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(store),
            kind: "local",
            part_bytes: LOCAL_PART_BYTES,
        })
    }

    /// Blobs in an S3-compatible bucket.
    ///
    /// # Errors
    /// When the settings are incomplete.
    pub fn s3(settings: &S3Settings) -> Result<Self, BlobError> {
        // The S3 client's TLS runs on the process's one rustls provider, ring (see
        // Cargo.toml). Installing it twice is harmless: the second call is refused.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_access_key_id(&settings.access_key_id)
            .with_secret_access_key(&settings.secret_access_key);
        if let Some(endpoint) = &settings.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        Ok(Self {
            store: Arc::new(b.build().map_err(backend)?),
            kind: "s3",
            part_bytes: S3_PART_BYTES,
        })
    }

    /// `local` or `s3`, for status output.
    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

/// Bytes read from a local blob file at once.
const READ_BYTES: usize = 1024 * 1024;

/// A piece being read from a local blob file on the blocking pool.
type PendingRead = tokio::task::JoinHandle<std::io::Result<(Vec<u8>, std::fs::File)>>;

/// Starts reading the next [`READ_BYTES`] of `file` on the blocking pool.
fn read_next(mut file: std::fs::File) -> PendingRead {
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        // Read into spare capacity: a zeroed buffer cost a pass over every byte before the
        // read overwrote it.
        let mut buf = Vec::with_capacity(READ_BYTES);
        (&mut file).take(READ_BYTES as u64).read_to_end(&mut buf)?;
        Ok((buf, file))
    })
}

/// A local file as a blob stream, read on the blocking pool in [`READ_BYTES`] pieces, one
/// piece ahead: the next read starts as a piece is handed on, so the disk works while the
/// caller opens and hashes (a download once waited for each read in turn). No thread is
/// held while the caller waits. An error ends the stream.
fn file_stream(file: std::fs::File) -> BlobStream {
    futures::stream::unfold(Some(read_next(file)), |pending| async move {
        match pending?.await {
            Ok(Ok((buf, _))) if buf.is_empty() => None,
            Ok(Ok((buf, file))) => Some((Ok(Bytes::from(buf)), Some(read_next(file)))),
            Ok(Err(e)) => Some((Err(BlobError::backend(e)), None)),
            Err(e) => Some((Err(BlobError::backend(e)), None)),
        }
    })
    .boxed()
}

struct Upload {
    writer: BufWriter,
}

#[async_trait]
impl BlobUpload for Upload {
    async fn write(&mut self, bytes: Bytes) -> Result<(), BlobError> {
        self.writer.put(bytes).await.map_err(backend)
    }
    async fn finish(mut self: Box<Self>) -> Result<(), BlobError> {
        self.writer.shutdown().await.map_err(BlobError::backend)
    }
    async fn abort(mut self: Box<Self>) {
        // An abandoned multipart upload that cannot be aborted is left to the bucket's
        // lifecycle rule; nothing is visible under the blob's name either way.
        if let Err(e) = self.writer.abort().await {
            tracing::warn!(error = %e, "an abandoned blob upload could not be aborted");
        }
    }
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    async fn upload(&self, name: &str) -> Result<Box<dyn BlobUpload>, BlobError> {
        let writer = BufWriter::with_capacity(self.store.clone(), path(name)?, self.part_bytes)
            .with_max_concurrency(PARTS_IN_FLIGHT);
        Ok(Box::new(Upload { writer }))
    }

    async fn read(&self, name: &str) -> Result<BlobStream, BlobError> {
        let got = self.store.get(&path(name)?).await.map_err(backend)?;
        match got.payload {
            // object_store streams a local file in 8 KiB reads, one blocking task each; a
            // download then spends its time scheduling. Read 1 MiB at a time instead.
            GetResultPayload::File(file, _) => Ok(file_stream(file)),
            GetResultPayload::Stream(s) => Ok(s.map_err(backend).boxed()),
        }
    }

    async fn exists(&self, name: &str) -> Result<bool, BlobError> {
        match self.store.head(&path(name)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(backend(e)),
        }
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), BlobError> {
        self.store
            .rename(&path(from)?, &path(to)?)
            .await
            .map_err(backend)
    }

    async fn delete(&self, name: &str) -> Result<(), BlobError> {
        match self.store.delete(&path(name)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, BlobError> {
        let prefix = path(prefix.trim_end_matches('/'))?;
        self.store
            .list(Some(&prefix))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_streams_renames_lists_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = ObjectBlobStore::local(dir.path()).unwrap();
        let mut up = store.upload("staging/a").await.unwrap();
        // More than one part, to take the multipart path.
        let part = Bytes::from(vec![1u8; 3 * 1024 * 1024]);
        for _ in 0..4 {
            up.write(part.clone()).await.unwrap();
        }
        up.finish().await.unwrap();
        assert!(store.exists("staging/a").await.unwrap());
        store.rename("staging/a", "blobs/x/y").await.unwrap();
        assert!(!store.exists("staging/a").await.unwrap());
        let mut total = 0;
        let mut s = store.read("blobs/x/y").await.unwrap();
        while let Some(b) = s.next().await {
            total += b.unwrap().len();
        }
        assert_eq!(total, 12 * 1024 * 1024);
        assert_eq!(store.list("blobs/x/").await.unwrap(), vec!["blobs/x/y"]);
        store.delete("blobs/x/y").await.unwrap();
        store.delete("blobs/x/y").await.unwrap();
        assert!(matches!(
            store.read("blobs/x/y").await,
            Err(BlobError::NotFound)
        ));
        // An aborted upload leaves nothing under its name.
        let mut up = store.upload("staging/b").await.unwrap();
        up.write(part.clone()).await.unwrap();
        up.write(part).await.unwrap();
        up.abort().await;
        assert!(!store.exists("staging/b").await.unwrap());
    }
}
