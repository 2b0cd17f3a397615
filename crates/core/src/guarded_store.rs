//! A [`Store`] that refuses administrative writes while this node is a
//! replica (the primary owns the data; its change stream would overwrite
//! a local edit anyway) or fenced (it may have been replaced as primary and
//! has not confirmed its role). Logins and everything node-local go
//! through: a replica authenticates on its own.
//!
//! On a replica it also enforces cluster-wide replay protection: before a
//! login consumes a code, a backup code or a challenge State, the primary
//! takes it ([`ReplayGuard`]), so whatever was accepted on one node is
//! refused on every other node while the primary answers.

use std::sync::Arc;

use async_trait::async_trait;
use std::sync::RwLock;

use crate::audit::chain::{ChainedAudit, Report as ChainReport};
use crate::audit::{AuditQuery, AuditRecord};
use crate::clock::Timestamp;
use crate::model::{
    AdminAccount, AdminId, ApiKey, InventoryToken, RadiusClient, ReplyRule, SecretRotation, SecretSlot, Token, TokenId,
    User, UserId,
};
use crate::oob::OobCode;
use crate::policy::Policy;
use crate::realm::Realm;
use crate::replication::{ClaimItem, read_only_message};
use crate::store::{
    AdminAttempt, AdminChange, AdminStore, AuditStore, AuthAttempt, AuthOutcome, AuthenticateRequest, Authentication,
    BackupCodeState, ClockSample, ConfigStore, Evaluation, Evaluator, Factor, InventoryQuery, KeyStore, LoginStore,
    MetaKey, SealedChange, SealedColumn, SealedValue, Store, StoreError, UserChange, UserQuery, UserStore, Verdict,
};

/// What the primary said to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Taken now: this node may accept.
    Claimed,
    /// Another node used it first. For a code or backup code the primary's
    /// state has been merged here, so the local check refuses it as a replay.
    Used,
    /// The primary refused it (outside what the policy allows, unknown
    /// user); audited there. The login is refused, not counted.
    Refused,
    /// No answer in time: this node decides on its own data.
    NoAnswer,
}

/// Cluster-wide replay protection on a replica: the primary takes each
/// consumed factor before this node accepts it.
#[async_trait]
pub trait ReplayGuard: Send + Sync {
    async fn claim(&self, item: ClaimItem) -> ClaimOutcome;
}

/// Whether this node takes administrative writes, shared with whatever
/// follows the primary (which flips it on promotion, demotion and fencing).
#[derive(Default)]
pub struct WriteGate {
    /// `Some(primary)` while this node is a replica.
    replica_of: RwLock<Option<String>>,
    /// `Some(why)` while this node is fenced.
    fence: RwLock<Option<String>>,
    /// Told the user id of every login decided here while a replica, so the
    /// forwarder wakes up (the login's state itself is in the store's outbox).
    on_login: std::sync::OnceLock<Box<dyn Fn(i64) + Send + Sync>>,
    replay_guard: std::sync::OnceLock<Arc<dyn ReplayGuard>>,
}

impl std::fmt::Debug for WriteGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteGate")
            .field("replica_of", &self.replica_of)
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}

impl WriteGate {
    pub fn set_replica_of(&self, primary: Option<String>) {
        *self.replica_of.write().unwrap_or_else(|e| e.into_inner()) = primary;
    }

    pub fn set_fence(&self, why: Option<String>) {
        *self.fence.write().unwrap_or_else(|e| e.into_inner()) = why;
    }

    pub fn fence(&self) -> Option<String> {
        self.fence.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sets the login hook (once).
    pub fn on_login(&self, hook: impl Fn(i64) + Send + Sync + 'static) {
        let _ = self.on_login.set(Box::new(hook));
    }

    fn login_decided(&self, user: i64, outcome: &AuthOutcome) {
        if !matches!(outcome, AuthOutcome::Accepted | AuthOutcome::Failed { .. }) {
            return;
        }
        if self.replica_of.read().unwrap_or_else(|e| e.into_inner()).is_some()
            && let Some(hook) = self.on_login.get()
        {
            hook(user);
        }
    }

    /// Sets the replay guard (once); used only while a replica.
    pub fn set_replay_guard(&self, guard: Arc<dyn ReplayGuard>) {
        let _ = self.replay_guard.set(guard);
    }

    fn replay_guard(&self) -> Option<Arc<dyn ReplayGuard>> {
        let replica = self.replica_of.read().unwrap_or_else(|e| e.into_inner()).is_some();
        if replica { self.replay_guard.get().cloned() } else { None }
    }

    pub fn replica_of(&self) -> Option<String> {
        self.replica_of.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn writable(&self) -> Result<(), StoreError> {
        if let Some(primary) = &*self.replica_of.read().unwrap_or_else(|e| e.into_inner()) {
            return Err(StoreError::ReadOnly(read_only_message(Some(primary))));
        }
        if let Some(why) = &*self.fence.read().unwrap_or_else(|e| e.into_inner()) {
            return Err(StoreError::Fenced(format!("this node takes no changes now: {why}")));
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct GuardedStore {
    inner: Arc<dyn Store>,
    gate: Arc<WriteGate>,
}

impl GuardedStore {
    pub fn new(inner: Arc<dyn Store>, gate: Arc<WriteGate>) -> Self {
        GuardedStore { inner, gate }
    }

    /// A verified code or backup code on a replica: the primary takes it
    /// first; the local store then applies the attempt as usual (and
    /// refuses it as a replay if the primary said another node used it).
    async fn commit_guarded(
        &self,
        mut attempt: AuthAttempt,
        guard: Option<Arc<dyn ReplayGuard>>,
    ) -> Result<(AuthOutcome, Verdict), StoreError> {
        let item = match &attempt.verdict {
            Verdict::Verified(Factor::Token { token_id, matched, drift }) => {
                Some(ClaimItem::Step { user: attempt.user_id.0, token: token_id.0, step: *matched, drift: *drift })
            }
            Verdict::Verified(Factor::BackupCode { digest }) => {
                Some(ClaimItem::BackupCode { user: attempt.user_id.0, digest: digest.to_vec() })
            }
            _ => None,
        };
        if let (Some(guard), Some(item)) = (guard, item) {
            match guard.claim(item).await {
                ClaimOutcome::Refused => attempt.verdict = Verdict::Refused("refused_by_primary"),
                ClaimOutcome::Claimed => {
                    if let Verdict::Verified(f) = &mut attempt.verdict {
                        *f = Factor::Claimed(Box::new(f.clone()));
                    }
                }
                ClaimOutcome::Used | ClaimOutcome::NoAnswer => {}
            }
        }
        let (user, verdict) = (attempt.user_id, attempt.verdict.clone());
        let outcome = self.inner.commit_attempt(attempt).await?;
        self.gate.login_decided(user.0, &outcome);
        Ok((outcome, verdict))
    }

    fn writable(&self) -> Result<(), StoreError> {
        self.gate.writable()
    }

    /// The path when the primary did not answer for the challenge State: the
    /// store's own step consumes it here (and journals it for the primary); a
    /// verified factor is still deferred out of the step, claimed, and
    /// applied through `commit_attempt`.
    async fn authenticate_in_step(
        &self,
        mut request: AuthenticateRequest,
        guard: Arc<dyn ReplayGuard>,
    ) -> Result<Authentication, StoreError> {
        let held: Arc<std::sync::Mutex<Option<Verdict>>> = Arc::default();
        let evaluate = std::mem::replace(&mut request.evaluate, Box::new(|_| Evaluation::Deferred));
        let hold = held.clone();
        request.evaluate = Box::new(move |snapshot| match evaluate(snapshot) {
            Evaluation::Decided(v @ Verdict::Verified(Factor::Token { .. } | Factor::BackupCode { .. })) => {
                *hold.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
                Evaluation::Deferred
            }
            other => other,
        });
        let (access, policy, audit) = (request.access.clone(), request.policy.clone(), request.audit.clone());
        let auth = self.inner.authenticate(request).await?;
        let verdict = held.lock().unwrap_or_else(|e| e.into_inner()).take();
        match (auth, verdict) {
            (Authentication::Deferred { user, .. }, Some(verdict)) => {
                let attempt = AuthAttempt { user_id: user.id, access, verdict, policy, audit };
                let (outcome, verdict) = self.commit_guarded(attempt, Some(guard)).await?;
                Ok(Authentication::Decided { user_id: user.id, verdict, outcome })
            }
            (auth, _) => {
                if let Authentication::Decided { user_id, outcome, .. } = &auth {
                    self.gate.login_decided(user_id.0, outcome);
                }
                Ok(auth)
            }
        }
    }
}

/// Implements a role of the port for [`GuardedStore`] by forwarding every
/// method to the inner store; `writes` check [`WriteGate`] first. Methods
/// that do more are written out in the `custom` part.
macro_rules! forward {
    (
        $role:ident;
        reads { $(fn $r:ident(&self $(, $ra:ident: $rt:ty)*) -> $rret:ty;)* }
        writes { $(fn $w:ident(&self $(, $wa:ident: $wt:ty)*) -> $wret:ty;)* }
        $(custom { $($custom:tt)* })?
    ) => {
        #[async_trait]
        impl $role for GuardedStore {
            $(async fn $r(&self $(, $ra: $rt)*) -> $rret {
                self.inner.$r($($ra),*).await
            })*
            $(async fn $w(&self $(, $wa: $wt)*) -> $wret {
                self.writable()?;
                self.inner.$w($($wa),*).await
            })*
            $($($custom)*)?
        }
    };
}

forward! {
    LoginStore;
    reads {
        fn auth_subject(&self, realm: &str, username: &str) -> Result<Option<(User, Vec<Token>)>, StoreError>;
        fn evaluate_read_only(&self, realm: &str, username: &str, evaluate: Evaluator)
            -> Result<Option<(User, Vec<Token>, Evaluation)>, StoreError>;
        fn backup_code(&self, user: &UserId, digest: &[u8; 32]) -> Result<Option<BackupCodeState>, StoreError>;
        fn reserve_oob_code(&self, code: &OobCode, since: Timestamp, limit: u32) -> Result<bool, StoreError>;
        fn oob_codes(&self, user: &UserId, since: Timestamp) -> Result<Vec<OobCode>, StoreError>;
        fn prune_states(&self, now: Timestamp) -> Result<u64, StoreError>;
    }
    writes {}
    custom {
        async fn commit_attempt(&self, attempt: AuthAttempt) -> Result<AuthOutcome, StoreError> {
            self.commit_guarded(attempt, self.gate.replay_guard()).await.map(|(outcome, _)| outcome)
        }

        async fn authenticate(&self, request: AuthenticateRequest) -> Result<Authentication, StoreError> {
            let Some(guard) = self.gate.replay_guard() else {
                let auth = self.inner.authenticate(request).await?;
                if let Authentication::Decided { user_id, outcome, .. } = &auth {
                    self.gate.login_decided(user_id.0, outcome);
                }
                return Ok(auth);
            };
            let mut request = request;
            // A challenge State is taken at the primary before anything else: a
            // State used on another node skips no password here.
            let mut state_taken = request.state.is_none();
            if let Some(ticket) = request.state {
                let item = ClaimItem::State { nonce: ticket.nonce.to_vec(), expires_at: ticket.expires_at.0 };
                match guard.claim(item).await {
                    ClaimOutcome::Claimed => state_taken = true,
                    ClaimOutcome::Used | ClaimOutcome::Refused => {
                        request.evaluate = Box::new(|_| Evaluation::Decided(Verdict::Refused("state_reused")));
                    }
                    ClaimOutcome::NoAnswer => {}
                }
            }
            if !state_taken {
                return self.authenticate_in_step(request, guard).await;
            }
            // The State (if any) is the cluster's now: evaluate on a read, have
            // the primary take the factor, apply once (one trip through this
            // node's writer instead of two).
            let AuthenticateRequest { realm, username, access, policy, audit, state, evaluate } = request;
            match self.inner.evaluate_read_only(&realm, &username, evaluate).await {
                Ok(Some((user, tokens, Evaluation::Deferred))) => {
                    Ok(Authentication::Deferred { user: Box::new(user), tokens })
                }
                Ok(Some((user, _, Evaluation::Decided(verdict)))) => {
                    let attempt = AuthAttempt { user_id: user.id, access, verdict, policy, audit };
                    let (outcome, verdict) = self.commit_guarded(attempt, Some(guard)).await?;
                    Ok(Authentication::Decided { user_id: user.id, verdict, outcome })
                }
                // Unknown here: the store's step audits it (the evaluator is not run).
                Ok(None) | Err(StoreError::Unsupported(_)) => {
                    let request = AuthenticateRequest {
                        realm,
                        username,
                        access,
                        policy,
                        audit,
                        state,
                        evaluate: Box::new(|_| Evaluation::Decided(Verdict::Refused("not_evaluated"))),
                    };
                    self.inner.authenticate(request).await
                }
                Err(e) => Err(e),
            }
        }
    }
}

forward! {
    UserStore;
    reads {
        fn user_by_name(&self, realm: &str, username: &str) -> Result<Option<User>, StoreError>;
        fn user_by_id(&self, id: &UserId) -> Result<Option<User>, StoreError>;
        fn list_users(&self, query: &UserQuery, now: Timestamp) -> Result<Vec<User>, StoreError>;
        fn count_users(&self) -> Result<u64, StoreError>;
        fn token_by_id(&self, id: &TokenId) -> Result<Option<Token>, StoreError>;
        fn token_by_serial(&self, serial: &str) -> Result<Option<Token>, StoreError>;
        fn tokens_for_user(&self, user: &UserId) -> Result<Vec<Token>, StoreError>;
        fn list_tokens(&self, limit: u32, offset: u32) -> Result<Vec<Token>, StoreError>;
        fn backup_codes_left(&self, user: &UserId) -> Result<u32, StoreError>;
        fn inventory(&self, query: &InventoryQuery) -> Result<Vec<InventoryToken>, StoreError>;
        fn inventory_item(&self, serial: &str) -> Result<Option<InventoryToken>, StoreError>;
        fn groups_of(&self, user: UserId) -> Result<Vec<String>, StoreError>;
        fn groups(&self) -> Result<Vec<(String, Vec<UserId>)>, StoreError>;
    }
    writes {
        fn create_user(&self, user: &User, audit: AuditRecord) -> Result<(), StoreError>;
        fn update_user(&self, id: &UserId, change: UserChange, audit: AuditRecord) -> Result<(), StoreError>;
        fn create_token(&self, token: &Token, audit: AuditRecord) -> Result<(), StoreError>;
        fn delete_token(&self, id: &TokenId, audit: AuditRecord) -> Result<(), StoreError>;
        fn activate_token(&self, id: &TokenId, matched: i64, drift: i32, audit: AuditRecord) -> Result<bool, StoreError>;
        fn resync_token(&self, id: &TokenId, floor: i64, drift: i32, audit: AuditRecord) -> Result<(), StoreError>;
        fn replace_backup_codes(&self, user: &UserId, digests: &[[u8; 32]], at: Timestamp, audit: AuditRecord)
            -> Result<(), StoreError>;
        fn add_inventory(&self, items: &[InventoryToken], audit: AuditRecord) -> Result<(), StoreError>;
        fn assign_inventory(&self, item: i64, token: &Token, audit: AuditRecord) -> Result<(), StoreError>;
        fn unassign_inventory(&self, item: i64, audit: AuditRecord) -> Result<(), StoreError>;
        fn add_group_member(&self, group: &str, user: UserId, audit: AuditRecord) -> Result<(), StoreError>;
        fn remove_group_member(&self, group: &str, user: UserId, audit: AuditRecord) -> Result<(), StoreError>;
    }
}

forward! {
    ConfigStore;
    reads {
        fn policy(&self) -> Result<Policy, StoreError>;
        fn api_key_by_digest(&self, digest: &[u8; 32]) -> Result<Option<ApiKey>, StoreError>;
        fn list_api_keys(&self) -> Result<Vec<ApiKey>, StoreError>;
        fn realms(&self) -> Result<Vec<Realm>, StoreError>;
        fn directory_cache_generation(&self) -> Result<i64, StoreError>;
        fn radius_clients(&self) -> Result<Vec<RadiusClient>, StoreError>;
        // Node-local learning about a client, not an administrative change.
        fn mark_radius_client_signed(&self, id: i64) -> Result<(), StoreError>;
        // The same: which secret this node's clients use (audited locally).
        fn record_radius_secret_use(&self, id: i64, changed_at: Timestamp, slot: SecretSlot, at: Timestamp,
            first: AuditRecord) -> Result<bool, StoreError>;
        fn reply_rules(&self) -> Result<Vec<ReplyRule>, StoreError>;
    }
    writes {
        fn set_policy(&self, policy: &Policy, audit: AuditRecord) -> Result<(), StoreError>;
        fn create_api_key(&self, key: &ApiKey, audit: AuditRecord) -> Result<(), StoreError>;
        fn delete_api_key(&self, name: &str, audit: AuditRecord) -> Result<(), StoreError>;
        fn put_realm(&self, realm: &Realm, audit: AuditRecord) -> Result<(), StoreError>;
        fn delete_realm(&self, name: &str, audit: AuditRecord) -> Result<(), StoreError>;
        fn bump_directory_cache_generation(&self, audit: AuditRecord) -> Result<i64, StoreError>;
        fn create_radius_client(&self, client: &RadiusClient, audit: AuditRecord) -> Result<(), StoreError>;
        fn delete_radius_client(&self, name: &str, audit: AuditRecord) -> Result<(), StoreError>;
        fn update_radius_client(&self, client: &RadiusClient, audit: AuditRecord) -> Result<(), StoreError>;
        fn set_radius_client_secret(&self, id: i64, expected: &[u8], sealed_secret: &[u8],
            rotation: &SecretRotation, audit: AuditRecord) -> Result<(), StoreError>;
        fn drop_expired_radius_secret(&self, id: i64, now: Timestamp, audit: AuditRecord) -> Result<bool, StoreError>;
        fn create_reply_rule(&self, rule: &ReplyRule, audit: AuditRecord) -> Result<(), StoreError>;
        fn delete_reply_rule(&self, id: i64, audit: AuditRecord) -> Result<(), StoreError>;
    }
}

forward! {
    AdminStore;
    reads {
        fn admin_by_name(&self, name: &str) -> Result<Option<AdminAccount>, StoreError>;
        fn admin_by_id(&self, id: &AdminId) -> Result<Option<AdminAccount>, StoreError>;
        fn list_admins(&self) -> Result<Vec<AdminAccount>, StoreError>;
        // A sign-in is counted on the node it happens on, replica or not.
        fn commit_admin_attempt(&self, attempt: AdminAttempt) -> Result<AuthOutcome, StoreError>;
    }
    writes {
        fn create_admin(&self, admin: &AdminAccount, audit: AuditRecord) -> Result<(), StoreError>;
        fn update_admin(&self, id: &AdminId, change: AdminChange, audit: AuditRecord) -> Result<(), StoreError>;
    }
}

// The audit log is never refused: every node writes its own records (one hash chain per node).
forward! {
    AuditStore;
    reads {
        fn append_audit(&self, record: AuditRecord) -> Result<(), StoreError>;
        fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;
        fn prune_audit(&self, before: Timestamp, limit: u32) -> Result<u64, StoreError>;
        fn audit_after(&self, after_id: i64, limit: u32) -> Result<Vec<ChainedAudit>, StoreError>;
        fn verify_audit_chain(&self) -> Result<ChainReport, StoreError>;
    }
    writes {}
}

forward! {
    KeyStore;
    reads {
        fn ping(&self) -> Result<(), StoreError>;
        fn sealed_values(&self, column: SealedColumn, after: Option<&str>, limit: u32)
            -> Result<Vec<SealedValue>, StoreError>;
        fn meta_value(&self, key: MetaKey<'_>) -> Result<Option<Vec<u8>>, StoreError>;
        fn node_key_reports(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
        fn measure_database_clock(&self) -> Result<Option<ClockSample>, StoreError>;
    }
    writes {
        fn replace_sealed(&self, column: SealedColumn, changes: Vec<SealedChange>) -> Result<u64, StoreError>;
    }
    custom {
        fn connection_clock_sample(&self) -> Option<ClockSample> {
            self.inner.connection_clock_sample()
        }

        async fn set_meta_value(
            &self,
            key: MetaKey<'_>,
            value: Option<Vec<u8>>,
            audit: Option<AuditRecord>,
        ) -> Result<(), StoreError> {
            if key.replicated() {
                self.writable()?;
            }
            self.inner.set_meta_value(key, value, audit).await
        }
    }
}
