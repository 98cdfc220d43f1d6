//! Video visits on the record service.
//!
//! - **A room per video visit**: an Appointment whose `appointmentType` is ActCode `VR`.
//!   It opens ten minutes before the start and closes thirty minutes after the end, to the
//!   appointment's patient and its practitioners only ([`TelehealthService::ticket`]: the
//!   PDP reads the appointment as the caller first).
//! - **A waiting room**: a clinician joins at once; the patient waits until a clinician
//!   admits them.
//! - **Signalling**: the node relays WebRTC offers, answers and candidates between the
//!   admitted peers of a room ([`TelehealthService::handle`]); the media go browser to
//!   browser, through the configured TURN servers when asked (relay only), with short-lived
//!   credentials in the TURN REST API scheme ([`room::turn_credentials`]). Nothing is
//!   recorded.
//! - **The record of the visit**: an Encounter (class `VR`) with its start, its end and the
//!   practitioners who took part, written and audited as the admitting clinician.
//!
//! Rooms live in the process: a visit's parties must reach the same replica (route by the
//! appointment). The rules with no I/O are in [`room`].

pub mod room;
mod service;

pub use service::{IceSettings, Joined, MAX_PEERS, MAX_SIGNAL, Role, TelehealthService, Ticket};
