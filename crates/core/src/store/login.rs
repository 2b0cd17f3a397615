//! The login role of the storage port: look a user up, evaluate, and apply
//! the verdict in one serialised step ([`LoginStore::authenticate`]), plus
//! the few reads and writes a login needs besides (backup codes, email/SMS
//! codes, used challenge States). Also the decision rules every backend
//! shares ([`blocking_outcome`], [`settle`], [`finish_attempt_audit`]), so
//! the backends persist outcomes and decide nothing themselves.

use async_trait::async_trait;

use crate::audit::AuditRecord;
use crate::clock::Timestamp;
use crate::lockout::LockState;
use crate::model::{AccessRecord, Token, TokenId, User, UserId};
use crate::policy::Policy;

use super::StoreError;

/// The factor an engine verified, to be consumed by the store if still valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Factor {
    /// A token code matched counter/step `matched`; the store advances the
    /// token's floor to `matched + 1` only if it is still `<= matched`.
    Token { token_id: TokenId, matched: i64, drift: i32 },
    /// An unused backup code with this digest matched.
    BackupCode { digest: [u8; 32] },
    /// The first factor alone, by a single-factor exception (policy).
    FirstFactorOnly,
    /// The first factor alone, by the grace policy: granted only while the
    /// user's grace count is below `limit` (the store checks and counts).
    Grace { limit: Option<u32> },
    /// A code sent by email or SMS (`oob_codes` row `id`) matched; the store
    /// marks it used only if it is still unused, unexpired and not worn out.
    OobCode { id: i64, channel: crate::model::OobChannel },
    /// A token code or backup code the cluster's primary took for this very
    /// login (cluster-wide replay protection on a replica). The primary's
    /// change can reach this node before the login is applied here, so the
    /// local check accepts state that shows the factor used by that claim
    /// (floor at most `matched + 1`; a backup code already marked used):
    /// any other login of the same factor got "used" from the primary.
    Claimed(Box<Factor>),
}

impl Factor {
    /// The factor itself, whether or not the primary took it first.
    pub fn base(&self) -> &Factor {
        match self {
            Factor::Claimed(inner) => inner.base(),
            other => other,
        }
    }
}

/// What the engine concluded before touching state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// All factors verified against the snapshot it read.
    Verified(Factor),
    /// Wrong credentials; counts toward lockout. The reason is for the audit log.
    Failed(&'static str),
    /// The first factor was right and the code (or backup code) was a valid
    /// one that is already used: far more often a retransmission, a double
    /// click or a second tab than an attack, and it proves nothing an
    /// attacker did not already know. Rejected and audited (the reason is
    /// `replayed_code` or `replayed_backup_code`), never counted.
    Replayed(&'static str),
    /// Refused without evaluating credentials (disabled, locked, no token);
    /// recorded as an attempt but never counted.
    Refused(&'static str),
    /// The first factor was right and no code came with it: the caller is
    /// asked for the code (Access-Challenge). Recorded, not counted.
    Challenge,
}

/// One authentication attempt against a known user, to be applied atomically.
#[derive(Debug, Clone)]
pub struct AuthAttempt {
    pub user_id: UserId,
    pub access: AccessRecord,
    pub verdict: Verdict,
    pub policy: Policy,
    /// Base record; the store fills in result and reason from the outcome.
    pub audit: AuditRecord,
}

/// What actually happened, decided inside the store's transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    Accepted,
    /// Counted failure. `replay` is for web-console admin sign-ins only (a
    /// code that verified was used in the meantime); a user's replay is
    /// [`AuthOutcome::Replayed`] and not counted.
    Failed {
        failures: u32,
        locked: bool,
        replay: bool,
    },
    /// The factor was valid but already used (before, by a concurrent
    /// attempt, or on another node): rejected, audited, not counted.
    Replayed,
    Locked,
    Throttled,
    Disabled,
    /// Refused before evaluation; not counted.
    Refused,
    /// First factor accepted; a code is asked for next.
    Challenged,
}

/// A challenge state presented with the second step of a login: its nonce
/// is recorded as used in the same serialised step as the login, so a
/// state works once, on any node that shares the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateTicket {
    pub nonce: [u8; 16],
    /// When the state stops being valid anyway (the record can go then).
    pub expires_at: Timestamp,
}

/// A backup code of the user's current set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupCodeState {
    Unused,
    /// Used once already: presenting it again is a replay.
    Used,
}

/// A consistent view of one user, inside the store's serialised section
/// (see [`LoginStore::authenticate`]).
pub trait Snapshot {
    fn user(&self) -> &User;
    fn tokens(&self) -> &[Token];
    /// Whether the user has a backup code with this digest, and whether it is used.
    fn backup_code(&self, digest: &[u8; 32]) -> Result<Option<BackupCodeState>, StoreError>;
    /// The user's email/SMS codes created after `since`, in any state.
    fn oob_codes(&self, since: Timestamp) -> Result<Vec<crate::oob::OobCode>, StoreError>;
}

/// What an evaluator concluded from a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evaluation {
    Decided(Verdict),
    /// The decision needs work that must not run inside the store (argon2):
    /// the engine does it and applies the result with [`LoginStore::commit_attempt`].
    Deferred,
}

/// Runs inside the store's serialised section, so it must be quick and
/// must not block: code checks yes, password hashing no.
pub type Evaluator = Box<dyn FnOnce(&dyn Snapshot) -> Evaluation + Send>;

/// One login to look up, evaluate and apply in a single serialised step.
pub struct AuthenticateRequest {
    pub realm: String,
    pub username: String,
    pub access: AccessRecord,
    pub policy: Policy,
    /// Base audit record; result and reason are filled in from the outcome.
    pub audit: AuditRecord,
    /// Second step of a challenge: the state to consume (once) before
    /// evaluating; a state already used refuses the attempt.
    pub state: Option<StateTicket>,
    pub evaluate: Evaluator,
}

impl std::fmt::Debug for AuthenticateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticateRequest").field("realm", &self.realm).field("username", &self.username).finish()
    }
}

#[derive(Debug)]
pub enum Authentication {
    /// No such user; a reject was audited.
    UnknownUser,
    /// The evaluator decided and the attempt was applied (durably).
    Decided { user_id: UserId, verdict: Verdict, outcome: AuthOutcome },
    /// The evaluator deferred; nothing was written.
    Deferred { user: Box<User>, tokens: Vec<Token> },
}

/// The login path: what [`crate::auth::Authenticator`] needs to decide and
/// record one attempt. See the module docs of [`crate::store`] for the rules.
#[async_trait]
pub trait LoginStore: Send + Sync {
    /// The user and all their tokens, in one consistent read.
    async fn auth_subject(&self, realm: &str, username: &str) -> Result<Option<(User, Vec<Token>)>, StoreError>;
    /// Applies one attempt atomically (see [`AuthAttempt`]); durable on return.
    async fn commit_attempt(&self, attempt: AuthAttempt) -> Result<AuthOutcome, StoreError>;
    /// The hot path of a login: reads the user, runs the evaluator and
    /// applies its verdict, all in one serialised step (one round trip to
    /// the store, one consistent state). Durable on return when decided.
    async fn authenticate(&self, request: AuthenticateRequest) -> Result<Authentication, StoreError>;

    /// Runs the evaluator against one consistent read of the user without
    /// writing anything (no audit, no challenge State consumed): for a
    /// replica that must have the primary take a factor before it applies
    /// the verdict, which it then does with [`LoginStore::commit_attempt`] (the
    /// serialised re-check of lock and replay). `None` when the user does
    /// not exist (the evaluator is not run). Stores that cannot read
    /// outside their serialised step answer `Unsupported`.
    async fn evaluate_read_only(
        &self,
        realm: &str,
        username: &str,
        evaluate: Evaluator,
    ) -> Result<Option<(User, Vec<Token>, Evaluation)>, StoreError> {
        let _ = (realm, username, evaluate);
        Err(StoreError::Unsupported("evaluating a login outside the store's serialised step"))
    }

    /// Whether the user has a backup code with this digest (in the current
    /// set), and whether it is used.
    async fn backup_code(&self, user: &UserId, digest: &[u8; 32]) -> Result<Option<BackupCodeState>, StoreError>;
    /// Records a code about to be sent, unless `limit` codes were recorded
    /// for its user after `since` (then returns false and records nothing).
    /// Checked and recorded in one serialised step, so the per-user limit
    /// holds across concurrent logins and nodes. Durable on return.
    async fn reserve_oob_code(
        &self,
        code: &crate::oob::OobCode,
        since: Timestamp,
        limit: u32,
    ) -> Result<bool, StoreError>;
    /// The user's codes created after `since`, in any state.
    async fn oob_codes(&self, user: &UserId, since: Timestamp) -> Result<Vec<crate::oob::OobCode>, StoreError>;
    /// Forgets used challenge states that have expired anyway.
    async fn prune_states(&self, now: Timestamp) -> Result<u64, StoreError>;
}

/// The refusal, if any, that applies before a verified factor is consumed.
/// Shared by the backends so their decisions cannot diverge.
pub fn blocking_outcome(disabled: bool, lock: &LockState, now: Timestamp) -> Option<AuthOutcome> {
    if disabled {
        return Some(AuthOutcome::Disabled);
    }
    match lock.block(now) {
        Some(crate::lockout::Block::Locked) => Some(AuthOutcome::Locked),
        Some(crate::lockout::Block::Throttled { .. }) => Some(AuthOutcome::Throttled),
        None => None,
    }
}

/// The audit reason of a replayed TOTP/HOTP or email/SMS code.
pub const REPLAYED_CODE: &str = "replayed_code";
/// The audit reason of a replayed backup code.
pub const REPLAYED_BACKUP_CODE: &str = "replayed_backup_code";

/// How an attempt ends, given what the backend found when it tried to
/// consume the verified factor (`consumed`: its conditional update took the
/// code, backup code or grace login; ignored for other verdicts). The
/// outcome and the user's next lock state; the backends persist both and
/// decide nothing themselves, so they cannot disagree. Call only once
/// [`blocking_outcome`] has found nothing blocking.
pub fn settle(
    verdict: &Verdict,
    consumed: bool,
    lock: &LockState,
    policy: &Policy,
    now: Timestamp,
) -> (AuthOutcome, LockState) {
    match verdict {
        Verdict::Verified(_) if consumed => (AuthOutcome::Accepted, lock.after_success()),
        Verdict::Verified(f) => match f.base() {
            // The grace count ran out under a concurrent login: a refusal,
            // as if the policy had said no.
            Factor::Grace { .. } | Factor::FirstFactorOnly => (AuthOutcome::Refused, *lock),
            // Verified against the engine's read, used since (a concurrent
            // submit of the same code, or another node): a replay.
            _ => (AuthOutcome::Replayed, *lock),
        },
        Verdict::Replayed(_) => (AuthOutcome::Replayed, *lock),
        Verdict::Failed(_) => {
            let next = lock.after_failure(policy, now);
            (AuthOutcome::Failed { failures: next.failures, locked: next.is_locked(now), replay: false }, next)
        }
        Verdict::Refused(_) => (AuthOutcome::Refused, *lock),
        Verdict::Challenge => (AuthOutcome::Challenged, *lock),
    }
}

/// Fills an attempt's audit record from the outcome the store decided.
///
/// A reason already on the record is context from the engine (which source
/// checked the first factor) and is kept after the outcome's reason.
pub fn finish_attempt_audit(audit: &mut AuditRecord, verdict: &Verdict, outcome: &AuthOutcome) {
    use crate::audit::AuditResult::{Accept, Reject};
    let context = audit.reason.take();
    let base;
    let verdict = match verdict {
        Verdict::Verified(f @ Factor::Claimed(_)) => {
            base = Verdict::Verified(f.base().clone());
            &base
        }
        v => v,
    };
    let (result, reason): (_, String) = match outcome {
        AuthOutcome::Accepted => (
            Accept,
            match verdict {
                Verdict::Verified(Factor::BackupCode { .. }) => "backup_code".into(),
                Verdict::Verified(Factor::FirstFactorOnly) => "single_factor_exception".into(),
                Verdict::Verified(Factor::Grace { .. }) => "grace_login".into(),
                Verdict::Verified(Factor::OobCode { channel, .. }) => format!("{}_code", channel.as_str()),
                _ => "otp".into(),
            },
        ),
        AuthOutcome::Replayed => (
            Reject,
            match verdict {
                Verdict::Replayed(r) => (*r).into(),
                Verdict::Verified(Factor::BackupCode { .. }) => REPLAYED_BACKUP_CODE.into(),
                _ => REPLAYED_CODE.into(),
            },
        ),
        AuthOutcome::Failed { locked, failures, .. } => {
            let why = match verdict {
                Verdict::Failed(r) | Verdict::Refused(r) | Verdict::Replayed(r) => *r,
                Verdict::Verified(_) | Verdict::Challenge => "failed",
            };
            if *locked {
                (Reject, format!("{why}; failure {failures}, now locked"))
            } else {
                (Reject, format!("{why}; failure {failures}"))
            }
        }
        AuthOutcome::Locked => (Reject, "locked".into()),
        AuthOutcome::Throttled => (Reject, "throttled".into()),
        AuthOutcome::Disabled => (Reject, "disabled".into()),
        AuthOutcome::Challenged => (crate::audit::AuditResult::Challenge, "password_ok; code requested".into()),
        AuthOutcome::Refused => (
            Reject,
            match verdict {
                Verdict::Refused(r) | Verdict::Failed(r) | Verdict::Replayed(r) => (*r).into(),
                Verdict::Verified(Factor::Grace { .. }) => "grace_exhausted".into(),
                Verdict::Verified(_) | Verdict::Challenge => "refused".into(),
            },
        ),
    };
    audit.result = result;
    audit.reason = Some(match context {
        Some(c) => format!("{reason} (via {c})"),
        None => reason,
    });
}
