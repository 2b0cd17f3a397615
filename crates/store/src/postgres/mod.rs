//! The PostgreSQL backend (issue 5): several tessera nodes share one
//! database.
//!
//! Same tables as the SQLite backend (`migrations/postgres/`), reached
//! through a `deadpool-postgres` pool of `tokio-postgres` connections.
//! Every change runs in one transaction with its audit record (the audit
//! insert is always its last statement, see [`audit_chain`]).
//!
//! Exactness across nodes: a login step (`authenticate`, `commit_attempt`)
//! locks its user's row (`SELECT … FOR NO KEY UPDATE`, which excludes
//! other login steps and admin updates of that user but not inserts that
//! merely reference it) for the whole read–evaluate–apply transaction, and
//! every consuming update is conditional as well (`counter <= matched`,
//! `used_at IS NULL`, `grace_used < limit`), so concurrent attempts on any
//! number of nodes are applied one at a time against the latest state.
//!
//! Connection loss: a failed statement or checkout is
//! [`StoreError::Unavailable`] (the request fails closed); the pool drops
//! closed connections when they come back and opens new ones on demand.
//!
//! The storage port's roles are implemented one file each, as for SQLite:
//! [`LoginStore`] here, `UserStore` in `users.rs`, `ConfigStore` in
//! `config.rs`, `AdminStore` in `admin_store.rs` (queries in `admins.rs`),
//! `AuditStore` in `audit.rs`, `KeyStore` in `keys.rs`.

mod admins;
/// The audit hash chain: linking under the head row lock, pruning, verification.
pub mod audit_chain;
mod clock;
mod db;
mod redact;
mod rows;
pub mod schema;
#[cfg(feature = "test-support")]
pub mod testing;
mod tls;

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use tessera_core::audit::AuditRecord;
use tessera_core::audit::chain::Report as ChainReport;
use tessera_core::clock::Timestamp;
use tessera_core::keys::Keyring;
use tessera_core::model::{Token, User, UserId, UserStatus};
use tessera_core::oob::OobCode;
use tessera_core::policy::Policy;
use tessera_core::random::Random;
use tessera_core::store::LoginStore;
use tessera_core::store::{
    AuthAttempt, AuthOutcome, AuthenticateRequest, Authentication, BackupCodeState, Evaluation, Factor, MetaKey,
    SealedColumn, Snapshot, StoreError, Verdict, blocking_outcome, finish_attempt_audit, settle,
};
use tokio_postgres::error::SqlState;

pub use redact::redact_url;
pub use schema::SCHEMA_VERSION;
pub use tls::PgTls;

use crate::sqlite::rows::{OOB_CODE_COLS, TOKEN_COLS, USER_COLS, kind_cols, token_kind};
use db::{exec, exec_raw, is_code, map_err, one, opt, pool_err, rows as query};

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PgOptions {
    pub config: tokio_postgres::Config,
    /// Connections in the pool.
    pub pool_size: usize,
    /// Connect, checkout and recycle timeout: past it a request fails with
    /// [`StoreError::Unavailable`].
    pub timeout: Duration,
    /// The sessions' `statement_timeout` (a statement waiting longer, e.g.
    /// for a lock that is never released, fails as `Unavailable`); `None`
    /// leaves the server's setting.
    pub statement_timeout: Option<Duration>,
    /// TLS to the server.
    pub tls: PgTls,
}

impl PgOptions {
    /// From a `postgres://user:password@host:port/dbname?…` URL (or a
    /// `key=value` connection string).
    /// The error never quotes the URL (it may hold a password).
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
            // The driver's syntax errors can quote one character of the
            // input ("… but got `x`"), which may be part of the password.
            let text = e.to_string();
            let text = text.split(" but got").next().unwrap_or_default();
            StoreError::Backend(format!("invalid database URL ({text})"))
        })?;
        Ok(Self::new(config))
    }

    /// Whether the URL itself says `sslmode=require` (TLS is configured
    /// with [`PgOptions::tls`]; the two must not disagree).
    pub fn url_requires_tls(&self) -> bool {
        self.config.get_ssl_mode() == tokio_postgres::config::SslMode::Require
    }

    /// Whether the URL names a host (a socket directory counts).
    pub fn has_host(&self) -> bool {
        !self.config.get_hosts().is_empty()
    }

    pub fn new(config: tokio_postgres::Config) -> Self {
        PgOptions {
            config,
            pool_size: 16,
            timeout: Duration::from_secs(5),
            statement_timeout: Some(Duration::from_secs(10)),
            tls: PgTls::Disable,
        }
    }
}

/// How long a cached policy is trusted (changes by other nodes apply within it).
const POLICY_TTL: Duration = Duration::from_secs(1);

pub struct PgStore {
    pool: Pool,
    /// Clock offset samples, one per new connection (see [`clock`]).
    clock: std::sync::Arc<clock::Samples>,
    policy_cache: parking_lot::Mutex<Option<(std::time::Instant, Policy)>>,
    /// How far audit ids are final, for [`AuditStore::audit_after`](tessera_core::store::AuditStore::audit_after).
    audit_horizon: tokio::sync::Mutex<audit_chain::Horizon>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.pool.status();
        f.debug_struct("PgStore").field("pool_size", &s.size).field("pool_available", &s.available).finish()
    }
}

async fn meta_get<C: GenericClient>(c: &C, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    match opt(c, "SELECT value FROM meta WHERE key = $1", &[&key]).await? {
        Some(r) => Ok(Some(rows::get(&r, 0)?)),
        None => Ok(None),
    }
}

async fn meta_put<C: GenericClient>(c: &C, key: &str, value: &[u8]) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&key, &value],
    )
    .await
    .map(|_| ())
}

async fn verify_key(c: &deadpool_postgres::Client, keys: &Keyring) -> Result<(), StoreError> {
    let check = meta_get(c, "key_check")
        .await?
        .ok_or_else(|| StoreError::Corrupt("the master key check value is missing".into()))?;
    keys.verify_check_value(&check).map_err(StoreError::WrongKey)?;
    if let Some(mac) = meta_get(c, &MetaKey::BackupMacKey.name()).await? {
        keys.set_backup_mac_key(&mac).map_err(StoreError::WrongKey)?;
    }
    Ok(())
}

async fn insert_audit<C: GenericClient>(c: &C, a: &AuditRecord) -> Result<(), StoreError> {
    audit_chain::insert(c, a).await
}

fn status_clause(status: UserStatus, now: &str) -> String {
    // Mirrors `User::status`: disabled wins, then a lock that has not expired.
    let locked = format!("(locked_at IS NOT NULL AND (lock_until IS NULL OR lock_until > {now}))");
    match status {
        UserStatus::Disabled => "disabled".into(),
        UserStatus::Locked => format!("(NOT disabled AND {locked})"),
        UserStatus::Active => format!("(NOT disabled AND registered AND NOT {locked})"),
        UserStatus::Unregistered => format!("(NOT disabled AND NOT registered AND NOT {locked})"),
    }
}

fn sort_tokens(tokens: &mut [Token]) {
    tokens.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
}

async fn insert_token<C: GenericClient>(c: &C, t: &Token) -> Result<(), StoreError> {
    let (_, period) = kind_cols(&t.params);
    let kind = token_kind(t);
    let period = (kind == "totp").then_some(period);
    let digits = i64::from(t.params.digits.get());
    let drift = i64::from(t.drift);
    let r = exec_raw(
        c,
        &format!(
            "INSERT INTO tokens ({TOKEN_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ),
        &[
            &t.id.0,
            &t.user_id.0,
            &t.serial,
            &kind,
            &t.params.algorithm.to_string(),
            &digits,
            &period,
            &t.sealed_secret,
            &t.counter,
            &drift,
            &t.state.as_str(),
            &t.description,
            &t.created_at.0,
            &t.last_used_at.map(|x| x.0),
            &t.oob.as_ref().map(|o| o.address.as_str()),
        ],
    )
    .await;
    match r {
        Err(e) if is_code(&e, &SqlState::UNIQUE_VIOLATION) => {
            Err(StoreError::Conflict(format!("token serial `{}`", t.serial)))
        }
        Err(e) if is_code(&e, &SqlState::FOREIGN_KEY_VIOLATION) => {
            Err(StoreError::NotFound(format!("user {}", t.user_id)))
        }
        r => r.map(|_| ()).map_err(map_err),
    }
}

async fn refresh_registered<C: GenericClient>(c: &C, user: i64) -> Result<(), StoreError> {
    exec(
        c,
        "UPDATE users SET registered = EXISTS (SELECT 1 FROM tokens WHERE user_id = $1 AND state = 'active') \
         WHERE id = $1",
        &[&user],
    )
    .await
    .map(|_| ())
}

async fn tokens_of<C: GenericClient>(c: &C, user: i64) -> Result<Vec<Token>, StoreError> {
    let mut v = query(c, &format!("SELECT {TOKEN_COLS} FROM tokens WHERE user_id = $1"), &[&user])
        .await?
        .iter()
        .map(rows::token)
        .collect::<Result<Vec<_>, _>>()?;
    sort_tokens(&mut v);
    Ok(v)
}

async fn oob_codes_of<C: GenericClient>(c: &C, user: i64, since: Timestamp) -> Result<Vec<OobCode>, StoreError> {
    query(
        c,
        &format!(
            "SELECT {OOB_CODE_COLS} FROM oob_codes WHERE user_id = $1 AND created_at > $2 ORDER BY created_at DESC"
        ),
        &[&user, &since.0],
    )
    .await?
    .iter()
    .map(rows::oob_code)
    .collect()
}

/// The evaluator's view: everything it may ask about, read under the
/// user's row lock before it runs (the evaluator is synchronous).
struct PgSnapshot {
    user: User,
    tokens: Vec<Token>,
    /// The user's backup codes (the current set: at most ten), and whether each is used.
    backup: Vec<([u8; 32], bool)>,
    /// Every stored email/SMS code of the user, newest first.
    oob: Vec<OobCode>,
}

impl Snapshot for PgSnapshot {
    fn user(&self) -> &User {
        &self.user
    }
    fn tokens(&self) -> &[Token] {
        &self.tokens
    }
    fn backup_code(&self, digest: &[u8; 32]) -> Result<Option<BackupCodeState>, StoreError> {
        Ok(self
            .backup
            .iter()
            .find(|(d, _)| d == digest)
            .map(|(_, used)| if *used { BackupCodeState::Used } else { BackupCodeState::Unused }))
    }
    fn oob_codes(&self, since: Timestamp) -> Result<Vec<OobCode>, StoreError> {
        Ok(self.oob.iter().filter(|c| c.created_at > since).cloned().collect())
    }
}

/// Applies one attempt to a user whose row this transaction has locked.
async fn apply_to<C: GenericClient>(c: &C, attempt: AuthAttempt, user: &User) -> Result<AuthOutcome, StoreError> {
    let AuthAttempt { user_id, access, verdict, policy, mut audit } = attempt;
    // Claims are a replica's (embedded database); on a shared database the
    // conditional update below is the cluster-wide check by itself.
    let verdict = match verdict {
        Verdict::Verified(Factor::Claimed(inner)) => Verdict::Verified(inner.base().clone()),
        v => v,
    };
    let lock = user.lock;
    let now = access.at;
    let (outcome, next) = if let Some(blocked) = blocking_outcome(user.disabled, &lock, now) {
        (blocked, lock)
    } else {
        // Try to consume the verified factor; `settle` (core) decides what
        // that comes to, this only persists it.
        let consumed = match &verdict {
            Verdict::Verified(Factor::Token { token_id, matched, drift }) => {
                // The replay check: the floor must not have passed `matched`.
                let drift = i64::from(*drift);
                let n = exec(
                    c,
                    "UPDATE tokens SET counter = $1 + 1, drift = $2, last_used_at = $3 \
                     WHERE id = $4 AND user_id = $5 AND state = 'active' AND counter <= $1",
                    &[matched, &drift, &now.0, &token_id.0, &user_id.0],
                )
                .await?;
                n == 1
            }
            Verdict::Verified(Factor::BackupCode { digest }) => {
                let n = exec(
                    c,
                    "UPDATE backup_codes SET used_at = $1 WHERE user_id = $2 AND digest = $3 AND used_at IS NULL",
                    &[&now.0, &user_id.0, &&digest[..]],
                )
                .await?;
                n == 1
            }
            Verdict::Verified(Factor::OobCode { id, .. }) => {
                let max = i64::from(tessera_core::oob::MAX_CODE_ATTEMPTS);
                let n = exec(
                    c,
                    "UPDATE oob_codes SET used_at = $1 WHERE id = $2 AND user_id = $3 AND used_at IS NULL \
                     AND expires_at > $1 AND attempts < $4",
                    &[&now.0, id, &user_id.0, &max],
                )
                .await?;
                n == 1
            }
            Verdict::Verified(Factor::FirstFactorOnly) => true,
            Verdict::Verified(Factor::Grace { limit }) => {
                let limit = limit.map_or(i64::MAX, i64::from);
                let n = exec(
                    c,
                    "UPDATE users SET grace_used = grace_used + 1 WHERE id = $1 AND grace_used < $2",
                    &[&user_id.0, &limit],
                )
                .await?;
                n == 1
            }
            Verdict::Failed(_) => {
                // A wrong code also wears out the user's pending email/SMS codes.
                exec(
                    c,
                    "UPDATE oob_codes SET attempts = attempts + 1 \
                     WHERE user_id = $1 AND used_at IS NULL AND expires_at > $2",
                    &[&user_id.0, &now.0],
                )
                .await?;
                false
            }
            // Claims were unwrapped above; the rest consume nothing.
            Verdict::Verified(Factor::Claimed(_)) | Verdict::Replayed(_) | Verdict::Refused(_) | Verdict::Challenge => {
                false
            }
        };
        settle(&verdict, consumed, &lock, &policy, now)
    };
    let accepted = outcome == AuthOutcome::Accepted;
    exec(
        c,
        "UPDATE users SET failures = $1, locked_at = $2, lock_until = $3, throttle_until = $4, \
         last_attempt_at = $5, last_attempt_addr = $6, last_attempt_client = $7, \
         last_success_at = CASE WHEN $8 THEN $5 ELSE last_success_at END, \
         last_success_addr = CASE WHEN $8 THEN $6 ELSE last_success_addr END, \
         last_success_client = CASE WHEN $8 THEN $7 ELSE last_success_client END, \
         updated_at = $5 WHERE id = $9",
        &[
            &i64::from(next.failures),
            &next.locked_at.map(|t| t.0),
            &next.lock_until.map(|t| t.0),
            &next.throttle_until.map(|t| t.0),
            &now.0,
            &access.address,
            &access.client,
            &accepted,
            &user_id.0,
        ],
    )
    .await?;
    finish_attempt_audit(&mut audit, &verdict, &outcome);
    insert_audit(c, &audit).await?;
    Ok(outcome)
}

const USER_BY_NAME_LOCKED: &str = "FROM users WHERE realm = $1 AND username = $2 FOR NO KEY UPDATE";

impl PgStore {
    async fn connect(opts: &PgOptions) -> Result<Pool, StoreError> {
        Self::connect_with(opts, None).await
    }

    /// A pool whose new connections are clock-checked into `samples`.
    async fn connect_measured(opts: &PgOptions, samples: &std::sync::Arc<clock::Samples>) -> Result<Pool, StoreError> {
        Self::connect_with(opts, Some(clock::hook(samples.clone()))).await
    }

    async fn connect_with(opts: &PgOptions, hook: Option<deadpool_postgres::Hook>) -> Result<Pool, StoreError> {
        let mut config = opts.config.clone();
        if let Some(t) = opts.statement_timeout {
            // Added to the URL's own `options`, if any.
            let mut options = config.get_options().unwrap_or_default().to_string();
            if !options.is_empty() {
                options.push(' ');
            }
            options.push_str(&format!("-c statement_timeout={}", t.as_millis().max(1)));
            config.options(&options);
        }
        db::build_pool(config, &opts.tls, opts.pool_size, opts.timeout, hook)
    }

    /// Whether the database has been initialised (`create` finished: the
    /// schema and the key check value exist). Changes nothing.
    pub async fn is_initialised(opts: &PgOptions) -> Result<bool, StoreError> {
        let mut one_conn = opts.clone();
        one_conn.pool_size = 1;
        let pool = Self::connect(&one_conn).await?;
        let c = pool.get().await.map_err(pool_err)?;
        if schema::current_version(&**c).await? == 0 {
            return Ok(false);
        }
        Ok(meta_get(&c, "key_check").await?.is_some())
    }

    /// The key rotation marker, read without the master key and without
    /// writing anything (see `SqliteStore::rotation_marker_unverified`).
    pub async fn rotation_marker_unverified(opts: &PgOptions) -> Result<Option<Vec<u8>>, StoreError> {
        let mut one_conn = opts.clone();
        one_conn.pool_size = 1;
        let pool = Self::connect(&one_conn).await?;
        let c = pool.get().await.map_err(pool_err)?;
        meta_get(&c, &MetaKey::KeyRotation.name()).await
    }

    /// `tessera audit verify` without the master key (an auditor's view):
    /// walks every node's chain in one read-only snapshot. `Ok(None)` when
    /// the database is not initialised.
    pub async fn verify_audit_chain_readonly(opts: &PgOptions) -> Result<Option<ChainReport>, StoreError> {
        let mut one_conn = opts.clone();
        one_conn.pool_size = 1;
        // Long logs take a while to walk; the statement timeout is for logins.
        one_conn.statement_timeout = None;
        let pool = Self::connect(&one_conn).await?;
        let c = pool.get().await.map_err(pool_err)?;
        if schema::current_version(&**c).await? == 0 {
            return Ok(None);
        }
        Self::walk_audit_chain(c).await.map(Some)
    }

    async fn walk_audit_chain(mut c: deadpool_postgres::Client) -> Result<ChainReport, StoreError> {
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(map_err)?;
        let report = audit_chain::walk(&tx).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(report)
    }

    /// Opens an initialised database: checks its schema version and that
    /// `keys` is the master key it was created with, then migrates.
    pub async fn open(opts: &PgOptions, keys: &Keyring, now: Timestamp) -> Result<Self, StoreError> {
        let samples = std::sync::Arc::default();
        let pool = Self::connect_measured(opts, &samples).await?;
        {
            let mut c = pool.get().await.map_err(pool_err)?;
            let window = schema::current_window(&**c).await?;
            if window.version == 0 {
                return Err(StoreError::NotInitialised("the database is empty".into()));
            }
            schema::check_supported(window)?;
            verify_key(&c, keys).await?;
            schema::migrate(&mut c, now.0).await?;
        }
        Ok(PgStore::with_pool(pool, samples))
    }

    /// Initialises an empty database bound to `keys`. Refuses a database
    /// that is already initialised.
    pub async fn create(
        opts: &PgOptions,
        keys: &Keyring,
        rng: &dyn Random,
        now: Timestamp,
    ) -> Result<Self, StoreError> {
        let samples = std::sync::Arc::default();
        let pool = Self::connect_measured(opts, &samples).await?;
        {
            let mut c = pool.get().await.map_err(pool_err)?;
            schema::migrate(&mut c, now.0).await?;
            let policy = serde_json::to_vec(&Policy::default()).map_err(|e| StoreError::Backend(e.to_string()))?;
            let check = keys.make_check_value(rng);
            let mac = keys.sealed_backup_mac_key(rng);
            let key_id = keys.key_id();
            let created = now.0.to_string();
            let tx = c.transaction().await.map_err(map_err)?;
            let ins = "INSERT INTO meta (key, value) VALUES ($1, $2)";
            let first = exec_raw(&tx, ins, &[&"key_check", &check]).await;
            match first {
                Err(e) if is_code(&e, &SqlState::UNIQUE_VIOLATION) => {
                    return Err(StoreError::Conflict("an initialised tessera database".into()));
                }
                r => r.map_err(map_err)?,
            };
            exec(&tx, ins, &[&"key_id", &key_id.as_bytes()]).await?;
            exec(&tx, ins, &[&"backup_mac_key", &mac]).await?;
            exec(&tx, ins, &[&"policy", &policy]).await?;
            exec(&tx, ins, &[&"created_at", &created.as_bytes()]).await?;
            tx.commit().await.map_err(map_err)?;
        }
        Ok(PgStore::with_pool(pool, samples))
    }

    fn with_pool(pool: Pool, clock: std::sync::Arc<clock::Samples>) -> Self {
        PgStore {
            pool,
            clock,
            policy_cache: parking_lot::Mutex::new(None),
            audit_horizon: tokio::sync::Mutex::new(audit_chain::Horizon::default()),
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(pool_err)
    }

    /// The pool (for tests and health reporting).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// Runs `$body` in a transaction on a pooled connection, committing when it
/// returns `Ok`. The body sees the transaction as `$tx`.
macro_rules! in_tx {
    ($self:ident, |$tx:ident| $body:expr) => {{
        let mut client = $self.client().await?;
        let $tx = client.transaction().await.map_err(map_err)?;
        let out = $body;
        match out {
            Ok(v) => {
                $tx.commit().await.map_err(map_err)?;
                Ok(v)
            }
            Err(e) => Err(e),
        }
    }};
}

// The port's roles, one file each (the login role is below, in this file);
// declared after `in_tx!` so they can use it.
mod admin_store;
mod audit;
mod config;
mod keys;
mod users;

/// A unique violation becomes `Conflict(what)`, a missing referenced user `NotFound`.
fn constraint(
    e: tokio_postgres::Error,
    conflict: impl FnOnce() -> String,
    missing: impl FnOnce() -> String,
) -> StoreError {
    if is_code(&e, &SqlState::UNIQUE_VIOLATION) {
        StoreError::Conflict(conflict())
    } else if is_code(&e, &SqlState::FOREIGN_KEY_VIOLATION) {
        StoreError::NotFound(missing())
    } else {
        map_err(e)
    }
}

/// Integer-keyed sealed columns: (table, column).
fn id_table(column: SealedColumn) -> Option<(&'static str, &'static str)> {
    match column {
        SealedColumn::TokenSecret => Some(("tokens", "secret")),
        SealedColumn::InventorySecret => Some(("inventory", "secret")),
        SealedColumn::RadiusClientSecret => Some(("radius_clients", "secret")),
        SealedColumn::RadiusClientOldSecret => Some(("radius_clients", "old_secret")),
        SealedColumn::AdminTotpSecret => Some(("admins", "totp_secret")),
        SealedColumn::RealmSecrets | SealedColumn::Meta | SealedColumn::NodeIdentity => None,
    }
}

/// The sealed `meta` entries, in row order.
const SEALED_META: [&str; 2] = ["backup_mac_key", "key_check"];

fn bad_row(row: &str) -> StoreError {
    StoreError::NotFound(format!("sealed row `{row}`"))
}

#[async_trait]
impl LoginStore for PgStore {
    async fn auth_subject(&self, realm: &str, username: &str) -> Result<Option<(User, Vec<Token>)>, StoreError> {
        let mut c = self.client().await?;
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(map_err)?;
        let sql = format!("SELECT {USER_COLS} FROM users WHERE realm = $1 AND username = $2");
        let Some(row) = opt(&tx, &sql, &[&realm, &username]).await? else {
            return Ok(None);
        };
        let user = rows::user(&row)?;
        let tokens = tokens_of(&tx, user.id.0).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some((user, tokens)))
    }

    async fn commit_attempt(&self, attempt: AuthAttempt) -> Result<AuthOutcome, StoreError> {
        in_tx!(self, |tx| {
            async {
                let sql = format!("SELECT {USER_COLS} FROM users WHERE id = $1 FOR NO KEY UPDATE");
                match opt(&tx, &sql, &[&attempt.user_id.0]).await? {
                    Some(row) => {
                        let user = rows::user(&row)?;
                        apply_to(&tx, attempt, &user).await
                    }
                    None => {
                        // Deleted between the engine's read and now.
                        let mut audit = attempt.audit;
                        finish_attempt_audit(&mut audit, &Verdict::Refused("user_deleted"), &AuthOutcome::Refused);
                        insert_audit(&tx, &audit).await?;
                        Ok(AuthOutcome::Refused)
                    }
                }
            }
            .await
        })
    }

    async fn authenticate(&self, req: AuthenticateRequest) -> Result<Authentication, StoreError> {
        let AuthenticateRequest { realm, username, access, policy, mut audit, state, evaluate } = req;
        in_tx!(self, |tx| {
            async {
                let sql = format!("SELECT {USER_COLS} {USER_BY_NAME_LOCKED}");
                let Some(row) = opt(&tx, &sql, &[&realm, &username]).await? else {
                    audit.result = tessera_core::audit::AuditResult::Reject;
                    audit.reason = Some("unknown_user".into());
                    insert_audit(&tx, &audit).await?;
                    return Ok(Authentication::UnknownUser);
                };
                let user = rows::user(&row)?;
                let uid = user.id.0;
                if let Some(ticket) = state {
                    let fresh = exec(
                        &tx,
                        "INSERT INTO used_states (nonce, expires_at) VALUES ($1, $2) ON CONFLICT (nonce) DO NOTHING",
                        &[&&ticket.nonce[..], &ticket.expires_at.0],
                    )
                    .await?;
                    if fresh == 0 {
                        let verdict = Verdict::Refused("state_reused");
                        let attempt = AuthAttempt { user_id: user.id, access, verdict: verdict.clone(), policy, audit };
                        let outcome = apply_to(&tx, attempt, &user).await?;
                        return Ok(Authentication::Decided { user_id: user.id, verdict, outcome });
                    }
                }
                // Three reads pipelined on the connection: one round trip.
                let backup_sql = "SELECT digest, used_at IS NOT NULL FROM backup_codes WHERE user_id = $1";
                let backup_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&uid];
                let (tokens, backup, oob) = tokio::try_join!(
                    tokens_of(&tx, uid),
                    query(&tx, backup_sql, &backup_params),
                    oob_codes_of(&tx, uid, Timestamp(i64::MIN)),
                )?;
                let backup = backup
                    .iter()
                    .filter_map(|r| {
                        let digest = rows::get::<Vec<u8>>(r, 0).ok().and_then(|d| <[u8; 32]>::try_from(d).ok())?;
                        Some((digest, rows::get::<bool>(r, 1).ok()?))
                    })
                    .collect();
                let snapshot = PgSnapshot { user, tokens, backup, oob };
                match evaluate(&snapshot) {
                    Evaluation::Deferred => {
                        let PgSnapshot { user, tokens, .. } = snapshot;
                        Ok(Authentication::Deferred { user: Box::new(user), tokens })
                    }
                    Evaluation::Decided(verdict) => {
                        let user_id = snapshot.user.id;
                        let attempt = AuthAttempt { user_id, access, verdict: verdict.clone(), policy, audit };
                        let outcome = apply_to(&tx, attempt, &snapshot.user).await?;
                        Ok(Authentication::Decided { user_id, verdict, outcome })
                    }
                }
            }
            .await
        })
    }

    async fn backup_code(&self, user: &UserId, digest: &[u8; 32]) -> Result<Option<BackupCodeState>, StoreError> {
        let c = self.client().await?;
        let r = opt(
            &c,
            "SELECT used_at IS NOT NULL FROM backup_codes WHERE user_id = $1 AND digest = $2",
            &[&user.0, &&digest[..]],
        )
        .await?;
        r.map(|r| {
            rows::get::<bool>(&r, 0).map(|used| if used { BackupCodeState::Used } else { BackupCodeState::Unused })
        })
        .transpose()
    }

    async fn reserve_oob_code(&self, code: &OobCode, since: Timestamp, limit: u32) -> Result<bool, StoreError> {
        let user = code.user_id.0;
        in_tx!(self, |tx| {
            async {
                // The user's row lock serialises sends to one user (any node).
                let n = exec(&tx, "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", &[&user]).await?;
                if n == 0 {
                    return Err(StoreError::NotFound(format!("user {user}")));
                }
                exec(
                    &tx,
                    "DELETE FROM oob_codes WHERE user_id = $1 AND created_at <= $2 \
                     AND (used_at IS NOT NULL OR expires_at <= $3)",
                    &[&user, &since.0, &code.created_at.0],
                )
                .await?;
                let sent: i64 = rows::get(
                    &one(
                        &tx,
                        "SELECT count(*) FROM oob_codes WHERE user_id = $1 AND created_at > $2",
                        &[&user, &since.0],
                    )
                    .await?,
                    0,
                )?;
                if sent >= i64::from(limit) {
                    return Ok(false);
                }
                exec(
                    &tx,
                    &format!("INSERT INTO oob_codes ({OOB_CODE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
                    &[
                        &code.id,
                        &user,
                        &code.token_id.0,
                        &&code.digest[..],
                        &code.created_at.0,
                        &code.expires_at.0,
                        &i64::from(code.attempts),
                        &code.used_at.map(|t| t.0),
                    ],
                )
                .await?;
                Ok(true)
            }
            .await
        })
    }

    async fn oob_codes(&self, user: &UserId, since: Timestamp) -> Result<Vec<OobCode>, StoreError> {
        let c = self.client().await?;
        oob_codes_of(&c, user.0, since).await
    }

    async fn prune_states(&self, now: Timestamp) -> Result<u64, StoreError> {
        let day_ago = now.plus_seconds(-i64::from(tessera_core::oob::MAX_WINDOW_SECONDS)).0;
        in_tx!(self, |tx| {
            async {
                let states = exec(&tx, "DELETE FROM used_states WHERE expires_at < $1", &[&now.0]).await?;
                let codes =
                    exec(&tx, "DELETE FROM oob_codes WHERE created_at < $1 AND expires_at < $1", &[&day_ago]).await?;
                Ok(states + codes)
            }
            .await
        })
    }
}

impl PgStore {
    async fn delete_named(&self, sql: &str, name: &str, what: String, audit: AuditRecord) -> Result<(), StoreError> {
        in_tx!(self, |tx| {
            async {
                let n = exec(&tx, sql, &[&name]).await?;
                if n == 0 {
                    return Err(StoreError::NotFound(what));
                }
                insert_audit(&tx, &audit).await
            }
            .await
        })
    }
}
