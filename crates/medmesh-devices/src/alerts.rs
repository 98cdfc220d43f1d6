//! Alerts of a forecast low: when an import brings fresh sensor glucose (the latest reading
//! at most [`FRESH_MINUTES`] old), the forecast runs from it, and a 30- or 60-minute
//! prediction under [`BELOW_MG_DL`] tells the patient through the notification hub, on the
//! channels they chose for glucose alerts (none until they choose: it is their decision).
//!
//! The notice names no value and no time (the hub's texts never carry patient data), and
//! its event key is a hash of the patient and the reading, so the same reading never
//! alerts twice however often the data is pulled. A forecast is not a measurement; the
//! text asks the patient to check their glucose.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use medmesh_kernel::RequestContext;
use medmesh_notifications::{Category, Recipient};
use sha2::{Digest, Sha256};

use crate::service::{DeviceDataService, FileReport};

/// What an import's forecast low came to, for its report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum LowAlert {
    /// The patient has chosen no channel for glucose alerts: nobody was told.
    NotChosen,
    /// The patient was told on these channels.
    Told {
        /// `inbox`, `email`, `webhook`.
        channels: Vec<&'static str>,
    },
    /// The hub could not take the notice: nobody was told.
    Unavailable,
}

/// Readings older than this at import raise no alert: an old export is history.
pub const FRESH_MINUTES: i64 = 15;
/// A prediction below this (mg/dL, the consensus "low") raises an alert.
pub const BELOW_MG_DL: f64 = 70.0;

/// Whether readings up to `latest` are fresh enough at `now` to alert on.
pub fn fresh(latest: Timestamp, now: Timestamp) -> bool {
    let age = now.duration_since(latest);
    age <= SignedDuration::from_mins(FRESH_MINUTES) && age >= SignedDuration::from_mins(-5)
}

/// The event key of an alert on `patient`'s reading at `latest` (a hash: no id in clear).
pub fn event_key(patient: &str, latest: Timestamp) -> String {
    let digest = Sha256::digest(format!("{patient}\n{}", latest.as_second()).as_bytes());
    format!("predicted-low/{}", hex::encode(&digest[..16]))
}

impl DeviceDataService {
    /// After an import: tells the patient of a forecast low when the import brought fresh
    /// sensor glucose and the forecast from its latest reading falls under
    /// [`BELOW_MG_DL`]. Answers what was done, for the import's report (`None` when there
    /// was nothing to alert on).
    pub(crate) async fn alert_if_low(
        &self,
        ctx: &RequestContext,
        patient: &str,
        report: &FileReport,
    ) -> Option<LowAlert> {
        let hub = self.hub()?;
        if report.added.get("sensor-glucose").copied().unwrap_or(0) == 0 {
            return None;
        }
        // An export of the past (the usual upload) costs nothing more.
        if !report.read.last.is_some_and(|last| fresh(last, self.now())) {
            return None;
        }
        let latest = self.latest_glucose(ctx, patient).await.ok()??;
        if !fresh(latest, self.now()) {
            return None;
        }
        let forecast = self
            .forecast_from(ctx, patient, Some(latest), &TimeZone::UTC)
            .await
            .ok()?;
        if !forecast.predictions.iter().any(|p| p.mg_dl < BELOW_MG_DL) {
            return None;
        }
        let notice = hub.notice(Category::GlucoseAlerts, event_key(patient, latest));
        Some(
            match hub
                .notify(&Recipient::Patient(patient.to_owned()), &notice)
                .await
            {
                Ok(channels) if channels.is_empty() => LowAlert::NotChosen,
                Ok(channels) => LowAlert::Told {
                    channels: channels.iter().map(|c| c.as_str()).collect(),
                },
                Err(_) => LowAlert::Unavailable,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fresh_readings_alert() {
        let now: Timestamp = "2026-12-05T06:00:00Z".parse().unwrap();
        assert!(fresh("2026-12-05T05:50:00Z".parse().unwrap(), now));
        assert!(!fresh("2026-12-05T05:40:00Z".parse().unwrap(), now));
        assert!(!fresh("2026-12-05T06:10:00Z".parse().unwrap(), now));
    }

    #[test]
    fn an_event_key_names_no_one() {
        let at: Timestamp = "2026-12-05T05:50:00Z".parse().unwrap();
        let key = event_key("pat-ada", at);
        assert!(key.starts_with("predicted-low/") && !key.contains("ada"));
        assert_eq!(key, event_key("pat-ada", at));
        assert_ne!(key, event_key("pat-bob", at));
    }
}
