//! The errors of record interactions. The HTTP adapter maps each to a status and an
//! OperationOutcome; internal detail stays in logs.

use medmesh_fhir::search::SearchError;
use medmesh_fhir::{Issue, IssueType};
use medmesh_store::StoreError;

/// Why an interaction failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// No such resource (or the actor may not know it exists).
    #[error("resource not found")]
    NotFound,
    /// The resource was deleted.
    #[error("resource deleted")]
    Gone {
        /// The tombstone's version.
        version: i64,
    },
    /// The request is malformed or the resource invalid.
    #[error("invalid request")]
    Invalid(Vec<Issue>),
    /// The request breaks a basic rule of the API (400), such as an id that differs from the URL.
    #[error("bad request")]
    BadRequest(Vec<Issue>),
    /// The resource type is not known.
    #[error("unknown resource type")]
    UnknownType,
    /// `If-Match` did not match the current version.
    #[error("version conflict")]
    PreconditionFailed(String),
    /// A conditional operation matched more than one resource.
    #[error("multiple matches")]
    MultipleMatches,
    /// A concurrent write got there first.
    #[error("conflict")]
    Conflict(String),
    /// The policy decision point refused.
    #[error("forbidden")]
    Forbidden,
    /// The operation is not supported.
    #[error("not supported")]
    NotSupported(String),
    /// The database failed; details are logged, never returned.
    #[error("store failure: {0}")]
    Store(StoreError),
    /// A stored body could not be decoded.
    #[error("stored body unreadable")]
    Corrupt,
    /// The data was erased: its patient's key is destroyed.
    #[error("data erased")]
    Erased,
    /// The key-encryption key or key store failed; details are logged, never returned.
    #[error("key service failure: {0}")]
    Keys(#[source] medmesh_store::KekError),
    /// An upload's content is not of a type the vault accepts, or not what it claims.
    #[error("unsupported media type")]
    UnsupportedMedia(String),
    /// An upload is larger than the vault accepts.
    #[error("too large")]
    TooLarge(String),
    /// An upload's signature does not verify, or names other claims.
    #[error("signature does not verify")]
    BadSignature(String),
    /// The blob store failed, or stored bytes do not match their digest; details are
    /// logged, never returned.
    #[error("blob store failure: {0}")]
    Blobs(#[source] medmesh_store::BlobError),
}

impl From<medmesh_store::BlobError> for RecordError {
    fn from(e: medmesh_store::BlobError) -> Self {
        Self::Blobs(e)
    }
}

impl From<medmesh_at_rest::AtRestError> for RecordError {
    fn from(e: medmesh_at_rest::AtRestError) -> Self {
        use medmesh_at_rest::AtRestError;
        match e {
            AtRestError::Erased => RecordError::Erased,
            AtRestError::Corrupt => RecordError::Corrupt,
            AtRestError::Store(s) => RecordError::from(s),
            AtRestError::Kek(k) => RecordError::Keys(k),
        }
    }
}

impl RecordError {
    /// An invalid request with one issue.
    pub fn invalid(code: IssueType, message: impl Into<String>) -> Self {
        Self::Invalid(vec![Issue::error(code, message)])
    }

    /// A capability's business rule says no (422), in words for the user (no patient data).
    pub fn rule(message: impl Into<String>) -> Self {
        Self::invalid(IssueType::BusinessRule, message)
    }

    /// A capability refuses this caller the operation (403), saying why in words.
    pub fn refused(message: impl Into<String>) -> Self {
        Self::invalid(IssueType::Forbidden, message)
    }
}

impl From<StoreError> for RecordError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => {
                Self::Conflict("a concurrent write changed this resource; retry".into())
            }
            StoreError::BadCursor => {
                Self::invalid(IssueType::Value, "the paging cursor is invalid")
            }
            other => Self::Store(other),
        }
    }
}

impl From<SearchError> for RecordError {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::UnknownType(_) => Self::UnknownType,
            SearchError::UnknownParameter(_) => {
                Self::invalid(IssueType::NotSupported, e.to_string())
            }
            SearchError::InvalidValue { .. } => Self::invalid(IssueType::Value, e.to_string()),
            SearchError::Unsupported(_) => Self::invalid(IssueType::NotSupported, e.to_string()),
            SearchError::TooComplex { .. } => Self::invalid(IssueType::TooCostly, e.to_string()),
        }
    }
}

impl From<Issue> for RecordError {
    fn from(i: Issue) -> Self {
        Self::Invalid(vec![i])
    }
}
