//! FHIR Subscriptions' port: the subscriptions themselves, the numbering of the events each
//! was told of, and how far they have read the record's change feed.

use async_trait::async_trait;

use crate::StoreError;

/// A stored FHIR Subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRow {
    /// Its logical id.
    pub id: String,
    /// Whose it is: the subject of the account or client that wrote it.
    pub owner: String,
    /// The canonical URL of its topic.
    pub topic: String,
    /// `requested`, `active`, `error` or `off`.
    pub status: String,
    /// The Subscription as its client wrote it, with the scopes it was granted, sealed.
    pub body: Vec<u8>,
    /// Events numbered for it so far (`events-since-subscription-start`).
    pub events: i64,
    /// Why the last delivery failed (no personal data).
    pub last_error: Option<String>,
    /// Written, microseconds.
    pub created_micros: i64,
    /// Last changed, microseconds.
    pub updated_micros: i64,
}

/// Where subscriptions are kept.
#[async_trait]
pub trait SubscriptionStore: Send + Sync + 'static {
    /// Writes a subscription, replacing one with its id (its event count is kept).
    async fn subscription_put(&self, row: &SubscriptionRow) -> Result<(), StoreError>;
    /// One subscription.
    async fn subscription(&self, id: &str) -> Result<Option<SubscriptionRow>, StoreError>;
    /// An owner's subscriptions, oldest first, at most `limit`.
    async fn subscriptions_of(
        &self,
        owner: &str,
        limit: u32,
    ) -> Result<Vec<SubscriptionRow>, StoreError>;
    /// Subscriptions that are told of events (`requested`, `active` or `error`).
    async fn subscriptions_live(&self) -> Result<Vec<SubscriptionRow>, StoreError>;
    /// Sets a subscription's status and last error; `false` when there is no such one.
    async fn subscription_set_status(
        &self,
        id: &str,
        status: &str,
        last_error: Option<&str>,
        now_micros: i64,
    ) -> Result<bool, StoreError>;
    /// Removes a subscription and its event numbers; `false` when there was none.
    async fn subscription_delete(&self, id: &str) -> Result<bool, StoreError>;
    /// The number of event `event_key` for subscription `id`: the next one, given once, or
    /// the one it was given before. `None` when there is no such subscription.
    async fn subscription_event_number(
        &self,
        id: &str,
        event_key: &str,
        now_micros: i64,
    ) -> Result<Option<i64>, StoreError>;
    /// How far the subscriptions have read the change feed (0 before the first read).
    async fn subscription_cursor(&self) -> Result<i64, StoreError>;
    /// Moves the change feed's cursor.
    async fn subscription_set_cursor(&self, seq: i64, now_micros: i64) -> Result<(), StoreError>;
    /// The newest row of the change feed (0 when it is empty): where reading starts when no
    /// subscription is live.
    async fn change_feed_head(&self) -> Result<i64, StoreError>;
}
