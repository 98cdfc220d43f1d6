//! `medmesh`: one binary. `serve` runs a node, `import` loads FHIR files, `admin token`
//! mints an access token, `admin create-user` creates an account.

mod config;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use medmesh_auth::Role;
use medmesh_identity::accounts::NewUser;
use medmesh_identity::oauth::IssuedGrant;
use medmesh_identity::{IdentityConfig, IdentityService, OsRandom};
use medmesh_records::import::{ImportFailure, ImportSummary};
use medmesh_records::{
    AuditLogService, MonotonicClock, RecordService, RequestContext, SystemClock, UuidIds,
};
use medmesh_store::SecretSealer;
use medmesh_store_sql::Stores;

use crate::config::{Config, Overrides};

/// Writes a line to stdout. A closed pipe (`medmesh import ... | head`) ends the output
/// quietly instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod doc;
mod keys;

/// mimalloc: FHIR processing allocates many small JSON values, and glibc's allocator spent a
/// third of import CPU time on them (see bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "medmesh",
    version,
    about = "A FHIR R4 node for sharing medical records, with the patient in control"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct StoreArgs {
    /// Data directory (SQLite file, export files).
    #[arg(long, env = "MEDMESH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://...); without it, SQLite in the data directory.
    #[arg(long, env = "MEDMESH_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Settings file (TOML).
    #[arg(long, env = "MEDMESH_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on.
        #[arg(long, env = "MEDMESH_LISTEN")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Load FHIR Bundles, resources and NDJSON files (or folders of them) into the store.
    Import {
        #[command(flatten)]
        store: StoreArgs,
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Files worked on at once: one parses and validates while another writes.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
        /// Write a JSON object mapping each entry's `fullUrl` to the `Type/id` it is stored
        /// under (import assigns ids, as a FHIR transaction does).
        #[arg(long, value_name = "FILE")]
        id_map: Option<PathBuf>,
    },
    /// Administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// The tamper-evident audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Documents from your own device: signed uploads and end-to-end sealed documents, against
    /// a running node (your private keys stay in your key file).
    Doc {
        #[command(subcommand)]
        command: DocCommand,
    },
    /// Verify a downloaded document against its Provenance, offline: its SHA-256, and the
    /// Ed25519 signature over the digest, author, patient, time, device and type. Exits 0
    /// when it verifies, 1 when it does not.
    Verify {
        /// The document's bytes (for a sealed document, the sealed bytes as stored).
        file: PathBuf,
        /// The Provenance resource (JSON) that carries the signature.
        #[arg(long)]
        provenance: PathBuf,
        /// Expect this signing key (base64), instead of the one the Provenance names.
        #[arg(long)]
        key: Option<String>,
    },
    /// Encryption keys: status, KEK rotation, full re-encryption.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

/// Where a `doc` command finds the node, and who it is there.
#[derive(clap::Args, Clone)]
struct NodeArgs {
    /// The node's address (`http://127.0.0.1:8080`).
    #[arg(long, env = "MEDMESH_NODE", default_value = "http://127.0.0.1:8080")]
    node: String,
    /// A bearer token for the node (better in MEDMESH_TOKEN than on the command line).
    #[arg(long, env = "MEDMESH_TOKEN", hide_env_values = true)]
    token: String,
}

/// What a `doc` upload says about the document.
#[derive(clap::Args, Clone)]
struct UploadArgs {
    /// Whose document (a Patient id).
    #[arg(long)]
    patient: String,
    /// A title (the node can read it; leave it out for a sealed document you want untitled).
    #[arg(long)]
    title: Option<String>,
    /// The document type, `system|code` (default LOINC 34133-9, summary of episode note).
    #[arg(long = "type")]
    doc_type: Option<String>,
}

#[derive(Subcommand)]
enum DocCommand {
    /// Make a key file: an Ed25519 signing key and an X25519 sealing key (mode 0600), and
    /// with --recovery-file a recovery key in a file of its own, to keep offline.
    Keygen {
        /// The key file to create.
        #[arg(long, env = "MEDMESH_KEY_FILE")]
        key_file: PathBuf,
        /// Whose keys: Patient/<id> or Practitioner/<id>.
        #[arg(long)]
        owner: String,
        /// Also make a recovery key in this file.
        #[arg(long)]
        recovery_file: Option<PathBuf>,
    },
    /// Publish your public keys in the node's directory, each in a statement signed by your
    /// signing key.
    Register {
        #[command(flatten)]
        node: NodeArgs,
        /// Your key file.
        #[arg(long, env = "MEDMESH_KEY_FILE")]
        key_file: PathBuf,
        /// Also publish this recovery key (the file can go offline afterwards).
        #[arg(long)]
        recovery_file: Option<PathBuf>,
    },
    /// Upload a document signed by you (not sealed: the node can read it).
    Upload {
        #[command(flatten)]
        node: NodeArgs,
        #[arg(long, env = "MEDMESH_KEY_FILE")]
        key_file: PathBuf,
        #[command(flatten)]
        meta: UploadArgs,
        /// Its content type (default: the node recognises it).
        #[arg(long)]
        content_type: Option<String>,
        /// The file.
        file: PathBuf,
    },
    /// Seal a document for yourself, the patient and each --to, sign it and upload it. The
    /// node stores ciphertext it cannot open. Prints the Binary id.
    Seal {
        #[command(flatten)]
        node: NodeArgs,
        #[arg(long, env = "MEDMESH_KEY_FILE")]
        key_file: PathBuf,
        #[command(flatten)]
        meta: UploadArgs,
        /// Also seal for this owner (`Practitioner/gp`); repeatable.
        #[arg(long)]
        to: Vec<String>,
        /// The file.
        file: PathBuf,
    },
    /// Share a sealed document with another owner's sealing keys (you must hold a key).
    Share {
        #[command(flatten)]
        node: NodeArgs,
        #[arg(long, env = "MEDMESH_KEY_FILE")]
        key_file: PathBuf,
        /// The sealed document's Binary id.
        binary: String,
        /// Who gets it (`Practitioner/gp`).
        #[arg(long)]
        to: String,
    },
    /// List who holds a key to a sealed document (its patient only).
    Shares {
        #[command(flatten)]
        node: NodeArgs,
        /// The sealed document's Binary id.
        binary: String,
    },
    /// Revoke an owner's keys from a sealed document (the patient, or whoever shared).
    Revoke {
        #[command(flatten)]
        node: NodeArgs,
        /// The sealed document's Binary id.
        binary: String,
        /// Whose keys to remove (`Practitioner/gp`).
        #[arg(long)]
        from: String,
    },
    /// Download and open a sealed document; the output appears only once it authenticates.
    Open {
        #[command(flatten)]
        node: NodeArgs,
        /// Your key file, or a recovery-key file.
        #[arg(long, env = "MEDMESH_KEY_FILE")]
        key_file: PathBuf,
        /// The sealed document's Binary id.
        binary: String,
        /// Where to write it (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Download a document and its Provenance and verify the signature, and that the key is
    /// the author's in the directory. Exits 1 when it does not verify.
    Verify {
        #[command(flatten)]
        node: NodeArgs,
        /// The Binary id.
        binary: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Show the KEKs in the key file, how many data keys each wraps, and re-encryption
    /// progress.
    Status {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Put a new KEK in the key file and re-wrap every data key under it (online; the data
    /// is not re-encrypted). Then remove the old KEK, unless --keep-old.
    Rotate {
        #[command(flatten)]
        store: StoreArgs,
        /// Keep older KEKs in the file (replicas still have the old file): remove them later
        /// with `medmesh keys retire`.
        #[arg(long)]
        keep_old: bool,
    },
    /// Remove older KEKs from the key file, once no data key is wrapped under them.
    Retire {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Re-encrypt everything under fresh data keys and rebuild the blind indexes. Resumable:
    /// run it again after an interruption. Also seals a database written before encryption
    /// at rest (then with every node stopped).
    Reencrypt {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Re-derive the whole Merkle tree from storage and check every signed checkpoint.
    /// Exits 0 only if the whole log checks out; otherwise names the first bad entry and
    /// exits 1.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// Check checkpoints with this key only (signed-note verifier key, as served at
        /// /api/audit/key), instead of the keys stored beside the log. Repeatable.
        #[arg(long = "trusted-key")]
        trusted_keys: Vec<String>,
    },
    /// Sign a checkpoint of the current tree now and print it.
    Checkpoint {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Erase a patient: delete every resource in their compartment, destroy their data
    /// keys (audited), then rotate the KEK so that copies of those keys in backups are
    /// useless too.
    ErasePatient {
        #[command(flatten)]
        store: StoreArgs,
        /// The Patient resource id.
        patient: String,
        /// The same id again, to confirm.
        #[arg(long)]
        confirm: String,
    },
    /// Print a signed access token.
    Token {
        #[command(flatten)]
        store: StoreArgs,
        /// SMART scopes, e.g. 'system/*.*'.
        #[arg(long)]
        scope: String,
        /// Lifetime, e.g. 1h or 30m.
        #[arg(long, default_value = "1h")]
        ttl: humantime::Duration,
        /// Subject the token speaks for.
        #[arg(long, default_value = "admin")]
        user: String,
        /// Patient context, for patient/ scopes.
        #[arg(long)]
        patient: Option<String>,
    },
    /// Create an account. The password is read from stdin (one line).
    CreateUser {
        #[command(flatten)]
        store: StoreArgs,
        /// patient, practitioner, org-admin, researcher or node-admin.
        #[arg(long)]
        role: String,
        /// Login name.
        #[arg(long)]
        username: String,
        /// The Patient a patient account is linked to: its id, or `identifier=SYSTEM|VALUE`
        /// (for records imported from files, whose ids the node assigned).
        #[arg(long)]
        patient: Option<String>,
        /// The Practitioner resource id a practitioner account is linked to.
        #[arg(long)]
        practitioner: Option<String>,
        /// The PractitionerRole resource id (practitioners).
        #[arg(long)]
        practitioner_role: Option<String>,
        /// Specialty code (practitioners), e.g. SNOMED CT 394579002 (cardiology).
        #[arg(long)]
        specialty: Option<String>,
        /// Organization id.
        #[arg(long)]
        organization: Option<String>,
        /// Practitioner verification status: unverified (default), verified or suspended.
        #[arg(long, default_value = "unverified")]
        verification: String,
    },
}

fn load_config(store: &StoreArgs, listen: Option<std::net::SocketAddr>) -> anyhow::Result<Config> {
    Config::load(&Overrides {
        data_dir: store.data_dir.clone(),
        listen,
        database_url: store.database_url.clone(),
        config: store.config.clone(),
    })
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn open_store(cfg: &Config) -> anyhow::Result<Stores> {
    open_store_with(cfg, &medmesh_store_sql::StoreOptions::default()).await
}

async fn open_store_with(
    cfg: &Config,
    options: &medmesh_store_sql::StoreOptions,
) -> anyhow::Result<Stores> {
    medmesh_store_sql::open_with(
        cfg.database_url.as_ref().map(|s| s.0.as_str()),
        &cfg.data_dir,
        options,
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot open the store: {e}"))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what service managers and orchestrators send).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down: no new connections; draining requests in flight");
}

async fn record_service(stores: &Stores, cfg: &Config) -> anyhow::Result<Arc<RecordService>> {
    let ring = keys::open_key_ring(stores, cfg, keys::Sealing::Normal).await?;
    record_service_with(stores, cfg, ring.as_ref())
}

/// The record service, sealing with `ring` when encryption at rest is on.
fn record_service_with(
    stores: &Stores,
    cfg: &Config,
    ring: Option<&keys::KeyRing>,
) -> anyhow::Result<Arc<RecordService>> {
    let defs = medmesh_fhir::definitions().map_err(|e| anyhow::anyhow!(e))?;
    let mut svc = RecordService::new(
        stores.records.clone(),
        defs,
        Arc::new(MonotonicClock::new(SystemClock)),
        Arc::new(UuidIds),
    )
    .with_trust(medmesh_records::trust::TrustConfig {
        break_glass_micros: cfg.break_glass_minutes * 60 * 1_000_000,
        encounter_window_micros: cfg.encounter_window_days * 86_400 * 1_000_000,
        label_rules: cfg.label_rules.clone(),
    });
    if let Some(r) = ring {
        svc = svc.with_encryption(r.at_rest.clone());
    }
    let blobs = match &cfg.blob_store {
        config::BlobStoreConfig::Folder(dir) => medmesh_blobs::ObjectBlobStore::local(dir),
        config::BlobStoreConfig::S3(s3) => medmesh_blobs::ObjectBlobStore::s3(s3),
    }
    .map_err(|e| anyhow::anyhow!("cannot open the blob store: {e}"))?;
    svc = svc.with_blobs(Arc::new(blobs), cfg.max_document_bytes);
    Ok(Arc::new(svc))
}

/// The identity service for an issuer. Signing keys live in the store (sealed by `secrets`),
/// so every replica on one database (and the CLI) signs and verifies with the same rotating
/// keys.
async fn identity_service_with(
    stores: &Stores,
    cfg: &Config,
    issuer: String,
    secrets: Option<Arc<dyn SecretSealer>>,
) -> anyhow::Result<Arc<IdentityService>> {
    let mut ic = IdentityConfig::new(issuer);
    ic.extra_issuers = vec![cfg.issuer.clone()];
    ic.access_ttl = cfg.access_token_ttl;
    ic.token_times = medmesh_auth::token::TokenTimes {
        leeway: cfg.token_leeway,
        max_lifetime: cfg.max_token_lifetime,
    };
    ic.key_rotation = cfg.key_rotation;
    ic.allow_self_registration = cfg.allow_self_registration;
    ic.open_client_registration = cfg.open_client_registration;
    for o in &cfg.oidc {
        let mut role_map = std::collections::BTreeMap::new();
        for (theirs, ours) in &o.role_map {
            let role: Role = ours
                .parse()
                .map_err(|e| anyhow::anyhow!("[[oidc]] {}: {e}", o.id))?;
            if role == Role::NodeAdmin {
                bail!(
                    "[[oidc]] {}: node-admin cannot come from an external provider",
                    o.id
                );
            }
            role_map.insert(theirs.clone(), role);
        }
        ic.external
            .push(medmesh_identity::external::ExternalProvider {
                id: o.id.clone(),
                name: o.name.clone().unwrap_or_else(|| o.id.clone()),
                issuer: o.issuer.trim_end_matches('/').to_string(),
                client_id: o.client_id.clone(),
                client_secret: o.client_secret.0.clone(),
                role_claim: o
                    .role_claim
                    .clone()
                    .unwrap_or_else(|| "realm_access.roles".into()),
                role_map,
                username_claim: o
                    .username_claim
                    .clone()
                    .unwrap_or_else(|| "preferred_username".into()),
                fhir_user_claim: o.fhir_user_claim.clone(),
                api_audience: o.api_audience.clone(),
                api_scope_ceiling: o
                    .api_scope_ceiling
                    .clone()
                    .unwrap_or_else(|| "user/*.cruds patient/*.cruds".into()),
            });
    }
    IdentityService::start(
        stores.identity.clone(),
        ic,
        Arc::new(MonotonicClock::new(SystemClock)),
        Arc::new(OsRandom),
        secrets,
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot start identity: {e}"))
}

/// What seals the node's own secrets (signing keys, TOTP seeds, the audit log's key): the
/// key ring, when encryption at rest is on.
fn secret_sealer(ring: Option<&keys::KeyRing>) -> Option<Arc<dyn SecretSealer>> {
    ring.map(|r| r.at_rest.clone() as Arc<dyn SecretSealer>)
}

/// The identity service, opening the key ring for its secrets.
async fn identity_service(
    stores: &Stores,
    cfg: &Config,
    issuer: String,
) -> anyhow::Result<Arc<IdentityService>> {
    let ring = keys::open_key_ring(stores, cfg, keys::Sealing::Normal).await?;
    identity_service_with(stores, cfg, issuer, secret_sealer(ring.as_ref())).await
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let stores = open_store_with(
        &cfg,
        &medmesh_store_sql::StoreOptions {
            statement_timeout: Some(cfg.statement_timeout),
            ..Default::default()
        },
    )
    .await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    // The authorization server's issuer is the node's public origin.
    let issuer = public_origin(&cfg, addr);
    let ring = keys::open_key_ring(&stores, &cfg, keys::Sealing::Normal).await?;
    let sealer = secret_sealer(ring.as_ref());
    let identity = identity_service_with(&stores, &cfg, issuer.clone(), sealer.clone()).await?;
    let records = record_service_with(&stores, &cfg, ring.as_ref())?;
    let audit_log = audit_log_service(&stores, &audit_origin(&cfg, &issuer), sealer).await?;
    let files = Arc::new(medmesh_blobs::LocalExportFiles::new(
        cfg.data_dir.join("exports"),
    ));
    let state = medmesh_server::build_state(
        records,
        identity,
        files,
        audit_log.clone(),
        medmesh_server::ServerConfig {
            public_base_url: cfg.public_base_url.clone(),
            body_limits: medmesh_server::BodyLimits {
                max_body_bytes: cfg.max_body_bytes,
                max_json_values: cfg.max_json_values,
                max_bundle_entries: cfg.max_bundle_entries,
            },
            cors_allowed_origins: cfg.cors_allowed_origins.clone(),
            software_version: env!("CARGO_PKG_VERSION").into(),
            audit_checkpoint_interval: cfg.audit_checkpoint_interval,
        },
    )
    .await;
    tracing::info!(%addr, data_dir = %cfg.data_dir.display(), postgres = cfg.database_url.is_some(), "medmesh is serving FHIR at http://{addr}/fhir");
    outln!("medmesh listening on http://{addr}");
    medmesh_server::serve(listener, state, cfg.connections, shutdown_signal()).await?;
    // Every entry is already committed with its data; a last signed checkpoint covers the
    // newest of them, so the log's head is signed when the node stops.
    if let Err(e) = audit_log.checkpoint_now().await {
        tracing::error!(error = %e, "cannot sign the final audit checkpoint");
    }
    tracing::info!("medmesh stopped");
    Ok(())
}

/// The node's public origin: the public base URL without `/fhir`, else `http://` and the
/// address served on.
fn public_origin(cfg: &Config, addr: std::net::SocketAddr) -> String {
    match &cfg.public_base_url {
        Some(b) => b
            .trim_end_matches('/')
            .trim_end_matches("/fhir")
            .to_string(),
        None => format!("http://{addr}"),
    }
}

/// The audit log's name: the configured one, else the public origin without its scheme,
/// plus `/audit`. `serve` and the CLI derive it the same way, so both sign with one key.
fn audit_origin(cfg: &Config, public_origin: &str) -> String {
    cfg.audit_origin.clone().unwrap_or_else(|| {
        let host = public_origin
            .split_once("://")
            .map_or(public_origin, |(_, h)| h)
            .trim_end_matches('/');
        format!("{host}/audit")
    })
}

async fn audit_log_service(
    stores: &Stores,
    origin: &str,
    secrets: Option<Arc<dyn SecretSealer>>,
) -> anyhow::Result<Arc<AuditLogService>> {
    let mut secret = [0u8; 32];
    medmesh_identity::Random::fill(&OsRandom, &mut secret);
    let log = AuditLogService::open(
        stores.audit.clone(),
        origin,
        secret,
        Arc::new(MonotonicClock::new(SystemClock)),
        secrets,
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot open the audit log: {e}"))?;
    Ok(Arc::new(log))
}

/// After `keys reencrypt`: seals the node's own secrets again under a fresh data key
/// (signing keys, TOTP seeds, every audit log key), those stored in clear before included.
async fn reseal_node_secrets(stores: &Stores, cfg: &Config) -> anyhow::Result<()> {
    let Some(ring) = keys::open_key_ring(stores, cfg, keys::Sealing::Normal).await? else {
        return Ok(());
    };
    ring.at_rest
        .replace_key(medmesh_records::at_rest::NODE_SECRETS_OWNER)
        .await
        .map_err(|e| anyhow::anyhow!("cannot make a fresh key for the node's secrets: {e}"))?;
    let sealer = secret_sealer(Some(&ring));
    let identity = identity_service_with(stores, cfg, cfg.issuer.clone(), sealer.clone()).await?;
    let mut resealed = identity
        .reseal_secrets()
        .await
        .map_err(|e| anyhow::anyhow!("cannot re-seal the signing keys and TOTP seeds: {e}"))?;
    let names = stores
        .audit
        .log_public_keys()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the audit log keys: {e}"))?;
    for (name, _) in names {
        audit_log_service(stores, &name, sealer.clone())
            .await?
            .reseal_key()
            .await
            .map_err(|e| anyhow::anyhow!("cannot re-seal an audit log key: {e}"))?;
        resealed += 1;
    }
    outln!("re-sealed {resealed} node secrets (signing keys, TOTP seeds, audit log keys)");
    Ok(())
}

async fn audit_verify(cfg: Config, trusted_keys: &[String]) -> anyhow::Result<bool> {
    let trusted = trusted_keys
        .iter()
        .map(|k| {
            medmesh_audit::checkpoint::LogVerifierKey::from_note_key(k).map_err(|_| {
                anyhow::anyhow!("--trusted-key: expected name+hash+base64 Ed25519 key")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let stores = open_store(&cfg).await?;
    #[allow(clippy::disallowed_methods)] // A stopwatch for the report, not a time of record.
    let started = Instant::now();
    let report = medmesh_records::verify_log(stores.audit.as_ref(), &trusted)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the audit log: {e}"))?;
    match report {
        Ok(r) => {
            let secs = started.elapsed().as_secs_f64();
            outln!(
                "audit log OK: {} entries, {} signed checkpoints, root {} ({:.2}s, {:.0} entries/s)",
                r.entries,
                r.checkpoints,
                r.root.map(hex_hash).unwrap_or_else(|| "(empty)".into()),
                secs,
                r.entries as f64 / secs.max(1e-9)
            );
            Ok(true)
        }
        Err(problem) => {
            eprintln!("audit log FAILED: {problem}");
            Ok(false)
        }
    }
}

fn hex_hash(h: [u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot read folder {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            entries.sort();
            out.extend(collect_files(&entries)?);
        } else if p.is_file() {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default();
            if matches!(ext, "json" | "ndjson") {
                out.push(p.clone());
            } else if paths.contains(p) {
                bail!("{}: not a .json or .ndjson file", p.display());
            }
        } else {
            bail!("{}: no such file or folder", p.display());
        }
    }
    Ok(out)
}

async fn import_file(
    records: &RecordService,
    ctx: &RequestContext,
    path: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> ImportSummary {
    let name = path.display().to_string();
    let fail = |reason: String| ImportSummary {
        failures: vec![ImportFailure {
            file: name.clone(),
            entry: None,
            reason,
        }],
        ..ImportSummary::default()
    };
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) => return fail(format!("cannot read: {e}")),
    };
    if path.extension().is_some_and(|e| e == "ndjson") {
        return records
            .import_ndjson(ctx, &name, &String::from_utf8_lossy(&bytes), progress)
            .await;
    }
    match medmesh_fhir::resource::parse_json_object(&bytes) {
        Ok(doc) => {
            let s = records.import_json(ctx, &name, doc).await;
            progress(s.total());
            s
        }
        Err(issue) => fail(issue.diagnostics),
    }
}

async fn import(
    cfg: Config,
    paths: Vec<PathBuf>,
    jobs: u16,
    id_map: Option<PathBuf>,
) -> anyhow::Result<bool> {
    let files = collect_files(&paths)?;
    let stores = open_store(&cfg).await?;
    let records = record_service(&stores, &cfg).await?;
    let ctx = keys::local_ctx("import");
    let total_bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = indicatif::ProgressBar::new(total_bytes);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    #[allow(clippy::disallowed_methods)] // A stopwatch for the report, not a time of record.
    let started = Instant::now();
    let done = AtomicU64::new(0);
    let progress = |n: u64| {
        let d = done.fetch_add(n, Ordering::Relaxed) + n;
        let rate = d as f64 / started.elapsed().as_secs_f64().max(0.001);
        bar.set_message(format!("{d} resources, {rate:.0}/s"));
    };
    let mut summary = ImportSummary::default();
    let mut retry = Vec::new();
    let mut results = futures::stream::iter(files.iter())
        .map(|f| {
            let (records, ctx, progress, bar) = (&records, &ctx, &progress, &bar);
            async move {
                let s = import_file(records, ctx, f, progress).await;
                bar.inc(std::fs::metadata(f).map(|m| m.len()).unwrap_or(0));
                (f.clone(), s)
            }
        })
        .buffer_unordered(usize::from(jobs));
    while let Some((f, s)) = results.next().await {
        // A bundle whose conditional reference points at data in a later file gets a second try.
        if s.failures
            .iter()
            .any(|x| x.reason.contains("matched nothing"))
        {
            retry.push(f);
        } else {
            summary.merge(s);
        }
    }
    drop(results);
    for f in &retry {
        summary.merge(import_file(&records, &ctx, f, &progress).await);
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    outln!(
        "Imported {} resources from {} files in {:.1}s ({:.0} resources/s)",
        summary.total(),
        files.len(),
        secs,
        summary.total() as f64 / secs.max(0.001)
    );
    outln!(
        "  created {}, updated {}, unchanged {}",
        summary.created,
        summary.updated,
        summary.unchanged
    );
    if let Some(path) = &id_map {
        let map: serde_json::Map<String, serde_json::Value> = summary
            .ids
            .iter()
            .map(|(from, to)| (from.clone(), serde_json::Value::String(to.clone())))
            .collect();
        std::fs::write(path, serde_json::to_vec_pretty(&map)?)
            .with_context(|| format!("cannot write the id map to {}", path.display()))?;
        outln!("  id map: {} entries in {}", map.len(), path.display());
    }
    for (t, n) in &summary.counts {
        outln!("  {t:<32} {n}");
    }
    if !summary.failures.is_empty() {
        outln!("{} failures:", summary.failures.len());
        for f in &summary.failures {
            match f.entry {
                Some(e) => outln!("  {} entry {e}: {}", f.file, f.reason),
                None => outln!("  {}: {}", f.file, f.reason),
            }
        }
    }
    Ok(summary.failures.is_empty())
}

/// Mints a token. With `--user NAME` naming an account, the token speaks for that account:
/// its id, role and FHIR user, with the scopes cut to what the role allows.
async fn admin_token(
    cfg: Config,
    scope: String,
    ttl: Duration,
    user: String,
    patient: Option<String>,
) -> anyhow::Result<()> {
    if medmesh_auth::parse_scopes(&scope).is_empty() {
        bail!(
            "--scope must hold at least one SMART scope such as 'system/*.*' or 'user/Patient.rs'"
        );
    }
    let stores = open_store(&cfg).await?;
    let identity = identity_service(&stores, &cfg, cfg.issuer.clone()).await?;
    let account = stores
        .identity
        .user_by_username(&user)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let grant = match account {
        Some(u) => {
            let requested: Vec<String> = scope.split_whitespace().map(str::to_string).collect();
            let scope = medmesh_identity::oauth::scopes_for_user(&u, &requested).join(" ");
            if medmesh_auth::parse_scopes(&scope).is_empty() {
                bail!("the role '{}' allows none of those scopes", u.role);
            }
            IssuedGrant {
                subject: u.id.clone(),
                scope,
                patient: if u.role == "patient" {
                    u.patient_id.clone()
                } else {
                    patient
                },
                role: Some(u.role.clone()),
                client_id: None,
                fhir_user: medmesh_identity::oauth::fhir_user_of(&u),
                ttl: Some(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2)),
            }
        }
        None => IssuedGrant {
            subject: user,
            scope,
            patient,
            role: None,
            client_id: None,
            fhir_user: None,
            ttl: Some(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2)),
        },
    };
    let (token, _) = identity
        .mint_access(&grant)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    outln!("{token}");
    Ok(())
}

/// The one Patient with an identifier (`SYSTEM|VALUE`, or a bare value): how an account is
/// linked to a record imported from a file, whose ids the node assigned.
async fn patient_by_identifier(
    records: &RecordService,
    identifier: &str,
) -> anyhow::Result<String> {
    let ctx = keys::local_ctx("create-user");
    let bundle = records
        .search(
            &ctx,
            "Patient",
            &[
                ("identifier".to_string(), identifier.to_string()),
                ("_count".to_string(), "2".to_string()),
            ],
            medmesh_fhir::search::Handling::Strict,
        )
        .await
        .map_err(|e| anyhow::anyhow!("cannot search for the patient: {e}"))?;
    let ids: Vec<String> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["search"]["mode"] == "match")
        .filter_map(|e| e["resource"]["id"].as_str().map(str::to_string))
        .collect();
    match ids.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no Patient has that identifier"),
        _ => bail!("several Patients have that identifier; name one by id"),
    }
}

/// Creates an account, reading the password from stdin.
async fn create_user(cfg: Config, new: NewUser) -> anyhow::Result<()> {
    let stores = open_store(&cfg).await?;
    // The linked records must exist.
    let records = record_service(&stores, &cfg).await?;
    let mut new = new;
    if let Some(wanted) = new
        .patient_id
        .as_deref()
        .and_then(|p| p.strip_prefix("identifier="))
    {
        new.patient_id = Some(patient_by_identifier(&records, wanted).await?);
    }
    for (rt, id) in [
        ("Patient", &new.patient_id),
        ("Practitioner", &new.practitioner_id),
    ] {
        // Read as the operator, through the PDP and the audit log like any read.
        if let Some(id) = id
            && records
                .read(&keys::local_ctx("create-user"), rt, id)
                .await
                .is_err()
        {
            bail!("{rt}/{id} does not exist; create it first");
        }
    }
    let identity = identity_service(&stores, &cfg, cfg.issuer.clone()).await?;
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("cannot read the password from stdin")?;
    new.password = password.trim_end_matches(['\r', '\n']).to_string();
    let created = identity
        .create_user(new)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    outln!("{}", created.id);
    if let Some(uri) = created.totp_uri {
        outln!("{uri}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = run(cli).await;
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("medmesh: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Runs a `doc` command.
async fn run_doc(command: DocCommand) -> anyhow::Result<bool> {
    let client = |n: &NodeArgs| doc::NodeClient::new(&n.node, &n.token);
    let meta = |m: UploadArgs, content_type: Option<String>| doc::UploadMeta {
        patient: m.patient,
        title: m.title,
        doc_type: m.doc_type,
        content_type,
    };
    match command {
        DocCommand::Keygen {
            key_file,
            owner,
            recovery_file,
        } => doc::keygen(&key_file, &owner, recovery_file.as_deref())?,
        DocCommand::Register {
            node,
            key_file,
            recovery_file,
        } => {
            let recovery = recovery_file
                .as_deref()
                .map(doc::KeyFile::read)
                .transpose()?;
            doc::register(
                &client(&node)?,
                &doc::KeyFile::read(&key_file)?,
                recovery.as_ref(),
            )
            .await?;
        }
        DocCommand::Upload {
            node,
            key_file,
            meta: m,
            content_type,
            file,
        } => {
            doc::upload(
                &client(&node)?,
                &doc::KeyFile::read(&key_file)?,
                &file,
                &meta(m, content_type),
            )
            .await?;
        }
        DocCommand::Seal {
            node,
            key_file,
            meta: m,
            to,
            file,
        } => {
            doc::seal(
                &client(&node)?,
                &doc::KeyFile::read(&key_file)?,
                &file,
                &meta(m, None),
                &to,
            )
            .await?;
        }
        DocCommand::Share {
            node,
            key_file,
            binary,
            to,
        } => {
            doc::share(
                &client(&node)?,
                &doc::KeyFile::read(&key_file)?,
                &binary,
                &to,
            )
            .await?
        }
        DocCommand::Shares { node, binary } => doc::shares(&client(&node)?, &binary).await?,
        DocCommand::Revoke { node, binary, from } => {
            return doc::revoke(&client(&node)?, &binary, &from).await;
        }
        DocCommand::Open {
            node,
            key_file,
            binary,
            out,
        } => {
            doc::open(
                &client(&node)?,
                &doc::KeyFile::read(&key_file)?,
                &binary,
                &out,
            )
            .await?
        }
        DocCommand::Verify { node, binary } => {
            return doc::verify_remote(&client(&node)?, &binary).await;
        }
    }
    Ok(true)
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.command {
        Command::Doc { command } => run_doc(command).await,
        Command::Verify {
            file,
            provenance,
            key,
        } => doc::verify_file(&file, &provenance, key.as_deref()).await,
        Command::Serve { store, listen } => {
            let cfg = load_config(&store, listen)?;
            init_logging(&cfg.log);
            serve(cfg).await?;
            Ok(true)
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    store,
                    trusted_keys,
                },
        } => {
            let cfg = load_config(&store, None)?;
            init_logging("warn");
            audit_verify(cfg, &trusted_keys).await
        }
        Command::Audit {
            command: AuditCommand::Checkpoint { store },
        } => {
            let cfg = load_config(&store, None)?;
            init_logging("warn");
            let stores = open_store(&cfg).await?;
            let origin = audit_origin(&cfg, &public_origin(&cfg, cfg.listen));
            let ring = keys::open_key_ring(&stores, &cfg, keys::Sealing::Normal).await?;
            let log = audit_log_service(&stores, &origin, secret_sealer(ring.as_ref())).await?;
            match log.checkpoint_now().await? {
                Some(c) => outln!("{}", c.text),
                None => outln!("the log is empty; nothing to sign"),
            }
            Ok(true)
        }
        Command::Keys { command } => {
            let (store, sealing) = match &command {
                KeysCommand::Reencrypt { store } => (store, keys::Sealing::Migrating),
                KeysCommand::Status { store }
                | KeysCommand::Rotate { store, .. }
                | KeysCommand::Retire { store } => (store, keys::Sealing::Normal),
            };
            let cfg = load_config(store, None)?;
            init_logging("warn");
            let stores = open_store(&cfg).await?;
            let ring = keys::open_key_ring(&stores, &cfg, sealing).await?;
            let records = record_service_with(&stores, &cfg, ring.as_ref())?;
            match command {
                KeysCommand::Status { .. } => keys::status(&records, ring).await?,
                KeysCommand::Rotate { keep_old, .. } => {
                    keys::rotate(&records, ring, keep_old).await?
                }
                KeysCommand::Retire { .. } => keys::retire_old(&records, ring).await?,
                KeysCommand::Reencrypt { .. } => {
                    keys::reencrypt(&records, ring, &stores).await?;
                    reseal_node_secrets(&stores, &cfg).await?;
                }
            }
            Ok(true)
        }
        Command::Admin {
            command:
                AdminCommand::ErasePatient {
                    store,
                    patient,
                    confirm,
                },
        } => {
            let cfg = load_config(&store, None)?;
            init_logging("warn");
            let stores = open_store(&cfg).await?;
            let ring = keys::open_key_ring(&stores, &cfg, keys::Sealing::Normal).await?;
            let records = record_service_with(&stores, &cfg, ring.as_ref())?;
            keys::erase_patient(&records, ring, &patient, &confirm).await?;
            Ok(true)
        }
        Command::Import {
            store,
            paths,
            jobs,
            id_map,
        } => {
            let cfg = load_config(&store, None)?;
            init_logging(&cfg.log);
            import(cfg, paths, jobs, id_map).await
        }
        Command::Admin {
            command:
                AdminCommand::Token {
                    store,
                    scope,
                    ttl,
                    user,
                    patient,
                },
        } => {
            let cfg = load_config(&store, None)?;
            init_logging("warn");
            admin_token(cfg, scope, ttl.into(), user, patient).await?;
            Ok(true)
        }
        Command::Admin {
            command:
                AdminCommand::CreateUser {
                    store,
                    role,
                    username,
                    patient,
                    practitioner,
                    practitioner_role,
                    specialty,
                    organization,
                    verification,
                },
        } => {
            let cfg = load_config(&store, None)?;
            init_logging("warn");
            let role: Role = role.parse().map_err(|e| {
                anyhow::anyhow!(
                    "{e}; one of patient, practitioner, org-admin, researcher, node-admin"
                )
            })?;
            let verification = verification.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            create_user(
                cfg,
                NewUser {
                    role: Some(role),
                    username,
                    password: String::new(),
                    patient_id: patient,
                    practitioner_id: practitioner,
                    practitioner_role_id: practitioner_role,
                    specialty,
                    organization,
                    verification,
                },
            )
            .await?;
            Ok(true)
        }
    }
}
