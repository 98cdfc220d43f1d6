//! The request context every interaction carries.

use std::fmt;

use crate::Actor;

/// The id of one request (or one CLI command), carried in logs and audit entries so an
/// operator can follow an operation from the access log to the audit log. It is an opaque
/// token chosen by the node (or a client's `X-Request-Id`) and never holds PHI.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct OperationId(String);

impl OperationId {
    /// Wraps an id.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for OperationId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Who is asking, through which operation, from where, and at which base URL. Application
/// services take one on every public method, and hand its actor to the PDP.
#[derive(Debug, Clone)]
pub struct RequestContext {
    actor: Actor,
    operation_id: OperationId,
    source_ip: Option<String>,
    base_url: String,
}

impl RequestContext {
    /// A context for `actor`. `base_url` is the FHIR base (`http://host/fhir`), used for
    /// `fullUrl`s and links; `source_ip` goes into audit entries.
    pub fn new(
        actor: Actor,
        operation_id: OperationId,
        source_ip: Option<String>,
        base_url: impl Into<String>,
    ) -> Self {
        Self {
            actor,
            operation_id,
            source_ip,
            base_url: base_url.into(),
        }
    }

    /// The authenticated actor.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The request's operation id (also in logs and audit entries).
    pub fn operation_id(&self) -> &OperationId {
        &self.operation_id
    }

    /// Source IP, for the audit entry.
    pub fn source_ip(&self) -> Option<&str> {
        self.source_ip.as_deref()
    }

    /// The FHIR base URL, for `fullUrl`s and links (`http://host/fhir`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}
