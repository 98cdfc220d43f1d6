//! The identity domain: roles, SMART scopes and their algebra, credentials (passwords, TOTP,
//! PKCE, throttling), access-token claims and signatures. No I/O.

pub mod credentials;
pub mod role;
pub mod scope;
pub mod token;

pub use role::{PHARMACY_READ_TYPES, Role, Verification, narrow};
pub use scope::{Permissions, Scope, ScopeContext, parse_scopes};
pub use token::{AccessClaims, KeyId, TokenError, TokenSigningKey, TokenVerifyingKey};
