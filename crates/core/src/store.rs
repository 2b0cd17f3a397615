//! The storage port. Every backend (embedded SQLite, PostgreSQL) implements
//! [`Store`] and passes the same conformance suite.
//!
//! Two rules shape this trait:
//! * Every state change carries its audit record and is applied atomically
//!   with it, so the audit trail cannot miss an acknowledged change.
//! * Authentication state changes are *conditional* ([`Store::commit_attempt`]):
//!   the backend re-checks lock and replay state inside its serialised
//!   transaction, so concurrent attempts and several nodes stay exact. A
//!   result is returned only once it is durable.

use async_trait::async_trait;

use crate::audit::chain::{ChainedAudit, Report as ChainReport};
use crate::audit::{AuditQuery, AuditRecord};
use crate::clock::Timestamp;
use crate::keys::KeyError;
use crate::lockout::LockState;
use crate::model::{
    AccessRecord, AdminAccount, AdminId, ApiKey, InventoryToken, RadiusClient, ReplyRule, Token, TokenId, User, UserId,
    UserStatus,
};
use crate::policy::Policy;
use crate::realm::Realm;
use crate::wildcard::Wildcard;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database is corrupt or not a tessera database: {0}")]
    Corrupt(String),
    #[error("database schema version {found} is newer than this tessera supports ({supported}); use a newer tessera")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("master key does not match this database: {0}")]
    WrongKey(KeyError),
    #[error("database not initialised (run `tessera init`): {0}")]
    NotInitialised(String),
    #[error("database error: {0}")]
    Backend(String),
    /// A change refused because this node is a replica (the message names
    /// the primary; see `replication::read_only_message`).
    #[error("{0}")]
    ReadOnly(String),
    /// A change refused because this node is fenced: it may have been
    /// replaced as primary and has not confirmed its role (the message says
    /// why and what to run; see `replication::fencing`).
    #[error("{0}")]
    Fenced(String),
    /// The operation is not available through this store (a wrapper that
    /// does not pass it on).
    #[error("{0} is not supported by this store")]
    Unsupported(&'static str),
}

/// A listing filter for users.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    pub realm: Option<String>,
    pub pattern: Option<Wildcard>,
    pub status: Option<UserStatus>,
    pub limit: u32,
    pub offset: u32,
}

/// A listing filter for the token inventory.
#[derive(Debug, Clone, Default)]
pub struct InventoryQuery {
    pub assigned: Option<bool>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub limit: u32,
    pub offset: u32,
}

/// An administrative change to one user.
#[derive(Debug, Clone)]
pub enum UserChange {
    /// argon2id PHC string, or `None` to remove the local password.
    SetPassword(Option<String>),
    SetDisabled(bool),
    /// Clears the failure count, lock and throttle.
    Unlock,
    /// Removes tokens, backup codes, lock state and last-access records;
    /// the user is unregistered again. The password is kept.
    Reset,
    Delete,
}

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
/// (see [`Store::authenticate`]).
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
    /// the engine does it and applies the result with [`Store::commit_attempt`].
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

/// Storage for everything tessera persists. See the module docs for the rules.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    // --- users
    async fn create_user(&self, user: &User, audit: AuditRecord) -> Result<(), StoreError>;
    async fn user_by_name(&self, realm: &str, username: &str) -> Result<Option<User>, StoreError>;
    async fn user_by_id(&self, id: &UserId) -> Result<Option<User>, StoreError>;
    async fn list_users(&self, query: &UserQuery, now: Timestamp) -> Result<Vec<User>, StoreError>;
    async fn count_users(&self) -> Result<u64, StoreError>;
    /// Applies `change`; NotFound if the user does not exist.
    async fn update_user(&self, id: &UserId, change: UserChange, audit: AuditRecord) -> Result<(), StoreError>;

    // --- tokens
    /// Inserts a token. An active token marks its user registered.
    async fn create_token(&self, token: &Token, audit: AuditRecord) -> Result<(), StoreError>;
    async fn token_by_id(&self, id: &TokenId) -> Result<Option<Token>, StoreError>;
    async fn token_by_serial(&self, serial: &str) -> Result<Option<Token>, StoreError>;
    async fn tokens_for_user(&self, user: &UserId) -> Result<Vec<Token>, StoreError>;
    /// All tokens, ordered by serial, for inventory listings.
    async fn list_tokens(&self, limit: u32, offset: u32) -> Result<Vec<Token>, StoreError>;
    /// Deletes a token; a user left without active tokens becomes unregistered.
    async fn delete_token(&self, id: &TokenId, audit: AuditRecord) -> Result<(), StoreError>;
    /// Confirms a pending token with the code that matched `matched`: it
    /// becomes active with its floor at `matched + 1`, and the user registered.
    /// Returns false (and changes nothing) if the token is no longer pending.
    async fn activate_token(
        &self,
        id: &TokenId,
        matched: i64,
        drift: i32,
        audit: AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Sets a token's floor and drift after an admin resync. The floor never
    /// moves backwards (a resync must not re-open used codes).
    async fn resync_token(&self, id: &TokenId, floor: i64, drift: i32, audit: AuditRecord) -> Result<(), StoreError>;

    // --- authentication
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
    /// the verdict, which it then does with [`Store::commit_attempt`] (the
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
    /// Replaces the user's backup codes with a fresh set (old ones void).
    async fn replace_backup_codes(
        &self,
        user: &UserId,
        digests: &[[u8; 32]],
        at: Timestamp,
        audit: AuditRecord,
    ) -> Result<(), StoreError>;
    async fn backup_codes_left(&self, user: &UserId) -> Result<u32, StoreError>;

    // --- email and SMS codes (see oob.rs)
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

    // --- policy
    async fn policy(&self) -> Result<Policy, StoreError>;
    async fn set_policy(&self, policy: &Policy, audit: AuditRecord) -> Result<(), StoreError>;

    // --- API keys
    async fn create_api_key(&self, key: &ApiKey, audit: AuditRecord) -> Result<(), StoreError>;
    async fn api_key_by_digest(&self, digest: &[u8; 32]) -> Result<Option<ApiKey>, StoreError>;
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError>;
    async fn delete_api_key(&self, name: &str, audit: AuditRecord) -> Result<(), StoreError>;

    // --- web-console administrators (issue 7)
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

    // --- RADIUS clients
    // --- hardware token inventory ---
    /// Adds seeds, all or none: a serial already in the inventory or used by
    /// a token is a conflict.
    async fn add_inventory(&self, items: &[InventoryToken], audit: AuditRecord) -> Result<(), StoreError>;
    async fn inventory(&self, query: &InventoryQuery) -> Result<Vec<InventoryToken>, StoreError>;
    async fn inventory_item(&self, serial: &str) -> Result<Option<InventoryToken>, StoreError>;
    /// Makes `token` (built from the seed) the user's, if the seed is still
    /// unassigned (else `Conflict`), atomically.
    async fn assign_inventory(&self, item: i64, token: &Token, audit: AuditRecord) -> Result<(), StoreError>;
    /// Deletes the token made from the seed and keeps the floor it reached.
    async fn unassign_inventory(&self, item: i64, audit: AuditRecord) -> Result<(), StoreError>;

    // --- realms (first-factor sources) ---
    /// Creates or replaces the realm `realm.name`.
    async fn put_realm(&self, realm: &Realm, audit: AuditRecord) -> Result<(), StoreError>;
    async fn realms(&self) -> Result<Vec<Realm>, StoreError>;
    async fn delete_realm(&self, name: &str, audit: AuditRecord) -> Result<(), StoreError>;
    /// A counter bumped by "flush the directory cache"; running nodes watch it.
    async fn directory_cache_generation(&self) -> Result<i64, StoreError>;
    async fn bump_directory_cache_generation(&self, audit: AuditRecord) -> Result<i64, StoreError>;

    async fn create_radius_client(&self, client: &RadiusClient, audit: AuditRecord) -> Result<(), StoreError>;
    async fn radius_clients(&self) -> Result<Vec<RadiusClient>, StoreError>;
    async fn delete_radius_client(&self, name: &str, audit: AuditRecord) -> Result<(), StoreError>;
    /// `auto` mode: remember that this client signs its requests.
    async fn mark_radius_client_signed(&self, id: i64) -> Result<(), StoreError>;

    // --- local groups
    async fn add_group_member(&self, group: &str, user: UserId, audit: AuditRecord) -> Result<(), StoreError>;
    async fn remove_group_member(&self, group: &str, user: UserId, audit: AuditRecord) -> Result<(), StoreError>;
    async fn groups_of(&self, user: UserId) -> Result<Vec<String>, StoreError>;
    /// Every group with its members' ids.
    async fn groups(&self) -> Result<Vec<(String, Vec<UserId>)>, StoreError>;

    // --- RADIUS reply rules
    async fn create_reply_rule(&self, rule: &ReplyRule, audit: AuditRecord) -> Result<(), StoreError>;
    async fn reply_rules(&self) -> Result<Vec<ReplyRule>, StoreError>;
    async fn delete_reply_rule(&self, id: i64, audit: AuditRecord) -> Result<(), StoreError>;

    // --- audit
    async fn append_audit(&self, record: AuditRecord) -> Result<(), StoreError>;
    async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;
    /// Deletes up to `limit` of the oldest audit records, in id order, up to
    /// the first that is not older than `before`; returns how many. Each
    /// node's hash chain is anchored at its last deleted record in the same
    /// transaction, so the rest still verifies.
    async fn prune_audit(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError>;
    /// Committed audit records with ids above `after_id`, oldest first, with
    /// their chain links (for forwarding, e.g. to syslog).
    async fn audit_after(&self, after_id: i64, limit: u32) -> Result<Vec<ChainedAudit>, StoreError>;
    /// Walks every node's audit hash chain in one consistent read and
    /// reports what was changed, deleted or reordered (see [`crate::audit::chain`]).
    async fn verify_audit_chain(&self) -> Result<ChainReport, StoreError>;
    /// Forgets used challenge states that have expired anyway.
    async fn prune_states(&self, now: Timestamp) -> Result<u64, StoreError>;

    /// A cheap read proving the store answers (for /healthz).
    async fn ping(&self) -> Result<(), StoreError>;

    // --- master key rotation (see rotation.rs)
    /// Up to `limit` values of `column`, in row order, after row `after`.
    async fn sealed_values(
        &self,
        column: SealedColumn,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<SealedValue>, StoreError>;
    /// Replaces each sealed value only if it is still `old` (a concurrent
    /// change wins), all in one transaction; returns how many were replaced.
    async fn replace_sealed(&self, column: SealedColumn, changes: Vec<SealedChange>) -> Result<u64, StoreError>;
    /// A node-wide setting (rotation markers, stored keys, cursors); only
    /// keys under [`MetaKey`] are reachable.
    async fn meta_value(&self, key: MetaKey<'_>) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets (or with `None` removes) a [`MetaKey`] value, with its audit record if any.
    async fn set_meta_value(
        &self,
        key: MetaKey<'_>,
        value: Option<Vec<u8>>,
        audit: Option<AuditRecord>,
    ) -> Result<(), StoreError>;

    /// Every [`MetaKey::NodeKey`] value, by node name (in name order): which
    /// master key each node that shares this store has loaded, so a
    /// rotation can wait for all of them.
    ///
    /// The default is `Unsupported`, for wrappers that do not pass it on;
    /// callers then fall back to their own node's value
    /// (`rotation::node_reports`). Both backends implement it.
    async fn node_key_reports(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Err(StoreError::Unsupported("listing the nodes' key reports"))
    }

    // --- clocks (shared database mode)
    /// Measures this node's clock against the database server's now, on a
    /// pooled connection. `None` for a store without a server (embedded).
    async fn measure_database_clock(&self) -> Result<Option<ClockSample>, StoreError> {
        Ok(None)
    }

    /// The latest measurement taken when a new connection was opened (every
    /// new connection is measured), if any.
    fn connection_clock_sample(&self) -> Option<ClockSample> {
        None
    }
}

/// This node's clock against the database server's, for the clock check
/// of shared database mode: TOTP codes depend on agreeing clocks, and the
/// database is the one clock every node talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSample {
    /// This node's clock minus the database server's, in milliseconds,
    /// with the node's reading taken halfway through the round trip
    /// (positive: this node is ahead).
    pub offset_ms: i64,
    /// How long the measuring query took; the offset is exact to within half of it.
    pub round_trip_ms: i64,
    /// When it was measured, by this node's clock.
    pub at: Timestamp,
}

/// A column holding values sealed under the master key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SealedColumn {
    /// `tokens.secret`, row = token id.
    TokenSecret,
    /// `inventory.secret`, row = inventory id.
    InventorySecret,
    /// `radius_clients.secret`, row = client id.
    RadiusClientSecret,
    /// `realms.secrets`, row = realm name.
    RealmSecrets,
    /// Sealed node-wide values in `meta`, row = [`MetaKey::KeyCheck`] or [`MetaKey::BackupMacKey`] name.
    Meta,
    /// `admins.totp_secret` (web console administrators), row = admin id;
    /// NULL values (not yet enrolled) are skipped.
    AdminTotpSecret,
    /// This node's replication identity key (`repl_identity.key_sealed`,
    /// embedded database only), row = node name.
    NodeIdentity,
}

impl SealedColumn {
    pub const ALL: [SealedColumn; 7] = [
        SealedColumn::TokenSecret,
        SealedColumn::InventorySecret,
        SealedColumn::RadiusClientSecret,
        SealedColumn::RealmSecrets,
        SealedColumn::Meta,
        SealedColumn::AdminTotpSecret,
        SealedColumn::NodeIdentity,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SealedColumn::TokenSecret => "token secrets",
            SealedColumn::InventorySecret => "inventory secrets",
            SealedColumn::RadiusClientSecret => "RADIUS client secrets",
            SealedColumn::RealmSecrets => "realm secrets",
            SealedColumn::Meta => "key check and backup code key",
            SealedColumn::AdminTotpSecret => "admin TOTP secrets",
            SealedColumn::NodeIdentity => "this node's cluster identity",
        }
    }
}

/// One sealed value and the row it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedValue {
    pub row: String,
    pub sealed: Vec<u8>,
}

/// A re-sealed value to store in place of `old`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedChange {
    pub row: String,
    pub old: Vec<u8>,
    pub new: Vec<u8>,
}

/// The `meta` entries the rotation machinery reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey<'a> {
    /// The master key check value (sealed).
    KeyCheck,
    /// The backup code MAC key (sealed), stored before the first rotation.
    BackupMacKey,
    /// The rotation marker (JSON) that running nodes watch.
    KeyRotation,
    /// Which key a node has loaded (JSON), by node name.
    NodeKey(&'a str),
    /// The last audit record id a node's syslog output has queued (decimal),
    /// so records committed while it was down go out when it is back.
    SyslogCursor(&'a str),
}

impl MetaKey<'_> {
    /// The prefix of every [`MetaKey::NodeKey`] name (the node name follows).
    pub const NODE_KEY_PREFIX: &'static str = "node_key:";

    /// Whether the value is the cluster's (replicated to replicas, so only
    /// the primary may set it) rather than one node's.
    pub fn replicated(&self) -> bool {
        matches!(self, MetaKey::KeyCheck | MetaKey::BackupMacKey | MetaKey::KeyRotation)
    }

    /// The `meta` table key.
    pub fn name(&self) -> String {
        match self {
            MetaKey::KeyCheck => "key_check".into(),
            MetaKey::BackupMacKey => "backup_mac_key".into(),
            MetaKey::KeyRotation => "key_rotation".into(),
            MetaKey::NodeKey(node) => format!("{}{node}", Self::NODE_KEY_PREFIX),
            MetaKey::SyslogCursor(node) => format!("syslog_cursor:{node}"),
        }
    }
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
