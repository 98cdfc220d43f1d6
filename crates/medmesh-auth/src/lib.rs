//! The identity domain: SMART scopes, access-token claims and signatures. No I/O.

pub mod scope;
pub mod token;

pub use scope::{Permissions, Scope, ScopeContext, parse_scopes};
pub use token::{AccessClaims, KeyId, TokenError, TokenSigningKey, TokenVerifyingKey};
