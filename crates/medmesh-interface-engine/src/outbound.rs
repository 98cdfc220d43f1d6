//! Outbound channels: applied messages forwarded to downstream systems through a durable
//! queue per channel, delivered in the order they were applied (so in order per patient),
//! retried with backoff while the destination is down or rejects (AR), set aside when it
//! refuses (AE). The sending itself (MLLP over TCP) is the adapter's; the queue is here.

use medmesh_hl7v2::Message;
use medmesh_store::{Hl7MessageRow, Hl7OutboundRow};

use crate::{EngineError, InterfaceEngine};

/// A downstream system and what it receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// The channel's name.
    pub name: String,
    /// Where it delivers (`host:port`, MLLP).
    pub destination: String,
    /// Message kinds forwarded (`ORU^R01`, or `ORU` for every trigger); empty for all.
    pub message_types: Vec<String>,
    /// Senders whose messages are forwarded; empty for all.
    pub senders: Vec<String>,
    /// Whether inbound messages are forwarded at all (a channel may carry node events only).
    pub inbound: bool,
    /// The node's own events it sends.
    pub events: Vec<crate::NodeEvent>,
    /// MSH-5 of what it sends of the node's events.
    pub receiving_application: String,
    /// MSH-6 of what it sends of the node's events.
    pub receiving_facility: String,
}

impl Channel {
    /// A channel forwarding inbound messages of these kinds and senders (empty: all) to
    /// `destination`, and no node event.
    pub fn forwarding(
        name: &str,
        destination: &str,
        message_types: Vec<String>,
        senders: Vec<String>,
    ) -> Self {
        Self {
            name: name.to_string(),
            destination: destination.to_string(),
            message_types,
            senders,
            inbound: true,
            events: Vec::new(),
            receiving_application: name.to_ascii_uppercase(),
            receiving_facility: String::new(),
        }
    }

    fn wants(&self, kind: &str, sender: &str) -> bool {
        let code = kind.split('^').next().unwrap_or(kind);
        self.inbound
            && (self.message_types.is_empty()
                || self.message_types.iter().any(|t| t == kind || t == code))
            && (self.senders.is_empty() || self.senders.iter().any(|s| s == sender))
    }
}

/// What a queued message's sealed payload is bound to.
fn outbound_context(id: &str) -> String {
    format!("hl7v2-out/{id}")
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The destination accepted it (AA or CA).
    Accepted,
    /// The destination refused it for good (AE, CE): set aside, the queue moves on.
    Refused(String),
    /// Not delivered (down, AR, no answer): tried again after a backoff.
    Retry(String),
}

/// The wait before attempt `n + 1`: 1 s doubling to 5 minutes.
pub fn backoff_micros(attempts: i64) -> i64 {
    let seconds = 1i64 << attempts.clamp(0, 9);
    seconds.min(300) * 1_000_000
}

impl InterfaceEngine {
    /// Adds outbound channels and their queue store.
    pub fn with_outbound(
        mut self,
        outbox: std::sync::Arc<dyn medmesh_store::Hl7OutboxStore>,
        channels: Vec<Channel>,
    ) -> Self {
        self.outbox = Some(outbox);
        self.channels = channels;
        self
    }

    /// The configured channels.
    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    /// Seals `bytes` and queues them on `channel` as `source_id`, in the channel's order at
    /// `queued_micros`, due now. False when the channel has that source already (or there
    /// is no queue).
    pub(crate) async fn enqueue(
        &self,
        channel: &str,
        source_id: String,
        bytes: &[u8],
        queued_micros: i64,
    ) -> Result<bool, EngineError> {
        let Some(outbox) = &self.outbox else {
            return Ok(false);
        };
        let id = self.new_id();
        let payload = self.seal(&outbound_context(&id), bytes).await?;
        let row = Hl7OutboundRow {
            id,
            channel: channel.to_string(),
            source_id,
            queued_micros,
            status: "pending".into(),
            payload,
            attempts: 0,
            next_attempt_micros: self.now(),
            last_error: None,
        };
        Ok(outbox.hl7_enqueue(&row).await?)
    }

    /// Queues an applied message for every channel that wants it. A failure is logged: the
    /// message was applied and acknowledged either way, and an operator can replay it.
    pub(crate) async fn forward(&self, message: &Message, row: &Hl7MessageRow) {
        let text = message.encode();
        for channel in self
            .channels
            .iter()
            .filter(|c| c.wants(&row.message_type, &row.sender))
        {
            if let Err(e) = self
                .enqueue(&channel.name, row.id.clone(), text.as_bytes(), self.now())
                .await
            {
                tracing::error!(channel = %channel.name, error = %e, "an outbound message could not be queued");
            }
        }
    }

    /// The next message a channel must deliver, opened, when there is one; the caller
    /// waits until `next_attempt_micros` before sending it.
    ///
    /// # Errors
    /// When the queue cannot be read or the message opened.
    pub async fn next_outbound(
        &self,
        channel: &str,
    ) -> Result<Option<(Hl7OutboundRow, Vec<u8>)>, EngineError> {
        let Some(outbox) = &self.outbox else {
            return Ok(None);
        };
        let Some(row) = outbox.hl7_outbound_pending(channel, 1).await?.pop() else {
            return Ok(None);
        };
        let bytes = self.open(&outbound_context(&row.id), &row.payload).await?;
        Ok(Some((row, bytes)))
    }

    /// Records a delivery attempt.
    ///
    /// # Errors
    /// When the queue cannot be written.
    pub async fn outbound_attempted(
        &self,
        mut row: Hl7OutboundRow,
        result: Delivery,
    ) -> Result<(), EngineError> {
        let Some(outbox) = &self.outbox else {
            return Ok(());
        };
        row.attempts += 1;
        match result {
            Delivery::Accepted => {
                row.status = "delivered".into();
                row.last_error = None;
            }
            Delivery::Refused(why) => {
                row.status = "failed".into();
                row.last_error = Some(why);
            }
            Delivery::Retry(why) => {
                row.next_attempt_micros = self.now() + backoff_micros(row.attempts - 1);
                row.last_error = Some(why);
            }
        }
        outbox.hl7_outbound_update(&row).await?;
        Ok(())
    }

    /// Now, on the engine's clock (for the delivery worker's waits).
    pub fn clock_micros(&self) -> i64 {
        self.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_filter_by_kind_and_sender() {
        let c = Channel::forwarding(
            "lis",
            "127.0.0.1:1",
            vec!["ORU^R01".into(), "ADT".into()],
            vec!["lab".into()],
        );
        assert!(c.wants("ORU^R01", "lab"));
        assert!(c.wants("ADT^A08", "lab"));
        assert!(!c.wants("ORU^R01", "other"));
        assert!(!c.wants("SIU^S12", "lab"));
        let all = Channel {
            message_types: vec![],
            senders: vec![],
            ..c
        };
        assert!(all.wants("SIU^S12", "x"));
        let events_only = Channel {
            inbound: false,
            ..all
        };
        assert!(!events_only.wants("SIU^S12", "x"));
    }

    #[test]
    fn backoff_doubles_to_five_minutes() {
        assert_eq!(backoff_micros(0), 1_000_000);
        assert_eq!(backoff_micros(3), 8_000_000);
        assert_eq!(backoff_micros(20), 300_000_000);
    }
}
