//! The interface engine's rows: every HL7 v2 message received (sealed), its state and its
//! acknowledgement; and the configured senders.

use async_trait::async_trait;

use crate::StoreError;

/// A message as the engine keeps it. Only the sender's configured name, MSH-10, MSH-9 and
/// the engine's own state are in clear; the message and what became of it are sealed, and
/// the patient it is about is a blind-index token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7MessageRow {
    /// The engine's id for it.
    pub id: String,
    /// The configured sender's name (`unknown` for an unknown sender).
    pub sender: String,
    /// MSH-10 (the engine's id when it could not be read).
    pub control_id: String,
    /// MSH-9 as `CODE^TRIGGER`.
    pub message_type: String,
    /// When it arrived, microseconds.
    pub received_micros: i64,
    /// `received` (stored, not yet applied), `applied`, `dead` (kept with its reason, for
    /// replay), `rejected` (refused before it could be processed).
    pub status: String,
    /// The acknowledgement code sent (`AA`, `AE`, `AR`), once sent.
    pub ack_code: Option<String>,
    /// The message, sealed.
    pub raw: Vec<u8>,
    /// What became of it (the error, the resources written), sealed JSON.
    pub detail: Option<Vec<u8>>,
    /// A blind-index token of the patient's identifier, when known.
    pub patient_token: Option<String>,
    /// How many times it was processed.
    pub attempts: i64,
    /// Last change, microseconds.
    pub updated_micros: i64,
}

/// Which messages to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hl7Filter {
    /// The sender's name.
    pub sender: Option<String>,
    /// `CODE^TRIGGER`, or `CODE` for every trigger.
    pub message_type: Option<String>,
    /// Status.
    pub status: Option<String>,
    /// MSH-10.
    pub control_id: Option<String>,
    /// Received at or after, microseconds.
    pub since: Option<i64>,
    /// Received before, microseconds.
    pub until: Option<i64>,
}

/// A configured sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7SenderRow {
    /// Its name (unique).
    pub name: String,
    /// MSH-3 it sends (`*` for any).
    pub application: String,
    /// MSH-4 it sends (`*` for any).
    pub facility: String,
    /// Source addresses or networks it may connect from (`10.0.0.0/8`, `127.0.0.1`),
    /// comma-separated; empty for none (HTTP with credentials only).
    pub addresses: String,
    /// SHA-256 of its HTTP secret, hex, when it has one.
    pub secret_hash: Option<String>,
    /// Its mapping profile, TOML.
    pub profile: String,
    /// When it was added, microseconds.
    pub created_micros: i64,
    /// Where its enhanced-mode application acknowledgements go (`host:port`, MLLP).
    pub ack_destination: Option<String>,
}

/// The HL7 v2 message log inside a write transaction: a message stored in the same commit as
/// what applying it wrote, so a message costs one commit, not one to store it, one to apply it
/// and one to record its outcome.
#[async_trait]
pub trait Hl7Tx: Send {
    /// Stores a message in this transaction; false when the sender already stored one with
    /// this control id (nothing is written).
    async fn insert_hl7_message(&mut self, row: &Hl7MessageRow) -> Result<bool, StoreError>;
    /// Records what became of a message, in this transaction.
    async fn update_hl7_message(&mut self, row: &Hl7MessageRow) -> Result<(), StoreError>;
}

/// The interface engine's store.
#[async_trait]
pub trait Hl7Store: Send + Sync + 'static {
    /// Stores a message; false when the sender already sent one with this control id (the
    /// row is left as it is).
    async fn hl7_insert(&self, row: &Hl7MessageRow) -> Result<bool, StoreError>;
    /// A message by the engine's id.
    async fn hl7_message(&self, id: &str) -> Result<Option<Hl7MessageRow>, StoreError>;
    /// A message by sender and MSH-10.
    async fn hl7_message_by_control(
        &self,
        sender: &str,
        control_id: &str,
    ) -> Result<Option<Hl7MessageRow>, StoreError>;
    /// Records what became of a message.
    async fn hl7_update(&self, row: &Hl7MessageRow) -> Result<(), StoreError>;
    /// Messages matching the filter, newest first, at most `limit`.
    async fn hl7_messages(
        &self,
        filter: &Hl7Filter,
        limit: u32,
    ) -> Result<Vec<Hl7MessageRow>, StoreError>;
    /// Messages stored but not applied (after a crash), oldest first.
    async fn hl7_pending(&self, limit: u32) -> Result<Vec<Hl7MessageRow>, StoreError>;
    /// Deletes messages received before `before` that are no longer pending; returns how
    /// many.
    async fn hl7_prune(&self, before_micros: i64) -> Result<u64, StoreError>;
    /// Counts by sender and status.
    async fn hl7_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError>;
    /// How many messages match the filter (counted by the database: no row is read).
    async fn hl7_count(&self, filter: &Hl7Filter) -> Result<i64, StoreError>;
    /// Every configured sender.
    async fn hl7_senders(&self) -> Result<Vec<Hl7SenderRow>, StoreError>;
    /// Adds or replaces a sender.
    async fn hl7_put_sender(&self, sender: &Hl7SenderRow) -> Result<(), StoreError>;
    /// Removes a sender; false when there was none.
    async fn hl7_remove_sender(&self, name: &str) -> Result<bool, StoreError>;
}

/// A message queued for a downstream system: sealed, in order per channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7OutboundRow {
    /// The queue entry's id.
    pub id: String,
    /// The channel's name.
    pub channel: String,
    /// What it forwards (the stored inbound message's id), unique per channel.
    pub source_id: String,
    /// Its place in the channel's order, microseconds when queued.
    pub queued_micros: i64,
    /// `pending`, `delivered` or `failed` (refused by the destination with AE).
    pub status: String,
    /// The message, sealed.
    pub payload: Vec<u8>,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// Not to be tried before, microseconds.
    pub next_attempt_micros: i64,
    /// Why the last attempt failed (no patient data: the destination's code, a socket
    /// error's kind).
    pub last_error: Option<String>,
}

/// The outbound queues of the interface engine.
#[async_trait]
pub trait Hl7OutboxStore: Send + Sync + 'static {
    /// Queues a message; false when this channel already has it.
    async fn hl7_enqueue(&self, row: &Hl7OutboundRow) -> Result<bool, StoreError>;
    /// The oldest pending entries of a channel, in order.
    async fn hl7_outbound_pending(
        &self,
        channel: &str,
        limit: u32,
    ) -> Result<Vec<Hl7OutboundRow>, StoreError>;
    /// Records an attempt's outcome.
    async fn hl7_outbound_update(&self, row: &Hl7OutboundRow) -> Result<(), StoreError>;
    /// Entries by channel and status, with counts.
    async fn hl7_outbound_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError>;
    /// How far a channel has read the record's change feed (0 before its first read).
    async fn hl7_event_cursor(&self, channel: &str) -> Result<i64, StoreError>;
    /// Moves a channel's change-feed cursor.
    async fn hl7_set_event_cursor(
        &self,
        channel: &str,
        seq: i64,
        now_micros: i64,
    ) -> Result<(), StoreError>;
}
