//! Booked and held time: what keeps two appointments out of one practitioner's hour.
//!
//! A booking claims its interval (with the buffer after it) on each calendar it needs (a
//! practitioner, or a schedule with no practitioner; a patient's day when the organization
//! allows one booking a day) in two steps:
//!
//! 1. **claim**, provisionally and briefly, in a transaction of its own that does nothing
//!    else: it locks each calendar, so concurrent claims on one calendar, on one node or on
//!    several nodes over one database, are judged one after the other, and at most one of
//!    two overlapping claims succeeds. The lock is held only for those few statements, never
//!    while the transaction waits for anything else;
//! 2. **confirm**, in the transaction that stores the Appointment: the provisional claim
//!    becomes the appointment's (replacing the time it had, when it is moved). A crash
//!    between the two leaves a provisional claim that lapses on its own.
//!
//! The rows name no patient: a calendar is a practitioner or schedule reference, or a
//! patient's blind tag, and the holder is an Appointment id.

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

/// The holder of `holder`'s provisional claims, until they are confirmed.
pub fn provisional(holder: &str) -> String {
    format!("{holder}~provisional")
}

/// Claims on time, in a transaction.
#[async_trait]
pub trait BookingTx: Send {
    /// Claims `claims` (all for `holder`, each with the provisional claim's end as its
    /// `expires_micros`) provisionally for `holder`, replacing any provisional claim it had,
    /// unless another holder's live claim (booked, or held past `now`) overlaps one of them:
    /// then nothing is claimed and the result is false. `holder`'s own claims (the time an
    /// appointment being moved has now) do not count. Calendars are locked in order; commit
    /// (or roll back) at once, doing nothing else in the transaction.
    async fn claim_time(
        &mut self,
        holder: &str,
        claims: &[TimeClaim],
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Makes `holder`'s live provisional claims its own, ending at `expires` (`None`:
    /// booked), in place of the claims it had. False when there were none live (they
    /// lapsed): then nothing changed.
    async fn confirm_time(
        &mut self,
        holder: &str,
        expires: Option<i64>,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Releases every claim held by `holder` (an appointment's, or a [`provisional`] one).
    /// Returns how many there were.
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
