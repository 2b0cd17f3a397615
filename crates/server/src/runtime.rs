//! `tessera serve`: open (or first-time initialise) the node, bind the
//! listeners, serve until SIGINT/SIGTERM, then drain and close the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::{Semaphore, watch};

use crate::config::Config;
use crate::hasher::BlockingHasher;
use crate::http;
use crate::node;

/// Runs the server. Prints one `listening https <addr>` line per bound
/// address on stdout (tests and scripts read the actual port from it).
pub async fn serve(
    cfg: Config,
    env: BTreeMap<String, String>,
    config_file: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    crate::scheduled_backup::check(&cfg)?;
    if !node::is_initialised(&cfg) {
        let report = node::init(&cfg, &env).context("first start: initialising the data directory")?;
        tracing::info!(
            data_dir = %report.data_dir.display(),
            key = %report.key,
            key_id = %report.key_id,
            key_created = report.key_created,
            "initialised a new data directory"
        );
    }
    let hasher = Arc::new(BlockingHasher::for_this_machine());
    let node = node::open(&cfg, &env, hasher).context("opening the node")?;
    tracing::info!(node = %node.ctx.node, key = %node.key_source, key_id = %node.ctx.keys.key_id(), "node opened");

    let (cert, key, generated) = node::ensure_tls_files(&cfg)?;
    if generated {
        tracing::info!(cert = %cert.display(), "generated a self-signed TLS certificate");
    }
    let tls = http::serve::tls_config(&cert, &key)?;
    let listeners = http::serve::bind(&cfg.listen_addrs()).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let connections = Arc::new(Semaphore::new(cfg.http.max_connections));
    let node = Arc::new(node);
    // Realms first: a login must not be decided without its directory.
    node.load_directory().await.context("loading realms")?;
    let app = http::router(node.clone());
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(node.directory.clone().watch(
        node.admin.clone(),
        DIRECTORY_RELOAD_INTERVAL,
        stop_rx.clone(),
    )));
    let (_radius, radius_tasks) = crate::radius::start(node.clone(), &cfg, &cert, &key, stop_rx.clone()).await?;
    tasks.extend(radius_tasks);
    for l in listeners {
        let addr = l.local_addr()?;
        println!("listening https {addr}");
        tracing::info!(%addr, "HTTPS listening");
        tasks.push(tokio::spawn(http::serve::serve(l, tls.clone(), app.clone(), connections.clone(), stop_rx.clone())));
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let pruner = tokio::spawn(prune_audit(node.clone(), cfg.audit.retention_days, stop_rx.clone()));
    if cfg.backup.interval_seconds > 0 {
        tasks.push(tokio::spawn(crate::scheduled_backup::run(cfg.clone(), config_file, stop_rx.clone())));
    }

    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let _ = pruner.await;
    drop(app);
    drop(node);
    tracing::info!("stopped");
    Ok(())
}

/// How often realms (and the cache-flush marker) are re-read.
const DIRECTORY_RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install SIGTERM handler");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// How often old audit records are looked for, and how many go per batch
/// (small batches keep the group-commit writer responsive).
const PRUNE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);
const PRUNE_BATCH: u32 = 5_000;
const PRUNE_MAX_BATCHES: u32 = 200;

async fn prune_audit(node: Arc<node::Node>, retention_days: u32, mut stop: watch::Receiver<bool>) {
    loop {
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
