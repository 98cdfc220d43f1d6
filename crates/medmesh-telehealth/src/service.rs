//! The video-visit service: tickets (the PDP reads the appointment as the caller; its
//! patient and practitioners only, while the room is open), the rooms in this process
//! (admitted peers, the waiting room), the signalling relayed between peers, and the visit's
//! Encounter, written as the admitting clinician and audited with its data.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use medmesh_audit::Outcome;
use medmesh_kernel::RequestContext;
use medmesh_policy::Action;
use medmesh_records::{RecordError, RecordService};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::room::{Closed, check_open, encounter, finished, people, turn_credentials};

/// The largest signalling message a peer may send, bytes.
pub const MAX_SIGNAL: usize = 64 * 1024;
/// The most people in one room at once (admitted and waiting).
pub const MAX_PEERS: usize = 8;

/// Where browsers find their way to each other.
#[derive(Clone, Default)]
pub struct IceSettings {
    /// STUN server URLs.
    pub stun: Vec<String>,
    /// TURN server URLs.
    pub turn: Vec<String>,
    /// The TURN servers' shared secret.
    pub turn_secret: Option<String>,
    /// How long TURN credentials last, seconds.
    pub ttl_secs: u64,
    /// TURN only (`iceTransportPolicy: relay`).
    pub relay_only: bool,
}

impl std::fmt::Debug for IceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceSettings")
            .field("stun", &self.stun)
            .field("turn", &self.turn)
            .field(
                "turn_secret",
                &self.turn_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("ttl_secs", &self.ttl_secs)
            .field("relay_only", &self.relay_only)
            .finish()
    }
}

/// Who a peer is in the visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// One of the appointment's practitioners: joins at once, admits the patient.
    Clinician,
    /// The appointment's patient: waits until admitted.
    Patient,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Self::Clinician => "clinician",
            Self::Patient => "patient",
        }
    }
}

/// A caller's admission to one visit's room: issued only by [`TelehealthService::ticket`],
/// after the PDP let them read the appointment and they were found among its people.
#[derive(Clone)]
pub struct Ticket {
    /// The Appointment's id (the room's).
    pub appointment: String,
    /// The caller's reference.
    pub me: String,
    /// The caller's name.
    pub name: String,
    /// Their role.
    pub role: Role,
    /// The patient's id.
    pub patient: String,
    /// The appointment's practitioners.
    pub practitioners: Vec<String>,
    ctx: RequestContext,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("appointment", &self.appointment)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

struct Peer {
    who: String,
    name: String,
    role: Role,
    tx: mpsc::UnboundedSender<String>,
}

struct Visit {
    id: String,
    version: i64,
    joined: Vec<String>,
    ctx: RequestContext,
    body: Value,
}

#[derive(Default)]
struct Room {
    admitted: HashMap<u64, Peer>,
    waiting: HashMap<u64, Peer>,
    visit: Option<Visit>,
    /// A visit's Encounter is being written: a second admission waits for it.
    starting: bool,
}

/// A peer's connection to a room: its id and what the room sends it.
#[derive(Debug)]
pub struct Joined {
    /// The peer's id in the room.
    pub peer: u64,
    /// The room's messages to it (JSON text).
    pub rx: mpsc::UnboundedReceiver<String>,
}

/// Video visits.
pub struct TelehealthService {
    records: Arc<RecordService>,
    ice: IceSettings,
    rooms: Mutex<HashMap<String, Room>>,
    next_peer: AtomicU64,
}

impl std::fmt::Debug for TelehealthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelehealthService")
            .field("ice", &self.ice)
            .finish_non_exhaustive()
    }
}

/// A FHIR instant of microseconds since the epoch.
fn instant(micros: i64) -> String {
    medmesh_fhir::datetime::format_instant(micros)
}

fn send(peer: &Peer, message: &Value) {
    // A peer whose connection has gone is removed by its own leave.
    let _ = peer.tx.send(message.to_string());
}

impl TelehealthService {
    /// The service over `records`, telling browsers of `ice`.
    pub fn new(records: Arc<RecordService>, ice: IceSettings) -> Self {
        Self {
            records,
            ice,
            rooms: Mutex::new(HashMap::new()),
            next_peer: AtomicU64::new(1),
        }
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<String, Room>> {
        match self.rooms.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A caller's ticket to the room of appointment `id`: the PDP must let them read the
    /// appointment, it must be a video visit whose room is open now (ten minutes before its
    /// start until thirty after its end), and they must be its patient or one of its
    /// practitioners.
    ///
    /// # Errors
    /// [`RecordError::NotFound`] for an appointment the caller cannot read or is not in;
    /// [`RecordError::Invalid`] (in words) when the room is not open.
    pub async fn ticket(&self, ctx: &RequestContext, id: &str) -> Result<Ticket, RecordError> {
        let appointment = self.records.read(ctx, "Appointment", id).await?.resource;
        let (patient, practitioners) = people(&appointment);
        let me = if let Some(c) = ctx.actor().clinician() {
            c.practitioner.clone()
        } else if let Some(p) = ctx.actor().patient() {
            format!("Patient/{p}")
        } else {
            return Err(RecordError::NotFound);
        };
        let role = if practitioners.contains(&me) {
            Role::Clinician
        } else if patient.as_deref().map(|p| format!("Patient/{p}")) == Some(me.clone()) {
            Role::Patient
        } else {
            // Not in the appointment: the room is not theirs, whatever else they may read.
            return Err(RecordError::NotFound);
        };
        let Some(patient) = patient else {
            return Err(RecordError::rule("this appointment has no patient"));
        };
        match check_open(&appointment, self.records.core().now()) {
            Ok(()) => {}
            Err(Closed::TooEarly(opens)) => {
                return Err(RecordError::rule(format!(
                    "the room opens ten minutes before the visit, at {}",
                    instant(opens)
                )));
            }
            Err(e) => return Err(RecordError::rule(e.to_string())),
        }
        let name = match me.split_once('/') {
            Some((rt, pid)) => self
                .records
                .read(ctx, rt, pid)
                .await
                .ok()
                .and_then(|f| medmesh_fhir::names::human_name(&f.resource)),
            None => None,
        }
        .unwrap_or_else(|| me.clone());
        Ok(Ticket {
            appointment: id.to_string(),
            me,
            name,
            role,
            patient,
            practitioners,
            ctx: ctx.clone(),
        })
    }

    /// The `RTCPeerConnection` configuration for a ticket's browser: the STUN servers, the
    /// TURN servers with credentials of their own (a random user id: the TURN server learns
    /// no name), and the transport policy.
    pub fn ice_config(&self, _ticket: &Ticket) -> Value {
        let mut servers = Vec::new();
        if !self.ice.stun.is_empty() {
            servers.push(json!({"urls": self.ice.stun}));
        }
        if let (false, Some(secret)) = (self.ice.turn.is_empty(), &self.ice.turn_secret) {
            let user = self.records.core().ids().new_id();
            let now_secs = self.records.core().now() / 1_000_000;
            let (username, credential) =
                turn_credentials(secret, &user, self.ice.ttl_secs, now_secs);
            servers.push(
                json!({"urls": self.ice.turn, "username": username, "credential": credential}),
            );
        }
        json!({
            "iceServers": servers,
            "iceTransportPolicy": if self.ice.relay_only { "relay" } else { "all" },
        })
    }

    /// Enters the room with `ticket`: a clinician is admitted at once (the others are told,
    /// and they are told who waits); a patient waits until a clinician admits them.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] when the room is full.
    pub fn join(&self, ticket: &Ticket) -> Result<Joined, RecordError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let peer = self.next_peer.fetch_add(1, Ordering::Relaxed);
        let me = Peer {
            who: ticket.me.clone(),
            name: ticket.name.clone(),
            role: ticket.role,
            tx,
        };
        let mut rooms = self.rooms();
        let room = rooms.entry(ticket.appointment.clone()).or_default();
        if room.admitted.len() + room.waiting.len() >= MAX_PEERS {
            return Err(RecordError::rule("this visit's room is full"));
        }
        match ticket.role {
            Role::Clinician => {
                send(
                    &me,
                    &json!({"type": "welcome", "peer": peer, "role": "clinician", "admitted": true}),
                );
                let waiting: Vec<Value> = room
                    .waiting
                    .iter()
                    .map(|(id, p)| json!({"peer": id, "name": p.name}))
                    .collect();
                send(&me, &json!({"type": "waiting", "people": waiting}));
                for other in room.admitted.values() {
                    send(
                        other,
                        &json!({"type": "peer-joined", "peer": peer, "name": me.name, "role": "clinician"}),
                    );
                }
                room.admitted.insert(peer, me);
            }
            Role::Patient => {
                send(
                    &me,
                    &json!({"type": "welcome", "peer": peer, "role": "patient", "admitted": false}),
                );
                for other in room.admitted.values().filter(|p| p.role == Role::Clinician) {
                    send(
                        other,
                        &json!({"type": "knock", "peer": peer, "name": me.name}),
                    );
                }
                room.waiting.insert(peer, me);
            }
        }
        Ok(Joined { peer, rx })
    }

    /// Handles one message from peer `peer`: `signal` (`to`, `data`: an offer, an answer
    /// or a candidate, relayed as is to an admitted peer), `admit` (`peer`: a clinician lets
    /// a waiting patient in; the visit's Encounter begins with the first), `leave`.
    ///
    /// # Errors
    /// [`RecordError::Invalid`] for a message that is not one of these, or a patient who
    /// admits; store failures writing the Encounter.
    pub async fn handle(&self, ticket: &Ticket, peer: u64, text: &str) -> Result<(), RecordError> {
        if text.len() > MAX_SIGNAL {
            return Err(RecordError::rule("a signalling message is at most 64 KiB"));
        }
        let message: Value = serde_json::from_str(text)
            .map_err(|_| RecordError::rule("a signalling message is JSON"))?;
        match message["type"].as_str() {
            Some("signal") => {
                let to = message["to"]
                    .as_u64()
                    .ok_or_else(|| RecordError::rule("signal: to"))?;
                let rooms = self.rooms();
                let room = rooms.get(&ticket.appointment);
                let (Some(from), Some(target)) = (
                    room.and_then(|r| r.admitted.get(&peer)),
                    room.and_then(|r| r.admitted.get(&to)),
                ) else {
                    // Not admitted yet, or the other has left: nothing is relayed.
                    return Ok(());
                };
                let _ = from; // Only an admitted peer signals.
                send(
                    target,
                    &json!({"type": "signal", "from": peer, "data": message["data"]}),
                );
                Ok(())
            }
            Some("admit") => {
                if ticket.role != Role::Clinician {
                    return Err(RecordError::rule("the clinician admits the patient"));
                }
                let who = message["peer"]
                    .as_u64()
                    .ok_or_else(|| RecordError::rule("admit: peer"))?;
                let start = {
                    let mut rooms = self.rooms();
                    let Some(room) = rooms.get_mut(&ticket.appointment) else {
                        return Ok(());
                    };
                    if !room.admitted.contains_key(&peer) {
                        return Ok(());
                    }
                    let Some(patient) = room.waiting.remove(&who) else {
                        return Ok(());
                    };
                    send(&patient, &json!({"type": "admitted"}));
                    for other in room.admitted.values() {
                        send(
                            other,
                            &json!({"type": "peer-joined", "peer": who, "name": patient.name, "role": patient.role.as_str()}),
                        );
                    }
                    room.admitted.insert(who, patient);
                    let start = room.visit.is_none() && !room.starting;
                    if start {
                        room.starting = true;
                    }
                    start
                };
                if start {
                    self.start_visit(ticket).await?;
                }
                Ok(())
            }
            Some("leave") => {
                self.leave(ticket, peer).await;
                Ok(())
            }
            _ => Err(RecordError::rule(
                "a signalling message is signal, admit or leave",
            )),
        }
    }

    /// Writes the visit's Encounter (in progress), as the admitting clinician.
    async fn start_visit(&self, ticket: &Ticket) -> Result<(), RecordError> {
        let core = self.records.core();
        let id = core.ids().new_id();
        let clinicians: Vec<String> = {
            let rooms = self.rooms();
            rooms
                .get(&ticket.appointment)
                .map(|r| {
                    r.admitted
                        .values()
                        .filter(|p| p.role == Role::Clinician)
                        .map(|p| p.who.clone())
                        .collect()
                })
                .unwrap_or_default()
        };
        let body = encounter(
            &id,
            &ticket.appointment,
            &ticket.patient,
            &clinicians,
            &instant(core.now()),
        );
        let written = self
            .write(
                &ticket.ctx,
                &id,
                body.clone(),
                None,
                "telehealth-start",
                &ticket.patient,
            )
            .await;
        let mut rooms = self.rooms();
        let room = rooms.entry(ticket.appointment.clone()).or_default();
        room.starting = false;
        let version = written?;
        room.visit = Some(Visit {
            id,
            version,
            joined: clinicians,
            ctx: ticket.ctx.clone(),
            body,
        });
        Ok(())
    }

    async fn write(
        &self,
        ctx: &RequestContext,
        id: &str,
        body: Value,
        version: Option<i64>,
        action: &str,
        patient: &str,
    ) -> Result<i64, RecordError> {
        let core = self.records.core();
        core.check_resource("Encounter", &body)?;
        let grant = core
            .authorize(
                ctx,
                if version.is_some() {
                    Action::Update
                } else {
                    Action::Create
                },
                Some("Encounter"),
            )
            .await?;
        let mut tx = core.begin_write().await?;
        let head = tx.head("Encounter", id).await?;
        if head.as_ref().map(|h| h.version) != version {
            return Err(RecordError::Conflict(
                "the visit's Encounter changed".into(),
            ));
        }
        let out = core
            .write_version(ctx, &mut tx, &grant, "Encounter", id, body, head)
            .await?;
        let mut entry = core.entry(
            ctx,
            action,
            Some("Encounter"),
            vec![id.to_string()],
            Outcome::Success,
        );
        entry.patients = vec![patient.to_string()];
        core.annotate(&mut entry, &grant);
        tx.append_audit(&entry).await?;
        tx.commit().await?;
        Ok(out.version)
    }

    /// Peer `peer` leaves (or its connection closed): the others are told; when the last
    /// admitted peer has left, the visit's Encounter is finished with everyone who took part.
    pub async fn leave(&self, ticket: &Ticket, peer: u64) {
        let finish = {
            let mut rooms = self.rooms();
            let Some(room) = rooms.get_mut(&ticket.appointment) else {
                return;
            };
            let was_admitted = room.admitted.remove(&peer);
            room.waiting.remove(&peer);
            if was_admitted.is_some() {
                for other in room.admitted.values() {
                    send(other, &json!({"type": "peer-left", "peer": peer}));
                }
            }
            // Practitioners who joined after the start took part too.
            if let Some(v) = room.visit.as_mut() {
                for p in room.admitted.values().filter(|p| p.role == Role::Clinician) {
                    if !v.joined.contains(&p.who) {
                        v.joined.push(p.who.clone());
                    }
                }
            }
            let finish = if room.admitted.is_empty() {
                room.visit.take()
            } else {
                None
            };
            if room.admitted.is_empty() && room.waiting.is_empty() && !room.starting {
                rooms.remove(&ticket.appointment);
            }
            finish
        };
        if let Some(v) = finish {
            let core = self.records.core();
            let body = finished(v.body, &v.joined, &instant(core.now()));
            if let Err(e) = self
                .write(
                    &v.ctx,
                    &v.id,
                    body,
                    Some(v.version),
                    "telehealth-end",
                    &ticket.patient,
                )
                .await
            {
                // The visit stays "in progress" in the record; the operator sees why here.
                tracing::error!(error = %e, "the visit's Encounter could not be finished");
            }
        }
    }

    /// How many peers are in a room now (admitted, waiting): for tests and status.
    pub fn occupancy(&self, appointment: &str) -> (usize, usize) {
        self.rooms()
            .get(appointment)
            .map_or((0, 0), |r| (r.admitted.len(), r.waiting.len()))
    }
}
