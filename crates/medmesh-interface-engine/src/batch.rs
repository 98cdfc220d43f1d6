//! The applier: messages from every connection are applied in batches, so that concurrent
//! senders share commits instead of queueing one by one behind SQLite's single writer.
//!
//! A batch holds messages of one sender whose conditional writes touch disjoint identifiers
//! (so no two of them create the same patient, report or observation), taken in arrival
//! order: a message that conflicts with the batch, or with a message held back before it,
//! waits for the next batch, so messages about one patient are applied in the order they
//! came. Per batch: one commit stores every message (sealed) before anything is applied,
//! one record-service transaction applies them all, one commit records the outcomes. When
//! the transaction refuses (one message's resources are not valid, say), each message is
//! applied on its own so only the wrong one gets its AE.

use std::collections::{HashSet, VecDeque};

use medmesh_hl7v2::{AckCode, AckError, Message};
use medmesh_hl7v2_fhir::Mapped;
use medmesh_kernel::{OperationId, RequestContext};
use medmesh_records::{RecordError, ReturnPreference};
use medmesh_store::Hl7MessageRow;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::{InterfaceEngine, MessageOutcome, Reply, Sender, Via, written};

/// The most messages one batch applies.
const MAX_BATCH: usize = 64;
/// Messages waiting for the applier at most; a connection whose message finds it full waits
/// (back-pressure), it is never dropped.
pub(crate) const QUEUE: usize = 256;

/// One message for the applier.
pub(crate) struct Job {
    pub message: Message,
    pub bytes: Vec<u8>,
    pub sender: Sender,
    pub via: Via,
    pub kind: String,
    pub control_id: String,
    pub mapped: Mapped,
    pub reply: oneshot::Sender<Reply>,
}

impl Job {
    /// The conditions its writes are matched on (`Patient?identifier=...`): two messages
    /// sharing one must not be in one transaction.
    fn conditions(&self) -> Vec<String> {
        self.mapped.bundle["entry"]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|e| {
                        let r = &e["request"];
                        r["ifNoneExist"]
                            .as_str()
                            .map(|q| format!("{}?{q}", r["url"].as_str().unwrap_or_default()))
                            .or_else(|| {
                                r["url"]
                                    .as_str()
                                    .filter(|u| u.contains('?'))
                                    .map(str::to_string)
                            })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Takes from `pending`, in order, the next batch; the rest stay, in order.
fn next_batch(pending: &mut VecDeque<Job>) -> Vec<Job> {
    let Some(first) = pending.front() else {
        return Vec::new();
    };
    let sender = first.sender.name.clone();
    let mut batch = Vec::new();
    let mut used: HashSet<String> = HashSet::new();
    let mut held: HashSet<String> = HashSet::new();
    let mut rest = VecDeque::new();
    for job in pending.drain(..) {
        let conditions = job.conditions();
        let free = conditions
            .iter()
            .all(|c| !used.contains(c) && !held.contains(c));
        if batch.len() < MAX_BATCH && job.sender.name == sender && free {
            used.extend(conditions);
            batch.push(job);
        } else {
            held.extend(conditions);
            rest.push_back(job);
        }
    }
    *pending = rest;
    batch
}

/// The transaction's full URLs are per message (`urn:uuid:00000000-...`); in a batch each
/// message gets its own prefix.
fn renumbered(bundle: &Value, index: usize) -> Option<Vec<Value>> {
    let text = serde_json::to_string(bundle).ok()?;
    let text = text.replace("urn:uuid:00000000-", &format!("urn:uuid:{index:08x}-"));
    let v: Value = serde_json::from_str(&text).ok()?;
    v["entry"].as_array().cloned()
}

impl InterfaceEngine {
    /// Starts the applier; from then on messages are applied in batches.
    pub fn start_applier(self: &std::sync::Arc<Self>) {
        let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
        if self.applier.set(tx).is_err() {
            return;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            let mut pending: VecDeque<Job> = VecDeque::new();
            loop {
                if pending.is_empty() {
                    match rx.recv().await {
                        Some(job) => pending.push_back(job),
                        None => return,
                    }
                }
                while pending.len() < QUEUE {
                    match rx.try_recv() {
                        Ok(job) => pending.push_back(job),
                        Err(_) => break,
                    }
                }
                let batch = next_batch(&mut pending);
                engine.apply_batch(batch).await;
            }
        });
    }

    async fn apply_batch(&self, batch: Vec<Job>) {
        // 1. Store every message, sealed, in one commit, before anything is applied.
        let now = self.now();
        let mut rows = Vec::with_capacity(batch.len());
        let mut jobs = Vec::with_capacity(batch.len());
        for job in batch {
            let id = self.new_id();
            match self.seal(&format!("hl7v2/{id}"), &job.bytes).await {
                Ok(raw) => {
                    rows.push(Hl7MessageRow {
                        id,
                        sender: job.sender.name.clone(),
                        control_id: job.control_id.clone(),
                        message_type: job.kind.clone(),
                        received_micros: now,
                        status: "received".into(),
                        ack_code: None,
                        raw,
                        detail: None,
                        patient_token: job
                            .mapped
                            .patient_key
                            .as_deref()
                            .map(|k| self.patient_token(k)),
                        attempts: 0,
                        updated_micros: now,
                    });
                    jobs.push(job);
                }
                Err(e) => {
                    let reply = self.internal_failure(&job.message, &e.to_string());
                    let _ = job.reply.send(reply);
                }
            }
        }
        let inserted = match self.store.hl7_insert_many(&rows).await {
            Ok(i) => i,
            Err(e) => {
                for job in jobs {
                    let reply = self.internal_failure(&job.message, &e.to_string());
                    let _ = job.reply.send(reply);
                }
                return;
            }
        };
        let mut kept = Vec::new();
        for ((job, row), fresh) in jobs.into_iter().zip(rows).zip(inserted) {
            if fresh {
                kept.push((job, row));
                continue;
            }
            // The same message from another connection a moment ago: its answer, when it has
            // one; else the sender is asked to send again.
            let reply = match self
                .store
                .hl7_message_by_control(&job.sender.name, &job.control_id)
                .await
            {
                Ok(Some(prev)) if prev.status != "received" => {
                    self.replay_ack(&job.message, &prev).await
                }
                _ => self.reply(
                    Some(&job.message),
                    AckCode::AR,
                    &[AckError::new(
                        206,
                        "this message is being applied; send it again later",
                    )],
                ),
            };
            let _ = job.reply.send(reply);
        }
        if kept.is_empty() {
            return;
        }

        // 2. Apply them all in one transaction, as their sender.
        let mut entries = Vec::new();
        let mut counts = Vec::with_capacity(kept.len());
        for (i, (job, _)) in kept.iter().enumerate() {
            let e = renumbered(&job.mapped.bundle, i).unwrap_or_default();
            counts.push(e.len());
            entries.extend(e);
        }
        let merged =
            serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        let (first, _) = &kept[0];
        let ctx = RequestContext::new(
            first.sender.actor(),
            OperationId::new(self.new_id()),
            first.via.peer().map(|p| p.to_string()),
            self.base_url.clone(),
        );
        let results: Vec<Result<Vec<String>, RecordError>> = match self
            .records
            .transaction(&ctx, &merged, ReturnPreference::Minimal)
            .await
        {
            Ok(response) => {
                let all = response["entry"].as_array().cloned().unwrap_or_default();
                let mut at = 0;
                counts
                    .iter()
                    .map(|n| {
                        let part =
                            serde_json::json!({"entry": all.get(at..at + n).unwrap_or_default()});
                        at += n;
                        Ok(written(&part))
                    })
                    .collect()
            }
            Err(e) if client_error(&e) => {
                // One of them is wrong: apply each on its own, to find which.
                let mut each = Vec::with_capacity(kept.len());
                for (job, _) in &kept {
                    let ctx = self.context(&job.sender, &job.via, &self.new_id());
                    each.push(
                        self.records
                            .transaction(&ctx, &job.mapped.bundle, ReturnPreference::Minimal)
                            .await
                            .map(|r| written(&r)),
                    );
                }
                each
            }
            Err(e) => kept
                .iter()
                .map(|_| {
                    Err(RecordError::Store(medmesh_store::StoreError::Invalid(
                        e.to_string(),
                    )))
                })
                .collect(),
        };

        // 3. Record every outcome in one commit, then answer.
        let mut answers = Vec::with_capacity(kept.len());
        let mut told = Vec::new();
        let mut rows = Vec::with_capacity(kept.len());
        for ((job, mut row), result) in kept.into_iter().zip(results) {
            row.attempts += 1;
            let mut outcome = MessageOutcome {
                warnings: job.message.warnings().to_vec(),
                ..MessageOutcome::default()
            };
            let (code, errors) = match result {
                Ok(resources) => {
                    outcome.resources = resources;
                    row.status = "applied".into();
                    self.forward(&job.message, &row).await;
                    if job.mapped.final_result {
                        told.push((outcome.resources.clone(), row.sender.clone()));
                    }
                    (AckCode::AA, Vec::new())
                }
                Err(e) => self.classify_failure(&e, &mut outcome, &mut row),
            };
            outcome.error_code = errors.first().map(|e| e.code);
            row.ack_code = Some(code.as_str().to_string());
            row.updated_micros = self.now();
            let detail = serde_json::to_vec(&outcome).unwrap_or_default();
            if let Ok(d) = self
                .seal(&format!("hl7v2/{}/detail", row.id), &detail)
                .await
            {
                row.detail = Some(d);
            }
            answers.push((job, code, errors));
            rows.push(row);
        }
        if let Err(e) = self.store.hl7_update_many(&rows).await {
            tracing::error!(error = %e, "the outcomes of HL7 v2 messages could not be recorded");
            for (job, _, _) in answers {
                let reply =
                    self.internal_failure(&job.message, "the outcome could not be recorded");
                let _ = job.reply.send(reply);
            }
            return;
        }
        self.tell_patients(&told).await;
        for (job, code, errors) in answers {
            let reply = self.reply(Some(&job.message), code, &errors);
            let _ = job.reply.send(reply);
        }
    }
}

/// Whether the record service refused the write for something in it (the message's fault),
/// rather than failed on this side.
pub(crate) fn client_error(e: &RecordError) -> bool {
    matches!(
        e,
        RecordError::Invalid(_)
            | RecordError::BadRequest(_)
            | RecordError::MultipleMatches
            | RecordError::Forbidden
            | RecordError::UnknownType
            | RecordError::PreconditionFailed(_)
            | RecordError::Conflict(_)
            | RecordError::NotSupported(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use medmesh_hl7v2_fhir::{Profile, map};

    fn job(sender: &str, control: &str, patient: &str) -> Job {
        let text = format!(
            "MSH|^~\\&|LAB|H|||2024||ADT^A08|{control}|P|2.5\rPID|1||{patient}^^^H^MR||Doe^Jo\r"
        );
        let message = Message::parse_str(&text).unwrap();
        let mapped = map(&message, &Profile::default()).unwrap();
        Job {
            message,
            bytes: text.into_bytes(),
            sender: Sender::new(sender, "*", "*", "127.0.0.1", None, Profile::default()).unwrap(),
            via: Via::Replay,
            kind: "ADT^A08".into(),
            control_id: control.into(),
            mapped,
            reply: oneshot::channel().0,
        }
    }

    #[test]
    fn a_batch_keeps_one_patients_messages_in_order_and_one_sender() {
        let mut pending: VecDeque<Job> = [
            job("lab", "1", "P1"),
            job("lab", "2", "P1"),
            job("lab", "3", "P2"),
            job("adt", "4", "P3"),
            job("lab", "5", "P1"),
        ]
        .into();
        let ids = |b: &[Job]| b.iter().map(|j| j.control_id.clone()).collect::<Vec<_>>();
        // P1's second message waits for the next batch, and so does its third (behind it).
        assert_eq!(ids(&next_batch(&mut pending)), ["1", "3"]);
        assert_eq!(ids(&next_batch(&mut pending)), ["2"]);
        assert_eq!(ids(&next_batch(&mut pending)), ["4"]);
        assert_eq!(ids(&next_batch(&mut pending)), ["5"]);
        assert!(next_batch(&mut pending).is_empty());
    }

    #[test]
    fn full_urls_are_renumbered_per_message() {
        let j = job("lab", "1", "P1");
        let entries = renumbered(&j.mapped.bundle, 3).unwrap();
        assert!(
            entries[0]["fullUrl"]
                .as_str()
                .unwrap()
                .starts_with("urn:uuid:00000003-")
        );
    }
}
