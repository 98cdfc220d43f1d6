//! Randomness, injected so tests can be deterministic.

/// A source of random bytes.
pub trait Random: Send + Sync + 'static {
    /// Fills `buf`.
    fn fill(&self, buf: &mut [u8]);
}

/// The operating system's generator (through `rand`'s thread-local CSPRNG, seeded by the OS).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl Random for OsRandom {
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

#[cfg(test)]
pub(crate) mod testing {
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A counter-based generator: different bytes every call, the same sequence every run.
    #[derive(Debug, Default)]
    pub struct Counter(AtomicU64);

    impl super::Random for Counter {
        fn fill(&self, buf: &mut [u8]) {
            for chunk in buf.chunks_mut(8) {
                let n = self.0.fetch_add(1, Ordering::Relaxed).to_le_bytes();
                chunk.copy_from_slice(&n[..chunk.len()]);
            }
        }
    }
}
