//! Randomness, injected so tests can be deterministic. `clippy.toml` bans drawing entropy
//! anywhere else.

/// A source of random bytes.
pub trait Random: Send + Sync + 'static {
    /// Fills `buf`.
    fn fill(&self, buf: &mut [u8]);
}

/// The operating system's generator (through `rand`'s thread-local CSPRNG, seeded by the OS).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl Random for OsRandom {
    #[allow(clippy::disallowed_methods)] // This is the entropy source.
    fn fill(&self, buf: &mut [u8]) {
        use rand::RngCore;
        rand::rng().fill_bytes(buf);
    }
}

/// Draws an array of random bytes.
pub fn array<const N: usize>(random: &dyn Random) -> [u8; N] {
    let mut out = [0u8; N];
    random.fill(&mut out);
    out
}
