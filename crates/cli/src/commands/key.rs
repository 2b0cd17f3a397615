//! `tessera key export|rotate|status`.
//!
//! Rotation runs against the data directory while servers keep answering;
//! the steps and why each is safe to interrupt are in
//! `tessera_core::rotation`. This module owns the key file side: the file is
//! rewritten atomically with the new key first and the old key after it, and
//! only once every value opens with the new key alone does it lose the old one.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Subcommand;
use tessera_core::audit::{AuditRecord, AuditResult};
use tessera_core::keys::{Keyring, MasterKey, key_id_of};
use tessera_core::random::OsRandom;
use tessera_core::rotation::{self, Census, RotationMarker, RotationState};
use tessera_core::store::{MetaKey, Store};
use tessera_server::config::Config;
use tessera_server::key_watch::KEY_WATCH_INTERVAL;
use tessera_server::node::{self, KeySource, Node};

use super::backup::PassphraseInput;
use crate::{UsageError, output};

/// Rows read and re-sealed per store round trip.
const DEFAULT_BATCH: u32 = 500;
/// Re-seal passes before giving up on values that keep appearing under the
/// old key (a node that has not loaded the new key is still writing them).
const MAX_PASSES: u32 = 3;

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Write the master key alone, age-encrypted with its own passphrase
    /// (`age -d FILE > tessera.key` gives the key file back).
    Export {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseInput,
    },
    /// Re-encrypt every stored secret under a new master key while servers
    /// keep running; an interrupted rotation is finished by running it again.
    Rotate {
        /// Values re-sealed per database round trip.
        #[arg(long, default_value_t = DEFAULT_BATCH)]
        batch: u32,
        /// At most this long, running nodes (every node that reported in the
        /// last 2 minutes) get to load the new key before anything is
        /// re-sealed; one that does not stops the rotation (resumable).
        #[arg(long, default_value_t = 30)]
        wait_seconds: u64,
        /// Test hook: sleep this long after each batch, so a test can kill
        /// the rotation halfway.
        #[arg(long, hide = true)]
        pause_ms: Option<u64>,
    },
    /// The loaded key(s), the last rotation, and how many sealed values each key holds.
    Status {
        /// Also decrypt every sealed value with the loaded key(s).
        #[arg(long)]
        verify: bool,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cfg: &Config, env: &BTreeMap<String, String>, cmd: KeyCmd) -> anyhow::Result<()> {
    match cmd {
        KeyCmd::Export { out, passphrase } => {
            if !node::load_master_keys(cfg, env)?.1.is_empty() {
                bail!(UsageError(
                    "a master key rotation is under way (the key file holds two keys); finish it with `tessera key \
                     rotate` before exporting the key"
                        .into()
                ));
            }
            super::backup::export_key(cfg, env, &out, &passphrase)
        }
        KeyCmd::Rotate { batch, wait_seconds, pause_ms } => {
            rotate(cfg, env, batch, Duration::from_secs(wait_seconds), pause_ms.map(Duration::from_millis)).await
        }
        KeyCmd::Status { verify, json } => status(&super::open(cfg, env).await?, verify, json).await,
    }
}

fn audit(node: &Node, target: &str, reason: &str) -> AuditRecord {
    AuditRecord::new(node.ctx.clock.now(), &node.ctx.node, &super::actor(), "key.rotate")
        .target(target)
        .result(AuditResult::Ok, Some(reason))
}

async fn set_marker(node: &Node, m: &RotationMarker, reason: &str) -> anyhow::Result<()> {
    node.ctx
        .store
        .set_meta_value(MetaKey::KeyRotation, Some(m.to_bytes()), Some(audit(node, &m.to, reason)))
        .await
        .context("recording the rotation in the database")
}

async fn rotate(
    cfg: &Config,
    env: &BTreeMap<String, String>,
    batch: u32,
    wait: Duration,
    pause: Option<Duration>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (_, _, source) = node::load_master_keys(cfg, env)?;
    let KeySource::File(path) = source else {
        bail!(UsageError(
            "the master key comes from TESSERA_MASTER_KEY; rotation rewrites the key file, so put the key in the \
             [master_key] file (0600) and unset the variable first"
                .into()
        ));
    };
    // Opening takes the new key of a rotation already running elsewhere
    // (and rewrites the key file with it), so the keys are read after.
    let node = super::open(cfg, env).await?;
    let (primary, previous) = node.master_keys.get().context("this node's master keys")?;
    let store = &*node.ctx.store;
    let keys = &node.ctx.keys;
    let primary_id = key_id_of(&primary);
    let marker = rotation::marker(store).await?;
    let now = node.ctx.clock.now();

    let new_key = if previous.is_empty() {
        match &marker {
            Some(m) if m.state == RotationState::Running && m.to == primary_id => {
                outln!("finishing the rotation to key {primary_id} (the key file already holds only the new key)");
                primary
            }
            Some(m) if m.state == RotationState::Running => {
                let why = m.open_next_key(keys).err().map(|e| e.to_string()).unwrap_or_default();
                bail!(
                    "the database records a rotation from key {} to key {} in progress, but {} holds only key \
                     {primary_id}, which cannot take the new key ({why}). Copy the key file from a node that holds \
                     key {}, then run `tessera key rotate` again",
                    m.from,
                    m.to,
                    path.display(),
                    m.to
                )
            }
            _ => {
                // Nothing changes unless every value opens now: a value no
                // key can open would be lost for good by a rotation.
                let before = rotation::census(store, keys, true, batch).await?;
                if before.unreadable_count > 0 {
                    bail!(
                        "{} sealed value(s) do not open with the current key {primary_id}; not rotating. First: {}",
                        before.unreadable_count,
                        before.unreadable.join("; ")
                    );
                }
                if rotation::ensure_backup_mac_key(store, keys, &OsRandom).await? {
                    outln!("stored the backup code key (sealed) so backup codes survive the change of master key");
                }
                let new = MasterKey::generate(&OsRandom);
                let new_id = key_id_of(&new);
                // The marker first, carrying the new key sealed under the
                // old: from here every node (this one's file included) can
                // get the new key from the database, so no value is ever
                // sealed under a key only one machine has.
                let m = RotationMarker::running(keys, &OsRandom, &new, now);
                set_marker(&node, &m, &format!("started: {primary_id} -> {new_id}")).await?;
                node::write_key_file(&path, &new, std::slice::from_ref(&primary))
                    .context("writing the new key file")?;
                outln!(
                    "{}: new key {new_id} first, old key {primary_id} kept until every value is re-sealed",
                    path.display()
                );
                keys.replace(&new, std::slice::from_ref(&primary));
                new
            }
        }
    } else {
        let from = key_id_of(&previous[0]);
        outln!("resuming the rotation from key {from} to key {primary_id}");
        let recorded = marker.as_ref().filter(|m| m.state == RotationState::Running && m.to == primary_id);
        if recorded.is_none_or(|m| m.next_key.is_none() || m.from != from) {
            let mut m = RotationMarker::running(&Keyring::new(&previous[0]), &OsRandom, &primary, now);
            m.started_at = recorded.map_or(now, |r| r.started_at);
            set_marker(&node, &m, &format!("resumed: {from} -> {primary_id}")).await?;
        }
        primary
    };
    let new_id = key_id_of(&new_key);
    let from_id = rotation::marker(store).await?.map(|m| m.from).unwrap_or_default();

    // Until every running node has loaded the new key, one of them could
    // still seal a new value with the old key only, or fail to open one
    // re-sealed under the new key.
    wait_for_nodes(&node, &new_id, wait).await?;
    // Two rotations started at once on two nodes: the last marker written
    // wins, and only its rotation may re-seal (the other's key is not on
    // every node).
    match rotation::marker(store).await? {
        Some(m) if m.state == RotationState::Running && m.to == new_id => {}
        other => bail!(
            "the rotation marker changed meanwhile (now: {}); another `tessera key rotate` is running. Nothing was \
             re-sealed here; let that one finish, or run `tessera key rotate` again on one node",
            other.map_or_else(|| "none".into(), |m| format!("{:?} to key {}", m.state, m.to).to_lowercase())
        ),
    }

    let only_new = Keyring::new(&new_key);
    let mut pass = 0;
    let census = loop {
        pass += 1;
        let report = rotation::reseal_all(store, keys, &OsRandom, batch, &mut |column, r| {
            if let Some(p) = pause {
                outln!("re-sealed {} so far ({})", r.resealed, column.label());
                std::thread::sleep(p);
            }
        })
        .await?;
        outln!(
            "pass {pass}: re-sealed {} value(s), {} already under the new key, {} changed meanwhile",
            report.resealed,
            report.current,
            report.raced
        );
        if let Some(mac) = store.meta_value(MetaKey::BackupMacKey).await? {
            only_new.set_backup_mac_key(&mac).context("the stored backup code key does not open with the new key")?;
        }
        let census = rotation::census(store, &only_new, true, batch).await?;
        if census.unreadable_count == 0 && census.not_under(&new_id) == 0 {
            break census;
        }
        if pass >= MAX_PASSES {
            bail!(
                "{} value(s) still do not open with the new key after {pass} passes (is a server running that has \
                 not loaded the new key? `tessera key status` shows each node's key); the old key stays in {}, run \
                 `tessera key rotate` again. First: {}",
                census.unreadable_count.max(census.not_under(&new_id)),
                path.display(),
                census.unreadable.join("; ")
            );
        }
        tokio::time::sleep(KEY_WATCH_INTERVAL * 2).await;
    };

    node::write_key_file(&path, &new_key, &[]).context("writing the final key file")?;
    // Done, and without the sealed key: kept, it would let the old key
    // recover the new one for ever. Nodes now drop the old key.
    let m = RotationMarker {
        state: RotationState::Done,
        from: from_id.clone(),
        to: new_id.clone(),
        started_at: rotation::marker(store).await?.map(|m| m.started_at).unwrap_or(now),
        finished_at: Some(node.ctx.clock.now()),
        next_key: None,
    };
    set_marker(&node, &m, &format!("finished: {} value(s) under {new_id}", census.total())).await?;
    outln!(
        "rotated: {} sealed value(s) now under key {new_id}; {} holds only the new key ({:.1} s)",
        census.total(),
        path.display(),
        started.elapsed().as_secs_f64()
    );
    outln!(
        "  note: backups and key exports made before now need the old key {from_id}; take a new `tessera key \
         export` and a new backup"
    );
    Ok(())
}

/// Waits (at most `wait`, and at least two key-watch intervals) until every
/// node alive (reported within `rotation::NODE_ALIVE_SECONDS`) reports
/// `new_id` as its key. The minimum covers nodes whose reports this store
/// cannot show (replicas of an embedded primary, which get the marker
/// through the change stream). A node that does not catch up stops the
/// rotation here, before anything is re-sealed: it stays running and
/// resumable, and every node still opens both keys.
async fn wait_for_nodes(node: &Node, new_id: &str, wait: Duration) -> anyhow::Result<()> {
    let floor = KEY_WATCH_INTERVAL * 2;
    let begun = Instant::now();
    let limit = wait.max(floor + KEY_WATCH_INTERVAL);
    outln!("waiting for every running node to load key {new_id} (at most {} s)", limit.as_secs());
    loop {
        let reports = rotation::node_reports(&*node.ctx.store, &node.ctx.node).await?;
        let now = node.ctx.clock.now();
        let lagging = rotation::lagging_nodes(&reports, new_id, now);
        if lagging.is_empty() && begun.elapsed() >= floor {
            let on_new: Vec<&str> =
                reports.iter().filter(|(_, r)| r.key_id == new_id).map(|(n, _)| n.as_str()).collect();
            if !on_new.is_empty() {
                outln!("nodes on key {new_id}: {}", on_new.join(", "));
            }
            return Ok(());
        }
        if begun.elapsed() >= limit && !lagging.is_empty() {
            let names: Vec<String> = lagging
                .iter()
                .map(|(n, r)| format!("{n} (key {}, reported {} s ago)", r.key_id, (now.0 - r.at.0).max(0) / 1000))
                .collect();
            bail!(
                "not every running node loaded the new key {new_id} within {} s: {}. Nothing was re-sealed; the \
                 rotation stays running and every node still opens both keys. See that node's log (`master key \
                 rotation`) and `tessera key status`, then run `tessera key rotate` again (a node that is stopped \
                 stops counting {} s after its last report)",
                limit.as_secs(),
                names.join(", "),
                rotation::NODE_ALIVE_SECONDS
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn status(node: &Node, verify: bool, json: bool) -> anyhow::Result<()> {
    let store: &dyn Store = &*node.ctx.store;
    let keys = &node.ctx.keys;
    let marker = rotation::marker(store).await?;
    let census: Census = rotation::census(store, keys, verify, DEFAULT_BATCH).await?;
    let report: Option<rotation::NodeKeyReport> =
        store.meta_value(MetaKey::NodeKey(&node.ctx.node)).await?.and_then(|b| serde_json::from_slice(&b).ok());
    let nodes = rotation::node_reports(store, &node.ctx.node).await?;
    let now = node.ctx.clock.now();
    let alive = |r: &rotation::NodeKeyReport| r.at > now.plus_seconds(-rotation::NODE_ALIVE_SECONDS);
    if json {
        let nodes: Vec<serde_json::Value> = nodes
            .iter()
            .map(|(n, r)| {
                serde_json::json!({
                    "node": n, "key_id": r.key_id, "previous": r.previous, "at": r.at.to_rfc3339(), "alive": alive(r),
                })
            })
            .collect();
        output::json(&serde_json::json!({
            "key_id": keys.key_id(),
            "previous_key_ids": keys.previous_key_ids(),
            "source": node.key_source.to_string(),
            // Never the sealed next key: with the old key it gives the new one.
            "rotation": marker.as_ref().map(RotationMarker::public),
            "nodes": nodes,
            "sealed_values": census.by_key,
            "verified": verify,
            "unreadable": census.unreadable_count,
            "unreadable_first": census.unreadable,
            "this_node_server": report,
        }))?;
    } else {
        outln!("master key:     {} (from {})", keys.key_id(), node.key_source);
        let prev = keys.previous_key_ids();
        if !prev.is_empty() {
            outln!("previous keys:  {} (still opening values not re-sealed yet)", prev.join(", "));
        }
        match &marker {
            None => outln!("rotation:       never rotated"),
            Some(m) if m.state == RotationState::Running => {
                outln!("rotation:       RUNNING since {} from {} to {}", m.started_at.to_rfc3339(), m.from, m.to)
            }
            Some(m) => outln!(
                "rotation:       finished {} ({} -> {})",
                m.finished_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                m.from,
                m.to
            ),
        }
        if let Some(r) = &report {
            outln!("server here:    last loaded key {} at {}", r.key_id, r.at.to_rfc3339());
        }
        for (n, r) in &nodes {
            let prev = if r.previous.is_empty() {
                String::new()
            } else {
                format!(" (still opening {})", r.previous.join(", "))
            };
            let state = if alive(r) { "" } else { ", not heard from for 2 minutes" };
            outln!("node {n}: key {}{prev}, reported {}{state}", r.key_id, r.at.to_rfc3339());
        }
        let parts: Vec<String> = census.by_key.iter().map(|(k, n)| format!("{n} under {k}")).collect();
        outln!(
            "sealed values:  {} ({})",
            census.total(),
            if parts.is_empty() { "none".into() } else { parts.join(", ") }
        );
        if verify {
            if census.unreadable_count == 0 {
                outln!("verified:       all {} open with the loaded key(s)", census.total());
            } else {
                outln!("verified:       {} do NOT open: {}", census.unreadable_count, census.unreadable.join("; "));
            }
        }
    }
    if verify && census.unreadable_count > 0 {
        bail!("{} sealed value(s) do not open with the loaded key(s)", census.unreadable_count);
    }
    Ok(())
}
