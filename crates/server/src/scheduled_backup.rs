//! Scheduled backups: every `[backup] interval_seconds`, `serve` runs its own
//! binary as `tessera backup create` in a child process (the same code and
//! checks as a manual backup, and scrypt's 256 MiB stay out of the server),
//! keeps the newest `keep` files, and records the outcome in
//! `<dir>/backup-status.json` for `tessera status`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tessera_core::clock::{Clock, SystemClock};
use tokio::sync::watch;

use crate::config::Config;

/// A backup that has not finished after this long is killed and reported.
const TIMEOUT: Duration = Duration::from_secs(3600);
pub const STATUS_FILE: &str = "backup-status.json";
const PREFIX: &str = "tessera-";
const SUFFIX: &str = ".age";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackupStatus {
    pub last_run_at: String,
    pub ok: bool,
    pub file: Option<String>,
    pub bytes: Option<u64>,
    pub seconds: f64,
    /// The child's last error line when it failed (never a secret: the
    /// passphrase is read from a file by the child).
    pub error: Option<String>,
    pub kept: usize,
}

/// Checks the settings at start-up (a misconfigured schedule must not
/// silently take no backups).
pub fn check(cfg: &Config) -> anyhow::Result<()> {
    let b = &cfg.backup;
    if b.interval_seconds == 0 {
        return Ok(());
    }
    if b.dir.is_empty() || b.passphrase_file.is_empty() {
        anyhow::bail!("[backup] interval_seconds is set: dir and passphrase_file are required too");
    }
    if cfg.uses_postgres() && b.include.split(',').any(|p| p.trim() == "database") {
        anyhow::bail!(
            "[backup] include names `database`, but the database is in PostgreSQL (shared database mode): back it up \
             with PostgreSQL's tools (pg_dump, pg_basebackup) and set include = \"config,tls\""
        );
    }
    if !Path::new(&b.passphrase_file).is_file() {
        anyhow::bail!("[backup] passphrase_file {} is not a readable file", b.passphrase_file);
    }
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&b.dir)?;
    Ok(())
}

pub fn read_status(dir: &Path) -> Option<BackupStatus> {
    serde_json::from_slice(&std::fs::read(dir.join(STATUS_FILE)).ok()?).ok()
}

pub async fn run(cfg: Config, config_file: Option<PathBuf>, mut stop: watch::Receiver<bool>) {
    let b = cfg.backup.clone();
    let interval = Duration::from_secs(b.interval_seconds.max(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        run_now(&cfg, config_file.as_deref()).await;
    }
}

/// One backup now, as the schedule takes it (also the console's "back up
/// now"): written into `[backup] dir` (created 0700 if missing), old ones
/// pruned, the outcome logged and recorded in the status file.
pub async fn run_now(cfg: &Config, config_file: Option<&Path>) -> BackupStatus {
    let dir = PathBuf::from(&cfg.backup.dir);
    use std::os::unix::fs::DirBuilderExt;
    let status = match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir) {
        Ok(()) => once(cfg, config_file, &dir).await,
        Err(e) => BackupStatus {
            last_run_at: SystemClock.now().to_rfc3339(),
            ok: false,
            file: None,
            bytes: None,
            seconds: 0.0,
            error: Some(format!("cannot create {}: {e}", dir.display())),
            kept: 0,
        },
    };
    if status.ok {
        tracing::info!(
            file = status.file.as_deref().unwrap_or("-"),
            seconds = status.seconds,
            kept = status.kept,
            "backup written"
        );
    } else {
        tracing::error!(error = status.error.as_deref().unwrap_or("-"), "backup failed");
    }
    let tmp = dir.join(format!(".{STATUS_FILE}.tmp"));
    if let Ok(text) = serde_json::to_vec_pretty(&status)
        && std::fs::write(&tmp, text).is_ok()
    {
        let _ = std::fs::rename(&tmp, dir.join(STATUS_FILE));
    }
    status
}

async fn once(cfg: &Config, config_file: Option<&Path>, dir: &Path) -> BackupStatus {
    let started = Instant::now();
    let now = SystemClock.now().to_rfc3339();
    let name = format!("{PREFIX}{}{SUFFIX}", now.replace(':', "-"));
    let out = dir.join(&name);
    let mut status =
        BackupStatus { last_run_at: now, ok: false, file: None, bytes: None, seconds: 0.0, error: None, kept: 0 };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            status.error = Some(format!("cannot find the tessera binary: {e}"));
            return status;
        }
    };
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("--data").arg(&cfg.server.data_dir);
    if let Some(c) = config_file {
        cmd.arg("--config").arg(c);
    }
    cmd.args(["backup", "create", "--include", &cfg.backup.include, "--passphrase-file", &cfg.backup.passphrase_file])
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let result = tokio::time::timeout(TIMEOUT, cmd.output()).await;
    status.seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(Ok(o)) if o.status.success() => {
            status.ok = true;
            status.bytes = std::fs::metadata(&out).map(|m| m.len()).ok();
            status.file = Some(name);
            status.kept = prune(dir, cfg.backup.keep.max(1) as usize);
        }
        Ok(Ok(o)) => {
            let err = String::from_utf8_lossy(&o.stderr);
            status.error = Some(err.lines().last().unwrap_or("backup create failed").chars().take(300).collect());
        }
        Ok(Err(e)) => status.error = Some(format!("cannot run `tessera backup create`: {e}")),
        Err(_) => status.error = Some(format!("no result within {} s; stopped", TIMEOUT.as_secs())),
    }
    status
}

/// Deletes the oldest scheduled backups beyond `keep` (names sort by time).
fn prune(dir: &Path, keep: usize) -> usize {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    while files.len() > keep {
        let old = files.remove(0);
        if let Err(e) = std::fs::remove_file(&old) {
            tracing::warn!(file = %old.display(), error = %e, "old scheduled backup could not be deleted");
        }
    }
    files.len()
}
