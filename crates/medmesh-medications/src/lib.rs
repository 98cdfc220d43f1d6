//! Medications, the domain: what a prescription's status and intent allow
//! ([`status`]), when its doses fall ([`schedule`]: FHIR `Dosage.timing` in the patient's
//! time zone, across daylight-saving changes), and how well it is kept ([`adherence`]: the
//! proportion of days covered by dispenses, and the share of doses taken on time).
//!
//! Pure: no I/O, no clock. The application service that prescribes, dispenses and logs
//! doses through the record service builds on these (issue 19).

pub mod adherence;
pub mod safety;
pub mod schedule;
pub mod status;
