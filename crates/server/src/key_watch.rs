//! Follows master key rotations on a running node, wherever it runs.
//!
//! `tessera key rotate` (on any node) puts the new key into the rotation
//! marker in the database, sealed under the old key (`RotationMarker::
//! next_key`). Every node polls the marker each [`KEY_WATCH_INTERVAL`]:
//!
//! * **running, to a key this node lacks**: it opens the new key with its
//!   current one, checks that it is the key the marker names and that the
//!   two keys open the database, rewrites its own key file (new key first,
//!   old after: `node::write_key_file`), swaps its keyring and reports. A
//!   node whose key comes from `TESSERA_MASTER_KEY` swaps in memory and
//!   says once that the environment must be updated before a restart.
//! * **done, on the new key, still holding the old**: it rewrites its key
//!   file with the new key alone and drops the old key.
//! * **done, to a key this node lacks**: it missed the rotation and cannot
//!   catch up by itself; it says so (log, `/readyz` degraded).
//!
//! It also follows its key file (an operator copying a new one in) but
//! never to keys that cannot open the database. And it reports the key it
//! holds (`MetaKey::NodeKey`) whenever that changes and every
//! [`REPORT_INTERVAL`] as a heartbeat, so a rotation knows which nodes are
//! alive and waits for each of them before re-sealing anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_core::keys::{Keyring, MasterKey, key_id_of};
use tessera_core::rotation::{self, NodeKeyReport, RotationMarker, RotationState};
use tessera_core::store::MetaKey;
use tokio::sync::watch;

use crate::health::{self, Degradation};
use crate::node::{self, KeySource, Node};

/// How often the marker is read: one cheap indexed read.
pub const KEY_WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// How often a node refreshes its key report when nothing changed.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(rotation::NODE_REPORT_INTERVAL_SECONDS as u64);

pub async fn watch(node: Arc<Node>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut w = Watcher {
        seen_file: key_file_stamp(&node),
        node,
        last_problem: None,
        reported: None,
        env_notice: None,
        unwritten: None,
    };
    loop {
        w.tick().await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}

struct Watcher {
    node: Arc<Node>,
    /// The key file as last read or written here.
    seen_file: Option<(u64, std::time::SystemTime)>,
    /// Logged once per distinct problem; retried every tick.
    last_problem: Option<String>,
    /// When the last report was written.
    reported: Option<Instant>,
    /// The key id the `TESSERA_MASTER_KEY` notice was last given for.
    env_notice: Option<String>,
    /// Why the key file could not be written to match the keys in memory;
    /// the write is retried every tick until it works.
    unwritten: Option<String>,
}

impl Watcher {
    async fn tick(&mut self) {
        let marker = match rotation::marker(&*self.node.ctx.store).await {
            Ok(m) => m,
            Err(e) => {
                // A store that is down is `/readyz`'s business; retried.
                tracing::warn!(error = %e, "cannot read the key rotation marker; will retry");
                return;
            }
        };
        let mut changed = false;
        // The key file first: an operator who copies the new key file onto
        // a node that missed a rotation is followed before the marker says
        // what is missing.
        let file = key_file_stamp(&self.node);
        let mut problem = None;
        if file != self.seen_file {
            match self.reload_file(marker.as_ref()).await {
                Ok(c) => {
                    self.seen_file = file;
                    changed |= c;
                }
                Err(message) => problem = Some(message),
            }
        }
        if self.unwritten.is_some()
            && let (KeySource::File(path), Some((primary, previous))) =
                (&self.node.key_source, self.node.master_keys.get())
        {
            match node::write_key_file(path, &primary, &previous) {
                Ok(()) => {
                    self.unwritten = None;
                    self.seen_file = key_file_stamp(&self.node);
                }
                Err(e) => self.unwritten = Some(unwritable(&e, &primary)),
            }
        }
        if let Some(m) = &marker {
            match self.follow(m).await {
                Ok(c) => changed |= c,
                Err(message) => problem = problem.or(Some(message)),
            }
        }
        self.problem(problem.or_else(|| self.unwritten.clone()));
        if changed || self.reported.is_none_or(|t| t.elapsed() >= REPORT_INTERVAL) {
            self.report().await;
        }
    }

    /// One step towards the marker's state. `Ok(true)`: the keys changed.
    async fn follow(&mut self, m: &RotationMarker) -> Result<bool, String> {
        let node = self.node.clone();
        let keys = &node.ctx.keys;
        let current = keys.key_id();
        let previous = keys.previous_key_ids();
        match m.state {
            RotationState::Running if m.to != current => {
                // The new key, opened with this node's: it must be the key
                // the marker names (checked inside) and open the database.
                let next = m.open_next_key(keys).map_err(|e| {
                    format!(
                        "master key rotation: cannot take the new key: {e}. This node keeps sealing with key \
                         {current}; copy the key file from the node that ran `tessera key rotate`"
                    )
                })?;
                let (primary, older) = self.master()?;
                let mut keep = vec![primary];
                keep.extend(older.into_iter().filter(|k| key_id_of(k) != m.to));
                self.check_opens(&next, &keep).await?;
                self.install(&next, &keep, m);
                tracing::info!(from = %current, to = %m.to, still_opening = ?keys.previous_key_ids(),
                    "master key rotation: sealing with the new key, taken from the database");
                Ok(true)
            }
            RotationState::Done if m.to == current && !previous.is_empty() => {
                let (primary, _) = self.master()?;
                // Every value was proven to open with the new key alone
                // before the marker said done.
                self.install(&primary, &[], m);
                tracing::info!(key_id = %current, dropped = ?previous, "master key rotation finished: old key dropped");
                Ok(true)
            }
            RotationState::Done if m.to != current && (m.from == current || previous.contains(&m.from)) => {
                Err(format!(
                    "master key rotation: the database moved from key {} to key {} (finished {}) but this node holds only \
                 key {current}: values sealed since cannot be opened here. Copy the key file from another node \
                 (this node follows it at once), or set TESSERA_MASTER_KEY to the new key and restart",
                    m.from,
                    m.to,
                    m.finished_at.map(|t| t.to_rfc3339()).unwrap_or_default()
                ))
            }
            _ => Ok(false),
        }
    }

    /// The master keys behind the keyring.
    fn master(&self) -> Result<(MasterKey, Vec<MasterKey>), String> {
        let (primary, previous) = self.node.master_keys.get().ok_or("this node's master keys are not known")?;
        // They must be what the keyring holds, or a file write would lose a key.
        if key_id_of(&primary) != self.node.ctx.keys.key_id() {
            return Err("master key rotation: this node's keys changed underneath; retrying".into());
        }
        Ok((primary, previous))
    }

    /// Never swap to keys that cannot open this database.
    async fn check_opens(&self, primary: &MasterKey, previous: &[MasterKey]) -> Result<(), String> {
        let candidate = Keyring::with_previous(primary, previous);
        match self.node.ctx.store.meta_value(MetaKey::KeyCheck).await {
            Ok(Some(check)) => candidate.verify_check_value(&check).map_err(|e| {
                format!("master key rotation: keys {} do not open this database ({e}); keeping the keys in use", {
                    std::iter::once(candidate.key_id())
                        .chain(candidate.previous_key_ids())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
            }),
            Ok(None) => Ok(()),
            Err(e) => Err(format!("cannot read the key check value ({e}); will retry")),
        }
    }

    /// Rewrites the key file (when the key comes from one), then swaps the
    /// keys in memory. The memory swap happens even when the file cannot be
    /// written, so logins keep working; the write is retried (`unwritten`).
    fn install(&mut self, primary: &MasterKey, previous: &[MasterKey], m: &RotationMarker) {
        match &self.node.key_source {
            KeySource::File(path) => {
                self.unwritten = node::write_key_file(path, primary, previous).err().map(|e| unwritable(&e, primary));
                self.seen_file = key_file_stamp(&self.node);
            }
            KeySource::Environment => {
                let id = key_id_of(primary);
                if self.env_notice.as_deref() != Some(&id) || previous.is_empty() {
                    let state = if m.state == RotationState::Running { "running" } else { "finished" };
                    tracing::warn!(
                        key_id = %id,
                        rotation = state,
                        "master key rotation: this node's key comes from TESSERA_MASTER_KEY, which cannot be \
                         rewritten; it now holds the new key in memory only. Set TESSERA_MASTER_KEY to the new key \
                         (the first line of the key file on the node that ran `tessera key rotate`) before this \
                         node restarts"
                    );
                    self.env_notice = Some(id);
                }
            }
        }
        self.node.ctx.keys.replace(primary, previous);
        self.node.master_keys.set(primary, previous);
    }

    /// Follows a changed key file: re-read, and swapped to if it opens the
    /// database. `Ok(true)`: the keys changed.
    async fn reload_file(&mut self, marker: Option<&RotationMarker>) -> Result<bool, String> {
        let KeySource::File(path) = &self.node.key_source else { return Ok(false) };
        let (primary, previous) = node::read_key_file(path).map_err(|e| e.to_string())?;
        let primary_id = key_id_of(&primary);
        let keys = &self.node.ctx.keys;
        let previous_ids: Vec<String> = previous.iter().map(key_id_of).collect();
        if primary_id == keys.key_id() && previous_ids == keys.previous_key_ids() {
            return Ok(false);
        }
        if let Some(m) = marker
            && m.state == RotationState::Running
            && m.to != primary_id
            && !previous_ids.contains(&m.to)
        {
            return Err(format!(
                "the rotation moves to key {}, but {} starts with key {primary_id}; keeping the keys in use (the new \
                 key is taken from the database instead)",
                m.to,
                path.display()
            ));
        }
        self.check_opens(&primary, &previous).await.map_err(|e| format!("{}: {e}", path.display()))?;
        let before = keys.key_id();
        keys.replace(&primary, &previous);
        self.node.master_keys.set(&primary, &previous);
        tracing::info!(from = %before, key_id = %primary_id, still_opening = ?previous_ids, "master keys reloaded from the key file");
        Ok(true)
    }

    fn problem(&mut self, problem: Option<String>) {
        if problem != self.last_problem {
            if let Some(p) = &problem {
                tracing::error!("{p}");
            }
            health::set(Degradation::MasterKey, problem.clone());
            self.last_problem = problem;
        }
    }

    async fn report(&mut self) {
        let keys = &self.node.ctx.keys;
        let r = NodeKeyReport {
            key_id: keys.key_id(),
            previous: keys.previous_key_ids(),
            at: self.node.ctx.clock.now(),
            version: Some(node::build_version(&self.node.config)),
        };
        let bytes = serde_json::to_vec(&r).unwrap_or_default();
        match self.node.ctx.store.set_meta_value(MetaKey::NodeKey(&self.node.ctx.node), Some(bytes), None).await {
            Ok(()) => self.reported = Some(Instant::now()),
            Err(e) => tracing::warn!(error = %e, "cannot record this node's master key id"),
        }
    }
}

fn unwritable(e: &node::StartupError, primary: &MasterKey) -> String {
    format!(
        "master key rotation: cannot rewrite the key file ({e}); this node holds key {} in memory only and could not \
         restart with its key file; retrying",
        key_id_of(primary)
    )
}

/// Size and modification time of the key file (None with an environment key).
fn key_file_stamp(node: &Node) -> Option<(u64, std::time::SystemTime)> {
    let KeySource::File(path) = &node.key_source else { return None };
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}
