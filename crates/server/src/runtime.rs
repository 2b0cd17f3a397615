//! `tessera serve`: open (or first-time initialise) the node, bind the
//! listeners, serve until SIGINT/SIGTERM, then drain and close the store.
//! SIGHUP reloads the configuration (`reload.rs`). Under systemd
//! (`Type=notify`) it reports READY, RELOADING and STOPPING.
//!
//! Shutdown order: `/readyz` turns 503, every task sees the stop flag at
//! once — RADIUS stops reading and answers what is queued and in flight,
//! HTTPS finishes open requests — and the store closes only after all
//! of them returned, so every answer sent was durable.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{Semaphore, watch};

use crate::config::Config;
use crate::hasher::BlockingHasher;
use crate::http;
use crate::node;
use crate::reload::{Live, Reloader};
use crate::sd_notify::notify;

/// Runs the server. Prints one `listening https <addr>` line per bound
/// address on stdout (tests and scripts read the actual port from it).
pub async fn serve(
    cfg: Config,
    env: BTreeMap<String, String>,
    config_file: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    // Before anything is announced: a SIGHUP must never kill the server.
    let mut signals = Signals::install()?;
    crate::scheduled_backup::check(&cfg)?;
    let live = Live::new(&cfg, config_file, env.clone())?;
    // Shared database mode never initialises by itself: nodes starting
    // together would each make a master key, and only one could win.
    if !cfg.uses_postgres() && !node::is_initialised(&cfg).await? {
        let report = node::init(&cfg, &env).await.context("first start: initialising the data directory")?;
        tracing::info!(
            data_dir = %report.data_dir.display(),
            key = %report.key,
            key_id = %report.key_id,
            key_created = report.key_created,
            "initialised a new data directory"
        );
        match &report.data_dir_mode {
            node::DataDirMode::Created | node::DataDirMode::AlreadyPrivate => {}
            node::DataDirMode::Tightened { from } => tracing::info!(
                data_dir = %report.data_dir.display(),
                from = %format!("{from:04o}"),
                "made the existing data directory private (0700)"
            ),
            node::DataDirMode::Open { mode, error } => tracing::warn!(
                data_dir = %report.data_dir.display(),
                mode = %format!("{mode:04o}"),
                %error,
                "the data directory holds the database but could not be made private (0700)"
            ),
        }
    }
    let hasher = Arc::new(BlockingHasher::for_this_machine());
    let node = open_waiting(&cfg, &env, hasher).await.context("opening the node")?;
    tracing::info!(node = %node.ctx.node, key = %node.key_source, key_id = %node.ctx.keys.key_id(), "node opened");

    let (cert, key, generated) = node::ensure_tls_files(&cfg)?;
    if generated {
        tracing::info!(cert = %cert.display(), "generated a self-signed TLS certificate");
    }
    // Certificates are reloaded on SIGHUP and when their files change
    // (`tls_reload.rs`); every accept takes the one in effect.
    let tls = http::serve::certificates(&cert, &key, node.ctx.clock.now())?;
    let radsec_tls = crate::radius::radsec_certificates(&cfg, &cert, &key, node.ctx.clock.now())?;
    let certificates: Vec<Arc<crate::tls_reload::CertSource>> =
        std::iter::once(tls.clone()).chain(radsec_tls.clone()).collect();
    let listeners = http::serve::bind(&cfg.listen_addrs()).await?;
    let portal_listeners = http::serve::bind(&Config::addrs(&cfg.ui.portal_listen)).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let connections = Arc::new(Semaphore::new(cfg.http.max_connections));
    let node = Arc::new(node);
    // Realms first: a login must not be decided without its directory.
    node.load_directory().await.context("loading realms")?;
    // Before any listener, so every audit record committed from here on is forwarded.
    let syslog = crate::syslog::start(&cfg, node.ctx.store.clone()).await.context("starting the syslog output")?;
    live.ready.realms_loaded.store(true, std::sync::atomic::Ordering::Relaxed);
    crate::metrics::started(node.ctx.clock.now().unix_seconds());
    let ui = Arc::new(http::ui::UiShared::new(&cfg.ui));
    let app = http::router(node.clone(), live.clone(), ui.clone());
    let portal_app = http::portal_router(node.clone(), live.clone(), ui.clone());
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(node.directory.clone().watch(
        node.admin.clone(),
        DIRECTORY_RELOAD_INTERVAL,
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::key_watch::watch(
        node.clone(),
        crate::key_watch::KEY_WATCH_INTERVAL,
        stop_rx.clone(),
    )));
    if cfg.uses_postgres() {
        tasks.push(tokio::spawn(crate::clock_watch::watch(node.clone(), stop_rx.clone())));
    }
    if let Some(repl) = node.replication.clone() {
        let bound = listeners.first().and_then(|l| l.local_addr().ok());
        tasks.extend(crate::replication::start(node.clone(), repl, bound, stop_rx.clone()).await);
    }
    let (radius, radius_tasks, radius_bound) =
        crate::radius::start(node.clone(), &cfg, radsec_tls, stop_rx.clone()).await?;
    ui.listeners.write().extend(radius_bound);
    tasks.extend(radius_tasks);
    // Portal-only listeners share the connection bound and the sessions.
    // Announced before the https lines: scripts wait for those as the
    // sign that everything listens.
    for l in portal_listeners {
        let addr = l.local_addr()?;
        announce(&format!("listening portal {addr}"));
        tracing::info!(%addr, "HTTPS portal listening");
        ui.listeners.write().push(("portal".into(), addr.to_string()));
        tasks.push(tokio::spawn(http::serve::serve(
            l,
            tls.clone(),
            portal_app.clone(),
            connections.clone(),
            stop_rx.clone(),
        )));
    }
    for l in listeners {
        let addr = l.local_addr()?;
        announce(&format!("listening https {addr}"));
        tracing::info!(%addr, "HTTPS listening");
        ui.listeners.write().push(("https".into(), addr.to_string()));
        tasks.push(tokio::spawn(http::serve::serve(l, tls.clone(), app.clone(), connections.clone(), stop_rx.clone())));
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    live.ready.listeners_up.store(true, std::sync::atomic::Ordering::Relaxed);
    let pruner = tokio::spawn(prune_audit(node.clone(), live.clone(), stop_rx.clone()));
    tasks.push(tokio::spawn(crate::reload::backup_schedule(live.clone(), stop_rx.clone())));
    tasks.push(tokio::spawn(crate::tls_reload::watch(
        certificates.clone(),
        std::time::Duration::from_secs(cfg.http.tls_watch_seconds),
        node.ctx.clock.clone(),
        stop_rx.clone(),
    )));
    notify("READY=1\nSTATUS=serving");

    let reloader = Reloader { live: live.clone(), node: node.clone(), radius: Some(radius), certificates };
    while let Signal::Reload = signals.next().await {
        notify("RELOADING=1\nSTATUS=reloading the configuration");
        let status = match reloader.reload().await {
            Ok(_) => "STATUS=serving",
            Err(_) => "STATUS=serving; the last reload failed (see the log)",
        };
        notify(&format!("READY=1\n{status}"));
    }
    notify("STOPPING=1\nSTATUS=finishing in-flight requests");
    live.ready.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let _ = pruner.await;
    // After the listeners: the last audit records go out before the store closes.
    if let Some(syslog) = syslog {
        syslog.shutdown().await;
    }
    drop(app);
    drop(portal_app);
    drop(reloader);
    drop(node);
    tracing::info!("stopped");
    Ok(())
}

/// One `listening <kind> <addr>` line on stdout, for scripts and tests
/// that wait for it. Written without `println!`: a reader that stopped
/// (`tessera serve | head -1`) must not take the server down with it.
pub fn announce(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|_| out.flush());
}

/// Opens the node; in shared database mode an unreachable database is
/// retried every second for `[database] startup_wait_seconds` (nodes often
/// boot before their database). A wrong key or an uninitialised database
/// fails at once.
async fn open_waiting(
    cfg: &Config,
    env: &BTreeMap<String, String>,
    hasher: Arc<BlockingHasher>,
) -> Result<node::Node, node::StartupError> {
    let wait = if cfg.uses_postgres() { cfg.database.startup_wait_seconds } else { 0 };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match node::open(cfg, env, hasher.clone()).await {
            Err(e) if node::is_unreachable(&e) && std::time::Instant::now() < deadline => {
                // The error names the URL without its password.
                if attempt == 1 || attempt.is_multiple_of(10) {
                    tracing::warn!(error = %e, attempt, wait_seconds = wait, "database unreachable; retrying");
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            r => return r,
        }
    }
}

/// How often realms (and the cache-flush marker) are re-read.
const DIRECTORY_RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// What the process was asked to do.
enum Signal {
    Reload,
    Stop,
}

/// SIGHUP, SIGTERM and SIGINT, installed once at start.
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            hup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.hup.recv() => Signal::Reload,
            _ = self.term.recv() => Signal::Stop,
            _ = self.int.recv() => Signal::Stop,
        }
    }
}

/// How often old audit records are looked for, and how many go per batch
/// (small batches keep the group-commit writer responsive).
const PRUNE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);
const PRUNE_BATCH: u32 = 5_000;
const PRUNE_MAX_BATCHES: u32 = 200;

async fn prune_audit(node: Arc<node::Node>, live: Arc<Live>, mut stop: watch::Receiver<bool>) {
    loop {
        // Live: `[audit] retention_days` may change on SIGHUP.
        let retention_days = live.config().audit.retention_days;
        let cutoff = node.ctx.clock.now().plus_seconds(-(i64::from(retention_days) * 86_400));
        let mut total = 0;
        for _ in 0..if retention_days == 0 { 0 } else { PRUNE_MAX_BATCHES } {
            match node.ctx.store.prune_audit(cutoff, PRUNE_BATCH).await {
                Ok(n) => {
                    total += n;
                    if n < u64::from(PRUNE_BATCH) {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "audit pruning failed; will retry");
                    break;
                }
            }
        }
        if total > 0 {
            tracing::info!(deleted = total, retention_days, "pruned old audit records");
        }
        if let Err(e) = node.ctx.store.prune_states(node.ctx.clock.now()).await {
            tracing::warn!(error = %e, "pruning used challenge states failed; will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_INTERVAL) => {}
            _ = stop.changed() => return,
        }
    }
}
