//! The administrator role of the storage port: web-console administrator
//! accounts and their sign-in attempts (issue 7).

use async_trait::async_trait;

use crate::audit::AuditRecord;
use crate::clock::Timestamp;
use crate::model::{AdminAccount, AdminId};
use crate::policy::Policy;

use super::{AuthOutcome, StoreError};

/// A change to one web-console administrator (see [`AdminAccount`]).
#[derive(Debug, Clone)]
pub enum AdminChange {
    /// A new argon2id PHC string.
    SetPassword(String),
    /// Forgets the admin's TOTP (enrolled again at the next sign-in) and
    /// clears failures and lock; optionally sets a new password hash.
    Reset {
        password_hash: Option<String>,
    },
    /// Stores the TOTP enrolled at first sign-in (sealed, `Purpose::AdminTotp`)
    /// with its replay floor, only if none is stored yet (else `Conflict`);
    /// counts as a successful sign-in (lock cleared, last login recorded).
    EnrollTotp {
        sealed: Vec<u8>,
        floor: i64,
        at: Timestamp,
        from: Option<String>,
    },
    Delete,
}

/// What an admin sign-in step concluded before touching state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminVerdict {
    /// Password and the TOTP code at `step` verified against the snapshot read;
    /// the store accepts only if `step` is still at or above the floor.
    Verified { step: i64 },
    /// Wrong password or code; counts toward lockout. For the audit log.
    Failed(&'static str),
}

/// One admin sign-in step to apply atomically (lock re-checked, failure
/// counted or floor advanced, audit written, in one serialised step).
#[derive(Debug, Clone)]
pub struct AdminAttempt {
    pub admin: AdminId,
    pub verdict: AdminVerdict,
    pub policy: Policy,
    pub at: Timestamp,
    pub from: Option<String>,
    /// Base record; the store fills in result and reason from the outcome.
    pub audit: AuditRecord,
}

/// Fills an admin attempt's audit record from the outcome the store decided.
pub fn finish_admin_audit(audit: &mut AuditRecord, verdict: &AdminVerdict, outcome: &AuthOutcome) {
    use crate::audit::AuditResult::{Accept, Reject};
    let (result, reason): (_, String) = match (outcome, verdict) {
        (AuthOutcome::Accepted, _) => (Accept, "password_and_otp".into()),
        (AuthOutcome::Failed { replay: true, .. }, _) => (Reject, "replayed_code".into()),
        (AuthOutcome::Failed { failures, locked, .. }, v) => {
            let why = match v {
                AdminVerdict::Failed(r) => *r,
                AdminVerdict::Verified { .. } => "failed",
            };
            let lock = if *locked { ", now locked" } else { "" };
            (Reject, format!("{why}; failure {failures}{lock}"))
        }
        (AuthOutcome::Locked, _) => (Reject, "locked".into()),
        (AuthOutcome::Throttled, _) => (Reject, "throttled".into()),
        (other, _) => (Reject, format!("{other:?}").to_lowercase()),
    };
    audit.result = result;
    audit.reason = Some(reason);
}

/// Web-console administrators (see [`crate::admins`]).
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Creates an administrator; `Conflict` if the name is taken.
    async fn create_admin(&self, admin: &AdminAccount, audit: AuditRecord) -> Result<(), StoreError>;
    async fn admin_by_name(&self, name: &str) -> Result<Option<AdminAccount>, StoreError>;
    async fn admin_by_id(&self, id: &AdminId) -> Result<Option<AdminAccount>, StoreError>;
    /// Every administrator, by name.
    async fn list_admins(&self) -> Result<Vec<AdminAccount>, StoreError>;
    /// Applies `change`; `NotFound` if the admin does not exist.
    async fn update_admin(&self, id: &AdminId, change: AdminChange, audit: AuditRecord) -> Result<(), StoreError>;
    /// Applies one sign-in step (see [`AdminAttempt`]); durable on return.
    /// Outcomes: `Accepted`, `Failed`, `Locked`, `Throttled`, `Refused` (no such admin).
    async fn commit_admin_attempt(&self, attempt: AdminAttempt) -> Result<AuthOutcome, StoreError>;
}
