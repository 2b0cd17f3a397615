//! What `/readyz` reports besides "ready / not ready": degradations. A
//! degraded node still takes traffic (200), but something an operator must
//! look at is wrong — its clock is off from the database's, a secret does
//! not open, replication is not following. Each part of the server sets
//! and clears its own [`Degradation`] with a reason; `/readyz` lists them.
//!
//! One process-wide static registry (like `metrics.rs`), so any task can
//! report without plumbing a handle through: a slot per kind, each with an
//! atomic flag so that checking (on the login path) costs one relaxed load.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tessera_core::CoreError;
use tessera_core::auth::Validation;

/// Something that makes this node degraded, one slot each: setting a kind
/// again replaces its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Degradation {
    /// Shared database mode: this node's clock is further from the database
    /// server's than the policy's skew window.
    ClockOffset,
    /// A login found a token secret that does not open with this node's
    /// master key (cleared when a login opens a secret again).
    SecretsUnreadable,
    /// This node cannot follow the master key rotation (the new key does
    /// not open, its key file cannot be written, it missed the rotation).
    MasterKey,
    /// A replica that is not following its primary.
    ReplicationNotFollowing,
    /// A replica further behind than allowed.
    ReplicationLag,
    /// A node that must not act as primary until its role is confirmed.
    Fenced,
    /// The HTTPS certificate files changed but could not be applied (the
    /// previous certificate is still served; `tls_reload.rs`).
    HttpsCertificate,
    /// The same for RadSec (certificate, key or client CA).
    RadsecCertificate,
}

impl Degradation {
    const ALL: [Degradation; 8] = [
        Degradation::ClockOffset,
        Degradation::SecretsUnreadable,
        Degradation::MasterKey,
        Degradation::ReplicationNotFollowing,
        Degradation::ReplicationLag,
        Degradation::Fenced,
        Degradation::HttpsCertificate,
        Degradation::RadsecCertificate,
    ];
}

struct Slot {
    set: AtomicBool,
    reason: Mutex<Option<String>>,
}

static SLOTS: [Slot; Degradation::ALL.len()] =
    [const { Slot { set: AtomicBool::new(false), reason: Mutex::new(None) } }; Degradation::ALL.len()];

/// Sets (`Some(reason)`) or clears (`None`) a degradation. The reason is
/// shown by `/readyz` as is, so it must say what is wrong in words an
/// operator can act on, and hold no secret. Changes of state are logged
/// (a warning when set, info when cleared); new reasons for a state that
/// is already set are not, so a periodic check does not flood the log.
pub fn set(d: Degradation, reason: Option<String>) {
    let slot = &SLOTS[d as usize];
    let mut guard = slot.reason.lock().unwrap_or_else(|e| e.into_inner());
    match (&*guard, &reason) {
        (None, Some(r)) => tracing::warn!(reason = %r, "degraded"),
        (Some(was), None) => tracing::info!(was = %was, "no longer degraded"),
        _ => {}
    }
    slot.set.store(reason.is_some(), Ordering::Relaxed);
    *guard = reason;
}

/// Whether `d` is set (one relaxed load).
pub fn is_set(d: Degradation) -> bool {
    SLOTS[d as usize].set.load(Ordering::Relaxed)
}

/// Every degradation's reason, in a fixed order; empty when all is well.
pub fn reasons() -> Vec<String> {
    Degradation::ALL
        .iter()
        .filter(|d| is_set(**d))
        .filter_map(|d| SLOTS[*d as usize].reason.lock().unwrap_or_else(|e| e.into_inner()).clone())
        .collect()
}

/// What one login says about this node's master key: a secret that did
/// not open is counted and makes the node degraded; a login that opened a
/// secret clears that again. Called by every door after
/// `Authenticator::validate`.
pub fn observe_login(result: &Result<Validation, CoreError>) {
    match result {
        Err(CoreError::SecretUnreadable) => {
            crate::metrics::secret_unreadable();
            if !is_set(Degradation::SecretsUnreadable) {
                set(
                    Degradation::SecretsUnreadable,
                    Some(
                        "secrets: a token secret does not open with this node's master key; those logins are \
                         answered `unavailable` (see the log for the token)"
                            .into(),
                    ),
                );
            }
        }
        Ok(v) if v.opened_secret && is_set(Degradation::SecretsUnreadable) => {
            set(Degradation::SecretsUnreadable, None);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replace_and_clear() {
        // Slots no other unit test touches.
        set(Degradation::Fenced, Some("fenced: a".into()));
        set(Degradation::ReplicationLag, Some("lag: b".into()));
        let r = reasons();
        assert!(r.contains(&"fenced: a".to_string()) && r.contains(&"lag: b".to_string()), "{r:?}");
        // Fixed order: the enum's.
        let lag = r.iter().position(|x| x == "lag: b").unwrap();
        let fenced = r.iter().position(|x| x == "fenced: a").unwrap();
        assert!(lag < fenced);
        set(Degradation::Fenced, Some("fenced: c".into()));
        assert!(reasons().contains(&"fenced: c".to_string()));
        assert!(!reasons().contains(&"fenced: a".to_string()));
        set(Degradation::Fenced, None);
        set(Degradation::ReplicationLag, None);
        assert!(!is_set(Degradation::Fenced));
        assert!(!reasons().iter().any(|x| x.starts_with("fenced") || x.starts_with("lag")));
    }
}
