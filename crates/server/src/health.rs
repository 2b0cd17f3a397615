//! What makes this node degraded (it serves, but something an operator
//! must see is wrong): a process-wide registry, like `metrics`, set by
//! whoever notices and read by `/readyz`.

use parking_lot::RwLock;

/// A reason this node is degraded; each is set or cleared on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Degradation {
    ClockOffset,
    SecretsUnreadable,
    ReplicationNotFollowing,
    ReplicationLag,
    Fenced,
}

static REASONS: RwLock<Vec<(Degradation, String)>> = RwLock::new(Vec::new());

/// Sets (`Some`) or clears (`None`) one degradation.
pub fn set(d: Degradation, reason: Option<String>) {
    let mut all = REASONS.write();
    all.retain(|(k, _)| *k != d);
    if let Some(r) = reason {
        all.push((d, r));
        all.sort_by_key(|(k, _)| *k);
    }
}

/// Every degradation's reason, in a stable order.
pub fn reasons() -> Vec<String> {
    REASONS.read().iter().map(|(_, r)| r.clone()).collect()
}
