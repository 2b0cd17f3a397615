//! Randomness as a port, so that secret generation is testable and the OS
//! CSPRNG is the only production source.

/// A source of cryptographically secure random bytes.
pub trait Random: Send + Sync + std::fmt::Debug {
    /// Fills `buf` completely. Implementations must never return weak bytes:
    /// if the OS generator fails, they abort rather than continue.
    fn fill(&self, buf: &mut [u8]);
}

/// The operating system's CSPRNG (`getrandom(2)`).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl Random for OsRandom {
    #[allow(clippy::panic)]
    fn fill(&self, buf: &mut [u8]) {
        // A failing kernel RNG is not a condition we can serve secrets
        // through; aborting the request is the only safe answer.
        if let Err(e) = getrandom::fill(buf) {
            panic!("operating system random generator failed: {e}");
        }
    }
}

/// Convenience: `n` random bytes.
pub fn random_bytes(rng: &dyn Random, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill(&mut v);
    v
}
