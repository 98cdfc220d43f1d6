//! Identity errors. Messages are safe to show: they never carry secrets or PHI.

use medmesh_store::StoreError;

/// What went wrong, in OAuth terms where one applies (RFC 6749 section 5.2).
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Wrong user name, password or second factor (deliberately not saying which).
    #[error("the user name or password is wrong")]
    BadCredentials,
    /// The second factor is wrong or was used already.
    #[error("the code is wrong or was used already")]
    BadSecondFactor,
    /// Too many failures: wait.
    #[error("too many failed attempts; try again in {0} seconds")]
    Throttled(i64),
    /// The password breaks the policy.
    #[error("{0}")]
    WeakPassword(#[from] medmesh_auth::credentials::PasswordRejected),
    /// The user name is taken.
    #[error("that user name is taken")]
    UsernameTaken,
    /// The account is already linked to a patient record; linking it to another would hand
    /// one person's account another's record.
    #[error("this account is already linked to a patient record")]
    AlreadyLinked,
    /// A request parameter is missing or wrong (`invalid_request`).
    #[error("{0}")]
    InvalidRequest(String),
    /// Client authentication failed (`invalid_client`).
    #[error("client authentication failed")]
    InvalidClient,
    /// A code or refresh token is invalid, expired, used or revoked (`invalid_grant`).
    #[error("the grant is invalid, expired or revoked")]
    InvalidGrant,
    /// More scope than granted or allowed (`invalid_scope`).
    #[error("the requested scope is not allowed")]
    InvalidScope,
    /// A grant type this server does not support (`unsupported_grant_type`).
    #[error("unsupported grant type")]
    UnsupportedGrantType,
    /// The session is missing, expired or ended.
    #[error("not signed in")]
    NotSignedIn,
    /// The actor may not do this.
    #[error("not allowed")]
    Forbidden,
    /// Not found.
    #[error("not found")]
    NotFound,
    /// Storage failed.
    #[error("storage failure")]
    Store(#[from] StoreError),
    /// Anything else internal.
    #[error("internal error")]
    Internal,
}

impl IdentityError {
    /// The OAuth `error` code.
    pub fn oauth_code(&self) -> &'static str {
        match self {
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant | Self::BadCredentials | Self::BadSecondFactor => "invalid_grant",
            Self::InvalidScope => "invalid_scope",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::Forbidden | Self::NotSignedIn => "access_denied",
            Self::Store(_) | Self::Internal => "server_error",
            Self::Throttled(_) => "temporarily_unavailable",
            _ => "invalid_request",
        }
    }
}
