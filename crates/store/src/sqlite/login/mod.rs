//! The login engine of the embedded store: login state in memory, made
//! durable by an append-only journal (`journal.rs`) and folded into SQLite
//! in the background (`fold.rs`).
//!
//! Where things are:
//! * the decision a login comes to is core's (`store::settle`); `decide.rs`
//!   applies it to the in-memory state and says what to journal;
//! * the per-user login state (lock, last attempt and success, token
//!   floors and drift) is authoritative in memory for every user with an
//!   entry, and in the `users` row otherwise; an entry also keeps the user
//!   and tokens as their rows were read (the *profile*), so a login of a
//!   user seen before touches no database page at all. Every
//!   administrative write empties memory, and a write by another process
//!   (the CLI) is noticed before the next login (see [`Hint`]);
//! * a login is answered only once its record is durable (one fdatasync
//!   per batch, `journal.rs`).
//!
//! Three locks keep it exact:
//! * a per-user shard mutex around read-overlay-decide-append, so two
//!   logins of one user are applied one after the other;
//! * the *gate*: logins hold it shared while they decide and append;
//!   rotating the journal and administrative writes hold it exclusively,
//!   so they see no half-done login;
//! * the fold lock: one fold at a time, and none during an administrative
//!   write (which folds everything first, then runs, then finds memory
//!   empty: the next login reads the row it wrote).
//!
//! Logins that touch more than the login state (backup codes, email/SMS
//! codes, grace logins, cluster claims) take the administrative path: fold,
//! then the transaction of the old path (`apply_attempt`), exclusively.

pub mod decide;
pub mod fold;
pub mod journal;
pub mod record;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rusqlite::Connection;
use tessera_core::model::{Token, User};
use tessera_core::random::{OsRandom, Random};
use tessera_core::store::StoreError;

use super::map_err;
use super::writer::WriterHandle;
use journal::{Journal, JournalFiles, Rotated};
use record::{LoginState, Record};

const SHARDS: usize = 64;

/// A rotation asked of the journal thread, and the rotation point before it.
type Rotation = (tokio::sync::oneshot::Receiver<Result<Rotated, StoreError>>, u64);
/// A fold runs every `fold_interval` while records wait (longer folds
/// write each database page once for more logins: a login dirties its
/// user's page, and a fold writes every dirty page to the WAL and, at the
/// checkpoint, again to the database)…
/// …or as soon as this many are waiting (bounds memory and start-up replay).
const FOLD_RECORDS: u64 = 100_000;
const FOLD_TICK: Duration = Duration::from_millis(25);
/// How long `serve` waits for another process (a CLI command replaying the
/// journal) to let go of the journal lock.
const LOCK_WAIT: Duration = Duration::from_secs(2);
/// How long a CLI command waits for a running server to fold its journal.
const FOLD_WAIT: Duration = Duration::from_secs(3);

/// A user and their tokens as the rows had them when first read; the
/// login-state fields in them are stale and always overlaid from
/// [`Entry::state`]. Only an administrative write changes these rows, and
/// it empties memory.
#[derive(Debug)]
pub struct Profile {
    pub user: User,
    pub tokens: Vec<Token>,
    /// The name index key (`realm`, NUL, `username`).
    key: Box<str>,
}

/// One user's login state and profile.
#[derive(Debug)]
struct Entry {
    state: LoginState,
    /// The engine sequence number of its last record.
    seq: u64,
    profile: Arc<Profile>,
}

type NameShard = Mutex<HashMap<Box<str>, i64>>;

fn name_key(realm: &str, username: &str) -> String {
    let mut k = String::with_capacity(realm.len() + username.len() + 1);
    k.push_str(realm);
    k.push('\0');
    k.push_str(username);
    k
}

#[derive(Debug)]
pub struct LoginEngine {
    enabled: AtomicBool,
    /// Set when the engine was off (a replica takes logins the old way):
    /// memory may be stale and is dropped before the next engine login.
    reset: AtomicBool,
    gate: tokio::sync::RwLock<()>,
    shards: Box<[Mutex<HashMap<i64, Entry>>]>,
    /// `realm`, NUL, `username` → user id, for the users in `shards`.
    names: Box<[NameShard]>,
    /// What another process last wrote into the lock file (see [`Hint`]).
    hint: Hint,
    /// Set by the background poll when `external_rev` moved without a hint
    /// (a command that died between its commit and the hint).
    stale: AtomicBool,
    /// Challenge States used since start (also folded into `used_states`).
    nonces: Mutex<HashMap<[u8; 16], i64>>,
    journal: Journal,
    /// Sequence number of the last appended record.
    seq: AtomicU64,
    /// `seq` when the journal was last rotated.
    rotated: AtomicU64,
    /// Every record up to this is in SQLite.
    committed: AtomicU64,
    /// `login_journal.external_rev` as last seen: other processes (the CLI)
    /// bump it with every write they make to this database.
    known_rev: AtomicI64,
    /// Rotated files whose fold has not committed yet (a failed fold is retried).
    fold: tokio::sync::Mutex<Vec<Rotated>>,
    last_fold: Mutex<Instant>,
    fold_interval: Duration,
    /// How many users memory keeps at most; beyond it, the ones whose last
    /// login is oldest (and folded) are dropped at the next fold. About
    /// 1 KiB each: this bounds memory whatever the number of users.
    cached_users: usize,
    writer: WriterHandle,
    folder: OnceLock<()>,
    /// Reads `fold_request` (another process asking for a fold, see
    /// [`request_fold`]) without going through the writer.
    probe: Mutex<Connection>,
    _lock: File,
}

fn lock_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-login-journal.lock");
    PathBuf::from(p)
}

fn open_lock(db: &Path) -> Result<File, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(lock_path(db))
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", lock_path(db).display())))
}

/// Folds what a previous run left in the journal into `conn`'s database
/// (start-up, before anything else writes). Returns the journal id, the
/// next file index and how many records were replayed.
pub fn replay(conn: &Connection, db: &Path) -> Result<(u64, u64, usize), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE").map_err(map_err)?;
    let r = replay_in_txn(conn, db);
    match r {
        Ok((id, next, n, done)) => {
            conn.execute_batch("COMMIT").map_err(map_err)?;
            for p in done {
                let _ = std::fs::remove_file(p);
            }
            Ok((id, next, n))
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// [`replay`] inside the caller's transaction; the files it folded are
/// for the caller to remove once that transaction has committed.
fn replay_in_txn(conn: &Connection, db: &Path) -> Result<(u64, u64, usize, Vec<PathBuf>), StoreError> {
    let fresh: u64 = {
        let mut b = [0u8; 8];
        OsRandom.fill(&mut b);
        u64::from_le_bytes(b) >> 1
    };
    let (id, folded) = fold::watermark(conn, fresh)?;
    let files = JournalFiles::of(db, id);
    let (ours, foreign) =
        files.list(db).map_err(|e| StoreError::Unavailable(format!("listing the login journal: {e}")))?;
    for f in foreign {
        tracing::warn!(file = %f.display(), "removing a login journal file of another database (left by a restore)");
        let _ = std::fs::remove_file(f);
    }
    let mut records = Vec::new();
    let mut last = folded;
    let mut done = Vec::new();
    for (index, path) in ours {
        if index > folded {
            records.extend(
                JournalFiles::read(&path).map_err(|e| {
                    StoreError::Unavailable(format!("reading the login journal {}: {e}", path.display()))
                })?,
            );
        }
        last = last.max(index);
        done.push(path);
    }
    let n = records.len();
    if last > folded || n > 0 {
        fold::apply(conn, &records, last)?;
        if n > 0 {
            tracing::info!(records = n, "replayed the login journal left by the last run");
        }
    }
    Ok((id, last + 1, n, done))
}

/// For a process without the engine whose server went away: inside a
/// writer job, folds what that server left (if no server holds the
/// journal now). Returns the lock and the files to remove after the commit.
pub fn replay_if_unowned_in_txn(conn: &Connection, db: &Path) -> Result<Option<(File, Vec<PathBuf>)>, StoreError> {
    let lock = open_lock(db)?;
    if lock.try_lock().is_err() {
        return Ok(None);
    }
    let (.., done) = replay_in_txn(conn, db)?;
    Ok(Some((lock, done)))
}

/// For a process that does not run the engine (the CLI): if no server holds
/// the journal, fold what it left, so this process reads current state.
pub fn replay_if_unowned(conn: &Connection, db: &Path) -> Result<(), StoreError> {
    let lock = open_lock(db)?;
    if lock.try_lock().is_ok() {
        replay(conn, db)?;
    } else {
        // A running server owns the journal; make sure the table that
        // carries `external_rev` exists for this process's writes.
        conn.execute(fold::SCHEMA, []).map_err(map_err)?;
    }
    Ok(())
}

/// Whether a process (a running `serve`) holds this database's journal.
pub fn served_elsewhere(db: &Path) -> bool {
    match open_lock(db) {
        Ok(f) => f.try_lock().is_err(),
        Err(_) => false,
    }
}

/// Asks the process that holds the journal to fold it now, and waits (a
/// bounded time) until it has: then this process's reads and its own
/// logins see every login that process acknowledged. Used by processes
/// without the engine (the CLI) while a server runs.
pub async fn request_fold(
    writer: &super::writer::Writer,
    read: impl Fn() -> Result<i64, StoreError>,
) -> Result<(), StoreError> {
    let asked = writer
        .write_hot(|c| {
            c.prepare_cached("UPDATE login_journal SET fold_request = fold_request + 1 WHERE id = 1")
                .and_then(|mut s| s.execute([]))
                .map_err(map_err)?;
            c.prepare_cached("SELECT fold_request FROM login_journal WHERE id = 1")
                .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
                .map_err(map_err)
        })
        .await?;
    let deadline = Instant::now() + FOLD_WAIT;
    while read()? < asked {
        if Instant::now() > deadline {
            tracing::warn!(
                "the running server did not fold its login journal within {FOLD_WAIT:?}; showing the database as it is"
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// [`request_fold`] for a process that has no store open (`backup create`
/// copies the database file): true when a running server folded in time,
/// false when none runs (then the file is current once replayed at open).
pub fn request_fold_blocking(db: &Path) -> Result<bool, StoreError> {
    if !served_elsewhere(db) {
        return Ok(false);
    }
    let conn = Connection::open(db).map_err(map_err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(map_err)?;
    conn.execute("UPDATE login_journal SET fold_request = fold_request + 1 WHERE id = 1", []).map_err(map_err)?;
    let asked: i64 =
        conn.query_row("SELECT fold_request FROM login_journal WHERE id = 1", [], |r| r.get(0)).map_err(map_err)?;
    let deadline = Instant::now() + FOLD_WAIT;
    loop {
        let done: i64 =
            conn.query_row("SELECT fold_done FROM login_journal WHERE id = 1", [], |r| r.get(0)).map_err(map_err)?;
        if done >= asked {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// This database's journal files (for moving them aside with the database).
pub fn journal_files(db: &Path) -> Vec<PathBuf> {
    let (dir, prefix) = JournalFiles::family(db);
    std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Bumps `external_rev`: called inside every write transaction of a
/// process without the engine, so a running engine drops what it holds
/// in memory about rows this write may have changed.
pub fn bump_external(conn: &Connection) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE login_journal SET external_rev = external_rev + 1 WHERE id = 1")
        .and_then(|mut s| s.execute([]))
        .map_err(map_err)?;
    Ok(())
}

/// Reads `external_rev` (inside the caller's read transaction).
pub fn external_rev(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT external_rev FROM login_journal WHERE id = 1")?.query_row([], |r| r.get(0))
}

/// A value another process (the CLI) writes into the journal's lock file
/// after each write it commits, so a running engine notices at the cost of
/// one `pread` per login instead of a database read. The value is random
/// (two commands writing at once cannot write the same one back), and the
/// engine only compares it with the last it saw. A command that dies
/// between its commit and the hint is caught by the background poll of
/// `external_rev` (within [`FOLD_TICK`]).
#[derive(Debug)]
struct Hint {
    file: File,
    seen: AtomicU64,
}

impl Hint {
    fn new(lock: &File) -> Result<Hint, StoreError> {
        let file =
            lock.try_clone().map_err(|e| StoreError::Unavailable(format!("the login journal's lock file: {e}")))?;
        let h = Hint { file, seen: AtomicU64::new(0) };
        h.seen.store(h.read().unwrap_or(0), Ordering::Release);
        Ok(h)
    }

    /// The value in the file (0 while nobody wrote one); `None` when it
    /// cannot be read.
    fn read(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let mut b = [0u8; 8];
        match self.file.read_at(&mut b, 0) {
            Ok(8) => Some(u64::from_le_bytes(b)),
            Ok(_) => Some(0),
            Err(e) => {
                static SAID: AtomicBool = AtomicBool::new(false);
                if !SAID.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %e, "cannot read the login journal's lock file; until a restart every login first folds the journal and empties memory (slow, never stale)");
                }
                None
            }
        }
    }

    /// Unreadable counts as moved: slower, never stale.
    fn moved(&self) -> bool {
        self.read().is_none_or(|v| v != self.seen.load(Ordering::Acquire))
    }
}

/// Leaves a hint for a running engine that this process wrote to the
/// database (after the commit: see [`Hint`]).
pub fn leave_hint(lock: &File) {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 8];
    OsRandom.fill(&mut b);
    if let Err(e) = lock.write_at(&b, 0) {
        tracing::warn!(error = %e, "cannot tell a running server about this write; it notices within a second");
    }
}

/// The journal's lock file, for [`leave_hint`].
pub fn hint_file(db: &Path) -> Result<File, StoreError> {
    open_lock(db)
}

/// A journal replayed and locked, waiting for the writer to exist.
#[derive(Debug)]
pub struct Prepared {
    lock: File,
    probe: Connection,
    files: JournalFiles,
    next: u64,
    rev: i64,
}

impl Prepared {
    pub fn start(
        self,
        writer: WriterHandle,
        fold_interval: Duration,
        cached_users: usize,
    ) -> Result<Arc<LoginEngine>, StoreError> {
        let journal = Journal::start(self.files, self.next)?;
        Ok(Arc::new(LoginEngine {
            enabled: AtomicBool::new(true),
            reset: AtomicBool::new(false),
            gate: tokio::sync::RwLock::new(()),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            names: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hint: Hint::new(&self.lock)?,
            stale: AtomicBool::new(false),
            nonces: Mutex::new(HashMap::new()),
            journal,
            seq: AtomicU64::new(0),
            rotated: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            known_rev: AtomicI64::new(self.rev),
            fold: tokio::sync::Mutex::new(Vec::new()),
            last_fold: Mutex::new(Instant::now()),
            fold_interval,
            cached_users,
            writer,
            folder: OnceLock::new(),
            probe: Mutex::new(self.probe),
            _lock: self.lock,
        }))
    }
}

impl LoginEngine {
    /// Takes the journal lock (waiting a little for a CLI replay to
    /// finish) and replays what the last run left, on the connection that
    /// becomes the writer's; [`Prepared::start`] then starts the journal.
    /// `None` when another `serve` holds the journal: this process then
    /// decides logins with ordinary transactions, like the CLI.
    pub fn prepare(conn: &Connection, db: &Path) -> Result<Option<Prepared>, StoreError> {
        let lock = open_lock(db)?;
        let deadline = Instant::now() + LOCK_WAIT;
        while lock.try_lock().is_err() {
            if Instant::now() > deadline {
                tracing::warn!(
                    lock = %lock_path(db).display(),
                    "another `tessera serve` holds this database's login journal; this one decides logins with \
                     ordinary transactions (slower), asking it to fold its journal before each"
                );
                replay_if_unowned(conn, db)?;
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let (id, next, _) = replay(conn, db)?;
        let rev = external_rev(conn).map_err(map_err)?;
        let probe = Connection::open_with_flags(
            db,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(map_err)?;
        Ok(Some(Prepared { lock, probe, files: JournalFiles::of(db, id), next, rev }))
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Off while the node is a replica (its logins take the old path).
    pub fn set_enabled(&self, on: bool) {
        if !on {
            self.reset.store(true, Ordering::Release);
        }
        self.enabled.store(on, Ordering::Release);
    }

    /// Whether records wait to be folded.
    pub fn has_pending(&self) -> bool {
        self.seq.load(Ordering::Acquire) != self.committed.load(Ordering::Acquire)
    }

    fn shard(&self, user: i64) -> &Mutex<HashMap<i64, Entry>> {
        &self.shards[(user as u64 % SHARDS as u64) as usize]
    }

    /// Starts the background fold on the current runtime (once).
    fn ensure_folder(self: &Arc<Self>) {
        self.folder.get_or_init(|| {
            let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
            let weak: Weak<Self> = Arc::downgrade(self);
            rt.spawn(async move {
                loop {
                    tokio::time::sleep(FOLD_TICK).await;
                    let Some(engine) = weak.upgrade() else { return };
                    let waiting = engine.seq.load(Ordering::Acquire) - engine.rotated.load(Ordering::Acquire);
                    let due = engine.last_fold.lock().elapsed() >= engine.fold_interval;
                    let asked = engine.fold_requested();
                    engine.poll_external();
                    let r = if asked.is_some() {
                        engine.fold_acknowledging(asked).await
                    } else if engine.has_pending() && (due || waiting >= FOLD_RECORDS) {
                        engine.fold().await
                    } else {
                        Ok(())
                    };
                    if let Err(e) = r {
                        tracing::error!(error = %e, "folding the login journal into the database failed; will retry");
                    }
                }
            });
        });
    }

    /// Appends a record decided under `shard` (held by the caller, so the
    /// user's records are journaled in decision order) and notes its
    /// sequence number on the user's entry.
    fn append(&self, record: Record) -> (u64, journal::Durable) {
        let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        (seq, self.journal.append(record))
    }

    /// Over `cached_users`, drops the users whose last login is oldest,
    /// down to 80 % of it, among those whose records are all in SQLite.
    /// Only under the exclusive gate: a login that then misses the entry
    /// reads the row, and no fold is writing that row any more.
    fn evict_committed(&self) {
        let held: usize = self.shards.iter().map(|s| s.lock().len()).sum();
        journal::STATS.memory_users.store(held as u64, Ordering::Relaxed);
        if held <= self.cached_users {
            return;
        }
        let committed = self.committed.load(Ordering::Acquire);
        let mut seqs: Vec<u64> =
            self.shards.iter().flat_map(|s| s.lock().values().map(|e| e.seq).collect::<Vec<_>>()).collect();
        let drop = held - self.cached_users * 4 / 5;
        let (_, cut, _) = seqs.select_nth_unstable(drop - 1);
        let cut = (*cut).min(committed);
        for s in self.shards.iter() {
            s.lock().retain(|_, e| {
                let keep = e.seq > cut;
                if !keep {
                    self.names_shard(&e.profile.key).lock().remove(&e.profile.key);
                }
                keep
            });
        }
        let held: usize = self.shards.iter().map(|s| s.lock().len()).sum();
        journal::STATS.memory_users.store(held as u64, Ordering::Relaxed);
    }

    fn clear(&self) {
        for s in self.shards.iter() {
            s.lock().clear();
        }
        for s in self.names.iter() {
            s.lock().clear();
        }
        journal::STATS.memory_users.store(0, Ordering::Relaxed);
    }

    fn names_shard(&self, key: &str) -> &NameShard {
        // FNV-1a: only spreads names over the shards (the maps inside are
        // keyed by SipHash, so a chosen name cannot degrade them).
        let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        &self.names[(h % SHARDS as u64) as usize]
    }

    /// The user id memory holds under this name, if any.
    fn lookup(&self, realm: &str, username: &str) -> Option<i64> {
        let key = name_key(realm, username);
        self.names_shard(&key).lock().get(key.as_str()).copied()
    }

    /// Whether another process wrote to the database since memory was
    /// last emptied for it: then the next login resyncs first.
    fn changed_elsewhere(&self) -> bool {
        self.stale.load(Ordering::Acquire) || self.hint.moved()
    }

    /// A fold another process asked for and this one has not answered.
    fn fold_requested(&self) -> Option<i64> {
        let c = self.probe.lock();
        let r: rusqlite::Result<(i64, i64)> = c
            .prepare_cached("SELECT fold_request, fold_done FROM login_journal WHERE id = 1")
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))));
        match r {
            Ok((asked, done)) if asked > done => Some(asked),
            _ => None,
        }
    }

    /// Notices a write by another process that left no hint (it died
    /// between its commit and the hint): the next login then resyncs.
    fn poll_external(&self) {
        let c = self.probe.lock();
        if let Ok(rev) = external_rev(&c)
            && rev != self.known_rev.load(Ordering::Acquire)
        {
            self.stale.store(true, Ordering::Release);
        }
    }

    /// Folds, then records that fold request `asked` is answered.
    async fn fold_acknowledging(&self, asked: Option<i64>) -> Result<(), StoreError> {
        self.fold().await?;
        if let Some(v) = asked {
            self.writer
                .write_hot(move |c| {
                    c.prepare_cached("UPDATE login_journal SET fold_done = MAX(fold_done, ?1) WHERE id = 1")
                        .and_then(|mut s| s.execute([v]))
                        .map_err(map_err)
                })
                .await?;
        }
        Ok(())
    }

    /// Writes what is waiting into SQLite (the background fold, and before
    /// reads that must see every acknowledged login).
    pub async fn fold(&self) -> Result<(), StoreError> {
        let mut pending = self.fold.lock().await;
        let (rx, through) = {
            let _w = self.gate.write().await;
            self.evict_committed();
            let through = self.seq.load(Ordering::Acquire);
            if through == self.committed.load(Ordering::Acquire) && pending.is_empty() {
                return Ok(());
            }
            (self.rotate_if_needed(through), through)
        };
        self.finish_fold(&mut pending, rx, through).await
    }

    /// Asks the journal to rotate when records arrived since the last
    /// rotation; with the answer, the rotation point to go back to if it fails.
    fn rotate_if_needed(&self, through: u64) -> Option<Rotation> {
        let before = self.rotated.load(Ordering::Acquire);
        if through == before {
            return None;
        }
        self.rotated.store(through, Ordering::Release);
        Some((self.journal.rotate(), before))
    }

    async fn finish_fold(
        &self,
        pending: &mut Vec<Rotated>,
        rx: Option<Rotation>,
        through: u64,
    ) -> Result<(), StoreError> {
        *self.last_fold.lock() = Instant::now();
        if let Some((rx, before)) = rx {
            let answer =
                rx.await.unwrap_or_else(|_| Err(StoreError::Unavailable("the login journal has stopped".into())));
            match answer {
                Ok(rotated) => pending.push(rotated),
                Err(e) => {
                    // The records stay in the current file: the next fold
                    // must rotate again (else it would count them as folded).
                    self.rotated.store(before, Ordering::Release);
                    return Err(e);
                }
            }
        }
        let Some(last) = pending.last().map(|r| r.index) else {
            self.committed.store(through, Ordering::Release);
            return Ok(());
        };
        let files = Arc::new(std::mem::take(pending));
        let job = files.clone();
        let r = self
            .writer
            .write_hot(move |c| {
                let mut records = Vec::new();
                for f in job.iter() {
                    records.extend(JournalFiles::read(&f.path).map_err(|e| {
                        StoreError::Unavailable(format!("reading the login journal {}: {e}", f.path.display()))
                    })?);
                }
                fold::apply_refs(c, &records.iter().collect::<Vec<_>>(), last)?;
                Ok(records.len())
            })
            .await;
        match r {
            Ok(n) => {
                self.committed.store(through, Ordering::Release);
                journal::STATS.folded.fetch_add(n as u64, Ordering::Relaxed);
                journal::STATS.folds.fetch_add(1, Ordering::Relaxed);
                for f in files.iter() {
                    if let Err(e) = std::fs::remove_file(&f.path) {
                        tracing::warn!(file = %f.path.display(), error = %e, "cannot remove a folded login journal file");
                    }
                }
                Ok(())
            }
            Err(e) => {
                *pending = Arc::try_unwrap(files).unwrap_or_else(|a| a.iter().cloned().collect());
                Err(e)
            }
        }
    }

    /// Runs `job` as an administrative write: with logins held off, after
    /// folding everything, leaving memory empty (the next logins read the
    /// rows as `job` left them).
    pub async fn exclusive<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        // Most of the waiting records are folded with logins running; what
        // arrives meanwhile is folded below with them held off.
        if self.has_pending() {
            self.fold().await?;
        }
        let mut pending = self.fold.lock().await;
        let _w = self.gate.write().await;
        let through = self.seq.load(Ordering::Acquire);
        if through != self.committed.load(Ordering::Acquire) || !pending.is_empty() {
            let rx = self.rotate_if_needed(through);
            self.finish_fold(&mut pending, rx, through).await?;
        }
        self.clear();
        if self.enabled() {
            self.reset.store(false, Ordering::Release);
        }
        self.writer.write(job).await
    }

    /// Forgets challenge States that have expired anyway.
    pub fn prune_nonces(&self, now_ms: i64) {
        self.nonces.lock().retain(|_, exp| *exp > now_ms);
    }
}
