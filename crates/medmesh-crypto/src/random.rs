//! Randomness, injected so tests can be deterministic: the kernel's port, re-exported for
//! the cryptographic core.

pub use medmesh_kernel::random::{OsRandom, Random, array};

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
