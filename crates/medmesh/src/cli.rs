//! The command line: every command and its arguments (clap).

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "medmesh",
    version,
    about = "A FHIR R4 node for sharing medical records, with the patient in control"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(clap::Args, Clone)]
pub(crate) struct StoreArgs {
    /// Data directory (SQLite file, export files).
    #[arg(long, env = "MEDMESH_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://...); without it, SQLite in the data directory.
    #[arg(long, env = "MEDMESH_DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: Option<String>,
    /// Settings file (TOML).
    #[arg(long, env = "MEDMESH_CONFIG")]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Run a node.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on.
        #[arg(long, env = "MEDMESH_LISTEN")]
        listen: Option<std::net::SocketAddr>,
        /// Address to accept HL7 v2 over MLLP on (off unless given).
        #[arg(long, env = "MEDMESH_MLLP_LISTEN")]
        mllp_listen: Option<std::net::SocketAddr>,
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
        /// Files written in one transaction at most, when none of them could see another's
        /// writes (1: each file alone). Fewer, larger transactions write each hot index page
        /// once instead of once per file.
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
        batch: u16,
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
    /// Verify a signed prescription offline (`GET /api/prescriptions/{id}/signed`, or what a
    /// printed prescription's QR code holds): the prescriber's Ed25519 signature over it;
    /// with --directory, that the key is one of the prescriber's in the node's public key
    /// directory; with --prescription, that the MedicationRequest is what was signed. Exits 0
    /// when it verifies, 1 when it does not.
    VerifyPrescription {
        /// The signed prescription (JSON: format, claims, signature, key).
        signed: PathBuf,
        /// The prescriber's key directory listing (`GET /api/keys?owner=Practitioner/x`,
        /// saved as JSON).
        #[arg(long)]
        directory: Option<PathBuf>,
        /// The MedicationRequest (JSON) to compare with what was signed.
        #[arg(long)]
        prescription: Option<PathBuf>,
    },
    /// Encryption keys: status, KEK rotation, full re-encryption.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The HL7 v2 interface engine: senders, the message store, dead letters.
    Hl7 {
        #[command(flatten)]
        store: GlobalStoreArgs,
        #[command(subcommand)]
        command: Hl7Command,
    },
    /// The notification hub: who gets what where, and what could not be delivered.
    Notifications {
        #[command(flatten)]
        store: GlobalStoreArgs,
        #[command(subcommand)]
        command: NotificationsCommand,
    },
    /// Device data: CGM, pump and phone exports into a patient's record.
    Devices {
        #[command(flatten)]
        store: GlobalStoreArgs,
        #[command(subcommand)]
        command: DevicesCommand,
    },
}

/// `medmesh devices ...`.
#[derive(Subcommand)]
pub(crate) enum DevicesCommand {
    /// Import exports (LibreView, Dexcom Clarity, CareLink CSV; Apple Health export.xml or
    /// export.zip; Nightscout JSON or TSV) into a patient's record, as the local operator.
    /// Reports, per file, the records read per kind, the time range, the unit, what was new
    /// and every rejected row with its reason. Exits 1 when a file could not be read.
    Import {
        /// The patient's id.
        #[arg(long)]
        patient: String,
        /// Force a format instead of detecting it: libreview, dexcom-clarity, carelink,
        /// apple-health, nightscout.
        #[arg(long)]
        format: Option<String>,
        /// The IANA time zone of exports written in local time (LibreView, Clarity,
        /// CareLink). UTC when not given.
        #[arg(long)]
        time_zone: Option<String>,
        /// Print the reports as JSON.
        #[arg(long)]
        json: bool,
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Pull a period from the patient's Nightscout site (entries, treatments, profile) and
    /// import it, a week at a time, as the local operator. Pulling again adds only what is
    /// new. The credential comes from the environment, `NIGHTSCOUT_API_SECRET` or
    /// `NIGHTSCOUT_TOKEN`, never the command line (which other users of the machine can
    /// see). Exits 1 when the site could not be read.
    PullNightscout {
        /// The patient's id.
        #[arg(long)]
        patient: String,
        /// The site's base URL (`https://me.example.org/`).
        #[arg(long)]
        url: String,
        /// First day (YYYY-MM-DD) or instant; 90 days before the end by default.
        #[arg(long)]
        start: Option<String>,
        /// Last day (included) or instant; now by default.
        #[arg(long)]
        end: Option<String>,
        /// The IANA time zone of the dates. UTC when not given.
        #[arg(long)]
        time_zone: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `medmesh notifications ...`.
#[derive(Subcommand)]
pub(crate) enum NotificationsCommand {
    /// Show, and with options set, a recipient's choices and e-mail address.
    Settings {
        /// The account, by user name (a patient's account sets its patient's).
        #[arg(long, conflicts_with = "patient", required_unless_present = "patient")]
        user: Option<String>,
        /// A patient, by Patient id.
        #[arg(long)]
        patient: Option<String>,
        /// The e-mail address (`""` to remove it).
        #[arg(long)]
        email: Option<String>,
        /// `CATEGORY=CHANNEL,CHANNEL` (e.g. `results=inbox,email`, `operations=`); repeat.
        #[arg(long = "choose")]
        choices: Vec<String>,
        /// Where webhooks go (`https://...`); prints the new signing secret once. `""`
        /// removes it.
        #[arg(long)]
        webhook: Option<String>,
    },
    /// Notifications given up on (no text, no address).
    Failed {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Put a notification given up on back in the queue.
    Retry {
        /// Its id.
        id: String,
    },
    /// Notifications by channel and status.
    Counts,
}

/// [`StoreArgs`] accepted before or after a subcommand (`medmesh hl7 counts --data-dir D`).
#[derive(clap::Args, Clone)]
pub(crate) struct GlobalStoreArgs {
    /// Data directory (SQLite file, export files).
    #[arg(long, env = "MEDMESH_DATA_DIR", global = true)]
    pub(crate) data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://...); without it, SQLite in the data directory.
    #[arg(
        long,
        env = "MEDMESH_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub(crate) database_url: Option<String>,
    /// Settings file (TOML).
    #[arg(long, env = "MEDMESH_CONFIG", global = true)]
    pub(crate) config: Option<PathBuf>,
}

impl From<GlobalStoreArgs> for StoreArgs {
    fn from(g: GlobalStoreArgs) -> Self {
        Self {
            data_dir: g.data_dir,
            database_url: g.database_url,
            config: g.config,
        }
    }
}

/// `medmesh hl7 ...`.
#[derive(Subcommand)]
pub(crate) enum Hl7Command {
    /// Senders added here join those of the settings file (a running node picks them up at
    /// its next start).
    Senders {
        #[command(subcommand)]
        command: Hl7SendersCommand,
    },
    /// List stored messages, newest first (no patient data: id, time, sender, type, MSH-10,
    /// status, acknowledgement).
    Messages {
        #[command(flatten)]
        filter: Hl7FilterArgs,
    },
    /// Show one stored message, what it became and why (node operators only; audited).
    Show {
        /// The message's id.
        id: String,
    },
    /// Messages kept because they could not be applied, with their reasons.
    DeadLetters {
        #[command(subcommand)]
        command: Hl7DeadLettersCommand,
    },
    /// Delete processed messages received more than DAYS days ago (never one not yet
    /// applied).
    Prune {
        /// Keep this many days.
        #[arg(long)]
        older_than_days: u32,
    },
    /// Messages per sender and status, and outbound queues per channel and status.
    Counts,
    /// What needs an operator's eye: dead letters in the window, silent senders, deep
    /// queues (the node logs the same every five minutes). Exits 1 when there is any.
    Alerts {
        /// Look back this many minutes for dead letters.
        #[arg(long, default_value_t = 60)]
        window_minutes: i64,
    },
}

/// `medmesh hl7 senders ...`.
#[derive(Subcommand)]
pub(crate) enum Hl7SendersCommand {
    /// Add (or replace) a sender.
    Add {
        /// Its name.
        name: String,
        /// MSH-3 it sends (default any).
        #[arg(long, default_value = "*")]
        application: String,
        /// MSH-4 it sends (default any).
        #[arg(long, default_value = "*")]
        facility: String,
        /// An address or network it may connect from; repeat for more.
        #[arg(long = "address")]
        addresses: Vec<String>,
        /// Make a secret for HTTP (`POST /api/hl7v2` with Basic credentials); printed once.
        #[arg(long)]
        http_secret: bool,
        /// Its mapping profile (TOML file).
        #[arg(long)]
        profile: Option<PathBuf>,
        /// Where its enhanced-mode application acknowledgements go (`host:port`, MLLP).
        #[arg(long)]
        ack_destination: Option<String>,
    },
    /// List senders (those of the settings file and those added here).
    List,
    /// Remove a sender added here.
    Remove {
        /// Its name.
        name: String,
    },
}

/// `medmesh hl7 dead-letters ...`.
#[derive(Subcommand)]
pub(crate) enum Hl7DeadLettersCommand {
    /// List dead letters.
    List {
        #[command(flatten)]
        filter: Hl7FilterArgs,
    },
    /// Show one (as `medmesh hl7 show`).
    Show {
        /// The message's id.
        id: String,
    },
    /// Process dead letters again (after a sender's profile or a mapping was fixed): one by
    /// id, or every one matching the filter, at most --max.
    Replay {
        /// One message's id.
        id: Option<String>,
        #[command(flatten)]
        filter: Hl7FilterArgs,
        /// The most to replay at once (a safety cap).
        #[arg(long, default_value_t = 100)]
        max: u32,
    },
}

/// Which messages.
#[derive(clap::Args, Clone, Debug, Default)]
pub(crate) struct Hl7FilterArgs {
    /// The sender's name.
    #[arg(long)]
    pub(crate) sender: Option<String>,
    /// MSH-9: `ORU^R01`, or `ORU` for every trigger.
    #[arg(long = "type")]
    pub(crate) message_type: Option<String>,
    /// received, applied, dead or rejected.
    #[arg(long)]
    pub(crate) status: Option<String>,
    /// MSH-10.
    #[arg(long)]
    pub(crate) control_id: Option<String>,
    /// Received at or after (RFC 3339).
    #[arg(long)]
    pub(crate) since: Option<String>,
    /// Received before (RFC 3339).
    #[arg(long)]
    pub(crate) until: Option<String>,
    /// At most this many (default 50).
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: u32,
}

/// Where a `doc` command finds the node, and who it is there.
#[derive(clap::Args, Clone)]
pub(crate) struct NodeArgs {
    /// The node's address (`http://127.0.0.1:8080`).
    #[arg(long, env = "MEDMESH_NODE", default_value = "http://127.0.0.1:8080")]
    pub(crate) node: String,
    /// A bearer token for the node (better in MEDMESH_TOKEN than on the command line).
    #[arg(long, env = "MEDMESH_TOKEN", hide_env_values = true)]
    pub(crate) token: String,
}

/// What a `doc` upload says about the document.
#[derive(clap::Args, Clone)]
pub(crate) struct UploadArgs {
    /// Whose document (a Patient id).
    #[arg(long)]
    pub(crate) patient: String,
    /// A title (the node can read it; leave it out for a sealed document you want untitled).
    #[arg(long)]
    pub(crate) title: Option<String>,
    /// The document type, `system|code` (default LOINC 34133-9, summary of episode note).
    #[arg(long = "type")]
    pub(crate) doc_type: Option<String>,
}

#[derive(Subcommand)]
pub(crate) enum DocCommand {
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
    /// Sign a draft prescription with your key file's signing key, which makes it active
    /// (you must be its prescriber, and the key must be yours in the directory).
    SignPrescription {
        #[command(flatten)]
        node: NodeArgs,
        /// Your key file.
        #[arg(long)]
        key_file: PathBuf,
        /// The MedicationRequest's id.
        id: String,
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
pub(crate) enum KeysCommand {
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
pub(crate) enum AuditCommand {
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
    /// Prove a patient's access log complete, from outside the node, as their browser does:
    /// the signed checkpoint, the patient's head in the patient map, every entry's proof, and
    /// the chain from the newest entry back to the first. With --state, also that the log
    /// only grew since the previous run. Exits 0 only if everything checks out.
    VerifyPatient {
        #[command(flatten)]
        node: NodeArgs,
        /// The patient (resource id).
        #[arg(long)]
        patient: String,
        /// Check with this log key (signed-note verifier key), not the one the node
        /// publishes or the one kept in --state.
        #[arg(long = "log-key")]
        log_key: Option<String>,
        /// A file that keeps the last verified checkpoint between runs (written, mode 0600,
        /// only when the log checks out).
        #[arg(long)]
        state: Option<PathBuf>,
    },
    /// Witness a node's log: check its newest checkpoint against the last one this witness
    /// saw (the log may only grow), and cosign it with the witness's own key. Run it from
    /// cron on another machine; exits 1 if the log was rewritten.
    Witness {
        /// The node's address (`https://node.example`).
        #[arg(long)]
        log: String,
        /// Where the witness keeps the log's pinned key and the last checkpoint it saw.
        #[arg(long)]
        state: PathBuf,
        /// The witness's Ed25519 key (base64), made here on the first run.
        #[arg(long)]
        key: PathBuf,
        /// The witness's name in its signature lines.
        #[arg(long, default_value = "medmesh-witness")]
        name: String,
    },
    /// Run a witness that logs push their checkpoints to (C2SP tlog-witness: `POST
    /// /add-checkpoint`). It cosigns a checkpoint of a trusted log when its tree extends the
    /// one it cosigned last, keeping that in --state before it answers. A node lists it with
    /// `audit_witnesses = ["KEY URL"]`, KEY being what this prints at start.
    WitnessServer {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        /// Where the witness keeps, per log, the newest tree it cosigned.
        #[arg(long)]
        state: PathBuf,
        /// The witness's Ed25519 key (base64), made here on the first run.
        #[arg(long)]
        key: PathBuf,
        /// The witness's name in its cosignature lines.
        #[arg(long, default_value = "medmesh-witness")]
        name: String,
        /// A log to witness: its verifier key (as `GET /api/audit/key` gives it in
        /// `noteVerifierKey`). Repeatable.
        #[arg(long = "log-key", required = true)]
        log_keys: Vec<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum AdminCommand {
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
        /// patient, practitioner, pharmacist, org-admin, researcher or node-admin.
        #[arg(long)]
        role: String,
        /// Login name.
        #[arg(long)]
        username: String,
        /// The Patient a patient account is linked to: its id, or `identifier=SYSTEM|VALUE`
        /// (for records imported from files, whose ids the node assigned).
        #[arg(long)]
        patient: Option<String>,
        /// The Practitioner resource id a practitioner or pharmacist account is linked to.
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
        /// Practitioner or pharmacist verification status: unverified (default), verified or
        /// suspended.
        #[arg(long, default_value = "unverified")]
        verification: String,
    },
}
