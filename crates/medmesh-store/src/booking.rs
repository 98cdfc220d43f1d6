//! Booked and held time: what keeps two appointments out of one practitioner's hour.
//!
//! A booking claims its interval (with the buffer after it) on each calendar it needs (a
//! practitioner, or a schedule with no practitioner; a patient's day when the organization
//! allows one booking a day) inside the write transaction that stores the Appointment. The
//! claim locks each calendar first, so concurrent claims on one calendar, on one node or on
//! several nodes over one database, are judged one after the other, and at most one of two
//! overlapping claims succeeds. The rows name no patient: a calendar is a practitioner or
//! schedule reference, or a patient's blind tag, and the holder is an Appointment id.

use async_trait::async_trait;

use crate::StoreError;

/// A claim on one calendar's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeClaim {
    /// The calendar: `Practitioner/x`, `Schedule/s`, or a patient's day tag.
    pub calendar: String,
    /// Who holds it: the Appointment's id.
    pub holder: String,
    /// Start, microseconds since the epoch.
    pub start_micros: i64,
    /// End (exclusive), microseconds, the buffer after the visit included.
    pub end_micros: i64,
    /// When a hold lapses, microseconds; `None` once booked.
    pub expires_micros: Option<i64>,
}

/// Claimed time as the free-time search sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedTime {
    /// The calendar.
    pub calendar: String,
    /// Start, microseconds.
    pub start_micros: i64,
    /// End, microseconds.
    pub end_micros: i64,
}

/// Claims on time, in the transaction that writes the appointment.
#[async_trait]
pub trait BookingTx: Send {
    /// Replaces `holder`'s claims with `claims` (all for that holder), unless another holder's
    /// live claim (booked, or held until after `now`) overlaps one of them: then nothing is
    /// claimed and the result is false. Calendars are locked in order, so concurrent claims
    /// are judged one after the other; the caller rolls back on false.
    async fn claim_time(
        &mut self,
        holder: &str,
        claims: &[TimeClaim],
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Releases every claim of `holder` (a cancelled or lapsed appointment). Returns how
    /// many there were.
    async fn release_time(&mut self, holder: &str) -> Result<u64, StoreError>;
}

/// Reading claimed time, outside a transaction.
#[async_trait]
pub trait BookingStore: Send + Sync + 'static {
    /// Live claims on `calendars` overlapping `[from, to)` at `now`.
    async fn claimed_time(
        &self,
        calendars: &[String],
        from: i64,
        to: i64,
        now: i64,
    ) -> Result<Vec<ClaimedTime>, StoreError>;
    /// `holder`'s live claims at `now`.
    async fn claims_of(&self, holder: &str, now: i64) -> Result<Vec<TimeClaim>, StoreError>;
}
