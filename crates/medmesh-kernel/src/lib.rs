//! The kernel every application service shares: who is asking ([`Actor`], inside a
//! [`RequestContext`] with its [`OperationId`]) and the injected sources of time ([`Clock`]),
//! ids ([`IdSource`]) and randomness ([`Random`]).
//!
//! It has no I/O and depends only on the SMART scope vocabulary of `medmesh-auth`. An actor
//! can be made in three ways only: from a verified access token, from a verified session, or
//! as the local operator of the CLI; its fields are private, so no adapter can widen what an
//! authenticated caller may do. `clippy.toml` lists those constructors as disallowed methods,
//! so each place that calls one says why with an `#[allow]`.

pub mod actor;
pub mod clock;
pub mod context;
pub mod ids;
pub mod random;

pub use actor::{Actor, Clinician, VerifiedIdentity};
pub use clock::{Clock, MonotonicClock, SystemClock};
pub use context::{OperationId, RequestContext};
pub use ids::{IdSource, UuidIds};
pub use random::{OsRandom, Random};
