//! A transparency-log witness over HTTP, speaking the C2SP `tlog-witness` protocol: a log
//! (a medmesh node, or any C2SP log whose key the witness trusts) POSTs each new checkpoint
//! to `/add-checkpoint` with a consistency proof from the size the witness cosigned last,
//! and gets back a `tlog-cosignature/v1` line when its tree extends that one.
//!
//! The decision is `medmesh_audit::witness::decide`; this crate is its adapter: the state
//! file (per origin, the newest tree cosigned), kept before the answer leaves and updated
//! under one lock with the check, so two racing requests cannot roll the witness back, and
//! the HTTP endpoint, bounded in body size, time and concurrent requests.
//!
//! `medmesh audit witness-server` runs it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use medmesh_audit::checkpoint::{Cosigner, LogVerifierKey};
use medmesh_audit::merkle::Hash;
use medmesh_audit::witness::{AddCheckpoint, MAX_REQUEST_BYTES, WitnessRefusal, decide, origin_of};
use medmesh_kernel::Clock;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// How long a request may take to arrive.
const REQUEST_TIME: Duration = Duration::from_secs(10);
/// Requests served at once; more wait.
const CONCURRENT_REQUESTS: usize = 64;

/// A failure of the witness itself (not a refusal of the request).
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The state file cannot be read or written.
    #[error("{what}: {source}")]
    State {
        /// Which file, and what was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What the witness keeps of one log: the newest tree it cosigned.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeptLog {
    size: u64,
    root: String,
}

/// The state file.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Kept {
    logs: BTreeMap<String, KeptLog>,
}

/// A witness: its key, the logs it trusts, and what it cosigned.
pub struct Witness {
    cosigner: Cosigner,
    trusted: HashMap<String, Vec<LogVerifierKey>>,
    state: PathBuf,
    kept: Mutex<Kept>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("key", &self.cosigner.verifier_key())
            .field("logs", &self.trusted.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What went wrong with one request.
#[derive(Debug)]
pub enum AddError {
    /// Refused by the protocol.
    Refused(WitnessRefusal),
    /// The witness could not keep its state: nothing was cosigned.
    Failed(WitnessError),
}

impl Witness {
    /// A witness named `cosigner`, trusting `logs` (each under its key name, which is the
    /// log's origin), keeping its state in the file `state` (read now if it exists).
    ///
    /// # Errors
    /// An unreadable state file.
    pub fn open(
        cosigner: Cosigner,
        logs: Vec<LogVerifierKey>,
        state: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, WitnessError> {
        let kept = match std::fs::read(state) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| WitnessError::State {
                what: format!("{} is not a witness state file", state.display()),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Kept::default(),
            Err(source) => {
                return Err(WitnessError::State {
                    what: format!("cannot read {}", state.display()),
                    source,
                });
            }
        };
        let mut trusted: HashMap<String, Vec<LogVerifierKey>> = HashMap::new();
        for key in logs {
            trusted.entry(key.name().to_string()).or_default().push(key);
        }
        Ok(Self {
            cosigner,
            trusted,
            state: state.to_path_buf(),
            kept: Mutex::new(kept),
            clock,
        })
    }

    /// The witness's verifier key, to give to the logs' operators and their clients.
    pub fn verifier_key(&self) -> String {
        self.cosigner.verifier_key()
    }

    /// Handles one `add-checkpoint` body: on success, the cosignature line.
    ///
    /// # Errors
    /// [`AddError`].
    pub async fn add_checkpoint(&self, body: &str) -> Result<String, AddError> {
        let request = AddCheckpoint::parse(body).map_err(AddError::Refused)?;
        let origin = origin_of(&request.checkpoint)
            .ok_or(AddError::Refused(WitnessRefusal::BadRequest))?
            .to_string();
        let trusted = self.trusted.get(&origin).map(Vec::as_slice);
        // One lock over the check and the write: a request for an older size that was
        // checked first cannot be written after a newer one.
        let mut kept = self.kept.lock().await;
        let latest = match kept.logs.get(&origin) {
            Some(k) => Some((k.size, root_of(&k.root)?)),
            None => None,
        };
        let head = match decide(&request, trusted, latest) {
            Ok(head) => head,
            Err(refusal) => {
                if refusal == WitnessRefusal::Inconsistent {
                    // Possible evidence of a log forking: the operator should look.
                    tracing::warn!(%origin, old = request.old_size, "a checkpoint that does not extend the one cosigned");
                }
                return Err(AddError::Refused(refusal));
            }
        };
        let previous = kept.logs.insert(
            origin.clone(),
            KeptLog {
                size: head.size,
                root: B64.encode(head.root),
            },
        );
        if let Err(e) = write_state(&self.state, &kept) {
            // Not kept: not cosigned, and the memory goes back to what the file holds.
            match previous {
                Some(p) => kept.logs.insert(origin, p),
                None => kept.logs.remove(&origin),
            };
            return Err(AddError::Failed(e));
        }
        let now = u64::try_from(self.clock.now_secs()).unwrap_or_default();
        Ok(self.cosigner.cosign(&head, now))
    }
}

fn root_of(text: &str) -> Result<Hash, AddError> {
    B64.decode(text)
        .ok()
        .and_then(|r| r.try_into().ok())
        .ok_or_else(|| {
            AddError::Failed(WitnessError::State {
                what: "the witness state holds a malformed root".into(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not 32 bytes"),
            })
        })
}

/// Writes the state whole (a temporary file, synced, renamed over it), owner-only.
fn write_state(path: &Path, kept: &Kept) -> Result<(), WitnessError> {
    let fail = |source| WitnessError::State {
        what: format!("cannot write {}", path.display()),
        source,
    };
    let bytes = serde_json::to_vec_pretty(kept)
        .map_err(|e| fail(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(fail)?;
    std::io::Write::write_all(&mut file, &bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(fail)?;
    }
    Ok(())
}

/// The HTTP endpoint: `POST /add-checkpoint`.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            CONCURRENT_REQUESTS,
        ))
        .with_state(witness)
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn add_checkpoint(State(witness): State<Arc<Witness>>, body: Body) -> Response {
    let bytes =
        match tokio::time::timeout(REQUEST_TIME, axum::body::to_bytes(body, MAX_REQUEST_BYTES))
            .await
        {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "text/plain; charset=utf-8",
                    "request too large\n".into(),
                );
            }
            Err(_) => {
                return text(
                    StatusCode::REQUEST_TIMEOUT,
                    "text/plain; charset=utf-8",
                    "request too slow\n".into(),
                );
            }
        };
    let Ok(body) = std::str::from_utf8(&bytes) else {
        return text(
            StatusCode::BAD_REQUEST,
            "text/plain; charset=utf-8",
            "not UTF-8\n".into(),
        );
    };
    match witness.add_checkpoint(body).await {
        Ok(line) => text(StatusCode::OK, "text/plain; charset=utf-8", line),
        Err(AddError::Refused(WitnessRefusal::Conflict(size))) => text(
            StatusCode::CONFLICT,
            "text/x.tlog.size",
            format!("{size}\n"),
        ),
        Err(AddError::Refused(r)) => text(
            StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST),
            "text/plain; charset=utf-8",
            format!("{r}\n"),
        ),
        Err(AddError::Failed(e)) => {
            tracing::error!(error = %e, "the witness cannot keep its state");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                "the witness cannot keep its state\n".into(),
            )
        }
    }
}

/// Serves the witness on `listener` until `shutdown` resolves.
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    witness: Arc<Witness>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(witness))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_audit::checkpoint::{LogSigner, TreeHead, verify_cosignature};
    use medmesh_audit::merkle::{Frontier, consistency_proof, leaf_hash, nodes_completed_by};

    /// A clock stopped at one instant.
    struct Stopped(i64);
    impl Clock for Stopped {
        fn now_micros(&self) -> i64 {
            self.0
        }
    }

    struct Log {
        signer: LogSigner,
        frontier: Frontier,
        nodes: HashMap<(u32, u64), Hash>,
        tag: &'static str,
    }

    impl Log {
        fn new() -> Self {
            Self::tagged("")
        }
        /// A log whose entries differ from every other tag's.
        fn tagged(tag: &'static str) -> Self {
            Self {
                tag,
                signer: LogSigner::new("node.example/audit", [1; 32]),
                frontier: Frontier::new(),
                nodes: HashMap::new(),
            }
        }
        fn grow(&mut self, n: u64) {
            for _ in 0..n {
                let i = self.frontier.size();
                let hashes = self
                    .frontier
                    .push(leaf_hash(format!("{}{i}", self.tag).as_bytes()));
                self.nodes
                    .extend(nodes_completed_by(i).into_iter().zip(hashes));
            }
        }
        fn head(&self) -> TreeHead {
            TreeHead {
                origin: "node.example/audit".into(),
                size: self.frontier.size(),
                root: self.frontier.root().unwrap(),
                timestamp_micros: 7,
                patient_map: None,
            }
        }
        fn request(&self, old: u64) -> String {
            let size = self.frontier.size();
            let proof = if old == 0 || old == size {
                Vec::new()
            } else {
                consistency_proof(old, size, &mut |id| Ok(self.nodes[&id])).unwrap()
            };
            AddCheckpoint {
                old_size: old,
                proof,
                checkpoint: self.signer.sign(&self.head()),
            }
            .encode()
        }
    }

    fn witness(dir: &Path) -> Witness {
        Witness::open(
            Cosigner::new("witness.example/w", [3; 32]),
            vec![LogSigner::new("node.example/audit", [1; 32]).verifier()],
            &dir.join("state.json"),
            Arc::new(Stopped(1_800_000_000_000_000)),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn it_cosigns_growth_keeps_it_across_restarts_and_refuses_a_fork() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::new();
        log.grow(3);
        let w = witness(dir.path());
        let line = w.add_checkpoint(&log.request(0)).await.unwrap();
        let note = format!("{}{line}", log.signer.sign(&log.head()));
        let public = Cosigner::new("witness.example/w", [3; 32]).verifier_key();
        let key = medmesh_audit::witness::WitnessKey::parse(&public).unwrap();
        assert_eq!(
            verify_cosignature(&note, "witness.example/w", &key.public_bytes()),
            Ok(1_800_000_000)
        );

        // A restart keeps the size: the log must start from 3.
        let w = witness(dir.path());
        log.grow(4);
        assert!(matches!(
            w.add_checkpoint(&log.request(0)).await,
            Err(AddError::Refused(WitnessRefusal::Conflict(3)))
        ));
        w.add_checkpoint(&log.request(3)).await.unwrap();

        // Another history from 7: refused, and the witness still holds 7.
        let mut fork = Log::tagged("fork");
        fork.grow(9);
        assert!(matches!(
            w.add_checkpoint(&fork.request(7)).await,
            Err(AddError::Refused(WitnessRefusal::Inconsistent))
        ));
        log.grow(2);
        w.add_checkpoint(&log.request(7)).await.unwrap();
    }
}
