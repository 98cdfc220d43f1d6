//! Randomness, injected so tests can be deterministic.

/// A source of random bytes.
pub trait Random: Send + Sync + 'static {
    /// Fills `buf`.
    fn fill(&self, buf: &mut [u8]);
}

/// The operating system's generator (through `rand`'s thread-local CSPRNG).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&self, buf: &mut [u8]) {
        use rand::RngCore;
        rand::rng().fill_bytes(buf);
    }
}
