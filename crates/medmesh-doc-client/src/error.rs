//! The client's one error type: what a caller shows its user.

/// Why a document-client call failed. Its message is for the user; `source()` carries the
/// underlying cause where there is one.
#[derive(Debug, thiserror::Error)]
pub enum DocClientError {
    /// The node could not be reached.
    #[error("cannot reach the node")]
    Unreachable(#[source] reqwest::Error),
    /// The node answered with an error (its OperationOutcome's text, or the status).
    #[error("the node refused: {message} ({status})")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// What the node said.
        message: String,
    },
    /// A step failed; the message says which, the source why.
    #[error("{message}")]
    Failed {
        /// What was being done.
        message: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file could not be read or written.
    #[error("file error")]
    Io(#[from] std::io::Error),
    /// The input, or what the node sent, is not what it must be; the message says how.
    #[error("{0}")]
    Invalid(String),
}

/// The client's result.
pub type Result<T> = std::result::Result<T, DocClientError>;

/// Names the step that failed, as the error's message.
pub(crate) trait Context<T> {
    /// With a fixed message.
    fn context(self, message: &str) -> Result<T>;
    /// With a message built only on failure.
    fn with_context(self, message: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E> Context<T> for std::result::Result<T, E>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn context(self, message: &str) -> Result<T> {
        self.with_context(|| message.to_string())
    }
    fn with_context(self, message: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| DocClientError::Failed {
            message: message(),
            source: e.into(),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, message: &str) -> Result<T> {
        self.ok_or_else(|| DocClientError::Invalid(message.to_string()))
    }
    fn with_context(self, message: impl FnOnce() -> String) -> Result<T> {
        self.ok_or_else(|| DocClientError::Invalid(message()))
    }
}

/// Returns [`DocClientError::Invalid`] with a formatted message.
macro_rules! bail {
    ($($arg:tt)*) => {
        return Err($crate::DocClientError::Invalid(format!($($arg)*)))
    };
}
pub(crate) use bail;
