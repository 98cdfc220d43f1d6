//! Device data pulled from a site that holds it (a patient's Nightscout), behind ports:
//! the adapter ([`RemoteConnector`], in `medmesh-nightscout`) fetches a window at a time as
//! a document in one of the formats the readers know, and the service imports each window
//! like an uploaded file (the PDP, the seal, the audit and the Provenance apply unchanged;
//! overlapping pulls add nothing twice).

use std::collections::BTreeSet;
use std::io::Cursor;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use medmesh_device_import::Format;
use medmesh_fhir::IssueType;
use medmesh_kernel::RequestContext;
use medmesh_records::RecordError;

use crate::service::{DeviceDataService, DeviceError, FileReport, day_start};

/// Days fetched and imported at a time: a week of 1-minute data is 10,080 entries.
pub const PULL_WINDOW_DAYS: i64 = 7;

/// Days a pull reaches back when no start is given.
pub const PULL_DEFAULT_DAYS: i64 = 90;

/// A pull's period: `start` and `end` as for [`crate::period`], but the last
/// [`PULL_DEFAULT_DAYS`] days by default.
///
/// # Errors
/// As [`crate::period`].
pub fn pull_period(
    start: Option<&str>,
    end: Option<&str>,
    zone: &TimeZone,
    now: Timestamp,
) -> Result<(Timestamp, Timestamp), DeviceError> {
    let given = start.is_some_and(|s| !s.trim().is_empty());
    let (from, end) = crate::period(start, end, zone, now)?;
    if given {
        return Ok((from, end));
    }
    // At most 400 days either way, so the default needs no second check.
    Ok((
        end - SignedDuration::from_hours(24 * PULL_DEFAULT_DAYS),
        end,
    ))
}

/// How the caller proves to the site they may read it. Never stored, never logged.
#[derive(Clone)]
pub enum RemoteCredential {
    /// The site is readable without one.
    None,
    /// Nightscout's `API_SECRET` (sent as its SHA-1, as Nightscout expects).
    ApiSecret(String),
    /// A Nightscout access token (`name-0123456789abcdef`), read-only where the site's owner
    /// made it so.
    Token(String),
}

impl std::fmt::Debug for RemoteCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "None",
            Self::ApiSecret(_) => "ApiSecret(<redacted>)",
            Self::Token(_) => "Token(<redacted>)",
        })
    }
}

/// Why a site could not be read, in words for the user (no URL, no credential, no data).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The URL breaks the node's outbound policy (not https, the node's own networks...).
    #[error("the site's address is not allowed: {0}")]
    NotAllowed(String),
    /// No answer, or not in time.
    #[error("the site could not be reached")]
    Unreachable,
    /// The site said the credential does not let us read (401 or 403).
    #[error("the site refused the API secret or token")]
    Refused,
    /// The site answered, but not as the expected service does.
    #[error("the site does not answer as Nightscout does ({0})")]
    NotTheService(String),
    /// An answer, or the number of answers one window needed, is over the node's bound.
    #[error("the site's answer is larger than allowed")]
    TooLarge,
    /// This node has no connector for the site (not configured).
    #[error("this node does not pull from remote sites")]
    Unsupported,
}

impl From<RemoteError> for RecordError {
    fn from(e: RemoteError) -> Self {
        let code = match e {
            RemoteError::TooLarge => IssueType::TooCostly,
            RemoteError::Unsupported => IssueType::NotSupported,
            _ => IssueType::BusinessRule,
        };
        RecordError::invalid(code, e.to_string())
    }
}

/// A site's device data, fetched window by window.
#[async_trait::async_trait]
pub trait RemoteSource: Send + Sync {
    /// The format of the documents [`Self::fetch`] returns.
    fn format(&self) -> Format;

    /// Everything the site holds in `[from, to)` as one document, or `None` when it holds
    /// nothing then.
    async fn fetch(&self, from: Timestamp, to: Timestamp) -> Result<Option<Vec<u8>>, RemoteError>;
}

/// Opens sites (the outbound adapter: the node's policy on where it may connect).
pub trait RemoteConnector: Send + Sync {
    /// A Nightscout site at `url` (its base, e.g. `https://me.example.org/`).
    ///
    /// # Errors
    /// [`RemoteError::NotAllowed`] when the URL breaks the outbound policy.
    fn nightscout(
        &self,
        url: &str,
        credential: RemoteCredential,
    ) -> Result<Box<dyn RemoteSource>, RemoteError>;
}

impl FileReport {
    /// Adds another import's report to this one (a pull's windows into one report).
    pub fn absorb(&mut self, other: FileReport) {
        self.read.absorb(other.read);
        for (k, n) in other.added {
            *self.added.entry(k).or_default() += n;
        }
        self.series_written += other.series_written;
        self.series_unchanged += other.series_unchanged;
        let devices: BTreeSet<String> = self.devices.drain(..).chain(other.devices).collect();
        self.devices = devices.into_iter().collect();
    }
}

impl DeviceDataService {
    /// Pulls `[start, end)` from the patient's Nightscout site at `url` and imports it as
    /// the caller, a week at a time (each week is written before the next is fetched, so
    /// memory stays bounded and an interrupted pull keeps what it wrote; pulling again
    /// adds only what is new).
    ///
    /// # Errors
    /// As [`Self::import`]; the period is too long; the site is not allowed, unreachable,
    /// refuses the credential or does not answer as Nightscout.
    #[allow(clippy::too_many_arguments)]
    pub async fn pull_nightscout(
        &self,
        ctx: &RequestContext,
        patient: &str,
        url: &str,
        credential: RemoteCredential,
        start: Timestamp,
        end: Timestamp,
        zone: TimeZone,
    ) -> Result<FileReport, DeviceError> {
        let connector = self.remote().ok_or(RemoteError::Unsupported)?;
        let source = connector.nightscout(url, credential)?;
        // The patient must exist for the caller before anything is fetched for them; the
        // weeks are then written with no read of their own.
        self.check(ctx, patient, start, end).await?;
        let mut total = FileReport::empty("Nightscout site", source.format());
        let mut from = start;
        while from < end {
            let to = (day_start(from) + SignedDuration::from_hours(24 * PULL_WINDOW_DAYS)).min(end);
            if let Some(document) = source.fetch(from, to).await? {
                let report = self
                    .write_file(
                        ctx,
                        patient,
                        "Nightscout site",
                        Cursor::new(document),
                        Some(source.format()),
                        zone.clone(),
                    )
                    .await?;
                total.absorb(report);
            }
            from = to;
        }
        total.low_glucose_alert = self.alert_if_low(ctx, patient, &total).await;
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_never_prints() {
        let shown = format!(
            "{:?} {:?}",
            RemoteCredential::ApiSecret("hunter2hunter2".into()),
            RemoteCredential::Token("readable-0123456789abcdef".into())
        );
        assert!(!shown.contains("hunter2") && !shown.contains("0123456789abcdef"));
    }
}
