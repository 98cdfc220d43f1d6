//! Group commit for read audit entries.
//!
//! A read's audit entry must be durable before the response leaves. Writing one transaction
//! per read would serialize reads behind one commit each; instead every reader hands its entry
//! to one writer task, which commits whatever has queued up in a single transaction and then
//! acknowledges each reader. A failed commit fails every read in the batch (fail closed).

use std::sync::Arc;

use medmesh_audit::AuditEntry;
use medmesh_store::{RecordStore, StoreError};
use tokio::sync::{mpsc, oneshot};

type Ack = oneshot::Sender<Result<(), String>>;

/// The most entries committed together.
const MAX_BATCH: usize = 512;

/// How many times the writer lets the runtime's other ready tasks run before it commits, so
/// that the reads in flight hand in their entries and share the commit. Each commit makes
/// every pooled SQLite reader drop its page cache: once commits became fast (the inline
/// SQLite writer), batches shrank, commits multiplied and audited reads slowed by a fifth
/// (bench/README.md, "The inline SQLite writer"). Idle, the yields return at once.
const GATHER_YIELDS: usize = 4;

/// Hands audit entries to the group-commit writer.
#[derive(Debug, Clone)]
pub struct AuditWriter {
    queue: mpsc::Sender<(Vec<AuditEntry>, Ack)>,
}

impl AuditWriter {
    /// Starts the writer task on the current tokio runtime.
    pub fn start(store: Arc<dyn RecordStore>) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Vec<AuditEntry>, Ack)>(4096);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                let mut count = batch[0].0.len();
                for round in 0..=GATHER_YIELDS {
                    while count < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(next) => {
                                count += next.0.len();
                                batch.push(next);
                            }
                            Err(_) => break,
                        }
                    }
                    if count >= MAX_BATCH || round == GATHER_YIELDS {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                let entries: Vec<AuditEntry> =
                    batch.iter().flat_map(|(e, _)| e.iter().cloned()).collect();
                let result = store
                    .append_audit(&entries)
                    .await
                    .map_err(|e| e.to_string());
                for (_, ack) in batch {
                    let _ = ack.send(result.clone());
                }
            }
        });
        Self { queue: tx }
    }

    /// Appends entries and waits until they are committed.
    ///
    /// # Errors
    /// When the commit failed or the writer is gone; the caller must not answer the read.
    pub async fn append(&self, entries: Vec<AuditEntry>) -> Result<(), StoreError> {
        let (ack, done) = oneshot::channel();
        self.queue
            .send((entries, ack))
            .await
            .map_err(|_| StoreError::Invalid("audit writer stopped".into()))?;
        done.await
            .map_err(|_| StoreError::Invalid("audit writer stopped".into()))?
            .map_err(|msg| StoreError::Backend(msg.into()))
    }
}
