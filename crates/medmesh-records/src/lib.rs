//! The application service for FHIR records: every interaction, over the store port and the
//! policy decision point, with an audit entry for each.
//!
//! Inbound adapters (the HTTP server, the `medmesh import` CLI) call this crate; it calls the
//! domain crates and the ports, and never touches HTTP or SQL itself.

pub mod audit_writer;
pub mod bundle;
pub mod changes;
mod confine;
pub mod context;
pub mod error;
pub mod everything;
mod forecast;
pub mod import;
pub mod import_group;
mod merge;
pub mod policy_facts;
pub mod reach_cache;
pub mod reading;
pub mod record_core;
pub mod service;
pub mod withheld;
pub mod write_rules;

pub use bundle::{BeforeCommit, ReturnPreference};
pub use changes::{Change, FEED_SETTLE_MICROS, FeedSeen};
pub use context::{
    Clock, IdSource, MonotonicClock, OperationId, RequestContext, SystemClock, UuidIds,
};
pub use error::RecordError;
pub use forecast::PreparedWrites;
pub use record_core::RecordCore;
pub use service::{ReadOutcome, RecordService, SignInEvent, WriteOutcome, WriteStatus};

use medmesh_fhir::{Issue, IssueType};

/// The one mapping from a record error to an HTTP status and the issues a client may see.
/// Store failures and corrupt bodies say nothing of their cause; the caller logs it.
pub fn status_of(err: &RecordError) -> (u16, Vec<Issue>) {
    match err {
        RecordError::NotFound => (
            404,
            vec![Issue::error(IssueType::NotFound, "resource not found")],
        ),
        RecordError::Gone { .. } => (
            410,
            vec![Issue::error(IssueType::Deleted, "resource deleted")],
        ),
        // Content that parses but breaks the definitions is 422 and names where; a request that
        // could not be understood at all is 400.
        // A domain rule's refusal (a lifecycle step not allowed) is 422 too; a refusal of
        // who the caller is (only a practitioner prescribes) is 403.
        RecordError::Invalid(issues) => (
            if issues.iter().any(|i| i.code == IssueType::Forbidden) {
                403
            } else if issues
                .iter()
                .any(|i| i.expression.is_some() || i.code == IssueType::BusinessRule)
            {
                422
            } else {
                400
            },
            issues.clone(),
        ),
        RecordError::BadRequest(issues) => (400, issues.clone()),
        RecordError::UnknownType => (
            404,
            vec![Issue::error(
                IssueType::NotSupported,
                "unknown resource type",
            )],
        ),
        RecordError::PreconditionFailed(m) => {
            (412, vec![Issue::error(IssueType::Conflict, m.clone())])
        }
        RecordError::MultipleMatches => (
            412,
            vec![Issue::error(
                IssueType::MultipleMatches,
                "the conditional request matched more than one resource",
            )],
        ),
        RecordError::Conflict(m) => (409, vec![Issue::error(IssueType::Conflict, m.clone())]),
        RecordError::Forbidden => (
            403,
            vec![Issue::error(IssueType::Forbidden, "access denied")],
        ),
        RecordError::NotSupported(m) => {
            (400, vec![Issue::error(IssueType::NotSupported, m.clone())])
        }
        RecordError::Erased => (
            410,
            vec![Issue::error(
                IssueType::Deleted,
                "this record was erased at the patient's request",
            )],
        ),
        RecordError::UnsupportedMedia(m) => {
            (415, vec![Issue::error(IssueType::NotSupported, m.clone())])
        }
        RecordError::TooLarge(m) => (413, vec![Issue::error(IssueType::TooLong, m.clone())]),
        RecordError::BadSignature(m) => (422, vec![Issue::error(IssueType::Security, m.clone())]),
        RecordError::Store(_)
        | RecordError::Corrupt
        | RecordError::Keys(_)
        | RecordError::Blobs(_) => (
            500,
            vec![Issue::error(
                IssueType::Exception,
                "internal error; see the server log for this operation id",
            )],
        ),
    }
}
