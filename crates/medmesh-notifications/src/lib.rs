//! The notification hub: one place every capability tells people of something (results,
//! documents opened, referrals, break-glass, appointments, medications, messages, and the
//! node's own operations), on the channels each recipient chose per category.
//!
//! - **The inbox** is written at once, in a transaction of its own (a patient's inbox, as
//!   before the hub).
//! - **E-mail** goes through a durable outbox (`NotificationHubStore`): queued once per
//!   channel and event (a second notice of the same event is not queued), claimed by one
//!   worker at a time for a lease (two nodes on one database deliver each once), retried
//!   with backoff, and kept as `failed` for an admin after [`MAX_ATTEMPTS`].
//!
//! Texts name no patient data: "There are new results in your record at <node>", and a
//! link to sign in. The sending itself is an adapter's ([`Mailer`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt as _;

use medmesh_records::{RecordError, RecordService};
use medmesh_store::{NotificationHubStore, NotificationOutboxRow, NotificationSettingsRow};
use serde::{Deserialize, Serialize};

fn scheduled_key(who: &Recipient, event: &str) -> String {
    format!("{}|{event}", who.key())
}

/// Owner of the key that seals addresses and queued texts.
pub const NOTIFY_KEY_OWNER: &str = "node:notifications";

/// Attempts before a notification is given up on (kept as `failed`).
pub const MAX_ATTEMPTS: i64 = 10;

/// Rows one worker claims at a time, and sends at once: a slow receiver holds up no more
/// than this many, and the sends of a batch overlap.
const CLAIM_BATCH: u32 = 64;
const SENDS_AT_ONCE: usize = 16;

/// What a notification is about. Each recipient chooses channels per category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    /// New results in the record.
    Results,
    /// A document was opened, shared or signed.
    Documents,
    /// Referrals and requests.
    Referrals,
    /// Someone declared an emergency access.
    BreakGlass,
    /// Appointments and their reminders.
    Appointments,
    /// Prescriptions and adherence.
    Medications,
    /// Secure messages.
    Messages,
    /// Care plans, their activities and proposed changes, and care teams.
    Care,
    /// A forecast of low glucose from the patient's CGM data. Off unless the patient
    /// chooses a channel for it.
    GlucoseAlerts,
    /// The node's own operations (interface errors, silent senders, queues): for admins.
    Operations,
}

impl Category {
    /// Every category.
    pub const ALL: [Category; 10] = [
        Self::Results,
        Self::Documents,
        Self::Referrals,
        Self::BreakGlass,
        Self::Appointments,
        Self::Medications,
        Self::Messages,
        Self::Care,
        Self::GlucoseAlerts,
        Self::Operations,
    ];

    /// Its name, as settings and the outbox write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Results => "results",
            Self::Documents => "documents",
            Self::Referrals => "referrals",
            Self::BreakGlass => "break-glass",
            Self::Appointments => "appointments",
            Self::Medications => "medications",
            Self::Messages => "messages",
            Self::Care => "care",
            Self::GlucoseAlerts => "glucose-alerts",
            Self::Operations => "operations",
        }
    }

    /// Reads a name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s.trim())
    }
}

/// A way of telling someone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    /// The inbox in the portal.
    Inbox,
    /// E-mail, to the address the recipient gave.
    Email,
    /// A webhook, to the URL the recipient gave, signed (Standard Webhooks).
    Webhook,
}

impl Channel {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inbox => "inbox",
            Self::Email => "email",
            Self::Webhook => "webhook",
        }
    }

    /// Reads a name.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "inbox" => Some(Self::Inbox),
            "email" => Some(Self::Email),
            "webhook" => Some(Self::Webhook),
            _ => None,
        }
    }
}

/// Who is told: a patient (their inbox, and their account's choices), or a staff account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Recipient {
    /// A patient, by Patient id.
    Patient(String),
    /// An account, by user id.
    Account(String),
}

impl Recipient {
    /// Whom an account's notifications are for: a patient's account's are its patient's
    /// (`patient`), any other account's its own.
    pub fn of_account(account: &str, patient: Option<&str>) -> Self {
        match patient {
            Some(p) => Self::Patient(p.to_string()),
            None => Self::Account(account.to_string()),
        }
    }

    /// The key its settings and outbox rows are kept under.
    pub fn key(&self) -> String {
        match self {
            Self::Patient(id) => format!("Patient/{id}"),
            Self::Account(id) => format!("User/{id}"),
        }
    }

    /// Reads a key.
    pub fn from_key(key: &str) -> Option<Self> {
        if let Some(id) = key.strip_prefix("Patient/") {
            Some(Self::Patient(id.to_string()))
        } else {
            key.strip_prefix("User/")
                .map(|id| Self::Account(id.to_string()))
        }
    }
}

/// A recipient's choices: channels per category. A category not named gets the default:
/// the inbox for patients' categories; e-mail (when an address is set) for operations;
/// nothing for glucose alerts (each patient turns them on).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choices(pub BTreeMap<Category, Vec<Channel>>);

impl Choices {
    /// The channels chosen for `category`.
    pub fn channels(&self, category: Category) -> Vec<Channel> {
        match self.0.get(&category) {
            Some(c) => c.clone(),
            None if category == Category::Operations => vec![Channel::Email],
            None if category == Category::GlucoseAlerts => Vec::new(),
            None => vec![Channel::Inbox],
        }
    }
}

/// What to tell. The texts name no patient data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// What it is about.
    pub category: Category,
    /// The event it tells of: a second notice with the same key on a channel is not sent.
    pub event: String,
    /// One line.
    pub subject: String,
    /// A few sentences.
    pub body: String,
}

/// What an outbox row's sealed payload holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Payload {
    subject: String,
    body: String,
    /// The event a scheduled notice tells of, when it is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event: Option<String>,
}

/// The outbox channel of a notice kept until it is due (a reminder): when due, it is told
/// on the channels its recipient chooses then.
pub const SCHEDULED: &str = "scheduled";

/// A recipient's settings, opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Channels per category.
    pub choices: Choices,
    /// Where e-mail goes.
    pub email: Option<String>,
    /// Where webhooks go (its secret is not shown again once set).
    pub webhook: Option<WebhookTarget>,
}

/// Where a recipient's webhooks go, and the secret they are signed with.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookTarget {
    /// The URL.
    pub url: String,
    /// `whsec_` and the Base64 key.
    pub secret: String,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("url", &self.url)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Why a send failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// For good (a refused address): not tried again.
    #[error("refused: {0}")]
    Permanent(String),
    /// For now (the server is down, busy): tried again after a backoff.
    #[error("not sent now: {0}")]
    Transient(String),
}

/// Sends e-mail (the SMTP adapter).
#[async_trait::async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Sends one message; `message_id` is the same on every attempt, so a receiver can tell
    /// a repeat.
    async fn send(
        &self,
        to: &str,
        subject: &str,
        body: &str,
        message_id: &str,
    ) -> Result<(), SendError>;
}

/// Sends webhooks (the HTTP adapter), signing them as Standard Webhooks says.
#[async_trait::async_trait]
pub trait WebhookSender: Send + Sync + 'static {
    /// Whether the node may send to `url`; the reason, in words for its owner, when not.
    ///
    /// # Errors
    /// The reason.
    fn check(&self, url: &str) -> Result<(), String>;
    /// POSTs `body` (JSON) to `url` as message `id` at `timestamp` (Unix seconds), signed
    /// with `secret`.
    async fn post(
        &self,
        url: &str,
        secret: &str,
        id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<(), SendError>;
}

/// Why the hub failed.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] medmesh_store::StoreError),
    /// Sealing or opening failed.
    #[error(transparent)]
    Records(#[from] RecordError),
    /// A setting is not valid; the text says which.
    #[error("{0}")]
    Invalid(String),
}

/// The wait before attempt `n + 1`: 2 s doubling to 10 minutes.
pub fn backoff_micros(attempts: i64) -> i64 {
    let seconds = 2i64 << attempts.clamp(0, 9);
    seconds.min(600) * 1_000_000
}

/// The hub.
pub struct NotificationHub {
    records: Arc<RecordService>,
    store: Arc<dyn NotificationHubStore>,
    mailer: Option<Arc<dyn Mailer>>,
    webhooks: Option<(Arc<dyn WebhookSender>, Arc<dyn medmesh_kernel::Random>)>,
    /// Channels other capabilities deliver (FHIR Subscriptions' rest-hook), by name.
    added: Vec<(String, Arc<dyn ChannelDelivery>)>,
    node_name: String,
    node_url: String,
}

/// Sends on a channel another capability adds to the hub (FHIR Subscriptions' rest-hook):
/// the hub keeps the queue (durable, once across replicas, retried with backoff, failures
/// listed for admins); the capability says how one queued message is sent.
#[async_trait::async_trait]
pub trait ChannelDelivery: Send + Sync + 'static {
    /// Sends one queued message: `body` is what it was queued with, opened.
    async fn deliver(&self, row: &NotificationOutboxRow, body: &str) -> Result<(), SendError>;
    /// Told when the hub gives up on a message (after its attempts, or a permanent refusal).
    async fn given_up(&self, row: &NotificationOutboxRow);
}

impl std::fmt::Debug for NotificationHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationHub")
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

fn address_context(key: &str) -> String {
    format!("notify/{key}/email")
}

fn webhook_context(key: &str) -> String {
    format!("notify/{key}/webhook")
}

fn payload_context(id: &str) -> String {
    format!("notify/outbox/{id}")
}

/// A plausible e-mail address: one `@`, something on each side, a dot in the domain, no
/// spaces or angle brackets, at most 254 characters.
fn valid_email(a: &str) -> bool {
    let Some((local, domain)) = a.split_once('@') else {
        return false;
    };
    a.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !a
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>' || c == ',')
}

impl NotificationHub {
    /// The hub over `records` (its clock, ids and keys) and `store`; e-mail through
    /// `mailer` when there is one. `node_name` and `node_url` go into the texts.
    pub fn new(
        records: Arc<RecordService>,
        store: Arc<dyn NotificationHubStore>,
        mailer: Option<Arc<dyn Mailer>>,
        node_name: impl Into<String>,
        node_url: impl Into<String>,
    ) -> Self {
        Self {
            records,
            store,
            mailer,
            webhooks: None,
            added: Vec::new(),
            node_name: node_name.into(),
            node_url: node_url.into(),
        }
    }

    /// Sends webhooks through `sender`, making their secrets from `random`.
    pub fn with_webhooks(
        mut self,
        sender: Arc<dyn WebhookSender>,
        random: Arc<dyn medmesh_kernel::Random>,
    ) -> Self {
        self.webhooks = Some((sender, random));
        self
    }

    /// Delivers the outbox channel `name` through `delivery` (see [`Self::queue_on`]).
    pub fn with_channel(mut self, name: &str, delivery: Arc<dyn ChannelDelivery>) -> Self {
        self.added.push((name.to_string(), delivery));
        self
    }

    /// Queues `body` on an added channel (see [`Self::with_channel`]) for `account` (a key
    /// such as `Subscription/<id>`), sealed, due at once. `event` keys it: queuing it twice
    /// queues once. Returns whether it was new.
    ///
    /// # Errors
    /// [`HubError::Invalid`] for a channel the hub was not given; as sealing or the store fails.
    pub async fn queue_on(
        &self,
        channel: &str,
        account: &str,
        category: Category,
        event: &str,
        body: &str,
    ) -> Result<bool, HubError> {
        let now = self.records.core().now();
        let row = self
            .prepare_on(channel, account, category, event, body, now)
            .await?;
        Ok(self.store.notification_enqueue(&row).await?)
    }

    /// A message for an added channel, due at `due`, as an outbox row for the caller to
    /// queue in its own transaction (see
    /// [`medmesh_store::NotificationTx::queue_notification`]). Keyed as [`Self::queue_on`].
    ///
    /// # Errors
    /// As [`Self::queue_on`].
    pub async fn prepare_on(
        &self,
        channel: &str,
        account: &str,
        category: Category,
        event: &str,
        body: &str,
        due: i64,
    ) -> Result<NotificationOutboxRow, HubError> {
        if !self.added.iter().any(|(name, _)| name == channel) {
            return Err(HubError::Invalid(format!("no channel {channel}")));
        }
        let payload = Payload {
            subject: String::new(),
            body: body.to_string(),
            event: None,
        };
        self.outbox_row(
            account.to_string(),
            category,
            channel,
            format!("{account}|{event}"),
            &payload,
            due,
        )
        .await
    }

    /// Sets `who`'s channels per category and e-mail address, keeping their webhook (which
    /// is set on its own, with its secret).
    ///
    /// # Errors
    /// As [`Self::set_settings`].
    pub async fn set_choices(
        &self,
        who: &Recipient,
        choices: Choices,
        email: Option<String>,
    ) -> Result<(), HubError> {
        let webhook = self.settings(who).await?.webhook;
        self.set_settings(
            who,
            &Settings {
                choices,
                email,
                webhook,
            },
        )
        .await
    }

    /// Removes `who`'s webhook.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn remove_webhook(&self, who: &Recipient) -> Result<(), HubError> {
        let mut settings = self.settings(who).await?;
        settings.webhook = None;
        self.set_settings(who, &settings).await
    }

    /// Sets where `who`'s webhooks go and makes a new secret for them, returned this once
    /// (the receiver verifies signatures with it).
    ///
    /// # Errors
    /// [`HubError::Invalid`] when webhooks are off or the URL may not be used.
    pub async fn set_webhook(&self, who: &Recipient, url: &str) -> Result<String, HubError> {
        let Some((sender, random)) = &self.webhooks else {
            return Err(HubError::Invalid("webhooks are off on this node".into()));
        };
        sender.check(url.trim()).map_err(HubError::Invalid)?;
        let mut key = [0u8; 24];
        random.fill(&mut key);
        use base64::Engine as _;
        let secret = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        let mut settings = self.settings(who).await?;
        settings.webhook = Some(WebhookTarget {
            url: url.trim().to_string(),
            secret: secret.clone(),
        });
        self.set_settings(who, &settings).await?;
        Ok(secret)
    }

    async fn seal(&self, context: &str, plain: &[u8]) -> Result<Vec<u8>, HubError> {
        Ok(self
            .records
            .core()
            .seal_detached(NOTIFY_KEY_OWNER, context, plain)
            .await?)
    }

    async fn open(&self, context: &str, stored: &[u8]) -> Result<Vec<u8>, HubError> {
        Ok(self.records.core().open_detached(context, stored).await?)
    }

    /// A recipient's settings (the defaults when they set none).
    ///
    /// # Errors
    /// When the store fails or the address cannot be opened.
    pub async fn settings(&self, who: &Recipient) -> Result<Settings, HubError> {
        let key = who.key();
        let Some(row) = self.store.notification_settings(&key).await? else {
            return Ok(Settings::default());
        };
        let choices = serde_json::from_str(&row.choices).unwrap_or_default();
        let email = match &row.email {
            Some(sealed) => Some(
                String::from_utf8_lossy(&self.open(&address_context(&key), sealed).await?)
                    .into_owned(),
            ),
            None => None,
        };
        let webhook = match &row.webhook {
            Some(sealed) => {
                serde_json::from_slice(&self.open(&webhook_context(&key), sealed).await?).ok()
            }
            None => None,
        };
        Ok(Settings {
            choices,
            email,
            webhook,
        })
    }

    /// Sets a recipient's settings.
    ///
    /// # Errors
    /// [`HubError::Invalid`] for an address that is not one; store failures.
    pub async fn set_settings(&self, who: &Recipient, settings: &Settings) -> Result<(), HubError> {
        let key = who.key();
        let email = match settings.email.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(a) if valid_email(a) => {
                Some(self.seal(&address_context(&key), a.as_bytes()).await?)
            }
            Some(_) => return Err(HubError::Invalid("that is not an e-mail address".into())),
        };
        let webhook = match &settings.webhook {
            Some(w) => Some(
                self.seal(
                    &webhook_context(&key),
                    &serde_json::to_vec(w).unwrap_or_default(),
                )
                .await?,
            ),
            None => None,
        };
        let row = NotificationSettingsRow {
            account: key,
            choices: serde_json::to_string(&settings.choices).unwrap_or_else(|_| "{}".into()),
            email,
            webhook,
            updated_micros: self.records.core().now(),
        };
        Ok(self.store.put_notification_settings(&row).await?)
    }

    /// The node's public address, as the texts give it.
    pub fn node_url(&self) -> &str {
        &self.node_url
    }

    /// The texts of the notices the node sends, in words that name no patient data.
    pub fn notice(&self, category: Category, event: impl Into<String>) -> Notice {
        let node = &self.node_name;
        let url = &self.node_url;
        let (subject, body) = match category {
            Category::Results => (
                format!("New results at {node}"),
                format!(
                    "There are new results in your record at {node}. Sign in to see them: {url}"
                ),
            ),
            Category::Documents => (
                format!("Your documents at {node}"),
                format!(
                    "Something happened to one of your documents at {node}. Sign in to see what: {url}"
                ),
            ),
            Category::Referrals => (
                format!("A referral at {node}"),
                format!(
                    "There is a referral or request for you at {node}. Sign in to see it: {url}"
                ),
            ),
            Category::BreakGlass => (
                format!("Emergency access at {node}"),
                format!(
                    "Someone used emergency access to a record at {node}. Sign in to review it: {url}"
                ),
            ),
            Category::Appointments => (
                format!("Your appointments at {node}"),
                format!("There is news about an appointment at {node}. Sign in to see it: {url}"),
            ),
            Category::Medications => (
                format!("Your medications at {node}"),
                format!("There is news about your medications at {node}. Sign in to see it: {url}"),
            ),
            Category::Messages => (
                format!("A new message at {node}"),
                format!("You have a new message at {node}. Sign in to read it: {url}"),
            ),
            Category::Care => (
                format!("Your care plan at {node}"),
                format!(
                    "There is news about a care plan, a task or a care team at {node}. Sign in to see it: {url}"
                ),
            ),
            Category::GlucoseAlerts => (
                format!("Glucose alert at {node}"),
                format!(
                    "There is a glucose alert for you at {node}. Check your glucose now, and sign in to see it: {url}"
                ),
            ),
            Category::Operations => (
                format!("Operations alert at {node}"),
                format!("{node} needs an operator's attention. Sign in to see what: {url}"),
            ),
        };
        Notice {
            category,
            event: event.into(),
            subject,
            body,
        }
    }

    /// A reminder that a dose is due, in words that name no medication.
    pub fn dose_reminder(&self, event: impl Into<String>) -> Notice {
        Notice {
            category: Category::Medications,
            event: event.into(),
            subject: format!("A dose is due ({})", self.node_name),
            body: format!(
                "It is time for one of your medications. Log it when you take it: {}",
                self.node_url
            ),
        }
    }

    /// Tells `who` of `notice` on the channels they chose: the inbox at once, the others
    /// through the outbox. Returns the channels it went to.
    ///
    /// # Errors
    /// When the store fails; nothing is half-queued that a retry of the same event would
    /// queue twice.
    pub async fn notify(&self, who: &Recipient, notice: &Notice) -> Result<Vec<Channel>, HubError> {
        self.tell(who, notice, true).await
    }

    /// As [`Self::notify`], for a capability that wrote the inbox row itself, in the
    /// transaction of what it tells of (break-glass, a document opened): the other
    /// channels only.
    ///
    /// # Errors
    /// As [`Self::notify`].
    pub async fn notify_beyond_inbox(
        &self,
        who: &Recipient,
        notice: &Notice,
    ) -> Result<Vec<Channel>, HubError> {
        self.tell(who, notice, false).await
    }

    /// As [`Self::notify`], written in `tx`, the transaction that records what it tells of:
    /// the inbox row and the other channels' queued deliveries commit with it or not at
    /// all, and cost it no commit of their own.
    ///
    /// # Errors
    /// As [`Self::notify`]; the caller's transaction then holds a failed statement, and
    /// should be rolled back.
    pub async fn notify_in(
        &self,
        tx: &mut medmesh_at_rest::WriteTx,
        who: &Recipient,
        notice: &Notice,
    ) -> Result<Vec<Channel>, HubError> {
        self.tell_channels(who, notice, true, None, Some(tx)).await
    }

    async fn tell(
        &self,
        who: &Recipient,
        notice: &Notice,
        inbox: bool,
    ) -> Result<Vec<Channel>, HubError> {
        if inbox {
            self.tell_as(who, notice, None).await
        } else {
            self.tell_channels(who, notice, false, None, None).await
        }
    }

    /// Tells on every chosen channel; the inbox row gets `inbox_id` when given.
    async fn tell_as(
        &self,
        who: &Recipient,
        notice: &Notice,
        inbox_id: Option<&str>,
    ) -> Result<Vec<Channel>, HubError> {
        self.tell_channels(who, notice, true, inbox_id, None).await
    }

    /// Tells on every channel `who` chose: in `tx` when given, else each in a transaction
    /// of its own.
    async fn tell_channels(
        &self,
        who: &Recipient,
        notice: &Notice,
        inbox: bool,
        inbox_id: Option<&str>,
        mut tx: Option<&mut medmesh_at_rest::WriteTx>,
    ) -> Result<Vec<Channel>, HubError> {
        let settings = self.settings(who).await?;
        let mut sent = Vec::new();
        for channel in settings.choices.channels(notice.category) {
            match channel {
                Channel::Inbox if !inbox => {}
                Channel::Inbox => {
                    // A patient's inbox is kept under their id, a staff account's under
                    // `User/<id>` (read with the PDP's `StaffInbox`).
                    let owner = match who {
                        Recipient::Patient(patient) => patient.clone(),
                        Recipient::Account(_) => who.key(),
                    };
                    self.to_inbox(&owner, notice, inbox_id, tx.as_deref_mut())
                        .await?;
                    sent.push(channel);
                }
                Channel::Email => {
                    if settings.email.is_none() || self.mailer.is_none() {
                        continue;
                    }
                    if self
                        .enqueue(who, notice, channel, tx.as_deref_mut())
                        .await?
                    {
                        sent.push(channel);
                    }
                }
                Channel::Webhook => {
                    if settings.webhook.is_none() || self.webhooks.is_none() {
                        continue;
                    }
                    if self
                        .enqueue(who, notice, channel, tx.as_deref_mut())
                        .await?
                    {
                        sent.push(channel);
                    }
                }
            }
        }
        Ok(sent)
    }

    /// Tells each of `accounts` (user ids): operations alerts go to the node admins.
    ///
    /// # Errors
    /// As [`Self::notify`].
    pub async fn notify_accounts(
        &self,
        accounts: &[String],
        notice: &Notice,
    ) -> Result<usize, HubError> {
        let mut told = 0;
        for account in accounts {
            if !self
                .notify(&Recipient::Account(account.clone()), notice)
                .await?
                .is_empty()
            {
                told += 1;
            }
        }
        Ok(told)
    }

    /// Writes an inbox row: in `tx` when given, else in a transaction of its own.
    async fn to_inbox(
        &self,
        patient: &str,
        notice: &Notice,
        id: Option<&str>,
        tx: Option<&mut medmesh_at_rest::WriteTx>,
    ) -> Result<(), HubError> {
        let core = self.records.core();
        let row = medmesh_store::Notification {
            id: id.map_or_else(|| core.ids().new_id(), str::to_string),
            patient_id: patient.to_string(),
            kind: notice.category.as_str().to_string(),
            message: notice.subject.clone(),
            created_micros: core.now(),
            read_micros: None,
        };
        if let Some(tx) = tx {
            return Ok(tx.notify(&row).await.map_err(RecordError::from)?);
        }
        let mut tx = core.begin_write().await?;
        tx.notify(&row).await.map_err(RecordError::from)?;
        tx.commit().await.map_err(RecordError::from)?;
        Ok(())
    }

    /// Queues a delivery: in `tx` when given, else on its own.
    async fn enqueue(
        &self,
        who: &Recipient,
        notice: &Notice,
        channel: Channel,
        tx: Option<&mut medmesh_at_rest::WriteTx>,
    ) -> Result<bool, HubError> {
        let payload = Payload {
            subject: notice.subject.clone(),
            body: notice.body.clone(),
            event: None,
        };
        let now = self.records.core().now();
        let row = self
            .outbox_row(
                who.key(),
                notice.category,
                channel.as_str(),
                format!("{}|{}", who.key(), notice.event),
                &payload,
                now,
            )
            .await?;
        match tx {
            Some(tx) => Ok(tx
                .queue_notification(&row)
                .await
                .map_err(RecordError::from)?),
            None => Ok(self.store.notification_enqueue(&row).await?),
        }
    }

    /// A notice to tell `who` at `due` (microseconds), as an outbox row for the caller to
    /// queue in the transaction that makes it necessary (see
    /// [`medmesh_store::NotificationTx::queue_notification`]), so it exists exactly when
    /// what it reminds of does. When due, it is told on the channels `who` chooses then;
    /// the notice's event keys it, so queuing it twice, or a delivery retried after a
    /// crash, tells it once.
    ///
    /// # Errors
    /// When sealing fails.
    pub async fn prepare_scheduled(
        &self,
        who: &Recipient,
        notice: &Notice,
        due: i64,
    ) -> Result<NotificationOutboxRow, HubError> {
        let payload = Payload {
            subject: notice.subject.clone(),
            body: notice.body.clone(),
            event: Some(notice.event.clone()),
        };
        self.outbox_row(
            who.key(),
            notice.category,
            SCHEDULED,
            scheduled_key(who, &notice.event),
            &payload,
            due,
        )
        .await
    }

    /// A pending outbox row: `payload` sealed under the row's new id, due at `due`.
    async fn outbox_row(
        &self,
        account: String,
        category: Category,
        channel: &str,
        dedupe_key: String,
        payload: &Payload,
        due: i64,
    ) -> Result<NotificationOutboxRow, HubError> {
        let core = self.records.core();
        let id = core.ids().new_id();
        let plain = serde_json::to_vec(payload).unwrap_or_default();
        Ok(NotificationOutboxRow {
            payload: self.seal(&payload_context(&id), &plain).await?,
            id,
            account,
            category: category.as_str().to_string(),
            channel: channel.to_string(),
            dedupe_key,
            status: "pending".into(),
            attempts: 0,
            next_attempt_micros: due,
            last_error: None,
            created_micros: core.now(),
        })
    }

    /// The key prefix under which [`medmesh_store::NotificationTx::withdraw_notifications`]
    /// withdraws `who`'s scheduled notices whose events start with `event_prefix`.
    pub fn scheduled_prefix(who: &Recipient, event_prefix: &str) -> (String, String) {
        (who.key(), scheduled_key(who, event_prefix))
    }

    /// Delivers what is due, as worker `worker`; returns how many were attempted.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn deliver_due(&self, worker: &str) -> Result<usize, HubError> {
        let now = self.records.core().now();
        let due = self
            .store
            .notification_claim(worker, now, 120_000_000, CLAIM_BATCH)
            .await?;
        let attempted = due.len();
        // Sent at once, then recorded: after a crash before the record, the lease gives the
        // rows to a worker again, and a receiver can tell the repeat (an e-mail's
        // Message-ID, a webhook's id and an inbox row's id are the same on every attempt).
        let sent: Vec<(NotificationOutboxRow, Result<(), SendError>)> = futures::stream::iter(due)
            .map(|row| async move {
                let result = self.send(&row).await;
                (row, result)
            })
            .buffer_unordered(SENDS_AT_ONCE)
            .collect()
            .await;
        for (mut row, result) in sent {
            row.attempts += 1;
            match result {
                Ok(()) => {
                    row.status = "delivered".into();
                    row.last_error = None;
                }
                Err(SendError::Permanent(why)) => {
                    row.status = "failed".into();
                    row.last_error = Some(why);
                }
                Err(SendError::Transient(why)) => {
                    if row.attempts >= MAX_ATTEMPTS {
                        row.status = "failed".into();
                    } else {
                        row.next_attempt_micros =
                            self.records.core().now() + backoff_micros(row.attempts - 1);
                    }
                    row.last_error = Some(why);
                }
            }
            if row.status == "failed" {
                tracing::warn!(notification = %row.id, channel = %row.channel, "a notification was given up on");
                if let Some((_, delivery)) = self.added.iter().find(|(n, _)| *n == row.channel) {
                    delivery.given_up(&row).await;
                }
            }
            self.store.notification_attempted(&row).await?;
        }
        Ok(attempted)
    }

    /// The settings of the recipient a queued notification is for, as they are now (an
    /// address may have changed since it was queued).
    async fn recipient_settings(&self, row: &NotificationOutboxRow) -> Result<Settings, SendError> {
        let who = Recipient::from_key(&row.account)
            .ok_or_else(|| SendError::Permanent("unknown recipient".into()))?;
        self.settings(&who)
            .await
            .map_err(|_| SendError::Transient("the recipient's settings could not be read".into()))
    }

    async fn send(&self, row: &NotificationOutboxRow) -> Result<(), SendError> {
        let opened = self
            .open(&payload_context(&row.id), &row.payload)
            .await
            .map_err(|_| SendError::Permanent("the text could not be opened".into()))?;
        let payload: Payload = serde_json::from_slice(&opened)
            .map_err(|_| SendError::Permanent("the text is not readable".into()))?;
        match Channel::parse(&row.channel) {
            Some(Channel::Email) => {
                let Some(mailer) = &self.mailer else {
                    return Err(SendError::Transient("no mail server is configured".into()));
                };
                let address = self.recipient_settings(row).await?.email.ok_or_else(|| {
                    SendError::Permanent("the recipient has no address now".into())
                })?;
                let host = self
                    .node_url
                    .split("://")
                    .nth(1)
                    .and_then(|r| r.split(['/', ':']).next())
                    .filter(|h| !h.is_empty())
                    .unwrap_or("medmesh.invalid");
                let message_id = format!("<{}@{host}>", row.id);
                mailer
                    .send(&address, &payload.subject, &payload.body, &message_id)
                    .await
            }
            Some(Channel::Webhook) => {
                let Some((sender, _)) = &self.webhooks else {
                    return Err(SendError::Transient("webhooks are off on this node".into()));
                };
                let target = self.recipient_settings(row).await?.webhook.ok_or_else(|| {
                    SendError::Permanent("the recipient has no webhook now".into())
                })?;
                let now = self.records.core().now();
                let body = serde_json::json!({
                    "type": format!("notification.{}", row.category),
                    "timestamp": medmesh_fhir::datetime::format_instant(now),
                    "data": {
                        "category": row.category,
                        "subject": payload.subject,
                        "body": payload.body,
                    },
                });
                sender
                    .post(
                        &target.url,
                        &target.secret,
                        &format!("msg_{}", row.id),
                        now / 1_000_000,
                        &serde_json::to_vec(&body).unwrap_or_default(),
                    )
                    .await
            }
            None if row.channel == SCHEDULED => {
                let who = Recipient::from_key(&row.account)
                    .ok_or_else(|| SendError::Permanent("no such recipient".into()))?;
                let category = Category::parse(&row.category)
                    .ok_or_else(|| SendError::Permanent("unknown category".into()))?;
                let notice = Notice {
                    category,
                    event: payload.event.unwrap_or_else(|| row.id.clone()),
                    subject: payload.subject,
                    body: payload.body,
                };
                // Told again after a crash, it writes no second inbox row (its id is this
                // row's) and queues no second e-mail or webhook (same event).
                self.tell_as(&who, &notice, Some(&row.id))
                    .await
                    .map(|_| ())
                    .map_err(|_| SendError::Transient("the notice could not be told".into()))
            }
            // The inbox is written at once, never queued.
            Some(Channel::Inbox) => Err(SendError::Permanent("unknown channel".into())),
            None => match self.added.iter().find(|(n, _)| *n == row.channel) {
                Some((_, delivery)) => delivery.deliver(row, &payload.body).await,
                None => Err(SendError::Permanent("unknown channel".into())),
            },
        }
    }

    /// Notifications given up on, newest first (no text, no address).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn failed(&self, limit: u32) -> Result<Vec<NotificationOutboxRow>, HubError> {
        Ok(self.store.notifications_in("failed", limit).await?)
    }

    /// Puts a notification given up on back in the queue.
    ///
    /// # Errors
    /// [`HubError::Invalid`] when there is no such failed notification.
    pub async fn retry(&self, id: &str) -> Result<(), HubError> {
        let Some(mut row) = self.store.notification(id).await? else {
            return Err(HubError::Invalid("no such notification".into()));
        };
        if row.status != "failed" {
            return Err(HubError::Invalid(
                "only a failed notification is retried".into(),
            ));
        }
        row.status = "pending".into();
        row.attempts = 0;
        row.next_attempt_micros = self.records.core().now();
        Ok(self.store.notification_attempted(&row).await?)
    }

    /// Counts by channel and status.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn counts(&self) -> Result<Vec<(String, String, i64)>, HubError> {
        Ok(self.store.notification_counts().await?)
    }
}

/// Delivers the outbox forever, as a worker of its own (named by a fresh id): at once
/// while there is work, else every second.
pub async fn run(hub: Arc<NotificationHub>) {
    let worker = hub.records.core().ids().new_id();
    loop {
        let wait = match hub.deliver_due(&worker).await {
            Ok(n) if n > 0 => std::time::Duration::ZERO,
            Ok(_) => std::time::Duration::from_secs(1),
            Err(e) => {
                tracing::error!(error = %e, "the notification outbox could not be read");
                std::time::Duration::from_secs(5)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_inbox_and_email_for_operations() {
        let c = Choices::default();
        assert_eq!(c.channels(Category::Results), [Channel::Inbox]);
        assert_eq!(c.channels(Category::Operations), [Channel::Email]);
        let chosen: Choices =
            serde_json::from_str(r#"{"results": ["inbox", "email"], "break-glass": []}"#).unwrap();
        assert_eq!(
            chosen.channels(Category::Results),
            [Channel::Inbox, Channel::Email]
        );
        assert!(chosen.channels(Category::BreakGlass).is_empty());
    }

    #[test]
    fn recipients_round_trip_their_keys() {
        for r in [
            Recipient::Patient("p1".into()),
            Recipient::Account("u1".into()),
        ] {
            assert_eq!(Recipient::from_key(&r.key()), Some(r));
        }
        assert_eq!(Recipient::from_key("Practitioner/x"), None);
    }

    #[test]
    fn addresses_are_checked() {
        assert!(valid_email("ada@example.org"));
        for bad in [
            "ada",
            "ada@",
            "@example.org",
            "ada@example",
            "a b@example.org",
            "a@b@c.org",
            "<a@b.org>",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_to_ten_minutes() {
        assert_eq!(backoff_micros(0), 2_000_000);
        assert_eq!(backoff_micros(2), 8_000_000);
        assert_eq!(backoff_micros(30), 600_000_000);
    }

    #[test]
    fn categories_round_trip() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(c));
        }
    }
}
