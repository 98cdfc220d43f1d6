//! The notification hub's rows: each account's choices (which channels per category, and
//! its e-mail address, sealed), and the durable outbox every notification is delivered
//! from.

use async_trait::async_trait;

use crate::StoreError;

/// An account's notification settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationSettingsRow {
    /// The account (user id).
    pub account: String,
    /// Channels per category, JSON (`{"results": ["inbox", "email"]}`): no personal data.
    pub choices: String,
    /// The e-mail address, sealed.
    pub email: Option<Vec<u8>>,
    /// The webhook's URL and secret, sealed.
    pub webhook: Option<Vec<u8>>,
    /// Last change, microseconds.
    pub updated_micros: i64,
}

/// A notification waiting to be delivered on one channel, or delivered, or given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationOutboxRow {
    /// Its id.
    pub id: String,
    /// The account it is for.
    pub account: String,
    /// Its category (`results`, `operations` ...).
    pub category: String,
    /// The channel (`email`, `webhook` ...).
    pub channel: String,
    /// What makes it one notification: a second with the same channel and key is not
    /// queued.
    pub dedupe_key: String,
    /// What it says, sealed (it names no patient data unless the account opted in).
    pub payload: Vec<u8>,
    /// `pending`, `delivered` or `failed` (given up after its attempts).
    pub status: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Not to be tried before, microseconds.
    pub next_attempt_micros: i64,
    /// Why the last attempt failed (no personal data: a code, an error's kind).
    pub last_error: Option<String>,
    /// Queued, microseconds.
    pub created_micros: i64,
}

/// The notification hub's store.
#[async_trait]
pub trait NotificationHubStore: Send + Sync + 'static {
    /// An account's settings, when it set any.
    async fn notification_settings(
        &self,
        account: &str,
    ) -> Result<Option<NotificationSettingsRow>, StoreError>;
    /// Sets an account's settings.
    async fn put_notification_settings(
        &self,
        row: &NotificationSettingsRow,
    ) -> Result<(), StoreError>;
    /// Queues a notification; false when one with its channel and key is queued already.
    async fn notification_enqueue(&self, row: &NotificationOutboxRow) -> Result<bool, StoreError>;
    /// Claims up to `limit` pending notifications due at `now` for `lease_micros`, for one
    /// worker: a notification claimed by a worker (on this node or another on the same
    /// database) is not claimed by another until its lease runs out.
    async fn notification_claim(
        &self,
        worker: &str,
        now: i64,
        lease_micros: i64,
        limit: u32,
    ) -> Result<Vec<NotificationOutboxRow>, StoreError>;
    /// Records an attempt's outcome (status, attempts, next attempt, error) and ends the
    /// claim.
    async fn notification_attempted(&self, row: &NotificationOutboxRow) -> Result<(), StoreError>;
    /// Notifications in a status, newest first.
    async fn notifications_in(
        &self,
        status: &str,
        limit: u32,
    ) -> Result<Vec<NotificationOutboxRow>, StoreError>;
    /// One notification.
    async fn notification(&self, id: &str) -> Result<Option<NotificationOutboxRow>, StoreError>;
    /// Counts by channel and status.
    async fn notification_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError>;
}
