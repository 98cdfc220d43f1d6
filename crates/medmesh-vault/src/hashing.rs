//! A document's digest computed beside its sealing or opening: the two are the vault's work
//! per byte, and on one task they take turns. The hashing runs a batch at a time on the
//! blocking pool, one batch in flight, so a stream holds no thread while it waits on its peer
//! and a small document never leaves the task.

use bytes::Bytes;
use medmesh_crypto::{ContentHasher, ContentId};
use medmesh_records::RecordError;
use tokio::task::JoinHandle;

/// Bytes gathered before they are hashed on the blocking pool: large enough that handing a
/// batch over costs little beside hashing it (~0.5 ms with SHA-NI).
const HASH_BATCH: usize = 1024 * 1024;

/// A content hasher whose batches are hashed off the caller's task, one at a time and in
/// order.
pub(crate) struct PipelinedHasher {
    /// The hasher, when no batch is being hashed.
    idle: Option<ContentHasher>,
    /// The batch being hashed; it hands the hasher back.
    in_flight: Option<JoinHandle<ContentHasher>>,
    batch: Vec<Bytes>,
    batch_bytes: usize,
    len: u64,
}

impl Default for PipelinedHasher {
    fn default() -> Self {
        Self {
            idle: Some(ContentHasher::default()),
            in_flight: None,
            batch: Vec::new(),
            batch_bytes: 0,
            len: 0,
        }
    }
}

impl PipelinedHasher {
    /// Adds bytes; waits only when the batch before the last is still being hashed.
    pub(crate) async fn update(&mut self, piece: Bytes) -> Result<(), RecordError> {
        self.len += piece.len() as u64;
        self.batch_bytes += piece.len();
        self.batch.push(piece);
        if self.batch_bytes >= HASH_BATCH {
            let mut hasher = self.take_hasher().await?;
            let batch = std::mem::take(&mut self.batch);
            self.batch_bytes = 0;
            self.in_flight = Some(tokio::task::spawn_blocking(move || {
                for piece in &batch {
                    hasher.update(piece);
                }
                hasher
            }));
        }
        Ok(())
    }

    /// Bytes seen so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Whether no byte has been seen.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The content id of everything seen.
    pub(crate) async fn finish(mut self) -> Result<ContentId, RecordError> {
        let mut hasher = self.take_hasher().await?;
        for piece in &self.batch {
            hasher.update(piece);
        }
        Ok(hasher.finish())
    }

    async fn take_hasher(&mut self) -> Result<ContentHasher, RecordError> {
        if let Some(hashing) = self.in_flight.take() {
            // A hashing task only fails if it panicked, which it has no way to do.
            return hashing.await.map_err(|_| RecordError::Corrupt);
        }
        self.idle.take().ok_or(RecordError::Corrupt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_digest_is_the_same_however_the_bytes_are_cut() {
        let bytes: Vec<u8> = (0..5 * HASH_BATCH + 123)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut whole = ContentHasher::default();
        whole.update(&bytes);
        let expected = whole.finish();
        for cut in [1, 1000, 65_536, HASH_BATCH - 1, HASH_BATCH, 3 * HASH_BATCH] {
            let mut hasher = PipelinedHasher::default();
            for piece in bytes.chunks(cut) {
                hasher.update(Bytes::copy_from_slice(piece)).await.unwrap();
            }
            assert_eq!(hasher.len(), bytes.len() as u64);
            assert_eq!(hasher.finish().await.unwrap(), expected, "pieces of {cut}");
        }
        let empty = PipelinedHasher::default();
        assert!(empty.is_empty());
        assert_eq!(
            empty.finish().await.unwrap(),
            ContentHasher::default().finish()
        );
    }
}
