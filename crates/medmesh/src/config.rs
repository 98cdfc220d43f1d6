//! Configuration: one typed struct. Defaults, then the TOML file (`--config`), then
//! `MEDMESH_*` environment variables and command-line flags (clap reads both).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// A secret string (a database URL may hold a password). Debug never shows it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The settings file. Every field is optional; unknown fields are an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where the SQLite file and other node data live. Default `./medmesh-data`.
    pub data_dir: Option<PathBuf>,
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: Option<SocketAddr>,
    /// `postgres://...` to run on PostgreSQL; unset for SQLite in the data dir.
    pub database_url: Option<Secret>,
    /// Public FHIR base URL behind a proxy, e.g. `https://ehr.example.org/fhir`. Default: from
    /// the request's Host header.
    pub public_base_url: Option<String>,
    /// Issuer named in access tokens. Default `medmesh`.
    pub issuer: Option<String>,
    /// Largest request body in bytes. Default 32 MiB.
    pub max_body_bytes: Option<usize>,
    /// Log filter (tracing syntax). Default `info`.
    pub log: Option<String>,
    /// Access-token lifetime in seconds. Default 300.
    pub access_token_ttl: Option<i64>,
    /// Seconds a signing key signs before the next takes over. Default 604800 (7 days).
    pub key_rotation: Option<i64>,
    /// Whether patients may create accounts without an invitation. Default false.
    pub allow_self_registration: Option<bool>,
    /// Whether anyone may register OAuth clients (RFC 7591). Default false: admins only.
    pub open_client_registration: Option<bool>,
    /// The audit log's name in signed checkpoints. Default: the node's public host plus
    /// `/audit`. Changing it starts a new signing key (old checkpoints still verify).
    pub audit_origin: Option<String>,
    /// Seconds between signed audit checkpoints. Default 60; 0 signs only on demand.
    pub audit_checkpoint_interval: Option<u64>,
    /// Witnesses the audit log lists, each `KEY` or `KEY URL`: the witness's C2SP verifier
    /// key (`name+hash+base64`), and the `add-checkpoint` prefix the node pushes each new
    /// checkpoint to (without one, the witness pulls and posts its cosignature back).
    /// Default none.
    pub audit_witnesses: Option<Vec<String>>,
    /// How many listed witnesses a patient's client requires to have cosigned. Default 0.
    pub audit_witness_quorum: Option<usize>,
    /// Minutes a break-glass declaration lasts. Default 240 (4 hours).
    pub break_glass_minutes: Option<i64>,
    /// Days after an encounter that its organization keeps access. Default 90.
    pub encounter_window_days: Option<i64>,
    /// Encrypt record bodies under per-patient keys and store identifying search values as
    /// blind indexes. Default true. A database keeps the choice it was created with;
    /// turning it off is for benchmarks on throwaway data.
    pub encryption_at_rest: Option<bool>,
    /// The key-encryption-key file (mode 0600). Default `<data_dir>/master.key`, created at
    /// first start. With PostgreSQL replicas, every replica needs the same file.
    pub master_key_file: Option<PathBuf>,
    /// Keep the key-encryption key in AWS KMS (or a KMS-compatible service) instead of
    /// the key file: the KMS key id, ARN or alias. Default: unset (the key file).
    pub kms_key_id: Option<String>,
    /// KMS endpoint for a non-AWS service. Default: AWS in `kms_region`.
    pub kms_endpoint: Option<String>,
    /// KMS region. Default `us-east-1`.
    pub kms_region: Option<String>,
    /// KMS access key id.
    pub kms_access_key_id: Option<String>,
    /// KMS secret access key.
    pub kms_secret_access_key: Option<Secret>,
    /// Where document bytes are kept: a folder (default `<data_dir>/blobs`) or
    /// `s3://bucket` for an S3-compatible store (then the `s3_*` settings apply).
    pub blob_store: Option<String>,
    /// S3 endpoint for a non-AWS store (`http://127.0.0.1:9000`). Default: AWS.
    pub s3_endpoint: Option<String>,
    /// S3 region. Default `us-east-1`.
    pub s3_region: Option<String>,
    /// S3 access key id.
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key.
    pub s3_secret_access_key: Option<Secret>,
    /// The largest document accepted, bytes. Default 4 GiB.
    pub max_document_bytes: Option<u64>,
    /// Connections held open at once; past it a new one gets 503. Default 2048.
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a request's headers (also closes idle keep-alive
    /// connections). Default 10.
    pub header_read_timeout: Option<u64>,
    /// Seconds a connection may move no byte before it is closed. Default 60.
    pub idle_timeout: Option<u64>,
    /// Seconds shutdown waits for requests in flight. Default 30.
    pub drain_timeout: Option<u64>,
    /// Seconds one database statement may run (PostgreSQL) before it is cancelled. Default 30.
    pub statement_timeout: Option<u64>,
    /// Entries one Bundle may hold on the API. Default 1000.
    pub max_bundle_entries: Option<usize>,
    /// JSON values (objects, arrays, strings, numbers...) one body may hold. Default 200000.
    pub max_json_values: Option<usize>,
    /// Seconds of clock skew allowed when checking a token's times. Default 5.
    pub token_leeway: Option<i64>,
    /// The longest lifetime a token may have (from now to its `exp`), seconds. Longer ones
    /// are refused, and `admin token` will not mint them. Default 86400 (one day).
    pub max_token_lifetime: Option<i64>,
    /// Origins whose browser apps may call the FHIR API, the token endpoint and discovery
    /// documents (CORS), e.g. `["https://app.example.org"]`; `["*"]` for any. Default none.
    #[serde(default)]
    pub cors_allowed_origins: Vec<String>,
    /// Security-label derivation rules (`[[label_rule]]` tables). Default: ICD-10 F codes
    /// get PSY, ICD-10 HIV codes get HIV. Giving any replaces the defaults.
    #[serde(default)]
    pub label_rule: Vec<medmesh_policy::labels::LabelRule>,
    /// External OpenID Connect providers (`[[oidc]]` tables). Default none.
    #[serde(default)]
    pub oidc: Vec<OidcConfig>,
    /// Address to accept HL7 v2 over MLLP on. Default: off.
    pub mllp_listen: Option<SocketAddr>,
    /// The largest HL7 v2 message accepted over MLLP, bytes. Default 32 MiB.
    pub mllp_max_message_bytes: Option<usize>,
    /// MLLP over TLS: the node's certificate chain (PEM). Default: MLLP in clear.
    pub mllp_tls_certificate: Option<PathBuf>,
    /// MLLP over TLS: its private key (PEM).
    pub mllp_tls_private_key: Option<PathBuf>,
    /// Mutual TLS: the CAs (PEM) whose client certificates MLLP senders must present.
    pub mllp_tls_client_ca: Option<PathBuf>,
    /// HL7 v2 senders (`[[hl7_sender]]` tables). Default none: every sender is refused.
    #[serde(default)]
    pub hl7_sender: Vec<Hl7SenderConfig>,
    /// Outbound HL7 v2 channels (`[[hl7_channel]]` tables). Default none.
    #[serde(default)]
    pub hl7_channel: Vec<Hl7ChannelConfig>,
    /// Days processed HL7 v2 messages are kept. Default 90.
    pub hl7_retention_days: Option<u32>,
    /// Minutes a sender may stay silent before an alert. Default 60.
    pub hl7_silence_alert_minutes: Option<u64>,
    /// Messages waiting in an outbound queue before an alert. Default 1000.
    pub hl7_queue_alert_depth: Option<i64>,
    /// Seconds between the interface engine's pruning and alert checks. Default 300.
    pub hl7_check_seconds: Option<u64>,
    /// The SMTP server notifications are e-mailed through: `smtp://host:25`,
    /// `smtp://user:password@host:587?tls=required` (STARTTLS), `smtps://host:465`.
    /// Default none: no e-mail.
    pub smtp_url: Option<Secret>,
    /// The sender of notification e-mail. Default `medmesh <medmesh@localhost>`.
    pub smtp_from: Option<String>,
    /// The node's name in notifications' texts. Default `medmesh`.
    pub node_name: Option<String>,
    /// Whether webhooks may go to `http://` URLs and to the node's own networks (loopback,
    /// private, link-local). Default false: `https://` to public addresses only.
    pub webhooks_allow_internal: Option<bool>,
    /// Whether device data may be pulled from Nightscout sites at `http://` URLs and on the
    /// node's own networks (loopback, private, link-local). Default false: `https://` to
    /// public addresses only.
    pub nightscout_allow_internal: Option<bool>,
    /// Minutes an appointment held with `$hold` stays held. Default 5 (1 to 60).
    pub appointment_hold_minutes: Option<u32>,
    /// How long before a booked appointment its patient is reminded, each a number and a
    /// unit (`24h`, `2h`, `30m`, `45s`); in the environment, comma-separated. Default
    /// `["24h", "2h"]`; `[]` for none.
    pub appointment_reminders: Option<Vec<String>>,
    /// Seconds a freed time offered from a waiting list is held for its patient before it
    /// is passed to the next. Default 1800 (30 minutes; at least 1).
    pub waitlist_offer_seconds: Option<u64>,
    /// Seconds between passes that queue reminders of the doses to come. Default 600 (at
    /// least 1).
    pub dose_reminder_seconds: Option<u64>,
    /// Hours ahead each pass queues dose reminders. Default 26 (1 to 8784: a year).
    pub dose_reminder_horizon_hours: Option<u64>,
    /// Seconds between passes that raise adherence alerts for the organizations that opted
    /// in (docs/medications.md). Default 86400 (a day; at least 1).
    pub adherence_alert_seconds: Option<u64>,
    /// Knowledge files for the prescribing checks, loaded beside the ONC list that ships
    /// with the node (interactions and dose limits; docs/medications.md gives the form); in
    /// the environment, comma-separated paths. Default none. A file that cannot be read or
    /// used stops the node from starting.
    pub medication_knowledge_files: Option<Vec<PathBuf>>,
    /// STUN servers the video visits' browsers use (`stun:host:port`); in the environment,
    /// comma-separated. Default none (docs/telehealth.md).
    pub telehealth_stun_urls: Option<Vec<String>>,
    /// TURN servers (`turn:host:port?transport=udp`, `turns:...`); comma-separated in the
    /// environment. Default none.
    pub telehealth_turn_urls: Option<Vec<String>>,
    /// The TURN servers' shared secret (coturn's `static-auth-secret`): the node hands out
    /// short-lived credentials made from it (the TURN REST API scheme). Required with
    /// `telehealth_turn_urls`.
    pub telehealth_turn_secret: Option<Secret>,
    /// How long TURN credentials last, seconds. Default 900 (60 to 86400).
    pub telehealth_turn_ttl_seconds: Option<u64>,
    /// `relay` makes the browsers use TURN only (no direct or reflexive path: the peers'
    /// addresses stay hidden from each other); `all` (the default) lets ICE choose.
    pub telehealth_ice_policy: Option<String>,
}

/// One downstream system applied messages are forwarded to over MLLP (`[[hl7_channel]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hl7ChannelConfig {
    /// The channel's name.
    pub name: String,
    /// Where to deliver, `host:port`.
    pub destination: String,
    /// Kinds forwarded (`ORU^R01`, or `ORU` for every trigger); default all.
    #[serde(default)]
    pub message_types: Vec<String>,
    /// Senders whose messages are forwarded; default all.
    #[serde(default)]
    pub senders: Vec<String>,
    /// Whether inbound messages are forwarded at all. Default true; false for a channel of
    /// node events only.
    #[serde(default = "default_true")]
    pub inbound: bool,
    /// The node's own events it sends: `appointments` (SIU^S12–S15, S26) and `results`
    /// (ORU^R01). Default none.
    #[serde(default)]
    pub events: Vec<String>,
    /// MSH-5 of the node's events. Default the channel's name in capitals.
    pub receiving_application: Option<String>,
    /// MSH-6 of the node's events. Default empty.
    pub receiving_facility: Option<String>,
}

fn default_true() -> bool {
    true
}

/// One HL7 v2 sending system (`[[hl7_sender]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hl7SenderConfig {
    /// Its name, as the message browser and audit log show it.
    pub name: String,
    /// MSH-3 it sends; `*` (the default) for any.
    #[serde(default)]
    pub application: String,
    /// MSH-4 it sends; `*` (the default) for any.
    #[serde(default)]
    pub facility: String,
    /// Addresses or networks it may connect from, e.g. `["10.1.0.0/16"]`.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// SHA-256 (hex) of the secret it sends over HTTP (`medmesh hl7 senders add` prints one).
    pub secret_sha256: Option<String>,
    /// How its messages map: identifier and code systems, translations, time zone.
    #[serde(default)]
    pub profile: medmesh_hl7v2_fhir::Profile,
    /// Where its enhanced-mode application acknowledgements go (`host:port`, MLLP).
    /// Default none.
    pub ack_destination: Option<String>,
    /// `original`: every message is answered with AA, AE or AR on the connection, whatever
    /// MSH-15/MSH-16 say. `enhanced`: they are followed (commit acknowledgements on the
    /// connection, application acknowledgements to `ack_destination`). Default `enhanced`
    /// with an `ack_destination`, else `original`.
    pub acknowledgement: Option<String>,
}

/// One external OpenID Connect provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Short id, used in URLs: `/login/external/{id}`.
    pub id: String,
    /// Shown on the login page. Default: the id.
    pub name: Option<String>,
    /// Issuer URL, e.g. `https://kc.example.org/realms/hospital`.
    pub issuer: String,
    /// Our client id at the provider.
    pub client_id: String,
    /// Our client secret at the provider.
    pub client_secret: Secret,
    /// Dotted path to the role claim. Default `realm_access.roles` (Keycloak realm roles).
    pub role_claim: Option<String>,
    /// Provider role to medmesh role (`patient`, `practitioner`, `org-admin`, `researcher`).
    pub role_map: std::collections::BTreeMap<String, String>,
    /// Claim holding the user name. Default `preferred_username`.
    pub username_claim: Option<String>,
    /// Claim holding `Patient/x` or `Practitioner/y`, to link the account. Default none.
    pub fhir_user_claim: Option<String>,
    /// Accept this provider's access tokens on the FHIR API when their `aud` holds this.
    pub api_audience: Option<String>,
    /// The most a provider API token may grant. Default `user/*.cruds patient/*.cruds`.
    pub api_scope_ceiling: Option<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// PostgreSQL URL, if any.
    pub database_url: Option<Secret>,
    /// Public base URL, if fixed.
    pub public_base_url: Option<String>,
    /// Token issuer.
    pub issuer: String,
    /// Body limit.
    pub max_body_bytes: usize,
    /// Log filter.
    pub log: String,
    /// Access-token lifetime, seconds.
    pub access_token_ttl: i64,
    /// Signing-key rotation interval, seconds.
    pub key_rotation: i64,
    /// Patient self-registration.
    pub allow_self_registration: bool,
    /// Open dynamic client registration.
    pub open_client_registration: bool,
    /// Audit log name.
    pub audit_origin: Option<String>,
    /// Seconds between audit checkpoints (0: on demand only).
    pub audit_checkpoint_interval: u64,
    /// The audit log's witnesses.
    pub audit_witnesses: medmesh_audit_log::WitnessPolicy,
    /// Break-glass duration, minutes.
    pub break_glass_minutes: i64,
    /// Encounter window, days.
    pub encounter_window_days: i64,
    /// Encryption at rest.
    pub encryption_at_rest: bool,
    /// The KEK file.
    pub master_key_file: PathBuf,
    /// The KMS key that holds the KEK, when not the key file.
    pub kms: Option<medmesh_kek::KmsSettings>,
    /// Where document bytes are kept.
    pub blob_store: BlobStoreConfig,
    /// The largest document accepted.
    pub max_document_bytes: u64,
    /// Connection bounds.
    pub connections: medmesh_server::listener::ConnectionLimits,
    /// Statement timeout (PostgreSQL).
    pub statement_timeout: std::time::Duration,
    /// Entries one Bundle may hold on the API.
    pub max_bundle_entries: usize,
    /// JSON values one body may hold.
    pub max_json_values: usize,
    /// Allowed clock skew on token times, seconds.
    pub token_leeway: i64,
    /// Longest token lifetime, seconds.
    pub max_token_lifetime: i64,
    /// CORS origins.
    pub cors_allowed_origins: Vec<String>,
    /// Label derivation rules.
    pub label_rules: Vec<medmesh_policy::labels::LabelRule>,
    /// External OpenID Connect providers.
    pub oidc: Vec<OidcConfig>,
    /// Where MLLP is accepted, when it is.
    pub mllp_listen: Option<SocketAddr>,
    /// The largest MLLP frame, bytes.
    pub mllp_max_message_bytes: usize,
    /// TLS for MLLP, when configured.
    pub mllp_tls: Option<medmesh_mllp::TlsSettings>,
    /// Configured HL7 v2 senders.
    pub hl7_senders: Vec<Hl7SenderConfig>,
    /// Configured outbound channels.
    pub hl7_channels: Vec<Hl7ChannelConfig>,
    /// Days processed HL7 v2 messages are kept.
    pub hl7_retention_days: u32,
    /// How long a sender may stay silent before an alert.
    pub hl7_silence_alert: std::time::Duration,
    /// Queue depth that raises an alert.
    pub hl7_queue_alert_depth: i64,
    /// Between the interface engine's pruning and alert checks.
    pub hl7_check_every: std::time::Duration,
    /// The SMTP server's URL, when e-mail is on.
    pub smtp_url: Option<Secret>,
    /// The sender of notification e-mail.
    pub smtp_from: String,
    /// The node's name in notifications.
    pub node_name: String,
    /// Whether webhooks may go to `http://` and to the node's own networks.
    pub webhooks_allow_internal: bool,
    /// Whether Nightscout pulls may go to `http://` and to the node's own networks.
    pub nightscout_allow_internal: bool,
    /// Minutes a `$hold` lasts.
    pub appointment_hold_minutes: u32,
    /// Reminder offsets before an appointment, microseconds.
    pub appointment_reminders: Vec<i64>,
    /// Seconds a waiting-list offer is held.
    pub waitlist_offer_seconds: u64,
    /// Seconds between dose-reminder passes.
    pub dose_reminder_seconds: u64,
    /// Hours ahead a dose-reminder pass looks.
    pub dose_reminder_horizon_hours: u64,
    /// Seconds between adherence-alert passes.
    pub adherence_alert_seconds: u64,
    /// Knowledge files loaded beside the shipped ONC list.
    pub medication_knowledge_files: Vec<PathBuf>,
    /// STUN servers for video visits.
    pub telehealth_stun_urls: Vec<String>,
    /// TURN servers for video visits.
    pub telehealth_turn_urls: Vec<String>,
    /// The TURN servers' shared secret.
    pub telehealth_turn_secret: Option<Secret>,
    /// Seconds TURN credentials last.
    pub telehealth_turn_ttl_seconds: u64,
    /// Whether browsers use TURN only.
    pub telehealth_relay_only: bool,
}

/// Where document bytes are kept.
#[derive(Debug, Clone)]
pub enum BlobStoreConfig {
    /// A local folder.
    Folder(PathBuf),
    /// An S3-compatible bucket.
    S3(medmesh_blobs::S3Settings),
}

/// Values given on the command line or in `MEDMESH_*` variables; they override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--data-dir` / `MEDMESH_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--listen` / `MEDMESH_LISTEN`.
    pub listen: Option<SocketAddr>,
    /// `--database-url` / `MEDMESH_DATABASE_URL`.
    pub database_url: Option<String>,
    /// `--config` / `MEDMESH_CONFIG`.
    pub config: Option<PathBuf>,
}

impl Config {
    /// Resolves the configuration.
    ///
    /// # Errors
    /// An unreadable or invalid settings file.
    pub fn load(o: &Overrides) -> anyhow::Result<Self> {
        let file = match &o.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let data_dir = o
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("medmesh-data"));
        let blob_dir = data_dir.join("blobs");
        Ok(Self {
            encryption_at_rest: env("MEDMESH_ENCRYPTION_AT_REST")
                .map(|v| v == "true" || v == "1")
                .or(file.encryption_at_rest)
                .unwrap_or(true),
            master_key_file: env("MEDMESH_MASTER_KEY_FILE")
                .map(PathBuf::from)
                .or(file.master_key_file)
                .unwrap_or_else(|| data_dir.join("master.key")),
            data_dir,
            listen: o
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            database_url: o.database_url.clone().map(Secret).or(file.database_url),
            public_base_url: env("MEDMESH_PUBLIC_BASE_URL").or(file.public_base_url),
            issuer: env("MEDMESH_ISSUER")
                .or(file.issuer)
                .unwrap_or_else(|| "medmesh".into()),
            max_body_bytes: env("MEDMESH_MAX_BODY_BYTES")
                .and_then(|v| v.parse().ok())
                .or(file.max_body_bytes)
                .unwrap_or(medmesh_server::DEFAULT_MAX_BODY),
            log: env("MEDMESH_LOG")
                .or(file.log)
                .unwrap_or_else(|| "info".into()),
            access_token_ttl: env("MEDMESH_ACCESS_TOKEN_TTL")
                .and_then(|v| v.parse().ok())
                .or(file.access_token_ttl)
                .unwrap_or(300)
                .clamp(30, 3600),
            key_rotation: env("MEDMESH_KEY_ROTATION")
                .and_then(|v| v.parse().ok())
                .or(file.key_rotation)
                .unwrap_or(7 * 86_400)
                .max(60),
            allow_self_registration: env("MEDMESH_ALLOW_SELF_REGISTRATION")
                .map(|v| v == "true" || v == "1")
                .or(file.allow_self_registration)
                .unwrap_or(false),
            open_client_registration: env("MEDMESH_OPEN_CLIENT_REGISTRATION")
                .map(|v| v == "true" || v == "1")
                .or(file.open_client_registration)
                .unwrap_or(false),
            audit_origin: env("MEDMESH_AUDIT_ORIGIN").or(file.audit_origin),
            audit_checkpoint_interval: env("MEDMESH_AUDIT_CHECKPOINT_INTERVAL")
                .and_then(|v| v.parse().ok())
                .or(file.audit_checkpoint_interval)
                .unwrap_or(60),
            audit_witnesses: witness_policy(
                env("MEDMESH_AUDIT_WITNESSES")
                    .map(|v| v.split(',').map(str::to_string).collect())
                    .or(file.audit_witnesses)
                    .unwrap_or_default(),
                setting(
                    env("MEDMESH_AUDIT_WITNESS_QUORUM"),
                    file.audit_witness_quorum,
                )
                .unwrap_or(0),
            )?,
            break_glass_minutes: env("MEDMESH_BREAK_GLASS_MINUTES")
                .and_then(|v| v.parse().ok())
                .or(file.break_glass_minutes)
                .unwrap_or(240)
                .clamp(5, 7 * 24 * 60),
            encounter_window_days: env("MEDMESH_ENCOUNTER_WINDOW_DAYS")
                .and_then(|v| v.parse().ok())
                .or(file.encounter_window_days)
                .unwrap_or(90)
                .clamp(0, 3650),
            kms: env("MEDMESH_KMS_KEY_ID").or(file.kms_key_id).map(|key_id| {
                medmesh_kek::KmsSettings {
                    key_id,
                    endpoint: env("MEDMESH_KMS_ENDPOINT").or(file.kms_endpoint),
                    region: env("MEDMESH_KMS_REGION")
                        .or(file.kms_region)
                        .unwrap_or_else(|| "us-east-1".into()),
                    access_key_id: env("MEDMESH_KMS_ACCESS_KEY_ID")
                        .or(file.kms_access_key_id)
                        .unwrap_or_default(),
                    secret_access_key: env("MEDMESH_KMS_SECRET_ACCESS_KEY")
                        .or(file.kms_secret_access_key.map(|s| s.0))
                        .unwrap_or_default(),
                }
            }),
            blob_store: match env("MEDMESH_BLOB_STORE").or(file.blob_store) {
                Some(url) if url.starts_with("s3://") => {
                    BlobStoreConfig::S3(medmesh_blobs::S3Settings {
                        bucket: url.trim_start_matches("s3://").trim_end_matches('/').into(),
                        endpoint: env("MEDMESH_S3_ENDPOINT").or(file.s3_endpoint),
                        region: env("MEDMESH_S3_REGION")
                            .or(file.s3_region)
                            .unwrap_or_else(|| "us-east-1".into()),
                        access_key_id: env("MEDMESH_S3_ACCESS_KEY_ID")
                            .or(file.s3_access_key_id)
                            .unwrap_or_default(),
                        secret_access_key: env("MEDMESH_S3_SECRET_ACCESS_KEY")
                            .or(file.s3_secret_access_key.map(|s| s.0))
                            .unwrap_or_default(),
                    })
                }
                Some(folder) => BlobStoreConfig::Folder(PathBuf::from(folder)),
                None => BlobStoreConfig::Folder(blob_dir),
            },
            max_document_bytes: env("MEDMESH_MAX_DOCUMENT_BYTES")
                .and_then(|v| v.parse().ok())
                .or(file.max_document_bytes)
                .unwrap_or(4 << 30),
            connections: medmesh_server::listener::ConnectionLimits {
                max_connections: setting(env("MEDMESH_MAX_CONNECTIONS"), file.max_connections)
                    .unwrap_or(2048)
                    .max(1),
                header_read_timeout: seconds(
                    setting(env("MEDMESH_HEADER_READ_TIMEOUT"), file.header_read_timeout),
                    10,
                ),
                idle_timeout: seconds(setting(env("MEDMESH_IDLE_TIMEOUT"), file.idle_timeout), 60),
                drain_timeout: seconds(
                    setting(env("MEDMESH_DRAIN_TIMEOUT"), file.drain_timeout),
                    30,
                ),
            },
            statement_timeout: seconds(
                setting(env("MEDMESH_STATEMENT_TIMEOUT"), file.statement_timeout),
                30,
            ),
            max_bundle_entries: setting(env("MEDMESH_MAX_BUNDLE_ENTRIES"), file.max_bundle_entries)
                .unwrap_or(1000)
                .max(1),
            max_json_values: setting(env("MEDMESH_MAX_JSON_VALUES"), file.max_json_values)
                .unwrap_or(200_000)
                .max(100),
            token_leeway: setting(env("MEDMESH_TOKEN_LEEWAY"), file.token_leeway)
                .unwrap_or(5)
                .clamp(0, 300),
            max_token_lifetime: setting(env("MEDMESH_MAX_TOKEN_LIFETIME"), file.max_token_lifetime)
                .unwrap_or(86_400)
                .clamp(60, 30 * 86_400),
            cors_allowed_origins: match env("MEDMESH_CORS_ALLOWED_ORIGINS") {
                Some(list) => list
                    .split(',')
                    .map(|o| o.trim().to_string())
                    .filter(|o| !o.is_empty())
                    .collect(),
                None => file.cors_allowed_origins,
            },
            label_rules: if file.label_rule.is_empty() {
                medmesh_policy::labels::default_label_rules()
            } else {
                file.label_rule
            },
            oidc: file.oidc,
            mllp_listen: match env("MEDMESH_MLLP_LISTEN") {
                Some(a) => Some(a.parse().context("MEDMESH_MLLP_LISTEN is not an address")?),
                None => file.mllp_listen,
            },
            mllp_max_message_bytes: setting(
                env("MEDMESH_MLLP_MAX_MESSAGE_BYTES"),
                file.mllp_max_message_bytes,
            )
            .unwrap_or(32 * 1024 * 1024)
            .clamp(1024, 1024 * 1024 * 1024),
            mllp_tls: {
                let path = |var: &str, file: Option<PathBuf>| env(var).map(PathBuf::from).or(file);
                let certificate = path("MEDMESH_MLLP_TLS_CERTIFICATE", file.mllp_tls_certificate);
                let private_key = path("MEDMESH_MLLP_TLS_PRIVATE_KEY", file.mllp_tls_private_key);
                let client_ca = path("MEDMESH_MLLP_TLS_CLIENT_CA", file.mllp_tls_client_ca);
                match (certificate, private_key) {
                    (Some(certificate), Some(private_key)) => Some(medmesh_mllp::TlsSettings {
                        certificate,
                        private_key,
                        client_ca,
                    }),
                    (None, None) if client_ca.is_none() => None,
                    _ => anyhow::bail!(
                        "MLLP over TLS needs both mllp_tls_certificate and mllp_tls_private_key"
                    ),
                }
            },
            hl7_senders: file.hl7_sender,
            hl7_channels: file.hl7_channel,
            hl7_retention_days: setting(env("MEDMESH_HL7_RETENTION_DAYS"), file.hl7_retention_days)
                .unwrap_or(90)
                .max(1),
            hl7_silence_alert: std::time::Duration::from_secs(
                60 * setting(
                    env("MEDMESH_HL7_SILENCE_ALERT_MINUTES"),
                    file.hl7_silence_alert_minutes,
                )
                .unwrap_or(60)
                .max(1),
            ),
            hl7_queue_alert_depth: setting(
                env("MEDMESH_HL7_QUEUE_ALERT_DEPTH"),
                file.hl7_queue_alert_depth,
            )
            .unwrap_or(1000)
            .max(1),
            hl7_check_every: seconds(
                setting(env("MEDMESH_HL7_CHECK_SECONDS"), file.hl7_check_seconds),
                300,
            ),
            smtp_url: env("MEDMESH_SMTP_URL").map(Secret).or(file.smtp_url),
            smtp_from: env("MEDMESH_SMTP_FROM")
                .or(file.smtp_from)
                .unwrap_or_else(|| "medmesh <medmesh@localhost>".into()),
            node_name: env("MEDMESH_NODE_NAME")
                .or(file.node_name)
                .unwrap_or_else(|| "medmesh".into()),
            webhooks_allow_internal: setting(
                env("MEDMESH_WEBHOOKS_ALLOW_INTERNAL"),
                file.webhooks_allow_internal,
            )
            .unwrap_or(false),
            nightscout_allow_internal: setting(
                env("MEDMESH_NIGHTSCOUT_ALLOW_INTERNAL"),
                file.nightscout_allow_internal,
            )
            .unwrap_or(false),
            appointment_hold_minutes: setting(
                env("MEDMESH_APPOINTMENT_HOLD_MINUTES"),
                file.appointment_hold_minutes,
            )
            .unwrap_or(5)
            .clamp(1, 60),
            waitlist_offer_seconds: setting(
                env("MEDMESH_WAITLIST_OFFER_SECONDS"),
                file.waitlist_offer_seconds,
            )
            .unwrap_or(1800)
            .max(1),
            dose_reminder_seconds: setting(
                env("MEDMESH_DOSE_REMINDER_SECONDS"),
                file.dose_reminder_seconds,
            )
            .unwrap_or(600)
            .max(1),
            dose_reminder_horizon_hours: setting(
                env("MEDMESH_DOSE_REMINDER_HORIZON_HOURS"),
                file.dose_reminder_horizon_hours,
            )
            .unwrap_or(26)
            .clamp(1, 8784),
            adherence_alert_seconds: setting(
                env("MEDMESH_ADHERENCE_ALERT_SECONDS"),
                file.adherence_alert_seconds,
            )
            .unwrap_or(86_400)
            .max(1),
            medication_knowledge_files: match env("MEDMESH_MEDICATION_KNOWLEDGE_FILES") {
                Some(list) => list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect(),
                None => file.medication_knowledge_files.unwrap_or_default(),
            },
            telehealth_stun_urls: list_setting(
                env("MEDMESH_TELEHEALTH_STUN_URLS"),
                file.telehealth_stun_urls,
            ),
            telehealth_turn_urls: list_setting(
                env("MEDMESH_TELEHEALTH_TURN_URLS"),
                file.telehealth_turn_urls,
            ),
            telehealth_turn_secret: env("MEDMESH_TELEHEALTH_TURN_SECRET")
                .map(Secret)
                .or(file.telehealth_turn_secret),
            telehealth_turn_ttl_seconds: setting(
                env("MEDMESH_TELEHEALTH_TURN_TTL_SECONDS"),
                file.telehealth_turn_ttl_seconds,
            )
            .unwrap_or(900)
            .clamp(60, 86_400),
            telehealth_relay_only: match env("MEDMESH_TELEHEALTH_ICE_POLICY")
                .or(file.telehealth_ice_policy)
                .as_deref()
                .map(str::trim)
            {
                None | Some("all") => false,
                Some("relay") => true,
                Some(other) => anyhow::bail!(
                    "telehealth_ice_policy: {other:?} is neither \"all\" nor \"relay\""
                ),
            },
            appointment_reminders: match env("MEDMESH_APPOINTMENT_REMINDERS") {
                Some(list) => Some(
                    list.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                ),
                None => file.appointment_reminders,
            }
            .map_or(Ok(vec![24 * 3_600_000_000, 2 * 3_600_000_000]), |list| {
                list.iter().map(|s| reminder_offset(s)).collect()
            })?,
        })
    }
}

/// The witness policy from its settings: each entry `KEY` or `KEY URL`.
fn witness_policy(
    entries: Vec<String>,
    quorum: usize,
) -> anyhow::Result<medmesh_audit_log::WitnessPolicy> {
    let mut witnesses: Vec<medmesh_audit_log::ListedWitness> = Vec::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let mut parts = entry.split_whitespace();
        let key = parts.next().unwrap_or_default();
        let key = medmesh_audit::witness::WitnessKey::parse(key).map_err(|_| {
            anyhow::anyhow!(
                "audit_witnesses: {key:?} is not a witness verifier key (name+hash+base64)"
            )
        })?;
        let url = parts.next().map(|u| u.trim_end_matches('/').to_string());
        if let Some(u) = &url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            anyhow::bail!("audit_witnesses: {u:?} is not an http(s) URL");
        }
        if parts.next().is_some() {
            anyhow::bail!("audit_witnesses: an entry is `KEY` or `KEY URL`");
        }
        if witnesses.iter().any(|w| w.key.name() == key.name()) {
            anyhow::bail!("audit_witnesses: {} is listed twice", key.name());
        }
        witnesses.push(medmesh_audit_log::ListedWitness { key, url });
    }
    if quorum > witnesses.len() {
        anyhow::bail!(
            "audit_witness_quorum is {quorum}, but only {} witnesses are listed",
            witnesses.len()
        );
    }
    Ok(medmesh_audit_log::WitnessPolicy { witnesses, quorum })
}

/// A numeric setting: the environment variable when it parses, else the file's value.
/// A list setting: comma-separated in the environment, a list in the file.
fn list_setting(env: Option<String>, file: Option<Vec<String>>) -> Vec<String> {
    match env {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        None => file.unwrap_or_default(),
    }
}

fn setting<T: std::str::FromStr>(env: Option<String>, file: Option<T>) -> Option<T> {
    env.and_then(|v| v.trim().parse().ok()).or(file)
}

/// A duration setting in whole seconds (at least one).
/// Reads a reminder offset: a number and `h`, `m` or `s`, at most 30 days.
fn reminder_offset(s: &str) -> anyhow::Result<i64> {
    let bad = || anyhow::anyhow!("appointment_reminders: {s:?} is not a number and h, m or s");
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n.trim().parse().map_err(|_| bad())?;
    let secs = match unit {
        "h" => n * 3600,
        "m" => n * 60,
        "s" => n,
        _ => return Err(bad()),
    };
    if !(1..=30 * 24 * 3600).contains(&secs) {
        return Err(anyhow::anyhow!(
            "appointment_reminders: {s:?} is out of range"
        ));
    }
    Ok(secs * 1_000_000)
}

fn seconds(value: Option<u64>, default: u64) -> std::time::Duration {
    std::time::Duration::from_secs(value.unwrap_or(default).max(1))
}

fn read_file(p: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(p)
        .with_context(|| format!("cannot read config file {}", p.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn witnesses_are_keys_with_an_optional_url_and_a_reachable_quorum() {
        let key = medmesh_audit::checkpoint::Cosigner::new("w.example/1", [4; 32]).verifier_key();
        let policy = witness_policy(
            vec![format!("{key} https://w.example/1/"), String::new()],
            1,
        )
        .unwrap();
        assert_eq!(policy.quorum, 1);
        assert_eq!(
            policy.witnesses[0].url.as_deref(),
            Some("https://w.example/1")
        );
        let err =
            |entries: Vec<String>, quorum| witness_policy(entries, quorum).unwrap_err().to_string();
        assert!(err(vec![key.clone()], 2).contains("only 1 witnesses"));
        assert!(err(vec!["not-a-key".into()], 0).contains("not a witness verifier key"));
        assert!(err(vec![format!("{key} ftp://w")], 0).contains("not an http(s) URL"));
        assert!(err(vec![key.clone(), key.clone()], 0).contains("listed twice"));
    }

    #[test]
    fn flags_override_file_and_secrets_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.toml");
        std::fs::write(&p, "data_dir = \"/x\"\nlisten = \"127.0.0.1:9\"\ndatabase_url = \"postgres://u:hunter2@h/db\"\n").unwrap();
        let c = Config::load(&Overrides {
            config: Some(p.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/x"));
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = Config::load(&Overrides {
            config: Some(p),
            data_dir: Some("/y".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/y"));
        std::fs::write(dir.path().join("bad.toml"), "nonsense = 1").unwrap();
        assert!(
            Config::load(&Overrides {
                config: Some(dir.path().join("bad.toml")),
                ..Default::default()
            })
            .is_err()
        );
    }
}
