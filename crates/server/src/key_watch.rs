//! Follows master key rotations on a running node. `tessera key rotate`
//! rewrites the key file and then changes the rotation marker in the
//! database; every node polls the marker, re-reads its key file when it
//! changes, and reports the key it now holds (so the rotation can see who
//! has caught up).

use std::sync::Arc;
use std::time::Duration;

use tessera_core::rotation::{self, NodeKeyReport, RotationState};
use tessera_core::store::MetaKey;
use tokio::sync::watch;

use crate::node::{self, KeySource, Node};

/// How often the marker is read: one cheap indexed read.
pub const KEY_WATCH_INTERVAL: Duration = Duration::from_secs(1);

pub async fn watch(node: Arc<Node>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let store = node.ctx.store.clone();
    let mut seen = store.meta_value(MetaKey::KeyRotation).await.ok().flatten();
    let mut seen_file = key_file_stamp(&node);
    // Retried every tick; logged once per distinct problem.
    let mut last_error: Option<String> = None;
    // A node started mid-rotation already read the two-key file at start.
    report(&node).await;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        let current = match store.meta_value(MetaKey::KeyRotation).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the key rotation marker; will retry");
                continue;
            }
        };
        // The key file is followed too: a rotation that died between
        // rewriting it and setting the marker must not leave this node
        // unable to open what a freshly started node seals.
        let file = key_file_stamp(&node);
        if current == seen && file == seen_file {
            continue;
        }
        match reload(&node).await {
            Ok(()) => {
                seen = current;
                seen_file = file;
                last_error = None;
                report(&node).await;
            }
            // Retried on the next tick: seen stays behind.
            Err(message) => {
                if last_error.as_ref() != Some(&message) {
                    tracing::error!("master key rotation: {message}");
                    last_error = Some(message);
                }
            }
        }
    }
}

/// Size and modification time of the key file (None with an environment key).
fn key_file_stamp(node: &Node) -> Option<(u64, std::time::SystemTime)> {
    let KeySource::File(path) = &node.key_source else { return None };
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

async fn reload(node: &Node) -> Result<(), String> {
    let marker = rotation::marker(&*node.ctx.store).await.map_err(|e| e.to_string())?;
    let KeySource::File(path) = &node.key_source else {
        return Err(
            "the key rotation marker changed, but this node's key comes from TESSERA_MASTER_KEY and cannot be \
             re-read; restart it with the new key (see `tessera key status`)"
                .into(),
        );
    };
    let (primary, previous) = node::read_key_file(path).map_err(|e| e.to_string())?;
    let primary_id = tessera_core::keys::key_id_of(&primary);
    if let Some(m) = &marker
        && m.state == RotationState::Running
        && m.to != primary_id
    {
        return Err(format!(
            "the rotation moves to key {}, but {} starts with key {primary_id}; is the key file on this node current?",
            m.to,
            path.display()
        ));
    }
    // Never swap to keys that cannot open this database.
    let candidate = tessera_core::keys::Keyring::with_previous(&primary, &previous);
    if let Some(check) = node.ctx.store.meta_value(MetaKey::KeyCheck).await.map_err(|e| e.to_string())?
        && let Err(e) = candidate.verify_check_value(&check)
    {
        return Err(format!("{} does not open this database ({e}); keeping the keys in use", path.display()));
    }
    let before = node.ctx.keys.key_id();
    if before == primary_id && node.ctx.keys.previous_key_ids().len() == previous.len() {
        return Ok(());
    }
    node.ctx.keys.replace(&primary, &previous);
    let previous_ids = node.ctx.keys.previous_key_ids();
    match marker.map(|m| m.state) {
        Some(RotationState::Running) => {
            tracing::info!(from = %before, to = %primary_id, still_opening = ?previous_ids, "master key rotation: sealing with the new key")
        }
        _ => {
            tracing::info!(key_id = %primary_id, still_opening = ?previous_ids, "master keys reloaded from the key file")
        }
    }
    Ok(())
}

async fn report(node: &Node) {
    let r = NodeKeyReport {
        key_id: node.ctx.keys.key_id(),
        previous: node.ctx.keys.previous_key_ids(),
        at: node.ctx.clock.now(),
    };
    let bytes = serde_json::to_vec(&r).unwrap_or_default();
    if let Err(e) = node.ctx.store.set_meta_value(MetaKey::NodeKey(&node.ctx.node), Some(bytes), None).await {
        tracing::warn!(error = %e, "cannot record this node's master key id");
    }
}
