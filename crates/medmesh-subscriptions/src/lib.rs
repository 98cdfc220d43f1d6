//! FHIR Subscriptions, as the R4 backport of R5's topic-based subscriptions describes them
//! (<http://hl7.org/fhir/uv/subscriptions-backport/>), with rest-hook channels.
//!
//! A client writes a Subscription naming a topic ([`topic::Topic`]: appointments, results)
//! and filters. The node reads the record's change feed as its own actor, and for each
//! change a subscription's topic and filters match, asks the PDP, as the subscription's
//! owner stands now, whether the owner may read that version (an audited read: the
//! notification discloses it). Only then is the event numbered and a notification bundle
//! queued, sealed, in the notification hub's outbox on the `rest-hook` channel, which
//! delivers it once across replicas, retries it with backoff and lists what failed.
//!
//! No I/O here: the store, the owners' accounts and the HTTP client are ports.

pub mod bundle;
pub mod resource;
pub mod topic;

use std::collections::BTreeSet;
use std::sync::Arc;

use medmesh_fhir::outcome::{Issue, IssueType};
use medmesh_kernel::{Actor, OperationId, RequestContext, VerifiedIdentity};
use medmesh_notifications::{Category, ChannelDelivery, NotificationHub, SendError};
use medmesh_policy::Action;
use medmesh_records::{Change, FEED_SETTLE_MICROS, FeedSeen, RecordError, RecordService};
use medmesh_store::{NotificationOutboxRow, SubscriptionRow, SubscriptionStore};
use serde_json::{Value, json};

use crate::bundle::{Event, Focus, Kind, Status};
use crate::resource::{Spec, read_subscription, render};
use crate::topic::Topic;

/// The hub's outbox channel for rest-hook notifications.
pub const REST_HOOK: &str = "rest-hook";

/// The key subscriptions' bodies are sealed under.
pub const KEY_OWNER: &str = "node:subscriptions";

/// Feed rows one poll reads.
const BATCH: u32 = 200;

/// The most subscriptions one owner may keep.
pub const MAX_PER_OWNER: u32 = 50;

/// The account or client a subscription acts for, as it stands now.
#[async_trait::async_trait]
pub trait SubscriberDirectory: Send + Sync + 'static {
    /// `owner`'s identity now, its scopes cut to `scopes` and to what its account's role
    /// or client's registration allows now, in the patient context it subscribed in
    /// (`patient`; a patient's account is always its own patient's). `None` when it is
    /// gone or disabled.
    async fn standing(
        &self,
        owner: &str,
        scopes: &[String],
        patient: Option<&str>,
    ) -> Option<VerifiedIdentity>;
}

/// Sends rest-hook notifications (the HTTP adapter).
#[async_trait::async_trait]
pub trait RestHookClient: Send + Sync + 'static {
    /// Whether the node may send to `url`; the reason, in words for its owner, when not.
    ///
    /// # Errors
    /// The reason.
    fn check(&self, url: &str) -> Result<(), String>;
    /// POSTs `body` as `content_type` to `url` with `headers` (`Name: value`).
    async fn post(
        &self,
        url: &str,
        headers: &[String],
        content_type: &str,
        body: &[u8],
    ) -> Result<(), SendError>;
}

/// Why a subscription call failed.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    /// From the record service (a refusal, a bad request, a store failure).
    #[error(transparent)]
    Records(#[from] RecordError),
    /// From the hub.
    #[error(transparent)]
    Hub(#[from] medmesh_notifications::HubError),
}

impl From<medmesh_store::StoreError> for SubscriptionError {
    fn from(e: medmesh_store::StoreError) -> Self {
        Self::Records(RecordError::Store(e))
    }
}

fn invalid(why: &str, expression: &str) -> SubscriptionError {
    let mut issue = Issue::error(IssueType::Invalid, why);
    issue.expression = Some(expression.into());
    SubscriptionError::Records(RecordError::Invalid(vec![issue]))
}

fn body_context(id: &str) -> String {
    format!("subscription/{id}")
}

/// A stored subscription's Spec, opened.
async fn open_spec(
    records: &RecordService,
    row: &SubscriptionRow,
) -> Result<Spec, SubscriptionError> {
    let plain = records
        .core()
        .open_detached(&body_context(&row.id), &row.body)
        .await?;
    serde_json::from_slice(&plain).map_err(|_| RecordError::Corrupt.into())
}

/// FHIR Subscriptions over the record service and the hub.
pub struct SubscriptionService {
    records: Arc<RecordService>,
    store: Arc<dyn SubscriptionStore>,
    hub: Arc<NotificationHub>,
    owners: Arc<dyn SubscriberDirectory>,
    client: Arc<dyn RestHookClient>,
    base_url: String,
    /// Feed rows after the cursor already told.
    seen: tokio::sync::Mutex<FeedSeen>,
    /// The last heartbeat queued per subscription (its number), so each is queued once
    /// by this node rather than tried every poll.
    beats: tokio::sync::Mutex<std::collections::HashMap<String, i64>>,
}

impl std::fmt::Debug for SubscriptionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionService")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl SubscriptionService {
    /// The service. `base_url` is the node's FHIR base, which notifications name.
    pub fn new(
        records: Arc<RecordService>,
        store: Arc<dyn SubscriptionStore>,
        hub: Arc<NotificationHub>,
        owners: Arc<dyn SubscriberDirectory>,
        client: Arc<dyn RestHookClient>,
        base_url: impl Into<String>,
    ) -> Self {
        Self {
            records,
            store,
            hub,
            owners,
            client,
            base_url: base_url.into().trim_end_matches('/').to_string(),
            seen: tokio::sync::Mutex::new(FeedSeen::default()),
            beats: tokio::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn now(&self) -> i64 {
        self.records.core().now()
    }

    async fn seal(&self, id: &str, spec: &Spec) -> Result<Vec<u8>, SubscriptionError> {
        let plain = serde_json::to_vec(spec).unwrap_or_default();
        Ok(self
            .records
            .core()
            .seal_detached(KEY_OWNER, &body_context(id), &plain)
            .await?)
    }

    /// The topics this node offers, as the CapabilityStatement and the docs list them.
    pub fn topics() -> Vec<Value> {
        Topic::ALL
            .iter()
            .map(|t| {
                json!({"canonical": t.canonical(), "resource": t.resource_type(),
                       "filters": t.filter_names(), "description": t.description()})
            })
            .collect()
    }

    /// Reads a written Subscription and asks the PDP whether its writer may read what its
    /// topic tells of.
    async fn accept(
        &self,
        ctx: &RequestContext,
        resource: &Value,
        previous: Option<&Spec>,
    ) -> Result<Spec, SubscriptionError> {
        let mut spec =
            read_subscription(resource, previous).map_err(|(why, at)| invalid(&why, at))?;
        self.client
            .check(&spec.endpoint)
            .map_err(|why| invalid(&why, "Subscription.channel.endpoint"))?;
        let rt = spec.topic.resource_type();
        // The typed permission: refused (and the refusal audited) unless the PDP lets the
        // writer read the topic's type at all. Each event is asked about again.
        self.records
            .core()
            .authorize(ctx, Action::Read, Some(rt))
            .await?;
        spec.scopes = ctx
            .actor()
            .scopes()
            .iter()
            .filter(|s| s.resource_type.as_deref().is_none_or(|t| t == rt))
            .map(ToString::to_string)
            .collect();
        spec.patient = ctx.actor().patient().map(str::to_string);
        Ok(spec)
    }

    /// `POST /Subscription`: keeps it as `requested` and queues its handshake; it is
    /// `active` once the endpoint has taken the handshake.
    ///
    /// # Errors
    /// 422 for what the node cannot do (another topic, channel, payload, a refused
    /// endpoint); 403 when the PDP refuses the topic's type.
    pub async fn create(
        &self,
        ctx: &RequestContext,
        resource: &Value,
    ) -> Result<Value, SubscriptionError> {
        let id = self.records.core().ids().new_id();
        self.create_as(ctx, &id, resource).await
    }

    /// Creates a subscription with the id `id`.
    async fn create_as(
        &self,
        ctx: &RequestContext,
        id: &str,
        resource: &Value,
    ) -> Result<Value, SubscriptionError> {
        let spec = self.accept(ctx, resource, None).await?;
        let owner = ctx.actor().subject().to_string();
        if self
            .store
            .subscriptions_of(&owner, MAX_PER_OWNER)
            .await?
            .len()
            >= MAX_PER_OWNER as usize
        {
            return Err(invalid(
                "this account has as many subscriptions as it may keep",
                "Subscription",
            ));
        }
        let id = id.to_string();
        let now = self.now();
        self.read_feed_from_now_if_idle(now).await?;
        let row = SubscriptionRow {
            body: self.seal(&id, &spec).await?,
            id: id.clone(),
            owner,
            topic: spec.topic.canonical(),
            status: "requested".into(),
            events: 0,
            last_error: None,
            created_micros: now,
            updated_micros: now,
        };
        self.store.subscription_put(&row).await?;
        self.handshake(&row, &spec).await?;
        Ok(render(&spec, &id, &row.status, None, now))
    }

    /// When no subscription is live, nothing reads the change feed (the poll does nothing):
    /// the first one to become live starts the cursor at the feed's head, so it is told of
    /// what happens from now on, not of what happened while none was listening.
    async fn read_feed_from_now_if_idle(&self, now: i64) -> Result<(), SubscriptionError> {
        if self.store.subscriptions_live().await?.is_empty() {
            let head = self.store.change_feed_head().await?;
            self.store.subscription_set_cursor(head, now).await?;
        }
        Ok(())
    }

    async fn handshake(&self, row: &SubscriptionRow, spec: &Spec) -> Result<(), SubscriptionError> {
        let status = self.status_of(row, spec);
        self.queue(
            row,
            spec,
            &status,
            Kind::Handshake,
            None,
            &format!("handshake/{}", row.updated_micros),
        )
        .await
    }

    fn status_of<'a>(&'a self, row: &'a SubscriptionRow, spec: &Spec) -> Status<'a> {
        Status {
            base_url: &self.base_url,
            subscription: &row.id,
            topic: spec.topic,
            status: &row.status,
            events_since_start: row.events,
            error: row.last_error.as_deref(),
        }
    }

    async fn queue(
        &self,
        row: &SubscriptionRow,
        spec: &Spec,
        status: &Status<'_>,
        kind: Kind,
        event: Option<&Event>,
        key: &str,
    ) -> Result<(), SubscriptionError> {
        let ids = self.records.core().ids();
        let (bundle_id, status_id) = (ids.new_id(), ids.new_id());
        let body = bundle::notification(
            (&bundle_id, &status_id),
            self.now(),
            status,
            kind,
            event,
            spec.content,
        );
        let category = match spec.topic {
            Topic::Appointment => Category::Appointments,
            Topic::Result => Category::Results,
        };
        self.hub
            .queue_on(
                REST_HOOK,
                &format!("Subscription/{}", row.id),
                category,
                key,
                &body.to_string(),
            )
            .await?;
        Ok(())
    }

    /// A subscription of the caller's; someone else's is not found.
    async fn own(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<(SubscriptionRow, Spec), SubscriptionError> {
        let row = self
            .store
            .subscription(id)
            .await?
            .filter(|r| r.owner == ctx.actor().subject())
            .ok_or(RecordError::NotFound)?;
        let spec = open_spec(&self.records, &row).await?;
        Ok((row, spec))
    }

    /// `GET /Subscription/{id}`: the caller's own.
    ///
    /// # Errors
    /// 404 for another's or none.
    pub async fn read(&self, ctx: &RequestContext, id: &str) -> Result<Value, SubscriptionError> {
        let (row, spec) = self.own(ctx, id).await?;
        Ok(render(
            &spec,
            &row.id,
            &row.status,
            row.last_error.as_deref(),
            row.updated_micros,
        ))
    }

    /// `GET /Subscription`: the caller's own, as a searchset.
    ///
    /// # Errors
    /// As the store fails.
    pub async fn search(&self, ctx: &RequestContext) -> Result<Value, SubscriptionError> {
        let rows = self
            .store
            .subscriptions_of(ctx.actor().subject(), MAX_PER_OWNER)
            .await?;
        let mut entries = Vec::new();
        for row in rows {
            let spec = open_spec(&self.records, &row).await?;
            entries.push(json!({
                "fullUrl": format!("{}/Subscription/{}", self.base_url, row.id),
                "resource": render(&spec, &row.id, &row.status, row.last_error.as_deref(), row.updated_micros),
                "search": {"mode": "match"},
            }));
        }
        Ok(json!({"resourceType": "Bundle", "type": "searchset",
                  "total": entries.len(), "entry": entries}))
    }

    /// `PUT /Subscription/{id}`: the caller's own, replaced (`status: off` pauses it; any
    /// other status asks for it again, with a new handshake; event numbers go on), or a new
    /// one with this id. Answers the Subscription and whether it was created.
    ///
    /// # Errors
    /// As [`Self::create`]; 404 for another's.
    pub async fn update(
        &self,
        ctx: &RequestContext,
        id: &str,
        resource: &Value,
    ) -> Result<(Value, bool), SubscriptionError> {
        if resource["id"].as_str().is_some_and(|i| i != id) {
            return Err(invalid("the body's id is not the URL's", "Subscription.id"));
        }
        if self.store.subscription(id).await?.is_none() {
            let valid = !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !valid {
                return Err(invalid("that is not a FHIR id", "Subscription.id"));
            }
            return Ok((self.create_as(ctx, id, resource).await?, true));
        }
        let (mut row, previous) = self.own(ctx, id).await?;
        let spec = self.accept(ctx, resource, Some(&previous)).await?;
        let now = self.now();
        row.status = if resource["status"].as_str() == Some("off") {
            "off".into()
        } else {
            "requested".into()
        };
        row.topic = spec.topic.canonical();
        row.body = self.seal(id, &spec).await?;
        row.last_error = None;
        row.updated_micros = now;
        if row.status == "requested" {
            self.read_feed_from_now_if_idle(now).await?;
        }
        self.store.subscription_put(&row).await?;
        if row.status == "requested" {
            self.handshake(&row, &spec).await?;
        }
        Ok((render(&spec, id, &row.status, None, now), false))
    }

    /// `DELETE /Subscription/{id}`: the caller's own; what was queued for it is not sent.
    ///
    /// # Errors
    /// 404 for another's or none.
    pub async fn delete(&self, ctx: &RequestContext, id: &str) -> Result<(), SubscriptionError> {
        self.own(ctx, id).await?;
        self.store.subscription_delete(id).await?;
        Ok(())
    }

    /// `GET /Subscription/{id}/$status`: a searchset with its status.
    ///
    /// # Errors
    /// 404 for another's or none.
    pub async fn status(&self, ctx: &RequestContext, id: &str) -> Result<Value, SubscriptionError> {
        let (row, spec) = self.own(ctx, id).await?;
        let status_id = self.records.core().ids().new_id();
        let status = self.status_of(&row, &spec);
        Ok(json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "total": 1,
            "entry": [{
                "fullUrl": format!("urn:uuid:{status_id}"),
                "resource": bundle::status_parameters(&status_id, &status, Kind::QueryStatus, None, spec.content),
                "search": {"mode": "match"},
            }],
        }))
    }

    fn feed_context(&self, topics: &BTreeSet<&'static str>) -> RequestContext {
        let text: Vec<String> = topics.iter().map(|t| format!("system/{t}.rs")).collect();
        #[allow(clippy::disallowed_methods)] // The subscription service's own feed reader.
        let actor = Actor::subscription_feed(medmesh_auth::parse_scopes(&text.join(" ")));
        RequestContext::new(
            actor,
            OperationId::new(self.records.core().ids().new_id()),
            None,
            self.base_url.clone(),
        )
    }

    /// The owner's request context now; `None` when the owner is gone.
    async fn owner_context(&self, row: &SubscriptionRow, spec: &Spec) -> Option<RequestContext> {
        let who = self
            .owners
            .standing(&row.owner, &spec.scopes, spec.patient.as_deref())
            .await?;
        #[allow(clippy::disallowed_methods)] // The directory looked the owner up just now.
        let actor = Actor::from_standing_subscription(who);
        Some(RequestContext::new(
            actor,
            OperationId::new(self.records.core().ids().new_id()),
            None,
            self.base_url.clone(),
        ))
    }

    /// Reads the change feed once and queues a notification for each event a live
    /// subscription is told of; ends subscriptions past their end; queues heartbeats that
    /// are due. Returns how many notifications were queued.
    ///
    /// # Errors
    /// When the feed, the store or the hub fails; nothing is lost: the next poll reads the
    /// same rows again, and what was queued is not queued twice.
    pub async fn poll(&self) -> Result<usize, SubscriptionError> {
        let now = self.now();
        let mut live = Vec::new();
        for row in self.store.subscriptions_live().await? {
            let spec = open_spec(&self.records, &row).await?;
            if spec.end.is_some_and(|end| end <= now) {
                self.store
                    .subscription_set_status(&row.id, "off", None, now)
                    .await?;
                continue;
            }
            live.push((row, spec));
        }
        if live.is_empty() {
            // The cursor is moved to the head when one becomes live again.
            return Ok(0);
        }
        let mut queued = self.heartbeats(&live, now).await?;
        let types: BTreeSet<&'static str> =
            live.iter().map(|(_, s)| s.topic.resource_type()).collect();
        let ctx = self.feed_context(&types);
        let cursor = self.store.subscription_cursor().await?;
        let already = self.seen.lock().await.after(cursor);
        let type_list: Vec<String> = types.iter().map(|t| (*t).to_string()).collect();
        let changes = self
            .records
            .changes(&ctx, &type_list, cursor, &already, BATCH)
            .await?;
        for change in &changes {
            if let Some(resource) = &change.resource {
                for (row, spec) in &live {
                    if spec.topic.resource_type() == change.resource_type
                        && change.last_updated >= row.created_micros
                        && spec.topic.triggered_by(resource)
                        && topic::matches(spec.topic, &spec.filters, resource)
                        && self.tell(row, spec, change).await?
                    {
                        queued += 1;
                    }
                }
            }
        }
        let new_cursor = self
            .seen
            .lock()
            .await
            .advance(&changes, cursor, now - FEED_SETTLE_MICROS);
        if new_cursor != cursor {
            self.store.subscription_set_cursor(new_cursor, now).await?;
        }
        Ok(queued)
    }

    /// Tells one subscription of one change, if its owner may read it now.
    async fn tell(
        &self,
        row: &SubscriptionRow,
        spec: &Spec,
        change: &Change,
    ) -> Result<bool, SubscriptionError> {
        let Some(ctx) = self.owner_context(row, spec).await else {
            self.store
                .subscription_set_status(
                    &row.id,
                    "off",
                    Some("its owner's account is gone"),
                    self.now(),
                )
                .await?;
            return Ok(false);
        };
        // Asked as the owner: the PDP decides, and the read is audited as the disclosure.
        let read = self
            .records
            .vread(
                &ctx,
                &change.resource_type,
                &change.id,
                &change.version.to_string(),
            )
            .await;
        let resource = match read {
            Ok(r) => r.resource,
            Err(
                RecordError::Forbidden
                | RecordError::NotFound
                | RecordError::Gone { .. }
                | RecordError::Erased,
            ) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let key = format!(
            "{}/{}/_history/{}",
            change.resource_type, change.id, change.version
        );
        let now = self.now();
        let Some(number) = self
            .store
            .subscription_event_number(&row.id, &key, now)
            .await?
        else {
            return Ok(false);
        };
        let event = Event {
            number,
            timestamp: change.last_updated,
            focus: Focus {
                resource_type: change.resource_type.clone(),
                id: change.id.clone(),
                created: change.version == 1,
                resource,
            },
        };
        let mut status = self.status_of(row, spec);
        status.events_since_start = number;
        self.queue(
            row,
            spec,
            &status,
            Kind::EventNotification,
            Some(&event),
            &key,
        )
        .await?;
        Ok(true)
    }

    async fn heartbeats(
        &self,
        live: &[(SubscriptionRow, Spec)],
        now: i64,
    ) -> Result<usize, SubscriptionError> {
        let mut queued = 0;
        for (row, spec) in live {
            let Some(period) = spec.heartbeat_seconds else {
                continue;
            };
            let Some(beats) = heartbeat_number(row.created_micros, now, period) else {
                continue;
            };
            let already = self.beats.lock().await.get(&row.id).copied();
            if row.status == "active" && already != Some(beats) {
                let status = self.status_of(row, spec);
                self.queue(
                    row,
                    spec,
                    &status,
                    Kind::Heartbeat,
                    None,
                    &format!("heartbeat/{beats}"),
                )
                .await?;
                self.beats.lock().await.insert(row.id.clone(), beats);
                queued += 1;
            }
        }
        Ok(queued)
    }
}

/// The number of the heartbeat due at `now` for a subscription written at `created` with a
/// period of `period_seconds`: one per whole period since it was written; `None` before
/// the first.
fn heartbeat_number(created: i64, now: i64, period_seconds: u64) -> Option<i64> {
    let period = i64::try_from(period_seconds)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000)
        .max(1);
    let beats = (now - created) / period;
    (beats >= 1).then_some(beats)
}

/// Delivers the hub's `rest-hook` channel: POSTs a queued bundle to its subscription's
/// endpoint with its headers, and keeps the subscription's status (`active` once a
/// notification is taken, `error` while they fail).
pub struct RestHookDelivery {
    records: Arc<RecordService>,
    store: Arc<dyn SubscriptionStore>,
    client: Arc<dyn RestHookClient>,
}

impl std::fmt::Debug for RestHookDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestHookDelivery").finish_non_exhaustive()
    }
}

impl RestHookDelivery {
    /// Delivery over `store`, sending through `client`; `records` opens the sealed bodies
    /// and tells the time.
    pub fn new(
        records: Arc<RecordService>,
        store: Arc<dyn SubscriptionStore>,
        client: Arc<dyn RestHookClient>,
    ) -> Self {
        Self {
            records,
            store,
            client,
        }
    }

    async fn subscription(&self, row: &NotificationOutboxRow) -> Option<(SubscriptionRow, Spec)> {
        let id = row.account.strip_prefix("Subscription/")?;
        let sub = self.store.subscription(id).await.ok()??;
        let spec = open_spec(&self.records, &sub).await.ok()?;
        Some((sub, spec))
    }
}

#[async_trait::async_trait]
impl ChannelDelivery for RestHookDelivery {
    async fn deliver(&self, row: &NotificationOutboxRow, body: &str) -> Result<(), SendError> {
        let Some((sub, spec)) = self.subscription(row).await else {
            return Err(SendError::Permanent("the subscription is gone".into()));
        };
        if sub.status == "off" {
            return Err(SendError::Permanent("the subscription is off".into()));
        }
        let sent = self
            .client
            .post(&spec.endpoint, &spec.headers, &spec.mime, body.as_bytes())
            .await;
        let now = self.records.core().now();
        let changed = match &sent {
            Ok(()) if sub.status != "active" => Some(("active", None)),
            Ok(()) => None,
            Err(SendError::Permanent(why) | SendError::Transient(why)) => {
                Some(("error", Some(why.as_str())))
            }
        };
        if let Some((status, why)) = changed
            && let Err(e) = self
                .store
                .subscription_set_status(&sub.id, status, why, now)
                .await
        {
            tracing::warn!(error = %e, "a subscription's status could not be kept");
        }
        sent
    }

    async fn given_up(&self, row: &NotificationOutboxRow) {
        if let Some(id) = row.account.strip_prefix("Subscription/") {
            let now = self.records.core().now();
            let why = "a notification was given up on after its attempts";
            if let Err(e) = self
                .store
                .subscription_set_status(id, "error", Some(why), now)
                .await
            {
                tracing::warn!(error = %e, "a subscription's status could not be kept");
            }
        }
    }
}

/// Reads the change feed for subscriptions forever: at once while there is work, else
/// every second.
pub async fn run(service: Arc<SubscriptionService>) {
    loop {
        let wait = match service.poll().await {
            Ok(n) if n > 0 => std::time::Duration::from_millis(50),
            Ok(_) => std::time::Duration::from_secs(1),
            Err(e) => {
                tracing::error!(error = %e, "the subscriptions could not read the change feed");
                std::time::Duration::from_secs(5)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::heartbeat_number;

    #[test]
    fn heartbeats_are_numbered_by_whole_periods() {
        let s = 1_000_000;
        assert_eq!(heartbeat_number(0, 59 * s, 60), None);
        assert_eq!(heartbeat_number(0, 60 * s, 60), Some(1));
        assert_eq!(heartbeat_number(0, 119 * s, 60), Some(1));
        assert_eq!(heartbeat_number(0, 120 * s, 60), Some(2));
        assert_eq!(heartbeat_number(10 * s, 5 * s, 60), None);
    }
}
