//! The messaging service, on the record service: threads and messages are Communications
//! written and read as the caller, so the PDP decides (a message is open to its parties,
//! and one about a patient to those who reach the patient), bodies are sealed at rest, and
//! each send and read is audited with its data.

use std::sync::Arc;

use medmesh_audit::Outcome;
use medmesh_fhir::IssueType;
use medmesh_fhir::search::Handling;
use medmesh_kernel::RequestContext;
use medmesh_notifications::{Category, NotificationHub, Recipient};
use medmesh_policy::{Action, Grant};
use medmesh_records::reading::{Names, resources_of};
use medmesh_records::{RecordError, RecordService};
use medmesh_store::NotificationOutboxRow;
use serde_json::Value;

use crate::live::{LiveBus, LiveEvent, Subscription};
use crate::thread::{
    Body, MAX_ATTACHMENTS, MAX_PARTIES, MESSAGE_CODE, MESSAGE_SYSTEM, PatientMessaging, Refused,
    THREAD_CODE, about, check_topic, header, is_header, is_id, is_sealed, message, parties, party,
    patient_messaging, read_by, unread_for, with_receipt,
};

/// The most threads a reader's list shows, and messages a thread shows.
pub const MAX_LISTED: usize = 500;

/// Whose accounts to tell: an adapter over the identity store (the binary's).
#[async_trait::async_trait]
pub trait MessagingAccounts: Send + Sync + 'static {
    /// The user ids of the accounts of `Practitioner/<practitioner>`.
    async fn practitioner_accounts(&self, practitioner: &str) -> Vec<String>;
}

/// A thread to open.
#[derive(Debug, Clone, Default)]
pub struct NewThread {
    /// Its subject line.
    pub topic: String,
    /// The patient it is about (an id), if any. A patient's threads are about them.
    pub about: Option<String>,
    /// The other parties (a patient's are their care team, whatever they ask).
    pub parties: Vec<String>,
    /// Whether its messages are sealed end to end in the parties' browsers.
    pub sealed: bool,
}

/// A thread in a reader's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSummary {
    /// The header's id.
    pub id: String,
    /// Its subject line.
    pub topic: String,
    /// The patient it is about (an id), and their name.
    pub about: Option<(String, String)>,
    /// Its parties: reference and name.
    pub parties: Vec<(String, String)>,
    /// When its newest message (or the thread) was sent (a FHIR instant).
    pub last: String,
    /// How many messages the reader has still to read.
    pub unread: usize,
    /// Whether it is sealed end to end.
    pub sealed: bool,
}

/// A message as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageView {
    /// The Communication's id.
    pub id: String,
    /// Who sent it (reference) and their name.
    pub sender: (String, String),
    /// When (a FHIR instant).
    pub sent: String,
    /// What it carries.
    pub body: Option<Body>,
    /// The documents it carries (DocumentReference ids).
    pub attachments: Vec<String>,
    /// Who read it (names) and when, apart from its sender.
    pub read_by: Vec<(String, String)>,
    /// Whether the reader sent it.
    pub mine: bool,
}

/// A thread with its messages, oldest first.
#[derive(Debug, Clone)]
pub struct ThreadView {
    /// The thread.
    pub summary: ThreadSummary,
    /// Its messages.
    pub messages: Vec<MessageView>,
    /// The reader's own reference (a page marks their own messages).
    pub reader: String,
}

/// Secure messaging.
pub struct MessagingService {
    records: Arc<RecordService>,
    live: Arc<LiveBus>,
    hub: Option<Arc<NotificationHub>>,
    accounts: Option<Arc<dyn MessagingAccounts>>,
}

impl std::fmt::Debug for MessagingService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessagingService").finish_non_exhaustive()
    }
}

fn refusal(r: Refused) -> RecordError {
    RecordError::invalid(IssueType::Value, r.0)
}

/// A FHIR instant of microseconds since the epoch.
fn instant(micros: i64) -> String {
    medmesh_fhir::datetime::format_instant(micros)
}

fn id_of(r: &Value) -> String {
    r["id"].as_str().unwrap_or_default().to_string()
}

/// Who the reader is: their own reference, and every reference that stands for them.
#[derive(Debug, Clone)]
struct Reader {
    me: String,
    principals: Vec<String>,
}

impl MessagingService {
    /// The service over `records`, delivering live through `live`.
    pub fn new(records: Arc<RecordService>, live: Arc<LiveBus>) -> Self {
        Self {
            records,
            live,
            hub: None,
            accounts: None,
        }
    }

    /// Tells parties who are away (no stream open) through `hub`, in words with no
    /// message text.
    #[must_use]
    pub fn with_notices(
        mut self,
        hub: Arc<NotificationHub>,
        accounts: Arc<dyn MessagingAccounts>,
    ) -> Self {
        self.hub = Some(hub);
        self.accounts = Some(accounts);
        self
    }

    /// The caller as a reader, with the principals the PDP knows for them (their teams).
    async fn reader(&self, ctx: &RequestContext) -> Result<(Reader, Grant), RecordError> {
        let grant = self
            .records
            .core()
            .authorize(ctx, Action::Search, Some("Communication"))
            .await?;
        let actor = ctx.actor();
        let reader = if let Some(c) = actor.clinician() {
            let mut principals = vec![c.practitioner.clone()];
            principals.extend(c.organizations.iter().cloned());
            if let Some(reach) = grant.reach() {
                principals.extend(reach.principals.iter().cloned());
            }
            principals.sort();
            principals.dedup();
            Reader {
                me: c.practitioner.clone(),
                principals,
            }
        } else if let Some(p) = actor.patient() {
            let me = format!("Patient/{p}");
            Reader {
                principals: vec![me.clone()],
                me,
            }
        } else {
            return Err(RecordError::refused("messages are between people"));
        };
        Ok((reader, grant))
    }

    /// A header the caller may read and is a party to.
    async fn thread_of(
        &self,
        ctx: &RequestContext,
        reader: &Reader,
        id: &str,
    ) -> Result<Value, RecordError> {
        if !is_id(id) {
            return Err(RecordError::NotFound);
        }
        let h = self.records.read(ctx, "Communication", id).await?.resource;
        if !is_header(&h) || !parties(&h).iter().any(|p| reader.principals.contains(p)) {
            return Err(RecordError::NotFound);
        }
        Ok(h)
    }

    /// The patient's care team (its id and current members), read as the caller.
    async fn team_of(
        &self,
        ctx: &RequestContext,
        patient: &str,
    ) -> Result<Option<(String, Vec<String>)>, RecordError> {
        let params = vec![
            ("subject".to_string(), format!("Patient/{patient}")),
            ("status".to_string(), "active".to_string()),
        ];
        let mut teams = resources_of(
            self.records
                .search(ctx, "CareTeam", &params, Handling::Strict)
                .await?,
        );
        teams.sort_by_key(id_of);
        let Some(team) = teams.into_iter().next() else {
            return Ok(None);
        };
        let members = medmesh_policy::access::members_at(&team, self.records.core().now());
        Ok(Some((id_of(&team), members)))
    }

    /// Opens a thread. A patient's thread is about them and goes to their care team (or
    /// their practice's shared inbox; refused where the practice turned patient messaging
    /// off). A clinician's goes to the parties they name, about a patient they reach if
    /// any. A sealed thread's parties are people, whose browsers hold the keys.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] for what the thread says or a refusal of the practice's.
    pub async fn create_thread(
        &self,
        ctx: &RequestContext,
        new: NewThread,
    ) -> Result<String, RecordError> {
        check_topic(&new.topic).map_err(refusal)?;
        if new.parties.len() > MAX_PARTIES {
            return Err(RecordError::rule(format!(
                "a thread has at most {MAX_PARTIES} parties"
            )));
        }
        let (reader, _) = self.reader(ctx).await?;
        let (about_patient, mut recipients) = if let Some(p) = ctx.actor().patient() {
            let patient = self.records.read(ctx, "Patient", p).await?.resource;
            let setting = match patient["managingOrganization"]["reference"]
                .as_str()
                .and_then(|r| r.strip_prefix("Organization/"))
            {
                Some(o) => Some((
                    o.to_string(),
                    patient_messaging(&self.records.read(ctx, "Organization", o).await?.resource),
                )),
                None => None,
            };
            let to = match setting {
                Some((_, PatientMessaging::Off)) => {
                    return Err(RecordError::refused(
                        "your practice does not take messages here: please call them",
                    ));
                }
                Some((o, PatientMessaging::SharedInbox)) if !new.sealed => {
                    vec![format!("Organization/{o}")]
                }
                _ => {
                    let Some((team, members)) = self.team_of(ctx, p).await? else {
                        return Err(RecordError::rule("you have no care team to message yet"));
                    };
                    if new.sealed {
                        members
                    } else {
                        vec![format!("CareTeam/{team}")]
                    }
                }
            };
            if to.is_empty() {
                return Err(RecordError::rule(
                    "your care team has no member to message yet",
                ));
            }
            (Some(p.to_string()), to)
        } else {
            let mut to = Vec::new();
            for r in &new.parties {
                to.push(party(r.trim()).map_err(refusal)?);
            }
            let about_patient = match &new.about {
                Some(p) => {
                    if !is_id(p) {
                        return Err(RecordError::NotFound);
                    }
                    // Read as the caller: the PDP says whether they reach the patient.
                    self.records.read(ctx, "Patient", p).await?;
                    Some(p.clone())
                }
                None => None,
            };
            for r in &to {
                let Some((rt, id)) = r.split_once('/') else {
                    continue;
                };
                if rt == "Patient" {
                    if about_patient.as_deref() != Some(id) {
                        return Err(RecordError::rule(
                            "a thread with a patient is about that patient (about = their id)",
                        ));
                    }
                    continue;
                }
                let read = self.records.read(ctx, rt, id).await;
                if matches!(read, Err(RecordError::NotFound | RecordError::Gone { .. })) {
                    return Err(RecordError::rule("a party is not in the directory"));
                }
            }
            (about_patient, to)
        };
        recipients.retain(|r| *r != reader.me);
        recipients.sort();
        recipients.dedup();
        if recipients.is_empty() {
            return Err(RecordError::rule("a thread has someone to write to"));
        }
        if new.sealed
            && recipients
                .iter()
                .any(|r| !(r.starts_with("Practitioner/") || r.starts_with("Patient/")))
        {
            return Err(RecordError::rule(
                "a sealed thread's parties are people (practitioners and the patient), whose browsers hold the keys",
            ));
        }
        let core = self.records.core();
        let id = core.ids().new_id();
        let h = header(
            &id,
            &new.topic,
            about_patient.as_deref(),
            &reader.me,
            &recipients,
            new.sealed,
            &instant(core.now()),
        );
        core.check_resource("Communication", &h)?;
        let grant = core
            .authorize(ctx, Action::Create, Some("Communication"))
            .await?;
        let mut tx = core.begin_write().await?;
        core.write_version(ctx, &mut tx, &grant, "Communication", &id, h.clone(), None)
            .await?;
        self.audit(
            ctx,
            &mut tx,
            &grant,
            "message-thread-open",
            vec![id.clone()],
            about_patient.as_deref(),
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    #[allow(clippy::too_many_arguments)] // one audit entry's facts
    async fn audit(
        &self,
        ctx: &RequestContext,
        tx: &mut medmesh_at_rest::WriteTx,
        grant: &Grant,
        action: &str,
        ids: Vec<String>,
        patient: Option<&str>,
    ) -> Result<(), RecordError> {
        let core = self.records.core();
        let mut entry = core.entry(ctx, action, Some("Communication"), ids, Outcome::Success);
        entry.patients = patient.map(str::to_string).into_iter().collect();
        core.annotate(&mut entry, grant);
        tx.append_audit(&entry).await?;
        Ok(())
    }

    async fn messages_of(
        &self,
        ctx: &RequestContext,
        thread: &str,
    ) -> Result<Vec<Value>, RecordError> {
        let params = vec![
            ("part-of".to_string(), format!("Communication/{thread}")),
            ("_sort".to_string(), "sent".to_string()),
            ("_count".to_string(), MAX_LISTED.to_string()),
        ];
        Ok(resources_of(
            self.records
                .search(ctx, "Communication", &params, Handling::Strict)
                .await?,
        ))
    }

    async fn summary(
        &self,
        ctx: &RequestContext,
        names: &mut Names,
        h: &Value,
        messages: &[Value],
        reader: &Reader,
    ) -> ThreadSummary {
        let mut listed = Vec::new();
        for p in parties(h) {
            listed.push((p.clone(), names.of(&self.records, ctx, &p).await));
        }
        let about = match about(h) {
            Some(p) => Some((
                p.clone(),
                names.of(&self.records, ctx, &format!("Patient/{p}")).await,
            )),
            None => None,
        };
        let last = messages
            .iter()
            .filter_map(|m| m["sent"].as_str())
            .chain(h["sent"].as_str())
            .max()
            .unwrap_or_default()
            .to_string();
        ThreadSummary {
            id: id_of(h),
            topic: h["topic"]["text"].as_str().unwrap_or_default().to_string(),
            about,
            parties: listed,
            last,
            unread: messages
                .iter()
                .filter(|m| unread_for(m, &reader.me, &reader.principals))
                .count(),
            sealed: is_sealed(h),
        }
    }

    /// The threads the caller is a party to, the newest first, with their unread counts.
    ///
    /// # Errors
    /// A refusal when the caller may not read messages.
    pub async fn threads(&self, ctx: &RequestContext) -> Result<Vec<ThreadSummary>, RecordError> {
        let (reader, _) = self.reader(ctx).await?;
        let params = vec![
            (
                "category".to_string(),
                format!("{MESSAGE_SYSTEM}|{THREAD_CODE}"),
            ),
            ("_count".to_string(), MAX_LISTED.to_string()),
        ];
        let headers = resources_of(
            self.records
                .search(ctx, "Communication", &params, Handling::Strict)
                .await?,
        );
        let mut names = Names::new();
        let mut out = Vec::new();
        for h in headers
            .iter()
            .filter(|h| parties(h).iter().any(|p| reader.principals.contains(p)))
        {
            let messages = self.messages_of(ctx, &id_of(h)).await?;
            out.push(self.summary(ctx, &mut names, h, &messages, &reader).await);
        }
        out.sort_by(|a, b| b.last.cmp(&a.last).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// How many messages the caller has still to read, across their threads.
    ///
    /// # Errors
    /// As [`Self::threads`].
    pub async fn unread(&self, ctx: &RequestContext) -> Result<usize, RecordError> {
        Ok(self.threads(ctx).await?.iter().map(|t| t.unread).sum())
    }

    /// Thread `id` with its messages; when `mark_read`, the caller's receipts are added to
    /// the messages they had not read (one transaction, audited `message-read`), and the
    /// other parties' streams are told.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] for a thread the caller is no party to or may not read.
    pub async fn thread(
        &self,
        ctx: &RequestContext,
        id: &str,
        mark_read: bool,
    ) -> Result<ThreadView, RecordError> {
        let (reader, _) = self.reader(ctx).await?;
        let h = self.thread_of(ctx, &reader, id).await?;
        let mut messages = self.messages_of(ctx, id).await?;
        let unread: Vec<usize> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| unread_for(m, &reader.me, &reader.principals))
            .map(|(i, _)| i)
            .collect();
        if mark_read && !unread.is_empty() {
            let core = self.records.core();
            let now = instant(core.now());
            let grant = core
                .authorize(ctx, Action::Update, Some("Communication"))
                .await?;
            let mut marked = Vec::new();
            for i in &unread {
                let m = &messages[*i];
                let mut body = with_receipt(m.clone(), &reader.me, &now);
                if let Some(o) = body.as_object_mut() {
                    o.remove("meta");
                }
                marked.push((id_of(m), body));
            }
            let mut tx = core.begin_write().await?;
            let mut ids = vec![id.to_string()];
            for (mid, body) in &marked {
                let head = tx.head("Communication", mid).await?;
                core.write_version(
                    ctx,
                    &mut tx,
                    &grant,
                    "Communication",
                    mid,
                    body.clone(),
                    head,
                )
                .await?;
                ids.push(mid.clone());
            }
            self.audit(
                ctx,
                &mut tx,
                &grant,
                "message-read",
                ids,
                about(&h).as_deref(),
            )
            .await?;
            tx.commit().await?;
            for (i, (_, body)) in unread.iter().zip(marked) {
                messages[*i] = body;
            }
            self.live.publish(LiveEvent {
                thread: id.to_string(),
                kind: "read",
                parties: Arc::new(parties(&h)),
            });
        }
        let mut names = Names::new();
        let summary = self.summary(ctx, &mut names, &h, &messages, &reader).await;
        let mut views = Vec::new();
        for m in &messages {
            let sender = m["sender"]["reference"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let sender_name = names.of(&self.records, ctx, &sender).await;
            let mut receipts = Vec::new();
            for (r, at) in read_by(m) {
                receipts.push((names.of(&self.records, ctx, &r).await, at));
            }
            views.push(MessageView {
                id: id_of(m),
                mine: sender == reader.me,
                sender: (sender, sender_name),
                sent: m["sent"].as_str().unwrap_or_default().to_string(),
                body: Body::of_message(m),
                attachments: m["payload"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["contentReference"]["reference"].as_str())
                    .filter_map(|r| r.strip_prefix("DocumentReference/"))
                    .map(str::to_string)
                    .collect(),
                read_by: receipts,
            });
        }
        Ok(ThreadView {
            summary,
            messages: views,
            reader: reader.me,
        })
    }

    /// The outbox rows telling the parties of thread `h` who are away (no stream open) of a
    /// new message, in words with no text: a practitioner's accounts, a patient, a care
    /// team's current members.
    async fn away_notices(
        &self,
        ctx: &RequestContext,
        h: &Value,
        sender: &str,
        message_id: &str,
    ) -> Result<Vec<NotificationOutboxRow>, RecordError> {
        let Some(hub) = &self.hub else {
            return Ok(Vec::new());
        };
        let mut people = Vec::new();
        for p in parties(h).into_iter().filter(|p| p != sender) {
            if let Some(team) = p.strip_prefix("CareTeam/") {
                if let Ok(found) = self.records.read(ctx, "CareTeam", team).await {
                    let now = self.records.core().now();
                    people.extend(medmesh_policy::access::members_at(&found.resource, now));
                }
            } else {
                people.push(p);
            }
        }
        people.sort();
        people.dedup();
        people.retain(|p| p != sender && !self.live.is_present(p));
        let mut who = Vec::new();
        for p in people {
            if let Some(patient) = p.strip_prefix("Patient/") {
                who.push(Recipient::Patient(patient.to_string()));
            } else if let (Some(pr), Some(accounts)) =
                (p.strip_prefix("Practitioner/"), &self.accounts)
            {
                who.extend(
                    accounts
                        .practitioner_accounts(pr)
                        .await
                        .into_iter()
                        .map(Recipient::Account),
                );
            }
        }
        let notice = hub.notice(Category::Messages, format!("message:{message_id}"));
        let now = self.records.core().now();
        let mut rows = Vec::new();
        for w in who {
            rows.push(
                hub.prepare_scheduled(&w, &notice, now).await.map_err(|_| {
                    RecordError::NotSupported("notifications are unavailable".into())
                })?,
            );
        }
        Ok(rows)
    }

    /// Sends a message to thread `id`: text, or (in a sealed thread, and only there) a
    /// sealed envelope; with documents of the thread's patient the caller may read. The
    /// parties' streams are told; those away are told through the hub, without the text.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] for what the message carries; [`RecordError::NotFound`] for
    /// a thread the caller is no party to.
    pub async fn send(
        &self,
        ctx: &RequestContext,
        id: &str,
        body: Body,
        attachments: Vec<String>,
    ) -> Result<String, RecordError> {
        body.check().map_err(refusal)?;
        if attachments.len() > MAX_ATTACHMENTS {
            return Err(RecordError::rule(format!(
                "a message carries at most {MAX_ATTACHMENTS} documents"
            )));
        }
        let (reader, _) = self.reader(ctx).await?;
        let h = self.thread_of(ctx, &reader, id).await?;
        match (&body, is_sealed(&h)) {
            (Body::Text(_), true) => {
                return Err(RecordError::rule(
                    "this thread is sealed end to end: its messages are sealed in the browser",
                ));
            }
            (Body::Sealed(_), false) => {
                return Err(RecordError::rule("this thread is not sealed: send text"));
            }
            _ => {}
        }
        let patient = about(&h);
        for d in &attachments {
            if !is_id(d) {
                return Err(RecordError::rule("not a document id"));
            }
            let doc = self
                .records
                .read(ctx, "DocumentReference", d)
                .await?
                .resource;
            let of = doc["subject"]["reference"]
                .as_str()
                .and_then(|r| r.strip_prefix("Patient/"));
            if patient.is_none() || of != patient.as_deref() {
                return Err(RecordError::rule(
                    "a message carries documents of the patient its thread is about",
                ));
            }
        }
        let sender = reader.me.clone();
        let core = self.records.core();
        let mid = core.ids().new_id();
        let m = message(&mid, &h, &sender, &body, &attachments, &instant(core.now()));
        core.check_resource("Communication", &m)?;
        let grant = core
            .authorize(ctx, Action::Create, Some("Communication"))
            .await?;
        let rows = self.away_notices(ctx, &h, &sender, &mid).await?;
        let mut tx = core.begin_write().await?;
        core.write_version(ctx, &mut tx, &grant, "Communication", &mid, m, None)
            .await?;
        self.audit(
            ctx,
            &mut tx,
            &grant,
            "message-send",
            vec![mid.clone(), id.to_string()],
            patient.as_deref(),
        )
        .await?;
        for row in &rows {
            tx.queue_notification(row).await?;
        }
        tx.commit().await?;
        let mut told = parties(&h);
        told.push(sender);
        self.live.publish(LiveEvent {
            thread: id.to_string(),
            kind: MESSAGE_CODE,
            parties: Arc::new(told),
        });
        Ok(mid)
    }

    /// The thread of video visit `appointment` (its chat): the one already opened, or a new
    /// one about the appointment's patient between its patient and practitioners (those who
    /// have not declined). The caller must be one of them, and the PDP must let them read
    /// the appointment.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] for an appointment the caller is not in or cannot read.
    pub async fn visit_thread(
        &self,
        ctx: &RequestContext,
        appointment: &str,
        topic: &str,
    ) -> Result<String, RecordError> {
        if !is_id(appointment) {
            return Err(RecordError::NotFound);
        }
        let (reader, _) = self.reader(ctx).await?;
        let a = self
            .records
            .read(ctx, "Appointment", appointment)
            .await?
            .resource;
        let people: Vec<String> = a["participant"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["status"] != "declined")
            .filter_map(|p| p["actor"]["reference"].as_str())
            .filter(|r| r.starts_with("Patient/") || r.starts_with("Practitioner/"))
            .map(str::to_string)
            .collect();
        let patient = people
            .iter()
            .find_map(|r| r.strip_prefix("Patient/"))
            .map(str::to_string);
        if !people.contains(&reader.me) || patient.is_none() {
            return Err(RecordError::NotFound);
        }
        let params = vec![
            ("based-on".to_string(), format!("Appointment/{appointment}")),
            (
                "category".to_string(),
                format!("{MESSAGE_SYSTEM}|{THREAD_CODE}"),
            ),
        ];
        let mut found = resources_of(
            self.records
                .search(ctx, "Communication", &params, Handling::Strict)
                .await?,
        );
        found.sort_by(|a, b| {
            a["sent"]
                .as_str()
                .cmp(&b["sent"].as_str())
                .then_with(|| id_of(a).cmp(&id_of(b)))
        });
        if let Some(h) = found.iter().find(|h| parties(h).contains(&reader.me)) {
            return Ok(id_of(h));
        }
        check_topic(topic).map_err(refusal)?;
        let recipients: Vec<String> = people.into_iter().filter(|p| *p != reader.me).collect();
        let core = self.records.core();
        let id = core.ids().new_id();
        let mut h = header(
            &id,
            topic,
            patient.as_deref(),
            &reader.me,
            &recipients,
            false,
            &instant(core.now()),
        );
        h["basedOn"] = serde_json::json!([{"reference": format!("Appointment/{appointment}")}]);
        core.check_resource("Communication", &h)?;
        let grant = core
            .authorize(ctx, Action::Create, Some("Communication"))
            .await?;
        let mut tx = core.begin_write().await?;
        core.write_version(ctx, &mut tx, &grant, "Communication", &id, h, None)
            .await?;
        self.audit(
            ctx,
            &mut tx,
            &grant,
            "message-thread-open",
            vec![id.clone(), format!("Appointment/{appointment}")],
            patient.as_deref(),
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Opens a live stream for the caller: the events of the threads they are a party to.
    ///
    /// # Errors
    /// As [`Self::threads`].
    pub async fn subscribe(&self, ctx: &RequestContext) -> Result<Subscription, RecordError> {
        let (reader, _) = self.reader(ctx).await?;
        Ok(self.live.subscribe(&reader.me, reader.principals))
    }
}
