//! Medications: what a prescription's status and intent allow ([`status`]), when its doses
//! fall ([`schedule`]: FHIR `Dosage.timing` in the patient's time zone, across
//! daylight-saving changes), how well it is kept ([`adherence`]: the proportion of days
//! covered by dispenses, and the share of doses taken on time), the checks at prescribing
//! time ([`safety`], and [`knowledge`]: drug-drug interactions from the ONC high-priority
//! list that ships with the node, and dose limits from files a deployment loads) and what a
//! prescriber signs ([`prescription`]). These are pure: no I/O,
//! no clock.
//!
//! [`service::MedicationService`] is the application on the record service: it prescribes
//! (with the checks and their overrides as DetectedIssues), activates a prescription only
//! with its prescriber's signature, and moves it through its lifecycle, every step through
//! the PDP and the audit log.

pub mod adherence;
pub mod alerts;
pub mod channel;
pub mod dispensing;
pub mod doses;
pub mod external;
pub mod knowledge;
pub mod pharmacy;
pub mod prescription;
pub mod printable;
pub mod refills;
pub mod reminders;
pub mod safety;
pub mod schedule;
pub mod service;
pub mod status;

pub use knowledge::KnowledgeBase;
pub use pharmacy::{PharmacyChoice, QueueItem};
pub use service::{
    MedicationAccounts, MedicationService, Override, Prescribed, Signature, Warning,
};
