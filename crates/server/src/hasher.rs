//! The server's [`PasswordHasher`]: argon2 on tokio's blocking pool, at most
//! one hash per core at a time, so a burst of password checks cannot starve
//! the network tasks or exhaust memory (each argon2 run takes 19 MiB).
//!
//! Waiting for a thread is bounded too, in count and in time: a flood of
//! password logins is refused ([`PasswordError::Busy`], a reject that is not
//! counted against the user) instead of queueing without end. Logins whose
//! input is only a code never come here (see `tessera_core::auth`), so they
//! are answered whatever the queue holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tessera_core::password::{self, PasswordError, PasswordHasher};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use zeroize::Zeroizing;

/// Checks that may wait for a thread, per thread: with ~30 ms per check,
/// about half a second of work queued. More are refused at once.
const WAITING_PER_THREAD: usize = 16;
/// A check that waited this long for a thread is refused: the machine is
/// behind, and a NAS retries after a few seconds anyway.
const MAX_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct BlockingHasher {
    permits: Arc<Semaphore>,
    /// Checks waiting for a permit now.
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    max_wait: Duration,
}

impl BlockingHasher {
    pub fn new(parallelism: usize) -> Self {
        let threads = parallelism.max(1);
        Self::with_limits(threads, threads * WAITING_PER_THREAD, MAX_WAIT)
    }

    fn with_limits(threads: usize, max_waiting: usize, max_wait: Duration) -> Self {
        BlockingHasher {
            permits: Arc::new(Semaphore::new(threads)),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting,
            max_wait,
        }
    }

    pub fn for_this_machine() -> Self {
        Self::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2))
    }

    /// A thread's permit, or `Busy` when too many wait or waited too long.
    async fn permit(&self) -> Result<OwnedSemaphorePermit, PasswordError> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(p);
        }
        let _waiting = Waiting::enter(&self.waiting, self.max_waiting).ok_or(PasswordError::Busy)?;
        match tokio::time::timeout(self.max_wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(_)) | Err(_) => Err(PasswordError::Busy),
        }
    }

    /// Runs `work` on the blocking pool holding a permit. The permit moves
    /// into the blocking task, so a caller that gives up (a client that
    /// went away) does not free a thread that is still hashing.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, PasswordError> {
        let permit = self.permit().await?;
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(|_| PasswordError::Hashing)
    }
}

/// One place in the waiting count, given back on drop (also when the
/// waiting future is dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize, max: usize) -> Option<Self> {
        let before = count.fetch_add(1, Ordering::AcqRel);
        let entered = Waiting(count);
        (before < max).then_some(entered)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[async_trait]
impl PasswordHasher for BlockingHasher {
    async fn hash(&self, pw: Zeroizing<String>) -> Result<String, PasswordError> {
        self.run(move || password::hash_password(&pw)).await?
    }

    async fn verify(&self, phc: Option<String>, pw: Zeroizing<String>) -> Result<bool, PasswordError> {
        self.run(move || match phc {
            Some(phc) => password::verify_password(&phc, &pw),
            None => {
                password::dummy_verify(&pw);
                false
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Zeroizing<String> {
        Zeroizing::new(s.to_string())
    }

    #[tokio::test]
    async fn password_checks_beyond_the_queue_are_refused_at_once() {
        let h = BlockingHasher::with_limits(1, 1, Duration::from_secs(60));
        let held = h.permits.clone().try_acquire_owned().unwrap();
        // One may wait…
        let waiter = tokio::spawn({
            let h = h.clone();
            async move { h.verify(None, pw("a password")).await }
        });
        while h.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        // …the next is refused without waiting.
        assert_eq!(h.verify(None, pw("another one")).await, Err(PasswordError::Busy));
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(false), "the waiting check ran once a thread was free");
        assert_eq!(h.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn password_checks_that_wait_too_long_are_refused() {
        let h = BlockingHasher::with_limits(1, 8, Duration::from_millis(50));
        let _held = h.permits.clone().try_acquire_owned().unwrap();
        let started = std::time::Instant::now();
        assert_eq!(h.hash(pw("a password")).await, Err(PasswordError::Busy));
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(h.waiting.load(Ordering::Acquire), 0);
    }
}
