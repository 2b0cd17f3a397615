//! `tessera backup create|verify|restore` and the file side of `tessera key export`.
//!
//! The file format (age around a tar with a manifest) is `tessera_backup`'s;
//! the consistent database copy is `tessera_store`'s snapshot. This module
//! does the file work around them: temporary files renamed into place only
//! on success, a staging directory for restores, moving old data aside
//! (never deleting it), and the master key checks.
//!
//! Known limit: `restore` detects a server by the database's locks (any open
//! connection blocks an exclusive lock). A server started between that
//! check and the final rename is not seen; restore onto a stopped node.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal as _, Read, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Subcommand};
use tessera_backup::{FileEntry, Manifest, Part, SecretString};
use tessera_core::clock::{Clock as _, SystemClock, Timestamp};
use tessera_core::keys::{Keyring, MasterKey};
use tessera_server::config::Config;
use tessera_server::node::{self, StartupError};
use tessera_store::sqlite::snapshot;
use zeroize::Zeroizing;

use crate::UsageError;

/// Why shared database mode backs up no database (PostgreSQL holds it).
pub(crate) const PG_NO_DATABASE: &str = "the database is in PostgreSQL (shared database mode), so it is not in \
     tessera's backups: back it up with PostgreSQL's own tools (`pg_dump -Fc`, or pg_basebackup with WAL archiving), \
     and move users between installations with `tessera export users --secrets`. `tessera backup create \
     --include config,tls[,master-key]` backs up this node's own files";

/// A key file is a few dozen bytes; anything much bigger is not one.
const MAX_KEY_FILE_BYTES: u64 = 4096;

#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Write an encrypted backup (age, scrypt passphrase) while the server runs.
    Create {
        /// The backup file to write (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Comma-separated: database, config, tls, master-key
        /// (default: database,config,tls; the master key only when named).
        #[arg(long, value_name = "PARTS")]
        include: Option<String>,
        #[command(flatten)]
        passphrase: PassphraseInput,
    },
    /// Decrypt a backup, check every file and the database, and list the contents.
    Verify {
        file: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseInput,
    },
    /// Restore a backup onto a stopped or fresh node (the data directory).
    Restore {
        file: PathBuf,
        /// Replace existing data: the old files are moved aside as
        /// `<name>.before-restore-<timestamp>`, never deleted.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        passphrase: PassphraseInput,
    },
}

/// Where the passphrase comes from; without either flag, a prompt on the terminal.
#[derive(Debug, Args)]
pub struct PassphraseInput {
    /// Read the passphrase from the first line of this file.
    #[arg(long, value_name = "FILE", conflicts_with = "passphrase_env")]
    pub passphrase_file: Option<PathBuf>,
    /// Read the passphrase from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub passphrase_env: Option<String>,
}

impl PassphraseInput {
    pub(crate) fn read(&self, env: &BTreeMap<String, String>, confirm: bool) -> anyhow::Result<SecretString> {
        let text: Zeroizing<String> = if let Some(f) = &self.passphrase_file {
            let all = Zeroizing::new(fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?);
            Zeroizing::new(all.lines().next().unwrap_or("").to_string())
        } else if let Some(var) = &self.passphrase_env {
            Zeroizing::new(
                env.get(var).ok_or_else(|| UsageError(format!("environment variable {var} is not set")))?.clone(),
            )
        } else {
            if !std::io::stdin().is_terminal() {
                return Err(UsageError(
                    "no passphrase: give --passphrase-file or --passphrase-env (there is no terminal to prompt on)"
                        .into(),
                )
                .into());
            }
            let first = Zeroizing::new(rpassword::prompt_password("backup passphrase: ")?);
            if confirm {
                let again = Zeroizing::new(rpassword::prompt_password("again: ")?);
                if *again != *first {
                    return Err(UsageError("the passphrases differ".into()).into());
                }
            }
            first
        };
        if text.is_empty() {
            return Err(UsageError("the passphrase is empty".into()).into());
        }
        Ok(SecretString::from(text.to_string()))
    }
}

/// `config_named`: whether `config_file` came from `--config` or
/// TESSERA_CONFIG (else it is ./tessera.toml, read by default).
pub async fn run(
    cfg: &Config,
    config_file: Option<&Path>,
    config_named: bool,
    env: &BTreeMap<String, String>,
    cmd: BackupCmd,
) -> anyhow::Result<()> {
    match cmd {
        BackupCmd::Create { out, include, passphrase } => {
            let parts = match include {
                Some(s) => Part::parse_list(&s).map_err(UsageError)?,
                None if cfg.uses_postgres() => {
                    outln!("note: {PG_NO_DATABASE}");
                    [Part::Config, Part::Tls].into_iter().collect()
                }
                None => Part::DEFAULT.into_iter().collect(),
            };
            if cfg.uses_postgres() && parts.contains(&Part::Database) {
                return Err(UsageError(format!("cannot back up the database here: {PG_NO_DATABASE}")).into());
            }
            let pass = passphrase.read(env, true)?;
            create(cfg, config_file, env, &out, &parts, pass)
        }
        BackupCmd::Verify { file, passphrase } => {
            let pass = passphrase.read(env, false)?;
            verify(env, cfg, &file, pass)
        }
        BackupCmd::Restore { file, force, passphrase } => {
            if cfg.uses_postgres() {
                return Err(UsageError(format!(
                    "`backup restore` restores the embedded database file; this node uses PostgreSQL ({}). Restore \
                     the database with PostgreSQL's tools (pg_restore / point-in-time recovery), and this node's \
                     files (config, TLS, master key) by hand from `age -d FILE | tar x`",
                    cfg.database_display()
                ))
                .into());
            }
            let pass = passphrase.read(env, false)?;
            let config = config_file.map(|path| ConfigInUse { path, named: config_named });
            restore(cfg, config, env, &file, force, pass)
        }
    }
}

/// `tessera key export`: the master key alone, age-encrypted.
pub fn export_key(
    cfg: &Config,
    env: &BTreeMap<String, String>,
    out: &Path,
    passphrase: &PassphraseInput,
) -> anyhow::Result<()> {
    let (key, source) = node::load_master_key(cfg, env)?;
    let pass = passphrase.read(env, true)?;
    let key_id = Keyring::new(&key).key_id();
    let text = key.to_text();
    write_atomically(out, |f| tessera_backup::encrypt_bytes(f, pass, text.as_bytes()).map(|_| ()))?;
    outln!("master key {key_id} (from {source}) written to {}", out.display());
    outln!("  restore it with: age -d {} > tessera.key && chmod 600 tessera.key", out.display());
    Ok(())
}

// ---------------------------------------------------------------- create

/// Where each archive member comes from.
enum Source {
    File(PathBuf),
    Bytes(Zeroizing<Vec<u8>>),
}

fn create(
    cfg: &Config,
    config_file: Option<&Path>,
    env: &BTreeMap<String, String>,
    out: &Path,
    parts: &BTreeSet<Part>,
    pass: SecretString,
) -> anyhow::Result<()> {
    let started = Instant::now();
    if out.exists() {
        return Err(UsageError(format!("{} already exists; choose another name", out.display())).into());
    }
    // Mid-rotation the database holds values under two keys, and no single
    // key could restore it.
    if matches!(node::load_master_keys(cfg, env), Ok((_, previous, _)) if !previous.is_empty()) {
        bail!(
            "a master key rotation is under way (the key file holds two keys); finish it with `tessera key rotate`,              then back up"
        );
    }
    // The same when this node's key file was not rewritten yet (its server
    // is down, or its key comes from the environment); besides, a running
    // rotation's marker holds the new key sealed under the old one, which a
    // backup must not carry away.
    if parts.contains(&Part::Database) && cfg.database_path().exists() {
        let marker = tessera_store::SqliteStore::rotation_marker_unverified(&tessera_store::SqliteOptions::new(
            cfg.database_path(),
        ))
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice::<tessera_core::rotation::RotationMarker>(&b).ok());
        if let Some(m) = marker.filter(|m| m.state == tessera_core::rotation::RotationState::Running) {
            bail!(
                "a master key rotation to key {} is under way; finish it with `tessera key rotate`, then back up",
                m.to
            );
        }
    }
    let db = cfg.database_path();
    let mut sources: Vec<(&'static str, Source)> = Vec::new();
    let mut notes = Vec::new();
    let mut schema_version = 0;
    let mut key_id = String::new();
    let tmp_db = TempPath(sibling(out, "db"));
    if parts.contains(&Part::Database) {
        // A running server keeps the last second of logins in its journal:
        // have it fold them, so the copy has every used code.
        if let Err(e) = tessera_store::sqlite::login::request_fold_blocking(&db) {
            outln!(
                "warning: the running server's login journal could not be folded first ({e}): the copy may miss the last second of logins"
            );
        }
        let info = snapshot::snapshot_into(&db, &tmp_db.0)
            .with_context(|| format!("cannot take a snapshot of {}", db.display()))?;
        schema_version = info.schema_version;
        key_id = info.key_id.unwrap_or_default();
        sources.push((tessera_backup::DATABASE_FILE, Source::File(tmp_db.0.clone())));
    }
    if parts.contains(&Part::Config) {
        match config_file {
            Some(p) => sources.push((tessera_backup::CONFIG_FILE, Source::File(p.to_path_buf()))),
            None => notes.push("config: no configuration file in use (defaults and environment only); skipped"),
        }
    }
    if parts.contains(&Part::Tls) {
        let (cert, key, _) = cfg.tls_files();
        if cert.exists() && key.exists() {
            sources.push((tessera_backup::TLS_CERT_FILE, Source::File(cert)));
            sources.push((tessera_backup::TLS_KEY_FILE, Source::File(key)));
        } else {
            notes.push("tls: no certificate files yet (generated on first `serve`); skipped");
        }
    }
    if parts.contains(&Part::MasterKey) {
        let (key, _) = node::load_master_key(cfg, env)?;
        let id = Keyring::new(&key).key_id();
        if !key_id.is_empty() && id != key_id {
            bail!(
                "the loaded master key is {id}, but the database is sealed with {key_id}; refusing to back up a key that cannot open it"
            );
        }
        key_id = id;
        sources
            .push((tessera_backup::MASTER_KEY_FILE, Source::Bytes(Zeroizing::new(key.to_text().as_bytes().to_vec()))));
    }
    if key_id.is_empty()
        && let Ok((key, _)) = node::load_master_key(cfg, env)
    {
        key_id = Keyring::new(&key).key_id();
    }

    let mut files = Vec::new();
    for (name, src) in &sources {
        let mut r = open_source(src).with_context(|| format!("reading {name}"))?;
        files.push(tessera_backup::file_entry(name, &mut r).with_context(|| format!("reading {name}"))?);
    }
    let now = SystemClock.now();
    let manifest = Manifest {
        format: tessera_backup::FORMAT_VERSION,
        tessera_version: env!("CARGO_PKG_VERSION").into(),
        created_at: now.to_rfc3339(),
        created_at_unix: now.unix_seconds(),
        node: cfg.node_name(),
        schema_version,
        key_id,
        parts: parts.iter().copied().collect(),
        files,
    };
    let by_name: BTreeMap<&str, &Source> = sources.iter().map(|(n, s)| (*n, s)).collect();
    write_atomically(out, |f| {
        tessera_backup::write_archive(f, pass, &manifest, |e: &FileEntry| open_source(by_name[e.name.as_str()]))
            .map(|_| ())
    })?;
    drop(tmp_db);
    let size = fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    outln!("backup written to {} ({size} bytes, {:.1} s)", out.display(), started.elapsed().as_secs_f64());
    print_manifest(&manifest);
    for n in notes {
        outln!("  note: {n}");
    }
    if !parts.contains(&Part::MasterKey) {
        outln!("  the master key is not in this backup: keep it apart (`tessera key export`)");
    }
    Ok(())
}

fn open_source(s: &Source) -> std::io::Result<Box<dyn Read>> {
    Ok(match s {
        Source::File(p) => Box::new(std::io::BufReader::new(File::open(p)?)),
        Source::Bytes(b) => Box::new(std::io::Cursor::new(b.to_vec())),
    })
}

/// Writes `out` through a private temporary file beside it, renamed into
/// place after an fsync: there is never a partial file under the final name.
pub(crate) fn write_atomically(
    out: &Path,
    write: impl FnOnce(&mut File) -> Result<(), tessera_backup::Error>,
) -> anyhow::Result<()> {
    let tmp = TempPath(sibling(out, "partial"));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp.0)
        .with_context(|| format!("cannot create {}", tmp.0.display()))?;
    write(&mut f).with_context(|| format!("writing {}", out.display()))?;
    f.flush()?;
    f.sync_all()?;
    drop(f);
    if out.exists() {
        bail!("{} appeared while writing; not replacing it", out.display());
    }
    fs::rename(&tmp.0, out).with_context(|| format!("renaming into {}", out.display()))?;
    if let Some(dir) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    std::mem::forget(tmp);
    Ok(())
}

/// `.<name>.<pid>.<suffix>` in the directory of `p`.
fn sibling(p: &Path, suffix: &str) -> PathBuf {
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "backup".into());
    p.with_file_name(format!(".{name}.{}.{suffix}", std::process::id()))
}

/// Removed on drop (a file or a directory tree).
struct TempPath(PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.0.is_dir() {
            let _ = fs::remove_dir_all(&self.0);
        } else {
            let _ = fs::remove_file(&self.0);
        }
    }
}

fn print_manifest(m: &Manifest) {
    outln!("  format:         {}", m.format);
    outln!("  created:        {} on node {} (tessera {})", m.created_at, m.node, m.tessera_version);
    outln!("  schema version: {}", m.schema_version);
    outln!("  master key id:  {}", if m.key_id.is_empty() { "-" } else { &m.key_id });
    outln!("  parts:          {}", m.parts.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(","));
    for f in &m.files {
        outln!("  {:>12}  {}  sha256:{}", f.size, f.name, f.sha256);
    }
}

// ---------------------------------------------------------------- verify and restore

/// Decrypts `file` into `dir` (created, 0700): every member, checked.
fn unpack(file: &Path, pass: SecretString, dir: &Path) -> anyhow::Result<Manifest> {
    fs::DirBuilder::new().mode(0o700).create(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let input = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let manifest = tessera_backup::read_archive(input, pass, |entry, r| {
        // Names were checked against a fixed list by the manifest validation.
        let path = dir.join(&entry.name);
        if let Some(parent) = path.parent() {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(parent)?;
        }
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        std::io::copy(r, &mut f)?;
        f.sync_all()
    })
    .with_context(|| format!("{} is not a usable backup", file.display()))?;
    Ok(manifest)
}

fn verify(env: &BTreeMap<String, String>, cfg: &Config, file: &Path, pass: SecretString) -> anyhow::Result<()> {
    let started = Instant::now();
    let stage = TempPath(std::env::temp_dir().join(format!("tessera-verify-{}-{}", std::process::id(), nanos())));
    let manifest = unpack(file, pass, &stage.0)?;
    let mut key_note = String::new();
    if manifest.file(tessera_backup::DATABASE_FILE).is_some() {
        let db = stage.0.join(tessera_backup::DATABASE_FILE);
        let info = snapshot::inspect(&db, None).context("the backup's database")?;
        if info.schema_version != manifest.schema_version {
            bail!(
                "the backup's database has schema version {}, its manifest says {}",
                info.schema_version,
                manifest.schema_version
            );
        }
        key_note = match node::load_master_key(cfg, env) {
            Ok((key, source)) => {
                let keys = Keyring::new(&key);
                match snapshot::inspect(&db, Some(&keys)) {
                    Ok(_) => format!("opens with the master key from {source} ({})", keys.key_id()),
                    Err(_) => format!("does NOT open with the master key from {source} ({})", keys.key_id()),
                }
            }
            Err(_) => "no master key loaded here to test against".into(),
        };
    }
    outln!("backup {} is intact ({:.1} s)", file.display(), started.elapsed().as_secs_f64());
    print_manifest(&manifest);
    if !key_note.is_empty() {
        outln!("  database:       integrity ok; {key_note}");
    }
    Ok(())
}

/// The configuration file this command runs with, for restore's messages.
struct ConfigInUse<'a> {
    path: &'a Path,
    /// Named by `--config`/TESSERA_CONFIG (else found in the working directory).
    named: bool,
}

fn restore(
    cfg: &Config,
    config_file: Option<ConfigInUse<'_>>,
    env: &BTreeMap<String, String>,
    file: &Path,
    force: bool,
    pass: SecretString,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let data = cfg.server.data_dir.clone();
    let db = cfg.database_path();
    // A database as `tessera init` left it (no users, tokens, clients,
    // realms, admins…) is replaced without --force: running `init` before
    // restoring is what an administrator does on a new node, and there is
    // nothing to lose. It is still moved aside, as everything replaced is.
    let mut empty_node = false;
    if db.exists() {
        if snapshot::in_use(&db).with_context(|| format!("checking {}", db.display()))? {
            bail!(
                "{} is in use (a running `tessera serve` or another tessera command); stop the server before restoring",
                db.display()
            );
        }
        match snapshot::data_rows(&db) {
            Ok(rows) if rows.is_empty() => empty_node = true,
            _ if force => {}
            Ok(rows) => bail!(
                "{} already holds a database with data ({}); restore onto a fresh data directory, or use --force \
                 (the current files are moved aside, not deleted)",
                data.display(),
                rows.iter()
                    .map(|(noun, n)| format!("{n} {noun}{}", if *n == 1 { "" } else { "s" }))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(e) => bail!(
                "{} already holds a database, which could not be read ({e}); restore onto a fresh data directory, \
                 or use --force (the current files are moved aside, not deleted)",
                data.display()
            ),
        }
    }
    // Stage beside the data directory (same file system, so the final step is renames).
    let parent = data.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let dir_name = data.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "data".into());
    let stage = TempPath(parent.join(format!(".{dir_name}.restore-{}", std::process::id())));
    let manifest = unpack(file, pass, &stage.0)?;
    let staged_db = stage.0.join(tessera_backup::DATABASE_FILE);
    if manifest.file(tessera_backup::DATABASE_FILE).is_none() {
        bail!("the backup holds no database (parts: {:?}); nothing to restore", manifest.parts);
    }

    // The master key: the node's own (key file / TESSERA_MASTER_KEY), else the backup's.
    let backup_key = match manifest.file(tessera_backup::MASTER_KEY_FILE) {
        Some(_) => Some(read_key(&stage.0.join(tessera_backup::MASTER_KEY_FILE))?),
        None => None,
    };
    let (key, write_key_file) = match node::load_master_key(cfg, env) {
        Ok((key, source)) => {
            let id = Keyring::new(&key).key_id();
            if id != manifest.key_id {
                // On a node just made by `init` the key is most likely the
                // one `init` generated, which guards nothing yet.
                let hint = match (&source, empty_node) {
                    (node::KeySource::File(path), true) => format!(
                        " (this node's database is empty: if `tessera init` made that key, move {} away and put the \
                         key kept apart from backups there{})",
                        path.display(),
                        if backup_key.is_some() { ", or leave it missing to use the backup's" } else { "" }
                    ),
                    _ => String::new(),
                };
                bail!(
                    "the backup's database is sealed with master key {}, but the master key from {source} is \
                     {id}{hint}; nothing was restored",
                    manifest.key_id
                );
            }
            (key, false)
        }
        Err(StartupError::KeyMissing(path)) => match backup_key {
            Some(k) => (k, true),
            None => bail!(
                "the backup's database is sealed with master key {}, and no master key was found \
                 ({} or TESSERA_MASTER_KEY); restore the key kept apart from backups \
                 (`age -d key.age > {}`) and try again; nothing was restored",
                manifest.key_id,
                path.display(),
                path.display()
            ),
        },
        Err(e) => return Err(e.into()),
    };
    let keys = Keyring::new(&key);
    let info = snapshot::inspect(&staged_db, Some(&keys)).context("the backup's database cannot be restored")?;
    if info.schema_version != manifest.schema_version {
        bail!(
            "the backup's database has schema version {}, its manifest says {}",
            info.schema_version,
            manifest.schema_version
        );
    }

    // A primary restored from a backup may be an old copy of a cluster
    // whose primary lives on: it takes no change until an administrator
    // names its role (`tessera replica confirm-primary` or `repoint`).
    if info.schema_version >= 8 {
        let log = tessera_store::sqlite::replication::ReplicationLog::new(&staged_db);
        let s = log.state().context("reading the backup's replication state")?;
        if s.role == tessera_core::replication::Role::Primary {
            log.set_state(|s| {
                s.fence = Some(format!(
                    "{}: confirm it is the cluster's primary with `tessera replica confirm-primary`, or follow the \
                     live primary with `tessera replica repoint URL`",
                    tessera_server::replication::fencing::RESTORED
                ))
            })
            .context("fencing the restored primary")?;
            outln!(
                "  the backup was taken on a primary (epoch {}): the restored node is fenced until you run `tessera \
                 replica confirm-primary` (it is the primary) or `tessera replica repoint URL` (another node is)",
                s.epoch
            );
        }
    }

    // Where every staged file goes.
    let mut moves: Vec<(PathBuf, PathBuf)> = vec![(staged_db, db.clone())];
    // Files an empty node may lose without --force (moved aside): the
    // certificate its first `serve` generated for itself.
    let mut replaceable = Vec::new();
    if manifest.file(tessera_backup::TLS_CERT_FILE).is_some() {
        let (cert, tls_key, generated) = cfg.tls_files();
        if generated && empty_node {
            replaceable.extend([cert.clone(), tls_key.clone()]);
        }
        moves.push((stage.0.join(tessera_backup::TLS_CERT_FILE), cert));
        moves.push((stage.0.join(tessera_backup::TLS_KEY_FILE), tls_key));
    }
    if manifest.file(tessera_backup::CONFIG_FILE).is_some() {
        let target =
            config_file.as_ref().map(|c| c.path.to_path_buf()).unwrap_or_else(|| data.join("tessera.toml.restored"));
        moves.push((stage.0.join(tessera_backup::CONFIG_FILE), target));
    }
    let conflicts: Vec<&PathBuf> = moves
        .iter()
        .skip(1)
        .filter(|(from, to)| to.exists() && !same_content(from, to) && !replaceable.contains(to))
        .map(|(_, to)| to)
        .collect();
    if !conflicts.is_empty() && !force {
        let (config, others): (Vec<&PathBuf>, Vec<&PathBuf>) =
            conflicts.into_iter().partition(|p| config_file.as_ref().is_some_and(|c| c.path == p.as_path()));
        let mut why = Vec::new();
        if let (Some(path), Some(c)) = (config.first(), &config_file) {
            let path = path.display();
            why.push(format!(
                "the configuration file {path} ({}) differs from the backup's configuration. Compare them \
                 (`age -d {} | tar -xOf - {} | diff {path} -`), then run again with --force: {path} is moved aside \
                 (kept as {path}.before-restore-<time>; move it back afterwards to keep yours) and the backup's \
                 takes its place",
                if c.named {
                    "named by --config or TESSERA_CONFIG"
                } else {
                    "read by default from the working directory"
                },
                file.display(),
                tessera_backup::CONFIG_FILE
            ));
        }
        if !others.is_empty() {
            why.push(format!(
                "these files exist and differ from the backup: {}; use --force to move them aside",
                others.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ));
        }
        bail!("{}; nothing was restored", why.join("; "));
    }

    // Everything checked: put the files in place. From here on, only renames.
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&data)?;
    let stamp = SystemClock.now().to_rfc3339().replace([':', '.'], "");
    let mut aside = Vec::new();
    // The login journal belongs to the database being replaced: it must
    // not be replayed into the restored one.
    let journal = tessera_store::sqlite::login::journal_files(&db);
    for old in [db.clone(), with_suffix(&db, "-wal"), with_suffix(&db, "-shm")].into_iter().chain(journal) {
        if old.exists() {
            let to = with_suffix(&old, &format!(".before-restore-{stamp}"));
            fs::rename(&old, &to).with_context(|| format!("moving {} aside", old.display()))?;
            aside.push(to);
        }
    }
    for (from, to) in &moves {
        if to.exists() {
            if same_content(from, to) {
                continue;
            }
            let side = with_suffix(to, &format!(".before-restore-{stamp}"));
            fs::rename(to, &side).with_context(|| format!("moving {} aside", to.display()))?;
            aside.push(side);
        }
        if let Some(dir) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        fs::rename(from, to).with_context(|| format!("moving the restored file into {}", to.display()))?;
    }
    if write_key_file {
        let path = cfg.key_file();
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        f.write_all(key.to_text().as_bytes())?;
        f.sync_all()?;
        outln!("  master key {} written to {} (from the backup)", keys.key_id(), path.display());
    }
    let _ = File::open(&data).and_then(|d| d.sync_all());
    outln!("restored {} into {} ({:.1} s)", file.display(), data.display(), started.elapsed().as_secs_f64());
    print_manifest(&manifest);
    for (_, to) in &moves {
        outln!("  restored {}", to.display());
    }
    for a in aside {
        outln!("  moved aside {}", a.display());
    }
    Ok(())
}

fn read_key(path: &Path) -> anyhow::Result<MasterKey> {
    let mut text = Zeroizing::new(String::new());
    File::open(path)?.take(MAX_KEY_FILE_BYTES).read_to_string(&mut text)?;
    MasterKey::parse(&text).map_err(|e| anyhow!("the backup's master.key is unusable: {e}"))
}

fn same_content(a: &Path, b: &Path) -> bool {
    matches!((fs::read(a), fs::read(b)), (Ok(x), Ok(y)) if x == y)
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn nanos() -> i64 {
    let t: Timestamp = SystemClock.now();
    t.0
}
