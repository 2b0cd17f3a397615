//! The embedded backend: SQLite in WAL mode.
//!
//! Why SQLite: one file, crash-safe transactions, readable with the stock
//! `sqlite3` shell when supporting a site, and a SQL model that the
//! PostgreSQL backend mirrors table for table. Reads go to a pool of
//! read-only connections; all writes go through the group-commit
//! [`writer::Writer`].
//!
//! The storage port's roles are implemented one file each: [`LoginStore`]
//! here (it dispatches to the login engine, `login/`), `UserStore` in
//! `users.rs`, `ConfigStore` in `config.rs`, `AdminStore` in
//! `admin_store.rs` (queries in `admins.rs`), `AuditStore` in `audit.rs`,
//! `KeyStore` in `keys.rs`.

mod admin_store;
mod admins;
mod audit;
/// The tamper-evident audit chain: linking, pruning anchors, verification.
pub mod audit_chain;
pub mod cluster;
mod config;
mod inventory;
mod keys;
pub mod login;
mod readers;
pub mod replication;
pub(crate) mod rows;
pub mod schema;
mod sealed;
/// Consistent copies for backups and restore checks.
pub mod snapshot;
mod token_state;
mod users;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tessera_core::audit::AuditRecord;
use tessera_core::clock::Timestamp;
use tessera_core::keys::Keyring;
use tessera_core::lockout::LockState;
use tessera_core::model::{Token, TokenId, User, UserId, UserStatus};
use tessera_core::policy::Policy;
use tessera_core::random::Random;
use tessera_core::store::LoginStore;
use tessera_core::store::{
    AuthAttempt, AuthOutcome, AuthenticateRequest, Authentication, BackupCodeState, Evaluation, Evaluator, Factor,
    MetaKey, Snapshot, StoreError, Verdict, blocking_outcome, finish_attempt_audit, settle,
};

pub use schema::SCHEMA_VERSION;

use readers::Readers;
use rows::{OOB_CODE_COLS, TOKEN_COLS, USER_COLS};
use tessera_core::oob::OobCode;
use token_state::{Entry, TokenStates};
use writer::{Writer, WriterOptions};

/// The writer's page cache is this many times `cache_kib`.
const WRITER_CACHE_FACTOR: i64 = 1;

/// How long a connection waits for another process (the CLI while the
/// server runs) to release the write lock before reporting "busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const STATEMENT_CACHE: usize = 64;

/// When a commit is considered durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// fsync the WAL on every commit: survives power loss. (Default.)
    #[default]
    Full,
    /// Write the WAL but fsync only at checkpoints: survives a process
    /// crash (kill -9), may lose the last commits on power loss.
    Normal,
}

impl std::str::FromStr for Synchronous {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "full" => Ok(Synchronous::Full),
            "normal" => Ok(Synchronous::Normal),
            other => Err(format!("unknown synchronous mode `{other}` (expected full or normal)")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// Read-only connections in the pool.
    pub readers: usize,
    /// Page cache per connection, KiB.
    pub cache_kib: u32,
    /// Memory-mapped I/O limit per connection, bytes (0 = off).
    pub mmap_bytes: u64,
    /// Run the login engine (login state in memory, journal; `login/`).
    /// One process per database: `serve`. Other processes (the CLI) write
    /// through ordinary transactions and tell a running engine so.
    pub login_engine: bool,
    /// How often the engine folds its journal into the database.
    pub login_fold_interval: std::time::Duration,
    /// Users the engine keeps in memory at most (see `login::Profile`).
    pub login_cached_users: usize,
}

impl SqliteOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteOptions {
            path: path.into(),
            synchronous: Synchronous::Full,
            readers: 4,
            cache_kib: 8192,
            mmap_bytes: 0,
            login_engine: false,
            login_fold_interval: std::time::Duration::from_secs(2),
            login_cached_users: 30_000,
        }
    }
}

pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            C::DatabaseCorrupt | C::NotADatabase => StoreError::Corrupt(e.to_string()),
            C::DatabaseBusy | C::DatabaseLocked => StoreError::Unavailable(format!("database busy: {e}")),
            C::CannotOpen | C::DiskFull | C::SystemIoFailure | C::ReadOnly | C::PermissionDenied => {
                StoreError::Unavailable(e.to_string())
            }
            C::ConstraintViolation => StoreError::Conflict(format!("record ({e})")),
            _ => StoreError::Backend(e.to_string()),
        },
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            StoreError::Corrupt(format!("unreadable record: {e}"))
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// How long a cached policy is trusted. Changes made through this store
/// apply at once; changes by another process (the CLI) within this time.
const POLICY_TTL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    readers: Readers,
    writer: Writer,
    policy_cache: parking_lot::Mutex<Option<(std::time::Instant, Policy)>>,
    sql: Sql,
    /// The login engine, in the process that serves (see `login/`).
    engine: Option<Arc<login::LoginEngine>>,
    /// Without the engine: whether this process asked a running server to
    /// fold (once per command, see `fresh_for`).
    asked_fold: std::sync::atomic::AtomicBool,
    /// Without the engine: the journal's lock file, to tell a running
    /// engine about each write (`login::leave_hint`).
    hint: std::sync::OnceLock<Option<std::fs::File>>,
    /// While this node is a replica, every decided login is also written to
    /// `repl_outbox` in its own transaction, until the primary has it.
    login_journal: std::sync::atomic::AtomicBool,
}

/// Statement texts built once (they are also the statement-cache keys).
#[derive(Debug)]
struct Sql {
    user_by_name: String,
    user_by_id: String,
    tokens_for_user: String,
}

impl Sql {
    fn new() -> Self {
        Sql {
            user_by_name: format!("SELECT {USER_COLS} FROM users WHERE realm = ?1 AND username = ?2"),
            user_by_id: format!("SELECT {USER_COLS} FROM users WHERE id = ?1"),
            // No ORDER BY: with one, SQLite re-prepares the statement on
            // every execution (measured); the few rows are sorted in Rust.
            tokens_for_user: format!("SELECT {TOKEN_COLS} FROM tokens WHERE user_id = ?1"),
        }
    }
}

/// Waits for another connection's write lock in short steps, up to about
/// [`BUSY_TIMEOUT`]. SQLite's own busy timeout sleeps 1, 2, 5, 10 … 100 ms
/// between tries, so a writer that loses a race waits milliseconds for a
/// lock held for microseconds (seen as the p99 of logins on a replica while
/// it applies the primary's changes on its own connection).
pub(crate) fn busy_wait(count: i32) -> bool {
    const FINE_STEPS: i32 = 100; // 100 µs each: the first 10 ms
    const COARSE: i32 = (BUSY_TIMEOUT.as_millis() as i32) - 10; // then 1 ms each
    if count >= FINE_STEPS + COARSE {
        return false;
    }
    std::thread::sleep(if count < FINE_STEPS { Duration::from_micros(100) } else { Duration::from_millis(1) });
    true
}

fn configure(conn: &mut Connection, opts: &SqliteOptions) -> Result<(), StoreError> {
    conn.busy_handler(Some(busy_wait)).map_err(map_err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "foreign_keys", "ON").map_err(map_err)?;
    // Savepoint journals (one per queued write) stay in memory, not temp files.
    conn.pragma_update(None, "temp_store", "MEMORY").map_err(map_err)?;
    conn.pragma_update(None, "cache_size", -(opts.cache_kib as i64)).map_err(map_err)?;
    // Off by default: measured under load, SQLite re-maps the file whenever
    // it grows (the audit log grows with every login), and the munmap TLB
    // shootdowns cost more than the preads they save.
    conn.pragma_update(None, "mmap_size", opts.mmap_bytes as i64).map_err(map_err)?;
    Ok(())
}

fn open_flags(create: bool) -> OpenFlags {
    let mut f = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        f |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    f
}

/// Reads the stored key check without writing anything.
fn verify_key(conn: &Connection, keys: &Keyring) -> Result<(), StoreError> {
    let check: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE key = 'key_check'", [], |r| r.get(0))
        .optional()
        .map_err(map_err)?;
    let check = check.ok_or_else(|| StoreError::Corrupt("the master key check value is missing".into()))?;
    keys.verify_check_value(&check).map_err(StoreError::WrongKey)?;
    // Stored from the first key rotation on (databases created since store
    // it from the start); before that it is derived from the master key.
    if let Some(mac) = sealed::meta_value(conn, &MetaKey::BackupMacKey.name())? {
        keys.set_backup_mac_key(&mac).map_err(StoreError::WrongKey)?;
    }
    Ok(())
}

fn quick_check(conn: &Connection) -> Result<(), StoreError> {
    let mut stmt = conn.prepare("PRAGMA quick_check(5)").map_err(map_err)?;
    let lines: Vec<String> =
        stmt.query_map([], |r| r.get(0)).map_err(map_err)?.collect::<Result<_, _>>().map_err(map_err)?;
    if lines.len() == 1 && lines[0] == "ok" {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!("integrity check failed: {}", lines.join("; "))))
    }
}

impl SqliteStore {
    /// Opens an existing database. Checks, before writing anything, that the
    /// file is an intact tessera database of a supported version and that
    /// `keys` is the master key it was created with.
    pub fn open(opts: &SqliteOptions, keys: &Keyring, now: Timestamp) -> Result<Self, StoreError> {
        if !opts.path.exists() {
            return Err(StoreError::NotInitialised(format!("{} does not exist", opts.path.display())));
        }
        let conn = Connection::open_with_flags(&opts.path, open_flags(false)).map_err(map_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
        let window = schema::current_window(&conn)?;
        if window.version == 0 {
            return Err(StoreError::NotInitialised(format!("{} is an empty database", opts.path.display())));
        }
        schema::check_supported(window)?;
        quick_check(&conn)?;
        verify_key(&conn, keys)?;
        Self::finish_open(conn, opts, now)
    }

    /// The key rotation marker, read without the master key and without
    /// writing anything: for explaining, at start-up, a key that does not
    /// match (was the key rotated while this node was away?).
    pub fn rotation_marker_unverified(opts: &SqliteOptions) -> Result<Option<Vec<u8>>, StoreError> {
        let conn = Connection::open_with_flags(&opts.path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(map_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
        sealed::meta_value(&conn, &MetaKey::KeyRotation.name())
    }

    /// Creates a new database bound to `keys`. Refuses to touch an existing file.
    pub fn create(opts: &SqliteOptions, keys: &Keyring, rng: &dyn Random, now: Timestamp) -> Result<Self, StoreError> {
        // Created empty with owner-only permissions first: SQLite gives its
        // -wal and -shm files the same mode as the database file.
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&opts.path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    StoreError::Conflict(format!("database {}", opts.path.display()))
                } else {
                    StoreError::Unavailable(format!("cannot create {}: {e}", opts.path.display()))
                }
            })?;
        }
        let conn = Connection::open_with_flags(&opts.path, open_flags(true)).map_err(map_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(map_err)?;
        schema::migrate(&conn, now.0)?;
        let policy = serde_json::to_string(&Policy::default()).map_err(|e| StoreError::Backend(e.to_string()))?;
        conn.execute_batch("BEGIN").map_err(map_err)?;
        let ins = |k: &str, v: &dyn rusqlite::ToSql| {
            conn.execute("INSERT INTO meta (key, value) VALUES (?1, ?2)", params![k, v])
        };
        ins("key_check", &keys.make_check_value(rng)).map_err(map_err)?;
        ins("key_id", &keys.key_id()).map_err(map_err)?;
        ins("backup_mac_key", &keys.sealed_backup_mac_key(rng)).map_err(map_err)?;
        ins("policy", &policy).map_err(map_err)?;
        ins("created_at", &now.0).map_err(map_err)?;
        conn.execute_batch("COMMIT").map_err(map_err)?;
        Self::finish_open(conn, opts, now)
    }

    fn finish_open(mut conn: Connection, opts: &SqliteOptions, now: Timestamp) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL").map_err(map_err)?;
        configure(&mut conn, opts)?;
        // The writer's cache holds the hot set (users, tokens, indexes):
        // unlike the readers', it is never invalidated by commits.
        conn.pragma_update(None, "cache_size", -(opts.cache_kib as i64) * WRITER_CACHE_FACTOR).map_err(map_err)?;
        schema::migrate(&conn, now.0)?;
        let mut readers = Vec::with_capacity(opts.readers.max(1));
        for _ in 0..opts.readers.max(1) {
            let mut r = Connection::open_with_flags(
                &opts.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(map_err)?;
            configure(&mut r, opts)?;
            readers.push(r);
        }
        let checkpointer = Connection::open_with_flags(&opts.path, open_flags(false)).map_err(map_err)?;
        checkpointer.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
        let prepared = if opts.login_engine {
            login::LoginEngine::prepare(&conn, &opts.path)?
        } else {
            login::replay_if_unowned(&conn, &opts.path)?;
            None
        };
        let writer = Writer::start(
            conn,
            checkpointer,
            WriterOptions { db_path: opts.path.clone(), synchronous: opts.synchronous },
        )?;
        let engine = match (prepared, writer.handle()) {
            (Some(p), Some(h)) => Some(p.start(h, opts.login_fold_interval, opts.login_cached_users)?),
            _ => None,
        };
        Ok(SqliteStore {
            path: opts.path.clone(),
            readers: Readers::new(readers),
            writer,
            policy_cache: parking_lot::Mutex::new(None),
            sql: Sql::new(),
            engine,
            asked_fold: std::sync::atomic::AtomicBool::new(false),
            hint: std::sync::OnceLock::new(),
            login_journal: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Turns the login journal (`repl_outbox`) on while this node is a
    /// replica, off otherwise.
    pub fn set_login_journal(&self, on: bool) {
        self.login_journal.store(on, std::sync::atomic::Ordering::Relaxed);
        // A replica takes logins through ordinary transactions (they go to
        // the outbox too); the engine runs while this node is the primary.
        if let Some(e) = &self.engine {
            e.set_enabled(!on);
        }
    }

    /// Before a read that must show every acknowledged login (user views,
    /// the audit log): folds what the journal holds.
    async fn fresh(&self) -> Result<(), StoreError> {
        self.fresh_for(false).await
    }

    /// [`Self::fresh`]; `login`: for a login this process decides (`check`),
    /// which must see the newest state every time. Reads and writes of a
    /// command ask a running server once: the command then sees every login
    /// acknowledged before it started, and a bulk import does not wait for
    /// a fold per row.
    async fn fresh_for(&self, login: bool) -> Result<(), StoreError> {
        match &self.engine {
            Some(e) if e.has_pending() => e.fold().await,
            Some(_) => Ok(()),
            // A command beside a running server: have it fold first.
            None if login::served_elsewhere(&self.path) => {
                if !login && self.asked_fold.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    return Ok(());
                }
                login::request_fold(&self.writer, || {
                    self.read(|c| c.query_row("SELECT fold_done FROM login_journal WHERE id = 1", [], |r| r.get(0)))
                })
                .await
            }
            // No server (any more): what a server that died left is ours to replay.
            None if !login::journal_files(&self.path).is_empty() => {
                let path = self.path.clone();
                if let Some((lock, done)) =
                    self.writer.write_hot(move |c| login::replay_if_unowned_in_txn(c, &path)).await?
                {
                    for p in done {
                        let _ = std::fs::remove_file(p);
                    }
                    drop(lock);
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn journal(&self) -> bool {
        self.login_journal.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        self.readers.with(|c| f(c)).map_err(map_err)
    }

    /// Every administrative write. With the engine: exclusively, after
    /// folding the journal (see `login::LoginEngine::exclusive`). Without
    /// it: tells a running engine (another process) that rows changed.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        match &self.engine {
            Some(e) => e.exclusive(f).await,
            None => {
                // A running server's acknowledged logins go in first, so
                // this change (and its audit record) comes after them.
                self.fresh().await?;
                let r = self
                    .writer
                    .write(move |c| {
                        login::bump_external(c)?;
                        f(c)
                    })
                    .await;
                self.leave_hint();
                r
            }
        }
    }

    /// The classic login path (a replica, or a process without the
    /// engine): one job in the group commit, no savepoint (see
    /// `Writer::write_hot`).
    async fn write_hot<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        match &self.engine {
            // Left over from when the engine ran: fold it first.
            Some(e) if e.has_pending() => e.exclusive(f).await,
            Some(_) => self.writer.write_hot(f).await,
            None => {
                let r = self
                    .writer
                    .write_hot(move |c| {
                        login::bump_external(c)?;
                        f(c)
                    })
                    .await;
                self.leave_hint();
                r
            }
        }
    }

    /// Tells a running engine (another process) that this one wrote.
    fn leave_hint(&self) {
        let file = self.hint.get_or_init(|| match login::hint_file(&self.path) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(error = %e, "a running server notices this process's writes within a second only");
                None
            }
        });
        if let Some(f) = file {
            login::leave_hint(f);
        }
    }
}

/// The evaluator's view from inside a transaction (the writer's, or a
/// reader's for `evaluate_read_only`).
pub(crate) struct WriterSnapshot<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) user: &'a User,
    pub(crate) tokens: &'a [Token],
}

impl Snapshot for WriterSnapshot<'_> {
    fn user(&self) -> &User {
        self.user
    }
    fn tokens(&self) -> &[Token] {
        self.tokens
    }
    fn backup_code(&self, digest: &[u8; 32]) -> Result<Option<BackupCodeState>, StoreError> {
        backup_code(self.conn, &self.user.id, digest).map_err(map_err)
    }
    fn oob_codes(&self, since: Timestamp) -> Result<Vec<OobCode>, StoreError> {
        oob_codes(self.conn, self.user.id, since).map_err(map_err)
    }
}

/// A user's email/SMS codes created after `since`, newest first (bounded by
/// the per-user send limit, so a handful of rows).
fn oob_codes(c: &Connection, user: UserId, since: Timestamp) -> rusqlite::Result<Vec<OobCode>> {
    c.prepare_cached(&format!(
        "SELECT {OOB_CODE_COLS} FROM oob_codes WHERE user_id = ?1 AND created_at > ?2 ORDER BY created_at DESC"
    ))?
    .query_map(params![user.0, since.0], rows::oob_code)?
    .collect()
}

fn backup_code(c: &Connection, user: &UserId, digest: &[u8; 32]) -> rusqlite::Result<Option<BackupCodeState>> {
    c.prepare_cached("SELECT used_at IS NOT NULL FROM backup_codes WHERE user_id = ?1 AND digest = ?2")?
        .query_row(params![user.0, &digest[..]], |r| r.get::<_, bool>(0))
        .optional()
        .map(|o| o.map(|used| if used { BackupCodeState::Used } else { BackupCodeState::Unused }))
}

pub(crate) fn sort_tokens(tokens: &mut [Token]) {
    tokens.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
}

/// Every audit record goes through here, inside the writer's transaction,
/// and is linked into its node's hash chain (see [`audit_chain`]).
pub(crate) fn insert_audit(conn: &Connection, a: &AuditRecord) -> Result<(), StoreError> {
    audit_chain::insert(conn, a)
}

fn status_clause(status: UserStatus) -> &'static str {
    // Mirrors `User::status`: disabled wins, then a lock that has not expired.
    match status {
        UserStatus::Disabled => "disabled = 1",
        UserStatus::Locked => "(disabled = 0 AND locked_at IS NOT NULL AND (lock_until IS NULL OR lock_until > :now))",
        UserStatus::Active => {
            "(disabled = 0 AND registered = 1 AND NOT (locked_at IS NOT NULL AND (lock_until IS NULL OR lock_until > :now)))"
        }
        UserStatus::Unregistered => {
            "(disabled = 0 AND registered = 0 AND NOT (locked_at IS NOT NULL AND (lock_until IS NULL OR lock_until > :now)))"
        }
    }
}

fn insert_token(c: &Connection, t: &Token) -> Result<(), StoreError> {
    let (_, period) = rows::kind_cols(&t.params);
    let kind = rows::token_kind(t);
    let r = c
        .prepare_cached(&format!(
            "INSERT INTO tokens ({TOKEN_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
        ))
        .and_then(|mut s| {
            s.execute(params![
                t.id.0,
                t.user_id.0,
                t.serial,
                kind,
                t.params.algorithm.to_string(),
                t.params.digits.get(),
                (kind == "totp").then_some(period),
                t.sealed_secret,
                t.counter,
                t.drift,
                t.state.as_str(),
                t.description,
                t.created_at.0,
                t.last_used_at.map(|x| x.0),
                t.oob.as_ref().map(|o| o.address.as_str())
            ])
        });
    match r {
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!("token serial `{}`", t.serial))),
        Err(rusqlite::Error::SqliteFailure(f, _)) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
            Err(StoreError::NotFound(format!("user {}", t.user_id)))
        }
        r => r.map(|_| ()).map_err(map_err),
    }
}

fn refresh_registered(conn: &Connection, user: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE users SET registered = EXISTS (SELECT 1 FROM tokens WHERE user_id = ?1 AND state = 'active') WHERE id = ?1",
    )?
    .execute([user])?;
    Ok(())
}

/// What an attempt needs to know about its user, read inside the writer's
/// transaction.
struct UserAuthState {
    disabled: bool,
    lock: LockState,
    tokens: TokenStates,
}

impl UserAuthState {
    fn of(user: &User, tokens: TokenStates) -> Self {
        UserAuthState { disabled: user.disabled, lock: user.lock, tokens }
    }
}

fn read_auth_state(conn: &Connection, user: UserId) -> Result<Option<UserAuthState>, StoreError> {
    conn.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE id = ?1"))
        .and_then(|mut s| s.query_row([user.0], |r| Ok((rows::user(r)?, rows::token_states(r)?))).optional())
        .map(|o| o.map(|(u, t)| UserAuthState::of(&u, t)))
        .map_err(map_err)
}

fn read_token_states(conn: &Connection, user: i64) -> rusqlite::Result<TokenStates> {
    let blob: Option<Option<Vec<u8>>> = conn
        .prepare_cached("SELECT token_state FROM users WHERE id = ?1")?
        .query_row([user], |r| r.get(0))
        .optional()?;
    TokenStates::decode(blob.flatten().as_deref())
        .map_err(|m| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, m.into()))
}

fn write_token_states(conn: &Connection, user: i64, states: &TokenStates) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE users SET token_state = ?1 WHERE id = ?2")?.execute(params![states.encode(), user])?;
    Ok(())
}

/// A token row brought up to date with its user's login state.
fn overlaid(conn: &Connection, mut t: Token) -> rusqlite::Result<Token> {
    read_token_states(conn, t.user_id.0)?.overlay(&mut t);
    Ok(t)
}

/// The floor of an active token of `user`, as it stands now.
fn token_floor(
    conn: &Connection,
    user: UserId,
    token: TokenId,
    states: &TokenStates,
) -> Result<Option<i64>, StoreError> {
    let row: Option<i64> = conn
        .prepare_cached("SELECT counter FROM tokens WHERE id = ?1 AND user_id = ?2 AND state = 'active'")
        .and_then(|mut s| s.query_row([token.0, user.0], |r| r.get(0)).optional())
        .map_err(map_err)?;
    Ok(row.map(|c| states.get(token.0).map_or(c, |e| e.counter.max(c))))
}

/// The lock-and-replay decision for one attempt; runs inside the writer's
/// transaction, so attempts are applied one at a time.
pub(crate) fn apply_attempt(conn: &Connection, attempt: AuthAttempt, journal: bool) -> Result<AuthOutcome, StoreError> {
    match read_auth_state(conn, attempt.user_id)? {
        Some(state) => apply_to(conn, attempt, state, journal),
        None => {
            // Deleted between the engine's read and now.
            let mut audit = attempt.audit;
            finish_attempt_audit(&mut audit, &Verdict::Refused("user_deleted"), &AuthOutcome::Refused);
            insert_audit(conn, &audit)?;
            Ok(AuthOutcome::Refused)
        }
    }
}

fn apply_to(
    conn: &Connection,
    attempt: AuthAttempt,
    state: UserAuthState,
    journal: bool,
) -> Result<AuthOutcome, StoreError> {
    let AuthAttempt { user_id, access, verdict, policy, mut audit } = attempt;
    let UserAuthState { disabled, lock, tokens: mut states } = state;
    let now = access.at;
    let (outcome, next) = if let Some(blocked) = blocking_outcome(disabled, &lock, now) {
        (blocked, lock)
    } else {
        // Try to consume the verified factor; `settle` (core) decides what
        // that comes to, this only persists it.
        let consumed = match &verdict {
            Verdict::Verified(Factor::Token { token_id, matched, drift }) => {
                // The replay check: the floor must not have passed the matched
                // counter (a concurrent login, or another node, may have moved it).
                match token_floor(conn, user_id, *token_id, &states)? {
                    Some(floor) if floor <= *matched => {
                        states.set(Entry { token: token_id.0, counter: matched + 1, drift: *drift, last_used: now.0 });
                        true
                    }
                    _ => false,
                }
            }
            Verdict::Verified(Factor::Claimed(inner)) => match inner.base() {
                Factor::Token { token_id, matched, drift } => {
                    // Taken for this login by the primary: its change may
                    // already be here (floor = matched + 1).
                    match token_floor(conn, user_id, *token_id, &states)? {
                        Some(floor) if floor <= matched + 1 => {
                            let counter = (matched + 1).max(floor);
                            states.set(Entry { token: token_id.0, counter, drift: *drift, last_used: now.0 });
                            true
                        }
                        _ => false,
                    }
                }
                Factor::BackupCode { digest } => {
                    conn.prepare_cached(
                        "UPDATE backup_codes SET used_at = ?1 WHERE user_id = ?2 AND digest = ?3 AND used_at IS NULL",
                    )
                    .and_then(|mut s| s.execute(params![now.0, user_id.0, &digest[..]]))
                    .map_err(map_err)?;
                    conn.prepare_cached("SELECT 1 FROM backup_codes WHERE user_id = ?1 AND digest = ?2")
                        .and_then(|mut s| s.exists(params![user_id.0, &digest[..]]))
                        .map_err(map_err)?
                }
                _ => false,
            },
            Verdict::Verified(Factor::BackupCode { digest }) => {
                let n = conn
                    .prepare_cached(
                        "UPDATE backup_codes SET used_at = ?1 WHERE user_id = ?2 AND digest = ?3 AND used_at IS NULL",
                    )
                    .and_then(|mut s| s.execute(params![now.0, user_id.0, &digest[..]]))
                    .map_err(map_err)?;
                n == 1
            }
            Verdict::Verified(Factor::OobCode { id, .. }) => {
                // Single use: only the first attempt to mark it used wins
                // (a concurrent submit, or another node, finds it used).
                let n = conn
                    .prepare_cached(
                        "UPDATE oob_codes SET used_at = ?1 WHERE id = ?2 AND user_id = ?3 AND used_at IS NULL \
                         AND expires_at > ?1 AND attempts < ?4",
                    )
                    .and_then(|mut s| s.execute(params![now.0, id, user_id.0, tessera_core::oob::MAX_CODE_ATTEMPTS]))
                    .map_err(map_err)?;
                n == 1
            }
            Verdict::Verified(Factor::FirstFactorOnly) => true,
            Verdict::Verified(Factor::Grace { limit }) => {
                // Counted here, in the serialised step, so parallel logins
                // cannot exceed the grace count.
                let n = conn
                    .prepare_cached("UPDATE users SET grace_used = grace_used + 1 WHERE id = ?1 AND grace_used < ?2")
                    .and_then(|mut s| s.execute(params![user_id.0, limit.map_or(i64::MAX, i64::from)]))
                    .map_err(map_err)?;
                n == 1
            }
            Verdict::Failed(_) => {
                // A wrong code also wears out the user's pending email/SMS codes.
                conn.prepare_cached(
                    "UPDATE oob_codes SET attempts = attempts + 1 \
                     WHERE user_id = ?1 AND used_at IS NULL AND expires_at > ?2",
                )
                .and_then(|mut s| s.execute(params![user_id.0, now.0]))
                .map_err(map_err)?;
                false
            }
            Verdict::Replayed(_) | Verdict::Refused(_) | Verdict::Challenge => false,
        };
        settle(&verdict, consumed, &lock, &policy, now)
    };

    let accepted = outcome == AuthOutcome::Accepted;
    conn.prepare_cached(
        "UPDATE users SET failures = ?1, locked_at = ?2, lock_until = ?3, throttle_until = ?4, \
         last_attempt_at = ?5, last_attempt_addr = ?6, last_attempt_client = ?7, \
         last_success_at = CASE WHEN ?8 THEN ?5 ELSE last_success_at END, \
         last_success_addr = CASE WHEN ?8 THEN ?6 ELSE last_success_addr END, \
         last_success_client = CASE WHEN ?8 THEN ?7 ELSE last_success_client END, \
         token_state = ?10, updated_at = ?5 WHERE id = ?9",
    )
    .and_then(|mut s| {
        s.execute(params![
            next.failures as i64,
            next.locked_at.map(|t| t.0),
            next.lock_until.map(|t| t.0),
            next.throttle_until.map(|t| t.0),
            now.0,
            access.address,
            access.client,
            accepted,
            user_id.0,
            states.encode(),
        ])
    })
    .map_err(map_err)?;
    // A factor the primary took for this login was recorded there with the
    // success (see `cluster::claim`): nothing left to forward.
    let claimed = matches!(verdict, Verdict::Verified(Factor::Claimed(_)));
    if journal && !(claimed && outcome == AuthOutcome::Accepted) {
        cluster::journal_login(conn, user_id.0, now.0, &verdict, &outcome)?;
    }
    finish_attempt_audit(&mut audit, &verdict, &outcome);
    insert_audit(conn, &audit)?;
    Ok(outcome)
}

impl SqliteStore {
    /// Applies one attempt in the writer's transaction (a replica, or a
    /// process without the login engine).
    async fn classic_commit(&self, attempt: AuthAttempt) -> Result<AuthOutcome, StoreError> {
        if self.engine.is_none() {
            self.fresh_for(true).await?;
        }
        let journal = self.journal();
        self.write_hot(move |c| apply_attempt(c, attempt, journal)).await
    }

    /// Reads, evaluates and applies one login in the writer's transaction
    /// (a replica, or a process without the login engine).
    async fn classic_authenticate(&self, req: AuthenticateRequest) -> Result<Authentication, StoreError> {
        if self.engine.is_none() {
            self.fresh_for(true).await?;
        }
        let user_sql = self.sql.user_by_name.clone();
        let tokens_sql = self.sql.tokens_for_user.clone();
        let journal = self.journal();
        // Runs on the writer's connection, whose page cache stays warm
        // (readers lose theirs at every commit), in the batch transaction:
        // the read, the evaluation and the update see one state.
        self.write_hot(move |c| {
            let AuthenticateRequest { realm, username, access, policy, mut audit, state, evaluate } = req;
            let user = c
                .prepare_cached(&user_sql)
                .and_then(|mut s| {
                    s.query_row([&realm, &username], |r| Ok((rows::user(r)?, rows::token_states(r)?))).optional()
                })
                .map_err(map_err)?;
            let Some((user, states)) = user else {
                audit.result = tessera_core::audit::AuditResult::Reject;
                audit.reason = Some("unknown_user".into());
                insert_audit(c, &audit)?;
                return Ok(Authentication::UnknownUser);
            };
            let mut tokens: Vec<Token> = c
                .prepare_cached(&tokens_sql)
                .and_then(|mut s| s.query_map([&user.id.0], rows::token)?.collect())
                .map_err(map_err)?;
            tokens.iter_mut().for_each(|t| states.overlay(t));
            sort_tokens(&mut tokens);
            if let Some(ticket) = state {
                let fresh = c
                    .prepare_cached("INSERT OR IGNORE INTO used_states (nonce, expires_at) VALUES (?1, ?2)")
                    .and_then(|mut s| s.execute(params![&ticket.nonce[..], ticket.expires_at.0]))
                    .map_err(map_err)?;
                if fresh == 0 {
                    let verdict = Verdict::Refused("state_reused");
                    let attempt = AuthAttempt { user_id: user.id, access, verdict: verdict.clone(), policy, audit };
                    let outcome = apply_to(c, attempt, UserAuthState::of(&user, states), journal)?;
                    return Ok(Authentication::Decided { user_id: user.id, verdict, outcome });
                }
                if journal {
                    cluster::journal_state(c, user.id.0, access.at.0, &ticket.nonce, ticket.expires_at.0)?;
                }
            }
            let snapshot = WriterSnapshot { conn: c, user: &user, tokens: &tokens };
            match evaluate(&snapshot) {
                Evaluation::Deferred => Ok(Authentication::Deferred { user: Box::new(user), tokens }),
                Evaluation::Decided(verdict) => {
                    let attempt = AuthAttempt { user_id: user.id, access, verdict: verdict.clone(), policy, audit };
                    let outcome = apply_to(c, attempt, UserAuthState::of(&user, states), journal)?;
                    Ok(Authentication::Decided { user_id: user.id, verdict, outcome })
                }
            }
        })
        .await
    }
}

#[async_trait]
impl LoginStore for SqliteStore {
    async fn auth_subject(&self, realm: &str, username: &str) -> Result<Option<(User, Vec<Token>)>, StoreError> {
        self.fresh().await?;
        // One read transaction, so the user and the tokens are one snapshot.
        // (Two simple statements: a LEFT JOIN variant was re-prepared by
        // SQLite on every execution, which cost more than the second query.)
        self.read(|c| {
            c.prepare_cached("BEGIN")?.execute([])?;
            let r = (|| {
                let user = c
                    .prepare_cached(&self.sql.user_by_name)?
                    .query_row([realm, username], |r| Ok((rows::user(r)?, rows::token_states(r)?)))
                    .optional()?;
                let Some((user, states)) = user else { return Ok(None) };
                let mut tokens = c
                    .prepare_cached(&self.sql.tokens_for_user)?
                    .query_map([&user.id.0], rows::token)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                tokens.iter_mut().for_each(|t| states.overlay(t));
                sort_tokens(&mut tokens);
                Ok(Some((user, tokens)))
            })();
            c.prepare_cached("COMMIT")?.execute([])?;
            r
        })
    }

    async fn evaluate_read_only(
        &self,
        realm: &str,
        username: &str,
        evaluate: Evaluator,
    ) -> Result<Option<(User, Vec<Token>, Evaluation)>, StoreError> {
        // On a reader, not the writer: a replica evaluates here, asks the
        // primary, then commits once (the writer's queue is waited for once).
        self.readers.with(|c| {
            c.prepare_cached("BEGIN").and_then(|mut s| s.execute([])).map_err(map_err)?;
            let r = (|| {
                let user = c
                    .prepare_cached(&self.sql.user_by_name)
                    .and_then(|mut s| {
                        s.query_row([realm, username], |r| Ok((rows::user(r)?, rows::token_states(r)?))).optional()
                    })
                    .map_err(map_err)?;
                let Some((user, states)) = user else { return Ok(None) };
                let mut tokens: Vec<Token> = c
                    .prepare_cached(&self.sql.tokens_for_user)
                    .and_then(|mut s| s.query_map([&user.id.0], rows::token)?.collect())
                    .map_err(map_err)?;
                tokens.iter_mut().for_each(|t| states.overlay(t));
                sort_tokens(&mut tokens);
                let evaluation = evaluate(&WriterSnapshot { conn: c, user: &user, tokens: &tokens });
                Ok(Some((user, tokens, evaluation)))
            })();
            let _ = c.prepare_cached("COMMIT").and_then(|mut s| s.execute([]));
            r
        })
    }

    async fn commit_attempt(&self, attempt: AuthAttempt) -> Result<AuthOutcome, StoreError> {
        match &self.engine {
            Some(e) => self.engine_commit(e, attempt).await,
            None => self.classic_commit(attempt).await,
        }
    }

    async fn authenticate(&self, req: AuthenticateRequest) -> Result<Authentication, StoreError> {
        match &self.engine {
            Some(e) => self.engine_authenticate(e, req).await,
            None => self.classic_authenticate(req).await,
        }
    }

    async fn backup_code(&self, user: &UserId, digest: &[u8; 32]) -> Result<Option<BackupCodeState>, StoreError> {
        self.read(|c| backup_code(c, user, digest))
    }

    async fn reserve_oob_code(&self, code: &OobCode, since: Timestamp, limit: u32) -> Result<bool, StoreError> {
        let code = code.clone();
        self.write(move |c| {
            let user = code.user_id.0;
            // Rows that left the rate window and cannot be used any more go.
            c.prepare_cached(
                "DELETE FROM oob_codes WHERE user_id = ?1 AND created_at <= ?2 \
                 AND (used_at IS NOT NULL OR expires_at <= ?3)",
            )
            .and_then(|mut s| s.execute(params![user, since.0, code.created_at.0]))
            .map_err(map_err)?;
            let sent: i64 = c
                .prepare_cached("SELECT count(*) FROM oob_codes WHERE user_id = ?1 AND created_at > ?2")
                .and_then(|mut s| s.query_row(params![user, since.0], |r| r.get(0)))
                .map_err(map_err)?;
            if sent >= i64::from(limit) {
                return Ok(false);
            }
            let r = c
                .prepare_cached(&format!(
                    "INSERT INTO oob_codes ({OOB_CODE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ))
                .and_then(|mut s| {
                    s.execute(params![
                        code.id,
                        user,
                        code.token_id.0,
                        &code.digest[..],
                        code.created_at.0,
                        code.expires_at.0,
                        code.attempts,
                        code.used_at.map(|t| t.0)
                    ])
                });
            match r {
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY =>
                {
                    Err(StoreError::NotFound(format!("user {user}")))
                }
                r => r.map(|_| true).map_err(map_err),
            }
        })
        .await
    }

    async fn oob_codes(&self, user: &UserId, since: Timestamp) -> Result<Vec<OobCode>, StoreError> {
        self.read(|c| oob_codes(c, *user, since))
    }

    async fn prune_states(&self, now: Timestamp) -> Result<u64, StoreError> {
        if let Some(e) = &self.engine {
            e.prune_nonces(now.0);
        }
        self.write(move |c| {
            let states = c.execute("DELETE FROM used_states WHERE expires_at < ?1", [now.0]).map_err(map_err)?;
            // Email/SMS codes past every window (a day; see oob::MAX_WINDOW_SECONDS).
            let day_ago = now.plus_seconds(-i64::from(tessera_core::oob::MAX_WINDOW_SECONDS)).0;
            let codes = c
                .execute("DELETE FROM oob_codes WHERE created_at < ?1 AND expires_at < ?1", [day_ago])
                .map_err(map_err)?;
            Ok((states + codes) as u64)
        })
        .await
    }
}
