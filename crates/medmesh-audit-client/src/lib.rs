//! The audit log from outside the node, over HTTP.
//!
//! - [`verify_patient`]: a patient's (or their agent's) proof that the access log the node
//!   shows is the whole log of their record, with what the last run saw kept in a state
//!   file, as the browser keeps it in IndexedDB. The checks are
//!   `medmesh-patient-log-verifier`'s.
//! - [`witness`]: an independent witness. It pins the log's key on its first run, checks
//!   every new checkpoint against the last one it saw (a consistency proof), and cosigns
//!   it with its own Ed25519 key, in the signed-note form any C2SP verifier reads.
//!
//! - [`HttpWitnessTransport`]: the node's way to a C2SP witness's `add-checkpoint`.
//!
//! Nothing here prints; the binary does.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use medmesh_audit::checkpoint::{Cosigner, LogVerifierKey, TreeHead};
use medmesh_audit::witness::{ReplyFuture, WitnessReply, WitnessTransport};
use medmesh_kernel::random::{OsRandom, Random};
use medmesh_patient_log_verifier::{Page, Remembered, Verified, verify};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Entries per page asked for (the node's maximum).
const PAGE: u32 = 500;

/// Why a call failed. Its message is for the user.
#[derive(Debug, thiserror::Error)]
pub enum AuditClientError {
    /// The node could not be reached.
    #[error("cannot reach the node")]
    Unreachable(#[source] reqwest::Error),
    /// The node answered with an error status.
    #[error("the node answered {0}")]
    Refused(u16),
    /// The node sent something that is not what the API defines.
    #[error("the node sent a malformed answer: {0}")]
    Malformed(String),
    /// The log does not check out: the first problem found.
    #[error("NOT VERIFIED: {0}")]
    Problem(String),
    /// The state or key file could not be read or written.
    #[error("{what}: {source}")]
    File {
        /// Which file, and what was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, AuditClientError>;

/// What a patient's last run kept.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PatientState {
    log_key: String,
    remembered: Remembered,
}

/// What a witness keeps.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WitnessState {
    log_key: String,
    checkpoint: String,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| AuditClientError::File {
                what: format!("{} is not a state file", path.display()),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(AuditClientError::File {
            what: format!("cannot read {}", path.display()),
            source,
        }),
    }
}

/// Writes a file whole or not at all (a temporary file renamed over it), readable by its
/// owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let fail = |source| AuditClientError::File {
        what: format!("cannot write {}", path.display()),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(fail)?;
    std::io::Write::write_all(&mut file, bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|e| AuditClientError::Malformed(e.to_string()))?;
    write_private(path, &bytes)
}

/// A node over HTTP, with a bearer token or without.
struct Node {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Node {
    fn new(base: &str, token: Option<&str>) -> Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.map(str::to_string),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .map_err(AuditClientError::Unreachable)?,
        })
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.map_err(AuditClientError::Unreachable)?;
        if !r.status().is_success() {
            return Err(AuditClientError::Refused(r.status().as_u16()));
        }
        Ok(r)
    }

    async fn json<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T> {
        self.get(path)
            .await?
            .json()
            .await
            .map_err(|e| AuditClientError::Malformed(e.to_string()))
    }

    async fn text(&self, path: &str) -> Result<String> {
        self.get(path)
            .await?
            .text()
            .await
            .map_err(|e| AuditClientError::Malformed(e.to_string()))
    }

    /// The log's signed-note verifier key, as published.
    async fn log_key(&self) -> Result<String> {
        let key: Value = self.json("/api/audit/key").await?;
        key["noteVerifierKey"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| AuditClientError::Malformed("no noteVerifierKey".into()))
    }

    /// POSTs `body` as text to `path`.
    async fn post_text(&self, path: &str, body: String) -> Result<()> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(AuditClientError::Unreachable)?;
        if !r.status().is_success() {
            return Err(AuditClientError::Refused(r.status().as_u16()));
        }
        Ok(())
    }

    /// The consistency proof from `from` entries to `to`.
    async fn consistency(&self, from: u64, to: u64) -> Result<Vec<String>> {
        let body: Value = self
            .json(&format!("/api/audit/consistency?from={from}&to={to}"))
            .await?;
        serde_json::from_value(body["proof"].clone())
            .map_err(|e| AuditClientError::Malformed(e.to_string()))
    }
}

fn open_key(note: &str) -> Result<LogVerifierKey> {
    LogVerifierKey::from_note_key(note)
        .map_err(|_| AuditClientError::Malformed(format!("not a log key: {note}")))
}

fn size_of(key: &LogVerifierKey, checkpoint: &str) -> Result<u64> {
    key.open(checkpoint)
        .map(|h| h.size)
        .map_err(|_| AuditClientError::Problem("a kept checkpoint does not verify".into()))
}

/// A patient's log, proven complete.
#[derive(Debug)]
pub struct PatientReport {
    /// What was proven.
    pub verified: Verified,
    /// Whether it was checked against a previous run (and the log only grew since).
    pub against_previous: bool,
    /// The log key it was checked with.
    pub log_key: String,
}

/// Proves a patient's access log complete: every page, the map proof, the chain, and,
/// with `state`, consistency with what the previous run saw (the state file is written
/// only when everything checked out). `log_key` pins the key; otherwise the one kept in
/// `state`, otherwise the one the node publishes (trusted on first use).
///
/// # Errors
/// [`AuditClientError::Problem`] names the first problem; the others say what failed.
pub async fn verify_patient(
    node: &str,
    token: &str,
    patient: &str,
    log_key: Option<&str>,
    state: Option<&Path>,
) -> Result<PatientReport> {
    let node = Node::new(node, Some(token))?;
    let kept: Option<PatientState> = match state {
        Some(p) => read_json(p)?,
        None => None,
    };
    let note = match (log_key, &kept) {
        (Some(k), _) => k.to_string(),
        (None, Some(s)) => s.log_key.clone(),
        (None, None) => node.log_key().await?,
    };
    let key = open_key(&note)?;
    let base = format!("/api/patients/{patient}/audit?_count={PAGE}");
    let first: Page = node.json(&base).await?;
    let size = size_of(&key, &first.checkpoint).map_err(|_| {
        AuditClientError::Problem("the checkpoint is not signed by the log's key".into())
    })?;
    let mut pages = vec![first];
    while let Some(before) = pages.last().and_then(|p| p.next_before) {
        pages.push(
            node.json(&format!("{base}&before={before}&checkpoint={size}"))
                .await?,
        );
    }
    let remembered = kept.as_ref().map(|s| &s.remembered);
    let consistency = match remembered {
        Some(old) => {
            let from = size_of(&key, &old.checkpoint)?;
            if from > 0 && from < size {
                Some(node.consistency(from, size).await?)
            } else {
                None
            }
        }
        None => None,
    };
    let verified = verify(&key, patient, &pages, remembered, consistency.as_deref())
        .map_err(|p| AuditClientError::Problem(p.to_string()))?;
    if let Some(path) = state {
        write_json(
            path,
            &PatientState {
                log_key: note.clone(),
                remembered: verified.remember.clone(),
            },
        )?;
    }
    Ok(PatientReport {
        verified,
        against_previous: remembered.is_some(),
        log_key: note,
    })
}

/// What a witness run did.
#[derive(Debug)]
pub struct WitnessReport {
    /// The checkpoint's tree head.
    pub head: TreeHead,
    /// The size of the checkpoint the witness saw before (`None` on its first run).
    pub previous: Option<u64>,
    /// The checkpoint with the witness's cosignature line added.
    pub cosigned: String,
    /// The witness's own verifier key (signed-note form, algorithm 0x04), to publish.
    pub witness_key: String,
    /// Whether the node took the cosignature back (it keeps those of witnesses it lists,
    /// and serves them to patients' clients): `Err` holds why not.
    pub submitted: std::result::Result<(), String>,
}

/// One witness run against the log at `log` (a node's address): pins the log key on the
/// first run, checks the newest checkpoint against the one it saw last (consistency proof;
/// a smaller or rewritten log is refused), and cosigns it with the Ed25519 key in
/// `key_file` (made, mode 0600, on the first run) under `name`, as a C2SP
/// `tlog-cosignature/v1` line made at `now_secs` (POSIX seconds).
///
/// # Errors
/// [`AuditClientError::Problem`] when the log is not an extension of what the witness saw.
pub async fn witness(
    log: &str,
    state: &Path,
    key_file: &Path,
    name: &str,
    now_secs: u64,
) -> Result<WitnessReport> {
    let node = Node::new(log, None)?;
    let kept: Option<WitnessState> = read_json(state)?;
    let note = match &kept {
        Some(s) => s.log_key.clone(),
        None => node.log_key().await?,
    };
    let key = open_key(&note)?;
    let checkpoint = node.text("/api/audit/checkpoint").await?;
    let head = key.open(&checkpoint).map_err(|_| {
        AuditClientError::Problem("the checkpoint is not signed by the pinned log key".into())
    })?;
    let previous = match &kept {
        Some(s) => {
            let old = key.open(&s.checkpoint).map_err(|_| {
                AuditClientError::Problem("the kept checkpoint does not verify".into())
            })?;
            check_extends(&node, &old, &head).await?;
            Some(old.size)
        }
        None => None,
    };
    let cosigner = Cosigner::new(name, witness_secret(key_file)?);
    let cosigned = format!("{checkpoint}{}", cosigner.cosign(&head, now_secs));
    // Kept before the cosignature leaves: a witness never cosigns a size it has not kept.
    write_json(
        state,
        &WitnessState {
            log_key: note,
            checkpoint: checkpoint.clone(),
        },
    )?;
    let submitted = match node
        .post_text("/api/audit/cosignatures", cosigned.clone())
        .await
    {
        Ok(()) => Ok(()),
        Err(AuditClientError::Refused(400)) => {
            Err("the node does not list this witness's key; give its operator the key below".into())
        }
        Err(e) => Err(e.to_string()),
    };
    Ok(WitnessReport {
        head,
        previous,
        cosigned,
        witness_key: cosigner.verifier_key(),
        submitted,
    })
}

/// The largest witness answer read.
const MAX_WITNESS_REPLY: usize = 64 * 1024;

/// The node's way to C2SP witnesses: `POST <prefix>/add-checkpoint` over HTTP(S), bounded in
/// time and in the size of what it reads back.
#[derive(Debug, Clone)]
pub struct HttpWitnessTransport {
    http: reqwest::Client,
}

impl HttpWitnessTransport {
    /// A transport with a 10-second bound per request.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (no TLS roots).
    pub fn new() -> Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(AuditClientError::Unreachable)?,
        })
    }

    async fn post(&self, url: &str, body: String) -> std::result::Result<WitnessReply, String> {
        let mut r = self
            .http
            .post(format!("{}/add-checkpoint", url.trim_end_matches('/')))
            .body(body)
            .send()
            .await
            .map_err(|e| format!("cannot reach the witness: {e}"))?;
        let status = r.status().as_u16();
        if status != 200 && status != 409 {
            return Ok(WitnessReply::Refused(status));
        }
        let mut text = Vec::new();
        while let Some(chunk) = r
            .chunk()
            .await
            .map_err(|e| format!("the witness's answer broke off: {e}"))?
        {
            text.extend_from_slice(&chunk);
            if text.len() > MAX_WITNESS_REPLY {
                return Err("the witness's answer is too long".into());
            }
        }
        let text = String::from_utf8(text).map_err(|_| "the witness's answer is not text")?;
        if status == 409 {
            return text
                .trim_end_matches('\n')
                .parse()
                .map(WitnessReply::Conflict)
                .map_err(|_| "the witness's 409 names no size".into());
        }
        Ok(WitnessReply::Cosigned(text))
    }
}

impl WitnessTransport for HttpWitnessTransport {
    fn add_checkpoint<'a>(&'a self, url: &'a str, body: String) -> ReplyFuture<'a> {
        Box::pin(self.post(url, body))
    }
}

/// Checks that `new` extends `old`: not smaller, the same root at the same size, a
/// consistency proof between them otherwise.
async fn check_extends(node: &Node, old: &TreeHead, new: &TreeHead) -> Result<()> {
    if new.size < old.size {
        return Err(AuditClientError::Problem(format!(
            "the log shrank from {} to {} entries",
            old.size, new.size
        )));
    }
    if new.size == old.size {
        return if new.root == old.root {
            Ok(())
        } else {
            Err(AuditClientError::Problem(
                "the log was rewritten: another root at the same size".into(),
            ))
        };
    }
    let proof = node
        .consistency(old.size, new.size)
        .await?
        .iter()
        .map(|h| {
            B64.decode(h)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| AuditClientError::Malformed("a proof hash is not 32 bytes".into()))?;
    medmesh_audit::merkle::verify_consistency(&old.root, old.size, &new.root, new.size, &proof)
        .map_err(|_| {
            AuditClientError::Problem(format!(
                "the log at {} entries does not extend the one at {} (rewritten)",
                new.size, old.size
            ))
        })
}

/// The witness's Ed25519 secret: read from `path` (base64), or made there (mode 0600).
///
/// # Errors
/// An unreadable or malformed key file.
pub fn witness_secret(path: &Path) -> Result<[u8; 32]> {
    match std::fs::read_to_string(path) {
        Ok(text) => B64
            .decode(text.trim())
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| AuditClientError::File {
                what: format!("{} is not a witness key", path.display()),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not 32 bytes"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = medmesh_kernel::random::array::<32>(&OsRandom as &dyn Random);
            write_private(path, B64.encode(secret).as_bytes())?;
            Ok(secret)
        }
        Err(source) => Err(AuditClientError::File {
            what: format!("cannot read {}", path.display()),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_witness_key_is_made_once_and_kept_private() {
        let dir = std::env::temp_dir().join(format!("medmesh-witness-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("witness.key");
        let made = witness_secret(&path).unwrap();
        assert_eq!(witness_secret(&path).unwrap(), made);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
