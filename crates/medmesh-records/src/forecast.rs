//! Writes prepared before the write lock.
//!
//! A transaction Bundle's new resources cost most of their time in work that needs no lock:
//! labels and sharing tags, the stamp, index extraction, serialization, sealing and blind
//! index tokens. Done under the lock, that work ran on one core while imports of other files
//! waited (the import regression of issue 14). So before taking the lock, a transaction
//! *forecasts* its writes: it assigns ids, matches its conditional criteria and reads the
//! heads of its targets through the pool, and prepares each new resource completely, on
//! whatever core its task runs on.
//!
//! Under the lock it does what it always did (matches conditions, reads heads), and uses a
//! prepared version only if everything it was made from still holds:
//! - every conditional matched the same ids, so ids and references are the same;
//! - the resource still has no head, so it is still version 1;
//! - the consent generation is unchanged, so the consents behind the sharing tags are too;
//! - every stored `lastUpdated` is older than the forecast's, so time still follows commit
//!   order;
//! - the owner's data key is the one the transaction would seal with.
//!
//! Otherwise the entry is prepared again under the lock, as before. The result is the same
//! either way; only where the work runs differs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use medmesh_at_rest::{PreparedKey, WriteTx, body_context};
use medmesh_fhir::index::IndexRow;
use medmesh_policy::consent::ConsentRule;
use medmesh_policy::{Action, Grant};
use medmesh_store::PageRequest;
use serde_json::Value;

use crate::RecordService;
use crate::context::RequestContext;
use crate::error::RecordError;

/// A version made before the write lock: the final body and what is stored for it.
pub(crate) struct PreparedVersion {
    /// The body as written: labelled, tagged, stamped.
    pub body: Value,
    /// The stored bytes (sealed when encryption at rest is on).
    pub stored: Vec<u8>,
    /// The index rows (blinded when encryption at rest is on).
    pub index: Vec<IndexRow>,
    /// The version it was stamped as.
    pub version: i64,
    /// The `lastUpdated` it was stamped with, microseconds.
    pub now: i64,
    /// The data key it was sealed under (`None`: stored in clear).
    pub sealed_under: Option<Arc<PreparedKey>>,
}

/// Counts of prepared versions: used as prepared, or prepared again under the lock because
/// what they were made from had changed.
#[derive(Debug, Default)]
pub(crate) struct ForecastCounts {
    used: AtomicU64,
    redone: AtomicU64,
}

impl ForecastCounts {
    pub(crate) fn used(&self, n: u64) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn redone(&self, n: u64) {
        self.redone.fetch_add(n, Ordering::Relaxed);
    }
}

/// Versions prepared before the write lock, since the service started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PreparedWrites {
    /// Written as prepared.
    pub used: u64,
    /// Prepared again under the lock, because a condition, a head, a consent, the clock or a
    /// data key had changed since.
    pub redone: u64,
}

impl RecordService {
    /// How many versions prepared before the write lock were used or redone (see
    /// the transactions of [`crate::bundle`]); `medmesh import` reports it.
    pub fn prepared_writes(&self) -> PreparedWrites {
        PreparedWrites {
            used: self.forecasts.used.load(Ordering::Relaxed),
            redone: self.forecasts.redone.load(Ordering::Relaxed),
        }
    }
}

/// Where conditional criteria are matched.
pub(crate) enum Matcher<'t> {
    /// Through the pool, before the write lock (a forecast).
    Outside,
    /// In the write transaction.
    Inside(&'t mut WriteTx),
}

/// The ids a transaction's entries get and what their references resolve to.
#[derive(Debug, Default)]
pub(crate) struct IdPlan {
    /// POSTs whose `ifNoneExist` matched a resource: its id.
    pub existing: HashMap<usize, String>,
    /// The id of each POST.
    pub post_ids: HashMap<usize, String>,
    /// The id of each PUT.
    pub put_ids: HashMap<usize, String>,
    /// `fullUrl`s and conditional references, to `Type/id`.
    pub id_map: HashMap<String, String>,
    /// Every conditional asked (`Type?query`) and the ids it matched, in order. Two plans
    /// made with the same fresh ids are equal when these are.
    pub asked: Vec<(String, Vec<String>)>,
}

/// Keeps `lastUpdated` in commit order when writes are stamped before the lock. A forecast
/// takes a ticket with its time; the transactions holding tickets then take the write lock
/// in ticket order, each after the one before it has committed (or given up). So a client
/// that reads history `_since` the newest time it saw never misses a version committed
/// later with an earlier time. Writes without a forecast stamp under the lock as before; a
/// forecast older than the newest stored time is dropped there (`forecast_holds`).
#[derive(Debug)]
pub(crate) struct StampQueue {
    state: std::sync::Mutex<QueueState>,
    serving: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct QueueState {
    next: u64,
    serving: u64,
    /// Tickets given up before their turn, skipped when it comes.
    skipped: std::collections::BTreeSet<u64>,
}

impl Default for StampQueue {
    fn default() -> Self {
        Self {
            state: std::sync::Mutex::new(QueueState::default()),
            serving: tokio::sync::watch::Sender::new(0),
        }
    }
}

/// A place in the [`StampQueue`] and the time to stamp with. Dropping it lets the next
/// ticket go: after commit, or when the transaction gives up.
#[derive(Debug)]
pub(crate) struct StampTicket {
    queue: Arc<StampQueue>,
    number: u64,
    /// The `lastUpdated` of the versions prepared under this ticket, microseconds.
    pub now: i64,
}

impl StampQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // The state is a few integers, consistent after every statement: a panic elsewhere
        // cannot leave it half-changed, so a poisoned lock is still good.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next ticket, stamped with `now()` read while holding the queue: tickets are
    /// numbered in the order of their times.
    pub(crate) fn take(self: &Arc<Self>, now: impl FnOnce() -> i64) -> StampTicket {
        let mut state = self.lock();
        let number = state.next;
        state.next += 1;
        let now = now();
        drop(state);
        StampTicket {
            queue: self.clone(),
            number,
            now,
        }
    }
}

impl StampTicket {
    /// Waits until every earlier ticket has committed or given up.
    pub(crate) async fn turn(&self) {
        let mut serving = self.queue.serving.subscribe();
        // The sender lives in the queue this ticket holds, so the wait cannot fail.
        let _ = serving.wait_for(|s| *s >= self.number).await;
    }
}

impl Drop for StampTicket {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        if state.serving == self.number {
            state.serving += 1;
            loop {
                let next = state.serving;
                if !state.skipped.remove(&next) {
                    break;
                }
                state.serving += 1;
            }
            let serving = state.serving;
            drop(state);
            self.queue.serving.send_replace(serving);
        } else {
            state.skipped.insert(self.number);
        }
    }
}

/// A transaction's writes, prepared before the write lock.
pub(crate) struct Forecast {
    /// Its place in the stamp queue; hold it until the transaction commits.
    /// It also holds the `lastUpdated` of every prepared version.
    pub ticket: StampTicket,
    /// The consent generation the sharing tags were worked out under.
    pub generation: i64,
    /// The id each entry gets if it creates (POST, or a conditional PUT that matches
    /// nothing and names no id).
    pub fresh_ids: HashMap<usize, String>,
    /// The conditionals the forecast asked and what they matched.
    pub asked: Vec<(String, Vec<String>)>,
    /// Prepared versions, by entry index.
    pub versions: HashMap<usize, PreparedVersion>,
}

/// One entry of a forecast's input: what the transaction knows of it before the lock.
pub(crate) struct Planned<'a> {
    /// The entry's index in the Bundle.
    pub index: usize,
    /// Whether it is a POST (else a PUT).
    pub is_post: bool,
    /// The resource type.
    pub rt: &'a str,
    /// The id in the request URL (a PUT to `Type/id`).
    pub url_id: Option<&'a str>,
    /// The resource, with references not yet rewritten.
    pub resource: &'a Value,
}

impl RecordService {
    /// Ids matching a conditional, inside the transaction or through the pool.
    pub(crate) async fn matches_for(
        &self,
        matcher: &mut Matcher<'_>,
        grant: &Grant,
        rt: &str,
        query: &str,
    ) -> Result<Vec<String>, RecordError> {
        match matcher {
            Matcher::Inside(tx) => self.conditional_matches(tx, grant, rt, query).await,
            Matcher::Outside => {
                let q = self.conditional_search(grant, rt, query)?;
                let page = PageRequest {
                    count: 2,
                    cursor: None,
                    with_total: false,
                    snapshot: false,
                };
                Ok(self
                    .store
                    .search(&q, &page)
                    .await?
                    .matches
                    .into_iter()
                    .map(|(_, id)| id)
                    .collect())
            }
        }
    }

    /// Prepares the new resources of `planned` (POSTs and PUTs, references not yet
    /// rewritten), given the plan the forecast made for them. `None` when there is nothing
    /// worth preparing or a read failed: the transaction then does all its work under the
    /// lock, and meets any such failure there.
    pub(crate) async fn prepare_versions(
        &self,
        ctx: &RequestContext,
        grants: &HashMap<(String, Action), Grant>,
        planned: &[Planned<'_>],
        plan: &IdPlan,
        fresh_ids: HashMap<usize, String>,
        generation: i64,
    ) -> Option<Forecast> {
        let ticket = self.stamps.take(|| self.now());
        let now = ticket.now;
        let mut targets = Vec::new();
        for p in planned {
            if p.is_post && plan.existing.contains_key(&p.index) {
                continue;
            }
            let id = if p.is_post {
                plan.post_ids.get(&p.index)
            } else {
                plan.put_ids.get(&p.index)
            }?;
            targets.push((p, id.clone()));
        }
        if targets.is_empty() {
            return None;
        }
        // A PUT to a resource that exists writes a later version (or nothing, if identical):
        // only new resources are prepared.
        let put_keys: Vec<(String, String)> = targets
            .iter()
            .filter(|(p, _)| !p.is_post)
            .map(|(p, id)| (p.rt.to_string(), id.clone()))
            .collect();
        let existing: HashSet<(String, String)> = if put_keys.is_empty() {
            HashSet::new()
        } else {
            self.store
                .read_many(&put_keys)
                .await
                .ok()?
                .into_iter()
                .map(|v| (v.resource_type, v.id))
                .collect()
        };
        let mut consents: HashMap<Vec<String>, Vec<Arc<ConsentRule>>> = HashMap::new();
        let mut keys: HashMap<String, Arc<PreparedKey>> = HashMap::new();
        let mut versions = HashMap::new();
        for (p, id) in targets {
            if !p.is_post && existing.contains(&(p.rt.to_string(), id.clone())) {
                continue;
            }
            // Same permission check as under the lock; a refusal is met and audited there.
            let action = if p.is_post {
                Action::Create
            } else {
                Action::Update
            };
            if !grants.contains_key(&(p.rt.to_string(), action)) {
                return None;
            }
            let mut body = p.resource.clone();
            crate::bundle::rewrite_references(&mut body, &plan.id_map);
            if !p.is_post
                && let Some(o) = body.as_object_mut()
            {
                if p.url_id.is_some() && o.get("id").and_then(Value::as_str) != Some(id.as_str()) {
                    // The lock path refuses this entry; nothing to prepare.
                    return None;
                }
                o.insert("id".into(), Value::String(id.clone()));
            }
            let owners = self.compartment_owners(p.rt, &body);
            let rules = match consents.get(&owners) {
                Some(c) => c.clone(),
                None => {
                    let c = self.sharing_consents(&owners).await.ok()?;
                    consents.insert(owners.clone(), c.clone());
                    c
                }
            };
            self.label_and_share(ctx, p.rt, &mut body, &owners, &rules, now);
            let (json, index) = self.stamp_and_index(&id, 1, now, &mut body).ok()?;
            let (stored, index, sealed_under) = match &self.at_rest {
                Some(a) => {
                    let owner = self.key_owner(p.rt, &body);
                    let key = match keys.get(&owner) {
                        Some(k) => k.clone(),
                        None => {
                            let k = Arc::new(a.key_for_prepared(&owner).await.ok()?);
                            keys.insert(owner, k.clone());
                            k
                        }
                    };
                    let sealed = a.seal_prepared(&key, &body_context(p.rt, &id, 1), &json);
                    (sealed, a.blind_index().blind_rows(p.rt, index), Some(key))
                }
                None => (json, index, None),
            };
            versions.insert(
                p.index,
                PreparedVersion {
                    body,
                    stored,
                    index,
                    version: 1,
                    now,
                    sealed_under,
                },
            );
        }
        Some(Forecast {
            ticket,
            generation,
            fresh_ids,
            asked: plan.asked.clone(),
            versions,
        })
    }

    /// Whether a forecast still holds under the lock, given the conditionals the
    /// transaction asked there (see the module docs).
    pub(crate) async fn forecast_holds(
        &self,
        tx: &mut WriteTx,
        forecast: &Forecast,
        asked: &[(String, Vec<String>)],
    ) -> Result<bool, RecordError> {
        if forecast.asked != asked {
            return Ok(false);
        }
        let fresh = tx.freshness().await?;
        Ok(fresh.consent_generation == forecast.generation
            && fresh.latest_stamp < forecast.ticket.now)
    }
}
