//! The HL7 v2 interface engine: what a hospital's systems send, from the bytes of one
//! message to the resources it becomes and the acknowledgement that goes back.
//!
//! For each message, in this order:
//! 1. it is parsed (an unparseable one gets an AR naming the segment and field, and is kept
//!    as `rejected`);
//! 2. its sender is recognised by MSH-3/MSH-4 and its source address or credentials (an
//!    unknown sender gets an AR, the refusal is audited, the message kept as `rejected`);
//! 3. a message the sender sent before (same MSH-10) gets the acknowledgement it got then,
//!    and is not applied again;
//! 4. it is mapped to a FHIR transaction (a message that cannot be mapped is kept as a
//!    `dead` letter with its reason, and gets an AE saying what was wrong);
//! 5. under its patient's lock, so one patient's messages apply in the order they came, it
//!    is stored durably (sealed) *before* it is applied, then applied through the record
//!    service as the sender's actor (the PDP, consent labels, encryption and the audit log
//!    apply as to any write); a failure on this side leaves it `received`, for
//!    [`InterfaceEngine::recover`] at the next start, and gets an AR;
//! 6. the acknowledgement (AA, AE or AR, with MSA and ERR) goes back.
//!
//! From a sender set to enhanced mode (see [`Sender::enhanced`]), a message that asks for
//! enhanced acknowledgement mode (MSH-15 or MSH-16 valued) gets a commit acknowledgement on
//! the connection instead (CA once stored, CR when refused, CE
//! when the node failed), as MSH-15 asks; its application acknowledgement (AA, AE or AR)
//! is queued, as MSH-16 asks, for the sender's `ack_destination` and delivered like any
//! outbound message.
//!
//! A connection is served one message at a time, so an engine that falls behind stops
//! reading (back-pressure); nothing waits in a queue that could overflow.

mod events;
mod outbound;
mod senders;

pub use events::{EventPoll, NodeEvent, SETTLE_MICROS, run_events};
pub use outbound::{Channel, Delivery};

pub use senders::{Sender, SenderError, Via, hash_secret};

use std::collections::HashMap;
use std::sync::Arc;

use medmesh_at_rest::AtRest;
use medmesh_audit::Outcome;
use medmesh_hl7v2::{
    AckCode, AckCondition, AckError, AckMode, Message, acknowledge, application_acknowledge,
    charset,
};
use medmesh_hl7v2_fhir::{MappingError, map};
use medmesh_kernel::{OperationId, RequestContext};
use medmesh_policy::InterfaceMessages;
use medmesh_records::{BeforeCommit, RecordError, RecordService, ReturnPreference};
use medmesh_store::{Hl7MessageRow, Hl7Store, StoreError};
use serde_json::{Value, json};
use tokio::sync::{Mutex, RwLock};

/// Owner of the key that seals stored messages.
pub const HL7_KEY_OWNER: &str = "node:hl7v2";

/// Why the engine could not do what was asked (operations, not message outcomes: those
/// are acknowledgements).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Sealing or opening failed, or the record service refused.
    #[error(transparent)]
    Records(#[from] RecordError),
    /// No such message.
    #[error("no such message")]
    NotFound,
}

/// What became of a message, as stored (sealed) beside it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct MessageOutcome {
    /// The acknowledgement's error, when there was one.
    pub error: Option<String>,
    /// Its HL7 table 0357 code, so a resend is answered with the same ERR.
    #[serde(default)]
    pub error_code: Option<u16>,
    /// The resources written (`Type/id`).
    pub resources: Vec<String>,
    /// What the parser tolerated.
    pub warnings: Vec<String>,
}

/// What a stored message's sealed text is bound to.
fn raw_context(id: &str) -> String {
    format!("hl7v2/{id}")
}

/// What a stored message's sealed outcome is bound to.
fn detail_context(id: &str) -> String {
    format!("hl7v2/{id}/detail")
}

/// The engine.
pub struct InterfaceEngine {
    records: Arc<RecordService>,
    store: Arc<dyn Hl7Store>,
    outbox: Option<Arc<dyn medmesh_store::Hl7OutboxStore>>,
    vault: Option<Arc<medmesh_vault::DocumentVault>>,
    hub: Arc<medmesh_notifications::NotificationHub>,
    channels: Vec<Channel>,
    senders: RwLock<Vec<Sender>>,
    /// One lock per patient key: one patient's messages apply one at a time, in order.
    patient_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Per channel, the change-feed rows after its cursor that were already turned into
    /// events (see [`events`]).
    events_seen: Mutex<HashMap<String, medmesh_records::FeedSeen>>,
    base_url: String,
    follow_up: Option<Arc<dyn FollowUp>>,
}

/// Another capability's follow-up of what an applied message wrote: the medication loop's,
/// for pharmacy orders and dispenses (the binary wires `medmesh-medications` here). It runs
/// after the message's transaction; a failure is logged with the message's id and the
/// message stays applied (its resources are written), and a replay runs it again.
#[async_trait::async_trait]
pub trait FollowUp: Send + Sync + 'static {
    /// Follows up the resources (`Type/id`) a message wrote.
    async fn applied(&self, resources: &[String]) -> Result<(), String>;
}

impl std::fmt::Debug for InterfaceEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterfaceEngine").finish_non_exhaustive()
    }
}

/// An acknowledgement to send, and what the engine did.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The acknowledgement's bytes, in the message's character set; empty when the sender
    /// asked for none (enhanced mode, MSH-15 `NE`, `ER` or `SU`).
    pub ack: Vec<u8>,
    /// Its code.
    pub code: AckCode,
}

impl Reply {
    /// Whether there is an acknowledgement to send.
    pub fn is_empty(&self) -> bool {
        self.ack.is_empty()
    }
}

impl InterfaceEngine {
    /// An engine writing through `records`, keeping messages in `store`, telling patients
    /// of their results through `hub` (their inbox, and the other channels they chose),
    /// answering with `base_url` as the FHIR base in its audit entries.
    pub fn new(
        records: Arc<RecordService>,
        store: Arc<dyn Hl7Store>,
        hub: Arc<medmesh_notifications::NotificationHub>,
        base_url: impl Into<String>,
    ) -> Self {
        Self {
            records,
            store,
            outbox: None,
            vault: None,
            hub,
            channels: Vec::new(),
            senders: RwLock::new(Vec::new()),
            patient_locks: Mutex::new(HashMap::new()),
            events_seen: Mutex::new(HashMap::new()),
            base_url: base_url.into(),
            follow_up: None,
        }
    }

    /// Hands what each applied message wrote to `follow_up`.
    pub fn with_follow_up(mut self, follow_up: Arc<dyn FollowUp>) -> Self {
        self.follow_up = Some(follow_up);
        self
    }

    /// Keeps the documents messages carry (an encapsulated PDF report) in `vault`: sealed
    /// under the patient's key in the blob store, as the content of the DocumentReference
    /// the message wrote.
    pub fn with_vault(mut self, vault: Arc<medmesh_vault::DocumentVault>) -> Self {
        self.vault = Some(vault);
        self
    }

    /// Replaces the senders the engine recognises: those of the configuration file, then
    /// those added with the CLI (stored); a stored one with a configured one's name is
    /// ignored.
    ///
    /// # Errors
    /// When the store cannot be read, or a stored sender is malformed.
    pub async fn load_senders(&self, configured: Vec<Sender>) -> Result<(), SenderError> {
        let mut all = configured;
        for row in self.store.hl7_senders().await.map_err(SenderError::Store)? {
            if all.iter().any(|s| s.name == row.name) {
                continue;
            }
            all.push(Sender::from_row(&row)?);
        }
        *self.senders.write().await = all;
        Ok(())
    }

    /// How many senders are recognised.
    pub async fn sender_count(&self) -> usize {
        self.senders.read().await.len()
    }

    fn now(&self) -> i64 {
        self.records.core().now()
    }

    fn new_id(&self) -> String {
        self.records.core().ids().new_id()
    }

    fn at_rest(&self) -> Option<Arc<AtRest>> {
        self.records.core().at_rest().cloned()
    }

    async fn seal(&self, context: &str, plain: &[u8]) -> Result<Vec<u8>, EngineError> {
        Ok(self
            .records
            .core()
            .seal_detached(HL7_KEY_OWNER, context, plain)
            .await?)
    }

    async fn open(&self, context: &str, stored: &[u8]) -> Result<Vec<u8>, EngineError> {
        Ok(self.records.core().open_detached(context, stored).await?)
    }

    fn patient_token(&self, key: &str) -> String {
        match self.at_rest() {
            Some(a) => a.blind_index().tag("hl7v2-patient", key),
            // Without encryption at rest no column is sealed; the key is still not written
            // in clear.
            None => hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes())),
        }
    }

    /// A short control id for an acknowledgement (MSH-10 was 20 characters long before 2.5).
    fn ack_control_id(&self) -> String {
        self.new_id()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(20)
            .collect()
    }

    fn timestamp(&self) -> String {
        let micros = self.now();
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
            .ok()
            .and_then(|t| {
                t.format(time::macros::format_description!(
                    "[year][month][day][hour][minute][second]+0000"
                ))
                .ok()
            })
            .unwrap_or_default()
    }

    fn reply(&self, original: Option<&Message>, code: AckCode, errors: &[AckError]) -> Reply {
        let ack = acknowledge(
            original,
            code,
            errors,
            &self.ack_control_id(),
            &self.timestamp(),
        );
        let charset_name = original
            .map(|m| m.msh().field(18).value().into_owned())
            .unwrap_or_default();
        Reply {
            ack: charset::encode_message(&ack.encode(), &charset_name),
            code,
        }
    }

    fn context(&self, sender: &Sender, via: &Via, operation: &str) -> RequestContext {
        RequestContext::new(
            sender.actor(),
            OperationId::new(operation),
            via.peer().map(|p| p.to_string()),
            self.base_url.clone(),
        )
    }

    /// The answer to a frame larger than the listener accepts: an AR, sent once the frame
    /// has ended, since its header was not kept.
    pub async fn refuse_too_large(&self) -> Vec<u8> {
        self.reply(
            None,
            AckCode::AR,
            &[AckError::new(
                100,
                "the message is larger than this node accepts",
            )],
        )
        .ack
    }

    /// Receives one message (the bytes of one frame or one HTTP body) and answers it.
    /// Never fails: every outcome is an acknowledgement.
    pub async fn receive(&self, bytes: &[u8], via: &Via) -> Reply {
        let operation = self.new_id();
        let message = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                let err = AckError {
                    location: e.segment.as_ref().map(|s| medmesh_hl7v2::ErrorLocation {
                        segment: s.clone(),
                        sequence: e.segment_index.unwrap_or(1),
                        field: e.field,
                        component: None,
                    }),
                    ..AckError::new(if e.segment.is_some() { 102 } else { 100 }, e.to_string())
                };
                self.keep_rejected(bytes, "unknown", None, "", &err.message)
                    .await;
                return self.reply(None, AckCode::AR, &[err]);
            }
        };
        let (code, trigger, _) = message.message_type();
        let kind = format!("{code}^{trigger}");
        let control_id = message.control_id().trim().to_string();
        let sender = {
            let senders = self.senders.read().await;
            senders::recognise(&senders, &message, via).cloned()
        };
        let Some(sender) = sender else {
            self.audit_refusal(via, &operation).await;
            let err = AckError::new(
                207,
                "unknown sender: not configured on this node for this address or these credentials",
            )
            .at("MSH", 1, Some(3));
            self.keep_rejected(bytes, "unknown", Some(&control_id), &kind, &err.message)
                .await;
            // Whether an unknown sender asked for enhanced mode is not known to the node.
            return self.reply(Some(&message), AckCode::AR, &[err]);
        };
        let mode = sender.ack_mode(&message);
        if control_id.is_empty() {
            let err =
                AckError::new(101, "MSH-10 (message control id) is empty").at("MSH", 1, Some(10));
            self.keep_rejected(bytes, &sender.name, None, &kind, &err.message)
                .await;
            return self.refuse(&message, mode, AckCode::AE, AckCode::CR, &[err]);
        }
        // A resend: the same answer as the first time, and nothing applied twice.
        match self
            .store
            .hl7_message_by_control(&sender.name, &control_id)
            .await
        {
            // The same control id on a different kind of message is not a resend.
            Ok(Some(row)) if row.message_type != kind => {
                let err = AckError::new(
                    205,
                    "MSH-10 was already used by another kind of message from this sender",
                )
                .at("MSH", 1, Some(10));
                return self.refuse(&message, mode, AckCode::AE, AckCode::CR, &[err]);
            }
            Ok(Some(row)) if row.status != "received" => {
                return self.replay_ack(&message, mode, &row).await;
            }
            Ok(_) => {}
            Err(e) => return self.internal_failure(&message, mode, &e.to_string()),
        }
        let mapped = map(&message, &sender.profile);
        let key = mapped.as_ref().ok().and_then(|m| m.patient_key.clone());
        let lock = match &key {
            Some(k) => Some(self.patient_lock(k).await),
            None => None,
        };
        let _guard = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let now = self.now();
        let id = self.new_id();
        let sealed = match self.seal(&raw_context(&id), bytes).await {
            Ok(s) => s,
            Err(e) => return self.internal_failure(&message, mode, &e.to_string()),
        };
        let mut row = Hl7MessageRow {
            id: id.clone(),
            sender: sender.name.clone(),
            control_id: control_id.clone(),
            message_type: kind,
            received_micros: now,
            status: "received".into(),
            ack_code: None,
            raw: sealed,
            detail: None,
            patient_token: key.as_deref().map(|k| self.patient_token(k)),
            attempts: 0,
            updated_micros: now,
        };
        let ctx = self.context(&sender, via, &operation);
        // A message that maps is stored in the record service's transaction that applies it:
        // one commit, after which it is durable and applied, instead of one to store it and
        // one to apply it. If that transaction fails, nothing of it was written, and the
        // message takes the path below: stored on its own first, so that what cannot be
        // applied is kept (a dead letter, or kept for retry).
        let mapped = match mapped {
            Ok(mut m) => {
                let store_it = StoreReceived { row: &row };
                match self
                    .run_mapped(&ctx, &mut m, &row.sender, Some(&store_it))
                    .await
                {
                    Ok(response) => {
                        let (code, errors) = self
                            .settle(&message, Ok((m, Ok(response))), &mut row, &ctx, &sender)
                            .await;
                        return self.answer(&message, mode, code, &errors);
                    }
                    Err(e) => {
                        tracing::debug!(message_id = %row.id, error = %e, "an HL7 v2 message was not applied with its storing; it is stored first and applied again");
                        Ok(m)
                    }
                }
            }
            Err(e) => Err(e),
        };
        match self.store.hl7_insert(&row).await {
            Ok(true) => {}
            // Another connection stored it a moment ago: answer as it was answered.
            Ok(false) => {
                return match self
                    .store
                    .hl7_message_by_control(&sender.name, &control_id)
                    .await
                {
                    Ok(Some(prev)) => self.replay_ack(&message, mode, &prev).await,
                    Ok(None) => self.internal_failure(&message, mode, "a duplicate vanished"),
                    Err(e) => self.internal_failure(&message, mode, &e.to_string()),
                };
            }
            Err(e) => return self.internal_failure(&message, mode, &e.to_string()),
        }
        let (code, errors) = self.apply(&message, mapped, &mut row, &ctx, &sender).await;
        self.answer(&message, mode, code, &errors)
    }

    /// The answer to a stored message: its application acknowledgement in original mode, a
    /// commit acknowledgement in enhanced mode.
    fn answer(
        &self,
        message: &Message,
        mode: AckMode,
        code: AckCode,
        errors: &[AckError],
    ) -> Reply {
        match mode {
            AckMode::Original => self.reply(Some(message), code, errors),
            // Stored: committed, whatever applying it did (its application acknowledgement
            // says that).
            AckMode::Enhanced { accept, .. } => self.commit(message, accept, AckCode::CA, &[]),
        }
    }

    /// A refusal before the message was stored: `original` (AR or AE) in original mode; in
    /// enhanced mode `commit` (CR, or CE when the node failed), if MSH-15 wants it.
    fn refuse(
        &self,
        message: &Message,
        mode: AckMode,
        original: AckCode,
        commit: AckCode,
        errors: &[AckError],
    ) -> Reply {
        match mode {
            AckMode::Original => self.reply(Some(message), original, errors),
            AckMode::Enhanced { accept, .. } => self.commit(message, accept, commit, errors),
        }
    }

    /// A commit acknowledgement, or nothing when MSH-15 does not want one for it.
    fn commit(
        &self,
        message: &Message,
        accept: AckCondition,
        code: AckCode,
        errors: &[AckError],
    ) -> Reply {
        if accept.wants(code == AckCode::CA) {
            self.reply(Some(message), code, errors)
        } else {
            Reply {
                ack: Vec::new(),
                code,
            }
        }
    }

    /// Queues the application acknowledgement of an enhanced-mode message that was
    /// processed, when MSH-16 wants one, for the sender's acknowledgement destination.
    async fn application_ack(
        &self,
        message: &Message,
        sender: &senders::Sender,
        row: &Hl7MessageRow,
        code: AckCode,
        errors: &[AckError],
    ) {
        let AckMode::Enhanced { application, .. } = sender.ack_mode(message) else {
            return;
        };
        if !application.wants(code == AckCode::AA) {
            return;
        }
        if sender.ack_destination.is_none() {
            tracing::warn!(sender = %sender.name, "an application acknowledgement was asked for, but the sender has no ack_destination; the outcome is kept with the message");
            return;
        }
        let ack = application_acknowledge(
            message,
            code,
            errors,
            &self.ack_control_id(),
            &self.timestamp(),
        );
        let charset_name = message.msh().field(18).value().into_owned();
        let bytes = charset::encode_message(&ack.encode(), &charset_name);
        // One per processing of the message: a replay's outcome is acknowledged too.
        let source = format!("{}#{}", row.id, row.attempts);
        if let Err(e) = self
            .enqueue(&sender.ack_channel(), source, &bytes, self.now())
            .await
        {
            tracing::error!(sender = %sender.name, error = %e, "an application acknowledgement could not be queued");
        }
    }

    /// Applies a stored message's mapping and records the outcome ([`Self::settle`]).
    async fn apply(
        &self,
        message: &Message,
        mapped: Result<medmesh_hl7v2_fhir::Mapped, MappingError>,
        row: &mut Hl7MessageRow,
        ctx: &RequestContext,
        sender: &senders::Sender,
    ) -> (AckCode, Vec<AckError>) {
        let applied = match mapped {
            Err(e) => Err(e),
            Ok(mut m) => {
                let result = self.run_mapped(ctx, &mut m, &row.sender, None).await;
                Ok((m, result))
            }
        };
        self.settle(message, applied, row, ctx, sender).await
    }

    /// Runs a mapped message's transaction through the record service as written by
    /// `sender`, with `then` inside it before the commit.
    async fn run_mapped(
        &self,
        ctx: &RequestContext,
        mapped: &mut medmesh_hl7v2_fhir::Mapped,
        sender: &str,
        then: Option<&(dyn BeforeCommit + '_)>,
    ) -> Result<Value, RecordError> {
        self.records
            .transaction_then(
                ctx,
                stamp_source(&mut mapped.bundle, sender),
                ReturnPreference::Minimal,
                then,
            )
            .await
    }

    /// Records what became of a stored message given its mapping and the record service's
    /// transaction (or why it did not map), and does what follows an applied one; the
    /// application acknowledgement's code and errors (queued for the sender too, in enhanced
    /// mode).
    async fn settle(
        &self,
        message: &Message,
        applied: Result<(medmesh_hl7v2_fhir::Mapped, Result<Value, RecordError>), MappingError>,
        row: &mut Hl7MessageRow,
        ctx: &RequestContext,
        sender: &senders::Sender,
    ) -> (AckCode, Vec<AckError>) {
        row.attempts += 1;
        let mut outcome = MessageOutcome {
            warnings: message.warnings().to_vec(),
            ..MessageOutcome::default()
        };
        // The patient to tell of a final result.
        let mut tell = None;
        let (code, errors) = match applied {
            Err(e) => {
                outcome.error = Some(e.to_string());
                row.status = "dead".into();
                (AckCode::AE, vec![e.to_ack_error()])
            }
            Ok((m, result)) => match result {
                Ok(response) => {
                    outcome.resources = written(&response);
                    let moved = match m.merge {
                        Some((prior, survivor)) if sender.profile.merge_moves_references => {
                            self.move_merged(ctx, &response, prior, survivor, &mut outcome)
                                .await
                        }
                        _ => Ok(()),
                    };
                    match moved {
                        Ok(()) => {
                            self.file_documents(ctx, &response, &m.documents, &mut outcome)
                                .await;
                            row.status = "applied".into();
                            if let Some(f) = &self.follow_up
                                && let Err(why) = f.applied(&outcome.resources).await
                            {
                                tracing::error!(message = %row.id, error = %why, "the follow-up of an applied message failed; replay the message to run it again");
                            }
                            self.forward(message, row).await;
                            // Told in the commit that records the outcome (below).
                            if m.final_result {
                                tell = patient_of(&outcome.resources);
                            }
                            (AckCode::AA, Vec::new())
                        }
                        // Kept as a dead letter: replayed, it moves what is left.
                        Err(why) => {
                            outcome.error = Some(why.clone());
                            row.status = "dead".into();
                            (AckCode::AE, vec![AckError::new(207, why)])
                        }
                    }
                }
                Err(
                    e @ (RecordError::Invalid(_)
                    | RecordError::BadRequest(_)
                    | RecordError::MultipleMatches
                    | RecordError::Forbidden
                    | RecordError::UnknownType
                    | RecordError::PreconditionFailed(_)
                    | RecordError::Conflict(_)
                    | RecordError::NotSupported(_)),
                ) => {
                    let why = refusal_text(&e);
                    outcome.error = Some(why.clone());
                    row.status = "dead".into();
                    (AckCode::AE, vec![AckError::new(207, why)])
                }
                Err(e) => {
                    // A failure on this side (the database, the keys): kept as received,
                    // applied again at the next start or when the sender resends.
                    tracing::error!(message_id = %row.id, error = %e, "an HL7 v2 message could not be applied; it is kept for retry");
                    outcome.error = Some("not applied: the node failed; kept for retry".into());
                    (
                        AckCode::AR,
                        vec![AckError::new(
                            207,
                            "the node could not apply the message now; send it again later",
                        )],
                    )
                }
            },
        };
        outcome.error_code = errors.first().map(|e| e.code);
        row.ack_code = Some(code.as_str().to_string());
        row.updated_micros = self.now();
        match self.seal_outcome(&row.id, &outcome).await {
            Ok(d) => row.detail = Some(d),
            Err(e) => {
                tracing::error!(message_id = %row.id, error = %e, "the outcome of an HL7 v2 message could not be sealed")
            }
        }
        if let Err(e) = self.record_outcome(row, tell).await {
            tracing::error!(message_id = %row.id, error = %e, "the outcome of an HL7 v2 message could not be recorded");
            return (
                AckCode::AR,
                vec![AckError::new(
                    207,
                    "the node could not store the message now; send it again later",
                )],
            );
        }
        if row.status != "received" {
            self.application_ack(message, sender, row, code, &errors)
                .await;
        }
        (code, errors)
    }

    /// Keeps the documents a message carried: each one's bytes in the document vault, as
    /// the attachment of the DocumentReference the message wrote (which holds no bytes of
    /// its own). What the vault refuses (a type it does not keep) or fails to store is
    /// written inline instead, and the outcome's warnings say so: nothing is lost either
    /// way.
    async fn file_documents(
        &self,
        ctx: &RequestContext,
        response: &Value,
        documents: &[(usize, Value)],
        outcome: &mut MessageOutcome,
    ) {
        for (i, content) in documents {
            let i = *i;
            let Some(id) = written_id(response, i, "DocumentReference") else {
                continue;
            };
            let filed = match &self.vault {
                Some(vault) => self.file_document(ctx, vault, &id, content).await,
                None => Err("this engine keeps no vault".into()),
            };
            if let Err(why) = filed {
                tracing::warn!(error = %why, "a document a message carried was kept inline");
                outcome.warnings.push(format!(
                    "DocumentReference/{id} keeps its content inline: {why}"
                ));
                if let Err(e) = self.keep_inline(ctx, &id, content).await {
                    tracing::error!(error = %e, "a document a message carried could not be kept");
                    outcome.warnings.push(format!(
                        "DocumentReference/{id} has no content: {}",
                        refusal_text(&e)
                    ));
                }
            }
        }
    }

    /// Writes a document's bytes into its DocumentReference's attachment.
    async fn keep_inline(
        &self,
        ctx: &RequestContext,
        id: &str,
        content: &Value,
    ) -> Result<(), RecordError> {
        let read = self.records.read(ctx, "DocumentReference", id).await?;
        let mut doc = read.resource;
        doc["content"] = serde_json::json!([{ "attachment": content }]);
        self.records
            .update(ctx, "DocumentReference", id, doc, Some(read.version))
            .await
            .map(|_| ())
    }

    async fn file_document(
        &self,
        ctx: &RequestContext,
        vault: &medmesh_vault::DocumentVault,
        id: &str,
        attachment: &Value,
    ) -> Result<(), String> {
        use base64::Engine as _;
        let read = self
            .records
            .read(ctx, "DocumentReference", id)
            .await
            .map_err(|e| refusal_text(&e))?;
        let doc = read.resource;
        let Some(data) = attachment["data"].as_str() else {
            return Err("it holds no bytes".into());
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|_| "its content is not valid Base64".to_string())?;
        let patient = doc["subject"]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("Patient/"))
            .ok_or("it names no patient")?
            .to_string();
        let title = attachment["title"]
            .as_str()
            .or_else(|| doc["type"]["text"].as_str())
            .or_else(|| doc["type"]["coding"][0]["display"].as_str())
            .map(str::to_string);
        let new = medmesh_vault::NewDocument {
            patient,
            content_type: attachment["contentType"].as_str().map(str::to_string),
            title,
            attach_to: Some(id.to_string()),
            ..medmesh_vault::NewDocument::default()
        };
        let body = futures::stream::once(async move {
            Ok::<_, std::convert::Infallible>(bytes::Bytes::from(bytes))
        });
        vault
            .upload_document(ctx, new, Box::pin(body))
            .await
            .map(|_| ())
            .map_err(|e| match e {
                RecordError::UnsupportedMedia(why) => format!("the vault does not keep it ({why})"),
                other => refusal_text(&other),
            })
    }

    /// After a merge (A40) was written: moves the prior patient's record to the survivor.
    /// What failed is said in words that name no value; replaying the message moves what
    /// is left.
    async fn move_merged(
        &self,
        ctx: &RequestContext,
        response: &Value,
        prior: usize,
        survivor: usize,
        outcome: &mut MessageOutcome,
    ) -> Result<(), String> {
        let (Some(prior), Some(survivor)) = (
            written_id(response, prior, "Patient"),
            written_id(response, survivor, "Patient"),
        ) else {
            return Err("the merged patients were written, but their ids were not returned".into());
        };
        match self
            .records
            .move_patient_references(ctx, &prior, &survivor)
            .await
        {
            Ok(moved) => {
                outcome.resources.extend(moved);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "a merged patient's record could not be moved");
                Err(format!(
                    "the patients were linked, but the prior patient's record could not be moved to the survivor: {}",
                    refusal_text(&e)
                ))
            }
        }
    }

    /// Records a message's outcome, and tells `patient` that results arrived in the same
    /// commit: their inbox row, and the other channels they chose queued. The words name no
    /// result (notifications carry no clinical content). Told or not, the outcome is
    /// recorded (a notice that cannot be made is logged, as it always was).
    async fn record_outcome(
        &self,
        row: &Hl7MessageRow,
        patient: Option<String>,
    ) -> Result<(), RecordError> {
        use medmesh_notifications::{Category, Recipient};
        if let Some(patient) = patient {
            let notice = self
                .hub
                .notice(Category::Results, format!("hl7v2/{}", row.id));
            let mut tx = self.records.core().begin_write().await?;
            match self
                .hub
                .notify_in(&mut tx, &Recipient::Patient(patient), &notice)
                .await
            {
                Ok(_) => {
                    tx.update_hl7_message(row).await?;
                    return Ok(tx.commit().await?);
                }
                // Rolled back when dropped; the outcome is recorded on its own below.
                Err(e) => {
                    tracing::error!(error = %e, "the patient could not be told of new results");
                }
            }
        }
        Ok(self.store.hl7_update(row).await?)
    }

    async fn patient_lock(&self, key: &str) -> Arc<Mutex<()>> {
        let mut locks = self.patient_locks.lock().await;
        // Forget locks nobody holds, so the map stays as large as the patients in flight.
        if locks.len() > 10_000 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(key.to_string()).or_default().clone()
    }

    async fn replay_ack(&self, message: &Message, mode: AckMode, row: &Hl7MessageRow) -> Reply {
        if let AckMode::Enhanced { accept, .. } = mode {
            // Stored before: committed. Its application acknowledgement was queued then.
            return self.commit(message, accept, AckCode::CA, &[]);
        }
        let code = row
            .ack_code
            .as_deref()
            .and_then(AckCode::parse)
            .unwrap_or(AckCode::AA);
        // An outcome that cannot be opened any more is answered with the code alone.
        let outcome = self.outcome_of(row).await.unwrap_or_default();
        let errors: Vec<AckError> = outcome
            .error
            .into_iter()
            .map(|e| AckError::new(outcome.error_code.unwrap_or(207), e))
            .collect();
        self.reply(Some(message), code, &errors)
    }

    fn internal_failure(&self, message: &Message, mode: AckMode, why: &str) -> Reply {
        tracing::error!(error = %why, "the interface engine failed on a message");
        self.refuse(
            message,
            mode,
            AckCode::AR,
            AckCode::CE,
            &[AckError::new(
                207,
                "the node could not store the message now; send it again later",
            )],
        )
    }

    /// Keeps what was refused before processing, for the message browser.
    async fn keep_rejected(
        &self,
        bytes: &[u8],
        sender: &str,
        control_id: Option<&str>,
        kind: &str,
        why: &str,
    ) {
        let now = self.now();
        let id = self.new_id();
        let Ok(raw) = self.seal(&raw_context(&id), bytes).await else {
            return;
        };
        let outcome = MessageOutcome {
            error: Some(why.to_string()),
            ..MessageOutcome::default()
        };
        let Ok(detail) = self.seal_outcome(&id, &outcome).await else {
            return;
        };
        let row = Hl7MessageRow {
            // A refused message's control id is the sender's to reuse: it is kept under the
            // engine's id.
            control_id: format!("{}#{id}", control_id.unwrap_or("")),
            id,
            sender: sender.to_string(),
            message_type: if kind.is_empty() {
                "unparsed".into()
            } else {
                kind.to_string()
            },
            received_micros: now,
            status: "rejected".into(),
            ack_code: Some("AR".into()),
            raw,
            detail: Some(detail),
            patient_token: None,
            attempts: 0,
            updated_micros: now,
        };
        if let Err(e) = self.store.hl7_insert(&row).await {
            tracing::error!(error = %e, "a refused HL7 v2 message could not be kept");
        }
    }

    async fn audit_refusal(&self, via: &Via, operation: &str) {
        let core = self.records.core();
        let ctx = RequestContext::new(
            medmesh_kernel::Actor::unrecognised_sender(),
            OperationId::new(operation),
            via.peer().map(|p| p.to_string()),
            self.base_url.clone(),
        );
        let entry = core
            .entry(&ctx, "hl7v2-receive", None, Vec::new(), Outcome::Denied)
            .with_reason("unknown HL7 v2 sender");
        if let Err(e) = core.append_audit(vec![entry]).await {
            tracing::error!(error = %e, "the refusal of an unknown HL7 v2 sender could not be audited");
        }
    }

    /// Applies every message stored but not applied (after a crash), oldest first; returns
    /// how many were applied or dead-lettered.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn recover(&self) -> Result<usize, EngineError> {
        let mut done = 0;
        loop {
            let pending = self.store.hl7_pending(100).await?;
            if pending.is_empty() {
                return Ok(done);
            }
            let mut progressed = false;
            for mut row in pending {
                let reply = self.reprocess(&mut row).await?;
                if reply.code != AckCode::AR {
                    progressed = true;
                    done += 1;
                }
            }
            if !progressed {
                return Ok(done);
            }
        }
    }

    /// Processes a stored message again (recovery, or an operator's replay of a dead
    /// letter).
    ///
    /// # Errors
    /// When the message cannot be read or opened.
    pub async fn reprocess(&self, row: &mut Hl7MessageRow) -> Result<Reply, EngineError> {
        let bytes = self.open(&raw_context(&row.id), &row.raw).await?;
        let message = match Message::parse(&bytes) {
            Ok(m) => m,
            Err(_) => return Ok(self.reply(None, AckCode::AR, &[])),
        };
        let sender = self
            .senders
            .read()
            .await
            .iter()
            .find(|s| s.name == row.sender)
            .cloned();
        let Some(sender) = sender else {
            return Ok(self.reply(Some(&message), AckCode::AR, &[]));
        };
        let mapped = map(&message, &sender.profile);
        let operation = self.new_id();
        let ctx = self.context(&sender, &Via::Replay, &operation);
        let (code, errors) = self.apply(&message, mapped, row, &ctx, &sender).await;
        Ok(self.reply(Some(&message), code, &errors))
    }

    /// Every channel a delivery worker serves: the configured ones, and one per sender
    /// with an acknowledgement destination (its application acknowledgements).
    pub async fn delivery_channels(&self) -> Vec<Channel> {
        let mut out = self.channels.clone();
        for sender in self.senders.read().await.iter() {
            if let Some(destination) = &sender.ack_destination {
                let mut c =
                    Channel::forwarding(&sender.ack_channel(), destination, Vec::new(), Vec::new());
                c.inbound = false;
                out.push(c);
            }
        }
        out
    }

    /// Replays one stored message by id: the caller holds the PDP's permit; the replay is
    /// audited.
    ///
    /// # Errors
    /// [`EngineError::NotFound`], or as [`Self::reprocess`].
    pub async fn replay(
        &self,
        ctx: &RequestContext,
        _permit: &InterfaceMessages,
        id: &str,
    ) -> Result<Reply, EngineError> {
        let mut row = self
            .store
            .hl7_message(id)
            .await?
            .ok_or(EngineError::NotFound)?;
        self.audit_operation(ctx, "hl7v2-replay", &row.id).await?;
        self.reprocess(&mut row).await
    }

    /// A stored message opened: its text and what became of it. The text names patients:
    /// only with the PDP's permit, and every view is audited.
    ///
    /// # Errors
    /// [`EngineError::NotFound`], or when it cannot be opened.
    pub async fn open_message(
        &self,
        ctx: &RequestContext,
        _permit: &InterfaceMessages,
        id: &str,
    ) -> Result<(Hl7MessageRow, String, MessageOutcome), EngineError> {
        let row = self
            .store
            .hl7_message(id)
            .await?
            .ok_or(EngineError::NotFound)?;
        self.audit_operation(ctx, "hl7v2-view", &row.id).await?;
        let raw = self.open(&raw_context(&row.id), &row.raw).await?;
        let outcome = self.outcome_of(&row).await?;
        Ok((row, String::from_utf8_lossy(&raw).into_owned(), outcome))
    }

    /// Stored messages matching `filter`, newest first (no message text).
    ///
    /// # Errors
    /// When the store fails.
    pub async fn list_messages(
        &self,
        _permit: &InterfaceMessages,
        filter: &medmesh_store::Hl7Filter,
        limit: u32,
    ) -> Result<Vec<Hl7MessageRow>, EngineError> {
        Ok(self
            .store
            .hl7_messages(filter, limit.clamp(1, 1000))
            .await?)
    }

    /// Counters: messages per sender and status, outbound per channel and status, and
    /// what arrived in the last minute and hour.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn stats(
        &self,
        _permit: &InterfaceMessages,
    ) -> Result<serde_json::Value, EngineError> {
        let now = self.now();
        let since = |micros: i64| medmesh_store::Hl7Filter {
            since: Some(now - micros),
            ..Default::default()
        };
        let last_minute = self.store.hl7_count(&since(60_000_000)).await?;
        let last_hour = self.store.hl7_count(&since(3_600_000_000)).await?;
        let senders: Vec<serde_json::Value> = self
            .store
            .hl7_counts()
            .await?
            .into_iter()
            .map(|(sender, status, n)| json!({"sender": sender, "status": status, "messages": n}))
            .collect();
        let channels: Vec<serde_json::Value> = match &self.outbox {
            Some(o) => o
                .hl7_outbound_counts()
                .await?
                .into_iter()
                .map(|(channel, status, n)| json!({"channel": channel, "status": status, "messages": n}))
                .collect(),
            None => Vec::new(),
        };
        Ok(json!({
            "received_last_minute": last_minute,
            "received_last_hour": last_hour,
            "senders": senders,
            "channels": channels,
        }))
    }

    /// Deletes processed messages received more than `days` days ago (never one not yet
    /// applied); returns how many.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn prune(&self, days: u32) -> Result<u64, EngineError> {
        let before = self.now() - i64::from(days) * 86_400 * 1_000_000;
        Ok(self.store.hl7_prune(before).await?)
    }

    /// What needs an operator's eye now, in words that name no patient: dead letters in the
    /// last `window_micros`, senders silent for longer than `silence_micros` (among those
    /// that sent anything), and outbound queues deeper than `max_queue`.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn alerts(
        &self,
        window_micros: i64,
        silence_micros: i64,
        max_queue: i64,
    ) -> Result<Vec<String>, EngineError> {
        let now = self.now();
        let mut out = Vec::new();
        let dead = self
            .store
            .hl7_count(&medmesh_store::Hl7Filter {
                status: Some("dead".into()),
                since: Some(now - window_micros),
                ..Default::default()
            })
            .await?;
        if dead > 0 {
            out.push(format!("{dead} HL7 v2 messages could not be applied in the last check (see medmesh hl7 dead-letters list)"));
        }
        for sender in self.senders.read().await.iter() {
            let last = self
                .store
                .hl7_messages(
                    &medmesh_store::Hl7Filter {
                        sender: Some(sender.name.clone()),
                        ..Default::default()
                    },
                    1,
                )
                .await?;
            if let Some(last) = last.first()
                && now - last.received_micros > silence_micros
            {
                out.push(format!(
                    "sender {} has sent nothing for {} minutes",
                    sender.name,
                    (now - last.received_micros) / 60_000_000
                ));
            }
        }
        if let Some(outbox) = &self.outbox {
            for (channel, status, n) in outbox.hl7_outbound_counts().await? {
                if status == "pending" && n > max_queue {
                    out.push(format!("channel {channel} has {n} messages waiting"));
                }
            }
        }
        Ok(out)
    }

    /// What became of a message, opened (no message text): for lists of dead letters.
    ///
    /// # Errors
    /// When it cannot be opened.
    pub async fn outcome_of(&self, row: &Hl7MessageRow) -> Result<MessageOutcome, EngineError> {
        Ok(match &row.detail {
            Some(d) => serde_json::from_slice(&self.open(&detail_context(&row.id), d).await?)
                .unwrap_or_default(),
            None => MessageOutcome::default(),
        })
    }

    /// Seals a message's outcome for its row.
    async fn seal_outcome(
        &self,
        id: &str,
        outcome: &MessageOutcome,
    ) -> Result<Vec<u8>, EngineError> {
        let detail = serde_json::to_vec(outcome).unwrap_or_default();
        self.seal(&detail_context(id), &detail).await
    }

    async fn audit_operation(
        &self,
        ctx: &RequestContext,
        action: &str,
        id: &str,
    ) -> Result<(), EngineError> {
        let core = self.records.core();
        let entry = core
            .entry(ctx, action, None, Vec::new(), Outcome::Success)
            .with_reason(&format!("HL7 v2 message {id}"));
        core.append_audit(vec![entry]).await?;
        Ok(())
    }
}

/// Stores a message, as received, in the record service's transaction that applies it.
struct StoreReceived<'r> {
    row: &'r Hl7MessageRow,
}

#[async_trait::async_trait]
impl BeforeCommit for StoreReceived<'_> {
    async fn before_commit(&self, tx: &mut medmesh_at_rest::WriteTx) -> Result<(), RecordError> {
        if tx.insert_hl7_message(self.row).await? {
            Ok(())
        } else {
            // Another connection stored it a moment ago: the established path answers as
            // that one was answered.
            Err(RecordError::Conflict(
                "the sender already sent a message with this control id".into(),
            ))
        }
    }
}

/// Marks every resource of a mapped transaction as written by `sender` (`meta.source`), so
/// the node's events leave out what came in over HL7 v2.
fn stamp_source<'a>(bundle: &'a mut Value, sender: &str) -> &'a Value {
    if let Some(entries) = bundle["entry"].as_array_mut() {
        for e in entries {
            if e["resource"].is_object() {
                e["resource"]["meta"]["source"] =
                    Value::String(format!("{}{sender}", events::SOURCE_PREFIX));
            }
        }
    }
    bundle
}

/// The patient among the resources a message wrote.
fn patient_of(resources: &[String]) -> Option<String> {
    resources
        .iter()
        .find_map(|r| r.strip_prefix("Patient/"))
        .map(str::to_string)
}

/// `Type/id` of each entry a transaction wrote.
fn written(response: &Value) -> Vec<String> {
    response["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| {
                    let location = e["response"]["location"].as_str()?;
                    Some(match written_at(e) {
                        Some((rt, id)) => format!("{rt}/{id}"),
                        None => location.to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The type and id a transaction's response entry says were written (its location,
/// `[base/]Type/id/_history/version`).
fn written_at(entry: &Value) -> Option<(&str, &str)> {
    let location = entry["response"]["location"].as_str()?;
    let parts: Vec<&str> = location.split('/').collect();
    let h = parts
        .iter()
        .position(|p| *p == "_history")
        .filter(|h| *h >= 2)?;
    Some((parts[h - 2], parts[h - 1]))
}

/// The id entry `i` of a transaction's response wrote, when it wrote an `rt`.
fn written_id(response: &Value, i: usize, rt: &str) -> Option<String> {
    written_at(&response["entry"][i])
        .filter(|(t, _)| *t == rt)
        .map(|(_, id)| id.to_string())
}

/// A refusal's reason in words that name no value: the record service's issues are
/// written for clients, so they carry none.
fn refusal_text(e: &RecordError) -> String {
    match e {
        RecordError::Invalid(issues) | RecordError::BadRequest(issues) => {
            let first = issues.first().map(|i| i.diagnostics.clone()).unwrap_or_default();
            // A rule of the record (a prescription's lifecycle) is not a matter of form.
            if issues
                .first()
                .is_some_and(|i| i.code == medmesh_fhir::IssueType::BusinessRule)
            {
                format!("refused by the record's rules: {first}")
            } else {
                format!("the resources it maps to are not valid FHIR: {first}")
            }
        }
        RecordError::MultipleMatches => "more than one record matches an identifier the message is matched on (patient, order or result)".into(),
        RecordError::Forbidden => "the sender may not write these resources".into(),
        other => format!("refused: {other}"),
    }
}

/// Exposed for the admin API's JSON.
pub fn outcome_json(o: &MessageOutcome) -> Value {
    json!({"error": o.error, "resources": o.resources, "warnings": o.warnings})
}
