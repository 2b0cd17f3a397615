//! Consecutive-failure accounting: hard lock or growing throttle.
//!
//! Pure state transitions. The stores apply them inside one serialised
//! transaction per attempt (a writer thread for SQLite, a row lock for
//! PostgreSQL), which is what makes "N parallel wrong guesses count N tries
//! at most" exact.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::policy::{LockoutMode, Policy};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockState {
    /// Consecutive failures since the last success or unlock.
    pub failures: u32,
    pub locked_at: Option<Timestamp>,
    /// When a hard lock lifts by itself; `None` with `locked_at` set means
    /// only an administrator can unlock.
    pub lock_until: Option<Timestamp>,
    /// Throttle mode: no attempt is evaluated before this instant.
    pub throttle_until: Option<Timestamp>,
}

/// Why an attempt was refused before its credentials were looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    Locked,
    Throttled { until: Timestamp },
}

impl LockState {
    pub fn is_locked(&self, now: Timestamp) -> bool {
        match (self.locked_at, self.lock_until) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(_), Some(until)) => now < until,
        }
    }

    /// Whether an attempt at `now` may be evaluated at all.
    pub fn block(&self, now: Timestamp) -> Option<Block> {
        if self.is_locked(now) {
            return Some(Block::Locked);
        }
        match self.throttle_until {
            Some(until) if now < until => Some(Block::Throttled { until }),
            _ => None,
        }
    }

    /// The state as it stands at `now`: a hard lock that has lifted by
    /// itself is forgotten with its failures, so the next failure counts
    /// from one. The stored row keeps the old values until the next attempt
    /// writes it; every reader (views, the next failure) goes through here so
    /// nobody shows or counts a count that no longer applies.
    pub fn current(&self, now: Timestamp) -> LockState {
        if self.locked_at.is_some() && !self.is_locked(now) {
            LockState { failures: 0, locked_at: None, lock_until: None, throttle_until: self.throttle_until }
        } else {
            *self
        }
    }

    /// State after a correct login: a clean slate.
    pub fn after_success(&self) -> LockState {
        LockState::default()
    }

    /// State after one counted failure at `now`. A lock that has expired is
    /// forgotten first, so auto-unlock gives a full set of tries again.
    pub fn after_failure(&self, policy: &Policy, now: Timestamp) -> LockState {
        let failures = self.current(now).failures.saturating_add(1);
        let threshold = policy.lockout_threshold.max(1);
        match policy.lockout_mode {
            LockoutMode::Lock => {
                if failures >= threshold {
                    let lock_until =
                        (policy.auto_unlock_seconds > 0).then(|| now.plus_seconds(policy.auto_unlock_seconds as i64));
                    LockState { failures, locked_at: Some(now), lock_until, throttle_until: None }
                } else {
                    LockState { failures, ..LockState::default() }
                }
            }
            LockoutMode::Throttle => {
                let throttle_until = (failures >= threshold).then(|| {
                    let exp = (failures - threshold).min(30);
                    let delay = policy
                        .throttle_base_seconds
                        .saturating_mul(1u64 << exp)
                        .min(policy.throttle_max_seconds)
                        .max(1);
                    now.plus_seconds(delay as i64)
                });
                LockState { failures, locked_at: None, lock_until: None, throttle_until }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_unix_seconds(s)
    }

    #[test]
    fn locks_at_threshold_and_auto_unlocks() {
        let p = Policy { lockout_threshold: 3, auto_unlock_seconds: 600, ..Policy::default() };
        let mut s = LockState::default();
        for i in 1..=2 {
            s = s.after_failure(&p, at(100));
            assert_eq!(s.failures, i);
            assert!(s.block(at(100)).is_none());
        }
        s = s.after_failure(&p, at(100));
        assert_eq!(s.block(at(100)), Some(Block::Locked));
        assert_eq!(s.block(at(699)), Some(Block::Locked));
        assert_eq!(s.block(at(700)), None);
        // once the lock has lifted, its failures no longer count (issue 15 item 5)
        assert_eq!(s.current(at(699)).failures, 3);
        assert_eq!(s.current(at(700)), LockState::default());
        // after auto-unlock a failure starts counting from one again
        let s2 = s.after_failure(&p, at(800));
        assert_eq!(s2.failures, 1);
        assert!(s2.locked_at.is_none());
    }

    #[test]
    fn admin_only_lock_never_expires() {
        let p = Policy { lockout_threshold: 1, auto_unlock_seconds: 0, ..Policy::default() };
        let s = LockState::default().after_failure(&p, at(0));
        assert_eq!(s.block(at(100_000_000)), Some(Block::Locked));
    }

    #[test]
    fn throttle_grows_and_caps() {
        let p = Policy {
            lockout_mode: LockoutMode::Throttle,
            lockout_threshold: 2,
            throttle_base_seconds: 5,
            throttle_max_seconds: 60,
            ..Policy::default()
        };
        let mut s = LockState::default().after_failure(&p, at(0));
        assert_eq!(s.throttle_until, None);
        s = s.after_failure(&p, at(0));
        assert_eq!(s.throttle_until, Some(at(5)));
        s = s.after_failure(&p, at(5));
        assert_eq!(s.throttle_until, Some(at(15)));
        for _ in 0..10 {
            s = s.after_failure(&p, at(1000));
        }
        assert_eq!(s.throttle_until, Some(at(1060)));
        assert!(!s.is_locked(at(1000)));
    }
}
