//! Bringing a node up from its configuration: the master key, the data
//! directory, the database, the TLS certificate. Used by `tessera serve` and
//! by every CLI command that works on the data directory.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tessera_core::admin::Admin;
use tessera_core::auth::Authenticator;
use tessera_core::clock::{Clock, SystemClock};
use tessera_core::context::Context;
use tessera_core::keys::{KeyError, Keyring, MasterKey};
use tessera_core::password::PasswordHasher;
use tessera_core::random::{OsRandom, Random};
use tessera_core::rotation::{RotationMarker, RotationState};
use tessera_core::store::{Store, StoreError};
use tessera_store::{PgOptions, PgStore, SqliteOptions, SqliteStore};

use crate::config::{Config, ConfigError};
use crate::directory::DirectoryService;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(
        "master key file {0} not found. Set TESSERA_MASTER_KEY, point [master_key] file at the key, or restore the key file \
         (a new key cannot open existing data)"
    )]
    KeyMissing(PathBuf),
    #[error("master key file {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`")]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error("master key from {source_name} is unusable: {error}")]
    KeyMalformed { source_name: String, error: KeyError },
    #[error("cannot read {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{0} is already initialised; refusing to overwrite it")]
    AlreadyInitialised(String),
    #[error(
        "the database {0} is not initialised: run `tessera init` once, from one node, and give every node the same \
         master key"
    )]
    NotInitialised(String),
    /// `database` is the SQLite file or the URL without its password.
    #[error("database {database}: {error}")]
    Store { database: String, error: StoreError },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("TLS certificate: {0}")]
    Tls(String),
    #[error("email/SMS codes: {0}")]
    Oob(String),
    /// The database was re-sealed under a new master key by a rotation this
    /// node missed (it was stopped until the rotation finished).
    #[error(
        "the master key was rotated from key {from} to key {to} while this node was away ({when}); this node still \
         has only key {from} ({source_name}). Copy the key file from another node (every node that took part holds \
         key {to}) or set TESSERA_MASTER_KEY to it, then start this node again"
    )]
    MissedRotation { from: String, to: String, when: String, source_name: String },
}

/// Loads the configuration for use (serve, reload, every CLI command): the
/// file and the environment ([`Config::load`], which checks the values),
/// then the subsystems' own checks ([`startup_checks`]).
pub fn load_config(file: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
    let cfg = Config::load(file, env)?;
    startup_checks(&cfg)?;
    Ok(cfg)
}

/// The checks of a configuration that need a subsystem's parsing: the
/// syslog target and format, the email/SMS templates and transports. They
/// live here rather than in `Config::validate` so that `config` stays data
/// and imports no subsystem (the subsystems import their sections from it).
/// Failures are `ConfigError::Invalid`, as the other checks of a bad value.
pub fn startup_checks(cfg: &Config) -> Result<(), ConfigError> {
    crate::syslog::check(&cfg.syslog).map_err(ConfigError::Invalid)?;
    crate::oob::config::check(cfg).map_err(ConfigError::Invalid)?;
    Ok(())
}

/// Where the master key came from, for start-up messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    File(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Environment => f.write_str("TESSERA_MASTER_KEY"),
            KeySource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// What `init` created.
#[derive(Debug, Clone)]
pub struct InitReport {
    pub data_dir: PathBuf,
    /// The SQLite file, or the PostgreSQL URL without its password.
    pub database: String,
    pub key: KeySource,
    pub key_created: bool,
    pub key_id: String,
    /// What became of the data directory's mode.
    pub data_dir_mode: DataDirMode,
}

/// The data directory's mode after `init`: 0700 (the README's promise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDirMode {
    /// `init` created it, 0700.
    Created,
    /// It existed, already without group or other access.
    AlreadyPrivate,
    /// It existed with group or other access (`from`); now 0700.
    Tightened { from: u32 },
    /// It existed with group or other access and could not be changed (not
    /// this user's directory): left as it is.
    Open { mode: u32, error: String },
}

/// The master key(s) behind `ctx.keys` (the primary, then keys that still
/// open values during a rotation). Kept for the key watcher, which
/// rewrites this node's key file when a rotation reaches it.
#[derive(Clone, Default)]
pub struct MasterKeys(Arc<std::sync::Mutex<Option<KeyPair>>>);

/// A primary master key and the older ones it still opens with.
type KeyPair = (MasterKey, Vec<MasterKey>);

impl std::fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKeys([REDACTED])")
    }
}

impl MasterKeys {
    pub fn get(&self) -> Option<(MasterKey, Vec<MasterKey>)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, primary: &MasterKey, previous: &[MasterKey]) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((primary.clone(), previous.to_vec()));
    }
}

/// An opened node: configuration plus the domain services over its store.
#[derive(Debug, Clone)]
pub struct Node {
    pub config: Config,
    pub ctx: Arc<Context>,
    pub auth: Authenticator,
    pub admin: Admin,
    pub key_source: KeySource,
    /// The master keys `ctx.keys` was made from (set by [`open`]).
    pub master_keys: MasterKeys,
    /// The realms' live first-factor sources (also `ctx.directory`).
    pub directory: Arc<DirectoryService>,
    /// Primary/replica replication (embedded database only).
    pub replication: Option<Arc<crate::replication::Replication>>,
}

impl Node {
    /// Loads the realms' directory clients (call before deciding logins).
    pub async fn load_directory(&self) -> Result<(), tessera_core::CoreError> {
        self.directory.reload(&self.admin).await
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StartupError + '_ {
    move |error| StartupError::Io { path: path.to_path_buf(), error }
}

/// Loads the master key: `TESSERA_MASTER_KEY` first, then the key file.
/// During a rotation this is the new key; see [`load_master_keys`].
pub fn load_master_key(cfg: &Config, env: &BTreeMap<String, String>) -> Result<(MasterKey, KeySource), StartupError> {
    load_master_keys(cfg, env).map(|(k, _, s)| (k, s))
}

/// The master key and, while a rotation is under way, the previous key(s)
/// that still open values not re-sealed yet (further lines of the key file).
pub fn load_master_keys(
    cfg: &Config,
    env: &BTreeMap<String, String>,
) -> Result<(MasterKey, Vec<MasterKey>, KeySource), StartupError> {
    if let Some(text) = env.get("TESSERA_MASTER_KEY") {
        let (key, previous) = MasterKey::parse_file(text)
            .map_err(|error| StartupError::KeyMalformed { source_name: "TESSERA_MASTER_KEY".into(), error })?;
        return Ok((key, previous, KeySource::Environment));
    }
    let path = cfg.key_file();
    let (key, previous) = read_key_file(&path)?;
    Ok((key, previous, KeySource::File(path)))
}

/// Reads a key file, refusing one that other users can read.
pub fn read_key_file(path: &Path) -> Result<(MasterKey, Vec<MasterKey>), StartupError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StartupError::KeyMissing(path.to_path_buf())),
        Err(e) => return Err(StartupError::Io { path: path.to_path_buf(), error: e }),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StartupError::KeyPermissions { path: path.to_path_buf(), mode });
    }
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(io(path))?);
    MasterKey::parse_file(&text)
        .map_err(|error| StartupError::KeyMalformed { source_name: path.display().to_string(), error })
}

/// Replaces the key file atomically (a temporary file beside it, fsync,
/// rename, fsync of the directory): a crash leaves the old or the new file,
/// never a torn one.
pub fn write_key_file(path: &Path, primary: &MasterKey, previous: &[MasterKey]) -> Result<(), StartupError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    write_new_private_file(&tmp, MasterKey::file_text(primary, previous).as_bytes())?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    Ok(())
}

fn write_new_private_file(path: &Path, contents: &[u8]) -> Result<(), StartupError> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io(path))?;
    f.write_all(contents).map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    Ok(())
}

fn store_options(cfg: &Config) -> SqliteOptions {
    SqliteOptions {
        path: cfg.database_path(),
        synchronous: cfg.database.synchronous.parse().unwrap_or_default(),
        readers: cfg.database.readers,
        cache_kib: cfg.database.cache_kib,
        mmap_bytes: cfg.database.mmap_mib * 1024 * 1024,
        login_engine: cfg.database.login_engine,
        login_fold_interval: std::time::Duration::from_millis(cfg.database.login_fold_ms),
        login_cached_users: cfg.database.login_cached_users,
    }
}

/// Whether the database is initialised: the SQLite file exists, or the
/// PostgreSQL database holds a tessera schema and key check.
pub async fn is_initialised(cfg: &Config) -> Result<bool, StartupError> {
    match cfg.postgres_options()? {
        None => Ok(cfg.database_path().exists()),
        Some(opts) => PgStore::is_initialised(&opts).await.map_err(|error| store_err(cfg, error)),
    }
}

fn store_err(cfg: &Config, error: StoreError) -> StartupError {
    StartupError::Store { database: cfg.database_display(), error }
}

/// Creates the data directory (0700), the master key file (0600) unless a
/// key is supplied, and an empty database bound to that key: the SQLite
/// file, or the schema in the configured PostgreSQL. Never overwrites
/// anything: an initialised database is an error, and in PostgreSQL mode a
/// key file is only created once the database is known to be empty.
pub async fn init(cfg: &Config, env: &BTreeMap<String, String>) -> Result<InitReport, StartupError> {
    let pg = cfg.postgres_options()?;
    let shown = cfg.database_display();
    let exists = match &pg {
        None => cfg.database_path().exists(),
        Some(opts) => PgStore::is_initialised(opts).await.map_err(|e| store_err(cfg, e))?,
    };
    if exists {
        return Err(StartupError::AlreadyInitialised(shown));
    }
    let (key, source, created) = match load_master_key(cfg, env) {
        Ok((k, s)) => (k, s, false),
        Err(StartupError::KeyMissing(path)) => {
            let k = MasterKey::generate(&OsRandom);
            write_new_private_file(&path, k.to_text().as_bytes())?;
            (k, KeySource::File(path), true)
        }
        Err(e) => return Err(e),
    };
    let dir = &cfg.server.data_dir;
    let data_dir_mode = private_data_dir(dir)?;
    let keys = Keyring::new(&key);
    let result = match &pg {
        None => {
            let opts = SqliteOptions { login_engine: false, ..store_options(cfg) };
            SqliteStore::create(&opts, &keys, &OsRandom, SystemClock.now()).map(drop)
        }
        Some(opts) => PgStore::create(opts, &keys, &OsRandom, SystemClock.now()).await.map(drop),
    };
    if let Err(error) = result {
        // Another node initialised the database meanwhile: the key made
        // here opens nothing, and leaving it would invite confusion.
        if created
            && pg.is_some()
            && let KeySource::File(path) = &source
        {
            let _ = std::fs::remove_file(path);
        }
        return Err(match error {
            StoreError::Conflict(_) => StartupError::AlreadyInitialised(shown),
            error => store_err(cfg, error),
        });
    }
    Ok(InitReport {
        data_dir: dir.clone(),
        database: shown,
        key: source,
        key_created: created,
        key_id: keys.key_id(),
        data_dir_mode,
    })
}

/// Creates the data directory 0700, or makes an existing one 0700. `init`
/// changes the mode of a directory it did not create on purpose: it is
/// about to put the database (user names, backup-code digests, the audit
/// log) and later the TLS private key there, the README promises 0700, and
/// an admin who made the directory beforehand (`mkdir`, 0755 under the
/// usual umask) rarely meant every local account to copy the database.
/// Only here, when the database is created: afterwards the mode is the
/// admin's to choose (0750 for a backup group, say), and no later start
/// changes it back. A directory we may not change is reported, not fatal.
fn private_data_dir(dir: &Path) -> Result<DataDirMode, StartupError> {
    let mode = match std::fs::metadata(dir) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
            return Ok(DataDirMode::Created);
        }
        Err(e) => return Err(StartupError::Io { path: dir.to_path_buf(), error: e }),
    };
    if mode & 0o077 == 0 {
        return Ok(DataDirMode::AlreadyPrivate);
    }
    Ok(match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
        Ok(()) => DataDirMode::Tightened { from: mode },
        Err(e) => DataDirMode::Open { mode, error: e.to_string() },
    })
}

/// Opens an initialised node.
pub async fn open(
    cfg: &Config,
    env: &BTreeMap<String, String>,
    hasher: Arc<dyn PasswordHasher>,
) -> Result<Node, StartupError> {
    let pg = cfg.postgres_options()?;
    let (key, previous, key_source) = match (load_master_keys(cfg, env), &pg) {
        // No key on a node of an empty shared database: the step missing
        // is `init`, not the key.
        (Err(StartupError::KeyMissing(path)), Some(opts)) => {
            return Err(match PgStore::is_initialised(opts).await {
                Ok(false) => StartupError::NotInitialised(cfg.database_display()),
                _ => StartupError::KeyMissing(path),
            });
        }
        (r, _) => r?,
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let opened = open_store(cfg, pg.as_ref(), &key, &previous, clock.now()).await;
    let (store, key, previous) = match opened {
        // The database is sealed under a key this node lacks: a rotation it
        // missed (part of) explains it, and may carry the key.
        Err(wrong @ StartupError::Store { error: StoreError::WrongKey(_), .. }) => {
            let raw = match &pg {
                None => SqliteStore::rotation_marker_unverified(&store_options(cfg)),
                Some(opts) => PgStore::rotation_marker_unverified(opts).await,
            };
            let marker = raw.ok().flatten().and_then(|b| serde_json::from_slice::<RotationMarker>(&b).ok());
            match marker.map(|m| follow_rotation(&m, &key, &previous, &key_source)).transpose()?.flatten() {
                Some((next, older)) => {
                    let store = open_store(cfg, pg.as_ref(), &next, &older, clock.now()).await?;
                    (store, next, older)
                }
                None => return Err(wrong),
            }
        }
        Err(e) => return Err(e),
        Ok(store) => {
            // A rotation running while this node was away: take the new key
            // now rather than a second later in the key watcher, so a CLI
            // command seals with it too.
            let marker = tessera_core::rotation::marker(&*store.0).await.ok().flatten();
            match marker.and_then(|m| follow_rotation(&m, &key, &previous, &key_source).ok().flatten()) {
                Some((next, older)) => {
                    store.1.replace(&next, &older);
                    (store, next, older)
                }
                _ => (store, key, previous),
            }
        }
    };
    let ((store, replication), keys) = ((store.0, store.2), store.1);
    let oob = crate::oob::service(cfg).map_err(StartupError::Oob)?;
    let mut node = assemble(cfg, store, keys, clock, hasher, key_source);
    node.master_keys.set(&key, &previous);
    node.auth = node.auth.with_oob(oob);
    node.replication = replication;
    Ok(node)
}

/// What a node holding `key` (and `previous`) makes of a rotation marker.
/// While the rotation runs, the new key is in the marker, sealed under the
/// old one: a node with the old key only takes it, rewriting its key file
/// (new key first, then the old), and gets `Some` keys to use. After the
/// rotation finished, a node with only the old key cannot catch up by
/// itself: [`StartupError::MissedRotation`]. `None`: nothing to do (or
/// nothing this marker explains).
pub fn follow_rotation(
    marker: &RotationMarker,
    key: &MasterKey,
    previous: &[MasterKey],
    source: &KeySource,
) -> Result<Option<(MasterKey, Vec<MasterKey>)>, StartupError> {
    let keys = Keyring::with_previous(key, previous);
    let held = |id: &str| keys.key_id() == id || keys.previous_key_ids().iter().any(|p| p == id);
    if held(&marker.to) || !held(&marker.from) {
        return Ok(None);
    }
    match marker.state {
        RotationState::Running => {
            // A key that does not open is the key watcher's to report.
            let Ok(next) = marker.open_next_key(&keys) else { return Ok(None) };
            let mut older = vec![key.clone()];
            older.extend(previous.iter().cloned());
            match source {
                KeySource::File(path) => {
                    write_key_file(path, &next, &older)?;
                    tracing::warn!(
                        from = %marker.from,
                        to = %marker.to,
                        key = %source,
                        "a master key rotation is running: took the new key from the database (sealed under this \
                         node's key) and rewrote the key file"
                    );
                }
                KeySource::Environment => tracing::warn!(
                    from = %marker.from,
                    to = %marker.to,
                    "a master key rotation is running: took the new key from the database (sealed under this node's \
                     key), in memory only. Set TESSERA_MASTER_KEY to the new key (the first line of the key file on \
                     the node that ran `tessera key rotate`) before this node restarts"
                ),
            }
            Ok(Some((next, older)))
        }
        RotationState::Done => Err(StartupError::MissedRotation {
            from: keys.key_id(),
            to: marker.to.clone(),
            when: marker.finished_at.map_or_else(|| "finished".into(), |t| format!("finished {}", t.to_rfc3339())),
            source_name: source.to_string(),
        }),
    }
}

/// The store (wrapped for replication on the embedded database), the
/// keyring it was opened with, and the replication handle.
type Opened = (Arc<dyn Store>, Keyring, Option<Arc<crate::replication::Replication>>);

async fn open_store(
    cfg: &Config,
    pg: Option<&PgOptions>,
    key: &MasterKey,
    previous: &[MasterKey],
    now: tessera_core::clock::Timestamp,
) -> Result<Opened, StartupError> {
    let keys = Keyring::with_previous(key, previous);
    match pg {
        None => {
            let store = SqliteStore::open(&store_options(cfg), &keys, now).map_err(|e| store_err(cfg, e))?;
            // Primary/replica replication is the embedded database's.
            let (store, replication) =
                crate::replication::guard(&cfg.database_path(), Arc::new(store)).map_err(|e| store_err(cfg, e))?;
            Ok((store, keys, Some(replication)))
        }
        Some(opts) => Ok((Arc::new(open_postgres(cfg, opts, &keys, now).await?), keys, None)),
    }
}

async fn open_postgres(
    cfg: &Config,
    opts: &PgOptions,
    keys: &Keyring,
    now: tessera_core::clock::Timestamp,
) -> Result<PgStore, StartupError> {
    PgStore::open(opts, keys, now).await.map_err(|error| match error {
        StoreError::NotInitialised(_) => StartupError::NotInitialised(cfg.database_display()),
        error => store_err(cfg, error),
    })
}

/// This build as `tessera status` and the other nodes show it: the
/// release and the schema of the database mode `cfg` uses.
pub fn build_version(cfg: &Config) -> String {
    if cfg.uses_postgres() {
        format!("{} (PostgreSQL schema {})", env!("CARGO_PKG_VERSION"), tessera_store::postgres::SCHEMA_VERSION)
    } else {
        crate::replication::build_version()
    }
}

/// Whether opening failed only because the database could not be reached
/// (worth retrying at start); a wrong key or a missing schema is not.
pub fn is_unreachable(e: &StartupError) -> bool {
    matches!(e, StartupError::Store { error: StoreError::Unavailable(_), .. })
}

pub fn assemble(
    cfg: &Config,
    store: Arc<dyn Store>,
    keys: Keyring,
    clock: Arc<dyn Clock>,
    hasher: Arc<dyn PasswordHasher>,
    key_source: KeySource,
) -> Node {
    let random: Arc<dyn Random> = Arc::new(OsRandom);
    let directory = Arc::new(DirectoryService::new());
    let ctx = Arc::new(Context {
        directory: directory.clone(),
        store,
        clock,
        random,
        hasher,
        keys: Arc::new(keys),
        node: cfg.node_name(),
        issuer: cfg.server.issuer.clone(),
    });
    Node {
        config: cfg.clone(),
        auth: Authenticator::new(ctx.clone()),
        admin: Admin::new(ctx.clone()),
        ctx,
        key_source,
        master_keys: MasterKeys::default(),
        directory,
        replication: None,
    }
}

/// Makes sure the HTTPS certificate exists: configured files are used as
/// they are; otherwise a self-signed certificate for localhost and this
/// host is generated once into `<data_dir>/tls`.
pub fn ensure_tls_files(cfg: &Config) -> Result<(PathBuf, PathBuf, bool), StartupError> {
    let (cert, key, generated) = cfg.tls_files();
    if !generated || (cert.exists() && key.exists()) {
        return Ok((cert, key, false));
    }
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
    let host = cfg.node_name();
    if !names.contains(&host) {
        names.push(host);
    }
    for addr in cfg.listen_addrs() {
        let ip = addr.ip();
        if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
            names.push(ip.to_string());
        }
    }
    let params = rcgen::CertificateParams::new(names).map_err(|e| StartupError::Tls(e.to_string()))?;
    let key_pair = rcgen::KeyPair::generate().map_err(|e| StartupError::Tls(e.to_string()))?;
    let certificate = params.self_signed(&key_pair).map_err(|e| StartupError::Tls(e.to_string()))?;
    let _ = std::fs::remove_file(&cert);
    let _ = std::fs::remove_file(&key);
    write_new_private_file(&key, key_pair.serialize_pem().as_bytes())?;
    write_new_private_file(&cert, certificate.pem().as_bytes())?;
    std::fs::set_permissions(&cert, std::fs::Permissions::from_mode(0o644)).map_err(io(&cert))?;
    Ok((cert, key, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Issue 15 (17): the syslog and email/SMS checks left `Config::validate`
    /// for [`startup_checks`]; a configuration loaded for use is refused
    /// with the same messages as before.
    #[test]
    fn regression_subsystem_config_errors_still_refuse_a_load() {
        for (var, value, named) in [
            ("TESSERA_SYSLOG_TRANSPORT", "carrier-pigeon", "syslog.transport"),
            ("TESSERA_SYSLOG_ADDRESS", "no-port", "syslog.address"),
            ("TESSERA_EMAIL_HOST", "smtp.example.com", "email.from"),
            ("TESSERA_SMS_METHOD", "DELETE", "sms.method"),
            ("TESSERA_OOB_MESSAGE", "no code here", "{code}"),
        ] {
            let e = load_config(None, &env(&[(var, value)])).unwrap_err();
            assert!(matches!(e, ConfigError::Invalid(_)), "{var}: {e:?}");
            let shown = e.to_string();
            assert!(shown.starts_with("invalid configuration: ") && shown.contains(named), "{var}: {shown}");
        }
        load_config(None, &env(&[])).unwrap();
    }

    /// `config.rs` is data: it names no module of this crate in code (only
    /// in comments), so no subsystem can import it back into a circle.
    #[test]
    fn config_module_imports_no_subsystem() {
        let source = include_str!("config.rs");
        let code_lines: Vec<&str> = source
            .lines()
            .map(str::trim_start)
            .filter(|l| !l.starts_with("//"))
            .filter(|l| l.contains("crate::"))
            .collect();
        assert!(code_lines.is_empty(), "config.rs reaches into the crate: {code_lines:?}");
    }
}
