//! Randomness, injected so tests can be deterministic: the one port of the cryptographic
//! core, shared with encryption at rest.

pub use medmesh_kernel::random::{OsRandom, Random};
