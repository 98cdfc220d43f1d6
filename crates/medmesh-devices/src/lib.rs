//! Device data: what CGMs, pumps and phones record, imported into the patient's record and
//! analysed.
//!
//! Each (device, channel, UTC day) is one FHIR Observation whose `valueSampledData` holds
//! the day minute by minute ([`series`]): a year of 5-minute CGM data is 365 resources, not
//! 105,000, yet each is an ordinary Observation that FHIR clients can read, sealed under the
//! patient's key, written and read through the record service (so the PDP decides and the
//! audit log records every step). [`service::DeviceDataService`] imports files, reads the
//! readings back and computes the summaries; [`report`] draws the AGP and [`report_pdf`]
//! prints it.

pub mod alerts;
pub mod cgm_ig;
pub mod remote;
pub mod report;
pub mod report_pdf;
pub mod series;
pub mod service;

pub use remote::{RemoteConnector, RemoteCredential, RemoteError, RemoteSource, pull_period};
pub use service::{
    AgpPrint, DeviceDataService, DeviceError, FileReport, ForecastView, GlucoseView, Insights,
    PanelOrder, PanelRow, StoredReading, period, zone,
};
