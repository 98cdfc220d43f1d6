//! The client side of signed uploads and end-to-end sealed documents, against a medmesh
//! node over HTTP: key files, key registration, signed and sealed uploads, opening,
//! sharing and revoking sealed documents, and verifying a document's signature offline or
//! against the node's key directory. `medmesh doc ...` and `medmesh verify` are built on it;
//! a third party's client can be too.
//!
//! Private keys stay in the user's key file (mode 0600) on their device; the node sees public
//! keys, signatures, wrapped keys and ciphertext only. Nothing here prints: every call
//! returns what it did, or a [`DocClientError`] that says what went wrong.

mod error;

use error::{Context, bail};
pub use error::{DocClientError, Result};

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use medmesh_crypto::sealing::{ContentKey, SealingPublicKey, SealingSecretKey, WrappedKey};
use medmesh_crypto::stream::HEADER;
use medmesh_crypto::{
    KeyId, KeyStatement, OsRandom, PrescriptionClaims, UploadClaims, UploadSignature,
    UserPublicKey, UserSigningKey,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use medmesh_crypto::wire::{EXT_SIGNED_CLAIMS, EXT_SIGNING_KEY, SEALED_TYPE, SIG_FORMAT};
/// What every signature of this client names as its device.
fn device() -> String {
    format!("medmesh-cli {}", env!("CARGO_PKG_VERSION"))
}
/// The document type of uploads that name none.
const DEFAULT_TYPE: &str = "http://loinc.org|34133-9";

/// A user's keys as kept in their key file.
#[derive(Debug)]
pub struct KeyFile {
    /// Whose keys (`Patient/x`, `Practitioner/y`).
    pub owner: String,
    /// The Ed25519 signing key (absent in a recovery-key file).
    pub signing: Option<UserSigningKey>,
    /// X25519 keys that open sealed documents, with their directory kind.
    pub opening: Vec<(&'static str, SealingSecretKey)>,
}

fn b64_32(s: &str) -> Result<[u8; 32]> {
    STANDARD
        .decode(s.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("a key in the key file is damaged")
}

impl KeyFile {
    /// Reads a key file (user keys, or a recovery key).
    ///
    /// # Errors
    /// When it is missing, readable by others, or damaged.
    pub fn read(path: &Path) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read the key file {}", path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            bail!(
                "the key file {} is readable by others; chmod 600 it",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path).context("cannot read the key file")?;
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        if header != "medmesh-user-key v1" && header != "medmesh-recovery-key v1" {
            bail!("{} is not a medmesh key file", path.display());
        }
        let mut out = KeyFile {
            owner: String::new(),
            signing: None,
            opening: Vec::new(),
        };
        for line in lines {
            match line.split_once(' ') {
                Some(("owner", v)) => out.owner = v.trim().to_string(),
                Some(("signing", v)) => out.signing = Some(UserSigningKey::from_secret(b64_32(v)?)),
                Some(("sealing", v)) => out
                    .opening
                    .push(("sealing", SealingSecretKey::from_seed(b64_32(v)?))),
                Some(("recovery", v)) => out
                    .opening
                    .push(("recovery", SealingSecretKey::from_seed(b64_32(v)?))),
                _ if line.trim().is_empty() => {}
                _ => bail!(
                    "the key file {} has a line it does not know",
                    path.display()
                ),
            }
        }
        if !out.owner.starts_with("Patient/") && !out.owner.starts_with("Practitioner/") {
            bail!("the key file names no owner (Patient/... or Practitioner/...)");
        }
        Ok(out)
    }

    fn signing(&self) -> Result<&UserSigningKey> {
        self.signing
            .as_ref()
            .context("this is a recovery-key file; it opens documents but cannot sign")
    }
}

/// Writes a new file with mode 0600, refusing to overwrite one.
fn write_secret_file(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The public halves of keys just made, base64.
#[derive(Debug, Clone)]
pub struct GeneratedKeys {
    /// The Ed25519 signing key.
    pub signing: String,
    /// The X25519 sealing key.
    pub sealing: String,
    /// The X25519 recovery key, when one was made.
    pub recovery: Option<String>,
}

/// `medmesh doc keygen`: a signing and a sealing key in a new key file, and optionally a
/// recovery key in a file of its own (to keep offline).
///
/// # Errors
/// When the owner is not `Patient/x` or `Practitioner/y`, or a file exists or cannot be
/// written.
pub fn keygen(key_file: &Path, owner: &str, recovery_file: Option<&Path>) -> Result<GeneratedKeys> {
    if !owner.starts_with("Patient/") && !owner.starts_with("Practitioner/") {
        bail!("--owner must be Patient/<id> or Practitioner/<id>");
    }
    let r = OsRandom;
    let signing = UserSigningKey::generate(&r);
    let sealing = SealingSecretKey::generate(&r);
    write_secret_file(
        key_file,
        &format!(
            "medmesh-user-key v1\nowner {owner}\nsigning {}\nsealing {}\n",
            STANDARD.encode(signing.expose_secret()),
            STANDARD.encode(sealing.expose_seed()),
        ),
    )?;
    let mut made = GeneratedKeys {
        signing: signing.public().to_base64(),
        sealing: sealing.public().to_base64(),
        recovery: None,
    };
    if let Some(path) = recovery_file {
        let recovery = SealingSecretKey::generate(&r);
        write_secret_file(
            path,
            &format!(
                "medmesh-recovery-key v1\nowner {owner}\nrecovery {}\n",
                STANDARD.encode(recovery.expose_seed())
            ),
        )?;
        made.recovery = Some(recovery.public().to_base64());
    }
    Ok(made)
}

/// A node and the token to talk to it.
pub struct NodeClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bearer token is a credential: never printed.
        f.debug_struct("NodeClient")
            .field("base", &self.base)
            .field("token", &"[redacted]")
            .finish_non_exhaustive()
    }
}

fn now_instant() -> String {
    use medmesh_kernel::Clock;
    time::OffsetDateTime::from_unix_timestamp(medmesh_kernel::SystemClock.now_secs())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// A failed response's OperationOutcome text (or its status), for the error message.
async fn failure(r: reqwest::Response) -> DocClientError {
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let message = body["issue"][0]["diagnostics"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| status.to_string());
    DocClientError::Refused {
        status: status.as_u16(),
        message,
    }
}

impl NodeClient {
    /// A client for `node` (`http://host:port`) with a bearer token.
    pub fn new(node: &str, token: &str) -> Result<Self> {
        if token.trim().is_empty() {
            bail!("a token is needed: --token or MEDMESH_TOKEN");
        }
        Ok(Self {
            base: node.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            http: reqwest::Client::builder()
                .build()
                .context("cannot build the HTTP client")?,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// A request to `path` on the node, with the bearer token.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
    }

    /// Sends a request; an answer other than 2xx is a [`DocClientError::Refused`].
    async fn send(req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let r = req.send().await.map_err(DocClientError::Unreachable)?;
        if !r.status().is_success() {
            return Err(failure(r).await);
        }
        Ok(r)
    }

    /// Starts downloading a Binary's bytes (an audited open on the node).
    async fn download(&self, binary: &str) -> Result<reqwest::Response> {
        Self::send(self.request(reqwest::Method::GET, &format!("fhir/Binary/{binary}"))).await
    }

    async fn get_json(&self, path: &str) -> Result<Value> {
        Self::send(self.request(reqwest::Method::GET, path))
            .await?
            .json()
            .await
            .context("the node sent malformed JSON")
    }

    async fn send_json(&self, method: reqwest::Method, path: &str, body: &Value) -> Result<Value> {
        let r = Self::send(self.request(method, path).json(body)).await?;
        Ok(r.json().await.unwrap_or(Value::Null))
    }

    /// An owner's live keys of a kind, each checked against the owner's signing keys (a
    /// signing key against itself): entries whose statement does not verify are left out.
    async fn verified_keys(
        &self,
        owner: &str,
        kinds: &[&str],
    ) -> Result<Vec<(String, String, String)>> {
        let listing = self.get_json(&format!("api/keys?owner={owner}")).await?;
        Ok(verified_entries(owner, &listing, kinds))
    }

    /// The content key of a sealed document, unwrapped with one of the key file's keys.
    async fn content_key(&self, keys: &KeyFile, binary: &str) -> Result<(KeyId, ContentKey)> {
        let mine = self.get_json(&format!("api/sealed/{binary}/keys")).await?;
        let document: [u8; 16] = mine["documentKeyId"]
            .as_str()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| b.try_into().ok())
            .context("the node sent no document key id")?;
        let document = KeyId(document);
        for k in mine["keys"].as_array().into_iter().flatten() {
            let Ok(wrapped) = WrappedKey::from_text(k["wrapped"].as_str().unwrap_or_default())
            else {
                continue;
            };
            for (_, secret) in &keys.opening {
                if let Ok(key) = secret.unwrap(&wrapped, &document) {
                    return Ok((document, key));
                }
            }
        }
        bail!("none of the keys in the key file opens this document")
    }
}

/// Hashes a file as it streams.
async fn sha256_file(path: &Path) -> Result<([u8; 32], u64)> {
    let mut f = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    Ok((h.finalize().into(), total))
}

/// A file as a request body, read as it is sent.
async fn file_body(path: &Path) -> Result<reqwest::Body> {
    let f = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let stream = futures::stream::unfold(f, |mut f| async move {
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(buf), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    Ok(reqwest::Body::wrap_stream(stream))
}

/// What an upload says about itself.
#[derive(Debug, Clone)]
pub struct UploadMeta {
    /// Whose document (a Patient id).
    pub patient: String,
    /// Title (the node sees it).
    pub title: Option<String>,
    /// `system|code`.
    pub doc_type: Option<String>,
    /// The content type, for a plain upload (`None`: the node sniffs it).
    pub content_type: Option<String>,
}

/// Signs `path`'s digest with the claims, and posts it as a Binary.
async fn signed_post(
    node: &NodeClient,
    keys: &KeyFile,
    path: &Path,
    meta: &UploadMeta,
    content_type: &str,
    sealed_keys: Option<String>,
) -> Result<Value> {
    let (digest, _) = sha256_file(path).await?;
    let claims = UploadClaims {
        sha256: digest,
        author: keys.owner.clone(),
        patient: format!("Patient/{}", meta.patient),
        time: now_instant(),
        device: device(),
        doc_type: meta.doc_type.clone().unwrap_or_else(|| DEFAULT_TYPE.into()),
    };
    let signing = keys.signing()?;
    let signature = signing.sign(&claims).context("cannot sign these claims")?;
    let mut req = node
        .request(reqwest::Method::POST, "fhir/Binary")
        .header("content-type", content_type)
        .header("x-security-context", format!("Patient/{}", meta.patient))
        .header("x-medmesh-document-type", &claims.doc_type)
        .header("x-medmesh-signature", signature.to_base64())
        .header("x-medmesh-signing-key", signing.public().to_base64())
        .header("x-medmesh-signed-at", &claims.time)
        .header("x-medmesh-device", &claims.device);
    if let Some(t) = &meta.title {
        req = req.header("x-medmesh-title", t);
    }
    if let Some(k) = sealed_keys {
        req = req.header("x-medmesh-sealed-keys", k);
    }
    NodeClient::send(req.body(file_body(path).await?))
        .await?
        .json()
        .await
        .context("the node sent malformed JSON")
}

/// `medmesh doc register`: publishes the key file's public keys (and a recovery key's).
/// Returns each key's kind and directory id.
///
/// # Errors
/// When the node refuses or cannot be reached, or a statement cannot be signed.
pub async fn register(
    node: &NodeClient,
    keys: &KeyFile,
    recovery: Option<&KeyFile>,
) -> Result<Vec<(String, String)>> {
    let mut registered = Vec::new();
    let signing = keys.signing()?;
    let mut items: Vec<(&str, String)> = vec![("signing", signing.public().to_base64())];
    for (kind, k) in keys
        .opening
        .iter()
        .chain(recovery.iter().flat_map(|r| r.opening.iter()))
    {
        items.push((kind, k.public().to_base64()));
    }
    for (kind, public_key) in items {
        let st = KeyStatement {
            owner: keys.owner.clone(),
            kind: kind.to_string(),
            key: public_key.clone(),
            time: now_instant(),
        };
        let sig = signing
            .sign_statement(&st)
            .context("cannot sign the key statement")?;
        let out = node
            .send_json(
                reqwest::Method::POST,
                "api/keys",
                &json!({"kind": kind, "publicKey": public_key, "time": st.time, "signature": sig.to_base64()}),
            )
            .await?;
        registered.push((
            kind.to_string(),
            out["keyId"].as_str().unwrap_or_default().to_string(),
        ));
    }
    Ok(registered)
}

/// `medmesh doc upload`: a signed (not sealed) upload. Returns the Binary's id.
///
/// # Errors
/// When the file cannot be read, the key file cannot sign, or the node refuses.
pub async fn upload(
    node: &NodeClient,
    keys: &KeyFile,
    path: &Path,
    meta: &UploadMeta,
) -> Result<String> {
    let ct = meta
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    let binary = signed_post(node, keys, path, meta, &ct, None).await?;
    Ok(binary["id"].as_str().unwrap_or_default().to_string())
}

/// `medmesh doc seal`: seals `path` for the uploader, the patient (sealing and recovery
/// keys) and every `--to` owner, signs the sealed bytes and uploads them. Returns the Binary's
/// id.
///
/// # Errors
/// When an owner has no verified sealing key, the file cannot be read, or the node refuses.
pub async fn seal(
    node: &NodeClient,
    keys: &KeyFile,
    path: &Path,
    meta: &UploadMeta,
    to: &[String],
) -> Result<String> {
    let patient_ref = format!("Patient/{}", meta.patient);
    let mut recipients = Vec::new();
    let mut owners = vec![keys.owner.clone(), patient_ref];
    owners.extend(to.iter().cloned());
    owners.sort();
    owners.dedup();
    for owner in &owners {
        let found = node.verified_keys(owner, &["sealing", "recovery"]).await?;
        if found.is_empty() {
            bail!("{owner} has no verified sealing key in the directory");
        }
        recipients.extend(found);
    }
    let r = OsRandom;
    let document = KeyId::random(&r);
    let content = ContentKey::generate(&r);
    let mut wrapped = Vec::new();
    for (key_id, _, public_key) in &recipients {
        let pk = SealingPublicKey::from_base64(public_key).context("a directory key is damaged")?;
        let w = content
            .wrap_for(&pk, &document, &r)
            .context("cannot wrap the content key")?;
        wrapped.push(format!("{key_id}:{}", w.to_text()));
    }
    // Seal into a temporary file beside nothing readable: it holds ciphertext only.
    let sealed = tempfile::NamedTempFile::new().context("cannot make a temporary file")?;
    {
        let mut input = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut out_file = std::io::BufWriter::new(sealed.as_file());
        let mut out = Vec::new();
        let mut sealer = content.seal_stream(&document, &r, &mut out);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = input.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            sealer.push(&buf[..n], &mut out).context("sealing failed")?;
            out_file.write_all(&out)?;
            out.clear();
        }
        sealer.finish(&mut out).context("sealing failed")?;
        out_file.write_all(&out)?;
        out_file.flush()?;
    }
    let binary = signed_post(
        node,
        keys,
        sealed.path(),
        meta,
        SEALED_TYPE,
        Some(wrapped.join(",")),
    )
    .await?;
    Ok(binary["id"].as_str().unwrap_or_default().to_string())
}

/// `medmesh doc open`: downloads a sealed document and opens it into `out` (written only
/// once the whole document has authenticated).
pub async fn open(node: &NodeClient, keys: &KeyFile, binary: &str, out: &Path) -> Result<()> {
    let (_, content) = node.content_key(keys, binary).await?;
    let r = node.download(binary).await?;
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let result = async {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let mut w = std::io::BufWriter::new(file);
        let mut header = Vec::with_capacity(HEADER);
        let mut opener = None;
        let mut plain = Vec::new();
        let mut body = r.bytes_stream();
        while let Some(piece) = body.next().await {
            let mut piece = &piece.context("the download broke off")?[..];
            if opener.is_none() {
                let take = (HEADER - header.len()).min(piece.len());
                header.extend_from_slice(&piece[..take]);
                piece = &piece[take..];
                if header.len() < HEADER {
                    continue;
                }
                opener = Some(
                    content
                        .open_stream(&header)
                        .context("this is no sealed document")?,
                );
            }
            if let Some(o) = opener.as_mut() {
                o.push(piece, &mut plain)
                    .context("the sealed document does not authenticate")?;
                w.write_all(&plain)?;
                plain.clear();
            }
        }
        opener
            .context("the sealed document is cut short")?
            .finish(&mut plain)
            .context("the sealed document does not authenticate")?;
        w.write_all(&plain)?;
        w.flush()?;
        std::fs::rename(&partial, out)?;
        Ok::<(), DocClientError>(())
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// `medmesh doc share`: wraps the document's content key for `to`'s verified sealing keys.
/// Returns the ids of the keys it was wrapped for.
///
/// # Errors
/// When `to` has no verified sealing key, no key in the key file opens the document, or the
/// node refuses.
pub async fn share(
    node: &NodeClient,
    keys: &KeyFile,
    binary: &str,
    to: &str,
) -> Result<Vec<String>> {
    let mut shared = Vec::new();
    let (document, content) = node.content_key(keys, binary).await?;
    let targets = node.verified_keys(to, &["sealing"]).await?;
    if targets.is_empty() {
        bail!("{to} has no verified sealing key in the directory");
    }
    let r = OsRandom;
    for (key_id, _, public_key) in targets {
        let pk =
            SealingPublicKey::from_base64(&public_key).context("a directory key is damaged")?;
        let w = content
            .wrap_for(&pk, &document, &r)
            .context("cannot wrap the content key")?;
        node.send_json(
            reqwest::Method::POST,
            &format!("api/sealed/{binary}/keys"),
            &json!({"recipientKeyId": key_id, "wrapped": w.to_text()}),
        )
        .await?;
        shared.push(key_id);
    }
    Ok(shared)
}

/// One holder of a sealed document's key.
#[derive(Debug, Clone)]
pub struct Share {
    /// Whose key (`Patient/x`, `Practitioner/y`).
    pub recipient: String,
    /// The key's directory id.
    pub recipient_key_id: String,
    /// Who wrapped the document's key for them.
    pub added_by: String,
}

/// `medmesh doc shares`: who holds a key to the document (for its patient).
///
/// # Errors
/// When the node refuses or cannot be reached.
pub async fn shares(node: &NodeClient, binary: &str) -> Result<Vec<Share>> {
    let listing = node
        .get_json(&format!("api/sealed/{binary}/shares"))
        .await?;
    let text = |k: &Value, field: &str| k[field].as_str().unwrap_or_default().to_string();
    Ok(listing["shares"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| Share {
            recipient: text(k, "recipient"),
            recipient_key_id: text(k, "recipientKeyId"),
            added_by: text(k, "addedBy"),
        })
        .collect())
}

/// `medmesh doc revoke`: removes every wrapped key `from` holds for the document. Returns
/// how many it removed (none: `from` held no key to it).
///
/// # Errors
/// When the node refuses or cannot be reached.
pub async fn revoke(node: &NodeClient, binary: &str, from: &str) -> Result<u32> {
    let listing = node.get_json(&format!("api/keys?owner={from}")).await?;
    let mut revoked = 0;
    for k in listing["keys"].as_array().into_iter().flatten() {
        let Some(id) = k["keyId"].as_str() else {
            continue;
        };
        if k["kind"] == "signing" {
            continue;
        }
        let r = node
            .request(
                reqwest::Method::DELETE,
                &format!("api/sealed/{binary}/keys/{id}"),
            )
            .send()
            .await
            .map_err(DocClientError::Unreachable)?;
        match r.status() {
            s if s.is_success() => revoked += 1,
            reqwest::StatusCode::NOT_FOUND => {}
            _ => return Err(failure(r).await),
        }
    }
    Ok(revoked)
}

/// The live entries of a key directory listing (`GET /api/keys?owner=...`, or that answer
/// saved to a file for offline use) of the given kinds, as `(key id, kind, public key)`:
/// each entry's statement must verify with one of the owner's signing keys (a signing key
/// with itself), so a listing altered by the node or in transit loses the altered entries.
pub fn verified_entries(
    owner: &str,
    listing: &Value,
    kinds: &[&str],
) -> Vec<(String, String, String)> {
    let entries: Vec<&Value> = listing["keys"]
        .as_array()
        .map(|a| a.iter().filter(|k| k["revoked"] == false).collect())
        .unwrap_or_default();
    let statement = |k: &Value| KeyStatement {
        owner: owner.to_string(),
        kind: k["kind"].as_str().unwrap_or_default().to_string(),
        key: k["publicKey"].as_str().unwrap_or_default().to_string(),
        time: k["time"].as_str().unwrap_or_default().to_string(),
    };
    let sig = |k: &Value| UploadSignature::from_base64(k["signature"].as_str().unwrap_or_default());
    let signers: Vec<UserPublicKey> = entries
        .iter()
        .filter(|k| k["kind"] == "signing")
        .filter_map(|k| {
            let pk = UserPublicKey::from_base64(k["publicKey"].as_str()?).ok()?;
            pk.verify_statement(&statement(k), &sig(k).ok()?).ok()?;
            Some(pk)
        })
        .collect();
    entries
        .iter()
        .filter(|k| kinds.contains(&k["kind"].as_str().unwrap_or_default()))
        .filter(|k| {
            sig(k).is_ok_and(|s| {
                signers
                    .iter()
                    .any(|pk| pk.verify_statement(&statement(k), &s).is_ok())
            })
        })
        .filter_map(|k| {
            Some((
                k["keyId"].as_str()?.to_string(),
                k["kind"].as_str()?.to_string(),
                k["publicKey"].as_str()?.to_string(),
            ))
        })
        .collect()
}

/// `medmesh doc sign-prescription ID`: fetches the draft's signing text, checks it is a
/// prescription by the key file's owner, signs it with the key file's signing key and
/// activates it. Returns the active MedicationRequest.
///
/// # Errors
/// When the node refuses (the signature, the lifecycle, the PDP) or the text is not a
/// prescription of the key file's owner.
pub async fn sign_prescription(node: &NodeClient, keys: &KeyFile, id: &str) -> Result<Value> {
    let signing = keys
        .signing
        .as_ref()
        .context("this key file holds no signing key")?;
    let t = node
        .get_json(&format!("api/prescriptions/{id}/signing-text"))
        .await?;
    let text = t["text"]
        .as_str()
        .context("the node sent no signing text")?;
    let claims = PrescriptionClaims::parse(text.as_bytes())
        .ok()
        .context("the node's signing text is not a prescription")?;
    if claims.prescriber != keys.owner {
        bail!(
            "the prescription is {}'s to sign, and this key file is {}'s",
            claims.prescriber,
            keys.owner
        );
    }
    if claims.prescription != format!("MedicationRequest/{id}") {
        bail!("the node's signing text is for another prescription");
    }
    let signature = signing
        .sign_prescription(&claims)
        .ok()
        .context("the prescription cannot be signed")?;
    node.send_json(
        reqwest::Method::POST,
        &format!("api/prescriptions/{id}/activate"),
        &json!({
            "version": t["version"],
            "time": claims.time,
            "signature": signature.to_base64(),
            "key": signing.public().to_base64(),
        }),
    )
    .await
}

/// What offline verification found.
#[derive(Debug)]
pub struct Verified {
    /// The claims the signature covers.
    pub claims: UploadClaims,
    /// The signer's public key.
    pub key: String,
}

/// Checks `file` against a Provenance's signature: the digest, then the Ed25519 signature
/// over the claims, with the key in the Provenance or the pinned `expected_key`.
///
/// # Errors
/// When anything does not match; the message says what.
pub async fn verify_offline(
    file: &Path,
    provenance: &Value,
    expected_key: Option<&str>,
) -> Result<Verified> {
    if provenance["resourceType"] != "Provenance" {
        bail!("the provenance file holds no Provenance resource");
    }
    let claims_text = provenance["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["url"] == EXT_SIGNED_CLAIMS)
        .and_then(|e| e["valueBase64Binary"].as_str())
        .and_then(|b| STANDARD.decode(b).ok())
        .context("the Provenance carries no signed claims")?;
    let sig = provenance["signature"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["sigFormat"] == SIG_FORMAT)
        .context("the Provenance carries no medmesh upload signature")?;
    let signature = UploadSignature::from_base64(sig["data"].as_str().unwrap_or_default())
        .ok()
        .context("the signature is malformed")?;
    let key_text = match expected_key {
        Some(k) => k.to_string(),
        None => sig["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["url"] == EXT_SIGNING_KEY)
            .and_then(|e| e["valueBase64Binary"].as_str())
            .context("the Provenance names no signing key; pass --key")?
            .to_string(),
    };
    let key = UserPublicKey::from_base64(&key_text)
        .ok()
        .context("the signing key is malformed")?;
    let claims = UploadClaims::parse(&claims_text)
        .ok()
        .context("the signed claims are malformed")?;
    let (digest, _) = sha256_file(file).await?;
    if digest != claims.sha256 {
        bail!("the file's SHA-256 is not the signed one: the file was changed");
    }
    key.verify(&claims, &signature)
        .ok()
        .context("the signature does not verify for these claims and key")?;
    Ok(Verified {
        claims,
        key: key.to_base64(),
    })
}

impl Verified {
    /// One line saying who signed what, for, when and on which device, with which key.
    pub fn summary(&self) -> String {
        format!(
            "{} signed SHA-256 {} for {} at {} on {} (type {}), key {}",
            self.claims.author,
            hex::encode(self.claims.sha256),
            self.claims.patient,
            self.claims.time,
            self.claims.device,
            self.claims.doc_type,
            self.key
        )
    }
}

/// The verdict on a document's signature.
#[derive(Debug)]
pub enum Verification {
    /// The signature holds.
    Verified(Verified),
    /// It does not; the reason says why.
    NotVerified(String),
}

/// `medmesh verify FILE --provenance P`.
///
/// # Errors
/// When the provenance file cannot be read or is not JSON (a signature that does not hold
/// is a [`Verification::NotVerified`], not an error).
pub async fn verify_file(
    file: &Path,
    provenance: &Path,
    key: Option<&str>,
) -> Result<Verification> {
    let p: Value = serde_json::from_slice(
        &std::fs::read(provenance)
            .with_context(|| format!("cannot read {}", provenance.display()))?,
    )
    .context("the provenance file is not JSON")?;
    Ok(match verify_offline(file, &p, key).await {
        Ok(v) => Verification::Verified(v),
        Err(e) => Verification::NotVerified(chain(&e)),
    })
}

/// An error and its causes, as one line.
fn chain(e: &DocClientError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `medmesh doc verify BINARY`: downloads the bytes and their Provenance and verifies
/// them, and that the signing key is the author's in the directory.
///
/// # Errors
/// When the node refuses or cannot be reached, or the download cannot be kept.
pub async fn verify_remote(node: &NodeClient, binary: &str) -> Result<Verification> {
    let bundle = node
        .get_json(&format!("fhir/Provenance?target=Binary/{binary}"))
        .await?;
    let Some(provenance) = bundle["entry"][0].get("resource").cloned() else {
        return Ok(Verification::NotVerified(
            "this document has no signature".into(),
        ));
    };
    let r = node.download(binary).await?;
    let tmp = tempfile::NamedTempFile::new().context("cannot make a temporary file")?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file());
        let mut body = r.bytes_stream();
        while let Some(piece) = body.next().await {
            w.write_all(&piece.context("the download broke off")?)?;
        }
        w.flush()?;
    }
    let v = match verify_offline(tmp.path(), &provenance, None).await {
        Ok(v) => v,
        Err(e) => return Ok(Verification::NotVerified(chain(&e))),
    };
    let signers = node.verified_keys(&v.claims.author, &["signing"]).await?;
    if !signers.iter().any(|(_, _, pk)| *pk == v.key) {
        return Ok(Verification::NotVerified(format!(
            "the signing key is not {}'s in the directory",
            v.claims.author
        )));
    }
    Ok(Verification::Verified(v))
}
