//! OperationOutcome: how every error reaches a FHIR client.

use serde_json::{Value, json};

/// Issue severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The request failed.
    Error,
    /// Worth knowing; the request went ahead.
    Warning,
    /// For information.
    Information,
}

/// The FHIR issue-type codes medmesh uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    /// Malformed content.
    Structure,
    /// A required element is missing.
    Required,
    /// A value is invalid.
    Value,
    /// A code is not in its required value set.
    CodeInvalid,
    /// Content is too long or too deep.
    TooLong,
    /// Invalid content in general.
    Invalid,
    /// Not found.
    NotFound,
    /// Deleted.
    Deleted,
    /// Not supported.
    NotSupported,
    /// Version conflict.
    Conflict,
    /// More than one match for a conditional operation.
    MultipleMatches,
    /// Login required.
    Login,
    /// Forbidden.
    Forbidden,
    /// Internal failure.
    Exception,
    /// Processing note.
    Informational,
    /// Transient failure, try again.
    Transient,
    /// Duplicate.
    Duplicate,
    /// A security problem (a signature that does not verify).
    Security,
    /// The request would cost more than the server allows (`too-costly`).
    TooCostly,
    /// Too many requests: wait before trying again (`throttled`).
    Throttled,
    /// A rule of the domain refuses it (`business-rule`): a lifecycle step not allowed.
    BusinessRule,
}

impl IssueType {
    /// The FHIR code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Structure => "structure",
            Self::Required => "required",
            Self::Value => "value",
            Self::CodeInvalid => "code-invalid",
            Self::TooLong => "too-long",
            Self::Invalid => "invalid",
            Self::NotFound => "not-found",
            Self::Deleted => "deleted",
            Self::NotSupported => "not-supported",
            Self::Conflict => "conflict",
            Self::MultipleMatches => "multiple-matches",
            Self::BusinessRule => "business-rule",
            Self::Login => "login",
            Self::Forbidden => "forbidden",
            Self::Exception => "exception",
            Self::Informational => "informational",
            Self::Transient => "transient",
            Self::Duplicate => "duplicate",
            Self::Security => "security",
            Self::TooCostly => "too-costly",
            Self::Throttled => "throttled",
        }
    }
}

/// One issue of an OperationOutcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// Severity.
    pub severity: Severity,
    /// Issue type.
    pub code: IssueType,
    /// Human-readable detail. Never holds PHI or internal error text.
    pub diagnostics: String,
    /// FHIRPath location of the problem.
    pub expression: Option<String>,
}

impl Issue {
    /// An error issue.
    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }
    /// A warning issue.
    pub fn warning(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }
    /// An information issue.
    pub fn information(diagnostics: impl Into<String>) -> Self {
        Self {
            severity: Severity::Information,
            code: IssueType::Informational,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }
    /// Sets the FHIRPath location.
    pub fn at(mut self, location: &str) -> Self {
        self.expression = Some(location.to_string());
        self
    }
}

/// Renders issues as an OperationOutcome resource.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    let issues: Vec<Value> = issues
        .iter()
        .map(|i| {
            let mut v = json!({
                "severity": match i.severity { Severity::Error => "error", Severity::Warning => "warning", Severity::Information => "information" },
                "code": i.code.code(),
                "diagnostics": i.diagnostics,
            });
            if let Some(e) = &i.expression {
                v["expression"] = json!([e]);
            }
            v
        })
        .collect();
    json!({"resourceType": "OperationOutcome", "issue": issues})
}
