//! The node's own events on outbound channels: an Appointment booked, moved, changed or
//! cancelled becomes SIU^S12/S13/S14/S15 (S26 for a no-show), a final or corrected
//! DiagnosticReport becomes ORU^R01 with its Observations.
//!
//! A channel reads the record's change feed through the record service, as its own actor
//! with read scopes on the types it needs (so the PDP decides and every read is audited),
//! from a cursor kept in the store: an event written before a crash is sent after it, and
//! one already queued is not queued twice (the queue is unique per channel and version).
//! PostgreSQL can commit a row after a later-numbered one, so the cursor only passes rows
//! older than [`SETTLE_MICROS`], and the rows after it are read again until they are.
//!
//! What an HL7 v2 sender wrote (marked by its `meta.source`) is not an event: inbound
//! messages reach channels as they came, through the channel's inbound filter.

use std::sync::Arc;

use medmesh_hl7v2::charset;
use medmesh_hl7v2_fhir::outbound::{self, Header};
use medmesh_kernel::{Actor, OperationId, RequestContext};
use medmesh_records::{Change, RecordError};
use serde_json::Value;

use crate::{Channel, EngineError, InterfaceEngine};

/// How long after a version was written the change feed's cursor may pass it.
pub const SETTLE_MICROS: i64 = medmesh_records::FEED_SETTLE_MICROS;

/// How many feed rows one poll reads.
const BATCH: u32 = 200;

/// Where an HL7 v2 sender's writes say they came from (`meta.source`).
pub(crate) const SOURCE_PREFIX: &str = "urn:medmesh:hl7v2-sender:";

/// What one read of the change feed did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventPoll {
    /// Messages queued.
    pub queued: usize,
    /// Whether the feed has more settled rows to read now.
    pub more: bool,
}

/// A kind of node event a channel sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeEvent {
    /// Appointments booked, moved, changed, cancelled or missed (SIU).
    Appointments,
    /// Final and corrected results (ORU^R01).
    Results,
}

impl NodeEvent {
    /// Reads a configured event name: `appointments` or `results`.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "appointments" | "appointment" => Some(Self::Appointments),
            "results" | "result" => Some(Self::Results),
            _ => None,
        }
    }

    /// The resource type whose changes are this event.
    fn resource_type(self) -> &'static str {
        match self {
            Self::Appointments => "Appointment",
            Self::Results => "DiagnosticReport",
        }
    }
}

/// The scopes a channel's actor reads with: the event types and what their messages carry.
fn channel_scopes(events: &[NodeEvent]) -> Vec<medmesh_auth::Scope> {
    let mut types = vec!["Patient"];
    for e in events {
        types.push(e.resource_type());
        if *e == NodeEvent::Results {
            types.push("Observation");
        }
    }
    let text: Vec<String> = types.iter().map(|t| format!("system/{t}.rs")).collect();
    medmesh_auth::parse_scopes(&text.join(" "))
}

impl InterfaceEngine {
    fn channel_context(&self, channel: &Channel) -> RequestContext {
        #[allow(clippy::disallowed_methods)] // A configured channel, read from the node's settings.
        let actor = Actor::from_configured_channel(&channel.name, channel_scopes(&channel.events));
        RequestContext::new(
            actor,
            OperationId::new(self.new_id()),
            None,
            self.base_url.clone(),
        )
    }

    /// Reads the change feed once for `channel` and queues a message for each event in it.
    ///
    /// # Errors
    /// When the feed or the queue cannot be read or written; nothing is lost, the next poll
    /// reads the same rows again.
    pub async fn poll_events(&self, channel: &Channel) -> Result<EventPoll, EngineError> {
        let Some(outbox) = self.outbox.clone() else {
            return Ok(EventPoll::default());
        };
        if channel.events.is_empty() {
            return Ok(EventPoll::default());
        }
        let types: Vec<String> = channel
            .events
            .iter()
            .map(|e| e.resource_type().to_string())
            .collect();
        let ctx = self.channel_context(channel);
        let cursor = outbox.hl7_event_cursor(&channel.name).await?;
        // Rows after the cursor that were read already (they are younger than the settling
        // time): listed again to move past them, not read (nor audited) again.
        let already = self
            .events_seen
            .lock()
            .await
            .entry(channel.name.clone())
            .or_default()
            .after(cursor);
        let changes = self
            .records
            .changes(&ctx, &types, cursor, &already, BATCH)
            .await?;
        let settled_before = self.now() - SETTLE_MICROS;
        let mut queued = 0;
        let base = self.now();
        for (i, change) in changes.iter().enumerate() {
            if let Some(message) = self.event_message(&ctx, channel, change).await? {
                let source = format!(
                    "{}/{}/_history/{}",
                    change.resource_type, change.id, change.version
                );
                // Queued in feed order: the queue is delivered in this order.
                let at = base + i64::try_from(i).unwrap_or(0);
                if self.enqueue(&channel.name, source, &message, at).await? {
                    queued += 1;
                }
            }
        }
        let new_cursor = self
            .events_seen
            .lock()
            .await
            .entry(channel.name.clone())
            .or_default()
            .advance(&changes, cursor, settled_before);
        if new_cursor != cursor {
            outbox
                .hl7_set_event_cursor(&channel.name, new_cursor, self.now())
                .await?;
        }
        Ok(EventPoll {
            queued,
            more: changes.len() == BATCH as usize && new_cursor != cursor,
        })
    }

    /// The message a change becomes on `channel`, in its bytes; `None` when it is no event.
    async fn event_message(
        &self,
        ctx: &RequestContext,
        channel: &Channel,
        change: &Change,
    ) -> Result<Option<Vec<u8>>, EngineError> {
        let Some(resource) = &change.resource else {
            return Ok(None);
        };
        if resource["meta"]["source"]
            .as_str()
            .is_some_and(|s| s.starts_with(SOURCE_PREFIX))
        {
            return Ok(None);
        }
        let previous = if change.version > 1 {
            self.read_version(ctx, &change.resource_type, &change.id, change.version - 1)
                .await?
        } else {
            None
        };
        let header = Header {
            sending_application: "MEDMESH".into(),
            sending_facility: self.node_facility(),
            receiving_application: channel.receiving_application.clone(),
            receiving_facility: channel.receiving_facility.clone(),
            timestamp: self.timestamp(),
            control_id: self.ack_control_id(),
            authority_base: medmesh_hl7v2_fhir::Profile::default().authority_base,
        };
        let message = match change.resource_type.as_str() {
            "Appointment" => {
                let Some(trigger) = outbound::appointment_trigger(resource, previous.as_ref())
                else {
                    return Ok(None);
                };
                let patient = self.participant_patient(ctx, resource).await?;
                outbound::siu(&header, trigger, resource, patient.as_ref())
            }
            "DiagnosticReport" => {
                if !outbound::report_is_result(resource, previous.as_ref()) {
                    return Ok(None);
                }
                let patient = match resource["subject"]["reference"].as_str() {
                    Some(r) => self.read_reference(ctx, r, "Patient").await?,
                    None => None,
                };
                let mut observations = Vec::new();
                for r in resource["result"].as_array().into_iter().flatten() {
                    if let Some(reference) = r["reference"].as_str()
                        && let Some(o) = self.read_reference(ctx, reference, "Observation").await?
                    {
                        observations.push(o);
                    }
                }
                outbound::oru(&header, resource, &observations, patient.as_ref())
            }
            _ => return Ok(None),
        };
        Ok(Some(charset::encode_message(
            &message.encode(),
            "UNICODE UTF-8",
        )))
    }

    /// MSH-4 of the node's own messages: the host of its public address.
    fn node_facility(&self) -> String {
        self.base_url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', ':']).next())
            .unwrap_or_default()
            .to_string()
    }

    async fn participant_patient(
        &self,
        ctx: &RequestContext,
        appointment: &Value,
    ) -> Result<Option<Value>, EngineError> {
        for p in appointment["participant"].as_array().into_iter().flatten() {
            if let Some(r) = p["actor"]["reference"].as_str()
                && r.starts_with("Patient/")
            {
                return self.read_reference(ctx, r, "Patient").await;
            }
        }
        Ok(None)
    }

    /// A local reference of `rt` read through the record service (audited); `None` when it
    /// is not local, not of that type, or not there.
    async fn read_reference(
        &self,
        ctx: &RequestContext,
        reference: &str,
        rt: &str,
    ) -> Result<Option<Value>, EngineError> {
        let Some(id) = reference.strip_prefix(rt).and_then(|r| r.strip_prefix('/')) else {
            return Ok(None);
        };
        match self.records.read(ctx, rt, id).await {
            Ok(r) => Ok(Some(r.resource)),
            Err(RecordError::NotFound | RecordError::Gone { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read_version(
        &self,
        ctx: &RequestContext,
        rt: &str,
        id: &str,
        version: i64,
    ) -> Result<Option<Value>, EngineError> {
        match self.records.vread(ctx, rt, id, &version.to_string()).await {
            Ok(r) => Ok(Some(r.resource)),
            Err(RecordError::NotFound | RecordError::Gone { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Polls a channel's node events forever: every second, or at once while the feed has
/// more.
pub async fn run_events(engine: Arc<InterfaceEngine>, channel: Channel) {
    loop {
        let wait = match engine.poll_events(&channel).await {
            Ok(poll) if poll.more => std::time::Duration::ZERO,
            Ok(_) => std::time::Duration::from_secs(1),
            Err(e) => {
                tracing::error!(channel = %channel.name, error = %e, "node events could not be read");
                std::time::Duration::from_secs(5)
            }
        };
        tokio::time::sleep(wait).await;
    }
}
